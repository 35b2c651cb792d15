//! The SQLite database: schema migrations and the record of installed bundles.

use crate::audit::{self, NewEntry};

use crate::auth::Actor;
use crate::Error;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};
use rusqlite_migration::{Migrations, M};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The schema version this build creates and opens (the number of
/// migrations); an OS update's pre-flight compares it with the data
/// partition's. A database one version ahead (written by the next OS before
/// a fallback) is opened without migrating: every migration must leave the
/// previous build able to read and write the database.
pub const SCHEMA_VERSION: usize = 8;

/// Schema history; append only, never edit a released migration.
fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(
            "CREATE TABLE bundles (
            cid          TEXT PRIMARY KEY,
            kind         TEXT NOT NULL CHECK (kind IN ('pack','product','model','os')),
            name         TEXT NOT NULL,
            version      TEXT NOT NULL,
            target       TEXT NOT NULL,
            manifest     TEXT NOT NULL,
            installed_at TEXT NOT NULL,
            UNIQUE (kind, name, version)
        );",
        ),
        M::up(crate::audit::MIGRATION),
        M::up(CORE),
        M::up(crate::changes::MIGRATION),
        M::up(
            "CREATE TABLE error_counts (
                day  TEXT NOT NULL,
                code TEXT NOT NULL,
                n    INTEGER NOT NULL,
                PRIMARY KEY (day, code)
            );",
        ),
        M::up(crate::ai::MIGRATION),
        M::up(crate::throttle::MIGRATION),
        M::up(crate::licence::MIGRATION),
    ])
}

/// The compliance core: entities, documents, relationships, reference data,
/// evaluations, Compliance Locks, users and tokens, settings.
const CORE: &str = "
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO settings (key, value) VALUES ('lifecycle', 'ACTIVE'), ('generation', '0');

CREATE TABLE entities (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('product','substance','supplier')),
    name       TEXT NOT NULL,
    category   TEXT,
    cas        TEXT,
    markets    TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE components (
    product_id    TEXT NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    substance     TEXT NOT NULL,
    cas           TEXT,
    ec            TEXT,
    concentration REAL,
    unit          TEXT,
    PRIMARY KEY (product_id, position)
);
CREATE INDEX components_cas ON components(cas);
CREATE TABLE edges (
    src TEXT NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    rel TEXT NOT NULL CHECK (rel IN ('contains','supplies')),
    dst TEXT NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    PRIMARY KEY (src, rel, dst)
);
CREATE INDEX edges_dst ON edges(dst, rel);
CREATE TABLE documents (
    id         TEXT PRIMARY KEY,
    entity_id  TEXT REFERENCES entities(id) ON DELETE SET NULL,
    kind       TEXT NOT NULL,
    filename   TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size       INTEGER NOT NULL,
    object     TEXT NOT NULL,
    text       TEXT NOT NULL,
    expires    TEXT,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE INDEX documents_entity ON documents(entity_id);
CREATE TABLE reference_tables (
    pack_cid   TEXT NOT NULL REFERENCES bundles(cid),
    pack_name  TEXT NOT NULL,
    table_name TEXT NOT NULL,
    rows       TEXT NOT NULL,
    PRIMARY KEY (pack_cid, table_name)
);
CREATE TABLE locks (
    id           TEXT PRIMARY KEY,
    product_id   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    kernel_build TEXT NOT NULL,
    verdict      TEXT NOT NULL,
    content      TEXT NOT NULL,
    result       TEXT NOT NULL
);
CREATE TABLE evaluations (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id TEXT NOT NULL,
    lock_id    TEXT NOT NULL REFERENCES locks(id),
    verdict    TEXT NOT NULL,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL
);
CREATE INDEX evaluations_product ON evaluations(product_id, seq);
CREATE TRIGGER locks_no_update BEFORE UPDATE ON locks
BEGIN SELECT RAISE(ABORT, 'locks are append-only'); END;
CREATE TRIGGER locks_no_delete BEFORE DELETE ON locks
BEGIN SELECT RAISE(ABORT, 'locks are append-only'); END;
CREATE TRIGGER evaluations_no_update BEFORE UPDATE ON evaluations
BEGIN SELECT RAISE(ABORT, 'evaluations are append-only'); END;
CREATE TRIGGER evaluations_no_delete BEFORE DELETE ON evaluations
BEGIN SELECT RAISE(ABORT, 'evaluations are append-only'); END;

CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('api','session','support')),
    label       TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    role        TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT,
    revoked_at  TEXT
);
";

