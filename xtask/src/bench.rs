//! `cargo xtask bench`: s3tm's uploads and downloads measured side by side with
//! `aws s3 cp`, rclone and a single-stream `curl --aws-sigv4`, against the embedded
//! `s3s-fs` server (signature verification on) on loopback, on the same file; then
//! whole directory trees (see [`trees`]).
//!
//! Each client runs under a measuring wrapper (see [`measure`]) that reports its wall
//! time, CPU (user + sys) and peak RSS; the server runs inside this process, so the CPU
//! this process uses during a run is the server's share. Every figure is the median of
//! `--runs` runs with the minimum and maximum. Results are printed and written to
//! `docs/benchmarks.md` (see [`report`]).
//!
//! The command re-runs itself built with `--release` (the server must be optimised as
//! much as the clients), then builds `s3tm` in release mode.

mod interrupt;
mod measure;
mod report;
mod trees;

use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use anyhow::{Context as _, bail};

use crate::flags::UsageError;
use crate::step::Step;

pub(crate) use measure::run_wrapper;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
const BUCKET: &str = "bench";
/// The venv `--install-peers` puts awscli in (at the workspace root, git-ignored).
const AWS_VENV: &str = ".venv-bench";
/// Concurrency levels of the sweep.
const SWEEP: [u32; 5] = [1, 2, 4, 8, 16];
/// Every `--checksum` s3tm takes, as the CLI names them.
const CHECKSUMS: [&str; 5] = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];
/// `--part-size` of the scaling table's memory-budget row.
const BIG_PART: u64 = GIB;
/// Sizes of the scaling table (`--quick` drops the largest).
const SCALING: [u64; 3] = [64 * MIB, GIB, 4 * GIB];

/// `cargo xtask bench` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BenchOptions {
    pub(crate) size_bytes: u64,
    pub(crate) runs: u32,
    pub(crate) install_peers: bool,
    pub(crate) quick: bool,
    /// Only the trees (`--trees-only`): no single-file sections, no micro-benchmarks.
    pub(crate) trees_only: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            size_bytes: GIB,
            runs: 3,
            install_peers: false,
            quick: false,
            trees_only: false,
        }
    }
}

pub(crate) fn parse(mut rest: &[String]) -> Result<BenchOptions, UsageError> {
    let mut options = BenchOptions::default();
    while let Some((arg, tail)) = rest.split_first() {
        rest = tail;
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        let mut value = |what: &str| -> Result<String, UsageError> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            let Some((v, tail)) = rest.split_first() else {
                return Err(UsageError(format!("`{name}` needs {what}")));
            };
            rest = tail;
            Ok(v.clone())
        };
        match name {
            "--size" => {
                let v = value("a size such as 64MiB or 1GiB")?;
                options.size_bytes = parse_size(&v)
                    .filter(|&s| s > 0)
                    .ok_or_else(|| UsageError(format!("`--size`: cannot read `{v}`")))?;
            }
            "--runs" => {
                let v = value("a number")?;
                options.runs = v.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                    UsageError(format!("`--runs` needs a positive number, got `{v}`"))
                })?;
            }
            "--install-peers" if inline.is_none() => options.install_peers = true,
            "--quick" if inline.is_none() => options.quick = true,
            "--trees-only" if inline.is_none() => options.trees_only = true,
            _ => return Err(UsageError(format!("unknown option `{arg}` for `bench`"))),
        }
    }
    Ok(options)
}

/// `1048576`, `64MiB`, `1GiB`, `512K`, `2G` (binary units; case-insensitive).
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1024,
        "m" | "mib" | "mb" => MIB,
        "g" | "gib" | "gb" => GIB,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// `64 MiB`, `1 GiB`, `1.5 GiB`.
pub(crate) fn format_size(bytes: u64) -> String {
    if bytes >= GIB && bytes.is_multiple_of(GIB / 4) {
        format!("{} GiB", fmt_trim(bytes as f64 / GIB as f64))
    } else if bytes >= MIB {
        format!("{} MiB", fmt_trim(bytes as f64 / MIB as f64))
    } else {
        format!("{bytes} B")
    }
}

