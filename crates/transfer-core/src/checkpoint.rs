use serde::{Deserialize, Serialize};

use crate::op::{CompletedPart, ObjectChecksum};
use crate::{
    ByteRange, ChecksumAlgorithm, ChecksumValue, ETag, RangeSet, SourceFingerprint, UploadId,
};

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

/// What the machine asks the driver to persist, in the order given.
///
/// A transfer's first save is whole; after it come deltas, each naming one more part or
/// range done, which a store can append to a journal at a cost that does not grow with
/// the transfer. Every so often (once the deltas outnumber the parts or ranges in the
/// last whole checkpoint, and at least [`DELTAS_BETWEEN_WHOLES`] of them) and whenever
/// something is taken back (a part found changed, a restart), the machine saves whole
/// again, so the journal stays short and replaying it costs as much as the last whole
/// save did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Save {
    /// The whole state: replaces everything saved before.
    Whole(Checkpoint),
    /// One more piece of progress, to apply (with [`Checkpoint::apply`]) to the last
    /// whole checkpoint and the deltas saved after it.
    Delta(Delta),
}

/// The fewest deltas a machine saves between two whole checkpoints.
pub const DELTAS_BETWEEN_WHOLES: usize = 64;

/// One piece of progress since the last whole checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delta {
    /// An upload's part the server acknowledged (or one adopted from its listing).
    Part(CompletedPart),
    /// A download's range, written and made durable, with its hashes.
    Range {
        /// The bytes.
        range: ByteRange,
        /// What was computed over them, when the plan needs it.
        hash: Option<RangeHash>,
    },
}

impl Checkpoint {
    /// Applies a delta saved after this checkpoint; a delta of the other direction is
    /// refused (the journal does not belong to this record).
    pub fn apply(&mut self, delta: Delta) -> Result<(), String> {
        match (self, delta) {
            (Checkpoint::Upload(u), Delta::Part(part)) => {
                match u.completed.binary_search_by_key(&part.part, |p| p.part) {
                    Ok(i) => u.completed[i] = part,
                    Err(i) => u.completed.insert(i, part),
                }
                Ok(())
            }
            (Checkpoint::Download(d), Delta::Range { range, hash }) => {
                if range.end > d.size_bytes {
                    return Err(format!(
                        "a journal entry names {range}, beyond the object's {} bytes",
                        d.size_bytes
                    ));
                }
                d.completed.insert(range);
                if let Some(h) = hash {
                    match d.range_hashes.binary_search_by_key(&h.index, |r| r.index) {
                        Ok(i) => d.range_hashes[i] = h,
                        Err(i) => d.range_hashes.insert(i, h),
                    }
                }
                Ok(())
            }
            (_, delta) => Err(format!(
                "a journal entry of the other direction ({delta:?})"
            )),
        }
    }

