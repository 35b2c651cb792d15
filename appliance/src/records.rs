//! The spoke's own records as passages an answer can rest on: for each
//! entity a question names, its record (a product's components with CAS
//! numbers and concentrations) and its latest evaluation (the verdict, the
//! Compliance Lock and the steps of its rule traces that find something or
//! concern what the product contains), rendered as plain
//! text one fact per line. They are retrieved with document passages and
//! cited by the entity's or the lock's id, so an answer about a product's
//! composition or verdict comes from the store, not from a model.

use crate::ai::{Retrieved, Source};
use crate::auth::{Actor, Permission};
use crate::entities::{Entity, EntityKind};
use crate::{Appliance, Error};

/// Most entities scanned for names in a question.
const MAX_ENTITIES: usize = 10_000;
/// Most entities one question draws records from.
const MAX_NAMED: usize = 3;
/// Most trace steps rendered from one evaluation.
const MAX_STEPS: usize = 200;

/// Whether `name` occurs in `text` (both lower case) as whole words.
fn names(text: &str, name: &str) -> bool {
    name.chars().count() >= 3
        && text.match_indices(name).any(|(i, _)| {
            let before = text[..i].chars().next_back();
            let after = text[i + name.len()..].chars().next();
            before.is_none_or(|c| !c.is_alphanumeric())
                && after.is_none_or(|c| !c.is_alphanumeric())
        })
}

fn verdict(v: kernel::Verdict) -> &'static str {
    match v {
        kernel::Verdict::Pass => "pass",
        kernel::Verdict::NeedsReview => "needs review",
        kernel::Verdict::Fail => "fail",
    }
}

fn number(x: f64) -> String {
    // Shortest form that reads back as the stored value.
    format!("{x}")
}

/// The record of `e` as text, one fact per line.
fn entity_text(e: &Entity) -> String {
    let mut lines = vec![format!(
        "{} is a {} record ({}){}{}.",
        e.name,
        e.kind.as_str(),
        e.id,
        e.category
            .as_deref()
            .map(|c| format!(", category {c}"))
            .unwrap_or_default(),
        if e.markets.is_empty() {
            String::new()
        } else {
            format!(", markets {}", e.markets.join(", "))
        }
    )];
    if let Some(cas) = &e.cas {
        lines.push(format!("{} has CAS number {cas}.", e.name));
    }
    for c in &e.components {
        let cas = c
            .cas
            .as_deref()
            .map(|x| format!(" (CAS {x})"))
            .unwrap_or_default();
        let amount = match (c.concentration, c.unit.as_deref()) {
            (Some(x), Some(u)) => format!(" at {} {u}", number(x)),
            _ => " at a concentration the record does not give".to_string(),
        };
        lines.push(format!("{} contains {}{cas}{amount}.", e.name, c.substance));
    }
    lines.join("\n")
}

