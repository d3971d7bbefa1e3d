//! Sans-IO state machines for S3 uploads and downloads.
//!
//! This crate holds every rule of an S3 transfer (planning parts and ranges, retries
//! with backoff, pause, resume, cancel, checkpoints and integrity checks) and does no
//! IO: it opens no file or socket, reads no clock, spawns nothing and never sleeps. A
//! driver (the `transfer-manager` crate) runs the operations it asks for and reports
//! what happened; the design follows quinn-proto and rustls.
//!
//! # The contract
//!
//! ```text
//!            handle_outcome(now, op, outcome)     poll_operation() -> Operation
//!  driver ─► handle_timeout(now)             ─►   poll_timeout()   -> deadline    ─► driver
//!            pause(now) resume(now) cancel(now)   poll_checkpoint() -> Checkpoint
//!                                                 poll_event()     -> Event
//! ```
//!
//! After every input the driver polls every output until it is empty: operations to
//! start (each names byte ranges, never carries bytes), the next timer deadline,
//! checkpoints to persist in the order given, and events for the application. Time is a
//! [`Time`] the driver passes in; it never goes backwards, and an extra
//! `handle_timeout` is harmless. Retry jitter comes from [`RetryConfig::seed`], so the
//! same inputs always give the same outputs.
//!
//! Every operation is answered exactly once, with an [`Outcome`] of the matching kind,
//! [`Outcome::Failed`] with a classified [`Failure`], or [`Outcome::Dropped`] when the
//! driver abandoned it (on pause or cancel). The driver decides nothing: whether and when
//! to retry, what a failure means, and when a transfer is done are decided here.
//!
//! # Resume model
//!
//! A multipart upload emits a checkpoint once the upload is created and after every
//! part; a download once its layout is known and after every range it received. The
//! driver makes a download's bytes durable before it persists a checkpoint naming them,
//! so a checkpoint never claims bytes that a power loss took back. A process that dies
//! loses at most the operations in flight.
//! Uploads below the multipart threshold are a single PutObject and start again from
//! zero when resumed, as in the AWS transfer managers.
#![forbid(unsafe_code)]

mod checkpoint;
mod compare;
mod config;
mod download;
mod engine;
mod error;
mod event;
mod job;
mod machine;
mod op;
mod rangeset;
mod retry;
mod stream;
mod time;
mod types;
mod upload;

pub use checkpoint::{
    CHECKPOINT_VERSION, Checkpoint, DELTAS_BETWEEN_WHOLES, Delta, DownloadCheckpoint, PartRun,
    RangeHash, Save, UploadCheckpoint, VerifyPlan,
};
pub use compare::{ContentCheck, ContentHasher, Sameness};
pub use config::{
    CancelPolicy, DEFAULT_MEMORY_BUDGET_BYTES, DownloadConfig, MAX_OBJECT_SIZE_BYTES,
    MAX_PART_SIZE_BYTES, MAX_PARTS, MIB, MIN_PART_SIZE_BYTES, UploadConfig, UploadPlan, part_count,
    part_size_for, parts_in_flight, plan_upload,
};
pub use download::{Download, DownloadMachine};
pub use error::TransferError;
pub use event::{Completion, Event, Verified};
pub use job::{
    FileState, JobCounts, JobDelta, JobEntry, JobLimits, JobPlan, UnsafeKey, key_for,
    path_conflicts, relative_path_for_key,
};
pub use machine::Machine;
pub use op::{
    ChecksumKind, CompletedPart, Failure, FailureKind, FileHashes, ListedPart, ObjectChecksum,
    ObjectInfo, OpKind, Operation, Outcome, PART_SIZE_METADATA, RangeHashes, check_range_answer,
};
pub use rangeset::RangeSet;
pub use retry::{RequestRetries, RetryConfig};
pub use s3_types::{
    ETagKind, checksum, combine, combine_all, composite, md5_digest, md5_of_nothing, multipart_etag,
};
pub use stream::PartSchedule;
pub use time::Time;
pub use types::{
    ByteRange, ChecksumAlgorithm, ChecksumType, ChecksumValue, ETag, OpId, PartNumber,
    SourceFingerprint, UploadId,
};
pub use upload::{Upload, UploadMachine};

/// The inputs and outputs both machines share, so one driver loop runs either.
pub trait TransferMachine {
    /// Reports what happened to operation `op`. Unknown or stale ids are ignored.
    fn handle_outcome(&mut self, now: Time, op: OpId, outcome: Outcome);
    /// Reports that the deadline from [`poll_timeout`](Self::poll_timeout) passed.
    fn handle_timeout(&mut self, now: Time);
    /// Starts nothing new; once in-flight operations are answered, emits a checkpoint and
    /// [`Event::Paused`].
    fn pause(&mut self, now: Time);
    /// Continues a paused transfer.
    fn resume(&mut self, now: Time);
    /// Settles in-flight operations, cleans up (aborts the upload, removes the partial
    /// file), then emits [`Event::Cancelled`]. Operations emitted but not yet polled are
    /// withdrawn (they never started and are not answered), so a machine rebuilt from a
    /// checkpoint only to be cancelled asks for the clean-up alone.
    fn cancel(&mut self, now: Time);
    /// The next operation to start.
    #[must_use]
    fn poll_operation(&mut self) -> Option<Operation>;
    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    #[must_use]
    fn poll_timeout(&self) -> Option<Time>;
    /// The next checkpoint (whole, or a delta to the last whole one) to persist, in
    /// emission order.
    #[must_use]
    fn poll_checkpoint(&mut self) -> Option<Save>;
    /// The next event for the application.
    #[must_use]
    fn poll_event(&mut self) -> Option<Event>;
    /// Completed, failed or cancelled.
    fn is_finished(&self) -> bool;
    /// Paused with nothing in flight.
    fn is_paused(&self) -> bool;
    /// Bytes durably done, and bytes in all (zero until a download knows its size).
    fn progress(&self) -> (u64, u64);
}
