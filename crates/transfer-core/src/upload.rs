//! The upload machine: one PutObject, or a multipart upload with parallel parts.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{MAX_PARTS, MIN_PART_SIZE_BYTES, part_count};
use crate::engine::{Ending, Engine, RunState, Slot};
use crate::machine::{Direction, Machine};
use crate::op::{CompletedPart, ListedPart};
use crate::stream::StreamState;
use crate::{
    ByteRange, CHECKPOINT_VERSION, CancelPolicy, Checkpoint, Completion, ETag, Event, Failure,
    FailureKind, OpKind, Outcome, PartNumber, SourceFingerprint, Time, TransferError,
    UploadCheckpoint, UploadConfig, UploadId, UploadPlan, Verified,
};
use s3_types::{ChecksumValue, combine_all, composite as composite_checksum, multipart_etag};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Task {
    Put,
    Create,
    /// A part of the upload of generation `generation` (it changes when an upload that
    /// vanished on the server is started anew, so late answers about the old one are ignored).
    Part {
        number: u32,
        generation: u32,
    },
    List,
    /// Hashing the source range of a part the server lists but no checkpoint recorded.
    Verify {
        number: u32,
        generation: u32,
    },
    /// Hashing the source range of a part sent by an earlier run (or before a pause), to
    /// check it against the checksum recorded for it before the upload is completed.
    Recheck {
        number: u32,
        generation: u32,
    },
    Complete,
    /// HeadObject after a Complete whose answer was lost.
    Confirm,
    Abort,
    /// Reading a stream's first bytes, up to the multipart threshold, to choose between
    /// PutObject and a multipart upload.
    Sniff,
    /// Reading the bytes of a stream's part.
    Read {
        number: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A stream's first bytes are read to learn whether it is shorter than the threshold.
    Sizing,
    Single,
    Creating,
    /// Checking recorded parts against ListParts after a resume.
    Validating,
    Uploading,
    Completing,
    Confirming,
    Aborting,
}

/// Uploads one file. See the crate docs for the input/output contract.
pub type UploadMachine = Machine<Upload>;

/// The rules of an upload: one PutObject, or a multipart upload with parallel parts.
#[derive(Debug)]
pub struct Upload {
    cfg: UploadConfig,
    source: SourceFingerprint,
    plan: UploadPlan,
    engine: Engine<Task>,
    phase: Phase,
    upload_id: Option<UploadId>,
    generation: u32,
    completed: BTreeMap<u32, CompletedPart>,
    /// Parts neither done, in flight nor waiting for a retry.
    pending: BTreeSet<u32>,
    /// ListParts results gathered so far during validation.
    listed: BTreeMap<u32, ListedPart>,
    /// Parts the server lists that no checkpoint recorded (their answers were lost, with
    /// a killed process say), with the ETag listed: kept if the source range hashes to it.
    unrecorded: BTreeMap<u32, ETag>,
    /// The unrecorded parts whose source range is still to be hashed.
    to_verify: BTreeSet<u32>,
    /// The next validation is followed by re-reading the recorded parts (after a rebuild
    /// from a checkpoint, or a pause: the source was out of our hands).
    recheck_due: bool,
    /// Recorded parts whose source range is still to be read back and checked.
    to_recheck: BTreeSet<u32>,
    /// Parts that came from the checkpoint this machine was rebuilt from (counted in
    /// `bytes_resumed`, not in `bytes_transferred`).
    carried: BTreeSet<u32>,
    list_marker: Option<u32>,
    completes_sent: u32,
    bytes_transferred: u64,
    bytes_resent: u64,
    bytes_resumed: u64,
    bytes_rechecked: u64,
    bytes_recheck_failed: u64,
    /// The stream of unknown length this upload is of, if it is.
    stream: Option<StreamState>,
}

impl Machine<Upload> {
    /// Starts the upload of a file described by `source`.
    pub fn new(cfg: UploadConfig, source: SourceFingerprint, now: Time) -> Self {
        let in_flight = match crate::plan_upload(source.size_bytes, &cfg) {
            Ok(UploadPlan::Multipart {
                part_size_bytes, ..
            }) => crate::parts_in_flight(&cfg, part_size_bytes),
            _ => cfg.max_in_flight,
        };
        let mut engine = Engine::new(cfg.retry.clone(), in_flight, now);
        engine.control_due = true;
        let mut m = Upload {
            plan: UploadPlan::Single,
            engine,
            phase: Phase::Single,
            upload_id: None,
            generation: 0,
            completed: BTreeMap::new(),
            pending: BTreeSet::new(),
            listed: BTreeMap::new(),
            unrecorded: BTreeMap::new(),
            to_verify: BTreeSet::new(),
            recheck_due: false,
            to_recheck: BTreeSet::new(),
            carried: BTreeSet::new(),
            list_marker: None,
            completes_sent: 0,
            bytes_transferred: 0,
            bytes_resent: 0,
            bytes_resumed: 0,
            bytes_rechecked: 0,
            bytes_recheck_failed: 0,
            stream: None,
            cfg,
            source,
        };
        match crate::plan_upload(m.source.size_bytes, &m.cfg) {
            Ok(plan) => {
                m.plan = plan;
                if let UploadPlan::Multipart { .. } = plan {
                    m.phase = Phase::Creating;
                }
            }
            Err(e) => m.engine.fail(e),
        }
        m.drive();
        Machine { dir: m }
    }

    /// Starts the upload of a stream whose length is learned only when it ends (a pipe),
    /// read front to back once. Its first bytes, up to the multipart threshold, are read
    /// before anything is sent: a stream that ends there goes as one PutObject. A longer
    /// one goes in parts filled from the stream one after the other and sent in
    /// parallel, as many held in memory as fit the memory budget, their size growing
    /// with the stream ([`PartSchedule`](crate::PartSchedule); `expected_size_bytes`
    /// chooses the first size). It emits no checkpoint (a stream cannot be read again),
    /// and a failure aborts the multipart upload.
    pub fn streaming(cfg: UploadConfig, expected_size_bytes: Option<u64>, now: Time) -> Self {
        let source = SourceFingerprint {
            path: "<stream>".into(),
            size_bytes: 0,
            modified_unix_nanos: 0,
            inode: None,
            changed_unix_nanos: None,
        };
        // Built as an upload of nothing, whose PutObject is discarded with its engine.
        let mut m = Self::new(cfg, source, now).dir;
        let stream = StreamState::new(&m.cfg, expected_size_bytes);
        // The read in flight takes a slot beside the parts; memory is bounded by the
        // parts held (`StreamState::may_read`).
        m.engine = Engine::new(m.cfg.retry.clone(), m.cfg.max_in_flight.max(1) + 1, now);
        m.engine.control_due = true;
        // The part size recorded with the object is the first parts' (all of them, until
        // the stream outgrows the schedule's first step; a download that finds another
        // layout only leaves the object unverified by it).
        m.plan = UploadPlan::Multipart {
            part_size_bytes: stream.schedule.first_part_bytes,
            parts: 0,
        };
        m.stream = Some(stream);
        m.phase = Phase::Sizing;
        m.drive();
        Machine { dir: m }
    }

    /// Continues the upload recorded in `cp`, whose source file is now `current`.
    ///
    /// The recorded parts are checked with ListParts first. A source that changed since
    /// the checkpoint fails the transfer with [`TransferError::SourceChanged`] (after
    /// aborting the server-side upload, whose parts are of no further use).
    pub fn from_checkpoint(
        cfg: UploadConfig,
        cp: UploadCheckpoint,
        current: SourceFingerprint,
        now: Time,
    ) -> Self {
        let mut cfg = cfg;
        // The parts already sent fix the checksum algorithm and the part size.
        cfg.checksum = cp.checksum;
        let parts = part_count(cp.source.size_bytes, cp.part_size_bytes);
        let in_flight = crate::parts_in_flight(&cfg, cp.part_size_bytes);
        let mut engine = Engine::new(cfg.retry.clone(), in_flight, now);
        engine.control_due = true;
        let mut m = Upload {
            cfg,
            plan: UploadPlan::Multipart {
                part_size_bytes: cp.part_size_bytes,
                parts,
            },
            engine,
            phase: Phase::Validating,
            upload_id: Some(cp.upload_id.clone()),
            generation: 0,
            completed: cp.completed.iter().map(|p| (p.part.0, p.clone())).collect(),
            pending: BTreeSet::new(),
            listed: BTreeMap::new(),
            unrecorded: BTreeMap::new(),
            to_verify: BTreeSet::new(),
            recheck_due: false,
            to_recheck: BTreeSet::new(),
            carried: BTreeSet::new(),
            list_marker: None,
            completes_sent: 0,
            bytes_transferred: 0,
            bytes_resent: 0,
            bytes_resumed: 0,
            bytes_rechecked: 0,
            bytes_recheck_failed: 0,
            stream: None,
            source: cp.source.clone(),
        };
        m.bytes_resumed = m.bytes_done();
        m.carried = m.completed.keys().copied().collect();
        m.recheck_due = true;
        if let Some(err) = checkpoint_problem(&cp, parts) {
            // Nothing is aborted: a newer s3tm may still resume it.
            m.engine.fail(TransferError::InvalidCheckpoint(err));
        } else if let Some(reason) = cp.source.difference(&current) {
            let path = current.path.clone();
            m.engine
                .wind_down(Ending::Failed(TransferError::SourceChanged {
                    path,
                    reason,
                }));
        } else if m.source.changed_unix_nanos.is_none() {
            // A checkpoint of an older s3tm: the parts it names are read back before the
            // upload completes, and from now on the ctime is watched too.
            m.source.changed_unix_nanos = current.changed_unix_nanos;
        }
        m.drive();
        Machine { dir: m }
    }

    /// The source file this upload is of: every read of it must still find this
    /// version.
    pub fn source(&self) -> &SourceFingerprint {
        &self.dir.source
    }

    /// The server-side upload, once created.
    pub fn upload_id(&self) -> Option<&UploadId> {
        self.dir.upload_id.as_ref()
    }

    /// How the file is being sent.
    pub fn plan(&self) -> UploadPlan {
        self.dir.plan
    }
}

impl Upload {
    fn parts(&self) -> u32 {
        if let (Some(stream), UploadPlan::Multipart { .. }) = (&self.stream, self.plan) {
            return stream.parts();
        }
        match self.plan {
            UploadPlan::Single => 1,
            UploadPlan::Multipart { parts, .. } => parts,
        }
    }

    fn part_range(&self, number: u32) -> ByteRange {
        if let (Some(stream), UploadPlan::Multipart { .. }) = (&self.stream, self.plan) {
            return stream.range(number);
        }
        let size = self.source.size_bytes;
        match self.plan {
            UploadPlan::Single => ByteRange::new(0, size),
            UploadPlan::Multipart {
                part_size_bytes, ..
            } => {
                let start = u64::from(number - 1)
                    .saturating_mul(part_size_bytes)
                    .min(size);
                ByteRange::new(start, start.saturating_add(part_size_bytes).min(size))
            }
        }
    }

    /// Bytes of the completed parts, in constant time: every part but the last is
    /// `part_size_bytes` long.
    fn bytes_done(&self) -> u64 {
        if let (Some(stream), UploadPlan::Multipart { .. }) = (&self.stream, self.plan) {
            return stream.done_bytes;
        }
        let size = self.source.size_bytes;
        match self.plan {
            UploadPlan::Single => {
                if self.completed.contains_key(&1) {
                    size
                } else {
                    0
                }
            }
            UploadPlan::Multipart {
                part_size_bytes,
                parts,
            } => {
                let full = (self.completed.len() as u64).saturating_mul(part_size_bytes);
                let last_short = if self.completed.contains_key(&parts) {
                    part_size_bytes.saturating_sub(self.part_range(parts).len_bytes())
                } else {
                    0
                };
                full.saturating_sub(last_short).min(size)
            }
        }
    }

    /// Records a part as done and saves that.
    fn part_done(&mut self, part: CompletedPart) {
        let len = self.part_range(part.part.0).len_bytes();
        if let Some(stream) = self.stream.as_mut() {
            stream.held_bytes = stream.held_bytes.saturating_sub(len);
            stream.done_bytes += len;
        }
        self.completed.insert(part.part.0, part.clone());
        self.emit_delta(crate::Delta::Part(part));
        self.emit_progress();
    }

    fn upload_checkpoint(&self) -> Option<UploadCheckpoint> {
        if self.stream.is_some() {
            // A stream cannot be read again: nothing to resume from.
            return None;
        }
        let (
            UploadPlan::Multipart {
                part_size_bytes, ..
            },
            Some(upload_id),
        ) = (self.plan, &self.upload_id)
        else {
            return None;
        };
        Some(UploadCheckpoint {
            version: CHECKPOINT_VERSION,
            source: self.source.clone(),
            upload_id: upload_id.clone(),
            part_size_bytes,
            checksum: self.cfg.checksum,
            completed: self.completed.values().cloned().collect(),
        })
    }

    /// The checksum of the whole object from the parts' (for an algorithm that
    /// combines: the CRCs).
    fn full_object_checksum(&self) -> Option<(crate::ChecksumAlgorithm, ChecksumValue)> {
        let alg = self.cfg.checksum.filter(|a| a.combinable())?;
        let pieces: Option<Vec<(ChecksumValue, u64)>> = self
            .completed
            .values()
            .map(|p| Some((p.checksum?, self.part_range(p.part.0).len_bytes())))
            .collect();
        Some((alg, combine_all(alg, pieces?)?))
    }

    /// The server no longer knows the upload.
    fn upload_gone(&mut self, failure: &Failure) {
        if self.completes_sent > 0 {
            // A Complete that was sent may have succeeded with its answer lost.
            self.phase = Phase::Confirming;
            self.engine.control_due = true;
            return;
        }
        if self.stream.is_some() {
            // The parts already sent cannot be read from the stream again.
            self.upload_id = None;
            self.engine.fail(TransferError::Remote {
                op: "UploadPart",
                failure: failure.clone(),
            });
            return;
        }
        let id = self.upload_id.take().map(|u| u.0).unwrap_or_default();
        self.engine.emit(Event::Restarted {
            reason: format!(
                "multipart upload {id} no longer exists on the server ({}); starting a new upload",
                failure.code.as_deref().unwrap_or(&failure.message)
            ),
        });
        self.bytes_resent += self.bytes_done();
        self.generation += 1;
        self.completed.clear();
        self.carried.clear();
        self.listed.clear();
        self.unrecorded.clear();
        self.to_verify.clear();
        self.to_recheck.clear();
        self.list_marker = None;
        self.engine.drain_retries();
        self.pending = (1..=self.parts()).collect();
        self.phase = Phase::Creating;
        self.engine.control_due = true;
        self.emit_progress();
    }

    /// The upload vanished and Confirm showed our Complete did not create the object:
    /// the upload is started anew.
    fn complete_never_happened(&mut self, why: &str) {
        self.completes_sent = 0;
        let failure = Failure::new(FailureKind::NotFound, why);
        self.upload_gone(&failure);
    }

    /// Keeps the recorded parts that ListParts confirms (or all of them when the server
    /// cannot list), queues the rest, and sets aside for hashing the parts the server has
    /// that no checkpoint recorded.
    fn finish_validation(&mut self, listing: bool) {
        let before = self.completed.len();
        let recorded: BTreeSet<u32> = self.completed.keys().copied().collect();
        let listed = std::mem::take(&mut self.listed);
        if listing {
            let ranges: BTreeMap<u32, u64> = self
                .completed
                .keys()
                .map(|n| (*n, self.part_range(*n).len_bytes()))
                .collect();
            self.completed.retain(|n, part| match listed.get(n) {
                Some(l) => {
                    l.etag.as_ref().is_none_or(|e| e.same_as(&part.etag))
                        && l.size_bytes.is_none_or(|s| Some(&s) == ranges.get(n))
                }
                None => false,
            });
            for n in ranges.keys().filter(|n| !self.completed.contains_key(n)) {
                self.bytes_resent += ranges[n];
            }
        }
        // Parts in flight or waiting for a retry are settled by their own answers.
        let mut in_flight = BTreeSet::new();
        let mut verifying = BTreeSet::new();
        let mut rechecking = BTreeSet::new();
        for task in self
            .engine
            .in_flight_tasks()
            .chain(self.engine.retry_tasks())
        {
            match task {
                Task::Part { number, .. } => in_flight.insert(*number),
                Task::Verify { number, .. } => verifying.insert(*number),
                Task::Recheck { number, .. } => rechecking.insert(*number),
                _ => false,
            };
        }
        if std::mem::take(&mut self.recheck_due) {
            self.to_recheck = self
                .completed
                .keys()
                .filter(|n| !rechecking.contains(n))
                .copied()
                .collect();
        } else {
            self.to_recheck
                .retain(|n| self.completed.contains_key(n) && !rechecking.contains(n));
        }
        // A part is worth hashing when the server has all of it under an MD5 ETag.
        self.unrecorded.retain(|n, _| verifying.contains(n));
        for (n, l) in &listed {
            let whole = (1..=self.parts()).contains(n)
                && l.size_bytes == Some(self.part_range(*n).len_bytes());
            // Only parts no checkpoint recorded: one whose recorded ETag the server
            // contradicts is sent again.
            if let Some(etag) = l.etag.as_ref().filter(|e| e.as_md5().is_some())
                && whole
                && !recorded.contains(n)
                && !in_flight.contains(n)
                && !verifying.contains(n)
            {
                self.unrecorded.insert(*n, etag.clone());
            }
        }
        self.to_verify = self
            .unrecorded
            .keys()
            .filter(|n| !verifying.contains(n))
            .copied()
            .collect();
        self.pending = (1..=self.parts())
            .filter(|n| {
                !self.completed.contains_key(n)
                    && !in_flight.contains(n)
                    && !self.unrecorded.contains_key(n)
            })
            .collect();
        self.phase = Phase::Uploading;
        if self.completed.len() != before {
            self.emit_checkpoint();
        }
        self.emit_progress();
    }

    /// An unrecorded part's source range hashed to `md5`: keep the part if that is the
    /// ETag the server listed, else send it again.
    fn verified(&mut self, number: u32, md5: Option<[u8; 16]>, checksum: Option<ChecksumValue>) {
        let etag = self.unrecorded.remove(&number);
        // Complete lists every part's checksum when the upload has an algorithm.
        let checksum_ok = checksum.is_some() == self.cfg.checksum.is_some();
        match etag.filter(|e| md5.is_some() && e.as_md5() == md5 && checksum_ok) {
            Some(etag) => {
                self.bytes_resumed += self.part_range(number).len_bytes();
                let part = CompletedPart {
                    part: PartNumber(number),
                    etag,
                    checksum,
                    // Its ETag is the MD5 of the local bytes, but the server never
                    // echoed its checksum: only an echo of the object's on Complete can
                    // confirm it now.
                    confirmed: false,
                };
                self.part_done(part);
            }
            None => {
                self.pending.insert(number);
            }
        }
    }

    /// A part recorded as sent was read back from the source: keep it if the bytes still
    /// have the checksum (or, without one, the MD5 ETag) recorded for it, else send it
    /// again. `md5` is `None` when the read failed for another reason than a changed
    /// source: the part is then sent again, and that read reports what is wrong.
    fn rechecked(&mut self, number: u32, md5: Option<[u8; 16]>, checksum: Option<ChecksumValue>) {
        let Some(part) = self.completed.get(&number) else {
            return;
        };
        let range = self.part_range(number);
        let problem = match (md5, part.checksum, part.etag.as_md5()) {
            (None, _, _) => Some("it could not be read back".to_owned()),
            (Some(_), Some(recorded), _) if checksum != Some(recorded) => Some(format!(
                "its {} is now {} where {recorded} was sent",
                self.cfg
                    .checksum
                    .map_or("checksum".to_owned(), |a| a.to_string()),
                checksum.map_or("missing".to_owned(), |c| c.to_string()),
            )),
            (Some(_), Some(_), _) => None,
            (Some(m), None, Some(etag_md5)) if m != etag_md5 => {
                Some("its MD5 no longer matches the part's ETag".to_owned())
            }
            (Some(_), None, Some(_)) => None,
            (Some(_), None, None) => {
                Some("no checksum was recorded and its ETag is not an MD5".to_owned())
            }
        };
        self.bytes_rechecked += range.len_bytes();
        if let Some(why) = problem {
            self.bytes_recheck_failed += range.len_bytes();
            if self.carried.remove(&number) {
                self.bytes_resumed = self.bytes_resumed.saturating_sub(range.len_bytes());
            } else {
                self.bytes_resent += range.len_bytes();
            }
            self.completed.remove(&number);
            self.pending.insert(number);
            self.engine.emit(Event::Invalidated {
                range,
                reason: format!(
                    "part {number} ({range}) of {}, sent earlier: {why}; sending it again",
                    self.source.path
                ),
            });
            self.emit_checkpoint();
            self.emit_progress();
        }
    }

    /// The stream's first `len` bytes were read: shorter than the threshold, it is one
    /// PutObject; otherwise a multipart upload.
    fn sniffed(&mut self, len: u64) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        if self.engine.state == RunState::Cancelling {
            return;
        }
        if len < stream.sniff_bytes {
            stream.end = Some(len);
            self.source.size_bytes = len;
            self.plan = UploadPlan::Single;
            self.phase = Phase::Single;
        } else {
            self.phase = Phase::Creating;
        }
        self.engine.control_due = true;
    }

    /// Part `number` of the stream was read, `len` bytes of it: fewer than the part's
    /// size means the stream ended there, and a part with none is not sent at all.
    fn stream_read(&mut self, number: u32, len: u64) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        stream.reading = false;
        if self.engine.state == RunState::Cancelling || stream.end.is_some() {
            return;
        }
        let range = stream.schedule.range(number);
        if u64::from(number) > MAX_PARTS && len > 0 {
            // Part 10,000 was full and the stream goes on.
            self.engine
                .wind_down(Ending::Failed(TransferError::TooLarge {
                    size_bytes: range.start + len,
                    max_bytes: range.start,
                }));
            return;
        }
        if len > 0 {
            stream.held_bytes += len;
            stream.next_read = number + 1;
            self.pending.insert(number);
        }
        if len < range.len_bytes() {
            let end = range.start + len;
            stream.end = Some(end);
            self.source.size_bytes = end;
            if stream.parts() == 0 {
                // Not after a sniff of at least one byte; an empty multipart upload
                // would be refused on Complete.
                self.engine.wind_down(Ending::Failed(TransferError::Local {
                    op: "ReadStream",
                    message: "the stream ended before its first part".into(),
                }));
            }
        }
        self.emit_progress();
    }

    fn handle_success(&mut self, task: Task, outcome: Outcome) {
        match (task, outcome) {
            (
                Task::Put,
                Outcome::ObjectPut {
                    etag,
                    checksum,
                    server_checksum,
                },
            ) => {
                self.bytes_transferred += self.source.size_bytes;
                let part = CompletedPart {
                    part: PartNumber(1),
                    etag: etag.clone(),
                    checksum,
                    confirmed: echoed(checksum, server_checksum),
                };
                self.completed.insert(1, part);
                let checksum = self.cfg.checksum.zip(checksum);
                self.complete(Some(etag), checksum, false);
            }
            (Task::Create, Outcome::UploadCreated { upload_id }) => {
                self.upload_id = Some(upload_id);
                if self.engine.state == RunState::Cancelling {
                    return;
                }
                self.phase = Phase::Uploading;
                if self.pending.is_empty() && self.completed.is_empty() {
                    self.pending = (1..=self.parts()).collect();
                }
                // Recorded before any part, so a crash cannot leak the upload.
                self.emit_checkpoint();
            }
            (
                Task::Part { number, generation },
                Outcome::PartUploaded {
                    etag,
                    checksum,
                    server_checksum,
                },
            ) => {
                if generation != self.generation || self.engine.state == RunState::Cancelling {
                    return;
                }
                let part = CompletedPart {
                    part: PartNumber(number),
                    etag,
                    checksum,
                    confirmed: echoed(checksum, server_checksum),
                };
                self.bytes_transferred += self.part_range(number).len_bytes();
                self.part_done(part);
            }
            (
                Task::List,
                Outcome::PartsListed {
                    parts,
                    next_part_number_marker,
                },
            ) => {
                if self.phase != Phase::Validating {
                    // The upload was restarted meanwhile: this listing is of the old one.
                    return;
                }
                self.listed.extend(parts.into_iter().map(|p| (p.part.0, p)));
                match next_part_number_marker {
                    Some(marker) if Some(marker) != self.list_marker => {
                        self.list_marker = Some(marker);
                        self.engine.control_due = true;
                    }
                    _ => {
                        self.list_marker = None;
                        self.finish_validation(true);
                    }
                }
            }
            (Task::Verify { number, generation }, Outcome::SourceHashed { md5, checksum }) => {
                if generation == self.generation && self.engine.state != RunState::Cancelling {
                    self.verified(number, Some(md5), checksum);
                }
            }
            (Task::Recheck { number, generation }, Outcome::SourceHashed { md5, checksum }) => {
                if generation == self.generation && self.engine.state != RunState::Cancelling {
                    self.rechecked(number, Some(md5), checksum);
                }
            }
            (
                Task::Complete,
                Outcome::UploadCompleted {
                    etag,
                    server_checksum,
                },
            ) => {
                let checksum = self.full_object_checksum();
                let confirmed = server_checksum.is_some_and(|s| self.object_checksum_is(s));
                self.complete(Some(etag), checksum, confirmed);
            }
            (Task::Confirm, Outcome::ObjectInfo(info)) => {
                let md5s: Option<Vec<[u8; 16]>> =
                    self.completed.values().map(|p| p.etag.as_md5()).collect();
                let ours = match md5s {
                    Some(m) => info
                        .etag
                        .unquoted()
                        .eq_ignore_ascii_case(&multipart_etag(&m)),
                    None => info.etag.multipart_parts() == Some(self.parts()),
                };
                if ours {
                    let checksum = self.full_object_checksum();
                    let confirmed = info.checksum.is_some_and(|c| {
                        let parts = match c.kind {
                            crate::ChecksumKind::Composite { parts } => Some(parts),
                            _ => None,
                        };
                        self.cfg.checksum == Some(c.algorithm)
                            && self.object_checksum_is((c.value, parts))
                    });
                    self.complete(Some(info.etag), checksum, confirmed);
                } else {
                    self.complete_never_happened(&format!(
                        "the object found has ETag {}",
                        info.etag
                    ));
                }
            }
            (Task::Abort, Outcome::UploadAborted) => {
                self.engine.end();
            }
            (Task::Sniff, Outcome::StreamRead { len_bytes }) => self.sniffed(len_bytes),
            (Task::Read { number }, Outcome::StreamRead { len_bytes }) => {
                self.stream_read(number, len_bytes);
            }
            (task, outcome) => self.engine.unexpected(&task, &outcome),
        }
    }

    /// Whether an object checksum the server reported (with the part count of a
    /// composite one) is the one of the parts sent.
    fn object_checksum_is(&self, (value, parts): (ChecksumValue, Option<u32>)) -> bool {
        let Some(alg) = self.cfg.checksum else {
            return false;
        };
        match parts {
            None => self.full_object_checksum().is_some_and(|(_, v)| v == value),
            Some(n) => {
                let crcs: Option<Vec<ChecksumValue>> =
                    self.completed.values().map(|p| p.checksum).collect();
                n as usize == self.completed.len()
                    && crcs.is_some_and(|c| composite_checksum(alg, c) == value)
            }
        }
    }

    /// `object_confirmed`: the server returned the object's checksum, and it is ours.
    fn complete(
        &mut self,
        etag: Option<ETag>,
        checksum: Option<(crate::ChecksumAlgorithm, ChecksumValue)>,
        object_confirmed: bool,
    ) {
        let every_part = !self.completed.is_empty() && self.completed.values().all(|p| p.confirmed);
        let verified = match self.cfg.checksum {
            Some(alg) if object_confirmed || every_part => Verified::ServerChecksums(alg),
            Some(alg) => Verified::Unverified {
                reason: format!(
                    "sent with {alg} checksums, but the server did not echo them, so it is not confirmed that it checked them"
                ),
            },
            None => Verified::Unverified {
                reason: "checksums were turned off".into(),
            },
        };
        self.emit_progress();
        self.engine.finish_with(Event::Completed(Completion {
            etag,
            checksum,
            verified,
            bytes_total: self.source.size_bytes,
            bytes_transferred: self.bytes_transferred,
            bytes_resent: self.bytes_resent,
            bytes_resumed: self.bytes_resumed,
            bytes_rechecked: self.bytes_rechecked,
            bytes_recheck_failed: self.bytes_recheck_failed,
        }));
    }

    fn handle_failure(&mut self, now: Time, slot: Slot<Task>, failure: Failure) {
        let task = slot.task.clone();
        if let Task::Verify { number, generation } = task {
            // Whatever went wrong, the part is sent again; its own read reports a
            // changed source.
            if generation == self.generation && self.engine.state != RunState::Cancelling {
                self.verified(number, None, None);
            }
            return;
        }
        if let Task::Recheck { number, generation } = task {
            if generation != self.generation {
                return;
            }
            if failure.kind != FailureKind::SourceChanged && !failure.kind.is_retryable() {
                if self.engine.state != RunState::Cancelling {
                    self.rechecked(number, None, None);
                }
                return;
            }
        }
        if let Task::Part { number, generation } = task {
            if generation != self.generation {
                return;
            }
            self.bytes_resent += self.part_range(number).len_bytes();
        }
        if task == Task::List && self.phase != Phase::Validating {
            // The upload was restarted meanwhile: this listing was of the old one.
            return;
        }
        if self.engine.state == RunState::Cancelling && !matches!(task, Task::Abort | Task::Create)
        {
            return;
        }
        if failure.kind == FailureKind::SourceChanged {
            let reason = failure.message.clone();
            let path = self.source.path.clone();
            self.engine
                .wind_down(Ending::Failed(TransferError::SourceChanged {
                    path,
                    reason,
                }));
            return;
        }
        let no_such_upload = failure.has_code("NoSuchUpload")
            || (failure.kind == FailureKind::NotFound && failure.code.is_none());
        match task {
            Task::Part { .. } | Task::List | Task::Complete if no_such_upload => {
                self.upload_gone(&failure);
                return;
            }
            Task::Confirm if failure.kind == FailureKind::NotFound => {
                self.complete_never_happened("no object was found");
                return;
            }
            Task::Abort if no_such_upload => {
                self.engine.end();
                return;
            }
            Task::List
                if !failure.kind.is_retryable()
                    && !matches!(failure.kind, FailureKind::Denied | FailureKind::LocalIo) =>
            {
                // The server cannot list parts (s3s-fs answers 501): trust the checkpoint.
                self.finish_validation(false);
                return;
            }
            _ => {}
        }
        let op = self.op_for(&task).name();
        if let Err(err) = self.engine.retry(now, slot, op, failure) {
            match (task, self.engine.take_failure()) {
                // The clean-up after a failure failed too: both are said, and the upload
                // left on the server is named, so that it can still be aborted.
                (Task::Abort, Some(cause)) => {
                    let upload_id = self.upload_id.as_ref().map(|u| u.0.clone());
                    self.engine.fail(TransferError::UploadLeft {
                        cause: Box::new(cause),
                        upload_id: upload_id.unwrap_or_default(),
                        abort: Box::new(err),
                    });
                }
                // A stream cannot be resumed: its upload is aborted.
                _ if self.stream.is_some() => self.engine.wind_down(Ending::Failed(err)),
                _ => self.engine.fail(err),
            }
        }
    }
}

