//! The HTTP client: pooled hyper connections over TCP or rustls (ring), request timeouts,
//! and the mapping of everything that can go wrong into the machines' failure classes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use s3_protocol::{Credentials, PayloadHash, RequestBody, ResponseError, S3Config};
use transfer_core::{Failure, FailureKind};

use crate::{Error, ErrorKind};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A pooled client shared by all transfers of a manager.
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: Client<Connector, Full<Bytes>>,
    s3: S3Config,
    credentials: Option<Credentials>,
    read_timeout: Duration,
}

impl HttpClient {
    pub(crate) fn new(
        s3: S3Config,
        credentials: Option<Credentials>,
        connect_timeout: Duration,
        read_timeout: Duration,
        ca_bundle: Option<&Path>,
    ) -> Result<Self, Error> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::with_source(ErrorKind::InvalidInput, "TLS setup failed", e))?
        .with_root_certificates(trusted_roots(ca_bundle)?)
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(https);
        Ok(HttpClient {
            client,
            s3,
            credentials,
            read_timeout,
        })
    }

    pub(crate) fn s3(&self) -> &S3Config {
        &self.s3
    }

    pub(crate) fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// Signs and sends `request`, with `body` as the bytes of an `External` body.
    pub(crate) async fn send(
        &self,
        mut request: Request<RequestBody>,
        body: Option<Bytes>,
    ) -> Result<Response<Incoming>, Failure> {
        if let Some(creds) = &self.credentials {
            let payload = match request.body() {
                RequestBody::External { .. } => PayloadHash::Unsigned,
                _ => PayloadHash::FromBody,
            };
            s3_protocol::sign(
                &mut request,
                creds,
                self.s3.region(),
                SystemTime::now(),
                payload,
            )
            .map_err(|e| Failure::new(FailureKind::Other, format!("signing failed: {e}")))?;
        }
        let (parts, rb) = request.into_parts();
        let bytes = match rb {
            RequestBody::Empty => Bytes::new(),
            RequestBody::Bytes(b) => b,
            RequestBody::External { .. } => body.unwrap_or_default(),
        };
        let request = Request::from_parts(parts, Full::new(bytes));
        match tokio::time::timeout(self.read_timeout, self.client.request(request)).await {
            Err(_) => Err(Failure::new(
                FailureKind::Timeout,
                format!("no response within {:?}", self.read_timeout),
            )),
            Ok(Err(e)) => {
                let f = transport_failure(&e);
                tracing::debug!(error = %f.message, "request failed");
                Err(f)
            }
            Ok(Ok(resp)) => {
                let request_id = resp
                    .headers()
                    .get("x-amz-request-id")
                    .and_then(|v| v.to_str().ok());
                tracing::debug!(status = resp.status().as_u16(), request_id, "response");
                Ok(resp)
            }
        }
    }

    /// Sends and reads the whole (small) response body.
    pub(crate) async fn send_buffered(
        &self,
        request: Request<RequestBody>,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), Failure> {
        let resp = self.send(request, None).await?;
        let (parts, body) = resp.into_parts();
        let bytes = match tokio::time::timeout(self.read_timeout, body.collect()).await {
            Err(_) => {
                return Err(Failure::new(
                    FailureKind::Timeout,
                    "response body timed out",
                ));
            }
            Ok(Err(e)) => return Err(transport_failure(&e)),
            Ok(Ok(c)) => c.to_bytes(),
        };
        Ok((parts.status, parts.headers, bytes))
    }
}

/// The certificate authorities TLS connections trust: the PEM file `ca_bundle` when given
/// (as `AWS_CA_BUNDLE` and the AWS CLI's `--ca-bundle` do: instead of the built-in
/// roots), else the Mozilla roots of `webpki-roots`.
fn trusted_roots(ca_bundle: Option<&Path>) -> Result<rustls::RootCertStore, Error> {
    let mut roots = rustls::RootCertStore::empty();
    let Some(path) = ca_bundle else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    };
    let bad = |why: String| {
        Error::new(
            ErrorKind::InvalidInput,
            format!(
                "the CA bundle {} {why} (it is set by AWS_CA_BUNDLE, the profile's ca_bundle or --ca-bundle)",
                path.display()
            ),
        )
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(format!("cannot be read: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("is not valid PEM: {e}")))?;
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad(if ignored == 0 {
            "holds no certificate".to_owned()
        } else {
            format!("holds no usable certificate ({ignored} could not be parsed)")
        }));
    }
    Ok(roots)
}

/// The rustls error in `e`, which tokio-rustls and hyper-rustls hand over wrapped in
/// `io::Error`s (whose `source` skips the wrapped error).
fn tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    loop {
        if let Some(tls) = cur.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner = cur.downcast_ref::<std::io::Error>()?.get_ref()?;
        cur = inner;
    }
}

fn transport_failure(e: &(dyn std::error::Error + 'static)) -> Failure {
    // The interesting part is usually deep in the chain (connection refused, reset, ...).
    let mut msg = e.to_string();
    let mut cur = e.source();
    let mut certificate = false;
    while let Some(s) = cur {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        certificate |= matches!(
            tls_error(s),
            Some(
                rustls::Error::InvalidCertificate(_) | rustls::Error::InvalidCertRevocationList(_)
            )
        );
        cur = s.source();
    }
    if certificate {
        msg.push_str(
            " (a server whose certificate comes from a private authority needs that authority's PEM file in AWS_CA_BUNDLE or --ca-bundle)",
        );
    }
    Failure::new(FailureKind::Transport, msg)
}

pub(crate) fn body_failure(e: &hyper::Error) -> Failure {
    transport_failure(e)
}

/// The machines' view of an S3 error response.
pub(crate) fn response_failure(err: ResponseError) -> Failure {
    use s3_protocol::ErrorClass as C;
    match err {
        ResponseError::Service(e) => {
            let kind = match e.class {
                C::Transient => FailureKind::Transient,
                C::Throttled => FailureKind::Throttled,
                C::PreconditionFailed => FailureKind::PreconditionFailed,
                C::NotFound => FailureKind::NotFound,
                C::Denied => FailureKind::Denied,
                C::InvalidRequest | C::ChecksumMismatch => FailureKind::InvalidRequest,
                _ => FailureKind::Other,
            };
            let mut message = e.message.clone();
            if let Some(id) = &e.request_id {
                message.push_str(&format!(" (request id {id})"));
            }
            Failure {
                kind,
                status: Some(e.status.as_u16()),
                code: e.code.clone(),
                message,
            }
        }
        // A garbled answer is most often a cut connection: worth another try.
        ResponseError::Malformed(m) => Failure::new(FailureKind::Transient, m.to_string()),
        other => Failure::new(FailureKind::Other, other.to_string()),
    }
}
