use std::fmt;

use crate::{
    ByteRange, ChecksumAlgorithm, ChecksumType, ChecksumValue, ETag, OpId, PartNumber, UploadId,
};

/// One thing for the driver to do. It names byte ranges, never carries bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The id the outcome must be reported with.
    pub id: OpId,
    /// What to do.
    pub kind: OpKind,
}

/// The operations the machines ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpKind {
    /// PutObject of `range` of the source file, with a checksum header when `checksum` is set.
    /// Answer: [`Outcome::ObjectPut`].
    PutObject {
        /// Bytes of the source to send (the whole file).
        range: ByteRange,
        /// Checksum to compute over the body and send.
        checksum: Option<ChecksumAlgorithm>,
        /// The range is larger than the memory budget: send it without holding it in
        /// memory (for a file: hash it in a first pass, then stream it, checking that the
        /// bytes sent hash the same).
        streamed: bool,
    },
    /// CreateMultipartUpload. Answer: [`Outcome::UploadCreated`].
    CreateMultipartUpload {
        /// Checksum algorithm the parts will carry.
        checksum: Option<ChecksumAlgorithm>,
        /// The type of the object's checksum to ask for (`x-amz-checksum-type`), when it
        /// has one: full-object, so that any later download can combine its ranges' CRCs
        /// into it whatever its layout.
        checksum_type: Option<ChecksumType>,
        /// User metadata to store with the object (`x-amz-meta-*`): the part size, under
        /// [`PART_SIZE_METADATA`], so downloads can align ranges to parts.
        metadata: Vec<(String, String)>,
    },
    /// UploadPart of `range` of the source file. Answer: [`Outcome::PartUploaded`].
    UploadPart {
        /// The upload.
        upload_id: UploadId,
        /// The part.
        part: PartNumber,
        /// Bytes of the source to send.
        range: ByteRange,
        /// Checksum to compute over the body and send.
        checksum: Option<ChecksumAlgorithm>,
        /// The part is larger than the memory budget: send it without holding it in
        /// memory (for a file: hash it in a first pass, then stream it, checking that the
        /// bytes sent hash the same).
        streamed: bool,
    },
    /// One page of ListParts. Answer: [`Outcome::PartsListed`].
    ListParts {
        /// The upload.
        upload_id: UploadId,
        /// Continue after this part number.
        part_number_marker: Option<u32>,
    },
    /// CompleteMultipartUpload with `parts` in ascending order. Answer: [`Outcome::UploadCompleted`].
    CompleteMultipartUpload {
        /// The upload.
        upload_id: UploadId,
        /// Every part, ascending, with the ETag and checksum the server returned for it.
        parts: Vec<CompletedPart>,
        /// The full-object checksum, for servers that accept one on Complete.
        full_object_checksum: Option<ChecksumValue>,
    },
    /// AbortMultipartUpload. Answer: [`Outcome::UploadAborted`].
    AbortMultipartUpload {
        /// The upload.
        upload_id: UploadId,
    },
    /// HeadObject with checksum mode enabled. Answer: [`Outcome::ObjectInfo`].
    HeadObject {
        /// Ask about one part only (its size is then the `Content-Length`). Sent without
        /// `If-Match`: moto compares that with the part's ETag, not the object's; the
        /// ranged GETs that follow are pinned to the object's ETag instead.
        part_number: Option<PartNumber>,
        /// Pin the request to this version.
        if_match: Option<ETag>,
    },
    /// Creates the partial file of a download (or opens it when resuming, keeping its
    /// bytes) and sets its length. Answer: [`Outcome::FilePrepared`].
    PreparePartialFile {
        /// Length to give the file.
        size_bytes: u64,
        /// Whether a missing file may be created. False while recorded ranges are
        /// expected in it: a missing file is then reported (`previous_len: None`), never
        /// silently recreated empty under a checkpoint that names its bytes. The driver
        /// makes every checkpoint emitted before this operation durable before running it.
        create: bool,
        /// What [`OpKind::HashPartialFile`] will ask of the whole file. A destination that
        /// cannot be read again (a stream) computes it as the bytes are written, in
        /// order; a file ignores it (it is read again).
        in_order: FileHashes,
    },
    /// GetObject of `range` (a `Range` header), written at the same offset of the partial
    /// file. The driver must make these bytes durable before it persists any checkpoint
    /// that names them. Answer: [`Outcome::RangeWritten`].
    GetRange {
        /// Bytes of the object.
        range: ByteRange,
        /// Every GET after discovery is pinned to the discovered version.
        if_match: ETag,
        /// What to compute over the received bytes.
        hashes: RangeHashes,
    },
    /// Reads `range` of the source file and reports its MD5, and its CRC when `checksum`
    /// is set: a part that the server lists but no checkpoint recorded (its answer was
    /// lost with the process) is kept when its ETag is that MD5, instead of being sent
    /// again. A local operation. Answer: [`Outcome::SourceHashed`].
    HashSourceRange {
        /// Bytes of the source to hash.
        range: ByteRange,
        /// CRC to compute as well.
        checksum: Option<ChecksumAlgorithm>,
    },
    /// Reads `range` of the partial file and computes what `hashes` asks for: on resume,
    /// bytes carried over from an earlier run are checked against the hashes their
    /// checkpoint recorded before the download trusts them. A local operation.
    /// Answer: [`Outcome::PartialRangeHashed`].
    HashPartialRange {
        /// Bytes of the partial file (offsets of the object).
        range: ByteRange,
        /// What to compute.
        hashes: RangeHashes,
    },
    /// Reads the whole partial file once and reports what is asked: checks that cannot
    /// be combined from the ranges' hashes. A local operation. Answer: [`Outcome::FileHashed`].
    HashPartialFile {
        /// What to compute.
        hashes: FileHashes,
    },
    /// Makes the partial file durable and renames it to the destination.
    /// Answer: [`Outcome::FileCommitted`].
    CommitPartialFile,
    /// Removes the partial file. Answer: [`Outcome::FileDeleted`].
    DeletePartialFile,
    /// Reads `range` of an upload's stream (every byte before it has been read already)
    /// into memory, or as much of it as the stream still holds, and keeps it for the
    /// PutObject or UploadPart of that range. A local operation, for a stream of unknown
    /// length. Answer: [`Outcome::StreamRead`], whose `len_bytes` below the range's
    /// length says that the stream ended.
    ReadStream {
        /// Bytes of the stream to read.
        range: ByteRange,
    },
}

