//! Issue #26: one substance, one amount. Components are resolved to
//! substances (CAS, then names and synonyms from the reference data) and
//! summed before any rule; group entries carry their members and conversion
//! factors; unknown categories need review; every trace states its coverage.
//! Run against the example packs the hub ships and against small tables.

use kernel::{Component, Evaluation, LogicPack, Product, RuleSet, Table, Tables, Verdict};
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

/// The example packs (rules and tables) as shipped.
fn shipped() -> kernel::Program {
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
    // The categories the cosmetics environment defines, as the spoke passes them.
    let env: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("cosmetics-vertical/environment.json")).unwrap(),
    )
    .unwrap();
    let categories = env["entities"]["product"]["fields"]["category"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string());
    kernel::Program::compile(&packs, &tables)
        .unwrap()
        .with_categories(categories)
}

fn c(substance: &str, cas: Option<&str>, percent: Option<f64>) -> Component {
    Component {
        substance: substance.into(),
        cas: cas.map(Into::into),
        ec: None,
        concentration: percent,
        unit: percent.map(|_| "%w/w".into()),
    }
}

fn product(category: Option<&str>, components: Vec<Component>) -> Product {
    Product {
        id: "p".into(),
        name: "P".into(),
        category: category.map(Into::into),
        markets: vec!["EU".into()],
        components,
        documents: vec![kernel::DocumentFact {
            kind: "cpsr".into(),
            expires: None,
        }],
    }
}

fn eval(p: &kernel::Program, prod: &Product) -> Evaluation {
    p.evaluate(prod, "2026-06-01", kernel::DEFAULT_FUEL)
        .unwrap()
}

fn rule<'a>(e: &'a Evaluation, id: &str) -> &'a kernel::RuleOutcome {
    e.rules
        .iter()
        .find(|r| r.rule == id)
        .unwrap_or_else(|| panic!("no outcome {id}: {e:?}"))
}

