//! The compliance core end to end through the `spoke` binary: the hub's
//! signed example packs evaluate the sample products, every result is pinned
//! by a Compliance Lock that replays byte for byte, and append-only records
//! resist both SQL and direct edits of the database file.

mod common;

use common::Env;

fn verdicts(outcomes: &serde_json::Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = outcomes
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["product_id"].as_str().unwrap().to_string(),
                o["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn sample_products_evaluate_and_locks_replay_byte_for_byte() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    let outcomes = env.spoke(&["eval", "--data", &d, "--all"]).ok();
    assert_eq!(
        verdicts(&outcomes),
        [
            ("glow-cream".to_string(), "fail".to_string()),
            ("hydra-serum".into(), "pass".into()),
            ("mystery-balm".into(), "needs_review".into()),
        ]
    );
    // The non-compliant product fails for the documented reasons.
    let glow = outcomes
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["product_id"] == "glow-cream")
        .unwrap();
    let failed: Vec<&str> = glow["evaluation"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verdict"] == "fail")
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert_eq!(
        failed,
        [
            "annex-ii-prohibited",
            "annex-iii-limits",
            "annex-v-paraben-sums",
            "cpsr-present"
        ]
    );

    for o in outcomes.as_array().unwrap() {
        let lock_id = o["lock_id"].as_str().unwrap();
        let lock = env.spoke(&["locks", "--data", &d, "--show", lock_id]).ok();
        assert_eq!(lock["result"], o["evaluation"]);
        assert_eq!(lock["content"]["format"], "eurocomply-lock/1");
        assert_eq!(lock["content"]["packs"].as_array().unwrap().len(), 5);
        let replay = env.spoke(&["eval", "--data", &d, "--replay", lock_id]);
        assert!(
            replay.out.status.success(),
            "{}",
            String::from_utf8_lossy(&replay.out.stderr)
        );
        let replayed: serde_json::Value = serde_json::from_slice(&replay.out.stdout).unwrap();
        assert_eq!(replayed, o["evaluation"]);
    }
    // Evaluating again appends records but reuses the content-addressed locks.
    env.spoke(&["eval", "--data", &d, "--all"]).ok();
    let locks = env.spoke(&["locks", "--data", &d]).ok();
    assert_eq!(locks.as_array().unwrap().len(), 3);
}

#[test]
fn evaluation_as_of_a_date_judges_documents_on_that_day_and_the_lock_pins_it() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    // Hydra Serum's safety report is valid up to and including 2099-12-31.
    let rule = |outcomes: &serde_json::Value, date: &str| -> (String, String) {
        let o = &outcomes[0];
        let cpsr = o["evaluation"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == "cpsr-present")
            .unwrap();
        let lock = o["lock_id"].as_str().unwrap();
        let shown = env.spoke(&["locks", "--data", &d, "--show", lock]).ok();
        assert_eq!(shown["content"]["as_of"], date);
        let replay = env.spoke(&["eval", "--data", &d, "--replay", lock]);
        assert!(replay.out.status.success(), "replay of the {date} lock");
        (
            o["verdict"].as_str().unwrap().to_string(),
            cpsr["verdict"].as_str().unwrap().to_string(),
        )
    };
    for (date, verdict) in [("2099-12-31", "pass"), ("2100-01-01", "fail")] {
        let outcomes = env
            .spoke(&["eval", "--data", &d, "--as-of", date, "hydra-serum"])
            .ok();
        assert_eq!(
            rule(&outcomes, date),
            (verdict.to_string(), verdict.to_string()),
            "as of {date}"
        );
    }
    let audit = env.spoke(&["audit", "list", "--data", &d]).ok();
    for bad in ["2026-02-30", "3 March 2027", "2027-3-1"] {
        let msg = env
            .spoke(&["eval", "--data", &d, "--as-of", bad, "hydra-serum"])
            .fails_with("invalid");
        assert!(msg.contains("YYYY-MM-DD"), "{bad}: {msg}");
    }
    assert_eq!(env.spoke(&["audit", "list", "--data", &d]).ok(), audit);
}

