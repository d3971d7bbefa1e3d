//! Request builders: one plain struct per S3 operation, each producing an unsigned
//! `http::Request<RequestBody>` for a given [`S3Config`].
//!
//! Every builder sets `Host` (virtual-hosted or path-style), the operation's query and
//! headers, and `Content-Length` on requests with a body. Sign the result with
//! [`crate::sign`] just before sending it.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, IF_MATCH, RANGE};
use http::{HeaderName, HeaderValue, Method, Request};

use crate::checksum::{Checksum, ChecksumAlgorithm, ChecksumType, content_md5_header};
use crate::endpoint::{S3Config, query_string};
use crate::error::RequestError;
use crate::limits::MAX_PARTS;
use crate::types::{ByteRange, ETag, PartNumber, UploadId};
use crate::xml;

/// The body of a built request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestBody {
    /// No body.
    Empty,
    /// A body held in memory (XML documents, small objects).
    Bytes(Bytes),
    /// The driver streams exactly `content_length` bytes itself (file-backed parts).
    External {
        /// Bytes the driver will send; already written into `Content-Length`.
        content_length: u64,
    },
}

impl RequestBody {
    /// Length of the body in bytes.
    pub fn len_bytes(&self) -> u64 {
        match self {
            Self::Empty => 0,
            Self::Bytes(b) => b.len() as u64,
            Self::External { content_length } => *content_length,
        }
    }
}

/// Headers for `x-amz-meta-*`: names are lowercased ASCII, values printable ASCII.
pub type UserMetadata = Vec<(String, String)>;

const X_AMZ_CHECKSUM_MODE: HeaderName = HeaderName::from_static("x-amz-checksum-mode");
const X_AMZ_CHECKSUM_ALGORITHM: HeaderName = HeaderName::from_static("x-amz-checksum-algorithm");
const X_AMZ_CHECKSUM_TYPE: HeaderName = HeaderName::from_static("x-amz-checksum-type");
const X_AMZ_SDK_CHECKSUM_ALGORITHM: HeaderName =
    HeaderName::from_static("x-amz-sdk-checksum-algorithm");
const CONTENT_MD5: HeaderName = HeaderName::from_static("content-md5");

struct Builder {
    req: Request<RequestBody>,
}

impl Builder {
    fn new(
        config: &S3Config,
        method: Method,
        bucket: &str,
        key: Option<&str>,
        query: &str,
        body: RequestBody,
    ) -> Result<Self, RequestError> {
        let (uri, host) = config.uri(bucket, key, query)?;
        let mut req = Request::new(body);
        *req.method_mut() = method.clone();
        *req.uri_mut() = uri;
        let host = HeaderValue::from_str(&host).map_err(|_| RequestError::InvalidHeader {
            name: "host".into(),
            reason: "the endpoint host is not a valid header value".into(),
        })?;
        req.headers_mut().insert(HOST, host);
        let len = req.body().len_bytes();
        // Bodyless GET/HEAD/DELETE stay without Content-Length, as SDKs send them;
        // PUT and POST always say how much follows.
        if len > 0 || matches!(method, Method::PUT | Method::POST) {
            req.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
        Ok(Self { req })
    }

    fn header(&mut self, name: HeaderName, value: &str) -> Result<(), RequestError> {
        let v = HeaderValue::from_str(value).map_err(|_| RequestError::InvalidHeader {
            name: name.to_string(),
            reason: "the value contains characters HTTP headers cannot carry".into(),
        })?;
        self.req.headers_mut().insert(name, v);
        Ok(())
    }

    fn opt_header(&mut self, name: HeaderName, value: Option<&str>) -> Result<(), RequestError> {
        match value {
            Some(v) => self.header(name, v),
            None => Ok(()),
        }
    }

    fn checksum(&mut self, checksum: Option<Checksum>) -> Result<(), RequestError> {
        if let Some(c) = checksum {
            self.header(
                HeaderName::from_static(c.algorithm.header_name()),
                &c.to_base64(),
            )?;
            // As the AWS SDKs send it. S3 ignores it beside a value; moto echoes the
            // value (so an upload can tell it was received) only when it is there.
            self.header(X_AMZ_SDK_CHECKSUM_ALGORITHM, c.algorithm.as_str())?;
        }
        Ok(())
    }

    fn content_md5(&mut self, md5: Option<[u8; 16]>) -> Result<(), RequestError> {
        if let Some(d) = md5 {
            self.header(CONTENT_MD5, &content_md5_header(d))?;
        }
        Ok(())
    }

    fn metadata(&mut self, metadata: &UserMetadata) -> Result<(), RequestError> {
        for (name, value) in metadata {
            let full = format!("x-amz-meta-{}", name.to_ascii_lowercase());
            let header = HeaderName::from_bytes(full.as_bytes()).map_err(|_| {
                RequestError::InvalidHeader {
                    name: full.clone(),
                    reason: "not a valid header name".into(),
                }
            })?;
            // S3 would store non-ASCII values RFC 2047-encoded; refusing keeps what is
            // read back equal to what was written.
            if !value
                .bytes()
                .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
            {
                return Err(RequestError::InvalidHeader {
                    name: full,
                    reason: "user metadata values must be printable ASCII".into(),
                });
            }
            self.header(header, value)?;
        }
        Ok(())
    }

    fn finish(self) -> Request<RequestBody> {
        self.req
    }
}

/// HeadObject: metadata, size, ETag and checksums of an object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeadObject {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Fail with 412 unless the object still has this ETag.
    pub if_match: Option<ETag>,
    /// Describe only this part of a multipart object (size of the part, parts count).
    pub part_number: Option<PartNumber>,
    /// Ask for stored checksums (`x-amz-checksum-mode: ENABLED`).
    pub checksum_mode: bool,
}

