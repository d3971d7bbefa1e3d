//! Errors: local request-building and signing errors, S3 service errors and their classes.

use std::fmt;

use http::StatusCode;

/// A request could not be built from the given inputs; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The endpoint URL is unusable.
    #[error("invalid S3 endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The URL as given.
        endpoint: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The bucket name cannot be used with this configuration.
    #[error("invalid bucket name {bucket:?}: {reason}")]
    InvalidBucket {
        /// The bucket name as given.
        bucket: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The object key cannot be sent.
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The key (shortened when very long).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A header (content type, user metadata, ...) has a name or value HTTP cannot carry.
    #[error("invalid header {name:?}: {reason}")]
    InvalidHeader {
        /// The header name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The parts given to CompleteMultipartUpload break S3's rules.
    #[error("invalid part list: {0}")]
    InvalidParts(String),
}

/// Signing failed; the request was left unsigned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The request URI has no host to sign.
    #[error("cannot sign a request without a host in its URI: {0}")]
    MissingHost(String),
    /// A header value is not visible ASCII/UTF-8 and cannot be canonicalized.
    #[error("cannot sign header {0:?}: its value is not valid text")]
    InvalidHeaderValue(String),
    /// `PayloadHash::FromBody` was asked for a body this crate does not hold.
    #[error("cannot hash an external body; pass PayloadHash::Unsigned or a precomputed SHA-256")]
    ExternalBody,
    /// A presigned URL must expire after 1 second to 7 days.
    #[error("presigned URL expiry must be between 1 second and 7 days, got {0} s")]
    InvalidExpiry(u64),
    /// The signer itself refused the input.
    #[error("SigV4 signing failed: {0}")]
    Signer(String),
}

/// What the transfer logic can do about an error, derived from status and S3 code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// A server-side hiccup (500, 502, 503, 504, `InternalError`, `RequestTimeout`): retry.
    Transient,
    /// The server asks to slow down (503 `SlowDown`, 429): retry with more backoff.
    Throttled,
    /// A condition such as `If-Match` failed (412): the object changed.
    PreconditionFailed,
    /// `NoSuchKey`, `NoSuchBucket`, `NoSuchUpload`, or a bodyless 404.
    NotFound,
    /// Credentials, signature, clock or permissions (403 and friends).
    Denied,
    /// The server found bytes that do not match the checksum sent (`BadDigest`, ...):
    /// the data changed or was corrupted on the way; re-reading may help.
    ChecksumMismatch,
    /// The request itself is wrong (`EntityTooSmall`, `InvalidPart`, `InvalidPartOrder`, ...).
    InvalidRequest,
    /// The server does not implement the operation (501 `NotImplemented`).
    Unsupported,
    /// Anything else.
    Other,
}

impl ErrorClass {
    /// True for classes where sending the same request again can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Transient | Self::Throttled)
    }

    /// Classifies a status and an optional S3 error code. The code wins where it is
    /// known, because S3 uses one status for different situations (400 for both
    /// `RequestTimeout` and `InvalidPart`, 503 for both `SlowDown` and outages).
    pub fn classify(status: StatusCode, code: Option<&str>) -> Self {
        if let Some(class) = code.and_then(class_of_code) {
            return class;
        }
        match status.as_u16() {
            429 => Self::Throttled,
            408 | 500 | 502 | 503 | 504 => Self::Transient,
            412 => Self::PreconditionFailed,
            404 => Self::NotFound,
            401 | 403 => Self::Denied,
            400 | 411 | 413 | 416 => Self::InvalidRequest,
            501 => Self::Unsupported,
            _ => Self::Other,
        }
    }
}

