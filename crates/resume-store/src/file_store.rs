use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::format;
use crate::{Lease, ListEntry, Record, ResumeStore, StoreError, TransferId};

/// The environment variable that overrides the default state directory.
pub const STATE_DIR_ENV: &str = "S3TM_STATE_DIR";

const RECORD_EXT: &str = "record";
const LOCK_EXT: &str = "lock";
// Temp files start with '.', which no valid id does, so they can never be
// mistaken for (or collide with) a record or lock file.
const TEMP_PREFIX: &str = ".tmp-";
const TEMP_SUFFIX: &str = ".partial";

// Each retry means another process released and unlinked the lock file
// between our open and our lock; persistent churn is as good as "locked".
const LEASE_ATTEMPTS: usize = 8;

/// A [`ResumeStore`] keeping one file per transfer in a directory.
///
/// - `<id>.record` holds the record (see the format below); it is replaced
///   atomically by writing a temp file in the same directory, fsyncing it,
///   renaming it over the old record and fsyncing the directory, so a crash
///   or power loss leaves either the old or the new record.
/// - `<id>.lock` carries the lease as an OS file lock (`flock` on Unix), so a
///   lease vanishes with its process and a crashed transfer can be resumed
///   at once.
/// - `.tmp-*.partial` files are the debris of saves interrupted by a crash;
///   they are never read and can be deleted.
///
/// A directory the store creates is made 0700, and records are 0600, set
/// explicitly rather than left to the umask. An existing directory is never
/// chmod-ed: it is used as it is if it is this user's and no one else can
/// write to it, and refused otherwise (see [`FileStore::open`]). Corrupt
/// records are reported, never deleted.
///
/// Record format: an ASCII header line
/// `s3tm-resume-store <format version> crc32=<hex> len=<bytes>`, then the
/// metadata as one JSON line, then the payload verbatim. The CRC32 covers
/// the format version and everything after the header.
#[derive(Clone, Debug)]
pub struct FileStore {
    dir: PathBuf,
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
        Ok(FileStore { dir })
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

    fn read_record(&self, id: &TransferId) -> Result<Option<Record>, StoreError> {
        let path = self.record_path(id);
        match fs::read(&path) {
            Ok(bytes) => format::decode(&bytes, &path, id).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }
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
        let bytes = format::encode(record)?;
        let target = self.record_path(&record.meta.id);
        let dir_err = |e| StoreError::io(&self.dir, e);

        let mut builder = tempfile::Builder::new();
        builder.prefix(TEMP_PREFIX).suffix(TEMP_SUFFIX);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(fs::Permissions::from_mode(0o600));
        }
        let mut tmp = builder.tempfile_in(&self.dir).map_err(dir_err)?;
        let tmp_err = |e| StoreError::io(&self.dir, e);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The mode given at creation is filtered by the umask; this is not.
            tmp.as_file()
                .set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(tmp_err)?;
        }
        tmp.write_all(&bytes).map_err(tmp_err)?;
        tmp.as_file().sync_all().map_err(tmp_err)?;
        // On failure the temp file is deleted when `PersistError` drops.
        tmp.persist(&target)
            .map_err(|e| StoreError::io(&target, e.error))?;
        sync_dir(&self.dir)
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
            // Anything that is not `<valid id>.record` (temp files, lock
            // files, a user's notes) is not a record of ours.
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(RECORD_EXT))
                .and_then(|n| n.strip_suffix('.'))
                .and_then(|n| TransferId::new(n).ok())
            else {
                continue;
            };
            let summary = match self.read_record(&id) {
                Ok(Some(record)) => Ok(format::summarize(record)),
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
        let path = self.record_path(id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound { id: id.to_string() });
            }
            Err(e) => return Err(StoreError::io(path, e)),
        }
        // A lock file left by a crashed process goes too: taking and dropping
        // the lease unlinks it. If someone holds the lease, it stays theirs.
        drop(self.lease(id));
        sync_dir(&self.dir)
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
