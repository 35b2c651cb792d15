//! The spoke agent: brings verified bundles onto the spoke.
//!
//! [`import`] takes a sneakernet medium, and [`sync::sync`] a repository
//! pulled over HTTPS, through the one verification path in
//! `bundles::verify`, stages every payload, and only then commits: chunks,
//! indexes and payloads are renamed into the data directory, the receiving
//! [`Registry`] records the bundles in one transaction, and the new trust
//! state is written last. A medium that fails any check changes nothing,
//! and a registry that is not [`Registry::accepting`] (the spoke is under
//! LEGAL_HOLD or SUSPENDED) refuses before the medium is opened or anything
//! fetched or staged.
//! The agent knows nothing of SQLite or HTTP servers: the spoke binary plugs
//! the appliance's store in through [`Registry`].
#![deny(missing_docs)]

pub mod sync;

use bundles::chunks::ChunkStore;
use bundles::index::BundleIndex;
use bundles::repo::Published;
use bundles::verify::{self, ChunkSources, Policy, TrustState};
use bundles::Progress;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The agent's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Verification or format error from the bundle layer.
    #[error(transparent)]
    Bundles(#[from] bundles::Error),
    /// The registry refused or failed to record the bundles.
    #[error("{0}")]
    Registry(RegistryError),
    /// Another import or sync holds the staging area.
    #[error("another import or sync is running on this data directory; wait for it to finish")]
    Busy,
    /// Fetching from the sync source failed (after retries).
    #[error("sync: {0}; check the URL, the network and the CA, then run `spoke sync` again (it resumes)")]
    Fetch(String),
    /// A filesystem step of the commit failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// A stable machine-readable name for this error.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Bundles(e) => e.kind(),
            Error::Registry(e) => e.kind,
            Error::Io { .. } => "io",
            Error::Fetch(_) => "fetch",
            Error::Busy => "busy",
        }
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

/// A bundle the agent verified and staged, handed to the [`Registry`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifiedBundle {
    /// What the signed targets metadata says about it.
    pub published: Published,
    /// Its index.
    pub index: BundleIndex,
}

/// Why a [`Registry`] refused or failed: a stable kind (as the spoke's
/// errors have) and a message that says what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RegistryError {
    /// Stable machine-readable kind, e.g. `forbidden` for a policy refusal.
    pub kind: &'static str,
    /// What happened and what to do.
    pub message: String,
}

/// Where imported bundles are recorded; the appliance's store implements it.
pub trait Registry {
    /// Refuses at once when nothing may be installed now (the spoke is under
    /// LEGAL_HOLD or SUSPENDED): asked before anything is fetched, unpacked
    /// or staged.
    fn accepting(&self) -> Result<(), RegistryError>;
    /// Whether a bundle with this CID is already installed.
    fn has(&self, cid: &str) -> Result<bool, RegistryError>;
    /// Whether this spoke takes the bundle at all, judged on its signed
    /// targets entry before anything of it is fetched or staged (another
    /// spoke's licence: no). Bundles it does not want are skipped, not
    /// refused, so one repository serves many spokes.
    fn wants(&self, _bundle: &Published) -> bool {
        true
    }
    /// Refuses bundles the spoke's policy does not take, before anything of
    /// them is moved into the data directory: `payloads` holds their staged
    /// payloads (`HEX/`). Checks only; writes nothing.
    fn admit(&self, _bundles: &[VerifiedBundle], _payloads: &Path) -> Result<(), RegistryError> {
        Ok(())
    }
    /// Records bundles atomically (all or none), or refuses them.
    fn record(&mut self, bundles: &[VerifiedBundle]) -> Result<(), RegistryError>;
}

/// Where the agent keeps things in the data directory.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Trust state file.
    pub trust: PathBuf,
    /// Installed chunk store.
    pub chunks: PathBuf,
    /// Installed indexes (`HEX.json`).
    pub indexes: PathBuf,
    /// Assembled payloads (`HEX/`).
    pub payloads: PathBuf,
    /// Scratch space (same filesystem, so commits are renames).
    pub staging: PathBuf,
}

/// What an import did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportReport {
    /// Bundles newly installed.
    pub installed: Vec<Published>,
    /// Bundles on the medium that were already installed.
    pub already_installed: Vec<Published>,
    /// Bundles the signed metadata lists but the medium does not carry.
    pub not_on_medium: usize,
    /// Bundles for other spokes (their licences), skipped.
    #[serde(default)]
    pub not_for_this_spoke: usize,
    /// Chunks taken from the medium.
    pub chunks_copied: usize,
    /// Chunks an interrupted earlier run had already verified and staged.
    #[serde(default)]
    pub resumed_chunks: usize,
    /// TUF root version now trusted.
    pub root_version: u64,
}

