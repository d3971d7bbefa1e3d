//! Directory jobs (`upload_directory`, `download_prefix`) against s3s-fs, and moto for
//! keys s3s-fs cannot hold (it stores keys as paths).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{MIB, manager_with, proxied_s3s_env, random_bytes, s3s_env};
use s3_testkit::{ALWAYS, Matcher, moto_or_skip};
use transfer_manager::{Direction, ErrorKind, JobOptions, JobState, PathFilter, SyncOptions};

/// Every file and directory under `dir`: relative path → contents (`None` for a
/// directory).
fn tree(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.insert(rel, None);
                stack.push(e.path());
            } else if ft.is_file() {
                out.insert(rel, Some(std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out
}

/// A nested tree: empty files, names with spaces and accents, a hidden file, and a
/// 40 MiB file (multipart). No empty directory: s3s-fs keeps a folder marker as a
/// directory and answers its PutObject without an ETag (moto's test has one).
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::create_dir_all(root.join("ünï cödé")).unwrap();
    std::fs::write(root.join("zero"), b"").unwrap();
    std::fs::write(root.join("a/b/c/deep.txt"), b"deep").unwrap();
    std::fs::write(root.join("a/.hidden"), b"hidden").unwrap();
    std::fs::write(root.join("ünï cödé/ä b.txt"), "é".repeat(100)).unwrap();
    std::fs::write(root.join("a/big.bin"), random_bytes(40 * MIB, 7)).unwrap();
    for i in 0..20 {
        std::fs::write(
            root.join(format!("a/small-{i:02}")),
            random_bytes(1000 + i * 3000, i),
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_uploaded_then_downloaded_comes_back_identical() {
    let env = s3s_env().await;
    let src = env.dir.path().join("src");
    make_tree(&src);
    #[cfg(unix)]
    std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();

    let up = env
        .tm
        .upload_directory(&src, "bucket", "backup/", JobOptions::default())
        .await
        .unwrap();
    let out = up.join().await.unwrap();
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    assert_eq!(out.files_done, out.files_total);
    assert_eq!(out.files_total, 25, "20 small, 4 named files, 1 big");
    assert_eq!(
        out.skipped.len(),
        1,
        "the link is left out: {:?}",
        out.skipped
    );
    assert!(
        out.skipped[0].contains("symbolic link"),
        "{:?}",
        out.skipped
    );
    let stored = env.server.root().join("bucket/backup");
    assert_eq!(
        std::fs::read(stored.join("a/big.bin")).unwrap(),
        std::fs::read(src.join("a/big.bin")).unwrap()
    );

    let dst = env.dir.path().join("dst");
    let down = env
        .tm
        .download_prefix("bucket", "backup", &dst, JobOptions::default())
        .await
        .unwrap();
    let out = down.join().await.unwrap();
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    assert_eq!(out.files_done, out.files_total);
    assert!(out.unverified.is_empty(), "{:?}", out.unverified);
    std::fs::remove_file(src.join("link")).unwrap();
    assert!(tree(&src) == tree(&dst), "the round trip differs");
    let (saved, _) = env.tm.list_resumable().unwrap();
    assert!(
        saved.is_empty(),
        "a job done leaves nothing saved: {saved:?}"
    );
}

/// A job paused with a large file part-way and small files done resumes in another
/// manager (as after a restart): files done are not sent again, the large file goes on
/// from its last part, and the bucket ends up byte-exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_job_resumes_elsewhere_without_sending_done_files_again() {
    let env = proxied_s3s_env(|c| {
        c.set_max_in_flight(1);
    })
    .await;
    let src = env.dir.path().join("src");
    make_tree(&src);
    env.proxy
        .delay(Matcher::upload_part(), Duration::from_millis(200), ALWAYS);

    let job = env
        .tm
        .upload_directory(&src, "bucket", "", JobOptions::default())
        .await
        .unwrap();
    let mut progress = job.progress();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let p = *progress.borrow_and_update();
            // Small files done, and some parts of the big one.
            if p.files_done >= 10 && p.bytes_done > 10 * MIB {
                return;
            }
            progress.changed().await.unwrap();
        }
    })
    .await
    .expect("the job moves");
    job.pause().await.unwrap();
    assert_eq!(job.progress().borrow().state, JobState::Paused);
    let done_before = job.progress().borrow().files_done;
    let id = job.id().clone();
    drop(job);
    drop(env.tm);

    let puts_before = env.proxy.requests().len();
    let tm = manager_with(
        &env.proxy.endpoint(),
        env.server.access_key(),
        env.server.secret_key(),
        env.server.region(),
        &env.dir.path().join("state"),
        |c| c.set_max_in_flight(1),
    );
    let saved = tm.saved_job(&id).unwrap();
    assert_eq!(saved.counts.files_done, done_before);
    let out = tm.resume_job(&id).await.unwrap().join().await.unwrap();
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    assert!(out.resumed);
    assert_eq!(out.files_done, out.files_total);
    let later = &env.proxy.requests()[puts_before..];
    let small_again = later
        .iter()
        .filter(|r| r.method == http::Method::PUT && r.part_number().is_none())
        .count() as u64;
    assert!(
        small_again <= out.files_total - done_before,
        "only files not done are sent again: {small_again} PUTs for {} files left",
        out.files_total - done_before
    );
    let big_parts = later.iter().filter(|r| r.part_number().is_some()).count();
    assert!(
        big_parts < 8,
        "the big file goes on from its last part: {big_parts} parts sent"
    );
    let stored = env.server.root().join("bucket");
    for (rel, data) in tree(&src) {
        if let Some(data) = data {
            assert!(
                std::fs::read(stored.join(&rel)).unwrap() == data,
                "{rel} differs"
            );
        }
    }
    assert!(tm.list_resumable().unwrap().0.is_empty());
}

