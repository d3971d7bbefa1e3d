//! Property tests of the download machine against an in-memory model of S3 and of the
//! local disk: answers in any order, faults, corrupted bytes, pause, resume, cancel,
//! crashes, an object replaced mid-download and a partial file deleted under it.

mod common;

use common::*;
use proptest::prelude::*;
use transfer_core::*;

/// How the object under test was stored, which decides what can be verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// PutObject: ETag is the MD5.
    PlainMd5,
    /// PutObject with a full-object CRC.
    FullObjectCrc(ChecksumAlgorithm),
    /// Multipart with per-part CRCs (composite checksum).
    Composite(ChecksumAlgorithm),
    /// Multipart without checksums: the multipart ETag.
    MultipartEtag,
    /// Multipart, but the server does not answer partNumber requests.
    MultipartNoPartNumber,
    /// SSE-KMS: nothing to verify against.
    Kms,
}

#[derive(Clone)]
struct Version {
    data: Vec<u8>,
    etag: String,
    checksum: Option<ObjectChecksum>,
    part_size: Option<u64>,
}

fn make_version(kind: Kind, data: Vec<u8>, generation: u64) -> Version {
    let part_size = 5 * MIB;
    let multipart = matches!(
        kind,
        Kind::Composite(_) | Kind::MultipartEtag | Kind::MultipartNoPartNumber
    ) && data.len() as u64 > part_size;
    let parts: Vec<&[u8]> = if multipart {
        data.chunks(part_size as usize).collect()
    } else {
        vec![&data]
    };
    let md5s: Vec<[u8; 16]> = parts.iter().map(|p| md5_digest(p)).collect();
    let hex = |d: [u8; 16]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let etag = match kind {
        Kind::Kms => format!("\"kms-{generation}\""),
        _ if multipart => format!("\"{}\"", multipart_etag(&md5s)),
        _ => format!("\"{}\"", hex(md5_digest(&data))),
    };
    let checksum = match kind {
        Kind::FullObjectCrc(algorithm) => Some(ObjectChecksum {
            algorithm,
            value: checksum(algorithm, &data),
            kind: ChecksumKind::FullObject,
        }),
        Kind::Composite(algorithm) if multipart => {
            let crcs: Vec<u8> = parts
                .iter()
                .flat_map(|p| checksum(algorithm, p).to_be_bytes())
                .collect();
            Some(ObjectChecksum {
                algorithm,
                value: checksum(algorithm, &crcs),
                kind: ChecksumKind::Composite {
                    parts: parts.len() as u32,
                },
            })
        }
        Kind::Composite(algorithm) => Some(ObjectChecksum {
            algorithm,
            value: checksum(algorithm, &data),
            kind: ChecksumKind::FullObject,
        }),
        _ => None,
    };
    Version {
        data,
        etag,
        checksum,
        part_size: multipart.then_some(part_size),
    }
}

struct World {
    kind: Kind,
    versions: Vec<Version>,
    partial: Option<Vec<u8>>,
    dest: Option<Vec<u8>>,
    cfg: DownloadConfig,
    machine: DownloadMachine,
    now: Time,
    in_flight: Vec<Operation>,
    last_checkpoint: Option<DownloadCheckpoint>,
    paused_cmd: bool,
    cancelled: bool,
    replaced: bool,
    /// A cancel was ever issued (a crash forgets the command, not the fact).
    ever_cancelled: bool,
    corrupted: bool,
    /// The partial file was changed behind the machine's back.
    tampered: bool,
    /// Every checkpoint emitted that may have reached the disk, oldest first: a crash
    /// rebuilds from one of the newest few, never from one before `durable`.
    history: Vec<DownloadCheckpoint>,
    /// How many entries of `history` the driver is known to have saved (it waits for
    /// the saver before preparing the partial file, and on pause).
    durable: usize,
    /// The clock ran past the stall timeout with nothing answered.
    stalled: bool,
    /// The retry budget is small enough for random faults to exhaust it.
    scarce_retries: bool,
    progress_floor: u64,
    finished: Option<Event>,
    log: Vec<String>,
}

const PARTIAL: &str = "dest.s3tm-partial";

impl World {
    fn new(kind: Kind, size: u64, range_size: u64, max_in_flight: usize, seed: u64) -> Self {
        Self::with_attempts(kind, size, range_size, max_in_flight, seed, 200)
    }

