//! Reading files out of the edge directory without trusting what is in it: only the names the edge
//! protocol defines, only regular files reached without a symbolic link, and never more bytes than
//! a bound.

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::{Path, PathBuf};

use entitle_core::edge::{is_safe_path, MANIFEST_FILE};

/// Why a file is not served.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Missing, a name the protocol does not define, a symbolic link, or not a regular file.
    NotFound,
    /// Larger than the bound.
    TooLarge,
    /// The server could not open or read it for now (out of file descriptors or memory): worth
    /// trying again, and no reason to think the file is gone.
    Unavailable,
}

/// What an error opening or reading an edge file means: a lack of resources is
/// [`Refusal::Unavailable`]; anything else (missing, a link, a directory, an I/O error) is
/// [`Refusal::NotFound`].
fn refusal(e: &std::io::Error) -> Refusal {
    #[cfg(unix)]
    if let Some(code) = e.raw_os_error() {
        if [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOMEM,
            libc::EINTR,
            libc::EAGAIN,
        ]
        .contains(&code)
        {
            return Refusal::Unavailable;
        }
    }
    match e.kind() {
        std::io::ErrorKind::OutOfMemory | std::io::ErrorKind::Interrupted => Refusal::Unavailable,
        _ => Refusal::NotFound,
    }
}

/// Whether `rel` (a path relative to the edge directory) is a file the edge protocol names: the
/// manifest, `snapshots/*.snap`, `deltas/*.delta` or `subscriptions/*.json`, each segment safe and
/// none hidden.
pub fn is_edge_file(rel: &str) -> bool {
    if rel == MANIFEST_FILE {
        return true;
    }
    if !is_safe_path(rel) {
        return false;
    }
    let Some((dir, name)) = rel.split_once('/') else {
        return false;
    };
    let ext = match dir {
        "snapshots" => ".snap",
        "deltas" => ".delta",
        "subscriptions" => ".json",
        _ => return false,
    };
    !name.contains('/') && !name.starts_with('.') && name.len() > ext.len() && name.ends_with(ext)
}

/// Opens `root/rel` for reading when `rel` is an edge file (see [`is_edge_file`]), no component
/// below `root` is a symbolic link, the file is regular and at most `max` bytes. `root` must be
/// canonical. Never blocks on a FIFO or device: it is opened non-blocking and refused.
pub fn open(root: &Path, rel: &str, max: u64) -> Result<(File, Metadata), Refusal> {
    if !is_edge_file(rel) {
        return Err(Refusal::NotFound);
    }
    let path = root.join(rel);
    // Every directory between the root and the file must be a real directory.
    if let Some((dir, _)) = rel.split_once('/') {
        let meta = std::fs::symlink_metadata(root.join(dir)).map_err(|e| refusal(&e))?;
        if !meta.file_type().is_dir() {
            return Err(Refusal::NotFound);
        }
    }
    let file = open_nofollow(&path).map_err(|e| refusal(&e))?;
    let meta = file.metadata().map_err(|e| refusal(&e))?;
    if !meta.file_type().is_file() {
        return Err(Refusal::NotFound);
    }
    // A directory swapped for a link after the check above shows in where the open file really is.
    if !opened_at(&file, &path) {
        return Err(Refusal::NotFound);
    }
    if meta.len() > max {
        return Err(Refusal::TooLarge);
    }
    Ok((file, meta))
}

/// Reads a whole edge file of at most `max` bytes (see [`open`]); a file that grows past the bound
/// while being read is refused too.
pub fn read(root: &Path, rel: &str, max: u64) -> Result<Vec<u8>, Refusal> {
    let (file, meta) = open(root, rel, max)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| refusal(&e))?;
    if bytes.len() as u64 > max {
        return Err(Refusal::TooLarge);
    }
    Ok(bytes)
}

#[cfg(unix)]
fn open_nofollow(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(not(unix))]
fn open_nofollow(path: &Path) -> std::io::Result<File> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    File::open(path)
}

/// Whether the open file is at `expected` (Linux: its `/proc/self/fd` link; elsewhere assumed).
fn opened_at(file: &File, expected: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let link = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        match std::fs::read_link(link) {
            Ok(real) => real == expected,
            // No /proc (a minimal container): the no-follow open and directory checks stand alone.
            Err(_) => true,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, expected);
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_protocol_names() {
        for ok in [
            "manifest.json",
            "snapshots/v000001-0123456789abcdef.snap",
            "deltas/v000001-v000002-0123456789abcdef.delta",
            "subscriptions/v000002-0123456789abcdef.json",
        ] {
            assert!(is_edge_file(ok), "{ok}");
        }
        for bad in [
            ".env",
            ".git/config",
            "snapshots/.v1.snap",
            "snapshots/.v000001-x.snap.tmp1",
            "snapshots/x.delta",
            "deltas/x.snap",
            "subscriptions/x.snap",
            "subscriptions/.x.json",
            "snapshots/x.json",
            "snapshots/.snap",
            "snapshots/a/b.snap",
            "other/x.snap",
            "manifest.json.bak",
            "snapshots",
            "../x.snap",
            "",
        ] {
            assert!(!is_edge_file(bad), "{bad}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn links_and_special_files_are_refused() {
        let base = std::env::temp_dir().join(format!("entitle-files-{}", std::process::id()));
        let root = base.join("edge");
        std::fs::create_dir_all(root.join("deltas")).unwrap();
        std::fs::create_dir_all(base.join("elsewhere")).unwrap();
        let root = root.canonicalize().unwrap();
        std::fs::write(base.join("secret"), "secret").unwrap();
        std::fs::write(base.join("elsewhere/x.snap"), "secret").unwrap();
        std::os::unix::fs::symlink(base.join("secret"), root.join("manifest.json")).unwrap();
        std::os::unix::fs::symlink(base.join("elsewhere"), root.join("snapshots")).unwrap();
        std::fs::write(root.join("deltas/a.delta"), "12345").unwrap();
        std::fs::create_dir(root.join("deltas/d.delta")).unwrap();

        assert_eq!(read(&root, "manifest.json", 100), Err(Refusal::NotFound));
        assert_eq!(read(&root, "snapshots/x.snap", 100), Err(Refusal::NotFound));
        assert_eq!(read(&root, "deltas/d.delta", 100), Err(Refusal::NotFound));
        assert_eq!(read(&root, "deltas/a.delta", 4), Err(Refusal::TooLarge));
        assert_eq!(read(&root, "deltas/a.delta", 5).unwrap(), b"12345");
        let _ = std::fs::remove_dir_all(&base);
    }
}
