//! Packs: how a backup directory stores chunks.
//!
//! A pack is one age file (`packs/<name>.age`) whose plain text is the
//! stored (zstd) bytes of many chunks, one after another, with a clear index
//! beside it (`packs/<name>.idx`): a header line, then one line per chunk,
//! `<chunk id> <offset> <length>`. One pack holds up to [`PACK_BYTES`], so a
//! backup pays age's key agreement once per pack instead of once per chunk,
//! and restore reads a few large files instead of tens of thousands of
//! small ones.
//!
//! Nothing in an index is trusted on restore: every chunk read through it is
//! checked against the id (its SHA-256) and sizes the signed manifest gives,
//! so a wrong or edited index can only make a restore fail, never change what
//! it writes. An index only lets a backup skip chunks the directory already
//! holds, and lets retention find packs no backup uses without the key.

use crate::Error;
use bundles::index::ChunkRef;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Stored bytes after which a pack is closed and a new one begun.
pub(crate) const PACK_BYTES: u64 = 64 << 20;
/// First line of every index.
const INDEX_FORMAT: &str = "eurocomply-backup-pack/1";
/// Largest index read (a full pack of 4 KiB database pages is ~1.3 MiB).
const MAX_INDEX: u64 = 16 << 20;
/// Packs kept open at once while restoring.
const MAX_OPEN: usize = 16;

fn err(msg: impl Into<String>) -> Error {
    Error::Backup(msg.into())
}

/// Where a chunk's stored bytes sit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Loc {
    pack: String,
    offset: u64,
    len: u64,
}

/// The packs of a backup directory, as their indexes describe them.
pub(crate) struct Packs {
    dir: PathBuf,
    chunks: HashMap<String, Loc>,
    /// Each readable pack with the chunks it holds.
    packs: HashMap<String, Vec<String>>,
    /// Packs whose index could not be used; retention leaves them alone.
    unreadable: HashSet<String>,
}

