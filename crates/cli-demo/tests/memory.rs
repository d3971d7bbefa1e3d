//! `--max-memory` bounds the peak memory of an upload whatever `--part-size`: the real
//! `s3tm`, its peak RSS read from `/proc/PID/status` (`VmHWM`, which only grows) while it
//! runs.
#![cfg(target_os = "linux")]

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const MIB: u64 = 1 << 20;

/// `VmHWM` of process `pid` in bytes, while it exists.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_larger_than_max_memory_stay_out_of_memory() {
    let server = s3_testkit::start_s3s_fs().await;
    server.create_bucket("bucket").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("home")).unwrap();

    // 160 MiB in parts of 64 MiB: holding the parts in flight would take 160 MiB, and
    // even one part 64 MiB.
    const PART: u64 = 64 * MIB;
    let src = dir.path().join("src");
    let mut hasher = Sha256::new();
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut block = vec![0u8; MIB as usize];
        for _ in 0..160 {
            for chunk in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes());
            }
            hasher.update(&block);
            f.write_all(&block).unwrap();
        }
    }
    let digest = hasher.finalize();

    let mut child = Command::new(env!("CARGO_BIN_EXE_s3tm"))
        .env_clear()
        .env("HOME", dir.path().join("home"))
        .env("AWS_ACCESS_KEY_ID", server.access_key())
        .env("AWS_SECRET_ACCESS_KEY", server.secret_key())
        .env("AWS_REGION", server.region())
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--endpoint-url")
        .arg(server.endpoint())
        .args(["--path-style", "cp"])
        .arg(&src)
        .args(["s3://bucket/k", "--no-progress", "--quiet"])
        .args(["--part-size", "64MiB", "--max-memory", "16MiB"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("s3tm starts");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut peak = 0;
    let status = loop {
        if let Some(bytes) = peak_rss(pid) {
            peak = peak.max(bytes);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "s3tm did not finish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "s3tm failed: {stderr}");

    let stored = std::fs::read(server.root().join("bucket").join("k")).unwrap();
    assert!(
        Sha256::digest(&stored) == digest,
        "the stored object differs"
    );
    assert!(peak > 0, "no VmHWM read");
    assert!(
        peak < PART,
        "peak RSS {} MiB: a part of {} MiB was held in memory",
        peak / MIB,
        PART / MIB
    );
    eprintln!("peak RSS {:.1} MiB", peak as f64 / MIB as f64);
}
