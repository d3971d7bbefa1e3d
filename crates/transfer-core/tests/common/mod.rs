//! Shared pieces of the property tests: schedules, faults and content generation.
#![allow(dead_code, unreachable_pub, missing_docs)]

use proptest::prelude::*;
use transfer_core::{
    Checkpoint, Event, Failure, FailureKind, Operation, Outcome, RetryConfig, Save, Time,
    TransferMachine,
};

pub use transfer_core::MIB;

/// What happens to one delivered operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// 503 SlowDown, not executed.
    Throttle,
    /// 500 InternalError, not executed.
    ServerError,
    /// Connection reset before the server saw the request.
    ResetBefore,
    /// Executed on the server, but the answer was lost.
    LostAnswer,
    /// The driver abandoned the request before sending it.
    Drop,
    /// Downloads: a byte arrives corrupted (and the driver hashes what it received).
    Corrupt,
}

/// One step of a random schedule.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// Answer the in-flight operation at this index (mod the number in flight).
    Deliver(usize, Fault),
    /// Let the clock run to the next deadline, when nothing is in flight.
    Timeout,
    /// The requests in flight hang: the clock runs past the stall timeout with them
    /// unanswered.
    Stall,
    Pause,
    Resume,
    Cancel,
    /// The process dies; `executed` says whether in-flight requests reached the server.
    /// The checkpoint saver runs behind the machine (newest wins): up to `lost` of the
    /// newest checkpoints may not have reached the disk, down to the last one the driver
    /// waited for (before preparing a partial file, and on pause).
    Crash {
        executed: bool,
        lost: usize,
    },
    /// Uploads: the source file is modified. Downloads: the object is replaced.
    ChangeRemoteOrSource,
    /// Uploads: the server forgets the multipart upload (lifecycle expiry).
    /// Downloads: the partial file is deleted by the user.
    LoseState,
    /// While the transfer is paused (or right after a crash, if it is not), local bytes
    /// it already handled change behind its back without changing the file's metadata:
    /// uploads, a byte of the source (a filesystem without ctime); downloads, a byte of
    /// the partial file. The offset is `at` modulo the file's length.
    TamperLocal {
        at: u64,
    },
}

pub fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        12 => Just(Fault::None),
        1 => Just(Fault::Throttle),
        1 => Just(Fault::ServerError),
        1 => Just(Fault::ResetBefore),
        1 => Just(Fault::LostAnswer),
        1 => Just(Fault::Drop),
        1 => Just(Fault::Corrupt),
    ]
}

pub fn action(rare: u32) -> impl Strategy<Value = Action> {
    prop_oneof![
        60 => (any::<usize>(), fault()).prop_map(|(i, f)| Action::Deliver(i, f)),
        8 => Just(Action::Timeout),
        rare => Just(Action::Stall),
        4 => Just(Action::Pause),
        6 => Just(Action::Resume),
        1 => Just(Action::Cancel),
        3 => (any::<bool>(), prop_oneof![3 => Just(0usize), 1 => 1usize..4])
            .prop_map(|(executed, lost)| Action::Crash { executed, lost }),
        rare => Just(Action::ChangeRemoteOrSource),
        rare => Just(Action::LoseState),
        rare => any::<u64>().prop_map(|at| Action::TamperLocal { at }),
    ]
}

pub fn schedule(rare: u32) -> impl Strategy<Value = Vec<Action>> {
    prop::collection::vec(action(rare), 0..160)
}

/// What a crash leaves of the checkpoints emitted so far (`history`, oldest first): the
/// saver runs behind the machine and keeps only the newest record, so up to `lost` of
/// the newest may not have reached the disk, but never one of the first `durable`, which
/// the driver waited for. Truncates `history` to what survived and returns the
/// checkpoint a rebuilt machine starts from.
pub fn surviving<T: Clone>(history: &mut Vec<T>, durable: &mut usize, lost: usize) -> Option<T> {
    let kept = history
        .len()
        .saturating_sub(lost)
        .max(*durable)
        .min(history.len());
    history.truncate(kept);
    *durable = kept;
    history.last().cloned()
}

/// Deterministic pseudo-random bytes (splitmix64).
pub fn content(seed: u64, len: u64) -> Vec<u8> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len as usize + 8);
    while (out.len() as u64) < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len as usize);
    out
}

