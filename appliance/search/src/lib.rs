//! The spoke's full-text index over entities (products, substances,
//! suppliers) and document text: BM25 ranking (tantivy) with kind and tag
//! filters and highlighted snippets.
//!
//! The index is derived data. SQLite is the source of truth; every commit
//! here carries the database generation it reflects (in tantivy's commit
//! payload), so the caller can tell at start whether the index is in step and
//! rebuild it when not. An index with another schema (an older version of this
//! crate, or something else entirely) is wiped and recreated, and reports no
//! generation, which makes the caller rebuild it.
//!
//! Several processes may use one index (the command line while `spoke serve`
//! runs): the writer is taken only for the length of one commit, waiting its
//! turn if another process holds it, and readers follow commits made elsewhere.
//!
//! Text is split on anything that is not a letter or digit, lowercased and
//! folded to ASCII (`Crème` matches `creme`). A CAS number such as `69-72-7`
//! is indexed as its three numbers in a row, and a query for `69-72-7` becomes
//! a phrase query for them, so it finds exactly that number.
//!
//! Results come ordered by score, then id, so equal scores always come back
//! in the same order, whatever the segments look like. A rebuild ends with
//! all segments merged into one, which is the fastest to search; `apply`
//! leaves merging to tantivy's policy.
#![deny(missing_docs)]

mod query;
mod rank;

use query::UserQuery;
use rank::{Found, TopById};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tantivy::merge_policy::NoMergePolicy;
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST, STORED, STRING,
};
use tantivy::snippet::{Snippet, SnippetGenerator};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::{
    IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, TantivyError, Term,
};

/// Most hits one search returns; larger limits are capped to this.
pub const MAX_HITS: usize = 100;

/// How much the title weighs against the body in the BM25 score.
pub const TITLE_BOOST: f32 = 2.0;

/// Memory the writer may use for buffering documents before it flushes a segment.
const WRITER_MEMORY: usize = 50_000_000;

/// How long a commit waits for another process's writer before giving up.
const WRITER_WAIT: Duration = Duration::from_secs(30);

/// Name of the analyzer for title and body (registered on every open).
const TOKENIZER: &str = "eurocomply_folded";

/// Name of the id field (also a fast field, for the tie-break by id).
const ID: &str = "id";

/// What can go wrong with the search index.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The index directory could not be created, read or cleared.
    #[error(
        "search index directory {path}: could not {action}: {source}; check that the directory \
         is writable by this user and the disk is not full, then try again"
    )]
    Io {
        /// The directory (or the file in it) concerned.
        path: PathBuf,
        /// What was being done, e.g. `create the directory`.
        action: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// tantivy could not open, create or read the index.
    #[error(
        "search index at {path}: could not {action}: {source}; the index is derived from the \
         database, so deleting that directory and starting again rebuilds it"
    )]
    Open {
        /// The index directory.
        path: PathBuf,
        /// What was being done, e.g. `create the index`.
        action: &'static str,
        /// tantivy's error.
        source: TantivyError,
    },
    /// A change (add, delete, commit) failed; nothing of it was committed.
    #[error(
        "search index at {path}: could not {action}: {source}; nothing of this change was \
         committed and the index still reflects its previous generation; free disk space if it \
         is full, then retry or rebuild the index from the database"
    )]
    Write {
        /// The index directory.
        path: PathBuf,
        /// What was being done, e.g. `commit`.
        action: &'static str,
        /// tantivy's error.
        source: TantivyError,
    },
    /// Another process kept the index writer for too long.
    #[error(
        "search index at {path}: another process has held the index writer for over {seconds} s; \
         wait for it to finish (or stop it) and try again"
    )]
    Busy {
        /// The index directory.
        path: PathBuf,
        /// How long this process waited.
        seconds: u64,
    },
    /// Running a query failed.
    #[error(
        "search index at {path}: the search failed: {source}; if this persists, rebuild the index \
         from the database"
    )]
    Search {
        /// The index directory.
        path: PathBuf,
        /// tantivy's error.
        source: TantivyError,
    },
    /// The query has no text.
    #[error("the search query is empty; type at least one word")]
    EmptyQuery,
}

/// Something to index. `id` is unique: adding a document with an id already
/// in the index replaces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Doc {
    /// Unique id (the caller's namespace, e.g. `entity:prod-1`).
    pub id: String,
    /// `product`, `document`, `substance` or `supplier`.
    pub kind: String,
    /// Title (weighs [`TITLE_BOOST`] times the body).
    pub title: String,
    /// Body text (CAS numbers, INCI names, document text, ...).
    pub body: String,
    /// Exact-match tags for filtering, e.g. `category:leave_on`, `market:EU`, `doc:cpsr`.
    pub tags: Vec<String>,
}

/// Restricts a search. The default restricts nothing.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only documents of this kind (exact match).
    pub kind: Option<String>,
    /// Only documents carrying all of these tags (exact match).
    pub tags: Vec<String>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.kind.is_none() && self.tags.is_empty()
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The document's id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Its title.
    pub title: String,
    /// BM25 score over title and body (filters add nothing to it).
    pub score: f32,
    /// A fragment of up to about 150 characters of the body holding the best
    /// matches (or the title, when only the title matched), on one line, as
    /// plain text, with each matched word wrapped in `[` and `]`. Matched
    /// words joined only by `-` are wrapped together, e.g. `[69-72-7]`.
    pub snippet: String,
}

