use crate::ChecksumAlgorithm;
use crate::RetryConfig;

/// 1 MiB.
pub const MIB: u64 = 1024 * 1024;
/// Smallest part S3 accepts, except for the last one.
pub const MIN_PART_SIZE_BYTES: u64 = 5 * MIB;
/// Largest part S3 accepts.
pub const MAX_PART_SIZE_BYTES: u64 = 5 * 1024 * MIB;
/// Most parts one multipart upload may have.
pub const MAX_PARTS: u64 = 10_000;
/// Largest object S3 stores.
pub const MAX_OBJECT_SIZE_BYTES: u64 = 5 * 1024 * 1024 * MIB;

/// What to do with the server-side multipart upload when a transfer is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CancelPolicy {
    /// AbortMultipartUpload, so no storage is left behind (the default).
    #[default]
    Abort,
    /// Leave the upload and its parts on the server.
    Retain,
}

/// Settings of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadConfig {
    /// Files this size or larger go up in parts.
    pub multipart_threshold_bytes: u64,
    /// Part size asked for; raised to at least 5 MiB and so that no file needs more than
    /// 10,000 parts.
    pub part_size_bytes: u64,
    /// Parts in flight at most.
    pub max_in_flight: usize,
    /// Memory the parts in flight may take (default 128 MiB). Parts in flight are limited
    /// to as many whole parts as fit (see [`parts_in_flight`], at least one), and a part
    /// larger than the budget alone is streamed from the source instead of held in memory
    /// (the operation's `streamed` flag).
    pub memory_budget_bytes: u64,
    /// Per-part checksum; `None` sends none.
    pub checksum: Option<ChecksumAlgorithm>,
    /// What cancel does to the server-side upload.
    pub cancel_policy: CancelPolicy,
    /// Retries.
    pub retry: RetryConfig,
}

/// Default [`UploadConfig::memory_budget_bytes`].
pub const DEFAULT_MEMORY_BUDGET_BYTES: u64 = 128 * MIB;

impl UploadConfig {
    /// Whether a part (or single PutObject) of `len_bytes` is larger than the memory
    /// budget, and so is to be streamed from the source rather than read into memory.
    pub fn streams_part(&self, len_bytes: u64) -> bool {
        len_bytes > self.memory_budget_bytes
    }
}

/// Parts of `part_size_bytes` an upload keeps in flight: as many as fit in the memory
/// budget, at least one, and never more than `max_in_flight`.
pub fn parts_in_flight(cfg: &UploadConfig, part_size_bytes: u64) -> usize {
    let fit = cfg.memory_budget_bytes / part_size_bytes.max(1);
    usize::try_from(fit)
        .unwrap_or(usize::MAX)
        .clamp(1, cfg.max_in_flight.max(1))
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            multipart_threshold_bytes: 8 * MIB,
            part_size_bytes: 8 * MIB,
            max_in_flight: 8,
            memory_budget_bytes: DEFAULT_MEMORY_BUDGET_BYTES,
            checksum: Some(ChecksumAlgorithm::Crc32),
            cancel_policy: CancelPolicy::Abort,
            retry: RetryConfig::default(),
        }
    }
}

/// Settings of a download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadConfig {
    /// Range size asked for; raised so that no object needs more than 10,000 ranges.
    pub range_size_bytes: u64,
    /// Ranges in flight at most.
    pub max_in_flight: usize,
    /// Retries.
    pub retry: RetryConfig,
}

impl Default for DownloadConfig {
    fn default() -> Self {
        DownloadConfig {
            range_size_bytes: 8 * MIB,
            max_in_flight: 8,
            retry: RetryConfig::default(),
        }
    }
}

/// How a source of `size_bytes` is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadPlan {
    /// One PutObject.
    Single,
    /// A multipart upload of `parts` parts of `part_size_bytes` (the last may be shorter).
    Multipart {
        /// Size of every part but the last.
        part_size_bytes: u64,
        /// Number of parts.
        parts: u32,
    },
}