/// Sizes around the interesting boundaries, kept small enough for many cases, and now
/// and then a transfer of over 100 parts of `part_bytes` (the smallest part or range the
/// machine will use), where part numbers, listings and checkpoints grow long.
pub fn size(part_bytes: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => Just(0u64),
        2 => Just(1u64),
        4 => 1..5 * MIB,
        2 => Just(5 * MIB - 1),
        2 => Just(5 * MIB),
        2 => Just(5 * MIB + 1),
        8 => 5 * MIB..18 * MIB,
        1 => 100 * part_bytes + 1..104 * part_bytes,
    ]
}

/// Retries generous enough that only a bug exhausts them under the random faults.
pub fn retry(seed: u64) -> RetryConfig {
    retry_budget(seed, 200)
}

/// Retries with `attempts` tries per operation, throttled or not.
pub fn retry_budget(seed: u64, attempts: u32) -> RetryConfig {
    RetryConfig {
        max_attempts: attempts,
        max_throttled_attempts: attempts,
        seed,
        ..RetryConfig::default()
    }
}

/// Mostly the generous budget; sometimes one small enough that random faults exhaust it.
pub fn attempts() -> impl Strategy<Value = u32> {
    prop_oneof![4 => Just(200u32), 1 => 2u32..5]
}

pub fn failure(fault: Fault) -> Option<Failure> {
    let (kind, status, code) = match fault {
        Fault::Throttle => (FailureKind::Throttled, Some(503), Some("SlowDown")),
        Fault::ServerError => (FailureKind::Transient, Some(500), Some("InternalError")),
        Fault::ResetBefore | Fault::LostAnswer => (FailureKind::Transport, None, None),
        _ => return None,
    };
    Some(Failure {
        kind,
        status,
        code: code.map(str::to_owned),
        message: format!("injected {fault:?}"),
    })
}

pub fn status_failure(kind: FailureKind, status: u16, code: &str) -> Failure {
    Failure {
        kind,
        status: Some(status),
        code: Some(code.to_owned()),
        message: code.to_owned(),
    }
}

/// 512 cases by default (CI), more with PROPTEST_CASES (`cargo xtask proptest --cases N`);
/// failures are kept in the committed `proptest-regressions/` folder.
pub fn config(name: &'static str) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(prop::test_runner::FileFailurePersistence::Direct(
            name,
        ))),
        ..ProptestConfig::default()
    }
}

/// The driver's side of a model test, the same for both directions: the machine, the
/// clock, the operations in flight and the application's commands.
pub struct Driver<M> {
    pub machine: M,
    pub now: Time,
    pub in_flight: Vec<Operation>,
    pub paused_cmd: bool,
    pub cancelled_cmd: bool,
    /// A cancel was ever issued (a crash forgets the command, not the fact).
    pub ever_cancelled: bool,
    pub progress_floor: u64,
    pub finished: Option<Event>,
    pub log: Vec<String>,
    /// The clock ran past the stall timeout with nothing answered.
    pub stalled: bool,
}

impl<M> Driver<M> {
    pub fn new(machine: M) -> Self {
        Driver {
            machine,
            now: Time::ZERO,
            in_flight: vec![],
            paused_cmd: false,
            cancelled_cmd: false,
            ever_cancelled: false,
            progress_floor: 0,
            finished: None,
            log: vec![],
            stalled: false,
        }
    }

    /// Checks what every event must respect (progress never goes back within a run, at
    /// most one ending) and records it; the world looks at the rest.
    pub fn observe(&mut self, ev: &Event) {
        self.log.push(format!("event {ev:?}"));
        match ev {
            Event::Progress {
                bytes_done,
                bytes_total,
            } => {
                assert!(
                    *bytes_done >= self.progress_floor,
                    "progress went back: {bytes_done} < {}",
                    self.progress_floor
                );
                assert!(bytes_done <= bytes_total);
                self.progress_floor = *bytes_done;
            }
            Event::Restarted { .. } | Event::Invalidated { .. } => self.progress_floor = 0,
            Event::Completed(_) | Event::Failed(_) | Event::Cancelled => {
                assert!(self.finished.is_none(), "two endings");
                self.finished = Some(ev.clone());
            }
            _ => {}
        }
    }

