//! The extractive answer: the sentences of the retrieved passages that
//! answer a question, to be quoted verbatim with where they lie.
//! Deterministic and model-free; it also decides when the passages do not
//! answer the question at all.
//!
//! A sentence answers when it holds the question's words, weighted by how
//! rare each is among the sentences given (so a product name in every
//! heading counts for little, and a word no sentence has counts for much),
//! and a fact of the kind asked for (a number for "how much", a date for
//! "when", a name for "who" or "which") that the question does not already
//! state. Words match by their Snowball stems. A table row is quoted with
//! its table's heading line, without which its numbers mean nothing.

use crate::support::{content_words, facts, occurs, question_facts, sentence_spans, tabular, Fact};
use rust_stemmers::{Algorithm, Stemmer};
use std::collections::HashSet;
use std::sync::LazyLock;

/// Weighted share of the question's words the best sentence must hold to
/// count as answering it; below it the answer is that the documents do not
/// say. Chosen on the held-out evaluation (`docs/benchmarks.md` says how).
pub const RELEVANCE: f64 = 0.35;
/// Most sentences quoted (a table heading comes on top).
const MAX_QUOTES: usize = 2;
/// How much holding a fact of the kind asked for adds to a sentence's score.
const WANTED_FACT: f64 = 0.35;
/// How much the sentence's passage as a whole counts.
const PASSAGE_WEIGHT: f64 = 0.25;
/// How much it counts that the passage's document states the names and
/// numbers the question does.
const SCOPE_WEIGHT: f64 = 0.5;
/// How much closeness in meaning (the embedding model's cosine) counts.
const SIMILARITY_WEIGHT: f64 = 1.0;

/// A sentence to quote: which passage (index into the passages given) and
/// its byte range within that passage's text.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    /// Index of the passage.
    pub passage: usize,
    /// Start of the sentence in the passage's text (bytes).
    pub start: usize,
    /// End of it.
    pub end: usize,
    /// How well it answers (higher is better; a table heading has its
    /// row's score).
    pub score: f64,
}

/// The kind of fact a question asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// A number: a concentration, a limit, a count, a measured value.
    Value,
    /// A date.
    Date,
    /// A CAS number.
    Cas,
    /// A name: a substance, a laboratory, a person, a company.
    Name,
    /// A person or an organisation.
    Party,
    /// Anything (a yes/no or open question).
    Any,
}

/// Whether `phrase` occurs in `q` (lower case) as whole words.
fn has_phrase(q: &str, phrase: &str) -> bool {
    q.match_indices(phrase).any(|(i, _)| {
        let before = q[..i].chars().next_back();
        let after = q[i + phrase.len()..].chars().next();
        before.is_none_or(|c| !c.is_alphanumeric()) && after.is_none_or(|c| !c.is_alphanumeric())
    })
}

/// Whether `q` asks "how" with an adjective ("how viscous", "how
/// acidic"): a measure.
fn how_adjective(q: &str) -> bool {
    const NOT: &[&str] = &[
        "do", "does", "did", "is", "are", "was", "were", "can", "could", "should", "will", "would",
        "to", "we", "the", "it", "has", "have",
    ];
    let words: Vec<&str> = q
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .any(|w| w[0] == "how" && !NOT.contains(&w[1]))
}

impl Wanted {
    /// What `question` asks for, from its question words.
    pub fn of(question: &str) -> Wanted {
        let q = question.to_lowercase();
        let any = |phrases: &[&str]| phrases.iter().any(|p| has_phrase(&q, p));
        if has_phrase(&q, "cas") {
            Wanted::Cas
        } else if any(&[
            "when",
            "what date",
            "which date",
            "date",
            "expiry",
            "expire",
        ]) {
            Wanted::Date
        } else if any(&[
            "how much",
            "how many",
            "how long",
            "how high",
            "how low",
            "concentration",
            "percentage",
            "percent",
            "limit",
            "maximum",
            "minimum",
            "level",
            "amount",
            "number",
            "value",
            "ph",
            "dose",
            "viscosity",
            "temperature",
            "flash point",
            "reduction",
            "margin",
            "size",
            "spf",
            "ppm",
            "what %",
        ]) || how_adjective(&q)
        {
            Wanted::Value
        } else if any(&[
            "who",
            "whom",
            "which lab",
            "which laboratory",
            "which company",
            "what company",
            "which supplier",
            "which manufacturer",
        ]) {
            Wanted::Party
        } else if any(&["which", "what substance", "name"]) {
            Wanted::Name
        } else {
            Wanted::Any
        }
    }

