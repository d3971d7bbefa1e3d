use std::time::Duration;

use crate::{ByteRange, ETag, Failure, FailureKind};

/// Why a transfer failed. Each variant says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The object is larger than S3 allows.
    #[error(
        "{size_bytes} bytes is more than the largest S3 object ({max_bytes} bytes); split the file"
    )]
    TooLarge {
        /// Size asked for.
        size_bytes: u64,
        /// The limit.
        max_bytes: u64,
    },
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The local source changed since the transfer started or was paused.
    #[error(
        "source file {path} changed since the upload started: {reason}; start the upload again with --no-resume"
    )]
    SourceChanged {
        /// The file.
        path: String,
        /// What changed.
        reason: String,
    },
    /// The remote object changed since the download started or was paused.
    #[error("the object changed since the download started (ETag was {expected}{}); start the download again with --no-resume", .found.as_ref().map(|f| format!(", now {f}")).unwrap_or_default())]
    ObjectChanged {
        /// The version the download was pinned to.
        expected: ETag,
        /// The version found, when known.
        found: Option<ETag>,
    },
    /// Downloaded bytes do not match the object's checksum or ETag. The partial file is
    /// kept, and the checkpoint with it: resuming fetches the bytes again.
    #[error("checksum mismatch on {}: {algorithm} expected {expected}, computed {actual}; the bytes received are kept in {partial_path} (resuming downloads the object again, cancelling removes them)", .range.map(|r| r.to_string()).unwrap_or_else(|| "the whole object".into()))]
    ChecksumMismatch {
        /// The range that failed, when it can be named.
        range: Option<ByteRange>,
        /// The partial file holding the bytes that did not match.
        partial_path: String,
        /// What was compared ("CRC32", "MD5", ...).
        algorithm: String,
        /// The server's value.
        expected: String,
        /// Ours.
        actual: String,
    },
    /// The server refused an operation for good.
    #[error("{op} failed: {failure}{}", hint(.failure))]
    Remote {
        /// Which operation.
        op: &'static str,
        /// What the server said.
        failure: Failure,
    },
    /// Retries ran out.
    #[error("{op} failed after {attempts} attempts: {last}; check the endpoint and network")]
    RetriesExhausted {
        /// Which operation.
        op: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Failure,
    },
    /// Nothing completed for too long.
    #[error("no progress for {0:?}; check the endpoint and network")]
    Stalled(Duration),
    /// A local file operation failed.
    #[error("{op} failed: {message}")]
    Local {
        /// Which operation.
        op: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The transfer failed, and the multipart upload it had opened could not be
    /// aborted either: it stays on the server (and is billed) until aborted. The
    /// checkpoint is kept so that `s3tm cancel` can abort it.
    #[error(
        "{cause}; and multipart upload {upload_id} could not be aborted ({abort}): unless the last abort reached the server with its answer lost, it stays there until `s3tm cancel` or `s3tm clean` removes it"
    )]
    UploadLeft {
        /// Why the transfer failed.
        cause: Box<TransferError>,
        /// The upload left on the server.
        upload_id: String,
        /// Why it could not be aborted.
        abort: Box<TransferError>,
    },
    /// A checkpoint does not describe a transfer this machine can continue.
    #[error("checkpoint cannot be resumed: {0}; cancel the transfer and start it again")]
    InvalidCheckpoint(String),
}

fn hint(f: &Failure) -> &'static str {
    match f.kind {
        FailureKind::Denied => {
            "; check the access key, secret key, region and the bucket's permissions"
        }
        FailureKind::NotFound => "; check the bucket and key names",
        _ => "",
    }
}

impl TransferError {
    /// Whether the checkpoint is still worth keeping: the same transfer may succeed if
    /// resumed later (a network outage, an expired token, bytes that did not match and
    /// are fetched again), as opposed to a transfer whose source or object changed.
    pub fn is_resumable(&self) -> bool {
        !matches!(
            self,
            TransferError::TooLarge { .. }
                | TransferError::InvalidConfig(_)
                | TransferError::SourceChanged { .. }
                | TransferError::ObjectChanged { .. }
                | TransferError::InvalidCheckpoint(_)
        )
    }
}
