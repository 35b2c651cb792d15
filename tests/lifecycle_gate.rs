//! The lifecycle gate (issue #28 item 1): under LEGAL_HOLD or SUSPENDED an
//! import of a newer pack, and a model switch, are refused before anything
//! is written: installed bundles, pack changes, the audit log, the active
//! packs and the data directory stay byte for byte as they were; reads work.
//! Back to ACTIVE, the same medium installs normally.

mod common;

use common::{annexes_upgrade, model_src, publish_model, Env};

/// What an install could change, as the spoke's own commands print it (JSON
/// bytes): installed bundles, pack changes, the audit log, the active packs
/// and the installed models.
fn views(env: &Env, d: &str) -> Vec<(&'static str, Vec<u8>)> {
    let raw = |args: &[&str]| {
        let run = env.spoke(args);
        let out = run.out.stdout.clone();
        run.ok();
        out
    };
    let status = env.spoke(&["status", "--data", d]).ok();
    vec![
        ("bundles", raw(&["bundles", "--data", d])),
        ("changes", raw(&["changes", "list", "--data", d])),
        ("audit", raw(&["audit", "list", "--data", d])),
        ("models", raw(&["models", "list", "--data", d])),
        (
            "active packs",
            serde_json::to_vec(&status["active_packs"]).unwrap(),
        ),
    ]
}

const COUNSEL: [&str; 2] = ["counsel-a", "counsel-b"];
const COUNSEL_PASSWORD: &str = "a long enough passphrase";

/// Sets the lifecycle state; leaving LEGAL_HOLD takes the two
/// administrators in [`COUNSEL`] (made before the hold).
fn set_lifecycle(env: &Env, d: &str, state: &str, reason: &str) {
    if env.spoke(&["lifecycle", "--data", d]).ok()["state"] == "LEGAL_HOLD" && state != "LEGAL_HOLD"
    {
        return env.release_hold(d, COUNSEL, COUNSEL_PASSWORD, state, reason);
    }
    let out = env
        .spoke(&["lifecycle", "--data", d, "--set", state, "--reason", reason])
        .ok();
    assert_eq!(out["state"], state);
}

