//! One function per subcommand. Each returns the exit status or a [`Failure`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use transfer_manager::store::RecordKind;
use transfer_manager::{
    ChecksumAlgorithm, Config, Direction, ErrorKind, ResumableTransfer, SavedEndpoint, SavedState,
    StateStore, TransferId, TransferManager, UnreadableTransfer,
};

use crate::args::{
    Copy, Location, S3Url, human_age, human_bytes, parse_s3_timestamp, resolve_copy,
};
use crate::failure::{Failure, explain};
use crate::output::{Output, direction_name, route};
use crate::run::{Job, Signals, resume_command, run_jobs};
use crate::{CancelArgs, ChecksumArg, CleanArgs, CpArgs, Global, LsArgs, ResumeArgs, exit};

/// Settings as the AWS CLI reads them, then the global flags on top.
fn config(global: &Global) -> Result<Config, Failure> {
    let mut c = Config::from_env(global.profile.as_deref())?;
    if let Some(url) = &global.endpoint_url {
        c.endpoint_url = Some(url.clone());
    }
    if let Some(region) = &global.region {
        c.region = region.clone();
    }
    if global.path_style {
        c.path_style = Some(true);
    }
    if let Some(dir) = &global.state_dir {
        c.state = StateStore::Dir(dir.clone());
    }
    if let Some(pem) = &global.ca_bundle {
        c.ca_bundle = Some(pem.clone());
    }
    if let Some(wait) = global.pause_timeout {
        c.pause_timeout = wait;
    }
    if let Some(rate) = global.bwlimit {
        c.bandwidth_limit_bytes_per_sec = Some(rate);
    }
    Ok(c)
}

fn manager(config: Config) -> Result<TransferManager, Failure> {
    let anonymous = config.credentials.is_none();
    TransferManager::new(config).map_err(|e| {
        let mut message = explain(&e, None);
        if anonymous && e.kind() == ErrorKind::Denied {
            message.push_str(" (no credentials were found, so requests were unsigned)");
        }
        Failure::new(message)
    })
}

/// `s3tm sync SRC DST`.
pub(crate) async fn sync(global: &Global, a: crate::SyncArgs) -> Result<u8, Failure> {
    let src = Location::parse(&a.src).map_err(Failure::usage)?;
    let dst = Location::parse(&a.dst).map_err(Failure::usage)?;
    let tree = crate::jobs::Tree::resolve(&src, &dst).map_err(Failure::usage)?;
    let signals = Signals::new()?;
    let manager = manager(cp_config(global, &a.tuning, true)?)?;
    let out = Arc::new(Output::new(&a.output).with_require_verified(a.require_verified));
    let opts = transfer_manager::SyncOptions {
        job: crate::jobs::job_options(&a.selection)?,
        size_only: a.size_only,
        checksum: a.checksum,
        delete: a.delete,
    };
    crate::jobs::sync(
        &manager,
        global,
        signals,
        tree,
        opts,
        a.dry_run,
        a.require_verified,
        out,
    )
    .await
}

/// The settings of `s3tm cp`: the global ones, then the copy's flags.
fn cp_config(global: &Global, a: &crate::Tuning, recursive: bool) -> Result<Config, Failure> {
    let mut config = config(global)?;
    if let Some(size) = a.part_size {
        config.part_size_bytes = size;
    }
    if let Some(bytes) = a.max_memory {
        config.max_memory_bytes = bytes;
    }
    if let Some(n) = a.concurrency {
        config.set_max_in_flight(n.into());
        if recursive {
            config.max_in_flight_total = n.into();
        }
    }
    if let Some(choice) = a.checksum_algorithm {
        config.checksum = match choice {
            ChecksumArg::Crc32 => Some(ChecksumAlgorithm::Crc32),
            ChecksumArg::Crc32c => Some(ChecksumAlgorithm::Crc32c),
            ChecksumArg::Crc64nvme => Some(ChecksumAlgorithm::Crc64Nvme),
            ChecksumArg::Sha1 => Some(ChecksumAlgorithm::Sha1),
            ChecksumArg::Sha256 => Some(ChecksumAlgorithm::Sha256),
            ChecksumArg::None => None,
        };
    }
    Ok(config)
}

