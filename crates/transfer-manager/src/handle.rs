use std::time::Duration;

use resume_store::{Direction, TransferId};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
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
    /// Bytes of the parts or ranges in flight that have crossed the wire so far: not
    /// durable (a part counts in `bytes_done` once it completes, and a part cut off is
    /// sent again), but they show a transfer moving within a part.
    pub bytes_moving: u64,
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

/// What a pause found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PauseReport {
    /// Parts or ranges still in flight when the pause's wait ([`Config::pause_timeout`])
    /// ran out, cut off.
    ///
    /// [`Config::pause_timeout`]: crate::Config::pause_timeout
    pub requests_cut: usize,
    /// Their bytes: at most what a resume sends or fetches again (a part the server
    /// stored before the cut may be kept, once its bytes hash to its ETag).
    pub bytes_to_resend: u64,
    /// How long the pause took, until the checkpoint was durable.
    pub waited: Duration,
}

pub(crate) enum Command {
    Pause(oneshot::Sender<Result<PauseReport, Error>>),
    Resume,
    Cancel,
}

/// A running transfer. Dropping the handle does not stop it; a transfer can have several
/// handles (cloned, or had again by id from [`TransferManager::handle`]).
///
/// [`TransferManager::handle`]: crate::TransferManager::handle
#[derive(Debug, Clone)]
pub struct TransferHandle {
    pub(crate) id: TransferId,
    pub(crate) direction: Direction,
    pub(crate) resumable: bool,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) progress: watch::Receiver<Progress>,
    pub(crate) events: broadcast::Sender<Event>,
    /// How the transfer ended, once it has.
    pub(crate) end: watch::Receiver<Option<Result<TransferOutcome, Error>>>,
}

/// How a transfer's task ended, as the public result: a panic is a bug, said as such.
pub(crate) fn task_result(
    id: &TransferId,
    joined: Result<Result<TransferOutcome, Error>, tokio::task::JoinError>,
) -> Result<TransferOutcome, Error> {
    match joined {
        Ok(r) => r,
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            Err(Error::new(
                ErrorKind::Panicked,
                format!(
                    "transfer {id} panicked ({what}): a bug in s3tm, please report it; its last saved checkpoint is kept"
                ),
            ))
        }
        Err(e) => Err(Error::new(
            ErrorKind::Cancelled,
            format!("transfer {id} was stopped: {e}"),
        )),
    }
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

    /// Pauses: no new requests; resolves once in-flight requests have settled (those still
    /// running after [`Config::pause_timeout`] are cut off, to be sent again on resume)
    /// and the checkpoint is durable. Streams cannot be paused.
    ///
    /// [`Config::pause_timeout`]: crate::Config::pause_timeout
    ///
    /// The requests in flight may finish the transfer meanwhile (a single PutObject, below
    /// the multipart threshold, always pauses by finishing): the answer is then an error
    /// of kind [`ErrorKind::Finished`] that says how it ended, and [`join`](Self::join)
    /// returns its outcome.
    pub async fn pause(&self) -> Result<PauseReport, Error> {
        if !self.resumable {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "uploads from memory or a reader and downloads into a writer cannot be paused; cancel them instead",
            ));
        }
        let (tx, rx) = oneshot::channel();
        self.send(Command::Pause(tx))?;
        rx.await.unwrap_or_else(|_| Err(self.finished()))
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

    /// Waits for the end. Every handle of a transfer (see [`TransferManager::handle`])
    /// gets the same answer.
    ///
    /// [`TransferManager::handle`]: crate::TransferManager::handle
    pub async fn join(self) -> Result<TransferOutcome, Error> {
        wait_for_end(self.end, format!("transfer {}", self.id)).await
    }

    /// What [`join`](Self::join) waits on, without the handle's command channel: a
    /// transfer whose every handle is gone ends once paused, even while this waits.
    pub(crate) fn end(
        &self,
    ) -> impl Future<Output = Result<TransferOutcome, Error>> + Send + 'static {
        wait_for_end(self.end.clone(), format!("transfer {}", self.id))
    }

    fn send(&self, c: Command) -> Result<(), Error> {
        self.commands.send(c).map_err(|_| self.finished())
    }

    /// The answer to a command for a transfer that has ended, saying how it ended.
    fn finished(&self) -> Error {
        let how = match self.progress.borrow().state {
            TransferState::Completed => "completed",
            TransferState::Failed => "failed",
            TransferState::Cancelled => "was cancelled",
            _ => "has ended",
        };
        Error::new(
            ErrorKind::Finished,
            format!("transfer {} {how}; `join` returns how it ended", self.id),
        )
    }
}

/// The end of a transfer or job (`what`, as messages name it: "transfer ID"), once
/// `end` holds it.
pub(crate) async fn wait_for_end<T: Clone>(
    mut end: watch::Receiver<Option<Result<T, Error>>>,
    what: String,
) -> Result<T, Error> {
    loop {
        if let Some(result) = end.borrow_and_update().clone() {
            return result;
        }
        if end.changed().await.is_err() {
            return end.borrow().clone().unwrap_or_else(|| {
                Err(Error::new(
                    ErrorKind::Cancelled,
                    format!("{what} was stopped with its runtime"),
                ))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transfer task that panicked ends as what it is, a bug, not as a server error.
    #[tokio::test]
    async fn a_panicked_task_is_reported_as_a_panic() {
        let id = TransferId::new("0123456789abcdef").unwrap();
        let joined = tokio::spawn(async { panic!("the machine broke") }).await;
        let err = task_result(&id, joined).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Panicked);
        let msg = err.to_string();
        assert!(
            msg.contains("the machine broke") && msg.contains("a bug in s3tm"),
            "{msg}"
        );
    }
}
