//! The `spoke` command line.

use crate::{identity, Error};
use agent::{Registry, VerifiedBundle};
use appliance::{DataDir, InstalledBundle, Store};
use bundles::chunks::ChunkStore;
use bundles::medium::{Inventory, INVENTORY_FORMAT};
use bundles::verify::TrustState;
use clap::{Parser, Subcommand};
use serde::Serialize;
use std::path::PathBuf;

/// The compliance appliance: imports signed bundles and (in later commands) serves them.
#[derive(Debug, Parser)]
#[command(name = "spoke", version, about)]
pub struct Cli {
    /// Print results (and errors) as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Spoke subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a data directory, its trust store and the spoke's identity.
    Init {
        /// Data directory to create.
        #[arg(long)]
        data: PathBuf,
        /// The hub's root.json, obtained out of band.
        #[arg(long)]
        trust: PathBuf,
    },
    /// Print the spoke's public identity (did:key and age recipient).
    Identity {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Verify a sneakernet medium and install what it carries.
    Import {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Medium directory (written by `hub export`).
        medium: PathBuf,
    },
    /// List installed packs.
    Packs {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// List every installed bundle (packs, products, models, OS).
    Bundles {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Inspect or check the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Write the chunk inventory the hub uses for offline deltas (`hub export --have`).
    Inventory {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// File to write.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `spoke audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; fails if any entry was edited, removed or reordered.
    Verify {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// List the entries, oldest first.
    List {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
    },
}

/// The appliance store seen through the agent's [`Registry`] trait.
struct StoreRegistry(Store);

impl Registry for StoreRegistry {
    fn has(&self, cid: &str) -> Result<bool, String> {
        self.0.has_bundle(cid).map_err(|e| e.to_string())
    }

    fn record(&mut self, bundles: &[VerifiedBundle]) -> Result<(), String> {
        let now = jiff_now();
        let rows: Vec<InstalledBundle> = bundles
            .iter()
            .map(|b| InstalledBundle {
                cid: b.published.cid.clone(),
                kind: b.published.kind.as_str().to_string(),
                name: b.published.name.clone(),
                version: b.published.version.clone(),
                target: b.published.target.clone(),
                manifest: b.index.manifest.clone(),
                installed_at: now.clone(),
            })
            .collect();
        self.0
            .record_bundles(&rows, "cli", "cli")
            .map_err(|e| e.to_string())
    }
}

fn jiff_now() -> String {
    jiff::Timestamp::now().to_string()
}

fn out<T: Serialize>(json: bool, value: &T, human: impl FnOnce(&T) -> String) -> Result<(), Error> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).map_err(|e| Error::Usage(e.to_string()))?
        );
    } else {
        println!("{}", human(value));
    }
    Ok(())
}

fn agent_paths(d: &DataDir) -> agent::Paths {
    agent::Paths {
        trust: d.trust(),
        chunks: d.chunks(),
        indexes: d.indexes(),
        payloads: d.payloads(),
        staging: d.staging(),
    }
}

#[derive(Serialize)]
struct PackRow {
    name: String,
    version: String,
    cid: String,
}

/// Runs one spoke command.
pub fn run(cli: Cli) -> Result<(), Error> {
    let json = cli.json;
    match cli.command {
        Command::Init { data, trust } => {
            let d = DataDir::new(&data);
            if d.marker().exists() {
                return Err(Error::Usage(format!(
                    "{} is already a spoke data directory",
                    data.display()
                )));
            }
            let root = std::fs::read(&trust)
                .map_err(|e| Error::Usage(format!("read trusted root {}: {e}", trust.display())))?;
            let state = TrustState::from_root(&root, &trust.display().to_string())?;
            bundles::fsutil::create_private_dir(&data)?;
            state.save(&d.trust())?;
            bundles::fsutil::create_private_dir(&d.staging())?;
            let public = identity::create(&d.identity_dir())?;
            Store::open(&d.database())?;
            bundles::fsutil::atomic_write(
                &d.marker(),
                serde_json::to_string_pretty(
                    &serde_json::json!({ "format": "eurocomply-spoke/1", "did": public.did }),
                )
                .map_err(|e| Error::Usage(e.to_string()))?
                .as_bytes(),
            )?;
            out(json, &public, |p| {
                format!(
                    "initialised {}\ndid {}\nage recipient {}",
                    data.display(),
                    p.did,
                    p.age_recipient
                )
            })
        }
        Command::Identity { data } => {
            let d = DataDir::new(&data);
            d.check_initialised()?;
            let public = identity::load_public(&d.identity_dir())?;
            out(json, &public, |p| {
                format!("did {}\nage recipient {}", p.did, p.age_recipient)
            })
        }
        Command::Import { data, medium } => {
            let d = DataDir::new(&data);
            d.check_initialised()?;
            let age = identity::age_identity(&d.identity_dir())?;
            let mut registry = StoreRegistry(Store::open(&d.database())?);
            let report = agent::import(
                &agent_paths(&d),
                &medium,
                Some(&age),
                &mut registry,
                &bundles::progress::TtyBar::new("importing", true),
            )?;
            out(json, &report, |r| {
                let mut lines: Vec<String> = r
                    .installed
                    .iter()
                    .map(|p| {
                        format!(
                            "installed {} {} {} ({})",
                            p.kind.as_str(),
                            p.name,
                            p.version,
                            p.cid
                        )
                    })
                    .collect();
                lines.push(format!(
                    "{} installed, {} already present, {} listed but not on this medium; trusted root version {}",
                    r.installed.len(),
                    r.already_installed.len(),
                    r.not_on_medium,
                    r.root_version
                ));
                lines.join("\n")
            })
        }
        Command::Packs { data } => {
            let d = DataDir::new(&data);
            d.check_initialised()?;
            let rows: Vec<PackRow> = Store::open(&d.database())?
                .bundles(Some("pack"))?
                .into_iter()
                .map(|b| PackRow {
                    name: b.name,
                    version: b.version,
                    cid: b.cid,
                })
                .collect();
            out(json, &rows, |rs| {
                if rs.is_empty() {
                    return "no packs installed".into();
                }
                rs.iter()
                    .map(|r| format!("{:40} {:12} {}", r.name, r.version, r.cid))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        Command::Bundles { data } => {
            let d = DataDir::new(&data);
            d.check_initialised()?;
            let rows = Store::open(&d.database())?.bundles(None)?;
            out(json, &rows, |rs| {
                rs.iter()
                    .map(|r| format!("{:8} {:40} {:12} {}", r.kind, r.name, r.version, r.cid))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        Command::Audit {
            command: AuditCommand::Verify { data },
        } => {
            let d = DataDir::new(&data);
            d.check_initialised()?;
            let v = Store::open(&d.database())?.audit_verify()?;
            out(json, &v, |v| {
                format!("audit log intact: {} entries, head {}", v.entries, v.head)
            })
        }
        Command::Audit {
            command: AuditCommand::List { data },
        } => {
            let d = DataDir::new(&data);
            d.check_initialised()?;
            let entries = Store::open(&d.database())?.audit_entries()?;
            out(json, &entries, |es| {
                es.iter()
                    .map(|e| {
                        format!(
                            "{:>5} {} {:10} {:16} {} {}",
                            e.seq,
                            e.at,
                            e.entry.actor,
                            e.entry.action,
                            e.entry.target,
                            e.entry.detail
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        Command::Inventory { data, out: file } => {
            let d = DataDir::new(&data);
            d.check_initialised()?;
            let inv = Inventory {
                format: INVENTORY_FORMAT.into(),
                chunks: ChunkStore::new(d.chunks()).list()?.into_iter().collect(),
            };
            let bytes = serde_json::to_vec_pretty(&inv).map_err(|e| Error::Usage(e.to_string()))?;
            bundles::fsutil::atomic_write(&file, &bytes)?;
            out(
                json,
                &serde_json::json!({ "chunks": inv.chunks.len(), "file": file }),
                |_| format!("wrote {} chunk ids to {}", inv.chunks.len(), file.display()),
            )
        }
    }
}
