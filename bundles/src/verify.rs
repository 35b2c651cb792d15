//! The spoke's verification path, shared by USB media and pull sync.
//!
//! [`verify_repository`] loads a repository (a medium directory) with the
//! spoke's trusted state: it follows root rotation, enforces thresholds,
//! refuses rollback of any role (across media too, because the last trusted
//! timestamp, snapshot and targets travel in [`TrustState`]), and applies the
//! expiry policy documented on [`Policy`]. Nothing is written: the caller gets
//! the new trust state and commits it only after its own work succeeded.

use crate::chunks::{self, ChunkStore};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::index::{sha256_hex, BundleIndex, MAX_INDEX_SIZE};
use crate::repo::{dir_url, Layout, Published};
use crate::{block_on, Progress};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use tough::schema::{Role, RoleType, Root, Signed};
use tough::{ExpirationEnforcement, FilesystemTransport, Limits, Repository, RepositoryLoader};

/// Format tag of the persisted trust state.
pub const TRUST_FORMAT: &str = "eurocomply-trust/1";

/// What a spoke trusts: the newest root, the last accepted timestamp, snapshot
/// and targets (for rollback protection), and a clock floor taken from signed data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustState {
    /// Always [`TRUST_FORMAT`].
    pub format: String,
    /// The newest trusted root (signed JSON).
    pub root: serde_json::Value,
    /// Last accepted timestamp role.
    pub timestamp: Option<serde_json::Value>,
    /// Last accepted snapshot role.
    pub snapshot: Option<serde_json::Value>,
    /// Last accepted targets role.
    pub targets: Option<serde_json::Value>,
    /// The newest signed publication time seen; the spoke's notion of now never falls below it.
    pub clock_floor: Option<jiff::Timestamp>,
}

impl TrustState {
    /// A fresh trust state from a root.json the operator got out of band. The root must be
    /// self-signed to its own threshold.
    pub fn from_root(bytes: &[u8], origin: &str) -> Result<Self> {
        let root: Signed<Root> = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(origin, format!("not a TUF root.json: {e}")))?;
        if let Some(err) = judge(&root.signed, &root, RoleType::Root) {
            return Err(err);
        }
        if root.signed.verify_role(&root).is_err() {
            return Err(Error::invalid(
                origin,
                "the root does not verify against itself",
            ));
        }
        Ok(TrustState {
            format: TRUST_FORMAT.into(),
            root: serde_json::from_slice(bytes)
                .map_err(|e| Error::invalid(origin, e.to_string()))?,
            timestamp: None,
            snapshot: None,
            targets: None,
            clock_floor: None,
        })
    }

    /// Reads a persisted trust state.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(Error::io("read trust state", path))?;
        let origin = path.display().to_string();
        #[derive(Deserialize)]
        struct Head {
            format: String,
        }
        let head: Head =
            serde_json::from_slice(&bytes).map_err(|e| Error::invalid(&origin, e.to_string()))?;
        if head.format != TRUST_FORMAT {
            return Err(Error::UnknownFormat {
                what: origin,
                found: head.format,
                expected: TRUST_FORMAT,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| Error::invalid(origin, e.to_string()))
    }

    /// Writes the trust state atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::invalid("trust state", e.to_string()))?;
        fsutil::atomic_write(path, &bytes)
    }

    /// The trusted root.
    pub fn root(&self) -> Result<Signed<Root>> {
        serde_json::from_value(self.root.clone())
            .map_err(|e| Error::invalid("trusted root", e.to_string()))
    }
}

/// Expiry and size policy.
///
/// *Trusted time* is `max(system clock, clock floor)`, where the clock floor is
/// the newest `published` time found in any targets metadata this spoke has
/// accepted. A spoke whose clock was reset to 1970 therefore still refuses
/// metadata that expired before the last publication it saw, and a floor is
/// only ever raised by signed data, never by the (possibly wrong) local clock.
/// Root, targets and snapshot must not have expired at trusted time. The
/// timestamp role, which the hub re-signs often, gets `timestamp_grace` on
/// top of its expiry: media travel for days, so [`Policy::sneakernet`] allows
/// 30 days; [`Policy::online`] allows none.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Extra validity granted to the timestamp role.
    pub timestamp_grace: jiff::SignedDuration,
    /// Largest accepted bundle payload (plain bytes).
    pub max_payload: u64,
}

impl Policy {
    /// For sneakernet media.
    pub fn sneakernet() -> Self {
        Policy {
            timestamp_grace: jiff::SignedDuration::from_hours(30 * 24),
            max_payload: 64 * 1024 * 1024 * 1024,
        }
    }

