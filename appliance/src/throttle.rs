//! Sign-in throttling: failed sign-ins and unknown API tokens are counted per
//! account and per client address in the database, and each further attempt
//! must wait longer, up to a temporary lock (OWASP ASVS 4.0 §2.2.1, NIST SP
//! 800-63B §5.2.2). The counts live in SQLite, not in the server's memory,
//! so a restart does not reset them and `spoke users unlock` (another
//! process) can clear them.
//!
//! The defaults: an account gets 5 failures free (typos), then each attempt
//! waits twice as long as the one before (1 s, 2 s, 4 s, 8 s), and the 10th
//! failure locks it for 15 minutes; every failure after that locks it again.
//! That leaves a guesser about 100 tries a day per account, against the
//! 100 consecutive failures NIST allows before a lock must hold. An address
//! is locked after 50 failures, with no waits before, because an office
//! behind one NAT shares it; that stops one machine spraying many accounts.
//! Unknown and real user names are counted the same way, so the answers do
//! not tell which names exist. A count is forgotten after a day without
//! failures; a successful sign-in clears the account's count (never the
//! address's, or a guesser with one account of their own could reset it).

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::store::tx_db;
use crate::Error;

/// Counts untouched this long are forgotten.
const FORGET_MS: i64 = 24 * 3600 * 1000;

/// How failures on one key (an account or an address) are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Failures answered at once; each one after that must wait.
    pub free: u32,
    /// Failures after which the key is locked for `lock_secs`.
    pub lock_after: u32,
    /// How long a lock lasts, in seconds.
    pub lock_secs: u64,
}

impl Limits {
    /// Milliseconds the next attempt must wait after `failures` failures.
    fn wait_ms(self, failures: u32) -> i64 {
        let lock = i64::try_from(self.lock_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        if failures >= self.lock_after {
            lock
        } else if failures > self.free {
            let doublings = (failures - self.free - 1).min(40);
            (1000_i64 << doublings).min(lock)
        } else {
            0
        }
    }
}

/// The limits for accounts and for client addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Per user name (known or not).
    pub account: Limits,
    /// Per client address, for passwords and for API tokens separately.
    pub address: Limits,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::derived(10, 15 * 60)
    }
}

impl Policy {
    /// The policy with the account locked after `lock_after` failures for
    /// `lock_minutes` (`spoke serve --sign-in-lock-after/--sign-in-lock-minutes`).
    pub fn new(lock_after: u32, lock_minutes: u64) -> Result<Policy, Error> {
        if lock_after == 0 || lock_minutes == 0 || lock_minutes > 24 * 60 {
            return Err(Error::Invalid(format!(
                "sign-in lock after {lock_after} failures for {lock_minutes} minutes: both must be at least 1, and a lock at most 1440 minutes (a day)"
            )));
        }
        Ok(Policy::derived(lock_after, lock_minutes * 60))
    }

    /// An account's free failures are half of `lock_after`; an address
    /// locks after five times as many, with no waits before (everyone
    /// behind it would wait too).
    fn derived(lock_after: u32, lock_secs: u64) -> Policy {
        let address = lock_after.saturating_mul(5);
        Policy {
            account: Limits {
                free: lock_after / 2,
                lock_after,
                lock_secs,
            },
            address: Limits {
                free: address - 1,
                lock_after: address,
                lock_secs,
            },
        }
    }
}

/// The key an account's failures are counted under. Any name that is not
/// a valid user name shares one key: it cannot exist, and an attacker's
/// long or odd strings are not stored.
pub(crate) fn account_key(name: &str) -> String {
    if crate::auth::valid_user_name(name).is_ok() {
        format!("user:{name}")
    } else {
        "user:(not a valid user name)".into()
    }
}

/// The key a client address's failed sign-ins are counted under.
pub(crate) fn address_key(origin: &str) -> String {
    format!("address:{origin}")
}

/// The key a client address's unknown API tokens are counted under.
pub(crate) fn token_key(origin: &str) -> String {
    format!("token:{origin}")
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// The longest wait any of `keys` still imposes at `now`, in whole seconds
/// (rounded up), or None when an attempt may go ahead.
pub(crate) fn waiting(
    conn: &Connection,
    keys: &[&str],
    now: i64,
) -> Result<Option<u64>, rusqlite::Error> {
    let mut longest = 0_i64;
    for key in keys {
        let until: Option<i64> = conn
            .query_row(
                "SELECT until_ms FROM sign_in_failures WHERE key = ?1 AND last_ms > ?2",
                params![key, now - FORGET_MS],
                |r| r.get(0),
            )
            .optional()?;
        longest = longest.max(until.unwrap_or(0) - now);
    }
    Ok((longest > 0).then(|| u64::try_from((longest + 999) / 1000).unwrap_or(1)))
}

/// What one failure did to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counted {
    /// Failures counted so far, this one included.
    pub failures: u32,
    /// When this failure locked the key: until when (ms since the epoch).
    pub locked_until: Option<i64>,
}

