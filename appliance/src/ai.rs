//! What the appliance keeps for Tier A: which installed model bundle is
//! active for each task, the passages documents are cut into with their
//! embedding vectors, hybrid retrieval over them (BM25 and vector
//! similarity fused by reciprocal rank), and the daily AI quota of the
//! licence's plan. Running the models is the gateway's job; this module
//! knows no model code and stores only what the models produce.

use crate::auth::{Actor, Permission};
use crate::licence::setting;
use crate::service::Appliance;
use crate::store::{tx_db, Audit, Class, Store};
use crate::Error;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;

/// Tables for passage vectors and the AI usage counter.
pub(crate) const MIGRATION: &str = "
CREATE TABLE passage_vectors (
    model       TEXT NOT NULL,
    document_id TEXT NOT NULL REFERENCES documents(id),
    ord         INTEGER NOT NULL,
    vector      BLOB NOT NULL,
    PRIMARY KEY (model, document_id, ord)
);
CREATE TABLE ai_usage (
    day TEXT PRIMARY KEY,
    n   INTEGER NOT NULL
);
";

/// What a model bundle does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Sentence vectors for retrieval.
    Embedding,
    /// Chat and grounded answers.
    Generation,
}

impl Task {
    /// The task's name as in `model.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Embedding => "embedding",
            Task::Generation => "generation",
        }
    }

    fn setting(self) -> &'static str {
        match self {
            Task::Embedding => "ai.active.embedding",
            Task::Generation => "ai.active.generation",
        }
    }

    const ALL: [Task; 2] = [Task::Embedding, Task::Generation];
}

/// An installed model bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledModel {
    /// CID of the bundle's index: the model's digest, recorded with every
    /// result a model contributes to.
    pub cid: String,
    /// Bundle name.
    pub name: String,
    /// Version.
    pub version: String,
    /// What it does.
    pub task: Task,
    /// Weight format (`safetensors`, `gguf`).
    pub format: String,
    /// Whether it is the active model for its task.
    pub active: bool,
    /// Where its verified payload lies.
    pub path: PathBuf,
}

impl InstalledModel {
    /// `name@version`, for people.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Words per passage at most (all-MiniLM reads 256 tokens; 120 words stay
/// well inside that for regulatory English).
const PASSAGE_WORDS: usize = 120;
/// A passage ends at the first sentence end after this many words.
const PASSAGE_MIN_WORDS: usize = 60;
/// Reciprocal-rank fusion constant (the usual 60).
const RRF_K: f64 = 60.0;
/// Candidates taken from each retriever before fusion.
const CANDIDATES: usize = 20;

/// Cuts `text` into passages: byte ranges of at most [`PASSAGE_WORDS`]
/// words, ending at a sentence end or a blank line when one comes after
/// [`PASSAGE_MIN_WORDS`] words. Deterministic, so passages are never stored:
/// a passage is its document and its ordinal.
pub fn split_passages(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    let mut words = 0;
    let mut last_end = 0;
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if c.is_whitespace() {
            continue;
        }
        // A word runs to the next whitespace.
        let mut end = i + c.len_utf8();
        let mut last = c;
        while let Some(&(j, d)) = iter.peek() {
            if d.is_whitespace() {
                break;
            }
            end = j + d.len_utf8();
            last = d;
            iter.next();
        }
        start.get_or_insert(i);
        words += 1;
        last_end = end;
        let blank_line_follows = text[end..]
            .split_once('\n')
            .is_some_and(|(_, rest)| rest.trim_start_matches([' ', '\t', '\r']).starts_with('\n'));
        let sentence_end = matches!(last, '.' | '!' | '?' | ':') || blank_line_follows;
        if words >= PASSAGE_WORDS || (words >= PASSAGE_MIN_WORDS && sentence_end) {
            if let Some(s) = start.take() {
                out.push(s..end);
            }
            words = 0;
        }
    }
    if let Some(s) = start {
        out.push(s..last_end);
    }
    out
}

/// A passage of a document, ready to embed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassageText {
    /// Document id.
    pub document: String,
    /// Ordinal within the document.
    pub ord: u32,
    /// The passage.
    pub text: String,
}

/// What a passage comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A stored document (its extracted text).
    Document,
    /// An entity's record (a product's components).
    Entity,
    /// A Compliance Lock (a product's latest evaluation and its trace).
    Lock,
}

