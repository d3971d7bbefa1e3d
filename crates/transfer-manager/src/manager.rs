use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use resume_store::{
    Direction, FileStore, Lease, Record, RecordKind, RecordMeta, ResumeStore, StoreError,
    TransferId,
};
use s3_protocol::{Addressing, Endpoint, S3Config};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, broadcast, mpsc, watch};
use transfer_core::{
    Checkpoint, Delta, DownloadConfig, DownloadMachine, SourceFingerprint, Time, TransferMachine,
    UploadConfig, UploadMachine,
};

use crate::config::{Config, StateStore};
use crate::driver::{Driver, Persistence};
use crate::exec::OpContext;
use crate::handle::{Command, Progress, TransferHandle, TransferOutcome, TransferState};
use crate::http::HttpClient;
use crate::io::{Destination, PartialError, Sink, Source, destination, fingerprint, open_stream};
use crate::md5_lanes::Md5Lanes;
use crate::persist::{Persister, STORED_VERSION, SavedEndpoint, Stored, now_unix_ms, record};
use crate::{Error, ErrorKind};

/// Suffix of the file a download writes to until it is verified.
pub const PARTIAL_SUFFIX: &str = ".s3tm-partial";

/// What a stream is called where a machine names a file: the source of an upload from a
/// reader, the "partial file" of a download into a writer.
pub(crate) const STREAM_PATH: &str = "<stream>";

/// A transfer the store knows about, as [`TransferManager::list_resumable`] reports it.
#[derive(Debug, Clone)]
pub struct ResumableTransfer {
    /// Its id.
    pub id: TransferId,
    /// Upload or download.
    pub direction: Direction,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Source file of an upload, destination of a download.
    pub local_path: PathBuf,
    /// Bytes done.
    pub bytes_done: u64,
    /// Bytes in all.
    pub bytes_total: u64,
    /// Running (here or in another process), paused, interrupted (its process died) or
    /// failed.
    pub state: SavedState,
    /// When it started, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// When its checkpoint was last written.
    pub updated_unix_ms: u64,
    /// A single transfer, a directory job (`key` is its prefix, `local_path` its
    /// directory, the bytes those of its files), or one file of a job.
    pub kind: RecordKind,
}

/// Where a saved transfer stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SavedState {
    /// Running, in this process or another (which holds its lease).
    Running,
    /// Paused; the checkpoint is durable.
    Paused,
    /// Its process died (a crash, `kill -9`, a reboot); the last checkpoint resumes it.
    Interrupted,
    /// It failed with a checkpoint worth resuming.
    Failed,
    /// A state written by a newer s3tm.
    Unknown(String),
}

impl SavedState {
    /// `running`, `paused`, `interrupted`, `failed`, or the unknown state's name.
    pub fn as_str(&self) -> &str {
        match self {
            SavedState::Running => "running",
            SavedState::Paused => "paused",
            SavedState::Interrupted => "interrupted",
            SavedState::Failed => "failed",
            SavedState::Unknown(s) => s,
        }
    }
}

impl std::fmt::Display for SavedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record the store could not read, as [`TransferManager::list_resumable`] reports it.
#[derive(Debug, Clone)]
pub struct UnreadableTransfer {
    /// Its id.
    pub id: TransferId,
    /// What is wrong and what to do.
    pub error: String,
}

struct Active {
    /// A handle of its own, from which others are had again by id.
    handle: TransferHandle,
    bucket: String,
    key: String,
}

