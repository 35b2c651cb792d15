//! Decommissioning (seed 000 §12): NOTICE → EXPORT_WINDOW → DESTRUCTION →
//! VERIFICATION. The phase lives in the database with the lifecycle state and
//! every step is audit-logged; the export window makes the spoke read-only
//! (SUSPENDED), destruction is refused under LEGAL_HOLD or before an export
//! receipt was recorded in the window, and [`shred`] overwrites and removes
//! every file of a directory tree without following links out of it.

use crate::auth::{Actor, Permission};
use crate::store::{now, tx_db, Audit, Class};
use crate::{Appliance, Error, Lifecycle};
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// Where a decommissioning stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    /// The customer was told; reactivation is still possible.
    Notice,
    /// Read-only; the customer exports everything and keeps the receipt.
    ExportWindow,
    /// Data is being destroyed.
    Destruction,
}

/// The decommissioning record stored in `settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decommission {
    /// Current phase.
    pub phase: Phase,
    /// When notice was given (RFC 3339).
    pub notice_at: String,
    /// When the export window opened.
    pub export_window_at: Option<String>,
    /// SHA-256 of the signed export receipt recorded in the window.
    pub receipt: Option<String>,
    /// When that receipt was recorded.
    pub receipt_at: Option<String>,
    /// When destruction began.
    pub destruction_at: Option<String>,
}

const KEY: &str = "decommission";

fn refuse_under_hold(state: Lifecycle) -> Result<(), Error> {
    if state == Lifecycle::LegalHold {
        return Err(Error::Conflict(
            "the spoke is under LEGAL_HOLD: nothing may be decommissioned or destroyed until \
             legal clearance, released by two administrators (`spoke lifecycle --set ACTIVE \
             --reason CLEARANCE --as ADMIN`, then the same by another administrator)"
                .into(),
        ));
    }
    Ok(())
}

