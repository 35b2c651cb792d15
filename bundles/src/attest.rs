//! Documents a spoke signs for people outside it: the report it sends back to
//! the hub (`eurocomply-report/1`), evidence packs (`eurocomply-evidence/1`),
//! backup manifests (`eurocomply-backup/1`), export receipts
//! (`eurocomply-export-receipt/1`) and destruction certificates
//! (`eurocomply-destruction/1`).
//! A document names its signer as a `did:key` (ed25519) and carries an
//! ed25519 signature over the canonical JSON of everything but the signature,
//! so anyone can check it with nothing but the file.

use crate::error::{Error, Result};
use crate::index::canonical_json;
use aws_lc_rs::signature::{UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

/// The spoke's report for the hub.
pub const REPORT_FORMAT: &str = "eurocomply-report/1";
/// An evidence pack for one applied change.
pub const EVIDENCE_FORMAT: &str = "eurocomply-evidence/1";
/// The manifest of one backup: every file with its digest and chunks.
pub const BACKUP_FORMAT: &str = "eurocomply-backup/1";
/// The receipt of an export: every exported file with its digest.
pub const EXPORT_RECEIPT_FORMAT: &str = "eurocomply-export-receipt/1";
/// The certificate that a spoke's data was destroyed.
pub const DESTRUCTION_FORMAT: &str = "eurocomply-destruction/1";
/// A signed checkpoint of the spoke's audit chain (`audit_entries`, `audit_head`).
pub const CHECKPOINT_FORMAT: &str = "eurocomply-audit-checkpoint/1";
/// Every format `hub report verify` accepts.
pub const FORMATS: [&str; 6] = [
    REPORT_FORMAT,
    EVIDENCE_FORMAT,
    BACKUP_FORMAT,
    EXPORT_RECEIPT_FORMAT,
    DESTRUCTION_FORMAT,
    CHECKPOINT_FORMAT,
];
/// Largest signed document read.
const MAX_DOCUMENT: usize = 64 * 1024 * 1024;

/// A signed document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed {
    /// What the body is ([`REPORT_FORMAT`], [`EVIDENCE_FORMAT`]).
    pub format: String,
    /// `did:key:z…` of the ed25519 key that signed.
    pub signer: String,
    /// The content.
    pub body: serde_json::Value,
    /// Hex ed25519 signature over the canonical JSON of `format`, `signer`, `body`.
    pub signature: String,
}

#[derive(Serialize)]
struct Unsigned<'a> {
    format: &'a str,
    signer: &'a str,
    body: &'a serde_json::Value,
}

fn message(format: &str, signer: &str, body: &serde_json::Value) -> Result<Vec<u8>> {
    canonical_json(&Unsigned {
        format,
        signer,
        body,
    })
}

/// The `did:key` of an ed25519 public key.
pub fn did_key(public: &[u8]) -> String {
    let mut multicodec = vec![0xed, 0x01];
    multicodec.extend_from_slice(public);
    format!("did:key:z{}", bs58::encode(multicodec).into_string())
}

fn public_key(did: &str) -> Result<Vec<u8>> {
    let bad = || {
        Error::invalid(
            did,
            "not an ed25519 did:key (did:key:z… with the 0xed01 multicodec)",
        )
    };
    let encoded = did.strip_prefix("did:key:z").ok_or_else(bad)?;
    let bytes = bs58::decode(encoded).into_vec().map_err(|_| bad())?;
    match bytes.as_slice() {
        [0xed, 0x01, key @ ..] if key.len() == 32 => Ok(key.to_vec()),
        _ => Err(bad()),
    }
}

/// Signs `body` as `signer` with `sign` (the holder of the private key).
pub fn sign(
    format: &str,
    signer: &str,
    body: serde_json::Value,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Result<Signed> {
    let signature = hex::encode(sign(&message(format, signer, &body)?));
    Ok(Signed {
        format: format.to_string(),
        signer: signer.to_string(),
        body,
        signature,
    })
}

/// Parses and checks a signed document of the expected format; `origin`
/// names the file in errors.
pub fn verify(bytes: &[u8], format: &str, origin: &str) -> Result<Signed> {
    if bytes.len() > MAX_DOCUMENT {
        return Err(Error::invalid(
            origin,
            format!("larger than {MAX_DOCUMENT} bytes"),
        ));
    }
    let doc: Signed = serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(origin, format!("not a signed spoke document: {e}")))?;
    if doc.format != format {
        return Err(Error::invalid(
            origin,
            format!("is a {:?} document, not {format:?}", doc.format),
        ));
    }
    let key = public_key(&doc.signer)?;
    let signature = hex::decode(&doc.signature)
        .map_err(|_| Error::invalid(origin, "the signature is not hex"))?;
    UnparsedPublicKey::new(&ED25519, key)
        .verify(&message(&doc.format, &doc.signer, &doc.body)?, &signature)
        .map_err(|_| Error::BadSignature {
            role: format!("{format} {origin}"),
            keyid: doc.signer.clone(),
        })?;
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};

    #[test]
    fn sign_verify_and_tamper() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pair =
            Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref())
                .unwrap();
        let did = did_key(pair.public_key().as_ref());
        let doc = sign(
            REPORT_FORMAT,
            &did,
            serde_json::json!({"counts": {"products": 3}}),
            |m| pair.sign(m).as_ref().to_vec(),
        )
        .unwrap();
        let bytes = serde_json::to_vec(&doc).unwrap();
        assert_eq!(verify(&bytes, REPORT_FORMAT, "r.json").unwrap(), doc);
        assert_eq!(
            verify(&bytes, EVIDENCE_FORMAT, "r.json")
                .unwrap_err()
                .kind(),
            "invalid"
        );
        let tampered = String::from_utf8(bytes)
            .unwrap()
            .replace("\"products\":3", "\"products\":4");
        assert_eq!(
            verify(tampered.as_bytes(), REPORT_FORMAT, "r.json")
                .unwrap_err()
                .kind(),
            "bad_signature"
        );
    }
}
