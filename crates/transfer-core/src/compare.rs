//! Whether a local file holds what an object holds, told by hashing the file the way the
//! object's checksum or ETag was computed (`s3tm sync --checksum`). No IO: the driver
//! feeds the file's bytes in order to a [`ContentHasher`].

use s3_types::{Hasher, Md5Hasher, composite, multipart_etag};

use crate::download::conventional_part_sizes;
use crate::op::{ChecksumKind, ObjectChecksum, ObjectInfo};
use crate::{ChecksumAlgorithm, ChecksumValue};

/// How many part sizes are tried against a multipart object whose part sizes the server
/// did not tell: each is one more hash over the whole file.
const MAX_GUESSES: usize = 4;

/// One way the object's content was summed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A checksum of all the bytes.
    Whole {
        algorithm: ChecksumAlgorithm,
        value: ChecksumValue,
    },
    /// The MD5 of a single-part ETag.
    Md5 { md5: [u8; 16] },
    /// A composite checksum over parts of `part_size` bytes.
    Composite {
        algorithm: ChecksumAlgorithm,
        value: ChecksumValue,
        part_size: u64,
    },
    /// A multipart ETag over parts of `part_size` bytes.
    MultipartEtag { etag: String, part_size: u64 },
}

/// What to compute over a local file to tell whether it holds an object's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentCheck {
    size_bytes: u64,
    targets: Vec<Target>,
    /// Whether a disagreement proves the content differs (a checksum or MD5 of the
    /// whole object), or only that a guessed part size was not the one used.
    conclusive: bool,
}

/// The verdict of a [`ContentHasher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sameness {
    /// The file's hash is the object's.
    Same,
    /// The file's hash is not the object's.
    Differs,
    /// Nothing matched, but what was tried were guesses (part sizes the server did not
    /// tell), so nothing is proved; `why` says so.
    Unknown {
        /// What was tried.
        why: String,
    },
}

impl ContentCheck {
    /// What to hash for the object HeadObject (with checksum mode) described, or why its
    /// content cannot be compared: an encrypted object without a checksum, an ETag that
    /// is no MD5, a size that does not match.
    pub fn for_object(info: &ObjectInfo) -> Result<ContentCheck, String> {
        let size = info.content_length;
        let etag_parts = info.etag.multipart_parts();
        let parts = match info.checksum.map(|c| c.kind) {
            Some(ChecksumKind::Composite { parts }) => Some(parts),
            _ => etag_parts.or(info.parts_count.filter(|n| *n > 1)),
        };
        let guesses = |n: u32| -> Vec<u64> {
            let fits = |p: &u64| *p > 0 && size.div_ceil(*p) == u64::from(n);
            let mut out: Vec<u64> = info.part_size_hint().filter(fits).into_iter().collect();
            for p in conventional_part_sizes(size, n) {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
            out.truncate(MAX_GUESSES);
            out
        };
        let mut targets = Vec::new();
        let mut conclusive = false;
        if let Some(ObjectChecksum {
            algorithm,
            value,
            kind,
        }) = info.checksum
        {
            let whole = Target::Whole { algorithm, value };
            match (kind, parts) {
                (ChecksumKind::FullObject, _) => {
                    targets.push(whole);
                    conclusive = true;
                }
                (ChecksumKind::Composite { .. }, Some(n)) | (ChecksumKind::Unstated, Some(n)) => {
                    if kind == ChecksumKind::Unstated {
                        // Either kind (servers that do not say): the whole is tried too.
                        targets.push(whole);
                    }
                    targets.extend(guesses(n).into_iter().map(|part_size| Target::Composite {
                        algorithm,
                        value,
                        part_size,
                    }));
                }
                (ChecksumKind::Composite { .. }, None) => {}
                (ChecksumKind::Unstated, None) => {
                    targets.push(whole);
                    conclusive = true;
                }
            }
        }
        if targets.is_empty() && !info.etag_not_md5 {
            if let Some(md5) = info.etag.as_md5() {
                targets.push(Target::Md5 { md5 });
                conclusive = true;
            } else if let Some(n) = etag_parts {
                let etag = info.etag.unquoted().to_ascii_lowercase();
                targets.extend(
                    guesses(n)
                        .into_iter()
                        .map(|part_size| Target::MultipartEtag {
                            etag: etag.clone(),
                            part_size,
                        }),
                );
            }
        }
        if targets.is_empty() {
            return Err(if info.etag_not_md5 && info.checksum.is_none() {
                "the object is encrypted with SSE-KMS or SSE-C and has no checksum".to_owned()
            } else if info.checksum.is_none() && etag_parts.is_none() {
                "the object has no checksum and its ETag is not an MD5".to_owned()
            } else {
                "the object is multipart and none of the usual part sizes fits it".to_owned()
            });
        }
        Ok(ContentCheck {
            size_bytes: size,
            targets,
            conclusive,
        })
    }

    /// A hasher to feed the local file's bytes to, in order.
    pub fn hasher(&self) -> ContentHasher {
        ContentHasher {
            check: self.clone(),
            states: self
                .targets
                .iter()
                .map(|t| match t {
                    Target::Whole { algorithm, .. } => State::Whole(Hasher::new(*algorithm)),
                    Target::Md5 { .. } => State::Md5(Md5Hasher::new()),
                    Target::Composite {
                        algorithm,
                        part_size,
                        ..
                    } => State::Parts(Parts::new(*part_size, Some(*algorithm))),
                    Target::MultipartEtag { part_size, .. } => {
                        State::Parts(Parts::new(*part_size, None))
                    }
                })
                .collect(),
            fed: 0,
        }
    }
}

/// Computes a [`ContentCheck`]'s hashes over bytes fed in order, in one pass.
#[derive(Debug, Clone)]
pub struct ContentHasher {
    check: ContentCheck,
    states: Vec<State>,
    fed: u64,
}

#[derive(Debug, Clone)]
enum State {
    Whole(Hasher),
    Md5(Md5Hasher),
    Parts(Parts),
}

/// Hashes per part of a fixed size: a checksum (composite) or an MD5 (multipart ETag).
#[derive(Debug, Clone)]
struct Parts {
    part_size: u64,
    in_part: u64,
    crc: Option<Hasher>,
    md5: Md5Hasher,
    crcs: Vec<ChecksumValue>,
    md5s: Vec<[u8; 16]>,
}

impl Parts {
    fn new(part_size: u64, algorithm: Option<ChecksumAlgorithm>) -> Self {
        Parts {
            part_size: part_size.max(1),
            in_part: 0,
            crc: algorithm.map(Hasher::new),
            md5: Md5Hasher::new(),
            crcs: Vec::new(),
            md5s: Vec::new(),
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = (self.part_size - self.in_part).min(data.len() as u64) as usize;
            let (now, later) = data.split_at(room);
            match &mut self.crc {
                Some(h) => h.update(now),
                None => self.md5.update(now),
            }
            self.in_part += room as u64;
            data = later;
            if self.in_part == self.part_size {
                self.end_part();
            }
        }
    }