struct Inner {
    config: Config,
    http: HttpClient,
    permits: Arc<Semaphore>,
    store: Arc<dyn ResumeStore>,
    active: Mutex<HashMap<TransferId, Active>>,
    blocking_runtime: OnceLock<tokio::runtime::Runtime>,
    md5_lanes: Arc<Md5Lanes>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(rt) = self.blocking_runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs uploads and downloads. Cheap to clone; clones share transfers and connections.
#[derive(Clone)]
pub struct TransferManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TransferManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransferManager")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// How a file transfer is kept: under which id, as what kind of record, and whether it
/// is saved at all (a small file of a job is not: the job's journal records it once
/// done, and it starts over if cut off).
#[derive(Clone, Debug)]
pub(crate) struct Keep {
    pub(crate) id: Option<TransferId>,
    pub(crate) kind: RecordKind,
    pub(crate) saved: bool,
}

impl Keep {
    /// A transfer of its own, saved under a new id.
    fn single() -> Keep {
        Keep {
            id: None,
            kind: RecordKind::Transfer,
            saved: true,
        }
    }
}

/// What a new transfer is made of before it runs.
struct Setup {
    id: TransferId,
    direction: Direction,
    bucket: String,
    key: String,
    machine: Box<dyn TransferMachine + Send + Sync>,
    source: Option<Arc<Source>>,
    sink: Option<Arc<Sink>>,
    persistence: Option<Persistence>,
    resumed: bool,
    upload_checksum: Option<transfer_core::ChecksumAlgorithm>,
}

/// What a saved transfer is rebuilt into before it runs: its machine, and the source of an
/// upload or the sink of a download.
type Rebuilt = (
    Box<dyn TransferMachine + Send + Sync>,
    Option<Arc<Source>>,
    Option<Arc<Sink>>,
);

impl TransferManager {
    /// A manager for `config`. Opens the checkpoint store (creating its directory).
    pub fn new(config: Config) -> Result<Self, Error> {
        let invalid = |e: s3_protocol::RequestError| {
            Error::with_source(ErrorKind::InvalidInput, e.to_string(), e)
        };
        let endpoint = match &config.endpoint_url {
            Some(url) => Endpoint::parse(url).map_err(invalid)?,
            None => Endpoint::aws(&config.region).map_err(invalid)?,
        };
        let addressing = match config.path_style {
            Some(true) => Addressing::PathStyle,
            Some(false) => Addressing::VirtualHosted,
            None => Addressing::Auto,
        };
        let s3 = S3Config::custom(config.region.clone(), endpoint, addressing);
        let bandwidth = match config.bandwidth_limit_bytes_per_sec {
            Some(rate) if rate < crate::MIN_BANDWIDTH_LIMIT_BYTES_PER_SEC => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "a bandwidth limit of {rate} bytes/s is below the smallest s3tm accepts ({} bytes/s, 64KiB)",
                        crate::MIN_BANDWIDTH_LIMIT_BYTES_PER_SEC
                    ),
                ));
            }
            Some(rate) => Some(Arc::new(crate::bandwidth::Bandwidth::new(rate))),
            None => None,
        };
        let http = HttpClient::new(
            s3,
            config.credentials.clone(),
            config.connect_timeout,
            config.read_timeout,
            config.ca_bundle.as_deref(),
            bandwidth,
        )?;
        let store: Arc<dyn ResumeStore> = match &config.state {
            StateStore::Default => Arc::new(FileStore::open_default().map_err(Error::store)?),
            StateStore::Dir(d) => Arc::new(FileStore::open(d.clone()).map_err(Error::store)?),
            StateStore::Custom(s) => s.clone(),
        };
        let permits = Arc::new(Semaphore::new(config.max_in_flight_total.max(1)));
        let md5_lanes = Arc::new(
            Md5Lanes::new().map_err(|e| Error::local("cannot start the MD5 hashing thread", e))?,
        );
        Ok(TransferManager {
            inner: Arc::new(Inner {
                config,
                http,
                permits,
                store,
                active: Mutex::new(HashMap::new()),
                blocking_runtime: OnceLock::new(),
                md5_lanes,
            }),
        })
    }

    /// The checkpoint store.
    pub fn store(&self) -> &Arc<dyn ResumeStore> {
        &self.inner.store
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The retry settings of one transfer or request, with a jitter seed of its own.
    fn retry_config(&self) -> transfer_core::RetryConfig {
        let mut retry = self.inner.config.retry.clone();
        retry.seed ^= fastrand::u64(..);
        retry
    }

    fn upload_config(&self) -> UploadConfig {
        let c = &self.inner.config;
        let retry = self.retry_config();
        UploadConfig {
            multipart_threshold_bytes: c.multipart_threshold_bytes,
            part_size_bytes: c.part_size_bytes,
            max_in_flight: c.max_in_flight_per_upload,
            memory_budget_bytes: c.max_memory_bytes,
            checksum: c.checksum,
            cancel_policy: c.cancel_policy,
            retry,
        }
    }

    /// For an upload no checkpoint records (bytes, a reader, a stream): nothing could
    /// resume or cancel a multipart upload retained on cancel, so cancel aborts it,
    /// whatever [`Config::cancel_policy`] says.
    fn unsaved_upload_config(&self) -> UploadConfig {
        UploadConfig {
            cancel_policy: transfer_core::CancelPolicy::Abort,
            ..self.upload_config()
        }
    }

    fn download_config(&self) -> DownloadConfig {
        let c = &self.inner.config;
        let retry = self.retry_config();
        DownloadConfig {
            range_size_bytes: c.part_size_bytes,
            max_in_flight: c.max_in_flight_per_download,
            retry,
        }
    }

    /// Uploads the file at `path` to `bucket`/`key`: one PutObject below the multipart
    /// threshold, a resumable multipart upload above it. Returns once the transfer has
    /// started; the handle pauses, resumes, cancels and joins it.
    pub async fn upload_file(
        &self,
        bucket: &str,
        key: &str,
        path: impl AsRef<Path>,
    ) -> Result<TransferHandle, Error> {
        self.upload_file_as(bucket, key, path.as_ref(), Keep::single())
            .await
    }

    /// [`upload_file`](Self::upload_file), kept as `keep` says.
    pub(crate) async fn upload_file_as(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        keep: Keep,
    ) -> Result<TransferHandle, Error> {
        let path = absolute(path)?;
        let fp = blocking_fingerprint(&path).await?;
        let config = if keep.saved {
            self.upload_config()
        } else {
            self.unsaved_upload_config()
        };
        let machine = UploadMachine::new(config, fp.clone(), Time::ZERO);
        let source = blocking_open(&path, fp.clone()).await?;
        let id = keep.id.clone().unwrap_or_else(new_id);
        let persistence = self
            .persistence(
                &keep,
                &id,
                Direction::Upload,
                bucket,
                key,
                &path,
                fp.size_bytes,
                None,
            )
            .await?;
        self.spawn(Setup {
            id,
            direction: Direction::Upload,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            machine: Box::new(machine),
            source: Some(Arc::new(source)),
            sink: None,
            persistence,
            resumed: false,
            upload_checksum: self.inner.config.checksum,
        })
    }

    /// Downloads `bucket`/`key` to `path` with parallel ranged GETs pinned to the
    /// object's ETag. Bytes go to `path` + [`PARTIAL_SUFFIX`] and are moved into place
    /// only once verified.
    ///
    /// s3tm never renames over, follows or writes through a file that is not its own.
    /// Before the first byte: a directory at `path` is refused; so is a symbolic link,
    /// unless it leads to a character device or FIFO; so are block devices and sockets.
    /// A character device or FIFO (`/dev/null`, `/dev/stdout` on a pipe or terminal, a
    /// named pipe) is written into directly, bytes in order and verified as a file is,
    /// without a partial file: such a download is not resumable (see
    /// [`TransferHandle::is_resumable`]). The partial file is used only if it is a regular
    /// file of this user's (opened with `O_NOFOLLOW`, created with `O_EXCL`), and it is
    /// locked for the whole transfer: a second download to the same `path` (from another
    /// process or state directory) fails at once with [`ErrorKind::Locked`].
    pub async fn download_file(
        &self,
        bucket: &str,
        key: &str,
        path: impl AsRef<Path>,
    ) -> Result<TransferHandle, Error> {
        self.download_file_as(bucket, key, path.as_ref(), Keep::single())
            .await
    }

    /// [`download_file`](Self::download_file), kept as `keep` says. A file of a job is
    /// not checked against other saved downloads to the same place: the job's lease
    /// keeps a second run of it out, and the partial file's lock any other download.
    pub(crate) async fn download_file_as(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        keep: Keep,
    ) -> Result<TransferHandle, Error> {
        let dest = absolute(path)?;
        if let Destination::Stream = blocking_destination(&dest).await? {
            if !keep.kind.is_transfer() {
                // A job writes files: a device or FIFO at a key's path (or a link to
                // one) is refused, never written into (nor waited on for a reader).
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "refused: {} is a character device or FIFO, or a link to one",
                        dest.display()
                    ),
                ));
            }
            let stream = open_stream(&dest).await?;
            return self.download_to_writer(bucket, key, stream).await;
        }
        if keep.kind.is_transfer() {
            self.refuse_second_download_to(&dest).await?;
        }
        let partial = partial_path(&dest);
        let machine = DownloadMachine::new(
            self.download_config(),
            partial.display().to_string(),
            Time::ZERO,
        );
        let id = keep.id.clone().unwrap_or_else(new_id);
        let sink = Arc::new(Sink::file(partial, dest.clone()));
        claim(sink.clone(), Duration::ZERO)
            .await?
            .map_err(PartialError::error)?;
        let persistence = self
            .persistence(
                &keep,
                &id,
                Direction::Download,
                bucket,
                key,
                &dest,
                0,
                Some(sink.clone()),
            )
            .await?;
        self.spawn(Setup {
            id,
            direction: Direction::Download,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            machine: Box::new(machine),
            source: None,
            sink: Some(sink),
            persistence,
            resumed: false,
            upload_checksum: self.inner.config.checksum,
        })
    }

    /// Uploads bytes from memory. Not resumable.
    pub async fn upload_bytes(
        &self,
        bucket: &str,
        key: &str,
        data: Bytes,
    ) -> Result<TransferHandle, Error> {
        let size = data.len() as u64;
        self.upload_source(bucket, key, Source::Bytes(data), size)
    }

    /// Uploads exactly `size_bytes` read from `reader`, front to back; only the parts in
    /// flight are held in memory. Not resumable.
    pub async fn upload_reader(
        &self,
        bucket: &str,
        key: &str,
        reader: impl AsyncRead + Send + Unpin + 'static,
        size_bytes: u64,
    ) -> Result<TransferHandle, Error> {
        self.upload_source(bucket, key, Source::reader(Box::new(reader)), size_bytes)
    }

    /// Uploads everything `reader` yields until it ends, its length unknown beforehand
    /// (a pipe, standard input). The first bytes, up to the multipart threshold, are read
    /// before anything is sent: a stream that ends there goes as one PutObject. A longer
    /// one is a multipart upload whose parts are filled from the stream one after the
    /// other and sent in parallel; only the parts not yet acknowledged are held in
    /// memory, as many as fit [`Config::max_memory_bytes`] (one at least). The part size
    /// starts at [`Config::part_size_bytes`] (or, given `expected_size_bytes`, at the size
    /// that holds that many bytes in 10,000 parts) and doubles every so many parts, so
    /// that 10,000 parts reach 5 TiB ([`transfer_core::PartSchedule`]).
    ///
    /// Not resumable: a stream cannot be read again, so no checkpoint is saved, and a
    /// failure or [`TransferHandle::cancel`] aborts the multipart upload. Use
    /// [`upload_reader`](Self::upload_reader) when the length is known.
    pub async fn upload_stream(
        &self,
        bucket: &str,
        key: &str,
        reader: impl AsyncRead + Send + Unpin + 'static,
        expected_size_bytes: Option<u64>,
    ) -> Result<TransferHandle, Error> {
        let machine = UploadMachine::streaming(
            self.unsaved_upload_config(),
            expected_size_bytes,
            Time::ZERO,
        );
        self.spawn_unsaved_upload(bucket, key, machine, Source::stream(Box::new(reader)))
    }

    fn upload_source(
        &self,
        bucket: &str,
        key: &str,
        source: Source,
        size: u64,
    ) -> Result<TransferHandle, Error> {
        let fp = SourceFingerprint {
            path: STREAM_PATH.into(),
            size_bytes: size,
            modified_unix_nanos: 0,
            inode: None,
            changed_unix_nanos: None,
        };
        let machine = UploadMachine::new(self.unsaved_upload_config(), fp, Time::ZERO);
        self.spawn_unsaved_upload(bucket, key, machine, source)
    }

    /// Starts an upload that saves no checkpoint (its source cannot be read again).
    fn spawn_unsaved_upload(
        &self,
        bucket: &str,
        key: &str,
        machine: UploadMachine,
        source: Source,
    ) -> Result<TransferHandle, Error> {
        self.spawn(Setup {
            id: new_id(),
            direction: Direction::Upload,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            machine: Box::new(machine),
            source: Some(Arc::new(source)),
            sink: None,
            persistence: None,
            resumed: false,
            upload_checksum: self.inner.config.checksum,
        })
    }

    /// Downloads `bucket`/`key` into `writer`, bytes in order, verified as a file
    /// download is. Not resumable.
    pub async fn download_to_writer(
        &self,
        bucket: &str,
        key: &str,
        writer: impl AsyncWrite + Send + Unpin + 'static,
    ) -> Result<TransferHandle, Error> {
        let machine = DownloadMachine::new(self.download_config(), STREAM_PATH.into(), Time::ZERO);
        self.spawn(Setup {
            id: new_id(),
            direction: Direction::Download,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            machine: Box::new(machine),
            source: None,
            sink: Some(Arc::new(Sink::writer(Box::new(writer)))),
            persistence: None,
            resumed: false,
            upload_checksum: self.inner.config.checksum,
        })
    }

    /// [`upload_file`](Self::upload_file) to completion, for callers without an async
    /// runtime. Refused inside one.
    pub fn upload_file_blocking(
        &self,
        bucket: &str,
        key: &str,
        path: impl AsRef<Path>,
    ) -> Result<TransferOutcome, Error> {
        let path = path.as_ref().to_owned();
        self.block_on(async move { self.upload_file(bucket, key, path).await?.join().await })
    }

    /// [`download_file`](Self::download_file) to completion, for callers without an
    /// async runtime. Refused inside one.
    pub fn download_file_blocking(
        &self,
        bucket: &str,
        key: &str,
        path: impl AsRef<Path>,
    ) -> Result<TransferOutcome, Error> {
        let path = path.as_ref().to_owned();
        self.block_on(async move { self.download_file(bucket, key, path).await?.join().await })
    }

    fn block_on<T>(&self, fut: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "the blocking calls cannot run inside an async runtime; use the async ones",
            ));
        }
        if self.inner.blocking_runtime.get().is_none() {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| Error::local("cannot start a runtime", e))?;
            let _ = self.inner.blocking_runtime.set(rt);
        }
        match self.inner.blocking_runtime.get() {
            Some(rt) => rt.block_on(fut),
            None => Err(Error::new(ErrorKind::LocalIo, "cannot start a runtime")),
        }
    }

    /// Continues a transfer recorded in the store, started by this or an earlier process.
    pub async fn resume(&self, id: &TransferId) -> Result<TransferHandle, Error> {
        let setup = self.rebuild(id).await?;
        self.spawn(setup)
    }

    /// Stops a recorded transfer that is not running here: aborts its multipart upload or
    /// removes its partial file, then forgets it.
    ///
    /// A record that cannot be read (corrupt, or a checkpoint this build cannot decode)
    /// is removed too, after what it still tells is cleaned up: a download's partial file
    /// (if it is s3tm's own). The multipart upload an unreadable upload record named
    /// cannot be known: `s3tm clean` (or [`list_multipart_uploads`]) finds it. A record
    /// of a newer s3tm is refused: that version can cancel it properly.
    ///
    /// [`list_multipart_uploads`]: Self::list_multipart_uploads
    pub async fn cancel_saved(&self, id: &TransferId) -> Result<(), Error> {
        if let Some(h) = self.handle(id) {
            return Self::cancel_and_wait(h).await.1;
        }
        if self.forget_if_unreadable(id).await? {
            return Ok(());
        }
        let mut setup = self.rebuild_for_cancel(id).await?;
        // What the rebuilt machine asked for first (ListParts, HeadObject) is withdrawn:
        // it asks only for the clean-up.
        setup.machine.cancel(Time::ZERO);
        match self.spawn(setup)?.join().await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::Cancelled => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes the record of `id` if it cannot be read (see [`cancel_saved`]); whether it
    /// did.
    ///
    /// [`cancel_saved`]: Self::cancel_saved
    async fn forget_if_unreadable(&self, id: &TransferId) -> Result<bool, Error> {
        let store = self.inner.store.clone();
        let id2 = id.clone();
        let (lease, loaded) = off_thread(move || {
            let lease = lease_patiently(store.as_ref(), &id2).map_err(Error::store)?;
            Ok((lease, store.load(&id2)))
        })
        .await?;
        let partial_of = |rec: &Record| {
            (rec.meta.direction == Direction::Download).then(|| {
                (
                    partial_path(&rec.meta.local_path),
                    rec.meta.local_path.clone(),
                )
            })
        };
        let partial = match loaded {
            Err(StoreError::Corrupt { .. }) => None,
            // The record is sound but its journal is not: what the record names is
            // cleaned up from it (the journal only added progress).
            Err(StoreError::CorruptJournal { record, .. }) => {
                self.abort_what_it_names(*record.clone()).await?;
                partial_of(&record)
            }
            Ok(Some(rec)) if rec.payload_version <= STORED_VERSION && decode(&rec).is_err() => {
                self.abort_what_it_names(rec.clone()).await?;
                partial_of(&rec)
            }
            _ => return Ok(false),
        };
        if let Some((partial, dest)) = partial {
            Sink::file(partial, dest).delete().await.map_err(|f| {
                Error::new(ErrorKind::LocalIo, format!("transfer {id}: {}", f.message))
            })?;
        }
        let store = self.inner.store.clone();
        let id2 = id.clone();
        off_thread(move || store.remove(&id2).map_err(Error::store)).await?;
        drop(lease);
        Ok(true)
    }

    /// Aborts the multipart upload an unreadable record still names, when its payload
    /// reads without its journal (the journal only added parts).
    async fn abort_what_it_names(&self, mut rec: Record) -> Result<(), Error> {
        rec.journal.clear();
        if let Ok(Stored {
            bucket,
            key,
            checkpoint: Some(Checkpoint::Upload(cp)),
            ..
        }) = decode(&rec)
        {
            self.abort_multipart_upload(&bucket, &key, cp.upload_id.as_str())
                .await?;
        }
        Ok(())
    }

    async fn rebuild(&self, id: &TransferId) -> Result<Setup, Error> {
        self.rebuild_inner(id, false).await
    }

    async fn rebuild_for_cancel(&self, id: &TransferId) -> Result<Setup, Error> {
        self.rebuild_inner(id, true).await
    }

    async fn rebuild_inner(&self, id: &TransferId, for_cancel: bool) -> Result<Setup, Error> {
        if self
            .inner
            .active
            .lock()
            .map(|a| a.contains_key(id))
            .unwrap_or(false)
        {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("transfer {id} is already running here"),
            ));
        }
        let store = self.inner.store.clone();
        let id2 = id.clone();
        let (lease, rec) = off_thread(move || {
            let lease = lease_patiently(store.as_ref(), &id2).map_err(Error::store)?;
            let rec = store.load(&id2).map_err(Error::store)?;
            Ok((lease, rec))
        })
        .await?;
        let rec = rec.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("no saved transfer {id}; see `s3tm ls`"),
            )
        })?;
        let stored = decode(&rec)?;
        self.refuse_other_server(id, &stored)?;
        let meta = rec.meta.clone();
        let (machine, source, sink) = match meta.direction {
            Direction::Upload => self.rebuild_upload(id, &stored, for_cancel).await?,
            Direction::Download => self.rebuild_download(id, &stored, for_cancel).await?,
        };
        let upload_checksum = stored.checksum;
        let persister = Persister::start(self.inner.store.clone(), sink.clone());
        Ok(Setup {
            id: id.clone(),
            direction: meta.direction,
            bucket: stored.bucket.clone(),
            key: stored.key.clone(),
            machine,
            source,
            sink,
            persistence: Some(Persistence {
                persister,
                meta,
                stored,
                _lease: lease,
            }),
            resumed: true,
            upload_checksum,
        })
    }

    /// A saved transfer continues only against the server it was started against.
    fn refuse_other_server(&self, id: &TransferId, stored: &Stored) -> Result<(), Error> {
        let here = SavedEndpoint::of(&self.inner.config);
        let Some(saved) = stored.endpoint.as_ref().filter(|e| !e.same_server(&here)) else {
            return Ok(());
        };
        let mut how = String::from("s3tm");
        if let Some(url) = &saved.endpoint_url {
            how.push_str(&format!(" --endpoint-url {url}"));
        }
        how.push_str(&format!(" --region {} resume {id}", saved.region));
        Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "transfer {id} was started against {saved}, not {here}: continue it against the same server (`{how}`)"
            ),
        ))
    }

    /// The machine and source of a saved upload: from its checkpoint, against the source
    /// file as it is now (or, to cancel it, only what aborting it needs).
    async fn rebuild_upload(
        &self,
        id: &TransferId,
        stored: &Stored,
        for_cancel: bool,
    ) -> Result<Rebuilt, Error> {
        let mut upload_cfg = self.upload_config();
        upload_cfg.part_size_bytes = stored.part_size_bytes;
        upload_cfg.multipart_threshold_bytes = stored.multipart_threshold_bytes;
        upload_cfg.checksum = stored.checksum;
        let cp = match &stored.checkpoint {
            Some(Checkpoint::Upload(cp)) => Some(cp.clone()),
            _ => None,
        };
        if for_cancel {
            let Some(cp) = cp else {
                // A single PutObject leaves nothing on the server.
                self.forget(id).await;
                return Err(Error::new(
                    ErrorKind::Cancelled,
                    format!("transfer {id} had nothing to clean up"),
                ));
            };
            let fp = cp.source.clone();
            let machine = UploadMachine::from_checkpoint(upload_cfg, cp, fp, Time::ZERO);
            return Ok((Box::new(machine), None, None));
        }
        let current = blocking_fingerprint(&stored.local_path)
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::SourceChanged,
                    format!("{e}; the upload cannot continue: cancel it with `s3tm cancel {id}`"),
                )
            })?;
        let (machine, expected): (Box<dyn TransferMachine + Send + Sync>, SourceFingerprint) =
            match cp {
                Some(cp) => {
                    let m = UploadMachine::from_checkpoint(upload_cfg, cp, current, Time::ZERO);
                    // Reads are checked against the file the machine believes in.
                    let expected = m.source().clone();
                    (Box::new(m), expected)
                }
                None => (
                    Box::new(UploadMachine::new(upload_cfg, current.clone(), Time::ZERO)),
                    current,
                ),
            };
        let source = blocking_open(&stored.local_path, expected).await?;
        Ok((machine, Some(Arc::new(source)), None))
    }

    /// The machine and sink of a saved download: from its checkpoint, into its partial
    /// file, claimed again (or, to cancel it, only what removing that file needs).
    async fn rebuild_download(
        &self,
        id: &TransferId,
        stored: &Stored,
        for_cancel: bool,
    ) -> Result<Rebuilt, Error> {
        let (machine, partial): (Box<dyn TransferMachine + Send + Sync>, PathBuf) =
            match &stored.checkpoint {
                Some(Checkpoint::Download(cp)) => {
                    let partial = PathBuf::from(&cp.partial_path);
                    let m = DownloadMachine::from_checkpoint(
                        self.download_config(),
                        cp.clone(),
                        Time::ZERO,
                    );
                    (Box::new(m), partial)
                }
                _ => {
                    let partial = partial_path(&stored.local_path);
                    let m = DownloadMachine::new(
                        self.download_config(),
                        partial.display().to_string(),
                        Time::ZERO,
                    );
                    (Box::new(m), partial)
                }
            };
        let dest = &stored.local_path;
        if !for_cancel && let Destination::Stream = blocking_destination(dest).await? {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} is now a character device or FIFO, and a saved download continues only into a file; cancel it with `s3tm cancel {id}`",
                    dest.display()
                ),
            ));
        }
        let sink = Arc::new(Sink::file(partial, dest.clone()));
        // The partial file of a run of this transfer that just ended here may still be
        // held for a moment, like its lease.
        match claim(sink.clone(), Duration::from_secs(2)).await? {
            Ok(()) => {}
            // What is not s3tm's own is left alone by the cancel's delete.
            Err(PartialError::Refused(_)) if for_cancel => {}
            Err(e) => return Err(e.error()),
        }
        Ok((machine, None, Some(sink)))
    }

    async fn forget(&self, id: &TransferId) {
        let store = self.inner.store.clone();
        let id = id.clone();
        let _ = tokio::task::spawn_blocking(move || store.remove(&id)).await;
    }

    /// The lease of a new transfer, taken on the blocking pool.
    async fn lease(&self, id: &TransferId) -> Result<Lease, Error> {
        let store = self.inner.store.clone();
        let id = id.clone();
        off_thread(move || store.lease(&id).map_err(Error::store)).await
    }

    /// The record of a new transfer kept as `keep` says, leased and saved from the start
    /// (`None` for a transfer that is not saved).
    #[allow(clippy::too_many_arguments)]
    async fn persistence(
        &self,
        keep: &Keep,
        id: &TransferId,
        direction: Direction,
        bucket: &str,
        key: &str,
        path: &Path,
        total: u64,
        sink: Option<Arc<Sink>>,
    ) -> Result<Option<Persistence>, Error> {
        if !keep.saved {
            return Ok(None);
        }
        let lease = self.lease(id).await?;
        let kind = keep.kind.clone();
        let now = now_unix_ms();
        let meta = RecordMeta {
            id: id.clone(),
            direction,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            local_path: path.to_owned(),
            done_bytes: 0,
            total_bytes: total,
            created_unix_ms: now,
            updated_unix_ms: now,
            state: resume_store::TransferState::Running,
            kind,
        };
        let c = &self.inner.config;
        let stored = Stored {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            local_path: path.to_owned(),
            part_size_bytes: c.part_size_bytes,
            multipart_threshold_bytes: c.multipart_threshold_bytes,
            checksum: c.checksum,
            checkpoint: None,
            endpoint: Some(SavedEndpoint::of(c)),
        };
        let persister = Persister::start(self.inner.store.clone(), sink);
        // Recorded from the start, so that a crash before the first checkpoint is listed.
        persister.save(record(&meta, &stored).map_err(Error::store)?);
        Ok(Some(Persistence {
            persister,
            meta,
            stored,
            _lease: lease,
        }))
    }

    fn spawn(&self, s: Setup) -> Result<TransferHandle, Error> {
        let what = format!(
            "{} s3://{}/{}",
            match s.direction {
                Direction::Upload => "upload to",
                Direction::Download => "download of",
            },
            s.bucket,
            s.key
        );
        let resumable = s.persistence.is_some();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (total_done, total) = s.machine.progress();
        let (progress_tx, progress_rx) = watch::channel(Progress {
            bytes_done: total_done,
            bytes_moving: 0,
            bytes_total: total,
            state: TransferState::Running,
        });
        let (events, _) = broadcast::channel(1024);
        let ctx = Arc::new(OpContext {
            http: self.inner.http.clone(),
            bucket: s.bucket.clone(),
            key: s.key.clone(),
            source: s.source,
            sink: s.sink,
            permits: self.inner.permits.clone(),
            download_in_flight: self.inner.config.max_in_flight_per_download as u64,
            memory_budget_bytes: self.inner.config.max_memory_bytes,
            upload_checksum: s.upload_checksum,
            md5_lanes: self.inner.md5_lanes.clone(),
        });
        let driver = Driver {
            id: s.id.clone(),
            machine: s.machine,
            ctx,
            persistence: s.persistence,
            progress: progress_tx,
            events: events.clone(),
            commands: cmd_rx,
            resumed: s.resumed,
            what,
            pause_timeout: self.inner.config.pause_timeout,
        };
        let (end_tx, end_rx) = watch::channel(None);
        let handle = TransferHandle {
            id: s.id.clone(),
            direction: s.direction,
            resumable,
            commands: cmd_tx,
            progress: progress_rx,
            events,
            end: end_rx,
        };
        if let Ok(mut a) = self.inner.active.lock() {
            a.insert(
                s.id.clone(),
                Active {
                    handle: handle.clone(),
                    bucket: s.bucket,
                    key: s.key,
                },
            );
        }
        // Weak: a running transfer must not keep a dropped manager (and with it the
        // command channels that let a paused transfer end) alive.
        let inner = Arc::downgrade(&self.inner);
        let id = s.id.clone();
        let task = tokio::spawn(driver.run());
        tokio::spawn(async move {
            let result = crate::handle::task_result(&id, task.await);
            if let Some(inner) = inner.upgrade()
                && let Ok(mut a) = inner.active.lock()
            {
                a.remove(&id);
            }
            let _ = end_tx.send(Some(result));
        });
        Ok(handle)
    }

    /// The handle of transfer `id` if it runs (or is paused) in this manager, had again:
    /// progress, events, commands and [`join`](TransferHandle::join) as from the first.
    pub fn handle(&self, id: &TransferId) -> Option<TransferHandle> {
        let active = self.inner.active.lock().ok()?;
        active.get(id).map(|a| a.handle.clone())
    }

    /// Handles of every transfer this manager runs (or holds paused) that `pick` chooses.
    fn handles(&self, pick: impl Fn(&Active) -> bool) -> Vec<TransferHandle> {
        self.inner
            .active
            .lock()
            .map(|a| {
                a.values()
                    .filter(|a| pick(a))
                    .map(|a| a.handle.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Saved transfers no process runs now (paused, interrupted or failed) that `pick`
    /// chooses, leaving out those this manager holds.
    async fn idle_saved(
        &self,
        pick: impl Fn(&ResumableTransfer) -> bool,
    ) -> Result<Vec<ResumableTransfer>, Error> {
        let (saved, _) = self.list_off_thread().await?;
        let held = self.active_ids();
        Ok(saved
            .into_iter()
            .filter(|t| {
                // Jobs and their files are resumed and cancelled as jobs.
                t.kind.is_transfer()
                    && t.state != SavedState::Running
                    && !held.contains(&t.id)
                    && pick(t)
            })
            .collect())
    }

    /// Cancels `handle` and waits until it is cleaned up.
    async fn cancel_and_wait(handle: TransferHandle) -> (TransferId, Result<(), Error>) {
        let id = handle.id().clone();
        if let Err(e) = handle.cancel() {
            return (id, Err(e));
        }
        let result = match handle.join().await {
            Err(e) if e.kind() == ErrorKind::Cancelled => Ok(()),
            Err(e) => Err(e),
            Ok(_) => Err(Error::new(
                ErrorKind::Finished,
                format!("transfer {id} completed before the cancel reached it"),
            )),
        };
        (id, result)
    }

    /// Every transfer in the store: paused, interrupted by a crash, failed but resumable,
    /// or running. Records that cannot be read are returned apart, with what to do.
    pub fn list_resumable(
        &self,
    ) -> Result<(Vec<ResumableTransfer>, Vec<UnreadableTransfer>), Error> {
        list_saved(self.inner.store.as_ref(), || self.active_ids())
    }

    /// [`list_resumable`](Self::list_resumable) on the blocking pool.
    pub(crate) async fn list_off_thread(
        &self,
    ) -> Result<(Vec<ResumableTransfer>, Vec<UnreadableTransfer>), Error> {
        let store = self.inner.store.clone();
        let active = self.active_ids();
        off_thread(move || list_saved(store.as_ref(), || active)).await
    }

    /// The transfers this manager runs or holds paused.
    fn active_ids(&self) -> Vec<TransferId> {
        self.inner
            .active
            .lock()
            .map(|a| a.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The server saved transfer `id` was started against; `None` for records of an s3tm
    /// that did not keep it. [`TransferManager::resume`] refuses a transfer saved against
    /// another server than this manager's.
    pub fn saved_endpoint(&self, id: &TransferId) -> Result<Option<SavedEndpoint>, Error> {
        saved_endpoint(self.inner.store.as_ref(), id)
    }

    /// The recorded transfer of `bucket`/`key` to or from `path`, if there is one (so that
    /// running the same copy again resumes it).
    pub fn find_resumable(
        &self,
        direction: Direction,
        bucket: &str,
        key: &str,
        path: &Path,
    ) -> Result<Option<ResumableTransfer>, Error> {
        let path = absolute(path)?;
        let (list, _) = self.list_resumable()?;
        let here = SavedEndpoint::of(&self.inner.config);
        Ok(list.into_iter().find(|t| {
            t.kind.is_transfer()
                && t.direction == direction
                && t.bucket == bucket
                && t.key == key
                && t.local_path == path
                && t.state != SavedState::Running
                // The same object on another server is another transfer.
                && self
                    .saved_endpoint(&t.id)
                    .ok()
                    .flatten()
                    .is_none_or(|e| e.same_server(&here))
        }))
    }

    /// Two downloads to one destination would write the same partial file: one running,
    /// or one saved to be resumed, whose checkpoint names the bytes already in that file.
    async fn refuse_second_download_to(&self, dest: &Path) -> Result<(), Error> {
        let store = self.inner.store.clone();
        let active = self.active_ids();
        let here = SavedEndpoint::of(&self.inner.config);
        let dest = dest.to_owned();
        off_thread(move || {
            let (list, _) = list_saved(store.as_ref(), || active)?;
            refuse_second_download(store.as_ref(), &list, &dest, &here)
        })
        .await
    }

    /// Pauses every running transfer of this manager; resolves once all are paused with
    /// durable checkpoints (parts or ranges still in flight after
    /// [`Config::pause_timeout`](crate::Config::pause_timeout) are cut off).
    ///
    /// Returns once every pause has settled, with what happened to each transfer that was
    /// running: paused (with its [`PauseReport`]), or an error saying why not (a stream
    /// cannot pause: [`ErrorKind::Unsupported`]; one that ended meanwhile:
    /// [`ErrorKind::Finished`]).
    ///
    /// [`PauseReport`]: crate::PauseReport
    pub async fn pause_all(&self) -> Vec<(TransferId, Result<crate::PauseReport, Error>)> {
        let mut waits = Vec::new();
        if let Ok(active) = self.inner.active.lock() {
            for (id, a) in active.iter() {
                let (tx, rx) = tokio::sync::oneshot::channel();
                if a.handle.commands.send(Command::Pause(tx)).is_ok() {
                    waits.push((id.clone(), rx));
                }
            }
        }
        let mut out = Vec::new();
        for (id, w) in waits {
            let result = w.await.unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Finished,
                    format!("transfer {id} ended before it could pause"),
                ))
            });
            out.push((id, result));
        }
        out
    }

    /// Resumes every paused transfer: those this manager holds, and those saved in the
    /// store that no process runs (paused, interrupted by a crash, or failed), as
    /// `s3tm resume --all` does. Returns once each has started again, with its handle or
    /// why it could not.
    pub async fn resume_all(
        &self,
    ) -> Result<Vec<(TransferId, Result<TransferHandle, Error>)>, Error> {
        let saved = self.idle_saved(|_| true).await?;
        let mut out = Vec::new();
        for h in self.handles(|a| a.handle.progress.borrow().state == TransferState::Paused) {
            let result = h.resume().map(|()| h.clone());
            out.push((h.id().clone(), result));
        }
        for t in saved {
            let result = self.resume(&t.id).await;
            out.push((t.id, result));
        }
        Ok(out)
    }

    /// Cancels every transfer: those this manager runs or holds paused, and those saved
    /// in the store that no process runs, as `s3tm cancel --all` does. Returns once each
    /// is cleaned up (its multipart upload aborted, its partial file removed, its record
    /// gone), with what happened to it.
    pub async fn cancel_all(&self) -> Result<Vec<(TransferId, Result<(), Error>)>, Error> {
        let mut out = self.cancel_where(|_, _| true).await?;
        out.extend(self.cancel_all_jobs().await?);
        Ok(out)
    }

    /// Cancels every transfer of `bucket`/`key`, running here or saved in the store (but
    /// not one another process is running), and waits until each is cleaned up. Returns
    /// what happened to each.
    pub async fn cancel_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Vec<(TransferId, Result<(), Error>)>, Error> {
        self.cancel_where(|b, k| b == bucket && k == key).await
    }

    async fn cancel_where(
        &self,
        pick: impl Fn(&str, &str) -> bool,
    ) -> Result<Vec<(TransferId, Result<(), Error>)>, Error> {
        let saved = self.idle_saved(|t| pick(&t.bucket, &t.key)).await?;
        let mut out = Vec::new();
        for h in self.handles(|a| pick(&a.bucket, &a.key)) {
            out.push(Self::cancel_and_wait(h).await);
        }
        for t in saved {
            let result = match self.cancel_saved(&t.id).await {
                Err(e) if e.kind() == ErrorKind::Cancelled => Ok(()),
                other => other,
            };
            out.push((t.id, result));
        }
        Ok(out)
    }
}

/// A request as s3-protocol builds it.
type Request = http::Request<s3_protocol::RequestBody>;

/// A multipart upload in progress on the server, by any tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartUploadInfo {
    /// Key being uploaded.
    pub key: String,
    /// The upload's id.
    pub upload_id: String,
    /// When it was started, as the server wrote it (ISO 8601).
    pub initiated: Option<String>,
}

