//! Local bytes: where uploads read from and downloads write to. File IO runs on the
//! blocking pool with positioned reads and writes, so parts never share a cursor.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::IoSlice;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use md5_many::Md5State;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use transfer_core::{
    ByteRange, ChecksumValue, Failure, FailureKind, FileHashes, SourceFingerprint,
};

use crate::{Error, ErrorKind};

/// What identifies the current version of the file at `path`.
pub(crate) fn fingerprint(path: &Path) -> std::io::Result<SourceFingerprint> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let modified_unix_nanos = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    Ok(SourceFingerprint {
        path: path.display().to_string(),
        size_bytes: meta.len(),
        modified_unix_nanos,
        inode: Some(meta.ino()),
        changed_unix_nanos: Some(
            meta.ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.ctime_nsec()),
        ),
    })
}

fn local_failure(what: &str, e: &std::io::Error) -> Failure {
    let hint = match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            " (free some disk space first)"
        }
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            " (check the permissions of the file and its directory)"
        }
        _ => "",
    };
    Failure::new(FailureKind::LocalIo, format!("{what}: {e}{hint}"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Failure::new(FailureKind::LocalIo, format!("blocking task failed: {e}")))
}

/// Where an upload's bytes come from.
pub(crate) enum Source {
    /// A file, checked against its fingerprint around every read.
    File {
        file: Arc<File>,
        path: PathBuf,
        fingerprint: SourceFingerprint,
        buffers: BufferPool,
    },
    /// Bytes in memory.
    Bytes(Bytes),
    /// A stream read once, front to back; parts in flight are kept until acknowledged.
    Reader(tokio::sync::Mutex<ReaderWindow>),
    /// A stream of unknown length (a pipe), read by the machine's `ReadStream`
    /// operations, one range after the other.
    Stream(tokio::sync::Mutex<StreamParts>),
}

/// The ranges of a stream of unknown length read so far and not yet acknowledged: each
/// is held on its own, from its `ReadStream` until the server has it, so a slow part
/// keeps only its own bytes, not every part read after it.
pub(crate) struct StreamParts {
    reader: Box<dyn AsyncRead + Send + Unpin>,
    /// Bytes taken from the reader so far.
    taken: u64,
    /// The bytes of each range read, by start.
    held: BTreeMap<u64, Bytes>,
    /// The range being read, its buffer and how much of it is filled: kept here rather
    /// than in the read's future, so that a read cut short (paused, say) loses no byte of
    /// the stream.
    reading: Option<(u64, PooledBuf, usize)>,
    /// Part buffers, reused as parts are acknowledged.
    buffers: BufferPool,
}

/// Part buffers of an upload (from a file or a stream), reused: a fresh 8 MiB buffer per
/// part costs zeroing and page faults, and the allocator keeps freed ones in per-thread
/// pools, so memory would grow with the file's size (or, for a pipe, wander far above the
/// budget from one run to the next) instead of staying at parts in flight × part size.
#[derive(Clone, Default)]
pub(crate) struct BufferPool(Arc<Mutex<Vec<Vec<u8>>>>);

/// A buffer that goes back to its pool when the last `Bytes` made from it is dropped.
pub(crate) struct PooledBuf {
    buf: Vec<u8>,
    pool: BufferPool,
}

impl BufferPool {
    /// A buffer of exactly `len` bytes (contents unspecified).
    fn take(&self, len: usize) -> PooledBuf {
        let reused = self.0.lock().ok().and_then(|mut v| v.pop());
        let mut buf = reused.unwrap_or_default();
        // Only the last part is shorter; resizing keeps what was there and writes at most
        // the growth.
        buf.resize(len, 0);
        PooledBuf {
            buf,
            pool: self.clone(),
        }
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl AsMut<[u8]> for PooledBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Ok(mut pool) = self.pool.0.lock()
            && pool.len() < 64
        {
            pool.push(std::mem::take(&mut self.buf));
        }
    }
}

/// What has been read of a reader of known length and not yet acknowledged by the
/// server: each range's bytes on their own, so a range acknowledged is forgotten at once,
/// whatever is still held before it (a part retried for minutes holds its own bytes, not
/// every part read since).
pub(crate) struct ReaderWindow {
    reader: Box<dyn AsyncRead + Send + Unpin>,
    /// Bytes read from the reader so far.
    taken: u64,
    /// Bytes read and not released, by offset: the ranges asked for, and the bytes
    /// between them read on the way to a later range.
    held: BTreeMap<u64, Bytes>,
    /// Buffers of what is read, reused once released.
    buffers: BufferPool,
}

/// Reads from `reader` into `buf` after its first `filled` bytes until `buf` is full or
/// the reader ends. `filled` counts each read as it lands, so a read cut short (its
/// future dropped) loses no byte.
async fn fill(
    reader: &mut (dyn AsyncRead + Send + Unpin),
    buf: &mut [u8],
    filled: &mut usize,
) -> Result<(), Failure> {
    while *filled < buf.len() {
        let n = reader
            .read(&mut buf[*filled..])
            .await
            .map_err(|e| local_failure("reading the upload stream", &e))?;
        if n == 0 {
            break;
        }
        *filled += n;
    }
    Ok(())
}

