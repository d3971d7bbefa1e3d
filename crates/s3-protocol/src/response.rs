//! Response parsing: every function takes `(status, headers, body)` and returns the
//! operation's output or a [`ResponseError`]. Nothing a server sends can panic here.
//!
//! A non-2xx status always yields [`ResponseError::Service`]; so does a 2xx whose body
//! is an `<Error>` document (CompleteMultipartUpload reports late failures that way).

use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::checksum::{ChecksumAlgorithm, ChecksumType, CrcValue};
use crate::error::{ErrorClass, MalformedResponse, ResponseError, S3Error};
use crate::types::{ContentRange, ETag, UploadId};
use crate::xml;

/// Checksums an object or part reports, as raw header/XML values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseChecksums {
    /// `x-amz-checksum-crc32` / `ChecksumCRC32`.
    pub crc32: Option<String>,
    /// `x-amz-checksum-crc32c` / `ChecksumCRC32C`.
    pub crc32c: Option<String>,
    /// `x-amz-checksum-crc64nvme` / `ChecksumCRC64NVME`.
    pub crc64nvme: Option<String>,
    /// `x-amz-checksum-sha1` / `ChecksumSHA1`.
    pub sha1: Option<String>,
    /// `x-amz-checksum-sha256` / `ChecksumSHA256`.
    pub sha256: Option<String>,
    /// `x-amz-checksum-type` / `ChecksumType`, when the server said.
    pub checksum_type: Option<ChecksumType>,
}

impl ResponseChecksums {
    /// The parsed value for `algorithm`, if reported and well-formed.
    pub fn crc(&self, algorithm: ChecksumAlgorithm) -> Option<CrcValue> {
        CrcValue::parse(algorithm, self.raw(algorithm)?)
    }

    /// The value for `algorithm` as the server wrote it.
    pub fn raw(&self, algorithm: ChecksumAlgorithm) -> Option<&str> {
        match algorithm {
            ChecksumAlgorithm::Crc32 => self.crc32.as_deref(),
            ChecksumAlgorithm::Crc32c => self.crc32c.as_deref(),
            ChecksumAlgorithm::Crc64Nvme => self.crc64nvme.as_deref(),
            ChecksumAlgorithm::Sha1 => self.sha1.as_deref(),
            ChecksumAlgorithm::Sha256 => self.sha256.as_deref(),
        }
    }

    /// The first algorithm reported with a well-formed value, and that value.
    pub fn first(&self) -> Option<(ChecksumAlgorithm, CrcValue)> {
        ChecksumAlgorithm::ALL
            .into_iter()
            .find_map(|a| Some((a, self.crc(a)?)))
    }

    /// True when no checksum at all was reported.
    pub fn is_empty(&self) -> bool {
        self.crc32.is_none()
            && self.crc32c.is_none()
            && self.crc64nvme.is_none()
            && self.sha1.is_none()
            && self.sha256.is_none()
    }

    fn from_headers(headers: &HeaderMap) -> Self {
        Self {
            crc32: header(headers, "x-amz-checksum-crc32"),
            crc32c: header(headers, "x-amz-checksum-crc32c"),
            crc64nvme: header(headers, "x-amz-checksum-crc64nvme"),
            sha1: header(headers, "x-amz-checksum-sha1"),
            sha256: header(headers, "x-amz-checksum-sha256"),
            checksum_type: header(headers, "x-amz-checksum-type")
                .as_deref()
                .and_then(ChecksumType::parse),
        }
    }
}

/// What HeadObject tells about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadObjectOutput {
    /// Object size (or part size when HeadObject asked for a part).
    pub content_length: u64,
    /// The ETag.
    pub etag: Option<ETag>,
    /// `Last-Modified`, as sent (an HTTP date).
    pub last_modified: Option<String>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// Stored checksums (only with checksum mode enabled).
    pub checksums: ResponseChecksums,
    /// `x-amz-mp-parts-count`: number of parts of a multipart object.
    pub parts_count: Option<u32>,
    /// `Content-Range`, which S3 sends when a part was asked for; a value that does not
    /// parse is left out (HeadObject has no body it would describe).
    pub content_range: Option<ContentRange>,
    /// `x-amz-version-id`.
    pub version_id: Option<String>,
    /// User metadata, names without the `x-amz-meta-` prefix.
    pub metadata: Vec<(String, String)>,
}

