//! The crate's one error type.

use std::fmt;

/// Everything that can go wrong in the S3 sink, with the object key (and multipart upload id
/// where there is one) it concerns, so an operator can find the object in the bucket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3SinkError {
    /// The builder was given settings that cannot work (for example a part size below the
    /// 5 MiB S3 minimum, or an unknown placeholder in the partition template).
    #[error("invalid S3 sink configuration: {0}")]
    Config(String),

    /// A record could not be encoded into the object's format.
    #[error("encoding a record for {key}: {source}")]
    Encode {
        /// The object the record was meant for.
        key: String,
        /// What the encoder reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Compressing the object's bytes failed.
    #[error("compressing {key}: {source}")]
    Compress {
        /// The object being compressed.
        key: String,
        /// The compressor's error.
        #[source]
        source: std::io::Error,
    },

    /// A call to the object store failed (after the store's own retries).
    #[error("{op} {key}{}: {source}", UploadSuffix(.upload))]
    Store {
        /// What the sink was doing: "create upload", "upload part", "complete upload", ….
        op: &'static str,
        /// The key it was doing it to.
        key: String,
        /// The multipart upload concerned, if any.
        upload: Option<String>,
        /// The store's error (boxed: it is large, and errors are rare).
        #[source]
        source: Box<object_store::Error>,
    },

    /// A pre-committed object could not be made visible, and the final key does not hold the
    /// object it should (missing, or of another length): committing it again cannot help.
    #[error("committing {key}{}: {reason}", UploadSuffix(.upload))]
    Commit {
        /// The final key.
        key: String,
        /// The multipart upload, if the object was one.
        upload: Option<String>,
        /// What was found instead of the expected object.
        reason: String,
    },

    /// A background part upload panicked or was cancelled.
    #[error("part upload task for {key} failed: {source}")]
    Task {
        /// The object whose part was being uploaded.
        key: String,
        /// The join error.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Formats `Some(id)` as " (upload <id>)" and `None` as nothing.
struct UploadSuffix<'a>(&'a Option<String>);

impl fmt::Display for UploadSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => write!(f, " (upload {id})"),
            None => Ok(()),
        }
    }
}

impl S3SinkError {
    pub(crate) fn store(
        op: &'static str,
        key: &impl fmt::Display,
        upload: Option<&str>,
        source: object_store::Error,
    ) -> Self {
        S3SinkError::Store {
            op,
            key: key.to_string(),
            upload: upload.map(str::to_owned),
            source: Box::new(source),
        }
    }
}
