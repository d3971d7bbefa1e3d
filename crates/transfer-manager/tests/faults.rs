//! Transfers through a proxy that breaks the traffic: they complete within the retry
//! budget, or fail fast and clearly when the failure is permanent.

mod common;

use std::time::{Duration, Instant};

use common::*;
use s3_testkit::{ALWAYS, FaultProxy, Matcher};
use transfer_manager::ErrorKind;

async fn setup() -> (s3_testkit::S3sFsServer, FaultProxy, tempfile::TempDir) {
    let server = s3_testkit::start_s3s_fs().await;
    server.create_bucket("bucket").unwrap();
    let proxy = FaultProxy::start(&server.endpoint()).await;
    (server, proxy, tempfile::tempdir().unwrap())
}

#[tokio::test]
async fn upload_and_download_survive_resets_truncations_throttling_and_errors() {
    let (server, proxy, dir) = setup().await;
    let tm = manager(
        &proxy.endpoint(),
        server.access_key(),
        server.secret_key(),
        server.region(),
        &dir.path().join("state"),
    );
    let src = random_file(dir.path(), "src", 40 * MIB, 11);

    let slow_down = proxy.respond_with(Matcher::upload_part(), 503, "SlowDown", 5);
    let internal = proxy.respond_with(Matcher::create_multipart_upload(), 500, "InternalError", 2);
    let cut = proxy.reset_after_request_bytes(Matcher::upload_part_number(3), 1 << 20, 2);
    let lost = proxy.drop_response(Matcher::upload_part_number(5), 1);
    let bad_complete = proxy.complete_200_with_error("InternalError", 1);
    let out = upload(&tm, "bucket", "k", &src).await.unwrap();
    for (name, rule, want) in [
        ("503", slow_down, 5),
        ("500", internal, 2),
        ("cut", cut, 2),
        ("lost", lost, 1),
        ("200+Error", bad_complete, 1),
    ] {
        assert_eq!(
            proxy.fired(rule),
            want,
            "{name} fault did not fire as planned"
        );
    }
    assert!(
        out.bytes_resent > 0,
        "failed part attempts are counted as re-sent"
    );

    let reset = proxy.reset_after_response_bytes(Matcher::ranged_get(), 100_000, 3);
    let short = proxy.truncate_response_body(Matcher::ranged_get(), 4321, 2);
    let busy = proxy.respond_with(Matcher::method(http::Method::GET), 503, "SlowDown", 3);
    let dest = dir.path().join("dest");
    download(&tm, "bucket", "k", &dest).await.unwrap();
    assert_eq!(proxy.fired(reset), 3);
    assert_eq!(proxy.fired(short), 2);
    assert_eq!(proxy.fired(busy), 3);
    assert_eq!(sha256(&dest), sha256(&src));
}

#[tokio::test]
async fn permanent_access_denied_fails_fast_with_the_servers_code() {
    let (server, proxy, dir) = setup().await;
    let tm = manager(
        &proxy.endpoint(),
        server.access_key(),
        server.secret_key(),
        server.region(),
        &dir.path().join("state"),
    );
    let src = random_file(dir.path(), "src", 12 * MIB, 12);
    proxy.respond_with(Matcher::any(), 403, "AccessDenied", ALWAYS);
    let started = Instant::now();
    let err = upload(&tm, "bucket", "k", &src).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Denied, "{err}");
    assert!(err.to_string().contains("AccessDenied"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // Only the first request was tried: a 403 is not retried.
    assert_eq!(
        proxy.requests().len(),
        1,
        "{:?}",
        proxy
            .requests()
            .iter()
            .map(|r| &r.query)
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn unreachable_endpoint_fails_with_a_network_error_after_retries() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tm = manager_with(
        &format!("http://127.0.0.1:{port}"),
        "AK",
        "SK",
        "us-east-1",
        &dir.path().join("state"),
        |c| {
            c.retry.max_attempts = 3;
        },
    );
    let src = random_file(dir.path(), "src", 1000, 13);
    let err = upload(&tm, "bucket", "k", &src).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    assert!(err.to_string().contains("after 3 attempts"), "{err}");
}
