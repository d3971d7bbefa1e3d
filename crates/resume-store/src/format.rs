//! The on-disk record format.
//!
//! ```text
//! s3tm-resume-store 1 crc32=89abcdef len=1234\n   header, ASCII
//! {"meta":{...},"payload_version":3,"payload_bytes":1000}\n   one JSON line
//! <payload bytes, verbatim>
//! ```
//!
//! `len` counts everything after the header line, so truncation is caught
//! before the checksum is even computed. The CRC32 covers the format version
//! and every byte after the header. The metadata is a JSON line so `head -2`
//! shows what a record is; the payload is stored raw so a 10,000-part
//! checkpoint is not inflated by an encoding.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Record, RecordMeta, RecordSummary, StoreError, TransferId};

/// The newest record format this build writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;

const MAGIC: &str = "s3tm-resume-store";

// Generous for "<magic> <u32> crc32=<8 hex> len=<u64>\n", small enough that a
// file without a header line is rejected without scanning all of it.
const MAX_HEADER_BYTES: usize = 128;

#[derive(Serialize)]
struct MetaLineRef<'a> {
    meta: &'a RecordMeta,
    payload_version: u32,
    payload_bytes: u64,
}

#[derive(Deserialize)]
struct MetaLine {
    meta: RecordMeta,
    payload_version: u32,
    payload_bytes: u64,
}

