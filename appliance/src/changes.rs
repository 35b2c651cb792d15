//! Pack changes and the simulator (seed 000 §3, §7). Installing a pack only
//! stores it; which version of each pack evaluations use (the *active* set)
//! changes through a change record. Before any change the simulator
//! re-evaluates every product with the current and the proposed packs and
//! diffs the verdicts per product and rule. A spoke with no data, or a
//! fresh install from a product manifest, applies at once; a safe
//! auto-update (a certified, `safe_auto_update` intelligence pack whose diff
//! is empty) applies by itself; anything else waits for a person with the
//! `approve_packs` permission. Applying writes new Compliance Locks.

use crate::auth::{new_id, Actor, Permission};
use crate::compliance::PinnedPack;
use crate::entities::EntityKind;
use crate::service::Appliance;
use crate::store::{now, tx_db, Audit, Class, InstalledBundle, Store};
use crate::Error;
use kernel::Verdict;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Schema of the active set and the change records (a migration).
pub(crate) const MIGRATION: &str = "
CREATE TABLE active_packs (
    name  TEXT PRIMARY KEY,
    cid   TEXT NOT NULL REFERENCES bundles(cid),
    since TEXT NOT NULL
);
CREATE TABLE changes (
    id         TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('pending','applied','rejected')),
    mode       TEXT NOT NULL,
    packs      TEXT NOT NULL,
    diff       TEXT NOT NULL,
    decided_by TEXT,
    decided_at TEXT,
    locks      TEXT NOT NULL DEFAULT '[]'
);
";

/// One pack moving from one version to another (or arriving).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackMove {
    /// Pack name.
    pub name: String,
    /// What is active now, if anything.
    pub from: Option<PinnedPack>,
    /// What would be active.
    pub to: PinnedPack,
}

/// One verdict that the change would alter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictChange {
    /// Product id.
    pub product: String,
    /// `<pack>/<rule>`, or `overall`.
    pub rule: String,
    /// Verdict with the active packs (None: the rule does not exist there).
    pub before: Option<Verdict>,
    /// Verdict with the proposed packs.
    pub after: Option<Verdict>,
}

/// The simulator's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Diff {
    /// Products re-evaluated in the shadow run.
    pub products: usize,
    /// Every verdict that differs.
    pub changes: Vec<VerdictChange>,
}

/// A change to the active packs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Id.
    pub id: String,
    /// When proposed.
    pub created_at: String,
    /// `pending`, `applied` or `rejected`.
    pub status: String,
    /// How it was or will be decided: `no_data`, `fresh_install`,
    /// `safe_auto_update`, `approval`, or `rollback` (undoing an applied
    /// change; approved like any other).
    pub mode: String,
    /// The packs it moves.
    pub packs: Vec<PackMove>,
    /// The simulator's diff.
    pub diff: Diff,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<String>,
    /// The Compliance Locks written when it applied, per product.
    pub locks: Vec<AppliedLock>,
}

/// A lock written when a change applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedLock {
    /// Product id.
    pub product: String,
    /// Lock id.
    pub lock: String,
    /// The verdict it records.
    pub verdict: Verdict,
}

fn tier_rank(t: &str) -> u8 {
    match t {
        "certified" => 3,
        "verified" => 2,
        _ => 1,
    }
}

fn field<'a>(b: &'a InstalledBundle, name: &str) -> Option<&'a serde_json::Value> {
    b.manifest.get(name)
}

fn pin(b: &InstalledBundle) -> PinnedPack {
    PinnedPack {
        name: b.name.clone(),
        version: b.version.clone(),
        cid: b.cid.clone(),
    }
}

fn version(v: &str) -> Result<semver::Version, Error> {
    semver::Version::parse(v).map_err(|e| Error::Invalid(format!("pack version {v:?}: {e}")))
}

/// A JSON column parsed into `T`; unreadable JSON fails the row.
fn json_at<T: serde::de::DeserializeOwned>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Change> {
    Ok(Change {
        id: r.get(0)?,
        created_at: r.get(1)?,
        status: r.get(2)?,
        mode: r.get(3)?,
        packs: json_at(r, 4)?,
        diff: json_at(r, 5)?,
        decided_by: r.get(6)?,
        decided_at: r.get(7)?,
        locks: json_at(r, 8)?,
    })
}

impl Store {
    /// The minimum trust tier the installed product demands (`community` when none).
    pub fn minimum_tier(&self) -> Result<String, Error> {
        let products = self.bundles(Some("product"))?;
        Ok(products
            .last()
            .and_then(|p| {
                p.manifest
                    .pointer("/product/defaults/trust_policy/minimum_tier")
            })
            .and_then(|v| v.as_str())
            .unwrap_or("community")
            .to_string())
    }

