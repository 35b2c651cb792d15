//! The `spoke` command line.

use crate::ai::{AiCommand, ModelsCommand};
use crate::{durable, identity, intake, report, work, Error};
use appliance::changes::Change;
use appliance::{Actor, Appliance, DataDir, Store};
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
    #[command(flatten)]
    Tooling(cli_conventions::Tooling),
    /// Internal: read a PDF on standard input and write its text, under
    /// memory and CPU limits (the spoke runs this for every PDF upload).
    #[command(hide = true)]
    PdfText,
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
    /// Pull new bundles from a hub or a static mirror over HTTPS (the same
    /// verification as a medium; fetches only missing chunks; resumes).
    Sync {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Repository URL, e.g. https://hub.example/repo.
        #[arg(long)]
        from: String,
        /// PEM certificate(s) to trust instead of the bundled Mozilla roots.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Retries per file, with exponential back-off.
        #[arg(long, default_value_t = 4)]
        retries: u32,
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
    /// OS slots and updates: A/B slots on the ESP with automatic fallback.
    Os {
        #[command(subcommand)]
        command: OsCommand,
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
    /// Write the signed report for the hub (counts, bundles, receipts,
    /// chunk inventory; never names or content), for `hub report verify`.
    Report {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Directory to write `report.json` into (e.g. the USB stick).
        #[arg(long)]
        to: PathBuf,
    },
    /// Write the signed evidence pack of an applied change.
    Evidence {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Directory to write `evidence-ID.json` into.
        #[arg(long)]
        to: PathBuf,
        /// Change id.
        id: String,
    },
    /// Pack changes: the simulator's diff, approval and rejection.
    Changes {
        #[command(subcommand)]
        command: ChangesCommand,
    },
    /// Products, substances and suppliers.
    Entity {
        #[command(subcommand)]
        command: EntityCommand,
    },
    /// Documents.
    Doc {
        #[command(subcommand)]
        command: DocCommand,
    },
    /// The local Tier A models: embeddings, chat, grounded answers.
    Ai {
        #[command(subcommand)]
        command: AiCommand,
    },
    /// Installed model bundles; switch the active one.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Full-text search (BM25) over entities and documents.
    Search {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Only this kind (product, substance, supplier, document).
        #[arg(long)]
        kind: Option<String>,
        /// Only hits with this tag (e.g. market:EU); repeatable.
        #[arg(long)]
        tag: Vec<String>,
        /// Most hits.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// What to look for.
        query: String,
    },
    /// Evaluate products against the installed packs (writes Compliance Locks),
    /// or replay a lock and check its result is byte-identical.
    Eval {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Evaluate every product.
        #[arg(long, conflicts_with_all = ["products", "replay"])]
        all: bool,
        /// Replay this Compliance Lock; prints the replayed result exactly and
        /// fails unless it is byte-identical to the stored one.
        #[arg(long, conflicts_with = "products")]
        replay: Option<String>,
        /// Evaluate as the law and the documents stand on this date
        /// (YYYY-MM-DD; default today, UTC). The lock pins it.
        #[arg(long, value_name = "DATE", conflicts_with = "replay")]
        as_of: Option<String>,
        /// Product ids.
        products: Vec<String>,
    },
    /// List Compliance Locks, or show one.
    Locks {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Only this product's.
        #[arg(long)]
        product: Option<String>,
        /// Show this lock in full.
        #[arg(long)]
        show: Option<String>,
    },
    /// Check the data directory as `/health/deep` does: SQLite's full
    /// integrity check, the audit chain, every document's object, every
    /// installed payload against its signed index, the search index in step.
    /// Exits non-zero when anything fails.
    Verify {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Re-hash every payload file (default: each file present, regular
        /// and of its signed size).
        #[arg(long)]
        full: bool,
    },
    /// Rebuild the search index from the database.
    Reindex {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Local users and API tokens.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Show or change the lifecycle state (ACTIVE, SUSPENDED, LEGAL_HOLD).
    Lifecycle {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// New state. Leaving LEGAL_HOLD takes two administrators: the
        /// first asks, another confirms with the same command.
        #[arg(long)]
        set: Option<String>,
        /// Why (required to leave LEGAL_HOLD: the legal clearance).
        #[arg(long, default_value = "")]
        reason: String,
        /// Act as this administrator (password on standard input) instead
        /// of the local console: the two steps of a LEGAL_HOLD release must
        /// be taken by two different administrators.
        #[arg(long = "as", value_name = "ADMIN")]
        as_admin: Option<String>,
        /// Days after a LEGAL_HOLD release in which decommissioning cannot
        /// start (default 30; never shortened while it runs or under hold).
        #[arg(long, value_name = "DAYS")]
        cooling_off_days: Option<u32>,
    },
    /// Version, lifecycle, kernel build, active packs and counts.
    Status {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Back up the data directory (online: the spoke may keep serving) into a
    /// backup directory shared by incremental backups, encrypted with age.
    Backup {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Backup directory (created if needed; only new chunks are written).
        #[arg(long)]
        to: PathBuf,
        /// age recipient (age1…) the backup is encrypted to; repeatable.
        /// Without one, the spoke's own recipient (keep identity/age.key safe elsewhere).
        #[arg(long)]
        recipient: Vec<String>,
        /// Keep only the newest N backups (unused chunks are removed).
        #[arg(long)]
        keep: Option<usize>,
    },
    /// List the backups in a backup directory.
    Backups {
        /// Backup directory.
        from: PathBuf,
    },
    /// Restore a backup onto a new data directory (checked completely before
    /// anything is replaced).
    Restore {
        /// Data directory to create (must be absent or empty unless --force).
        #[arg(long)]
        data: PathBuf,
        /// age identity file (AGE-SECRET-KEY-1…) of a recipient of the backup.
        #[arg(long)]
        identity: PathBuf,
        /// Backup name (default: the newest).
        #[arg(long)]
        backup: Option<String>,
        /// Replace an existing data directory (staged, verified, then swapped atomically).
        #[arg(long)]
        force: bool,
        /// Backup directory.
        from: PathBuf,
    },
    /// Restore a backup into a temporary directory, check every digest, the
    /// audit chain and the stores, replay every Compliance Lock, then remove it.
    VerifyRestore {
        /// age identity file of a recipient of the backup.
        #[arg(long)]
        identity: PathBuf,
        /// Backup name (default: the newest).
        #[arg(long)]
        backup: Option<String>,
        /// Backup directory.
        from: PathBuf,
    },
    /// Export everything the customer owns in open formats (SQL dump, CSV per
    /// table, documents, locks and traces as JSON, audit log) with a receipt
    /// signed by the spoke.
    Export {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Directory to create (absent or empty).
        #[arg(long)]
        to: PathBuf,
        /// Also export password and token hashes (withheld by default: an
        /// export leaves the spoke, its credentials need not).
        #[arg(long)]
        with_credentials: bool,
    },
    /// Decommissioning: NOTICE, EXPORT WINDOW, DESTRUCTION, VERIFICATION.
    Decommission {
        #[command(subcommand)]
        command: DecommissionCommand,
    },
    /// Serve the REST API (HTTPS with the spoke's certificate; plain HTTP only on loopback).
    Serve {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Address to listen on (port 0 picks a free port; the URL is printed).
        #[arg(long, default_value = "127.0.0.1:8443")]
        addr: std::net::SocketAddr,
        /// Plain HTTP (development; loopback addresses only).
        #[arg(long)]
        http: bool,
        /// Requests per second per client address (0 disables the limit).
        #[arg(long, default_value_t = 50)]
        rate_limit: u32,
        /// Largest document upload in bytes.
        #[arg(long, default_value_t = appliance::documents::DEFAULT_MAX_UPLOAD)]
        max_upload: u64,
        /// Import every medium that appears under this directory (where
        /// removable media are mounted), once each.
        #[arg(long)]
        watch: Option<PathBuf>,
        /// Seconds between looks at the watched directory.
        #[arg(long, default_value_t = 5)]
        watch_every: u64,
        /// Where removable media are mounted, for the console's Import page:
        /// media there are verified, previewed and installed when an
        /// administrator asks (unlike --watch, which imports at once).
        #[arg(long)]
        media: Option<PathBuf>,
        /// Where the EFI system partition is mounted, on the appliance image
        /// (PID 1 passes it): `GET /api/v1/os` then shows the OS and its slots.
        #[arg(long)]
        esp: Option<PathBuf>,
        /// Pull from this hub URL on a schedule (pull-only; the hub never connects here).
        #[arg(long)]
        sync_from: Option<String>,
        /// CA certificate for --sync-from.
        #[arg(long)]
        sync_ca: Option<PathBuf>,
        /// Minutes between pulls (failures back off, up to a day).
        #[arg(long, default_value_t = 60)]
        sync_every: u64,
        /// Most AI requests running at once (more answer 429).
        #[arg(long, default_value_t = 2)]
        ai_concurrency: usize,
        /// Back up into this directory on a schedule.
        #[arg(long)]
        backup_to: Option<PathBuf>,
        /// Interval between backups (e.g. 30m, 6h, 1d).
        #[arg(long, default_value = "1d")]
        backup_every: String,
        /// Keep the newest N scheduled backups.
        #[arg(long)]
        backup_keep: Option<usize>,
        /// age recipient of scheduled backups; repeatable (default: the spoke's own).
        #[arg(long)]
        backup_recipient: Vec<String>,
        /// Failed sign-ins after which an account is locked (half as many
        /// are answered at once, then each attempt waits twice as long; a
        /// client address gets five times as many). Unknown API tokens count
        /// per address the same way.
        #[arg(long, default_value_t = 10)]
        sign_in_lock_after: u32,
        /// How long a sign-in lock lasts, in minutes (1-1440).
        #[arg(long, default_value_t = 15)]
        sign_in_lock_minutes: u64,
    },
}

/// `spoke decommission …`.
#[derive(Debug, Subcommand)]
pub enum DecommissionCommand {
    /// Show the decommissioning phase.
    Status {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Phase 1: record that notice was given (refused under LEGAL_HOLD).
    Notice {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Phase 2: open the export window; the spoke becomes read-only.
    ExportWindow {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Stop a decommissioning before destruction (the spoke becomes ACTIVE again).
    Cancel {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Phases 3 and 4: overwrite and remove the data (and the given backup
    /// directories), verify nothing remains and write the signed destruction
    /// certificate. Refused under LEGAL_HOLD or without an export receipt.
    Destroy {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Where to write the certificate (outside the data directory).
        #[arg(long)]
        certificate: PathBuf,
        /// A backup directory to destroy too; repeatable.
        #[arg(long)]
        backups: Vec<PathBuf>,
    },
}

/// `spoke changes …`.
#[derive(Debug, Subcommand)]
pub enum ChangesCommand {
    /// List changes, newest first.
    List {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Show a change with its simulator diff.
    Show {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Change id.
        id: String,
    },
    /// Approve a pending change: activate its packs and re-evaluate every product.
    Approve {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Change id.
        id: String,
    },
    /// Reject a pending change; only its audit record remains.
    Reject {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Change id.
        id: String,
    },
    /// Propose undoing an applied change (simulated; approve it to apply).
    Rollback {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// The applied change to undo.
        id: String,
    },
}

/// `spoke entity …`.
#[derive(Debug, Subcommand)]
pub enum EntityCommand {
    /// Add entities from a JSON file (one object or an array; `-` for stdin).
    Add {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// The file.
        file: PathBuf,
    },
    /// List entities.
    List {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
    },
    /// Show one entity with its documents and latest evaluation.
    Show {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Entity id.
        id: String,
    },
    /// Products using a substance (by CAS), through sub-formulations too.
    WhereUsed {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// CAS number.
        cas: String,
    },
    /// Relate two entities: `contains` (product, sub-formulation) or `supplies`.
    Relate {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// From.
        src: String,
        /// contains or supplies.
        rel: String,
        /// To.
        dst: String,
    },
}

/// `spoke doc …`.
#[derive(Debug, Subcommand)]
pub enum DocCommand {
    /// Add a document (PDF or plain text).
    Add {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Document kind, e.g. cpsr, sds, coa.
        #[arg(long)]
        kind: String,
        /// Entity it belongs to.
        #[arg(long)]
        entity: Option<String>,
        /// Expiry date (YYYY-MM-DD).
        #[arg(long)]
        expires: Option<String>,
        /// The file.
        file: PathBuf,
    },
    /// List documents.
    List {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Only this entity's.
        #[arg(long)]
        entity: Option<String>,
    },
}

/// `spoke users …`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user; the password is read from standard input (first line).
    Add {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Login name.
        #[arg(long)]
        name: String,
        /// admin, regulatory_manager, editor, viewer or auditor.
        #[arg(long)]
        role: String,
    },
    /// List users.
    List {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Issue an API token for a user (the secret is printed once).
    Token {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// The user the token acts as.
        #[arg(long)]
        user: String,
        /// What it is for.
        #[arg(long)]
        label: String,
        /// Lifetime in hours (never expires when absent).
        #[arg(long)]
        hours: Option<i64>,
    },
    /// Lift a sign-in lock or wait: forget the failed sign-ins of a user
    /// and/or the failed sign-ins and unknown tokens of a client address.
    Unlock {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// The user name.
        #[arg(long)]
        name: Option<String>,
        /// The client address (as the audit log shows it).
        #[arg(long)]
        address: Option<String>,
    },
}

/// `spoke os …`.
#[derive(Debug, Subcommand)]
pub enum OsCommand {
    /// Show both slots: version, boot counter, which booted and which boots next.
    Status {
        /// Where the EFI system partition is mounted.
        #[arg(long, default_value = crate::boot::ESP_MOUNT)]
        esp: PathBuf,
    },
    /// Pre-flight an installed OS bundle, then write it into the inactive
    /// slot with 3 tries; the next boot runs it and blesses it once healthy,
    /// or systemd-boot falls back to the current slot.
    Install {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Where the EFI system partition is mounted.
        #[arg(long, default_value = crate::boot::ESP_MOUNT)]
        esp: PathBuf,
        /// OS version to install (default: the newest installed OS bundle).
        #[arg(long)]
        version: Option<semver::Version>,
        /// The running slot (default: the one systemd-boot reports it booted).
        #[arg(long)]
        active: Option<char>,
    },
    /// Make the other slot boot next (marks the next slot as failed).
    Rollback {
        /// Where the EFI system partition is mounted.
        #[arg(long, default_value = crate::boot::ESP_MOUNT)]
        esp: PathBuf,
    },
    /// Show or change the OS update policy (channel, pin, maintenance window).
    Policy {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Which releases to take.
        #[arg(long)]
        channel: Option<crate::policy::Channel>,
        /// The version a pinned spoke takes (with --channel pinned).
        #[arg(long)]
        pin: Option<semver::Version>,
        /// Weekly window: "DAY HH:MM HOURS TIMEZONE", e.g. "sunday 03:00 2 Europe/Berlin".
        #[arg(long, conflicts_with = "no_window")]
        window: Option<String>,
        /// Apply updates at any time.
        #[arg(long)]
        no_window: bool,
    },
    /// Apply the newest installed OS bundle the policy allows now, if it is
    /// newer than the running OS and has not failed before (run by PID 1).
    Auto {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Where the EFI system partition is mounted.
        #[arg(long, default_value = crate::boot::ESP_MOUNT)]
        esp: PathBuf,
    },
    /// Print what this OS build can run: kernel VM and database schema versions.
    Capabilities,
    /// Check this OS's health on a data directory (stores open and migrated,
    /// integrity, audit chain, search index, packs run on this kernel VM);
    /// PID 1 runs it before it blesses a new boot entry. Exits non-zero when
    /// a check fails.
    Check {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
    },
}

/// `spoke audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; fails if any entry was edited, removed or
    /// reordered, or the lifecycle state disagrees with its audited changes.
    Verify {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// A signed checkpoint, report, backup manifest, export receipt or
        /// evidence pack this spoke wrote earlier: also fail if anything up
        /// to the entry it recorded was rewritten (even with the chain
        /// recomputed).
        #[arg(long)]
        against: Option<PathBuf>,
    },
    /// Write a signed checkpoint of the chain (entries, head) into a
    /// directory off the spoke, for `spoke audit verify --against`.
    Checkpoint {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Directory to write `audit-checkpoint-<entries>.json` into.
        #[arg(long)]
        to: PathBuf,
    },
    /// List the entries, oldest first.
    List {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
    },
}

pub(crate) fn out<T: Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce(&T) -> String,
) -> Result<(), Error> {
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
        Command::Tooling(t) => match cli_conventions::run_tooling::<Cli>(t) {
            Ok(None) => Ok(()),
            Ok(Some(pages)) => out(json, &pages, |p| format!("wrote {} man pages", p.len())),
            Err(e) => Err(Error::Usage(format!("write man pages: {e}"))),
        },
        // The exit code tells the parent what happened (see `pdftext`).
        Command::PdfText => std::process::exit(appliance::pdftext::child_main()),
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
            // Creates the staging lock file now, so a refused import later changes nothing.
            agent::StagingLock::take(&d.staging())?;
            let public = identity::create(&d.identity_dir())?;
            Store::create(&d.database(), &public.did)?;
            api::tls::ensure(&d.tls_dir(), &[])?;
            bundles::fsutil::atomic_write(
                &d.marker(),
                serde_json::to_string_pretty(
                    &serde_json::json!({ "format": "eurocomply-spoke/1", "did": public.did }),
                )
                .map_err(|e| Error::Usage(e.to_string()))?
                .as_bytes(),
            )?;
            // Builds the (empty) search index now, so later opens change nothing.
            Appliance::open(&d)?;
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
            let progress = bundles::progress::TtyBar::new("importing", true);
            let (report, change) = intake::import_medium(&d, &medium, &Actor::cli(), &progress)?;
            import_out(json, &report, change.as_ref(), None)
        }
        Command::Sync {
            data,
            from,
            ca,
            retries,
        } => {
            let d = DataDir::new(&data);
            let opts = agent::sync::SyncOptions {
                url: from,
                ca,
                retries,
            };
            let progress = bundles::progress::TtyBar::new("syncing", true);
            let (report, change) = intake::sync_from(&d, &opts, &progress)?;
            import_out(json, &report.import, change.as_ref(), Some(&report))
        }
        Command::Packs { data } => {
            let d = DataDir::new(&data);
            d.check_initialised()?;
            let rows: Vec<PackRow> = d
                .open_store()?
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
            let rows = d.open_store()?.bundles(None)?;
            out(json, &rows, |rs| {
                rs.iter()
                    .map(|r| format!("{:8} {:40} {:12} {}", r.kind, r.name, r.version, r.cid))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        Command::Os { command } => os_command(json, command),
        Command::Audit {
            command: AuditCommand::Verify { data, against },
        } => {
            let d = DataDir::new(&data);
            d.check_initialised()?;
            let v = match &against {
                None => d.open_store()?.audit_verify()?,
                Some(file) => report::verify_against(&open(&data)?, &d, file)?,
            };
            out(json, &v, |v| {
                let checked = against
                    .as_ref()
                    .map(|f| format!(", and matches {}", f.display()))
                    .unwrap_or_default();
                format!(
                    "audit log intact: {} entries, head {}{checked}",
                    v.entries, v.head
                )
            })
        }
        Command::Audit {
            command: AuditCommand::Checkpoint { data, to },
        } => {
            let a = open(&data)?;
            let doc = report::checkpoint(&a, a.dir())?;
            let entries = doc.body["audit_entries"].as_u64().unwrap_or(0);
            let path = report::write(&to, &format!("audit-checkpoint-{entries}.json"), &doc)?;
            out(json, &json_path(&path), |_| {
                format!(
                    "wrote the signed audit checkpoint {} ({entries} entries)",
                    path.display()
                )
            })
        }
        Command::Audit {
            command: AuditCommand::List { data },
        } => {
            let d = DataDir::new(&data);
            d.check_initialised()?;
            let entries = d.open_store()?.audit_entries()?;
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
        Command::Changes { command } => work::changes(json, command),
        Command::Report { data, to } => {
            let a = open(&data)?;
            let doc = report::report(&a, a.dir())?;
            let path = report::write(&to, "report.json", &doc)?;
            out(json, &json_path(&path), |_| {
                format!("wrote the signed report {}", path.display())
            })
        }
        Command::Evidence { data, to, id } => {
            let a = open(&data)?;
            let doc = report::evidence(&a, a.dir(), &id)?;
            let path = report::write(&to, &format!("evidence-{id}.json"), &doc)?;
            out(json, &json_path(&path), |_| {
                format!("wrote the signed evidence pack {}", path.display())
            })
        }
        Command::Ai { command } => crate::ai::ai(json, command),
        Command::Models { command } => crate::ai::models(json, command),
        Command::Entity { command } => work::entity(json, command),
        Command::Doc { command } => work::doc(json, command),
        Command::Search {
            data,
            kind,
            tag,
            limit,
            query,
        } => {
            let a = open(&data)?;
            let filter = search::Filter { kind, tags: tag };
            let hits = a.search(&Actor::cli(), &query, &filter, limit)?;
            out(json, &hits, |hs| {
                if hs.is_empty() {
                    return format!("nothing found for {query:?}");
                }
                hs.iter()
                    .map(|h| {
                        format!(
                            "{:7.3} {:9} {:24} {}\n        {}",
                            h.score, h.kind, h.id, h.title, h.snippet
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        Command::Eval {
            data,
            all,
            replay,
            as_of,
            products,
        } => work::eval(json, &data, all, replay, as_of, products),
        Command::Locks {
            data,
            product,
            show,
        } => work::locks(json, &data, product, show),
        Command::Verify { data, full } => {
            let a = open(&data)?;
            let depth = if full {
                appliance::Depth::Digests
            } else {
                appliance::Depth::Sizes
            };
            let health = a.verify(depth);
            out(json, &health, |h| {
                h.checks
                    .iter()
                    .map(|(name, ok, detail)| {
                        format!("{} {name}: {detail}", if *ok { "ok  " } else { "FAIL" })
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
            let failed: Vec<&str> = health
                .checks
                .iter()
                .filter(|c| !c.1)
                .map(|c| c.0.as_str())
                .collect();
            if failed.is_empty() {
                Ok(())
            } else {
                Err(Error::Unhealthy(failed.join(", ")))
            }
        }
        Command::Reindex { data } => {
            let mut a = open(&data)?;
            let n = a.reindex()?;
            out(json, &serde_json::json!({ "indexed": n }), |_| {
                format!("search index rebuilt: {n} documents")
            })
        }
        Command::Users { command } => work::users(json, command),
        Command::Lifecycle {
            data,
            set,
            reason,
            as_admin,
            cooling_off_days,
        } => work::lifecycle(
            json,
            &data,
            work::LifecycleArgs {
                set,
                reason,
                as_admin,
                cooling_off_days,
            },
        ),
        Command::Status { data } => {
            let a = open(&data)?;
            let status = a.status()?;
            out(json, &status, |s| {
                serde_json::to_string_pretty(s).unwrap_or_default()
            })
        }
        Command::Backup {
            data,
            to,
            recipient,
            keep,
        } => durable::backup(json, &data, &to, &recipient, keep),
        Command::Backups { from } => durable::list(json, &from),
        Command::Restore {
            data,
            identity,
            backup,
            force,
            from,
        } => durable::restore(json, &from, &data, &identity, backup.as_deref(), force),
        Command::VerifyRestore {
            identity,
            backup,
            from,
        } => durable::verify_restore(json, &from, &identity, backup.as_deref()),
        Command::Export {
            data,
            to,
            with_credentials,
        } => durable::export(json, &data, &to, with_credentials),
        Command::Decommission { command } => durable::decommission(json, command),
        Command::Serve {
            data,
            addr,
            http,
            rate_limit,
            max_upload,
            watch,
            watch_every,
            media,
            sync_from,
            sync_ca,
            sync_every,
            ai_concurrency,
            backup_to,
            backup_every,
            backup_keep,
            backup_recipient,
            esp,
            sign_in_lock_after,
            sign_in_lock_minutes,
        } => {
            if let Some(esp) = esp.as_ref().filter(|e| !e.is_dir()) {
                return Err(Error::Usage(format!(
                    "--esp {}: no such directory; give where the EFI system partition is mounted",
                    esp.display()
                )));
            }
            let policy =
                appliance::throttle::Policy::new(sign_in_lock_after, sign_in_lock_minutes)?;
            let mut a = open(&data)?;
            a.store_mut().set_sign_in_policy(policy);
            let mut backups = None;
            if let Some(to) = backup_to {
                let every = crate::backup::parse_duration(&backup_every)?;
                let recipients = durable::recipients(a.dir(), &backup_recipient)?;
                crate::backup::backup_every(
                    a.dir().clone(),
                    to.clone(),
                    recipients.clone(),
                    backup_keep,
                    every,
                );
                backups = Some(std::sync::Arc::new(crate::backup::ServedBackups {
                    d: a.dir().clone(),
                    to,
                    recipients,
                    keep: backup_keep,
                }) as std::sync::Arc<dyn api::Backups>);
            }
            if let Some(dir) = watch {
                intake::watch_media(
                    a.dir().clone(),
                    dir,
                    std::time::Duration::from_secs(watch_every.max(1)),
                );
            }
            if let Some(url) = sync_from {
                let opts = agent::sync::SyncOptions {
                    url,
                    ca: sync_ca,
                    retries: 4,
                };
                intake::sync_every(
                    a.dir().clone(),
                    opts,
                    std::time::Duration::from_secs(60 * sync_every.max(1)),
                );
            }
            a.set_max_upload(max_upload);
            let tls = if http {
                None
            } else {
                Some(api::tls::ensure(&a.dir().tls_dir(), &[])?)
            };
            let runtime = tokio::runtime::Runtime::new()
                .map_err(|e| Error::Usage(format!("start the async runtime: {e}")))?;
            let media = media.map(|dir| {
                std::sync::Arc::new(intake::MediaDir::new(a.dir().clone(), dir))
                    as std::sync::Arc<dyn api::Media>
            });
            let config = api::Config {
                addr,
                tls,
                rate_limit,
                ai_concurrency,
                media,
                backups,
                os: esp.map(|esp| {
                    std::sync::Arc::new(crate::os::ServedOs { esp })
                        as std::sync::Arc<dyn api::OsSlots>
                }),
            };
            runtime.block_on(api::serve(a, config, |url| {
                if json {
                    println!("{}", serde_json::json!({ "listening": url }));
                } else {
                    println!("spoke API listening on {url}");
                }
            }))?;
            Ok(())
        }
    }
}

fn os_command(json: bool, command: OsCommand) -> Result<(), Error> {
    match command {
        OsCommand::Status { esp } => {
            let st = crate::os::status(&esp)?;
            out(json, &st, |st| {
                st.iter()
                    .map(|s| {
                        format!(
                            "slot {} {:<8} {}{}{}{}  ({})",
                            s.slot.slot,
                            s.version.as_deref().unwrap_or("?"),
                            match (s.blessed, s.failed, s.slot.tries_left) {
                                (true, _, _) => "blessed".to_string(),
                                (_, true, _) => "failed".to_string(),
                                (_, _, Some(n)) => format!("{n} tries left"),
                                _ => String::new(),
                            },
                            if s.booted { ", booted" } else { "" },
                            if s.next { ", boots next" } else { "" },
                            "",
                            s.slot.file
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        OsCommand::Install {
            data,
            esp,
            version,
            active,
        } => {
            let active = match active {
                Some(c @ ('a' | 'b')) => c,
                Some(c) => return Err(Error::Usage(format!("--active {c}: a slot is a or b"))),
                None => crate::boot::slots::booted_entry()
                    .and_then(|e| crate::boot::slots::slot_of_entry(&e))
                    .ok_or_else(|| {
                        Error::Usage(
                            "systemd-boot did not report the running slot; pass --active a|b"
                                .into(),
                        )
                    })?,
            };
            let running = crate::os::running_version();
            let done = crate::os::install(
                &DataDir::new(&data),
                &esp,
                version.as_ref(),
                active,
                running.as_ref(),
            )?;
            out(json, &done, |d| {
                format!(
                    "OS {} written to slot {} as {}; it boots next (3 tries, then back to slot {active})",
                    d.version, d.slot, d.file
                )
            })
        }
        OsCommand::Rollback { esp } => {
            let (from, to) = crate::os::rollback(&esp)?;
            out(
                json,
                &serde_json::json!({ "failed": from, "next": to }),
                |_| {
                    format!(
                        "slot {} marked failed; slot {} boots next",
                        from.slot, to.slot
                    )
                },
            )
        }
        OsCommand::Policy {
            data,
            channel,
            pin,
            window,
            no_window,
        } => {
            let d = DataDir::new(&data);
            d.check_initialised()?;
            let mut p = crate::policy::Policy::load(&d)?;
            let changed = channel.is_some() || pin.is_some() || window.is_some() || no_window;
            if let Some(c) = channel {
                p.channel = c;
            }
            if pin.is_some() {
                p.pinned_version = pin;
            }
            if no_window {
                p.maintenance_window = None;
            }
            if let Some(w) = window {
                p.maintenance_window = Some(crate::policy::Window::parse(&w)?);
            }
            if changed {
                p.save(&d)?;
            }
            out(json, &p, |p| {
                format!(
                    "channel {:?}{}; {}",
                    p.channel,
                    p.pinned_version
                        .as_ref()
                        .map(|v| format!(" (pinned to {v})"))
                        .unwrap_or_default(),
                    p.maintenance_window
                        .as_ref()
                        .map(|w| format!(
                            "maintenance window {} {} for {} h ({})",
                            w.day, w.start, w.hours, w.timezone
                        ))
                        .unwrap_or_else(|| "no maintenance window".into())
                )
            })
        }
        OsCommand::Auto { data, esp } => {
            let r = crate::os::auto(&DataDir::new(&data), &esp, jiff::Timestamp::now())?;
            out(json, &r, |r| match &r.installed {
                Some(i) => format!(
                    "OS {} written to slot {}; reboot to run it",
                    i.version, i.slot
                ),
                None => format!("nothing to apply: {}", r.reason),
            })
        }
        OsCommand::Check { data } => {
            let h = crate::os::check(&open(&data)?);
            out(json, &h, |h| {
                h.checks
                    .iter()
                    .map(|(name, ok, detail)| {
                        format!(
                            "{:<13} {}  {detail}",
                            name,
                            if *ok { "ok" } else { "FAILED" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
            if h.ok {
                Ok(())
            } else {
                Err(Error::Os(
                    "the health check failed (see above); this OS must not be blessed on this data directory"
                        .into(),
                ))
            }
        }
        OsCommand::Capabilities => {
            let c = crate::os::Capabilities::current();
            out(json, &c, |c| {
                format!(
                    "kernel VM {}, database schema {}",
                    c.vm_version, c.schema_version
                )
            })
        }
    }
}

/// Prints what an import or sync installed and the change it proposed.
fn import_out(
    json: bool,
    report: &agent::ImportReport,
    change: Option<&Change>,
    sync: Option<&agent::sync::SyncReport>,
) -> Result<(), Error> {
    let mut value = intake::import_json(report, change);
    let mut lines: Vec<String> = report
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
        "{} installed, {} already present, {} listed but not carried; trusted root version {}",
        report.installed.len(),
        report.already_installed.len(),
        report.not_on_medium,
        report.root_version
    ));
    if let Some(s) = sync {
        value["fetched_files"] = s.fetched_files.into();
        value["fetched_bytes"] = s.fetched_bytes.into();
        value["resumed_chunks"] = s.resumed_chunks.into();
        lines.push(format!(
            "fetched {} files ({} bytes); {} chunks reused from an interrupted run",
            s.fetched_files, s.fetched_bytes, s.resumed_chunks
        ));
    }
    if let Some(c) = change {
        lines.push(work::describe_change(c));
    }
    out(json, &value, |_| lines.join("\n"))
}

fn json_path(path: &std::path::Path) -> serde_json::Value {
    serde_json::json!({ "file": path })
}

/// Opens the data directory's stores.
pub(crate) fn open(data: &std::path::Path) -> Result<Appliance, Error> {
    let mut a = Appliance::open(&DataDir::new(data))?;
    // PDFs are read by this same program in a limited child process.
    let me = std::env::current_exe()
        .map_err(|e| Error::Usage(format!("cannot tell where this spoke binary is: {e}")))?;
    a.set_extractor(appliance::pdftext::Extractor::Child(me));
    Ok(a)
}
