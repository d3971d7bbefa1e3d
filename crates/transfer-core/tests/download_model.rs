//! Property tests of the download machine against an in-memory model of S3 and of the
//! local disk: answers in any order, faults, corrupted bytes, pause, resume, cancel,
//! crashes, an object replaced mid-download and a partial file deleted under it.
// clippy.toml's bans (no clock, files, sockets, environment) are for the library; tests
// and benches drive it from the outside.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::disallowed_macros
)]

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
    /// Multipart, but the server ignores partNumber (answers for the whole object, as
    /// s3s-fs and Ceph RGW do).
    MultipartNoPartNumber,
    /// Multipart, the server refuses partNumber, and the uploader recorded a part size
    /// (s3tm's `x-amz-meta-s3tm-part-size`) that is true only when the parts are even.
    MultipartHinted,
    /// Multipart without checksums, on a server whose `Content-Range` for a part puts
    /// part N at (N - 1) times its length, whatever the lengths before it.
    MisplacedParts,
    /// Multipart with a composite checksum reported the way moto 5.2 does on HeadObject:
    /// no `-N`, no checksum type, and (when `label` differs from `real`) under the name
    /// of another algorithm than the one computed.
    MotoComposite {
        label: ChecksumAlgorithm,
        real: ChecksumAlgorithm,
    },
    /// A mislabelled composite checksum as `MotoComposite`, on a server that also
    /// ignores partNumber: nothing can be proved, and nothing may be called a mismatch.
    UnstatedNoPartNumber,
    /// SSE-KMS: nothing to verify against.
    Kms,
}

#[derive(Clone)]
struct Version {
    data: Vec<u8>,
    etag: String,
    checksum: Option<ObjectChecksum>,
    /// The length of each part of a multipart object.
    part_lens: Option<Vec<u64>>,
}

impl Version {
    fn part(&self, n: u32) -> Option<ByteRange> {
        let lens = self.part_lens.as_ref()?;
        let start: u64 = lens.iter().take(n as usize - 1).sum();
        Some(ByteRange::new(start, start + lens.get(n as usize - 1)?))
    }
}

/// Part lengths in MiB, taken in turn (the last part takes what is left).
const EVEN: &[u64] = &[5];
/// aws-cli's part size.
const EIGHT: &[u64] = &[8];
const SEVEN_FIVE: &[u64] = &[7, 5, 6];
const FIVE_SEVEN: &[u64] = &[5, 7, 6];

fn split<'a>(data: &'a [u8], pattern: &[u64]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    for i in 0.. {
        if rest.is_empty() {
            break;
        }
        let len = (pattern[i % pattern.len()] * MIB).min(rest.len() as u64) as usize;
        let (part, tail) = rest.split_at(len);
        parts.push(part);
        rest = tail;
    }
    parts
}

fn make_version(kind: Kind, data: Vec<u8>, generation: u64, pattern: &[u64]) -> Version {
    let multipart = matches!(
        kind,
        Kind::Composite(_)
            | Kind::MultipartEtag
            | Kind::MultipartNoPartNumber
            | Kind::MultipartHinted
            | Kind::MisplacedParts
            | Kind::MotoComposite { .. }
            | Kind::UnstatedNoPartNumber
    ) && data.len() as u64 > 5 * MIB;
    let parts: Vec<&[u8]> = if multipart {
        split(&data, pattern)
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
                .flat_map(|p| checksum(algorithm, p).as_bytes().to_vec())
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
        Kind::MotoComposite { .. } | Kind::UnstatedNoPartNumber => {
            let (label, real) = match kind {
                Kind::MotoComposite { label, real } => (label, real),
                _ => (ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Crc32),
            };
            let crcs: Vec<u8> = parts
                .iter()
                .flat_map(|p| checksum(real, p).as_bytes().to_vec())
                .collect();
            Some(ObjectChecksum {
                algorithm: label,
                // A PutObject's checksum is the one the client sent, rightly labelled.
                value: if multipart {
                    checksum(real, &crcs)
                } else {
                    checksum(label, &data)
                },
                kind: ChecksumKind::Unstated,
            })
        }
        _ => None,
    };
    let part_lens = multipart.then(|| parts.iter().map(|p| p.len() as u64).collect());
    Version {
        data,
        etag,
        checksum,
        part_lens,
    }
}

