//! Running transfers to their end: progress, the end of each, and Ctrl-C / SIGTERM.
//!
//! A first signal pauses every transfer (in-flight requests settle and the checkpoint is
//! made durable), prints the command that resumes and exits with status 130. A second
//! signal exits at once; the last checkpoint written still resumes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use transfer_manager::{
    Direction, ErrorKind, Event, TransferHandle, TransferId, TransferManager, TransferOutcome,
};

use crate::args::{human_bytes, shell_quote};
use crate::failure::{Failure, explain};
use crate::output::{self, Output, direction_name, route};
use crate::{Global, exit};

/// JSON progress lines are throttled to this interval (at most 4 a second).
const JSON_PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// A started transfer and what it moves.
pub(crate) struct Job {
    pub(crate) handle: TransferHandle,
    pub(crate) bucket: String,
    pub(crate) key: String,
    pub(crate) path: PathBuf,
}

/// The command that continues transfers, with the global flags this run was given (the
/// environment is the user's to keep).
pub(crate) fn resume_command(global: &Global, what: &str) -> String {
    let mut cmd = String::from("s3tm");
    let mut flag = |name: &str, value: Option<&str>| {
        cmd.push(' ');
        cmd.push_str(name);
        if let Some(v) = value {
            cmd.push(' ');
            cmd.push_str(&shell_quote(v));
        }
    };
    if let Some(u) = &global.endpoint_url {
        flag("--endpoint-url", Some(u));
    }
    if let Some(r) = &global.region {
        flag("--region", Some(r));
    }
    if let Some(p) = &global.profile {
        flag("--profile", Some(p));
    }
    if global.path_style {
        flag("--path-style", None);
    }
    if let Some(d) = &global.state_dir {
        flag("--state-dir", Some(&d.to_string_lossy()));
    }
    if let Some(pem) = &global.ca_bundle {
        flag("--ca-bundle", Some(&pem.to_string_lossy()));
    }
    cmd.push_str(" resume ");
    cmd.push_str(what);
    cmd
}

struct Watched {
    id: TransferId,
    direction: Direction,
    /// False for a download streaming into a device or FIFO, or an upload from standard
    /// input: no checkpoint to resume.
    resumable: bool,
    /// To cancel an upload from standard input on a signal (aborting its upload).
    handle: TransferHandle,
    route: String,
    progress: tokio::sync::watch::Receiver<transfer_manager::Progress>,
}

/// Runs `jobs` to their end and reports each. Returns the exit status: 0 when all
/// completed, 130 when a signal paused them; a failure when any failed.
pub(crate) async fn run_jobs(
    managers: &[TransferManager],
    global: &Global,
    mut signals: Signals,
    jobs: Vec<Job>,
    out: Arc<Output>,
) -> Result<u8, Failure> {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut watched = Vec::new();
    for (index, job) in jobs.into_iter().enumerate() {
        let id = job.handle.id().clone();
        let direction = job.handle.direction();
        let resumable = job.handle.is_resumable();
        let route = route(direction, &job.bucket, &job.key, &job.path);
        let progress = job.handle.progress();
        let handle = job.handle.clone();
        let start = *progress.borrow();
        out.event(
            "started",
            json!({
                "id": id.as_str(),
                "direction": direction_name(direction),
                "bucket": job.bucket,
                "key": job.key,
                "path": job.path,
                "bytes_done": start.bytes_done,
                "bytes_total": start.bytes_total,
            }),
        );
        out.note(&format!("{} {id}: {route}", direction_name(direction)));
        let label = match direction {
            Direction::Upload => format!("up {}", job.key),
            Direction::Download => format!("down {}", job.key),
        };
        let bar = out.bar(&label, start.bytes_done, start.bytes_total);
        let events = job.handle.events();
        let done = done_tx.clone();
        let out2 = out.clone();
        let watcher_progress = progress.clone();
        let watcher_id = id.clone();
        tokio::spawn(async move {
            let join = job.handle.join();
            let result = watch(watcher_id, watcher_progress, events, join, bar, &out2).await;
            let _ = done.send((index, result));
        });
        watched.push(Watched {
            id,
            direction,
            resumable,
            handle,
            route,
            progress,
        });
    }
    drop(done_tx);

    let mut finished = vec![false; watched.len()];
    let mut failed = 0usize;
    let mut remaining = watched.len();
    while remaining > 0 {
        tokio::select! {
            Some((index, result)) = done_rx.recv() => {
                finished[index] = true;
                remaining -= 1;
                if !report_end(&watched[index], result, global, &out, watched.len()) {
                    failed += 1;
                }
            }
            () = signals.next() => {
                return pause(managers, global, &watched, &mut finished, &mut done_rx, &mut signals, &out).await;
            }
        }
    }
    match (failed, watched.len()) {
        (0, _) => Ok(exit::DONE),
        // The one failure was printed by `report_end` as the error line already.
        (_, 1) => Err(Failure::silent()),
        (n, total) => Err(Failure::new(format!("{n} of {total} transfers failed"))),
    }
}

