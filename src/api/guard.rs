//! The tower layer in front of `TelemetryService` (native gRPC and grpc-web alike, since
//! tonic-web translates before routing): bearer-token check per method, the bound on open
//! WatchJob streams, the rejected-report counters, and a client-facing code for undecodable
//! requests (tonic calls them INTERNAL; they are the client's INVALID_ARGUMENT).
//! Applied in `server.rs` together with the 64 KiB request limit.

use crate::auth::{Auth, Role};
use crate::metrics;
use http::{Request, Response};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::Status;

/// Wraps a service with [`Guard`].
#[derive(Clone)]
pub struct GuardLayer {
    auth: Auth,
    watchers: Arc<Semaphore>,
}

impl GuardLayer {
    /// `max_watchers`: WatchJob streams open at once before new ones are RESOURCE_EXHAUSTED.
    pub fn new(auth: Auth, max_watchers: usize) -> Self {
        GuardLayer {
            auth,
            watchers: Arc::new(Semaphore::new(max_watchers.min(Semaphore::MAX_PERMITS))),
        }
    }
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            auth: self.auth.clone(),
            watchers: self.watchers.clone(),
        }
    }
}

/// See the module doc.
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    auth: Auth,
    watchers: Arc<Semaphore>,
}

impl<S: NamedService> NamedService for Guard<S> {
    const NAME: &'static str = S::NAME;
}

/// Which kind of call a request path names.
#[derive(Clone, Copy, PartialEq)]
enum Call {
    Report,
    Watch,
    Read,
}

fn call_of(path: &str) -> Call {
    match path.rsplit('/').next() {
        Some("ReportProgress") => Call::Report,
        Some("WatchJob") => Call::Watch,
        _ => Call::Read,
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<S> tower::Service<Request<Body>> for Guard<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> BoxFuture {
        let call = call_of(req.uri().path());
        let need = match call {
            Call::Report => Role::Agent,
            Call::Watch | Call::Read => Role::Viewer,
        };
        if let Err(denied) = self.auth.authorize(req.headers(), need) {
            tracing::debug!(path = req.uri().path(), reason = %denied, "call refused");
            if call == Call::Report {
                metrics::report_rejected(Status::from(denied).code());
            }
            return Box::pin(std::future::ready(Ok(Status::from(denied).into_http())));
        }
        let permit = match call {
            Call::Watch => match self.watchers.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    return Box::pin(std::future::ready(Ok(Status::resource_exhausted(
                        "too many WatchJob streams are open on this hub; retry later",
                    )
                    .into_http())))
                }
            },
            _ => None,
        };
        // The clone is ready only after poll_ready; swap so the ready one serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let res = inner.call(req).await?;
            // Errors before or instead of a response body come as "trailers only": the status
            // is in the headers.
            let res = match Status::from_header_map(res.headers()) {
                Some(status) if status.code() != tonic::Code::Ok => {
                    let status = client_facing(status);
                    if call == Call::Report {
                        metrics::report_rejected(status.code());
                    }
                    status.into_http()
                }
                _ => match permit {
                    Some(permit) => res.map(|body| {
                        Body::new(Watched {
                            body,
                            _permit: permit,
                            _gauge: metrics::WatcherGauge::open(),
                        })
                    }),
                    None => res,
                },
            };
            Ok(res)
        })
    }
}

/// tonic answers a request body that is not a protobuf message with INTERNAL; to the client it
/// is a bad argument, and INTERNAL would page an operator for someone else's garbage.
fn client_facing(status: Status) -> Status {
    /// How tonic words the request-decoding failures it reports as INTERNAL.
    const DECODING: [&str; 4] = [
        "failed to decode Protobuf message",
        "protocol error:",
        "Unexpected EOF decoding stream",
        "Missing request message",
    ];
    if status.code() == tonic::Code::Internal
        && DECODING.iter().any(|p| status.message().starts_with(p))
    {
        return Status::invalid_argument(format!(
            "request: not a valid gRPC message of this call ({})",
            status.message()
        ));
    }
    status
}

/// A WatchJob response body that holds its place among the open streams until it ends or
/// the client goes away.
struct Watched {
    body: Body,
    _permit: OwnedSemaphorePermit,
    _gauge: metrics::WatcherGauge,
}

impl http_body::Body for Watched {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
