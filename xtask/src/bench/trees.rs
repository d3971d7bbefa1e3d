//! Whole trees moved by each client (`s3tm cp -r`, `aws s3 cp --recursive`, `rclone
//! copy` with its defaults and with `--transfers 16`): a tree of many small files, where
//! per-file costs decide, and a mixed one, where small and large files share the run.
//!
//! Every upload writes a prefix of its own, compared file by file with the source (in
//! the server's directory) and removed after the run; every download reads one prefix
//! put by s3tm before the first download, into an empty directory compared with the
//! source and removed after the run.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::report::{Sample, Spread};
use super::{BUCKET, Bench, Direction, MIB, Tool, ToolKind, drop_page_cache, measure, report};

const KIB: u64 = 1024;

/// A tree of files to move: relative paths and sizes.
pub(crate) struct TreeSpec {
    pub(crate) name: &'static str,
    files: Vec<(String, u64)>,
}

impl TreeSpec {
    /// 2,000 files of 64 KiB, 100 to a directory.
    pub(crate) fn small() -> TreeSpec {
        TreeSpec {
            name: "2,000 × 64 KiB",
            files: (0..2000)
                .map(|i| (format!("d{:02}/f{i:04}.bin", i / 100), 64 * KIB))
                .collect(),
        }
    }

    /// 1,000 files from 1 KiB to 1 MiB (log-uniform, the same every run) and 8 of 64 MiB.
    pub(crate) fn mixed() -> TreeSpec {
        let mut state: u64 = 0x5DEE_CE66_D1CE_4E5B;
        let mut files: Vec<(String, u64)> = (0..1000)
            .map(|i| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                // 2^10 .. 2^20 bytes, uniform in the exponent.
                let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
                let size = 2f64.powf(10.0 + 10.0 * unit) as u64;
                (format!("m{:02}/f{i:04}.dat", i / 50), size)
            })
            .collect();
        files.extend((0..8).map(|i| (format!("big/b{i}.bin"), 64 * MIB)));
        TreeSpec {
            name: "mixed: 1,000 × 1 KiB–1 MiB + 8 × 64 MiB",
            files,
        }
    }

    pub(crate) fn files(&self) -> u64 {
        self.files.len() as u64
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.files.iter().map(|(_, s)| s).sum()
    }

    /// A short name for paths and keys.
    fn slug(&self) -> &'static str {
        if self.name.starts_with("mixed") {
            "mixed"
        } else {
            "small"
        }
    }
}

/// A client as the tree rows name it: rclone twice, with its default 4 transfers and 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer {
    pub(crate) kind: ToolKind,
    /// `rclone --transfers N`.
    pub(crate) transfers: Option<u32>,
}

impl Peer {
    pub(crate) fn name(self) -> String {
        match (self.kind, self.transfers) {
            (ToolKind::S3tm, _) => "s3tm cp -r".to_owned(),
            (ToolKind::Aws, _) => "aws s3 cp --recursive".to_owned(),
            (ToolKind::Rclone, Some(n)) => format!("rclone copy --transfers {n}"),
            (ToolKind::Rclone, None) => "rclone copy".to_owned(),
            (ToolKind::Curl, _) => "curl".to_owned(),
        }
    }

    fn slug(self) -> String {
        match self.transfers {
            Some(n) => format!("{}-{n}", super::tool_slug(self.kind)),
            None => super::tool_slug(self.kind).to_owned(),
        }
    }
}

/// One client moving one tree one way, every run.
#[derive(Debug, Clone)]
pub(crate) struct TreeRow {
    pub(crate) tree: &'static str,
    pub(crate) peer: Peer,
    pub(crate) direction: Direction,
    pub(crate) files: u64,
    pub(crate) bytes: u64,
    pub(crate) result: Result<Vec<Sample>, String>,
}

impl TreeRow {
    /// Files per second over the runs.
    pub(crate) fn files_per_s(&self) -> Option<Spread> {
        let samples = self.result.as_ref().ok()?;
        Some(Spread::of(
            samples
                .iter()
                .map(|s| self.files as f64 / s.wall.as_secs_f64().max(1e-9)),
        ))
    }

    pub(crate) fn stats(&self) -> Option<report::Stats> {
        let samples = self.result.as_ref().ok()?;
        Some(report::Stats::of(samples, self.bytes))
    }
}

