//! The servers under test as child processes, the hub (built when missing) and the no-op
//! baseline alike: started on port 0, found by their "listening on" log line, measured
//! through /proc, stopped with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::BenchError;

/// The hub binary, built with `cargo build --release -p backwatch` when it is missing.
pub async fn ensure_hub_binary(path: &Path) -> Result<PathBuf, BenchError> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = [path.to_path_buf(), workspace.join(path)];
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    println!(
        "{} not found: running `cargo build --release -p backwatch`",
        path.display()
    );
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-p", "backwatch"])
        .current_dir(&workspace)
        .status()
        .await?;
    match candidates.iter().find(|p| p.is_file()) {
        Some(found) if status.success() => Ok(found.clone()),
        _ => Err(BenchError::Hub(format!(
            "no hub binary at {}; build it with `cargo build --release -p backwatch` or pass --hub-bin",
            path.display()
        ))),
    }
}

/// A server child process with its log going to a file.
pub struct ServerProcess {
    child: Child,
    pub pid: u32,
    pub url: String,
}

impl ServerProcess {
    /// Starts `backwatch serve` on port 0 and waits for its "listening on" line.
    pub async fn start(
        bin: &Path,
        database_url: &str,
        log: &Path,
    ) -> Result<ServerProcess, BenchError> {
        let args = [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database_url,
        ];
        Self::spawn(bin, &args, log).await
    }

    /// Starts this binary's `noop-server` on port 0: the baseline, a process of its own like
    /// the hub (in the load generator's process its threads switched more cheaply than the
    /// hub's, and its answers took no process boundary on the way back).
    pub async fn noop(log: &Path) -> Result<ServerProcess, BenchError> {
        let bin = std::env::current_exe()?;
        Self::spawn(&bin, &["noop-server", "--listen", "127.0.0.1:0"], log).await
    }

    async fn spawn(bin: &Path, args: &[&str], log: &Path) -> Result<ServerProcess, BenchError> {
        let mut child = Command::new(bin)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BenchError::Hub(format!("cannot start {}: {e}", bin.display())))?;
        let pid = child.id().unwrap_or(0);
        let (found, mut url) = mpsc::channel(2);
        let file = tokio::fs::File::create(log).await?;
        let (lines_tx, mut lines_rx) = mpsc::unbounded_channel::<String>();
        for pipe in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (found, lines_tx) = (found.clone(), lines_tx.clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(u) = listening_url(&line) {
                        let _ = found.try_send(u);
                    }
                    let _ = lines_tx.send(line);
                }
            });
        }
        // Keeps the hub's pipes drained into the log file, so it never blocks on logging.
        tokio::spawn(async move {
            let mut file = tokio::io::BufWriter::new(file);
            while let Some(line) = lines_rx.recv().await {
                let _ = file.write_all(line.as_bytes()).await;
                let _ = file.write_all(b"\n").await;
                let _ = file.flush().await;
            }
        });
        drop(found);
        match tokio::time::timeout(Duration::from_secs(60), url.recv()).await {
            Ok(Some(url)) => Ok(ServerProcess { child, pid, url }),
            _ => {
                let _ = child.kill().await;
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(15).collect();
                Err(BenchError::Hub(format!(
                    "{} exited or did not log `listening on http://…` within 60 s; its last lines:\n{}",
                    bin.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )))
            }
        }
    }

    pub fn rss_kb(&self) -> u64 {
        rss_kb(self.pid)
    }

    /// SIGTERM, then up to 30 s for a clean shutdown (which checkpoints SQLite), then SIGKILL.
    pub async fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            println!("    hub did not stop within 30 s of SIGTERM; killing it");
            let _ = self.child.kill().await;
        }
    }
}

/// `http://127.0.0.1:PORT` from a log line containing `listening on http://127.0.0.1:PORT`.
pub fn listening_url(line: &str) -> Option<String> {
    let clean = strip_ansi(line);
    let rest = &clean[clean.find("listening on ")? + "listening on ".len()..];
    let start = rest.find("http")?;
    let url: String = rest[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || ":/.[]-".contains(*c))
        .collect();
    let port = url.rsplit(':').next()?;
    (url.starts_with("http") && !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()))
        .then_some(url)
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ … final byte in @–~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Resident memory of a process in kB, from /proc (0 when unknown).
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_url_in_plain_json_and_coloured_log_lines() {
        let want = Some("http://127.0.0.1:41234".to_string());
        assert_eq!(
            listening_url("INFO backwatch: listening on http://127.0.0.1:41234"),
            want
        );
        assert_eq!(
            listening_url(r#"{"fields":{"message":"listening on http://127.0.0.1:41234"}}"#),
            want
        );
        assert_eq!(
            listening_url("\u{1b}[32m INFO\u{1b}[0m listening on http://127.0.0.1:41234 grpc=true"),
            want
        );
        assert_eq!(listening_url("listening on http://127.0.0.1:"), None);
        assert_eq!(listening_url("starting"), None);
    }
}
