//! A fault-injecting HTTP/1.1 proxy to put between a client and a test server.
//!
//! Each request is matched against the rules the test installed (at any time, from any
//! task); the first matching rule with uses left decides what happens, and every
//! matching `delay` rule adds latency on top. Requests no rule claims are forwarded
//! unchanged. Bodies stream both ways, so a 100 MiB object never sits in memory.
//!
//! The `Host` header goes upstream exactly as the client sent it: the client signed it,
//! and the servers verify the signature against the `Host` they receive.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Sleep;

/// `times` value for a rule that never runs out.
pub const ALWAYS: u32 = u32::MAX;

// After cutting a response body, how long to wait before resetting, so the bytes already
// handed to hyper reach the socket: hyper drops its unflushed buffer when a body fails.
const RESET_GRACE: Duration = Duration::from_millis(100);

type BoxError = Box<dyn StdError + Send + Sync>;
type Predicate = Arc<dyn Fn(&LoggedRequest) -> bool + Send + Sync>;

/// One request as the proxy saw it, in arrival order.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: Method,
    /// Path as sent (percent-encoded).
    pub path: String,
    /// Raw query string without `?` (empty when there is none).
    pub query: String,
    /// Request headers as sent (including `Authorization`: this is a test proxy).
    pub headers: HeaderMap,
    /// Status sent to the client; `None` while in flight, or when the connection was
    /// closed without a response head.
    pub status: Option<u16>,
    /// Name of the fault applied (`"respond_with"`, `"delay"`, ...), `None` if forwarded
    /// untouched.
    pub injected: Option<&'static str>,
}

impl LoggedRequest {
    /// Raw (still percent-encoded) value of query parameter `name`; `Some("")` for a
    /// parameter without a value such as `?uploads`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|pair| {
            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
            (n == name).then_some(v)
        })
    }

    /// The `partNumber` of an UploadPart (or a part GET), if any.
    pub fn part_number(&self) -> Option<u32> {
        self.query_param("partNumber")?.parse().ok()
    }

    /// Value of request header `name`, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

/// Which requests a rule applies to. All conditions set must hold; [`Matcher::any`] has
/// none.
#[derive(Clone, Default)]
pub struct Matcher {
    method: Option<Method>,
    query_params: Vec<String>,
    query_values: Vec<(String, String)>,
    query_substrings: Vec<String>,
    path_substrings: Vec<String>,
    headers: Vec<String>,
    predicate: Option<Predicate>,
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Matcher")
            .field("method", &self.method)
            .field("query_params", &self.query_params)
            .field("query_values", &self.query_values)
            .field("query_substrings", &self.query_substrings)
            .field("path_substrings", &self.path_substrings)
            .field("headers", &self.headers)
            .field("predicate", &self.predicate.as_ref().map(|_| "Fn"))
            .finish()
    }
}

impl Matcher {
    /// Every request.
    pub fn any() -> Self {
        Self::default()
    }

    /// Requests with this method.
    pub fn method(method: Method) -> Self {
        Self::any().with_method(method)
    }

    /// UploadPart: `PUT ?partNumber=N&uploadId=U`.
    pub fn upload_part() -> Self {
        Self::method(Method::PUT)
            .query_param("partNumber")
            .query_param("uploadId")
    }

    /// UploadPart of one part number.
    pub fn upload_part_number(part_number: u32) -> Self {
        Self::upload_part().query_param_eq("partNumber", &part_number.to_string())
    }

    /// CreateMultipartUpload: `POST ?uploads`.
    pub fn create_multipart_upload() -> Self {
        Self::method(Method::POST).query_param("uploads")
    }

    /// CompleteMultipartUpload: `POST ?uploadId=U`.
    pub fn complete_multipart_upload() -> Self {
        Self::method(Method::POST).query_param("uploadId")
    }

    /// AbortMultipartUpload: `DELETE ?uploadId=U`.
    pub fn abort_multipart_upload() -> Self {
        Self::method(Method::DELETE).query_param("uploadId")
    }

    /// ListParts: `GET ?uploadId=U`.
    pub fn list_parts() -> Self {
        Self::method(Method::GET).query_param("uploadId")
    }

