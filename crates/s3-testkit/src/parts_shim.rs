//! A test fidelity shim: S3 behaviour that `s3s-fs` 0.14 lacks, layered over it.
//!
//! This is not a server of its own. [`PartsShim`] implements [`s3s::S3`] by calling
//! [`s3s_fs::FileSystem`] for every operation and keeping, in memory, what `s3s-fs`
//! forgets about multipart uploads: each part's length and CRC, and the upload's checksum
//! algorithm and type. With that it answers as Amazon S3 does where `s3s-fs` does not:
//!
//! - UploadPart computes CRC32 and CRC32C of the bytes received, refuses a part whose
//!   `x-amz-checksum-crc32` / `-crc32c` (header or verified trailer) or `Content-MD5`
//!   differs with `BadDigest` (the part `s3s-fs` had before is kept), and echoes the part
//!   checksum.
//! - CompleteMultipartUpload checks the listed parts against those received (ETag,
//!   checksum, 5 MiB minimum before `s3s-fs` drops the upload) and reports the object
//!   checksum: for `COMPOSITE` the CRC of the concatenated big-endian part CRCs as
//!   `<base64>-<N>`, for `FULL_OBJECT` the CRC of the whole object (and checks the one
//!   the request sent).
//! - HeadObject / GetObject with `partNumber` answer for that part only (206,
//!   `Content-Range`, part length, `x-amz-mp-parts-count`, the object's ETag, the part's
//!   CRC for a composite object under checksum mode); a number beyond the parts count is
//!   416 `InvalidPartNumber`; partNumber=1 of a single-part object is the whole object.
//! - Checksums are reported only under `x-amz-checksum-mode: ENABLED`, with
//!   `x-amz-checksum-type`, never for a ranged GET; `If-Match` is checked on HEAD/GET
//!   (`s3s-fs` ignores it there).
//!
//! Not emulated: SHA-1/SHA-256/CRC64NVME upload checksums (CreateMultipartUpload with one
//! is refused as `NotImplemented`), S3's default CRC64NVME for objects uploaded without a
//! checksum, part numbers with gaps (`s3s-fs` refuses them), `If-None-Match` and the
//! date conditions on HEAD/GET, ListParts checksums, ETags and ordering, ListMultipartUploads
//! and GetObjectAttributes (`s3s-fs` has neither).
//!
//! Only objects completed through the shim have part records; any other object answers
//! `partNumber` as a single-part one. UploadPartCopy parts are digested by reading their
//! source back. The records live as long as the server; one whose ETag no longer matches
//! the stored object is dropped. A GET `partNumber` whose object is replaced between the
//! shim's look-up and its read fails with 500 `InternalError` (S3 would not tear).

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::StatusCode;
use s3s::crypto::{Checksum as _, Md5};
use s3s::dto::*;
use s3s::stream::{ByteStream, RemainingLength};
use s3s::{
    Body, S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, StdError, TrailingHeaders,
    s3_error,
};

/// The smallest part S3 accepts, except the last.
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// A response extension asking the HTTP layer for another status code: `s3s` 0.14 ignores
/// [`S3Response::status`] for HeadObject, and S3 answers a HEAD with `partNumber` with 206.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StatusOverride(pub(crate) StatusCode);

/// The CRCs the shim emulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Crc {
    Crc32,
    Crc32c,
}

impl Crc {
    fn name(self) -> &'static str {
        match self {
            Self::Crc32 => "CRC32",
            Self::Crc32c => "CRC32C",
        }
    }

    fn header(self) -> &'static str {
        match self {
            Self::Crc32 => "x-amz-checksum-crc32",
            Self::Crc32c => "x-amz-checksum-crc32c",
        }
    }

    fn of(self, part: &Part) -> u32 {
        match self {
            Self::Crc32 => part.crc32,
            Self::Crc32c => part.crc32c,
        }
    }

    fn compute(self, data: &[u8]) -> u32 {
        match self {
            Self::Crc32 => crc32fast::hash(data),
            Self::Crc32c => crc32c::crc32c(data),
        }
    }

    /// CRC of `a || b` from CRC(a), CRC(b) and the length of b.
    fn combine(self, crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
        match self {
            Self::Crc32 => {
                let mut h = crc32fast::Hasher::new_with_initial(crc_a);
                h.combine(&crc32fast::Hasher::new_with_initial_len(crc_b, len_b));
                h.finalize()
            }
            Self::Crc32c => crc32c::crc32c_combine(
                crc_a,
                crc_b,
                usize::try_from(len_b).expect("part length fits in usize"),
            ),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Composite,
    FullObject,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Composite => ChecksumType::COMPOSITE,
            Self::FullObject => ChecksumType::FULL_OBJECT,
        }
    }

    fn dto(self) -> ChecksumType {
        ChecksumType::from_static(self.name())
    }
}

