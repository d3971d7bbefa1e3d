//! Checkpoints go to the resume store on one thread per store, shared by every transfer
//! that saves there, in the order each transfer sent them.
//!
//! A transfer sends full records (`save`: its whole checkpoint, which also compacts the
//! record's journal), journal entries (`append`), a `remove`, and waits with `flush`.
//! What it has sent and the thread has not written yet is coalesced, per transfer, to
//! at most one full record plus the entries sent after it: a full record supersedes the
//! record and entries sent before it (it holds all they say), and a remove supersedes
//! everything. So the work waiting is bounded by transfers x entries between two full
//! records, however far the store falls behind, and an entry is only ever dropped for a
//! full record sent after it.
//!
//! Before writing a record or entries that name bytes of a download's partial file, the
//! thread makes those bytes durable (`Sink::sync_blocking`), once per batch: everything
//! in a batch was sent after its bytes were written. After a record or entry of a
//! transfer failed to be written, that transfer's later entries are not written (and
//! are reported as failed) until one of its full records is: the store's journal stays
//! a prefix of the entries sent since the record it extends.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use resume_store::{JournalEntry, Record, RecordMeta, ResumeStore, StoreError, TransferId};
use serde::{Deserialize, Serialize};
use transfer_core::{Checkpoint, ChecksumAlgorithm};

use crate::io::Sink;

/// Format version of [`Stored`] payloads, and of the journal entries saved after them
/// (JSON of a `transfer_core::Delta`): a change to either bumps it, so an older s3tm
/// refuses the record as newer rather than calling it unreadable.
pub(crate) const STORED_VERSION: u32 = 1;

/// What a record's payload holds: the machine's checkpoint plus what the driver needs to
/// rebuild the transfer in another process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub(crate) bucket: String,
    pub(crate) key: String,
    /// The source file of an upload, or the destination of a download.
    pub(crate) local_path: PathBuf,
    pub(crate) part_size_bytes: u64,
    pub(crate) multipart_threshold_bytes: u64,
    pub(crate) checksum: Option<ChecksumAlgorithm>,
    /// `None` until the machine emitted one (a single PutObject never does).
    pub(crate) checkpoint: Option<Checkpoint>,
    /// The server the transfer talks to; `None` in records of s3tm before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) endpoint: Option<SavedEndpoint>,
}

/// The server a saved transfer was started against, so that it is resumed against the
/// same one. It holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedEndpoint {
    /// The custom endpoint (`http://127.0.0.1:9000`), or `None` for AWS.
    pub endpoint_url: Option<String>,
    /// The region requests were signed for.
    pub region: String,
    /// Path-style addressing, when it was forced one way.
    pub path_style: Option<bool>,
}

impl SavedEndpoint {
    /// Where a manager with `config` sends its requests.
    pub fn of(config: &crate::Config) -> SavedEndpoint {
        SavedEndpoint {
            endpoint_url: config.endpoint_url.clone(),
            region: config.region.clone(),
            path_style: config.path_style,
        }
    }

    /// Whether both name the same server and region (addressing aside, which reaches the
    /// same bucket either way).
    pub fn same_server(&self, other: &SavedEndpoint) -> bool {
        let url = |e: &SavedEndpoint| {
            e.endpoint_url
                .as_deref()
                .map(|u| u.trim_end_matches('/').to_ascii_lowercase())
        };
        url(self) == url(other) && self.region == other.region
    }
}

impl std::fmt::Display for SavedEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.endpoint_url {
            Some(url) => write!(f, "{url} (region {})", self.region),
            None => write!(f, "AWS S3 in {}", self.region),
        }
    }
}

pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn record(meta: &RecordMeta, stored: &Stored) -> Result<Record, StoreError> {
    let payload = serde_json::to_vec(stored).map_err(|e| StoreError::Encode {
        id: meta.id.to_string(),
        reason: e.to_string(),
    })?;
    Ok(Record {
        meta: meta.clone(),
        payload_version: STORED_VERSION,
        payload,
        journal: Vec::new(),
    })
}