impl ReaderWindow {
    /// Reads on until `end`; what is read is held as one piece from where it starts.
    async fn read_to(&mut self, end: u64) -> Result<(), Failure> {
        if self.taken >= end {
            return Ok(());
        }
        let start = self.taken;
        let want = usize::try_from(end - start).unwrap_or(usize::MAX);
        let mut buf = self.buffers.take(want);
        let mut filled = 0;
        fill(&mut *self.reader, buf.as_mut(), &mut filled).await?;
        if filled < want {
            return Err(Failure::new(
                FailureKind::SourceChanged,
                "the stream ended before the announced size",
            ));
        }
        self.taken = end;
        self.held.insert(start, Bytes::from_owner(buf));
        Ok(())
    }

    /// Splits the piece held across `at`, if one is, so that `at` starts a piece.
    fn cut(&mut self, at: u64) {
        let Some((&start, piece)) = self.held.range(..at).next_back() else {
            return;
        };
        let end = start + piece.len() as u64;
        if at < end {
            let mut head = piece.clone();
            let tail = head.split_off((at - start) as usize);
            self.held.insert(start, head);
            self.held.insert(at, tail);
        }
    }

    /// The bytes of `range`, held until [`release`](Self::release).
    async fn read(&mut self, range: ByteRange) -> Result<Bytes, Failure> {
        self.read_to(range.end).await?;
        self.cut(range.start);
        self.cut(range.end);
        let pieces: Vec<&Bytes> = self
            .held
            .range(range.start..range.end)
            .map(|(_, b)| b)
            .collect();
        let held: u64 = pieces.iter().map(|b| b.len() as u64).sum();
        if held != range.len_bytes() {
            return Err(Failure::new(
                FailureKind::Other,
                "a streamed part was asked for again after it was released",
            ));
        }
        Ok(match pieces.as_slice() {
            [one] => Bytes::clone(one),
            many => {
                let mut whole = BytesMut::with_capacity(held as usize);
                for piece in many {
                    whole.extend_from_slice(piece);
                }
                whole.freeze()
            }
        })
    }

    /// Forgets the bytes of `range`.
    fn release(&mut self, range: ByteRange) {
        self.cut(range.start);
        self.cut(range.end);
        let keys: Vec<u64> = self
            .held
            .range(range.start..range.end)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.held.remove(&k);
        }
    }

    #[cfg(test)]
    fn held_bytes(&self) -> u64 {
        self.held.values().map(|b| b.len() as u64).sum()
    }
}

impl Source {
    pub(crate) fn open_file(path: &Path, fp: SourceFingerprint) -> std::io::Result<Source> {
        let file = File::open(path)?;
        Ok(Source::File {
            file: Arc::new(file),
            path: path.to_owned(),
            fingerprint: fp,
            buffers: BufferPool::default(),
        })
    }

    pub(crate) fn reader(reader: Box<dyn AsyncRead + Send + Unpin>) -> Source {
        Source::Reader(tokio::sync::Mutex::new(ReaderWindow {
            reader,
            taken: 0,
            held: BTreeMap::new(),
            buffers: BufferPool::default(),
        }))
    }

    pub(crate) fn stream(reader: Box<dyn AsyncRead + Send + Unpin>) -> Source {
        Source::Stream(tokio::sync::Mutex::new(StreamParts {
            reader,
            taken: 0,
            held: BTreeMap::new(),
            reading: None,
            buffers: BufferPool::default(),
        }))
    }

    /// Reads `range` of a stream (every byte before it was read already), or as much of
    /// it as the stream still holds, and holds it until [`release`](Self::release);
    /// returns how many bytes that is. Bytes held for a range starting where this one
    /// does (the first read, up to the multipart threshold) are used first.
    pub(crate) async fn read_stream(&self, range: ByteRange) -> Result<u64, Failure> {
        let Source::Stream(parts) = self else {
            return Err(Failure::new(
                FailureKind::Other,
                "ReadStream on a source that is not a stream",
            ));
        };
        let mut guard = parts.lock().await;
        let s = &mut *guard;
        let want = usize::try_from(range.len_bytes()).unwrap_or(usize::MAX);
        if !matches!(&s.reading, Some((start, ..)) if *start == range.start) {
            let mut buf = s.buffers.take(want);
            let mut filled = 0;
            if let Some(mut head) = s.held.remove(&range.start) {
                if head.len() >= want {
                    let rest = head.split_off(want);
                    if !rest.is_empty() {
                        s.held.insert(range.end, rest);
                    }
                    s.held.insert(range.start, head);
                    return Ok(range.len_bytes());
                }
                buf.as_mut()[..head.len()].copy_from_slice(&head);
                filled = head.len();
            }
            if range.start + filled as u64 != s.taken {
                return Err(Failure::new(
                    FailureKind::Other,
                    format!(
                        "the stream was asked for {range} after {} bytes were read",
                        s.taken
                    ),
                ));
            }
            s.reading = Some((range.start, buf, filled));
        }
        let Some((_, buf, filled)) = s.reading.as_mut() else {
            return Ok(0);
        };
        let read = fill(&mut *s.reader, &mut buf.as_mut()[..want], filled).await;
        s.taken = range.start + *filled as u64;
        read?;
        let Some((_, buf, filled)) = s.reading.take() else {
            return Ok(0);
        };
        if filled > 0 {
            s.held
                .insert(range.start, Bytes::from_owner(buf).slice(..filled));
        }
        Ok(filled as u64)
    }

