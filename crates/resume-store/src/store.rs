use std::fmt;

use crate::{JournalEntry, ListEntry, Record, StoreError, TransferId};

/// Durable storage of transfer checkpoints.
///
/// All methods are synchronous and may block on disk (or network) IO; async
/// callers run them on a blocking thread. The trait is object safe so a
/// driver can hold an `Arc<dyn ResumeStore>` and a backend can be chosen at
/// run time.
///
/// The store does not make callers hold a lease to `save`, `append` or
/// `remove`; the lease is the agreement between drivers about who may. A
/// driver takes [`ResumeStore::lease`] before resuming a transfer and keeps
/// the [`Lease`] for as long as it writes checkpoints. Stores rely on it: with
/// two writers of one transfer (two processes, or two store handles of one
/// directory) saves stay whole, but appends may go to a journal the other
/// writer's save has just replaced.
///
/// # Records and their journals
///
/// A record is a payload saved whole plus a journal: small entries appended
/// one at a time, at a constant cost, so that a transfer of 10,000 parts need
/// not rewrite its whole checkpoint after every part. What an entry means is
/// the caller's business (typically what changed since the payload); the
/// caller compacts from time to time by folding the entries into a new
/// payload and saving it, which starts an empty journal.
///
/// - [`save`](ResumeStore::save) replaces the record and its journal with
///   exactly `record` and `record.journal`.
/// - [`append`](ResumeStore::append) adds one entry to the journal of the
///   current record, durably.
/// - [`load`](ResumeStore::load) and [`list`](ResumeStore::list) return the
///   record with its journal, oldest entry first, and report the progress of
///   the last entry (its `done_bytes` and `updated_unix_ms` replace the
///   record's own in [`RecordMeta`](crate::RecordMeta)).
/// - After a crash at any point, `load` returns a record and a prefix of what
///   was appended to it, in whole entries: either the old record with its
///   journal as appended (up to the entry being appended when the crash came,
///   which may be missing), or the new record.
pub trait ResumeStore: Send + Sync {
    /// Stores `record` under `record.meta.id`, replacing any previous record
    /// and its journal atomically by `record` and `record.journal`: after a
    /// crash at any point, `load` returns either the old record with its
    /// journal, or the new one, whole, never a mix. The journal of the new
    /// record is normally empty: saving is how a caller compacts.
    fn save(&self, record: &Record) -> Result<(), StoreError>;

    /// Appends `entry` to the journal of the current record of `id` and makes
    /// it durable before returning (for a file, fdatasync or fsync). Fails
    /// with [`StoreError::NotFound`] if `id` has no record, and with the
    /// record's or journal's error if either cannot be read.
    ///
    /// The cost of an append must not grow with the number of entries already
    /// appended nor with the size of the payload: no rewrite, no full read
    /// (a store may read once what it then caches, as the first append of a
    /// journal in a process). Appends of one transfer from several threads
    /// are serialised by the store; each lands whole, in some order.
    ///
    /// After a failed append the journal holds either the entries before it
    /// or, for a store that cannot tell whether the write reached the disk,
    /// possibly that entry too, as a whole entry; never a part of one that a
    /// later append could build on.
    fn append(&self, id: &TransferId, entry: &JournalEntry) -> Result<(), StoreError>;

    /// Returns the record for `id` with its journal, or `None` if there is
    /// none. A record or journal that exists but cannot be read is an error,
    /// never `None`, except for a torn last journal entry (left by a crash
    /// in the middle of an append), which is left out. A damaged entry
    /// followed by valid ones is corruption and reported.
    fn load(&self, id: &TransferId) -> Result<Option<Record>, StoreError>;

    /// Lists every stored record, readable or not, sorted by id. Only a
    /// failure to enumerate the store itself fails the call. A record's
    /// summary carries the progress of its journal's last entry, as `load`
    /// reports it; a record whose journal cannot be read is listed with
    /// that error.
    fn list(&self) -> Result<Vec<ListEntry>, StoreError>;

    /// Deletes the record for `id` and its journal, even corrupt ones;
    /// returns [`StoreError::NotFound`] if there is no record.
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
