//! CRC32/CRC32C checksums in S3's encodings, CRC combination and the multipart ETag rule.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

pub use s3_types::{ChecksumAlgorithm, ChecksumType};

/// A CRC value tagged with its algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Checksum {
    /// Which CRC.
    pub algorithm: ChecksumAlgorithm,
    /// The CRC value.
    pub value: u32,
}

impl Checksum {
    /// The checksum of `data` in one call.
    pub fn of(algorithm: ChecksumAlgorithm, data: &[u8]) -> Self {
        Self {
            algorithm,
            value: s3_types::checksum(algorithm, data),
        }
    }

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

    /// How many bytes went in; needed to combine this value with a preceding one
    /// ([`s3_types::combine`]).
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

/// Base64 of an MD5 digest, the form of the `Content-MD5` header.
pub fn content_md5_header(digest: [u8; 16]) -> String {
    BASE64.encode(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3_types::md5_digest;

    #[test]
    fn known_values() {
        // Check values of the CRC catalogue ("123456789").
        assert_eq!(
            Checksum::of(ChecksumAlgorithm::Crc32, b"123456789").value,
            0xCBF4_3926
        );
        assert_eq!(
            Checksum::of(ChecksumAlgorithm::Crc32c, b"123456789").value,
            0xE306_9283
        );
        // S3 documents `x-amz-checksum-crc32` of an empty body as `AAAAAA==`.
        assert_eq!(
            Checksum::of(ChecksumAlgorithm::Crc32, b"").to_base64(),
            "AAAAAA=="
        );
        let c = Checksum::of(ChecksumAlgorithm::Crc32, b"123456789");
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
            assert_eq!(h.finalize(), Checksum::of(alg, b"123456789"));
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
    fn content_md5_form() {
        assert_eq!(
            content_md5_header(md5_digest(b"")),
            "1B2M2Y8AsgTpgAmY7PhCfg=="
        );
    }
}
