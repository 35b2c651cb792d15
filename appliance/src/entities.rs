//! Entities (products and formulations with their components, substances,
//! suppliers) and the relationships between them, with recursive where-used
//! and supply-chain queries in place of a graph database.

use crate::auth::{new_id, Actor, Permission};
use crate::licence::within_plan;
use crate::store::{now, tx_db, Audit, Class, Store, Written};
use crate::Error;
use kernel::Component;
use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

/// What an entity is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// A product or formulation, with components.
    Product,
    /// A substance, identified by its CAS number.
    Substance,
    /// A supplier.
    Supplier,
}

impl EntityKind {
    /// The kind's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Product => "product",
            EntityKind::Substance => "substance",
            EntityKind::Supplier => "supplier",
        }
    }
}

impl std::str::FromStr for EntityKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "product" => Ok(EntityKind::Product),
            "substance" => Ok(EntityKind::Substance),
            "supplier" => Ok(EntityKind::Supplier),
            other => Err(Error::Invalid(format!(
                "unknown entity kind {other:?}; use product, substance or supplier"
            ))),
        }
    }
}

/// An entity as submitted (API body or `spoke entity add` file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityInput {
    /// Stable id; generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// What it is.
    pub kind: EntityKind,
    /// Display name.
    pub name: String,
    /// Product category (e.g. `leave_on`), products only.
    #[serde(default)]
    pub category: Option<String>,
    /// CAS number, substances only.
    #[serde(default)]
    pub cas: Option<String>,
    /// Markets (e.g. `EU`).
    #[serde(default)]
    pub markets: Vec<String>,
    /// Components, products only.
    #[serde(default)]
    pub components: Vec<Component>,
}

/// A stored entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: EntityKind,
    /// Name.
    pub name: String,
    /// Product category.
    pub category: Option<String>,
    /// CAS number (substances).
    pub cas: Option<String>,
    /// Markets.
    pub markets: Vec<String>,
    /// Components in order (products).
    pub components: Vec<Component>,
    /// Created.
    pub created_at: String,
    /// Last changed.
    pub updated_at: String,
}

/// How two entities relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rel {
    /// `src` (a product) contains `dst` (a sub-formulation).
    Contains,
    /// `src` (a supplier) supplies `dst` (a substance, product or supplier).
    Supplies,
}

/// A relationship as submitted and stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relationship {
    /// From.
    pub src: String,
    /// How.
    pub rel: Rel,
    /// To.
    pub dst: String,
}

/// One entity reached by a graph query, with the path that reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reached {
    /// The entity reached.
    pub id: String,
    /// Its kind.
    pub kind: EntityKind,
    /// Its name.
    pub name: String,
    /// Ids from the start to this entity.
    pub path: Vec<String>,
}

const UNITS: [&str; 4] = ["%w/w", "%", "mg/kg", "ppm"];
const MAX_COMPONENTS: usize = 500;

/// Validates a CAS registry number's format and check digit.
pub fn valid_cas(cas: &str) -> bool {
    let parts: Vec<&str> = cas.split('-').collect();
    let [a, b, c] = parts.as_slice() else {
        return false;
    };
    let digits_ok =
        |s: &str, min, max| (min..=max).contains(&s.len()) && s.bytes().all(|d| d.is_ascii_digit());
    if !(digits_ok(a, 2, 7) && digits_ok(b, 2, 2) && digits_ok(c, 1, 1)) {
        return false;
    }
    let body: Vec<u32> = a
        .bytes()
        .chain(b.bytes())
        .map(|d| u32::from(d - b'0'))
        .collect();
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| (i as u32 + 1) * d)
        .sum();
    sum % 10 == u32::from(c.as_bytes()[0] - b'0')
}

fn valid_ec(ec: &str) -> bool {
    let b = ec.as_bytes();
    b.len() == 9
        && b[3] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 3 || i == 7 || c.is_ascii_digit())
}

pub(crate) fn valid_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "id {id:?} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

/// Percentage points a formulation's total may exceed 100% by (rounding of
/// each line to two decimals over a few dozen lines stays well inside it).
const TOTAL_TOLERANCE_PCT: f64 = 0.5;

