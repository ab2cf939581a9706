//! TLS from `--tls-cert` / `--tls-key` (PEM) with rustls: native gRPC, grpc-web, the GUI,
//! `/metrics` and the JSON endpoints all move to `https://` on the same port.
//!
//! The handshake is done here rather than by tonic's `ServerTlsConfig`, which offers only `h2`
//! in ALPN: rustls then refuses every client that offers only `http/1.1` (curl --http1.1,
//! Python's urllib3, HTTP/1.1 proxies). This acceptor offers both, and hyper serves either.

use crate::config::ServeConfig;
use crate::error::{Error, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for the server to take them.
const READY_QUEUE: usize = 256;

/// The TLS acceptor, or `None` for plain text.
pub fn acceptor(config: &ServeConfig) -> Result<Option<TlsAcceptor>> {
    let (cert, key) = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => return Ok(None),
        _ => {
            return Err(Error::invalid(
                "tls-cert",
                "--tls-cert and --tls-key go together",
            ))
        }
    };
    let read = |path: &std::path::Path, flag: &'static str| {
        std::fs::read(path)
            .map_err(|e| Error::invalid(flag, format!("cannot read {}: {e}", path.display())))
    };
    let (cert_pem, key_pem) = (read(cert, "tls-cert")?, read(key, "tls-key")?);
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::invalid("tls-cert", format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(Error::invalid(
            "tls-cert",
            format!("{} holds no PEM certificate", cert.display()),
        ));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        Error::invalid(
            "tls-key",
            format!("{} holds no PEM private key: {e}", key.display()),
        )
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut tls = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS set-up: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            Error::invalid(
                "tls-key",
                format!("the key does not fit the certificate: {e}"),
            )
        })?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(tls))))
}

/// Accepted connections after their handshake, as a stream for tonic. Handshakes run
/// concurrently, so a slow or silent client never holds up the others; failed ones are logged
/// at debug level and dropped. The listener closes when the server drops the stream.
pub fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(READY_QUEUE);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
