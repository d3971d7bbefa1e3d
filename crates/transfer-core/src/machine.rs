//! The skeleton both machines share: the run states (running, pausing, paused,
//! cancelling, finished), the launch loop, requeuing on pause, winding down, and the
//! [`TransferMachine`] contract. A direction ([`Upload`](crate::upload::Upload),
//! [`Download`](crate::download::Download)) supplies only what differs: its phases,
//! which operation each task is, what an outcome means and how the result is verified.

use std::fmt::Debug;

use crate::engine::{Ending, Engine, RunState, Slot};
use crate::{
    Checkpoint, Event, Failure, OpId, OpKind, Operation, Outcome, Save, Time, TransferMachine,
};

/// What a direction of transfer supplies to [`Machine`].
///
/// Tasks are of two sorts: a phase's single control operation ([`control_task`]), sent
/// when nothing else is in flight, and parallel work ([`next_task`]).
///
/// [`control_task`]: Direction::control_task
/// [`next_task`]: Direction::next_task
pub(crate) trait Direction {
    type Task: Clone + Debug + PartialEq;

    fn engine(&self) -> &Engine<Self::Task>;
    fn engine_mut(&mut self) -> &mut Engine<Self::Task>;

    /// The current phase's control operation, if it has one.
    fn control_task(&self) -> Option<Self::Task>;
    /// Whether `task` is a control operation (not parallel work).
    fn is_control(task: &Self::Task) -> bool;
    /// The next piece of the current phase's parallel work.
    fn next_task(&mut self) -> Option<Self::Task>;
    /// The operation that carries out `task`.
    fn op_for(&self, task: &Self::Task) -> OpKind;
    /// `task` is being sent.
    fn launched(&mut self, _task: &Self::Task) {}
    /// Puts parallel work taken out of the retry queue (on pause) back in its queue.
    fn requeue(&mut self, task: Self::Task);
    /// Nothing is in flight or waiting for a retry while running: moves to the next
    /// phase if the current one is done, and says whether it did.
    fn settled(&mut self) -> bool;
    /// Forgets the work queued (on a wind-down, once in-flight operations settled).
    fn clear_work(&mut self);
    /// A wind-down settled: sets up the clean-up phase (abort the upload, remove the
    /// partial file) and says whether there is one; otherwise the transfer ends.
    fn clean_up(&mut self, failing: bool) -> bool;
    /// Whether the clean-up phase is under way (no pause or cancel then).
    fn cleaning_up(&self) -> bool;
    /// A paused transfer continues; `control_in_flight` says whether a control operation
    /// of a pause that had not settled is still in flight.
    fn resumed(&mut self, control_in_flight: bool);
    fn on_success(&mut self, task: Self::Task, outcome: Outcome);
    fn on_failure(&mut self, now: Time, slot: Slot<Self::Task>, failure: Failure);
    /// The driver abandoned `task`; returns whether it was parallel work (handled here).
    /// A control operation dropped while running is sent again.
    fn on_dropped(&mut self, task: Self::Task) -> bool;
    /// The whole state, to continue in another process; `None` before there is one.
    fn checkpoint(&self) -> Option<Checkpoint>;
    /// Bytes durably done, and bytes in all.
    fn progress(&self) -> (u64, u64);
    /// Nothing completed for the stall timeout: ends the transfer with `err`.
    fn stalled(&mut self, _now: Time, err: crate::TransferError) {
        self.engine_mut().fail(err);
    }

    fn emit_checkpoint(&mut self) {
        if let Some(cp) = self.checkpoint() {
            self.engine_mut().checkpoint(cp);
        }
    }

    /// Saves one piece of progress: as a delta, or whole when one is due.
    fn emit_delta(&mut self, delta: crate::Delta) {
        if !self.engine_mut().delta(delta) {
            self.emit_checkpoint();
        }
    }

    fn emit_progress(&mut self) {
        let (bytes_done, bytes_total) = self.progress();
        self.engine_mut().emit(Event::Progress {
            bytes_done,
            bytes_total,
        });
    }

    fn launch(&mut self, slot: Slot<Self::Task>) {
        let kind = self.op_for(&slot.task);
        self.launched(&slot.task);
        self.engine_mut().launch(slot, kind);
    }

