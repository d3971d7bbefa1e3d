//! What both machines share: operation ids, the in-flight table, retry timers, the
//! throttling window, stall detection and the output queues.

use std::collections::{BTreeMap, VecDeque};

use crate::checkpoint::{DELTAS_BETWEEN_WHOLES, Delta, Save};
use crate::retry::{Attempts, Backoff};
use crate::{
    Checkpoint, Event, Failure, OpId, OpKind, Operation, RetryConfig, Time, TransferError,
};

/// A unit of work a machine tracks across attempts.
#[derive(Debug, Clone)]
pub(crate) struct Slot<T> {
    pub(crate) task: T,
    pub(crate) attempts: Attempts,
}

impl<T> Slot<T> {
    pub(crate) fn new(task: T) -> Self {
        Slot {
            task,
            attempts: Attempts::default(),
        }
    }
}

/// Where a transfer stands with respect to the application's commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunState {
    Running,
    /// Paused by the application; waiting for in-flight operations to settle.
    Pausing,
    Paused,
    /// Cancelled; settling in-flight operations, then cleaning up.
    Cancelling,
    /// Completed, failed or cancelled: nothing more will happen.
    Finished,
}

/// How a transfer that is being wound down ends once it has cleaned up.
#[derive(Debug, Clone)]
pub(crate) enum Ending {
    Cancelled,
    Failed(TransferError),
}

#[derive(Debug)]
pub(crate) struct Engine<T> {
    backoff: Backoff,
    next_id: u64,
    in_flight: BTreeMap<OpId, (Slot<T>, &'static str)>,
    /// Retries waiting for their backoff to pass.
    waiting: Vec<(Time, Slot<T>)>,
    /// Retries whose backoff has passed, started before new work.
    ready: VecDeque<Slot<T>>,
    max_in_flight: usize,
    /// Requests allowed in flight now: halved on throttling, grown back by one per success.
    window: usize,
    last_progress: Time,
    pub(crate) state: RunState,
    /// The phase's own operation (Create, a ListParts page, Complete, ...) is still to
    /// be sent.
    pub(crate) control_due: bool,
    /// How a wind-down ends once in-flight operations settle and the clean-up is done.
    ending: Option<Ending>,
    ops: VecDeque<Operation>,
    events: VecDeque<Event>,
    checkpoints: VecDeque<Save>,
    /// Deltas saved since the last whole checkpoint, and how many parts or ranges that
    /// one held; `None` before the first whole one.
    since_whole: Option<(usize, usize)>,
}

impl<T: Clone> Engine<T> {
    pub(crate) fn new(retry: RetryConfig, max_in_flight: usize, now: Time) -> Self {
        let max_in_flight = max_in_flight.max(1);
        Engine {
            backoff: Backoff::new(retry),
            next_id: 0,
            in_flight: BTreeMap::new(),
            waiting: Vec::new(),
            ready: VecDeque::new(),
            max_in_flight,
            window: max_in_flight,
            last_progress: now,
            state: RunState::Running,
            control_due: false,
            ending: None,
            ops: VecDeque::new(),
            events: VecDeque::new(),
            checkpoints: VecDeque::new(),
            since_whole: None,
        }
    }

    pub(crate) fn launch(&mut self, slot: Slot<T>, kind: OpKind) -> OpId {
        self.next_id += 1;
        let id = OpId(self.next_id);
        self.in_flight.insert(id, (slot, kind.name()));
        self.ops.push_back(Operation { id, kind });
        id
    }