    /// The bytes of `range`.
    pub(crate) async fn read(&self, range: ByteRange) -> Result<Bytes, Failure> {
        match self {
            Source::Stream(parts) => {
                let parts = parts.lock().await;
                match parts.held.get(&range.start) {
                    _ if range.len_bytes() == 0 => Ok(Bytes::new()),
                    Some(b) if b.len() as u64 >= range.len_bytes() => {
                        Ok(b.slice(..range.len_bytes() as usize))
                    }
                    _ => Err(Failure::new(
                        FailureKind::Other,
                        format!("{range} of the stream is not held"),
                    )),
                }
            }
            Source::Bytes(b) => Ok(b.slice(range.start as usize..range.end as usize)),
            Source::File {
                file,
                path,
                fingerprint,
                buffers,
            } => {
                let file = file.clone();
                let path = path.clone();
                let fp = fingerprint.clone();
                let mut buf = buffers.take(range.len_bytes() as usize);
                blocking(move || {
                    check_fingerprint(&path, &fp)?;
                    file.read_exact_at(buf.as_mut(), range.start).map_err(|e| {
                        local_failure(&format!("cannot read {}", path.display()), &e)
                    })?;
                    // A write during the read would leave a mixed part: look again.
                    check_fingerprint(&path, &fp)?;
                    Ok(Bytes::from_owner(buf))
                })
                .await?
            }
            Source::Reader(w) => w.lock().await.read(range).await,
        }
    }

    /// `range` of a file source, to be read in chunks rather than whole; `None` for other
    /// sources.
    pub(crate) fn file_range(&self, range: ByteRange) -> Option<FileRange> {
        match self {
            Source::File {
                file,
                path,
                fingerprint,
                ..
            } => Some(FileRange {
                file: Arc::clone(file),
                path: Arc::new(path.clone()),
                fingerprint: Arc::new(fingerprint.clone()),
                range,
            }),
            _ => None,
        }
    }

    /// The server acknowledged `range`; a stream may forget it.
    pub(crate) async fn release(&self, range: ByteRange) {
        if let Source::Stream(parts) = self {
            parts.lock().await.held.remove(&range.start);
        }
        if let Source::Reader(w) = self {
            w.lock().await.release(range);
        }
    }
}

/// Fails when the file at `path` is no longer the version `fp` describes.
fn check_fingerprint(path: &Path, fp: &SourceFingerprint) -> Result<(), Failure> {
    match fingerprint(path) {
        Ok(now) => match fp.difference(&now) {
            Some(why) => Err(Failure::new(FailureKind::SourceChanged, why)),
            None => Ok(()),
        },
        Err(e) => Err(local_failure(
            &format!("cannot read {}", path.display()),
            &e,
        )),
    }
}

/// Size of the reads of a [`FileRange`].
pub(crate) const CHUNK: usize = 1 << 20;

/// A range of a file source read a chunk at a time, so that memory stays at a few chunks
/// whatever the range's size: hashed in one pass, streamed as a request body in another.
#[derive(Clone)]
pub(crate) struct FileRange {
    file: Arc<File>,
    path: Arc<PathBuf>,
    fingerprint: Arc<SourceFingerprint>,
    pub(crate) range: ByteRange,
}

impl FileRange {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Fails when the file changed since the transfer started (blocking).
    pub(crate) fn check(&self) -> Result<(), Failure> {
        check_fingerprint(&self.path, &self.fingerprint)
    }

    /// The `len` bytes at `at` (blocking).
    pub(crate) fn read_chunk(&self, at: u64, len: usize) -> Result<Bytes, Failure> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, at)
            .map_err(|e| local_failure(&format!("cannot read {}", self.path.display()), &e))?;
        Ok(Bytes::from(buf))
    }

    /// The MD5 (when `md5`) and the checksum in `crc` (when given) of the range, read a
    /// chunk at a time on a blocking thread, with the file checked before and after.
    pub(crate) async fn hash(
        &self,
        crc: Option<s3_protocol::ChecksumAlgorithm>,
        md5: bool,
    ) -> Result<(Option<[u8; 16]>, Option<ChecksumValue>), Failure> {
        let this = self.clone();
        blocking(move || {
            this.check()?;
            let mut md5 = md5.then(Md5State::new);
            let mut crc = crc.map(s3_protocol::ChecksumHasher::new);
            let mut buf = vec![0u8; CHUNK];
            let mut at = this.range.start;
            while at < this.range.end {
                let n = (this.range.end - at).min(CHUNK as u64) as usize;
                this.file.read_exact_at(&mut buf[..n], at).map_err(|e| {
                    local_failure(&format!("cannot read {}", this.path.display()), &e)
                })?;
                if let Some(h) = md5.as_mut() {
                    h.update(&buf[..n]);
                }
                if let Some(h) = crc.as_mut() {
                    h.update(&buf[..n]);
                }
                at += n as u64;
            }
            this.check()?;
            Ok((md5.map(|h| h.finalize()), crc.map(|h| h.value())))
        })
        .await?
    }
}

