//! Backups of a spoke's data directory into a backup directory shared by
//! many backups, taken while the spoke keeps serving.
//!
//! Layout of a backup directory (`eurocomply-backup-store/2`):
//!
//! - `packs/<name>.age` and `packs/<name>.idx`: content-defined chunks (the
//!   bundles crate's FastCDC + zstd, named by the SHA-256 of the compressed
//!   bytes) stored in packs of up to 64 MiB, each pack one age file
//!   encrypted to the operator's recipients, with a clear index of where
//!   each chunk sits ([`crate::packs`]). A chunk the directory already holds
//!   is never written again, so a backup after a small change only adds the
//!   chunks that changed (incremental by construction).
//! - `backups/<name>.age`: the backup's manifest, a document signed by the
//!   spoke (`eurocomply-backup/1`: every file with its size, SHA-256, mode
//!   and chunk list, plus the audit chain head), encrypted with age. Written
//!   last, after every pack is durable: it is the commit point.
//! - `backups/<name>.chunks`: the chunk ids the backup uses, in clear, so
//!   retention can remove packs no backup uses without the operator's key.
//!
//! The database is copied with SQLite's online backup API first; files
//! (objects, bundle indexes, payloads, trust state, identity) are read
//! afterwards, and since the spoke writes them before the transaction that
//! refers to them, everything the snapshot names is present. Every piece can
//! be read with the `age` and `zstd` command-line tools: a pack decrypts to
//! its chunks' zstd frames back to back.

use crate::packs::{PackWriter, Packs};
use crate::{identity, Error};
use appliance::{DataDir, Store};
use bundles::chunks;
use bundles::index::ChunkRef;
use bundles::progress::Progress;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Marker format of a backup directory.
pub const STORE_FORMAT: &str = "eurocomply-backup-store/2";
/// Files are chunked in windows of this many bytes (bounded memory).
const WINDOW: usize = 64 << 20;
/// Largest manifest read.
const MAX_MANIFEST: u64 = 256 << 20;
/// Areas of the data directory never backed up: the database is copied
/// through SQLite, staging is scratch, the search indexes are derived.
const SKIP: [&str; 4] = ["db", "staging", "store/search", "store/passages"];

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the data directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 (hex) of the content.
    pub sha256: String,
    /// Unix permission bits.
    pub mode: u32,
    /// Its chunks, in order.
    pub chunks: Vec<ChunkRef>,
}

/// The signed body of a backup manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The backup's name (also its file name).
    pub name: String,
    /// When it was taken (RFC 3339).
    pub created_at: String,
    /// The spoke's `did:key`.
    pub spoke: String,
    /// Version of the spoke that wrote it.
    pub spoke_version: String,
    /// Audit chain entries at the snapshot.
    pub audit_entries: u64,
    /// Audit chain head at the snapshot.
    pub audit_head: String,
    /// Every file.
    pub files: Vec<FileEntry>,
}

/// What a backup wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// Backup name.
    pub name: String,
    /// The manifest file.
    pub manifest: PathBuf,
    /// Files backed up.
    pub files: usize,
    /// Bytes of those files.
    pub bytes: u64,
    /// Chunks the backup uses.
    pub chunks: usize,
    /// Chunks it had to write (the rest were already in the directory).
    pub new_chunks: usize,
    /// Bytes written to the backup directory (new chunks and manifest).
    pub written_bytes: u64,
    /// Audit entries covered.
    pub audit_entries: u64,
    /// Backups removed by retention.
    pub pruned: Vec<String>,
}

fn backup_err(msg: impl Into<String>) -> Error {
    Error::Backup(msg.into())
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl Fn(std::io::Error) -> Error + 'a {
    move |e| Error::Backup(format!("{what} {}: {e}", path.display()))
}