/// Writes what means the same thing one way, before validation: units
/// without case or spaces (`"PPM"`, `"% w/w"`), CAS and EC numbers without
/// surrounding or inner spaces, a blank CAS or EC number as absent, and the
/// category in lower case with `_` for spaces and hyphens (`"Leave-On"` is
/// `leave_on`; a blank one is absent).
fn normalise(input: &mut EntityInput) {
    if let Some(c) = &input.category {
        let key = kernel::category_key(c);
        input.category = (!key.is_empty()).then_some(key);
    }
    fn number(v: &mut Option<String>) {
        if let Some(n) = v {
            let compact: String = n.chars().filter(|c| !c.is_whitespace()).collect();
            *v = (!compact.is_empty()).then_some(compact);
        }
    }
    number(&mut input.cas);
    for c in &mut input.components {
        number(&mut c.cas);
        number(&mut c.ec);
        if let Some(u) = &mut c.unit {
            *u = u
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
                .to_lowercase();
        }
    }
}

/// A concentration as a percentage by weight, if it has a known unit.
fn as_percent(value: f64, unit: &str) -> Option<f64> {
    match unit {
        "%w/w" | "%" => Some(value),
        "ppm" | "mg/kg" => Some(value / 10_000.0),
        _ => None,
    }
}

/// What the active environment packs allow at intake (`environment.json`):
/// the product categories and the component units. None where no pack
/// says, and then the kernel's own list ([`UNITS`]) holds for units.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// Product categories, as the packs write them.
    pub categories: Option<Vec<String>>,
    /// Component units, as the packs write them.
    pub units: Option<Vec<String>>,
}

impl Schema {
    /// Whether `unit` (normalised) is allowed: one the kernel can convert
    /// and, where packs list units, one of theirs (`%` standing for `%w/w`).
    fn allows_unit(&self, unit: &str) -> bool {
        let listed = |u: &str| {
            self.units.as_ref().is_none_or(|units| {
                units.iter().any(|l| {
                    l.chars()
                        .filter(|c| !c.is_whitespace())
                        .collect::<String>()
                        .to_lowercase()
                        == u
                })
            })
        };
        UNITS.contains(&unit) && (listed(unit) || (unit == "%" && listed("%w/w")))
    }

    /// The units to name in a refusal.
    fn unit_list(&self) -> String {
        match &self.units {
            Some(units) => units
                .iter()
                .filter(|u| UNITS.contains(&u.as_str()))
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            None => UNITS.join(", "),
        }
    }
}

