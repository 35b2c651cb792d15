//! Builds the bootable appliance disk from files, without root privileges or
//! loop mounts: an initramfs whose `/init` is a given program (with its shared
//! libraries and the kernel modules it asks for), a unified kernel image (UKI)
//! made on systemd's EFI stub, and a GPT raw disk holding an EFI system
//! partition (systemd-boot, slot A) and an ext4 data partition seeded from a
//! directory. The same inputs and `SOURCE_DATE_EPOCH` give the same bytes.
//!
//! The crate knows nothing of the appliance: what `/init` does, what the data
//! partition carries and what the command line means are its callers' business.
//! External tools do the file-system work: `objcopy`, `ldd`, `sfdisk`,
//! `mkfs.vfat` + `mcopy`, `mkfs.ext4 -d` and (for qcow2) `qemu-img`.

mod cpio;
pub mod disk;
pub mod initramfs;
pub mod inputs;
mod tool;
pub mod uki;

pub use disk::{build_disk, DiskReport, DiskSpec, DATA_PART_NAME, ESP_PART_NAME, SLOT_A_FILE};
pub use initramfs::{build_initramfs, InitramfsSpec};
pub use inputs::Inputs;
pub use uki::{build_uki, OsRelease, UkiSpec};

use std::path::{Path, PathBuf};

/// The image builder's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A required input file is missing.
    #[error(
        "{what} not found at {path}; run ci/fetch-image-inputs.sh or pass its path explicitly"
    )]
    MissingInput {
        /// Which input.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// An external tool failed or is not installed.
    #[error("{tool} failed: {detail}; install it (ci/setup.sh does) and check its input")]
    Tool {
        /// The program.
        tool: String,
        /// Exit status and standard error.
        detail: String,
    },
    /// The inputs cannot make a valid image.
    #[error("{what}: {detail}")]
    Invalid {
        /// What is wrong.
        what: String,
        /// Why, and what to do.
        detail: String,
    },
}

impl Error {
    /// A stable machine-readable name for this error.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::MissingInput { .. } => "missing_input",
            Error::Tool { .. } => "tool",
            Error::Invalid { .. } => "invalid",
        }
    }

    pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.to_path_buf();
        move |source| Error::Io { what, path, source }
    }

    pub(crate) fn invalid(what: impl Into<String>, detail: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

/// Result with this crate's error.
pub type Result<T> = std::result::Result<T, Error>;

/// Writes `data` to `path` through a temporary file in the same directory,
/// fsynced and renamed, so `path` is either absent, old or complete.
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = parent_dir(path);
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(Error::io("create temp file in", dir))?;
    tmp.write_all(data)
        .map_err(Error::io("write", tmp.path()))?;
    persist(tmp, path)
}

/// Fsyncs a finished temporary file and renames it to `path`.
pub(crate) fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // Temporary files are 0600; outputs are ordinary files.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(Error::io("set permissions of", tmp.path()))?;
    tmp.as_file()
        .sync_all()
        .map_err(Error::io("fsync", tmp.path()))?;
    tmp.persist(path).map_err(|e| Error::Io {
        what: "rename into place",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    if let Ok(d) = std::fs::File::open(parent_dir(path)) {
        let _ = d.sync_all();
    }
    Ok(())
}

pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The build time: `SOURCE_DATE_EPOCH` when set (reproducible builds), else 0.
pub fn source_date_epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => s.trim().parse().map_err(|_| {
            Error::invalid(
                "SOURCE_DATE_EPOCH",
                format!("{s:?} is not a number of seconds since 1970"),
            )
        }),
        Err(_) => Ok(0),
    }
}
