//! A product manifest is resolved against published packs and pinned by CID.

mod common;

use common::Env;

const MANIFEST: &str = r#"
product:
  id: "demo-product"
  name: "Demo"
  version: "1.0.0"
os:
  version: "^1.0.0"
packs:
  - name: "@eu/rules"
    version: "^2.0.0"
    type: intelligence
    required: true
  - name: "@eu/optional"
    version: "^1.0.0"
    type: driver
    required: false
"#;

#[test]
fn product_pins_the_highest_matching_pack_and_installs() {
    let env = Env::new();
    env.init_repo(&[]);
    let old = env.pack_src("src/a", "@eu/rules", "2.0.0", &[("t", b"a")]);
    env.build_publish(&old, "a.bundle", &[]);
    let new = env.pack_src("src/b", "@eu/rules", "2.1.0", &[("t", b"b")]);
    let new_cid = env.build_publish(&new, "b.bundle", &[]);
    let next_major = env.pack_src("src/c", "@eu/rules", "3.0.0", &[("t", b"c")]);
    env.build_publish(&next_major, "c.bundle", &[]);
    std::fs::write(env.path("product.yaml"), MANIFEST).unwrap();
    let built = env
        .hub(&[
            "product",
            "build",
            &env.s("product.yaml"),
            "--repo",
            &env.s("repo"),
            "--out",
            &env.s("p.bundle"),
        ])
        .ok();
    assert_eq!(built["kind"], "product");
    env.publish(&env.s("p.bundle"), &[]);
    env.export("m", &[]);
    env.spoke_init("d");
    env.import("d", "m").ok();
    let all = env.spoke(&["bundles", "--data", &env.s("d")]).ok();
    let product = all
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["kind"] == "product")
        .unwrap();
    let resolved = product["manifest"]["resolved"].as_array().unwrap();
    assert_eq!(
        resolved.len(),
        1,
        "the optional pack is not published and is left out"
    );
    assert_eq!(resolved[0]["version"], "2.1.0");
    assert_eq!(resolved[0]["cid"], new_cid.as_str());
}

#[test]
fn a_missing_required_pack_or_bad_manifest_is_refused() {
    let env = Env::new();
    env.init_repo(&[]);
    std::fs::write(env.path("product.yaml"), MANIFEST).unwrap();
    let msg = env
        .hub(&[
            "product",
            "build",
            &env.s("product.yaml"),
            "--repo",
            &env.s("repo"),
            "--out",
            &env.s("p.bundle"),
        ])
        .fails_with("not_found");
    assert!(msg.contains("@eu/rules"), "{msg}");
    std::fs::write(env.path("bad.yaml"), "product: [not, a, map]\n").unwrap();
    env.hub(&[
        "product",
        "build",
        &env.s("bad.yaml"),
        "--repo",
        &env.s("repo"),
        "--out",
        &env.s("p.bundle"),
    ])
    .fails_with("invalid");
    assert!(!env.path("p.bundle").exists());
}
