//! How bundles come in: a medium given on the command line or found in a
//! watched directory while `spoke serve` runs, or a pull from a hub on a
//! schedule. All of them go through the agent and then this registry, which
//! applies the spoke's policy (licence, trust tier, dependencies) and
//! proposes the pack change.

use crate::{identity, Error};
use agent::sync::{SyncOptions, SyncReport};
use agent::{ImportReport, Preview, Registry, RegistryError, VerifiedBundle};
use appliance::changes::Change;
use appliance::{Actor, Appliance, DataDir, InstalledBundle};
use bundles::index::BundleKind;
use bundles::Progress;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The appliance seen through the agent's [`Registry`] trait: records what
/// was verified (with its packs' reference tables), after checking trust
/// tiers, then proposes activating new pack versions through the simulator.
pub(crate) struct ApplianceRegistry {
    app: Appliance,
    payloads: PathBuf,
    /// This spoke's did:key, which a licence must name.
    did: String,
    /// Who installs: the audit log names them (the console's signed-in
    /// administrator, or the local console for the CLI and the watchers).
    actor: Actor,
    change: Option<Change>,
}

impl ApplianceRegistry {
    /// This spoke's licence bundles among `bundles`, each checked to name
    /// this spoke in its signed manifest as in its name.
    fn own_licences(
        &self,
        bundles: &[VerifiedBundle],
    ) -> Result<Vec<appliance::licence::LicenceBundle>, appliance::Error> {
        let mut out = Vec::new();
        for b in bundles
            .iter()
            .filter(|b| b.published.kind == BundleKind::Licence)
        {
            let spoke = b.index.manifest.get("spoke").and_then(|v| v.as_str());
            if spoke != Some(self.did.as_str()) {
                return Err(appliance::Error::Denied(format!(
                    "licence bundle {}@{} is named for this spoke but its signed licence is for {}; \
                     ask the vendor to reissue it",
                    b.published.name,
                    b.published.version,
                    spoke.unwrap_or("no spoke")
                )));
            }
            out.push(appliance::licence::LicenceBundle {
                cid: b.published.cid.clone(),
                name: b.published.name.clone(),
                version: b.published.version.clone(),
                licence: b.index.manifest.clone(),
            });
        }
        Ok(out)
    }

    /// Every policy check on `bundles`, their payloads in `payloads`
    /// (staged, or installed): what to record, or why not. Writes nothing.
    fn plan(&self, bundles: &[VerifiedBundle], payloads: &Path) -> Result<Plan, appliance::Error> {
        let now = jiff_now();
        let licence_bundles = self.own_licences(bundles)?;
        let rows: Vec<InstalledBundle> = bundles
            .iter()
            .filter(|b| b.published.kind != BundleKind::Licence)
            .map(|b| InstalledBundle {
                cid: b.published.cid.clone(),
                kind: b.published.kind.as_str().to_string(),
                name: b.published.name.clone(),
                version: b.published.version.clone(),
                target: b.published.target.clone(),
                manifest: b.index.manifest.clone(),
                installed_at: now.clone(),
            })
            .collect();
        let product = rows.iter().find(|r| r.kind == "product");
        let product_tier = product
            .and_then(|p| {
                p.manifest
                    .pointer("/product/defaults/trust_policy/minimum_tier")
            })
            .and_then(|v| v.as_str());
        let embedded = product.and_then(|p| p.manifest.get("licence")).cloned();
        if let Some(l) = &embedded {
            if l.get("spoke").and_then(|v| v.as_str()) != Some(self.did.as_str()) {
                return Err(appliance::Error::Denied(format!(
                    "this product medium carries a licence for another spoke ({}); \
                     ask the vendor for one made for this spoke ({})",
                    l.get("spoke").and_then(|v| v.as_str()).unwrap_or("none"),
                    self.did
                )));
            }
        }
        // The licence that runs longest among those this import brings.
        let licence = embedded
            .into_iter()
            .chain(licence_bundles.iter().map(|b| b.licence.clone()))
            .max_by(|a, b| {
                let expires = |l: &serde_json::Value| {
                    l.get("expires")
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                };
                expires(a).cmp(&expires(b))
            });
        self.app.store().check_tiers(&rows, product_tier)?;
        self.app.store().check_dependencies(&rows)?;
        // The lifecycle gate, before anything is written: a current licence
        // for this spoke is installed first (it may be what lifts a lapsed
        // one's suspension); an expired one last, after what it came with.
        let renews = licence.as_ref().is_some_and(|l| {
            appliance::licence::Terms::from_licence(l).is_ok_and(|t| t.in_force())
        });
        self.app.store().check_installable(renews)?;
        // A model this spoke cannot run is refused before anything is
        // recorded, with the reason.
        for b in bundles
            .iter()
            .filter(|b| b.published.kind.as_str() == "model")
        {
            let format = b
                .index
                .manifest
                .get("format")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            gateway::check_model_payload(&payloads.join(b.published.sha256()), format)
                .map_err(|reason| {
                    appliance::Error::Invalid(format!(
                        "model bundle {}@{} cannot run on this spoke: {reason}; nothing was installed",
                        b.published.name, b.published.version
                    ))
                })?;
        }
        let mut tables = Vec::new();
        for b in bundles
            .iter()
            .filter(|b| b.published.kind.as_str() == "pack")
        {
            tables.extend(appliance::compliance::read_pack_tables(
                &payloads.join(b.published.sha256()),
                &b.published.cid,
                &b.published.name,
            )?);
        }
        let product = product.is_some();
        Ok(Plan {
            rows,
            tables,
            licence_bundles,
            licence,
            renews,
            product,
        })
    }

