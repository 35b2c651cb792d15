//! The spoke's stores: the data directory layout, its SQLite database and
//! the hash-chained, append-only audit log.
//!
//! Everything the spoke keeps lives under one data directory; [`DataDir`]
//! names every path in it and [`Store`] owns the database (WAL, foreign keys,
//! versioned migrations applied at open). This crate knows nothing of how
//! bundles arrive: the agent hands it records through the spoke binary.
#![deny(missing_docs)]

pub mod audit;
mod store;

pub use store::{InstalledBundle, Store};

use std::path::{Path, PathBuf};

/// The appliance's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed.
    #[error("database {path}: {source}")]
    Db {
        /// Database file.
        path: PathBuf,
        /// Underlying error.
        source: rusqlite::Error,
    },
    /// Applying migrations failed.
    #[error("database {path}: migrating the schema failed: {message}")]
    Migration {
        /// Database file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The audit chain does not verify.
    #[error("audit log broken at entry {seq}: {reason}; the database was altered outside the spoke — restore it from a backup and investigate")]
    AuditBroken {
        /// First entry that fails.
        seq: i64,
        /// What is wrong.
        reason: String,
    },
    /// A data directory problem the operator must fix.
    #[error("{0}")]
    DataDir(String),
}

/// Paths inside a spoke's data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }
    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Marker and format file written by `spoke init`.
    pub fn marker(&self) -> PathBuf {
        self.root.join("spoke.json")
    }
    /// The trust state (TUF root and last accepted metadata).
    pub fn trust(&self) -> PathBuf {
        self.root.join("trust/state.json")
    }
    /// Secret identity files (0700 directory).
    pub fn identity_dir(&self) -> PathBuf {
        self.root.join("identity")
    }
    /// The SQLite database.
    pub fn database(&self) -> PathBuf {
        self.root.join("db/spoke.sqlite")
    }
    /// Installed chunks.
    pub fn chunks(&self) -> PathBuf {
        self.root.join("store/chunks")
    }
    /// Installed bundle indexes.
    pub fn indexes(&self) -> PathBuf {
        self.root.join("store/indexes")
    }
    /// Assembled bundle payloads, one directory per CID.
    pub fn payloads(&self) -> PathBuf {
        self.root.join("bundles")
    }
    /// Scratch space for imports in progress.
    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }
    /// Checks that `spoke init` ran here.
    pub fn check_initialised(&self) -> Result<(), Error> {
        if self.marker().is_file() {
            Ok(())
        } else {
            Err(Error::DataDir(format!(
                "{} is not a spoke data directory; run `spoke init --data {} --trust ROOT.json` first",
                self.root.display(),
                self.root.display()
            )))
        }
    }
}