    /// Takes the slot of a finished operation; `None` for an unknown or stale id.
    pub(crate) fn finish(&mut self, id: OpId) -> Option<Slot<T>> {
        self.in_flight.remove(&id).map(|(slot, _)| slot)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub(crate) fn in_flight_tasks(&self) -> impl Iterator<Item = &T> {
        self.in_flight.values().map(|(s, _)| &s.task)
    }

    pub(crate) fn has_room(&self) -> bool {
        self.state == RunState::Running && self.in_flight.len() < self.window
    }

    /// Tasks queued for retry, due or not.
    pub(crate) fn retry_tasks(&self) -> impl Iterator<Item = &T> {
        self.ready
            .iter()
            .chain(self.waiting.iter().map(|(_, s)| s))
            .map(|s| &s.task)
    }

    /// Whether any work is queued for retry.
    pub(crate) fn has_retries(&self) -> bool {
        !self.waiting.is_empty() || !self.ready.is_empty()
    }

    pub(crate) fn pop_ready(&mut self) -> Option<Slot<T>> {
        self.ready.pop_front()
    }

    /// Takes every queued retry, due or not (on pause, cancel or restart).
    pub(crate) fn drain_retries(&mut self) -> Vec<Slot<T>> {
        let mut out: Vec<Slot<T>> = self.ready.drain(..).collect();
        out.extend(self.waiting.drain(..).map(|(_, s)| s));
        out
    }

    pub(crate) fn progressed(&mut self, now: Time) {
        self.last_progress = now;
        if self.window < self.max_in_flight {
            self.window += 1;
        }
    }

    /// Queues `slot` for another attempt after `failure`, or returns the error that ends
    /// the transfer when the failure is permanent or the budget is spent.
    pub(crate) fn retry(
        &mut self,
        now: Time,
        mut slot: Slot<T>,
        op: &'static str,
        failure: Failure,
    ) -> Result<(), TransferError> {
        if !failure.kind.is_retryable() {
            return Err(TransferError::Remote { op, failure });
        }
        match self.backoff.next_delay(&mut slot.attempts, failure.kind) {
            Some(delay) => {
                if failure.kind == crate::FailureKind::Throttled {
                    self.window = (self.window / 2).max(1);
                }
                let attempt = slot.attempts.transient + slot.attempts.throttled;
                self.events.push_back(Event::Retrying {
                    op,
                    attempt,
                    delay,
                    failure,
                });
                self.waiting.push((now + delay, slot));
                Ok(())
            }
            None => Err(TransferError::RetriesExhausted {
                op,
                attempts: slot.attempts.transient + slot.attempts.throttled,
                last: failure,
            }),
        }
    }

    /// Moves due retries to the ready queue; returns a stall error when nothing has
    /// completed for too long while work was outstanding.
    pub(crate) fn handle_timeout(&mut self, now: Time) -> Option<TransferError> {
        let mut i = 0;
        while i < self.waiting.len() {
            if self.waiting[i].0 <= now {
                let (_, slot) = self.waiting.swap_remove(i);
                self.ready.push_back(slot);
            } else {
                i += 1;
            }
        }
        match self.stall_deadline() {
            Some(d) if now >= d => {
                Some(TransferError::Stalled(self.backoff.config().stall_timeout))
            }
            _ => None,
        }
    }

    fn stall_deadline(&self) -> Option<Time> {
        let active = matches!(
            self.state,
            RunState::Running | RunState::Pausing | RunState::Cancelling
        );
        (active && (!self.in_flight.is_empty() || self.has_retries()))
            .then(|| self.last_progress + self.backoff.config().stall_timeout)
    }

    pub(crate) fn poll_timeout(&self) -> Option<Time> {
        if self.state == RunState::Finished {
            return None;
        }
        let retry = self.waiting.iter().map(|(t, _)| *t).min();
        match (retry, self.stall_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Restarts the stall clock (on resume, when nothing could have progressed).
    pub(crate) fn touch(&mut self, now: Time) {
        self.last_progress = now;
    }

    pub(crate) fn emit(&mut self, event: Event) {
        self.events.push_back(event);
    }

    pub(crate) fn checkpoint(&mut self, cp: Checkpoint) {
        self.since_whole = Some((0, cp.entries()));
        self.checkpoints.push_back(Save::Whole(cp));
    }

    /// Saves `delta` unless a whole checkpoint is due: once the deltas since the last
    /// whole one outnumber the parts or ranges it held (and at least
    /// [`DELTAS_BETWEEN_WHOLES`]), so that the journal never outgrows the record and the
    /// cost of a whole save, spread over the deltas before it, stays constant per step.
    /// Returns false when the caller must save whole instead.
    pub(crate) fn delta(&mut self, delta: Delta) -> bool {
        match self.since_whole {
            Some((n, held)) if n < held.max(DELTAS_BETWEEN_WHOLES) => {
                self.checkpoints.push_back(Save::Delta(delta));
                self.since_whole = Some((n + 1, held));
                true
            }
            _ => false,
        }
    }

    /// Ends the transfer: no more operations, timers or checkpoints.
    pub(crate) fn finish_with(&mut self, event: Event) {
        self.state = RunState::Finished;
        self.in_flight.clear();
        self.waiting.clear();
        self.ready.clear();
        self.ops.clear();
        self.events.push_back(event);
    }

    /// Takes back the operations emitted but not yet polled by the driver: they never
    /// started, so no answer will come for them.
    pub(crate) fn withdraw_unpolled(&mut self) {
        for op in self.ops.drain(..) {
            self.in_flight.remove(&op.id);
        }
    }

    /// Stops new work; once in-flight operations settle, the machine cleans up and ends
    /// as `ending` says.
    pub(crate) fn wind_down(&mut self, ending: Ending) {
        self.ending = Some(ending);
        self.control_due = false;
        self.drain_retries();
        self.state = RunState::Cancelling;
    }

    /// Whether the wind-down under way ends in a failure.
    pub(crate) fn failing(&self) -> bool {
        matches!(self.ending, Some(Ending::Failed(_)))
    }

    /// Ends the transfer as the wind-down said (cancelled when none was said).
    pub(crate) fn end(&mut self) {
        let event = match self.ending.take() {
            Some(Ending::Failed(e)) => Event::Failed(e),
            _ => Event::Cancelled,
        };
        self.finish_with(event);
    }

    /// The error that started the wind-down under way, if one did.
    pub(crate) fn take_failure(&mut self) -> Option<TransferError> {
        match self.ending.take() {
            Some(Ending::Failed(original)) => Some(original),
            _ => None,
        }
    }

    /// Fails the transfer at once.
    pub(crate) fn fail(&mut self, err: TransferError) {
        self.finish_with(Event::Failed(err));
    }

    /// The driver answered an operation with an outcome of another kind.
    pub(crate) fn unexpected(&mut self, task: &T, outcome: &crate::Outcome)
    where
        T: std::fmt::Debug,
    {
        let failure = Failure::new(
            crate::FailureKind::Other,
            format!("driver answered {task:?} with {outcome:?}"),
        );
        self.fail(TransferError::Remote {
            op: "driver",
            failure,
        });
    }

    pub(crate) fn poll_operation(&mut self) -> Option<Operation> {
        self.ops.pop_front()
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub(crate) fn poll_checkpoint(&mut self) -> Option<Save> {
        self.checkpoints.pop_front()
    }
}