    /// A GET carrying a `Range` header (ranged GetObject).
    pub fn ranged_get() -> Self {
        Self::method(Method::GET).header("range")
    }

    /// Also require this method.
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// Also require query parameter `name` (with or without a value).
    pub fn query_param(mut self, name: &str) -> Self {
        self.query_params.push(name.to_owned());
        self
    }

    /// Also require query parameter `name` to have exactly this raw value.
    pub fn query_param_eq(mut self, name: &str, value: &str) -> Self {
        self.query_values.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Also require the raw query string to contain `needle`.
    pub fn query_contains(mut self, needle: &str) -> Self {
        self.query_substrings.push(needle.to_owned());
        self
    }

    /// Also require the (percent-encoded) path to contain `needle`.
    pub fn path_contains(mut self, needle: &str) -> Self {
        self.path_substrings.push(needle.to_owned());
        self
    }

    /// Also require header `name` to be present.
    pub fn header(mut self, name: &str) -> Self {
        self.headers.push(name.to_ascii_lowercase());
        self
    }

    /// Also require `predicate` to return true. It sees the request with `status` and
    /// `injected` still `None`, and runs with the proxy's state locked: keep it quick and
    /// do not call the proxy from it.
    pub fn when(
        mut self,
        predicate: impl Fn(&LoggedRequest) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.predicate = Some(Arc::new(predicate));
        self
    }

    fn matches(&self, request: &LoggedRequest) -> bool {
        self.method.as_ref().is_none_or(|m| *m == request.method)
            && self
                .query_params
                .iter()
                .all(|name| request.query_param(name).is_some())
            && self
                .query_values
                .iter()
                .all(|(name, value)| request.query_param(name) == Some(value.as_str()))
            && self
                .query_substrings
                .iter()
                .all(|needle| request.query.contains(needle.as_str()))
            && self
                .path_substrings
                .iter()
                .all(|needle| request.path.contains(needle.as_str()))
            && self
                .headers
                .iter()
                .all(|name| request.headers.contains_key(name.as_str()))
            && self.predicate.as_ref().is_none_or(|p| p(request))
    }
}

/// Identifies an installed rule, for [`FaultProxy::fired`] and [`FaultProxy::remove`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleId(u64);

#[derive(Clone, Debug)]
enum Fault {
    Respond { status: StatusCode, code: String },
    Complete200WithError { code: String },
    ResetAfterResponseBytes(u64),
    TruncateResponseBody(u64),
    ResetAfterRequestBytes(u64),
    DropResponse,
    Delay(Duration),
}

impl Fault {
    fn name(&self) -> &'static str {
        match self {
            Self::Respond { .. } => "respond_with",
            Self::Complete200WithError { .. } => "complete_200_with_error",
            Self::ResetAfterResponseBytes(_) => "reset_after_response_bytes",
            Self::TruncateResponseBody(_) => "truncate_response_body",
            Self::ResetAfterRequestBytes(_) => "reset_after_request_bytes",
            Self::DropResponse => "drop_response",
            Self::Delay(_) => "delay",
        }
    }
}

#[derive(Debug)]
struct Rule {
    id: RuleId,
    matcher: Matcher,
    fault: Fault,
    remaining: u32,
    fired: u32,
}

impl Rule {
    fn take(&mut self, request: &LoggedRequest) -> bool {
        if self.remaining == 0 || !self.matcher.matches(request) {
            return false;
        }
        if self.remaining != ALWAYS {
            self.remaining -= 1;
        }
        self.fired += 1;
        true
    }
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    log: Vec<LoggedRequest>,
    next_rule: u64,
    next_request_id: u64,
}

/// Body bytes the proxy has passed on, each way, since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BodyBytes {
    /// Request body bytes forwarded to the upstream server (uploads).
    pub to_server: u64,
    /// Upstream response body bytes sent on to the client (downloads); the proxy's own
    /// injected error bodies are not counted.
    pub to_client: u64,
}

