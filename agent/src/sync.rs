//! Pull-only sync: the spoke fetches a signed repository from a hub or any
//! static mirror of one (it never listens; the hub never connects) into a
//! local mirror, verifies it through the same `bundles::verify` path as a
//! medium, fetches only the indexes and chunks it lacks, and installs them
//! through the same commit as an import.
//!
//! The mirror lives in the data directory's staging area and survives a
//! failed run: chunks already fetched (each checked against its digest on
//! arrival) are not fetched again, so an interrupted sync resumes.
//! Metadata is parsed before verification only to learn which files to
//! fetch next, with size caps; tough then verifies it in full.

use crate::{install, io, Error, ImportReport, Paths, Registry};
use bundles::chunks::{chunk_rel_path, ChunkStore};
use bundles::repo::Layout;
use bundles::verify::{self, Policy, TrustState};
use bundles::Progress;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Caps on what one file may be, by kind.
const MAX_ROOT: u64 = 1024 * 1024;
const MAX_TIMESTAMP: u64 = 64 * 1024;
const MAX_SNAPSHOT: u64 = 1024 * 1024;
const MAX_TARGETS: u64 = 32 * 1024 * 1024;
const MAX_INDEX: u64 = 64 * 1024 * 1024;
/// Chunks are at most 1 MiB plain; stored bytes are capped a little above.
const MAX_CHUNK: u64 = 2 * 1024 * 1024;
const MAX_ROOT_UPDATES: u64 = 1024;

/// Where and how to pull from.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Base URL of the repository (`https://hub.example/repo`); plain
    /// `http://` only for a loopback address.
    pub url: String,
    /// PEM file with the CA (or self-signed certificate) to trust instead of
    /// the bundled Mozilla roots.
    pub ca: Option<PathBuf>,
    /// Attempts per file after the first, with exponential back-off.
    pub retries: u32,
}

/// What a sync did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncReport {
    /// The install, exactly as an import reports it.
    pub import: ImportReport,
    /// Files fetched over the network in this run.
    pub fetched_files: usize,
    /// Bytes fetched.
    pub fetched_bytes: u64,
    /// Chunks found already fetched and verified by an earlier, interrupted run.
    pub resumed_chunks: usize,
}

struct Client {
    agent: ureq::Agent,
    base: String,
    retries: u32,
    files: usize,
    bytes: u64,
}

fn fetch_error(url: &str, why: impl std::fmt::Display) -> Error {
    Error::Fetch(format!("{url}: {why}"))
}

impl Client {
    fn new(opts: &SyncOptions) -> Result<Client, Error> {
        let url = url::Url::parse(&opts.url).map_err(|e| fetch_error(&opts.url, e))?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            other => {
                return Err(fetch_error(
                    &opts.url,
                    format!("{other}:// is not allowed; use https:// (plain http only to a loopback mirror)"),
                ))
            }
        }
        let mut builder = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(15))
            .timeout_read(Duration::from_secs(60))
            .redirects(0);
        if let Some(ca) = &opts.ca {
            builder = builder.tls_config(Arc::new(pinned_tls(ca)?));
        }
        Ok(Client {
            agent: builder.build(),
            base: opts.url.trim_end_matches('/').to_string(),
            retries: opts.retries,
            files: 0,
            bytes: 0,
        })
    }

    /// GETs `rel` (capped at `max` bytes); Ok(None) on 404. Retries other
    /// failures with exponential back-off.
    fn get(&mut self, rel: &str, max: u64) -> Result<Option<Vec<u8>>, Error> {
        let url = format!("{}/{rel}", self.base);
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            match self.agent.get(&url).call() {
                Ok(resp) => {
                    let mut body = Vec::new();
                    resp.into_reader()
                        .take(max + 1)
                        .read_to_end(&mut body)
                        .map_err(|e| fetch_error(&url, e))?;
                    if body.len() as u64 > max {
                        return Err(fetch_error(
                            &url,
                            format!("larger than the {max}-byte limit"),
                        ));
                    }
                    self.files += 1;
                    self.bytes += body.len() as u64;
                    return Ok(Some(body));
                }
                Err(ureq::Error::Status(404, _)) => return Ok(None),
                Err(e) if attempt < self.retries => {
                    tracing::warn!("fetching {url} failed ({e}); retrying in {delay:?}");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(30));
                    attempt += 1;
                }
                Err(e) => return Err(fetch_error(&url, e)),
            }
        }
    }

    fn need(&mut self, rel: &str, max: u64) -> Result<Vec<u8>, Error> {
        self.get(rel, max)?
            .ok_or_else(|| fetch_error(&format!("{}/{rel}", self.base), "not found (404)"))
    }
}

