//! `s3tm cp --recursive`: a directory or prefix as one job, and the job's end.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use transfer_manager::{
    Direction, ErrorKind, JobEvent, JobHandle, JobOptions, JobOutcome, PathFilter, SyncOptions,
    TransferId, TransferManager,
};

use crate::args::{Location, S3Url, human_bytes};
use crate::failure::{Failure, explain};
use crate::output::{Output, direction_name};
use crate::run::{Signals, resume_command};
use crate::{Global, exit};

/// What `cp --recursive SRC DST` moves.
pub(crate) enum Tree {
    Upload { dir: PathBuf, to: S3Url },
    Download { from: S3Url, dir: PathBuf },
}

impl Tree {
    pub(crate) fn resolve(src: &Location, dst: &Location) -> Result<Tree, String> {
        match (src, dst) {
            (Location::Local(dir), Location::S3(to)) => Ok(Tree::Upload {
                dir: dir.clone(),
                to: to.clone(),
            }),
            (Location::S3(from), Location::Local(dir)) => Ok(Tree::Download {
                from: from.clone(),
                dir: dir.clone(),
            }),
            _ => Err(
                "--recursive copies a directory to s3://bucket/prefix/ or a prefix to a directory"
                    .to_owned(),
            ),
        }
    }
}

impl Tree {
    /// Its direction, bucket, prefix and directory; an upload's source must be a
    /// directory.
    fn parts(&self) -> Result<(Direction, &str, &str, &PathBuf), Failure> {
        let parts = match self {
            Tree::Upload { dir, to } => (Direction::Upload, &*to.bucket, &*to.key, dir),
            Tree::Download { from, dir } => (Direction::Download, &*from.bucket, &*from.key, dir),
        };
        if parts.0 == Direction::Upload && !parts.3.is_dir() {
            return Err(Failure::usage(format!(
                "{} is not a directory (a directory job copies a directory)",
                parts.3.display()
            )));
        }
        Ok(parts)
    }
}

/// The job options of `--follow-symlinks` and the `--include`/`--exclude` rules given.
pub(crate) fn job_options(selection: &crate::Selection) -> Result<JobOptions, Failure> {
    let mut filter = PathFilter::default();
    for (include, glob) in &selection.filters {
        filter = if *include {
            filter.include(glob)
        } else {
            filter.exclude(glob)
        }
        .map_err(|e| Failure::usage(e.to_string()))?;
    }
    Ok(JobOptions {
        follow_symlinks: selection.follow_symlinks,
        filter,
    })
}

/// Options of `cp --recursive`.
pub(crate) struct TreeOptions {
    pub(crate) job: JobOptions,
    pub(crate) no_resume: bool,
    pub(crate) require_verified: bool,
}

/// `s3tm cp --recursive SRC DST`: the same command again continues the job.
pub(crate) async fn cp_recursive(
    manager: &TransferManager,
    global: &Global,
    mut signals: Signals,
    tree: Tree,
    opts: TreeOptions,
    out: Arc<Output>,
) -> Result<u8, Failure> {
    let (direction, bucket, prefix, dir) = tree.parts()?;
    let started = async {
        if let Some(saved) = manager.find_job(direction, bucket, prefix, dir, &opts.job)? {
            if !opts.no_resume {
                out.note(&format!(
                    "resuming the interrupted job {}: {} of {} files done (pass --no-resume to start over)",
                    saved.id, saved.counts.files_done, saved.counts.files_total
                ));
                return Ok::<_, Failure>(manager.resume_job(&saved.id).await?);
            }
            out.note(&format!(
                "--no-resume: cancelling the earlier job {} to start over",
                saved.id
            ));
            manager.cancel_saved_job(&saved.id).await?;
        }
        Ok(match &tree {
            Tree::Upload { dir, to } => {
                manager
                    .upload_directory(dir, &to.bucket, &to.key, opts.job.clone())
                    .await?
            }
            Tree::Download { from, dir } => {
                manager
                    .download_prefix(&from.bucket, &from.key, dir, opts.job.clone())
                    .await?
            }
        })
    };
    let handle = tokio::select! {
        h = started => h?,
        () = signals.next() => {
            return Err(Failure::new("interrupted while planning the job (nothing was transferred)"));
        }
    };
    run_job(global, &mut signals, handle, out, opts.require_verified).await
}

