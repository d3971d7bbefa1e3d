use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{JournalEntry, Lease, ListEntry, Record, ResumeStore, StoreError, TransferId};
use crate::{format, journal};

/// The environment variable that overrides the default state directory.
pub const STATE_DIR_ENV: &str = "S3TM_STATE_DIR";

const RECORD_EXT: &str = "record";
const LOCK_EXT: &str = "lock";
const JOURNAL_EXT: &str = "journal";
// Temp files start with '.', which no valid id does, so they can never be
// mistaken for (or collide with) a record or lock file.
const TEMP_PREFIX: &str = ".tmp-";
const TEMP_SUFFIX: &str = ".partial";

// Each retry means another process released and unlinked the lock file
// between our open and our lock; persistent churn is as good as "locked".
const LEASE_ATTEMPTS: usize = 8;

// Each retry means a save replaced the record while it was being read with
// its journal; only a store saved to without pause keeps failing.
const LOAD_ATTEMPTS: usize = 8;

/// A [`ResumeStore`] keeping one file per transfer in a directory, plus its
/// journal.
///
/// - `<id>.record` holds the record (see the format below); it is replaced
///   atomically by writing a temp file in the same directory, fsyncing it,
///   renaming it over the old record and fsyncing the directory, so a crash
///   or power loss leaves either the old or the new record.
/// - `<id>.<generation>.journal` holds the entries appended since the record
///   was saved (see [`ResumeStore::append`]); the record names its
///   generation, and every save starts a new one: the new journal is written
///   (and synced, when the record brings entries) before the record is
///   renamed into place, and the old journal is deleted after. A journal of
///   another generation than the record's (left by a crash between the
///   rename and that deletion) is never read, and is deleted by the next save
///   or remove of that transfer.
/// - `<id>.lock` carries the lease as an OS file lock (`flock` on Unix), so a
///   lease vanishes with its process and a crashed transfer can be resumed
///   at once.
/// - `.tmp-*.partial` files are the debris of saves interrupted by a crash;
///   they are never read and can be deleted.
///
/// A directory the store creates is made 0700, and records and journals are
/// 0600, set explicitly rather than left to the umask. An existing directory
/// is never chmod-ed: it is used as it is if it is this user's and no one
/// else can write to it, and refused otherwise (see [`FileStore::open`]).
/// Corrupt records and journals are reported, never deleted.
///
/// Record format: an ASCII header line
/// `s3tm-resume-store <format version> crc32=<hex> len=<bytes> gen=<generation>`,
/// then the metadata as one JSON line, then the payload verbatim. The CRC32
/// covers the format version, the generation and everything after the
/// header. Records of format 1 (no generation) are read as generation 0.
///
/// Journal format: entries back to back, each framed as the magic `s3j1`, its
/// length and a CRC32 over the generation, the length and the entry, so that
/// a torn or damaged entry, or one of another generation, is recognised. An
/// append is one positioned write and one fdatasync; the first append to a
/// journal in a process reads it once (to find its end, cutting off a torn
/// last entry left by a crash), and the handle keeps it open after that, as
/// it keeps the record file open (so that a save through another handle is
/// noticed: the record path then names another file).
///
/// Clones share that cache; separate [`FileStore::open`]s of one directory do
/// not, and, like separate processes, rely on the [`Lease`] for there being
/// one writer of a transfer at a time.
#[derive(Clone)]
pub struct FileStore {
    dir: PathBuf,
    journals: Arc<Journals>,
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// What a store handle (and its clones) knows of each transfer's journal.
#[derive(Default)]
struct Journals {
    by_id: Mutex<HashMap<TransferId, Arc<Mutex<JournalState>>>>,
}

/// One transfer's journal state. Its mutex also serialises this handle's
/// saves, appends and removals of the transfer.
#[derive(Default)]
struct JournalState {
    /// The journal of the current record, once known.
    open: Option<OpenJournal>,
    /// Whether journals of other generations have been looked for and
    /// deleted, so that the next save need not list the directory.
    swept: bool,
}

/// The journal of one generation of a record, open for appending.
struct OpenJournal {
    generation: u64,
    /// The record this journal belongs to, kept open so that its inode is
    /// not reused: while the record's path names this file, this journal is
    /// the current one.
    _record: File,
    record_id: FileId,
    path: PathBuf,
    file: File,
    /// Where the valid entries end, and the next one goes.
    end: u64,
    /// An append failed and its bytes could not be taken back: nothing more
    /// is appended to this journal (the next save starts a new one).
    poisoned: bool,
}

impl FileStore {
    /// Opens the store in `dir`, creating it (mode 0700) and any missing
    /// parents (0700 too) if needed.
    ///
    /// An existing directory is left as it is (it may be shared, like
    /// `/tmp`): it is refused with [`StoreError::StateDir`] if it is owned by
    /// another user or if group or others can write to it, since they could
    /// then plant or swap records. One that others can only read is accepted;
    /// the records in it are 0600. A path that is not a directory is refused
    /// the same way.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        ensure_private_dir(&dir)?;
        Ok(FileStore {
            dir,
            journals: Arc::default(),
        })
    }

