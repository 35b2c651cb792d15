//! The audit log: append-only in the database itself (triggers refuse UPDATE
//! and DELETE) and hash-chained, so an edit, deletion or reordering made by
//! writing the SQLite file directly is still found by [`verify`].

use crate::Error;
use rusqlite::{params, Connection, Transaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash that precedes the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Schema of the audit log (a migration).
pub(crate) const MIGRATION: &str = "
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    origin    TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
";

/// What happened, by whom, from where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEntry {
    /// Who did it (user name, token name or `cli`).
    pub actor: String,
    /// What was done, e.g. `bundle.install`.
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// Where it came from (`cli`, an IP address).
    pub origin: String,
    /// Details as JSON text.
    pub detail: String,
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When (RFC 3339).
    pub at: String,
    /// The entry's content.
    #[serde(flatten)]
    pub entry: NewEntry,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// Hash of this entry.
    pub hash: String,
}

fn chain_hash(prev: &str, seq: i64, at: &str, e: &NewEntry) -> String {
    let mut h = Sha256::new();
    for part in [
        prev,
        &seq.to_string(),
        at,
        &e.actor,
        &e.action,
        &e.target,
        &e.origin,
        &e.detail,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Appends entries inside the caller's transaction, so they commit with the change they record.
pub(crate) fn append(tx: &Transaction<'_>, at: &str, entries: &[NewEntry]) -> rusqlite::Result<()> {
    for e in entries {
        let (last_seq, prev): (i64, String) = tx
            .query_row(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .or_else(|err| match err {
                rusqlite::Error::QueryReturnedNoRows => Ok((0, GENESIS.to_string())),
                other => Err(other),
            })?;
        let seq = last_seq + 1;
        let hash = chain_hash(&prev, seq, at, e);
        tx.execute(
            "INSERT INTO audit_log (seq, at, actor, action, target, origin, detail, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![seq, at, e.actor, e.action, e.target, e.origin, e.detail, prev, hash],
        )?;
    }
    Ok(())
}

/// Entries after sequence number `after`, in order, at most `limit` (-1: all).
pub(crate) fn entries(conn: &Connection, after: i64, limit: i64) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, actor, action, target, origin, detail, prev_hash, hash FROM audit_log
         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, limit], |r| {
        Ok(Entry {
            seq: r.get(0)?,
            at: r.get(1)?,
            entry: NewEntry {
                actor: r.get(2)?,
                action: r.get(3)?,
                target: r.get(4)?,
                origin: r.get(5)?,
                detail: r.get(6)?,
            },
            prev_hash: r.get(7)?,
            hash: r.get(8)?,
        })
    })?;
    rows.collect()
}

/// Result of a successful chain check.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// Number of entries checked.
    pub entries: usize,
    /// Hash of the newest entry (the head an operator can write down).
    pub head: String,
}

/// Recomputes the chain: every hash, every link, no gaps, and the highest
/// sequence number SQLite ever issued is present (a removed tail shows).
pub(crate) fn verify(conn: &Connection, path: &std::path::Path) -> Result<Verified, Error> {
    let db = |source| Error::Db {
        path: path.to_owned(),
        source,
    };
    let all = entries(conn, 0, -1).map_err(db)?;
    let broken = |seq: i64, why: &str| Error::AuditBroken {
        seq,
        reason: why.to_string(),
    };
    let mut prev = GENESIS.to_string();
    for (i, e) in all.iter().enumerate() {
        let expected_seq = i as i64 + 1;
        if e.seq != expected_seq {
            return Err(broken(expected_seq, "entry missing (sequence gap)"));
        }
        if e.prev_hash != prev {
            return Err(broken(
                e.seq,
                "link to the previous entry does not match (reordered or removed)",
            ));
        }
        if chain_hash(&prev, e.seq, &e.at, &e.entry) != e.hash {
            return Err(broken(e.seq, "content does not match its hash (edited)"));
        }
        prev = e.hash.clone();
    }
    let issued: i64 = conn
        .query_row(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'), 0)",
            [],
            |r| r.get(0),
        )
        .map_err(db)?;
    if issued != all.len() as i64 {
        return Err(broken(issued, "newest entries missing (log truncated)"));
    }
    // The lifecycle state is what the last `lifecycle.set` entry says
    // (ACTIVE before any): an edit of the settings row shows.
    let audited = all
        .iter()
        .rev()
        .find(|e| e.entry.action == "lifecycle.set")
        .map_or("ACTIVE", |e| e.entry.target.as_str());
    let stored: String = conn
        .query_row(
            "SELECT value FROM settings WHERE key = 'lifecycle'",
            [],
            |r| r.get(0),
        )
        .map_err(db)?;
    if stored != audited {
        return Err(broken(
            all.len() as i64,
            &format!(
                "the lifecycle state is {stored} but the audited transitions leave it {audited} (the settings were edited)"
            ),
        ));
    }
    Ok(Verified {
        entries: all.len(),
        head: prev,
    })
}

/// Checks the chain against a checkpoint signed earlier (`seq`, `head`):
/// the chain verifies and its entry `seq` still has hash `head`, so nothing
/// up to the checkpoint was rewritten, even with the chain recomputed.
pub(crate) fn verify_against(
    conn: &Connection,
    path: &std::path::Path,
    seq: i64,
    head: &str,
) -> Result<Verified, Error> {
    let v = verify(conn, path)?;
    if seq < 1 {
        return Ok(v);
    }
    let at = entries(conn, seq - 1, 1).map_err(|source| Error::Db {
        path: path.to_owned(),
        source,
    })?;
    match at.first() {
        None => Err(Error::AuditBroken {
            seq,
            reason: format!(
                "the checkpoint covers {seq} entries, the log has {}: entries were removed (or this is an older copy)",
                v.entries
            ),
        }),
        Some(e) if e.hash != head => Err(Error::AuditBroken {
            seq,
            reason: "the log up to this entry differs from the signed checkpoint: it was rewritten and its chain recomputed".into(),
        }),
        Some(_) => Ok(v),
    }
}
