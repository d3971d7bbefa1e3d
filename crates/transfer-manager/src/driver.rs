//! One task per transfer: a short loop that starts the operations the machine asks for,
//! feeds their outcomes back, arms its one timer, persists checkpoints and publishes
//! progress (the quinn driver pattern).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use resume_store::{JournalEntry, Lease, RecordMeta, TransferId, TransferState as StoreState};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::Instrument;
use transfer_core::{
    Completion, Event, OpId, OpKind, Outcome, Save, Time, TransferError, TransferMachine,
};

use crate::error::from_transfer;
use crate::exec::OpContext;
use crate::handle::{Command, PauseReport, Progress, TransferOutcome, TransferState};
use crate::persist::{Persister, Stored, now_unix_ms, record};
use crate::{Error, ErrorKind};

/// Persistence of one transfer (absent for streams, which cannot resume).
pub(crate) struct Persistence {
    pub(crate) persister: Persister,
    pub(crate) meta: RecordMeta,
    pub(crate) stored: Stored,
    /// Held for the transfer's life, so no other process drives it.
    pub(crate) _lease: Lease,
}

pub(crate) struct Driver {
    pub(crate) id: TransferId,
    pub(crate) machine: Box<dyn TransferMachine + Send + Sync>,
    pub(crate) ctx: Arc<OpContext>,
    pub(crate) persistence: Option<Persistence>,
    pub(crate) progress: watch::Sender<Progress>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) commands: mpsc::UnboundedReceiver<Command>,
    pub(crate) resumed: bool,
    /// "upload s3://b/k" or similar, for error messages.
    pub(crate) what: String,
    /// How long a pause waits for the parts and ranges in flight before cutting them.
    pub(crate) pause_timeout: std::time::Duration,
}

impl Driver {
    pub(crate) async fn run(mut self) -> Result<TransferOutcome, Error> {
        let span = tracing::info_span!("transfer", id = %self.id, what = %self.what);
        self.run_inner().instrument(span).await
    }

