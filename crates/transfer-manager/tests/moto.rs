//! Multipart semantics that s3s-fs lacks, against moto with SigV4 verification on:
//! abort on cancel (checked with ListMultipartUploads), If-Match 412 on a replaced
//! object, ListParts validation on resume, a missing bucket, and the listings and aborts
//! of `s3tm clean` and `s3tm cancel` retried through throttling and errors, and a
//! stream of unknown length that fails midway (its upload aborted).

mod common;

use std::time::Duration;

use common::*;
use s3_testkit::{ALWAYS, FaultProxy, Matcher, moto_or_skip};
use transfer_manager::{ErrorKind, PARTIAL_SUFFIX, TransferManager};

async fn setup(
    test: &str,
) -> Option<(
    s3_testkit::MotoServer,
    FaultProxy,
    tempfile::TempDir,
    TransferManager,
)> {
    let moto = moto_or_skip(test).await?;
    moto.create_bucket("bucket").await.unwrap();
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let dir = tempfile::tempdir().unwrap();
    let tm = manager_with(
        &proxy.endpoint(),
        moto.access_key(),
        moto.secret_key(),
        moto.region(),
        &dir.path().join("state"),
        |c| {
            c.set_max_in_flight(2);
        },
    );
    Some((moto, proxy, dir, tm))
}

#[tokio::test]
async fn cancel_aborts_the_multipart_upload_on_the_server() {
    let Some((_moto, proxy, dir, tm)) =
        setup("cancel_aborts_the_multipart_upload_on_the_server").await
    else {
        return;
    };
    proxy.delay(Matcher::upload_part(), Duration::from_millis(200), ALWAYS);
    let src = random_file(dir.path(), "src", 30 * MIB, 21);
    let h = tm.upload_file("bucket", "cancel me", &src).await.unwrap();
    wait_for_progress(&h, 5 * MIB).await;
    assert_eq!(
        tm.list_multipart_uploads("bucket", None)
            .await
            .unwrap()
            .len(),
        1
    );
    h.cancel().unwrap();
    assert_eq!(h.join().await.unwrap_err().kind(), ErrorKind::Cancelled);
    assert!(
        tm.list_multipart_uploads("bucket", None)
            .await
            .unwrap()
            .is_empty(),
        "the upload was not aborted"
    );
    assert!(tm.list_resumable().unwrap().0.is_empty());
}

