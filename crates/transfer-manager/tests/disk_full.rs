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
            !s3_testkit::in_ci(),
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
    assert_eq!(saved[0].state, transfer_manager::SavedState::Failed);
}

/// Checkpoints that cannot be saved (the state directory's filesystem is full) do not
/// fail a transfer that completes: the outcome is a success with a warning, and no
/// record is left behind claiming something can be resumed.
#[tokio::test]
async fn a_full_state_directory_completes_the_upload_with_a_warning() {
    let S3sEnv { server, dir, tm: _ } = s3s_env().await;
    let src = random_file(dir.path(), "src", 16 * MIB, 42);
    let state = dir.path().join("state");
    let Some(_mount) = Tmpfs::mount(&state, "64k,mode=0700") else {
        let msg = "SKIPPED a_full_state_directory_completes_the_upload_with_a_warning: cannot mount a tmpfs (needs root)\n";
        std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes()).unwrap();
        assert!(
            !s3_testkit::in_ci(),
            "CI runs as root and must run this test"
        );
        return;
    };
    let tm = manager_with(
        &server.endpoint(),
        server.access_key(),
        server.secret_key(),
        server.region(),
        &state,
        |_| {},
    );
    // Fill the filesystem to the last byte.
    {
        use std::io::Write as _;
        let mut filler = std::fs::File::create(state.join("filler")).unwrap();
        let block = vec![0u8; 4096];
        while filler.write_all(&block).is_ok() {}
    }
    let out = upload(&tm, "bucket", "k", &src).await.unwrap();
    assert_eq!(out.warnings.len(), 1, "{out:?}");
    assert!(
        out.warnings[0].contains("could not be saved"),
        "{:?}",
        out.warnings
    );
    let dest = dir.path().join("dest");
    download(&tm, "bucket", "k", &dest).await.unwrap();
    assert_eq!(sha256(&dest), sha256(&src));
    assert!(tm.list_resumable().unwrap().0.is_empty());
}

/// A store whose saves panic (a buggy custom store): the checkpoint thread dies, and the
/// driver is told so instead of hearing "saved". Uses only `transfer_manager`'s
/// re-exports, as a user with a store of their own would.
struct PanickingStore(transfer_manager::MemoryStore);

impl transfer_manager::ResumeStore for PanickingStore {
    fn save(
        &self,
        _: &transfer_manager::store::Record,
    ) -> Result<(), transfer_manager::store::StoreError> {
        panic!("this store cannot save");
    }
    fn append(
        &self,
        _: &transfer_manager::TransferId,
        _: &transfer_manager::store::JournalEntry,
    ) -> Result<(), transfer_manager::store::StoreError> {
        panic!("this store cannot append");
    }
    fn load(
        &self,
        id: &transfer_manager::TransferId,
    ) -> Result<Option<transfer_manager::store::Record>, transfer_manager::store::StoreError> {
        self.0.load(id)
    }
    fn list(
        &self,
    ) -> Result<Vec<transfer_manager::store::ListEntry>, transfer_manager::store::StoreError> {
        self.0.list()
    }
    fn remove(
        &self,
        id: &transfer_manager::TransferId,
    ) -> Result<(), transfer_manager::store::StoreError> {
        self.0.remove(id)
    }
    fn lease(
        &self,
        id: &transfer_manager::TransferId,
    ) -> Result<transfer_manager::store::Lease, transfer_manager::store::StoreError> {
        self.0.lease(id)
    }
}

#[tokio::test]
async fn a_checkpoint_thread_that_died_is_reported_not_taken_for_saved() {
    let S3sEnv { server, dir, tm: _ } = s3s_env().await;
    let src = random_file(dir.path(), "src", 16 * MIB, 43);
    let tm = manager_with(
        &server.endpoint(),
        server.access_key(),
        server.secret_key(),
        server.region(),
        &dir.path().join("unused"),
        |c| {
            c.state = transfer_manager::StateStore::Custom(std::sync::Arc::new(PanickingStore(
                transfer_manager::MemoryStore::default(),
            )));
        },
    );
    let out = upload(&tm, "bucket", "k", &src).await.unwrap();
    assert_eq!(out.warnings.len(), 1, "{out:?}");
    assert!(
        out.warnings[0].contains("checkpoint thread is not running"),
        "{:?}",
        out.warnings
    );
}
