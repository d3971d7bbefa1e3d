//! Figures of the runs, the machine they ran on, and `docs/benchmarks.md`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use super::interrupt::{self, Interruption, Stop};
use super::trees::TreeRow;
use super::{BenchOptions, Direction, Row, ToolKind, format_size};

const MIB_F: f64 = 1024.0 * 1024.0;
const GIB_F: f64 = 1024.0 * MIB_F;

/// The targets of issue 7.
const TARGET_RATIO: f64 = 1.2;
/// The targets of issue 13: files/s on the small-file tree, MiB/s on the mixed one.
const TARGET_TREE_FILES_RATIO: f64 = 1.5;
const TARGET_TREE_MIB_RATIO: f64 = 1.2;
const TARGET_CPU_UP_S_PER_GIB: f64 = 1.0;
const TARGET_CPU_DOWN_S_PER_GIB: f64 = 1.5;
const TARGET_RSS_MIB: f64 = 96.0;
/// "Flat": the largest file's peak RSS within this factor of the smallest's.
const FLAT_FACTOR: f64 = 1.25;

/// One run of one client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) wall: Duration,
    pub(crate) user: Duration,
    pub(crate) sys: Duration,
    pub(crate) max_rss_kib: u64,
    /// CPU the in-process server used during the run.
    pub(crate) server_cpu: Duration,
    /// CPU the rest of the machine used during the run, when `/proc/stat` says.
    pub(crate) background_cpu: Option<Duration>,
    /// Downloads: how long an fsync of the downloaded file took once the client had
    /// exited, i.e. what it still took to get the bytes onto the disk.
    pub(crate) synced: Option<Duration>,
}

impl Sample {
    /// Client CPU: user + sys.
    pub(crate) fn cpu(&self) -> Duration {
        self.user + self.sys
    }

    pub(crate) fn mib_per_s(&self, size_bytes: u64) -> f64 {
        size_bytes as f64 / MIB_F / self.wall.as_secs_f64().max(1e-9)
    }

    pub(crate) fn rss_mib(&self) -> f64 {
        self.max_rss_kib as f64 / 1024.0
    }

    /// Downloads: throughput until the file is on the disk (the run, then its fsync).
    pub(crate) fn on_disk_mib_per_s(&self, size_bytes: u64) -> Option<f64> {
        let total = self.wall + self.synced?;
        Some(size_bytes as f64 / MIB_F / total.as_secs_f64().max(1e-9))
    }
}

/// Median, minimum and maximum of one figure over the runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Spread {
    pub(crate) fn of(values: impl IntoIterator<Item = f64>) -> Spread {
        let mut v: Vec<f64> = values.into_iter().collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return Spread {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Spread {
            median,
            min: v[0],
            max: v[v.len() - 1],
        }
    }

    fn cell(&self, decimals: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = decimals
        )
    }
}

/// The figures of one row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stats {
    pub(crate) mib_s: Spread,
    pub(crate) wall_s: Spread,
    pub(crate) cpu_s: Spread,
    pub(crate) user_s: Spread,
    pub(crate) sys_s: Spread,
    pub(crate) cpu_s_per_gib: Spread,
    pub(crate) rss_mib: Spread,
    pub(crate) server_cpu_s: Spread,
    /// Downloads only.
    pub(crate) on_disk_mib_s: Option<Spread>,
}

impl Stats {
    pub(crate) fn of(samples: &[Sample], size_bytes: u64) -> Stats {
        let gib = size_bytes as f64 / GIB_F;
        let s = |f: &dyn Fn(&Sample) -> f64| Spread::of(samples.iter().map(f));
        Stats {
            mib_s: s(&|x| x.mib_per_s(size_bytes)),
            wall_s: s(&|x| x.wall.as_secs_f64()),
            cpu_s: s(&|x| x.cpu().as_secs_f64()),
            user_s: s(&|x| x.user.as_secs_f64()),
            sys_s: s(&|x| x.sys.as_secs_f64()),
            cpu_s_per_gib: s(&|x| x.cpu().as_secs_f64() / gib),
            rss_mib: s(&|x| x.rss_mib()),
            server_cpu_s: s(&|x| x.server_cpu.as_secs_f64()),
            on_disk_mib_s: samples
                .iter()
                .map(|x| x.on_disk_mib_per_s(size_bytes))
                .collect::<Option<Vec<f64>>>()
                .filter(|v| !v.is_empty())
                .map(Spread::of),
        }
    }
}