#[tokio::test]
async fn cancel_of_a_saved_upload_from_another_manager_aborts_it() {
    let Some((moto, proxy, dir, tm)) =
        setup("cancel_of_a_saved_upload_from_another_manager_aborts_it").await
    else {
        return;
    };
    proxy.delay(Matcher::upload_part(), Duration::from_millis(200), ALWAYS);
    let src = random_file(dir.path(), "src", 30 * MIB, 22);
    let h = tm.upload_file("bucket", "k", &src).await.unwrap();
    wait_for_progress(&h, 5 * MIB).await;
    h.pause().await.unwrap();
    let id = h.id().clone();
    drop((h, tm));
    let tm2 = manager(
        &proxy.endpoint(),
        moto.access_key(),
        moto.secret_key(),
        moto.region(),
        &dir.path().join("state"),
    );
    tm2.cancel_saved(&id).await.unwrap();
    assert!(
        tm2.list_multipart_uploads("bucket", None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(tm2.list_resumable().unwrap().0.is_empty());
}

/// An upload left paused on the server by a manager that is gone, as `s3tm clean` and
/// `s3tm cancel` find them.
async fn left_behind(
    moto: &s3_testkit::MotoServer,
    proxy: &FaultProxy,
    dir: &tempfile::TempDir,
    tm: TransferManager,
    seed: u64,
) -> (transfer_manager::TransferId, TransferManager) {
    proxy.delay(Matcher::upload_part(), Duration::from_millis(200), ALWAYS);
    let src = random_file(dir.path(), "src", 30 * MIB, seed);
    let h = tm.upload_file("bucket", "k", &src).await.unwrap();
    wait_for_progress(&h, 5 * MIB).await;
    h.pause().await.unwrap();
    let id = h.id().clone();
    drop((h, tm));
    proxy.clear();
    let tm = manager(
        &proxy.endpoint(),
        moto.access_key(),
        moto.secret_key(),
        moto.region(),
        &dir.path().join("state"),
    );
    (id, tm)
}

/// The one multipart upload in the bucket, as `s3tm clean` lists it.
async fn the_one_upload(tm: &TransferManager) -> transfer_manager::MultipartUploadInfo {
    let uploads = tm.list_multipart_uploads("bucket", None).await.unwrap();
    let [u] = uploads.as_slice() else {
        panic!("one upload expected: {uploads:?}");
    };
    u.clone()
}

/// The listing behind `s3tm clean` is retried as a transfer's requests are: a throttled,
/// failing or cut ListMultipartUploads is sent again.
#[tokio::test]
async fn clean_lists_through_throttling_and_server_errors() {
    let Some((moto, proxy, dir, tm)) =
        setup("clean_lists_through_throttling_and_server_errors").await
    else {
        return;
    };
    let (_, tm) = left_behind(&moto, &proxy, &dir, tm, 27).await;
    let list = Matcher::method(http::Method::GET).query_param("uploads");
    let slow_down = proxy.respond_with(list.clone(), 503, "SlowDown", 1);
    let internal = proxy.respond_with(list.clone(), 500, "InternalError", 1);
    let lost = proxy.drop_response(list, 1);
    let uploads = tm.list_multipart_uploads("bucket", None).await.unwrap();
    let fired = [slow_down, internal, lost].map(|r| proxy.fired(r));
    assert_eq!(fired, [1, 1, 1]);
    assert_eq!(uploads.len(), 1, "{uploads:?}");
}

/// The abort behind `s3tm clean` is retried as a transfer's requests are: a throttled,
/// failing or cut AbortMultipartUpload is sent again.
#[tokio::test]
async fn clean_aborts_through_throttling_and_server_errors() {
    let Some((moto, proxy, dir, tm)) =
        setup("clean_aborts_through_throttling_and_server_errors").await
    else {
        return;
    };
    let (_, tm) = left_behind(&moto, &proxy, &dir, tm, 29).await;
    let u = the_one_upload(&tm).await;
    let slow_down = proxy.respond_with(Matcher::abort_multipart_upload(), 503, "SlowDown", 1);
    let internal = proxy.respond_with(Matcher::abort_multipart_upload(), 500, "InternalError", 1);
    // Cut before it reaches the server (a lost answer would make the retry NoSuchUpload).
    let cut = proxy.reset_after_request_bytes(Matcher::abort_multipart_upload(), 0, 1);
    tm.abort_multipart_upload("bucket", &u.key, &u.upload_id)
        .await
        .unwrap();
    let fired = [slow_down, internal, cut].map(|r| proxy.fired(r));
    assert_eq!(fired, [1, 1, 1]);
    assert!(
        tm.list_multipart_uploads("bucket", None)
            .await
            .unwrap()
            .is_empty(),
        "the upload was not aborted"
    );
}

/// An abort whose answer is lost after the server acted on it: the retry finds the upload
/// gone (NoSuchUpload), which means the first attempt did the job, not a failure.
#[tokio::test]
async fn an_abort_whose_answer_was_lost_is_done() {
    let Some((moto, proxy, dir, tm)) = setup("an_abort_whose_answer_was_lost_is_done").await else {
        return;
    };
    let (_, tm) = left_behind(&moto, &proxy, &dir, tm, 30).await;
    let u = the_one_upload(&tm).await;
    let lost = proxy.drop_response(Matcher::abort_multipart_upload(), 1);
    tm.abort_multipart_upload("bucket", &u.key, &u.upload_id)
        .await
        .unwrap();
    assert_eq!(proxy.fired(lost), 1);
    assert!(
        tm.list_multipart_uploads("bucket", None)
            .await
            .unwrap()
            .is_empty(),
        "the upload was not aborted"
    );
}

/// A listing that stays throttled still ends, once the throttling budget is spent.
#[tokio::test]
async fn a_listing_that_stays_throttled_fails_after_the_retry_budget() {
    let Some((moto, proxy, dir, _)) =
        setup("a_listing_that_stays_throttled_fails_after_the_retry_budget").await
    else {
        return;
    };
    let tm = manager_with(
        &proxy.endpoint(),
        moto.access_key(),
        moto.secret_key(),
        moto.region(),
        &dir.path().join("state"),
        |c| c.retry.max_throttled_attempts = 4,
    );
    let list = Matcher::method(http::Method::GET).query_param("uploads");
    let slow_down = proxy.respond_with(list, 503, "SlowDown", ALWAYS);
    let err = tm.list_multipart_uploads("bucket", None).await.unwrap_err();
    assert_eq!(proxy.fired(slow_down), 4);
    assert_eq!(err.kind(), ErrorKind::Remote, "{err}");
    assert!(err.to_string().contains("SlowDown"), "{err}");
    assert!(err.to_string().contains("after 4 attempts"), "{err}");
}

/// `s3tm cancel` of a saved upload aborts it even when the first abort is throttled.
#[tokio::test]
async fn cancel_of_a_saved_upload_aborts_it_through_throttling() {
    let Some((moto, proxy, dir, tm)) =
        setup("cancel_of_a_saved_upload_aborts_it_through_throttling").await
    else {
        return;
    };
    let (id, tm) = left_behind(&moto, &proxy, &dir, tm, 28).await;
    let slow_down = proxy.respond_with(Matcher::abort_multipart_upload(), 503, "SlowDown", 1);
    tm.cancel_saved(&id).await.unwrap();
    assert_eq!(proxy.fired(slow_down), 1);
    assert!(
        tm.list_multipart_uploads("bucket", None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(tm.list_resumable().unwrap().0.is_empty());
}

#[tokio::test]
async fn replaced_object_gets_412_and_object_changed() {
    let Some((_moto, proxy, dir, tm)) = setup("replaced_object_gets_412_and_object_changed").await
    else {
        return;
    };
    // Eight 5 MiB parts, so that ranges are left when the pause settles (two in flight).
    let v1 = random_file(dir.path(), "v1", 40 * MIB, 23);
    let v2 = random_file(dir.path(), "v2", 40 * MIB, 24);
    upload(&tm, "bucket", "obj", &v1).await.unwrap();
    proxy.delay(
        Matcher::method(http::Method::GET),
        Duration::from_millis(200),
        ALWAYS,
    );
    let dest = dir.path().join("dest");
    let h = tm.download_file("bucket", "obj", &dest).await.unwrap();
    wait_for_progress(&h, 5 * MIB).await;
    h.pause().await.unwrap();
    proxy.clear();
    upload(&tm, "bucket", "obj", &v2).await.unwrap();
    proxy.clear_requests();
    h.resume().unwrap();
    let err = h.join().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ObjectChanged, "{err}");
    let statuses: Vec<Option<u16>> = proxy.requests().iter().map(|r| r.status).collect();
    assert!(statuses.contains(&Some(412)), "moto answered {statuses:?}");
    assert!(!dest.exists());
    assert!(!dir.path().join(format!("dest{PARTIAL_SUFFIX}")).exists());
}

#[tokio::test]
async fn resume_validates_parts_with_list_parts_and_downloads_verify() {
    let Some((moto, proxy, dir, tm)) =
        setup("resume_validates_parts_with_list_parts_and_downloads_verify").await
    else {
        return;
    };
    proxy.delay(Matcher::upload_part(), Duration::from_millis(200), ALWAYS);
    let src = random_file(dir.path(), "src", 24 * MIB, 25);
    let h = tm.upload_file("bucket", "k", &src).await.unwrap();
    wait_for_progress(&h, 10 * MIB).await;
    h.pause().await.unwrap();
    let id = h.id().clone();
    drop((h, tm));
    proxy.clear();
    proxy.clear_requests();
    let tm = manager(
        &proxy.endpoint(),
        moto.access_key(),
        moto.secret_key(),
        moto.region(),
        &dir.path().join("state"),
    );
    let out = tm.resume(&id).await.unwrap().join().await.unwrap();
    assert!(out.bytes_resumed >= 10 * MIB);
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.method == http::Method::GET && r.query_param("uploadId").is_some()),
        "no ListParts on resume"
    );
    let dest = dir.path().join("dest");
    let down = download(&tm, "bucket", "k", &dest).await.unwrap();
    assert_eq!(sha256(&dest), sha256(&src));
    assert!(
        !matches!(down.verified, transfer_manager::Verified::Unverified { .. }),
        "{:?}",
        down.verified
    );
}

#[tokio::test]
async fn upload_to_a_missing_bucket_is_a_clear_not_found() {
    let Some((_moto, _proxy, dir, tm)) =
        setup("upload_to_a_missing_bucket_is_a_clear_not_found").await
    else {
        return;
    };
    let src = random_file(dir.path(), "src", 1000, 26);
    let err = upload(&tm, "no-such-bucket", "k", &src).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");
}

/// A part that reached the server just before the process died, its answer lost with it,
/// is in no checkpoint; the resumed upload finds it with ListParts, hashes the source
/// range, and keeps it because its ETag matches, instead of sending it again.
#[tokio::test]
async fn a_part_stored_but_unanswered_before_a_crash_is_kept_not_sent_again() {
    const TEST: &str = "a_part_stored_but_unanswered_before_a_crash_is_kept_not_sent_again";
    if let Ok(endpoint) = std::env::var("S3TM_TEST_CHILD_ENDPOINT") {
        let var = |name: &str| std::env::var(name).unwrap();
        let tm = manager_with(
            &endpoint,
            &var("S3TM_TEST_CHILD_ACCESS"),
            &var("S3TM_TEST_CHILD_SECRET"),
            &var("S3TM_TEST_CHILD_REGION"),
            std::path::Path::new(&var("S3TM_TEST_CHILD_STATE")),
            |c| c.set_max_in_flight(1),
        );
        let src = var("S3TM_TEST_CHILD_SRC");
        let h = tm.upload_file("bucket", "k", &src).await.unwrap();
        let _ = h.join().await;
        panic!("the child should have been killed before finishing");
    }
    let Some((moto, proxy, dir, tm)) = setup(TEST).await else {
        return;
    };
    // Part 3 reaches moto every time, and its answer never comes back.
    let lost = proxy.drop_response(Matcher::upload_part_number(3), ALWAYS);
    let src = random_file(dir.path(), "src", 20 * MIB, 31);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture"])
        .env("S3TM_TEST_CHILD_ENDPOINT", proxy.endpoint())
        .env("S3TM_TEST_CHILD_STATE", dir.path().join("state"))
        .env("S3TM_TEST_CHILD_SRC", &src)
        .env("S3TM_TEST_CHILD_ACCESS", moto.access_key())
        .env("S3TM_TEST_CHILD_SECRET", moto.secret_key())
        .env("S3TM_TEST_CHILD_REGION", moto.region())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Parts 1, 2 and 4 recorded, and a second attempt at part 3, which means moto
    // answered the first (it has part 3 whole).
    let recorded = |tm: &TransferManager| {
        let (saved, _) = tm.list_resumable().unwrap();
        saved.first().map_or(0, |t| t.bytes_done)
    };
    tokio::time::timeout(Duration::from_secs(60), async {
        while proxy.fired(lost) < 2 || recorded(&tm) < 15 * MIB {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the child ended before part 3 was sent"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("part 3 was never sent twice, or parts 1, 2 and 4 never recorded");
    child.kill().unwrap();
    child.wait().unwrap();
    proxy.clear();
    proxy.clear_requests();

    let (saved, _) = tm.list_resumable().unwrap();
    let [t] = saved.as_slice() else {
        panic!("one saved transfer expected: {saved:?}");
    };
    assert_eq!(
        t.bytes_done,
        15 * MIB,
        "parts 1, 2 and 4 are recorded, 3 is not"
    );
    let out = tm.resume(&t.id).await.unwrap().join().await.unwrap();
    let sent: Vec<u32> = proxy
        .requests()
        .iter()
        .filter(|r| r.method == http::Method::PUT)
        .filter_map(|r| r.part_number())
        .collect();
    assert_eq!(
        sent,
        Vec::<u32>::new(),
        "part 3 is on the server: nothing is sent"
    );
    assert_eq!(out.bytes_resumed, 20 * MIB);
    assert_eq!(out.bytes_transferred, 0);
    let dest = dir.path().join("dest");
    download(&tm, "bucket", "k", &dest).await.unwrap();
    assert_eq!(sha256(&dest), sha256(&src));
}

/// Yields `ok` bytes, then fails.
struct Failing {
    ok: usize,
}

impl tokio::io::AsyncRead for Failing {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.ok == 0 {
            return std::task::Poll::Ready(Err(std::io::Error::other("the producer crashed")));
        }
        let n = self.ok.min(buf.remaining()).min(100_000);
        buf.put_slice(&vec![9u8; n]);
        self.ok -= n;
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_stream_that_fails_midway_aborts_its_multipart_upload() {
    let Some((_moto, proxy, _dir, tm)) =
        setup("a_stream_that_fails_midway_aborts_its_multipart_upload").await
    else {
        return;
    };
    let err = tm
        .upload_stream(
            "bucket",
            "broken",
            Failing {
                ok: 12 * MIB as usize,
            },
            None,
        )
        .await
        .unwrap()
        .join()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the producer crashed"), "{err}");
    assert_eq!(err.kind(), ErrorKind::LocalIo, "{err}");
    assert!(!err.is_resumable(), "{err}");
    let mut parts = parts_sent(&proxy);
    parts.sort_unstable();
    assert_eq!(parts, vec![1, 2], "the two whole parts read went first");
    let aborts = proxy
        .requests()
        .iter()
        .filter(|r| r.method == http::Method::DELETE && r.query.contains("uploadId"))
        .count();
    assert_eq!(aborts, 1, "one AbortMultipartUpload");
    assert!(
        tm.list_multipart_uploads("bucket", None)
            .await
            .unwrap()
            .is_empty(),
        "the upload was left on the server"
    );
    assert!(tm.list_resumable().unwrap().0.is_empty());
}

/// An upload no checkpoint records (here a stream) cannot be resumed or cancelled later,
/// so cancelling it aborts its multipart upload even under `CancelPolicy::Retain`, which
/// keeps the uploads of saved transfers (before, it was left on the server).
#[tokio::test]
async fn cancelling_a_stream_aborts_its_upload_whatever_the_cancel_policy() {
    let Some(moto) =
        moto_or_skip("cancelling_a_stream_aborts_its_upload_whatever_the_cancel_policy").await
    else {
        return;
    };
    moto.create_bucket("bucket").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tm = manager_with(
        &moto.endpoint(),
        moto.access_key(),
        moto.secret_key(),
        moto.region(),
        &dir.path().join("state"),
        |c| c.cancel_policy = transfer_manager::CancelPolicy::Retain,
    );
    // 12 MiB now, then a producer that stays silent: the upload is under way.
    let (mut producer, reader) = tokio::io::duplex(1 << 20);
    let h = tm
        .upload_stream("bucket", "held", reader, None)
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut producer, &vec![7u8; 12 * MIB as usize])
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tm
        .list_multipart_uploads("bucket", None)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "no upload started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    h.cancel().unwrap();
    let err = h.join().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(
        tm.list_multipart_uploads("bucket", None)
            .await
            .unwrap()
            .is_empty(),
        "the stream's upload was left on the server"
    );
    drop(producer);
}