impl Appliance {
    /// Passages from the records of the entities `question` names (by name
    /// or id, whole words, longest names first): each entity's record and,
    /// for a product, its latest evaluation with its Compliance Lock.
    pub fn record_passages(&self, actor: &Actor, question: &str) -> Result<Vec<Retrieved>, Error> {
        actor.require(Permission::Read)?;
        let q = question.to_lowercase();
        // Names and ids only: the few entities named are loaded whole.
        let mut stmt = self
            .store
            .conn()
            .prepare_cached("SELECT id, name FROM entities ORDER BY id LIMIT ?1")
            .map_err(self.store.db())?;
        let rows = stmt
            .query_map([MAX_ENTITIES as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(self.store.db())?;
        let mut named: Vec<(usize, String)> = Vec::new();
        for row in rows {
            let (id, name) = row.map_err(self.store.db())?;
            let name = name.to_lowercase();
            let hit = [name.as_str(), id.as_str()]
                .into_iter()
                .filter(|n| names(&q, n))
                .map(str::len)
                .max();
            if let Some(hit) = hit {
                named.push((hit, id));
            }
        }
        named.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let mut out = Vec::new();
        for (_, id) in named.into_iter().take(MAX_NAMED) {
            let e = self.store.entity(&id)?;
            let mut text = entity_text(&e);
            let latest = match e.kind {
                EntityKind::Product => self.store.evaluations(Some(&e.id), 1)?.into_iter().next(),
                _ => None,
            };
            if e.kind == EntityKind::Product && latest.is_none() {
                text.push_str(&format!(
                    "\n{} has not been evaluated on this spoke.",
                    e.name
                ));
            }
            out.push(record(
                Source::Entity,
                &e.id,
                format!("{} ({})", e.name, e.id),
                text,
            ));
            let Some(latest) = latest else {
                continue;
            };
            let lock = self.store.lock(&latest.lock_id)?;
            let mut lines = vec![format!(
                "The latest evaluation of {} ({}) is {}: Compliance Lock {}, as of {}.",
                e.name,
                latest.at,
                verdict(lock.verdict),
                lock.id,
                lock.content.as_of
            )];
            // A step shown is a finding (not a pass) or about something the
            // product contains; a group it has no member of says nothing.
            let contained: Vec<String> = e
                .components
                .iter()
                .flat_map(|c| std::iter::once(c.substance.to_lowercase()).chain(c.cas.clone()))
                .collect();
            let about = |subject: &str| {
                let subject = subject.to_lowercase();
                contained.iter().any(|c| subject.contains(c.as_str()))
            };
            let steps = lock
                .result
                .rules
                .iter()
                .flat_map(|r| r.trace.iter().map(move |s| (r, s)))
                .filter(|(_, s)| {
                    s.verdict != kernel::Verdict::Pass || about(&s.subject) || about(&s.detail)
                })
                .take(MAX_STEPS);
            for (rule, step) in steps {
                lines.push(format!(
                    "{} {} under {} ({}): {}: {}.",
                    step.subject,
                    verdict(step.verdict),
                    rule.title.as_deref().unwrap_or(&rule.rule),
                    rule.rule,
                    step.check,
                    step.detail.trim_end_matches('.')
                ));
            }
            for o in lock.result.rules.iter().flat_map(|r| &r.obligations) {
                lines.push(format!("{} must: {o}.", e.name));
            }
            out.push(record(
                Source::Lock,
                &lock.id,
                format!("Compliance Lock of {} ({})", e.name, e.id),
                lines.join("\n"),
            ));
        }
        Ok(out)
    }
}

fn record(source: Source, id: &str, title: String, text: String) -> Retrieved {
    Retrieved {
        source,
        document: id.to_string(),
        filename: title,
        ord: 0,
        start: 0,
        end: text.len(),
        text,
        bm25_rank: None,
        vector_rank: None,
        score: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_whole_words_only() {
        assert!(names("why does glow cream fail?", "glow cream"));
        assert!(!names("why does glow creamy fail?", "glow cream"));
        assert!(!names("a question", "a"), "too short to be a name");
    }

    #[test]
    fn a_record_states_each_component_on_its_own_line() {
        let e = Entity {
            id: "hydra-serum".into(),
            kind: EntityKind::Product,
            name: "Hydra Serum".into(),
            category: Some("leave_on".into()),
            cas: None,
            markets: vec!["EU".into()],
            components: vec![
                kernel::Component {
                    substance: "Methylparaben".into(),
                    cas: Some("99-76-3".into()),
                    ec: None,
                    concentration: Some(0.3),
                    unit: Some("%w/w".into()),
                },
                kernel::Component {
                    substance: "House fragrance".into(),
                    cas: None,
                    ec: None,
                    concentration: None,
                    unit: None,
                },
            ],
            created_at: String::new(),
            updated_at: String::new(),
        };
        let t = entity_text(&e);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[1],
            "Hydra Serum contains Methylparaben (CAS 99-76-3) at 0.3 %w/w."
        );
        assert!(lines[2].contains("does not give"), "{t}");
    }
}
