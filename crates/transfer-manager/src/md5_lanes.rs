//! MD5 of many ranges at once, in the lanes of one SIMD register.
//!
//! A download whose only check is a multipart ETag needs the MD5 of every part. One MD5
//! stream cannot go much faster than 5 cycles a byte, because each 64-byte block depends
//! on the one before; but a download's parts arrive side by side, and `md5-many` hashes
//! independent streams together in SIMD lanes (8 with AVX2), about seven times faster
//! per byte here than one stream at a time.
//!
//! Each range opens a [`Md5Lane`] and hands it the chunks it writes. One thread hashes
//! rounds of chunks, one chunk from every lane that has one. A round starts when every
//! open lane has a chunk (so the lanes are full), or a lane is finishing, or a lane holds
//! [`MAX_PENDING`] bytes (its range is about to wait), or the oldest chunk has waited
//! [`MAX_WAIT`]. A lane holds at most [`MAX_PENDING`] bytes, so memory stays bounded.
//!
//! Why md5-many, a pinned pre-release with unsafe SIMD inside, rather than the `md-5`
//! crate: measured by `cargo bench -p transfer-manager --bench md5` (and `-- --cpu`) on
//! the 2-core AVX-512 Xeon of docs/benchmarks.md, hashing 8 streams of 8 MiB (the
//! default 8 ranges in flight) in 64 KiB chunks, these lanes did 3.9 GB/s at 0.30 CPU
//! s/GiB; `md-5` (asm) did 0.70 GB/s on one thread and 1.3 GB/s on the blocking pool
//! (one task a stream, both cores), at 1.54-1.56 CPU s/GiB either way: 3x the pool's
//! throughput for a fifth of its CPU. With 4 streams: 2.0 against 1.4 GB/s, 0.56
//! against 1.57 CPU s/GiB. That clears the bar set for keeping it (1.5x in throughput
//! or CPU per GiB). What keeps it honest: the differential property test below against
//! `md-5` (up to 24 streams at once, interleaved chunks, lengths on the 55/56/63/64/65
//! byte boundaries and up to 6 KiB).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use md5_many::{Md5Many, Md5State};
use tokio::sync::{Notify, oneshot};
use transfer_core::{Failure, FailureKind};

/// The bytes a lane may hold before its range waits for the hasher (it may go one frame
/// over).
const MAX_PENDING: usize = 4 << 20;
/// How long a chunk may wait for the other lanes to fill before it is hashed anyway.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// The most bytes of each lane one round hashes.
const MAX_ROUND_BYTES: usize = 1 << 20;

/// The hashing thread and its lanes. Dropping it stops the thread once its lanes close.
pub(crate) struct Md5Lanes {
    shared: Arc<Shared>,
}

/// One MD5 stream. Dropping it without [`Md5Lane::finish`] abandons the stream.
pub(crate) struct Md5Lane {
    shared: Arc<Shared>,
    id: u64,
    room: Arc<Notify>,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
}

#[derive(Default)]
struct State {
    lanes: HashMap<u64, Lane>,
    next_id: u64,
    /// The owner is gone: the thread ends when the last lane closes.
    closed: bool,
    /// The thread is gone (it panicked): lanes fail instead of waiting forever.
    dead: bool,
}

struct Lane {
    md5: Md5State,
    pending: VecDeque<(Instant, Bytes)>,
    /// Bytes handed over and not hashed yet, including a chunk out in a round.
    pending_bytes: usize,
    finish: Option<oneshot::Sender<[u8; 16]>>,
    room: Arc<Notify>,
}

enum Due {
    Now,
    In(Duration),
    Idle,
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn stopped() -> Failure {
    Failure::new(FailureKind::Other, "the MD5 hashing thread stopped")
}

impl Md5Lanes {
    /// Starts the hashing thread.
    pub(crate) fn new() -> std::io::Result<Md5Lanes> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("s3tm-md5".into())
            .spawn(move || {
                let _mark = MarkDead(&thread_shared);
                run(&thread_shared);
            })?;
        Ok(Md5Lanes { shared })
    }

    /// A new, empty MD5 stream.
    pub(crate) fn open(&self) -> Md5Lane {
        let room = Arc::new(Notify::new());
        let mut state = lock(&self.shared);
        let id = state.next_id;
        state.next_id += 1;
        state.lanes.insert(
            id,
            Lane {
                md5: Md5State::new(),
                pending: VecDeque::new(),
                pending_bytes: 0,
                finish: None,
                room: room.clone(),
            },
        );
        Md5Lane {
            shared: self.shared.clone(),
            id,
            room,
        }
    }
}

