//! OS updates: the pre-flight check of an installed OS bundle against this
//! data directory, writing its UKI into the inactive slot with a boot
//! counter (so systemd-boot tries it and falls back by itself), the slots'
//! status and an explicit rollback. Slot naming and blessing live in
//! `boot::slots`; this module decides what goes where.

use crate::boot::slots::{self, Slot};
use crate::Error;
use appliance::InstalledBundle;
use appliance::{DataDir, Store};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Tries a new slot gets before systemd-boot falls back.
pub const TRIES: u32 = 3;

/// What this build of the OS can run and open: recorded in each UKI's
/// os-release by `hub image uki` and in the OS bundle's signed manifest by
/// `hub os build`, and compared with the data directory at pre-flight.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Capabilities {
    /// The compliance kernel's VM version (what packs' `handler_vm_version` ranges name).
    pub vm_version: String,
    /// The newest database schema this OS can open.
    pub schema_version: usize,
}

impl Capabilities {
    /// This binary's.
    pub fn current() -> Capabilities {
        Capabilities {
            vm_version: kernel::VM_VERSION.to_string(),
            schema_version: appliance::SCHEMA_VERSION,
        }
    }
}

/// One slot as `spoke os status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SlotStatus {
    /// The file and its boot counter.
    #[serde(flatten)]
    pub slot: Slot,
    /// The OS version in its os-release.
    pub version: Option<String>,
    /// Whether its entry is blessed (booted healthy, or the factory image).
    pub blessed: bool,
    /// Whether systemd-boot gave up on it (no tries left).
    pub failed: bool,
    /// Whether it is the entry this boot came from.
    pub booted: bool,
    /// Whether systemd-boot will pick it next.
    pub next: bool,
}

/// Both slots, with what systemd-boot will do next.
pub fn status(esp: &Path) -> Result<Vec<SlotStatus>, Error> {
    let booted = slots::booted_entry().and_then(|e| slots::slot_of_entry(&e));
    let mut out = Vec::new();
    for s in slots::list(esp).map_err(Error::Os)? {
        let version = read_version(&esp.join(slots::SLOT_DIR).join(&s.file));
        out.push(SlotStatus {
            blessed: s.tries_left.is_none(),
            failed: s.tries_left == Some(0),
            booted: booted == Some(s.slot),
            next: false,
            version,
            slot: s,
        });
    }
    if let Some(i) = next_boot(&out) {
        out[i].next = true;
    }
    Ok(out)
}

/// systemd-boot's choice: entries with tries left (or blessed) before failed
/// ones, then the highest version.
fn next_boot(slots: &[SlotStatus]) -> Option<usize> {
    let key = |s: &SlotStatus| {
        (
            !s.failed,
            s.version
                .as_deref()
                .and_then(|v| semver::Version::parse(v).ok()),
        )
    };
    (0..slots.len()).max_by(|a, b| key(&slots[*a]).cmp(&key(&slots[*b])))
}

fn read_version(uki: &Path) -> Option<String> {
    let bytes = std::fs::read(uki).ok()?;
    image::uki::uki_version(&bytes)
}

/// Why an OS bundle cannot be installed on this data directory.
fn preflight(
    store: &Store,
    os: &InstalledBundle,
    running: Option<&semver::Version>,
) -> Result<(), String> {
    let version = semver::Version::parse(&os.version)
        .map_err(|e| format!("OS bundle version {:?}: {e}", os.version))?;
    if let Some(r) = running {
        if version <= *r {
            return Err(format!("OS {version} is not newer than the running OS {r}"));
        }
    }
    let caps: Capabilities = serde_json::from_value(os.manifest["capabilities"].clone()).map_err(|_| {
        format!(
            "OS bundle {} {} does not state its capabilities (kernel VM and schema versions); rebuild it with this hub",
            os.name, os.version
        )
    })?;
    let vm = semver::Version::parse(&caps.vm_version).map_err(|e| {
        format!(
            "OS {version}'s kernel VM version {:?}: {e}",
            caps.vm_version
        )
    })?;
    packs_run_on(store, &vm, &format!("OS {version}"))?;
    let schema = store.schema_version().map_err(|e| e.to_string())?;
    if caps.schema_version < schema {
        return Err(format!(
            "OS {version} opens database schema up to {}, this data partition is at {schema}",
            caps.schema_version
        ));
    }
    // The running OS must still read the database if the new one falls back
    // after migrating it: one schema version ahead at most.
    if caps.schema_version > schema + 1 {
        return Err(format!(
            "OS {version} would migrate this data partition from schema {schema} to {}, and a fallback could not read it; install an OS with schema {} first",
            caps.schema_version,
            schema + 1
        ));
    }
    Ok(())
}

