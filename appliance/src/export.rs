//! Export of everything the customer owns in open formats (seed 000 §12,
//! export window): an SQL dump and one CSV file per table, every document
//! under its original name, Compliance Locks with their traces as JSON, and
//! the audit log as JSON lines. All of it is read inside one read
//! transaction, so the files describe one point in time. The caller signs
//! the list of files this returns (the export receipt). Files are readable
//! by their owner only (0600 in 0700 directories), and the credential
//! columns (password and token hashes) are exported empty unless asked for.

use crate::{Appliance, Error};
use rusqlite::types::ValueRef;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One file written by [`Appliance::export_to`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportedFile {
    /// Path relative to the export directory (`/`-separated).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 (hex) of the content.
    pub sha256: String,
}

/// Columns holding credentials (`table`, `column`): exported empty unless
/// [`Appliance::export_to`] is asked to keep them.
const CREDENTIALS: [(&str, &str); 2] = [("users", "password_hash"), ("tokens", "secret_hash")];

/// Writes files below one directory (owner-only) and remembers their digests.
struct Writer {
    root: PathBuf,
    files: Vec<ExportedFile>,
}

impl Writer {
    fn write(&mut self, rel: &str, bytes: &[u8]) -> Result<(), Error> {
        let path = self.root.join(rel);
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        self.files.push(ExportedFile {
            path: rel.to_string(),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
        });
        Ok(())
    }
}

/// A file name safe on any filesystem: the original name with path
/// separators, control characters and leading dots replaced.
fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c == ':' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned.trim_start_matches('.');
    if trimmed.is_empty() {
        "document".to_string()
    } else {
        trimmed.to_string()
    }
}

fn csv_field(out: &mut String, v: ValueRef<'_>) {
    let text = match v {
        ValueRef::Null => return,
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Blob(b) => hex::encode(b),
    };
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&text);
    }
}

fn sql_literal(out: &mut String, v: ValueRef<'_>) {
    match v {
        ValueRef::Null => out.push_str("NULL"),
        ValueRef::Integer(i) => out.push_str(&i.to_string()),
        ValueRef::Real(f) => out.push_str(&format!("{f:?}")),
        ValueRef::Text(t) => {
            out.push('\'');
            out.push_str(&String::from_utf8_lossy(t).replace('\'', "''"));
            out.push('\'');
        }
        ValueRef::Blob(b) => {
            out.push_str("X'");
            out.push_str(&hex::encode(b));
            out.push('\'');
        }
    }
}

impl Appliance {
    /// Writes the open-format export into `dir` (which must be empty or
    /// absent; the caller stages it) and returns every file with its digest,
    /// sorted by path.
    pub fn export_to(
        &self,
        dir: &Path,
        with_credentials: bool,
    ) -> Result<Vec<ExportedFile>, Error> {
        let conn = self.store.conn();
        let db = self.store.db();
        // One read transaction: every file below describes the same moment.
        let tx = conn.unchecked_transaction().map_err(&db)?;
        let mut w = Writer {
            root: dir.to_owned(),
            files: Vec::new(),
        };

        // Schema and tables, in creation order.
        let objects: Vec<(String, String, Option<String>)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT type, name, sql FROM sqlite_master
                     WHERE name NOT LIKE 'sqlite_%' ORDER BY rowid",
                )
                .map_err(&db)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(&db)?;
            rows.collect::<Result<_, _>>().map_err(&db)?
        };
        let mut dump = String::from("PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n");
        let mut later = String::new();
        for (kind, name, sql) in &objects {
            let Some(sql) = sql else { continue };
            if kind != "table" {
                // Indexes and triggers after the data, so the append-only
                // triggers do not refuse the INSERTs.
                later.push_str(sql);
                later.push_str(";\n");
                continue;
            }
            dump.push_str(sql);
            dump.push_str(";\n");
            let mut stmt = tx
                .prepare(&format!("SELECT * FROM \"{}\"", name.replace('"', "\"\"")))
                .map_err(&db)?;
            let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
            let withheld: Vec<bool> = columns
                .iter()
                .map(|c| !with_credentials && CREDENTIALS.contains(&(name.as_str(), c.as_str())))
                .collect();
            let mut csv = columns.join(",");
            csv.push('\n');
            let mut rows = stmt.query([]).map_err(&db)?;
            while let Some(row) = rows.next().map_err(&db)? {
                dump.push_str(&format!(
                    "INSERT INTO \"{}\" VALUES(",
                    name.replace('"', "\"\"")
                ));
                for (i, &withhold) in withheld.iter().enumerate() {
                    let v = if withhold {
                        ValueRef::Text(b"")
                    } else {
                        row.get_ref(i).map_err(&db)?
                    };
                    if i > 0 {
                        dump.push(',');
                        csv.push(',');
                    }
                    sql_literal(&mut dump, v);
                    csv_field(&mut csv, v);
                }
                dump.push_str(");\n");
                csv.push('\n');
            }
            w.write(&format!("tables/{name}.csv"), csv.as_bytes())?;
        }
        dump.push_str(&later);
        dump.push_str("COMMIT;\n");
        w.write("database.sql", dump.as_bytes())?;

        // Documents under their original names, one directory per document.
        for d in self.store.documents(None)? {
            let bytes = self.objects.get(&d.sha256)?;
            w.write(
                &format!("documents/{}/{}", d.id, safe_name(&d.filename)),
                &bytes,
            )?;
        }

        // Compliance Locks with their results and traces.
        let lock_ids: Vec<String> = {
            let mut stmt = tx
                .prepare("SELECT id FROM locks ORDER BY id")
                .map_err(&db)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(&db)?;
            rows.collect::<Result<_, _>>().map_err(&db)?
        };
        for id in lock_ids {
            let lock = self.store.lock(&id)?;
            let bytes = serde_json::to_vec_pretty(&lock)
                .map_err(|e| Error::Invalid(format!("lock {id}: {e}")))?;
            w.write(&format!("locks/{}.json", safe_name(&id)), &bytes)?;
        }

        // The audit log, one JSON object per line, oldest first.
        let mut audit = Vec::new();
        for e in self.store.audit_entries()? {
            serde_json::to_writer(&mut audit, &e)
                .map_err(|e| Error::Invalid(format!("audit entry: {e}")))?;
            audit.push(b'\n');
        }
        w.write("audit.jsonl", &audit)?;
        drop(tx);
        w.files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(w.files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_fields_are_escaped() {
        assert_eq!(safe_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(safe_name("..."), "document");
        assert_eq!(safe_name("Hydra CPSR.pdf"), "Hydra CPSR.pdf");
        let mut s = String::new();
        csv_field(&mut s, ValueRef::Text(b"a,\"b\""));
        assert_eq!(s, "\"a,\"\"b\"\"\"");
        let mut s = String::new();
        sql_literal(&mut s, ValueRef::Text(b"it's"));
        assert_eq!(s, "'it''s'");
    }
}
