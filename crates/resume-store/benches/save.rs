//! Save latency of `FileStore`, fsyncs included: what a driver pays to
//! checkpoint after every part.
//!
//! Run with `cargo bench -p resume-store --bench save`. The records are
//! written under Cargo's target tmp dir, i.e. on the same disk as the build,
//! not on a tmpfs where fsync would be free. For p50/p99 rather than divan's
//! median/mean, run the ignored `save_latency_percentiles` test (see
//! `tests/latency.rs`).

use std::path::PathBuf;

use divan::Bencher;
use resume_store::{
    Direction, FileStore, Record, RecordMeta, ResumeStore, TransferId, TransferState,
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
        },
        payload_version: 1,
        // Incompressible-looking bytes; the store does not compress anyway.
        payload: (0..payload_bytes).map(|i| (i * 131 % 251) as u8).collect(),
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