impl HeadObject {
    /// HeadObject for `bucket`/`key`, asking for checksums.
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            key: key.into(),
            checksum_mode: true,
            ..Self::default()
        }
    }

    /// Builds the request.
    pub fn build(&self, config: &S3Config) -> Result<Request<RequestBody>, RequestError> {
        let pn = self.part_number.map(|p| p.get().to_string());
        let query = query_string(
            &pn.as_deref()
                .map(|p| ("partNumber", Some(p)))
                .into_iter()
                .collect::<Vec<_>>(),
        );
        let mut b = Builder::new(
            config,
            Method::HEAD,
            &self.bucket,
            Some(&self.key),
            &query,
            RequestBody::Empty,
        )?;
        b.opt_header(IF_MATCH, self.if_match.as_ref().map(ETag::as_str))?;
        if self.checksum_mode {
            b.header(X_AMZ_CHECKSUM_MODE, "ENABLED")?;
        }
        Ok(b.finish())
    }
}

/// GetObject: the object's bytes, or a range of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetObject {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Only these bytes.
    pub range: Option<ByteRange>,
    /// Fail with 412 unless the object still has this ETag (pins a download).
    pub if_match: Option<ETag>,
    /// Only this part of a multipart object.
    pub part_number: Option<PartNumber>,
    /// Ask for stored checksums (`x-amz-checksum-mode: ENABLED`).
    pub checksum_mode: bool,
}

impl GetObject {
    /// GetObject for the whole of `bucket`/`key`, without checksum mode.
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            key: key.into(),
            ..Self::default()
        }
    }

    /// Builds the request.
    pub fn build(&self, config: &S3Config) -> Result<Request<RequestBody>, RequestError> {
        let pn = self.part_number.map(|p| p.get().to_string());
        let query = query_string(
            &pn.as_deref()
                .map(|p| ("partNumber", Some(p)))
                .into_iter()
                .collect::<Vec<_>>(),
        );
        let mut b = Builder::new(
            config,
            Method::GET,
            &self.bucket,
            Some(&self.key),
            &query,
            RequestBody::Empty,
        )?;
        if let Some(r) = self.range {
            b.header(RANGE, &r.to_header_value())?;
        }
        b.opt_header(IF_MATCH, self.if_match.as_ref().map(ETag::as_str))?;
        if self.checksum_mode {
            b.header(X_AMZ_CHECKSUM_MODE, "ENABLED")?;
        }
        Ok(b.finish())
    }
}

