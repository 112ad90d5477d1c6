//! TLS for the listener: loads the PEM certificate chain and key, offers HTTP/2 and HTTP/1.1 by
//! ALPN, and bounds what rustls buffers per connection. Cleartext connections keep working on a
//! listener without TLS (HTTP/1.1 and h2c).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};
use tokio_rustls::TlsAcceptor;

/// Bytes of outgoing TLS one connection may hold before writes wait for the socket (rustls's
/// default is 64 KiB): two of h2's 16 KiB write batches, so a connection whose peer stopped
/// reading holds a quarter as much; `--write-timeout` closes it in the end.
pub(crate) const BUFFER_LIMIT: usize = 32 * 1024;

/// Applied to every accepted connection before its handshake.
pub(crate) fn limit_buffers(connection: &mut ServerConnection) {
    connection.set_buffer_limit(Some(BUFFER_LIMIT));
}

/// Why TLS could not be set up; one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate {path}: {reason}")]
    Certificate { path: String, reason: String },
    #[error("cannot read the TLS key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("the TLS certificate and key do not work together: {0}")]
    Config(String),
}

/// An acceptor for `cert` (a PEM chain, leaf first) and `key` (a PEM private key).
pub(crate) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certificate_error = |reason: String| TlsError::Certificate {
        path: cert.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| certificate_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| certificate_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(certificate_error("no certificate in the file".into()));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
