//! VM 1.1 semantics: normalise, then evaluate. A product's component lines
//! are resolved to substances (CAS number, else name or synonym from the
//! reference data, else a CAS line of the same product with that name) and
//! the lines of one substance are summed before any rule reads them. A table
//! row is an entry; an entry may cover members ("Lead and its compounds",
//! salts and esters, releasers), each counted through its conversion factor.

use super::{
    component_cas, concentration, limit_for, no_components, pct, string_field, Categories, Fuel,
    Step, Verdict, PPB_ALL,
};
use crate::{Error, Product, Table};
use std::collections::{BTreeMap, BTreeSet};

/// A conversion factor of 1, in millionths.
const UNIT_FACTOR: i64 = 1_000_000;

/// A name as compared: lower-case, inner whitespace runs as one space,
/// trimmed.
pub(super) fn name_key(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn labelled(name: &str, cas: &str) -> String {
    match cas {
        "" => name.to_string(),
        cas => format!("{name} ({cas})"),
    }
}

/// A substance an entry covers besides its own.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    cas: String,
    /// How much of the member's weight counts as the entry, in millionths.
    factor: i64,
}

/// One entry of a table: the rows sharing a CAS number (or, with a blank
/// one, a name), with their synonyms and members combined.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    cas: String,
    rows: Vec<usize>,
    expressed_as: Option<String>,
    synonyms: Vec<String>,
    members: Vec<Member>,
}

impl Entry {
    fn label(&self) -> String {
        labelled(&self.name, &self.cas)
    }
}

/// Which entry a substance matched: the entry itself (`None`) or one of its
/// members.
type Hit = (usize, Option<usize>);

/// A table's entries with their CAS and name indexes.
#[derive(Debug, Clone, Default)]
pub(super) struct Entries {
    table: String,
    rows: usize,
    entries: Vec<Entry>,
    by_cas: BTreeMap<String, Vec<Hit>>,
    by_name: BTreeMap<String, Vec<Hit>>,
}

fn bad(table: &str, row: usize, message: String) -> Error {
    Error::BadTable {
        table: table.to_string(),
        row,
        message,
    }
}

