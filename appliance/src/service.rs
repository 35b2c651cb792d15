//! [`Appliance`]: the store, the object store and the search index opened
//! together, so every change to searchable data reaches the index right
//! after its transaction commits, and an index left behind by a crash is
//! rebuilt at open.

use crate::auth::{Actor, Permission};
use crate::compliance::Compiled;
use crate::entities::{Entity, EntityInput, EntityKind, Relationship};
use crate::objects::ObjectStore;
use crate::payloads::Depth;
use crate::store::{now, Audit, Class, Store};
use crate::{DataDir, Error, Lifecycle};
use std::collections::HashSet;
use std::time::Instant;

/// The spoke's stores and compliance core behind one handle.
pub struct Appliance {
    pub(crate) dir: DataDir,
    pub(crate) store: Store,
    pub(crate) objects: ObjectStore,
    pub(crate) index: search::Index,
    /// Document passages, for grounded answers (see [`crate::ai`]).
    pub(crate) passages: search::Index,
    pub(crate) max_upload: u64,
    /// Where PDF text is read.
    pub(crate) extractor: crate::pdftext::Extractor,
    pub(crate) program: Option<Compiled>,
    /// Checks installed payloads against their bundle indexes.
    pub(crate) payloads: crate::payloads::Payloads,
}

/// How long a request to release a LEGAL_HOLD waits for a second
/// administrator.
pub const RELEASE_REQUEST_HOURS: i64 = 24;

/// Days after a LEGAL_HOLD release in which decommissioning cannot start,
/// unless configured otherwise (`spoke lifecycle --cooling-off-days`):
/// time for counsel to reverse a mistaken release before anything can be
/// destroyed.
pub const DEFAULT_COOLING_OFF_DAYS: u32 = 30;

/// What a lifecycle request did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum LifecycleChange {
    /// The state changed.
    Changed {
        /// The new state.
        state: Lifecycle,
    },
    /// Leaving LEGAL_HOLD was asked for; another administrator must confirm.
    ReleaseRequested {
        /// The request.
        request: ReleaseRequest,
    },
}

/// The lifecycle state as `spoke lifecycle` and `GET /api/v1/lifecycle`
/// show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LifecycleView {
    /// The state.
    pub state: Lifecycle,
    /// A release of the LEGAL_HOLD waiting for a second administrator.
    pub release_request: Option<ReleaseRequest>,
    /// Days after a release in which decommissioning cannot start.
    pub cooling_off_days: u32,
    /// When the running cooling-off period ends, if one runs.
    pub cooling_off_until: Option<String>,
}

/// A pending request to release the LEGAL_HOLD.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReleaseRequest {
    /// The administrator who asked.
    pub by: String,
    /// The state asked for.
    pub to: Lifecycle,
    /// The legal clearance given.
    pub reason: String,
    /// When (RFC 3339).
    pub at: String,
}

impl ReleaseRequest {
    fn expired(&self) -> bool {
        self.at.parse::<jiff::Timestamp>().map_or(true, |at| {
            jiff::Timestamp::now().duration_since(at)
                > jiff::SignedDuration::from_hours(RELEASE_REQUEST_HOURS)
        })
    }
}

/// The result of a deep health check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Health {
    /// Whether every check passed.
    pub ok: bool,
    /// Each check: name, passed, detail.
    pub checks: Vec<(String, bool, String)>,
    /// Milliseconds the checks took.
    pub millis: u64,
}

