//! Directory jobs: a tree uploaded under a prefix, or a prefix downloaded into a
//! directory, as one resumable job.
//!
//! What to move is decided once, when the job starts (the tree walked, or the prefix
//! listed) and saved whole as the job's record. Each file that ends appends one entry
//! to the record's journal (entries written while another was being made durable go
//! together), so a file costs one small write whatever the job's size; pause and the
//! job's end rewrite the record with the journal folded in. The rules (which file
//! next, within what limits, what a key may be) are `transfer_core::JobPlan`'s; each
//! file is an ordinary transfer of this manager, sharing its connections and its
//! budget of requests in flight. A file at or above the multipart threshold is saved
//! as a transfer of its own (id `JOB-INDEX`, listed with the job), so a resumed job
//! continues it at the part; a smaller one is not, and is sent again if cut off.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use resume_store::{
    Direction, JournalEntry, Lease, Record, RecordKind, RecordMeta, ResumeStore, StoreError,
    TransferId, TransferState as StoredState,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use transfer_core::{
    ContentCheck, JobCounts, JobDelta, JobEntry, JobLimits, JobPlan, Sameness, Verified, key_for,
    path_conflicts, relative_path_for_key,
};

use crate::manager::{Keep, new_id, off_thread};
use crate::persist::{SavedEndpoint, now_unix_ms};
use crate::{Error, ErrorKind, TransferHandle, TransferManager, TransferOutcome};

/// `payload_version` of job records.
const JOB_VERSION: u32 = 1;

/// Files in flight in one job at most.
const MAX_FILES_IN_FLIGHT: usize = 32;
/// Files `sync --checksum` compares at once (a HeadObject, then a read of the file).
const COMPARE_IN_FLIGHT: usize = 8;
/// The read size of `sync --checksum`'s hashing.
const HASH_CHUNK: usize = 1024 * 1024;

/// How often a running job's byte count is refreshed from its files in flight.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// What a job record holds besides its metadata: the plan, fixed when the job started.
#[derive(Serialize, Deserialize)]
struct JobStored {
    /// The prefix keys are made from: `key_for(prefix, entry.rel)`.
    prefix: String,
    entries: Vec<JobEntry>,
    /// Files done when the record was last written whole (the journal adds to them).
    done: Vec<u32>,
    /// What the plan could not take, said again at every run's end.
    problems: Vec<FileProblem>,
    /// What the plan left out on purpose (links not followed, devices), said once.
    skipped: Vec<String>,
    endpoint: SavedEndpoint,
    /// The `--include`/`--exclude` rules the plan was made with.
    #[serde(default)]
    filters: Vec<String>,
    /// What a sync with `--delete` removes once every file is done.
    #[serde(default)]
    deletions: Vec<Deletion>,
    /// Files that failed in the run that last wrote the record whole, with why (the
    /// journal adds to them).
    #[serde(default)]
    failed: Vec<(u32, String)>,
}

/// Where one file of a saved job stands ([`TransferManager::job_files`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFile {
    /// Its path relative to the job's directory (ending in `/` for a directory).
    pub path: String,
    /// Its key.
    pub key: String,
    /// Its size when the job was planned.
    pub size_bytes: u64,
    /// Done, failed (with why) or still to do.
    pub state: JobFileState,
}

/// See [`JobFile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobFileState {
    /// Moved.
    Done,
    /// Failed in the last run that tried it; the next run tries it again.
    Failed(String),
    /// Not done yet.
    Pending,
}

/// A file a job could not move, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileProblem {
    /// The file's path relative to the job's directory, or the key.
    pub path: String,
    /// What went wrong.
    pub error: String,
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobState {
    /// Moving files.
    Running,
    /// Paused; its record is durable.
    Paused,
    /// Every file ended (some may have failed).
    Finished,
    /// Cancelled and cleaned up.
    Cancelled,
}

/// A snapshot of a job's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobProgress {
    /// Files in the job.
    pub files_total: u64,
    /// Files done (in this run or an earlier one).
    pub files_done: u64,
    /// Files that failed in this run.
    pub files_failed: u64,
    /// Files moving now.
    pub files_running: u64,
    /// Bytes of all the files.
    pub bytes_total: u64,
    /// Bytes of the files done, and those durably done of the files moving.
    pub bytes_done: u64,
    /// Where it stands.
    pub state: JobState,
}

/// What a job that ran to its end reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    /// The job.
    pub id: TransferId,
    /// Files in the job, and done (all of them unless some failed).
    pub files_total: u64,
    /// Files done.
    pub files_done: u64,
    /// Bytes of all the files.
    pub bytes_total: u64,
    /// Files that failed, with why; a later run of the job tries them again. Keys a
    /// download refuses (one that would leave the directory, say) are here too.
    pub failures: Vec<FileProblem>,
    /// Files left out on purpose (symbolic links not followed, devices, sockets).
    pub skipped: Vec<String>,
    /// What a sync with `--delete` removed: keys (an upload) or paths relative to the
    /// directory (a download).
    pub deleted: Vec<String>,
    /// Files moved in this run whose bytes could not be checked against the object (no
    /// checksum or MD5 ETag to check them by), with why.
    pub unverified: Vec<FileProblem>,
    /// Bytes moved by this run.
    pub bytes_transferred: u64,
    /// Whether this run continued an earlier one.
    pub resumed: bool,
    /// Time this run took.
    pub elapsed: Duration,
}

/// What happened to one file of a job, as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobEvent {
    /// A file (or directory) is done.
    FileDone {
        /// Its path relative to the job's directory.
        path: String,
        /// Its key.
        key: String,
        /// Its size.
        bytes: u64,
        /// How its bytes were checked (`None` for a directory, which has none).
        verified: Option<Verified>,
    },
    /// A file failed; a later run of the job tries it again.
    FileFailed {
        /// Its path relative to the job's directory.
        path: String,
        /// Its key.
        key: String,
        /// What went wrong.
        error: String,
    },
}

/// One of the largest files a job is moving now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInFlight {
    /// Its path relative to the job's directory.
    pub path: String,
    /// Bytes durably done.
    pub bytes_done: u64,
    /// Its size.
    pub bytes_total: u64,
}

/// How many of the largest files in flight [`JobHandle::in_flight`] shows.
const LARGEST_SHOWN: usize = 3;

enum JobCommand {
    Pause(oneshot::Sender<Result<(), Error>>),
    Resume,
    Cancel,
}

/// A running job. Dropping the handle does not stop it.
#[derive(Debug, Clone)]
pub struct JobHandle {
    id: TransferId,
    direction: Direction,
    commands: mpsc::UnboundedSender<JobCommand>,
    progress: watch::Receiver<JobProgress>,
    in_flight: watch::Receiver<Vec<FileInFlight>>,
    events: tokio::sync::broadcast::Sender<JobEvent>,
    end: watch::Receiver<Option<Result<JobOutcome, Error>>>,
}

impl std::fmt::Debug for JobCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobCommand::Pause(_) => "Pause",
            JobCommand::Resume => "Resume",
            JobCommand::Cancel => "Cancel",
        })
    }
}

impl JobHandle {
    /// The job's id (`s3tm resume ID`).
    pub fn id(&self) -> &TransferId {
        &self.id
    }

    /// Upload (a directory) or download (a prefix).
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Progress, updated as files end and a few times a second while they move.
    pub fn progress(&self) -> watch::Receiver<JobProgress> {
        self.progress.clone()
    }

    /// The largest files moving now (three at most, largest first), updated with
    /// [`progress`](Self::progress).
    pub fn in_flight(&self) -> watch::Receiver<Vec<FileInFlight>> {
        self.in_flight.clone()
    }

    /// Each file's end from now on (a receiver that falls far behind loses the oldest).
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    /// Starts no more files, pauses the large files in flight at their last part (and
    /// stops the small ones, which are sent again on resume), and makes the job's record
    /// durable. Resolves once paused; [`resume`](Self::resume) continues in this
    /// process, [`TransferManager::resume_job`] in another.
    pub async fn pause(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(JobCommand::Pause(tx))?;
        rx.await.unwrap_or_else(|_| Err(self.ended()))
    }

    /// Continues after [`pause`](Self::pause).
    pub fn resume(&self) -> Result<(), Error> {
        self.send(JobCommand::Resume)
    }

    /// Cancels: aborts the multipart uploads of its files, removes their partial files
    /// and forgets the job. Files already done stay. [`join`](Self::join) then returns
    /// an error of kind [`ErrorKind::Cancelled`].
    pub fn cancel(&self) -> Result<(), Error> {
        self.send(JobCommand::Cancel)
    }