fn fmt_trim(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

pub(crate) fn run(options: &BenchOptions) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        // The server runs in this process: measure against an optimised one.
        let mut args = vec![
            "run".to_owned(),
            "--release".to_owned(),
            "--package".to_owned(),
            "xtask".to_owned(),
            "--quiet".to_owned(),
            "--".to_owned(),
            "bench".to_owned(),
            format!("--size={}", options.size_bytes),
            format!("--runs={}", options.runs),
        ];
        if options.install_peers {
            args.push("--install-peers".to_owned());
        }
        if options.quick {
            args.push("--quick".to_owned());
        }
        if options.trees_only {
            args.push("--trees-only".to_owned());
        }
        return Step::cargo("bench (release xtask)", args).run();
    }
    let root = crate::project_root();
    if options.install_peers {
        install_peers(&root)?;
    }
    Step::cargo("build s3tm", ["build", "--release", "-p", "cli-demo"]).run()?;
    let s3tm = target_dir(&root).join("release/s3tm");
    if !s3tm.is_file() {
        bail!(
            "`cargo build --release -p cli-demo` left no {}",
            s3tm.display()
        );
    }
    let micro = if options.quick || options.trees_only {
        None
    } else {
        Some(micro_benchmarks()?)
    };

    let runtime = tokio::runtime::Runtime::new().context("cannot start a tokio runtime")?;
    let server = runtime
        .block_on(s3_testkit::try_start_s3s_fs())
        .context("cannot start the s3s-fs server")?;
    server
        .create_bucket(BUCKET)
        .context("cannot create the bench bucket")?;
    let work = tempfile::Builder::new()
        .prefix("s3tm-bench-")
        .tempdir()
        .context("cannot create a work directory")?;
    let env = Env::new(&server, work.path())?;
    let tools = detect_tools(&root, &s3tm);
    for tool in &tools {
        match &tool.version {
            Ok(v) => println!("==> {}: {v}", tool.kind.name()),
            Err(why) => println!("==> {}: not measured ({why})", tool.kind.name()),
        }
    }
    let mut bench = Bench {
        env,
        runs: options.runs,
        busy: report::Busy::default(),
        cache_dropped: true,
    };
    let machine = report::Machine::describe();
    let started = SystemTime::now();

    let files = if options.trees_only {
        FileFigures::default()
    } else {
        files(&mut bench, &tools, options, &runtime, &server)?
    };
    // 7. Whole trees, every peer.
    let mut trees = Vec::new();
    for spec in [trees::TreeSpec::small(), trees::TreeSpec::mixed()] {
        trees.extend(bench.trees(&tools, &spec)?);
    }

    let results = report::Results {
        started,
        finished: SystemTime::now(),
        machine,
        options: options.clone(),
        tools: tools
            .iter()
            .map(|t| (t.kind, t.version.clone().map_err(|e| e.to_string())))
            .collect(),
        comparison: files.comparison,
        scaling: files.scaling,
        sweep: files.sweep,
        checksums: files.checksums,
        pipes: files.pipes,
        busy: bench.busy.clone(),
        cache_dropped: bench.cache_dropped,
        micro,
        interrupts: files.interrupts,
        trees,
    };
    println!("\n{}", results.summary());
    // A run of the trees alone leaves the whole report as it was.
    let path = root.join(if options.trees_only {
        "docs/benchmarks-trees.md"
    } else {
        "docs/benchmarks.md"
    });
    fs::create_dir_all(root.join("docs")).context("cannot create docs/")?;
    fs::write(&path, results.markdown())
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("==> wrote {}", path.display());
    drop(server);
    Ok(())
}

/// The figures of one file moved every way (sections 1 to 6 of the report).
#[derive(Default)]
struct FileFigures {
    comparison: Vec<Row>,
    scaling: Vec<Row>,
    sweep: Vec<Row>,
    checksums: Vec<Row>,
    pipes: Vec<Row>,
    interrupts: Vec<(
        Direction,
        interrupt::Stop,
        Result<interrupt::Interruption, String>,
    )>,
}

