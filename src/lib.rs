//! # backwatch — telemetry hub for backup jobs
//!
//! Backup agents report job progress over gRPC; the hub keeps live state in memory, stores a
//! snapshot every 30 s, streams updates to watchers, and rolls each finished job up into a
//! compact performance record.
//!
//! ## Layout (dependencies point inward: `api` → `hub` → `live`, `store` → `domain`)
//! - [`domain`] — pure logic: report validation, the job state machine and snapshot policy,
//!   rollup and downsampling. No network, no database.
//! - [`store`] — Diesel schema and rows, the SQLite/PostgreSQL pool, read queries, the
//!   group-commit writer and (SQLite) the snapshot journal.
//! - [`live`] — jobs in memory (one lock per job) and the watch fan-out.
//! - [`hub`] — one method per API call, shared by every transport.
//! - [`api`] — the tonic service and the single error → status mapping.
//! - [`http`] — JSON over plain HTTP and server-sent events for scripts, on the same hub
//!   methods (`http` → `hub`, errors through `api`'s status mapping).
//! - [`server`] — one listener for gRPC, grpc-web, reflection, health and the GUI.
//! - [`auth`] — bearer tokens: agents report, viewers read (used by `api`, `http`, `metrics`).
//! - [`tls`] — TLS settings from the certificate and key files.
//! - [`metrics`] — Prometheus text at `/metrics`: atomics on the hot path, the rest queried.
//! - [`retention`] — deletes finished jobs older than `--retention`, in small batches.
//! - [`config`] — command-line flags and their `BACKWATCH_…` twins.
//! - [`proto`] — generated `backwatch.v1` types.

pub mod api;
pub mod auth;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod hub;
pub mod live;
pub mod metrics;
pub mod proto;
pub mod retention;
pub mod server;
pub mod store;
pub mod tls;

/// Binds the configured address and runs the hub until SIGINT or SIGTERM; with `demo`,
/// simulated agents report to it.
pub async fn run_until_signal(config: config::ServeConfig, demo: bool) -> error::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| error::Error::Internal(format!("cannot listen on {}: {e}", config.listen)))?;
    if demo {
        let addr = listener
            .local_addr()
            .map_err(|e| error::Error::Internal(e.to_string()))?;
        let scheme = if config.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        tracing::info!("demo: simulated agents report to {scheme}://{addr}");
        let mut agents = backwatch_agent::ReporterConfig::new(format!("{scheme}://{addr}"));
        if let Some(token) = config.agent_tokens.first() {
            agents = agents.token(token.expose());
        }
        if let Some(cert) = &config.tls_cert {
            agents = agents.tls(cert.clone(), None);
        }
        tokio::spawn(backwatch_agent::simulator::run_demo_with(agents));
    }
    server::run(listener, config, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
