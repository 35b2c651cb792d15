//! Compiling rules against their tables, and evaluating a product.

mod substances;
mod v1_0;

use crate::rules::Rule;
use crate::{valid_date, Component, Error, LogicPack, Product, Table, Tables, VM_VERSION};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use substances::{Entries, Formulation, Registry};
use v1_0::Index;

/// A verdict. Combining takes the worst: fail > needs_review > pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The rule is satisfied.
    Pass,
    /// Data is missing or unusable; a person must look.
    NeedsReview,
    /// The rule is violated.
    Fail,
}

/// One thing the kernel checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What was checked (a component, a group, a document kind).
    pub subject: String,
    /// The check made.
    pub check: String,
    /// Its outcome.
    pub verdict: Verdict,
    /// Why, with the numbers used.
    pub detail: String,
}

/// One rule's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleOutcome {
    /// Logic pack.
    pub pack: String,
    /// Rule id.
    pub rule: String,
    /// Rule kind.
    pub kind: String,
    /// Rule title.
    pub title: Option<String>,
    /// Worst verdict of its steps.
    pub verdict: Verdict,
    /// Duties the product incurs (e.g. labelling).
    pub obligations: Vec<String>,
    /// Every finding, in order; never empty.
    pub trace: Vec<Step>,
}

/// A product's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Worst verdict of all rules.
    pub verdict: Verdict,
    /// Per-rule outcomes in pack and rule order.
    pub rules: Vec<RuleOutcome>,
    /// Fuel used.
    pub fuel_used: u64,
}

impl Evaluation {
    /// Canonical JSON: byte-identical for identical inputs.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        // Only structs, Vecs and strings: serialisation cannot fail or reorder.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

fn field<'a>(
    table: &str,
    row: usize,
    map: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<&'a serde_json::Value, Error> {
    map.get(name).ok_or_else(|| Error::BadTable {
        table: table.to_string(),
        row,
        message: format!("missing field {name:?}"),
    })
}

fn string_field(
    table: &str,
    row: usize,
    map: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<String, Error> {
    field(table, row, map, name)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::BadTable {
            table: table.to_string(),
            row,
            message: format!("field {name:?} must be a string"),
        })
}

/// Parts per billion in one percent.
const PPB_PER_PERCENT: f64 = 1e7;
const PPB_ALL: i64 = 1_000_000_000;

fn percent_to_ppb(p: f64) -> i64 {
    (p * PPB_PER_PERCENT).round() as i64
}

/// A percentage printed exactly from parts per billion.
fn pct(ppb: i64) -> String {
    let whole = ppb / 10_000_000;
    let frac = ppb % 10_000_000;
    if frac == 0 {
        return format!("{whole}%");
    }
    let digits = format!("{frac:07}");
    format!("{whole}.{}%", digits.trim_end_matches('0'))
}

/// The component's concentration in ppb, or why it cannot be used.
fn concentration(c: &Component) -> Result<i64, String> {
    let (Some(v), Some(unit)) = (c.concentration, c.unit.as_deref()) else {
        return Err(if c.concentration.is_none() {
            "concentration missing".into()
        } else {
            "unit missing".into()
        });
    };
    let factor = match unit {
        "%w/w" | "%" => PPB_PER_PERCENT,
        "mg/kg" | "ppm" => 1e3,
        other => return Err(format!("unknown unit {other:?}")),
    };
    if !v.is_finite() || v < 0.0 {
        return Err(format!("unusable concentration {v}"));
    }
    let ppb = (v * factor).round();
    if ppb > PPB_ALL as f64 {
        return Err(format!("concentration {v} {unit} is more than 100%"));
    }
    Ok(ppb as i64)
}

/// The component's CAS number, trimmed; a blank one counts as absent.
fn component_cas(c: &Component) -> Option<&str> {
    c.cas.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn cas_label(c: &Component) -> String {
    match component_cas(c) {
        Some(cas) => format!("{} ({cas})", c.substance),
        None => c.substance.clone(),
    }
}

/// Which meaning an evaluation gives the rules: the kernel VM version that
/// made a lock. A lock replays with the semantics of the VM version it
/// records, so its bytes never change with a newer kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Semantics {
    /// VM 1.0.0: every component line is checked on its own.
    V1_0,
    /// VM 1.1.0: lines are resolved to substances and summed before any
    /// rule, group entries match their members, the product category is
    /// checked against the environment and every trace states its coverage.
    V1_1,
}

impl Semantics {
    /// What this kernel's [`VM_VERSION`] means, and new locks record.
    pub const CURRENT: Semantics = Semantics::V1_1;