/// Sections 1 to 6: one file, every tool, then s3tm's scaling, concurrency, checksums,
/// pipes and interruptions.
fn files(
    bench: &mut Bench,
    tools: &[Tool],
    options: &BenchOptions,
    runtime: &tokio::runtime::Runtime,
    server: &s3_testkit::S3sFsServer,
) -> anyhow::Result<FileFigures> {
    // 1. The comparison, every tool on the same file.
    let main_file = bench.make_file(options.size_bytes)?;
    let mut comparison = Vec::new();
    for tool in tools.iter().filter(|t| t.version.is_ok()) {
        for direction in [Direction::Up, Direction::Down] {
            let row = bench.scenario(tool, direction, &main_file, Settings::default());
            print_row(&row);
            if tool.kind == ToolKind::S3tm
                && let Err(e) = &row.result
            {
                bail!("s3tm failed: {e}");
            }
            comparison.push(row);
        }
    }
    let s3tm_tool = tools
        .iter()
        .find(|t| t.kind == ToolKind::S3tm)
        .context("s3tm is always measured")?;

    // 2. Scaling: s3tm alone at 64 MiB, 1 GiB, 4 GiB.
    let mut scaling = Vec::new();
    for &size in SCALING.iter().filter(|&&s| !(options.quick && s > GIB)) {
        if size == options.size_bytes {
            scaling.extend(
                comparison
                    .iter()
                    .filter(|r| r.tool == ToolKind::S3tm)
                    .cloned(),
            );
            continue;
        }
        let file = bench.make_file(size)?;
        for direction in [Direction::Up, Direction::Down] {
            let row = bench.scenario(s3tm_tool, direction, &file, Settings::default());
            print_row(&row);
            scaling.push(row);
        }
        bench.remove_file(&file);
    }

    // The memory budget: an upload with parts far larger than it (one part of the whole
    // file, streamed from it), whose peak RSS should stay near the defaults'.
    let settings = Settings {
        part_size: Some(BIG_PART),
        ..Settings::default()
    };
    let row = bench.scenario(s3tm_tool, Direction::Up, &main_file, settings);
    print_row(&row);
    scaling.push(row);

    // 3. Concurrency sweep on the comparison's file.
    let mut sweep = Vec::new();
    if !options.quick {
        for concurrency in SWEEP {
            for direction in [Direction::Up, Direction::Down] {
                let settings = Settings {
                    concurrency: Some(concurrency),
                    ..Settings::default()
                };
                let row = bench.scenario(s3tm_tool, direction, &main_file, settings);
                print_row(&row);
                sweep.push(row);
            }
        }
    }
    // 4. Every checksum: uploads sending it, downloads verifying an object that carries
    // it (put in one PutObject, so the server reports it whole).
    let mut checksums = Vec::new();
    for checksum in CHECKSUMS {
        runtime
            .block_on(server.put_object(
                BUCKET,
                &main_file.download_key(Some(checksum)),
                &main_file.path,
                checksum,
            ))
            .with_context(|| format!("cannot put the {checksum} download source"))?;
        for direction in [Direction::Up, Direction::Down] {
            let settings = Settings {
                checksum: Some(checksum),
                ..Settings::default()
            };
            let row = bench.scenario(s3tm_tool, direction, &main_file, settings);
            print_row(&row);
            checksums.push(row);
        }
        // One such object at a time on the disk: the bench fills a small one otherwise.
        let key = main_file.download_key(Some(checksum));
        let _ = fs::remove_file(bench.env.server_root.join(BUCKET).join(key));
    }

    // 5. Pipes: s3tm and aws-cli from standard input and to standard output.
    let mut pipes = Vec::new();
    for tool in tools
        .iter()
        .filter(|t| t.version.is_ok() && matches!(t.kind, ToolKind::S3tm | ToolKind::Aws))
    {
        for direction in [Direction::Up, Direction::Down] {
            let settings = Settings {
                pipe: true,
                ..Settings::default()
            };
            let row = bench.scenario(tool, direction, &main_file, settings);
            print_row(&row);
            pipes.push(row);
        }
    }

    // 6. Interrupted and resumed, through a byte-counting proxy.
    let interrupts = interrupt::run_all(runtime, &bench.env, &s3tm_tool.program, &main_file);
    bench.remove_file(&main_file);
    Ok(FileFigures {
        comparison,
        scaling,
        sweep,
        checksums,
        pipes,
        interrupts,
    })
}

pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// Runs the divan micro-benchmarks and keeps what they print.
fn micro_benchmarks() -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (package, bench) in [
        ("s3-protocol", "protocol"),
        ("transfer-core", "step"),
        ("resume-store", "save"),
        ("transfer-manager", "md5"),
    ] {
        let label = format!("cargo bench -p {package} --bench {bench}");
        println!("==> [micro] {label}");
        let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["bench", "-p", package, "--bench", bench])
            .current_dir(crate::project_root())
            .output()
            .with_context(|| format!("cannot run `{label}`"))?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "`{label}` failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        print!("{text}");
        out.push((label, text));
    }
    Ok(out)
}

// ---- peers ----

/// The clients measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ToolKind {
    S3tm,
    Aws,
    Rclone,
    Curl,
}

impl ToolKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ToolKind::S3tm => "s3tm",
            ToolKind::Aws => "aws s3 cp",
            ToolKind::Rclone => "rclone",
            ToolKind::Curl => "curl (1 stream)",
        }
    }
}

struct Tool {
    kind: ToolKind,
    program: String,
    /// Its version line, or why it is not measured.
    version: Result<String, String>,
}

