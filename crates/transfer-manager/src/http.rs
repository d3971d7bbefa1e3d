//! The HTTP client: pooled hyper connections over TCP or rustls (ring), request timeouts,
//! and the mapping of everything that can go wrong into the machines' failure classes.
//!
//! Timeouts measure silence, never duration: a request fails with
//! [`FailureKind::Timeout`] when hyper has taken no request body bytes, or no response
//! headers arrived after the last of them, for `read_timeout`; and a response body when no
//! frame arrives for `read_timeout`. A part crossing a slow link takes as long as it takes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use s3_protocol::{Credentials, PayloadHash, RequestBody, ResponseError, S3Config};
use transfer_core::{Failure, FailureKind};

use crate::bandwidth::Bandwidth;
use crate::body::{Payload, SendBody};
use crate::{Error, ErrorKind};

type Connector = hyper_rustls::HttpsConnector<TcpConnector>;

/// Unsent bytes a connection's socket may hold (`TCP_NOTSENT_LOWAT`). The kernel would
/// otherwise take megabytes of a request body at once (the send buffer grows to
/// `tcp_wmem`'s maximum, 4 MiB by default), which then drain for seconds on a slow link
/// while the body looks silent; with it, a body frame taken by hyper is about to be on
/// the wire, and the silence a timeout measures is real. Bytes in flight (the congestion
/// window) are not limited, so throughput is not either.
const NOTSENT_LOWAT: u32 = 128 << 10;

/// hyper-util's TCP connector, with [`NOTSENT_LOWAT`] set on each new connection.
#[derive(Clone)]
struct TcpConnector(HttpConnector);

impl tower_service::Service<http::Uri> for TcpConnector {
    type Response = <HttpConnector as tower_service::Service<http::Uri>>::Response;
    type Error = <HttpConnector as tower_service::Service<http::Uri>>::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            #[cfg(any(target_os = "linux", target_os = "android"))]
            if let Err(e) = socket2::SockRef::from(io.inner()).set_tcp_notsent_lowat(NOTSENT_LOWAT)
            {
                tracing::debug!(error = %e, "cannot set TCP_NOTSENT_LOWAT");
            }
            Ok(io)
        })
    }
}

/// A pooled client shared by all transfers of a manager.
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: Client<Connector, SendBody>,
    s3: S3Config,
    credentials: Option<Credentials>,
    read_timeout: Duration,
    /// The manager's bandwidth cap, shared by every request.
    bandwidth: Option<Arc<Bandwidth>>,
}

impl HttpClient {
    pub(crate) fn new(
        s3: S3Config,
        credentials: Option<Credentials>,
        connect_timeout: Duration,
        read_timeout: Duration,
        ca_bundle: Option<&Path>,
        bandwidth: Option<Arc<Bandwidth>>,
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
            .wrap_connector(TcpConnector(http));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(https);
        Ok(HttpClient {
            client,
            s3,
            credentials,
            read_timeout,
            bandwidth,
        })
    }

    /// The manager's bandwidth cap, if it has one.
    pub(crate) fn bandwidth(&self) -> Option<&Bandwidth> {
        self.bandwidth.as_deref()
    }

    pub(crate) fn s3(&self) -> &S3Config {
        &self.s3
    }

    pub(crate) fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// Signs and sends `request`, with `body` as the bytes of an `External` body, and
    /// waits for the response headers for as long as the request keeps moving.
    pub(crate) async fn send(
        &self,
        mut request: Request<RequestBody>,
        body: Option<Payload>,
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
        let payload = match rb {
            RequestBody::Empty => Payload::Bytes(Bytes::new()),
            RequestBody::Bytes(b) => Payload::Bytes(b),
            RequestBody::External { .. } => body.unwrap_or(Payload::Bytes(Bytes::new())),
        };
        let len = payload.len();
        let body = SendBody::new(payload, self.bandwidth.clone());
        let progress = body.progress();
        let response = self.client.request(Request::from_parts(parts, body));
        tokio::pin!(response);
        // A watchdog re-armed by every frame hyper takes: the wait fails only after
        // `read_timeout` with neither a body byte taken nor the response headers. Once the
        // body is all taken, the silence is counted from its last frame (bytes may still
        // sit in socket buffers then, which is why the timeout must not be too short).
        let result = loop {
            let deadline = progress.last() + self.read_timeout;
            match tokio::time::timeout_at(deadline.into(), &mut response).await {
                Ok(result) => break result,
                Err(_) if progress.last() + self.read_timeout > Instant::now() => continue,
                Err(_) => {
                    let message = if progress.finished() || len == 0 {
                        format!(
                            "no response headers within {:?} after the last request byte",
                            self.read_timeout
                        )
                    } else {
                        format!(
                            "no request body bytes sent for {:?} ({} of {len} bytes sent)",
                            self.read_timeout,
                            progress.sent()
                        )
                    };
                    return Err(Failure::new(FailureKind::Timeout, message));
                }
            }
        };
        match result {
            Err(e) => {
                // A streamed body that stopped (a changed source) says why itself.
                let f = progress
                    .take_failure()
                    .unwrap_or_else(|| transport_failure(&e));
                tracing::debug!(error = %f.message, "request failed");
                Err(f)
            }
            Ok(resp) => {
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
        self.send_reading_body(request, None).await
    }

    /// Sends with `body` and reads the whole (small) response body.
    pub(crate) async fn send_reading_body(
        &self,
        request: Request<RequestBody>,
        body: Option<Payload>,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), Failure> {
        let resp = self.send(request, body).await?;
        let (parts, body) = resp.into_parts();
        let bytes = self.read_body(body).await?;
        Ok((parts.status, parts.headers, bytes))
    }

    /// Reads a whole (small) response body, a frame at a time: it fails when no frame
    /// arrives for `read_timeout`, however long the whole takes.
    pub(crate) async fn read_body(&self, mut body: Incoming) -> Result<Bytes, Failure> {
        let mut all = BytesMut::new();
        loop {
            match tokio::time::timeout(self.read_timeout, body.frame()).await {
                Err(_) => return Err(self.body_silence()),
                Ok(None) => return Ok(all.freeze()),
                Ok(Some(Err(e))) => return Err(transport_failure(&e)),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        all.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The failure of a response body that went silent.
    pub(crate) fn body_silence(&self) -> Failure {
        Failure::new(
            FailureKind::Timeout,
            format!("no response body bytes for {:?}", self.read_timeout),
        )
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
