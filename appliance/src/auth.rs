//! Local users, API tokens, sessions and time-limited support access, and the
//! role model every caller (API or command line) is checked against.
//!
//! Passwords are hashed with Argon2id; tokens are 256-bit random secrets of
//! which only the SHA-256 is stored, so a copied database yields no usable
//! credential.

use crate::store::{now, tx_db, Audit, Class, Store};
use crate::throttle;
use crate::Error;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A user's role (seed 000 §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including users, tokens, support access and lifecycle.
    Admin,
    /// Data, evaluations, pack approvals and the audit log.
    RegulatoryManager,
    /// Data and evaluations.
    Editor,
    /// Reads only.
    Viewer,
    /// Reads, locks and the audit log; changes nothing.
    Auditor,
}

/// Every role, for listings and tests.
pub const ROLES: [Role; 5] = [
    Role::Admin,
    Role::RegulatoryManager,
    Role::Editor,
    Role::Viewer,
    Role::Auditor,
];

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read entities, documents, search, evaluations, locks, packs, status.
    Read,
    /// Create, change and delete entities, documents and relationships.
    Write,
    /// Run evaluations (which write Compliance Locks).
    Evaluate,
    /// Approve or reject pack changes.
    ApprovePacks,
    /// Read and verify the audit log.
    ReadAudit,
    /// Users, tokens, support access and the lifecycle state.
    Admin,
}

impl Role {
    /// Whether this role grants `p`.
    pub fn allows(self, p: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Admin => true,
            Role::RegulatoryManager => !matches!(p, P::Admin),
            Role::Editor => matches!(p, P::Read | P::Write | P::Evaluate),
            Role::Viewer => matches!(p, P::Read),
            Role::Auditor => matches!(p, P::Read | P::ReadAudit),
        }
    }

    /// Whether the role can only read (viewer, auditor): the access that may
    /// still be given while the spoke is held.
    pub fn reads_only(self) -> bool {
        matches!(self, Role::Viewer | Role::Auditor)
    }

    /// The role's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::RegulatoryManager => "regulatory_manager",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        ROLES.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            Error::Invalid(format!(
                "unknown role {s:?}; use admin, regulatory_manager, editor, viewer or auditor"
            ))
        })
    }
}

/// Who is acting and from where; recorded with every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// User name (`cli` for the local command line).
    pub name: String,
    /// The role the caller acts in.
    pub role: Role,
    /// Where the request came from (`cli`, or the client address).
    pub origin: String,
    /// The token used, when authenticated by token.
    pub token: Option<String>,
}

impl Actor {
    /// The local command line: whoever can open the data directory is its administrator.
    pub fn cli() -> Actor {
        Actor {
            name: "cli".into(),
            role: Role::Admin,
            origin: "cli".into(),
            token: None,
        }
    }

    /// Fails with a clear message unless the role grants `p`.
    pub fn require(&self, p: Permission) -> Result<(), Error> {
        if self.role.allows(p) {
            Ok(())
        } else {
            Err(Error::Denied(format!(
                "{} (role {}) may not do this: it needs the {:?} permission; ask an administrator",
                self.name,
                self.role.as_str(),
                p
            )))
        }
    }
}

/// A stored user (never the password hash).
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// When created.
    pub created_at: String,
    /// Whether sign-in is refused.
    pub disabled: bool,
}

/// A token as listed (never the secret).
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    /// Token id (for revocation).
    pub id: String,
    /// `api`, `session` or `support`.
    pub kind: String,
    /// What it is for.
    pub label: String,
    /// The user it acts as.
    pub user: String,
    /// Its role.
    pub role: Role,
    /// When created.
    pub created_at: String,
    /// When it stops working, if ever.
    pub expires_at: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
}

/// A newly issued token: the secret is shown once and never stored.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedToken {
    /// Token id.
    pub id: String,
    /// The bearer secret.
    pub secret: String,
    /// When it expires.
    pub expires_at: Option<String>,
    /// Its role.
    pub role: Role,
}

