//! Fast, resumable, verified S3 transfers.
//!
//! [`TransferManager`] uploads and downloads files with parallel parts and ranged GETs,
//! persists a checkpoint after every part, and resumes after a pause, a crash or a
//! reboot. It is the thin driver of the `transfer-core` state machines: it runs the
//! operations they ask for over hyper (rustls with ring), streams bytes between files
//! and the network, arms timers and persists checkpoints through `resume-store`. Every
//! decision (part sizes, retries, what to verify) is the machines'.
//!
//! ```no_run
//! # async fn demo() -> Result<(), transfer_manager::Error> {
//! use transfer_manager::{Config, TransferManager};
//!
//! let manager = TransferManager::new(Config::from_env(None)?)?;
//! let upload = manager.upload_file("my-bucket", "backups/db.tar", "db.tar").await?;
//! let outcome = upload.join().await?;
//! println!("uploaded {} bytes, {:?}", outcome.bytes_total, outcome.verified);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod aws_config;
mod bandwidth;
mod body;
mod config;
mod driver;
mod error;
mod exec;
mod handle;
mod http;
mod io;
mod job;
mod manager;
mod md5_lanes;
mod persist;

pub use bandwidth::MIN_BANDWIDTH_LIMIT_BYTES_PER_SEC;
pub use config::{Config, StateStore};
pub use error::{Error, ErrorKind};
pub use handle::{PauseReport, Progress, TransferHandle, TransferOutcome, TransferState};
pub use job::{
    FileInFlight, FileProblem, JobEvent, JobFile, JobFileState, JobHandle, JobOptions, JobOutcome,
    JobProgress, JobState, PathFilter, SavedJob, SyncOptions, SyncPlan,
};
pub use manager::{
    MultipartUploadInfo, PARTIAL_SUFFIX, ResumableTransfer, SavedState, TransferManager,
    UnreadableTransfer, partial_path,
};
pub use persist::SavedEndpoint;
/// The checkpoint store: the [`ResumeStore`] trait a custom store implements (see
/// [`StateStore::Custom`]), its record types and the conformance suite's errors.
pub use resume_store as store;
pub use resume_store::{Direction, FileStore, MemoryStore, ResumeStore, TransferId};
pub use s3_protocol::Credentials;
pub use transfer_core::{
    ByteRange, CancelPolicy, ChecksumAlgorithm, Completion, ETag, Event, Failure, FailureKind,
    RetryConfig, TransferError, Verified,
};