/// `s3tm cp SRC DST`.
pub(crate) async fn cp(global: &Global, mut a: CpArgs) -> Result<u8, Failure> {
    if a.checksum.is_some() {
        a.tuning.checksum_algorithm = a.checksum;
    }
    let src = Location::parse(&a.src).map_err(Failure::usage)?;
    let dst = Location::parse(&a.dst).map_err(Failure::usage)?;
    if a.recursive {
        let tree = crate::jobs::Tree::resolve(&src, &dst).map_err(Failure::usage)?;
        if a.expected_size.is_some() {
            return Err(Failure::usage(
                "--expected-size is for uploads from standard input (`s3tm cp - s3://...`)",
            ));
        }
        let signals = Signals::new()?;
        let manager = manager(cp_config(global, &a.tuning, true)?)?;
        let out = Arc::new(Output::new(&a.output).with_require_verified(a.require_verified));
        let opts = crate::jobs::TreeOptions {
            job: crate::jobs::job_options(&a.selection)?,
            no_resume: a.no_resume,
            require_verified: a.require_verified,
        };
        return crate::jobs::cp_recursive(&manager, global, signals, tree, opts, out).await;
    }
    if a.selection.follow_symlinks || !a.selection.filters.is_empty() {
        return Err(Failure::usage(
            "--follow-symlinks, --include and --exclude are for --recursive copies",
        ));
    }
    let copy = resolve_copy(&src, &dst, Path::is_dir).map_err(Failure::usage)?;
    let mut signals = Signals::new()?;
    let config = cp_config(global, &a.tuning, false)?;
    let anonymous = config.credentials.is_none();
    let manager = manager(config)?;
    let data_on_stdout = match &copy {
        Copy::Download { path, .. } => is_stdout(path),
        Copy::DownloadStdout { .. } => true,
        Copy::Upload { .. } | Copy::UploadStdin { .. } => false,
    };
    let piped = matches!(copy, Copy::UploadStdin { .. } | Copy::DownloadStdout { .. });
    if a.expected_size.is_some() && !matches!(copy, Copy::UploadStdin { .. }) {
        return Err(Failure::usage(
            "--expected-size is for uploads from standard input (`s3tm cp - s3://...`)",
        ));
    }
    let out = Arc::new(
        Output::new(&a.output)
            .with_stdout_for_data(data_on_stdout)
            .with_require_verified(a.require_verified),
    );

    let (direction, url, path) = match copy {
        Copy::Upload { path, to } => (Direction::Upload, to, path),
        Copy::UploadStdin { to } => (Direction::Upload, to, PathBuf::from("-")),
        Copy::DownloadStdout { from } => (Direction::Download, from, PathBuf::from("-")),
        Copy::Download { from, path } => {
            if a.dst.ends_with('/') && !path.parent().is_none_or(Path::exists) {
                let dir = path.parent().unwrap_or(Path::new("."));
                std::fs::create_dir_all(dir).map_err(|e| {
                    Failure::new(format!("cannot create directory {}: {e}", dir.display()))
                })?;
            }
            (Direction::Download, from, path)
        }
    };
    let S3Url { bucket, key } = url;

    if piped {
        out.note(match direction {
            Direction::Upload => {
                "reading standard input: a pipe cannot be resumed; if the upload fails or is interrupted, its multipart upload is aborted"
            }
            Direction::Download => {
                "writing to standard output: a pipe cannot be resumed, and bytes written cannot be taken back (a mismatch is reported at the end, exit status 1)"
            }
        });
    }
    let started = async {
        if piped {
            return Ok(start_piped(&manager, direction, &bucket, &key, a.expected_size).await?);
        }
        let saved = manager.find_resumable(direction, &bucket, &key, &path)?;
        Ok::<_, Failure>(match saved {
            Some(t) if !a.no_resume => {
                out.note(&format!(
                    "resuming the interrupted {} {} from {} of {} (pass --no-resume to start over)",
                    direction_name(direction),
                    t.id,
                    human_bytes(t.bytes_done),
                    human_bytes(t.bytes_total),
                ));
                manager.resume(&t.id).await.map_err(|e| {
                    let mut m = explain(&e, None);
                    if matches!(
                        e.kind(),
                        ErrorKind::SourceChanged | ErrorKind::ObjectChanged
                    ) {
                        m.push_str("; run the same command with --no-resume to start over");
                    }
                    Failure::new(m)
                })?
            }
            Some(t) => {
                out.note(&format!(
                    "--no-resume: cancelling the earlier {} {} ({} of {} done) to start over",
                    direction_name(direction),
                    t.id,
                    human_bytes(t.bytes_done),
                    human_bytes(t.bytes_total),
                ));
                manager.cancel_saved(&t.id).await?;
                start(&manager, direction, &bucket, &key, &path).await?
            }
            None => start(&manager, direction, &bucket, &key, &path).await?,
        })
    };
    // Starting can wait on the destination: a FIFO opens only once it has a reader.
    let started = tokio::select! {
        started = started => started,
        () = signals.next() => Err(Failure::new(format!(
            "interrupted before the transfer started (nothing was transferred){}",
            if direction == Direction::Download && stream_kind(&path) == "a FIFO" {
                format!("; nothing had opened the FIFO {} for reading", path.display())
            } else {
                String::new()
            }
        ))),
    };
    let handle = match started {
        Ok(handle) => handle,
        Err(failure) => {
            // With --json a failure before the transfer has an id still ends the stream.
            out.event(
                "failed",
                json!({
                    "id": null,
                    "direction": direction_name(direction),
                    "bucket": bucket,
                    "key": key,
                    "path": path,
                    "error": failure.to_string(),
                }),
            );
            return Err(failure);
        }
    };
    if direction == Direction::Download && !handle.is_resumable() && !piped {
        out.note(&format!(
            "{} is {}: the download streams into it directly, without a partial file, so it cannot be resumed",
            path.display(),
            stream_kind(&path)
        ));
    }
    let job = Job {
        handle,
        bucket,
        key,
        path,
    };
    let result = run_jobs(
        std::slice::from_ref(&manager),
        global,
        signals,
        vec![job],
        out,
    )
    .await;
    if anonymous && result.is_err() {
        eprintln!(
            "s3tm: note: no credentials were found (AWS_ACCESS_KEY_ID, --profile, \
             ~/.aws/credentials), so requests were sent unsigned"
        );
    }
    result
}