/// Where a download's bytes go.
pub(crate) enum Sink {
    /// A partial file next to the destination, renamed into place once verified.
    File {
        partial: PathBuf,
        dest: PathBuf,
        file: Mutex<Option<Arc<File>>>,
    },
    /// A stream that receives the bytes in order; not resumable.
    /// The notify wakes ranges waiting for their turn when the write position advances.
    Writer(tokio::sync::Mutex<WriterState>, tokio::sync::Notify),
}

/// Ranges received out of order wait here for their turn.
pub(crate) struct WriterState {
    writer: Box<dyn AsyncWrite + Send + Unpin>,
    next: u64,
    pending: BTreeMap<u64, Bytes>,
    /// What the download will ask of the whole stream (an MD5, a SHA, multipart ETags),
    /// computed as the bytes go, only when asked for; boxed, as a hasher's state is large.
    in_order: Box<WholeHasher>,
}

impl Sink {
    pub(crate) fn file(partial: PathBuf, dest: PathBuf) -> Sink {
        Sink::File {
            partial,
            dest,
            file: Mutex::new(None),
        }
    }

    pub(crate) fn writer(writer: Box<dyn AsyncWrite + Send + Unpin>) -> Sink {
        Sink::Writer(
            tokio::sync::Mutex::new(WriterState {
                writer,
                next: 0,
                pending: BTreeMap::new(),
                in_order: Box::new(WholeHasher::new(FileHashes::default())),
            }),
            tokio::sync::Notify::new(),
        )
    }

    fn open_file(&self) -> Option<Arc<File>> {
        match self {
            Sink::File { file, .. } => file.lock().ok()?.clone(),
            Sink::Writer(..) => None,
        }
    }