    fn record_all(&mut self, bundles: &[VerifiedBundle]) -> Result<(), appliance::Error> {
        let Plan {
            rows,
            tables,
            licence_bundles,
            licence,
            renews,
            product,
        } = self.plan(bundles, &self.payloads)?;
        let actor = self.actor.clone();
        if let Some(l) = licence.as_ref().filter(|_| renews) {
            self.app.install_licence(&actor, l)?;
        }
        self.app.record_licence_bundles(&actor, &licence_bundles)?;
        self.app
            .store_mut()
            .record_bundles(&rows, &tables, &actor)?;
        let packs: Vec<String> = rows
            .iter()
            .filter(|r| r.kind == "pack")
            .map(|r| r.cid.clone())
            .collect();
        self.change = self.app.propose(&actor, &packs, product)?;
        // The first model for a task is activated with the install; a later
        // version waits for `spoke models activate`.
        self.app.activate_new_models(&actor, &gateway::SmokeTest)?;
        if let Some(l) = licence.as_ref().filter(|_| !renews) {
            self.app.install_licence(&actor, l)?;
        }
        Ok(())
    }
}

/// What an import records, once every check has passed.
struct Plan {
    rows: Vec<InstalledBundle>,
    tables: Vec<appliance::compliance::ReferenceTable>,
    licence_bundles: Vec<appliance::licence::LicenceBundle>,
    /// The licence to install, if the import brings one for this spoke.
    licence: Option<serde_json::Value>,
    /// Whether that licence is in force (installed first: it may lift a
    /// lapsed one's suspension).
    renews: bool,
    /// Whether a product bundle comes with it.
    product: bool,
}

fn registry_error(e: appliance::Error) -> RegistryError {
    RegistryError {
        kind: e.kind(),
        message: e.to_string(),
    }
}

impl Registry for ApplianceRegistry {
    fn accepting(&self) -> Result<(), RegistryError> {
        // What the medium carries is not known yet: one that renews a lapsed
        // licence may still come in, and `record` asks again.
        self.app
            .store()
            .check_installable(true)
            .map_err(registry_error)
    }

    fn has(&self, cid: &str) -> Result<bool, RegistryError> {
        self.app.store().has_bundle(cid).map_err(registry_error)
    }

    /// Every bundle but another spoke's licence.
    fn wants(&self, bundle: &bundles::repo::Published) -> bool {
        bundle.kind != BundleKind::Licence
            || bundles::manifest::Licence::spoke_of_bundle(&bundle.name).as_deref()
                == Some(self.did.as_str())
    }

    fn admit(&self, bundles: &[VerifiedBundle], payloads: &Path) -> Result<(), RegistryError> {
        self.plan(bundles, payloads)
            .map(drop)
            .map_err(registry_error)
    }

