use std::fmt;

use serde::{Deserialize, Serialize};

/// Identifies one operation handed to the driver; its outcome must carry the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op#{}", self.0)
    }
}

/// A multipart part number, 1 to 10,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartNumber(pub u32);

impl fmt::Display for PartNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

pub use s3_types::{ChecksumAlgorithm, ChecksumType, ChecksumValue, ETag, UploadId};

/// A half-open byte range `start..end` of a file or object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl ByteRange {
    /// The range `start..end`.
    pub const fn new(start: u64, end: u64) -> Self {
        ByteRange { start, end }
    }

    /// Number of bytes in the range.
    pub const fn len_bytes(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// The inclusive last byte, as an HTTP `Range: bytes=start-last` header wants it.
    pub const fn last_inclusive(&self) -> u64 {
        self.end.saturating_sub(1)
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bytes {}..{}", self.start, self.end)
    }
}

/// What identifies the version of a local source file.
///
/// The driver fills it from file metadata; the machine only compares two of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFingerprint {
    /// The file's path as the user gave it (informational, for messages).
    pub path: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub modified_unix_nanos: i64,
    /// Inode (or file index) where the platform has one, so a replaced file is noticed.
    pub inode: Option<u64>,
    /// Status-change time (ctime), nanoseconds since the Unix epoch, where the platform
    /// has one. Unlike the modification time, no user can set it back, so a file
    /// rewritten in place with its mtime restored is still noticed. Absent in
    /// checkpoints of older s3tm versions.
    #[serde(default)]
    pub changed_unix_nanos: Option<i64>,
}

impl SourceFingerprint {
    /// Why `current` is not the file this fingerprint was taken of, if it is not.
    pub fn difference(&self, current: &SourceFingerprint) -> Option<String> {
        if self.size_bytes != current.size_bytes {
            return Some(format!(
                "its size changed from {} to {} bytes",
                self.size_bytes, current.size_bytes
            ));
        }
        if self.modified_unix_nanos != current.modified_unix_nanos {
            return Some("its modification time changed".to_owned());
        }
        if let (Some(a), Some(b)) = (self.inode, current.inode)
            && a != b
        {
            return Some("it was replaced by another file (inode changed)".to_owned());
        }
        if let (Some(a), Some(b)) = (self.changed_unix_nanos, current.changed_unix_nanos)
            && a != b
        {
            return Some(
                "its status-change time (ctime) changed: it was written to, or its permissions or links changed"
                    .to_owned(),
            );
        }
        None
    }
}
