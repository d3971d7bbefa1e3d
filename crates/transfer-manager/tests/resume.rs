//! Pause, resume, crash and change detection against an s3s-fs server, watched through
//! the fault proxy's request log.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use s3_testkit::{ALWAYS, FaultProxy, Matcher};
use transfer_manager::{Direction, ErrorKind, PARTIAL_SUFFIX, TransferManager};

struct Env {
    server: s3_testkit::S3sFsServer,
    proxy: FaultProxy,
    dir: tempfile::TempDir,
}

impl Env {
    async fn new() -> Env {
        let server = s3_testkit::start_s3s_fs().await;
        server.create_bucket("bucket").unwrap();
        let proxy = FaultProxy::start(&server.endpoint()).await;
        Env {
            server,
            proxy,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn manager(&self, in_flight: usize) -> TransferManager {
        let s = &self.server;
        manager_with(
            &self.proxy.endpoint(),
            s.access_key(),
            s.secret_key(),
            s.region(),
            &self.state(),
            |c| {
                c.set_max_in_flight(in_flight);
            },
        )
    }

    fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }

    /// Uploads `src` to `bucket/k` from a manager of its own, pauses it once `bytes` are
    /// done, and drops that manager: what a process leaves behind when it stops.
    async fn paused_upload(
        &self,
        src: &std::path::Path,
        bytes: u64,
    ) -> transfer_manager::TransferId {
        let tm = self.manager(2);
        let h = tm.upload_file("bucket", "k", src).await.unwrap();
        wait_for_progress(&h, bytes).await;
        h.pause().await.unwrap();
        h.id().clone()
    }

    /// Slows every UploadPart and GET so a pause lands mid-transfer.
    fn slow(&self) {
        self.proxy
            .delay(Matcher::upload_part(), Duration::from_millis(150), ALWAYS);
        self.proxy.delay(
            Matcher::method(http::Method::GET),
            Duration::from_millis(150),
            ALWAYS,
        );
    }
}

#[tokio::test]
async fn pause_at_a_third_and_resume_in_the_same_process_sends_no_part_twice() {
    let env = Env::new().await;
    env.slow();
    let tm = env.manager(2);
    let src = random_file(env.dir.path(), "src", 60 * MIB, 1);
    let h = tm.upload_file("bucket", "paused", &src).await.unwrap();
    wait_for_progress(&h, 20 * MIB).await;
    h.pause().await.unwrap();
    let before: BTreeSet<u32> = parts_sent(&env.proxy).into_iter().collect();
    assert!(
        before.len() >= 4 && before.len() < 12,
        "paused after parts {before:?}"
    );
    let (saved, _) = tm.list_resumable().unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].state, transfer_manager::SavedState::Paused);
    assert_eq!(
        h.progress().borrow().bytes_done,
        saved[0].bytes_done,
        "progress lags the checkpoint"
    );
    assert_eq!(saved[0].bytes_done, before.len() as u64 * 5 * MIB);

    env.proxy.clear_requests();
    h.resume().unwrap();
    let out = h.join().await.unwrap();
    let after = parts_sent(&env.proxy);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "re-sent parts: before {before:?}, after {after:?}"
    );
    assert_eq!(before.len() + after.len(), 12);
    assert_eq!(out.bytes_total, 60 * MIB);

    let dest = env.dir.path().join("dest");
    download(&tm, "bucket", "paused", &dest).await.unwrap();
    assert_eq!(sha256(&dest), sha256(&src));
}

#[tokio::test]
async fn paused_transfer_resumes_from_a_new_manager_over_the_same_store() {
    let env = Env::new().await;
    env.slow();
    let src = random_file(env.dir.path(), "src", 40 * MIB, 2);
    let id = env.paused_upload(&src, 10 * MIB).await;
    let before: BTreeSet<u32> = parts_sent(&env.proxy).into_iter().collect();
    env.proxy.clear_requests();
    let tm = env.manager(4);
    let found = tm
        .find_resumable(Direction::Upload, "bucket", "k", &src)
        .unwrap()
        .expect("the paused upload is listed");
    assert_eq!(found.id, id);
    let out = tm.resume(&id).await.unwrap().join().await.unwrap();
    assert!(out.resumed);
    assert_eq!(out.bytes_resumed, before.len() as u64 * 5 * MIB);
    let after = parts_sent(&env.proxy);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "re-sent parts: before {before:?}, after {after:?}"
    );

    let dest = env.dir.path().join("dest");
    download(&tm, "bucket", "k", &dest).await.unwrap();
    assert_eq!(sha256(&dest), sha256(&src));
    assert!(tm.list_resumable().unwrap().0.is_empty());
}

