//! The bundle index: the signed description of one bundle.
//!
//! An index lists every payload entry (path, mode, size, digest) with the
//! content-defined chunks it is made of, plus the bundle's manifest, an SBOM
//! and provenance. It is serialised as canonical JSON (OLPC), so its SHA-256
//! is stable: that digest is the bundle's CID and the TUF target hash.

use crate::error::{Error, Result};
use crate::fsutil::safe_relative;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// The index format this build writes and reads.
pub const INDEX_FORMAT: &str = "eurocomply-bundle/1";

/// Largest index a verifier will read (bytes).
pub const MAX_INDEX_SIZE: u64 = 64 * 1024 * 1024;

/// Largest single chunk (plain bytes) the format allows.
pub const MAX_CHUNK_SIZE: u64 = 1024 * 1024;

/// What a bundle carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BundleKind {
    /// A pack (environment, logic, driver, intelligence).
    Pack,
    /// A product manifest with pinned pack CIDs.
    Product,
    /// A model's weights and tokenizer.
    Model,
    /// An OS image (UKI).
    Os,
    /// A licence for one spoke: published on its own, so any number of
    /// spokes share one product bundle (each takes only its own licence).
    Licence,
}

impl BundleKind {
    /// The lowercase name used in target paths and output.
    pub fn as_str(self) -> &'static str {
        match self {
            BundleKind::Pack => "pack",
            BundleKind::Product => "product",
            BundleKind::Model => "model",
            BundleKind::Os => "os",
            BundleKind::Licence => "licence",
        }
    }
}

/// One chunk of an entry: stored zstd-compressed, addressed by the SHA-256 of the stored bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkRef {
    /// Hex SHA-256 of the compressed bytes as stored.
    pub id: String,
    /// Plain (decompressed) size.
    pub size: u64,
    /// Stored (compressed) size.
    pub stored: u64,
}

/// One regular file of the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Relative path with `/` separators.
    pub path: String,
    /// Unix mode: 0o644 or 0o755.
    pub mode: u32,
    /// Plain size in bytes.
    pub size: u64,
    /// Hex SHA-256 of the whole plain file (for SBOMs and audits).
    pub sha256: String,
    /// The chunks, in order.
    pub chunks: Vec<ChunkRef>,
}

/// Where a bundle came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// `sha256:` digest over the source tree (paths, modes and contents).
    pub source_digest: String,
    /// The tool and version that built it.
    pub builder: String,
    /// Build time (RFC 3339), from `SOURCE_DATE_EPOCH` when set.
    pub build_time: String,
}

/// The bundle index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleIndex {
    /// Always [`INDEX_FORMAT`].
    pub format: String,
    /// What the bundle carries.
    pub kind: BundleKind,
    /// Bundle name (`@scope/name` for packs).
    pub name: String,
    /// Semantic version.
    pub version: semver::Version,
    /// The kind-specific manifest (pack.json, model.json, the resolved product manifest, OS facts).
    pub manifest: serde_json::Value,
    /// Payload files, sorted by path.
    pub entries: Vec<Entry>,
    /// CycloneDX 1.5 SBOM of the payload.
    pub sbom: serde_json::Value,
    /// Provenance.
    pub provenance: Provenance,
}

impl BundleIndex {
    /// The canonical JSON bytes: what is signed, stored and hashed.
    pub fn to_canonical(&self) -> Result<Vec<u8>> {
        canonical_json(self)
    }

    /// Parses index bytes (already verified against signed metadata) and checks every invariant.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self> {
        if bytes.len() as u64 > MAX_INDEX_SIZE {
            return Err(Error::TooLarge {
                what: format!("index {origin}"),
                size: bytes.len() as u64,
                max: MAX_INDEX_SIZE,
            });
        }
        // Check the format tag before trusting the rest of the schema.
        #[derive(Deserialize)]
        struct Head {
            format: String,
        }
        let head: Head = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(origin, format!("not a bundle index: {e}")))?;
        if head.format != INDEX_FORMAT {
            return Err(Error::UnknownFormat {
                what: format!("bundle index {origin}"),
                found: head.format,
                expected: INDEX_FORMAT,
            });
        }
        let index: BundleIndex = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(origin, format!("malformed bundle index: {e}")))?;
        index.validate(origin)?;
        Ok(index)
    }

    /// Checks paths (relative, no traversal, no duplicates), modes and chunk sizes.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let mut seen = BTreeSet::new();
        for e in &self.entries {
            safe_relative(&e.path)?;
            if !seen.insert(e.path.as_str()) {
                return Err(Error::DuplicatePath {
                    path: e.path.clone(),
                });
            }
            if e.mode != 0o644 && e.mode != 0o755 {
                return Err(Error::invalid(
                    origin,
                    format!("{}: mode {:o} is not 644 or 755", e.path, e.mode),
                ));
            }
            let mut total = 0u64;
            for c in &e.chunks {
                if c.size > MAX_CHUNK_SIZE || c.stored > MAX_CHUNK_SIZE + MAX_CHUNK_SIZE / 8 + 1024
                {
                    return Err(Error::TooLarge {
                        what: format!("chunk {} of {}", c.id, e.path),
                        size: c.size.max(c.stored),
                        max: MAX_CHUNK_SIZE,
                    });
                }
                if c.id.len() != 64
                    || !c
                        .id
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                {
                    return Err(Error::invalid(
                        origin,
                        format!("{}: chunk id {:?} is not a sha256 hex", e.path, c.id),
                    ));
                }
                total = total.saturating_add(c.size);
            }
            if total != e.size {
                return Err(Error::invalid(
                    origin,
                    format!(
                        "{}: chunks add up to {total} bytes but the entry declares {}",
                        e.path, e.size
                    ),
                ));
            }
        }
        // A file may not also be used as a directory of another entry.
        for e in &self.entries {
            let mut prefix = e.path.as_str();
            while let Some((parent, _)) = prefix.rsplit_once('/') {
                if seen.contains(parent) {
                    return Err(Error::DuplicatePath {
                        path: parent.to_string(),
                    });
                }
                prefix = parent;
            }
        }
        Ok(())
    }

    /// Total plain payload size.
    pub fn payload_size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// Every chunk id the payload needs, deduplicated and sorted.
    pub fn chunk_ids(&self) -> BTreeSet<&str> {
        self.entries
            .iter()
            .flat_map(|e| e.chunks.iter().map(|c| c.id.as_str()))
            .collect()
    }

    /// The TUF target name under which this bundle is published,
    /// e.g. `pack_eu_reach-svhc_1.4.0.json`.
    pub fn target_name(&self) -> String {
        target_name(self.kind, &self.name, &self.version)
    }
}

