//! What the spoke hands back (it never sends; an operator carries the file):
//! the signed report for the hub and the signed evidence pack of a change.

use crate::{identity, Error};
use appliance::{Appliance, DataDir};
use bundles::attest::{EVIDENCE_FORMAT, REPORT_FORMAT};
use bundles::chunks::ChunkStore;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The report for the hub: counts, installed bundles, receipts of every
/// applied or rejected change, and the chunk inventory for offline deltas.
/// It never carries names, identifiers, CAS numbers or content.
pub(crate) fn report(app: &Appliance, d: &DataDir) -> Result<bundles::attest::Signed, Error> {
    let bundles: Vec<Value> = app
        .store()
        .bundles(None)?
        .into_iter()
        .map(|b| json!({ "kind": b.kind, "name": b.name, "version": b.version, "cid": b.cid }))
        .collect();
    let receipts: Vec<Value> = app
        .store()
        .changes()?
        .into_iter()
        .filter(|c| c.status != "pending")
        .map(|c| {
            json!({
                "change": c.id,
                "status": c.status,
                "mode": c.mode,
                "decided_at": c.decided_at,
                "packs": c.packs.iter().map(|m| json!({
                    "name": m.name,
                    "from": m.from.as_ref().map(|p| &p.version),
                    "to": m.to.version,
                    "cid": m.to.cid,
                })).collect::<Vec<_>>(),
                "verdict_changes": c.diff.changes.len(),
            })
        })
        .collect();
    let audit = app.store().audit_verify()?;
    let body = json!({
        "created_at": jiff::Timestamp::now().to_string(),
        "spoke_version": env!("CARGO_PKG_VERSION"),
        "os_version": Value::Null,
        "audit_entries": audit.entries,
        "audit_head": audit.head,
        "lifecycle": app.store().lifecycle()?,
        "counts": app.report_counts()?,
        "errors_by_code_24h": app.store().error_counts(&yesterday())?,
        "bundles": bundles,
        "receipts": receipts,
        "inventory": ChunkStore::new(d.chunks()).list()?,
    });
    identity::sign(&d.identity_dir(), REPORT_FORMAT, body)
}

fn yesterday() -> String {
    jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .date()
        .yesterday()
        .map(|d| d.to_string())
        .unwrap_or_default()
}

/// The evidence pack of an applied change: what moved (digests, SBOMs,
/// provenance), the simulator diff, who approved and when, the audit entries
/// and the Compliance Locks written when it applied.
pub(crate) fn evidence(
    app: &Appliance,
    d: &DataDir,
    id: &str,
) -> Result<bundles::attest::Signed, Error> {
    let change = app.store().change(id)?;
    if change.status != "applied" {
        return Err(Error::Usage(format!(
            "change {id} is {}; evidence exists only for applied changes",
            change.status
        )));
    }
    let mut packs = Vec::new();
    for m in &change.packs {
        let hex = m.to.cid.trim_start_matches("sha256:");
        let path = d.indexes().join(format!("{hex}.json"));
        let index: Value = serde_json::from_slice(
            &std::fs::read(&path)
                .map_err(|e| Error::Usage(format!("read {}: {e}", path.display())))?,
        )
        .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
        packs.push(json!({
            "name": m.name,
            "from": m.from,
            "to": m.to,
            "sbom": index["sbom"],
            "provenance": index["provenance"],
        }));
    }
    let audit: Vec<Value> = app
        .store()
        .audit_entries()?
        .into_iter()
        .filter(|e| e.entry.target == id)
        .map(|e| serde_json::to_value(e).unwrap_or_default())
        .collect();
    let chain = app.store().audit_verify()?;
    let body = json!({
        "change": change,
        "packs": packs,
        "audit": audit,
        "audit_entries": chain.entries,
        "audit_head": chain.head,
    });
    identity::sign(&d.identity_dir(), EVIDENCE_FORMAT, body)
}

/// A signed checkpoint of the audit chain: how many entries it has and the
/// newest one's hash. Carried off the spoke (with reports, backups, exports
/// and evidence packs, which carry the same two fields), it lets
/// `spoke audit verify --against` find a rewrite of anything before it.
pub(crate) fn checkpoint(app: &Appliance, d: &DataDir) -> Result<bundles::attest::Signed, Error> {
    let audit = app.store().audit_verify()?;
    let body = json!({
        "created_at": jiff::Timestamp::now().to_string(),
        "audit_entries": audit.entries,
        "audit_head": audit.head,
    });
    identity::sign(&d.identity_dir(), bundles::attest::CHECKPOINT_FORMAT, body)
}

/// Verifies the audit chain against a signed document this spoke wrote
/// (a checkpoint, report, backup manifest, export receipt or evidence pack):
/// its signature must be this spoke's, and the chain must still hold the
/// entry it recorded.
pub(crate) fn verify_against(
    app: &Appliance,
    d: &DataDir,
    file: &Path,
) -> Result<appliance::audit::Verified, Error> {
    let origin = file.display().to_string();
    let bytes = bundles::fsutil::read_regular(file, 64 * 1024 * 1024)?;
    let format = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["format"].as_str().map(str::to_string))
        .filter(|f| bundles::attest::FORMATS.contains(&f.as_str()))
        .ok_or_else(|| {
            Error::Usage(format!(
                "{origin} is not a signed spoke document (a checkpoint, report, backup manifest, export receipt or evidence pack)"
            ))
        })?;
    let doc = bundles::attest::verify(&bytes, &format, &origin)?;
    let me = identity::load_public(&d.identity_dir())?.did;
    if doc.signer != me {
        return Err(Error::Usage(format!(
            "{origin} was signed by {}, not by this spoke ({me}); use a checkpoint this spoke wrote",
            doc.signer
        )));
    }
    let (Some(entries), Some(head)) = (
        doc.body["audit_entries"].as_i64(),
        doc.body["audit_head"].as_str(),
    ) else {
        return Err(Error::Usage(format!(
            "{origin} ({format}) records no audit checkpoint (audit_entries, audit_head)"
        )));
    };
    Ok(app.store().audit_verify_against(entries, head)?)
}

/// Writes a signed document into `dir` as `name`, atomically.
pub(crate) fn write(
    dir: &Path,
    name: &str,
    doc: &bundles::attest::Signed,
) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Usage(format!("create {}: {e}", dir.display())))?;
    let path = dir.join(name);
    let bytes = serde_json::to_vec_pretty(doc).map_err(|e| Error::Usage(e.to_string()))?;
    bundles::fsutil::atomic_write(&path, &bytes)?;
    Ok(path)
}
