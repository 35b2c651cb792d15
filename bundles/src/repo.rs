//! The hub's side of the TUF repository: create, publish, rotate keys, list.
//!
//! Layout (the same for a repository, a mirror and a sneakernet medium):
//! `metadata/` (TUF roles, consistent snapshots, the whole root chain),
//! `targets/` (bundle indexes named `HASH.NAME`), `chunks/` (the chunk store).
//! Writes are staged and then renamed into place, `timestamp.json` last, so a
//! reader sees the old repository or the new one.

use crate::build::ResolvedPack;
use crate::bundle_file::{read_bundle_file, StagedBundle};
use crate::chunks::ChunkStore;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::index::BundleKind;
use crate::keys::{KeyDir, ROLES};
use crate::manifest::{PackManifest, ProductManifest};
use crate::{block_on, Progress};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use tough::editor::signed::SignedRole;
use tough::editor::RepositoryEditor;
use tough::schema::{Hashes, KeyHolder, RoleKeys, RoleType, Root, Signed, Target};
use tough::{
    ExpirationEnforcement, FilesystemTransport, IntoVec, Repository, RepositoryLoader, TargetName,
};

/// Paths inside a repository or medium.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }
    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `metadata/`.
    pub fn metadata(&self) -> PathBuf {
        self.root.join("metadata")
    }
    /// `targets/`.
    pub fn targets(&self) -> PathBuf {
        self.root.join("targets")
    }
    /// The chunk store.
    pub fn chunks(&self) -> ChunkStore {
        ChunkStore::new(self.root.join("chunks"))
    }
    /// Where a (flat) target file lives under consistent snapshots: `targets/HASH.NAME`.
    pub fn target_file(&self, name: &str, sha256_hex: &str) -> PathBuf {
        self.targets()
            .join(format!("{sha256_hex}.{}", name.replace('/', "_")))
    }
}

/// How long each role's metadata stays valid after it is signed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Expiries {
    /// Days for root.json.
    pub root_days: i64,
    /// Days for targets.json.
    pub targets_days: i64,
    /// Days for snapshot.json.
    pub snapshot_days: i64,
    /// Days for timestamp.json.
    pub timestamp_days: i64,
}

impl Default for Expiries {
    fn default() -> Self {
        Expiries {
            root_days: 365,
            targets_days: 90,
            snapshot_days: 90,
            timestamp_days: 7,
        }
    }
}

/// An expiry `days` from now, in whole seconds: the TUF specification's date format
/// (`YYYY-MM-DDTHH:MM:SSZ`) has no fractional seconds, and python-tuf refuses them.
fn days_from_now(days: i64) -> Result<jiff::Timestamp> {
    let out_of_range =
        |e: jiff::Error| Error::invalid("expiry", format!("{days} days is out of range: {e}"));
    let t = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(days.saturating_mul(24)))
        .map_err(out_of_range)?;
    jiff::Timestamp::from_second(t.as_second()).map_err(out_of_range)
}

fn nz(v: u64) -> NonZeroU64 {
    NonZeroU64::new(v.max(1)).unwrap_or(NonZeroU64::MIN)
}

/// Options for `hub init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Number of root keys.
    pub root_keys: u64,
    /// Root signatures required.
    pub root_threshold: u64,
    /// Expiry per role.
    pub expiries: Expiries,
}

/// A published bundle as listed by the signed targets metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// TUF target name.
    pub target: String,
    /// Bundle kind.
    pub kind: BundleKind,
    /// Bundle name.
    pub name: String,
    /// Version.
    pub version: String,
    /// CID of the index.
    pub cid: String,
    /// Index length in bytes.
    pub length: u64,
    /// When the hub published it (RFC 3339).
    pub published: String,
}

impl Published {
    /// Reads the custom fields the hub writes on every target.
    pub fn from_target(name: &str, t: &Target) -> Result<Self> {
        let s = |k: &str| -> Result<String> {
            t.custom
                .get(k)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| Error::invalid(name, format!("target has no custom field {k:?}")))
        };
        let kind: BundleKind = serde_json::from_value(serde_json::Value::String(s("kind")?))
            .map_err(|e| Error::invalid(name, format!("unknown bundle kind: {e}")))?;
        let sha = hex::encode(t.hashes.sha256.as_ref() as &[u8]);
        let cid = s("cid")?;
        if cid != format!("sha256:{sha}") {
            return Err(Error::invalid(
                name,
                "target custom cid does not match its sha256",
            ));
        }
        Ok(Published {
            target: name.to_string(),
            kind,
            name: s("name")?,
            version: s("version")?,
            cid,
            length: t.length,
            published: s("published")?,
        })
    }

    /// Hex SHA-256 of the index.
    pub fn sha256(&self) -> &str {
        self.cid.trim_start_matches("sha256:")
    }
}

