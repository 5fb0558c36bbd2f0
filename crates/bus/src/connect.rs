//! Connecting to NATS from [`NatsSettings`].

use std::path::Path;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event, ServerAddr};
use tracing::{error, info, warn};
use vigil_config::{NatsSettings, redact_url_password};

use crate::error::{Error, Result};

/// Connects to the NATS server(s) in `settings.url` with the authentication and TLS options the
/// settings name.
///
/// Fails at once with [`Error::Connect`] (naming the URL, password redacted) when no server
/// answers; reconnects after a later disconnect are handled by the client and logged.
pub async fn connect(settings: &NatsSettings) -> Result<Client> {
    let servers = parse_servers(&settings.url)?;
    let options = connect_options(settings).await?;
    let shown_url = redact_url_password(&settings.url);
    let client = options
        .connect(servers)
        .await
        .map_err(|source| Error::Connect {
            url: shown_url.clone(),
            source,
        })?;
    info!(url = %shown_url, "connected to nats");
    Ok(client)
}

fn parse_servers(urls: &str) -> Result<Vec<ServerAddr>> {
    let servers = urls
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            url.parse::<ServerAddr>().map_err(|err| {
                Error::Settings(format!(
                    "invalid NATS server URL {}: {err}",
                    redact_url_password(url)
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if servers.is_empty() {
        return Err(Error::Settings("no NATS server URL given".into()));
    }
    Ok(servers)
}

async fn connect_options(settings: &NatsSettings) -> Result<ConnectOptions> {
    let mut options = ConnectOptions::new()
        .connection_timeout(Duration::from_millis(settings.connect_timeout_ms.max(1)))
        .event_callback(|event| async move { log_event(event) });

    if let Some(name) = &settings.client_name {
        options = options.name(name);
    }
    options = options.custom_inbox_prefix(settings.inbox_prefix.clone());

    match (&settings.user, &settings.password) {
        (Some(user), password) => {
            let password = password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default();
            options = options.user_and_password(user.clone(), password);
        }
        (None, Some(_)) => {
            return Err(Error::Settings(
                "a NATS password is set without a user".into(),
            ));
        }
        (None, None) => {}
    }
    if let Some(token) = &settings.token {
        options = options.token(token.expose().to_owned());
    }
    if settings.nkey_seed.is_some() && settings.creds_file.is_some() {
        return Err(Error::Settings(
            "set either an NKey seed or a credentials file for NATS, not both".into(),
        ));
    }
    if let Some(seed) = &settings.nkey_seed {
        options = options.nkey(seed.expose().to_owned());
    }
    if let Some(path) = &settings.creds_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|source| Error::File {
                what: "credentials",
                path: path.clone(),
                source,
            })?;
    }

    let tls = &settings.tls;
    if let Some(ca) = &tls.ca_file {
        check_readable("CA", ca)?;
        options = options.add_root_certificates(ca.clone());
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            check_readable("client certificate", cert)?;
            check_readable("client key", key)?;
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        (None, None) => {}
        _ => {
            return Err(Error::Settings(
                "NATS mutual TLS needs both tls.cert_file and tls.key_file".into(),
            ));
        }
    }
    if tls.required {
        options = options.require_tls(true);
    }
    Ok(options)
}

/// Fails early, naming the file, rather than with a TLS error at connect time.
fn check_readable(what: &'static str, path: &Path) -> Result<()> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|source| Error::File {
            what,
            path: path.to_owned(),
            source,
        })
}

fn log_event(event: Event) {
    match event {
        Event::Connected => info!("nats connection established"),
        Event::Disconnected => warn!("nats connection lost; reconnecting"),
        Event::LameDuckMode => warn!("nats server entered lame duck mode"),
        Event::SlowConsumer(sid) => warn!(sid, "nats slow consumer; messages dropped"),
        Event::ServerError(err) => error!(%err, "nats server error"),
        Event::ClientError(err) => error!(%err, "nats client error"),
        Event::Draining | Event::Closed => info!(%event, "nats connection closing"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comma_separated_urls() {
        let servers = parse_servers("nats://a:4222, nats://b:4222").expect("valid urls");
        assert_eq!(servers.len(), 2);
        assert!(parse_servers(" , ").is_err());
    }

    #[tokio::test]
    async fn rejects_half_configured_mutual_tls() {
        let mut settings = NatsSettings::default();
        settings.tls.cert_file = Some("/nonexistent/cert.pem".into());
        let err = connect_options(&settings)
            .await
            .expect_err("cert without key is rejected");
        assert!(err.to_string().contains("key_file"), "{err}");
    }

    #[tokio::test]
    async fn names_a_missing_ca_file() {
        let mut settings = NatsSettings::default();
        settings.tls.ca_file = Some("/nonexistent/ca.pem".into());
        let err = connect_options(&settings)
            .await
            .expect_err("missing CA file is rejected");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
