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

pub use eval::{Evaluation, Program, RuleOutcome, Step, Verdict};
pub use rules::{Rule, RuleSet, RULES_FORMAT};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The rules VM version; packs declare a semver requirement on it
/// (`handler_vm_version`).
pub const VM_VERSION: &str = "1.0.0";

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
    /// A rules file is malformed.
    #[error("rules file: {0}")]
    Parse(String),
    /// A rule is well-formed JSON but not a valid rule.
    #[error("rule {rule:?}: {message}")]
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
    #[error("table {table:?} row {row}: {message}")]
    BadTable {
        /// Table reference.
        table: String,
        /// Row number, from 0.
        row: usize,
        /// What is wrong.
        message: String,
    },
    /// The evaluation date is not a date.
    #[error("evaluation date {0:?} is not a date; use YYYY-MM-DD")]
    BadDate(String),
    /// The evaluation used all its fuel.
    #[error("evaluation stopped after using its fuel limit of {limit} steps; the product or rule set is too large for one evaluation")]
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
        assert!(
            kernel_build().contains(&format!("+vm{VM_VERSION}+")),
            "build.rs and VM_VERSION agree"
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
