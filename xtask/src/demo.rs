//! `cargo xtask demo`: the real `s3tm` binary against an embedded S3 server, interrupted
//! twice and resumed twice, with the result checked byte for byte.
//!
//! 1. Builds s3tm, starts s3s-fs (verifying SigV4 signatures, behind s3-testkit's parts
//!    shim) in this process on 127.0.0.1 over a temporary directory, creates the bucket
//!    `demo` and writes a 256 MiB random file.
//! 2. `s3tm cp FILE s3://demo/big.bin`, sent SIGINT once `s3tm ls --json` shows bytes
//!    done: it pauses and exits 130. The same `s3tm cp` again resumes it.
//! 3. `s3tm cp s3://demo/big.bin COPY`, killed with SIGKILL once bytes are done;
//!    `s3tm resume ID` finishes it.
//! 4. Compares SHA-256 of the source, the stored object and the copy; prints a table and
//!    fails unless everything verified.
//!
//! The server runs in xtask's process, as `bench`'s does: xtask links s3-testkit anyway,
//! so the demo builds nothing but s3tm. xtask links no part of the transfer stack; it
//! runs the binary.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::flags::UsageError;
use crate::step::Step;

const MIB: u64 = 1 << 20;
const BUCKET: &str = "demo";
const KEY: &str = "big.bin";
const TIMEOUT: Duration = Duration::from_secs(600);
/// The file size unless `--size-mib` says otherwise.
const DEFAULT_SIZE_MIB: u64 = 256;

/// `cargo xtask demo` options.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DemoOptions {
    pub(crate) release: bool,
    pub(crate) size_mib: Option<u64>,
}

pub(crate) fn parse(mut rest: &[String]) -> Result<DemoOptions, UsageError> {
    let mut options = DemoOptions {
        release: false,
        size_mib: None,
    };
    while let Some((arg, tail)) = rest.split_first() {
        rest = tail;
        match arg.as_str() {
            "--release" => options.release = true,
            "--size-mib" => {
                let value = rest.first().map(String::as_str).unwrap_or_default();
                rest = rest.get(1..).unwrap_or_default();
                match value.parse::<u64>() {
                    Ok(n) if n >= 16 => options.size_mib = Some(n),
                    _ => {
                        return Err(UsageError(format!(
                            "`--size-mib` needs a number of MiB, at least 16, got `{value}`"
                        )));
                    }
                }
            }
            other => return Err(UsageError(format!("unknown option `{other}` for `demo`"))),
        }
    }
    Ok(options)
}

pub(crate) fn run(options: &DemoOptions) -> anyhow::Result<()> {
    let profile = if options.release {
        "release build"
    } else {
        "debug build; `cargo xtask demo --release` runs an optimised one"
    };
    println!("==> s3tm for the demo: {profile}");
    build_step(options.release).run()?;
    let s3tm = crate::bench::target_dir(&crate::project_root())
        .join(if options.release { "release" } else { "debug" })
        .join(format!("s3tm{}", std::env::consts::EXE_SUFFIX));
    ensure!(
        s3tm.is_file(),
        "{} does not exist after the build",
        s3tm.display()
    );
    let opts = Options {
        s3tm,
        size: options.size_mib.unwrap_or(DEFAULT_SIZE_MIB) * MIB,
    };
    match run_demo(&opts) {
        Ok(()) => {
            println!("\ndemo passed: every byte verified");
            Ok(())
        }
        Err(e) => Err(e.context("demo FAILED")),
    }
}

fn build_step(release: bool) -> Step {
    let mut build = vec!["build"];
    if release {
        build.push("--release");
    }
    build.extend(["-p", "cli-demo", "--bin", "s3tm"]);
    Step::cargo("build", build)
}

struct Options {
    s3tm: PathBuf,
    size: u64,
}

/// One row of the final table.
struct Row {
    step: &'static str,
    sent: u64,
    resent: Option<u64>,
    time: Duration,
}

