use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{StoreError, TransferId};

/// One stored transfer: index metadata plus the caller's opaque checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// What `list` shows without decoding the payload.
    pub meta: RecordMeta,
    /// The caller's own format version for `payload`, stored verbatim so the
    /// caller can refuse (or migrate) payloads written by a newer release.
    pub payload_version: u32,
    /// The checkpoint itself; the store never looks inside.
    pub payload: Vec<u8>,
    /// What was appended since `payload` was saved, oldest first (see
    /// [`ResumeStore::append`](crate::ResumeStore::append)). Empty in a record
    /// about to be saved, normally: saving replaces the journal with this one,
    /// so a caller compacts by folding the entries into `payload` and saving
    /// with an empty journal.
    pub journal: Vec<JournalEntry>,
}

/// One entry of a record's journal: a small update appended after the record
/// was saved, at a cost that does not depend on the size of the record or of
/// its journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalEntry {
    /// Bytes transferred so far, as of this entry; becomes the record's
    /// [`RecordMeta::done_bytes`] when loaded or listed.
    pub done_bytes: u64,
    /// When this entry was made, in milliseconds since the Unix epoch, as
    /// given by the caller; becomes the record's
    /// [`RecordMeta::updated_unix_ms`].
    pub updated_unix_ms: u64,
    /// The caller's update itself; the store never looks inside.
    pub data: Vec<u8>,
}

impl Record {
    /// Makes `meta` say what the journal's last entry says (progress and time
    /// of the last update), as `load` reports it.
    pub(crate) fn with_journal_progress(mut self) -> Record {
        self.meta = journal_progress(&self.meta, &self.journal);
        self
    }

    /// What `list` reports about this record, journal included.
    pub(crate) fn summary(&self) -> RecordSummary {
        RecordSummary {
            meta: journal_progress(&self.meta, &self.journal),
            payload_version: self.payload_version,
            payload_bytes: self.payload.len() as u64,
        }
    }
}

/// `meta` with the progress and time of the journal's last entry, if any.
fn journal_progress(meta: &RecordMeta, journal: &[JournalEntry]) -> RecordMeta {
    let mut meta = meta.clone();
    if let Some(last) = journal.last() {
        meta.done_bytes = last.done_bytes;
        meta.updated_unix_ms = last.updated_unix_ms;
    }
    meta
}

/// Index metadata of a record: enough to list transfers without decoding
/// their payloads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordMeta {
    /// The transfer this record belongs to.
    pub id: TransferId,
    /// Whether the transfer uploads or downloads.
    pub direction: Direction,
    /// The bucket, for display only.
    pub bucket: String,
    /// The object key, for display only.
    pub key: String,
    /// The local file being read or written.
    #[serde(with = "local_path")]
    pub local_path: PathBuf,
    /// Bytes transferred so far.
    pub done_bytes: u64,
    /// Total size of the transfer.
    pub total_bytes: u64,
    /// When the transfer was created, in milliseconds since the Unix epoch,
    /// as given by the caller.
    pub created_unix_ms: u64,
    /// When this record was last updated, in milliseconds since the Unix
    /// epoch, as given by the caller.
    pub updated_unix_ms: u64,
    /// The transfer's state when the record was saved.
    pub state: TransferState,
    /// A single transfer, a directory job, or one file of a job. Absent in records of
    /// earlier versions, which are all single transfers.
    #[serde(default, skip_serializing_if = "RecordKind::is_transfer")]
    pub kind: RecordKind,
}

/// What a record holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// One transfer of one file or object.
    #[default]
    Transfer,
    /// A job of many files (`bucket`/`key` is the prefix, `local_path` the directory);
    /// its journal says which files are done.
    Job {
        /// Files in the job.
        files: u64,
    },
    /// The transfer of one (large) file of job `job`, listed with the job rather than
    /// on its own.
    JobFile {
        /// The job it belongs to.
        job: TransferId,
    },
}

impl RecordKind {
    /// A single transfer.
    pub fn is_transfer(&self) -> bool {
        *self == RecordKind::Transfer
    }
}

/// Which way a transfer moves data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Local file to bucket.
    Upload,
    /// Bucket to local file.
    Download,
}

/// The state of a transfer as recorded by its caller.
///
/// States this build does not know are kept as [`TransferState::Other`], so
/// a record written by a newer caller still lists instead of looking corrupt.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum TransferState {
    /// Being driven right now (or was, when its process died).
    Running,
    /// Paused by the user; can be resumed.
    Paused,
    /// Stopped by an error; may be resumable.
    Failed,
    /// Any other state, kept verbatim.
    Other(String),
}

impl TransferState {
    /// The state's name as stored.
    pub fn as_str(&self) -> &str {
        match self {
            TransferState::Running => "running",
            TransferState::Paused => "paused",
            TransferState::Failed => "failed",
            TransferState::Other(s) => s,
        }
    }
}

impl From<String> for TransferState {
    fn from(s: String) -> Self {
        match s.as_str() {
            "running" => TransferState::Running,
            "paused" => TransferState::Paused,
            "failed" => TransferState::Failed,
            _ => TransferState::Other(s),
        }
    }
}

impl From<TransferState> for String {
    fn from(s: TransferState) -> String {
        match s {
            TransferState::Other(s) => s,
            known => known.as_str().to_owned(),
        }
    }
}

impl fmt::Display for TransferState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of [`ResumeStore::list`](crate::ResumeStore::list).
#[derive(Debug)]
pub struct ListEntry {
    /// The transfer, taken from the record's location (not its contents), so
    /// that it is known even when the record is unreadable.
    pub id: TransferId,
    /// Where the record lives, for stores that keep files.
    pub path: Option<PathBuf>,
    /// The record's summary, or why it cannot be read. A broken record does
    /// not fail the whole listing: the user has to see it to deal with it.
    pub summary: Result<RecordSummary, StoreError>,
}

/// What `list` reports about a readable record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordSummary {
    /// The record's index metadata.
    pub meta: RecordMeta,
    /// The caller's payload format version.
    pub payload_version: u32,
    /// Size of the payload (the journal not included).
    pub payload_bytes: u64,
}

/// Local paths are stored as JSON strings when they are UTF-8 (so records
/// stay readable) and as raw bytes otherwise, because Unix file names need not
/// be UTF-8 and a lossy conversion would resume into the wrong file.
mod local_path {
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Utf8(String),
        Bytes(Vec<u8>),
    }

    pub(super) fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
        if let Some(utf8) = path.to_str() {
            return Repr::Utf8(utf8.to_owned()).serialize(s);
        }
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            Repr::Bytes(path.as_os_str().as_bytes().to_vec()).serialize(s)
        }
        #[cfg(not(unix))]
        {
            Err(serde::ser::Error::custom(format!(
                "local path {} is not valid Unicode",
                path.display()
            )))
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Utf8(s) => Ok(PathBuf::from(s)),
            #[cfg(unix)]
            Repr::Bytes(b) => {
                use std::os::unix::ffi::OsStringExt;
                Ok(PathBuf::from(std::ffi::OsString::from_vec(b)))
            }
            #[cfg(not(unix))]
            Repr::Bytes(_) => Err(serde::de::Error::custom(
                "local path was saved as raw Unix bytes and cannot be used on this platform",
            )),
        }
    }
}