#[derive(Debug, Default)]
struct Counters {
    to_server: AtomicU64,
    to_client: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    upstream: String,
    client: Client<HttpConnector, CountedBody>,
    counters: Arc<Counters>,
    throttle: Arc<Throttle>,
}

/// Receive buffer of connections accepted while a bandwidth limit is set: without it the
/// kernel would take megabytes of a request body off the client at once, hiding the limit
/// from the client.
const THROTTLED_RECV_BUFFER: usize = 64 << 10;

/// The bandwidth limit: one schedule shared by every connection and both directions. Each
/// body frame books the time its bytes take at the rate, after the frames booked before it,
/// and is held until then; an idle link earns no credit, so the average never exceeds the
/// rate.
#[derive(Debug, Default)]
struct Throttle {
    state: Mutex<ThrottleState>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    bytes_per_sec: Option<u64>,
    /// When the frames booked so far have all passed.
    booked_until: Option<tokio::time::Instant>,
}

impl Throttle {
    fn lock(&self) -> MutexGuard<'_, ThrottleState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, bytes_per_sec: Option<u64>) {
        let mut state = self.lock();
        state.bytes_per_sec = bytes_per_sec.filter(|r| *r > 0);
        state.booked_until = None;
    }

    fn is_limited(&self) -> bool {
        self.lock().bytes_per_sec.is_some()
    }

    /// When a frame of `len` bytes may pass; `None` for at once.
    fn book(&self, len: usize) -> Option<tokio::time::Instant> {
        let mut state = self.lock();
        let rate = state.bytes_per_sec?;
        let now = tokio::time::Instant::now();
        let start = state.booked_until.map_or(now, |t| t.max(now));
        let until = start + Duration::from_secs_f64(len as f64 / rate as f64);
        state.booked_until = Some(until);
        (until > now).then_some(until)
    }
}

/// A frame held back by the bandwidth limit, and the timer that releases it.
#[derive(Debug, Default)]
struct Pacer {
    held: Option<(Frame<Bytes>, Pin<Box<Sleep>>)>,
}