    /// Starts whatever may start now, and settles pause and cancel once nothing is in
    /// flight.
    fn drive(&mut self) {
        loop {
            match self.engine().state {
                RunState::Finished | RunState::Paused => return,
                RunState::Pausing => {
                    if self.engine().in_flight() == 0 {
                        self.requeue_retries();
                        self.emit_checkpoint();
                        self.engine_mut().state = RunState::Paused;
                        self.engine_mut().emit(Event::Paused);
                    }
                    return;
                }
                RunState::Cancelling => {
                    if self.engine().in_flight() > 0 {
                        return;
                    }
                    self.engine_mut().drain_retries();
                    self.clear_work();
                    let failing = self.engine().failing();
                    if self.clean_up(failing) {
                        self.engine_mut().state = RunState::Running;
                        self.engine_mut().control_due = true;
                    } else {
                        self.engine_mut().end();
                        return;
                    }
                }
                RunState::Running => {}
            }
            while self.engine().has_room() {
                if let Some(slot) = self.engine_mut().pop_ready() {
                    self.launch(slot);
                } else if self.engine().control_due && self.engine().in_flight() == 0 {
                    self.engine_mut().control_due = false;
                    if let Some(task) = self.control_task() {
                        self.launch(Slot::new(task));
                    }
                } else if let Some(task) = self.next_task() {
                    self.launch(Slot::new(task));
                } else {
                    break;
                }
            }
            let settled = self.engine().state == RunState::Running
                && self.engine().in_flight() == 0
                && !self.engine().has_retries();
            if !(settled && self.settled()) {
                return;
            }
        }
    }

    /// On pause: parallel work waiting for a retry goes back to its queue; control
    /// operations are derived again from the phase on resume.
    fn requeue_retries(&mut self) {
        for slot in self.engine_mut().drain_retries() {
            if !Self::is_control(&slot.task) {
                self.requeue(slot.task);
            }
        }
    }
}

/// A transfer state machine: the shared skeleton around one direction's rules. Built as
/// an [`UploadMachine`](crate::UploadMachine) or a
/// [`DownloadMachine`](crate::DownloadMachine); see the crate docs for the contract.
#[derive(Debug)]
pub struct Machine<D> {
    pub(crate) dir: D,
}

impl<D: Direction> TransferMachine for Machine<D> {
    fn handle_outcome(&mut self, now: Time, op: OpId, outcome: Outcome) {
        let Some(slot) = self.dir.engine_mut().finish(op) else {
            return;
        };
        match outcome {
            Outcome::Failed(failure) => self.dir.on_failure(now, slot, failure),
            Outcome::Dropped => {
                if !self.dir.on_dropped(slot.task) && self.dir.engine().state == RunState::Running {
                    self.dir.engine_mut().control_due = true;
                }
            }
            outcome => {
                self.dir.engine_mut().progressed(now);
                self.dir.on_success(slot.task, outcome);
            }
        }
        self.dir.drive();
    }

    fn handle_timeout(&mut self, now: Time) {
        if let Some(err) = self.dir.engine_mut().handle_timeout(now) {
            self.dir.stalled(now, err);
        }
        self.dir.drive();
    }

    fn pause(&mut self, _now: Time) {
        if self.dir.engine().state == RunState::Running && !self.dir.cleaning_up() {
            self.dir.engine_mut().state = RunState::Pausing;
            self.dir.drive();
        }
    }

    fn resume(&mut self, now: Time) {
        if !matches!(
            self.dir.engine().state,
            RunState::Paused | RunState::Pausing
        ) {
            return;
        }
        self.dir.requeue_retries();
        self.dir.engine_mut().state = RunState::Running;
        self.dir.engine_mut().touch(now);
        // A control operation still in flight (a pause that had not settled) answers for
        // itself; sending a second one beside it would, for a Create, open a second upload.
        let control_in_flight = self.dir.engine().in_flight_tasks().any(D::is_control);
        self.dir.resumed(control_in_flight);
        let due = self.dir.control_task().is_some() && !control_in_flight;
        self.dir.engine_mut().control_due = due;
        self.dir.drive();
    }

    fn cancel(&mut self, _now: Time) {
        if matches!(
            self.dir.engine().state,
            RunState::Finished | RunState::Cancelling
        ) || self.dir.cleaning_up()
        {
            return;
        }
        // What the driver has not polled yet never started (a saved transfer cancelled
        // as soon as it is rebuilt): it is taken back rather than answered.
        self.dir.engine_mut().withdraw_unpolled();
        self.dir.engine_mut().wind_down(Ending::Cancelled);
        self.dir.drive();
    }

    fn poll_operation(&mut self) -> Option<Operation> {
        self.dir.engine_mut().poll_operation()
    }

    fn poll_timeout(&self) -> Option<Time> {
        self.dir.engine().poll_timeout()
    }

    fn poll_checkpoint(&mut self) -> Option<Save> {
        self.dir.engine_mut().poll_checkpoint()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.dir.engine_mut().poll_event()
    }

    fn is_finished(&self) -> bool {
        self.dir.engine().state == RunState::Finished
    }

    fn is_paused(&self) -> bool {
        self.dir.engine().state == RunState::Paused
    }

    fn progress(&self) -> (u64, u64) {
        self.dir.progress()
    }
}