    fn record(&mut self, bundles: &[VerifiedBundle]) -> Result<(), RegistryError> {
        self.record_all(bundles).map_err(registry_error)
    }
}

fn jiff_now() -> String {
    jiff::Timestamp::now().to_string()
}

fn agent_paths(d: &DataDir) -> agent::Paths {
    agent::Paths {
        trust: d.trust(),
        chunks: d.chunks(),
        indexes: d.indexes(),
        payloads: d.payloads(),
        staging: d.staging(),
    }
}

fn registry(d: &DataDir, actor: &Actor) -> Result<ApplianceRegistry, Error> {
    d.check_initialised()?;
    Ok(ApplianceRegistry {
        app: Appliance::open(d)?,
        payloads: d.payloads(),
        did: identity::load_public(&d.identity_dir())?.did,
        change: None,
        actor: actor.clone(),
    })
}

/// Verifies and installs a medium; returns what it installed and the pack
/// change it proposed.
pub(crate) fn import_medium(
    d: &DataDir,
    medium: &Path,
    actor: &Actor,
    progress: &dyn Progress,
) -> Result<(ImportReport, Option<Change>), Error> {
    let mut registry = registry(d, actor)?;
    let age = identity::age_identity(&d.identity_dir())?;
    let report = agent::import(&agent_paths(d), medium, Some(&age), &mut registry, progress)?;
    Ok((report, registry.change))
}

/// Verifies a medium's signed metadata and lists what it holds; installs nothing.
pub(crate) fn preview_medium(d: &DataDir, medium: &Path) -> Result<Preview, Error> {
    let registry = registry(d, &Actor::cli())?;
    let age = identity::age_identity(&d.identity_dir())?;
    Ok(agent::preview(
        &agent_paths(d),
        medium,
        Some(&age),
        &registry,
    )?)
}

/// What an import or sync installed, with the pack change it proposed, as
/// `spoke import --json` and the console show it.
pub(crate) fn import_json(report: &ImportReport, change: Option<&Change>) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap_or_default();
    value["change"] = serde_json::to_value(change).unwrap_or_default();
    value
}

/// The media directory as the console sees it (`spoke serve --media DIR`):
/// media are named by their directory's name and imported only when an
/// administrator asks, through the same path as `spoke import`.
pub(crate) struct MediaDir {
    d: DataDir,
    dir: PathBuf,
    meter: Meter,
}

/// Progress of the running (or last) install.
#[derive(Default)]
struct Meter {
    medium: Mutex<String>,
    running: AtomicBool,
    total: AtomicU64,
    done: AtomicU64,
}

