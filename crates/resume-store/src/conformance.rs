//! The behaviour every [`ResumeStore`] must have, as reusable checks.
//!
//! Each check takes a factory returning a fresh, empty store and panics
//! (like `assert!`) on the first deviation, so it is meant to be called from
//! `#[test]` functions:
//!
//! ```ignore
//! #[test]
//! fn my_store_conforms() {
//!     resume_store::conformance::run_all(&|| Box::new(MyStore::new_empty()));
//! }
//! ```
//!
//! Stores shared between processes also run [`multi_process`], which spawns
//! the test binary itself; see there.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use crate::{
    Direction, JournalEntry, Record, RecordMeta, ResumeStore, StoreError, TransferId, TransferState,
};

/// Makes a fresh, empty store.
pub type Factory<'a> = &'a dyn Fn() -> Box<dyn ResumeStore>;

/// Runs every in-process check.
pub fn run_all(factory: Factory<'_>) {
    save_load_round_trip(factory);
    load_missing_is_none(factory);
    save_replaces_previous(factory);
    list_reports_every_record_sorted(factory);
    remove_deletes_and_reports_missing(factory);
    lease_is_exclusive_and_released_on_drop(factory);
    lease_is_exclusive_across_threads(factory);
    concurrent_saves_are_never_torn(factory);
    journal_round_trip(factory);
    append_without_a_record_is_not_found(factory);
    save_compacts_the_journal(factory);
    list_follows_the_last_entry(factory);
    remove_takes_the_journal_along(factory);
    appends_from_several_threads_all_survive(factory);
}

/// Builds a record whose payload can be checked with [`check_consistent`]:
/// `key` repeated to `len` bytes, with `done_bytes` equal to `len`.
pub fn consistent_record(id: &TransferId, key: &str, len: usize) -> Record {
    Record {
        meta: RecordMeta {
            id: id.clone(),
            direction: Direction::Download,
            bucket: "conformance-bucket".into(),
            key: key.into(),
            local_path: PathBuf::from(format!("/data/{key}")),
            done_bytes: len as u64,
            total_bytes: 1 << 40,
            created_unix_ms: 1_700_000_000_000,
            updated_unix_ms: 1_700_000_000_000 + len as u64,
            state: TransferState::Running,
            kind: Default::default(),
        },
        payload_version: 1,
        payload: key.bytes().cycle().take(len).collect(),
        journal: Vec::new(),
    }
}

/// Panics unless `record` is exactly as [`consistent_record`] built it,
/// which catches records mixed from two saves.
pub fn check_consistent(record: &Record) {
    let key = record.meta.key.as_bytes();
    assert!(
        !key.is_empty(),
        "record {} has an empty key",
        record.meta.id
    );
    assert_eq!(
        record.payload.len() as u64,
        record.meta.done_bytes,
        "record {} payload length disagrees with its metadata",
        record.meta.id
    );
    let expected = consistent_record(&record.meta.id, &record.meta.key, record.payload.len());
    assert!(
        *record == expected,
        "record {} is torn or altered (key {})",
        record.meta.id,
        record.meta.key
    );
}

/// Builds the `i`th journal entry of a sequence named `tag`, checkable with
/// [`check_journal`]: its data is `tag` and `i` repeated to a length that
/// varies with `i` (and always holds `tag`), and `done_bytes` is `i + 1`.
pub fn journal_entry(tag: &str, i: u64) -> JournalEntry {
    let len = tag.len() + (i as usize * 37) % 300;
    JournalEntry {
        done_bytes: i + 1,
        updated_unix_ms: 1_800_000_000_000 + i,
        data: format!("{tag}-{i}/").bytes().cycle().take(len).collect(),
    }
}