fn valid_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Packs {
    /// Reads every index in `dir` (the `packs` directory; absent means
    /// none). A pack whose index is unreadable, or whose age file is missing
    /// or not the length its index records (cut short by a crash), is left
    /// out: its chunks count as absent.
    pub(crate) fn load(dir: &Path) -> Result<Packs, Error> {
        let mut packs = Packs {
            dir: dir.to_path_buf(),
            chunks: HashMap::new(),
            packs: HashMap::new(),
            unreadable: HashSet::new(),
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(packs),
            Err(e) => return Err(err(format!("list {}: {e}", dir.display()))),
        };
        for e in entries {
            let e = e.map_err(|e| err(format!("list {}: {e}", dir.display())))?;
            let file = e.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_suffix(".idx").filter(|n| valid_name(n)) else {
                continue;
            };
            match packs.read_index(name) {
                Ok(lines) => {
                    let ids = lines.iter().map(|(id, _)| id.clone()).collect();
                    packs.chunks.extend(lines);
                    packs.packs.insert(name.to_string(), ids);
                }
                Err(why) => {
                    tracing::warn!("pack {name} left out: {why}");
                    packs.unreadable.insert(name.to_string());
                }
            }
        }
        Ok(packs)
    }

    fn read_index(&self, name: &str) -> Result<Vec<(String, Loc)>, String> {
        let path = self.dir.join(format!("{name}.idx"));
        let mut text = String::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_INDEX + 1).read_to_string(&mut text))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if text.len() as u64 > MAX_INDEX {
            return Err(format!(
                "{} is larger than {MAX_INDEX} bytes",
                path.display()
            ));
        }
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        let sealed: u64 = header
            .strip_prefix(INDEX_FORMAT)
            .and_then(|rest| rest.trim().parse().ok())
            .ok_or_else(|| format!("{}: not a {INDEX_FORMAT} index", path.display()))?;
        let pack = self.dir.join(format!("{name}.age"));
        let found = std::fs::metadata(&pack).map(|m| m.len()).unwrap_or(0);
        if found != sealed {
            return Err(format!(
                "{} is {found} bytes where its index says {sealed}",
                pack.display()
            ));
        }
        lines
            .map(|line| {
                let mut parts = line.split(' ');
                let (Some(id), Some(offset), Some(len), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(format!("{}: bad line {line:?}", path.display()));
                };
                match (valid_name(id), offset.parse(), len.parse()) {
                    (true, Ok(offset), Ok(len)) => Ok((
                        id.to_string(),
                        Loc {
                            pack: name.to_string(),
                            offset,
                            len,
                        },
                    )),
                    _ => Err(format!("{}: bad line {line:?}", path.display())),
                }
            })
            .collect()
    }

    /// Packs none of whose chunks is in `used`, and files of the directory
    /// that belong to no pack (a killed run's partial pack, or a pack whose
    /// index was never written). A pack whose index could not be read is
    /// kept: a passing read error must not delete a backup.
    pub(crate) fn unused(&self, used: &HashSet<String>) -> Result<Vec<PathBuf>, Error> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(err(format!("list {}: {e}", self.dir.display()))),
        };
        for e in entries {
            let e = e.map_err(|e| err(format!("list {}: {e}", self.dir.display())))?;
            let file = e.file_name().to_string_lossy().into_owned();
            let name = file
                .strip_suffix(".age")
                .or_else(|| file.strip_suffix(".idx"))
                .unwrap_or_default();
            let keep = self.unreadable.contains(name)
                || self
                    .packs
                    .get(name)
                    .is_some_and(|ids| ids.iter().any(|id| used.contains(id)));
            if !keep {
                out.push(e.path());
            }
        }
        out.sort();
        Ok(out)
    }

    /// A reader of chunks for a restore.
    pub(crate) fn reader<'a>(&'a self, identities: &'a [age::x25519::Identity]) -> PackReader<'a> {
        PackReader {
            packs: self,
            identities,
            open: HashMap::new(),
        }
    }
}

/// Maps age's refusal to decrypt `origin` to an error an operator can act on.
pub(crate) fn decrypt_error(origin: &Path, e: age::DecryptError) -> Error {
    match e {
        age::DecryptError::NoMatchingKeys => err(format!(
            "{} is not encrypted to any identity in the given --identity file: \
             use the key of a recipient the backup was made for",
            origin.display()
        )),
        other => err(format!(
            "{}: {other}: the backup is damaged",
            origin.display()
        )),
    }
}

type Stream = age::stream::StreamReader<BufReader<std::fs::File>>;

/// Reads chunks out of packs, keeping recently used packs open (one key
/// agreement per pack) and seeking only when a chunk is not the next one.
pub(crate) struct PackReader<'a> {
    packs: &'a Packs,
    identities: &'a [age::x25519::Identity],
    /// Open packs with the plain-text position each is at.
    open: HashMap<String, (Stream, u64)>,
}

