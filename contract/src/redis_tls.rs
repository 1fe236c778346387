//! The bot's Redis client, shared by the worker and the operator: a `redis://` or `rediss://` URL
//! and, for TLS, an optional CA bundle (PEM): the worker's `REDIS_CA_FILE`, the operator's read of
//! the Secret key `spec.redis.tls.caSecretRef` names (mounted as that file into the pods).
//!
//! Trust: with a bundle, only the bundle's certificates (a private CA, e.g. the chart's own Redis);
//! without one, the Mozilla roots compiled into the binary (`webpki-roots`, the same the gateway
//! connection trusts), enough for a managed Redis with a public certificate. The host name of the
//! URL must match the server's certificate either way; there is no insecure mode.
//!
//! The bundle is checked when it is read (at least one certificate, each a usable trust anchor),
//! so a wrong file fails at start with its name, not as a refused handshake later. Errors name
//! the bundle's origin and never carry the URL (which may hold the password).

use std::path::Path;

use redis::{ConnectionAddr, ConnectionInfo, TlsCertificates};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why the Redis client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RedisClientError {
    #[error("cannot read the Redis CA bundle {origin}: {source}")]
    ReadCa {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the Redis CA bundle {origin} is not PEM certificates: {reason}")]
    BadPem { origin: String, reason: String },
    #[error("the Redis CA bundle {origin} holds no certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate { origin: String },
    #[error("the Redis CA bundle {origin} holds a certificate that is no usable CA: {reason}")]
    BadCertificate { origin: String, reason: String },
    #[error("a Redis CA bundle is set but the Redis URL is not rediss:// (TLS)")]
    NotTls,
    /// The URL does not parse (the redis crate's reason, which does not quote the URL).
    #[error("invalid Redis URL: {0}")]
    Url(#[source] redis::RedisError),
}

impl RedisClientError {
    /// A fixed label for logs and metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::ReadCa { .. } => "redis_ca_read",
            Self::BadPem { .. } | Self::NoCertificate { .. } | Self::BadCertificate { .. } => {
                "redis_ca_invalid"
            }
            Self::NotTls => "redis_ca_without_tls",
            Self::Url(_) => "redis_url",
        }
    }
}

/// A checked CA bundle: PEM certificates, each a usable trust anchor.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CaBundle {
    pem: Vec<u8>,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle")
            .field("bytes", &self.pem.len())
            .finish()
    }
}

impl CaBundle {
    /// Reads and checks the bundle at `path` (`REDIS_CA_FILE`).
    pub fn read(path: &Path) -> Result<Self, RedisClientError> {
        let origin = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| RedisClientError::ReadCa {
            origin: origin.clone(),
            source,
        })?;
        Self::from_pem(pem, &origin)
    }

    /// Checks `pem`; `origin` names it in errors (a path, or a Secret and key).
    pub fn from_pem(pem: Vec<u8>, origin: &str) -> Result<Self, RedisClientError> {
        let mut anchors = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| RedisClientError::BadPem {
                origin: origin.to_owned(),
                reason: e.to_string(),
            })?;
            anchors
                .add(cert)
                .map_err(|e| RedisClientError::BadCertificate {
                    origin: origin.to_owned(),
                    reason: e.to_string(),
                })?;
        }
        if anchors.is_empty() {
            return Err(RedisClientError::NoCertificate {
                origin: origin.to_owned(),
            });
        }
        Ok(Self { pem })
    }

    /// The checked PEM, for a client the redis crate builds (the sentinel one).
    pub(crate) fn pem(&self) -> &[u8] {
        &self.pem
    }

    /// A bundle that skips the checks, for tests of what refuses one.
    #[cfg(test)]
    pub(crate) fn test_only() -> Self {
        Self { pem: Vec::new() }
    }
}

/// The client for `info`: plain or TLS as its scheme says, trusting `ca` when given (else the
/// compiled-in roots). A bundle with a `redis://` URL is refused rather than ignored: the user
/// meant TLS.
pub fn client(
    info: ConnectionInfo,
    ca: Option<&CaBundle>,
) -> Result<redis::Client, RedisClientError> {
    let Some(ca) = ca else {
        if matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
            tls_provider();
        }
        return redis::Client::open(info).map_err(RedisClientError::Url);
    };
    if !matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
        return Err(RedisClientError::NotTls);
    }
    tls_provider();
    redis::Client::build_with_tls(
        info,
        TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.pem.clone()),
        },
    )
    .map_err(RedisClientError::Url)
}

/// redis builds its rustls config with the process's default provider (at the first connect):
/// make it ring, as for kube and reqwest, whatever else the binary links.
pub(crate) fn tls_provider() {
    crate::rest::install_crypto_provider();
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::IntoConnectionInfo;

    const NOT_A_CERT: &str =
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";

    fn info(url: &str) -> ConnectionInfo {
        url.into_connection_info().expect("a URL")
    }

    #[test]
    fn a_bundle_without_a_certificate_is_refused_with_its_origin() {
        for empty in [
            "",
            "just text\n",
            "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
        ] {
            let error = CaBundle::from_pem(empty.into(), "Secret \"ca\" key \"ca.crt\"")
                .expect_err("no certificate");
            assert_eq!(error.metric_label(), "redis_ca_invalid");
            assert!(
                error.to_string().contains("Secret \"ca\" key \"ca.crt\""),
                "{error}"
            );
        }
    }

    #[test]
    fn a_certificate_that_does_not_parse_is_refused() {
        let error = CaBundle::from_pem(NOT_A_CERT.into(), "/etc/redis-ca/ca.crt")
            .expect_err("not a certificate");
        assert!(
            matches!(error, RedisClientError::BadCertificate { .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("/etc/redis-ca/ca.crt"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let error = CaBundle::read(Path::new("/nonexistent/redis-ca.pem")).expect_err("missing");
        assert_eq!(error.metric_label(), "redis_ca_read");
        assert!(
            error.to_string().contains("/nonexistent/redis-ca.pem"),
            "{error}"
        );
    }

    #[test]
    fn plain_urls_need_no_bundle_and_refuse_one() {
        assert!(client(info("redis://:secret@127.0.0.1:6379/"), None).is_ok());
        assert!(client(info("rediss://127.0.0.1:6379/"), None).is_ok());
        let bundle = CaBundle {
            pem: NOT_A_CERT.into(),
        };
        let error = client(info("redis://:secret@127.0.0.1:6379/"), Some(&bundle))
            .expect_err("TLS bundle on a plain URL");
        assert_eq!(error.metric_label(), "redis_ca_without_tls");
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
