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
        .with_categories(["leave_on", "rinse_off", "oral"].map(String::from))
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
    // Known members already over the limit: a fail, missing data or not.
    let e = p.evaluate(&two(0.15, None), "2026-06-01", 100).unwrap();
    assert_eq!(e.verdict, Verdict::Fail);
    assert_eq!(
        e.rules[0].trace[0].detail,
        "Propylparaben (94-13-3) 0.15% = 0.15% > limit 0.14% even without line 2 (Butylparaben): concentration missing"
    );
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
    // VM 1.0: one unit per line. VM 1.1: one per line to resolve it, one
    // per substance (the 50 lines are one) for the rule and for coverage.
    let v1_0 = p.evaluate_as(Semantics::V1_0, &many, "2026-06-01", 50);
    assert_eq!(v1_0.unwrap().fuel_used, 50);
    assert_eq!(p.evaluate(&many, "2026-06-01", 52).unwrap().fuel_used, 52);
    assert_eq!(
        p.evaluate(&many, "2026-06-01", 51),
        Err(Error::FuelExhausted { limit: 51 })
    );
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

#[test]
fn same_program_twice_gives_identical_bytes_and_the_documented_shape() {
    let p = program(json!([
        {"id": "limits", "kind": "max_concentration", "table": "@d:limits", "title": "Limits"}
    ]));
    let prod = product(
        Some("leave_on"),
        vec![comp(
            "Salicylic acid",
            Some("69-72-7"),
            Some(2.5),
            Some("%"),
        )],
    );
    let a = p.evaluate(&prod, "2026-06-01", 100).unwrap();
    let b = p.evaluate(&prod, "2026-06-01", 100).unwrap();
    assert_eq!(a.to_canonical_json(), b.to_canonical_json());
    assert_eq!(
        String::from_utf8(a.to_canonical_json()).unwrap(),
        r#"{"verdict":"fail","rules":[{"pack":"@eu/test","rule":"limits","kind":"max_concentration","title":"Limits","verdict":"fail","obligations":[],"trace":[{"subject":"Salicylic acid (69-72-7)","check":"restricted in @d:limits","verdict":"fail","detail":"2.5% > limit 2% for leave_on"},{"subject":"0 of 1 substances","check":"restricted in @d:limits","verdict":"pass","detail":"not listed in @d:limits, which holds 2 entries; a substance not listed there may still be regulated elsewhere"}]},{"pack":"kernel","rule":"formulation","kind":"formulation","title":"One substance, one amount: the component lines as the rules saw them (resolved to substances and summed), the product category, and what the tables cover","verdict":"pass","obligations":[],"trace":[{"subject":"coverage","check":"tables consulted","verdict":"pass","detail":"consulted @d:limits (2 entries); every substance is listed in at least one of them"}]}],"fuel_used":3}"#
    );
    // The bytes read back into the same value.
    let back: Evaluation = serde_json::from_slice(&a.to_canonical_json()).unwrap();
    assert_eq!(back, a);
}

#[test]
fn percentages_print_exactly_from_ppb() {
    assert_eq!(pct(2_000_000), "0.2%");
    assert_eq!(pct(20_000_000), "2%");
    assert_eq!(pct(1), "0.0000001%");
    assert_eq!(pct(1_000_000_000), "100%");
    assert_eq!(pct(0), "0%");
    assert_eq!(pct(123_456_789), "12.3456789%");
}

#[test]
fn unit_conversion_is_exact_to_the_ppb() {
    let c = |v: f64, unit: &str| concentration(&comp("X", None, Some(v), Some(unit)));
    assert_eq!(c(2.0, "%w/w"), Ok(20_000_000));
    assert_eq!(c(2.0, "%"), Ok(20_000_000));
    assert_eq!(c(20_000.0, "ppm"), Ok(20_000_000));
    assert_eq!(c(20_000.0, "mg/kg"), Ok(20_000_000));
    assert_eq!(
        c(0.1, "%"),
        Ok(1_000_000),
        "0.1 is not exact in binary; rounding is"
    );
    assert_eq!(c(0.0000001, "%"), Ok(1));
    assert_eq!(c(0.0004, "ppm"), Ok(0), "below resolution rounds to 0");
    assert_eq!(c(100.0, "%"), Ok(1_000_000_000), "100% is allowed");
    for (v, unit) in [
        (100.0000001, "%"),
        (f64::NAN, "%"),
        (f64::INFINITY, "ppm"),
        (-0.5, "%"),
        (1.0, "g/l"),
        (1.0, "%W/W"),
    ] {
        assert!(c(v, unit).is_err(), "{v} {unit}");
    }
    assert_eq!(
        concentration(&comp("X", None, None, Some("%"))),
        Err("concentration missing".to_string())
    );
    assert_eq!(
        concentration(&comp("X", None, Some(1.0), None)),
        Err("unit missing".to_string())
    );
}