impl Pacer {
    /// The next frame of `inner`, released no faster than `throttle` allows.
    fn poll_frame<E>(
        &mut self,
        throttle: &Throttle,
        cx: &mut Context<'_>,
        inner: impl FnOnce(&mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, E>>>,
    ) -> Poll<Option<Result<Frame<Bytes>, E>>> {
        if let Some((_, sleep)) = &mut self.held {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            return Poll::Ready(self.held.take().map(|(frame, _)| Ok(frame)));
        }
        match inner(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let until = frame.data_ref().and_then(|d| throttle.book(d.len()));
                if let Some(until) = until {
                    let mut sleep = Box::pin(tokio::time::sleep_until(until));
                    if sleep.as_mut().poll(cx).is_pending() {
                        self.held = Some((frame, sleep));
                        return Poll::Pending;
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    /// `inner`, plus the bytes held here.
    fn size_hint(&self, inner: SizeHint) -> SizeHint {
        let held = self
            .held
            .as_ref()
            .and_then(|(f, _)| f.data_ref())
            .map_or(0, |d| d.len() as u64);
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + held);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock must not hide the state from the
        // rest of the test's teardown.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs the request and picks what to do with it: total delay, then at most one fault.
    fn admit(&self, mut request: LoggedRequest) -> (usize, u64, Duration, Option<Fault>) {
        let mut state = self.lock();
        let mut delay = Duration::ZERO;
        let mut fault = None;
        for rule in &mut state.rules {
            match &rule.fault {
                Fault::Delay(d) => {
                    let d = *d;
                    if rule.take(&request) {
                        delay += d;
                    }
                }
                other => {
                    if fault.is_none() {
                        let other = other.clone();
                        if rule.take(&request) {
                            fault = Some(other);
                        }
                    }
                }
            }
        }
        request.injected = match (&fault, delay.is_zero()) {
            (Some(f), _) => Some(f.name()),
            (None, false) => Some("delay"),
            (None, true) => None,
        };
        state.next_request_id += 1;
        let request_id = state.next_request_id;
        state.log.push(request);
        (state.log.len() - 1, request_id, delay, fault)
    }

    fn set_status(&self, index: usize, status: StatusCode) {
        if let Some(entry) = self.lock().log.get_mut(index) {
            entry.status = Some(status.as_u16());
        }
    }
}

/// A running fault-injecting proxy. It serves until dropped; dropping it closes the
/// listener and every open connection.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:0` forwarding to `upstream`, an `http://host:port`
    /// endpoint (such as [`crate::S3sFsServer::endpoint`]), inside the current tokio runtime.
    ///
    /// # Panics
    ///
    /// When `upstream` is not an `http://` endpoint or the socket cannot be bound; use
    /// [`FaultProxy::try_start`] to handle that.
    pub async fn start(upstream: &str) -> Self {
        match Self::try_start(upstream).await {
            Ok(proxy) => proxy,
            Err(e) => panic!("cannot start the fault proxy to {upstream}: {e}"),
        }
    }

    /// Like [`FaultProxy::start`], returning setup failures.
    pub async fn try_start(upstream: &str) -> io::Result<Self> {
        let authority = upstream
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("upstream must look like http://host:port, got {upstream:?}"),
                )
            })?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            upstream: authority.to_owned(),
            client: Client::builder(TokioExecutor::new()).build(connector),
            counters: Arc::default(),
            throttle: Arc::default(),
        });

        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let accept_shared = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                while connections.try_join_next().is_some() {}
                let Ok((stream, _)) = listener.accept().await else {
                    // Accept errors (e.g. too many open files) are transient; keep serving.
                    tokio::task::yield_now().await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                if accept_shared.throttle.is_limited() {
                    let _ =
                        socket2::SockRef::from(&stream).set_recv_buffer_size(THROTTLED_RECV_BUFFER);
                }
                let shared = Arc::clone(&accept_shared);
                connections.spawn(async move {
                    let service = service_fn(move |req| handle(Arc::clone(&shared), req));
                    // Injected resets end connections with an error on purpose.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// Base URL clients should use instead of the upstream's, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Body bytes passed on so far, each way: what crossed the wire, whether or not the
    /// request it belonged to finished.
    pub fn body_bytes(&self) -> BodyBytes {
        let c = &self.shared.counters;
        BodyBytes {
            to_server: c.to_server.load(Ordering::Relaxed),
            to_client: c.to_client.load(Ordering::Relaxed),
        }
    }

    /// Limits the body bytes passing through the proxy to `bytes_per_sec` on average,
    /// counted over every connection and both directions together (a shared uplink and
    /// downlink): frames are held until the rate allows them, so a client sees a slow
    /// link, not silence. Connections accepted while a limit is set get a small receive
    /// buffer, so the kernel does not take megabytes off the client at loopback speed.
    /// Headers and the proxy's own error bodies are not limited. `0` removes the limit.
    pub fn limit_bandwidth(&self, bytes_per_sec: u64) {
        self.shared.throttle.set(Some(bytes_per_sec));
    }

    fn add(&self, matcher: Matcher, fault: Fault, times: u32) -> RuleId {
        let mut state = self.shared.lock();
        state.next_rule += 1;
        let id = RuleId(state.next_rule);
        state.rules.push(Rule {
            id,
            matcher,
            fault,
            remaining: times,
            fired: 0,
        });
        id
    }

    /// Answers the next `times` matching requests itself with `status` and an S3
    /// `<Error>` document carrying `code` (e.g. 503 `SlowDown`, 500 `InternalError`,
    /// 403 `AccessDenied` with [`ALWAYS`]). The request body is read and discarded first,
    /// as a server would, so the client sees a clean response rather than a broken pipe.
    pub fn respond_with(&self, matcher: Matcher, status: u16, code: &str, times: u32) -> RuleId {
        let status = StatusCode::from_u16(status)
            .unwrap_or_else(|_| panic!("respond_with: invalid HTTP status {status}"));
        let code = code.to_owned();
        self.add(matcher, Fault::Respond { status, code }, times)
    }

    /// Answers the next `times` CompleteMultipartUpload requests with HTTP 200 whose body
    /// is an `<Error>` document with `code`, without forwarding them: the upload stays
    /// incomplete, as when S3 fails a Complete after sending the 200 head.
    pub fn complete_200_with_error(&self, code: &str, times: u32) -> RuleId {
        let code = code.to_owned();
        self.add(
            Matcher::complete_multipart_upload(),
            Fault::Complete200WithError { code },
            times,
        )
    }

    /// Forwards the next `times` matching requests, sends the response head and the
    /// first `bytes` body bytes, then resets the connection: the client sees a body
    /// shorter than its `Content-Length` and a connection error.
    pub fn reset_after_response_bytes(&self, matcher: Matcher, bytes: u64, times: u32) -> RuleId {
        self.add(matcher, Fault::ResetAfterResponseBytes(bytes), times)
    }

    /// Forwards the next `times` matching requests but shortens the response to its first
    /// `bytes` body bytes, with `Content-Length` rewritten to match and the connection
    /// kept alive: a well-formed response that silently lacks data (`Content-Range` and
    /// other headers are left as the server sent them).
    pub fn truncate_response_body(&self, matcher: Matcher, bytes: u64, times: u32) -> RuleId {
        self.add(matcher, Fault::TruncateResponseBody(bytes), times)
    }

    /// For the next `times` matching requests, reads `bytes` of the request body (or all
    /// of a shorter one), then closes the connection without forwarding anything: an
    /// upload cut off mid-body, which the server never sees.
    pub fn reset_after_request_bytes(&self, matcher: Matcher, bytes: u64, times: u32) -> RuleId {
        self.add(matcher, Fault::ResetAfterRequestBytes(bytes), times)
    }

    /// Forwards the next `times` matching requests and lets the server finish them, then
    /// closes the client's connection without a response: the operation took effect but
    /// the client cannot know.
    pub fn drop_response(&self, matcher: Matcher, times: u32) -> RuleId {
        self.add(matcher, Fault::DropResponse, times)
    }

    /// Holds the next `times` matching requests for `latency` before handling them. Delays
    /// combine with each other and with one other fault.
    pub fn delay(&self, matcher: Matcher, latency: Duration, times: u32) -> RuleId {
        self.add(matcher, Fault::Delay(latency), times)
    }

    /// How many requests rule `id` has applied to so far.
    pub fn fired(&self, id: RuleId) -> u32 {
        let state = self.shared.lock();
        state
            .rules
            .iter()
            .find(|r| r.id == id)
            .map_or(0, |r| r.fired)
    }

    /// Removes rule `id`; requests in flight keep the fault they were given.
    pub fn remove(&self, id: RuleId) {
        self.shared.lock().rules.retain(|r| r.id != id);
    }

    /// Removes every rule; from now on requests pass untouched.
    pub fn clear(&self) {
        self.shared.lock().rules.clear();
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.clone()
    }

    /// Forgets the request log (rules stay).
    pub fn clear_requests(&self) {
        self.shared.lock().log.clear();
    }
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, BoxError> {
    let (parts, body) = request.into_parts();
    let logged = LoggedRequest {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts.headers.clone(),
        status: None,
        injected: None,
    };
    let is_head = parts.method == Method::HEAD;
    let resource = logged.path.clone();
    // The log index stays valid until `clear_requests`, after which `set_status` on a
    // stale index only mislabels or skips an entry of a log the test discarded.
    let (index, request_id, delay, fault) = shared.admit(logged);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    let request_id = format!("S3TMFAULTPROXY{request_id:06}");
    let response = match fault {
        Some(Fault::Respond { status, code }) => {
            drain(body).await?;
            error_response(status, &code, &resource, &request_id, is_head)
        }
        Some(Fault::Complete200WithError { code }) => {
            drain(body).await?;
            error_response(StatusCode::OK, &code, &resource, &request_id, is_head)
        }
        Some(Fault::ResetAfterRequestBytes(limit)) => {
            read_up_to(body, limit).await?;
            return Err(injected_reset("reset after request bytes"));
        }
        other => {
            let upstream = forward(&shared, parts, body).await;
            let response = match upstream {
                Ok(response) => response,
                Err(e) => {
                    let response = bad_gateway(&e);
                    shared.set_status(index, response.status());
                    return Ok(response);
                }
            };
            let (mut head, body) = response.into_parts();
            strip_hop_by_hop(&mut head.headers);
            let body = match other {
                Some(Fault::DropResponse) => {
                    return Err(injected_reset("response dropped"));
                }
                Some(Fault::ResetAfterResponseBytes(limit)) => {
                    ProxyBody::limited(body, limit, Cut::Reset, &shared)
                }
                Some(Fault::TruncateResponseBody(limit)) => {
                    let declared = head
                        .headers
                        .get(header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    if let Some(declared) = declared {
                        head.headers.insert(
                            header::CONTENT_LENGTH,
                            HeaderValue::from(declared.min(limit)),
                        );
                    }
                    ProxyBody::limited(body, limit, Cut::End, &shared)
                }
                _ => ProxyBody::Upstream {
                    body,
                    limit: None,
                    counters: Arc::clone(&shared.counters),
                    throttle: Arc::clone(&shared.throttle),
                    pacer: Pacer::default(),
                },
            };
            Response::from_parts(head, body)
        }
    };
    shared.set_status(index, response.status());
    Ok(response)
}

async fn forward(
    shared: &Shared,
    parts: http::request::Parts,
    body: Incoming,
) -> Result<Response<Incoming>, BoxError> {
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri = format!("http://{}{}", shared.upstream, path_and_query);
    let mut request = Request::builder()
        .method(parts.method)
        .uri(uri)
        .version(Version::HTTP_11)
        .body(CountedBody {
            body,
            counter: Arc::clone(&shared.counters),
            throttle: Arc::clone(&shared.throttle),
            pacer: Pacer::default(),
        })?;
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    // `Host` is among these and is kept verbatim: the client's signature covers it, and
    // hyper-util only adds one when the request has none.
    *request.headers_mut() = headers;
    Ok(shared.client.request(request).await?)
}

/// Connection-level headers that describe the client's hop, not the upstream's. Framing
/// (`Transfer-Encoding`) is recomputed by hyper from the body on each side.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    const HOP_BY_HOP: [&str; 6] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
        "transfer-encoding",
    ];
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

async fn drain(mut body: Incoming) -> Result<(), BoxError> {
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok(())
}

async fn read_up_to(mut body: Incoming, limit: u64) -> Result<(), BoxError> {
    let mut seen = 0u64;
    while seen < limit {
        match body.frame().await {
            Some(frame) => {
                if let Some(data) = frame?.data_ref() {
                    seen += data.len() as u64;
                }
            }
            None => break,
        }
    }
    Ok(())
}

fn injected_reset(what: &str) -> BoxError {
    Box::new(io::Error::new(
        io::ErrorKind::ConnectionReset,
        format!("fault proxy: injected {what}"),
    ))
}

fn error_message(code: &str) -> &'static str {
    match code {
        "SlowDown" => "Please reduce your request rate.",
        "InternalError" => "We encountered an internal error. Please try again.",
        "ServiceUnavailable" => "Service is unable to handle request.",
        "AccessDenied" => "Access Denied",
        "RequestTimeout" => {
            "Your socket connection to the server was not read from or written to within the timeout period."
        }
        _ => "Injected by the s3-testkit fault proxy.",
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn error_response(
    status: StatusCode,
    code: &str,
    resource: &str,
    request_id: &str,
    is_head: bool,
) -> Response<ProxyBody> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>\
         <Resource>{}</Resource><RequestId>{request_id}</RequestId>\
         <HostId>s3-testkit-fault-proxy</HostId></Error>",
        xml_escape(code),
        xml_escape(error_message(code)),
        xml_escape(resource),
    );
    // HEAD responses carry no body, as S3's do not; the status alone tells the error.
    let body = if is_head {
        Bytes::new()
    } else {
        Bytes::from(xml)
    };
    let mut response = Response::new(ProxyBody::Full(Some(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(HeaderName::from_static("x-amz-request-id"), id);
    }
    response
}

fn bad_gateway(error: &BoxError) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::Full(Some(Bytes::from(format!(
        "fault proxy: upstream request failed: {error}"
    )))));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

/// What happens once a limited body has passed its bytes on.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// End the body cleanly (the head was rewritten to the shorter length).
    End,
    /// Fail the body after a grace period, which makes hyper close the connection.
    Reset,
}

/// Response bodies the proxy sends: its own, or the upstream's, possibly cut short.
#[derive(Debug)]
enum ProxyBody {
    Full(Option<Bytes>),
    Upstream {
        body: Incoming,
        limit: Option<Limit>,
        counters: Arc<Counters>,
        throttle: Arc<Throttle>,
        pacer: Pacer,
    },
}

/// A request body on its way upstream, counted (and paced, under a bandwidth limit) as it
/// goes.
#[derive(Debug)]
struct CountedBody {
    body: Incoming,
    counter: Arc<Counters>,
    throttle: Arc<Throttle>,
    pacer: Pacer,
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let body = &mut this.body;
        let polled = this
            .pacer
            .poll_frame(&this.throttle, cx, |cx| Pin::new(body).poll_frame(cx));
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.counter
                .to_server
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        !self.pacer.is_holding() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.pacer.size_hint(self.body.size_hint())
    }
}

#[derive(Debug)]
struct Limit {
    remaining: u64,
    cut: Cut,
    grace: Option<Pin<Box<Sleep>>>,
}

impl Limit {
    /// The next frame of `body`, cut at the limit.
    fn poll_frame(
        &mut self,
        body: &mut Incoming,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.remaining == 0 {
            return match self.cut {
                Cut::End => Poll::Ready(None),
                Cut::Reset => {
                    let grace = self
                        .grace
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(RESET_GRACE)));
                    match grace.as_mut().poll(cx) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(()) => {
                            Poll::Ready(Some(Err(injected_reset("reset after response bytes"))))
                        }
                    }
                }
            };
        }
        match Pin::new(body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    let len = data.len() as u64;
                    if len > self.remaining {
                        // Fits in usize: it is below `len`, a buffer length.
                        data.truncate(self.remaining as usize);
                    }
                    self.remaining -= data.len() as u64;
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other.map(|f| f.map(|r| r.map_err(BoxError::from))),
        }
    }
}

