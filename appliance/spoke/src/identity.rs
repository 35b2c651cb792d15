//! The spoke's identity: an ed25519 signing key published as a `did:key`, and
//! an age X25519 identity that hubs encrypt media to. Both secrets are written
//! 0600 inside a 0700 directory and never printed.

use crate::Error;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use bundles::fsutil;
use serde::Serialize;
use std::path::Path;

const SIGNING_KEY: &str = "ed25519.pk8";
const AGE_KEY: &str = "age.key";

/// The public half of a spoke's identity.
#[derive(Debug, Clone, Serialize)]
pub struct PublicIdentity {
    /// `did:key:z…` of the ed25519 key.
    pub did: String,
    /// age recipient (`age1…`) for encrypted media.
    pub age_recipient: String,
}

/// Creates both keys in `dir` (which must not hold them yet).
pub fn create(dir: &Path) -> Result<PublicIdentity, Error> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| Error::Identity("cannot generate an ed25519 key".into()))?;
    fsutil::write_secret(&dir.join(SIGNING_KEY), doc.as_ref())?;
    let age = age::x25519::Identity::generate();
    use age::secrecy::ExposeSecret;
    fsutil::write_secret(
        &dir.join(AGE_KEY),
        format!("{}\n", age.to_string().expose_secret()).as_bytes(),
    )?;
    load_public(dir)
}

/// Reads the public identity.
pub fn load_public(dir: &Path) -> Result<PublicIdentity, Error> {
    let pair = signing_key(dir)?;
    Ok(PublicIdentity {
        did: bundles::attest::did_key(pair.public_key().as_ref()),
        age_recipient: age_identity(dir)?.to_public().to_string(),
    })
}

/// Signs a document as this spoke (`bundles::attest` format).
pub fn sign(
    dir: &Path,
    format: &str,
    body: serde_json::Value,
) -> Result<bundles::attest::Signed, Error> {
    Signer::load(dir)?.sign(format, body)
}

/// The spoke's signing key held in memory, for signing after the key files
/// are gone (the destruction certificate).
pub struct Signer {
    pair: Ed25519KeyPair,
    /// The spoke's `did:key`.
    pub did: String,
}

impl Signer {
    /// Loads the signing key from the identity directory.
    pub fn load(dir: &Path) -> Result<Signer, Error> {
        let pair = signing_key(dir)?;
        let did = bundles::attest::did_key(pair.public_key().as_ref());
        Ok(Signer { pair, did })
    }

    /// Signs `body` as a `format` document.
    pub fn sign(
        &self,
        format: &str,
        body: serde_json::Value,
    ) -> Result<bundles::attest::Signed, Error> {
        Ok(bundles::attest::sign(format, &self.did, body, |m| {
            self.pair.sign(m).as_ref().to_vec()
        })?)
    }
}

fn signing_key(dir: &Path) -> Result<Ed25519KeyPair, Error> {
    let path = dir.join(SIGNING_KEY);
    let der = std::fs::read(&path)
        .map_err(|e| Error::Identity(format!("read {}: {e}", path.display())))?;
    Ed25519KeyPair::from_pkcs8(&der)
        .map_err(|_| Error::Identity(format!("{} is not an ed25519 PKCS#8 key", path.display())))
}

/// The age identity used to decrypt media sent to this spoke.
pub fn age_identity(dir: &Path) -> Result<age::x25519::Identity, Error> {
    let path = dir.join(AGE_KEY);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Identity(format!("read {}: {e}", path.display())))?;
    text.trim()
        .parse()
        .map_err(|e| Error::Identity(format!("{} is not an age identity: {e}", path.display())))
}
