//! Certificates for TLS tests, made fresh by each test: a CA, a server certificate it signed
//! (for `localhost` and 127.0.0.1), a client certificate it signed, and a client certificate
//! of another CA, as PEM files in a temporary directory.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use vigil_config::{GrpcClientTlsSettings, GrpcServerTlsSettings};

/// A small public-key infrastructure on disk; the files go when it is dropped.
#[derive(Debug)]
pub struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    /// Generates the CA, the server and client certificates and a stranger's client
    /// certificate (signed by a CA of its own).
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ca = new_ca("vigil test CA");
        let other_ca = new_ca("someone else's CA");
        write(dir.path(), "ca.pem", &ca.pem());
        write(dir.path(), "other-ca.pem", &other_ca.pem());
        leaf(
            dir.path(),
            "server",
            &ca,
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        leaf(
            dir.path(),
            "client",
            &ca,
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        leaf(
            dir.path(),
            "stranger",
            &other_ca,
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Self { dir }
    }

    /// A file of the set: `ca.pem`, `other-ca.pem`, `{server,client,stranger}.{pem,key}`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The predictor's TLS: the server certificate, with mutual TLS when `mutual`.
    pub fn server(&self, mutual: bool) -> GrpcServerTlsSettings {
        GrpcServerTlsSettings {
            cert_file: Some(self.path("server.pem")),
            key_file: Some(self.path("server.key")),
            client_ca_file: mutual.then(|| self.path("ca.pem")),
        }
    }

    /// A client that trusts the CA, presenting the certificate of `identity` (`client`,
    /// `stranger`) when given.
    pub fn client(&self, identity: Option<&str>) -> GrpcClientTlsSettings {
        GrpcClientTlsSettings {
            ca_file: Some(self.path("ca.pem")),
            cert_file: identity.map(|name| self.path(&format!("{name}.pem"))),
            key_file: identity.map(|name| self.path(&format!("{name}.key"))),
            domain_name: None,
        }
    }
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names to parse");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("a key pair");
    CertifiedIssuer::self_signed(params, key).expect("a self-signed CA")
}

fn leaf(
    dir: &Path,
    name: &str,
    issuer: &CertifiedIssuer<'static, KeyPair>,
    usage: ExtendedKeyUsagePurpose,
) {
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("valid names");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("a key pair");
    let cert = params
        .signed_by(&key, issuer)
        .expect("a signed certificate");
    write(dir, &format!("{name}.pem"), &cert.pem());
    write(dir, &format!("{name}.key"), &key.serialize_pem());
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("writes to the temporary directory");
}
