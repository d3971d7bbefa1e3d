//! A directory job: many files moved as one resumable unit.
//!
//! The job is planned once, when it starts: a list of [`JobEntry`]s (a tree walked, or a
//! prefix listed), kept whole in the job's record. From then on the record only grows by
//! one [`JobDelta`] per file that ends, so recording a file costs the same whether the
//! job holds ten files or a hundred thousand. [`JobPlan`] replays those deltas, decides
//! which file starts next within the job's [`JobLimits`], and counts progress. Each file
//! is an ordinary transfer (an upload or download machine) run by the driver; a large
//! file has a checkpoint of its own and resumes at the part.
//!
//! This module also holds the rules that turn keys into paths and back: a key that
//! would escape the destination directory is refused here, before any file is opened.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One file of a job, as planned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEntry {
    /// The file's path relative to the job's directory, segments joined with `/`; the
    /// key is the job's prefix followed by it. A path ending in `/` is a directory (an
    /// empty one uploaded, or a folder marker downloaded): its key is a folder marker.
    pub rel: String,
    /// Its size when the job was planned.
    pub size_bytes: u64,
}

/// What happened to one file, appended to the job's record as it happens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "file", rename_all = "snake_case")]
pub enum JobDelta {
    /// File `index` is done (uploaded, or downloaded and moved into place).
    Done {
        /// The file's place in the plan.
        index: u32,
    },
    /// File `index` failed for `reason`; a later run of the job tries it again.
    Failed {
        /// The file's place in the plan.
        index: u32,
        /// The error, as told to the user.
        reason: String,
    },
}

/// How much of a job runs at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobLimits {
    /// Files in flight at most.
    pub max_files: usize,
    /// The sum of the weights (see [`JobPlan::new`]) of the files in flight at most; a
    /// file heavier than this runs alone.
    pub max_weight: u64,
}

/// Where one file of a job stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileState {
    /// Not started in this run.
    Pending,
    /// Started and not yet ended.
    Running,
    /// Done (in this run or an earlier one).
    Done,
    /// Failed in this run, for the reason given.
    Failed(String),
}

/// Counts of a job's files and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// Files in the job.
    pub files_total: u64,
    /// Files done, in this run or an earlier one.
    pub files_done: u64,
    /// Files that failed in this run.
    pub files_failed: u64,
    /// Bytes of all the files.
    pub bytes_total: u64,
    /// Bytes of the files done.
    pub bytes_done: u64,
}

/// The files of a job and which to start next.
#[derive(Clone, Debug)]
pub struct JobPlan {
    entries: Vec<JobEntry>,
    weights: Vec<u64>,
    states: Vec<FileState>,
    limits: JobLimits,
    /// Every file before this one was started (or done) already.
    cursor: usize,
    running: usize,
    weight_running: u64,
    counts: JobCounts,
}

impl JobPlan {
    /// A plan of `entries`; `weight` tells what a file in flight costs (the memory its
    /// transfer may hold), for [`JobLimits::max_weight`].
    pub fn new(
        entries: Vec<JobEntry>,
        weight: impl Fn(&JobEntry) -> u64,
        limits: JobLimits,
    ) -> Self {
        let weights = entries.iter().map(&weight).collect();
        let counts = JobCounts {
            files_total: entries.len() as u64,
            bytes_total: entries.iter().map(|e| e.size_bytes).sum(),
            ..JobCounts::default()
        };
        JobPlan {
            states: vec![FileState::Pending; entries.len()],
            entries,
            weights,
            limits,
            cursor: 0,
            running: 0,
            weight_running: 0,
            counts,
        }
    }