/// Whether `path` is this process's stdout, when that is a device or pipe (as
/// `/dev/stdout` is): the download then streams there.
fn is_stdout(path: &Path) -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(dest) = std::fs::metadata(path) else {
        return false;
    };
    let Ok(stdout) = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
    else {
        return false;
    };
    let t = dest.file_type();
    (t.is_char_device() || t.is_fifo()) && dest.dev() == stdout.dev() && dest.ino() == stdout.ino()
}

/// "a character device" or "a FIFO", for the note on a streamed download.
fn stream_kind(path: &Path) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path).map(|m| m.file_type()) {
        Ok(t) if t.is_fifo() => "a FIFO",
        Ok(t) if t.is_char_device() => "a character device",
        _ => "a character device or FIFO",
    }
}

/// Starts a copy from standard input or to standard output.
async fn start_piped(
    manager: &TransferManager,
    direction: Direction,
    bucket: &str,
    key: &str,
    expected_size_bytes: Option<u64>,
) -> Result<transfer_manager::TransferHandle, transfer_manager::Error> {
    match direction {
        Direction::Upload => {
            let stdin = tokio::io::stdin();
            manager
                .upload_stream(bucket, key, stdin, expected_size_bytes)
                .await
        }
        Direction::Download => {
            let stdout = tokio::io::stdout();
            manager.download_to_writer(bucket, key, stdout).await
        }
    }
}

async fn start(
    manager: &TransferManager,
    direction: Direction,
    bucket: &str,
    key: &str,
    path: &Path,
) -> Result<transfer_manager::TransferHandle, Failure> {
    let started = match direction {
        Direction::Upload => manager.upload_file(bucket, key, path).await,
        Direction::Download => manager.download_file(bucket, key, path).await,
    };
    Ok(started?)
}

/// Managers for saved transfers: each transfer continues against the server it was
/// started on, unless `--endpoint-url` or `--region` name another (which the library then
/// refuses, saying why).
struct Managers {
    config: Config,
    /// The command line's manager first, then one per other server met.
    all: Vec<(SavedEndpoint, TransferManager)>,
    explicit: bool,
}

impl Managers {
    fn new(global: &Global, max_memory: Option<u64>) -> Result<Managers, Failure> {
        let mut config = config(global)?;
        if let Some(bytes) = max_memory {
            config.max_memory_bytes = bytes;
        }
        let here = SavedEndpoint::of(&config);
        let first = manager(config.clone())?;
        Ok(Managers {
            config,
            all: vec![(here, first)],
            explicit: global.endpoint_url.is_some() || global.region.is_some(),
        })
    }

