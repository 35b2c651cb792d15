//! Backup, restore and reconstruction, end to end: the real `spoke` binary,
//! a spoke made by the hub and spoke under test, backups read back with the
//! `age` and `zstd` command-line tools, and damaged, truncated or foreign
//! backups refused before anything is written.

mod common;

use common::{snapshot, Env};
use std::process::Command;

/// An operator age key made with `age-keygen`: (identity file, recipient).
/// `spoke restore` of the newest backup in `bk` into `data`.
fn restore(env: &Env, data: &str, key: &str, force: bool) -> common::Run {
    let mut args = vec!["restore", "--data", data, "--identity", key];
    if force {
        args.push("--force");
    }
    let bk = env.s("bk");
    args.push(&bk);
    env.spoke(&args)
}

/// Everything that must survive a backup: entities, documents, locks, audit head.
fn state(env: &Env, d: &str) -> serde_json::Value {
    let q = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--data", d]);
        env.spoke(&a).ok()
    };
    let audit = q(&["audit", "verify"]);
    serde_json::json!({
        "entities": q(&["entity", "list"]),
        "documents": q(&["doc", "list"]),
        "locks": q(&["locks"]),
        "bundles": q(&["bundles"]),
        "identity": q(&["identity"]),
        "audit_head": audit["head"],
        "audit_entries": audit["entries"],
        // The search index is not in a backup: the first open rebuilds it.
        "search": q(&["search", "hydra"]),
    })
}