fn pinned_tls(ca: &Path) -> Result<rustls::ClientConfig, Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| Error::Fetch(format!("read CA {}: {e}", ca.display())))?;
    for cert in certs {
        let cert = cert.map_err(|e| Error::Fetch(format!("CA {}: {e}", ca.display())))?;
        roots
            .add(cert)
            .map_err(|e| Error::Fetch(format!("CA {}: {e}", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(Error::Fetch(format!(
            "{} holds no certificate",
            ca.display()
        )));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Fetch(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Reads a version out of unverified metadata, only to name the next file.
fn meta_version(bytes: &[u8], file: &str, role: &str) -> Result<u64, Error> {
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::Fetch(format!("{file}: not JSON: {e}")))?;
    v.pointer(&format!("/signed/meta/{role}.json/version"))
        .and_then(|v| v.as_u64())
        .ok_or_else(|| Error::Fetch(format!("{file} names no {role}.json version")))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    bundles::fsutil::write_unsynced(path, bytes)?;
    Ok(())
}

/// Pulls from `opts.url` and installs what is new. See the module docs.
pub fn sync(
    paths: &Paths,
    opts: &SyncOptions,
    registry: &mut dyn Registry,
    progress: &dyn Progress,
) -> Result<SyncReport, Error> {
    registry.accepting().map_err(Error::Registry)?;
    let mut client = Client::new(opts)?;
    let _lock = crate::StagingLock::take(&paths.staging)?;
    let mirror = Layout::new(paths.staging.join("sync-mirror"));
    // Metadata is fetched afresh every run; indexes and chunks are kept.
    let meta = mirror.metadata();
    if meta.exists() {
        std::fs::remove_dir_all(&meta).map_err(io("clear", &meta))?;
    }
    std::fs::create_dir_all(&meta).map_err(io("create", &meta))?;

    let trust = TrustState::load(&paths.trust)?;
    // Every root newer than the trusted one, in order, until the mirror has no more.
    let trusted = trust.root()?.signed.version.get();
    for version in trusted + 1..=trusted + MAX_ROOT_UPDATES {
        let name = format!("{version}.root.json");
        match client.get(&format!("metadata/{name}"), MAX_ROOT)? {
            Some(bytes) => write(&meta.join(&name), &bytes)?,
            None => break,
        }
    }
    let timestamp = client.need("metadata/timestamp.json", MAX_TIMESTAMP)?;
    write(&meta.join("timestamp.json"), &timestamp)?;
    let snapshot_name = format!(
        "{}.snapshot.json",
        meta_version(&timestamp, "timestamp.json", "snapshot")?
    );
    let snapshot = client.need(&format!("metadata/{snapshot_name}"), MAX_SNAPSHOT)?;
    write(&meta.join(&snapshot_name), &snapshot)?;
    let targets_name = format!(
        "{}.targets.json",
        meta_version(&snapshot, &snapshot_name, "targets")?
    );
    let targets = client.need(&format!("metadata/{targets_name}"), MAX_TARGETS)?;
    write(&meta.join(&targets_name), &targets)?;

    let policy = Policy::online();
    let verified = verify::verify_repository(mirror.root(), &trust, &policy)?;

    let installed = ChunkStore::new(&paths.chunks);
    let mirrored = mirror.chunks();
    let mut resumed = 0;
    for p in &verified.bundles {
        if !registry.wants(p) || registry.has(&p.cid).map_err(Error::Registry)? {
            continue;
        }
        if !verified.has_index(p) {
            let file = mirror.target_file(&p.target, p.sha256());
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let index = client.need(&format!("targets/{name}"), MAX_INDEX)?;
            write(&file, &index)?;
        }
        // Verified against the signed targets metadata before it is trusted.
        let (index, _) = verified.read_index(p)?;
        for chunk in index.entries.iter().flat_map(|e| &e.chunks) {
            if installed.contains(&chunk.id) {
                continue;
            }
            if mirrored.contains(&chunk.id) {
                resumed += 1;
                continue;
            }
            let rel = chunk_rel_path(&chunk.id);
            let bytes = client.need(
                &format!("chunks/{}", rel.display()),
                MAX_CHUNK.min(chunk.stored),
            )?;
            let found = hex::encode(Sha256::digest(&bytes));
            if found != chunk.id {
                return Err(Error::Bundles(bundles::Error::DigestMismatch {
                    what: format!("chunk fetched from {}", opts.url),
                    expected: chunk.id.clone(),
                    found,
                }));
            }
            mirrored.put(&chunk.id, &bytes)?;
        }
    }
    let staging =
        tempfile::tempdir_in(&paths.staging).map_err(io("create staging in", &paths.staging))?;
    let import = install(
        paths,
        staging.path(),
        &verified,
        &policy,
        registry,
        progress,
    )?;
    // Installed chunks now live in the data directory; the mirror's copies are spent.
    for id in mirrored.list()? {
        if installed.contains(&id) {
            let _ = std::fs::remove_file(mirrored.path(&id));
        }
    }
    Ok(SyncReport {
        import,
        fetched_files: client.files,
        fetched_bytes: client.bytes,
        resumed_chunks: resumed,
    })
}