fn class_of_code(code: &str) -> Option<ErrorClass> {
    use ErrorClass::*;
    Some(match code {
        "SlowDown"
        | "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequests"
        | "TooManyRequestsException" => Throttled,
        "InternalError" | "RequestTimeout" | "ServiceUnavailable" | "OperationAborted" => Transient,
        "PreconditionFailed" => PreconditionFailed,
        "NoSuchKey" | "NoSuchBucket" | "NoSuchUpload" | "NoSuchVersion" => NotFound,
        "SignatureDoesNotMatch"
        | "InvalidAccessKeyId"
        | "AccessDenied"
        | "ExpiredToken"
        | "RequestTimeTooSkewed"
        | "InvalidToken"
        | "TokenRefreshRequired"
        | "InvalidSecurity"
        | "AccountProblem"
        | "AllAccessDisabled" => Denied,
        "BadDigest" | "XAmzContentSHA256Mismatch" | "InvalidChecksum" => ChecksumMismatch,
        "EntityTooSmall"
        | "EntityTooLarge"
        | "InvalidPart"
        | "InvalidPartOrder"
        | "InvalidArgument"
        | "InvalidRequest"
        | "InvalidRange"
        | "InvalidDigest"
        | "MalformedXML"
        | "InvalidBucketName"
        | "KeyTooLongError"
        | "MetadataTooLarge"
        | "MissingContentLength"
        | "IncompleteBody"
        | "InvalidPartNumber"
        | "TooManyParts" => InvalidRequest,
        "NotImplemented" => Unsupported,
        _ => return None,
    })
}

/// An error response from the S3 service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Error {
    /// HTTP status (200 when the error came inside a 200, as CompleteMultipartUpload does).
    pub status: StatusCode,
    /// The S3 error code, when the response had an `<Error>` body.
    pub code: Option<String>,
    /// The server's message (or a short description of a bodyless response).
    pub message: String,
    /// `x-amz-request-id` or `<RequestId>`: quote it in support cases.
    pub request_id: Option<String>,
    /// `x-amz-id-2` or `<HostId>`.
    pub host_id: Option<String>,
    /// `<Key>`, `<BucketName>` or `<Resource>` from the body, when present.
    pub resource: Option<String>,
    /// What the caller can do about it.
    pub class: ErrorClass,
}

