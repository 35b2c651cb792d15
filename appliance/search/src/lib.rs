//! The spoke's full-text index over entities and document text: BM25
//! ranking (tantivy) with kind and tag filters and highlighted snippets.
//!
//! The index is derived data. SQLite is the source of truth; every commit
//! here carries the database generation it reflects (in tantivy's commit
//! payload), so the caller can tell at start whether the index is in step and
//! rebuild it when not. An index with another schema is wiped and recreated.
//!
//! Several processes may use one index (the command line while `spoke serve`
//! runs): the writer is taken only for the length of one commit, waiting its
//! turn if another process holds it, and readers follow commits made elsewhere.
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, Value, STORED, STRING, TEXT};
use tantivy::snippet::SnippetGenerator;
use tantivy::{IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

/// How long a commit waits for another process's writer before giving up.
const WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Most hits one search returns.
pub const MAX_HITS: usize = 100;
const WRITER_MEMORY: usize = 50_000_000;

/// The search index's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// tantivy failed.
    #[error("index at {path}: {source}")]
    Index {
        /// Index directory.
        path: PathBuf,
        /// Underlying error.
        source: tantivy::TantivyError,
    },
    /// The index directory could not be created or cleared.
    #[error("index directory {path}: {source}")]
    Io {
        /// Directory.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The query has no terms.
    #[error("the search query is empty; type at least one word")]
    EmptyQuery,
}

/// Something to index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Doc {
    /// Unique id (the caller's namespace, e.g. `entity:prod-1`).
    pub id: String,
    /// `product`, `substance`, `supplier` or `document`.
    pub kind: String,
    /// Title (ranked twice as high as the body).
    pub title: String,
    /// Body text.
    pub body: String,
    /// Exact-match tags for filtering, e.g. `market:EU`.
    pub tags: Vec<String>,
}

/// Restricts a search.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this kind.
    pub kind: Option<String>,
    /// All of these tags.
    pub tags: Vec<String>,
}

/// One result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The document's id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Its title.
    pub title: String,
    /// BM25 score.
    pub score: f32,
    /// A fragment of the body (or the title) with matched terms in `[` `]`.
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
    let mut b = Schema::builder();
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        kind: b.add_text_field("kind", STRING | STORED),
        title: b.add_text_field("title", TEXT | STORED),
        body: b.add_text_field("body", TEXT | STORED),
        tags: b.add_text_field("tags", STRING),
    };
    (b.build(), fields)
}

/// The full-text index in one directory.
pub struct Index {
    path: PathBuf,
    index: tantivy::Index,
    reader: IndexReader,
    fields: Fields,
    parser: QueryParser,
}

impl Index {
    /// Opens the index in `dir`, creating it (or recreating it if its schema differs).
    pub fn open(dir: &Path) -> Result<Index, Error> {
        let io = |source| Error::Io {
            path: dir.to_owned(),
            source,
        };
        let tv = |source| Error::Index {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let (schema, fields) = schema();
        let existing = tantivy::Index::open_in_dir(dir).ok();
        let index = match existing {
            Some(ix) if ix.schema() == schema => ix,
            other => {
                if other.is_some() {
                    tracing::warn!(
                        "search index at {} has another schema; recreating it",
                        dir.display()
                    );
                }
                std::fs::remove_dir_all(dir).map_err(io)?;
                std::fs::create_dir_all(dir).map_err(io)?;
                tantivy::Index::create_in_dir(dir, schema).map_err(tv)?
            }
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .try_into()
            .map_err(tv)?;
        let mut parser = QueryParser::for_index(&index, vec![fields.title, fields.body]);
        parser.set_field_boost(fields.title, 2.0);
        Ok(Index {
            path: dir.to_owned(),
            index,
            reader,
            fields,
            parser,
        })
    }

    fn tv(&self) -> impl Fn(tantivy::TantivyError) -> Error + '_ {
        move |source| Error::Index {
            path: self.path.clone(),
            source,
        }
    }

    /// The database generation of the last commit; None for a fresh index.
    pub fn generation(&self) -> Option<u64> {
        self.index
            .load_metas()
            .ok()?
            .payload
            .and_then(|p| p.parse().ok())
    }

    /// Takes the index writer, waiting while another process holds it.
    fn writer(&self) -> Result<IndexWriter<TantivyDocument>, Error> {
        let start = std::time::Instant::now();
        loop {
            match self.index.writer(WRITER_MEMORY) {
                Err(tantivy::TantivyError::LockFailure(..)) if start.elapsed() < WRITER_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other.map_err(self.tv()),
            }
        }
    }

    fn add(&self, writer: &IndexWriter<TantivyDocument>, d: &Doc) -> Result<(), Error> {
        let f = &self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_text(f.id, &d.id);
        doc.add_text(f.kind, &d.kind);
        doc.add_text(f.title, &d.title);
        doc.add_text(f.body, &d.body);
        for t in &d.tags {
            doc.add_text(f.tags, t);
        }
        writer.add_document(doc).map_err(self.tv())?;
        Ok(())
    }

    /// Commits with the generation as payload, releases the writer and makes
    /// the commit visible to this process's searches at once.
    fn commit(
        &self,
        mut writer: IndexWriter<TantivyDocument>,
        generation: u64,
    ) -> Result<(), Error> {
        let mut prepared = writer.prepare_commit().map_err(self.tv())?;
        prepared.set_payload(&generation.to_string());
        prepared.commit().map_err(self.tv())?;
        writer.wait_merging_threads().map_err(self.tv())?;
        self.reader.reload().map_err(self.tv())
    }

    /// Replaces `upserts` (by id), removes `deletes`, and commits as `generation`.
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
        for d in upserts {
            self.add(&writer, d)?;
        }
        self.commit(writer, generation)
    }

