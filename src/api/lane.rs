//! The native-gRPC lane: agents' `TelemetryService` calls (`content-type: application/grpc`) go
//! straight to the guarded service, past the HTTP router and the grpc-web translation that
//! browsers, the GUI and curl need. Everything else takes the router. Applied in `server.rs`.

use http::{Request, Response};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::server::NamedService;
use tower::ServiceExt;

/// Wraps the router with [`Lane`].
#[derive(Clone)]
pub struct LaneLayer<G> {
    telemetry: G,
}

impl<G> LaneLayer<G> {
    /// `telemetry`: the guarded `TelemetryService`, the same one the router serves grpc-web with.
    pub fn new(telemetry: G) -> Self {
        LaneLayer { telemetry }
    }
}

impl<G: Clone, S> tower::Layer<S> for LaneLayer<G> {
    type Service = Lane<G, S>;

    fn layer(&self, router: S) -> Lane<G, S> {
        Lane {
            telemetry: self.telemetry.clone(),
            router,
        }
    }
}

/// See the module doc.
#[derive(Clone)]
pub struct Lane<G, S> {
    telemetry: G,
    router: S,
}

/// A native gRPC call to the service named `service` (not grpc-web, which the router
/// translates).
fn is_native_call(req: &Request<Body>, service: &str) -> bool {
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct == "application/grpc" || ct.starts_with("application/grpc+"));
    let path = req.uri().path();
    grpc && path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(service))
        .is_some_and(|method| method.starts_with('/'))
}

type BoxFuture<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

impl<G, S> tower::Service<Request<Body>> for Lane<G, S>
where
    G: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + 'static,
    G::Future: Send + 'static,
    S: tower::Service<Request<Body>, Response = Response<Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.router.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if is_native_call(&req, G::NAME) {
            let telemetry = self.telemetry.clone();
            return Box::pin(async move {
                match telemetry.oneshot(req).await {
                    Ok(response) => Ok(response),
                    Err(never) => match never {},
                }
            });
        }
        Box::pin(self.router.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, content_type: &str) -> Request<Body> {
        Request::builder()
            .uri(path)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn only_native_grpc_calls_of_the_service_take_the_lane() {
        let telemetry = "backwatch.v1.TelemetryService";
        let report = "/backwatch.v1.TelemetryService/ReportProgress";
        let is = |path, content_type| is_native_call(&request(path, content_type), telemetry);
        assert!(is(report, "application/grpc"));
        assert!(is(report, "application/grpc+proto"));
        // Browsers' grpc-web needs the router's translation; other services and paths too.
        assert!(!is(report, "application/grpc-web"));
        assert!(!is(report, "application/grpc-web-text"));
        assert!(!is(
            "/backwatch.v1.TelemetryServiceX/Report",
            "application/grpc"
        ));
        assert!(!is("/grpc.health.v1.Health/Check", "application/grpc"));
        assert!(!is("/api/v1/machines", "application/json"));
    }
}