/// Parses age recipients (`age1…`).
pub fn parse_recipients(raw: &[String]) -> Result<Vec<age::x25519::Recipient>, Error> {
    raw.iter()
        .map(|r| {
            r.trim().parse().map_err(|e| {
                Error::Usage(format!(
                    "--recipient {r:?} is not an age X25519 recipient (age1…): {e}"
                ))
            })
        })
        .collect()
}

/// Reads age identities from a file as `age-keygen` writes it (one
/// `AGE-SECRET-KEY-1…` per line, `#` comments). Never prints the keys.
pub fn read_identities(path: &Path) -> Result<Vec<age::x25519::Identity>, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Usage(format!("read identity file {}: {e}", path.display())))?;
    let ids: Vec<age::x25519::Identity> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.parse().map_err(|_| {
                Error::Usage(format!(
                    "{} holds a line that is not an age X25519 identity (AGE-SECRET-KEY-1…)",
                    path.display()
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Err(Error::Usage(format!(
            "{} holds no age identity",
            path.display()
        )));
    }
    Ok(ids)
}

fn encrypt(recipients: &[age::x25519::Recipient], plain: &[u8]) -> Result<Vec<u8>, Error> {
    let enc = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| Error::Usage(format!("age recipients: {e}")))?;
    let mut out = Vec::with_capacity(plain.len() + 512);
    let mut w = enc
        .wrap_output(&mut out)
        .map_err(|e| backup_err(format!("encrypt: {e}")))?;
    w.write_all(plain)
        .and_then(|_| w.finish().map(|_| ()))
        .map_err(|e| backup_err(format!("encrypt: {e}")))?;
    Ok(out)
}

/// Decrypts `bytes` (read from `origin`), producing at most `max` bytes.
pub(crate) fn decrypt(
    identities: &[age::x25519::Identity],
    bytes: &[u8],
    max: u64,
    origin: &Path,
) -> Result<Vec<u8>, Error> {
    let dec = age::Decryptor::new_buffered(bytes).map_err(|e| {
        backup_err(format!(
            "{} is not a readable age file ({e}): the backup is damaged or truncated",
            origin.display()
        ))
    })?;
    let mut r = dec
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| crate::packs::decrypt_error(origin, e))?;
    let mut out = Vec::new();
    (&mut r).take(max + 1).read_to_end(&mut out).map_err(|e| {
        backup_err(format!(
            "{}: decryption failed ({e}): the backup is damaged or truncated",
            origin.display()
        ))
    })?;
    if out.len() as u64 > max {
        return Err(backup_err(format!(
            "{} decrypts to more than {max} bytes; refusing it",
            origin.display()
        )));
    }
    Ok(out)
}

/// The backup directory.
pub struct BackupDir {
    root: PathBuf,
}