/// Sends one transfer's checkpoints to the checkpoint thread of its store.
pub(crate) struct Persister {
    shared: Arc<Shared>,
    slot: SlotId,
}

type SlotId = u64;

/// The checkpoint thread of one store and the work waiting for it.
struct Shared {
    store: Arc<dyn ResumeStore>,
    state: Mutex<State>,
    /// Wakes the thread: work was queued, or a transfer went away.
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// One per transfer (per `Persister`), until its work is written after it went away.
    slots: HashMap<SlotId, Slot>,
    /// Transfers with work waiting, in the order they first had some.
    ready: VecDeque<SlotId>,
    next_slot: SlotId,
    /// Whether a thread serves this store; it stops when no transfer is left.
    running: bool,
}

struct Slot {
    /// A download's partial file, made durable before anything naming its bytes.
    sink: Option<Arc<Sink>>,
    pending: Pending,
    /// In `ready`.
    queued: bool,
    /// Its batch is being written.
    busy: bool,
    /// How many messages the transfer sent, and how many of them are written (or
    /// superseded); a flush waits for the latter to reach the former.
    sent: u64,
    done: u64,
    flushes: Vec<(u64, tokio::sync::oneshot::Sender<Result<(), StoreError>>)>,
    /// The last failure since the last flush, which reports it.
    failed: Option<StoreError>,
    /// Warned that checkpoints fail, and not yet that they work again.
    failing: bool,
    /// A record or entry failed to be written: entries wait for a full record.
    gap: bool,
    /// Its `Persister` is alive.
    attached: bool,
    /// Its thread died (a store that panicked): nothing more is written for it.
    dead: bool,
}

/// A transfer's work not written yet, in the order it is written: a remove, a full
/// record, the entries sent after it.
#[derive(Default)]
struct Pending {
    remove: Option<TransferId>,
    save: Option<Box<Record>>,
    appends: Vec<(TransferId, JournalEntry)>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.remove.is_none() && self.save.is_none() && self.appends.is_empty()
    }
}

/// The stores that have a checkpoint thread, found again by the `Arc` the manager
/// holds, so that all the transfers of one store share one thread. Entries die with
/// their last transfer and thread.
static THREADS: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

// Every critical section leaves the state consistent before anything that can panic
// (stores are called outside the lock), so a poisoned lock still holds good data.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn stopped() -> StoreError {
    StoreError::Io {
        path: PathBuf::from("checkpoint thread"),
        source: std::io::Error::other("the checkpoint thread is not running"),
    }
}