/// Creates a new repository with fresh keys.
pub fn init(repo: &Path, keys: &KeyDir, opts: &InitOptions) -> Result<Vec<(String, String)>> {
    keys.check_outside(repo)?;
    let layout = Layout::new(repo);
    if layout.metadata().join("root.json").exists() {
        return Err(Error::invalid(
            repo.display().to_string(),
            "already holds a repository; use `hub publish` or `hub rotate-key` to change it",
        ));
    }
    if opts.root_threshold == 0 || opts.root_threshold > opts.root_keys {
        return Err(Error::invalid(
            "--root-threshold",
            format!("must be between 1 and --root-keys ({})", opts.root_keys),
        ));
    }
    let mut root = Root {
        spec_version: "1.0.0".into(),
        consistent_snapshot: true,
        version: NonZeroU64::MIN,
        expires: days_from_now(opts.expiries.root_days)?,
        keys: HashMap::new(),
        roles: HashMap::new(),
        _extra: HashMap::new(),
    };
    let mut created = Vec::new();
    for role in ROLES {
        let n = if role == RoleType::Root {
            opts.root_keys
        } else {
            1
        };
        let threshold = if role == RoleType::Root {
            opts.root_threshold
        } else {
            1
        };
        let mut keyids = Vec::new();
        for _ in 0..n {
            let (id, key) = keys.generate(role)?;
            let decoded = key.key_id().map_err(|e| Error::Keys(e.to_string()))?;
            root.keys.insert(decoded.clone(), key);
            keyids.push(decoded);
            created.push((role.to_string(), id));
        }
        root.roles.insert(
            role,
            RoleKeys {
                keyids,
                threshold: nz(threshold),
                _extra: HashMap::new(),
            },
        );
    }
    let staging = tempfile::tempdir_in(ensure_dir(repo)?)
        .map_err(Error::io("create staging directory in", repo))?;
    let sources = keys.sources()?;
    let signed_root = block_on(async {
        SignedRole::new(
            root.clone(),
            &KeyHolder::Root(root),
            &sources,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .await
        .map_err(|e| Error::Keys(e.to_string()))
    })?;
    let root_path = staging.path().join("1.root.json");
    fsutil::atomic_write(&root_path, signed_root.buffer())?;
    block_on(async {
        let mut editor = RepositoryEditor::new(&root_path).await.map_err(meta_err)?;
        set_versions(&mut editor, 1, 1, 1, &opts.expiries)?;
        let signed = editor.sign(&sources).await.map_err(sign_err)?;
        signed.write(staging.path()).await.map_err(meta_err)
    })?;
    commit_metadata(staging.path(), &layout)?;
    std::fs::create_dir_all(layout.targets()).map_err(Error::io("create", layout.targets()))?;
    Ok(created)
}

fn ensure_dir(p: &Path) -> Result<&Path> {
    std::fs::create_dir_all(p).map_err(Error::io("create directory", p))?;
    Ok(p)
}

fn meta_err(e: tough::error::Error) -> Error {
    Error::Metadata(e.to_string())
}

fn sign_err(e: tough::error::Error) -> Error {
    match e {
        tough::error::Error::SigningKeysNotFound { role } => Error::Keys(format!(
            "no key in the key directory can sign the {role} role; restore the key or run `hub rotate-key --role {role}`"
        )),
        other => Error::Keys(other.to_string()),
    }
}

fn set_versions(
    editor: &mut RepositoryEditor,
    targets: u64,
    snapshot: u64,
    timestamp: u64,
    exp: &Expiries,
) -> Result<()> {
    editor
        .targets_version(nz(targets))
        .map_err(meta_err)?
        .targets_expires(days_from_now(exp.targets_days)?)
        .map_err(meta_err)?;
    editor
        .snapshot_version(nz(snapshot))
        .snapshot_expires(days_from_now(exp.snapshot_days)?)
        .timestamp_version(nz(timestamp))
        .timestamp_expires(days_from_now(exp.timestamp_days)?);
    Ok(())
}

/// Moves staged metadata into `metadata/`: versioned files first, then `root.json`, `timestamp.json` last.
fn commit_metadata(staging: &Path, layout: &Layout) -> Result<()> {
    let meta = layout.metadata();
    std::fs::create_dir_all(&meta).map_err(Error::io("create", &meta))?;
    let mut names: Vec<String> = std::fs::read_dir(staging)
        .map_err(Error::io("list", staging))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort_by_key(|n| (n == "timestamp.json", n.clone()));
    let newest_root = names
        .iter()
        .filter_map(|n| {
            Some((
                n.strip_suffix(".root.json")?.parse::<u64>().ok()?,
                n.clone(),
            ))
        })
        .max();
    for n in &names {
        if n == "timestamp.json" {
            if let Some((_, root)) = &newest_root {
                let bytes =
                    std::fs::read(meta.join(root)).map_err(Error::io("read", meta.join(root)))?;
                fsutil::atomic_write(&meta.join("root.json"), &bytes)?;
            }
        }
        let from = staging.join(n);
        let f = std::fs::File::open(&from).map_err(Error::io("open", &from))?;
        f.sync_all().map_err(Error::io("fsync", &from))?;
        std::fs::rename(&from, meta.join(n)).map_err(Error::io("move metadata into", &meta))?;
    }
    fsutil::sync_dir(&meta)
}

/// Loads the hub's own repository, trusting its newest root (expiry not enforced: the hub re-signs).
pub fn load(repo: &Path) -> Result<Repository> {
    let layout = Layout::new(repo);
    let root_path = layout.metadata().join("root.json");
    let root = std::fs::read(&root_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound(format!(
                "{} is not a repository (no metadata/root.json); run `hub init` first",
                repo.display()
            ))
        } else {
            Error::Io {
                action: "read",
                path: root_path.clone(),
                source: e,
            }
        }
    })?;
    let meta_url = dir_url(&layout.metadata())?;
    let targets_url = dir_url(&layout.targets())?;
    block_on(async {
        RepositoryLoader::new(&root, meta_url, targets_url)
            .transport(FilesystemTransport)
            .expiration_enforcement(ExpirationEnforcement::Unsafe)
            .load()
            .await
            .map_err(meta_err)
    })
}