/// PutObject: a whole object in one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutObject {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// The object's bytes, in memory or streamed by the driver.
    pub body: RequestBody,
    /// MD5 of the body, sent as `Content-MD5` so the server verifies it.
    pub content_md5: Option<[u8; 16]>,
    /// CRC of the body, sent as `x-amz-checksum-crc32` / `-crc32c`.
    pub checksum: Option<Checksum>,
    /// `Content-Type` to store.
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*`).
    pub metadata: UserMetadata,
}

impl PutObject {
    /// PutObject of `body` to `bucket`/`key`.
    pub fn new(bucket: impl Into<String>, key: impl Into<String>, body: RequestBody) -> Self {
        Self {
            bucket: bucket.into(),
            key: key.into(),
            body,
            content_md5: None,
            checksum: None,
            content_type: None,
            metadata: Vec::new(),
        }
    }

    /// Builds the request.
    pub fn build(&self, config: &S3Config) -> Result<Request<RequestBody>, RequestError> {
        let mut b = Builder::new(
            config,
            Method::PUT,
            &self.bucket,
            Some(&self.key),
            "",
            self.body.clone(),
        )?;
        b.content_md5(self.content_md5)?;
        b.checksum(self.checksum)?;
        b.opt_header(CONTENT_TYPE, self.content_type.as_deref())?;
        b.metadata(&self.metadata)?;
        Ok(b.finish())
    }
}

/// CreateMultipartUpload: starts an upload and returns its upload id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateMultipartUpload {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// The checksum every part will carry (`x-amz-checksum-algorithm`).
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    /// Whether the object's checksum will be full-object or composite
    /// (`x-amz-checksum-type`); servers default to composite when absent.
    pub checksum_type: Option<ChecksumType>,
    /// `Content-Type` to store.
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*`).
    pub metadata: UserMetadata,
}

impl CreateMultipartUpload {
    /// CreateMultipartUpload for `bucket`/`key`.
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            key: key.into(),
            ..Self::default()
        }
    }

    /// Builds the request.
    pub fn build(&self, config: &S3Config) -> Result<Request<RequestBody>, RequestError> {
        let query = query_string(&[("uploads", None)]);
        let mut b = Builder::new(
            config,
            Method::POST,
            &self.bucket,
            Some(&self.key),
            &query,
            RequestBody::Empty,
        )?;
        b.opt_header(
            X_AMZ_CHECKSUM_ALGORITHM,
            self.checksum_algorithm.map(ChecksumAlgorithm::as_str),
        )?;
        b.opt_header(
            X_AMZ_CHECKSUM_TYPE,
            self.checksum_type.map(ChecksumType::as_str),
        )?;
        b.opt_header(CONTENT_TYPE, self.content_type.as_deref())?;
        b.metadata(&self.metadata)?;
        Ok(b.finish())
    }
}

/// UploadPart: one part of a multipart upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadPart {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// The upload.
    pub upload_id: UploadId,
    /// Which part.
    pub part_number: PartNumber,
    /// The part's bytes (normally [`RequestBody::External`]).
    pub body: RequestBody,
    /// CRC of the part, in the algorithm chosen at CreateMultipartUpload.
    pub checksum: Option<Checksum>,
    /// MD5 of the part (`Content-MD5`).
    pub content_md5: Option<[u8; 16]>,
}

impl UploadPart {
    /// Builds the request.
    pub fn build(&self, config: &S3Config) -> Result<Request<RequestBody>, RequestError> {
        let pn = self.part_number.get().to_string();
        let query = query_string(&[
            ("partNumber", Some(&pn)),
            ("uploadId", Some(self.upload_id.as_str())),
        ]);
        let mut b = Builder::new(
            config,
            Method::PUT,
            &self.bucket,
            Some(&self.key),
            &query,
            self.body.clone(),
        )?;
        b.content_md5(self.content_md5)?;
        b.checksum(self.checksum)?;
        Ok(b.finish())
    }
}

/// A part as listed in CompleteMultipartUpload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedPart {
    /// Part number.
    pub part_number: PartNumber,
    /// The ETag UploadPart returned, as received.
    pub etag: ETag,
    /// The part checksum UploadPart sent (required by S3 when the upload has an algorithm).
    pub checksum: Option<Checksum>,
}