struct Fields {
    id: Field,
    kind: Field,
    title: Field,
    body: Field,
    tags: Field,
}

fn schema() -> (Schema, Fields) {
    let text = TextOptions::default().set_stored().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let mut b = Schema::builder();
    let fields = Fields {
        id: b.add_text_field(ID, STRING | STORED | FAST),
        kind: b.add_text_field("kind", STRING | STORED),
        title: b.add_text_field("title", text.clone()),
        body: b.add_text_field("body", text),
        tags: b.add_text_field("tags", STRING),
    };
    (b.build(), fields)
}

/// Letters and digits, lowercased and folded to ASCII; tokens over 40 bytes dropped.
fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// Removes everything inside `dir` (the directory itself stays).
fn clear_dir(dir: &Path) -> Result<(), Error> {
    let io = |path: &Path, source| Error::Io {
        path: path.to_owned(),
        action: "clear the outdated index",
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = entry.map_err(|e| io(dir, e))?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).map_err(|e| io(&path, e))?;
        } else {
            std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
        }
    }
    Ok(())
}

/// The full-text index in one directory.
pub struct Index {
    path: PathBuf,
    index: tantivy::Index,
    reader: IndexReader,
    fields: Fields,
    /// Parses over title and body without boosts (see `query.rs`).
    plain: QueryParser,
    /// The same with the title boosted, for queries `query.rs` does not rewrite.
    boosted: QueryParser,
}