    /// Waits for the end: every file done or failed (see [`JobOutcome::failures`]).
    pub async fn join(self) -> Result<JobOutcome, Error> {
        crate::handle::wait_for_end(self.end, format!("job {}", self.id)).await
    }

    fn send(&self, c: JobCommand) -> Result<(), Error> {
        self.commands.send(c).map_err(|_| self.ended())
    }

    fn ended(&self) -> Error {
        Error::new(
            ErrorKind::Finished,
            format!("job {} has ended; `join` returns how", self.id),
        )
    }
}

/// What a job takes.
#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    /// Follow symbolic links of an upload's tree (to files and directories; loops are
    /// reported). By default they are left out, and said to be.
    pub follow_symlinks: bool,
    /// Which files the job takes, by their path relative to the directory (an upload's
    /// source, or a download's keys after the prefix).
    pub filter: PathFilter,
}

/// `--include` and `--exclude` globs, as aws-cli applies them: every file is taken
/// unless a rule says otherwise, and of the rules that match a path the last one given
/// decides. A glob is matched against the whole relative path (`/`-separated), and `*`
/// matches `/` too: `--exclude '*' --include '*.txt'` takes every `.txt` file at any
/// depth.
#[derive(Debug, Clone, Default)]
pub struct PathFilter {
    rules: Vec<(bool, String, globset::GlobMatcher)>,
}

impl PathFilter {
    /// Takes what matches `glob` (over earlier rules).
    pub fn include(self, glob: &str) -> Result<Self, Error> {
        self.rule(true, glob)
    }

    /// Leaves out what matches `glob` (over earlier rules).
    pub fn exclude(self, glob: &str) -> Result<Self, Error> {
        self.rule(false, glob)
    }

    fn rule(mut self, include: bool, glob: &str) -> Result<Self, Error> {
        let matcher = globset::GlobBuilder::new(glob)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("`{glob}` is not a glob: {e}"),
                )
            })?
            .compile_matcher();
        self.rules.push((include, glob.to_owned(), matcher));
        Ok(self)
    }

    /// Whether the file at `rel` is taken.
    pub fn takes(&self, rel: &str) -> bool {
        self.rules
            .iter()
            .rev()
            .find(|(_, _, m)| m.is_match(rel))
            .is_none_or(|(include, _, _)| *include)
    }

    /// The rules, as the command line gives them (`--include GLOB`, ...).
    pub fn describe(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|(inc, g, _)| format!("--{} {g}", if *inc { "include" } else { "exclude" }))
            .collect()
    }
}

/// What `plan_sync` compares and removes.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Which files, and whether links are followed.
    pub job: JobOptions,
    /// Compare sizes only, not modification times.
    pub size_only: bool,
    /// Compare content: a file and an object of the same size are the same when the
    /// file, hashed as the object's checksum (or its ETag, where it is an MD5) was
    /// computed, gives the object's value; modification times are not looked at. One
    /// HeadObject per such pair, and every such local file read once.
    pub checksum: bool,
    /// Remove what the destination holds and the source lacks (within the filter),
    /// once every copy is done.
    pub delete: bool,
}

/// What a sync will do, to show before it runs ([`TransferManager::start_sync`]).
#[derive(Debug)]
pub struct SyncPlan {
    direction: Direction,
    bucket: String,
    prefix: String,
    dir: PathBuf,
    /// The files to copy (relative paths, sizes).
    pub copy: Vec<JobEntry>,
    /// What `--delete` removes: keys (an upload) or paths relative to the directory.
    pub delete: Vec<String>,
    planned: Planned,
    filter: Vec<String>,
    /// With [`SyncOptions::checksum`]: files of the same size whose content could not be
    /// compared (and why), copied all the same.
    pub uncompared: Vec<FileProblem>,
    /// With [`SyncOptions::checksum`]: how many files of the same size were compared by
    /// content (and found the same, or not).
    pub compared: usize,
}

impl SyncPlan {
    /// Files refused or unreadable, which the sync will report as failed.
    pub fn problems(&self) -> &[FileProblem] {
        &self.planned.problems
    }

    /// Files left out on purpose.
    pub fn skipped(&self) -> &[String] {
        &self.planned.skipped
    }
}

/// Marks a sync's job among the filters it keeps, so that `cp -r` never continues it.
const SYNC_MARK: &str = "(sync)";

fn absolute_dir(dir: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(dir).map_err(|e| Error::local(format!("bad path {}", dir.display()), e))
}

/// The prefix a listing of `prefix` uses: `p` means `p/`, as for `aws s3 cp --recursive`.
fn listed_prefix(prefix: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_owned()
    } else {
        format!("{prefix}/")
    }
}

