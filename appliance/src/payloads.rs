//! Installed bundle payloads checked against the bundle indexes they were
//! installed from, so a payload file that went missing or changed is found
//! before anything relies on it.
//!
//! The agent verified each index against signed metadata at import and
//! stored it under `store/indexes/<hex>.json`, where `<hex>` is the bundle's
//! CID (the SHA-256 of the index bytes). A check re-hashes the stored index
//! against its CID, then compares every file the index lists with the
//! payload directory: a regular file of the listed size and, unless only
//! sizes are asked for, the listed SHA-256. Digests are cached per file by
//! device, inode, size and change time (`ctime`, which no user can set), so
//! repeated checks only re-hash what changed.

use crate::{DataDir, Error};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

/// Largest stored bundle index read (a model of many gigabytes lists a
/// few hundred thousand chunks).
const MAX_INDEX: u64 = 256 * 1024 * 1024;

/// How far a check goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Every listed file present, regular and of its size.
    Sizes,
    /// Sizes, and every file's SHA-256 (cached while the file is unchanged).
    Digests,
}

/// What identifies one version of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    ctime: (i64, i64),
    mtime: (i64, i64),
}

impl FileKey {
    fn of(md: &std::fs::Metadata) -> FileKey {
        FileKey {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            ctime: (md.ctime(), md.ctime_nsec()),
            mtime: (md.mtime(), md.mtime_nsec()),
        }
    }
}

/// The fields of a bundle index a check needs (the rest is ignored).
#[derive(Deserialize)]
struct Index {
    entries: Vec<Listed>,
}

#[derive(Deserialize)]
struct Listed {
    path: String,
    size: u64,
    sha256: String,
}

/// Checks installed payloads; holds the digest cache.
#[derive(Debug, Default)]
pub(crate) struct Payloads {
    digests: Mutex<HashMap<PathBuf, (FileKey, String)>>,
}

impl Payloads {
    /// Checks the payload of the bundle `cid` (named `what` in errors, e.g.
    /// "pack @eu/annexes 1.2.0") in `dir`. Returns the bytes checked.
    pub(crate) fn check(
        &self,
        dir: &DataDir,
        what: &str,
        cid: &str,
        depth: Depth,
    ) -> Result<u64, Error> {
        let lost = |detail: String| Error::StateLost {
            what: format!("{what}: {detail}"),
        };
        let hex = cid
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| lost(format!("the recorded CID {cid:?} is not a sha256 digest")))?;
        let index_path = dir.indexes().join(format!("{hex}.json"));
        let bytes = read_regular(&index_path, MAX_INDEX).map_err(|e| {
            lost(format!(
                "its bundle index {} cannot be read ({e})",
                index_path.display()
            ))
        })?;
        if hex::encode(Sha256::digest(&bytes)) != hex {
            return Err(lost(format!(
                "its bundle index {} no longer hashes to the CID it was installed under",
                index_path.display()
            )));
        }
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| {
            lost(format!(
                "its bundle index {} is unreadable ({e})",
                index_path.display()
            ))
        })?;
        let root = dir.payloads().join(hex);
        let mut total = 0;
        for file in &index.entries {
            let rel = Path::new(&file.path);
            if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
                return Err(lost(format!(
                    "its index lists {:?}, not a path inside the payload",
                    file.path
                )));
            }
            let path = root.join(rel);
            let shown = format!("bundles/{hex}/{}", file.path);
            let md = match std::fs::symlink_metadata(&path) {
                Ok(md) => md,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(lost(format!("{shown} is missing")))
                }
                Err(e) => return Err(lost(format!("{shown} cannot be read ({e})"))),
            };
            if !md.is_file() {
                return Err(lost(format!("{shown} is not a regular file")));
            }
            if md.len() != file.size {
                return Err(lost(format!(
                    "{shown} is {} bytes, the signed index says {}",
                    md.len(),
                    file.size
                )));
            }
            if depth == Depth::Digests && self.digest(&path, &md)? != file.sha256 {
                return Err(lost(format!(
                    "{shown} was altered: its SHA-256 is not the signed one"
                )));
            }
            total += file.size;
        }
        Ok(total)
    }

    /// The SHA-256 of `path`, from the cache while the file is unchanged.
    fn digest(&self, path: &Path, md: &std::fs::Metadata) -> Result<String, Error> {
        let key = FileKey::of(md);
        let mut cache = self
            .digests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((k, d)) = cache.get(path) {
            if *k == key {
                return Ok(d.clone());
            }
        }
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        let mut f = std::fs::File::open(path).map_err(io)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let digest = hex::encode(hasher.finalize());
        // Cached under the key seen before hashing: a change while hashing
        // moves ctime, so the next check hashes again.
        cache.insert(path.to_owned(), (key, digest.clone()));
        Ok(digest)
    }
}

/// Reads a regular file of at most `max` bytes.
fn read_regular(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let md = std::fs::symlink_metadata(path)?;
    if !md.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if md.len() > max {
        return Err(std::io::Error::other(format!(
            "{} bytes, over the {max}-byte limit",
            md.len()
        )));
    }
    let mut bytes = Vec::with_capacity(md.len() as usize);
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}