/// CompleteMultipartUpload: assembles the parts into the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompleteMultipartUpload {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// The upload.
    pub upload_id: UploadId,
    /// Parts in strictly ascending part-number order.
    pub parts: Vec<CompletedPart>,
    /// The full-object CRC, for uploads created with [`ChecksumType::FullObject`]; the
    /// server checks it against the parts it holds.
    pub full_object_checksum: Option<Checksum>,
}

impl CompleteMultipartUpload {
    /// The XML body S3 expects.
    pub fn body_xml(&self) -> Result<String, RequestError> {
        if self.parts.is_empty() {
            return Err(RequestError::InvalidParts(
                "at least one part is required".into(),
            ));
        }
        if self.parts.len() > MAX_PARTS as usize {
            return Err(RequestError::InvalidParts(format!(
                "{} parts exceed the limit of {MAX_PARTS}",
                self.parts.len()
            )));
        }
        if let Some(w) = self
            .parts
            .windows(2)
            .find(|w| w[0].part_number >= w[1].part_number)
        {
            return Err(RequestError::InvalidParts(format!(
                "part {} is listed after part {}; parts must be in ascending order without repeats",
                w[1].part_number, w[0].part_number
            )));
        }
        Ok(xml::complete_multipart_upload_body(&self.parts))
    }

    /// Builds the request.
    pub fn build(&self, config: &S3Config) -> Result<Request<RequestBody>, RequestError> {
        let body = Bytes::from(self.body_xml()?);
        let query = query_string(&[("uploadId", Some(self.upload_id.as_str()))]);
        let mut b = Builder::new(
            config,
            Method::POST,
            &self.bucket,
            Some(&self.key),
            &query,
            RequestBody::Bytes(body),
        )?;
        b.header(CONTENT_TYPE, "application/xml")?;
        if let Some(c) = self.full_object_checksum {
            b.checksum(Some(c))?;
            b.header(X_AMZ_CHECKSUM_TYPE, ChecksumType::FullObject.as_str())?;
        }
        Ok(b.finish())
    }
}

/// AbortMultipartUpload: discards an upload and its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbortMultipartUpload {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// The upload.
    pub upload_id: UploadId,
}

impl AbortMultipartUpload {
    /// Builds the request.
    pub fn build(&self, config: &S3Config) -> Result<Request<RequestBody>, RequestError> {
        let query = query_string(&[("uploadId", Some(self.upload_id.as_str()))]);
        Ok(Builder::new(
            config,
            Method::DELETE,
            &self.bucket,
            Some(&self.key),
            &query,
            RequestBody::Empty,
        )?
        .finish())
    }
}

/// ListParts: the parts an upload holds, one page at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListParts {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// The upload.
    pub upload_id: UploadId,
    /// Page size (server default and maximum: 1,000).
    pub max_parts: Option<u32>,
    /// Start after this part number (`NextPartNumberMarker` of the previous page).
    pub part_number_marker: Option<u32>,
}

impl ListParts {
    /// Builds the request.
    pub fn build(&self, config: &S3Config) -> Result<Request<RequestBody>, RequestError> {
        let max = self.max_parts.map(|m| m.to_string());
        let marker = self.part_number_marker.map(|m| m.to_string());
        let mut q: Vec<(&str, Option<&str>)> = vec![("uploadId", Some(self.upload_id.as_str()))];
        if let Some(m) = &max {
            q.push(("max-parts", Some(m)));
        }
        if let Some(m) = &marker {
            q.push(("part-number-marker", Some(m)));
        }
        Ok(Builder::new(
            config,
            Method::GET,
            &self.bucket,
            Some(&self.key),
            &query_string(&q),
            RequestBody::Empty,
        )?
        .finish())
    }
}

/// ListMultipartUploads: uploads in progress in a bucket, one page at a time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListMultipartUploads {
    /// Bucket name.
    pub bucket: String,
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// Page size (server default and maximum: 1,000).
    pub max_uploads: Option<u32>,
    /// Continue after this key (`NextKeyMarker`).
    pub key_marker: Option<String>,
    /// With `key_marker`: continue after this upload id (`NextUploadIdMarker`).
    pub upload_id_marker: Option<String>,
}