#[test]
fn append_only_records_resist_sql_and_raw_file_edits() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    env.spoke(&["eval", "--data", &d, "--all"]).ok();
    let db = env.path("spoke/db/spoke.sqlite");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        for sql in [
            "UPDATE audit_log SET actor = 'mallory'",
            "DELETE FROM audit_log WHERE seq = 1",
            "UPDATE locks SET verdict = 'pass'",
            "DELETE FROM locks",
            "UPDATE evaluations SET verdict = 'pass'",
            "DELETE FROM evaluations",
        ] {
            let err = conn.execute(sql, []).unwrap_err().to_string();
            assert!(err.contains("append-only"), "{sql}: {err}");
        }
    }
    env.spoke(&["audit", "verify", "--data", &d]).ok();

    // Edit the database file's bytes directly, as an attacker with disk access
    // would: every copy of one audit action, after folding the WAL into the file.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let mut bytes = std::fs::read(&db).unwrap();
    let needle = b"evaluation.run";
    let mut edits = 0;
    for at in 0..bytes.len() - needle.len() {
        if &bytes[at..at + needle.len()] == needle {
            bytes[at + needle.len() - 1] = b'X';
            edits += 1;
        }
    }
    assert!(edits > 0, "the audit action is in the file");
    std::fs::write(&db, &bytes).unwrap();
    let msg = env
        .spoke(&["audit", "verify", "--data", &d])
        .fails_with("audit_broken");
    assert!(msg.contains("edited"), "{msg}");
}

/// What an attacker with write access to the database file can do: drop the
/// append-only triggers, edit an entry and recompute the whole unkeyed chain.
fn rewrite_audit_chain(db: &std::path::Path, seq: i64, actor: &str) {
    use sha2::{Digest, Sha256};
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;")
        .unwrap();
    conn.execute(
        "UPDATE audit_log SET actor = ?1 WHERE seq = ?2",
        rusqlite::params![actor, seq],
    )
    .unwrap();
    let rows: Vec<(i64, Vec<String>)> = conn
        .prepare(
            "SELECT seq, at, actor, action, target, origin, detail FROM audit_log ORDER BY seq",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, (1..7).map(|i| r.get(i).unwrap()).collect()))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut prev = "0".repeat(64);
    for (seq, fields) in rows {
        let mut h = Sha256::new();
        let seq_text = seq.to_string();
        let parts = [&prev, &seq_text].into_iter().chain(fields.iter());
        for part in parts {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        let hash = hex::encode(h.finalize());
        conn.execute(
            "UPDATE audit_log SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![prev, hash, seq],
        )
        .unwrap();
        prev = hash;
    }
}

#[test]
fn a_rewritten_audit_chain_is_found_against_a_checkpoint_signed_earlier() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    env.spoke(&["eval", "--data", &d, "--all"]).ok();
    let written = env
        .spoke(&["audit", "checkpoint", "--data", &d, "--to", &env.s("stick")])
        .ok();
    let checkpoint = written["file"].as_str().unwrap().to_string();
    env.spoke(&["report", "--data", &d, "--to", &env.s("stick")])
        .ok();
    let report = env.s("stick/report.json");
    // The hub accepts the checkpoint as a document this spoke signed.
    env.hub(&["report", "verify", &checkpoint]).ok();
    // Later entries do not disturb an earlier checkpoint.
    env.spoke(&["eval", "--data", &d, "--all"]).ok();
    for against in [&checkpoint, &report] {
        env.spoke(&["audit", "verify", "--data", &d, "--against", against])
            .ok();
    }

    // The rewrite passes the plain chain check...
    rewrite_audit_chain(&env.path("spoke/db/spoke.sqlite"), 2, "mallory");
    env.spoke(&["audit", "verify", "--data", &d]).ok();
    // ...but not the signed checkpoints, which were taken off the spoke.
    for against in [&checkpoint, &report] {
        let msg = env
            .spoke(&["audit", "verify", "--data", &d, "--against", against])
            .fails_with("audit_broken");
        assert!(msg.contains("rewritten"), "{msg}");
    }
    // Another spoke's checkpoint is no anchor for this one.
    let elsewhere = Env::new();
    let other = elsewhere.sample_spoke("other");
    let theirs = elsewhere
        .spoke(&[
            "audit",
            "checkpoint",
            "--data",
            &other,
            "--to",
            &elsewhere.s("theirs"),
        ])
        .ok();
    let msg = env
        .spoke(&[
            "audit",
            "verify",
            "--data",
            &d,
            "--against",
            theirs["file"].as_str().unwrap(),
        ])
        .fails_with("usage");
    assert!(msg.contains("not by this spoke"), "{msg}");
    // A document that is not a signed spoke document is refused by name.
    std::fs::write(env.path("stick/notes.json"), br#"{"format": "notes"}"#).unwrap();
    let notes = env.s("stick/notes.json");
    let msg = env
        .spoke(&["audit", "verify", "--data", &d, "--against", &notes])
        .fails_with("usage");
    assert!(
        msg.contains("notes.json") && msg.contains("not a signed spoke document"),
        "{msg}"
    );
}

