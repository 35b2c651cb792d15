//! The rule kinds as kernel VM 1.0.0 evaluated them: every component line
//! on its own, matched by CAS number or, without one, by the row's name.
//! Frozen: locks made by VM 1.0.0 replay through this module and must give
//! the bytes they recorded (`tests/v1_0_semantics.rs`); never change what it
//! outputs.

use super::{
    cas_label, component_cas, concentration, limit_for, no_components, pct, string_field, Fuel,
    Step, Verdict,
};
use crate::{Component, Error, Product, Table};
use std::collections::BTreeMap;

/// One row as a rule uses it.
#[derive(Debug, Clone)]
struct Row {
    substance: String,
    cas: String,
}

/// Rows by CAS number and by lower-cased substance name.
#[derive(Debug, Clone, Default)]
pub(super) struct Index {
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
    pub(super) fn build(reference: &str, table: &Table) -> Result<Index, Error> {
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

fn missing_data(c: &Component, check: &str, why: String) -> Step {
    Step {
        subject: cas_label(c),
        check: check.to_string(),
        verdict: Verdict::NeedsReview,
        detail: format!("{why}; complete the formulation data"),
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

pub(super) fn prohibited(
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

pub(super) fn max_concentration(
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
            let limit = match limit_for(rows, limits, category) {
                Ok(limit) => limit,
                Err(allowed) => {
                    let detail =
                        format!("not permitted in {category} products (permitted in: {allowed})");
                    return step(c, &check, Verdict::Fail, detail);
                }
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

pub(super) fn labelling(
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

pub(super) fn group_sum(
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