impl TransferManager {
    /// Every unfinished multipart upload in `bucket` under `prefix` (all pages).
    pub async fn list_multipart_uploads(
        &self,
        bucket: &str,
        prefix: Option<&str>,
    ) -> Result<Vec<MultipartUploadInfo>, Error> {
        let mut out = Vec::new();
        let mut req = s3_protocol::ListMultipartUploads::new(bucket);
        req.prefix = prefix.map(str::to_owned);
        loop {
            let what = format!("listing multipart uploads in s3://{bucket}");
            let page = self
                .one_shot(
                    &what,
                    |s3| req.build(s3),
                    s3_protocol::parse_list_multipart_uploads,
                    None,
                )
                .await?;
            out.extend(page.uploads.into_iter().map(|u| MultipartUploadInfo {
                key: u.key,
                upload_id: u.upload_id.as_str().to_owned(),
                initiated: u.initiated,
            }));
            match (
                page.is_truncated,
                page.next_key_marker,
                page.next_upload_id_marker,
            ) {
                (true, Some(k), u)
                    if Some(&k) != req.key_marker.as_ref() || u != req.upload_id_marker =>
                {
                    req.key_marker = Some(k);
                    req.upload_id_marker = u;
                }
                _ => return Ok(out),
            }
        }
    }