    /// For pull sync.
    pub fn online() -> Self {
        Policy {
            timestamp_grace: jiff::SignedDuration::ZERO,
            max_payload: 64 * 1024 * 1024 * 1024,
        }
    }
}

/// A repository whose metadata verified.
pub struct Verified {
    /// The trust state to commit once the caller's work succeeded.
    pub new_state: TrustState,
    /// Every bundle the targets metadata lists.
    pub bundles: Vec<Published>,
    /// The trusted time used.
    pub trusted_now: jiff::Timestamp,
    layout: Layout,
}

fn role_value<T: Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| Error::invalid("metadata", e.to_string()))
}

/// Loads and verifies the repository at `dir` against `trust` under `policy`.
pub fn verify_repository(dir: &Path, trust: &TrustState, policy: &Policy) -> Result<Verified> {
    let layout = Layout::new(dir);
    if std::fs::symlink_metadata(layout.metadata().join("timestamp.json")).is_err() {
        return Err(Error::Truncated {
            what: format!("{}/metadata/timestamp.json", dir.display()),
            detail: "not a repository or medium (missing metadata)".into(),
        });
    }
    let limits = Limits {
        max_root_size: MAX_ROOT_SIZE,
        max_targets_size: 32 * 1024 * 1024,
        max_timestamp_size: 64 * 1024,
        max_snapshot_size: 1024 * 1024,
        max_root_updates: 1024,
    };
    let metadata = copy_metadata(&layout.metadata(), &limits)?;
    let datastore =
        tempfile::tempdir().map_err(Error::io("create datastore", std::env::temp_dir()))?;
    for (name, v) in [
        ("timestamp.json", &trust.timestamp),
        ("snapshot.json", &trust.snapshot),
        ("targets.json", &trust.targets),
    ] {
        if let Some(v) = v {
            let bytes = serde_json::to_vec(v).map_err(|e| Error::invalid(name, e.to_string()))?;
            std::fs::write(datastore.path().join(name), bytes)
                .map_err(Error::io("write", datastore.path()))?;
        }
    }
    let root_bytes = serde_json::to_vec(&trust.root)
        .map_err(|e| Error::invalid("trusted root", e.to_string()))?;
    let meta_url = dir_url(metadata.path())?;
    let targets_url = dir_url(&layout.targets())?;
    let loaded = block_on(async {
        RepositoryLoader::new(&root_bytes, meta_url, targets_url)
            .transport(FilesystemTransport)
            .datastore(datastore.path())
            .limits(limits)
            .expiration_enforcement(ExpirationEnforcement::Unsafe)
            .load()
            .await
    });
    let repo = match loaded {
        Ok(r) => r,
        Err(e) => return Err(classify(e, &layout, trust)),
    };
    let bundles = crate::repo::published(&repo)?;
    let newest_publication = bundles
        .iter()
        .filter_map(|b| b.published.parse::<jiff::Timestamp>().ok())
        .max();
    let trusted_now = [Some(jiff::Timestamp::now()), trust.clock_floor]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or_else(jiff::Timestamp::now);
    check_expiry(&repo, trusted_now, policy)?;
    let clock_floor = [trust.clock_floor, newest_publication]
        .into_iter()
        .flatten()
        .max();
    let new_state = TrustState {
        format: TRUST_FORMAT.into(),
        root: role_value(repo.root())?,
        timestamp: Some(role_value(repo.timestamp())?),
        snapshot: Some(role_value(repo.snapshot())?),
        targets: Some(role_value(repo.targets())?),
        clock_floor,
    };
    Ok(Verified {
        new_state,
        bundles,
        trusted_now,
        layout,
    })
}

/// The largest root metadata file accepted.
const MAX_ROOT_SIZE: u64 = 1024 * 1024;