#[tokio::test]
async fn download_paused_then_object_replaced_fails_with_object_changed_and_no_mixed_file() {
    let env = Env::new().await;
    let tm = env.manager(2);
    let v1 = random_file(env.dir.path(), "v1", 30 * MIB, 3);
    let v2 = random_file(env.dir.path(), "v2", 30 * MIB, 4);
    upload(&tm, "bucket", "obj", &v1).await.unwrap();
    env.slow();
    let dest = env.dir.path().join("dest");
    let h = tm.download_file("bucket", "obj", &dest).await.unwrap();
    wait_for_progress(&h, 5 * MIB).await;
    h.pause().await.unwrap();
    env.proxy.clear();
    upload(&tm, "bucket", "obj", &v2).await.unwrap();
    h.resume().unwrap();
    let err = h.join().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ObjectChanged, "{err}");
    assert!(err.to_string().contains("s3://bucket/obj"), "{err}");
    assert!(!dest.exists(), "a file was left at the destination");
    assert!(
        !env.dir
            .path()
            .join(format!("dest{PARTIAL_SUFFIX}"))
            .exists(),
        "the partial file was left"
    );
    assert!(
        tm.list_resumable().unwrap().0.is_empty(),
        "a useless checkpoint was kept"
    );
}

#[tokio::test]
async fn upload_whose_source_changed_while_paused_fails_clearly() {
    let env = Env::new().await;
    env.slow();
    let tm = env.manager(2);
    let src = random_file(env.dir.path(), "src", 30 * MIB, 5);
    let h = tm.upload_file("bucket", "k", &src).await.unwrap();
    wait_for_progress(&h, 5 * MIB).await;
    h.pause().await.unwrap();
    std::thread::sleep(Duration::from_millis(20));
    random_file(env.dir.path(), "src", 30 * MIB, 6);
    h.resume().unwrap();
    let err = h.join().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SourceChanged, "{err}");
    assert!(err.to_string().contains("src"), "{err}");
}

#[tokio::test]
async fn same_file_after_resume_in_new_process_refuses_a_modified_source() {
    let env = Env::new().await;
    env.slow();
    let src = random_file(env.dir.path(), "src", 30 * MIB, 7);
    let id = env.paused_upload(&src, 5 * MIB).await;
    std::thread::sleep(Duration::from_millis(20));
    random_file(env.dir.path(), "src", 31 * MIB, 8);
    let tm = env.manager(2);
    let err = tm.resume(&id).await.unwrap().join().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SourceChanged, "{err}");
    assert!(err.to_string().contains("size changed"), "{err}");
}

#[tokio::test]
async fn cancel_removes_the_partial_download_and_the_record() {
    let env = Env::new().await;
    let tm = env.manager(2);
    let src = random_file(env.dir.path(), "src", 30 * MIB, 9);
    upload(&tm, "bucket", "k", &src).await.unwrap();
    env.slow();
    let dest = env.dir.path().join("dest");
    let h = tm.download_file("bucket", "k", &dest).await.unwrap();
    wait_for_progress(&h, 5 * MIB).await;
    assert!(
        env.dir
            .path()
            .join(format!("dest{PARTIAL_SUFFIX}"))
            .exists()
    );
    h.cancel().unwrap();
    let err = h.join().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert!(!dest.exists());
    assert!(
        !env.dir
            .path()
            .join(format!("dest{PARTIAL_SUFFIX}"))
            .exists(),
        "partial file left after cancel"
    );
    assert!(tm.list_resumable().unwrap().0.is_empty());
}

