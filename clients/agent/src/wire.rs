//! The load generator's `ReportProgress` client: gRPC framing written straight onto one HTTP/2
//! connection (the `h2` crate), without the request queue and task that tonic's `Channel` puts
//! in front of every call. The generator shares the machine with the server it measures, so
//! every microsecond it spends per report is taken from that server's cores.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::client::SendRequest;
use http::header::{AUTHORIZATION, CONTENT_TYPE, TE};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use prost::Message;
use tokio::net::TcpStream;
use tonic::{Code, Status};

use crate::hub::HubOptions;
use crate::proto::ReportProgressRequest;

const PATH: &str = "/backwatch.v1.TelemetryService/ReportProgress";

/// Why a report line could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("the load generator speaks plain http:// only, not {0:?}")]
    Scheme(String),
    #[error("invalid hub endpoint {0:?}")]
    Endpoint(String),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("HTTP/2 handshake with {0} failed: {1}")]
    Handshake(String, h2::Error),
    #[error("the token cannot be sent as a header")]
    Token,
}

/// One HTTP/2 connection that sends `ReportProgress` calls; clones share the connection. A
/// connection that broke (the hub restarted) is opened again by the next call.
#[derive(Clone)]
pub struct ReportLine {
    shared: Arc<Shared>,
}

struct Shared {
    host: String,
    uri: Uri,
    token: Option<HeaderValue>,
    timeout: Duration,
    /// The open connection; `None` once it broke.
    send: Mutex<Option<SendRequest<Bytes>>>,
    /// Held by the call that opens the connection again, so that only one does.
    reconnecting: tokio::sync::Mutex<()>,
}

impl ReportLine {
    /// Connects to the hub of `options` (plain `http://` only), with its token and request
    /// timeout.
    pub async fn connect(options: &HubOptions) -> Result<Self, LineError> {
        let endpoint = options.endpoint.trim_end_matches('/');
        let Some(host) = endpoint.strip_prefix("http://") else {
            return Err(LineError::Scheme(options.endpoint.clone()));
        };
        let uri: Uri = format!("{endpoint}{PATH}")
            .parse()
            .map_err(|_| LineError::Endpoint(options.endpoint.clone()))?;
        let token = match &options.token {
            Some(t) => {
                Some(HeaderValue::try_from(format!("Bearer {t}")).map_err(|_| LineError::Token)?)
            }
            None => None,
        };
        let send = open(host).await?;
        Ok(ReportLine {
            shared: Arc::new(Shared {
                host: host.to_string(),
                uri,
                token,
                timeout: options.request_timeout,
                send: Mutex::new(Some(send)),
                reconnecting: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The open connection, opened again first if it broke.
    async fn connection(&self) -> Result<SendRequest<Bytes>, Status> {
        if let Some(send) = self.current() {
            return Ok(send);
        }
        let _only_one = self.shared.reconnecting.lock().await;
        if let Some(send) = self.current() {
            return Ok(send);
        }
        let send = open(&self.shared.host)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        *self.lock() = Some(send.clone());
        Ok(send)
    }

    fn current(&self) -> Option<SendRequest<Bytes>> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SendRequest<Bytes>>> {
        self.shared.send.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A call failed on the connection itself: the next call opens a new one.
    fn broken(&self, e: h2::Error) -> Status {
        if e.is_io() || e.is_go_away() || e.reason().is_none() {
            *self.lock() = None;
        }
        Status::unavailable(e.to_string())
    }

    /// Sends one report and waits for its answer; the answer's content is not decoded.
    pub async fn report(&self, report: &ReportProgressRequest) -> Result<(), Status> {
        match tokio::time::timeout(self.shared.timeout, self.call(report)).await {
            Ok(result) => result,
            Err(_) => Err(Status::cancelled("timeout expired")),
        }
    }

    async fn call(&self, report: &ReportProgressRequest) -> Result<(), Status> {
        let len = report.encoded_len();
        let mut message = BytesMut::with_capacity(5 + len);
        message.put_u8(0);
        message.put_u32(len as u32);
        report
            .encode(&mut message)
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.shared.uri.clone())
            .header(CONTENT_TYPE, "application/grpc")
            .header(TE, "trailers")
            .body(())
            .map_err(|e| Status::internal(e.to_string()))?;
        if let Some(token) = &self.shared.token {
            request.headers_mut().insert(AUTHORIZATION, token.clone());
        }
        let connection = self.connection().await?;
        let mut send = connection.ready().await.map_err(|e| self.broken(e))?;
        let (response, mut body) = send
            .send_request(request, false)
            .map_err(|e| self.broken(e))?;
        body.send_data(message.freeze(), true)
            .map_err(|e| self.broken(e))?;
        let response = response.await.map_err(|e| self.broken(e))?;
        if response.status() != http::StatusCode::OK {
            return Err(Status::unknown(format!(
                "HTTP status {}",
                response.status()
            )));
        }
        // A trailers-only answer (every error) carries its status in the headers.
        if let Some(status) = grpc_status(response.headers()) {
            return status;
        }
        let mut body = response.into_body();
        while let Some(data) = body.data().await {
            let data = data.map_err(|e| self.broken(e))?;
            let _ = body.flow_control().release_capacity(data.remaining());
        }
        match body.trailers().await.map_err(|e| self.broken(e))? {
            Some(trailers) => grpc_status(&trailers)
                .unwrap_or_else(|| Err(Status::unknown("answer without grpc-status"))),
            None => Err(Status::unknown("answer without trailers")),
        }
    }
}

/// Opens an HTTP/2 connection to `host` (`host:port`).
async fn open(host: &str) -> Result<SendRequest<Bytes>, LineError> {
    let tcp = TcpStream::connect(host)
        .await
        .map_err(|e| LineError::Connect(host.to_string(), e))?;
    tcp.set_nodelay(true)
        .map_err(|e| LineError::Connect(host.to_string(), e))?;
    // hyper's client windows (tonic's too): with h2's small default the answers of a burst
    // waiting to be read would exceed its budget for small frames and close the connection.
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(2 << 20)
        .initial_connection_window_size(5 << 20)
        .handshake(tcp)
        .await
        .map_err(|e| LineError::Handshake(host.to_string(), e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(send)
}

/// The call's outcome from `grpc-status` (with `grpc-message` decoded), when present.
fn grpc_status(headers: &HeaderMap) -> Option<Result<(), Status>> {
    let status = Status::from_header_map(headers)?;
    Some(match status.code() {
        Code::Ok => Ok(()),
        _ => Err(status),
    })
}