/// Seconds since the Unix epoch of an S3 date (`2026-12-03T18:36:41.000Z`).
fn unix_secs(date: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(date.trim_end_matches('Z')).ok()?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

/// A job found in the store.
#[derive(Debug, Clone)]
pub struct SavedJob {
    /// Its id.
    pub id: TransferId,
    /// Upload or download.
    pub direction: Direction,
    /// Bucket.
    pub bucket: String,
    /// The prefix of its keys.
    pub prefix: String,
    /// The directory.
    pub dir: PathBuf,
    /// Files in all and done, bytes in all and done.
    pub counts: JobCounts,
    /// The `--include`/`--exclude` rules it was planned with (and `(sync)` for a sync).
    pub filters: Vec<String>,
}

impl TransferManager {
    /// Uploads every file under `dir` to `bucket`, each under `prefix` followed by its
    /// path relative to `dir` (`/`-separated), as one resumable job: hidden files
    /// included, empty directories as folder markers (`dir/`), symbolic links left out
    /// unless `opts.follow_symlinks`, what `opts.filter` leaves out too. Returns once the
    /// tree is walked and the job saved.
    pub async fn upload_directory(
        &self,
        dir: impl AsRef<Path>,
        bucket: &str,
        prefix: &str,
        opts: JobOptions,
    ) -> Result<JobHandle, Error> {
        let dir = absolute_dir(dir.as_ref())?;
        let planned = self.plan_upload(&dir, &opts).await?;
        self.start_job(
            Direction::Upload,
            bucket,
            prefix.to_owned(),
            dir,
            planned,
            &opts,
        )
        .await
    }

    /// Downloads every object under `prefix` in `bucket` into `dir`, each at its key's
    /// path after the prefix, as one resumable job. `s3://b/p` means the prefix `p/`, as
    /// for `aws s3 cp --recursive`. A key that would leave `dir` (`../x`, `/x`, `a//b`)
    /// is refused and reported, never written; folder markers (`k/`) make directories; a
    /// key that is both a file and a directory (`a` and `a/b`) is reported for the path
    /// beneath. Nothing is written through a symbolic link inside `dir`.
    pub async fn download_prefix(
        &self,
        bucket: &str,
        prefix: &str,
        dir: impl AsRef<Path>,
        opts: JobOptions,
    ) -> Result<JobHandle, Error> {
        let dir = absolute_dir(dir.as_ref())?;
        let prefix = listed_prefix(prefix);
        let planned = self.plan_download(bucket, &prefix, &opts).await?;
        self.start_job(Direction::Download, bucket, prefix, dir, planned, &opts)
            .await
    }

    /// Plans a sync (`s3tm sync`) of `dir` to `bucket`/`prefix` (`Direction::Upload`)
    /// or back: what is missing at the destination or differs from the source (in size,
    /// or, unless `opts.size_only`, with a source modified after the destination, to the
    /// second, as `aws s3 sync` compares), and, with `opts.delete`, what the destination
    /// holds that the source lacks (within the filter). Nothing is moved yet.
    pub async fn plan_sync(
        &self,
        direction: Direction,
        bucket: &str,
        prefix: &str,
        dir: impl AsRef<Path>,
        opts: &SyncOptions,
    ) -> Result<SyncPlan, Error> {
        let dir = absolute_dir(dir.as_ref())?;
        let listed_prefix = listed_prefix(prefix);
        let remote = self
            .plan_download(bucket, &listed_prefix, &opts.job)
            .await?;
        let local = if direction == Direction::Download && !dir.exists() {
            Planned::default()
        } else {
            self.plan_upload(&dir, &opts.job).await?
        };
        let (mut source, dest) = match direction {
            Direction::Upload => (local, remote),
            Direction::Download => (remote, local),
        };
        let at_dest: HashMap<&str, (u64, Option<i64>)> = dest
            .entries
            .iter()
            .zip(&dest.seen)
            .map(|(e, seen)| (e.rel.as_str(), (e.size_bytes, seen.mtime)))
            .collect();
        let mut copy = Planned {
            problems: std::mem::take(&mut source.problems),
            skipped: std::mem::take(&mut source.skipped),
            ..Planned::default()
        };
        if opts.size_only && opts.checksum {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a sync compares by size only or by checksum, not both",
            ));
        }
        let mut to_compare = Vec::new();
        let mut differs: Vec<bool> = source
            .entries
            .iter()
            .zip(&source.seen)
            .enumerate()
            .map(|(i, (e, seen))| match at_dest.get(e.rel.as_str()) {
                None => true,
                Some(_) if e.rel.ends_with('/') => false,
                Some((size, _)) if *size != e.size_bytes => true,
                Some(_) if opts.size_only => false,
                Some(_) if opts.checksum => {
                    to_compare.push(i);
                    false
                }
                Some((_, dest_time)) => match (seen.mtime, dest_time) {
                    (Some(src), Some(dst)) => src > *dst,
                    _ => true,
                },
            })
            .collect();
        let compared = to_compare.len();
        let mut uncompared = Vec::new();
        let rels = to_compare.iter().map(|i| source.entries[*i].rel.clone());
        let verdicts = self
            .compare_contents(bucket, &listed_prefix, &dir, rels.collect())
            .await?;
        for (i, verdict) in to_compare.into_iter().zip(verdicts) {
            match verdict {
                Sameness::Same => {}
                Sameness::Differs => differs[i] = true,
                Sameness::Unknown { why } => {
                    differs[i] = true;
                    uncompared.push(FileProblem {
                        path: source.entries[i].rel.clone(),
                        error: why,
                    });
                }
            }
        }
        for ((e, seen), differs) in source.entries.iter().zip(&source.seen).zip(differs) {
            if differs {
                copy.push(e.clone(), seen.clone());
            }
        }
        if opts.delete {
            // Present at the source: its files, the directories above them, and what
            // it left out on purpose (a link not followed is not a file deleted).
            let mut in_source: HashSet<&str> = HashSet::new();
            for rel in source
                .entries
                .iter()
                .map(|e| e.rel.as_str())
                .chain(source.skipped_rels.iter().map(String::as_str))
            {
                in_source.insert(rel);
                for (at, _) in rel.match_indices('/') {
                    in_source.insert(&rel[..=at]);
                }
            }
            copy.deletions = dest
                .entries
                .iter()
                .zip(&dest.seen)
                .filter(|(e, _)| !in_source.contains(e.rel.as_str()))
                .map(|(e, seen)| Deletion {
                    target: match direction {
                        Direction::Upload => key_for(&listed_prefix, &e.rel),
                        Direction::Download => e.rel.clone(),
                    },
                    size_bytes: e.size_bytes,
                    mtime: seen.mtime,
                    etag: seen.etag.clone(),
                })
                .collect();
        }
        let prefix = match direction {
            Direction::Upload => prefix.to_owned(),
            Direction::Download => listed_prefix,
        };
        Ok(SyncPlan {
            direction,
            bucket: bucket.to_owned(),
            prefix,
            dir,
            copy: copy.entries.clone(),
            delete: copy.deletions.iter().map(|d| d.target.clone()).collect(),
            planned: copy,
            filter: opts.job.filter.describe(),
            uncompared,
            compared,
        })
    }

    /// Whether each file `rels` of `dir` holds what its object under `prefix` holds
    /// (`sync --checksum`): the object's checksum or ETag from a HeadObject, the file
    /// hashed to match, a few files at a time.
    async fn compare_contents(
        &self,
        bucket: &str,
        prefix: &str,
        dir: &Path,
        rels: Vec<String>,
    ) -> Result<Vec<Sameness>, Error> {
        use futures::stream::{self, StreamExt as _, TryStreamExt as _};
        let one = |rel: String| async move {
            let key = key_for(prefix, &rel);
            let head = s3_protocol::HeadObject {
                bucket: bucket.to_owned(),
                key: key.clone(),
                if_match: None,
                part_number: None,
                checksum_mode: true,
            };
            let what = format!("comparing {rel} with s3://{bucket}/{key}");
            let info = match self
                .one_shot(
                    &what,
                    |s3| head.build(s3),
                    crate::exec::parse_object_info,
                    None,
                )
                .await
            {
                Ok(info) => info,
                // Gone since the listing: copying is what makes the two the same.
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Sameness::Differs),
                Err(e) => return Err(e),
            };
            let check = match ContentCheck::for_object(&info) {
                Ok(check) => check,
                Err(why) => return Ok(Sameness::Unknown { why }),
            };
            let path = dir.join(&rel);
            off_thread(move || hash_file(&path, check)).await
        };
        stream::iter(rels)
            .map(one)
            .buffered(COMPARE_IN_FLIGHT)
            .try_collect()
            .await
    }

    /// Runs a sync planned by [`plan_sync`](Self::plan_sync) as one resumable job: its
    /// copies, then, once every one is done, its deletions.
    pub async fn start_sync(&self, plan: SyncPlan) -> Result<JobHandle, Error> {
        let mut filters = plan.filter;
        filters.push(SYNC_MARK.to_owned());
        self.start_job_with(
            plan.direction,
            &plan.bucket,
            plan.prefix,
            plan.dir,
            plan.planned,
            filters,
        )
        .await
    }

    /// The tree under `dir`, walked on the blocking pool.
    async fn plan_upload(&self, dir: &Path, opts: &JobOptions) -> Result<Planned, Error> {
        let d = dir.to_owned();
        let o = opts.clone();
        off_thread(move || walk_tree(&d, &o)).await
    }

    /// The objects under `prefix` as files of `dir`, with what the listing tells of each.
    async fn plan_download(
        &self,
        bucket: &str,
        prefix: &str,
        opts: &JobOptions,
    ) -> Result<Planned, Error> {
        let listed = self.list_objects(bucket, prefix).await?;
        let mut planned = Planned::default();
        for (key, size, seen) in listed {
            match relative_path_for_key(prefix, &key) {
                Ok(Some(rel)) if rel.ends_with(crate::PARTIAL_SUFFIX) => {
                    planned.problems.push(FileProblem {
                        path: key.clone(),
                        error: format!(
                            "refused the key `{key}`: its name ends with {}, which s3tm gives its partial files",
                            crate::PARTIAL_SUFFIX
                        ),
                    });
                }
                Ok(Some(rel)) if opts.filter.takes(rel) => {
                    let entry = JobEntry {
                        rel: rel.to_owned(),
                        size_bytes: size,
                    };
                    planned.push(entry, seen);
                }
                Ok(_) => {}
                Err(why) => planned.problems.push(FileProblem {
                    path: key.clone(),
                    error: format!("refused the key `{key}`: {why}"),
                }),
            }
        }
        let conflicts = path_conflicts(planned.entries.iter().map(|e| e.rel.as_str()));
        let beneath: HashSet<String> = conflicts.iter().map(|(_, b)| b.clone()).collect();
        for (file, under) in conflicts {
            planned.problems.push(FileProblem {
                path: under.clone(),
                error: format!(
                    "`{}` is an object and `{}` would need it to be a directory; only the first was downloaded",
                    key_for(prefix, &file),
                    key_for(prefix, &under)
                ),
            });
        }
        let mut kept = Planned {
            problems: planned.problems,
            ..Planned::default()
        };
        for (e, seen) in planned.entries.into_iter().zip(planned.seen) {
            if !beneath.contains(&e.rel) {
                kept.push(e, seen);
            }
        }
        Ok(kept)
    }

    /// Continues a saved job (paused, interrupted or with failed files): files done are
    /// not moved again; large files continue at the part.
    pub async fn resume_job(&self, id: &TransferId) -> Result<JobHandle, Error> {
        let (lease, rec, stored) = self.load_job(id).await?;
        self.refuse_job_on_other_server(id, &stored)?;
        let mut deltas: Vec<JobDelta> = stored
            .done
            .iter()
            .map(|i| JobDelta::Done { index: *i })
            .collect();
        for entry in &rec.journal {
            deltas.extend(decode_entry(id, entry)?);
        }
        self.run_job(id.clone(), lease, rec.meta, stored, deltas, true)
    }

    /// The saved `cp -r` job moving `bucket`/`prefix` to or from `dir` in `direction`
    /// with the same filter, if one is not running, so that the same command continues
    /// it. (A sync is planned anew each time: it is never found here.)
    pub fn find_job(
        &self,
        direction: Direction,
        bucket: &str,
        prefix: &str,
        dir: &Path,
        opts: &JobOptions,
    ) -> Result<Option<SavedJob>, Error> {
        let filters = opts.filter.describe();
        self.find_job_with(direction, bucket, prefix, dir, &filters)
    }

    /// The saved sync of `bucket`/`prefix` and `dir` in `direction` with the same
    /// filter, if one was cut short (paused, interrupted, or with files that failed):
    /// `s3tm sync` finishes it (its deletions too) before planning anew, rather than
    /// leave its record and its files' uploads behind.
    pub fn find_sync(
        &self,
        direction: Direction,
        bucket: &str,
        prefix: &str,
        dir: &Path,
        opts: &SyncOptions,
    ) -> Result<Option<SavedJob>, Error> {
        let mut filters = opts.job.filter.describe();
        filters.push(SYNC_MARK.to_owned());
        self.find_job_with(direction, bucket, prefix, dir, &filters)
    }

    fn find_job_with(
        &self,
        direction: Direction,
        bucket: &str,
        prefix: &str,
        dir: &Path,
        filters: &[String],
    ) -> Result<Option<SavedJob>, Error> {
        let dir = absolute_dir(dir)?;
        let prefix_listed = match direction {
            Direction::Download => listed_prefix(prefix),
            Direction::Upload => prefix.to_owned(),
        };
        let (list, _) = self.list_resumable()?;
        for t in list {
            if matches!(t.kind, RecordKind::Job { .. })
                && t.direction == direction
                && t.bucket == bucket
                && t.key == prefix_listed
                && t.local_path == dir
                && t.state != crate::SavedState::Running
            {
                let saved = self.saved_job(&t.id)?;
                if saved.filters == filters {
                    return Ok(Some(saved));
                }
            }
        }
        Ok(None)
    }

    /// Every file of saved job `id`, with where it stands.
    pub fn job_files(&self, id: &TransferId) -> Result<Vec<JobFile>, Error> {
        let (rec, stored) = self.load_job_record(id)?;
        let mut states = file_states(id, &rec, &stored)?;
        Ok(stored
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| JobFile {
                path: e.rel.clone(),
                key: key_for(&stored.prefix, &e.rel),
                size_bytes: e.size_bytes,
                state: states.remove(&(i as u32)).unwrap_or(JobFileState::Pending),
            })
            .collect())
    }

    /// Job `id`'s record and plan, read from the store (no lease taken).
    fn load_job_record(&self, id: &TransferId) -> Result<(Record, JobStored), Error> {
        let rec = self
            .store()
            .load(id)
            .map_err(Error::store)?
            .ok_or_else(|| not_found(id))?;
        let stored = decode_job(&rec)?;
        Ok((rec, stored))
    }

    /// What the store holds of job `id`: its files done read from its journal.
    pub fn saved_job(&self, id: &TransferId) -> Result<SavedJob, Error> {
        let (rec, stored) = self.load_job_record(id)?;
        let done = done_files(id, &rec, &stored)?;
        let counts = JobCounts {
            files_total: stored.entries.len() as u64,
            files_done: done.len() as u64,
            files_failed: 0,
            bytes_total: stored.entries.iter().map(|e| e.size_bytes).sum(),
            bytes_done: done
                .iter()
                .filter_map(|i| stored.entries.get(*i as usize))
                .map(|e| e.size_bytes)
                .sum(),
        };
        Ok(SavedJob {
            filters: stored.filters.clone(),
            id: id.clone(),
            direction: rec.meta.direction,
            bucket: rec.meta.bucket,
            prefix: stored.prefix,
            dir: rec.meta.local_path,
            counts,
        })
    }

    /// Cancels a saved job no process runs: aborts the multipart uploads of its files and
    /// removes their partial files, then forgets it. Files already done stay.
    pub async fn cancel_saved_job(&self, id: &TransferId) -> Result<(), Error> {
        let (lease, rec, stored) = self.load_job(id).await?;
        self.cancel_job_files(id).await?;
        if rec.meta.direction == Direction::Download {
            // A small file cut off by a crash left its partial file, with no record.
            let done = done_files(id, &rec, &stored)?;
            for (i, e) in stored.entries.iter().enumerate() {
                if e.rel.ends_with('/') || done.contains(&(i as u32)) {
                    continue;
                }
                let dest = rec.meta.local_path.join(&e.rel);
                let partial = crate::partial_path(&dest);
                crate::io::Sink::file(partial, dest)
                    .delete()
                    .await
                    .map_err(|f| {
                        Error::new(ErrorKind::LocalIo, format!("job {id}: {}", f.message))
                    })?;
            }
        }
        let store = self.store().clone();
        let id2 = id.clone();
        off_thread(move || store.remove(&id2).map_err(Error::store)).await?;
        drop(lease);
        Ok(())
    }

    /// Cancels every saved job no process runs.
    pub(crate) async fn cancel_all_jobs(
        &self,
    ) -> Result<Vec<(TransferId, Result<(), Error>)>, Error> {
        let (list, _) = self.list_off_thread().await?;
        let mut out = Vec::new();
        for t in list {
            if matches!(t.kind, RecordKind::Job { .. }) && t.state != crate::SavedState::Running {
                let result = self.cancel_saved_job(&t.id).await;
                out.push((t.id, result));
            }
        }
        Ok(out)
    }

    /// Cancels the saved files of job `id` (its large files, saved on their own).
    async fn cancel_job_files(&self, id: &TransferId) -> Result<(), Error> {
        let (list, _) = self.list_off_thread().await?;
        for t in list {
            if t.kind == (RecordKind::JobFile { job: id.clone() }) {
                match self.cancel_saved(&t.id).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::Cancelled => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    async fn load_job(&self, id: &TransferId) -> Result<(Lease, Record, JobStored), Error> {
        let store = self.store().clone();
        let id2 = id.clone();
        let (lease, rec) = off_thread(move || {
            // A job whose handles were just dropped lets go of its lease a moment later.
            let lease =
                crate::manager::lease_patiently(store.as_ref(), &id2).map_err(|e| match e {
                    StoreError::Locked { .. } => Error::new(
                        ErrorKind::Locked,
                        format!("job {id2} is running in another process"),
                    ),
                    e => Error::store(e),
                })?;
            Ok((lease, store.load(&id2).map_err(Error::store)?))
        })
        .await?;
        let rec = rec.ok_or_else(|| not_found(id))?;
        let stored = decode_job(&rec)?;
        Ok((lease, rec, stored))
    }

    fn refuse_job_on_other_server(&self, id: &TransferId, stored: &JobStored) -> Result<(), Error> {
        let here = SavedEndpoint::of(self.config());
        if stored.endpoint.same_server(&here) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "job {id} was started against {}, not {here}: continue it against the same server",
                stored.endpoint
            ),
        ))
    }

    /// Every key under `prefix` with its size and modification time (seconds since the
    /// Unix epoch, when the server's date reads), all pages.
    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<(String, u64, Seen)>, Error> {
        let mut out = Vec::new();
        let mut req = s3_protocol::ListObjectsV2::new(bucket);
        if !prefix.is_empty() {
            req.prefix = Some(prefix.to_owned());
        }
        loop {
            let what = format!("listing s3://{bucket}/{prefix}");
            let page = self
                .one_shot(
                    &what,
                    |s3| req.build(s3),
                    s3_protocol::parse_list_objects_v2,
                    None,
                )
                .await?;
            out.extend(page.contents.into_iter().map(|o| {
                let seen = Seen {
                    mtime: o.last_modified.as_deref().and_then(unix_secs),
                    etag: o.etag.map(|e| e.0),
                };
                (o.key, o.size_bytes, seen)
            }));
            if !page.is_truncated {
                return Ok(out);
            }
            match page.next_continuation_token {
                Some(token) if Some(&token) != req.continuation_token.as_ref() => {
                    req.continuation_token = Some(token);
                }
                // A listing cut short is not the prefix: a sync would delete what it
                // did not see.
                _ => {
                    return Err(Error::new(
                        ErrorKind::Remote,
                        format!(
                            "listing s3://{bucket}/{prefix}: the server said more keys follow but gave no new continuation token; nothing was done"
                        ),
                    ));
                }
            }
        }
    }

    async fn start_job(
        &self,
        direction: Direction,
        bucket: &str,
        prefix: String,
        dir: PathBuf,
        planned: Planned,
        opts: &JobOptions,
    ) -> Result<JobHandle, Error> {
        let filters = opts.filter.describe();
        self.start_job_with(direction, bucket, prefix, dir, planned, filters)
            .await
    }

    async fn start_job_with(
        &self,
        direction: Direction,
        bucket: &str,
        prefix: String,
        dir: PathBuf,
        planned: Planned,
        filters: Vec<String>,
    ) -> Result<JobHandle, Error> {
        let id = new_id();
        let now = now_unix_ms();
        let files = planned.entries.len() as u64;
        let meta = RecordMeta {
            id: id.clone(),
            direction,
            bucket: bucket.to_owned(),
            key: prefix.clone(),
            local_path: dir,
            done_bytes: 0,
            total_bytes: planned.entries.iter().map(|e| e.size_bytes).sum(),
            created_unix_ms: now,
            updated_unix_ms: now,
            state: StoredState::Running,
            kind: RecordKind::Job { files },
        };
        let stored = JobStored {
            prefix,
            entries: planned.entries,
            done: Vec::new(),
            problems: planned.problems,
            skipped: planned.skipped,
            endpoint: SavedEndpoint::of(self.config()),
            filters,
            deletions: planned.deletions,
            failed: Vec::new(),
        };
        let record = job_record(&meta, &stored)?;
        let store = self.store().clone();
        let id2 = id.clone();
        let lease = off_thread(move || {
            let lease = store.lease(&id2).map_err(Error::store)?;
            store.save(&record).map_err(Error::store)?;
            Ok(lease)
        })
        .await?;
        self.run_job(id, lease, meta, stored, Vec::new(), false)
    }

    fn run_job(
        &self,
        id: TransferId,
        lease: Lease,
        meta: RecordMeta,
        stored: JobStored,
        deltas: Vec<JobDelta>,
        resumed: bool,
    ) -> Result<JobHandle, Error> {
        let c = self.config();
        let large_weight = (c.max_in_flight_per_upload as u64)
            .saturating_mul(c.part_size_bytes)
            .min(c.max_memory_bytes);
        let direction = meta.direction;
        let threshold = c.multipart_threshold_bytes;
        let weight = move |e: &JobEntry| match direction {
            // A download streams its ranges to the file: the count of files bounds it.
            Direction::Download => 0,
            Direction::Upload => e.size_bytes.min(large_weight),
        };
        let limits = JobLimits {
            max_files: MAX_FILES_IN_FLIGHT.min(c.max_in_flight_total.max(1)),
            max_weight: c.max_memory_bytes,
        };
        let mut plan = JobPlan::new(stored.entries.clone(), weight, limits);
        plan.replay(&deltas).map_err(|e| {
            Error::new(
                ErrorKind::Checkpoint,
                format!("job {id}: {e}; cancel it with `s3tm cancel {id}`"),
            )
        })?;
        let counts = plan.counts();
        let (progress_tx, progress_rx) = watch::channel(JobProgress {
            files_total: counts.files_total,
            files_done: counts.files_done,
            files_failed: 0,
            files_running: 0,
            bytes_total: counts.bytes_total,
            bytes_done: counts.bytes_done,
            state: JobState::Running,
        });
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (end_tx, end_rx) = watch::channel(None);
        let (in_flight_tx, in_flight_rx) = watch::channel(Vec::new());
        let (events, _) = tokio::sync::broadcast::channel(4096);
        let journal = Journal::start(self.store().clone(), id.clone());
        let runner = JobRun {
            manager: self.clone(),
            id: id.clone(),
            meta,
            stored,
            plan,
            threshold,
            lease: Some(lease),
            journal,
            progress: progress_tx,
            in_flight: in_flight_tx,
            events: events.clone(),
            commands: cmd_rx,
            children: HashMap::new(),
            stopping: HashSet::new(),
            start_over: HashSet::new(),
            started_over: HashSet::new(),
            resumed,
            bytes_transferred: 0,
            unverified: Vec::new(),
        };
        let task = tokio::spawn(runner.run());
        let job_id = id.clone();
        tokio::spawn(async move {
            let result = match task.await {
                Ok(r) => r,
                Err(e) => Err(Error::new(
                    ErrorKind::Panicked,
                    format!("job {job_id} stopped: {e} (a bug in s3tm)"),
                )),
            };
            let _ = end_tx.send(Some(result));
        });
        Ok(JobHandle {
            id,
            direction,
            commands: cmd_tx,
            progress: progress_rx,
            in_flight: in_flight_rx,
            events,
            end: end_rx,
        })
    }
}

