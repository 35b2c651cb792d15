//! Reading bundle files (the output of `hub … build`) and other tar streams safely.
//!
//! Nothing in a tar is trusted: entries must be regular files or directories
//! with safe relative paths, sizes are capped, and everything lands inside a
//! staging directory.

use crate::chunks::ChunkStore;
use crate::error::{Error, Result};
use crate::fsutil::safe_relative;
use crate::index::{cid_of, sha256_hex, BundleIndex, MAX_CHUNK_SIZE, MAX_INDEX_SIZE};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

/// A bundle file whose chunks were verified into a store.
#[derive(Debug, Clone)]
pub struct StagedBundle {
    /// The parsed, validated index.
    pub index: BundleIndex,
    /// Its canonical bytes.
    pub index_bytes: Vec<u8>,
    /// Its CID.
    pub cid: String,
}

fn check_entry_type(entry: &tar::Entry<impl Read>, path: &str) -> Result<()> {
    let t = entry.header().entry_type();
    if t.is_symlink() || t.is_hard_link() {
        return Err(Error::Link { path: path.into() });
    }
    if t.is_block_special() || t.is_character_special() || t.is_fifo() {
        return Err(Error::DeviceNode { path: path.into() });
    }
    Ok(())
}

fn entry_path(entry: &tar::Entry<impl Read>) -> Result<String> {
    let raw = entry.path_bytes();
    let s =
        std::str::from_utf8(&raw).map_err(|_| Error::invalid("tar", "entry path is not UTF-8"))?;
    Ok(s.trim_end_matches('/').to_string())
}

/// Reads a bundle file, verifying each chunk against its name into `store`,
/// then checks the index names exactly the chunks that were present or already stored.
pub fn read_bundle_file(path: &Path, store: &ChunkStore) -> Result<StagedBundle> {
    let f = crate::fsutil::open_regular(path, crate::medium::MAX_MEDIUM_SIZE)?;
    let mut ar = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, f));
    let origin = path.display().to_string();
    let mut index_bytes = None;
    let mut seen = BTreeSet::new();
    for entry in ar.entries().map_err(Error::io("read bundle", path))? {
        let mut entry = entry.map_err(Error::io("read bundle", path))?;
        let name = entry_path(&entry)?;
        check_entry_type(&entry, &name)?;
        safe_relative(&name)?;
        if index_bytes.is_some() {
            return Err(Error::invalid(
                &origin,
                format!("{name} follows index.json; the index must be last"),
            ));
        }
        let size = entry
            .header()
            .size()
            .map_err(Error::io("read bundle", path))?;
        if name == "index.json" {
            if size > MAX_INDEX_SIZE {
                return Err(Error::TooLarge {
                    what: format!("{origin}: index.json"),
                    size,
                    max: MAX_INDEX_SIZE,
                });
            }
            let mut buf = Vec::with_capacity(size as usize);
            entry
                .read_to_end(&mut buf)
                .map_err(Error::io("read index", path))?;
            index_bytes = Some(buf);
            continue;
        }
        let id = name
            .strip_prefix("chunks/")
            .and_then(|n| n.strip_suffix(".zst"))
            .ok_or_else(|| Error::invalid(&origin, format!("unexpected entry {name}")))?
            .to_string();
        if size > MAX_CHUNK_SIZE * 2 {
            return Err(Error::TooLarge {
                what: format!("{origin}: {name}"),
                size,
                max: MAX_CHUNK_SIZE * 2,
            });
        }
        let mut buf = Vec::with_capacity(size as usize);
        entry
            .read_to_end(&mut buf)
            .map_err(Error::io("read chunk", path))?;
        let found = sha256_hex(&buf);
        if found != id {
            return Err(Error::DigestMismatch {
                what: format!("{origin}: {name}"),
                expected: id,
                found,
            });
        }
        if !seen.insert(id.clone()) {
            return Err(Error::DuplicatePath { path: name });
        }
        store.put(&id, &buf)?;
    }
    let index_bytes = index_bytes.ok_or_else(|| Error::Truncated {
        what: origin.clone(),
        detail: "no index.json".into(),
    })?;
    let index = BundleIndex::parse(&index_bytes, &origin)?;
    if index.to_canonical()? != index_bytes {
        return Err(Error::invalid(
            &origin,
            "index.json is not in canonical form",
        ));
    }
    for id in index.chunk_ids() {
        if !seen.contains(id) && !store.contains(id) {
            return Err(Error::Truncated {
                what: format!("{origin}: chunk {id}"),
                detail: "named by the index but not in the bundle".into(),
            });
        }
    }
    Ok(StagedBundle {
        cid: cid_of(&index_bytes),
        index,
        index_bytes,
    })
}