    /// How many parts or ranges it lists: what replaying a journal of as many deltas
    /// costs as much as.
    pub fn entries(&self) -> usize {
        match self {
            Checkpoint::Upload(u) => u.completed.len(),
            Checkpoint::Download(d) => d.range_hashes.len().max(d.completed.ranges().len()),
        }
    }

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
    /// Combine the ranges' CRCs and compare with the full-object checksum (for an
    /// algorithm that does not combine, the SHAs: hash the file once more).
    FullObject {
        /// Algorithm.
        algorithm: ChecksumAlgorithm,
        /// Expected value.
        value: ChecksumValue,
    },
    /// Ranges are the object's parts; compare each with its part checksum and the
    /// composite of them with the object's.
    Composite {
        /// Algorithm.
        algorithm: ChecksumAlgorithm,
        /// Expected composite value.
        value: ChecksumValue,
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
        value: ChecksumValue,
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
    /// Checksum, when the plan needs one.
    pub checksum: Option<ChecksumValue>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PartNumber;

    fn part(n: u32) -> CompletedPart {
        CompletedPart {
            part: PartNumber(n),
            etag: ETag(format!("\"{n:032x}\"")),
            checksum: Some(ChecksumValue::from_u32(n)),
            confirmed: false,
        }
    }

    fn upload(parts: &[u32]) -> Checkpoint {
        Checkpoint::Upload(UploadCheckpoint {
            version: CHECKPOINT_VERSION,
            source: SourceFingerprint {
                path: "f".into(),
                size_bytes: 100 << 20,
                modified_unix_nanos: 1,
                inode: None,
                changed_unix_nanos: None,
            },
            upload_id: UploadId("u".into()),
            part_size_bytes: 8 << 20,
            checksum: Some(ChecksumAlgorithm::Crc32),
            completed: parts.iter().map(|n| part(*n)).collect(),
        })
    }

    fn download(size_bytes: u64) -> DownloadCheckpoint {
        DownloadCheckpoint {
            version: CHECKPOINT_VERSION,
            etag: ETag("\"e\"".into()),
            size_bytes,
            last_modified: None,
            object_checksum: None,
            range_size_bytes: 10,
            by_part_number: false,
            part_runs: vec![],
            verify: VerifyPlan::Unverified { reason: "x".into() },
            completed: RangeSet::new(),
            range_hashes: vec![],
            partial_path: "p".into(),
        }
    }

    #[test]
    fn parts_applied_in_any_order_stay_ascending_and_unique() {
        let mut cp = upload(&[1, 4]);
        for n in [3, 9, 2, 4] {
            cp.apply(Delta::Part(part(n))).expect("applies");
        }
        assert_eq!(cp, upload(&[1, 2, 3, 4, 9]));
    }

    #[test]
    fn ranges_and_their_hashes_are_applied_in_index_order() {
        let mut cp = Checkpoint::Download(download(30));
        for (i, r) in [(2u32, ByteRange::new(20, 30)), (0, ByteRange::new(0, 10))] {
            let hash = RangeHash {
                index: i,
                checksum: Some(ChecksumValue::from_u32(i)),
                md5_hex: None,
            };
            cp.apply(Delta::Range {
                range: r,
                hash: Some(hash),
            })
            .expect("applies");
        }
        let Checkpoint::Download(d) = &cp else {
            panic!("still a download")
        };
        assert_eq!(d.completed.len_bytes(), 20);
        let indexes: Vec<u32> = d.range_hashes.iter().map(|h| h.index).collect();
        assert_eq!(indexes, [0, 2]);
    }

    /// The journal never outgrows the record: after a whole save holding W parts, at most
    /// max(W, 64) deltas follow before the next whole one, so a 1,000-part upload is
    /// saved whole a handful of times, never once per part and never only once.
    #[test]
    fn whole_saves_come_once_the_deltas_outnumber_the_last_whole_one() {
        let mut engine: crate::engine::Engine<()> =
            crate::engine::Engine::new(crate::RetryConfig::default(), 1, crate::Time::ZERO);
        let mut done: Vec<u32> = Vec::new();
        let mut wholes = Vec::new();
        engine.checkpoint(upload(&done));
        for n in 1..=1_000u32 {
            done.push(n);
            if !engine.delta(Delta::Part(part(n))) {
                engine.checkpoint(upload(&done));
                wholes.push(n);
            }
        }
        // 0 parts held: 64 deltas, then whole at 65 (65 held), 131 (131), 263, 527.
        assert_eq!(wholes, [65, 131, 263, 527]);
        let saves: Vec<Save> = std::iter::from_fn(|| engine.poll_checkpoint()).collect();
        assert_eq!(saves.len(), 1_001);
        let deltas_after_last = saves
            .iter()
            .rev()
            .take_while(|s| matches!(s, Save::Delta(_)))
            .count();
        assert_eq!(deltas_after_last, 473);
        assert!(deltas_after_last <= 527, "the journal outgrew the record");
    }

    #[test]
    fn a_delta_that_does_not_fit_is_refused() {
        let mut cp = Checkpoint::Download(download(30));
        let beyond = Delta::Range {
            range: ByteRange::new(25, 40),
            hash: None,
        };
        assert!(cp.apply(beyond).unwrap_err().contains("beyond"));
        assert!(cp.apply(Delta::Part(part(1))).is_err());
        assert!(
            upload(&[])
                .apply(Delta::Range {
                    range: ByteRange::new(0, 1),
                    hash: None
                })
                .is_err()
        );
    }
}
