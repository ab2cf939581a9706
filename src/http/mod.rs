//! Plain HTTP for scripts and browsers, on the hub's one port beside gRPC: JSON twins of the
//! read calls and WatchJob as server-sent events, answered by the same [`Hub`] methods as the
//! gRPC service.
//!
//! | route (all `GET`) | gRPC twin | query parameters |
//! |---|---|---|
//! | `/api/v1/telemetry/history/{job_id}` | GetHistory | — |
//! | `/api/v1/machines` | ListMachines | `page_size`, `page_token` |
//! | `/api/v1/machines/{machine}/jobs` | ListJobs of one machine | `page_size`, `page_token` |
//! | `/api/v1/jobs` | ListJobs of every machine | `page_size`, `page_token` |
//! | `/api/v1/machines/{machine}/summary` | GetMachineSummary | — |
//! | `/api/v1/jobs/{job_id}/events` | WatchJob | `interval` (`1s`, `1.5s`, `2m`) |
//!
//! Bodies are the gRPC answer in the protobuf JSON mapping ([`json`]). Path segments are
//! percent-decoded (`rack%201%2Fdb` names machine `rack 1/db`); an unknown query parameter is
//! INVALID_ARGUMENT, so a typo does not go unnoticed. Failures are JSON with a matching HTTP
//! status ([`error`]).
//!
//! Events (`text/event-stream`): every message of the watch stream is one event whose data is
//! the `WatchJobResponse` JSON on one line: `event: update` for the first (full state, every
//! point so far) and each one per interval (new points only), `event: end` for the last, which
//! carries `performance`; then the response ends. A watcher of an ended job gets the `end`
//! event alone. `event: failure` (data `{"code":…,"message":…}`) ends a stream that failed
//! midway; a stream that closes without `end` was cut by the hub shutting down. A browser's
//! `EventSource` reconnects whenever a stream closes, so close it on `end`. Comment lines keep an
//! idle connection open through proxies. Event streams count as watchers in `/metrics`, and at
//! most `--max-watchers` are open at once (then RESOURCE_EXHAUSTED, HTTP 429).
//!
//! When tokens are configured, every route here needs a viewer token
//! (`authorization: Bearer …`), as the gRPC reads do: UNAUTHENTICATED (401) without a valid
//! one, PERMISSION_DENIED (403) for an agent token. A browser's `EventSource` cannot send that
//! header; a fetch-based event-stream reader can.

pub mod error;
pub mod json;

use crate::auth::{Auth, Role};
use crate::error::{Error, Result};
use crate::hub::{Hub, WatchStream};
use crate::metrics::WatcherGauge;
use crate::proto;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use error::ApiError;
use http::request::Parts;
use http::{header, Uri};
use json::{ProtoJson, ProtoMessage};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::StreamExt;

/// Time between keep-alive comments on an event stream with no update to send.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The routes under `/api`, to merge into the server's router before the GUI's fallback;
/// `max_watchers` bounds the event streams open at once.
pub fn router(hub: Arc<Hub>, auth: Auth, max_watchers: usize) -> Result<Router> {
    let api = Api {
        hub,
        json: Arc::new(ProtoJson::new()?),
        watchers: Arc::new(Semaphore::new(max_watchers.min(Semaphore::MAX_PERMITS))),
    };
    Ok(Router::new()
        .route("/api/v1/telemetry/history/{job_id}", get(history))
        .route("/api/v1/machines", get(machines))
        .route("/api/v1/machines/{machine}/jobs", get(machine_jobs))
        .route("/api/v1/machines/{machine}/summary", get(machine_summary))
        .route("/api/v1/jobs", get(jobs))
        .route("/api/v1/jobs/{job_id}/events", get(events))
        .route("/api", any(no_such_endpoint))
        .route("/api/{*rest}", any(no_such_endpoint))
        .layer(middleware::from_fn_with_state(auth, require_viewer))
        .with_state(api))
}

/// Refuses a request without a viewer token when tokens are configured.
async fn require_viewer(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    match auth.authorize(request.headers(), Role::Viewer) {
        Ok(()) => next.run(request).await,
        Err(denied) => ApiError(tonic::Status::from(denied)).into_response(),
    }
}

/// What every handler needs.
#[derive(Clone)]
struct Api {
    hub: Arc<Hub>,
    json: Arc<ProtoJson>,
    /// One permit per open event stream.
    watchers: Arc<Semaphore>,
}

impl Api {
    fn reply<M: ProtoMessage>(&self, message: &M) -> Result<Response, ApiError> {
        let mut body = self.json.to_string(message)?;
        body.push('\n');
        Ok((
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response())
    }
}

async fn history(
    State(api): State<Api>,
    Segment(job_id): Segment,
    query: Params,
) -> Result<Response, ApiError> {
    query.only(&[])?;
    api.reply(&api.hub.history(&job_id).await?)
}

async fn machines(State(api): State<Api>, query: Params) -> Result<Response, ApiError> {
    let (page_size, page_token) = query.page()?;
    api.reply(&api.hub.list_machines(page_size, &page_token).await?)
}

async fn machine_jobs(
    State(api): State<Api>,
    Segment(machine): Segment,
    query: Params,
) -> Result<Response, ApiError> {
    let (page_size, page_token) = query.page()?;
    api.reply(&api.hub.list_jobs(&machine, page_size, &page_token).await?)
}

async fn jobs(State(api): State<Api>, query: Params) -> Result<Response, ApiError> {
    let (page_size, page_token) = query.page()?;
    api.reply(&api.hub.list_jobs("", page_size, &page_token).await?)
}

async fn machine_summary(
    State(api): State<Api>,
    Segment(machine): Segment,
    query: Params,
) -> Result<Response, ApiError> {
    query.only(&[])?;
    api.reply(&api.hub.machine_summary(&machine).await?)
}

async fn events(
    State(api): State<Api>,
    Segment(job_id): Segment,
    query: Params,
) -> Result<Response, ApiError> {
    query.only(&["interval"])?;
    let interval = query.get("interval").map(parse_interval).transpose()?;
    let permit = api.watchers.clone().try_acquire_owned().map_err(|_| {
        ApiError(tonic::Status::resource_exhausted(
            "too many event streams are open on this hub; retry later",
        ))
    })?;
    let updates = api.hub.watch(&job_id, interval).await?;
    let watcher = Watcher {
        updates,
        json: api.json,
        _permit: permit,
        _gauge: WatcherGauge::open(),
    };
    let events = futures_util::stream::unfold(Some(watcher), |state| async move {
        let mut watcher = state?;
        let (event, more) = watch_event(&watcher.json, watcher.updates.next().await?);
        Some((Ok::<_, Infallible>(event), more.then_some(watcher)))
    });
    let stream = Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE));
    // Asks nginx-like proxies not to hold events back.
    Ok(([("x-accel-buffering", "no")], stream).into_response())
}

