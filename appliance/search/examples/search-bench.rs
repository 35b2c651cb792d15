//! search-bench: our BM25 index (`search::Index`, tantivy) against SQLite FTS5
//! on the same generated corpus and the same queries, in the same run.
//!
//! ```text
//! cargo run --release -p search --example search-bench -- [--docs 100000] [--queries 2000]
//!     [--warmup 200] [--no-write]
//! ```
//!
//! The corpus is generated deterministically (xorshift64*): a vocabulary of
//! 20,000 synthetic words plus a few hundred cosmetic-ingredient words, drawn
//! with a Zipf distribution (exponent 1) for titles of 3-8 words and bodies of
//! 50-400 words; one document in ten also carries a CAS number. Queries are
//! 1-3 words, each drawn half the time with the corpus's Zipf distribution
//! (common words) and half the time uniformly from the vocabulary (rare
//! words), OR-ed in both engines (tantivy's default; explicit `OR` in FTS5).
//! Both rank by BM25 with the title weighted twice the body.
//!
//! The headline rows time a top-10 query returning ids only (no snippet and no
//! stored text in either engine). A second pair of rows times the whole
//! search path of each engine: top 10 with title and a highlighted snippet.
//! Unless `--no-write` is given, the results replace the text between
//! `<!-- search-bench:begin -->` and `<!-- search-bench:end -->` in
//! `docs/benchmarks.md`.

use std::collections::HashSet;
use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// xorshift64*: small, fast and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const SYNTHETIC_WORDS: usize = 20_000;

/// Real ingredient words; with `PREFIXES` x `STEMS` they make the domain words.
const INGREDIENTS: &[&str] = &[
    "aqua",
    "glycerin",
    "limonene",
    "linalool",
    "citral",
    "geraniol",
    "eugenol",
    "coumarin",
    "farnesol",
    "citronellol",
    "niacinamide",
    "panthenol",
    "tocopherol",
    "retinol",
    "squalane",
    "dimethicone",
    "cyclopentasiloxane",
    "triclosan",
    "hydroquinone",
    "formaldehyde",
    "resorcinol",
    "allantoin",
    "bisabolol",
    "ceramide",
    "hyaluronic",
    "salicylic",
    "glycolic",
    "lactic",
    "citric",
    "ascorbic",
    "parfum",
    "talc",
    "kaolin",
    "zinc",
    "titanium",
    "dioxide",
    "oxide",
    "benzophenone",
    "octocrylene",
    "avobenzone",
    "homosalate",
    "annex",
    "cpsr",
    "inci",
    "cas",
    "nanomaterial",
    "preservative",
    "colorant",
    "uv",
    "filter",
];
const PREFIXES: &[&str] = &[
    "methyl",
    "ethyl",
    "propyl",
    "butyl",
    "benzyl",
    "phenoxy",
    "sodium",
    "potassium",
    "calcium",
    "magnesium",
    "ammonium",
    "cetyl",
    "stearyl",
    "lauryl",
    "isopropyl",
    "hexyl",
    "octyl",
    "glyceryl",
    "peg",
    "polyglyceryl",
];
const STEMS: &[&str] = &[
    "paraben",
    "salicylate",
    "benzoate",
    "sulfate",
    "chloride",
    "stearate",
    "palmitate",
    "myristate",
    "laurate",
    "citrate",
    "lactate",
    "acetate",
    "alcohol",
    "ethanol",
    "glucoside",
];

/// The vocabulary in Zipf rank order (most frequent first) and its CDF.
struct Vocab {
    words: Vec<String>,
    cdf: Vec<f64>,
}

impl Vocab {
    fn new(rng: &mut Rng) -> Vocab {
        const ONSETS: &[&str] = &[
            "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br",
            "tr", "st", "pl", "gr", "sh", "ch", "th",
        ];
        const NUCLEI: &[&str] = &["a", "e", "i", "o", "u", "ai", "ou", "ea", "io"];
        const CODAS: &[&str] = &["", "", "", "n", "r", "s", "l", "m", "x", "nd", "st"];
        let mut seen: HashSet<String> = HashSet::new();
        let mut synthetic = Vec::with_capacity(SYNTHETIC_WORDS);
        while synthetic.len() < SYNTHETIC_WORDS {
            let syllables = 1 + rng.below(3) + usize::from(synthetic.len() > 2_000);
            let mut w = String::new();
            for _ in 0..syllables {
                w.push_str(ONSETS[rng.below(ONSETS.len())]);
                w.push_str(NUCLEI[rng.below(NUCLEI.len())]);
                w.push_str(CODAS[rng.below(CODAS.len())]);
            }
            if seen.insert(w.clone()) {
                synthetic.push(w);
            }
        }
        let mut domain: Vec<String> = INGREDIENTS.iter().map(|s| s.to_string()).collect();
        for p in PREFIXES {
            for s in STEMS {
                domain.push(format!("{p}{s}"));
            }
        }
        domain.retain(|w| seen.insert(w.clone()));
        // Domain words spread through the ranks from 100 on: some common, most rare.
        let mut words = Vec::with_capacity(synthetic.len() + domain.len());
        let mut domain = domain.into_iter();
        for (rank, w) in synthetic.into_iter().enumerate() {
            if rank >= 100 && rank % 60 == 0 {
                words.extend(domain.next());
            }
            words.push(w);
        }
        words.extend(domain);
        let mut total = 0.0;
        let cdf = (0..words.len())
            .map(|r| {
                total += 1.0 / (r as f64 + 1.0);
                total
            })
            .collect();
        Vocab { words, cdf }
    }