impl Persister {
    /// Attaches a transfer to the checkpoint thread of `store`, starting one if none
    /// runs. With a download's `sink`, its bytes are made durable before each record or
    /// entry is written, so a checkpoint never names bytes a power loss could take back.
    pub(crate) fn start(store: Arc<dyn ResumeStore>, sink: Option<Arc<Sink>>) -> Persister {
        let shared = {
            let mut threads = lock(&THREADS);
            threads.retain(|t| t.strong_count() > 0);
            let found = threads
                .iter()
                .filter_map(Weak::upgrade)
                .find(|t| Arc::ptr_eq(&t.store, &store));
            found.unwrap_or_else(|| {
                let shared = Arc::new(Shared {
                    store,
                    state: Mutex::default(),
                    wake: Condvar::new(),
                });
                threads.push(Arc::downgrade(&shared));
                shared
            })
        };
        let mut state = lock(&shared.state);
        let slot = state.next_slot;
        state.next_slot += 1;
        let mut dead = false;
        if !state.running {
            let thread = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name("s3tm-checkpoints".into())
                .spawn(move || thread.run());
            match spawned {
                Ok(_) => state.running = true,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the checkpoint thread; checkpoints will not be saved");
                    dead = true;
                }
            }
        }
        state.slots.insert(
            slot,
            Slot {
                sink,
                pending: Pending::default(),
                queued: false,
                busy: false,
                sent: 0,
                done: 0,
                flushes: Vec::new(),
                failed: None,
                failing: false,
                gap: false,
                attached: true,
                dead,
            },
        );
        drop(state);
        Persister { shared, slot }
    }

    /// Queues a full record, superseding what this transfer queued before it and has
    /// not been written yet (a remove aside).
    pub(crate) fn save(&self, record: Record) {
        self.send(|p| {
            p.save = Some(Box::new(record));
            p.appends.clear();
        });
    }

    /// Whether an entry appended now would wait for a full record: one of this
    /// transfer's writes failed and no full record is queued since. The driver then
    /// saves whole rather than let its checkpoints stop until the next one.
    pub(crate) fn needs_full(&self) -> bool {
        let state = lock(&self.shared.state);
        state
            .slots
            .get(&self.slot)
            .is_some_and(|slot| slot.gap && slot.pending.save.is_none())
    }

    /// Queues a journal entry, to be appended after the records and entries queued
    /// before it.
    pub(crate) fn append(&self, id: TransferId, entry: JournalEntry) {
        self.send(|p| p.appends.push((id, entry)));
    }

    /// Queues the removal of the transfer's record, superseding everything it queued
    /// before and has not been written yet.
    pub(crate) fn remove(&self, id: TransferId) {
        self.send(|p| {
            *p = Pending {
                remove: Some(id),
                ..Pending::default()
            };
        });
    }

    fn send(&self, add: impl FnOnce(&mut Pending)) {
        let mut state = lock(&self.shared.state);
        let state = &mut *state;
        let Some(slot) = state.slots.get_mut(&self.slot) else {
            return;
        };
        if slot.dead {
            return;
        }
        add(&mut slot.pending);
        slot.sent += 1;
        if !slot.queued && !slot.busy {
            slot.queued = true;
            state.ready.push_back(self.slot);
        }
        self.shared.wake.notify_all();
    }

    /// Waits until everything this transfer sent so far is durable (or superseded);
    /// reports a failed save since the last flush.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        let reply = {
            let mut state = lock(&self.shared.state);
            let Some(slot) = state.slots.get_mut(&self.slot) else {
                return Err(stopped());
            };
            if slot.dead {
                return Err(stopped());
            }
            if slot.done >= slot.sent {
                return slot.failed.take().map_or(Ok(()), Err);
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            slot.flushes.push((slot.sent, tx));
            rx
        };
        reply.await.unwrap_or_else(|_| Err(stopped()))
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        if let Some(slot) = state.slots.get_mut(&self.slot) {
            slot.attached = false;
            // What it sent is still written; the slot goes once it is.
            if slot.dead || (slot.pending.is_empty() && !slot.busy) {
                state.slots.remove(&self.slot);
            }
        }
        // The thread may have nobody left to wait for.
        self.shared.wake.notify_all();
    }
}

/// What writing one record, entry or remove came to.
struct Written {
    id: TransferId,
    remove: bool,
    result: Result<(), StoreError>,
}

impl Shared {
    /// The checkpoint thread: writes each transfer's batch in turn, until no transfer
    /// is attached and nothing waits.
    fn run(self: Arc<Self>) {
        // Unless the loop ends normally, the thread died (a store that panicked): the
        // transfers waiting on it are told, and the next transfer starts a new one.
        let mut guard = DeathGuard(Some(&self));
        let mut state = lock(&self.state);
        loop {
            let Some(id) = state.ready.pop_front() else {
                if state.slots.values().any(|s| s.attached && !s.dead) {
                    state = self
                        .wake
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                    continue;
                }
                state.running = false;
                break;
            };
            let Some(slot) = state.slots.get_mut(&id) else {
                continue;
            };
            slot.queued = false;
            slot.busy = true;
            let batch = std::mem::take(&mut slot.pending);
            let upto = slot.sent;
            let sink = slot.sink.clone();
            let mut gap = slot.gap;
            drop(state);

            let written = write_batch(&*self.store, sink.as_deref(), batch, &mut gap);

            state = lock(&self.state);
            let Some(slot) = state.slots.get_mut(&id) else {
                continue;
            };
            slot.busy = false;
            slot.gap = gap;
            slot.done = upto;
            for w in written {
                slot.report(w);
            }
            let (answered, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut slot.flushes)
                .into_iter()
                .partition(|(upto, _)| *upto <= slot.done);
            slot.flushes = waiting;
            for (_, reply) in answered {
                let _ = reply.send(slot.failed.take().map_or(Ok(()), Err));
            }
            if !slot.pending.is_empty() {
                slot.queued = true;
                state.ready.push_back(id);
            } else if !slot.attached {
                state.slots.remove(&id);
            }
        }
        drop(state);
        guard.0 = None;
    }
}