/// `s3tm sync SRC DST`: plans, prints what `--delete` removes (and with `--dry-run`
/// everything, then stops), and runs the copies and deletions as one job.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn sync(
    manager: &TransferManager,
    global: &Global,
    mut signals: Signals,
    tree: Tree,
    opts: SyncOptions,
    dry_run: bool,
    require_verified: bool,
    out: Arc<Output>,
) -> Result<u8, Failure> {
    let (direction, bucket, prefix, dir) = tree.parts()?;
    if !dry_run && let Some(saved) = manager.find_sync(direction, bucket, prefix, dir, &opts)? {
        out.note(&format!(
            "finishing the interrupted sync {} first ({} of {} files done), then comparing again",
            saved.id, saved.counts.files_done, saved.counts.files_total
        ));
        let handle = manager.resume_job(&saved.id).await?;
        let code = run_job(global, &mut signals, handle, out.clone(), require_verified).await?;
        if code != exit::DONE {
            return Ok(code);
        }
    }
    let plan = manager
        .plan_sync(direction, bucket, prefix, dir, &opts)
        .await?;
    let verb = direction_name(direction);
    if opts.checksum {
        for p in &plan.uncompared {
            out.note(&format!(
                "{}: copied, as its content could not be compared: {}",
                p.path, p.error
            ));
        }
        out.note(&format!(
            "compared {} files of the same size by content; {} could not be compared and are copied",
            plan.compared,
            plan.uncompared.len()
        ));
    }
    if dry_run {
        for e in &plan.copy {
            say!(
                "(dry run) {verb}: {} ({})",
                e.rel,
                human_bytes(e.size_bytes)
            );
        }
    }
    for target in &plan.delete {
        let shown = match direction {
            Direction::Upload => format!("s3://{bucket}/{target}"),
            Direction::Download => dir.join(target).display().to_string(),
        };
        say!("{}delete: {shown}", if dry_run { "(dry run) " } else { "" });
    }
    if dry_run {
        for p in plan.problems() {
            out.error(&format!("{}: {}", p.path, p.error));
        }
        let bytes: u64 = plan.copy.iter().map(|e| e.size_bytes).sum();
        out.summary(&format!(
            "(dry run) {} files to {verb} ({}), {} to delete",
            plan.copy.len(),
            human_bytes(bytes),
            plan.delete.len()
        ));
        return Ok(exit::DONE);
    }
    if plan.copy.is_empty() && plan.delete.is_empty() && plan.problems().is_empty() {
        out.summary("nothing to sync: both sides hold the same files");
        return Ok(exit::DONE);
    }
    let handle = manager.start_sync(plan).await?;
    run_job(global, &mut signals, handle, out, require_verified).await
}

/// Continues saved job `id` (`s3tm resume ID`).
pub(crate) async fn resume_job(
    manager: &TransferManager,
    global: &Global,
    mut signals: Signals,
    id: &TransferId,
    out: Arc<Output>,
    require_verified: bool,
) -> Result<u8, Failure> {
    let saved = manager.saved_job(id)?;
    out.note(&format!(
        "resuming job {id}: {} of {} files done",
        saved.counts.files_done, saved.counts.files_total
    ));
    let handle = manager.resume_job(id).await?;
    run_job(global, &mut signals, handle, out, require_verified).await
}

/// Runs a job to its end, or pauses it on Ctrl-C / SIGTERM (exit 130).
async fn run_job(
    global: &Global,
    signals: &mut Signals,
    handle: JobHandle,
    out: Arc<Output>,
    require_verified: bool,
) -> Result<u8, Failure> {
    let id = handle.id().clone();
    let direction = handle.direction();
    let mut progress = handle.progress();
    let start = *progress.borrow();
    out.note(&format!(
        "{} job {id}: {} files, {}",
        direction_name(direction),
        start.files_total,
        human_bytes(start.bytes_total)
    ));
    out.event(
        "started",
        json!({
            "id": id.as_str(),
            "direction": direction_name(direction),
            "files_total": start.files_total,
            "files_done": start.files_done,
            "bytes_total": start.bytes_total,
            "bytes_done": start.bytes_done,
        }),
    );
    let bar = out.bar(
        &files_label(start.files_done, start.files_total),
        start.bytes_done,
        start.bytes_total,
    );
    let mut events = handle.events();
    let in_flight = handle.in_flight();
    let label = |done: u64, total: u64| {
        let mut l = files_label(done, total);
        for f in in_flight.borrow().iter() {
            let pct = (f.bytes_done * 100)
                .checked_div(f.bytes_total)
                .unwrap_or(100);
            l.push_str(&format!(" | {} {pct}%", f.path));
        }
        l
    };
    let join = handle.clone().join();
    tokio::pin!(join);
    let result = loop {
        tokio::select! {
            r = &mut join => {
                // What ended just before the end is said too.
                while let Ok(e) = events.try_recv() {
                    file_event(&out, &id, &e);
                }
                break r;
            }
            Ok(e) = events.recv() => file_event(&out, &id, &e),
            changed = progress.changed() => {
                if changed.is_err() {
                    continue;
                }
                let p = *progress.borrow_and_update();
                bar.set_position(p.bytes_done);
                bar.set_message(label(p.files_done, p.files_total));
            }
            () = signals.next() => {
                out.note("pausing the job (the files in flight save their checkpoints) ...");
                let paused = tokio::select! {
                    r = handle.pause() => r,
                    () = signals.next() => {
                        bar.abandon();
                        out.error("interrupted again: exiting now; the last checkpoints written still resume");
                        return Ok(exit::PAUSED);
                    }
                };
                bar.abandon();
                return match paused {
                    Ok(()) => {
                        let p = *handle.progress().borrow();
                        out.note(&format!(
                            "paused job {id}: {} of {} files done; `{}` or the same command continues it",
                            p.files_done,
                            p.files_total,
                            resume_command(global, id.as_str())
                        ));
                        out.event("paused", json!({"id": id.as_str(), "files_done": p.files_done, "files_total": p.files_total}));
                        Ok(exit::PAUSED)
                    }
                    // It ended meanwhile: its end is the answer.
                    Err(e) if e.kind() == ErrorKind::Finished => {
                        report(&out, &id, direction, handle.join().await, require_verified)
                    }
                    Err(e) => Err(Failure::new(format!("job {id} could not pause: {}", explain(&e, None)))),
                };
            }
        }
    };
    bar.finish_and_clear();
    report(&out, &id, direction, result, require_verified)
}