/// The child side of the kill -9 test: uploads, and is killed by the parent.
#[tokio::test]
async fn crashed_process_is_resumed_by_a_new_one_without_resending_recorded_parts() {
    if let Ok(endpoint) = std::env::var("S3TM_TEST_CHILD_ENDPOINT") {
        let state = std::path::PathBuf::from(std::env::var("S3TM_TEST_CHILD_STATE").unwrap());
        let src = std::env::var("S3TM_TEST_CHILD_SRC").unwrap();
        let access = std::env::var("S3TM_TEST_CHILD_ACCESS").unwrap();
        let secret = std::env::var("S3TM_TEST_CHILD_SECRET").unwrap();
        let tm = manager_with(&endpoint, &access, &secret, "us-east-1", &state, |c| {
            c.set_max_in_flight(2)
        });
        let h = tm.upload_file("bucket", "crash", &src).await.unwrap();
        let _ = h.join().await;
        panic!("the child should have been killed before finishing");
    }
    let env = Env::new().await;
    env.slow();
    let src = random_file(env.dir.path(), "src", 60 * MIB, 10);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crashed_process_is_resumed_by_a_new_one_without_resending_recorded_parts",
            "--nocapture",
        ])
        .env("S3TM_TEST_CHILD_ENDPOINT", env.proxy.endpoint())
        .env("S3TM_TEST_CHILD_STATE", env.state())
        .env("S3TM_TEST_CHILD_SRC", &src)
        .env("S3TM_TEST_CHILD_ACCESS", env.server.access_key())
        .env("S3TM_TEST_CHILD_SECRET", env.server.secret_key())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let observer = env.manager(2);
    let id = loop {
        let (list, _) = observer.list_resumable().unwrap();
        if let Some(t) = list.iter().find(|t| t.bytes_done >= 15 * MIB) {
            break t.id.clone();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child ended before being killed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let (list, _) = observer.list_resumable().unwrap();
    let t = list.iter().find(|t| t.id == id).unwrap();
    assert_eq!(
        t.state,
        transfer_manager::SavedState::Interrupted,
        "a killed process's transfer shows as interrupted"
    );
    let recorded = t.bytes_done / (5 * MIB);

    let before = parts_sent(&env.proxy);
    env.proxy.clear_requests();
    let out = observer.resume(&id).await.unwrap().join().await.unwrap();
    let after = parts_sent(&env.proxy);
    assert_eq!(out.bytes_resumed, recorded * 5 * MIB);
    // At most the parts in flight at the kill (2) are sent again.
    let resent: Vec<u32> = after
        .iter()
        .copied()
        .filter(|p| before.contains(p))
        .collect();
    assert!(
        resent.len() <= 2,
        "re-sent {resent:?}; before {before:?}, after {after:?}"
    );
    assert_eq!(after.len() as u64, 12 - recorded, "after {after:?}");

    let dest = env.dir.path().join("dest");
    download(&observer, "bucket", "crash", &dest).await.unwrap();
    assert_eq!(sha256(&dest), sha256(&src));
}

#[tokio::test]
async fn corrupt_checkpoint_is_reported_with_its_path_and_kept() {
    let env = Env::new().await;
    env.slow();
    let src = random_file(env.dir.path(), "src", 20 * MIB, 14);
    let id = env.paused_upload(&src, 5 * MIB).await;
    let record = std::fs::read_dir(env.state())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy() == format!("{id}.record"))
        .expect("the record file");
    let mut bytes = std::fs::read(&record).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0xff;
    std::fs::write(&record, &bytes).unwrap();

    let tm = env.manager(2);
    let (ok, bad) = tm.list_resumable().unwrap();
    assert!(ok.is_empty());
    assert_eq!(bad.len(), 1);
    assert!(
        bad[0].error.contains(&record.display().to_string()),
        "{}",
        bad[0].error
    );
    let err = tm.resume(&id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Checkpoint, "{err}");
    assert!(
        err.to_string().contains(&record.display().to_string()),
        "{err}"
    );
    assert!(
        record.exists(),
        "a corrupt checkpoint must never be deleted silently"
    );
}

