//! Checkpoints go to the resume store on a thread of their own, in the order the machine
//! emitted them; when saves fall behind, only the newest pending one is written (each
//! checkpoint holds the whole state, so skipping an older one loses nothing).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use resume_store::{Record, RecordMeta, ResumeStore, StoreError, TransferId};
use serde::{Deserialize, Serialize};
use transfer_core::{Checkpoint, ChecksumAlgorithm};

use crate::io::Sink;

/// Format version of [`Stored`] payloads.
pub(crate) const STORED_VERSION: u32 = 1;

/// What a record's payload holds: the machine's checkpoint plus what the driver needs to
/// rebuild the transfer in another process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub(crate) bucket: String,
    pub(crate) key: String,
    /// The source file of an upload, or the destination of a download.
    pub(crate) local_path: PathBuf,
    pub(crate) part_size_bytes: u64,
    pub(crate) multipart_threshold_bytes: u64,
    pub(crate) checksum: Option<ChecksumAlgorithm>,
    /// `None` until the machine emitted one (a single PutObject never does).
    pub(crate) checkpoint: Option<Checkpoint>,
    /// The server the transfer talks to; `None` in records of s3tm before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) endpoint: Option<SavedEndpoint>,
}

/// The server a saved transfer was started against, so that it is resumed against the
/// same one. It holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedEndpoint {
    /// The custom endpoint (`http://127.0.0.1:9000`), or `None` for AWS.
    pub endpoint_url: Option<String>,
    /// The region requests were signed for.
    pub region: String,
    /// Path-style addressing, when it was forced one way.
    pub path_style: Option<bool>,
}

impl SavedEndpoint {
    /// Where a manager with `config` sends its requests.
    pub fn of(config: &crate::Config) -> SavedEndpoint {
        SavedEndpoint {
            endpoint_url: config.endpoint_url.clone(),
            region: config.region.clone(),
            path_style: config.path_style,
        }
    }

    /// Whether both name the same server and region (addressing aside, which reaches the
    /// same bucket either way).
    pub fn same_server(&self, other: &SavedEndpoint) -> bool {
        let url = |e: &SavedEndpoint| {
            e.endpoint_url
                .as_deref()
                .map(|u| u.trim_end_matches('/').to_ascii_lowercase())
        };
        url(self) == url(other) && self.region == other.region
    }
}

impl std::fmt::Display for SavedEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.endpoint_url {
            Some(url) => write!(f, "{url} (region {})", self.region),
            None => write!(f, "AWS S3 in {}", self.region),
        }
    }
}

pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn record(meta: &RecordMeta, stored: &Stored) -> Result<Record, StoreError> {
    let payload = serde_json::to_vec(stored).map_err(|e| StoreError::Encode {
        id: meta.id.to_string(),
        reason: e.to_string(),
    })?;
    Ok(Record {
        meta: meta.clone(),
        payload_version: STORED_VERSION,
        payload,
        journal: Vec::new(),
    })
}

enum Msg {
    Save(Box<Record>),
    Remove(TransferId),
    Flush(tokio::sync::oneshot::Sender<Result<(), StoreError>>),
}

/// Sends checkpoints to the store's thread.
pub(crate) struct Persister {
    tx: mpsc::Sender<Msg>,
}

impl Persister {
    /// Starts the thread. With a download's `sink`, its bytes are made durable before
    /// each save, so a checkpoint never names bytes a power loss could take back.
    pub(crate) fn start(store: Arc<dyn ResumeStore>, sink: Option<Arc<Sink>>) -> Persister {
        let (tx, rx) = mpsc::channel::<Msg>();
        let spawned = std::thread::Builder::new().name("s3tm-checkpoints".into()).spawn(move || {
            let mut failed: Option<StoreError> = None;
            // Warn once when saves start failing (a full or read-only state directory),
            // and once when they work again, rather than once a part.
            let mut failing = false;
            let mut outcome = |id: &TransferId, result: Result<(), StoreError>, failed: &mut Option<StoreError>| match result {
                Ok(()) => {
                    if std::mem::take(&mut failing) {
                        tracing::warn!(transfer = %id, "checkpoints are saved again");
                    }
                }
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(transfer = %id, error = %e, "checkpoint not saved; the transfer goes on, but a crash now would lose the work since the last saved checkpoint");
                    }
                    *failed = Some(e);
                }
            };
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                batch.extend(rx.try_iter());
                let len = batch.len();
                let mut iter = batch.into_iter().enumerate().peekable();
                while let Some((i, msg)) = iter.next() {
                    match msg {
                        Msg::Save(r) => {
                            let superseded = i + 1 < len && matches!(iter.peek(), Some((_, Msg::Save(_))));
                            let synced = match (&sink, superseded) {
                                (Some(sink), false) => sink.sync_blocking(),
                                _ => Ok(()),
                            };
                            let id = &r.meta.id;
                            if let Err(e) = synced {
                                let e = StoreError::Io { path: PathBuf::from("partial file"), source: e };
                                outcome(id, Err(e), &mut failed);
                            } else if !superseded {
                                outcome(id, store.save(&r), &mut failed);
                            }
                        }
                        Msg::Remove(id) => match store.remove(&id) {
                            Ok(()) | Err(StoreError::NotFound { .. }) => {}
                            Err(e) => {
                                tracing::warn!(transfer = %id, error = %e, "checkpoint not removed");
                                failed = Some(e);
                            }
                        },
                        Msg::Flush(reply) => {
                            let _ = reply.send(failed.take().map_or(Ok(()), Err));
                        }
                    }
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the checkpoint thread; checkpoints will not be saved");
        }
        Persister { tx }
    }

    pub(crate) fn save(&self, record: Record) {
        let _ = self.tx.send(Msg::Save(Box::new(record)));
    }

    pub(crate) fn remove(&self, id: TransferId) {
        let _ = self.tx.send(Msg::Remove(id));
    }

    /// Waits until everything sent so far is durable; reports a failed save since the
    /// last flush.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stopped = || StoreError::Io {
            path: PathBuf::from("checkpoint thread"),
            source: std::io::Error::other("the checkpoint thread is not running"),
        };
        if self.tx.send(Msg::Flush(tx)).is_err() {
            return Err(stopped());
        }
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }
}