/// Writes the tree under `dir`, each file of its own random bytes.
fn write_tree(spec: &TreeSpec, dir: &Path) -> anyhow::Result<()> {
    println!(
        "==> writing the tree {} ({} files, {})",
        spec.name,
        spec.files(),
        super::format_size(spec.bytes())
    );
    let mut buf = Vec::new();
    for (i, (rel, size)) in spec.files.iter().enumerate() {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407);
        buf.clear();
        buf.resize((*size as usize).div_ceil(8) * 8, 0);
        for chunk in buf.chunks_exact_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            chunk.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        File::create(&path)
            .and_then(|mut f| f.write_all(&buf[..*size as usize]))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let _ = Command::new("sync").status();
    Ok(())
}

/// Every regular file under `dir`, by relative path, with its size.
fn list_tree(dir: &Path) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let e = e?;
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                let rel = e
                    .path()
                    .strip_prefix(dir)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.insert(rel, e.metadata()?.len());
            }
        }
    }
    Ok(out)
}

/// Whether `copy` holds exactly the files of `spec` with the bytes of `source`.
fn check_tree(spec: &TreeSpec, source: &Path, copy: &Path) -> anyhow::Result<()> {
    let found = list_tree(copy)?;
    let wanted: BTreeMap<String, u64> = spec.files.iter().cloned().collect();
    if found != wanted {
        let missing = wanted.keys().filter(|k| !found.contains_key(*k)).count();
        let extra = found.keys().filter(|k| !wanted.contains_key(*k)).count();
        bail!(
            "the copy has {} files ({missing} missing, {extra} extra, or sizes differ)",
            found.len()
        );
    }
    for rel in wanted.keys() {
        if !super::same_contents(&source.join(rel), &copy.join(rel))? {
            bail!("{rel} differs from the source");
        }
    }
    Ok(())
}

/// Reads every file of the tree once, so that the run finds them in the page cache.
fn read_tree(spec: &TreeSpec, dir: &Path) -> anyhow::Result<()> {
    for (rel, _) in &spec.files {
        super::read_through(&dir.join(rel))?;
    }
    Ok(())
}

impl Bench {
    /// Every peer moving `spec` both ways, s3tm first (it puts the downloads' source).
    pub(crate) fn trees(
        &mut self,
        tools: &[Tool],
        spec: &TreeSpec,
    ) -> anyhow::Result<Vec<TreeRow>> {
        let root = self.env.dir.join(format!("tree-{}", spec.slug()));
        let source = root.join("source");
        write_tree(spec, &source)?;
        let source_prefix = format!("trees/{}/source", spec.slug());
        let mut rows = Vec::new();
        let mut peers = Vec::new();
        for tool in tools.iter().filter(|t| t.version.is_ok()) {
            match tool.kind {
                ToolKind::S3tm | ToolKind::Aws => peers.push((tool, None)),
                ToolKind::Rclone => {
                    peers.push((tool, None));
                    peers.push((tool, Some(16)));
                }
                ToolKind::Curl => {}
            }
        }
        let mut source_put = false;
        for (tool, transfers) in peers {
            let peer = Peer {
                kind: tool.kind,
                transfers,
            };
            for direction in [Direction::Up, Direction::Down] {
                if direction == Direction::Down && !source_put {
                    if tool.kind != ToolKind::S3tm {
                        bail!("the tree downloads read is put by s3tm, which runs first");
                    }
                    let args = self.tree_command(peer, Direction::Up, &source, &source_prefix, 0);
                    let (usage, stderr) = self.measure(tool, &args)?;
                    if usage.code != 0 {
                        bail!("putting the tree downloads read failed: {stderr}");
                    }
                    source_put = true;
                }
                let result = self
                    .tree_runs(spec, tool, peer, direction, &root, &source_prefix)
                    .map_err(|e| format!("{e:#}"));
                let row = TreeRow {
                    tree: spec.name,
                    peer,
                    direction,
                    files: spec.files(),
                    bytes: spec.bytes(),
                    result,
                };
                print_tree_row(&row);
                if tool.kind == ToolKind::S3tm
                    && let Err(e) = &row.result
                {
                    bail!("s3tm failed on the tree {}: {e}", spec.name);
                }
                rows.push(row);
            }
        }
        let _ = fs::remove_dir_all(&root);
        let _ = fs::remove_dir_all(
            self.env
                .server_root
                .join(BUCKET)
                .join("trees")
                .join(spec.slug()),
        );
        Ok(rows)
    }

