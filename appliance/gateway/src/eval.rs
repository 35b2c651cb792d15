//! Scoring of the held-out answer evaluation (`appliance/gateway/eval`,
//! run by the `ask-eval` binary): a question set with the facts a right
//! answer holds and the document it rests on, and the measures reported in
//! `docs/benchmarks.md`. The scoring re-checks what was shown with its own
//! plain rules (numbers by their digits, quotes by their text), not with
//! the gateway's checker, so a checker bug shows up as an unsupported
//! statement instead of hiding.

use crate::{Answer, Kind};
use serde::{Deserialize, Serialize};

/// One question of the set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// Stable id (`q01`).
    pub id: String,
    /// As a user would ask it.
    pub question: String,
    /// Whether some document answers it.
    pub answerable: bool,
    /// The file that holds the answer (None when unanswerable).
    pub document: Option<String>,
    /// Facts a right answer holds, as the document writes them.
    pub expect: Vec<String>,
    /// Why the question is there.
    #[serde(default)]
    pub note: Option<String>,
}

/// How one answer scored.
#[derive(Debug, Clone, Serialize)]
pub struct Scored {
    /// The question's id.
    pub id: String,
    /// The answer holds every expected fact (answerable), or says the
    /// documents do not say (unanswerable).
    pub correct: bool,
    /// The first statement's first citation is the expected document.
    pub right_citation: bool,
    /// A passage retrieved holds every expected fact.
    pub retrieved: bool,
    /// The answer says the documents do not say.
    pub refused: bool,
    /// Shown statements that the plain re-check finds unsupported.
    pub unsupported: Vec<String>,
    /// Milliseconds the answer took.
    pub millis: u128,
    /// The answer as shown.
    pub answer: String,
}

/// For comparing facts: lower case, no whitespace, decimal comma as point.
pub fn normal(text: &str) -> String {
    let chars: Vec<char> = text.to_lowercase().chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_whitespace() {
            continue;
        }
        let between_digits = i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit());
        out.push(if c == ',' && between_digits { '.' } else { c });
    }
    out
}

/// The numbers written in `text` (digits with inner `.` or `,`), normalised.
fn numbers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let inner = matches!(c, '.' | ',')
            && !cur.is_empty()
            && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit());
        if c.is_ascii_digit() || inner {
            cur.push(if c == ',' { '.' } else { c });
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The statements of `answer` that the plain re-check does not find in the
/// passages they cite: a quote or record line must be their text verbatim
/// at its offsets; a generated statement's every number must be written in
/// them.
pub fn unsupported(answer: &Answer) -> Vec<String> {
    let cited = |ns: &[usize]| -> Vec<&appliance::ai::Retrieved> {
        ns.iter()
            .filter_map(|n| answer.citations.iter().find(|c| c.n == *n))
            .map(|c| &c.passage)
            .collect()
    };
    answer
        .statements
        .iter()
        .filter(|s| {
            let passages = cited(&s.citations);
            match s.kind {
                Kind::None => false,
                Kind::Quoted | Kind::Record => {
                    let Some(o) = &s.offsets else { return true };
                    !passages.iter().any(|p| {
                        o.document == p.document
                            && o.start >= p.start
                            && p.text.get(o.start - p.start..o.end - p.start) == Some(&s.text)
                    })
                }
                Kind::Generated => {
                    let known: Vec<String> =
                        passages.iter().flat_map(|p| numbers(&p.text)).collect();
                    passages.is_empty() || numbers(&s.text).iter().any(|n| !known.contains(n))
                }
            }
        })
        .map(|s| s.text.clone())
        .collect()
}

/// Scores `answer` to `q`, which took `millis`.
pub fn score(q: &Question, answer: &Answer, millis: u128) -> Scored {
    let refused = answer.statements.iter().all(|s| s.kind == Kind::None);
    let shown = normal(
        &answer
            .statements
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" "),
    );
    let filename = |n: usize| {
        answer
            .citations
            .iter()
            .find(|c| c.n == n)
            .map(|c| c.passage.filename.as_str())
    };
    let first = answer
        .statements
        .first()
        .and_then(|s| s.citations.first())
        .and_then(|&n| filename(n));
    let expected = q.document.as_deref();
    Scored {
        id: q.id.clone(),
        correct: if q.answerable {
            !refused && q.expect.iter().all(|e| shown.contains(&normal(e)))
        } else {
            refused
        },
        right_citation: expected.is_some() && first == expected,
        retrieved: q.answerable
            && answer.citations.iter().any(|c| {
                let text = normal(&c.passage.text);
                q.expect.iter().all(|e| text.contains(&normal(e)))
            }),
        refused,
        unsupported: unsupported(answer),
        millis,
        answer: answer.answer.clone(),
    }
}

/// The summary of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Answerable questions.
    pub answerable: usize,
    /// Of them, answered with every expected fact.
    pub correct: usize,
    /// Of them, whose first citation is the expected document.
    pub right_citation: usize,
    /// Of them, with a passage retrieved that holds every expected fact.
    pub retrieved: usize,
    /// Of them, refused.
    pub refused_answerable: usize,
    /// Unanswerable questions.
    pub unanswerable: usize,
    /// Of them, refused.
    pub refused_unanswerable: usize,
    /// Statements shown that the re-check finds unsupported, all questions.
    pub unsupported_shown: usize,
    /// Median milliseconds per answer.
    pub p50_ms: u128,
    /// 95th percentile.
    pub p95_ms: u128,
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Sums up `results` of `questions` (in the same order).
pub fn summary(questions: &[Question], results: &[Scored]) -> Summary {
    let pairs = || questions.iter().zip(results);
    let answerable = || pairs().filter(|(q, _)| q.answerable).map(|(_, r)| r);
    let unanswerable = || pairs().filter(|(q, _)| !q.answerable).map(|(_, r)| r);
    let mut ms: Vec<u128> = results.iter().map(|r| r.millis).collect();
    ms.sort_unstable();
    Summary {
        answerable: answerable().count(),
        correct: answerable().filter(|r| r.correct).count(),
        right_citation: answerable().filter(|r| r.right_citation).count(),
        retrieved: answerable().filter(|r| r.retrieved).count(),
        refused_answerable: answerable().filter(|r| r.refused).count(),
        unanswerable: unanswerable().count(),
        refused_unanswerable: unanswerable().filter(|r| r.refused).count(),
        unsupported_shown: results.iter().map(|r| r.unsupported.len()).sum(),
        p50_ms: percentile(&ms, 0.5),
        p95_ms: percentile(&ms, 0.95),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_compare_without_case_spaces_or_decimal_commas() {
        assert_eq!(normal("0,80 % w/w"), "0.80%w/w");
        assert_eq!(normal("Criterion A"), "criteriona");
        assert_eq!(normal("a, b"), "a,b");
    }

    #[test]
    fn numbers_are_read_with_their_inner_separators() {
        assert_eq!(
            numbers("at 0,8 % on 2025-03-01."),
            ["0.8", "2025", "03", "01"]
        );
        assert_eq!(numbers("log 3.2, then 4"), ["3.2", "4"]);
    }

    #[test]
    fn percentiles_pick_from_the_sorted_times() {
        assert_eq!(percentile(&[1, 2, 3, 4, 100], 0.5), 3);
        assert_eq!(percentile(&[1, 2, 3, 4, 100], 0.95), 100);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
