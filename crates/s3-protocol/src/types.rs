//! Small value types shared by requests and responses.

use std::fmt;

use crate::limits::MAX_PARTS;

/// A multipart part number, 1 to 10,000 inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartNumber(u32);

impl PartNumber {
    /// The part number, or `None` outside 1..=10,000.
    pub fn new(n: u32) -> Option<Self> {
        (1..=MAX_PARTS).contains(&n).then_some(Self(n))
    }

    /// The number as S3 writes it.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for PartNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

pub use s3_types::{ETag, ETagKind, UploadId};

/// A non-empty half-open byte range `start..end` of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ByteRange {
    start: u64,
    end: u64,
}

impl ByteRange {
    /// The range `start..end`, or `None` when it is empty.
    pub fn new(start: u64, end: u64) -> Option<Self> {
        (start < end).then_some(Self { start, end })
    }

    /// First byte offset.
    pub fn start(self) -> u64 {
        self.start
    }

    /// One past the last byte offset.
    pub fn end(self) -> u64 {
        self.end
    }

    /// Number of bytes in the range.
    pub fn len_bytes(self) -> u64 {
        self.end - self.start
    }

    /// The `Range` header value: HTTP ranges are inclusive at both ends.
    pub fn to_header_value(self) -> String {
        format!("bytes={}-{}", self.start, self.end - 1)
    }
}

/// A parsed `Content-Range: bytes first-last/total` response header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentRange {
    /// The bytes this response carries.
    pub range: ByteRange,
    /// Size of the whole object, when the server told it (`*` means unknown).
    pub total_bytes: Option<u64>,
}

impl ContentRange {
    /// Parses `bytes 0-9/443` or `bytes 0-9/*`; `None` for anything else, including
    /// the unsatisfied form `bytes */443` and ranges that end past the total.
    pub fn parse(value: &str) -> Option<Self> {
        let rest = value.trim().strip_prefix("bytes")?.trim_start();
        let (span, total) = rest.split_once('/')?;
        let (first, last) = span.trim().split_once('-')?;
        let first: u64 = parse_digits(first)?;
        let last: u64 = parse_digits(last)?;
        let range = ByteRange::new(first, last.checked_add(1)?)?;
        let total_bytes = match total.trim() {
            "*" => None,
            t => {
                let t = parse_digits(t)?;
                if range.end() > t {
                    return None;
                }
                Some(t)
            }
        };
        Some(Self { range, total_bytes })
    }
}

fn parse_digits(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_numbers_are_bounded() {
        assert_eq!(PartNumber::new(0), None);
        assert_eq!(PartNumber::new(1).map(PartNumber::get), Some(1));
        assert_eq!(PartNumber::new(10_000).map(PartNumber::get), Some(10_000));
        assert_eq!(PartNumber::new(10_001), None);
    }

    #[test]
    fn etag_kinds() {
        let md5 = ETag::new("\"9b2cf535f27731c974343645a3985328\"");
        assert_eq!(md5.unquoted(), "9b2cf535f27731c974343645a3985328");
        match md5.kind() {
            ETagKind::Md5(d) => assert_eq!(hex::encode(d), "9b2cf535f27731c974343645a3985328"),
            other => panic!("{other:?}"),
        }
        let mp = ETag::new("\"d41d8cd98f00b204e9800998ecf8427e-38\"");
        assert!(matches!(mp.kind(), ETagKind::Multipart { parts: 38, .. }));
        assert_eq!(ETag::new("W/\"abc\"").kind(), ETagKind::Opaque);
        assert_eq!(
            ETag::new("\"d41d8cd98f00b204e9800998ecf8427e-0\"").kind(),
            ETagKind::Opaque
        );
        assert_eq!(
            ETag::new("\"d41d8cd98f00b204e9800998ecf8427e-x\"").kind(),
            ETagKind::Opaque
        );
        assert_eq!(
            ETag::new("\"d41d8cd98f00b204e9800998ecf8427e-+5\"").kind(),
            ETagKind::Opaque
        );
        assert_eq!(
            ETag::new("\"zz1d8cd98f00b204e9800998ecf8427e\"").kind(),
            ETagKind::Opaque
        );
        assert_eq!(ETag::new("\"").unquoted(), "\"");
        assert!(md5.same_as(&ETag::new("9b2cf535f27731c974343645a3985328")));
    }

    #[test]
    fn byte_ranges_are_half_open_but_headers_inclusive() {
        assert_eq!(ByteRange::new(5, 5), None);
        let r = ByteRange::new(0, 10).unwrap();
        assert_eq!(r.to_header_value(), "bytes=0-9");
        assert_eq!(r.len_bytes(), 10);
    }

    #[test]
    fn content_range_parsing() {
        let c = ContentRange::parse("bytes 0-9/443").unwrap();
        assert_eq!(
            (c.range.start(), c.range.end(), c.total_bytes),
            (0, 10, Some(443))
        );
        let c = ContentRange::parse("bytes 100-199/*").unwrap();
        assert_eq!(
            (c.range.start(), c.range.end(), c.total_bytes),
            (100, 200, None)
        );
        for bad in [
            "bytes */443",
            "bytes 10-9/443",
            "bytes 0-443/443",
            "bytes -1-5/10",
            "items 0-1/2",
            "bytes 0-18446744073709551615/5",
            "",
        ] {
            assert_eq!(ContentRange::parse(bad), None, "{bad}");
        }
    }
}
