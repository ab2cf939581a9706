//! Connecting to a hub: endpoint, TLS (CA file, domain) and the bearer token on every call.

use std::path::PathBuf;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::proto::telemetry_service_client::TelemetryServiceClient;

/// A generated client whose calls carry the configured bearer token.
pub type HubClient = TelemetryServiceClient<InterceptedService<Channel, BearerToken>>;

/// Where the hub is and how to talk to it.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// `http://host:port`, or `https://…` for TLS.
    pub endpoint: String,
    /// Sent as `authorization: Bearer <token>` on every call when set.
    pub token: Option<String>,
    /// PEM file with the CA that signed the hub's certificate; the system roots when unset.
    pub ca_file: Option<PathBuf>,
    /// Name to verify the hub's certificate against, when it differs from the endpoint's host.
    pub tls_domain: Option<String>,
    /// A call that takes longer is abandoned and counts as a transport failure (retried).
    pub request_timeout: Duration,
    /// How long to wait for a TCP/TLS connection before giving up on an attempt.
    pub connect_timeout: Duration,
}

/// Why a hub connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid hub endpoint {endpoint:?}: {source}")]
    Endpoint {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("cannot read CA file {path:?}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid TLS settings: {0}")]
    Tls(tonic::transport::Error),
    #[error("the token cannot be sent as a header: {0}")]
    Token(String),
}

impl HubOptions {
    /// Plain-text connection to `endpoint` without a token, with default timeouts.
    pub fn new(endpoint: impl Into<String>) -> Self {
        HubOptions {
            endpoint: endpoint.into(),
            token: None,
            ca_file: None,
            tls_domain: None,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// One HTTP/2 connection, opened on first use and reopened after failures, so it can be
    /// created while the hub is down.
    pub fn channel(&self) -> Result<Channel, ConnectError> {
        let bad = |source| ConnectError::Endpoint {
            endpoint: self.endpoint.clone(),
            source,
        };
        let mut endpoint = Endpoint::from_shared(self.endpoint.clone())
            .map_err(bad)?
            .timeout(self.request_timeout)
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if self.endpoint.starts_with("https://") || self.ca_file.is_some() {
            let mut tls = ClientTlsConfig::new();
            match &self.ca_file {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|source| ConnectError::CaFile {
                        path: path.clone(),
                        source,
                    })?;
                    tls = tls.ca_certificate(Certificate::from_pem(pem));
                }
                None => tls = tls.with_native_roots(),
            }
            if let Some(domain) = &self.tls_domain {
                tls = tls.domain_name(domain.clone());
            }
            endpoint = endpoint.tls_config(tls).map_err(ConnectError::Tls)?;
        }
        Ok(endpoint.connect_lazy())
    }

    /// A client on its own connection.
    pub fn client(&self) -> Result<HubClient, ConnectError> {
        self.client_on(self.channel()?)
    }

    /// A client on an existing connection (connections are shared by cloning the channel).
    pub fn client_on(&self, channel: Channel) -> Result<HubClient, ConnectError> {
        let token = match &self.token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|e| ConnectError::Token(e.to_string()))?,
            ),
            None => None,
        };
        Ok(TelemetryServiceClient::with_interceptor(
            channel,
            BearerToken(token),
        ))
    }
}

/// Adds `authorization: Bearer …` to each call when a token is configured.
#[derive(Debug, Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}