    /// Applies what an earlier run recorded: files done stay done; files that failed
    /// then are tried again. A delta naming a file the plan does not have is an error
    /// (the record is not this job's).
    pub fn replay<'a>(
        &mut self,
        deltas: impl IntoIterator<Item = &'a JobDelta>,
    ) -> Result<(), String> {
        for d in deltas {
            let JobDelta::Done { index } = d else {
                continue;
            };
            let i = *index as usize;
            let Some(state) = self.states.get_mut(i) else {
                return Err(format!(
                    "the job's journal names file {index} of {}",
                    self.entries.len()
                ));
            };
            if *state != FileState::Done {
                *state = FileState::Done;
                self.counts.files_done += 1;
                self.counts.bytes_done += self.entries[i].size_bytes;
            }
        }
        Ok(())
    }

    /// The planned files.
    pub fn entries(&self) -> &[JobEntry] {
        &self.entries
    }

    /// Where file `index` stands.
    pub fn state(&self, index: usize) -> Option<&FileState> {
        self.states.get(index)
    }

    /// The next file to start, if one may start now; it is then running.
    pub fn next_file(&mut self) -> Option<usize> {
        if self.running >= self.limits.max_files.max(1) {
            return None;
        }
        while self.cursor < self.states.len() && self.states[self.cursor] != FileState::Pending {
            self.cursor += 1;
        }
        let i = self.cursor;
        if i >= self.states.len() {
            return None;
        }
        let w = self.weights[i];
        if self.running > 0 && self.weight_running.saturating_add(w) > self.limits.max_weight {
            return None;
        }
        self.states[i] = FileState::Running;
        self.running += 1;
        self.weight_running += w;
        self.cursor += 1;
        Some(i)
    }

    /// File `index` ended; returns what to record. Ignored (`None`) unless it was running.
    pub fn finished(&mut self, index: usize, result: Result<(), String>) -> Option<JobDelta> {
        if self.states.get(index) != Some(&FileState::Running) {
            return None;
        }
        self.running -= 1;
        self.weight_running -= self.weights[index];
        let delta = match result {
            Ok(()) => {
                self.states[index] = FileState::Done;
                self.counts.files_done += 1;
                self.counts.bytes_done += self.entries[index].size_bytes;
                JobDelta::Done {
                    index: index as u32,
                }
            }
            Err(reason) => {
                self.states[index] = FileState::Failed(reason.clone());
                self.counts.files_failed += 1;
                JobDelta::Failed {
                    index: index as u32,
                    reason,
                }
            }
        };
        Some(delta)
    }

    /// A running file stopped without an end (paused or cut off): it is pending again.
    pub fn stopped(&mut self, index: usize) {
        if self.states.get(index) == Some(&FileState::Running) {
            self.running -= 1;
            self.weight_running -= self.weights[index];
            self.states[index] = FileState::Pending;
            self.cursor = self.cursor.min(index);
        }
    }

    /// Files running now.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Nothing is running and nothing may start: every file is done or failed.
    pub fn is_settled(&self) -> bool {
        self.running == 0
            && self
                .states
                .iter()
                .all(|s| matches!(s, FileState::Done | FileState::Failed(_)))
    }

    /// The files that failed in this run, with why.
    pub fn failures(&self) -> impl Iterator<Item = (usize, &str)> {
        self.states.iter().enumerate().filter_map(|(i, s)| match s {
            FileState::Failed(r) => Some((i, r.as_str())),
            _ => None,
        })
    }

    /// Files and bytes, in all and done.
    pub fn counts(&self) -> JobCounts {
        self.counts
    }
}

/// Why a key cannot be a file in the destination directory.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeKey {
    /// A `.` or `..` segment.
    #[error("it has a `{0}` segment, which would leave the destination directory")]
    Escapes(&'static str),
    /// An absolute path.
    #[error("it starts with `/`")]
    Absolute,
    /// `//` inside.
    #[error("it has an empty segment (`//`)")]
    EmptySegment,
    /// A drive letter, a backslash or a NUL.
    #[error("it looks like a drive letter or holds a `\\`, `:` or NUL")]
    Reserved,
}

/// The path, relative to the destination directory, that `key` (under `prefix`) is
/// downloaded to, segments joined with `/`. A folder marker (a key ending in `/`) gives a
/// path ending in `/`: a directory to make. `Ok(None)` for the prefix itself. Keys that
/// would escape the directory are refused, never normalised.
pub fn relative_path_for_key<'k>(prefix: &str, key: &'k str) -> Result<Option<&'k str>, UnsafeKey> {
    let rel = key.strip_prefix(prefix).unwrap_or(key);
    // `s3://b/dir` lists `dir/...`: what follows the prefix's own `/` is the path.
    let rel = if !prefix.is_empty() && !prefix.ends_with('/') {
        rel.strip_prefix('/').unwrap_or(rel)
    } else {
        rel
    };
    let body = rel.strip_suffix('/').unwrap_or(rel);
    if body.is_empty() {
        return Ok(None);
    }
    if body.starts_with('/') {
        return Err(UnsafeKey::Absolute);
    }
    for seg in body.split('/') {
        match seg {
            "" => return Err(UnsafeKey::EmptySegment),
            "." => return Err(UnsafeKey::Escapes(".")),
            ".." => return Err(UnsafeKey::Escapes("..")),
            _ => {}
        }
        if seg.contains(['\\', '\0']) || (seg.len() >= 2 && seg.as_bytes()[1] == b':') {
            return Err(UnsafeKey::Reserved);
        }
    }
    Ok(Some(rel))
}