impl Progress for Meter {
    fn set_len(&self, len: u64) {
        self.total.store(len, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
    }
    fn inc(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
}

impl MediaDir {
    pub(crate) fn new(d: DataDir, dir: PathBuf) -> Self {
        MediaDir {
            d,
            dir,
            meter: Meter::default(),
        }
    }

    /// The medium listed under `name` (never a path from the request).
    fn medium(&self, name: &str) -> Result<PathBuf, api::HostError> {
        media_in(&self.dir)
            .into_iter()
            .find(|p| p.file_name().is_some_and(|n| n == name))
            .ok_or_else(|| api::HostError {
                kind: "not_found",
                message: format!(
                    "no medium {name:?} in {}; insert it, wait until it is mounted, then reload",
                    self.dir.display()
                ),
            })
    }
}

impl api::Media for MediaDir {
    fn list(&self) -> Result<serde_json::Value, api::HostError> {
        let media: Vec<serde_json::Value> = media_in(&self.dir)
            .iter()
            .map(|p| {
                let info: Option<bundles::medium::MediumInfo> =
                    info_bytes(p).and_then(|b| serde_json::from_slice(&b).ok());
                serde_json::json!({
                    "id": p.file_name().map(|n| n.to_string_lossy()),
                    "encrypted": info.as_ref().map(|i| i.encrypted),
                })
            })
            .collect();
        Ok(serde_json::json!({ "dir": self.dir, "media": media }))
    }

    fn preview(&self, name: &str) -> Result<serde_json::Value, api::HostError> {
        let preview = preview_medium(&self.d, &self.medium(name)?).map_err(api::HostError::from)?;
        Ok(serde_json::to_value(preview).unwrap_or_default())
    }

    fn install(&self, actor: &Actor, name: &str) -> Result<serde_json::Value, api::HostError> {
        let medium = self.medium(name)?;
        if self.meter.running.swap(true, Ordering::SeqCst) {
            return Err(Error::Agent(agent::Error::Busy).into());
        }
        if let Ok(mut m) = self.meter.medium.lock() {
            name.clone_into(&mut m);
        }
        self.meter.set_len(0);
        let result = import_medium(&self.d, &medium, actor, &self.meter);
        self.meter.running.store(false, Ordering::SeqCst);
        let (report, change) = result.map_err(api::HostError::from)?;
        Ok(import_json(&report, change.as_ref()))
    }

    fn progress(&self) -> serde_json::Value {
        serde_json::json!({
            "medium": self.meter.medium.lock().map(|m| m.clone()).unwrap_or_default(),
            "running": self.meter.running.load(Ordering::SeqCst),
            "total": self.meter.total.load(Ordering::Relaxed),
            "done": self.meter.done.load(Ordering::Relaxed),
        })
    }
}

/// Pulls from a hub or mirror and installs what is new.
pub(crate) fn sync_from(
    d: &DataDir,
    opts: &SyncOptions,
    progress: &dyn Progress,
) -> Result<(SyncReport, Option<Change>), Error> {
    let mut registry = registry(d, &Actor::cli())?;
    let report = agent::sync::sync(&agent_paths(d), opts, &mut registry, progress)?;
    Ok((report, registry.change))
}

/// While `spoke serve` runs: imports every medium that appears as a
/// directory under `dir` (where removable media are mounted), once each.
/// Directories still being written (`*.partial`) are skipped.
pub(crate) fn watch_media(d: DataDir, dir: PathBuf, every: Duration) {
    std::thread::spawn(move || {
        let mut seen: BTreeSet<(PathBuf, Vec<u8>)> = BTreeSet::new();
        loop {
            for medium in media_in(&dir) {
                let Some(info) = info_bytes(&medium) else {
                    continue;
                };
                if !seen.insert((medium.clone(), info)) {
                    continue;
                }
                tracing::info!("medium found at {}; verifying", medium.display());
                match import_medium(&d, &medium, &Actor::cli(), &()) {
                    Ok((r, change)) => tracing::info!(
                        "medium {}: {} installed, {} already present{}",
                        medium.display(),
                        r.installed.len(),
                        r.already_installed.len(),
                        change
                            .map(|c| format!("; change {} {}", c.id, c.status))
                            .unwrap_or_default()
                    ),
                    Err(e) => tracing::warn!("medium {} refused: {e}", medium.display()),
                }
            }
            std::thread::sleep(every);
        }
    });
}

/// A medium's `medium.json`, if it is a regular file of at most
/// [`bundles::medium::MAX_INFO_SIZE`] (never a FIFO, device or giant file).
fn info_bytes(medium: &Path) -> Option<Vec<u8>> {
    bundles::fsutil::read_regular(&medium.join("medium.json"), bundles::medium::MAX_INFO_SIZE).ok()
}

/// Directories under `dir` (and `dir` itself) that hold a medium.
fn media_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if dir.join("medium.json").is_file() {
        out.push(dir.to_path_buf());
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            let partial = p.extension().is_some_and(|x| x == "partial");
            if !partial && p.join("medium.json").is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// While `spoke serve` runs: pulls from the hub every `every`, backing off
/// (doubling the wait, up to a day) while it fails.
pub(crate) fn sync_every(d: DataDir, opts: SyncOptions, every: Duration) {
    std::thread::spawn(move || {
        let mut wait = every;
        loop {
            match sync_from(&d, &opts, &()) {
                Ok((r, change)) => {
                    tracing::info!(
                        "sync from {}: {} installed{}",
                        opts.url,
                        r.import.installed.len(),
                        change
                            .map(|c| format!("; change {} {}", c.id, c.status))
                            .unwrap_or_default()
                    );
                    wait = every;
                }
                Err(e) => {
                    tracing::warn!("sync from {} failed: {e}; next try in {wait:?}", opts.url);
                    wait = (wait * 2).min(Duration::from_secs(24 * 3600));
                }
            }
            std::thread::sleep(wait);
        }
    });
}