    /// The semantics of a lock's recorded `vm_version`.
    pub fn of_vm(version: &str) -> Result<Semantics, Error> {
        match version {
            "1.0.0" => Ok(Semantics::V1_0),
            "1.1.0" => Ok(Semantics::V1_1),
            other => Err(Error::Requirement(format!(
                "kernel VM {other:?} is not one this kernel (VM {VM_VERSION}) can replay (it replays 1.0.0 and 1.1.0); replay it on a spoke whose kernel carries that VM"
            ))),
        }
    }

    /// The VM version whose meaning this is.
    pub fn vm_version(self) -> &'static str {
        match self {
            Semantics::V1_0 => "1.0.0",
            Semantics::V1_1 => "1.1.0",
        }
    }
}

/// A table as a rule reads it: the VM 1.0 index and the VM 1.1 entries.
#[derive(Debug, Clone)]
struct TableRule {
    index: Index,
    entries: Entries,
}

#[derive(Debug, Clone)]
enum Body {
    Prohibited(TableRule),
    MaxConcentration {
        table: TableRule,
        /// Per row: product type and limit in ppb.
        limits: Vec<(String, i64)>,
    },
    Labelling {
        table: TableRule,
        thresholds: BTreeMap<String, i64>,
    },
    GroupSum {
        table: TableRule,
        /// Per row: its group.
        groups: Vec<String>,
        limits: BTreeMap<String, i64>,
    },
    RequiredDocument(String),
}

#[derive(Debug, Clone)]
struct Compiled {
    pack: String,
    id: String,
    kind: &'static str,
    title: Option<String>,
    body: Body,
}

/// Rules resolved against their tables, with lookup indexes built once.
#[derive(Debug, Clone)]
pub struct Program {
    rules: Vec<Compiled>,
    /// Every substance the rules' tables know, for resolving names.
    registry: Registry,
    categories: Categories,
}

/// The product categories a product may have.
#[derive(Debug, Clone, Default)]
pub(crate) struct Categories {
    /// As compared ([`category_key`]), sorted.
    known: BTreeSet<String>,
    /// Whether the environment defined them (else the rules' tables named them).
    from_environment: bool,
    /// Whether any rule's outcome depends on the category.
    used_by_rules: bool,
}

pub(crate) struct Fuel {
    limit: u64,
    used: u64,
}

impl Fuel {
    pub(crate) fn spend(&mut self) -> Result<(), Error> {
        self.used += 1;
        if self.used > self.limit {
            Err(Error::FuelExhausted { limit: self.limit })
        } else {
            Ok(())
        }
    }
}

impl Program {
    /// Resolves every rule's table and builds its indexes. The product
    /// categories are, until [`Program::with_categories`] says otherwise,
    /// those the tables and thresholds name.
    pub fn compile(packs: &[LogicPack], tables: &Tables) -> Result<Program, Error> {
        let mut rules = Vec::new();
        let mut categories = BTreeSet::new();
        let mut used_by_rules = false;
        for pack in packs {
            for rule in &pack.rules.rules {
                let index = |reference: &str| -> Result<(TableRule, &Table), Error> {
                    let table = tables.get(reference).ok_or_else(|| Error::MissingTable {
                        pack: pack.name.clone(),
                        rule: rule.id().to_string(),
                        table: reference.to_string(),
                    })?;
                    let compiled = TableRule {
                        index: Index::build(reference, table)?,
                        entries: Entries::build(reference, table)?,
                    };
                    Ok((compiled, table))
                };
                let body = match rule {
                    Rule::Prohibited { table, .. } => Body::Prohibited(index(table)?.0),
                    Rule::MaxConcentration { table, .. } => {
                        used_by_rules = true;
                        let (ix, t) = index(table)?;
                        let mut limits = Vec::with_capacity(t.rows.len());
                        for (i, row) in t.rows.iter().enumerate() {
                            let kind = string_field(table, i, row, "product_type")?;
                            let max = field(table, i, row, "max_percent")?
                                .as_f64()
                                .filter(|v| v.is_finite() && (0.0..=100.0).contains(v))
                                .ok_or_else(|| Error::BadTable {
                                    table: table.clone(),
                                    row: i,
                                    message: "field \"max_percent\" must be a number from 0 to 100"
                                        .into(),
                                })?;
                            categories.insert(category_key(&kind));
                            limits.push((kind, percent_to_ppb(max)));
                        }
                        Body::MaxConcentration { table: ix, limits }
                    }
                    Rule::LabellingThreshold {
                        table,
                        thresholds_percent,
                        ..
                    } => {
                        used_by_rules = true;
                        categories.extend(
                            thresholds_percent
                                .keys()
                                .filter(|k| *k != "*")
                                .map(|k| category_key(k)),
                        );
                        Body::Labelling {
                            table: index(table)?.0,
                            thresholds: thresholds_percent
                                .iter()
                                .map(|(k, v)| (k.clone(), percent_to_ppb(*v)))
                                .collect(),
                        }
                    }
                    Rule::GroupSum {
                        table,
                        limits_percent,
                        ..
                    } => {
                        let (ix, t) = index(table)?;
                        let groups = t
                            .rows
                            .iter()
                            .enumerate()
                            .map(|(i, row)| string_field(table, i, row, "group"))
                            .collect::<Result<_, _>>()?;
                        Body::GroupSum {
                            table: ix,
                            groups,
                            limits: limits_percent
                                .iter()
                                .map(|(k, v)| (k.clone(), percent_to_ppb(*v)))
                                .collect(),
                        }
                    }
                    Rule::RequiredDocument { document, .. } => {
                        Body::RequiredDocument(document.clone())
                    }
                };
                rules.push(Compiled {
                    pack: pack.name.clone(),
                    id: rule.id().to_string(),
                    kind: rule.kind(),
                    title: rule.title().map(str::to_string),
                    body,
                });
            }
        }
        let registry = Registry::build(rules.iter().filter_map(|r| match &r.body {
            Body::Prohibited(t)
            | Body::MaxConcentration { table: t, .. }
            | Body::Labelling { table: t, .. }
            | Body::GroupSum { table: t, .. } => Some(&t.entries),
            Body::RequiredDocument(_) => None,
        }));
        Ok(Program {
            rules,
            registry,
            categories: Categories {
                known: categories,
                from_environment: false,
                used_by_rules,
            },
        })
    }

