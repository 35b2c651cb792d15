//! From the user's text to a query tantivy can run fast.
//!
//! tantivy's query parser makes, for each word, an OR over title (boosted)
//! and body. Two things in that shape cost speed, not results:
//!
//! * The ORs are nested, one per word. A flat OR of term queries lets tantivy
//!   skip blocks of postings that cannot reach the top (block-WAND); a nested
//!   one does not. [`UserQuery::parse`] flattens plain ORs: the same matches
//!   and the same summed score.
//! * In a segment where one of the OR-ed terms does not occur at all (common:
//!   a body word that is in no title), tantivy's union falls back to visiting
//!   every matching document. [`UserQuery::collect`] leaves such terms out per
//!   segment; they would have added nothing to any score there.
//!
//! The second needs to know which terms each clause requires, which a
//! `BoostQuery` hides. So the text is parsed without the title boost and the
//! boost is put back here around each title term or phrase, exactly where the
//! parser would have put it. Anything else (user boosts, ranges, sets, ...)
//! is parsed by the boosting parser as it is, and run without the per-segment
//! step.

use crate::rank::{Found, TopById};
use std::cell::RefCell;
use std::collections::HashMap;
use tantivy::collector::Collector;
use tantivy::query::{
    AllQuery, Bm25StatisticsProvider, BooleanQuery, BoostQuery, EmptyQuery, EnableScoring, Occur,
    PhraseQuery, Query, QueryParser, TermQuery, Weight,
};
use tantivy::schema::Field;
use tantivy::{Searcher, Term};

/// The user's text as a query, and, when it is a plain OR, its clauses with
/// the terms each one needs in a segment to match anything there.
pub(crate) struct UserQuery {
    pub(crate) query: Box<dyn Query>,
    clauses: Option<Vec<Clause>>,
}

struct Clause {
    query: Box<dyn Query>,
    /// Terms that must all occur in a segment for this clause to match
    /// there; None when not known (the clause is always kept).
    needs: Option<Vec<Term>>,
}

impl UserQuery {
    /// Parses `text` leniently. `plain` has no field boosts; `boosted` boosts
    /// `title` by `boost`.
    pub(crate) fn parse(
        plain: &QueryParser,
        boosted: &QueryParser,
        title: Field,
        boost: f32,
        text: &str,
    ) -> UserQuery {
        let (parsed, _ignored) = plain.parse_query_lenient(text);
        match boost_title(&*parsed, title, boost) {
            Some(q) => {
                let query = flatten(q);
                let clauses = query
                    .downcast_ref::<BooleanQuery>()
                    .filter(|b| plain_union(b))
                    .map(|b| {
                        b.clauses()
                            .iter()
                            .map(|(_, q)| Clause {
                                needs: needs(&**q),
                                query: q.box_clone(),
                            })
                            .collect()
                    });
                UserQuery { query, clauses }
            }
            None => {
                let (parsed, _ignored) = boosted.parse_query_lenient(text);
                UserQuery {
                    query: flatten(parsed),
                    clauses: None,
                }
            }
        }
    }

    /// For tests: per clause of a prunable query, how many terms it needs.
    #[cfg(test)]
    pub(crate) fn shape(&self) -> Option<Vec<usize>> {
        self.clauses.as_ref().map(|cs| {
            cs.iter()
                .map(|c| c.needs.as_ref().map_or(0, Vec::len))
                .collect()
        })
    }

    /// Runs the query alone (no filter) segment by segment, leaving out of
    /// each segment the clauses that cannot match there.
    pub(crate) fn collect(
        &self,
        searcher: &Searcher,
        collector: &TopById,
    ) -> tantivy::Result<Vec<Found>> {
        let Some(clauses) = &self.clauses else {
            return searcher.search(&*self.query, collector);
        };
        let stats = CachedStats::new(searcher);
        let scoring = EnableScoring::enabled_from_statistics_provider(&stats, searcher);
        let mut full = None;
        let mut fruits = Vec::new();
        for (ord, reader) in searcher.segment_readers().iter().enumerate() {
            let mut here: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for c in clauses {
                let mut present = true;
                for t in c.needs.iter().flatten() {
                    if reader
                        .inverted_index(t.field())?
                        .get_term_info(t)?
                        .is_none()
                    {
                        present = false;
                        break;
                    }
                }
                if present {
                    here.push((Occur::Should, c.query.box_clone()));
                }
            }
            if here.is_empty() {
                continue;
            }
            let partial: Box<dyn Weight>;
            let weight: &dyn Weight = if here.len() == clauses.len() {
                if full.is_none() {
                    full = Some(self.query.weight(scoring)?);
                }
                match &full {
                    Some(w) => &**w,
                    None => continue,
                }
            } else {
                partial = BooleanQuery::new(here).weight(scoring)?;
                &*partial
            };
            fruits.push(collector.collect_segment(weight, ord as u32, reader)?);
        }
        collector.merge_fruits(fruits)
    }
}