    /// Replaces the whole index with `docs`; returns how many were indexed.
    pub fn rebuild<I: IntoIterator<Item = Doc>>(
        &mut self,
        docs: I,
        generation: u64,
    ) -> Result<u64, Error> {
        let writer = self.writer()?;
        writer.delete_all_documents().map_err(self.tv())?;
        let mut n = 0;
        for d in docs {
            self.add(&writer, &d)?;
            n += 1;
        }
        self.commit(writer, generation)?;
        Ok(n)
    }

    /// Documents in the index.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The parsed user query and the filtered query to run.
    fn query(&self, query: &str, filter: &Filter) -> Result<(Box<dyn Query>, BooleanQuery), Error> {
        if query.trim().is_empty() {
            return Err(Error::EmptyQuery);
        }
        let f = &self.fields;
        let (text, _) = self.parser.parse_query_lenient(query);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, text.box_clone())];
        let exact = |field, value: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, value),
                IndexRecordOption::Basic,
            ))
        };
        if let Some(k) = &filter.kind {
            clauses.push((Occur::Must, exact(f.kind, k)));
        }
        for t in &filter.tags {
            clauses.push((Occur::Must, exact(f.tags, t)));
        }
        Ok((text, BooleanQuery::new(clauses)))
    }

    /// Ids and scores of the best matches, without loading stored fields
    /// beyond the id (for callers that only need ranking).
    pub fn search_ids(
        &self,
        query: &str,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<(String, f32)>, Error> {
        let (_, q) = self.query(query, filter)?;
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&q, &TopDocs::with_limit(limit.clamp(1, MAX_HITS)))
            .map_err(self.tv())?;
        top.into_iter()
            .map(|(score, addr)| {
                let doc: TantivyDocument = searcher.doc(addr).map_err(self.tv())?;
                let id = doc
                    .get_first(self.fields.id)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string();
                Ok((id, score))
            })
            .collect()
    }

    /// BM25 search over title and body; user text is parsed leniently, so
    /// stray punctuation never fails. Ties are broken by id.
    pub fn search(&self, query: &str, filter: &Filter, limit: usize) -> Result<Vec<Hit>, Error> {
        let f = &self.fields;
        let (text, query) = self.query(query, filter)?;
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&query, &TopDocs::with_limit(limit.clamp(1, MAX_HITS)))
            .map_err(self.tv())?;
        let body_snippets =
            SnippetGenerator::create(&searcher, &*text, f.body).map_err(self.tv())?;
        let title_snippets =
            SnippetGenerator::create(&searcher, &*text, f.title).map_err(self.tv())?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr).map_err(self.tv())?;
            let get = |field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let mut snippet = marked(&body_snippets.snippet_from_doc(&doc));
            if snippet.is_empty() {
                snippet = marked(&title_snippets.snippet_from_doc(&doc));
            }
            hits.push(Hit {
                id: get(f.id),
                kind: get(f.kind),
                title: get(f.title),
                score,
                snippet,
            });
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        Ok(hits)
    }
}

