//! Multipart limits published by Amazon S3.

/// Smallest size of a multipart part, except for the last part of an upload (5 MiB).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// Largest size of a single part, and of a single PutObject (5 GiB).
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// Largest number of parts in one multipart upload.
pub const MAX_PARTS: u32 = 10_000;

/// Largest object S3 stores (5 TiB).
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024 * 1024;

/// Longest object key, in bytes of UTF-8.
pub const MAX_KEY_LENGTH: usize = 1024;

/// Longest validity of a presigned URL signed with SigV4 (7 days).
pub const MAX_PRESIGN_EXPIRY_SECS: u64 = 7 * 24 * 60 * 60;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_consistent() {
        assert_eq!(MIN_PART_SIZE, 5_242_880);
        assert_eq!(MAX_PART_SIZE, 5_368_709_120);
        assert_eq!(MAX_OBJECT_SIZE, 5_497_558_138_880);
        // The largest object must be reachable with maximal parts.
        assert!(MAX_PART_SIZE * u64::from(MAX_PARTS) >= MAX_OBJECT_SIZE);
    }
}