impl Appliance {
    /// The decommissioning record, if one was started.
    pub fn decommission(&self) -> Result<Option<Decommission>, Error> {
        let text: Option<String> = self
            .store
            .conn()
            .query_row("SELECT value FROM settings WHERE key = ?1", [KEY], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.store.db())?;
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| Error::DataDir(format!("stored decommission record unreadable: {e}")))
        })
        .transpose()
    }

    fn save_decommission(
        &mut self,
        actor: &Actor,
        record: Option<&Decommission>,
        lifecycle: Option<Lifecycle>,
        action: &'static str,
        detail: serde_json::Value,
    ) -> Result<(), Error> {
        let text = record
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        self.store.write(actor, Class::Admin, |tx| {
            match &text {
                Some(t) => tx.execute(
                    "INSERT INTO settings (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = ?2",
                    [KEY, t],
                ),
                None => tx.execute("DELETE FROM settings WHERE key = ?1", [KEY]),
            }
            .map_err(tx_db)?;
            if let Some(to) = lifecycle {
                tx.execute(
                    "UPDATE settings SET value = ?1 WHERE key = 'lifecycle'",
                    [to.as_str()],
                )
                .map_err(tx_db)?;
            }
            let phase = record.map(|r| r.phase);
            let mut audits = vec![Audit {
                action,
                target: "spoke".into(),
                detail: serde_json::json!({ "phase": phase, "detail": detail }),
            }];
            // Every lifecycle change has its own entry: `audit verify`
            // derives the state from them.
            if let Some(to) = lifecycle {
                audits.push(Audit {
                    action: "lifecycle.set",
                    target: to.as_str().into(),
                    detail: serde_json::json!({ "reason": action }),
                });
            }
            Ok(((), audits, vec![]))
        })?;
        Ok(())
    }

    /// Phase 1: gives notice. Refused under LEGAL_HOLD or when already started.
    pub fn decommission_notice(&mut self, actor: &Actor) -> Result<Decommission, Error> {
        actor.require(Permission::Admin)?;
        refuse_under_hold(self.store.lifecycle()?)?;
        if let Some(until) = self.cooling_off_until()? {
            return Err(Error::Conflict(format!(
                "the LEGAL_HOLD was released less than {} days ago: decommissioning cannot start before {until} (the cooling-off period, `spoke lifecycle --cooling-off-days`)",
                self.cooling_off_days()?
            )));
        }
        if let Some(d) = self.decommission()? {
            return Err(Error::Conflict(format!(
                "decommissioning already started (phase {:?} since {}); `spoke decommission cancel` to stop it",
                d.phase, d.notice_at
            )));
        }
        let d = Decommission {
            phase: Phase::Notice,
            notice_at: now(),
            export_window_at: None,
            receipt: None,
            receipt_at: None,
            destruction_at: None,
        };
        self.save_decommission(
            actor,
            Some(&d),
            None,
            "decommission.notice",
            serde_json::json!({}),
        )?;
        Ok(d)
    }

    /// Phase 2: opens the export window; the spoke becomes read-only.
    pub fn decommission_export_window(&mut self, actor: &Actor) -> Result<Decommission, Error> {
        actor.require(Permission::Admin)?;
        let state = self.store.lifecycle()?;
        refuse_under_hold(state)?;
        let mut d = match self.decommission()? {
            Some(d) if d.phase == Phase::Notice => d,
            Some(d) => {
                return Err(Error::Conflict(format!(
                    "the export window opens after NOTICE; decommissioning is in {:?}",
                    d.phase
                )))
            }
            None => {
                return Err(Error::Conflict(
                    "give notice first: `spoke decommission notice`".into(),
                ))
            }
        };
        d.phase = Phase::ExportWindow;
        d.export_window_at = Some(now());
        self.save_decommission(
            actor,
            Some(&d),
            Some(Lifecycle::Suspended),
            "decommission.export_window",
            serde_json::json!({ "lifecycle_from": state.as_str() }),
        )?;
        Ok(d)
    }

    /// Stops a decommissioning before destruction; the spoke becomes ACTIVE
    /// again if the export window had made it read-only.
    pub fn decommission_cancel(&mut self, actor: &Actor, reason: &str) -> Result<(), Error> {
        actor.require(Permission::Admin)?;
        let Some(d) = self.decommission()? else {
            return Err(Error::NotFound("no decommissioning to cancel".into()));
        };
        if d.phase == Phase::Destruction {
            return Err(Error::Conflict(
                "destruction has begun; it cannot be cancelled".into(),
            ));
        }
        let back = (d.phase == Phase::ExportWindow
            && self.store.lifecycle()? == Lifecycle::Suspended)
            .then_some(Lifecycle::Active);
        self.save_decommission(
            actor,
            None,
            back,
            "decommission.cancel",
            serde_json::json!({ "reason": reason }),
        )
    }

    /// Records an export receipt (its SHA-256). Every export is audit-logged;
    /// inside the export window the receipt is what allows destruction.
    pub fn record_export_receipt(
        &mut self,
        actor: &Actor,
        receipt_sha256: &str,
        files: usize,
    ) -> Result<(), Error> {
        actor.require(Permission::Admin)?;
        let mut d = self.decommission()?;
        if let Some(d) = d.as_mut().filter(|d| d.phase == Phase::ExportWindow) {
            d.receipt = Some(receipt_sha256.to_string());
            d.receipt_at = Some(now());
        }
        let keep = d.is_some();
        let detail = serde_json::json!({ "receipt_sha256": receipt_sha256, "files": files });
        if keep {
            self.save_decommission(actor, d.as_ref(), None, "export.receipt", detail)
        } else {
            self.store.write(actor, Class::Admin, |_| {
                Ok((
                    (),
                    vec![Audit {
                        action: "export.receipt",
                        target: "spoke".into(),
                        detail,
                    }],
                    vec![],
                ))
            })?;
            Ok(())
        }
    }

    /// Phase 3 begins: checks destruction is allowed (export window, no
    /// LEGAL_HOLD, a receipt recorded in the window) and records the start.
    pub fn decommission_begin_destruction(&mut self, actor: &Actor) -> Result<Decommission, Error> {
        actor.require(Permission::Admin)?;
        refuse_under_hold(self.store.lifecycle()?)?;
        let mut d = match self.decommission()? {
            Some(d) if matches!(d.phase, Phase::ExportWindow | Phase::Destruction) => d,
            _ => {
                return Err(Error::Conflict(
                    "destruction needs NOTICE, then the EXPORT_WINDOW and an export in it \
                     (`spoke decommission notice`, `spoke decommission export-window`, `spoke export`)"
                        .into(),
                ))
            }
        };
        if d.receipt.is_none() {
            return Err(Error::Conflict(
                "no export receipt was recorded in the export window: run `spoke export --data D --to DIR` \
                 and keep its export-receipt.json before destroying anything"
                    .into(),
            ));
        }
        d.phase = Phase::Destruction;
        d.destruction_at = Some(now());
        self.save_decommission(
            actor,
            Some(&d),
            None,
            "decommission.destruction",
            serde_json::json!({}),
        )?;
        Ok(d)
    }
}

/// What [`shred`] destroyed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Shredded {
    /// Regular files overwritten and removed.
    pub files: u64,
    /// Bytes overwritten.
    pub bytes: u64,
    /// Links and other non-regular entries removed (never followed).
    pub other: u64,
    /// Directories removed.
    pub dirs: u64,
}

/// Overwrites every regular file below `root` with zeros (fsynced), then
/// removes the whole tree. Symbolic links are removed, never followed.
pub fn shred(root: &Path) -> Result<Shredded, Error> {
    let mut out = Shredded::default();
    shred_into(root, &mut out)?;
    Ok(out)
}

fn shred_into(dir: &Path, out: &mut Shredded) -> Result<(), Error> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io {
            path: path.clone(),
            source,
        }
    };
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            shred_into(&path, out)?;
        } else if meta.is_file() {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io(&path))?;
            let zeros = vec![0u8; 1 << 20];
            let mut left = meta.len();
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n]).map_err(io(&path))?;
                left -= n as u64;
            }
            f.sync_all().map_err(io(&path))?;
            drop(f);
            std::fs::remove_file(&path).map_err(io(&path))?;
            out.files += 1;
            out.bytes += meta.len();
        } else {
            std::fs::remove_file(&path).map_err(io(&path))?;
            out.other += 1;
        }
    }
    std::fs::remove_dir(dir).map_err(io(dir))?;
    out.dirs += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shred_removes_everything_and_never_follows_links() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside.txt");
        std::fs::write(&outside, b"keep me").unwrap();
        let root = t.path().join("data");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), vec![7u8; 3_000_000]).unwrap();
        std::fs::write(root.join("g"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let s = shred(&root).unwrap();
        assert_eq!((s.files, s.bytes, s.other, s.dirs), (2, 3_000_001, 1, 3));
        assert!(!root.exists());
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
    }
}
