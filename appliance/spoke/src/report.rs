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
    let body = json!({
        "created_at": jiff::Timestamp::now().to_string(),
        "spoke_version": env!("CARGO_PKG_VERSION"),
        "os_version": Value::Null,
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
    let body = json!({
        "change": change,
        "packs": packs,
        "audit": audit,
        "audit_head": app.store().audit_verify()?.head,
    });
    identity::sign(&d.identity_dir(), EVIDENCE_FORMAT, body)
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