/// Validates an entity against what the active environment allows.
fn validate(input: &EntityInput, schema: &Schema) -> Result<(), Error> {
    let categories = schema.categories.as_deref();
    let bad = |m: String| Err(Error::Invalid(m));
    if let Some(id) = &input.id {
        valid_id(id)?;
    }
    if input.name.trim().is_empty() || input.name.len() > 200 {
        return bad("name: required, at most 200 characters".into());
    }
    if let Some(c) = &input.category {
        if input.kind != EntityKind::Product {
            return bad("category: only products have a category".into());
        }
        if c.is_empty() || c.len() > 40 || !c.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return bad(format!(
                "category {c:?}: use a lower-case name such as leave_on or rinse_off"
            ));
        }
        if let Some(known) = categories {
            if !known.iter().any(|k| kernel::category_key(k) == *c) {
                return bad(format!(
                    "category {c:?}: not a product category of the active environment; use one of {}",
                    known.join(", ")
                ));
            }
        }
    }
    match (&input.cas, input.kind) {
        (Some(_), k) if k != EntityKind::Substance => {
            return bad(
                "cas: only substances carry a CAS number; products list it per component".into(),
            )
        }
        (Some(cas), _) if !valid_cas(cas) => {
            return bad(format!(
            "cas {cas:?}: not a valid CAS number (format NNNNNNN-NN-N with a correct check digit)"
        ))
        }
        _ => {}
    }
    for m in &input.markets {
        if !(2..=3).contains(&m.len()) || !m.chars().all(|c| c.is_ascii_uppercase()) {
            return bad(format!(
                "markets: {m:?} is not a market code such as EU or DE"
            ));
        }
    }
    if !input.components.is_empty() && input.kind != EntityKind::Product {
        return bad("components: only products have components".into());
    }
    if input.components.len() > MAX_COMPONENTS {
        return bad(format!("components: at most {MAX_COMPONENTS}"));
    }
    let mut total = 0.0;
    for (i, c) in input.components.iter().enumerate() {
        if c.substance.trim().is_empty() {
            return bad(format!("components[{i}].substance: required"));
        }
        let (at, name) = (format!("components[{i}]"), c.substance.trim());
        if let Some(cas) = &c.cas {
            if !valid_cas(cas) {
                return bad(format!(
                    "{at}.cas {cas:?} ({name}): not a valid CAS number (format NNNNNNN-NN-N with a correct check digit)"
                ));
            }
        }
        if let Some(ec) = &c.ec {
            if !valid_ec(ec) {
                return bad(format!(
                    "{at}.ec {ec:?} ({name}): not an EC number (format NNN-NNN-N)"
                ));
            }
        }
        if let Some(u) = &c.unit {
            if !schema.allows_unit(u) {
                return bad(format!(
                    "{at}.unit {u:?} ({name}): use one of {}",
                    schema.unit_list()
                ));
            }
        }
        if let Some(v) = c.concentration {
            let Some(unit) = &c.unit else {
                return bad(format!(
                    "{at}.concentration {v} ({name}): give its unit ({}); a bare number cannot be checked against a limit",
                    schema.unit_list()
                ));
            };
            let pct = as_percent(v, unit).filter(|p| v.is_finite() && *p > 0.0);
            match pct {
                Some(p) if p <= 100.0 => total += p,
                Some(_) => {
                    return bad(format!(
                        "{at}.concentration {v} {unit} ({name}): more than 100% (1,000,000 ppm) of the product"
                    ))
                }
                None => {
                    return bad(format!(
                        "{at}.concentration {v} ({name}): must be a number above 0 (leave out a substance that is not present)"
                    ))
                }
            }
        }
    }
    if total > 100.0 + TOTAL_TOLERANCE_PCT {
        return bad(format!(
            "components: the concentrations add up to {total:.3}%, more than 100% (tolerance {TOTAL_TOLERANCE_PCT} points); correct the formulation"
        ));
    }
    Ok(())
}

fn audit_of(action: &'static str, e: &Entity) -> Audit {
    Audit {
        action,
        target: e.id.clone(),
        detail: serde_json::json!({ "kind": e.kind, "name": e.name, "components": e.components.len() }),
    }
}

fn touched(id: &str) -> Vec<(String, String)> {
    vec![("entity".to_string(), id.to_string())]
}

fn insert_components(
    tx: &Transaction<'_>,
    id: &str,
    components: &[Component],
) -> Result<(), Error> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO components (product_id, position, substance, cas, ec, concentration, unit)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(tx_db)?;
    for (i, c) in components.iter().enumerate() {
        stmt.execute(params![
            id,
            i as i64,
            c.substance,
            c.cas,
            c.ec,
            c.concentration,
            c.unit
        ])
        .map_err(tx_db)?;
    }
    Ok(())
}

fn load(conn: &rusqlite::Connection, id: &str) -> Result<Option<Entity>, Error> {
    let row = conn
        .query_row(
            "SELECT id, kind, name, category, cas, markets, created_at, updated_at FROM entities WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                ))
            },
        )
        .optional()
        .map_err(tx_db)?;
    let Some((id, kind, name, category, cas, markets, created_at, updated_at)) = row else {
        return Ok(None);
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT substance, cas, ec, concentration, unit FROM components WHERE product_id = ?1 ORDER BY position",
        )
        .map_err(tx_db)?;
    let components = stmt
        .query_map([&id], |r| {
            Ok(Component {
                substance: r.get(0)?,
                cas: r.get(1)?,
                ec: r.get(2)?,
                concentration: r.get(3)?,
                unit: r.get(4)?,
            })
        })
        .map_err(tx_db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(tx_db)?;
    Ok(Some(Entity {
        id,
        kind: kind.parse()?,
        name,
        category,
        cas,
        markets: serde_json::from_str(&markets).unwrap_or_default(),
        components,
        created_at,
        updated_at,
    }))
}

