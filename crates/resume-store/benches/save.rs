//! Save and append latency of `FileStore`, fsyncs included: what a driver
//! pays to checkpoint after every part, whole (`save`) or as a journal entry
//! (`append`, whose cost should not grow with the journal or the payload).
//!
//! Run with `cargo bench -p resume-store --bench save`. The records are
//! written under Cargo's target tmp dir, i.e. on the same disk as the build,
//! not on a tmpfs where fsync would be free. For p50/p99 rather than divan's
//! median/mean, run the ignored `save_latency_percentiles` test (see
//! `tests/latency.rs`).

use std::path::PathBuf;

use divan::Bencher;
use resume_store::{
    Direction, FileStore, JournalEntry, Record, RecordMeta, ResumeStore, TransferId, TransferState,
};

fn main() {
    divan::main();
}

fn record(payload_bytes: usize) -> Record {
    Record {
        meta: RecordMeta {
            id: TransferId::new("bench").expect("valid id"),
            direction: Direction::Upload,
            bucket: "bucket".into(),
            key: "some/object/key.bin".into(),
            local_path: PathBuf::from("/data/some/file.bin"),
            done_bytes: 1 << 30,
            total_bytes: 80 << 30,
            created_unix_ms: 1_700_000_000_000,
            updated_unix_ms: 1_700_000_000_000,
            state: TransferState::Running,
            kind: Default::default(),
        },
        payload_version: 1,
        // Incompressible-looking bytes; the store does not compress anyway.
        payload: (0..payload_bytes).map(|i| (i * 131 % 251) as u8).collect(),
        journal: Vec::new(),
    }
}

/// ~2 KiB is a small checkpoint; ~200 KiB is a 10,000-part upload
/// (about 20 bytes per part: number, ETag, CRC32).
#[divan::bench(args = [2 * 1024, 200 * 1024], sample_count = 200, sample_size = 1)]
fn file_store_save(bencher: Bencher, payload_bytes: usize) {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let store = FileStore::open(tmp.path()).expect("open store");
    let rec = record(payload_bytes);
    bencher.bench_local(|| store.save(&rec).expect("save"));
}

/// About what a driver appends per part: a part number, an ETag, a checksum.
fn entry(i: usize) -> JournalEntry {
    JournalEntry {
        done_bytes: (i as u64 + 1) << 23,
        updated_unix_ms: 1_700_000_000_000 + i as u64,
        data: format!("{{\"part\":{i},\"etag\":\"0123456789abcdef0123456789abcdef\"}}")
            .into_bytes(),
    }
}

/// A store in a temp dir holding `record` saved with `entries` journal
/// entries, with its journal already open (the one read of it done).
fn journaled(payload_bytes: usize, entries: usize) -> (tempfile::TempDir, FileStore, TransferId) {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let store = FileStore::open(tmp.path()).expect("open store");
    let mut rec = record(payload_bytes);
    rec.journal = (0..entries).map(entry).collect();
    store.save(&rec).expect("save");
    let id = rec.meta.id;
    store.append(&id, &entry(entries)).expect("first append");
    (tmp, store, id)
}

/// One append to a journal already holding 10 or 10,000 entries (2 KiB
/// payload): should cost the same.
#[divan::bench(args = [10, 10_000], sample_count = 200, sample_size = 1)]
fn file_store_append_after_entries(bencher: Bencher, entries: usize) {
    let (_tmp, store, id) = journaled(2 * 1024, entries);
    let next = entry(entries + 1);
    bencher.bench_local(|| store.append(&id, &next).expect("append"));
}

/// One append to the journal of a record of a 2 KiB or a 200 KiB payload
/// (10 entries already): should cost the same.
#[divan::bench(args = [2 * 1024, 200 * 1024], sample_count = 200, sample_size = 1)]
fn file_store_append_with_payload(bencher: Bencher, payload_bytes: usize) {
    let (_tmp, store, id) = journaled(payload_bytes, 10);
    let next = entry(11);
    bencher.bench_local(|| store.append(&id, &next).expect("append"));
}

/// What a directory job pays per file done: one journal append to the job's record,
/// whose plan (about 60 bytes a file, saved whole when the job started) covers 100 or
/// 100,000 files, half of them done already. Should cost the same.
#[divan::bench(args = [100, 100_000], sample_count = 100, sample_size = 1)]
fn file_store_job_file_done(bencher: Bencher, files: usize) {
    let (_tmp, store, id) = journaled(files * 60, files / 2);
    let next = JournalEntry {
        done_bytes: 1 << 30,
        updated_unix_ms: 1_700_000_000_000,
        data: format!("[{{\"file\":\"done\",\"index\":{}}}]", files / 2 + 1).into_bytes(),
    };
    bencher.bench_local(|| store.append(&id, &next).expect("append"));
}
