//! The on-disk journal format: the entries appended to a record since it was
//! saved, in `<id>.<generation>.journal` next to `<id>.record`.
//!
//! ```text
//! entry:  "s3j1"  len: u32 LE  crc32: u32 LE  body: len bytes
//! body:   done_bytes: u64 LE  updated_unix_ms: u64 LE  data (the rest)
//! ```
//!
//! The file is the entries back to back, with no header of its own. The CRC32
//! covers the record's generation (a u64 LE, not written in the entry), the
//! length and the body, so a torn entry, a damaged one and one written for
//! another generation all fail it.
//!
//! A crash while appending leaves at most the last entry incomplete: appends
//! are sequential and each is synced before the next begins. So an entry that
//! fails its checks is a torn tail, and ignored, when nothing valid follows
//! it; when a valid entry does follow, the journal was damaged after it was
//! written, and that is reported as corruption, never skipped over. (Telling
//! the two apart means looking for a valid entry at every later offset; the
//! magic makes that cheap, and a torn tail is short.)

use std::path::Path;

use crate::{JournalEntry, StoreError};

const MAGIC: [u8; 4] = *b"s3j1";
/// Magic, length, CRC32.
const FRAME_HEADER: usize = 12;
/// `done_bytes` and `updated_unix_ms`.
const BODY_FIXED: usize = 16;

/// The entry's bytes, framed for a journal of `generation`.
pub(crate) fn encode(
    generation: u64,
    entry: &JournalEntry,
    id: &str,
) -> Result<Vec<u8>, StoreError> {
    let len = u32::try_from(BODY_FIXED + entry.data.len()).map_err(|_| StoreError::Encode {
        id: id.to_owned(),
        reason: format!(
            "a journal entry of {} bytes is too large (at most 4 GiB)",
            entry.data.len()
        ),
    })?;
    let mut out = Vec::with_capacity(FRAME_HEADER + len as usize);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&entry.done_bytes.to_le_bytes());
    out.extend_from_slice(&entry.updated_unix_ms.to_le_bytes());
    out.extend_from_slice(&entry.data);
    let crc = checksum(generation, len, &out[FRAME_HEADER..]);
    out[8..FRAME_HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Encodes several entries back to back, as a journal file holds them.
pub(crate) fn encode_all(
    generation: u64,
    entries: &[JournalEntry],
    id: &str,
) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    for entry in entries {
        out.extend_from_slice(&encode(generation, entry, id)?);
    }
    Ok(out)
}

/// A journal file's valid entries.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// The entries, oldest first.
    pub(crate) entries: Vec<JournalEntry>,
    /// How many bytes they take; anything after them is a torn tail.
    pub(crate) valid_len: u64,
}

/// Reads a journal file's bytes for a record of `generation`. `path` is only
/// used in errors.
pub(crate) fn parse(bytes: &[u8], generation: u64, path: &Path) -> Result<Parsed, StoreError> {
    let mut entries = Vec::new();
    let mut at = 0;
    while let Some((entry, next)) = entry_at(bytes, at, generation) {
        entries.push(entry);
        at = next;
    }
    if at < bytes.len()
        && let Some(next) =
            (at + 1..bytes.len()).find(|&p| entry_at(bytes, p, generation).is_some())
    {
        return Err(StoreError::corrupt(
            path,
            format!(
                "journal entry {} (at byte {at}) is damaged, yet a valid entry follows it \
                 (at byte {next})",
                entries.len() + 1
            ),
        ));
    }
    Ok(Parsed {
        entries,
        valid_len: at as u64,
    })
}