/// Counts a failure on `key` at `now` and sets how long the next attempt
/// must wait; counts older than a day start again from one.
pub(crate) fn fail(
    tx: &Transaction<'_>,
    key: &str,
    limits: Limits,
    now: i64,
) -> Result<Counted, Error> {
    tx.execute(
        "DELETE FROM sign_in_failures WHERE last_ms <= ?1 AND until_ms <= ?2",
        params![now - FORGET_MS, now],
    )
    .map_err(tx_db)?;
    let before: u32 = tx
        .query_row(
            "SELECT failures FROM sign_in_failures WHERE key = ?1 AND last_ms > ?2",
            params![key, now - FORGET_MS],
            |r| r.get(0),
        )
        .optional()
        .map_err(tx_db)?
        .unwrap_or(0);
    let failures = before.saturating_add(1);
    let until = now.saturating_add(limits.wait_ms(failures));
    tx.execute(
        "INSERT INTO sign_in_failures (key, failures, last_ms, until_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key) DO UPDATE SET failures = ?2, last_ms = ?3, until_ms = ?4",
        params![key, failures, now, until],
    )
    .map_err(tx_db)?;
    Ok(Counted {
        failures,
        locked_until: (failures >= limits.lock_after).then_some(until),
    })
}

/// Forgets `key`'s failures; whether there were any.
pub(crate) fn clear(tx: &Transaction<'_>, key: &str) -> Result<bool, Error> {
    Ok(tx
        .execute("DELETE FROM sign_in_failures WHERE key = ?1", [key])
        .map_err(tx_db)?
        > 0)
}

/// The table (schema migration 7).
pub(crate) const MIGRATION: &str = "CREATE TABLE sign_in_failures (
    key      TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_ms  INTEGER NOT NULL,
    until_ms INTEGER NOT NULL
);";

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("t.sqlite")).unwrap();
        conn.execute_batch(MIGRATION).unwrap();
        (dir, conn)
    }

    fn fail_at(conn: &mut Connection, key: &str, limits: Limits, now: i64) -> Counted {
        let tx = conn.transaction().unwrap();
        let c = fail(&tx, key, limits, now).unwrap();
        tx.commit().unwrap();
        c
    }

    #[test]
    fn waits_double_after_the_free_failures_then_lock() {
        let l = Policy::default().account;
        let waits: Vec<i64> = (1..=12).map(|n| l.wait_ms(n)).collect();
        assert_eq!(
            waits,
            [0, 0, 0, 0, 0, 1000, 2000, 4000, 8000, 900_000, 900_000, 900_000]
        );
        // A lock shorter than the doubling caps it.
        let short = Limits {
            free: 0,
            lock_after: 100,
            lock_secs: 3,
        };
        assert_eq!(short.wait_ms(60), 3000);
    }

    #[test]
    fn a_key_is_refused_until_its_wait_is_over_and_forgotten_after_a_day() {
        let (_d, mut conn) = db();
        let l = Limits {
            free: 1,
            lock_after: 3,
            lock_secs: 60,
        };
        let t = 1_000_000_000_000;
        assert_eq!(fail_at(&mut conn, "user:a", l, t).failures, 1);
        assert_eq!(waiting(&conn, &["user:a"], t).unwrap(), None);
        fail_at(&mut conn, "user:a", l, t);
        assert_eq!(waiting(&conn, &["user:a"], t + 1).unwrap(), Some(1));
        assert_eq!(waiting(&conn, &["user:a"], t + 1000).unwrap(), None);
        let third = fail_at(&mut conn, "user:a", l, t + 1000);
        assert_eq!(third.locked_until, Some(t + 61_000));
        // The longest wait among the keys asked about is the answer.
        assert_eq!(
            waiting(&conn, &["address:x", "user:a"], t + 1500).unwrap(),
            Some(60)
        );
        assert_eq!(waiting(&conn, &["user:b"], t + 1500).unwrap(), None);
        // A day without failures starts the count again.
        let later = t + 1000 + FORGET_MS + 1;
        assert_eq!(waiting(&conn, &["user:a"], later).unwrap(), None);
        assert_eq!(fail_at(&mut conn, "user:a", l, later).failures, 1);
        let tx = conn.transaction().unwrap();
        assert!(clear(&tx, "user:a").unwrap());
        assert!(!clear(&tx, "user:a").unwrap());
    }

    #[test]
    fn invalid_names_share_one_key_and_policies_are_checked() {
        assert_eq!(account_key("alice"), "user:alice");
        assert_eq!(account_key(&"x".repeat(5000)), account_key("a b"));
        assert!(Policy::new(0, 15).is_err());
        assert!(Policy::new(10, 0).is_err());
        assert!(Policy::new(10, 2000).is_err());
        assert_eq!(Policy::new(10, 15).unwrap(), Policy::default());
        assert_eq!(
            (
                Policy::default().address.free,
                Policy::default().address.lock_after
            ),
            (49, 50)
        );
    }
}
