//! S3's vocabulary, defined once: ETags and upload ids and what an ETag says, which checksum algorithms exist and
//! how S3 combines them (full-object CRCs from part CRCs, composite checksums, the
//! multipart ETag rule).
//!
//! Both `s3-protocol` (which puts these on the wire) and `transfer-core` (which decides
//! with them) use these types, so no translation stands between the two. The crate is a
//! leaf: pure functions and value types, no IO, no clock, no runtime.
#![forbid(unsafe_code)]

mod checksum;
mod etag;

pub use checksum::{
    ChecksumAlgorithm, ChecksumType, ChecksumValue, Hasher, Md5Hasher, checksum, combine,
    combine_all, composite, md5_digest, md5_of_nothing, multipart_etag,
};
pub use etag::{ETag, ETagKind, UploadId};
