//! Locks made by kernel VM 1.0.0 replay with VM 1.0.0 semantics: the frozen
//! inputs in `v1_0_semantics.json` evaluate to exactly the bytes that build
//! produced.

use kernel::{LogicPack, Product, RuleSet, Semantics, Table, Tables};
use serde_json::Value;

fn fixture() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/v1_0_semantics.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn program(f: &Value) -> kernel::Program {
    let packs: Vec<LogicPack> = f["packs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| LogicPack {
            name: p["name"].as_str().unwrap().into(),
            version: "1".into(),
            cid: "c".into(),
            rules: RuleSet::parse(p["rules"].to_string().as_bytes()).unwrap(),
        })
        .collect();
    let tables: Tables = f["tables"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, rows)| {
            let rows = rows
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_object().unwrap().clone())
                .collect();
            (k.clone(), Table { rows })
        })
        .collect();
    kernel::Program::compile(&packs, &tables).unwrap()
}

/// Every frozen product evaluates to exactly the bytes VM 1.0.0 produced.
#[test]
fn vm_1_0_locks_replay_byte_identical() {
    let f = fixture();
    let p = program(&f);
    let as_of = f["as_of"].as_str().unwrap();
    let products = f["products"].as_array().unwrap();
    let expected = f["expected"].as_array().unwrap();
    assert_eq!(products.len(), expected.len());
    assert!(products.len() >= 10);
    for (prod, want) in products.iter().zip(expected) {
        let prod: Product = serde_json::from_value(prod.clone()).unwrap();
        let e = p
            .evaluate_as(Semantics::V1_0, &prod, as_of, kernel::DEFAULT_FUEL)
            .unwrap();
        assert_eq!(
            String::from_utf8(e.to_canonical_json()).unwrap(),
            want.as_str().unwrap(),
            "product {}",
            prod.id
        );
    }
}

/// Locks name their VM version; this kernel replays 1.0.0 and 1.1.0 and
/// refuses any other rather than guess.
#[test]
fn semantics_follow_the_recorded_vm_version() {
    assert_eq!(Semantics::of_vm("1.0.0").unwrap(), Semantics::V1_0);
    assert_eq!(Semantics::of_vm("1.1.0").unwrap(), Semantics::V1_1);
    assert_eq!(Semantics::CURRENT.vm_version(), kernel::VM_VERSION);
    let e = Semantics::of_vm("2.0.0").unwrap_err().to_string();
    assert!(
        e.contains("\"2.0.0\"") && e.contains("1.0.0 and 1.1.0"),
        "{e}"
    );
    // The current semantics differ from 1.0.0 on the frozen products (so the
    // frozen test above is not vacuous) and are what `evaluate` uses.
    let f = fixture();
    let p = program(&f);
    let prod: Product = serde_json::from_value(f["products"][1].clone()).unwrap();
    let now = p
        .evaluate(&prod, "2026-06-01", kernel::DEFAULT_FUEL)
        .unwrap();
    let then = p
        .evaluate_as(Semantics::V1_0, &prod, "2026-06-01", kernel::DEFAULT_FUEL)
        .unwrap();
    assert_ne!(now.to_canonical_json(), then.to_canonical_json());
    assert_eq!(
        now,
        p.evaluate_as(Semantics::V1_1, &prod, "2026-06-01", kernel::DEFAULT_FUEL)
            .unwrap()
    );
}