    /// Opens the store in the directory chosen by [`FileStore::resolve_dir`]
    /// with no explicit directory: `$S3TM_STATE_DIR` if set, else the
    /// platform default.
    pub fn open_default() -> Result<Self, StoreError> {
        FileStore::open(FileStore::resolve_dir(None)?)
    }

    /// Chooses the state directory. Precedence, highest first:
    ///
    /// 1. `explicit` (for example from a configuration file or flag);
    /// 2. the environment variable `S3TM_STATE_DIR`, if set and not empty;
    /// 3. `<platform data dir>/s3tm/transfers`, e.g.
    ///    `~/.local/share/s3tm/transfers` on Linux.
    ///
    /// There is deliberately no fallback to a temporary directory, where
    /// checkpoints would be cleaned away: without a data directory this
    /// fails with [`StoreError::NoStateDir`].
    pub fn resolve_dir(explicit: Option<&Path>) -> Result<PathBuf, StoreError> {
        resolve(explicit, std::env::var_os(STATE_DIR_ENV), dirs::data_dir())
    }

    /// The directory holding the records.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds (or would hold) the record for `id`.
    pub fn record_path(&self, id: &TransferId) -> PathBuf {
        self.dir.join(format!("{id}.{RECORD_EXT}"))
    }

    fn lock_path(&self, id: &TransferId) -> PathBuf {
        self.dir.join(format!("{id}.{LOCK_EXT}"))
    }

    /// The file that holds (or would hold) the journal of generation
    /// `generation` of the record for `id`.
    pub fn journal_path(&self, id: &TransferId, generation: u64) -> PathBuf {
        self.dir.join(format!("{id}.{generation}.{JOURNAL_EXT}"))
    }