/// The headers of a successful GetObject; the body is streamed by the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetObjectOutput {
    /// The status was 206: only `content_range` bytes follow.
    pub partial: bool,
    /// `Content-Length` of this response, when sent.
    pub content_length: Option<u64>,
    /// The parsed `Content-Range` of a 206.
    pub content_range: Option<ContentRange>,
    /// The ETag of the whole object.
    pub etag: Option<ETag>,
    /// `Last-Modified`, as sent.
    pub last_modified: Option<String>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// Stored checksums (with checksum mode; for a whole object or a whole part).
    pub checksums: ResponseChecksums,
    /// `x-amz-mp-parts-count`.
    pub parts_count: Option<u32>,
}

/// The result of PutObject or UploadPart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutput {
    /// ETag of the object or part; CompleteMultipartUpload needs it.
    pub etag: ETag,
    /// Checksums the server computed/verified.
    pub checksums: ResponseChecksums,
    /// `x-amz-version-id`.
    pub version_id: Option<String>,
}

/// The result of CreateMultipartUpload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateMultipartUploadOutput {
    /// Bucket, as echoed by the server.
    pub bucket: Option<String>,
    /// Key, as echoed by the server.
    pub key: Option<String>,
    /// The new upload's id.
    pub upload_id: UploadId,
    /// `x-amz-checksum-algorithm`, when the server confirmed one.
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
}

/// The result of CompleteMultipartUpload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompleteMultipartUploadOutput {
    /// URL of the object.
    pub location: Option<String>,
    /// Bucket.
    pub bucket: Option<String>,
    /// Key.
    pub key: Option<String>,
    /// ETag of the assembled object.
    pub etag: ETag,
    /// Object checksums from the body.
    pub checksums: ResponseChecksums,
    /// `x-amz-version-id`.
    pub version_id: Option<String>,
}

/// One part listed by ListParts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedPart {
    /// Part number (1..=10,000).
    pub part_number: u32,
    /// ETag of the part (some servers omit it).
    pub etag: Option<ETag>,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Upload time, as sent.
    pub last_modified: Option<String>,
    /// Part checksums.
    pub checksums: ResponseChecksums,
}

/// One page of ListParts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListPartsOutput {
    /// Bucket.
    pub bucket: Option<String>,
    /// Key.
    pub key: Option<String>,
    /// Upload id.
    pub upload_id: Option<UploadId>,
    /// The marker this page started after.
    pub part_number_marker: Option<u32>,
    /// Pass as `part_number_marker` to get the next page.
    pub next_part_number_marker: Option<u32>,
    /// Page size used.
    pub max_parts: Option<u32>,
    /// More pages follow.
    pub is_truncated: bool,
    /// The parts of this page, in ascending part-number order whatever the server sent.
    pub parts: Vec<ListedPart>,
    /// The upload's checksum algorithm.
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    /// The upload's checksum type.
    pub checksum_type: Option<ChecksumType>,
}

/// One upload listed by ListMultipartUploads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedUpload {
    /// Key being uploaded.
    pub key: String,
    /// Upload id.
    pub upload_id: UploadId,
    /// Start time, as sent.
    pub initiated: Option<String>,
    /// Storage class.
    pub storage_class: Option<String>,
    /// Checksum algorithm chosen at creation.
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
}

/// One page of ListMultipartUploads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListMultipartUploadsOutput {
    /// Bucket.
    pub bucket: Option<String>,
    /// Prefix filter echoed.
    pub prefix: Option<String>,
    /// Key marker this page started after.
    pub key_marker: Option<String>,
    /// Upload id marker this page started after.
    pub upload_id_marker: Option<String>,
    /// Pass as `key_marker` for the next page.
    pub next_key_marker: Option<String>,
    /// Pass as `upload_id_marker` for the next page.
    pub next_upload_id_marker: Option<String>,
    /// Page size used.
    pub max_uploads: Option<u32>,
    /// More pages follow.
    pub is_truncated: bool,
    /// Uploads of this page.
    pub uploads: Vec<ListedUpload>,
    /// Common prefixes (with a delimiter).
    pub common_prefixes: Vec<String>,
}

