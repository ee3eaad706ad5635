//! TLS for Postgres clients: the certificate chain and key the gateway
//! serves, read once at startup into a rustls acceptor (ring provider).
//!
//! Invariant: a gateway configured with TLS never starts without a usable
//! certificate and key; every failure names the file and what is wrong
//! with it, and nothing here panics on a file's contents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgwire::tokio::tokio_rustls::rustls;
use pgwire::tokio::TlsAcceptor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::GatewayError;

/// Largest certificate chain or key file read (a chain is a few KiB).
pub(crate) const TLS_FILE_BYTES_MAX: u64 = 1 << 20;
/// ALPN name Postgres 17 clients send with direct TLS negotiation
/// (`sslnegotiation=direct`); pgwire refuses direct TLS without it.
const POSTGRESQL_ALPN: &[u8] = b"postgresql";

/// Where the gateway's TLS certificate and key are, and whether clients
/// must use TLS.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain, the gateway's certificate first.
    pub cert: PathBuf,
    /// PEM private key of the first certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Refuse sessions that did not negotiate TLS (28000).
    pub required: bool,
}

/// What the gateway serves TLS with.
pub(crate) struct LoadedTls {
    pub(crate) acceptor: TlsAcceptor,
    /// The chain as read, for SCRAM channel binding (`tls-server-end-point`
    /// hashes the gateway's certificate).
    pub(crate) cert_pem: Vec<u8>,
}

/// Reads and checks both files; the acceptor only if they make a working
/// rustls server configuration.
pub(crate) fn load(config: &TlsConfig) -> Result<LoadedTls, GatewayError> {
    let cert_pem = read_file("certificate", &config.cert)?;
    let key_pem = read_file("private key", &config.key)?;
    let server_config = server_config(&cert_pem, &config.cert, &key_pem, &config.key)?;
    Ok(LoadedTls {
        acceptor: TlsAcceptor::from(Arc::new(server_config)),
        cert_pem,
    })
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, GatewayError> {
    let error = |reason: String| GatewayError::TlsFile {
        what,
        path: path.to_owned(),
        reason,
    };
    let length = std::fs::metadata(path)
        .map_err(|source| error(source.to_string()))?
        .len();
    if length > TLS_FILE_BYTES_MAX {
        return Err(error(format!(
            "{length} bytes is more than the {TLS_FILE_BYTES_MAX} a PEM file may have"
        )));
    }
    std::fs::read(path).map_err(|source| error(source.to_string()))
}

/// The rustls configuration for a PEM chain and key (pure: no file IO, so
/// malformed contents are tested directly).
pub(crate) fn server_config(
    cert_pem: &[u8],
    cert_path: &Path,
    key_pem: &[u8],
    key_path: &Path,
) -> Result<rustls::ServerConfig, GatewayError> {
    let cert_error = |reason: String| GatewayError::TlsFile {
        what: "certificate",
        path: cert_path.to_owned(),
        reason,
    };
    let key_error = |reason: String| GatewayError::TlsFile {
        what: "private key",
        path: key_path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| cert_error(format!("not a PEM certificate chain ({error})")))?;
    if chain.is_empty() {
        return Err(cert_error("no CERTIFICATE section in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|error| key_error(format!("no PEM private key in the file ({error})")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| cert_error(format!("TLS protocol versions: {error}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        // rustls checks that the key is usable and matches the certificate.
        .map_err(|error| key_error(format!("does not fit the certificate: {error}")))?;
    config.alpn_protocols = vec![POSTGRESQL_ALPN.to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> (PathBuf, PathBuf) {
        ("server.crt".into(), "server.key".into())
    }

    #[test]
    fn a_file_without_a_certificate_is_refused_naming_it() {
        let (cert, key) = paths();
        let error = server_config(b"hello", &cert, b"", &key).expect_err("no certificate");
        assert!(
            matches!(&error, GatewayError::TlsFile { what: "certificate", path, .. }
                if *path == cert),
            "{error:?}"
        );
        assert!(error.to_string().contains("server.crt"), "{error}");
        assert_eq!(error.sqlstate(), "F0000");
    }

    #[test]
    fn a_broken_pem_certificate_is_refused() {
        let (cert, key) = paths();
        let broken = b"-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n";
        let error = server_config(broken, &cert, b"", &key).expect_err("bad PEM");
        assert!(
            matches!(
                &error,
                GatewayError::TlsFile {
                    what: "certificate",
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn a_missing_file_is_refused_naming_it() {
        let config = TlsConfig {
            cert: "/nonexistent/arbor-test.crt".into(),
            key: "/nonexistent/arbor-test.key".into(),
            required: false,
        };
        let error = load(&config).err().expect("no such file");
        assert!(
            error.to_string().contains("/nonexistent/arbor-test.crt"),
            "{error}"
        );
    }
}
