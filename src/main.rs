//! The `backwatch` command: `serve` runs the hub, `demo` runs it with simulated agents.

use backwatch::config::ServeConfig;
use clap::{Parser, Subcommand};

/// mimalloc: allocation-heavy gRPC work (a few small buffers per call) costs less than with
/// the system allocator; the no-op baseline server in `backwatch-agent` uses the same one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "backwatch", version, about = "Telemetry hub for backup jobs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub.
    Serve(ServeConfig),
    /// Run the hub with simulated agents backing up a few machines in a loop.
    Demo(ServeConfig),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    no_transparent_huge_pages();
    let cli = Cli::parse();
    let (Command::Serve(config) | Command::Demo(config)) = &cli.command;
    init_logs(&config.log_format);
    let result = match cli.command {
        Command::Serve(config) => backwatch::run_until_signal(config, false).await,
        Command::Demo(config) => backwatch::run_until_signal(config, true).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("backwatch: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Keeps this process off transparent huge pages (Linux; elsewhere nothing). mimalloc advises
/// them for its arenas, and the first touch of each 2 MiB page has the kernel zero all of it
/// while the touching thread waits: 0.5-2 ms on a runtime worker or the writer thread each time
/// the heap grows. The first rollup of a 24-hour job right after its 2,880 snapshots were
/// stored read them in up to 21 ms of CPU, nearly all of it zeroing pages (perf), against
/// 1.2-1.8 ms otherwise; the bench's worst terminal round trip was 4.4-37 ms (above 9 ms in 11
/// of 14 runs), and 4.0-4.9 ms in 9 runs without huge pages.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments only; it sets a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BACKWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    if format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
}