fn synonyms(
    table: &str,
    i: usize,
    row: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<String>, Error> {
    let Some(v) = row.get("synonyms") else {
        return Ok(Vec::new());
    };
    v.as_array()
        .and_then(|a| {
            a.iter()
                .map(|s| {
                    s.as_str()
                        .filter(|s| !s.trim().is_empty())
                        .map(str::to_string)
                })
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| {
            bad(
                table,
                i,
                "field \"synonyms\" must be an array of non-blank strings".into(),
            )
        })
}

fn members(
    table: &str,
    i: usize,
    row: &serde_json::Map<String, serde_json::Value>,
    expressed_as: Option<&str>,
) -> Result<Vec<Member>, Error> {
    let Some(v) = row.get("members") else {
        return Ok(Vec::new());
    };
    let list = v.as_array().ok_or_else(|| {
        bad(
            table,
            i,
            "field \"members\" must be an array of {substance, cas, factor} objects".into(),
        )
    })?;
    let mut out = Vec::with_capacity(list.len());
    for (m, member) in list.iter().enumerate() {
        let at = format!("members[{m}]");
        let obj = member
            .as_object()
            .ok_or_else(|| bad(table, i, format!("{at} must be an object")))?;
        let text = |name: &str| -> Result<String, Error> {
            obj.get(name)
                .and_then(|v| v.as_str())
                .map(|s| s.trim().to_string())
                .ok_or_else(|| bad(table, i, format!("{at}.{name} must be a string")))
        };
        let name = text("substance")?;
        if name.is_empty() {
            return Err(bad(table, i, format!("{at}.substance is blank")));
        }
        let cas = text("cas")?;
        for key in obj.keys() {
            if !["substance", "cas", "factor"].contains(&key.as_str()) {
                return Err(bad(
                    table,
                    i,
                    format!(
                        "{at} has an unknown field {key:?} (members have substance, cas, factor)"
                    ),
                ));
            }
        }
        let factor = match obj.get("factor") {
            None => UNIT_FACTOR,
            Some(f) => {
                let millionths = f
                    .as_f64()
                    .filter(|f| f.is_finite() && *f > 0.0 && *f <= 1000.0)
                    .map(|f| (f * UNIT_FACTOR as f64).round() as i64)
                    .filter(|m| *m >= 1)
                    .ok_or_else(|| {
                        bad(
                            table,
                            i,
                            format!("{at}.factor {f} must be a number above 0 (at least 0.000001) and at most 1000"),
                        )
                    })?;
                if millionths != UNIT_FACTOR && expressed_as.is_none() {
                    return Err(bad(
                        table,
                        i,
                        format!("{at}.factor {f} needs the row's \"expressed_as\" (what the converted amount is, e.g. \"lead\" or \"acid\")"),
                    ));
                }
                millionths
            }
        };
        out.push(Member { name, cas, factor });
    }
    Ok(out)
}

impl Entries {
    pub(super) fn build(reference: &str, table: &Table) -> Result<Entries, Error> {
        let mut ix = Entries {
            table: reference.to_string(),
            rows: table.rows.len(),
            ..Entries::default()
        };
        let mut by_key: BTreeMap<String, usize> = BTreeMap::new();
        for (i, row) in table.rows.iter().enumerate() {
            let cas = string_field(reference, i, row, "cas")?.trim().to_string();
            let name = string_field(reference, i, row, "substance")?
                .trim()
                .to_string();
            let expressed_as = match row.get("expressed_as") {
                None => None,
                Some(_) => Some(
                    string_field(reference, i, row, "expressed_as")?
                        .trim()
                        .to_string(),
                )
                .filter(|s| !s.is_empty()),
            };
            if row.contains_key("expressed_as") && expressed_as.is_none() {
                return Err(bad(reference, i, "field \"expressed_as\" is blank".into()));
            }
            let synonyms = synonyms(reference, i, row)?;
            let members = members(reference, i, row, expressed_as.as_deref())?;
            let key = if cas.is_empty() {
                format!("name:{}", name_key(&name))
            } else {
                format!("cas:{cas}")
            };
            let e = *by_key.entry(key).or_insert_with(|| {
                ix.entries.push(Entry {
                    name: name.clone(),
                    cas: cas.clone(),
                    rows: Vec::new(),
                    expressed_as: None,
                    synonyms: Vec::new(),
                    members: Vec::new(),
                });
                ix.entries.len() - 1
            });
            let entry = &mut ix.entries[e];
            entry.rows.push(i);
            if entry.expressed_as.is_none() {
                entry.expressed_as = expressed_as;
            }
            for s in synonyms {
                if !entry.synonyms.contains(&s) {
                    entry.synonyms.push(s);
                }
            }
            for m in members {
                if !entry
                    .members
                    .iter()
                    .any(|x| x.cas == m.cas && name_key(&x.name) == name_key(&m.name))
                {
                    entry.members.push(m);
                }
            }
        }
        for (e, entry) in ix.entries.iter().enumerate() {
            let add = |map: &mut BTreeMap<String, Vec<Hit>>, key: String, hit: Hit| {
                if key.is_empty() {
                    return;
                }
                let hits = map.entry(key).or_default();
                if !hits.contains(&hit) {
                    hits.push(hit);
                }
            };
            add(&mut ix.by_cas, entry.cas.clone(), (e, None));
            for name in std::iter::once(&entry.name).chain(&entry.synonyms) {
                add(&mut ix.by_name, name_key(name), (e, None));
            }
            for (m, member) in entry.members.iter().enumerate() {
                add(&mut ix.by_cas, member.cas.clone(), (e, Some(m)));
                add(&mut ix.by_name, name_key(&member.name), (e, Some(m)));
            }
        }
        Ok(ix)
    }

    /// The entries a substance matches, once each (as the entry itself
    /// rather than a member where both apply); `None` if it has no CAS
    /// number and its name matches nothing here.
    fn find(&self, s: &Substance) -> Option<Vec<Hit>> {
        let hits = match &s.cas {
            Some(cas) => self.by_cas.get(cas),
            None => Some(self.by_name.get(&s.name_key)?),
        };
        let mut out: Vec<Hit> = Vec::new();
        for &(e, m) in hits.into_iter().flatten() {
            match out.iter_mut().find(|h| h.0 == e) {
                Some(h) if m.is_none() => h.1 = None,
                Some(_) => {}
                None => out.push((e, m)),
            }
        }
        Some(out)
    }

    fn factor(&self, (e, m): Hit) -> i64 {
        m.map_or(UNIT_FACTOR, |m| self.entries[e].members[m].factor)
    }

    fn check_label(&self, check: &str) -> String {
        format!("{check} {}", self.table)
    }
}

/// Every name and CAS number the program's tables know.
#[derive(Debug, Clone, Default)]
pub(super) struct Registry {
    /// Name (as compared) to the CAS numbers it stands for.
    names: BTreeMap<String, BTreeSet<String>>,
    cas: BTreeSet<String>,
    /// Tables consulted, with their number of entries (rows).
    tables: BTreeMap<String, usize>,
}

impl Registry {
    pub(super) fn build<'a>(tables: impl Iterator<Item = &'a Entries>) -> Registry {
        let mut r = Registry::default();
        for t in tables {
            r.tables.insert(t.table.clone(), t.rows);
            for e in &t.entries {
                let mut add = |name: &str, cas: &str| {
                    let set = r.names.entry(name_key(name)).or_default();
                    if !cas.is_empty() {
                        set.insert(cas.to_string());
                        r.cas.insert(cas.to_string());
                    }
                };
                add(&e.name, &e.cas);
                for s in &e.synonyms {
                    add(s, &e.cas);
                }
                for m in &e.members {
                    add(&m.name, &m.cas);
                }
            }
        }
        r
    }

    /// The one CAS number a name stands for in the reference data.
    fn resolve(&self, name: &str) -> Option<&String> {
        let set = self.names.get(name)?;
        (set.len() == 1).then(|| set.iter().next()).flatten()
    }

    fn covers(&self, s: &Substance) -> bool {
        match &s.cas {
            Some(cas) => self.cas.contains(cas),
            None => self.names.contains_key(&s.name_key),
        }
    }
}

/// One component line of a substance.
#[derive(Debug, Clone)]
struct Line {
    /// Position in the product, counting from 0 (printed from 1).
    index: usize,
    name: String,
    amount: Result<i64, String>,
}

/// A substance of the product with the lines that list it.
#[derive(Debug, Clone)]
pub(super) struct Substance {
    label: String,
    cas: Option<String>,
    name_key: String,
    lines: Vec<Line>,
}

/// The product category as the rules see it.
enum Category {
    Missing,
    /// Not one the environment defines (as compared).
    Unknown(String),
    Known(String),
}

/// A product normalised: its substances in the order of their first line.
pub(super) struct Formulation<'p> {
    product: &'p Product,
    substances: Vec<Substance>,
    category: Category,
    categories: &'p Categories,
}