/// A part as received by UploadPart (or UploadPartCopy).
#[derive(Clone, Debug)]
struct Part {
    len: u64,
    crc32: u32,
    crc32c: u32,
    /// Unquoted, as `s3s-fs` returned it.
    etag: String,
}

#[derive(Debug)]
struct Upload {
    bucket: String,
    key: String,
    checksum: Option<(Crc, Kind)>,
    parts: BTreeMap<i32, Part>,
}

/// A completed multipart object: its parts in order, as named in the Complete request.
#[derive(Debug)]
struct Stored {
    /// Unquoted ETag of the object when it was completed; a different ETag means the
    /// object was replaced without the shim seeing it.
    etag: String,
    parts: Vec<Part>,
    checksum: Option<(Crc, Kind)>,
}

impl Stored {
    /// The object checksum S3 reports, if the upload had an algorithm.
    fn object_checksum(&self) -> Option<(Crc, Kind, String)> {
        let (crc, kind) = self.checksum?;
        let value = match kind {
            Kind::Composite => {
                let concatenated: Vec<u8> = self
                    .parts
                    .iter()
                    .flat_map(|p| crc.of(p).to_be_bytes())
                    .collect();
                format!("{}-{}", b64(crc.compute(&concatenated)), self.parts.len())
            }
            Kind::FullObject => {
                let (first, rest) = self.parts.split_first()?;
                let whole = rest
                    .iter()
                    .fold(crc.of(first), |acc, p| crc.combine(acc, crc.of(p), p.len));
                b64(whole)
            }
        };
        Some((crc, kind, value))
    }
}

#[derive(Debug, Default)]
struct Records {
    uploads: HashMap<String, Upload>,
    objects: HashMap<(String, String), Arc<Stored>>,
}

/// The checksum fields of a HEAD/GET/Complete response.
#[derive(Clone, Debug, Default)]
struct Reported {
    crc32: Option<String>,
    crc32c: Option<String>,
    crc64nvme: Option<String>,
    sha1: Option<String>,
    sha256: Option<String>,
    kind: Option<ChecksumType>,
}

impl Reported {
    fn one(crc: Crc, kind: Kind, value: String) -> Self {
        let mut r = Self {
            kind: Some(kind.dto()),
            ..Self::default()
        };
        match crc {
            Crc::Crc32 => r.crc32 = Some(value),
            Crc::Crc32c => r.crc32c = Some(value),
        }
        r
    }

    fn any(&self) -> bool {
        self.crc32.is_some()
            || self.crc32c.is_some()
            || self.crc64nvme.is_some()
            || self.sha1.is_some()
            || self.sha256.is_some()
    }

    /// What `s3s-fs` reported for a single-part object, typed as S3 types it.
    fn whole_single_part(mut self) -> Self {
        if self.any() && self.kind.is_none() {
            self.kind = Some(Kind::FullObject.dto());
        }
        self
    }
}

macro_rules! take_checksums {
    ($out:expr) => {
        Reported {
            crc32: $out.checksum_crc32.take(),
            crc32c: $out.checksum_crc32c.take(),
            crc64nvme: $out.checksum_crc64nvme.take(),
            sha1: $out.checksum_sha1.take(),
            sha256: $out.checksum_sha256.take(),
            kind: $out.checksum_type.take(),
        }
    };
}

macro_rules! put_checksums {
    ($out:expr, $r:expr) => {{
        let r: Reported = $r;
        $out.checksum_crc32 = r.crc32;
        $out.checksum_crc32c = r.crc32c;
        $out.checksum_crc64nvme = r.crc64nvme;
        $out.checksum_sha1 = r.sha1;
        $out.checksum_sha256 = r.sha256;
        $out.checksum_type = r.kind;
    }};
}

/// Where a partNumber request reads, and what it reports.
struct PartView {
    start: u64,
    len: u64,
    total: u64,
    parts_count: Option<i32>,
    checksums: Reported,
}

impl PartView {
    fn content_range(&self) -> Option<String> {
        (self.len > 0).then(|| {
            format!(
                "bytes {}-{}/{}",
                self.start,
                self.start + self.len - 1,
                self.total
            )
        })
    }
}

/// [`s3s_fs::FileSystem`] with the S3 behaviour described in the module documentation.
pub(crate) struct PartsShim {
    inner: s3s_fs::FileSystem,
    records: Arc<Mutex<Records>>,
}

impl PartsShim {
    pub(crate) fn new(inner: s3s_fs::FileSystem) -> Self {
        Self {
            inner,
            records: Arc::default(),
        }
    }