impl Appliance {
    /// Opens the data directory's stores; rebuilds the search index if it
    /// does not match the database (first start, crash, or deletion).
    pub fn open(dir: &DataDir) -> Result<Appliance, Error> {
        let store = dir.open_store()?;
        let index = search::Index::open(&dir.search_index())?;
        let passages = search::Index::open(&dir.passage_index())?;
        let mut a = Appliance {
            dir: dir.clone(),
            store,
            objects: ObjectStore::new(dir.objects()),
            index,
            passages,
            max_upload: crate::documents::DEFAULT_MAX_UPLOAD,
            extractor: crate::pdftext::Extractor::default(),
            program: None,
            payloads: Default::default(),
        };
        let generation = Some(a.store.generation()?);
        if a.index.generation() != generation || a.passages.generation() != generation {
            tracing::info!("search index out of step with the database; rebuilding");
            // Derived data: a spoke that cannot rebuild it (a full disk)
            // still starts and serves from the database; health shows it.
            if let Err(e) = a.reindex() {
                tracing::warn!("the search index could not be rebuilt: {e}; it catches up at the next write or start");
            }
        }
        a.apply_licence(&Actor::cli())?;
        // Cheap at start (sizes); evaluations check digests before they
        // rely on a pack, and `/health/deep` checks everything.
        for (what, cid) in a.relied_on()? {
            if let Err(e) = a.payloads.check(&a.dir, &what, &cid, Depth::Sizes) {
                tracing::error!("{e}");
            }
        }
        Ok(a)
    }

    /// The data directory.
    pub fn dir(&self) -> &DataDir {
        &self.dir
    }

    /// The database, for reads and for administration (users, tokens).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The database, mutable (users, tokens, sessions, bundle records).
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// Sets the upload cap in bytes.
    pub fn set_max_upload(&mut self, bytes: u64) {
        self.max_upload = bytes;
    }

    /// The upload cap in bytes.
    pub fn max_upload(&self) -> u64 {
        self.max_upload
    }

    fn doc_for(&self, kind: &str, id: &str) -> Result<Option<search::Doc>, Error> {
        if kind == "entity" {
            let Some(e) = found(self.store.entity(id))? else {
                return Ok(None);
            };
            Ok(Some(entity_doc(&e)))
        } else {
            let Some(d) = found(self.store.document(id))? else {
                return Ok(None);
            };
            let mut tags = vec![format!("doc:{}", d.kind)];
            if let Some(e) = &d.entity {
                tags.push(format!("entity:{e}"));
            }
            Ok(Some(search::Doc {
                id: format!("document:{}", d.id),
                kind: "document".into(),
                title: d.filename,
                body: self.store.document_text(id)?,
                tags,
            }))
        }
    }

    /// Brings the derived indexes up to the committed generation after a
    /// write. It never fails the write, which has committed: when an update
    /// fails (a full disk), the indexes stay at their older generation, the
    /// failure is logged and shown by `/health/deep`, and the next write (or
    /// start) catches up by rebuilding them from the database, the durable
    /// record of what they must hold.
    pub(crate) fn after_write(&mut self, touched: &[(String, String)], generation: u64) {
        if touched.is_empty() {
            return;
        }
        let previous = generation.checked_sub(1);
        let result =
            if self.index.generation() == previous && self.passages.generation() == previous {
                self.update_indexes(touched, generation)
            } else {
                tracing::info!(
                    "search index behind the database; rebuilding it to generation {generation}"
                );
                self.reindex().map(drop)
            };
        if let Err(e) = result {
            tracing::warn!(
                "the write committed (generation {generation}), but the search index could not follow: {e}; it catches up at the next write or start"
            );
        }
    }

    /// Applies what one write touched to the derived indexes.
    fn update_indexes(
        &mut self,
        touched: &[(String, String)],
        generation: u64,
    ) -> Result<(), Error> {
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        let mut passages = Vec::new();
        for (kind, id) in touched {
            match self.doc_for(kind, id)? {
                Some(doc) => {
                    if kind == "document" {
                        passages.extend(passage_docs(&doc));
                    }
                    upserts.push(doc)
                }
                None => deletes.push(format!("{kind}:{id}")),
            }
        }
        self.index.apply(&upserts, &deletes, generation)?;
        // Documents are never edited in place, so a document's passages
        // are only ever added.
        self.passages.apply(&passages, &[], generation)?;
        Ok(())
    }