/// The key of the file at `rel` (segments joined with `/`) under `prefix`: the prefix as
/// given, with a `/` between when it does not end with one.
pub fn key_for(prefix: &str, rel: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('/') {
        format!("{prefix}{rel}")
    } else {
        format!("{prefix}/{rel}")
    }
}

/// Pairs of paths that cannot both exist: a file `a` and a path under `a/`. Each pair is
/// (the file, one path beneath it). `rels` are relative paths as
/// [`relative_path_for_key`] gives them (directories ending in `/`).
pub fn path_conflicts<'a>(rels: impl IntoIterator<Item = &'a str>) -> Vec<(String, String)> {
    let rels: Vec<&str> = rels.into_iter().collect();
    let files: HashMap<&str, ()> = rels
        .iter()
        .filter(|r| !r.ends_with('/'))
        .map(|r| (*r, ()))
        .collect();
    let mut out = Vec::new();
    let mut seen = HashMap::new();
    for r in &rels {
        let mut at = 0;
        while let Some(slash) = r[at..].find('/') {
            let dir = &r[..at + slash];
            if files.contains_key(dir) && seen.insert(dir, ()).is_none() {
                out.push((dir.to_owned(), (*r).to_owned()));
            }
            at += slash + 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entries(sizes: &[u64]) -> Vec<JobEntry> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, s)| JobEntry {
                rel: format!("f{i}"),
                size_bytes: *s,
            })
            .collect()
    }

    #[test]
    fn keys_map_to_paths_inside_the_directory_or_are_refused() {
        fn ok<'k>(p: &str, k: &'k str) -> Option<&'k str> {
            relative_path_for_key(p, k).unwrap()
        }
        assert_eq!(ok("data/", "data/a/b.txt"), Some("a/b.txt"));
        assert_eq!(ok("data", "data/a b/é.txt"), Some("a b/é.txt"));
        assert_eq!(ok("", "x"), Some("x"));
        assert_eq!(ok("data/", "data/dir/"), Some("dir/"), "a folder marker");
        assert_eq!(ok("data/", "data/"), None, "the prefix itself");
        assert_eq!(
            ok("data/", "data/a..b"),
            Some("a..b"),
            "dots inside a name are fine"
        );
        let bad = |p: &str, k: &str| relative_path_for_key(p, k).unwrap_err();
        assert_eq!(bad("", "../x"), UnsafeKey::Escapes(".."));
        assert_eq!(bad("p/", "p/a/../../b"), UnsafeKey::Escapes(".."));
        assert_eq!(bad("p/", "p/./b"), UnsafeKey::Escapes("."));
        assert_eq!(bad("", "/abs"), UnsafeKey::Absolute);
        assert_eq!(bad("p/", "p//x"), UnsafeKey::Absolute);
        assert_eq!(bad("p/", "p/a//x"), UnsafeKey::EmptySegment);
        assert_eq!(bad("", "C:/x"), UnsafeKey::Reserved);
        assert_eq!(bad("", "a\\..\\b"), UnsafeKey::Reserved);
    }

    #[test]
    fn keys_are_prefix_then_path() {
        assert_eq!(key_for("", "a/b"), "a/b");
        assert_eq!(key_for("p/", "a/b"), "p/a/b");
        assert_eq!(key_for("p", "a/b"), "p/a/b");
    }

    #[test]
    fn a_file_and_a_path_beneath_it_conflict() {
        assert_eq!(
            path_conflicts(["a", "a/b", "a/c", "b/c"]),
            vec![("a".to_owned(), "a/b".to_owned())]
        );
        assert!(path_conflicts(["a/b", "ab", "a b/c", "a/"]).is_empty());
        assert_eq!(
            path_conflicts(["a", "a/"]),
            vec![("a".to_owned(), "a/".to_owned())]
        );
    }

    #[test]
    fn heavy_files_run_alone_and_light_ones_together() {
        let limits = JobLimits {
            max_files: 3,
            max_weight: 10,
        };
        let mut plan = JobPlan::new(entries(&[4, 4, 20, 1]), |e| e.size_bytes, limits);
        assert_eq!(plan.next_file(), Some(0));
        assert_eq!(plan.next_file(), Some(1));
        assert_eq!(plan.next_file(), None, "20 does not fit beside 8");
        plan.finished(0, Ok(()));
        assert_eq!(plan.next_file(), None);
        plan.finished(1, Err("gone".into()));
        assert_eq!(plan.next_file(), Some(2), "alone, a heavy file runs");
        assert_eq!(plan.next_file(), None);
        plan.stopped(2);
        assert_eq!(plan.next_file(), Some(2), "a stopped file starts again");
        plan.finished(2, Ok(()));
        assert_eq!(plan.next_file(), Some(3));
        plan.finished(3, Ok(()));
        assert!(plan.is_settled());
        let c = plan.counts();
        assert_eq!((c.files_done, c.files_failed, c.bytes_done), (3, 1, 25));
        assert_eq!(plan.failures().collect::<Vec<_>>(), vec![(1, "gone")]);
    }

    #[test]
    fn a_journal_naming_a_file_the_plan_lacks_is_refused() {
        let limits = JobLimits {
            max_files: 1,
            max_weight: 1,
        };
        let mut plan = JobPlan::new(entries(&[1]), |_| 1, limits);
        assert!(plan.replay(&[JobDelta::Done { index: 1 }]).is_err());
    }

    #[derive(Clone, Debug)]
    enum Step {
        Start,
        Succeed(usize),
        Fail(usize),
        Stop(usize),
        /// The process dies: a new run replays what was recorded.
        Crash,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => Just(Step::Start),
            4 => (0..8usize).prop_map(Step::Succeed),
            1 => (0..8usize).prop_map(Step::Fail),
            1 => (0..8usize).prop_map(Step::Stop),
            1 => Just(Step::Crash),
        ]
    }

    proptest! {
        /// Against a model of a job run many times over with pauses, crashes and
        /// failures: a file recorded done is never started again; the limits hold;
        /// every file is done once runs stop failing; counts match the journal.
        #[test]
        fn the_plan_finishes_every_file_once_whatever_happens(
            sizes in proptest::collection::vec(0u64..50, 0..12),
            steps in proptest::collection::vec(step(), 0..80),
            max_files in 1usize..4,
            max_weight in 1u64..80,
        ) {
            let limits = JobLimits { max_files, max_weight };
            let weight = |e: &JobEntry| e.size_bytes;
            let mut journal: Vec<JobDelta> = Vec::new();
            let mut plan = JobPlan::new(entries(&sizes), weight, limits);
            let mut uploaded = vec![0u32; sizes.len()];
            let mut running: Vec<usize> = Vec::new();
            let check = |plan: &JobPlan, running: &[usize]| {
                assert_eq!(plan.running(), running.len());
                assert!(running.len() <= max_files);
                let w: u64 = running.iter().map(|i| sizes[*i]).sum();
                assert!(running.len() <= 1 || w <= max_weight, "weight {w} over {max_weight}");
            };
            for s in steps {
                match s {
                    Step::Start => {
                        if let Some(i) = plan.next_file() {
                            assert!(!journal.contains(&JobDelta::Done { index: i as u32 }),
                                "file {i} recorded done was started again");
                            running.push(i);
                        }
                    }
                    Step::Succeed(k) | Step::Fail(k) | Step::Stop(k) if !running.is_empty() => {
                        let i = running.remove(k % running.len());
                        match s {
                            Step::Succeed(_) => {
                                uploaded[i] += 1;
                                journal.extend(plan.finished(i, Ok(())));
                            }
                            Step::Fail(_) => journal.extend(plan.finished(i, Err("x".into()))),
                            _ => plan.stopped(i),
                        }
                    }
                    Step::Crash => {
                        running.clear();
                        plan = JobPlan::new(entries(&sizes), weight, limits);
                        plan.replay(&journal).unwrap();
                    }
                    _ => {}
                }
                check(&plan, &running);
            }
            // A last run without failures finishes the job.
            for i in running.drain(..) {
                plan.stopped(i);
            }
            plan = JobPlan::new(entries(&sizes), weight, limits);
            plan.replay(&journal).unwrap();
            while let Some(i) = plan.next_file() {
                uploaded[i] += 1;
                journal.extend(plan.finished(i, Ok(())));
            }
            prop_assert!(plan.is_settled());
            prop_assert!(uploaded.iter().all(|n| *n == 1), "each file done exactly once: {uploaded:?}");
            let c = plan.counts();
            prop_assert_eq!(c.files_done, sizes.len() as u64);
            prop_assert_eq!(c.bytes_done, sizes.iter().sum::<u64>());
        }
    }
}
