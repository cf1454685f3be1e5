//! The data directory: one owner at a time, readable by it alone.
//!
//! Two responders sharing a directory would interleave audit records and
//! each refuse the other's chain on restart, so the first takes an
//! exclusive lock on `<data_dir>/lock` for its whole life and a second
//! stops at once. The directory is made 0700 and the files keyburn creates
//! in it 0600: the queue holds alert payloads, the audit key signs records.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "{dir} is in use by another keyburn serve (it holds {lock}); stop it, or give this \
         one its own data_dir"
    )]
    InUse { dir: PathBuf, lock: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The data directory, held: the lock is released when this is dropped
/// (or the process ends, however it ends).
#[derive(Debug)]
pub struct DataDir {
    _lock: File,
}

impl DataDir {
    /// Create `dir` if needed, restrict it to its owner and take its lock.
    pub fn claim(dir: &Path) -> Result<DataDir, DataDirError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DataDirError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        private(dir, 0o700).map_err(io(dir))?;
        let path = dir.join("lock");
        let mut options = OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let lock = options.open(&path).map_err(io(&path))?;
        match lock.try_lock() {
            Ok(()) => Ok(DataDir { _lock: lock }),
            Err(std::fs::TryLockError::WouldBlock) => Err(DataDirError::InUse {
                dir: dir.to_path_buf(),
                lock: path,
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
        }
    }
}

/// Give `path` the unix `mode` (nothing elsewhere).
pub fn private(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Make `path` 0600 if it exists (a file SQLite created with the umask's
/// mode; its `-wal` and `-shm` files then take the same).
pub fn private_file(path: &Path) -> std::io::Result<()> {
    match std::fs::metadata(path) {
        Ok(_) => private(path, 0o600),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
