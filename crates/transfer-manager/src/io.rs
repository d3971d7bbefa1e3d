//! Local bytes: where uploads read from and downloads write to. File IO runs on the
//! blocking pool with positioned reads and writes, so parts never share a cursor.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::IoSlice;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use bytes::{Bytes, BytesMut};
use md5_many::Md5State;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use transfer_core::{ByteRange, Failure, FailureKind, SourceFingerprint};

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
}

/// Part buffers of a file upload, reused: a fresh 8 MiB buffer per part costs zeroing and
/// page faults, and the allocator keeps freed ones in per-thread pools, so memory would
/// grow with the file's size instead of staying at parts in flight × part size.
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

/// The part of a stream that has been read and not yet acknowledged by the server.
pub(crate) struct ReaderWindow {
    reader: Box<dyn AsyncRead + Send + Unpin>,
    /// Offset of `buf[0]` in the stream.
    start: u64,
    buf: BytesMut,
    /// Acknowledged ranges not yet trimmed from the front.
    released: BTreeMap<u64, u64>,
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
            start: 0,
            buf: BytesMut::new(),
            released: BTreeMap::new(),
        }))
    }

    /// The bytes of `range`.
    pub(crate) async fn read(&self, range: ByteRange) -> Result<Bytes, Failure> {
        match self {
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
                    let changed = |now: &SourceFingerprint| fp.difference(now);
                    let check = || match self::fingerprint(&path) {
                        Ok(now) => {
                            changed(&now).map(|why| Failure::new(FailureKind::SourceChanged, why))
                        }
                        Err(e) => Some(local_failure(
                            &format!("cannot read {}", path.display()),
                            &e,
                        )),
                    };
                    if let Some(f) = check() {
                        return Err(f);
                    }
                    file.read_exact_at(buf.as_mut(), range.start).map_err(|e| {
                        local_failure(&format!("cannot read {}", path.display()), &e)
                    })?;
                    // A write during the read would leave a mixed part: look again.
                    if let Some(f) = check() {
                        return Err(f);
                    }
                    Ok(Bytes::from_owner(buf))
                })
                .await?
            }
            Source::Reader(w) => {
                let mut w = w.lock().await;
                if range.start < w.start {
                    return Err(Failure::new(
                        FailureKind::Other,
                        "a streamed part was asked for again after it was released",
                    ));
                }
                while w.start + (w.buf.len() as u64) < range.end {
                    let want = (range.end - w.start) as usize - w.buf.len();
                    let mut chunk = vec![0u8; want.min(1 << 20)];
                    let n = w
                        .reader
                        .read(&mut chunk)
                        .await
                        .map_err(|e| local_failure("reading the upload stream", &e))?;
                    if n == 0 {
                        return Err(Failure::new(
                            FailureKind::SourceChanged,
                            "the stream ended before the announced size",
                        ));
                    }
                    w.buf.extend_from_slice(&chunk[..n]);
                }
                let from = (range.start - w.start) as usize;
                let to = (range.end - w.start) as usize;
                Ok(Bytes::copy_from_slice(&w.buf[from..to]))
            }
        }
    }

    /// The server acknowledged `range`; a stream may forget it.
    pub(crate) async fn release(&self, range: ByteRange) {
        if let Source::Reader(w) = self {
            let mut w = w.lock().await;
            w.released.insert(range.start, range.end);
            loop {
                let start = w.start;
                let Some(end) = w.released.remove(&start) else {
                    break;
                };
                let n = (end - w.start).min(w.buf.len() as u64) as usize;
                let _ = w.buf.split_to(n);
                w.start = end;
            }
        }
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
    /// The whole stream's MD5 (one stream: md5-many's fast single-lane path).
    md5: Md5State,
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
                md5: Md5State::new(),
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

    /// Creates the partial file, keeping the bytes of an earlier run, and sets its length.
    pub(crate) async fn prepare(&self, size: u64, create: bool) -> Result<Option<u64>, Failure> {
        let Sink::File { partial, file, .. } = self else {
            return Ok(None);
        };
        let path = partial.clone();
        let opened = blocking(move || -> std::io::Result<Option<(File, Option<u64>)>> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let previous = std::fs::metadata(&path).ok().map(|m| m.len());
            if previous.is_none() && !create {
                return Ok(None);
            }
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(false)
                .open(&path)?;
            f.set_len(size)?;
            Ok(Some((f, previous)))
        })
        .await?
        .map_err(|e| local_failure(&format!("cannot create {}", partial.display()), &e))?;
        let Some((f, previous)) = opened else {
            return Ok(None);
        };
        if let Ok(mut slot) = file.lock() {
            *slot = Some(Arc::new(f));
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
                    w.md5.update(&chunk);
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

    /// MD5 of all the bytes.
    pub(crate) async fn md5(&self) -> Result<[u8; 16], Failure> {
        match self {
            Sink::File { partial, .. } => {
                let path = partial.clone();
                blocking(move || -> std::io::Result<[u8; 16]> {
                    let f = File::open(&path)?;
                    let mut h = Md5State::new();
                    let mut buf = vec![0u8; 1 << 20];
                    let mut off = 0u64;
                    loop {
                        let n = f.read_at(&mut buf, off)?;
                        if n == 0 {
                            break;
                        }
                        h.update(&buf[..n]);
                        off += n as u64;
                    }
                    Ok(h.finalize())
                })
                .await?
                .map_err(|e| local_failure(&format!("cannot read {}", partial.display()), &e))
            }
            Sink::Writer(w, _) => Ok(w.lock().await.md5.finalize()),
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
                let open = file.lock().ok().and_then(|mut f| f.take());
                let (partial, dest) = (partial.clone(), dest.clone());
                blocking(move || -> std::io::Result<()> {
                    let f = match open {
                        Some(f) => f,
                        None => Arc::new(
                            std::fs::OpenOptions::new()
                                .write(true)
                                .create(true)
                                .truncate(false)
                                .open(&partial)?,
                        ),
                    };
                    f.sync_all()?;
                    drop(f);
                    std::fs::rename(&partial, &dest)?;
                    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
                        File::open(dir)?.sync_all()?;
                    }
                    Ok(())
                })
                .await?
                .map_err(|e| local_failure("cannot move the download into place", &e))
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
            Sink::File { partial, file, .. } => {
                if let Ok(mut f) = file.lock() {
                    f.take();
                }
                let path = partial.clone();
                blocking(move || match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                })
                .await?
                .map_err(|e| local_failure(&format!("cannot remove {}", partial.display()), &e))
            }
            Sink::Writer(..) => Ok(()),
        }
    }

    /// For streams: waits until range `start` may be fetched. Ranges far ahead of the
    /// write position wait, so out-of-order bytes held in memory stay bounded.
    pub(crate) async fn wait_turn(&self, start: u64, window_bytes: u64) {
        let Sink::Writer(w, advanced) = self else {
            return;
        };
        loop {
            // Registered before the check, so an advance in between is not missed.
            let notified = advanced.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if start < w.lock().await.next + window_bytes {
                return;
            }
            notified.await;
        }
    }
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
