//! SigV4 signing through `aws-sigv4`, with the time passed in.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
    SigningSettings, UriPathNormalizationMode, sign as sigv4_sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::header::HOST;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};

use crate::credentials::Credentials;
use crate::error::SignError;
use crate::limits::MAX_PRESIGN_EXPIRY_SECS;
use crate::request::RequestBody;

/// `x-amz-content-sha256` of an empty payload.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What goes into `x-amz-content-sha256` and the canonical request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadHash {
    /// `UNSIGNED-PAYLOAD`: the body is not covered by the signature (streamed bodies;
    /// integrity then rests on TLS and the `x-amz-checksum-*` header).
    Unsigned,
    /// A SHA-256 the caller computed, lowercase hex.
    Sha256Hex(String),
    /// SHA-256 of the request's own body (`Empty` or `Bytes`; `External` is refused).
    FromBody,
}

fn settings(location: SignatureLocation) -> SigningSettings {
    let mut s = SigningSettings::default();
    // The builders encode keys exactly once; the default `Double` would re-encode `%`
    // and make keys containing percent-escapes fail with SignatureDoesNotMatch.
    s.percent_encoding_mode = PercentEncodingMode::Single;
    // S3 keys may contain `.`/`..` segments and repeated slashes that must stay as sent.
    s.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    s.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    s.signature_location = location;
    s
}

fn host_value(uri: &Uri) -> Result<HeaderValue, SignError> {
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| SignError::MissingHost(uri.to_string()))?;
    let default_port = match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    };
    let value = match uri.port_u16() {
        Some(p) if Some(p) != default_port => format!("{host}:{p}"),
        _ => host.to_owned(),
    };
    HeaderValue::from_str(&value).map_err(|_| SignError::MissingHost(uri.to_string()))
}

fn collect_headers(headers: &HeaderMap) -> Result<Vec<(&str, &str)>, SignError> {
    headers
        .iter()
        .map(|(name, value)| {
            value
                .to_str()
                .map(|v| (name.as_str(), v))
                .map_err(|_| SignError::InvalidHeaderValue(name.to_string()))
        })
        .collect()
}

/// Signs `request` in place with SigV4 for service `s3`.
///
/// Adds `Host` (when missing), `x-amz-date`, `x-amz-content-sha256`,
/// `x-amz-security-token` (with a session token) and `Authorization`. Every header
/// present at this point is signed, so add headers before signing, not after.
pub fn sign(
    request: &mut Request<RequestBody>,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
    payload: PayloadHash,
) -> Result<(), SignError> {
    if !request.headers().contains_key(HOST) {
        let host = host_value(request.uri())?;
        request.headers_mut().insert(HOST, host);
    }
    let body = match (&payload, request.body()) {
        (PayloadHash::Unsigned, _) => SignableBody::UnsignedPayload,
        (PayloadHash::Sha256Hex(h), _) => SignableBody::Precomputed(h.clone()),
        (PayloadHash::FromBody, RequestBody::Empty) => SignableBody::Bytes(&[]),
        (PayloadHash::FromBody, RequestBody::Bytes(b)) => SignableBody::Bytes(b),
        (PayloadHash::FromBody, RequestBody::External { .. }) => {
            return Err(SignError::ExternalBody);
        }
    };
    let identity: Identity = credentials.to_aws().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(time)
        .settings(settings(SignatureLocation::Headers))
        .build()
        .map_err(|e| SignError::Signer(e.to_string()))?
        .into();
    let uri = request.uri().to_string();
    let signable = SignableRequest::new(
        request.method().as_str(),
        uri,
        collect_headers(request.headers())?.into_iter(),
        body,
    )
    .map_err(|e| SignError::Signer(e.to_string()))?;
    let (instructions, _signature) = sigv4_sign(signable, &params)
        .map_err(|e| SignError::Signer(e.to_string()))?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

/// A presigned URL for `method` on `uri` (built by a request builder or by hand, with
/// the key already encoded), valid for `expires` from `time`.
///
/// Only `host` and the given `headers` are signed; whoever uses the URL must send those
/// headers unchanged. The payload is `UNSIGNED-PAYLOAD`, as for all presigned S3 URLs.
pub fn presign(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    credentials: &Credentials,
    region: &str,
    expires: Duration,
    time: SystemTime,
) -> Result<Uri, SignError> {
    let secs = expires.as_secs();
    if secs == 0 || secs > MAX_PRESIGN_EXPIRY_SECS {
        return Err(SignError::InvalidExpiry(secs));
    }
    let mut request = Request::new(());
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri.clone();
    *request.headers_mut() = headers.clone();
    if !request.headers().contains_key(HOST) {
        let host = host_value(uri)?;
        request.headers_mut().insert(HOST, host);
    }
    let identity: Identity = credentials.to_aws().into();
    let mut s = settings(SignatureLocation::QueryParams);
    s.expires_in = Some(Duration::from_secs(secs));
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(time)
        .settings(s)
        .build()
        .map_err(|e| SignError::Signer(e.to_string()))?
        .into();
    let uri_string = uri.to_string();
    let signable = SignableRequest::new(
        method.as_str(),
        uri_string,
        collect_headers(request.headers())?.into_iter(),
        SignableBody::UnsignedPayload,
    )
    .map_err(|e| SignError::Signer(e.to_string()))?;
    let (instructions, _signature) = sigv4_sign(signable, &params)
        .map_err(|e| SignError::Signer(e.to_string()))?
        .into_parts();
    instructions.apply_to_request_http1x(&mut request);
    Ok(request.uri().clone())
}