/// A resumed upload whose source changed is aborted; when the abort fails for good too,
/// the error names the upload left on the server and says to cancel it (not to resume
/// it), the checkpoint is kept, and `cancel` then aborts it.
#[tokio::test]
async fn an_upload_that_cannot_be_aborted_says_so_and_cancel_finishes_it() {
    let env = Env::new().await;
    env.slow();
    let src = random_file(env.dir.path(), "src", 20 * MIB, 17);
    let id = env.paused_upload(&src, 5 * MIB).await;
    random_file(env.dir.path(), "src", 21 * MIB, 18);
    let s = &env.server;
    let tm = manager_with(
        &env.proxy.endpoint(),
        s.access_key(),
        s.secret_key(),
        s.region(),
        &env.state(),
        |c| {
            c.retry.max_attempts = 2;
            c.retry.max_throttled_attempts = 2;
        },
    );
    let throttled = env.proxy.respond_with(
        s3_testkit::Matcher::abort_multipart_upload(),
        503,
        "SlowDown",
        ALWAYS,
    );
    let err = tm.resume(&id).await.unwrap().join().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SourceChanged, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("could not be aborted")
            && message.contains(&format!("cancel it with `s3tm cancel {id}`"))
            && !message.contains("resume it"),
        "{message}"
    );
    assert!(err.is_resumable(), "the checkpoint is kept for cancel");
    assert!(env.proxy.fired(throttled) >= 2);
    env.proxy.remove(throttled);
    env.proxy.clear_requests();
    tm.cancel_saved(&id).await.unwrap();
    let aborts: Vec<_> = env
        .proxy
        .requests()
        .iter()
        .filter(|r| r.method == http::Method::DELETE && r.query.contains("uploadId"))
        .map(|r| r.status)
        .collect();
    assert_eq!(aborts, [Some(204)], "cancel aborts the upload left");
    assert!(tm.list_resumable().unwrap().0.is_empty());
}

/// A sound record whose journal is damaged before its last entry is unreadable for a
/// resume, but `cancel` still aborts the multipart upload the record names (the journal
/// only added parts) before it forgets the transfer: nothing is left on the server.
#[tokio::test]
async fn cancel_of_a_checkpoint_with_a_damaged_journal_still_aborts_its_upload() {
    let env = Env::new().await;
    env.slow();
    let src = random_file(env.dir.path(), "src", 20 * MIB, 16);
    let id = env.paused_upload(&src, 5 * MIB).await;
    // Three entries after the record the pause saved whole, the middle one damaged.
    use resume_store::ResumeStore as _;
    let store = resume_store::FileStore::open(env.state()).unwrap();
    for n in 0..3u64 {
        let entry = resume_store::JournalEntry {
            done_bytes: 5 * MIB,
            updated_unix_ms: n,
            data: b"{\"part\":{\"part\":4,\"etag\":\"x\",\"checksum\":null}}".to_vec(),
        };
        store.append(&id, &entry).unwrap();
    }
    drop(store);
    let journal = std::fs::read_dir(env.state())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".journal"))
        .expect("the journal file");
    let mut bytes = std::fs::read(&journal).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&journal, &bytes).unwrap();

    let tm = env.manager(2);
    let err = tm.resume(&id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Checkpoint, "{err}");
    assert!(err.to_string().contains("s3tm cancel"), "{err}");
    env.proxy.clear_requests();
    tm.cancel_saved(&id).await.unwrap();
    let aborts = env
        .proxy
        .requests()
        .iter()
        .filter(|r| r.method == http::Method::DELETE && r.query.contains("uploadId"))
        .map(|r| r.status)
        .collect::<Vec<_>>();
    assert_eq!(
        aborts,
        [Some(204)],
        "the upload the record named is aborted"
    );
    let (ok, bad) = tm.list_resumable().unwrap();
    assert!(ok.is_empty() && bad.is_empty(), "{ok:?} {bad:?}");
}

