use serde::{Deserialize, Serialize};

use crate::op::{CompletedPart, ObjectChecksum};
use crate::{ChecksumAlgorithm, ETag, RangeSet, SourceFingerprint, UploadId};

/// The format version of checkpoints this build writes. A checkpoint with a larger
/// version is refused (and kept); smaller ones are read as they are. Version 2 added a
/// download's `part_runs` and `VerifyPlan::Unstated`, and a part's `confirmed`: a build
/// reading version 1 would drop the part lengths and check over wrong boundaries.
pub const CHECKPOINT_VERSION: u32 = 2;

/// Everything needed to continue a transfer in another process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "direction", rename_all = "lowercase")]
pub enum Checkpoint {
    /// A multipart upload.
    Upload(UploadCheckpoint),
    /// A download.
    Download(DownloadCheckpoint),
}

impl Checkpoint {
    /// Bytes done and bytes in all.
    pub fn progress(&self) -> (u64, u64) {
        match self {
            Checkpoint::Upload(u) => (u.bytes_done(), u.source.size_bytes),
            Checkpoint::Download(d) => (d.completed.len_bytes(), d.size_bytes),
        }
    }
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadCheckpoint {
    /// Format version ([`CHECKPOINT_VERSION`]).
    pub version: u32,
    /// The source file as it was when the upload started.
    pub source: SourceFingerprint,
    /// The server's upload.
    pub upload_id: UploadId,
    /// Size of every part but the last.
    pub part_size_bytes: u64,
    /// Checksum algorithm of the parts.
    pub checksum: Option<ChecksumAlgorithm>,
    /// Parts the server acknowledged, ascending.
    pub completed: Vec<CompletedPart>,
}

impl UploadCheckpoint {
    /// Bytes of the completed parts.
    pub fn bytes_done(&self) -> u64 {
        let size = self.source.size_bytes;
        self.completed
            .iter()
            .map(|p| {
                let start =
                    u64::from(p.part.0.saturating_sub(1)).saturating_mul(self.part_size_bytes);
                start
                    .saturating_add(self.part_size_bytes)
                    .min(size)
                    .saturating_sub(start.min(size))
            })
            .sum()
    }
}

/// How a download's content is checked once all its bytes are in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VerifyPlan {
    /// Combine the ranges' CRCs and compare with the full-object checksum.
    FullObject {
        /// Algorithm.
        algorithm: ChecksumAlgorithm,
        /// Expected value.
        value: u32,
    },
    /// Ranges are the object's parts; compare each with its part checksum and the
    /// composite of them with the object's.
    Composite {
        /// Algorithm.
        algorithm: ChecksumAlgorithm,
        /// Expected composite value.
        value: u32,
    },
    /// MD5 of the content against a single-part ETag.
    Md5 {
        /// Expected digest, hex.
        md5_hex: String,
    },
    /// Ranges are the object's parts; their MD5s must combine to the multipart ETag.
    MultipartEtag,
    /// A multipart object whose checksum came without a type or a part count (moto does
    /// this on HeadObject): it is read as a full-object checksum, then as a composite of
    /// the parts, and the multipart ETag is checked too when `md5` is set. A match on any
    /// of them verifies; no match on the checksum alone is not called a mismatch.
    Unstated {
        /// Algorithm as labelled by the server.
        algorithm: ChecksumAlgorithm,
        /// The value it sent.
        value: u32,
        /// The ETag is a multipart MD5 ETag worth checking as well.
        md5: bool,
    },
    /// Nothing to check against.
    Unverified {
        /// Why.
        reason: String,
    },
}

/// `count` consecutive parts of `len_bytes` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRun {
    /// Length of each part.
    pub len_bytes: u64,
    /// How many parts in a row have it.
    pub count: u32,
}

/// What was computed over one completed range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeHash {
    /// Index of the range.
    pub index: u32,
    /// CRC, when the plan needs one.
    pub checksum: Option<u32>,
    /// MD5 (hex), when the plan needs one.
    pub md5_hex: Option<String>,
}

/// A download in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadCheckpoint {
    /// Format version ([`CHECKPOINT_VERSION`]).
    pub version: u32,
    /// The version of the object being fetched; every GET is pinned to it.
    pub etag: ETag,
    /// Size of the object.
    pub size_bytes: u64,
    /// `Last-Modified` as the server sent it.
    pub last_modified: Option<String>,
    /// The object's checksum, when it has one.
    pub object_checksum: Option<ObjectChecksum>,
    /// Size of every range but the last, when `part_runs` is empty.
    pub range_size_bytes: u64,
    /// Written by older builds, which fetched ranges by part number; always false now.
    #[serde(default)]
    pub by_part_number: bool,
    /// The object's part lengths as the server reported them (one HeadObject
    /// `?partNumber=N` per part), run-length encoded; the ranges are then the parts.
    /// Empty: ranges of `range_size_bytes`, and any part boundaries were not learned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_runs: Vec<PartRun>,
    /// How the content will be checked.
    pub verify: VerifyPlan,
    /// Bytes written and made durable.
    pub completed: RangeSet,
    /// Hashes of the completed ranges, for the final check.
    pub range_hashes: Vec<RangeHash>,
    /// The partial file the bytes are written to.
    pub partial_path: String,
}