/// Whether every installed pack's `handler_vm_version` accepts kernel VM `vm`
/// (which `os` carries).
fn packs_run_on(store: &Store, vm: &semver::Version, os: &str) -> Result<usize, String> {
    let packs = store.bundles(Some("pack")).map_err(|e| e.to_string())?;
    for pack in &packs {
        let range = pack
            .manifest
            .get("handler_vm_version")
            .and_then(|v| v.as_str())
            .unwrap_or("*");
        let req = semver::VersionReq::parse(range)
            .map_err(|e| format!("pack {} handler_vm_version {range:?}: {e}", pack.name))?;
        if !req.matches(vm) {
            return Err(format!(
                "pack {} {} needs kernel VM {range}, {os} carries {vm}; publish a pack update first",
                pack.name, pack.version
            ));
        }
    }
    Ok(packs.len())
}

/// The running OS's health on this data directory, checked by PID 1 before
/// it starts the API and blesses the boot entry: the stores open (migrations
/// applied), the appliance's deep health checks pass, and every installed
/// pack runs on this build's kernel VM.
pub fn check(appliance: &appliance::Appliance) -> appliance::Health {
    let mut health = appliance.deep_health();
    let caps = Capabilities::current();
    let packs = semver::Version::parse(&caps.vm_version)
        .map_err(|e| format!("this build's kernel VM version {:?}: {e}", caps.vm_version))
        .and_then(|vm| packs_run_on(appliance.store(), &vm, "this OS"));
    health.checks.push(match packs {
        Ok(n) => (
            "packs".into(),
            true,
            format!("{n} packs run on kernel VM {}", caps.vm_version),
        ),
        Err(e) => ("packs".into(), false, e),
    });
    health.ok = health.checks.iter().all(|c| c.1);
    health
}

/// The OS and its slots for `GET /api/v1/os` (`spoke serve --esp`).
pub(crate) struct ServedOs {
    /// Where the EFI system partition is mounted.
    pub(crate) esp: PathBuf,
}

impl api::OsSlots for ServedOs {
    fn status(&self) -> Result<serde_json::Value, api::HostError> {
        let slots = status(&self.esp)?;
        Ok(serde_json::json!({
            "running": running_version().map(|v| v.to_string()),
            "capabilities": Capabilities::current(),
            "slots": slots,
        }))
    }
}

/// What `spoke os install` did.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    /// The OS version written.
    pub version: String,
    /// The slot it went to.
    pub slot: char,
    /// The file on the ESP (with its boot counter).
    pub file: String,
}

/// The running OS version (from the initramfs's os-release), if any.
pub fn running_version() -> Option<semver::Version> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    if !text.contains("ID=eurocomply") {
        return None;
    }
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_ID="))
        .and_then(|v| semver::Version::parse(v.trim_matches('"')).ok())
}

/// The OS bundles installed in `data`, newest first.
pub fn available(data: &DataDir) -> Result<Vec<InstalledBundle>, Error> {
    let store = data.open_store()?;
    let mut all = store.bundles(Some("os"))?;
    all.sort_by_key(|b| std::cmp::Reverse(semver::Version::parse(&b.version).ok()));
    Ok(all)
}

/// Pre-flight, then writes the OS bundle `version` (default: the newest
/// installed) into the slot that is not `active`, as `NAME+3.efi`; its newer
/// version makes it systemd-boot's default. The old contents of that slot
/// are removed only once the new file is complete and synced.
pub fn install(
    data: &DataDir,
    esp: &Path,
    version: Option<&semver::Version>,
    active: char,
    running: Option<&semver::Version>,
) -> Result<Installed, Error> {
    let store = data.open_store()?;
    let all = available(data)?;
    let os = match version {
        Some(v) => all.into_iter().find(|b| b.version == v.to_string()),
        None => all.into_iter().next(),
    }
    .ok_or_else(|| {
        Error::Os("no such OS bundle is installed; import it from a medium first".into())
    })?;
    preflight(&store, &os, running).map_err(|e| Error::Os(format!("pre-flight refused: {e}")))?;
    let uki = data
        .payloads()
        .join(os.cid.trim_start_matches("sha256:"))
        .join(os.manifest["uki"].as_str().unwrap_or("uki.efi"));
    let slot = if active == 'a' { 'b' } else { 'a' };
    tracing::info!("writing OS {} into slot {slot}", os.version);
    let file = write_slot(esp, slot, &uki)?;
    Ok(Installed {
        version: os.version,
        slot,
        file,
    })
}