/// A passage found for a question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrieved {
    /// What the passage comes from.
    pub source: Source,
    /// Document id (for a record: the entity's or the lock's id).
    pub document: String,
    /// The document's original file name.
    pub filename: String,
    /// Ordinal of the passage within the document.
    pub ord: u32,
    /// Byte range of the passage in the document's extracted text.
    pub start: usize,
    /// End of that range.
    pub end: usize,
    /// The passage.
    pub text: String,
    /// Rank by BM25 (1 = best), if BM25 found it.
    pub bm25_rank: Option<usize>,
    /// Rank by vector similarity (1 = best), if vectors were used.
    pub vector_rank: Option<usize>,
    /// Fused score (sum of 1/(60 + rank)).
    pub score: f64,
}

/// A passage: its document and ordinal.
type PassageKey = (String, u32);
/// A passage's rank by BM25 and by vector similarity (1 = best).
type Ranks = (Option<usize>, Option<usize>);

/// How far the passage vectors of a model are.
#[derive(Debug, Clone, Serialize)]
pub struct VectorCoverage {
    /// Passages in all documents.
    pub passages: u64,
    /// Passages with a vector for the model.
    pub embedded: u64,
}

fn encode(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl Store {
    /// Installed model bundles, newest version first within a name.
    pub fn models(&self, payloads: &std::path::Path) -> Result<Vec<InstalledModel>, Error> {
        let active: Vec<Option<String>> = Task::ALL
            .iter()
            .map(|t| setting(self.conn(), t.setting()))
            .collect::<Result<_, _>>()
            .map_err(self.db())?;
        let mut models = Vec::new();
        for b in self.bundles(Some("model"))? {
            let task = match b.manifest.get("task").and_then(|v| v.as_str()) {
                Some("embedding") => Task::Embedding,
                Some("generation") => Task::Generation,
                _ => continue,
            };
            let is_active = active.contains(&Some(b.cid.clone()));
            models.push(InstalledModel {
                path: payloads.join(b.cid.trim_start_matches("sha256:")),
                format: b
                    .manifest
                    .get("format")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string(),
                cid: b.cid,
                name: b.name,
                version: b.version,
                task,
                active: is_active,
            });
        }
        models.sort_by(|a, b| {
            a.name.cmp(&b.name).then_with(|| {
                let v = |m: &InstalledModel| semver::Version::parse(&m.version).ok();
                v(b).cmp(&v(a))
            })
        });
        Ok(models)
    }

    /// How many passages have a vector for `model`.
    pub fn vector_coverage(&self, model: &str) -> Result<VectorCoverage, Error> {
        let mut passages = 0;
        for d in self.documents(None)? {
            passages += split_passages(&self.document_text(&d.id)?).len() as u64;
        }
        let embedded: i64 = self
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM passage_vectors WHERE model = ?1",
                [model],
                |r| r.get(0),
            )
            .map_err(self.db())?;
        Ok(VectorCoverage {
            passages,
            embedded: embedded as u64,
        })
    }
}

/// Whether an installed model runs, asked before it becomes active: the
/// `gateway` loads it and runs a short fixed prompt. This crate knows no model
/// runtime, so the check is given to it.
pub trait ModelCheck {
    /// What was checked (for the audit log), or why the model must not
    /// become active.
    fn check(&self, model: &InstalledModel) -> Result<String, String>;
}

impl Appliance {
    /// Installed model bundles.
    pub fn models(&self) -> Result<Vec<InstalledModel>, Error> {
        self.store.models(&self.dir.payloads())
    }

    /// The active model for `task`, if one is installed and active.
    pub fn active_model(&self, task: Task) -> Result<Option<InstalledModel>, Error> {
        Ok(self
            .models()?
            .into_iter()
            .find(|m| m.task == task && m.active))
    }

    /// Makes the model named by `which` (its CID, `name@version`, or `name`
    /// for its newest version) the active one for its task, once `check`
    /// passes: one settings row changes in one audited transaction, so the
    /// switch is atomic. A model that fails the check is refused (audited as
    /// `model.activate.refused`) and the active one stays.
    pub fn activate_model(
        &mut self,
        actor: &Actor,
        which: &str,
        check: &dyn ModelCheck,
    ) -> Result<InstalledModel, Error> {
        actor.require(Permission::Admin)?;
        let models = self.models()?;
        let found = models
            .iter()
            .find(|m| m.cid == which || m.label() == which)
            .or_else(|| models.iter().find(|m| m.name == which))
            .cloned()
            .ok_or_else(|| {
                let names: Vec<String> = models.iter().map(InstalledModel::label).collect();
                Error::NotFound(format!(
                    "no installed model {which:?}; installed: {} (import a model bundle first)",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ))
            })?;
        let checked = self.gate(actor, &found, check)?;
        self.set_active(actor, &found, "operator", &checked)?;
        Ok(InstalledModel {
            active: true,
            ..found
        })
    }

