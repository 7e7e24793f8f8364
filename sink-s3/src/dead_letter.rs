//! The error prefix: rejected records, with their reason, under their own prefix.

use crate::builder::S3SinkBuilder;
use crate::sink::S3Sink;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use object_store::multipart::MultipartStore;
use object_store::ObjectStore;
use serde::Serialize;
use std::sync::Arc;
use watershed_core::{BoxError, DeadLetter, Record};

/// One line of an error object (Firehose's error output carries the same information:
/// the error, and the raw data base64-encoded).
#[derive(Serialize)]
struct ErrorLine<'a> {
    reason: &'a str,
    node: &'a str,
    /// `stream/split@offset`, when the record came from a source.
    origin: Option<String>,
    /// Event time in ms since the epoch, when known.
    timestamp: Option<i64>,
    /// The payload as text when it is valid UTF-8, so most errors are readable as is.
    payload: Option<&'a str>,
    /// The payload's exact bytes.
    payload_base64: String,
}

/// Encodes a dead letter as one JSON line:
/// `{"reason","node","origin","timestamp","payload","payload_base64"}`.
pub fn encode_dead_letter(r: &Record<DeadLetter>, out: &mut Vec<u8>) -> Result<(), BoxError> {
    let d = &r.value;
    // The dead letter's own time when the rejecting operator set it, else the record's.
    let known = |t: i64| t != i64::MIN && t != i64::MAX;
    let ts = Some(d.timestamp.millis())
        .filter(|t| known(*t))
        .unwrap_or(r.timestamp.millis());
    let line = ErrorLine {
        reason: &d.reason,
        node: &d.node,
        origin: d.origin.as_ref().map(ToString::to_string),
        timestamp: known(ts).then_some(ts),
        payload: std::str::from_utf8(&d.payload).ok(),
        payload_base64: BASE64.encode(&d.payload),
    };
    serde_json::to_writer(out, &line)?;
    Ok(())
}

impl S3Sink<DeadLetter> {
    /// A dead-letter sink (for [`Pipeline::dead_letter`](watershed_core::Pipeline::dead_letter))
    /// writing rejected records with their reason under `prefix`, as Firehose's
    /// `ErrorOutputPrefix`, committing through staging keys. Same settings as any [`S3Sink`].
    pub fn dead_letters(store: Arc<dyn ObjectStore>, prefix: &str) -> S3SinkBuilder<DeadLetter> {
        S3Sink::builder(store, prefix).encoder(encode_dead_letter)
    }

    /// [`dead_letters`](Self::dead_letters) committing through multipart uploads.
    pub fn s3_dead_letters<S: ObjectStore + MultipartStore>(
        store: Arc<S>,
        prefix: &str,
    ) -> S3SinkBuilder<DeadLetter> {
        S3Sink::s3(store, prefix).encoder(encode_dead_letter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watershed_core::EventTime;

    /// Consumers decode `payload_base64` as standard base64 with padding: the engine must
    /// stay that one (not URL-safe, not unpadded).
    #[test]
    fn base64_matches_rfc_4648_test_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(BASE64.encode(input.as_bytes()), expected);
        }
    }

    #[test]
    fn an_error_line_carries_the_reason_and_the_exact_payload() {
        let mut d = DeadLetter::new("expected value at line 1", &b"{not json\xff"[..]);
        d.node = "parse".into();
        let r = Record::new(d, EventTime(5));
        let mut out = Vec::new();
        encode_dead_letter(&r, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["reason"], "expected value at line 1");
        assert_eq!(v["node"], "parse");
        assert_eq!(v["timestamp"], 5);
        assert!(v["payload"].is_null(), "invalid UTF-8 is not shown as text");
        assert_eq!(v["payload_base64"], BASE64.encode(b"{not json\xff"));
    }
}
