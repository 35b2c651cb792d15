//! What a spoke hands back: the signed report for the hub carries counts,
//! bundles, receipts and the chunk inventory, and never a name, identifier,
//! CAS number, document name or user name; evidence packs are signed too.

mod common;

use common::Env;

#[test]
fn the_report_is_signed_and_carries_no_customer_data() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    env.spoke_stdin(
        &[
            "users",
            "add",
            "--data",
            &d,
            "--name",
            "maria.keller",
            "--role",
            "regulatory_manager",
        ],
        "a long enough passphrase\n",
    )
    .ok();
    env.spoke(&["eval", "--data", &d, "--all"]).ok();
    let src = common::annexes_upgrade(
        &env,
        "2026.2.0",
        &[("Butylphenyl methylpropional (Lilial)", "80-54-6")],
    );
    let change = common::ship(&env, &d, &src, "upgrade.bundle")["change"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.spoke(&["changes", "approve", "--data", &d, &change])
        .ok();

    env.spoke(&["report", "--data", &d, "--to", &env.s("stick")])
        .ok();
    let file = env.path("stick/report.json");
    let checked = env
        .hub(&["report", "verify", &file.display().to_string()])
        .ok();
    let body = &checked["body"];
    assert_eq!(
        checked["signer"],
        env.spoke(&["identity", "--data", &d]).ok()["did"]
    );
    assert_eq!(body["counts"]["products"], 3);
    assert_eq!(body["counts"]["evaluations_24h"], 6);
    assert_eq!(body["bundles"].as_array().unwrap().len(), 6);
    let receipts: Vec<&str> = body["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["change"].as_str().unwrap())
        .collect();
    assert!(
        receipts.contains(&change.as_str()) && receipts.len() == 2,
        "{receipts:?}"
    );
    assert!(body["inventory"].as_array().unwrap().len() > 5);

    // Nothing the customer owns is in it: every name, id, CAS number,
    // document name and user name in the test data is checked.
    let text = std::fs::read_to_string(&file).unwrap().to_lowercase();
    let samples: serde_json::Value = serde_json::from_slice(
        &std::fs::read(common::root().join("bundles/examples/samples/products.json")).unwrap(),
    )
    .unwrap();
    let mut secrets = vec![
        "maria.keller".to_string(),
        "hydra-serum-cpsr".into(),
        "mystery-balm-cpsr".into(),
        "margin of safety".into(),
    ];
    for e in samples.as_array().unwrap() {
        secrets.push(e["id"].as_str().unwrap().into());
        secrets.push(e["name"].as_str().unwrap().into());
        secrets.extend(e["cas"].as_str().map(String::from));
        for c in e["components"].as_array().into_iter().flatten() {
            secrets.push(c["substance"].as_str().unwrap().into());
            secrets.extend(c["cas"].as_str().map(String::from));
        }
    }
    for s in &secrets {
        assert!(!text.contains(&s.to_lowercase()), "the report leaks {s:?}");
    }

    // Altered in transit, it no longer verifies.
    let tampered = std::fs::read_to_string(&file)
        .unwrap()
        .replace("\"products\": 3", "\"products\": 30");
    std::fs::write(&file, tampered).unwrap();
    env.hub(&["report", "verify", &file.display().to_string()])
        .fails_with("bad_signature");

    // The evidence pack of the applied change: diff, approvals, SBOMs, locks.
    env.spoke(&[
        "evidence",
        "--data",
        &d,
        "--to",
        &env.s("evidence"),
        &change,
    ])
    .ok();
    let ev = env.path(&format!("evidence/evidence-{change}.json"));
    let checked = env
        .hub(&["report", "verify", &ev.display().to_string()])
        .ok();
    assert_eq!(checked["format"], "eurocomply-evidence/1");
    let body = &checked["body"];
    assert_eq!(body["change"]["status"], "applied");
    assert_eq!(
        body["change"]["diff"]["changes"].as_array().unwrap().len(),
        2
    );
    assert_eq!(body["packs"][0]["sbom"]["bomFormat"], "CycloneDX");
    assert_eq!(body["change"]["locks"].as_array().unwrap().len(), 3);
    let actions: Vec<&str> = body["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["change.propose", "change.apply"]);
}
