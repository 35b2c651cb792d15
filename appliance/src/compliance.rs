//! Evaluation and the Compliance Lock (seed 000 §7): loads installed packs'
//! rules and reference tables, runs the kernel over a product, and records
//! an append-only, content-addressed lock pinning the kernel build, every
//! pack CID and the digest of every reference table used, so that replaying
//! it later gives byte-identical results.

use crate::auth::{Actor, Permission};
use crate::service::Appliance;
use crate::store::{now, tx_db, Audit, Class, InstalledBundle, Store};
use crate::Error;
use kernel::{DocumentFact, LogicPack, Program, RuleSet, Semantics, Tables};
pub use kernel::{Evaluation, Product, Verdict};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

/// Format tag of a lock's content.
pub const LOCK_FORMAT: &str = "eurocomply-lock/1";
/// Where `environment.json` lists the product categories and the units of
/// a product's components.
const CATEGORY_ENUM: &str = "/entities/product/fields/category/enum";
const UNIT_ENUM: &str = "/entities/product/fields/components/items/unit/enum";

/// Largest reference table or rules file read from a pack payload.
const MAX_PACK_FILE: u64 = 64 * 1024 * 1024;

/// One reference table of an installed pack, as loaded into SQLite.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceTable {
    /// The pack's CID (the namespace).
    pub pack_cid: String,
    /// The pack's name.
    pub pack_name: String,
    /// Table name (the file stem under `tables/`).
    pub table: String,
    /// Rows, as canonical JSON text (an array of objects).
    pub rows: String,
}

fn read_capped(path: &Path) -> Result<Vec<u8>, Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_PACK_FILE {
        return Err(Error::Invalid(format!(
            "{} is {len} bytes, over the {MAX_PACK_FILE}-byte limit for pack files",
            path.display()
        )));
    }
    std::fs::read(path).map_err(io)
}

/// Reads `tables/*.json` of an installed pack's payload: each must be a JSON
/// array of objects. Sorted by table name.
pub fn read_pack_tables(
    payload: &Path,
    cid: &str,
    pack: &str,
) -> Result<Vec<ReferenceTable>, Error> {
    let dir = payload.join("tables");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let io = |source| Error::Io {
        path: dir.clone(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let (Some(stem), Some("json")) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        let value: serde_json::Value = serde_json::from_slice(&read_capped(&path)?)
            .map_err(|e| Error::Invalid(format!("pack {pack} table {}: {e}", path.display())))?;
        let ok = value
            .as_array()
            .is_some_and(|rows| rows.iter().all(serde_json::Value::is_object));
        if !ok {
            return Err(Error::Invalid(format!(
                "pack {pack} table {}: must be a JSON array of objects",
                path.display()
            )));
        }
        out.push(ReferenceTable {
            pack_cid: cid.to_string(),
            pack_name: pack.to_string(),
            table: stem.to_string(),
            rows: value.to_string(),
        });
    }
    out.sort_by(|a, b| a.table.cmp(&b.table));
    Ok(out)
}

/// A pack pinned by a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct PinnedPack {
    /// Pack name.
    pub name: String,
    /// Version.
    pub version: String,
    /// CID of its index.
    pub cid: String,
}

/// A reference table pinned by a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedTable {
    /// Reference as rules name it (`<pack>:<table>`).
    pub table: String,
    /// CID of the pack that carried it.
    pub pack_cid: String,
    /// SHA-256 of its rows as stored.
    pub sha256: String,
}

/// What a Compliance Lock pins; its SHA-256 is the lock id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockContent {
    /// [`LOCK_FORMAT`].
    pub format: String,
    /// The exact kernel build.
    pub kernel_build: String,
    /// The kernel VM version.
    pub vm_version: String,
    /// Evaluation date (document expiry is judged against it).
    pub as_of: String,
    /// The product exactly as evaluated.
    pub product: Product,
    /// Every pack used: logic packs (rules) and intelligence packs (data).
    pub packs: Vec<PinnedPack>,
    /// Every reference table with its digest (the reference data version).
    pub tables: Vec<PinnedTable>,
    /// SHA-256 of the evaluation's canonical JSON.
    pub result_sha256: String,
}