/// Whether other work shared the machine during the runs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Busy {
    runs: u32,
    runs_with_builds: u32,
    builds_seen: BTreeSet<String>,
    background_cpu: Vec<(f64, f64)>,
}

impl Busy {
    pub(crate) fn record(&mut self, others: &[String], sample: &Sample) {
        self.runs += 1;
        if !others.is_empty() {
            self.runs_with_builds += 1;
            self.builds_seen.extend(others.iter().cloned());
        }
        if let Some(bg) = sample.background_cpu {
            self.background_cpu
                .push((bg.as_secs_f64(), sample.wall.as_secs_f64()));
        }
    }

    /// Other processes' CPU as a share of one core over the runs, all runs together.
    fn background_share(&self) -> Option<f64> {
        let (cpu, wall) = self
            .background_cpu
            .iter()
            .fold((0.0, 0.0), |(c, w), (bc, bw)| (c + bc, w + bw));
        (wall > 0.0).then(|| cpu / wall)
    }

    fn describe(&self) -> String {
        let mut text = String::new();
        match self.background_share() {
            Some(share) => {
                let _ = write!(
                    text,
                    "other processes used {:.0}% of one core on average during the runs \
                     (machine CPU from /proc/stat minus client and server)",
                    share * 100.0
                );
            }
            None => text.push_str("background load unknown (no /proc/stat)"),
        }
        if self.runs_with_builds > 0 {
            let _ = write!(
                text,
                "; **busy**: {} of {} runs started while other builds ran ({})",
                self.runs_with_builds,
                self.runs,
                self.builds_seen
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        } else {
            text.push_str("; no other cargo or rustc process ran at the start of any run");
        }
        text
    }
}

/// `cargo`/`rustc` processes that are not this command's own ancestors: builds by others.
pub(crate) fn other_builds() -> Vec<String> {
    let mut ancestors = BTreeSet::new();
    let mut pid = std::process::id();
    while pid > 1 && ancestors.insert(pid) {
        pid = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let after = stat.rsplit_once(')')?.1;
                after.split_whitespace().nth(1)?.parse().ok()
            })
            .unwrap_or(1);
    }
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if ancestors.contains(&pid) {
            continue;
        }
        let Ok(comm) = fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        let comm = comm.trim();
        if matches!(comm, "cargo" | "rustc" | "clippy-driver" | "rustdoc") {
            found.push(comm.to_owned());
        }
    }
    found.sort();
    found.dedup();
    found
}

/// What the runs ran on.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    cpus: usize,
    cpu_model: String,
    memory: String,
    kernel: String,
    os: String,
    load_before: String,
}

