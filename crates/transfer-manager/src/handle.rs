use std::time::Duration;

use resume_store::{Direction, TransferId};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use transfer_core::{Event, Verified};

use crate::{Error, ErrorKind};

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferState {
    /// Moving bytes.
    Running,
    /// Asked to pause; in-flight requests are settling.
    Pausing,
    /// Paused; the checkpoint is durable.
    Paused,
    /// Done and verified.
    Completed,
    /// Failed; see [`TransferHandle::join`].
    Failed,
    /// Cancelled and cleaned up.
    Cancelled,
}

/// A snapshot of a transfer's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes durably done.
    pub bytes_done: u64,
    /// Bytes in all (zero until a download knows its size).
    pub bytes_total: u64,
    /// Where it stands.
    pub state: TransferState,
}

/// What a finished transfer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOutcome {
    /// The transfer.
    pub id: TransferId,
    /// ETag of the object.
    pub etag: Option<String>,
    /// How integrity was established.
    pub verified: Verified,
    /// The full-object checksum, as `ALGORITHM:value-in-hex`, when one was computed.
    pub checksum: Option<String>,
    /// Size of the object.
    pub bytes_total: u64,
    /// Bytes moved by this run.
    pub bytes_transferred: u64,
    /// Bytes sent or fetched more than once (retries, dropped or invalidated parts).
    pub bytes_resent: u64,
    /// Bytes already done when this run began.
    pub bytes_resumed: u64,
    /// Bytes carried over from an earlier run (parts sent, ranges in the partial file)
    /// that this run read back from the local file and checked against the hashes
    /// recorded for them before trusting them.
    pub bytes_rechecked: u64,
    /// Of those, bytes that no longer matched and were transferred again.
    pub bytes_recheck_failed: u64,
    /// Wall time spent reading those bytes back (and hashing parts the server had but
    /// no checkpoint recorded); the reads run beside each other and beside transfers.
    pub recheck_elapsed: Duration,
    /// What went wrong beside the transfer without failing it (checkpoints that could
    /// not be saved, say), one sentence each.
    pub warnings: Vec<String>,
    /// Time this run took.
    pub elapsed: Duration,
    /// Whether this run continued an earlier one.
    pub resumed: bool,
}

pub(crate) enum Command {
    Pause(oneshot::Sender<Result<(), Error>>),
    Resume,
    Cancel,
}

/// A running transfer. Dropping the handle does not stop it.
#[derive(Debug)]
pub struct TransferHandle {
    pub(crate) id: TransferId,
    pub(crate) direction: Direction,
    pub(crate) resumable: bool,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) progress: watch::Receiver<Progress>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) task: JoinHandle<Result<TransferOutcome, Error>>,
}

impl TransferHandle {
    /// The transfer's id (also the id of its checkpoint).
    pub fn id(&self) -> &TransferId {
        &self.id
    }

    /// Upload or download.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Whether the transfer saves checkpoints and can be paused and resumed: false for
    /// uploads from memory or a reader, and for downloads into a writer, a character
    /// device or a FIFO.
    pub fn is_resumable(&self) -> bool {
        self.resumable
    }

    /// Progress, updated after every completed part or range.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Every event from now on: progress, retries, restarts, pause, the end.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Pauses: no new requests; resolves once in-flight requests have settled and the
    /// checkpoint is durable. Streams cannot be paused.
    pub async fn pause(&self) -> Result<(), Error> {
        if !self.resumable {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "uploads from memory or a reader and downloads into a writer cannot be paused; cancel them instead",
            ));
        }
        let (tx, rx) = oneshot::channel();
        self.send(Command::Pause(tx))?;
        rx.await.unwrap_or_else(|_| Err(finished()))
    }

    /// Continues after [`pause`](Self::pause).
    pub fn resume(&self) -> Result<(), Error> {
        self.send(Command::Resume)
    }

    /// Cancels: aborts the multipart upload or removes the partial file. [`join`](Self::join)
    /// then returns an error of kind [`ErrorKind::Cancelled`].
    pub fn cancel(&self) -> Result<(), Error> {
        self.send(Command::Cancel)
    }

    /// Waits for the end.
    pub async fn join(self) -> Result<TransferOutcome, Error> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(Error::new(
                ErrorKind::Remote,
                format!("transfer task failed: {e}"),
            )),
        }
    }

    fn send(&self, c: Command) -> Result<(), Error> {
        self.commands.send(c).map_err(|_| finished())
    }
}

fn finished() -> Error {
    Error::new(ErrorKind::InvalidInput, "the transfer has already finished")
}
