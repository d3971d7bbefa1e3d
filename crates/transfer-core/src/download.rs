//! The download machine: discover the object, fetch ranges in parallel pinned to its
//! ETag, verify, and only then move the file into place.

use std::collections::{BTreeMap, BTreeSet};

use crate::ChecksumAlgorithm;
use crate::config::MAX_PARTS;
use crate::engine::{Ending, Engine, RunState, Slot};
use crate::machine::{Direction, Machine};
use crate::op::{ChecksumKind, FileHashes, ObjectChecksum, ObjectInfo, RangeHashes};
use crate::{
    ByteRange, CHECKPOINT_VERSION, Checkpoint, Completion, DownloadCheckpoint, DownloadConfig,
    ETag, Event, Failure, FailureKind, OpKind, Outcome, PartNumber, PartRun, RangeHash, RangeSet,
    Time, TransferError, Verified, VerifyPlan,
};
use s3_types::{
    ChecksumValue, checksum, combine_all, composite as composite_checksum, md5_of_nothing,
    multipart_etag,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Task {
    Head,
    /// HeadObject `?partNumber=N`: the length of part N.
    HeadPart(u32),
    Prepare,
    /// Reading a range carried over from an earlier run back from the partial file.
    Recheck(u32),
    Range(u32),
    Hash,
    Commit,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Discovering,
    /// Asking for the length of every part, to align ranges to the object's parts.
    DiscoveringParts,
    Preparing,
    /// Checking the ranges carried over from an earlier run against their recorded hashes.
    Rechecking,
    Fetching,
    Hashing,
    Committing,
    Deleting,
}

/// What is left to check by reading the whole partial file once more: what the ranges'
/// hashes cannot be combined into.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FileCheck {
    /// The MD5 of a single-part ETag, over more than one range.
    Md5 { md5_hex: String },
    /// A full-object checksum of an algorithm that does not combine (a SHA of an object
    /// sent in one PutObject), over more than one range.
    Checksum {
        algorithm: ChecksumAlgorithm,
        value: ChecksumValue,
    },
    /// A multipart ETag whose part sizes the server did not tell and the first guess did
    /// not give: the part sizes other tools use, tried at once.
    MultipartEtag { part_sizes: Vec<u64> },
}

impl FileCheck {
    /// What the read computes for this check.
    fn hashes(&self) -> FileHashes {
        match self {
            FileCheck::Md5 { .. } => FileHashes {
                md5: true,
                ..FileHashes::default()
            },
            FileCheck::Checksum { algorithm, .. } => FileHashes {
                checksum: Some(*algorithm),
                ..FileHashes::default()
            },
            FileCheck::MultipartEtag { part_sizes } => FileHashes {
                multipart_part_sizes: part_sizes.clone(),
                ..FileHashes::default()
            },
        }
    }
}

/// How many part sizes one more read of the file tries against a multipart ETag: each
/// is one more MD5 over the whole file.
const MAX_PART_SIZE_GUESSES: usize = 4;

/// The part sizes other tools upload with, most used first: 8 MiB (aws-cli, boto3 and the
/// AWS transfer managers), 5 MiB (rclone, the Go SDK's uploader), then sizes people
/// configure or other tools default to (16, 10, 15, 32 and 64 MiB, s5cmd's 50 MiB, 100 MiB).
const CONVENTIONAL_PART_SIZES_MIB: [u64; 9] = [8, 5, 16, 10, 15, 32, 50, 64, 100];

