//! The content-addressed object store for uploaded files: `ab/<sha256>`,
//! written atomically (temporary file, fsync, rename, fsync of the directory)
//! and checked against its name when read.

use crate::Error;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Uploaded files by SHA-256.
#[derive(Debug, Clone)]
pub(crate) struct ObjectStore {
    root: PathBuf,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

impl ObjectStore {
    pub(crate) fn new(root: PathBuf) -> Self {
        ObjectStore { root }
    }

    fn path(&self, digest: &str) -> Result<PathBuf, Error> {
        if digest.len() != 64
            || !digest
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(Error::Invalid(format!(
                "{digest:?} is not an object digest"
            )));
        }
        Ok(self.root.join(&digest[..2]).join(digest))
    }

    /// Stores `bytes` and returns their SHA-256 (hex). Storing the same bytes twice is a no-op.
    pub(crate) fn put(&self, bytes: &[u8]) -> Result<String, Error> {
        let digest = hex::encode(Sha256::digest(bytes));
        let path = self.path(&digest)?;
        if path.is_file() {
            return Ok(digest);
        }
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
        tmp.write_all(bytes).map_err(io(&path))?;
        tmp.as_file().sync_all().map_err(io(&path))?;
        tmp.persist(&path).map_err(|e| Error::Io {
            path: path.clone(),
            source: e.error,
        })?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        Ok(digest)
    }

    /// Reads an object and checks it still has its digest.
    pub(crate) fn get(&self, digest: &str) -> Result<Vec<u8>, Error> {
        let path = self.path(digest)?;
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        if hex::encode(Sha256::digest(&bytes)) != digest {
            return Err(Error::DataDir(format!(
                "object {} no longer matches its digest (disk corruption or tampering); restore it from a backup",
                path.display()
            )));
        }
        Ok(bytes)
    }

    /// Whether an object is present (its content not read).
    pub(crate) fn present(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|p| p.is_file())
    }

    /// Whether an object is present and intact.
    pub(crate) fn check(&self, digest: &str) -> bool {
        self.get(digest).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let s = ObjectStore::new(dir.path().to_path_buf());
        let d = s.put(b"hello").unwrap();
        assert_eq!(s.put(b"hello").unwrap(), d);
        assert_eq!(s.get(&d).unwrap(), b"hello");
        std::fs::write(s.path(&d).unwrap(), b"HELLO").unwrap();
        assert!(!s.check(&d));
        assert!(s.get("../../etc/passwd").is_err());
    }
}
