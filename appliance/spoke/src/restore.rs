//! Restoring a backup: everything is decrypted, checked against the signed
//! manifest and written into a staging directory next to the target; the
//! staged spoke must open, pass its health checks (database integrity, audit
//! chain, every document's object) and match the manifest's audit head
//! before it replaces anything. An existing non-empty data directory is only
//! replaced with `--force`, and then by one atomic exchange of directories.

use crate::backup::{BackupDir, FileEntry, Manifest};
use crate::Error;
use appliance::{Appliance, DataDir};
use bundles::progress::Progress;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The backup restored.
    pub backup: String,
    /// The spoke's `did:key`.
    pub spoke: String,
    /// Where it was restored.
    pub data: PathBuf,
    /// Files written, each checked against its digest.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Audit entries, chain verified.
    pub audit_entries: u64,
    /// Audit chain head (equals the manifest's).
    pub audit_head: String,
    /// Whether an existing data directory was replaced.
    pub replaced: bool,
    /// Health checks of the restored spoke: (name, passed, detail).
    pub checks: Vec<(String, bool, String)>,
    /// Compliance Locks replayed byte for byte (verify-restore only).
    pub locks_replayed: Option<usize>,
}

fn non_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut e| e.next().is_some())
        .unwrap_or(false)
}

/// Chooses the backup to restore: `name`, or the newest.
fn choose(dir: &BackupDir, from: &Path, name: Option<&str>) -> Result<String, Error> {
    let all = dir.list()?;
    match name {
        Some(n) if all.iter().any(|a| a == n) => Ok(n.to_string()),
        Some(n) => Err(Error::Backup(format!(
            "{} holds no backup {n:?}; it has: {}",
            from.display(),
            all.join(", ")
        ))),
        None => all.last().cloned().ok_or_else(|| {
            Error::Backup(format!(
                "{} holds no backup (no backups/*.age); give the directory `spoke backup --to` wrote",
                from.display()
            ))
        }),
    }
}

/// Chunks decoded at once (each at most 1 MiB of plain bytes).
const PARALLEL_CHUNKS: usize = 64;

/// The file being written: its handle and running digest.
struct Open {
    index: usize,
    path: PathBuf,
    out: std::fs::File,
    hasher: Sha256,
}

/// Writes the files of a manifest in order: opens each (and creates the
/// empty ones) when its first chunk arrives, and checks each one's digest
/// and sets its mode when the next begins.
struct Writer<'a> {
    files: &'a [FileEntry],
    paths: Vec<PathBuf>,
    open: Option<Open>,
    next: usize,
    progress: &'a dyn Progress,
}

impl Writer<'_> {
    fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
        move |e| Error::Backup(format!("write {}: {e}", path.display()))
    }

    /// Finishes every file before `index` and opens file `index` (if any).
    fn advance_to(&mut self, index: usize) -> Result<(), Error> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        if self.open.as_ref().is_some_and(|o| o.index == index) {
            return Ok(());
        }
        self.finish()?;
        while self.next <= index && self.next < self.files.len() {
            let path = self.paths[self.next].clone();
            if let Some(parent) = path.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(Self::io(&path))?;
            }
            let out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(Self::io(&path))?;
            self.open = Some(Open {
                index: self.next,
                path,
                out,
                hasher: Sha256::new(),
            });
            self.next += 1;
            if self.next <= index {
                // A file with no chunks: empty, finished at once.
                self.finish()?;
            }
        }
        Ok(())
    }

    /// Checks the open file's digest and sets its mode.
    fn finish(&mut self) -> Result<(), Error> {
        use std::os::unix::fs::PermissionsExt;
        let Some(o) = self.open.take() else {
            return Ok(());
        };
        let f = &self.files[o.index];
        let found = hex::encode(o.hasher.finalize());
        if found != f.sha256 {
            return Err(Error::Backup(format!(
                "{} restores to SHA-256 {found}, but the manifest says {}: the backup is damaged",
                f.path, f.sha256
            )));
        }
        o.out
            .set_permissions(std::fs::Permissions::from_mode(f.mode & 0o777))
            .map_err(Self::io(&o.path))?;
        bundles::fsutil::start_writeback(&o.out, 0, 0);
        Ok(())
    }

    fn write(&mut self, decoded: Vec<(usize, Vec<u8>)>) -> Result<(), Error> {
        for (index, plain) in decoded {
            self.advance_to(index)?;
            let o = self
                .open
                .as_mut()
                .ok_or_else(|| Error::Backup("restore: no file is open".into()))?;
            o.hasher.update(&plain);
            o.out.write_all(&plain).map_err(Self::io(&o.path))?;
            self.progress.inc(plain.len() as u64);
        }
        Ok(())
    }
}