fn run_demo(opts: &Options) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // With s3-testkit's parts shim, s3s-fs echoes part checksums and answers partNumber
    // as S3 does, so every transfer can be verified.
    let server = runtime.block_on(s3_testkit::try_start_s3s_fs_with_parts())?;
    server.create_bucket(BUCKET)?;
    let work = tempfile::Builder::new().prefix("s3tm-demo-").tempdir()?;
    let env = Env {
        s3tm: opts.s3tm.clone(),
        endpoint: server.endpoint(),
        access_key: server.access_key().to_owned(),
        secret_key: server.secret_key().to_owned(),
        region: server.region().to_owned(),
        dir: work.path().to_owned(),
    };
    println!("s3tm:     {}", opts.s3tm.display());
    println!(
        "server:   s3s-fs with s3-testkit's parts shim at {} (SigV4 verified), bucket `{BUCKET}`, storage {}",
        env.endpoint,
        server.root().display()
    );
    println!("work dir: {} (files and checkpoints)", env.dir.display());

    let src = env.dir.join("source.bin");
    let started = Instant::now();
    random_file(&src, opts.size)?;
    let src_sha = sha256(&src)?;
    println!(
        "source:   {} MiB of random bytes written in {:.1}s, sha256 {}",
        opts.size / MIB,
        started.elapsed().as_secs_f64(),
        &src_sha[..16]
    );
    let mut rows = Vec::new();

    // 1. Upload, interrupted by SIGINT.
    let upload = ["cp", "--json", "source.bin", "s3://demo/big.bin"];
    step(&env, "upload, then SIGINT once bytes are done", &upload);
    let started = Instant::now();
    let mut child = env.spawn(&upload)?;
    let seen = env.wait_for_bytes_done(&mut child, "upload")?;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).context("cannot send SIGINT")?;
    let run = finish(child)?;
    let time = started.elapsed();
    run.show();
    ensure!(
        run.code == Some(130),
        "SIGINT should pause s3tm with exit status 130, got {:?} (if it finished first, the \
         machine is too fast for this size: try --size-mib 1024)",
        run.code
    );
    let paused = run
        .events()?
        .into_iter()
        .find(|e| e["event"] == "paused")
        .ok_or_else(|| anyhow!("no `paused` event from s3tm"))?;
    let id = paused["id"].as_str().unwrap_or_default().to_owned();
    ensure!(id == seen.id, "paused {id}, expected {}", seen.id);
    let done = paused["bytes_done"].as_u64().unwrap_or_default();
    ensure!(
        done > 0 && done < opts.size,
        "paused at {done} of {} bytes",
        opts.size
    );
    ensure!(
        run.stderr.contains(&format!("resume {id}")),
        "s3tm did not print the command to resume"
    );
    rows.push(Row {
        step: "upload, SIGINT part-way (exit 130)",
        sent: done,
        resent: None,
        time,
    });

    // 2. The same cp again resumes it.
    step(&env, "the same cp again: resumes", &upload);
    let run = finish(env.spawn(&upload)?)?;
    run.show();
    ensure!(run.code == Some(0), "resumed upload failed: {:?}", run.code);
    ensure!(
        run.stderr
            .contains(&format!("resuming the interrupted upload {id}")),
        "s3tm did not say it resumed {id}"
    );
    let outcome = run.completed()?;
    ensure!(
        outcome.resumed == done,
        "resumed from {} bytes, the pause had {done}",
        outcome.resumed
    );
    rows.push(outcome.row("upload, same cp re-run (resumes)"));
    let stored = server.root().join(BUCKET).join(KEY);
    let stored_sha = sha256(&stored)?;
    ensure!(
        stored_sha == src_sha,
        "the stored object differs from the source"
    );

    // 3. Download, killed with SIGKILL.
    let dest = env.dir.join("copy.bin");
    let download = ["cp", "--json", "s3://demo/big.bin", "copy.bin"];
    step(
        &env,
        "download, then SIGKILL once bytes are done",
        &download,
    );
    let started = Instant::now();
    let mut child = env.spawn(&download)?;
    let seen = env.wait_for_bytes_done(&mut child, "download")?;
    child.kill()?;
    let run = finish(child)?;
    let time = started.elapsed();
    ensure!(run.code.is_none(), "s3tm should have been killed");
    let id = seen.id;
    let killed_at = env
        .ls()?
        .into_iter()
        .find(|t| t["id"] == id.as_str())
        .ok_or_else(|| anyhow!("the killed download {id} is not in `s3tm ls`"))?;
    ensure!(
        killed_at["state"] == "interrupted",
        "state after kill -9: {}",
        killed_at["state"]
    );
    let done = killed_at["bytes_done"].as_u64().unwrap_or_default();
    println!(
        "   | killed; `s3tm ls` shows {id} interrupted at {} MiB",
        done / MIB
    );
    rows.push(Row {
        step: "download, SIGKILL part-way",
        sent: done,
        resent: None,
        time,
    });

    // 4. s3tm resume ID.
    let resume = ["resume", "--json", id.as_str()];
    step(&env, "resume the killed download by id", &resume);
    let run = finish(env.spawn(&resume)?)?;
    run.show();
    ensure!(run.code == Some(0), "resume failed: {:?}", run.code);
    let outcome = run.completed()?;
    rows.push(outcome.row("download, s3tm resume ID"));
    let copy_sha = sha256(&dest)?;
    ensure!(
        copy_sha == src_sha,
        "the downloaded copy differs from the source"
    );
    ensure!(env.ls()?.is_empty(), "transfers are left in `s3tm ls`");

    println!();
    print_table(&rows);
    println!("\nsha256 source {src_sha}");
    println!("sha256 stored {stored_sha} (the object in s3s-fs's storage)");
    println!("sha256 copy   {copy_sha}");
    drop(server);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

