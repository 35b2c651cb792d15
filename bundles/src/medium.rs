//! Sneakernet media: self-contained signed repositories on a USB stick.
//!
//! A medium has the repository layout (`metadata/`, `targets/`, `chunks/`)
//! plus an unsigned `medium.json` that only says whether the content is
//! encrypted. Everything that matters is verified through TUF on import.
//! An encrypted medium holds the plain medium as a tar stream, age-encrypted
//! to the spokes' X25519 recipients and split into `payload.NNN.age` parts of
//! at most 1 GiB (FAT32 cannot hold files of 4 GiB), so a lost stick reveals
//! nothing but sizes.

use crate::bundle_file::unpack_safe;
use crate::error::{Error, Result};
use crate::repo::{self, Layout, Published};
use crate::{fsutil, Progress};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Format of `medium.json`.
pub const MEDIUM_FORMAT: &str = "eurocomply-medium/1";
/// Format of a spoke's chunk inventory.
pub const INVENTORY_FORMAT: &str = "eurocomply-inventory/1";
/// Largest encrypted part.
pub const PART_SIZE: u64 = 1024 * 1024 * 1024;
/// Largest plain medium an encrypted one may expand to.
pub const MAX_MEDIUM_SIZE: u64 = 256 * 1024 * 1024 * 1024;

/// Largest `medium.json` read (it is unsigned: capped before it is parsed).
pub const MAX_INFO_SIZE: u64 = 1024 * 1024;

/// `medium.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediumInfo {
    /// Always [`MEDIUM_FORMAT`].
    pub format: String,
    /// Whether the payload is age-encrypted.
    pub encrypted: bool,
    /// Encrypted parts, in order (empty when plain).
    #[serde(default)]
    pub parts: Vec<String>,
}

/// A spoke's list of the chunks it holds, for offline deltas (`hub export --have`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Always [`INVENTORY_FORMAT`].
    pub format: String,
    /// Chunk ids.
    pub chunks: BTreeSet<String>,
}

impl Inventory {
    /// Parses an inventory file.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self> {
        let inv: Inventory = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(origin, format!("not a chunk inventory: {e}")))?;
        if inv.format != INVENTORY_FORMAT {
            return Err(Error::UnknownFormat {
                what: origin.into(),
                found: inv.format,
                expected: INVENTORY_FORMAT,
            });
        }
        Ok(inv)
    }
}

/// What to put on a medium.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Only bundles whose name or target matches one of these (all when empty).
    pub only: Vec<String>,
    /// Leave out chunks this inventory lists.
    pub have: Option<Inventory>,
    /// age X25519 recipients (`age1…`); encrypted when not empty.
    pub recipients: Vec<String>,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportReport {
    /// Bundles whose indexes are on the medium.
    pub bundles: Vec<Published>,
    /// Chunks copied.
    pub chunks: usize,
    /// Chunks left out because the spoke has them.
    pub chunks_skipped: usize,
    /// Bytes written to the medium.
    pub bytes: u64,
    /// Whether it is encrypted.
    pub encrypted: bool,
}

fn copy(from: &Path, to: &Path) -> Result<u64> {
    if let Some(p) = to.parent() {
        std::fs::create_dir_all(p).map_err(Error::io("create", p))?;
    }
    std::fs::copy(from, to).map_err(Error::io("copy", from))
}