/// Inserts (or, when `replace`, replaces) one validated entity inside a transaction.
fn put_in(
    tx: &Transaction<'_>,
    id: &str,
    input: &EntityInput,
    replace: bool,
) -> Result<(Entity, &'static str), Error> {
    let existing = load(tx, id)?;
    let at = now();
    let created_at = match (&existing, replace) {
        (Some(_), false) => {
            return Err(Error::Conflict(format!(
                "entity {id:?} already exists; PUT /api/v1/entities/{id} to replace it"
            )))
        }
        (None, true) => return Err(Error::NotFound(format!("no entity {id:?}"))),
        (Some(e), true) => {
            if e.kind != input.kind {
                return Err(Error::Conflict(format!(
                    "entity {id:?} is a {}; its kind cannot change",
                    e.kind.as_str()
                )));
            }
            e.created_at.clone()
        }
        (None, false) => at.clone(),
    };
    let markets = serde_json::to_string(&input.markets)
        .map_err(|e| Error::Invalid(format!("markets: {e}")))?;
    tx.execute(
        "INSERT INTO entities (id, kind, name, category, cas, markets, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET name = ?3, category = ?4, cas = ?5, markets = ?6, updated_at = ?8",
        params![id, input.kind.as_str(), input.name, input.category, input.cas, markets, created_at, at],
    )
    .map_err(tx_db)?;
    tx.execute("DELETE FROM components WHERE product_id = ?1", [id])
        .map_err(tx_db)?;
    insert_components(tx, id, &input.components)?;
    let e = load(tx, id)?.ok_or_else(|| Error::NotFound(id.to_string()))?;
    Ok((
        e,
        if existing.is_some() {
            "entity.update"
        } else {
            "entity.create"
        },
    ))
}