#[tokio::test]
async fn a_second_download_to_the_same_destination_is_refused_while_the_first_runs() {
    let env = Env::new().await;
    let tm = env.manager(2);
    let src = random_file(env.dir.path(), "src", 20 * MIB, 15);
    upload(&tm, "bucket", "k", &src).await.unwrap();
    env.slow();
    let dest = env.dir.path().join("dest");
    let first = tm.download_file("bucket", "k", &dest).await.unwrap();
    wait_for_progress(&first, 2 * MIB).await;
    let err = tm.download_file("bucket", "k", &dest).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    assert!(err.to_string().contains(first.id().as_str()), "{err}");
    env.proxy.clear();
    first.join().await.unwrap();
    assert_eq!(sha256(&dest), sha256(&src));
}

#[tokio::test]
async fn a_transfer_is_resumed_only_against_the_server_it_was_started_on() {
    let env = Env::new().await;
    env.slow();
    let src = random_file(env.dir.path(), "src", 30 * MIB, 16);
    let id = env.paused_upload(&src, 5 * MIB).await;
    // Another server (nothing listens there) over the same checkpoints.
    let s = &env.server;
    let elsewhere = manager(
        "http://127.0.0.1:9",
        s.access_key(),
        s.secret_key(),
        s.region(),
        &env.state(),
    );
    let saved = elsewhere
        .saved_endpoint(&id)
        .unwrap()
        .expect("endpoint kept");
    assert_eq!(
        saved.endpoint_url.as_deref(),
        Some(env.proxy.endpoint().as_str())
    );
    assert_eq!(saved.region, s.region());
    let err = elsewhere.resume(&id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&env.proxy.endpoint()) && msg.contains("--endpoint-url"),
        "the error should name the server and how to continue: {msg}"
    );
    assert!(
        elsewhere
            .find_resumable(Direction::Upload, "bucket", "k", &src)
            .unwrap()
            .is_none(),
        "the same object on another server is another transfer"
    );
    // Refused, not consumed: the right server still resumes it.
    env.proxy.clear();
    let out = env
        .manager(4)
        .resume(&id)
        .await
        .unwrap()
        .join()
        .await
        .unwrap();
    assert!(out.resumed);
}

#[tokio::test]
async fn a_new_download_may_not_overwrite_the_partial_file_of_a_paused_one() {
    let env = Env::new().await;
    let tm = env.manager(2);
    let a = random_file(env.dir.path(), "a", 20 * MIB, 17);
    let b = random_file(env.dir.path(), "b", 20 * MIB, 18);
    for (key, src) in [("a", &a), ("b", &b)] {
        upload(&tm, "bucket", key, src).await.unwrap();
    }
    env.slow();
    let dest = env.dir.path().join("dest");
    let first = tm.download_file("bucket", "a", &dest).await.unwrap();
    wait_for_progress(&first, 2 * MIB).await;
    first.pause().await.unwrap();
    let err = tm.download_file("bucket", "b", &dest).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(first.id().as_str()) && msg.contains("s3://bucket/a"),
        "the error should name the paused download: {msg}"
    );
    env.proxy.clear();
    first.resume().unwrap();
    first.join().await.unwrap();
    assert_eq!(
        sha256(&dest),
        sha256(&a),
        "the paused download was disturbed"
    );
}

/// Rewrites `len` bytes of `path` at `offset` in place (same size) and puts its
/// modification time back, as a user with `touch -d` would.
fn rewrite_in_place_keeping_mtime(path: &std::path::Path, offset: u64, len: usize) {
    use std::os::unix::fs::FileExt;
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&vec![0xA5; len], offset).unwrap();
    f.set_modified(mtime).unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().modified().unwrap(), mtime);
}

/// Overwrites `len` bytes at `offset` of the partial file of `dest`.
fn tamper_partial(dest: &std::path::Path, offset: u64, len: usize) {
    use std::os::unix::fs::FileExt;
    let partial = transfer_manager::partial_path(dest);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&partial)
        .unwrap();
    f.write_all_at(&vec![0x5A; len], offset).unwrap();
}

#[tokio::test]
async fn a_source_rewritten_while_paused_with_its_mtime_put_back_is_refused() {
    let env = Env::new().await;
    env.slow();
    let tm = env.manager(2);
    let src = random_file(env.dir.path(), "src", 30 * MIB, 19);
    let h = tm.upload_file("bucket", "k", &src).await.unwrap();
    wait_for_progress(&h, 5 * MIB).await;
    h.pause().await.unwrap();
    rewrite_in_place_keeping_mtime(&src, 0, 4096);
    h.resume().unwrap();
    let err = h.join().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SourceChanged, "{err}");
    assert!(err.to_string().contains("ctime"), "{err}");
}