/// A `file://` URL for a directory (with a trailing slash).
pub fn dir_url(dir: &Path) -> Result<url::Url> {
    let abs = std::path::absolute(dir).map_err(Error::io("resolve", dir))?;
    url::Url::from_directory_path(&abs).map_err(|_| {
        Error::invalid(
            abs.display().to_string(),
            "cannot be expressed as a file URL",
        )
    })
}

/// Every bundle the signed targets metadata lists, sorted by target name.
pub fn published(repo: &Repository) -> Result<Vec<Published>> {
    let mut out = repo
        .targets()
        .signed
        .targets_iter()
        .map(|(name, t)| Published::from_target(name.raw(), t))
        .collect::<Result<Vec<_>>>()?;
    out.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(out)
}

/// Adds bundle files to the repository and re-signs targets, snapshot and timestamp.
pub fn publish(
    repo: &Path,
    keys: &KeyDir,
    files: &[PathBuf],
    exp: &Expiries,
    progress: &dyn Progress,
) -> Result<Vec<Published>> {
    keys.check_outside(repo)?;
    let layout = Layout::new(repo);
    let loaded = load(repo)?;
    let store = layout.chunks();
    progress.set_len(files.len() as u64);
    let mut staged: Vec<StagedBundle> = Vec::new();
    for f in files {
        staged.push(read_bundle_file(f, &store)?);
        progress.inc(1);
    }
    // Chunks were written unsynced; make them durable before metadata can name them.
    fsutil::sync_filesystem(layout.root())?;
    let now = jiff::Timestamp::now().to_string();
    let mut added = Vec::new();
    for s in &staged {
        let name = s.index.target_name();
        let sha = s.cid.trim_start_matches("sha256:").to_string();
        fsutil::atomic_write(&layout.target_file(&name, &sha), &s.index_bytes)?;
        added.push(Published {
            target: name,
            kind: s.index.kind,
            name: s.index.name.clone(),
            version: s.index.version.to_string(),
            cid: s.cid.clone(),
            length: s.index_bytes.len() as u64,
            published: now.clone(),
        });
    }
    resign(&layout, keys, loaded, None, exp, |editor| {
        for p in &added {
            let sha =
                hex::decode(p.sha256()).map_err(|e| Error::invalid(&p.target, e.to_string()))?;
            let mut custom = HashMap::new();
            for (k, v) in [
                ("kind", p.kind.as_str()),
                ("name", &p.name),
                ("version", &p.version),
                ("cid", &p.cid),
                ("published", &p.published),
            ] {
                custom.insert(k.to_string(), serde_json::Value::String(v.to_string()));
            }
            let target = Target {
                length: p.length,
                hashes: Hashes {
                    sha256: sha.into(),
                    _extra: HashMap::new(),
                },
                custom,
                _extra: HashMap::new(),
            };
            let tn = TargetName::new(p.target.clone())
                .map_err(|e| Error::invalid(&p.target, e.to_string()))?;
            editor.add_target(tn, target).map_err(meta_err)?;
        }
        Ok(())
    })?;
    Ok(added)
}