    async fn run_inner(&mut self) -> Result<TransferOutcome, Error> {
        let started = Instant::now();
        let now = || Time::from_duration(started.elapsed());
        let mut tasks: JoinSet<(OpId, Outcome)> = JoinSet::new();
        let mut flights = InFlight::default();
        let mut pause_waiters: Vec<oneshot::Sender<Result<PauseReport, Error>>> = Vec::new();
        // A pause under way: when it began, when it cuts, and what it cut.
        let mut pausing: Option<(Instant, Option<Instant>)> = None;
        let mut cut = PauseReport::default();
        // While bytes move, progress is published a few times a second.
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut commands_open = true;
        let mut state = TransferState::Running;
        loop {
            while let Some(op) = self.machine.poll_operation() {
                if matches!(op.kind, transfer_core::OpKind::PreparePartialFile { .. }) {
                    // The machine's contract: checkpoints emitted before this operation are
                    // durable before it runs (a reset checkpoint before a new empty file).
                    while let Some(cp) = self.machine.poll_checkpoint() {
                        self.persist(Some(cp), StoreState::Running);
                    }
                    if let Err(e) = self.flush().await {
                        tracing::warn!(error = %e, "checkpoint not saved before preparing the partial file");
                    }
                }
                let flight = Flight::of(&op);
                let wire = flight.wire.clone();
                let op_id = op.id;
                let ctx = self.ctx.clone();
                let name = op.kind.name();
                let span = tracing::debug_span!("request", op = name, id = op.id.0);
                let handle = tasks.spawn(
                    crate::body::WIRE.scope(
                        wire,
                        async move {
                            let outcome = ctx.execute(op.kind).await;
                            if let Outcome::Failed(f) = &outcome {
                                tracing::debug!(status = ?f.status, code = ?f.code, message = %f.message, "failed");
                            }
                            (op.id, outcome)
                        }
                        .instrument(span),
                    ),
                );
                flights.started(op_id, handle, flight);
            }
            while let Some(cp) = self.machine.poll_checkpoint() {
                self.persist(Some(cp), StoreState::Running);
            }
            let mut ending = None;
            while let Some(event) = self.machine.poll_event() {
                match &event {
                    Event::Progress { .. } => {}
                    Event::Paused => {
                        state = TransferState::Paused;
                        // Before `pause()` resolves, the watch must show what was saved.
                        self.publish(state, flights.bytes_moving());
                        self.persist(None, StoreState::Paused);
                        let flushed = self.flush().await;
                        if !commands_open {
                            return Err(self.left_paused());
                        }
                        let report = PauseReport {
                            waited: pausing
                                .take()
                                .map(|(since, _)| since.elapsed())
                                .unwrap_or_default(),
                            ..std::mem::take(&mut cut)
                        };
                        if report.requests_cut > 0 {
                            tracing::info!(
                                requests = report.requests_cut,
                                bytes = report.bytes_to_resend,
                                "pause cut requests still in flight"
                            );
                        }
                        for w in pause_waiters.drain(..) {
                            let _ = w.send(flushed.as_ref().map(|_| report).map_err(Error::clone));
                        }
                    }
                    Event::Retrying {
                        op,
                        attempt,
                        delay,
                        failure,
                    } => {
                        tracing::info!(op, attempt, ?delay, %failure, "retrying");
                    }
                    Event::Restarted { reason } => tracing::info!(%reason, "restarted"),
                    Event::Invalidated { reason, .. } => tracing::info!(%reason, "invalidated"),
                    Event::Completed(c) => ending = Some(End::Completed(c.clone())),
                    Event::Failed(e) => ending = Some(End::Failed(e.clone())),
                    Event::Cancelled => ending = Some(End::Cancelled),
                    _ => {}
                }
                let _ = self.events.send(event.clone());
            }
            self.publish(state, flights.bytes_moving());
            if let Some(end) = ending {
                tasks.abort_all();
                return self.finish(end, started, flights.recheck_elapsed()).await;
            }
            let deadline = self.machine.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until((started + t.as_duration()).into()).await,
                    None => std::future::pending().await,
                }
            };
            let cut_at = pausing.and_then(|(_, at)| at);
            let pause_wait_over = async {
                match cut_at {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let (op, outcome) = match joined {
                        Ok((_, r)) => r,
                        Err(e) => match flights.op_of(e.id()) {
                            Some(op) => (op, if e.is_cancelled() { Outcome::Dropped } else {
                                Outcome::Failed(transfer_core::Failure::new(transfer_core::FailureKind::Other, format!("request task failed: {e}")))
                            }),
                            None => continue,
                        },
                    };
                    flights.ended(op);
                    self.machine.handle_outcome(now(), op, outcome);
                }
                () = sleep => self.machine.handle_timeout(now()),
                _ = tick.tick(), if flights.moving() => {}
                () = pause_wait_over => {
                    // The pause waited long enough: cut the parts and ranges still moving;
                    // they come back as Dropped and are sent again on resume.
                    (cut.requests_cut, cut.bytes_to_resend) = flights.cut_data();
                    if let Some((_, at)) = pausing.as_mut() {
                        *at = None;
                    }
                }
                cmd = self.commands.recv(), if commands_open => match cmd {
                    Some(Command::Pause(reply)) => {
                        if self.persistence.is_none() {
                            // A stream cannot be read or written again: it cannot pause.
                            let _ = reply.send(Err(Error::new(
                                ErrorKind::Unsupported,
                                "uploads from memory or a reader and downloads into a writer cannot be paused; cancel them instead",
                            )));
                        } else if self.machine.is_paused() {
                            let _ = reply.send(Ok(PauseReport::default()));
                        } else {
                            state = TransferState::Pausing;
                            pause_waiters.push(reply);
                            let begun = Instant::now();
                            pausing.get_or_insert((begun, Some(begun + self.pause_timeout)));
                            self.machine.pause(now());
                        }
                    }
                    Some(Command::Resume) => {
                        pausing = None;
                        cut = PauseReport::default();
                        state = TransferState::Running;
                        self.persist(None, StoreState::Running);
                        self.machine.resume(now());
                    }
                    Some(Command::Cancel) => {
                        // In-flight requests are abandoned; they come back as Dropped.
                        tasks.abort_all();
                        self.machine.cancel(now());
                    }
                    None => {
                        commands_open = false;
                        // Nobody can resume it here any more: let another process do so.
                        if self.machine.is_paused() {
                            return Err(self.left_paused());
                        }
                    }
                },
            }
        }
    }

    /// The end of a paused transfer that nobody can resume in this process any more.
    fn left_paused(&self) -> Error {
        let err = Error::new(
            ErrorKind::Paused,
            format!(
                "{}: left paused; resume it with `s3tm resume {}`",
                self.what, self.id
            ),
        );
        if self.persistence.is_some() {
            err.with_checkpoint_kept()
        } else {
            err
        }
    }

    fn publish(&self, state: TransferState, bytes_moving: u64) {
        let (bytes_done, bytes_total) = self.machine.progress();
        let bytes_moving = bytes_moving.min(bytes_total.saturating_sub(bytes_done));
        let p = Progress {
            bytes_done,
            bytes_moving,
            bytes_total,
            state,
        };
        self.progress.send_if_modified(|old| {
            let changed = *old != p;
            *old = p;
            changed
        });
    }

    /// Queues what the machine saved: a delta as a journal entry while the state is
    /// unchanged and the journal is writable, anything else as the whole record.
    fn persist(&mut self, save: Option<Save>, state: StoreState) {
        let (done, total) = self.machine.progress();
        let Some(p) = self.persistence.as_mut() else {
            return;
        };
        let delta = match (save, &mut p.stored.checkpoint) {
            (Some(Save::Whole(cp)), held) => {
                *held = Some(cp);
                None
            }
            // A delta goes to the record's journal; the copy held here (saved whole on
            // the next state change or whole checkpoint) takes it in too.
            (Some(Save::Delta(delta)), Some(cp)) => match serde_json::to_vec(&delta) {
                Ok(data) => match cp.apply(delta) {
                    Ok(()) => Some(data),
                    Err(e) => {
                        tracing::warn!(error = %e, "checkpoint delta does not apply; saving whole");
                        None
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "checkpoint delta not encoded; saving whole");
                    None
                }
            },
            (Some(Save::Delta(_)), None) => {
                tracing::warn!("checkpoint delta before any checkpoint; not saved");
                return;
            }
            (None, _) => None,
        };
        // A state change is saved whole; progress while running goes to the journal.
        let same_state = p.meta.state == state;
        p.meta.state = state;
        p.meta.done_bytes = done;
        p.meta.total_bytes = total.max(p.meta.total_bytes);
        p.meta.updated_unix_ms = now_unix_ms();
        if let Some(data) = delta
            && same_state
            && !p.persister.needs_full()
        {
            let entry = JournalEntry {
                done_bytes: done,
                updated_unix_ms: p.meta.updated_unix_ms,
                data,
            };
            p.persister.append(p.meta.id.clone(), entry);
            return;
        }
        match record(&p.meta, &p.stored) {
            Ok(r) => p.persister.save(r),
            Err(e) => tracing::warn!(error = %e, "checkpoint not encoded"),
        }
    }

    async fn flush(&self) -> Result<(), Error> {
        match &self.persistence {
            Some(p) => p.persister.flush().await.map_err(Error::store),
            None => Ok(()),
        }
    }

    async fn finish(
        &mut self,
        end: End,
        started: Instant,
        recheck_elapsed: std::time::Duration,
    ) -> Result<TransferOutcome, Error> {
        // A failure keeps its checkpoint only if there is something to resume: an upload
        // on the server, or a download whose layout (and maybe bytes) is known. A transfer
        // that failed on its first request (wrong secret, no such key) leaves nothing.
        let has_state = self
            .persistence
            .as_ref()
            .is_some_and(|p| p.stored.checkpoint.is_some());
        let keep = has_state && matches!(&end, End::Failed(e) if e.is_resumable());
        if keep {
            self.persist(None, StoreState::Failed);
        } else if let Some(p) = &self.persistence {
            p.persister.remove(self.id.clone());
        }
        let flushed = self.flush().await;
        self.publish(
            match &end {
                End::Completed(_) => TransferState::Completed,
                End::Failed(_) => TransferState::Failed,
                End::Cancelled => TransferState::Cancelled,
            },
            0,
        );
        match end {
            End::Completed(c) => {
                // The object is complete and verified whatever became of the checkpoints:
                // a store that failed meanwhile is worth a warning, not a failure.
                let warnings = match flushed {
                    Ok(()) => Vec::new(),
                    Err(e) => vec![format!(
                        "checkpoints could not be saved during the transfer ({e}); it completed, so nothing is lost, but a crash meanwhile would have cost the work since the last saved one"
                    )],
                };
                Ok(TransferOutcome {
                    id: self.id.clone(),
                    etag: c.etag.map(|e| e.0),
                    checksum: c.checksum.map(|(a, v)| format!("{a}:{v}")),
                    verified: c.verified,
                    bytes_total: c.bytes_total,
                    bytes_transferred: c.bytes_transferred,
                    bytes_resent: c.bytes_resent,
                    bytes_resumed: c.bytes_resumed,
                    bytes_rechecked: c.bytes_rechecked,
                    bytes_recheck_failed: c.bytes_recheck_failed,
                    recheck_elapsed,
                    warnings,
                    elapsed: started.elapsed(),
                    resumed: self.resumed,
                })
            }
            End::Cancelled => Err(Error::new(
                ErrorKind::Cancelled,
                format!("{}: cancelled", self.what),
            )),
            End::Failed(e) => {
                // An upload left on the server after a failure that resuming cannot get
                // past (a changed source): the checkpoint is kept so that it can be
                // aborted, which is what `cancel` does; `resume` would only fail again.
                let left = matches!(e, TransferError::UploadLeft { .. });
                let err = from_transfer(e, &self.what);
                if !keep {
                    return Err(err);
                }
                let message = if left {
                    format!("{err}; cancel it with `s3tm cancel {}`", self.id)
                } else {
                    format!("{err}; resume it with `s3tm resume {}`", self.id)
                };
                Err(Error::with_source(err.kind(), message, err).with_checkpoint_kept())
            }
        }
    }
}