    /// The command line's manager.
    fn first(&self) -> &TransferManager {
        &self.all[0].1
    }

    /// The manager for saved transfer `id`.
    fn for_saved(&mut self, id: &TransferId) -> Result<TransferManager, Failure> {
        let saved = match self.first().saved_endpoint(id) {
            // An unreadable record: the first manager reports it when it tries.
            Ok(Some(saved)) if !self.explicit => saved,
            _ => return Ok(self.first().clone()),
        };
        if let Some((_, m)) = self.all.iter().find(|(e, _)| e.same_server(&saved)) {
            return Ok(m.clone());
        }
        let mut c = self.config.clone();
        c.endpoint_url.clone_from(&saved.endpoint_url);
        c.region.clone_from(&saved.region);
        if saved.path_style.is_some() {
            c.path_style = saved.path_style;
        }
        let m = manager(c)?;
        self.all.push((saved, m.clone()));
        Ok(m)
    }

    fn list(&self) -> Vec<TransferManager> {
        self.all.iter().map(|(_, m)| m.clone()).collect()
    }
}

/// `s3tm resume ID` / `s3tm resume --all`.
pub(crate) async fn resume(global: &Global, a: ResumeArgs) -> Result<u8, Failure> {
    let signals = Signals::new()?;
    let mut managers = Managers::new(global, a.max_memory)?;
    let manager = managers.first().clone();
    let out = Arc::new(Output::new(&a.output).with_require_verified(a.require_verified));
    let (saved, unreadable) = saved_and_unreadable(&manager)?;
    // A record that cannot be read cannot be resumed: say so, and why.
    let mut failed = 0;
    for u in &unreadable {
        if a.id.as_deref().is_none_or(|id| id == u.id.as_str()) {
            let line = format!(
                "transfer {} cannot be resumed: {}; `s3tm cancel {}` removes it",
                u.id, u.error, u.id
            );
            if a.all {
                out.error(&line);
                failed += 1;
            } else {
                return Err(Failure::new(line));
            }
        }
    }
    if let Some(id) = &a.id {
        let id = parse_id(id)?;
        if saved.iter().any(|t| t.id == id && is_job(t)) {
            let manager = managers.for_saved(&id)?;
            return crate::jobs::resume_job(
                &manager,
                global,
                signals,
                &id,
                out,
                a.require_verified,
            )
            .await;
        }
    }
    let (jobs, saved): (Vec<_>, Vec<_>) = saved.into_iter().partition(is_job);
    if a.all {
        for j in jobs.iter().filter(|t| t.state != SavedState::Running) {
            out.note(&format!(
                "job {} is resumed on its own: `{}`",
                j.id,
                resume_command(global, j.id.as_str())
            ));
        }
    }
    let chosen: Vec<ResumableTransfer> = match &a.id {
        Some(id) => {
            let id = parse_id(id)?;
            match saved.into_iter().find(|t| t.id == id) {
                Some(t) => vec![t],
                None => {
                    return Err(Failure::new(format!(
                        "no saved transfer {id}; `{}` lists them",
                        list_command(global)
                    )));
                }
            }
        }
        None => saved
            .into_iter()
            .filter(|t| t.state != SavedState::Running)
            .collect(),
    };
    if chosen.is_empty() && failed == 0 {
        out.note("nothing to resume");
        return Ok(exit::DONE);
    }
    let mut jobs = Vec::new();
    for t in chosen {
        out.note(&format!(
            "resuming {} {} from {} of {}",
            direction_name(t.direction),
            t.id,
            human_bytes(t.bytes_done),
            human_bytes(t.bytes_total),
        ));
        let resumed = match managers.for_saved(&t.id) {
            Ok(m) => m.resume(&t.id).await,
            Err(f) => return Err(f),
        };
        match resumed {
            Ok(handle) => jobs.push(Job {
                handle,
                bucket: t.bucket,
                key: t.key,
                path: t.local_path,
            }),
            Err(e) => {
                let mut m = explain(&e, None);
                if matches!(
                    e.kind(),
                    ErrorKind::SourceChanged | ErrorKind::ObjectChanged
                ) {
                    m.push_str(&format!(
                        "; `s3tm cancel {}` forgets it, then copy again",
                        t.id
                    ));
                }
                if a.all {
                    out.error(&format!("{}: {m}", t.id));
                    failed += 1;
                } else {
                    return Err(Failure::new(m));
                }
            }
        }
    }
    let code = if jobs.is_empty() {
        Ok(exit::DONE)
    } else {
        run_jobs(&managers.list(), global, signals, jobs, out).await
    };
    match code {
        Ok(code) if failed > 0 && code == exit::DONE => Err(Failure::new(format!(
            "{failed} transfer(s) could not be resumed"
        ))),
        other => other,
    }
}