/// What a plan found: the files to move, and those it could not take or left out.
#[derive(Debug, Default)]
struct Planned {
    entries: Vec<JobEntry>,
    /// What was seen of each entry besides its size.
    seen: Vec<Seen>,
    problems: Vec<FileProblem>,
    skipped: Vec<String>,
    /// The paths of what was left out on purpose: present, for a sync's deletions.
    skipped_rels: Vec<String>,
    deletions: Vec<Deletion>,
}

/// A file's or object's modification time (seconds since the Unix epoch) and an
/// object's ETag, when known.
#[derive(Debug, Clone, Default)]
struct Seen {
    mtime: Option<i64>,
    etag: Option<String>,
}

/// One deletion of a sync, with what its target was when planned: it is removed only if
/// it still is (a file rewritten, or an object uploaded again, since is left alone).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deletion {
    /// A key (an upload's sync) or a path relative to the directory (a download's).
    target: String,
    size_bytes: u64,
    mtime: Option<i64>,
    etag: Option<String>,
}

impl Planned {
    fn push(&mut self, entry: JobEntry, seen: Seen) {
        self.entries.push(entry);
        self.seen.push(seen);
    }
}

/// Walks `dir` in name order. Blocking.
fn walk_tree(dir: &Path, opts: &JobOptions) -> Result<Planned, Error> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| Error::local(format!("cannot read directory {}", dir.display()), e))?;
    if !meta.is_dir() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} is not a directory", dir.display()),
        ));
    }
    let mut planned = Planned::default();
    let walker = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(opts.follow_symlinks)
        .sort_by_file_name();
    for item in walker {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                let path = e.path().map(|p| rel_display(dir, p)).unwrap_or_default();
                planned.problems.push(FileProblem {
                    path,
                    error: format!(
                        "cannot read it: {}",
                        e.io_error()
                            .map_or_else(|| e.to_string(), ToString::to_string)
                    ),
                });
                continue;
            }
        };
        let shown = rel_display(dir, item.path());
        let Some(rel) = rel_key(dir, item.path()) else {
            planned.problems.push(FileProblem {
                path: shown,
                error: "its name is not valid UTF-8, so it cannot be a key".to_owned(),
            });
            continue;
        };
        let ft = item.file_type();
        let taken = if ft.is_dir() {
            opts.filter.takes(&format!("{rel}/"))
        } else {
            opts.filter.takes(&rel)
        };
        if !taken {
            continue;
        }
        if ft.is_symlink() || !(ft.is_dir() || ft.is_file()) {
            planned.skipped_rels.push(rel.clone());
        }
        if ft.is_symlink() {
            planned.skipped.push(format!(
                "{shown}: a symbolic link, not followed (pass --follow-symlinks to follow links)"
            ));
        } else if ft.is_dir() {
            let empty = std::fs::read_dir(item.path())
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if empty {
                let entry = JobEntry {
                    rel: format!("{rel}/"),
                    size_bytes: 0,
                };
                planned.push(entry, Seen::default());
            }
        } else if ft.is_file() {
            match item.metadata() {
                Ok(m) => {
                    let mtime = m
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .and_then(|d| i64::try_from(d.as_secs()).ok());
                    let entry = JobEntry {
                        rel,
                        size_bytes: m.len(),
                    };
                    planned.push(entry, Seen { mtime, etag: None });
                }
                Err(e) => planned.problems.push(FileProblem {
                    path: shown,
                    error: format!("cannot read it: {e}"),
                }),
            }
        } else {
            planned.skipped.push(format!(
                "{shown}: not a regular file (a device, FIFO or socket)"
            ));
        }
    }
    Ok(planned)
}

