use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::secret::{Secret, redact_url_password};

/// How to reach NATS, and the namespace vigil's streams and subjects live in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSettings {
    /// One or more server URLs, comma-separated.
    pub url: String,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub token: Option<Secret>,
    /// NKey seed (`SU...`), for NKey authentication.
    pub nkey_seed: Option<Secret>,
    /// A `.creds` file (JWT + NKey seed).
    pub creds_file: Option<PathBuf>,
    pub tls: TlsSettings,
    /// Prepended to every stream, consumer, subject and bucket name; empty in production,
    /// random in tests so that they do not collide.
    pub prefix: String,
    /// Name this connection reports to the server.
    pub client_name: Option<String>,
    pub connect_timeout_ms: u64,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            user: None,
            password: None,
            token: None,
            nkey_seed: None,
            creds_file: None,
            tls: TlsSettings::default(),
            prefix: String::new(),
            client_name: None,
            connect_timeout_ms: 5_000,
        }
    }
}

/// TLS towards NATS.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// Refuse a plaintext connection.
    pub required: bool,
    /// CA bundle (PEM) to verify the server with.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    pub key_file: Option<PathBuf>,
}

/// How to reach PostgreSQL.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/test".into(),
            max_connections: 10,
            acquire_timeout_ms: 5_000,
        }
    }
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url_password(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .finish()
    }
}

impl Serialize for DatabaseSettings {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("DatabaseSettings", 3)?;
        s.serialize_field("url", &redact_url_password(&self.url))?;
        s.serialize_field("max_connections", &self.max_connections)?;
        s.serialize_field("acquire_timeout_ms", &self.acquire_timeout_ms)?;
        s.end()
    }
}
