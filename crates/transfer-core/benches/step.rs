//! The cost of one state-machine step of a 10,000-part upload: the driver reports a
//! `PartUploaded`, polls every output (the next operation, the checkpoint to save, the
//! progress event, the deadline) and JSON-encodes the checkpoint as it does before
//! handing it to the store, after every part.
//!
//! Run with `cargo bench -p transfer-core --bench step`. The argument is how many parts
//! were already done when the measured steps start. Most steps save a delta naming one
//! part; every so often a whole checkpoint (all parts done) is saved, so the mean shows
//! the amortised cost, which must not grow with the parts done.
//!
//! It also measures a directory job's planner per file, at 100 and 100,000 files, and
//! the one replay of a half-done job's journal a resume pays.
// clippy.toml's bans (no clock, files, sockets, environment) are for the library; tests
// and benches drive it from the outside.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::disallowed_macros
)]

use std::collections::VecDeque;
use std::time::Duration;

use divan::Bencher;
use transfer_core::{
    ChecksumAlgorithm, ETag, JobDelta, JobEntry, JobLimits, JobPlan, MIB, OpKind, Operation,
    Outcome, Save, SourceFingerprint, Time, TransferMachine, UploadConfig, UploadId, UploadMachine,
};

fn main() {
    divan::main();
}

const PARTS: u64 = 10_000;
const PART_BYTES: u64 = 5 * MIB;
/// Steps measured per benchmark: `SAMPLES * SAMPLE_SIZE`, kept well below the parts left.
const SAMPLES: u32 = 100;
const SAMPLE_SIZE: u32 = 10;

/// An upload of 10,000 parts with the operations it has asked for and not yet had
/// answered, and the driver's clock.
struct Upload {
    machine: UploadMachine,
    in_flight: VecDeque<Operation>,
    now: Time,
}

impl Upload {
    fn new() -> Self {
        let cfg = UploadConfig {
            part_size_bytes: PART_BYTES,
            checksum: Some(ChecksumAlgorithm::Crc32),
            ..UploadConfig::default()
        };
        let source = SourceFingerprint {
            path: "/data/big.bin".into(),
            size_bytes: PARTS * PART_BYTES,
            modified_unix_nanos: 1_700_000_000_000_000_000,
            inode: Some(42),
            changed_unix_nanos: Some(1_700_000_000_000_000_000),
        };
        let mut upload = Upload {
            machine: UploadMachine::new(cfg, source, Time::ZERO),
            in_flight: VecDeque::new(),
            now: Time::ZERO,
        };
        upload.poll_all();
        let create = upload.in_flight.pop_front().expect("CreateMultipartUpload");
        assert!(matches!(create.kind, OpKind::CreateMultipartUpload { .. }));
        upload.now = upload.now + Duration::from_millis(5);
        upload.machine.handle_outcome(
            upload.now,
            create.id,
            Outcome::UploadCreated {
                upload_id: UploadId("2~VnQ3b8Yy0nW1l6tq0wJ3cE1mGq0yq7fK".into()),
            },
        );
        upload.poll_all();
        upload
    }

    /// What the driver does after every input: drain every output.
    fn poll_all(&mut self) -> usize {
        let mut outputs = 0;
        while let Some(op) = self.machine.poll_operation() {
            self.in_flight.push_back(op);
            outputs += 1;
        }
        while let Some(save) = self.machine.poll_checkpoint() {
            let encoded = match save {
                Save::Whole(cp) => serde_json::to_vec(&cp),
                Save::Delta(delta) => serde_json::to_vec(&delta),
            };
            divan::black_box(encoded.expect("a checkpoint encodes"));
            outputs += 1;
        }
        while let Some(event) = self.machine.poll_event() {
            divan::black_box(event);
            outputs += 1;
        }
        divan::black_box(self.machine.poll_timeout());
        outputs
    }

    /// Answers the oldest UploadPart in flight with success and polls every output.
    fn step(&mut self) -> usize {
        let op = self.in_flight.pop_front().expect("an UploadPart in flight");
        let OpKind::UploadPart { part, .. } = op.kind else {
            panic!("expected an UploadPart, got {}", op.kind.name());
        };
        self.now = self.now + Duration::from_millis(20);
        self.machine.handle_outcome(
            self.now,
            op.id,
            Outcome::PartUploaded {
                etag: ETag(format!("\"{:032x}\"", part.0)),
                checksum: Some(transfer_core::ChecksumValue::from_u32(
                    part.0.wrapping_mul(0x9E37_79B9),
                )),
                server_checksum: Some(transfer_core::ChecksumValue::from_u32(
                    part.0.wrapping_mul(0x9E37_79B9),
                )),
            },
        );
        self.poll_all()
    }
}

/// One step (answer a part, poll everything) after `done` parts of 10,000.
#[divan::bench(args = [10, 5_000, 8_000], sample_count = SAMPLES, sample_size = SAMPLE_SIZE)]
fn upload_part_done_step(bencher: Bencher, done: u32) {
    let mut upload = Upload::new();
    for _ in 0..done {
        upload.step();
    }
    bencher.bench_local(|| upload.step());
}

/// Creating the machine of a 10,000-part upload and answering CreateMultipartUpload.
#[divan::bench(sample_count = 100)]
fn start_10000_part_upload() -> usize {
    Upload::new().in_flight.len()
}

/// A directory job of `files` files: what the planner costs per file (start the next,
/// record its end), with half the job done already. Must not grow with the job. (400
/// files are measured: fewer than half of the smaller job.)
#[divan::bench(args = [1_000, 100_000], sample_count = 40, sample_size = 10)]
fn job_plan_per_file(bencher: Bencher, files: usize) {
    let mut plan = job_plan(files);
    for _ in 0..files / 2 {
        let i = plan.next_file().expect("a file to start");
        let _ = plan.finished(i, Ok(()));
    }
    bencher.bench_local(|| {
        let i = plan.next_file().expect("a file to start");
        plan.finished(i, Ok(()))
    });
}

/// What a resumed job of `files` files pays once, before its first file: replaying the
/// journal of a job half done.
#[divan::bench(args = [1_000, 100_000], sample_count = 20)]
fn job_plan_replay(bencher: Bencher, files: usize) {
    let deltas: Vec<JobDelta> = (0..files / 2)
        .map(|i| JobDelta::Done { index: i as u32 })
        .collect();
    bencher.bench_local(|| {
        let mut plan = job_plan(files);
        plan.replay(&deltas).expect("replay");
        plan
    });
}

fn job_plan(files: usize) -> JobPlan {
    let entries = (0..files)
        .map(|i| JobEntry {
            rel: format!("photos/2026/{:03}/img-{i:06}.jpg", i % 1000),
            size_bytes: 64 * 1024,
        })
        .collect();
    let limits = JobLimits {
        max_files: 32,
        max_weight: 128 * MIB,
    };
    JobPlan::new(entries, |e| e.size_bytes, limits)
}
