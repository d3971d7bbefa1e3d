//! Every fault of the proxy, observed by a client talking through it to the in-process
//! s3s-fs server (which verifies signatures, so passing requests prove `Host` survives).

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use s3_protocol::{
    Addressing, CompleteMultipartUpload, CompletedPart, CreateMultipartUpload, Credentials,
    Endpoint, ErrorClass, GetObject, HeadObject, PartNumber, PayloadHash, PutObject, RequestBody,
    S3Config, UploadPart, parse_complete_multipart_upload, parse_create_multipart_upload,
    parse_error, parse_upload_part, sign,
};
use s3_testkit::{ALWAYS, BodyBytes, FaultProxy, Matcher, S3sFsServer, start_s3s_fs};

const BUCKET: &str = "proxied";

struct Rig {
    server: S3sFsServer,
    proxy: FaultProxy,
    via_proxy: S3Config,
    direct: S3Config,
    creds: Credentials,
}

/// What the client saw: head, the body bytes that arrived, and how the body ended.
#[derive(Debug)]
struct Seen {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    body_error: Option<String>,
}

impl Rig {
    async fn start() -> Self {
        let server = start_s3s_fs().await;
        server.create_bucket(BUCKET).unwrap();
        let proxy = FaultProxy::start(&server.endpoint()).await;
        let config = |endpoint: &str| {
            S3Config::custom(
                server.region(),
                Endpoint::parse(endpoint).unwrap(),
                Addressing::PathStyle,
            )
        };
        let via_proxy = config(&proxy.endpoint());
        let direct = config(&server.endpoint());
        let creds = Credentials::new(server.access_key(), server.secret_key(), None);
        Self {
            server,
            proxy,
            via_proxy,
            direct,
            creds,
        }
    }

    /// Signs and sends; `Err` when no response head arrived.
    async fn exchange(&self, mut request: Request<RequestBody>) -> Result<Seen, String> {
        sign(
            &mut request,
            &self.creds,
            self.server.region(),
            SystemTime::now(),
            PayloadHash::FromBody,
        )
        .unwrap();
        let (parts, body) = request.into_parts();
        let body = match body {
            RequestBody::Bytes(b) => b,
            _ => Bytes::new(),
        };
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let response = client
            .request(Request::from_parts(parts, Full::new(body)))
            .await
            .map_err(|e| format!("{e:?}"))?;
        let (head, mut body) = response.into_parts();
        let mut seen = Seen {
            status: head.status,
            headers: head.headers,
            body: Vec::new(),
            body_error: None,
        };
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Some(data) = frame.data_ref() {
                        seen.body.extend_from_slice(data);
                    }
                }
                Err(e) => {
                    seen.body_error = Some(format!("{e:?}"));
                    break;
                }
            }
        }
        Ok(seen)
    }

    async fn put(&self, config: &S3Config, key: &str, data: &[u8]) -> Result<Seen, String> {
        let body = RequestBody::Bytes(Bytes::copy_from_slice(data));
        self.exchange(PutObject::new(BUCKET, key, body).build(config).unwrap())
            .await
    }

    async fn get(&self, config: &S3Config, key: &str) -> Result<Seen, String> {
        self.exchange(GetObject::new(BUCKET, key).build(config).unwrap())
            .await
    }

    async fn stored(&self, key: &str) -> Option<Vec<u8>> {
        let seen = self.get(&self.direct, key).await.unwrap();
        match seen.status {
            StatusCode::OK => Some(seen.body),
            StatusCode::NOT_FOUND => None,
            other => panic!("direct GET {key}: {other}"),
        }
    }
}

