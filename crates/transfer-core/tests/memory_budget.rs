//! The memory budget decides how many parts an upload keeps in flight, and which parts
//! are streamed from the source instead of held in memory.
// clippy.toml's bans (no clock, files, sockets, environment) are for the library; tests
// and benches drive it from the outside.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::disallowed_macros
)]

use transfer_core::{
    MIB, OpKind, Outcome, SourceFingerprint, Time, TransferMachine, UploadConfig, UploadId,
    UploadMachine,
};

/// The UploadParts the machine asks for at once after its upload is created, as
/// (part size, streamed) pairs.
fn parts_started(size_bytes: u64, part_size_bytes: u64, budget: u64) -> Vec<(u64, bool)> {
    let cfg = UploadConfig {
        part_size_bytes,
        memory_budget_bytes: budget,
        ..UploadConfig::default()
    };
    let source = SourceFingerprint {
        path: "/data/big.bin".into(),
        size_bytes,
        modified_unix_nanos: 1,
        inode: Some(1),
        changed_unix_nanos: None,
    };
    let mut m = UploadMachine::new(cfg, source, Time::ZERO);
    let create = m.poll_operation().expect("CreateMultipartUpload");
    assert!(matches!(create.kind, OpKind::CreateMultipartUpload { .. }));
    assert!(m.poll_operation().is_none());
    m.handle_outcome(
        Time::ZERO,
        create.id,
        Outcome::UploadCreated {
            upload_id: UploadId("u".into()),
        },
    );
    let mut started = Vec::new();
    while let Some(op) = m.poll_operation() {
        match op.kind {
            OpKind::UploadPart {
                range, streamed, ..
            } => started.push((range.len_bytes(), streamed)),
            other => panic!("unexpected {}", other.name()),
        }
    }
    started
}

#[test]
fn a_part_larger_than_the_budget_goes_alone_and_streamed() {
    let started = parts_started(4096 * MIB, 1024 * MIB, 128 * MIB);
    assert_eq!(started, vec![(1024 * MIB, true)]);
}

#[test]
fn parts_in_flight_fit_in_the_budget() {
    let started = parts_started(256 * MIB, 16 * MIB, 64 * MIB);
    assert_eq!(started, vec![(16 * MIB, false); 4]);
}

#[test]
fn the_default_budget_keeps_the_default_concurrency() {
    let started = parts_started(
        256 * MIB,
        8 * MIB,
        UploadConfig::default().memory_budget_bytes,
    );
    assert_eq!(started.len(), 8);
    assert!(started.iter().all(|(_, streamed)| !streamed));
}

#[test]
fn a_put_larger_than_the_budget_is_streamed() {
    let cfg = UploadConfig {
        multipart_threshold_bytes: 64 * MIB,
        memory_budget_bytes: 8 * MIB,
        ..UploadConfig::default()
    };
    let source = SourceFingerprint {
        path: "/data/f".into(),
        size_bytes: 20 * MIB,
        modified_unix_nanos: 1,
        inode: Some(1),
        changed_unix_nanos: None,
    };
    let mut m = UploadMachine::new(cfg, source, Time::ZERO);
    let put = m.poll_operation().expect("PutObject");
    assert!(
        matches!(put.kind, OpKind::PutObject { streamed: true, .. }),
        "{:?}",
        put.kind
    );
}