/// A checkpoint without a ctime (written by an older s3tm, or on a filesystem without
/// one) cannot see a source rewritten with its mtime put back: the parts sent earlier
/// are read back and checked before the upload completes, and the one that changed is
/// sent again, so the object is the file as it is now, never a mix.
#[tokio::test]
async fn parts_sent_before_a_pause_are_read_back_and_a_changed_one_sent_again() {
    let env = Env::new().await;
    env.slow();
    let src = random_file(env.dir.path(), "src", 30 * MIB, 20);
    let id = env.paused_upload(&src, 10 * MIB).await;
    let tm = env.manager(2);
    let store = tm.store().clone();
    let mut rec = store
        .load(&id)
        .unwrap()
        .expect("the paused upload is saved");
    let mut payload: serde_json::Value = serde_json::from_slice(&rec.payload).unwrap();
    let fp = &mut payload["checkpoint"]["source"];
    assert!(
        fp["changed_unix_nanos"].is_i64(),
        "the checkpoint records the ctime: {fp}"
    );
    fp["changed_unix_nanos"] = serde_json::Value::Null;
    rec.payload = serde_json::to_vec(&payload).unwrap();
    store.save(&rec).unwrap();
    rewrite_in_place_keeping_mtime(&src, MIB, 4096); // inside part 1, sent before the pause

    env.proxy.clear();
    let out = tm.resume(&id).await.unwrap().join().await.unwrap();
    assert!(out.bytes_rechecked >= 10 * MIB, "{out:?}");
    assert_eq!(out.bytes_recheck_failed, 5 * MIB, "{out:?}");
    let dest = env.dir.path().join("dest");
    download(&tm, "bucket", "k", &dest).await.unwrap();
    assert_eq!(
        sha256(&dest),
        sha256(&src),
        "the object is not the file as it is now"
    );
}

#[tokio::test]
async fn bytes_of_a_paused_download_changed_on_disk_are_fetched_again() {
    let env = Env::new().await;
    let tm = env.manager(2);
    let src = random_file(env.dir.path(), "src", 30 * MIB, 21);
    upload(&tm, "bucket", "k", &src).await.unwrap();
    env.slow();
    let dest = env.dir.path().join("dest");
    let h = tm.download_file("bucket", "k", &dest).await.unwrap();
    wait_for_progress(&h, 10 * MIB).await;
    h.pause().await.unwrap();
    tamper_partial(&dest, 0, 4096);
    env.proxy.clear();
    h.resume().unwrap();
    let out = h.join().await.unwrap();
    assert!(out.bytes_rechecked >= 10 * MIB, "{out:?}");
    assert!(out.bytes_recheck_failed > 0, "{out:?}");
    assert!(
        !matches!(out.verified, transfer_manager::Verified::Unverified { .. }),
        "{out:?}"
    );
    assert_eq!(
        sha256(&dest),
        sha256(&src),
        "the download kept the changed bytes"
    );
}

/// A pause that the last request in flight overtakes (a single PutObject always pauses
/// by finishing) answers that the transfer completed, and `join` has the outcome.
#[tokio::test]
async fn pause_of_a_transfer_that_completes_meanwhile_says_it_completed() {
    let env = Env::new().await;
    env.proxy.delay(
        s3_testkit::Matcher::method(http::Method::PUT),
        Duration::from_millis(500),
        ALWAYS,
    );
    let tm = env.manager(2);
    let src = random_file(env.dir.path(), "small", 3 * MIB, 22);
    let h = tm.upload_file("bucket", "small", &src).await.unwrap();
    let err = h.pause().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Finished, "{err}");
    assert!(err.to_string().contains("completed"), "{err}");
    let out = h.join().await.unwrap();
    assert_eq!(out.bytes_total, 3 * MIB);
}

