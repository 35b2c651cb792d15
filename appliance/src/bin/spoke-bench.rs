//! The whole evaluation path of the appliance, written into
//! `docs/benchmarks.md` (section `evaluation-path`): 10,000 generated products
//! stored in SQLite, evaluated against the full cosmetics rules (example packs
//! plus generated Annex II/III rows at full-annex size), each evaluation,
//! Compliance Lock and audit entry written in one transaction; against the
//! kernel alone on the same products in the same run. The kernel and search
//! engines have their own benches (`kernel-bench`, `search-bench`).
//!
//! `cargo run --release -p appliance --bin spoke-bench`

use appliance::compliance::ReferenceTable;
use appliance::entities::{EntityInput, EntityKind};
use appliance::{Actor, Appliance, DataDir, InstalledBundle, Store};
use kernel::{Component, LogicPack, Product, Program, RuleSet, Table, Tables};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// xorshift64*: deterministic data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A valid CAS number from a body of digits.
fn cas(body: u64) -> String {
    let digits = body.to_string();
    let sum: u64 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, d)| (i as u64 + 1) * u64::from(d - b'0'))
        .sum();
    let (a, b) = digits.split_at(digits.len() - 2);
    format!("{a}-{b}-{}", sum % 10)
}

struct Packs {
    logic: Vec<LogicPack>,
    tables: Tables,
    /// CAS numbers that appear in some table.
    listed: Vec<String>,
}

fn load_packs(rng: &mut Rng) -> Packs {
    let mut logic = Vec::new();
    let mut tables = Tables::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("bundles/examples/packs"))
        .expect("example packs")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("pack.json").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("pack.json")).expect("pack.json"))
                .expect("pack.json is JSON");
        let name = manifest["name"].as_str().unwrap_or_default().to_string();
        if let Ok(rules) = std::fs::read(dir.join("rules.json")) {
            logic.push(LogicPack {
                name: name.clone(),
                version: "1.0.0".into(),
                cid: name.clone(),
                rules: RuleSet::parse(&rules).expect("rules parse"),
            });
        }
        if let Ok(entries) = std::fs::read_dir(dir.join("tables")) {
            for t in entries.filter_map(Result::ok) {
                let rows: Vec<serde_json::Map<String, serde_json::Value>> =
                    serde_json::from_slice(&std::fs::read(t.path()).expect("table"))
                        .expect("table is an array of objects");
                let stem = t
                    .path()
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                tables.insert(format!("{name}:{stem}"), Table { rows });
            }
        }
    }
    logic.sort_by(|a, b| a.name.cmp(&b.name));
    // Grow Annex II and III to the size of the real annexes.
    let grow = |tables: &mut Tables, key: &str, n: usize, rng: &mut Rng, restricted: bool| {
        let t = tables.get_mut(key).expect("annex table");
        for i in 0..n {
            let mut row = serde_json::Map::new();
            row.insert(
                "substance".into(),
                format!("Generated substance {key} {i}").into(),
            );
            row.insert("cas".into(), cas(10_000 + rng.next() % 9_000_000).into());
            if restricted {
                let types = ["leave_on", "rinse_off", "hair_rinse_off", "oral", "nail"];
                row.insert("product_type".into(), types[rng.below(types.len())].into());
                row.insert(
                    "max_percent".into(),
                    (0.01 * (1 + rng.below(500)) as f64).into(),
                );
            }
            t.rows.push(row);
        }
    };
    grow(
        &mut tables,
        "@data/eu-cosmetics-annexes:annex_ii",
        1_600,
        rng,
        false,
    );
    grow(
        &mut tables,
        "@data/eu-cosmetics-annexes:annex_iii",
        300,
        rng,
        true,
    );
    let listed = tables
        .values()
        .flat_map(|t| {
            t.rows
                .iter()
                .filter_map(|r| r["cas"].as_str().map(str::to_string))
        })
        .collect();
    Packs {
        logic,
        tables,
        listed,
    }
}

fn products(n: usize, listed: &[String], rng: &mut Rng) -> Vec<Product> {
    let categories = ["leave_on", "rinse_off", "hair_rinse_off", "oral", "nail"];
    (0..n)
        .map(|i| {
            let components = (0..5 + rng.below(21))
                .map(|j| {
                    let known = rng.below(10) == 0;
                    let missing = rng.below(50) == 0;
                    Component {
                        substance: format!("Substance {i}-{j}"),
                        cas: Some(if known {
                            listed[rng.below(listed.len())].clone()
                        } else {
                            cas(10_000 + rng.next() % 9_000_000)
                        }),
                        ec: None,
                        concentration: (!missing).then(|| 0.001 * (1 + rng.below(3000)) as f64),
                        unit: Some("%w/w".into()),
                    }
                })
                .collect();
            Product {
                id: format!("p{i:05}"),
                name: format!("Product {i}"),
                category: (rng.below(20) != 0)
                    .then(|| categories[rng.below(categories.len())].to_string()),
                markets: vec!["EU".into()],
                components,
                documents: vec![kernel::DocumentFact {
                    kind: "cpsr".into(),
                    expires: Some("2030-01-01".into()),
                }],
            }
        })
        .collect()
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        out = Some(v);
    }
    (best, out.expect("at least one run"))
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
    format!("{cores} cores, {cpu}")
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
    println!("{text}");
}