fn list_command(global: &Global) -> String {
    resume_command(global, "").replace(" resume ", " ls")
}

fn is_job(t: &ResumableTransfer) -> bool {
    matches!(t.kind, RecordKind::Job { .. })
}

fn parse_id(id: &str) -> Result<TransferId, Failure> {
    TransferId::new(id).map_err(|e| Failure::usage(format!("`{id}` is not a transfer id: {e}")))
}

/// Every saved transfer; unreadable records are reported on stderr.
fn saved_transfers(manager: &TransferManager) -> Result<Vec<ResumableTransfer>, Failure> {
    let (saved, unreadable) = saved_and_unreadable(manager)?;
    for u in unreadable {
        eprintln!("s3tm: warning: transfer {}: {}", u.id, u.error);
    }
    Ok(saved)
}

/// The saved transfers, oldest first, and the records that cannot be read.
fn saved_and_unreadable(
    manager: &TransferManager,
) -> Result<(Vec<ResumableTransfer>, Vec<UnreadableTransfer>), Failure> {
    let (mut saved, unreadable) = manager.list_resumable()?;
    // The large files of a job are listed, resumed and cancelled with their job.
    saved.retain(|t| !matches!(t.kind, RecordKind::JobFile { .. }));
    saved.sort_by_key(|t| t.created_unix_ms);
    Ok((saved, unreadable))
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `s3tm ls`.
pub(crate) fn ls(global: &Global, a: &LsArgs) -> Result<u8, Failure> {
    let manager = manager(config(global)?)?;
    if let Some(id) = &a.id {
        return ls_job(&manager, &parse_id(id)?, a.json);
    }
    let saved = saved_transfers(&manager)?;
    let now = now_unix_ms();
    let age = |t: &ResumableTransfer| Duration::from_millis(now.saturating_sub(t.created_unix_ms));
    if a.json {
        for t in &saved {
            let job = is_job(t).then(|| manager.saved_job(&t.id).ok()).flatten();
            let mut line = json!({
                    "id": t.id.as_str(),
                    "direction": direction_name(t.direction),
                    "bucket": t.bucket,
                    "key": t.key,
                    "path": t.local_path,
                    "bytes_done": t.bytes_done,
                    "bytes_total": t.bytes_total,
                    "state": t.state.as_str(),
                    "age_secs": age(t).as_secs(),
                    "created_unix_ms": t.created_unix_ms,
                    "updated_unix_ms": t.updated_unix_ms,
                    "kind": if is_job(t) { "job" } else { "transfer" },
            });
            if let Some(j) = job {
                line["files_done"] = j.counts.files_done.into();
                line["files_total"] = j.counts.files_total.into();
            }
            say!("{line}");
        }
        return Ok(exit::DONE);
    }
    if saved.is_empty() {
        eprintln!("s3tm: no paused or interrupted transfers");
        return Ok(exit::DONE);
    }
    let rows: Vec<[String; 6]> = saved
        .iter()
        .map(|t| {
            let percent = (t.bytes_done * 100)
                .checked_div(t.bytes_total)
                .map_or(String::new(), |p| format!(" {p}%"));
            let (direction, files) = match manager.saved_job(&t.id) {
                Ok(j) if is_job(t) => (
                    format!("{} (job)", direction_name(t.direction)),
                    format!("{}/{} files, ", j.counts.files_done, j.counts.files_total),
                ),
                _ => (direction_name(t.direction).to_owned(), String::new()),
            };
            [
                t.id.to_string(),
                direction,
                t.state.to_string(),
                format!(
                    "{files}{}/{}{percent}",
                    human_bytes(t.bytes_done),
                    human_bytes(t.bytes_total)
                ),
                human_age(age(t)),
                route(t.direction, &t.bucket, &t.key, &t.local_path),
            ]
        })
        .collect();
    let header = ["ID", "DIRECTION", "STATE", "DONE", "AGE", "TRANSFER"].map(str::to_owned);
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        say!("{line}");
    }
    Ok(exit::DONE)
}

