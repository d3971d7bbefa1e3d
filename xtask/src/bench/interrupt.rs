//! What an interruption costs: s3tm is stopped a third of the way through a transfer
//! (SIGINT, which pauses it, or SIGKILL, which gives it no say), the same `s3tm cp` is run
//! again and resumes, and a byte-counting proxy between s3tm and the server tells how
//! many body bytes crossed the wire in both runs together. Everything above the file's
//! size was sent twice; the target is at most one part for each request in flight.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use s3_testkit::{BodyBytes, FaultProxy};

use super::{BUCKET, Direction, ENV_REMOVE, Env, MIB, TestFile, same_contents};

/// Requests in flight and part size of the interrupted transfers, given explicitly so
/// that the limit below does not depend on s3tm's defaults.
const CONCURRENCY: u64 = 8;
const PART_SIZE: u64 = 8 * MIB;
/// Bytes that may be sent again: one part for each request in flight.
pub(crate) const LIMIT_BYTES: u64 = CONCURRENCY * PART_SIZE;
/// How long one run may take before the benchmark gives up on it.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// How s3tm is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Ctrl-C: s3tm pauses, letting the requests in flight finish, and exits with 130.
    Int,
    /// `kill -9`: the requests in flight are lost with the process.
    Kill,
}

impl Stop {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Stop::Int => "SIGINT",
            Stop::Kill => "SIGKILL",
        }
    }
}

/// One interrupted and resumed transfer (its direction and signal are reported beside it).
#[derive(Debug, Clone)]
pub(crate) struct Interruption {
    pub(crate) size_bytes: u64,
    /// Body bytes that had crossed when the signal was sent.
    pub(crate) at_signal: u64,
    /// Body bytes of the interrupted run, in all.
    pub(crate) first: u64,
    /// Body bytes of the run that resumed it.
    pub(crate) second: u64,
    /// Bytes the resumed run read back from the local file and checked against their
    /// recorded hashes before trusting them, and the wall time that took.
    pub(crate) rechecked: u64,
    pub(crate) recheck_secs: f64,
}

impl Interruption {
    /// Seconds of re-checking per GiB re-checked, when anything was.
    pub(crate) fn recheck_secs_per_gib(&self) -> Option<f64> {
        (self.rechecked > 0)
            .then(|| self.recheck_secs / (self.rechecked as f64 / (1u64 << 30) as f64))
    }

    /// Bytes that crossed the wire twice.
    pub(crate) fn resent(&self) -> u64 {
        (self.first + self.second).saturating_sub(self.size_bytes)
    }
}

/// Interrupts and resumes an upload and a download of `file` with each signal. The
/// download reads `file`'s object, which the comparison has put.
pub(crate) fn run_all(
    runtime: &tokio::runtime::Runtime,
    env: &Env,
    s3tm: &str,
    file: &TestFile,
) -> Vec<(Direction, Stop, Result<Interruption, String>)> {
    let proxy = match runtime.block_on(FaultProxy::try_start(&env.endpoint)) {
        Ok(proxy) => proxy,
        Err(e) => {
            let why = format!("cannot start the counting proxy: {e}");
            return [Direction::Up, Direction::Down]
                .into_iter()
                .flat_map(|d| [Stop::Int, Stop::Kill].map(|s| (d, s, Err(why.clone()))))
                .collect();
        }
    };
    let mut out = Vec::new();
    for direction in [Direction::Up, Direction::Down] {
        for stop in [Stop::Int, Stop::Kill] {
            let result =
                one(&proxy, env, s3tm, file, direction, stop).map_err(|e| format!("{e:#}"));
            match &result {
                Ok(r) => println!(
                    "==> s3tm {} interrupted by {}: {:.1} MiB moved at the signal, {:.1} + {:.1} \
                     MiB in the two runs, {:.1} MiB sent twice (limit {:.0} MiB); {:.1} MiB \
                     carried over re-checked in {:.2} s",
                    direction.name(),
                    stop.name(),
                    mib(r.at_signal),
                    mib(r.first),
                    mib(r.second),
                    mib(r.resent()),
                    mib(LIMIT_BYTES),
                    mib(r.rechecked),
                    r.recheck_secs
                ),
                Err(e) => println!(
                    "==> s3tm {} interrupted by {}: FAILED: {e}",
                    direction.name(),
                    stop.name()
                ),
            }
            out.push((direction, stop, result));
        }
    }
    drop(proxy);
    out
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

fn moved(proxy: &FaultProxy, direction: Direction, since: BodyBytes) -> u64 {
    let now = proxy.body_bytes();
    match direction {
        Direction::Up => now.to_server - since.to_server,
        Direction::Down => now.to_client - since.to_client,
    }
}

/// [`moved`] once it has not changed for 200 ms (at most 5 s).
fn settled(proxy: &FaultProxy, direction: Direction, since: BodyBytes) -> u64 {
    let give_up = Instant::now() + Duration::from_secs(5);
    let mut last = moved(proxy, direction, since);
    let mut quiet = 0;
    while quiet < 4 && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(50));
        let now = moved(proxy, direction, since);
        quiet = if now == last { quiet + 1 } else { 0 };
        last = now;
    }
    last
}

