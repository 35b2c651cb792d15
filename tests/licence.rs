//! Licences: a product bundle carries a licence for one spoke, or licences
//! are published on their own beside one product bundle many spokes share;
//! a plan's limits are enforced, another spoke's licence is refused (inside
//! a product bundle) or skipped (on its own), and an expired licence
//! suspends the spoke until a renewed one arrives.

mod common;

use common::Env;

/// Builds, publishes and exports the sample product (at `version`) with a
/// licence for `spoke`; returns the medium's name.
fn product_medium(env: &Env, spoke: &str, plan: &str, expires: &str, version: &str) -> String {
    let yaml = std::fs::read_to_string(
        common::root().join("bundles/examples/products/eurocomply-cosmetics.yaml"),
    )
    .unwrap()
    .replace(
        "version: \"1.0.0\"\n  description",
        &format!("version: \"{version}\"\n  description"),
    );
    let manifest = env.path(&format!("product-{version}.yaml"));
    std::fs::write(&manifest, yaml).unwrap();
    let bundle = env.s(&format!("product-{version}.bundle"));
    env.product_publish(
        &manifest.display().to_string(),
        &bundle,
        &["--licence-for", spoke, "--plan", plan, "--expires", expires],
    );
    let medium = format!("usb-{version}");
    env.export(&medium, &[]);
    medium
}

fn did(env: &Env, data: &str) -> String {
    env.spoke(&["identity", "--data", &env.s(data)]).ok()["did"]
        .as_str()
        .unwrap()
        .to_string()
}

fn products(env: &Env, n: usize, prefix: &str) -> String {
    let list: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({"id": format!("{prefix}-{i}"), "kind": "product", "name": format!("P {i}")}))
        .collect();
    let f = env.path(&format!("{prefix}.json"));
    std::fs::write(&f, serde_json::to_vec(&list).unwrap()).unwrap();
    f.display().to_string()
}

/// `hub product licence` for the spoke at `data`, published; returns the
/// bundle's name.
fn publish_licence(env: &Env, data: &str, plan: &str, expires: &str) -> String {
    let manifest = common::root().join("bundles/examples/products/eurocomply-cosmetics.yaml");
    let bundle = env.s(&format!("licence-{data}-{expires}.bundle"));
    let built = env
        .hub(&[
            "product",
            "licence",
            &manifest.display().to_string(),
            "--spoke",
            &did(env, data),
            "--plan",
            plan,
            "--expires",
            expires,
            "--out",
            &bundle,
        ])
        .ok();
    env.publish(&bundle, &[]);
    built["name"].as_str().unwrap().to_string()
}

