//! The end of a spoke's life (seed 000 §12) on the command line: the export
//! of everything the customer owns with its signed receipt, and destruction
//! with its signed certificate. The phases and their rules live in
//! `appliance::decommission`; this module stages the export, signs, shreds
//! and verifies.

use crate::{identity, Error};
use appliance::decommission::{shred, Shredded};
use appliance::{Actor, Appliance};
use bundles::attest::{DESTRUCTION_FORMAT, EXPORT_RECEIPT_FORMAT};
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The receipt's file name inside an export.
pub const RECEIPT: &str = "export-receipt.json";

/// What an export wrote.
#[derive(Debug, Serialize)]
pub struct ExportReport {
    /// The export directory.
    pub dir: PathBuf,
    /// The signed receipt.
    pub receipt: PathBuf,
    /// SHA-256 of the receipt file (recorded in the audit log).
    pub receipt_sha256: String,
    /// Files exported (besides the receipt).
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// Writes the open-format export of `app` into `to` (absent or empty): staged
/// next to it, signed, fsynced and renamed into place; then records the
/// receipt's digest in the audit log (and the decommission record).
/// Password and token hashes are exported empty unless `with_credentials`
/// (the receipt says which).
pub fn export(
    app: &mut Appliance,
    to: &Path,
    with_credentials: bool,
) -> Result<ExportReport, Error> {
    if std::fs::read_dir(to).is_ok_and(|mut e| e.next().is_some()) {
        return Err(Error::Conflict(format!(
            "{} exists and is not empty; export into a new directory",
            to.display()
        )));
    }
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(|e| Error::Usage(format!("create {}: {e}", parent.display())))?;
    let stage = tempfile::Builder::new()
        .prefix(".export-")
        .tempdir_in(&parent)
        .map_err(|e| Error::Usage(format!("create staging in {}: {e}", parent.display())))?;
    let files = app.export_to(stage.path(), with_credentials)?;
    let audit = app.store().audit_verify()?;
    let body = json!({
        "created_at": now(),
        "spoke_version": env!("CARGO_PKG_VERSION"),
        "lifecycle": app.store().lifecycle()?,
        "decommission": app.decommission()?,
        "audit_entries": audit.entries,
        "audit_head": audit.head,
        "counts": app.counts()?.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "credentials": if with_credentials { "included" } else { "withheld" },
        "files": files,
    });
    let signed = identity::sign(&app.dir().identity_dir(), EXPORT_RECEIPT_FORMAT, body)?;
    let bytes = serde_json::to_vec_pretty(&signed).map_err(|e| Error::Usage(e.to_string()))?;
    bundles::fsutil::atomic_write(&stage.path().join(RECEIPT), &bytes)?;
    bundles::fsutil::sync_filesystem(stage.path())?;
    if to.is_dir() {
        std::fs::remove_dir(to)
            .map_err(|e| Error::Usage(format!("remove empty {}: {e}", to.display())))?;
    }
    std::fs::rename(stage.path(), to)
        .map_err(|e| Error::Usage(format!("move the export into {}: {e}", to.display())))?;
    bundles::fsutil::sync_dir(&parent)?;
    let receipt_sha256 = bundles::index::sha256_hex(&bytes);
    app.record_export_receipt(&Actor::cli(), &receipt_sha256, files.len())?;
    Ok(ExportReport {
        dir: to.to_path_buf(),
        receipt: to.join(RECEIPT),
        receipt_sha256,
        files: files.len(),
        bytes: files.iter().map(|f| f.size).sum(),
    })
}

/// What destruction did, as certified.
#[derive(Debug, Serialize)]
pub struct Destroyed {
    /// The certificate written.
    pub certificate: PathBuf,
    /// What was shredded in the data directory.
    pub data: Shredded,
    /// What was shredded in each backup directory.
    pub backups: Vec<(PathBuf, Shredded)>,
}

fn absolute(p: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(p).map_err(|e| Error::Usage(format!("{}: {e}", p.display())))
}

/// Destroys the data directory (and the given backup directories), verifies
/// nothing remains and writes the signed destruction certificate to
/// `certificate`, which must lie outside everything destroyed.
pub fn destroy(
    mut app: Appliance,
    certificate: &Path,
    backups: &[PathBuf],
) -> Result<Destroyed, Error> {
    let data = absolute(app.dir().root())?;
    let cert = absolute(certificate)?;
    for doomed in std::iter::once(&data).chain(backups) {
        let doomed = absolute(doomed)?;
        if cert.starts_with(&doomed) {
            return Err(Error::Usage(format!(
                "the certificate {} would be destroyed with {}; write it elsewhere",
                cert.display(),
                doomed.display()
            )));
        }
    }
    let cert_dir = cert.parent().unwrap_or(Path::new("/")).to_path_buf();
    std::fs::create_dir_all(&cert_dir)
        .map_err(|e| Error::Usage(format!("create {}: {e}", cert_dir.display())))?;
    if cert.exists() {
        return Err(Error::Conflict(format!(
            "{} exists; give a new file for the certificate",
            cert.display()
        )));
    }
    // Checks LEGAL_HOLD, the phase and the receipt, and records the start.
    let record = app.decommission_begin_destruction(&Actor::cli())?;
    // The key is destroyed with the data: keep it in memory to sign after.
    let signer = identity::Signer::load(&app.dir().identity_dir())?;
    let audit = app.store().audit_verify()?;
    let counts: std::collections::BTreeMap<String, i64> = app.counts()?.into_iter().collect();
    drop(app);

    let shredded = shred(&data)?;
    let mut shredded_backups = Vec::new();
    for b in backups {
        if b.exists() {
            shredded_backups.push((b.clone(), shred(b)?));
        }
    }
    let destroyed_at = now();
    // Verification: nothing remains where data was.
    let remaining: Vec<String> = std::iter::once(&data)
        .chain(backups)
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !remaining.is_empty() {
        return Err(Error::Usage(format!(
            "verification failed: {} still exist; remove them and run destroy again",
            remaining.join(", ")
        )));
    }
    let body = json!({
        "spoke": signer.did,
        "data_dir": data,
        "notice_at": record.notice_at,
        "export_window_at": record.export_window_at,
        "export_receipt_sha256": record.receipt,
        "export_receipt_at": record.receipt_at,
        "destruction_started_at": record.destruction_at,
        "destroyed_at": destroyed_at,
        "verified_at": now(),
        "destroyed": {
            "data_dir": shredded,
            "backups": shredded_backups.iter().map(|(p, s)| json!({"dir": p, "shredded": s})).collect::<Vec<_>>(),
            "counts_before": counts,
            "audit_entries_before": audit.entries,
            "audit_head_before": audit.head,
            "identity_keys": "destroyed with the data directory (the did:key above can sign nothing more)",
        },
        "method": "every regular file overwritten with zeros and fsynced, then removed; links removed, never followed",
        "verification": { "remaining": remaining },
    });
    let signed = signer.sign(DESTRUCTION_FORMAT, body)?;
    let bytes = serde_json::to_vec_pretty(&signed).map_err(|e| Error::Usage(e.to_string()))?;
    bundles::fsutil::atomic_write(&cert, &bytes)?;
    Ok(Destroyed {
        certificate: cert,
        data: shredded,
        backups: shredded_backups,
    })
}