    /// Every change, newest first.
    pub fn changes(&self) -> Result<Vec<Change>, Error> {
        let ids: Vec<String> = {
            let mut stmt = self
                .conn()
                .prepare("SELECT id FROM changes ORDER BY created_at DESC, id")
                .map_err(self.db())?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(self.db())?;
            rows.collect::<Result<_, _>>().map_err(self.db())?
        };
        ids.iter().map(|id| self.change(id)).collect()
    }

    /// One change.
    pub fn change(&self, id: &str) -> Result<Change, Error> {
        self.conn()
            .query_row(
                "SELECT id, created_at, status, mode, packs, diff, decided_by, decided_at, locks FROM changes WHERE id = ?1",
                [id],
                row,
            )
            .optional()
            .map_err(self.db())?
            .ok_or_else(|| Error::NotFound(format!("no change {id:?}; `spoke changes list` shows them")))
    }

    /// Refuses incoming packs below the product's minimum trust tier, before
    /// anything is recorded. `product_tier` is the minimum an incoming product
    /// manifest sets, if one arrives with them.
    pub fn check_tiers(
        &self,
        incoming: &[InstalledBundle],
        product_tier: Option<&str>,
    ) -> Result<(), Error> {
        let minimum = match product_tier {
            Some(t) => t.to_string(),
            None => self.minimum_tier()?,
        };
        for b in incoming.iter().filter(|b| b.kind == "pack") {
            let tier = field(b, "trust_tier")
                .and_then(|v| v.as_str())
                .unwrap_or("community");
            if tier_rank(tier) < tier_rank(&minimum) {
                return Err(Error::Denied(format!(
                    "pack {} {} is {tier} tier, below this spoke's minimum trust tier {minimum}; \
                     ask the publisher for a {minimum} release or change the product's trust policy",
                    b.name, b.version
                )));
            }
        }
        Ok(())
    }
}

/// The active set after `incoming` packs replace older versions of theirs.
fn after_install<'a>(
    active: &'a [InstalledBundle],
    incoming: &'a [InstalledBundle],
) -> Result<Vec<&'a InstalledBundle>, Error> {
    let mut set: BTreeMap<&str, &InstalledBundle> =
        active.iter().map(|b| (b.name.as_str(), b)).collect();
    for b in incoming.iter().filter(|b| b.kind == "pack") {
        let newer = match set.get(b.name.as_str()) {
            Some(cur) => version(&b.version)? > version(&cur.version)?,
            None => true,
        };
        if newer {
            set.insert(&b.name, b);
        }
    }
    Ok(set.into_values().collect())
}

