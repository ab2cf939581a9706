//! TLS from `--tls-cert` / `--tls-key` (PEM), served by tonic's rustls acceptor: native gRPC,
//! grpc-web, the GUI and `/metrics` all move to `https://` on the same port.

use crate::config::ServeConfig;
use crate::error::{Error, Result};
use tonic::transport::{Identity, ServerTlsConfig};

/// The TLS settings, or `None` for plain text.
pub fn server_config(config: &ServeConfig) -> Result<Option<ServerTlsConfig>> {
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
    if !String::from_utf8_lossy(&cert_pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(Error::invalid(
            "tls-cert",
            format!("{} holds no PEM certificate", cert.display()),
        ));
    }
    if !String::from_utf8_lossy(&key_pem).contains("PRIVATE KEY-----") {
        return Err(Error::invalid(
            "tls-key",
            format!("{} holds no PEM private key", key.display()),
        ));
    }
    Ok(Some(
        ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem)),
    ))
}