/// Reads a role column; an unknown value fails the row with a clear message.
fn role_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Role> {
    let s: String = r.get(i)?;
    s.parse().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown role {s:?} in the database").into(),
        )
    })
}

/// A token row as authentication reads it.
struct TokenRow {
    id: String,
    user: String,
    role: Role,
    expires: Option<String>,
    revoked: Option<String>,
    /// None when the user row is gone (support grants have no user row).
    disabled: Option<bool>,
}

const MIN_PASSWORD: usize = 12;
/// Sessions last a working day.
const SESSION_HOURS: i64 = 12;
/// Support access is granted for at most three days at a time.
pub const MAX_SUPPORT_HOURS: i64 = 72;
/// An API token lives at most a (leap) year.
pub const MAX_TOKEN_HOURS: i64 = 8784;

fn random_hex(bytes: usize) -> Result<String, Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf)
        .map_err(|e| Error::DataDir(format!("the system random generator failed: {e}")))?;
    Ok(hex::encode(buf))
}

/// A fresh random identifier with a prefix, e.g. `prod-3f9a0c1d`.
pub(crate) fn new_id(prefix: &str) -> Result<String, Error> {
    Ok(format!("{prefix}-{}", random_hex(5)?))
}

fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn hours_from_now(hours: i64) -> Result<String, Error> {
    // `SignedDuration::from_hours` panics on overflow; a client-given count
    // must come back as an error, never as a panic inside the store lock.
    let secs = hours
        .checked_mul(3600)
        .ok_or_else(|| Error::Invalid(format!("an expiry of {hours} hours is out of range")))?;
    let t = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .map_err(|e| Error::Invalid(format!("expiry of {hours} hours: {e}")))?;
    Ok(jiff::Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string())
}

/// Whether `c` is a control, bidi or zero-width character: text that renders
/// differently from what it stores, so names and labels refuse it.
fn deceptive(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200B}'..='\u{200D}' | '\u{FEFF}')
}

/// Refuses a free-text name or label with control, bidi or zero-width characters.
pub(crate) fn plain_text(what: &str, text: &str) -> Result<(), Error> {
    match text.chars().find(|c| deceptive(*c)) {
        Some(c) => Err(Error::Invalid(format!(
            "the {what} contains the invisible or control character U+{:04X}; remove it (bidi, zero-width and control characters are refused)",
            u32::from(c)
        ))),
        None => Ok(()),
    }
}

pub(crate) fn valid_user_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if ok && name != "cli" {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "user name {name:?} must be 1-64 letters, digits or . _ - @ (and not \"cli\")"
        )))
    }
}

fn hash_password(password: &str) -> Result<String, Error> {
    let salt = SaltString::encode_b64(random_hex(16)?.as_bytes())
        .map_err(|e| Error::Invalid(format!("password salt: {e}")))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| Error::Invalid(format!("hashing the password failed: {e}")))?
        .to_string())
}

/// Whether `password` matches the stored Argon2 `hash` (false if unreadable).
fn verify(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash of a random password with the same parameters as real ones,
/// made once per process.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        random_hex(16)
            .and_then(|p| hash_password(&p))
            .unwrap_or_default()
    })
}