impl PackReader<'_> {
    /// The stored bytes of chunk `r` into `stored`: located through the
    /// indexes, decrypted, and as long as the manifest says (the caller
    /// checks the digest). A chunk reference no backup could have written
    /// (too large, a malformed id) is refused before anything is read.
    pub(crate) fn read(&mut self, r: &ChunkRef, stored: &mut Vec<u8>) -> Result<(), Error> {
        if r.size > bundles::index::MAX_CHUNK_SIZE
            || r.stored > bundles::index::MAX_CHUNK_SIZE + bundles::index::MAX_CHUNK_SIZE / 8 + 1024
            || !valid_name(&r.id)
        {
            return Err(err(format!(
                "the manifest lists an impossible chunk {:?}",
                r.id
            )));
        }
        let loc = self.packs.chunks.get(&r.id).ok_or_else(|| {
            err(format!(
                "chunk {} is in no pack of {} (no index lists it): the backup is incomplete",
                r.id,
                self.packs.dir.display()
            ))
        })?;
        let path = self.packs.dir.join(format!("{}.age", loc.pack));
        if loc.len != r.stored {
            return Err(err(format!(
                "{}: its index gives chunk {} {} bytes where the manifest says {}: the backup is damaged",
                path.display(),
                r.id,
                loc.len,
                r.stored
            )));
        }
        if !self.open.contains_key(&loc.pack) {
            if self.open.len() >= MAX_OPEN {
                self.open.clear();
            }
            let file = std::fs::File::open(&path)
                .map_err(|e| err(format!("{}: {e}: the backup is incomplete", path.display())))?;
            let stream = age::Decryptor::new(BufReader::with_capacity(1 << 18, file))
                .map_err(|e| {
                    err(format!(
                        "{} is not a readable age file ({e}): the backup is damaged or truncated",
                        path.display()
                    ))
                })?
                .decrypt(self.identities.iter().map(|i| i as &dyn age::Identity))
                .map_err(|e| decrypt_error(&path, e))?;
            self.open.insert(loc.pack.clone(), (stream, 0));
        }
        let damaged = |e: std::io::Error| {
            err(format!(
                "{}: decryption failed ({e}): the backup is damaged or truncated",
                path.display()
            ))
        };
        let (stream, at) = self
            .open
            .get_mut(&loc.pack)
            .ok_or_else(|| err("restore: a pack closed while in use"))?;
        if *at != loc.offset {
            stream.seek(SeekFrom::Start(loc.offset)).map_err(damaged)?;
        }
        // Mark the position unknown until the read has succeeded.
        *at = u64::MAX;
        let len = usize::try_from(loc.len).map_err(|_| err("chunk too large"))?;
        stored.resize(len, 0);
        stream.read_exact(stored).map_err(damaged)?;
        *at = loc.offset + loc.len;
        Ok(())
    }
}

/// Appends new chunks to packs while a backup runs.
pub(crate) struct PackWriter<'a> {
    dir: PathBuf,
    recipients: &'a [age::x25519::Recipient],
    /// Chunks the directory holds, including those added by this writer.
    known: HashSet<String>,
    open: Option<OpenPack>,
    /// Chunks added.
    pub(crate) added: usize,
    /// Bytes of the packs and indexes written.
    pub(crate) written: u64,
}

struct OpenPack {
    file: tempfile::NamedTempFile,
    stream: age::stream::StreamWriter<BufWriter<std::fs::File>>,
    lines: Vec<(String, u64, u64)>,
    offset: u64,
}

