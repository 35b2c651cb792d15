//! Pack changes through the simulator: what the hub publishes later reaches a
//! spoke with data only as a diff of verdicts that a person approves, unless
//! it is a safe auto-update that changes nothing.

mod common;

use common::{annexes_upgrade, ship, Env};

fn verdict(env: &Env, d: &str, product: &str) -> String {
    let shown = env.spoke(&["entity", "show", "--data", d, product]).ok();
    shown["latest_evaluation"]["verdict"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn an_upgrade_that_changes_verdicts_waits_for_approval() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    let first = env.spoke(&["changes", "list", "--data", &d]).ok();
    assert_eq!(
        first[0]["mode"], "no_data",
        "a spoke without data takes its first packs at once"
    );
    assert_eq!(first[0]["status"], "applied");
    env.spoke(&["eval", "--data", &d, "--all"]).ok();
    assert_eq!(verdict(&env, &d, "hydra-serum"), "pass");

    let src = annexes_upgrade(
        &env,
        "2026.2.0",
        &[("Butylphenyl methylpropional (Lilial)", "80-54-6")],
    );
    let report = ship(&env, &d, &src, "annexes-2026.2.0.bundle");
    let change = &report["change"];
    assert_eq!(change["status"], "pending");
    assert_eq!(change["mode"], "approval");
    assert_eq!(change["packs"][0]["from"]["version"], "2026.1.0");
    assert_eq!(change["packs"][0]["to"]["version"], "2026.2.0");
    let diff: Vec<(String, String, String, String)> = change["diff"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["product"].as_str().unwrap().into(),
                c["rule"].as_str().unwrap().into(),
                c["before"].as_str().unwrap().into(),
                c["after"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        diff,
        [
            (
                "hydra-serum".into(),
                "@eu/cosmetics-regulation-1223/annex-ii-prohibited".into(),
                "pass".into(),
                "fail".into()
            ),
            (
                "hydra-serum".into(),
                "overall".into(),
                "pass".into(),
                "fail".into()
            ),
        ]
    );
    // Until approved, evaluations still use the active version.
    env.spoke(&["eval", "--data", &d, "hydra-serum"]).ok();
    assert_eq!(verdict(&env, &d, "hydra-serum"), "pass");

    let id = change["id"].as_str().unwrap();
    let applied = env.spoke(&["changes", "approve", "--data", &d, id]).ok();
    assert_eq!(applied["status"], "applied");
    assert_eq!(applied["decided_by"], "cli");
    assert_eq!(
        verdict(&env, &d, "hydra-serum"),
        "fail",
        "applying re-evaluated every product"
    );
    let latest = env
        .spoke(&["entity", "show", "--data", &d, "hydra-serum"])
        .ok();
    let lock_id = latest["latest_evaluation"]["lock_id"]
        .as_str()
        .unwrap()
        .to_string();
    let lock = env.spoke(&["locks", "--data", &d, "--show", &lock_id]).ok();
    let pinned: Vec<&str> = lock["content"]["packs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["version"].as_str().unwrap())
        .collect();
    assert!(pinned.contains(&"2026.2.0"), "{pinned:?}");
    env.spoke(&["changes", "approve", "--data", &d, id])
        .fails_with("conflict");

    // Rolling the upgrade back is a change of its own: simulated, then approved.
    let back = env.spoke(&["changes", "rollback", "--data", &d, id]).ok();
    assert_eq!(
        (back["mode"].as_str(), back["status"].as_str()),
        (Some("rollback"), Some("pending"))
    );
    assert_eq!(back["packs"][0]["to"]["version"], "2026.1.0");
    assert_eq!(back["diff"]["changes"][1]["after"], "pass");
    let back_id = back["id"].as_str().unwrap();
    env.spoke(&["changes", "approve", "--data", &d, back_id])
        .ok();
    assert_eq!(
        verdict(&env, &d, "hydra-serum"),
        "pass",
        "the rollback re-evaluated with the old data"
    );
    let actions = env.audit_actions(&d);
    assert!(
        actions.ends_with(&[
            "change.apply".into(),
            "evaluation.run".into(),
            "evaluation.run".into(),
            "evaluation.run".into()
        ]),
        "{actions:?}"
    );
    env.spoke(&["audit", "verify", "--data", &d]).ok();
}

#[test]
fn safe_auto_update_applies_only_when_nothing_changes_and_reject_leaves_no_trace() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    env.spoke(&["eval", "--data", &d, "--all"]).ok();
    // A certified, safe_auto_update intelligence pack whose new rows touch no product.
    let quiet = annexes_upgrade(&env, "2026.1.1", &[("Zinc pyrithione", "13463-41-7")]);
    let report = ship(&env, &d, &quiet, "quiet.bundle");
    assert_eq!(report["change"]["mode"], "safe_auto_update");
    assert_eq!(report["change"]["status"], "applied");
    assert_eq!(report["change"]["diff"]["changes"], serde_json::json!([]));

    let loud = annexes_upgrade(
        &env,
        "2026.2.0",
        &[("Butylphenyl methylpropional (Lilial)", "80-54-6")],
    );
    let report = ship(&env, &d, &loud, "loud.bundle");
    assert_eq!(
        report["change"]["status"], "pending",
        "a diff needs a person"
    );
    let before = env.spoke(&["packs", "--data", &d]).ok();
    let id = report["change"]["id"].as_str().unwrap();
    let rejected = env.spoke(&["changes", "reject", "--data", &d, id]).ok();
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(env.spoke(&["packs", "--data", &d]).ok(), before);
    env.spoke(&["eval", "--data", &d, "hydra-serum"]).ok();
    assert_eq!(
        verdict(&env, &d, "hydra-serum"),
        "pass",
        "the rejected version is not used"
    );
}

#[test]
fn packs_below_the_trust_tier_or_missing_dependencies_are_refused() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    let product = common::root().join("bundles/examples/products/eurocomply-cosmetics.yaml");
    env.product_publish(
        &product.display().to_string(),
        &env.s("product.bundle"),
        &[],
    );
    env.export("product-usb", &["--only", "eurocomply-cosmetics"]);
    env.spoke(&["import", "--data", &d, &env.s("product-usb")])
        .ok();

    let community = env.path("src/community");
    std::fs::create_dir_all(&community).unwrap();
    std::fs::write(
        community.join("pack.json"),
        r#"{"name":"@someone/extra-rules","version":"1.0.0","type":"intelligence","handler_vm_version":"^1.0.0","trust_tier":"community"}"#,
    )
    .unwrap();
    env.build_publish(&community.display().to_string(), "community.bundle", &[]);
    env.export("community-usb", &["--only", "@someone/extra-rules"]);
    let snapshot = common::snapshot(&env.path("spoke/db"));
    let msg = env.import("spoke", "community-usb").fails_with("forbidden");
    assert!(
        msg.contains("community tier, below this spoke's minimum trust tier verified"),
        "{msg}"
    );

    let needy = env.path("src/needy");
    std::fs::create_dir_all(&needy).unwrap();
    std::fs::write(
        needy.join("pack.json"),
        r#"{"name":"@eu/needy","version":"1.0.0","type":"logic","handler_vm_version":"^1.0.0","trust_tier":"verified","dependencies":{"@data/nowhere":"^1.0.0"}}"#,
    )
    .unwrap();
    env.build_publish(&needy.display().to_string(), "needy.bundle", &[]);
    env.export("needy-usb", &["--only", "@eu/needy"]);
    let msg = env.import("spoke", "needy-usb").fails_with("conflict");
    assert!(msg.contains("needs @data/nowhere ^1.0.0"), "{msg}");
    common::assert_same(&snapshot, &common::snapshot(&env.path("spoke/db")));
}

#[test]
fn a_public_pack_may_not_depend_on_a_private_one() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    let private = env.path("src/private");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::write(
        private.join("pack.json"),
        r#"{"name":"@acme/house-limits","version":"1.0.0","type":"intelligence","handler_vm_version":"^1.0.0","trust_tier":"verified","visibility":"private"}"#,
    )
    .unwrap();
    let public = env.path("src/public");
    std::fs::create_dir_all(&public).unwrap();
    std::fs::write(
        public.join("pack.json"),
        r#"{"name":"@eu/extra","version":"1.0.0","type":"logic","handler_vm_version":"^1.0.0","trust_tier":"verified","dependencies":{"@acme/house-limits":"^1.0.0"}}"#,
    )
    .unwrap();
    env.build_publish(&private.display().to_string(), "private.bundle", &[]);
    env.build_publish(&public.display().to_string(), "public.bundle", &[]);
    env.export(
        "mixed",
        &["--only", "@acme/house-limits", "--only", "@eu/extra"],
    );
    let msg = env.import("spoke", "mixed").fails_with("forbidden");
    assert!(
        msg.contains("may not depend on the private pack @acme/house-limits"),
        "{msg}"
    );
    // The reverse is fine: a private pack on a public one.
    let ok = env.path("src/private-ok");
    std::fs::create_dir_all(&ok).unwrap();
    std::fs::write(
        ok.join("pack.json"),
        r#"{"name":"@acme/house-rules","version":"1.0.0","type":"logic","handler_vm_version":"^1.0.0","trust_tier":"verified","visibility":"private","dependencies":{"@data/eu-cosmetics-annexes":"^2026.1.0"}}"#,
    )
    .unwrap();
    env.build_publish(&ok.display().to_string(), "private-ok.bundle", &[]);
    env.export("private-ok", &["--only", "@acme/house-rules"]);
    let r = env.import("spoke", "private-ok").ok();
    assert_eq!(
        r["change"]["status"], "pending",
        "a spoke with data approves new packs"
    );
    let _ = d;
}
