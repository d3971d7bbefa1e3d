use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::conformance;
use crate::format::tests::sample;

fn id(s: &str) -> TransferId {
    TransferId::new(s).unwrap()
}

fn fresh() -> (tempfile::TempDir, FileStore) {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::open(tmp.path().join("state")).unwrap();
    (tmp, store)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn file_store_conforms() {
    // Each factory call gets its own directory; the TempDirs live until the
    // end of the test.
    let dirs = std::sync::Mutex::new(Vec::new());
    conformance::run_all(&|| {
        let (tmp, store) = fresh();
        dirs.lock().unwrap().push(tmp);
        Box::new(store)
    });
}

const CHILD_TEST: &str = "file_store::tests::conformance_child";

// Does nothing unless spawned by `multi_process` below.
#[test]
fn conformance_child() {
    conformance::child_main(&|dir| Box::new(FileStore::open(dir).unwrap()));
}

#[test]
fn file_store_conforms_across_processes() {
    let (_tmp, store) = fresh();
    let dir = store.dir().to_str().unwrap().to_owned();
    conformance::multi_process(&dir, &|d| Box::new(FileStore::open(d).unwrap()), CHILD_TEST);
    // Released leases leave no lock files behind; only records remain.
    assert!(
        names(store.dir()).iter().all(|n| n.ends_with(".record")),
        "{:?}",
        names(store.dir())
    );
}

#[test]
fn directory_is_0700_and_records_0600_whatever_the_umask_allows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/state");
    let store = FileStore::open(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    store.save(&sample("t1", vec![1, 2, 3])).unwrap();
    assert_eq!(mode(&store.record_path(&id("t1"))), 0o600);
    // Replacing keeps it private too.
    store.save(&sample("t1", vec![4])).unwrap();
    assert_eq!(mode(&store.record_path(&id("t1"))), 0o600);
    let _lease = store.lease(&id("t1")).unwrap();
    assert_eq!(mode(&store.lock_path(&id("t1"))), 0o600);
}

fn state_dir_refusal(dir: &Path) -> String {
    match FileStore::open(dir) {
        Err(e) => e.to_string(),
        other => panic!("{} was not refused: {other:?}", dir.display()),
    }
}

#[test]
fn an_existing_readable_directory_is_accepted_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let store = FileStore::open(tmp.path()).unwrap();
    assert_eq!(mode(tmp.path()), 0o755, "not narrowed: it is not s3tm's");
    store.save(&sample("t1", vec![1])).unwrap();
    assert_eq!(mode(&store.record_path(&id("t1"))), 0o600);
}

#[test]
fn a_directory_others_can_write_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    for m in [0o1777, 0o777, 0o775, 0o757] {
        let dir = tmp.path().join(format!("shared-{m:o}"));
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(m)).unwrap();
        let message = state_dir_refusal(&dir);
        assert!(
            message.contains(&dir.display().to_string())
                && message.contains("writable by other users")
                && message.contains("--state-dir")
                && message.contains("S3TM_STATE_DIR"),
            "{message}"
        );
        let now = fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
        assert_eq!(now, m, "the mode of {} is unchanged", dir.display());
        assert!(names(&dir).is_empty(), "nothing was written into it");
    }
}

#[test]
fn a_directory_owned_by_another_user_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("theirs");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    // As root any file can be given away; otherwise only root's own files are "another
    // user's" (and cannot be made so here).
    if let Err(e) = std::os::unix::fs::chown(&dir, Some(65534), Some(65534)) {
        eprintln!("SKIPPED: cannot chown a directory to uid 65534 ({e}); run as root");
        return;
    }
    let message = state_dir_refusal(&dir);
    assert!(
        message.contains("owned by uid 65534") && message.contains("--state-dir"),
        "{message}"
    );
    assert_eq!(mode(&dir), 0o700);
}

#[test]
fn a_file_in_place_of_the_directory_is_not_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f");
    fs::write(&file, b"x").unwrap();
    let message = state_dir_refusal(&file);
    assert!(
        message.contains(&file.display().to_string())
            && message.contains("is not a directory")
            && !message.contains("os error"),
        "{message}"
    );
    // A file on the way to the directory is the same mistake.
    let message = state_dir_refusal(&file.join("state"));
    assert!(message.contains("is not a directory"), "{message}");
    assert_eq!(fs::read(&file).unwrap(), b"x");
}

#[test]
fn only_the_directories_it_creates_are_made_private() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = tmp.path().join("parent");
    fs::create_dir(&parent).unwrap();
    fs::set_permissions(&parent, fs::Permissions::from_mode(0o751)).unwrap();
    let dir = parent.join("new/state");
    FileStore::open(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&parent), 0o751, "an existing parent is left alone");
    // Opening it again accepts the private directory it made.
    FileStore::open(&dir).unwrap();
}