    fn tree_runs(
        &mut self,
        spec: &TreeSpec,
        tool: &Tool,
        peer: Peer,
        direction: Direction,
        root: &Path,
        source_prefix: &str,
    ) -> anyhow::Result<Vec<Sample>> {
        let source = root.join("source");
        let label = format!("{} {} {}", peer.name(), direction.name(), spec.name);
        let mut samples = Vec::new();
        for run in 1..=self.runs {
            let (prefix, local, copy) = match direction {
                Direction::Up => {
                    let prefix = format!("trees/{}/up-{}-{run}", spec.slug(), peer.slug());
                    let stored = self.env.server_root.join(BUCKET).join(&prefix);
                    (prefix, source.clone(), stored)
                }
                Direction::Down => {
                    let dest = root.join(format!("down-{}", peer.slug()));
                    (source_prefix.to_owned(), dest.clone(), dest)
                }
            };
            let _ = fs::remove_dir_all(&copy);
            let args = self.tree_command(peer, direction, &local, &prefix, run);
            let _ = Command::new("sync").status();
            self.cache_dropped &= drop_page_cache();
            match direction {
                Direction::Up => read_tree(spec, &source)?,
                Direction::Down => {
                    read_tree(spec, &self.env.server_root.join(BUCKET).join(source_prefix))?
                }
            }
            let sample = self
                .timed_run(tool, &args, measure::Stdio::default())
                .with_context(|| format!("{label}, run {run}"))?;
            check_tree(spec, &source, &copy).with_context(|| format!("{label}, run {run}"))?;
            let _ = fs::remove_dir_all(&copy);
            println!(
                "    {label} run {run}: {:.2}s {:.0} files/s {:.0} MiB/s cpu {:.2}s rss {:.0} MiB server cpu {:.2}s",
                sample.wall.as_secs_f64(),
                spec.files() as f64 / sample.wall.as_secs_f64().max(1e-9),
                sample.mib_per_s(spec.bytes()),
                sample.cpu().as_secs_f64(),
                sample.rss_mib(),
                sample.server_cpu.as_secs_f64()
            );
            samples.push(sample);
        }
        Ok(samples)
    }

    /// The client's arguments: `local` to `prefix/` or back.
    fn tree_command(
        &self,
        peer: Peer,
        direction: Direction,
        local: &Path,
        prefix: &str,
        run: u32,
    ) -> Vec<String> {
        let local = local.to_string_lossy().into_owned();
        let url = format!("s3://{BUCKET}/{prefix}/");
        let (from, to) = match direction {
            Direction::Up => (local.clone(), url.clone()),
            Direction::Down => (url.clone(), local.clone()),
        };
        match peer.kind {
            ToolKind::S3tm => {
                let state: PathBuf = self
                    .env
                    .dir
                    .join(format!("state-tree-{run}-{}", super::unique()));
                let endpoint = self.env.endpoint.as_str();
                let state = state.to_string_lossy();
                [
                    "cp",
                    "--recursive",
                    &from,
                    &to,
                    "--endpoint-url",
                    endpoint,
                    "--path-style",
                    "--no-progress",
                    "--quiet",
                    "--state-dir",
                    &state,
                ]
                .map(str::to_owned)
                .to_vec()
            }
            ToolKind::Aws => [
                "s3",
                "cp",
                "--recursive",
                &from,
                &to,
                "--endpoint-url",
                &self.env.endpoint,
                "--no-progress",
                "--only-show-errors",
            ]
            .map(str::to_owned)
            .to_vec(),
            // curl moves one object; `trees` never runs it.
            ToolKind::Rclone | ToolKind::Curl => {
                let remote = format!("bench:{BUCKET}/{prefix}");
                let (from, to) = match direction {
                    Direction::Up => (local, remote),
                    Direction::Down => (remote, local),
                };
                let mut a = vec![
                    "copy".to_owned(),
                    from,
                    to,
                    "--no-check-dest".to_owned(),
                    "-q".to_owned(),
                    "--config".to_owned(),
                    self.env.rclone_config.to_string_lossy().into_owned(),
                ];
                if let Some(n) = peer.transfers {
                    a.extend(["--transfers".to_owned(), n.to_string()]);
                }
                a
            }
        }
    }
}

fn print_tree_row(row: &TreeRow) {
    match (row.files_per_s(), row.stats()) {
        (Some(f), Some(s)) => println!(
            "==> {} {} {}: {:.0} files/s, {:.0} MiB/s, cpu {:.2}s, rss {:.0} MiB",
            row.peer.name(),
            row.direction.name(),
            row.tree,
            f.median,
            s.mib_s.median,
            s.cpu_s.median,
            s.rss_mib.median
        ),
        _ => println!(
            "==> {} {} {}: failed: {}",
            row.peer.name(),
            row.direction.name(),
            row.tree,
            row.result.as_ref().err().map_or("", String::as_str)
        ),
    }
}
