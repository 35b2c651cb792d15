//! Backup and restore throughput, written into `docs/benchmarks.md` (section
//! `backup-bench`): a spoke with 100,000 entities in SQLite and `--docs-mib`
//! MiB of documents in its object store, backed up (SQLite online backup,
//! FastCDC + zstd chunks, age encryption, fsync) and restored (decrypt,
//! verify every digest, audit chain and health checks, atomic rename),
//! against `cp -a` plus `tar | zstd -3 -T0` of the same files and
//! `zstd -d | tar -x` back, in the same run. Then the incremental backup
//! after changing 1% of the data: 1% more entities and documents (growth),
//! and 1% of entities edited in place.
//!
//! `cargo run --release -p spoke --bin backup-bench -- [--docs-mib 1024] [--entities 100000] [--no-write]`

use appliance::entities::EntityInput;
use appliance::{Actor, Appliance, DataDir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Compressible text like real documents (zstd -3 ratio about 3).
fn document(rng: &mut Rng, len: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "substance ",
        "limit ",
        "annex ",
        "cosmetic ",
        "safety ",
        "assessment ",
        "exposure ",
        "margin ",
        "toxicological ",
        "profile ",
        "concentration ",
        "product ",
        "report ",
        "\n",
        "restricted ",
        "allergen ",
    ];
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        let x = rng.next();
        out.extend_from_slice(WORDS[(x % 16) as usize].as_bytes());
        out.extend_from_slice((x % 100_000).to_string().as_bytes());
        out.push(b' ');
    }
    out.truncate(len);
    out
}