/// One object listed by ListObjectsV2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    /// Key.
    pub key: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// ETag.
    pub etag: Option<ETag>,
    /// Last modification, as sent.
    pub last_modified: Option<String>,
    /// Storage class.
    pub storage_class: Option<String>,
    /// Checksum algorithms the object was stored with (raw names).
    pub checksum_algorithms: Vec<String>,
    /// Checksum type.
    pub checksum_type: Option<ChecksumType>,
}

/// One page of ListObjectsV2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListObjectsV2Output {
    /// Bucket.
    pub name: Option<String>,
    /// Prefix filter echoed.
    pub prefix: Option<String>,
    /// Delimiter echoed.
    pub delimiter: Option<String>,
    /// Page size used.
    pub max_keys: Option<u32>,
    /// Number of keys and prefixes in this page.
    pub key_count: Option<u32>,
    /// More pages follow.
    pub is_truncated: bool,
    /// Token this page was requested with.
    pub continuation_token: Option<String>,
    /// Pass as `continuation_token` for the next page.
    pub next_continuation_token: Option<String>,
    /// `StartAfter` echoed.
    pub start_after: Option<String>,
    /// Objects of this page.
    pub contents: Vec<ListedObject>,
    /// Common prefixes (with a delimiter).
    pub common_prefixes: Vec<String>,
}

/// The result of CreateBucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateBucketOutput {
    /// `Location` header.
    pub location: Option<String>,
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
}

fn malformed(operation: &'static str, detail: impl Into<String>) -> ResponseError {
    ResponseError::Malformed(MalformedResponse {
        operation,
        detail: detail.into(),
    })
}

fn number<T: std::str::FromStr>(
    operation: &'static str,
    what: &str,
    value: Option<&str>,
) -> Result<Option<T>, ResponseError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            malformed(
                operation,
                format!("{what} is not a number: {:?}", truncate(v)),
            )
        }),
    }
}

fn boolean(
    operation: &'static str,
    what: &str,
    value: Option<&str>,
) -> Result<bool, ResponseError> {
    match value.map(str::trim) {
        None | Some("") | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => Err(malformed(
            operation,
            format!("{what} is not true/false: {:?}", truncate(v)),
        )),
    }
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

fn truncate(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Builds the [`S3Error`] of an error response, with or without an XML body.
pub fn parse_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> S3Error {
    let parsed = std::str::from_utf8(body)
        .ok()
        .filter(|s| matches!(xml::root_element(s), Ok(Some(r)) if r == "Error"))
        .and_then(|s| quick_xml::de::from_str::<xml::ErrorXml>(s).ok());
    let header_code = header(headers, "x-amz-error-code");
    let was_xml = parsed.is_some();
    let (code, message, request_id, host_id, resource) = match parsed {
        Some(x) => (
            non_empty(x.code).or(header_code),
            non_empty(x.message),
            non_empty(x.request_id),
            non_empty(x.host_id),
            non_empty(x.key)
                .or(non_empty(x.bucket_name))
                .or(non_empty(x.resource)),
        ),
        None => (header_code, None, None, None, None),
    };
    let message = message
        .or_else(|| header(headers, "x-amz-error-message"))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            // An <Error> document without a <Message>: its code says it all; the raw
            // XML would only be noise in a one-line error.
            if text.is_empty() || was_xml {
                let reason = status.canonical_reason().unwrap_or("unknown status");
                if was_xml {
                    reason.to_owned()
                } else {
                    format!("{reason} (no error body)")
                }
            } else {
                truncate(text)
            }
        });
    let class = ErrorClass::classify(status, code.as_deref());
    S3Error {
        status,
        code,
        message,
        request_id: request_id.or_else(|| header(headers, "x-amz-request-id")),
        host_id: host_id.or_else(|| header(headers, "x-amz-id-2")),
        resource,
        class,
    }
}