/// Verifies a medium and installs what it carries. See the crate docs for the commit order.
pub fn import(
    paths: &Paths,
    medium: &Path,
    identity: Option<&age::x25519::Identity>,
    registry: &mut dyn Registry,
    progress: &dyn Progress,
) -> Result<ImportReport, Error> {
    registry.accepting().map_err(Error::Registry)?;
    let (_lock, staging, verified) = open_verified(paths, medium, identity)?;
    install(
        paths,
        staging.path(),
        &verified,
        &Policy::sneakernet(),
        registry,
        progress,
    )
}

/// Takes the staging area, opens (and decrypts) the medium into a scratch
/// directory there and verifies its signed metadata against the trust state.
fn open_verified(
    paths: &Paths,
    medium: &Path,
    identity: Option<&age::x25519::Identity>,
) -> Result<(StagingLock, tempfile::TempDir, verify::Verified), Error> {
    let lock = StagingLock::take(&paths.staging)?;
    let staging =
        tempfile::tempdir_in(&paths.staging).map_err(io("create staging in", &paths.staging))?;
    let plain = bundles::medium::open_medium(medium, identity, staging.path())?;
    let trust = TrustState::load(&paths.trust)?;
    let verified = verify::verify_repository(&plain, &trust, &Policy::sneakernet())?;
    Ok((lock, staging, verified))
}

/// What a medium holds, as its signed metadata says, checked against this
/// spoke's trust state without installing anything.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Preview {
    /// Every bundle the signed metadata lists, in its order.
    pub bundles: Vec<PreviewBundle>,
    /// Bundles listed but not carried on the medium (an offline delta).
    pub not_on_medium: usize,
    /// The TUF root version the medium is signed under.
    pub root_version: u64,
}

/// One bundle of a [`Preview`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreviewBundle {
    /// What the signed targets metadata says about it.
    #[serde(flatten)]
    pub published: Published,
    /// Whether the medium carries its index.
    pub on_medium: bool,
    /// Whether this spoke already has it.
    pub already_installed: bool,
    /// Whether it is for this spoke (another spoke's licence is not).
    pub for_this_spoke: bool,
}

/// Opens (and decrypts) a medium and verifies its signed metadata against
/// the trust state, as [`import`] does first, but installs nothing and
/// leaves the data directory unchanged: what an operator sees before
/// deciding to install. Chunks are checked when they are installed.
pub fn preview(
    paths: &Paths,
    medium: &Path,
    identity: Option<&age::x25519::Identity>,
    registry: &dyn Registry,
) -> Result<Preview, Error> {
    let (_lock, _staging, verified) = open_verified(paths, medium, identity)?;
    let mut out = Vec::new();
    for p in &verified.bundles {
        out.push(PreviewBundle {
            on_medium: verified.has_index(p),
            already_installed: registry.has(&p.cid).map_err(Error::Registry)?,
            for_this_spoke: registry.wants(p),
            published: p.clone(),
        });
    }
    Ok(Preview {
        not_on_medium: out.iter().filter(|b| !b.on_medium).count(),
        bundles: out,
        root_version: verified.new_state.root()?.signed.version.get(),
    })
}