    /// Activates, for each task without an active model, the newest
    /// installed model that passes `check`: a fresh install needs no
    /// approval, but the same gate as [`Appliance::activate_model`]. A model
    /// that fails it stays installed and inactive (audited). Returns what it
    /// activated.
    pub fn activate_new_models(
        &mut self,
        actor: &Actor,
        check: &dyn ModelCheck,
    ) -> Result<Vec<InstalledModel>, Error> {
        let models = self.models()?;
        let mut activated = Vec::new();
        for task in Task::ALL {
            if models.iter().any(|m| m.task == task && m.active) {
                continue;
            }
            // Newest first: the first that passes becomes active.
            for m in models.iter().filter(|m| m.task == task) {
                let checked = match self.gate(actor, m, check) {
                    Ok(checked) => checked,
                    Err(e) => {
                        tracing::warn!(model = %m.label(), error = %e, "model not activated");
                        continue;
                    }
                };
                self.set_active(actor, m, "first model for its task", &checked)?;
                activated.push(InstalledModel {
                    active: true,
                    ..m.clone()
                });
                break;
            }
        }
        Ok(activated)
    }

    /// Runs `check` on `m`; a failure is audited and becomes the error.
    fn gate(
        &mut self,
        actor: &Actor,
        m: &InstalledModel,
        check: &dyn ModelCheck,
    ) -> Result<String, Error> {
        let reason = match check.check(m) {
            Ok(checked) => return Ok(checked),
            Err(reason) => reason,
        };
        self.store.write(actor, Class::Data, |_| {
            Ok((
                (),
                vec![Audit {
                    action: "model.activate.refused",
                    target: m.cid.clone(),
                    detail: serde_json::json!({
                        "task": m.task, "name": m.name, "version": m.version, "reason": reason
                    }),
                }],
                vec![],
            ))
        })?;
        Err(Error::Invalid(format!(
            "model {} was not activated: it failed its check: {reason}; the active model stays. Install a model this spoke can run",
            m.label()
        )))
    }