    /// Whether the answer to such a question should be quoted from the
    /// document rather than put in the model's words.
    pub fn is_specific(self) -> bool {
        self != Wanted::Any
    }

    fn matches(self, fact: &Fact) -> bool {
        match self {
            // A long bare integer is an identifier (an article or order
            // number), not a value.
            Wanted::Value => matches!(fact, Fact::Number { value, unit }
                if unit.is_some() || value.contains('.') || value.len() < 5),
            Wanted::Date => matches!(fact, Fact::Date(_)),
            Wanted::Cas => matches!(fact, Fact::Cas(_)),
            Wanted::Name | Wanted::Party => matches!(fact, Fact::Name(_)),
            Wanted::Any => false,
        }
    }
}

/// Words after which a number names a document, not a value (`ISO 11930`,
/// `Regulation (EC) No 1223/2009`, `PO 4500078812`).
const REFERENCES: &[&str] = &[
    "iso",
    "en",
    "din",
    "oecd",
    "astm",
    "regulation",
    "directive",
    "no",
    "nr",
    "ref",
    "report",
    "po",
    "article",
];

/// `text` with each number that follows a reference word blanked (so it
/// is not taken for a value), the same length.
fn without_references(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut after_reference = false;
    let mut at = 0;
    for (start, word) in text
        .split_whitespace()
        .map(|w| (w.as_ptr() as usize - text.as_ptr() as usize, w))
    {
        out.push_str(&text[at..start]);
        let bare = word
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase();
        if after_reference && word.starts_with(|c: char| c.is_ascii_digit()) {
            out.extend(std::iter::repeat_n(' ', word.len()));
        } else {
            out.push_str(word);
        }
        after_reference =
            REFERENCES.contains(&bare.as_str()) || (after_reference && word.starts_with('('));
        at = start + word.len();
    }
    out.push_str(&text[at..]);
    out
}

/// Words that end the name of an organisation.
const LEGAL_FORMS: &[&str] = &[
    "gmbh",
    "ag",
    "ltd",
    "limited",
    "sarl",
    "sas",
    "sa",
    "s.a",
    "s.l",
    "sl",
    "b.v",
    "bv",
    "inc",
    "llc",
    "plc",
    "kg",
    "srl",
    "s.r.l",
    "spa",
    "oy",
    "ab",
    "laboratoires",
    "laboratories",
    "laboratory",
    "labs",
    "institute",
];
/// Titles before a person's name.
const TITLES: &[&str] = &["dr", "prof", "mr", "mrs", "ms"];

/// The people and organisations `text` names that `question` does not: a
/// name after a title (`Dr. Anna Keller`), two capitalised words in a row
/// (`Jonas Becker`), or words ending in a legal form (`Lumeris Minerals
/// B.V.`, `MICROSAFE LABORATOIRES SARL`).
pub fn parties(text: &str, question: &str) -> Vec<String> {
    let q = question.to_lowercase();
    let raw: Vec<&str> = text.split_whitespace().collect();
    let words: Vec<&str> = raw
        .iter()
        .map(|w| w.trim_matches(|c: char| matches!(c, ',' | ';' | ':' | '(' | ')')))
        .collect();
    // A pair of words is one name only when no punctuation parts them.
    let joined = |i: usize| !raw[i].ends_with([',', ';', ':', ')']);
    let bare = |w: &str| w.trim_end_matches('.').to_lowercase();
    let capital = |w: &str| {
        let mut c = w.chars();
        c.next().is_some_and(char::is_uppercase)
            && w.chars().filter(|c| c.is_alphabetic()).count() >= 2
            && !crate::support::is_stopword(w)
    };
    let new = |w: &str| !q.contains(&bare(w));
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let next = words.get(i + 1).copied();
        if TITLES.contains(&bare(w).as_str()) && next.is_some_and(|n| capital(n) && new(n)) {
            out.push(format!("{w} {}", next.unwrap_or_default()));
        } else if i > 0
            && joined(i - 1)
            && LEGAL_FORMS.contains(&bare(w).as_str())
            && capital(words[i - 1])
        {
            if new(words[i - 1]) {
                out.push(format!("{} {w}", words[i - 1]));
            }
        } else if let Some(n) = next {
            let proper = |w: &str| capital(w) && w.chars().skip(1).all(|c| !c.is_uppercase());
            if joined(i) && proper(w) && proper(n) && new(w) && new(n) && !n.ends_with('.') {
                out.push(format!("{w} {n}"));
            }
        }
    }
    out
}