impl<'a> PackWriter<'a> {
    /// A writer into `dir` (the `packs` directory), encrypting to
    /// `recipients`, that skips the chunks `packs` already holds. Partial
    /// packs of a killed run are removed first (the caller holds the
    /// directory's lock).
    pub(crate) fn new(
        dir: &Path,
        packs: &Packs,
        recipients: &'a [age::x25519::Recipient],
    ) -> Result<PackWriter<'a>, Error> {
        bundles::fsutil::create_private_dir(dir)?;
        for e in std::fs::read_dir(dir).map_err(|e| err(format!("list {}: {e}", dir.display())))? {
            let e = e.map_err(|e| err(format!("list {}: {e}", dir.display())))?;
            if e.file_name().to_string_lossy().starts_with(".tmp") {
                let p = e.path();
                std::fs::remove_file(&p)
                    .map_err(|e| err(format!("remove {}: {e}", p.display())))?;
            }
        }
        Ok(PackWriter {
            dir: dir.to_path_buf(),
            recipients,
            known: packs.chunks.keys().cloned().collect(),
            open: None,
            added: 0,
            written: 0,
        })
    }

    /// Adds a chunk unless the directory already holds it.
    pub(crate) fn add(&mut self, id: &str, stored: &[u8]) -> Result<(), Error> {
        if self.known.contains(id) {
            return Ok(());
        }
        let open = match &mut self.open {
            Some(open) => open,
            None => self.open.insert(self.begin()?),
        };
        open.stream
            .write_all(stored)
            .map_err(|e| err(format!("write {}: {e}", open.file.path().display())))?;
        open.lines
            .push((id.to_string(), open.offset, stored.len() as u64));
        open.offset += stored.len() as u64;
        self.known.insert(id.to_string());
        self.added += 1;
        if open.offset >= PACK_BYTES {
            self.close()?;
        }
        Ok(())
    }

    fn begin(&self) -> Result<OpenPack, Error> {
        let file = tempfile::Builder::new()
            .prefix(".tmp-pack-")
            .tempfile_in(&self.dir)
            .map_err(|e| err(format!("create a pack in {}: {e}", self.dir.display())))?;
        let out = file
            .as_file()
            .try_clone()
            .map_err(|e| err(format!("{}: {e}", file.path().display())))?;
        let stream = age::Encryptor::with_recipients(
            self.recipients.iter().map(|r| r as &dyn age::Recipient),
        )
        .map_err(|e| Error::Usage(format!("age recipients: {e}")))?
        .wrap_output(BufWriter::with_capacity(1 << 20, out))
        .map_err(|e| err(format!("encrypt: {e}")))?;
        Ok(OpenPack {
            file,
            stream,
            lines: Vec::new(),
            offset: 0,
        })
    }

    /// Seals the open pack: finishes its age stream, names it by the digest
    /// of its index lines, moves it into place, then writes its index. Not
    /// synced: the backup syncs the filesystem once before its manifest.
    pub(crate) fn close(&mut self) -> Result<(), Error> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let tmp = open.file.path().to_path_buf();
        let write_err = |e: std::io::Error| err(format!("write {}: {e}", tmp.display()));
        open.stream
            .finish()
            .and_then(|mut w| w.flush())
            .map_err(write_err)?;
        let sealed = open.file.as_file().metadata().map_err(write_err)?.len();
        let body: String = open
            .lines
            .iter()
            .map(|(id, offset, len)| format!("{id} {offset} {len}\n"))
            .collect();
        let name = hex::encode(Sha256::digest(body.as_bytes()));
        let pack = self.dir.join(format!("{name}.age"));
        open.file
            .persist(&pack)
            .map_err(|e| err(format!("move a pack to {}: {}", pack.display(), e.error)))?;
        let index = format!("{INDEX_FORMAT} {sealed}\n{body}");
        bundles::fsutil::write_unsynced(&self.dir.join(format!("{name}.idx")), index.as_bytes())?;
        self.written += sealed + index.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: u8, len: usize) -> (ChunkRef, Vec<u8>) {
        let bytes = vec![n; len];
        let r = ChunkRef {
            id: hex::encode(Sha256::digest(&bytes)),
            size: len as u64,
            stored: len as u64,
        };
        (r, bytes)
    }

    #[test]
    fn chunks_come_back_in_any_order_and_packs_are_skipped_when_known() {
        let dir = tempfile::tempdir().unwrap();
        let packs_dir = dir.path().join("packs");
        let identity = age::x25519::Identity::generate();
        let recipients = [identity.to_public()];
        let chunks: Vec<_> = (0..40u8)
            .map(|n| chunk(n, 1000 + n as usize * 3000))
            .collect();
        let empty = Packs::load(&packs_dir).unwrap();
        let mut w = PackWriter::new(&packs_dir, &empty, &recipients).unwrap();
        for (r, bytes) in &chunks[..30] {
            w.add(&r.id, bytes).unwrap();
        }
        w.add(&chunks[0].0.id, &chunks[0].1).unwrap();
        w.close().unwrap();
        assert_eq!(w.added, 30, "a chunk added twice is stored once");
        // A second writer (the next backup) adds only what is new.
        let packs = Packs::load(&packs_dir).unwrap();
        let mut w = PackWriter::new(&packs_dir, &packs, &recipients).unwrap();
        for (r, bytes) in &chunks {
            w.add(&r.id, bytes).unwrap();
        }
        w.close().unwrap();
        assert_eq!(w.added, 10);

        let packs = Packs::load(&packs_dir).unwrap();
        assert_eq!(packs.packs.len(), 2);
        let mut reader = packs.reader(std::slice::from_ref(&identity));
        let mut got = Vec::new();
        for i in [39usize, 0, 1, 2, 17, 35, 3, 29, 30] {
            reader.read(&chunks[i].0, &mut got).unwrap();
            assert_eq!(got, chunks[i].1, "chunk {i}");
        }

        // Retention: chunks 0..5 are all in the first pack, so only the
        // second one (which holds 30..40) is unused.
        let used: HashSet<String> = chunks[..5].iter().map(|(r, _)| r.id.clone()).collect();
        let second = &packs.chunks[&chunks[35].0.id].pack;
        assert_eq!(
            packs.unused(&used).unwrap(),
            vec![
                packs_dir.join(format!("{second}.age")),
                packs_dir.join(format!("{second}.idx"))
            ]
        );
    }

    #[test]
    fn damage_is_reported_and_short_packs_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let packs_dir = dir.path().join("packs");
        let identity = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let recipients = [identity.to_public()];
        let (r, bytes) = chunk(7, 200_000);
        let mut w =
            PackWriter::new(&packs_dir, &Packs::load(&packs_dir).unwrap(), &recipients).unwrap();
        w.add(&r.id, &bytes).unwrap();
        w.close().unwrap();
        let packs = Packs::load(&packs_dir).unwrap();
        let pack = packs_dir.join(format!("{}.age", packs.chunks[&r.id].pack));

        let refused = |identity: &age::x25519::Identity, r: &ChunkRef| {
            packs
                .reader(std::slice::from_ref(identity))
                .read(r, &mut Vec::new())
                .unwrap_err()
                .to_string()
        };
        let msg = refused(&other, &r);
        assert!(msg.contains("not encrypted to"), "{msg}");
        let msg = refused(&identity, &chunk(8, 10).0);
        assert!(msg.contains("incomplete"), "{msg}");
        let mut impossible = r.clone();
        impossible.id = "../../etc/passwd".into();
        let msg = refused(&identity, &impossible);
        assert!(msg.contains("impossible chunk"), "{msg}");

        let good = std::fs::read(&pack).unwrap();
        let mut bad = good.clone();
        let at = bad.len() / 2;
        bad[at] ^= 1;
        std::fs::write(&pack, &bad).unwrap();
        let msg = refused(&identity, &r);
        assert!(msg.contains("damaged"), "{msg}");

        // An index that is not one: its pack is left out, and kept.
        let index = pack.with_extension("idx");
        let good_index = std::fs::read(&index).unwrap();
        std::fs::write(&index, b"not an index\n").unwrap();
        let garbled = Packs::load(&packs_dir).unwrap();
        assert!(!garbled.chunks.contains_key(&r.id));
        assert!(garbled.unused(&HashSet::new()).unwrap().is_empty());
        std::fs::write(&index, &good_index).unwrap();

        // Cut short (as by a crash before the filesystem sync): the pack no
        // longer counts, so the next backup writes its chunks again.
        std::fs::write(&pack, &good[..good.len() - 100]).unwrap();
        let cut = Packs::load(&packs_dir).unwrap();
        assert!(!cut.chunks.contains_key(&r.id));
        // Retention leaves a pack it cannot read alone, but removes a
        // killed run's partial pack.
        std::fs::write(packs_dir.join(".tmp-pack-x"), b"partial").unwrap();
        assert_eq!(
            cut.unused(&HashSet::new()).unwrap(),
            vec![packs_dir.join(".tmp-pack-x")]
        );
    }
}
