//! The manifests that describe what a bundle is: `pack.json`, `model.json`
//! and the product manifest (YAML, in the shape of seed 000 §2).

use crate::error::{Error, Result};
use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The four pack types of the registry design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackType {
    /// Workspaces and entity schemas: the "distro".
    Environment,
    /// Rules for the compliance kernel.
    Logic,
    /// Connectors.
    Driver,
    /// Reference data.
    Intelligence,
}

/// How far a pack's publisher is trusted; ordered community < verified < certified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustTier {
    /// Anyone may publish.
    Community,
    /// Publisher identity verified.
    Verified,
    /// Reviewed and certified.
    Certified,
}

/// `pack.json`: the manifest at the root of every pack source directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackManifest {
    /// Scoped name, e.g. `@eu/reach-svhc`.
    pub name: String,
    /// Semantic version.
    pub version: Version,
    /// Pack type.
    #[serde(rename = "type")]
    pub pack_type: PackType,
    /// Range of kernel (handler VM) versions this pack runs on.
    pub handler_vm_version: VersionReq,
    /// Other packs this one needs, by semver range.
    #[serde(default)]
    pub dependencies: BTreeMap<String, VersionReq>,
    /// Trust tier claimed by the publisher.
    pub trust_tier: TrustTier,
    /// Whether the spoke may apply updates of this pack by itself when the simulator shows no change.
    #[serde(default)]
    pub safe_auto_update: bool,
    /// `public` (the registry federation) or `private` (one tenant's own).
    /// Private packs may depend on public ones, never the reverse.
    #[serde(default)]
    pub visibility: Visibility,
    /// One line for people.
    #[serde(default)]
    pub description: String,
}

/// Where a pack is published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// In the public registry federation.
    #[default]
    Public,
    /// A tenant's own pack.
    Private,
}

impl PackManifest {
    /// Parses and validates `pack.json` bytes; `origin` names the file in errors.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self> {
        let m: PackManifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(origin, format!("not a valid pack.json: {e}")))?;
        validate_scoped_name(&m.name, origin)?;
        for dep in m.dependencies.keys() {
            validate_scoped_name(dep, origin)?;
        }
        Ok(m)
    }
}

/// Checks a pack name of the form `@scope/name` (lowercase letters, digits, `-`, `.`, `_`).
pub fn validate_scoped_name(name: &str, origin: &str) -> Result<()> {
    let ok_part = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
            && !s.starts_with('.')
    };
    match name.strip_prefix('@').and_then(|rest| rest.split_once('/')) {
        Some((scope, local)) if ok_part(scope) && ok_part(local) => Ok(()),
        _ => Err(Error::invalid(
            origin,
            format!("pack name {name:?} must look like @scope/name (lowercase letters, digits, '-', '.', '_')"),
        )),
    }
}

/// Checks a plain bundle name (products, models, OS): lowercase letters, digits, `-`, `.`, `_`.
pub fn validate_plain_name(name: &str, origin: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            origin,
            format!("name {name:?} must be lowercase letters, digits, '-', '.', '_'"),
        ))
    }
}

/// `model.json`: the manifest at the root of a model source directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelManifest {
    /// Model name, e.g. `smollm2-135m-instruct`.
    pub name: String,
    /// Semantic version of this packaging of the model.
    pub version: Version,
    /// What the model does: `embedding` or `generation`.
    pub task: String,
    /// Weight format, e.g. `gguf` or `safetensors`.
    pub format: String,
    /// Where the weights came from (package and version), for provenance.
    #[serde(default)]
    pub source: String,
    /// One line for people.
    #[serde(default)]
    pub description: String,
}

impl ModelManifest {
    /// Parses and validates `model.json` bytes.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self> {
        let m: ModelManifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(origin, format!("not a valid model.json: {e}")))?;
        validate_plain_name(&m.name, origin)?;
        if !["embedding", "generation"].contains(&m.task.as_str()) {
            return Err(Error::invalid(
                origin,
                "task must be \"embedding\" or \"generation\"",
            ));
        }
        Ok(m)
    }
}

/// A product manifest (seed 000 §2): which packs make up a commercial product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductManifest {
    /// Identity of the product.
    pub product: ProductInfo,
    /// Range of OS versions the product runs on.
    pub os: OsRequirement,
    /// Packs to install.
    pub packs: Vec<PackRequirement>,
    /// Tier A model configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai: Option<AiRequirement>,
    /// Default tenant configuration (kept as data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<serde_json::Value>,
    /// Billing plans (kept as data).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plans: Vec<serde_json::Value>,
}

/// `product:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductInfo {
    /// Product id, e.g. `eurocomply-cosmetics`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Version of the product manifest.
    pub version: Version,
    /// Description.
    #[serde(default)]
    pub description: String,
}

/// `os:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsRequirement {
    /// Accepted OS versions.
    pub version: VersionReq,
}

/// One entry of `packs:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackRequirement {
    /// Pack name.
    pub name: String,
    /// Accepted versions.
    pub version: VersionReq,
    /// Expected pack type.
    #[serde(rename = "type")]
    pub pack_type: PackType,
    /// Whether the product cannot work without it.
    #[serde(default)]
    pub required: bool,
}

/// `ai:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AiRequirement {
    /// Model name.
    pub self_hosted_model: String,
    /// Accepted model versions.
    pub model_version: VersionReq,
}