/// The manager's control calls return when the work is done, with each transfer's own
/// result: `cancel_object` leaves no record or partial file behind once it returns,
/// counts one transfer once, and `resume_all` takes a paused transfer of this manager and
/// one saved by another, with handles to join; a running transfer's handle can be had
/// again by id.
#[tokio::test]
async fn control_calls_wait_and_report_each_transfer() {
    let env = Env::new().await;
    let tm = env.manager(2);
    let src = random_file(env.dir.path(), "src", 20 * MIB, 23);
    upload(&tm, "bucket", "obj", &src).await.unwrap();
    env.slow();

    let dest = env.dir.path().join("dest");
    let down = tm.download_file("bucket", "obj", &dest).await.unwrap();
    wait_for_progress(&down, 5 * MIB).await;
    let again = tm
        .handle(down.id())
        .expect("a running transfer is found by id");
    assert_eq!(again.id(), down.id());
    down.pause().await.unwrap();
    assert_eq!(
        again.progress().borrow().state,
        transfer_manager::TransferState::Paused
    );
    let cancelled = tm.cancel_object("bucket", "obj").await.unwrap();
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    assert!(cancelled[0].1.is_ok(), "{cancelled:?}");
    assert!(
        tm.list_resumable().unwrap().0.is_empty(),
        "the record is still there"
    );
    assert!(
        !transfer_manager::partial_path(&dest).exists(),
        "the partial file is still there"
    );
    assert_eq!(again.join().await.unwrap_err().kind(), ErrorKind::Cancelled);

    // One paused here, one saved by a manager that is gone.
    let mine = tm.upload_file("bucket", "mine", &src).await.unwrap();
    wait_for_progress(&mine, 5 * MIB).await;
    mine.pause().await.unwrap();
    let theirs = env.paused_upload(&src, 5 * MIB).await;
    env.proxy.clear();
    let resumed = tm.resume_all().await.unwrap();
    let ids: BTreeSet<String> = resumed.iter().map(|(id, _)| id.to_string()).collect();
    assert_eq!(
        ids,
        BTreeSet::from([mine.id().to_string(), theirs.to_string()])
    );
    for (_, handle) in resumed {
        handle.unwrap().join().await.unwrap();
    }
    assert!(tm.list_resumable().unwrap().0.is_empty());
}

/// Checkpoints of the new algorithms (values longer than a 32-bit CRC, stored in base64)
/// go through the store and back: a SHA-256 and a CRC64NVME upload paused in one manager
/// resume in another without re-sending a part, and land byte-exact.
#[tokio::test]
async fn uploads_with_long_checksums_resume_from_their_checkpoints() {
    for (i, algorithm) in [
        transfer_manager::ChecksumAlgorithm::Sha256,
        transfer_manager::ChecksumAlgorithm::Crc64Nvme,
    ]
    .into_iter()
    .enumerate()
    {
        let env = Env::new().await;
        env.slow();
        let s = &env.server;
        let manager = || {
            manager_with(
                &env.proxy.endpoint(),
                s.access_key(),
                s.secret_key(),
                s.region(),
                &env.state(),
                |c| {
                    c.set_max_in_flight(2);
                    c.checksum = Some(algorithm);
                },
            )
        };
        let src = random_file(env.dir.path(), "src", 30 * MIB, 20 + i as u64);
        let id = {
            let tm = manager();
            let h = tm.upload_file("bucket", "k", &src).await.unwrap();
            wait_for_progress(&h, 10 * MIB).await;
            h.pause().await.unwrap();
            h.id().clone()
        };
        let before: BTreeSet<u32> = parts_sent(&env.proxy).into_iter().collect();
        env.proxy.clear_requests();
        let tm = manager();
        let out = tm.resume(&id).await.unwrap().join().await.unwrap();
        assert!(out.resumed, "{algorithm}");
        assert_eq!(
            out.bytes_resumed,
            before.len() as u64 * 5 * MIB,
            "{algorithm}"
        );
        let after = parts_sent(&env.proxy);
        assert!(
            after.iter().all(|p| !before.contains(p)),
            "{algorithm}: re-sent parts: before {before:?}, after {after:?}"
        );
        let stored = s.root().join("bucket").join("k");
        assert_eq!(sha256(&stored), sha256(&src), "{algorithm}");
    }
}