static STEMMER: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::English));

/// Words that frame a question rather than name what it is about (the kind
/// of fact asked for is [`Wanted`]'s business).
const FRAME: &[&str] = &[
    "concentration",
    "amount",
    "level",
    "value",
    "number",
    "percentage",
    "percent",
    "quantity",
    "much",
    "many",
    "contain",
    "contains",
    "containing",
    "include",
    "includes",
    "present",
    "list",
    "listed",
    "give",
    "given",
    "state",
    "stated",
    "mention",
    "mentioned",
    "say",
    "says",
    "tell",
    "show",
    "shows",
    "find",
    "found",
    "report",
    "reported",
    "exactly",
    "please",
];

/// The stemmed content words of `text`, without repeats.
fn terms(text: &str) -> HashSet<String> {
    content_words(text)
        .iter()
        .map(|w| STEMMER.stem(w).into_owned())
        .collect()
}

/// The stemmed words of the names a question gives its subject by (the
/// product, company or batch it is about): capitalised words past the
/// first, and words with digits. The rest is what it asks about the
/// subject, which the answering sentence must hold; the subject may be
/// named anywhere in its document.
fn subject_terms(question: &str) -> HashSet<String> {
    question
        .split(|c: char| c.is_whitespace() || matches!(c, '?' | ',' | '(' | ')' | '"'))
        .filter(|w| !w.is_empty())
        .enumerate()
        .filter(|(i, w)| {
            let capitals = w.chars().filter(|c| c.is_uppercase()).count();
            (capitals > 0 && *i > 0) || capitals > 1 || w.chars().any(|c| c.is_ascii_digit())
        })
        .flat_map(|(_, w)| terms(w))
        .collect()
}

/// The stemmed words a question is about: its content words less those
/// that only frame it.
fn question_terms(question: &str) -> HashSet<String> {
    content_words(question)
        .iter()
        .filter(|w| !FRAME.contains(&w.as_str()))
        .map(|w| STEMMER.stem(w).into_owned())
        .collect()
}

/// The heading line of the table a row at `start` belongs to: the first
/// line of the run of table lines it is in, if that is not the row itself.
fn table_heading(passage: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    if !tabular(&passage[start..end]) {
        return None;
    }
    let mut heading = None;
    let mut line_start = passage[..start].rfind('\n')?;
    loop {
        let prev_start = passage[..line_start].rfind('\n').map_or(0, |i| i + 1);
        let line = &passage[prev_start..line_start];
        if line.trim().is_empty() || !tabular(line) {
            break;
        }
        heading = Some((prev_start, line_start));
        if prev_start == 0 {
            break;
        }
        line_start = prev_start - 1;
    }
    let (s, e) = heading?;
    let line = &passage[s..e];
    let lead = line.len() - line.trim_start().len();
    Some((s + lead, s + line.trim_end().len()))
}

/// A sentence of one of the passages given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Index of the passage.
    pub passage: usize,
    /// Start in the passage's text (bytes).
    pub start: usize,
    /// End of it.
    pub end: usize,
}

/// Every sentence of `passages`, in order: what [`quotes`] chooses from.
pub fn sentences(passages: &[&str]) -> Vec<Span> {
    passages
        .iter()
        .enumerate()
        .flat_map(|(passage, p)| {
            sentence_spans(p).into_iter().map(move |(start, end)| Span {
                passage,
                start,
                end,
            })
        })
        .collect()
}