/// A snippet as one line of plain text with matches wrapped in `[` `]`.
fn marked(s: &tantivy::snippet::Snippet) -> String {
    let one_line = s.fragment().replace(['\n', '\r', '\t'], " ");
    let text = one_line.as_str();
    let mut out = String::with_capacity(text.len() + 8);
    let mut at = 0;
    for r in s.highlighted() {
        let (start, end) = (r.start, r.end);
        if start < at || end > text.len() {
            continue;
        }
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

    #[test]
    fn upsert_delete_filter_and_generation() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(dir.path()).unwrap();
        assert_eq!(ix.generation(), None);
        ix.apply(
            &[
                doc(
                    "p1",
                    "product",
                    "Hydrating serum",
                    "Aqua Salicylic acid 69-72-7",
                    &["market:EU", "category:leave_on"],
                ),
                doc(
                    "p2",
                    "product",
                    "Shampoo",
                    "Aqua Salicylic acid",
                    &["market:US"],
                ),
                doc(
                    "d1",
                    "document",
                    "cpsr.pdf",
                    "safety report for the hydrating serum",
                    &[],
                ),
            ],
            &[],
            1,
        )
        .unwrap();
        assert_eq!(ix.len(), 3);
        let all = ix.search("salicylic", &Filter::default(), 10).unwrap();
        assert_eq!(all.len(), 2);
        let eu = Filter {
            kind: Some("product".into()),
            tags: vec!["market:EU".into()],
        };
        assert_eq!(ids(&ix.search("salicylic", &eu, 10).unwrap()), ["p1"]);
        assert_eq!(
            ids(&ix
                .search(
                    "serum",
                    &Filter {
                        kind: Some("document".into()),
                        tags: vec![]
                    },
                    10
                )
                .unwrap()),
            ["d1"]
        );
        // CAS numbers are found as phrases.
        assert_eq!(
            ids(&ix.search("69-72-7", &Filter::default(), 10).unwrap()),
            ["p1"]
        );
        // Replacing by id does not duplicate; deleting removes.
        ix.apply(
            &[doc("p1", "product", "Hydrating serum v2", "Aqua", &[])],
            &["p2".into()],
            2,
        )
        .unwrap();
        assert_eq!(ix.len(), 2);
        assert!(ix
            .search("salicylic", &Filter::default(), 10)
            .unwrap()
            .is_empty());
        drop(ix);
        let mut ix = Index::open(dir.path()).unwrap();
        assert_eq!(ix.generation(), Some(2), "generation survives reopening");
        assert_eq!(
            ix.rebuild(vec![doc("x", "supplier", "Acme", "raw materials", &[])], 7)
                .unwrap(),
            1
        );
        assert_eq!(ix.len(), 1);
        assert_eq!(ix.generation(), Some(7));
    }

    #[test]
    fn ranking_snippets_and_odd_queries() {
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
            ],
            &[],
            1,
        )
        .unwrap();
        let hits = ix.search("limonene", &Filter::default(), 10).unwrap();
        assert_eq!(ids(&hits), ["b-title", "a-body"]);
        assert!(
            hits[1].snippet.contains("[limonene]"),
            "{}",
            hits[1].snippet
        );
        assert!(
            hits[0].snippet.contains("[Limonene]"),
            "{}",
            hits[0].snippet
        );
        for odd in ["\"unbalanced", "limonene AND (", "title:", "+-*&^%"] {
            ix.search(odd, &Filter::default(), 10).unwrap();
        }
        assert!(matches!(
            ix.search("  ", &Filter::default(), 10),
            Err(Error::EmptyQuery)
        ));
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
        assert_eq!(
            server
                .search("limonene", &Filter::default(), 10)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn other_schema_is_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Schema::builder();
        b.add_text_field("something_else", TEXT);
        tantivy::Index::create_in_dir(dir.path(), b.build()).unwrap();
        let ix = Index::open(dir.path()).unwrap();
        assert_eq!(ix.generation(), None);
        assert!(ix.is_empty());
    }
}