/// The TUF target name for a bundle of `kind`, `name` and `version`. Names are flat
/// (no `/`): TUF clients disagree on where a consistent-snapshot hash goes in a
/// nested name (tough prefixes the whole name, python-tuf the basename).
pub fn target_name(kind: BundleKind, name: &str, version: &semver::Version) -> String {
    format!(
        "{}_{}_{}.json",
        kind.as_str(),
        name.trim_start_matches('@').replace('/', "_"),
        version
    )
}

/// Serialises `value` as canonical JSON (OLPC).
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, olpc_cjson::CanonicalFormatter::new());
    value
        .serialize(&mut ser)
        .map_err(|e| Error::invalid("canonical json", e.to_string()))?;
    Ok(out)
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The CID of index bytes: `sha256:<hex>`.
pub fn cid_of(index_bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(index_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_with(paths: &[&str]) -> BundleIndex {
        BundleIndex {
            format: INDEX_FORMAT.into(),
            kind: BundleKind::Pack,
            name: "@t/t".into(),
            version: semver::Version::new(1, 0, 0),
            manifest: serde_json::json!({}),
            entries: paths
                .iter()
                .map(|p| Entry {
                    path: p.to_string(),
                    mode: 0o644,
                    size: 0,
                    sha256: sha256_hex(b""),
                    chunks: Vec::new(),
                })
                .collect(),
            sbom: serde_json::json!({}),
            provenance: Provenance {
                source_digest: String::new(),
                builder: String::new(),
                build_time: String::new(),
            },
        }
    }

    fn parse_kind(paths: &[&str]) -> &'static str {
        let bytes = index_with(paths).to_canonical().unwrap();
        BundleIndex::parse(&bytes, "t")
            .map(|_| "ok")
            .unwrap_or_else(|e| e.kind())
    }

    #[test]
    fn unsafe_or_duplicate_paths_are_refused() {
        assert_eq!(parse_kind(&["a", "b/c"]), "ok");
        assert_eq!(parse_kind(&["../etc/passwd"]), "path_traversal");
        assert_eq!(parse_kind(&["a/../../x"]), "path_traversal");
        assert_eq!(parse_kind(&["/etc/passwd"]), "absolute_path");
        assert_eq!(parse_kind(&["a", "a"]), "duplicate_path");
        assert_eq!(parse_kind(&["a", "a/b"]), "duplicate_path");
    }

    #[test]
    fn unknown_formats_and_fields_are_refused() {
        let mut i = index_with(&["a"]);
        i.format = "eurocomply-bundle/2".into();
        let bytes = i.to_canonical().unwrap();
        assert_eq!(
            BundleIndex::parse(&bytes, "t").unwrap_err().kind(),
            "unknown_format"
        );
        let mut v: serde_json::Value = serde_json::to_value(index_with(&["a"])).unwrap();
        v["surprise"] = serde_json::json!(1);
        assert_eq!(
            BundleIndex::parse(&serde_json::to_vec(&v).unwrap(), "t")
                .unwrap_err()
                .kind(),
            "invalid"
        );
    }

    #[test]
    fn chunk_sizes_must_add_up_and_stay_bounded() {
        let mut i = index_with(&["a"]);
        i.entries[0].chunks.push(ChunkRef {
            id: "a".repeat(64),
            size: 10,
            stored: 5,
        });
        assert_eq!(i.validate("t").unwrap_err().kind(), "invalid");
        i.entries[0].size = 10;
        i.validate("t").unwrap();
        i.entries[0].chunks[0].size = MAX_CHUNK_SIZE + 1;
        i.entries[0].size = MAX_CHUNK_SIZE + 1;
        assert_eq!(i.validate("t").unwrap_err().kind(), "too_large");
    }

    #[test]
    fn cid_is_the_digest_of_canonical_bytes() {
        let bytes = index_with(&["a"]).to_canonical().unwrap();
        assert_eq!(cid_of(&bytes), format!("sha256:{}", sha256_hex(&bytes)));
        assert_eq!(index_with(&["a"]).target_name(), "pack_t_t_1.0.0.json");
    }
}
