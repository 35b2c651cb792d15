//! Building bundles from source trees: deterministic, chunked, with SBOM and provenance.
//!
//! A bundle file is an uncompressed tar holding `chunks/<id>.zst` entries (in
//! order of first use) followed by `index.json` (canonical JSON). Every header
//! field is fixed (mtime 0, uid/gid 0, mode 0644), so the same input gives the
//! same bytes.

use crate::chunks;
use crate::error::{Error, Result};
use crate::index::{cid_of, BundleIndex, BundleKind, Entry, Provenance, INDEX_FORMAT};
use crate::manifest::{ModelManifest, PackManifest, ProductManifest};
use crate::Progress;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::{BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Largest source tree a build accepts (bytes).
pub const MAX_SOURCE_SIZE: u64 = 64 * 1024 * 1024 * 1024;

/// Options common to every build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Recorded build time; take it from `SOURCE_DATE_EPOCH` for reproducible builds.
    pub build_time: jiff::Timestamp,
    /// Builder identity recorded in provenance.
    pub builder: String,
}

impl BuildOptions {
    /// Options with the build time from `SOURCE_DATE_EPOCH`, or the Unix epoch when unset,
    /// so that builds are reproducible by default.
    pub fn from_env(builder: &str) -> Result<Self> {
        let build_time = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) => {
                let secs: i64 = v.trim().parse().map_err(|_| {
                    Error::invalid(
                        "SOURCE_DATE_EPOCH",
                        format!("{v:?} is not a number of seconds"),
                    )
                })?;
                jiff::Timestamp::from_second(secs)
                    .map_err(|e| Error::invalid("SOURCE_DATE_EPOCH", e.to_string()))?
            }
            Err(_) => jiff::Timestamp::UNIX_EPOCH,
        };
        Ok(BuildOptions {
            build_time,
            builder: builder.to_string(),
        })
    }
}

/// What a build produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuiltBundle {
    /// Bundle kind.
    pub kind: BundleKind,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// CID of the index.
    pub cid: String,
    /// The bundle file written.
    pub file: PathBuf,
    /// Plain payload bytes.
    pub payload_bytes: u64,
    /// Distinct chunks.
    pub chunks: usize,
    /// Bytes of the bundle file.
    pub file_bytes: u64,
}

/// A regular file found in a source tree.
struct SourceFile {
    rel: String,
    abs: PathBuf,
    mode: u32,
    size: u64,
}

/// Walks `root`, refusing anything that is not a regular file or directory.
fn walk_source(root: &Path) -> Result<Vec<SourceFile>> {
    let meta = std::fs::symlink_metadata(root).map_err(Error::io("read source directory", root))?;
    if !meta.is_dir() {
        return Err(Error::invalid(
            root.display().to_string(),
            "a bundle source must be a directory",
        ));
    }
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    let mut total = 0u64;
    while let Some((dir, prefix)) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(Error::io("read directory", &dir))?;
        for ent in rd {
            let ent = ent.map_err(Error::io("read directory", &dir))?;
            let name = ent.file_name().into_string().map_err(|n| {
                Error::invalid(
                    dir.display().to_string(),
                    format!("file name {n:?} is not UTF-8"),
                )
            })?;
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            crate::fsutil::safe_relative(&rel)?;
            let path = ent.path();
            let md = std::fs::symlink_metadata(&path).map_err(Error::io("stat", &path))?;
            let ft = md.file_type();
            if ft.is_symlink() {
                return Err(Error::Link { path: rel });
            } else if ft.is_dir() {
                stack.push((path, rel));
            } else if ft.is_file() {
                if md.nlink() > 1 {
                    return Err(Error::Link { path: rel });
                }
                total = total.saturating_add(md.len());
                if total > MAX_SOURCE_SIZE {
                    return Err(Error::TooLarge {
                        what: format!("source tree {}", root.display()),
                        size: total,
                        max: MAX_SOURCE_SIZE,
                    });
                }
                let mode = if md.permissions().mode() & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                };
                out.push(SourceFile {
                    rel,
                    abs: path,
                    mode,
                    size: md.len(),
                });
            } else if ft.is_block_device() || ft.is_char_device() || ft.is_fifo() || ft.is_socket()
            {
                return Err(Error::DeviceNode { path: rel });
            } else {
                return Err(Error::invalid(rel, "unsupported file type"));
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// Reads a small manifest file from a source tree with a size cap.
fn read_manifest(src: &Path, name: &str) -> Result<Vec<u8>> {
    let path = src.join(name);
    let md = std::fs::symlink_metadata(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::invalid(
                src.display().to_string(),
                format!("missing {name}; every source needs one at its root"),
            )
        } else {
            Error::Io {
                action: "stat",
                path: path.clone(),
                source: e,
            }
        }
    })?;
    if !md.is_file() {
        return Err(Error::Link { path: name.into() });
    }
    if md.len() > 1024 * 1024 {
        return Err(Error::TooLarge {
            what: path.display().to_string(),
            size: md.len(),
            max: 1024 * 1024,
        });
    }
    std::fs::read(&path).map_err(Error::io("read", &path))
}