    fn records(&self) -> MutexGuard<'_, Records> {
        // A panicking request cannot leave the maps half-updated; keep serving.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The record of a multipart object still holding `etag`; a stale one is dropped.
    fn stored(&self, bucket: &str, key: &str, etag: Option<&ETag>) -> Option<Arc<Stored>> {
        let mut records = self.records();
        let id = (bucket.to_owned(), key.to_owned());
        let stored = records.objects.get(&id)?;
        if etag.is_some_and(|e| e.value() == stored.etag) {
            Some(Arc::clone(stored))
        } else {
            records.objects.remove(&id);
            None
        }
    }

    fn forget_object(&self, bucket: &str, key: &str) {
        self.records()
            .objects
            .remove(&(bucket.to_owned(), key.to_owned()));
    }

    /// Reads `bucket/key` (or `range` of it) through the inner store and digests it: the
    /// bytes an UploadPartCopy copied, which the shim did not see pass.
    async fn digest_source<T>(
        &self,
        like: &S3Request<T>,
        bucket: &str,
        key: &str,
        range: Option<Range>,
    ) -> S3Result<Digest> {
        let input = GetObjectInput {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            range,
            ..GetObjectInput::default()
        };
        let resp = self.inner.get_object(sibling(like, input)).await?;
        let mut digest = Digest::default();
        if let Some(mut body) = resp.output.body {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| S3Error::internal_error(ErrorText(e.to_string())))?;
                digest.update(&chunk);
            }
        }
        Ok(digest)
    }
}

impl std::fmt::Debug for PartsShim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartsShim").finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct ErrorText(String);

impl std::fmt::Display for ErrorText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ErrorText {}

/// A request for another operation, sharing `like`'s identity.
fn sibling<T, U>(like: &S3Request<T>, input: U) -> S3Request<U> {
    S3Request {
        input,
        method: like.method.clone(),
        uri: like.uri.clone(),
        headers: like.headers.clone(),
        extensions: http::Extensions::new(),
        credentials: like.credentials.clone(),
        region: like.region.clone(),
        service: like.service.clone(),
        trailing_headers: None,
    }
}

fn b64(crc: u32) -> String {
    BASE64.encode(crc.to_be_bytes())
}

fn parse_crc(crc: Crc, value: &str) -> S3Result<u32> {
    BASE64
        .decode(value.trim())
        .ok()
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| {
            s3_error!(
                InvalidRequest,
                "Value for {} header is invalid.",
                crc.header()
            )
        })
}

fn checksum_mode(mode: Option<&ChecksumMode>) -> bool {
    mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case(ChecksumMode::ENABLED))
}

fn check_part_number(part_number: Option<i32>, range: Option<&Range>) -> S3Result<()> {
    let Some(n) = part_number else { return Ok(()) };
    if !(1..=10_000).contains(&n) {
        return Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ));
    }
    if range.is_some() {
        return Err(s3_error!(
            InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter"
        ));
    }
    Ok(())
}

fn check_if_match(condition: Option<&ETagCondition>, etag: Option<&ETag>) -> S3Result<()> {
    match condition {
        Some(ETagCondition::ETag(want)) if etag.is_none_or(|e| e.value() != want.value()) => {
            Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ))
        }
        _ => Ok(()),
    }
}

fn invalid_part_number() -> S3Error {
    let mut e = S3Error::with_message(
        S3ErrorCode::Custom("InvalidPartNumber".into()),
        "The requested partnumber is not satisfiable",
    );
    e.set_status_code(StatusCode::RANGE_NOT_SATISFIABLE);
    e
}

/// Part `n` of an object of `total` bytes whose single-part checksums are `whole`.
fn part_view(stored: Option<&Stored>, n: i32, total: u64, whole: Reported) -> S3Result<PartView> {
    let Some(stored) = stored else {
        // S3: a single-part object is its own part 1.
        if n != 1 {
            return Err(invalid_part_number());
        }
        return Ok(PartView {
            start: 0,
            len: total,
            total,
            parts_count: None,
            checksums: whole.whole_single_part(),
        });
    };
    let index = usize::try_from(n - 1).map_err(|_| invalid_part_number())?;
    let part = stored.parts.get(index).ok_or_else(invalid_part_number)?;
    let start = stored.parts[..index].iter().map(|p| p.len).sum();
    let checksums = match stored.checksum {
        Some((crc, Kind::Composite)) => Reported::one(crc, Kind::Composite, b64(crc.of(part))),
        // A part of a full-object checksum has no checksum of its own to report.
        _ => Reported::default(),
    };
    Ok(PartView {
        start,
        len: part.len,
        total,
        parts_count: Some(i32::try_from(stored.parts.len()).expect("at most 10000 parts")),
        checksums,
    })
}