    /// Rebuilds the search index from the database; returns documents indexed.
    pub fn reindex(&mut self) -> Result<u64, Error> {
        let generation = self.store.generation()?;
        let mut docs = Vec::new();
        for e in self.store.entities(None, usize::MAX >> 1, 0)? {
            docs.push(entity_doc(&e));
        }
        let mut passages = Vec::new();
        for d in self.store.documents(None)? {
            if let Some(doc) = self.doc_for("document", &d.id)? {
                passages.extend(passage_docs(&doc));
                docs.push(doc);
            }
        }
        self.passages.rebuild(passages, generation)?;
        Ok(self.index.rebuild(docs, generation)?)
    }

    /// Full-text search (BM25) with filters.
    pub fn search(
        &self,
        actor: &Actor,
        query: &str,
        filter: &search::Filter,
        limit: usize,
    ) -> Result<Vec<search::Hit>, Error> {
        actor.require(Permission::Read)?;
        if query.trim().is_empty() {
            return Err(Error::Invalid(
                "the search query is empty; type at least one word".into(),
            ));
        }
        let mut hits = self.index.search(query, filter, limit)?;
        for h in &mut hits {
            if let Some((_, id)) = h.id.split_once(':') {
                h.id = id.to_string();
            }
        }
        Ok(hits)
    }

    /// Creates (`replace` None) or replaces an entity.
    pub fn put_entity(
        &mut self,
        actor: &Actor,
        input: EntityInput,
        replace: Option<&str>,
    ) -> Result<Entity, Error> {
        let schema = self.intake_schema()?;
        let mut w = self
            .store
            .put_entities(actor, vec![input], replace, &schema)?;
        self.after_write(&w.touched, w.generation);
        Ok(w.value.remove(0))
    }

    /// Creates several entities in one transaction: all or none.
    pub fn add_entities(
        &mut self,
        actor: &Actor,
        inputs: Vec<EntityInput>,
    ) -> Result<Vec<Entity>, Error> {
        let schema = self.intake_schema()?;
        let w = self.store.put_entities(actor, inputs, None, &schema)?;
        self.after_write(&w.touched, w.generation);
        Ok(w.value)
    }

    /// Deletes an entity.
    pub fn delete_entity(&mut self, actor: &Actor, id: &str) -> Result<(), Error> {
        let w = self.store.delete_entity(actor, id)?;
        self.after_write(&w.touched, w.generation);
        Ok(())
    }

    /// Adds a relationship.
    pub fn relate(&mut self, actor: &Actor, r: &Relationship) -> Result<(), Error> {
        self.store.relate(actor, r)
    }

    /// Every product id, for evaluating them all.
    pub fn product_ids(&self) -> Result<Vec<String>, Error> {
        Ok(self
            .store
            .entities(Some(EntityKind::Product), usize::MAX >> 1, 0)?
            .into_iter()
            .map(|e| e.id)
            .collect())
    }

    /// Changes the lifecycle state (admin only). Leaving LEGAL_HOLD takes
    /// two administrators: the first asks, with the legal clearance as the
    /// reason ([`LifecycleChange::ReleaseRequested`]); another one confirms
    /// it within [`RELEASE_REQUEST_HOURS`] by asking for the same state
    /// ([`LifecycleChange::Changed`]). The same person asking again is
    /// refused. Each step is audited; the release starts the cooling-off
    /// period in which decommissioning cannot start.
    pub fn set_lifecycle(
        &mut self,
        actor: &Actor,
        to: Lifecycle,
        reason: &str,
    ) -> Result<LifecycleChange, Error> {
        actor.require(Permission::Admin)?;
        let from = self.store.lifecycle()?;
        let release = from == Lifecycle::LegalHold && to != Lifecycle::LegalHold;
        if release && reason.trim().is_empty() {
            return Err(Error::Invalid(
                "leaving LEGAL_HOLD needs the legal clearance as the reason".into(),
            ));
        }
        let pending = if release {
            self.release_request()?
                .filter(|r| r.to == to && !r.expired())
        } else {
            None
        };
        if release {
            match pending {
                Some(r) if r.by == actor.name => {
                    return Err(Error::Conflict(format!(
                        "{} already asked to release the LEGAL_HOLD (to {}, at {}): another administrator must confirm it",
                        r.by, r.to, r.at
                    )))
                }
                Some(_) => {}
                None => return self.request_release(actor, to, reason),
            }
        }
        self.store.write(actor, Class::Admin, |tx| {
            let set = |key: &str, value: &str| crate::licence::put_setting(tx, key, value);
            set("lifecycle", to.as_str())?;
            // The state is now the administrator's, not the licence's: a
            // renewed licence no longer lifts it (nor may a medium bringing
            // one be installed through it).
            tx.execute(
                "DELETE FROM settings WHERE key IN ('suspended_by', 'hold_release')",
                [],
            )
            .map_err(crate::store::tx_db)?;
            let mut detail =
                serde_json::json!({ "from": from.as_str(), "reason": reason, "at": now() });
            if let Some(r) = &pending {
                set("hold_released_at", &now())?;
                detail["requested_by"] = r.by.clone().into();
                detail["request_reason"] = r.reason.clone().into();
                detail["confirmed_by"] = actor.name.clone().into();
            }
            Ok((
                (),
                vec![Audit {
                    action: "lifecycle.set",
                    target: to.as_str().into(),
                    detail,
                }],
                vec![],
            ))
        })?;
        Ok(LifecycleChange::Changed { state: to })
    }