/// Keys that would leave the directory, and a key that is both a file and a directory,
/// are refused and reported; nothing is written outside the directory; the rest arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_are_refused_and_nothing_leaves_the_directory() {
    let Some(moto) =
        moto_or_skip("hostile_keys_are_refused_and_nothing_leaves_the_directory").await
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
        |_| {},
    );
    for key in [
        "p/../escaped",
        "p/a/../../escaped2",
        "p//abs",
        "p/ok.txt",
        "p/f",
        "p/f/under",
        "p/marker/",
        "p/x.s3tm-partial",
    ] {
        let h = tm
            .upload_bytes("bucket", key, bytes::Bytes::from(key.as_bytes().to_vec()))
            .await
            .unwrap();
        h.join().await.unwrap();
    }
    let dst = dir.path().join("out/dst");
    let out = tm
        .download_prefix("bucket", "p/", &dst, JobOptions::default())
        .await
        .unwrap()
        .join()
        .await
        .unwrap();
    let failed: Vec<&str> = out.failures.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(failed.len(), 5, "{:?}", out.failures);
    for bad in [
        "p/../escaped",
        "p/a/../../escaped2",
        "p//abs",
        "f/under",
        "p/x.s3tm-partial",
    ] {
        assert!(
            failed.contains(&bad),
            "{bad} is reported: {:?}",
            out.failures
        );
    }
    assert_eq!(std::fs::read(dst.join("ok.txt")).unwrap(), b"p/ok.txt");
    assert_eq!(std::fs::read(dst.join("f")).unwrap(), b"p/f");
    assert!(
        dst.join("marker").is_dir(),
        "a folder marker makes a directory"
    );
    assert!(!dir.path().join("out/escaped").exists());
    assert!(!dir.path().join("escaped2").exists());
    assert!(!Path::new("/abs").exists());
    // The job stays, so that running it again retries what failed.
    let (saved, _) = tm.list_resumable().unwrap();
    assert_eq!(saved.len(), 1, "{saved:?}");

    // An empty directory goes up as a folder marker and comes back as a directory.
    let src = dir.path().join("tree");
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::create_dir_all(src.join("full")).unwrap();
    std::fs::write(src.join("full/x"), b"x").unwrap();
    let up = tm
        .upload_directory(&src, "bucket", "rt", JobOptions::default())
        .await
        .unwrap()
        .join()
        .await
        .unwrap();
    assert!(up.failures.is_empty(), "{:?}", up.failures);
    let back = dir.path().join("back");
    let down = tm
        .download_prefix("bucket", "rt", &back, JobOptions::default())
        .await
        .unwrap()
        .join()
        .await
        .unwrap();
    assert!(down.failures.is_empty(), "{:?}", down.failures);
    assert!(tree(&src) == tree(&back), "{:?}", tree(&back).keys());
    let again = tm
        .resume_job(&saved[0].id)
        .await
        .unwrap()
        .join()
        .await
        .unwrap();
    assert_eq!(
        again.failures.len(),
        5,
        "refused again: {:?}",
        again.failures
    );
    tm.cancel_saved_job(&saved[0].id).await.unwrap();
    assert!(tm.list_resumable().unwrap().0.is_empty());
    let err = tm.resume_job(&saved[0].id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

/// A sync copies what is missing or differs, a second sync finds nothing to copy, and
/// `delete` removes what the source lacks, within the filter; filters follow aws-cli's
/// order (the last rule that matches decides).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_copies_what_differs_and_deletes_what_the_source_lacks() {
    let env = s3s_env().await;
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    for (name, body) in [("a.txt", "a"), ("b.log", "bb"), ("d/c.txt", "ccc")] {
        std::fs::write(src.join(name), body).unwrap();
    }
    let opts = SyncOptions::default();
    let plan = env
        .tm
        .plan_sync(Direction::Upload, "bucket", "s/", &src, &opts)
        .await
        .unwrap();
    assert_eq!(plan.copy.len(), 3);
    let out = env.tm.start_sync(plan).await.unwrap().join().await.unwrap();
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    let again = env
        .tm
        .plan_sync(Direction::Upload, "bucket", "s/", &src, &opts)
        .await
        .unwrap();
    assert!(
        again.copy.is_empty(),
        "a second sync copies nothing: {:?}",
        again.copy
    );

    // A file grows, one appears, one goes; only the .txt files are synced.
    std::fs::write(src.join("a.txt"), "a longer a").unwrap();
    std::fs::write(src.join("new.txt"), "n").unwrap();
    std::fs::remove_file(src.join("d/c.txt")).unwrap();
    std::fs::write(src.join("b.log"), "changed, but excluded").unwrap();
    let opts = SyncOptions {
        job: JobOptions {
            filter: PathFilter::default()
                .exclude("*")
                .unwrap()
                .include("*.txt")
                .unwrap(),
            ..JobOptions::default()
        },
        delete: true,
        ..SyncOptions::default()
    };
    let plan = env
        .tm
        .plan_sync(Direction::Upload, "bucket", "s/", &src, &opts)
        .await
        .unwrap();
    let copy: Vec<&str> = plan.copy.iter().map(|e| e.rel.as_str()).collect();
    assert_eq!(copy, ["a.txt", "new.txt"]);
    assert_eq!(plan.delete, ["s/d/c.txt"]);
    let out = env.tm.start_sync(plan).await.unwrap().join().await.unwrap();
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    assert_eq!(out.deleted, ["s/d/c.txt"]);
    let stored = env.server.root().join("bucket/s");
    assert_eq!(std::fs::read(stored.join("a.txt")).unwrap(), b"a longer a");
    assert_eq!(std::fs::read(stored.join("new.txt")).unwrap(), b"n");
    assert_eq!(
        std::fs::read(stored.join("b.log")).unwrap(),
        b"bb",
        "excluded"
    );
    assert!(!stored.join("d/c.txt").exists());

    // And down: into an empty directory, then nothing to do, then a local extra removed.
    let dst = env.dir.path().join("dst");
    let down = SyncOptions {
        delete: true,
        ..SyncOptions::default()
    };
    let plan = env
        .tm
        .plan_sync(Direction::Download, "bucket", "s", &dst, &down)
        .await
        .unwrap();
    assert_eq!(plan.copy.len(), 3, "{:?}", plan.copy);
    env.tm.start_sync(plan).await.unwrap().join().await.unwrap();
    std::fs::write(dst.join("extra"), "x").unwrap();
    let plan = env
        .tm
        .plan_sync(Direction::Download, "bucket", "s", &dst, &down)
        .await
        .unwrap();
    assert!(plan.copy.is_empty(), "{:?}", plan.copy);
    assert_eq!(plan.delete, ["extra"]);
    env.tm.start_sync(plan).await.unwrap().join().await.unwrap();
    assert!(!dst.join("extra").exists());
    assert_eq!(std::fs::read(dst.join("a.txt")).unwrap(), b"a longer a");
}

