//! The compliance kernel: a deterministic, sandboxed interpreter for logic
//! packs' declarative rules (`eurocomply-rules/1`, documented in
//! `docs/rules.md`) over reference tables from intelligence packs.
//!
//! It does no I/O, reads no clock and uses no randomness: the same rules,
//! tables, product and evaluation date always give byte-identical output.
//! Work is bounded by fuel. Concentrations are exact integers (parts per
//! billion), so limits and sums never suffer rounding drift. Missing data is
//! never a silent pass: it yields `needs_review`.
#![deny(missing_docs)]

mod eval;
mod rules;

pub use eval::{
    category_key, Evaluation, Program, RuleOutcome, Semantics, Step, Verdict, FORMULATION_PACK,
    FORMULATION_RULE,
};
pub use rules::{Rule, RuleSet, RULES_FORMAT};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The rules VM version; packs declare a semver requirement on it
/// (`handler_vm_version`). Locks record it, and replay with its semantics
/// ([`Semantics::of_vm`]).
pub const VM_VERSION: &str = "1.1.0";

/// Fuel for one product's evaluation unless the caller gives another limit.
pub const DEFAULT_FUEL: u64 = 1_000_000;

/// Identity of this exact kernel build (crate version, VM version and a
/// digest of the kernel's sources), pinned in every Compliance Lock.
pub fn kernel_build() -> &'static str {
    env!("KERNEL_BUILD")
}

/// Whether this VM satisfies a pack's `handler_vm_version` requirement.
pub fn vm_satisfies(requirement: &str) -> Result<bool, Error> {
    let req = semver::VersionReq::parse(requirement).map_err(|e| {
        Error::Requirement(format!(
            "handler_vm_version {requirement:?} is not a semver requirement ({e}); use e.g. \"^1.0.0\""
        ))
    })?;
    let vm = semver::Version::parse(VM_VERSION)
        .map_err(|e| Error::Requirement(format!("kernel VM version: {e}")))?;
    Ok(req.matches(&vm))
}

/// The kernel's error type.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// A rules file is malformed (bad JSON, unknown field or kind, wrong
    /// format tag).
    #[error("rules file: {0}; correct the logic pack's rules.json (docs/rules.md)")]
    Parse(String),
    /// A rule is well-formed JSON but not a valid rule.
    #[error("rule {rule:?}: {message}; correct the logic pack's rules.json")]
    BadRule {
        /// Rule id.
        rule: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A rule names a table no installed pack provides.
    #[error("pack {pack} rule {rule:?} reads table {table:?}, which no installed pack provides; install the intelligence pack that carries it")]
    MissingTable {
        /// Logic pack.
        pack: String,
        /// Rule id.
        rule: String,
        /// Table reference.
        table: String,
    },
    /// A table row lacks a field the rule needs, or has the wrong type.
    #[error("table {table:?} row {row} (counting from 0): {message}; the pack providing the table must be corrected")]
    BadTable {
        /// Table reference.
        table: String,
        /// Row number, counting from 0 (the index in the table's JSON array).
        row: usize,
        /// What is wrong.
        message: String,
    },
    /// The evaluation date is not a date.
    #[error("evaluation date {0:?} is not a date; use YYYY-MM-DD")]
    BadDate(String),
    /// The evaluation used all its fuel.
    #[error("evaluation stopped after using its fuel limit of {limit} units; the product or rule set is too large for one evaluation: split the product or raise the limit")]
    FuelExhausted {
        /// The limit given.
        limit: u64,
    },
    /// A version requirement is malformed.
    #[error("{0}")]
    Requirement(String),
}

/// A reference table: rows of JSON objects.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// Rows.
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// Tables by reference `<pack name>:<table>`.
pub type Tables = BTreeMap<String, Table>;

/// One component of a product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// Substance name.
    pub substance: String,
    /// CAS registry number.
    #[serde(default)]
    pub cas: Option<String>,
    /// EC number.
    #[serde(default)]
    pub ec: Option<String>,
    /// Concentration in `unit`.
    #[serde(default)]
    pub concentration: Option<f64>,
    /// `%w/w`, `%`, `mg/kg` or `ppm`.
    #[serde(default)]
    pub unit: Option<String>,
}

/// A document the product has, as far as rules care.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentFact {
    /// Document kind, e.g. `cpsr`.
    pub kind: String,
    /// Expiry date (YYYY-MM-DD).
    #[serde(default)]
    pub expires: Option<String>,
}

/// A product as the kernel evaluates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Product category (e.g. `leave_on`).
    #[serde(default)]
    pub category: Option<String>,
    /// Markets.
    #[serde(default)]
    pub markets: Vec<String>,
    /// Components in order.
    #[serde(default)]
    pub components: Vec<Component>,
    /// Documents on file.
    #[serde(default)]
    pub documents: Vec<DocumentFact>,
}

/// A logic pack's rules with the pack's identity.
#[derive(Debug, Clone, PartialEq)]
pub struct LogicPack {
    /// Pack name.
    pub name: String,
    /// Version.
    pub version: String,
    /// CID.
    pub cid: String,
    /// Its rules.
    pub rules: RuleSet,
}

/// Validates a `YYYY-MM-DD` calendar date.
pub(crate) fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = &s[r];
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_requirements() {
        assert!(vm_satisfies("^1.0.0").unwrap());
        assert!(!vm_satisfies("^2.0.0").unwrap());
        assert!(matches!(
            vm_satisfies("garbage"),
            Err(Error::Requirement(_))
        ));
        let e = vm_satisfies("garbage").unwrap_err().to_string();
        assert!(e.contains("\"garbage\"") && e.contains("^1.0.0"), "{e}");
        assert!(vm_satisfies(">=1.0.0, <2").unwrap());
        assert!(vm_satisfies("^1.1.0").unwrap());
        assert!(!vm_satisfies("^1.2.0").unwrap());
    }

    /// The build identity is exactly what docs/rules.md and build.rs say:
    /// recomputed here from the sources on disk.
    #[test]
    fn kernel_build_identity() {
        use sha2::{Digest, Sha256};
        fn walk(dir: &std::path::Path, skip: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    if p != skip {
                        walk(&p, skip, out);
                    }
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        walk(&src, &src.join("bin"), &mut files);
        let mut rel: Vec<(String, std::path::PathBuf)> = files
            .into_iter()
            .map(|f| {
                (
                    f.strip_prefix(&src).unwrap().to_str().unwrap().to_string(),
                    f,
                )
            })
            .collect();
        rel.sort();
        assert!(rel.iter().any(|(r, _)| r == "lib.rs"));
        assert!(rel.iter().all(|(r, _)| !r.starts_with("bin/")));
        let mut h = Sha256::new();
        for (r, f) in &rel {
            h.update(r.as_bytes());
            h.update([0u8]);
            h.update(std::fs::read(f).unwrap());
        }
        let digest = hex::encode(h.finalize());
        assert_eq!(
            kernel_build(),
            format!(
                "kernel/{}+vm{VM_VERSION}+src.{}",
                env!("CARGO_PKG_VERSION"),
                &digest[..16]
            )
        );
    }

    #[test]
    fn dates() {
        for ok in ["2026-11-22", "2024-02-29", "2000-02-29"] {
            assert!(valid_date(ok), "{ok}");
        }
        for bad in [
            "2026-02-29",
            "1900-02-29",
            "2026-13-01",
            "2026-1-01",
            "tomorrow",
            "2026-11-22T00",
        ] {
            assert!(!valid_date(bad), "{bad}");
        }
    }
}