    /// Opens the partial file if it exists, checks that it is s3tm's own and locks it,
    /// before the transfer starts: a second download to the same destination (another
    /// process, another state directory) is refused before a byte is fetched. A missing
    /// file is left to [`prepare`](Self::prepare). A lock held by this process's previous
    /// run of the same transfer, about to be dropped, is waited for up to `patience`.
    pub(crate) fn claim_blocking(&self, patience: Duration) -> Result<(), PartialError> {
        let Sink::File {
            partial,
            dest,
            file,
        } = self
        else {
            return Ok(());
        };
        if self.open_file().is_some() {
            return Ok(());
        }
        let deadline = Instant::now() + patience;
        loop {
            match open_partial(partial, dest, false) {
                Ok(Some((f, _))) => {
                    if let Ok(mut slot) = file.lock() {
                        *slot = Some(Arc::new(f));
                    }
                    return Ok(());
                }
                Ok(None) => return Ok(()),
                Err(PartialError::Locked(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates the partial file, keeping the bytes of an earlier run, and sets its length.
    /// The file is s3tm's own and locked for the rest of the transfer (see
    /// [`open_partial`]).
    /// A stream is only told what to hash as its bytes go (`in_order`): it is not read
    /// again.
    pub(crate) async fn prepare(
        &self,
        size: u64,
        create: bool,
        in_order: FileHashes,
    ) -> Result<Option<u64>, Failure> {
        let Sink::File {
            partial,
            dest,
            file,
        } = self
        else {
            if let Sink::Writer(w, _) = self {
                let mut w = w.lock().await;
                // Once bytes went out, what hashes them can no longer be chosen.
                if w.next == 0 {
                    *w.in_order = WholeHasher::new(in_order);
                }
            }
            return Ok(None);
        };
        let held = self.open_file();
        let (path, dest) = (partial.clone(), dest.clone());
        let opened = blocking(move || -> Result<_, PartialError> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| PartialError::io(format!("cannot create {}", dir.display()), e))?;
            }
            let (f, previous) = match held {
                Some(f) => {
                    let len = f
                        .metadata()
                        .map_err(|e| PartialError::io(cannot(&path), e))?;
                    (f, Some(len.len()))
                }
                None => match open_partial(&path, &dest, create)? {
                    Some((f, previous)) => (Arc::new(f), previous),
                    None => return Ok(None),
                },
            };
            f.set_len(size)
                .map_err(|e| PartialError::io(cannot(&path), e))?;
            Ok(Some((f, previous)))
        })
        .await?
        .map_err(PartialError::failure)?;
        let Some((f, previous)) = opened else {
            return Ok(None);
        };
        if let Ok(mut slot) = file.lock() {
            *slot = Some(f);
        }
        Ok(previous)
    }

    /// Writes `chunks`, one after the other, at `offset`.
    pub(crate) async fn write_at(&self, offset: u64, chunks: Vec<Bytes>) -> Result<(), Failure> {
        match self {
            Sink::File { partial, .. } => {
                let file = self
                    .open_file()
                    .ok_or_else(|| Failure::new(FailureKind::LocalIo, "partial file not open"))?;
                let path = partial.clone();
                blocking(move || write_all_vectored_at(&file, chunks, offset))
                    .await?
                    .map_err(|e| local_failure(&format!("cannot write {}", path.display()), &e))
            }
            Sink::Writer(w, advanced) => {
                let mut w = w.lock().await;
                let mut at = offset;
                // An empty chunk would take the place of the next range's first one.
                for chunk in chunks.into_iter().filter(|c| !c.is_empty()) {
                    let len = chunk.len() as u64;
                    w.pending.insert(at, chunk);
                    at += len;
                }
                let before = w.next;
                loop {
                    let next = w.next;
                    let Some(chunk) = w.pending.remove(&next) else {
                        break;
                    };
                    w.in_order.update(&chunk);
                    w.writer
                        .write_all(&chunk)
                        .await
                        .map_err(|e| local_failure("writing the download stream", &e))?;
                    w.next += chunk.len() as u64;
                }
                if w.next != before {
                    advanced.notify_waiters();
                }
                Ok(())
            }
        }
    }

    /// Makes the bytes written so far durable (from the checkpoint thread).
    pub(crate) fn sync_blocking(&self) -> std::io::Result<()> {
        match self.open_file() {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }

    /// Feeds the bytes of `range` of the partial file to `f`, a chunk at a time, on a
    /// blocking thread; returns `state` as `f` left it. Streams hold no bytes to read.
    pub(crate) async fn fold_range<T: Send + 'static>(
        &self,
        range: ByteRange,
        state: T,
        mut f: impl FnMut(&mut T, &[u8]) + Send + 'static,
    ) -> Result<T, Failure> {
        let Sink::File { partial, .. } = self else {
            return Err(Failure::new(
                FailureKind::Other,
                "a stream keeps no bytes to read back",
            ));
        };
        let file = self
            .open_file()
            .ok_or_else(|| Failure::new(FailureKind::LocalIo, "partial file not open"))?;
        let path = partial.clone();
        blocking(move || -> std::io::Result<T> {
            let mut state = state;
            let mut buf = vec![0u8; (1 << 20).min(range.len_bytes() as usize)];
            let mut at = range.start;
            while at < range.end {
                let n = ((range.end - at) as usize).min(buf.len());
                file.read_exact_at(&mut buf[..n], at)?;
                f(&mut state, &buf[..n]);
                at += n as u64;
            }
            Ok(state)
        })
        .await?
        .map_err(|e| local_failure(&format!("cannot read {}", path.display()), &e))
    }

    /// What `wanted` asks of all the bytes, read once. A stream written in order keeps
    /// only its MD5: the rest is not reported.
    pub(crate) async fn hash_whole(&self, wanted: FileHashes) -> Result<WholeHashed, Failure> {
        match self {
            Sink::File {
                partial,
                dest,
                file,
            } => {
                let held = self.open_file();
                let (path, dest) = (partial.clone(), dest.clone());
                let (f, hashed) = blocking(move || -> Result<_, PartialError> {
                    // The locked file itself, never whatever the path names now.
                    let f = held_or_open(&path, &dest, held)?;
                    let read = |e| PartialError::io(format!("cannot read {}", path.display()), e);
                    let mut h = WholeHasher::new(wanted);
                    let mut buf = vec![0u8; 1 << 20];
                    let mut off = 0u64;
                    loop {
                        let n = f.read_at(&mut buf, off).map_err(read)?;
                        if n == 0 {
                            break;
                        }
                        h.update(&buf[..n]);
                        off += n as u64;
                    }
                    Ok((f, h.finalize()))
                })
                .await?
                .map_err(PartialError::failure)?;
                if let Ok(mut slot) = file.lock()
                    && slot.is_none()
                {
                    *slot = Some(f);
                }
                Ok(hashed)
            }
            Sink::Writer(w, _) => {
                let w = w.lock().await;
                // What was hashed as the bytes went: only what was announced (a stream is
                // not read again; what is missing the machine calls not verified).
                if w.in_order.wanted == wanted {
                    Ok((*w.in_order).clone().finalize())
                } else {
                    Ok(WholeHashed::default())
                }
            }
        }
    }

    /// Moves the verified file into place.
    pub(crate) async fn commit(&self) -> Result<(), Failure> {
        match self {
            Sink::File {
                partial,
                dest,
                file,
            } => {
                let held = file.lock().ok().and_then(|mut f| f.take());
                let (partial, dest) = (partial.clone(), dest.clone());
                blocking(move || -> Result<(), PartialError> {
                    let f = held_or_open(&partial, &dest, held)?;
                    let moving = |e| {
                        PartialError::io("cannot move the download into place".to_owned(), e)
                    };
                    f.sync_all().map_err(moving)?;
                    if !names_file(&partial, &f) {
                        return Err(PartialError::Refused(format!(
                            "{} was replaced or removed during the download; the download was not moved into place",
                            partial.display()
                        )));
                    }
                    // Never rename over what is not a regular file (a directory, a device,
                    // a link made meanwhile): the verified bytes stay in the partial file.
                    match std::fs::symlink_metadata(&dest) {
                        Ok(m) if !m.file_type().is_file() => {
                            return Err(PartialError::Refused(format!(
                                "{} is {}, which s3tm does not replace; the verified download is kept in {}",
                                dest.display(),
                                describe(m.file_type()),
                                partial.display()
                            )));
                        }
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(moving(e));
                        }
                        _ => {}
                    }
                    std::fs::rename(&partial, &dest).map_err(moving)?;
                    // The lock goes only once the file has its final name.
                    drop(f);
                    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
                        File::open(dir).and_then(|d| d.sync_all()).map_err(moving)?;
                    }
                    Ok(())
                })
                .await?
                .map_err(PartialError::failure)
            }
            Sink::Writer(w, _) => {
                let mut w = w.lock().await;
                w.writer
                    .flush()
                    .await
                    .map_err(|e| local_failure("flushing the download stream", &e))
            }
        }
    }

