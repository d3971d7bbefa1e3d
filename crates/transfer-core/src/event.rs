use std::time::Duration;

use crate::{ByteRange, ChecksumAlgorithm, ChecksumValue, ETag, Failure, TransferError};

/// What the machines tell the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Bytes durably done so far (sent and acknowledged, or received and written).
    Progress {
        /// Bytes done.
        bytes_done: u64,
        /// Bytes in all.
        bytes_total: u64,
    },
    /// An operation failed and will be tried again after `delay`.
    Retrying {
        /// Which operation.
        op: &'static str,
        /// Failed attempts so far.
        attempt: u32,
        /// Wait before the next attempt.
        delay: Duration,
        /// What went wrong.
        failure: Failure,
    },
    /// Work already done had to be thrown away; the transfer goes on from the start.
    Restarted {
        /// Why.
        reason: String,
    },
    /// Bytes carried over from an earlier run (a part of the source already sent, a range
    /// already in the partial file) no longer match the hashes recorded for them; they
    /// are transferred again.
    Invalidated {
        /// The bytes (of the source for uploads, of the object for downloads).
        range: ByteRange,
        /// What did not match.
        reason: String,
    },
    /// Nothing is in flight, and the checkpoint emitted just before holds all that is done.
    Paused,
    /// The transfer finished and was verified.
    Completed(Completion),
    /// The transfer failed.
    Failed(TransferError),
    /// The transfer was cancelled and cleaned up as the cancel policy says.
    Cancelled,
}

/// How a finished transfer's integrity was established.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verified {
    /// The server echoed the checksum of every part, or of the whole object, and it was
    /// the one sent (upload). AWS echoes a checksum only after checking it; a server
    /// that echoes nothing (Ceph RGW 18, s3s-fs on UploadPart) leaves an upload
    /// [`Verified::Unverified`].
    ServerChecksums(ChecksumAlgorithm),
    /// The combined checksum of all ranges matched the object's full-object checksum.
    FullObjectChecksum(ChecksumAlgorithm),
    /// Every part's checksum, and the composite of them, matched.
    CompositeChecksum {
        /// Algorithm.
        algorithm: ChecksumAlgorithm,
        /// Parts checked.
        parts: u32,
    },
    /// The MD5 of the content matched the single-part ETag.
    Md5Etag,
    /// The MD5s of the parts combined to the multipart ETag.
    MultipartEtag {
        /// Parts checked.
        parts: u32,
    },
    /// Nothing could be checked; the reason says why.
    Unverified {
        /// Why.
        reason: String,
    },
}

/// What a finished transfer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// ETag of the object.
    pub etag: Option<ETag>,
    /// Full-object checksum of the content, when one was computed.
    pub checksum: Option<(ChecksumAlgorithm, ChecksumValue)>,
    /// How integrity was established.
    pub verified: Verified,
    /// Size of the object.
    pub bytes_total: u64,
    /// Bytes moved by this run (resumed bytes not included).
    pub bytes_transferred: u64,
    /// Bytes sent or fetched more than once (failed attempts, dropped or invalidated parts).
    pub bytes_resent: u64,
    /// Bytes already done when this run began (from a checkpoint).
    pub bytes_resumed: u64,
    /// Bytes carried over from an earlier run that were read again and checked against
    /// their recorded hashes before being trusted.
    pub bytes_rechecked: u64,
    /// Of those, bytes that no longer matched and were transferred again.
    pub bytes_recheck_failed: u64,
}