    /// Reads the record for `id` and its journal.
    fn read_record(&self, id: &TransferId) -> Result<Option<Record>, StoreError> {
        let path = self.record_path(id);
        for _ in 0..LOAD_ATTEMPTS {
            let mut file = match File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(StoreError::io(path, e)),
            };
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)
                .map_err(|e| StoreError::io(&path, e))?;
            let (mut record, generation) = format::decode(&bytes, &path, id)?;
            let journal = self.read_journal(id, generation);
            // A save between reading the record and reading its journal may
            // have deleted that journal: what was read holds together only if
            // the record read is still the current one.
            if !names_file(&path, &file) {
                continue;
            }
            record.journal = match journal {
                Ok(entries) => entries,
                Err(StoreError::Corrupt { path, reason }) => {
                    return Err(StoreError::CorruptJournal {
                        path,
                        reason,
                        record: Box::new(record),
                    });
                }
                Err(e) => return Err(e),
            };
            return Ok(Some(record.with_journal_progress()));
        }
        Err(StoreError::io(
            path,
            io::Error::other("the record was replaced again and again while being read"),
        ))
    }

    fn read_journal(
        &self,
        id: &TransferId,
        generation: u64,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        let path = self.journal_path(id, generation);
        match fs::read(&path) {
            Ok(bytes) => journal::parse(&bytes, generation, &path).map(|p| p.entries),
            // Records of format 1, and records saved without entries whose
            // empty journal a crash took back, have none.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// The journal state of `id`, shared by this handle and its clones.
    fn journal_state(&self, id: &TransferId) -> Arc<Mutex<JournalState>> {
        let mut by_id = lock_ignoring_poison(&self.journals.by_id);
        Arc::clone(by_id.entry(id.clone()).or_default())
    }

    /// Forgets the journal state of a removed transfer, unless another thread
    /// is using it.
    fn forget_journal_state(&self, id: &TransferId, state: Arc<Mutex<JournalState>>) {
        let mut by_id = lock_ignoring_poison(&self.journals.by_id);
        // The map's reference and `state`: nobody else can be waiting on it,
        // and nobody can take it from the map while the map is locked.
        if Arc::strong_count(&state) == 2 {
            by_id.remove(id);
        }
    }

    /// The generation of the record for `id` as its header says, or `None`
    /// when there is no record or its header cannot be read.
    fn stored_generation(&self, id: &TransferId) -> Option<u64> {
        let path = self.record_path(id);
        let mut start = Vec::with_capacity(format::MAX_HEADER_BYTES);
        File::open(&path)
            .and_then(|f| {
                f.take(format::MAX_HEADER_BYTES as u64)
                    .read_to_end(&mut start)
            })
            .ok()?;
        format::generation(&start, &path).ok()
    }

    /// The generations of the journals of `id` in the directory, or `None`
    /// if it cannot be listed.
    fn journal_generations(&self, id: &TransferId) -> Option<Vec<u64>> {
        let entries = fs::read_dir(&self.dir).ok()?;
        let mut found = Vec::new();
        for entry in entries {
            found.extend(journal_generation(&entry.ok()?.file_name(), id));
        }
        Some(found)
    }

    /// Deletes the journals of `id` of the given generations; says whether
    /// they are all gone.
    fn delete_journals(&self, id: &TransferId, generations: &[u64]) -> bool {
        generations.iter().fold(true, |clean, &generation| {
            match fs::remove_file(self.journal_path(id, generation)) {
                Ok(()) => clean,
                Err(e) if e.kind() == io::ErrorKind::NotFound => clean,
                Err(_) => false,
            }
        })
    }

    /// Opens the journal of the current record of `id` for appending: reads
    /// the record's header for its generation, and the journal for where its
    /// valid entries end, cutting off a torn last entry left by a crash.
    fn open_journal(&self, id: &TransferId) -> Result<OpenJournal, StoreError> {
        let record_path = self.record_path(id);
        let record = match File::open(&record_path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound { id: id.to_string() });
            }
            Err(e) => return Err(StoreError::io(record_path, e)),
        };
        let mut start = Vec::with_capacity(format::MAX_HEADER_BYTES);
        (&record)
            .take(format::MAX_HEADER_BYTES as u64)
            .read_to_end(&mut start)
            .map_err(|e| StoreError::io(&record_path, e))?;
        let generation = format::generation(&start, &record_path)?;
        let record_id = record
            .metadata()
            .map(|m| file_id(&m))
            .map_err(|e| StoreError::io(&record_path, e))?;

        let path = self.journal_path(id, generation);
        let io_err = |e| StoreError::io(&path, e);
        let (mut file, created) = open_journal_file(&path).map_err(io_err)?;
        if created {
            sync_dir(&self.dir)?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err)?;
        let parsed = journal::parse(&bytes, generation, &path)?;
        if parsed.valid_len < bytes.len() as u64 {
            // A torn last entry: cut off (durably) before anything is
            // appended after it, where it would read as damage.
            file.set_len(parsed.valid_len)
                .and_then(|()| file.sync_data())
                .map_err(io_err)?;
        }
        Ok(OpenJournal {
            generation,
            _record: record,
            record_id,
            path,
            file,
            end: parsed.valid_len,
            poisoned: false,
        })
    }

    fn save_locked(&self, record: &Record, state: &mut JournalState) -> Result<(), StoreError> {
        let id = &record.meta.id;
        let target = self.record_path(id);
        // The generation being replaced: its journal stays until the new
        // record is in place.
        let old = match state.open.take() {
            Some(open) if open.is_current(&target) => Some(open.generation),
            _ => self.stored_generation(id),
        };
        // Journals of other generations (left by a crash) are looked for
        // once per handle, and when the record's own generation is unknown.
        // Nothing is deleted before the new record is in place.
        let listed = if state.swept && old.is_some() {
            Some(Vec::new())
        } else {
            self.journal_generations(id)
        };
        let found = listed.iter().flatten().copied();
        // Above every journal there is, so no stale one can be taken for it.
        let generation = found.chain(old).max().unwrap_or(0) + 1;
        let bytes = format::encode(record, generation)?;
        let entries = journal::encode_all(generation, &record.journal, id.as_str())?;

        let journal_path = self.journal_path(id, generation);
        let journal_err = |e| StoreError::io(&journal_path, e);
        let mut journal = create_journal_file(&journal_path).map_err(journal_err)?;
        let undo = |e: StoreError| {
            // Never named by a record: harmless if it stays, but untidy.
            let _ = fs::remove_file(&journal_path);
            e
        };
        if !entries.is_empty() {
            journal
                .write_all(&entries)
                .and_then(|()| journal.sync_data())
                .map_err(journal_err)
                .map_err(undo)?;
            // The journal must be found once the record naming it is.
            sync_dir(&self.dir).map_err(undo)?;
        }

        let dir_err = |e| StoreError::io(&self.dir, e);
        let mut builder = tempfile::Builder::new();
        builder.prefix(TEMP_PREFIX).suffix(TEMP_SUFFIX);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(fs::Permissions::from_mode(0o600));
        }
        let mut tmp = builder
            .tempfile_in(&self.dir)
            .map_err(dir_err)
            .map_err(undo)?;
        let tmp_err = |e| StoreError::io(&self.dir, e);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The mode given at creation is filtered by the umask; this is not.
            tmp.as_file()
                .set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(tmp_err)
                .map_err(undo)?;
        }
        tmp.write_all(&bytes).map_err(tmp_err).map_err(undo)?;
        tmp.as_file().sync_all().map_err(tmp_err).map_err(undo)?;
        // On failure the temp file is deleted when `PersistError` drops.
        let record_file = tmp
            .persist(&target)
            .map_err(|e| StoreError::io(&target, e.error))
            .map_err(undo)?;
        // From here on the old journal is stale, until deleted below.
        state.swept = false;
        sync_dir(&self.dir)?;

        // The old journal and any other stale one go; what cannot go, the
        // next save or remove tries again.
        let stale: Vec<u64> = listed
            .iter()
            .flatten()
            .copied()
            .chain(old)
            .filter(|&g| g != generation)
            .collect();
        state.swept = self.delete_journals(id, &stale) && listed.is_some();
        // Without the record's identity, the next append reads it afresh.
        state.open = record_file.metadata().ok().map(|m| OpenJournal {
            generation,
            _record: record_file,
            record_id: file_id(&m),
            path: journal_path,
            file: journal,
            end: entries.len() as u64,
            poisoned: false,
        });
        Ok(())
    }

    fn append_locked(
        &self,
        id: &TransferId,
        entry: &JournalEntry,
        state: &mut JournalState,
    ) -> Result<(), StoreError> {
        let open = match state.open.take() {
            Some(open) if open.is_current(&self.record_path(id)) => open,
            _ => self.open_journal(id)?,
        };
        let open = state.open.insert(open);
        let frame = journal::encode(open.generation, entry, id.as_str())?;
        open.append(&frame)
    }

    fn remove_locked(&self, id: &TransferId, state: &mut JournalState) -> Result<(), StoreError> {
        state.open = None;
        let path = self.record_path(id);
        let removed = match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::NotFound { id: id.to_string() })
            }
            Err(e) => return Err(StoreError::io(path, e)),
        };
        // Its journal, and any stale one (even with no record left). One that
        // cannot be deleted is never read without its record, and the next
        // save or remove of this id tries again.
        let journals = self.journal_generations(id);
        state.swept =
            self.delete_journals(id, journals.as_deref().unwrap_or_default()) && journals.is_some();
        removed?;
        // A lock file left by a crashed process goes too: taking and dropping
        // the lease unlinks it. If someone holds the lease, it stays theirs.
        drop(self.lease(id));
        sync_dir(&self.dir)
    }
}

