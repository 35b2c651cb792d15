//! Stores that never pretend: a spoke that lost its database or a pack
//! payload refuses to carry on as if nothing happened, and a full disk
//! under the search index never fails a committed write.

mod common;

use common::{assert_same, snapshot, Env};
use std::path::{Path, PathBuf};

/// The database files of a data directory (the database and its WAL/SHM).
fn db_files(data: &Path) -> Vec<PathBuf> {
    ["spoke.sqlite", "spoke.sqlite-wal", "spoke.sqlite-shm"]
        .iter()
        .map(|f| data.join("db").join(f))
        .collect()
}

/// Moves the database files aside (into `to`) and back.
fn move_db(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in db_files(from) {
        if f.exists() {
            std::fs::rename(&f, to.join(f.file_name().unwrap())).unwrap();
        }
    }
}

fn restore_db(saved: &Path, data: &Path) {
    for f in db_files(data) {
        let _ = std::fs::remove_file(&f);
        let s = saved.join(f.file_name().unwrap());
        if s.exists() {
            std::fs::rename(&s, &f).unwrap();
        }
    }
}

#[test]
fn a_lost_or_foreign_database_is_refused_never_a_fresh_start() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    let data = env.path("spoke");
    let counts = |v: serde_json::Value| (v["counts"].clone(), v["active_packs"].clone());
    let before = counts(env.spoke(&["status", "--data", &d]).ok());
    assert!(before.0["entities"].as_u64().unwrap() > 0, "{before:?}");
    let other = env.spoke_init("other");
    let saved = env.path("saved-db");

    type Break = fn(&Env, &Path);
    let cases: [(&str, Break, &str); 3] = [
        (
            "missing",
            |_, data| {
                for f in db_files(data) {
                    let _ = std::fs::remove_file(f);
                }
            },
            "the database is missing",
        ),
        (
            "zero-length",
            |_, data| {
                for f in db_files(data) {
                    let _ = std::fs::remove_file(&f);
                }
                std::fs::write(data.join("db/spoke.sqlite"), b"").unwrap();
            },
            "the database is empty",
        ),
        (
            "another spoke's",
            |env, data| {
                for f in db_files(data) {
                    let _ = std::fs::remove_file(&f);
                }
                for f in db_files(&env.path("other")) {
                    if f.exists() {
                        std::fs::copy(&f, data.join("db").join(f.file_name().unwrap())).unwrap();
                    }
                }
            },
            "belongs to spoke",
        ),
    ];
    for (name, break_it, says) in cases {
        move_db(&data, &saved);
        break_it(&env, &data);
        let broken = snapshot(&data);
        for args in [
            vec!["status", "--data", &d],
            vec!["audit", "verify", "--data", &d],
            vec!["eval", "--data", &d, "--all"],
            vec!["import", "--data", &d, &env.s("usb")],
            vec!["verify", "--data", &d],
        ] {
            let msg = env.spoke(&args).fails_with("state_lost");
            assert!(msg.contains(says), "{name} database, {args:?}: {msg}");
            assert!(msg.contains("spoke restore"), "{name}: {msg}");
            assert_same(&broken, &snapshot(&data));
        }
        restore_db(&saved, &data);
    }
    assert!(other["did"].is_string());
    // Put back, the spoke is whole again.
    assert_eq!(counts(env.spoke(&["status", "--data", &d]).ok()), before);
    // Only `spoke init` makes an empty store, and never over an existing one.
    env.spoke(&[
        "init",
        "--data",
        &d,
        "--trust",
        &env.s("repo/metadata/1.root.json"),
    ])
    .fails_with("usage");
}

/// The installed payload files of the pack that carries `file`.
fn pack_file(data: &Path, file: &str) -> PathBuf {
    std::fs::read_dir(data.join("bundles"))
        .unwrap()
        .map(|e| e.unwrap().path().join(file))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no installed payload has {file}"))
}

#[test]
fn a_missing_or_altered_pack_payload_stops_evaluations_and_fails_verify() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    let data = env.path("spoke");
    env.spoke(&["eval", "--data", &d, "--all"]).ok();
    env.spoke(&["verify", "--data", &d, "--full"]).ok();
    let rules = pack_file(&data, "rules.json");
    let original = std::fs::read(&rules).unwrap();

    // Deleted: evaluations refuse instead of skipping the pack's rules.
    std::fs::remove_file(&rules).unwrap();
    let msg = env
        .spoke(&["eval", "--data", &d, "--all"])
        .fails_with("state_lost");
    assert!(msg.contains("rules.json is missing"), "{msg}");
    assert!(msg.contains("spoke import"), "{msg}");
    let verify = env.spoke(&["verify", "--data", &d]);
    let report: serde_json::Value = serde_json::from_slice(&verify.out.stdout).unwrap();
    let msg = verify.fails_with("unhealthy");
    assert!(msg.contains("payloads"), "{msg}");
    let payloads = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c[0] == "payloads")
        .unwrap();
    assert_eq!(payloads[1], false, "{report}");
    assert!(payloads[2]
        .as_str()
        .unwrap()
        .contains("rules.json is missing"));

    // Altered in place, same size: found by digest.
    let mut altered = original.clone();
    let at = altered.iter().position(|b| b.is_ascii_digit()).unwrap();
    altered[at] = if altered[at] == b'9' {
        b'8'
    } else {
        altered[at] + 1
    };
    std::fs::write(&rules, &altered).unwrap();
    let msg = env
        .spoke(&["eval", "--data", &d, "--all"])
        .fails_with("state_lost");
    assert!(msg.contains("rules.json was altered"), "{msg}");
    // Without --full only sizes are compared; --full re-hashes.
    env.spoke(&["verify", "--data", &d]).ok();
    env.spoke(&["verify", "--data", &d, "--full"])
        .fails_with("unhealthy");

    std::fs::write(&rules, &original).unwrap();
    env.spoke(&["eval", "--data", &d, "--all"]).ok();
    env.spoke(&["verify", "--data", &d, "--full"]).ok();
}

