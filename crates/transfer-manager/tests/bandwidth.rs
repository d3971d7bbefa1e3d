//! The bandwidth cap (`Config::bandwidth_limit_bytes_per_sec`, `--bwlimit`): one bucket
//! shared by every request of a manager, in both directions together, measured by the
//! bytes the fault proxy passed.

mod common;

use std::time::Instant;

use common::*;
use s3_testkit::FaultProxy;

const LIMIT: u64 = 8 * MIB;
/// Each way; the two together take about 30 s at the limit.
const SIZE: u64 = 120 * MIB;

/// An upload and a download at once, under one 8 MiB/s limit: together they move
/// 8 MiB/s within 5% over about 30 s, and both copies are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_and_a_download_share_the_limit_within_five_percent() {
    let server = s3_testkit::start_s3s_fs().await;
    server.create_bucket("bucket").unwrap();
    let proxy = FaultProxy::start(&server.endpoint()).await;
    let dir = tempfile::tempdir().unwrap();
    let manager = |endpoint: &str, state: &str, limit: Option<u64>| {
        manager_with(
            endpoint,
            server.access_key(),
            server.secret_key(),
            server.region(),
            &dir.path().join(state),
            |c| c.bandwidth_limit_bytes_per_sec = limit,
        )
    };
    // The object to download, put there directly and at full speed.
    let down = random_file(dir.path(), "down", SIZE, 41);
    let direct = manager(&server.endpoint(), "direct", None);
    upload(&direct, "bucket", "down", &down).await.unwrap();

    let capped = manager(&proxy.endpoint(), "capped", Some(LIMIT));
    let up = random_file(dir.path(), "up", SIZE, 42);
    let dest = dir.path().join("dest");
    let before = proxy.body_bytes();
    let started = Instant::now();
    let (sent, got) = tokio::join!(
        upload(&capped, "bucket", "up", &up),
        download(&capped, "bucket", "down", &dest),
    );
    let elapsed = started.elapsed().as_secs_f64();
    sent.unwrap();
    got.unwrap();
    let after = proxy.body_bytes();
    let moved = (after.to_server - before.to_server) + (after.to_client - before.to_client);
    assert!(
        moved >= 2 * SIZE,
        "{moved} bytes passed for {} sent",
        2 * SIZE
    );
    let rate = moved as f64 / elapsed;
    let off = (rate - LIMIT as f64) / LIMIT as f64;
    eprintln!(
        "{moved} bytes in {elapsed:.1} s: {:.3} MiB/s under a limit of 8 MiB/s ({:+.2}%)",
        rate / MIB as f64,
        off * 100.0
    );
    assert!(
        off.abs() <= 0.05,
        "{:.2} MiB/s over {elapsed:.1} s for a limit of 8 MiB/s ({:+.1}%)",
        rate / MIB as f64,
        off * 100.0
    );
    assert_eq!(sha256(&dest), sha256(&down));
    let check = dir.path().join("check");
    download(&direct, "bucket", "up", &check).await.unwrap();
    assert_eq!(sha256(&check), sha256(&up));
}

/// A limit too small to keep requests alive is refused when the manager is made.
#[test]
fn a_limit_below_64_kib_per_second_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = transfer_manager::Config::new("us-east-1");
    c.endpoint_url = Some("http://127.0.0.1:9".into());
    c.state = transfer_manager::StateStore::Dir(dir.path().join("state"));
    c.bandwidth_limit_bytes_per_sec = Some(1024);
    let err = transfer_manager::TransferManager::new(c).unwrap_err();
    assert_eq!(
        err.kind(),
        transfer_manager::ErrorKind::InvalidInput,
        "{err}"
    );
    assert!(err.to_string().contains("64KiB"), "{err}");
}