impl OpenJournal {
    /// Whether `record_path` still names the record this journal belongs to.
    fn is_current(&self, record_path: &Path) -> bool {
        fs::metadata(record_path).is_ok_and(|m| file_id(&m) == self.record_id)
    }

    fn append(&mut self, frame: &[u8]) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::io(
                &self.path,
                io::Error::other(
                    "an earlier append to this journal failed and could not be taken back; \
                     nothing more is appended to it until the record is saved again",
                ),
            ));
        }
        match write_at(&self.file, self.end, frame).and_then(|()| self.file.sync_data()) {
            Ok(()) => {
                self.end += frame.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Whatever part of the entry was written is cut off, so that
                // the next entry does not land after it.
                let undone = self
                    .file
                    .set_len(self.end)
                    .and_then(|()| self.file.sync_data());
                self.poisoned = undone.is_err();
                Err(StoreError::io(&self.path, e))
            }
        }
    }
}

/// The generation of a journal file of `id` named `name`, if it is one.
fn journal_generation(name: &OsStr, id: &TransferId) -> Option<u64> {
    let generation = name
        .to_str()?
        .strip_prefix(id.as_str())?
        .strip_prefix('.')?
        .strip_suffix(JOURNAL_EXT)?
        .strip_suffix('.')?;
    if generation.is_empty() || !generation.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    generation.parse().ok()
}