/// The operations in flight, with what the loop needs of each: which task runs it, the
/// bytes a pause would cut, the bytes it has moved so far, and how long re-reads of
/// carried-over bytes have run.
#[derive(Default)]
struct InFlight {
    op_of_task: HashMap<tokio::task::Id, OpId>,
    ops: HashMap<OpId, (tokio::task::AbortHandle, Flight)>,
    /// Since when at least one re-read runs, and the time they ran before.
    rechecking_since: Option<Instant>,
    recheck_total: Duration,
}

/// One operation in flight.
struct Flight {
    /// A part or range: the bytes a pause cuts off, to be sent again.
    data_bytes: Option<u64>,
    /// Bytes it has moved on the wire (see `body::WIRE`).
    wire: Arc<AtomicU64>,
    /// A re-read of bytes carried over from an earlier run (or of a part the server had
    /// but no checkpoint recorded).
    recheck: bool,
}

impl Flight {
    fn of(op: &transfer_core::Operation) -> Flight {
        let data_bytes = match &op.kind {
            OpKind::UploadPart { range, .. }
            | OpKind::PutObject { range, .. }
            | OpKind::GetRange { range, .. } => Some(range.len_bytes()),
            _ => None,
        };
        Flight {
            data_bytes,
            wire: Arc::new(AtomicU64::new(0)),
            recheck: matches!(
                op.kind,
                OpKind::HashPartialRange { .. } | OpKind::HashSourceRange { .. }
            ),
        }
    }
}

