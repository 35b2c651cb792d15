//! The spoke's stores and compliance core: the data directory, its SQLite
//! database (entities, documents, relationships, reference data, evaluations,
//! Compliance Locks, users, the hash-chained audit log), the content-addressed
//! object store, the search index kept in step with the database, and
//! evaluation through the compliance kernel.
//!
//! Everything the spoke keeps lives under one data directory; [`DataDir`]
//! names every path in it and [`Store`] owns the database (WAL, foreign keys,
//! versioned migrations applied at open). [`Appliance`] is the one entry point
//! the API and the command line share: every mutation goes through it, checks
//! the lifecycle state, and is audit-logged in the same transaction. This
//! crate knows nothing of how bundles arrive (the agent hands it records
//! through the spoke binary) nor of HTTP.
#![deny(missing_docs)]

pub mod ai;
pub mod audit;
pub mod auth;
pub mod changes;
pub mod compliance;
pub mod decommission;
pub mod documents;
pub mod entities;
pub mod export;
pub mod licence;
mod objects;
mod payloads;
pub mod pdftext;
mod records;
mod service;
mod store;
pub mod throttle;

pub use auth::{Actor, Permission, Role};
pub use payloads::Depth;
pub use service::{
    Appliance, Health, LifecycleChange, LifecycleView, ReleaseRequest, DEFAULT_COOLING_OFF_DAYS,
    RELEASE_REQUEST_HOURS,
};
pub use store::{InstalledBundle, Lifecycle, Store, SCHEMA_VERSION};

use std::path::{Path, PathBuf};

/// The appliance's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed (a full disk says so and what to do: the
    /// transaction rolled back, so nothing of the change was written).
    #[error("database {path}: {source}{}", disk_full_advice(path, source))]
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
    /// The data directory lost state it had (a missing or empty database,
    /// another spoke's database, a missing or altered pack payload): the
    /// spoke refuses to carry on as if nothing happened.
    #[error("{what}; nothing was changed. This spoke's state is lost or not its own: restore it from a backup (`spoke restore --force --data DIR --identity KEY BACKUP_DIR`), or reinstall a lost pack from its medium (`spoke import`)")]
    StateLost {
        /// What is missing or wrong, and where.
        what: String,
    },
    /// A file in the data directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The request is malformed; the message says which field and why.
    #[error("{0}")]
    Invalid(String),
    /// Something named in the request does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what is stored.
    #[error("{0}")]
    Conflict(String),
    /// The spoke is not ACTIVE, so nothing may change.
    #[error("the spoke is {0}: reads and exports work, but nothing that changes what evaluations use or what is kept can happen (imports, pack changes, model switches, data edits), and access can be given only read-only (viewer or auditor users and tokens; no support grants). An administrator must set it ACTIVE first: `spoke lifecycle --data DIR --set ACTIVE --reason WHY` (leaving LEGAL_HOLD needs the legal clearance as the reason, and a second administrator to confirm it)")]
    ReadOnly(Lifecycle),
    /// The caller is authenticated but lacks the permission.
    #[error("{0}")]
    Denied(String),
    /// The caller could not be authenticated.
    #[error("{0}")]
    Unauthenticated(String),
    /// Too many failed sign-ins or unknown tokens for this account or from
    /// this address: the next attempt must wait.
    #[error("too many failed attempts for this account or from this address; try again in {retry_after} s, or ask an administrator to run `spoke users unlock`")]
    Throttled {
        /// Seconds until the next attempt is considered.
        retry_after: u64,
    },
    /// An upload is larger than the configured cap.
    #[error("upload of {size} bytes exceeds the {limit}-byte limit; split or compress the file")]
    TooLarge {
        /// Size received.
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// An upload's content is not a type the spoke accepts.
    #[error("{0}")]
    UnsupportedMedia(String),
    /// An upload of an accepted type could not be read.
    #[error("{0}")]
    Unreadable(String),
    /// The compliance kernel refused the rules or the evaluation.
    #[error("compliance kernel: {0}")]
    Kernel(#[from] kernel::Error),
    /// The plan's AI quota is used up.
    #[error("{0}")]
    Quota(String),
    /// The search index failed.
    #[error("search index: {0}; rebuild it with `spoke reindex`")]
    Search(#[from] search::Error),
}

impl Error {
    /// A stable machine-readable name for this error.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Db { path, source } if is_disk_full(path, source) => "disk_full",
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
                "disk_full"
            }
            Error::Db { .. } | Error::Migration { .. } | Error::Io { .. } => "store",
            Error::AuditBroken { .. } => "audit_broken",
            Error::DataDir(_) => "data_dir",
            Error::StateLost { .. } => "state_lost",
            Error::Invalid(_) => "invalid",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::ReadOnly(_) => "read_only",
            Error::Denied(_) => "forbidden",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::Throttled { .. } => "throttled",
            Error::TooLarge { .. } => "too_large",
            Error::UnsupportedMedia(_) => "unsupported_media",
            Error::Unreadable(_) => "unreadable",
            Error::Kernel(_) => "kernel",
            Error::Quota(_) => "quota",
            Error::Search(_) => "search",
        }
    }
}