/// Copies the metadata files of a medium or mirror into a private directory
/// through [`fsutil::read_regular`], each capped at its role's limit, so the
/// TUF client never opens a file on the medium itself (a FIFO, a device or a
/// link there is refused here, by name). Files that are not TUF metadata are
/// not read.
fn copy_metadata(dir: &Path, limits: &Limits) -> Result<tempfile::TempDir> {
    let copy =
        tempfile::tempdir().map_err(Error::io("create metadata copy", std::env::temp_dir()))?;
    for entry in std::fs::read_dir(dir).map_err(Error::io("list", dir))? {
        let entry = entry.map_err(Error::io("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let cap = if name == "timestamp.json" {
            limits.max_timestamp_size
        } else if name.ends_with(".root.json") {
            limits.max_root_size
        } else if name.ends_with(".snapshot.json") {
            limits.max_snapshot_size
        } else if name.ends_with(".targets.json") {
            limits.max_targets_size
        } else {
            continue;
        };
        let bytes = fsutil::read_regular(&entry.path(), cap)?;
        let to = copy.path().join(name);
        std::fs::write(&to, bytes).map_err(Error::io("write", &to))?;
    }
    Ok(copy)
}

fn check_expiry(repo: &Repository, now: jiff::Timestamp, policy: &Policy) -> Result<()> {
    let expired = |role: &str, expires: jiff::Timestamp| Error::Expired {
        role: role.into(),
        expires: expires.to_string(),
        now: now.to_string(),
    };
    let checks = [
        ("root", repo.root().signed.expires()),
        ("targets", repo.targets().signed.expires()),
        ("snapshot", repo.snapshot().signed.expires()),
    ];
    for (role, expires) in checks {
        if expires < now {
            return Err(expired(role, expires));
        }
    }
    let ts = repo.timestamp().signed.expires();
    let limit = ts.checked_add(policy.timestamp_grace).unwrap_or(ts);
    if limit < now {
        return Err(expired("timestamp", ts));
    }
    Ok(())
}

/// Maps tough's errors to ours, diagnosing signature failures precisely.
fn classify(e: tough::error::Error, layout: &Layout, trust: &TrustState) -> Error {
    use tough::error::Error as T;
    match e {
        T::VerifyMetadata { role, .. } => diagnose_signatures(layout, trust, role)
            .unwrap_or_else(|| Error::Metadata(format!("{role} metadata failed verification"))),
        T::VerifyTrustedMetadata { .. } => Error::Metadata(
            "the spoke's trusted root does not verify; re-initialise its trust".into(),
        ),
        T::OlderMetadata {
            role,
            current_version,
            new_version,
            ..
        } => Error::Rollback {
            role: role.to_string(),
            trusted: current_version,
            offered: new_version,
        },
        T::OlderSnapshotInTimestamp {
            snapshot_new,
            snapshot_old,
            ..
        } => Error::Rollback {
            role: "snapshot".into(),
            trusted: snapshot_old,
            offered: snapshot_new,
        },
        T::SnapshotRoleRollback {
            role,
            old_role_version,
            new_role_version,
            ..
        } => Error::Rollback {
            role,
            trusted: old_role_version,
            offered: new_role_version,
        },
        e @ (T::HashMismatch { .. }
        | T::VersionMismatch { .. }
        | T::MetaMissing { .. }
        | T::SnapshotRoleMissing { .. }
        | T::SnapshotTargetsMetaMissing { .. }
        | T::TimestampMetaLength { .. }
        | T::MissingSnapshotMeta { .. }) => Error::MixAndMatch {
            detail: e.to_string(),
        },
        T::MaxSizeExceeded {
            max_size,
            specifier,
            ..
        } => Error::TooLarge {
            what: format!("metadata ({specifier})"),
            size: max_size + 1,
            max: max_size,
        },
        T::SpecVersion { given, .. } => Error::UnknownFormat {
            what: "TUF metadata".into(),
            found: given,
            expected: "1.0.x",
        },
        T::Transport { url, source, .. } => {
            // tough reports a metadata file whose hash differs from what the referring role
            // promised as a transport error wrapping `HashMismatch`.
            let mut cause: Option<&(dyn std::error::Error + 'static)> =
                std::error::Error::source(&source);
            while let Some(c) = cause {
                if let Some(T::HashMismatch { .. }) = c.downcast_ref::<T>() {
                    return Error::MixAndMatch {
                        detail: format!("{url}: {c}"),
                    };
                }
                cause = c.source();
            }
            Error::Truncated {
                what: url.to_string(),
                detail: source.to_string(),
            }
        }
        T::ParseMetadata { role, source, .. } => {
            Error::invalid(format!("{role} metadata"), source.to_string())
        }
        other => Error::Metadata(other.to_string()),
    }
}

fn read_meta<T: serde::de::DeserializeOwned>(layout: &Layout, name: &str) -> Option<Signed<T>> {
    let bytes = fsutil::read_regular(&layout.metadata().join(name), MAX_ROOT_SIZE).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Tells a bad signature from an unknown key from a missed threshold, for the role that failed.
fn diagnose_signatures(layout: &Layout, trust: &TrustState, role: RoleType) -> Option<Error> {
    let mut root = trust.root().ok()?;
    loop {
        let next = format!("{}.root.json", root.signed.version.get() + 1);
        let Some(new) = read_meta::<Root>(layout, &next) else {
            break;
        };
        if role == RoleType::Root {
            if let Some(err) = judge(&root.signed, &new, RoleType::Root)
                .or_else(|| judge(&new.signed, &new, RoleType::Root))
            {
                return Some(err);
            }
        }
        root = new;
    }
    let ts = read_meta::<tough::schema::Timestamp>(layout, "timestamp.json")?;
    if role == RoleType::Timestamp {
        return judge(&root.signed, &ts, role);
    }
    let sv = ts.signed.meta.get("snapshot.json")?.version.get();
    let snap = read_meta::<tough::schema::Snapshot>(layout, &format!("{sv}.snapshot.json"))?;
    if role == RoleType::Snapshot {
        return judge(&root.signed, &snap, role);
    }
    let tv = snap.signed.meta.get("targets.json")?.version.get();
    let targets = read_meta::<tough::schema::Targets>(layout, &format!("{tv}.targets.json"))?;
    judge(&root.signed, &targets, role)
}

fn judge<T: Role + Serialize + Clone>(
    root: &Root,
    signed: &Signed<T>,
    role: RoleType,
) -> Option<Error> {
    let keys = root.roles.get(&role)?;
    // tough verifies signatures only through `verify_role`, so check each signature
    // alone against a copy of the root that asks for exactly that one key.
    let verifies_alone = |sig: &tough::schema::Signature| {
        let mut single = root.clone();
        single.roles.insert(
            role,
            tough::schema::RoleKeys {
                keyids: vec![sig.keyid.clone()],
                threshold: std::num::NonZeroU64::MIN,
                _extra: Default::default(),
            },
        );
        let alone = Signed {
            signed: signed.signed.clone(),
            signatures: vec![sig.clone()],
        };
        single.verify_role(&alone).is_ok()
    };
    let mut valid = 0u64;
    let mut unknown = None;
    for sig in &signed.signatures {
        let keyid = hex::encode(sig.keyid.as_ref() as &[u8]);
        match root
            .keys
            .get(&sig.keyid)
            .filter(|_| keys.keyids.contains(&sig.keyid))
        {
            None => unknown = unknown.or(Some(keyid)),
            Some(_) if verifies_alone(sig) => valid += 1,
            Some(_) => {
                return Some(Error::BadSignature {
                    role: role.to_string(),
                    keyid,
                })
            }
        }
    }
    if valid >= keys.threshold.get() {
        return None;
    }
    Some(match unknown.filter(|_| valid == 0) {
        Some(keyid) => Error::UnknownKey {
            role: role.to_string(),
            keyid,
        },
        None => Error::ThresholdNotMet {
            role: role.to_string(),
            valid,
            threshold: keys.threshold.get(),
        },
    })
}

impl Verified {
    /// The repository or medium directory.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Whether the bundle's index file is present (a medium may carry a subset).
    pub fn has_index(&self, p: &Published) -> bool {
        self.layout.target_file(&p.target, p.sha256()).is_file()
    }

    /// Reads the index of `p`, checks its length and digest against the signed targets, then parses it.
    pub fn read_index(&self, p: &Published) -> Result<(BundleIndex, Vec<u8>)> {
        let path = self.layout.target_file(&p.target, p.sha256());
        let cap = p.length.min(MAX_INDEX_SIZE);
        let bytes = fsutil::read_regular(&path, cap).map_err(|e| match e {
            Error::Truncated { detail, .. } => Error::Truncated {
                what: format!("index {}", p.target),
                detail: format!("{}: {detail}", path.display()),
            },
            other => other,
        })?;
        if bytes.len() as u64 > p.length || p.length > MAX_INDEX_SIZE {
            return Err(Error::TooLarge {
                what: format!("index {}", p.target),
                size: bytes.len() as u64,
                max: cap,
            });
        }
        if (bytes.len() as u64) < p.length {
            return Err(Error::Truncated {
                what: format!("index {}", p.target),
                detail: format!("{} of {} bytes", bytes.len(), p.length),
            });
        }
        let found = sha256_hex(&bytes);
        if found != p.sha256() {
            return Err(Error::DigestMismatch {
                what: format!("index {}", p.target),
                expected: p.sha256().into(),
                found,
            });
        }
        let index = BundleIndex::parse(&bytes, &p.target)?;
        if index.kind != p.kind || index.name != p.name || index.version.to_string() != p.version {
            return Err(Error::MixAndMatch {
                detail: format!(
                    "index {} describes {} {} {}",
                    p.target,
                    index.kind.as_str(),
                    index.name,
                    index.version
                ),
            });
        }
        Ok((index, bytes))
    }
}

/// Where [`assemble`] finds chunks, in order of preference.
pub struct ChunkSources<'a> {
    /// Chunks the spoke already installed (read only).
    pub installed: &'a ChunkStore,
    /// Chunks verified earlier in this import or in an interrupted one
    /// (written here when taken from the medium; re-checked before use).
    pub staged: &'a ChunkStore,
    /// The medium or mirror.
    pub medium: &'a ChunkStore,
}

impl ChunkSources<'_> {
    fn fetch(&self, r: &crate::index::ChunkRef, plain: &mut Vec<u8>) -> Result<()> {
        if self.installed.contains(&r.id) {
            return chunks::open(r, &self.installed.get(&r.id, r.stored)?, plain);
        }
        if self.staged.contains(&r.id) {
            // Staged by an earlier, interrupted run: use it if it still verifies,
            // otherwise drop it and take the chunk from the medium again.
            match chunks::open(r, &self.staged.get(&r.id, r.stored)?, plain) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!("discarding staged chunk {}: {e}", r.id);
                    plain.clear();
                    let path = self.staged.path(&r.id);
                    std::fs::remove_file(&path).map_err(Error::io("remove", &path))?;
                }
            }
        }
        let stored = self.medium.get(&r.id, r.stored)?;
        chunks::open(r, &stored, plain)?;
        self.staged.put(&r.id, &stored)
    }
}

