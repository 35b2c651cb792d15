//! Export and decommissioning (seed 000 §12), end to end: the export in open
//! formats with its signed receipt, the phases NOTICE → EXPORT WINDOW →
//! DESTRUCTION → VERIFICATION, what each refuses, and the signed
//! destruction certificate checked by `hub report verify`.

mod common;

use common::Env;

#[test]
fn export_writes_open_formats_with_a_signed_receipt() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    env.add_admins(&d, &["ada"], PASSWORD);
    env.spoke(&[
        "users", "token", "--data", &d, "--user", "ada", "--label", "ci",
    ])
    .ok();
    env.spoke(&["eval", "--data", &d, "--all"]).ok();
    let r = env
        .spoke(&["export", "--data", &d, "--to", &env.s("export")])
        .ok();
    let dir = env.path("export");

    // The receipt is signed by the spoke and lists every file with its digest.
    let v = env
        .hub(&["report", "verify", &env.s("export/export-receipt.json")])
        .ok();
    assert_eq!(v["format"], "eurocomply-export-receipt/1");
    let id = env.spoke(&["identity", "--data", &d]).ok();
    assert_eq!(v["signer"], id["did"]);
    let files = v["body"]["files"].as_array().unwrap();
    assert_eq!(files.len() as u64, r["files"].as_u64().unwrap());
    for f in files {
        let bytes = std::fs::read(dir.join(f["path"].as_str().unwrap())).unwrap();
        assert_eq!(bytes.len() as u64, f["size"].as_u64().unwrap());
        let digest = bundles::index::sha256_hex(&bytes);
        assert_eq!(digest, f["sha256"].as_str().unwrap(), "{}", f["path"]);
    }

    // The SQL dump loads into SQLite and holds the same rows.
    let dump = std::fs::read_to_string(dir.join("database.sql")).unwrap();
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch(&dump).unwrap();
    let entities = env.spoke(&["entity", "list", "--data", &d]).ok();
    let n: i64 = db
        .query_row("SELECT count(*) FROM entities", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n as usize, entities.as_array().unwrap().len());
    let locks: i64 = db
        .query_row("SELECT count(*) FROM locks", [], |r| r.get(0))
        .unwrap();
    assert!(locks >= 1);

    // Credentials stay on the spoke unless asked for; files are the owner's.
    let hashes = |db: &rusqlite::Connection| -> String {
        db.query_row(
            "SELECT (SELECT group_concat(password_hash, '') FROM users) || (SELECT group_concat(secret_hash, '') FROM tokens)",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert!(
        hashes(&db).is_empty(),
        "password and token hashes were exported"
    );
    assert_eq!(v["body"]["credentials"], "withheld");
    let users_csv = std::fs::read_to_string(dir.join("tables/users.csv")).unwrap();
    assert!(users_csv.contains("ada,admin,,"), "{users_csv}");
    assert!(!users_csv.contains("$argon2"), "{users_csv}");
    {
        use std::os::unix::fs::PermissionsExt;
        for rel in ["database.sql", "tables/users.csv", "audit.jsonl"] {
            let mode = std::fs::metadata(dir.join(rel))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{rel}");
        }
        let mode = std::fs::metadata(dir.join("tables"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
    }

    // One CSV per table, with a header and one line per row.
    let csv = std::fs::read_to_string(dir.join("tables/entities.csv")).unwrap();
    assert!(csv.starts_with("id,kind,name,"), "{csv}");
    assert!(csv.contains("hydra-serum,product,Hydra Serum"));

    // Documents under their original names, byte for byte.
    let docs = env.spoke(&["doc", "list", "--data", &d]).ok();
    let samples = common::root().join("bundles/examples/samples");
    for doc in docs.as_array().unwrap() {
        let name = doc["filename"].as_str().unwrap();
        let exported = dir
            .join("documents")
            .join(doc["id"].as_str().unwrap())
            .join(name);
        assert_eq!(
            std::fs::read(&exported).unwrap(),
            std::fs::read(samples.join(name)).unwrap()
        );
    }
    // Locks with their traces, and the audit log.
    let lock_files = std::fs::read_dir(dir.join("locks")).unwrap().count() as i64;
    assert_eq!(lock_files, locks);
    let some_lock: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            std::fs::read_dir(dir.join("locks"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path(),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(some_lock["result"].is_object(), "{some_lock}");
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    assert_eq!(
        audit.lines().count() as u64,
        v["body"]["audit_entries"].as_u64().unwrap()
    );

    // The export is audit-logged with the receipt's digest.
    let entries = env.spoke(&["audit", "list", "--data", &d]).ok();
    let last = entries.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "export.receipt");
    assert!(last["detail"]
        .as_str()
        .unwrap()
        .contains(r["receipt_sha256"].as_str().unwrap()));

    env.spoke(&[
        "export",
        "--data",
        &d,
        "--to",
        &env.s("export-full"),
        "--with-credentials",
    ])
    .ok();
    let full = rusqlite::Connection::open_in_memory().unwrap();
    full.execute_batch(&std::fs::read_to_string(env.path("export-full/database.sql")).unwrap())
        .unwrap();
    assert!(!hashes(&full).is_empty(), "--with-credentials keeps them");

    // An export never writes into a non-empty directory.
    env.spoke(&["export", "--data", &d, "--to", &env.s("export")])
        .fails_with("conflict");
}

const COUNSEL: [&str; 2] = ["counsel-a", "counsel-b"];

fn legal_hold(env: &Env, d: &str, reason: &str) {
    env.spoke(&[
        "lifecycle",
        "--data",
        d,
        "--set",
        "LEGAL_HOLD",
        "--reason",
        reason,
    ])
    .ok();
}
const PASSWORD: &str = "a long enough passphrase";

#[test]
fn leaving_legal_hold_takes_two_administrators_and_starts_a_cooling_off() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    env.add_admins(&d, &COUNSEL, PASSWORD);
    let as_admin = |admin: &str, args: &[&str]| {
        let mut a = vec!["lifecycle", "--data", &d, "--as", admin];
        a.extend_from_slice(args);
        env.spoke_stdin(&a, &format!("{PASSWORD}\n"))
    };
    let view = || env.spoke(&["lifecycle", "--data", &d]).ok();
    assert_eq!(view()["cooling_off_days"], 30, "the default");
    legal_hold(&env, &d, "case 7");
    let release = ["--set", "ACTIVE", "--reason", "case 7 settled"];
    let asked = as_admin(COUNSEL[0], &release).ok();
    assert_eq!(asked["result"], "release_requested", "{asked}");
    assert_eq!(view()["state"], "LEGAL_HOLD");
    assert_eq!(view()["release_request"]["by"], COUNSEL[0]);
    // The same person twice is one person; so is the console after itself.
    let msg = as_admin(COUNSEL[0], &release).fails_with("conflict");
    assert!(msg.contains("another administrator"), "{msg}");
    // A wrong password is a failed sign-in, not a confirmation.
    env.spoke_stdin(
        &[
            "lifecycle",
            "--data",
            &d,
            "--as",
            COUNSEL[1],
            "--set",
            "ACTIVE",
            "--reason",
            "x",
        ],
        "wrong password\n",
    )
    .fails_with("unauthenticated");
    // The hold cannot be shortened into a quick destruction meanwhile.
    env.spoke(&["lifecycle", "--data", &d, "--cooling-off-days", "0"])
        .fails_with("conflict");
    let done = as_admin(COUNSEL[1], &release).ok();
    assert_eq!(
        (&done["result"], &done["state"]),
        (&serde_json::json!("changed"), &serde_json::json!("ACTIVE")),
        "{done}"
    );
    let until = done["cooling_off_until"].as_str().unwrap().to_string();
    let msg = env
        .spoke(&["decommission", "notice", "--data", &d])
        .fails_with("conflict");
    assert!(msg.contains("cooling-off") && msg.contains(&until), "{msg}");
    let msg = env
        .spoke(&["lifecycle", "--data", &d, "--cooling-off-days", "0"])
        .fails_with("conflict");
    assert!(msg.contains(&until), "{msg}");
    // Lengthening is always allowed.
    assert_eq!(
        env.spoke(&["lifecycle", "--data", &d, "--cooling-off-days", "60"])
            .ok()["cooling_off_days"],
        60
    );
    // The audit log names both people and the clearance.
    let audit = env.spoke(&["audit", "list", "--data", &d]).ok();
    let set = audit
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["action"] == "lifecycle.set")
        .unwrap()
        .clone();
    let detail: serde_json::Value = match &set["detail"] {
        serde_json::Value::String(s) => serde_json::from_str(s).unwrap(),
        v => v.clone(),
    };
    assert_eq!(
        (
            &detail["requested_by"],
            &detail["confirmed_by"],
            &detail["reason"]
        ),
        (
            &serde_json::json!(COUNSEL[0]),
            &serde_json::json!(COUNSEL[1]),
            &serde_json::json!("case 7 settled")
        ),
        "{set}"
    );
    assert_eq!(set["actor"], COUNSEL[1]);
    env.spoke(&["audit", "verify", "--data", &d]).ok();
}

#[test]
fn decommissioning_phases_legal_hold_and_destruction_certificate() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    env.add_admins(&d, &COUNSEL, PASSWORD);
    // No cooling-off after a release here (its own test below).
    env.spoke(&["lifecycle", "--data", &d, "--cooling-off-days", "0"])
        .ok();
    let dec = |args: &[&str]| {
        let mut a = vec!["decommission"];
        a.extend_from_slice(args);
        a.extend(["--data", &d]);
        env.spoke(&a)
    };
    let cert = env.s("out/destruction.json");
    let destroy = |extra: &[&str]| {
        let mut a = vec![
            "decommission",
            "destroy",
            "--data",
            &d,
            "--certificate",
            &cert,
        ];
        a.extend_from_slice(extra);
        env.spoke(&a)
    };
    let legal_hold = |reason: &str| legal_hold(&env, &d, reason);
    let (_, recipient) = env.age_key("op.key");
    env.spoke(&[
        "backup",
        "--data",
        &d,
        "--to",
        &env.s("bk"),
        "--recipient",
        &recipient,
    ])
    .ok();

    // Nothing is destroyed without notice, the window and a receipt.
    destroy(&[]).fails_with("conflict");
    assert!(env.path("spoke/spoke.json").exists());

    // LEGAL_HOLD blocks decommissioning from the start.
    legal_hold("case 42");
    dec(&["notice"]).fails_with("conflict");
    env.release_hold(&d, COUNSEL, PASSWORD, "ACTIVE", "cleared");

    // NOTICE: still active, can be cancelled.
    let s = dec(&["notice"]).ok();
    assert_eq!(s["decommission"]["phase"], "NOTICE");
    assert_eq!(s["lifecycle"], "ACTIVE");
    destroy(&[]).fails_with("conflict");
    dec(&["cancel", "--reason", "customer stays"]).ok();
    assert!(dec(&["status"]).ok()["decommission"].is_null());
    dec(&["notice"]).ok();

    // EXPORT WINDOW: read-only; destruction still needs the receipt.
    let s = dec(&["export-window"]).ok();
    assert_eq!(s["decommission"]["phase"], "EXPORT_WINDOW");
    assert_eq!(s["lifecycle"], "SUSPENDED");
    let file = env.path("e.json");
    std::fs::write(
        &file,
        r#"{"id":"late","kind":"product","name":"Late","components":[]}"#,
    )
    .unwrap();
    env.spoke(&["entity", "add", "--data", &d, &file.display().to_string()])
        .fails_with("read_only");
    let msg = destroy(&[]).fails_with("conflict");
    assert!(msg.contains("export receipt"), "{msg}");

    let r = env
        .spoke(&["export", "--data", &d, "--to", &env.s("export")])
        .ok();
    assert_eq!(
        dec(&["status"]).ok()["decommission"]["receipt"],
        r["receipt_sha256"]
    );

    // A legal hold set during the window blocks destruction.
    legal_hold("case 43");
    let msg = destroy(&[]).fails_with("conflict");
    assert!(msg.contains("LEGAL_HOLD"), "{msg}");
    assert!(env.path("spoke/db/spoke.sqlite").exists());
    env.release_hold(&d, COUNSEL, PASSWORD, "SUSPENDED", "cleared 43");

    // The certificate may not be written into what is destroyed.
    let inside = env.s("spoke/cert.json");
    env.spoke(&[
        "decommission",
        "destroy",
        "--data",
        &d,
        "--certificate",
        &inside,
    ])
    .fails_with("usage");

    let did = env.spoke(&["identity", "--data", &d]).ok()["did"].clone();
    let files_before = common::snapshot(&env.path("spoke"))
        .values()
        .filter(|v| v.as_slice() != b"<dir>")
        .count() as u64;
    let out = destroy(&["--backups", &env.s("bk")]).ok();
    assert!(!env.path("spoke").exists(), "the data directory is gone");
    assert!(!env.path("bk").exists(), "the backups are gone");
    assert_eq!(out["data"]["files"].as_u64().unwrap(), files_before);

    let v = env.hub(&["report", "verify", &cert]).ok();
    assert_eq!(v["format"], "eurocomply-destruction/1");
    assert_eq!(v["signer"], did);
    let body = &v["body"];
    assert_eq!(body["export_receipt_sha256"], r["receipt_sha256"]);
    assert_eq!(body["destroyed"]["data_dir"]["files"], files_before);
    assert!(
        body["destroyed"]["backups"][0]["shredded"]["files"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(body["verification"]["remaining"], serde_json::json!([]));
    for k in [
        "notice_at",
        "export_window_at",
        "destroyed_at",
        "verified_at",
    ] {
        assert!(body[k].is_string(), "{k} missing: {body}");
    }
    // The export the customer kept is untouched.
    env.hub(&["report", "verify", &env.s("export/export-receipt.json")])
        .ok();
}
