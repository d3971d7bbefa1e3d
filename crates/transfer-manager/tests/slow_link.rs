//! Transfers over a link slower than a part per `read_timeout`: timeouts measure silence
//! (no response headers, no body bytes moving), never how long a part takes to cross.
//!
//! The case is a 64 MiB upload and download at 1 MiB/s with the default 60 s
//! timeout; scaled down to stay quick: 24 MiB at 2 MiB/s with a 3 s `read_timeout`. With the
//! default part size (8 MiB) and concurrency, the three parts (or ranges) share the link,
//! so each takes about 12 s to cross: four times the timeout.

mod common;

use std::time::Duration;

use common::*;
use s3_testkit::FaultProxy;
use transfer_manager::TransferManager;

const SIZE: u64 = 24 * MIB;
const RATE: u64 = 2 * MIB;
const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// A manager with the library's default part size and concurrency, talking to `endpoint`
/// with a short `read_timeout`.
fn slow_link_manager(
    server: &s3_testkit::S3sFsServer,
    endpoint: &str,
    state: &std::path::Path,
) -> TransferManager {
    manager_with(
        endpoint,
        server.access_key(),
        server.secret_key(),
        server.region(),
        state,
        |c| {
            let defaults = transfer_manager::Config::new("us-east-1");
            c.part_size_bytes = defaults.part_size_bytes;
            c.multipart_threshold_bytes = defaults.multipart_threshold_bytes;
            c.max_in_flight_per_upload = defaults.max_in_flight_per_upload;
            c.max_in_flight_per_download = defaults.max_in_flight_per_download;
            c.read_timeout = READ_TIMEOUT;
            // Nothing here should time out: a few attempts are plenty, and a regression
            // fails quickly.
            c.retry.max_attempts = 3;
        },
    )
}

async fn setup() -> (s3_testkit::S3sFsServer, FaultProxy, tempfile::TempDir) {
    let server = s3_testkit::start_s3s_fs().await;
    server.create_bucket("bucket").unwrap();
    let proxy = FaultProxy::start(&server.endpoint()).await;
    // Set before the first connection: connections accepted under a limit get small
    // receive buffers.
    proxy.limit_bandwidth(RATE);
    (server, proxy, tempfile::tempdir().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_over_a_link_slower_than_a_part_per_timeout_completes() {
    let (server, proxy, dir) = setup().await;
    let src = random_file(dir.path(), "src", SIZE, 31);
    let tm = slow_link_manager(&server, &proxy.endpoint(), &dir.path().join("state"));
    let out = upload(&tm, "bucket", "k", &src)
        .await
        .expect("the upload completes");
    assert_eq!(out.bytes_resent, 0, "no attempt timed out: {out:?}");
    assert!(proxy.body_bytes().to_server >= SIZE);

    // Check the stored object directly.
    let direct = slow_link_manager(&server, &server.endpoint(), &dir.path().join("state2"));
    let dest = dir.path().join("dest");
    download(&direct, "bucket", "k", &dest).await.unwrap();
    assert_eq!(sha256(&dest), sha256(&src));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_over_a_link_slower_than_a_range_per_timeout_completes() {
    let (server, proxy, dir) = setup().await;
    let src = random_file(dir.path(), "src", SIZE, 32);
    let direct = slow_link_manager(&server, &server.endpoint(), &dir.path().join("state2"));
    upload(&direct, "bucket", "k", &src).await.unwrap();

    let tm = slow_link_manager(&server, &proxy.endpoint(), &dir.path().join("state"));
    let dest = dir.path().join("dest");
    let out = download(&tm, "bucket", "k", &dest)
        .await
        .expect("the download completes");
    assert_eq!(out.bytes_resent, 0, "no attempt timed out: {out:?}");
    assert!(proxy.body_bytes().to_client >= SIZE);
    assert_eq!(sha256(&dest), sha256(&src));
}

/// On a slow link, progress moves while a part or range is on its way (`bytes_moving`),
/// long before the first one completes (`bytes_done`).
#[tokio::test]
async fn progress_moves_within_a_part() {
    for upload_first in [true, false] {
        let server = s3_testkit::start_s3s_fs().await;
        server.create_bucket("bucket").unwrap();
        let proxy = s3_testkit::FaultProxy::start(&server.endpoint()).await;
        let dir = tempfile::tempdir().unwrap();
        let src = common::random_file(dir.path(), "src", 16 * common::MIB, 7);
        let tm = common::manager_with(
            &proxy.endpoint(),
            server.access_key(),
            server.secret_key(),
            server.region(),
            &dir.path().join("state"),
            |c| {
                c.part_size_bytes = 8 * common::MIB;
                c.set_max_in_flight(1);
            },
        );
        if !upload_first {
            common::upload(&tm, "bucket", "k", &src).await.unwrap();
        }
        proxy.limit_bandwidth(2 * common::MIB);
        let h = if upload_first {
            tm.upload_file("bucket", "k", &src).await.unwrap()
        } else {
            tm.download_file("bucket", "k", dir.path().join("dest"))
                .await
                .unwrap()
        };
        let mut rx = h.progress();
        let seen = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            loop {
                let p = *rx.borrow_and_update();
                if p.bytes_moving > 0 && p.bytes_done == 0 {
                    return p;
                }
                rx.changed().await.expect("the transfer ended first");
            }
        })
        .await
        .expect("no progress within a part");
        assert!(seen.bytes_moving <= 8 * common::MIB, "{seen:?}");
        proxy.limit_bandwidth(0);
        h.cancel().unwrap();
        let _ = h.join().await;
    }
}