impl ListMultipartUploads {
    /// ListMultipartUploads for `bucket`.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            ..Self::default()
        }
    }

    /// Builds the request.
    pub fn build(&self, config: &S3Config) -> Result<Request<RequestBody>, RequestError> {
        let max = self.max_uploads.map(|m| m.to_string());
        let mut q: Vec<(&str, Option<&str>)> = vec![("uploads", None)];
        for (name, value) in [
            ("prefix", self.prefix.as_deref()),
            ("max-uploads", max.as_deref()),
            ("key-marker", self.key_marker.as_deref()),
            ("upload-id-marker", self.upload_id_marker.as_deref()),
        ] {
            if let Some(v) = value {
                q.push((name, Some(v)));
            }
        }
        Ok(Builder::new(
            config,
            Method::GET,
            &self.bucket,
            None,
            &query_string(&q),
            RequestBody::Empty,
        )?
        .finish())
    }
}

/// ListObjectsV2: keys in a bucket, one page at a time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListObjectsV2 {
    /// Bucket name.
    pub bucket: String,
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// Group keys by this separator into common prefixes (usually `/`).
    pub delimiter: Option<String>,
    /// Page size (server default and maximum: 1,000).
    pub max_keys: Option<u32>,
    /// `NextContinuationToken` of the previous page.
    pub continuation_token: Option<String>,
    /// Start after this key (first page only).
    pub start_after: Option<String>,
}

impl ListObjectsV2 {
    /// ListObjectsV2 for `bucket`.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            ..Self::default()
        }
    }

    /// Builds the request.
    pub fn build(&self, config: &S3Config) -> Result<Request<RequestBody>, RequestError> {
        let max = self.max_keys.map(|m| m.to_string());
        let mut q: Vec<(&str, Option<&str>)> = vec![("list-type", Some("2"))];
        for (name, value) in [
            ("prefix", self.prefix.as_deref()),
            ("delimiter", self.delimiter.as_deref()),
            ("max-keys", max.as_deref()),
            ("continuation-token", self.continuation_token.as_deref()),
            ("start-after", self.start_after.as_deref()),
        ] {
            if let Some(v) = value {
                q.push((name, Some(v)));
            }
        }
        Ok(Builder::new(
            config,
            Method::GET,
            &self.bucket,
            None,
            &query_string(&q),
            RequestBody::Empty,
        )?
        .finish())
    }
}

/// DeleteObject: removes an object (succeeds also when it does not exist).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteObject {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
}

impl DeleteObject {
    /// Builds the request.
    pub fn build(&self, config: &S3Config) -> Result<Request<RequestBody>, RequestError> {
        Ok(Builder::new(
            config,
            Method::DELETE,
            &self.bucket,
            Some(&self.key),
            "",
            RequestBody::Empty,
        )?
        .finish())
    }
}

/// CreateBucket: in the configured region (with a `LocationConstraint` outside us-east-1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateBucket {
    /// Bucket name.
    pub bucket: String,
}

