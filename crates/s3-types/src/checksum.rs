//! Checksum algorithms and S3's rules for combining them.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// A checksum algorithm s3tm computes itself: every one S3 knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum ChecksumAlgorithm {
    /// CRC-32 (IEEE), the default.
    #[default]
    Crc32,
    /// CRC-32C (Castagnoli).
    Crc32c,
    /// CRC-64/NVME, S3's own default for objects sent without a checksum; full-object only.
    Crc64Nvme,
    /// SHA-1; composite only on multipart uploads.
    Sha1,
    /// SHA-256; composite only on multipart uploads.
    Sha256,
}

impl ChecksumAlgorithm {
    /// Every algorithm, in the order they are listed to users.
    pub const ALL: [Self; 5] = [
        Self::Crc32,
        Self::Crc32c,
        Self::Crc64Nvme,
        Self::Sha1,
        Self::Sha256,
    ];

    /// The name used in `x-amz-checksum-algorithm` and XML (`CRC32`, `CRC64NVME`, `SHA256`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crc32 => "CRC32",
            Self::Crc32c => "CRC32C",
            Self::Crc64Nvme => "CRC64NVME",
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
        }
    }

    /// The header carrying a value of this algorithm (`x-amz-checksum-crc32`, ...).
    pub fn header_name(self) -> &'static str {
        match self {
            Self::Crc32 => "x-amz-checksum-crc32",
            Self::Crc32c => "x-amz-checksum-crc32c",
            Self::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Self::Sha1 => "x-amz-checksum-sha1",
            Self::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// The XML element carrying a value of this algorithm (`ChecksumCRC32`, ...).
    pub fn xml_element(self) -> &'static str {
        match self {
            Self::Crc32 => "ChecksumCRC32",
            Self::Crc32c => "ChecksumCRC32C",
            Self::Crc64Nvme => "ChecksumCRC64NVME",
            Self::Sha1 => "ChecksumSHA1",
            Self::Sha256 => "ChecksumSHA256",
        }
    }

    /// Parses `CRC32`, `CRC32C`, `CRC64NVME`, `SHA1`, `SHA256` (case-insensitive).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| name.trim().eq_ignore_ascii_case(a.as_str()))
    }

    /// How many bytes a value of this algorithm has (4, 8, 20 or 32).
    pub fn value_len(self) -> usize {
        match self {
            Self::Crc32 | Self::Crc32c => 4,
            Self::Crc64Nvme => 8,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }

    /// Whether values of pieces combine into the value of their concatenation (the CRCs):
    /// only these make a `FULL_OBJECT` checksum of a multipart upload, and only these
    /// verify a download from the values of its ranges.
    pub fn combinable(self) -> bool {
        matches!(self, Self::Crc32 | Self::Crc32c | Self::Crc64Nvme)
    }

    /// The checksum type S3 accepts for a multipart upload with this algorithm, s3tm's
    /// preference first: full-object where S3 allows it (the CRCs; CRC64NVME allows
    /// nothing else), composite for the SHAs (which allow nothing else).
    pub fn multipart_type(self) -> ChecksumType {
        if self.combinable() {
            ChecksumType::FullObject
        } else {
            ChecksumType::Composite
        }
    }
}

impl fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest value any algorithm has (SHA-256).
const MAX_VALUE_LEN: usize = 32;

/// A checksum value as S3 encodes it: the big-endian bytes of a CRC (4 or 8), or a SHA
/// digest (20 or 32). Written in base64 on the wire (`to_base64`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChecksumValue {
    len: u8,
    bytes: [u8; MAX_VALUE_LEN],
}

impl ChecksumValue {
    /// A value from its bytes; `None` if longer than any algorithm's.
    pub fn from_bytes(value: &[u8]) -> Option<Self> {
        let mut bytes = [0u8; MAX_VALUE_LEN];
        bytes.get_mut(..value.len())?.copy_from_slice(value);
        Some(Self {
            len: value.len() as u8,
            bytes,
        })
    }