/// Copies `uki` to a temporary name on the ESP (which systemd-boot ignores),
/// syncs it, removes the slot's old files and renames it to `eurocomply-S+3.efi`.
fn write_slot(esp: &Path, slot: char, uki: &Path) -> Result<String, Error> {
    let dir = esp.join(slots::SLOT_DIR);
    let tmp = dir.join(format!(".eurocomply-{slot}.tmp"));
    let io =
        |what: &str, p: &Path, e: std::io::Error| Error::Os(format!("{what} {}: {e}", p.display()));
    std::fs::copy(uki, &tmp).map_err(|e| io("copy the new UKI to", &tmp, e))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("sync", &tmp, e))?;
    for old in slots::list(esp)
        .map_err(Error::Os)?
        .into_iter()
        .filter(|s| s.slot == slot)
    {
        let p = dir.join(&old.file);
        std::fs::remove_file(&p).map_err(|e| io("remove the old slot image", &p, e))?;
    }
    let name = format!("eurocomply-{slot}+{TRIES}.efi");
    std::fs::rename(&tmp, dir.join(&name)).map_err(|e| io("rename into place", &tmp, e))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync", &dir, e))?;
    Ok(name)
}

/// Removes a temporary slot file left by an interrupted install.
pub fn clean_interrupted(esp: &Path) -> Vec<PathBuf> {
    let dir = esp.join(slots::SLOT_DIR);
    let mut removed = Vec::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".eurocomply-")
            && name.ends_with(".tmp")
            && std::fs::remove_file(e.path()).is_ok()
        {
            removed.push(e.path());
        }
    }
    removed
}

/// What `spoke os auto` decided.
#[derive(Debug, Clone, Serialize)]
pub struct Auto {
    /// What was written, if anything.
    pub installed: Option<Installed>,
    /// Why nothing was (or what was skipped).
    pub reason: String,
}

/// PID 1's periodic step: removes an interrupted install's temporary file,
/// then installs the newest OS bundle that is newer than the running OS,
/// has not failed on this appliance, and the policy allows at `now`.
pub fn auto(data: &DataDir, esp: &Path, now: jiff::Timestamp) -> Result<Auto, Error> {
    clean_interrupted(esp);
    let running = running_version().ok_or_else(|| {
        Error::Os("not running from an appliance image (no eurocomply /etc/os-release)".into())
    })?;
    let active = slots::booted_entry()
        .and_then(|e| slots::slot_of_entry(&e))
        .ok_or_else(|| Error::Os("systemd-boot did not report the running slot".into()))?;
    let failed = failed_versions(esp)?;
    let policy = crate::policy::Policy::load(data)?;
    let mut reasons = Vec::new();
    for os in available(data)? {
        let newer = semver::Version::parse(&os.version).is_ok_and(|v| v > running);
        if !newer {
            continue;
        }
        if failed.contains(&os.version) {
            reasons.push(format!("{} failed to boot here before", os.version));
            continue;
        }
        if let Err(why) = policy.decide(&os.version, &os.manifest, now)? {
            reasons.push(why);
            continue;
        }
        let v = semver::Version::parse(&os.version).map_err(|e| Error::Os(e.to_string()))?;
        let done = install(data, esp, Some(&v), active, Some(&running))?;
        return Ok(Auto {
            installed: Some(done),
            reason: String::new(),
        });
    }
    Ok(Auto {
        installed: None,
        reason: if reasons.is_empty() {
            format!("no OS bundle newer than {running}")
        } else {
            reasons.join("; ")
        },
    })
}

