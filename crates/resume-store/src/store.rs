use std::fmt;

use crate::{ListEntry, Record, StoreError, TransferId};

/// Durable storage of transfer checkpoints.
///
/// All methods are synchronous and may block on disk (or network) IO; async
/// callers run them on a blocking thread. The trait is object safe so a
/// driver can hold an `Arc<dyn ResumeStore>` and a backend can be chosen at
/// run time.
///
/// The store does not make callers hold a lease to `save` or `remove`;
/// the lease is the agreement between drivers about who may. A driver takes
/// [`ResumeStore::lease`] before resuming a transfer and keeps the [`Lease`]
/// for as long as it writes checkpoints.
pub trait ResumeStore: Send + Sync {
    /// Stores `record` under `record.meta.id`, replacing any previous record
    /// atomically: after a crash at any point, `load` returns either the old
    /// or the new record, whole.
    fn save(&self, record: &Record) -> Result<(), StoreError>;

    /// Returns the record for `id`, or `None` if there is none. A record that
    /// exists but cannot be read is an error, never `None`.
    fn load(&self, id: &TransferId) -> Result<Option<Record>, StoreError>;

    /// Lists every stored record, readable or not, sorted by id. Only a
    /// failure to enumerate the store itself fails the call.
    fn list(&self) -> Result<Vec<ListEntry>, StoreError>;

    /// Deletes the record for `id`, even a corrupt one; returns
    /// [`StoreError::NotFound`] if there is none.
    fn remove(&self, id: &TransferId) -> Result<(), StoreError>;

    /// Takes the exclusive lease on `id`, whether or not a record exists yet.
    /// Fails with [`StoreError::Locked`] while any other lease on `id` is
    /// alive, in this process or another. Dropping the `Lease` releases it;
    /// so does the holder's process dying.
    fn lease(&self, id: &TransferId) -> Result<Lease, StoreError>;
}

/// Proof of exclusive access to one transfer; dropping it releases the lease.
#[must_use = "the lease is released as soon as it is dropped"]
pub struct Lease {
    id: TransferId,
    // Each backend releases its lease in this guard's `Drop`.
    _guard: Box<dyn Send + Sync>,
}

impl Lease {
    /// Wraps a backend's guard. Backends call this from
    /// [`ResumeStore::lease`]; `guard` must release the lease when dropped.
    pub fn new(id: TransferId, guard: impl Send + Sync + 'static) -> Self {
        Lease {
            id,
            _guard: Box::new(guard),
        }
    }

    /// The transfer this lease is for.
    pub fn id(&self) -> &TransferId {
        &self.id
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease").field("id", &self.id).finish()
    }
}