/// A bundle the spoke verified and installed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstalledBundle {
    /// CID of its index.
    pub cid: String,
    /// pack, product, model or os.
    pub kind: String,
    /// Bundle name.
    pub name: String,
    /// Version.
    pub version: String,
    /// TUF target name.
    pub target: String,
    /// The kind-specific manifest (JSON).
    pub manifest: serde_json::Value,
    /// When it was installed (RFC 3339).
    pub installed_at: String,
}

/// The spoke's lifecycle state (seed 000 §12). Only ACTIVE accepts changes;
/// SUSPENDED and LEGAL_HOLD keep every read working and destroy nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Lifecycle {
    /// Normal operation.
    Active,
    /// Reads only (for example an unpaid licence); nothing is lost.
    Suspended,
    /// Reads only and nothing may be destroyed, until legal clearance.
    LegalHold,
}

impl Lifecycle {
    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Active => "ACTIVE",
            Lifecycle::Suspended => "SUSPENDED",
            Lifecycle::LegalHold => "LEGAL_HOLD",
        }
    }
}

impl std::fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Lifecycle {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "ACTIVE" => Ok(Lifecycle::Active),
            "SUSPENDED" => Ok(Lifecycle::Suspended),
            "LEGAL_HOLD" => Ok(Lifecycle::LegalHold),
            other => Err(Error::Invalid(format!(
                "unknown lifecycle state {other:?}; use ACTIVE, SUSPENDED or LEGAL_HOLD"
            ))),
        }
    }
}

/// One audit record a mutation produces; written in the mutation's transaction.
#[derive(Debug, Clone)]
pub(crate) struct Audit {
    pub action: &'static str,
    pub target: String,
    pub detail: serde_json::Value,
}

/// Whether a mutation is gated by the lifecycle ([`Class::gate`], the one
/// gate every write passes inside its transaction) or administration that
/// must work in every state (lifecycle, sign-in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Everything that changes what evaluations use or what is kept:
    /// entities, documents, evaluations, installed bundles, pack changes
    /// (propose, apply, reject) and model activation. Refused unless ACTIVE
    /// with a current licence.
    Data,
    /// Administration that works in every state: the lifecycle itself,
    /// sign-in, licences, decommissioning, revoking access.
    Admin,
    /// Giving access (users, API tokens, support grants). Under LEGAL_HOLD
    /// or SUSPENDED only read-only access may be given (an auditor or viewer
    /// for the investigation); write access and vendor support wait for
    /// ACTIVE.
    Access {
        /// Whether this grant may happen while the spoke is not ACTIVE.
        allowed_when_held: bool,
    },
}

impl Class {
    /// The lifecycle gate: whether a write of this class may happen in `state`.
    fn gate(self, state: Lifecycle) -> Result<(), Error> {
        match (self, state) {
            (Class::Admin, _)
            | (_, Lifecycle::Active)
            | (
                Class::Access {
                    allowed_when_held: true,
                },
                _,
            ) => Ok(()),
            (_, other) => Err(Error::ReadOnly(other)),
        }
    }
}

/// What a committed mutation changed, for keeping derived state in step.
#[derive(Debug)]
pub(crate) struct Written<T> {
    pub value: T,
    /// Search index entries touched (`kind`, `id`).
    pub touched: Vec<(String, String)>,
    /// The database generation after the commit.
    pub generation: u64,
}

/// Maps a database error inside a write closure (the store's own path is
/// named by the caller's context; the statement is in the message).
pub(crate) fn tx_db(source: rusqlite::Error) -> Error {
    Error::Db {
        path: PathBuf::from("db/spoke.sqlite"),
        source,
    }
}

/// The current time as stored (RFC 3339, whole seconds, UTC).
pub(crate) fn now() -> String {
    let t = jiff::Timestamp::now();
    jiff::Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

/// The spoke's database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// How failed sign-ins and unknown tokens are throttled.
    pub(crate) sign_in: crate::throttle::Policy,
}

