use std::fmt;

/// What kind of failure an [`Error`] is, for callers that branch on it
/// (the shape of `std::io::Error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration or an argument cannot work.
    InvalidInput,
    /// No usable credentials, or the server refused them or the permissions.
    Denied,
    /// The bucket, key or transfer does not exist.
    NotFound,
    /// The object changed since the download started or was paused.
    ObjectChanged,
    /// The local source file changed since the upload started or was paused.
    SourceChanged,
    /// The bytes did not match the checksum or ETag.
    ChecksumMismatch,
    /// The endpoint could not be reached or kept failing.
    Network,
    /// A local file operation failed (disk full, permissions, ...).
    LocalIo,
    /// A saved checkpoint is unreadable or from a newer s3tm.
    Checkpoint,
    /// Another process is running this transfer.
    Locked,
    /// The transfer was cancelled.
    Cancelled,
    /// The transfer was left paused (its handle and manager were dropped); it can be resumed.
    Paused,
    /// The operation is not possible for this kind of transfer (pausing a stream).
    Unsupported,
    /// The transfer's task panicked: a bug in s3tm.
    Panicked,
    /// The transfer had already ended (completed, failed or was cancelled) when a command
    /// reached it; the message says which, and `join` returns the outcome.
    Finished,
    /// The server refused the request for another reason.
    Remote,
}

/// An error of the transfer manager: a [`kind`](Error::kind), a message that names what
/// failed (bucket, key, file) and what to do, and the underlying cause. Cloning shares the
/// cause, so every handle of a transfer can be told how it ended.
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
    /// The driver kept the transfer's record in the store.
    checkpoint_kept: bool,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
            checkpoint_kept: false,
        }
    }

    pub(crate) fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error {
            kind,
            message: message.into(),
            source: Some(std::sync::Arc::new(source)),
            checkpoint_kept: false,
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the transfer's record was kept in the store, so that it can be resumed:
    /// true only when the record exists (a failure on the first request, before
    /// anything worth resuming, leaves none).
    pub fn is_resumable(&self) -> bool {
        self.checkpoint_kept
    }

    /// Marks the error of a transfer whose record was kept.
    pub(crate) fn with_checkpoint_kept(mut self) -> Self {
        self.checkpoint_kept = true;
        self
    }

    pub(crate) fn store(err: resume_store::StoreError) -> Self {
        let kind = match &err {
            resume_store::StoreError::Locked { .. } => ErrorKind::Locked,
            resume_store::StoreError::NotFound { .. } => ErrorKind::NotFound,
            resume_store::StoreError::Io { .. } => ErrorKind::LocalIo,
            resume_store::StoreError::StateDir { .. } => ErrorKind::InvalidInput,
            _ => ErrorKind::Checkpoint,
        };
        let message = err.to_string();
        Error::with_source(kind, message, err)
    }

    pub(crate) fn local(what: impl fmt::Display, err: std::io::Error) -> Self {
        let hint = match err.kind() {
            std::io::ErrorKind::StorageFull => "; free some disk space",
            std::io::ErrorKind::PermissionDenied => "; check the file's permissions",
            std::io::ErrorKind::NotFound => "; check the path",
            _ => "",
        };
        Error::with_source(ErrorKind::LocalIo, format!("{what}: {err}{hint}"), err)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

/// Maps a machine's verdict onto the public error, naming the object.
pub(crate) fn from_transfer(err: transfer_core::TransferError, what: &str) -> Error {
    let kind = kind_of(&err);
    let message = match &err {
        // A download into a writer (standard output, a FIFO) keeps no partial file: its
        // bytes went out as they came.
        transfer_core::TransferError::ChecksumMismatch {
            range,
            partial_path,
            algorithm,
            expected,
            actual,
        } if partial_path == crate::manager::STREAM_PATH => format!(
            "{what}: checksum mismatch on {}: {algorithm} expected {expected}, computed {actual}; \
             the bytes were written to the output stream as they came and cannot be taken back: \
             discard what it received",
            range.map_or_else(|| "the whole object".to_owned(), |r| r.to_string())
        ),
        _ => format!("{what}: {err}"),
    };
    Error::with_source(kind, message, err)
}

fn kind_of(err: &transfer_core::TransferError) -> ErrorKind {
    use transfer_core::{FailureKind as F, TransferError as T};
    match err {
        T::UploadLeft { cause, .. } => kind_of(cause),
        T::TooLarge { .. } | T::InvalidConfig(_) => ErrorKind::InvalidInput,
        T::SourceChanged { .. } => ErrorKind::SourceChanged,
        T::ObjectChanged { .. } => ErrorKind::ObjectChanged,
        T::ChecksumMismatch { .. } => ErrorKind::ChecksumMismatch,
        T::Remote { failure, .. } => match failure.kind {
            F::Denied => ErrorKind::Denied,
            F::NotFound => ErrorKind::NotFound,
            // s3tm asks with If-Match only of an object it expects unchanged.
            F::PreconditionFailed => ErrorKind::ObjectChanged,
            F::LocalIo => ErrorKind::LocalIo,
            F::Transport | F::Timeout => ErrorKind::Network,
            _ => ErrorKind::Remote,
        },
        T::RetriesExhausted { last, .. } => match last.kind {
            F::Transport | F::Timeout => ErrorKind::Network,
            _ => ErrorKind::Remote,
        },
        T::Stalled(_) => ErrorKind::Network,
        T::Local { .. } => ErrorKind::LocalIo,
        T::InvalidCheckpoint(_) => ErrorKind::Checkpoint,
        _ => ErrorKind::Remote,
    }
}