/// `path` relative to `dir`, `/`-separated, if every segment is UTF-8.
fn rel_key(dir: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(dir).ok()?;
    let segs: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(segs?.join("/"))
}

fn rel_display(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn not_found(id: &TransferId) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("no saved job {id}; see `s3tm ls`"),
    )
}

fn job_record(meta: &RecordMeta, stored: &JobStored) -> Result<Record, Error> {
    let payload = serde_json::to_vec(stored).map_err(|e| {
        Error::new(
            ErrorKind::Checkpoint,
            format!("cannot encode job {}: {e}", meta.id),
        )
    })?;
    Ok(Record {
        meta: meta.clone(),
        payload_version: JOB_VERSION,
        payload,
        journal: Vec::new(),
    })
}

/// The server job record `rec` was started against.
pub(crate) fn saved_endpoint(rec: &Record) -> Result<SavedEndpoint, Error> {
    Ok(decode_job(rec)?.endpoint)
}

fn decode_job(rec: &Record) -> Result<JobStored, Error> {
    let id = &rec.meta.id;
    if !matches!(rec.meta.kind, RecordKind::Job { .. }) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{id} is a single transfer, not a job"),
        ));
    }
    if rec.payload_version > JOB_VERSION {
        return Err(Error::new(
            ErrorKind::Checkpoint,
            format!(
                "job {id} was saved by a newer s3tm (job format {}, this one reads {JOB_VERSION}); resume it with that version",
                rec.payload_version
            ),
        ));
    }
    serde_json::from_slice(&rec.payload).map_err(|e| {
        Error::new(
            ErrorKind::Checkpoint,
            format!("job {id}'s record cannot be read ({e}); cancel it with `s3tm cancel {id}`"),
        )
    })
}

