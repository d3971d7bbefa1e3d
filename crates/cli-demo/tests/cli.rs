//! The real `s3tm` binary against an in-process s3s-fs server (SigV4 verified).
//!
//! Transfers that must be interrupted part-way go through the fault proxy with a delay on
//! every part or range, so a signal always lands mid-transfer; the tests wait until
//! `s3tm ls --json` shows bytes done before signalling, never on a fixed sleep.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use s3_testkit::{ALWAYS, FaultProxy, Matcher, S3sFsServer, start_s3s_fs};
use serde_json::Value;
use sha2::{Digest, Sha256};

const MIB: u64 = 1 << 20;
const BUCKET: &str = "bucket";
/// Generous: debug builds on a loaded two-core machine.
const TIMEOUT: Duration = Duration::from_secs(180);

struct Env {
    server: S3sFsServer,
    proxy: FaultProxy,
    dir: tempfile::TempDir,
}

impl Env {
    async fn new() -> Env {
        let server = start_s3s_fs().await;
        server.create_bucket(BUCKET).unwrap();
        let proxy = FaultProxy::start(&server.endpoint()).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        Env { server, proxy, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    /// `s3tm` with the server's endpoint (through the proxy), path-style, a private state
    /// directory and the server's credentials in the environment; nothing of the
    /// developer's own AWS setup leaks in.
    fn s3tm(&self, args: &[&str]) -> Command {
        let mut cmd = self.s3tm_without_endpoint(&[]);
        cmd.arg("--endpoint-url")
            .arg(self.proxy.endpoint())
            .arg("--path-style")
            .args(args);
        cmd
    }

    /// [`Env::s3tm`] without `--endpoint-url` and `--path-style`: AWS unless a saved
    /// transfer says otherwise.
    fn s3tm_without_endpoint(&self, args: &[&str]) -> Command {
        self.s3tm_in(&self.state_dir(), args, false)
    }

    /// `s3tm` with `state` as its `--state-dir`, through the proxy when `endpoint`.
    fn s3tm_in(&self, state: &Path, args: &[&str], endpoint: bool) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_s3tm"));
        if endpoint {
            cmd.arg("--endpoint-url")
                .arg(self.proxy.endpoint())
                .arg("--path-style");
        }
        cmd.env_clear()
            .env("HOME", self.path("home"))
            .env("AWS_ACCESS_KEY_ID", self.server.access_key())
            .env("AWS_SECRET_ACCESS_KEY", self.server.secret_key())
            .env("AWS_REGION", self.server.region())
            .current_dir(self.dir.path())
            .arg("--state-dir")
            .arg(state)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        let child = self.s3tm(args).spawn().expect("s3tm starts");
        finish(child)
    }

    /// `s3tm ls --json`, parsed; every line must be a JSON object.
    fn ls(&self) -> Vec<Value> {
        let run = self.run(&["ls", "--json"]);
        assert_eq!(run.code, Some(0), "ls failed: {}", run.stderr);
        json_lines(&run.stdout)
    }

    /// Waits until `s3tm ls --json` shows `key` with bytes done, while `child` runs.
    fn wait_for_bytes_done(&self, child: &mut Child, key: &str) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(t) = self
                .ls()
                .into_iter()
                .find(|t| t["key"] == key && t["bytes_done"].as_u64() > Some(0))
            {
                return t;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("s3tm ended ({status}) before any bytes were done");
            }
            assert!(Instant::now() < deadline, "no progress on {key}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The stored object, as s3s-fs keeps it on disk.
    fn object(&self, key: &str) -> PathBuf {
        self.server.root().join(BUCKET).join(key)
    }

    /// Every part upload and ranged GET waits `latency` first.
    fn slow_down(&self, latency: Duration) {
        self.proxy.delay(Matcher::upload_part(), latency, ALWAYS);
        self.proxy.delay(Matcher::ranged_get(), latency, ALWAYS);
    }
}

/// A download of `obj` to `copy.bin` one 5 MiB range at a time: slowed down with
/// [`Env::slow_down`], it can be stopped part-way.
const SLOW_COPY: [&str; 7] = [
    "cp",
    "--part-size",
    "5MiB",
    "--concurrency",
    "1",
    "s3://bucket/obj",
    "copy.bin",
];

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The `s3tm: error: ...` lines of stderr.
    fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("s3tm: error: "))
            .collect()
    }
}

/// Waits for `child` (at most [`TIMEOUT`], then kills it and fails).
fn finish(child: Child) -> Run {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output: Output = match rx.recv_timeout(TIMEOUT) {
        Ok(output) => output.expect("s3tm's output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("s3tm (pid {pid}) did not finish within {TIMEOUT:?}");
        }
    };
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {name} failed");
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
            assert!(v.is_object(), "not a JSON object: {line}");
            v
        })
        .collect()
}

/// A file of `size` pseudo-random bytes (xorshift, so no two parts are alike).
fn random_file(path: &Path, size: u64, seed: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
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
        f.write_all(&block[..n as usize]).unwrap();
        left -= n;
    }
    f.flush().unwrap();
}

fn sha256(path: &Path) -> String {
    let mut hasher = Sha256::new();
    let mut f =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    std::io::copy(&mut f, &mut hasher).unwrap();
    hex::encode(hasher.finalize())
}

