//! Uploads of a stream whose length is learned only when it ends (a pipe): the part
//! sizes, which grow as the stream does, and what the machine knows of the stream so far.

use crate::config::{MAX_OBJECT_SIZE_BYTES, MAX_PART_SIZE_BYTES, MAX_PARTS, MIN_PART_SIZE_BYTES};
use crate::{ByteRange, UploadConfig};

/// The part sizes of a stream of unknown length: `first_part_bytes` for the first
/// `parts_per_step` parts, then twice as much for as many parts, and so on, never above
/// 5 GiB. The step is the longest that still lets 10,000 parts reach 5 TiB (or, when a
/// size was expected, the one that holds that size before the parts grow), so parts stay
/// small, and many of them fit the memory budget at once, for as long as they can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSchedule {
    /// Size of parts 1 to `parts_per_step`.
    pub first_part_bytes: u64,
    /// How many parts each size lasts.
    pub parts_per_step: u32,
}

impl PartSchedule {
    /// The schedule of a stream uploaded with `cfg`; `expected_size_bytes` (what the
    /// caller expects the stream to hold, if it knows) sets the first part size so that
    /// this size takes at most 10,000 parts.
    pub fn new(cfg: &UploadConfig, expected_size_bytes: Option<u64>) -> PartSchedule {
        // (Beyond 5 TiB expected, the largest part: the stream fails once it outgrows them.)
        let first = crate::part_size_for(expected_size_bytes.unwrap_or(0), cfg.part_size_bytes)
            .clamp(MIN_PART_SIZE_BYTES, MAX_PART_SIZE_BYTES);
        // Bytes before growth can only shrink the total as the step shortens, so the
        // longest step that still reaches 5 TiB is found by bisection.
        let reaches = |step: u32| {
            PartSchedule {
                first_part_bytes: first,
                parts_per_step: step,
            }
            .bytes_before(MAX_PARTS as u32 + 1)
                >= MAX_OBJECT_SIZE_BYTES
        };
        let (mut lo, mut hi) = (1u32, MAX_PARTS as u32);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if reaches(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let expected_parts = expected_size_bytes.map_or(1, |s| crate::part_count(s, first));
        PartSchedule {
            first_part_bytes: first,
            parts_per_step: lo.max(expected_parts),
        }
    }

    /// The size of part `number` (1-based).
    pub fn part_size(&self, number: u32) -> u64 {
        let step = (number.max(1) - 1) / self.parts_per_step.max(1);
        let doubled = 1u64.checked_shl(step).unwrap_or(u64::MAX);
        self.first_part_bytes
            .saturating_mul(doubled)
            .min(MAX_PART_SIZE_BYTES)
    }

    /// Bytes of the parts before part `number`, in constant time.
    pub fn bytes_before(&self, number: u32) -> u64 {
        let per = self.parts_per_step.max(1);
        let parts = number.max(1) - 1;
        let (full_steps, rest) = (parts / per, parts % per);
        let mut total = 0u64;
        // A step's parts double the previous step's until they reach the 5 GiB cap: at
        // most 11 steps from 5 MiB, so the loop is short.
        for step in 0..full_steps {
            let size = self.part_size(step * per + 1);
            if size == MAX_PART_SIZE_BYTES {
                let remaining = u64::from(parts - step * per);
                return total.saturating_add(remaining.saturating_mul(size));
            }
            total = total.saturating_add(u64::from(per).saturating_mul(size));
        }
        total.saturating_add(u64::from(rest).saturating_mul(self.part_size(parts + 1)))
    }

    /// The bytes of the stream part `number` is made of, if the stream is that long.
    pub fn range(&self, number: u32) -> ByteRange {
        let start = self.bytes_before(number);
        ByteRange::new(start, start.saturating_add(self.part_size(number)))
    }
}

/// What an upload of a stream knows of it.
#[derive(Debug, Clone)]
pub(crate) struct StreamState {
    pub(crate) schedule: PartSchedule,
    /// Bytes read ahead before choosing between PutObject and a multipart upload.
    pub(crate) sniff_bytes: u64,
    /// The next part to read from the stream.
    pub(crate) next_read: u32,
    /// A read is in flight (reads are one at a time: a stream is read front to back).
    pub(crate) reading: bool,
    /// The stream's length, once it ended.
    pub(crate) end: Option<u64>,
    /// Bytes read and held by the driver for parts not yet acknowledged.
    pub(crate) held_bytes: u64,
    /// Bytes of the parts acknowledged.
    pub(crate) done_bytes: u64,
}

impl StreamState {
    pub(crate) fn new(cfg: &UploadConfig, expected_size_bytes: Option<u64>) -> StreamState {
        StreamState {
            schedule: PartSchedule::new(cfg, expected_size_bytes),
            sniff_bytes: cfg.multipart_threshold_bytes.clamp(1, MAX_PART_SIZE_BYTES),
            next_read: 1,
            reading: false,
            end: None,
            held_bytes: 0,
            done_bytes: 0,
        }
    }