/// The checksums of a whole-object HEAD/GET: the record's for a multipart object.
fn whole_view(stored: Option<&Stored>, from_inner: Reported) -> Reported {
    match stored {
        Some(s) => s
            .object_checksum()
            .map(|(crc, kind, value)| Reported::one(crc, kind, value))
            .unwrap_or_default(),
        None => from_inner.whole_single_part(),
    }
}

fn upload_checksum(input: &CreateMultipartUploadInput) -> S3Result<Option<(Crc, Kind)>> {
    let kind = match input.checksum_type.as_ref().map(ChecksumType::as_str) {
        None => None,
        Some(t) if t.eq_ignore_ascii_case(ChecksumType::COMPOSITE) => Some(Kind::Composite),
        Some(t) if t.eq_ignore_ascii_case(ChecksumType::FULL_OBJECT) => Some(Kind::FullObject),
        Some(t) => {
            return Err(s3_error!(
                InvalidRequest,
                "Value for x-amz-checksum-type header is invalid: {t}"
            ));
        }
    };
    let Some(algorithm) = &input.checksum_algorithm else {
        if kind.is_some() {
            return Err(s3_error!(
                InvalidRequest,
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header."
            ));
        }
        return Ok(None);
    };
    let crc = match algorithm.as_str() {
        a if a.eq_ignore_ascii_case("CRC32") => Crc::Crc32,
        a if a.eq_ignore_ascii_case("CRC32C") => Crc::Crc32c,
        a => {
            return Err(s3_error!(
                NotImplemented,
                "the s3-testkit parts shim emulates CRC32 and CRC32C only, not {a}"
            ));
        }
    };
    // S3's default when an algorithm comes without a type.
    Ok(Some((crc, kind.unwrap_or(Kind::Composite))))
}

/// Running length and CRCs of a body.
#[derive(Debug)]
struct Digest {
    len: u64,
    crc32: crc32fast::Hasher,
    crc32c: u32,
}

impl Default for Digest {
    fn default() -> Self {
        Self {
            len: 0,
            crc32: crc32fast::Hasher::new(),
            crc32c: 0,
        }
    }
}

impl Digest {
    fn update(&mut self, data: &[u8]) {
        self.len += data.len() as u64;
        self.crc32.update(data);
        self.crc32c = crc32c::crc32c_append(self.crc32c, data);
    }

    fn part(self, etag: String) -> Part {
        Part {
            len: self.len,
            crc32: self.crc32.finalize(),
            crc32c: self.crc32c,
            etag,
        }
    }
}

/// What [`VerifiedBody`] found once the body ended.
#[derive(Debug)]
struct BodyResult {
    len: u64,
    crc32: u32,
    crc32c: u32,
    /// The checksum the client sent and the shim checked, if any.
    sent: Option<Crc>,
    /// What the client sent that the bytes do not match.
    mismatch: Option<Mismatch>,
}

#[derive(Clone, Copy, Debug)]
enum Mismatch {
    Crc(Crc),
    ContentMd5,
}

impl Mismatch {
    fn error(self) -> S3Error {
        match self {
            Self::Crc(crc) => s3_error!(
                BadDigest,
                "The {} you specified did not match the calculated checksum.",
                crc.name()
            ),
            Self::ContentMd5 => s3_error!(
                BadDigest,
                "The Content-MD5 you specified did not match what we received."
            ),
        }
    }
}

/// An UploadPart body that digests what passes and, at its end, fails instead of ending
/// when the checksum or `Content-MD5` the client sent does not match (`s3s-fs` checks
/// neither on UploadPart), so `s3s-fs` never renames its temporary file over the part.
struct VerifiedBody {
    inner: StreamingBlob,
    digest: Digest,
    sent: Option<(Crc, u32)>,
    /// MD5 of the bytes so far, and the `Content-MD5` sent.
    md5: Option<(Md5, [u8; 16])>,
    trailers: Option<TrailingHeaders>,
    result: Arc<Mutex<Option<BodyResult>>>,
    ended: bool,
}

impl VerifiedBody {
    /// The checksum sent in a verified trailer (`x-amz-trailer`), when no header had one.
    fn trailer_checksum(&self) -> Option<(Crc, Option<u32>)> {
        self.trailers.as_ref()?.read(|h| {
            [Crc::Crc32, Crc::Crc32c].into_iter().find_map(|crc| {
                let v = h.get(crc.header())?;
                Some((crc, v.to_str().ok().and_then(|v| parse_crc(crc, v).ok())))
            })
        })?
    }