/// Installs what a verified repository carries (its chunks in the
/// repository's own chunk directory): stages and assembles every new bundle,
/// then commits in the documented order. Shared by media and pull sync.
///
/// Verified chunks are staged in `staging/verified-chunks`, which survives a
/// killed run so the next one resumes; a run that ends in a refusal removes
/// what it staged, so a refused medium leaves the data directory unchanged.
pub(crate) fn install(
    paths: &Paths,
    staging: &Path,
    verified: &verify::Verified,
    policy: &Policy,
    registry: &mut dyn Registry,
    progress: &dyn Progress,
) -> Result<ImportReport, Error> {
    let staged_store = ChunkStore::new(paths.staging.join("verified-chunks"));
    let before: std::collections::BTreeSet<String> = staged_store.list()?.into_iter().collect();
    let result = install_staged(
        paths,
        staging,
        verified,
        policy,
        registry,
        progress,
        &staged_store,
        before.len(),
    );
    if result.is_err() {
        for id in staged_store
            .list()?
            .into_iter()
            .filter(|id| !before.contains(id))
        {
            let path = staged_store.path(&id);
            let _ = std::fs::remove_file(&path);
            if let Some(dir) = path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
        let _ = std::fs::remove_dir(staged_store.root());
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn install_staged(
    paths: &Paths,
    staging: &Path,
    verified: &verify::Verified,
    policy: &Policy,
    registry: &mut dyn Registry,
    progress: &dyn Progress,
    staged_store: &ChunkStore,
    resumed_chunks: usize,
) -> Result<ImportReport, Error> {
    let installed_store = ChunkStore::new(&paths.chunks);
    let medium_store = verified.layout().chunks();
    let sources = ChunkSources {
        installed: &installed_store,
        staged: staged_store,
        medium: &medium_store,
    };
    let mut new = Vec::new();
    let mut already = Vec::new();
    let mut not_on_medium = 0;
    let mut not_for_this_spoke = 0;
    for p in &verified.bundles {
        if !registry.wants(p) {
            not_for_this_spoke += 1;
            continue;
        }
        if !verified.has_index(p) {
            not_on_medium += 1;
            continue;
        }
        if registry.has(&p.cid).map_err(Error::Registry)? {
            already.push(p.clone());
            continue;
        }
        let (index, bytes) = verified.read_index(p)?;
        let hex = p.sha256().to_string();
        verify::assemble(
            &index,
            &sources,
            &staging.join("payloads").join(&hex),
            policy,
            progress,
        )?;
        bundles::fsutil::atomic_write(
            &staging.join("indexes").join(format!("{hex}.json")),
            &bytes,
        )?;
        new.push(VerifiedBundle {
            published: p.clone(),
            index,
        });
    }

    // The spoke's policy, on the staged payloads: a refusal here leaves the
    // data directory as it was (the caller removes what was staged).
    registry
        .admit(&new, &staging.join("payloads"))
        .map_err(Error::Registry)?;

    // Everything verified: commit. Make the staged files durable with one syncfs, then
    // rename chunks and indexes (content-addressed, harmless if a crash leaves them
    // unreferenced) and payload directories into place, sync again, then record the
    // bundles in one transaction, then write the trust state.
    bundles::fsutil::sync_filesystem(staging)?;
    let staged_chunks = staged_store.list()?;
    for id in &staged_chunks {
        move_into(&staged_store.path(id), &installed_store.path(id))?;
    }
    for b in &new {
        let hex = b.published.sha256();
        move_into(
            &staging.join("indexes").join(format!("{hex}.json")),
            &paths.indexes.join(format!("{hex}.json")),
        )?;
        move_into(
            &staging.join("payloads").join(hex),
            &paths.payloads.join(hex),
        )?;
    }
    bundles::fsutil::sync_filesystem(&paths.staging)?;
    registry.record(&new).map_err(Error::Registry)?;
    verified.new_state.save(&paths.trust)?;
    Ok(ImportReport {
        installed: new.into_iter().map(|b| b.published).collect(),
        already_installed: already,
        not_on_medium,
        not_for_this_spoke,
        chunks_copied: staged_chunks.len(),
        resumed_chunks,
        root_version: verified.new_state.root()?.signed.version.get(),
    })
}

/// Exclusive use of the staging area for one import or sync at a time; taking
/// it also removes what a killed earlier run left in temporary directories.
pub struct StagingLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl StagingLock {
    /// Takes the lock (creating the staging directory and its lock file).
    pub fn take(staging: &Path) -> Result<StagingLock, Error> {
        std::fs::create_dir_all(staging).map_err(io("create", staging))?;
        let path = staging.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|_| Error::Busy)?;
        for entry in std::fs::read_dir(staging).map_err(io("list", staging))? {
            let entry = entry.map_err(io("list", staging))?;
            if entry.file_name().to_string_lossy().starts_with(".tmp") {
                let p = entry.path();
                std::fs::remove_dir_all(&p).map_err(io("remove stale staging", &p))?;
            }
        }
        Ok(StagingLock { _lock: lock })
    }
}

/// Renames `from` to `to` (creating parents) unless `to` already exists: content-addressed
/// names mean an existing target already holds the same content. Not durable until the
/// caller syncs the filesystem.
fn move_into(from: &Path, to: &Path) -> Result<(), Error> {
    if to.exists() {
        return Ok(());
    }
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io("create", parent))?;
    }
    std::fs::rename(from, to).map_err(io("move into place", to))
}
