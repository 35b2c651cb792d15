use super::*;
use crate::{DocumentFact, RuleSet};
use serde_json::json;

fn table(rows: serde_json::Value) -> Table {
    Table {
        rows: rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_object().unwrap().clone())
            .collect(),
    }
}

fn program(rules: serde_json::Value) -> Program {
    let set = RuleSet::parse(
        json!({"format": "eurocomply-rules/1", "rules": rules})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let mut tables = Tables::new();
    tables.insert(
        "@d:banned".into(),
        table(json!([{"substance": "Lead", "cas": "7439-92-1"}, {"substance": "Chloroform", "cas": "67-66-3"}])),
    );
    tables.insert(
        "@d:limits".into(),
        table(json!([
            {"substance": "Salicylic acid", "cas": "69-72-7", "product_type": "leave_on", "max_percent": 2.0},
            {"substance": "Salicylic acid", "cas": "69-72-7", "product_type": "rinse_off", "max_percent": 3.0}
        ])),
    );
    tables.insert(
        "@d:allergens".into(),
        table(json!([{"substance": "Limonene", "cas": "5989-27-5"}])),
    );
    tables.insert(
        "@d:groups".into(),
        table(json!([
            {"substance": "Propylparaben", "cas": "94-13-3", "group": "propyl_butyl"},
            {"substance": "Butylparaben", "cas": "94-26-8", "group": "propyl_butyl"}
        ])),
    );
    let pack = LogicPack {
        name: "@eu/test".into(),
        version: "1.0.0".into(),
        cid: "sha256:00".into(),
        rules: set,
    };
    Program::compile(&[pack], &tables).unwrap()
}

fn comp(substance: &str, cas: Option<&str>, conc: Option<f64>, unit: Option<&str>) -> Component {
    Component {
        substance: substance.into(),
        cas: cas.map(Into::into),
        ec: None,
        concentration: conc,
        unit: unit.map(Into::into),
    }
}

fn product(category: Option<&str>, components: Vec<Component>) -> Product {
    Product {
        id: "p".into(),
        name: "P".into(),
        category: category.map(Into::into),
        markets: vec!["EU".into()],
        components,
        documents: vec![],
    }
}

fn verdict(p: &Program, prod: &Product) -> Verdict {
    p.evaluate(prod, "2026-06-01", 10_000).unwrap().verdict
}

fn limits() -> Program {
    program(json!([{"id": "limits", "kind": "max_concentration", "table": "@d:limits"}]))
}

#[test]
fn prohibited_by_cas_and_by_name() {
    let p = program(json!([{"id": "ban", "kind": "prohibited", "table": "@d:banned"}]));
    let water = comp("Water", Some("7732-18-5"), Some(99.0), Some("%"));
    assert_eq!(
        verdict(&p, &product(Some("leave_on"), vec![water.clone()])),
        Verdict::Pass
    );
    let lead = comp("Pb", Some("7439-92-1"), Some(0.0001), Some("%"));
    let e = p
        .evaluate(&product(None, vec![water.clone(), lead]), "2026-06-01", 100)
        .unwrap();
    assert_eq!(e.verdict, Verdict::Fail);
    assert!(e.rules[0].trace[0].detail.contains("Lead"));
    // Without a CAS number the name is matched, case-insensitively.
    let by_name = comp(" chloroform ", None, Some(1.0), Some("%"));
    assert_eq!(verdict(&p, &product(None, vec![by_name])), Verdict::Fail);
    // Unknown name without CAS cannot be checked: needs review, never a pass.
    let mystery = comp("Secret blend", None, Some(1.0), Some("%"));
    let e = p
        .evaluate(&product(None, vec![water, mystery]), "2026-06-01", 100)
        .unwrap();
    assert_eq!(e.verdict, Verdict::NeedsReview);
    assert!(e.rules[0].trace[0].detail.contains("add the CAS number"));
    assert_eq!(verdict(&p, &product(None, vec![])), Verdict::NeedsReview);
}

#[test]
fn limit_boundaries_and_units() {
    let p = limits();
    let sal = |v: f64, unit: &str| {
        product(
            Some("leave_on"),
            vec![comp("Salicylic acid", Some("69-72-7"), Some(v), Some(unit))],
        )
    };
    assert_eq!(
        verdict(&p, &sal(2.0, "%w/w")),
        Verdict::Pass,
        "limit exactly reached passes"
    );
    assert_eq!(
        verdict(&p, &sal(2.0000001, "%w/w")),
        Verdict::Fail,
        "1 ppb over fails"
    );
    assert_eq!(
        verdict(&p, &sal(20000.0, "ppm")),
        Verdict::Pass,
        "20000 ppm == 2%"
    );
    assert_eq!(verdict(&p, &sal(20001.0, "ppm")), Verdict::Fail);
    assert_eq!(verdict(&p, &sal(20000.0, "mg/kg")), Verdict::Pass);
    assert_eq!(verdict(&p, &sal(2.5, "%")), Verdict::Fail);
    let e = p.evaluate(&sal(2.5, "%"), "2026-06-01", 100).unwrap();
    assert_eq!(e.rules[0].trace[0].detail, "2.5% > limit 2% for leave_on");
    // Per category: 2.5% is fine in rinse-off, not permitted at all in oral products.
    let mut rinse = sal(2.5, "%");
    rinse.category = Some("rinse_off".into());
    assert_eq!(verdict(&p, &rinse), Verdict::Pass);
    let mut oral = sal(0.1, "%");
    oral.category = Some("oral".into());
    let e = p.evaluate(&oral, "2026-06-01", 100).unwrap();
    assert_eq!(e.verdict, Verdict::Fail);
    assert!(
        e.rules[0].trace[0].detail.contains("not permitted in oral"),
        "{:?}",
        e.rules[0].trace
    );
}

#[test]
fn missing_data_needs_review() {
    let p = limits();
    let cases = [
        product(
            None,
            vec![comp(
                "Salicylic acid",
                Some("69-72-7"),
                Some(1.0),
                Some("%"),
            )],
        ),
        product(
            Some("leave_on"),
            vec![comp("Salicylic acid", Some("69-72-7"), None, Some("%"))],
        ),
        product(
            Some("leave_on"),
            vec![comp("Salicylic acid", Some("69-72-7"), Some(1.0), None)],
        ),
        product(
            Some("leave_on"),
            vec![comp(
                "Salicylic acid",
                Some("69-72-7"),
                Some(1.0),
                Some("g/l"),
            )],
        ),
        product(
            Some("leave_on"),
            vec![comp(
                "Salicylic acid",
                Some("69-72-7"),
                Some(-1.0),
                Some("%"),
            )],
        ),
        product(
            Some("leave_on"),
            vec![comp(
                "Salicylic acid",
                Some("69-72-7"),
                Some(101.0),
                Some("%"),
            )],
        ),
    ];
    for c in cases {
        assert_eq!(verdict(&p, &c), Verdict::NeedsReview, "{c:?}");
    }
}

#[test]
fn labelling_threshold_is_strictly_above() {
    let p = program(
        json!([{"id": "allergens", "kind": "labelling_threshold", "table": "@d:allergens",
        "thresholds_percent": {"leave_on": 0.001, "*": 0.01}}]),
    );
    let lim = |v: f64, cat: Option<&str>| {
        product(
            cat,
            vec![comp("Limonene", Some("5989-27-5"), Some(v), Some("%"))],
        )
    };
    let at = p
        .evaluate(&lim(0.001, Some("leave_on")), "2026-06-01", 100)
        .unwrap();
    assert_eq!(at.verdict, Verdict::Pass);
    assert!(
        at.rules[0].obligations.is_empty(),
        "exactly at the threshold: no duty"
    );
    let above = p
        .evaluate(&lim(0.0011, Some("leave_on")), "2026-06-01", 100)
        .unwrap();
    assert_eq!(above.rules[0].obligations.len(), 1);
    assert!(above.rules[0].obligations[0].contains("Limonene (5989-27-5)"));
    // Other categories use "*": 0.005% is below 0.01%.
    let rinse = p
        .evaluate(&lim(0.005, Some("rinse_off")), "2026-06-01", 100)
        .unwrap();
    assert!(rinse.rules[0].obligations.is_empty());
    // No "*" and no category: needs review.
    let strict = program(
        json!([{"id": "a", "kind": "labelling_threshold", "table": "@d:allergens",
        "thresholds_percent": {"leave_on": 0.001}}]),
    );
    assert_eq!(verdict(&strict, &lim(0.5, None)), Verdict::NeedsReview);
}

#[test]
fn group_sums() {
    let p = program(
        json!([{"id": "parabens", "kind": "group_sum", "table": "@d:groups",
        "limits_percent": {"propyl_butyl": 0.14}}]),
    );
    let two = |a: f64, b: Option<f64>| {
        product(
            Some("leave_on"),
            vec![
                comp("Propylparaben", Some("94-13-3"), Some(a), Some("%")),
                comp("Butylparaben", Some("94-26-8"), b, Some("%")),
            ],
        )
    };
    assert_eq!(
        verdict(&p, &two(0.07, Some(0.07))),
        Verdict::Pass,
        "sum exactly at the limit"
    );
    let e = p.evaluate(&two(0.1, Some(0.1)), "2026-06-01", 100).unwrap();
    assert_eq!(e.verdict, Verdict::Fail, "each under, the sum over");
    assert!(
        e.rules[0].trace[0].detail.contains("= 0.2% > limit 0.14%"),
        "{:?}",
        e.rules[0].trace
    );
    assert_eq!(verdict(&p, &two(0.01, None)), Verdict::NeedsReview);
    let none = product(
        Some("leave_on"),
        vec![comp("Water", Some("7732-18-5"), Some(100.0), Some("%"))],
    );
    assert_eq!(verdict(&p, &none), Verdict::Pass);
}

#[test]
fn required_documents() {
    let p = program(json!([{"id": "cpsr", "kind": "required_document", "document": "cpsr"}]));
    let with = |expires: Option<&str>| Product {
        documents: vec![DocumentFact {
            kind: "cpsr".into(),
            expires: expires.map(Into::into),
        }],
        ..product(Some("leave_on"), vec![])
    };
    assert_eq!(verdict(&p, &with(None)), Verdict::Pass);
    assert_eq!(
        verdict(&p, &with(Some("2026-06-01"))),
        Verdict::Pass,
        "valid on its expiry day"
    );
    assert_eq!(verdict(&p, &with(Some("2026-05-31"))), Verdict::Fail);
    assert_eq!(verdict(&p, &with(Some("someday"))), Verdict::NeedsReview);
    assert_eq!(verdict(&p, &product(None, vec![])), Verdict::Fail);
    assert!(matches!(
        p.evaluate(&with(None), "June 1st", 10),
        Err(Error::BadDate(_))
    ));
}

#[test]
fn fuel_bounds_work() {
    let p = limits();
    let many = product(
        Some("leave_on"),
        (0..50)
            .map(|_| comp("Water", Some("7732-18-5"), Some(1.0), Some("%")))
            .collect(),
    );
    assert_eq!(
        p.evaluate(&many, "2026-06-01", 10),
        Err(Error::FuelExhausted { limit: 10 })
    );
    assert_eq!(p.evaluate(&many, "2026-06-01", 50).unwrap().fuel_used, 50);
}

#[test]
fn deterministic_bytes() {
    let rules = json!([
        {"id": "ban", "kind": "prohibited", "table": "@d:banned"},
        {"id": "limits", "kind": "max_concentration", "table": "@d:limits"},
        {"id": "parabens", "kind": "group_sum", "table": "@d:groups", "limits_percent": {"propyl_butyl": 0.14}},
    ]);
    let prod = product(
        Some("leave_on"),
        vec![
            comp("Salicylic acid", Some("69-72-7"), Some(2.1), Some("%")),
            comp("Propylparaben", Some("94-13-3"), Some(0.1), Some("%")),
            comp("Mystery", None, None, None),
        ],
    );
    let a = program(rules.clone())
        .evaluate(&prod, "2026-06-01", 1000)
        .unwrap()
        .to_canonical_json();
    let b = program(rules)
        .evaluate(&prod, "2026-06-01", 1000)
        .unwrap()
        .to_canonical_json();
    assert_eq!(a, b);
}

#[test]
fn compile_refuses_missing_tables_and_bad_rows() {
    let set = RuleSet::parse(br#"{"format": "eurocomply-rules/1", "rules": [{"id": "x", "kind": "prohibited", "table": "@d:nope"}]}"#).unwrap();
    let pack = LogicPack {
        name: "@eu/t".into(),
        version: "1.0.0".into(),
        cid: "c".into(),
        rules: set,
    };
    let e = Program::compile(std::slice::from_ref(&pack), &Tables::new()).unwrap_err();
    assert!(matches!(e, Error::MissingTable { .. }), "{e}");
    let mut tables = Tables::new();
    tables.insert("@d:nope".into(), table(json!([{"substance": "Lead"}])));
    let e = Program::compile(&[pack], &tables).unwrap_err();
    assert_eq!(
        e,
        Error::BadTable {
            table: "@d:nope".into(),
            row: 0,
            message: "missing field \"cas\"".into()
        }
    );
}

/// The example packs in the repository compile and give the expected verdicts.
#[test]
fn example_packs_compile() {
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bundles/examples/packs");
    let mut packs = Vec::new();
    let mut tables = Tables::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("pack.json")).unwrap()).unwrap();
        let name = manifest["name"].as_str().unwrap().to_string();
        if let Ok(rules) = std::fs::read(dir.join("rules.json")) {
            packs.push(LogicPack {
                name: name.clone(),
                version: "1".into(),
                cid: "c".into(),
                rules: RuleSet::parse(&rules).unwrap(),
            });
        }
        if let Ok(entries) = std::fs::read_dir(dir.join("tables")) {
            for t in entries {
                let t = t.unwrap().path();
                let rows: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&t).unwrap()).unwrap();
                tables.insert(
                    format!("{name}:{}", t.file_stem().unwrap().to_str().unwrap()),
                    table(rows),
                );
            }
        }
    }
    packs.sort_by(|a, b| a.name.cmp(&b.name));
    let p = Program::compile(&packs, &tables).unwrap();
    assert!(p.len() >= 5);
    let compliant = Product {
        documents: vec![DocumentFact {
            kind: "cpsr".into(),
            expires: Some("2030-01-01".into()),
        }],
        ..product(
            Some("leave_on"),
            vec![
                comp("Aqua", Some("7732-18-5"), Some(97.5), Some("%")),
                comp("Salicylic acid", Some("69-72-7"), Some(2.0), Some("%")),
            ],
        )
    };
    assert_eq!(
        p.evaluate(&compliant, "2026-06-01", DEFAULT)
            .unwrap()
            .verdict,
        Verdict::Pass
    );
}

const DEFAULT: u64 = crate::DEFAULT_FUEL;