impl Machine {
    pub(crate) fn describe() -> Machine {
        let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        };
        let cpu_model = field("model name").unwrap_or_else(|| "unknown".to_owned());
        let memory = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or("unknown".to_owned(), |kib| {
                format!("{:.1} GiB", kib / 1024.0 / 1024.0)
            });
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model,
            memory,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            os,
            load_before: read("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// `git describe`-like: the commit, and whether the work tree had changes.
pub(crate) fn git_describe(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{commit} (with uncommitted changes)")
    } else {
        commit
    }
}

/// Everything a bench run found.
pub(crate) struct Results {
    pub(crate) started: SystemTime,
    pub(crate) finished: SystemTime,
    pub(crate) machine: Machine,
    pub(crate) options: BenchOptions,
    pub(crate) tools: Vec<(ToolKind, Result<String, String>)>,
    pub(crate) comparison: Vec<Row>,
    pub(crate) scaling: Vec<Row>,
    pub(crate) sweep: Vec<Row>,
    /// s3tm with each `--checksum`, up and down.
    pub(crate) checksums: Vec<Row>,
    /// s3tm and aws-cli through pipes (`cp -`).
    pub(crate) pipes: Vec<Row>,
    pub(crate) busy: Busy,
    /// Whether the page cache was emptied before every run.
    pub(crate) cache_dropped: bool,
    pub(crate) micro: Option<Vec<(String, String)>>,
    /// Interrupted and resumed transfers (see `interrupt.rs`).
    pub(crate) interrupts: Vec<(Direction, Stop, Result<Interruption, String>)>,
    /// Whole trees, every peer (see `trees.rs`).
    pub(crate) trees: Vec<TreeRow>,
}

fn stats(row: &Row) -> Option<Stats> {
    row.result
        .as_ref()
        .ok()
        .map(|s| Stats::of(s, row.size_bytes))
}

/// `YYYY-MM-DD HH:MM UTC`.
fn utc(time: SystemTime) -> String {
    // `YYYY-MM-DDTHH:MM:SSZ`
    let stamp = humantime::format_rfc3339_seconds(time).to_string();
    format!(
        "{} UTC",
        stamp.get(..16).unwrap_or(&stamp).replacen('T', " ", 1)
    )
}

impl Results {
    fn find(&self, tool: ToolKind, direction: Direction) -> Option<Stats> {
        self.comparison
            .iter()
            .find(|r| r.tool == tool && r.direction == direction)
            .and_then(stats)
    }

    /// The best of aws and rclone (the target's reference), by median throughput.
    fn best_peer(&self, direction: Direction) -> Option<(ToolKind, Stats)> {
        self.best_peer_by(direction, |s| Some(s.mib_s.median))
    }

    /// The best of aws and rclone by `figure` (higher is better).
    fn best_peer_by(
        &self,
        direction: Direction,
        figure: impl Fn(&Stats) -> Option<f64>,
    ) -> Option<(ToolKind, Stats)> {
        [ToolKind::Aws, ToolKind::Rclone]
            .into_iter()
            .filter_map(|t| self.find(t, direction).map(|s| (t, s)))
            .filter_map(|(t, s)| figure(&s).map(|f| (t, s, f)))
            .max_by(|a, b| a.2.total_cmp(&b.2))
            .map(|(t, s, _)| (t, s))
    }

    fn comparison_table(&self) -> String {
        let mut t = String::from(
            "| tool | direction | MiB/s | wall s | client CPU s | CPU s/GiB | user / sys s | \
             peak RSS MiB | server CPU s | s3tm ÷ tool (MiB/s) | MiB/s on disk | \
             s3tm ÷ tool (on disk) |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for row in &self.comparison {
            let _ = match stats(row) {
                Some(s) => {
                    let ratio = self
                        .find(ToolKind::S3tm, row.direction)
                        .map_or("–".to_owned(), |m| {
                            format!("{:.2}×", m.mib_s.median / s.mib_s.median)
                        });
                    let (on_disk, on_disk_ratio) = match s.on_disk_mib_s {
                        Some(d) => (
                            d.cell(0),
                            self.find(ToolKind::S3tm, row.direction)
                                .and_then(|m| m.on_disk_mib_s)
                                .map_or("–".to_owned(), |m| {
                                    format!("{:.2}×", m.median / d.median)
                                }),
                        ),
                        None => ("–".to_owned(), "–".to_owned()),
                    };
                    writeln!(
                        t,
                        "| {} | {} | {} | {} | {} | {:.2} | {:.2} / {:.2} | {} | {:.2} | {} | {} \
                         | {} |",
                        row.tool.name(),
                        row.direction.name(),
                        s.mib_s.cell(0),
                        s.wall_s.cell(2),
                        s.cpu_s.cell(2),
                        s.cpu_s_per_gib.median,
                        s.user_s.median,
                        s.sys_s.median,
                        s.rss_mib.cell(0),
                        s.server_cpu_s.median,
                        ratio,
                        on_disk,
                        on_disk_ratio
                    )
                }
                None => writeln!(
                    t,
                    "| {} | {} | failed: {} | | | | | | | | | |",
                    row.tool.name(),
                    row.direction.name(),
                    row.result
                        .as_ref()
                        .err()
                        .map_or("", String::as_str)
                        .replace('|', "\\|")
                        .replace('\n', " ")
                ),
            };
        }
        t
    }