impl OpKind {
    /// A short name for messages and logs.
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::PutObject { .. } => "PutObject",
            OpKind::CreateMultipartUpload { .. } => "CreateMultipartUpload",
            OpKind::UploadPart { .. } => "UploadPart",
            OpKind::ListParts { .. } => "ListParts",
            OpKind::CompleteMultipartUpload { .. } => "CompleteMultipartUpload",
            OpKind::AbortMultipartUpload { .. } => "AbortMultipartUpload",
            OpKind::HeadObject { .. } => "HeadObject",
            OpKind::PreparePartialFile { .. } => "PreparePartialFile",
            OpKind::GetRange { .. } => "GetObject",
            OpKind::HashSourceRange { .. } => "HashSourceRange",
            OpKind::HashPartialRange { .. } => "HashPartialRange",
            OpKind::HashPartialFile { .. } => "HashPartialFile",
            OpKind::CommitPartialFile => "CommitPartialFile",
            OpKind::DeletePartialFile => "DeletePartialFile",
            OpKind::ReadStream { .. } => "ReadStream",
        }
    }
}

/// What the driver computes over the bytes of one ranged GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RangeHashes {
    /// A CRC of this algorithm.
    pub checksum: Option<ChecksumAlgorithm>,
    /// An MD5.
    pub md5: bool,
}

/// A part as listed in CompleteMultipartUpload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CompletedPart {
    /// Part number.
    pub part: PartNumber,
    /// The ETag the server returned for it.
    pub etag: ETag,
    /// Its checksum, when the upload has a checksum algorithm.
    pub checksum: Option<ChecksumValue>,
    /// The server echoed the checksum sent with it (AWS echoes only what it checked).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub confirmed: bool,
}

