use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::conformance;
use crate::format::tests::sample;
use crate::journal;

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
    // Released leases leave no lock files behind, nor saves temp files; only
    // records and their journals remain, one journal each.
    let names = names(store.dir());
    let records: Vec<_> = names.iter().filter(|n| n.ends_with(".record")).collect();
    let journals: Vec<_> = names.iter().filter(|n| n.ends_with(".journal")).collect();
    assert_eq!(records.len() + journals.len(), names.len(), "{names:?}");
    assert_eq!(records.len(), journals.len(), "{names:?}");
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
    store.append(&id("t1"), &entry(0)).unwrap();
    assert_eq!(mode(&journal_of(&store, "t1")), 0o600);
    // A journal the first append has to create (a format 1 record has none).
    fs::write(store.record_path(&id("format1")), FORMAT_1_RECORD).unwrap();
    store.append(&id("format1"), &entry(0)).unwrap();
    assert_eq!(mode(&store.journal_path(&id("format1"), 0)), 0o600);
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
    let new = format::encode(&sample("t1", b"new checkpoint, longer".to_vec()), 2).unwrap();
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
    assert_eq!(
        names(store.dir()),
        ["t1.2.journal", "t1.record"],
        "temp files or the old journal left behind"
    );
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
                supported: 2,
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
    store.append(&id("t1"), &entry(0)).unwrap();
    for junk in [
        ".tmp-x.partial",
        "t2.lock",
        "notes.txt",
        "bad id.record",
        ".record",
        "..record",
        "t1.0.journal",
        "t3.5.journal",
        "t3.journal",
        "t3.record.journal",
        ".tmp-y.journal",
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
            kind: Default::default(),
        },
        payload_version: 1,
        payload: b"{\"checkpoint\":\"from s3tm store format 1\"}\n\x00\xff".to_vec(),
        journal: Vec::new(),
    }
}

#[test]
fn a_format_1_record_loads_and_lists() {
    let (_tmp, store) = fresh();
    let t = id("format1");
    fs::write(store.record_path(&t), FORMAT_1_RECORD).unwrap();
    assert_eq!(store.load(&t).unwrap(), Some(format_1_expected()));
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].summary.as_ref().unwrap().meta,
        format_1_expected().meta
    );

    // It takes appends, as generation 0, ...
    store.append(&t, &entry(0)).unwrap();
    let loaded = store.load(&t).unwrap().unwrap();
    assert_eq!(loaded.journal, [entry(0)]);
    assert_eq!(loaded.payload, format_1_expected().payload);
    assert_eq!(names(store.dir()), ["format1.0.journal", "format1.record"]);
    // ... and is saved in the current format, leaving no journal behind.
    store.save(&format_1_expected()).unwrap();
    assert_eq!(store.load(&t).unwrap(), Some(format_1_expected()));
    let bytes = fs::read(store.record_path(&t)).unwrap();
    assert!(bytes.starts_with(b"s3tm-resume-store 2 "));
    assert_eq!(names(store.dir()), ["format1.1.journal", "format1.record"]);
}

fn entry(i: u64) -> JournalEntry {
    conformance::journal_entry("e", i)
}

/// The one journal file of `id`.
fn journal_of(store: &FileStore, id: &str) -> PathBuf {
    let mine: Vec<_> = names(store.dir())
        .into_iter()
        .filter(|n| n.starts_with(&format!("{id}.")) && n.ends_with(".journal"))
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    store.dir().join(&mine[0])
}

/// A record `id` with three entries appended; returns the journal's path,
/// its bytes and where its last entry starts.
fn three_entries(store: &FileStore, name: &str) -> (PathBuf, Vec<u8>, usize) {
    store.save(&sample(name, b"payload".to_vec())).unwrap();
    for i in 0..3 {
        store.append(&id(name), &entry(i)).unwrap();
    }
    let path = journal_of(store, name);
    let bytes = fs::read(&path).unwrap();
    let last = bytes.len() - (12 + 16 + entry(2).data.len());
    (path, bytes, last)
}

fn loaded_journal(dir: &Path, name: &str) -> Vec<JournalEntry> {
    // A fresh handle, which knows nothing of the journal yet.
    let store = FileStore::open(dir).unwrap();
    store.load(&id(name)).unwrap().unwrap().journal
}

#[test]
fn a_torn_last_entry_is_left_out_and_cut_off_before_the_next_append() {
    let (_tmp, store) = fresh();
    let (path, bytes, last) = three_entries(&store, "torn");
    assert_eq!(
        loaded_journal(store.dir(), "torn"),
        [entry(0), entry(1), entry(2)]
    );
    for cut in last..bytes.len() {
        fs::write(&path, &bytes[..cut]).unwrap();
        assert_eq!(
            loaded_journal(store.dir(), "torn"),
            [entry(0), entry(1)],
            "cut at {cut}"
        );
        let listed = FileStore::open(store.dir()).unwrap().list().unwrap();
        let meta = &listed[0].summary.as_ref().unwrap().meta;
        assert_eq!(meta.done_bytes, entry(1).done_bytes, "cut at {cut}");
        // The next append (by a process that knows nothing yet) goes where
        // the torn entry began.
        let next = FileStore::open(store.dir()).unwrap();
        next.append(&id("torn"), &entry(2)).unwrap();
        assert_eq!(fs::read(&path).unwrap(), bytes, "cut at {cut}");
    }
}

