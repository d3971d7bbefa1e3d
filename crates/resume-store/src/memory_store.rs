use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{JournalEntry, Lease, ListEntry, Record, ResumeStore, StoreError, TransferId};

/// A [`ResumeStore`] that keeps records in memory, for tests and for callers
/// that do not want checkpoints to outlive the process.
///
/// Clones share the same records and leases, like two handles on one
/// directory. Leases are exclusive within the process; there is nothing to
/// share with other processes.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    records: Mutex<BTreeMap<TransferId, Record>>,
    leases: Mutex<HashSet<TransferId>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }
}

// A panic elsewhere while holding the lock cannot leave a map half-updated
// (every critical section is a single insert or remove), so the data is
// still good and poisoning is ignored rather than spread.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ResumeStore for MemoryStore {
    fn save(&self, record: &Record) -> Result<(), StoreError> {
        lock(&self.inner.records).insert(record.meta.id.clone(), record.clone());
        Ok(())
    }

    fn append(&self, id: &TransferId, entry: &JournalEntry) -> Result<(), StoreError> {
        match lock(&self.inner.records).get_mut(id) {
            Some(record) => {
                record.journal.push(entry.clone());
                Ok(())
            }
            None => Err(StoreError::NotFound { id: id.to_string() }),
        }
    }

    fn load(&self, id: &TransferId) -> Result<Option<Record>, StoreError> {
        Ok(lock(&self.inner.records)
            .get(id)
            .map(|r| r.clone().with_journal_progress()))
    }

    fn list(&self) -> Result<Vec<ListEntry>, StoreError> {
        Ok(lock(&self.inner.records)
            .iter()
            .map(|(id, record)| ListEntry {
                id: id.clone(),
                path: None,
                summary: Ok(record.summary()),
            })
            .collect())
    }

    fn remove(&self, id: &TransferId) -> Result<(), StoreError> {
        match lock(&self.inner.records).remove(id) {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound { id: id.to_string() }),
        }
    }

    fn lease(&self, id: &TransferId) -> Result<Lease, StoreError> {
        if !lock(&self.inner.leases).insert(id.clone()) {
            return Err(StoreError::Locked { id: id.to_string() });
        }
        let guard = MemoryLease {
            inner: Arc::clone(&self.inner),
            id: id.clone(),
        };
        Ok(Lease::new(id.clone(), guard))
    }
}

struct MemoryLease {
    inner: Arc<Inner>,
    id: TransferId,
}

impl Drop for MemoryLease {
    fn drop(&mut self) {
        lock(&self.inner.leases).remove(&self.id);
    }
}