    /// The product categories the environment defines (its product schema's
    /// `category` values); a product in another category needs review.
    /// Written as the environment writes them; compared case- and
    /// spacing-insensitively.
    pub fn with_categories<I: IntoIterator<Item = String>>(mut self, categories: I) -> Program {
        self.categories.known = categories.into_iter().map(|c| category_key(&c)).collect();
        self.categories.from_environment = true;
        self
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Evaluates a product as of a date (YYYY-MM-DD), within `fuel` steps,
    /// with this kernel's semantics ([`Semantics::CURRENT`]).
    pub fn evaluate(&self, product: &Product, as_of: &str, fuel: u64) -> Result<Evaluation, Error> {
        self.evaluate_as(Semantics::CURRENT, product, as_of, fuel)
    }

    /// Evaluates a product with the semantics of an earlier (or the current)
    /// VM version: how a lock replays.
    pub fn evaluate_as(
        &self,
        semantics: Semantics,
        product: &Product,
        as_of: &str,
        fuel: u64,
    ) -> Result<Evaluation, Error> {
        if !valid_date(as_of) {
            return Err(Error::BadDate(as_of.to_string()));
        }
        let mut fuel = Fuel {
            limit: fuel,
            used: 0,
        };
        let formulation = match semantics {
            Semantics::V1_0 => None,
            Semantics::V1_1 => Some(Formulation::resolve(
                &self.registry,
                &self.categories,
                product,
                &mut fuel,
            )?),
        };
        let mut outcomes = Vec::with_capacity(self.rules.len() + 1);
        for rule in &self.rules {
            let mut trace = Vec::new();
            let mut obligations = Vec::new();
            match (&rule.body, &formulation) {
                (Body::RequiredDocument(kind), _) => {
                    required_document(kind, product, as_of, &mut fuel, &mut trace)?
                }
                (Body::Prohibited(t), None) => {
                    v1_0::prohibited(&t.index, product, &mut fuel, &mut trace)?
                }
                (Body::MaxConcentration { table, limits }, None) => {
                    v1_0::max_concentration(&table.index, limits, product, &mut fuel, &mut trace)?
                }
                (Body::Labelling { table, thresholds }, None) => v1_0::labelling(
                    &table.index,
                    thresholds,
                    product,
                    &mut fuel,
                    &mut trace,
                    &mut obligations,
                )?,
                (
                    Body::GroupSum {
                        table,
                        groups,
                        limits,
                    },
                    None,
                ) => v1_0::group_sum(&table.index, groups, limits, product, &mut fuel, &mut trace)?,
                (Body::Prohibited(t), Some(f)) => {
                    f.prohibited(&t.entries, &mut fuel, &mut trace)?
                }
                (Body::MaxConcentration { table, limits }, Some(f)) => {
                    f.max_concentration(&table.entries, limits, &mut fuel, &mut trace)?
                }
                (Body::Labelling { table, thresholds }, Some(f)) => f.labelling(
                    &table.entries,
                    thresholds,
                    &mut fuel,
                    &mut trace,
                    &mut obligations,
                )?,
                (
                    Body::GroupSum {
                        table,
                        groups,
                        limits,
                    },
                    Some(f),
                ) => f.group_sum(&table.entries, groups, limits, &mut fuel, &mut trace)?,
            }
            outcomes.push(outcome(
                &rule.pack,
                &rule.id,
                rule.kind,
                rule.title.clone(),
                obligations,
                trace,
            ));
        }
        if let Some(f) = formulation {
            let (obligations, trace) = f.findings(&self.registry, &mut fuel)?;
            outcomes.push(outcome(
                FORMULATION_PACK,
                FORMULATION_RULE,
                FORMULATION_RULE,
                Some(FORMULATION_TITLE.into()),
                obligations,
                trace,
            ));
        }
        Ok(Evaluation {
            verdict: outcomes
                .iter()
                .map(|o| o.verdict)
                .max()
                .unwrap_or(Verdict::Pass),
            rules: outcomes,
            fuel_used: fuel.used,
        })
    }
}

/// The pack name of the kernel's own outcome (no logic pack has it: pack
/// names start with `@`).
pub const FORMULATION_PACK: &str = "kernel";
/// Rule id and kind of the kernel's own outcome, the formulation check.
pub const FORMULATION_RULE: &str = "formulation";
const FORMULATION_TITLE: &str = "One substance, one amount: the component lines as the rules saw them (resolved to substances and summed), the product category, and what the tables cover";

fn outcome(
    pack: &str,
    rule: &str,
    kind: &str,
    title: Option<String>,
    obligations: Vec<String>,
    trace: Vec<Step>,
) -> RuleOutcome {
    RuleOutcome {
        pack: pack.to_string(),
        rule: rule.to_string(),
        kind: kind.to_string(),
        title,
        verdict: trace
            .iter()
            .map(|s| s.verdict)
            .max()
            .unwrap_or(Verdict::Pass),
        obligations,
        trace,
    }
}

/// A product category as compared: trimmed, lower-case, with runs of
/// spaces and hyphens written as one `_` (`" Leave-On "` is `leave_on`).
pub fn category_key(category: &str) -> String {
    category
        .split(|c: char| c.is_whitespace() || c == '-')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("_")
        .to_lowercase()
}

/// The limit of `rows` for `category` (the strictest when several rows name
/// it), or else the product types they permit, joined.
fn limit_for(rows: &[usize], limits: &[(String, i64)], category: &str) -> Result<i64, String> {
    if let Some(limit) = rows
        .iter()
        .filter(|&&r| limits[r].0 == category)
        .map(|&r| limits[r].1)
        .min()
    {
        return Ok(limit);
    }
    let mut allowed: Vec<&str> = Vec::new();
    for &r in rows {
        if !allowed.contains(&limits[r].0.as_str()) {
            allowed.push(&limits[r].0);
        }
    }
    Err(allowed.join(", "))
}

/// The step a table rule records when the product has no components.
fn no_components(product: &Product, trace: &mut Vec<Step>) -> bool {
    if product.components.is_empty() {
        trace.push(Step {
            subject: product.name.clone(),
            check: "components".into(),
            verdict: Verdict::NeedsReview,
            detail: "the product has no components; add its formulation".into(),
        });
        return true;
    }
    false
}

fn required_document(
    kind: &str,
    product: &Product,
    as_of: &str,
    fuel: &mut Fuel,
    trace: &mut Vec<Step>,
) -> Result<(), Error> {
    let check = format!("{kind} on file and current on {as_of}");
    let mut expired = None;
    let mut bad_date = None;
    for d in &product.documents {
        fuel.spend()?;
        if d.kind != kind {
            continue;
        }
        match &d.expires {
            None => {
                trace.push(Step {
                    subject: kind.to_string(),
                    check,
                    verdict: Verdict::Pass,
                    detail: "on file, no expiry".into(),
                });
                return Ok(());
            }
            Some(e) if !valid_date(e) => bad_date = Some(e.clone()),
            Some(e) if e.as_str() >= as_of => {
                trace.push(Step {
                    subject: kind.to_string(),
                    check,
                    verdict: Verdict::Pass,
                    detail: format!("on file, valid until {e}"),
                });
                return Ok(());
            }
            // Report the latest expiry when several are past.
            Some(e) => {
                if expired.as_ref().is_none_or(|x: &String| e > x) {
                    expired = Some(e.clone());
                }
            }
        }
    }
    let (verdict, detail) = match (bad_date, expired) {
        (Some(e), _) => (
            Verdict::NeedsReview,
            format!("on file but its expiry {e:?} is not a date; correct it"),
        ),
        (None, Some(e)) => (
            Verdict::Fail,
            format!("expired on {e}; upload a current one"),
        ),
        (None, None) => (Verdict::Fail, format!("no {kind} on file; upload one")),
    };
    trace.push(Step {
        subject: kind.to_string(),
        check,
        verdict,
        detail,
    });
    Ok(())
}

#[cfg(test)]
mod tests;