    /// Removes the partial file (cancel, or a download that can never complete).
    pub(crate) async fn delete(&self) -> Result<(), Failure> {
        match self {
            Sink::File {
                partial,
                dest,
                file,
            } => {
                let held = file.lock().ok().and_then(|mut f| f.take());
                let (path, dest) = (partial.clone(), dest.clone());
                blocking(move || -> Result<(), PartialError> {
                    let f = match held {
                        Some(f) => f,
                        None => match open_partial(&path, &dest, false) {
                            Ok(Some((f, _))) => Arc::new(f),
                            Ok(None) => return Ok(()),
                            // Not s3tm's file: it is left alone, never removed.
                            Err(PartialError::Refused(why)) => {
                                tracing::warn!("{why}");
                                return Ok(());
                            }
                            Err(e) => return Err(e),
                        },
                    };
                    // Removed under the lock, and only if the path still names this file.
                    if names_file(&path, &f) {
                        match std::fs::remove_file(&path) {
                            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                                return Err(PartialError::io(
                                    format!("cannot remove {}", path.display()),
                                    e,
                                ));
                            }
                            _ => {}
                        }
                    }
                    drop(f);
                    Ok(())
                })
                .await?
                .map_err(PartialError::failure)
            }
            Sink::Writer(..) => Ok(()),
        }
    }

    /// For streams: waits until `range` may be fetched: while it would end beyond
    /// `window_bytes` past the write position (the range at the write position always
    /// goes), so the bytes held in memory out of order stay within the window.
    pub(crate) async fn wait_turn(&self, range: ByteRange, window_bytes: u64) {
        let Sink::Writer(w, advanced) = self else {
            return;
        };
        loop {
            // Registered before the check, so an advance in between is not missed.
            let notified = advanced.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = w.lock().await.next;
            if range.start <= next || range.end <= next.saturating_add(window_bytes) {
                return;
            }
            notified.await;
        }
    }
}

/// Why a download's partial file cannot be used.
#[derive(Debug)]
pub(crate) enum PartialError {
    /// Another s3tm (process, or transfer of this one) holds its lock.
    Locked(String),
    /// The path holds something that is not s3tm's own file; it was not touched.
    Refused(String),
    /// The operating system said no.
    Io(String, std::io::Error),
}

impl PartialError {
    fn io(what: String, e: std::io::Error) -> PartialError {
        PartialError::Io(what, e)
    }

    /// For the machine: a local failure, which keeps the partial file.
    pub(crate) fn failure(self) -> Failure {
        match self {
            PartialError::Locked(m) | PartialError::Refused(m) => {
                Failure::new(FailureKind::LocalIo, m)
            }
            PartialError::Io(what, e) => local_failure(&what, &e),
        }
    }

    /// For the caller, before a transfer starts.
    pub(crate) fn error(self) -> Error {
        match self {
            PartialError::Locked(m) => Error::new(ErrorKind::Locked, m),
            PartialError::Refused(m) => Error::new(ErrorKind::LocalIo, m),
            PartialError::Io(what, e) => Error::local(what, e),
        }
    }
}

fn cannot(path: &Path) -> String {
    format!("cannot create {}", path.display())
}

