//! A download onto a full disk fails with one clear error and keeps what it has, so it
//! can be resumed once space is freed. Needs root to mount a small tmpfs; without it the
//! test says SKIPPED loudly.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use transfer_manager::{ErrorKind, PARTIAL_SUFFIX};

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn download_onto_a_full_disk_fails_clearly_and_stays_resumable() {
    let S3sEnv {
        server: _server,
        dir,
        tm,
    } = s3s_env().await;
    let src = random_file(dir.path(), "src", 12 * MIB, 41);
    upload(&tm, "bucket", "big", &src).await.unwrap();

    let small = dir.path().join("small");
    let Some(_mount) = Tmpfs::mount(&small, "4m") else {
        let msg = "SKIPPED download_onto_a_full_disk_fails_clearly_and_stays_resumable: cannot mount a tmpfs (needs root)\n";
        std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes()).unwrap();
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI runs as root and must run this test"
        );
        return;
    };
    let dest = small.join("dest");
    let err = download(&tm, "bucket", "big", &dest).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LocalIo, "{err}");
    let msg = err.to_string();
    eprintln!("disk-full error: {msg}");
    assert!(
        msg.contains("No space left on device") && msg.contains("free some disk space"),
        "{msg}"
    );
    assert!(
        msg.contains("s3tm resume"),
        "the message should say how to continue: {msg}"
    );
    assert!(
        !dest.exists(),
        "an incomplete file was passed off as the download"
    );
    assert!(
        small.join(format!("dest{PARTIAL_SUFFIX}")).exists(),
        "the bytes already fetched were thrown away"
    );
    let (saved, _) = tm.list_resumable().unwrap();
    assert_eq!(saved.len(), 1, "the checkpoint must be kept for a resume");
    assert_eq!(saved[0].state, "failed");
}
