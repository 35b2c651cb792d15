//! Compiling rules against their tables, and evaluating a product.

use crate::rules::Rule;
use crate::{valid_date, Component, Error, LogicPack, Product, Table, Tables};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

/// One row as a rule uses it.
#[derive(Debug, Clone)]
struct Row {
    substance: String,
    cas: String,
}

/// Rows by CAS number and by lower-cased substance name.
#[derive(Debug, Clone, Default)]
struct Index {
    table: String,
    rows: Vec<Row>,
    by_cas: BTreeMap<String, Vec<usize>>,
    by_name: BTreeMap<String, Vec<usize>>,
}

enum Match<'a> {
    Rows(&'a [usize]),
    NotListed,
    Unidentifiable,
}

impl Index {
    fn build(reference: &str, table: &Table) -> Result<Index, Error> {
        let mut ix = Index {
            table: reference.to_string(),
            ..Index::default()
        };
        for (i, row) in table.rows.iter().enumerate() {
            let cas = string_field(reference, i, row, "cas")?;
            let substance = string_field(reference, i, row, "substance")?;
            // A blank CAS (a group entry such as "Lead and its compounds")
            // or a blank name is simply not a key: such a row is found only
            // by the other one.
            let cas_key = cas.trim();
            if !cas_key.is_empty() {
                ix.by_cas.entry(cas_key.to_string()).or_default().push(i);
            }
            let name_key = substance.trim().to_lowercase();
            if !name_key.is_empty() {
                ix.by_name.entry(name_key).or_default().push(i);
            }
            ix.rows.push(Row { substance, cas });
        }
        Ok(ix)
    }

