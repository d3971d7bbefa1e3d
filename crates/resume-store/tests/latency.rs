//! Save latency percentiles (not a pass/fail test): run with
//! `cargo test -p resume-store --release --test latency -- --ignored --nocapture`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use resume_store::{
    Direction, FileStore, Record, RecordMeta, ResumeStore, TransferId, TransferState,
};

fn record(payload_bytes: usize) -> Record {
    Record {
        meta: RecordMeta {
            id: TransferId::new("latency").expect("valid id"),
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
        payload: (0..payload_bytes).map(|i| (i * 131 % 251) as u8).collect(),
        journal: Vec::new(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank]
}

#[test]
#[ignore = "benchmark; prints save latency percentiles"]
fn save_latency_percentiles() {
    const SAVES: usize = 500;
    // On the build disk, not a tmpfs where fsync would cost nothing.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store = FileStore::open(tmp.path()).unwrap();
    for kib in [2, 200] {
        let rec = record(kib * 1024);
        for _ in 0..10 {
            store.save(&rec).unwrap();
        }
        let mut times: Vec<Duration> = (0..SAVES)
            .map(|_| {
                let start = Instant::now();
                store.save(&rec).unwrap();
                start.elapsed()
            })
            .collect();
        times.sort();
        println!(
            "FileStore::save {kib:>3} KiB payload, {SAVES} saves: p50 {:?}  p99 {:?}  max {:?}",
            percentile(&times, 0.50),
            percentile(&times, 0.99),
            times[SAVES - 1]
        );
    }
}