    fn with_attempts(
        kind: Kind,
        size: u64,
        range_size: u64,
        max_in_flight: usize,
        seed: u64,
        attempts: u32,
    ) -> Self {
        let cfg = DownloadConfig {
            range_size_bytes: range_size,
            max_in_flight,
            retry: retry_budget(seed, attempts),
        };
        let machine = DownloadMachine::new(cfg.clone(), PARTIAL.into(), Time::ZERO);
        let mut w = World {
            kind,
            versions: vec![make_version(kind, content(seed, size), 0)],
            partial: None,
            dest: None,
            cfg,
            machine,
            now: Time::ZERO,
            in_flight: vec![],
            last_checkpoint: None,
            paused_cmd: false,
            cancelled: false,
            replaced: false,
            ever_cancelled: false,
            corrupted: false,
            tampered: false,
            history: vec![],
            durable: 0,
            stalled: false,
            scarce_retries: attempts < 200,
            progress_floor: 0,
            finished: None,
            log: vec![],
        };
        w.poll();
        w
    }

    fn take_checkpoints(&mut self) {
        while let Some(Checkpoint::Download(cp)) = self.machine.poll_checkpoint() {
            assert!(cp.completed.is_canonical());
            assert_eq!(cp.partial_path, PARTIAL);
            self.history.push(cp.clone());
            self.last_checkpoint = Some(cp);
        }
    }

    fn current(&self) -> &Version {
        self.versions.last().expect("a version")
    }

    fn poll(&mut self) {
        while let Some(op) = self.machine.poll_operation() {
            if matches!(op.kind, OpKind::PreparePartialFile { .. }) {
                // The driver saves every checkpoint emitted so far before this runs.
                self.take_checkpoints();
                self.durable = self.history.len();
            }
            assert!(
                !self.paused_cmd || matches!(op.kind, OpKind::DeletePartialFile),
                "operation {op:?} started while paused"
            );
            assert!(self.finished.is_none(), "operation after the end: {op:?}");
            self.log.push(format!("start {:?} {:?}", op.id, op.kind));
            self.in_flight.push(op);
        }
        let gets = self
            .in_flight
            .iter()
            .filter(|o| matches!(o.kind, OpKind::GetRange { .. }))
            .count();
        assert!(gets <= self.cfg.max_in_flight, "{gets} GETs in flight");
        self.take_checkpoints();
        while let Some(ev) = self.machine.poll_event() {
            self.log.push(format!("event {ev:?}"));
            match &ev {
                Event::Progress {
                    bytes_done,
                    bytes_total,
                } => {
                    assert!(*bytes_done >= self.progress_floor, "progress went back");
                    assert!(bytes_done <= bytes_total);
                    self.progress_floor = *bytes_done;
                }
                Event::Restarted { .. } => self.progress_floor = 0,
                Event::Invalidated { .. } => {
                    assert!(
                        self.tampered,
                        "a range was invalidated with the partial file untouched\n{}",
                        self.log.join("\n")
                    );
                    self.progress_floor = 0;
                }
                Event::Paused => self.durable = self.history.len(),
                Event::Completed(_) | Event::Failed(_) | Event::Cancelled => {
                    assert!(self.finished.is_none(), "two endings");
                    self.finished = Some(ev.clone());
                }
                _ => {}
            }
        }
    }

    fn execute(&mut self, op: &Operation, fault: Fault) -> Outcome {
        let network = matches!(op.kind, OpKind::HeadObject { .. } | OpKind::GetRange { .. });
        let fault = if network || fault == Fault::Drop {
            fault
        } else {
            Fault::None
        };
        if fault == Fault::Drop {
            return Outcome::Dropped;
        }
        if let Some(f) = failure(fault)
            && fault != Fault::LostAnswer
        {
            return Outcome::Failed(f);
        }
        let outcome = self.apply(op, fault == Fault::Corrupt);
        match failure(fault) {
            Some(f) => Outcome::Failed(f),
            None => outcome,
        }
    }