#[test]
fn names_match_without_cas_and_blank_cas_counts_as_none() {
    let p = limits();
    // No CAS: matched by name, case-insensitively and trimmed, then checked.
    let by_name = |cas: Option<&str>, v: f64| {
        product(
            Some("leave_on"),
            vec![comp("  SALICYLIC ACID ", cas, Some(v), Some("%"))],
        )
    };
    assert_eq!(verdict(&p, &by_name(None, 2.0)), Verdict::Pass);
    assert_eq!(verdict(&p, &by_name(None, 2.1)), Verdict::Fail);
    // A blank CAS is no CAS: still matched by name, never a silent pass.
    assert_eq!(verdict(&p, &by_name(Some("  "), 2.1)), Verdict::Fail);
    let e = p
        .evaluate(&by_name(Some(""), 2.1), "2026-06-01", 10)
        .unwrap();
    // Resolved through the table's name to its CAS number, which the trace shows.
    assert_eq!(e.rules[0].trace[0].subject, "SALICYLIC ACID (69-72-7)");
    // A CAS number that is not listed wins over a listed name.
    assert_eq!(
        verdict(&p, &by_name(Some("50-00-0"), 50.0)),
        Verdict::Pass,
        "matching is by CAS when there is one"
    );
    // A CAS number with surrounding spaces is trimmed.
    assert_eq!(verdict(&p, &by_name(Some(" 69-72-7 "), 2.1)), Verdict::Fail);
}

#[test]
fn unidentifiable_components_need_review_in_every_table_rule() {
    let mystery = || comp("Secret blend", None, Some(1.0), Some("%"));
    for rules in [
        json!([{"id": "a", "kind": "prohibited", "table": "@d:banned"}]),
        json!([{"id": "a", "kind": "max_concentration", "table": "@d:limits"}]),
        json!([{"id": "a", "kind": "labelling_threshold", "table": "@d:allergens", "thresholds_percent": {"*": 0.1}}]),
        json!([{"id": "a", "kind": "group_sum", "table": "@d:groups", "limits_percent": {"propyl_butyl": 0.14}}]),
    ] {
        let p = program(rules.clone());
        let e = p
            .evaluate(
                &product(Some("leave_on"), vec![mystery()]),
                "2026-06-01",
                100,
            )
            .unwrap();
        assert_eq!(e.verdict, Verdict::NeedsReview, "{rules}");
        let step = &e.rules[0].trace[0];
        assert_eq!(step.subject, "Secret blend");
        assert!(
            step.detail.contains("no CAS number") && step.detail.contains("add the CAS number"),
            "{step:?}"
        );
    }
}

#[test]
fn strictest_row_applies_when_a_product_type_is_listed_twice() {
    let set = RuleSet::parse(
        br#"{"format": "eurocomply-rules/1", "rules": [{"id": "l", "kind": "max_concentration", "table": "@d:t"}]}"#,
    )
    .unwrap();
    let mut tables = Tables::new();
    tables.insert(
        "@d:t".into(),
        table(json!([
            {"substance": "Hydrogen peroxide", "cas": "7722-84-1", "product_type": "leave_on", "max_percent": 4.0},
            {"substance": "Hydrogen peroxide", "cas": "7722-84-1", "product_type": "leave_on", "max_percent": 1.0},
            {"substance": "Hydrogen peroxide", "cas": "7722-84-1", "product_type": "nail", "max_percent": 2.0}
        ])),
    );
    let pack = LogicPack {
        name: "@eu/t".into(),
        version: "1".into(),
        cid: "c".into(),
        rules: set,
    };
    let p = Program::compile(&[pack], &tables)
        .unwrap()
        .with_categories(["leave_on", "nail", "oral"].map(String::from));
    let h2o2 = |cat: &str, v: f64| {
        product(
            Some(cat),
            vec![comp(
                "Hydrogen peroxide",
                Some("7722-84-1"),
                Some(v),
                Some("%"),
            )],
        )
    };
    assert_eq!(verdict(&p, &h2o2("leave_on", 1.0)), Verdict::Pass);
    assert_eq!(verdict(&p, &h2o2("leave_on", 1.5)), Verdict::Fail);
    let e = p.evaluate(&h2o2("oral", 0.01), "2026-06-01", 10).unwrap();
    assert_eq!(
        e.rules[0].trace[0].detail,
        "not permitted in oral products (permitted in: leave_on, nail)"
    );
}

