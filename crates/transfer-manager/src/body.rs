//! Request bodies that report progress. hyper takes a body a frame at a time, as the
//! connection can send it; each frame taken is recorded in a [`Progress`] shared with the
//! code waiting for the response, so a timeout measures silence (no bytes moving), never
//! how long a part takes to cross a slow link.
//!
//! A body is either bytes already in memory, handed over in [`FRAME`]-sized slices (no
//! copy), or a range of the source file streamed in [`CHUNK`]s read on the blocking pool
//! (one chunk read ahead), for parts larger than the memory budget.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use s3_protocol as p;
use tokio::task::JoinHandle;
use transfer_core::{Failure, FailureKind};

use crate::bandwidth::Bandwidth;
use crate::io::{CHUNK, FileRange};

/// Largest frame handed to hyper: small enough that progress is seen every few hundred
/// milliseconds even on a slow link shared by many requests.
pub(crate) const FRAME: usize = 64 << 10;

tokio::task_local! {
    /// Bytes the current part or range has moved on the wire (request body bytes taken,
    /// response body bytes received): the driver scopes one per data operation, so
    /// progress moves within a part, not once per part.
    pub(crate) static WIRE: Arc<AtomicU64>;
}

/// Adds `len` to the current operation's [`WIRE`] counter, if it has one.
pub(crate) fn on_wire(len: usize) {
    let _ = WIRE.try_with(|w| w.fetch_add(len as u64, Ordering::Relaxed));
}

/// What a request body has done so far, shared between the body and the waiting code.
#[derive(Debug)]
pub(crate) struct Progress {
    origin: Instant,
    /// When the last frame was taken, in microseconds since `origin`.
    last_micros: AtomicU64,
    /// Every byte has been taken.
    finished: AtomicBool,
    /// Bytes taken so far.
    sent: AtomicU64,
    /// Why a streamed body stopped (a changed source, a read error).
    failure: Mutex<Option<Failure>>,
    /// The operation's [`WIRE`] counter (hyper polls the body from its connection's
    /// task, outside the operation's scope, so it is taken when the body is made).
    wire: Option<Arc<AtomicU64>>,
}

impl Progress {
    fn new() -> Arc<Self> {
        Arc::new(Progress {
            origin: Instant::now(),
            last_micros: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            failure: Mutex::new(None),
            wire: WIRE.try_with(Arc::clone).ok(),
        })
    }

    fn record(&self, len: usize, finished: bool) {
        let micros = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last_micros.store(micros, Ordering::Relaxed);
        self.sent.fetch_add(len as u64, Ordering::Relaxed);
        if let Some(w) = &self.wire {
            w.fetch_add(len as u64, Ordering::Relaxed);
        }
        if finished {
            self.finished.store(true, Ordering::Relaxed);
        }
    }

    /// When the body last moved (or was created).
    pub(crate) fn last(&self) -> Instant {
        self.origin + Duration::from_micros(self.last_micros.load(Ordering::Relaxed))
    }

    /// Whether hyper has taken every byte.
    pub(crate) fn finished(&self) -> bool {
        self.finished.load(Ordering::Relaxed)
    }

    /// Bytes hyper has taken.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Why the body failed, if it did.
    pub(crate) fn take_failure(&self) -> Option<Failure> {
        self.failure.lock().ok()?.take()
    }

    fn fail(&self, failure: Failure) {
        if let Ok(mut slot) = self.failure.lock() {
            *slot = Some(failure);
        }
    }
}

/// What a request sends as its body.
pub(crate) enum Payload {
    /// Bytes in memory.
    Bytes(Bytes),
    /// A range of the source file, read again chunk by chunk as it is sent; its checksum
    /// was computed by a first pass, and a second pass that sees other bytes (or a changed
    /// file) fails the request with [`FailureKind::SourceChanged`] before the last chunk
    /// is sent.
    Streamed {
        range: FileRange,
        /// What the first pass computed, which the bytes sent must hash to.
        checksum: Option<(p::ChecksumAlgorithm, p::ChecksumValue)>,
    },
}

impl Payload {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Payload::Bytes(b) => b.len() as u64,
            Payload::Streamed { range, .. } => range.range.len_bytes(),
        }
    }
}

/// The body type of every request the client sends.
pub(crate) struct SendBody {
    inner: Inner,
    len: u64,
    taken: u64,
    progress: Arc<Progress>,
    /// The manager's bandwidth cap, and the wait it asked for before the next frame.
    bandwidth: Option<Arc<Bandwidth>>,
    pacing: Option<Pin<Box<tokio::time::Sleep>>>,
}

enum Inner {
    Bytes(Bytes),
    /// Boxed: a hasher's state (SHA-256's, CRC64NVME's) is large beside a `Bytes`.
    Streamed(Box<Streamed>),
}