fn details(r: &kernel::RuleOutcome) -> String {
    r.trace
        .iter()
        .map(|s| {
            format!(
                "{} | {} | {:?} | {}",
                s.subject, s.check, s.verdict, s.detail
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const AQUA: (&str, &str) = ("Aqua", "7732-18-5");

/// Salicylic acid 1.5% twice, under one name or two, or as a CAS line plus
/// a name-only line: 3% in a leave-on product, over the 2% limit.
#[test]
fn the_same_substance_on_several_lines_is_summed() {
    let p = shipped();
    let cases = [
        (
            "twice",
            c("Salicylic acid", Some("69-72-7"), Some(1.5)),
            c("Salicylic acid", Some("69-72-7"), Some(1.5)),
        ),
        (
            "one CAS, two names",
            c("Salicylic acid", Some("69-72-7"), Some(1.5)),
            c("2-Hydroxybenzoic acid", Some("69-72-7"), Some(1.5)),
        ),
        (
            "CAS line and name-only line",
            c("Salicylic acid", Some("69-72-7"), Some(1.5)),
            c(" salicylic  ACID ", None, Some(1.5)),
        ),
        (
            "name-only synonym",
            c("Salicylic acid", Some("69-72-7"), Some(1.5)),
            c("2-hydroxybenzoic acid", None, Some(1.5)),
        ),
    ];
    for (what, a, b) in cases {
        let prod = product(
            Some("leave_on"),
            vec![c(AQUA.0, Some(AQUA.1), Some(97.0)), a, b],
        );
        let e = eval(&p, &prod);
        let limits = rule(&e, "annex-iii-limits");
        assert_eq!(
            limits.verdict,
            Verdict::Fail,
            "{what}:\n{}",
            details(limits)
        );
        let step = limits
            .trace
            .iter()
            .find(|s| s.verdict == Verdict::Fail)
            .unwrap();
        assert_eq!(step.subject, "Salicylic acid (69-72-7)", "{what}");
        assert_eq!(
            step.detail, "3% (lines 2 + 3: 1.5% + 1.5%) > limit 2% for leave_on",
            "{what}"
        );
        // Nothing about the name-only line is left unidentified.
        assert!(
            e.rules
                .iter()
                .flat_map(|r| &r.trace)
                .all(|s| !s.detail.contains("add the CAS number")),
            "{what}: {e:?}"
        );
        // Duplicate lines are a finding and an obligation to review.
        let f = rule(&e, "formulation");
        assert_eq!(f.verdict, Verdict::NeedsReview, "{what}:\n{}", details(f));
        assert_eq!(
            f.obligations,
            ["review lines 2 and 3: both are Salicylic acid (69-72-7), 3% in total; merge them or correct one"],
            "{what}"
        );
        assert_eq!(e.verdict, Verdict::Fail);
    }
    // One line of 1.5% passes, and the formulation has nothing to review.
    let once = product(
        Some("leave_on"),
        vec![c("Salicylic acid", Some("69-72-7"), Some(1.5))],
    );
    let e = eval(&p, &once);
    assert_eq!(rule(&e, "annex-iii-limits").verdict, Verdict::Pass);
    assert_eq!(rule(&e, "formulation").verdict, Verdict::Pass, "{e:?}");
    assert!(rule(&e, "formulation").obligations.is_empty());
}

/// Limonene split over two lines of 0.006% in a rinse-off product: 0.012%,
/// above the 0.01% labelling threshold.
#[test]
fn a_split_allergen_is_labelled_on_its_total() {
    let p = shipped();
    let prod = product(
        Some("rinse_off"),
        vec![
            c("Limonene", Some("5989-27-5"), Some(0.006)),
            c(AQUA.0, Some(AQUA.1), Some(99.0)),
            c("d-Limonene", None, Some(0.006)),
        ],
    );
    let e = eval(&p, &prod);
    let r = rule(&e, "allergen-labelling");
    assert_eq!(
        r.obligations,
        ["declare Limonene (5989-27-5) on the label: 0.012% > 0.01%"],
        "{}",
        details(r)
    );
    assert!(
        r.trace
            .iter()
            .any(|s| s.detail
                == "0.012% (lines 1 + 3: 0.006% + 0.006%) > threshold 0.01%: duty applies"),
        "{}",
        details(r)
    );
}

/// "Lead and its compounds" covers lead acetate under its own CAS number.
#[test]
fn group_entries_match_their_members() {
    let p = shipped();
    let prod = product(
        Some("leave_on"),
        vec![
            c(AQUA.0, Some(AQUA.1), Some(99.0)),
            c("Lead acetate", Some("301-04-2"), Some(0.002)),
        ],
    );
    let e = eval(&p, &prod);
    let r = rule(&e, "annex-ii-prohibited");
    assert_eq!(r.verdict, Verdict::Fail, "{}", details(r));
    assert!(
        r.trace.iter().any(|s| s.subject == "Lead acetate (301-04-2)"
            && s.detail == "prohibited: listed as Lead and its compounds (7439-92-1), which covers Lead acetate (301-04-2)"),
        "{}",
        details(r)
    );
    // By name only, too.
    let by_name = product(
        Some("leave_on"),
        vec![c("lead  acetate", None, Some(0.002))],
    );
    assert_eq!(
        rule(&eval(&p, &by_name), "annex-ii-prohibited").verdict,
        Verdict::Fail
    );
}

/// Members count towards their entry's limit through their conversion
/// factor: hydrogen peroxide "present or released", so carbamide peroxide
/// counts as 0.3616 of its weight.
#[test]
fn members_are_converted_and_summed_with_their_entry() {
    let p = shipped();
    let prod = product(
        Some("oral"),
        vec![
            c("Hydrogen peroxide", Some("7722-84-1"), Some(0.08)),
            c("Carbamide peroxide", Some("124-43-6"), Some(0.1)),
        ],
    );
    let e = eval(&p, &prod);
    let r = rule(&e, "annex-iii-limits");
    assert_eq!(r.verdict, Verdict::Fail, "{}", details(r));
    assert!(
        r.trace.iter().any(|s| s.subject == "Hydrogen peroxide (7722-84-1)"
            && s.detail
                == "0.11616% as hydrogen peroxide (lines 1 + 2: 0.08% + 0.1% × 0.3616 = 0.03616%) > limit 0.1% for oral"),
        "{}",
        details(r)
    );
    // 0.05% carbamide peroxide alone is 0.01808%: within the limit.
    let alone = product(
        Some("oral"),
        vec![c("Carbamide peroxide", Some("124-43-6"), Some(0.05))],
    );
    assert_eq!(
        rule(&eval(&p, &alone), "annex-iii-limits").verdict,
        Verdict::Pass
    );
}

/// A category the environment does not define is never "not permitted in
/// sunscreen products": it needs review, and so does a missing one.
#[test]
fn unknown_categories_need_review_not_a_legal_statement() {
    let p = shipped();
    for category in [Some("sunscreen"), None] {
        let prod = product(
            category,
            vec![c("Salicylic acid", Some("69-72-7"), Some(1.0))],
        );
        let e = eval(&p, &prod);
        let r = rule(&e, "annex-iii-limits");
        assert_eq!(
            r.verdict,
            Verdict::NeedsReview,
            "{category:?}: {}",
            details(r)
        );
        assert!(
            e.rules
                .iter()
                .flat_map(|r| &r.trace)
                .all(|s| !s.detail.contains("not permitted")),
            "{category:?}: {e:?}"
        );
        let f = rule(&e, "formulation");
        assert_eq!(f.verdict, Verdict::NeedsReview, "{category:?}");
    }
    let e = eval(
        &p,
        &product(
            Some("sunscreen"),
            vec![c("Salicylic acid", Some("69-72-7"), Some(1.0))],
        ),
    );
    let step = &rule(&e, "annex-iii-limits").trace[0];
    assert_eq!(
        step.detail,
        "product category \"sunscreen\" is not one this environment defines (hair_rinse_off, leave_on, nail, oral, rinse_off); correct the product's category"
    );
    // Case and spacing do not make a category unknown.
    let e = eval(
        &p,
        &product(
            Some(" Leave On "),
            vec![c("Salicylic acid", Some("69-72-7"), Some(1.0))],
        ),
    );
    assert_eq!(e.verdict, Verdict::Pass, "{e:?}");
    // A category the table does not permit the substance in still fails.
    let e = eval(
        &p,
        &product(
            Some("oral"),
            vec![c("Salicylic acid", Some("69-72-7"), Some(1.0))],
        ),
    );
    assert_eq!(rule(&e, "annex-iii-limits").verdict, Verdict::Fail);
}

/// Each table rule's trace names its table and how many entries it holds;
/// a substance no table knows is "not covered", not "clean".
#[test]
fn coverage_is_stated() {
    let p = shipped();
    let prod = product(
        Some("leave_on"),
        vec![
            c(AQUA.0, Some(AQUA.1), Some(98.0)),
            c("Salicylic acid", Some("69-72-7"), Some(1.0)),
            c("Glycerin", Some("56-81-5"), Some(1.0)),
        ],
    );
    let e = eval(&p, &prod);
    assert_eq!(e.verdict, Verdict::Pass, "{e:?}");
    let ii = rule(&e, "annex-ii-prohibited");
    let last = ii.trace.last().unwrap();
    assert_eq!(last.subject, "3 of 3 substances");
    assert_eq!(
        last.detail,
        "not listed in @data/eu-cosmetics-annexes:annex_ii, which holds 10 entries; a substance not listed there may still be regulated elsewhere"
    );
    let f = rule(&e, "formulation");
    let coverage = f.trace.last().unwrap();
    assert_eq!(coverage.subject, "coverage");
    assert!(
        coverage.detail.starts_with("consulted @data/eu-cosmetics-annexes:allergens (8 entries), @data/eu-cosmetics-annexes:annex_ii (10 entries)"),
        "{}",
        coverage.detail
    );
    assert!(
        coverage
            .detail
            .ends_with("; not covered by any of them: Aqua (7732-18-5), Glycerin (56-81-5)"),
        "{}",
        coverage.detail
    );
}

/// Small tables: synonyms and members are read strictly.
#[test]
fn table_fields_for_synonyms_and_members_are_checked() {
    let rules = RuleSet::parse(
        json!({"format": "eurocomply-rules/1", "rules": [
            {"id": "ban", "kind": "prohibited", "table": "@d:t"}
        ]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let pack = LogicPack {
        name: "@eu/t".into(),
        version: "1".into(),
        cid: "c".into(),
        rules,
    };
    let bad = [
        (
            json!([{"substance": "X", "cas": "1-1-1", "synonyms": "Y"}]),
            "synonyms",
        ),
        (
            json!([{"substance": "X", "cas": "1-1-1", "members": [{"cas": "2-2-2"}]}]),
            "members[0]",
        ),
        (
            json!([{"substance": "X", "cas": "1-1-1", "expressed_as": "X", "members": [{"substance": "Y", "cas": "2-2-2", "factor": 0}]}]),
            "factor",
        ),
        (
            json!([{"substance": "X", "cas": "1-1-1", "members": [{"substance": "Y", "cas": "2-2-2", "factor": 0.5}]}]),
            "expressed_as",
        ),
    ];
    for (rows, needle) in bad {
        let mut tables = Tables::new();
        tables.insert("@d:t".into(), table(rows.clone()));
        let e = kernel::Program::compile(std::slice::from_ref(&pack), &tables).unwrap_err();
        assert!(e.to_string().contains(needle), "{rows}: {e}");
    }
}

/// The example packs compile and give the expected verdicts.
#[test]
fn example_packs_compile() {
    let p = shipped();
    assert!(p.len() >= 5);
    let compliant = Product {
        documents: vec![kernel::DocumentFact {
            kind: "cpsr".into(),
            expires: Some("2030-01-01".into()),
        }],
        ..product(
            Some("leave_on"),
            vec![
                c(AQUA.0, Some(AQUA.1), Some(97.5)),
                c("Salicylic acid", Some("69-72-7"), Some(2.0)),
            ],
        )
    };
    let e = eval(&p, &compliant);
    assert_eq!(e.verdict, Verdict::Pass, "{e:?}");
    assert_eq!(
        e.rules.len(),
        p.len() + 1,
        "one outcome per rule, then the formulation"
    );
    assert_eq!(e.rules.last().unwrap().rule, kernel::FORMULATION_RULE);
    // Lead is prohibited (Annex II) and an SVHC above 0.1% (REACH duty).
    let leaded = Product {
        components: vec![c("Lead acetate", Some("7439-92-1"), Some(0.2))],
        ..compliant.clone()
    };
    let e = eval(&p, &leaded);
    assert_eq!(e.verdict, Verdict::Fail);
    assert_eq!(rule(&e, "annex-ii-prohibited").verdict, Verdict::Fail);
    assert_eq!(
        rule(&e, "svhc-communication").obligations,
        ["declare Lead acetate (7439-92-1) on the label: 0.2% > 0.1%"]
    );
}