/// Where each file of job `id` stood when last recorded (done, or failed and why):
/// its record's lists, then its journal in order. Files absent are still to do.
fn file_states(
    id: &TransferId,
    rec: &Record,
    stored: &JobStored,
) -> Result<HashMap<u32, JobFileState>, Error> {
    let mut states: HashMap<u32, JobFileState> = stored
        .done
        .iter()
        .map(|i| (*i, JobFileState::Done))
        .chain(
            stored
                .failed
                .iter()
                .map(|(i, why)| (*i, JobFileState::Failed(why.clone()))),
        )
        .collect();
    for e in &rec.journal {
        for d in decode_entry(id, e)? {
            match d {
                JobDelta::Done { index } => states.insert(index, JobFileState::Done),
                JobDelta::Failed { index, reason } => {
                    states.insert(index, JobFileState::Failed(reason))
                }
            };
        }
    }
    Ok(states)
}

/// The files job `id` has done: those of its record and of its journal.
fn done_files(id: &TransferId, rec: &Record, stored: &JobStored) -> Result<HashSet<u32>, Error> {
    Ok(file_states(id, rec, stored)?
        .into_iter()
        .filter(|(_, s)| *s == JobFileState::Done)
        .map(|(i, _)| i)
        .collect())
}

fn decode_entry(id: &TransferId, e: &JournalEntry) -> Result<Vec<JobDelta>, Error> {
    serde_json::from_slice(&e.data).map_err(|err| {
        Error::new(
            ErrorKind::Checkpoint,
            format!("job {id}'s journal cannot be read ({err}); cancel it with `s3tm cancel {id}`"),
        )
    })
}

/// Appends the job's deltas on a thread of its own: what arrives while an append is
/// being made durable goes in the next one, so a burst of small files costs a few
/// appends, not one each.
struct Journal {
    tx: std::sync::mpsc::Sender<JournalMsg>,
}

enum JournalMsg {
    Delta(JobDelta, u64),
    /// Answered once everything sent before is durable (or failed to be).
    Flush(oneshot::Sender<Result<(), String>>),
    /// The record was just saved whole: earlier failed appends no longer matter.
    Reset,
}

impl Journal {
    fn start(store: Arc<dyn ResumeStore>, id: TransferId) -> Journal {
        let (tx, rx) = std::sync::mpsc::channel::<JournalMsg>();
        std::thread::Builder::new()
            .name(format!("s3tm-job-{id}"))
            .spawn(move || {
                let mut failed: Option<String> = None;
                while let Ok(first) = rx.recv() {
                    let mut batch = Vec::new();
                    let mut done_bytes = 0;
                    let mut flushes = Vec::new();
                    let mut take = |m: JournalMsg| match m {
                        JournalMsg::Delta(d, bytes) => {
                            batch.push(d);
                            done_bytes = bytes;
                        }
                        JournalMsg::Flush(ack) => flushes.push(ack),
                        JournalMsg::Reset => {
                            failed = None;
                        }
                    };
                    take(first);
                    while let Ok(m) = rx.try_recv() {
                        take(m);
                    }
                    if !batch.is_empty() {
                        let entry = JournalEntry {
                            done_bytes,
                            updated_unix_ms: now_unix_ms(),
                            data: serde_json::to_vec(&batch).unwrap_or_default(),
                        };
                        if let Err(e) = store.append(&id, &entry) {
                            tracing::warn!(job = %id, error = %e, "cannot record the files done");
                            failed = Some(e.to_string());
                        }
                    }
                    for ack in flushes {
                        let _ = ack.send(failed.clone().map_or(Ok(()), Err));
                    }
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::warn!(error = %e, "cannot start the job's journal"));
        Journal { tx }
    }

    fn record(&self, d: JobDelta, done_bytes: u64) {
        let _ = self.tx.send(JournalMsg::Delta(d, done_bytes));
    }

    fn reset(&self) {
        let _ = self.tx.send(JournalMsg::Reset);
    }

    async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(JournalMsg::Flush(tx)).is_err() {
            return Err("the journal's thread is gone".to_owned());
        }
        rx.await
            .unwrap_or_else(|_| Err("the journal's thread is gone".to_owned()))
    }
}

/// One file's end as its watcher reports it.
type FileEnd = (usize, Result<TransferOutcome, Error>);

struct JobRun {
    manager: TransferManager,
    id: TransferId,
    meta: RecordMeta,
    stored: JobStored,
    plan: JobPlan,
    threshold: u64,
    lease: Option<Lease>,
    journal: Journal,
    progress: watch::Sender<JobProgress>,
    in_flight: watch::Sender<Vec<FileInFlight>>,
    events: tokio::sync::broadcast::Sender<JobEvent>,
    commands: mpsc::UnboundedReceiver<JobCommand>,
    /// The files in flight and their transfers (none for a directory).
    children: HashMap<usize, TransferHandle>,
    /// Files stopped by a pause or cancel whose end is still to come: it is not theirs.
    stopping: HashSet<usize>,
    /// Large files whose saved transfer found its source (or object) changed: started
    /// over, once per run (a file that keeps changing fails the second time).
    start_over: HashSet<usize>,
    started_over: HashSet<usize>,
    resumed: bool,
    bytes_transferred: u64,
    unverified: Vec<FileProblem>,
}

impl JobRun {
    async fn run(mut self) -> Result<JobOutcome, Error> {
        let started = std::time::Instant::now();
        if self.resumed {
            // Running again: listed so (interrupted, should this process die), with the
            // journal of earlier runs folded in.
            self.save(StoredState::Running).await?;
        }
        let (end_tx, mut ends) = mpsc::unbounded_channel::<FileEnd>();
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        let mut paused = false;
        // Once every handle is dropped, the job runs on to its end.
        let mut commands_open = true;
        loop {
            if !paused {
                self.start_files(&end_tx).await;
            }
            self.publish(if paused {
                JobState::Paused
            } else {
                JobState::Running
            });
            if !paused && self.plan.is_settled() {
                break;
            }
            tokio::select! {
                Some((i, result)) = ends.recv() => self.file_ended(i, result),
                cmd = self.commands.recv(), if commands_open => match cmd {
                    Some(JobCommand::Pause(ack)) => {
                        let r = if paused { Ok(()) } else { self.pause(&mut ends).await };
                        // Its files are paused or stopped whether or not the record
                        // could be saved: the job is paused, and says what it lost.
                        paused = true;
                        // Said before the answer: whoever paused sees it paused.
                        self.publish(JobState::Paused);
                        let _ = ack.send(r);
                    }
                    Some(JobCommand::Resume) if paused => {
                        paused = false;
                        for h in self.children.values() {
                            let _ = h.resume();
                        }
                        self.save(StoredState::Running).await?;
                    }
                    Some(JobCommand::Resume) => {}
                    Some(JobCommand::Cancel) => return self.cancel(&mut ends).await,
                    None if !paused => commands_open = false,
                    None => return Err(Error::new(
                        ErrorKind::Paused,
                        format!("job {} was paused and every handle dropped; resume it with `s3tm resume {}`", self.id, self.id),
                    )),
                },
                _ = tick.tick() => {}
            }
        }
        // Durable or not, the journal matters no more: a job done is forgotten, and one
        // with failures is saved whole just below.
        let _ = self.journal.flush().await;
        let mut failures = self.stored.problems.clone();
        let counts = self.plan.counts();
        failures.extend(self.plan.failures().map(|(i, why)| FileProblem {
            path: self.plan.entries()[i].rel.clone(),
            error: why.to_owned(),
        }));
        let mut deleted = Vec::new();
        if failures.is_empty() {
            // A sync's deletions, once every copy is done (again on a resume: each is
            // done by then, or harmless to do twice).
            for d in self.stored.deletions.clone() {
                match self.delete(&d).await {
                    Ok(None) => deleted.push(d.target),
                    Ok(Some(why)) => self
                        .stored
                        .skipped
                        .push(format!("{}: not deleted: {why}", d.target)),
                    Err(e) => failures.push(FileProblem {
                        path: d.target,
                        error: format!("cannot delete it: {e}"),
                    }),
                }
            }
        }
        if failures.is_empty() {
            let store = self.manager.store().clone();
            let id = self.id.clone();
            off_thread(move || store.remove(&id).map_err(Error::store)).await?;
        } else {
            // Kept, so that running the job again tries the failed files alone.
            self.save(StoredState::Failed).await?;
        }
        self.publish(JobState::Finished);
        drop(self.lease.take());
        Ok(JobOutcome {
            id: self.id.clone(),
            files_total: counts.files_total,
            files_done: counts.files_done,
            bytes_total: counts.bytes_total,
            failures,
            skipped: std::mem::take(&mut self.stored.skipped),
            deleted,
            unverified: std::mem::take(&mut self.unverified),
            bytes_transferred: self.bytes_transferred,
            resumed: self.resumed,
            elapsed: started.elapsed(),
        })
    }

