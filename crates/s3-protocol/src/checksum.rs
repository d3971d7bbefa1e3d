//! CRC32/CRC32C checksums in S3's encodings, CRC combination and the multipart ETag rule.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest as _, Md5};

/// A checksum algorithm the transfer manager computes itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChecksumAlgorithm {
    /// CRC-32 (IEEE), as computed by `crc32fast`.
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
        if name.eq_ignore_ascii_case("CRC32") {
            Some(Self::Crc32)
        } else if name.eq_ignore_ascii_case("CRC32C") {
            Some(Self::Crc32c)
        } else {
            None
        }
    }

    /// The checksum of `data` in one call.
    pub fn checksum(self, data: &[u8]) -> Checksum {
        let mut h = ChecksumHasher::new(self);
        h.update(data);
        h.finalize()
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

/// A CRC value tagged with its algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Checksum {
    /// Which CRC.
    pub algorithm: ChecksumAlgorithm,
    /// The CRC value.
    pub value: u32,
}

impl Checksum {
    /// The header/XML form: base64 of the 4 big-endian bytes.
    pub fn to_base64(self) -> String {
        BASE64.encode(self.value.to_be_bytes())
    }

    /// Parses the base64 form of a whole-content checksum (no `-N` suffix).
    pub fn from_base64(algorithm: ChecksumAlgorithm, s: &str) -> Option<Self> {
        let bytes: [u8; 4] = BASE64.decode(s.trim()).ok()?.try_into().ok()?;
        Some(Self {
            algorithm,
            value: u32::from_be_bytes(bytes),
        })
    }
}

/// A checksum value as an object reports it: either over the full content, or a
/// composite over `parts` part checksums (`<base64>-<parts>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrcValue {
    /// The CRC (of the content, or of the concatenated part CRCs when composite).
    pub value: u32,
    /// Number of parts when the value is composite.
    pub parts: Option<u32>,
}

impl CrcValue {
    /// Parses `AAAAAA==` or `AAAAAA==-3`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (b64, parts) = match s.rsplit_once('-') {
            Some((b, n)) => {
                let n: u32 = n.parse().ok()?;
                if n == 0 {
                    return None;
                }
                (b, Some(n))
            }
            None => (s, None),
        };
        let bytes: [u8; 4] = BASE64.decode(b64).ok()?.try_into().ok()?;
        Some(Self {
            value: u32::from_be_bytes(bytes),
            parts,
        })
    }
}

/// Streaming CRC computation; feed bytes as they pass, read the value at the end.
#[derive(Clone)]
pub struct ChecksumHasher {
    state: HasherState,
    len_bytes: u64,
}

#[derive(Clone)]
enum HasherState {
    Crc32(crc32fast::Hasher),
    Crc32c(u32),
}

impl ChecksumHasher {
    /// A hasher for `algorithm` over zero bytes.
    pub fn new(algorithm: ChecksumAlgorithm) -> Self {
        let state = match algorithm {
            ChecksumAlgorithm::Crc32 => HasherState::Crc32(crc32fast::Hasher::new()),
            ChecksumAlgorithm::Crc32c => HasherState::Crc32c(0),
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
        }
    }

    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            HasherState::Crc32(h) => h.update(data),
            HasherState::Crc32c(crc) => *crc = crc32c::crc32c_append(*crc, data),
        }
        self.len_bytes += data.len() as u64;
    }

    /// How many bytes went in; needed to [`combine`] this value with a preceding one.
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// The checksum of everything fed so far (the hasher stays usable).
    pub fn value(&self) -> Checksum {
        let value = match &self.state {
            HasherState::Crc32(h) => h.clone().finalize(),
            HasherState::Crc32c(crc) => *crc,
        };
        Checksum {
            algorithm: self.algorithm(),
            value,
        }
    }

    /// The checksum of everything fed.
    pub fn finalize(self) -> Checksum {
        self.value()
    }
}

impl fmt::Debug for ChecksumHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChecksumHasher")
            .field("algorithm", &self.algorithm())
            .field("len_bytes", &self.len_bytes)
            .finish()
    }
}