/// What a file type is, for messages: "a directory", "a symbolic link", ...
pub(crate) fn describe(t: std::fs::FileType) -> &'static str {
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Whether `meta` is a partial file s3tm may use: a regular file (not a link, device or
/// directory), owned by this user, with no other name.
fn check_own_file(path: &Path, meta: &std::fs::Metadata) -> Result<(), PartialError> {
    let refuse = |what: String| {
        PartialError::Refused(format!(
            "{} {what}, not a partial file of s3tm's own; it was left untouched: remove it or move it away, then run the command again",
            path.display()
        ))
    };
    let t = meta.file_type();
    if !t.is_file() {
        return Err(refuse(format!("is {}", describe(t))));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(refuse(format!(
            "is owned by uid {}, not by this user (uid {me})",
            meta.uid()
        )));
    }
    if meta.nlink() > 1 {
        return Err(refuse(format!("has {} hard links", meta.nlink())));
    }
    Ok(())
}

/// Opens the partial file of a download to `dest` and locks it (an exclusive lock,
/// never waited for): an existing one only if it is s3tm's own (see `check_own_file`;
/// never through a symbolic link: `O_NOFOLLOW`), a missing one created with `O_EXCL`
/// when `create` (mode 0666 less the umask, as any new file: it becomes the download).
/// Returns the file and its length before (`None` for a file created here), or
/// `Ok(None)` when it is missing and not to be created.
pub(crate) fn open_partial(
    path: &Path,
    dest: &Path,
    create: bool,
) -> Result<Option<(File, Option<u64>)>, PartialError> {
    let io = |e| PartialError::io(cannot(path), e);
    // Looked at before it is opened: opening a device or FIFO can have effects.
    match std::fs::symlink_metadata(path) {
        Ok(m) => check_own_file(path, &m)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut options = std::fs::OpenOptions::new();
    options
        .read(true)
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits());
    let (file, previous) = match options.open(path) {
        Ok(f) => {
            // The file opened, whatever the path named a moment ago.
            let m = f.metadata().map_err(io)?;
            check_own_file(path, &m)?;
            (f, Some(m.len()))
        }
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) => {
            let m = std::fs::symlink_metadata(path).map_err(io)?;
            check_own_file(path, &m)?;
            return Err(io(e));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            match options.create_new(true).open(path) {
                Ok(f) => (f, None),
                // Created by another s3tm meanwhile: judged (and locked) as an existing one.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return open_partial(path, dest, false);
                }
                Err(e) => return Err(io(e)),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some((file, previous))),
        Err(std::fs::TryLockError::WouldBlock) => Err(PartialError::Locked(format!(
            "another s3tm is downloading to {} (its partial file {} is locked); wait for it to finish or stop it",
            dest.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// The locked file `held`, or the partial file opened and locked now.
fn held_or_open(
    path: &Path,
    dest: &Path,
    held: Option<Arc<File>>,
) -> Result<Arc<File>, PartialError> {
    match held {
        Some(f) => Ok(f),
        None => match open_partial(path, dest, false)? {
            Some((f, _)) => Ok(Arc::new(f)),
            None => Err(PartialError::io(
                format!("cannot open {}", path.display()),
                std::io::ErrorKind::NotFound.into(),
            )),
        },
    }
}

/// Whether `path` still names the open file `f` (not a file put in its place).
fn names_file(path: &Path, f: &File) -> bool {
    match (std::fs::symlink_metadata(path), f.metadata()) {
        (Ok(p), Ok(m)) => p.dev() == m.dev() && p.ino() == m.ino(),
        _ => false,
    }
}

/// What a download's destination is, looked at before the first byte.
pub(crate) enum Destination {
    /// Missing or a regular file: written to a partial file, renamed over it once verified.
    File,
    /// A character device or FIFO (maybe through a symbolic link, like `/dev/stdout`):
    /// written into directly, in order, without a partial file; not resumable.
    Stream,
}

/// Classifies `dest`; refuses what s3tm must not replace or write through.
pub(crate) fn destination(dest: &Path) -> Result<Destination, Error> {
    let refuse = |why: String| Error::new(ErrorKind::InvalidInput, why);
    let meta = match std::fs::symlink_metadata(dest) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Destination::File),
        Err(e) => return Err(Error::local(format!("cannot use {}", dest.display()), e)),
    };
    let t = meta.file_type();
    if t.is_file() {
        return Ok(Destination::File);
    }
    if t.is_dir() {
        return Err(refuse(format!(
            "{} is a directory; give a file name or a directory to download into",
            dest.display()
        )));
    }
    if t.is_symlink() {
        return match std::fs::metadata(dest) {
            Ok(m) if m.file_type().is_char_device() || m.file_type().is_fifo() => {
                Ok(Destination::Stream)
            }
            Ok(m) => Err(refuse(format!(
                "{} is a symbolic link to {}; s3tm neither replaces links nor writes through them: give the file it points to, or another name",
                dest.display(),
                describe(m.file_type())
            ))),
            Err(_) => Err(refuse(format!(
                "{} is a symbolic link to nothing; s3tm neither replaces links nor writes through them: give another name",
                dest.display()
            ))),
        };
    }
    if t.is_char_device() || t.is_fifo() {
        return Ok(Destination::Stream);
    }
    Err(refuse(format!(
        "{} is {}; s3tm downloads into regular files, character devices and FIFOs only",
        dest.display(),
        describe(t)
    )))
}

/// Opens a [`Destination::Stream`] for writing: never created, never truncated (a FIFO
/// waits here for its reader). Refused if it is no longer a device or FIFO.
pub(crate) async fn open_stream(dest: &Path) -> Result<tokio::fs::File, Error> {
    let f = tokio::fs::OpenOptions::new()
        .write(true)
        .open(dest)
        .await
        .map_err(|e| Error::local(format!("cannot open {}", dest.display()), e))?;
    let m = f
        .metadata()
        .await
        .map_err(|e| Error::local(format!("cannot open {}", dest.display()), e))?;
    if !(m.file_type().is_char_device() || m.file_type().is_fifo()) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} changed while it was opened (it is now {}); nothing was written",
                dest.display(),
                describe(m.file_type())
            ),
        ));
    }
    Ok(f)
}