/// Panics unless `record.journal` is the first entries of the sequence
/// `tag` made by [`journal_entry`], whole, and at least `at_least` of them,
/// and unless the record reports the progress of the last one.
pub fn check_journal(record: &Record, tag: &str, at_least: usize) {
    assert!(
        record.journal.len() >= at_least,
        "record {}: {} journal entries, expected at least {at_least}",
        record.meta.id,
        record.journal.len()
    );
    for (i, entry) in record.journal.iter().enumerate() {
        assert!(
            *entry == journal_entry(tag, i as u64),
            "record {}: journal entry {i} is not the {i}th one appended",
            record.meta.id
        );
    }
    if let Some(last) = record.journal.last() {
        assert_eq!(
            (record.meta.done_bytes, record.meta.updated_unix_ms),
            (last.done_bytes, last.updated_unix_ms),
            "record {}: progress is not the last entry's",
            record.meta.id
        );
    }
}

fn id(s: &str) -> TransferId {
    match TransferId::new(s) {
        Ok(id) => id,
        Err(e) => panic!("conformance uses a bad id: {e}"),
    }
}

fn ok<T>(what: &str, r: Result<T, StoreError>) -> T {
    r.unwrap_or_else(|e| panic!("{what} failed: {e}"))
}

/// `save` then `load` returns the same record, including an empty payload
/// and all metadata fields.
pub fn save_load_round_trip(factory: Factory<'_>) {
    let store = factory();
    let mut rec = consistent_record(&id("round-trip"), "a/b c", 3000);
    rec.meta.direction = Direction::Upload;
    rec.meta.state = TransferState::Other("verifying".into());
    rec.payload_version = 42;
    ok("save", store.save(&rec));
    assert_eq!(ok("load", store.load(&rec.meta.id)), Some(rec.clone()));

    let empty = Record {
        payload: Vec::new(),
        ..consistent_record(&id("empty"), "k", 0)
    };
    ok("save", store.save(&empty));
    assert_eq!(ok("load", store.load(&empty.meta.id)), Some(empty));
}

/// Loading an id that was never saved is `Ok(None)`.
pub fn load_missing_is_none(factory: Factory<'_>) {
    let store = factory();
    assert_eq!(ok("load", store.load(&id("never-saved"))), None);
}

/// A second save replaces the first entirely, also when it is shorter.
pub fn save_replaces_previous(factory: Factory<'_>) {
    let store = factory();
    let t = id("replace");
    ok("save", store.save(&consistent_record(&t, "first", 5000)));
    let second = consistent_record(&t, "second", 10);
    ok("save", store.save(&second));
    assert_eq!(ok("load", store.load(&t)), Some(second));
    assert_eq!(ok("list", store.list()).len(), 1);
}

/// `list` shows each record once, sorted by id, with its summary.
pub fn list_reports_every_record_sorted(factory: Factory<'_>) {
    let store = factory();
    assert!(
        ok("list", store.list()).is_empty(),
        "a fresh store lists records"
    );
    for (name, len) in [("c", 3), ("a", 1), ("b", 2)] {
        ok("save", store.save(&consistent_record(&id(name), name, len)));
    }
    let listed = ok("list", store.list());
    let ids: Vec<&str> = listed.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    for (n, entry) in listed.iter().enumerate() {
        let summary = match &entry.summary {
            Ok(s) => s,
            Err(e) => panic!("entry {} unreadable: {e}", entry.id),
        };
        assert_eq!(summary.meta.id, entry.id);
        assert_eq!(summary.payload_bytes, n as u64 + 1);
        assert_eq!(summary.payload_version, 1);
    }
}

/// `remove` deletes the record; removing a missing record is `NotFound`.
pub fn remove_deletes_and_reports_missing(factory: Factory<'_>) {
    let store = factory();
    let t = id("to-remove");
    ok("save", store.save(&consistent_record(&t, "k", 10)));
    ok(
        "save",
        store.save(&consistent_record(&id("stays"), "k", 10)),
    );
    ok("remove", store.remove(&t));
    assert_eq!(ok("load", store.load(&t)), None);
    let left: Vec<_> = ok("list", store.list()).into_iter().map(|e| e.id).collect();
    assert_eq!(left, [id("stays")]);
    match store.remove(&t) {
        Err(StoreError::NotFound { id }) => assert_eq!(id, "to-remove"),
        other => panic!("removing a missing record gave {other:?}"),
    }
}