fn bench_path() {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let packs = load_packs(&mut rng);
    let program = Program::compile(&packs.logic, &packs.tables).expect("compile");
    let products = products(10_000, &packs.listed, &mut rng);
    let rules = program.len();
    let (ours, verdicts) = best_of(3, || {
        products
            .iter()
            .map(|p| {
                program
                    .evaluate(p, "2026-11-22", kernel::DEFAULT_FUEL)
                    .expect("evaluate")
                    .verdict
            })
            .collect::<Vec<_>>()
    });
    let fails = verdicts
        .iter()
        .filter(|v| **v == kernel::Verdict::Fail)
        .count();

    // The full appliance path: products in SQLite, evaluate all, write records and locks.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = DataDir::new(dir.path());
    let did = "did:key:spoke-bench";
    std::fs::write(data.marker(), format!("{{\"did\":\"{did}\"}}")).expect("marker");
    let mut store = Store::create(&data.database(), did).expect("store");
    let mut bundles = Vec::new();
    let mut tables = Vec::new();
    for (i, pack) in packs.logic.iter().enumerate() {
        let cid = format!("sha256:{i:064}");
        let payload = data.payloads().join(&cid[7..]);
        std::fs::create_dir_all(&payload).expect("payload dir");
        std::fs::write(
            payload.join("rules.json"),
            serde_json::to_vec(&pack.rules).expect("rules"),
        )
        .expect("rules.json");
        bundles.push(bundle(&cid, &pack.name));
    }
    let data_cid = format!("sha256:{:064}", 99);
    bundles.push(bundle(&data_cid, "@data/eu-cosmetics-annexes"));
    for (reference, table) in &packs.tables {
        let (pack, name) = reference.rsplit_once(':').expect("reference");
        let cid = bundles
            .iter()
            .find(|b| b.name == pack)
            .map(|b| b.cid.clone())
            .expect("pack");
        tables.push(ReferenceTable {
            pack_cid: cid,
            pack_name: pack.into(),
            table: name.into(),
            rows: serde_json::to_string(&table.rows).expect("rows"),
        });
    }
    store
        .record_bundles(&bundles, &tables, &Actor::cli())
        .expect("record");
    drop(store);
    let mut app = Appliance::open(&data).expect("open");
    let cids: Vec<String> = bundles.iter().map(|b| b.cid.clone()).collect();
    app.propose(&Actor::cli(), &cids, true)
        .expect("activate the packs");
    let inputs: Vec<EntityInput> = products
        .iter()
        .map(|p| EntityInput {
            id: Some(p.id.clone()),
            kind: EntityKind::Product,
            name: p.name.clone(),
            category: p.category.clone(),
            cas: None,
            markets: p.markets.clone(),
            components: p.components.clone(),
        })
        .collect();
    app.add_entities(&Actor::cli(), inputs)
        .expect("add products");
    let ids = app.product_ids().expect("ids");
    let (full, _) = best_of(1, || {
        app.evaluate(&Actor::cli(), &ids).expect("evaluate all")
    });

    let per_sec = |d: Duration| products.len() as f64 / d.as_secs_f64();
    let text = format!(
        "{n} generated products (5-25 components, 10% of them listed substances, 2% with missing data) stored in \
SQLite, against the {rules} rules of the example packs with Annex II grown to {a2} rows and Annex III to {a3} rows; \
{fails} fail. The whole path reads each product from SQLite, evaluates it and writes its evaluation, Compliance Lock \
and audit entry, all products in one transaction with one fsync; the baseline is the kernel alone on the same \
products in the same run (best of 3). Single-threaded. Machine: {m}. `cargo run --release -p appliance --bin spoke-bench`.\n\n\
| metric | whole path | kernel alone | ratio |\n|---|---|---|---|\n\
| products per second | {full_p:.0} | {ours_p:.0} | {ratio:.2}x |",
        n = products.len(),
        a2 = packs.tables["@data/eu-cosmetics-annexes:annex_ii"].rows.len(),
        a3 = packs.tables["@data/eu-cosmetics-annexes:annex_iii"].rows.len(),
        m = machine(),
        full_p = per_sec(full),
        ours_p = per_sec(ours),
        ratio = per_sec(full) / per_sec(ours),
    );
    write_section("evaluation-path", &text);
}

fn bundle(cid: &str, name: &str) -> InstalledBundle {
    InstalledBundle {
        cid: cid.into(),
        kind: "pack".into(),
        name: name.into(),
        version: "1.0.0".into(),
        target: String::new(),
        manifest: serde_json::json!({"handler_vm_version": "^1.0.0"}),
        installed_at: "2026-11-22T00:00:00Z".into(),
    }
}

fn main() {
    bench_path();
}