fn version_of(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .map_err(|e| format!("`{program}` not found ({e})"))?;
    if !output.status.success() {
        return Err(format!("`{program} {}` failed", args.join(" ")));
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

fn detect_tools(root: &Path, s3tm: &Path) -> Vec<Tool> {
    let venv_aws = root.join(AWS_VENV).join("bin/aws");
    let aws = if venv_aws.is_file() {
        venv_aws.to_string_lossy().into_owned()
    } else {
        "aws".to_owned()
    };
    let s3tm = s3tm.to_string_lossy().into_owned();
    let curl_version = version_of("curl", &["--version"]).and_then(|v| {
        // --aws-sigv4 arrived in curl 7.75.
        let number = v.split_whitespace().nth(1).unwrap_or_default().to_owned();
        let parts: Vec<u32> = number.split('.').filter_map(|p| p.parse().ok()).collect();
        if parts.as_slice() >= [7, 75].as_slice() {
            Ok(v)
        } else {
            Err(format!("{v}: --aws-sigv4 needs curl 7.75 or newer"))
        }
    });
    vec![
        Tool {
            kind: ToolKind::S3tm,
            version: Ok(format!(
                "s3tm release build of {}",
                report::git_describe(root)
            )),
            program: s3tm,
        },
        Tool {
            kind: ToolKind::Aws,
            version: version_of(&aws, &["--version"]),
            program: aws,
        },
        Tool {
            kind: ToolKind::Rclone,
            version: version_of("rclone", &["version"]),
            program: "rclone".to_owned(),
        },
        Tool {
            kind: ToolKind::Curl,
            version: curl_version,
            program: "curl".to_owned(),
        },
    ]
}

fn install_peers(root: &Path) -> anyhow::Result<()> {
    let venv = root.join(AWS_VENV);
    let run = |what: &str, program: &str, args: &[&str]| -> anyhow::Result<()> {
        println!("==> [install-peers] {program} {}", args.join(" "));
        let status = Command::new(program)
            .args(args)
            .current_dir(root)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .with_context(|| format!("cannot run {program} ({what})"))?;
        if !status.success() {
            bail!("{what} failed ({status})");
        }
        Ok(())
    };
    if !venv.join("bin/pip").is_file() {
        run(
            "creating the awscli venv",
            "python3",
            &["-m", "venv", AWS_VENV],
        )?;
    }
    let pip = venv.join("bin/pip");
    run(
        "installing awscli",
        &pip.to_string_lossy(),
        &["install", "--quiet", "--upgrade", "awscli"],
    )?;
    let sudo = !is_root();
    let apt = |args: &[&str]| -> anyhow::Result<()> {
        if sudo {
            let mut all = vec!["apt-get"];
            all.extend_from_slice(args);
            run("apt-get (through sudo)", "sudo", &all)
        } else {
            run("apt-get", "apt-get", args)
        }
    };
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", "rclone", "curl"])?;
    Ok(())
}

/// Empties the page cache (clean pages only; `sync` runs first). False when not allowed.
fn drop_page_cache() -> bool {
    fs::write("/proc/sys/vm/drop_caches", "1").is_ok()
}

/// Reads `path` once, so that the run finds it in the page cache.
fn read_through(path: &Path) -> anyhow::Result<()> {
    let mut f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    std::io::copy(&mut f, &mut std::io::sink())?;
    Ok(())
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1).map(|uid| uid == "0"))
            .unwrap_or(false)
    })
}

// ---- running the clients ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Up,
    Down,
}

impl Direction {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Direction::Up => "upload",
            Direction::Down => "download",
        }
    }
}

/// Everything the clients need to reach the server.
struct Env {
    endpoint: String,
    /// Where the server keeps objects (`ROOT/bucket/key`).
    server_root: PathBuf,
    access_key: String,
    secret_key: String,
    region: String,
    dir: PathBuf,
    aws_config: PathBuf,
    aws_credentials: PathBuf,
    rclone_config: PathBuf,
}

impl Env {
    fn new(server: &s3_testkit::S3sFsServer, dir: &Path) -> anyhow::Result<Env> {
        let env = Env {
            endpoint: server.endpoint(),
            server_root: server.root().to_path_buf(),
            access_key: server.access_key().to_owned(),
            secret_key: server.secret_key().to_owned(),
            region: server.region().to_owned(),
            dir: dir.to_path_buf(),
            aws_config: dir.join("aws-config"),
            aws_credentials: dir.join("aws-credentials"),
            rclone_config: dir.join("rclone.conf"),
        };
        // Path-style addressing for the loopback endpoint; the rest are aws defaults
        // (10 concurrent requests, 8 MiB parts).
        fs::write(
            &env.aws_config,
            format!(
                "[default]\nregion = {}\ns3 =\n    addressing_style = path\n",
                env.region
            ),
        )?;
        fs::write(&env.aws_credentials, "")?;
        fs::write(&env.rclone_config, "")?;
        Ok(env)
    }