/// A lease excludes a second lease on the same id (from the same handle),
/// not other ids; it needs no record; dropping it frees the id; holding it
/// does not stop the holder from saving and removing.
pub fn lease_is_exclusive_and_released_on_drop(factory: Factory<'_>) {
    let store = factory();
    let t = id("leased");
    let lease = ok("lease", store.lease(&t));
    assert_eq!(lease.id(), &t);
    match store.lease(&t) {
        Err(StoreError::Locked { id }) => assert_eq!(id, "leased"),
        other => panic!("second lease gave {other:?}"),
    }
    let other = ok("lease on another id", store.lease(&id("other")));
    ok(
        "save under lease",
        store.save(&consistent_record(&t, "k", 1)),
    );
    ok("remove under lease", store.remove(&t));
    drop(lease);
    let again = ok("lease after release", store.lease(&t));
    drop((again, other));
    drop(ok("lease after release", store.lease(&t)));
}

/// A lease held on one thread excludes leases from other threads, and is
/// free for them once dropped.
pub fn lease_is_exclusive_across_threads(factory: Factory<'_>) {
    let store: Arc<dyn ResumeStore> = Arc::from(factory());
    let t = id("threads");
    let lease = ok("lease", store.lease(&t));
    let attempt = |store: Arc<dyn ResumeStore>, t: TransferId| {
        thread::spawn(move || store.lease(&t).map(drop))
            .join()
            .unwrap_or_else(|_| panic!("lease thread panicked"))
    };
    match attempt(Arc::clone(&store), t.clone()) {
        Err(StoreError::Locked { .. }) => {}
        other => panic!("lease from another thread gave {other:?}"),
    }
    drop(lease);
    ok("lease from another thread", attempt(store, t));
}

/// Several threads saving the same and their own records at once, while
/// another loads, never produce a record mixed from two saves.
pub fn concurrent_saves_are_never_torn(factory: Factory<'_>) {
    const WRITERS: usize = 4;
    const SAVES: usize = 40;
    let store: Arc<dyn ResumeStore> = Arc::from(factory());
    let shared = id("shared");
    ok("save", store.save(&consistent_record(&shared, "seed", 1)));
    let start = Arc::new(Barrier::new(WRITERS + 1));

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, shared, start) = (Arc::clone(&store), shared.clone(), Arc::clone(&start));
            thread::spawn(move || {
                let own = id(&format!("own-{w}"));
                start.wait();
                for i in 0..SAVES {
                    // Lengths vary so a mix of two saves cannot line up.
                    let len = 1 + (w * 7919 + i * 104_729) % 20_000;
                    let key = format!("writer{w}-save{i}");
                    ok("save", store.save(&consistent_record(&shared, &key, len)));
                    ok("save", store.save(&consistent_record(&own, &key, len)));
                }
            })
        })
        .collect();

    start.wait();
    let mut loads = 0;
    while writers.iter().any(|w| !w.is_finished()) || loads == 0 {
        match ok("load", store.load(&shared)) {
            Some(r) => check_consistent(&r),
            None => panic!("the shared record vanished while being replaced"),
        }
        loads += 1;
    }
    for w in writers {
        if w.join().is_err() {
            panic!("a writer thread panicked");
        }
    }
    let listed = ok("list", store.list());
    assert_eq!(listed.len(), WRITERS + 1);
    for entry in listed {
        let r = ok("load", store.load(&entry.id)).unwrap_or_else(|| panic!("{} lost", entry.id));
        check_consistent(&r);
        if entry.id != shared {
            assert!(
                r.meta.key.ends_with(&format!("save{}", SAVES - 1)),
                "last save lost"
            );
        }
    }
}