#[test]
fn group_members_count_once_and_one_ppb_over_fails() {
    let set = RuleSet::parse(
        br#"{"format": "eurocomply-rules/1", "rules": [{"id": "g", "kind": "group_sum", "table": "@d:g",
            "limits_percent": {"a": 0.14, "b": 0.8}}]}"#,
    )
    .unwrap();
    let mut tables = Tables::new();
    // Propylparaben is listed twice in group a (e.g. acid and salt entries
    // sharing a CAS number) and once in group b.
    tables.insert(
        "@d:g".into(),
        table(json!([
            {"substance": "Propylparaben", "cas": "94-13-3", "group": "a"},
            {"substance": "Propylparaben", "cas": "94-13-3", "group": "b"},
            {"substance": "Propylparaben", "cas": "94-13-3", "group": "a"},
            {"substance": "Butylparaben", "cas": "94-26-8", "group": "a"}
        ])),
    );
    let pack = LogicPack {
        name: "@eu/t".into(),
        version: "1".into(),
        cid: "c".into(),
        rules: set,
    };
    let p = Program::compile(&[pack], &tables).unwrap();
    let prod = |propyl: f64, butyl: f64| {
        product(
            Some("leave_on"),
            vec![
                comp("Propylparaben", Some("94-13-3"), Some(propyl), Some("%")),
                comp("Butylparaben", Some("94-26-8"), Some(butyl), Some("%")),
            ],
        )
    };
    let e = p.evaluate(&prod(0.07, 0.07), "2026-06-01", 100).unwrap();
    assert_eq!(e.verdict, Verdict::Pass, "{:?}", e.rules[0].trace);
    assert_eq!(
        e.rules[0].trace[0].detail,
        "Propylparaben (94-13-3) 0.07% + Butylparaben (94-26-8) 0.07% = 0.14% <= limit 0.14%"
    );
    assert_eq!(
        e.rules[0].trace[1].detail,
        "Propylparaben (94-13-3) 0.07% = 0.07% <= limit 0.8%"
    );
    let e = p
        .evaluate(&prod(0.07, 0.0700001), "2026-06-01", 100)
        .unwrap();
    assert_eq!(e.verdict, Verdict::Fail, "1 ppb over the group limit");
    assert_eq!(e.rules[0].trace[0].verdict, Verdict::Fail);
    assert_eq!(e.rules[0].trace[1].verdict, Verdict::Pass);
    // Fuel: one per line to resolve it, one per substance for the rule and
    // for coverage, one per group.
    assert_eq!(e.fuel_used, 8);
}

#[test]
fn labelling_needs_usable_data_and_traces_are_never_empty() {
    let p = program(
        json!([{"id": "allergens", "kind": "labelling_threshold", "table": "@d:allergens",
        "thresholds_percent": {"*": 0.001}}]),
    );
    let missing = product(
        Some("leave_on"),
        vec![comp("Limonene", Some("5989-27-5"), None, Some("%"))],
    );
    let e = p.evaluate(&missing, "2026-06-01", 10).unwrap();
    assert_eq!(e.verdict, Verdict::NeedsReview);
    assert!(e.rules[0].obligations.is_empty());
    assert!(e.rules[0].trace[0].detail.contains("concentration missing"));
    // Exactly the obligation text the label needs.
    let above = product(
        Some("leave_on"),
        vec![comp("Limonene", Some("5989-27-5"), Some(0.05), Some("%"))],
    );
    let e = p.evaluate(&above, "2026-06-01", 10).unwrap();
    assert_eq!(e.verdict, Verdict::Pass);
    assert_eq!(
        e.rules[0].obligations,
        ["declare Limonene (5989-27-5) on the label: 0.05% > 0.001%"]
    );

    // Every kind, on a product none of its rows concern, explains its pass.
    let all = program(json!([
        {"id": "a", "kind": "prohibited", "table": "@d:banned"},
        {"id": "b", "kind": "max_concentration", "table": "@d:limits"},
        {"id": "c", "kind": "labelling_threshold", "table": "@d:allergens", "thresholds_percent": {"*": 0.1}},
        {"id": "d", "kind": "group_sum", "table": "@d:groups", "limits_percent": {"propyl_butyl": 0.14}},
        {"id": "e", "kind": "required_document", "document": "cpsr"}
    ]));
    let water = Product {
        documents: vec![DocumentFact {
            kind: "cpsr".into(),
            expires: None,
        }],
        ..product(
            Some("leave_on"),
            vec![comp("Water", Some("7732-18-5"), Some(100.0), Some("%"))],
        )
    };
    let e = all.evaluate(&water, "2026-06-01", 100).unwrap();
    assert_eq!(e.verdict, Verdict::Pass);
    let kinds: Vec<&str> = e.rules.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "prohibited",
            "max_concentration",
            "labelling_threshold",
            "group_sum",
            "required_document",
            "formulation"
        ],
        "rules in file order, then the formulation"
    );
    for r in &e.rules {
        assert!(!r.trace.is_empty(), "{r:?}");
        assert!(r.trace.iter().all(|s| s.verdict == Verdict::Pass), "{r:?}");
    }
    assert_eq!(e.rules[0].trace[0].subject, "1 of 1 substances");
    assert_eq!(e.rules[3].trace[0].detail, "no member present");
    // 1 line + 4 table rules x 1 substance + 1 group + 1 document + 1 for coverage.
    assert_eq!(e.fuel_used, 8);
}