impl Index {
    /// Opens the index in `dir`, creating the directory and the index if they
    /// are missing. An index there with another schema, or one tantivy cannot
    /// read, is wiped and recreated empty ([`Index::generation`] is then None).
    /// A directory without an index (no `meta.json`) is never wiped.
    pub fn open(dir: &Path) -> Result<Index, Error> {
        let open_err = |action, source| Error::Open {
            path: dir.to_owned(),
            action,
            source,
        };
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            action: "create the directory",
            source,
        })?;
        let (schema, fields) = schema();
        let index = match tantivy::Index::open_in_dir(dir) {
            Ok(index) if index.schema() == schema => index,
            found => {
                if dir.join("meta.json").exists() {
                    match found {
                        Ok(_) => tracing::warn!(
                            "search index at {} has another schema; recreating it",
                            dir.display()
                        ),
                        Err(e) => tracing::warn!(
                            "search index at {} cannot be read ({e}); recreating it",
                            dir.display()
                        ),
                    }
                    clear_dir(dir)?;
                }
                tantivy::Index::create_in_dir(dir, schema)
                    .map_err(|e| open_err("create the index", e))?
            }
        };
        index.tokenizers().register(TOKENIZER, analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .try_into()
            .map_err(|e| open_err("open a reader", e))?;
        let plain = QueryParser::for_index(&index, vec![fields.title, fields.body]);
        let mut boosted = plain.clone();
        boosted.set_field_boost(fields.title, TITLE_BOOST);
        Ok(Index {
            path: dir.to_owned(),
            index,
            reader,
            fields,
            plain,
            boosted,
        })
    }

    /// The database generation of the last commit (from its payload); None
    /// for a fresh or recreated index.
    pub fn generation(&self) -> Option<u64> {
        self.index
            .load_metas()
            .ok()?
            .payload
            .and_then(|p| p.parse().ok())
    }

    /// Documents in the index as of the last commit this handle has seen.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Whether the index holds no documents.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces `upserts` (by id; the last wins if an id repeats), removes the
    /// documents with the ids in `deletes`, and commits it all at once with
    /// `generation` as payload. The next search sees the change.
    pub fn apply(
        &mut self,
        upserts: &[Doc],
        deletes: &[String],
        generation: u64,
    ) -> Result<(), Error> {
        let writer = self.writer()?;
        for id in deletes.iter().chain(upserts.iter().map(|d| &d.id)) {
            writer.delete_term(Term::from_field_text(self.fields.id, id));
        }
        self.add_all(&writer, upserts.iter())?;
        self.commit(writer, generation, false)
    }

    /// Replaces the whole index with `docs` in one commit with `generation`
    /// as payload; returns how many documents it now holds (ids that repeat
    /// count once; the last wins).
    pub fn rebuild<I: IntoIterator<Item = Doc>>(
        &mut self,
        docs: I,
        generation: u64,
    ) -> Result<u64, Error> {
        let writer = self.writer()?;
        // No merges while indexing: one merge of everything at the end.
        writer.set_merge_policy(Box::new(NoMergePolicy));
        writer
            .delete_all_documents()
            .map_err(self.write_err("clear the index"))?;
        let n = self.add_all(&writer, docs)?;
        self.commit(writer, generation, true)?;
        Ok(n)
    }

    /// BM25 search over title (weighing [`TITLE_BOOST`] times) and body.
    ///
    /// The query is parsed leniently: words are OR-ed, `"..."` is a phrase,
    /// `+word` / `-word` require / exclude, and anything unparsable (stray
    /// punctuation, unbalanced quotes or brackets) is ignored rather than an
    /// error. A query with no text is [`Error::EmptyQuery`]. At most `limit`
    /// hits (capped at [`MAX_HITS`]) come back ordered by score descending,
    /// then id ascending, so equal scores always come in the same order.
    pub fn search(&self, query: &str, filter: &Filter, limit: usize) -> Result<Vec<Hit>, Error> {
        let f = &self.fields;
        let text = self.parse(query)?;
        let searcher = self.reader.searcher();
        let top = self.top(&searcher, &text, filter, limit)?;
        if top.is_empty() {
            return Ok(Vec::new());
        }
        let body_snippets =
            SnippetGenerator::create(&searcher, &*text.query, f.body).map_err(self.search_err())?;
        let title_snippets = SnippetGenerator::create(&searcher, &*text.query, f.title)
            .map_err(self.search_err())?;
        let mut hits = Vec::with_capacity(top.len());
        for Ranked { score, id, doc } in top {
            let get = |field| text_of(&doc, field).to_string();
            let mut snippet = marked(&body_snippets.snippet_from_doc(&doc));
            if snippet.is_empty() {
                snippet = marked(&title_snippets.snippet_from_doc(&doc));
            }
            hits.push(Hit {
                id,
                kind: get(f.kind),
                title: get(f.title),
                score,
                snippet,
            });
        }
        Ok(hits)
    }

    /// Like [`Index::search`] but only ids and scores, with no snippets made
    /// (for callers that only need the ranking).
    pub fn search_ids(
        &self,
        query: &str,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<(String, f32)>, Error> {
        let text = self.parse(query)?;
        let searcher = self.reader.searcher();
        Ok(self
            .top(&searcher, &text, filter, limit)?
            .into_iter()
            .map(|r| (r.id, r.score))
            .collect())
    }

    fn write_err(&self, action: &'static str) -> impl Fn(TantivyError) -> Error + '_ {
        move |source| Error::Write {
            path: self.path.clone(),
            action,
            source,
        }
    }

    fn search_err(&self) -> impl Fn(TantivyError) -> Error + '_ {
        move |source| Error::Search {
            path: self.path.clone(),
            source,
        }
    }

    /// Takes the index writer, waiting while another process holds it.
    fn writer(&self) -> Result<IndexWriter<TantivyDocument>, Error> {
        let start = Instant::now();
        loop {
            match self.index.writer(WRITER_MEMORY) {
                Err(TantivyError::LockFailure(..)) if start.elapsed() < WRITER_WAIT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(TantivyError::LockFailure(..)) => {
                    return Err(Error::Busy {
                        path: self.path.clone(),
                        seconds: WRITER_WAIT.as_secs(),
                    })
                }
                other => {
                    let writer = other.map_err(self.write_err("take the index writer"))?;
                    // Files of a commit or merge that failed earlier (a full
                    // disk) are referenced by no commit: remove them first,
                    // so failures never pile up.
                    if let Err(e) = writer.garbage_collect_files().wait() {
                        tracing::warn!(
                            "search index at {}: could not remove unused files: {e}",
                            self.path.display()
                        );
                    }
                    return Ok(writer);
                }
            }
        }
    }

    /// Adds `docs`; when an id repeats, the later document replaces the
    /// earlier. Returns the number of distinct ids added.
    fn add_all<D: std::borrow::Borrow<Doc>>(
        &self,
        writer: &IndexWriter<TantivyDocument>,
        docs: impl IntoIterator<Item = D>,
    ) -> Result<u64, Error> {
        let f = &self.fields;
        let mut seen = HashSet::new();
        for d in docs {
            let d = d.borrow();
            if !seen.insert(d.id.clone()) {
                // Deletes apply to what was added before them, so only the
                // earlier copy goes.
                writer.delete_term(Term::from_field_text(f.id, &d.id));
            }
            let mut doc = TantivyDocument::default();
            doc.add_text(f.id, &d.id);
            doc.add_text(f.kind, &d.kind);
            doc.add_text(f.title, &d.title);
            doc.add_text(f.body, &d.body);
            for t in &d.tags {
                doc.add_text(f.tags, t);
            }
            writer
                .add_document(doc)
                .map_err(self.write_err("add a document"))?;
        }
        Ok(seen.len() as u64)
    }

    /// Commits with the generation as payload, releases the writer and makes
    /// the commit visible to this handle's searches at once. With `merge_all`
    /// (after a rebuild) the segments are merged into one, which searches
    /// fastest; merges keep the commit's payload.
    fn commit(
        &self,
        mut writer: IndexWriter<TantivyDocument>,
        generation: u64,
        merge_all: bool,
    ) -> Result<(), Error> {
        let mut prepared = writer
            .prepare_commit()
            .map_err(self.write_err("prepare the commit"))?;
        prepared.set_payload(&generation.to_string());
        prepared.commit().map_err(self.write_err("commit"))?;
        // The commit is durable from here: a merge only makes searching
        // faster, so one that fails (a full disk) is logged, its files are
        // removed by the next writer, and the commit stands.
        if merge_all {
            let merged = self
                .index
                .searchable_segment_ids()
                .map_err(self.write_err("list segments"))
                .and_then(|segments| {
                    if segments.len() > 1 {
                        writer
                            .merge(&segments)
                            .wait()
                            .map(drop)
                            .map_err(self.write_err("merge segments"))
                    } else {
                        Ok(())
                    }
                });
            if let Err(e) = merged {
                tracing::warn!("{e}");
            }
        }
        if let Err(e) = writer
            .wait_merging_threads()
            .map_err(self.write_err("finish merging segments"))
        {
            tracing::warn!("{e}");
        }
        self.reader
            .reload()
            .map_err(self.write_err("reload the reader after the commit"))
    }

    /// The user's text as a query over title and body.
    fn parse(&self, query: &str) -> Result<UserQuery, Error> {
        if query.trim().is_empty() {
            return Err(Error::EmptyQuery);
        }
        Ok(UserQuery::parse(
            &self.plain,
            &self.boosted,
            self.fields.title,
            TITLE_BOOST,
            query,
        ))
    }

    /// The best `limit` matches of `text` within `filter`, ordered by score
    /// descending, then id ascending, with their stored fields.
    fn top(
        &self,
        searcher: &Searcher,
        text: &UserQuery,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<Ranked>, Error> {
        let limit = limit.min(MAX_HITS);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let collector = TopById {
            limit,
            id_field: ID,
        };
        let found = if filter.is_empty() {
            text.collect(searcher, &collector)
        } else {
            // Filters must match but add nothing to the score.
            let exact = |field, value: &str| -> (Occur, Box<dyn Query>) {
                let term = TermQuery::new(
                    Term::from_field_text(field, value),
                    IndexRecordOption::Basic,
                );
                (
                    Occur::Must,
                    Box::new(ConstScoreQuery::new(Box::new(term), 0.0)),
                )
            };
            let mut clauses = vec![(Occur::Must, text.query.box_clone())];
            clauses.extend(filter.kind.iter().map(|k| exact(self.fields.kind, k)));
            clauses.extend(filter.tags.iter().map(|t| exact(self.fields.tags, t)));
            searcher.search(&BooleanQuery::new(clauses), &collector)
        };
        let mut found: Vec<Found> = found.map_err(self.search_err())?;
        // Each segment sent its best in exact order; across segments, only
        // documents scoring at least the `limit`-th best score can make it,
        // and among those equal scores are ordered by id.
        found.sort_by(|a, b| b.score.total_cmp(&a.score));
        if let Some(cut) = found.get(limit - 1).map(|f| f.score) {
            found.retain(|f| f.score >= cut);
        }
        let mut ranked = Vec::with_capacity(found.len());
        for Found { score, addr } in found {
            let doc: TantivyDocument = searcher.doc(addr).map_err(self.search_err())?;
            let id = text_of(&doc, self.fields.id).to_string();
            ranked.push(Ranked { score, id, doc });
        }
        ranked.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        ranked.truncate(limit);
        Ok(ranked)
    }
}

/// One result of [`Index::top`].
struct Ranked {
    score: f32,
    id: String,
    doc: TantivyDocument,
}

/// The first text value of `field` in `doc`, or "".
fn text_of(doc: &TantivyDocument, field: Field) -> &str {
    doc.get_first(field)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
}

/// A snippet as one line of plain text with matches wrapped in `[` `]`;
/// matches joined only by `-` (a CAS number) are wrapped together.
fn marked(s: &Snippet) -> String {
    // Replacing single-byte characters with a space keeps the byte offsets.
    let one_line = s.fragment().replace(['\n', '\r', '\t'], " ");
    let text = one_line.as_str();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for r in s.highlighted() {
        let inside = r.start <= r.end && r.end <= text.len();
        if !inside || !text.is_char_boundary(r.start) || !text.is_char_boundary(r.end) {
            continue;
        }
        match spans.last_mut() {
            Some(last) if r.start < last.1 => continue,
            Some(last) if text[last.1..r.start].bytes().all(|b| b == b'-') => last.1 = r.end,
            _ => spans.push((r.start, r.end)),
        }
    }
    let mut out = String::with_capacity(text.len() + 2 * spans.len());
    let mut at = 0;
    for (start, end) in spans {
        out.push_str(&text[at..start]);
        out.push('[');
        out.push_str(&text[start..end]);
        out.push(']');
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, kind: &str, title: &str, body: &str, tags: &[&str]) -> Doc {
        Doc {
            id: id.into(),
            kind: kind.into(),
            title: title.into(),
            body: body.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn ids(hits: &[Hit]) -> Vec<&str> {
        hits.iter().map(|h| h.id.as_str()).collect()
    }

    fn find(ix: &Index, q: &str) -> Vec<String> {
        ix.search(q, &Filter::default(), 100)
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect()
    }

    fn kind(k: &str) -> Filter {
        Filter {
            kind: Some(k.into()),
            tags: vec![],
        }
    }

    fn tags(t: &[&str]) -> Filter {
        Filter {
            kind: None,
            tags: t.iter().map(|t| t.to_string()).collect(),
        }
    }

    /// A small catalogue: two products, a substance, a supplier, a document.
    fn catalogue() -> Vec<Doc> {
        vec![
            doc(
                "entity:p1",
                "product",
                "Hydrating serum",
                "Aqua, Glycerin, Salicylic acid (CAS 69-72-7), Parfum",
                &["category:leave_on", "market:EU"],
            ),
            doc(
                "entity:p2",
                "product",
                "Clarifying shampoo",
                "Aqua, Sodium laureth sulfate, Salicylic acid",
                &["category:rinse_off", "market:EU", "market:US"],
            ),
            doc(
                "entity:s1",
                "substance",
                "Salicylic acid",
                "CAS 69-72-7, EC 200-712-3; Annex III entry 98",
                &[],
            ),
            doc(
                "entity:sup1",
                "supplier",
                "Acme Chemicals",
                "raw materials: glycerin, salicylic acid",
                &["market:EU"],
            ),
            doc(
                "document:d1",
                "document",
                "cpsr-hydrating-serum.pdf",
                "Cosmetic product safety report for the hydrating serum. Salicylic acid 0.5%.",
                &["doc:cpsr", "entity:p1"],
            ),
        ]
    }

    fn with_catalogue() -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(dir.path()).unwrap();
        ix.apply(&catalogue(), &[], 1).unwrap();
        (dir, ix)
    }

    #[test]
    fn upsert_replaces_by_id_without_duplicating() {
        let (_dir, mut ix) = with_catalogue();
        assert_eq!(ix.len(), 5);
        let mut glycerin = find(&ix, "glycerin");
        glycerin.sort();
        assert_eq!(glycerin, ["entity:p1", "entity:sup1"]);
        let mut p1 = catalogue()[0].clone();
        p1.body = "Aqua, Niacinamide".into();
        ix.apply(&[p1], &[], 2).unwrap();
        assert_eq!(ix.len(), 5, "the update replaced the old version");
        assert_eq!(find(&ix, "glycerin"), ["entity:sup1"]);
        assert_eq!(find(&ix, "niacinamide"), ["entity:p1"]);
        assert_eq!(
            find(&ix, "hydrating").len(),
            2,
            "p1 and the report, once each"
        );

        // The same id twice in one change: the last one wins.
        let first = doc("entity:p3", "product", "Toner", "witch hazel", &[]);
        let second = doc("entity:p3", "product", "Toner", "rose water", &[]);
        ix.apply(&[first, second], &[], 3).unwrap();
        assert_eq!(ix.len(), 6);
        assert!(find(&ix, "hazel").is_empty());
        assert_eq!(find(&ix, "rose"), ["entity:p3"]);
    }

    #[test]
    fn delete_removes_by_id() {
        let (_dir, mut ix) = with_catalogue();
        ix.apply(&[], &["entity:p2".into(), "entity:unknown".into()], 2)
            .unwrap();
        assert_eq!(ix.len(), 4);
        assert!(find(&ix, "shampoo").is_empty());
        assert!(!find(&ix, "salicylic").contains(&"entity:p2".to_string()));
        // Delete and re-add in one change: the upsert wins.
        ix.apply(&[catalogue()[1].clone()], &["entity:p2".into()], 3)
            .unwrap();
        assert_eq!(find(&ix, "shampoo"), ["entity:p2"]);
    }

    #[test]
    fn filters_by_kind_and_all_tags() {
        let (_dir, ix) = with_catalogue();
        let s = |f: &Filter| {
            let hits = ix.search("salicylic", f, 10).unwrap();
            let mut ids: Vec<String> = hits.into_iter().map(|h| h.id).collect();
            ids.sort();
            ids
        };
        assert_eq!(s(&Filter::default()).len(), 5);
        assert_eq!(s(&kind("product")), ["entity:p1", "entity:p2"]);
        assert_eq!(s(&kind("document")), ["document:d1"]);
        assert!(s(&kind("Product")).is_empty(), "kinds match exactly");
        assert_eq!(
            s(&tags(&["market:EU"])),
            ["entity:p1", "entity:p2", "entity:sup1"]
        );
        assert_eq!(s(&tags(&["market:EU", "market:US"])), ["entity:p2"]);
        assert!(s(&tags(&["market:EU", "market:JP"])).is_empty());
        let both = Filter {
            kind: Some("product".into()),
            tags: vec!["category:leave_on".into()],
        };
        assert_eq!(s(&both), ["entity:p1"]);
        assert_eq!(s(&tags(&["doc:cpsr"])), ["document:d1"]);
    }

    #[test]
    fn filters_do_not_change_scores() {
        let (_dir, ix) = with_catalogue();
        let all = ix.search("salicylic acid", &Filter::default(), 10).unwrap();
        let products = ix.search("salicylic acid", &kind("product"), 10).unwrap();
        for h in &products {
            let same = all.iter().find(|a| a.id == h.id).unwrap();
            assert_eq!(same.score, h.score, "{}", h.id);
        }
    }

    #[test]
    fn generation_round_trips_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(dir.path()).unwrap();
        assert_eq!(ix.generation(), None, "fresh index");
        assert!(ix.is_empty());
        ix.apply(&catalogue(), &[], 41).unwrap();
        assert_eq!(ix.generation(), Some(41));
        drop(ix);
        let mut ix = Index::open(dir.path()).unwrap();
        assert_eq!(ix.generation(), Some(41), "generation survives reopening");
        assert_eq!(ix.len(), 5, "and so do the documents");
        ix.apply(&[], &["entity:p1".into()], u64::MAX).unwrap();
        drop(ix);
        let ix = Index::open(dir.path()).unwrap();
        assert_eq!(ix.generation(), Some(u64::MAX));
        assert_eq!(ix.len(), 4);
    }

    #[test]
    fn rebuild_replaces_everything() {
        let (dir, mut ix) = with_catalogue();
        let n = ix
            .rebuild(
                vec![
                    doc("entity:x", "supplier", "Acme", "raw materials", &[]),
                    doc("entity:y", "supplier", "Bolt", "packaging", &[]),
                    doc("entity:y", "supplier", "Bolt", "glass bottles", &[]),
                ],
                7,
            )
            .unwrap();
        assert_eq!(n, 2, "a repeated id counts once");
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.generation(), Some(7));
        assert!(find(&ix, "salicylic").is_empty(), "old documents are gone");
        assert!(find(&ix, "packaging").is_empty(), "the last copy of y won");
        assert_eq!(find(&ix, "bottles"), ["entity:y"]);

        // A rebuild leaves one segment (fastest to search), and the merge
        // keeps the commit's generation.
        let many = (0..500).map(|i| doc(&format!("m{i}"), "product", "Many", "words", &[]));
        assert_eq!(ix.rebuild(many, 8).unwrap(), 500);
        assert_eq!(ix.reader.searcher().segment_readers().len(), 1);
        assert_eq!(ix.generation(), Some(8));
        drop(ix);
        let ix = Index::open(dir.path()).unwrap();
        assert_eq!((ix.len(), ix.generation()), (500, Some(8)));
    }

    #[test]
    fn other_schema_is_wiped_and_recreated() {
        // Something else entirely, with a commit payload that looks like a generation.
        let dir = tempfile::tempdir().unwrap();
        let mut b = Schema::builder();
        let other = b.add_text_field("something_else", STRING | STORED);
        let old = tantivy::Index::create_in_dir(dir.path(), b.build()).unwrap();
        let mut w: IndexWriter<TantivyDocument> = old.writer(15_000_000).unwrap();
        let mut d = TantivyDocument::default();
        d.add_text(other, "x");
        w.add_document(d).unwrap();
        let mut prepared = w.prepare_commit().unwrap();
        prepared.set_payload("12");
        prepared.commit().unwrap();
        drop(w);
        drop(old);

        let mut ix = Index::open(dir.path()).unwrap();
        assert_eq!(
            ix.generation(),
            None,
            "a recreated index asks for a rebuild"
        );
        assert!(ix.is_empty());
        ix.apply(&catalogue(), &[], 13).unwrap();
        assert_eq!(find(&ix, "shampoo"), ["entity:p2"]);
        drop(ix);
        let ix = Index::open(dir.path()).unwrap();
        assert_eq!(ix.generation(), Some(13), "our own schema is kept");
        assert_eq!(ix.len(), 5);
    }

    #[test]
    fn older_version_of_our_schema_is_recreated() {
        // The same fields with the default tokenizer and no fast id, as an
        // earlier version of this crate wrote them.
        let dir = tempfile::tempdir().unwrap();
        let mut b = Schema::builder();
        let id = b.add_text_field("id", STRING | STORED);
        b.add_text_field("kind", STRING | STORED);
        b.add_text_field("title", tantivy::schema::TEXT | STORED);
        b.add_text_field("body", tantivy::schema::TEXT | STORED);
        b.add_text_field("tags", STRING);
        let old = tantivy::Index::create_in_dir(dir.path(), b.build()).unwrap();
        let mut w: IndexWriter<TantivyDocument> = old.writer(15_000_000).unwrap();
        let mut d = TantivyDocument::default();
        d.add_text(id, "entity:old");
        w.add_document(d).unwrap();
        let mut prepared = w.prepare_commit().unwrap();
        prepared.set_payload("5");
        prepared.commit().unwrap();
        drop(w);
        drop(old);

        let ix = Index::open(dir.path()).unwrap();
        assert_eq!(ix.generation(), None);
        assert!(ix.is_empty());
    }

    #[test]
    fn unreadable_index_is_recreated_but_other_files_are_not_touched() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meta.json"), "{ not json").unwrap();
        let ix = Index::open(dir.path()).unwrap();
        assert_eq!(ix.generation(), None);
        drop(ix);

        // A directory with other files but no index is used as it is.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "keep me").unwrap();
        let mut ix = Index::open(dir.path()).unwrap();
        ix.apply(&catalogue(), &[], 1).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
            "keep me"
        );
    }

    #[test]
    fn io_errors_name_the_path_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let err = Index::open(&file.join("index")).err().unwrap();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("a-file"), "{msg}");
        assert!(msg.contains("create the directory"), "{msg}");
        assert!(msg.contains("writable"), "{msg}");
    }

    #[test]
    fn odd_punctuation_never_fails() {
        let (_dir, ix) = with_catalogue();
        for odd in [
            "\"unbalanced",
            "salicylic AND (",
            "title:",
            "+-*&^%",
            "((( )))",
            "\"",
            "a:b:c",
            "acid~",
            "[1 TO",
            "title:[a TO z]",
            "body:{a TO m}",
            "id:>5",
            "IN [x y]",
            "^2",
            "salicylic^",
            "\\",
            "'; DROP TABLE docs; --",
            "ünïcödé ☃ 🧴",
            "-",
            "--",
            "kind:product",
        ] {
            ix.search(odd, &Filter::default(), 10)
                .unwrap_or_else(|e| panic!("{odd:?}: {e}"));
            ix.search(odd, &kind("product"), 10)
                .unwrap_or_else(|e| panic!("{odd:?} with a filter: {e}"));
        }
        // The words in a malformed query still count.
        assert!(find(&ix, "\"salicylic acid").contains(&"entity:s1".to_string()));
        assert!(find(&ix, "shampoo!!! ???").contains(&"entity:p2".to_string()));
        assert_eq!(find(&ix, "(shampoo"), ["entity:p2"]);
    }

    #[test]
    fn cas_numbers_are_found_exactly() {
        let (_dir, mut ix) = with_catalogue();
        // Decoys: the same numbers in another order or as part of another CAS.
        ix.apply(
            &[
                doc(
                    "entity:decoy1",
                    "substance",
                    "Decoy one",
                    "CAS 7-72-69",
                    &[],
                ),
                doc(
                    "entity:decoy2",
                    "substance",
                    "Decoy two",
                    "CAS 169-72-7",
                    &[],
                ),
                doc(
                    "entity:decoy3",
                    "substance",
                    "Decoy three",
                    "CAS 69-72-70",
                    &[],
                ),
            ],
            &[],
            2,
        )
        .unwrap();
        let mut hits = find(&ix, "69-72-7");
        hits.sort();
        assert_eq!(hits, ["entity:p1", "entity:s1"]);
        let mut quoted = find(&ix, "\"69-72-7\"");
        quoted.sort();
        assert_eq!(quoted, ["entity:p1", "entity:s1"]);
        let products = ix.search("69-72-7", &kind("product"), 10).unwrap();
        assert_eq!(ids(&products), ["entity:p1"]);
        assert!(
            products[0].snippet.contains("[69-72-7]"),
            "{}",
            products[0].snippet
        );
        // Among other words the CAS number is still a phrase and ranks first.
        let mixed = find(&ix, "aqua 69-72-7");
        assert_eq!(mixed[0], "entity:p1");
        assert!(!mixed.iter().any(|id| id.starts_with("entity:decoy")));
    }

    #[test]
    fn title_match_outranks_one_mention_in_a_long_body() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(dir.path()).unwrap();
        let filler = "lorem ipsum dolor sit amet ".repeat(60);
        ix.apply(
            &[
                doc(
                    "a-body",
                    "document",
                    "Notes",
                    &format!("{filler} limonene {filler}"),
                    &[],
                ),
                doc("b-title", "product", "Limonene oil", "citrus", &[]),
                doc("c-none", "product", "Lemon", "citrus peel", &[]),
            ],
            &[],
            1,
        )
        .unwrap();
        let hits = ix.search("limonene", &Filter::default(), 10).unwrap();
        assert_eq!(ids(&hits), ["b-title", "a-body"]);
        assert!(hits[0].score > hits[1].score);
    }

    #[test]
    fn snippets_mark_the_match() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(dir.path()).unwrap();
        let filler = "lorem ipsum dolor sit amet ".repeat(60);
        ix.apply(
            &[
                doc(
                    "long",
                    "document",
                    "Notes",
                    &format!("{filler}\nthe limonene\tcontent is 0.1%\n{filler}"),
                    &[],
                ),
                doc("title-only", "product", "Limonene oil", "citrus", &[]),
            ],
            &[],
            1,
        )
        .unwrap();
        let hits = ix.search("limonene", &Filter::default(), 10).unwrap();
        let snippet = |id: &str| hits.iter().find(|h| h.id == id).unwrap().snippet.clone();
        let long = snippet("long");
        assert!(long.contains("the [limonene]"), "{long}");
        assert!(long.len() < 200, "a fragment, not the body: {long}");
        assert!(!long.contains(['\n', '\t']), "one line: {long}");
        assert_eq!(
            snippet("title-only"),
            "[Limonene] oil",
            "falls back to the title"
        );
    }

    #[test]
    fn accents_and_case_are_folded() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(dir.path()).unwrap();
        ix.apply(
            &[doc(
                "p",
                "product",
                "Crème Hydratante",
                "GLYCÉRINE, Aqua",
                &[],
            )],
            &[],
            1,
        )
        .unwrap();
        assert_eq!(find(&ix, "creme"), ["p"]);
        assert_eq!(find(&ix, "glycerine"), ["p"]);
        assert_eq!(find(&ix, "Glycérine"), ["p"]);
        let hit = &ix.search("hydratante", &Filter::default(), 1).unwrap()[0];
        assert_eq!(hit.title, "Crème Hydratante", "stored text is unchanged");
    }

    #[test]
    fn empty_query_is_an_error() {
        let (_dir, ix) = with_catalogue();
        for empty in ["", " ", "\t\n  "] {
            assert!(matches!(
                ix.search(empty, &Filter::default(), 10),
                Err(Error::EmptyQuery)
            ));
            assert!(matches!(
                ix.search_ids(empty, &Filter::default(), 10),
                Err(Error::EmptyQuery)
            ));
        }
        assert!(Error::EmptyQuery
            .to_string()
            .contains("type at least one word"));
    }

    #[test]
    fn ties_are_ordered_by_id_across_segments_and_limit_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(dir.path()).unwrap();
        // 150 identical documents (equal scores), added in a scrambled order
        // over three commits so they sit in several segments.
        let mut order: Vec<usize> = (0..150).collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in (1..order.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        for (generation, chunk) in order.chunks(50).enumerate() {
            let docs: Vec<Doc> = chunk
                .iter()
                .map(|i| doc(&format!("d{i:03}"), "product", "Same", "same words", &[]))
                .collect();
            ix.apply(&docs, &[], generation as u64 + 1).unwrap();
        }
        let segments = ix.reader.searcher().segment_readers().len();
        assert!(segments > 1, "{segments} segments");
        let hits = ix.search("same", &Filter::default(), 1000).unwrap();
        assert_eq!(hits.len(), MAX_HITS, "limit capped");
        let expected: Vec<String> = (0..MAX_HITS).map(|i| format!("d{i:03}")).collect();
        assert_eq!(ids(&hits), expected, "equal scores come in id order");
        assert!(hits.windows(2).all(|w| w[0].score == w[1].score));
        let top3 = ix.search_ids("same", &Filter::default(), 3).unwrap();
        assert_eq!(
            top3.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
            ["d000", "d001", "d002"],
            "the cut-off keeps the smallest ids"
        );
        assert!(ix.search("same", &Filter::default(), 0).unwrap().is_empty());
    }

    #[test]
    fn search_ids_agrees_with_search() {
        let (_dir, ix) = with_catalogue();
        for q in ["salicylic acid", "hydrating serum", "69-72-7", "aqua"] {
            let full: Vec<(String, f32)> = ix
                .search(q, &Filter::default(), 10)
                .unwrap()
                .into_iter()
                .map(|h| (h.id, h.score))
                .collect();
            assert_eq!(
                ix.search_ids(q, &Filter::default(), 10).unwrap(),
                full,
                "{q}"
            );
        }
    }

    #[test]
    fn two_handles_share_one_index() {
        // As the command line does while `spoke serve` runs.
        let dir = tempfile::tempdir().unwrap();
        let mut server = Index::open(dir.path()).unwrap();
        let mut cli = Index::open(dir.path()).unwrap();
        cli.apply(
            &[doc("c1", "product", "Citrus toner", "limonene", &[])],
            &[],
            1,
        )
        .unwrap();
        server
            .apply(
                &[doc("s1", "product", "Lemon gel", "limonene", &[])],
                &[],
                2,
            )
            .unwrap();
        assert_eq!(find(&server, "limonene"), ["c1", "s1"]);
        assert_eq!(server.generation(), Some(2));
        assert_eq!(
            cli.generation(),
            Some(2),
            "the generation is read from disk"
        );
    }

    #[test]
    fn plain_queries_are_flattened_and_prunable() {
        let (_dir, ix) = with_catalogue();
        let shape = |q: &str| ix.parse(q).unwrap().shape();
        // One clause per word and field, each needing its one term.
        assert_eq!(shape("salicylic acid"), Some(vec![1, 1, 1, 1]));
        // A CAS number is a phrase per field, needing all three numbers.
        assert_eq!(shape("69-72-7"), Some(vec![3, 3]));
        assert_eq!(shape("aqua 69-72-7"), Some(vec![1, 1, 3, 3]));
        // Anything else runs as the parser made it.
        assert_eq!(shape("+aqua -shampoo"), None);
        assert_eq!(shape("aqua^3 serum"), None);
        assert_eq!(shape("title:[a TO m]"), None);
    }

    #[test]
    fn rewritten_queries_score_like_the_parser() {
        use tantivy::collector::TopDocs;
        // Several commits, so several segments, with words that occur in
        // some segments only and in titles only or bodies only.
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(dir.path()).unwrap();
        for (g, chunk) in catalogue().chunks(2).enumerate() {
            ix.apply(chunk, &[], g as u64 + 1).unwrap();
        }
        ix.apply(
            &[
                doc(
                    "x1",
                    "product",
                    "Serum serum",
                    "only title words above",
                    &[],
                ),
                doc(
                    "x2",
                    "product",
                    "Plain",
                    "aqua aqua aqua glycerin 69-72-7",
                    &[],
                ),
            ],
            &[],
            9,
        )
        .unwrap();
        let searcher = ix.reader.searcher();
        assert!(searcher.segment_readers().len() > 2);
        for q in [
            "salicylic acid",
            "aqua",
            "serum",
            "69-72-7",
            "aqua 69-72-7 shampoo",
            "hydrating serum report",
            "\"salicylic acid\"",
            "\"acid salicylic\"",
            "+aqua -shampoo",
            "aqua^3 serum",
            "title:serum body:aqua",
            "salicylic AND acid",
            "glycerin OR parfum",
            "(aqua glycerin) -sulfate",
            "*",
            "nowhere",
            "serum nowhere",
        ] {
            let (reference, _) = ix.boosted.parse_query_lenient(q);
            let mut expected: Vec<(String, f32)> = searcher
                .search(&*reference, &TopDocs::with_limit(100))
                .unwrap()
                .into_iter()
                .map(|(score, addr)| {
                    let d: TantivyDocument = searcher.doc(addr).unwrap();
                    (text_of(&d, ix.fields.id).to_string(), score)
                })
                .collect();
            expected.sort_by(|a, b| a.0.cmp(&b.0));
            let mut got = ix.search_ids(q, &Filter::default(), 100).unwrap();
            got.sort_by(|a, b| a.0.cmp(&b.0));
            let ids = |v: &[(String, f32)]| v.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
            assert_eq!(ids(&got), ids(&expected), "{q}");
            for (g, e) in got.iter().zip(&expected) {
                assert!((g.1 - e.1).abs() < 1e-4, "{q}: {} {} vs {}", g.0, g.1, e.1);
            }
        }
    }
}