    /// A 32-bit CRC.
    pub fn from_u32(crc: u32) -> Self {
        Self::fixed(&crc.to_be_bytes())
    }

    /// A 64-bit CRC.
    pub fn from_u64(crc: u64) -> Self {
        Self::fixed(&crc.to_be_bytes())
    }

    fn fixed(value: &[u8]) -> Self {
        let mut bytes = [0u8; MAX_VALUE_LEN];
        bytes[..value.len()].copy_from_slice(value);
        Self {
            len: value.len() as u8,
            bytes,
        }
    }

    /// The value's bytes, big-endian for a CRC.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The value as a number, for a CRC of up to 64 bits.
    pub fn as_u64(&self) -> Option<u64> {
        (self.len <= 8).then(|| {
            self.as_bytes()
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        })
    }

    /// Whether this can be a value of `algorithm` (its length).
    pub fn fits(&self, algorithm: ChecksumAlgorithm) -> bool {
        usize::from(self.len) == algorithm.value_len()
    }

    /// The header/XML form: base64 of the bytes.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.as_bytes())
    }

    /// Parses the base64 form (no `-N` suffix).
    pub fn from_base64(s: &str) -> Option<Self> {
        Self::from_bytes(&BASE64.decode(s.trim()).ok()?)
    }
}

impl fmt::Debug for ChecksumValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChecksumValue({})", self.to_base64())
    }
}

impl fmt::Display for ChecksumValue {
    /// Hex, as CRCs are usually shown (`cbf43926`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.as_bytes()))
    }
}

/// Stored as a number where it is a 32-bit CRC (the form checkpoints have always had),
/// else as base64; both forms are read.
impl Serialize for ChecksumValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.len {
            4 => s.serialize_u32(self.as_u64().unwrap_or_default() as u32),
            _ => s.serialize_str(&self.to_base64()),
        }
    }
}

impl<'de> Deserialize<'de> for ChecksumValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ChecksumValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 32-bit CRC as a number, or a checksum in base64")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                u32::try_from(v)
                    .map(ChecksumValue::from_u32)
                    .map_err(|_| E::custom("a CRC number above 32 bits"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                ChecksumValue::from_base64(v).ok_or_else(|| E::custom("not a checksum in base64"))
            }
        }
        d.deserialize_any(Visitor)
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
pub fn checksum(algorithm: ChecksumAlgorithm, data: &[u8]) -> ChecksumValue {
    let mut h = Hasher::new(algorithm);
    h.update(data);
    h.value()
}

/// The checksum of `A ‖ B` from the checksums of `A` and `B` and the length of `B`: how
/// part CRCs become the full-object CRC without reading the data again. `None` for an
/// algorithm that does not combine (the SHAs) or values of the wrong length.
pub fn combine(
    algorithm: ChecksumAlgorithm,
    a: ChecksumValue,
    b: ChecksumValue,
    len_b: u64,
) -> Option<ChecksumValue> {
    if !(a.fits(algorithm) && b.fits(algorithm)) {
        return None;
    }
    let (a, b) = (a.as_u64()?, b.as_u64()?);
    match algorithm {
        ChecksumAlgorithm::Crc32 => {
            let mut h = crc32fast::Hasher::new_with_initial_len(a as u32, 0);
            h.combine(&crc32fast::Hasher::new_with_initial_len(b as u32, len_b));
            Some(ChecksumValue::from_u32(h.finalize()))
        }
        ChecksumAlgorithm::Crc32c => Some(ChecksumValue::from_u32(crc_fast::checksum_combine(
            crc_fast::CrcAlgorithm::Crc32Iscsi,
            a,
            b,
            len_b,
        ) as u32)),
        ChecksumAlgorithm::Crc64Nvme => Some(ChecksumValue::from_u64(crc_fast::checksum_combine(
            crc_fast::CrcAlgorithm::Crc64Nvme,
            a,
            b,
            len_b,
        ))),
        ChecksumAlgorithm::Sha1 | ChecksumAlgorithm::Sha256 => None,
    }
}