impl Store {
    /// Creates the database of a new spoke (`spoke init`, restores and
    /// tests only) and records which spoke it belongs to. An existing
    /// database is refused.
    pub fn create(path: &Path, spoke: &str) -> Result<Self, Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::DataDir(format!("create {}: {e}", dir.display())))?;
        }
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.len() > 0) {
            return Err(Error::DataDir(format!(
                "{} already exists; a database is created only once, by `spoke init`",
                path.display()
            )));
        }
        let db = |source| Error::Db {
            path: path.to_owned(),
            source,
        };
        let store = Self::migrate(path, Connection::open(path).map_err(db)?)?;
        store
            .conn
            .execute(
                "INSERT INTO settings (key, value) VALUES ('spoke', ?1)",
                [spoke],
            )
            .map_err(db)?;
        Ok(store)
    }

    /// Opens an existing database and applies pending migrations. A missing
    /// or empty database (no schema) is refused as [`Error::StateLost`]:
    /// only [`Store::create`] makes an empty store, so a spoke that lost its
    /// database never silently starts afresh.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let lost = |what: String| Error::StateLost {
            what: format!("{}: {what}", path.display()),
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(lost("not a regular file".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(lost("the database is missing".into()))
            }
            Err(e) => return Err(lost(format!("cannot be read ({e})"))),
        }
        let db = |source| Error::Db {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db)?;
        // Read before any pragma writes: a zero-length file reads as
        // schema 0, and must stay as it was found.
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db)?;
        if found == 0 {
            return Err(lost(
                "the database is empty (no schema): its contents were lost".into(),
            ));
        }
        Self::migrate(path, conn)
    }

    /// Sets the connection's pragmas and brings the schema to this build's.
    fn migrate(path: &Path, mut conn: Connection) -> Result<Self, Error> {
        let db = |source| Error::Db {
            path: path.to_owned(),
            source,
        };
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db)?;
        let found = usize::try_from(found).unwrap_or(usize::MAX);
        if found == SCHEMA_VERSION + 1 {
            // A fallback after an OS update that migrated this database:
            // migrations are additive for one version, so this build reads it as is.
            tracing::warn!(
                "{} has schema {found}, one ahead of this build's {SCHEMA_VERSION} (an OS fallback); opened without migrating",
                path.display()
            );
        } else if found > SCHEMA_VERSION {
            return Err(Error::Migration {
                path: path.to_owned(),
                message: format!(
                    "the database has schema {found}, this build reads up to {}; run the OS that wrote it (or a newer one)",
                    SCHEMA_VERSION + 1
                ),
            });
        } else {
            migrations()
                .to_latest(&mut conn)
                .map_err(|e| Error::Migration {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
        }
        Ok(Store {
            conn,
            path: path.to_owned(),
            sign_in: crate::throttle::Policy::default(),
        })
    }

    /// Every problem SQLite's full `integrity_check` finds (tables,
    /// indexes, constraints; up to 100), empty when the database is sound.
    pub fn integrity_check(&self) -> Result<Vec<String>, Error> {
        let mut stmt = self
            .conn
            .prepare("PRAGMA integrity_check(100)")
            .map_err(self.db())?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.db())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.db())?;
        Ok(rows.into_iter().filter(|r| r != "ok").collect())
    }

    /// The DID of the spoke this database belongs to (None for a database
    /// created before spokes recorded it).
    pub fn spoke(&self) -> Result<Option<String>, Error> {
        self.conn
            .query_row("SELECT value FROM settings WHERE key = 'spoke'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.db())
    }

    /// Records the spoke a database created before spokes recorded it
    /// belongs to (its first open by this build).
    pub(crate) fn adopt(&self, spoke: &str) -> Result<(), Error> {
        self.conn
            .execute(
                "INSERT INTO settings (key, value) VALUES ('spoke', ?1)",
                [spoke],
            )
            .map(drop)
            .map_err(self.db())
    }

    /// The schema version of the open database (SQLite `user_version`).
    pub fn schema_version(&self) -> Result<usize, Error> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map(|v| v as usize)
            .map_err(|source| Error::Db {
                path: self.path.clone(),
                source,
            })
    }

    /// The connection, for reads.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The connection, for derived data written outside [`Store::write`].
    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Runs `f` in one IMMEDIATE transaction with its audit entries: all or
    /// nothing. `f` returns its value, audit records and the search entries it
    /// touched; touching any bumps the generation the search index follows.
    pub(crate) fn write<T>(
        &mut self,
        actor: &Actor,
        class: Class,
        f: impl FnOnce(&Transaction<'_>) -> Result<(T, Vec<Audit>, Vec<(String, String)>), Error>,
    ) -> Result<Written<T>, Error> {
        if class == Class::Data {
            self.licence_current()?;
        }
        let path = self.path.clone();
        let db = |source| Error::Db {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        class.gate(lifecycle_in(&tx).map_err(db)?)?;
        let (value, audits, touched) = f(&tx)?;
        let entries: Vec<NewEntry> = audits
            .into_iter()
            .map(|a| NewEntry {
                actor: actor.name.clone(),
                action: a.action.to_string(),
                target: a.target,
                origin: actor.origin.clone(),
                detail: a.detail.to_string(),
            })
            .collect();
        audit::append(&tx, &now(), &entries).map_err(db)?;
        if !touched.is_empty() {
            tx.execute(
                "UPDATE settings SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'",
                [],
            )
            .map_err(db)?;
        }
        let generation = generation_in(&tx).map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(Written {
            value,
            touched,
            generation,
        })
    }

    /// Copies a consistent snapshot of the database to `dest` (a new file)
    /// through SQLite's online backup API while other connections keep
    /// reading and writing; the copy is fsynced and uses a rollback journal,
    /// so it is one self-contained file.
    pub fn snapshot_to(&self, dest: &Path) -> Result<(), Error> {
        let dst_err = |source| Error::Db {
            path: dest.to_owned(),
            source,
        };
        let mut dst = Connection::open(dest).map_err(dst_err)?;
        {
            let backup = rusqlite::backup::Backup::new(&self.conn, &mut dst).map_err(dst_err)?;
            // One step of every page: the copy is taken under one read
            // transaction, so it is a single point in time. In WAL mode
            // writers are not blocked; a busy source is retried.
            let mut tries = 0;
            loop {
                match backup.step(-1).map_err(self.db())? {
                    rusqlite::backup::StepResult::Done => break,
                    _ if tries < 100 => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    _ => {
                        return Err(Error::DataDir(format!(
                            "{}: the database stayed locked for 5 s during the snapshot; try again when the spoke is less busy",
                            self.path.display()
                        )))
                    }
                }
            }
        }
        dst.pragma_update(None, "journal_mode", "DELETE")
            .map_err(dst_err)?;
        drop(dst);
        std::fs::File::open(dest)
            .and_then(|f| f.sync_all())
            .map_err(|source| Error::Io {
                path: dest.to_owned(),
                source,
            })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counts one error answered to a client, by code (e.g. `http_403`), per
    /// day: numbers only, for the report to the hub. Not audit-logged.
    pub fn count_error(&self, code: &str) -> Result<(), Error> {
        self.conn
            .execute(
                "INSERT INTO error_counts (day, code, n) VALUES (?1, ?2, 1)
                 ON CONFLICT (day, code) DO UPDATE SET n = n + 1",
                rusqlite::params![crate::compliance::today(), code],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// Errors by code since `day` (YYYY-MM-DD).
    pub fn error_counts(
        &self,
        day: &str,
    ) -> Result<std::collections::BTreeMap<String, i64>, Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT code, sum(n) FROM error_counts WHERE day >= ?1 GROUP BY code")
            .map_err(self.db())?;
        let rows = stmt
            .query_map([day], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    /// Refuses data changes while the licence has lapsed.
    fn licence_current(&self) -> Result<(), Error> {
        match self.licence()? {
            Some(terms) if terms.expired(&crate::compliance::today()) => {
                Err(Error::ReadOnly(Lifecycle::Suspended))
            }
            _ => Ok(()),
        }
    }

    /// Refuses data changes unless the spoke is ACTIVE with a current
    /// licence. For work done before the write's transaction (storing an
    /// upload, simulating); `write` checks the state again inside it.
    pub(crate) fn check_writable(&self) -> Result<(), Error> {
        self.licence_current()?;
        Class::Data.gate(self.lifecycle()?)
    }

    /// The gate of [`Store::check_writable`] for an importer to ask before it
    /// fetches, unpacks, stages or writes anything, with one exception, the
    /// way out of a lapsed licence: a medium that `renews` it (carries a
    /// current licence for this spoke, which the importer installs first)
    /// is taken while ACTIVE or while SUSPENDED by the licence. An importer
    /// that cannot tell yet passes true and asks again before recording.
    pub fn check_installable(&self, renews: bool) -> Result<(), Error> {
        if renews {
            match self.lifecycle()? {
                Lifecycle::Active => return Ok(()),
                Lifecycle::Suspended
                    if crate::licence::setting(&self.conn, "suspended_by")
                        .map_err(self.db())?
                        .as_deref()
                        == Some("licence") =>
                {
                    return Ok(())
                }
                _ => {}
            }
        }
        self.check_writable()
    }

    /// The current lifecycle state.
    pub fn lifecycle(&self) -> Result<Lifecycle, Error> {
        lifecycle_in(&self.conn).map_err(self.db())
    }

    /// The database generation: bumped by every change the search index follows.
    pub(crate) fn generation(&self) -> Result<u64, Error> {
        generation_in(&self.conn).map_err(self.db())
    }

    pub(crate) fn db(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        move |source| Error::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// Every audit entry, oldest first.
    pub fn audit_entries(&self) -> Result<Vec<audit::Entry>, Error> {
        self.audit_page(0, usize::MAX)
    }

    /// At most `limit` audit entries after sequence number `after`, oldest first.
    pub fn audit_page(&self, after: i64, limit: usize) -> Result<Vec<audit::Entry>, Error> {
        let limit = i64::try_from(limit).unwrap_or(-1);
        audit::entries(&self.conn, after, limit).map_err(self.db())
    }

    /// Checks the audit chain end to end.
    pub fn audit_verify(&self) -> Result<audit::Verified, Error> {
        audit::verify(&self.conn, &self.path)
    }

    /// [`Store::audit_verify`], and entry `seq` still has the hash `head`
    /// a signed checkpoint recorded.
    pub fn audit_verify_against(&self, seq: i64, head: &str) -> Result<audit::Verified, Error> {
        audit::verify_against(&self.conn, &self.path, seq, head)
    }

    /// Whether a bundle with this CID is installed.
    pub fn has_bundle(&self, cid: &str) -> Result<bool, Error> {
        self.conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM bundles WHERE cid = ?1)
                     OR EXISTS(SELECT 1 FROM licence_bundles WHERE cid = ?1)",
                [cid],
                |r| r.get(0),
            )
            .map_err(self.db())
    }

    /// Installed bundles of `kind` (all kinds when `None`), by name then version.
    pub fn bundles(&self, kind: Option<&str>) -> Result<Vec<InstalledBundle>, Error> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT cid, kind, name, version, target, manifest, installed_at FROM bundles
                 WHERE ?1 IS NULL OR kind = ?1 ORDER BY kind, name, version",
            )
            .map_err(self.db())?;
        let rows = stmt
            .query_map([kind], |r| {
                let manifest: String = r.get(5)?;
                Ok(InstalledBundle {
                    cid: r.get(0)?,
                    kind: r.get(1)?,
                    name: r.get(2)?,
                    version: r.get(3)?,
                    target: r.get(4)?,
                    manifest: serde_json::from_str(&manifest).unwrap_or(serde_json::Value::Null),
                    installed_at: r.get(6)?,
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.db())
    }
}

fn lifecycle_in(conn: &Connection) -> rusqlite::Result<Lifecycle> {
    let v: Option<String> = conn
        .query_row(
            "SELECT value FROM settings WHERE key = 'lifecycle'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    // An unknown value is treated as the most restrictive state.
    Ok(v.and_then(|v| v.parse().ok())
        .unwrap_or(Lifecycle::LegalHold))
}

fn generation_in(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT CAST(value AS INTEGER) FROM settings WHERE key = 'generation'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|g| g as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrity_check_finds_what_quick_check_misses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let s = Store::create(&path, "did:key:test").unwrap();
        assert_eq!(s.integrity_check().unwrap(), Vec::<String>::new());
        s.conn
            .execute_batch(
                "CREATE TABLE probe (x TEXT, y TEXT);
                 CREATE INDEX probe_x ON probe (x);
                 INSERT INTO probe VALUES ('a', 'b'), ('c', 'd');
                 PRAGMA writable_schema = ON;
                 UPDATE sqlite_master SET sql = 'CREATE INDEX probe_x ON probe (y)' WHERE name = 'probe_x';
                 PRAGMA writable_schema = OFF;",
            )
            .unwrap();
        drop(s);
        // The index now disagrees with its table: rows are missing from it.
        let s = Store::open(&path).unwrap();
        let quick: String = s
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(quick, "ok", "quick_check does not compare index contents");
        let found = s.integrity_check().unwrap();
        assert!(found.iter().any(|f| f.contains("probe_x")), "{found:?}");
    }

    #[test]
    fn a_missing_or_empty_database_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let e = Store::open(&path).err().unwrap();
        assert_eq!(e.kind(), "state_lost", "{e}");
        assert!(!path.exists(), "opening must not create the database");
        std::fs::write(&path, b"").unwrap();
        let e = Store::open(&path).err().unwrap();
        assert!(e.to_string().contains("is empty"), "{e}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        // Only create makes one, and never over an existing database.
        drop(Store::create(&path, "did:key:test").unwrap());
        assert_eq!(
            Store::open(&path).unwrap().spoke().unwrap().as_deref(),
            Some("did:key:test")
        );
        assert!(Store::create(&path, "did:key:other").is_err());
    }

    #[test]
    fn schema_version_counts_the_migrations() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(&dir.path().join("db.sqlite"), "did:key:test").unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn a_database_one_schema_ahead_opens_and_two_ahead_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        drop(Store::create(&path, "did:key:test").unwrap());
        let bump = |v: usize| {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", v as i64).unwrap();
        };
        bump(SCHEMA_VERSION + 1);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION + 1);
        drop(s);
        bump(SCHEMA_VERSION + 2);
        let e = Store::open(&path).err().unwrap().to_string();
        assert!(
            e.contains(&format!("reads up to {}", SCHEMA_VERSION + 1)),
            "{e}"
        );
    }

    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
    }

    #[test]
    fn record_is_all_or_nothing_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(&dir.path().join("db.sqlite"), "did:key:test").unwrap();
        let b = InstalledBundle {
            cid: "sha256:aa".into(),
            kind: "pack".into(),
            name: "@eu/x".into(),
            version: "1.0.0".into(),
            target: "pack/eu/x/1.0.0.json".into(),
            manifest: serde_json::json!({"a": 1}),
            installed_at: "2026-01-01T00:00:00Z".into(),
        };
        let mut bad = b.clone();
        bad.cid = "sha256:bb".into();
        bad.kind = "nonsense".into();
        assert!(s
            .record_bundles(&[b.clone(), bad], &[], &Actor::cli())
            .is_err());
        assert!(
            s.bundles(None).unwrap().is_empty(),
            "a failed batch must leave nothing"
        );
        s.record_bundles(std::slice::from_ref(&b), &[], &Actor::cli())
            .unwrap();
        s.record_bundles(std::slice::from_ref(&b), &[], &Actor::cli())
            .unwrap();
        assert_eq!(s.bundles(Some("pack")).unwrap(), vec![b]);
        assert!(s.has_bundle("sha256:aa").unwrap());
        assert_eq!(
            s.audit_entries().unwrap().len(),
            2,
            "the failed batch left no audit entry"
        );
    }

    fn store_with_entries(n: usize) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(&dir.path().join("db.sqlite"), "did:key:test").unwrap();
        for i in 0..n {
            let b = InstalledBundle {
                cid: format!("sha256:{i:02}"),
                kind: "pack".into(),
                name: format!("@eu/p{i}"),
                version: "1.0.0".into(),
                target: String::new(),
                manifest: serde_json::json!({}),
                installed_at: "2026-01-01T00:00:00Z".into(),
            };
            s.record_bundles(&[b], &[], &Actor::cli()).unwrap();
        }
        (dir, s)
    }

    #[test]
    fn audit_rows_cannot_be_updated_or_deleted_through_sql() {
        let (_dir, s) = store_with_entries(2);
        let upd = s
            .conn
            .execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1", []);
        assert!(upd.unwrap_err().to_string().contains("append-only"));
        let del = s.conn.execute("DELETE FROM audit_log WHERE seq = 2", []);
        assert!(del.unwrap_err().to_string().contains("append-only"));
        assert_eq!(s.audit_verify().unwrap().entries, 2);
    }

    /// Simulates someone editing the database file directly: drop the triggers, tamper.
    fn tamper(s: &Store, sql: &str) {
        s.conn
            .execute_batch(&format!(
                "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; {sql}"
            ))
            .unwrap();
    }

    #[test]
    fn audit_verify_finds_edits_deletions_reordering_and_truncation() {
        let cases = [
            ("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2", "edited"),
            ("DELETE FROM audit_log WHERE seq = 2", "gap"),
            ("DELETE FROM audit_log WHERE seq = 4", "truncated"),
            (
                "UPDATE audit_log SET seq = 100 WHERE seq = 2; UPDATE audit_log SET seq = 2 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = 100",
                "reordered",
            ),
        ];
        for (sql, what) in cases {
            let (_dir, s) = store_with_entries(4);
            s.audit_verify().unwrap();
            tamper(&s, sql);
            let err = s.audit_verify().unwrap_err();
            assert!(matches!(err, Error::AuditBroken { .. }), "{what}: {err}");
        }
    }
}