    fn apply(&mut self, op: &Operation, corrupt: bool) -> Outcome {
        let v = self.current().clone();
        let precondition = || {
            Outcome::Failed(status_failure(
                FailureKind::PreconditionFailed,
                412,
                "PreconditionFailed",
            ))
        };
        match &op.kind {
            OpKind::HeadObject {
                part_number,
                if_match,
            } => {
                if if_match.as_ref().is_some_and(|e| e.0 != v.etag) {
                    return precondition();
                }
                let size = v.data.len() as u64;
                let (content_length, parts_count) = match (part_number, v.part_size) {
                    (Some(_), _) if self.kind == Kind::MultipartNoPartNumber => {
                        return Outcome::Failed(status_failure(
                            FailureKind::InvalidRequest,
                            400,
                            "InvalidArgument",
                        ));
                    }
                    (Some(p), Some(ps)) => {
                        let n = size.div_ceil(ps);
                        let start = u64::from(p.0 - 1) * ps;
                        ((start + ps).min(size) - start, Some(n as u32))
                    }
                    _ => (size, None),
                };
                Outcome::ObjectInfo(ObjectInfo {
                    content_length,
                    etag: ETag(v.etag.clone()),
                    last_modified: Some("Wed, 25 Nov 2026 09:00:00 GMT".into()),
                    checksum: v.checksum,
                    parts_count,
                    etag_not_md5: self.kind == Kind::Kms,
                    part_size_hint: None,
                })
            }
            OpKind::PreparePartialFile { size_bytes, create } => {
                let previous_len = self.partial.as_ref().map(|p| p.len() as u64);
                if previous_len.is_none() && !create {
                    return Outcome::FilePrepared { previous_len };
                }
                let p = self.partial.get_or_insert_with(Vec::new);
                p.resize(*size_bytes as usize, 0);
                Outcome::FilePrepared { previous_len }
            }
            OpKind::GetRange {
                range,
                part_number,
                if_match,
                hashes,
            } => {
                if if_match.0 != v.etag {
                    return precondition();
                }
                let mut bytes = v.data[range.start as usize..range.end as usize].to_vec();
                let server_checksum = match (part_number, v.part_size, v.checksum) {
                    (Some(p), Some(ps), Some(c)) => {
                        let start = u64::from(p.0 - 1) * ps;
                        assert_eq!(range.start, start, "part {p} fetched at the wrong offset");
                        Some(checksum(c.algorithm, &bytes))
                    }
                    _ => None,
                };
                if corrupt && !bytes.is_empty() {
                    bytes[0] ^= 0x55;
                    self.corrupted = true;
                }
                let Some(partial) = self
                    .partial
                    .as_mut()
                    .filter(|p| p.len() as u64 >= range.end)
                else {
                    return Outcome::Failed(Failure::new(
                        FailureKind::LocalIo,
                        "partial file vanished",
                    ));
                };
                partial[range.start as usize..range.end as usize].copy_from_slice(&bytes);
                Outcome::RangeWritten {
                    checksum: hashes.checksum.map(|a| checksum(a, &bytes)),
                    md5: hashes.md5.then(|| md5_digest(&bytes)),
                    server_checksum,
                }
            }
            OpKind::HashPartialRange { range, hashes } => match self
                .partial
                .as_ref()
                .filter(|p| p.len() as u64 >= range.end)
            {
                Some(p) => {
                    let bytes = &p[range.start as usize..range.end as usize];
                    Outcome::PartialRangeHashed {
                        checksum: hashes.checksum.map(|a| checksum(a, bytes)),
                        md5: hashes.md5.then(|| md5_digest(bytes)),
                    }
                }
                None => {
                    Outcome::Failed(Failure::new(FailureKind::LocalIo, "partial file vanished"))
                }
            },
            OpKind::HashPartialFile => match &self.partial {
                Some(p) => Outcome::FileHashed { md5: md5_digest(p) },
                None => {
                    Outcome::Failed(Failure::new(FailureKind::LocalIo, "partial file vanished"))
                }
            },
            OpKind::CommitPartialFile => match self.partial.take() {
                Some(p) => {
                    self.dest = Some(p);
                    Outcome::FileCommitted
                }
                None => {
                    Outcome::Failed(Failure::new(FailureKind::LocalIo, "partial file vanished"))
                }
            },
            OpKind::DeletePartialFile => {
                self.partial = None;
                Outcome::FileDeleted
            }
            other => panic!("a download asked for {other:?}"),
        }
    }

    fn deliver(&mut self, index: usize, fault: Fault) {
        if self.in_flight.is_empty() {
            return;
        }
        let op = self.in_flight.remove(index % self.in_flight.len());
        let outcome = self.execute(&op, fault);
        self.log.push(format!("answer {:?} {fault:?}", op.id));
        self.machine.handle_outcome(self.now, op.id, outcome);
        self.poll();
    }