/// The plan of a sync of `dir` with the prefix `c/` of the test bucket.
async fn sync_plan(
    env: &common::S3sEnv,
    direction: Direction,
    dir: &Path,
    opts: &SyncOptions,
) -> transfer_manager::SyncPlan {
    env.tm
        .plan_sync(direction, "bucket", "c/", dir, opts)
        .await
        .unwrap()
}

/// `checksum`: files of the same size are compared by content, not by time: a file
/// touched but unchanged is not copied, one changed without changing size is, both ways;
/// a multipart object (its checksum or ETag over parts) compares as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_by_checksum_copies_what_differs_in_content_only() {
    let env = s3s_env().await;
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("same.txt"), "same content").unwrap();
    std::fs::write(src.join("changed.txt"), "old content!").unwrap();
    std::fs::write(src.join("big.bin"), random_bytes(12 * MIB, 3)).unwrap();
    let plan = sync_plan(&env, Direction::Upload, &src, &SyncOptions::default()).await;
    env.tm.start_sync(plan).await.unwrap().join().await.unwrap();

    // Every file touched after the upload; one rewritten with as many bytes.
    std::fs::write(src.join("changed.txt"), "new content!").unwrap();
    let later = std::time::SystemTime::now() + Duration::from_secs(60);
    for name in ["same.txt", "changed.txt", "big.bin"] {
        let f = std::fs::File::options()
            .append(true)
            .open(src.join(name))
            .unwrap();
        f.set_modified(later).unwrap();
    }
    let by_time = sync_plan(&env, Direction::Upload, &src, &SyncOptions::default()).await;
    assert_eq!(
        by_time.copy.len(),
        3,
        "by time, every touched file is copied"
    );
    let by_content = SyncOptions {
        checksum: true,
        ..SyncOptions::default()
    };
    let plan = sync_plan(&env, Direction::Upload, &src, &by_content).await;
    let copy: Vec<&str> = plan.copy.iter().map(|e| e.rel.as_str()).collect();
    assert_eq!(copy, ["changed.txt"]);
    assert_eq!(plan.compared, 3);
    assert!(plan.uncompared.is_empty(), "{:?}", plan.uncompared);
    env.tm.start_sync(plan).await.unwrap().join().await.unwrap();
    let stored = env.server.root().join("bucket/c");
    assert_eq!(
        std::fs::read(stored.join("changed.txt")).unwrap(),
        b"new content!"
    );

    // Down: a local copy changed in place, newer than the object, which a sync by time
    // leaves alone and a sync by content takes back.
    let dst = env.dir.path().join("dst");
    let plan = sync_plan(&env, Direction::Download, &dst, &by_content).await;
    assert_eq!(plan.copy.len(), 3);
    env.tm.start_sync(plan).await.unwrap().join().await.unwrap();
    let mut big = std::fs::read(dst.join("big.bin")).unwrap();
    big[7 * MIB as usize] ^= 0xff;
    std::fs::write(dst.join("big.bin"), &big).unwrap();
    let by_time = sync_plan(&env, Direction::Download, &dst, &SyncOptions::default()).await;
    assert!(by_time.copy.is_empty(), "{:?}", by_time.copy);
    let plan = sync_plan(&env, Direction::Download, &dst, &by_content).await;
    let copy: Vec<&str> = plan.copy.iter().map(|e| e.rel.as_str()).collect();
    assert_eq!(copy, ["big.bin"], "uncompared: {:?}", plan.uncompared);
    env.tm.start_sync(plan).await.unwrap().join().await.unwrap();
    assert_eq!(
        std::fs::read(dst.join("big.bin")).unwrap(),
        std::fs::read(src.join("big.bin")).unwrap()
    );
}