impl ProductManifest {
    /// Parses and validates a product manifest (YAML).
    pub fn parse_yaml(bytes: &[u8], origin: &str) -> Result<Self> {
        let m: ProductManifest = serde_yaml::from_slice(bytes)
            .map_err(|e| Error::invalid(origin, format!("not a valid product manifest: {e}")))?;
        validate_plain_name(&m.product.id, origin)?;
        for p in &m.packs {
            validate_scoped_name(&p.name, origin)?;
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_manifest_rejects_unknown_fields_and_bad_names() {
        let good = br#"{"name":"@eu/reach-svhc","version":"1.4.0","type":"logic","handler_vm_version":"^1.0.0","trust_tier":"verified"}"#;
        let m = PackManifest::parse(good, "pack.json").unwrap();
        assert_eq!(m.pack_type, PackType::Logic);
        let unknown = br#"{"name":"@eu/x","version":"1.0.0","type":"logic","handler_vm_version":"^1","trust_tier":"verified","evil":1}"#;
        assert_eq!(
            PackManifest::parse(unknown, "p").unwrap_err().kind(),
            "invalid"
        );
        let bad_name = br#"{"name":"eu/x","version":"1.0.0","type":"logic","handler_vm_version":"^1","trust_tier":"verified"}"#;
        assert!(PackManifest::parse(bad_name, "p")
            .unwrap_err()
            .to_string()
            .contains("@scope/name"));
    }

    #[test]
    fn trust_tiers_are_ordered() {
        assert!(TrustTier::Community < TrustTier::Verified);
        assert!(TrustTier::Verified < TrustTier::Certified);
    }
}

/// Format tag of a licence.
pub const LICENCE_FORMAT: &str = "eurocomply-licence/1";

/// A licence for one spoke, carried in (and signed with) a product bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Licence {
    /// [`LICENCE_FORMAT`].
    pub format: String,
    /// The spoke's `did:key`; other spokes refuse the bundle.
    pub spoke: String,
    /// Product id.
    pub product: String,
    /// Plan id from the manifest's `plans`.
    pub plan: String,
    /// Most products (None: unlimited).
    pub max_products: Option<u64>,
    /// Most users (None: unlimited).
    pub max_users: Option<u64>,
    /// Most AI requests (embed, chat, ask) per day, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ai_requests_per_day: Option<u64>,
    /// Last day it is valid (YYYY-MM-DD).
    pub expires: String,
}

impl Licence {
    /// The name of the licence bundle for `spoke` (a did:key) and `product`:
    /// `PRODUCT/KEY`, the key being the did:key without its prefix (names
    /// become file names on media, and FAT has no colons).
    pub fn bundle_name(product: &str, spoke: &str) -> Result<String> {
        let key = spoke.strip_prefix("did:key:").filter(|k| {
            k.starts_with('z') && k.len() > 1 && k.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        match key {
            Some(key) => Ok(format!("{product}/{key}")),
            None => Err(Error::invalid(
                "licence",
                format!("{spoke:?} is not a spoke did:key (see `spoke identity`)"),
            )),
        }
    }

    /// The spoke a licence bundle named `name` is for (its did:key), if
    /// the name has the form [`Licence::bundle_name`] writes.
    pub fn spoke_of_bundle(name: &str) -> Option<String> {
        let (_, key) = name.rsplit_once('/')?;
        Some(format!("did:key:{key}"))
    }

    /// A licence for `spoke` on `plan` of `product`, with the plan's limits.
    pub fn for_plan(
        product: &ProductManifest,
        spoke: &str,
        plan: &str,
        expires: &str,
    ) -> Result<Licence> {
        let origin = "licence";
        if !spoke.starts_with("did:key:z") {
            return Err(Error::invalid(
                origin,
                format!("{spoke:?} is not a spoke did:key (see `spoke identity`)"),
            ));
        }
        expires.parse::<jiff::civil::Date>().map_err(|_| {
            Error::invalid(
                origin,
                format!("expiry {expires:?} is not a date (YYYY-MM-DD)"),
            )
        })?;
        let p = product
            .plans
            .iter()
            .find(|p| p.get("id").and_then(|v| v.as_str()) == Some(plan))
            .ok_or_else(|| {
                let ids: Vec<&str> = product
                    .plans
                    .iter()
                    .filter_map(|p| p.get("id")?.as_str())
                    .collect();
                Error::invalid(
                    origin,
                    format!(
                        "no plan {plan:?} in the product manifest; plans: {}",
                        ids.join(", ")
                    ),
                )
            })?;
        let limit = |key: &str| -> Result<Option<u64>> {
            match p.get(key) {
                None => Ok(None),
                Some(v) if v.as_str() == Some("unlimited") => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                    Error::invalid(
                        origin,
                        format!("plan {plan}: {key} must be a number or \"unlimited\""),
                    )
                }),
            }
        };
        Ok(Licence {
            format: LICENCE_FORMAT.into(),
            spoke: spoke.into(),
            product: product.product.id.clone(),
            plan: plan.into(),
            max_products: limit("max_products")?,
            max_users: limit("max_users")?,
            max_ai_requests_per_day: limit("max_ai_requests_per_day")?,
            expires: expires.into(),
        })
    }
}