    /// Environment of every client: credentials in the standard variables, nothing from
    /// the user's own AWS or rclone configuration.
    fn vars(&self) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = [
            ("AWS_ACCESS_KEY_ID", self.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.as_str()),
            ("AWS_REGION", self.region.as_str()),
            ("AWS_DEFAULT_REGION", self.region.as_str()),
            ("AWS_CONFIG_FILE", &self.aws_config.to_string_lossy()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                &self.aws_credentials.to_string_lossy(),
            ),
            ("RCLONE_CONFIG_BENCH_TYPE", "s3"),
            ("RCLONE_CONFIG_BENCH_PROVIDER", "Other"),
            (
                "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID",
                self.access_key.as_str(),
            ),
            (
                "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY",
                self.secret_key.as_str(),
            ),
            ("RCLONE_CONFIG_BENCH_ENDPOINT", self.endpoint.as_str()),
            ("RCLONE_CONFIG_BENCH_REGION", self.region.as_str()),
            ("RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        vars.push((
            "RCLONE_CONFIG".to_owned(),
            self.rclone_config.to_string_lossy().into_owned(),
        ));
        vars
    }
}

/// Variables that would change what a client does or where it connects.
const ENV_REMOVE: &[&str] = &[
    "AWS_CA_BUNDLE",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "S3TM_STATE_DIR",
];

/// A random file to move.
pub(crate) struct TestFile {
    path: PathBuf,
    pub(crate) size_bytes: u64,
    /// Key of the copy downloads read (put there once by s3tm, not measured).
    key: String,
}

impl TestFile {
    /// The key downloads read: s3tm's default upload, or an object put in one PutObject
    /// carrying a checksum of `checksum` (`Bench::put_with_checksum`).
    fn download_key(&self, checksum: Option<&str>) -> String {
        match checksum {
            Some(c) => format!("source/{}-{c}.bin", self.size_bytes),
            None => self.key.clone(),
        }
    }
}

/// s3tm flags a row sets instead of the defaults.
#[derive(Debug, Clone, Copy, Default)]
struct Settings {
    concurrency: Option<u32>,
    part_size: Option<u64>,
    /// `--checksum NAME`; a download reads an object put with that checksum.
    checksum: Option<&'static str>,
    /// Through a pipe: `cp - s3://...` fed the file through it, `cp s3://... -` into it.
    pipe: bool,
}

impl Settings {
    /// ` concurrency 4`, ` --part-size 1 GiB`, or nothing.
    fn label(self) -> String {
        let mut label = String::new();
        if let Some(c) = self.concurrency {
            label.push_str(&format!(" concurrency {c}"));
        }
        if let Some(p) = self.part_size {
            label.push_str(&format!(" --part-size {}", format_size(p)));
        }
        if let Some(c) = self.checksum {
            label.push_str(&format!(" --checksum {c}"));
        }
        if self.pipe {
            label.push_str(" via a pipe");
        }
        label
    }
}

/// One row: a tool, a direction, a size and maybe a concurrency or part size, with every
/// run.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) tool: ToolKind,
    pub(crate) direction: Direction,
    pub(crate) size_bytes: u64,
    pub(crate) concurrency: Option<u32>,
    /// `--part-size`, when not the default.
    pub(crate) part_size: Option<u64>,
    /// `--checksum`, when not the default.
    pub(crate) checksum: Option<&'static str>,
    /// Standard input or output instead of a file.
    pub(crate) pipe: bool,
    pub(crate) result: Result<Vec<report::Sample>, String>,
}

struct Bench {
    env: Env,
    runs: u32,
    busy: report::Busy,
    /// Every run so far started with an empty page cache.
    cache_dropped: bool,
}

impl Bench {
    fn make_file(&mut self, size_bytes: u64) -> anyhow::Result<TestFile> {
        let path = self.env.dir.join(format!("source-{size_bytes}.bin"));
        println!("==> writing {} of random bytes", format_size(size_bytes));
        write_random(&path, size_bytes)?;
        Ok(TestFile {
            path,
            size_bytes,
            key: format!("source/{size_bytes}.bin"),
        })
    }

    fn remove_file(&mut self, file: &TestFile) {
        let _ = fs::remove_file(&file.path);
    }

    fn scenario(
        &mut self,
        tool: &Tool,
        direction: Direction,
        file: &TestFile,
        settings: Settings,
    ) -> Row {
        let result = self.scenario_runs(tool, direction, file, settings);
        Row {
            tool: tool.kind,
            direction,
            size_bytes: file.size_bytes,
            concurrency: settings.concurrency,
            part_size: settings.part_size,
            checksum: settings.checksum,
            pipe: settings.pipe,
            result: result.map_err(|e| format!("{e:#}")),
        }
    }