/// The part sizes that an object of `size` bytes uploaded in `parts` parts may have been
/// sent with by another tool, most likely first: each conventional size raised as those
/// tools raise it (doubled until the object fits in 10,000 parts), then the size rclone
/// picks for a large file (the object over 10,000 parts, rounded up to a MiB); only those
/// that give exactly `parts` parts.
pub(crate) fn conventional_part_sizes(size: u64, parts: u32) -> Vec<u64> {
    const MIB: u64 = 1024 * 1024;
    let fits = |p: u64| p > 0 && size.div_ceil(p) == u64::from(parts);
    let mut out: Vec<u64> = Vec::new();
    let raised = CONVENTIONAL_PART_SIZES_MIB.iter().map(|mib| {
        let mut p = mib * MIB;
        while size.div_ceil(p) > MAX_PARTS {
            p = p.saturating_mul(2);
        }
        p
    });
    let rclone = size.div_ceil(MAX_PARTS).div_ceil(MIB).saturating_mul(MIB);
    for p in raised.chain([rclone]) {
        if fits(p) && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Layout {
    etag: ETag,
    size_bytes: u64,
    last_modified: Option<String>,
    object_checksum: Option<ObjectChecksum>,
    range_size_bytes: u64,
    /// The object's parts as the server reported them; the ranges are then the parts.
    /// Empty: ranges of `range_size_bytes`.
    part_runs: Vec<PartRun>,
    /// For each run, the index of its first range and that range's first byte.
    run_starts: Vec<(u32, u64)>,
    verify: VerifyPlan,
}

impl Layout {
    #[allow(clippy::too_many_arguments)]
    fn new(
        etag: ETag,
        size_bytes: u64,
        last_modified: Option<String>,
        object_checksum: Option<ObjectChecksum>,
        range_size_bytes: u64,
        part_runs: Vec<PartRun>,
        verify: VerifyPlan,
    ) -> Self {
        let mut run_starts = Vec::with_capacity(part_runs.len());
        let (mut index, mut start) = (0u32, 0u64);
        for run in &part_runs {
            run_starts.push((index, start));
            index = index.saturating_add(run.count);
            start = start.saturating_add(run.len_bytes.saturating_mul(u64::from(run.count)));
        }
        Layout {
            etag,
            size_bytes,
            last_modified,
            object_checksum,
            range_size_bytes: range_size_bytes.max(1),
            part_runs,
            run_starts,
            verify,
        }
    }

    fn count(&self) -> u32 {
        match (self.run_starts.last(), self.part_runs.last()) {
            (Some((first, _)), Some(run)) => first.saturating_add(run.count),
            _ => u32::try_from(self.size_bytes.div_ceil(self.range_size_bytes)).unwrap_or(u32::MAX),
        }
    }

    fn range(&self, index: u32) -> ByteRange {
        let (start, len) = if self.part_runs.is_empty() {
            (
                u64::from(index).saturating_mul(self.range_size_bytes),
                self.range_size_bytes,
            )
        } else {
            let k = self
                .run_starts
                .partition_point(|(first, _)| *first <= index)
                .saturating_sub(1);
            let (first, run_start) = self.run_starts[k];
            let len = self.part_runs[k].len_bytes;
            (
                run_start.saturating_add(u64::from(index - first).saturating_mul(len)),
                len,
            )
        };
        let start = start.min(self.size_bytes);
        ByteRange::new(start, start.saturating_add(len).min(self.size_bytes))
    }

    /// Whether the ranges are known to be the object's parts: learned from the server (a
    /// single-part object is one run). Otherwise they were guessed (from a part size recorded with the
    /// object, or by a checkpoint of an older build, from part 1's length).
    fn parts_known(&self) -> bool {
        // A single part is one run too; one range of a multipart object is no proof.
        !self.part_runs.is_empty()
    }

    fn hashes(&self) -> RangeHashes {
        match &self.verify {
            // A checksum that does not combine is checked on a second read of the file;
            // the ranges get CRC32C of their own, for resuming.
            VerifyPlan::FullObject { algorithm, .. }
                if !algorithm.combinable() && self.count() > 1 =>
            {
                RangeHashes {
                    checksum: Some(ChecksumAlgorithm::Crc32c),
                    md5: false,
                }
            }
            VerifyPlan::FullObject { algorithm, .. } | VerifyPlan::Composite { algorithm, .. } => {
                RangeHashes {
                    checksum: Some(*algorithm),
                    md5: false,
                }
            }
            VerifyPlan::Unstated { algorithm, md5, .. } => RangeHashes {
                checksum: Some(*algorithm),
                md5: *md5,
            },
            // One range: its MD5 is the object's, no second pass needed.
            VerifyPlan::Md5 { .. } if self.count() == 1 => RangeHashes {
                checksum: None,
                md5: true,
            },
            VerifyPlan::MultipartEtag => RangeHashes {
                checksum: None,
                md5: true,
            },
            // Nothing to check the object against, but every range still gets a hash of
            // its own, so that bytes carried over to a later run are checked before
            // they are trusted.
            VerifyPlan::Md5 { .. } | VerifyPlan::Unverified { .. } => RangeHashes {
                checksum: Some(ChecksumAlgorithm::Crc32c),
                md5: false,
            },
        }
    }
}

/// Downloads one object into a partial file. See the crate docs for the contract.
pub type DownloadMachine = Machine<Download>;

/// The rules of a download: discover the object, fetch ranges pinned to its ETag,
/// verify, and only then move the file into place.
#[derive(Debug)]
pub struct Download {
    cfg: DownloadConfig,
    partial_path: String,
    engine: Engine<Task>,
    phase: Phase,
    /// The version a resumed download must find.
    expected_etag: Option<ETag>,
    /// What the first HeadObject said, until the layout is settled.
    discovered: Option<ObjectInfo>,
    /// Parts whose length is still to be asked for, and the lengths (and offsets, where
    /// the server sent a `Content-Range`) learned so far.
    to_learn: BTreeSet<u32>,
    learned: BTreeMap<u32, (u64, Option<u64>)>,
    /// How many parts the object has.
    parts_expected: u32,
    /// Why the part lengths could not be learned, for the verdict.
    learn_problem: Option<String>,
    layout: Option<Layout>,
    completed: RangeSet,
    hashes: BTreeMap<u32, RangeHash>,
    pending: BTreeSet<u32>,
    /// The next Prepare is followed by reading back the completed ranges (after a
    /// rebuild from a checkpoint, or a pause: the partial file was out of our hands).
    recheck_due: bool,
    /// Completed ranges still to be read back and checked.
    to_recheck: BTreeSet<u32>,
    /// Bytes that came from the checkpoint this machine was rebuilt from (counted in
    /// `bytes_resumed`, not in `bytes_transferred`).
    carried: RangeSet,
    verified: Option<Verified>,
    /// What the second read of the file (Phase::Hashing) checks.
    to_hash: Option<FileCheck>,
    bytes_transferred: u64,
    bytes_resent: u64,
    bytes_resumed: u64,
    bytes_rechecked: u64,
    bytes_recheck_failed: u64,
}

impl Machine<Download> {
    /// Starts a download whose bytes go to `partial_path` until verified.
    pub fn new(cfg: DownloadConfig, partial_path: String, now: Time) -> Self {
        let mut m = Download::blank(cfg, partial_path, now);
        m.engine.control_due = true;
        m.drive();
        Machine { dir: m }
    }

    /// Continues the download recorded in `cp`. The object must still have the recorded
    /// ETag; otherwise the transfer fails with [`TransferError::ObjectChanged`] and the
    /// partial file is removed, so old and new bytes never mix.
    pub fn from_checkpoint(cfg: DownloadConfig, cp: DownloadCheckpoint, now: Time) -> Self {
        let mut m = Download::blank(cfg, cp.partial_path.clone(), now);
        m.expected_etag = Some(cp.etag.clone());
        let problem = if cp.version > CHECKPOINT_VERSION {
            Some(format!(
                "it was written by a newer s3tm (format {}, this build reads up to {CHECKPOINT_VERSION})",
                cp.version
            ))
        } else if !cp.completed.is_canonical()
            || cp
                .completed
                .ranges()
                .last()
                .is_some_and(|r| r.end > cp.size_bytes)
            || cp.range_size_bytes == 0
            || cp.size_bytes.div_ceil(cp.range_size_bytes) > MAX_PARTS * 1024
        {
            Some("its completed ranges do not fit the object".to_owned())
        } else if !cp.part_runs.is_empty() && !runs_fit(&cp.part_runs, cp.size_bytes) {
            Some("its part lengths do not add up to the object".to_owned())
        } else {
            None
        };
        m.layout = Some(Layout::new(
            cp.etag,
            cp.size_bytes,
            cp.last_modified,
            cp.object_checksum,
            cp.range_size_bytes,
            cp.part_runs,
            cp.verify,
        ));
        m.completed = cp.completed;
        m.hashes = cp.range_hashes.into_iter().map(|h| (h.index, h)).collect();
        m.bytes_resumed = m.completed.len_bytes();
        m.carried = m.completed.clone();
        m.recheck_due = true;
        match problem {
            // Nothing is deleted: a newer s3tm may still resume it.
            Some(p) => m.engine.fail(TransferError::InvalidCheckpoint(p)),
            None => m.engine.control_due = true,
        }
        m.drive();
        Machine { dir: m }
    }

    /// The object's ETag, once known.
    pub fn etag(&self) -> Option<&ETag> {
        self.dir.etag()
    }
}

impl Download {
    /// A machine with nothing queued yet.
    fn blank(cfg: DownloadConfig, partial_path: String, now: Time) -> Self {
        let engine = Engine::new(cfg.retry.clone(), cfg.max_in_flight, now);
        Download {
            cfg,
            partial_path,
            engine,
            phase: Phase::Discovering,
            expected_etag: None,
            discovered: None,
            to_learn: BTreeSet::new(),
            learned: BTreeMap::new(),
            parts_expected: 0,
            learn_problem: None,
            layout: None,
            completed: RangeSet::new(),
            hashes: BTreeMap::new(),
            pending: BTreeSet::new(),
            recheck_due: false,
            to_recheck: BTreeSet::new(),
            carried: RangeSet::new(),
            verified: None,
            to_hash: None,
            bytes_transferred: 0,
            bytes_resent: 0,
            bytes_resumed: 0,
            bytes_rechecked: 0,
            bytes_recheck_failed: 0,
        }
    }

    fn etag(&self) -> Option<&ETag> {
        self.layout
            .as_ref()
            .map(|l| &l.etag)
            .or(self.discovered.as_ref().map(|d| &d.etag))
    }

    fn bytes_total(&self) -> u64 {
        self.layout.as_ref().map_or(0, |l| l.size_bytes)
    }

    fn download_checkpoint(&self) -> Option<DownloadCheckpoint> {
        let l = self.layout.as_ref()?;
        Some(DownloadCheckpoint {
            version: CHECKPOINT_VERSION,
            etag: l.etag.clone(),
            size_bytes: l.size_bytes,
            last_modified: l.last_modified.clone(),
            object_checksum: l.object_checksum,
            range_size_bytes: l.range_size_bytes,
            by_part_number: false,
            part_runs: l.part_runs.clone(),
            verify: l.verify.clone(),
            completed: self.completed.clone(),
            range_hashes: self.hashes.values().cloned().collect(),
            partial_path: self.partial_path.clone(),
        })
    }

    fn object_changed(&mut self, found: Option<ETag>) {
        let expected = self.etag().cloned().unwrap_or_else(|| ETag(String::new()));
        self.engine
            .wind_down(Ending::Failed(TransferError::ObjectChanged {
                expected,
                found,
            }));
    }

    /// Chooses ranges and the integrity check from the first HeadObject.
    fn on_discovered(&mut self, info: ObjectInfo) {
        if let Some(expected) = &self.expected_etag {
            if !expected.same_as(&info.etag) {
                self.object_changed(Some(info.etag));
                return;
            }
            // A resumed download keeps its layout.
            self.phase = Phase::Preparing;
            self.engine.control_due = true;
            return;
        }
        let size = info.content_length;
        let parts = parts_worth_learning(&info);
        self.discovered = Some(info);
        match parts {
            // A count from the server, never trusted to size a request storm.
            Some(n) if u64::from(n) > MAX_PARTS || u64::from(n) > size => {
                self.give_up_learning(format!("it claims {n} parts for {size} bytes"))
            }
            // Never guessed from part 1: parts may have any lengths (5, 7 and 3 MiB).
            Some(n) if n > 1 && size > 0 => {
                self.parts_expected = n;
                self.to_learn = (1..=n).collect();
                self.learned.clear();
                self.phase = Phase::DiscoveringParts;
            }
            Some(1) if size > 0 => self.lay_out(Some(vec![PartRun {
                len_bytes: size,
                count: 1,
            }])),
            _ => self.lay_out(None),
        }
    }

    /// The length of part `n`, from HeadObject `?partNumber=n`.
    fn on_part_learned(&mut self, n: u32, info: ObjectInfo) {
        if self.phase != Phase::DiscoveringParts || self.engine.state == RunState::Cancelling {
            return; // given up on, or cancelled, while this was in flight
        }
        let Some(d) = &self.discovered else { return };
        let (size, expected) = (d.content_length, self.parts_expected);
        let len = info.content_length;
        let problem = match (info.parts_count, info.part_range) {
            (Some(c), _) if c != expected => Some(format!(
                "it counts {c} parts where the object's ETag or checksum says {expected}"
            )),
            _ if len >= size => Some("it ignores partNumber".to_owned()),
            _ if len == 0 => Some(format!("it says part {n} is empty")),
            (_, Some(r)) if r.len_bytes() != len || r.end > size => Some(format!(
                "for part {n} it sent {len} bytes as Content-Length and {r} as Content-Range"
            )),
            _ => None,
        };
        match problem {
            Some(p) => self.give_up_learning(p),
            None => {
                self.learned
                    .insert(n, (len, info.part_range.map(|r| r.start)));
            }
        }
    }

    /// Every part's length is in: lay the ranges out on them, if they add up.
    fn parts_learned(&mut self) {
        let size = self.discovered.as_ref().map_or(0, |d| d.content_length);
        let lengths: Vec<u64> = self.learned.values().map(|(len, _)| *len).collect();
        let total = lengths.iter().try_fold(0u64, |t, l| t.checked_add(*l));
        if lengths.len() != self.parts_expected as usize || total != Some(size) {
            self.give_up_learning(format!(
                "its {} part lengths add up to {}, not to the object's {size} bytes",
                lengths.len(),
                total.map_or("more than 2^64".to_owned(), |t| t.to_string())
            ));
            return;
        }
        // Where the server said where a part starts, it must be where the lengths put it.
        let mut offset = 0u64;
        for (n, (len, start)) in &self.learned {
            if let Some(s) = start
                && *s != offset
            {
                let problem =
                    format!("its Content-Range puts part {n} at byte {s}, its lengths at {offset}");
                self.give_up_learning(problem);
                return;
            }
            offset += len;
        }
        let mut runs: Vec<PartRun> = Vec::new();
        for len in lengths {
            match runs.last_mut() {
                Some(r) if r.len_bytes == len => r.count += 1,
                _ => runs.push(PartRun {
                    len_bytes: len,
                    count: 1,
                }),
            }
        }
        self.learned.clear();
        self.lay_out(Some(runs));
    }

    /// The server did not tell the part lengths (or told something inconsistent): the
    /// ranges are laid out without them, and whatever needs them is not verified.
    fn give_up_learning(&mut self, problem: String) {
        // Only part lengths can be waiting for a retry in this phase.
        self.engine.drain_retries();
        self.to_learn.clear();
        self.learned.clear();
        self.learn_problem = Some(problem);
        self.lay_out(None);
    }

    /// Settles the layout; `parts` are the object's parts when they are known (learned
    /// from the server, or a single part).
    fn lay_out(&mut self, parts: Option<Vec<PartRun>>) {
        let Some(info) = self.discovered.take() else {
            return;
        };
        let size = info.content_length;
        let plain = {
            let floor = size.div_ceil(MAX_PARTS);
            self.cfg.range_size_bytes.max(floor).max(1)
        };
        let why = self.unknown_parts_why();
        let unknown_parts = |what: &str| VerifyPlan::Unverified {
            reason: format!(
                "the server did not tell the part sizes{why}, so the {what} cannot be checked"
            ),
        };
        let worth = parts_worth_learning(&info);
        let multipart = worth.is_some_and(|n| n > 1);
        // Where the server did not tell the part lengths, the part size s3tm recorded
        // with its own uploads is tried, else the part sizes other tools use; a
        // disagreement over a guess proves nothing.
        let hinted = worth
            .filter(|_| parts.is_none() && multipart)
            .and_then(|n| {
                let fits = |p: &u64| *p > 0 && size.div_ceil(*p) == u64::from(n);
                info.part_size_hint()
                    .filter(fits)
                    .or_else(|| conventional_part_sizes(size, n).first().copied())
            });
        let aligned_ok = parts.is_some() || hinted.is_some();
        let verify = match info.checksum {
            Some(ObjectChecksum {
                algorithm,
                value,
                kind: ChecksumKind::FullObject,
            }) => VerifyPlan::FullObject { algorithm, value },
            Some(ObjectChecksum {
                algorithm,
                value,
                kind: ChecksumKind::Unstated,
            }) if !multipart && !aligned_ok && !info.etag_not_md5 => {
                VerifyPlan::FullObject { algorithm, value }
            }
            Some(ObjectChecksum {
                algorithm,
                value,
                kind: ChecksumKind::Unstated,
            }) => VerifyPlan::Unstated {
                algorithm,
                value,
                md5: !info.etag_not_md5 && info.etag.multipart_parts().is_some(),
            },
            Some(ObjectChecksum {
                algorithm,
                value,
                kind: ChecksumKind::Composite { .. },
            }) if aligned_ok => VerifyPlan::Composite { algorithm, value },
            Some(ObjectChecksum {
                kind: ChecksumKind::Composite { .. },
                ..
            }) => unknown_parts("composite checksum"),
            None if info.etag_not_md5 => VerifyPlan::Unverified {
                reason: "the object is encrypted with SSE-KMS or SSE-C, so its ETag is not an MD5"
                    .to_owned(),
            },
            None => match (info.etag.as_md5(), info.etag.multipart_parts(), aligned_ok) {
                (Some(md5), _, _) => VerifyPlan::Md5 {
                    md5_hex: hex::encode(md5),
                },
                (None, Some(_), true) => VerifyPlan::MultipartEtag,
                (None, Some(_), false) => unknown_parts("multipart ETag"),
                (None, None, _) => VerifyPlan::Unverified {
                    reason: "the object has no checksum and its ETag is not an MD5".to_owned(),
                },
            },
        };
        // Part boundaries matter only to a plan that hashes parts.
        let aligned = matches!(
            verify,
            VerifyPlan::Composite { .. } | VerifyPlan::MultipartEtag | VerifyPlan::Unstated { .. }
        );
        let runs = parts.filter(|_| aligned).unwrap_or_default();
        let range_size = match (runs.first(), hinted) {
            (Some(r), _) => r.len_bytes,
            (None, Some(p)) if aligned => p,
            _ => plain,
        };
        self.layout = Some(Layout::new(
            info.etag,
            size,
            info.last_modified,
            info.checksum,
            range_size,
            runs,
            verify,
        ));
        // Recorded before the partial file exists, so a crash cannot leave it unknown.
        self.emit_checkpoint();
        self.phase = Phase::Preparing;
        self.engine.control_due = true;
    }

    fn on_prepared(&mut self, previous_len: Option<u64>) {
        let Some(l) = &self.layout else { return };
        let size = l.size_bytes;
        let count = l.count();
        if !self.completed.ranges().is_empty() && previous_len != Some(size) {
            self.engine.emit(Event::Restarted {
                reason: format!(
                    "the partial file {} was missing or truncated; downloading from the start",
                    self.partial_path
                ),
            });
            self.bytes_resent += self.completed.len_bytes();
            self.completed = RangeSet::new();
            self.carried = RangeSet::new();
            self.hashes.clear();
            self.emit_checkpoint();
            if previous_len.is_none() {
                // Not created (create was false): now that the checkpoint names no bytes,
                // ask again, allowing creation.
                self.engine.control_due = true;
                return;
            }
        }
        let recheck = std::mem::take(&mut self.recheck_due);
        let l = self.layout.as_ref().expect("checked above");
        if recheck {
            self.to_recheck = (0..count)
                .filter(|i| {
                    let r = l.range(*i);
                    !r.is_empty() && self.completed.contains(r)
                })
                .collect();
        }
        if self.to_recheck.is_empty() {
            self.start_fetching();
        } else {
            self.phase = Phase::Rechecking;
        }
    }

    /// Queues every range not yet completed.
    fn start_fetching(&mut self) {
        let Some(l) = &self.layout else { return };
        self.pending = (0..l.count())
            .filter(|i| !self.completed.contains(l.range(*i)))
            .collect();
        self.phase = Phase::Fetching;
        self.emit_progress();
    }

    /// A range carried over from an earlier run was read back: keep it if it still has
    /// the hashes recorded when it was fetched, else fetch it again.
    fn on_rechecked(&mut self, index: u32, checksum: Option<ChecksumValue>, md5: Option<[u8; 16]>) {
        if self.engine.state == RunState::Cancelling {
            return;
        }
        let Some(l) = &self.layout else { return };
        let range = l.range(index);
        let wanted = l.hashes();
        let recorded = self.hashes.get(&index);
        let problem = match recorded {
            _ if wanted.checksum.is_none() && !wanted.md5 => Some("no hash to check it against"),
            None => Some("the checkpoint recorded no hash for it"),
            Some(h) => {
                let crc_ok =
                    wanted.checksum.is_none() || (h.checksum.is_some() && h.checksum == checksum);
                let md5_ok = !wanted.md5
                    || h.md5_hex.as_ref().is_some_and(|m| {
                        md5.is_some_and(|d| m.eq_ignore_ascii_case(&hex::encode(d)))
                    });
                (!(crc_ok && md5_ok)).then_some("its bytes differ from those fetched earlier")
            }
        };
        self.bytes_rechecked += range.len_bytes();
        if let Some(why) = problem {
            self.bytes_recheck_failed += range.len_bytes();
            if self.carried.contains(range) {
                self.carried.remove(range);
                self.bytes_resumed = self.bytes_resumed.saturating_sub(range.len_bytes());
            } else {
                self.bytes_resent += range.len_bytes();
            }
            self.completed.remove(range);
            self.hashes.remove(&index);
            self.engine.emit(Event::Invalidated {
                range,
                reason: format!(
                    "{range} of the partial file {}: {why}; fetching them again",
                    self.partial_path
                ),
            });
            self.emit_checkpoint();
            self.emit_progress();
        }
    }

    fn on_range(&mut self, index: u32, checksum: Option<ChecksumValue>, md5: Option<[u8; 16]>) {
        let Some(l) = &self.layout else { return };
        let range = l.range(index);
        let hashes = l.hashes();
        if hashes.checksum.is_some() && checksum.is_none() || hashes.md5 && md5.is_none() {
            let failure = Failure::new(
                FailureKind::Other,
                "the driver did not report the hashes asked for",
            );
            self.engine.fail(TransferError::Remote {
                op: "GetObject",
                failure,
            });
            return;
        }
        self.bytes_transferred += range.len_bytes();
        self.completed.insert(range);
        let hash = (hashes.checksum.is_some() || hashes.md5).then(|| RangeHash {
            index,
            checksum,
            md5_hex: md5.map(hex::encode),
        });
        if let Some(h) = &hash {
            self.hashes.insert(index, h.clone());
        }
        self.emit_delta(crate::Delta::Range { range, hash });
        self.emit_progress();
    }

    /// All bytes are in: check what can be checked from the ranges' hashes.
    fn verify_ranges(&mut self) {
        let Some(l) = self.layout.clone() else { return };
        let count = l.count();
        let crcs: Option<Vec<ChecksumValue>> = (0..count)
            .map(|i| self.hashes.get(&i).and_then(|h| h.checksum))
            .collect();
        let md5s: Option<Vec<[u8; 16]>> = (0..count)
            .map(|i| {
                let h = self.hashes.get(&i)?.md5_hex.as_ref()?;
                let mut out = [0u8; 16];
                hex::decode_to_slice(h, &mut out).ok().map(|_| out)
            })
            .collect();
        // `None` also where the ranges' values cannot be combined (a SHA over several).
        let full = |algorithm: ChecksumAlgorithm, value: ChecksumValue| -> Option<Check> {
            let actual = match crcs.as_ref()?.as_slice() {
                [] => checksum(algorithm, &[]),
                [one] => *one,
                many => combine_all(
                    algorithm,
                    many.iter()
                        .enumerate()
                        .map(|(i, c)| (*c, l.range(i as u32).len_bytes())),
                )?,
            };
            Some(Check::of(
                actual == value,
                Verified::FullObjectChecksum(algorithm),
                || crc_mismatch(algorithm, value, actual),
            ))
        };
        let composite = |algorithm: ChecksumAlgorithm, value: ChecksumValue| -> Option<Check> {
            let actual = composite_checksum(algorithm, crcs.clone()?);
            Some(Check::of(
                actual == value,
                Verified::CompositeChecksum {
                    algorithm,
                    parts: count,
                },
                || crc_mismatch(algorithm, value, actual),
            ))
        };
        let etag = || -> Option<Check> {
            let actual = multipart_etag(md5s.as_ref()?);
            Some(Check::of(
                l.etag.unquoted().eq_ignore_ascii_case(&actual),
                Verified::MultipartEtag { parts: count },
                || {
                    (
                        "multipart ETag".to_owned(),
                        l.etag.unquoted().to_owned(),
                        actual.clone(),
                    )
                },
            ))
        };
        // Over part boundaries that were guessed (a checkpoint of an older build), a
        // disagreement proves nothing about the bytes.
        let why = self.unknown_parts_why();
        let guessed = |check: Option<Check>, what: &str| match check {
            Some(Check::Mismatch(_)) if !l.parts_known() => {
                Some(Check::Verified(Verified::Unverified {
                    reason: format!(
                        "the server did not tell the part sizes{why}, and the {what} does not match over the size guessed ({} MiB: recorded with the object, used by other tools, or by an older s3tm), which proves nothing either way",
                        mib(l.range_size_bytes)
                    ),
                }))
            }
            other => other,
        };
        // An MD5 or a SHA over several ranges does not combine: the file is read once more.
        if let Some(check @ (FileCheck::Md5 { .. } | FileCheck::Checksum { .. })) =
            file_check_for(&l)
        {
            self.hash_file(check);
            return;
        }
        let check = match &l.verify {
            VerifyPlan::FullObject { algorithm, value } => full(*algorithm, *value),
            VerifyPlan::Composite { algorithm, value } => {
                guessed(composite(*algorithm, *value), "composite checksum")
            }
            VerifyPlan::MultipartEtag => {
                let check = etag();
                if matches!(check, Some(Check::Mismatch(_))) && self.guess_again(&l) {
                    return;
                }
                guessed(check, "multipart ETag")
            }
            VerifyPlan::Unstated {
                algorithm,
                value,
                md5,
            } => {
                let check = self.unstated(&l, crcs.is_none(), full(*algorithm, *value), || {
                    (composite(*algorithm, *value), etag().filter(|_| *md5))
                });
                if *md5
                    && matches!(check, Some(Check::Verified(Verified::Unverified { .. })))
                    && self.guess_again(&l)
                {
                    return;
                }
                check
            }
            VerifyPlan::Md5 { md5_hex } => {
                let single = match count {
                    0 => Some(md5_of_nothing()),
                    _ => md5s.as_ref().and_then(|m| m.first().copied()),
                };
                single.map(|m| check_md5(md5_hex, m))
            }
            VerifyPlan::Unverified { reason } => Some(Check::Verified(Verified::Unverified {
                reason: reason.clone(),
            })),
        };
        match check {
            Some(Check::Verified(v)) => self.commit(v),
            Some(Check::Mismatch((algorithm, expected, actual))) => {
                self.mismatch(algorithm, expected, actual)
            }
            None => self.engine.fail(TransferError::InvalidCheckpoint(
                "a completed range has no recorded hash".into(),
            )),
        }
    }

    /// The verdict on an object whose checksum came without a type: the first reading
    /// that matches verifies (over guessed part sizes too: a match is a match); a
    /// multipart ETag that does not match over part sizes the server told is a mismatch
    /// (it is unambiguous); anything else leaves the object not verified.
    fn unstated(
        &self,
        l: &Layout,
        hashes_missing: bool,
        full: Option<Check>,
        others: impl FnOnce() -> (Option<Check>, Option<Check>),
    ) -> Option<Check> {
        if let Some(Check::Verified(v)) = &full {
            return Some(Check::Verified(v.clone()));
        }
        let (composite, etag) = others();
        for check in [&composite, &etag] {
            if let Some(Check::Verified(v)) = check {
                return Some(Check::Verified(v.clone()));
            }
        }
        if etag.is_some() && l.parts_known() {
            return etag;
        }
        if hashes_missing {
            return None;
        }
        let algorithm = match &l.verify {
            VerifyPlan::Unstated { algorithm, .. } => *algorithm,
            _ => ChecksumAlgorithm::Crc32,
        };
        let how = if l.parts_known() {
            "neither as a full-object nor as a composite checksum"
        } else {
            "as a full-object checksum, and the server did not tell the part sizes needed to read it as a composite one"
        };
        Some(Check::Verified(Verified::Unverified {
            reason: format!(
                "the server sent a {algorithm} checksum without saying its type or part count, and it does not match the content {how}"
            ),
        }))
    }

    /// The bytes do not match: the partial file is kept for the user to look at, and the
    /// checkpoint with it, no longer vouching for any range, so that resuming fetches
    /// everything again; cancelling removes both.
    fn mismatch(&mut self, algorithm: String, expected: String, actual: String) {
        self.completed = RangeSet::new();
        self.carried = RangeSet::new();
        self.hashes.clear();
        self.emit_checkpoint();
        self.engine.fail(TransferError::ChecksumMismatch {
            range: None,
            partial_path: self.partial_path.clone(),
            algorithm,
            expected,
            actual,
        });
    }

    /// The multipart ETag did not match over ranges of a guessed part size: if other
    /// part sizes other tools use fit the object, reads the file once more to try them
    /// all (true), else leaves the verdict to the caller (false).
    fn guess_again(&mut self, l: &Layout) -> bool {
        let part_sizes = other_part_sizes(l);
        if part_sizes.is_empty() {
            return false;
        }
        self.hash_file(FileCheck::MultipartEtag { part_sizes });
        true
    }

    /// What a second read of the file may be asked for once all bytes are in, for a
    /// destination that cannot be read again to compute as it is written.
    fn in_order_hashes(&self) -> FileHashes {
        self.layout
            .as_ref()
            .and_then(file_check_for)
            .map(|c| c.hashes())
            .unwrap_or_default()
    }

    /// Why the part sizes are not known, for a verdict: ` (<what the server did>)`, or
    /// nothing when this run did not ask (a resumed download).
    fn unknown_parts_why(&self) -> String {
        self.learn_problem
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default()
    }

    /// Reads the whole partial file once more for what the ranges' hashes cannot tell.
    fn hash_file(&mut self, check: FileCheck) {
        self.to_hash = Some(check);
        self.phase = Phase::Hashing;
        self.engine.control_due = true;
    }

    /// The second read of the file is in: the verdict.
    fn on_file_hashed(
        &mut self,
        md5: Option<[u8; 16]>,
        checksum: Option<ChecksumValue>,
        multipart_etags: Vec<String>,
    ) {
        let Some(l) = &self.layout else { return };
        let check = match self.to_hash.take() {
            Some(FileCheck::Md5 { md5_hex }) => Some(match md5 {
                Some(m) => check_md5(&md5_hex, m),
                None => Check::Verified(Verified::Unverified {
                    reason: "the MD5 of the whole content could not be computed (the bytes went where they cannot be read again)".to_owned(),
                }),
            }),
            Some(FileCheck::Checksum { algorithm, value }) => Some(match checksum {
                Some(actual) => Check::of(
                    actual == value,
                    Verified::FullObjectChecksum(algorithm),
                    || crc_mismatch(algorithm, value, actual),
                ),
                // A stream written in order is not read again.
                None => Check::Verified(Verified::Unverified {
                    reason: format!(
                        "the object's {algorithm} covers it whole and cannot be combined from its ranges, and the bytes went where they cannot be read again"
                    ),
                }),
            }),
            Some(FileCheck::MultipartEtag { part_sizes }) => {
                let parts = l.etag.multipart_parts().unwrap_or_default();
                // None reported (a stream is not read again) is none found.
                let found = multipart_etags
                    .iter()
                    .take(part_sizes.len())
                    .any(|e| l.etag.unquoted().eq_ignore_ascii_case(e));
                let tried: Vec<String> = std::iter::once(l.range_size_bytes)
                    .chain(part_sizes)
                    .map(|p| format!("{} MiB", mib(p)))
                    .collect();
                let why = self.unknown_parts_why();
                Some(Check::Verified(if found {
                    Verified::MultipartEtag { parts }
                } else {
                    Verified::Unverified {
                        reason: format!(
                            "the server did not tell the part sizes{why}, and the multipart ETag matches none of the part sizes other tools use ({}), which proves nothing either way",
                            tried.join(", ")
                        ),
                    }
                }))
            }
            None => None,
        };
        match check {
            Some(Check::Verified(v)) => self.commit(v),
            Some(Check::Mismatch((algorithm, expected, actual))) => {
                self.mismatch(algorithm, expected, actual)
            }
            None => {
                let failure = Failure::new(
                    FailureKind::Other,
                    "the driver did not report the hashes of the file asked for",
                );
                self.engine.fail(TransferError::Local {
                    op: "HashPartialFile",
                    message: failure.message,
                });
            }
        }
    }

    fn commit(&mut self, verified: Verified) {
        self.verified = Some(verified);
        self.phase = Phase::Committing;
        self.engine.control_due = true;
    }

    fn handle_success(&mut self, task: Task, outcome: Outcome) {
        match (task, outcome) {
            (Task::Head, Outcome::ObjectInfo(info)) => self.on_discovered(info),
            (Task::HeadPart(n), Outcome::ObjectInfo(info)) => self.on_part_learned(n, info),
            (Task::Prepare, Outcome::FilePrepared { previous_len }) => {
                self.on_prepared(previous_len)
            }
            (Task::Range(i), Outcome::RangeWritten { checksum, md5 }) => {
                self.on_range(i, checksum, md5)
            }
            (Task::Recheck(i), Outcome::PartialRangeHashed { checksum, md5 }) => {
                self.on_rechecked(i, checksum, md5)
            }
            (
                Task::Hash,
                Outcome::FileHashed {
                    md5,
                    checksum,
                    multipart_etags,
                },
            ) => self.on_file_hashed(md5, checksum, multipart_etags),
            (Task::Commit, Outcome::FileCommitted) => self.complete(),
            (Task::Delete, Outcome::FileDeleted) => {
                self.engine.end();
            }
            (task, outcome) => self.engine.unexpected(&task, &outcome),
        }
    }

    fn complete(&mut self) {
        let Some(l) = &self.layout else { return };
        let checksum = match &l.verify {
            VerifyPlan::FullObject { algorithm, value } => Some((*algorithm, *value)),
            _ => None,
        };
        let completion = Completion {
            etag: Some(l.etag.clone()),
            checksum,
            verified: self.verified.take().unwrap_or(Verified::Unverified {
                reason: "not checked".into(),
            }),
            bytes_total: l.size_bytes,
            bytes_transferred: self.bytes_transferred,
            bytes_resent: self.bytes_resent,
            bytes_resumed: self.bytes_resumed,
            bytes_rechecked: self.bytes_rechecked,
            bytes_recheck_failed: self.bytes_recheck_failed,
        };
        self.engine.finish_with(Event::Completed(completion));
    }

    fn handle_failure(&mut self, now: Time, slot: Slot<Task>, failure: Failure) {
        let task = slot.task.clone();
        if let (Task::Range(i), Some(l)) = (&task, &self.layout) {
            self.bytes_resent += l.range(*i).len_bytes();
        }
        if self.engine.state == RunState::Cancelling && task != Task::Delete
            || matches!(task, Task::HeadPart(_)) && self.phase != Phase::DiscoveringParts
        {
            return;
        }
        match (&task, failure.kind) {
            (Task::Delete, _) if !failure.kind.is_retryable() => {
                // The partial file could not be removed; say so rather than claim it was.
                let err = TransferError::Local {
                    op: "DeletePartialFile",
                    message: failure.message,
                };
                self.engine.fail(err);
                return;
            }
            (Task::Range(_), FailureKind::PreconditionFailed) => {
                self.object_changed(None);
                return;
            }
            (Task::Head, FailureKind::NotFound) if self.expected_etag.is_some() => {
                self.object_changed(None);
                return;
            }
            (Task::HeadPart(n), kind) if !kind.is_retryable() && kind != FailureKind::Denied => {
                // Servers that do not know partNumber: fall back to plain ranges.
                self.give_up_learning(format!("asked for part {n}, it answered {failure}"));
                return;
            }
            (_, FailureKind::LocalIo) => {
                // Keep the partial file and checkpoint: freeing space and resuming works.
                let op = self.op_for(&task).name();
                self.engine.fail(TransferError::Local {
                    op,
                    message: failure.message,
                });
                return;
            }
            _ => {}
        }
        let op = self.op_for(&task).name();
        if let Err(err) = self.engine.retry(now, slot, op, failure) {
            self.engine.fail(err);
        }
    }
}

/// The outcome of comparing the content with one thing the server said about it.
#[derive(Debug, Clone)]
enum Check {
    Verified(Verified),
    /// What was compared, the server's value and ours.
    Mismatch((String, String, String)),
}

impl Check {
    fn of(
        ok: bool,
        verified: Verified,
        mismatch: impl FnOnce() -> (String, String, String),
    ) -> Self {
        if ok {
            Check::Verified(verified)
        } else {
            Check::Mismatch(mismatch())
        }
    }
}

fn crc_mismatch(
    algorithm: ChecksumAlgorithm,
    expected: ChecksumValue,
    actual: ChecksumValue,
) -> (String, String, String) {
    (
        algorithm.to_string(),
        expected.to_string(),
        actual.to_string(),
    )
}

fn check_md5(expected_hex: &str, actual: [u8; 16]) -> Check {
    let actual_hex = hex::encode(actual);
    Check::of(
        expected_hex.eq_ignore_ascii_case(&actual_hex),
        Verified::Md5Etag,
        || {
            (
                "MD5".to_owned(),
                expected_hex.to_owned(),
                actual_hex.clone(),
            )
        },
    )
}

/// What one more read of the file may be asked to check for `l`, once all bytes are in:
/// what the ranges' hashes cannot be combined into.
fn file_check_for(l: &Layout) -> Option<FileCheck> {
    let several = l.count() > 1;
    match &l.verify {
        VerifyPlan::FullObject { algorithm, value } if !algorithm.combinable() && several => {
            Some(FileCheck::Checksum {
                algorithm: *algorithm,
                value: *value,
            })
        }
        VerifyPlan::Md5 { md5_hex } if several => Some(FileCheck::Md5 {
            md5_hex: md5_hex.clone(),
        }),
        VerifyPlan::MultipartEtag | VerifyPlan::Unstated { md5: true, .. } => {
            Some(FileCheck::MultipartEtag {
                part_sizes: other_part_sizes(l),
            })
        }
        _ => None,
    }
}

/// The part sizes other tools use that fit the object, besides the one its ranges were
/// laid on; none when the server told the parts.
fn other_part_sizes(l: &Layout) -> Vec<u64> {
    if l.parts_known() {
        return Vec::new();
    }
    l.etag
        .multipart_parts()
        .map(|n| conventional_part_sizes(l.size_bytes, n))
        .unwrap_or_default()
        .into_iter()
        .filter(|p| *p != l.range_size_bytes)
        .take(MAX_PART_SIZE_GUESSES)
        .collect()
}

/// Bytes in MiB, for messages: `8`, `5.5`.
fn mib(bytes: u64) -> String {
    let whole = bytes / (1024 * 1024);
    if bytes.is_multiple_of(1024 * 1024) {
        whole.to_string()
    } else {
        format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
    }
}

/// How many parts the object has, when knowing their boundaries lets more of it be
/// verified (a composite checksum, a multipart ETag, a checksum of unstated type).
fn parts_worth_learning(info: &ObjectInfo) -> Option<u32> {
    let multipart = || info.etag.multipart_parts().or(info.parts_count);
    match info.checksum.map(|c| c.kind) {
        Some(ChecksumKind::FullObject) => None,
        Some(ChecksumKind::Composite { parts }) => Some(parts),
        Some(ChecksumKind::Unstated) => multipart(),
        None if info.etag_not_md5 => None,
        None => info.etag.multipart_parts(),
    }
}

/// Whether part runs describe an object of `size` bytes in at most 10,000 parts.
fn runs_fit(runs: &[PartRun], size: u64) -> bool {
    let count: u64 = runs.iter().map(|r| u64::from(r.count)).sum();
    let total = runs.iter().try_fold(0u64, |t, r| {
        t.checked_add(r.len_bytes.checked_mul(u64::from(r.count))?)
    });
    count <= MAX_PARTS && total == Some(size) && runs.iter().all(|r| r.count > 0 && r.len_bytes > 0)
}

impl Direction for Download {
    type Task = Task;

    fn engine(&self) -> &Engine<Task> {
        &self.engine
    }

    fn engine_mut(&mut self) -> &mut Engine<Task> {
        &mut self.engine
    }

    fn control_task(&self) -> Option<Task> {
        match self.phase {
            Phase::Discovering => Some(Task::Head),
            Phase::Preparing => Some(Task::Prepare),
            Phase::DiscoveringParts | Phase::Rechecking | Phase::Fetching => None,
            Phase::Hashing => Some(Task::Hash),
            Phase::Committing => Some(Task::Commit),
            Phase::Deleting => Some(Task::Delete),
        }
    }

    fn is_control(task: &Task) -> bool {
        !matches!(task, Task::Range(_) | Task::Recheck(_) | Task::HeadPart(_))
    }

    fn next_task(&mut self) -> Option<Task> {
        match self.phase {
            Phase::DiscoveringParts => self.to_learn.pop_first().map(Task::HeadPart),
            Phase::Rechecking => self.to_recheck.pop_first().map(Task::Recheck),
            Phase::Fetching => self.pending.pop_first().map(Task::Range),
            _ => None,
        }
    }

    fn op_for(&self, task: &Task) -> OpKind {
        match task {
            Task::Head => OpKind::HeadObject {
                part_number: None,
                if_match: None,
            },
            Task::HeadPart(n) => OpKind::HeadObject {
                part_number: Some(PartNumber(*n)),
                if_match: None,
            },
            Task::Prepare => OpKind::PreparePartialFile {
                size_bytes: self.bytes_total(),
                create: self.completed.ranges().is_empty(),
                in_order: self.in_order_hashes(),
            },
            Task::Recheck(i) => {
                let l = self
                    .layout
                    .as_ref()
                    .expect("ranges are rechecked only once laid out");
                OpKind::HashPartialRange {
                    range: l.range(*i),
                    hashes: l.hashes(),
                }
            }
            Task::Range(i) => {
                let l = self
                    .layout
                    .as_ref()
                    .expect("ranges are fetched only once laid out");
                OpKind::GetRange {
                    range: l.range(*i),
                    if_match: l.etag.clone(),
                    hashes: l.hashes(),
                }
            }
            Task::Hash => OpKind::HashPartialFile {
                hashes: self
                    .to_hash
                    .as_ref()
                    .map(FileCheck::hashes)
                    .unwrap_or_default(),
            },
            Task::Commit => OpKind::CommitPartialFile,
            Task::Delete => OpKind::DeletePartialFile,
        }
    }

    fn requeue(&mut self, task: Task) {
        match task {
            Task::Range(i) => {
                self.pending.insert(i);
            }
            Task::Recheck(i) => {
                self.to_recheck.insert(i);
            }
            Task::HeadPart(n) if self.phase == Phase::DiscoveringParts => {
                self.to_learn.insert(n);
            }
            _ => {}
        }
    }

    fn settled(&mut self) -> bool {
        // A phase of parallel work whose last answer is in moves on.
        let before = self.phase;
        match self.phase {
            Phase::DiscoveringParts if self.to_learn.is_empty() => self.parts_learned(),
            Phase::Rechecking if self.to_recheck.is_empty() => self.start_fetching(),
            Phase::Fetching if self.pending.is_empty() => self.verify_ranges(),
            _ => {}
        }
        self.phase != before || self.engine.state != RunState::Running
    }

    fn clear_work(&mut self) {
        self.pending.clear();
        self.to_recheck.clear();
        self.to_learn.clear();
    }

    fn clean_up(&mut self, _failing: bool) -> bool {
        self.phase = Phase::Deleting;
        true
    }

    fn cleaning_up(&self) -> bool {
        self.phase == Phase::Deleting
    }

    fn resumed(&mut self, control_in_flight: bool) {
        if !control_in_flight
            && self.engine.in_flight() == 0
            && matches!(
                self.phase,
                Phase::Rechecking | Phase::Fetching | Phase::Hashing | Phase::Committing
            )
        {
            // The partial file was out of our hands while paused: open it again and read
            // back what it should hold before trusting it.
            self.pending.clear();
            self.to_recheck.clear();
            self.verified = None;
            self.recheck_due = true;
            self.phase = Phase::Preparing;
        }
    }

    fn on_success(&mut self, task: Task, outcome: Outcome) {
        self.handle_success(task, outcome);
    }

    fn on_failure(&mut self, now: Time, slot: Slot<Task>, failure: Failure) {
        self.handle_failure(now, slot, failure);
    }

    fn on_dropped(&mut self, task: Task) -> bool {
        let cancelling = self.engine.state == RunState::Cancelling;
        match task {
            Task::Recheck(i) if !cancelling => {
                self.to_recheck.insert(i);
            }
            Task::HeadPart(n) if !cancelling && self.phase == Phase::DiscoveringParts => {
                self.to_learn.insert(n);
            }
            Task::Range(i) => {
                if let Some(l) = &self.layout {
                    self.bytes_resent += l.range(i).len_bytes();
                }
                if !cancelling {
                    self.pending.insert(i);
                }
            }
            task => return !Self::is_control(&task),
        }
        true
    }

    fn checkpoint(&self) -> Option<Checkpoint> {
        self.download_checkpoint().map(Checkpoint::Download)
    }

    fn progress(&self) -> (u64, u64) {
        (self.completed.len_bytes(), self.bytes_total())
    }
}

#[cfg(test)]
mod tests {
    use super::conventional_part_sizes;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn part_sizes_other_tools_use_most_likely_first() {
        // 20 MiB in 3 parts: aws-cli's 8 MiB; 5 MiB would make 4 parts.
        assert_eq!(conventional_part_sizes(20 * MIB, 3), vec![8 * MIB]);
        // 9 MiB in 2 parts: 8 MiB first, then 5 MiB (rclone).
        assert_eq!(conventional_part_sizes(9 * MIB, 2)[..2], [8 * MIB, 5 * MIB]);
        // 100 GiB: aws-cli doubles 8 MiB to 16 MiB to stay within 10,000 parts (6,400).
        let big = 100 * 1024 * MIB;
        assert_eq!(
            conventional_part_sizes(big, 6400).first(),
            Some(&(16 * MIB))
        );
        // rclone's size for the same object: 100 GiB / 10,000 rounded up to a MiB.
        assert!(conventional_part_sizes(big, 9_310).contains(&(11 * MIB)));
        // 15 MiB in 3 parts: 5 MiB, the only conventional size that gives 3.
        assert_eq!(conventional_part_sizes(15 * MIB, 3), vec![5 * MIB]);
        for (size, parts) in [(15 * MIB, 3), (1, 1), (big, 6400), (33 * MIB, 5)] {
            for p in conventional_part_sizes(size, parts) {
                assert_eq!(
                    size.div_ceil(p),
                    u64::from(parts),
                    "{p} for {size} in {parts}"
                );
            }
        }
    }
}