impl CreateBucket {
    /// Builds the request.
    pub fn build(&self, config: &S3Config) -> Result<Request<RequestBody>, RequestError> {
        // us-east-1 is S3's default location and rejects an explicit constraint naming it.
        let body = if config.region() == "us-east-1" {
            RequestBody::Empty
        } else {
            RequestBody::Bytes(Bytes::from(xml::create_bucket_body(config.region())))
        };
        let has_body = body != RequestBody::Empty;
        let mut b = Builder::new(config, Method::PUT, &self.bucket, None, "", body)?;
        if has_body {
            b.header(CONTENT_TYPE, "application/xml")?;
        }
        Ok(b.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{Addressing, Endpoint};

    fn local() -> S3Config {
        S3Config::custom(
            "us-east-1",
            Endpoint::parse("http://127.0.0.1:9000").unwrap(),
            Addressing::Auto,
        )
    }

    fn header<'a>(r: &'a Request<RequestBody>, name: &str) -> Option<&'a str> {
        r.headers().get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn get_object_with_everything() {
        let g = GetObject {
            range: ByteRange::new(100, 200),
            if_match: Some(ETag::new("\"abc\"")),
            part_number: PartNumber::new(3),
            checksum_mode: true,
            ..GetObject::new("b", "dir/a b+c")
        };
        let r = g.build(&local()).unwrap();
        assert_eq!(r.method(), Method::GET);
        assert_eq!(
            r.uri().to_string(),
            "http://127.0.0.1:9000/b/dir/a%20b%2Bc?partNumber=3"
        );
        assert_eq!(header(&r, "host"), Some("127.0.0.1:9000"));
        assert_eq!(header(&r, "range"), Some("bytes=100-199"));
        assert_eq!(header(&r, "if-match"), Some("\"abc\""));
        assert_eq!(header(&r, "x-amz-checksum-mode"), Some("ENABLED"));
        assert_eq!(header(&r, "content-length"), None);
    }

    #[test]
    fn put_object_headers() {
        let mut p = PutObject::new("b", "k", RequestBody::Bytes(Bytes::from_static(b"hello")));
        p.content_md5 = Some(s3_types::md5_digest(b"hello"));
        p.checksum = Some(Checksum::of(ChecksumAlgorithm::Crc32c, b"hello"));
        p.content_type = Some("text/plain".into());
        p.metadata = vec![("Origin".into(), "unit test".into())];
        let r = p.build(&local()).unwrap();
        assert_eq!(r.method(), Method::PUT);
        assert_eq!(header(&r, "content-length"), Some("5"));
        assert_eq!(header(&r, "content-md5"), Some("XUFAKrxLKna5cZ2REBfFkg=="));
        assert!(header(&r, "x-amz-checksum-crc32c").is_some());
        assert_eq!(header(&r, "content-type"), Some("text/plain"));
        assert_eq!(header(&r, "x-amz-meta-origin"), Some("unit test"));
        p.metadata = vec![("k".into(), "ü".into())];
        assert!(p.build(&local()).is_err());
        p.metadata = vec![("bad name".into(), "v".into())];
        assert!(p.build(&local()).is_err());
    }

    #[test]
    fn multipart_requests() {
        let c = local();
        let mut create = CreateMultipartUpload::new("b", "k");
        create.checksum_algorithm = Some(ChecksumAlgorithm::Crc32);
        create.checksum_type = Some(ChecksumType::FullObject);
        let r = create.build(&c).unwrap();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.uri().query(), Some("uploads"));
        assert_eq!(header(&r, "x-amz-checksum-algorithm"), Some("CRC32"));
        assert_eq!(header(&r, "x-amz-checksum-type"), Some("FULL_OBJECT"));
        assert_eq!(header(&r, "content-length"), Some("0"));

        let id = UploadId::new("2~abc/def+g=");
        let part = UploadPart {
            bucket: "b".into(),
            key: "k".into(),
            upload_id: id.clone(),
            part_number: PartNumber::new(7).unwrap(),
            body: RequestBody::External {
                content_length: 5 * 1024 * 1024,
            },
            checksum: Some(Checksum {
                algorithm: ChecksumAlgorithm::Crc32,
                value: crate::ChecksumValue::from_u32(0xCBF4_3926),
            }),
            content_md5: None,
        };
        let r = part.build(&c).unwrap();
        assert_eq!(
            r.uri().query(),
            Some("partNumber=7&uploadId=2~abc%2Fdef%2Bg%3D")
        );
        assert_eq!(header(&r, "content-length"), Some("5242880"));
        assert_eq!(header(&r, "x-amz-checksum-crc32"), Some("y/Q5Jg=="));
        assert_eq!(header(&r, "x-amz-sdk-checksum-algorithm"), Some("CRC32"));

        let abort = AbortMultipartUpload {
            bucket: "b".into(),
            key: "k".into(),
            upload_id: id.clone(),
        };
        let r = abort.build(&c).unwrap();
        assert_eq!(
            (r.method(), r.uri().query()),
            (&Method::DELETE, Some("uploadId=2~abc%2Fdef%2Bg%3D"))
        );

        let lp = ListParts {
            bucket: "b".into(),
            key: "k".into(),
            upload_id: id,
            max_parts: Some(100),
            part_number_marker: Some(200),
        };
        assert_eq!(
            lp.build(&c).unwrap().uri().query(),
            Some("uploadId=2~abc%2Fdef%2Bg%3D&max-parts=100&part-number-marker=200")
        );

        let lmu = ListMultipartUploads {
            prefix: Some("dir/".into()),
            key_marker: Some("k 1".into()),
            upload_id_marker: Some("u".into()),
            max_uploads: Some(10),
            ..ListMultipartUploads::new("b")
        };
        let r = lmu.build(&c).unwrap();
        assert_eq!(
            r.uri().to_string(),
            "http://127.0.0.1:9000/b?uploads&prefix=dir%2F&max-uploads=10&key-marker=k%201&upload-id-marker=u"
        );
    }

