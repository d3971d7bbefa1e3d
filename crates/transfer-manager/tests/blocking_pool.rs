//! The async threads never block on disk: every call the manager's async methods make
//! into the checkpoint store runs on the blocking pool (or the checkpoint thread), never
//! on the thread that polls them.

mod common;

use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use common::*;
use s3_testkit::{ALWAYS, FaultProxy, Matcher};
use transfer_manager::store::{JournalEntry, Lease, ListEntry, Record, StoreError};
use transfer_manager::{MemoryStore, ResumeStore, StateStore, TransferId, TransferManager};

/// A store that notes every call made on the runtime's own thread.
struct Watched {
    inner: MemoryStore,
    runtime_thread: ThreadId,
    on_runtime_thread: Mutex<Vec<&'static str>>,
}

impl Watched {
    fn note(&self, call: &'static str) {
        if std::thread::current().id() == self.runtime_thread {
            self.on_runtime_thread.lock().unwrap().push(call);
        }
    }
}

impl ResumeStore for Watched {
    fn save(&self, record: &Record) -> Result<(), StoreError> {
        self.note("save");
        self.inner.save(record)
    }

    fn append(&self, id: &TransferId, entry: &JournalEntry) -> Result<(), StoreError> {
        self.note("append");
        self.inner.append(id, entry)
    }

    fn load(&self, id: &TransferId) -> Result<Option<Record>, StoreError> {
        self.note("load");
        self.inner.load(id)
    }

    fn list(&self) -> Result<Vec<ListEntry>, StoreError> {
        self.note("list");
        self.inner.list()
    }

    fn remove(&self, id: &TransferId) -> Result<(), StoreError> {
        self.note("remove");
        self.inner.remove(id)
    }

    fn lease(&self, id: &TransferId) -> Result<Lease, StoreError> {
        self.note("lease");
        self.inner.lease(id)
    }
}

fn manager(
    server: &s3_testkit::S3sFsServer,
    proxy: &FaultProxy,
    store: &Arc<Watched>,
) -> TransferManager {
    manager_with(
        &proxy.endpoint(),
        server.access_key(),
        server.secret_key(),
        server.region(),
        // Unused: the store below takes its place.
        &std::env::temp_dir(),
        |c| {
            c.state = StateStore::Custom(store.clone());
            c.set_max_in_flight(2);
        },
    )
}

// One thread: every task of the test, the manager's included, is polled on it.
#[tokio::test(flavor = "current_thread")]
async fn async_methods_reach_the_store_only_from_the_blocking_pool() {
    let server = s3_testkit::start_s3s_fs().await;
    server.create_bucket("bucket").unwrap();
    let proxy = FaultProxy::start(&server.endpoint()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Watched {
        inner: MemoryStore::new(),
        runtime_thread: std::thread::current().id(),
        on_runtime_thread: Mutex::new(Vec::new()),
    });
    let src = random_file(dir.path(), "src", 20 * MIB, 41);

    // Started, paused and left behind by one manager.
    let tm = manager(&server, &proxy, &store);
    proxy.delay(Matcher::upload_part(), Duration::from_millis(150), ALWAYS);
    let mut paused = Vec::new();
    for key in ["a", "b"] {
        let h = tm.upload_file("bucket", key, &src).await.unwrap();
        wait_for_progress(&h, 5 * MIB).await;
        h.pause().await.unwrap();
        paused.push(h.id().clone());
    }
    drop(tm);
    proxy.clear();

    // Resumed, cancelled, downloaded and cancelled again by another.
    let tm = manager(&server, &proxy, &store);
    tm.resume(&paused[0]).await.unwrap().join().await.unwrap();
    let cancelled = tm.cancel_object("bucket", "b").await.unwrap();
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    assert!(cancelled[0].1.is_ok(), "{cancelled:?}");
    let dest = dir.path().join("dest");
    tm.download_file("bucket", "a", &dest)
        .await
        .unwrap()
        .join()
        .await
        .unwrap();
    assert_eq!(sha256(&dest), sha256(&src));
    assert!(tm.resume_all().await.unwrap().is_empty());
    assert!(tm.cancel_all().await.unwrap().is_empty());

    let calls = store.on_runtime_thread.lock().unwrap().clone();
    assert!(
        calls.is_empty(),
        "store calls on the async thread: {calls:?}"
    );
}