    /// Starts files while the plan allows.
    async fn start_files(&mut self, ends: &mpsc::UnboundedSender<FileEnd>) {
        while let Some(i) = self.plan.next_file() {
            match self.start_file(i).await {
                Ok(Some(handle)) => {
                    self.children.insert(i, handle.clone());
                    let ends = ends.clone();
                    // Waits on the end alone: once the job and its handles are gone, a
                    // file paused with it ends too, and lets go of its checkpoint.
                    let end = handle.end();
                    tokio::spawn(async move {
                        let _ = ends.send((i, end.await));
                    });
                }
                Ok(None) => self.record(i, Ok(()), None),
                Err(e) => self.record(i, Err(e.to_string()), None),
            }
        }
    }

    /// Starts file `i`: `None` when it is done at once (a directory made).
    async fn start_file(&mut self, i: usize) -> Result<Option<TransferHandle>, Error> {
        let entry = self.plan.entries()[i].clone();
        let key = key_for(&self.stored.prefix, &entry.rel);
        let bucket = self.meta.bucket.clone();
        let dir = self.meta.local_path.clone();
        let m = &self.manager;
        if let Some(rel_dir) = entry.rel.strip_suffix('/') {
            return match self.meta.direction {
                Direction::Upload => m
                    .upload_bytes(&bucket, &key, bytes::Bytes::new())
                    .await
                    .map(Some),
                Direction::Download => {
                    let rel_dir = rel_dir.to_owned();
                    off_thread(move || make_dirs(&dir, &rel_dir)).await?;
                    Ok(None)
                }
            };
        }
        let child = TransferId::new(format!("{}-{i}", self.id)).map_err(Error::store)?;
        let large = entry.size_bytes >= self.threshold;
        if self.meta.direction == Direction::Download
            && let Some((parent, _)) = entry.rel.rsplit_once('/')
        {
            // Checked again on every start, a resumed one too: a directory on the way
            // replaced by a link while the job was paused is refused.
            let (d, parent) = (dir.clone(), parent.to_owned());
            off_thread(move || make_dirs(&d, &parent)).await?;
        }
        if large && self.start_over.remove(&i) {
            // What the job moves is what is there now: the parts sent of the old content
            // are aborted with their checkpoint, and the file goes from the start.
            tracing::info!(job = %self.id, file = %entry.rel, "the file changed; starting it over");
            self.forget_file(&child).await?;
        } else if large && let Some(h) = m.handle(&child) {
            // Paused here by an earlier run of this job whose handles were dropped: the
            // same transfer, still holding its lease, goes on.
            h.resume()?;
            return Ok(Some(h));
        }
        if large {
            let store = m.store().clone();
            let c2 = child.clone();
            let saved = off_thread(move || Ok(store.load(&c2).ok().flatten().is_some())).await?;
            if saved {
                match m.resume(&child).await {
                    Ok(h) => return Ok(Some(h)),
                    // The file or object changed since its parts were sent: what the job
                    // moves is what is there now, so the file starts over.
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::SourceChanged | ErrorKind::ObjectChanged
                        ) =>
                    {
                        tracing::info!(job = %self.id, file = %entry.rel, error = %e, "starting the file over");
                        self.forget_file(&child).await?;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let keep = Keep {
            id: Some(child),
            kind: RecordKind::JobFile {
                job: self.id.clone(),
            },
            saved: large,
        };
        let path = dir.join(&entry.rel);
        match self.meta.direction {
            Direction::Upload => m.upload_file_as(&bucket, &key, &path, keep).await.map(Some),
            Direction::Download => m
                .download_file_as(&bucket, &key, &path, keep)
                .await
                .map(Some),
        }
    }

    /// Drops what a large file's saved transfer holds (the transfer stopped, its upload
    /// aborted or partial file removed, its record gone), so that it starts from nothing.
    async fn forget_file(&self, child: &TransferId) -> Result<(), Error> {
        let m = &self.manager;
        if let Some(h) = m.handle(child) {
            let _ = h.cancel();
            let _ = h.end().await;
        }
        match m.cancel_saved(child).await {
            Err(e) if !matches!(e.kind(), ErrorKind::Cancelled | ErrorKind::NotFound) => Err(e),
            _ => Ok(()),
        }
    }

    fn file_ended(&mut self, i: usize, result: Result<TransferOutcome, Error>) {
        self.children.remove(&i);
        if self.stopping.remove(&i) && result.is_err() {
            self.plan.stopped(i);
            return;
        }
        match result {
            Ok(outcome) => {
                self.bytes_transferred += outcome.bytes_transferred;
                if let Verified::Unverified { reason } = &outcome.verified {
                    self.unverified.push(FileProblem {
                        path: self.plan.entries()[i].rel.clone(),
                        error: reason.clone(),
                    });
                }
                self.record(i, Ok(()), Some(outcome.verified));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::SourceChanged | ErrorKind::ObjectChanged
                ) && self.plan.entries()[i].size_bytes >= self.threshold
                    && self.started_over.insert(i) =>
            {
                // A resumed large file whose source (or object) changed since its parts
                // were sent: started over with what is there now.
                self.start_over.insert(i);
                self.plan.stopped(i);
            }
            Err(e) => self.record(i, Err(e.to_string()), None),
        }
    }

    fn record(&mut self, i: usize, result: Result<(), String>, verified: Option<Verified>) {
        let Some(delta) = self.plan.finished(i, result) else {
            return;
        };
        let entry = &self.plan.entries()[i];
        let path = entry.rel.clone();
        let key = key_for(&self.stored.prefix, &entry.rel);
        let event = match &delta {
            JobDelta::Done { .. } => JobEvent::FileDone {
                path,
                key,
                bytes: entry.size_bytes,
                verified,
            },
            JobDelta::Failed { reason, .. } => JobEvent::FileFailed {
                path,
                key,
                error: reason.clone(),
            },
        };
        self.journal.record(delta, self.plan.counts().bytes_done);
        let _ = self.events.send(event);
    }

    fn publish(&self, state: JobState) {
        let c = self.plan.counts();
        let mut files: Vec<FileInFlight> = self
            .children
            .iter()
            .map(|(i, h)| FileInFlight {
                path: self.plan.entries()[*i].rel.clone(),
                bytes_done: h.progress().borrow().bytes_done,
                bytes_total: self.plan.entries()[*i].size_bytes,
            })
            .collect();
        let moving: u64 = files.iter().map(|f| f.bytes_done).sum();
        files.sort_by(|a, b| b.bytes_total.cmp(&a.bytes_total).then(a.path.cmp(&b.path)));
        files.truncate(LARGEST_SHOWN);
        self.in_flight.send_if_modified(|shown| {
            let changed = *shown != files;
            if changed {
                *shown = files;
            }
            changed
        });
        let _ = self.progress.send(JobProgress {
            files_total: c.files_total,
            files_done: c.files_done,
            files_failed: c.files_failed,
            files_running: self.plan.running() as u64,
            bytes_total: c.bytes_total,
            bytes_done: c.bytes_done + moving,
            state,
        });
    }

    /// Carries out one of a sync's deletions: a key, or a file (or empty directory)
    /// under the directory, never through a symbolic link. What changed since the sync
    /// was planned is left alone, and `Some(why)` says so: a source that has the path
    /// again, an object with another ETag, a local file of another size or time.
    async fn delete(&self, d: &Deletion) -> Result<Option<String>, Error> {
        let dir = self.meta.local_path.clone();
        match self.meta.direction {
            Direction::Upload => {
                if let Ok(Some(rel)) = relative_path_for_key(&self.stored.prefix, &d.target) {
                    let source = dir.join(rel);
                    if off_thread(move || Ok(std::fs::symlink_metadata(source).is_ok())).await? {
                        return Ok(Some("the source has it again".to_owned()));
                    }
                }
                let bucket = self.meta.bucket.clone();
                let what = format!("checking s3://{bucket}/{} before deleting it", d.target);
                let head = s3_protocol::HeadObject {
                    bucket: bucket.clone(),
                    key: d.target.clone(),
                    if_match: d.etag.clone().map(s3_protocol::ETag),
                    part_number: None,
                    checksum_mode: false,
                };
                let m = &self.manager;
                match m
                    .one_shot(
                        &what,
                        |s3| head.build(s3),
                        s3_protocol::parse_head_object,
                        None,
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                    Err(e) if e.kind() == ErrorKind::ObjectChanged => {
                        return Ok(Some(
                            "the object was written again since the sync was planned".to_owned(),
                        ));
                    }
                    Err(e) => return Err(e),
                }
                let req = s3_protocol::DeleteObject {
                    bucket,
                    key: d.target.clone(),
                };
                let what = format!("deleting s3://{}/{}", self.meta.bucket, d.target);
                m.one_shot(
                    &what,
                    |s3| req.build(s3),
                    s3_protocol::parse_delete_object,
                    None,
                )
                .await
                .map(|()| None)
            }
            Direction::Download => {
                let d = d.clone();
                off_thread(move || delete_local(&dir, &d)).await
            }
        }
    }

    /// Pauses the large files in flight, stops the small ones, and saves the job.
    async fn pause(&mut self, ends: &mut mpsc::UnboundedReceiver<FileEnd>) -> Result<(), Error> {
        let mut pauses = tokio::task::JoinSet::new();
        for (i, h) in &self.children {
            if h.is_resumable() {
                let h = h.clone();
                let i = *i;
                pauses.spawn(async move { (i, h.pause().await) });
            } else {
                self.stopping.insert(*i);
                let _ = h.cancel();
            }
        }
        while let Some(Ok((i, r))) = pauses.join_next().await {
            // One that ended meanwhile reports its end through its watcher.
            if let Err(e) = r
                && e.kind() != ErrorKind::Finished
            {
                tracing::warn!(job = %self.id, file = i, error = %e, "a file did not pause");
            }
        }
        while !self.stopping.is_empty() {
            match ends.recv().await {
                Some((i, result)) => self.file_ended(i, result),
                None => break,
            }
        }
        self.save(StoredState::Paused).await.map_err(|e| {
            Error::new(
                e.kind(),
                format!(
                    "job {} paused, but its record could not be saved ({e}); resuming it sends again the files done since it was last saved",
                    self.id
                ),
            )
        })
    }

    async fn cancel(
        mut self,
        ends: &mut mpsc::UnboundedReceiver<FileEnd>,
    ) -> Result<JobOutcome, Error> {
        for (i, h) in &self.children {
            self.stopping.insert(*i);
            let _ = h.cancel();
        }
        while !self.stopping.is_empty() {
            match ends.recv().await {
                Some((i, result)) => self.file_ended(i, result),
                None => break,
            }
        }
        let _ = self.journal.flush().await;
        self.manager.cancel_job_files(&self.id).await?;
        let store = self.manager.store().clone();
        let id = self.id.clone();
        off_thread(move || store.remove(&id).map_err(Error::store)).await?;
        self.publish(JobState::Cancelled);
        Err(Error::new(
            ErrorKind::Cancelled,
            format!("job {} was cancelled", self.id),
        ))
    }

    /// Rewrites the job's record whole, its journal folded in (so appends that failed
    /// before no longer matter once this succeeds).
    async fn save(&mut self, state: StoredState) -> Result<(), Error> {
        if let Err(e) = self.journal.flush().await {
            tracing::warn!(job = %self.id, error = %e, "the journal fell behind; saving the job whole");
        }
        self.stored.done = (0..self.plan.entries().len())
            .filter(|i| self.plan.state(*i) == Some(&transfer_core::FileState::Done))
            .map(|i| i as u32)
            .collect();
        self.stored.failed = self
            .plan
            .failures()
            .map(|(i, why)| (i as u32, why.to_owned()))
            .collect();
        let c = self.plan.counts();
        self.meta.state = state;
        self.meta.done_bytes = c.bytes_done;
        self.meta.updated_unix_ms = now_unix_ms();
        let record = job_record(&self.meta, &self.stored)?;
        let store = self.manager.store().clone();
        off_thread(move || store.save(&record).map_err(Error::store)).await?;
        self.journal.reset();
        Ok(())
    }
}

/// Removes the file (or empty directory, for a path ending in `/`) of deletion `d` under
/// `dir`, unless it changed since planned (`Some(why)`); gone already is fine. Refuses a
/// symbolic link anywhere on the way. Blocking.
fn delete_local(dir: &Path, d: &Deletion) -> Result<Option<String>, Error> {
    let segs: Vec<&str> = d.target.split('/').filter(|s| !s.is_empty()).collect();
    let mut at = dir.to_path_buf();
    for (i, seg) in segs.iter().enumerate() {
        at.push(seg);
        let m = match std::fs::symlink_metadata(&at) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::local(format!("cannot read {}", at.display()), e)),
        };
        if m.file_type().is_symlink() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("refused: {} is a symbolic link", at.display()),
            ));
        }
        let last = i + 1 == segs.len();
        if !last {
            if m.is_dir() {
                continue;
            }
            return Ok(None);
        }
        if m.is_dir() {
            return match std::fs::remove_dir(&at) {
                Ok(()) => Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                    Ok(Some("the directory is not empty".to_owned()))
                }
                Err(e) => Err(Error::local(format!("cannot remove {}", at.display()), e)),
            };
        }
        let mtime = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|t| i64::try_from(t.as_secs()).ok());
        if m.len() != d.size_bytes || (d.mtime.is_some() && mtime != d.mtime) {
            return Ok(Some(
                "the file changed since the sync was planned".to_owned(),
            ));
        }
        return std::fs::remove_file(&at)
            .map(|()| None)
            .map_err(|e| Error::local(format!("cannot remove {}", at.display()), e));
    }
    Ok(None)
}

