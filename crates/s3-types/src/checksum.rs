//! Checksum algorithms and S3's rules for combining them.

use std::fmt;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// A checksum algorithm s3tm computes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum ChecksumAlgorithm {
    /// CRC-32 (IEEE), the default.
    #[default]
    Crc32,
    /// CRC-32C (Castagnoli).
    Crc32c,
}

impl ChecksumAlgorithm {
    /// The name used in `x-amz-checksum-algorithm` and XML (`CRC32`, `CRC32C`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crc32 => "CRC32",
            Self::Crc32c => "CRC32C",
        }
    }

    /// The header carrying a value of this algorithm (`x-amz-checksum-crc32`, ...).
    pub fn header_name(self) -> &'static str {
        match self {
            Self::Crc32 => "x-amz-checksum-crc32",
            Self::Crc32c => "x-amz-checksum-crc32c",
        }
    }

    /// The XML element carrying a value of this algorithm (`ChecksumCRC32`, ...).
    pub fn xml_element(self) -> &'static str {
        match self {
            Self::Crc32 => "ChecksumCRC32",
            Self::Crc32c => "ChecksumCRC32C",
        }
    }

    /// Parses `CRC32` / `CRC32C` (case-insensitive).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Crc32, Self::Crc32c]
            .into_iter()
            .find(|a| name.eq_ignore_ascii_case(a.as_str()))
    }
}

impl fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How S3 derived an object's checksum (`x-amz-checksum-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChecksumType {
    /// The checksum covers the whole object's bytes (combinable from part CRCs).
    FullObject,
    /// A checksum of the part checksums, written `<base64>-<parts>`.
    Composite,
}

impl ChecksumType {
    /// `FULL_OBJECT` or `COMPOSITE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FullObject => "FULL_OBJECT",
            Self::Composite => "COMPOSITE",
        }
    }

    /// Parses `FULL_OBJECT` / `COMPOSITE`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "FULL_OBJECT" => Some(Self::FullObject),
            "COMPOSITE" => Some(Self::Composite),
            _ => None,
        }
    }
}

/// The checksum of `data` under `algorithm`.
pub fn checksum(algorithm: ChecksumAlgorithm, data: &[u8]) -> u32 {
    match algorithm {
        ChecksumAlgorithm::Crc32 => crc32fast::hash(data),
        ChecksumAlgorithm::Crc32c => crc32c::crc32c(data),
    }
}

/// The checksum of `A ‖ B` from the checksums of `A` and `B` and the length of `B`: how
/// part CRCs become the full-object CRC without reading the data again.
pub fn combine(algorithm: ChecksumAlgorithm, crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    match algorithm {
        ChecksumAlgorithm::Crc32 => {
            let mut a = crc32fast::Hasher::new_with_initial_len(crc_a, 0);
            a.combine(&crc32fast::Hasher::new_with_initial_len(crc_b, len_b));
            a.finalize()
        }
        ChecksumAlgorithm::Crc32c => match usize::try_from(len_b) {
            Ok(len) => crc32c::crc32c_combine(crc_a, crc_b, len),
            // Only reachable where usize is 32 bits. The combine operator shifts `crc_a`
            // over `len_b` zero bytes and xors `crc_b`; shifting composes, so the long
            // shift is done in steps that fit.
            Err(_) => {
                let mut shifted = crc_a;
                let mut remaining = len_b;
                let step = usize::MAX as u64;
                while remaining > step {
                    shifted = crc32c::crc32c_combine(shifted, 0, usize::MAX);
                    remaining -= step;
                }
                crc32c::crc32c_combine(shifted, crc_b, remaining as usize)
            }
        },
    }
}

/// Folds `(checksum, length)` pieces, in order, into the checksum of their concatenation.
pub fn combine_all(
    algorithm: ChecksumAlgorithm,
    pieces: impl IntoIterator<Item = (u32, u64)>,
) -> u32 {
    pieces
        .into_iter()
        .fold(checksum(algorithm, &[]), |acc, (crc, len)| {
            combine(algorithm, acc, crc, len)
        })
}

/// The composite checksum S3 reports for a multipart object with `COMPOSITE` checksums:
/// the checksum of the big-endian concatenation of its parts' checksums (S3 writes it
/// as `<base64>-<parts>`).
pub fn composite(
    algorithm: ChecksumAlgorithm,
    part_checksums: impl IntoIterator<Item = u32>,
) -> u32 {
    let bytes: Vec<u8> = part_checksums
        .into_iter()
        .flat_map(u32::to_be_bytes)
        .collect();
    checksum(algorithm, &bytes)
}

/// MD5 of `data` (the ETag of a single-part upload, and the `Content-MD5` input).
pub fn md5_digest(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// MD5 of nothing, the ETag of an empty single-part object.
pub fn md5_of_nothing() -> [u8; 16] {
    md5_digest(&[])
}

/// The ETag S3 gives a multipart object: hex MD5 of the concatenated binary part MD5s,
/// then `-<number of parts>` (without quotes).
pub fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    let mut h = Md5::new();
    for d in part_md5s {
        h.update(d);
    }
    format!("{}-{}", hex::encode(h.finalize()), part_md5s.len())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn known_values() {
        // The CRC catalogue's check values ("123456789").
        assert_eq!(
            checksum(ChecksumAlgorithm::Crc32, b"123456789"),
            0xCBF4_3926
        );
        assert_eq!(
            checksum(ChecksumAlgorithm::Crc32c, b"123456789"),
            0xE306_9283
        );
        assert_eq!(
            hex::encode(md5_of_nothing()),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
    }

    #[test]
    fn multipart_etag_of_known_parts() {
        let parts = [md5_digest(b"a"), md5_digest(b"b")];
        let mut both = Vec::new();
        both.extend_from_slice(&parts[0]);
        both.extend_from_slice(&parts[1]);
        assert_eq!(
            multipart_etag(&parts),
            format!("{}-2", hex::encode(md5_digest(&both)))
        );
    }

    #[test]
    fn names_round_trip() {
        for a in [ChecksumAlgorithm::Crc32, ChecksumAlgorithm::Crc32c] {
            assert_eq!(
                ChecksumAlgorithm::parse(&a.as_str().to_lowercase()),
                Some(a)
            );
            assert!(a.header_name().ends_with(&a.as_str().to_lowercase()));
        }
        assert_eq!(ChecksumAlgorithm::parse("SHA256"), None);
    }

    proptest! {
        #[test]
        fn combining_pieces_is_the_checksum_of_the_whole(
            data in prop::collection::vec(any::<u8>(), 0..4096),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
            crc32c in any::<bool>(),
        ) {
            let alg = if crc32c { ChecksumAlgorithm::Crc32c } else { ChecksumAlgorithm::Crc32 };
            let mut bounds: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
            bounds.extend([0, data.len()]);
            bounds.sort_unstable();
            let pieces = bounds.windows(2).map(|w| {
                let piece = &data[w[0]..w[1]];
                (checksum(alg, piece), piece.len() as u64)
            });
            prop_assert_eq!(combine_all(alg, pieces), checksum(alg, &data));
        }
    }
}