    fn s3tm_table(rows: &[Row], first: &str) -> String {
        let mut t = format!(
            "| {first} | direction | MiB/s | client CPU s | CPU s/GiB | peak RSS MiB | server CPU s |\n\
             |---|---|---|---|---|---|---|\n"
        );
        for row in rows {
            let key = match (row.concurrency, row.part_size) {
                _ if row.pipe => row.tool.name().to_owned(),
                _ if row.checksum.is_some() => row.checksum.unwrap_or_default().to_owned(),
                (Some(c), _) => c.to_string(),
                (None, Some(p)) => format!(
                    "{} upload, `--part-size {}`",
                    format_size(row.size_bytes),
                    format_size(p).replace(' ', "")
                ),
                (None, None) => format_size(row.size_bytes),
            };
            let _ = match stats(row) {
                Some(s) => writeln!(
                    t,
                    "| {key} | {} | {} | {} | {:.2} | {} | {:.2} |",
                    row.direction.name(),
                    s.mib_s.cell(0),
                    s.cpu_s.cell(2),
                    s.cpu_s_per_gib.median,
                    s.rss_mib.cell(0),
                    s.server_cpu_s.median
                ),
                None => writeln!(
                    t,
                    "| {key} | {} | failed: {} | | | | |",
                    row.direction.name(),
                    row.result
                        .as_ref()
                        .err()
                        .map_or("", String::as_str)
                        .replace('|', "\\|")
                        .replace('\n', " ")
                ),
            };
        }
        t
    }

    /// One line per target: met or missed, with the figures.
    fn targets(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mark = |ok: bool| if ok { "met" } else { "**missed**" };
        for direction in [Direction::Up, Direction::Down] {
            let Some(ours) = self.find(ToolKind::S3tm, direction) else {
                continue;
            };
            match self.best_peer(direction) {
                Some((peer, theirs)) => {
                    let ratio = ours.mib_s.median / theirs.mib_s.median;
                    lines.push(format!(
                        "{} throughput ≥ {TARGET_RATIO}× best of aws/rclone: {} ({:.0} MiB/s vs \
                         {} {:.0} MiB/s = {ratio:.2}×)",
                        direction.name(),
                        mark(ratio >= TARGET_RATIO),
                        ours.mib_s.median,
                        peer.name(),
                        theirs.mib_s.median
                    ));
                }
                None => lines.push(format!(
                    "{} throughput: not judged (neither aws nor rclone measured)",
                    direction.name()
                )),
            }
            if let (Some(on_disk), Some((peer, theirs))) = (
                ours.on_disk_mib_s,
                self.best_peer_by(direction, |s| s.on_disk_mib_s.map(|d| d.median)),
            ) {
                let theirs = theirs.on_disk_mib_s.map_or(f64::NAN, |d| d.median);
                let ratio = on_disk.median / theirs;
                lines.push(format!(
                    "{} throughput until the file is on disk ≥ {TARGET_RATIO}× best of \
                     aws/rclone (not the issue's measure; shown because s3tm waits for the \
                     disk and the others do not): {} ({:.0} MiB/s vs {} {theirs:.0} MiB/s = \
                     {ratio:.2}×)",
                    direction.name(),
                    mark(ratio >= TARGET_RATIO),
                    on_disk.median,
                    peer.name(),
                ));
            }
            let limit = match direction {
                Direction::Up => TARGET_CPU_UP_S_PER_GIB,
                Direction::Down => TARGET_CPU_DOWN_S_PER_GIB,
            };
            lines.push(format!(
                "{} client CPU ≤ {limit} s/GiB: {} ({:.2} s/GiB)",
                direction.name(),
                mark(ours.cpu_s_per_gib.median <= limit),
                ours.cpu_s_per_gib.median
            ));
        }
        let rss: Vec<(u64, f64)> = self
            .scaling
            .iter()
            // The targets are about the defaults; a row with another part size is not.
            .filter(|r| r.part_size.is_none())
            .chain(self.comparison.iter().filter(|r| r.tool == ToolKind::S3tm))
            .filter_map(|r| stats(r).map(|s| (r.size_bytes, s.rss_mib.max)))
            .collect();
        if let Some(peak) = rss.iter().map(|r| r.1).max_by(f64::total_cmp) {
            lines.push(format!(
                "peak RSS ≤ {TARGET_RSS_MIB} MiB (defaults, every size and direction): {} \
                 (largest {peak:.0} MiB)",
                mark(peak <= TARGET_RSS_MIB)
            ));
        }
        let smallest = rss.iter().min_by_key(|r| r.0).map(|r| r.0);
        let largest = rss.iter().max_by_key(|r| r.0).map(|r| r.0);
        if let (Some(lo), Some(hi)) = (smallest, largest)
            && hi > lo
        {
            let at = |size: u64| {
                rss.iter()
                    .filter(|r| r.0 == size)
                    .map(|r| r.1)
                    .fold(0.0, f64::max)
            };
            let (a, b) = (at(lo), at(hi));
            lines.push(format!(
                "peak RSS flat from {} to {} (within {FLAT_FACTOR}×): {} ({a:.0} → {b:.0} MiB)",
                format_size(lo),
                format_size(hi),
                mark(b <= a * FLAT_FACTOR)
            ));
        }
        if !self.interrupts.is_empty() {
            let worst = self
                .interrupts
                .iter()
                .filter_map(|(d, s, r)| r.as_ref().ok().map(|r| (d, s, r)))
                .max_by_key(|(_, _, r)| r.resent());
            let failed = self
                .interrupts
                .iter()
                .filter(|(_, _, r)| r.is_err())
                .count();
            let line = match (worst, failed) {
                (Some((direction, stop, w)), 0) => format!(
                    "{} (largest {:.1} MiB, {} interrupted by {})",
                    mark(w.resent() <= interrupt::LIMIT_BYTES),
                    w.resent() as f64 / MIB_F,
                    direction.name(),
                    stop.name()
                ),
                _ => format!("**missed** ({failed} of the interrupted transfers failed)"),
            };
            lines.push(format!(
                "bytes sent again after an interruption ≤ one part per request in flight \
                 ({}): {line}",
                interrupt::describe_limit()
            ));
        }
        lines
    }