    /// Aborts one multipart upload, whoever started it.
    pub async fn abort_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), Error> {
        let what = format!("aborting upload {upload_id} of s3://{bucket}/{key}");
        let req = s3_protocol::AbortMultipartUpload {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id: s3_protocol::UploadId::new(upload_id),
        };
        self.one_shot(
            &what,
            |s3| req.build(s3),
            s3_protocol::parse_abort_multipart_upload,
            Some(()),
        )
        .await
    }

    /// One request outside any transfer (listings, aborts the user asked for), built and
    /// signed again for every attempt. Whether a failure is tried again, and after how
    /// long, is transfer-core's answer ([`RequestRetries`]), as for a transfer's requests.
    ///
    /// [`RequestRetries`]: transfer_core::RequestRetries
    ///
    /// `abort` is the answer of an abort, given when the request is one: an abort that
    /// finds the upload gone after a retried attempt has succeeded
    /// ([`RequestRetries::abort_already_done`]).
    ///
    /// [`RequestRetries::abort_already_done`]: transfer_core::RequestRetries::abort_already_done
    pub(crate) async fn one_shot<T>(
        &self,
        what: &str,
        build: impl Fn(&S3Config) -> Result<Request, s3_protocol::RequestError>,
        parse: fn(
            http::StatusCode,
            &http::HeaderMap,
            &[u8],
        ) -> Result<T, s3_protocol::ResponseError>,
        mut abort: Option<T>,
    ) -> Result<T, Error> {
        let mut retries = transfer_core::RequestRetries::new(self.retry_config());
        loop {
            let built = build(self.inner.http.s3())
                .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("{what}: {e}")))?;
            let failure = match self.inner.http.send_buffered(built).await {
                Ok((status, headers, body)) => match parse(status, &headers, &body) {
                    Ok(out) => return Ok(out),
                    Err(e) => crate::http::response_failure(e),
                },
                Err(f) => f,
            };
            if retries.abort_already_done(&failure)
                && let Some(done) = abort.take()
            {
                return Ok(done);
            }
            match retries.next_attempt("request", failure.clone()) {
                Ok(delay) => {
                    tracing::info!(what, ?delay, %failure, "retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(crate::error::from_transfer(e, what)),
            }
        }
    }
}