/// `s3tm ls ID`: the files of job `id`, one line each.
fn ls_job(manager: &TransferManager, id: &TransferId, json: bool) -> Result<u8, Failure> {
    use transfer_manager::JobFileState;
    let files = manager.job_files(id)?;
    for f in &files {
        let (state, error) = match &f.state {
            JobFileState::Done => ("done", None),
            JobFileState::Failed(why) => ("failed", Some(why.as_str())),
            JobFileState::Pending => ("to do", None),
        };
        if json {
            say!(
                "{}",
                json!({"path": f.path, "key": f.key, "bytes": f.size_bytes, "state": state, "error": error})
            );
        } else {
            let why = error.map(|e| format!("  ({e})")).unwrap_or_default();
            say!(
                "{state:<7} {:>10}  {}{why}",
                human_bytes(f.size_bytes),
                f.path
            );
        }
    }
    Ok(exit::DONE)
}

/// `s3tm cancel ID | --all | s3://bucket/key`.
pub(crate) async fn cancel(global: &Global, a: CancelArgs) -> Result<u8, Failure> {
    let mut managers = Managers::new(global, None)?;
    let manager = managers.first().clone();
    let what = |t: &ResumableTransfer| match t.direction {
        _ if is_job(t) => format!(
            "job {} of {} (the multipart uploads of its files were aborted and their partial files removed; files done stay)",
            t.id,
            route(t.direction, &t.bucket, &t.key, &t.local_path)
        ),
        Direction::Upload => format!(
            "upload {} of {} (its multipart upload was aborted)",
            t.id,
            route(t.direction, &t.bucket, &t.key, &t.local_path)
        ),
        Direction::Download => format!(
            "download {} of {} (its partial file was removed)",
            t.id,
            route(t.direction, &t.bucket, &t.key, &t.local_path)
        ),
    };
    if a.all {
        let saved = saved_transfers(&manager)?;
        let (running, idle): (Vec<_>, Vec<_>) = saved
            .into_iter()
            .partition(|t| t.state == SavedState::Running);
        for t in &running {
            eprintln!(
                "s3tm: skipping {} {}: it is running",
                direction_name(t.direction),
                t.id
            );
        }
        if idle.is_empty() {
            eprintln!("s3tm: nothing to cancel");
            return Ok(exit::DONE);
        }
        let mut results = Vec::with_capacity(idle.len());
        for t in &idle {
            let cancelled = match managers.for_saved(&t.id) {
                Ok(m) if is_job(t) => m
                    .cancel_saved_job(&t.id)
                    .await
                    .map_err(|e| explain(&e, None)),
                Ok(m) => m.cancel_saved(&t.id).await.map_err(|e| explain(&e, None)),
                Err(f) => Err(f.to_string()),
            };
            results.push((t.id.to_string(), what(t), cancelled));
        }
        return report_cancels(results);
    }
    let target = a.target.as_deref().unwrap_or_default();
    if target.starts_with("s3://") {
        let url = S3Url::parse(target).map_err(Failure::usage)?;
        let results = manager.cancel_object(&url.bucket, &url.key).await?;
        if results.is_empty() {
            return Err(Failure::new(format!(
                "no saved transfer of {url}; `{}` lists them",
                list_command(global)
            )));
        }
        return report_cancels(results.into_iter().map(|(id, result)| {
            let what = format!("{id} of {url}");
            (id.to_string(), what, result.map_err(|e| explain(&e, None)))
        }));
    }
    let id = parse_id(target)?;
    let (saved, unreadable) = saved_and_unreadable(&manager)?;
    let known = saved.iter().find(|t| t.id == id).cloned();
    let corrupt = unreadable.iter().any(|u| u.id == id);
    let manager = managers.for_saved(&id)?;
    let cancelled = match &known {
        Some(t) if is_job(t) => manager.cancel_saved_job(&id).await,
        _ => manager.cancel_saved(&id).await,
    };
    cancelled.map_err(|e| {
        let mut m = explain(&e, None);
        if e.kind() == ErrorKind::NotFound && !m.contains("s3tm ls") {
            m.push_str(&format!("; `{}` lists them", list_command(global)));
        }
        Failure::new(m)
    })?;
    match known {
        Some(t) => say!("cancelled {}", what(&t)),
        None if corrupt => say!(
            "cancelled {id}: its unreadable checkpoint was removed; what it named may remain: \
             a partial file next to a download's destination (`*.s3tm-partial`, remove it by \
             hand), or an unfinished multipart upload (`s3tm clean s3://BUCKET` finds it)"
        ),
        None => say!("cancelled {id}"),
    }
    Ok(exit::DONE)
}