    fn finish(&mut self) -> bool {
        let digest = std::mem::take(&mut self.digest);
        let crc32 = digest.crc32.finalize();
        let crc32c = digest.crc32c;
        let computed = |crc| match crc {
            Crc::Crc32 => crc32,
            Crc::Crc32c => crc32c,
        };
        let sent = match self.sent {
            Some((crc, v)) => Some((crc, Some(v))),
            None => self.trailer_checksum(),
        };
        // An unparsable trailer value (None) matches nothing.
        let crc_mismatch =
            sent.and_then(|(crc, v)| (v != Some(computed(crc))).then_some(Mismatch::Crc(crc)));
        let md5_mismatch = self
            .md5
            .take()
            .and_then(|(md5, sent)| (md5.finalize() != sent).then_some(Mismatch::ContentMd5));
        let mismatch = md5_mismatch.or(crc_mismatch);
        let bad = mismatch.is_some();
        *self.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(BodyResult {
            len: digest.len,
            crc32,
            crc32c,
            sent: sent.map(|(crc, _)| crc),
            mismatch,
        });
        bad
    }
}

impl Stream for VerifiedBody {
    type Item = Result<Bytes, StdError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                this.digest.update(&bytes);
                if let Some((md5, _)) = &mut this.md5 {
                    md5.update(&bytes);
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(None) => {
                this.ended = true;
                if this.finish() {
                    Poll::Ready(Some(Err(Box::new(ErrorText(
                        "part checksum or Content-MD5 mismatch".into(),
                    )))))
                } else {
                    Poll::Ready(None)
                }
            }
            other => other,
        }
    }
}

impl ByteStream for VerifiedBody {
    fn remaining_length(&self) -> RemainingLength {
        self.inner.remaining_length()
    }
}

fn invalid_part(n: i32, why: &str) -> S3Error {
    s3_error!(
        InvalidPart,
        "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not have matched the part's entity tag. (part {n}: {why})"
    )
}

/// Checks a CompleteMultipartUpload against the parts received; returns them in order.
fn plan_complete(upload: &Upload, input: &CompleteMultipartUploadInput) -> S3Result<Vec<Part>> {
    if upload.bucket != input.bucket || upload.key != input.key {
        return Err(s3_error!(
            NoSuchUpload,
            "The specified upload does not exist for this key."
        ));
    }
    let listed = input
        .multipart_upload
        .as_ref()
        .and_then(|m| m.parts.as_deref())
        .unwrap_or_default();
    if listed.is_empty() {
        return Err(s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema"
        ));
    }
    if let Some(t) = &input.checksum_type {
        let created = upload.checksum.map(|(_, k)| k.name());
        if created.is_none_or(|c| !c.eq_ignore_ascii_case(t.as_str())) {
            return Err(s3_error!(
                InvalidRequest,
                "The upload was created using the {} checksum mode. The complete request must use the same checksum mode.",
                created.unwrap_or("default")
            ));
        }
    }
    let mut parts = Vec::with_capacity(listed.len());
    let mut previous = 0;
    for listed_part in listed {
        let n = listed_part
            .part_number
            .ok_or_else(|| s3_error!(MalformedXML, "a part has no PartNumber"))?;
        if n <= previous {
            return Err(s3_error!(
                InvalidPartOrder,
                "The list of parts was not in ascending order. The parts list must be specified in order of the part number."
            ));
        }
        previous = n;
        let part = upload
            .parts
            .get(&n)
            .ok_or_else(|| invalid_part(n, "not uploaded"))?;
        if let Some(etag) = &listed_part.e_tag
            && etag.value() != part.etag
        {
            return Err(invalid_part(n, "ETag differs"));
        }
        if let Some((crc, kind)) = upload.checksum {
            let given = match crc {
                Crc::Crc32 => &listed_part.checksum_crc32,
                Crc::Crc32c => &listed_part.checksum_crc32c,
            };
            match given {
                None if kind == Kind::Composite => {
                    return Err(s3_error!(
                        InvalidRequest,
                        "The upload was created using a {} checksum. The complete request must include the checksum for each part. It was missing for part {n} in the request.",
                        crc.name().to_ascii_lowercase()
                    ));
                }
                Some(v) if parse_crc(crc, v)? != crc.of(part) => {
                    return Err(invalid_part(n, "checksum differs"));
                }
                None | Some(_) => {}
            }
        }
        parts.push(part.clone());
    }
    // Checked here because s3s-fs drops the upload before it finds a part too small.
    if parts[..parts.len() - 1]
        .iter()
        .any(|p| p.len < MIN_PART_SIZE)
    {
        return Err(s3_error!(
            EntityTooSmall,
            "Your proposed upload is smaller than the minimum allowed object size."
        ));
    }
    if let Some(size) = input.mpu_object_size {
        let total: u64 = parts.iter().map(|p| p.len).sum();
        if u64::try_from(size).ok() != Some(total) {
            return Err(s3_error!(
                InvalidRequest,
                "The provided 'x-amz-mp-object-size' header value {size} does not match what was computed: {total}"
            ));
        }
    }
    Ok(parts)
}

