//! The on-disk record format.
//!
//! ```text
//! s3tm-resume-store 2 crc32=89abcdef len=1234 gen=7\n   header, ASCII
//! {"meta":{...},"payload_version":3,"payload_bytes":1000}\n   one JSON line
//! <payload bytes, verbatim>
//! ```
//!
//! `len` counts everything after the header line, so truncation is caught
//! before the checksum is even computed. The CRC32 covers the format version,
//! the generation and every byte after the header. The metadata is a JSON line
//! so `head -2` shows what a record is; the payload is stored raw so a
//! 10,000-part checkpoint is not inflated by an encoding.
//!
//! `gen` names the record's journal, `<id>.<gen>.journal` (see
//! [`crate::journal`]); every save writes a record of a new generation, so a
//! journal left over from an older one is never taken for the current one.
//! It is in the header so that an append can learn it without reading the
//! payload.
//!
//! Format 1 had no `gen` field (`s3tm-resume-store 1 crc32=.. len=..`) and a
//! CRC32 over the version and the content only; such records still load, as
//! generation 0.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Record, RecordMeta, StoreError, TransferId};

/// The newest record format this build writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 2;

/// The generation of records of format 1, which had no journal of their own.
pub(crate) const FORMAT_1_GENERATION: u64 = 0;

const MAGIC: &str = "s3tm-resume-store";

// Generous for "<magic> <u32> crc32=<8 hex> len=<u64> gen=<u64>\n", small
// enough that a file without a header line is rejected without scanning all
// of it.
pub(crate) const MAX_HEADER_BYTES: usize = 128;

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

/// Encodes `record` (its journal aside: that lives in its own file) as a
/// record of generation `generation`.
pub(crate) fn encode(record: &Record, generation: u64) -> Result<Vec<u8>, StoreError> {
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
        "{MAGIC} {FORMAT_VERSION} crc32={:08x} len={} gen={generation}\n",
        checksum(FORMAT_VERSION, generation, &body),
        body.len()
    );
    let mut out = Vec::with_capacity(header.len() + body.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// What a record's header line says.
struct Header {
    version: u32,
    crc: u32,
    len: u64,
    generation: u64,
    /// Where the content after the header line starts.
    content_start: usize,
}

/// Parses the header line at the start of `bytes` (which may hold only the
/// start of a record file). A version newer than this build's is refused
/// before anything else: a newer format may lay out the rest differently.
fn header(bytes: &[u8], path: &Path) -> Result<Header, StoreError> {
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

    let mut fields = header.split(' ');
    if fields.next() != Some(MAGIC) {
        return Err(corrupt(format!(
            "unknown header {header:?}; not an s3tm checkpoint"
        )));
    }
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
    let generation = if version == 1 {
        FORMAT_1_GENERATION
    } else {
        fields
            .next()
            .and_then(|f| f.strip_prefix("gen="))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| corrupt(format!("bad generation field in header {header:?}")))?
    };
    if fields.next().is_some() {
        return Err(corrupt(format!("unexpected fields in header {header:?}")));
    }
    Ok(Header {
        version,
        crc,
        len,
        generation,
        content_start: nl + 1,
    })
}

/// The generation named by the header of a record file, from the first
/// [`MAX_HEADER_BYTES`] bytes of it (or all of it, if shorter). Only the
/// header is checked, not the content: that is `decode`'s job.
pub(crate) fn generation(start: &[u8], path: &Path) -> Result<u64, StoreError> {
    header(start, path).map(|h| h.generation)
}

/// Decodes a record file's bytes into the record (with an empty journal) and
/// its generation. `path` is only used in errors; `expected` is the id the
/// file is named after, which its contents must agree with.
pub(crate) fn decode(
    bytes: &[u8],
    path: &Path,
    expected: &TransferId,
) -> Result<(Record, u64), StoreError> {
    let corrupt = |reason: String| StoreError::corrupt(path, reason);
    let Header {
        version,
        crc,
        len,
        generation,
        content_start,
    } = header(bytes, path)?;
    let body = &bytes[content_start..];

    if body.len() as u64 != len {
        return Err(corrupt(format!(
            "the header announces {len} bytes of content but the file has {}; \
             it was probably truncated",
            body.len()
        )));
    }
    let actual = checksum(version, generation, body);
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
    let record = Record {
        meta: line.meta,
        payload_version: line.payload_version,
        payload: payload.to_vec(),
        journal: Vec::new(),
    };
    Ok((record, generation))
}