/// The text that stands for a sentence when comparing meanings: a table
/// row with its table's heading, any other sentence as it is.
pub fn context(passages: &[&str], s: &Span) -> String {
    let p = passages[s.passage];
    let sentence = &p[s.start..s.end];
    match table_heading(p, s.start, s.end) {
        Some((hs, he)) => format!("{} | {sentence}", &p[hs..he]),
        None => sentence.to_string(),
    }
}

/// The sentences of `passages` (best first, as retrieval ranked them) that
/// answer `question`, in document order; empty when none answers it.
/// `similarity`, when given, is how close in meaning each of
/// [`sentences`] (in its order) is to the question (cosine, -1 to 1).
/// `scopes[i]`, when given, is what passage `i` speaks within (all given
/// passages of its document and the document's name): the names and
/// numbers a question states must be there for the passage to answer it.
pub fn quotes(
    question: &str,
    passages: &[&str],
    scopes: &[String],
    similarity: Option<&[f32]>,
) -> Vec<Quote> {
    let q = question_terms(question);
    if q.is_empty() {
        return Vec::new();
    }
    let wanted = Wanted::of(question);
    let asked: Vec<Fact> = question_facts(question);
    // A name, number or identifier the question states that no passage
    // does means the passages are about something else: no answer. Each
    // passage counts by how many of them its document states.
    let stated: Vec<Vec<bool>> = passages
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let scope = scopes.get(i).map_or(*p, String::as_str);
            let (known, lower) = (facts(scope), scope.to_lowercase());
            asked.iter().map(|f| occurs(f, &known, &lower)).collect()
        })
        .collect();
    if let Some(f) = (0..asked.len()).find(|&f| stated.iter().all(|s| !s[f])) {
        tracing::debug!(question, missing = ?asked[f], "no passage states it");
        return Vec::new();
    }
    let in_scope: Vec<f64> = stated
        .iter()
        .map(|s| match s.len() {
            0 => 1.0,
            n => s.iter().filter(|x| **x).count() as f64 / n as f64,
        })
        .collect();
    struct Sentence {
        span: Span,
        terms: HashSet<String>,
        context_terms: HashSet<String>,
        wanted: bool,
        similarity: f64,
    }
    let sentences: Vec<Sentence> = sentences(passages)
        .into_iter()
        .enumerate()
        .map(|(i, span)| {
            let text = &passages[span.passage][span.start..span.end];
            Sentence {
                span,
                terms: terms(text),
                context_terms: terms(&context(passages, &span)),
                wanted: match wanted {
                    Wanted::Party => !parties(text, question).is_empty(),
                    _ => facts(&without_references(text))
                        .iter()
                        .any(|f| wanted.matches(f) && !asked.contains(f)),
                },
                similarity: similarity
                    .and_then(|s| s.get(i))
                    .map_or(0.0, |&x| f64::from(x)),
            }
        })
        .collect();
    // A word's weight: how rare it is among the sentences given.
    let n = sentences.len() as f64;
    let weight = |t: &String| {
        let df = sentences.iter().filter(|s| s.terms.contains(t)).count() as f64;
        (1.0 + n / (1.0 + df)).ln()
    };
    let weights: Vec<(&String, f64)> = q.iter().map(|t| (t, weight(t))).collect();
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    let cover = |have: &dyn Fn(&String) -> bool| {
        weights
            .iter()
            .filter(|(t, _)| have(t))
            .map(|(_, w)| w)
            .sum::<f64>()
            / total
    };
    // What the question asks about its subject, weighted the same way.
    let subject = subject_terms(question);
    let focus: Vec<(&String, f64)> = match weights
        .iter()
        .filter(|(t, _)| !subject.contains(*t))
        .copied()
        .collect::<Vec<_>>()
    {
        f if f.is_empty() => weights.clone(),
        f => f,
    };
    let focus_total: f64 = focus.iter().map(|(_, w)| w).sum();
    let asks = |have: &HashSet<String>| {
        focus
            .iter()
            .filter(|(t, _)| have.contains(*t))
            .map(|(_, w)| w)
            .sum::<f64>()
            / focus_total
    };
    let passage_cover: Vec<f64> = (0..passages.len())
        .map(|i| {
            cover(&|t| {
                sentences
                    .iter()
                    .any(|s| s.span.passage == i && s.terms.contains(t))
            })
        })
        .collect();
    let mut found: Vec<(f64, f64, &Sentence)> = sentences
        .iter()
        .map(|s| {
            let own = asks(&s.context_terms);
            let fact = if s.wanted { WANTED_FACT } else { 0.0 };
            (
                own + fact
                    + PASSAGE_WEIGHT * passage_cover[s.span.passage]
                    + SCOPE_WEIGHT * in_scope[s.span.passage]
                    + SIMILARITY_WEIGHT * s.similarity,
                own,
                s,
            )
        })
        .filter(|(_, own, s)| *own > 0.0 || s.similarity > 0.0)
        .collect();
    // For a specific question a sentence holding a fact of the kind asked
    // for answers before any that only repeats the question's words.
    if wanted.is_specific() && found.iter().any(|(_, _, s)| s.wanted) {
        found.retain(|(_, _, s)| s.wanted);
    }
    found.sort_by(|a, b| {
        b.0.total_cmp(&a.0).then_with(|| {
            (a.2.span.passage, a.2.span.start).cmp(&(b.2.span.passage, b.2.span.start))
        })
    });
    for (score, own, s) in found.iter().take(4) {
        let text = &passages[s.span.passage][s.span.start..s.span.end];
        tracing::trace!(
            score,
            own,
            similarity = s.similarity,
            wanted = s.wanted,
            text,
            "candidate"
        );
    }
    let Some(&(top_score, top_own, top)) = found.first() else {
        return Vec::new();
    };
    // Relevance counts the sentence with its passage (a row's words may
    // sit in its table's heading) and, when known, its meaning.
    let lexical = top_own.max(passage_cover[top.span.passage] * 0.8);
    let relevance = match similarity {
        Some(_) => (lexical + top.similarity) / 2.0,
        None => lexical,
    };
    tracing::debug!(
        question,
        relevance,
        lexical,
        similarity = top.similarity,
        "best sentence"
    );
    if relevance < RELEVANCE || (wanted.is_specific() && !top.wanted && top_own < RELEVANCE) {
        return Vec::new();
    }
    let mut picked: Vec<(usize, usize, f64)> = vec![(top.span.start, top.span.end, top_score)];
    picked.extend(
        found
            .iter()
            .skip(1)
            .filter(|(score, _, s)| {
                s.span.passage == top.span.passage
                    && *score >= 0.85 * top_score
                    && (!wanted.is_specific() || s.wanted)
            })
            .take(MAX_QUOTES - 1)
            .map(|(score, _, s)| (s.span.start, s.span.end, *score)),
    );
    let text = passages[top.span.passage];
    let headings: Vec<(usize, usize, f64)> = picked
        .iter()
        .filter_map(|&(s, e, score)| table_heading(text, s, e).map(|(hs, he)| (hs, he, score)))
        .collect();
    picked.extend(headings);
    picked.sort_by_key(|&(s, _, _)| s);
    picked.dedup_by_key(|&mut (s, _, _)| s);
    picked
        .into_iter()
        .map(|(start, end, score)| Quote {
            passage: top.span.passage,
            start,
            end,
            score,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERUM: &str = "Hydra Serum, safety assessment. The product is a leave-on serum. \
        Preservatives: phenoxyethanol at 0.8 % and sodium benzoate at 0.3 %. \
        The assessor found the serum safe for use.";
    const BALM: &str = "Mystery Balm, safety assessment. The fragrance is supplied by Aroma \
        GmbH. The balm contains beeswax.";
    const TABLE: &str = "Composition of the Glow Cream\n\
        INCI name          CAS        % w/w\n\
        Aqua               7732-18-5  78.20\n\
        Phenoxyethanol     122-99-6   0.90\n\
        \n\
        The formula was frozen on 2025-04-02.";

    fn quoted<'a>(question: &str, passages: &[&'a str]) -> Vec<&'a str> {
        quotes(question, passages, &[], None)
            .into_iter()
            .map(|q| &passages[q.passage][q.start..q.end])
            .collect()
    }

    #[test]
    fn a_value_question_quotes_the_sentence_with_the_value() {
        assert_eq!(
            quoted(
                "What concentration of preservatives does the Hydra Serum contain?",
                &[BALM, SERUM]
            ),
            ["Preservatives: phenoxyethanol at 0.8 % and sodium benzoate at 0.3 %."]
        );
    }

    #[test]
    fn the_quote_is_the_exact_range_of_the_passage() {
        let q = quotes(
            "Who supplies the fragrance of the Mystery Balm?",
            &[SERUM, BALM],
            &[],
            None,
        );
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!(q[0].passage, 1);
        assert_eq!(
            &BALM[q[0].start..q[0].end],
            "The fragrance is supplied by Aroma GmbH."
        );
    }

    #[test]
    fn a_table_row_is_quoted_with_its_heading() {
        assert_eq!(
            quoted(
                "How much phenoxyethanol is in the Glow Cream?",
                &[SERUM, TABLE]
            ),
            [
                "INCI name          CAS        % w/w",
                "Phenoxyethanol     122-99-6   0.90"
            ]
        );
        assert_eq!(
            quoted("When was the Glow Cream formula frozen?", &[TABLE]),
            ["The formula was frozen on 2025-04-02."]
        );
    }

    #[test]
    fn a_question_the_passages_do_not_answer_gets_no_quote() {
        assert!(quotes(
            "What is the SPF of the sunscreen lotion tested in Lyon?",
            &[SERUM, BALM],
            &[],
            None
        )
        .is_empty());
        assert!(quotes("?", &[SERUM], &[], None).is_empty());
        assert!(quotes("Hydra Serum preservatives", &[], &[], None).is_empty());
    }

    #[test]
    fn numbers_of_standards_and_orders_are_not_values() {
        let t =
            "Challenge test according to ISO 11930:2019, Regulation (EC) No 1223/2009, at 0.8 %";
        let cleaned = without_references(t);
        assert_eq!(cleaned.len(), t.len());
        assert!(
            !cleaned.contains("11930") && !cleaned.contains("1223"),
            "{cleaned}"
        );
        assert!(cleaned.ends_with("at 0.8 %"));
    }

    #[test]
    fn people_and_organisations_are_told_from_other_capitals() {
        let q = "Who approved the Glow Cream report?";
        assert_eq!(
            parties("Approved by: Jonas Becker, Head of R&D", q),
            ["Jonas Becker"]
        );
        for named in [
            "Safety assessor: Dr. Henrik Aaltonen, PhD",
            "1.3 Supplier: Lumeris Minerals B.V.",
            "MICROSAFE LABORATOIRES SARL, Lyon",
        ] {
            assert!(!parties(named, q).is_empty(), "{named}");
        }
        assert!(parties("Glow Cream batch GC-250612 is stable.", q).is_empty());
        assert!(parties("SAFETY DATA SHEET", q).is_empty());
    }

    #[test]
    fn what_a_question_asks_for_is_recognised() {
        assert_eq!(
            Wanted::of("What is the salicylic acid limit?"),
            Wanted::Value
        );
        assert_eq!(
            Wanted::of("How much phenoxyethanol is in it?"),
            Wanted::Value
        );
        assert_eq!(Wanted::of("When was it assessed?"), Wanted::Date);
        assert_eq!(
            Wanted::of("What is the CAS number of linalool?"),
            Wanted::Cas
        );
        assert_eq!(Wanted::of("Who supplies the fragrance?"), Wanted::Party);
        assert_eq!(Wanted::of("Which lab did the test?"), Wanted::Party);
        assert_eq!(Wanted::of("Which solvent is used?"), Wanted::Name);
        assert_eq!(
            Wanted::of("Is the phial sealed?"),
            Wanted::Any,
            "ph inside a word"
        );
        assert_eq!(Wanted::of("How viscous is the dispersion?"), Wanted::Value);
        assert_eq!(Wanted::of("How does it feel?"), Wanted::Any);
    }
}