#[async_trait::async_trait]
impl S3 for PartsShim {
    // --- delegated unchanged ---

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.inner.create_bucket(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.inner.get_bucket_location(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.inner.head_bucket(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.inner.list_buckets(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.inner.list_objects(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.inner.list_objects_v2(req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.inner.list_parts(req).await
    }

    // --- delegated, then the records follow what changed ---

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let bucket = req.input.bucket.clone();
        let resp = self.inner.delete_bucket(req).await?;
        let mut records = self.records();
        records.objects.retain(|(b, _), _| *b != bucket);
        records.uploads.retain(|_, u| u.bucket != bucket);
        Ok(resp)
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let resp = self.inner.put_object(req).await?;
        self.forget_object(&bucket, &key);
        Ok(resp)
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let resp = self.inner.copy_object(req).await?;
        self.forget_object(&bucket, &key);
        Ok(resp)
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let resp = self.inner.delete_object(req).await?;
        self.forget_object(&bucket, &key);
        Ok(resp)
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let bucket = req.input.bucket.clone();
        let keys: Vec<String> = req
            .input
            .delete
            .objects
            .iter()
            .map(|o| o.key.clone())
            .collect();
        let resp = self.inner.delete_objects(req).await?;
        for key in keys {
            self.forget_object(&bucket, &key);
        }
        Ok(resp)
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let upload_id = req.input.upload_id.clone();
        let resp = self.inner.abort_multipart_upload(req).await?;
        self.records().uploads.remove(&upload_id);
        Ok(resp)
    }

    // --- S3 behaviour s3s-fs lacks ---

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let checksum = upload_checksum(&req.input)?;
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let mut resp = self.inner.create_multipart_upload(req).await?;
        if let Some(id) = &resp.output.upload_id {
            self.records().uploads.insert(
                id.clone(),
                Upload {
                    bucket,
                    key,
                    checksum,
                    parts: BTreeMap::new(),
                },
            );
        }
        if let Some((crc, kind)) = checksum {
            resp.output.checksum_algorithm = Some(ChecksumAlgorithm::from_static(crc.name()));
            resp.output.checksum_type = Some(kind.dto());
        }
        Ok(resp)
    }

    async fn upload_part(
        &self,
        mut req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let known = self
            .records()
            .uploads
            .get(&req.input.upload_id)
            .map(|u| u.checksum);
        // Unknown here: s3s-fs decides (it refuses upload ids it did not issue).
        let Some(upload_checksum) = known else {
            return self.inner.upload_part(req).await;
        };
        let input = &req.input;
        if input.checksum_sha1.is_some()
            || input.checksum_sha256.is_some()
            || input.checksum_crc64nvme.is_some()
        {
            return Err(s3_error!(
                NotImplemented,
                "the s3-testkit parts shim verifies CRC32 and CRC32C part checksums only"
            ));
        }
        let sent = match (&input.checksum_crc32, &input.checksum_crc32c) {
            (Some(_), Some(_)) => {
                return Err(s3_error!(
                    InvalidRequest,
                    "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
                ));
            }
            (Some(v), None) => Some((Crc::Crc32, parse_crc(Crc::Crc32, v)?)),
            (None, Some(v)) => Some((Crc::Crc32c, parse_crc(Crc::Crc32c, v)?)),
            (None, None) => None,
        };
        if let (Some((want, _)), Some((got, _))) = (upload_checksum, sent)
            && want != got
        {
            return Err(s3_error!(
                InvalidRequest,
                "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
                want.name().to_ascii_lowercase(),
                got.name().to_ascii_lowercase()
            ));
        }
        let md5 = match &input.content_md5 {
            Some(v) => Some(
                BASE64
                    .decode(v.trim())
                    .ok()
                    .and_then(|d| <[u8; 16]>::try_from(d).ok())
                    .ok_or_else(|| {
                        s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid.")
                    })?,
            ),
            None => None,
        };
        let upload_id = input.upload_id.clone();
        let part_number = input.part_number;
        let result = Arc::new(Mutex::new(None));
        if let Some(body) = req.input.body.take() {
            req.input.body = Some(StreamingBlob::new(VerifiedBody {
                inner: body,
                digest: Digest::default(),
                sent,
                md5: md5.map(|sent| (Md5::new(), sent)),
                trailers: req.trailing_headers.clone(),
                result: Arc::clone(&result),
                ended: false,
            }));
        }

        let inner = self.inner.upload_part(req).await;
        let body = result.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(BodyResult {
            mismatch: Some(mismatch),
            ..
        }) = body
        {
            return Err(mismatch.error());
        }
        let mut resp = inner?;
        let Some(body) = body else {
            return Err(S3Error::internal_error(ErrorText(
                "s3s-fs stored a part without reading its body to the end".into(),
            )));
        };
        let etag = resp
            .output
            .e_tag
            .as_ref()
            .map(|e| e.value().to_owned())
            .unwrap_or_default();
        if let Some(upload) = self.records().uploads.get_mut(&upload_id) {
            upload.parts.insert(
                part_number,
                Part {
                    len: body.len,
                    crc32: body.crc32,
                    crc32c: body.crc32c,
                    etag,
                },
            );
        }
        // S3 echoes the part checksum: the upload's algorithm, or the one sent.
        match upload_checksum.map(|(crc, _)| crc).or(body.sent) {
            Some(Crc::Crc32) => resp.output.checksum_crc32 = Some(b64(body.crc32)),
            Some(Crc::Crc32c) => resp.output.checksum_crc32c = Some(b64(body.crc32c)),
            None => {}
        }
        Ok(resp)
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let upload_id = req.input.upload_id.clone();
        let part_number = req.input.part_number;
        let upload_checksum = match self.records().uploads.get(&upload_id) {
            Some(u) => u.checksum,
            None => None,
        };
        let source = match &req.input.copy_source {
            CopySource::Bucket { bucket, key, .. } => Some((bucket.to_string(), key.to_string())),
            _ => None,
        };
        let range = match req.input.copy_source_range.as_deref() {
            Some(r) => Some(Range::parse(r).map_err(|_| s3_error!(InvalidArgument))?),
            None => None,
        };
        let like = sibling(&req, ());
        let mut resp = self.inner.upload_part_copy(req).await?;
        let etag = resp
            .output
            .copy_part_result
            .as_ref()
            .and_then(|r| r.e_tag.as_ref())
            .map(|e| e.value().to_owned())
            .unwrap_or_default();
        // The shim did not see the bytes: read them back from the source.
        let part = match source {
            Some((bucket, key)) => self
                .digest_source(&like, &bucket, &key, range)
                .await
                .ok()
                .map(|d| d.part(etag)),
            None => None,
        };
        if let Some(upload) = self.records().uploads.get_mut(&upload_id) {
            match &part {
                Some(p) => {
                    upload.parts.insert(part_number, p.clone());
                }
                None => {
                    upload.parts.remove(&part_number);
                }
            }
        }
        if let (Some((crc, _)), Some(p), Some(result)) = (
            upload_checksum,
            &part,
            resp.output.copy_part_result.as_mut(),
        ) {
            match crc {
                Crc::Crc32 => result.checksum_crc32 = Some(b64(p.crc32)),
                Crc::Crc32c => result.checksum_crc32c = Some(b64(p.crc32c)),
            }
        }
        Ok(resp)
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = &req.input;
        let planned = self
            .records()
            .uploads
            .get(&input.upload_id)
            .map(|upload| plan_complete(upload, input).map(|parts| (parts, upload.checksum)));
        let Some(planned) = planned else {
            return self.inner.complete_multipart_upload(req).await;
        };
        let (parts, checksum) = planned?;
        let mut stored = Stored {
            etag: String::new(),
            parts,
            checksum,
        };
        let object_checksum = stored.object_checksum();
        if let Some((crc, kind, expected)) = &object_checksum {
            let sent = match crc {
                Crc::Crc32 => &input.checksum_crc32,
                Crc::Crc32c => &input.checksum_crc32c,
            };
            if sent.as_ref().is_some_and(|s| s.trim() != expected) {
                return Err(s3_error!(
                    BadDigest,
                    "The {} {} checksum you specified did not match the calculated checksum.",
                    kind.name(),
                    crc.name()
                ));
            }
        }
        let upload_id = input.upload_id.clone();
        let (bucket, key) = (input.bucket.clone(), input.key.clone());

        let mut resp = self.inner.complete_multipart_upload(req).await?;
        if let Some(later) = resp.output.future.take() {
            resp.output = later.await?;
        }
        stored.etag = resp
            .output
            .e_tag
            .as_ref()
            .map(|e| e.value().to_owned())
            .unwrap_or_default();
        let reported = object_checksum
            .map(|(crc, kind, value)| Reported::one(crc, kind, value))
            .unwrap_or_default();
        put_checksums!(resp.output, reported);
        let mut records = self.records();
        records.uploads.remove(&upload_id);
        records.objects.insert((bucket, key), Arc::new(stored));
        Ok(resp)
    }

    async fn head_object(
        &self,
        mut req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let part_number = req.input.part_number.take();
        check_part_number(part_number, req.input.range.as_ref())?;
        let if_match = req.input.if_match.clone();
        let with_checksums = checksum_mode(req.input.checksum_mode.as_ref());
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());

        let mut resp = self.inner.head_object(req).await?;
        let out = &mut resp.output;
        check_if_match(if_match.as_ref(), out.e_tag.as_ref())?;
        let stored = self.stored(&bucket, &key, out.e_tag.as_ref());
        let from_inner = take_checksums!(out);
        let total = out
            .content_length
            .and_then(|l| u64::try_from(l).ok())
            .unwrap_or(0);
        let checksums = match part_number {
            None => whole_view(stored.as_deref(), from_inner),
            Some(n) => {
                let view = part_view(stored.as_deref(), n, total, from_inner)?;
                out.content_length = Some(i64::try_from(view.len).expect("part fits in i64"));
                out.content_range = view.content_range();
                out.parts_count = view.parts_count;
                if out.content_range.is_some() {
                    resp.extensions
                        .insert(StatusOverride(StatusCode::PARTIAL_CONTENT));
                }
                view.checksums
            }
        };
        if with_checksums {
            put_checksums!(out, checksums);
        }
        Ok(resp)
    }

    async fn get_object(
        &self,
        mut req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let part_number = req.input.part_number.take();
        check_part_number(part_number, req.input.range.as_ref())?;
        let if_match = req.input.if_match.clone();
        let with_checksums = checksum_mode(req.input.checksum_mode.as_ref());
        let ranged = req.input.range.is_some();
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());

        // A part is read as a range; its bounds come from the record of the object the
        // inner store holds now.
        let mut part = None;
        if let Some(n) = part_number {
            let head = HeadObjectInput {
                bucket: bucket.clone(),
                key: key.clone(),
                ..HeadObjectInput::default()
            };
            let mut probe = self.inner.head_object(sibling(&req, head)).await?.output;
            check_if_match(if_match.as_ref(), probe.e_tag.as_ref())?;
            let stored = self.stored(&bucket, &key, probe.e_tag.as_ref());
            let total = probe
                .content_length
                .and_then(|l| u64::try_from(l).ok())
                .unwrap_or(0);
            let view = part_view(stored.as_deref(), n, total, take_checksums!(probe))?;
            if view.len > 0 {
                req.input.range = Some(Range::Int {
                    first: view.start,
                    last: Some(view.start + view.len - 1),
                });
            }
            part = Some((view, probe.e_tag));
        }

        let mut resp = self.inner.get_object(req).await?;
        let out = &mut resp.output;
        check_if_match(if_match.as_ref(), out.e_tag.as_ref())?;
        let from_inner = take_checksums!(out);
        let checksums = match part {
            Some((view, probed)) => {
                if out.e_tag.as_ref().map(ETag::value) != probed.as_ref().map(ETag::value) {
                    return Err(S3Error::internal_error(ErrorText(
                        "the object changed while the shim read a part of it; retry".into(),
                    )));
                }
                if view.len == 0 {
                    out.body = Some(StreamingBlob::from(Body::empty()));
                }
                out.content_length = Some(i64::try_from(view.len).expect("part fits in i64"));
                out.content_range = view.content_range();
                out.parts_count = view.parts_count;
                view.checksums
            }
            // S3 reports no checksum for a range.
            None if ranged => Reported::default(),
            None => whole_view(
                self.stored(&bucket, &key, out.e_tag.as_ref()).as_deref(),
                from_inner,
            ),
        };
        if with_checksums {
            put_checksums!(out, checksums);
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(data: &[u8]) -> Part {
        let mut d = Digest::default();
        d.update(data);
        d.part(String::new())
    }

    #[test]
    fn full_object_checksum_combines_part_crcs() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (a, b) = data.split_at(40_000);
        for crc in [Crc::Crc32, Crc::Crc32c] {
            let stored = Stored {
                etag: String::new(),
                parts: vec![part(a), part(b)],
                checksum: Some((crc, Kind::FullObject)),
            };
            let (_, _, value) = stored.object_checksum().unwrap();
            assert_eq!(value, b64(crc.compute(&data)), "{crc:?}");
        }
    }

    #[test]
    fn composite_checksum_is_crc_of_part_crcs_with_count() {
        let stored = Stored {
            etag: String::new(),
            parts: vec![part(b"hello"), part(b"world")],
            checksum: Some((Crc::Crc32, Kind::Composite)),
        };
        let mut concatenated = crc32fast::hash(b"hello").to_be_bytes().to_vec();
        concatenated.extend(crc32fast::hash(b"world").to_be_bytes());
        let (_, kind, value) = stored.object_checksum().unwrap();
        assert_eq!(kind, Kind::Composite);
        assert_eq!(value, format!("{}-2", b64(crc32fast::hash(&concatenated))));
    }
}