/// An amount made of parts, each a line's concentration times a factor.
#[derive(Default)]
struct Total {
    ppb: i64,
    /// (line, ppb, factor, converted)
    parts: Vec<(usize, i64, i64, i64)>,
    missing: Vec<String>,
}

impl Total {
    fn add(&mut self, s: &Substance, factor: i64) {
        for l in &s.lines {
            match &l.amount {
                Ok(ppb) => {
                    let converted = if factor == UNIT_FACTOR {
                        *ppb
                    } else {
                        ((i128::from(*ppb) * i128::from(factor) + i128::from(UNIT_FACTOR / 2))
                            / i128::from(UNIT_FACTOR)) as i64
                    };
                    self.ppb += converted;
                    self.parts.push((l.index, *ppb, factor, converted));
                }
                Err(why) => self
                    .missing
                    .push(format!("line {} ({}): {why}", l.index + 1, l.name)),
            }
        }
        if self.ppb > PPB_ALL && self.missing.is_empty() {
            self.missing
                .push(format!("{}: the lines add up to more than 100%", s.label));
        }
    }

    fn converted(&self) -> bool {
        self.parts.iter().any(|p| p.2 != UNIT_FACTOR)
    }

    /// `3% (lines 2 + 3: 1.5% + 1.5%)`; a single unconverted line is just
    /// its percentage.
    fn describe(&self, expressed_as: Option<&str>) -> String {
        let head = match expressed_as {
            Some(x) if self.converted() => format!("{} as {x}", pct(self.ppb)),
            _ => pct(self.ppb),
        };
        if self.parts.len() <= 1 && !self.converted() {
            return head;
        }
        let lines: Vec<String> = self.parts.iter().map(|p| (p.0 + 1).to_string()).collect();
        let values: Vec<String> = self
            .parts
            .iter()
            .map(|&(_, ppb, f, c)| {
                if f == UNIT_FACTOR {
                    pct(ppb)
                } else {
                    format!("{} × {} = {}", pct(ppb), factor(f), pct(c))
                }
            })
            .collect();
        format!(
            "{head} ({} {}: {})",
            if lines.len() == 1 { "line" } else { "lines" },
            lines.join(" + "),
            values.join(" + ")
        )
    }
}