/// What to compute over a whole partial file, read once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileHashes {
    /// Its MD5 (the ETag of an object sent in one PutObject).
    pub md5: bool,
    /// Its checksum under this algorithm (a SHA of an object sent in one PutObject).
    pub checksum: Option<ChecksumAlgorithm>,
    /// The multipart ETags it would have if uploaded in parts of these sizes: the part
    /// sizes other tools use, where the server does not tell an object's.
    pub multipart_part_sizes: Vec<u64>,
}

/// A part as ListParts reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPart {
    /// Part number.
    pub part: PartNumber,
    /// Its ETag, when the server reports one.
    pub etag: Option<ETag>,
    /// Its size, when the server reports one.
    pub size_bytes: Option<u64>,
}

/// How an object's checksum covers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChecksumKind {
    /// A checksum of all the object's bytes.
    FullObject,
    /// A checksum of the parts' checksums of a multipart object with this many parts.
    Composite {
        /// Number of parts.
        parts: u32,
    },
    /// The server did not say which: no `-N` part count, and no `x-amz-checksum-type`
    /// (or `COMPOSITE` without the `-N` S3 always writes). A full-object checksum for a
    /// single-part object; either kind, perhaps even mislabelled, for a multipart one.
    Unstated,
}

/// An object's checksum as HeadObject reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectChecksum {
    /// Algorithm.
    pub algorithm: ChecksumAlgorithm,
    /// Value.
    pub value: ChecksumValue,
    /// What it covers.
    pub kind: ChecksumKind,
}

/// What HeadObject told about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// `Content-Length` (of the part, when one was asked for).
    pub content_length: u64,
    /// The object's ETag.
    pub etag: ETag,
    /// `Last-Modified` as sent.
    pub last_modified: Option<String>,
    /// The object's (or part's) checksum, when the server reported one.
    pub checksum: Option<ObjectChecksum>,
    /// `x-amz-mp-parts-count`, when sent.
    pub parts_count: Option<u32>,
    /// Where the part asked for lies in the object (`Content-Range`), when sent.
    pub part_range: Option<ByteRange>,
    /// Encrypted with SSE-KMS or SSE-C, whose ETags are not an MD5 of the content.
    pub etag_not_md5: bool,
    /// The object's user metadata (`x-amz-meta-*`, names without the prefix), as sent.
    pub metadata: Vec<(String, String)>,
}

/// Whether a GetObject answer is the one an [`OpKind::GetRange`] asked for, before the
/// driver writes any of its bytes: the version the range is pinned to (some servers,
/// s3s-fs among them, ignore `If-Match`, so the ETag answered is compared too) and
/// exactly the bytes asked for (`served` is the `Content-Range`; a `200` with no
/// `Content-Range` is the whole object, acceptable for a range that starts at 0).
pub fn check_range_answer(
    asked: ByteRange,
    pinned: &ETag,
    answered: Option<&ETag>,
    served: Option<ByteRange>,
) -> Result<(), Failure> {
    if let Some(got) = answered
        && !got.same_as(pinned)
    {
        return Err(Failure {
            kind: FailureKind::PreconditionFailed,
            status: Some(412),
            code: Some("PreconditionFailed".into()),
            message: format!("the object's ETag is now {got}"),
        });
    }
    let whole = served.is_none() && asked.start == 0;
    if served != Some(asked) && !whole {
        let sent = served.map_or_else(|| "the whole object".to_owned(), |r| r.to_string());
        return Err(Failure::new(
            FailureKind::Transient,
            format!("asked for {asked}, the server sent {sent}"),
        ));
    }
    Ok(())
}

/// The user metadata in which s3tm records the part size of its multipart uploads.
pub const PART_SIZE_METADATA: &str = "s3tm-part-size";

impl ObjectInfo {
    /// The part size the uploader recorded with the object ([`PART_SIZE_METADATA`]), if
    /// it did. A claim, not a fact: used only where the server does not tell the part
    /// lengths, and then a disagreement makes the object "not verified", never a
    /// mismatch.
    pub fn part_size_hint(&self) -> Option<u64> {
        self.metadata
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(PART_SIZE_METADATA))
            .and_then(|(_, v)| v.trim().parse().ok())
    }
}