    /// The lifecycle state with its pending release and cooling-off period.
    pub fn lifecycle_view(&self) -> Result<LifecycleView, Error> {
        Ok(LifecycleView {
            state: self.store.lifecycle()?,
            release_request: self.release_request()?.filter(|r| !r.expired()),
            cooling_off_days: self.cooling_off_days()?,
            cooling_off_until: self.cooling_off_until()?,
        })
    }

    /// The pending request to release the LEGAL_HOLD, if any.
    pub fn release_request(&self) -> Result<Option<ReleaseRequest>, Error> {
        crate::licence::setting(self.store.conn(), "hold_release")
            .map_err(self.store.db())?
            .map(|t| {
                serde_json::from_str(&t).map_err(|e| {
                    Error::DataDir(format!(
                        "the stored LEGAL_HOLD release request is unreadable: {e}"
                    ))
                })
            })
            .transpose()
    }

    fn request_release(
        &mut self,
        actor: &Actor,
        to: Lifecycle,
        reason: &str,
    ) -> Result<LifecycleChange, Error> {
        let request = ReleaseRequest {
            by: actor.name.clone(),
            to,
            reason: reason.to_string(),
            at: now(),
        };
        let text = serde_json::to_string(&request).map_err(|e| Error::Invalid(e.to_string()))?;
        self.store.write(actor, Class::Admin, |tx| {
            crate::licence::put_setting(tx, "hold_release", &text)?;
            Ok((
                (),
                vec![Audit {
                    action: "lifecycle.release_requested",
                    target: to.as_str().into(),
                    detail: serde_json::json!({ "reason": reason }),
                }],
                vec![],
            ))
        })?;
        Ok(LifecycleChange::ReleaseRequested { request })
    }