/// Writes a medium for `repo` at `to` (which must not exist yet). The medium is
/// written beside it as `to.partial` and renamed into place when complete.
pub fn export(
    repo_dir: &Path,
    to: &Path,
    opts: &ExportOptions,
    progress: &dyn Progress,
) -> Result<ExportReport> {
    if to.exists() {
        return Err(Error::invalid(
            to.display().to_string(),
            "already exists; export to a new directory",
        ));
    }
    let recipients = opts
        .recipients
        .iter()
        .map(|r| {
            age::x25519::Recipient::from_str(r)
                .map_err(|e| Error::invalid(format!("recipient {r}"), e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let loaded = repo::load(repo_dir)?;
    let src = Layout::new(repo_dir);
    let partial = PathBuf::from(format!("{}.partial", to.display()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(Error::io("remove stale", &partial))?;
    }
    let written = write_medium(&loaded, &src, &partial, &recipients, opts, progress);
    let report = match written {
        Ok(report) => report,
        Err(e) => {
            // Leave nothing half-written behind.
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
    };
    // A stick may be pulled as soon as the command returns: flush before the rename.
    fsutil::sync_filesystem(&partial)?;
    std::fs::rename(&partial, to).map_err(Error::io("rename medium into place", to))?;
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsutil::sync_dir(parent)?;
    }
    Ok(report)
}

/// Writes the medium's content into `partial` (which does not exist yet).
fn write_medium(
    loaded: &tough::Repository,
    src: &Layout,
    partial: &Path,
    recipients: &[age::x25519::Recipient],
    opts: &ExportOptions,
    progress: &dyn Progress,
) -> Result<ExportReport> {
    let scratch;
    let plain_root = if recipients.is_empty() {
        partial.to_path_buf()
    } else {
        scratch = tempfile::tempdir().map_err(Error::io("create scratch", std::env::temp_dir()))?;
        scratch.path().join("medium")
    };
    let dst = Layout::new(&plain_root);

    // Metadata: the whole root chain, then the current snapshot, targets and timestamp.
    let root_version = loaded.root().signed.version.get();
    for v in 1..=root_version {
        let name = format!("{v}.root.json");
        copy(&src.metadata().join(&name), &dst.metadata().join(&name))?;
    }
    let sv = loaded.snapshot().signed.version.get();
    let tv = loaded.targets().signed.version.get();
    for name in [
        "root.json".to_string(),
        format!("{sv}.snapshot.json"),
        format!("{tv}.targets.json"),
        "timestamp.json".to_string(),
    ] {
        copy(&src.metadata().join(&name), &dst.metadata().join(&name))?;
    }

    let all = repo::published(loaded)?;
    let selected: Vec<Published> = all
        .into_iter()
        .filter(|p| {
            opts.only.is_empty() || opts.only.iter().any(|o| *o == p.name || *o == p.target)
        })
        .collect();
    if let Some(missing) = opts
        .only
        .iter()
        .find(|o| !selected.iter().any(|p| p.name == **o || p.target == **o))
    {
        return Err(Error::NotFound(format!(
            "--only {missing}: no published bundle has that name or target"
        )));
    }
    let mut needed = BTreeSet::new();
    for p in &selected {
        let index = repo::read_index(loaded, p)?;
        copy(
            &src.target_file(&p.target, p.sha256()),
            &dst.target_file(&p.target, p.sha256()),
        )?;
        needed.extend(index.chunk_ids().into_iter().map(str::to_string));
    }
    let have = opts.have.as_ref().map(|h| &h.chunks);
    let (skip, copy_ids): (Vec<_>, Vec<_>) = needed
        .iter()
        .partition(|id| have.is_some_and(|h| h.contains(*id)));
    progress.set_len(copy_ids.len() as u64);
    let (src_chunks, dst_chunks) = (src.chunks(), dst.chunks());
    for id in &copy_ids {
        copy(&src_chunks.path(id), &dst_chunks.path(id))?;
        progress.inc(1);
    }
    if recipients.is_empty() {
        write_info(
            partial,
            &MediumInfo {
                format: MEDIUM_FORMAT.into(),
                encrypted: false,
                parts: Vec::new(),
            },
        )?;
    } else {
        std::fs::create_dir_all(partial).map_err(Error::io("create", partial))?;
        let parts = encrypt_tree(&plain_root, partial, recipients)?;
        write_info(
            partial,
            &MediumInfo {
                format: MEDIUM_FORMAT.into(),
                encrypted: true,
                parts,
            },
        )?;
    }
    let bytes = dir_size(partial)?;
    Ok(ExportReport {
        bundles: selected,
        chunks: copy_ids.len(),
        chunks_skipped: skip.len(),
        bytes,
        encrypted: !recipients.is_empty(),
    })
}

fn write_info(dir: &Path, info: &MediumInfo) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(info)
        .map_err(|e| Error::invalid("medium.json", e.to_string()))?;
    fsutil::atomic_write(&dir.join("medium.json"), &bytes)
}

/// Total bytes of regular files below `dir`.
pub fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for (_, path) in files_below(dir)? {
        total += std::fs::metadata(&path)
            .map_err(Error::io("stat", &path))?
            .len();
    }
    Ok(total)
}

/// Every regular file below `dir` as (relative path, absolute path), sorted.
fn files_below(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        for ent in std::fs::read_dir(&d).map_err(Error::io("list", &d))? {
            let ent = ent.map_err(Error::io("list", &d))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let ft = ent.file_type().map_err(Error::io("stat", ent.path()))?;
            if ft.is_dir() {
                stack.push((ent.path(), rel));
            } else if ft.is_file() {
                out.push((rel, ent.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes `plain` as a tar stream, age-encrypted to `recipients`, split into parts in `out`.
fn encrypt_tree(
    plain: &Path,
    out: &Path,
    recipients: &[age::x25519::Recipient],
) -> Result<Vec<String>> {
    let splitter = PartWriter::new(out);
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| Error::invalid("recipients", e.to_string()))?;
    let enc = encryptor
        .wrap_output(splitter)
        .map_err(Error::io("encrypt to", out))?;
    let mut tar = tar::Builder::new(enc);
    for (rel, path) in files_below(plain)? {
        let bytes = std::fs::read(&path).map_err(Error::io("read", &path))?;
        crate::build::append(&mut tar, &rel, &bytes)?;
    }
    let enc = tar.into_inner().map_err(Error::io("encrypt to", out))?;
    let splitter = enc.finish().map_err(Error::io("encrypt to", out))?;
    splitter.finish()
}

/// Splits a byte stream into numbered files of at most [`PART_SIZE`].
struct PartWriter {
    dir: PathBuf,
    parts: Vec<String>,
    current: Option<std::io::BufWriter<std::fs::File>>,
    written: u64,
}

impl PartWriter {
    fn new(dir: &Path) -> Self {
        PartWriter {
            dir: dir.to_path_buf(),
            parts: Vec::new(),
            current: None,
            written: 0,
        }
    }

    fn close_current(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.current.take() {
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<String>> {
        self.close_current()
            .map_err(Error::io("write", &self.dir))?;
        Ok(self.parts)
    }
}

impl Write for PartWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.current.is_none() || self.written >= PART_SIZE {
            self.close_current()?;
            let name = format!("payload.{:03}.age", self.parts.len());
            let f = std::fs::File::create(self.dir.join(&name))?;
            self.parts.push(name);
            self.current = Some(std::io::BufWriter::with_capacity(1 << 20, f));
            self.written = 0;
        }
        let room = (PART_SIZE - self.written).min(buf.len() as u64) as usize;
        let n = self
            .current
            .as_mut()
            .map_or(Ok(0), |w| w.write(&buf[..room]))?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.current.as_mut().map_or(Ok(()), |w| w.flush())
    }
}

/// Reads `medium.json` and, for an encrypted medium, decrypts it into `scratch`
/// with `identity`. Returns the directory holding the plain repository layout.
pub fn open_medium(
    dir: &Path,
    identity: Option<&age::x25519::Identity>,
    scratch: &Path,
) -> Result<PathBuf> {
    if std::fs::symlink_metadata(dir).is_err() {
        return Err(Error::NotFound(format!(
            "{}: no such directory; name the directory `hub export` wrote (where the stick is mounted)",
            dir.display()
        )));
    }
    let info_path = dir.join("medium.json");
    let bytes = fsutil::read_regular(&info_path, MAX_INFO_SIZE).map_err(|e| match e {
        Error::Truncated { what, .. } => Error::Truncated {
            what,
            detail: "not a medium (no medium.json); point at the directory `hub export` wrote"
                .into(),
        },
        other => other,
    })?;
    #[derive(Deserialize)]
    struct Head {
        format: String,
    }
    let head: Head = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(info_path.display().to_string(), e.to_string()))?;
    if head.format != MEDIUM_FORMAT {
        return Err(Error::UnknownFormat {
            what: info_path.display().to_string(),
            found: head.format,
            expected: MEDIUM_FORMAT,
        });
    }
    let info: MediumInfo = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(info_path.display().to_string(), e.to_string()))?;
    if !info.encrypted {
        return Ok(dir.to_path_buf());
    }
    let identity =
        identity.ok_or_else(|| Error::NotForThisSpoke("no age identity available".into()))?;
    let mut readers = Vec::new();
    for (i, part) in info.parts.iter().enumerate() {
        if *part != format!("payload.{i:03}.age") {
            return Err(Error::invalid(
                info_path.display().to_string(),
                format!("unexpected part name {part:?}"),
            ));
        }
        let p = dir.join(part);
        readers.push(fsutil::open_regular(&p, MAX_MEDIUM_SIZE)?);
    }
    let chained = readers
        .into_iter()
        .fold(Box::new(std::io::empty()) as Box<dyn Read>, |acc, f| {
            Box::new(acc.chain(std::io::BufReader::new(f)))
        });
    let decryptor = age::Decryptor::new(chained)
        .map_err(|e| Error::invalid("encrypted medium", e.to_string()))?;
    let reader = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|e| Error::NotForThisSpoke(e.to_string()))?;
    let out = scratch.join("medium");
    std::fs::create_dir_all(&out).map_err(Error::io("create", &out))?;
    unpack_safe(
        reader,
        &out,
        2 * crate::index::MAX_CHUNK_SIZE + crate::index::MAX_INDEX_SIZE,
        MAX_MEDIUM_SIZE,
    )?;
    Ok(out)
}