struct Env {
    s3tm: PathBuf,
    endpoint: String,
    access_key: String,
    secret_key: String,
    region: String,
    dir: PathBuf,
}

struct Seen {
    id: String,
}

impl Env {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.s3tm);
        // The server's keys, and none of the user's AWS settings.
        for var in [
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_DEFAULT_REGION",
            "S3TM_STATE_DIR",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .env("AWS_REGION", &self.region)
            .env("AWS_CONFIG_FILE", self.dir.join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.join("no-aws-credentials"),
            )
            .current_dir(&self.dir)
            .args([
                "--endpoint-url",
                &self.endpoint,
                "--path-style",
                "--state-dir",
            ])
            .arg(self.dir.join("state"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn spawn(&self, args: &[&str]) -> anyhow::Result<Child> {
        self.command(args)
            .spawn()
            .with_context(|| format!("cannot run {}", self.s3tm.display()))
    }

    fn ls(&self) -> anyhow::Result<Vec<Value>> {
        let out = self.command(&["ls", "--json"]).output()?;
        ensure!(
            out.status.success(),
            "s3tm ls failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_lines(&String::from_utf8_lossy(&out.stdout))
    }

    /// Polls `s3tm ls --json` until the transfer in `direction` has bytes done.
    fn wait_for_bytes_done(&self, child: &mut Child, direction: &str) -> anyhow::Result<Seen> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(t) = self.ls()?.into_iter().find(|t| {
                t["direction"] == direction && t["bytes_done"].as_u64().is_some_and(|n| n > 0)
            }) {
                let id = t["id"].as_str().unwrap_or_default().to_owned();
                println!(
                    "   | `s3tm ls --json`: {id} has {} MiB done",
                    t["bytes_done"].as_u64().unwrap_or_default() / MIB
                );
                return Ok(Seen { id });
            }
            if let Some(status) = child.try_wait()? {
                bail!("s3tm ended ({status}) before `s3tm ls` showed any bytes done");
            }
            ensure!(Instant::now() < deadline, "no progress within {TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn step(env: &Env, what: &str, args: &[&str]) {
    println!("\n==> {what}");
    println!(
        "    s3tm --endpoint-url {} --path-style --state-dir state {}",
        env.endpoint,
        args.join(" ")
    );
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn show(&self) {
        for line in self.stderr.lines() {
            println!("   | {line}");
        }
    }

    fn events(&self) -> anyhow::Result<Vec<Value>> {
        json_lines(&self.stdout)
    }

    fn completed(&self) -> anyhow::Result<Outcome> {
        let events = self.events()?;
        let c = events
            .iter()
            .find(|e| e["event"] == "completed")
            .ok_or_else(|| anyhow!("no `completed` event from s3tm"))?;
        ensure!(
            c["verified"] == true,
            "s3tm could not verify the transfer: {}",
            c["verification"]
        );
        println!(
            "   | verified: {}",
            c["verification"].as_str().unwrap_or("")
        );
        let n = |f: &str| c[f].as_u64().unwrap_or_default();
        Ok(Outcome {
            transferred: n("bytes_transferred"),
            resent: n("bytes_resent"),
            resumed: n("bytes_resumed"),
            elapsed: Duration::from_secs_f64(c["elapsed_secs"].as_f64().unwrap_or_default()),
        })
    }
}

struct Outcome {
    transferred: u64,
    resent: u64,
    resumed: u64,
    elapsed: Duration,
}

impl Outcome {
    fn row(&self, step: &'static str) -> Row {
        Row {
            step,
            sent: self.transferred,
            resent: Some(self.resent),
            time: self.elapsed,
        }
    }
}

fn finish(child: Child) -> anyhow::Result<Run> {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out?,
        Err(_) => {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            bail!("s3tm (pid {pid}) did not finish within {TIMEOUT:?}");
        }
    };
    Ok(Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn json_lines(text: &str) -> anyhow::Result<Vec<Value>> {
    text.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not a JSON line: {l:?}")))
        .collect()
}

fn print_table(rows: &[Row]) {
    let mib = |n: u64| format!("{:.1} MiB", n as f64 / MIB as f64);
    let table: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let secs = r.time.as_secs_f64();
            [
                r.step.to_owned(),
                mib(r.sent),
                r.resent.map_or("-".to_owned(), mib),
                format!("{secs:.2}s"),
                format!("{:.1}", r.sent as f64 / MIB as f64 / secs.max(1e-9)),
            ]
        })
        .collect();
    let header = ["step", "bytes sent", "bytes re-sent", "time", "MiB/s"].map(str::to_owned);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&table) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = std::io::stdout().lock();
    for (i, row) in std::iter::once(&header).chain(&table).enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                if c == 0 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  "));
        if i == 0 {
            let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
            let _ = writeln!(out, "{}", "-".repeat(total));
        }
    }
    let _ = writeln!(
        out,
        "\nbytes sent: bytes this run moved (an interrupted run: what its checkpoint holds);\n\
         bytes re-sent: bytes it moved a second time (retries, parts lost with a request)"
    );
    let _ = out.flush();
}

/// `size` bytes from a xorshift generator: incompressible, and cheap to make.
fn random_file(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut x = seed | 1;
    let mut block = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        for chunk in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(MIB);
        f.write_all(&block[..n as usize])?;
        left -= n;
    }
    // On disk before the clock starts: otherwise its writeback competes with the
    // transfers' checkpoint fsyncs and skews the first step.
    f.into_inner()?.sync_all()?;
    Ok(())
}

fn sha256(path: &Path) -> anyhow::Result<String> {
    let mut hasher = Sha256::new();
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    std::io::copy(&mut f, &mut hasher)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options_and_commands() {
        let options = parse(&args("--release --size-mib 64")).unwrap();
        assert_eq!(
            options,
            DemoOptions {
                release: true,
                size_mib: Some(64)
            }
        );
        assert_eq!(
            build_step(true).to_string(),
            "cargo build --release -p cli-demo --bin s3tm"
        );
        assert_eq!(
            parse(&[]).unwrap(),
            DemoOptions {
                release: false,
                size_mib: None
            }
        );
        assert_eq!(
            build_step(false).to_string(),
            "cargo build -p cli-demo --bin s3tm"
        );
        for bad in ["--fast", "--size-mib", "--size-mib 8", "--size-mib lots"] {
            assert!(parse(&args(bad)).is_err(), "`{bad}` should be refused");
        }
    }
}
