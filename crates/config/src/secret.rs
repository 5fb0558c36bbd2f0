use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A string that never shows itself in logs, `Debug` output or config dumps.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is handed to the thing that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// Replaces the password in a `scheme://user:password@host/...` URL, and the value of every
/// credential-like query parameter (`password`, `passwd`, `pwd`, `token`, `secret`, `key`,
/// `api_key`, `access_token`, `sslpassword`), with `<redacted>`.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (rest, None),
    };
    let (authority, tail) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:{REDACTED}@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let mut out = format!("{scheme}://{authority}{tail}");
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_credential(name) => format!("{name}={REDACTED}"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

fn is_credential(name: &str) -> bool {
    const NAMES: [&str; 9] = [
        "password",
        "passwd",
        "pwd",
        "token",
        "secret",
        "key",
        "api_key",
        "access_token",
        "sslpassword",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{REDACTED}\"")
        );
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn credentials_in_the_query_are_redacted_too() {
        assert_eq!(
            redact_url_password(
                "postgres://db:5432/vigil?user=vigil&password=hunter2&sslmode=require"
            ),
            "postgres://db:5432/vigil?user=vigil&password=<redacted>&sslmode=require"
        );
        assert_eq!(
            redact_url_password("postgres://a:b@db/vigil?sslpassword=x"),
            "postgres://a:<redacted>@db/vigil?sslpassword=<redacted>"
        );
        assert_eq!(
            redact_url_password("https://api.example/v1?api_key=s3cret&x=1"),
            "https://api.example/v1?api_key=<redacted>&x=1"
        );
    }

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(
            redact_url_password("postgres://vigil:hunter2@db:5432/vigil"),
            "postgres://vigil:<redacted>@db:5432/vigil"
        );
        assert_eq!(
            redact_url_password("postgres://root@127.0.0.1/test"),
            "postgres://root@127.0.0.1/test"
        );
    }
}