/// What tells two files apart while both exist.
#[cfg(unix)]
type FileId = (u64, u64);
#[cfg(not(unix))]
type FileId = ();

#[cfg(unix)]
fn file_id(meta: &fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

// Without inode numbers a replaced record goes unnoticed by other handles;
// the lease is what keeps them from writing meanwhile.
#[cfg(not(unix))]
fn file_id(_meta: &fs::Metadata) -> FileId {}

/// Whether `path` names the open file `file`.
fn names_file(path: &Path, file: &File) -> bool {
    match (fs::metadata(path), file.metadata()) {
        (Ok(now), Ok(ours)) => file_id(&now) == file_id(&ours),
        _ => false,
    }
}

#[cfg(unix)]
fn write_at(file: &File, at: u64, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(bytes, at)
}

#[cfg(not(unix))]
fn write_at(mut file: &File, at: u64, bytes: &[u8]) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(at))?;
    file.write_all(bytes)
}

fn journal_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

fn make_private(file: &File) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The mode given at creation is filtered by the umask; this is not.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

/// Opens a journal for appending, creating it if missing; says whether it
/// was created (its directory entry is then not durable yet).
fn open_journal_file(path: &Path) -> io::Result<(File, bool)> {
    match journal_options().open(path) {
        Ok(file) => Ok((file, false)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match journal_options().create_new(true).open(path) {
                Ok(file) => {
                    make_private(&file)?;
                    Ok((file, true))
                }
                // Created meanwhile (by another store handle): use it.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    journal_options().open(path).map(|f| (f, false))
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Creates the empty journal of a new generation. One already there was left
/// by a crash or another writer and is named by no record; it is emptied,
/// durably, so that none of its entries can be taken for the new record's.
fn create_journal_file(path: &Path) -> io::Result<File> {
    let file = journal_options().create(true).truncate(false).open(path)?;
    make_private(&file)?;
    if file.metadata()?.len() > 0 {
        file.set_len(0)?;
        file.sync_all()?;
    }
    Ok(file)
}

/// Locks a journal state, starting it afresh if a panic left it poisoned
/// (its cached end may then be wrong; a fresh start reads it again).
fn lock_state(state: &Mutex<JournalState>) -> MutexGuard<'_, JournalState> {
    match state.lock() {
        Ok(guard) => guard,
        Err(poisoned) => {
            let mut guard = poisoned.into_inner();
            *guard = JournalState::default();
            state.clear_poison();
            guard
        }
    }
}

fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn resolve(
    explicit: Option<&Path>,
    env: Option<OsString>,
    data_dir: Option<PathBuf>,
) -> Result<PathBuf, StoreError> {
    if let Some(dir) = explicit {
        return Ok(dir.to_owned());
    }
    if let Some(dir) = env.filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    data_dir
        .map(|d| d.join("s3tm").join("transfers"))
        .ok_or(StoreError::NoStateDir)
}

fn ensure_private_dir(dir: &Path) -> Result<(), StoreError> {
    let refuse = |reason: String| StoreError::StateDir {
        path: dir.to_owned(),
        reason,
    };
    let not_a_dir = || refuse("is not a directory (or a file stands on its path)".to_owned());
    match fs::metadata(dir) {
        Ok(meta) => return check_existing_dir(dir, &meta),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => return Err(not_a_dir()),
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(StoreError::io(dir, e)),
        Err(_) => {}
    }
    // Missing: create what is missing, private. Only a directory made here gets its mode
    // set; an existing one is someone's, and stays as it is.
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(parent).map_err(|e| match e.kind() {
            io::ErrorKind::NotADirectory | io::ErrorKind::AlreadyExists => not_a_dir(),
            _ => StoreError::io(parent, e),
        })?;
    }
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        // Only narrows the window until the explicit chmod below.
        builder.mode(0o700);
    }
    match builder.create(dir) {
        Ok(()) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| StoreError::io(dir, e))?;
            }
            Ok(())
        }
        // Made by someone else meanwhile: judge it as any existing directory.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = fs::metadata(dir).map_err(|e| StoreError::io(dir, e))?;
            check_existing_dir(dir, &meta)
        }
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Err(not_a_dir()),
        Err(e) => Err(StoreError::io(dir, e)),
    }
}