    fn find(&self, c: &Component) -> Match<'_> {
        match component_cas(c) {
            Some(cas) => self
                .by_cas
                .get(cas)
                .map_or(Match::NotListed, |r| Match::Rows(r)),
            None => self
                .by_name
                .get(&c.substance.trim().to_lowercase())
                .map_or(Match::Unidentifiable, |r| Match::Rows(r)),
        }
    }

    fn unidentifiable(&self, c: &Component) -> Step {
        Step {
            subject: c.substance.clone(),
            check: format!("listed in {}", self.table),
            verdict: Verdict::NeedsReview,
            detail: format!(
                "no CAS number and the name matches no entry: cannot be checked against {}; add the CAS number",
                self.table
            ),
        }
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

fn missing_data(c: &Component, check: &str, why: String) -> Step {
    Step {
        subject: cas_label(c),
        check: check.to_string(),
        verdict: Verdict::NeedsReview,
        detail: format!("{why}; complete the formulation data"),
    }
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

#[derive(Debug, Clone)]
enum Body {
    Prohibited(Index),
    MaxConcentration {
        index: Index,
        /// Per row: product type and limit in ppb.
        limits: Vec<(String, i64)>,
    },
    Labelling {
        index: Index,
        thresholds: BTreeMap<String, i64>,
    },
    GroupSum {
        index: Index,
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
}

struct Fuel {
    limit: u64,
    used: u64,
}

impl Fuel {
    fn spend(&mut self) -> Result<(), Error> {
        self.used += 1;
        if self.used > self.limit {
            Err(Error::FuelExhausted { limit: self.limit })
        } else {
            Ok(())
        }
    }
}

impl Program {
    /// Resolves every rule's table and builds its indexes.
    pub fn compile(packs: &[LogicPack], tables: &Tables) -> Result<Program, Error> {
        let mut rules = Vec::new();
        for pack in packs {
            for rule in &pack.rules.rules {
                let index = |reference: &str| -> Result<(Index, &Table), Error> {
                    let table = tables.get(reference).ok_or_else(|| Error::MissingTable {
                        pack: pack.name.clone(),
                        rule: rule.id().to_string(),
                        table: reference.to_string(),
                    })?;
                    Ok((Index::build(reference, table)?, table))
                };
                let body = match rule {
                    Rule::Prohibited { table, .. } => Body::Prohibited(index(table)?.0),
                    Rule::MaxConcentration { table, .. } => {
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
                            limits.push((kind, percent_to_ppb(max)));
                        }
                        Body::MaxConcentration { index: ix, limits }
                    }
                    Rule::LabellingThreshold {
                        table,
                        thresholds_percent,
                        ..
                    } => Body::Labelling {
                        index: index(table)?.0,
                        thresholds: thresholds_percent
                            .iter()
                            .map(|(k, v)| (k.clone(), percent_to_ppb(*v)))
                            .collect(),
                    },
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
                            index: ix,
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
        Ok(Program { rules })
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Evaluates a product as of a date (YYYY-MM-DD), within `fuel` steps.
    pub fn evaluate(&self, product: &Product, as_of: &str, fuel: u64) -> Result<Evaluation, Error> {
        if !valid_date(as_of) {
            return Err(Error::BadDate(as_of.to_string()));
        }
        let mut fuel = Fuel {
            limit: fuel,
            used: 0,
        };
        let mut outcomes = Vec::with_capacity(self.rules.len());
        for rule in &self.rules {
            let mut trace = Vec::new();
            let mut obligations = Vec::new();
            match &rule.body {
                Body::Prohibited(ix) => prohibited(ix, product, &mut fuel, &mut trace)?,
                Body::MaxConcentration { index, limits } => {
                    max_concentration(index, limits, product, &mut fuel, &mut trace)?
                }
                Body::Labelling { index, thresholds } => labelling(
                    index,
                    thresholds,
                    product,
                    &mut fuel,
                    &mut trace,
                    &mut obligations,
                )?,
                Body::GroupSum {
                    index,
                    groups,
                    limits,
                } => group_sum(index, groups, limits, product, &mut fuel, &mut trace)?,
                Body::RequiredDocument(kind) => {
                    required_document(kind, product, as_of, &mut fuel, &mut trace)?
                }
            }
            let verdict = trace
                .iter()
                .map(|s| s.verdict)
                .max()
                .unwrap_or(Verdict::Pass);
            outcomes.push(RuleOutcome {
                pack: rule.pack.clone(),
                rule: rule.id.clone(),
                kind: rule.kind.to_string(),
                title: rule.title.clone(),
                verdict,
                obligations,
                trace,
            });
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

/// The closing step that records how many components raised nothing.
fn clean_summary(trace: &mut Vec<Step>, check: String, checked: usize, clean: usize, detail: &str) {
    if clean > 0 || trace.is_empty() {
        trace.push(Step {
            subject: format!("{clean} of {checked} components"),
            check,
            verdict: Verdict::Pass,
            detail: detail.to_string(),
        });
    }
}

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

/// Walks the components against `ix`: counts those not listed, records the
/// unidentifiable ones, lets `on_listed` decide the step for each listed one
/// (with its matching rows), and closes with the summary step.
fn each_listed(
    ix: &Index,
    product: &Product,
    fuel: &mut Fuel,
    trace: &mut Vec<Step>,
    check: &str,
    clean_detail: &str,
    mut on_listed: impl FnMut(&Component, &[usize]) -> Step,
) -> Result<(), Error> {
    if no_components(product, trace) {
        return Ok(());
    }
    let mut clean = 0;
    for c in &product.components {
        fuel.spend()?;
        match ix.find(c) {
            Match::Rows(rows) => trace.push(on_listed(c, rows)),
            Match::NotListed => clean += 1,
            Match::Unidentifiable => trace.push(ix.unidentifiable(c)),
        }
    }
    clean_summary(
        trace,
        check.to_string(),
        product.components.len(),
        clean,
        clean_detail,
    );
    Ok(())
}

fn step(c: &Component, check: &str, verdict: Verdict, detail: String) -> Step {
    Step {
        subject: cas_label(c),
        check: check.to_string(),
        verdict,
        detail,
    }
}

fn prohibited(
    ix: &Index,
    product: &Product,
    fuel: &mut Fuel,
    trace: &mut Vec<Step>,
) -> Result<(), Error> {
    let check = format!("listed in {}", ix.table);
    each_listed(ix, product, fuel, trace, &check, "not listed", |c, rows| {
        let row = &ix.rows[rows[0]];
        let detail = match row.cas.trim() {
            "" => format!("prohibited: listed as {}", row.substance),
            cas => format!("prohibited: listed as {} ({cas})", row.substance),
        };
        step(c, &check, Verdict::Fail, detail)
    })
}

fn max_concentration(
    ix: &Index,
    limits: &[(String, i64)],
    product: &Product,
    fuel: &mut Fuel,
    trace: &mut Vec<Step>,
) -> Result<(), Error> {
    let check = format!("restricted in {}", ix.table);
    each_listed(
        ix,
        product,
        fuel,
        trace,
        &check,
        "not restricted",
        |c, rows| {
            let Some(category) = &product.category else {
                let why = "restricted substance but the product category is missing";
                return missing_data(c, &check, why.into());
            };
            // Several rows for the same product type: the strictest applies.
            let Some(limit) = rows
                .iter()
                .filter(|&&r| limits[r].0 == *category)
                .map(|&r| limits[r].1)
                .min()
            else {
                let mut allowed: Vec<&str> = Vec::new();
                for &r in rows {
                    if !allowed.contains(&limits[r].0.as_str()) {
                        allowed.push(&limits[r].0);
                    }
                }
                let detail = format!(
                    "not permitted in {category} products (permitted in: {})",
                    allowed.join(", ")
                );
                return step(c, &check, Verdict::Fail, detail);
            };
            match concentration(c) {
                Err(why) => missing_data(c, &check, why),
                Ok(ppb) if ppb <= limit => {
                    let detail = format!("{} <= limit {} for {category}", pct(ppb), pct(limit));
                    step(c, &check, Verdict::Pass, detail)
                }
                Ok(ppb) => {
                    let detail = format!("{} > limit {} for {category}", pct(ppb), pct(limit));
                    step(c, &check, Verdict::Fail, detail)
                }
            }
        },
    )
}

fn labelling(
    ix: &Index,
    thresholds: &BTreeMap<String, i64>,
    product: &Product,
    fuel: &mut Fuel,
    trace: &mut Vec<Step>,
    obligations: &mut Vec<String>,
) -> Result<(), Error> {
    let check = format!("labelling threshold, {}", ix.table);
    let threshold = product
        .category
        .as_ref()
        .and_then(|c| thresholds.get(c))
        .or_else(|| thresholds.get("*"))
        .copied();
    each_listed(ix, product, fuel, trace, &check, "not listed", |c, _| {
        let Some(limit) = threshold else {
            let why = "listed substance but no threshold applies (product category missing)";
            return missing_data(c, &check, why.into());
        };
        match concentration(c) {
            Err(why) => missing_data(c, &check, why),
            Ok(ppb) if ppb > limit => {
                obligations.push(format!(
                    "declare {} on the label: {} > {}",
                    cas_label(c),
                    pct(ppb),
                    pct(limit)
                ));
                let detail = format!("{} > threshold {}: duty applies", pct(ppb), pct(limit));
                step(c, &check, Verdict::Pass, detail)
            }
            Ok(ppb) => {
                let detail = format!("{} <= threshold {}: no duty", pct(ppb), pct(limit));
                step(c, &check, Verdict::Pass, detail)
            }
        }
    })
}

fn group_sum(
    ix: &Index,
    groups: &[String],
    limits: &BTreeMap<String, i64>,
    product: &Product,
    fuel: &mut Fuel,
    trace: &mut Vec<Step>,
) -> Result<(), Error> {
    if no_components(product, trace) {
        return Ok(());
    }
    // Per group: sum in ppb, members seen, and members without usable data.
    let mut sums: BTreeMap<&str, (i64, Vec<String>, Vec<String>)> = BTreeMap::new();
    for c in &product.components {
        fuel.spend()?;
        match ix.find(c) {
            Match::NotListed => {}
            Match::Unidentifiable => trace.push(ix.unidentifiable(c)),
            Match::Rows(rows) => {
                // A substance counts once per group, however many rows list it.
                let mut seen: Vec<&str> = rows.iter().map(|&r| groups[r].as_str()).collect();
                seen.sort_unstable();
                seen.dedup();
                for g in seen {
                    let entry = sums.entry(g).or_default();
                    match concentration(c) {
                        Ok(ppb) => {
                            entry.0 += ppb;
                            entry.1.push(format!("{} {}", cas_label(c), pct(ppb)));
                        }
                        Err(why) => entry.2.push(format!("{}: {why}", cas_label(c))),
                    }
                }
            }
        }
    }
    for (group, limit) in limits {
        fuel.spend()?;
        let check = format!("sum of group {group} in {}", ix.table);
        let step = match sums.get(group.as_str()) {
            None => Step {
                subject: group.clone(),
                check,
                verdict: Verdict::Pass,
                detail: "no member present".into(),
            },
            // Concentrations are never negative: members with known values
            // already over the limit fail whatever the missing ones are.
            Some((sum, members, missing)) if !missing.is_empty() && sum > limit => Step {
                subject: group.clone(),
                check,
                verdict: Verdict::Fail,
                detail: format!(
                    "{} = {} > limit {} even without {}",
                    members.join(" + "),
                    pct(*sum),
                    pct(*limit),
                    missing.join("; ")
                ),
            },
            Some((_, _, missing)) if !missing.is_empty() => Step {
                subject: group.clone(),
                check,
                verdict: Verdict::NeedsReview,
                detail: format!(
                    "cannot sum: {}; complete the formulation data",
                    missing.join("; ")
                ),
            },
            Some((sum, members, _)) => Step {
                subject: group.clone(),
                check,
                verdict: if sum <= limit {
                    Verdict::Pass
                } else {
                    Verdict::Fail
                },
                detail: format!(
                    "{} = {} {} limit {}",
                    members.join(" + "),
                    pct(*sum),
                    if sum <= limit { "<=" } else { ">" },
                    pct(*limit)
                ),
            },
        };
        trace.push(step);
    }
    Ok(())
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