/// Payload bytes written before their writeback is started (see
/// [`fsutil::start_writeback`]).
const WRITEBACK_STRETCH: u64 = 32 << 20;

/// The payload file being written, with how far its writeback was started.
struct Sink<'a> {
    out: std::io::BufWriter<std::fs::File>,
    path: &'a Path,
    written: u64,
    kicked: u64,
    progress: &'a dyn Progress,
}

impl Sink<'_> {
    fn write(&mut self, plains: &[Vec<u8>]) -> Result<()> {
        for p in plains {
            self.out
                .write_all(p)
                .map_err(Error::io("write", self.path))?;
            self.progress.inc(p.len() as u64);
            self.written += p.len() as u64;
        }
        if self.written - self.kicked >= WRITEBACK_STRETCH {
            self.out.flush().map_err(Error::io("write", self.path))?;
            fsutil::start_writeback(self.out.get_ref(), self.kicked, self.written - self.kicked);
            self.kicked = self.written;
        }
        Ok(())
    }
}

/// Reassembles a bundle's payload into `dest` (a fresh directory inside a staging area),
/// verifying every chunk before it is decompressed. Files are not fsynced one by one:
/// the caller syncs the staging filesystem once before committing (their writeback is
/// started as they are written). Chunks come from `sources`, so an
/// offline delta that lacks the chunks the spoke already holds still assembles.
pub fn assemble(
    index: &BundleIndex,
    sources: &ChunkSources<'_>,
    dest: &Path,
    policy: &Policy,
    progress: &dyn Progress,
) -> Result<()> {
    let total = index.payload_size();
    if total > policy.max_payload {
        return Err(Error::TooLarge {
            what: format!("payload of {}", index.name),
            size: total,
            max: policy.max_payload,
        });
    }
    progress.set_len(total);
    std::fs::create_dir_all(dest).map_err(Error::io("create", dest))?;
    for entry in &index.entries {
        let rel = fsutil::safe_relative(&entry.path)?;
        let path = dest.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io("create", parent))?;
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(Error::io("create", &path))?;
        let mut sink = Sink {
            out: std::io::BufWriter::with_capacity(1 << 20, file),
            path: &path,
            written: 0,
            kicked: 0,
            progress,
        };
        // Each batch is fetched (read, verified, decompressed on every core)
        // while the one before it is written.
        let fetch = |batch: &[crate::index::ChunkRef]| {
            batch
                .par_iter()
                .map(|r| {
                    let mut plain = Vec::with_capacity(r.size as usize);
                    sources.fetch(r, &mut plain)?;
                    Ok(plain)
                })
                .collect::<Result<Vec<Vec<u8>>>>()
        };
        let mut ready = Vec::new();
        for batch in entry.chunks.chunks(32) {
            let (next, wrote) = rayon::join(|| fetch(batch), || sink.write(&ready));
            wrote?;
            ready = next?;
        }
        sink.write(&ready)?;
        sink.out.flush().map_err(Error::io("write", &path))?;
        fsutil::start_writeback(sink.out.get_ref(), sink.kicked, 0);
        if entry.mode == 0o755 {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(Error::io("chmod", &path))?;
        }
    }
    Ok(())
}