/// `append` adds entries that `load` returns in order with the record,
/// whose progress becomes the last entry's; a record saved with entries
/// comes back with them, and takes further appends after them.
pub fn journal_round_trip(factory: Factory<'_>) {
    let store = factory();
    let t = id("journal");
    let saved = consistent_record(&t, "journaled", 2000);
    ok("save", store.save(&saved));
    let entries: Vec<_> = (0..4).map(|i| journal_entry("j", i)).collect();
    for e in &entries {
        ok("append", store.append(&t, e));
    }
    let loaded = ok("load", store.load(&t)).unwrap_or_else(|| panic!("journaled record lost"));
    assert_eq!(loaded.journal, entries);
    assert_eq!(loaded.payload, saved.payload);
    assert_eq!(loaded.payload_version, saved.payload_version);
    let mut meta = saved.meta.clone();
    meta.done_bytes = entries[3].done_bytes;
    meta.updated_unix_ms = entries[3].updated_unix_ms;
    assert_eq!(loaded.meta, meta);
    check_journal(&loaded, "j", 4);

    // Saved with a journal: back as saved, and appended to after it.
    let mut with_journal = consistent_record(&id("saved-journal"), "k", 10);
    with_journal.journal = (0..3).map(|i| journal_entry("s", i)).collect();
    ok("save", store.save(&with_journal));
    let loaded = ok("load", store.load(&with_journal.meta.id));
    let loaded = loaded.unwrap_or_else(|| panic!("record saved with a journal lost"));
    assert_eq!(loaded.journal, with_journal.journal);
    assert_eq!(loaded.payload, with_journal.payload);
    ok(
        "append",
        store.append(&with_journal.meta.id, &journal_entry("s", 3)),
    );
    let loaded = ok("load", store.load(&with_journal.meta.id));
    check_journal(&loaded.unwrap_or_else(|| panic!("lost")), "s", 4);

    // An entry may be all zeros and empty.
    let t = id("empty-entry");
    ok("save", store.save(&consistent_record(&t, "k", 1)));
    let empty = JournalEntry {
        done_bytes: 0,
        updated_unix_ms: 0,
        data: Vec::new(),
    };
    ok("append", store.append(&t, &empty));
    let loaded = ok("load", store.load(&t)).unwrap_or_else(|| panic!("lost"));
    assert_eq!(loaded.journal, [empty]);
    assert_eq!(
        (loaded.meta.done_bytes, loaded.meta.updated_unix_ms),
        (0, 0)
    );
}

/// Appending to an id without a record is `NotFound`, and creates nothing.
pub fn append_without_a_record_is_not_found(factory: Factory<'_>) {
    let store = factory();
    let t = id("no-record");
    match store.append(&t, &journal_entry("n", 0)) {
        Err(StoreError::NotFound { id }) => assert_eq!(id, "no-record"),
        other => panic!("append without a record gave {other:?}"),
    }
    assert_eq!(ok("load", store.load(&t)), None);
    assert!(ok("list", store.list()).is_empty());
}

/// A save replaces the journal too (here by an empty one); later appends
/// go to the new record.
pub fn save_compacts_the_journal(factory: Factory<'_>) {
    let store = factory();
    let t = id("compact");
    ok("save", store.save(&consistent_record(&t, "before", 300)));
    for i in 0..3 {
        ok("append", store.append(&t, &journal_entry("old", i)));
    }
    let compacted = consistent_record(&t, "after", 500);
    ok("save", store.save(&compacted));
    assert_eq!(ok("load", store.load(&t)), Some(compacted.clone()));
    for i in 0..2 {
        ok("append", store.append(&t, &journal_entry("new", i)));
    }
    let loaded = ok("load", store.load(&t)).unwrap_or_else(|| panic!("compacted record lost"));
    assert_eq!(loaded.payload, compacted.payload);
    check_journal(&loaded, "new", 2);
    assert_eq!(loaded.journal.len(), 2);
}

/// `list` reports the progress of the journal's last entry.
pub fn list_follows_the_last_entry(factory: Factory<'_>) {
    let store = factory();
    let t = id("listed");
    let saved = consistent_record(&t, "k", 10);
    ok("save", store.save(&saved));
    let summary = |store: &dyn ResumeStore| {
        let mut listed = ok("list", store.list());
        assert_eq!(listed.len(), 1);
        match listed.remove(0).summary {
            Ok(s) => s,
            Err(e) => panic!("listed record unreadable: {e}"),
        }
    };
    assert_eq!(summary(&*store).meta, saved.meta);
    for i in [0, 41] {
        let entry = journal_entry("l", i);
        ok("append", store.append(&t, &entry));
        let s = summary(&*store);
        assert_eq!(
            (s.meta.done_bytes, s.meta.updated_unix_ms),
            (entry.done_bytes, entry.updated_unix_ms)
        );
        assert_eq!(s.payload_bytes, 10, "the payload alone");
    }
}