#[test]
fn interrupted_save_leaves_previous_record_and_is_not_listed() {
    let (_tmp, store) = fresh();
    let old = sample("t1", b"old checkpoint".to_vec());
    store.save(&old).unwrap();
    // What a crash between writing the temp file and renaming it leaves:
    // a complete temp file and a half-written one, next to the old record.
    let new = format::encode(&sample("t1", b"new checkpoint, longer".to_vec())).unwrap();
    fs::write(store.dir().join(".tmp-crash1.partial"), &new).unwrap();
    fs::write(
        store.dir().join(".tmp-crash2.partial"),
        &new[..new.len() / 2],
    )
    .unwrap();

    assert_eq!(store.load(&id("t1")).unwrap(), Some(old.clone()));
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].summary.as_ref().unwrap().meta, old.meta);
    // The next save still works and the debris does not get in its way.
    let newer = sample("t1", b"next".to_vec());
    store.save(&newer).unwrap();
    assert_eq!(store.load(&id("t1")).unwrap(), Some(newer));
}

#[test]
fn save_writes_through_a_temp_file_not_in_place() {
    let (_tmp, store) = fresh();
    store.save(&sample("t1", b"v1".to_vec())).unwrap();
    let path = store.record_path(&id("t1"));
    let before = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
    store.save(&sample("t1", b"v2".to_vec())).unwrap();
    let after = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
    assert_ne!(
        before, after,
        "the record was rewritten in place, not replaced"
    );
    assert_eq!(names(store.dir()), ["t1.record"], "temp files left behind");
}

