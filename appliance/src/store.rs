//! The SQLite database: schema migrations and the record of installed bundles.

use crate::audit::{self, NewEntry};
use crate::Error;
use rusqlite::{params, Connection};
use rusqlite_migration::{Migrations, M};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    ])
}

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

/// The spoke's database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::DataDir(format!("create {}: {e}", dir.display())))?;
        }
        let db = |source| Error::Db {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        migrations()
            .to_latest(&mut conn)
            .map_err(|e| Error::Migration {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Store {
            conn,
            path: path.to_owned(),
        })
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        move |source| Error::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// Records bundles and their audit entries in one transaction: all or none.
    pub fn record_bundles(
        &mut self,
        bundles: &[InstalledBundle],
        actor: &str,
        origin: &str,
    ) -> Result<(), Error> {
        let path = self.path.clone();
        let db = |source| Error::Db {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(db)?;
        for b in bundles {
            tx.execute(
                "INSERT INTO bundles (cid, kind, name, version, target, manifest, installed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (cid) DO NOTHING",
                params![
                    b.cid,
                    b.kind,
                    b.name,
                    b.version,
                    b.target,
                    b.manifest.to_string(),
                    b.installed_at
                ],
            )
            .map_err(db)?;
        }
        let audit: Vec<NewEntry> = bundles
            .iter()
            .map(|b| NewEntry {
                actor: actor.to_string(),
                action: "bundle.install".into(),
                target: b.cid.clone(),
                origin: origin.to_string(),
                detail: serde_json::json!({ "kind": b.kind, "name": b.name, "version": b.version })
                    .to_string(),
            })
            .collect();
        let at = bundles
            .first()
            .map(|b| b.installed_at.clone())
            .unwrap_or_default();
        audit::append(&tx, &at, &audit).map_err(db)?;
        tx.commit().map_err(db)
    }

    /// Every audit entry, oldest first.
    pub fn audit_entries(&self) -> Result<Vec<audit::Entry>, Error> {
        audit::entries(&self.conn).map_err(self.db())
    }

    /// Checks the audit chain end to end.
    pub fn audit_verify(&self) -> Result<audit::Verified, Error> {
        audit::verify(&self.conn, &self.path)
    }

    /// Whether a bundle with this CID is installed.
    pub fn has_bundle(&self, cid: &str) -> Result<bool, Error> {
        self.conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM bundles WHERE cid = ?1)",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
    }

    #[test]
    fn record_is_all_or_nothing_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("db.sqlite")).unwrap();
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
        assert!(s.record_bundles(&[b.clone(), bad], "t", "test").is_err());
        assert!(
            s.bundles(None).unwrap().is_empty(),
            "a failed batch must leave nothing"
        );
        s.record_bundles(std::slice::from_ref(&b), "t", "test")
            .unwrap();
        s.record_bundles(std::slice::from_ref(&b), "t", "test")
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
        let mut s = Store::open(&dir.path().join("db.sqlite")).unwrap();
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
            s.record_bundles(&[b], "alice", "cli").unwrap();
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