/// Whether SQLite gave up because the disk holding `db` is full: it says
/// so (`SQLITE_FULL`), or, in WAL mode, reports a disk I/O error while the
/// filesystem has less than 1 MiB left.
fn is_disk_full(db: &Path, e: &rusqlite::Error) -> bool {
    let rusqlite::Error::SqliteFailure(f, _) = e else {
        return false;
    };
    match f.code {
        rusqlite::ErrorCode::DiskFull => true,
        rusqlite::ErrorCode::SystemIoFailure => {
            let dir = db.parent().unwrap_or(Path::new("."));
            nix::sys::statvfs::statvfs(dir).is_ok_and(|fs| {
                fs.blocks_available().saturating_mul(fs.fragment_size()) < 1024 * 1024
            })
        }
        _ => false,
    }
}

fn disk_full_advice(db: &Path, e: &rusqlite::Error) -> &'static str {
    if is_disk_full(db, e) {
        "; the data disk is full, so nothing of this request was written. Free space on the data \
         partition (remove old backups or exports kept there), then try again"
    } else {
        ""
    }
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
    /// Uploaded files by content digest.
    pub fn objects(&self) -> PathBuf {
        self.root.join("store/objects")
    }
    /// The derived full-text index.
    pub fn search_index(&self) -> PathBuf {
        self.root.join("store/search")
    }
    /// The derived full-text index of document passages, for grounded answers.
    pub fn passage_index(&self) -> PathBuf {
        self.root.join("store/passages")
    }
    /// TLS certificate and key for `spoke serve`.
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }
    /// Scratch space for imports in progress.
    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }
    /// Opens this spoke's database: it must exist, have a schema and belong
    /// to the spoke `spoke.json` names (a database from before spokes
    /// recorded it is adopted on its first open).
    pub fn open_store(&self) -> Result<Store, Error> {
        let did = self.did()?;
        let store = Store::open(&self.database())?;
        match store.spoke()? {
            Some(owner) if owner == did => {}
            Some(owner) => {
                return Err(Error::StateLost {
                    what: format!(
                    "{} belongs to spoke {owner}, not to {did} (this data directory's spoke.json)",
                    self.database().display()
                ),
                })
            }
            None => {
                tracing::info!(
                    "recording that {} belongs to {did}",
                    self.database().display()
                );
                store.adopt(&did)?;
            }
        }
        Ok(store)
    }

    /// The DID `spoke init` recorded in `spoke.json`.
    pub fn did(&self) -> Result<String, Error> {
        self.check_initialised()?;
        let path = self.marker();
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["did"].as_str().map(str::to_string))
            .ok_or_else(|| {
                Error::DataDir(format!(
                    "{} does not name this spoke's DID; restore the data directory from a backup",
                    path.display()
                ))
            })
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
