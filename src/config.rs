//! Command-line settings of `backwatch serve` and `backwatch demo`; every flag has a
//! `BACKWATCH_…` environment twin. Durations read like `30s`, `10m`, `90d`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of one hub process.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on for gRPC, grpc-web and the GUI.
    #[arg(long, env = "BACKWATCH_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// sqlite://FILE (embedded, created on first start) or postgres://USER@HOST/DB.
    #[arg(
        long,
        env = "BACKWATCH_DATABASE_URL",
        default_value = "sqlite://backwatch.db"
    )]
    pub database_url: String,

    /// Minimum time between stored snapshots of a running job (agent clock).
    #[arg(long, env = "BACKWATCH_SNAPSHOT_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub snapshot_interval: Duration,

    /// Default time between WatchJob updates.
    #[arg(long, env = "BACKWATCH_UPDATE_INTERVAL", default_value = "3s", value_parser = parse_update_interval)]
    pub update_interval: Duration,

    /// A running job whose agent sent nothing for this long becomes abandoned.
    #[arg(long, env = "BACKWATCH_STALL_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub stall_timeout: Duration,

    /// Directory of the built web GUI served at `/` (default: clients/web/dist when present).
    #[arg(long, env = "BACKWATCH_UI_DIR")]
    pub ui_dir: Option<PathBuf>,

    /// Origin allowed to call grpc-web from another site (repeatable); the GUI served by the
    /// hub itself needs none.
    #[arg(
        long = "allowed-origin",
        env = "BACKWATCH_ALLOWED_ORIGIN",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Database connections in the pool.
    #[arg(long, env = "BACKWATCH_POOL_SIZE", default_value_t = 8)]
    pub pool_size: u32,

    /// Log format: text or json.
    #[arg(long, env = "BACKWATCH_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

fn parse_update_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < crate::hub::MIN_UPDATE_INTERVAL {
        return Err("must be at least 1s".into());
    }
    Ok(d)
}

impl ServeConfig {
    /// Settings for tests and embedding: defaults, a given database, loopback on any port.
    pub fn for_database(database_url: &str) -> Self {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: ServeConfig,
        }
        let mut config = Wrapper::parse_from(["backwatch"]).config;
        config.database_url = database_url.to_string();
        config.listen = "127.0.0.1:0".parse().expect("loopback address");
        config
    }
}