/// Builds a pack bundle from a directory holding `pack.json`.
pub fn build_pack(
    src: &Path,
    out: &Path,
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuiltBundle> {
    let raw = read_manifest(src, "pack.json")?;
    let m = PackManifest::parse(&raw, &src.join("pack.json").display().to_string())?;
    let manifest =
        serde_json::to_value(&m).map_err(|e| Error::invalid("pack.json", e.to_string()))?;
    let deps = m
        .dependencies
        .iter()
        .map(|(n, r)| (n.clone(), r.to_string()))
        .collect();
    build_tree(
        BundleKind::Pack,
        &m.name,
        &m.version,
        manifest,
        deps,
        src,
        out,
        opts,
        progress,
    )
}

/// Builds a model bundle from a directory holding `model.json` and the weights.
pub fn build_model(
    src: &Path,
    out: &Path,
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuiltBundle> {
    let raw = read_manifest(src, "model.json")?;
    let m = ModelManifest::parse(&raw, &src.join("model.json").display().to_string())?;
    let manifest =
        serde_json::to_value(&m).map_err(|e| Error::invalid("model.json", e.to_string()))?;
    build_tree(
        BundleKind::Model,
        &m.name,
        &m.version,
        manifest,
        Vec::new(),
        src,
        out,
        opts,
        progress,
    )
}

/// A pack a product pins, resolved against the published repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolvedPack {
    /// Pack name.
    pub name: String,
    /// Exact version chosen.
    pub version: String,
    /// CID of that version's index.
    pub cid: String,
    /// Pack type.
    #[serde(rename = "type")]
    pub pack_type: crate::manifest::PackType,
    /// Whether the product requires it.
    pub required: bool,
}

/// The manifest recorded in a product bundle's index: the product manifest plus pinned CIDs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductBundleManifest {
    /// The manifest as written by the product owner.
    pub product: ProductManifest,
    /// Every pack the manifest names that the repository could satisfy, pinned by CID.
    pub resolved: Vec<ResolvedPack>,
    /// The licence this bundle carries for one spoke, signed with the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence: Option<crate::manifest::Licence>,
}

/// Builds a product bundle: the manifest file as payload, with packs pinned by CID.
pub fn build_product(
    manifest_path: &Path,
    resolved: Vec<ResolvedPack>,
    licence: Option<crate::manifest::Licence>,
    out: &Path,
    opts: &BuildOptions,
) -> Result<BuiltBundle> {
    let raw =
        std::fs::read(manifest_path).map_err(Error::io("read product manifest", manifest_path))?;
    let product = ProductManifest::parse_yaml(&raw, &manifest_path.display().to_string())?;
    let deps = resolved
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect();
    let mut files = vec![InputFile {
        rel: "product.yaml".into(),
        mode: 0o644,
        data: raw,
    }];
    if let Some(l) = &licence {
        files.push(InputFile {
            rel: "licence.json".into(),
            mode: 0o644,
            data: crate::index::canonical_json(l)?,
        });
    }
    let pbm = ProductBundleManifest {
        product: product.clone(),
        resolved,
        licence,
    };
    let manifest = serde_json::to_value(&pbm)
        .map_err(|e| Error::invalid("product manifest", e.to_string()))?;
    build_files(
        BundleKind::Product,
        &product.product.id,
        &product.product.version,
        manifest,
        deps,
        files.into_iter().map(Ok),
        out,
        opts,
        &(),
    )
}