/// Every record in `store`, readable or not; `active` gives the transfers this manager
/// runs (called once the store is listed). Blocking.
fn list_saved(
    store: &dyn ResumeStore,
    active: impl FnOnce() -> Vec<TransferId>,
) -> Result<(Vec<ResumableTransfer>, Vec<UnreadableTransfer>), Error> {
    let entries = store.list().map_err(Error::store)?;
    let active = active();
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for e in entries {
        match e.summary {
            Ok(s) => {
                let m = s.meta;
                let state = match m.state.as_str() {
                    "running" if active.contains(&m.id) => SavedState::Running,
                    "running" => match store.lease(&m.id) {
                        Err(StoreError::Locked { .. }) => SavedState::Running,
                        _ => SavedState::Interrupted,
                    },
                    "paused" => SavedState::Paused,
                    "failed" => SavedState::Failed,
                    other => SavedState::Unknown(other.to_owned()),
                };
                ok.push(ResumableTransfer {
                    id: m.id,
                    direction: m.direction,
                    bucket: m.bucket,
                    key: m.key,
                    local_path: m.local_path,
                    bytes_done: m.done_bytes,
                    bytes_total: m.total_bytes,
                    state,
                    created_unix_ms: m.created_unix_ms,
                    updated_unix_ms: m.updated_unix_ms,
                    kind: m.kind,
                })
            }
            Err(err) => bad.push(UnreadableTransfer {
                id: e.id,
                error: err.to_string(),
            }),
        }
    }
    Ok((ok, bad))
}

