//! `s3tm clean` against moto (s3s-fs cannot list multipart uploads): it aborts uploads no
//! saved transfer can resume, keeps the ones that one can, and honours --dry-run and
//! --older-than. Skips loudly without moto, and fails under CI=true.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use s3_testkit::{ALWAYS, FaultProxy, Matcher, MotoServer, moto_or_skip};
use serde_json::Value;
use transfer_manager::{Config, Credentials, StateStore, TransferManager};

const MIB: usize = 1 << 20;

fn s3tm(moto: &MotoServer, proxy: &FaultProxy, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_s3tm"));
    cmd.env_clear()
        .env("HOME", dir)
        .env("AWS_ACCESS_KEY_ID", moto.access_key())
        .env("AWS_SECRET_ACCESS_KEY", moto.secret_key())
        .env("AWS_REGION", moto.region())
        .current_dir(dir)
        .args([
            "--endpoint-url",
            &proxy.endpoint(),
            "--path-style",
            "--state-dir",
        ])
        .arg(dir.join("state"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Starts an upload of a 30 MiB file and pauses it with SIGINT once it has parts done;
/// returns the transfer id.
fn paused_upload(moto: &MotoServer, proxy: &FaultProxy, dir: &Path, key: &str) -> String {
    let name = format!("{key}.bin");
    let data: Vec<u8> = (0..30 * MIB)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join(&name), data).unwrap();
    let dst = format!("s3://bucket/{key}");
    let mut child = s3tm(
        moto,
        proxy,
        dir,
        &[
            "cp",
            "--part-size",
            "5MiB",
            "--concurrency",
            "1",
            &name,
            &dst,
        ],
    )
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let id = loop {
        assert!(Instant::now() < deadline, "no progress on {key}");
        let out = s3tm(moto, proxy, dir, &["ls", "--json"]).output().unwrap();
        let found = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|t| t["key"] == key && t["bytes_done"].as_u64() > Some(0));
        if let Some(t) = found {
            break t["id"].as_str().unwrap().to_owned();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_aborts_orphaned_uploads_and_keeps_resumable_ones() {
    let Some(moto) = moto_or_skip("clean_aborts_orphaned_uploads_and_keeps_resumable_ones").await
    else {
        return;
    };
    moto.create_bucket("bucket").await.unwrap();
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    proxy.delay(Matcher::upload_part(), Duration::from_millis(200), ALWAYS);
    let dir = tempfile::tempdir().unwrap();
    let mine = paused_upload(&moto, &proxy, dir.path(), "mine");
    let orphan = paused_upload(&moto, &proxy, dir.path(), "orphan");
    // Forget the second transfer, as if another tool had left its upload behind.
    std::fs::remove_file(dir.path().join("state").join(format!("{orphan}.record"))).unwrap();

    let mut cfg = Config::new(moto.region());
    cfg.endpoint_url = Some(moto.endpoint());
    cfg.path_style = Some(true);
    cfg.credentials = Some(Credentials::new(
        moto.access_key().to_owned(),
        moto.secret_key().to_owned(),
        None,
    ));
    cfg.state = StateStore::Dir(dir.path().join("observer-state"));
    let observer = TransferManager::new(cfg).unwrap();
    let keys = |list: Vec<transfer_manager::MultipartUploadInfo>| {
        let mut k: Vec<String> = list.into_iter().map(|u| u.key).collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(
            observer
                .list_multipart_uploads("bucket", None)
                .await
                .unwrap()
        ),
        ["mine", "orphan"]
    );

    // moto reports every upload as started on 2010-11-10, so "too young" here means
    // younger than a century.
    let young = s3tm(
        &moto,
        &proxy,
        dir.path(),
        &["clean", "s3://bucket", "--older-than", "36500d"],
    )
    .output()
    .unwrap();
    assert_eq!(
        young.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&young.stderr)
    );
    assert_eq!(
        keys(
            observer
                .list_multipart_uploads("bucket", None)
                .await
                .unwrap()
        ),
        ["mine", "orphan"],
        "--older-than 36500d aborted a younger upload:\n{}{}",
        String::from_utf8_lossy(&young.stdout),
        String::from_utf8_lossy(&young.stderr)
    );
    let dry = s3tm(
        &moto,
        &proxy,
        dir.path(),
        &["clean", "s3://bucket", "--dry-run"],
    )
    .output()
    .unwrap();
    let dry_out = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(
        dry_out.contains("would abort s3://bucket/orphan"),
        "{dry_out}\n{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(
        dry_out.contains("kept s3://bucket/mine") && dry_out.contains(&mine),
        "{dry_out}"
    );
    assert_eq!(
        keys(
            observer
                .list_multipart_uploads("bucket", None)
                .await
                .unwrap()
        ),
        ["mine", "orphan"],
        "--dry-run or a too-young --older-than aborted something"
    );

    let real = s3tm(&moto, &proxy, dir.path(), &["clean", "s3://bucket"])
        .output()
        .unwrap();
    assert_eq!(
        real.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&real.stderr)
    );
    assert!(String::from_utf8_lossy(&real.stdout).contains("aborted s3://bucket/orphan"));
    assert_eq!(
        keys(
            observer
                .list_multipart_uploads("bucket", None)
                .await
                .unwrap()
        ),
        ["mine"]
    );

    // The kept one still resumes to completion.
    let resumed = s3tm(&moto, &proxy, dir.path(), &["resume", &mine])
        .output()
        .unwrap();
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(
        observer
            .list_multipart_uploads("bucket", None)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The multipart upload of a large file of a paused `cp -r` job is its job's to resume:
/// `clean --older-than 0` keeps it and names the job that can drop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_keeps_the_uploads_of_a_paused_directory_job() {
    let Some(moto) = moto_or_skip("clean_keeps_the_uploads_of_a_paused_directory_job").await else {
        return;
    };
    moto.create_bucket("bucket").await.unwrap();
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    proxy.delay(Matcher::upload_part(), Duration::from_millis(300), ALWAYS);
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let data: Vec<u8> = (0..30 * MIB)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(tree.join("big.bin"), data).unwrap();
    let mut child = s3tm(
        &moto,
        &proxy,
        dir.path(),
        &[
            "cp",
            "-r",
            "--part-size",
            "5MiB",
            "--concurrency",
            "1",
            "tree",
            "s3://bucket/j/",
        ],
    )
    .spawn()
    .unwrap();
    // Paused once its second part is under way.
    let deadline = Instant::now() + Duration::from_secs(120);
    while proxy
        .requests()
        .iter()
        .filter(|r| r.part_number().is_some())
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "no part was sent");
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let ls = s3tm(&moto, &proxy, dir.path(), &["ls", "--json"])
        .output()
        .unwrap();
    let job: Value = serde_json::from_slice(
        String::from_utf8_lossy(&ls.stdout)
            .lines()
            .next()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(job["kind"], "job");
    let job_id = job["id"].as_str().unwrap();

    let clean = s3tm(
        &moto,
        &proxy,
        dir.path(),
        &["clean", "s3://bucket", "--older-than", "0"],
    )
    .output()
    .unwrap();
    let out = String::from_utf8_lossy(&clean.stdout);
    assert_eq!(clean.status.code(), Some(0), "{out}");
    assert!(
        out.contains("kept s3://bucket/j/big.bin")
            && out.contains(&format!("s3tm cancel {job_id}")),
        "{out}"
    );
    let resumed = s3tm(&moto, &proxy, dir.path(), &["resume", job_id])
        .output()
        .unwrap();
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
}
