//! The hub's key directory: one ed25519 PKCS#8 file per key, under a
//! subdirectory per TUF role, mode 0600, never inside the repository.

use crate::error::{Error, Result};
use crate::fsutil;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::key::Key;
use tough::schema::RoleType;
use tough::sign::Sign;

/// The four top-level TUF roles, in the order they are written.
pub const ROLES: [RoleType; 4] = [
    RoleType::Root,
    RoleType::Targets,
    RoleType::Snapshot,
    RoleType::Timestamp,
];

/// A directory of signing keys.
#[derive(Debug, Clone)]
pub struct KeyDir {
    root: PathBuf,
}

impl KeyDir {
    /// Opens (without creating) a key directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        KeyDir { root: root.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Refuses a key directory that sits inside `repo`, so keys can never be published.
    pub fn check_outside(&self, repo: &Path) -> Result<()> {
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        if abs(&self.root).starts_with(abs(repo)) {
            return Err(Error::Keys(format!(
                "the key directory {} is inside the repository {}; keep keys outside anything that is published",
                self.root.display(),
                repo.display()
            )));
        }
        Ok(())
    }

    fn role_dir(&self, role: RoleType) -> PathBuf {
        self.root.join(role.to_string())
    }

    /// Generates a new ed25519 key for `role`, stores it (0600) and returns its public TUF key and id.
    pub fn generate(&self, role: RoleType) -> Result<(String, Key)> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| Error::Keys("could not generate an ed25519 key".into()))?;
        let der = doc.as_ref().to_vec();
        let pair = tough::sign::parse_keypair(&der)
            .map_err(|e| Error::Keys(format!("generated key rejected: {e}")))?;
        let key = pair.tuf_key();
        let keyid = hex::encode(
            key.key_id()
                .map_err(|e| Error::Keys(format!("could not compute key id: {e}")))?
                .as_ref() as &[u8],
        );
        fsutil::create_private_dir(&self.root)?;
        fsutil::write_secret(&self.role_dir(role).join(format!("{keyid}.pk8")), &der)?;
        Ok((keyid, key))
    }

    /// Key ids whose private keys are present for `role`.
    pub fn keyids(&self, role: RoleType) -> Result<BTreeSet<String>> {
        let dir = self.role_dir(role);
        let mut out = BTreeSet::new();
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Ok(out);
        };
        for ent in rd {
            let ent = ent.map_err(Error::io("list keys in", &dir))?;
            if let Some(id) = ent
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".pk8"))
            {
                out.insert(id.to_string());
            }
        }
        Ok(out)
    }

    /// Every present key, as tough key sources.
    pub fn sources(&self) -> Result<Vec<Box<dyn KeySource>>> {
        let mut out: Vec<Box<dyn KeySource>> = Vec::new();
        for role in ROLES {
            for id in self.keyids(role)? {
                out.push(Box::new(LocalKeySource {
                    path: self.role_dir(role).join(format!("{id}.pk8")),
                }));
            }
        }
        Ok(out)
    }

    /// Moves a key out of use into `retired/` (kept so an operator can audit it).
    pub fn retire(&self, role: RoleType, keyid: &str) -> Result<()> {
        let from = self.role_dir(role).join(format!("{keyid}.pk8"));
        if !from.exists() {
            return Ok(());
        }
        let dir = self.root.join("retired");
        fsutil::create_private_dir(&dir)?;
        let to = dir.join(format!("{role}-{keyid}.pk8"));
        std::fs::rename(&from, &to).map_err(Error::io("retire key", &from))
    }
}