/// Folds `(checksum, length)` pieces, in order, into the checksum of their concatenation;
/// `None` where the algorithm does not combine or a value does not fit it.
pub fn combine_all(
    algorithm: ChecksumAlgorithm,
    pieces: impl IntoIterator<Item = (ChecksumValue, u64)>,
) -> Option<ChecksumValue> {
    pieces
        .into_iter()
        .try_fold(checksum(algorithm, &[]), |acc, (value, len)| {
            combine(algorithm, acc, value, len)
        })
}

/// The composite checksum S3 reports for a multipart object with `COMPOSITE` checksums:
/// the checksum of the concatenation of its parts' checksums (S3 writes it as
/// `<base64>-<parts>`).
pub fn composite(
    algorithm: ChecksumAlgorithm,
    part_checksums: impl IntoIterator<Item = ChecksumValue>,
) -> ChecksumValue {
    let mut h = Hasher::new(algorithm);
    for part in part_checksums {
        h.update(part.as_bytes());
    }
    h.value()
}

/// Streaming checksum computation: feed bytes as they pass, read the value at any point.
#[derive(Clone)]
pub struct Hasher {
    state: HasherState,
    len_bytes: u64,
}

#[derive(Clone)]
enum HasherState {
    Crc32(crc32fast::Hasher),
    Crc32c(u32),
    Crc64Nvme(crc_fast::Digest),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Hasher {
    /// A hasher for `algorithm` over zero bytes.
    pub fn new(algorithm: ChecksumAlgorithm) -> Self {
        let state = match algorithm {
            ChecksumAlgorithm::Crc32 => HasherState::Crc32(crc32fast::Hasher::new()),
            ChecksumAlgorithm::Crc32c => HasherState::Crc32c(0),
            ChecksumAlgorithm::Crc64Nvme => {
                HasherState::Crc64Nvme(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme))
            }
            ChecksumAlgorithm::Sha1 => HasherState::Sha1(sha1::Sha1::default()),
            ChecksumAlgorithm::Sha256 => HasherState::Sha256(sha2::Sha256::default()),
        };
        Self {
            state,
            len_bytes: 0,
        }
    }

    /// Which algorithm this hasher computes.
    pub fn algorithm(&self) -> ChecksumAlgorithm {
        match self.state {
            HasherState::Crc32(_) => ChecksumAlgorithm::Crc32,
            HasherState::Crc32c(_) => ChecksumAlgorithm::Crc32c,
            HasherState::Crc64Nvme(_) => ChecksumAlgorithm::Crc64Nvme,
            HasherState::Sha1(_) => ChecksumAlgorithm::Sha1,
            HasherState::Sha256(_) => ChecksumAlgorithm::Sha256,
        }
    }

    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            HasherState::Crc32(h) => h.update(data),
            HasherState::Crc32c(crc) => *crc = crc32c::crc32c_append(*crc, data),
            HasherState::Crc64Nvme(h) => h.update(data),
            HasherState::Sha1(h) => sha1::Digest::update(h, data),
            HasherState::Sha256(h) => sha2::Digest::update(h, data),
        }
        self.len_bytes += data.len() as u64;
    }

    /// How many bytes went in; needed to combine this value with a preceding one.
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// The checksum of everything fed so far (the hasher stays usable).
    pub fn value(&self) -> ChecksumValue {
        match &self.state {
            HasherState::Crc32(h) => ChecksumValue::from_u32(h.clone().finalize()),
            HasherState::Crc32c(crc) => ChecksumValue::from_u32(*crc),
            HasherState::Crc64Nvme(h) => ChecksumValue::from_u64(h.finalize()),
            HasherState::Sha1(h) => ChecksumValue::fixed(&sha1::Digest::finalize(h.clone())),
            HasherState::Sha256(h) => ChecksumValue::fixed(&sha2::Digest::finalize(h.clone())),
        }
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher")
            .field("algorithm", &self.algorithm())
            .field("len_bytes", &self.len_bytes)
            .finish()
    }
}