impl BackupDir {
    /// The backup directory at `root`.
    pub fn new(root: &Path) -> Self {
        BackupDir {
            root: root.to_owned(),
        }
    }
    fn packs_dir(&self) -> PathBuf {
        self.root.join("packs")
    }
    /// The packs and where each chunk sits in them.
    pub(crate) fn packs(&self) -> Result<Packs, Error> {
        Packs::load(&self.packs_dir())
    }
    fn marker(&self) -> PathBuf {
        self.root.join("backup-store.json")
    }
    /// Refuses a directory written in another format than this spoke's.
    pub(crate) fn check_format(&self) -> Result<(), Error> {
        let path = self.marker();
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(());
        };
        let format = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["format"].as_str().map(str::to_string))
            .unwrap_or_default();
        if format != STORE_FORMAT {
            return Err(backup_err(format!(
                "{} holds backups in format {format:?}; this spoke reads and writes {STORE_FORMAT}: \
                 restore them with the spoke version that wrote them, and back up into a new directory",
                self.root.display()
            )));
        }
        Ok(())
    }
    fn manifests(&self) -> PathBuf {
        self.root.join("backups")
    }
    /// The manifest file of backup `name`.
    pub fn manifest_path(&self, name: &str) -> PathBuf {
        self.manifests().join(format!("{name}.age"))
    }
    fn list_path(&self, name: &str) -> PathBuf {
        self.manifests().join(format!("{name}.chunks"))
    }

    /// Committed backups, oldest first.
    pub fn list(&self) -> Result<Vec<String>, Error> {
        let dir = self.manifests();
        let mut names = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
            Err(e) => return Err(io("list", &dir)(e)),
        };
        for e in entries {
            let e = e.map_err(io("list", &dir))?;
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(name) = n.strip_suffix(".age") {
                if valid_name(name) {
                    names.push(name.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Reads, decrypts and checks the signature of a backup's manifest.
    pub fn manifest(
        &self,
        name: &str,
        identities: &[age::x25519::Identity],
    ) -> Result<(Manifest, bundles::attest::Signed), Error> {
        if !valid_name(name) {
            return Err(Error::Usage(format!("{name:?} is not a backup name")));
        }
        let path = self.manifest_path(name);
        let bytes = read_capped(&path, MAX_MANIFEST)?;
        let plain = decrypt(identities, &bytes, MAX_MANIFEST, &path)?;
        let origin = path.display().to_string();
        let signed = bundles::attest::verify(&plain, bundles::attest::BACKUP_FORMAT, &origin)?;
        let manifest: Manifest = serde_json::from_value(signed.body.clone())
            .map_err(|e| backup_err(format!("{origin}: not a backup manifest: {e}")))?;
        if manifest.name != name || manifest.spoke != signed.signer {
            return Err(backup_err(format!(
                "{origin}: the manifest names another backup or signer; it was renamed or replaced"
            )));
        }
        Ok((manifest, signed))
    }
}

/// Checks the stored bytes of chunk `r` against its id and decompresses them.
pub(crate) fn open_chunk(r: &ChunkRef, stored: &[u8], plain: &mut Vec<u8>) -> Result<(), Error> {
    chunks::open(r, stored, plain)
        .map_err(|e| backup_err(format!("chunk {}: {e}: the backup is damaged", r.id)))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !name.starts_with('.')
}

fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, Error> {
    let f = std::fs::File::open(path)
        .map_err(|e| backup_err(format!("{}: {e}: the backup is incomplete", path.display())))?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(io("read", path))?;
    if buf.len() as u64 > max {
        return Err(backup_err(format!(
            "{} is larger than {max} bytes; refusing it",
            path.display()
        )));
    }
    Ok(buf)
}

/// Every regular file to back up: (relative path, absolute path), sorted.
fn collect(root: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), root.to_path_buf())];
    while let Some((rel, dir)) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(io("list", &dir))?;
        for e in entries {
            let e = e.map_err(io("list", &dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            // Temporary files of writes in progress are not data yet.
            if name.starts_with(".tmp") || SKIP.contains(&r.as_str()) {
                continue;
            }
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push((r, e.path()));
            } else if ft.is_file() {
                out.push((r, e.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A name that sorts in time order: `YYYYMMDDTHHMMSS.mmmZ`.
fn backup_name(existing: &[String]) -> String {
    let now = jiff::Timestamp::now();
    let base = format!(
        "{}.{:03}Z",
        now.strftime("%Y%m%dT%H%M%S"),
        now.subsec_millisecond()
    );
    let mut name = base.clone();
    let mut n = 1;
    while existing.contains(&name) || existing.last().is_some_and(|l| *l > name) {
        // Clock went backwards or a name clash: sort after the last one.
        name = format!(
            "{}-{n}",
            existing.last().map(String::as_str).unwrap_or(&base)
        );
        n += 1;
    }
    name
}

/// The fixed chunk size for a file that starts like a SQLite database
/// (`first` holds its first bytes): its page size, so that an edit in place
/// changes only the chunks of the pages it touched, where content-defined
/// chunks of ~64 KiB would change around every scattered edit. None for any
/// other file.
fn database_chunk(first: &[u8]) -> Option<usize> {
    let header = first.get(..18)?;
    if &header[..16] != b"SQLite format 3\0" {
        return None;
    }
    // Page size at offset 16, big-endian; 1 means 65536.
    let page = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        p if p.is_power_of_two() && p >= 512 => usize::from(p),
        _ => return None,
    };
    Some(page)
}

/// Chunks one file into `packs`; returns its entry.
fn store_file(
    packs: &mut PackWriter,
    rel: &str,
    path: &Path,
    progress: &dyn Progress,
) -> Result<Option<FileEntry>, Error> {
    use std::os::unix::fs::PermissionsExt;
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        // Removed since it was listed (a temporary file renamed away).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("open", path)(e)),
    };
    let mode = f.metadata().map_err(io("stat", path))?.permissions().mode() & 0o777;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut refs = Vec::new();
    let mut window = Vec::with_capacity(WINDOW.min(1 << 20));
    let mut piece = None;
    loop {
        window.clear();
        (&mut f)
            .take(WINDOW as u64)
            .read_to_end(&mut window)
            .map_err(io("read", path))?;
        if window.is_empty() {
            break;
        }
        if size == 0 {
            piece = database_chunk(&window);
        }
        hasher.update(&window);
        size += window.len() as u64;
        let sealed = match piece {
            Some(n) => chunks::seal_pieces(&window, &chunks::cut_fixed(&window, n))?,
            None => chunks::seal_all(&window)?,
        };
        for c in &sealed {
            packs.add(&c.r#ref.id, &c.bytes)?;
        }
        progress.inc(window.len() as u64);
        refs.extend(sealed.into_iter().map(|c| c.r#ref));
        if window.len() < WINDOW {
            break;
        }
    }
    Ok(Some(FileEntry {
        path: rel.to_string(),
        size,
        sha256: hex::encode(hasher.finalize()),
        mode,
        chunks: refs,
    }))
}

/// Takes a backup of the data directory `d` into `to`, encrypted to
/// `recipients`; keeps the newest `keep` backups when given.
pub fn backup(
    d: &DataDir,
    to: &Path,
    recipients: &[age::x25519::Recipient],
    keep: Option<usize>,
    progress: &dyn Progress,
) -> Result<BackupReport, Error> {
    if recipients.is_empty() {
        return Err(Error::Usage(
            "a backup needs at least one age recipient (--recipient age1…)".into(),
        ));
    }
    d.check_initialised()?;
    let out = BackupDir::new(to);
    out.check_format()?;
    bundles::fsutil::create_private_dir(to)?;
    // One writer per backup directory; stale temporary directories of a
    // killed run are removed here.
    let _lock = agent::StagingLock::take(to)?;
    let marker = out.marker();
    if !marker.is_file() {
        bundles::fsutil::atomic_write(
            &marker,
            serde_json::to_string_pretty(&serde_json::json!({
                "format": STORE_FORMAT,
                "read_with": "spoke restore / spoke verify-restore; by hand: age -d -i KEY backups/NAME.age (a signed JSON manifest: each file's chunks by id), then for each chunk the line 'ID OFFSET LENGTH' of packs/*.idx: age -d -i KEY packs/PACK.age | tail -c +$((OFFSET + 1)) | head -c LENGTH | zstd -d",
            }))
            .map_err(|e| backup_err(e.to_string()))?
            .as_bytes(),
        )?;
    }
    let scratch = tempfile::Builder::new()
        .prefix(".tmp-backup-")
        .tempdir_in(to)
        .map_err(io("create scratch directory in", to))?;
    let store = d.open_store()?;
    // The database first: every file it refers to already exists.
    let snapshot = scratch.path().join("spoke.sqlite");
    store.snapshot_to(&snapshot)?;
    let audit = Store::open(&snapshot)?.audit_verify()?;
    drop(store);

    let mut files = vec![("db/spoke.sqlite".to_string(), snapshot.clone())];
    files.extend(collect(d.root())?);
    let total: u64 = files
        .iter()
        .filter_map(|(_, p)| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    progress.set_len(total);
    let mut packs = PackWriter::new(&out.packs_dir(), &out.packs()?, recipients)?;
    let mut entries = Vec::new();
    for (rel, path) in &files {
        if let Some(e) = store_file(&mut packs, rel, path, progress)? {
            entries.push(e);
        }
    }
    packs.close()?;
    // Every pack durable before the manifest that names its chunks.
    bundles::fsutil::sync_filesystem(to)?;

    let existing = out.list()?;
    let name = backup_name(&existing);
    let public = identity::load_public(&d.identity_dir())?;
    let manifest = Manifest {
        name: name.clone(),
        created_at: jiff::Timestamp::now().to_string(),
        spoke: public.did,
        spoke_version: env!("CARGO_PKG_VERSION").into(),
        audit_entries: audit.entries as u64,
        audit_head: audit.head.clone(),
        files: entries,
    };
    let body = serde_json::to_value(&manifest).map_err(|e| backup_err(e.to_string()))?;
    let signed = identity::sign(&d.identity_dir(), bundles::attest::BACKUP_FORMAT, body)?;
    let plain = serde_json::to_vec(&signed).map_err(|e| backup_err(e.to_string()))?;
    let sealed = encrypt(recipients, &plain)?;
    let mut ids: Vec<&str> = manifest
        .files
        .iter()
        .flat_map(|f| f.chunks.iter().map(|c| c.id.as_str()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    bundles::fsutil::atomic_write(&out.list_path(&name), ids.join("\n").as_bytes())?;
    // The commit point.
    let manifest_path = out.manifest_path(&name);
    bundles::fsutil::atomic_write(&manifest_path, &sealed)?;
    drop(scratch);
    let pruned = match keep {
        Some(k) => prune(&out, k)?,
        None => Vec::new(),
    };
    Ok(BackupReport {
        name,
        manifest: manifest_path,
        files: manifest.files.len(),
        bytes: manifest.files.iter().map(|f| f.size).sum(),
        chunks: ids.len(),
        new_chunks: packs.added,
        written_bytes: packs.written + sealed.len() as u64,
        audit_entries: manifest.audit_entries,
        pruned,
    })
}

/// Removes all but the newest `keep` backups, then every pack no remaining
/// backup uses a chunk of. Chunk lists and pack indexes are read in clear,
/// so no key is needed. Called with the directory's lock held.
fn prune(out: &BackupDir, keep: usize) -> Result<Vec<String>, Error> {
    let keep = keep.max(1);
    let names = out.list()?;
    let drop_n = names.len().saturating_sub(keep);
    let (old, kept) = names.split_at(drop_n);
    let mut used = std::collections::HashSet::new();
    for name in kept {
        let path = out.list_path(name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            // Without a chunk list nothing can be collected safely.
            tracing::warn!("{} missing; unused packs kept", path.display());
            return remove_manifests(out, old);
        };
        used.extend(text.lines().map(str::to_string));
    }
    let removed = remove_manifests(out, old)?;
    for p in out.packs()?.unused(&used)? {
        std::fs::remove_file(&p).map_err(io("remove", &p))?;
    }
    Ok(removed)
}

fn remove_manifests(out: &BackupDir, old: &[String]) -> Result<Vec<String>, Error> {
    for name in old {
        for p in [out.manifest_path(name), out.list_path(name)] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &p)(e)),
            }
        }
    }
    bundles::fsutil::sync_dir(&out.manifests())?;
    Ok(old.to_vec())
}

/// Parses a duration such as `90s`, `30m`, `6h` or `1d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, Error> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| {
        Error::Usage(format!(
            "{s:?} is not a duration; use e.g. 90s, 30m, 6h, 1d"
        ))
    })?;
    let secs = match unit {
        "s" => n,
        "m" | "" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => {
            return Err(Error::Usage(format!(
                "{s:?}: unknown unit {unit:?}; use s, m, h or d"
            )))
        }
    };
    if secs == 0 {
        return Err(Error::Usage("the backup interval must be positive".into()));
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// Backs up on a schedule from `spoke serve` (its own connection; the API keeps serving).
pub(crate) fn backup_every(
    d: DataDir,
    to: PathBuf,
    recipients: Vec<age::x25519::Recipient>,
    keep: Option<usize>,
    every: std::time::Duration,
) {
    std::thread::spawn(move || loop {
        match backup(&d, &to, &recipients, keep, &()) {
            Ok(r) => tracing::info!(
                "backup {} to {}: {} files, {} new chunks, {} bytes written, {} pruned",
                r.name,
                to.display(),
                r.files,
                r.new_chunks,
                r.written_bytes,
                r.pruned.len()
            ),
            Err(e) => tracing::warn!("backup to {} failed: {e}", to.display()),
        }
        std::thread::sleep(every);
    });
}

/// The backup directory of `spoke serve --backup-to`, for the console:
/// lists its backups and takes one now with the schedule's recipients and
/// retention.
pub(crate) struct ServedBackups {
    /// The data directory.
    pub(crate) d: DataDir,
    /// The backup directory.
    pub(crate) to: PathBuf,
    /// Who can decrypt.
    pub(crate) recipients: Vec<age::x25519::Recipient>,
    /// Retention.
    pub(crate) keep: Option<usize>,
}

impl api::Backups for ServedBackups {
    fn list(&self) -> Result<serde_json::Value, api::HostError> {
        let names = BackupDir::new(&self.to).list()?;
        Ok(serde_json::json!({ "dir": self.to, "keep": self.keep, "backups": names }))
    }

    fn run(&self) -> Result<serde_json::Value, api::HostError> {
        let report = backup(&self.d, &self.to, &self.recipients, self.keep, &())?;
        Ok(serde_json::to_value(report).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_names() {
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("6h").unwrap().as_secs(), 6 * 3600);
        assert_eq!(parse_duration("2d").unwrap().as_secs(), 2 * 86400);
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 weeks").is_err());
        assert!(!valid_name("../x"));
        assert!(!valid_name(".hidden"));
        let later = backup_name(&["99990101T000000.000Z".to_string()]);
        assert!(later.as_str() > "99990101T000000.000Z", "{later}");
    }

    #[test]
    fn databases_are_cut_at_page_multiples() {
        let header = |page: u16| {
            let mut h = b"SQLite format 3\0".to_vec();
            h.extend_from_slice(&page.to_be_bytes());
            h
        };
        assert_eq!(database_chunk(&header(4096)), Some(4096));
        assert_eq!(database_chunk(&header(1)), Some(65536));
        assert_eq!(database_chunk(&header(3000)), None);
        assert_eq!(database_chunk(b"SQLite format 3\0"), None);
        assert_eq!(database_chunk(b"%PDF-1.7 and more bytes"), None);
        let cuts = chunks::cut_fixed(&[0u8; 10 << 10], 4096);
        assert_eq!(cuts, [(0, 4096), (4096, 4096), (8192, 2048)]);
    }

    #[test]
    fn encrypt_decrypt_and_wrong_key() {
        let id = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let enc = encrypt(&[id.to_public()], b"hello").unwrap();
        let p = Path::new("x");
        assert_eq!(
            decrypt(std::slice::from_ref(&id), &enc, 10, p).unwrap(),
            b"hello"
        );
        let e = decrypt(&[other], &enc, 10, p).unwrap_err().to_string();
        assert!(e.contains("not encrypted to"), "{e}");
        assert!(decrypt(std::slice::from_ref(&id), &enc[..enc.len() - 3], 10, p).is_err());
        assert!(decrypt(&[id], &enc, 3, p).is_err());
    }
}