    fn interrupts_table(&self) -> String {
        let mut t = String::from(
            "| direction | stopped by | MiB moved at the signal | MiB, interrupted run | \
             MiB, resumed run | MiB sent twice | MiB re-checked on resume | re-check s/GiB |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        for (direction, stop, result) in &self.interrupts {
            let _ = match result {
                Ok(r) => writeln!(
                    t,
                    "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
                    direction.name(),
                    stop.name(),
                    r.at_signal as f64 / MIB_F,
                    r.first as f64 / MIB_F,
                    r.second as f64 / MIB_F,
                    r.resent() as f64 / MIB_F,
                    r.rechecked as f64 / MIB_F,
                    r.recheck_secs_per_gib()
                        .map_or("–".to_owned(), |s| format!("{s:.2}"))
                ),
                Err(e) => writeln!(
                    t,
                    "| {} | {} | failed: {} | | | | | |",
                    direction.name(),
                    stop.name(),
                    e.replace('|', "\\|").replace('\n', " ")
                ),
            };
        }
        t
    }

    /// What the terminal gets at the end.
    pub(crate) fn summary(&self) -> String {
        let mut s = String::new();
        if !self.comparison.is_empty() {
            s.push_str(&self.comparison_table());
            s.push('\n');
        }
        if !self.trees.is_empty() {
            s.push_str(&self.trees_table());
            s.push('\n');
        }
        for line in self.targets().into_iter().chain(self.tree_targets()) {
            let _ = writeln!(s, "- {line}");
        }
        s
    }

