//! The `hub` command line.

use crate::Error;
use bundles::build::{self, BuildOptions};
use bundles::keys::KeyDir;
use bundles::medium::{self, ExportOptions, Inventory};
use bundles::progress::TtyBar as Bar;
use bundles::repo::{self, Expiries, InitOptions};
use clap::{Parser, Subcommand};
use serde::Serialize;
use std::path::PathBuf;

/// Builds and signs bundles, publishes them as a TUF repository, exports media.
#[derive(Debug, Parser)]
#[command(name = "hub", version, about)]
pub struct Cli {
    /// Print results (and errors) as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Metadata lifetimes.
#[derive(Debug, clap::Args)]
pub struct ExpiryArgs {
    /// Days root.json stays valid.
    #[arg(long, default_value_t = 365)]
    pub root_expires_days: i64,
    /// Days targets.json stays valid.
    #[arg(long, default_value_t = 90)]
    pub targets_expires_days: i64,
    /// Days snapshot.json stays valid.
    #[arg(long, default_value_t = 90)]
    pub snapshot_expires_days: i64,
    /// Days timestamp.json stays valid (spokes add a grace period for media).
    #[arg(long, default_value_t = 7)]
    pub timestamp_expires_days: i64,
}

impl ExpiryArgs {
    fn expiries(&self) -> Expiries {
        Expiries {
            root_days: self.root_expires_days,
            targets_days: self.targets_expires_days,
            snapshot_days: self.snapshot_expires_days,
            timestamp_days: self.timestamp_expires_days,
        }
    }
}

/// Hub subcommands.
// Parsed once per run; the image command's many options make it the largest.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Tooling(cli_conventions::Tooling),
    /// Create a new signed repository and its keys.
    Init {
        /// Repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// Key directory (outside the repository; files are written 0600).
        #[arg(long)]
        keys: PathBuf,
        /// Number of root keys.
        #[arg(long, default_value_t = 1)]
        root_keys: u64,
        /// Root signatures required (k of n).
        #[arg(long, default_value_t = 1)]
        root_threshold: u64,
        #[command(flatten)]
        expiry: ExpiryArgs,
    },
    /// Build pack bundles.
    Pack {
        #[command(subcommand)]
        command: BuildCommand,
    },
    /// Build model bundles.
    Model {
        #[command(subcommand)]
        command: BuildCommand,
    },
    /// Build product bundles.
    Product {
        #[command(subcommand)]
        command: ProductCommand,
    },
    /// Build the bootable appliance image and its unified kernel images.
    Image {
        #[command(subcommand)]
        command: crate::image::ImageCommand,
    },
    /// Build OS bundles.
    Os {
        #[command(subcommand)]
        command: OsCommand,
    },
    /// Add bundle files to the repository and re-sign.
    Publish {
        /// Repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// Key directory.
        #[arg(long)]
        keys: PathBuf,
        /// Bundle files made by `hub … build`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        expiry: ExpiryArgs,
    },
    /// List what the repository publishes.
    List {
        /// Repository directory.
        #[arg(long)]
        repo: PathBuf,
    },
    /// Replace the keys of a role; the new root is signed by old and new root keys.
    RotateKey {
        /// Repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// Key directory.
        #[arg(long)]
        keys: PathBuf,
        /// root, targets, snapshot or timestamp.
        #[arg(long)]
        role: String,
        #[command(flatten)]
        expiry: ExpiryArgs,
    },
    /// Write a self-contained sneakernet medium.
    Export {
        /// Repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// Medium directory to create (must not exist).
        #[arg(long)]
        to: PathBuf,
        /// Only these bundles (by name or target); repeatable.
        #[arg(long)]
        only: Vec<String>,
        /// A spoke's chunk inventory: leave out the chunks it has (offline delta).
        #[arg(long)]
        have: Option<PathBuf>,
        /// Encrypt to this age recipient (a spoke's `spoke identity`); repeatable.
        #[arg(long)]
        recipient: Vec<String>,
    },
    /// Serve the repository read-only (GET/HEAD) for pull sync.
    Serve {
        /// Repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8443")]
        addr: std::net::SocketAddr,
        /// PEM certificate chain for HTTPS.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key for HTTPS.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Check a repository or medium exactly as a spoke would.
    Verify {
        /// Repository or medium directory.
        path: PathBuf,
        /// Trusted root to start from (default: the path's own 1.root.json).
        #[arg(long)]
        trust: Option<PathBuf>,
        /// age identity file, for an encrypted medium.
        #[arg(long)]
        identity: Option<PathBuf>,
    },
    /// Check what spokes send back.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
}

/// `hub report …`.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Verify a document a spoke signed (report, evidence pack, export receipt,
    /// destruction certificate) and print it.
    Verify {
        /// The `report.json` (or `evidence-*.json`) file.
        file: PathBuf,
    },
}

