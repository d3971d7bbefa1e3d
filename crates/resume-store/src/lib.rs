//! Durable, atomic, locked storage of versioned transfer checkpoints.
//!
//! A [`ResumeStore`] keeps one [`Record`] per transfer: an opaque payload
//! (the caller's checkpoint, with the caller's own format version) plus a
//! little [`RecordMeta`] so transfers can be listed without decoding
//! payloads, and a journal of [`JournalEntry`]s appended since the payload
//! was saved, each at a constant cost. It also hands out an exclusive
//! [`Lease`] per transfer, so two drivers never resume the same transfer.
//!
//! - [`FileStore`] is the default: one file per transfer in a private
//!   directory, replaced atomically and fsynced, checksummed, with its journal
//!   in a second file, and leases as OS file locks that vanish when their
//!   process dies.
//! - [`MemoryStore`] keeps records in memory, for tests.
//!
//! What this crate does not do: it knows nothing of S3 or of what a
//! checkpoint contains, reads no clock (timestamps come from the caller),
//! and has no async API (call it from a blocking thread). It never deletes
//! a record it cannot read; it reports it, naming the file.
//!
//! ```text
//!  driver ──save(Record)──► FileStore ──► <dir>/<id>.record   (tmp + fsync + rename + fsync dir)
//!         ──append(entry)─►           ──► <dir>/<id>.<gen>.journal  (one write + fdatasync)
//!         ──lease(id)─────►           ──► <dir>/<id>.lock     (flock, released on drop or death)
//!  CLI    ──list()────────►           ──► one ListEntry per record, broken ones included
//! ```
#![forbid(unsafe_code)]

mod error;
mod file_store;
mod format;
mod id;
mod journal;
mod memory_store;
mod record;
mod store;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use error::StoreError;
pub use file_store::{FileStore, STATE_DIR_ENV};
pub use id::TransferId;
pub use memory_store::MemoryStore;
pub use record::{
    Direction, JournalEntry, ListEntry, Record, RecordKind, RecordMeta, RecordSummary,
    TransferState,
};
pub use store::{Lease, ResumeStore};

/// The newest on-disk record format version this build reads and writes.
/// Records with a higher version are refused with [`StoreError::NewerVersion`].
pub const FORMAT_VERSION: u32 = format::FORMAT_VERSION;

#[cfg(test)]
mod memory_tests {
    use super::*;

    #[test]
    fn memory_store_conforms() {
        conformance::run_all(&|| Box::new(MemoryStore::new()));
    }

    #[test]
    fn clones_share_records_and_leases() {
        let a = MemoryStore::new();
        let b = a.clone();
        let id = TransferId::new("x").unwrap();
        a.save(&conformance::consistent_record(&id, "k", 3))
            .unwrap();
        assert!(b.load(&id).unwrap().is_some());
        let _lease = a.lease(&id).unwrap();
        assert!(matches!(b.lease(&id), Err(StoreError::Locked { .. })));
    }

    #[test]
    fn trait_is_object_safe_and_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<std::sync::Arc<dyn ResumeStore>>();
        assert_send_sync::<Lease>();
        assert_send_sync::<StoreError>();
    }
}
