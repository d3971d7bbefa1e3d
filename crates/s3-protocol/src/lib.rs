//! The S3 wire protocol, sans IO: endpoints and addressing, SigV4 signing, request
//! building, response and error parsing, checksums and multipart limits.
//!
//! This crate does not open sockets, read files, spawn tasks, sleep or read the clock:
//! the signing time is an argument. A driver builds a request here, signs it, sends it
//! with its own HTTP client, and hands the status, headers and body back for parsing.
//!
//! ```text
//!  GetObject { .. }.build(&config) ──► http::Request<RequestBody>
//!        sign(&mut request, &credentials, region, now, PayloadHash::..)
//!        ── driver sends it, reads (status, headers, body) ──►
//!  parse_get_object(status, &headers, &body) ──► Ok(GetObjectOutput) | Err(ResponseError)
//! ```
//!
//! Errors carry an [`ErrorClass`] so that the transfer logic can decide what to do
//! (retry, back off, give up) without knowing S3's error codes.

#![forbid(unsafe_code)]

mod checksum;
mod credentials;
mod endpoint;
mod error;
mod limits;
mod request;
mod response;
mod sign;
mod types;
mod xml;

pub use checksum::{
    Checksum, ChecksumAlgorithm, ChecksumHasher, ChecksumType, ChecksumValue, CrcValue,
    content_md5_header,
};
pub use credentials::Credentials;
pub use endpoint::{
    Addressing, Endpoint, S3Config, Scheme, encode_key, encode_query_value,
    is_dns_compatible_bucket,
};
pub use error::{ErrorClass, MalformedResponse, RequestError, ResponseError, S3Error, SignError};
pub use limits::{
    MAX_KEY_LENGTH, MAX_OBJECT_SIZE, MAX_PART_SIZE, MAX_PARTS, MAX_PRESIGN_EXPIRY_SECS,
    MIN_PART_SIZE,
};
pub use request::{
    AbortMultipartUpload, CompleteMultipartUpload, CompletedPart, CreateBucket,
    CreateMultipartUpload, DeleteObject, GetObject, HeadObject, ListMultipartUploads,
    ListObjectsV2, ListParts, PutObject, RequestBody, UploadPart, UserMetadata,
};
pub use response::{
    CompleteMultipartUploadOutput, CreateBucketOutput, CreateMultipartUploadOutput,
    GetObjectOutput, HeadObjectOutput, ListMultipartUploadsOutput, ListObjectsV2Output,
    ListPartsOutput, ListedObject, ListedPart, ListedUpload, PutOutput, ResponseChecksums,
    parse_abort_multipart_upload, parse_complete_multipart_upload, parse_create_bucket,
    parse_create_multipart_upload, parse_delete_object, parse_error, parse_get_object,
    parse_head_object, parse_list_multipart_uploads, parse_list_objects_v2, parse_list_parts,
    parse_put_object, parse_upload_part,
};
pub use sign::{EMPTY_SHA256, PayloadHash, presign, sign};
pub use types::{ByteRange, ContentRange, ETag, ETagKind, PartNumber, UploadId};