impl ChecksumKind {
    /// What a checksum covers, from what the server said: its `x-amz-checksum-type` and
    /// the part count of a `<value>-N` composite value. S3 writes `-N` on every composite
    /// checksum; without it (moto, which may also label CRC32 as CRC32C), or without any
    /// type, it is [`ChecksumKind::Unstated`] and every reading is weighed.
    pub fn reported(checksum_type: Option<ChecksumType>, parts: Option<u32>) -> Self {
        match (checksum_type, parts) {
            (Some(ChecksumType::FullObject), _) => ChecksumKind::FullObject,
            (_, Some(parts)) => ChecksumKind::Composite { parts },
            _ => ChecksumKind::Unstated,
        }
    }
}

/// What happened to an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// PutObject succeeded.
    ObjectPut {
        /// ETag of the new object.
        etag: ETag,
        /// The checksum the driver computed over the body it sent.
        checksum: Option<ChecksumValue>,
        /// The checksum the server echoed in its answer, if it did.
        server_checksum: Option<ChecksumValue>,
    },
    /// CreateMultipartUpload succeeded.
    UploadCreated {
        /// The new upload.
        upload_id: UploadId,
    },
    /// UploadPart succeeded.
    PartUploaded {
        /// The part's ETag.
        etag: ETag,
        /// The checksum the driver computed over the body it sent.
        checksum: Option<ChecksumValue>,
        /// The checksum the server echoed in its answer, if it did (Ceph RGW 18 and
        /// s3s-fs do not; AWS does, having checked it).
        server_checksum: Option<ChecksumValue>,
    },
    /// One page of ListParts.
    PartsListed {
        /// The parts on this page.
        parts: Vec<ListedPart>,
        /// Where the next page starts, when the listing is truncated.
        next_part_number_marker: Option<u32>,
    },
    /// CompleteMultipartUpload succeeded.
    UploadCompleted {
        /// ETag of the new object.
        etag: ETag,
        /// The object checksum the server returned, if it did: the value, and the part
        /// count of a composite one (`-N`).
        server_checksum: Option<(ChecksumValue, Option<u32>)>,
    },
    /// AbortMultipartUpload succeeded.
    UploadAborted,
    /// HeadObject succeeded.
    ObjectInfo(ObjectInfo),
    /// The partial file exists with the right length.
    FilePrepared {
        /// The length it had before, if it existed.
        previous_len: Option<u64>,
    },
    /// A range was received in full and written (durable before the next checkpoint).
    RangeWritten {
        /// Checksum of the bytes, when asked for.
        checksum: Option<ChecksumValue>,
        /// MD5 of the bytes, when asked for.
        md5: Option<[u8; 16]>,
    },
    /// MD5 (and CRC, when asked for) of a range of the source.
    SourceHashed {
        /// MD5 of the bytes.
        md5: [u8; 16],
        /// Checksum of the bytes, when asked for.
        checksum: Option<ChecksumValue>,
    },
    /// What was computed over a range of the partial file.
    PartialRangeHashed {
        /// Checksum of the bytes, when asked for.
        checksum: Option<ChecksumValue>,
        /// MD5 of the bytes, when asked for.
        md5: Option<[u8; 16]>,
    },
    /// What was computed over the whole partial file.
    FileHashed {
        /// Its MD5, when asked for.
        md5: Option<[u8; 16]>,
        /// Its checksum, when asked for.
        checksum: Option<ChecksumValue>,
        /// The multipart ETag it would have if uploaded in parts of each size asked for
        /// (in the order asked, without quotes).
        multipart_etags: Vec<String>,
    },
    /// The partial file was renamed to the destination.
    FileCommitted,
    /// The partial file was removed (or was not there).
    FileDeleted,
    /// `len_bytes` of the stream were read and are held for the range asked for; fewer
    /// than asked for means that the stream ended there.
    StreamRead {
        /// Bytes read.
        len_bytes: u64,
    },
    /// The operation failed.
    Failed(Failure),
    /// The driver abandoned the operation (on pause or cancel) before it finished.
    Dropped,
}