    fn step(&mut self, action: Action) {
        if self.finished.is_some() {
            return;
        }
        self.log.push(format!("{action:?}"));
        match action {
            Action::Deliver(i, f) => self.deliver(i, f),
            Action::Timeout => {
                if self.in_flight.is_empty()
                    && let Some(t) = self.machine.poll_timeout()
                {
                    self.now = self.now.max(t);
                    self.machine.handle_timeout(self.now);
                    self.poll();
                }
            }
            Action::Pause => {
                if !self.cancelled {
                    self.paused_cmd = true;
                    self.machine.pause(self.now);
                    self.poll();
                }
            }
            Action::Resume => {
                self.paused_cmd = false;
                self.progress_floor = 0;
                self.machine.resume(self.now);
                self.poll();
            }
            Action::Cancel => {
                self.paused_cmd = false;
                self.cancelled = true;
                self.ever_cancelled = true;
                self.machine.cancel(self.now);
                self.poll();
            }
            Action::Crash { executed, lost } => self.crash(executed, lost),
            Action::Stall => {
                self.now = self.now + self.cfg.retry.stall_timeout;
                self.stalled = true;
                self.machine.handle_timeout(self.now);
                self.poll();
            }
            Action::ChangeRemoteOrSource => {
                let g = self.versions.len() as u64;
                let len = self.current().data.len() as u64;
                let v = make_version(self.kind, content(g * 104_729, len + g), g);
                self.versions.push(v);
                self.replaced = true;
            }
            Action::LoseState => self.partial = None,
            Action::TamperLocal { at } => {
                if !self.machine.is_paused() {
                    self.crash(false, 0);
                }
                if let Some(p) = self.partial.as_mut().filter(|p| !p.is_empty()) {
                    let i = (at % p.len() as u64) as usize;
                    p[i] ^= 0x5a;
                    self.tampered = true;
                }
            }
        }
    }

    fn crash(&mut self, executed: bool, lost: usize) {
        for op in std::mem::take(&mut self.in_flight) {
            // Only what reached the disk survives; an unanswered range is simply lost.
            if executed
                && matches!(
                    op.kind,
                    OpKind::GetRange { .. } | OpKind::PreparePartialFile { .. }
                )
            {
                let _ = self.apply(&op, false);
            }
        }
        self.paused_cmd = false;
        self.cancelled = false;
        self.progress_floor = 0;
        self.now = self.now + std::time::Duration::from_secs(1);
        self.last_checkpoint = surviving(&mut self.history, &mut self.durable, lost);
        self.machine = match self.last_checkpoint.clone() {
            Some(cp) => DownloadMachine::from_checkpoint(self.cfg.clone(), cp, self.now),
            None => DownloadMachine::new(self.cfg.clone(), PARTIAL.into(), self.now),
        };
        self.poll();
    }

    fn drain(&mut self) {
        for _ in 0..100_000 {
            if self.finished.is_some() {
                return;
            }
            if self.machine.is_paused() || self.paused_cmd {
                self.paused_cmd = false;
                self.progress_floor = 0;
                self.machine.resume(self.now);
                self.poll();
            } else if !self.in_flight.is_empty() {
                self.deliver(0, Fault::None);
            } else if let Some(t) = self.machine.poll_timeout() {
                self.now = self.now.max(t);
                self.machine.handle_timeout(self.now);
                self.poll();
            } else {
                panic!(
                    "stuck: nothing in flight, no timer, not finished\n{}",
                    self.log.join("\n")
                );
            }
        }
        panic!("did not finish");
    }