fn object(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn passes_requests_through_and_logs_them() {
    let rig = Rig::start().await;
    let data = object(300_000);
    let put = rig.put(&rig.via_proxy, "dir/a key+ü", &data).await.unwrap();
    assert_eq!(put.status, StatusCode::OK, "{put:?}");
    let get = rig.get(&rig.via_proxy, "dir/a key+ü").await.unwrap();
    assert_eq!(get.status, StatusCode::OK);
    assert!(get.body_error.is_none());
    assert_eq!(get.body, data);

    let log = rig.proxy.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].method, Method::PUT);
    assert_eq!(log[0].path, "/proxied/dir/a%20key%2B%C3%BC");
    assert_eq!(log[1].method, Method::GET);
    assert!(
        log.iter()
            .all(|r| r.status == Some(200) && r.injected.is_none())
    );
    // The client signed the proxy's address; it reached the server untouched.
    assert_eq!(
        log[0].header("host"),
        Some(rig.proxy.addr().to_string().as_str())
    );
}

#[tokio::test]
async fn slowdown_burst_then_success() {
    let rig = Rig::start().await;
    rig.put(&rig.direct, "k", b"hello").await.unwrap();
    let rule = rig
        .proxy
        .respond_with(Matcher::method(Method::GET), 503, "SlowDown", 2);

    for _ in 0..2 {
        let seen = rig.get(&rig.via_proxy, "k").await.unwrap();
        assert_eq!(seen.status, StatusCode::SERVICE_UNAVAILABLE);
        let error = parse_error(seen.status, &seen.headers, &seen.body);
        assert_eq!(error.code.as_deref(), Some("SlowDown"));
        assert_eq!(error.class, ErrorClass::Throttled);
        assert!(error.request_id.is_some());
    }
    let seen = rig.get(&rig.via_proxy, "k").await.unwrap();
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(seen.body, b"hello");
    assert_eq!(rig.proxy.fired(rule), 2);

    let log = rig.proxy.requests();
    let statuses: Vec<_> = log.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(503), Some(503), Some(200)]);
    let injected: Vec<_> = log.iter().map(|r| r.injected).collect();
    assert_eq!(injected, [Some("respond_with"), Some("respond_with"), None]);
}

#[tokio::test]
async fn internal_error_is_not_forwarded() {
    let rig = Rig::start().await;
    rig.proxy
        .respond_with(Matcher::method(Method::PUT), 500, "InternalError", 1);
    let data = object(200_000);
    let seen = rig.put(&rig.via_proxy, "k", &data).await.unwrap();
    assert_eq!(seen.status, StatusCode::INTERNAL_SERVER_ERROR);
    let error = parse_error(seen.status, &seen.headers, &seen.body);
    assert_eq!(error.code.as_deref(), Some("InternalError"));
    assert_eq!(error.class, ErrorClass::Transient);
    assert_eq!(rig.stored("k").await, None);

    // The rule is used up: the retry goes through.
    let seen = rig.put(&rig.via_proxy, "k", &data).await.unwrap();
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(rig.stored("k").await, Some(data));
}