/// `--require-verified`: an upload the server cannot be shown to have checked (s3s-fs
/// echoes no part checksum) exits 1 and says why, with the object in place; a download
/// that is verified exits 0 under the same flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_verified_fails_a_copy_that_could_not_be_verified() {
    let env = Env::new().await;
    let src = env.path("data.bin");
    random_file(&src, 11 * MIB, 3);
    let up = env.run(&[
        "cp",
        "--require-verified",
        "--part-size",
        "5MiB",
        "data.bin",
        "s3://bucket/data.bin",
    ]);
    assert_eq!(up.code, Some(1), "{}\n{}", up.stdout, up.stderr);
    assert!(
        up.stdout.contains("NOT verified: sent with CRC32"),
        "{}",
        up.stdout
    );
    assert!(
        up.stderr
            .contains("completed but NOT verified, and --require-verified was given")
            && up.stderr.contains("the object is in the bucket"),
        "{}",
        up.stderr
    );
    assert_eq!(sha256(&env.object("data.bin")), sha256(&src));
    let down = env.run(&[
        "cp",
        "--require-verified",
        "s3://bucket/data.bin",
        "copy.bin",
    ]);
    assert_eq!(down.code, Some(0), "{}\n{}", down.stdout, down.stderr);
    assert!(down.stdout.contains("matched"), "{}", down.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_then_download_into_a_directory_round_trips() {
    let env = Env::new().await;
    let src = env.path("data.bin");
    random_file(&src, 21 * MIB, 1);

    let up = env.run(&["cp", "--part-size", "5MiB", "data.bin", "s3://bucket/dir/"]);
    assert_eq!(up.code, Some(0), "upload failed: {}", up.stderr);
    assert!(
        up.stdout.contains("uploaded") && up.stdout.contains("21.0 MiB"),
        "summary: {}",
        up.stdout
    );
    // s3s-fs echoes no checksum on UploadPart: the summary must not claim it checked them.
    assert!(
        up.stdout
            .contains("NOT verified: sent with CRC32 checksums, but the server did not echo them"),
        "the summary says how the upload was verified: {}",
        up.stdout
    );
    assert_eq!(sha256(&env.object("dir/data.bin")), sha256(&src));

    std::fs::create_dir(env.path("out")).unwrap();
    let down = env.run(&[
        "cp",
        "--checksum",
        "crc32c",
        "--concurrency",
        "3",
        "s3://bucket/dir/data.bin",
        "out",
    ]);
    assert_eq!(down.code, Some(0), "download failed: {}", down.stderr);
    assert!(
        down.stdout.contains("downloaded") && down.stdout.contains("matched"),
        "summary: {}",
        down.stdout
    );
    assert_eq!(sha256(&env.path("out/data.bin")), sha256(&src));
    assert!(env.ls().is_empty(), "nothing is left to resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_pauses_and_the_same_cp_resumes_it() {
    let env = Env::new().await;
    env.slow_down(Duration::from_millis(250));
    let src = env.path("big.bin");
    random_file(&src, 40 * MIB, 2);
    let cp = [
        "cp",
        "--part-size",
        "5MiB",
        "--concurrency",
        "1",
        "big.bin",
        "s3://bucket/big.bin",
    ];

    let mut child = env.s3tm(&cp).spawn().unwrap();
    let seen = env.wait_for_bytes_done(&mut child, "big.bin");
    let id = seen["id"].as_str().unwrap().to_owned();
    signal(&child, "-INT");
    let paused = finish(child);
    assert_eq!(paused.code, Some(130), "stderr: {}", paused.stderr);
    assert!(
        paused.stderr.contains(&format!("resume {id}")) && paused.stderr.contains("--state-dir"),
        "the exact resume command is printed: {}",
        paused.stderr
    );

    let listed = env.ls();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let t = &listed[0];
    for field in [
        "id",
        "direction",
        "bucket",
        "key",
        "path",
        "bytes_done",
        "bytes_total",
        "state",
    ] {
        assert!(!t[field].is_null(), "ls --json lacks `{field}`: {t}");
    }
    assert_eq!(t["id"], id.as_str());
    assert_eq!(t["direction"], "upload");
    assert_eq!(t["bucket"], BUCKET);
    assert_eq!(t["state"], "paused");
    assert_eq!(t["bytes_total"], 40 * MIB);
    assert_eq!(Path::new(t["path"].as_str().unwrap()), src);
    let done = t["bytes_done"].as_u64().unwrap();
    assert!(done > 0 && done < 40 * MIB, "paused part-way: {done}");

    let mut again: Vec<&str> = cp.to_vec();
    again.push("--json");
    let resumed = env.run(&again);
    assert_eq!(resumed.code, Some(0), "stderr: {}", resumed.stderr);
    assert!(
        resumed
            .stderr
            .contains(&format!("resuming the interrupted upload {id}")),
        "it says that it resumes: {}",
        resumed.stderr
    );
    let events = json_lines(&resumed.stdout);
    assert_eq!(events.first().unwrap()["event"], "started");
    let completed = events.last().unwrap();
    assert_eq!(completed["event"], "completed", "{events:?}");
    assert_eq!(completed["id"], id.as_str());
    // s3s-fs echoes no checksum on UploadPart, so nothing confirms the server checked them.
    assert_eq!(completed["verified"], false, "{completed}");
    assert!(
        completed["verification"]
            .as_str()
            .is_some_and(|v| v.contains("did not echo")),
        "{completed}"
    );
    assert_eq!(
        completed["bytes_resumed"], done,
        "the parts done before the pause were not sent again"
    );
    assert_eq!(
        completed["bytes_transferred"].as_u64().unwrap() + done,
        40 * MIB
    );
    assert!(
        events
            .iter()
            .all(|e| e["event"] != "progress" || e["bytes_done"].as_u64() <= Some(40 * MIB))
    );
    assert_eq!(sha256(&env.object("big.bin")), sha256(&src));
    assert!(env.ls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_download_then_resume_by_id() {
    let env = Env::new().await;
    let src = env.path("src.bin");
    random_file(&src, 30 * MIB, 3);
    let up = env.run(&["cp", "--part-size", "5MiB", "src.bin", "s3://bucket/obj"]);
    assert_eq!(up.code, Some(0), "upload failed: {}", up.stderr);

    env.slow_down(Duration::from_millis(250));
    let dest = env.path("copy.bin");
    let mut child = env.s3tm(&SLOW_COPY).spawn().unwrap();
    let seen = env.wait_for_bytes_done(&mut child, "obj");
    assert_eq!(seen["direction"], "download");
    let id = seen["id"].as_str().unwrap().to_owned();
    child.kill().unwrap(); // SIGKILL: no chance to pause
    let killed = finish(child);
    assert_eq!(killed.code, None, "killed by a signal");

    let listed = env.ls();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["state"], "interrupted");
    assert!(!dest.exists(), "no destination file before it is verified");
    assert!(env.path("copy.bin.s3tm-partial").exists());

    // No --endpoint-url: the transfer continues against the server it was started on.
    let resumed = finish(env.s3tm_without_endpoint(&["resume", &id]).spawn().unwrap());
    assert_eq!(resumed.code, Some(0), "stderr: {}", resumed.stderr);
    assert!(
        resumed.stdout.contains("resumed from"),
        "{}",
        resumed.stdout
    );
    assert_eq!(sha256(&dest), sha256(&src));
    assert!(!env.path("copy.bin.s3tm-partial").exists());
    assert!(env.ls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_removes_a_paused_download_and_its_partial_file() {
    let env = Env::new().await;
    let src = env.path("src.bin");
    random_file(&src, 20 * MIB, 4);
    let up = env.run(&["cp", "--part-size", "5MiB", "src.bin", "s3://bucket/obj"]);
    assert_eq!(up.code, Some(0), "upload failed: {}", up.stderr);

    env.slow_down(Duration::from_millis(250));
    let mut child = env.s3tm(&SLOW_COPY).spawn().unwrap();
    let seen = env.wait_for_bytes_done(&mut child, "obj");
    let id = seen["id"].as_str().unwrap().to_owned();
    signal(&child, "-TERM");
    let paused = finish(child);
    assert_eq!(
        paused.code,
        Some(130),
        "SIGTERM pauses too: {}",
        paused.stderr
    );
    let partial = env.path("copy.bin.s3tm-partial");
    assert!(partial.exists());

    let cancelled = env.run(&["cancel", &id]);
    assert_eq!(cancelled.code, Some(0), "stderr: {}", cancelled.stderr);
    assert!(
        cancelled.stdout.contains("partial file was removed"),
        "{}",
        cancelled.stdout
    );
    assert!(!partial.exists(), "the partial file is gone");
    assert!(!env.path("copy.bin").exists());
    assert!(env.ls().is_empty());

    let again = env.run(&["cancel", &id]);
    assert_eq!(again.code, Some(1), "a second cancel finds nothing");
    assert!(
        again.stderr.starts_with("s3tm: error: "),
        "{}",
        again.stderr
    );
    let none = env.run(&["cancel", "s3://bucket/obj"]);
    assert_eq!(none.code, Some(1), "{}", none.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_one_clear_error() {
    let env = Env::new().await;
    random_file(&env.path("f.bin"), 12 * MIB, 5);
    let wrong_secret = "not-the-secret-0123456789";
    let run = finish(
        env.s3tm(&["cp", "f.bin", "s3://bucket/f.bin"])
            .env("AWS_SECRET_ACCESS_KEY", wrong_secret)
            .spawn()
            .unwrap(),
    );
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    let errors = run.error_lines();
    assert_eq!(errors.len(), 1, "one error line: {}", run.stderr);
    let error = errors[0];
    assert!(
        error.contains("SignatureDoesNotMatch") && error.contains("secret key"),
        "names the cause and the fix: {error}"
    );
    assert!(
        error.contains("s3://bucket/f.bin"),
        "names the object: {error}"
    );
    assert!(!run.stderr.contains(wrong_secret) && !run.stdout.contains(wrong_secret));
    assert!(!env.object("f.bin").exists());
    assert!(
        !error.contains("resume") && !error.contains("checkpoint"),
        "no checkpoint was written, so none is promised: {error}"
    );
    assert!(env.ls().is_empty(), "nothing is saved");

    // The same in JSON, for a key S3 refuses (over 1,024 bytes) and a refused connection.
    let long_key = format!("s3://bucket/{}", "k".repeat(1100));
    for (args, endpoint) in [
        (vec!["cp", "--json", "f.bin", long_key.as_str()], None),
        (
            vec!["cp", "--json", "f.bin", "s3://bucket/f.bin"],
            Some("http://127.0.0.1:9"),
        ),
    ] {
        let mut cmd = match endpoint {
            Some(url) => {
                let mut c = env.s3tm_without_endpoint(&["--endpoint-url", url, "--path-style"]);
                c.args(&args);
                c
            }
            None => env.s3tm(&args),
        };
        let run = finish(cmd.spawn().unwrap());
        assert_eq!(run.code, Some(1), "{args:?}: {}", run.stderr);
        let failed = json_lines(&run.stdout)
            .into_iter()
            .find(|e| e["event"] == "failed")
            .unwrap_or_else(|| panic!("{args:?}: no failed line: {}", run.stdout));
        assert_eq!(failed["resumable"], false, "{args:?}: {failed}");
        assert!(
            !failed["error"].as_str().unwrap().contains("resume"),
            "{args:?}: {failed}"
        );
        assert!(env.ls().is_empty(), "{args:?}: nothing is saved");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_ca_bundle_is_one_clear_error() {
    let env = Env::new().await;
    random_file(&env.path("f.bin"), 1000, 6);
    for run in [
        env.run(&[
            "--ca-bundle",
            "missing-ca.pem",
            "cp",
            "f.bin",
            "s3://bucket/f.bin",
        ]),
        finish(
            env.s3tm(&["cp", "f.bin", "s3://bucket/f.bin"])
                .env("AWS_CA_BUNDLE", "missing-ca.pem")
                .spawn()
                .unwrap(),
        ),
    ] {
        assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
        let errors = run.error_lines();
        assert_eq!(errors.len(), 1, "one error line: {}", run.stderr);
        assert!(
            errors[0].contains("missing-ca.pem") && errors[0].contains("cannot be read"),
            "names the file and what is wrong: {}",
            errors[0]
        );
    }
    assert!(!env.object("f.bin").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_one_clear_error() {
    let env = Env::new().await;
    let run = env.run(&["cp", "--json", "s3://no-such-bucket/k", "out.bin"]);
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    let error = run
        .stderr
        .lines()
        .find(|l| l.starts_with("s3tm: error: "))
        .unwrap_or_else(|| panic!("no error line: {}", run.stderr));
    assert!(
        error.contains("s3://no-such-bucket/k") && error.contains("404") && error.contains("check"),
        "names the object, the status and what to check: {error}"
    );
    let events = json_lines(&run.stdout);
    assert_eq!(events.last().unwrap()["event"], "failed", "{events:?}");
    assert!(!env.path("out.bin").exists());

    // A failure before the transfer exists ends the JSON stream the same way.
    let run = env.run(&["cp", "--json", "missing.bin", "s3://bucket/k"]);
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    let events = json_lines(&run.stdout);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"], "failed");
    assert!(events[0]["error"].as_str().unwrap().contains("missing.bin"));
    assert!(run.stderr.contains("s3tm: error: ") && run.stderr.contains("missing.bin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_and_help_documents_exit_codes() {
    let env = Env::new().await;
    for args in [
        &["cp", "a.bin", "b.bin"][..],
        &["cp", "--part-size", "8XB", "a.bin", "s3://bucket/k"],
        &["cp", "s3://bucket/a", "s3://bucket/b"],
        &["resume"],
        &["cancel", "not/an/id"],
        &["clean", "s3://bucket", "--older-than", "7"],
        &["frobnicate"],
    ] {
        let run = env.run(args);
        assert_eq!(
            run.code,
            Some(2),
            "`s3tm {}`: {}",
            args.join(" "),
            run.stderr
        );
        assert!(run.stderr.contains("error"), "{}", run.stderr);
    }
    let help = env.run(&["--help"]);
    assert_eq!(help.code, Some(0));
    for needle in ["Exit status", "130", "usage error", "cp", "resume", "clean"] {
        assert!(
            help.stdout.contains(needle),
            "--help lacks {needle:?}: {}",
            help.stdout
        );
    }
}

/// Whether this process runs as root (`id -u`), which `mknod` needs.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Uploads `size` random bytes as `key`; returns the local copy.
fn put_object(env: &Env, key: &str, size: u64, seed: u64) -> PathBuf {
    let src = env.path(&format!("{key}.src"));
    random_file(&src, size, seed);
    let up = env.run(&[
        "cp",
        "--part-size",
        "5MiB",
        src.to_str().unwrap(),
        &format!("s3://bucket/{key}"),
    ]);
    assert_eq!(up.code, Some(0), "upload failed: {}", up.stderr);
    src
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_to_a_character_device_streams_into_it() {
    use std::os::unix::fs::FileTypeExt;
    let env = Env::new().await;
    if !is_root() {
        eprintln!("SKIPPED: mknod needs root; this test did not run");
        return;
    }
    put_object(&env, "obj", 12 * MIB, 11);
    // /dev/null's major and minor: writes vanish, as with `s3tm cp s3://b/k /dev/null`.
    let dev = env.path("null-device");
    let made = Command::new("mknod")
        .arg(&dev)
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(made.success(), "mknod failed");

    let run = env.run(&[
        "cp",
        "--part-size",
        "5MiB",
        "s3://bucket/obj",
        "null-device",
    ]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let meta = std::fs::symlink_metadata(&dev).unwrap();
    assert!(
        meta.file_type().is_char_device(),
        "the device node is still a character device: {meta:?}"
    );
    assert!(
        run.stdout.contains("downloaded") && run.stdout.contains("matched"),
        "the bytes were verified: {}",
        run.stdout
    );
    assert!(
        run.stderr.contains("character device") && run.stderr.contains("cannot be resumed"),
        "it says that it streams and cannot resume: {}",
        run.stderr
    );
    assert!(!env.path("null-device.s3tm-partial").exists());
    assert!(env.ls().is_empty(), "nothing is saved to resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_to_a_fifo_streams_every_byte_into_it() {
    use std::io::Read as _;
    let env = Env::new().await;
    let src = put_object(&env, "obj", 13 * MIB + 5, 12);
    let fifo = env.path("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");

    let (tx, rx) = mpsc::channel();
    let reader_path = fifo.clone();
    std::thread::spawn(move || {
        // Blocks until a writer opens the FIFO.
        let mut bytes = Vec::new();
        let read = std::fs::File::open(&reader_path).and_then(|mut f| f.read_to_end(&mut bytes));
        let _ = tx.send(read.map(|_| bytes));
    });
    let run = env.run(&["cp", "--part-size", "5MiB", "s3://bucket/obj", "pipe"]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let read = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the reader got an end of file (nothing was renamed over the FIFO)")
        .unwrap();
    assert_eq!(read.len() as u64, 13 * MIB + 5);
    assert_eq!(hex::encode(Sha256::digest(&read)), sha256(&src));
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert!(
        run.stderr.contains("FIFO") && run.stderr.contains("cannot be resumed"),
        "{}",
        run.stderr
    );
    assert!(env.ls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_planted_at_the_partial_path_is_never_followed() {
    let env = Env::new().await;
    put_object(&env, "obj", 6 * MIB, 13);
    let victim = env.path("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let partial = env.path("copy.bin.s3tm-partial");
    std::os::unix::fs::symlink(&victim, &partial).unwrap();

    let run = env.run(&["cp", "s3://bucket/obj", "copy.bin"]);
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    let errors = run.error_lines();
    assert_eq!(errors.len(), 1, "one error line: {}", run.stderr);
    assert!(
        errors[0].contains("copy.bin.s3tm-partial") && errors[0].contains("symbolic link"),
        "names the file and what is wrong: {}",
        errors[0]
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(
        std::fs::symlink_metadata(&partial)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(!env.path("copy.bin").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_at_the_destination_fails_before_any_get() {
    let env = Env::new().await;
    put_object(&env, "obj", 6 * MIB, 14);
    std::fs::create_dir_all(env.path("out/obj")).unwrap();
    env.proxy.clear_requests();

    let run = env.run(&["cp", "s3://bucket/obj", "out/"]);
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    let errors = run.error_lines();
    assert_eq!(errors.len(), 1, "one error line: {}", run.stderr);
    assert!(
        errors[0].contains("out/obj") && errors[0].contains("is a directory"),
        "names the directory: {}",
        errors[0]
    );
    assert!(!errors[0].contains("resume"), "{}", errors[0]);
    let gets: Vec<_> = env
        .proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == http::Method::GET)
        .collect();
    assert!(gets.is_empty(), "no byte was fetched: {gets:?}");
    assert!(env.path("out/obj").is_dir());
    assert!(env.ls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_state_dir_is_refused_and_left_alone() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new().await;
    let shared = env.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();

    let run = finish(env.s3tm_in(&shared, &["ls"], true).spawn().unwrap());
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    let errors = run.error_lines();
    assert_eq!(errors.len(), 1, "one error line: {}", run.stderr);
    assert!(
        errors[0].contains("shared")
            && errors[0].contains("writable by other users")
            && errors[0].contains("--state-dir"),
        "names the directory, what is wrong and what to do: {}",
        errors[0]
    );
    let mode = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o1777, "its mode is unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regular_file_as_state_dir_names_the_problem() {
    let env = Env::new().await;
    let file = env.path("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let run = finish(env.s3tm_in(&file, &["ls"], true).spawn().unwrap());
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    let errors = run.error_lines();
    assert_eq!(errors.len(), 1, "one error line: {}", run.stderr);
    assert!(
        errors[0].contains("not-a-dir")
            && errors[0].contains("is not a directory")
            && !errors[0].contains("os error 17"),
        "{}",
        errors[0]
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_download_to_the_same_file_from_another_state_dir_is_refused() {
    let env = Env::new().await;
    let src = put_object(&env, "obj", 20 * MIB, 15);
    env.slow_down(Duration::from_millis(300));
    let cp = SLOW_COPY;
    let mut first = env.s3tm(&cp).spawn().unwrap();
    env.wait_for_bytes_done(&mut first, "obj");

    let other_state = env.path("other-state");
    let second = finish(env.s3tm_in(&other_state, &cp, true).spawn().unwrap());
    assert_eq!(second.code, Some(1), "stderr: {}", second.stderr);
    let errors = second.error_lines();
    assert_eq!(errors.len(), 1, "one error line: {}", second.stderr);
    let dest = env.path("copy.bin");
    assert!(
        errors[0].contains(&format!(
            "another s3tm is downloading to {}",
            dest.display()
        )) && errors[0].contains("copy.bin.s3tm-partial is locked"),
        "{}",
        errors[0]
    );

    let first = finish(first);
    assert_eq!(first.code, Some(0), "stderr: {}", first.stderr);
    assert_eq!(sha256(&dest), sha256(&src), "the first download is intact");
    assert!(!env.path("copy.bin.s3tm-partial").exists());
    let listed = finish(
        env.s3tm_in(&other_state, &["ls", "--json"], true)
            .spawn()
            .unwrap(),
    );
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    assert!(
        listed.stdout.trim().is_empty(),
        "the refused download left nothing to resume: {}",
        listed.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_to_stdout_streams_the_bytes_alone() {
    let env = Env::new().await;
    let src = put_object(&env, "obj", 7 * MIB + 3, 16);
    // What /dev/stdout is; a link of our own, so that a broken s3tm replaces only it.
    let link = env.path("stdout");
    std::os::unix::fs::symlink("/proc/self/fd/1", &link).unwrap();
    for extra in [&[][..], &["--json"][..]] {
        let mut args = vec!["cp"];
        args.extend_from_slice(extra);
        args.extend(["s3://bucket/obj", "stdout"]);
        let output = env.s3tm(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
        assert_eq!(
            hex::encode(Sha256::digest(&output.stdout)),
            sha256(&src),
            "stdout holds the object's bytes and nothing else ({} bytes); stderr: {stderr}",
            output.stdout.len()
        );
        assert!(
            stderr.contains("downloaded") || stderr.contains("\"completed\""),
            "the summary goes to stderr: {stderr}"
        );
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_a_streamed_download_without_promising_a_resume() {
    use std::io::Read as _;
    let env = Env::new().await;
    put_object(&env, "obj", 15 * MIB, 17);
    env.slow_down(Duration::from_millis(400));
    let fifo = env.path("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");
    let (tx, rx) = mpsc::channel();
    let reader_path = fifo.clone();
    std::thread::spawn(move || {
        let mut f = std::fs::File::open(&reader_path).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0usize;
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
            let _ = tx.send(total);
        }
    });
    let child = env
        .s3tm(&[
            "cp",
            "--part-size",
            "5MiB",
            "--concurrency",
            "1",
            "s3://bucket/obj",
            "pipe",
        ])
        .spawn()
        .unwrap();
    rx.recv_timeout(TIMEOUT).expect("bytes reach the FIFO");
    signal(&child, "-INT");
    let run = finish(child);
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains("cannot be resumed") && !run.stderr.contains("to resume:"),
        "{}",
        run.stderr
    );
    // Nothing claims a checkpoint that a stream never has.
    assert!(
        run.stderr.contains("stopping:") && !run.stderr.contains("saving the checkpoint"),
        "{}",
        run.stderr
    );
    assert!(env.ls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_ends_a_download_waiting_for_a_fifo_reader() {
    let env = Env::new().await;
    put_object(&env, "obj", MIB, 18);
    let fifo = env.path("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");
    let child = env
        .s3tm(&["cp", "s3://bucket/obj", "pipe"])
        .spawn()
        .unwrap();
    // Until a reader comes, opening the FIFO waits in the kernel (`wait_for_partner`).
    let tasks = PathBuf::from(format!("/proc/{}/task", child.id()));
    let started = Instant::now();
    let mut kernel_names_waits = false;
    loop {
        let wchans: Vec<String> = std::fs::read_dir(&tasks)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("wchan")).ok())
            .collect();
        kernel_names_waits |= wchans.iter().any(|w| !w.is_empty() && w != "0");
        if wchans.iter().any(|w| w == "wait_for_partner") {
            break;
        }
        if !kernel_names_waits && started.elapsed() > Duration::from_secs(10) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("SKIPPED: this kernel does not show /proc/PID/task/*/wchan");
            return;
        }
        assert!(started.elapsed() < TIMEOUT, "s3tm never waited on the FIFO");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, "-INT");
    let run = finish(child);
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    let errors = run.error_lines();
    assert_eq!(errors.len(), 1, "one error line: {}", run.stderr);
    assert!(
        errors[0].contains("interrupted before the transfer started") && errors[0].contains("FIFO"),
        "{}",
        errors[0]
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

/// Runs `cp` slowed down by the proxy, pauses it with SIGINT once bytes are done, and
/// returns what `s3tm ls --json` then shows of it.
fn paused_cp(env: &Env, cp: &[&str], key: &str) -> Value {
    let mut child = env.s3tm(cp).spawn().unwrap();
    env.wait_for_bytes_done(&mut child, key);
    signal(&child, "-INT");
    let paused = finish(child);
    assert_eq!(paused.code, Some(130), "stderr: {}", paused.stderr);
    let listed = env.ls();
    assert_eq!(listed.len(), 1, "{listed:?}");
    listed.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_file_overwritten_while_paused_is_checked_and_fetched_again() {
    use std::os::unix::fs::FileExt;
    let env = Env::new().await;
    let src = put_object(&env, "obj", 30 * MIB, 31);

    env.slow_down(Duration::from_millis(250));
    let cp = SLOW_COPY;
    let paused = paused_cp(&env, &cp, "obj");
    assert!(paused["bytes_done"].as_u64() >= Some(5 * MIB), "{paused}");
    let partial = env.path("copy.bin.s3tm-partial");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&partial)
        .unwrap();
    f.write_all_at(&[0u8; 4096], 0).unwrap();
    drop(f);

    env.proxy.clear();
    let mut again = cp.to_vec();
    again.push("--json");
    let resumed = env.run(&again);
    assert_eq!(resumed.code, Some(0), "stderr: {}", resumed.stderr);
    assert!(
        resumed.stderr.contains("fetching them again"),
        "the changed range is named: {}",
        resumed.stderr
    );
    let events = json_lines(&resumed.stdout);
    let completed = events.last().unwrap();
    assert_eq!(completed["event"], "completed", "{events:?}");
    assert_eq!(completed["verified"], true, "{completed}");
    assert!(
        completed["bytes_rechecked"].as_u64() >= Some(5 * MIB),
        "{completed}"
    );
    assert_eq!(completed["bytes_recheck_failed"], 5 * MIB, "{completed}");
    assert_eq!(sha256(&env.path("copy.bin")), sha256(&src));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_rewritten_while_paused_with_its_mtime_put_back_is_refused() {
    use std::os::unix::fs::FileExt;
    let env = Env::new().await;
    env.slow_down(Duration::from_millis(250));
    let src = env.path("big.bin");
    random_file(&src, 30 * MIB, 32);
    let cp = [
        "cp",
        "--part-size",
        "5MiB",
        "--concurrency",
        "1",
        "big.bin",
        "s3://bucket/big.bin",
    ];
    paused_cp(&env, &cp, "big.bin");
    let mtime = std::fs::metadata(&src).unwrap().modified().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
    f.write_all_at(&vec![0xA5; 4096], 0).unwrap();
    f.set_modified(mtime).unwrap(); // as `touch -d` would
    drop(f);

    env.proxy.clear();
    let run = env.run(&cp);
    assert_eq!(
        run.code,
        Some(1),
        "stdout: {} stderr: {}",
        run.stdout,
        run.stderr
    );
    let errors = run.error_lines();
    assert_eq!(errors.len(), 1, "one error line: {}", run.stderr);
    assert!(
        errors[0].contains("big.bin") && errors[0].contains("ctime"),
        "the error names the file and what changed: {}",
        errors[0]
    );
    assert!(
        !env.object("big.bin").exists(),
        "an object was completed from a changed source"
    );
}

/// Ctrl-C while the last request of an upload is in flight: s3tm lets it finish, and the
/// upload it finished is reported as what it is, completed (exit 0), not as paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_that_finds_the_upload_done_reports_it_completed() {
    let env = Env::new().await;
    let src = env.path("small.bin");
    random_file(&src, 7 * MIB, 33); // below the multipart threshold: one PutObject
    env.proxy.delay(
        Matcher::method(http::Method::PUT),
        Duration::from_millis(1500),
        ALWAYS,
    );
    let mut child = env
        .s3tm(&["cp", "small.bin", "s3://bucket/small.bin"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while !env
        .proxy
        .requests()
        .iter()
        .any(|r| r.method == http::Method::PUT)
    {
        assert!(child.try_wait().unwrap().is_none(), "s3tm ended early");
        assert!(Instant::now() < deadline, "no PUT was sent");
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(&child, "-INT");
    let run = finish(child);
    assert_eq!(
        run.code,
        Some(0),
        "stdout: {} stderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.contains("uploaded"), "{}", run.stdout);
    assert!(
        !run.stderr.contains("paused") && !run.stderr.contains("resume"),
        "no pause is claimed: {}",
        run.stderr
    );
    assert_eq!(sha256(&env.object("small.bin")), sha256(&src));
    assert!(env.ls().is_empty());
}

/// `-vv` (or RUST_LOG) shows every request on stderr, never a secret; without it the log
/// stays quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_flags_and_rust_log_show_the_request_log() {
    let env = Env::new().await;
    random_file(&env.path("f.bin"), 12 * MIB, 34);
    let quiet = env.run(&["cp", "f.bin", "s3://bucket/quiet.bin"]);
    assert_eq!(quiet.code, Some(0), "{}", quiet.stderr);
    assert!(!quiet.stderr.contains("status=200"), "{}", quiet.stderr);

    let loud = env.run(&["-vv", "cp", "f.bin", "s3://bucket/loud.bin"]);
    assert_eq!(loud.code, Some(0), "{}", loud.stderr);
    let logged = finish(
        env.s3tm(&["cp", "f.bin", "s3://bucket/logged.bin"])
            .env("RUST_LOG", "debug")
            .spawn()
            .unwrap(),
    );
    assert_eq!(logged.code, Some(0), "{}", logged.stderr);
    for run in [&loud, &logged] {
        assert!(
            run.stderr.contains("UploadPart") && run.stderr.contains("status=200"),
            "each request with its status: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains(env.server.secret_key()),
            "a secret was logged"
        );
    }
}

/// The same `cp` of a paused download against another endpoint is another transfer; the
/// refusal names the server the paused one belongs to, and no one else is running it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_download_rerun_against_another_endpoint_names_its_server() {
    let env = Env::new().await;
    put_object(&env, "obj", 20 * MIB, 35);
    env.slow_down(Duration::from_millis(250));
    let cp = SLOW_COPY;
    paused_cp(&env, &cp, "obj");

    let direct = env.server.endpoint();
    let mut args = vec!["--endpoint-url", direct.as_str(), "--path-style"];
    args.extend(cp);
    let run = finish(env.s3tm_without_endpoint(&args).spawn().unwrap());
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let errors = run.error_lines();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        errors[0].contains(&env.proxy.endpoint()) && errors[0].contains("saved against"),
        "names the paused download's server: {}",
        errors[0]
    );
    assert!(
        !errors[0].contains("another s3tm is running"),
        "nothing else is running it: {}",
        errors[0]
    );
}

/// A corrupt checkpoint: `resume ID` names the corruption (not "no saved transfer"),
/// `resume --all` fails because of it, and `cancel ID` removes it, saying what it could
/// not clean up: nothing in a record that fails its checksum is trusted, not even the
/// path of a partial file to delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_checkpoint_is_named_by_resume_and_removed_by_cancel() {
    let env = Env::new().await;
    put_object(&env, "obj", 20 * MIB, 36);
    env.slow_down(Duration::from_millis(250));
    let cp = SLOW_COPY;
    let paused = paused_cp(&env, &cp, "obj");
    let id = paused["id"].as_str().unwrap().to_owned();
    let record = env.state_dir().join(format!("{id}.record"));
    let mut bytes = std::fs::read(&record).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0xff;
    std::fs::write(&record, &bytes).unwrap();

    let resumed = env.run(&["resume", &id]);
    assert_eq!(resumed.code, Some(1), "{}", resumed.stderr);
    assert!(
        resumed.stderr.contains("corrupt") && !resumed.stderr.contains("no saved transfer"),
        "{}",
        resumed.stderr
    );
    let all = env.run(&["resume", "--all"]);
    assert_eq!(
        all.code,
        Some(1),
        "a transfer could not be resumed: {}",
        all.stderr
    );

    let cancelled = env.run(&["cancel", &id]);
    assert_eq!(cancelled.code, Some(0), "{}", cancelled.stderr);
    assert!(!record.exists(), "the corrupt record was kept");
    assert!(
        cancelled.stdout.contains("s3tm-partial") && cancelled.stdout.contains("s3tm clean"),
        "says what may remain: {}",
        cancelled.stdout
    );
    let listed = env.run(&["ls", "--json"]);
    assert!(listed.stdout.trim().is_empty() && !listed.stderr.contains("warning"));
}

/// On a slow link, Ctrl-C does not wait for whole ranges to cross: after
/// `--pause-timeout` the ranges still in flight are cut off, the message says how much
/// will be fetched again, and the same `cp` then completes the download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_on_a_slow_link_cuts_what_is_still_in_flight() {
    let env = Env::new().await;
    let src = put_object(&env, "obj", 20 * MIB, 37);
    env.proxy.limit_bandwidth(MIB);
    let cp = [
        "--pause-timeout",
        "1s",
        "cp",
        "--json",
        "--part-size",
        "5MiB",
        "--concurrency",
        "2",
        "s3://bucket/obj",
        "copy.bin",
    ];
    let start = env.proxy.body_bytes();
    let child = env.s3tm(&cp).spawn().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while env.proxy.body_bytes().to_client - start.to_client < MIB {
        assert!(Instant::now() < deadline, "nothing was fetched");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, "-INT");
    let paused = finish(child);
    assert_eq!(paused.code, Some(130), "{}", paused.stderr);
    let line = json_lines(&paused.stdout)
        .into_iter()
        .find(|e| e["event"] == "paused")
        .unwrap_or_else(|| panic!("no paused line: {}", paused.stdout));
    assert_eq!(line["requests_cut"], 2, "{line}");
    assert_eq!(line["bytes_to_resend"], 10 * MIB, "{line}");
    assert!(
        paused.stderr.contains("cut off") && paused.stderr.contains("sent again"),
        "{}",
        paused.stderr
    );

    env.proxy.limit_bandwidth(0);
    let resumed = env.run(&cp[2..]);
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    assert_eq!(sha256(&env.path("copy.bin")), sha256(&src));
}

/// Checkpoints that cannot be saved (the state directory's filesystem is full) are said
/// on stderr when it happens, and a transfer that completes is still a success (exit 0),
/// with nothing left in `s3tm ls`. Needs root for the tmpfs; says SKIPPED otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_state_directory_is_a_warning_not_a_failure() {
    let env = Env::new().await;
    let Some(_full) =
        FullStateDir::mount(&env, "a_full_state_directory_is_a_warning_not_a_failure")
    else {
        return;
    };
    random_file(&env.path("f.bin"), 16 * MIB, 38);
    let run = env.run(&["cp", "--part-size", "5MiB", "f.bin", "s3://bucket/f.bin"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("checkpoint not saved") && run.stderr.contains("s3tm: warning:"),
        "the failed saves are said: {}",
        run.stderr
    );
    assert!(run.stdout.contains("uploaded"), "{}", run.stdout);
    assert_eq!(sha256(&env.object("f.bin")), sha256(&env.path("f.bin")));
    assert!(env.ls().is_empty(), "a completed transfer left a record");
}

/// The state directory on a tmpfs filled to the last byte, unmounted on drop; `None`
/// (after saying SKIPPED) where no tmpfs can be mounted, which CI (root) must allow.
struct FullStateDir(PathBuf);

impl FullStateDir {
    fn mount(env: &Env, test: &str) -> Option<FullStateDir> {
        let state = env.state_dir();
        std::fs::create_dir_all(&state).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
            .arg(&state)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("SKIPPED {test}: cannot mount a tmpfs (needs root)");
            assert!(!s3_testkit::in_ci(), "CI runs as root and must run {test}");
            return None;
        }
        let mut filler = std::fs::File::create(state.join("filler")).unwrap();
        while filler.write_all(&[0u8; 4096]).is_ok() {}
        Some(FullStateDir(state))
    }
}

impl Drop for FullStateDir {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A pause whose checkpoint cannot be saved is not reported as saved: no resume command,
/// exit 1, and the error says the checkpoint was not saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_whose_checkpoint_cannot_be_saved_says_so() {
    let env = Env::new().await;
    put_object(&env, "obj", 20 * MIB, 39);
    let Some(_full) = FullStateDir::mount(&env, "a_pause_whose_checkpoint_cannot_be_saved_says_so")
    else {
        return;
    };
    env.slow_down(Duration::from_millis(250));
    let start = env.proxy.body_bytes();
    let child = env.s3tm(&SLOW_COPY).spawn().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while env.proxy.body_bytes().to_client - start.to_client < 5 * MIB {
        assert!(Instant::now() < deadline, "nothing was fetched");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, "-INT");
    let run = finish(child);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("could not be saved")
            && !run.stderr.contains("the checkpoint is saved")
            && !run.stderr.contains("to resume:"),
        "{}",
        run.stderr
    );
}

/// Runs `s3tm` with `input` written to its standard input in uneven pieces (as a pipe
/// from another program would deliver it), then closed.
fn run_with_stdin(env: &Env, args: &[&str], input: Vec<u8>) -> Run {
    let mut child = env.s3tm(args).stdin(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let mut at = 0;
        let mut piece = 1;
        while at < input.len() {
            let end = (at + piece).min(input.len());
            if stdin.write_all(&input[at..end]).is_err() {
                return;
            }
            at = end;
            piece = piece * 13 % 400_009 + 1;
        }
    });
    finish(child)
}

fn random_bytes(size: u64, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipes_carry_the_bytes_both_ways_and_stdout_holds_only_the_object() {
    let env = Env::new().await;
    for (key, size) in [("small", 1000), ("empty", 0), ("big", 13 * MIB + 777)] {
        let data = random_bytes(size, size + 5);
        let url = format!("s3://bucket/{key}");
        let up = run_with_stdin(
            &env,
            &["cp", "--part-size", "5MiB", "-", &url],
            data.clone(),
        );
        assert_eq!(up.code, Some(0), "{key}: {}", up.stderr);
        assert!(
            up.stderr.contains("a pipe cannot be resumed"),
            "{key}: said at the start: {}",
            up.stderr
        );
        assert!(
            std::fs::read(env.object(key)).unwrap() == data,
            "{key}: the server holds other bytes than were piped in"
        );
        for extra in [&[][..], &["--json"][..]] {
            let mut args = vec!["cp", "--part-size", "5MiB"];
            args.extend_from_slice(extra);
            args.extend([url.as_str(), "-"]);
            let output = env.s3tm(&args).output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(0), "{key}: {stderr}");
            assert!(
                output.stdout == data,
                "{key} {extra:?}: stdout holds {} bytes, not the object's {size} alone; stderr: {stderr}",
                output.stdout.len()
            );
            assert!(
                stderr.contains("cannot be taken back")
                    && (stderr.contains("downloaded s3://") || stderr.contains("\"completed\""))
                    && !stderr.contains("NOT verified"),
                "{key}: the verdict and the warning go to stderr: {stderr}"
            );
        }
    }
    // Parts grew from the stream: 13 MiB in 5 MiB parts is three parts.
    let mut parts: Vec<u32> = env
        .proxy
        .requests()
        .iter()
        .filter(|r| r.method == http::Method::PUT && r.status == Some(200))
        .filter_map(|r| r.part_number())
        .collect();
    parts.sort_unstable();
    assert_eq!(parts, vec![1, 2, 3]);
    assert!(env.ls().is_empty(), "pipes leave no checkpoint");
    // `--expected-size` is for standard input only; `-` needs a whole key to go to.
    for args in [
        &["cp", "--expected-size", "1GiB", "a.bin", "s3://bucket/k"][..],
        &["cp", "-", "s3://bucket/dir/"][..],
    ] {
        let run = env.run(args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_to_stdout_that_does_not_match_exits_1() {
    let env = Env::new().await;
    put_object(&env, "obj", 3 * MIB, 41);
    let stored = env.object("obj");
    let mut bad = std::fs::read(&stored).unwrap();
    bad[MIB as usize] ^= 0x55;
    std::fs::write(&stored, &bad).unwrap();
    let output = env.s3tm(&["cp", "s3://bucket/obj", "-"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout == bad, "the bytes were written as they came");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("s3tm: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("mismatch")
            && errors[0].contains("cannot be taken back")
            && !errors[0].contains("<stream>"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_an_upload_from_stdin_aborts_it_and_exits_130() {
    let env = Env::new().await;
    env.slow_down(Duration::from_millis(400));
    let mut child = env
        .s3tm(&["cp", "--part-size", "5MiB", "-", "s3://bucket/piped"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    // 12 MiB, and stdin left open: the stream has not ended when the signal comes.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&random_bytes(12 * MIB, 3)).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while !env
        .proxy
        .requests()
        .iter()
        .any(|r| r.part_number().is_some())
    {
        assert!(Instant::now() < deadline, "no part was sent");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, "-INT");
    let run = finish(child);
    drop(stdin);
    assert_eq!(run.code, Some(130), "{}", run.stderr);
    assert!(
        run.stderr.contains("multipart upload was aborted") && !run.stderr.contains("to resume"),
        "{}",
        run.stderr
    );
    let aborts = env
        .proxy
        .requests()
        .iter()
        .filter(|r| r.method == http::Method::DELETE && r.query.contains("uploadId"))
        .count();
    assert_eq!(aborts, 1, "the multipart upload is aborted on the server");
    assert!(!env.object("piped").exists());
    assert!(env.ls().is_empty());
}

/// Every regular file under `dir` by its `/`-separated relative path, with its SHA-256.
fn tree_hashes(dir: &Path) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, sha256(&p));
            }
        }
    }
    out
}

/// `ls --json`'s line for the job, once its files done reach `files`, while `child` runs.
fn wait_for_job_files(env: &Env, child: &mut Child, files: u64) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(j) = env
            .ls()
            .into_iter()
            .find(|t| t["kind"] == "job" && t["files_done"].as_u64() >= Some(files))
        {
            return j;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("s3tm ended ({status}) before {files} files were done");
        }
        assert!(Instant::now() < deadline, "the job made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `cp --recursive` both ways as one job: Ctrl-C pauses it (exit 130, the resume command
/// printed, the job listed as paused with its files done), kill -9 loses only what was
/// in flight, the same command or `resume ID` finishes it, and the round trip is
/// byte-exact. Files already done are not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_job_survives_ctrl_c_and_kill_9_and_round_trips() {
    let env = Env::new().await;
    let src = env.path("tree");
    std::fs::create_dir_all(src.join("docs/ünï cödé")).unwrap();
    for i in 0..30u64 {
        random_file(&src.join(format!("docs/f{i:02}.bin")), 20_000 + i * 1000, i);
    }
    std::fs::write(src.join("docs/ünï cödé/a b.txt"), b"spaces").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    random_file(&src.join("big.bin"), 40 * MIB, 99);
    // Every part and every small file's PUT or GET waits: the job is always mid-way.
    env.proxy
        .delay(Matcher::upload_part(), Duration::from_millis(250), ALWAYS);
    env.proxy
        .delay(Matcher::any(), Duration::from_millis(30), ALWAYS);
    let up = [
        "cp",
        "-r",
        "--part-size",
        "5MiB",
        "--concurrency",
        "1",
        "tree",
        "s3://bucket/backup/",
    ];

    let mut child = env.s3tm(&up).spawn().unwrap();
    let seen = wait_for_job_files(&env, &mut child, 3);
    let id = seen["id"].as_str().unwrap().to_owned();
    signal(&child, "-INT");
    let paused = finish(child);
    assert_eq!(paused.code, Some(130), "stderr: {}", paused.stderr);
    assert!(
        paused.stderr.contains(&format!("resume {id}")),
        "{}",
        paused.stderr
    );
    let listed = env.ls();
    assert_eq!(
        listed.len(),
        1,
        "the big file is listed with its job: {listed:?}"
    );
    assert_eq!(listed[0]["state"], "paused");
    assert_eq!(listed[0]["files_total"], 33);
    let done_at_pause = listed[0]["files_done"].as_u64().unwrap();
    assert!((3..33).contains(&done_at_pause), "{listed:?}");
    // `ls ID` expands the job, file by file.
    let files = env.run(&["ls", &id, "--json"]);
    assert_eq!(files.code, Some(0), "{}", files.stderr);
    let files = json_lines(&files.stdout);
    assert_eq!(files.len(), 33);
    let done = files.iter().filter(|f| f["state"] == "done").count() as u64;
    assert_eq!(done, done_at_pause, "{files:?}");
    assert!(
        files
            .iter()
            .all(|f| f["state"] == "done" || f["state"] == "to do")
    );

    // The same command continues; kill -9 it once more files are done.
    let mut child = env.s3tm(&up).spawn().unwrap();
    wait_for_job_files(&env, &mut child, done_at_pause + 3);
    child.kill().unwrap();
    let killed = finish(child);
    assert_eq!(killed.code, None);
    let listed = env.ls();
    assert_eq!(listed[0]["state"], "interrupted", "{listed:?}");
    let done_at_kill = listed[0]["files_done"].as_u64().unwrap();
    assert!(done_at_kill >= done_at_pause + 3, "{listed:?}");

    let puts_before = env.proxy.requests().len();
    let resumed = finish(env.s3tm_without_endpoint(&["resume", &id]).spawn().unwrap());
    assert_eq!(resumed.code, Some(0), "stderr: {}", resumed.stderr);
    assert!(
        resumed.stdout.contains("33 of 33 files done"),
        "{}",
        resumed.stdout
    );
    let whole_puts = env.proxy.requests()[puts_before..]
        .iter()
        .filter(|r| r.method == http::Method::PUT && r.part_number().is_none())
        .count() as u64;
    assert!(
        whole_puts <= 33 - done_at_kill,
        "files done were not sent again: {whole_puts} PUTs for {} files left",
        33 - done_at_kill
    );
    assert!(env.ls().is_empty(), "a finished job leaves nothing saved");
    assert_eq!(
        tree_hashes(&env.server.root().join("bucket/backup")),
        tree_hashes(&src)
    );

    // And back down, paused by Ctrl-C on the way.
    let down = [
        "cp",
        "--recursive",
        "--part-size",
        "5MiB",
        "--concurrency",
        "1",
        "s3://bucket/backup",
        "restored",
    ];
    env.proxy
        .delay(Matcher::ranged_get(), Duration::from_millis(250), ALWAYS);
    let mut child = env.s3tm(&down).spawn().unwrap();
    wait_for_job_files(&env, &mut child, 3);
    signal(&child, "-INT");
    let paused = finish(child);
    assert_eq!(paused.code, Some(130), "stderr: {}", paused.stderr);
    let again = env.run(&down);
    assert_eq!(again.code, Some(0), "stderr: {}", again.stderr);
    assert!(
        again.stderr.contains("resuming the interrupted job"),
        "{}",
        again.stderr
    );
    assert_eq!(tree_hashes(&env.path("restored")), tree_hashes(&src));
    let partials: Vec<_> = tree_hashes(&env.path("restored"))
        .into_keys()
        .filter(|k| k.ends_with(".s3tm-partial"))
        .collect();
    assert!(partials.is_empty(), "{partials:?}");
    assert!(env.ls().is_empty());
}

/// `s3tm sync`: the first run copies, the second finds nothing to do, `--delete
/// --dry-run` prints what would go and changes nothing, `--delete` removes it;
/// `--exclude`/`--include` follow aws-cli's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_copies_once_and_deletes_only_when_asked() {
    let env = Env::new().await;
    let src = env.path("site");
    std::fs::create_dir_all(src.join("css")).unwrap();
    std::fs::write(src.join("index.html"), "<p>hi</p>").unwrap();
    std::fs::write(src.join("css/site.css"), "p {}").unwrap();
    std::fs::write(src.join("notes.tmp"), "scratch").unwrap();
    let sync = ["sync", "--exclude", "*.tmp", "site", "s3://bucket/www/"];
    let first = env.run(&sync);
    assert_eq!(first.code, Some(0), "stderr: {}", first.stderr);
    assert!(
        first.stdout.contains("2 of 2 files done"),
        "{}",
        first.stdout
    );
    assert!(!env.object("www/notes.tmp").exists(), "excluded");
    let second = env.run(&sync);
    assert_eq!(second.code, Some(0), "stderr: {}", second.stderr);
    assert!(
        second.stdout.contains("nothing to sync"),
        "{}",
        second.stdout
    );
    // Touched, not changed: by time it would go again, by content it does not.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    let page = std::fs::File::options()
        .append(true)
        .open(src.join("index.html"))
        .unwrap();
    page.set_modified(later).unwrap();
    let by_content = env.run(&[
        "sync",
        "--checksum",
        "--exclude",
        "*.tmp",
        "site",
        "s3://bucket/www/",
    ]);
    assert_eq!(by_content.code, Some(0), "stderr: {}", by_content.stderr);
    assert!(
        by_content.stdout.contains("nothing to sync")
            && by_content.stderr.contains("compared 2 files"),
        "{}\n{}",
        by_content.stdout,
        by_content.stderr
    );
    let by_time = env.run(&[
        "sync",
        "--dry-run",
        "--exclude",
        "*.tmp",
        "site",
        "s3://bucket/www/",
    ]);
    assert!(
        by_time.stdout.contains("(dry run) upload: index.html"),
        "{}",
        by_time.stdout
    );

    // The whole directory: an empty one would go up as a folder marker, whose PutObject
    // s3s-fs answers without an ETag.
    std::fs::remove_dir_all(src.join("css")).unwrap();
    let dry = env.run(&["sync", "--delete", "--dry-run", "site", "s3://bucket/www/"]);
    assert_eq!(dry.code, Some(0), "stderr: {}", dry.stderr);
    assert!(
        dry.stdout
            .contains("(dry run) delete: s3://bucket/www/css/site.css")
            && dry.stdout.contains("(dry run) upload: notes.tmp"),
        "{}",
        dry.stdout
    );
    assert!(
        env.object("www/css/site.css").exists(),
        "a dry run changes nothing"
    );
    assert!(!env.object("www/notes.tmp").exists());

    let real = env.run(&[
        "sync",
        "--delete",
        "--exclude",
        "*.tmp",
        "site",
        "s3://bucket/www/",
    ]);
    assert_eq!(real.code, Some(0), "stderr: {}", real.stderr);
    assert!(
        real.stdout.contains("delete: s3://bucket/www/css/site.css"),
        "{}",
        real.stdout
    );
    assert!(!env.object("www/css/site.css").exists());
    assert!(env.object("www/index.html").exists());
    assert!(env.ls().is_empty());
}

/// `cp -r --json`: a `started` line, one `file_done` line per file (with how it was
/// verified) or `file_failed`, and one `job` line at the end, on stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_job_prints_a_json_line_per_file() {
    let env = Env::new().await;
    let src = env.path("t");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a"), "a").unwrap();
    std::fs::write(src.join("sub/b"), "bb").unwrap();
    let up = env.run(&["cp", "-r", "--json", "t", "s3://bucket/j/"]);
    assert_eq!(up.code, Some(0), "stderr: {}", up.stderr);
    let down = env.run(&["cp", "-r", "--json", "s3://bucket/j/", "back"]);
    assert_eq!(down.code, Some(0), "stderr: {}", down.stderr);
    let lines = json_lines(&down.stdout);
    assert_eq!(lines.first().unwrap()["event"], "started", "{lines:?}");
    let mut files: Vec<&str> = lines
        .iter()
        .filter(|l| l["event"] == "file_done")
        .map(|l| l["path"].as_str().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["a", "sub/b"], "{lines:?}");
    assert!(
        lines
            .iter()
            .filter(|l| l["event"] == "file_done")
            .all(|l| l["verified"] == true && l["key"].as_str().unwrap().starts_with("j/")),
        "{lines:?}"
    );
    let end = lines.last().unwrap();
    assert_eq!(end["event"], "job");
    assert_eq!(end["files_done"], 2);
    assert_eq!(end["files_failed"], 0);
}

/// A closed stdout (`s3tm ... | head -1`) ends the printing, not the program with a
/// panic: here a dry-run sync printing 300 lines into a pipe closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_is_no_panic() {
    let env = Env::new().await;
    let src = env.path("many");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..300 {
        std::fs::write(src.join(format!("f{i:03}")), "x").unwrap();
    }
    let mut child = env
        .s3tm(&["sync", "--dry-run", "many", "s3://bucket/m/"])
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let run = finish(child);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}
