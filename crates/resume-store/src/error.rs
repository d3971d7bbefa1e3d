use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in a [`ResumeStore`](crate::ResumeStore).
///
/// Messages are meant to be shown to a user as they are: they name the file
/// or transfer involved and say what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A record exists but cannot be trusted: bad header, checksum mismatch,
    /// truncation or undecodable metadata. The file is left untouched.
    #[error(
        "checkpoint {} is corrupt ({reason}); it was left in place: \
         move it away to keep it for inspection, or delete it with `s3tm cancel ID`",
        path.display()
    )]
    Corrupt {
        /// The record file.
        path: PathBuf,
        /// What exactly is wrong with it.
        reason: String,
    },

    /// A record is sound but its journal is damaged before its last entry (a torn
    /// last entry is not damage: it is left out). `record` is the record as saved,
    /// without its journal, so that what it names (an upload, a partial file) can
    /// still be cleaned up. Nothing is left out silently: the files stay as they are.
    #[error(
        "the journal {} of a checkpoint is corrupt ({reason}); it was left in place: \
         cancel the transfer with `s3tm cancel ID`",
        path.display()
    )]
    CorruptJournal {
        /// The journal file.
        path: PathBuf,
        /// What exactly is wrong with it.
        reason: String,
        /// The record, without its journal.
        record: Box<crate::Record>,
    },

    /// A record was written by a newer version of the store format.
    #[error(
        "checkpoint {} was written by a newer s3tm (store format {found}, this build \
         supports up to {supported}); resume it with the newer s3tm, or move the file away",
        path.display()
    )]
    NewerVersion {
        /// The record file.
        path: PathBuf,
        /// The format version found in the file.
        found: u32,
        /// The newest format version this build can read.
        supported: u32,
    },

    /// Another lease on this transfer is held, by this or another process.
    #[error(
        "transfer {id} is in use by another s3tm process or task; \
         wait for it to finish or stop it, then try again"
    )]
    Locked {
        /// The transfer whose lease is taken.
        id: String,
    },

    /// No record exists for this transfer.
    #[error("no saved transfer with id {id}; `s3tm ls` shows the saved ones")]
    NotFound {
        /// The transfer that was asked for.
        id: String,
    },

    /// The operating system refused an operation on a file or directory.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory being accessed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A transfer id is empty, too long, or contains characters that are not
    /// allowed (ids become file names, so only a safe charset is accepted).
    #[error("invalid transfer id {id:?}: {reason}")]
    InvalidId {
        /// The rejected id (possibly shortened).
        id: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// No state directory was configured and the platform has no data
    /// directory to default to.
    #[error(
        "cannot find a directory for saved transfers: the platform has no data directory; \
         set S3TM_STATE_DIR or pass a directory explicitly"
    )]
    NoStateDir,

    /// The state directory cannot be used: it is not a directory, belongs to
    /// another user, or others can write to it. It is left untouched.
    #[error(
        "state directory {} {reason}; choose a private directory with --state-dir or \
         S3TM_STATE_DIR",
        path.display()
    )]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A record could not be encoded for storage.
    #[error("cannot save transfer {id}: {reason}")]
    Encode {
        /// The transfer being saved.
        id: String,
        /// Why encoding failed.
        reason: String,
    },
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        StoreError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