pub(crate) fn encode(record: &Record) -> Result<Vec<u8>, StoreError> {
    let line = MetaLineRef {
        meta: &record.meta,
        payload_version: record.payload_version,
        payload_bytes: record.payload.len() as u64,
    };
    let mut body = serde_json::to_vec(&line).map_err(|e| StoreError::Encode {
        id: record.meta.id.to_string(),
        reason: e.to_string(),
    })?;
    body.push(b'\n');
    body.extend_from_slice(&record.payload);

    let header = format!(
        "{MAGIC} {FORMAT_VERSION} crc32={:08x} len={}\n",
        checksum(FORMAT_VERSION, &body),
        body.len()
    );
    let mut out = Vec::with_capacity(header.len() + body.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a record file's bytes. `path` is only used in errors; `expected`
/// is the id the file is named after, which its contents must agree with.
pub(crate) fn decode(
    bytes: &[u8],
    path: &Path,
    expected: &TransferId,
) -> Result<Record, StoreError> {
    let corrupt = |reason: String| StoreError::corrupt(path, reason);

    if bytes.is_empty() {
        return Err(corrupt("the file is empty".into()));
    }
    let Some(nl) = bytes
        .iter()
        .take(MAX_HEADER_BYTES)
        .position(|&b| b == b'\n')
    else {
        return Err(corrupt(
            "no header line; not an s3tm checkpoint, or truncated".into(),
        ));
    };
    let header =
        std::str::from_utf8(&bytes[..nl]).map_err(|_| corrupt("the header is not text".into()))?;
    let body = &bytes[nl + 1..];

    let mut fields = header.split(' ');
    if fields.next() != Some(MAGIC) {
        return Err(corrupt(format!(
            "unknown header {header:?}; not an s3tm checkpoint"
        )));
    }
    // The version is judged before anything else: a newer format may lay out
    // the rest of the header differently.
    let version: u32 = fields
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt(format!("bad format version in header {header:?}")))?;
    if version > FORMAT_VERSION {
        return Err(StoreError::NewerVersion {
            path: path.to_owned(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if version == 0 {
        return Err(corrupt("format version 0 does not exist".into()));
    }

    let crc = fields
        .next()
        .and_then(|f| f.strip_prefix("crc32="))
        .filter(|h| h.len() == 8)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| corrupt(format!("bad checksum field in header {header:?}")))?;
    let len: u64 = fields
        .next()
        .and_then(|f| f.strip_prefix("len="))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| corrupt(format!("bad length field in header {header:?}")))?;
    if fields.next().is_some() {
        return Err(corrupt(format!("unexpected fields in header {header:?}")));
    }

    if body.len() as u64 != len {
        return Err(corrupt(format!(
            "the header announces {len} bytes of content but the file has {}; \
             it was probably truncated",
            body.len()
        )));
    }
    let actual = checksum(version, body);
    if actual != crc {
        return Err(corrupt(format!(
            "checksum mismatch (header says {crc:08x}, content has {actual:08x})"
        )));
    }

    let Some(nl) = body.iter().position(|&b| b == b'\n') else {
        return Err(corrupt("the metadata line is missing".into()));
    };
    let line: MetaLine = serde_json::from_slice(&body[..nl])
        .map_err(|e| corrupt(format!("unreadable metadata: {e}")))?;
    let payload = &body[nl + 1..];
    if payload.len() as u64 != line.payload_bytes {
        return Err(corrupt(format!(
            "the metadata announces a {}-byte payload but {} bytes follow",
            line.payload_bytes,
            payload.len()
        )));
    }
    if &line.meta.id != expected {
        return Err(corrupt(format!(
            "it holds transfer {} but is named for transfer {expected}",
            line.meta.id
        )));
    }
    Ok(Record {
        meta: line.meta,
        payload_version: line.payload_version,
        payload: payload.to_vec(),
    })
}

pub(crate) fn summarize(record: Record) -> RecordSummary {
    RecordSummary {
        payload_bytes: record.payload.len() as u64,
        payload_version: record.payload_version,
        meta: record.meta,
    }
}

fn checksum(version: u32, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&version.to_le_bytes());
    h.update(body);
    h.finalize()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::{Direction, TransferState};

    pub(crate) fn sample(id: &str, payload: Vec<u8>) -> Record {
        Record {
            meta: RecordMeta {
                id: TransferId::new(id).unwrap(),
                direction: Direction::Upload,
                bucket: "bucket".into(),
                key: "dir/key with spaces\n and newline".into(),
                local_path: PathBuf::from("/home/u/file.bin"),
                done_bytes: 5,
                total_bytes: 10,
                created_unix_ms: 1_700_000_000_000,
                updated_unix_ms: 1_700_000_000_500,
                state: TransferState::Paused,
            },
            payload_version: 7,
            payload,
        }
    }

    fn id(s: &str) -> TransferId {
        TransferId::new(s).unwrap()
    }

    fn reason(err: StoreError) -> String {
        match err {
            StoreError::Corrupt { reason, .. } => reason,
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn round_trips_including_binary_payload() {
        let rec = sample("t1", (0..=255u8).chain(*b"\n\n{").collect());
        let bytes = encode(&rec).unwrap();
        assert_eq!(decode(&bytes, Path::new("f"), &id("t1")).unwrap(), rec);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("s3tm-resume-store 1 crc32="), "{text}");
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let rec = sample("t1", b"payload".to_vec());
        let bytes = encode(&rec).unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            match decode(&bad, Path::new("f"), &id("t1")) {
                Err(StoreError::Corrupt { .. }) => {}
                // Flipping the version digit '1' to '0' lands on "version 0".
                other => panic!("flip at {i} gave {other:?}"),
            }
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = encode(&sample("t1", b"payload".to_vec())).unwrap();
        for n in 0..bytes.len() {
            assert!(
                matches!(
                    decode(&bytes[..n], Path::new("f"), &id("t1")),
                    Err(StoreError::Corrupt { .. })
                ),
                "truncation to {n} bytes went unnoticed"
            );
        }
    }

    #[test]
    fn trailing_garbage_is_detected() {
        let mut bytes = encode(&sample("t1", b"payload".to_vec())).unwrap();
        bytes.extend_from_slice(b"xx");
        assert!(
            reason(decode(&bytes, Path::new("f"), &id("t1")).unwrap_err()).contains("truncated")
        );
    }

    #[test]
    fn newer_version_is_refused_before_anything_else() {
        let bytes = b"s3tm-resume-store 2 whatever the future holds\n...";
        match decode(bytes, Path::new("/s/t1.record"), &id("t1")) {
            Err(StoreError::NewerVersion {
                path,
                found: 2,
                supported: 1,
            }) => {
                assert_eq!(path, Path::new("/s/t1.record"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn record_under_the_wrong_name_is_corrupt() {
        let bytes = encode(&sample("t1", vec![])).unwrap();
        assert!(
            reason(decode(&bytes, Path::new("f"), &id("t2")).unwrap_err()).contains("named for")
        );
    }

    #[test]
    fn foreign_files_are_corrupt() {
        for junk in [
            &b"{\"json\": true}\n"[..],
            b"\x00\x01\x02",
            b"s3tm-resume-store",
        ] {
            reason(decode(junk, Path::new("f"), &id("t1")).unwrap_err());
        }
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_local_path_round_trips() {
        use std::os::unix::ffi::OsStringExt;
        let mut rec = sample("t1", vec![1]);
        rec.meta.local_path =
            PathBuf::from(std::ffi::OsString::from_vec(b"/tmp/\xff\xfe".to_vec()));
        let bytes = encode(&rec).unwrap();
        assert_eq!(decode(&bytes, Path::new("f"), &id("t1")).unwrap(), rec);
    }

    #[test]
    fn unknown_state_survives() {
        let mut rec = sample("t1", vec![]);
        rec.meta.state = TransferState::Other("verifying".into());
        let bytes = encode(&rec).unwrap();
        assert_eq!(decode(&bytes, Path::new("f"), &id("t1")).unwrap(), rec);
    }
}