/// `q` with every title term or phrase wrapped in a boost, as the boosting
/// parser would have made it; None for anything but boolean, term, phrase,
/// all and empty queries.
fn boost_title(q: &dyn Query, title: Field, boost: f32) -> Option<Box<dyn Query>> {
    if let Some(b) = q.downcast_ref::<BooleanQuery>() {
        let clauses = b
            .clauses()
            .iter()
            .map(|(occur, sub)| Some((*occur, boost_title(&**sub, title, boost)?)))
            .collect::<Option<Vec<_>>>()?;
        return Some(Box::new(BooleanQuery::with_minimum_required_clauses(
            clauses,
            b.get_minimum_number_should_match(),
        )));
    }
    let field = if let Some(t) = q.downcast_ref::<TermQuery>() {
        t.term().field()
    } else if let Some(p) = q.downcast_ref::<PhraseQuery>() {
        p.field()
    } else if q.is::<AllQuery>() || q.is::<EmptyQuery>() {
        return Some(q.box_clone());
    } else {
        return None;
    };
    Some(if field == title {
        Box::new(BoostQuery::new(q.box_clone(), boost))
    } else {
        q.box_clone()
    })
}

/// Terms a clause of [`boost_title`]'s output needs: all of a term's or a
/// phrase's (possibly boosted; those boosts wrap nothing else).
fn needs(q: &dyn Query) -> Option<Vec<Term>> {
    if !(q.is::<TermQuery>() || q.is::<PhraseQuery>() || q.is::<BoostQuery>()) {
        return None;
    }
    let mut terms = Vec::new();
    q.query_terms(&mut |t, _| terms.push(t.clone()));
    (!terms.is_empty()).then_some(terms)
}

/// Whether `q` only ORs its clauses (every clause optional, none required).
fn plain_union(q: &BooleanQuery) -> bool {
    q.get_minimum_number_should_match() <= 1
        && q.clauses().iter().all(|(occur, _)| *occur == Occur::Should)
}

/// Nested plain ORs as one flat OR of the same clauses.
pub(crate) fn flatten(q: Box<dyn Query>) -> Box<dyn Query> {
    fn leaves(q: &BooleanQuery, out: &mut Vec<(Occur, Box<dyn Query>)>) {
        for (_, sub) in q.clauses() {
            match sub.downcast_ref::<BooleanQuery>() {
                Some(inner) if plain_union(inner) => leaves(inner, out),
                _ => out.push((Occur::Should, sub.box_clone())),
            }
        }
    }
    match q.downcast_ref::<BooleanQuery>() {
        Some(b) if plain_union(b) => {
            let mut out = Vec::new();
            leaves(b, &mut out);
            Box::new(BooleanQuery::new(out))
        }
        _ => q,
    }
}

/// The searcher's BM25 statistics, each looked up once per search although
/// a weight is built per segment.
struct CachedStats<'a> {
    searcher: &'a Searcher,
    docs: RefCell<Option<u64>>,
    tokens: RefCell<HashMap<Field, u64>>,
    doc_freq: RefCell<HashMap<Term, u64>>,
}

impl<'a> CachedStats<'a> {
    fn new(searcher: &'a Searcher) -> Self {
        CachedStats {
            searcher,
            docs: RefCell::new(None),
            tokens: RefCell::new(HashMap::new()),
            doc_freq: RefCell::new(HashMap::new()),
        }
    }
}

impl Bm25StatisticsProvider for CachedStats<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        if let Some(n) = self.tokens.borrow().get(&field) {
            return Ok(*n);
        }
        let n = Bm25StatisticsProvider::total_num_tokens(self.searcher, field)?;
        self.tokens.borrow_mut().insert(field, n);
        Ok(n)
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        if let Some(n) = *self.docs.borrow() {
            return Ok(n);
        }
        let n = Bm25StatisticsProvider::total_num_docs(self.searcher)?;
        *self.docs.borrow_mut() = Some(n);
        Ok(n)
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        if let Some(n) = self.doc_freq.borrow().get(term) {
            return Ok(*n);
        }
        let n = Bm25StatisticsProvider::doc_freq(self.searcher, term)?;
        self.doc_freq.borrow_mut().insert(term.clone(), n);
        Ok(n)
    }
}