/// A factor printed exactly from millionths.
fn factor(millionths: i64) -> String {
    let (whole, frac) = (millionths / UNIT_FACTOR, millionths % UNIT_FACTOR);
    if frac == 0 {
        return whole.to_string();
    }
    format!("{whole}.{}", format!("{frac:06}").trim_end_matches('0'))
}

/// "2", "2 and 3", "1, 2 and 3" (counting from 1).
fn line_list(lines: &[usize]) -> String {
    let n: Vec<String> = lines.iter().map(|i| (i + 1).to_string()).collect();
    match n.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => n.join(""),
    }
}

/// A substance (its index) matched as an entry or one of its members.
type Matched = (usize, Option<usize>);

/// Hits of a rule's table, gathered per entry in the order of the first
/// substance that matched it.
struct Gathered {
    per_entry: Vec<(usize, Vec<Matched>)>,
    clean: usize,
}

impl<'p> Formulation<'p> {
    /// Resolves the product's lines to substances (1 fuel per line).
    pub(super) fn resolve(
        registry: &Registry,
        categories: &'p Categories,
        product: &'p Product,
        fuel: &mut Fuel,
    ) -> Result<Formulation<'p>, Error> {
        let keys: Vec<String> = product
            .components
            .iter()
            .map(|c| name_key(&c.substance))
            .collect();
        // The product's own CAS lines by name, for name-only lines the
        // reference data does not know (built only if there are any).
        let mut own: Option<BTreeMap<&str, &str>> = None;
        let mut substances: Vec<Substance> = Vec::new();
        let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
        for (index, c) in product.components.iter().enumerate() {
            fuel.spend()?;
            let key = &keys[index];
            let cas = match component_cas(c) {
                Some(cas) => Some(cas.to_string()),
                None => registry.resolve(key).cloned().or_else(|| {
                    let own = own.get_or_insert_with(|| {
                        let mut m = BTreeMap::new();
                        for (c, k) in product.components.iter().zip(&keys) {
                            if let Some(cas) = component_cas(c) {
                                m.entry(k.as_str()).or_insert(cas);
                            }
                        }
                        m
                    });
                    own.get(key.as_str()).map(|c| c.to_string())
                }),
            };
            let id = match &cas {
                Some(cas) => format!("cas:{cas}"),
                None => format!("name:{key}"),
            };
            let name = c.substance.trim().to_string();
            let line = Line {
                index,
                name: name.clone(),
                amount: concentration(c),
            };
            match by_id.get(&id) {
                Some(&s) => substances[s].lines.push(line),
                None => {
                    by_id.insert(id, substances.len());
                    substances.push(Substance {
                        label: labelled(&name, cas.as_deref().unwrap_or("")),
                        cas,
                        name_key: key.clone(),
                        lines: vec![line],
                    });
                }
            }
        }
        let category = match product.category.as_deref().map(super::category_key) {
            None => Category::Missing,
            Some(c) if c.is_empty() => Category::Missing,
            Some(c) if !categories.known.is_empty() && !categories.known.contains(&c) => {
                Category::Unknown(c)
            }
            Some(c) => Category::Known(c),
        };
        Ok(Formulation {
            product,
            substances,
            category,
            categories,
        })
    }

    fn unidentifiable(&self, s: &Substance, t: &Entries) -> Step {
        Step {
            subject: s.label.clone(),
            check: t.check_label("listed in"),
            verdict: Verdict::NeedsReview,
            detail: format!(
                "no CAS number and the name matches no entry: cannot be checked against {}; add the CAS number",
                t.table
            ),
        }
    }

    /// Matches every substance against `t` (1 fuel each), recording the
    /// unidentifiable ones.
    fn gather(
        &self,
        t: &Entries,
        fuel: &mut Fuel,
        trace: &mut Vec<Step>,
    ) -> Result<Gathered, Error> {
        let mut g = Gathered {
            per_entry: Vec::new(),
            clean: 0,
        };
        for (i, s) in self.substances.iter().enumerate() {
            fuel.spend()?;
            match t.find(s) {
                None => trace.push(self.unidentifiable(s, t)),
                Some(hits) if hits.is_empty() => g.clean += 1,
                Some(hits) => {
                    for (e, m) in hits {
                        match g.per_entry.iter_mut().find(|(x, _)| *x == e) {
                            Some((_, v)) => v.push((i, m)),
                            None => g.per_entry.push((e, vec![(i, m)])),
                        }
                    }
                }
            }
        }
        Ok(g)
    }

    /// The closing step every table rule's trace ends with: what the table
    /// holds and how many substances it does not list.
    fn coverage(&self, t: &Entries, check: String, clean: usize, trace: &mut Vec<Step>) {
        trace.push(Step {
            subject: format!("{clean} of {} substances", self.substances.len()),
            check,
            verdict: Verdict::Pass,
            detail: format!(
                "not listed in {}, which holds {} entries; a substance not listed there may still be regulated elsewhere",
                t.table, t.rows
            ),
        });
    }

    /// The subject of an entry's step: the substance if one matched, else the entry.
    fn subject(&self, t: &Entries, e: usize, hits: &[Matched]) -> String {
        match hits {
            [(s, _)] => self.substances[*s].label.clone(),
            _ => t.entries[e].label(),
        }
    }

    fn total(&self, t: &Entries, e: usize, hits: &[Matched]) -> Total {
        let mut total = Total::default();
        for &(s, m) in hits {
            total.add(&self.substances[s], t.factor((e, m)));
        }
        total
    }

    pub(super) fn prohibited(
        &self,
        t: &Entries,
        fuel: &mut Fuel,
        trace: &mut Vec<Step>,
    ) -> Result<(), Error> {
        if no_components(self.product, trace) {
            return Ok(());
        }
        let check = t.check_label("listed in");
        let g = self.gather(t, fuel, trace)?;
        // One step per substance, naming the first entry that lists it.
        let mut seen = BTreeSet::new();
        let mut steps: Vec<(usize, Step)> = Vec::new();
        for (e, hits) in &g.per_entry {
            let entry = &t.entries[*e];
            for &(s, m) in hits {
                if !seen.insert(s) {
                    continue;
                }
                let detail = match m {
                    None => format!("prohibited: listed as {}", entry.label()),
                    Some(m) => {
                        let member = &entry.members[m];
                        format!(
                            "prohibited: listed as {}, which covers {}",
                            entry.label(),
                            labelled(&member.name, &member.cas)
                        )
                    }
                };
                steps.push((
                    s,
                    Step {
                        subject: self.substances[s].label.clone(),
                        check: check.clone(),
                        verdict: Verdict::Fail,
                        detail,
                    },
                ));
            }
        }
        steps.sort_by_key(|(s, _)| *s);
        trace.extend(steps.into_iter().map(|(_, s)| s));
        self.coverage(t, check, g.clean, trace);
        Ok(())
    }

    fn category_review(&self, check: &str, subject: String) -> Option<Step> {
        let detail = match &self.category {
            Category::Known(_) => return None,
            Category::Missing => {
                "restricted substance but the product category is missing; complete the formulation data"
                    .to_string()
            }
            Category::Unknown(c) => self.unknown_category(c),
        };
        Some(Step {
            subject,
            check: check.to_string(),
            verdict: Verdict::NeedsReview,
            detail,
        })
    }

    fn known_categories(&self) -> String {
        let known: Vec<&str> = self.categories.known.iter().map(String::as_str).collect();
        known.join(", ")
    }

    fn unknown_category(&self, c: &str) -> String {
        let by = match self.categories.from_environment {
            true => "this environment defines",
            false => "the rules' tables name",
        };
        format!(
            "product category {c:?} is not one {by} ({}); correct the product's category",
            self.known_categories()
        )
    }

    pub(super) fn max_concentration(
        &self,
        t: &Entries,
        limits: &[(String, i64)],
        fuel: &mut Fuel,
        trace: &mut Vec<Step>,
    ) -> Result<(), Error> {
        if no_components(self.product, trace) {
            return Ok(());
        }
        let check = t.check_label("restricted in");
        let g = self.gather(t, fuel, trace)?;
        for (e, hits) in &g.per_entry {
            let entry = &t.entries[*e];
            let subject = self.subject(t, *e, hits);
            if let Some(step) = self.category_review(&check, subject.clone()) {
                trace.push(step);
                continue;
            }
            let Category::Known(category) = &self.category else {
                continue;
            };
            let step = |verdict, detail| Step {
                subject: subject.clone(),
                check: check.clone(),
                verdict,
                detail,
            };
            let limit = match limit_for(&entry.rows, limits, category) {
                Ok(limit) => limit,
                Err(allowed) => {
                    trace.push(step(
                        Verdict::Fail,
                        format!("not permitted in {category} products (permitted in: {allowed})"),
                    ));
                    continue;
                }
            };
            let total = self.total(t, *e, hits);
            let amount = total.describe(entry.expressed_as.as_deref());
            let s = match (total.ppb > limit, total.missing.is_empty()) {
                (true, true) => step(
                    Verdict::Fail,
                    format!("{amount} > limit {} for {category}", pct(limit)),
                ),
                (true, false) => step(
                    Verdict::Fail,
                    format!(
                        "{amount} > limit {} for {category} even without {}",
                        pct(limit),
                        total.missing.join("; ")
                    ),
                ),
                (false, false) => step(
                    Verdict::NeedsReview,
                    format!(
                        "{}; complete the formulation data",
                        total.missing.join("; ")
                    ),
                ),
                (false, true) => step(
                    Verdict::Pass,
                    format!("{amount} <= limit {} for {category}", pct(limit)),
                ),
            };
            trace.push(s);
        }
        self.coverage(t, check, g.clean, trace);
        Ok(())
    }

    pub(super) fn labelling(
        &self,
        t: &Entries,
        thresholds: &BTreeMap<String, i64>,
        fuel: &mut Fuel,
        trace: &mut Vec<Step>,
        obligations: &mut Vec<String>,
    ) -> Result<(), Error> {
        if no_components(self.product, trace) {
            return Ok(());
        }
        let check = t.check_label("labelling threshold,");
        let category = match &self.category {
            Category::Known(c) | Category::Unknown(c) => Some(c),
            Category::Missing => None,
        };
        let threshold = category
            .and_then(|c| thresholds.get(c))
            .or_else(|| thresholds.get("*"))
            .copied();
        let g = self.gather(t, fuel, trace)?;
        for (e, hits) in &g.per_entry {
            let entry = &t.entries[*e];
            let subject = self.subject(t, *e, hits);
            let step = |verdict, detail| Step {
                subject: subject.clone(),
                check: check.clone(),
                verdict,
                detail,
            };
            let Some(limit) = threshold else {
                let detail = match category {
                    None => "listed substance but no threshold applies (product category missing); complete the formulation data".to_string(),
                    Some(c) => format!("listed substance but no threshold applies to category {c:?} and there is no \"*\" threshold; correct the product's category"),
                };
                trace.push(step(Verdict::NeedsReview, detail));
                continue;
            };
            let total = self.total(t, *e, hits);
            let amount = total.describe(entry.expressed_as.as_deref());
            let s = if total.ppb > limit {
                obligations.push(format!(
                    "declare {subject} on the label: {} > {}",
                    pct(total.ppb),
                    pct(limit)
                ));
                let without = match total.missing.is_empty() {
                    true => String::new(),
                    false => format!(" even without {}", total.missing.join("; ")),
                };
                step(
                    Verdict::Pass,
                    format!("{amount} > threshold {}{without}: duty applies", pct(limit)),
                )
            } else if !total.missing.is_empty() {
                step(
                    Verdict::NeedsReview,
                    format!(
                        "{}; complete the formulation data",
                        total.missing.join("; ")
                    ),
                )
            } else {
                step(
                    Verdict::Pass,
                    format!("{amount} <= threshold {}: no duty", pct(limit)),
                )
            };
            trace.push(s);
        }
        self.coverage(t, check, g.clean, trace);
        Ok(())
    }

    pub(super) fn group_sum(
        &self,
        t: &Entries,
        groups: &[String],
        limits: &BTreeMap<String, i64>,
        fuel: &mut Fuel,
        trace: &mut Vec<Step>,
    ) -> Result<(), Error> {
        if no_components(self.product, trace) {
            return Ok(());
        }
        let g = self.gather(t, fuel, trace)?;
        // Per group: its members present, each (substance, entry hit) once.
        // (substance, entry, member)
        type InGroup = (usize, usize, Option<usize>);
        let mut members: BTreeMap<&str, Vec<InGroup>> = BTreeMap::new();
        for (e, hits) in &g.per_entry {
            let mut in_groups: Vec<&str> = t.entries[*e]
                .rows
                .iter()
                .map(|&r| groups[r].as_str())
                .collect();
            in_groups.sort_unstable();
            in_groups.dedup();
            for group in in_groups {
                let list = members.entry(group).or_default();
                for &(s, m) in hits {
                    if !list.iter().any(|x| x.0 == s) {
                        list.push((s, *e, m));
                    }
                }
            }
        }
        for (group, limit) in limits {
            fuel.spend()?;
            let check = format!("sum of group {group} in {}", t.table);
            let step = |verdict, detail| Step {
                subject: group.clone(),
                check: check.clone(),
                verdict,
                detail,
            };
            let Some(list) = members.get(group.as_str()) else {
                trace.push(step(Verdict::Pass, "no member present".into()));
                continue;
            };
            let mut sum = 0;
            let mut parts = Vec::new();
            let mut missing = Vec::new();
            for &(s, e, m) in list {
                let mut total = Total::default();
                total.add(&self.substances[s], t.factor((e, m)));
                sum += total.ppb;
                if !total.parts.is_empty() {
                    let amount = total.describe(t.entries[e].expressed_as.as_deref());
                    parts.push(format!("{} {amount}", self.substances[s].label));
                }
                missing.extend(total.missing);
            }
            let over = sum > *limit;
            let s = match (over, missing.is_empty()) {
                (true, false) => step(
                    Verdict::Fail,
                    format!(
                        "{} = {} > limit {} even without {}",
                        parts.join(" + "),
                        pct(sum),
                        pct(*limit),
                        missing.join("; ")
                    ),
                ),
                (false, false) => step(
                    Verdict::NeedsReview,
                    format!(
                        "cannot sum: {}; complete the formulation data",
                        missing.join("; ")
                    ),
                ),
                (over, true) => step(
                    if over { Verdict::Fail } else { Verdict::Pass },
                    format!(
                        "{} = {} {} limit {}",
                        parts.join(" + "),
                        pct(sum),
                        if over { ">" } else { "<=" },
                        pct(*limit)
                    ),
                ),
            };
            trace.push(s);
        }
        self.coverage(t, format!("listed in {}", t.table), g.clean, trace);
        Ok(())
    }

    /// The kernel's own findings: lines of one substance (to review), the
    /// product category, and the coverage of the tables consulted (1 fuel
    /// per substance).
    pub(super) fn findings(
        &self,
        registry: &Registry,
        fuel: &mut Fuel,
    ) -> Result<(Vec<String>, Vec<Step>), Error> {
        let mut trace = Vec::new();
        let mut obligations = Vec::new();
        for s in self.substances.iter().filter(|s| s.lines.len() > 1) {
            let lines: Vec<usize> = s.lines.iter().map(|l| l.index).collect();
            let mut total = Total::default();
            total.add(s, UNIT_FACTOR);
            let amount = match total.missing.is_empty() {
                true => format!("{} in total", pct(total.ppb)),
                false => format!("at least {} in total", pct(total.ppb)),
            };
            let listed: Vec<String> = s
                .lines
                .iter()
                .map(|l| match &l.amount {
                    Ok(ppb) => format!("{} {} {}", l.index + 1, l.name, pct(*ppb)),
                    Err(why) => format!("{} {} ({why})", l.index + 1, l.name),
                })
                .collect();
            trace.push(Step {
                subject: s.label.clone(),
                check: "one line per substance".into(),
                verdict: Verdict::NeedsReview,
                detail: format!(
                    "lines {} are one substance, evaluated as {amount}",
                    listed.join(", ")
                ),
            });
            obligations.push(format!(
                "review lines {}: {} {}, {amount}; merge them or correct one",
                line_list(&lines),
                if lines.len() == 2 {
                    "both are"
                } else {
                    "all are"
                },
                s.label
            ));
        }
        let relevant = self.categories.from_environment || self.categories.used_by_rules;
        let category = match &self.category {
            Category::Known(_) => None,
            _ if !relevant => None,
            Category::Missing => Some(format!(
                "the product has no category, so limits that depend on it cannot be checked; set one of: {}",
                self.known_categories()
            )),
            Category::Unknown(c) => Some(self.unknown_category(c)),
        };
        if let Some(detail) = category {
            trace.push(Step {
                subject: self.product.name.clone(),
                check: "product category".into(),
                verdict: Verdict::NeedsReview,
                detail,
            });
        }
        let mut not_covered = Vec::new();
        for s in &self.substances {
            fuel.spend()?;
            if !registry.covers(s) {
                not_covered.push(s.label.clone());
            }
        }
        let consulted: Vec<String> = registry
            .tables
            .iter()
            .map(|(t, n)| format!("{t} ({n} entries)"))
            .collect();
        let consulted = match consulted.is_empty() {
            true => "no table consulted".to_string(),
            false => format!("consulted {}", consulted.join(", ")),
        };
        let rest = match (self.substances.is_empty(), not_covered.is_empty()) {
            (true, _) => String::new(),
            (false, true) => "; every substance is listed in at least one of them".into(),
            (false, false) => format!("; not covered by any of them: {}", not_covered.join(", ")),
        };
        trace.push(Step {
            subject: "coverage".into(),
            check: "tables consulted".into(),
            verdict: Verdict::Pass,
            detail: format!("{consulted}{rest}"),
        });
        Ok((obligations, trace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_factors_and_line_lists_print_exactly() {
        assert_eq!(name_key("  Salicylic \t ACID "), "salicylic acid");
        assert_eq!(factor(361_600), "0.3616");
        assert_eq!(factor(1_000_000), "1");
        assert_eq!(factor(1), "0.000001");
        assert_eq!(factor(2_500_000), "2.5");
        assert_eq!(line_list(&[1]), "2");
        assert_eq!(line_list(&[1, 2]), "2 and 3");
        assert_eq!(line_list(&[0, 1, 4]), "1, 2 and 5");
    }
}