    fn check_end(&self) {
        let log = || self.log.join("\n");
        match self.finished.as_ref().expect("finished") {
            Event::Completed(c) => {
                let dest = self.dest.as_ref().expect("a file after Completed");
                let matching = self.versions.iter().find(|v| &v.data == dest);
                let verifiable = !matches!(c.verified, Verified::Unverified { .. });
                match matching {
                    Some(v) => {
                        assert_eq!(c.bytes_total, v.data.len() as u64);
                        assert_eq!(c.etag.as_ref().map(|e| e.0.clone()), Some(v.etag.clone()));
                    }
                    None => {
                        assert!(self.corrupted, "the file mixes versions\n{}", log());
                        assert!(
                            !verifiable,
                            "corruption passed verification {:?}\n{}",
                            c.verified,
                            log()
                        );
                    }
                }
                assert!(self.partial.is_none(), "partial file left after completion");
                if let Some(v) = matching {
                    let expected_unverified = self.kind == Kind::Kms
                        || self.kind == Kind::MultipartNoPartNumber && v.part_size.is_some();
                    assert_eq!(
                        !verifiable, expected_unverified,
                        "verified as {:?} for {:?}",
                        c.verified, self.kind
                    );
                }
                assert_eq!(self.machine.progress().0, c.bytes_total);
            }
            Event::Failed(TransferError::Stalled(_)) => {
                assert!(self.stalled, "stalled with nothing hanging\n{}", log());
                assert!(self.dest.is_none());
            }
            Event::Failed(TransferError::RetriesExhausted { .. }) => {
                assert!(
                    self.scarce_retries,
                    "retries exhausted under a generous budget\n{}",
                    log()
                );
                assert!(self.dest.is_none());
            }
            Event::Failed(TransferError::ObjectChanged { .. }) => {
                assert!(
                    self.replaced,
                    "ObjectChanged without a replacement\n{}",
                    log()
                );
                assert!(
                    self.dest.is_none() && self.partial.is_none(),
                    "files left after ObjectChanged"
                );
            }
            Event::Failed(TransferError::ChecksumMismatch { .. }) => {
                assert!(
                    self.corrupted,
                    "checksum mismatch without corruption\n{}",
                    log()
                );
                assert!(self.dest.is_none() && self.partial.is_none());
            }
            Event::Failed(TransferError::Local { .. }) => {
                // Only the partial file deleted under a running download causes this.
                assert!(
                    self.log.iter().any(|l| l == "LoseState"),
                    "local failure\n{}",
                    log()
                );
                assert!(self.dest.is_none());
            }
            Event::Cancelled => {
                assert!(
                    self.ever_cancelled,
                    "Cancelled without a cancel\n{}",
                    self.log.join("\n")
                );
                assert!(
                    self.partial.is_none() && self.dest.is_none(),
                    "files left after cancel"
                );
            }
            other => panic!("unexpected end {other:?}\n{}", log()),
        }
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::PlainMd5),
        Just(Kind::FullObjectCrc(ChecksumAlgorithm::Crc32)),
        Just(Kind::FullObjectCrc(ChecksumAlgorithm::Crc32c)),
        Just(Kind::Composite(ChecksumAlgorithm::Crc32)),
        Just(Kind::Composite(ChecksumAlgorithm::Crc32c)),
        Just(Kind::MultipartEtag),
        Just(Kind::MultipartNoPartNumber),
        Just(Kind::Kms),
    ]
}

proptest! {
    #![proptest_config(config("proptest-regressions/download_model.txt"))]

    #[test]
    fn download_survives_any_schedule(
        kind in kind(),
        size in size(MIB),
        range_size in prop_oneof![Just(MIB), Just(2 * MIB), Just(8 * MIB)],
        max_in_flight in 1usize..5,
        seed in any::<u64>(),
        attempts in attempts(),
        actions in schedule(1),
    ) {
        let mut w = World::with_attempts(kind, size, range_size, max_in_flight, seed, attempts);
        for a in actions {
            w.step(a);
        }
        w.drain();
        w.check_end();
        // A failure that keeps its checkpoint and partial file is resumed as `s3tm
        // resume` would, from what the driver saved before it reported the failure.
        if let Some(Event::Failed(e)) = &w.finished
            && matches!(e, TransferError::Stalled(_) | TransferError::RetriesExhausted { .. })
        {
            w.finished = None;
            w.durable = w.history.len();
            w.crash(false, 0);
            w.drain();
            w.check_end();
        }
    }
}

fn run_clean(kind: Kind, size: u64) -> World {
    let mut w = World::new(kind, size, 2 * MIB, 3, 9);
    w.drain();
    w.check_end();
    w
}

fn verified(w: &World) -> Verified {
    match &w.finished {
        Some(Event::Completed(c)) => c.verified.clone(),
        other => panic!("not completed: {other:?}"),
    }
}