/// The server saved transfer `id` was started against. Blocking.
fn saved_endpoint(
    store: &dyn ResumeStore,
    id: &TransferId,
) -> Result<Option<SavedEndpoint>, Error> {
    let rec = store.load(id).map_err(Error::store)?.ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!("no saved transfer {id}; see `s3tm ls`"),
        )
    })?;
    if matches!(rec.meta.kind, RecordKind::Job { .. }) {
        return crate::job::saved_endpoint(&rec).map(Some);
    }
    Ok(decode(&rec)?.endpoint)
}

/// The error of a download to `dest` while `list` holds another one (see
/// [`TransferManager::download_file`]). Blocking.
fn refuse_second_download(
    store: &dyn ResumeStore,
    list: &[ResumableTransfer],
    dest: &Path,
    here: &SavedEndpoint,
) -> Result<(), Error> {
    let other = list
        .iter()
        .find(|t| t.direction == Direction::Download && t.local_path == dest);
    match other {
        Some(t) if t.state == SavedState::Running => Err(Error::new(
            ErrorKind::Locked,
            format!(
                "{} is already being downloaded by transfer {} (in this or another process); wait for it or cancel it",
                dest.display(),
                t.id
            ),
        )),
        Some(t) => {
            // Name the server it was saved against when it is not this one: the same
            // command against another endpoint is another transfer.
            let elsewhere = match saved_endpoint(store, &t.id).ok().flatten() {
                Some(saved) if !saved.same_server(here) => {
                    format!(", saved against {saved}, not {here},")
                }
                _ => String::new(),
            };
            Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "{} has a {} download of s3://{}/{} (transfer {}){elsewhere} whose partial file a new download would overwrite; resume it with `s3tm resume {}` or forget it with `s3tm cancel {}`",
                    dest.display(),
                    t.state,
                    t.bucket,
                    t.key,
                    t.id,
                    t.id,
                    t.id
                ),
            ))
        }
        None => Ok(()),
    }
}