#[test]
fn document_messages_say_what_to_do() {
    let p = program(json!([{"id": "cpsr", "kind": "required_document", "document": "cpsr"}]));
    let docs = |docs: &[(&str, Option<&str>)]| Product {
        documents: docs
            .iter()
            .map(|(k, e)| DocumentFact {
                kind: k.to_string(),
                expires: e.map(Into::into),
            })
            .collect(),
        ..product(Some("leave_on"), vec![])
    };
    let detail = |prod: &Product| {
        let e = p.evaluate(prod, "2026-06-01", 100).unwrap();
        (e.verdict, e.rules[0].trace[0].detail.clone(), e.fuel_used)
    };
    assert_eq!(
        detail(&docs(&[("sds", None), ("cpsr", Some("2026-05-31"))])),
        (
            Verdict::Fail,
            "expired on 2026-05-31; upload a current one".to_string(),
            2
        )
    );
    assert_eq!(
        detail(&docs(&[("sds", None)])),
        (Verdict::Fail, "no cpsr on file; upload one".to_string(), 1)
    );
    // Several expired: the latest is reported.
    assert_eq!(
        detail(&docs(&[
            ("cpsr", Some("2025-01-01")),
            ("cpsr", Some("2026-03-01")),
            ("cpsr", Some("2024-01-01"))
        ]))
        .1,
        "expired on 2026-03-01; upload a current one"
    );
    // An old one and a current one: the current one counts.
    assert_eq!(
        detail(&docs(&[
            ("cpsr", Some("2020-01-01")),
            ("cpsr", Some("2027-01-01"))
        ]))
        .0,
        Verdict::Pass
    );
    // 2026-02-30 is not a date: review, not a comparison of strings.
    assert_eq!(
        detail(&docs(&[("cpsr", Some("2026-02-30"))])).0,
        Verdict::NeedsReview
    );
}

#[test]
fn fuel_is_counted_exactly() {
    let p = program(json!([
        {"id": "ban", "kind": "prohibited", "table": "@d:banned"},
        {"id": "cpsr", "kind": "required_document", "document": "cpsr"}
    ]));
    let prod = Product {
        documents: vec![DocumentFact {
            kind: "cpsr".into(),
            expires: None,
        }],
        ..product(
            Some("leave_on"),
            (0..7)
                .map(|i| comp(&format!("C{i}"), Some("7732-18-5"), Some(1.0), Some("%")))
                .collect(),
        )
    };
    // VM 1.0: 7 lines + 1 document.
    let v1_0 = p.evaluate_as(Semantics::V1_0, &prod, "2026-06-01", 8);
    assert_eq!(v1_0.unwrap().fuel_used, 8);
    // VM 1.1: 7 lines resolved (one substance) + 1 for the rule + 1 document
    // + 1 for coverage.
    assert_eq!(p.evaluate(&prod, "2026-06-01", 10).unwrap().fuel_used, 10);
    assert_eq!(
        p.evaluate(&prod, "2026-06-01", 9),
        Err(Error::FuelExhausted { limit: 9 })
    );
    assert_eq!(
        p.evaluate(&prod, "2026-06-01", 0),
        Err(Error::FuelExhausted { limit: 0 })
    );
    let msg = Error::FuelExhausted { limit: 7 }.to_string();
    assert!(msg.contains("fuel limit of 7"), "{msg}");
}