impl InFlight {
    fn started(&mut self, op: OpId, task: tokio::task::AbortHandle, flight: Flight) {
        if flight.recheck {
            self.rechecking_since.get_or_insert_with(Instant::now);
        }
        self.op_of_task.insert(task.id(), op);
        self.ops.insert(op, (task, flight));
    }

    fn ended(&mut self, op: OpId) {
        if let Some((task, _)) = self.ops.remove(&op) {
            self.op_of_task.remove(&task.id());
        }
        if !self.ops.values().any(|(_, f)| f.recheck)
            && let Some(since) = self.rechecking_since.take()
        {
            self.recheck_total += since.elapsed();
        }
    }

    fn op_of(&self, task: tokio::task::Id) -> Option<OpId> {
        self.op_of_task.get(&task).copied()
    }

    /// Whether a part or range is in flight, whose progress is worth publishing.
    fn moving(&self) -> bool {
        self.ops.values().any(|(_, f)| f.data_bytes.is_some())
    }

    fn bytes_moving(&self) -> u64 {
        self.ops
            .values()
            .filter(|(_, f)| f.data_bytes.is_some())
            .map(|(_, f)| f.wire.load(Ordering::Relaxed))
            .sum()
    }

    /// Aborts every part and range in flight (they come back as Dropped); how many, and
    /// their bytes.
    fn cut_data(&mut self) -> (usize, u64) {
        let mut cut = (0, 0);
        for (task, f) in self.ops.values() {
            if let Some(bytes) = f.data_bytes {
                task.abort();
                cut.0 += 1;
                cut.1 += bytes;
            }
        }
        cut
    }

    fn recheck_elapsed(&self) -> Duration {
        self.recheck_total
            + self
                .rechecking_since
                .map_or(Duration::ZERO, |s| s.elapsed())
    }
}

/// How a transfer ended.
enum End {
    Completed(Completion),
    Failed(TransferError),
    Cancelled,
}