    fn scenario_runs(
        &mut self,
        tool: &Tool,
        direction: Direction,
        file: &TestFile,
        settings: Settings,
    ) -> anyhow::Result<Vec<report::Sample>> {
        if direction == Direction::Down && settings.checksum.is_none() {
            self.ensure_download_source(tool, file)?;
        }
        let label = format!(
            "{} {} {}{}",
            tool.kind.name(),
            direction.name(),
            format_size(file.size_bytes),
            settings.label()
        );
        let mut samples = Vec::new();
        for run in 1..=self.runs {
            let sample = self
                .one_run(tool, direction, file, settings, run)
                .with_context(|| format!("{label}, run {run}"))?;
            println!(
                "    {label} run {run}: {:.2}s {:.0} MiB/s cpu {:.2}s rss {:.0} MiB server cpu {:.2}s",
                sample.wall.as_secs_f64(),
                sample.mib_per_s(file.size_bytes),
                sample.cpu().as_secs_f64(),
                sample.rss_mib(),
                sample.server_cpu.as_secs_f64()
            );
            samples.push(sample);
        }
        Ok(samples)
    }

    /// Puts the object downloads read, once per file, with s3tm (unmeasured).
    fn ensure_download_source(&mut self, tool: &Tool, file: &TestFile) -> anyhow::Result<()> {
        let marker = self.env.dir.join(format!("uploaded-{}", file.size_bytes));
        if marker.exists() {
            return Ok(());
        }
        if tool.kind != ToolKind::S3tm {
            bail!("the download source is put by s3tm, which runs first");
        }
        let (args, _) =
            self.command(tool, Direction::Up, file, &file.key, Settings::default(), 0)?;
        let (usage, stderr) = self.measure(tool, &args)?;
        if usage.code != 0 {
            bail!("putting the download source failed: {stderr}");
        }
        fs::write(&marker, "")?;
        Ok(())
    }

    /// Runs `tool` with `args` in the clients' environment; its usage and stderr.
    fn measure(
        &self,
        tool: &Tool,
        args: &[String],
    ) -> anyhow::Result<(measure::ClientUsage, String)> {
        self.measure_with(tool, args, measure::Stdio::default())
    }

    /// [`measure`](Self::measure) with standard input or output redirected.
    fn measure_with(
        &self,
        tool: &Tool,
        args: &[String],
        stdio: measure::Stdio<'_>,
    ) -> anyhow::Result<(measure::ClientUsage, String)> {
        measure::measure(
            &tool.program,
            args,
            &self.env.vars(),
            ENV_REMOVE,
            &self.env.dir.join("usage"),
            stdio,
        )
    }

    fn one_run(
        &mut self,
        tool: &Tool,
        direction: Direction,
        file: &TestFile,
        settings: Settings,
        run: u32,
    ) -> anyhow::Result<report::Sample> {
        let key = match direction {
            Direction::Up => format!("up/{}/{}.bin", tool_slug(tool.kind), file.size_bytes),
            Direction::Down => file.download_key(settings.checksum),
        };
        let (args, download) = self.command(tool, direction, file, &key, settings, run)?;
        if let Some(dest) = &download {
            let _ = fs::remove_file(dest);
        }
        // Start from a clean slate: no dirty pages of the previous run being written back,
        // and the same page cache every run: what the previous runs left in it makes
        // writes pay for reclaim (seen here: twice the client CPU on the same build).
        // Only the file the run reads is put back in the cache.
        let _ = Command::new("sync").status();
        let warm = match direction {
            Direction::Up => file.path.clone(),
            Direction::Down => self.env.server_root.join(BUCKET).join(&key),
        };
        self.cache_dropped &= drop_page_cache();
        read_through(&warm)?;
        let stdio = match (settings.pipe, direction) {
            (false, _) => measure::Stdio::default(),
            (true, Direction::Up) => measure::Stdio {
                stdin: Some(&file.path),
                stdout: None,
            },
            (true, Direction::Down) => measure::Stdio {
                stdin: None,
                stdout: download.as_deref(),
            },
        };
        let mut sample = self.timed_run(tool, &args, stdio)?;
        let mut synced = None;
        if let Some(dest) = &download {
            // What the client left to the kernel still has to reach the disk.
            let started = Instant::now();
            File::open(dest)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot fsync {}", dest.display()))?;
            synced = Some(started.elapsed());
            if !same_contents(&file.path, dest)? {
                bail!("the downloaded file differs from the source");
            }
            let _ = fs::remove_file(dest);
        }
        sample.synced = synced;
        Ok(sample)
    }