/// An existing state directory must be a directory that only this user can change:
/// records name the user's files, and a directory others can write lets them plant or
/// swap records. One that others can read is accepted as it is (records are 0600).
fn check_existing_dir(dir: &Path, meta: &fs::Metadata) -> Result<(), StoreError> {
    let refuse = |reason: String| StoreError::StateDir {
        path: dir.to_owned(),
        reason,
    };
    if !meta.is_dir() {
        return Err(refuse("is not a directory".to_owned()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != me {
            return Err(refuse(format!(
                "is owned by uid {}, not by this user (uid {me})",
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(refuse(format!(
                "is writable by other users (mode {:o})",
                meta.mode() & 0o7777
            )));
        }
    }
    Ok(())
}

// Makes a rename or unlink in `dir` durable. Without it a power loss can
// bring back the old directory entry even though the new file's data is on disk.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

impl ResumeStore for FileStore {
    fn save(&self, record: &Record) -> Result<(), StoreError> {
        let state = self.journal_state(&record.meta.id);
        let mut guard = lock_state(&state);
        self.save_locked(record, &mut guard)
    }

    fn append(&self, id: &TransferId, entry: &JournalEntry) -> Result<(), StoreError> {
        let state = self.journal_state(id);
        let mut guard = lock_state(&state);
        self.append_locked(id, entry, &mut guard)
    }

    fn load(&self, id: &TransferId) -> Result<Option<Record>, StoreError> {
        self.read_record(id)
    }

    fn list(&self) -> Result<Vec<ListEntry>, StoreError> {
        let entries = fs::read_dir(&self.dir).map_err(|e| StoreError::io(&self.dir, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&self.dir, e))?;
            let name = entry.file_name();
            // Anything that is not `<valid id>.record` (journals, temp files,
            // lock files, a user's notes) is not a record of ours.
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(RECORD_EXT))
                .and_then(|n| n.strip_suffix('.'))
                .and_then(|n| TransferId::new(n).ok())
            else {
                continue;
            };
            let summary = match self.read_record(&id) {
                Ok(Some(record)) => Ok(record.summary()),
                // Removed between read_dir and now: it is simply gone.
                Ok(None) => continue,
                Err(e) => Err(e),
            };
            out.push(ListEntry {
                path: Some(entry.path()),
                id,
                summary,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn remove(&self, id: &TransferId) -> Result<(), StoreError> {
        let state = self.journal_state(id);
        let result = self.remove_locked(id, &mut lock_state(&state));
        self.forget_journal_state(id, state);
        result
    }

    fn lease(&self, id: &TransferId) -> Result<Lease, StoreError> {
        let path = self.lock_path(id);
        for _ in 0..LEASE_ATTEMPTS {
            let mut options = OpenOptions::new();
            options.read(true).write(true).create(true).truncate(false);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let file = options.open(&path).map_err(|e| StoreError::io(&path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(StoreError::Locked { id: id.to_string() });
                }
                Err(TryLockError::Error(e)) => return Err(StoreError::io(path, e)),
            }
            if still_linked(&file, &path)? {
                return Ok(Lease::new(id.clone(), LockGuard { path, _file: file }));
            }
        }
        Err(StoreError::Locked { id: id.to_string() })
    }
}

// A releasing holder unlinks the lock file before unlocking it. If we opened
// that file just before the unlink, our lock is on an orphaned inode that
// excludes nobody, so it must be retried on whatever the path names now.
#[cfg(unix)]
fn still_linked(file: &File, path: &Path) -> Result<bool, StoreError> {
    use std::os::unix::fs::MetadataExt;
    let ours = file.metadata().map_err(|e| StoreError::io(path, e))?;
    match fs::metadata(path) {
        Ok(now) => Ok(now.dev() == ours.dev() && now.ino() == ours.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

// Lock files are never unlinked off Unix, so the file we locked is the one.
#[cfg(not(unix))]
fn still_linked(_file: &File, _path: &Path) -> Result<bool, StoreError> {
    Ok(true)
}

struct LockGuard {
    path: PathBuf,
    // Closing the file releases the OS lock.
    _file: File,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Unlink while still holding the lock (see `still_linked`) so that
        // released leases leave no files behind. Failure only leaves a stale,
        // unlocked file, which the next lease reuses.
        #[cfg(unix)]
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests;