#[test]
fn each_kind_of_object_is_verified_the_right_way() {
    use ChecksumAlgorithm::*;
    assert_eq!(
        verified(&run_clean(Kind::PlainMd5, 7 * MIB)),
        Verified::Md5Etag
    );
    assert_eq!(verified(&run_clean(Kind::PlainMd5, 0)), Verified::Md5Etag);
    assert_eq!(
        verified(&run_clean(Kind::FullObjectCrc(Crc32c), 7 * MIB)),
        Verified::FullObjectChecksum(Crc32c)
    );
    assert_eq!(
        verified(&run_clean(Kind::Composite(Crc32), 12 * MIB)),
        Verified::CompositeChecksum {
            algorithm: Crc32,
            parts: 3
        }
    );
    assert_eq!(
        verified(&run_clean(Kind::MultipartEtag, 12 * MIB)),
        Verified::MultipartEtag { parts: 3 }
    );
    assert!(matches!(
        verified(&run_clean(Kind::Kms, 3 * MIB)),
        Verified::Unverified { .. }
    ));
}

#[test]
fn resume_before_the_pause_settles_sends_no_second_head() {
    let mut w = World::new(Kind::PlainMd5, 9 * MIB, 2 * MIB, 2, 11);
    w.step(Action::Pause); // while HeadObject is in flight
    w.step(Action::Resume);
    w.deliver(0, Fault::Throttle); // the Head waits for its retry
    assert!(
        w.in_flight.is_empty(),
        "a second Head was sent beside the retry: {:?}",
        w.in_flight
    );
    w.drain();
    w.check_end();
}

#[test]
fn replaced_object_fails_with_object_changed_and_no_mixed_file() {
    let mut w = World::new(Kind::PlainMd5, 9 * MIB, 2 * MIB, 2, 10);
    for _ in 0..3 {
        w.deliver(0, Fault::None); // head, prepare, first range
    }
    w.step(Action::Pause);
    w.drain_until_paused();
    w.step(Action::ChangeRemoteOrSource);
    w.crash(false, 0);
    w.drain();
    assert!(
        matches!(
            w.finished,
            Some(Event::Failed(TransferError::ObjectChanged { .. }))
        ),
        "{:?}",
        w.finished
    );
    assert!(w.partial.is_none() && w.dest.is_none());
}

/// Bytes of the partial file overwritten while the download was stopped: the rebuilt
/// download reads back what the checkpoint says is there, fetches the range that no
/// longer matches again, and the file is the object's, whatever the object offers to
/// verify against (an SSE-KMS object offers nothing).
#[test]
fn a_range_changed_behind_the_checkpoint_is_fetched_again() {
    for kind in [Kind::PlainMd5, Kind::MultipartEtag, Kind::Kms] {
        let mut w = World::new(kind, 9 * MIB, 2 * MIB, 1, 12);
        while w
            .last_checkpoint
            .as_ref()
            .is_none_or(|c| c.completed.len_bytes() < 4 * MIB)
        {
            w.deliver(0, Fault::None);
        }
        w.step(Action::TamperLocal { at: 100 }); // crashes, then changes a byte of range 1
        w.drain();
        w.check_end();
        assert_eq!(w.dest.as_ref(), Some(&w.current().data), "{kind:?}");
        let Some(Event::Completed(c)) = &w.finished else {
            panic!("not completed: {:?}", w.finished)
        };
        assert!(c.bytes_rechecked >= 4 * MIB, "{kind:?}: {c:?}");
        assert!(c.bytes_recheck_failed > 0, "{kind:?}: {c:?}");
    }
}

#[test]
fn corrupted_range_is_caught_and_named() {
    let mut w = World::new(
        Kind::Composite(ChecksumAlgorithm::Crc32),
        12 * MIB,
        2 * MIB,
        1,
        11,
    );
    w.deliver(0, Fault::None); // head
    w.deliver(0, Fault::None); // head part 1
    w.deliver(0, Fault::None); // prepare
    w.deliver(0, Fault::Corrupt); // part 1
    w.drain();
    match &w.finished {
        Some(Event::Failed(TransferError::ChecksumMismatch { range: Some(r), .. })) => {
            assert_eq!(*r, ByteRange::new(0, 5 * MIB));
        }
        other => panic!("expected a mismatch naming part 1, got {other:?}"),
    }
}

impl World {
    fn drain_until_paused(&mut self) {
        while !self.machine.is_paused() && !self.in_flight.is_empty() {
            self.deliver(0, Fault::None);
        }
        assert!(self.machine.is_paused());
    }
}
