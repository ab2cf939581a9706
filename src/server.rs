//! Wires the hub into one listener: native gRPC (agents' calls by a lane of their own) and
//! grpc-web (HTTP/1.1) for TelemetryService,
//! reflection v1 and v1alpha, the health service, JSON and server-sent events under `/api`
//! (`http`), and the GUI's static files at `/`.
//! `run(listener, config, shutdown)` takes a bound listener so tests start it on port 0.

use crate::api::guard::GuardLayer;
use crate::api::lane::LaneLayer;
use crate::api::service::Service;
use crate::config::ServeConfig;
use crate::error::{Error, Result};
use crate::hub::{Hub, Settings};
use crate::proto;
use crate::proto::telemetry_service_server::TelemetryServiceServer;
use crate::store::{Checkpoint, Store};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic_health::ServingStatus;
use tower::Layer as _;
use tower_http::services::{ServeDir, ServeFile};

/// How often the database is pinged for the health service.
const HEALTH_PROBE_EVERY: Duration = Duration::from_secs(2);
/// Largest accepted TelemetryService request; a report with a full 4 KiB error message is
/// about 5 KiB.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Runs the hub on `listener` until `shutdown` resolves, then stops accepting, lets in-flight
/// calls finish, ends watch streams and commits every pending write.
pub async fn run(
    listener: TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let auth = crate::auth::Auth::from_config(&config)?;
    let tls = crate::tls::acceptor(&config)?;
    let store = tokio::task::spawn_blocking({
        let (url, size) = (config.database_url.clone(), config.pool_size);
        move || Store::open(&url, size)
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??;
    let (stop_tx, stop_rx) = watch::channel(false);
    let settings = Settings {
        snapshot_interval: config.snapshot_interval,
        update_interval: config.update_interval,
        stall_timeout: config.stall_timeout,
        write_batch: config.write_batch as usize,
    };
    // On the blocking pool: on SQLite it may first move the last run's snapshot journal.
    let hub = tokio::task::spawn_blocking({
        let (store, stop_rx) = (store.clone(), stop_rx.clone());
        move || Hub::new(store, settings, stop_rx)
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??;

    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(probe_health(store.clone(), health, stop_rx.clone()));
    tokio::spawn(sweep_forever(
        hub.clone(),
        config.stall_timeout,
        stop_rx.clone(),
    ));
    if let Some(keep) = config.retention {
        tokio::spawn(crate::retention::run(store.clone(), keep, stop_rx.clone()));
    }

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Internal(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| Error::Internal(e.to_string()))?;

    let telemetry = GuardLayer::new(auth.clone(), config.max_watchers).layer(
        TelemetryServiceServer::new(Service::new(hub.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES),
    );
    let mut routes = tonic::service::Routes::builder();
    routes
        .add_service(telemetry.clone())
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    // grpc-web translation wraps only the gRPC services: tonic-web answers 400 to every other
    // HTTP/1.1 request, which would hide the GUI, /metrics and the JSON endpoints from browsers
    // and curl.
    let mut router = routes
        .routes()
        .prepare()
        .into_axum_router()
        .layer(tonic_web::GrpcWebLayer::new())
        .merge(crate::http::router(
            hub.clone(),
            auth.clone(),
            config.max_watchers,
        )?)
        .merge(crate::metrics::router(hub.clone(), auth.clone()));
    if let Some(dir) = ui_dir(&config) {
        tracing::info!(dir = %dir.display(), "serving the web GUI");
        let index = ServeFile::new(dir.join("index.html"));
        router = router.fallback_service(ServeDir::new(dir).fallback(index));
    }

    let cors = (!config.allowed_origins.is_empty())
        .then(|| cors_layer(&config.allowed_origins))
        .transpose()?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(e.to_string()))?;
    warn_if_exposed(&config, &auth, tls.is_some());
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(database = %store.describe(), "listening on {scheme}://{addr}");
    let server = tonic::transport::Server::builder()
        .accept_http1(true)
        .max_concurrent_streams(config.max_streams_per_connection)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        // Agents under load cancel calls; hyper's default (20 resets) would drop the whole
        // connection and every other call on it.
        .http2_max_pending_accept_reset_streams(Some(10_000))
        .layer(tower::util::option_layer(cors))
        .layer(LaneLayer::new(telemetry))
        .add_routes(tonic::service::Routes::from(router));
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: ending watch streams, finishing calls");
        let _ = stop_tx.send(true);
    };
    let served = match tls {
        Some(acceptor) => {
            let incoming = crate::tls::incoming(listener, acceptor);
            server.serve_with_incoming_shutdown(incoming, signal).await
        }
        None => {
            // No Nagle delay: an answer is a few small HTTP/2 frames that must leave at once.
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            server.serve_with_incoming_shutdown(incoming, signal).await
        }
    };
    let mut flushed = hub.flush().await;
    if flushed.is_ok() {
        flushed = store.run(|c| Checkpoint::Truncate.run(c).map(drop)).await;
    }
    tracing::info!("pending writes committed; stopped");
    served.map_err(|e| Error::Internal(format!("server failed: {e}")))?;
    flushed
}

/// A hub reachable from other hosts without tokens (or sending tokens in clear) says so loudly.
fn warn_if_exposed(config: &ServeConfig, auth: &crate::auth::Auth, tls: bool) {
    if config.listen.ip().is_loopback() {
        return;
    }
    if !auth.is_enabled() {
        tracing::warn!(
            listen = %config.listen,
            "SECURITY: listening beyond loopback with no --agent-token/--viewer-token: anyone who \
             can reach this port can report jobs and read every machine's backup history"
        );
    } else if !tls {
        tracing::warn!(
            listen = %config.listen,
            "SECURITY: bearer tokens travel in clear text; set --tls-cert and --tls-key"
        );
    }
}

fn ui_dir(config: &ServeConfig) -> Option<PathBuf> {
    match &config.ui_dir {
        Some(dir) => Some(dir.clone()),
        None => {
            let default = PathBuf::from("clients/web/dist");
            default.join("index.html").exists().then_some(default)
        }
    }
}

fn cors_layer(origins: &[String]) -> Result<tower_http::cors::CorsLayer> {
    use http::header::HeaderName;
    let origins = origins
        .iter()
        .map(|o| o.parse::<http::HeaderValue>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| {
            Error::invalid(
                "allowed-origin",
                "must be an origin like https://ops.example.com",
            )
        })?;
    Ok(tower_http::cors::CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([http::Method::POST, http::Method::GET, http::Method::OPTIONS])
        .allow_headers(
            [
                "content-type",
                "x-grpc-web",
                "x-user-agent",
                "grpc-timeout",
                "authorization",
            ]
            .map(HeaderName::from_static),
        )
        .expose_headers(
            ["grpc-status", "grpc-message", "grpc-status-details-bin"].map(HeaderName::from_static),
        ))
}

async fn probe_health(
    store: Store,
    health: tonic_health::server::HealthReporter,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = None;
    loop {
        let status = match store.ping().await {
            Ok(()) => ServingStatus::Serving,
            Err(e) => {
                tracing::warn!(error = %e, "database unreachable: health is NOT_SERVING");
                ServingStatus::NotServing
            }
        };
        if last != Some(status) {
            health.set_service_status("", status).await;
            health
                .set_service_status(
                    <TelemetryServiceServer<Service> as tonic::server::NamedService>::NAME,
                    status,
                )
                .await;
            last = Some(status);
        }
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_PROBE_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Abandons stalled jobs every quarter of the stall timeout (between 250 ms and 30 s) until
/// shutdown; a failed sweep is logged and tried again at the next one.
async fn sweep_forever(hub: Arc<Hub>, stall_timeout: Duration, mut stop: watch::Receiver<bool>) {
    let every = (stall_timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let started = std::time::Instant::now();
        match hub.sweep().await {
            Ok(abandoned) => tracing::debug!(
                abandoned = abandoned.len(),
                micros = started.elapsed().as_micros() as u64,
                "stall sweep finished"
            ),
            Err(e) => tracing::warn!(error = %e, "stall sweep failed; will retry"),
        }
    }
}