/// An open event stream: the hub's watch and its place among the watchers, both released when
/// the stream ends or the client goes away.
struct Watcher {
    updates: WatchStream,
    json: Arc<ProtoJson>,
    _permit: OwnedSemaphorePermit,
    _gauge: WatcherGauge,
}

/// One watch message as an event, and whether the stream goes on after it.
fn watch_event(json: &ProtoJson, update: Result<proto::WatchJobResponse>) -> (Event, bool) {
    let written = update.and_then(|u| Ok((u.performance.is_some(), json.to_string(&u)?)));
    match written {
        Ok((false, data)) => (Event::default().event("update").data(data), true),
        Ok((true, data)) => (Event::default().event("end").data(data), false),
        Err(e) => {
            let data = ApiError::from(e).body().to_string();
            (Event::default().event("failure").data(data), false)
        }
    }
}

/// `1s`, `500ms`, `2m` (humantime), or the protobuf JSON form of a Duration, `1.5s`.
fn parse_interval(text: &str) -> Result<Duration> {
    humantime::parse_duration(text)
        .ok()
        .or_else(|| {
            let seconds: f64 = text.strip_suffix('s')?.parse().ok()?;
            Duration::try_from_secs_f64(seconds).ok()
        })
        .ok_or_else(|| Error::invalid("interval", "must be a duration like 1s, 1.5s or 2m"))
}

async fn no_such_endpoint(uri: Uri) -> ApiError {
    ApiError(tonic::Status::not_found(format!(
        "no endpoint at {}; see /api/v1/machines, /api/v1/jobs, /api/v1/telemetry/history/{{job_id}}",
        uri.path()
    )))
}

/// The one path parameter of a route, percent-decoded; a rejection is INVALID_ARGUMENT JSON.
struct Segment(String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Segment(value)),
            Err(e) => Err(Error::invalid("path", e.body_text()).into()),
        }
    }
}

/// Query parameters, checked against the names each route takes.
struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match Query::try_from_uri(&parts.uri) {
            Ok(Query(pairs)) => Ok(Params(pairs)),
            Err(e) => Err(Error::invalid("query", e.body_text()).into()),
        }
    }
}

impl Params {
    /// Rejects any parameter not in `names`.
    fn only(&self, names: &[&str]) -> Result<()> {
        match self.0.iter().find(|(k, _)| !names.contains(&k.as_str())) {
            None => Ok(()),
            Some((k, _)) if names.is_empty() => Err(Error::invalid(
                "query",
                format!("unknown parameter {k}: this endpoint takes none"),
            )),
            Some((k, _)) => Err(Error::invalid(
                "query",
                format!(
                    "unknown parameter {k}: this endpoint takes {}",
                    names.join(", ")
                ),
            )),
        }
    }

    /// The last value given for `name`.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `page_size` (absent or 0: the default) and `page_token` (absent: the first page).
    fn page(&self) -> Result<(u32, String)> {
        self.only(&["page_size", "page_token"])?;
        let page_size = match self.get("page_size") {
            None | Some("") => 0,
            Some(text) => text.parse().map_err(|_| {
                Error::invalid(
                    "page_size",
                    "must be a whole number from 0 (the default, 50) up; at most 500 are returned",
                )
            })?,
        };
        Ok((
            page_size,
            self.get("page_token").unwrap_or_default().to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_like_flags_or_protobuf_json() {
        assert_eq!(parse_interval("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_interval("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_interval("1.5s").unwrap(), Duration::from_millis(1500));
        for bad in ["", "fast", "-1s", "1.5", "NaNs"] {
            let e = parse_interval(bad).unwrap_err().to_string();
            assert!(e.starts_with("interval:"), "{bad}: {e}");
        }
    }

    #[test]
    fn paging_parameters_are_checked_by_name() {
        let q = |pairs: &[(&str, &str)]| {
            Params(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert_eq!(q(&[]).page().unwrap(), (0, String::new()));
        assert_eq!(
            q(&[("page_size", "20"), ("page_token", "abc")])
                .page()
                .unwrap(),
            (20, "abc".to_string())
        );
        let e = q(&[("page_size", "ten")]).page().unwrap_err().to_string();
        assert!(e.starts_with("page_size:"), "{e}");
        let e = q(&[("page_size", "-1")]).page().unwrap_err().to_string();
        assert!(e.starts_with("page_size:"), "{e}");
        let e = q(&[("pagesize", "10")]).page().unwrap_err().to_string();
        assert!(e.contains("unknown parameter pagesize"), "{e}");
        assert!(q(&[("interval", "1s")]).only(&[]).is_err());
    }
}