struct Streamed {
    range: FileRange,
    checksum: Option<(p::ChecksumAlgorithm, p::ChecksumValue)>,
    /// What is left of the chunk being sent.
    current: Bytes,
    /// The next chunk, being read, with the running checksum.
    reading: Option<JoinHandle<ChunkRead>>,
    /// Where the next chunk to read starts.
    next_read: u64,
    /// The running checksum, while no read holds it.
    hasher: Option<p::ChecksumHasher>,
    failed: bool,
}

type ChunkRead = Result<(Bytes, Option<p::ChecksumHasher>), Failure>;

/// The error a body fails with; the [`Failure`] itself is in [`Progress`].
#[derive(Debug)]
pub(crate) struct BodyFailed(String);

impl std::fmt::Display for BodyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BodyFailed {}

impl SendBody {
    pub(crate) fn new(payload: Payload, bandwidth: Option<Arc<Bandwidth>>) -> Self {
        let len = payload.len();
        let inner = match payload {
            Payload::Bytes(b) => Inner::Bytes(b),
            Payload::Streamed { range, checksum } => Inner::Streamed(Box::new(Streamed {
                next_read: range.range.start,
                hasher: checksum.map(|(a, _)| p::ChecksumHasher::new(a)),
                range,
                checksum,
                current: Bytes::new(),
                reading: None,
                failed: false,
            })),
        };
        SendBody {
            inner,
            len,
            taken: 0,
            progress: Progress::new(),
            bandwidth,
            pacing: None,
        }
    }

    pub(crate) fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    fn emit(&mut self, data: Bytes) -> Poll<Option<Result<Frame<Bytes>, BodyFailed>>> {
        if let Some(b) = &self.bandwidth {
            let wait = b.charge(data.len());
            if !wait.is_zero() {
                self.pacing = Some(Box::pin(tokio::time::sleep(wait)));
            }
        }
        self.taken += data.len() as u64;
        self.progress.record(data.len(), self.taken >= self.len);
        Poll::Ready(Some(Ok(Frame::data(data))))
    }
}

fn next_slice(b: &mut Bytes) -> Bytes {
    let n = b.len().min(FRAME);
    b.split_to(n)
}

impl Streamed {
    /// Starts reading the next chunk, if any is left and none is being read.
    fn read_ahead(&mut self) {
        let end = self.range.range.end;
        if self.reading.is_some() || self.next_read >= end {
            return;
        }
        let at = self.next_read;
        let len = (end - at).min(CHUNK as u64) as usize;
        self.next_read += len as u64;
        let first = at == self.range.range.start;
        let last = self.next_read >= end;
        let range = self.range.clone();
        let mut hasher = self.hasher.take();
        let expected = self.checksum.map(|(_, v)| v);
        self.reading = Some(tokio::task::spawn_blocking(move || {
            if first {
                range.check()?;
            }
            let data = range.read_chunk(at, len)?;
            if let Some(h) = hasher.as_mut() {
                h.update(&data);
            }
            if last {
                // A write during the send would mix versions: the file and the bytes
                // must both be what the first pass saw.
                range.check()?;
                if let (Some(h), Some(expected)) = (hasher.take(), expected) {
                    let got = h.value();
                    if got != expected {
                        return Err(Failure::new(
                            FailureKind::SourceChanged,
                            format!(
                                "{} changed while it was sent: the bytes of {} no longer match the checksum computed before sending",
                                range.path().display(),
                                range.range
                            ),
                        ));
                    }
                }
            }
            Ok((data, hasher))
        }));
    }
}

impl Body for SendBody {
    type Data = Bytes;
    type Error = BodyFailed;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyFailed>>> {
        let this = self.get_mut();
        // The bandwidth cap's wait, charged by the frame before, comes first.
        if let Some(pacing) = this.pacing.as_mut() {
            if pacing.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.pacing = None;
        }
        match &mut this.inner {
            Inner::Bytes(b) => {
                if b.is_empty() {
                    return Poll::Ready(None);
                }
                let data = next_slice(b);
                this.emit(data)
            }
            Inner::Streamed(s) => loop {
                if s.failed {
                    return Poll::Ready(None);
                }
                if !s.current.is_empty() {
                    let data = next_slice(&mut s.current);
                    s.read_ahead();
                    return this.emit(data);
                }
                s.read_ahead();
                let Some(reading) = s.reading.as_mut() else {
                    return Poll::Ready(None);
                };
                let read = match Pin::new(reading).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(r) => r.unwrap_or_else(|e| {
                        Err(Failure::new(
                            FailureKind::LocalIo,
                            format!("reading task failed: {e}"),
                        ))
                    }),
                };
                s.reading = None;
                match read {
                    Ok((data, hasher)) => {
                        s.hasher = hasher;
                        s.current = data;
                    }
                    Err(failure) => {
                        s.failed = true;
                        let message = failure.message.clone();
                        this.progress.fail(failure);
                        return Poll::Ready(Some(Err(BodyFailed(message))));
                    }
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.taken >= self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.taken.min(self.len))
    }
}