fn paths(rows: Vec<(String, String, String, String)>) -> Result<Vec<Reached>, Error> {
    rows.into_iter()
        .map(|(id, kind, name, path)| {
            Ok(Reached {
                id,
                kind: kind.parse()?,
                name,
                path: path
                    .split('/')
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

/// Graph queries stop at this depth, so a cycle cannot run away.
const MAX_DEPTH: i64 = 16;

impl Store {
    /// Creates entities (`replace` None), all or none, or replaces the one
    /// entity with id `replace`. Every input is validated before anything is written.
    /// `schema` is what the active environment allows: a product in another
    /// category, or a component in another unit, is refused.
    pub(crate) fn put_entities(
        &mut self,
        actor: &Actor,
        inputs: Vec<EntityInput>,
        replace: Option<&str>,
        schema: &Schema,
    ) -> Result<Written<Vec<Entity>>, Error> {
        actor.require(Permission::Write)?;
        if replace.is_some() && inputs.len() != 1 {
            return Err(Error::Invalid("replace one entity at a time".into()));
        }
        let many = inputs.len() > 1;
        let mut ready = Vec::with_capacity(inputs.len());
        for (i, mut input) in inputs.into_iter().enumerate() {
            normalise(&mut input);
            validate(&input, schema).map_err(|e| match e {
                Error::Invalid(m) if many => Error::Invalid(format!("entity #{i}: {m}")),
                other => other,
            })?;
            let id = match (replace, &input.id) {
                (Some(r), Some(given)) if r != given => {
                    return Err(Error::Invalid(format!(
                        "id {given:?} in the body differs from {r:?} in the path"
                    )))
                }
                (Some(r), _) => r.to_string(),
                (None, Some(given)) => given.clone(),
                (None, None) => new_id(&input.kind.as_str()[..4])?,
            };
            input.id = Some(id.clone());
            ready.push((id, input));
        }
        let new_products = ready
            .iter()
            .filter(|(_, i)| i.kind == EntityKind::Product)
            .count() as u64;
        let terms = self.licence()?;
        self.write(actor, Class::Data, |tx| {
            if replace.is_none() {
                within_plan(tx, terms.as_ref(), "products", new_products)?;
            }
            let mut out = Vec::with_capacity(ready.len());
            let mut audits = Vec::with_capacity(ready.len());
            let mut touched_ids = Vec::with_capacity(ready.len());
            for (id, input) in &ready {
                let (e, action) = put_in(tx, id, input, replace.is_some())?;
                audits.push(audit_of(action, &e));
                touched_ids.extend(touched(id));
                out.push(e);
            }
            Ok((out, audits, touched_ids))
        })
    }

    /// Deletes an entity (its components and relationships go with it;
    /// documents stay, unlinked; evaluations and locks are never deleted).
    pub(crate) fn delete_entity(&mut self, actor: &Actor, id: &str) -> Result<Written<()>, Error> {
        actor.require(Permission::Write)?;
        self.write(actor, Class::Data, |tx| {
            let e = load(tx, id)?.ok_or_else(|| Error::NotFound(format!("no entity {id:?}")))?;
            tx.execute("DELETE FROM entities WHERE id = ?1", [id])
                .map_err(tx_db)?;
            Ok(((), vec![audit_of("entity.delete", &e)], touched(id)))
        })
    }

    /// One entity.
    pub fn entity(&self, id: &str) -> Result<Entity, Error> {
        load(self.conn(), id)?.ok_or_else(|| Error::NotFound(format!("no entity {id:?}")))
    }

    /// Entities of a kind (all when None), by id, paged.
    pub fn entities(
        &self,
        kind: Option<EntityKind>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Entity>, Error> {
        let ids: Vec<String> = {
            let mut stmt = self
                .conn()
                .prepare_cached(
                    "SELECT id FROM entities WHERE ?1 IS NULL OR kind = ?1 ORDER BY id LIMIT ?2 OFFSET ?3",
                )
                .map_err(self.db())?;
            let rows = stmt
                .query_map(
                    params![kind.map(EntityKind::as_str), limit as i64, offset as i64],
                    |r| r.get(0),
                )
                .map_err(self.db())?;
            rows.collect::<Result<_, _>>().map_err(self.db())?
        };
        ids.iter().map(|id| self.entity(id)).collect()
    }

    /// Adds a relationship between two existing entities.
    pub(crate) fn relate(&mut self, actor: &Actor, r: &Relationship) -> Result<(), Error> {
        actor.require(Permission::Write)?;
        if r.src == r.dst {
            return Err(Error::Invalid("an entity cannot relate to itself".into()));
        }
        self.write(actor, Class::Data, |tx| {
            for id in [&r.src, &r.dst] {
                if load(tx, id)?.is_none() {
                    return Err(Error::NotFound(format!("no entity {id:?}")));
                }
            }
            let rel = match r.rel {
                Rel::Contains => "contains",
                Rel::Supplies => "supplies",
            };
            tx.execute(
                "INSERT INTO edges (src, rel, dst) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![r.src, rel, r.dst],
            )
            .map_err(tx_db)?;
            Ok((
                (),
                vec![Audit {
                    action: "relationship.create",
                    target: format!("{} {rel} {}", r.src, r.dst),
                    detail: serde_json::json!({}),
                }],
                vec![],
            ))
        })?;
        Ok(())
    }

    /// Products that use the substance with this CAS number, directly or
    /// through sub-formulations they contain.
    pub fn where_used(&self, cas: &str) -> Result<Vec<Reached>, Error> {
        if !valid_cas(cas) {
            return Err(Error::Invalid(format!("{cas:?} is not a valid CAS number")));
        }
        self.graph(
            "WITH RECURSIVE used(id, path, depth) AS (
                SELECT DISTINCT product_id, '/' || product_id || '/', 0 FROM components WHERE cas = ?1
                UNION ALL
                SELECT e.src, used.path || e.src || '/', used.depth + 1
                FROM edges e JOIN used ON e.dst = used.id AND e.rel = 'contains'
                WHERE used.depth < ?2 AND instr(used.path, '/' || e.src || '/') = 0
             )
             SELECT used.id, x.kind, x.name, used.path FROM used JOIN entities x ON x.id = used.id
             ORDER BY used.depth, used.id, used.path",
            cas,
        )
    }

    /// Everything upstream of an entity: sub-formulations it contains,
    /// substances listed (by CAS) in its components, their suppliers and
    /// their suppliers' suppliers, each with the path to it.
    pub fn supply_chain(&self, id: &str) -> Result<Vec<Reached>, Error> {
        self.entity(id)?;
        self.graph(
            "WITH RECURSIVE flows(src, dst) AS (
                SELECT src, dst FROM edges WHERE rel = 'supplies'
                UNION ALL SELECT dst, src FROM edges WHERE rel = 'contains'
                UNION ALL SELECT s.id, c.product_id FROM entities s JOIN components c ON c.cas = s.cas
                          WHERE s.kind = 'substance'
             ),
             up(id, path, depth) AS (
                SELECT ?1, '/' || ?1 || '/', 0
                UNION ALL
                SELECT f.src, up.path || f.src || '/', up.depth + 1
                FROM flows f JOIN up ON f.dst = up.id
                WHERE up.depth < ?2 AND instr(up.path, '/' || f.src || '/') = 0
             )
             SELECT up.id, x.kind, x.name, up.path FROM up JOIN entities x ON x.id = up.id
             WHERE up.depth > 0 ORDER BY up.depth, up.id, up.path",
            id,
        )
    }

    fn graph(&self, sql: &str, start: &str) -> Result<Vec<Reached>, Error> {
        let mut stmt = self.conn().prepare_cached(sql).map_err(self.db())?;
        let rows = stmt
            .query_map(params![start, MAX_DEPTH], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(self.db())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.db())?;
        paths(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(
        s: &mut Store,
        a: &Actor,
        input: EntityInput,
        replace: Option<&str>,
    ) -> Result<Entity, Error> {
        Ok(s.put_entities(a, vec![input], replace, &Schema::default())?
            .value
            .remove(0))
    }

    fn component(substance: &str, cas: &str, pct: f64) -> Component {
        Component {
            substance: substance.into(),
            cas: Some(cas.into()),
            ec: None,
            concentration: Some(pct),
            unit: Some("%w/w".into()),
        }
    }

    fn input(id: &str, kind: EntityKind, components: Vec<Component>) -> EntityInput {
        EntityInput {
            id: Some(id.into()),
            kind,
            name: id.to_uppercase(),
            category: (kind == EntityKind::Product).then(|| "leave_on".into()),
            cas: None,
            markets: vec!["EU".into()],
            components,
        }
    }

    #[test]
    fn cas_check_digit() {
        for ok in ["69-72-7", "7732-18-5", "5989-27-5", "117-81-7"] {
            assert!(valid_cas(ok), "{ok}");
        }
        for bad in ["69-72-8", "69-72", "6-72-7", "69-7a-7", "12345678-12-1", ""] {
            assert!(!valid_cas(bad), "{bad}");
        }
    }

    #[test]
    fn validation_names_the_field() {
        let mut bad = input(
            "p1",
            EntityKind::Product,
            vec![component("Water", "7732-18-4", 80.0)],
        );
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(&dir.path().join("db.sqlite"), "did:key:test").unwrap();
        let err = put(&mut s, &Actor::cli(), bad.clone(), None).unwrap_err();
        assert!(err.to_string().contains("components[0].cas"), "{err}");
        bad.components[0].cas = Some("7732-18-5".into());
        bad.components[0].concentration = Some(120.0);
        let err = put(&mut s, &Actor::cli(), bad, None).unwrap_err();
        assert!(err.to_string().contains("more than 100%"), "{err}");
        assert!(s.entities(None, 10, 0).unwrap().is_empty());
    }

    /// #26 item 2: units are the environment's (with `%` for `%w/w`), and
    /// always ones the kernel can convert.
    #[test]
    fn units_are_the_environments() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(&dir.path().join("db.sqlite"), "did:key:test").unwrap();
        let a = Actor::cli();
        let schema = Schema {
            categories: None,
            units: Some(["%w/w", "ppm", "mg/l"].map(String::from).to_vec()),
        };
        let with = |id: &str, unit: &str| {
            input(
                id,
                EntityKind::Product,
                vec![Component {
                    substance: "Aqua".into(),
                    cas: Some("7732-18-5".into()),
                    ec: None,
                    concentration: Some(50.0),
                    unit: Some(unit.into()),
                }],
            )
        };
        for (id, unit) in [("a", "%w/w"), ("b", " PPM "), ("c", "%")] {
            s.put_entities(&a, vec![with(id, unit)], None, &schema)
                .unwrap_or_else(|e| panic!("{unit}: {e}"));
        }
        // Not the environment's, or one the kernel cannot convert.
        for unit in ["mg/kg", "mg/l"] {
            let e = s
                .put_entities(&a, vec![with("x", unit)], None, &schema)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(unit) && e.contains("use one of %w/w, ppm"),
                "{e}"
            );
        }
        // Without an environment pack, the kernel's units.
        assert!(s
            .put_entities(&a, vec![with("d", "mg/kg")], None, &Schema::default())
            .is_ok());
    }

    /// #26 item 2: the category is one the environment defines, whatever
    /// its case and spacing; another is refused, naming the allowed ones.
    #[test]
    fn categories_are_the_environments() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(&dir.path().join("db.sqlite"), "did:key:test").unwrap();
        let a = Actor::cli();
        let known: Vec<String> = ["leave_on", "rinse_off"].map(String::from).to_vec();
        let with = |id: &str, category: &str| EntityInput {
            category: Some(category.into()),
            ..input(id, EntityKind::Product, vec![])
        };
        let schema = Schema {
            categories: Some(known),
            units: None,
        };
        let mut put_in = |e: EntityInput| s.put_entities(&a, vec![e], None, &schema);
        let ok = put_in(with("spaced", " Leave-On ")).unwrap();
        assert_eq!(ok.value[0].category.as_deref(), Some("leave_on"));
        let e = put_in(with("sun", "sunscreen")).unwrap_err().to_string();
        assert!(
            e.contains("\"sunscreen\"") && e.contains("leave_on, rinse_off"),
            "{e}"
        );
        assert!(put_in(with("sun", "Sun Screen")).is_err());
        // Without an environment pack only the spelling is checked.
        assert!(s
            .put_entities(&a, vec![with("sun", "sunscreen")], None, &Schema::default())
            .is_ok());
    }

    #[test]
    fn units_and_numbers_are_normalised_and_impossible_amounts_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(&dir.path().join("db.sqlite"), "did:key:test").unwrap();
        let a = Actor::cli();
        let line = |cas: &str, v: Option<f64>, unit: Option<&str>| Component {
            substance: "Limonene".into(),
            cas: Some(cas.into()),
            ec: None,
            concentration: v,
            unit: unit.map(Into::into),
        };
        // What rules.md promises the kernel reads as the same thing.
        let ok = put(
            &mut s,
            &a,
            input(
                "spelled",
                EntityKind::Product,
                vec![
                    line(" 5989-27-5 ", Some(120.0), Some("PPM")),
                    line("5989 - 27 - 5", Some(0.5), Some("% w/w")),
                    line("   ", Some(10.0), Some("MG/KG")),
                ],
            ),
            None,
        )
        .unwrap();
        let stored: Vec<(Option<&str>, Option<&str>)> = ok
            .components
            .iter()
            .map(|c| (c.cas.as_deref(), c.unit.as_deref()))
            .collect();
        assert_eq!(
            stored,
            [
                (Some("5989-27-5"), Some("ppm")),
                (Some("5989-27-5"), Some("%w/w")),
                (None, Some("mg/kg")),
            ]
        );
        // What no formulation can mean: refused, naming the line.
        let cases = [
            (
                vec![line("5989-27-5", Some(1_500_000.0), Some("ppm"))],
                "more than 100%",
            ),
            (vec![line("5989-27-5", Some(2.0), None)], "give its unit"),
            (vec![line("5989-27-5", Some(0.0), Some("%"))], "above 0"),
            (
                vec![
                    line("5989-27-5", Some(70.0), Some("%")),
                    line("5989-27-5", Some(60.0), Some("%w/w")),
                ],
                "add up to 130.000%",
            ),
        ];
        for (components, needle) in cases {
            let err = put(
                &mut s,
                &a,
                input("impossible", EntityKind::Product, components),
                None,
            )
            .unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(needle), "{needle}: {msg}");
            assert!(
                needle.starts_with("add")
                    || msg.contains("components[0]") && msg.contains("Limonene"),
                "{msg}"
            );
        }
        // Rounding of a real formulation stays inside the tolerance.
        put(
            &mut s,
            &a,
            input(
                "rounded",
                EntityKind::Product,
                vec![
                    line("5989-27-5", Some(60.2), Some("%")),
                    line("5989-27-5", Some(40.1), Some("%")),
                ],
            ),
            None,
        )
        .unwrap();
        assert_eq!(s.entities(None, 10, 0).unwrap().len(), 2);
    }

    #[test]
    fn create_replace_delete_and_graph_queries() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(&dir.path().join("db.sqlite"), "did:key:test").unwrap();
        let a = Actor::cli();
        let base = put(
            &mut s,
            &a,
            input(
                "base",
                EntityKind::Product,
                vec![component("Salicylic acid", "69-72-7", 1.0)],
            ),
            None,
        )
        .unwrap();
        assert_eq!(base.components.len(), 1);
        put(
            &mut s,
            &a,
            input(
                "cream",
                EntityKind::Product,
                vec![component("Water", "7732-18-5", 90.0)],
            ),
            None,
        )
        .unwrap();
        assert!(matches!(
            put(
                &mut s,
                &a,
                input("cream", EntityKind::Product, vec![]),
                None
            ),
            Err(Error::Conflict(_))
        ));
        let mut sub = input("salicylic", EntityKind::Substance, vec![]);
        sub.category = None;
        sub.cas = Some("69-72-7".into());
        put(&mut s, &a, sub, None).unwrap();
        let mut sup = input("acme", EntityKind::Supplier, vec![]);
        sup.category = None;
        put(&mut s, &a, sup.clone(), None).unwrap();
        let mut sup2 = input("rawco", EntityKind::Supplier, vec![]);
        sup2.category = None;
        put(&mut s, &a, sup2, None).unwrap();
        for (src, rel, dst) in [
            ("cream", Rel::Contains, "base"),
            ("acme", Rel::Supplies, "salicylic"),
            ("rawco", Rel::Supplies, "acme"),
        ] {
            s.relate(
                &a,
                &Relationship {
                    src: src.into(),
                    rel,
                    dst: dst.into(),
                },
            )
            .unwrap();
        }
        let used = s.where_used("69-72-7").unwrap();
        let ids: Vec<(&str, Vec<String>)> = used
            .iter()
            .map(|r| (r.id.as_str(), r.path.clone()))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("base", vec!["base".to_string()]),
                ("cream", vec!["base".to_string(), "cream".to_string()])
            ]
        );
        let chain = s.supply_chain("cream").unwrap();
        let last = chain.last().unwrap();
        assert_eq!(last.id, "rawco");
        assert_eq!(last.path, ["cream", "base", "salicylic", "acme", "rawco"]);

        // Replace keeps created_at and swaps components; delete cascades edges.
        let mut new_base = input(
            "base",
            EntityKind::Product,
            vec![component("Water", "7732-18-5", 99.0)],
        );
        new_base.name = "Base v2".into();
        let replaced = put(&mut s, &a, new_base, Some("base")).unwrap();
        assert_eq!(replaced.created_at, base.created_at);
        assert!(s.where_used("69-72-7").unwrap().is_empty());
        s.delete_entity(&a, "base").unwrap();
        assert!(matches!(s.entity("base"), Err(Error::NotFound(_))));
        let edges: i64 = s
            .conn()
            .query_row("SELECT count(*) FROM edges WHERE dst = 'base'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(edges, 0);
    }
}