/// MD5 of `data` (the ETag of a single-part upload, and the `Content-MD5` input).
pub fn md5_digest(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// Streaming MD5: feed bytes as they pass, then take the digest.
#[derive(Clone, Default)]
pub struct Md5Hasher(Md5);

impl Md5Hasher {
    /// An MD5 over zero bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        Digest::update(&mut self.0, data);
    }

    /// The digest of everything fed.
    pub fn finish(self) -> [u8; 16] {
        self.0.finalize().into()
    }
}

impl fmt::Debug for Md5Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Md5Hasher")
    }
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
        // The CRC catalogue's check values ("123456789"), and the SHAs' of "abc".
        let check = |a, data: &[u8]| checksum(a, data).to_string();
        assert_eq!(check(ChecksumAlgorithm::Crc32, b"123456789"), "cbf43926");
        assert_eq!(check(ChecksumAlgorithm::Crc32c, b"123456789"), "e3069283");
        assert_eq!(
            check(ChecksumAlgorithm::Crc64Nvme, b"123456789"),
            "ae8b14860a799888"
        );
        assert_eq!(
            check(ChecksumAlgorithm::Sha1, b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            check(ChecksumAlgorithm::Sha256, b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex::encode(md5_of_nothing()),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
    }

    #[test]
    fn values_encode_as_s3_does_and_old_checkpoints_still_read() {
        let crc = checksum(ChecksumAlgorithm::Crc32, b"123456789");
        assert_eq!(crc.to_base64(), "y/Q5Jg==");
        assert_eq!(ChecksumValue::from_base64("y/Q5Jg=="), Some(crc));
        // A checkpoint of an older build holds a CRC as a number.
        let old: ChecksumValue = serde_json::from_str("3421780262").unwrap();
        assert_eq!(old, crc);
        assert_eq!(serde_json::to_string(&crc).unwrap(), "3421780262");
        for a in ChecksumAlgorithm::ALL {
            let v = checksum(a, b"x");
            assert!(v.fits(a), "{a}");
            let back: ChecksumValue =
                serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
            assert_eq!(back, v, "{a}");
        }
        assert_eq!(ChecksumValue::from_bytes(&[0; 33]), None);
        assert!(serde_json::from_str::<ChecksumValue>("4294967296").is_err());
    }

    #[test]
    fn only_the_crcs_combine() {
        for a in ChecksumAlgorithm::ALL {
            let v = checksum(a, b"x");
            assert_eq!(combine(a, v, v, 1).is_some(), a.combinable(), "{a}");
            assert_eq!(
                a.multipart_type() == ChecksumType::FullObject,
                a.combinable()
            );
        }
        // A value of another algorithm's length does not combine.
        let crc32 = checksum(ChecksumAlgorithm::Crc32, b"x");
        assert_eq!(combine(ChecksumAlgorithm::Crc64Nvme, crc32, crc32, 1), None);
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
        for a in ChecksumAlgorithm::ALL {
            assert_eq!(
                ChecksumAlgorithm::parse(&a.as_str().to_lowercase()),
                Some(a)
            );
            assert!(a.header_name().ends_with(&a.as_str().to_lowercase()));
            assert!(a.xml_element().ends_with(a.as_str()));
        }
        assert_eq!(ChecksumAlgorithm::parse("MD5"), None);
    }

    proptest! {
        #[test]
        fn combining_pieces_is_the_checksum_of_the_whole(
            data in prop::collection::vec(any::<u8>(), 0..4096),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
            alg in prop::sample::select(vec![
                ChecksumAlgorithm::Crc32, ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Crc64Nvme,
            ]),
        ) {
            let mut bounds: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
            bounds.extend([0, data.len()]);
            bounds.sort_unstable();
            let pieces = bounds.windows(2).map(|w| {
                let piece = &data[w[0]..w[1]];
                (checksum(alg, piece), piece.len() as u64)
            });
            prop_assert_eq!(combine_all(alg, pieces), Some(checksum(alg, &data)));
        }
    }
}