/// Writes every file of `manifest` below `stage`, each checked. Chunks of
/// all files form one stream: groups are read from the packs, then checked
/// and decompressed on every core, while the previous group is hashed and
/// written in order.
fn write_files(
    dir: &BackupDir,
    manifest: &Manifest,
    identities: &[age::x25519::Identity],
    stage: &Path,
    progress: &dyn Progress,
) -> Result<u64, Error> {
    use rayon::prelude::*;
    // Every entry is checked before anything is written.
    let mut paths = Vec::with_capacity(manifest.files.len());
    for f in &manifest.files {
        // Never a path out of the staging directory.
        paths.push(stage.join(bundles::fsutil::safe_relative(&f.path)?));
        let declared: u64 = f.chunks.iter().map(|c| c.size).sum();
        if declared != f.size {
            return Err(Error::Backup(format!(
                "manifest entry {}: chunks add up to {declared} bytes, not {}",
                f.path, f.size
            )));
        }
    }
    progress.set_len(manifest.files.iter().map(|f| f.size).sum());
    let chunks: Vec<(usize, &bundles::index::ChunkRef)> = manifest
        .files
        .iter()
        .enumerate()
        .flat_map(|(i, f)| f.chunks.iter().map(move |c| (i, c)))
        .collect();
    let packs = dir.packs()?;
    let mut reader = packs.reader(identities);
    // A group's stored bytes are read in order (one decrypting stream per
    // pack), then checked and decompressed on every core.
    let mut fetch = |group: &[(usize, &bundles::index::ChunkRef)]| {
        let stored = group
            .iter()
            .map(|&(i, c)| {
                let mut stored = Vec::new();
                reader.read(c, &mut stored)?;
                Ok((i, c, stored))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        stored
            .into_par_iter()
            .map(|(i, c, stored)| {
                let mut plain = Vec::new();
                crate::backup::open_chunk(c, &stored, &mut plain)?;
                Ok((i, plain))
            })
            .collect::<Result<Vec<_>, Error>>()
    };
    let mut writer = Writer {
        files: &manifest.files,
        paths,
        open: None,
        next: 0,
        progress,
    };
    let mut decoded = Vec::new();
    for group in chunks.chunks(PARALLEL_CHUNKS) {
        let ready = std::mem::take(&mut decoded);
        let (next, written) = rayon::join(|| fetch(group), || writer.write(ready));
        written?;
        decoded = next?;
    }
    writer.write(decoded)?;
    writer.advance_to(manifest.files.len())?;
    Ok(manifest.files.iter().map(|f| f.size).sum())
}

/// Restores the backup `name` (the newest when `None`) from `from` into the
/// data directory `data`.
pub fn restore(
    from: &Path,
    data: &Path,
    identities: &[age::x25519::Identity],
    name: Option<&str>,
    force: bool,
    progress: &dyn Progress,
) -> Result<RestoreReport, Error> {
    let existing = non_empty_dir(data);
    if existing && !force {
        return Err(Error::Conflict(format!(
            "{} exists and is not empty; restore into a new directory, or add --force to \
             replace it (the backup is checked completely before the swap)",
            data.display()
        )));
    }
    if data.exists() && !data.is_dir() {
        return Err(Error::Conflict(format!(
            "{} exists and is not a directory",
            data.display()
        )));
    }
    let dir = BackupDir::new(from);
    dir.check_format()?;
    let name = choose(&dir, from, name)?;
    let (manifest, _signed) = dir.manifest(&name, identities)?;

    let parent = match data.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(|e| Error::Backup(format!("create {}: {e}", parent.display())))?;
    // On the same filesystem as the target, so the final step is a rename;
    // removed if anything below fails.
    let stage = tempfile::Builder::new()
        .prefix(".restore-")
        .tempdir_in(&parent)
        .map_err(|e| Error::Backup(format!("create staging in {}: {e}", parent.display())))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(stage.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::Backup(format!("{}: {e}", stage.path().display())))?;
    }
    let bytes = write_files(&dir, &manifest, identities, stage.path(), progress)?;
    let staged = DataDir::new(stage.path());
    staged.check_initialised()?;
    let marker: serde_json::Value = serde_json::from_slice(
        &std::fs::read(staged.marker())
            .map_err(|e| Error::Backup(format!("read restored spoke.json: {e}")))?,
    )
    .map_err(|e| Error::Backup(format!("restored spoke.json: {e}")))?;
    if marker["did"].as_str() != Some(manifest.spoke.as_str()) {
        return Err(Error::Backup(
            "the manifest was signed by another spoke than the one it restores".into(),
        ));
    }
    bundles::fsutil::create_private_dir(&staged.staging())?;
    agent::StagingLock::take(&staged.staging())?;
    // Database, chain and objects; the derived search indexes are not in the
    // backup and are rebuilt when the spoke first opens the directory.
    let hashed: std::collections::HashSet<String> =
        manifest.files.iter().map(|f| f.sha256.clone()).collect();
    let (health, audit) = appliance::Health::of_stores(&staged, &hashed)?;
    if !health.ok {
        let failed: Vec<String> = health
            .checks
            .iter()
            .filter(|c| !c.1)
            .map(|c| format!("{}: {}", c.0, c.2))
            .collect();
        return Err(Error::Backup(format!(
            "the restored spoke fails its checks: {}",
            failed.join("; ")
        )));
    }
    // The audit chain must end where it did at the snapshot.
    let audit =
        audit.ok_or_else(|| Error::Backup("the restored audit chain was not checked".into()))?;
    if audit.head != manifest.audit_head || audit.entries as u64 != manifest.audit_entries {
        return Err(Error::Backup(format!(
            "the restored audit chain ends at {} ({} entries), the manifest says {} ({}): the backup is inconsistent",
            audit.head, audit.entries, manifest.audit_head, manifest.audit_entries
        )));
    }
    bundles::fsutil::sync_filesystem(stage.path())?;

    // The swap: a rename into place, or an atomic exchange with the old
    // directory (which the staging guard then removes).
    let replaced = if existing {
        nix::fcntl::renameat2(
            None,
            stage.path(),
            None,
            data,
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        )
        .map_err(|e| {
            Error::Backup(format!(
                "swap {} into place: {e}; nothing was replaced",
                data.display()
            ))
        })?;
        true
    } else {
        if data.is_dir() {
            std::fs::remove_dir(data)
                .map_err(|e| Error::Backup(format!("remove empty {}: {e}", data.display())))?;
        }
        std::fs::rename(stage.path(), data)
            .map_err(|e| Error::Backup(format!("move into {}: {e}", data.display())))?;
        false
    };
    bundles::fsutil::sync_dir(&parent)?;
    drop(stage);
    Ok(RestoreReport {
        backup: name,
        spoke: manifest.spoke,
        data: data.to_path_buf(),
        files: manifest.files.len(),
        bytes,
        audit_entries: audit.entries as u64,
        audit_head: audit.head,
        replaced,
        checks: health.checks,
        locks_replayed: None,
    })
}

/// Restores into a temporary directory, checks everything (digests, audit
/// chain, health) and replays every Compliance Lock, then removes it.
pub fn verify_restore(
    from: &Path,
    identities: &[age::x25519::Identity],
    name: Option<&str>,
    progress: &dyn Progress,
) -> Result<RestoreReport, Error> {
    let tmp = tempfile::tempdir()
        .map_err(|e| Error::Backup(format!("create a temporary directory: {e}")))?;
    let data = tmp.path().join("data");
    let mut report = restore(from, &data, identities, name, false, progress)?;
    let app = Appliance::open(&DataDir::new(&data))?;
    let mut replayed = 0;
    for lock in app.store().locks(None, usize::MAX >> 1)? {
        let r = app.replay(&lock.id)?;
        if !r.identical {
            return Err(Error::Backup(format!(
                "Compliance Lock {} does not replay byte for byte from the backup",
                lock.id
            )));
        }
        replayed += 1;
    }
    report.locks_replayed = Some(replayed);
    Ok(report)
}