#[test]
fn a_damaged_last_entry_is_left_out() {
    let (_tmp, store) = fresh();
    let (path, bytes, last) = three_entries(&store, "flipped");
    for i in last..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x10;
        fs::write(&path, &bad).unwrap();
        assert_eq!(
            loaded_journal(store.dir(), "flipped"),
            [entry(0), entry(1)],
            "flip at {i}"
        );
    }
}

#[test]
fn a_damaged_entry_before_valid_ones_is_reported_and_kept() {
    let (_tmp, store) = fresh();
    let (path, bytes, last) = three_entries(&store, "damaged");
    let second = 12 + 16 + entry(0).data.len();
    for i in second..last {
        let mut bad = bytes.clone();
        bad[i] ^= 0x10;
        fs::write(&path, &bad).unwrap();
        let fresh_handle = FileStore::open(store.dir()).unwrap();
        match fresh_handle.load(&id("damaged")) {
            Err(e @ StoreError::CorruptJournal { .. }) => {
                let message = e.to_string();
                assert!(
                    message.contains(&path.display().to_string())
                        && message.contains("entry 2 ")
                        && message.contains("s3tm cancel"),
                    "{message}"
                );
            }
            other => panic!("flip at {i}: {other:?}"),
        }
        let listed = fresh_handle.list().unwrap();
        assert!(
            matches!(listed[0].summary, Err(StoreError::CorruptJournal { .. })),
            "flip at {i}"
        );
        // Nothing is appended after damage, nor is anything cut off.
        assert!(matches!(
            fresh_handle.append(&id("damaged"), &entry(3)),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(fs::read(&path).unwrap(), bad, "flip at {i}");
    }
    // Saving replaces it.
    store.save(&sample("damaged", vec![])).unwrap();
    assert_eq!(loaded_journal(store.dir(), "damaged"), []);
}

#[test]
fn a_stale_journal_is_ignored_and_swept_by_the_next_save_or_remove() {
    let (_tmp, store) = fresh();
    let t = id("stale");
    store.save(&sample("stale", b"v1".to_vec())).unwrap();
    store.append(&t, &entry(0)).unwrap();
    let old = journal_of(&store, "stale");
    let old_bytes = fs::read(&old).unwrap();
    store.save(&sample("stale", b"v2".to_vec())).unwrap();
    // What a crash between the rename and the deletion of the old journal leaves.
    fs::write(&old, &old_bytes).unwrap();
    assert_eq!(
        store.load(&t).unwrap(),
        Some(sample("stale", b"v2".to_vec()))
    );
    assert_eq!(store.list().unwrap().len(), 1);
    // A process that knows nothing of it sweeps it on its first save.
    let next = FileStore::open(store.dir()).unwrap();
    next.save(&sample("stale", b"v3".to_vec())).unwrap();
    assert_eq!(names(store.dir()), ["stale.3.journal", "stale.record"]);

    fs::write(&old, &old_bytes).unwrap();
    store.remove(&t).unwrap();
    assert_eq!(names(store.dir()), Vec::<String>::new());
}

#[test]
fn a_journal_left_without_its_record_is_never_taken_for_a_new_ones() {
    let (_tmp, store) = fresh();
    let t = id("orphan");
    // A journal of generation 7, whose record was removed by a process that
    // crashed before deleting the journal too.
    let orphan = store.journal_path(&t, 7);
    fs::write(
        &orphan,
        journal::encode_all(7, &[entry(0)], "orphan").unwrap(),
    )
    .unwrap();
    store.save(&sample("orphan", vec![])).unwrap();
    assert_eq!(store.load(&t).unwrap(), Some(sample("orphan", vec![])));
    assert_eq!(names(store.dir()), ["orphan.8.journal", "orphan.record"]);
    // Removing a record that is not there still sweeps.
    store.remove(&t).unwrap();
    fs::write(&orphan, b"junk").unwrap();
    assert!(matches!(store.remove(&t), Err(StoreError::NotFound { .. })));
    assert_eq!(names(store.dir()), Vec::<String>::new());
}

#[test]
fn appends_follow_a_save_made_through_another_handle() {
    let (_tmp, a) = fresh();
    let b = FileStore::open(a.dir()).unwrap();
    let t = id("two-handles");
    a.save(&sample("two-handles", b"from a".to_vec())).unwrap();
    a.append(&t, &entry(0)).unwrap();
    b.save(&sample("two-handles", b"from b".to_vec())).unwrap();
    a.append(&t, &entry(1)).unwrap();
    let loaded = a.load(&t).unwrap().unwrap();
    assert_eq!(
        (loaded.payload.as_slice(), loaded.journal.as_slice()),
        (&b"from b"[..], &[entry(1)][..])
    );
    b.remove(&t).unwrap();
    assert!(matches!(
        a.append(&t, &entry(2)),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(names(a.dir()), Vec::<String>::new());
}

#[test]
fn appending_costs_one_write_whatever_the_journal_holds() {
    // Not a timing test: the journal grows by exactly one entry per append,
    // the record is never rewritten, and nothing else appears.
    let (_tmp, store) = fresh();
    let t = id("cost");
    store.save(&sample("cost", vec![7; 50_000])).unwrap();
    let record = store.record_path(&t);
    let ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&record).unwrap());
    let journal = journal_of(&store, "cost");
    let mut len = 0;
    for i in 0..200 {
        store.append(&t, &entry(i)).unwrap();
        len += 12 + 16 + entry(i).data.len() as u64;
        assert_eq!(fs::metadata(&journal).unwrap().len(), len);
    }
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&fs::metadata(&record).unwrap()),
        ino
    );
    assert_eq!(names(store.dir()), ["cost.1.journal", "cost.record"]);
}