#[test]
fn corrupt_records_are_reported_with_their_path_and_kept() {
    let (_tmp, store) = fresh();
    store
        .save(&sample("flipped", b"some payload bytes".to_vec()))
        .unwrap();
    store
        .save(&sample("truncated", b"some payload bytes".to_vec()))
        .unwrap();
    store.save(&sample("good", b"fine".to_vec())).unwrap();

    let flipped = store.record_path(&id("flipped"));
    let mut bytes = fs::read(&flipped).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x20;
    fs::write(&flipped, &bytes).unwrap();
    let truncated = store.record_path(&id("truncated"));
    let bytes = fs::read(&truncated).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() - 5]).unwrap();

    for (name, path, what) in [
        ("flipped", &flipped, "checksum"),
        ("truncated", &truncated, "truncated"),
    ] {
        match store.load(&id(name)) {
            Err(e @ StoreError::Corrupt { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&path.display().to_string()), "{msg}");
                assert!(msg.contains(what), "{msg}");
                assert!(msg.contains("s3tm cancel"), "{msg}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }

    let listed = store.list().unwrap();
    let ids: Vec<_> = listed.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["flipped", "good", "truncated"]);
    for entry in &listed {
        assert_eq!(
            entry.path.as_deref(),
            Some(store.record_path(&entry.id).as_path())
        );
        match (entry.id.as_str(), &entry.summary) {
            ("good", Ok(_)) => {}
            ("flipped" | "truncated", Err(StoreError::Corrupt { path, .. })) => {
                assert_eq!(path, &store.record_path(&entry.id))
            }
            (id, other) => panic!("{id}: {other:?}"),
        }
    }
    // Nothing was deleted behind the user's back, and they can remove it.
    assert!(flipped.exists() && truncated.exists());
    store.remove(&id("flipped")).unwrap();
    assert!(!flipped.exists());
}

#[test]
fn newer_format_is_refused_and_kept() {
    let (_tmp, store) = fresh();
    let path = store.record_path(&id("future"));
    fs::write(
        &path,
        b"s3tm-resume-store 9 zstd crc64=...\n\x28\xb5\x2f\xfd",
    )
    .unwrap();
    match store.load(&id("future")) {
        Err(
            e @ StoreError::NewerVersion {
                found: 9,
                supported: 1,
                ..
            },
        ) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string()) && msg.contains("newer"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    let listed = store.list().unwrap();
    assert!(matches!(
        listed[0].summary,
        Err(StoreError::NewerVersion { .. })
    ));
    assert!(path.exists());
}

#[test]
fn list_ignores_files_that_are_not_records() {
    let (_tmp, store) = fresh();
    store.save(&sample("t1", vec![])).unwrap();
    for junk in [
        ".tmp-x.partial",
        "t2.lock",
        "notes.txt",
        "bad id.record",
        ".record",
        "..record",
    ] {
        fs::write(store.dir().join(junk), b"junk").unwrap();
    }
    let ids: Vec<_> = store.list().unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(ids, [id("t1")]);
}

#[test]
fn record_named_for_another_id_is_corrupt() {
    let (_tmp, store) = fresh();
    store.save(&sample("a", vec![1])).unwrap();
    fs::rename(store.record_path(&id("a")), store.record_path(&id("b"))).unwrap();
    assert!(matches!(
        store.load(&id("b")),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn stale_lock_file_from_a_dead_process_does_not_block() {
    let (_tmp, store) = fresh();
    fs::write(store.lock_path(&id("t1")), b"").unwrap();
    let lease = store.lease(&id("t1")).unwrap();
    drop(lease);
    assert!(!store.lock_path(&id("t1")).exists());
}

#[test]
fn remove_cleans_a_stale_lock_but_not_a_held_one() {
    let (_tmp, store) = fresh();
    store.save(&sample("stale", vec![])).unwrap();
    fs::write(store.lock_path(&id("stale")), b"").unwrap();
    store.remove(&id("stale")).unwrap();
    assert_eq!(names(store.dir()), Vec::<String>::new());

    store.save(&sample("held", vec![])).unwrap();
    let lease = store.lease(&id("held")).unwrap();
    store.remove(&id("held")).unwrap();
    assert!(matches!(
        store.lease(&id("held")),
        Err(StoreError::Locked { .. })
    ));
    drop(lease);
}

#[test]
fn two_handles_on_one_directory_exclude_each_other() {
    let (_tmp, a) = fresh();
    let b = FileStore::open(a.dir()).unwrap();
    let lease = a.lease(&id("t1")).unwrap();
    assert!(matches!(b.lease(&id("t1")), Err(StoreError::Locked { .. })));
    drop(lease);
    drop(b.lease(&id("t1")).unwrap());
}

#[test]
fn lease_churn_never_grants_two_leases_at_once() {
    // Threads race to take and drop the lease through separate handles,
    // exercising the unlink-on-release path; a shared counter catches any
    // moment with two holders.
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (_tmp, store) = fresh();
    let holders = std::sync::Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (store, holders) = (FileStore::open(store.dir()).unwrap(), holders.clone());
            std::thread::spawn(move || {
                let mut granted = 0;
                for _ in 0..3000 {
                    if let Ok(lease) = store.lease(&id("hot")) {
                        assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                        granted += 1;
                        std::thread::yield_now();
                        holders.fetch_sub(1, Ordering::SeqCst);
                        drop(lease);
                    }
                }
                granted
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(total > 0);
}

#[test]
fn state_dir_precedence_is_explicit_then_env_then_platform() {
    let data = Some(PathBuf::from("/home/u/.local/share"));
    let env = Some(OsString::from("/from/env"));
    assert_eq!(
        resolve(Some(Path::new("/explicit")), env.clone(), data.clone()).unwrap(),
        Path::new("/explicit")
    );
    assert_eq!(
        resolve(None, env, data.clone()).unwrap(),
        Path::new("/from/env")
    );
    assert_eq!(
        resolve(None, Some(OsString::new()), data.clone()).unwrap(),
        Path::new("/home/u/.local/share/s3tm/transfers")
    );
    assert_eq!(
        resolve(None, None, data).unwrap(),
        Path::new("/home/u/.local/share/s3tm/transfers")
    );
    assert!(matches!(
        resolve(None, None, None),
        Err(StoreError::NoStateDir)
    ));
}

/// A record as s3tm wrote it with store format 1 (checked in, byte for byte).
const FORMAT_1_RECORD: &[u8] = include_bytes!("../../tests/data/format1.record");

fn format_1_expected() -> Record {
    Record {
        meta: crate::RecordMeta {
            id: id("format1"),
            direction: crate::Direction::Download,
            bucket: "bucket".into(),
            key: "dir/key".into(),
            local_path: PathBuf::from("/home/u/file.bin"),
            done_bytes: 5 << 20,
            total_bytes: 10 << 20,
            created_unix_ms: 1_700_000_000_000,
            updated_unix_ms: 1_700_000_000_500,
            state: crate::TransferState::Paused,
        },
        payload_version: 1,
        payload: b"{\"checkpoint\":\"from s3tm store format 1\"}\n\x00\xff".to_vec(),
    }
}

#[test]
fn a_format_1_record_loads_and_lists() {
    let (_tmp, store) = fresh();
    fs::write(store.record_path(&id("format1")), FORMAT_1_RECORD).unwrap();
    assert_eq!(
        store.load(&id("format1")).unwrap(),
        Some(format_1_expected())
    );
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].summary.as_ref().unwrap().meta,
        format_1_expected().meta
    );
}