    /// Runs `tool` once, measured: its figures, the server's CPU meanwhile and the rest
    /// of the machine's; an error (with the end of its stderr) when it fails.
    fn timed_run(
        &mut self,
        tool: &Tool,
        args: &[String],
        stdio: measure::Stdio<'_>,
    ) -> anyhow::Result<report::Sample> {
        let others = report::other_builds();
        let server_before = measure::self_cpu()?;
        let machine_before = measure::machine_cpu();
        let (usage, stderr) = self.measure_with(tool, args, stdio)?;
        let server_cpu = measure::self_cpu()?.saturating_sub(server_before);
        let machine_cpu = machine_before
            .zip(measure::machine_cpu())
            .map(|(before, after)| after.saturating_sub(before));
        if usage.code != 0 {
            let lines: Vec<&str> = stderr.lines().collect();
            let tail = lines[lines.len().saturating_sub(8)..].join("\n");
            bail!("exited with {}: {tail}", usage.code);
        }
        let sample = report::Sample {
            wall: usage.wall,
            user: usage.user,
            sys: usage.sys,
            max_rss_kib: usage.max_rss_kib,
            server_cpu,
            // What neither the client nor the server used: other processes' work.
            background_cpu: machine_cpu.map(|m| m.saturating_sub(usage.cpu() + server_cpu)),
            synced: None,
        };
        self.busy.record(&others, &sample);
        Ok(sample)
    }

    /// The client's arguments, and the file a download writes.
    fn command(
        &self,
        tool: &Tool,
        direction: Direction,
        file: &TestFile,
        key: &str,
        settings: Settings,
        run: u32,
    ) -> anyhow::Result<(Vec<String>, Option<PathBuf>)> {
        let src = file.path.to_string_lossy().into_owned();
        let dest = self
            .env
            .dir
            .join(format!("download-{}.bin", tool_slug(tool.kind)));
        let dest_str = dest.to_string_lossy().into_owned();
        let s3_url = format!("s3://{BUCKET}/{key}");
        let (from, to) = match (direction, settings.pipe) {
            (Direction::Up, false) => (src.clone(), s3_url.clone()),
            (Direction::Down, false) => (s3_url.clone(), dest_str.clone()),
            (Direction::Up, true) => ("-".to_owned(), s3_url.clone()),
            (Direction::Down, true) => (s3_url.clone(), "-".to_owned()),
        };
        let mut args: Vec<String> = match tool.kind {
            ToolKind::S3tm => {
                let state = self.env.dir.join(format!("state-{run}-{}", unique()));
                let mut a = vec![
                    "cp".to_owned(),
                    from,
                    to,
                    "--endpoint-url".to_owned(),
                    self.env.endpoint.clone(),
                    "--path-style".to_owned(),
                    "--no-progress".to_owned(),
                    "--state-dir".to_owned(),
                    state.to_string_lossy().into_owned(),
                ];
                if let Some(c) = settings.concurrency {
                    a.extend(["--concurrency".to_owned(), c.to_string()]);
                }
                if let Some(p) = settings.part_size {
                    a.extend(["--part-size".to_owned(), p.to_string()]);
                }
                if let Some(c) = settings.checksum {
                    a.extend(["--checksum".to_owned(), c.to_owned()]);
                }
                a
            }
            ToolKind::Aws => vec![
                "s3".to_owned(),
                "cp".to_owned(),
                from,
                to,
                "--endpoint-url".to_owned(),
                self.env.endpoint.clone(),
                "--no-progress".to_owned(),
                "--only-show-errors".to_owned(),
            ],
            ToolKind::Rclone => {
                let remote = format!("bench:{BUCKET}/{key}");
                let (from, to) = match direction {
                    Direction::Up => (src.clone(), remote),
                    Direction::Down => (remote, dest_str.clone()),
                };
                // `--no-check-dest`: copy even when the destination looks the same
                // (rclone skips a file whose size and time match, as every rerun's do).
                vec![
                    "copyto".to_owned(),
                    from,
                    to,
                    "--no-check-dest".to_owned(),
                    "-q".to_owned(),
                ]
            }
            ToolKind::Curl => {
                let url = format!("{}/{BUCKET}/{key}", self.env.endpoint);
                let mut a: Vec<String> = ["--silent", "--show-error", "--fail", "--aws-sigv4"]
                    .map(str::to_owned)
                    .to_vec();
                a.push(format!("aws:amz:{}:s3", self.env.region));
                a.extend([
                    "--user".to_owned(),
                    format!("{}:{}", self.env.access_key, self.env.secret_key),
                    "-H".to_owned(),
                    "x-amz-content-sha256: UNSIGNED-PAYLOAD".to_owned(),
                    // Not `-H Expect:`: curl 7.88 then signs a header it does not send.
                    // The server answers `100-continue` at once.
                ]);
                match direction {
                    Direction::Up => a.extend([
                        "--upload-file".to_owned(),
                        src.clone(),
                        "--output".to_owned(),
                        "/dev/null".to_owned(),
                    ]),
                    Direction::Down => {
                        a.extend(["--output".to_owned(), dest_str.clone()]);
                    }
                }
                a.push(url);
                a
            }
        };
        if tool.kind == ToolKind::Rclone {
            args.extend([
                "--config".to_owned(),
                self.env.rclone_config.to_string_lossy().into_owned(),
            ]);
        }
        let download = (direction == Direction::Down).then_some(dest);
        Ok((args, download))
    }
}