struct World {
    kind: Kind,
    /// The object's part lengths, in MiB, taken in turn.
    pattern: &'static [u64],
    versions: Vec<Version>,
    partial: Option<Vec<u8>>,
    dest: Option<Vec<u8>>,
    cfg: DownloadConfig,
    last_checkpoint: Option<DownloadCheckpoint>,
    replaced: bool,
    corrupted: bool,
    /// The partial file was changed behind the machine's back.
    tampered: bool,
    /// Every checkpoint emitted that may have reached the disk, oldest first: a crash
    /// rebuilds from one of the newest few, never from one before `durable`.
    history: Vec<DownloadCheckpoint>,
    /// How many entries of `history` the driver is known to have saved (it waits for
    /// the saver before preparing the partial file, and on pause).
    durable: usize,
    /// The retry budget is small enough for random faults to exhaust it.
    scarce_retries: bool,
    d: Driver<DownloadMachine>,
}

const PARTIAL: &str = "dest.s3tm-partial";

impl World {
    fn new(kind: Kind, size: u64, range_size: u64, max_in_flight: usize, seed: u64) -> Self {
        Self::with_attempts(kind, EVEN, size, range_size, max_in_flight, seed, 200)
    }

    fn with_attempts(
        kind: Kind,
        pattern: &'static [u64],
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
            pattern,
            versions: vec![make_version(kind, content(seed, size), 0, pattern)],
            partial: None,
            dest: None,
            cfg,
            last_checkpoint: None,
            replaced: false,
            corrupted: false,
            tampered: false,
            history: vec![],
            durable: 0,
            scarce_retries: attempts < 200,
            d: Driver::new(machine),
        };
        w.poll();
        w
    }

    fn take_checkpoints(&mut self) {
        while let Some(save) = self.d.machine.poll_checkpoint() {
            let last = self.last_checkpoint.clone().map(Checkpoint::Download);
            let Checkpoint::Download(cp) = replay(last, save) else {
                panic!("a download saved an upload's checkpoint");
            };
            assert!(cp.completed.is_canonical());
            assert_eq!(cp.partial_path, PARTIAL);
            self.history.push(cp.clone());
            self.last_checkpoint = Some(cp);
        }
    }

    fn current(&self) -> &Version {
        self.versions.last().expect("a version")
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
                // moto compares If-Match on a part with the part's ETag: none is sent.
                assert!(
                    part_number.is_none() || if_match.is_none(),
                    "If-Match on a part's HeadObject"
                );
                if if_match.as_ref().is_some_and(|e| e.0 != v.etag) {
                    return precondition();
                }
                let size = v.data.len() as u64;
                let mut part_range = None;
                let (content_length, parts_count) = match (part_number, &v.part_lens) {
                    (Some(_), _) if self.kind == Kind::MultipartHinted => {
                        return Outcome::Failed(status_failure(
                            FailureKind::InvalidRequest,
                            400,
                            "InvalidArgument",
                        ));
                    }
                    (Some(_), _)
                        if matches!(
                            self.kind,
                            Kind::MultipartNoPartNumber | Kind::UnstatedNoPartNumber
                        ) =>
                    {
                        (size, None)
                    }
                    (Some(p), Some(lens)) => match v.part(p.0) {
                        Some(r) => {
                            // S3 says where the part lies; moto does not.
                            part_range = match self.kind {
                                Kind::MotoComposite { .. } => None,
                                Kind::MisplacedParts => {
                                    let start = u64::from(p.0 - 1) * r.len_bytes();
                                    Some(ByteRange::new(start, start + r.len_bytes()))
                                }
                                _ => Some(r),
                            };
                            (r.len_bytes(), Some(lens.len() as u32))
                        }
                        None => {
                            return Outcome::Failed(status_failure(
                                FailureKind::InvalidRequest,
                                416,
                                "InvalidPartNumber",
                            ));
                        }
                    },
                    _ => (size, None),
                };
                Outcome::ObjectInfo(ObjectInfo {
                    content_length,
                    etag: ETag(v.etag.clone()),
                    last_modified: Some("Wed, 25 Nov 2026 09:00:00 GMT".into()),
                    checksum: v.checksum,
                    parts_count,
                    part_range,
                    etag_not_md5: self.kind == Kind::Kms,
                    metadata: if self.kind == Kind::MultipartHinted {
                        vec![(PART_SIZE_METADATA.to_owned(), (5 * MIB).to_string())]
                    } else {
                        Vec::new()
                    },
                })
            }
            OpKind::PreparePartialFile {
                size_bytes, create, ..
            } => {
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
                if_match,
                hashes,
            } => {
                if if_match.0 != v.etag {
                    return precondition();
                }
                let mut bytes = v.data[range.start as usize..range.end as usize].to_vec();
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
            OpKind::HashPartialFile {
                hashes:
                    FileHashes {
                        md5,
                        checksum: algorithm,
                        multipart_part_sizes,
                    },
            } => match &self.partial {
                Some(p) => Outcome::FileHashed {
                    md5: md5.then(|| md5_digest(p)),
                    checksum: algorithm.map(|a| checksum(a, p)),
                    multipart_etags: multipart_part_sizes
                        .iter()
                        .map(|size| {
                            let md5s: Vec<[u8; 16]> =
                                p.chunks(*size as usize).map(md5_digest).collect();
                            multipart_etag(&md5s)
                        })
                        .collect(),
                },
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

    fn check_end(&self) {
        let log = || self.d.log.join("\n");
        match self.d.finished.as_ref().expect("finished") {
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
                    let lens = v.part_lens.as_deref().unwrap_or_default();
                    let multipart = lens.len() > 1;
                    // The hint describes the parts when all but the last have its size.
                    let hint_wrong = lens.iter().rev().skip(1).any(|l| *l != 5 * MIB)
                        || lens.last().is_some_and(|l| *l > 5 * MIB);
                    let misplaced = (1..=lens.len() as u32).any(|n| {
                        v.part(n)
                            .is_some_and(|r| r.start != u64::from(n - 1) * r.len_bytes())
                    });
                    // Parts of one size that other tools use (the last no longer): found
                    // by trying those sizes where the server does not tell.
                    let conventional = lens.split_last().is_some_and(|(last, rest)| {
                        let size = rest.first().unwrap_or(last);
                        [5, 8, 10, 15, 16].contains(&(size / MIB))
                            && size % MIB == 0
                            && rest.iter().all(|l| l == size)
                            && last <= size
                    });
                    let expected_unverified = self.kind == Kind::Kms
                        || self.kind == Kind::MisplacedParts && misplaced && !conventional
                        || self.kind == Kind::MultipartNoPartNumber && multipart && !conventional
                        || self.kind == Kind::UnstatedNoPartNumber && multipart && !conventional
                        || self.kind == Kind::MultipartHinted
                            && multipart
                            && hint_wrong
                            && !conventional;
                    assert_eq!(
                        !verifiable, expected_unverified,
                        "verified as {:?} for {:?}",
                        c.verified, self.kind
                    );
                }
                assert_eq!(self.d.machine.progress().0, c.bytes_total);
            }
            Event::Failed(TransferError::Stalled(_)) => {
                assert!(self.d.stalled, "stalled with nothing hanging\n{}", log());
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
                // The bytes stay for the user; the checkpoint no longer vouches for them.
                assert!(self.dest.is_none() && self.partial.is_some());
                let cp = self.last_checkpoint.as_ref().expect("a checkpoint is kept");
                assert!(cp.completed.ranges().is_empty(), "{cp:?}");
            }
            Event::Failed(TransferError::Local { .. }) => {
                // Only the partial file deleted under a running download causes this.
                assert!(
                    self.d.log.iter().any(|l| l == "LoseState"),
                    "local failure\n{}",
                    log()
                );
                assert!(self.dest.is_none());
            }
            Event::Cancelled => {
                assert!(
                    self.d.ever_cancelled,
                    "Cancelled without a cancel\n{}",
                    self.d.log.join("\n")
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

impl Model for World {
    type Machine = DownloadMachine;

    fn driver(&mut self) -> &mut Driver<DownloadMachine> {
        &mut self.d
    }

    fn stall_timeout(&self) -> std::time::Duration {
        self.cfg.retry.stall_timeout
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

    fn poll(&mut self) {
        while let Some(op) = self.d.machine.poll_operation() {
            if matches!(op.kind, OpKind::PreparePartialFile { .. }) {
                // The driver saves every checkpoint emitted so far before this runs.
                self.take_checkpoints();
                self.durable = self.history.len();
            }
            assert!(
                !self.d.paused_cmd || matches!(op.kind, OpKind::DeletePartialFile),
                "operation {op:?} started while paused"
            );
            assert!(self.d.finished.is_none(), "operation after the end: {op:?}");
            self.d.log.push(format!("start {:?} {:?}", op.id, op.kind));
            self.d.in_flight.push(op);
        }
        let gets = self
            .d
            .in_flight
            .iter()
            .filter(|o| matches!(o.kind, OpKind::GetRange { .. }))
            .count();
        assert!(gets <= self.cfg.max_in_flight, "{gets} GETs in flight");
        self.take_checkpoints();
        while let Some(ev) = self.d.machine.poll_event() {
            self.d.observe(&ev);
            match &ev {
                Event::Invalidated { .. } => {
                    assert!(
                        self.tampered,
                        "a range was invalidated with the partial file untouched\n{}",
                        self.d.log.join("\n")
                    );
                }
                Event::Paused => self.durable = self.history.len(),
                _ => {}
            }
        }
    }

    fn crash(&mut self, executed: bool, lost: usize) {
        for op in std::mem::take(&mut self.d.in_flight) {
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
        self.d.paused_cmd = false;
        self.d.cancelled_cmd = false;
        self.d.progress_floor = 0;
        self.d.now = self.d.now + std::time::Duration::from_secs(1);
        self.last_checkpoint = surviving(&mut self.history, &mut self.durable, lost);
        self.d.machine = match self.last_checkpoint.clone() {
            Some(cp) => DownloadMachine::from_checkpoint(self.cfg.clone(), cp, self.d.now),
            None => DownloadMachine::new(self.cfg.clone(), PARTIAL.into(), self.d.now),
        };
        self.poll();
    }

    fn change(&mut self) {
        let g = self.versions.len() as u64;
        let len = self.current().data.len() as u64;
        let v = make_version(self.kind, content(g * 104_729, len + g), g, self.pattern);
        self.versions.push(v);
        self.replaced = true;
    }

    fn lose_state(&mut self) {
        self.partial = None;
    }

    fn tamper(&mut self, at: u64) {
        if let Some(p) = self.partial.as_mut().filter(|p| !p.is_empty()) {
            let i = (at % p.len() as u64) as usize;
            p[i] ^= 0x5a;
            self.tampered = true;
        }
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::PlainMd5),
        Just(Kind::FullObjectCrc(ChecksumAlgorithm::Crc32)),
        Just(Kind::FullObjectCrc(ChecksumAlgorithm::Crc32c)),
        Just(Kind::FullObjectCrc(ChecksumAlgorithm::Crc64Nvme)),
        Just(Kind::FullObjectCrc(ChecksumAlgorithm::Sha1)),
        Just(Kind::FullObjectCrc(ChecksumAlgorithm::Sha256)),
        Just(Kind::Composite(ChecksumAlgorithm::Crc32)),
        Just(Kind::Composite(ChecksumAlgorithm::Crc32c)),
        Just(Kind::Composite(ChecksumAlgorithm::Sha1)),
        Just(Kind::Composite(ChecksumAlgorithm::Sha256)),
        Just(Kind::MultipartEtag),
        Just(Kind::MultipartNoPartNumber),
        Just(Kind::MultipartHinted),
        Just(Kind::MisplacedParts),
        Just(Kind::UnstatedNoPartNumber),
        Just(Kind::MotoComposite {
            label: ChecksumAlgorithm::Crc32,
            real: ChecksumAlgorithm::Crc32
        }),
        Just(Kind::MotoComposite {
            label: ChecksumAlgorithm::Crc32c,
            real: ChecksumAlgorithm::Crc32
        }),
        Just(Kind::Kms),
    ]
}

proptest! {
    #![proptest_config(config("proptest-regressions/download_model.txt"))]

    #[test]
    fn download_survives_any_schedule(
        kind in kind(),
        pattern in prop_oneof![Just(EVEN), Just(EIGHT), Just(SEVEN_FIVE), Just(FIVE_SEVEN)],
        size in size(MIB),
        range_size in prop_oneof![Just(MIB), Just(2 * MIB), Just(8 * MIB)],
        max_in_flight in 1usize..5,
        seed in any::<u64>(),
        attempts in attempts(),
        actions in schedule(1),
    ) {
        let mut w =
            World::with_attempts(kind, pattern, size, range_size, max_in_flight, seed, attempts);
        for a in actions {
            w.step(a);
        }
        w.drain();
        w.check_end();
        // A failure that keeps its checkpoint and partial file is resumed as `s3tm
        // resume` would, from what the driver saved before it reported the failure.
        if let Some(Event::Failed(e)) = &w.d.finished
            && matches!(
                e,
                TransferError::Stalled(_)
                    | TransferError::RetriesExhausted { .. }
                    | TransferError::ChecksumMismatch { .. }
            )
        {
            w.d.finished = None;
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
    match &w.d.finished {
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
    // The algorithms that combine are checked from the ranges' values; the SHAs of an
    // object sent whole, on one more read of the file; composite SHAs part by part.
    for algorithm in [Crc64Nvme, Sha1, Sha256] {
        assert_eq!(
            verified(&run_clean(Kind::FullObjectCrc(algorithm), 7 * MIB)),
            Verified::FullObjectChecksum(algorithm)
        );
    }
    for algorithm in [Sha1, Sha256] {
        assert_eq!(
            verified(&run_clean(Kind::Composite(algorithm), 12 * MIB)),
            Verified::CompositeChecksum {
                algorithm,
                parts: 3
            }
        );
    }
}

/// A multipart object another tool uploaded without checksums, on a server that does not
/// tell part sizes: the ETag is verified over the part sizes those tools use: aws-cli's
/// 8 MiB on the ranges as they arrive, rclone's 5 MiB (8 MiB fits the part count too, so
/// is tried first) on one more read of the file.
#[test]
fn multipart_etags_of_other_tools_are_verified_over_their_part_sizes() {
    for (pattern, size, reads_again) in [(EIGHT, 20 * MIB, false), (EVEN, 9 * MIB, true)] {
        for kind in [Kind::MultipartNoPartNumber, Kind::UnstatedNoPartNumber] {
            let mut w = World::with_attempts(kind, pattern, size, 2 * MIB, 3, 5, 200);
            let mut hashed_again = false;
            while !w.d.in_flight.is_empty() {
                hashed_again |= matches!(w.d.in_flight[0].kind, OpKind::HashPartialFile { .. });
                w.deliver(0, Fault::None);
            }
            w.drain();
            w.check_end();
            assert_eq!(w.dest.as_ref(), Some(&w.current().data));
            let parts = size.div_ceil(pattern[0] * MIB) as u32;
            assert_eq!(
                verified(&w),
                Verified::MultipartEtag { parts },
                "{kind:?} {size}"
            );
            assert_eq!(hashed_again, reads_again, "{kind:?} {size}");
        }
    }
}

#[test]
fn resume_before_the_pause_settles_sends_no_second_head() {
    let mut w = World::new(Kind::PlainMd5, 9 * MIB, 2 * MIB, 2, 11);
    w.step(Action::Pause); // while HeadObject is in flight
    w.step(Action::Resume);
    w.deliver(0, Fault::Throttle); // the Head waits for its retry
    assert!(
        w.d.in_flight.is_empty(),
        "a second Head was sent beside the retry: {:?}",
        w.d.in_flight
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
            w.d.finished,
            Some(Event::Failed(TransferError::ObjectChanged { .. }))
        ),
        "{:?}",
        w.d.finished
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
        let Some(Event::Completed(c)) = &w.d.finished else {
            panic!("not completed: {:?}", w.d.finished)
        };
        assert!(c.bytes_rechecked >= 4 * MIB, "{kind:?}: {c:?}");
        assert!(c.bytes_recheck_failed > 0, "{kind:?}: {c:?}");
    }
}

/// Bytes corrupted on the way in: the mismatch keeps the partial file and a checkpoint
/// that vouches for none of it; resuming fetches everything again and verifies.
#[test]
fn a_mismatch_keeps_the_partial_file_and_resuming_fetches_again() {
    let mut w = World::new(
        Kind::Composite(ChecksumAlgorithm::Crc32),
        12 * MIB,
        2 * MIB,
        1,
        11,
    );
    for _ in 0..5 {
        w.deliver(0, Fault::None); // head, three part heads, prepare
    }
    w.deliver(0, Fault::Corrupt); // part 1
    w.drain();
    match &w.d.finished {
        Some(Event::Failed(e @ TransferError::ChecksumMismatch { partial_path, .. })) => {
            assert_eq!(partial_path, PARTIAL);
            assert!(e.is_resumable(), "{e}");
            assert!(e.to_string().contains(PARTIAL), "{e}");
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert!(w.partial.is_some(), "the partial file was removed");
    w.d.finished = None;
    w.durable = w.history.len();
    w.crash(false, 0);
    w.drain();
    w.check_end();
    assert_eq!(w.dest.as_ref(), Some(&w.current().data));
    assert!(matches!(
        verified(&w),
        Verified::CompositeChecksum { parts: 3, .. }
    ));
}

/// Parts of 7, 5 and 3 MiB (and 5, 7 and 3): the length of each is asked for, never
/// guessed from the first, and every kind of object verifies.
#[test]
fn uneven_parts_are_learned_and_verified() {
    use ChecksumAlgorithm::*;
    for pattern in [SEVEN_FIVE, FIVE_SEVEN] {
        let run = |kind| {
            let mut w = World::with_attempts(kind, pattern, 15 * MIB, 2 * MIB, 3, 5, 200);
            w.drain();
            w.check_end();
            assert_eq!(w.dest.as_ref(), Some(&w.current().data), "{kind:?}");
            verified(&w)
        };
        let three = |algorithm| Verified::CompositeChecksum {
            algorithm,
            parts: 3,
        };
        assert_eq!(run(Kind::Composite(Crc32)), three(Crc32));
        assert_eq!(run(Kind::Composite(Crc32c)), three(Crc32c));
        assert_eq!(
            run(Kind::MultipartEtag),
            Verified::MultipartEtag { parts: 3 }
        );
        let moto = Kind::MotoComposite {
            label: Crc32,
            real: Crc32,
        };
        assert_eq!(run(moto), three(Crc32));
        // A CRC32 labelled CRC32C matches no reading; the multipart ETag still proves it.
        let mislabelled = Kind::MotoComposite {
            label: Crc32c,
            real: Crc32,
        };
        assert_eq!(run(mislabelled), Verified::MultipartEtag { parts: 3 });
        // A server that ignores partNumber, a part size hint that is wrong for these
        // parts, a Content-Range that contradicts the lengths: not verified, and none is
        // called a mismatch.
        for kind in [
            Kind::MultipartNoPartNumber,
            Kind::MultipartHinted,
            Kind::MisplacedParts,
            Kind::UnstatedNoPartNumber,
        ] {
            match run(kind) {
                Verified::Unverified { reason } => {
                    assert!(reason.contains("part size"), "{kind:?}: {reason}")
                }
                other => panic!("{kind:?} verified as {other:?}"),
            }
        }
    }
    // Even parts with a true hint are verified over it.
    let mut w = World::new(Kind::MultipartHinted, 15 * MIB, 2 * MIB, 3, 5);
    w.drain();
    w.check_end();
    assert_eq!(verified(&w), Verified::MultipartEtag { parts: 3 });
}

impl World {
    fn drain_until_paused(&mut self) {
        while !self.d.machine.is_paused() && !self.d.in_flight.is_empty() {
            self.deliver(0, Fault::None);
        }
        assert!(self.d.machine.is_paused());
    }
}

/// A saved download cancelled as soon as it is rebuilt: its HeadObject is withdrawn and
/// only the partial file is removed.
#[test]
fn a_rebuilt_download_cancelled_before_its_first_poll_only_deletes() {
    let mut w = World::new(Kind::PlainMd5, 9 * MIB, 2 * MIB, 1, 11);
    while w.last_checkpoint.is_none() {
        w.deliver(0, Fault::None);
    }
    let cp = w.last_checkpoint.clone().expect("a checkpoint");
    let mut m = DownloadMachine::from_checkpoint(w.cfg.clone(), cp, Time::ZERO);
    m.cancel(Time::ZERO);
    let op = m.poll_operation().expect("the delete");
    assert!(matches!(op.kind, OpKind::DeletePartialFile), "{op:?}");
    assert_eq!(m.poll_operation(), None);
    m.handle_outcome(Time::ZERO, op.id, Outcome::FileDeleted);
    let events: Vec<Event> = std::iter::from_fn(|| m.poll_event()).collect();
    assert!(events.contains(&Event::Cancelled), "{events:?}");
}

/// SSE-KMS, whose ETag has no `-N`, with a checksum of unstated type: whether the object
/// is multipart cannot be told, so a checksum that does not match the whole content (a
/// composite one, read as full-object) is "not verified", never a mismatch (before, the
/// good bytes were called a mismatch).
#[test]
fn an_unstated_checksum_on_an_sse_kms_object_is_never_a_mismatch() {
    let mut w = World::new(Kind::Kms, 12 * MIB, 2 * MIB, 2, 13);
    let data = w.current().data.clone();
    let parts: Vec<u8> = data
        .chunks(5 * MIB as usize)
        .flat_map(|p| checksum(ChecksumAlgorithm::Crc32, p).as_bytes().to_vec())
        .collect();
    // The HeadObject in flight is answered from the version as it is now.
    w.versions[0].checksum = Some(ObjectChecksum {
        algorithm: ChecksumAlgorithm::Crc32,
        value: checksum(ChecksumAlgorithm::Crc32, &parts),
        kind: ChecksumKind::Unstated,
    });
    w.drain();
    w.check_end();
    assert_eq!(w.dest.as_ref(), Some(&data));
    match verified(&w) {
        Verified::Unverified { reason } => assert!(reason.contains("CRC32"), "{reason}"),
        other => panic!("verified as {other:?}"),
    }
    // The same value as the object's full-object CRC32 verifies it.
    let mut w = World::new(Kind::Kms, 12 * MIB, 2 * MIB, 2, 13);
    w.versions[0].checksum = Some(ObjectChecksum {
        algorithm: ChecksumAlgorithm::Crc32,
        value: checksum(ChecksumAlgorithm::Crc32, &data),
        kind: ChecksumKind::Unstated,
    });
    w.drain();
    // (check_end expects nothing verified of a Kms object: its model has no checksum.)
    assert_eq!(w.dest.as_ref(), Some(&data));
    assert_eq!(
        verified(&w),
        Verified::FullObjectChecksum(ChecksumAlgorithm::Crc32)
    );
}
