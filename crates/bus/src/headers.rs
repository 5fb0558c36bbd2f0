//! Header names vigil sets and reads, and how payload encodings are recognised.

use async_nats::HeaderMap;

/// JetStream de-duplication id; set by the publisher, checked by the stream within its window.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// The payload encoding, `application/protobuf` or `application/json`.
pub const CONTENT_TYPE: &str = "Content-Type";

/// Why a message was dead-lettered, in words.
pub const DLQ_REASON: &str = "Vigil-Dlq-Reason";
/// The stream the dead-lettered message came from.
pub const DLQ_STREAM: &str = "Vigil-Dlq-Stream";
/// The subject the dead-lettered message was published on.
pub const DLQ_SUBJECT: &str = "Vigil-Dlq-Subject";
/// The durable consumer that gave up on the message.
pub const DLQ_CONSUMER: &str = "Vigil-Dlq-Consumer";
/// The stream sequence of the original message.
pub const DLQ_SEQUENCE: &str = "Vigil-Dlq-Sequence";
/// How many times the message had been delivered.
pub const DLQ_DELIVERIES: &str = "Vigil-Dlq-Deliveries";
/// The original `Nats-Msg-Id`, if it had one (the copy gets its own id).
pub const DLQ_ORIGINAL_MSG_ID: &str = "Vigil-Dlq-Original-Msg-Id";

/// The protobuf media type vigil publishes with.
pub const APPLICATION_PROTOBUF: &str = "application/protobuf";
/// The JSON media type sensors may publish with.
pub const APPLICATION_JSON: &str = "application/json";

/// How a payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentType {
    /// Protobuf binary; also assumed when no `Content-Type` header is present.
    Protobuf,
    /// The canonical proto3 JSON mapping.
    Json,
}

impl ContentType {
    /// The media type sent in the `Content-Type` header.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentType::Protobuf => APPLICATION_PROTOBUF,
            ContentType::Json => APPLICATION_JSON,
        }
    }

    /// Recognises a `Content-Type` header value (parameters such as `charset` are ignored);
    /// `None` when the media type is not one vigil can decode.
    pub fn from_header(value: &str) -> Option<Self> {
        let media_type = value.split(';').next().unwrap_or_default().trim();
        let is = |name: &str| media_type.eq_ignore_ascii_case(name);
        if is(APPLICATION_JSON) {
            Some(ContentType::Json)
        } else if is(APPLICATION_PROTOBUF)
            || is("application/x-protobuf")
            || is("application/vnd.google.protobuf")
            || is("application/octet-stream")
        {
            Some(ContentType::Protobuf)
        } else {
            None
        }
    }
}

/// The last value of a header, matching the name case-insensitively (senders differ in how
/// they spell `content-type`).
pub fn header_value<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    let headers = headers?;
    headers.iter().find_map(|(key, values)| {
        let key: &[u8] = key.as_ref();
        if key.eq_ignore_ascii_case(name.as_bytes()) {
            values.last().map(|v| v.as_str())
        } else {
            None
        }
    })
}

/// Makes a free-text value safe to send as a header: line breaks become spaces and the length
/// is capped.
pub(crate) fn sanitize_header_value(value: &str, max_chars: usize) -> String {
    value
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .take(max_chars)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_content_types() {
        assert_eq!(
            ContentType::from_header("application/json"),
            Some(ContentType::Json)
        );
        assert_eq!(
            ContentType::from_header(" Application/JSON; charset=utf-8"),
            Some(ContentType::Json)
        );
        assert_eq!(
            ContentType::from_header("application/protobuf"),
            Some(ContentType::Protobuf)
        );
        assert_eq!(
            ContentType::from_header("application/x-protobuf"),
            Some(ContentType::Protobuf)
        );
        assert_eq!(ContentType::from_header("text/plain"), None);
    }

    #[test]
    fn header_lookup_ignores_case() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json");
        headers.insert(async_nats::header::NATS_MESSAGE_ID, "abc");
        assert_eq!(
            header_value(Some(&headers), CONTENT_TYPE),
            Some("application/json")
        );
        assert_eq!(header_value(Some(&headers), MSG_ID), Some("abc"));
        assert_eq!(header_value(Some(&headers), "missing"), None);
        assert_eq!(header_value(None, MSG_ID), None);
    }

    #[test]
    fn sanitizes_line_breaks() {
        assert_eq!(sanitize_header_value("a\r\nb", 10), "a  b");
        assert_eq!(sanitize_header_value("abcdef", 3), "abc");
    }
}