/// Chooses between PutObject and a multipart upload, and the part size.
pub fn plan_upload(
    size_bytes: u64,
    cfg: &UploadConfig,
) -> Result<UploadPlan, crate::TransferError> {
    if size_bytes > MAX_OBJECT_SIZE_BYTES {
        return Err(crate::TransferError::TooLarge {
            size_bytes,
            max_bytes: MAX_OBJECT_SIZE_BYTES,
        });
    }
    let threshold = cfg.multipart_threshold_bytes.clamp(1, MAX_PART_SIZE_BYTES);
    if size_bytes < threshold {
        return Ok(UploadPlan::Single);
    }
    let part_size_bytes = part_size_for(size_bytes, cfg.part_size_bytes);
    Ok(UploadPlan::Multipart {
        part_size_bytes,
        parts: part_count(size_bytes, part_size_bytes),
    })
}

/// The part size to use for `size_bytes` when `wanted` is asked for: at least 5 MiB,
/// a whole number of MiB when it has to grow, and large enough for 10,000 parts.
pub fn part_size_for(size_bytes: u64, wanted: u64) -> u64 {
    let floor = size_bytes.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    wanted
        .clamp(MIN_PART_SIZE_BYTES, MAX_PART_SIZE_BYTES)
        .max(floor)
}

/// Number of parts of `part_size_bytes` in `size_bytes` (at least one).
pub fn part_count(size_bytes: u64, part_size_bytes: u64) -> u32 {
    let n = size_bytes.div_ceil(part_size_bytes.max(1)).max(1);
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_files_go_in_one_put() {
        let cfg = UploadConfig::default();
        assert_eq!(plan_upload(0, &cfg), Ok(UploadPlan::Single));
        assert_eq!(plan_upload(8 * MIB - 1, &cfg), Ok(UploadPlan::Single));
        assert_eq!(
            plan_upload(8 * MIB, &cfg),
            Ok(UploadPlan::Multipart {
                part_size_bytes: 8 * MIB,
                parts: 1
            })
        );
    }

    #[test]
    fn part_size_never_below_5_mib_and_grows_for_10000_parts() {
        let cfg = UploadConfig {
            part_size_bytes: MIB,
            multipart_threshold_bytes: MIB,
            ..Default::default()
        };
        assert_eq!(
            plan_upload(12 * MIB, &cfg),
            Ok(UploadPlan::Multipart {
                part_size_bytes: 5 * MIB,
                parts: 3
            })
        );
        let Ok(UploadPlan::Multipart {
            part_size_bytes,
            parts,
        }) = plan_upload(MAX_OBJECT_SIZE_BYTES, &cfg)
        else {
            panic!("5 TiB must be planned as a multipart upload");
        };
        assert!(u64::from(parts) <= MAX_PARTS);
        assert!(part_size_bytes <= MAX_PART_SIZE_BYTES);
        assert!(part_size_bytes * u64::from(parts) >= MAX_OBJECT_SIZE_BYTES);
    }

    #[test]
    fn the_memory_budget_caps_parts_in_flight_and_streams_larger_parts() {
        let cfg = UploadConfig {
            memory_budget_bytes: 64 * MIB,
            max_in_flight: 8,
            ..Default::default()
        };
        assert_eq!(parts_in_flight(&cfg, 16 * MIB), 4);
        assert!(!cfg.streams_part(16 * MIB));
        assert_eq!(
            parts_in_flight(&cfg, 5 * MIB),
            8,
            "never above max_in_flight"
        );
        assert_eq!(parts_in_flight(&cfg, 100 * MIB), 1, "at least one");
        assert!(cfg.streams_part(100 * MIB));
        let tiny = UploadConfig {
            memory_budget_bytes: 0,
            max_in_flight: 0,
            ..Default::default()
        };
        assert_eq!(parts_in_flight(&tiny, 0), 1);
    }

    #[test]
    fn beyond_5_tib_is_refused() {
        let err = plan_upload(MAX_OBJECT_SIZE_BYTES + 1, &UploadConfig::default()).unwrap_err();
        assert!(matches!(err, crate::TransferError::TooLarge { .. }));
    }
}