/// `hub pack build` / `hub model build`.
#[derive(Debug, Subcommand)]
pub enum BuildCommand {
    /// Build a bundle from a source directory.
    Build {
        /// Source directory (with pack.json or model.json).
        src: PathBuf,
        /// Bundle file to write.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `hub product build`.
#[derive(Debug, Subcommand)]
pub enum ProductCommand {
    /// Build a product bundle, pinning pack ranges to published CIDs.
    Build {
        /// Product manifest (YAML).
        manifest: PathBuf,
        /// Repository whose published packs resolve the ranges.
        #[arg(long)]
        repo: PathBuf,
        /// Bundle file to write.
        #[arg(long)]
        out: PathBuf,
        /// Carry a licence for this spoke (its did:key from `spoke identity`).
        #[arg(long, requires_all = ["plan", "expires"])]
        licence_for: Option<String>,
        /// The licence's plan (an id from the manifest's `plans`).
        #[arg(long)]
        plan: Option<String>,
        /// Last day the licence is valid (YYYY-MM-DD).
        #[arg(long)]
        expires: Option<String>,
    },
    /// Build a licence bundle for one spoke, published beside the product
    /// bundle: any number of spokes share one product bundle, each installs
    /// only the licence made for it and ignores the others.
    Licence {
        /// Product manifest (YAML) whose plan the licence grants.
        manifest: PathBuf,
        /// The spoke's did:key (from `spoke identity`).
        #[arg(long)]
        spoke: String,
        /// The plan (an id from the manifest's `plans`).
        #[arg(long)]
        plan: String,
        /// Last day the licence is valid (YYYY-MM-DD).
        #[arg(long)]
        expires: String,
        /// Bundle version (default: the expiry date as YYYY.M.D, so a
        /// renewal is newer).
        #[arg(long)]
        version: Option<semver::Version>,
        /// Bundle file to write.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `hub os build`.
#[derive(Debug, Subcommand)]
pub enum OsCommand {
    /// Build an OS bundle from a unified kernel image (made by `hub image uki`,
    /// whose os-release states the kernel VM and schema versions it carries).
    Build {
        /// The UKI file.
        #[arg(long)]
        uki: PathBuf,
        /// OS version (must match the UKI's os-release).
        #[arg(long)]
        version: semver::Version,
        /// Rollout channel: spokes on `stable` take only stable releases,
        /// spokes on `canary` take both.
        #[arg(long, value_parser = ["stable", "canary"], default_value = "stable")]
        channel: String,
        /// `critical` is applied outside the spokes' maintenance windows.
        #[arg(long, value_parser = ["normal", "critical"], default_value = "normal")]
        urgency: String,
        /// Bundle file to write.
        #[arg(long)]
        out: PathBuf,
    },
}

fn out<T: Serialize>(json: bool, value: &T, human: impl FnOnce(&T) -> String) -> Result<(), Error> {
    if json {
        let s = serde_json::to_string_pretty(value).map_err(|e| Error::Usage(e.to_string()))?;
        println!("{s}");
    } else {
        println!("{}", human(value));
    }
    Ok(())
}

/// Reads and parses a product manifest (YAML).
fn read_product_manifest(
    path: &std::path::Path,
) -> Result<bundles::manifest::ProductManifest, Error> {
    let raw =
        std::fs::read(path).map_err(|e| Error::Usage(format!("read {}: {e}", path.display())))?;
    Ok(bundles::manifest::ProductManifest::parse_yaml(
        &raw,
        &path.display().to_string(),
    )?)
}

fn builder() -> String {
    format!("hub/{}", env!("CARGO_PKG_VERSION"))
}

fn built_line(b: &build::BuiltBundle) -> String {
    format!(
        "built {} {} {} → {} ({} payload bytes, {} chunks)\ncid {}",
        b.kind.as_str(),
        b.name,
        b.version,
        b.file.display(),
        b.payload_bytes,
        b.chunks,
        b.cid
    )
}

type TreeBuilder = fn(
    &std::path::Path,
    &std::path::Path,
    &BuildOptions,
    &dyn bundles::Progress,
) -> bundles::Result<build::BuiltBundle>;

/// `hub pack build` and `hub model build`: a source tree into a bundle file.
fn build_tree(
    json: bool,
    f: TreeBuilder,
    src: &std::path::Path,
    file: &std::path::Path,
) -> Result<(), Error> {
    let b = f(
        src,
        file,
        &BuildOptions::from_env(&builder())?,
        &Bar::new("building", true),
    )?;
    out(json, &b, built_line)
}

fn parse_role(role: &str) -> Result<tough::schema::RoleType, Error> {
    use tough::schema::RoleType;
    Ok(match role {
        "root" => RoleType::Root,
        "targets" => RoleType::Targets,
        "snapshot" => RoleType::Snapshot,
        "timestamp" => RoleType::Timestamp,
        other => {
            return Err(Error::Usage(format!(
                "unknown role {other:?}: use root, targets, snapshot or timestamp"
            )))
        }
    })
}

/// Runs one hub command.
pub fn run(cli: Cli) -> Result<(), Error> {
    let json = cli.json;
    match cli.command {
        Command::Tooling(t) => match cli_conventions::run_tooling::<Cli>(t) {
            Ok(None) => Ok(()),
            Ok(Some(pages)) => out(json, &pages, |p| format!("wrote {} man pages", p.len())),
            Err(e) => Err(Error::Usage(format!("write man pages: {e}"))),
        },
        Command::Init {
            repo,
            keys,
            root_keys,
            root_threshold,
            expiry,
        } => {
            let created = repo::init(
                &repo,
                &KeyDir::new(&keys),
                &InitOptions {
                    root_keys,
                    root_threshold,
                    expiries: expiry.expiries(),
                },
            )?;
            let v: Vec<_> = created
                .iter()
                .map(|(role, id)| serde_json::json!({"role": role, "keyid": id}))
                .collect();
            out(json, &v, |_| {
                format!(
                    "created repository {} ({} keys in {}); give spokes {}",
                    repo.display(),
                    created.len(),
                    keys.display(),
                    repo.join("metadata/1.root.json").display()
                )
            })
        }
        Command::Pack {
            command: BuildCommand::Build { src, out: file },
        } => build_tree(json, build::build_pack, &src, &file),
        Command::Model {
            command: BuildCommand::Build { src, out: file },
        } => build_tree(json, build::build_model, &src, &file),
        Command::Product {
            command:
                ProductCommand::Build {
                    manifest,
                    repo: r,
                    out: file,
                    licence_for,
                    plan,
                    expires,
                },
        } => {
            let parsed = read_product_manifest(&manifest)?;
            let loaded = repo::load(&r)?;
            let resolved = repo::resolve_product(&loaded, &parsed)?;
            let licence = match (licence_for, plan, expires) {
                (Some(spoke), Some(plan), Some(expires)) => Some(
                    bundles::manifest::Licence::for_plan(&parsed, &spoke, &plan, &expires)?,
                ),
                _ => None,
            };
            let b = build::build_product(
                &manifest,
                resolved,
                licence,
                &file,
                &BuildOptions::from_env(&builder())?,
            )?;
            out(json, &b, built_line)
        }
        Command::Product {
            command:
                ProductCommand::Licence {
                    manifest,
                    spoke,
                    plan,
                    expires,
                    version,
                    out: file,
                },
        } => {
            let parsed = read_product_manifest(&manifest)?;
            let licence = bundles::manifest::Licence::for_plan(&parsed, &spoke, &plan, &expires)?;
            let b = build::build_licence(
                &licence,
                version,
                &file,
                &BuildOptions::from_env(&builder())?,
            )?;
            out(json, &b, built_line)
        }
        Command::Image { command } => match command {
            crate::image::ImageCommand::Uki { out: file, uki } => {
                let v = crate::image::uki(&uki, &file)?;
                out(json, &v, |v| {
                    format!("built UKI {} ({} bytes)", file.display(), v["bytes"])
                })
            }
            crate::image::ImageCommand::Build {
                out: file,
                qcow2,
                uki,
                os_bundle,
                trust,
                repo: r,
                product,
                model,
                esp_mib,
                data_mib,
                uki_args,
            } => {
                let wanted = product.into_iter().chain(model).collect();
                let slot_a = match (uki, os_bundle) {
                    (Some(u), _) => crate::image::SlotA::Uki(u),
                    (None, Some(b)) => crate::image::SlotA::OsBundle(b),
                    (None, None) => crate::image::SlotA::Build,
                };
                let b = crate::image::build(
                    &file,
                    qcow2,
                    slot_a,
                    &trust,
                    r.as_deref(),
                    wanted,
                    esp_mib,
                    data_mib,
                    &uki_args,
                )?;
                out(json, &b, |b| {
                    format!(
                        "built {} ({} MiB, {} MiB allocated), slot A OS {}\nsha256 {}",
                        b.disk.file.display(),
                        b.disk.bytes >> 20,
                        b.disk.allocated_bytes >> 20,
                        b.os_version,
                        b.disk.sha256
                    )
                })
            }
        },
        Command::Os {
            command:
                OsCommand::Build {
                    uki,
                    version,
                    channel,
                    urgency,
                    out: file,
                },
        } => {
            let meta = crate::image::os_bundle_meta(&uki, &version, &channel, &urgency)?;
            let b = build::build_os(
                &uki,
                &version,
                meta,
                &file,
                &BuildOptions::from_env(&builder())?,
            )?;
            out(json, &b, built_line)
        }
        Command::Publish {
            repo: r,
            keys,
            files,
            expiry,
        } => {
            let added = repo::publish(
                &r,
                &KeyDir::new(keys),
                &files,
                &expiry.expiries(),
                &Bar::new("publishing", false),
            )?;
            out(json, &added, |a| {
                a.iter()
                    .map(|p| format!("published {} ({})", p.target, p.cid))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        Command::List { repo: r } => {
            let list = repo::published(&repo::load(&r)?)?;
            out(json, &list, |l| {
                l.iter()
                    .map(|p| {
                        format!(
                            "{:8} {:40} {:12} {}",
                            p.kind.as_str(),
                            p.name,
                            p.version,
                            p.cid
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        Command::RotateKey {
            repo: r,
            keys,
            role,
            expiry,
        } => {
            let rot = repo::rotate_key(
                &r,
                &KeyDir::new(keys),
                parse_role(&role)?,
                &expiry.expiries(),
            )?;
            out(json, &rot, |r| {
                format!(
                    "rotated {} keys: root is now version {} ({} retired, {} added)",
                    r.role,
                    r.root_version,
                    r.retired.len(),
                    r.added.len()
                )
            })
        }
        Command::Export {
            repo: r,
            to,
            only,
            have,
            recipient,
        } => {
            let have = match have {
                Some(p) => {
                    let bytes = std::fs::read(&p).map_err(|e| {
                        Error::Usage(format!("read inventory {}: {e}", p.display()))
                    })?;
                    Some(Inventory::parse(&bytes, &p.display().to_string())?)
                }
                None => None,
            };
            let report = medium::export(
                &r,
                &to,
                &ExportOptions {
                    only,
                    have,
                    recipients: recipient,
                },
                &Bar::new("exporting", false),
            )?;
            out(json, &report, |rep| {
                format!(
                    "exported {} bundle(s), {} chunk(s) ({} left out as already on the spoke), {} bytes{} to {}",
                    rep.bundles.len(),
                    rep.chunks,
                    rep.chunks_skipped,
                    rep.bytes,
                    if rep.encrypted { ", encrypted" } else { "" },
                    to.display()
                )
            })
        }
        Command::Serve {
            repo: r,
            addr,
            tls_cert,
            tls_key,
        } => {
            let tls = tls_cert.zip(tls_key);
            let scheme = if tls.is_some() { "https" } else { "http" };
            crate::serve::serve(&r, addr, tls, |bound| {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "listening": format!("{scheme}://{bound}/") })
                    );
                } else {
                    println!("serving {} read-only at {scheme}://{bound}/", r.display());
                }
            })
        }
        Command::Report {
            command: ReportCommand::Verify { file },
        } => {
            let bytes = std::fs::read(&file).map_err(|e| bundles::Error::Io {
                action: "read",
                path: file.clone(),
                source: e,
            })?;
            let origin = file.display().to_string();
            let format = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["format"].as_str().map(str::to_string))
                .unwrap_or_default();
            let expected = bundles::attest::FORMATS
                .into_iter()
                .find(|f| *f == format)
                .unwrap_or(bundles::attest::REPORT_FORMAT);
            let doc = bundles::attest::verify(&bytes, expected, &origin)?;
            out(json, &doc, |d| {
                format!(
                    "ok: {} signed by {}\n{}",
                    d.format,
                    d.signer,
                    serde_json::to_string_pretty(&d.body).unwrap_or_default()
                )
            })
        }
        Command::Verify {
            path,
            trust,
            identity,
        } => {
            let report = verify(&path, trust, identity)?;
            out(json, &report, |r| {
                format!(
                    "ok: root version {}, {} bundle(s) listed, {} index(es) and {} chunk(s) verified",
                    r.root_version, r.listed, r.indexes, r.chunks
                )
            })
        }
    }
}

#[derive(Serialize)]
struct VerifyReport {
    root_version: u64,
    listed: usize,
    indexes: usize,
    chunks: usize,
}

/// Verifies a repository or medium with a fresh trust state, then every index and chunk present.
fn verify(
    path: &std::path::Path,
    trust: Option<PathBuf>,
    identity: Option<PathBuf>,
) -> Result<VerifyReport, Error> {
    let scratch = tempfile_dir()?;
    let identity = match identity {
        Some(p) => {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| Error::Usage(format!("read {}: {e}", p.display())))?;
            Some(
                text.trim()
                    .parse::<age::x25519::Identity>()
                    .map_err(|e| Error::Usage(format!("{}: {e}", p.display())))?,
            )
        }
        None => None,
    };
    let dir = if path.join("medium.json").exists() {
        medium::open_medium(path, identity.as_ref(), scratch.path())?
    } else {
        path.to_path_buf()
    };
    let root_path = trust.unwrap_or_else(|| dir.join("metadata/1.root.json"));
    let root = std::fs::read(&root_path)
        .map_err(|e| Error::Usage(format!("read trusted root {}: {e}", root_path.display())))?;
    let state = bundles::verify::TrustState::from_root(&root, &root_path.display().to_string())?;
    let verified =
        bundles::verify::verify_repository(&dir, &state, &bundles::verify::Policy::sneakernet())?;
    let mut indexes = 0;
    let mut chunks = std::collections::BTreeSet::new();
    let store = verified.layout().chunks();
    for p in &verified.bundles {
        if !verified.has_index(p) {
            continue;
        }
        let (index, _) = verified.read_index(p)?;
        indexes += 1;
        for e in &index.entries {
            for c in &e.chunks {
                if store.contains(&c.id) && chunks.insert(c.id.clone()) {
                    let mut plain = Vec::new();
                    bundles::chunks::open(c, &store.get(&c.id, c.stored)?, &mut plain)?;
                }
            }
        }
    }
    Ok(VerifyReport {
        root_version: state_root_version(&verified.new_state)?,
        listed: verified.bundles.len(),
        indexes,
        chunks: chunks.len(),
    })
}

fn state_root_version(s: &bundles::verify::TrustState) -> Result<u64, Error> {
    Ok(s.root()?.signed.version.get())
}

fn tempfile_dir() -> Result<tempfile::TempDir, Error> {
    tempfile::tempdir().map_err(|e| Error::Usage(format!("cannot create a scratch directory: {e}")))
}