/// The classes of failure the machines act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// A server error worth retrying (500, 502, 503, 504, InternalError, RequestTimeout).
    Transient,
    /// The server asked to slow down (503 SlowDown, 429).
    Throttled,
    /// The connection failed (refused, reset, truncated body).
    Transport,
    /// The request took too long.
    Timeout,
    /// 412: the object is not the version asked for.
    PreconditionFailed,
    /// The bucket, key or upload does not exist.
    NotFound,
    /// Credentials, signature or permissions were refused.
    Denied,
    /// The request was refused as invalid (EntityTooSmall, InvalidPart, ...).
    InvalidRequest,
    /// The local source file changed while it was read.
    SourceChanged,
    /// A local file operation failed (disk full, permission denied, ...).
    LocalIo,
    /// Anything else; not retried.
    Other,
}

impl FailureKind {
    /// Whether a retry may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            FailureKind::Transient
                | FailureKind::Throttled
                | FailureKind::Transport
                | FailureKind::Timeout
        )
    }
}

/// A classified failure, as the driver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Its class.
    pub kind: FailureKind,
    /// HTTP status, if a response came.
    pub status: Option<u16>,
    /// S3 error code, if the response had one.
    pub code: Option<String>,
    /// A human-readable message.
    pub message: String,
}

impl Failure {
    /// A failure of `kind` with just a message.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            status: None,
            code: None,
            message: message.into(),
        }
    }

    /// Whether the S3 error code is `code`.
    pub fn has_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.status, &self.code) {
            (Some(s), Some(c)) => write!(f, "{c} (HTTP {s}): {}", self.message),
            (Some(s), None) => write!(f, "HTTP {s}: {}", self.message),
            (None, Some(c)) => write!(f, "{c}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: &str = "\"0123456789abcdef0123456789abcdef\"";

    #[test]
    fn a_range_answer_must_be_the_pinned_version_and_the_bytes_asked_for() {
        let asked = ByteRange::new(10, 20);
        let pinned = ETag::new(TAG);
        let same = ETag::new(TAG.trim_matches('"').to_uppercase());
        assert!(check_range_answer(asked, &pinned, Some(&same), Some(asked)).is_ok());
        assert!(check_range_answer(asked, &pinned, None, Some(asked)).is_ok());
        let replaced = check_range_answer(asked, &pinned, Some(&ETag::new("\"x\"")), Some(asked));
        assert_eq!(
            replaced.map_err(|f| f.kind),
            Err(FailureKind::PreconditionFailed)
        );
        let other = check_range_answer(asked, &pinned, None, Some(ByteRange::new(10, 19)));
        assert_eq!(other.map_err(|f| f.kind), Err(FailureKind::Transient));
        // A 200 with the whole object answers a range from 0 only.
        assert!(check_range_answer(ByteRange::new(0, 5), &pinned, None, None).is_ok());
        assert!(check_range_answer(asked, &pinned, None, None).is_err());
    }

    #[test]
    fn what_a_checksum_covers_as_the_server_said_it() {
        use ChecksumKind as K;
        assert_eq!(
            K::reported(Some(ChecksumType::FullObject), Some(3)),
            K::FullObject
        );
        assert_eq!(
            K::reported(Some(ChecksumType::Composite), Some(3)),
            K::Composite { parts: 3 }
        );
        assert_eq!(K::reported(None, Some(2)), K::Composite { parts: 2 });
        assert_eq!(
            K::reported(Some(ChecksumType::Composite), None),
            K::Unstated
        );
        assert_eq!(K::reported(None, None), K::Unstated);
    }

    #[test]
    fn the_part_size_hint_is_read_from_the_metadata() {
        let info = |metadata: Vec<(String, String)>| ObjectInfo {
            content_length: 1,
            etag: ETag::new(TAG),
            last_modified: None,
            checksum: None,
            parts_count: None,
            part_range: None,
            etag_not_md5: false,
            metadata,
        };
        let hint = |v: &str| vec![("S3TM-Part-Size".to_owned(), v.to_owned())];
        assert_eq!(info(hint(" 8388608")).part_size_hint(), Some(8 << 20));
        assert_eq!(info(hint("eight")).part_size_hint(), None);
        assert_eq!(info(Vec::new()).part_size_hint(), None);
    }
}