impl Drop for Md5Lanes {
    fn drop(&mut self) {
        lock(&self.shared).closed = true;
        self.shared.work.notify_all();
    }
}

impl Md5Lane {
    /// Appends `chunk` to the stream; waits while the lane is full.
    pub(crate) async fn push(&self, chunk: Bytes) -> Result<(), Failure> {
        if chunk.is_empty() {
            return Ok(());
        }
        loop {
            {
                let mut state = lock(&self.shared);
                if state.dead {
                    return Err(stopped());
                }
                let lane = state.lanes.get_mut(&self.id).ok_or_else(stopped)?;
                if lane.pending_bytes < MAX_PENDING {
                    // The hasher only needs waking when a round may have become due.
                    let wake =
                        lane.pending.is_empty() || lane.pending_bytes + chunk.len() >= MAX_PENDING;
                    lane.pending_bytes += chunk.len();
                    lane.pending.push_back((Instant::now(), chunk));
                    drop(state);
                    if wake {
                        self.shared.work.notify_one();
                    }
                    return Ok(());
                }
            }
            // A stored permit makes this return at once if the hasher made room meanwhile.
            self.room.notified().await;
        }
    }

    /// The MD5 of everything pushed, once the hasher has caught up.
    pub(crate) async fn finish(self) -> Result<[u8; 16], Failure> {
        let (tx, rx) = oneshot::channel();
        {
            let mut state = lock(&self.shared);
            if state.dead {
                return Err(stopped());
            }
            state.lanes.get_mut(&self.id).ok_or_else(stopped)?.finish = Some(tx);
        }
        self.shared.work.notify_one();
        rx.await.map_err(|_| stopped())
    }
}

impl Drop for Md5Lane {
    fn drop(&mut self) {
        // Finished lanes are already gone; an abandoned one goes now.
        lock(&self.shared).lanes.remove(&self.id);
        self.shared.work.notify_one();
    }
}

/// Marks the lanes dead when the thread ends, by return or by panic, and wakes them.
struct MarkDead<'a>(&'a Shared);

impl Drop for MarkDead<'_> {
    fn drop(&mut self) {
        let mut state = lock(self.0);
        state.dead = true;
        for lane in state.lanes.values_mut() {
            lane.finish = None;
            lane.room.notify_one();
        }
    }
}

impl State {
    fn finish_drained(&mut self) {
        self.lanes.retain(|_, lane| {
            if !lane.pending.is_empty() {
                return true;
            }
            match lane.finish.take() {
                Some(tx) => {
                    let _ = tx.send(lane.md5.finalize());
                    false
                }
                None => true,
            }
        });
    }

    fn due(&self, now: Instant, simd_lanes: usize) -> Due {
        let mut ready = 0;
        let mut oldest: Option<Instant> = None;
        let mut urgent = false;
        for lane in self.lanes.values() {
            let Some((arrived, _)) = lane.pending.front() else {
                continue;
            };
            ready += 1;
            oldest = Some(oldest.map_or(*arrived, |o| o.min(*arrived)));
            urgent |= lane.finish.is_some() || lane.pending_bytes >= MAX_PENDING;
        }
        let Some(oldest) = oldest else {
            return Due::Idle;
        };
        if urgent || ready == self.lanes.len() || ready >= simd_lanes {
            return Due::Now;
        }
        match (oldest + MAX_WAIT).checked_duration_since(now) {
            Some(wait) if !wait.is_zero() => Due::In(wait),
            _ => Due::Now,
        }
    }
}

impl Lane {
    /// Brings the stream to a 64-byte boundary, and consumes a front chunk too short to
    /// share a round, with the single-stream hasher: only whole blocks go in lanes.
    /// Returns how many whole-block bytes the front chunk can give a round.
    fn align(&mut self) -> usize {
        while let Some((_, front)) = self.pending.front_mut() {
            let into_block = (self.md5.bytes_hashed() % 64) as usize;
            let take = if into_block != 0 {
                (64 - into_block).min(front.len())
            } else if front.len() < 64 {
                front.len()
            } else {
                return front.len() / 64 * 64;
            };
            self.md5.update(&front.split_to(take));
            self.pending_bytes -= take;
            if front.is_empty() {
                self.pending.pop_front();
                self.room.notify_one();
            }
        }
        0
    }
}