/// A download job never writes into a FIFO (or a link to one) found at a key's path,
/// nor waits for a reader: that file fails, the rest arrives, the job ends.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_at_a_keys_path_is_refused_not_waited_on() {
    let env = s3s_env().await;
    for key in ["f/pipe", "f/plain"] {
        env.tm
            .upload_bytes("bucket", key, bytes::Bytes::from_static(b"data"))
            .await
            .unwrap()
            .join()
            .await
            .unwrap();
    }
    let dst = env.dir.path().join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(dst.join("pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::time::timeout(Duration::from_secs(60), async {
        env.tm
            .download_prefix("bucket", "f", &dst, JobOptions::default())
            .await
            .unwrap()
            .join()
            .await
            .unwrap()
    })
    .await
    .expect("the job does not wait on the FIFO");
    assert_eq!(out.failures.len(), 1, "{:?}", out.failures);
    assert_eq!(out.failures[0].path, "pipe");
    assert!(out.failures[0].error.contains("FIFO"), "{:?}", out.failures);
    assert_eq!(std::fs::read(dst.join("plain")).unwrap(), b"data");
}

/// A sync's deletions are checked again when carried out: a file rewritten, or a key
/// whose source came back, since the sync was planned is left alone and said to be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_deletes_nothing_that_changed_since_it_was_planned() {
    let env = s3s_env().await;
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("keep"), "k").unwrap();
    std::fs::write(src.join("gone"), "g").unwrap();
    let up = SyncOptions {
        delete: true,
        ..SyncOptions::default()
    };
    let plan = env
        .tm
        .plan_sync(Direction::Upload, "bucket", "p/", &src, &up)
        .await
        .unwrap();
    env.tm.start_sync(plan).await.unwrap().join().await.unwrap();

    // Upload side: `gone` removed locally, planned for deletion, then back.
    std::fs::remove_file(src.join("gone")).unwrap();
    let plan = env
        .tm
        .plan_sync(Direction::Upload, "bucket", "p/", &src, &up)
        .await
        .unwrap();
    assert_eq!(plan.delete, ["p/gone"]);
    std::fs::write(src.join("gone"), "back").unwrap();
    let out = env.tm.start_sync(plan).await.unwrap().join().await.unwrap();
    assert!(out.deleted.is_empty(), "{:?}", out.deleted);
    assert!(
        out.skipped
            .iter()
            .any(|s| s.contains("p/gone") && s.contains("again")),
        "{:?}",
        out.skipped
    );
    assert!(env.server.root().join("bucket/p/gone").exists());

    // Download side: a local extra planned for deletion, then rewritten.
    let dst = env.dir.path().join("dst");
    let plan = env
        .tm
        .plan_sync(Direction::Download, "bucket", "p", &dst, &up)
        .await
        .unwrap();
    env.tm.start_sync(plan).await.unwrap().join().await.unwrap();
    std::fs::write(dst.join("mine"), "1").unwrap();
    let plan = env
        .tm
        .plan_sync(Direction::Download, "bucket", "p", &dst, &up)
        .await
        .unwrap();
    assert_eq!(plan.delete, ["mine"]);
    std::fs::write(dst.join("mine"), "rewritten, longer").unwrap();
    let out = env.tm.start_sync(plan).await.unwrap().join().await.unwrap();
    assert!(out.deleted.is_empty(), "{:?}", out.deleted);
    assert_eq!(
        std::fs::read(dst.join("mine")).unwrap(),
        b"rewritten, longer"
    );
}

