use md5::{Digest, Md5};

use crate::ChecksumAlgorithm;

/// The checksum of `data` under `alg` (used for composite checksums, which are a
/// checksum of the parts' checksums).
pub(crate) fn checksum_of(alg: ChecksumAlgorithm, data: &[u8]) -> u32 {
    match alg {
        ChecksumAlgorithm::Crc32 => crc32fast::hash(data),
        ChecksumAlgorithm::Crc32c => crc32c::crc32c(data),
    }
}

/// The checksum of `A ‖ B` from the checksums of `A` and `B` and the length of `B`.
pub fn combine_checksums(alg: ChecksumAlgorithm, crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    match alg {
        ChecksumAlgorithm::Crc32 => {
            let mut a = crc32fast::Hasher::new_with_initial_len(crc_a, 0);
            let b = crc32fast::Hasher::new_with_initial_len(crc_b, len_b);
            a.combine(&b);
            a.finalize()
        }
        ChecksumAlgorithm::Crc32c => {
            // crc32c takes the length as usize; lengths beyond it cannot occur in memory,
            // and a part or range is at most 5 GiB, which fits on every 64-bit target.
            let len = usize::try_from(len_b).unwrap_or(usize::MAX);
            crc32c::crc32c_combine(crc_a, crc_b, len)
        }
    }
}

/// Folds `(checksum, length)` pieces, in order, into the checksum of their concatenation.
pub(crate) fn combine_all(
    alg: ChecksumAlgorithm,
    pieces: impl IntoIterator<Item = (u32, u64)>,
) -> u32 {
    pieces
        .into_iter()
        .fold(checksum_of(alg, &[]), |acc, (crc, len)| {
            combine_checksums(alg, acc, crc, len)
        })
}

/// The composite checksum S3 reports for a multipart object: the checksum of the
/// big-endian concatenation of its parts' checksums.
pub(crate) fn composite_checksum(
    alg: ChecksumAlgorithm,
    parts: impl IntoIterator<Item = u32>,
) -> u32 {
    let bytes: Vec<u8> = parts.into_iter().flat_map(u32::to_be_bytes).collect();
    checksum_of(alg, &bytes)
}

/// The ETag S3 gives a multipart object: MD5 of the parts' binary MD5s, then `-N`.
pub fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    let mut h = Md5::new();
    for m in part_md5s {
        h.update(m);
    }
    format!("{}-{}", hex::encode(h.finalize()), part_md5s.len())
}

/// MD5 of the empty string, the ETag of an empty single-part object.
pub(crate) fn md5_of_nothing() -> [u8; 16] {
    Md5::digest([]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_matches_whole() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        for alg in [ChecksumAlgorithm::Crc32, ChecksumAlgorithm::Crc32c] {
            let whole = checksum_of(alg, &data);
            let pieces = data
                .chunks(777)
                .map(|c| (checksum_of(alg, c), c.len() as u64));
            assert_eq!(combine_all(alg, pieces), whole, "{alg}");
        }
    }

    #[test]
    fn multipart_etag_of_known_parts() {
        let a: [u8; 16] = Md5::digest(b"hello").into();
        let b: [u8; 16] = Md5::digest(b"world").into();
        let mut cat = a.to_vec();
        cat.extend_from_slice(&b);
        let expected = format!("{}-2", hex::encode(Md5::digest(&cat)));
        assert_eq!(multipart_etag(&[a, b]), expected);
        assert_eq!(
            hex::encode(md5_of_nothing()),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
    }
}