/// `s3tm clean s3://bucket[/prefix] [--older-than AGE] [--dry-run]`.
pub(crate) async fn clean(global: &Global, a: CleanArgs) -> Result<u8, Failure> {
    let url = S3Url::parse(&a.url).map_err(Failure::usage)?;
    let manager = manager(config(global)?)?;
    let prefix = (!url.key.is_empty()).then_some(url.key.as_str());
    let uploads = manager.list_multipart_uploads(&url.bucket, prefix).await?;
    // Uploads s3tm can still resume are left alone: aborting one would throw its parts
    // away behind the transfer's back. `s3tm cancel` is the way to drop those.
    // A job's large files count too (listed with their job elsewhere, so asked for here).
    let (all, _) = manager.list_resumable()?;
    let saved: Vec<ResumableTransfer> = all
        .into_iter()
        .filter(|t| t.direction == Direction::Upload && t.bucket == url.bucket)
        .collect();
    let now_secs = (now_unix_ms() / 1000) as i64;
    let (mut aborted, mut kept, mut failed) = (0, 0, 0);
    for u in &uploads {
        let object = format!("s3://{}/{}", url.bucket, u.key);
        let started = u.initiated.as_deref().unwrap_or("at an unknown time");
        if let Some(mine) = saved.iter().find(|t| t.key == u.key) {
            // A job's file is cancelled with its job.
            let owner = match &mine.kind {
                RecordKind::JobFile { job } => job.clone(),
                _ => mine.id.clone(),
            };
            say!(
                "kept {object} (upload {}): s3tm transfer {} can resume it; `s3tm cancel {owner}` drops it",
                u.upload_id,
                mine.id
            );
            kept += 1;
            continue;
        }
        if let Some(min_age) = Some(a.older_than).filter(|d| !d.is_zero()) {
            let age = u
                .initiated
                .as_deref()
                .and_then(parse_s3_timestamp)
                .map(|t| now_secs.saturating_sub(t));
            match age {
                Some(age) if age >= min_age.as_secs() as i64 => {}
                Some(_) => continue,
                None => {
                    say!(
                        "kept {object} (upload {}): its start time is unknown",
                        u.upload_id
                    );
                    kept += 1;
                    continue;
                }
            }
        }
        if a.dry_run {
            say!(
                "would abort {object} (upload {}, started {started})",
                u.upload_id
            );
            aborted += 1;
            continue;
        }
        match manager
            .abort_multipart_upload(&url.bucket, &u.key, &u.upload_id)
            .await
        {
            Ok(()) => {
                say!(
                    "aborted {object} (upload {}, started {started})",
                    u.upload_id
                );
                aborted += 1;
            }
            Err(e) => {
                eprintln!("s3tm: error: {}", explain(&e, None));
                failed += 1;
            }
        }
    }
    let verb = if a.dry_run { "would abort" } else { "aborted" };
    eprintln!(
        "s3tm: {} unfinished upload(s) in s3://{}/{}: {verb} {aborted}, kept {kept}",
        uploads.len(),
        url.bucket,
        url.key
    );
    match failed {
        0 => Ok(exit::DONE),
        n => Err(Failure::new(format!("{n} abort(s) failed"))),
    }
}

/// Prints each cancel's outcome (`id`, what was cancelled, the error) and fails when any
/// did.
fn report_cancels(
    results: impl IntoIterator<Item = (String, String, Result<(), String>)>,
) -> Result<u8, Failure> {
    let (mut all, mut failed) = (0, 0);
    for (id, what, result) in results {
        all += 1;
        match result {
            Ok(()) => say!("cancelled {what}"),
            Err(e) => {
                eprintln!("s3tm: error: {id}: {e}");
                failed += 1;
            }
        }
    }
    match failed {
        0 => Ok(exit::DONE),
        n => Err(Failure::new(format!("{n} of {all} cancels failed"))),
    }
}