/// Why a checkpoint cannot describe a valid upload, if it cannot.
fn checkpoint_problem(cp: &UploadCheckpoint, parts: u32) -> Option<String> {
    if cp.version > CHECKPOINT_VERSION {
        return Some(format!(
            "it was written by a newer s3tm (format {}, this build reads up to {CHECKPOINT_VERSION})",
            cp.version
        ));
    }
    if cp.part_size_bytes < MIN_PART_SIZE_BYTES && parts > 1 {
        return Some(format!(
            "part size {} is below the 5 MiB minimum",
            cp.part_size_bytes
        ));
    }
    if u64::from(parts) > MAX_PARTS {
        return Some(format!("{parts} parts is more than S3 allows"));
    }
    let mut seen = BTreeSet::new();
    for p in &cp.completed {
        if p.part.0 == 0 || p.part.0 > parts || !seen.insert(p.part.0) {
            return Some(format!("part {} is out of range or listed twice", p.part.0));
        }
    }
    None
}

impl Direction for Upload {
    type Task = Task;

    fn engine(&self) -> &Engine<Task> {
        &self.engine
    }

    fn engine_mut(&mut self) -> &mut Engine<Task> {
        &mut self.engine
    }

    fn control_task(&self) -> Option<Task> {
        match self.phase {
            Phase::Sizing => Some(Task::Sniff),
            Phase::Single => Some(Task::Put),
            Phase::Creating => Some(Task::Create),
            Phase::Validating => Some(Task::List),
            Phase::Uploading => None,
            Phase::Completing => Some(Task::Complete),
            Phase::Confirming => Some(Task::Confirm),
            Phase::Aborting => Some(Task::Abort),
        }
    }