    /// The steps so far, for failure messages.
    pub fn history(&self) -> String {
        self.log.join("\n")
    }
}

/// A deterministic world around one machine: what the server and the local files do.
/// The schedule of actions, delivery and draining are shared.
pub trait Model {
    type Machine: TransferMachine;

    fn driver(&mut self) -> &mut Driver<Self::Machine>;
    /// Carries out `op` (under `fault`) and says what the driver reports.
    fn execute(&mut self, op: &Operation, fault: Fault) -> Outcome;
    /// Takes every output of the machine, checking it as it goes.
    fn poll(&mut self);
    fn crash(&mut self, executed: bool, lost: usize);
    /// Uploads: the source file is modified. Downloads: the object is replaced.
    fn change(&mut self);
    fn lose_state(&mut self);
    fn tamper(&mut self, at: u64);
    /// How long requests may hang before the machine calls the transfer stalled.
    fn stall_timeout(&self) -> std::time::Duration;

    fn deliver(&mut self, index: usize, fault: Fault) {
        let d = self.driver();
        if d.in_flight.is_empty() {
            return;
        }
        let op = d.in_flight.remove(index % d.in_flight.len());
        let outcome = self.execute(&op, fault);
        let d = self.driver();
        d.log.push(format!("answer {:?} {fault:?}", op.id));
        d.machine.handle_outcome(d.now, op.id, outcome);
        self.poll();
    }

    fn step(&mut self, action: Action) {
        let stall_timeout = self.stall_timeout();
        let d = self.driver();
        if d.finished.is_some() {
            return;
        }
        d.log.push(format!("{action:?}"));
        match action {
            Action::Deliver(i, f) => self.deliver(i, f),
            Action::Timeout => {
                if d.in_flight.is_empty()
                    && let Some(t) = d.machine.poll_timeout()
                {
                    d.now = d.now.max(t);
                    d.machine.handle_timeout(d.now);
                    self.poll();
                }
            }
            Action::Pause => {
                if !d.cancelled_cmd {
                    d.paused_cmd = true;
                    d.machine.pause(d.now);
                    self.poll();
                }
            }
            Action::Resume => {
                d.paused_cmd = false;
                d.progress_floor = 0;
                d.machine.resume(d.now);
                self.poll();
            }
            Action::Cancel => {
                d.paused_cmd = false;
                d.cancelled_cmd = true;
                d.ever_cancelled = true;
                d.machine.cancel(d.now);
                self.poll();
            }
            Action::Crash { executed, lost } => self.crash(executed, lost),
            Action::Stall => {
                d.now = d.now + stall_timeout;
                d.stalled = true;
                d.machine.handle_timeout(d.now);
                self.poll();
            }
            Action::ChangeRemoteOrSource => self.change(),
            Action::LoseState => self.lose_state(),
            Action::TamperLocal { at } => {
                if !self.driver().machine.is_paused() {
                    self.crash(false, 0);
                }
                self.tamper(at);
            }
        }
    }

    /// Lets the transfer run to its end with no more faults.
    fn drain(&mut self) {
        for _ in 0..100_000 {
            let d = self.driver();
            if d.finished.is_some() {
                return;
            }
            if d.machine.is_paused() || d.paused_cmd {
                d.paused_cmd = false;
                d.progress_floor = 0;
                d.machine.resume(d.now);
                self.poll();
            } else if !d.in_flight.is_empty() {
                self.deliver(0, Fault::None);
            } else if let Some(t) = d.machine.poll_timeout() {
                d.now = d.now.max(t);
                d.machine.handle_timeout(d.now);
                self.poll();
            } else {
                panic!(
                    "stuck: nothing in flight, no timer, not finished\n{}",
                    d.history()
                );
            }
        }
        panic!("did not finish");
    }
}

/// The checkpoint a store holds after `save`, given the one it held before: a delta is
/// applied to it, as the driver does when it rebuilds a transfer from a record and its
/// journal.
pub fn replay(last: Option<Checkpoint>, save: Save) -> Checkpoint {
    match save {
        Save::Whole(cp) => cp,
        Save::Delta(delta) => {
            let mut cp = last.expect("a delta is saved only after a whole checkpoint");
            cp.apply(delta)
                .expect("a delta applies to its own checkpoint");
            cp
        }
    }
}