    /// Part `number`'s bytes, cut where the stream ended.
    pub(crate) fn range(&self, number: u32) -> ByteRange {
        let r = self.schedule.range(number);
        match self.end {
            Some(end) => ByteRange::new(r.start.min(end), r.end.min(end)),
            None => r,
        }
    }

    /// The parts the stream is made of, as far as it is known.
    pub(crate) fn parts(&self) -> u32 {
        self.next_read - 1
    }

    /// Whether the next part may be read now: one read at a time, and the parts held in
    /// memory (read, not yet acknowledged) with it stay within the memory budget (or it
    /// is alone: a part larger than the budget is held only by itself).
    pub(crate) fn may_read(&self, memory_budget_bytes: u64) -> bool {
        let next = self.schedule.range(self.next_read).len_bytes();
        self.end.is_none()
            && !self.reading
            && (self.held_bytes == 0 || self.held_bytes.saturating_add(next) <= memory_budget_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MIB;
    use proptest::prelude::*;

    fn check(s: &PartSchedule, cfg: &UploadConfig) {
        let last = MAX_PARTS as u32;
        assert!(
            s.bytes_before(last + 1) >= MAX_OBJECT_SIZE_BYTES,
            "{s:?}: 10,000 parts hold only {} bytes",
            s.bytes_before(last + 1)
        );
        let mut total = 0u64;
        for n in 1..=last {
            let size = s.part_size(n);
            assert!(size >= MIN_PART_SIZE_BYTES, "{s:?}: part {n} is {size}");
            assert!(size <= MAX_PART_SIZE_BYTES, "{s:?}: part {n} is {size}");
            assert!(n == 1 || size >= s.part_size(n - 1), "parts never shrink");
            assert_eq!(s.bytes_before(n), total, "{s:?}: bytes before part {n}");
            let r = s.range(n);
            assert_eq!((r.start, r.len_bytes()), (total, size));
            // Parts of this size in flight fit the budget, or only one is in flight.
            let in_flight = crate::parts_in_flight(cfg, size) as u64;
            assert!(
                in_flight * size <= cfg.memory_budget_bytes.max(size),
                "{s:?}: {in_flight} parts of {size} exceed the budget"
            );
            total += size;
        }
    }

    #[test]
    fn ten_thousand_parts_reach_5_tib_with_the_default_settings() {
        let cfg = UploadConfig::default();
        let s = PartSchedule::new(&cfg, None);
        assert_eq!(s.first_part_bytes, 8 * MIB);
        check(&s, &cfg);
        // The parts grow late: the first 1,000 parts (8 GiB) are of 8 MiB.
        assert!(s.parts_per_step >= 1000, "{s:?}");
    }

    #[test]
    fn an_expected_size_sets_the_first_part_size() {
        let cfg = UploadConfig::default();
        let s = PartSchedule::new(&cfg, Some(1024 * 1024 * MIB));
        // 1 TiB in 10,000 parts: 105 MiB each (whole MiB), all of the same size.
        assert_eq!(s.first_part_bytes, 105 * MIB);
        // The size expected fits before the parts grow (beyond it they still do).
        assert!(s.part_size(10_000) > s.part_size(1));
        assert!(s.bytes_before(s.parts_per_step + 1) >= 1024 * 1024 * MIB);
        let small = PartSchedule::new(&cfg, Some(MIB));
        assert_eq!(small.first_part_bytes, 8 * MIB);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn every_schedule_keeps_s3s_rules(
            part_mib in 1u64..6000,
            budget_mib in 1u64..2048,
            max_in_flight in 1usize..64,
            expected in proptest::option::of(0u64..=2 * MAX_OBJECT_SIZE_BYTES),
        ) {
            let cfg = UploadConfig {
                part_size_bytes: part_mib * MIB,
                memory_budget_bytes: budget_mib * MIB,
                max_in_flight,
                ..Default::default()
            };
            let s = PartSchedule::new(&cfg, expected);
            if expected.is_none() {
                check(&s, &cfg);
            } else {
                // The expected size (up to 5 TiB) fits before the parts grow, and no part
                // is ever larger than S3 allows.
                let e = expected.unwrap_or(0).min(MAX_OBJECT_SIZE_BYTES);
                prop_assert!(s.bytes_before(s.parts_per_step.min(10_000) + 1) >= e);
                prop_assert!(s.part_size(10_000) <= MAX_PART_SIZE_BYTES);
                prop_assert!((MIN_PART_SIZE_BYTES..=MAX_PART_SIZE_BYTES).contains(&s.first_part_bytes));
            }
        }
    }
}

#[cfg(test)]
mod machine_tests {
    use crate::config::MIB;
    use crate::{
        ByteRange, ETag, Event, OpKind, Operation, Outcome, Time, TransferMachine, UploadConfig,
        UploadId, UploadMachine,
    };

    /// What the machine sent of a stream of `len` bytes: the PutObject's range or the
    /// parts Complete listed, with their ranges; and the most bytes held at once.
    struct Run {
        put: Option<ByteRange>,
        parts: Vec<ByteRange>,
        most_held: u64,
        aborted: bool,
        events: Vec<Event>,
    }

    /// Drives a streaming upload over a stream of `len` bytes, answering reads at once and
    /// parts only once nothing else can start (so the memory rule is what stops reads).
    fn run(cfg: &UploadConfig, len: u64, fail_read_at: Option<u64>) -> Run {
        let now = Time::ZERO;
        let mut m = UploadMachine::streaming(cfg.clone(), None, now);
        let mut sent: Vec<(Operation, ByteRange)> = Vec::new();
        let mut ranges = std::collections::BTreeMap::new();
        let mut held = std::collections::BTreeMap::<u64, u64>::new();
        let mut out = Run {
            put: None,
            parts: Vec::new(),
            most_held: 0,
            aborted: false,
            events: Vec::new(),
        };
        for _ in 0..100_000 {
            while let Some(e) = m.poll_event() {
                out.events.push(e);
            }
            if m.is_finished() {
                return out;
            }
            let Some(op) = m.poll_operation() else {
                let (op, range) = sent.remove(0);
                held.remove(&range.start);
                let etag = ETag::new(format!("\"{:032x}\"", range.start));
                m.handle_outcome(
                    now,
                    op.id,
                    Outcome::PartUploaded {
                        etag,
                        checksum: Some(crate::ChecksumValue::from_u32(1)),
                        server_checksum: Some(crate::ChecksumValue::from_u32(1)),
                    },
                );
                continue;
            };
            let outcome = match &op.kind {
                OpKind::ReadStream { range } => {
                    assert!(range.start <= len.max(range.start));
                    if fail_read_at.is_some_and(|f| (range.start..range.end).contains(&f)) {
                        Outcome::Failed(crate::Failure::new(crate::FailureKind::LocalIo, "boom"))
                    } else {
                        let got = range.len_bytes().min(len.saturating_sub(range.start));
                        if got > 0 {
                            held.insert(range.start, got);
                        }
                        Outcome::StreamRead { len_bytes: got }
                    }
                }
                OpKind::PutObject { range, .. } => {
                    out.put = Some(*range);
                    Outcome::ObjectPut {
                        etag: ETag::new("\"e\""),
                        checksum: Some(crate::ChecksumValue::from_u32(1)),
                        server_checksum: Some(crate::ChecksumValue::from_u32(1)),
                    }
                }
                OpKind::CreateMultipartUpload { .. } => Outcome::UploadCreated {
                    upload_id: UploadId::new("u"),
                },
                OpKind::UploadPart { part, range, .. } => {
                    assert!(range.len_bytes() > 0, "part {part} is empty");
                    ranges.insert(part.0, *range);
                    sent.push((op.clone(), *range));
                    continue;
                }
                OpKind::CompleteMultipartUpload { parts, .. } => {
                    out.parts = parts.iter().map(|p| ranges[&p.part.0]).collect();
                    Outcome::UploadCompleted {
                        etag: ETag::new("\"x-2\""),
                        server_checksum: None,
                    }
                }
                OpKind::AbortMultipartUpload { .. } => {
                    out.aborted = true;
                    Outcome::UploadAborted
                }
                other => panic!("unexpected {other:?}"),
            };
            let total: u64 = held.values().sum();
            out.most_held = out.most_held.max(total);
            m.handle_outcome(now, op.id, outcome);
        }
        panic!("the upload did not finish");
    }

    fn small() -> UploadConfig {
        UploadConfig {
            multipart_threshold_bytes: 5 * MIB,
            part_size_bytes: 5 * MIB,
            memory_budget_bytes: 12 * MIB,
            max_in_flight: 8,
            ..Default::default()
        }
    }

    #[test]
    fn short_streams_go_in_one_put_and_long_ones_in_parts_covering_them() {
        let cfg = small();
        for len in [0, 1, 5 * MIB - 1] {
            let r = run(&cfg, len, None);
            assert_eq!(r.put, Some(ByteRange::new(0, len)), "{len}");
            assert!(matches!(r.events.last(), Some(Event::Completed(c)) if c.bytes_total == len));
        }
        for len in [5 * MIB, 10 * MIB, 10 * MIB + 1, 37 * MIB + 12_345] {
            let r = run(&cfg, len, None);
            assert_eq!(r.put, None);
            let mut at = 0;
            for (i, p) in r.parts.iter().enumerate() {
                assert_eq!(
                    p.start,
                    at,
                    "{len}: part {} starts where the last ended",
                    i + 1
                );
                assert!(p.len_bytes() > 0);
                if i + 1 < r.parts.len() {
                    assert!(p.len_bytes() >= 5 * MIB);
                }
                at = p.end;
            }
            assert_eq!(at, len, "the parts cover the stream");
            assert_eq!(r.parts.len() as u64, len.div_ceil(5 * MIB), "{len}");
            // Two 5 MiB parts fit the 12 MiB budget, a third does not.
            assert!(r.most_held <= 12 * MIB, "{len}: held {}", r.most_held);
            assert!(matches!(r.events.last(), Some(Event::Completed(c)) if c.bytes_total == len));
        }
    }

    #[test]
    fn a_stream_that_fails_aborts_its_upload() {
        let r = run(&small(), 40 * MIB, Some(17 * MIB));
        assert!(r.parts.is_empty(), "never completed");
        assert!(r.aborted, "the multipart upload is aborted");
        assert!(
            matches!(r.events.last(), Some(Event::Failed(_))),
            "{:?}",
            r.events.last()
        );
    }

    /// A pipe whose producer is silent for longer than the stall timeout is waited for;
    /// a part that makes no progress that long fails the upload, which is aborted.
    #[test]
    fn a_silent_producer_is_no_stall_but_a_silent_server_is() {
        let cfg = small();
        let stall = cfg.retry.stall_timeout;
        let mut m = UploadMachine::streaming(cfg, None, Time::ZERO);
        let sniff = m.poll_operation().expect("the sniff read");
        let later = Time::ZERO + stall + stall;
        m.handle_timeout(later);
        assert!(!m.is_finished(), "failed while waiting on the pipe");
        m.handle_outcome(later, sniff.id, Outcome::StreamRead { len_bytes: 5 * MIB });
        let create = m.poll_operation().expect("create");
        m.handle_outcome(
            later,
            create.id,
            Outcome::UploadCreated {
                upload_id: UploadId::new("u"),
            },
        );
        // Part 1 is read (from the bytes the sniff held) and sent; the next read waits.
        let mut in_flight = Vec::new();
        while let Some(op) = m.poll_operation() {
            match op.kind {
                OpKind::ReadStream { range } if range.start == 0 => {
                    m.handle_outcome(later, op.id, Outcome::StreamRead { len_bytes: 5 * MIB });
                }
                _ => in_flight.push(op),
            }
        }
        assert!(
            in_flight
                .iter()
                .any(|op| matches!(op.kind, OpKind::UploadPart { .. })),
            "{in_flight:?}"
        );
        let much_later = later + stall + stall;
        m.handle_timeout(much_later);
        assert!(!m.is_finished(), "the upload must be aborted first");
        for op in in_flight {
            m.handle_outcome(much_later, op.id, Outcome::Dropped);
        }
        let abort = m.poll_operation().expect("the abort");
        assert!(
            matches!(abort.kind, OpKind::AbortMultipartUpload { .. }),
            "{abort:?}"
        );
        m.handle_outcome(much_later, abort.id, Outcome::UploadAborted);
        let last = std::iter::from_fn(|| m.poll_event()).last();
        assert!(
            matches!(last, Some(Event::Failed(crate::TransferError::Stalled(_)))),
            "{last:?}"
        );
    }
}