    fn set_active(
        &mut self,
        actor: &Actor,
        m: &InstalledModel,
        why: &str,
        checked: &str,
    ) -> Result<(), Error> {
        self.store.write(actor, Class::Data, |tx| {
            tx.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![m.task.setting(), m.cid],
            )
            .map_err(tx_db)?;
            Ok((
                (),
                vec![Audit {
                    action: "model.activate",
                    target: m.cid.clone(),
                    detail: serde_json::json!({
                        "task": m.task, "name": m.name, "version": m.version, "reason": why,
                        "checked": checked
                    }),
                }],
                vec![],
            ))
        })?;
        Ok(())
    }

    /// Passages that have no vector for `model` yet, at most `limit`.
    pub fn passages_to_embed(&self, model: &str, limit: usize) -> Result<Vec<PassageText>, Error> {
        let mut have: HashMap<String, std::collections::HashSet<u32>> = HashMap::new();
        {
            let mut stmt = self
                .store
                .conn()
                .prepare_cached("SELECT document_id, ord FROM passage_vectors WHERE model = ?1")
                .map_err(self.store.db())?;
            let rows = stmt
                .query_map([model], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
                })
                .map_err(self.store.db())?;
            for row in rows {
                let (d, o) = row.map_err(self.store.db())?;
                have.entry(d).or_default().insert(o);
            }
        }
        let mut out = Vec::new();
        for d in self.store.documents(None)? {
            let text = self.store.document_text(&d.id)?;
            for (ord, r) in split_passages(&text).into_iter().enumerate() {
                let ord = ord as u32;
                if have.get(&d.id).is_some_and(|s| s.contains(&ord)) {
                    continue;
                }
                out.push(PassageText {
                    document: d.id.clone(),
                    ord,
                    text: text[r].to_string(),
                });
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// Stores passage vectors computed by `model`. Vectors are derived data,
    /// like the search index: written in one transaction, not audit-logged,
    /// recomputed when missing.
    pub fn put_passage_vectors(
        &mut self,
        model: &str,
        vectors: &[(PassageText, Vec<f32>)],
    ) -> Result<(), Error> {
        let tx = self.store.conn_mut().transaction().map_err(tx_db)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO passage_vectors (model, document_id, ord, vector)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(tx_db)?;
            for (p, v) in vectors {
                stmt.execute(params![model, p.document, p.ord, encode(v)])
                    .map_err(tx_db)?;
            }
        }
        tx.commit().map_err(tx_db)
    }

    /// Finds the `k` passages that best answer `question`: BM25 over the
    /// passage index and, given the question's vector from `model`, cosine
    /// similarity over the stored passage vectors, fused by reciprocal rank.
    pub fn retrieve(
        &self,
        actor: &Actor,
        question: &str,
        query_vector: Option<(&str, &[f32])>,
        k: usize,
    ) -> Result<Vec<Retrieved>, Error> {
        actor.require(Permission::Read)?;
        if question.trim().is_empty() {
            return Err(Error::Invalid(
                "the question is empty; ask about your documents".into(),
            ));
        }
        let mut fused: HashMap<PassageKey, Ranks> = HashMap::new();
        let filter = search::Filter::default();
        match self.passages.search_ids(question, &filter, CANDIDATES) {
            Ok(ids) => {
                for (rank, id) in ids.iter().enumerate() {
                    if let Some(key) = passage_key(&id.0) {
                        fused.entry(key).or_default().0 = Some(rank + 1);
                    }
                }
            }
            // A question of stop characters only finds nothing by words.
            Err(search::Error::EmptyQuery) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some((model, q)) = query_vector {
            for (rank, key) in self.nearest(model, q, CANDIDATES)?.into_iter().enumerate() {
                fused.entry(key).or_default().1 = Some(rank + 1);
            }
        }
        let rrf = |r: Option<usize>| r.map_or(0.0, |r| 1.0 / (RRF_K + r as f64));
        let mut ranked: Vec<(PassageKey, Ranks, f64)> = fused
            .into_iter()
            .map(|(key, ranks)| {
                let score = rrf(ranks.0) + rrf(ranks.1);
                (key, ranks, score)
            })
            .collect();
        ranked.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(k);
        let mut out = Vec::new();
        for ((document, ord), (bm25_rank, vector_rank), score) in ranked {
            let d = self.store.document(&document)?;
            let text = self.store.document_text(&document)?;
            let Some(r) = split_passages(&text).into_iter().nth(ord as usize) else {
                continue;
            };
            out.push(Retrieved {
                source: Source::Document,
                document,
                filename: d.filename,
                ord,
                start: r.start,
                end: r.end,
                text: text[r].to_string(),
                bm25_rank,
                vector_rank,
                score,
            });
        }
        Ok(out)
    }

    /// The `n` passages whose vectors are nearest `q` (vectors are unit
    /// length, so the dot product is the cosine).
    fn nearest(&self, model: &str, q: &[f32], n: usize) -> Result<Vec<(String, u32)>, Error> {
        let mut stmt = self
            .store
            .conn()
            .prepare_cached("SELECT document_id, ord, vector FROM passage_vectors WHERE model = ?1")
            .map_err(self.store.db())?;
        let rows = stmt
            .query_map([model], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(self.store.db())?;
        let mut scored = Vec::new();
        for row in rows {
            let (d, o, v) = row.map_err(self.store.db())?;
            let v = decode(&v);
            if v.len() != q.len() {
                continue;
            }
            let dot: f32 = v.iter().zip(q).map(|(a, b)| a * b).sum();
            scored.push((dot, d, o));
        }
        scored.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| (&a.1, a.2).cmp(&(&b.1, b.2)))
        });
        Ok(scored.into_iter().take(n).map(|(_, d, o)| (d, o)).collect())
    }

    /// Counts one AI request against the plan's daily quota and records in
    /// the audit log what was asked of which models (their digests), so a
    /// stored result can always name the model behind it. Refused with
    /// `quota` once the plan's `max_ai_requests_per_day` is used up.
    pub fn record_ai_use(
        &mut self,
        actor: &Actor,
        action: &'static str,
        detail: serde_json::Value,
    ) -> Result<(), Error> {
        self.record_ai(actor, action, detail, true)
    }

    /// Appends to the audit log what an AI request produced (the passages
    /// the model was given, the digest of its answer); not counted against
    /// the quota, which [`Appliance::record_ai_use`] charged when the
    /// request began.
    pub fn record_ai_result(
        &mut self,
        actor: &Actor,
        action: &'static str,
        detail: serde_json::Value,
    ) -> Result<(), Error> {
        self.record_ai(actor, action, detail, false)
    }

    /// One audit entry, in the transaction that counts the request when
    /// `count`.
    fn record_ai(
        &mut self,
        actor: &Actor,
        action: &'static str,
        detail: serde_json::Value,
        count: bool,
    ) -> Result<(), Error> {
        actor.require(Permission::Read)?;
        let limit = self
            .store
            .licence()?
            .and_then(|t| t.max_ai_requests_per_day);
        let day = crate::compliance::today();
        self.store.write(actor, Class::Admin, |tx| {
            if count {
                let used: i64 = tx
                    .query_row("SELECT n FROM ai_usage WHERE day = ?1", [&day], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(tx_db)?
                    .unwrap_or(0);
                if let Some(limit) = limit {
                    if used as u64 >= limit {
                        return Err(Error::Quota(format!(
                            "the plan's {limit} AI requests for {day} are used up; \
                             they renew tomorrow, or ask the vendor for a larger plan"
                        )));
                    }
                }
                tx.execute(
                    "INSERT INTO ai_usage (day, n) VALUES (?1, 1)
                     ON CONFLICT (day) DO UPDATE SET n = n + 1",
                    [&day],
                )
                .map_err(tx_db)?;
            }
            Ok((
                (),
                vec![Audit {
                    action,
                    target: actor.name.clone(),
                    detail,
                }],
                vec![],
            ))
        })?;
        Ok(())
    }

    /// AI requests counted today.
    pub fn ai_requests_today(&self) -> Result<u64, Error> {
        let n: Option<i64> = self
            .store
            .conn()
            .query_row(
                "SELECT n FROM ai_usage WHERE day = ?1",
                [crate::compliance::today()],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.store.db())?;
        Ok(n.unwrap_or(0) as u64)
    }
}