    /// Days after a LEGAL_HOLD release in which decommissioning cannot
    /// start (default [`DEFAULT_COOLING_OFF_DAYS`]).
    pub fn cooling_off_days(&self) -> Result<u32, Error> {
        Ok(
            crate::licence::setting(self.store.conn(), "hold_cooling_off_days")
                .map_err(self.store.db())?
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_COOLING_OFF_DAYS),
        )
    }

    /// Sets the cooling-off period (admin only). Shortening it is refused
    /// under LEGAL_HOLD, while a release is pending and during a running
    /// cooling-off period, so it can never cut short the one it guards.
    pub fn set_cooling_off_days(&mut self, actor: &Actor, days: u32) -> Result<u32, Error> {
        actor.require(Permission::Admin)?;
        if days > 3660 {
            return Err(Error::Invalid(format!(
                "a cooling-off period of {days} days is over ten years; give at most 3660"
            )));
        }
        let current = self.cooling_off_days()?;
        if days < current {
            if self.store.lifecycle()? == Lifecycle::LegalHold || self.release_request()?.is_some()
            {
                return Err(Error::Conflict(
                    "the cooling-off period cannot be shortened under LEGAL_HOLD".into(),
                ));
            }
            if let Some(until) = self.cooling_off_until()? {
                return Err(Error::Conflict(format!(
                    "the cooling-off period after the last LEGAL_HOLD release runs until {until}; it cannot be shortened before then"
                )));
            }
        }
        self.store.write(actor, Class::Admin, |tx| {
            crate::licence::put_setting(tx, "hold_cooling_off_days", &days.to_string())?;
            Ok((
                (),
                vec![Audit {
                    action: "lifecycle.cooling_off",
                    target: "spoke".into(),
                    detail: serde_json::json!({ "from_days": current, "to_days": days }),
                }],
                vec![],
            ))
        })?;
        Ok(days)
    }

    /// When the cooling-off period after the last LEGAL_HOLD release ends,
    /// if it has not yet.
    pub(crate) fn cooling_off_until(&self) -> Result<Option<String>, Error> {
        let Some(released) = crate::licence::setting(self.store.conn(), "hold_released_at")
            .map_err(self.store.db())?
        else {
            return Ok(None);
        };
        let released: jiff::Timestamp = released.parse().map_err(|e| {
            Error::DataDir(format!(
                "the stored LEGAL_HOLD release time is unreadable: {e}"
            ))
        })?;
        let until = released
            .checked_add(jiff::SignedDuration::from_hours(
                24 * i64::from(self.cooling_off_days()?),
            ))
            .map_err(|e| Error::DataDir(format!("cooling-off period: {e}")))?;
        Ok((jiff::Timestamp::now() < until).then(|| until.to_string()))
    }

    /// Row counts per table, for metrics and status (numbers only, never content).
    pub fn counts(&self) -> Result<Vec<(String, i64)>, Error> {
        [
            "entities",
            "components",
            "edges",
            "documents",
            "evaluations",
            "locks",
            "audit_log",
            "users",
            "tokens",
            "bundles",
        ]
        .into_iter()
        .map(|t| {
            let n: i64 = self
                .store
                .conn()
                .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                .map_err(self.store.db())?;
            Ok((t.to_string(), n))
        })
        .collect()
    }

    /// Counts for the report a spoke sends its hub: numbers only, never names,
    /// identifiers or content (seed 000 §8, "what spokes never report").
    pub fn report_counts(&self) -> Result<std::collections::BTreeMap<String, i64>, Error> {
        let since = jiff::Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_hours(24))
            .map(|t| {
                jiff::Timestamp::from_second(t.as_second())
                    .unwrap_or(t)
                    .to_string()
            })
            .unwrap_or_default();
        let queries = [
            (
                "products",
                "SELECT count(*) FROM entities WHERE kind = 'product'",
            ),
            (
                "substances",
                "SELECT count(*) FROM entities WHERE kind = 'substance'",
            ),
            (
                "suppliers",
                "SELECT count(*) FROM entities WHERE kind = 'supplier'",
            ),
            ("documents", "SELECT count(*) FROM documents"),
            ("evaluations", "SELECT count(*) FROM evaluations"),
            (
                "evaluations_24h",
                "SELECT count(*) FROM evaluations WHERE at >= ?1",
            ),
            ("locks", "SELECT count(*) FROM locks"),
            ("users", "SELECT count(*) FROM users WHERE disabled = 0"),
            (
                "pending_changes",
                "SELECT count(*) FROM changes WHERE status = 'pending'",
            ),
            ("audit_entries", "SELECT count(*) FROM audit_log"),
        ];
        queries
            .into_iter()
            .map(|(name, sql)| {
                let mut stmt = self.store.conn().prepare(sql).map_err(self.store.db())?;
                let n: i64 = if sql.contains("?1") {
                    stmt.query_row([&since], |r| r.get(0))
                } else {
                    stmt.query_row([], |r| r.get(0))
                }
                .map_err(self.store.db())?;
                Ok((name.to_string(), n))
            })
            .collect()
    }

    /// What `/api/v1/status` and `spoke status` report.
    pub fn status(&self) -> Result<serde_json::Value, Error> {
        let packs: Vec<String> = self
            .store
            .active_packs()?
            .into_iter()
            .map(|b| format!("{}@{}", b.name, b.version))
            .collect();
        let counts: serde_json::Map<String, serde_json::Value> = self
            .counts()?
            .into_iter()
            .map(|(t, n)| (t, n.into()))
            .collect();
        Ok(serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "lifecycle": self.store.lifecycle()?,
            "kernel_build": kernel::kernel_build(),
            "vm_version": kernel::VM_VERSION,
            "active_packs": packs,
            "counts": counts,
            "search_generation": self.index.generation(),
            "licence": self.store.licence()?,
            "pending_changes": self
                .store
                .changes()?
                .iter()
                .filter(|c| c.status == "pending")
                .map(|c| c.id.clone())
                .collect::<Vec<_>>(),
            "max_upload_bytes": self.max_upload,
            "disk": self.disk()?,
        }))
    }

    /// Bytes the data directory's files take, and the space its filesystem
    /// has left and in all (for the console's overview).
    fn disk(&self) -> Result<serde_json::Value, Error> {
        let root = self.dir.root();
        let mut used = 0u64;
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            // Files an import or backup removes while this counts are skipped.
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                if meta.is_dir() {
                    stack.push(entry.path());
                } else if meta.is_file() {
                    used += meta.len();
                }
            }
        }
        let fs = nix::sys::statvfs::statvfs(root).map_err(|e| Error::Io {
            path: root.to_path_buf(),
            source: e.into(),
        })?;
        let block = fs.fragment_size();
        Ok(serde_json::json!({
            "data_bytes": used,
            "free_bytes": fs.blocks_available() * block,
            "total_bytes": fs.blocks() * block,
        }))
    }

    /// The bundles evaluations and answers rely on now: active packs and
    /// active models, named for errors, with their CIDs.
    fn relied_on(&self) -> Result<Vec<(String, String)>, Error> {
        let mut all: Vec<(String, String)> = self
            .store
            .active_packs()?
            .into_iter()
            .map(|b| (format!("pack {} {}", b.name, b.version), b.cid))
            .collect();
        all.extend(
            self.models()?
                .into_iter()
                .filter(|m| m.active)
                .map(|m| (format!("model {} {}", m.name, m.version), m.cid)),
        );
        Ok(all)
    }

    /// Checks that the payload of every installed bundle is as its signed
    /// index lists it (digests cached while files are unchanged).
    fn payload_check(&self, depth: Depth) -> (String, bool, String) {
        let bundles = match self.store.bundles(None) {
            Ok(b) => b,
            Err(e) => return ("payloads".into(), false, e.to_string()),
        };
        let mut bytes = 0;
        let mut bad = Vec::new();
        for b in &bundles {
            let what = format!("{} {} {}", b.kind, b.name, b.version);
            match self.payloads.check(&self.dir, &what, &b.cid, depth) {
                Ok(n) => bytes += n,
                Err(e) => bad.push(e.to_string()),
            }
        }
        if bad.is_empty() {
            (
                "payloads".into(),
                true,
                format!(
                    "{} bundles, {bytes} bytes as signed ({})",
                    bundles.len(),
                    match depth {
                        Depth::Sizes => "sizes checked; `spoke verify --full` re-hashes them",
                        Depth::Digests => "digests checked",
                    }
                ),
            )
        } else {
            ("payloads".into(), false, bad.join("; "))
        }
    }

    /// Store checks for `/health/deep`: database integrity (SQLite's full
    /// `integrity_check`), audit chain, every document's object present and
    /// intact, every installed payload as signed, index in step.
    pub fn deep_health(&self) -> Health {
        self.verify(Depth::Digests)
    }

    /// The checks of [`Appliance::deep_health`], with payloads checked to
    /// `depth` (`spoke verify`).
    pub fn verify(&self, depth: Depth) -> Health {
        let start = Instant::now();
        let (mut checks, _) = store_checks(&self.store, &self.objects, &HashSet::new());
        checks.push(self.payload_check(depth));
        let generation = self.store.generation().ok();
        checks.push((
            "search_index".into(),
            generation.is_some()
                && self.index.generation() == generation
                && self.passages.generation() == generation,
            format!(
                "search index at generation {:?}, passage index {:?}, database {:?} (behind: it catches up at the next write or start, or run `spoke reindex`)",
                self.index.generation(),
                self.passages.generation(),
                generation
            ),
        ));
        Health::of(checks, start)
    }
}