    fn is_control(task: &Task) -> bool {
        !matches!(
            task,
            Task::Part { .. } | Task::Verify { .. } | Task::Recheck { .. } | Task::Read { .. }
        )
    }

    fn next_task(&mut self) -> Option<Task> {
        if self.phase != Phase::Uploading {
            return None;
        }
        let generation = self.generation;
        if let Some(number) = self.to_verify.pop_first() {
            Some(Task::Verify { number, generation })
        } else if let Some(number) = self.to_recheck.pop_first() {
            Some(Task::Recheck { number, generation })
        } else if let Some(number) = self.pending.pop_first() {
            Some(Task::Part { number, generation })
        } else {
            let budget = self.cfg.memory_budget_bytes;
            let stream = self.stream.as_mut().filter(|s| s.may_read(budget))?;
            stream.reading = true;
            Some(Task::Read {
                number: stream.next_read,
            })
        }
    }

    fn op_for(&self, task: &Task) -> OpKind {
        let upload_id = self
            .upload_id
            .clone()
            .unwrap_or_else(|| UploadId(String::new()));
        match task {
            Task::Put => OpKind::PutObject {
                range: self.part_range(1),
                checksum: self.cfg.checksum,
                streamed: self.cfg.streams_part(self.part_range(1).len_bytes()),
            },
            Task::Create => OpKind::CreateMultipartUpload {
                checksum: self.cfg.checksum,
                checksum_type: self
                    .cfg
                    .checksum
                    .map(crate::ChecksumAlgorithm::multipart_type),
                metadata: match self.plan {
                    UploadPlan::Multipart {
                        part_size_bytes, ..
                    } => vec![(
                        crate::PART_SIZE_METADATA.to_owned(),
                        part_size_bytes.to_string(),
                    )],
                    UploadPlan::Single => Vec::new(),
                },
            },
            Task::Part { number, .. } => OpKind::UploadPart {
                upload_id,
                part: PartNumber(*number),
                range: self.part_range(*number),
                checksum: self.cfg.checksum,
                streamed: self.cfg.streams_part(self.part_range(*number).len_bytes()),
            },
            Task::List => OpKind::ListParts {
                upload_id,
                part_number_marker: self.list_marker,
            },
            Task::Verify { number, .. } | Task::Recheck { number, .. } => OpKind::HashSourceRange {
                range: self.part_range(*number),
                checksum: self.cfg.checksum,
            },
            Task::Complete => OpKind::CompleteMultipartUpload {
                upload_id,
                parts: self.completed.values().cloned().collect(),
                full_object_checksum: self.full_object_checksum().map(|(_, v)| v),
            },
            Task::Confirm => OpKind::HeadObject {
                part_number: None,
                if_match: None,
            },
            Task::Abort => OpKind::AbortMultipartUpload { upload_id },
            Task::Sniff => OpKind::ReadStream {
                range: ByteRange::new(0, self.stream.as_ref().map_or(0, |s| s.sniff_bytes)),
            },
            Task::Read { number } => OpKind::ReadStream {
                range: self
                    .stream
                    .as_ref()
                    .map_or(ByteRange::new(0, 0), |s| s.schedule.range(*number)),
            },
        }
    }