/// A tmpfs of `size` mounted at `at` for the test's lifetime (root only).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` with `filler` until a write fails.
fn fill(filler: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(filler).unwrap();
    let block = vec![0x5au8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

fn search_ids(env: &Env, d: &str, query: &str) -> Vec<String> {
    let hits = env.spoke(&["search", "--data", d, query]).ok();
    hits.as_array()
        .unwrap_or_else(|| panic!("search output: {hits}"))
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_full_disk_under_the_search_index_never_fails_a_committed_write() {
    if !nix_is_root() {
        eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    let data = env.path("spoke");
    let index = data.join("store/search");
    std::fs::remove_dir_all(&index).unwrap();
    std::fs::create_dir_all(&index).unwrap();
    let _tmpfs = Tmpfs::mount(&index, "8m").expect("mount a tmpfs (as root)");
    // The first start on the new, empty filesystem rebuilds the index there.
    assert!(search_ids(&env, &d, "Hydra").contains(&"hydra-serum".to_string()));
    let filler = index.join("filler");
    fill(&filler);

    let product = |id: &str, name: &str| {
        let path = env.path(&format!("{id}.json"));
        std::fs::write(
            &path,
            serde_json::json!({"id": id, "kind": "product", "name": name, "category": "leave_on",
                "markets": ["EU"], "components": [
                    {"substance": "Aqua", "cas": "7732-18-5", "concentration": 99.0, "unit": "%w/w"}]})
            .to_string(),
        )
        .unwrap();
        path
    };
    // The write commits and says so, although the index cannot follow.
    let added = env
        .spoke(&[
            "entity",
            "add",
            "--data",
            &d,
            &product("zephyr-gel", "Zephyr Gel").display().to_string(),
        ])
        .ok();
    assert!(added.to_string().contains("zephyr-gel"), "{added}");
    let listed = env.spoke(&["entity", "list", "--data", &d]).ok();
    assert!(listed.to_string().contains("zephyr-gel"), "{listed}");
    // Reads still work from the older index; verify says it is behind.
    assert!(search_ids(&env, &d, "Hydra").contains(&"hydra-serum".to_string()));
    assert!(search_ids(&env, &d, "Zephyr").is_empty());
    let verify = env.spoke(&["verify", "--data", &d]);
    let msg = verify.fails_with("unhealthy");
    assert!(msg.contains("search_index"), "{msg}");

    // Space back: the next write catches the index up with both products.
    std::fs::remove_file(&filler).unwrap();
    env.spoke(&[
        "entity",
        "add",
        "--data",
        &d,
        &product("yarrow-tonic", "Yarrow Tonic")
            .display()
            .to_string(),
    ])
    .ok();
    assert_eq!(
        search_ids(&env, &d, "Zephyr"),
        vec!["zephyr-gel".to_string()]
    );
    assert_eq!(
        search_ids(&env, &d, "Yarrow"),
        vec!["yarrow-tonic".to_string()]
    );
    env.spoke(&["verify", "--data", &d]).ok();
}

fn nix_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

#[test]
fn a_full_data_disk_refuses_writes_honestly_and_recovers_when_space_returns() {
    if !nix_is_root() {
        eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let env = Env::new();
    let data = env.path("spoke");
    std::fs::create_dir_all(&data).unwrap();
    let _tmpfs = Tmpfs::mount(&data, "64m").expect("mount a tmpfs (as root)");
    let d = env.sample_spoke("spoke");
    let entities = |env: &Env| env.spoke(&["entity", "list", "--data", &d]).ok();
    let before = entities(&env);
    let filler = data.join("filler");
    fill(&filler);

    let product = env.path("zephyr.json");
    std::fs::write(
        &product,
        r#"{"id": "zephyr-gel", "kind": "product", "name": "Zephyr Gel", "category": "leave_on",
            "markets": ["EU"], "components": [{"substance": "Aqua", "cas": "7732-18-5", "concentration": 99.0, "unit": "%w/w"}]}"#,
    )
    .unwrap();
    let add = || {
        env.spoke(&[
            "entity",
            "add",
            "--data",
            &d,
            &product.display().to_string(),
        ])
    };
    let msg = add().fails_with("disk_full");
    assert!(msg.contains("nothing of this request was written"), "{msg}");
    assert!(msg.contains("Free space"), "{msg}");
    // With not a byte left even a read cannot open the database (SQLite
    // must create its shared-memory file): it says so the same way.
    let msg = env
        .spoke(&["entity", "list", "--data", &d])
        .fails_with("disk_full");
    assert!(msg.contains("Free space"), "{msg}");

    // Space back: nothing half-written is there, then the write works.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(entities(&env), before);
    env.spoke(&["audit", "verify", "--data", &d]).ok();
    add().ok();
    assert!(entities(&env).to_string().contains("zephyr-gel"));
    env.spoke(&["verify", "--data", &d]).ok();
}
