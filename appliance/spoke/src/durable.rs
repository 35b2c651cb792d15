//! Command handlers for durability and the end of life: `spoke backup`,
//! `backups`, `restore`, `verify-restore`, `export` and `decommission`.

use crate::cli::{open, out, DecommissionCommand};
use crate::{backup, decommission, identity, restore, Error};
use appliance::{Actor, DataDir};
use std::path::Path;

/// The recipients given, or the spoke's own when none are.
pub(crate) fn recipients(
    d: &DataDir,
    given: &[String],
) -> Result<Vec<age::x25519::Recipient>, Error> {
    if !given.is_empty() {
        return backup::parse_recipients(given);
    }
    d.check_initialised()?;
    let own = identity::load_public(&d.identity_dir())?.age_recipient;
    eprintln!(
        "note: no --recipient given; the backup is encrypted to the spoke's own key only. \
         Keep a copy of {}/age.key outside the appliance, or give the operator's recipient.",
        d.identity_dir().display()
    );
    backup::parse_recipients(&[own])
}

pub(crate) fn backup(
    json: bool,
    data: &Path,
    to: &Path,
    given: &[String],
    keep: Option<usize>,
) -> Result<(), Error> {
    let d = DataDir::new(data);
    let recipients = recipients(&d, given)?;
    let progress = bundles::progress::TtyBar::new("backing up", true);
    let r = backup::backup(&d, to, &recipients, keep, &progress)?;
    drop(progress);
    out(json, &r, |r| {
        format!(
            "backup {} written to {}: {} files ({} bytes), {} chunks of which {} new, {} bytes written; audit entries {}{}",
            r.name,
            r.manifest.display(),
            r.files,
            r.bytes,
            r.chunks,
            r.new_chunks,
            r.written_bytes,
            r.audit_entries,
            if r.pruned.is_empty() {
                String::new()
            } else {
                format!("; removed {}", r.pruned.join(", "))
            }
        )
    })
}

pub(crate) fn list(json: bool, from: &Path) -> Result<(), Error> {
    let names = backup::BackupDir::new(from).list()?;
    out(json, &names, |n| {
        if n.is_empty() {
            format!("no backups in {}", from.display())
        } else {
            n.join("\n")
        }
    })
}

fn restored(r: &restore::RestoreReport) -> String {
    format!(
        "restored backup {} of {} into {}: {} files ({} bytes) checked, audit chain of {} entries intact (head {}){}{}",
        r.backup,
        r.spoke,
        r.data.display(),
        r.files,
        r.bytes,
        r.audit_entries,
        r.audit_head,
        if r.replaced {
            "; the previous data directory was replaced"
        } else {
            ""
        },
        r.locks_replayed
            .map(|n| format!("; {n} Compliance Locks replayed byte for byte"))
            .unwrap_or_default()
    )
}

pub(crate) fn restore(
    json: bool,
    from: &Path,
    data: &Path,
    identity: &Path,
    name: Option<&str>,
    force: bool,
) -> Result<(), Error> {
    let ids = backup::read_identities(identity)?;
    let progress = bundles::progress::TtyBar::new("restoring", true);
    let r = restore::restore(from, data, &ids, name, force, &progress)?;
    drop(progress);
    out(json, &r, restored)
}

pub(crate) fn verify_restore(
    json: bool,
    from: &Path,
    identity: &Path,
    name: Option<&str>,
) -> Result<(), Error> {
    let ids = backup::read_identities(identity)?;
    let progress = bundles::progress::TtyBar::new("verifying", true);
    let r = restore::verify_restore(from, &ids, name, &progress)?;
    drop(progress);
    out(json, &r, |r| format!("ok: {}", restored(r)))
}

pub(crate) fn export(
    json: bool,
    data: &Path,
    to: &Path,
    with_credentials: bool,
) -> Result<(), Error> {
    let mut a = open(data)?;
    let r = decommission::export(&mut a, to, with_credentials)?;
    out(json, &r, |r| {
        format!(
            "exported {} files ({} bytes) to {}; signed receipt {} (sha256 {})",
            r.files,
            r.bytes,
            r.dir.display(),
            r.receipt.display(),
            r.receipt_sha256
        )
    })
}

pub(crate) fn decommission(json: bool, command: DecommissionCommand) -> Result<(), Error> {
    let show = |json: bool, a: &appliance::Appliance| -> Result<(), Error> {
        let record = a.decommission()?;
        let value = serde_json::json!({
            "lifecycle": a.store().lifecycle()?,
            "decommission": record,
        });
        out(json, &value, |v| {
            match &record {
            None => format!("lifecycle {}; no decommissioning", v["lifecycle"]),
            Some(r) => format!(
                "lifecycle {}; decommissioning phase {:?} (notice {}, export window {}, receipt {})",
                v["lifecycle"],
                r.phase,
                r.notice_at,
                r.export_window_at.as_deref().unwrap_or("-"),
                r.receipt.as_deref().unwrap_or("none yet")
            ),
        }
        })
    };
    match command {
        DecommissionCommand::Status { data } => show(json, &open(&data)?),
        DecommissionCommand::Notice { data } => {
            let mut a = open(&data)?;
            a.decommission_notice(&Actor::cli())?;
            show(json, &a)
        }
        DecommissionCommand::ExportWindow { data } => {
            let mut a = open(&data)?;
            a.decommission_export_window(&Actor::cli())?;
            show(json, &a)
        }
        DecommissionCommand::Cancel { data, reason } => {
            let mut a = open(&data)?;
            a.decommission_cancel(&Actor::cli(), &reason)?;
            show(json, &a)
        }
        DecommissionCommand::Destroy {
            data,
            certificate,
            backups,
        } => {
            let a = open(&data)?;
            let r = decommission::destroy(a, &certificate, &backups)?;
            out(json, &r, |r| {
                format!(
                    "destroyed {} files ({} bytes) in {}{}; verified nothing remains; signed certificate {}",
                    r.data.files,
                    r.data.bytes,
                    data.display(),
                    r.backups
                        .iter()
                        .map(|(p, s)| format!(" and {} files in {}", s.files, p.display()))
                        .collect::<String>(),
                    r.certificate.display()
                )
            })
        }
    }
}
