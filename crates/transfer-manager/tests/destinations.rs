//! Destinations and partial files that are not s3tm's own: never renamed over, followed,
//! or written through; refused before the first byte where that can be known.

mod common;

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use s3_testkit::{ALWAYS, Matcher};
use transfer_manager::ErrorKind;

type Env = ProxiedEnv;

/// A server holding `bucket/obj` (12 MiB, three parts), behind a proxy.
async fn env() -> (Env, std::path::PathBuf) {
    let env = proxied_s3s_env(|c| c.set_max_in_flight(1)).await;
    let src = random_file(env.dir.path(), "src", 12 * MIB, 21);
    upload(&env.tm, "bucket", "obj", &src).await.unwrap();
    env.proxy.clear_requests();
    (env, src)
}

impl Env {
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn gets(&self) -> usize {
        self.proxy
            .requests()
            .iter()
            .filter(|r| r.method == http::Method::GET)
            .count()
    }
}

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_file_locked_by_another_download_fails_this_one_and_is_kept() {
    let (env, _src) = env().await;
    let _ = &env.server;
    // The partial file does not exist when the download starts: it is found (locked)
    // only when the machine prepares it, after the HeadObject.
    env.proxy.delay(
        Matcher::method(http::Method::HEAD),
        Duration::from_millis(800),
        ALWAYS,
    );
    let dest = env.path("copy.bin");
    let handle = env.tm.download_file("bucket", "obj", &dest).await.unwrap();

    let partial = env.path("copy.bin.s3tm-partial");
    let other = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&partial)
        .unwrap();
    other.try_lock().unwrap();
    std::fs::write(&partial, b"another download's bytes").unwrap();

    let err = handle.join().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LocalIo, "{err}");
    assert!(
        err.to_string().contains(&format!(
            "another s3tm is downloading to {}",
            dest.display()
        )),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&partial).unwrap(),
        b"another download's bytes",
        "the other download's partial file is neither written nor removed"
    );
    assert!(!dest.exists());
    assert_eq!(env.gets(), 0, "no byte was fetched");
    drop(other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_made_at_the_destination_during_the_download_is_not_replaced() {
    let (env, src) = env().await;
    env.proxy
        .delay(Matcher::ranged_get(), Duration::from_millis(300), ALWAYS);
    let dest = env.path("copy.bin");
    let handle = env.tm.download_file("bucket", "obj", &dest).await.unwrap();
    wait_for_progress(&handle, 1).await;
    mkfifo(&dest);

    let err = handle.join().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LocalIo, "{err}");
    assert!(
        err.to_string().contains("is a FIFO") && err.to_string().contains("kept in"),
        "{err}"
    );
    assert!(
        std::fs::symlink_metadata(&dest)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let partial = env.path("copy.bin.s3tm-partial");
    assert_eq!(
        sha256(&partial),
        sha256(&src),
        "the verified bytes are kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_s3tm_must_not_replace_are_refused_before_any_get() {
    let (env, _src) = env().await;
    let target = env.path("target.txt");
    std::fs::write(&target, b"target").unwrap();
    let dir = env.path("a-dir");
    std::fs::create_dir(&dir).unwrap();
    let link_to_file = env.path("link-to-file");
    std::os::unix::fs::symlink(&target, &link_to_file).unwrap();
    let dangling = env.path("dangling");
    std::os::unix::fs::symlink(env.path("nowhere"), &dangling).unwrap();
    let link_to_dir = env.path("link-to-dir");
    std::os::unix::fs::symlink(&dir, &link_to_dir).unwrap();
    let socket = env.path("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();

    for (dest, says) in [
        (&dir, "is a directory"),
        (&link_to_file, "is a symbolic link to a regular file"),
        (&dangling, "is a symbolic link to nothing"),
        (&link_to_dir, "is a symbolic link to a directory"),
        (&socket, "is a socket"),
    ] {
        let err = env
            .tm
            .download_file("bucket", "obj", dest)
            .await
            .expect_err(&format!("{} is refused", dest.display()));
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(
            err.to_string().contains(&dest.display().to_string()) && err.to_string().contains(says),
            "{err}"
        );
    }
    assert_eq!(env.gets(), 0, "no byte was fetched");
    assert_eq!(std::fs::read(&target).unwrap(), b"target");
    assert!(
        std::fs::symlink_metadata(&link_to_file)
            .unwrap()
            .is_symlink()
    );
    assert!(
        std::fs::symlink_metadata(&socket)
            .unwrap()
            .file_type()
            .is_socket()
    );
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none());
    let (saved, _) = env.tm.list_resumable().unwrap();
    assert!(saved.is_empty(), "nothing was recorded: {saved:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_files_that_are_not_s3tms_own_are_left_untouched() {
    let (env, _src) = env().await;
    let victim = env.path("victim");
    std::fs::write(&victim, b"victim").unwrap();

    // A hard link to another file.
    let partial = env.path("linked.s3tm-partial");
    std::fs::hard_link(&victim, &partial).unwrap();
    let err = env
        .tm
        .download_file("bucket", "obj", env.path("linked"))
        .await
        .expect_err("a hard-linked partial file is refused");
    assert!(err.to_string().contains("has 2 hard links"), "{err}");

    // A FIFO: never opened, so never waited on.
    mkfifo(&env.path("fifo.s3tm-partial"));
    let err = env
        .tm
        .download_file("bucket", "obj", env.path("fifo"))
        .await
        .expect_err("a FIFO as partial file is refused");
    assert!(err.to_string().contains("is a FIFO"), "{err}");

    // Another user's file, as root (who could otherwise write anything).
    let theirs = env.path("theirs.s3tm-partial");
    std::fs::write(&theirs, b"theirs").unwrap();
    match std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)) {
        Ok(()) => {
            let err = env
                .tm
                .download_file("bucket", "obj", env.path("theirs"))
                .await
                .expect_err("another user's partial file is refused");
            assert!(err.to_string().contains("owned by uid 65534"), "{err}");
            assert_eq!(std::fs::read(&theirs).unwrap(), b"theirs");
        }
        Err(e) => {
            eprintln!("SKIPPED the other user's partial file: cannot chown ({e}); run as root")
        }
    }

    assert_eq!(std::fs::read(&victim).unwrap(), b"victim");
    assert!(!env.path("linked").exists() && !env.path("fifo").exists());
    assert_eq!(env.gets(), 0, "no byte was fetched");
}