/// Builds a licence bundle: the licence (`licence.json`) as payload and as
/// the signed manifest, named `PRODUCT/SPOKE` after the product and the
/// spoke's key (its did:key without the `did:key:` prefix, which
/// [`crate::manifest::Licence::spoke_of_bundle`] reads back), so a spoke
/// can tell from the signed targets metadata alone which licence is its
/// own. The version defaults to the expiry date (`YYYY.M.D`), so a renewal
/// is a newer version.
pub fn build_licence(
    licence: &crate::manifest::Licence,
    version: Option<semver::Version>,
    out: &Path,
    opts: &BuildOptions,
) -> Result<BuiltBundle> {
    let version = match version {
        Some(v) => v,
        None => {
            let d: jiff::civil::Date = licence.expires.parse().map_err(|_| {
                Error::invalid(
                    "licence",
                    format!("expiry {:?} is not a date", licence.expires),
                )
            })?;
            semver::Version::new(d.year() as u64, d.month() as u64, d.day() as u64)
        }
    };
    let data = crate::index::canonical_json(licence)?;
    let manifest =
        serde_json::to_value(licence).map_err(|e| Error::invalid("licence", e.to_string()))?;
    build_files(
        BundleKind::Licence,
        &crate::manifest::Licence::bundle_name(&licence.product, &licence.spoke)?,
        &version,
        manifest,
        Vec::new(),
        std::iter::once(Ok(InputFile {
            rel: "licence.json".into(),
            mode: 0o644,
            data,
        })),
        out,
        opts,
        &(),
    )
}

/// Builds an OS bundle from a UKI (unified kernel image) file.
pub fn build_os(
    uki: &Path,
    version: &semver::Version,
    meta: serde_json::Map<String, serde_json::Value>,
    out: &Path,
    opts: &BuildOptions,
) -> Result<BuiltBundle> {
    let data = std::fs::read(uki).map_err(Error::io("read UKI", uki))?;
    let mut manifest = serde_json::json!({ "uki": "uki.efi", "os_version": version.to_string() });
    // Signed with the index: what the OS can run and how spokes roll it out.
    for (k, v) in meta {
        manifest[k] = v;
    }
    let files = vec![InputFile {
        rel: "uki.efi".into(),
        mode: 0o644,
        data,
    }];
    build_files(
        BundleKind::Os,
        "eurocomply-os",
        version,
        manifest,
        Vec::new(),
        files.into_iter().map(Ok),
        out,
        opts,
        &(),
    )
}

struct InputFile {
    rel: String,
    mode: u32,
    data: Vec<u8>,
}