/// The passage index entry for passage `ord` of a document.
pub(crate) fn passage_doc(document: &str, filename: &str, ord: usize, text: &str) -> search::Doc {
    search::Doc {
        id: format!("passage:{document}:{ord}"),
        kind: "passage".into(),
        title: filename.to_string(),
        body: text.to_string(),
        tags: vec![format!("document:{document}")],
    }
}

fn passage_key(id: &str) -> Option<(String, u32)> {
    let rest = id.strip_prefix("passage:")?;
    let (doc, ord) = rest.rsplit_once(':')?;
    Some((doc.to_string(), ord.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passages_cover_the_text_in_order_and_respect_the_size() {
        let sentence = "Phenoxyethanol is allowed up to one percent in cosmetic products. ";
        let text = sentence.repeat(60);
        let ps = split_passages(&text);
        assert!(ps.len() > 1, "{ps:?}");
        let mut prev_end = 0;
        for r in &ps {
            assert!(r.start >= prev_end);
            let words = text[r.clone()].split_whitespace().count();
            assert!(words <= PASSAGE_WORDS, "{words}");
            assert!(text[r.clone()].ends_with('.'), "{:?}", &text[r.clone()]);
            prev_end = r.end;
        }
        let joined: Vec<&str> = ps
            .iter()
            .flat_map(|r| text[r.clone()].split_whitespace())
            .collect();
        assert_eq!(joined, text.split_whitespace().collect::<Vec<_>>());
    }

    #[test]
    fn long_runs_without_sentence_ends_are_cut_at_the_cap() {
        let text = "word ".repeat(301);
        let ps = split_passages(&text);
        let counts: Vec<usize> = ps
            .iter()
            .map(|r| text[r.clone()].split_whitespace().count())
            .collect();
        assert_eq!(counts, vec![120, 120, 61]);
        assert!(split_passages("  \n ").is_empty());
        assert_eq!(split_passages("é ü"), vec![0..5]);
    }

    #[test]
    fn vectors_round_trip_and_keys_parse() {
        let v = vec![0.5f32, -1.25, 3.0];
        assert_eq!(decode(&encode(&v)), v);
        assert_eq!(
            passage_key("passage:doc-a:b:7"),
            Some(("doc-a:b".into(), 7))
        );
        assert_eq!(passage_key("document:x"), None);
    }
}