#[test]
fn lifting_legal_hold_by_editing_the_settings_row_is_found() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    env.spoke(&[
        "lifecycle",
        "--data",
        &d,
        "--set",
        "LEGAL_HOLD",
        "--reason",
        "litigation 2026-17",
    ])
    .ok();
    env.spoke(&["audit", "verify", "--data", &d]).ok();
    rusqlite::Connection::open(env.path("spoke/db/spoke.sqlite"))
        .unwrap()
        .execute(
            "UPDATE settings SET value = 'ACTIVE' WHERE key = 'lifecycle'",
            [],
        )
        .unwrap();
    let msg = env
        .spoke(&["audit", "verify", "--data", &d])
        .fails_with("audit_broken");
    assert!(
        msg.contains("LEGAL_HOLD") && msg.contains("settings were edited"),
        "{msg}"
    );
}

#[test]
fn bad_input_is_refused_and_stores_nothing() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    let before = env.spoke(&["entity", "list", "--data", &d]).ok();
    let audit_before = env.spoke(&["audit", "list", "--data", &d]).ok();
    let cases: [(&str, &str); 4] = [
        (
            r#"{"kind": "product", "name": "X", "colour": "red"}"#,
            "colour",
        ),
        (r#"{"kind": "product", "name": 5}"#, "invalid type"),
        (
            r#"[{"id": "ok-one", "kind": "product", "name": "A"}, {"kind": "product", "name": "B", "components": [{"substance": "W", "cas": "7732-18-4"}]}]"#,
            "check digit",
        ),
        (r#"{"kind": "product", "name": "X""#, "not JSON"),
    ];
    for (i, (json, needle)) in cases.iter().enumerate() {
        let f = env.path(&format!("bad{i}.json"));
        std::fs::write(&f, json).unwrap();
        let out = env.spoke(&["entity", "add", "--data", &d, &f.display().to_string()]);
        assert!(!out.out.status.success());
        let err = String::from_utf8_lossy(&out.out.stderr);
        assert!(err.contains(needle), "{json}: {err}");
    }
    // The batch with one bad entity was validated before anything was stored.
    assert_eq!(env.spoke(&["entity", "list", "--data", &d]).ok(), before);

    let fake = env.path("report.pdf");
    std::fs::write(&fake, b"this is not a PDF").unwrap();
    let msg = env
        .doc_add(&d, "cpsr", None, None, &fake)
        .fails_with("unsupported_media");
    assert!(msg.contains("%PDF-"), "{msg}");
    let broken = env.path("broken.pdf");
    std::fs::write(&broken, b"%PDF-1.7\n1 0 obj garbage").unwrap();
    env.doc_add(&d, "cpsr", None, None, &broken)
        .fails_with("unreadable");
    assert_eq!(
        env.spoke(&["audit", "list", "--data", &d]).ok(),
        audit_before
    );
    assert_eq!(
        env.spoke(&["doc", "list", "--data", &d])
            .ok()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn pdf_text_is_extracted_and_searchable() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    std::fs::write(
        env.path("sds.pdf"),
        common::pdf("Safety data sheet for Quillaja saponaria extract"),
    )
    .unwrap();
    let doc = env
        .doc_add(&d, "sds", Some("glow-cream"), None, &env.path("sds.pdf"))
        .ok();
    assert_eq!(doc["media_type"], "application/pdf");
    assert!(doc["text_chars"].as_u64().unwrap() > 20, "{doc}");
    let hits = env
        .spoke(&["search", "--data", &d, "--kind", "document", "quillaja"])
        .ok();
    assert_eq!(hits[0]["id"], doc["id"]);
    assert_eq!(hits[0]["title"], "sds.pdf");
}

#[test]
fn search_where_used_and_reindex() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    let hits = env
        .spoke(&["search", "--data", &d, "--kind", "product", "69-72-7"])
        .ok();
    let mut ids: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["glow-cream", "hydra-serum", "mystery-balm"]);
    let docs = env
        .spoke(&[
            "search",
            "--data",
            &d,
            "--kind",
            "document",
            "margin of safety",
        ])
        .ok();
    assert_eq!(docs[0]["title"], "hydra-serum-cpsr.txt");
    assert!(docs[0]["snippet"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("[margin]"));
    // The index is derived: delete it and it is rebuilt at the next start.
    std::fs::remove_dir_all(env.path("spoke/store/search")).unwrap();
    let again = env
        .spoke(&["search", "--data", &d, "--kind", "product", "69-72-7"])
        .ok();
    assert_eq!(again.as_array().unwrap().len(), 3);
    let reindexed = env.spoke(&["reindex", "--data", &d]).ok();
    assert_eq!(reindexed["indexed"], 7);
    let used = env
        .spoke(&["entity", "where-used", "--data", &d, "94-13-3"])
        .ok();
    assert_eq!(used[0]["id"], "glow-cream");
}

/// #26: a lock made by kernel VM 1.0.0 replays with VM 1.0.0 semantics, to
/// exactly the bytes that kernel wrote (frozen in the kernel's
/// `tests/v1_0_semantics.json`), while new evaluations sum a substance's
/// lines; and intake refuses a category the environment does not define.
#[test]
fn old_locks_keep_their_semantics_and_new_ones_sum_substances() {
    use sha2::{Digest, Sha256};
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    let frozen: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("appliance/kernel/tests/v1_0_semantics.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let twice = frozen["products"]
        .as_array()
        .unwrap()
        .iter()
        .position(|p| p["id"] == "salicylic-twice")
        .unwrap();
    let (product, old_result) = (
        &frozen["products"][twice],
        frozen["expected"][twice].as_str().unwrap(),
    );

    // Today's kernel: the same product as an entity fails on 3% in total.
    let mut entity = product.clone();
    let obj = entity.as_object_mut().unwrap();
    obj.remove("documents");
    obj.insert("kind".into(), "product".into());
    let f = env.path("twice.json");
    std::fs::write(&f, entity.to_string()).unwrap();
    env.spoke(&["entity", "add", "--data", &d, &f.display().to_string()])
        .ok();
    let out = env
        .spoke(&[
            "eval",
            "--data",
            &d,
            "--as-of",
            "2026-06-01",
            "salicylic-twice",
        ])
        .ok();
    let rules = out[0]["evaluation"]["rules"].as_array().unwrap();
    let limits = rules
        .iter()
        .find(|r| r["rule"] == "annex-iii-limits")
        .unwrap();
    assert_eq!(limits["verdict"], "fail", "{limits}");
    let formulation = rules.iter().find(|r| r["rule"] == "formulation").unwrap();
    assert_eq!(formulation["verdict"], "needs_review");
    let new_lock = out[0]["lock_id"].as_str().unwrap();
    let shown = env.spoke(&["locks", "--data", &d, "--show", new_lock]).ok();
    assert_eq!(shown["content"]["vm_version"], "1.1.0");
    let replay = env.spoke(&["eval", "--data", &d, "--replay", new_lock]);
    assert!(replay.out.status.success());

    // A lock as VM 1.0.0 wrote it, over the same installed packs and tables.
    let mut content = shown["content"].clone();
    content["kernel_build"] = "kernel/0.1.0+vm1.0.0+src.1c3df0e000000000".into();
    content["vm_version"] = "1.0.0".into();
    content["product"] = product.clone();
    content["result_sha256"] = hex::encode(Sha256::digest(old_result.as_bytes())).into();
    let content = serde_json::to_string(&content).unwrap();
    let old_id = hex::encode(Sha256::digest(content.as_bytes()));
    // Locks are append-only, but a new row can be written as an old kernel did.
    let insert = |id: &str, content: &str| {
        rusqlite::Connection::open(env.path("spoke/db/spoke.sqlite"))
            .unwrap()
            .execute(
                "INSERT INTO locks (id, product_id, created_at, kernel_build, verdict, content, result)
                 VALUES (?1, 'salicylic-twice', '2026-06-01T00:00:00Z', 'kernel/0.1.0+vm1.0.0', 'pass', ?2, ?3)",
                rusqlite::params![id, content, old_result],
            )
            .unwrap();
    };
    insert(&old_id, &content);
    let replay = env.spoke(&["eval", "--data", &d, "--replay", &old_id]);
    assert!(
        replay.out.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&replay.out.stdout).trim_end(),
        old_result,
        "the VM 1.0.0 lock replays to its own bytes (a pass, as that kernel judged)"
    );
    // A lock naming a VM this kernel does not know is refused, not guessed.
    let alien = content.replace("\"vm_version\":\"1.0.0\"", "\"vm_version\":\"9.0.0\"");
    let alien_id = hex::encode(Sha256::digest(alien.as_bytes()));
    insert(&alien_id, &alien);
    let replay = env.spoke(&["eval", "--data", &d, "--replay", &alien_id]);
    assert!(!replay.out.status.success());
    assert!(
        String::from_utf8_lossy(&replay.out.stderr).contains("9.0.0")
            && String::from_utf8_lossy(&replay.out.stderr).contains("1.0.0 and 1.1.0"),
        "{}",
        String::from_utf8_lossy(&replay.out.stderr)
    );

    // Intake: "sunscreen" is not a category of the cosmetics environment.
    let f = env.path("sun.json");
    std::fs::write(
        &f,
        r#"{"id": "sun", "kind": "product", "name": "Sun", "category": "sunscreen"}"#,
    )
    .unwrap();
    let out = env.spoke(&["entity", "add", "--data", &d, &f.display().to_string()]);
    assert!(!out.out.status.success());
    let err = String::from_utf8_lossy(&out.out.stderr);
    assert!(
        err.contains("sunscreen") && err.contains("use one of hair_rinse_off, leave_on"),
        "{err}"
    );
}
