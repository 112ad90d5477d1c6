//! How subscriptions reach the server (`--mode`), and the TLS client of `h2-tls`: ALPN `h2`,
//! trusting the certificate given by `--ca` (a self-signed one will do), or any certificate
//! with `--insecure`.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Serialize;
use tokio_rustls::TlsConnector;

/// The protocol path of every subscription.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// HTTP/1.1, the subscribe as the first request on a fresh connection
    #[default]
    H1,
    /// HTTP/1.1, a `GET /healthz` first, then the subscribe on the same keep-alive connection
    H1Reuse,
    /// HTTP/2 with prior knowledge on a cleartext connection
    H2c,
    /// HTTP/2 over TLS, negotiated with ALPN
    H2Tls,
}

impl Mode {
    /// The name `--mode` takes.
    pub(super) fn name(self) -> &'static str {
        match self {
            Mode::H1 => "h1",
            Mode::H1Reuse => "h1-reuse",
            Mode::H2c => "h2c",
            Mode::H2Tls => "h2-tls",
        }
    }

    /// Whether subscriptions are HTTP/2 streams.
    pub(super) fn multiplexed(self) -> bool {
        matches!(self, Mode::H2c | Mode::H2Tls)
    }

    /// The URL scheme the mode needs.
    pub(super) fn scheme(self) -> &'static str {
        match self {
            Mode::H2Tls => "https",
            _ => "http",
        }
    }
}

/// The TLS client of `h2-tls`, and what `--ca` holds (the publisher trusts it too).
#[derive(Clone)]
pub(super) struct Tls {
    pub(super) connector: TlsConnector,
    /// `--ca` as read, for the publisher's HTTP client.
    pub(super) ca_pem: Option<Vec<u8>>,
    pub(super) insecure: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca", &self.ca_pem.is_some())
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl Tls {
    pub(super) fn new(ca: Option<&Path>, insecure: bool) -> Result<Tls, String> {
        let connector = tls_connector(ca, insecure)?;
        let ca_pem = match ca.filter(|_| !insecure) {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|error| format!("cannot read --ca {}: {error}", path.display()))?,
            ),
            None => None,
        };
        Ok(Tls {
            connector,
            ca_pem,
            insecure,
        })
    }
}

/// The TLS client for `h2-tls`.
fn tls_connector(ca: Option<&Path>, insecure: bool) -> Result<TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS: {error}"))?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let ca =
            ca.ok_or("--mode h2-tls needs --ca FILE (the server's certificate) or --insecure")?;
        let mut roots = rustls::RootCertStore::empty();
        let certificates = CertificateDer::pem_file_iter(ca)
            .map_err(|error| format!("cannot read --ca {}: {error}", ca.display()))?;
        for certificate in certificates {
            let certificate = certificate
                .map_err(|error| format!("cannot read --ca {}: {error}", ca.display()))?;
            roots
                .add(certificate)
                .map_err(|error| format!("--ca {}: {error}", ca.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("--ca {}: no certificate in it", ca.display()));
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// `--insecure`: any certificate is accepted; signatures are still checked, so the handshake
/// costs the server what it costs with a real client.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_needs_a_ca_or_insecure() {
        let error = tls_connector(None, false).err().unwrap_or_default();
        assert!(
            error.contains("--ca") && error.contains("--insecure"),
            "{error}"
        );
        assert!(tls_connector(None, true).is_ok());
        let error = tls_connector(Some(Path::new("/nonexistent/ca.pem")), false)
            .err()
            .unwrap_or_default();
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
    }

    #[test]
    fn modes_say_what_they_need() {
        assert_eq!(Mode::H2Tls.scheme(), "https");
        assert_eq!(Mode::H1Reuse.scheme(), "http");
        assert!(Mode::H2c.multiplexed() && !Mode::H1Reuse.multiplexed());
        assert_eq!(Mode::H1Reuse.name(), "h1-reuse");
    }
}