    fn launched(&mut self, task: &Task) {
        if *task == Task::Complete {
            self.completes_sent += 1;
        }
    }

    fn requeue(&mut self, task: Task) {
        match task {
            Task::Part { number, generation } if generation == self.generation => {
                self.pending.insert(number);
            }
            Task::Recheck { number, generation } if generation == self.generation => {
                self.to_recheck.insert(number);
            }
            _ => {}
        }
    }

    fn settled(&mut self) -> bool {
        let parts_done = self.phase == Phase::Uploading
            && self
                .stream
                .as_ref()
                .is_none_or(|s| s.end.is_some() && !s.reading)
            && self.pending.is_empty()
            && self.to_verify.is_empty()
            && self.to_recheck.is_empty();
        if parts_done {
            self.phase = Phase::Completing;
            self.engine.control_due = true;
        }
        parts_done
    }

    fn clear_work(&mut self) {
        self.pending.clear();
        self.to_verify.clear();
        self.to_recheck.clear();
        self.unrecorded.clear();
    }

    fn clean_up(&mut self, failing: bool) -> bool {
        let abort =
            self.upload_id.is_some() && (self.cfg.cancel_policy == CancelPolicy::Abort || failing);
        if abort {
            self.phase = Phase::Aborting;
        }
        abort
    }