#[allow(clippy::too_many_arguments)]
fn build_tree(
    kind: BundleKind,
    name: &str,
    version: &semver::Version,
    manifest: serde_json::Value,
    deps: Vec<(String, String)>,
    src: &Path,
    out: &Path,
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuiltBundle> {
    let files = walk_source(src)?;
    progress.set_len(files.iter().map(|f| f.size).sum());
    let inputs = files.into_iter().map(|f| {
        let data = std::fs::read(&f.abs).map_err(Error::io("read", &f.abs))?;
        if data.len() as u64 != f.size {
            return Err(Error::invalid(
                f.rel,
                "file changed while the bundle was being built",
            ));
        }
        Ok(InputFile {
            rel: f.rel,
            mode: f.mode,
            data,
        })
    });
    build_files(
        kind, name, version, manifest, deps, inputs, out, opts, progress,
    )
}

/// Writes the bundle file for `inputs` (sorted by path) and returns what was built.
#[allow(clippy::too_many_arguments)]
fn build_files(
    kind: BundleKind,
    name: &str,
    version: &semver::Version,
    manifest: serde_json::Value,
    deps: Vec<(String, String)>,
    inputs: impl Iterator<Item = Result<InputFile>>,
    out: &Path,
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuiltBundle> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    let tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(Error::io("create temporary file in", dir))?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, tmp.as_file()));
    let mut written = BTreeSet::new();
    let mut entries = Vec::new();
    let mut source = Sha256::new();
    for input in inputs {
        let f = input?;
        // Cutting, hashing and writing run beside the (parallel) compression.
        let mut refs = Vec::new();
        let file_sha = chunks::seal_stream(&f.data, |sealed| {
            for s in sealed {
                if written.insert(s.r#ref.id.clone()) {
                    append(&mut tar, &format!("chunks/{}.zst", s.r#ref.id), &s.bytes)?;
                }
                refs.push(s.r#ref);
            }
            Ok(())
        })?;
        source.update(format!("{} {:o} {}\n", f.rel, f.mode, file_sha));
        progress.inc(f.data.len() as u64);
        entries.push(Entry {
            path: f.rel,
            mode: f.mode,
            size: f.data.len() as u64,
            sha256: file_sha,
            chunks: refs,
        });
    }
    let build_time = opts.build_time.to_string();
    let index = BundleIndex {
        format: INDEX_FORMAT.to_string(),
        kind,
        name: name.to_string(),
        version: version.clone(),
        sbom: sbom(
            kind,
            name,
            version,
            &entries,
            &deps,
            &opts.builder,
            &build_time,
        ),
        manifest,
        provenance: Provenance {
            source_digest: format!("sha256:{}", hex::encode(source.finalize())),
            builder: opts.builder.clone(),
            build_time,
        },
        entries,
    };
    index.validate(name)?;
    let bytes = index.to_canonical()?;
    append(&mut tar, "index.json", &bytes)?;
    let mut w = tar.into_inner().map_err(Error::io("write bundle", out))?;
    w.flush().map_err(Error::io("write bundle", out))?;
    drop(w);
    tmp.as_file()
        .sync_all()
        .map_err(Error::io("fsync", tmp.path()))?;
    let file_bytes = tmp
        .as_file()
        .metadata()
        .map_err(Error::io("stat", tmp.path()))?
        .len();
    tmp.persist(out).map_err(|e| Error::Io {
        action: "rename bundle into place",
        path: out.to_owned(),
        source: e.error,
    })?;
    Ok(BuiltBundle {
        kind,
        name: name.to_string(),
        version: version.to_string(),
        cid: cid_of(&bytes),
        file: out.to_owned(),
        payload_bytes: index.payload_size(),
        chunks: written.len(),
        file_bytes,
    })
}

/// Appends one regular file with fixed metadata to a tar.
pub(crate) fn append<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, path, bytes)
        .map_err(Error::io("write tar entry", path))
}

/// A CycloneDX 1.5 SBOM describing the payload files and declared dependencies.
fn sbom(
    kind: BundleKind,
    name: &str,
    version: &semver::Version,
    entries: &[Entry],
    deps: &[(String, String)],
    builder: &str,
    build_time: &str,
) -> serde_json::Value {
    let me = format!("{name}@{version}");
    let component_type = match kind {
        BundleKind::Pack | BundleKind::Product | BundleKind::Licence => "data",
        BundleKind::Model => "machine-learning-model",
        BundleKind::Os => "operating-system",
    };
    let files: Vec<_> = entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "type": "file",
                "bom-ref": format!("{me}:{}", e.path),
                "name": e.path,
                "hashes": [{ "alg": "SHA-256", "content": e.sha256 }],
            })
        })
        .collect();
    let dep_components: Vec<_> = deps
        .iter()
        .map(|(n, r)| serde_json::json!({ "type": "data", "bom-ref": format!("{n}@{r}"), "name": n, "version": r, "scope": "required" }))
        .collect();
    let mut components = files;
    components.extend(dep_components);
    serde_json::json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": build_time,
            "tools": { "components": [{ "type": "application", "name": builder }] },
            "component": { "type": component_type, "bom-ref": me, "name": name, "version": version.to_string() },
        },
        "components": components,
        "dependencies": [{
            "ref": me,
            "dependsOn": deps.iter().map(|(n, r)| format!("{n}@{r}")).collect::<Vec<_>>(),
        }],
    })
}