/// Marks the slot that would boot next as failed (`+0`), so systemd-boot
/// boots the other one; refuses when the other slot is missing or failed.
pub fn rollback(esp: &Path) -> Result<(Slot, Slot), Error> {
    let st = status(esp)?;
    let next = st
        .iter()
        .find(|s| s.next)
        .ok_or_else(|| Error::Os("no OS slot on the ESP".into()))?;
    let other = st
        .iter()
        .find(|s| s.slot.slot != next.slot.slot && !s.failed)
        .ok_or_else(|| {
            Error::Os("the other slot is empty or failed; nothing to roll back to".into())
        })?;
    let dir = esp.join(slots::SLOT_DIR);
    let to = format!("eurocomply-{}+0.efi", next.slot.slot);
    std::fs::rename(dir.join(&next.slot.file), dir.join(&to))
        .map_err(|e| Error::Os(format!("rename {}: {e}", next.slot.file)))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::Os(format!("sync {}: {e}", dir.display())))?;
    let marked = slots::parse_name(&to).ok_or_else(|| Error::Os("bad slot name".into()))?;
    Ok((marked, other.slot.clone()))
}

/// The versions systemd-boot gave up on (or an operator rolled back): never installed again automatically.
pub fn failed_versions(esp: &Path) -> Result<Vec<String>, Error> {
    Ok(status(esp)?
        .into_iter()
        .filter(|s| s.failed)
        .filter_map(|s| s.version)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(slot: char, version: &str, failed: bool) -> SlotStatus {
        SlotStatus {
            slot: Slot {
                slot,
                file: String::new(),
                tries_left: failed.then_some(0),
                tries_done: None,
            },
            version: Some(version.into()),
            blessed: !failed,
            failed,
            booted: false,
            next: false,
        }
    }

    fn bundle(
        kind: &str,
        name: &str,
        version: &str,
        manifest: serde_json::Value,
    ) -> InstalledBundle {
        InstalledBundle {
            cid: format!("sha256:{kind}{name}{version}"),
            kind: kind.into(),
            name: name.into(),
            version: version.into(),
            target: format!("{kind}/{name}/{version}.json"),
            manifest,
            installed_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn os(version: &str, vm: &str, schema: usize) -> InstalledBundle {
        bundle(
            "os",
            "eurocomply-os",
            version,
            serde_json::json!({ "capabilities": { "vm_version": vm, "schema_version": schema } }),
        )
    }

    #[test]
    fn preflight_checks_version_packs_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::create(&dir.path().join("db.sqlite"), "did:key:test").unwrap();
        let pack = bundle(
            "pack",
            "@eu/rules",
            "1.0.0",
            serde_json::json!({ "handler_vm_version": "^1.2" }),
        );
        store
            .record_bundles(&[pack], &[], &appliance::Actor::cli())
            .unwrap();
        let schema = appliance::SCHEMA_VERSION;
        let running = semver::Version::new(1, 0, 0);
        assert_eq!(
            preflight(&store, &os("2.0.0", "1.3.0", schema + 1), Some(&running)),
            Ok(())
        );
        let refused = |b: InstalledBundle| preflight(&store, &b, Some(&running)).unwrap_err();
        assert!(refused(os("1.0.0", "1.3.0", schema)).contains("not newer"));
        assert!(
            refused(os("2.0.0", "2.0.0", schema)).contains("@eu/rules 1.0.0 needs kernel VM ^1.2")
        );
        assert!(refused(os("2.0.0", "1.3.0", schema - 1)).contains("opens database schema up to"));
        assert!(refused(os("2.0.0", "1.3.0", schema + 2)).contains("a fallback could not read it"));
    }

    #[test]
    fn the_newest_slot_with_tries_boots_next() {
        assert_eq!(
            next_boot(&[st('a', "1.0.0", false), st('b', "2.0.0", false)]),
            Some(1)
        );
        assert_eq!(
            next_boot(&[st('a', "3.0.0", true), st('b', "2.0.0", false)]),
            Some(1)
        );
        assert_eq!(
            next_boot(&[st('a', "1.10.0", false), st('b', "1.9.0", false)]),
            Some(0)
        );
    }

    #[test]
    fn writing_a_slot_replaces_only_that_slot() {
        let esp = tempfile::tempdir().unwrap();
        let dir = esp.path().join(slots::SLOT_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("eurocomply-a.efi"), b"A").unwrap();
        std::fs::write(dir.join("eurocomply-b+0-3.efi"), b"old B").unwrap();
        let new = esp.path().join("new.efi");
        std::fs::write(&new, b"new B").unwrap();
        let name = write_slot(esp.path(), 'b', &new).unwrap();
        assert_eq!(name, "eurocomply-b+3.efi");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, ["eurocomply-a.efi", "eurocomply-b+3.efi"]);
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), b"new B");
    }
}