    fn cleaning_up(&self) -> bool {
        self.phase == Phase::Aborting
    }

    fn resumed(&mut self, control_in_flight: bool) {
        if self.stream.is_some() {
            // What a stream's parts were read from is gone: nothing can be read back, and
            // the parts held in memory are sent as they are.
            return;
        }
        if matches!(
            self.phase,
            Phase::Uploading | Phase::Validating | Phase::Completing
        ) && !control_in_flight
        {
            // The upload may have been aborted or expired while paused: check it, and
            // read back the parts already sent, as the source was out of our hands.
            self.phase = Phase::Validating;
            self.recheck_due = true;
            self.listed.clear();
            self.list_marker = None;
        }
    }

    fn on_success(&mut self, task: Task, outcome: Outcome) {
        self.handle_success(task, outcome);
    }

    fn on_failure(&mut self, now: Time, slot: Slot<Task>, failure: Failure) {
        self.handle_failure(now, slot, failure);
    }

    fn on_dropped(&mut self, task: Task) -> bool {
        let current = |generation| generation == self.generation;
        let cancelling = self.engine.state == RunState::Cancelling;
        match task {
            Task::Part { number, generation } if current(generation) => {
                self.bytes_resent += self.part_range(number).len_bytes();
                if !cancelling {
                    self.pending.insert(number);
                }
            }
            Task::Verify { number, generation } if current(generation) && !cancelling => {
                self.verified(number, None, None);
            }
            Task::Recheck { number, generation } if current(generation) && !cancelling => {
                self.to_recheck.insert(number);
            }
            // The driver keeps what a cut read had read; the next read goes on from there.
            Task::Read { .. } => {
                if let Some(stream) = self.stream.as_mut() {
                    stream.reading = false;
                }
            }
            task => return !Self::is_control(&task),
        }
        true
    }