impl S3Error {
    /// Advice for a person reading the error.
    pub fn advice(&self) -> &'static str {
        match (self.code.as_deref(), self.class) {
            (Some("SignatureDoesNotMatch"), _) => {
                "check the secret access key, and that no proxy rewrites the request"
            }
            (Some("InvalidAccessKeyId"), _) => "check the access key id and the endpoint",
            (Some("RequestTimeTooSkewed"), _) => "synchronize this machine's clock",
            (Some("ExpiredToken" | "InvalidToken" | "TokenRefreshRequired"), _) => {
                "refresh the temporary credentials (session token)"
            }
            (Some("EntityTooSmall"), _) => {
                "every part but the last must be at least 5 MiB; use a larger part size"
            }
            (Some("NoSuchUpload"), _) => {
                "the multipart upload was aborted or completed; start a new upload"
            }
            (Some("NoSuchBucket"), _) => "check the bucket name and region",
            (_, ErrorClass::Throttled) => {
                "the server asks to slow down; retry later with fewer concurrent requests"
            }
            (_, ErrorClass::Transient) => "a temporary server problem; retrying should succeed",
            (_, ErrorClass::PreconditionFailed) => {
                "the object changed since it was first read; start the transfer again"
            }
            (_, ErrorClass::NotFound) => "check the bucket and key",
            (_, ErrorClass::Denied) => {
                "check the credentials and the permissions for this bucket and key"
            }
            (_, ErrorClass::ChecksumMismatch) => {
                "the data did not match its checksum; the source may have changed while it was read"
            }
            (_, ErrorClass::InvalidRequest) => {
                "the request was rejected as invalid; this is likely a bug or an unsupported setting"
            }
            (_, ErrorClass::Unsupported) => "this server does not support the operation",
            _ => "see the message from the server",
        }
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S3 error {}", self.status.as_u16())?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let Some(r) = &self.resource {
            write!(f, " (resource {r})")?;
        }
        write!(f, "; {}", self.advice())?;
        if let Some(id) = &self.request_id {
            write!(f, " [request id {id}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for S3Error {}

/// A response that should have been a success body could not be understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed {operation} response: {detail}")]
pub struct MalformedResponse {
    /// The operation whose response it was.
    pub operation: &'static str,
    /// What was wrong.
    pub detail: String,
}

/// Why a response did not yield the expected output.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// The service answered with an error (boxed: it is large, and errors are rare).
    #[error(transparent)]
    Service(Box<S3Error>),
    /// The response did not have the expected shape (truncated, not XML, missing header).
    #[error(transparent)]
    Malformed(#[from] MalformedResponse),
}

impl From<S3Error> for ResponseError {
    fn from(e: S3Error) -> Self {
        Self::Service(Box::new(e))
    }
}

impl ResponseError {
    /// The class of a service error; a malformed response is [`ErrorClass::Other`]
    /// (the transfer logic decides whether a garbled answer is worth retrying).
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Service(e) => e.class,
            Self::Malformed(_) => ErrorClass::Other,
        }
    }

    /// The service error, if that is what this is.
    pub fn as_s3_error(&self) -> Option<&S3Error> {
        match self {
            Self::Service(e) => Some(e),
            Self::Malformed(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(status: u16, code: Option<&str>) -> ErrorClass {
        ErrorClass::classify(StatusCode::from_u16(status).unwrap(), code)
    }

    #[test]
    fn classification_rules() {
        assert_eq!(c(503, Some("SlowDown")), ErrorClass::Throttled);
        assert_eq!(c(503, None), ErrorClass::Transient);
        assert_eq!(c(503, Some("ServiceUnavailable")), ErrorClass::Transient);
        assert_eq!(c(429, None), ErrorClass::Throttled);
        for s in [500, 502, 504] {
            assert_eq!(c(s, None), ErrorClass::Transient, "{s}");
        }
        assert_eq!(c(200, Some("InternalError")), ErrorClass::Transient);
        assert_eq!(c(400, Some("RequestTimeout")), ErrorClass::Transient);
        assert_eq!(c(412, None), ErrorClass::PreconditionFailed);
        assert_eq!(
            c(412, Some("PreconditionFailed")),
            ErrorClass::PreconditionFailed
        );
        for code in ["NoSuchKey", "NoSuchBucket", "NoSuchUpload"] {
            assert_eq!(c(404, Some(code)), ErrorClass::NotFound);
        }
        assert_eq!(c(404, None), ErrorClass::NotFound);
        for code in [
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId",
            "AccessDenied",
            "ExpiredToken",
            "RequestTimeTooSkewed",
        ] {
            assert_eq!(c(403, Some(code)), ErrorClass::Denied, "{code}");
        }
        assert_eq!(c(400, Some("ExpiredToken")), ErrorClass::Denied);
        assert_eq!(c(403, None), ErrorClass::Denied);
        for code in [
            "EntityTooSmall",
            "InvalidPart",
            "InvalidPartOrder",
            "InvalidArgument",
        ] {
            assert_eq!(c(400, Some(code)), ErrorClass::InvalidRequest, "{code}");
        }
        assert_eq!(c(400, Some("BadDigest")), ErrorClass::ChecksumMismatch);
        assert_eq!(c(501, Some("NotImplemented")), ErrorClass::Unsupported);
        assert_eq!(c(409, Some("BucketAlreadyOwnedByYou")), ErrorClass::Other);
        assert!(ErrorClass::Throttled.is_retryable());
        assert!(!ErrorClass::Denied.is_retryable());
    }

    #[test]
    fn display_names_code_message_and_advice() {
        let e = S3Error {
            status: StatusCode::FORBIDDEN,
            code: Some("SignatureDoesNotMatch".into()),
            message: "The request signature we calculated does not match".into(),
            request_id: Some("4442587FB7D0A2F9".into()),
            host_id: None,
            resource: Some("/bucket/key".into()),
            class: ErrorClass::Denied,
        };
        let s = e.to_string();
        assert!(
            s.starts_with("S3 error 403 SignatureDoesNotMatch: The request signature"),
            "{s}"
        );
        assert!(s.contains("check the secret access key"), "{s}");
        assert!(s.contains("4442587FB7D0A2F9"), "{s}");
        assert!(s.contains("/bucket/key"), "{s}");
    }
}