/// The CRC of `A || B` from `crc(A)`, `crc(B)` and the length of `B`.
///
/// This is how per-part CRCs become the full-object CRC without re-reading data.
pub fn combine(algorithm: ChecksumAlgorithm, crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    match algorithm {
        ChecksumAlgorithm::Crc32 => {
            let mut a = crc32fast::Hasher::new_with_initial(crc_a);
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

/// The composite checksum S3 reports for multipart objects with `COMPOSITE` checksums:
/// the CRC of the concatenated big-endian part CRCs, rendered `<base64>-<parts>`.
pub fn composite_checksum(algorithm: ChecksumAlgorithm, part_crcs: &[u32]) -> String {
    let mut h = ChecksumHasher::new(algorithm);
    for crc in part_crcs {
        h.update(&crc.to_be_bytes());
    }
    format!("{}-{}", h.finalize().to_base64(), part_crcs.len())
}

/// MD5 of `data` (the ETag of a single-part upload, and the `Content-MD5` input).
pub fn md5_digest(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
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

/// Base64 of an MD5 digest, the form of the `Content-MD5` header.
pub fn content_md5_header(digest: [u8; 16]) -> String {
    BASE64.encode(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Check values of the CRC catalogue ("123456789").
        assert_eq!(
            ChecksumAlgorithm::Crc32.checksum(b"123456789").value,
            0xCBF4_3926
        );
        assert_eq!(
            ChecksumAlgorithm::Crc32c.checksum(b"123456789").value,
            0xE306_9283
        );
        // S3 documents `x-amz-checksum-crc32` of an empty body as `AAAAAA==`.
        assert_eq!(
            ChecksumAlgorithm::Crc32.checksum(b"").to_base64(),
            "AAAAAA=="
        );
        let c = ChecksumAlgorithm::Crc32.checksum(b"123456789");
        assert_eq!(c.to_base64(), "y/Q5Jg==");
        assert_eq!(
            Checksum::from_base64(ChecksumAlgorithm::Crc32, "y/Q5Jg=="),
            Some(c)
        );
        assert_eq!(
            Checksum::from_base64(ChecksumAlgorithm::Crc32, "y/Q5"),
            None
        );
    }

    #[test]
    fn streaming_equals_one_shot() {
        for alg in [ChecksumAlgorithm::Crc32, ChecksumAlgorithm::Crc32c] {
            let mut h = ChecksumHasher::new(alg);
            h.update(b"1234");
            h.update(b"");
            h.update(b"56789");
            assert_eq!(h.len_bytes(), 9);
            assert_eq!(h.finalize(), alg.checksum(b"123456789"));
        }
    }

    #[test]
    fn combine_known_split() {
        for alg in [ChecksumAlgorithm::Crc32, ChecksumAlgorithm::Crc32c] {
            let a = alg.checksum(b"1234").value;
            let b = alg.checksum(b"56789").value;
            assert_eq!(combine(alg, a, b, 5), alg.checksum(b"123456789").value);
        }
    }

    #[test]
    fn crc_value_forms() {
        assert_eq!(
            CrcValue::parse("y/Q5Jg==-3"),
            Some(CrcValue {
                value: 0xCBF4_3926,
                parts: Some(3)
            })
        );
        assert_eq!(
            CrcValue::parse("y/Q5Jg=="),
            Some(CrcValue {
                value: 0xCBF4_3926,
                parts: None
            })
        );
        assert_eq!(CrcValue::parse("y/Q5Jg==-0"), None);
        assert_eq!(CrcValue::parse("nonsense"), None);
    }

    #[test]
    fn multipart_etag_rule() {
        // Two parts "a" and "b": md5(md5("a") || md5("b")), then "-2".
        let parts = [md5_digest(b"a"), md5_digest(b"b")];
        let mut cat = Vec::new();
        cat.extend_from_slice(&parts[0]);
        cat.extend_from_slice(&parts[1]);
        let expected = format!("{}-2", hex::encode(md5_digest(&cat)));
        assert_eq!(multipart_etag(&parts), expected);
        let etag = crate::ETag::new(format!("\"{expected}\""));
        assert!(matches!(
            etag.kind(),
            crate::ETagKind::Multipart { parts: 2, .. }
        ));
        assert_eq!(
            hex::encode(md5_digest(b"")),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(
            content_md5_header(md5_digest(b"")),
            "1B2M2Y8AsgTpgAmY7PhCfg=="
        );
    }

    #[test]
    fn composite_is_crc_of_part_crcs() {
        let parts = [1u32, 2, 3];
        let mut bytes = Vec::new();
        for p in parts {
            bytes.extend_from_slice(&p.to_be_bytes());
        }
        let whole = ChecksumAlgorithm::Crc32c.checksum(&bytes).to_base64();
        assert_eq!(
            composite_checksum(ChecksumAlgorithm::Crc32c, &parts),
            format!("{whole}-3")
        );
    }
}
