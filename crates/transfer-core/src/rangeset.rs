use serde::{Deserialize, Serialize};

use crate::ByteRange;

/// A set of byte offsets kept as sorted, disjoint, non-adjacent ranges.
///
/// Download checkpoints use it so that a million completed ranges that touch each
/// other cost one entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RangeSet {
    ranges: Vec<ByteRange>,
}

impl RangeSet {
    /// The empty set.
    pub fn new() -> Self {
        RangeSet::default()
    }

    /// Adds `range`, merging it with any range it overlaps or touches.
    pub fn insert(&mut self, range: ByteRange) {
        if range.is_empty() {
            return;
        }
        // First stored range that ends at or after the new start: everything before it
        // lies strictly to the left and cannot merge.
        let first = self.ranges.partition_point(|r| r.end < range.start);
        let mut merged = range;
        let mut last = first;
        while last < self.ranges.len() && self.ranges[last].start <= merged.end {
            merged.start = merged.start.min(self.ranges[last].start);
            merged.end = merged.end.max(self.ranges[last].end);
            last += 1;
        }
        self.ranges.splice(first..last, [merged]);
    }

    /// Takes every byte of `range` out of the set.
    pub fn remove(&mut self, range: ByteRange) {
        if range.is_empty() {
            return;
        }
        let mut kept = Vec::with_capacity(self.ranges.len() + 1);
        for r in self.ranges.drain(..) {
            if r.end <= range.start || range.end <= r.start {
                kept.push(r);
                continue;
            }
            if r.start < range.start {
                kept.push(ByteRange::new(r.start, range.start));
            }
            if range.end < r.end {
                kept.push(ByteRange::new(range.end, r.end));
            }
        }
        self.ranges = kept;
    }

    /// Whether every byte of `range` is in the set.
    pub fn contains(&self, range: ByteRange) -> bool {
        if range.is_empty() {
            return true;
        }
        let i = self.ranges.partition_point(|r| r.end < range.end);
        self.ranges
            .get(i)
            .is_some_and(|r| r.start <= range.start && range.end <= r.end)
    }

    /// Total number of bytes in the set.
    pub fn len_bytes(&self) -> u64 {
        self.ranges.iter().map(ByteRange::len_bytes).sum()
    }

    /// The stored ranges, sorted.
    pub fn ranges(&self) -> &[ByteRange] {
        &self.ranges
    }

    /// Whether the stored form is canonical (sorted, disjoint, non-adjacent, non-empty);
    /// a checkpoint read from disk is checked with it.
    pub fn is_canonical(&self) -> bool {
        self.ranges.iter().all(|r| !r.is_empty())
            && self.ranges.windows(2).all(|w| w[0].end < w[1].start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_splits_and_trims() {
        let mut s = RangeSet::new();
        s.insert(ByteRange::new(0, 100));
        s.insert(ByteRange::new(200, 300));
        s.remove(ByteRange::new(40, 60));
        s.remove(ByteRange::new(250, 400));
        s.remove(ByteRange::new(500, 600));
        assert_eq!(
            s.ranges(),
            &[
                ByteRange::new(0, 40),
                ByteRange::new(60, 100),
                ByteRange::new(200, 250)
            ]
        );
        assert!(s.is_canonical());
        s.remove(ByteRange::new(0, 1000));
        assert!(s.ranges().is_empty());
    }

    #[test]
    fn merges_touching_and_overlapping() {
        let mut s = RangeSet::new();
        s.insert(ByteRange::new(10, 20));
        s.insert(ByteRange::new(30, 40));
        s.insert(ByteRange::new(20, 30));
        assert_eq!(s.ranges(), &[ByteRange::new(10, 40)]);
        s.insert(ByteRange::new(0, 5));
        s.insert(ByteRange::new(3, 12));
        assert_eq!(s.ranges(), &[ByteRange::new(0, 40)]);
        assert!(s.contains(ByteRange::new(5, 39)));
        assert!(!s.contains(ByteRange::new(35, 41)));
        assert_eq!(s.len_bytes(), 40);
    }

    #[test]
    fn keeps_gaps() {
        let mut s = RangeSet::new();
        s.insert(ByteRange::new(50, 60));
        s.insert(ByteRange::new(0, 10));
        assert_eq!(s.ranges(), &[ByteRange::new(0, 10), ByteRange::new(50, 60)]);
        assert!(!s.contains(ByteRange::new(9, 51)));
        assert!(s.is_canonical());
    }
}
