//! What `md5_lanes` buys: the MD5s of several ranges of a download at once, as the driver
//! needs them when a multipart ETag is the only check, hashed
//!
//! - `lanes`: through `Md5Lanes` (md5-many, the streams side by side in SIMD lanes on
//!   one hashing thread), fed by one tokio task per stream as `exec.rs` feeds it;
//! - `md5_one_thread`: with the plain `md-5` crate (its `asm` feature, as the workspace
//!   builds it), one stream after the other on one thread: the CPU cost of the bytes;
//! - `md5_blocking_pool`: with `md-5`, one `spawn_blocking` task per stream, as the
//!   driver would hash ranges without lanes (as wide as the machine's cores).
//!
//! Each stream is 8 MiB, pushed in 64 KiB chunks; 4 and 8 streams. Run with
//! `cargo bench -p transfer-manager --bench md5`; `-- --cpu` instead prints wall and CPU
//! seconds per GiB of the same workloads (process CPU from `/proc/self/stat`, Linux).
//!
//! `md5_lanes.rs` is private to the crate; it is compiled into this benchmark as a module
//! of its own, unchanged.

#[path = "../src/md5_lanes.rs"]
#[allow(dead_code, unreachable_pub, unused_imports)]
mod md5_lanes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use divan::Bencher;
use divan::counter::BytesCount;
use md5::{Digest as _, Md5};
use md5_lanes::Md5Lanes;
use tokio::runtime::Runtime;

const STREAM_BYTES: usize = 8 << 20;
const CHUNK_BYTES: usize = 64 << 10;
const STREAMS: &[usize] = &[4, 8];

fn main() {
    if std::env::args().any(|a| a == "--cpu") {
        cpu_report();
    } else {
        divan::main();
    }
}

/// A runtime like the driver's on this machine: as many workers as cores.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// `n` streams of incompressible bytes, each already cut into chunks (as hyper hands
/// frames over: cheap clones of one buffer).
fn streams(n: usize) -> Vec<Vec<Bytes>> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            let mut data = vec![0u8; STREAM_BYTES];
            for word in data.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                word.copy_from_slice(&x.to_le_bytes());
            }
            let data = Bytes::from(data);
            (0..STREAM_BYTES)
                .step_by(CHUNK_BYTES)
                .map(|at| data.slice(at..(at + CHUNK_BYTES).min(STREAM_BYTES)))
                .collect()
        })
        .collect()
}

fn hash_lanes(rt: &Runtime, lanes: &Arc<Md5Lanes>, input: &[Vec<Bytes>]) -> Vec<[u8; 16]> {
    rt.block_on(async {
        let tasks: Vec<_> = input
            .iter()
            .map(|chunks| {
                let lane = lanes.open();
                let chunks = chunks.clone();
                tokio::spawn(async move {
                    for chunk in chunks {
                        lane.push(chunk).await.expect("the hashing thread runs");
                    }
                    lane.finish().await.expect("the hashing thread runs")
                })
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(task.await.expect("no task panics"));
        }
        out
    })
}

fn md5_of(chunks: &[Bytes]) -> [u8; 16] {
    let mut h = Md5::new();
    for chunk in chunks {
        h.update(chunk);
    }
    h.finalize().into()
}

fn hash_one_thread(input: &[Vec<Bytes>]) -> Vec<[u8; 16]> {
    input.iter().map(|chunks| md5_of(chunks)).collect()
}

fn hash_blocking_pool(rt: &Runtime, input: &[Vec<Bytes>]) -> Vec<[u8; 16]> {
    rt.block_on(async {
        let tasks: Vec<_> = input
            .iter()
            .map(|chunks| {
                let chunks = chunks.clone();
                tokio::task::spawn_blocking(move || md5_of(&chunks))
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(task.await.expect("no task panics"));
        }
        out
    })
}

#[divan::bench(args = STREAMS, sample_count = 20)]
fn lanes(bencher: Bencher, n: usize) {
    let input = streams(n);
    let rt = runtime();
    let lanes = Arc::new(Md5Lanes::new().expect("a hashing thread"));
    assert_eq!(hash_lanes(&rt, &lanes, &input), hash_one_thread(&input));
    bencher
        .counter(BytesCount::new(n * STREAM_BYTES))
        .bench_local(|| hash_lanes(&rt, &lanes, &input));
}

#[divan::bench(args = STREAMS, sample_count = 20)]
fn md5_one_thread(bencher: Bencher, n: usize) {
    let input = streams(n);
    bencher
        .counter(BytesCount::new(n * STREAM_BYTES))
        .bench_local(|| hash_one_thread(&input));
}

#[divan::bench(args = STREAMS, sample_count = 20)]
fn md5_blocking_pool(bencher: Bencher, n: usize) {
    let input = streams(n);
    let rt = runtime();
    bencher
        .counter(BytesCount::new(n * STREAM_BYTES))
        .bench_local(|| hash_blocking_pool(&rt, &input));
}

/// User + system CPU of this process so far (every thread), from `/proc/self/stat`.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_second: u64 = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())?;
    Some(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// Wall and CPU seconds per GiB of each workload, over about 4 GiB each.
fn cpu_report() {
    const ROUNDS_BYTES: usize = 4 << 30;
    let rt = runtime();
    let lanes = Arc::new(Md5Lanes::new().expect("a hashing thread"));
    println!("workload                 streams  wall s/GiB  CPU s/GiB  GiB/s");
    for &n in STREAMS {
        let input = streams(n);
        let rounds = ROUNDS_BYTES / (n * STREAM_BYTES);
        let gib = (rounds * n * STREAM_BYTES) as f64 / f64::from(1u32 << 30);
        let measure = |name: &str, run: &mut dyn FnMut()| {
            let (cpu0, t0) = (process_cpu(), Instant::now());
            for _ in 0..rounds {
                run();
            }
            let wall = t0.elapsed().as_secs_f64();
            let cpu = process_cpu()
                .zip(cpu0)
                .map(|(b, a)| format!("{:9.3}", (b - a).as_secs_f64() / gib))
                .unwrap_or_else(|| "        -".to_owned());
            println!(
                "{name:<24} {n:>7}  {:>10.3}  {cpu}  {:>5.2}",
                wall / gib,
                gib / wall
            );
        };
        measure("lanes (md5-many)", &mut || {
            divan::black_box(hash_lanes(&rt, &lanes, &input));
        });
        measure("md-5, one thread", &mut || {
            divan::black_box(hash_one_thread(&input));
        });
        measure("md-5, blocking pool", &mut || {
            divan::black_box(hash_blocking_pool(&rt, &input));
        });
    }
}