impl Health {
    fn of(checks: Vec<(String, bool, String)>, start: Instant) -> Health {
        Health {
            ok: checks.iter().all(|c| c.1),
            checks,
            millis: start.elapsed().as_millis() as u64,
        }
    }

    /// The checks of [`Appliance::deep_health`] that need no search index,
    /// for a data directory not opened yet (a restore checks what it wrote
    /// and leaves the derived indexes to be rebuilt at the first start).
    /// Objects whose digest is in `verified` were just hashed by the caller
    /// and are only checked to be present. Also returns the audit chain's
    /// end when it verifies, for the caller to compare with what it expects.
    pub fn of_stores(
        dir: &DataDir,
        verified: &HashSet<String>,
    ) -> Result<(Health, Option<crate::audit::Verified>), Error> {
        let start = Instant::now();
        let store = dir.open_store()?;
        let (checks, audit) = store_checks(&store, &ObjectStore::new(dir.objects()), verified);
        Ok((Health::of(checks, start), audit))
    }
}

/// Database integrity, audit chain, every document's object present and
/// intact (re-hashed unless its digest is in `verified`); with the chain's
/// end when it verifies.
fn store_checks(
    store: &Store,
    objects: &ObjectStore,
    verified: &HashSet<String>,
) -> (Vec<(String, bool, String)>, Option<crate::audit::Verified>) {
    let mut checks = Vec::new();
    checks.push(match store.integrity_check() {
        Ok(findings) if findings.is_empty() => ("database".into(), true, "ok".into()),
        Ok(findings) => ("database".into(), false, findings.join("; ")),
        Err(e) => ("database".into(), false, e.to_string()),
    });
    let audit = store.audit_verify();
    checks.push(match &audit {
        Ok(v) => ("audit_chain".into(), true, format!("{} entries", v.entries)),
        Err(e) => ("audit_chain".into(), false, e.to_string()),
    });
    checks.push(match store.documents(None) {
        Ok(docs) => {
            let bad: Vec<String> = docs
                .iter()
                .filter(|d| {
                    if verified.contains(&d.sha256) {
                        !objects.present(&d.sha256)
                    } else {
                        !objects.check(&d.sha256)
                    }
                })
                .map(|d| d.id.clone())
                .collect();
            (
                "objects".into(),
                bad.is_empty(),
                if bad.is_empty() {
                    format!("{} documents intact", docs.len())
                } else {
                    format!("missing or corrupt: {}", bad.join(", "))
                },
            )
        }
        Err(e) => ("objects".into(), false, e.to_string()),
    });
    (checks, audit.ok())
}

/// `Ok(None)` for a row that is gone.
fn found<T>(r: Result<T, Error>) -> Result<Option<T>, Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The passage index entries of a document's index entry.
fn passage_docs(doc: &search::Doc) -> Vec<search::Doc> {
    let id = doc.id.trim_start_matches("document:");
    crate::ai::split_passages(&doc.body)
        .into_iter()
        .enumerate()
        .map(|(ord, r)| crate::ai::passage_doc(id, &doc.title, ord, &doc.body[r]))
        .collect()
}

fn entity_doc(e: &Entity) -> search::Doc {
    let mut body = Vec::new();
    for c in &e.components {
        body.push(c.substance.clone());
        body.extend(c.cas.clone());
        body.extend(c.ec.clone());
    }
    body.extend(e.cas.clone());
    body.extend(e.category.clone());
    let mut tags: Vec<String> = e.markets.iter().map(|m| format!("market:{m}")).collect();
    tags.extend(e.category.iter().map(|c| format!("category:{c}")));
    search::Doc {
        id: format!("entity:{}", e.id),
        kind: e.kind.as_str().into(),
        title: e.name.clone(),
        body: body.join("\n"),
        tags,
    }
}