impl Slot {
    /// Records what writing came to: a failure for the next flush, and a warning when
    /// saves start failing and when they work again, rather than one a part.
    fn report(&mut self, w: Written) {
        let id = &w.id;
        match (w.remove, w.result) {
            (true, Ok(()) | Err(StoreError::NotFound { .. })) => {}
            (true, Err(e)) => {
                tracing::warn!(transfer = %id, error = %e, "checkpoint not removed");
                self.failed = Some(e);
            }
            (false, Ok(())) => {
                if std::mem::take(&mut self.failing) {
                    tracing::warn!(transfer = %id, "checkpoints are saved again");
                }
            }
            (false, Err(e)) => {
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(transfer = %id, error = %e, "checkpoint not saved; the transfer goes on, but a crash now would lose the work since the last saved checkpoint");
                }
                self.failed = Some(e);
            }
        }
    }
}

/// Writes one transfer's batch: its remove, then (its partial file synced first) its
/// full record and its entries. `gap` says whether entries must wait for a full record,
/// and is updated.
fn write_batch(
    store: &dyn ResumeStore,
    sink: Option<&Sink>,
    batch: Pending,
    gap: &mut bool,
) -> Vec<Written> {
    let Pending {
        remove,
        save,
        appends,
    } = batch;
    let mut written = Vec::new();
    if let Some(id) = remove {
        let result = store.remove(&id);
        written.push(Written {
            id,
            remove: true,
            result,
        });
    }
    let Some(first) = save
        .as_ref()
        .map(|r| r.meta.id.clone())
        .or_else(|| appends.first().map(|(id, _)| id.clone()))
    else {
        return written;
    };
    // Only what will be written needs the bytes it names to be durable.
    if (save.is_some() || !*gap)
        && let Some(sink) = sink
        && let Err(e) = sink.sync_blocking()
    {
        *gap = true;
        written.push(Written {
            id: first,
            remove: false,
            result: Err(StoreError::Io {
                path: PathBuf::from("partial file"),
                source: e,
            }),
        });
        return written;
    }
    if let Some(record) = save {
        let result = store.save(&record);
        *gap = result.is_err();
        written.push(Written {
            id: record.meta.id.clone(),
            remove: false,
            result,
        });
    }
    for (id, entry) in appends {
        if *gap {
            // Reported once for all the entries of the batch.
            written.push(Written {
                id,
                remove: false,
                result: Err(StoreError::Io {
                    path: PathBuf::from("checkpoint journal"),
                    source: std::io::Error::other(
                        "not saved: an earlier checkpoint of this transfer was not saved, so \
                         its journal waits for the next full checkpoint",
                    ),
                }),
            });
            break;
        }
        let result = store.append(&id, &entry);
        *gap = result.is_err();
        written.push(Written {
            id,
            remove: false,
            result,
        });
    }
    written
}

/// Marks the transfers of a checkpoint thread that died as such, answering their
/// flushes with "not running", and lets the next transfer start a new thread.
struct DeathGuard<'a>(Option<&'a Shared>);