fn tool_slug(kind: ToolKind) -> &'static str {
    match kind {
        ToolKind::S3tm => "s3tm",
        ToolKind::Aws => "aws",
        ToolKind::Rclone => "rclone",
        ToolKind::Curl => "curl",
    }
}

fn unique() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn print_row(row: &Row) {
    match &row.result {
        Ok(samples) => {
            let stats = report::Stats::of(samples, row.size_bytes);
            println!(
                "==> {} {} {}{}: {:.0} MiB/s (min {:.0}, max {:.0}), cpu {:.2}s, rss {:.0} MiB",
                row.tool.name(),
                row.direction.name(),
                format_size(row.size_bytes),
                Settings {
                    concurrency: row.concurrency,
                    part_size: row.part_size,
                    checksum: row.checksum,
                    pipe: row.pipe,
                }
                .label(),
                stats.mib_s.median,
                stats.mib_s.min,
                stats.mib_s.max,
                stats.cpu_s.median,
                stats.rss_mib.median
            );
        }
        Err(e) => println!(
            "==> {} {} {}: FAILED: {e}",
            row.tool.name(),
            row.direction.name(),
            format_size(row.size_bytes)
        ),
    }
}

/// Writes `size_bytes` of incompressible pseudo-random bytes (xorshift64*).
fn write_random(path: &Path, size_bytes: u64) -> anyhow::Result<()> {
    let mut file =
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ size_bytes;
    let mut buf = vec![0u8; 8 * MIB as usize];
    let mut left = size_bytes;
    while left > 0 {
        for chunk in buf.chunks_exact_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            chunk.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    Ok(())
}

fn same_contents(a: &Path, b: &Path) -> anyhow::Result<bool> {
    let mut fa = File::open(a).with_context(|| format!("cannot open {}", a.display()))?;
    let mut fb = File::open(b).with_context(|| format!("cannot open {}", b.display()))?;
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let mut ba = vec![0u8; 4 * MIB as usize];
    let mut bb = vec![0u8; 4 * MIB as usize];
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<BenchOptions, UsageError> {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        parse(&args)
    }

    #[test]
    fn options() {
        assert_eq!(parse_str(""), Ok(BenchOptions::default()));
        assert_eq!(
            parse_str("--size 64MiB --runs 5 --install-peers --quick --trees-only"),
            Ok(BenchOptions {
                size_bytes: 64 * MIB,
                runs: 5,
                install_peers: true,
                quick: true,
                trees_only: true,
            })
        );
        assert_eq!(parse_str("--size=2G").map(|o| o.size_bytes), Ok(2 * GIB));
        for bad in [
            "--size",
            "--size 0",
            "--size 1TiB",
            "--runs 0",
            "--runs x",
            "--fast",
            "--quick=yes",
        ] {
            assert!(parse_str(bad).is_err(), "`{bad}` should be refused");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Some(MIB));
        assert_eq!(parse_size("64MiB"), Some(64 * MIB));
        assert_eq!(parse_size("1gib"), Some(GIB));
        assert_eq!(parse_size("512K"), Some(512 * 1024));
        assert_eq!(parse_size("MiB"), None);
        assert_eq!(format_size(64 * MIB), "64 MiB");
        assert_eq!(format_size(GIB), "1 GiB");
        assert_eq!(format_size(4 * GIB), "4 GiB");
        assert_eq!(format_size(1536 * MIB), "1.5 GiB");
    }

    #[test]
    fn random_files_have_the_size_asked_for_and_compare() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        write_random(&a, MIB + 3).expect("write");
        assert_eq!(fs::metadata(&a).expect("metadata").len(), MIB + 3);
        fs::copy(&a, &b).expect("copy");
        assert!(same_contents(&a, &b).expect("compare"));
        let mut bytes = fs::read(&b).expect("read");
        bytes[MIB as usize] ^= 1;
        fs::write(&b, bytes).expect("write");
        assert!(!same_contents(&a, &b).expect("compare"));
    }
}