fn decode(rec: &Record) -> Result<Stored, Error> {
    if rec.payload_version > STORED_VERSION {
        return Err(Error::new(
            ErrorKind::Checkpoint,
            format!(
                "transfer {} was saved by a newer s3tm (format {}, this one reads {STORED_VERSION}); resume it with that version",
                rec.meta.id, rec.payload_version
            ),
        ));
    }
    let unreadable = |e: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::Checkpoint,
            format!(
                "the checkpoint of transfer {} is unreadable ({e}); cancel it with `s3tm cancel {}`",
                rec.meta.id, rec.meta.id
            ),
        )
    };
    let mut stored: Stored = serde_json::from_slice(&rec.payload).map_err(|e| unreadable(&e))?;
    // The parts and ranges done since the record was saved whole, oldest first.
    for entry in &rec.journal {
        let delta: Delta = serde_json::from_slice(&entry.data).map_err(|e| unreadable(&e))?;
        let Some(cp) = stored.checkpoint.as_mut() else {
            return Err(unreadable(&"a journal entry extends no checkpoint"));
        };
        cp.apply(delta).map_err(|e| unreadable(&e))?;
    }
    Ok(stored)
}

/// The lease of `id`, waiting a moment if it is taken: a transfer whose handle and
/// manager were just dropped releases its lease a moment later. Blocking.
pub(crate) fn lease_patiently(
    store: &dyn ResumeStore,
    id: &TransferId,
) -> Result<Lease, StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match store.lease(id) {
            Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

pub(crate) fn new_id() -> TransferId {
    let id = format!("{:016x}", fastrand::u64(..));
    TransferId::new(id).expect("hex ids are valid")
}

/// The partial file of a download to `dest`.
pub fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(PARTIAL_SUFFIX);
    dest.with_file_name(name)
}

fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|e| Error::local(format!("bad path {}", path.display()), e))
}

/// Opens (and locks) the existing partial file of `sink` before its transfer starts.
async fn claim(sink: Arc<Sink>, patience: Duration) -> Result<Result<(), PartialError>, Error> {
    off_thread(move || Ok(sink.claim_blocking(patience))).await
}

async fn blocking_destination(dest: &Path) -> Result<Destination, Error> {
    let d = dest.to_owned();
    off_thread(move || destination(&d)).await
}

async fn blocking_fingerprint(path: &Path) -> Result<SourceFingerprint, Error> {
    let p = path.to_owned();
    off_thread(move || {
        fingerprint(&p)
            .map_err(|e| Error::local(format!("cannot read source file {}", p.display()), e))
    })
    .await
}

async fn blocking_open(path: &Path, fp: SourceFingerprint) -> Result<Source, Error> {
    let p = path.to_owned();
    off_thread(move || {
        Source::open_file(&p, fp)
            .map_err(|e| Error::local(format!("cannot open {}", p.display()), e))
    })
    .await
}

/// Runs `f` on the blocking pool: the async threads never wait on the disk.
pub(crate) async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::new(ErrorKind::LocalIo, e.to_string()))?
}
