//! Small filesystem helpers: atomic writes and checked relative paths.

use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory,
/// fsync, rename over the target, fsync the directory. Readers never see a
/// partial file.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_temp(path, bytes, true)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn write_via_temp(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(Error::io("create temporary file in", dir))?;
    tmp.write_all(bytes)
        .map_err(Error::io("write", tmp.path()))?;
    // The temporary file is created 0600; what is written through here
    // (repository, media, installed content) is readable by any user, as a
    // static web server run by another user needs. Secrets use [`write_secret`].
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(Error::io("chmod", tmp.path()))?;
    }
    if durable {
        tmp.as_file()
            .sync_all()
            .map_err(Error::io("fsync", tmp.path()))?;
    }
    tmp.persist(path).map_err(|e| Error::Io {
        action: "rename into place",
        path: path.to_owned(),
        source: e.error,
    })?;
    Ok(())
}

/// Fsyncs a directory so that renames inside it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(Error::io("fsync directory", dir))
}

/// Flushes every pending write on the filesystem holding `path` (one `syncfs`),
/// for bulk writes that are made durable together before a commit point.
pub fn sync_filesystem(path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).map_err(Error::io("open", path))?;
    nix::unistd::syncfs(f.as_raw_fd()).map_err(|e| Error::Io {
        action: "syncfs",
        path: path.to_owned(),
        source: e.into(),
    })
}

/// Asks the kernel to start writing `len` bytes of `file` from `offset` (0
/// for the rest of the file) to disk now, without waiting for them
/// (`posix_fadvise(DONTNEED)`, which on Linux starts writeback and drops only
/// pages already clean). Bulk writers call it as each file or stretch is
/// complete, so the disk works while the CPU prepares the next and the final
/// [`sync_filesystem`] waits for less. Advisory: an error changes nothing the
/// caller relies on, so it is ignored.
pub fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let _ = nix::fcntl::posix_fadvise(
        file.as_raw_fd(),
        offset.try_into().unwrap_or(0),
        len.try_into().unwrap_or(0),
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
}

/// Writes `bytes` to `path` through a temporary file and a rename, without
/// fsync: readers never see a partial file, and the caller makes the batch
/// durable with [`sync_filesystem`] before relying on it.
pub fn write_unsynced(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_temp(path, bytes, false)
}

/// What a file type is, for error messages.
fn type_name(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_char_device() {
        "character device"
    } else {
        "unknown file type"
    }
}

fn check_regular(path: &Path, md: &std::fs::Metadata, max_len: u64) -> Result<()> {
    if !md.file_type().is_file() {
        return Err(Error::NotRegular {
            path: path.to_owned(),
            found: type_name(md.file_type()),
        });
    }
    if md.len() > max_len {
        return Err(Error::TooLarge {
            what: path.display().to_string(),
            size: md.len(),
            max: max_len,
        });
    }
    Ok(())
}

/// Opens a file from a medium or a mirror, which may be hostile: it must be a
/// regular file (never a symlink, FIFO, device, socket or directory, checked
/// with `symlink_metadata` before opening and `fstat` after) of at most
/// `max_len` bytes. It is opened with `O_NOFOLLOW | O_NONBLOCK`, so a file
/// swapped for a FIFO or a link in between cannot block or redirect the open,
/// and every read through the result stops after `max_len` bytes. A missing
/// file is [`Error::Truncated`].
pub fn open_regular(path: &Path, max_len: u64) -> Result<std::io::Take<std::fs::File>> {
    use nix::fcntl::OFlag;
    use std::os::unix::fs::OpenOptionsExt;
    let md = std::fs::symlink_metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Truncated {
                what: path.display().to_string(),
                detail: "missing".into(),
            }
        } else {
            Error::Io {
                action: "inspect",
                path: path.to_owned(),
                source: e,
            }
        }
    })?;
    check_regular(path, &md, max_len)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
        .open(path)
        .map_err(Error::io("open", path))?;
    let md = file.metadata().map_err(Error::io("inspect", path))?;
    check_regular(path, &md, max_len)?;
    Ok(file.take(max_len))
}

/// Reads a whole file from a medium or a mirror through [`open_regular`].
pub fn read_regular(path: &Path, max_len: u64) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(path, max_len)?
        .read_to_end(&mut bytes)
        .map_err(Error::io("read", path))?;
    Ok(bytes)
}

/// Checks that `raw` is a safe relative path made of normal components
/// (no `..`, no root, no empty or `.` components, no backslashes) and returns it.
pub fn safe_relative(raw: &str) -> Result<PathBuf> {
    if raw.is_empty() {
        return Err(Error::invalid(raw, "empty path"));
    }
    if raw.starts_with('/') {
        return Err(Error::AbsolutePath { path: raw.into() });
    }
    if raw.contains('\\') || raw.contains('\0') {
        return Err(Error::invalid(
            raw,
            "paths may not contain backslashes or NUL bytes",
        ));
    }
    let mut out = PathBuf::new();
    for part in raw.split('/') {
        match part {
            ".." => return Err(Error::PathTraversal { path: raw.into() }),
            "" | "." => {
                return Err(Error::invalid(
                    raw,
                    "paths may not contain empty or '.' components",
                ))
            }
            _ => out.push(part),
        }
    }
    // Belt and braces: the standard library must agree it is normal and relative.
    if out.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(Error::PathTraversal { path: raw.into() });
    }
    Ok(out)
}

/// Creates a directory with mode 0700 (and its parents).
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(Error::io("create directory", dir))
}

/// Writes a secret atomically with mode 0600.
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("secret")
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(Error::io("create secret file", &tmp))?;
    f.write_all(bytes).map_err(Error::io("write", &tmp))?;
    f.sync_all().map_err(Error::io("fsync", &tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io("rename into place", path))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_relative_rejects_escapes() {
        assert_eq!(
            safe_relative("a/b.json").unwrap(),
            PathBuf::from("a/b.json")
        );
        assert_eq!(safe_relative("../x").unwrap_err().kind(), "path_traversal");
        assert_eq!(
            safe_relative("a/../../x").unwrap_err().kind(),
            "path_traversal"
        );
        assert_eq!(
            safe_relative("/etc/passwd").unwrap_err().kind(),
            "absolute_path"
        );
        assert_eq!(safe_relative("a//b").unwrap_err().kind(), "invalid");
        assert_eq!(safe_relative("a\\b").unwrap_err().kind(), "invalid");
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/f.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }
}
