//! Parts larger than the memory budget are streamed from the file (a first pass computes
//! the checksum, a second sends the bytes) and still arrive whole and exact; a file that
//! changes between the two passes fails the part instead of sending mixed bytes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use s3_testkit::FaultProxy;
use transfer_manager::{ChecksumAlgorithm, ErrorKind, TransferManager};

const BUDGET: u64 = 8 * MIB;
const PART: u64 = 12 * MIB;

async fn setup() -> (s3_testkit::S3sFsServer, FaultProxy, tempfile::TempDir) {
    let server = s3_testkit::start_s3s_fs().await;
    server.create_bucket("bucket").unwrap();
    let proxy = FaultProxy::start(&server.endpoint()).await;
    (server, proxy, tempfile::tempdir().unwrap())
}

fn budget_manager(
    server: &s3_testkit::S3sFsServer,
    proxy: &FaultProxy,
    dir: &tempfile::TempDir,
    checksum: Option<ChecksumAlgorithm>,
) -> TransferManager {
    manager_with(
        &proxy.endpoint(),
        server.access_key(),
        server.secret_key(),
        server.region(),
        &dir.path().join("state"),
        |c| {
            c.part_size_bytes = PART;
            c.max_memory_bytes = BUDGET;
            c.checksum = checksum;
        },
    )
}

#[tokio::test]
async fn parts_larger_than_the_budget_are_streamed_whole_and_exact() {
    let (server, proxy, dir) = setup().await;
    let tm = budget_manager(&server, &proxy, &dir, Some(ChecksumAlgorithm::Crc32));
    let src = random_file(dir.path(), "src", 30 * MIB, 41);
    upload(&tm, "bucket", "k", &src).await.unwrap();

    // Each part crossed once, whole: 12 + 12 + 6 MiB, with the length announced (plus
    // the small XML body of Complete).
    let sent = proxy.body_bytes().to_server;
    assert!((30 * MIB..30 * MIB + 64 * 1024).contains(&sent), "{sent}");
    let mut parts: Vec<(u32, u64)> = proxy
        .requests()
        .iter()
        .filter(|r| r.method == http::Method::PUT && r.status == Some(200))
        .filter_map(|r| {
            let len = r.header("content-length")?.parse().ok()?;
            Some((r.part_number()?, len))
        })
        .collect();
    parts.sort_unstable();
    assert_eq!(parts, vec![(1, PART), (2, PART), (3, 6 * MIB)]);

    let dest = dir.path().join("dest");
    download(&tm, "bucket", "k", &dest).await.unwrap();
    assert_eq!(sha256(&dest), sha256(&src));
}

#[tokio::test]
async fn a_streamed_part_whose_bytes_change_after_the_checksum_pass_fails() {
    change_while_sending(Some(ChecksumAlgorithm::Crc32)).await;
}

#[tokio::test]
async fn without_checksums_a_streamed_part_is_still_checked() {
    change_while_sending(None).await;
}

async fn change_while_sending(checksum: Option<ChecksumAlgorithm>) {
    let (server, proxy, dir) = setup().await;
    // Slow enough to change the file while the first part is on its way.
    proxy.limit_bandwidth(8 * MIB);
    let tm = budget_manager(&server, &proxy, &dir, checksum);
    let src = random_file(dir.path(), "src", 24 * MIB, 42);
    let modified = std::fs::metadata(&src).unwrap().modified().unwrap();
    let handle = tm.upload_file("bucket", "k", &src).await.unwrap();

    let started = Instant::now();
    while proxy.body_bytes().to_server < MIB {
        assert!(started.elapsed() < Duration::from_secs(20), "no bytes sent");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // New bytes near the end of part 1, not read yet by the sending pass; same size,
    // inode and modification time. The ctime the fingerprint watches, checked around
    // each chunk read, tells first here; the checksum of the sending pass against the
    // first pass's is what tells where a filesystem keeps no ctime.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
        f.write_all_at(&vec![0x5a; 256 << 10], 11 * MIB).unwrap();
        f.set_modified(modified).unwrap();
    }
    assert!(proxy.body_bytes().to_server < 10 * MIB, "too late to test");

    let err = handle.join().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SourceChanged, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("no longer match") || msg.contains("ctime"),
        "{msg}"
    );
}