    #[test]
    fn complete_validates_parts() {
        let part = |n: u32| CompletedPart {
            part_number: PartNumber::new(n).unwrap(),
            etag: ETag::new(format!("\"etag{n}\"")),
            checksum: None,
        };
        let mut cmu = CompleteMultipartUpload {
            bucket: "b".into(),
            key: "k".into(),
            upload_id: UploadId::new("u"),
            parts: vec![],
            full_object_checksum: None,
        };
        assert!(cmu.build(&local()).is_err());
        cmu.parts = vec![part(2), part(1)];
        assert!(matches!(
            cmu.build(&local()),
            Err(RequestError::InvalidParts(_))
        ));
        cmu.parts = vec![part(1), part(1)];
        assert!(cmu.build(&local()).is_err());
        cmu.parts = vec![part(1), part(3)];
        cmu.full_object_checksum = Some(Checksum::of(ChecksumAlgorithm::Crc32, b"x"));
        let r = cmu.build(&local()).unwrap();
        assert_eq!(header(&r, "content-type"), Some("application/xml"));
        assert_eq!(header(&r, "x-amz-checksum-type"), Some("FULL_OBJECT"));
        assert!(header(&r, "x-amz-checksum-crc32").is_some());
        let RequestBody::Bytes(body) = r.body() else {
            panic!("body")
        };
        assert_eq!(
            header(&r, "content-length"),
            Some(body.len().to_string().as_str())
        );
    }

    #[test]
    fn list_objects_and_buckets() {
        let aws = S3Config::aws("eu-west-1").unwrap();
        let l = ListObjectsV2 {
            prefix: Some("photos/2024/".into()),
            delimiter: Some("/".into()),
            max_keys: Some(2),
            continuation_token: Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=".into()),
            start_after: None,
            ..ListObjectsV2::new("examplebucket")
        };
        let r = l.build(&aws).unwrap();
        assert_eq!(
            r.uri().to_string(),
            "https://examplebucket.s3.eu-west-1.amazonaws.com/?list-type=2&prefix=photos%2F2024%2F&delimiter=%2F&max-keys=2&continuation-token=1ueGcxLPRx1Tr%2FXYExHnhbYLgveDs2J%2Fwm36Hy4vbOwM%3D"
        );

        let r = CreateBucket {
            bucket: "examplebucket".into(),
        }
        .build(&aws)
        .unwrap();
        let RequestBody::Bytes(body) = r.body() else {
            panic!("body")
        };
        let body = std::str::from_utf8(body).unwrap();
        assert!(
            body.contains("<LocationConstraint>eu-west-1</LocationConstraint>"),
            "{body}"
        );
        let r = CreateBucket {
            bucket: "b1b".into(),
        }
        .build(&local())
        .unwrap();
        assert_eq!(r.body(), &RequestBody::Empty);
        assert_eq!(r.uri().path(), "/b1b");

        let r = DeleteObject {
            bucket: "b".into(),
            key: "/x".into(),
        }
        .build(&local())
        .unwrap();
        assert_eq!((r.method(), r.uri().path()), (&Method::DELETE, "/b//x"));
        let r = HeadObject::new("b", "k").build(&local()).unwrap();
        assert_eq!(r.method(), Method::HEAD);
        assert_eq!(header(&r, "x-amz-checksum-mode"), Some("ENABLED"));
    }
}