/// A stored Compliance Lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lock {
    /// SHA-256 of the canonical content.
    pub id: String,
    /// The product evaluated.
    pub product_id: String,
    /// When first written.
    pub created_at: String,
    /// Overall verdict.
    pub verdict: Verdict,
    /// What it pins.
    pub content: LockContent,
    /// The evaluation (canonical JSON, parsed).
    pub result: Evaluation,
}

/// An evaluation record (append-only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationRecord {
    /// Sequence number.
    pub seq: i64,
    /// The product.
    pub product_id: String,
    /// Its lock.
    pub lock_id: String,
    /// Overall verdict.
    pub verdict: Verdict,
    /// When.
    pub at: String,
    /// By whom.
    pub actor: String,
}

/// The result of evaluating one product.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The product.
    pub product_id: String,
    /// The lock written (or found: identical evaluations share a lock).
    pub lock_id: String,
    /// Overall verdict.
    pub verdict: Verdict,
    /// Per-rule verdicts with traces.
    pub evaluation: Evaluation,
}

/// The result of replaying a lock.
#[derive(Debug, Clone, Serialize)]
pub struct Replay {
    /// The lock replayed.
    pub lock_id: String,
    /// Whether the replay's bytes equal the stored result's.
    pub identical: bool,
    /// Kernel build pinned in the lock.
    pub kernel_build_locked: String,
    /// Kernel build that replayed it.
    pub kernel_build_now: String,
    /// The replayed evaluation's canonical JSON.
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// Today's date in UTC (the evaluation date locks record).
pub(crate) fn today() -> String {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string()
}

/// An evaluation date as the kernel and locks write it: a real calendar day
/// in `YYYY-MM-DD`.
fn evaluation_date(as_of: &str) -> Result<String, Error> {
    match as_of.trim().parse::<jiff::civil::Date>() {
        Ok(d) if d.to_string() == as_of.trim() => Ok(d.to_string()),
        _ => Err(Error::Invalid(format!(
            "evaluation date {as_of:?} is not a calendar date; write it as YYYY-MM-DD, e.g. 2027-03-01"
        ))),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn verdict_str(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::NeedsReview => "needs_review",
        Verdict::Fail => "fail",
    }
}

fn parse_verdict(s: &str) -> Verdict {
    match s {
        "pass" => Verdict::Pass,
        "fail" => Verdict::Fail,
        _ => Verdict::NeedsReview,
    }
}

/// A compiled program with what it pins, cached while the active packs stay the same.
pub(crate) struct Compiled {
    key: Vec<String>,
    pub(crate) program: Arc<Program>,
    packs: Vec<PinnedPack>,
    tables: Vec<PinnedTable>,
}

impl Store {
    /// Records bundles, the reference tables their packs carry and their audit
    /// entries in one transaction: all or none.
    pub fn record_bundles(
        &mut self,
        bundles: &[InstalledBundle],
        tables: &[ReferenceTable],
        actor: &Actor,
    ) -> Result<(), Error> {
        self.write(actor, Class::Data, |tx| {
            for b in bundles {
                tx.execute(
                    "INSERT INTO bundles (cid, kind, name, version, target, manifest, installed_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (cid) DO NOTHING",
                    params![b.cid, b.kind, b.name, b.version, b.target, b.manifest.to_string(), b.installed_at],
                )
                .map_err(tx_db)?;
            }
            for t in tables {
                tx.execute(
                    "INSERT INTO reference_tables (pack_cid, pack_name, table_name, rows)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                    params![t.pack_cid, t.pack_name, t.table, t.rows],
                )
                .map_err(tx_db)?;
            }
            let audits = bundles
                .iter()
                .map(|b| Audit {
                    action: "bundle.install",
                    target: b.cid.clone(),
                    detail: serde_json::json!({ "kind": b.kind, "name": b.name, "version": b.version }),
                })
                .collect();
            Ok(((), audits, vec![]))
        })?;
        Ok(())
    }

    /// The packs evaluations use (one version per name), by name.
    pub fn active_packs(&self) -> Result<Vec<InstalledBundle>, Error> {
        let active: Vec<String> = {
            let mut stmt = self
                .conn()
                .prepare_cached("SELECT cid FROM active_packs ORDER BY name")
                .map_err(self.db())?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(self.db())?;
            rows.collect::<Result<_, _>>().map_err(self.db())?
        };
        let installed = self.bundles(Some("pack"))?;
        Ok(active
            .iter()
            .filter_map(|cid| installed.iter().find(|b| &b.cid == cid).cloned())
            .collect())
    }

    fn table_rows(&self, pack_cid: &str) -> Result<Vec<(String, String)>, Error> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT table_name, rows FROM reference_tables WHERE pack_cid = ?1 ORDER BY table_name",
            )
            .map_err(self.db())?;
        let rows = stmt
            .query_map([pack_cid], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    /// The product as the kernel sees it: entity, components and document facts.
    pub fn kernel_product(&self, id: &str) -> Result<Product, Error> {
        let e = self.entity(id)?;
        if e.kind != crate::entities::EntityKind::Product {
            return Err(Error::Invalid(format!(
                "{id:?} is a {}; only products can be evaluated",
                e.kind.as_str()
            )));
        }
        let documents = self
            .documents(Some(id))?
            .into_iter()
            .map(|d| DocumentFact {
                kind: d.kind,
                expires: d.expires,
            })
            .collect();
        Ok(Product {
            id: e.id,
            name: e.name,
            category: e.category,
            markets: e.markets,
            components: e.components,
            documents,
        })
    }

    /// Locks, newest first.
    pub fn locks(&self, product: Option<&str>, limit: usize) -> Result<Vec<Lock>, Error> {
        let ids: Vec<String> = {
            let mut stmt = self
                .conn()
                .prepare_cached(
                    "SELECT id FROM locks WHERE ?1 IS NULL OR product_id = ?1
                     ORDER BY created_at DESC, id LIMIT ?2",
                )
                .map_err(self.db())?;
            let rows = stmt
                .query_map(params![product, limit as i64], |r| r.get(0))
                .map_err(self.db())?;
            rows.collect::<Result<_, _>>().map_err(self.db())?
        };
        ids.iter().map(|id| self.lock(id)).collect()
    }

    /// One lock.
    pub fn lock(&self, id: &str) -> Result<Lock, Error> {
        let row: Option<(String, String, String, String, String)> = self
            .conn()
            .query_row(
                "SELECT product_id, created_at, verdict, content, result FROM locks WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(self.db())?;
        let (product_id, created_at, verdict, content, result) =
            row.ok_or_else(|| Error::NotFound(format!("no Compliance Lock {id:?}")))?;
        let broken = |what: &str, e: serde_json::Error| {
            Error::DataDir(format!(
                "lock {id}: stored {what} is unreadable ({e}); restore from a backup"
            ))
        };
        Ok(Lock {
            id: id.to_string(),
            product_id,
            created_at,
            verdict: parse_verdict(&verdict),
            content: serde_json::from_str(&content).map_err(|e| broken("content", e))?,
            result: serde_json::from_str(&result).map_err(|e| broken("result", e))?,
        })
    }

    fn lock_bytes(&self, id: &str) -> Result<(String, Vec<u8>), Error> {
        self.conn()
            .query_row(
                "SELECT content, result FROM locks WHERE id = ?1",
                [id],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?.into_bytes())),
            )
            .optional()
            .map_err(self.db())?
            .ok_or_else(|| Error::NotFound(format!("no Compliance Lock {id:?}")))
    }

    /// Evaluation records, newest first.
    pub fn evaluations(
        &self,
        product: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EvaluationRecord>, Error> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT seq, product_id, lock_id, verdict, at, actor FROM evaluations
                 WHERE ?1 IS NULL OR product_id = ?1 ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(self.db())?;
        let rows = stmt
            .query_map(params![product, limit as i64], |r| {
                Ok(EvaluationRecord {
                    seq: r.get(0)?,
                    product_id: r.get(1)?,
                    lock_id: r.get(2)?,
                    verdict: parse_verdict(&r.get::<_, String>(3)?),
                    at: r.get(4)?,
                    actor: r.get(5)?,
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }
}

impl Appliance {
    fn rules(&self, pack: &PinnedPack) -> Result<Option<RuleSet>, Error> {
        let hex = pack.cid.strip_prefix("sha256:").unwrap_or(&pack.cid);
        let path = self.dir.payloads().join(hex).join("rules.json");
        if !path.is_file() {
            return Ok(None);
        }
        Ok(Some(RuleSet::parse(&read_capped(&path)?)?))
    }

    /// The values an environment pack lists for a field: the `enum` at
    /// `pointer` in its `environment.json` (`what` names it in errors), if
    /// it has one.
    fn environment_enum(
        &self,
        pack: &PinnedPack,
        pointer: &str,
        what: &str,
    ) -> Result<Option<Vec<String>>, Error> {
        let hex = pack.cid.strip_prefix("sha256:").unwrap_or(&pack.cid);
        let path = self.dir.payloads().join(hex).join("environment.json");
        if !path.is_file() {
            return Ok(None);
        }
        let env: serde_json::Value = serde_json::from_slice(&read_capped(&path)?)
            .map_err(|e| Error::Invalid(format!("pack {} environment.json: {e}", pack.name)))?;
        let Some(values) = env.pointer(pointer).and_then(|v| v.as_array()) else {
            return Ok(None);
        };
        values
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "pack {} environment.json: the {what} enum must list strings",
                    pack.name
                ))
            })
    }

    /// The product categories an environment pack defines.
    fn environment_categories(&self, pack: &PinnedPack) -> Result<Option<Vec<String>>, Error> {
        self.environment_enum(pack, CATEGORY_ENUM, "product category")
    }

    /// What the active environment packs allow at intake: their product
    /// categories and component units (each sorted, as written there), None
    /// where no active pack lists any.
    pub(crate) fn intake_schema(&self) -> Result<crate::entities::Schema, Error> {
        let mut schema = crate::entities::Schema::default();
        for b in self.store.active_packs()? {
            let pack = PinnedPack {
                name: b.name,
                version: b.version,
                cid: b.cid,
            };
            if let Some(c) = self.environment_categories(&pack)? {
                schema.categories.get_or_insert_with(Vec::new).extend(c);
            }
            if let Some(u) = self.environment_enum(&pack, UNIT_ENUM, "component unit")? {
                schema.units.get_or_insert_with(Vec::new).extend(u);
            }
        }
        for list in [&mut schema.categories, &mut schema.units]
            .into_iter()
            .flatten()
        {
            list.sort();
            list.dedup();
        }
        Ok(schema)
    }

    /// Compiles `packs` (rules and tables) into a program and its pins; the
    /// product categories are those the packs' environments define.
    pub(crate) fn compile(&self, packs: Vec<PinnedPack>) -> Result<Compiled, Error> {
        let mut logic = Vec::new();
        let mut tables = Tables::new();
        let mut pinned = Vec::new();
        let mut categories: Option<Vec<String>> = None;
        for p in &packs {
            // Never evaluate with a pack whose files went missing or changed:
            // a lost rules.json would silently drop its rules.
            self.payloads.check(
                &self.dir,
                &format!("pack {} {}", p.name, p.version),
                &p.cid,
                crate::payloads::Depth::Digests,
            )?;
            if let Some(c) = self.environment_categories(p)? {
                categories.get_or_insert_with(Vec::new).extend(c);
            }
            if let Some(rules) = self.rules(p)? {
                logic.push(LogicPack {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    cid: p.cid.clone(),
                    rules,
                });
            }
            for (table, rows) in self.store.table_rows(&p.cid)? {
                let reference = format!("{}:{table}", p.name);
                let parsed: Vec<serde_json::Map<String, serde_json::Value>> =
                    serde_json::from_str(&rows).map_err(|e| {
                        Error::DataDir(format!("reference table {reference} is unreadable: {e}"))
                    })?;
                pinned.push(PinnedTable {
                    table: reference.clone(),
                    pack_cid: p.cid.clone(),
                    sha256: sha256_hex(rows.as_bytes()),
                });
                tables.insert(reference, kernel::Table { rows: parsed });
            }
        }
        let mut program = Program::compile(&logic, &tables)?;
        if let Some(categories) = categories {
            program = program.with_categories(categories);
        }
        Ok(Compiled {
            key: packs.iter().map(|p| p.cid.clone()).collect(),
            program: Arc::new(program),
            packs,
            tables: pinned,
        })
    }

    /// The program for the active packs, compiled once per set of packs.
    fn active_program(&mut self) -> Result<&Compiled, Error> {
        let mut packs = Vec::new();
        for b in self.store.active_packs()? {
            let requirement = b
                .manifest
                .get("handler_vm_version")
                .and_then(|v| v.as_str())
                .unwrap_or("*");
            if !kernel::vm_satisfies(requirement)? {
                return Err(Error::Conflict(format!(
                    "pack {} {} needs kernel VM {requirement}, this spoke runs {}; install an OS update that carries a newer kernel",
                    b.name,
                    b.version,
                    kernel::VM_VERSION
                )));
            }
            packs.push(PinnedPack {
                name: b.name,
                version: b.version,
                cid: b.cid,
            });
        }
        let key: Vec<String> = packs.iter().map(|p| p.cid.clone()).collect();
        if self.program.as_ref().is_none_or(|c| c.key != key) {
            self.program = Some(self.compile(packs)?);
        }
        self.program
            .as_ref()
            .ok_or_else(|| Error::DataDir("no compiled program".into()))
    }

    /// Evaluates products against the active packs and records, per product,
    /// an evaluation and its Compliance Lock, all in one transaction.
    pub fn evaluate(&mut self, actor: &Actor, products: &[String]) -> Result<Vec<Outcome>, Error> {
        self.evaluate_as_of(actor, products, None)
    }

    /// Evaluates products as the law applies on `as_of` (`YYYY-MM-DD`,
    /// today in UTC when None): documents are judged valid or expired on
    /// that day, and the lock pins the date, so a replay gives the same
    /// bytes whenever it runs.
    pub fn evaluate_as_of(
        &mut self,
        actor: &Actor,
        products: &[String],
        as_of: Option<&str>,
    ) -> Result<Vec<Outcome>, Error> {
        actor.require(Permission::Evaluate)?;
        let as_of = match as_of {
            Some(date) => evaluation_date(date)?,
            None => today(),
        };
        self.store.check_writable()?;
        let compiled = self.active_program()?;
        if compiled.packs.is_empty() {
            return Err(Error::Conflict(
                "no packs are active; import a product medium (`spoke import`) or approve a pending change (`spoke changes list`)".into(),
            ));
        }
        let (program, packs, tables) = (
            Arc::clone(&compiled.program),
            compiled.packs.clone(),
            compiled.tables.clone(),
        );
        let mut rows = Vec::with_capacity(products.len());
        for id in products {
            let product = self.store.kernel_product(id)?;
            let evaluation = program.evaluate(&product, &as_of, kernel::DEFAULT_FUEL)?;
            let result = evaluation.to_canonical_json();
            let content = LockContent {
                format: LOCK_FORMAT.into(),
                kernel_build: kernel::kernel_build().into(),
                vm_version: kernel::VM_VERSION.into(),
                as_of: as_of.clone(),
                product,
                packs: packs.clone(),
                tables: tables.clone(),
                result_sha256: sha256_hex(&result),
            };
            let content_bytes = serde_json::to_vec(&content)
                .map_err(|e| Error::Invalid(format!("lock content: {e}")))?;
            rows.push((
                id.clone(),
                sha256_hex(&content_bytes),
                content_bytes,
                result,
                evaluation,
            ));
        }
        self.store.write(actor, Class::Data, |tx| {
            let at = now();
            let mut audits = Vec::new();
            for (id, lock_id, content, result, evaluation) in &rows {
                let verdict = verdict_str(evaluation.verdict);
                tx.execute(
                    "INSERT INTO locks (id, product_id, created_at, kernel_build, verdict, content, result)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING",
                    params![
                        lock_id,
                        id,
                        at,
                        kernel::kernel_build(),
                        verdict,
                        String::from_utf8_lossy(content),
                        String::from_utf8_lossy(result)
                    ],
                )
                .map_err(tx_db)?;
                tx.execute(
                    "INSERT INTO evaluations (product_id, lock_id, verdict, at, actor) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, lock_id, verdict, at, actor.name],
                )
                .map_err(tx_db)?;
                audits.push(Audit {
                    action: "evaluation.run",
                    target: id.clone(),
                    detail: serde_json::json!({ "lock": lock_id, "verdict": verdict }),
                });
            }
            Ok(((), audits, vec![]))
        })?;
        Ok(rows
            .into_iter()
            .map(|(product_id, lock_id, _, _, evaluation)| Outcome {
                product_id,
                lock_id,
                verdict: evaluation.verdict,
                evaluation,
            })
            .collect())
    }

    /// Re-runs a lock with exactly the packs and reference data it pins, with
    /// the semantics of the kernel VM version it records, and compares the
    /// bytes with the stored result. Fails if a pinned pack is
    /// no longer installed or a pinned table changed.
    pub fn replay(&self, lock_id: &str) -> Result<Replay, Error> {
        let (content, stored) = self.store.lock_bytes(lock_id)?;
        if sha256_hex(content.as_bytes()) != lock_id {
            return Err(Error::DataDir(format!(
                "lock {lock_id}: its content no longer matches its id (tampered); restore from a backup"
            )));
        }
        let content: LockContent = serde_json::from_str(&content)
            .map_err(|e| Error::DataDir(format!("lock {lock_id}: unreadable content: {e}")))?;
        for p in &content.packs {
            if !self.store.has_bundle(&p.cid)? {
                return Err(Error::NotFound(format!(
                    "lock {lock_id} pins pack {} {} ({}), which is not installed; import it to replay",
                    p.name, p.version, p.cid
                )));
            }
        }
        let compiled = self.compile(content.packs.clone())?;
        if compiled.tables != content.tables {
            return Err(Error::Conflict(format!(
                "lock {lock_id}: the stored reference data differs from what the lock pins; the database was altered"
            )));
        }
        // A lock replays with the semantics of the VM that made it.
        let semantics = Semantics::of_vm(&content.vm_version)?;
        let evaluation = compiled.program.evaluate_as(
            semantics,
            &content.product,
            &content.as_of,
            kernel::DEFAULT_FUEL,
        )?;
        let bytes = evaluation.to_canonical_json();
        Ok(Replay {
            lock_id: lock_id.to_string(),
            identical: bytes == stored,
            kernel_build_locked: content.kernel_build,
            kernel_build_now: kernel::kernel_build().to_string(),
            bytes,
        })
    }
}
