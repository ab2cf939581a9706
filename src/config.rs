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

    /// Bearer token that may report progress (repeatable, or a comma-separated list). When any
    /// token is configured, every call needs one; agent tokens may only report.
    #[arg(
        long = "agent-token",
        env = "BACKWATCH_AGENT_TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub agent_tokens: Vec<crate::auth::Token>,

    /// File with agent tokens, one per line (`#` comments and blank lines skipped).
    #[arg(long, env = "BACKWATCH_AGENT_TOKEN_FILE")]
    pub agent_token_file: Option<PathBuf>,

    /// Bearer token that may read: history, lists, watch streams, /metrics (repeatable, or a
    /// comma-separated list). Viewer tokens may not report.
    #[arg(
        long = "viewer-token",
        env = "BACKWATCH_VIEWER_TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub viewer_tokens: Vec<crate::auth::Token>,

    /// File with viewer tokens, one per line (`#` comments and blank lines skipped).
    #[arg(long, env = "BACKWATCH_VIEWER_TOKEN_FILE")]
    pub viewer_token_file: Option<PathBuf>,

    /// PEM certificate chain for TLS (with --tls-key); plain text when unset.
    #[arg(long, env = "BACKWATCH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for TLS (with --tls-cert).
    #[arg(long, env = "BACKWATCH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Delete finished jobs that ended longer ago than this (e.g. 90d), and machines left
    /// without jobs; off when unset.
    #[arg(long, env = "BACKWATCH_RETENTION", value_parser = humantime::parse_duration)]
    pub retention: Option<Duration>,

    /// Most WatchJob streams open at once on this hub; more are RESOURCE_EXHAUSTED.
    #[arg(long, env = "BACKWATCH_MAX_WATCHERS", default_value_t = 20_000)]
    pub max_watchers: usize,

    /// Most concurrent HTTP/2 streams (calls in flight) on one connection.
    #[arg(
        long,
        env = "BACKWATCH_MAX_STREAMS_PER_CONNECTION",
        default_value_t = 256
    )]
    pub max_streams_per_connection: u32,

    /// Database connections in the pool.
    #[arg(long, env = "BACKWATCH_POOL_SIZE", default_value_t = 8)]
    pub pool_size: u32,

    /// Most job writes (snapshots, creations, rollups) committed in one transaction.
    #[arg(long, env = "BACKWATCH_WRITE_BATCH", default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub write_batch: u32,

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