#[tokio::test]
async fn head_error_has_no_body() {
    let rig = Rig::start().await;
    rig.proxy
        .respond_with(Matcher::method(Method::HEAD), 503, "SlowDown", 1);
    let seen = rig
        .exchange(HeadObject::new(BUCKET, "k").build(&rig.via_proxy).unwrap())
        .await
        .unwrap();
    assert_eq!(seen.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(seen.body.is_empty());
}

#[tokio::test]
async fn permanent_denial_until_cleared() {
    let rig = Rig::start().await;
    rig.put(&rig.direct, "k", b"x").await.unwrap();
    let rule = rig
        .proxy
        .respond_with(Matcher::any(), 403, "AccessDenied", ALWAYS);
    for _ in 0..5 {
        let seen = rig.get(&rig.via_proxy, "k").await.unwrap();
        assert_eq!(seen.status, StatusCode::FORBIDDEN);
        let error = parse_error(seen.status, &seen.headers, &seen.body);
        assert_eq!(error.code.as_deref(), Some("AccessDenied"));
        assert_eq!(error.message, "Access Denied");
    }
    assert_eq!(rig.proxy.fired(rule), 5);
    rig.proxy.clear();
    assert_eq!(
        rig.get(&rig.via_proxy, "k").await.unwrap().status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn reset_after_response_bytes_truncates_with_an_error() {
    let rig = Rig::start().await;
    let data = object(256 * 1024);
    rig.put(&rig.direct, "big", &data).await.unwrap();
    rig.proxy
        .reset_after_response_bytes(Matcher::ranged_get(), 1000, 1);

    // Not ranged: the rule does not apply.
    let seen = rig.get(&rig.via_proxy, "big").await.unwrap();
    assert_eq!(seen.body, data);

    let mut ranged = GetObject::new(BUCKET, "big");
    ranged.range = s3_protocol::ByteRange::new(0, 200_000);
    let seen = rig
        .exchange(ranged.build(&rig.via_proxy).unwrap())
        .await
        .unwrap();
    assert_eq!(seen.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(seen.headers["content-length"], "200000");
    assert!(seen.body_error.is_some(), "body ended cleanly: {seen:?}");
    assert_eq!(seen.body.len(), 1000);
    assert_eq!(seen.body, data[..1000]);

    let again = rig
        .exchange(ranged.build(&rig.via_proxy).unwrap())
        .await
        .unwrap();
    assert!(again.body_error.is_none());
    assert_eq!(again.body, data[..200_000]);
    let log = rig.proxy.requests();
    assert_eq!(log[1].injected, Some("reset_after_response_bytes"));
    assert_eq!(log[1].status, Some(206));
}

#[tokio::test]
async fn reset_deep_into_a_large_body_delivers_exactly_the_prefix() {
    let rig = Rig::start().await;
    let data = object(8 * 1024 * 1024);
    rig.put(&rig.direct, "large", &data).await.unwrap();
    let cut = 5 * 1024 * 1024 + 7;
    rig.proxy
        .reset_after_response_bytes(Matcher::method(Method::GET), cut as u64, 1);
    let seen = rig.get(&rig.via_proxy, "large").await.unwrap();
    assert!(seen.body_error.is_some());
    assert_eq!(seen.body.len(), cut);
    assert!(seen.body == data[..cut]);
}

#[tokio::test]
async fn truncate_response_body_is_short_but_well_formed() {
    let rig = Rig::start().await;
    let data = object(100_000);
    rig.put(&rig.direct, "k", &data).await.unwrap();
    rig.proxy
        .truncate_response_body(Matcher::method(Method::GET), 4321, 1);
    let seen = rig.get(&rig.via_proxy, "k").await.unwrap();
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(seen.headers["content-length"], "4321");
    assert!(seen.body_error.is_none());
    assert_eq!(seen.body, data[..4321]);
    assert_eq!(rig.get(&rig.via_proxy, "k").await.unwrap().body, data);
}

#[tokio::test]
async fn body_bytes_count_what_crossed_each_way() {
    let rig = Rig::start().await;
    assert_eq!(rig.proxy.body_bytes(), BodyBytes::default());
    let data = object(100_000);
    rig.put(&rig.via_proxy, "k", &data).await.unwrap();
    assert_eq!(rig.proxy.body_bytes().to_server, 100_000);
    assert_eq!(rig.get(&rig.via_proxy, "k").await.unwrap().body, data);
    // A cut body counts what was passed on; the proxy's own error bodies count nothing.
    rig.proxy
        .truncate_response_body(Matcher::method(Method::GET), 4321, 1);
    assert_eq!(rig.get(&rig.via_proxy, "k").await.unwrap().body.len(), 4321);
    rig.proxy
        .respond_with(Matcher::method(Method::GET), 503, "SlowDown", 1);
    let refused = rig.get(&rig.via_proxy, "k").await.unwrap();
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!refused.body.is_empty(), "the injected error has a body");
    assert_eq!(
        rig.proxy.body_bytes(),
        BodyBytes {
            to_server: 100_000,
            to_client: 104_321,
        }
    );
}

#[tokio::test]
async fn reset_after_request_bytes_never_reaches_the_server() {
    let rig = Rig::start().await;
    rig.proxy
        .reset_after_request_bytes(Matcher::method(Method::PUT), 4096, 1);
    let data = object(1024 * 1024);
    let outcome = rig.put(&rig.via_proxy, "k", &data).await;
    assert!(outcome.is_err(), "{outcome:?}");
    assert_eq!(rig.stored("k").await, None);
    let log = rig.proxy.requests();
    assert_eq!(log[0].status, None);
    assert_eq!(log[0].injected, Some("reset_after_request_bytes"));

    assert_eq!(
        rig.put(&rig.via_proxy, "k", &data).await.unwrap().status,
        StatusCode::OK
    );
    assert_eq!(rig.stored("k").await, Some(data));
}

#[tokio::test]
async fn drop_response_applies_the_request_but_loses_the_answer() {
    let rig = Rig::start().await;
    rig.proxy.drop_response(Matcher::method(Method::PUT), 1);
    let outcome = rig.put(&rig.via_proxy, "k", b"applied").await;
    assert!(outcome.is_err(), "{outcome:?}");
    assert_eq!(rig.stored("k").await.as_deref(), Some(&b"applied"[..]));
}

#[tokio::test]
async fn delay_adds_latency_and_combines_with_a_fault() {
    let rig = Rig::start().await;
    rig.put(&rig.direct, "k", b"x").await.unwrap();
    rig.proxy
        .delay(Matcher::any(), Duration::from_millis(300), 2);
    rig.proxy.respond_with(Matcher::any(), 503, "SlowDown", 1);

    let started = Instant::now();
    let seen = rig.get(&rig.via_proxy, "k").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(seen.status, StatusCode::SERVICE_UNAVAILABLE);

    let started = Instant::now();
    let seen = rig.get(&rig.via_proxy, "k").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(seen.status, StatusCode::OK);

    let started = Instant::now();
    rig.get(&rig.via_proxy, "k").await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(300));

    let injected: Vec<_> = rig.proxy.requests().iter().map(|r| r.injected).collect();
    assert_eq!(injected, [Some("respond_with"), Some("delay"), None]);
}

#[tokio::test]
async fn complete_200_with_error_then_real_complete() {
    let rig = Rig::start().await;
    let key = "multi";
    let data = object(64 * 1024);
    let seen = rig
        .exchange(
            CreateMultipartUpload::new(BUCKET, key)
                .build(&rig.via_proxy)
                .unwrap(),
        )
        .await
        .unwrap();
    let created = parse_create_multipart_upload(seen.status, &seen.headers, &seen.body).unwrap();

    let part = UploadPart {
        bucket: BUCKET.into(),
        key: key.into(),
        upload_id: created.upload_id.clone(),
        part_number: PartNumber::new(1).unwrap(),
        body: RequestBody::Bytes(Bytes::from(data.clone())),
        checksum: None,
        content_md5: None,
    };
    let seen = rig
        .exchange(part.build(&rig.via_proxy).unwrap())
        .await
        .unwrap();
    let uploaded = parse_upload_part(seen.status, &seen.headers, &seen.body).unwrap();

    rig.proxy.complete_200_with_error("InternalError", 1);
    let complete = CompleteMultipartUpload {
        bucket: BUCKET.into(),
        key: key.into(),
        upload_id: created.upload_id.clone(),
        parts: vec![CompletedPart {
            part_number: PartNumber::new(1).unwrap(),
            etag: uploaded.etag.clone(),
            checksum: None,
        }],
        full_object_checksum: None,
    };
    let seen = rig
        .exchange(complete.build(&rig.via_proxy).unwrap())
        .await
        .unwrap();
    assert_eq!(seen.status, StatusCode::OK);
    let body = String::from_utf8_lossy(&seen.body);
    assert!(body.contains("<Error><Code>InternalError</Code>"), "{body}");
    let error = parse_complete_multipart_upload(seen.status, &seen.headers, &seen.body)
        .expect_err("a 200 carrying <Error> is an error");
    assert_eq!(error.class(), ErrorClass::Transient);
    assert_eq!(
        rig.stored(key).await,
        None,
        "Complete must not have been forwarded"
    );

    let seen = rig
        .exchange(complete.build(&rig.via_proxy).unwrap())
        .await
        .unwrap();
    parse_complete_multipart_upload(seen.status, &seen.headers, &seen.body).unwrap();
    assert_eq!(rig.stored(key).await, Some(data));

    let log = rig.proxy.requests();
    let parts: Vec<_> = log.iter().filter_map(|r| r.part_number()).collect();
    assert_eq!(parts, [1]);
    let completes: Vec<_> = log
        .iter()
        .filter(|r| r.method == Method::POST && r.query_param("uploadId").is_some())
        .map(|r| r.injected)
        .collect();
    assert_eq!(completes, [Some("complete_200_with_error"), None]);
}

#[tokio::test]
async fn matchers_select_part_numbers() {
    let rig = Rig::start().await;
    let seen = rig
        .exchange(
            CreateMultipartUpload::new(BUCKET, "m")
                .build(&rig.via_proxy)
                .unwrap(),
        )
        .await
        .unwrap();
    let created = parse_create_multipart_upload(seen.status, &seen.headers, &seen.body).unwrap();
    let rule = rig
        .proxy
        .respond_with(Matcher::upload_part_number(2), 500, "InternalError", ALWAYS);
    let mut statuses = Vec::new();
    for n in 1..=3 {
        let part = UploadPart {
            bucket: BUCKET.into(),
            key: "m".into(),
            upload_id: created.upload_id.clone(),
            part_number: PartNumber::new(n).unwrap(),
            body: RequestBody::Bytes(Bytes::from_static(b"part")),
            checksum: None,
            content_md5: None,
        };
        let seen = rig
            .exchange(part.build(&rig.via_proxy).unwrap())
            .await
            .unwrap();
        statuses.push(seen.status.as_u16());
    }
    assert_eq!(statuses, [200, 500, 200]);
    assert_eq!(rig.proxy.fired(rule), 1);
    rig.proxy.remove(rule);
    rig.proxy.clear_requests();
    assert!(rig.proxy.requests().is_empty());
}

#[tokio::test]
async fn bandwidth_limit_holds_across_connections_and_directions() {
    let rig = Rig::start().await;
    let data = object(2 << 20);
    rig.put(&rig.direct, "down", &data).await.unwrap();
    const RATE: u64 = 4 << 20;
    rig.proxy.limit_bandwidth(RATE);
    let started = Instant::now();
    // Two uploads and a download at once, sharing the one limit.
    let (a, b, c) = tokio::join!(
        rig.put(&rig.via_proxy, "up1", &data),
        rig.put(&rig.via_proxy, "up2", &data),
        rig.get(&rig.via_proxy, "down"),
    );
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(a.unwrap().status, StatusCode::OK);
    assert_eq!(b.unwrap().status, StatusCode::OK);
    let c = c.unwrap();
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(c.body, data);
    let moved = rig.proxy.body_bytes();
    let total = moved.to_server + moved.to_client;
    assert_eq!(total, 3 * data.len() as u64);
    let rate = total as f64 / elapsed;
    // Paced, never bursting above the limit (a little slack for timer granularity), and
    // not far below it either.
    assert!(
        rate <= RATE as f64 * 1.1,
        "{total} bytes in {elapsed:.2} s: {rate:.0} B/s"
    );
    assert!(
        rate >= RATE as f64 * 0.5,
        "{total} bytes in {elapsed:.2} s: {rate:.0} B/s"
    );

    // `0` removes the limit: under the 64 KiB/s set first, the 2 MiB would take 32 s.
    rig.proxy.limit_bandwidth(64 << 10);
    rig.proxy.limit_bandwidth(0);
    let started = Instant::now();
    rig.get(&rig.via_proxy, "down").await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}