    fn len(&self) -> usize {
        self.words.len()
    }

    /// A rank drawn with the Zipf distribution.
    fn zipf(&self, rng: &mut Rng) -> usize {
        let total = self.cdf.last().copied().unwrap_or(1.0);
        let u = rng.unit() * total;
        self.cdf.partition_point(|&c| c < u).min(self.len() - 1)
    }
}

struct Corpus {
    vocab_len: usize,
    docs: Vec<(String, String, String)>,
    queries: Vec<Vec<String>>,
}

fn corpus(n: usize, nq: usize) -> Corpus {
    let mut rng = Rng(0x5eed_0f5e_a4c4);
    let vocab = Vocab::new(&mut rng);
    let w = &vocab.words;
    let mut docs = Vec::with_capacity(n);
    for i in 0..n {
        let mut title = Vec::new();
        let title_len = rng.between(3, 8);
        while title.len() < title_len {
            // Titles skip the 50 most frequent (function-like) words.
            let r = vocab.zipf(&mut rng);
            if r >= 50 {
                title.push(w[r].as_str());
            }
        }
        let title = title.join(" ");
        let len = rng.between(50, 400);
        let mut body = String::with_capacity(len * 8);
        for k in 0..len {
            if k > 0 {
                body.push_str(match rng.below(12) {
                    0 => ", ",
                    1 => ". ",
                    _ => " ",
                });
            }
            body.push_str(&w[vocab.zipf(&mut rng)]);
        }
        if rng.below(10) == 0 {
            let cas = format!(
                " (CAS {}-{:02}-{})",
                rng.between(50, 99_999),
                rng.below(100),
                rng.below(10)
            );
            body.push_str(&cas);
        }
        docs.push((format!("doc-{i:06}"), title, body));
    }
    let queries = (0..nq)
        .map(|_| {
            (0..rng.between(1, 3))
                .map(|_| {
                    let r = if rng.below(2) == 0 {
                        vocab.zipf(&mut rng)
                    } else {
                        rng.below(vocab.len())
                    };
                    w[r].clone()
                })
                .collect()
        })
        .collect();
    Corpus {
        vocab_len: vocab.len(),
        docs,
        queries,
    }
}

/// Latencies and throughput of one timed pass over the queries.
struct Timing {
    p50: Duration,
    p99: Duration,
    qps: f64,
    results: Vec<Vec<String>>,
}

fn time_queries(
    queries: &[Vec<String>],
    warmup: usize,
    run: &mut dyn FnMut(&[String]) -> Result<Vec<String>>,
) -> Result<Timing> {
    for q in queries.iter().take(warmup) {
        run(q)?;
    }
    let mut latencies = Vec::with_capacity(queries.len());
    let mut results = Vec::with_capacity(queries.len());
    let start = Instant::now();
    for q in queries {
        let t = Instant::now();
        let ids = run(q)?;
        latencies.push(t.elapsed());
        results.push(ids);
    }
    let total = start.elapsed();
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    Ok(Timing {
        p50: at(0.50),
        p99: at(0.99),
        qps: queries.len() as f64 / total.as_secs_f64(),
        results,
    })
}

fn fts5_expr(q: &[String]) -> String {
    q.iter()
        .map(|w| format!("\"{w}\""))
        .collect::<Vec<_>>()
        .join(" OR ")
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    format!("{cores} cores (nproc), {model}; 1-minute load average {load} at the end of the run")
}

fn write_section(text: &str) -> Result<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks.md");
    let doc = std::fs::read_to_string(&path)
        .map_err(|e| format!("read {}: {e}; run from the workspace", path.display()))?;
    let (begin, end) = ("<!-- search-bench:begin -->", "<!-- search-bench:end -->");
    let (Some(b), Some(e)) = (doc.find(begin), doc.find(end)) else {
        return Err(format!("{} has no {begin} ... {end} section", path.display()).into());
    };
    if e < b {
        return Err(format!("{}: {end} comes before {begin}", path.display()).into());
    }
    let updated = format!("{}{begin}\n{text}\n{}", &doc[..b], &doc[e..]);
    std::fs::write(&path, updated).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(path)
}

