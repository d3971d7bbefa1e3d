//! Property tests of the upload machine against an in-memory model of S3.
//!
//! Random schedules interleave answers in any order, faults, pause, resume, cancel,
//! crashes (the machine is rebuilt from its last checkpoint), a modified source and an
//! upload that vanishes on the server. Invariants are checked after every step.
// clippy.toml's bans (no clock, files, sockets, environment) are for the library; tests
// and benches drive it from the outside.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::disallowed_macros
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use proptest::prelude::*;
use transfer_core::*;

struct Server {
    object: Option<(Vec<u8>, String)>,
    uploads: BTreeMap<String, BTreeMap<u32, (Vec<u8>, String)>>,
    next_upload: u64,
    /// Echoes the checksums sent (AWS, moto); Ceph RGW 18 and s3s-fs do not.
    echoes: bool,
    /// The checksum type each upload was created with.
    types: BTreeMap<String, Option<ChecksumType>>,
    /// The stored object's checksum as HeadObject (with checksum mode) reports it, on a
    /// server that echoes checksums.
    object_checksum: Option<ObjectChecksum>,
    /// Uploads aborted by a request whose answer was lost: the machine cannot know.
    aborted_unanswered: Vec<String>,
}

fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", hex_md5(bytes))
}

fn hex_md5(bytes: &[u8]) -> String {
    md5_digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct World {
    server: Server,
    versions: Vec<Vec<u8>>,
    cfg: UploadConfig,
    /// The fingerprint the current machine believes in; reads of another version fail.
    machine_fp: SourceFingerprint,
    last_checkpoint: Option<UploadCheckpoint>,
    /// Uploads ever recorded in a checkpoint: these must not leak after a cancel.
    recorded_uploads: BTreeSet<String>,
    /// Parts recorded complete that must never be sent again (cleared on restart).
    must_not_resend: BTreeSet<u32>,
    modified: bool,
    /// Source ranges the machine had hashed (to adopt or to re-check a part).
    hashed: Vec<ByteRange>,
    /// Versions of the source that changed its metadata (mtime, ctime); a tampered
    /// version is a new entry in `versions` that does not count here.
    fp_generation: usize,
    /// The source was changed behind the machine's back with its metadata kept.
    tampered: bool,
    /// The object existed on the server when the source was first tampered with (a
    /// Complete whose answer was lost): it may then hold the bytes from before.
    object_before_tamper: bool,
    /// Every checkpoint emitted that may have reached the disk, oldest first: a crash
    /// rebuilds from one of the newest few, never from one before `durable`.
    history: Vec<UploadCheckpoint>,
    /// How many entries of `history` the driver is known to have saved (it waits for
    /// the saver on pause).
    durable: usize,
    /// The retry budget is small enough for random faults to exhaust it.
    scarce_retries: bool,
    d: Driver<UploadMachine>,
}

impl World {
    fn new(
        size: u64,
        part_size: u64,
        max_in_flight: usize,
        checksum: Option<ChecksumAlgorithm>,
        seed: u64,
    ) -> Self {
        Self::with_attempts(size, part_size, max_in_flight, checksum, seed, 200)
    }

    fn with_attempts(
        size: u64,
        part_size: u64,
        max_in_flight: usize,
        checksum: Option<ChecksumAlgorithm>,
        seed: u64,
        attempts: u32,
    ) -> Self {
        let cfg = UploadConfig {
            multipart_threshold_bytes: 5 * MIB,
            part_size_bytes: part_size,
            max_in_flight,
            // The model checks the protocol; parts in flight are `max_in_flight` exactly.
            memory_budget_bytes: u64::MAX,
            checksum,
            cancel_policy: CancelPolicy::Abort,
            retry: retry_budget(seed, attempts),
        };
        let versions = vec![content(seed, size)];
        let fp = fingerprint(size, 1);
        let machine = UploadMachine::new(cfg.clone(), fp.clone(), Time::ZERO);
        let mut w = World {
            server: Server {
                object: None,
                uploads: BTreeMap::new(),
                next_upload: 0,
                echoes: !seed.is_multiple_of(3),
                types: BTreeMap::new(),
                aborted_unanswered: Vec::new(),
                object_checksum: None,
            },
            versions,
            cfg,
            machine_fp: fp,
            last_checkpoint: None,
            recorded_uploads: BTreeSet::new(),
            must_not_resend: BTreeSet::new(),
            modified: false,
            hashed: vec![],
            fp_generation: 1,
            tampered: false,
            object_before_tamper: false,
            history: vec![],
            durable: 0,
            scarce_retries: attempts < 200,
            d: Driver::new(machine),
        };
        w.poll();
        w
    }

    fn source(&self) -> &[u8] {
        self.versions.last().expect("one version at least")
    }

    fn fingerprint_now(&self) -> SourceFingerprint {
        fingerprint(self.source().len() as u64, self.fp_generation)
    }

    // The failure is the outcome the driver would report, as it is.
    #[allow(clippy::result_large_err)]
    fn read(&self, range: ByteRange) -> Result<Vec<u8>, Outcome> {
        if self
            .machine_fp
            .difference(&self.fingerprint_now())
            .is_some()
        {
            return Err(Outcome::Failed(Failure::new(
                FailureKind::SourceChanged,
                "source modified",
            )));
        }
        Ok(self.source()[range.start as usize..range.end as usize].to_vec())
    }

    fn apply(&mut self, op: &Operation) -> Outcome {
        let no_upload =
            || Outcome::Failed(status_failure(FailureKind::NotFound, 404, "NoSuchUpload"));
        match &op.kind {
            OpKind::PutObject {
                range,
                checksum: alg,
                ..
            } => {
                assert_eq!(*range, ByteRange::new(0, self.source().len() as u64));
                let bytes = match self.read(*range) {
                    Ok(b) => b,
                    Err(o) => return o,
                };
                let etag = etag_of(&bytes);
                let crc = alg.map(|a| checksum(a, &bytes));
                self.server.object = Some((bytes, etag.clone()));
                self.server.object_checksum =
                    alg.zip(crc)
                        .filter(|_| self.server.echoes)
                        .map(|(algorithm, value)| ObjectChecksum {
                            algorithm,
                            value,
                            kind: ChecksumKind::FullObject,
                        });
                Outcome::ObjectPut {
                    etag: ETag(etag),
                    checksum: crc,
                    server_checksum: crc.filter(|_| self.server.echoes),
                }
            }
            OpKind::CreateMultipartUpload {
                checksum: alg,
                checksum_type,
                ..
            } => {
                // As S3: the SHAs only as COMPOSITE, CRC64NVME only as FULL_OBJECT.
                let refused = match (alg, checksum_type) {
                    (Some(a), Some(ChecksumType::FullObject)) => !a.combinable(),
                    (Some(ChecksumAlgorithm::Crc64Nvme), Some(ChecksumType::Composite)) => true,
                    _ => false,
                };
                assert!(!refused, "{alg:?} asked for as {checksum_type:?}");
                self.server.next_upload += 1;
                let id = format!("upload-{}", self.server.next_upload);
                self.server.uploads.insert(id.clone(), BTreeMap::new());
                self.server.types.insert(id.clone(), *checksum_type);
                Outcome::UploadCreated {
                    upload_id: UploadId(id),
                }
            }
            OpKind::UploadPart {
                upload_id,
                part,
                range,
                checksum: alg,
                ..
            } => {
                assert!(
                    !self.must_not_resend.contains(&part.0),
                    "part {part} was recorded complete and is sent again\n{}",
                    self.d.log.join("\n")
                );
                assert!(range.len_bytes() > 0 || self.source().is_empty());
                let bytes = match self.read(*range) {
                    Ok(b) => b,
                    Err(o) => return o,
                };
                let Some(parts) = self.server.uploads.get_mut(&upload_id.0) else {
                    return no_upload();
                };
                let etag = etag_of(&bytes);
                let crc = alg.map(|a| checksum(a, &bytes));
                parts.insert(part.0, (bytes, etag.clone()));
                Outcome::PartUploaded {
                    etag: ETag(etag),
                    checksum: crc,
                    server_checksum: crc.filter(|_| self.server.echoes),
                }
            }
            OpKind::ListParts {
                upload_id,
                part_number_marker,
            } => {
                let Some(parts) = self.server.uploads.get(&upload_id.0) else {
                    return no_upload();
                };
                let after = part_number_marker.unwrap_or(0);
                let page: Vec<ListedPart> = parts
                    .range(after + 1..)
                    .take(3)
                    .map(|(n, (b, e))| ListedPart {
                        part: PartNumber(*n),
                        etag: Some(ETag(e.clone())),
                        size_bytes: Some(b.len() as u64),
                    })
                    .collect();
                let next = page
                    .last()
                    .map(|p| p.part.0)
                    .filter(|last| parts.range(last + 1..).next().is_some());
                Outcome::PartsListed {
                    parts: page,
                    next_part_number_marker: next,
                }
            }
            OpKind::CompleteMultipartUpload {
                upload_id, parts, ..
            } => {
                for (i, p) in parts.iter().enumerate() {
                    assert_eq!(
                        p.part.0 as usize,
                        i + 1,
                        "Complete lists parts out of order or with gaps"
                    );
                }
                let Some(stored) = self.server.uploads.get(&upload_id.0) else {
                    return no_upload();
                };
                for p in parts {
                    let Some((_, etag)) = stored.get(&p.part.0) else {
                        return Outcome::Failed(status_failure(
                            FailureKind::InvalidRequest,
                            400,
                            "InvalidPart",
                        ));
                    };
                    assert_eq!(
                        etag, &p.etag.0,
                        "Complete names an ETag the server did not return"
                    );
                }
                let n = parts.len();
                for (i, p) in parts.iter().enumerate() {
                    if i + 1 < n && (stored[&p.part.0].0.len() as u64) < MIN_PART_SIZE_BYTES {
                        return Outcome::Failed(status_failure(
                            FailureKind::InvalidRequest,
                            400,
                            "EntityTooSmall",
                        ));
                    }
                }
                let mut data = vec![];
                let mut md5s = vec![];
                for p in parts {
                    let (b, _) = &stored[&p.part.0];
                    md5s.push(md5_digest(b));
                    data.extend_from_slice(b);
                }
                let etag = format!("\"{}\"", multipart_etag(&md5s));
                // The object's checksum of the type the upload was created with.
                let part_values = |a| -> Vec<ChecksumValue> {
                    parts
                        .iter()
                        .map(|p| checksum(a, &stored[&p.part.0].0))
                        .collect()
                };
                let composite_of = |a| (composite(a, part_values(a)), Some(parts.len() as u32));
                let server_checksum = self.cfg.checksum.filter(|_| self.server.echoes).map(|a| {
                    match self.server.types.get(&upload_id.0).copied().flatten() {
                        Some(ChecksumType::Composite) => composite_of(a),
                        _ => (checksum(a, &data), None),
                    }
                });
                self.server.uploads.remove(&upload_id.0);
                self.server.object = Some((data, etag.clone()));
                self.server.object_checksum =
                    self.cfg
                        .checksum
                        .zip(server_checksum)
                        .map(|(algorithm, (value, parts))| ObjectChecksum {
                            algorithm,
                            value,
                            kind: match parts {
                                Some(parts) => ChecksumKind::Composite { parts },
                                None => ChecksumKind::FullObject,
                            },
                        });
                Outcome::UploadCompleted {
                    etag: ETag(etag),
                    server_checksum,
                }
            }
            OpKind::HashSourceRange {
                range,
                checksum: alg,
            } => {
                self.hashed.push(*range);
                let bytes = match self.read(*range) {
                    Ok(b) => b,
                    Err(o) => return o,
                };
                Outcome::SourceHashed {
                    md5: md5_digest(&bytes),
                    checksum: alg.map(|a| checksum(a, &bytes)),
                }
            }
            OpKind::AbortMultipartUpload { upload_id } => {
                match self.server.uploads.remove(&upload_id.0) {
                    Some(_) => Outcome::UploadAborted,
                    None => no_upload(),
                }
            }
            OpKind::HeadObject { .. } => match &self.server.object {
                Some((b, e)) => Outcome::ObjectInfo(ObjectInfo {
                    content_length: b.len() as u64,
                    etag: ETag(e.clone()),
                    last_modified: None,
                    checksum: self.server.object_checksum,
                    parts_count: None,
                    part_range: None,
                    etag_not_md5: false,
                    metadata: Vec::new(),
                }),
                None => Outcome::Failed(status_failure(FailureKind::NotFound, 404, "NoSuchKey")),
            },
            other => panic!("an upload asked for {other:?}"),
        }
    }

    fn check_end(&self) {
        let size = self.versions[0].len() as u64;
        match self.d.finished.as_ref().expect("finished") {
            Event::Completed(c) => {
                let (data, _) = self
                    .server
                    .object
                    .as_ref()
                    .expect("an object after Completed");
                assert!(
                    self.versions.iter().any(|v| v == data),
                    "the object is not any version of the source"
                );
                if !self.modified && !self.object_before_tamper {
                    assert_eq!(data, self.source(), "object differs from the source");
                }
                assert_eq!(c.bytes_total, size);
                if let Some((alg, value)) = c.checksum {
                    assert_eq!(
                        value,
                        checksum(alg, data),
                        "reported full-object checksum is wrong"
                    );
                }
                // Checked by the server only where it said so.
                let by_server = matches!(c.verified, Verified::ServerChecksums(_));
                if self.cfg.checksum.is_none() {
                    assert!(!by_server, "{:?} without checksums", c.verified);
                } else if self.server.echoes {
                    assert!(by_server, "{:?} from an echoing server", c.verified);
                }
                assert_eq!(
                    self.d.machine.progress().0,
                    size,
                    "progress does not end at the size"
                );
            }
            Event::Failed(TransferError::Stalled(_)) => {
                assert!(
                    self.d.stalled,
                    "stalled with nothing hanging\n{}",
                    self.d.log.join("\n")
                );
            }
            Event::Failed(TransferError::RetriesExhausted { .. }) => {
                assert!(
                    self.scarce_retries,
                    "retries exhausted under a generous budget\n{}",
                    self.d.log.join("\n")
                );
            }
            Event::Failed(TransferError::SourceChanged { .. }) => {
                assert!(self.modified, "SourceChanged without a modification");
                self.assert_no_recorded_upload_open();
            }
            // The abort after a changed source ran out of its (scarce) retries: the
            // upload left open is the one named, and no other.
            Event::Failed(TransferError::UploadLeft {
                cause, upload_id, ..
            }) => {
                assert!(
                    self.scarce_retries,
                    "an abort failed under a generous budget"
                );
                assert!(
                    matches!(**cause, TransferError::SourceChanged { .. }) && self.modified,
                    "{cause:?}"
                );
                // The upload named is left open, unless an abort of it did reach the
                // server and only its answer was lost (the message says it may be so).
                let open: Vec<&String> = self.server.uploads.keys().collect();
                if !self.server.aborted_unanswered.contains(upload_id) {
                    assert_eq!(open, [upload_id], "only the upload named is left open");
                } else {
                    assert!(
                        open.is_empty(),
                        "only the upload named may be left: {open:?}"
                    );
                }
            }
            Event::Cancelled => {
                assert!(
                    self.d.ever_cancelled,
                    "Cancelled without a cancel\n{}",
                    self.d.log.join("\n")
                );
                self.assert_no_recorded_upload_open();
            }
            other => panic!("unexpected end {other:?}\n{}", self.d.log.join("\n")),
        }
    }

    fn assert_no_recorded_upload_open(&self) {
        let current = self.d.machine.upload_id().map(|u| u.0.clone());
        for id in self.server.uploads.keys() {
            assert!(
                !self.recorded_uploads.contains(id) && current.as_ref() != Some(id),
                "upload {id} left open\n{}",
                self.d.log.join("\n")
            );
        }
    }
}

impl Model for World {
    type Machine = UploadMachine;

    fn driver(&mut self) -> &mut Driver<UploadMachine> {
        &mut self.d
    }

    fn stall_timeout(&self) -> std::time::Duration {
        self.cfg.retry.stall_timeout
    }

    /// Runs `op` against the model server and local file, as a driver would.
    fn execute(&mut self, op: &Operation, fault: Fault) -> Outcome {
        if fault == Fault::Drop {
            return Outcome::Dropped;
        }
        if let Some(f) = failure(fault)
            && fault != Fault::LostAnswer
        {
            return Outcome::Failed(f);
        }
        let outcome = self.apply(op);
        if let (
            Fault::LostAnswer,
            OpKind::AbortMultipartUpload { upload_id },
            Outcome::UploadAborted,
        ) = (fault, &op.kind, &outcome)
        {
            self.server.aborted_unanswered.push(upload_id.0.clone());
        }
        match failure(fault) {
            Some(f) => Outcome::Failed(f),
            None => outcome,
        }
    }

    /// Drains every output of the machine and checks the invariants.
    fn poll(&mut self) {
        while let Some(op) = self.d.machine.poll_operation() {
            assert!(
                !self.d.paused_cmd || matches!(op.kind, OpKind::AbortMultipartUpload { .. }),
                "operation {op:?} started while paused"
            );
            assert!(self.d.finished.is_none(), "operation after the end: {op:?}");
            self.d
                .log
                .push(format!("start {:?} {}", op.id, op.kind.name()));
            self.d.in_flight.push(op);
        }
        let parts_in_flight = self
            .d
            .in_flight
            .iter()
            .filter(|o| matches!(o.kind, OpKind::UploadPart { .. } | OpKind::PutObject { .. }))
            .count();
        assert!(
            parts_in_flight <= self.cfg.max_in_flight,
            "{parts_in_flight} parts in flight"
        );
        while let Some(save) = self.d.machine.poll_checkpoint() {
            let last = self.last_checkpoint.clone().map(Checkpoint::Upload);
            let Checkpoint::Upload(cp) = replay(last, save) else {
                panic!("an upload saved a download's checkpoint");
            };
            assert_eq!(cp.version, CHECKPOINT_VERSION);
            assert!(
                cp.completed.windows(2).all(|w| w[0].part < w[1].part),
                "checkpoint parts not ascending"
            );
            self.recorded_uploads.insert(cp.upload_id.0.clone());
            self.history.push(cp.clone());
            self.last_checkpoint = Some(cp);
        }
        while let Some(ev) = self.d.machine.poll_event() {
            self.d.observe(&ev);
            match &ev {
                Event::Restarted { .. } => {
                    self.must_not_resend.clear();
                }
                Event::Invalidated { range, .. } => {
                    assert!(
                        self.tampered,
                        "a part was invalidated with the source untouched\n{}",
                        self.d.log.join("\n")
                    );
                    let part_size = match self.d.machine.plan() {
                        UploadPlan::Multipart {
                            part_size_bytes, ..
                        } => part_size_bytes,
                        UploadPlan::Single => u64::MAX,
                    };
                    let part = (range.start / part_size) as u32 + 1;
                    self.must_not_resend.remove(&part);
                }
                Event::Paused => self.durable = self.history.len(),
                _ => {}
            }
        }
    }

    fn crash(&mut self, executed: bool, lost: usize) {
        for op in std::mem::take(&mut self.d.in_flight) {
            if executed {
                let _ = self.apply(&op);
            }
        }
        // An upload only a lost checkpoint named is left behind.
        self.last_checkpoint = surviving(&mut self.history, &mut self.durable, lost);
        self.recorded_uploads = self
            .history
            .iter()
            .map(|cp| cp.upload_id.0.clone())
            .collect();
        self.d.paused_cmd = false;
        self.d.cancelled_cmd = false;
        self.d.progress_floor = 0;
        self.d.now = self.d.now + std::time::Duration::from_secs(1);
        let current = self.fingerprint_now();
        self.d.machine = match self.last_checkpoint.clone() {
            Some(cp) => {
                // A recorded part the server now holds under another ETag (sent again
                // in flight, its answer lost with a newer checkpoint) may be sent again:
                // the server contradicts the record, and it was in flight.
                let on_server = self.server.uploads.get(&cp.upload_id.0);
                self.must_not_resend = cp
                    .completed
                    .iter()
                    .filter(|p| {
                        on_server
                            .and_then(|parts| parts.get(&p.part.0))
                            .is_none_or(|(_, etag)| *etag == p.etag.0)
                    })
                    .map(|p| p.part.0)
                    .collect();
                self.machine_fp = cp.source.clone();
                UploadMachine::from_checkpoint(self.cfg.clone(), cp, current, self.d.now)
            }
            None => {
                self.must_not_resend.clear();
                self.machine_fp = current.clone();
                UploadMachine::new(self.cfg.clone(), current, self.d.now)
            }
        };
        self.poll();
    }

    fn change(&mut self) {
        let seed = self.versions.len() as u64 * 7919;
        let len = self.source().len() as u64;
        self.versions.push(content(seed, len));
        self.fp_generation += 1;
        self.modified = true;
    }

    fn lose_state(&mut self) {
        self.server.uploads.clear();
    }

    fn tamper(&mut self, at: u64) {
        let mut v = self.source().to_vec();
        if !v.is_empty() {
            let i = (at % v.len() as u64) as usize;
            v[i] ^= 0x5a;
            self.versions.push(v);
            if !self.tampered {
                self.object_before_tamper = self.server.object.is_some();
            }
            self.tampered = true;
        }
    }
}

fn fingerprint(size: u64, generation: usize) -> SourceFingerprint {
    SourceFingerprint {
        path: "source.bin".into(),
        size_bytes: size,
        modified_unix_nanos: generation as i64,
        inode: Some(1),
        changed_unix_nanos: Some(generation as i64),
    }
}

fn checksum_choice() -> impl Strategy<Value = Option<ChecksumAlgorithm>> {
    prop_oneof![
        3 => Just(Some(ChecksumAlgorithm::Crc32)),
        1 => Just(Some(ChecksumAlgorithm::Crc32c)),
        1 => Just(Some(ChecksumAlgorithm::Crc64Nvme)),
        1 => Just(Some(ChecksumAlgorithm::Sha256)),
        1 => Just(Some(ChecksumAlgorithm::Sha1)),
        1 => Just(None),
    ]
}

proptest! {
    #![proptest_config(config("proptest-regressions/upload_model.txt"))]

    #[test]
    fn upload_survives_any_schedule(
        size in size(6 * MIB),
        part_size in prop_oneof![Just(MIB), Just(5 * MIB), Just(6 * MIB)],
        max_in_flight in 1usize..5,
        alg in checksum_choice(),
        seed in any::<u64>(),
        attempts in attempts(),
        actions in schedule(1),
    ) {
        let mut w = World::with_attempts(size, part_size, max_in_flight, alg, seed, attempts);
        for a in actions {
            w.step(a);
        }
        w.drain();
        w.check_end();
        // A failure that keeps its checkpoint is resumed as `s3tm resume` would, from
        // what the driver saved before it reported the failure.
        if let Some(Event::Failed(e)) = &w.d.finished
            && e.is_resumable()
            && !matches!(e, TransferError::SourceChanged { .. })
        {
            w.d.finished = None;
            w.durable = w.history.len();
            w.crash(false, 0);
            w.drain();
            w.check_end();
        }
    }
}

#[test]
fn cancel_aborts_the_upload() {
    let mut w = World::new(12 * MIB, 5 * MIB, 2, Some(ChecksumAlgorithm::Crc32), 1);
    w.deliver(0, Fault::None); // create
    w.deliver(0, Fault::None); // part 1
    w.step(Action::Cancel);
    w.drain();
    assert!(matches!(w.d.finished, Some(Event::Cancelled)));
    assert!(w.server.uploads.is_empty(), "the upload was not aborted");
}

#[test]
fn resume_after_crash_sends_only_missing_parts() {
    let mut w = World::new(16 * MIB, 5 * MIB, 1, Some(ChecksumAlgorithm::Crc32), 2);
    w.deliver(0, Fault::None); // create
    w.deliver(0, Fault::None); // part 1
    w.deliver(0, Fault::None); // part 2
    w.crash(false, 0);
    assert_eq!(w.must_not_resend, BTreeSet::from([1, 2]));
    w.drain();
    w.check_end();
    let Some(Event::Completed(c)) = &w.d.finished else {
        panic!("not completed")
    };
    assert_eq!(c.bytes_resumed, 10 * MIB);
    assert_eq!(c.bytes_transferred, 6 * MIB);
}

/// The source rewritten in place with its metadata kept (the mtime put back, and no
/// ctime on this filesystem): the rebuilt upload reads the parts sent earlier back,
/// sends the one that differs again, and the object is the new content, never a mix.
#[test]
fn a_part_changed_behind_the_checkpoint_is_sent_again() {
    for checksum in [Some(ChecksumAlgorithm::Crc32), None] {
        let mut w = World::new(16 * MIB, 5 * MIB, 1, checksum, 2);
        w.deliver(0, Fault::None); // create
        w.deliver(0, Fault::None); // part 1
        w.deliver(0, Fault::None); // part 2
        w.step(Action::TamperLocal { at: 6 * MIB }); // crashes, then changes part 2's bytes
        w.drain();
        w.check_end();
        let Some(Event::Completed(c)) = &w.d.finished else {
            panic!("not completed")
        };
        assert_eq!(w.server.object.as_ref().unwrap().0, w.source());
        assert_eq!(c.bytes_rechecked, 10 * MIB, "{checksum:?}");
        assert_eq!(c.bytes_recheck_failed, 5 * MIB, "{checksum:?}");
        assert_eq!(c.bytes_resumed, 5 * MIB);
        assert_eq!(c.bytes_transferred, 11 * MIB);
    }
}

/// The same while paused in this process: the resume reads back every part sent.
#[test]
fn a_part_changed_while_paused_is_sent_again() {
    let mut w = World::new(16 * MIB, 5 * MIB, 1, Some(ChecksumAlgorithm::Crc32c), 4);
    w.deliver(0, Fault::None); // create
    w.deliver(0, Fault::None); // part 1
    w.step(Action::Pause); // part 2 in flight
    w.deliver(0, Fault::None); // part 2: paused now
    assert!(w.d.machine.is_paused());
    w.step(Action::TamperLocal { at: 1 });
    w.drain();
    w.check_end();
    assert_eq!(w.server.object.as_ref().unwrap().0, w.source());
    let Some(Event::Completed(c)) = &w.d.finished else {
        panic!("not completed")
    };
    assert_eq!(c.bytes_recheck_failed, 5 * MIB);
    // Part 2 was sent in this run, so sending it again is re-sending, not resuming.
    assert_eq!(c.bytes_resumed, 0);
    assert_eq!(c.bytes_resent, 5 * MIB);
    assert_eq!(c.bytes_transferred, 21 * MIB);
}

#[test]
fn resume_keeps_a_part_the_server_has_but_no_checkpoint_recorded() {
    let mut w = World::new(16 * MIB, 5 * MIB, 1, Some(ChecksumAlgorithm::Crc32), 2);
    w.deliver(0, Fault::None); // create
    w.deliver(0, Fault::None); // part 1
    // Part 2 reaches the server; its answer is lost with the process.
    assert!(matches!(
        w.d.in_flight[0].kind,
        OpKind::UploadPart {
            part: PartNumber(2),
            ..
        }
    ));
    w.crash(true, 0);
    assert_eq!(w.must_not_resend, BTreeSet::from([1]));
    // The server has part 2 whole: hashing the source finds its ETag, so it stays.
    w.must_not_resend.insert(2);
    w.drain();
    w.check_end();
    assert!(w.d.log.iter().any(|l| l.ends_with("HashSourceRange")));
    let Some(Event::Completed(c)) = &w.d.finished else {
        panic!("not completed")
    };
    assert_eq!(c.bytes_resumed, 10 * MIB);
    assert_eq!(c.bytes_transferred, 6 * MIB);
}

#[test]
fn resume_sends_again_an_unrecorded_part_that_differs_from_the_source() {
    let mut w = World::new(16 * MIB, 5 * MIB, 1, Some(ChecksumAlgorithm::Crc32), 2);
    w.deliver(0, Fault::None); // create
    w.deliver(0, Fault::None); // part 1
    w.crash(true, 0); // part 2 stored, answer lost
    // The stored part 2 is not what the source holds (say a part another writer put).
    let upload = w.server.uploads.keys().next().unwrap().clone();
    let part = w
        .server
        .uploads
        .get_mut(&upload)
        .unwrap()
        .get_mut(&2)
        .unwrap();
    part.0[0] ^= 1;
    part.1 = etag_of(&part.0);
    w.drain();
    w.check_end();
    let Some(Event::Completed(c)) = &w.d.finished else {
        panic!("not completed")
    };
    assert_eq!(c.bytes_resumed, 5 * MIB);
    assert_eq!(c.bytes_transferred, 11 * MIB);
}

#[test]
fn a_part_waiting_for_its_retry_is_not_also_kept_from_the_listing() {
    let mut w = World::new(16 * MIB, 5 * MIB, 1, Some(ChecksumAlgorithm::Crc32), 6);
    w.deliver(0, Fault::None); // create
    w.deliver(0, Fault::None); // part 1
    w.step(Action::Pause); // part 2 in flight
    w.step(Action::Resume); // before the pause settled: validate again
    w.deliver(0, Fault::LostAnswer); // part 2 stored, its answer lost: a retry waits
    assert!(matches!(w.d.in_flight[0].kind, OpKind::ListParts { .. }));
    w.deliver(0, Fault::None); // lists parts 1 and 2
    w.drain();
    w.check_end();
    let part2 = ByteRange::new(5 * MIB, 10 * MIB);
    assert!(
        !w.hashed.contains(&part2),
        "part 2 is settled by its retry, not by hashing\n{}",
        w.d.log.join("\n")
    );
    let Some(Event::Completed(c)) = &w.d.finished else {
        panic!("not completed")
    };
    assert_eq!(c.bytes_transferred + c.bytes_resumed, 16 * MIB);
}

#[test]
fn resume_before_the_pause_settles_opens_no_second_upload() {
    let mut w = World::new(5 * MIB, MIB, 1, Some(ChecksumAlgorithm::Crc32), 0);
    w.step(Action::Pause); // while Create is in flight
    w.step(Action::Resume);
    w.deliver(0, Fault::Throttle); // Create is retried
    w.drain();
    w.check_end();
    assert_eq!(w.server.next_upload, 1, "more than one upload was created");
}

#[test]
fn modified_source_is_refused_on_resume_and_the_upload_aborted() {
    let mut w = World::new(11 * MIB, 5 * MIB, 1, Some(ChecksumAlgorithm::Crc32), 3);
    w.deliver(0, Fault::None); // create
    w.deliver(0, Fault::None); // part 1
    w.step(Action::ChangeRemoteOrSource);
    w.crash(false, 0);
    w.drain();
    assert!(matches!(
        w.d.finished,
        Some(Event::Failed(TransferError::SourceChanged { .. }))
    ));
    assert!(w.server.uploads.is_empty());
}

#[test]
fn vanished_upload_restarts() {
    let mut w = World::new(11 * MIB, 5 * MIB, 1, Some(ChecksumAlgorithm::Crc32), 4);
    w.deliver(0, Fault::None); // create
    w.deliver(0, Fault::None); // part 1
    w.step(Action::LoseState);
    w.drain();
    w.check_end();
    assert!(w.d.log.iter().any(|l| l.contains("Restarted")));
}

#[test]
fn lost_complete_answer_is_confirmed_by_etag() {
    let mut w = World::new(11 * MIB, 5 * MIB, 1, Some(ChecksumAlgorithm::Crc32), 5);
    for _ in 0..4 {
        w.deliver(0, Fault::None); // create, 3 parts
    }
    assert!(matches!(
        w.d.in_flight[0].kind,
        OpKind::CompleteMultipartUpload { .. }
    ));
    w.deliver(0, Fault::LostAnswer);
    w.drain();
    w.check_end();
    assert!(matches!(w.d.finished, Some(Event::Completed(_))));
}

/// A server that echoes no checksum (Ceph RGW 18, s3s-fs on UploadPart) gets an upload
/// reported as sent with checksums but not confirmed; one that echoes them, checked.
#[test]
fn checked_by_the_server_only_when_it_echoes_the_checksums() {
    for (seed, echoes) in [(3, false), (4, true)] {
        for size in [MIB, 12 * MIB] {
            let mut w = World::new(size, 5 * MIB, 2, Some(ChecksumAlgorithm::Crc32), seed);
            assert_eq!(w.server.echoes, echoes);
            w.drain();
            w.check_end();
            let Some(Event::Completed(c)) = &w.d.finished else {
                panic!("not completed: {:?}", w.d.finished)
            };
            match (&c.verified, echoes) {
                (Verified::ServerChecksums(ChecksumAlgorithm::Crc32), true) => {}
                (Verified::Unverified { reason }, false) => {
                    assert!(reason.contains("did not echo"), "{reason}")
                }
                (other, _) => panic!("echoes {echoes}, {size} bytes: {other:?}"),
            }
        }
    }
}

/// A saved upload cancelled as soon as it is rebuilt (`s3tm cancel ID`): the ListParts it
/// asked for is withdrawn, never answered, and only the abort is sent.
#[test]
fn a_rebuilt_upload_cancelled_before_its_first_poll_only_aborts() {
    let mut w = World::new(16 * MIB, 5 * MIB, 1, Some(ChecksumAlgorithm::Crc32), 2);
    w.deliver(0, Fault::None); // create
    w.deliver(0, Fault::None); // part 1
    let cp = w.last_checkpoint.clone().expect("a checkpoint");
    let fp = cp.source.clone();
    let mut m = UploadMachine::from_checkpoint(w.cfg.clone(), cp, fp, Time::ZERO);
    m.cancel(Time::ZERO);
    let op = m.poll_operation().expect("the abort");
    assert!(
        matches!(op.kind, OpKind::AbortMultipartUpload { .. }),
        "{op:?}"
    );
    assert_eq!(m.poll_operation(), None);
    m.handle_outcome(Time::ZERO, op.id, Outcome::UploadAborted);
    let events: Vec<Event> = std::iter::from_fn(|| m.poll_event()).collect();
    assert!(events.contains(&Event::Cancelled), "{events:?}");
    assert!(m.is_finished());
}

/// Found by the schedule test: a part's bytes changed behind a crash and it is sent
/// again; a second crash loses that send's answer and the newest checkpoint, so the one
/// rebuilt from records the part with its old ETag, which the server contradicts. The
/// part was in flight: sending it again is allowed (the model held every recorded part
/// sacred, whatever the server said), and the object must come out whole.
#[test]
fn regression_tamper_then_crash_with_a_lost_answer() {
    let mut w = World::new(12_080_978, MIB, 1, Some(ChecksumAlgorithm::Crc32), 0);
    for _ in 0..4 {
        w.step(Action::Deliver(0, Fault::None));
    }
    w.step(Action::TamperLocal { at: 24_161_956 });
    for _ in 0..4 {
        w.step(Action::Deliver(0, Fault::None));
    }
    w.step(Action::Crash {
        executed: true,
        lost: 1,
    });
    w.step(Action::Deliver(0, Fault::Throttle));
    w.step(Action::Deliver(0, Fault::None));
    w.drain();
    w.check_end();
}