    /// The best of aws and rclone (both rclone rows) on `tree` one way, by `figure`.
    fn best_tree_peer(
        &self,
        tree: &str,
        direction: Direction,
        figure: impl Fn(&TreeRow) -> Option<f64>,
    ) -> Option<(&TreeRow, f64)> {
        self.trees
            .iter()
            .filter(|r| r.tree == tree && r.direction == direction)
            .filter(|r| r.peer.kind != ToolKind::S3tm)
            .filter_map(|r| figure(r).map(|f| (r, f)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    fn trees_table(&self) -> String {
        let mut t = String::from(
            "| tree | tool | direction | files/s | MiB/s | wall s | client CPU s | \
             peak RSS MiB | server CPU s | s3tm ÷ best peer (files/s) |\n\
             |---|---|---|---|---|---|---|---|---|---|\n",
        );
        for row in &self.trees {
            let (Some(f), Some(s)) = (row.files_per_s(), row.stats()) else {
                let _ = writeln!(
                    t,
                    "| {} | {} | {} | failed: {} | | | | | | |",
                    row.tree,
                    row.peer.name(),
                    row.direction.name(),
                    row.result.as_ref().err().map_or("", String::as_str)
                );
                continue;
            };
            let ratio = match (
                row.peer.kind,
                self.best_tree_peer(row.tree, row.direction, |r| {
                    r.files_per_s().map(|f| f.median)
                }),
            ) {
                (ToolKind::S3tm, Some((_, best))) => format!("{:.2}×", f.median / best),
                _ => "–".to_owned(),
            };
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {ratio} |",
                row.tree,
                row.peer.name(),
                row.direction.name(),
                f.cell(0),
                s.mib_s.cell(0),
                s.wall_s.cell(2),
                s.cpu_s.cell(2),
                s.rss_mib.cell(0),
                s.server_cpu_s.cell(2),
            );
        }
        t
    }

    /// Issue 13's targets: files/s on the small tree, MiB/s on the mixed one.
    fn tree_targets(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mark = |ok: bool| if ok { "met" } else { "**missed**" };
        let trees: BTreeSet<&str> = self.trees.iter().map(|r| r.tree).collect();
        for tree in trees {
            let by_files = !tree.starts_with("mixed");
            let (target, unit) = if by_files {
                (TARGET_TREE_FILES_RATIO, "files/s")
            } else {
                (TARGET_TREE_MIB_RATIO, "MiB/s")
            };
            let figure = |r: &TreeRow| -> Option<f64> {
                if by_files {
                    r.files_per_s().map(|f| f.median)
                } else {
                    r.stats().map(|s| s.mib_s.median)
                }
            };
            for direction in [Direction::Up, Direction::Down] {
                let ours = self
                    .trees
                    .iter()
                    .find(|r| {
                        r.tree == tree && r.direction == direction && r.peer.kind == ToolKind::S3tm
                    })
                    .and_then(figure);
                let (Some(ours), Some((peer, theirs))) =
                    (ours, self.best_tree_peer(tree, direction, figure))
                else {
                    continue;
                };
                let ratio = ours / theirs;
                lines.push(format!(
                    "{tree}, {}: {unit} ≥ {target}× best peer: {} ({ours:.0} vs {} {theirs:.0} = {ratio:.2}×)",
                    direction.name(),
                    mark(ratio >= target),
                    peer.peer.name()
                ));
            }
        }
        lines
    }

    /// The whole of `docs/benchmarks.md`.
    pub(crate) fn markdown(&self) -> String {
        let m = &self.machine;
        let mut d = String::new();
        let _ = writeln!(
            d,
            "# Benchmarks\n\n\
             Written by `cargo xtask bench` (see `xtask/src/bench.rs`); run it again to \
             refresh this page. Do not edit the figures by hand.\n"
        );
        let _ = writeln!(
            d,
            "- **Date:** {} (took {:.0} min)\n\
             - **Machine:** {} CPUs ({}), {} memory, kernel {}, {}\n\
             - **Load:** load average {} at the start; {}\n\
             - **Command:** `cargo xtask bench --size {} --runs {}{}{}`",
            utc(self.started),
            self.finished
                .duration_since(self.started)
                .unwrap_or_default()
                .as_secs_f64()
                / 60.0,
            m.cpus,
            m.cpu_model,
            m.memory,
            m.kernel,
            m.os,
            m.load_before,
            self.busy.describe(),
            format_size(self.options.size_bytes).replace(' ', ""),
            self.options.runs,
            if self.options.quick { " --quick" } else { "" },
            if self.options.trees_only {
                " --trees-only"
            } else {
                ""
            }
        );
        d.push_str("- **Tools:**\n");
        for (tool, version) in &self.tools {
            let _ = match version {
                Ok(v) => writeln!(d, "  - {}: {v}", tool.name()),
                Err(why) => writeln!(d, "  - {}: not measured ({why})", tool.name()),
            };
        }
        d.push_str(
            "\n## How it is measured\n\n\
             - The server is `s3s-fs` (the crate s3-testkit embeds), running inside the \
             release-built xtask process on 127.0.0.1 with SigV4 verification on, storing \
             objects on the same disk as the files. It shares the machine's cores with the \
             client: *server CPU s* is what the xtask process used during the run.\n\
             - Each client runs under a wrapper that reads `getrusage(RUSAGE_CHILDREN)` after \
             waiting for it: *client CPU* is user + sys of the client process (and any \
             child it waited for), *peak RSS* its `ru_maxrss`.\n\
             - Wall time is from spawning the client to its exit; MiB/s = file size / wall \
             time. Each figure is the median of the runs, with (min–max).\n\
             - Every client moves the same file of random bytes. Uploads write a key of \
             their own; downloads all read one object put by s3tm before the first \
             download, and each download is compared byte for byte with the source.\n\
             - Settings: s3tm's defaults (unless a concurrency is given); aws with its \
             defaults (10 concurrent requests, 8 MiB parts) and path-style addressing in \
             a config file; rclone's defaults (4 upload streams, 5 MiB chunks, 4 download \
             streams) with `provider = Other` and `force_path_style`; curl as one \
             `--aws-sigv4` request with `UNSIGNED-PAYLOAD`, the one-connection reference.\n\
             - s3tm makes a download durable (fsync) before it reports it complete; aws, \
             rclone and curl do not, so their downloads leave the disk writes to the \
             kernel. *MiB/s on disk* (downloads) counts that too: file size / (wall time + \
             the time an fsync of the downloaded file takes right after the client \
             exits). For s3tm that fsync finds nothing left to write.\n\
             - s3tm verifies every download. s3s-fs keeps no checksum for a multipart \
             object, so here that is its multipart ETag: an MD5 of every byte, the parts \
             hashed side by side in SIMD lanes. aws, rclone and curl check the length \
             of these downloads, not their contents.\n",
        );
        d.push_str(if self.cache_dropped {
            "- Before every run: `sync`, the page cache emptied (`echo 1 > \
             /proc/sys/vm/drop_caches`), then the file the run reads (the source, or the \
             server's stored object) read once, so every run starts from the same cache.\n"
        } else {
            "- Before every run: `sync`. The page cache could not be emptied (that needs \
             root), so later runs may pay for reclaiming what earlier ones left in it.\n"
        });
        if !self.comparison.is_empty() {
            let _ = writeln!(
                d,
                "\n## s3tm against the others ({})\n\n{}",
                format_size(self.options.size_bytes),
                self.comparison_table()
            );
            d.push_str("## Targets (issue 7)\n\n");
            for line in self.targets() {
                let _ = writeln!(d, "- {line}");
            }
        }
        if !self.scaling.is_empty() {
            let _ = writeln!(
                d,
                "\n## Scaling (s3tm, defaults; the last row an upload with parts far larger than \
                 the 128 MiB memory budget, streamed from the file)\n\n{}",
                Self::s3tm_table(&self.scaling, "size")
            );
        }
        if !self.sweep.is_empty() {
            let _ = writeln!(
                d,
                "## Concurrency sweep (s3tm, {}, `--concurrency N`)\n\n{}",
                format_size(self.options.size_bytes),
                Self::s3tm_table(&self.sweep, "concurrency")
            );
        }
        if !self.checksums.is_empty() {
            let _ = writeln!(
                d,
                "## Checksums (s3tm, {}, `--checksum NAME`)\n\n\
                 Uploads send every part with the checksum (a multipart upload: the CRCs \
                 as a full-object checksum, the SHAs as a composite one). Downloads read an \
                 object put in one PutObject carrying that checksum, which s3s-fs reports \
                 whole: the CRCs are verified by combining the ranges' values, the SHAs \
                 (which do not combine) by reading the file once more. CPU s/GiB is the \
                 client's; the default row of the comparison above is CRC32 up and, down, \
                 the multipart ETag.\n\n{}",
                format_size(self.options.size_bytes),
                Self::s3tm_table(&self.checksums, "checksum")
            );
        }
        if !self.pipes.is_empty() {
            let _ = writeln!(
                d,
                "## Pipes ({}, `cp - s3://...` and `cp s3://... -` through real pipes)\n\n\
                 The client's standard input is a pipe that this process fills from the \
                 file, its standard output a pipe it drains into a file, as a shell \
                 pipeline's producer and consumer would. \
                 Up, the length is unknown to the client until the stream ends (s3tm grows \
                 its parts from `--part-size`; aws-cli uses its 8 MiB chunks); down, ranges \
                 fetched in parallel are written in order. Every download is compared with \
                 the source.\n\n{}",
                format_size(self.options.size_bytes),
                Self::s3tm_table(&self.pipes, "tool")
            );
        }
        if !self.interrupts.is_empty() {
            let _ = writeln!(
                d,
                "## Pause and resume (s3tm, {})\n\n\
                 s3tm is stopped once a third of the file has crossed, then the same `s3tm cp` \
                 runs again and resumes. SIGINT pauses (the requests in flight finish, exit \
                 130); SIGKILL gives it no say, so what was in flight is lost. Both runs go \
                 through a proxy in front of the server that counts body bytes (uploads: \
                 request bodies, XML included; downloads: response bodies), so *sent twice* \
                 is what crossed the wire beyond the file's size, in-flight requests cut \
                 short included. Every resumed copy is compared byte for byte with the \
                 source. `--concurrency 8 --part-size 8MiB`: the limit is {}.\n\n{}",
                format_size(self.options.size_bytes),
                interrupt::describe_limit(),
                self.interrupts_table()
            );
        }
        if !self.trees.is_empty() {
            let _ = writeln!(
                d,
                "## Trees (`cp -r`, `aws s3 cp --recursive`, `rclone copy`)\n\n\
                 Whole directories, each client with its defaults (s3tm: 32 files and 64 \
                 requests in flight; aws: 10 requests; rclone: 4 transfers, and a row with \
                 `--transfers 16`; `--no-check-dest` so every run copies). Uploads write a \
                 prefix of their own, compared file by file with the source in the \
                 server's directory; downloads read a prefix put by s3tm once into an \
                 empty directory, compared file by file. Before each run the page cache is \
                 emptied and the files the run reads are read once. files/s = files / \
                 wall time.\n\n{}",
                self.trees_table()
            );
            d.push_str("### Targets (issue 13)\n\n");
            for line in self.tree_targets() {
                let _ = writeln!(d, "- {line}");
            }
            d.push('\n');
        }
        if let Some(micro) = &self.micro {
            d.push_str(
                "## Micro-benchmarks (divan)\n\n\
                 `cargo bench -p s3-protocol --bench protocol`, `-p transfer-core --bench \
                 step`, `-p resume-store --bench save`, `-p transfer-manager --bench md5` \
                 (a download's part MD5s: md5-many's lanes against the md-5 crate, see \
                 `md5_lanes.rs`); divan's output as printed.\n\n",
            );
            for (label, text) in micro {
                let _ = writeln!(d, "`{label}`\n\n```text\n{}\n```\n", text.trim_end());
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads() {
        let s = Spread::of([3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of([1.0, 4.0]).median, 2.5);
        assert!(Spread::of([]).median.is_nan());
    }

    #[test]
    fn dates() {
        assert_eq!(utc(SystemTime::UNIX_EPOCH), "1970-01-01 00:00 UTC");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(utc(t), "2024-02-29 12:34 UTC");
    }
}
