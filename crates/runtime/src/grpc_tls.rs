//! TLS of vigil's gRPC, read from the configuration: the predictor's server ([`ServerTls`],
//! `predictor.tls.*`) and every client that calls it ([`client_endpoint`],
//! `orchestrator.predictor_tls.*`: the orchestrator, `vigil predict`, `vigil probe --grpc`).
//!
//! Files are read and their PEM checked here, so that a missing file, a key where a
//! certificate belongs or a certificate without its key stops start-up with the config key and
//! the path in the message, instead of failing each handshake later. tonic's rustls with the
//! ring provider does the TLS (TLS 1.2 and 1.3, HTTP/2 by ALPN).

use std::path::Path;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};
use vigil_config::{GrpcClientTlsSettings, GrpcServerTlsSettings};

/// Why TLS could not be set up; every message names the config key and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key} {}: cannot read the file: {source}", path.display())]
    Read {
        key: String,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{key} {}: {reason}", path.display())]
    Pem {
        key: String,
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("{keys}: {reason}")]
    Pair { keys: String, reason: String },
    #[error("predictor URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("{keys}: tonic refused the TLS settings: {reason}")]
    Tonic { keys: String, reason: String },
}

/// Result of setting up TLS.
pub type Result<T, E = TlsError> = std::result::Result<T, E>;

/// The predictor's server TLS, its files read and checked.
#[derive(Clone)]
pub struct ServerTls {
    identity: Identity,
    client_ca: Option<Certificate>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ServerTls")
            .field("mutual", &self.is_mutual())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads `settings` (whose keys are `prefix.cert_file` ...); `None` when TLS is off.
    pub fn load(settings: &GrpcServerTlsSettings, prefix: &str) -> Result<Option<Self>> {
        if !settings.enabled() {
            return Ok(None);
        }
        let (Some(cert), Some(key)) = (&settings.cert_file, &settings.key_file) else {
            return Err(TlsError::Pair {
                keys: format!("{prefix}.cert_file, {prefix}.key_file"),
                reason: "serving TLS needs both the certificate and its key".into(),
            });
        };
        let identity = identity(cert, key, prefix)?;
        let client_ca = settings
            .client_ca_file
            .as_deref()
            .map(|path| certificates(path, &format!("{prefix}.client_ca_file")))
            .transpose()?;
        let tls = Self {
            identity,
            client_ca,
        };
        // tonic parses the PEM again when the server is built (e.g. a key that does not match
        // the certificate's kind): fail here, at load, if it would.
        tonic::transport::Server::builder()
            .tls_config(tls.config())
            .map_err(|e| TlsError::Tonic {
                keys: format!("{prefix}.*"),
                reason: error_chain(&e),
            })?;
        Ok(Some(tls))
    }

    /// Whether clients must present a certificate signed by `client_ca_file`.
    pub fn is_mutual(&self) -> bool {
        self.client_ca.is_some()
    }

    /// tonic's server configuration: the identity, and with mutual TLS the CA that client
    /// certificates must chain to (a client without one is refused).
    pub fn config(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new().identity(self.identity.clone());
        match &self.client_ca {
            Some(ca) => config.client_ca_root(ca.clone()),
            None => config,
        }
    }
}

/// The config keys of the client side.
const CLIENT_PREFIX: &str = "orchestrator.predictor_tls";

/// An endpoint for the predictor at `url`, with TLS as `tls` (`orchestrator.predictor_tls`)
/// says: any key set asks for TLS, and then the URL must be `https://`; an `https://` URL
/// without a CA file trusts the system's roots.
pub fn predictor_endpoint(url: &str, tls: &GrpcClientTlsSettings) -> Result<Endpoint> {
    let prefix = CLIENT_PREFIX;
    let url = url.trim();
    let bad_url = |reason: String| TlsError::Url {
        url: url.to_owned(),
        reason,
    };
    let https = url.starts_with("https://");
    if tls.enabled() && !https {
        return Err(bad_url(format!(
            "{prefix} is set, so the predictor is reached over TLS, but this URL is not \
             https://; plaintext would ignore the TLS settings (write https://HOST:PORT)"
        )));
    }
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| bad_url(format!("not a valid URL: {}", error_chain(&e))))?;
    if !https {
        return Ok(endpoint);
    }
    let mut config = ClientTlsConfig::new();
    match &tls.ca_file {
        Some(path) => {
            config = config.ca_certificate(certificates(path, &format!("{prefix}.ca_file"))?)
        }
        None => config = config.with_native_roots(),
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => config = config.identity(identity(cert, key, prefix)?),
        (None, None) => {}
        _ => {
            return Err(TlsError::Pair {
                keys: format!("{prefix}.cert_file, {prefix}.key_file"),
                reason: "a client certificate needs its key, and a key its certificate".into(),
            });
        }
    }
    if let Some(name) = &tls.domain_name {
        config = config.domain_name(name.clone());
    }
    endpoint.tls_config(config).map_err(|e| TlsError::Tonic {
        keys: format!("{prefix}.*"),
        reason: error_chain(&e),
    })
}

/// A certificate and its key as one identity, each file checked.
fn identity(cert: &Path, key: &Path, prefix: &str) -> Result<Identity> {
    let cert_key = format!("{prefix}.cert_file");
    let key_key = format!("{prefix}.key_file");
    let cert = certificates(cert, &cert_key)?;
    let key_pem = read(key, &key_key)?;
    PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        key: key_key,
        path: key.to_owned(),
        reason: match e {
            pem::Error::NoItemsFound => "holds no private key (expected a PEM block such as \
                                         -----BEGIN PRIVATE KEY-----)"
                .into(),
            other => format!("not a readable PEM private key: {other}"),
        },
    })?;
    Ok(Identity::from_pem(cert.into_inner(), key_pem))
}

/// The certificates of a PEM file; refused when it holds none or a block is broken.
fn certificates(path: &Path, key: &str) -> Result<Certificate> {
    let pem_bytes = read(path, key)?;
    let pem_error = |reason: String| TlsError::Pem {
        key: key.to_owned(),
        path: path.to_owned(),
        reason,
    };
    let mut count = 0usize;
    for cert in CertificateDer::pem_slice_iter(&pem_bytes) {
        cert.map_err(|e| pem_error(format!("not a readable PEM certificate: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(pem_error(
            "holds no certificate (expected a PEM block -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(Certificate::from_pem(pem_bytes))
}

/// Largest certificate or key file read: far above any real chain, and a wrong path (a log, a
/// device) is refused instead of read whole.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

fn read(path: &Path, key: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let read_error = |source| TlsError::Read {
        key: key.to_owned(),
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::Pem {
            key: key.to_owned(),
            path: path.to_owned(),
            reason: format!("is larger than {MAX_PEM_BYTES} bytes: not a certificate or key"),
        });
    }
    Ok(bytes)
}

/// An error with its sources, `a: b: c`: tonic's own message alone is often just
/// "transport error".
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