fn run(shared: &Shared) {
    let engine = Md5Many::new();
    let simd_lanes = engine.lanes().max(1);
    // (lane, its state, whole blocks of its front chunk) for one round.
    let mut round: Vec<(u64, Md5State, Bytes)> = Vec::with_capacity(simd_lanes);
    let mut states: Vec<Md5State> = Vec::with_capacity(simd_lanes);
    let mut state = lock(shared);
    loop {
        state.finish_drained();
        if state.closed && state.lanes.is_empty() {
            return;
        }
        match state.due(Instant::now(), simd_lanes) {
            Due::Idle => {
                state = shared
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            Due::In(wait) => {
                state = shared
                    .work
                    .wait_timeout(state, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            Due::Now => {
                // md5-many's fast kernel wants one full register of lanes, each with the
                // same number of whole blocks and no partial block buffered.
                // With more lanes open than fit, lanes about to block and then the longest
                // waiting go first, so none is left behind.
                let mut candidates: Vec<(bool, Instant, u64, usize)> = Vec::new();
                for (id, lane) in &mut state.lanes {
                    let blocks = lane.align();
                    if let Some((arrived, _)) = lane.pending.front()
                        && blocks > 0
                    {
                        let urgent = lane.finish.is_some() || lane.pending_bytes >= MAX_PENDING;
                        candidates.push((!urgent, *arrived, *id, blocks));
                    }
                }
                candidates.sort_unstable();
                let mut len = MAX_ROUND_BYTES;
                for (_, _, id, blocks) in candidates.into_iter().take(simd_lanes) {
                    if let Some(lane) = state.lanes.get(&id) {
                        len = len.min(blocks);
                        round.push((id, lane.md5, Bytes::new()));
                    }
                }
                for (id, _, slice) in &mut round {
                    if let Some((_, front)) = state
                        .lanes
                        .get_mut(id)
                        .and_then(|lane| lane.pending.front_mut())
                    {
                        *slice = front.split_to(len);
                    }
                }
                drop(state);
                if let [(_, md5, slice)] = &mut round[..] {
                    md5.update(slice);
                } else if !round.is_empty() {
                    // Lanes nobody uses hash a copy of the first slice, into states thrown away.
                    states.extend(round.iter().map(|r| r.1));
                    states.resize(simd_lanes, Md5State::new());
                    let mut inputs: Vec<&[u8]> = round.iter().map(|r| &r.2[..]).collect();
                    inputs.resize(simd_lanes, &round[0].2[..]);
                    engine.update_many(&mut states, &inputs);
                    drop(inputs);
                    for (r, md5) in round.iter_mut().zip(states.drain(..)) {
                        r.1 = md5;
                    }
                    states.clear();
                }
                state = lock(shared);
                for (id, md5, slice) in round.drain(..) {
                    // A lane dropped meanwhile is simply gone.
                    if let Some(lane) = state.lanes.get_mut(&id) {
                        lane.md5 = md5;
                        lane.pending_bytes -= slice.len();
                        if lane.pending.front().is_some_and(|(_, f)| f.is_empty()) {
                            lane.pending.pop_front();
                        }
                        lane.room.notify_one();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};
    use proptest::prelude::*;

    fn reference(data: &[u8]) -> [u8; 16] {
        Md5::digest(data).into()
    }

    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..len).map(|_| rng.u8(..)).collect()
    }

    /// Streams of odd lengths, pushed in odd chunks from concurrent tasks, some of them
    /// slow, give the MD5 a single-stream hasher gives.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_streams_match_the_reference() {
        let lanes = Arc::new(Md5Lanes::new().unwrap());
        let mut tasks = Vec::new();
        // More lanes than one AVX2 register holds, so rounds must choose fairly.
        for i in 0..20u64 {
            let lanes = lanes.clone();
            tasks.push(tokio::spawn(async move {
                let len = [0, 1, 63, 64, 65, 1000, 4 << 20, (9 << 20) + 7][(i % 8) as usize];
                let data = Bytes::from(bytes(len, i));
                let lane = lanes.open();
                let mut rng = fastrand::Rng::with_seed(i + 100);
                let mut at = 0;
                while at < data.len() {
                    let n = rng.usize(1..=(2 << 20)).min(data.len() - at);
                    lane.push(data.slice(at..at + n)).await.unwrap();
                    at += n;
                    if i % 3 == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                (lane.finish().await.unwrap(), reference(&data))
            }));
        }
        for task in tasks {
            let (got, want) = task.await.unwrap();
            assert_eq!(got, want);
        }
    }

    /// Every length from 0 to 200 bytes and those around the 4 and 8 KiB marks, all
    /// open at once (far more lanes than a register holds), pushed in 7-byte chunks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_short_length_at_once() {
        let lanes = Md5Lanes::new().unwrap();
        let lengths: Vec<usize> = (0..=200)
            .chain([4095, 4096, 4097, 8191, 8192, 8193])
            .collect();
        let data: Vec<Bytes> = lengths
            .iter()
            .map(|&len| Bytes::from(bytes(len, len as u64)))
            .collect();
        let open: Vec<Md5Lane> = data.iter().map(|_| lanes.open()).collect();
        for at in (0..=8193).step_by(7) {
            for (lane, d) in open.iter().zip(&data) {
                if at < d.len() {
                    lane.push(d.slice(at..(at + 7).min(d.len()))).await.unwrap();
                }
            }
        }
        let finishing: Vec<_> = open
            .into_iter()
            .map(|lane| tokio::spawn(lane.finish()))
            .collect();
        for (task, d) in finishing.into_iter().zip(&data) {
            assert_eq!(
                task.await.unwrap().unwrap(),
                reference(d),
                "{} bytes",
                d.len()
            );
        }
    }

    /// Lengths on and beside MD5's boundaries (55 and 56 bytes: whether the length still
    /// fits in the last block; 63, 64, 65: a block ends), and any up to 6 KiB.
    fn length() -> impl Strategy<Value = usize> {
        prop_oneof![
            0..=6144usize,
            prop::sample::select(vec![
                0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 121, 127, 128, 129, 1023, 1024, 1025,
            ]),
            (1..=96usize, 0..=2usize).prop_map(|(blocks, d)| blocks * 64 + d - 1),
        ]
    }

    /// One stream: its length, the seed of its bytes, and the sizes of the chunks it is
    /// pushed in (cycled), small ones that split blocks and large ones that span many.
    fn stream() -> impl Strategy<Value = (usize, u64, Vec<usize>)> {
        (
            length(),
            any::<u64>(),
            prop::collection::vec(prop_oneof![1..=70usize, 1..=4096usize], 1..=6),
        )
    }

    proptest! {
        /// Differential: up to 24 streams through the lanes at once, their chunks
        /// interleaved, give the digests the md-5 crate gives each stream alone.
        #[test]
        fn lanes_agree_with_md5_crate(streams in prop::collection::vec(stream(), 1..=24)) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let lanes = Md5Lanes::new().unwrap();
            let data: Vec<Bytes> = streams
                .iter()
                .map(|&(len, seed, _)| Bytes::from(bytes(len, seed)))
                .collect();
            let got = rt.block_on(async {
                let open: Vec<Md5Lane> = data.iter().map(|_| lanes.open()).collect();
                let mut at = vec![0usize; data.len()];
                for round in 0.. {
                    let mut pushed = false;
                    for (i, lane) in open.iter().enumerate() {
                        let sizes = &streams[i].2;
                        if at[i] < data[i].len() {
                            let n = sizes[round % sizes.len()].min(data[i].len() - at[i]);
                            lane.push(data[i].slice(at[i]..at[i] + n)).await.unwrap();
                            at[i] += n;
                            pushed = true;
                        }
                    }
                    if !pushed {
                        break;
                    }
                }
                let finishing: Vec<_> = open
                    .into_iter()
                    .map(|lane| tokio::spawn(lane.finish()))
                    .collect();
                let mut digests = Vec::new();
                for task in finishing {
                    digests.push(task.await.unwrap().unwrap());
                }
                digests
            });
            for (i, d) in data.iter().enumerate() {
                prop_assert_eq!(got[i], reference(d), "stream {} of {} bytes", i, d.len());
            }
        }
    }

    /// An abandoned lane neither blocks the others nor keeps the thread alive.
    #[tokio::test]
    async fn abandoned_lanes_do_not_block_others() {
        let lanes = Md5Lanes::new().unwrap();
        let abandoned = lanes.open();
        abandoned.push(Bytes::from(bytes(5000, 1))).await.unwrap();
        let lane = lanes.open();
        let data = bytes(70_000, 2);
        lane.push(Bytes::from(data.clone())).await.unwrap();
        drop(abandoned);
        assert_eq!(lane.finish().await.unwrap(), reference(&data));
        let shared = lanes.shared.clone();
        drop(lanes);
        for _ in 0..200 {
            if lock(&shared).dead {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the hashing thread did not stop after its owner and lanes were dropped");
    }
}