fn checksum(version: u32, generation: u64, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&version.to_le_bytes());
    // Format 1 had no generation; from format 2 on it is covered, so a flipped
    // digit cannot silently point a record at another journal.
    if version >= 2 {
        h.update(&generation.to_le_bytes());
    }
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
                kind: Default::default(),
            },
            payload_version: 7,
            payload,
            journal: Vec::new(),
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

    fn round_trip(rec: &Record) -> Record {
        let bytes = encode(rec, 3).unwrap();
        let (back, generation) = decode(&bytes, Path::new("f"), &rec.meta.id).unwrap();
        assert_eq!(generation, 3);
        back
    }

    #[test]
    fn round_trips_including_binary_payload() {
        let rec = sample("t1", (0..=255u8).chain(*b"\n\n{").collect());
        assert_eq!(round_trip(&rec), rec);
        let bytes = encode(&rec, 12_345).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("s3tm-resume-store 2 crc32="), "{text}");
        assert!(
            text.lines().next().unwrap().ends_with(" gen=12345"),
            "{text}"
        );
        assert_eq!(
            generation(&bytes[..40], Path::new("f")).ok(),
            None,
            "no header line yet"
        );
        assert_eq!(
            generation(&bytes[..MAX_HEADER_BYTES], Path::new("f")).ok(),
            Some(12_345)
        );
    }

    #[test]
    fn a_format_1_record_decodes_as_generation_0() {
        let mut body = br#"{"meta":{"id":"t1","direction":"upload","bucket":"b","key":"k","local_path":"/f","done_bytes":1,"total_bytes":2,"created_unix_ms":3,"updated_unix_ms":4,"state":"paused"},"payload_version":5,"payload_bytes":2}"#.to_vec();
        body.extend_from_slice(b"\nhi");
        let mut h = crc32fast::Hasher::new();
        h.update(&1u32.to_le_bytes());
        h.update(&body);
        let mut bytes =
            format!("{MAGIC} 1 crc32={:08x} len={}\n", h.finalize(), body.len()).into_bytes();
        bytes.extend_from_slice(&body);
        let (rec, generation) = decode(&bytes, Path::new("f"), &id("t1")).unwrap();
        assert_eq!((rec.payload.as_slice(), generation), (&b"hi"[..], 0));
        assert!(rec.journal.is_empty());
        // A format 1 header with a generation is not format 1.
        let text = String::from_utf8(bytes.clone()).unwrap_or_default();
        let with_gen = text.replacen('\n', " gen=0\n", 1);
        assert!(decode(with_gen.as_bytes(), Path::new("f"), &id("t1")).is_err());
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let rec = sample("t1", b"payload".to_vec());
        let bytes = encode(&rec, 7).unwrap();
        let version_digit = MAGIC.len() + 1;
        assert_eq!(bytes[version_digit], b'2');
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            match decode(&bad, Path::new("f"), &id("t1")) {
                Err(StoreError::Corrupt { .. }) => {}
                // Flipping the version digit '2' lands on '3', a newer format.
                Err(StoreError::NewerVersion { found: 3, .. }) if i == version_digit => {}
                other => panic!("flip at {i} gave {other:?}"),
            }
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = encode(&sample("t1", b"payload".to_vec()), 1).unwrap();
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
        let mut bytes = encode(&sample("t1", b"payload".to_vec()), 1).unwrap();
        bytes.extend_from_slice(b"xx");
        assert!(
            reason(decode(&bytes, Path::new("f"), &id("t1")).unwrap_err()).contains("truncated")
        );
    }

    #[test]
    fn newer_version_is_refused_before_anything_else() {
        let bytes = b"s3tm-resume-store 3 whatever the future holds\n...";
        assert!(matches!(
            generation(bytes, Path::new("/s/t1.record")),
            Err(StoreError::NewerVersion { found: 3, .. })
        ));
        match decode(bytes, Path::new("/s/t1.record"), &id("t1")) {
            Err(StoreError::NewerVersion {
                path,
                found: 3,
                supported: 2,
            }) => {
                assert_eq!(path, Path::new("/s/t1.record"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn record_under_the_wrong_name_is_corrupt() {
        let bytes = encode(&sample("t1", vec![]), 1).unwrap();
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
        assert_eq!(round_trip(&rec), rec);
    }

    #[test]
    fn unknown_state_survives() {
        let mut rec = sample("t1", vec![]);
        rec.meta.state = TransferState::Other("verifying".into());
        assert_eq!(round_trip(&rec), rec);
    }
}
