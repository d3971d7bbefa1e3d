//! A minimal HTTP client for test setup and assertions (create a bucket, list uploads),
//! so tests do not need the transfer manager to check what the server holds.

use std::io;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use s3_protocol::{Credentials, PayloadHash, RequestBody, sign};

/// Signs `request` (built by an `s3-protocol` builder) with SigV4 at the current time,
/// the payload hash taken from its in-memory body, then sends it with [`send`].
///
/// # Errors
///
/// When signing fails, the body is [`RequestBody::External`], or the exchange fails at
/// the HTTP level. Any HTTP status, including 4xx and 5xx, is an `Ok` response.
pub async fn send_signed(
    mut request: Request<RequestBody>,
    credentials: &Credentials,
    region: &str,
) -> io::Result<Response<Bytes>> {
    sign(
        &mut request,
        credentials,
        region,
        SystemTime::now(),
        PayloadHash::FromBody,
    )
    .map_err(io::Error::other)?;
    send(request).await
}

/// Sends `request` as it is (no signing) and reads the whole response body.
///
/// # Errors
///
/// When the body is [`RequestBody::External`] (this client holds bodies in memory), or
/// the connection or the response body fails.
pub async fn send(request: Request<RequestBody>) -> io::Result<Response<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match body {
        RequestBody::Empty => Bytes::new(),
        RequestBody::Bytes(b) => b,
        RequestBody::External { .. } => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "s3-testkit's client sends in-memory bodies only",
            ));
        }
    };
    // A client per call: a pooled client kept across calls would hold connections owned
    // by whichever tokio runtime (one per #[tokio::test]) made them.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
        .map_err(io::Error::other)?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
    Ok(Response::from_parts(parts, body))
}