fn one(
    proxy: &FaultProxy,
    env: &Env,
    s3tm: &str,
    file: &TestFile,
    direction: Direction,
    stop: Stop,
) -> anyhow::Result<Interruption> {
    let tag = format!("{}-{}", direction.name(), stop.name());
    let state = env.dir.join(format!("state-interrupt-{tag}"));
    let dest = env.dir.join(format!("interrupted-{tag}.bin"));
    let key = format!("interrupted/{tag}.bin");
    let (from, to, written) = match direction {
        Direction::Up => (
            file.path.to_string_lossy().into_owned(),
            format!("s3://{BUCKET}/{key}"),
            env.server_root.join(BUCKET).join(&key),
        ),
        Direction::Down => (
            format!("s3://{BUCKET}/{}", file.key),
            dest.to_string_lossy().into_owned(),
            dest.clone(),
        ),
    };
    let args = [
        "cp".to_owned(),
        from,
        to,
        "--endpoint-url".to_owned(),
        proxy.endpoint(),
        "--path-style".to_owned(),
        "--no-progress".to_owned(),
        "--concurrency".to_owned(),
        CONCURRENCY.to_string(),
        "--part-size".to_owned(),
        PART_SIZE.to_string(),
        "--state-dir".to_owned(),
        state.to_string_lossy().into_owned(),
    ];
    let _ = fs::remove_file(&dest);
    let log = |run: &str| env.dir.join(format!("interrupt-{tag}-{run}.log"));

    // 1. Start, and stop it a third of the way through.
    let start = proxy.body_bytes();
    let mut child = spawn(env, s3tm, &args, &log("first"))?;
    let deadline = Instant::now() + RUN_TIMEOUT;
    let at_signal = loop {
        let n = moved(proxy, direction, start);
        if n >= file.size_bytes / 3 {
            break n;
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "s3tm finished ({status}) before a third of the file had moved ({n} bytes); \
                 see {}",
                log("first").display()
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("s3tm moved {n} bytes in {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let status = match stop {
        Stop::Int => {
            let pid = i32::try_from(child.id()).context("pid out of range")?;
            kill(Pid::from_raw(pid), Signal::SIGINT).context("cannot send SIGINT")?;
            child.wait()?
        }
        Stop::Kill => {
            child.kill().context("cannot send SIGKILL")?;
            child.wait()?
        }
    };
    match (stop, status.code()) {
        (Stop::Int, Some(130)) | (Stop::Kill, None) => {}
        (_, code) => bail!(
            "s3tm's first run ended with {code:?} after {}; see {}",
            stop.name(),
            log("first").display()
        ),
    }
    // A killed process's socket still delivers what it had buffered: count that with
    // the run it belongs to.
    let first = settled(proxy, direction, start);

    // 2. The same command again resumes it (its `--json` summary says what it re-checked).
    let second_start = proxy.body_bytes();
    let mut again = args.to_vec();
    again.push("--json".to_owned());
    let mut child = spawn(env, s3tm, &again, &log("second"))?;
    let status = wait_until(&mut child, deadline)?;
    if !status.success() {
        bail!(
            "resuming failed ({status}); see {}",
            log("second").display()
        );
    }
    let second = moved(proxy, direction, second_start);
    if !same_contents(&file.path, &written)? {
        bail!(
            "after the resume, {} differs from the source",
            written.display()
        );
    }
    let _ = fs::remove_file(&dest);
    let completed = completed_line(&log("second"))?;
    Ok(Interruption {
        size_bytes: file.size_bytes,
        at_signal,
        first,
        second,
        rechecked: completed["bytes_rechecked"].as_u64().unwrap_or(0),
        recheck_secs: completed["recheck_secs"].as_f64().unwrap_or(0.0),
    })
}

/// The `completed` JSON line of an s3tm run's log.
fn completed_line(log: &Path) -> anyhow::Result<serde_json::Value> {
    let text = fs::read_to_string(log).with_context(|| format!("cannot read {}", log.display()))?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "completed")
        .with_context(|| format!("no `completed` line in {}", log.display()))
}

fn spawn(env: &Env, s3tm: &str, args: &[String], log: &Path) -> anyhow::Result<Child> {
    let out = fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut command = Command::new(s3tm);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    for name in ENV_REMOVE {
        command.env_remove(name);
    }
    command.envs(env.vars());
    command
        .spawn()
        .with_context(|| format!("cannot run {s3tm}"))
}

fn wait_until(child: &mut Child, deadline: Instant) -> anyhow::Result<std::process::ExitStatus> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("s3tm did not finish in {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The limit, in words, for the report.
pub(crate) fn describe_limit() -> String {
    format!(
        "{CONCURRENCY} requests in flight × {} MiB parts = {} MiB",
        PART_SIZE / MIB,
        LIMIT_BYTES / MIB
    )
}