/// The valid entry starting at `at`, and where the next one starts.
fn entry_at(bytes: &[u8], at: usize, generation: u64) -> Option<(JournalEntry, usize)> {
    let frame = bytes.get(at..)?;
    if frame.get(..4)? != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(frame.get(4..8)?.try_into().ok()?);
    let crc = u32::from_le_bytes(frame.get(8..FRAME_HEADER)?.try_into().ok()?);
    let end = FRAME_HEADER.checked_add(usize::try_from(len).ok()?)?;
    let body = frame.get(FRAME_HEADER..end)?;
    if body.len() < BODY_FIXED || checksum(generation, len, body) != crc {
        return None;
    }
    let done_bytes = u64::from_le_bytes(body[..8].try_into().ok()?);
    let updated_unix_ms = u64::from_le_bytes(body[8..BODY_FIXED].try_into().ok()?);
    let entry = JournalEntry {
        done_bytes,
        updated_unix_ms,
        data: body[BODY_FIXED..].to_vec(),
    };
    Some((entry, at + end))
}

fn checksum(generation: u64, len: u32, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&generation.to_le_bytes());
    h.update(&len.to_le_bytes());
    h.update(body);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64, data: &[u8]) -> JournalEntry {
        JournalEntry {
            done_bytes: i * 1000,
            updated_unix_ms: 1_700_000_000_000 + i,
            data: data.to_vec(),
        }
    }

    fn three() -> Vec<JournalEntry> {
        vec![
            entry(1, b"first"),
            entry(2, b""),
            entry(3, b"s3j1 looks like a magic\n\0\xff"),
        ]
    }

    fn parse_ok(bytes: &[u8], generation: u64) -> Parsed {
        parse(bytes, generation, Path::new("j")).unwrap()
    }

    #[test]
    fn round_trips() {
        let bytes = encode_all(9, &three(), "t").unwrap();
        let parsed = parse_ok(&bytes, 9);
        assert_eq!(parsed.entries, three());
        assert_eq!(parsed.valid_len, bytes.len() as u64);
        assert_eq!(parse_ok(&[], 9).entries, []);
    }

    #[test]
    fn entries_of_another_generation_are_not_taken() {
        let bytes = encode_all(9, &three(), "t").unwrap();
        let parsed = parse_ok(&bytes, 10);
        assert_eq!((parsed.entries.len(), parsed.valid_len), (0, 0));
    }

    #[test]
    fn every_truncation_of_the_last_entry_keeps_the_others() {
        let bytes = encode_all(1, &three(), "t").unwrap();
        let last_start = encode_all(1, &three()[..2], "t").unwrap().len();
        for cut in last_start..bytes.len() {
            let parsed = parse_ok(&bytes[..cut], 1);
            assert_eq!(parsed.entries, three()[..2], "cut at {cut}");
            assert_eq!(parsed.valid_len, last_start as u64);
        }
    }

    #[test]
    fn a_damaged_last_entry_is_a_torn_tail_and_a_damaged_middle_one_is_corrupt() {
        let bytes = encode_all(1, &three(), "t").unwrap();
        let second = encode_all(1, &three()[..1], "t").unwrap().len();
        let last = encode_all(1, &three()[..2], "t").unwrap().len();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            let result = parse(&bad, 1, Path::new("/s/t.1.journal"));
            if i >= last {
                assert_eq!(result.unwrap().entries, three()[..2], "flip at {i}");
            } else {
                match result {
                    Err(StoreError::Corrupt { path, reason }) => {
                        assert_eq!(path, Path::new("/s/t.1.journal"));
                        let n = if i < second { 1 } else { 2 };
                        assert!(reason.contains(&format!("entry {n} ")), "{reason}");
                    }
                    other => panic!("flip at {i} gave {other:?}"),
                }
            }
        }
    }

    #[test]
    fn zeros_after_the_entries_are_a_torn_tail() {
        // What some filesystems show after a crash that extended the file
        // but did not write it.
        let mut bytes = encode_all(1, &three(), "t").unwrap();
        let len = bytes.len() as u64;
        bytes.extend_from_slice(&[0; 100]);
        let parsed = parse_ok(&bytes, 1);
        assert_eq!((parsed.entries, parsed.valid_len), (three(), len));
    }
}