impl Store {
    /// Refuses, before anything is recorded, incoming packs that would leave
    /// an active pack without a dependency it needs (by semver range).
    pub fn check_dependencies(&self, incoming: &[InstalledBundle]) -> Result<(), Error> {
        let active = self.active_packs()?;
        let set = after_install(&active, incoming)?;
        for b in &set {
            let Some(deps) = field(b, "dependencies").and_then(|d| d.as_object()) else {
                continue;
            };
            for (name, range) in deps {
                let req = range
                    .as_str()
                    .and_then(|r| semver::VersionReq::parse(r).ok())
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "pack {} has a malformed dependency on {name}",
                            b.name
                        ))
                    })?;
                let dep = set.iter().find(|q| &q.name == name);
                let private = |b: &InstalledBundle| {
                    field(b, "visibility").and_then(|v| v.as_str()) == Some("private")
                };
                if let Some(q) = dep {
                    if private(q) && !private(b) {
                        return Err(Error::Denied(format!(
                            "public pack {} {} may not depend on the private pack {name}; \
                             private packs may depend on public ones, never the reverse",
                            b.name, b.version
                        )));
                    }
                }
                let ok = dep
                    .and_then(|q| semver::Version::parse(&q.version).ok())
                    .is_some_and(|v| req.matches(&v));
                if !ok {
                    return Err(Error::Conflict(format!(
                        "pack {} {} needs {name} {req}, which is neither installed nor on this medium; \
                         put it on the medium (hub export) and import again",
                        b.name, b.version
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Appliance {
    /// Re-evaluates every product with `from` and with `to` (no writes) and
    /// lists every verdict that differs.
    pub fn simulate(&mut self, from: &[PinnedPack], to: &[PinnedPack]) -> Result<Diff, Error> {
        let as_of = crate::compliance::today();
        let before = if from.is_empty() {
            None
        } else {
            Some(self.compile(from.to_vec())?.program)
        };
        let after = self.compile(to.to_vec())?.program;
        let ids: Vec<String> = self
            .store
            .entities(Some(EntityKind::Product), usize::MAX >> 1, 0)?
            .into_iter()
            .map(|e| e.id)
            .collect();
        let verdicts = |program: &kernel::Program,
                        product: &kernel::Product|
         -> Result<BTreeMap<String, Verdict>, Error> {
            let e = program.evaluate(product, &as_of, kernel::DEFAULT_FUEL)?;
            let mut m: BTreeMap<String, Verdict> = e
                .rules
                .iter()
                .map(|r| (format!("{}/{}", r.pack, r.rule), r.verdict))
                .collect();
            m.insert("overall".into(), e.verdict);
            Ok(m)
        };
        let mut changes = Vec::new();
        for id in &ids {
            let product = self.store.kernel_product(id)?;
            let old = match &before {
                Some(p) => verdicts(p, &product)?,
                None => BTreeMap::new(),
            };
            let new = verdicts(&after, &product)?;
            let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
            for k in keys {
                let (b, a) = (old.get(k).copied(), new.get(k).copied());
                if b != a {
                    changes.push(VerdictChange {
                        product: id.clone(),
                        rule: k.clone(),
                        before: b,
                        after: a,
                    });
                }
            }
        }
        Ok(Diff {
            products: ids.len(),
            changes,
        })
    }

    /// Proposes activating newly installed packs (by CID): simulates, then
    /// applies at once when the spoke has no data, when `fresh_install`, or
    /// for a safe auto-update; otherwise records a pending change.
    pub fn propose(
        &mut self,
        actor: &Actor,
        installed: &[String],
        fresh_install: bool,
    ) -> Result<Option<Change>, Error> {
        let active = self.store.active_packs()?;
        let packs = self.store.bundles(Some("pack"))?;
        let mut moves = Vec::new();
        let mut auto_ok = true;
        for cid in installed {
            let Some(b) = packs.iter().find(|b| &b.cid == cid) else {
                continue;
            };
            let current = active.iter().find(|a| a.name == b.name);
            if let Some(cur) = current {
                if version(&b.version)? <= version(&cur.version)? {
                    continue;
                }
            }
            let safe = field(b, "safe_auto_update").and_then(|v| v.as_bool()) == Some(true)
                && field(b, "type").and_then(|v| v.as_str()) == Some("intelligence")
                && field(b, "trust_tier").and_then(|v| v.as_str()) == Some("certified")
                && current.is_some();
            auto_ok &= safe;
            moves.push(PackMove {
                name: b.name.clone(),
                from: current.map(pin),
                to: pin(b),
            });
        }
        if moves.is_empty() {
            return Ok(None);
        }
        self.record_change(actor, &active, moves, |diff, has_data, first| {
            if !has_data {
                "no_data"
            } else if fresh_install && first {
                "fresh_install"
            } else if auto_ok && diff.changes.is_empty() {
                "safe_auto_update"
            } else {
                "approval"
            }
        })
        .map(Some)
    }

    /// Proposes undoing an applied change: its packs return to the versions
    /// active before it. Simulated like any change, and it waits for approval.
    pub fn rollback(&mut self, actor: &Actor, id: &str) -> Result<Change, Error> {
        actor.require(Permission::ApprovePacks)?;
        self.store.check_writable()?;
        let applied = self.store.change(id)?;
        if applied.status != "applied" {
            return Err(Error::Conflict(format!(
                "change {id} is {}; only applied changes can be rolled back",
                applied.status
            )));
        }
        let active = self.store.active_packs()?;
        let mut moves = Vec::new();
        for m in &applied.packs {
            let Some(previous) = &m.from else {
                return Err(Error::Conflict(format!(
                    "change {id} added {}, which had no earlier version to return to",
                    m.name
                )));
            };
            let current = active.iter().find(|a| a.name == m.name).map(pin);
            if current.as_ref() != Some(&m.to) {
                return Err(Error::Conflict(format!(
                    "{} has changed since {id}; roll back the newer change first",
                    m.name
                )));
            }
            moves.push(PackMove {
                name: m.name.clone(),
                from: current,
                to: previous.clone(),
            });
        }
        self.record_change(actor, &active, moves, |_, _, _| "rollback")
    }

    /// Simulates `moves` against the active packs, records the change, and
    /// applies it at once unless its mode (chosen by `mode` from the diff,
    /// whether the spoke has data, and whether nothing is active yet) needs a
    /// person: `approval` and `rollback` stay pending.
    fn record_change(
        &mut self,
        actor: &Actor,
        active: &[InstalledBundle],
        moves: Vec<PackMove>,
        mode: impl FnOnce(&Diff, bool, bool) -> &'static str,
    ) -> Result<Change, Error> {
        let from: Vec<PinnedPack> = active.iter().map(pin).collect();
        let mut to: Vec<PinnedPack> = from
            .iter()
            .filter(|p| !moves.iter().any(|m| m.name == p.name))
            .cloned()
            .chain(moves.iter().map(|m| m.to.clone()))
            .collect();
        to.sort();
        let diff = self.simulate(&from, &to)?;
        let has_data = !self.product_ids()?.is_empty();
        let mode = mode(&diff, has_data, from.is_empty());
        let change = Change {
            id: new_id("chg")?,
            created_at: now(),
            status: "pending".into(),
            mode: mode.into(),
            packs: moves,
            diff,
            decided_by: None,
            decided_at: None,
            locks: vec![],
        };
        let packs_json =
            serde_json::to_string(&change.packs).map_err(|e| Error::Invalid(e.to_string()))?;
        let diff_json =
            serde_json::to_string(&change.diff).map_err(|e| Error::Invalid(e.to_string()))?;
        self.store.write(actor, Class::Data, |tx| {
            tx.execute(
                "INSERT INTO changes (id, created_at, status, mode, packs, diff) VALUES (?1, ?2, 'pending', ?3, ?4, ?5)",
                params![change.id, change.created_at, mode, packs_json, diff_json],
            )
            .map_err(tx_db)?;
            Ok((
                (),
                vec![Audit {
                    action: "change.propose",
                    target: change.id.clone(),
                    detail: serde_json::json!({ "mode": mode, "packs": change.packs, "verdict_changes": change.diff.changes.len() }),
                }],
                vec![],
            ))
        })?;
        if matches!(mode, "approval" | "rollback") {
            return Ok(change);
        }
        self.decide_as(actor, &change.id, true)
    }

    /// Approves or rejects a pending change (needs `approve_packs`).
    pub fn decide(&mut self, actor: &Actor, id: &str, approve: bool) -> Result<Change, Error> {
        actor.require(Permission::ApprovePacks)?;
        self.store.check_writable()?;
        self.decide_as(actor, id, approve)
    }

    fn decide_as(&mut self, actor: &Actor, id: &str, approve: bool) -> Result<Change, Error> {
        let change = self.store.change(id)?;
        if change.status != "pending" {
            return Err(Error::Conflict(format!(
                "change {id} is already {}",
                change.status
            )));
        }
        let active = self.store.active_packs()?;
        for m in &change.packs {
            let now_active = active.iter().find(|a| a.name == m.name).map(pin);
            if now_active != m.from {
                return Err(Error::Conflict(format!(
                    "change {id} was simulated against {} {}, but the active version has changed since; reject it and import again",
                    m.name,
                    m.from.as_ref().map_or("(none)", |p| p.version.as_str())
                )));
            }
        }
        let status = if approve { "applied" } else { "rejected" };
        let pins: Vec<PinnedPack> = change.packs.iter().map(|m| m.to.clone()).collect();
        self.store.write(actor, Class::Data, |tx| {
            tx.execute(
                "UPDATE changes SET status = ?2, decided_by = ?3, decided_at = ?4 WHERE id = ?1",
                params![id, status, actor.name, now()],
            )
            .map_err(tx_db)?;
            if approve {
                activate(tx, &pins)?;
            }
            Ok((
                (),
                vec![Audit {
                    action: if approve {
                        "change.apply"
                    } else {
                        "change.reject"
                    },
                    target: id.to_string(),
                    detail: serde_json::json!({ "mode": change.mode, "packs": pins }),
                }],
                vec![],
            ))
        })?;
        if approve {
            let products = self.product_ids()?;
            if !products.is_empty() {
                let locks: Vec<AppliedLock> = self
                    .evaluate(actor, &products)?
                    .into_iter()
                    .map(|o| AppliedLock {
                        product: o.product_id,
                        lock: o.lock_id,
                        verdict: o.verdict,
                    })
                    .collect();
                let json =
                    serde_json::to_string(&locks).map_err(|e| Error::Invalid(e.to_string()))?;
                self.store.write(actor, Class::Data, |tx| {
                    tx.execute(
                        "UPDATE changes SET locks = ?2 WHERE id = ?1",
                        params![id, json],
                    )
                    .map_err(tx_db)?;
                    Ok(((), vec![], vec![]))
                })?;
            }
        }
        self.store.change(id)
    }
}

fn activate(tx: &rusqlite::Transaction<'_>, pins: &[PinnedPack]) -> Result<(), Error> {
    for p in pins {
        tx.execute(
            "INSERT INTO active_packs (name, cid, since) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET cid = ?2, since = ?3",
            params![p.name, p.cid, now()],
        )
        .map_err(tx_db)?;
    }
    Ok(())
}