impl ProxyBody {
    fn limited(body: Incoming, bytes: u64, cut: Cut, shared: &Shared) -> Self {
        Self::Upstream {
            body,
            counters: Arc::clone(&shared.counters),
            throttle: Arc::clone(&shared.throttle),
            pacer: Pacer::default(),
            limit: Some(Limit {
                remaining: bytes,
                cut,
                grace: None,
            }),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let (body, limit, counters, throttle, pacer) = match self.get_mut() {
            Self::Full(bytes) => return Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Upstream {
                body,
                limit,
                counters,
                throttle,
                pacer,
            } => (body, limit, counters, throttle, pacer),
        };
        let polled = pacer.poll_frame(throttle, cx, |cx| match limit {
            None => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(BoxError::from))),
            Some(limit) => limit.poll_frame(body, cx),
        });
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            counters
                .to_client
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(bytes) => bytes.is_none(),
            Self::Upstream { pacer, .. } if pacer.is_holding() => false,
            Self::Upstream {
                body, limit: None, ..
            } => body.is_end_stream(),
            Self::Upstream {
                body,
                limit: Some(limit),
                ..
            } => match limit.cut {
                Cut::End => limit.remaining == 0 || body.is_end_stream(),
                Cut::Reset => body.is_end_stream(),
            },
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Upstream {
                body,
                limit: None,
                pacer,
                ..
            } => pacer.size_hint(body.size_hint()),
            Self::Upstream {
                body,
                limit: Some(limit),
                pacer,
                ..
            } => {
                let inner = body.size_hint();
                pacer.size_hint(match (limit.cut, inner.exact()) {
                    (Cut::End, Some(n)) => SizeHint::with_exact(n.min(limit.remaining)),
                    _ => SizeHint::default(),
                })
            }
        }
    }
}