/// Follows one transfer until it ends: the bar, JSON progress, retry notes.
async fn watch(
    id: TransferId,
    mut progress: tokio::sync::watch::Receiver<transfer_manager::Progress>,
    mut events: broadcast::Receiver<Event>,
    join: impl Future<Output = Result<TransferOutcome, transfer_manager::Error>>,
    bar: indicatif::ProgressBar,
    out: &Output,
) -> Result<TransferOutcome, transfer_manager::Error> {
    let mut tick = tokio::time::interval(JSON_PROGRESS_EVERY);
    let mut last_sent = *progress.borrow();
    let mut events_open = true;
    let mut progress_open = true;
    tokio::pin!(join);
    let result = loop {
        tokio::select! {
            joined = &mut join => break joined,
            changed = progress.changed(), if progress_open => {
                if changed.is_err() {
                    progress_open = false;
                    continue;
                }
                let p = *progress.borrow_and_update();
                if p.bytes_total > 0 {
                    bar.set_length(p.bytes_total);
                }
                // Bytes on the wire move the bar within a part; only durable ones count in
                // the summary and the checkpoint.
                bar.set_position(p.bytes_done + p.bytes_moving);
            }
            event = events.recv(), if events_open => match event {
                Ok(Event::Retrying { op, attempt, delay, failure }) => {
                    let line = format!("{id}: retrying {op} (attempt {attempt}) in {:.1}s: {failure}", delay.as_secs_f64());
                    out.note(&line);
                    out.event("retrying", json!({"id": id.as_str(), "op": op, "attempt": attempt, "delay_secs": delay.as_secs_f64(), "reason": failure.to_string()}));
                }
                Ok(Event::Restarted { reason }) => {
                    out.note(&format!("{id}: starting over: {reason}"));
                    out.event("restarted", json!({"id": id.as_str(), "reason": reason}));
                }
                Ok(Event::Invalidated { range, reason }) => {
                    out.note(&format!("{id}: {reason}"));
                    out.event("invalidated", json!({"id": id.as_str(), "start": range.start, "end": range.end, "reason": reason}));
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => events_open = false,
            },
            _ = tick.tick(), if out.is_json() => {
                let p = *progress.borrow();
                if p != last_sent {
                    last_sent = p;
                    out.event("progress", json!({"id": id.as_str(), "bytes_done": p.bytes_done, "bytes_moving": p.bytes_moving, "bytes_total": p.bytes_total}));
                }
            }
        }
    };
    bar.finish_and_clear();
    result
}

/// Prints how a transfer ended; whether it succeeded.
fn report_end(
    w: &Watched,
    result: Result<TransferOutcome, transfer_manager::Error>,
    global: &Global,
    out: &Output,
    jobs: usize,
) -> bool {
    match result {
        Ok(o) => {
            for warning in &o.warnings {
                out.warn(&format!("{}: {warning}", w.id));
            }
            out.event("completed", output::completed_fields(&o));
            out.summary(&output::summary_line(&w.route, w.direction, &o));
            let (verified, _) = output::verification(&o.verified);
            if out.require_verified() && !verified {
                let what = match w.direction {
                    Direction::Upload => "the object is in the bucket",
                    Direction::Download => "the file is in place",
                };
                out.error(&format!(
                    "{}: completed but NOT verified, and --require-verified was given ({what}; the line above says why)",
                    w.id
                ));
                return false;
            }
            true
        }
        Err(e) => {
            let p = *w.progress.borrow();
            let retry = resume_command(global, w.id.as_str());
            let message = explain(&e, Some((w.id.as_str(), &retry)));
            out.event(
                "failed",
                json!({
                    "id": w.id.as_str(),
                    "error": message,
                    "kind": format!("{:?}", e.kind()),
                    "resumable": e.is_resumable(),
                    "bytes_done": p.bytes_done,
                    "bytes_total": p.bytes_total,
                }),
            );
            if jobs > 1 {
                out.error(&format!("{}: {message}", w.id));
            } else {
                out.error(&message);
            }
            false
        }
    }
}

/// After the first signal: pause everything, say how to resume, exit 130.
async fn pause(
    managers: &[TransferManager],
    global: &Global,
    watched: &[Watched],
    finished: &mut [bool],
    done_rx: &mut mpsc::UnboundedReceiver<(
        usize,
        Result<TransferOutcome, transfer_manager::Error>,
    )>,
    signals: &mut Signals,
    out: &Output,
) -> Result<u8, Failure> {
    let started = Instant::now();
    // A stream upload has nothing to pause into: it is cancelled, which aborts its
    // multipart upload, and reported below once that is done.
    let cancelled: Vec<usize> = watched
        .iter()
        .enumerate()
        .filter(|(i, w)| !finished[*i] && is_stream_upload(w))
        .filter(|(_, w)| w.handle.cancel().is_ok())
        .map(|(i, _)| i)
        .collect();
    if !cancelled.is_empty() {
        out.note("stopping: the upload from standard input cannot be resumed, so its multipart upload is being aborted (press Ctrl-C again to quit at once)");
    }
    let unfinished = || {
        watched
            .iter()
            .enumerate()
            .filter(|(i, w)| !finished[*i] && !is_stream_upload(w))
            .map(|(_, w)| w)
    };
    // A download into a stream has no checkpoint either: it stops, it is not paused.
    if unfinished().any(|w| !w.resumable) {
        out.note("stopping: a download into standard output, a device or a FIFO cannot be resumed; what it wrote is incomplete (press Ctrl-C again to quit at once)");
    }
    if unfinished().any(|w| w.resumable) {
        out.note("pausing: letting requests in flight finish and saving the checkpoint (press Ctrl-C again to quit at once)");
    }
    let mut reports = std::collections::HashMap::new();
    // Paused, but the checkpoint of the pause was not saved: not reported as saved.
    let mut unsaved = std::collections::HashSet::new();
    tokio::select! {
        results = async {
            let mut results = Vec::new();
            for m in managers {
                results.extend(m.pause_all().await);
            }
            results
        } => {
            for (id, result) in results {
                match result {
                    Ok(report) => {
                        reports.insert(id, report);
                    }
                    // Streams are reported as stopped, ended transfers by their end, below.
                    Err(e) if matches!(e.kind(), ErrorKind::Unsupported | ErrorKind::Finished) => {}
                    Err(e) => {
                        out.error(&format!(
                            "{id} stopped, but its checkpoint could not be saved: {}; an older \
                             checkpoint may still resume it (`s3tm ls`)",
                            explain(&e, None)
                        ));
                        unsaved.insert(id);
                    }
                }
            }
        }
        () = signals.next() => {
            for (w, _) in watched.iter().zip(finished.iter()).filter(|(_, done)| !**done) {
                if is_stream_upload(w) {
                    out.note(&format!(
                        "stopped without waiting; the multipart upload of {} may be left on the server (`s3tm clean` aborts it)",
                        w.id
                    ));
                } else {
                    out.note(&format!(
                        "stopped without waiting; the last saved checkpoint resumes: {}",
                        resume_command(global, w.id.as_str())
                    ));
                }
            }
            std::process::exit(exit::PAUSED.into());
        }
    }
    // Transfers that ended while pausing (their last requests completed them, or failed)
    // report their end as usual: a transfer is reported paused only if it is. Once
    // `pause_all` returns, each is either paused or over, and the end of one that is
    // over is on its way.
    let mut failed = false;
    let not_paused = |finished: &[bool]| {
        watched.iter().zip(finished).any(|(w, done)| {
            // Streams do not pause: downloads are reported as stopped below, uploads are
            // cancelled and waited for.
            !*done
                && (w.resumable || is_stream_upload(w))
                && w.progress.borrow().state != transfer_manager::TransferState::Paused
        })
    };
    let mut interrupted = false;
    let end = |index: usize,
               result: Result<TransferOutcome, transfer_manager::Error>,
               failed: &mut bool,
               interrupted: &mut bool| {
        let w = &watched[index];
        match result {
            Err(e) if is_stream_upload(w) && e.kind() == ErrorKind::Cancelled => {
                *interrupted = true;
                out.event(
                    "cancelled",
                    json!({"id": w.id.as_str(), "reason": "interrupted; a stream cannot be resumed"}),
                );
                out.note(&format!(
                    "stopped {} {}: standard input cannot be resumed, and its multipart upload was aborted",
                    direction_name(w.direction),
                    w.id
                ));
            }
            result => *failed |= !report_end(w, result, global, out, watched.len()),
        }
    };
    while not_paused(finished) {
        tokio::select! {
            next = tokio::time::timeout(Duration::from_secs(30), done_rx.recv()) => match next {
                Ok(Some((index, result))) => {
                    finished[index] = true;
                    end(index, result, &mut failed, &mut interrupted);
                }
                // Nothing more will come (or nothing came for long): report what is known.
                Ok(None) | Err(_) => break,
            },
            () = signals.next() => std::process::exit(exit::PAUSED.into()),
        }
    }
    while let Ok((index, result)) = done_rx.try_recv() {
        finished[index] = true;
        end(index, result, &mut failed, &mut interrupted);
    }
    let paused: Vec<&Watched> = watched
        .iter()
        .zip(finished.iter())
        .filter(|(_, done)| !**done)
        .map(|(w, _)| w)
        .filter(|w| {
            if is_stream_upload(w) {
                out.error(&format!(
                    "{} {} from standard input did not stop in time; its multipart upload may be left on the server (`s3tm clean` aborts it)",
                    direction_name(w.direction),
                    w.id
                ));
                failed = true;
            } else if !w.resumable {
                // A stream has no checkpoint: stopped, it is not paused but over.
                out.error(&format!(
                    "{} {} stopped part-way; it streamed into standard output, a device or a FIFO, so it cannot be resumed, and what it wrote is incomplete",
                    direction_name(w.direction),
                    w.id
                ));
                failed = true;
            }
            if unsaved.contains(&w.id) {
                failed = true;
                return false;
            }
            w.resumable
        })
        .collect();
    // The saved checkpoints are the truth about what a resume will skip; the progress
    // watch can lag the last parts that settled while pausing.
    // The managers share one store.
    let saved = managers
        .first()
        .and_then(|m| m.list_resumable().ok())
        .map(|(l, _)| l)
        .unwrap_or_default();
    for w in &paused {
        let mut p = *w.progress.borrow();
        if let Some(t) = saved.iter().find(|t| t.id == w.id) {
            p.bytes_done = t.bytes_done;
            p.bytes_total = t.bytes_total;
        }
        let command = resume_command(global, w.id.as_str());
        let report = reports.get(&w.id).copied().unwrap_or_default();
        out.event(
            "paused",
            json!({
                "id": w.id.as_str(),
                "bytes_done": p.bytes_done,
                "bytes_total": p.bytes_total,
                "requests_cut": report.requests_cut,
                "bytes_to_resend": report.bytes_to_resend,
                "resume_command": command,
            }),
        );
        let settled = if report.requests_cut > 0 {
            format!(
                "{} still in flight after {:.1}s were cut off: up to {} will be sent again on resume",
                match report.requests_cut {
                    1 => "1 request".to_owned(),
                    n => format!("{n} requests"),
                },
                report.waited.as_secs_f64(),
                human_bytes(report.bytes_to_resend),
            )
        } else {
            format!(
                "requests in flight settled in {:.1}s",
                started.elapsed().as_secs_f64()
            )
        };
        out.note(&format!(
            "paused {} {} at {} of {} ({settled}); the checkpoint is saved",
            direction_name(w.direction),
            w.id,
            human_bytes(p.bytes_done),
            human_bytes(p.bytes_total),
        ));
        out.note(&format!("to resume: {command}"));
    }
    if !paused.is_empty() {
        out.note("(running the same `s3tm cp` command again resumes it too)");
        return Ok(exit::PAUSED);
    }
    if failed {
        Err(Failure::silent())
    } else if interrupted {
        Ok(exit::PAUSED)
    } else {
        Ok(exit::DONE)
    }
}

/// An upload from standard input: Ctrl-C cancels it rather than pausing it.
fn is_stream_upload(w: &Watched) -> bool {
    w.direction == Direction::Upload && !w.resumable
}

/// Ctrl-C, and SIGTERM on Unix. Create it before starting transfers: from then on a
/// signal is caught rather than killing the process.
pub(crate) struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn new() -> Result<Signals, Failure> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| {
                signal(kind).map_err(|e| Failure::new(format!("cannot handle {name}: {e}")))
            };
            Ok(Signals {
                int: listen(SignalKind::interrupt(), "Ctrl-C")?,
                term: listen(SignalKind::terminate(), "SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    pub(crate) async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