fn entity(i: u64, rng: &mut Rng, edit: u64) -> EntityInput {
    let components: Vec<serde_json::Value> = (0..5)
        .map(|c| {
            serde_json::json!({
                "substance": format!("Substance {}", rng.next() % 5000),
                "concentration": ((1 + rng.next() % 1000) as f64) / 100.0 + c as f64,
                "unit": "%w/w",
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "id": format!("p{i:06}"),
        "kind": "product",
        "name": format!("Product {i} revision {edit}"),
        "category": "leave_on",
        "markets": ["EU"],
        "components": components,
    }))
    .expect("entity input")
}

fn put_objects(d: &DataDir, rng: &mut Rng, mib: u64, tag: &str) {
    use sha2::Digest;
    let each = 4 << 20;
    for _ in 0..(mib / 4).max(1) {
        let bytes = document(rng, each);
        let id = hex::encode(sha2::Sha256::digest(&bytes));
        let dir = d.objects().join(&id[..2]);
        std::fs::create_dir_all(&dir).expect("objects dir");
        std::fs::write(dir.join(&id), &bytes).expect(tag);
    }
}

fn sh(script: &str) -> Duration {
    let t = Instant::now();
    let st = Command::new("sh")
        .args(["-c", script])
        .status()
        .expect("sh");
    assert!(st.success(), "{script}");
    t.elapsed()
}

fn du(p: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let m = e.metadata().expect("metadata");
        n += if m.is_dir() { du(&e.path()) } else { m.len() };
    }
    n
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn main() {
    let docs_mib = arg("--docs-mib", 1024);
    let entities = arg("--entities", 100_000);
    let write = !std::env::args().any(|a| a == "--no-write");
    let mut rng = Rng(0x5eed_b4c0_0000_0001);
    let tmp = tempfile::tempdir_in(std::env::var("BENCH_TMP").unwrap_or_else(|_| ".".into()))
        .expect("tempdir");
    let data = tmp.path().join("data");
    let d = DataDir::new(&data);
    let ident = spoke::identity::create(&d.identity_dir()).expect("identity");
    std::fs::write(
        d.marker(),
        serde_json::json!({ "format": "eurocomply-spoke/1", "did": ident.did }).to_string(),
    )
    .expect("marker");
    let recipient = ident.age_recipient.parse().expect("recipient");
    let identity = spoke::identity::age_identity(&d.identity_dir()).expect("age identity");

    eprintln!("generating {entities} entities and {docs_mib} MiB of documents");
    let mut app = Appliance::open(&d).expect("open");
    for start in (0..entities).step_by(10_000) {
        let batch: Vec<EntityInput> = (start..(start + 10_000).min(entities))
            .map(|i| entity(i, &mut rng, 0))
            .collect();
        app.add_entities(&Actor::cli(), batch).expect("add");
    }
    drop(app);
    put_objects(&d, &mut rng, docs_mib, "document");
    // What is backed up (the search indexes are derived and left out by both).
    for index in [d.search_index(), d.passage_index()] {
        if index.exists() {
            std::fs::remove_dir_all(index).expect("drop a derived index");
        }
    }
    let size = du(&data);
    sh("sync");

    let bk = tmp.path().join("backup");
    let t = Instant::now();
    let full = spoke::backup::backup(&d, &bk, &[recipient], None, &()).expect("backup");
    let ours_backup = t.elapsed();
    let full_written = du(&bk);

    let copy = tmp.path().join("copy");
    let base_backup = sh(&format!(
        "cp -a '{src}' '{copy}' && tar -C '{copy}' -cf - . | zstd -3 -T0 -q -o '{copy}.tar.zst' && sync",
        src = data.display(),
        copy = copy.display()
    ));
    let base_size = std::fs::metadata(format!("{}.tar.zst", copy.display()))
        .expect("archive")
        .len();
    // Only the archive is kept (disk space for a 5 GiB run).
    std::fs::remove_dir_all(&copy).expect("cleanup");

    let restored = tmp.path().join("restored");
    let t = Instant::now();
    spoke::restore::restore(
        &bk,
        &restored,
        std::slice::from_ref(&identity),
        None,
        false,
        &(),
    )
    .expect("restore");
    let ours_restore = t.elapsed();
    std::fs::remove_dir_all(&restored).expect("cleanup");
    let out = tmp.path().join("unpacked");
    let base_restore = sh(&format!(
        "mkdir '{out}' && zstd -d -c -q '{copy}.tar.zst' | tar -C '{out}' -xf - && sync",
        out = out.display(),
        copy = copy.display()
    ));
    std::fs::remove_dir_all(&out).expect("cleanup");

    // 1% growth: 1% more entities and 1% more documents.
    let mut app = Appliance::open(&d).expect("open");
    let more: Vec<EntityInput> = (entities..entities + entities / 100)
        .map(|i| entity(i, &mut rng, 0))
        .collect();
    app.add_entities(&Actor::cli(), more).expect("add");
    drop(app);
    put_objects(&d, &mut rng, (docs_mib / 100).max(4), "new document");
    let grown =
        spoke::backup::backup(&d, &bk, &[recipient_of(&identity)], None, &()).expect("incremental");

    // 1% of entities edited in place (scattered pages of the database).
    let mut app = Appliance::open(&d).expect("open");
    for k in 0..entities / 100 {
        let i = (k * 97) % entities;
        let id = format!("p{i:06}");
        app.put_entity(&Actor::cli(), entity(i, &mut rng, 1), Some(id.as_str()))
            .expect("edit");
    }
    drop(app);
    let edited =
        spoke::backup::backup(&d, &bk, &[recipient_of(&identity)], None, &()).expect("incremental");

    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let rate = |dur: Duration| mib(size) / dur.as_secs_f64();
    let pct = |b: u64| 100.0 * b as f64 / full.written_bytes as f64;
    let met = |ok: bool| if ok { "yes" } else { "**no**" };
    let (rb, rr) = (
        base_backup.as_secs_f64() / ours_backup.as_secs_f64(),
        base_restore.as_secs_f64() / ours_restore.as_secs_f64(),
    );
    let text = format!(
        "A spoke with {entities} entities (5 components each) in SQLite and {docs_mib} MiB of generated \
documents (4 MiB each, zstd -3 ratio about 3) in its object store: {total:.0} MiB in {files} files. Ours: \
`spoke backup` (SQLite online backup, zstd -3 chunks: FastCDC for files, one per page for the \
database, new chunks appended to packs of up to 64 MiB, each pack one age file, one syncfs, signed manifest) \
and `spoke restore` (decrypt each pack as one stream, decompress chunks on every core, check every chunk and file digest, audit chain, database integrity, \
document objects, writeback of each file started as it is complete, one syncfs, atomic rename; the derived search indexes are rebuilt at the first start, and neither \
side carries them). Baseline in the same run: `cp -a` of the data directory then `tar | zstd -3 -T0` (backup: {bz:.0} MiB), \
and `zstd -d | tar -x` (restore), each followed by `sync`; no encryption and no verification. Incremental: \
bytes the next backup writes after 1% growth (1% more entities and documents), and after editing 1% of the \
entities in place, vs the full backup ({fw:.0} MiB written, {fc} chunks). Machine: {m}. \
`cargo run {profile}-p spoke --bin backup-bench -- --docs-mib {docs_mib}` ({profile_name} profile).\n\n\
| metric | ours | baseline | ratio | target | met |\n|---|---|---|---|---|---|\n\
| backup throughput | {ob:.0} MiB/s | {bb:.0} MiB/s | {rb:.2}x | >= 0.7x | {mb} |\n\
| restore throughput | {or:.0} MiB/s | {br:.0} MiB/s | {rr:.2}x | >= 0.7x | {mr} |\n\
| incremental after 1% growth | {g:.1} MiB | {fwm:.0} MiB | {gp:.2}% | <= 3% | {mg} |\n\
| incremental after editing 1% of entities | {e:.1} MiB | {fwm:.0} MiB | {ep:.2}% | <= 3% | {me} |",
        total = mib(size),
        profile = if cfg!(debug_assertions) { "" } else { "--release " },
        profile_name = if cfg!(debug_assertions) { "dev" } else { "release" },
        files = full.files,
        bz = mib(base_size),
        fw = mib(full_written),
        fwm = mib(full.written_bytes),
        fc = full.chunks,
        m = machine(),
        ob = rate(ours_backup),
        bb = rate(base_backup),
        mb = met(rb >= 0.7),
        or = rate(ours_restore),
        br = rate(base_restore),
        mr = met(rr >= 0.7),
        g = mib(grown.written_bytes),
        gp = pct(grown.written_bytes),
        mg = met(pct(grown.written_bytes) <= 3.0),
        e = mib(edited.written_bytes),
        ep = pct(edited.written_bytes),
        me = met(pct(edited.written_bytes) <= 3.0),
    );
    println!("{text}");
    if write {
        write_section("backup-bench", &text);
    }
}

fn recipient_of(identity: &age::x25519::Identity) -> age::x25519::Recipient {
    identity.to_public()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{cores} cores, {cpu}; 1-minute load average {} at the end (the machine is shared)",
        load.split_whitespace().next().unwrap_or("?")
    )
}

/// Replaces the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->`.
fn write_section(name: &str, text: &str) {
    let path = root().join("docs/benchmarks.md");
    let doc = std::fs::read_to_string(&path).expect("docs/benchmarks.md");
    let (begin, end) = (
        format!("<!-- {name}:begin -->"),
        format!("<!-- {name}:end -->"),
    );
    let (Some(a), Some(b)) = (doc.find(&begin), doc.find(&end)) else {
        panic!("markers for {name} missing in {}", path.display());
    };
    let updated = format!("{}{begin}\n{text}\n{}", &doc[..a], &doc[b..]);
    std::fs::write(&path, updated).expect("write docs/benchmarks.md");
}