/// `remove` takes the journal along: appends fail, and a record saved again
/// under the same id starts with an empty journal.
pub fn remove_takes_the_journal_along(factory: Factory<'_>) {
    let store = factory();
    let t = id("removed-journal");
    ok("save", store.save(&consistent_record(&t, "k", 10)));
    ok("append", store.append(&t, &journal_entry("r", 0)));
    ok("remove", store.remove(&t));
    assert_eq!(ok("load", store.load(&t)), None);
    assert!(matches!(
        store.append(&t, &journal_entry("r", 1)),
        Err(StoreError::NotFound { .. })
    ));
    let again = consistent_record(&t, "again", 20);
    ok("save", store.save(&again));
    assert_eq!(ok("load", store.load(&t)), Some(again));
}

/// Threads appending to one transfer at once (its lease held) lose nothing:
/// every entry is there, each thread's in the order it appended them.
pub fn appends_from_several_threads_all_survive(factory: Factory<'_>) {
    const THREADS: usize = 4;
    const APPENDS: u64 = 25;
    let store: Arc<dyn ResumeStore> = Arc::from(factory());
    let t = id("threaded-appends");
    let lease = ok("lease", store.lease(&t));
    ok("save", store.save(&consistent_record(&t, "k", 10)));
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|w| {
            let (store, t, start) = (Arc::clone(&store), t.clone(), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                for i in 0..APPENDS {
                    ok(
                        "append",
                        store.append(&t, &journal_entry(&format!("w{w}"), i)),
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        if thread.join().is_err() {
            panic!("an appending thread panicked");
        }
    }
    let loaded = ok("load", store.load(&t)).unwrap_or_else(|| panic!("record lost"));
    assert_eq!(loaded.journal.len(), THREADS * APPENDS as usize);
    for w in 0..THREADS {
        let tag = format!("w{w}");
        let mine: Vec<_> = loaded
            .journal
            .iter()
            .filter(|e| *e == &journal_entry(&tag, e.done_bytes - 1))
            .cloned()
            .collect();
        let expected: Vec<_> = (0..APPENDS).map(|i| journal_entry(&tag, i)).collect();
        assert!(
            mine == expected,
            "thread {w}'s entries lost or out of order"
        );
    }
    drop(lease);
}

// ----- several processes -----

const ROLE_ENV: &str = "S3TM_CONFORMANCE_CHILD_ROLE";
const LOCATION_ENV: &str = "S3TM_CONFORMANCE_LOCATION";
const ID_ENV: &str = "S3TM_CONFORMANCE_ID";
const MARK: &str = "S3TM-CONFORMANCE:";
// Generous: a child is the test binary starting up on a busy 2-core machine.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
const CHILD_SAVES: usize = 30;

/// Opens a store shared between processes from a location string (for a
/// directory-backed store, the directory).
pub type Opener<'a> = &'a dyn Fn(&str) -> Box<dyn ResumeStore>;

/// The child side of [`multi_process`]. Call it first thing in a `#[test]`
/// of the same test binary, named as `child_test` is given to
/// `multi_process`; it returns `false` (do nothing) unless this process was
/// spawned as a child.
pub fn child_main(open: Opener<'_>) -> bool {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return false;
    };
    let location = std::env::var(LOCATION_ENV).unwrap_or_default();
    let t = id(&std::env::var(ID_ENV).unwrap_or_default());
    let store = open(&location);
    let say = |msg: &str| {
        let mut out = std::io::stdout().lock();
        // A parent that stopped listening has already failed the test.
        let _ = writeln!(out, "{MARK} {msg}");
        let _ = out.flush();
    };
    match role.as_str() {
        "hold-lease" => {
            let lease = match store.lease(&t) {
                Ok(l) => l,
                Err(e) => {
                    say(&format!("ERROR {e}"));
                    return true;
                }
            };
            say("LEASED");
            // Hold until the parent closes stdin (or kills us).
            let mut sink = String::new();
            while std::io::stdin()
                .read_line(&mut sink)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
            drop(lease);
            say("RELEASED");
        }
        "try-lease" => match store.lease(&t) {
            Ok(_) => say("ACQUIRED"),
            Err(StoreError::Locked { .. }) => say("LOCKED"),
            Err(e) => say(&format!("ERROR {e}")),
        },
        "save-loop" => {
            let own = id(&format!("{t}-pid{}", std::process::id()));
            for i in 0..CHILD_SAVES {
                let key = format!("pid{}-save{i}", std::process::id());
                let len = 1 + (i * 104_729 + std::process::id() as usize) % 50_000;
                for target in [&t, &own] {
                    if let Err(e) = store.save(&consistent_record(target, &key, len)) {
                        say(&format!("ERROR {e}"));
                        return true;
                    }
                }
            }
            say("DONE");
        }
        "append-loop" => {
            let _lease = match store.lease(&t) {
                Ok(l) => l,
                Err(e) => {
                    say(&format!("ERROR {e}"));
                    return true;
                }
            };
            let first = match store.load(&t) {
                Ok(Some(r)) => r.journal.len() as u64,
                Ok(None) => match store.save(&consistent_record(&t, APPEND_KEY, 100)) {
                    Ok(()) => 0,
                    Err(e) => {
                        say(&format!("ERROR {e}"));
                        return true;
                    }
                },
                Err(e) => {
                    say(&format!("ERROR {e}"));
                    return true;
                }
            };
            say(&format!("READY {first}"));
            // Until killed; the bound only stops a child whose parent died.
            for i in first..first + 100_000 {
                if let Err(e) = store.append(&t, &journal_entry(APPEND_TAG, i)) {
                    say(&format!("ERROR {e}"));
                    return true;
                }
                say(&format!("APPENDED {i}"));
            }
            say("DONE");
        }
        other => say(&format!("ERROR unknown role {other}")),
    }
    true
}

const APPEND_KEY: &str = "appended-to";
const APPEND_TAG: &str = "mp";

struct ChildProc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl ChildProc {
    fn spawn(child_test: &str, role: &str, location: &str, t: &TransferId) -> Self {
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
        let mut child = Command::new(exe)
            .args([child_test, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, role)
            .env(LOCATION_ENV, location)
            .env(ID_ENV, t.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning the child test binary: {e}"));
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("child stdout missing"));
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The harness may have printed "test name ... " on the same line.
                if let Some((_, msg)) = line.split_once(MARK)
                    && tx.send(msg.trim().to_owned()).is_err()
                {
                    break;
                }
            }
        });
        ChildProc {
            child,
            stdin,
            lines,
        }
    }

    fn expect(&mut self, want: &str) {
        let got = self.line(want);
        assert_eq!(got, want, "child said {got:?}, expected {want:?}");
    }

    /// The child's next message; `want` says what was expected, for errors.
    fn line(&mut self, want: &str) -> String {
        match self.lines.recv_timeout(CHILD_TIMEOUT) {
            Ok(got) => got,
            Err(e) => {
                let _ = self.child.kill();
                panic!("child did not say {want:?} ({e}); is `child_test` the right test name?")
            }
        }
    }

    /// The number after `prefix` in the child's next message.
    fn number(&mut self, prefix: &str) -> u64 {
        let got = self.line(prefix);
        got.strip_prefix(prefix)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("child said {got:?}, expected {prefix:?} and a number"))
    }

    fn finish(mut self) {
        drop(self.stdin.take());
        match self.child.wait() {
            Ok(status) => assert!(status.success(), "child exited with {status}"),
            Err(e) => panic!("waiting for child: {e}"),
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        // Never leave a child holding a lease behind a failed assertion.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks leases and saves across processes by spawning the current test
/// binary as children. `child_test` is the full name of a `#[test]` in the
/// same binary that calls [`child_main`] with an equivalent `open`;
/// `location` says where the shared store lives.
///
/// Checks: a lease held by a child locks out the parent and vice versa;
/// a lease is free again after its holder releases it or is killed; two
/// children and the parent saving at once leave only whole records; a child
/// killed (SIGKILL on Unix) while appending leaves the record with a journal
/// that is a prefix of what it appended, in whole entries, and holding at
/// least every entry whose append had returned; the next child appends after
/// that prefix.
pub fn multi_process(location: &str, open: Opener<'_>, child_test: &str) {
    let store = open(location);
    let t = id("multi-process");

    // A child's lease locks out the parent; releasing it frees the id.
    let mut holder = ChildProc::spawn(child_test, "hold-lease", location, &t);
    holder.expect("LEASED");
    match store.lease(&t) {
        Err(StoreError::Locked { .. }) => {}
        other => panic!("lease held by a child: parent got {other:?}"),
    }
    drop(holder.stdin.take());
    holder.expect("RELEASED");
    holder.finish();
    drop(ok("lease after the child released it", store.lease(&t)));

    // A child killed while holding its lease does not keep it.
    let mut holder = ChildProc::spawn(child_test, "hold-lease", location, &t);
    holder.expect("LEASED");
    holder.kill();
    let lease = ok("lease after the holder was killed", store.lease(&t));

    // The parent's lease locks out a child, until dropped.
    let mut tryer = ChildProc::spawn(child_test, "try-lease", location, &t);
    tryer.expect("LOCKED");
    tryer.finish();
    drop(lease);
    let mut tryer = ChildProc::spawn(child_test, "try-lease", location, &t);
    tryer.expect("ACQUIRED");
    tryer.finish();

    // Two children and the parent replace the same record at once.
    let shared = id("mp-shared");
    let mut writers: Vec<_> = (0..2)
        .map(|_| ChildProc::spawn(child_test, "save-loop", location, &shared))
        .collect();
    for i in 0..CHILD_SAVES {
        let len = 1 + i * 1_337 % 40_000;
        ok(
            "save",
            store.save(&consistent_record(&shared, &format!("parent-save{i}"), len)),
        );
        if let Some(r) = ok("load", store.load(&shared)) {
            check_consistent(&r);
        }
    }
    for w in &mut writers {
        w.expect("DONE");
    }
    writers.into_iter().for_each(ChildProc::finish);
    let listed = ok("list", store.list());
    let mine: Vec<_> = listed
        .iter()
        .filter(|e| e.id.as_str().starts_with("mp-shared"))
        .collect();
    assert_eq!(
        mine.len(),
        3,
        "expected the shared record and one per child"
    );
    for entry in mine {
        let r = ok("load", store.load(&entry.id)).unwrap_or_else(|| panic!("{} lost", entry.id));
        check_consistent(&r);
    }

    // Children appending until killed, one after the other.
    let appended = id("mp-appends");
    let mut at_rest = 0;
    for round in 0..4 {
        let mut child = ChildProc::spawn(child_test, "append-loop", location, &appended);
        let first = child.number("READY");
        assert_eq!(
            first, at_rest,
            "the child loaded another journal than the parent"
        );
        // Let it append a few, then kill it, most likely in the middle of one.
        let stop = first + 3 + round * 5;
        let acknowledged = loop {
            let i = child.number("APPENDED");
            if i + 1 >= stop {
                break i + 1;
            }
        };
        child.kill();
        let r = ok("load", store.load(&appended));
        let r = r.unwrap_or_else(|| panic!("the appended record vanished"));
        assert_eq!(
            r.payload,
            consistent_record(&appended, APPEND_KEY, 100).payload
        );
        check_journal(&r, APPEND_TAG, acknowledged as usize);
        at_rest = r.journal.len() as u64;
    }
    drop(ok(
        "lease after the appender was killed",
        store.lease(&appended),
    ));
}