/// `pwritev` until every byte of `chunks` is at `offset` onwards in `file`.
fn write_all_vectored_at(
    file: &File,
    mut chunks: Vec<Bytes>,
    mut offset: u64,
) -> std::io::Result<()> {
    // Linux takes at most IOV_MAX (1024) slices a call.
    const MAX_SLICES: usize = 1024;
    chunks.retain(|c| !c.is_empty());
    let mut first = 0;
    while first < chunks.len() {
        let slices: Vec<IoSlice<'_>> = chunks[first..]
            .iter()
            .take(MAX_SLICES)
            .map(|c| IoSlice::new(c))
            .collect();
        let at = i64::try_from(offset).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        let mut written = match nix::sys::uio::pwritev(file, &slices, at) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        drop(slices);
        offset += written as u64;
        while written > 0 {
            let chunk = &mut chunks[first];
            let n = written.min(chunk.len());
            let _ = chunk.split_to(n);
            written -= n;
            if chunk.is_empty() {
                first += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader of known length read part by part, in any order, with an early part
    /// retried for long: the parts acknowledged meanwhile are forgotten, so what is held
    /// is the unacknowledged parts, not everything read since the oldest of them (before,
    /// the window trimmed only from its front and held 9 parts here).
    #[tokio::test]
    async fn a_reader_holds_only_the_parts_not_yet_acknowledged() {
        const PART: u64 = 1000;
        let data: Vec<u8> = (0..10 * PART).map(|i| (i % 251) as u8).collect();
        let source = Source::reader(Box::new(std::io::Cursor::new(data.clone())));
        let Source::Reader(window) = &source else {
            unreachable!()
        };
        let part = |n: u64| ByteRange::new(n * PART, (n + 1) * PART);
        // Part 2 is read first: parts 0 and 1 are read on the way and held.
        assert_eq!(source.read(part(2)).await.unwrap(), &data[2000..3000]);
        assert_eq!(window.lock().await.held_bytes(), 3 * PART);
        assert_eq!(source.read(part(0)).await.unwrap(), &data[..1000]);
        assert_eq!(source.read(part(1)).await.unwrap(), &data[1000..2000]);
        source.release(part(2)).await;
        assert_eq!(window.lock().await.held_bytes(), 2 * PART);
        // Part 0 is retried for long; every later part is read, sent and acknowledged.
        for n in (1..10).filter(|n| *n != 2) {
            let got = source.read(part(n)).await.unwrap();
            assert_eq!(got, &data[(n * PART) as usize..((n + 1) * PART) as usize]);
            source.release(part(n)).await;
            assert_eq!(window.lock().await.held_bytes(), PART, "after part {n}");
        }
        // The retried part is still there, and then forgotten too.
        assert_eq!(source.read(part(0)).await.unwrap(), &data[..1000]);
        source.release(part(0)).await;
        assert_eq!(window.lock().await.held_bytes(), 0);
        assert!(
            source.read(part(0)).await.is_err(),
            "released bytes are gone"
        );
        // A stream shorter than announced is a clear failure.
        let short = Source::reader(Box::new(std::io::Cursor::new(vec![1u8; 10])));
        let err = short.read(ByteRange::new(0, 20)).await.unwrap_err();
        assert_eq!(err.kind, FailureKind::SourceChanged, "{err:?}");
    }

    /// More slices than one `pwritev` takes, empty ones among them, at an offset.
    #[test]
    fn vectored_writes_put_every_byte_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut expected = vec![0u8; 100];
        let mut chunks = Vec::new();
        for i in 0..2500 {
            let len = if i % 7 == 0 { 0 } else { rng.usize(1..300) };
            let chunk: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            expected.extend_from_slice(&chunk);
            chunks.push(Bytes::from(chunk));
        }
        write_all_vectored_at(&file, chunks, 100).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }
}

/// What was computed over a whole partial file.
#[derive(Debug, Clone, Default)]
pub(crate) struct WholeHashed {
    pub(crate) md5: Option<[u8; 16]>,
    pub(crate) checksum: Option<ChecksumValue>,
    /// In the order of [`WholeHashes::part_sizes`], without quotes.
    pub(crate) multipart_etags: Vec<String>,
}

/// Computes [`FileHashes`] over bytes fed in order, in one pass.
#[derive(Clone)]
struct WholeHasher {
    wanted: FileHashes,
    md5: Option<Md5State>,
    checksum: Option<s3_protocol::ChecksumHasher>,
    /// Per part size: the size, the MD5 of the part being fed, its bytes so far, and the
    /// digests of the parts done.
    parts: Vec<(u64, Md5State, u64, Vec<[u8; 16]>)>,
}

impl WholeHasher {
    fn new(wanted: FileHashes) -> Self {
        Self {
            md5: wanted.md5.then(Md5State::new),
            checksum: wanted.checksum.map(s3_protocol::ChecksumHasher::new),
            parts: wanted
                .multipart_part_sizes
                .iter()
                .map(|size| ((*size).max(1), Md5State::new(), 0, Vec::new()))
                .collect(),
            wanted,
        }
    }

    fn update(&mut self, data: &[u8]) {
        if let Some(h) = self.md5.as_mut() {
            h.update(data);
        }
        if let Some(h) = self.checksum.as_mut() {
            h.update(data);
        }
        for (size, md5, fed, done) in &mut self.parts {
            let mut rest = data;
            while !rest.is_empty() {
                let room = (*size - *fed).min(rest.len() as u64) as usize;
                let (now, later) = rest.split_at(room);
                md5.update(now);
                *fed += room as u64;
                rest = later;
                if *fed == *size {
                    done.push(std::mem::replace(md5, Md5State::new()).finalize());
                    *fed = 0;
                }
            }
        }
    }

    fn finalize(self) -> WholeHashed {
        WholeHashed {
            md5: self.md5.map(|h| h.finalize()),
            checksum: self.checksum.map(|h| h.value()),
            multipart_etags: self
                .parts
                .into_iter()
                .map(|(_, md5, fed, mut done)| {
                    if fed > 0 {
                        done.push(md5.finalize());
                    }
                    transfer_core::multipart_etag(&done)
                })
                .collect(),
        }
    }
}