/// Unpacks a tar stream into `dest` (which must exist and be empty), allowing
/// only regular files and directories with safe relative paths, each at most
/// `max_file` bytes and `max_total` in all.
pub fn unpack_safe(reader: impl Read, dest: &Path, max_file: u64, max_total: u64) -> Result<()> {
    let mut ar = tar::Archive::new(reader);
    let mut total = 0u64;
    let mut seen = BTreeSet::new();
    for entry in ar.entries().map_err(Error::io("read archive", dest))? {
        let mut entry = entry.map_err(Error::io("read archive", dest))?;
        let name = entry_path(&entry)?;
        check_entry_type(&entry, &name)?;
        let rel = safe_relative(&name)?;
        if !seen.insert(name.clone()) {
            return Err(Error::DuplicatePath { path: name });
        }
        let target = dest.join(&rel);
        let t = entry.header().entry_type();
        if t.is_dir() {
            std::fs::create_dir_all(&target).map_err(Error::io("create directory", &target))?;
            continue;
        }
        if !t.is_file() {
            return Err(Error::invalid(&name, "unsupported tar entry type"));
        }
        let size = entry
            .header()
            .size()
            .map_err(Error::io("read archive", dest))?;
        total = total.saturating_add(size);
        if size > max_file || total > max_total {
            return Err(Error::TooLarge {
                what: name,
                size: size.max(total),
                max: max_file.min(max_total),
            });
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
        }
        // Parents were created by us from checked components, so they are real directories.
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(Error::io("create", &target))?;
        let copied = std::io::copy(&mut (&mut entry).take(size), &mut out)
            .map_err(Error::io("write", &target))?;
        if copied != size {
            return Err(Error::Truncated {
                what: name,
                detail: format!("{copied} of {size} bytes"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(setup: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        setup(&mut b);
        b.into_inner().unwrap()
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h
    }

    fn unpack_kind(bytes: &[u8]) -> &'static str {
        let dir = tempfile::tempdir().unwrap();
        unpack_safe(bytes, dir.path(), 1 << 20, 1 << 21)
            .map(|_| "ok")
            .unwrap_or_else(|e| e.kind())
    }

    #[test]
    fn unpack_refuses_links_devices_and_escapes() {
        let ok = tar_with(|b| {
            b.append_data(&mut header(tar::EntryType::Regular, 2), "a/b", &b"hi"[..])
                .unwrap()
        });
        assert_eq!(unpack_kind(&ok), "ok");
        let sym = tar_with(|b| {
            let mut h = header(tar::EntryType::Symlink, 0);
            b.append_link(&mut h, "evil", "/etc/passwd").unwrap();
        });
        assert_eq!(unpack_kind(&sym), "link");
        let hard = tar_with(|b| {
            let mut h = header(tar::EntryType::Link, 0);
            b.append_link(&mut h, "evil", "a").unwrap();
        });
        assert_eq!(unpack_kind(&hard), "link");
        let dev = tar_with(|b| {
            b.append_data(&mut header(tar::EntryType::Char, 0), "tty", &b""[..])
                .unwrap()
        });
        assert_eq!(unpack_kind(&dev), "device_node");
        let dup = tar_with(|b| {
            b.append_data(&mut header(tar::EntryType::Regular, 1), "x", &b"1"[..])
                .unwrap();
            b.append_data(&mut header(tar::EntryType::Regular, 1), "x", &b"2"[..])
                .unwrap();
        });
        assert_eq!(unpack_kind(&dup), "duplicate_path");
        let big = tar_with(|b| {
            let data = vec![0u8; (1 << 20) + 1];
            b.append_data(
                &mut header(tar::EntryType::Regular, data.len() as u64),
                "big",
                data.as_slice(),
            )
            .unwrap();
        });
        assert_eq!(unpack_kind(&big), "too_large");
    }

    /// A one-entry tar whose name bytes are written directly (tar::Builder refuses bad names).
    fn raw_tar(name: &[u8]) -> Vec<u8> {
        let mut h = header(tar::EntryType::Regular, 1);
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        let mut bytes = h.as_bytes().to_vec();
        bytes.extend_from_slice(b"x");
        bytes.resize(512 * 4, 0);
        bytes
    }

    #[test]
    fn unpack_refuses_traversal_written_into_raw_headers() {
        assert_eq!(unpack_kind(&raw_tar(b"../escape")), "path_traversal");
        assert_eq!(unpack_kind(&raw_tar(b"/abs")), "absolute_path");
        assert_eq!(unpack_kind(&raw_tar(b"fine")), "ok");
    }
}