fn age_decrypt(key: &str, file: &std::path::Path) -> Vec<u8> {
    let out = Command::new("age")
        .args(["-d", "-i", key])
        .arg(file)
        .output()
        .expect("the age CLI is needed");
    assert!(
        out.status.success(),
        "age -d {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Where each chunk sits, from the clear pack indexes of backup directory
/// `bk`: id → (pack file, offset, length).
fn pack_index(env: &Env) -> std::collections::HashMap<String, (std::path::PathBuf, usize, usize)> {
    let mut out = std::collections::HashMap::new();
    for e in std::fs::read_dir(env.path("bk/packs")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "idx") {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut lines = text.lines();
            assert!(lines
                .next()
                .unwrap()
                .starts_with("eurocomply-backup-pack/1 "));
            for line in lines {
                let f: Vec<&str> = line.split(' ').collect();
                let pack = path.with_extension("age");
                out.insert(
                    f[0].to_string(),
                    (pack, f[1].parse().unwrap(), f[2].parse().unwrap()),
                );
            }
        }
    }
    out
}

fn backup(env: &Env, d: &str, to: &str, recipient: &str) -> serde_json::Value {
    env.spoke(&[
        "backup",
        "--data",
        d,
        "--to",
        &env.s(to),
        "--recipient",
        recipient,
    ])
    .ok()
}

#[test]
fn backup_restore_incremental_and_the_age_cli() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    // Two larger documents, so that the incremental comparison below
    // measures data rather than the manifest.
    for (i, name) in ["big-sds-1.txt", "big-sds-2.txt"].iter().enumerate() {
        let f = env.path(name);
        std::fs::write(&f, common::payload(3 << 20, 11 + i as u64)).unwrap();
        env.doc_add(&d, "sds", Some("hydra-serum"), None, &f).ok();
    }
    env.spoke(&["eval", "--data", &d, "--all"]).ok();
    // An empty file and a file after it: restore writes files as one stream of chunks.
    std::fs::write(env.path("spoke/empty"), b"").unwrap();
    let (key, recipient) = env.age_key("operator.key");
    let before = state(&env, &d);
    assert!(
        before["search"].to_string().contains("hydra-serum"),
        "{}",
        before["search"]
    );

    let first = backup(&env, &d, "bk", &recipient);
    assert!(first["files"].as_u64().unwrap() > 5, "{first}");
    assert_eq!(
        first["new_chunks"], first["chunks"],
        "a first backup writes every chunk"
    );
    let name = first["name"].as_str().unwrap().to_string();

    // An operator with nothing but age and zstd can read the backup: the
    // manifest is a document the spoke signed, and `hub report verify` checks it.
    let manifest_path = env.path(&format!("bk/backups/{name}.age"));
    let plain = age_decrypt(&key, &manifest_path);
    std::fs::write(env.path("manifest.json"), &plain).unwrap();
    let verified = env.hub(&["report", "verify", &env.s("manifest.json")]).ok();
    assert_eq!(verified["format"], "eurocomply-backup/1");
    assert_eq!(verified["signer"], before["identity"]["did"]);
    let files = verified["body"]["files"].as_array().unwrap();
    let marker = files.iter().find(|f| f["path"] == "spoke.json").unwrap();
    let mut content = Vec::new();
    let index = pack_index(&env);
    for c in marker["chunks"].as_array().unwrap() {
        let (pack, offset, len) = &index[c["id"].as_str().unwrap()];
        let compressed = &age_decrypt(&key, pack)[*offset..offset + len];
        let mut z = Command::new("zstd")
            .args(["-d", "-c"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        z.stdin.take().unwrap().write_all(compressed).unwrap();
        content.extend(z.wait_with_output().unwrap().stdout);
    }
    assert_eq!(
        content,
        std::fs::read(env.path("spoke/spoke.json")).unwrap()
    );
    assert!(
        files.iter().any(|f| f["path"] == "db/spoke.sqlite"),
        "the database snapshot is in the backup"
    );
    assert!(
        files
            .iter()
            .any(|f| f["path"].as_str().unwrap().starts_with("store/indexes/")),
        "installed bundle indexes are in the backup"
    );

    // Restore onto a new directory gives the same spoke, digest for digest.
    let r = restore(&env, &env.s("restored"), &key, false).ok();
    assert_eq!(std::fs::read(env.path("restored/empty")).unwrap(), b"");
    assert_eq!(r["backup"], name.as_str());
    assert_eq!(r["replaced"], false);
    let restored = env.s("restored");
    assert_eq!(state(&env, &restored), before);
    let lock = before["locks"][0]["id"].as_str().unwrap();
    env.spoke(&["eval", "--data", &restored, "--replay", lock])
        .ok();

    // Incremental: a small change writes only a few chunks.
    let entity = env.path("one.json");
    std::fs::write(
        &entity,
        r#"{"id":"new-lotion","kind":"product","name":"New lotion","components":[]}"#,
    )
    .unwrap();
    env.spoke(&["entity", "add", "--data", &d, &entity.display().to_string()])
        .ok();
    let second = backup(&env, &d, "bk", &recipient);
    let (new, all) = (
        second["new_chunks"].as_u64().unwrap(),
        second["chunks"].as_u64().unwrap(),
    );
    assert!(new > 0 && new * 4 < all, "{new} new of {all} chunks");
    assert!(
        second["written_bytes"].as_u64().unwrap() * 10 < first["written_bytes"].as_u64().unwrap(),
        "incremental {second} vs full {first}"
    );
    let listed = env.spoke(&["backups", &env.s("bk")]).ok();
    assert_eq!(listed.as_array().unwrap().len(), 2);

    // verify-restore checks the newest: digests, audit chain, locks replayed.
    let v = env
        .spoke(&["verify-restore", "--identity", &key, &env.s("bk")])
        .ok();
    assert_eq!(v["backup"], second["name"]);
    assert!(v["locks_replayed"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["audit_entries"], second["audit_entries"]);

    // Retention keeps the newest and collects chunks only the old one used.
    let third = env
        .spoke(&[
            "backup",
            "--data",
            &d,
            "--to",
            &env.s("bk"),
            "--recipient",
            &recipient,
            "--keep",
            "1",
        ])
        .ok();
    assert_eq!(third["pruned"].as_array().unwrap().len(), 2);
    let left = env.spoke(&["backups", &env.s("bk")]).ok();
    assert_eq!(left, serde_json::json!([third["name"]]));
    // Every chunk the kept backup uses is in a pack, and every pack left
    // holds one of them.
    let used = std::fs::read_to_string(env.path(&format!(
        "bk/backups/{}.chunks",
        third["name"].as_str().unwrap()
    )))
    .unwrap();
    let used: std::collections::HashSet<&str> = used.lines().collect();
    assert_eq!(used.len() as u64, third["chunks"].as_u64().unwrap());
    let index = pack_index(&env);
    assert!(used.iter().all(|id| index.contains_key(*id)));
    let packs: std::collections::HashSet<_> = index.values().map(|(p, _, _)| p).collect();
    for pack in packs {
        assert!(
            index
                .iter()
                .any(|(id, (p, _, _))| p == pack && used.contains(id.as_str())),
            "{} is used by no backup left",
            pack.display()
        );
    }
    env.spoke(&["verify-restore", "--identity", &key, &env.s("bk")])
        .ok();
}

#[test]
fn bad_backups_are_refused_before_anything_is_written() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    let (key, recipient) = env.age_key("operator.key");
    let (other_key, _) = env.age_key("other.key");
    let first = backup(&env, &d, "bk", &recipient);
    let name = first["name"].as_str().unwrap().to_string();

    // An existing data directory is never overwritten without --force.
    let existing = env.path("existing");
    std::fs::create_dir_all(&existing).unwrap();
    std::fs::write(existing.join("precious.txt"), b"keep").unwrap();
    let msg = restore(&env, &env.s("existing"), &key, false).fails_with("conflict");
    assert!(msg.contains("--force"), "{msg}");
    assert_eq!(
        std::fs::read(existing.join("precious.txt")).unwrap(),
        b"keep"
    );
    // Nor is the live spoke.
    let live = snapshot(&env.path("spoke"));
    restore(&env, &d, &key, false).fails_with("conflict");
    common::assert_same(&live, &snapshot(&env.path("spoke")));

    // A backup for another recipient is refused.
    let msg = restore(&env, &env.s("r1"), &other_key, false).fails_with("backup");
    assert!(msg.contains("not encrypted to"), "{msg}");
    assert!(!env.path("r1").exists());

    let parent_entries = || {
        let mut v: Vec<String> = std::fs::read_dir(env.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let entries_before = parent_entries();

    // A damaged pack: refused by verify-restore and by restore --force,
    // which leaves the directory it would have replaced untouched.
    let mut packs: Vec<_> = snapshot(&env.path("bk/packs"))
        .into_keys()
        .filter(|p| p.to_string_lossy().ends_with(".age"))
        .collect();
    packs.sort();
    let victim = env.path("bk/packs").join(&packs[packs.len() / 2]);
    let good = std::fs::read(&victim).unwrap();
    let mut bad = good.clone();
    let at = bad.len() - 20;
    bad[at] ^= 0x55;
    std::fs::write(&victim, &bad).unwrap();
    let msg = env
        .spoke(&["verify-restore", "--identity", &key, &env.s("bk")])
        .fails_with("backup");
    assert!(msg.contains("damaged"), "{msg}");
    let msg = restore(&env, &env.s("existing"), &key, true).fails_with("backup");
    assert!(msg.contains("damaged"), "{msg}");
    assert_eq!(
        std::fs::read(existing.join("precious.txt")).unwrap(),
        b"keep"
    );
    assert_eq!(parent_entries(), entries_before, "no staging left behind");

    // A truncated pack.
    std::fs::write(&victim, &good[..good.len() / 2]).unwrap();
    env.spoke(&["verify-restore", "--identity", &key, &env.s("bk")])
        .fails_with("backup");
    // A missing pack.
    std::fs::remove_file(&victim).unwrap();
    let msg = env
        .spoke(&["verify-restore", "--identity", &key, &env.s("bk")])
        .fails_with("backup");
    assert!(msg.contains("incomplete"), "{msg}");
    std::fs::write(&victim, &good).unwrap();
    env.spoke(&["verify-restore", "--identity", &key, &env.s("bk")])
        .ok();

    // A directory in another format (this spoke's first, one age file per
    // chunk) is refused with what to do.
    let old_dir = env.path("old-bk");
    std::fs::create_dir_all(&old_dir).unwrap();
    std::fs::write(
        old_dir.join("backup-store.json"),
        r#"{"format":"eurocomply-backup-store/1"}"#,
    )
    .unwrap();
    let msg = env
        .spoke(&["verify-restore", "--identity", &key, &env.s("old-bk")])
        .fails_with("backup");
    assert!(
        msg.contains("eurocomply-backup-store/1") && msg.contains("new directory"),
        "{msg}"
    );
    // Nor is a backup written into it.
    let msg = env
        .spoke(&[
            "backup",
            "--data",
            &d,
            "--to",
            &env.s("old-bk"),
            "--recipient",
            &recipient,
        ])
        .fails_with("backup");
    assert!(msg.contains("new directory"), "{msg}");
    let left: Vec<_> = std::fs::read_dir(&old_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["backup-store.json"], "nothing written into it");
    std::fs::remove_dir_all(&old_dir).unwrap();

    // A truncated manifest.
    let manifest = env.path(&format!("bk/backups/{name}.age"));
    let m = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &m[..m.len() - 40]).unwrap();
    restore(&env, &env.s("r2"), &key, false).fails_with("backup");
    assert!(!env.path("r2").exists());
    assert_eq!(parent_entries(), entries_before);
    std::fs::write(&manifest, &m).unwrap();

    // A manifest re-signed by someone else cannot pass as this backup: a
    // signature over edited content fails.
    let plain = age_decrypt(&key, &manifest);
    let edited = String::from_utf8(plain)
        .unwrap()
        .replacen("\"size\":", "\"size\":1", 1);
    let re = Command::new("age")
        .args(["-r", &recipient, "-o"])
        .arg(&manifest)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut re = re;
        use std::io::Write;
        re.stdin
            .take()
            .unwrap()
            .write_all(edited.as_bytes())
            .unwrap();
        assert!(re.wait().unwrap().success());
    }
    env.spoke(&["verify-restore", "--identity", &key, &env.s("bk")])
        .fails_with("bad_signature");
    std::fs::write(&manifest, &m).unwrap();

    // With --force a good backup replaces the directory in one swap.
    let r = restore(&env, &env.s("existing"), &key, true).ok();
    assert_eq!(r["replaced"], true);
    assert!(!existing.join("precious.txt").exists());
    env.spoke(&["audit", "verify", "--data", &env.s("existing")])
        .ok();
    assert_eq!(parent_entries(), entries_before);
}

/// Seed 000 §11: a freshly initialised spoke, the product bundles and the
/// latest backup give the same entities, documents, locks and audit chain,
/// and every stored Compliance Lock replays byte for byte.
#[test]
fn reconstruction_from_fresh_spoke_bundles_and_latest_backup() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    env.spoke(&["eval", "--data", &d, "--all"]).ok();
    let (key, recipient) = env.age_key("operator.key");
    backup(&env, &d, "bk", &recipient);
    env.spoke(&["eval", "--data", &d, "--all"]).ok();
    let last = backup(&env, &d, "bk", &recipient);
    let before = state(&env, &d);

    // The appliance is lost.
    std::fs::remove_dir_all(env.path("spoke")).unwrap();

    // A new appliance: initialised from the hub's root, product bundles imported.
    env.spoke_init("rebuilt");
    env.import("rebuilt", "usb").ok();
    let rebuilt = env.s("rebuilt");
    restore(&env, &rebuilt, &key, true).ok();
    assert_eq!(state(&env, &rebuilt), before);
    assert_eq!(before["audit_entries"], last["audit_entries"]);
    let locks = before["locks"].as_array().unwrap();
    assert!(locks.len() >= 2);
    for l in locks {
        env.spoke(&[
            "eval",
            "--data",
            &rebuilt,
            "--replay",
            l["id"].as_str().unwrap(),
        ])
        .ok();
    }
    // It works as a spoke again: a new evaluation appends to the same chain.
    env.spoke(&["eval", "--data", &rebuilt, "--all"]).ok();
    env.spoke(&["audit", "verify", "--data", &rebuilt]).ok();
}

#[test]
fn backup_while_serving_and_on_a_schedule() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    let (key, recipient) = env.age_key("operator.key");
    let (_server, url) = env.spoke_serve(
        &d,
        &[
            "--backup-to",
            &env.s("scheduled"),
            "--backup-every",
            "1h",
            "--backup-recipient",
            &recipient,
            "--backup-keep",
            "2",
        ],
    );
    // A backup by hand while the server holds the database open.
    backup(&env, &d, "manual", &recipient);
    env.spoke(&["verify-restore", "--identity", &key, &env.s("manual")])
        .ok();
    // The schedule takes its first backup at start; wait for the API to
    // answer, then for the manifest (the commit point) to appear.
    let health = ureq::get(&format!("{url}/health")).call();
    assert!(health.is_ok());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let listed = env.spoke(&["backups", &env.s("scheduled")]).ok();
        if listed.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled backup after 60 s"
        );
        std::thread::yield_now();
    }
    env.spoke(&["verify-restore", "--identity", &key, &env.s("scheduled")])
        .ok();
}