fn active_annexes(env: &Env, d: &str) -> String {
    env.spoke(&["status", "--data", d]).ok()["active_packs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .find(|p| p.starts_with("@data/eu-cosmetics-annexes@"))
        .unwrap()
        .to_string()
}

#[test]
fn legal_hold_and_suspended_refuse_imports_and_model_switches_before_writing_anything() {
    let env = Env::new();
    env.publish_examples();
    let first = model_src(&env, "minilm-1", "tiny-minilm", "0.1.0", "embedding", 0);
    publish_model(&env, &first, "minilm-1.bundle");
    let d = env.stock_spoke("spoke");
    env.add_admins(&d, &COUNSEL, COUNSEL_PASSWORD);
    env.spoke(&["eval", "--data", &d, "--all"]).ok();
    // A later model version, installed while ACTIVE; it waits for activation.
    let second = model_src(&env, "minilm-2", "tiny-minilm", "0.2.0", "embedding", 0);
    publish_model(&env, &second, "minilm-2.bundle");
    env.export("models-usb", &["--only", "tiny-minilm"]);
    env.import("spoke", "models-usb").ok();
    let active_models = |env: &Env| -> Vec<String> {
        env.spoke(&["models", "list", "--data", &d])
            .ok()
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["active"] == true)
            .map(|m| m["version"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(active_models(&env), ["0.1.0"]);

    // The newer annexes release (as ci/demo.sh makes it), with a row that
    // touches no product: a safe auto-update, which an ACTIVE spoke applies
    // at once, so a leak would move the active pack.
    let upgrade = annexes_upgrade(&env, "2026.2.0", &[("Zinc pyrithione", "13463-41-7")]);
    env.build_publish(&upgrade, "annexes-2026.2.0.bundle", &[]);
    env.export("upgrade-usb", &["--only", "@data/eu-cosmetics-annexes"]);
    assert_eq!(
        active_annexes(&env, &d),
        "@data/eu-cosmetics-annexes@2026.1.0"
    );

    for (state, reason) in [("LEGAL_HOLD", "case 42"), ("SUSPENDED", "case 42 closed")] {
        set_lifecycle(&env, &d, state, reason);
        let before = views(&env, &d);
        let files = common::snapshot(&env.path("spoke"));

        let unchanged = |after: &str| {
            common::assert_same(&files, &common::snapshot(&env.path("spoke")));
            for ((what, was), (_, now)) in before.iter().zip(views(&env, &d)) {
                assert!(
                    *was == now,
                    "{state}: `{what}` changed by {after}:\n{}\n---\n{}",
                    String::from_utf8_lossy(was),
                    String::from_utf8_lossy(&now)
                );
            }
        };
        let msg = env.import("spoke", "upgrade-usb").fails_with("read_only");
        unchanged("the refused import");
        assert!(
            msg.contains(state) && msg.contains("spoke lifecycle --data DIR --set ACTIVE"),
            "{state}: {msg}"
        );
        let msg = env
            .spoke(&["models", "activate", "--data", &d, "tiny-minilm@0.2.0"])
            .fails_with("read_only");
        unchanged("the refused model activation");
        assert!(msg.contains(state), "{state}: {msg}");
        // Reads and exports work.
        env.spoke(&["audit", "verify", "--data", &d]).ok();
        env.spoke(&[
            "export",
            "--data",
            &d,
            "--to",
            &env.s(&format!("export-{state}")),
        ])
        .ok();
    }

    set_lifecycle(&env, &d, "ACTIVE", "cleared");
    let report = env.import("spoke", "upgrade-usb").ok();
    assert_eq!(
        report["installed"][0]["version"], "2026.2.0",
        "the refused imports left nothing that calls it installed: {report}"
    );
    assert_eq!(report["change"]["mode"], "safe_auto_update");
    assert_eq!(report["change"]["status"], "applied");
    assert_eq!(
        active_annexes(&env, &d),
        "@data/eu-cosmetics-annexes@2026.2.0"
    );
    let activated = env
        .spoke(&["models", "activate", "--data", &d, "tiny-minilm@0.2.0"])
        .ok();
    assert_eq!(activated["version"], "0.2.0");
    assert_eq!(active_models(&env), ["0.2.0"]);
    let actions = env.audit_actions(&d);
    let cleared = actions.iter().rposition(|a| a == "lifecycle.set").unwrap();
    let after: Vec<&str> = actions[cleared + 1..]
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("evaluation."))
        .collect();
    assert_eq!(
        after,
        [
            "bundle.install",
            "change.propose",
            "change.apply",
            "model.activate"
        ]
    );
    env.spoke(&["audit", "verify", "--data", &d]).ok();
}

#[test]
fn while_held_access_can_be_given_only_read_only_and_sign_in_still_works() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    let password = "a long enough passphrase";
    let add = |name: &str, role: &str| {
        env.spoke_stdin(
            &["users", "add", "--data", &d, "--name", name, "--role", role],
            &format!("{password}\n"),
        )
    };
    add("erin", "editor").ok();
    add("ada", "admin").ok();
    env.add_admins(&d, &COUNSEL, COUNSEL_PASSWORD);
    for (state, reason) in [("LEGAL_HOLD", "case 42"), ("SUSPENDED", "case 42 closed")] {
        set_lifecycle(&env, &d, state, reason);
        let audit_before = env.audit_actions(&d).len();
        // Write access, new or by token, waits for ACTIVE...
        let msg = add(&format!("ed-{}", state.len()), "editor").fails_with("read_only");
        assert!(msg.contains(state) && msg.contains("read-only"), "{msg}");
        env.spoke(&[
            "users", "token", "--data", &d, "--user", "erin", "--label", "ci",
        ])
        .fails_with("read_only");
        assert_eq!(env.audit_actions(&d).len(), audit_before, "nothing written");
        // ...read-only access for the investigation does not.
        let auditor = format!("investigator-{}", state.len());
        add(&auditor, "auditor").ok();
        env.spoke(&[
            "users", "token", "--data", &d, "--user", &auditor, "--label", "case 42",
        ])
        .ok();
    }
    // Signing in works while held; vendor support access is refused.
    let (_server, url) = env.spoke_serve(&d, &[]);
    let session: serde_json::Value = ureq::post(&format!("{url}/api/v1/session"))
        .send_json(serde_json::json!({"user": "ada", "password": password}))
        .unwrap()
        .into_json()
        .unwrap();
    let admin = session["secret"].as_str().unwrap();
    let grant = ureq::post(&format!("{url}/api/v1/support-access"))
        .set("authorization", &format!("Bearer {admin}"))
        .send_json(serde_json::json!({"grantee": "vendor-ops", "hours": 4}));
    match grant {
        Err(ureq::Error::Status(403, r)) => {
            let body: serde_json::Value = r.into_json().unwrap();
            assert_eq!(body["error"]["kind"], "read_only", "{body}");
        }
        other => panic!("support access while SUSPENDED: {other:?}"),
    }
}

/// Every mutating command of the spoke CLI, tried under LEGAL_HOLD and
/// under SUSPENDED with arguments that would succeed on an ACTIVE spoke:
/// the refused ones leave the data directory byte-identical; backups,
/// exports, checkpoints and a rebuilt search index (reads and derived
/// data) still work.
#[test]
fn every_mutating_command_is_refused_under_hold_and_suspension_unless_policy_allows_it() {
    let env = Env::new();
    let common::Busy {
        d,
        pending,
        applied,
    } = common::busy_spoke(&env, &COUNSEL, COUNSEL_PASSWORD, "next-usb");
    let file = |name: &str, text: &str| {
        let p = env.path(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let late = file("late.json", r#"{"kind": "supplier", "name": "Late"}"#);
    let sds = file("sds.txt", "a safety data sheet");
    let (_, recipient) = env.age_key("op.key");
    let next_usb = env.s("next-usb");

    let refused: Vec<Vec<&str>> = vec![
        vec!["entity", "add", "--data", &d, &late],
        vec![
            "entity",
            "relate",
            "--data",
            &d,
            "acme",
            "supplies",
            "hydra-serum",
        ],
        vec!["doc", "add", "--data", &d, "--kind", "sds", &sds],
        vec!["eval", "--data", &d, "--all"],
        vec!["changes", "approve", "--data", &d, &pending],
        vec!["changes", "reject", "--data", &d, &pending],
        vec!["changes", "rollback", "--data", &d, &applied],
        vec!["models", "activate", "--data", &d, "tiny-minilm@0.2.0"],
        vec!["import", "--data", &d, &next_usb],
        vec![
            "users", "token", "--data", &d, "--user", COUNSEL[0], "--label", "ci",
        ],
    ];
    for (state, reason) in [("LEGAL_HOLD", "case 42"), ("SUSPENDED", "case 42 closed")] {
        set_lifecycle(&env, &d, state, reason);
        let files = common::snapshot(&env.path("spoke"));
        for args in &refused {
            let msg = env.spoke(args).fails_with("read_only");
            assert!(msg.contains(state), "{state}: {args:?}: {msg}");
        }
        let msg = env
            .spoke_stdin(
                &[
                    "users", "add", "--data", &d, "--name", "ed2", "--role", "editor",
                ],
                &format!("{COUNSEL_PASSWORD}\n"),
            )
            .fails_with("read_only");
        assert!(msg.contains(state), "{msg}");
        // Decommissioning is refused under hold (a conflict naming it).
        if state == "LEGAL_HOLD" {
            env.spoke(&["decommission", "notice", "--data", &d])
                .fails_with("conflict");
        }
        common::assert_same(&files, &common::snapshot(&env.path("spoke")));
        // Reads and what keeps the data safe work.
        for args in [
            vec!["audit", "verify", "--data", &d],
            vec!["verify", "--data", &d],
            vec!["reindex", "--data", &d],
            vec![
                "audit",
                "checkpoint",
                "--data",
                &d,
                "--to",
                &env.s(&format!("cp-{state}")),
            ],
            vec![
                "export",
                "--data",
                &d,
                "--to",
                &env.s(&format!("export-{state}")),
            ],
            vec![
                "backup",
                "--data",
                &d,
                "--to",
                &env.s("backups"),
                "--recipient",
                &recipient,
            ],
        ] {
            env.spoke(&args).ok();
        }
    }
}