/// Makes `rel` (a `/`-separated path) under `dir`, refusing to go through a symbolic
/// link or anything not a directory on the way (a key's path is never followed out of
/// `dir`). Blocking.
/// Reads the file at `path` through `check`'s hasher (`sync --checksum`).
fn hash_file(path: &Path, check: ContentCheck) -> Result<Sameness, Error> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)
        .map_err(|e| Error::local(format!("reading {} to compare it", path.display()), e))?;
    let mut hasher = check.hasher();
    let mut buf = vec![0u8; HASH_CHUNK];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(hasher.verdict()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Error::local(
                    format!("reading {} to compare it", path.display()),
                    e,
                ));
            }
        }
    }
}

fn make_dirs(dir: &Path, rel: &str) -> Result<(), Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::local(format!("cannot create directory {}", dir.display()), e))?;
    let mut at = dir.to_path_buf();
    let segs: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    for seg in segs {
        at.push(seg);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "refused: {} is a symbolic link, and s3tm does not write through links",
                        at.display()
                    ),
                ));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("{} exists and is not a directory", at.display()),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::create_dir(&at) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(Error::local(
                        format!("cannot create directory {}", at.display()),
                        e,
                    ));
                }
            },
            Err(e) => {
                return Err(Error::local(format!("cannot read {}", at.display()), e));
            }
        }
    }
    Ok(())
}