struct Args {
    docs: usize,
    queries: usize,
    warmup: usize,
    write: bool,
}

fn args() -> Result<Args> {
    let mut a = Args {
        docs: 100_000,
        queries: 2_000,
        warmup: 200,
        write: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut number = |name: &str| -> Result<usize> {
            let v = it.next().ok_or(format!("{name} needs a number"))?;
            Ok(v.parse().map_err(|e| format!("{name} {v}: {e}"))?)
        };
        match flag.as_str() {
            "--docs" => a.docs = number("--docs")?.max(1),
            "--queries" => a.queries = number("--queries")?.max(1),
            "--warmup" => a.warmup = number("--warmup")?,
            "--no-write" => a.write = false,
            other => {
                return Err(format!(
                    "unknown argument {other}; use --docs N --queries N --warmup N --no-write"
                )
                .into())
            }
        }
    }
    Ok(a)
}

fn main() -> Result<()> {
    let a = args()?;
    let t = Instant::now();
    let c = corpus(a.docs, a.queries);
    let words: usize = c
        .docs
        .iter()
        .map(|(_, t, b)| t.split(' ').count() + b.split(' ').count())
        .sum();
    println!(
        "corpus: {} documents, {} words, vocabulary {}, {} queries (generated in {:.1} s)",
        c.docs.len(),
        words,
        c.vocab_len,
        c.queries.len(),
        t.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir()?;

    // Ours.
    let t = Instant::now();
    let mut ix = search::Index::open(&dir.path().join("tantivy"))?;
    ix.rebuild(
        c.docs.iter().map(|(id, title, body)| search::Doc {
            id: id.clone(),
            kind: "document".into(),
            title: title.clone(),
            body: body.clone(),
            tags: vec![],
        }),
        1,
    )?;
    let build_ours = t.elapsed();
    println!("ours: indexed in {:.2} s", build_ours.as_secs_f64());

    // FTS5, given a large page cache and memory-mapped reads like tantivy's.
    let t = Instant::now();
    let db = rusqlite::Connection::open(dir.path().join("fts.sqlite"))?;
    let fts5: bool = db.query_row("SELECT sqlite_compileoption_used('ENABLE_FTS5')", [], |r| {
        r.get(0)
    })?;
    if !fts5 {
        return Err("this SQLite was built without FTS5; the baseline cannot run".into());
    }
    db.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         PRAGMA cache_size = -262144; PRAGMA mmap_size = 1073741824;
         CREATE VIRTUAL TABLE docs USING fts5(id UNINDEXED, title, body);",
    )?;
    {
        let tx = db.unchecked_transaction()?;
        let mut insert = tx.prepare("INSERT INTO docs (id, title, body) VALUES (?1, ?2, ?3)")?;
        for (id, title, body) in &c.docs {
            insert.execute((id, title, body))?;
        }
        drop(insert);
        tx.commit()?;
    }
    let build_fts_insert = t.elapsed();
    db.execute_batch("INSERT INTO docs(docs) VALUES('optimize');")?;
    let build_fts = t.elapsed();
    println!(
        "FTS5: indexed in {:.2} s ({:.2} s inserts + optimize)",
        build_fts.as_secs_f64(),
        build_fts_insert.as_secs_f64()
    );

    // Top 10, ids only.
    let filter = search::Filter::default();
    let ours = time_queries(&c.queries, a.warmup, &mut |q| {
        Ok(ix
            .search_ids(&q.join(" "), &filter, 10)?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    })?;
    // The first weight is for the unindexed id column.
    let mut ids_stmt = db.prepare(
        "SELECT id FROM docs WHERE docs MATCH ?1 ORDER BY bm25(docs, 0.0, 2.0, 1.0) LIMIT 10",
    )?;
    let fts = time_queries(&c.queries, a.warmup, &mut |q| {
        let rows = ids_stmt.query_map([fts5_expr(q)], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    })?;
    println!(
        "ids only: ours p50 {:?} p99 {:?} {:.0} q/s; FTS5 p50 {:?} p99 {:?} {:.0} q/s",
        ours.p50, ours.p99, ours.qps, fts.p50, fts.p99, fts.qps
    );

    // Top 10 with title and snippet: each engine's whole search path.
    let ours_full = time_queries(&c.queries, a.warmup, &mut |q| {
        Ok(ix
            .search(&q.join(" "), &filter, 10)?
            .into_iter()
            .map(|h| h.id)
            .collect())
    })?;
    let mut full_stmt = db.prepare(
        "SELECT id, title, snippet(docs, 2, '[', ']', '...', 24) FROM docs WHERE docs MATCH ?1 \
         ORDER BY bm25(docs, 0.0, 2.0, 1.0) LIMIT 10",
    )?;
    let fts_full = time_queries(&c.queries, a.warmup, &mut |q| {
        let rows = full_stmt.query_map([fts5_expr(q)], |r| {
            let _title: String = r.get(1)?;
            let _snippet: String = r.get(2)?;
            r.get::<_, String>(0)
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    })?;
    println!(
        "with snippets: ours p50 {:?} {:.0} q/s; FTS5 p50 {:?} {:.0} q/s",
        ours_full.p50, ours_full.qps, fts_full.p50, fts_full.qps
    );

    // Do the two engines agree? Share of FTS5's top 10 that ours also returns.
    let (mut shared, mut theirs) = (0usize, 0usize);
    for (o, f) in ours.results.iter().zip(&fts.results) {
        theirs += f.len();
        shared += f.iter().filter(|id| o.contains(id)).count();
    }
    let hits_ours: usize = ours.results.iter().map(Vec::len).sum();
    let agreement = 100.0 * shared as f64 / theirs.max(1) as f64;
    println!("hits: ours {hits_ours}, FTS5 {theirs}; top-10 agreement {agreement:.1}%");

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    // Lower is better for latencies and build times.
    let faster = |ours: f64, theirs: f64| {
        if ours <= theirs {
            format!("{:.1}x faster", theirs / ours)
        } else {
            format!("{:.1}x slower", ours / theirs)
        }
    };
    let yes = |ok: bool| if ok { "yes" } else { "**no**" };
    let ratio = ours.qps / fts.qps;
    let text = format!(
        "{docs} generated documents ({words} words; titles 3-8 words, bodies 50-400 words, one in ten \
with a CAS number; Zipf-distributed vocabulary of {vocab} words, 20,000 synthetic plus cosmetic-ingredient \
names), {nq} queries of 1-3 words (each word half the time Zipf-drawn, half the time uniform over the \
vocabulary) with OR semantics in both engines, top 10 by BM25 with the title weighted 2x the body in both. \
Single-threaded, each pass after {warm} warm-up queries. Ours: `search::Index` (tantivy 0.25) via \
`search_ids`; baseline: SQLite FTS5 (rusqlite bundled; `bm25(docs, 0.0, 2.0, 1.0)`, 256 MiB cache, mmap, \
optimized after the inserts), on the same corpus in the same run, both in a temp dir. The headline rows return \
ids only; the snippet rows are each engine's whole search path (id, title, highlighted snippet). Hits returned: \
{hits_ours} vs {theirs}; {agreement:.1}% of FTS5's top 10 are in ours (the BM25 variants differ: FTS5 scores the \
row as a whole, with one length normalisation and an IDF clamped to almost nothing for words in over half the rows, \
tantivy scores title and body separately, each with its own). Machine: {machine}. \
`cargo run --release -p search --example search-bench`.\n\n\
| metric | ours | FTS5 | ratio | target | met |\n|---|---|---|---|---|---|\n\
| top-10 latency p50 | {p50:.3} ms | {f50:.3} ms | {r50} | <= 2 ms | {met50} |\n\
| top-10 latency p99 | {p99:.3} ms | {f99:.3} ms | {r99} | | |\n\
| queries per second | {qps:.0} | {fqps:.0} | {ratio:.2}x | >= 1.5x | {metq} |\n\
| with title + snippet: p50 | {sp50:.3} ms | {sf50:.3} ms | {sr50} | | |\n\
| with title + snippet: queries per second | {sqps:.0} | {sfqps:.0} | {sratio:.2}x | | |\n\
| index build | {bo:.1} s | {bf:.1} s | {rb} | | |",
        docs = c.docs.len(),
        vocab = c.vocab_len,
        nq = c.queries.len(),
        warm = a.warmup.min(c.queries.len()),
        machine = machine(),
        p50 = ms(ours.p50),
        f50 = ms(fts.p50),
        r50 = faster(ms(ours.p50), ms(fts.p50)),
        met50 = yes(ms(ours.p50) <= 2.0),
        p99 = ms(ours.p99),
        f99 = ms(fts.p99),
        r99 = faster(ms(ours.p99), ms(fts.p99)),
        qps = ours.qps,
        fqps = fts.qps,
        metq = yes(ratio >= 1.5),
        sp50 = ms(ours_full.p50),
        sf50 = ms(fts_full.p50),
        sr50 = faster(ms(ours_full.p50), ms(fts_full.p50)),
        sqps = ours_full.qps,
        sfqps = fts_full.qps,
        sratio = ours_full.qps / fts_full.qps,
        bo = build_ours.as_secs_f64(),
        bf = build_fts.as_secs_f64(),
        rb = faster(build_ours.as_secs_f64(), build_fts.as_secs_f64()),
    );
    println!("\n{text}");
    if a.write {
        let path = write_section(&text)?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}