/// Re-signs targets, snapshot and timestamp (bumping each version) after `edit`,
/// optionally under a new root whose file is `new_root`.
fn resign(
    layout: &Layout,
    keys: &KeyDir,
    loaded: Repository,
    new_root: Option<&Path>,
    exp: &Expiries,
    edit: impl FnOnce(&mut RepositoryEditor) -> Result<()>,
) -> Result<()> {
    let tv = loaded.targets().signed.version.get() + 1;
    let sv = loaded.snapshot().signed.version.get() + 1;
    let ts = loaded.timestamp().signed.version.get() + 1;
    let staging = tempfile::tempdir_in(layout.root())
        .map_err(Error::io("create staging directory in", layout.root()))?;
    let root_path = match new_root {
        Some(p) => p.to_path_buf(),
        None => layout.metadata().join("root.json"),
    };
    let sources = keys.sources()?;
    block_on(async {
        let mut editor = RepositoryEditor::from_repo(&root_path, loaded)
            .await
            .map_err(meta_err)?;
        edit(&mut editor)?;
        set_versions(&mut editor, tv, sv, ts, exp)?;
        let signed = editor.sign(&sources).await.map_err(sign_err)?;
        signed.write(staging.path()).await.map_err(meta_err)
    })?;
    // The editor writes the current root under its versioned name; it is already in place.
    if new_root.is_none() {
        for ent in std::fs::read_dir(staging.path()).map_err(Error::io("list", staging.path()))? {
            let ent = ent.map_err(Error::io("list", staging.path()))?;
            if ent
                .file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(".root.json"))
            {
                std::fs::remove_file(ent.path()).map_err(Error::io("remove", ent.path()))?;
            }
        }
    }
    commit_metadata(staging.path(), layout)
}

/// What a key rotation did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rotation {
    /// Role rotated.
    pub role: String,
    /// New root version.
    pub root_version: u64,
    /// Key ids removed.
    pub retired: Vec<String>,
    /// Key ids added.
    pub added: Vec<String>,
}