impl Store {
    /// Creates a user; the password must be at least 12 characters.
    pub fn create_user(
        &mut self,
        actor: &Actor,
        name: &str,
        role: Role,
        password: &str,
    ) -> Result<User, Error> {
        actor.require(Permission::Admin)?;
        valid_user_name(name)?;
        if password.chars().count() < MIN_PASSWORD {
            return Err(Error::Invalid(format!(
                "the password must have at least {MIN_PASSWORD} characters"
            )));
        }
        let hash = hash_password(password)?;
        let at = now();
        let user = User {
            name: name.to_string(),
            role,
            created_at: at.clone(),
            disabled: false,
        };
        let terms = self.licence()?;
        let w = self.write(
            actor,
            Class::Access {
                allowed_when_held: role.reads_only(),
            },
            |tx| {
                crate::licence::within_plan(tx, terms.as_ref(), "users", 1)?;
                let exists: bool = tx
                    .query_row(
                        "SELECT EXISTS(SELECT 1 FROM users WHERE name = ?1)",
                        [name],
                        |r| r.get(0),
                    )
                    .map_err(tx_db)?;
                if exists {
                    return Err(Error::Conflict(format!("user {name:?} already exists")));
                }
                tx.execute(
                "INSERT INTO users (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![name, role.as_str(), hash, at],
            )
            .map_err(tx_db)?;
                Ok((
                    user,
                    vec![Audit {
                        action: "user.create",
                        target: name.to_string(),
                        detail: serde_json::json!({ "role": role.as_str() }),
                    }],
                    vec![],
                ))
            },
        )?;
        Ok(w.value)
    }