    fn end_part(&mut self) {
        match &mut self.crc {
            Some(h) => {
                let algorithm = h.algorithm();
                let done = std::mem::replace(h, Hasher::new(algorithm));
                self.crcs.push(done.value());
            }
            None => self.md5s.push(std::mem::take(&mut self.md5).finish()),
        }
        self.in_part = 0;
    }
}

impl ContentHasher {
    /// Adds the next bytes of the file.
    pub fn update(&mut self, data: &[u8]) {
        self.fed += data.len() as u64;
        for s in &mut self.states {
            match s {
                State::Whole(h) => h.update(data),
                State::Md5(h) => h.update(data),
                State::Parts(p) => p.update(data),
            }
        }
    }

    /// Whether the bytes fed are the object's content. A file of another length differs.
    pub fn verdict(self) -> Sameness {
        if self.fed != self.check.size_bytes {
            return Sameness::Differs;
        }
        let mut tried = Vec::new();
        for (target, state) in self.check.targets.iter().zip(self.states) {
            let same = match (target, state) {
                (Target::Whole { value, .. }, State::Whole(h)) => h.value() == *value,
                (Target::Md5 { md5 }, State::Md5(h)) => h.finish() == *md5,
                (
                    Target::Composite {
                        algorithm,
                        value,
                        part_size,
                    },
                    State::Parts(mut p),
                ) => {
                    if p.in_part > 0 {
                        p.end_part();
                    }
                    tried.push(*part_size);
                    composite(*algorithm, p.crcs) == *value
                }
                (Target::MultipartEtag { etag, part_size }, State::Parts(mut p)) => {
                    if p.in_part > 0 {
                        p.end_part();
                    }
                    tried.push(*part_size);
                    multipart_etag(&p.md5s) == *etag
                }
                _ => false,
            };
            if same {
                return Sameness::Same;
            }
        }
        if self.check.conclusive {
            return Sameness::Differs;
        }
        let mib: Vec<String> = tried
            .iter()
            .map(|p| format!("{} MiB", *p as f64 / (1024.0 * 1024.0)))
            .collect();
        Sameness::Unknown {
            why: format!(
                "the server did not tell the object's part sizes and none of those tried ({}) gives its hash",
                mib.join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ETag;
    use s3_types::{checksum, md5_digest};

    fn info(len: u64, etag: &str, checksum: Option<ObjectChecksum>) -> ObjectInfo {
        ObjectInfo {
            content_length: len,
            etag: ETag(format!("\"{etag}\"")),
            last_modified: None,
            checksum,
            parts_count: None,
            part_range: None,
            etag_not_md5: false,
            metadata: Vec::new(),
        }
    }

    fn judge(info: &ObjectInfo, data: &[u8]) -> Sameness {
        let mut h = ContentCheck::for_object(info).expect("comparable").hasher();
        // Fed in uneven pieces, as a file is read.
        for chunk in data.chunks(777) {
            h.update(chunk);
        }
        h.verdict()
    }

    const MIB: usize = 1024 * 1024;

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn a_single_part_etag_is_the_md5() {
        let d = data(1000, 1);
        let i = info(1000, &hex::encode(md5_digest(&d)), None);
        assert_eq!(judge(&i, &d), Sameness::Same);
        assert_eq!(judge(&i, &data(1000, 2)), Sameness::Differs);
        assert_eq!(judge(&i, &d[..999]), Sameness::Differs);
    }

    #[test]
    fn a_full_object_checksum_decides() {
        let d = data(3000, 3);
        let c = |v| ObjectChecksum {
            algorithm: ChecksumAlgorithm::Crc32c,
            value: v,
            kind: ChecksumKind::FullObject,
        };
        let i = info(
            3000,
            "abc-2",
            Some(c(checksum(ChecksumAlgorithm::Crc32c, &d))),
        );
        assert_eq!(judge(&i, &d), Sameness::Same);
        assert_eq!(judge(&i, &data(3000, 4)), Sameness::Differs);
    }

    #[test]
    fn a_multipart_etag_is_matched_at_the_part_size_s3tm_recorded_or_a_usual_one() {
        let d = data(20 * MIB + 5, 5);
        for part in [8 * MIB, 5 * MIB, 7 * MIB] {
            let md5s: Vec<[u8; 16]> = d.chunks(part).map(md5_digest).collect();
            let etag = multipart_etag(&md5s);
            let mut i = info(d.len() as u64, &etag, None);
            if part == 7 * MIB {
                // Not a usual size: found through the size s3tm records with its uploads,
                // else nothing is proved.
                let n = md5s.len() as u32;
                let unknown = judge(&i, &d);
                assert!(
                    matches!(unknown, Sameness::Unknown { .. }),
                    "{n}: {unknown:?}"
                );
                i.metadata = vec![(crate::PART_SIZE_METADATA.to_owned(), part.to_string())];
            }
            assert_eq!(judge(&i, &d), Sameness::Same, "part size {part}");
            let mut other = d.clone();
            other[MIB] ^= 1;
            assert!(matches!(judge(&i, &other), Sameness::Unknown { .. }));
        }
    }

    #[test]
    fn a_composite_checksum_is_matched_over_parts() {
        let d = data(11 * MIB, 6);
        let part = 5 * MIB;
        let value = composite(
            ChecksumAlgorithm::Crc32,
            d.chunks(part)
                .map(|c| checksum(ChecksumAlgorithm::Crc32, c)),
        );
        let c = ObjectChecksum {
            algorithm: ChecksumAlgorithm::Crc32,
            value,
            kind: ChecksumKind::Composite { parts: 3 },
        };
        let i = info(d.len() as u64, "abc-3", Some(c));
        assert_eq!(judge(&i, &d), Sameness::Same);
        let mut other = d.clone();
        other[0] ^= 1;
        assert!(matches!(judge(&i, &other), Sameness::Unknown { .. }));
    }

    #[test]
    fn what_cannot_be_compared_says_why() {
        let mut i = info(10, "not-an-md5", None);
        assert!(
            ContentCheck::for_object(&i)
                .unwrap_err()
                .contains("not an MD5")
        );
        i.etag = ETag(format!("\"{}\"", hex::encode(md5_digest(b"0123456789"))));
        i.etag_not_md5 = true;
        assert!(
            ContentCheck::for_object(&i)
                .unwrap_err()
                .contains("SSE-KMS")
        );
    }
}
