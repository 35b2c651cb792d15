//! The one error type of the `bundles` crate.
//!
//! Every variant says what went wrong, where, and (through its message) what
//! to do. [`Error::kind`] gives a stable, machine-readable name that the
//! binaries print with `--json` and that tests assert on.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building, signing, exporting or verifying bundles.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A source tree, manifest or bundle is malformed; the message says what to fix.
    #[error("{path}: {message}")]
    Invalid {
        /// Where the problem is.
        path: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A format version this build does not understand.
    #[error("{what} has format {found:?}, this build understands {expected:?}; upgrade the spoke or re-export with a matching hub")]
    UnknownFormat {
        /// Which document.
        what: String,
        /// The format string found.
        found: String,
        /// The format string expected.
        expected: &'static str,
    },
    /// A metadata file carries a signature that does not verify.
    #[error("{role} metadata has a signature by key {keyid} that does not verify: the medium was tampered with or corrupted")]
    BadSignature {
        /// TUF role.
        role: String,
        /// Key id of the bad signature.
        keyid: String,
    },
    /// A metadata file is signed by a key the trusted root does not list for that role.
    #[error("{role} metadata is signed by key {keyid}, which the trusted root does not list for that role")]
    UnknownKey {
        /// TUF role.
        role: String,
        /// The unknown key id.
        keyid: String,
    },
    /// Not enough valid signatures.
    #[error("{role} metadata has {valid} valid signature(s) but needs {threshold}")]
    ThresholdNotMet {
        /// TUF role.
        role: String,
        /// Valid signatures found.
        valid: u64,
        /// Signatures required.
        threshold: u64,
    },
    /// Metadata older than what this spoke already trusts.
    #[error("rollback refused: {role} metadata version {offered} is older than the trusted version {trusted}; use a newer medium")]
    Rollback {
        /// TUF role.
        role: String,
        /// Version already trusted.
        trusted: u64,
        /// Version offered.
        offered: u64,
    },
    /// Metadata files from different repository states were combined.
    #[error("metadata mix-and-match refused: {detail}")]
    MixAndMatch {
        /// What did not match.
        detail: String,
    },
    /// Metadata has expired under the spoke's expiry policy.
    #[error("{role} metadata expired at {expires} (trusted time {now}); publish fresh metadata on the hub and export again")]
    Expired {
        /// TUF role.
        role: String,
        /// Expiry in the metadata.
        expires: String,
        /// The trusted time it was compared with.
        now: String,
    },
    /// Content does not have the digest the signed metadata promised.
    #[error("digest mismatch for {what}: expected {expected}, found {found}")]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// Expected digest.
        expected: String,
        /// Digest found.
        found: String,
    },
    /// Content is shorter than promised, or missing.
    #[error("{what} is truncated or missing ({detail}); copy the medium again")]
    Truncated {
        /// What was read.
        what: String,
        /// Details.
        detail: String,
    },
    /// A file on a medium or in a mirror is a symlink, FIFO, device, socket or
    /// directory where a regular file belongs; it is never opened.
    #[error("{path} is not a regular file ({found}); a medium or mirror holds only regular files: copy it again from the hub")]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What was found instead (`fifo`, `symlink`, `directory`, ...).
        found: &'static str,
    },
    /// Something exceeds its declared or configured maximum size.
    #[error("{what} is {size} bytes, more than the allowed {max}")]
    TooLarge {
        /// What was measured.
        what: String,
        /// Its size (at least).
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A compressed chunk expands past its declared size.
    #[error("chunk {chunk} decompresses past its declared {declared} bytes (decompression bomb)")]
    DecompressionBomb {
        /// Chunk id.
        chunk: String,
        /// Declared plain size.
        declared: u64,
    },
    /// A path tries to leave its directory.
    #[error("path {path:?} escapes its directory ('..' component)")]
    PathTraversal {
        /// The offending path.
        path: String,
    },
    /// An absolute path where a relative one is required.
    #[error("path {path:?} is absolute; only relative paths are allowed")]
    AbsolutePath {
        /// The offending path.
        path: String,
    },
    /// A symlink or hardlink where only regular files are allowed.
    #[error("{path:?} is a symlink or hardlink; only regular files and directories are allowed")]
    Link {
        /// The offending path.
        path: String,
    },
    /// A device node, fifo or socket.
    #[error(
        "{path:?} is a device node, fifo or socket; only regular files and directories are allowed"
    )]
    DeviceNode {
        /// The offending path.
        path: String,
    },
    /// The same path appears twice.
    #[error("path {path:?} appears more than once")]
    DuplicatePath {
        /// The offending path.
        path: String,
    },
    /// Key material problems on the hub.
    #[error("keys: {0}")]
    Keys(String),
    /// An encrypted medium that this spoke cannot decrypt.
    #[error("the medium is encrypted, but not to this spoke's age identity: {0}")]
    NotForThisSpoke(String),
    /// Repository metadata could not be loaded for a reason not covered above.
    #[error("repository metadata: {0}")]
    Metadata(String),
    /// A requested item does not exist.
    #[error("{0}")]
    NotFound(String),
}

impl Error {
    /// A stable machine-readable name for this error, used by `--json` output and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::Invalid { .. } => "invalid",
            Error::UnknownFormat { .. } => "unknown_format",
            Error::BadSignature { .. } => "bad_signature",
            Error::UnknownKey { .. } => "unknown_key",
            Error::ThresholdNotMet { .. } => "threshold_not_met",
            Error::Rollback { .. } => "rollback",
            Error::MixAndMatch { .. } => "mix_and_match",
            Error::Expired { .. } => "expired",
            Error::DigestMismatch { .. } => "digest_mismatch",
            Error::Truncated { .. } => "truncated",
            Error::TooLarge { .. } => "too_large",
            Error::NotRegular { .. } => "not_regular",
            Error::DecompressionBomb { .. } => "decompression_bomb",
            Error::PathTraversal { .. } => "path_traversal",
            Error::AbsolutePath { .. } => "absolute_path",
            Error::Link { .. } => "link",
            Error::DeviceNode { .. } => "device_node",
            Error::DuplicatePath { .. } => "duplicate_path",
            Error::Keys(_) => "keys",
            Error::NotForThisSpoke(_) => "not_for_this_spoke",
            Error::Metadata(_) => "metadata",
            Error::NotFound(_) => "not_found",
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }

    pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}
