//! The licence this spoke runs under (carried by a product bundle, or
//! published on its own as a licence bundle beside a product bundle many
//! spokes share): its plan's limits
//! (products, users) are enforced with a clear message, and when it expires
//! the spoke turns SUSPENDED (reads work, nothing is lost) until a medium
//! brings a renewed one. A spoke without a licence (development, samples)
//! has no limits.

use crate::auth::Actor;
use crate::service::Appliance;
use crate::store::{tx_db, Audit, Class, Store};
use crate::{Error, Lifecycle};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

/// The terms the spoke enforces, read from the licence the hub signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// Plan id.
    pub plan: String,
    /// Most products, if limited.
    pub max_products: Option<u64>,
    /// Most users, if limited.
    pub max_users: Option<u64>,
    /// Most AI requests (embed, chat, ask) per day, if limited.
    #[serde(default)]
    pub max_ai_requests_per_day: Option<u64>,
    /// Last valid day (YYYY-MM-DD).
    pub expires: String,
}

impl Terms {
    /// Reads the terms out of a licence (`eurocomply-licence/1`).
    pub fn from_licence(licence: &serde_json::Value) -> Result<Terms, Error> {
        let bad = |what: &str| {
            Error::Invalid(format!(
                "the licence has no valid {what}; ask the vendor for a new product medium"
            ))
        };
        let expires = licence
            .get("expires")
            .and_then(|v| v.as_str())
            .filter(|d| d.parse::<jiff::civil::Date>().is_ok())
            .ok_or_else(|| bad("expiry"))?;
        Ok(Terms {
            plan: licence
                .get("plan")
                .and_then(|v| v.as_str())
                .ok_or_else(|| bad("plan"))?
                .to_string(),
            max_products: licence.get("max_products").and_then(|v| v.as_u64()),
            max_users: licence.get("max_users").and_then(|v| v.as_u64()),
            max_ai_requests_per_day: licence
                .get("max_ai_requests_per_day")
                .and_then(|v| v.as_u64()),
            expires: expires.to_string(),
        })
    }

    /// Whether the licence has lapsed on `today` (YYYY-MM-DD).
    pub fn expired(&self, today: &str) -> bool {
        self.expires.as_str() < today
    }

    /// Whether the licence is in force today (UTC).
    pub fn in_force(&self) -> bool {
        !self.expired(&crate::compliance::today())
    }
}

/// Licence bundles this spoke took (its own; others are never fetched),
/// installed or superseded by a newer one in the same import.
pub(crate) const MIGRATION: &str = "CREATE TABLE licence_bundles (
    cid         TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    licence     TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);";

/// A verified licence bundle for this spoke, as the importer hands it over.
#[derive(Debug, Clone)]
pub struct LicenceBundle {
    /// Its CID.
    pub cid: String,
    /// Its name (`PRODUCT/KEY`).
    pub name: String,
    /// Its version.
    pub version: String,
    /// The licence (its signed manifest).
    pub licence: serde_json::Value,
}

/// Sets a settings row (inside the caller's transaction).
pub(crate) fn put_setting(
    conn: &rusqlite::Connection,
    key: &str,
    value: &str,
) -> Result<(), Error> {
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = ?2",
        [key, value],
    )
    .map(drop)
    .map_err(tx_db)
}

/// A settings row's value, if set.
pub(crate) fn setting(conn: &rusqlite::Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
        r.get(0)
    })
    .optional()
}

impl Store {
    /// The installed licence's terms, if any.
    pub fn licence(&self) -> Result<Option<Terms>, Error> {
        let Some(text) = setting(self.conn(), "licence").map_err(self.db())? else {
            return Ok(None);
        };
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::DataDir(format!("stored licence unreadable: {e}")))?;
        Ok(Some(Terms::from_licence(&v)?))
    }
}