#[test]
fn one_repository_serves_many_spokes_each_with_its_own_licence() {
    let env = Env::new();
    env.publish_examples();
    // One product bundle for everyone, and a licence per spoke beside it.
    let manifest = common::root().join("bundles/examples/products/eurocomply-cosmetics.yaml");
    env.product_publish(
        &manifest.display().to_string(),
        &env.s("product.bundle"),
        &[],
    );
    let plans = [("a", "starter"), ("b", "growth"), ("c", "scale")];
    for (data, plan) in plans {
        env.spoke_init(data);
        let name = publish_licence(&env, data, plan, "2099-12-31");
        assert!(
            !name.contains(':'),
            "names become file names on FAT media: {name}"
        );
    }
    let (_hub, url) = env.hub_serve(&[]);
    let plan_of =
        |data: &str| env.spoke(&["status", "--data", &env.s(data)]).ok()["licence"].clone();
    // a and b pull over the network, c takes a stick: each gets everything
    // but the other two licences, and runs under its own plan.
    for data in ["a", "b"] {
        let r = env
            .spoke(&[
                "sync",
                "--data",
                &env.s(data),
                "--from",
                &url,
                "--retries",
                "0",
            ])
            .ok();
        assert_eq!(r["not_for_this_spoke"], 2, "{r}");
    }
    env.export("usb", &[]);
    let r = env.import("c", "usb").ok();
    assert_eq!(r["not_for_this_spoke"], 2, "{r}");
    for (data, plan) in plans {
        assert_eq!(plan_of(data)["plan"], plan, "{data}");
        assert_eq!(plan_of(data)["expires"], "2099-12-31", "{data}");
    }
    let limits = plan_of("a");
    assert_eq!(limits["max_products"], 50);

    // A renewal for a reaches a alone; b's next sync finds nothing new.
    publish_licence(&env, "a", "growth", "2100-06-30");
    let r = env
        .spoke(&[
            "sync",
            "--data",
            &env.s("a"),
            "--from",
            &url,
            "--retries",
            "0",
        ])
        .ok();
    assert_eq!(r["installed"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(
        (&plan_of("a")["plan"], &plan_of("a")["expires"]),
        (
            &serde_json::json!("growth"),
            &serde_json::json!("2100-06-30")
        )
    );
    let r = env
        .spoke(&[
            "sync",
            "--data",
            &env.s("b"),
            "--from",
            &url,
            "--retries",
            "0",
        ])
        .ok();
    assert_eq!(r["installed"], serde_json::json!([]), "{r}");
    assert_eq!(plan_of("b")["plan"], "growth");
    assert!(env
        .audit_actions(&env.s("a"))
        .iter()
        .any(|a| a == "licence.bundle"));
}

#[test]
fn plan_limits_are_enforced_and_licences_are_per_spoke() {
    let env = Env::new();
    env.publish_examples();
    env.spoke_init("spoke");
    env.spoke_init("other");
    let d = env.s("spoke");
    let medium = product_medium(&env, &did(&env, "spoke"), "starter", "2099-12-31", "1.0.0");

    // Another spoke refuses a licence that is not its own, and its data
    // directory stays byte-identical: nothing of the medium was moved in.
    let before = common::snapshot(&env.path("other"));
    let msg = env.import("other", &medium).fails_with("forbidden");
    assert!(msg.contains("licence for another spoke"), "{msg}");
    common::assert_same(&before, &common::snapshot(&env.path("other")));

    env.import("spoke", &medium).ok();
    let status = env.spoke(&["status", "--data", &d]).ok();
    assert_eq!(status["licence"]["plan"], "starter");
    assert_eq!(status["licence"]["max_products"], 50);

    let msg = env
        .spoke(&[
            "entity",
            "add",
            "--data",
            &d,
            &products(&env, 51, "too-many"),
        ])
        .fails_with("forbidden");
    assert!(msg.contains("the starter plan allows 50 products"), "{msg}");
    env.spoke(&["entity", "add", "--data", &d, &products(&env, 50, "fits")])
        .ok();
    env.spoke(&[
        "entity",
        "add",
        "--data",
        &d,
        &products(&env, 1, "one-more"),
    ])
    .fails_with("forbidden");
    // Suppliers do not count against the product limit.
    let supplier = env.path("supplier.json");
    std::fs::write(&supplier, r#"{"kind": "supplier", "name": "Acme"}"#).unwrap();
    env.spoke(&[
        "entity",
        "add",
        "--data",
        &d,
        &supplier.display().to_string(),
    ])
    .ok();

    for i in 0..10 {
        env.spoke_stdin(
            &[
                "users",
                "add",
                "--data",
                &d,
                "--name",
                &format!("u{i}"),
                "--role",
                "viewer",
            ],
            "a long enough passphrase\n",
        )
        .ok();
    }
    let msg = env
        .spoke_stdin(
            &[
                "users", "add", "--data", &d, "--name", "u10", "--role", "viewer",
            ],
            "a long enough passphrase\n",
        )
        .fails_with("forbidden");
    assert!(msg.contains("allows 10 users"), "{msg}");
}

#[test]
fn an_expired_licence_suspends_until_a_renewed_one_arrives() {
    let env = Env::new();
    env.publish_examples();
    env.spoke_init("spoke");
    let d = env.s("spoke");
    let me = did(&env, "spoke");
    let expired = product_medium(&env, &me, "growth", "2020-01-01", "1.0.0");
    env.import("spoke", &expired).ok();
    assert_eq!(
        env.spoke(&["lifecycle", "--data", &d]).ok()["state"],
        "SUSPENDED"
    );
    let msg = env
        .spoke(&["entity", "add", "--data", &d, &products(&env, 1, "p")])
        .fails_with("read_only");
    assert!(msg.contains("SUSPENDED"), "{msg}");
    // An upload is refused before its file is stored.
    std::fs::write(env.path("sds.txt"), "safety data sheet").unwrap();
    env.doc_add(&d, "sds", None, None, &env.path("sds.txt"))
        .fails_with("read_only");
    assert!(
        !env.path("spoke/store/objects").exists(),
        "no object was stored"
    );
    // Reads still work.
    env.spoke(&["entity", "list", "--data", &d]).ok();

    let renewed = product_medium(&env, &me, "growth", "2099-12-31", "1.0.1");
    env.import("spoke", &renewed).ok();
    assert_eq!(
        env.spoke(&["lifecycle", "--data", &d]).ok()["state"],
        "ACTIVE"
    );
    env.spoke(&["entity", "add", "--data", &d, &products(&env, 1, "p")])
        .ok();
    let actions: Vec<String> = env
        .spoke(&["audit", "list", "--data", &d])
        .ok()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "lifecycle.set")
        .map(|e| e["detail"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions.len(), 2);
    assert!(
        actions[0].contains("licence expired on 2020-01-01"),
        "{actions:?}"
    );
    assert!(
        actions[1].contains("licence renewed until 2099-12-31"),
        "{actions:?}"
    );
}

#[test]
fn the_hub_refuses_a_licence_it_cannot_issue() {
    let env = Env::new();
    env.publish_examples();
    env.spoke_init("spoke");
    let manifest = common::root().join("bundles/examples/products/eurocomply-cosmetics.yaml");
    let manifest = manifest.display().to_string();
    let me = did(&env, "spoke");
    let out = env.s("p.bundle");
    for (spoke, plan, expires, needle) in [
        (
            me.as_str(),
            "platinum",
            "2099-12-31",
            "no plan \"platinum\"",
        ),
        (me.as_str(), "growth", "next year", "not a date"),
        ("someone", "growth", "2099-12-31", "not a spoke did:key"),
    ] {
        let msg = env
            .hub(&[
                "product",
                "build",
                &manifest,
                "--repo",
                &env.s("repo"),
                "--out",
                &out,
                "--licence-for",
                spoke,
                "--plan",
                plan,
                "--expires",
                expires,
            ])
            .fails_with("invalid");
        assert!(msg.contains(needle), "{msg}");
        assert!(!env.path("p.bundle").exists(), "nothing half-written");
    }
}
