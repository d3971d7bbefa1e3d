//! Measuring one client process: wall time, CPU (user + sys) and peak RSS.
//!
//! The client runs under a fresh copy of this binary (`xtask __measure`), which spawns
//! it, waits for it and reads `getrusage(RUSAGE_CHILDREN)`. Because that wrapper has no
//! other child, the figures are the client's alone (and its own children's, which a
//! client waits for): `ru_maxrss` of the children of a long-lived process would be the
//! largest of all of them, cargo's included, so it is never read here.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::resource::{Usage, UsageWho, getrusage};

/// What one client process used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ClientUsage {
    pub(crate) wall: Duration,
    pub(crate) user: Duration,
    pub(crate) sys: Duration,
    pub(crate) max_rss_kib: u64,
    /// Exit code, `-1` when killed by a signal.
    pub(crate) code: i32,
}

impl ClientUsage {
    pub(crate) fn cpu(&self) -> Duration {
        self.user + self.sys
    }

    fn encode(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.wall.as_nanos(),
            self.user.as_micros(),
            self.sys.as_micros(),
            self.max_rss_kib,
            self.code
        )
    }

    fn decode(text: &str) -> Option<ClientUsage> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [wall, user, sys, rss, code] = fields.as_slice() else {
            return None;
        };
        Some(ClientUsage {
            wall: Duration::from_nanos(wall.parse().ok()?),
            user: Duration::from_micros(user.parse().ok()?),
            sys: Duration::from_micros(sys.parse().ok()?),
            max_rss_kib: rss.parse().ok()?,
            code: code.parse().ok()?,
        })
    }
}

fn duration(tv: nix::sys::time::TimeVal) -> Duration {
    let micros = i128::from(tv.tv_sec()) * 1_000_000 + i128::from(tv.tv_usec());
    Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

fn cpu_of(usage: &Usage) -> Duration {
    duration(usage.user_time()) + duration(usage.system_time())
}

/// CPU time this process has used so far (all threads): the in-process server's share.
pub(crate) fn self_cpu() -> anyhow::Result<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_SELF).context("getrusage(RUSAGE_SELF)")?;
    Ok(cpu_of(&usage))
}

/// CPU time of the whole machine so far (every process, every core), from `/proc/stat`,
/// so that work by other processes during a run can be told apart.
pub(crate) fn machine_cpu() -> Option<Duration> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    // user nice system idle iowait irq softirq steal ...; busy = all but idle and iowait.
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let busy: u64 = ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, v)| v)
        .sum();
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis(busy * 10))
}

/// `xtask __measure RESULT_FILE -- PROGRAM ARGS...`: runs the program with this
/// process's stdio and environment, then writes its usage to RESULT_FILE.
pub(crate) fn run_wrapper(args: &[String]) -> anyhow::Result<()> {
    let [out, dashdash, program, rest @ ..] = args else {
        bail!("usage: xtask __measure RESULT_FILE -- PROGRAM [ARGS...]");
    };
    if dashdash != "--" {
        bail!("usage: xtask __measure RESULT_FILE -- PROGRAM [ARGS...]");
    }
    let started = Instant::now();
    let status = Command::new(program)
        .args(rest)
        .status()
        .with_context(|| format!("cannot start `{program}`"))?;
    let wall = started.elapsed();
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage(RUSAGE_CHILDREN)")?;
    let measured = ClientUsage {
        wall,
        user: duration(usage.user_time()),
        sys: duration(usage.system_time()),
        // Linux reports kilobytes (KiB).
        max_rss_kib: u64::try_from(usage.max_rss()).unwrap_or(0),
        code: status.code().unwrap_or(-1),
    };
    fs::write(out, measured.encode()).with_context(|| format!("cannot write {out}"))?;
    Ok(())
}

/// Where a client's standard input comes from and its standard output goes (a pipe's
/// ends: `cp - ...` reads the file, `cp ... -` writes it); by default neither.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stdio<'a> {
    pub(crate) stdin: Option<&'a Path>,
    pub(crate) stdout: Option<&'a Path>,
}

/// Runs `command` (already given its program, arguments and environment) under the
/// wrapper and returns what it used, with its captured stderr.
pub(crate) fn measure(
    program: &str,
    args: &[String],
    envs: &[(String, String)],
    env_remove: &[&str],
    result_file: &Path,
    stdio: Stdio<'_>,
) -> anyhow::Result<(ClientUsage, String)> {
    let exe = std::env::current_exe().context("cannot find the xtask binary")?;
    let _ = fs::remove_file(result_file);
    let mut command = Command::new(exe);
    command
        .arg("__measure")
        .arg(result_file)
        .arg("--")
        .arg(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)));
    for key in env_remove {
        command.env_remove(key);
    }
    // The wrapper's stdio is the client's. A pipe's ends are real pipes, fed from and
    // drained into the file by threads of this process (the producer and consumer a
    // shell pipeline would run), so the client meets a pipe's reads and back-pressure.
    use std::process::Stdio as Std;
    command
        .stdin(if stdio.stdin.is_some() {
            Std::piped()
        } else {
            Std::null()
        })
        .stdout(if stdio.stdout.is_some() {
            Std::piped()
        } else {
            Std::null()
        })
        .stderr(Std::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run `{program}` under the measuring wrapper"))?;
    let feeder = match (stdio.stdin, child.stdin.take()) {
        (Some(path), Some(mut pipe)) => {
            let mut file =
                fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            // A client that stops reading ends the copy with a broken pipe: not an error
            // of the measurement (the client's own exit status says what happened).
            Some(std::thread::spawn(move || {
                let _ = std::io::copy(&mut file, &mut pipe);
            }))
        }
        _ => None,
    };
    let drainer = match (stdio.stdout, child.stdout.take()) {
        (Some(path), Some(mut pipe)) => {
            let mut file = fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            Some(std::thread::spawn(move || {
                std::io::copy(&mut pipe, &mut file)
            }))
        }
        _ => None,
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr)
            .context("cannot read the client's stderr")?;
    }
    let status = child.wait().context("waiting for the measuring wrapper")?;
    if let Some(t) = feeder {
        let _ = t.join();
    }
    if let Some(t) = drainer {
        t.join()
            .map_err(|_| anyhow::anyhow!("the stdout drain thread panicked"))?
            .context("cannot write the client's stdout")?;
    }
    if !status.success() {
        bail!("the measuring wrapper failed ({status}): {stderr}");
    }
    let text = fs::read_to_string(result_file)
        .with_context(|| format!("the wrapper wrote no {}", result_file.display()))?;
    let usage = ClientUsage::decode(&text)
        .with_context(|| format!("cannot read the wrapper's result `{text}`"))?;
    Ok((usage, stderr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_round_trips_through_the_result_file_format() {
        let usage = ClientUsage {
            wall: Duration::from_nanos(1_234_567_891),
            user: Duration::from_micros(700_001),
            sys: Duration::from_micros(300_002),
            max_rss_kib: 65_536,
            code: 0,
        };
        assert_eq!(ClientUsage::decode(&usage.encode()), Some(usage));
        assert_eq!(ClientUsage::decode("1 2 3"), None);
    }

    #[test]
    fn the_wrapper_measures_a_child() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("usage");
        let args: Vec<String> = [out.to_str().expect("utf-8 path"), "--", "true"]
            .map(str::to_owned)
            .to_vec();
        run_wrapper(&args).expect("wrapper");
        let usage =
            ClientUsage::decode(&fs::read_to_string(&out).expect("result")).expect("decodes");
        assert_eq!(usage.code, 0);
        assert!(usage.max_rss_kib > 0);
    }
}
