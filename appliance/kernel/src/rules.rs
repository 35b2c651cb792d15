//! The rules language: a logic pack's `rules.json`, parsed strictly.

use crate::Error;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The format tag every rules file carries.
pub const RULES_FORMAT: &str = "eurocomply-rules/1";

/// A logic pack's rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// [`RULES_FORMAT`].
    pub format: String,
    /// Rules, evaluated in this order.
    pub rules: Vec<Rule>,
}

/// One rule. Every kind reads one reference table (`<pack>:<table>`) except
/// `required_document`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// Any listed substance present fails.
    Prohibited {
        /// Rule id.
        id: String,
        /// Table of `{substance, cas}` rows.
        table: String,
        /// Human title.
        #[serde(default)]
        title: Option<String>,
    },
    /// Listed substances are allowed only in the listed product types, up to a limit.
    MaxConcentration {
        /// Rule id.
        id: String,
        /// Table of `{substance, cas, product_type, max_percent}` rows.
        table: String,
        /// Human title.
        #[serde(default)]
        title: Option<String>,
    },
    /// Listed substances above a threshold create a labelling duty.
    LabellingThreshold {
        /// Rule id.
        id: String,
        /// Table of `{substance, cas}` rows.
        table: String,
        /// Threshold per product category, `*` for any other.
        thresholds_percent: BTreeMap<String, f64>,
        /// Human title.
        #[serde(default)]
        title: Option<String>,
    },
    /// The summed concentration of a group's members must stay within its limit.
    GroupSum {
        /// Rule id.
        id: String,
        /// Table of `{substance, cas, group}` rows.
        table: String,
        /// Limit per group.
        limits_percent: BTreeMap<String, f64>,
        /// Human title.
        #[serde(default)]
        title: Option<String>,
    },
    /// A document of this kind must be on file and not expired.
    RequiredDocument {
        /// Rule id.
        id: String,
        /// Document kind, e.g. `cpsr`.
        document: String,
        /// Human title.
        #[serde(default)]
        title: Option<String>,
    },
}

impl Rule {
    /// The rule's id.
    pub fn id(&self) -> &str {
        match self {
            Rule::Prohibited { id, .. }
            | Rule::MaxConcentration { id, .. }
            | Rule::LabellingThreshold { id, .. }
            | Rule::GroupSum { id, .. }
            | Rule::RequiredDocument { id, .. } => id,
        }
    }

    /// The rule's kind as written.
    pub fn kind(&self) -> &'static str {
        match self {
            Rule::Prohibited { .. } => "prohibited",
            Rule::MaxConcentration { .. } => "max_concentration",
            Rule::LabellingThreshold { .. } => "labelling_threshold",
            Rule::GroupSum { .. } => "group_sum",
            Rule::RequiredDocument { .. } => "required_document",
        }
    }

    /// The rule's title.
    pub fn title(&self) -> Option<&str> {
        match self {
            Rule::Prohibited { title, .. }
            | Rule::MaxConcentration { title, .. }
            | Rule::LabellingThreshold { title, .. }
            | Rule::GroupSum { title, .. }
            | Rule::RequiredDocument { title, .. } => title.as_deref(),
        }
    }

    /// The table the rule reads, if any.
    pub fn table(&self) -> Option<&str> {
        match self {
            Rule::Prohibited { table, .. }
            | Rule::MaxConcentration { table, .. }
            | Rule::LabellingThreshold { table, .. }
            | Rule::GroupSum { table, .. } => Some(table),
            Rule::RequiredDocument { .. } => None,
        }
    }

    fn check(&self) -> Result<(), Error> {
        let bad = |message: String| Error::BadRule {
            rule: self.id().to_string(),
            message,
        };
        let id = self.id();
        if id.is_empty()
            || id.len() > 100
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(bad("ids are 1-100 letters, digits, '-', '_' or '.'".into()));
        }
        if let Some(table) = self.table() {
            let ok = table.split_once(':').is_some_and(|(pack, t)| {
                !pack.is_empty()
                    && !t.is_empty()
                    && !pack.contains(char::is_whitespace)
                    && !t.contains(|c: char| c == ':' || c == '/' || c.is_whitespace())
            });
            if !ok {
                return Err(bad(format!(
                    "table {table:?} must be \"<pack name>:<table>\", e.g. \"@data/eu-cosmetics-annexes:annex_ii\""
                )));
            }
        }
        let limits = match self {
            Rule::LabellingThreshold {
                thresholds_percent, ..
            } => Some(("thresholds_percent", thresholds_percent)),
            Rule::GroupSum { limits_percent, .. } => Some(("limits_percent", limits_percent)),
            _ => None,
        };
        if let Some((field, map)) = limits {
            if map.is_empty() {
                return Err(bad(format!("{field} is empty")));
            }
            for (k, v) in map {
                if !v.is_finite() || *v < 0.0 || *v > 100.0 {
                    return Err(bad(format!(
                        "{field}[{k:?}] = {v}: must be a percentage from 0 to 100"
                    )));
                }
            }
        }
        if let Rule::RequiredDocument { document, .. } = self {
            if document.is_empty() {
                return Err(bad("document kind is empty".into()));
            }
        }
        Ok(())
    }
}