/// Refuses adding `more` of `what` (`products` or `users`) beyond the plan
/// of `terms` (no licence: no limit). Runs inside the adding transaction.
pub(crate) fn within_plan(
    conn: &rusqlite::Connection,
    terms: Option<&Terms>,
    what: &str,
    more: u64,
) -> Result<(), Error> {
    let Some(terms) = terms else {
        return Ok(());
    };
    let (limit, sql) = match what {
        "products" => (
            terms.max_products,
            "SELECT count(*) FROM entities WHERE kind = 'product'",
        ),
        _ => (terms.max_users, "SELECT count(*) FROM users"),
    };
    let Some(limit) = limit else {
        return Ok(());
    };
    let have: i64 = conn.query_row(sql, [], |r| r.get(0)).map_err(tx_db)?;
    if have as u64 + more > limit {
        return Err(Error::Denied(format!(
            "the {} plan allows {limit} {what}; {have} exist and this adds {more}. \
             Remove some or ask the vendor for a larger plan (a new product medium)",
            terms.plan
        )));
    }
    Ok(())
}

impl Appliance {
    /// Installs a licence from a verified product bundle and applies its
    /// expiry to the lifecycle state.
    pub fn install_licence(
        &mut self,
        actor: &Actor,
        licence: &serde_json::Value,
    ) -> Result<Terms, Error> {
        let terms = Terms::from_licence(licence)?;
        let text = licence.to_string();
        self.store.write(actor, Class::Admin, |tx| {
            tx.execute(
                "INSERT INTO settings (key, value) VALUES ('licence', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = ?1",
                params![text],
            )
            .map_err(tx_db)?;
            Ok((
                (),
                vec![Audit {
                    action: "licence.install",
                    target: terms.plan.clone(),
                    detail: serde_json::json!({ "plan": terms.plan, "expires": terms.expires,
                        "max_products": terms.max_products, "max_users": terms.max_users }),
                }],
                vec![],
            ))
        })?;
        self.apply_licence(actor)?;
        Ok(terms)
    }

    /// Records the licence bundles an import brought for this spoke (the
    /// licence itself is installed by [`Appliance::install_licence`]).
    pub fn record_licence_bundles(
        &mut self,
        actor: &Actor,
        bundles: &[LicenceBundle],
    ) -> Result<(), Error> {
        if bundles.is_empty() {
            return Ok(());
        }
        let now = crate::store::now();
        self.store.write(actor, Class::Admin, |tx| {
            let mut audits = Vec::new();
            for b in bundles {
                tx.execute(
                    "INSERT OR IGNORE INTO licence_bundles (cid, name, version, licence, recorded_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![b.cid, b.name, b.version, b.licence.to_string(), now],
                )
                .map_err(tx_db)?;
                audits.push(Audit {
                    action: "licence.bundle",
                    target: b.cid.clone(),
                    detail: serde_json::json!({ "name": b.name, "version": b.version,
                        "expires": b.licence.get("expires") }),
                });
            }
            Ok(((), audits, vec![]))
        })?;
        Ok(())
    }

    /// Suspends the spoke when its licence has lapsed, and reactivates it when
    /// a valid licence replaces the one that suspended it.
    pub(crate) fn apply_licence(&mut self, actor: &Actor) -> Result<(), Error> {
        let Some(terms) = self.store.licence()? else {
            return Ok(());
        };
        let state = self.store.lifecycle()?;
        let by_licence = setting(self.store.conn(), "suspended_by")
            .map_err(self.store.db())?
            .as_deref()
            == Some("licence");
        let expired = terms.expired(&crate::compliance::today());
        let (to, reason) = match (expired, state) {
            (true, Lifecycle::Active) => (
                Lifecycle::Suspended,
                format!("licence expired on {}", terms.expires),
            ),
            (false, Lifecycle::Suspended) if by_licence => (
                Lifecycle::Active,
                format!("licence renewed until {}", terms.expires),
            ),
            _ => return Ok(()),
        };
        self.store.write(actor, Class::Admin, |tx| {
            tx.execute(
                "UPDATE settings SET value = ?1 WHERE key = 'lifecycle'",
                [to.as_str()],
            )
            .map_err(tx_db)?;
            if to == Lifecycle::Suspended {
                tx.execute(
                    "INSERT INTO settings (key, value) VALUES ('suspended_by', 'licence')
                     ON CONFLICT (key) DO UPDATE SET value = 'licence'",
                    [],
                )
            } else {
                tx.execute("DELETE FROM settings WHERE key = 'suspended_by'", [])
            }
            .map_err(tx_db)?;
            Ok((
                (),
                vec![Audit {
                    action: "lifecycle.set",
                    target: to.as_str().into(),
                    detail: serde_json::json!({ "from": state.as_str(), "reason": reason }),
                }],
                vec![],
            ))
        })?;
        Ok(())
    }
}
