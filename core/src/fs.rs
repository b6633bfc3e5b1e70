//! The file system: atomic writes (a temporary file, fsync, rename), durable renames (fsync of the
//! directory) and exclusive file locks. Used by the edge publisher, the sync cache and the CLI.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Writes `bytes` to `path` through a temporary file in the same directory: write, fsync, rename.
/// When `mtime` is given the file gets that modification time before the rename.
///
/// The temporary file's name is unique per call (process id and a process-wide counter) and it is
/// created exclusively, so concurrent writers of the same path, in one process or several, never
/// write into each other's file: each rename installs one whole file, and readers see a whole file.
pub fn write_file_atomic(
    path: &Path,
    bytes: &[u8],
    mtime: Option<SystemTime>,
) -> std::io::Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".tmp{}-{}",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = path.with_file_name(tmp_name);
    let mut created = false;
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        created = true;
        f.write_all(bytes)?;
        if let Some(t) = mtime {
            f.set_modified(t)?;
        }
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() && created {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Fsyncs a directory so that renames in it are durable (best effort: some file systems refuse).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Fsyncs the directory `path` is in, so that a rename to `path` is durable (best effort).
pub fn sync_parent(path: &Path) {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

/// Tries to take an exclusive `flock` on `file` without blocking: `Ok(false)` when another open
/// file description holds it. The lock goes with the descriptor: closing it (or dying) releases it.
#[cfg(unix)]
pub(crate) fn try_lock_exclusive(file: &File) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    loop {
        // SAFETY: flock only reads the descriptor, which `file` keeps open for this call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(code) if code == libc::EWOULDBLOCK => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// Publishing needs `flock(2)`; elsewhere it fails with `Unsupported` rather than run unguarded.
#[cfg(not(unix))]
pub(crate) fn try_lock_exclusive(file: &File) -> std::io::Result<bool> {
    let _ = file;
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "publishing needs flock(2): a Unix file system",
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("entitle-fs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.bin");
        write_file_atomic(&path, b"first", None).unwrap();
        let mtime = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        write_file_atomic(&path, b"second", Some(mtime)).unwrap();
        sync_parent(&path);
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(modified, mtime);
        // A failed write (its directory is missing) names the error and leaves nothing behind.
        let missing = dir.join("no-such-dir").join("b.bin");
        assert!(write_file_atomic(&missing, b"x", None).is_err());
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.bin")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn an_exclusive_lock_is_refused_to_a_second_holder() {
        let path = std::env::temp_dir().join(format!("entitle-fs-lock-{}", std::process::id()));
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .unwrap()
        };
        let (first, second) = (open(), open());
        assert!(try_lock_exclusive(&first).unwrap());
        assert!(!try_lock_exclusive(&second).unwrap());
        drop(first);
        assert!(try_lock_exclusive(&second).unwrap());
        std::fs::remove_file(&path).unwrap();
    }
}