impl RuleSet {
    /// Parses and checks a rules file.
    pub fn parse(bytes: &[u8]) -> Result<RuleSet, Error> {
        // The format tag first, so a file in another format is refused as
        // such rather than for a kind or field this version does not know.
        #[derive(Deserialize)]
        struct Header {
            format: Option<serde_json::Value>,
        }
        let header: Header =
            serde_json::from_slice(bytes).map_err(|e| Error::Parse(e.to_string()))?;
        match header.format {
            Some(serde_json::Value::String(f)) if f == RULES_FORMAT => {}
            Some(other) => {
                return Err(Error::Parse(format!(
                    "format is {other}; this kernel reads {RULES_FORMAT:?}"
                )))
            }
            None => {
                return Err(Error::Parse(format!(
                    "the \"format\" field is missing; it must be {RULES_FORMAT:?}"
                )))
            }
        }
        let set: RuleSet =
            serde_json::from_slice(bytes).map_err(|e| Error::Parse(e.to_string()))?;
        let mut seen = BTreeSet::new();
        for r in &set.rules {
            r.check()?;
            if !seen.insert(r.id()) {
                return Err(Error::BadRule {
                    rule: r.id().to_string(),
                    message: "the id is used twice in this pack".into(),
                });
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(rules: &str) -> Result<RuleSet, Error> {
        RuleSet::parse(
            format!(r#"{{"format": "eurocomply-rules/1", "rules": [{rules}]}}"#).as_bytes(),
        )
    }

    #[test]
    fn strict_parsing_names_the_problem() {
        parse(r#"{"id": "a", "kind": "prohibited", "table": "@p:t"}"#).unwrap();
        let cases = [
            (
                r#"{"id": "a", "kind": "prohibited", "table": "@p:t", "colour": 1}"#,
                "colour",
            ),
            (
                r#"{"id": "a", "kind": "teleport", "table": "@p:t"}"#,
                "teleport",
            ),
            (
                r#"{"id": "a", "kind": "prohibited", "table": "no-colon"}"#,
                "<pack name>:<table>",
            ),
            (
                r#"{"id": "a", "kind": "prohibited", "table": "@p:t"}, {"id": "a", "kind": "prohibited", "table": "@p:u"}"#,
                "used twice",
            ),
            (
                r#"{"id": "a", "kind": "labelling_threshold", "table": "@p:t", "thresholds_percent": {"*": -1}}"#,
                "percentage",
            ),
            (
                r#"{"id": "a", "kind": "group_sum", "table": "@p:t", "limits_percent": {}}"#,
                "empty",
            ),
        ];
        for (rules, needle) in cases {
            let e = parse(rules).unwrap_err().to_string();
            assert!(e.contains(needle), "{rules}: {e}");
        }
        let e = RuleSet::parse(br#"{"format": "eurocomply-rules/2", "rules": []}"#).unwrap_err();
        assert!(e.to_string().contains("eurocomply-rules/1"), "{e}");
    }

    #[test]
    fn more_refusals() {
        let cases = [
            // Another format is refused as such, even if its rules are unknown here.
            (
                r#"{"format": "eurocomply-rules/2", "rules": [{"id": "a", "kind": "new_kind"}]}"#,
                "format is \"eurocomply-rules/2\"",
            ),
            (r#"{"format": 1, "rules": []}"#, "format is 1"),
            (r#"{"rules": []}"#, "\"format\" field is missing"),
            (
                r#"{"format": "eurocomply-rules/1", "rules": [], "extra": true}"#,
                "unknown field `extra`",
            ),
            (r#"{"format": "eurocomply-rules/1""#, "EOF"),
            (
                r#"{"format": "eurocomply-rules/1", "rules": [{"id": "a", "kind": "prohibited"}]}"#,
                "missing field `table`",
            ),
        ];
        for (file, needle) in cases {
            let e = RuleSet::parse(file.as_bytes()).unwrap_err();
            assert!(matches!(e, Error::Parse(_)), "{file}: {e:?}");
            let msg = e.to_string();
            assert!(msg.contains(needle), "{file}: {msg}");
            assert!(msg.contains("correct the logic pack's rules.json"), "{msg}");
        }
        let rule_cases = [
            (
                r#"{"id": "a", "kind": "prohibited", "table": "@p:t:u"}"#,
                "<pack name>:<table>",
            ),
            (
                r#"{"id": "a", "kind": "prohibited", "table": ":t"}"#,
                "<pack name>:<table>",
            ),
            (
                r#"{"id": "a", "kind": "prohibited", "table": "@p: t"}"#,
                "<pack name>:<table>",
            ),
            (
                r#"{"id": "a", "kind": "group_sum", "table": "@p:t", "limits_percent": {"g": 100.5}}"#,
                "limits_percent[\"g\"] = 100.5",
            ),
            (
                r#"{"id": "a b", "kind": "prohibited", "table": "@p:t"}"#,
                "ids are",
            ),
            (
                r#"{"id": "a", "kind": "required_document", "document": ""}"#,
                "document kind is empty",
            ),
        ];
        for (rules, needle) in rule_cases {
            let e = parse(rules).unwrap_err();
            assert!(matches!(e, Error::BadRule { .. }), "{rules}: {e:?}");
            assert!(e.to_string().contains(needle), "{rules}: {e}");
        }
        // Zero is a valid threshold; a rule without a title parses.
        let set = parse(
            r#"{"id": "z", "kind": "labelling_threshold", "table": "@p:t", "thresholds_percent": {"*": 0}}"#,
        )
        .unwrap();
        assert_eq!(set.rules[0].id(), "z");
        assert_eq!(set.rules[0].title(), None);
    }
}