fn check_status(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<(), ResponseError> {
    if status.is_success() {
        Ok(())
    } else {
        Err(ResponseError::from(parse_error(status, headers, body)))
    }
}

/// Parses an XML success body whose root must be `root`; an `<Error>` root becomes a
/// service error even under a 2xx status.
fn parse_xml<T: DeserializeOwned>(
    operation: &'static str,
    root: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ResponseError> {
    check_status(status, headers, body)?;
    let text = std::str::from_utf8(body)
        .map_err(|e| malformed(operation, format!("body is not UTF-8: {e}")))?;
    match xml::root_element(text) {
        Ok(Some(r)) if r == "Error" => Err(ResponseError::from(parse_error(status, headers, body))),
        // moto names some roots `…Response` where S3 says `…Result` (ListPartsResponse).
        Ok(Some(r))
            if r == root
                || root
                    .strip_suffix("Result")
                    .is_some_and(|stem| r == format!("{stem}Response")) =>
        {
            quick_xml::de::from_str(text)
                .map_err(|e| malformed(operation, format!("invalid {root} document: {e}")))
        }
        Ok(Some(r)) => Err(malformed(
            operation,
            format!("expected <{root}>, got <{}>", truncate(&r)),
        )),
        Ok(None) => Err(malformed(operation, "empty body")),
        Err(e) => Err(malformed(operation, format!("not XML: {e}"))),
    }
}

fn content_length(
    operation: &'static str,
    headers: &HeaderMap,
) -> Result<Option<u64>, ResponseError> {
    number(
        operation,
        "Content-Length",
        header(headers, "content-length").as_deref(),
    )
}

fn etag_header(headers: &HeaderMap) -> Option<ETag> {
    header(headers, "etag")
        .filter(|s| !s.is_empty())
        .map(ETag::new)
}

/// HeadObject. Error responses to HEAD have no body: pass `&[]`.
pub fn parse_head_object(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<HeadObjectOutput, ResponseError> {
    const OP: &str = "HeadObject";
    check_status(status, headers, body)?;
    let content_length =
        content_length(OP, headers)?.ok_or_else(|| malformed(OP, "missing Content-Length"))?;
    let metadata = headers
        .iter()
        .filter_map(|(name, value)| {
            let n = name.as_str().strip_prefix("x-amz-meta-")?;
            Some((n.to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    Ok(HeadObjectOutput {
        content_length,
        etag: etag_header(headers),
        last_modified: header(headers, "last-modified"),
        content_type: header(headers, "content-type"),
        checksums: ResponseChecksums::from_headers(headers),
        parts_count: number(
            OP,
            "x-amz-mp-parts-count",
            header(headers, "x-amz-mp-parts-count").as_deref(),
        )?,
        content_range: header(headers, "content-range").and_then(|v| ContentRange::parse(&v)),
        version_id: header(headers, "x-amz-version-id"),
        metadata,
    })
}

/// GetObject headers. On a 2xx status `body` is ignored (the driver streams it; pass
/// `&[]`); on an error status pass the error body.
pub fn parse_get_object(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<GetObjectOutput, ResponseError> {
    const OP: &str = "GetObject";
    check_status(status, headers, body)?;
    let partial = status == StatusCode::PARTIAL_CONTENT;
    let content_range =
        match header(headers, "content-range") {
            Some(v) => Some(ContentRange::parse(&v).ok_or_else(|| {
                malformed(OP, format!("invalid Content-Range {:?}", truncate(&v)))
            })?),
            None if partial => return Err(malformed(OP, "206 without Content-Range")),
            None => None,
        };
    let content_length = content_length(OP, headers)?;
    if let (Some(len), Some(cr)) = (content_length, content_range)
        && len != cr.range.len_bytes()
    {
        return Err(malformed(
            OP,
            format!(
                "Content-Length {len} disagrees with Content-Range of {} bytes",
                cr.range.len_bytes()
            ),
        ));
    }
    Ok(GetObjectOutput {
        partial,
        content_length,
        content_range,
        etag: etag_header(headers),
        last_modified: header(headers, "last-modified"),
        content_type: header(headers, "content-type"),
        checksums: ResponseChecksums::from_headers(headers),
        parts_count: number(
            OP,
            "x-amz-mp-parts-count",
            header(headers, "x-amz-mp-parts-count").as_deref(),
        )?,
    })
}

fn parse_put(
    operation: &'static str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<PutOutput, ResponseError> {
    check_status(status, headers, body)?;
    let etag = etag_header(headers).ok_or_else(|| malformed(operation, "missing ETag header"))?;
    Ok(PutOutput {
        etag,
        checksums: ResponseChecksums::from_headers(headers),
        version_id: header(headers, "x-amz-version-id"),
    })
}

/// PutObject.
pub fn parse_put_object(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<PutOutput, ResponseError> {
    parse_put("PutObject", status, headers, body)
}

/// UploadPart.
pub fn parse_upload_part(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<PutOutput, ResponseError> {
    parse_put("UploadPart", status, headers, body)
}

/// CreateMultipartUpload.
pub fn parse_create_multipart_upload(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<CreateMultipartUploadOutput, ResponseError> {
    const OP: &str = "CreateMultipartUpload";
    let x: xml::InitiateMultipartUploadResultXml =
        parse_xml(OP, "InitiateMultipartUploadResult", status, headers, body)?;
    let upload_id = non_empty(x.upload_id).ok_or_else(|| malformed(OP, "missing UploadId"))?;
    Ok(CreateMultipartUploadOutput {
        bucket: non_empty(x.bucket),
        key: non_empty(x.key),
        upload_id: UploadId::new(upload_id),
        checksum_algorithm: header(headers, "x-amz-checksum-algorithm")
            .as_deref()
            .and_then(ChecksumAlgorithm::parse),
    })
}

/// CompleteMultipartUpload, including an `<Error>` delivered with status 200.
pub fn parse_complete_multipart_upload(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<CompleteMultipartUploadOutput, ResponseError> {
    const OP: &str = "CompleteMultipartUpload";
    let x: xml::CompleteMultipartUploadResultXml =
        parse_xml(OP, "CompleteMultipartUploadResult", status, headers, body)?;
    let etag = non_empty(x.etag).ok_or_else(|| malformed(OP, "missing ETag"))?;
    let from_headers = ResponseChecksums::from_headers(headers);
    Ok(CompleteMultipartUploadOutput {
        location: non_empty(x.location),
        bucket: non_empty(x.bucket),
        key: non_empty(x.key),
        etag: ETag::new(etag),
        checksums: ResponseChecksums {
            crc32: non_empty(x.crc32).or(from_headers.crc32),
            crc32c: non_empty(x.crc32c).or(from_headers.crc32c),
            crc64nvme: non_empty(x.crc64nvme).or(from_headers.crc64nvme),
            sha1: non_empty(x.sha1).or(from_headers.sha1),
            sha256: non_empty(x.sha256).or(from_headers.sha256),
            checksum_type: x
                .checksum_type
                .as_deref()
                .and_then(ChecksumType::parse)
                .or(from_headers.checksum_type),
        },
        version_id: header(headers, "x-amz-version-id"),
    })
}

/// AbortMultipartUpload (204 on success; 404 `NoSuchUpload` when already gone).
pub fn parse_abort_multipart_upload(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ResponseError> {
    check_status(status, headers, body)
}

/// DeleteObject (204 on success, also for a missing key).
pub fn parse_delete_object(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ResponseError> {
    check_status(status, headers, body)
}

/// CreateBucket.
pub fn parse_create_bucket(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<CreateBucketOutput, ResponseError> {
    check_status(status, headers, body)?;
    Ok(CreateBucketOutput {
        location: header(headers, "location"),
    })
}

/// ListParts.
pub fn parse_list_parts(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ListPartsOutput, ResponseError> {
    const OP: &str = "ListParts";
    let x: xml::ListPartsResultXml = parse_xml(OP, "ListPartsResult", status, headers, body)?;
    let mut parts = Vec::with_capacity(x.parts.len());
    for p in x.parts {
        let part_number: u32 = number(OP, "PartNumber", p.part_number.as_deref())?
            .ok_or_else(|| malformed(OP, "part without PartNumber"))?;
        if crate::types::PartNumber::new(part_number).is_none() {
            return Err(malformed(
                OP,
                format!("part number {part_number} outside 1..=10000"),
            ));
        }
        let size_bytes = number(OP, "Size", p.size.as_deref())?
            .ok_or_else(|| malformed(OP, format!("part {part_number} without Size")))?;
        parts.push(ListedPart {
            part_number,
            etag: non_empty(p.etag).map(ETag::new),
            size_bytes,
            last_modified: non_empty(p.last_modified),
            checksums: ResponseChecksums {
                crc32: non_empty(p.crc32),
                crc32c: non_empty(p.crc32c),
                crc64nvme: non_empty(p.crc64nvme),
                sha1: non_empty(p.sha1),
                sha256: non_empty(p.sha256),
                checksum_type: None,
            },
        });
    }
    // S3 lists parts in ascending order; s3s-fs lists them in directory order.
    parts.sort_by_key(|p| p.part_number);
    Ok(ListPartsOutput {
        bucket: non_empty(x.bucket),
        key: non_empty(x.key),
        upload_id: non_empty(x.upload_id).map(UploadId::new),
        part_number_marker: number(OP, "PartNumberMarker", x.part_number_marker.as_deref())?,
        next_part_number_marker: number(
            OP,
            "NextPartNumberMarker",
            x.next_part_number_marker.as_deref(),
        )?,
        max_parts: number(OP, "MaxParts", x.max_parts.as_deref())?,
        is_truncated: boolean(OP, "IsTruncated", x.is_truncated.as_deref())?,
        parts,
        checksum_algorithm: x
            .checksum_algorithm
            .as_deref()
            .and_then(ChecksumAlgorithm::parse),
        checksum_type: x.checksum_type.as_deref().and_then(ChecksumType::parse),
    })
}

/// ListMultipartUploads.
pub fn parse_list_multipart_uploads(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ListMultipartUploadsOutput, ResponseError> {
    const OP: &str = "ListMultipartUploads";
    let x: xml::ListMultipartUploadsResultXml =
        parse_xml(OP, "ListMultipartUploadsResult", status, headers, body)?;
    let mut uploads = Vec::with_capacity(x.uploads.len());
    for u in x.uploads {
        let key = u.key.ok_or_else(|| malformed(OP, "upload without Key"))?;
        let upload_id = non_empty(u.upload_id)
            .ok_or_else(|| malformed(OP, format!("upload of {key:?} without UploadId")))?;
        uploads.push(ListedUpload {
            key,
            upload_id: UploadId::new(upload_id),
            initiated: non_empty(u.initiated),
            storage_class: non_empty(u.storage_class),
            checksum_algorithm: u
                .checksum_algorithm
                .as_deref()
                .and_then(ChecksumAlgorithm::parse),
        });
    }
    Ok(ListMultipartUploadsOutput {
        bucket: non_empty(x.bucket),
        prefix: non_empty(x.prefix),
        key_marker: non_empty(x.key_marker),
        upload_id_marker: non_empty(x.upload_id_marker),
        next_key_marker: non_empty(x.next_key_marker),
        next_upload_id_marker: non_empty(x.next_upload_id_marker),
        max_uploads: number(OP, "MaxUploads", x.max_uploads.as_deref())?,
        is_truncated: boolean(OP, "IsTruncated", x.is_truncated.as_deref())?,
        uploads,
        common_prefixes: x
            .common_prefixes
            .into_iter()
            .filter_map(|p| p.prefix)
            .collect(),
    })
}

/// ListObjectsV2.
pub fn parse_list_objects_v2(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ListObjectsV2Output, ResponseError> {
    const OP: &str = "ListObjectsV2";
    let x: xml::ListBucketResultXml = parse_xml(OP, "ListBucketResult", status, headers, body)?;
    let mut contents = Vec::with_capacity(x.contents.len());
    for o in x.contents {
        let key = o.key.ok_or_else(|| malformed(OP, "object without Key"))?;
        let size_bytes = number(OP, "Size", o.size.as_deref())?
            .ok_or_else(|| malformed(OP, format!("object {:?} without Size", truncate(&key))))?;
        contents.push(ListedObject {
            key,
            size_bytes,
            etag: non_empty(o.etag).map(ETag::new),
            last_modified: non_empty(o.last_modified),
            storage_class: non_empty(o.storage_class),
            checksum_algorithms: o.checksum_algorithm,
            checksum_type: o.checksum_type.as_deref().and_then(ChecksumType::parse),
        });
    }
    Ok(ListObjectsV2Output {
        name: non_empty(x.name),
        prefix: non_empty(x.prefix),
        delimiter: non_empty(x.delimiter),
        max_keys: number(OP, "MaxKeys", x.max_keys.as_deref())?,
        key_count: number(OP, "KeyCount", x.key_count.as_deref())?,
        is_truncated: boolean(OP, "IsTruncated", x.is_truncated.as_deref())?,
        continuation_token: non_empty(x.continuation_token),
        next_continuation_token: non_empty(x.next_continuation_token),
        start_after: non_empty(x.start_after),
        contents,
        common_prefixes: x
            .common_prefixes
            .into_iter()
            .filter_map(|p| p.prefix)
            .collect(),
    })
}