    /// Every user.
    pub fn users(&self) -> Result<Vec<User>, Error> {
        let mut stmt = self
            .conn()
            .prepare("SELECT name, role, created_at, disabled FROM users ORDER BY name")
            .map_err(self.db())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(User {
                    name: r.get(0)?,
                    role: role_at(r, 1)?,
                    created_at: r.get(2)?,
                    disabled: r.get(3)?,
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    /// Checks a password and opens a session (works in every lifecycle state,
    /// so a suspended spoke can still be read). Throttled per account and
    /// per address ([`crate::throttle`]): while a wait is on, the password is
    /// not even checked.
    pub fn login(
        &mut self,
        name: &str,
        password: &str,
        origin: &str,
    ) -> Result<IssuedToken, Error> {
        let denied = || Error::Unauthenticated("wrong user name or password".into());
        let (account, address) = (throttle::account_key(name), throttle::address_key(origin));
        self.refuse_while_waiting(&[&account, &address])?;
        let row: Option<(String, String, bool)> = self
            .conn()
            .query_row(
                "SELECT role, password_hash, disabled FROM users WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.db())?;
        // An unknown user is checked against a dummy hash, so the time
        // to answer does not tell which user names exist.
        let verified = match &row {
            Some((_, hash, _)) => verify(hash, password),
            None => {
                let _ = verify(dummy_hash(), password);
                false
            }
        };
        let Some((role, _, disabled)) = row.filter(|_| verified) else {
            let limits = self.sign_in;
            // The name as tried, unless it cannot be a user name at all.
            let tried = account.trim_start_matches("user:").to_string();
            self.count_failures(
                origin,
                "sign_in.failed",
                &tried,
                &[(account, limits.account), (address, limits.address)],
            )?;
            return Err(denied());
        };
        if disabled {
            return Err(Error::Unauthenticated(format!(
                "user {name:?} is disabled; ask an administrator"
            )));
        }
        let actor = Actor {
            name: name.to_string(),
            role: role.parse()?,
            origin: origin.to_string(),
            token: None,
        };
        self.write(&actor, Class::Admin, |tx| {
            throttle::clear(tx, &account).map(|_| ((), vec![], vec![]))
        })?;
        self.issue(
            &actor,
            "session",
            "sign-in",
            name,
            actor.role,
            Some(SESSION_HOURS),
        )
    }

    /// Issues an API token for `user` (admin only); `hours` None never expires.
    pub fn create_token(
        &mut self,
        actor: &Actor,
        user: &str,
        label: &str,
        hours: Option<i64>,
    ) -> Result<IssuedToken, Error> {
        actor.require(Permission::Admin)?;
        let role = self.user_role(user)?;
        if let Some(h) = hours {
            if !(1..=MAX_TOKEN_HOURS).contains(&h) {
                return Err(Error::Invalid(format!(
                    "a token lives 1 to {MAX_TOKEN_HOURS} hours (one year), not {h}; leave the lifetime out for a token that never expires"
                )));
            }
        }
        self.issue(actor, "api", label, user, role, hours)
    }

    /// Grants time-limited, read-only support access (admin only, at most
    /// [`MAX_SUPPORT_HOURS`]); the grant and its revocation are audit-logged.
    pub fn grant_support(
        &mut self,
        actor: &Actor,
        grantee: &str,
        hours: i64,
    ) -> Result<IssuedToken, Error> {
        actor.require(Permission::Admin)?;
        valid_user_name(grantee)?;
        if !(1..=MAX_SUPPORT_HOURS).contains(&hours) {
            return Err(Error::Invalid(format!(
                "support access is granted for 1 to {MAX_SUPPORT_HOURS} hours, not {hours}"
            )));
        }
        self.issue(
            actor,
            "support",
            "support access",
            &format!("support:{grantee}"),
            Role::Viewer,
            Some(hours),
        )
    }

    fn user_role(&self, user: &str) -> Result<Role, Error> {
        let role: Option<String> = self
            .conn()
            .query_row("SELECT role FROM users WHERE name = ?1", [user], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.db())?;
        role.ok_or_else(|| {
            Error::NotFound(format!(
                "no user {user:?}; create it with `spoke users add`"
            ))
        })?
        .parse()
    }

    fn issue(
        &mut self,
        actor: &Actor,
        kind: &'static str,
        label: &str,
        user: &str,
        role: Role,
        hours: Option<i64>,
    ) -> Result<IssuedToken, Error> {
        if label.is_empty() || label.len() > 200 {
            return Err(Error::Invalid("a token label is 1-200 characters".into()));
        }
        plain_text("token label", label)?;
        let id = new_id("tok")?;
        let secret = format!("sk_{}", random_hex(32)?);
        let expires_at = hours.map(hours_from_now).transpose()?;
        let issued = IssuedToken {
            id: id.clone(),
            secret: secret.clone(),
            expires_at: expires_at.clone(),
            role,
        };
        // Signing in works in every state, so a held spoke can be read; while
        // held, tokens are given only for read-only roles and vendor support
        // access is never opened.
        let class = match kind {
            "session" => Class::Admin,
            "support" => Class::Access {
                allowed_when_held: false,
            },
            _ => Class::Access {
                allowed_when_held: role.reads_only(),
            },
        };
        let w = self.write(actor, class, |tx| {
            tx.execute(
                "INSERT INTO tokens (id, kind, label, user_name, role, secret_hash, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![id, kind, label, user, role.as_str(), secret_hash(&secret), now(), expires_at],
            )
            .map_err(tx_db)?;
            Ok((
                issued,
                vec![Audit {
                    action: match kind {
                        "session" => "session.create",
                        "support" => "support.grant",
                        _ => "token.create",
                    },
                    target: id.clone(),
                    detail: serde_json::json!({ "user": user, "role": role.as_str(), "label": label, "expires_at": expires_at }),
                }],
                vec![],
            ))
        })?;
        Ok(w.value)
    }

    /// Revokes a token, session or support grant. Admins may revoke any;
    /// others only their own (signing out).
    pub fn revoke_token(&mut self, actor: &Actor, id: &str) -> Result<(), Error> {
        let owner: Option<(String, Option<String>)> = self
            .conn()
            .query_row(
                "SELECT user_name, revoked_at FROM tokens WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.db())?;
        let Some((owner, revoked)) = owner else {
            return Err(Error::NotFound(format!("no token {id:?}")));
        };
        if owner != actor.name {
            actor.require(Permission::Admin)?;
        }
        if revoked.is_some() {
            return Ok(());
        }
        self.write(actor, Class::Admin, |tx| {
            tx.execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1",
                params![id, now()],
            )
            .map_err(tx_db)?;
            Ok((
                (),
                vec![Audit {
                    action: "token.revoke",
                    target: id.to_string(),
                    detail: serde_json::json!({ "user": owner }),
                }],
                vec![],
            ))
        })?;
        Ok(())
    }

    /// Every token (never secrets), newest first.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>, Error> {
        let mut stmt = self
            .conn()
            .prepare(
                "SELECT id, kind, label, user_name, role, created_at, expires_at, revoked_at
                 FROM tokens ORDER BY created_at DESC, id",
            )
            .map_err(self.db())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(TokenInfo {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    label: r.get(2)?,
                    user: r.get(3)?,
                    role: role_at(r, 4)?,
                    created_at: r.get(5)?,
                    expires_at: r.get(6)?,
                    revoked_at: r.get(7)?,
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    /// The actor a bearer secret stands for, if it is valid, unexpired and
    /// unrevoked. Unknown secrets are counted per address like failed
    /// sign-ins; while that address must wait, no secret is looked up.
    pub fn authenticate(&mut self, secret: &str, origin: &str) -> Result<Actor, Error> {
        let key = throttle::token_key(origin);
        self.refuse_while_waiting(&[&key])?;
        let denied = |why: &str| {
            Error::Unauthenticated(format!(
                "{why}; sign in again or ask an administrator for a token"
            ))
        };
        let row = self
            .conn()
            .query_row(
                "SELECT t.id, t.user_name, t.role, t.expires_at, t.revoked_at, u.disabled
                 FROM tokens t LEFT JOIN users u ON u.name = t.user_name
                 WHERE t.secret_hash = ?1",
                [secret_hash(secret)],
                |r| {
                    Ok(TokenRow {
                        id: r.get(0)?,
                        user: r.get(1)?,
                        role: role_at(r, 2)?,
                        expires: r.get(3)?,
                        revoked: r.get(4)?,
                        disabled: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(self.db())?;
        let Some(TokenRow {
            id,
            user,
            role,
            expires,
            revoked,
            disabled,
        }) = row
        else {
            let limits = self.sign_in.address;
            self.count_failures(origin, "token.unknown", origin, &[(key, limits)])?;
            return Err(denied("unknown token"));
        };
        if revoked.is_some() {
            return Err(denied("this token was revoked"));
        }
        if let Some(exp) = expires {
            let exp: jiff::Timestamp = exp
                .parse()
                .map_err(|_| denied("this token has an unreadable expiry"))?;
            if exp <= jiff::Timestamp::now() {
                return Err(denied("this token has expired"));
            }
        }
        if disabled == Some(true) {
            return Err(denied("this user is disabled"));
        }
        Ok(Actor {
            name: user,
            role,
            origin: origin.to_string(),
            token: Some(id),
        })
    }
}

/// What `spoke users unlock` cleared.
#[derive(Debug, Clone, Serialize)]
pub struct Unlocked {
    /// The keys whose failures were forgotten (`user:NAME`, `address:IP`, `token:IP`).
    pub cleared: Vec<String>,
}

impl Store {
    /// Sets how failed sign-ins and unknown tokens are throttled (`spoke serve`).
    pub fn set_sign_in_policy(&mut self, policy: throttle::Policy) {
        self.sign_in = policy;
    }

    /// Forgets the failures of an account and/or a client address (sign-in
    /// and tokens), lifting any wait or lock (admin only, audit-logged).
    pub fn unlock(
        &mut self,
        actor: &Actor,
        user: Option<&str>,
        address: Option<&str>,
    ) -> Result<Unlocked, Error> {
        actor.require(Permission::Admin)?;
        let mut keys = Vec::new();
        if let Some(u) = user {
            valid_user_name(u)?;
            keys.push(throttle::account_key(u));
        }
        if let Some(a) = address {
            let ip: std::net::IpAddr = a.parse().map_err(|_| {
                Error::Invalid(format!(
                    "{a:?} is not an IP address (e.g. 192.0.2.7 or 2001:db8::7)"
                ))
            })?;
            keys.push(throttle::address_key(&ip.to_string()));
            keys.push(throttle::token_key(&ip.to_string()));
        }
        if keys.is_empty() {
            return Err(Error::Invalid(
                "name a user (--name) or a client address (--address) to unlock".into(),
            ));
        }
        let w = self.write(actor, Class::Admin, |tx| {
            let mut cleared = Vec::new();
            for k in &keys {
                if throttle::clear(tx, k)? {
                    cleared.push(k.clone());
                }
            }
            let audits = cleared
                .iter()
                .map(|k| Audit {
                    action: "sign_in.unlock",
                    target: k.clone(),
                    detail: serde_json::json!({}),
                })
                .collect();
            Ok((Unlocked { cleared }, audits, vec![]))
        })?;
        Ok(w.value)
    }

    /// Fails with [`Error::Throttled`] while any of `keys` must wait.
    fn refuse_while_waiting(&self, keys: &[&str]) -> Result<(), Error> {
        match throttle::waiting(self.conn(), keys, throttle::now_ms()).map_err(self.db())? {
            Some(retry_after) => Err(Error::Throttled { retry_after }),
            None => Ok(()),
        }
    }

    /// Counts one failed attempt from `origin` on each key and audit-logs it
    /// (`action` on `target`, which is never a secret), and each lock it causes.
    /// The counts commit even though the attempt fails.
    fn count_failures(
        &mut self,
        origin: &str,
        action: &'static str,
        target: &str,
        keys: &[(String, throttle::Limits)],
    ) -> Result<(), Error> {
        let anonymous = Actor {
            name: "anonymous".into(),
            role: Role::Viewer,
            origin: origin.to_string(),
            token: None,
        };
        let now = throttle::now_ms();
        self.write(&anonymous, Class::Admin, |tx| {
            let mut audits = Vec::new();
            let mut counts = serde_json::Map::new();
            for (key, limits) in keys {
                let counted = throttle::fail(tx, key, *limits, now)?;
                counts.insert(key.clone(), counted.failures.into());
                if let Some(until) = counted.locked_until {
                    let until = jiff::Timestamp::from_millisecond(until)
                        .map(|t| t.to_string())
                        .unwrap_or_default();
                    tracing::warn!(key, %until, failures = counted.failures, "sign-in locked");
                    audits.push(Audit {
                        action: "sign_in.locked",
                        target: key.clone(),
                        detail: serde_json::json!({ "until": until, "failures": counted.failures }),
                    });
                }
            }
            audits.insert(
                0,
                Audit {
                    action,
                    target: target.to_string(),
                    detail: serde_json::Value::Object(counts),
                },
            );
            Ok(((), audits, vec![]))
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_matrix_is_least_privilege() {
        use Permission as P;
        for p in [
            P::Read,
            P::Write,
            P::Evaluate,
            P::ApprovePacks,
            P::ReadAudit,
            P::Admin,
        ] {
            assert!(Role::Admin.allows(p));
        }
        assert!(!Role::RegulatoryManager.allows(P::Admin));
        assert!(Role::RegulatoryManager.allows(P::ApprovePacks));
        assert!(!Role::Editor.allows(P::ApprovePacks));
        assert!(!Role::Editor.allows(P::ReadAudit));
        assert!(!Role::Viewer.allows(P::Write));
        assert!(Role::Auditor.allows(P::ReadAudit));
        assert!(!Role::Auditor.allows(P::Evaluate));
    }

    #[test]
    fn users_sessions_tokens_and_support_grants() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(&dir.path().join("db.sqlite"), "did:key:test").unwrap();
        let admin = Actor::cli();
        assert!(matches!(
            s.create_user(&admin, "alice", Role::Editor, "short"),
            Err(Error::Invalid(_))
        ));
        s.create_user(&admin, "alice", Role::Editor, "correct horse battery")
            .unwrap();
        assert!(matches!(
            s.create_user(&admin, "alice", Role::Viewer, "correct horse battery"),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(
            s.login("alice", "wrong password!!", "test"),
            Err(Error::Unauthenticated(_))
        ));
        let session = s.login("alice", "correct horse battery", "test").unwrap();
        let alice = s.authenticate(&session.secret, "10.0.0.1").unwrap();
        assert_eq!((alice.name.as_str(), alice.role), ("alice", Role::Editor));
        assert!(matches!(
            s.create_user(&alice, "bob", Role::Admin, "correct horse battery"),
            Err(Error::Denied(_))
        ));
        s.revoke_token(&alice, &session.id).unwrap();
        assert!(s.authenticate(&session.secret, "x").is_err());

        let support = s.grant_support(&admin, "vendor-ops", 4).unwrap();
        assert!(s.grant_support(&admin, "vendor-ops", 100).is_err());
        let who = s.authenticate(&support.secret, "x").unwrap();
        assert_eq!(who.role, Role::Viewer);
        let actions: Vec<String> = s
            .audit_entries()
            .unwrap()
            .into_iter()
            .map(|e| e.entry.action)
            .collect();
        assert_eq!(
            actions,
            [
                "user.create",
                "sign_in.failed",
                "session.create",
                "token.revoke",
                "support.grant"
            ]
        );
        let stored: String = s
            .conn()
            .query_row("SELECT group_concat(secret_hash) FROM tokens", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(
            !stored.contains(&support.secret),
            "secrets are never stored"
        );
    }

    /// A fresh store with one editor, alice.
    fn store_with_alice() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(&dir.path().join("db.sqlite"), "did:key:test").unwrap();
        s.create_user(
            &Actor::cli(),
            "alice",
            Role::Editor,
            "correct horse battery",
        )
        .unwrap();
        (dir, s)
    }

    #[test]
    fn a_locked_account_is_refused_before_its_password_is_checked_and_success_clears_it() {
        let (_dir, mut s) = store_with_alice();
        s.set_sign_in_policy(throttle::Policy::new(2, 10).unwrap());
        // One failure (free), then the right password: the count is cleared.
        assert!(s.login("alice", "wrong password!!", "10.0.0.1").is_err());
        s.login("alice", "correct horse battery", "10.0.0.1")
            .unwrap();
        let counted: i64 = s
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM sign_in_failures WHERE key = 'user:alice'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(counted, 0, "a success clears the account's count");
        // Two failures from two addresses lock the account, not the addresses.
        for ip in ["10.0.0.1", "10.0.0.2"] {
            let e = s.login("alice", "wrong password!!", ip).unwrap_err();
            assert!(matches!(e, Error::Unauthenticated(_)), "{e}");
        }
        let e = s
            .login("alice", "correct horse battery", "10.0.0.9")
            .unwrap_err();
        assert!(
            matches!(e, Error::Throttled { retry_after } if (590..=600).contains(&retry_after)),
            "{e}"
        );
        s.create_user(&Actor::cli(), "bob", Role::Viewer, "another long password")
            .unwrap();
        s.login("bob", "another long password", "10.0.0.1").unwrap();
        // Only an administrator lifts it.
        let viewer = Actor {
            name: "bob".into(),
            role: Role::Viewer,
            origin: "t".into(),
            token: None,
        };
        assert!(matches!(
            s.unlock(&viewer, Some("alice"), None),
            Err(Error::Denied(_))
        ));
        let u = s.unlock(&Actor::cli(), Some("alice"), None).unwrap();
        assert_eq!(u.cleared, ["user:alice"]);
        s.login("alice", "correct horse battery", "10.0.0.9")
            .unwrap();
    }

    #[test]
    fn unknown_tokens_lock_their_address_only() {
        let (_dir, mut s) = store_with_alice();
        s.set_sign_in_policy(throttle::Policy::new(1, 10).unwrap());
        let admin = Actor::cli();
        let t = s.create_token(&admin, "alice", "ci", None).unwrap();
        // An address locks at 5 unknown tokens (five times an account's 1).
        for i in 0..5 {
            let e = s.authenticate(&format!("sk_{i}"), "10.0.0.5").unwrap_err();
            assert!(matches!(e, Error::Unauthenticated(_)), "{e}");
        }
        let e = s.authenticate(&t.secret, "10.0.0.5").unwrap_err();
        assert!(matches!(e, Error::Throttled { .. }), "{e}");
        assert_eq!(s.authenticate(&t.secret, "10.0.0.6").unwrap().name, "alice");
        // Sign-in from the locked address is counted apart from tokens.
        s.login("alice", "correct horse battery", "10.0.0.5")
            .unwrap();
    }

    #[test]
    fn token_lifetimes_out_of_range_are_refused_not_panics() {
        let (_dir, mut s) = store_with_alice();
        let admin = Actor::cli();
        for hours in [
            2_562_047_788_015_216,
            i64::MAX,
            i64::MIN,
            0,
            -1,
            MAX_TOKEN_HOURS + 1,
        ] {
            let e = s.create_token(&admin, "alice", "ci", Some(hours));
            assert!(matches!(e, Err(Error::Invalid(_))), "{hours}: {e:?}");
        }
        for hours in [i64::MAX, i64::MIN, 0] {
            assert!(matches!(
                s.grant_support(&admin, "vendor", hours),
                Err(Error::Invalid(_))
            ));
        }
        assert!(matches!(hours_from_now(i64::MAX), Err(Error::Invalid(_))));
        let t = s
            .create_token(&admin, "alice", "ci", Some(MAX_TOKEN_HOURS))
            .unwrap();
        assert!(t.expires_at.is_some());
        s.create_token(&admin, "alice", "ci", Some(1)).unwrap();
        assert_eq!(s.tokens().unwrap().len(), 2, "only the valid ones stored");
    }

    #[test]
    fn unknown_user_and_wrong_password_look_the_same() {
        let (_dir, mut s) = store_with_alice();
        let wrong = s.login("alice", "wrong password!!", "t").unwrap_err();
        let unknown = s.login("mallory", "wrong password!!", "t").unwrap_err();
        assert_eq!(wrong.to_string(), unknown.to_string());
        // The dummy an unknown user is checked against is a real Argon2
        // hash with the parameters real passwords get, so it costs the same.
        let real: String = s
            .conn()
            .query_row("SELECT password_hash FROM users", [], |r| r.get(0))
            .unwrap();
        let (real, dummy) = (
            PasswordHash::new(&real).unwrap(),
            PasswordHash::new(dummy_hash()).unwrap(),
        );
        assert_eq!(real.algorithm, dummy.algorithm);
        assert_eq!(
            real.params.iter().collect::<Vec<_>>(),
            dummy.params.iter().collect::<Vec<_>>()
        );
        assert!(!verify(dummy_hash(), "wrong password!!"));
    }

    #[test]
    fn names_and_labels_with_bidi_zero_width_or_control_chars_are_refused() {
        let (_dir, mut s) = store_with_alice();
        let admin = Actor::cli();
        for bad in [
            "admin\u{202E}nimda",
            "a\u{2066}b",
            "a\u{200B}b",
            "a\u{FEFF}",
            "a\0b",
            "a\u{7}",
        ] {
            assert!(matches!(
                s.create_user(&admin, bad, Role::Viewer, "correct horse battery"),
                Err(Error::Invalid(_))
            ));
            assert!(matches!(
                s.grant_support(&admin, bad, 4),
                Err(Error::Invalid(_))
            ));
            let e = s.create_token(&admin, "alice", bad, None).unwrap_err();
            assert!(e.to_string().contains("U+"), "{e}");
        }
        assert!(s.tokens().unwrap().is_empty());
        s.create_token(&admin, "alice", "Zoë's laptop", None)
            .unwrap();
    }
}