    fn checkpoint(&self) -> Option<Checkpoint> {
        self.upload_checkpoint().map(Checkpoint::Upload)
    }

    fn stalled(&mut self, now: Time, err: TransferError) {
        if self.stream.is_none() {
            self.engine.fail(err);
        } else if self
            .engine
            .in_flight_tasks()
            .all(|t| matches!(t, Task::Sniff | Task::Read { .. }))
            && !self.engine.has_retries()
        {
            // Waiting on the stream's producer, not on the network: a pipe may be silent
            // for as long as it likes.
            self.engine.touch(now);
        } else {
            // A stream cannot be resumed: its upload is aborted.
            self.engine.wind_down(Ending::Failed(err));
        }
    }

    fn progress(&self) -> (u64, u64) {
        match &self.stream {
            // Until the stream ends, its length is what was read of it so far.
            Some(s) if s.end.is_none() => (
                self.bytes_done(),
                s.schedule.bytes_before(s.next_read).max(s.sniff_bytes),
            ),
            _ => (self.bytes_done(), self.source.size_bytes),
        }
    }
}

/// Whether the server echoed the checksum that was sent.
fn echoed(sent: Option<ChecksumValue>, echo: Option<ChecksumValue>) -> bool {
    sent.is_some() && sent == echo
}