/// Replaces the keys of `role` (the lost ones if any are lost, otherwise all), writes a new
/// root signed by a threshold of the old root keys and of the new ones, and re-signs the rest.
pub fn rotate_key(repo: &Path, keys: &KeyDir, role: RoleType, exp: &Expiries) -> Result<Rotation> {
    keys.check_outside(repo)?;
    let layout = Layout::new(repo);
    let loaded = load(repo)?;
    let old: Signed<Root> = loaded.root().clone();
    let mut new = old.signed.clone();
    new.version = nz(old.signed.version.get() + 1);
    new.expires = days_from_now(exp.root_days)?;
    let present = keys.keyids(role)?;
    let current: Vec<String> = new
        .roles
        .get(&role)
        .map(|rk| {
            rk.keyids
                .iter()
                .map(|k| hex::encode(k.as_ref() as &[u8]))
                .collect()
        })
        .unwrap_or_default();
    let lost: Vec<String> = current
        .iter()
        .filter(|k| !present.contains(*k))
        .cloned()
        .collect();
    let replace = if lost.is_empty() {
        current.clone()
    } else {
        lost
    };
    let mut added = Vec::new();
    let role_keys = new
        .roles
        .get_mut(&role)
        .ok_or_else(|| Error::Keys(format!("the root has no {role} role")))?;
    role_keys
        .keyids
        .retain(|k| !replace.contains(&hex::encode(k.as_ref() as &[u8])));
    let mut fresh = Vec::new();
    for _ in 0..replace.len() {
        let (id, key) = keys.generate(role)?;
        let decoded = key.key_id().map_err(|e| Error::Keys(e.to_string()))?;
        fresh.push((decoded, key));
        added.push(id);
    }
    for (decoded, key) in fresh {
        role_keys.keyids.push(decoded.clone());
        new.keys.insert(decoded, key);
    }
    let still_used: std::collections::HashSet<_> = new
        .roles
        .values()
        .flat_map(|rk| rk.keyids.iter().cloned())
        .collect();
    new.keys.retain(|k, _| still_used.contains(k));

    let sources = keys.sources()?;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let signed = block_on(async {
        let by_new = SignedRole::new(new.clone(), &KeyHolder::Root(new.clone()), &sources, &rng)
            .await
            .map_err(sign_err)?;
        let by_old = SignedRole::new(
            new.clone(),
            &KeyHolder::Root(old.signed.clone()),
            &sources,
            &rng,
        )
        .await
        .map_err(sign_err)?;
        by_new
            .add_old_signatures(by_old.signed().signatures.clone())
            .map_err(meta_err)
    })?;
    for (which, trusted) in [("old", &old.signed), ("new", &new)] {
        if trusted.verify_role(signed.signed()).is_err() {
            let threshold = trusted
                .roles
                .get(&RoleType::Root)
                .map(|r| r.threshold.get())
                .unwrap_or(1);
            return Err(Error::Keys(format!(
                "the new root needs {threshold} signature(s) from the {which} root keys, but the key directory {} does not hold enough of them",
                keys.path().display()
            )));
        }
    }
    let staging =
        tempfile::tempdir_in(repo).map_err(Error::io("create staging directory in", repo))?;
    let root_file = staging.path().join(format!("{}.root.json", new.version));
    fsutil::atomic_write(&root_file, signed.buffer())?;
    resign(&layout, keys, loaded, Some(&root_file), exp, |_| Ok(()))?;
    for id in &replace {
        keys.retire(role, id)?;
    }
    Ok(Rotation {
        role: role.to_string(),
        root_version: new.version.get(),
        retired: replace,
        added,
    })
}

/// Resolves each pack a product manifest names to the highest published version
/// that satisfies its range, checking the pack type. Missing required packs are an error.
pub fn resolve_product(repo: &Repository, manifest: &ProductManifest) -> Result<Vec<ResolvedPack>> {
    let all = published(repo)?;
    let mut out = Vec::new();
    for req in &manifest.packs {
        let best = all
            .iter()
            .filter(|p| p.kind == BundleKind::Pack && p.name == req.name)
            .filter_map(|p| semver::Version::parse(&p.version).ok().map(|v| (v, p)))
            .filter(|(v, _)| req.version.matches(v))
            .max_by(|a, b| a.0.cmp(&b.0));
        match best {
            Some((_, p)) => {
                let index = read_index(repo, p)?;
                let pm: PackManifest = serde_json::from_value(index.manifest.clone())
                    .map_err(|e| Error::invalid(&p.target, format!("pack manifest: {e}")))?;
                if pm.pack_type != req.pack_type {
                    return Err(Error::invalid(
                        &req.name,
                        format!("the product expects a {:?} pack but {} is {:?}", req.pack_type, p.target, pm.pack_type),
                    ));
                }
                out.push(ResolvedPack {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    cid: p.cid.clone(),
                    pack_type: pm.pack_type,
                    required: req.required,
                });
            }
            None if req.required => {
                return Err(Error::NotFound(format!(
                    "required pack {} {} is not published in this repository; build and publish it first",
                    req.name, req.version
                )))
            }
            None => tracing::warn!(pack = %req.name, range = %req.version, "optional pack not published; left out"),
        }
    }
    Ok(out)
}

/// Reads and verifies a published index from the hub's own repository.
pub fn read_index(repo: &Repository, p: &Published) -> Result<crate::index::BundleIndex> {
    let tn =
        TargetName::new(p.target.clone()).map_err(|e| Error::invalid(&p.target, e.to_string()))?;
    let bytes = block_on(async {
        let stream = repo.read_target(&tn).await.map_err(meta_err)?;
        match stream {
            Some(s) => s.into_vec().await.map_err(meta_err),
            None => Err(Error::NotFound(format!(
                "target {} is listed but missing",
                p.target
            ))),
        }
    })?;
    crate::index::BundleIndex::parse(&bytes, &p.target)
}