#[test]
fn compile_names_the_table_and_row_of_a_wrong_type() {
    let set = RuleSet::parse(
        br#"{"format": "eurocomply-rules/1", "rules": [
            {"id": "l", "kind": "max_concentration", "table": "@d:t"},
            {"id": "g", "kind": "group_sum", "table": "@d:g", "limits_percent": {"a": 1}}]}"#,
    )
    .unwrap();
    let pack = LogicPack {
        name: "@eu/t".into(),
        version: "1".into(),
        cid: "c".into(),
        rules: set,
    };
    let ok_row =
        json!({"substance": "A", "cas": "1-1-1", "product_type": "leave_on", "max_percent": 1.0});
    let mut tables = Tables::new();
    tables.insert(
        "@d:g".into(),
        table(json!([{"substance": "A", "cas": "1-1-1", "group": "a"}])),
    );
    for (bad, message) in [
        (
            json!({"substance": "B", "cas": "2-2-2", "product_type": "leave_on", "max_percent": "2%"}),
            "field \"max_percent\" must be a number from 0 to 100",
        ),
        (
            json!({"substance": "B", "cas": "2-2-2", "product_type": "leave_on", "max_percent": 101}),
            "field \"max_percent\" must be a number from 0 to 100",
        ),
        (
            json!({"substance": "B", "cas": 222, "product_type": "leave_on", "max_percent": 1}),
            "field \"cas\" must be a string",
        ),
        (
            json!({"substance": "B", "cas": "2-2-2", "max_percent": 1}),
            "missing field \"product_type\"",
        ),
    ] {
        tables.insert("@d:t".into(), table(json!([ok_row, bad])));
        let e = Program::compile(std::slice::from_ref(&pack), &tables).unwrap_err();
        assert_eq!(
            e,
            Error::BadTable {
                table: "@d:t".into(),
                row: 1,
                message: message.into()
            }
        );
        assert!(e.to_string().contains("\"@d:t\" row 1"), "{e}");
    }
    tables.insert("@d:t".into(), table(json!([ok_row])));
    tables.insert(
        "@d:g".into(),
        table(json!([{"substance": "A", "cas": "1-1-1"}])),
    );
    let e = Program::compile(std::slice::from_ref(&pack), &tables).unwrap_err();
    assert!(
        matches!(&e, Error::BadTable { table, row: 0, message } if table == "@d:g" && message.contains("\"group\"")),
        "{e}"
    );
    // The missing-table error names rule, pack and table.
    tables.remove("@d:g");
    let e = Program::compile(&[pack], &tables).unwrap_err().to_string();
    for needle in ["@eu/t", "\"g\"", "\"@d:g\"", "install"] {
        assert!(e.contains(needle), "{needle}: {e}");
    }
}

#[test]
fn products_are_read_strictly() {
    let ok: Product = serde_json::from_value(json!({
        "id": "p", "name": "P",
        "components": [{"substance": "Aqua", "cas": "7732-18-5", "concentration": 90, "unit": "%"}]
    }))
    .unwrap();
    assert_eq!(ok.category, None);
    assert_eq!(ok.components[0].concentration, Some(90.0));
    for bad in [
        json!({"id": "p", "name": "P", "colour": "red"}),
        json!({"id": "p", "name": "P", "components": [{"substance": "A", "percent": 1}]}),
        json!({"id": "p", "name": "P", "documents": [{"kind": "cpsr", "expiry": "2030-01-01"}]}),
    ] {
        let e = serde_json::from_value::<Product>(bad.clone()).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{bad}: {e}");
    }
}

#[test]
fn rows_with_a_blank_cas_are_found_by_name_only() {
    let set = RuleSet::parse(
        br#"{"format": "eurocomply-rules/1", "rules": [{"id": "b", "kind": "prohibited", "table": "@d:t"}]}"#,
    )
    .unwrap();
    let mut tables = Tables::new();
    tables.insert(
        "@d:t".into(),
        table(json!([{"substance": "Lead and its compounds", "cas": ""}])),
    );
    let pack = LogicPack {
        name: "@eu/t".into(),
        version: "1".into(),
        cid: "c".into(),
        rules: set,
    };
    let p = Program::compile(&[pack], &tables).unwrap();
    let e = p
        .evaluate(
            &product(None, vec![comp("lead and its compounds", None, None, None)]),
            "2026-06-01",
            10,
        )
        .unwrap();
    assert_eq!(e.verdict, Verdict::Fail);
    assert_eq!(
        e.rules[0].trace[0].detail,
        "prohibited: listed as Lead and its compounds"
    );
    // A component with a blank CAS is not matched to the row's blank CAS
    // by accident, but by its name.
    let other = comp("Water", Some(" "), Some(1.0), Some("%"));
    let e = p
        .evaluate(&product(None, vec![other]), "2026-06-01", 10)
        .unwrap();
    assert_eq!(e.verdict, Verdict::NeedsReview, "{:?}", e.rules[0].trace);
}