/// A directory on a paused download's way replaced by a symbolic link is refused when
/// its large file resumes: nothing is written through the link.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_planted_while_a_job_is_paused_is_not_followed_on_resume() {
    let env = proxied_s3s_env(|c| c.set_max_in_flight(1)).await;
    let data = random_bytes(40 * MIB, 3);
    env.tm
        .upload_bytes("bucket", "t/a/big.bin", bytes::Bytes::from(data))
        .await
        .unwrap()
        .join()
        .await
        .unwrap();
    env.proxy
        .delay(Matcher::ranged_get(), Duration::from_millis(200), ALWAYS);
    let dst = env.dir.path().join("dst");
    let job = env
        .tm
        .download_prefix("bucket", "t", &dst, JobOptions::default())
        .await
        .unwrap();
    let id = pause_once_moved(job, 10 * MIB).await;

    let outside = env.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::rename(dst.join("a"), env.dir.path().join("moved-away")).unwrap();
    std::os::unix::fs::symlink(&outside, dst.join("a")).unwrap();
    let out = env.tm.resume_job(&id).await.unwrap().join().await.unwrap();
    assert_eq!(out.failures.len(), 1, "{:?}", out.failures);
    assert!(
        out.failures[0].error.contains("symbolic link"),
        "{:?}",
        out.failures
    );
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing was written through the link"
    );
}

