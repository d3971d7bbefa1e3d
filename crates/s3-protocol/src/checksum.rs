//! Checksums in S3's encodings: a value tagged with its algorithm, a value as an object
//! reports it (`<base64>` or `<base64>-<parts>`), and streaming computation.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

pub use s3_types::{ChecksumAlgorithm, ChecksumType, ChecksumValue, Hasher as ChecksumHasher};

/// A checksum value tagged with its algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Checksum {
    /// Which algorithm.
    pub algorithm: ChecksumAlgorithm,
    /// The value.
    pub value: ChecksumValue,
}

impl Checksum {
    /// The checksum of `data` in one call.
    pub fn of(algorithm: ChecksumAlgorithm, data: &[u8]) -> Self {
        Self {
            algorithm,
            value: s3_types::checksum(algorithm, data),
        }
    }

    /// The header/XML form: base64 of the value's bytes.
    pub fn to_base64(self) -> String {
        self.value.to_base64()
    }

    /// Parses the base64 form of a whole-content checksum (no `-N` suffix); `None` unless
    /// it has the algorithm's length.
    pub fn from_base64(algorithm: ChecksumAlgorithm, s: &str) -> Option<Self> {
        let value = ChecksumValue::from_base64(s).filter(|v| v.fits(algorithm))?;
        Some(Self { algorithm, value })
    }
}

/// A checksum value as an object reports it: either over the full content, or a
/// composite over `parts` part checksums (`<base64>-<parts>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrcValue {
    /// The value (of the content, or of the concatenated part values when composite).
    pub value: ChecksumValue,
    /// Number of parts when the value is composite.
    pub parts: Option<u32>,
}

impl CrcValue {
    /// Parses `AAAAAA==` or `AAAAAA==-3` as a value of `algorithm`.
    pub fn parse(algorithm: ChecksumAlgorithm, s: &str) -> Option<Self> {
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
        let value = ChecksumValue::from_base64(b64).filter(|v| v.fits(algorithm))?;
        Some(Self { value, parts })
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
            ChecksumValue::from_u32(0xCBF4_3926)
        );
        assert_eq!(
            Checksum::of(ChecksumAlgorithm::Crc32c, b"123456789").value,
            ChecksumValue::from_u32(0xE306_9283)
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
        // A CRC32's four bytes are no CRC64NVME.
        assert_eq!(
            Checksum::from_base64(ChecksumAlgorithm::Crc64Nvme, "y/Q5Jg=="),
            None
        );
    }

    #[test]
    fn streaming_equals_one_shot() {
        for alg in ChecksumAlgorithm::ALL {
            let mut h = ChecksumHasher::new(alg);
            h.update(b"1234");
            h.update(b"");
            h.update(b"56789");
            assert_eq!(h.len_bytes(), 9);
            assert_eq!(h.value(), Checksum::of(alg, b"123456789").value);
        }
    }

    #[test]
    fn crc_value_forms() {
        let crc32 = ChecksumAlgorithm::Crc32;
        let value = ChecksumValue::from_u32(0xCBF4_3926);
        assert_eq!(
            CrcValue::parse(crc32, "y/Q5Jg==-3"),
            Some(CrcValue {
                value,
                parts: Some(3)
            })
        );
        assert_eq!(
            CrcValue::parse(crc32, "y/Q5Jg=="),
            Some(CrcValue { value, parts: None })
        );
        assert_eq!(CrcValue::parse(crc32, "y/Q5Jg==-0"), None);
        assert_eq!(CrcValue::parse(crc32, "nonsense"), None);
        assert_eq!(CrcValue::parse(ChecksumAlgorithm::Sha256, "y/Q5Jg=="), None);
    }

    #[test]
    fn content_md5_form() {
        assert_eq!(
            content_md5_header(md5_digest(b"")),
            "1B2M2Y8AsgTpgAmY7PhCfg=="
        );
    }
}