impl Drop for DeathGuard<'_> {
    fn drop(&mut self) {
        let Some(shared) = self.0 else {
            return;
        };
        let mut state = lock(&shared.state);
        state.running = false;
        state.ready.clear();
        state.slots.retain(|_, slot| slot.attached);
        for slot in state.slots.values_mut() {
            slot.dead = true;
            slot.pending = Pending::default();
            // Dropping the senders answers the flushes with "not running".
            slot.flushes.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::thread::ThreadId;
    use std::time::Duration;

    use resume_store::{Direction, Lease, ListEntry, MemoryStore, TransferState};

    use super::*;

    /// A `MemoryStore` that logs every write, and can hold writes at a gate, fail the
    /// next few, or panic.
    #[derive(Default)]
    struct TestStore {
        inner: MemoryStore,
        log: Mutex<Vec<String>>,
        logged: Condvar,
        threads: Mutex<HashSet<ThreadId>>,
        held: Mutex<bool>,
        released: Condvar,
        fail: AtomicUsize,
        panic: AtomicBool,
    }

    impl TestStore {
        fn write(&self, what: String) -> Result<(), StoreError> {
            lock(&self.threads).insert(std::thread::current().id());
            lock(&self.log).push(what);
            self.logged.notify_all();
            let mut held = lock(&self.held);
            while *held {
                held = self.released.wait(held).unwrap();
            }
            drop(held);
            assert!(
                !self.panic.load(Ordering::SeqCst),
                "this store cannot write"
            );
            if self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(StoreError::Io {
                    path: PathBuf::from("test store"),
                    source: std::io::Error::other("disk full"),
                });
            }
            Ok(())
        }

        fn hold(&self) {
            *lock(&self.held) = true;
        }

        fn release(&self) {
            *lock(&self.held) = false;
            self.released.notify_all();
        }

        /// Waits until `n` writes have begun.
        fn wait_for(&self, n: usize) {
            let log = lock(&self.log);
            let (log, timeout) = self
                .logged
                .wait_timeout_while(log, Duration::from_secs(10), |l| l.len() < n)
                .unwrap();
            assert!(!timeout.timed_out(), "only {log:?} written");
        }

        fn log(&self) -> Vec<String> {
            lock(&self.log).clone()
        }
    }

    impl ResumeStore for TestStore {
        fn save(&self, record: &Record) -> Result<(), StoreError> {
            self.write(format!("save {} {}", record.meta.id, record.meta.key))?;
            self.inner.save(record)
        }
        fn append(&self, id: &TransferId, entry: &JournalEntry) -> Result<(), StoreError> {
            let data = String::from_utf8_lossy(&entry.data);
            self.write(format!("append {id} {data}"))?;
            self.inner.append(id, entry)
        }
        fn load(&self, id: &TransferId) -> Result<Option<Record>, StoreError> {
            self.inner.load(id)
        }
        fn list(&self) -> Result<Vec<ListEntry>, StoreError> {
            self.inner.list()
        }
        fn remove(&self, id: &TransferId) -> Result<(), StoreError> {
            self.write(format!("remove {id}"))?;
            self.inner.remove(id)
        }
        fn lease(&self, id: &TransferId) -> Result<Lease, StoreError> {
            self.inner.lease(id)
        }
    }

    fn id(s: &str) -> TransferId {
        TransferId::new(s).unwrap()
    }

    fn rec(t: &str, key: &str) -> Record {
        Record {
            meta: RecordMeta {
                id: id(t),
                direction: Direction::Upload,
                bucket: "bucket".into(),
                key: key.into(),
                local_path: PathBuf::from("/data/file"),
                done_bytes: 0,
                total_bytes: 100,
                created_unix_ms: 1,
                updated_unix_ms: 1,
                state: TransferState::Running,
                kind: Default::default(),
            },
            payload_version: STORED_VERSION,
            payload: key.as_bytes().to_vec(),
            journal: Vec::new(),
        }
    }

    fn entry(data: &str) -> JournalEntry {
        JournalEntry {
            done_bytes: data.len() as u64,
            updated_unix_ms: 2,
            data: data.as_bytes().to_vec(),
        }
    }

    fn setup() -> (Arc<TestStore>, Persister) {
        let store = Arc::new(TestStore::default());
        let p = Persister::start(store.clone(), None);
        (store, p)
    }

    fn pending(p: &Persister) -> (Option<String>, Option<String>, usize) {
        let state = lock(&p.shared.state);
        let slot = &state.slots[&p.slot];
        (
            slot.pending.remove.as_ref().map(|id| id.to_string()),
            slot.pending.save.as_ref().map(|r| r.meta.key.clone()),
            slot.pending.appends.len(),
        )
    }

    #[tokio::test]
    async fn each_transfer_is_written_in_the_order_it_sent() {
        let (store, p) = setup();
        let q = Persister::start(store.clone(), None);
        p.save(rec("p", "r0"));
        q.save(rec("q", "r0"));
        p.append(id("p"), entry("a1"));
        q.append(id("q"), entry("a1"));
        p.append(id("p"), entry("a2"));
        q.append(id("q"), entry("a2"));
        p.flush().await.unwrap();
        q.flush().await.unwrap();
        for t in ["p", "q"] {
            let mine: Vec<_> = store
                .log()
                .into_iter()
                .filter(|l| l.contains(&format!(" {t} ")))
                .collect();
            assert_eq!(
                mine,
                [
                    format!("save {t} r0"),
                    format!("append {t} a1"),
                    format!("append {t} a2")
                ]
            );
            let loaded = store.load(&id(t)).unwrap().unwrap();
            assert_eq!(loaded.journal, [entry("a1"), entry("a2")]);
        }
        // A full record compacts: the entries after it go to it.
        p.save(rec("p", "r1"));
        p.append(id("p"), entry("a3"));
        p.flush().await.unwrap();
        let loaded = store.load(&id("p")).unwrap().unwrap();
        assert_eq!(
            (loaded.payload, loaded.journal),
            (b"r1".to_vec(), vec![entry("a3")])
        );
        assert_eq!(lock(&store.threads).len(), 1, "one thread for the store");
    }

    #[tokio::test]
    async fn a_full_record_supersedes_what_was_queued_before_it() {
        let (store, p) = setup();
        store.hold();
        p.save(rec("t", "r0"));
        store.wait_for(1);
        p.append(id("t"), entry("a1"));
        p.save(rec("t", "r1"));
        p.append(id("t"), entry("a2"));
        p.append(id("t"), entry("a3"));
        p.save(rec("t", "r2"));
        p.append(id("t"), entry("a4"));
        p.append(id("t"), entry("a5"));
        assert_eq!(pending(&p), (None, Some("r2".into()), 2));
        store.release();
        p.flush().await.unwrap();
        assert_eq!(
            store.log(),
            ["save t r0", "save t r2", "append t a4", "append t a5"]
        );
        let loaded = store.load(&id("t")).unwrap().unwrap();
        assert_eq!(
            (loaded.payload, loaded.journal),
            (b"r2".to_vec(), vec![entry("a4"), entry("a5")])
        );
    }

    #[tokio::test]
    async fn entries_are_kept_however_far_behind_until_a_full_record_comes() {
        let (store, p) = setup();
        store.hold();
        p.save(rec("t", "r0"));
        store.wait_for(1);
        for i in 0..10_000 {
            p.append(id("t"), entry(&format!("a{i}")));
        }
        assert_eq!(pending(&p), (None, None, 10_000), "no entry dropped");
        p.save(rec("t", "r1"));
        assert_eq!(pending(&p), (None, Some("r1".into()), 0), "bounded");
        store.release();
        p.flush().await.unwrap();
        assert_eq!(store.log(), ["save t r0", "save t r1"]);
    }

    #[tokio::test]
    async fn a_remove_supersedes_everything_queued_before_it() {
        let (store, p) = setup();
        store.hold();
        p.save(rec("t", "r0"));
        store.wait_for(1);
        p.append(id("t"), entry("a1"));
        p.save(rec("t", "r1"));
        p.append(id("t"), entry("a2"));
        p.remove(id("t"));
        assert_eq!(pending(&p), (Some("t".into()), None, 0));
        // What comes after a remove is kept, after it.
        p.save(rec("t", "r2"));
        p.append(id("t"), entry("a3"));
        assert_eq!(pending(&p), (Some("t".into()), Some("r2".into()), 1));
        store.release();
        p.flush().await.unwrap();
        assert_eq!(
            store.log(),
            ["save t r0", "remove t", "save t r2", "append t a3"]
        );
        p.remove(id("t"));
        p.flush().await.unwrap();
        assert_eq!(store.load(&id("t")).unwrap(), None);
        // Removing what is not there is not a failure.
        p.remove(id("t"));
        p.flush().await.unwrap();
    }

    #[tokio::test]
    async fn flush_waits_for_what_was_sent() {
        let (store, p) = setup();
        store.hold();
        p.save(rec("t", "r0"));
        p.append(id("t"), entry("a1"));
        let waited = tokio::time::timeout(Duration::from_millis(100), p.flush()).await;
        assert!(waited.is_err(), "flush returned while the save was held");
        store.release();
        p.flush().await.unwrap();
        assert_eq!(
            store.load(&id("t")).unwrap().unwrap().journal,
            [entry("a1")]
        );
    }

    #[tokio::test]
    async fn flush_reports_a_failure_once_and_entries_wait_for_a_full_record() {
        let (store, p) = setup();
        store.fail.store(1, Ordering::SeqCst);
        p.save(rec("t", "r0"));
        p.flush().await.unwrap_err();
        p.flush().await.unwrap();

        // The store has no r0: entries sent after it are not appended to anything older.
        p.append(id("t"), entry("a1"));
        p.append(id("t"), entry("a2"));
        let e = p.flush().await.unwrap_err();
        assert!(
            e.to_string().contains("waits for the next full checkpoint"),
            "{e}"
        );
        assert_eq!(store.log(), ["save t r0"]);

        p.save(rec("t", "r1"));
        p.append(id("t"), entry("a3"));
        p.flush().await.unwrap();
        let loaded = store.load(&id("t")).unwrap().unwrap();
        assert_eq!(
            (loaded.payload, loaded.journal),
            (b"r1".to_vec(), vec![entry("a3")])
        );

        // A failed entry stops the next ones too, until a full record; the driver
        // asks, and saves whole at once rather than waiting for the next pause.
        assert!(!p.needs_full());
        store.fail.store(1, Ordering::SeqCst);
        p.append(id("t"), entry("a4"));
        p.flush().await.unwrap_err();
        assert!(p.needs_full(), "after a failed entry");
        p.append(id("t"), entry("a5"));
        p.flush().await.unwrap_err();
        p.save(rec("t", "r2"));
        assert!(!p.needs_full(), "a full record is queued");
        p.append(id("t"), entry("a6"));
        p.flush().await.unwrap();
        let log = store.log();
        assert_eq!(
            log[log.len() - 3..],
            ["append t a4", "save t r2", "append t a6"]
        );
    }

    #[tokio::test]
    async fn one_thread_per_store_gone_with_its_last_transfer() {
        let (store, p) = setup();
        let q = Persister::start(store.clone(), None);
        assert!(Arc::ptr_eq(&p.shared, &q.shared));
        let other = Persister::start(Arc::new(MemoryStore::new()), None);
        assert!(!Arc::ptr_eq(&p.shared, &other.shared));

        let shared = Arc::downgrade(&p.shared);
        p.save(rec("p", "r0"));
        drop(p);
        q.flush().await.unwrap();
        drop(q);
        // The thread writes what a dropped transfer sent, then stops with the last one.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while shared.strong_count() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the thread did not stop"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(store.log(), ["save p r0"]);
    }

    #[tokio::test]
    async fn a_thread_that_died_is_reported_and_the_next_transfer_gets_a_new_one() {
        let (store, p) = setup();
        store.panic.store(true, Ordering::SeqCst);
        p.save(rec("p", "r0"));
        let e = p.flush().await.unwrap_err();
        assert!(e.to_string().contains("not running"), "{e}");
        p.save(rec("p", "r1"));
        assert!(p.flush().await.is_err(), "still dead for that transfer");

        store.panic.store(false, Ordering::SeqCst);
        let q = Persister::start(store.clone(), None);
        q.save(rec("q", "r0"));
        q.flush().await.unwrap();
        assert!(store.load(&id("q")).unwrap().is_some());
        assert_eq!(lock(&store.threads).len(), 2);
    }
}