/// A job paused and dropped resumes in the same manager: its large file, still paused
/// there, goes on (it used to fail as "already running here").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_paused_and_dropped_resumes_in_the_same_manager() {
    let env = proxied_s3s_env(|c| c.set_max_in_flight(1)).await;
    let src = env.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("big.bin"), random_bytes(40 * MIB, 5)).unwrap();
    env.proxy
        .delay(Matcher::upload_part(), Duration::from_millis(200), ALWAYS);
    let job = env
        .tm
        .upload_directory(&src, "bucket", "s/", JobOptions::default())
        .await
        .unwrap();
    let id = pause_once_moved(job, 10 * MIB).await;
    let out = env.tm.resume_job(&id).await.unwrap().join().await.unwrap();
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    assert_eq!(
        std::fs::read(env.server.root().join("bucket/s/big.bin")).unwrap(),
        std::fs::read(src.join("big.bin")).unwrap()
    );
}

/// Pauses `job` once `bytes` of it are durably done, drops its handle, and returns its id.
async fn pause_once_moved(
    job: transfer_manager::JobHandle,
    bytes: u64,
) -> transfer_manager::TransferId {
    let mut progress = job.progress();
    tokio::time::timeout(Duration::from_secs(60), async {
        while progress.borrow_and_update().bytes_done < bytes {
            progress.changed().await.unwrap();
        }
    })
    .await
    .expect("the job moves");
    job.pause().await.unwrap();
    job.id().clone()
}

/// A large file rewritten while its job is paused starts over when the job resumes:
/// what arrives is the file as it is now, never old parts joined to new ones; in another
/// manager (from the saved record) and in the same one (the paused transfer in memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_changed_while_its_job_is_paused_starts_over() {
    for same_manager in [false, true] {
        let env = proxied_s3s_env(|c| c.set_max_in_flight(1)).await;
        let src = env.dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("big.bin"), random_bytes(40 * MIB, 5)).unwrap();
        std::fs::write(src.join("small.txt"), b"small").unwrap();
        env.proxy
            .delay(Matcher::upload_part(), Duration::from_millis(200), ALWAYS);
        let job = env
            .tm
            .upload_directory(&src, "bucket", "s/", JobOptions::default())
            .await
            .unwrap();
        let id = pause_once_moved(job, 10 * MIB).await;
        let new = random_bytes(40 * MIB, 6);
        std::fs::write(src.join("big.bin"), &new).unwrap();
        let tm = if same_manager {
            env.tm.clone()
        } else {
            drop(env.tm);
            manager_with(
                &env.proxy.endpoint(),
                env.server.access_key(),
                env.server.secret_key(),
                env.server.region(),
                &env.dir.path().join("state"),
                |c| c.set_max_in_flight(1),
            )
        };
        env.proxy.clear();
        let out = tm.resume_job(&id).await.unwrap().join().await.unwrap();
        assert!(
            out.failures.is_empty(),
            "same manager: {same_manager}: {:?}",
            out.failures
        );
        let stored = std::fs::read(env.server.root().join("bucket/s/big.bin")).unwrap();
        assert!(
            stored == new,
            "same manager: {same_manager}: the new content arrived"
        );
        assert!(tm.list_resumable().unwrap().0.is_empty());
    }
}

/// An object written again while its download job is paused: the file starts over and
/// holds the new object, never old ranges joined to new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_changed_while_its_download_job_is_paused_starts_over() {
    let env = proxied_s3s_env(|c| c.set_max_in_flight(1)).await;
    let put = |data: Vec<u8>| {
        let tm = env.tm.clone();
        async move {
            tm.upload_bytes("bucket", "d/big.bin", bytes::Bytes::from(data))
                .await
                .unwrap()
                .join()
                .await
                .unwrap()
        }
    };
    put(random_bytes(40 * MIB, 8)).await;
    env.proxy
        .delay(Matcher::ranged_get(), Duration::from_millis(200), ALWAYS);
    let dst = env.dir.path().join("dst");
    let job = env
        .tm
        .download_prefix("bucket", "d", &dst, JobOptions::default())
        .await
        .unwrap();
    let id = pause_once_moved(job, 10 * MIB).await;
    env.proxy.clear();
    let new = random_bytes(40 * MIB, 9);
    put(new.clone()).await;
    let out = env.tm.resume_job(&id).await.unwrap().join().await.unwrap();
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    assert!(std::fs::read(dst.join("big.bin")).unwrap() == new);
    assert!(env.tm.list_resumable().unwrap().0.is_empty());
}