/// A `--json` line for one file's end.
fn file_event(out: &Output, id: &TransferId, e: &JobEvent) {
    match e {
        JobEvent::FileDone {
            path,
            key,
            bytes,
            verified,
        } => out.event(
            "file_done",
            json!({
                "id": id.as_str(),
                "path": path,
                "key": key,
                "bytes": bytes,
                "verified": verified.as_ref().map(|v| crate::output::verification(v).0),
                "verification": verified.as_ref().map(|v| crate::output::verification(v).1),
            }),
        ),
        JobEvent::FileFailed { path, key, error } => out.event(
            "file_failed",
            json!({"id": id.as_str(), "path": path, "key": key, "error": error}),
        ),
        _ => {}
    }
}

fn files_label(done: u64, total: u64) -> String {
    format!("{done}/{total} files")
}

/// Prints how a job ended; its exit status.
fn report(
    out: &Output,
    id: &TransferId,
    direction: Direction,
    result: Result<JobOutcome, transfer_manager::Error>,
    require_verified: bool,
) -> Result<u8, Failure> {
    let o = result.map_err(|e| Failure::new(explain(&e, None)))?;
    for s in &o.skipped {
        out.note(&format!("skipped {s}"));
    }
    for u in &o.unverified {
        let line = format!("{}: NOT verified: {}", u.path, u.error);
        if require_verified {
            out.error(&line);
        } else {
            out.warn(&line);
        }
    }
    for f in &o.failures {
        out.error(&format!("{}: {}", f.path, f.error));
    }
    out.event(
        "job",
        json!({
            "id": id.as_str(),
            "direction": direction_name(direction),
            "files_total": o.files_total,
            "files_done": o.files_done,
            "files_failed": o.failures.len(),
            "files_unverified": o.unverified.len(),
            "bytes_total": o.bytes_total,
            "bytes_transferred": o.bytes_transferred,
            "deleted": o.deleted,
            "elapsed_secs": o.elapsed.as_secs_f64(),
            "failures": o.failures.iter().map(|f| json!({"path": f.path, "error": f.error})).collect::<Vec<_>>(),
        }),
    );
    let secs = o.elapsed.as_secs_f64().max(1e-3);
    out.summary(&format!(
        "{} job {id}: {} of {} files done, {} moved in {:.1} s ({}/s){}",
        direction_name(direction),
        o.files_done,
        o.files_total,
        human_bytes(o.bytes_transferred),
        secs,
        human_bytes((o.bytes_transferred as f64 / secs) as u64),
        if o.resumed { ", resumed" } else { "" }
    ));
    if !o.deleted.is_empty() {
        out.summary(&format!("deleted {} (--delete)", o.deleted.len()));
    }
    if !o.failures.is_empty() {
        return Err(Failure::new(format!(
            "{} of {} files failed (listed above); running the same command again retries only those (job {id})",
            o.failures.len(),
            o.files_total
        )));
    }
    if require_verified && !o.unverified.is_empty() {
        return Err(Failure::new(format!(
            "{} files could not be verified (--require-verified)",
            o.unverified.len()
        )));
    }
    Ok(exit::DONE)
}
