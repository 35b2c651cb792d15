//! End to end: the hub builds, signs and exports; a spoke verifies and imports.
//! Every attack is made from a real medium and must leave the spoke unchanged.

mod common;

use common::{assert_same, chunk_files, payload, snapshot, Env};
use std::path::Path;

/// A repository with one published pack, a spoke that imported it, and a fresh medium.
fn baseline() -> Env {
    let env = Env::new();
    env.init_repo(&[]);
    let data = payload(400_000, 1);
    let src = env.pack_src(
        "src/v1",
        "@eu/annex-data",
        "1.0.0",
        &[("tables/annex.txt", &data), ("README", b"sample")],
    );
    env.build_publish(&src, "v1.bundle", &[]);
    env.export("m1", &[]);
    env.spoke_init("d");
    env.import("d", "m1").ok();
    env
}

fn copy_dir(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Imports `medium` into the baseline spoke and asserts the error kind and that nothing changed.
fn refused(env: &Env, medium: &str, kind: &str) -> String {
    let before = snapshot(&env.path("d"));
    let msg = env.import("d", medium).fails_with(kind);
    assert_same(&before, &snapshot(&env.path("d")));
    msg
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// A second publish so media of two repository states exist.
fn publish_v2(env: &Env) {
    let src = env.pack_src(
        "src/v2",
        "@eu/annex-data",
        "1.1.0",
        &[("tables/annex.txt", &payload(400_000, 2))],
    );
    env.build_publish(&src, "v2.bundle", &[]);
}

#[test]
fn round_trip_installs_the_exact_payload() {
    let env = baseline();
    let packs = env.packs("d");
    assert_eq!(packs.len(), 1);
    assert_eq!(packs[0].0, "@eu/annex-data");
    assert_eq!(packs[0].1, "1.0.0");
    let hex = packs[0].2.trim_start_matches("sha256:");
    let installed = std::fs::read(env.path(&format!("d/bundles/{hex}/tables/annex.txt"))).unwrap();
    assert_eq!(installed, payload(400_000, 1));
    // The hub's own verifier agrees, and a second import is a no-op.
    env.hub(&["verify", &env.s("m1")]).ok();
    let again = env.import("d", "m1").ok();
    assert_eq!(again["installed"].as_array().unwrap().len(), 0);
    assert_eq!(again["already_installed"].as_array().unwrap().len(), 1);
    // The install is in the hash-chained audit log, once, with the change that
    // activated the pack (a spoke without data takes it at once).
    let audit = env.spoke(&["audit", "verify", "--data", &env.s("d")]).ok();
    assert_eq!(audit["entries"], 3);
    let entries = env.spoke(&["audit", "list", "--data", &env.s("d")]).ok();
    let actions: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["bundle.install", "change.propose", "change.apply"]
    );
    assert_eq!(entries[0]["target"], packs[0].2.as_str());
}

#[test]
fn builds_are_deterministic() {
    let env = Env::new();
    let src = env.pack_src(
        "src",
        "@eu/det",
        "1.0.0",
        &[("a/b.txt", &payload(300_000, 9)), ("c", b"x")],
    );
    for out in ["one.bundle", "two.bundle"] {
        env.hub_env(
            &["pack", "build", &src, "--out", &env.s(out)],
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        )
        .ok();
    }
    let (a, b) = (
        std::fs::read(env.path("one.bundle")).unwrap(),
        std::fs::read(env.path("two.bundle")).unwrap(),
    );
    assert_eq!(a, b, "the same input must give byte-identical bundles");
    env.hub_env(
        &["pack", "build", &src, "--out", &env.s("three.bundle")],
        &[("SOURCE_DATE_EPOCH", "1700000001")],
    )
    .ok();
    assert_ne!(
        a,
        std::fs::read(env.path("three.bundle")).unwrap(),
        "provenance must record the build time"
    );
}

#[test]
fn pack_sources_with_links_or_devices_are_refused() {
    let env = Env::new();
    let src = env.pack_src("src", "@eu/links", "1.0.0", &[("ok.txt", b"ok")]);
    std::os::unix::fs::symlink("/etc/passwd", env.path("src/evil")).unwrap();
    env.hub(&["pack", "build", &src, "--out", &env.s("x.bundle")])
        .fails_with("link");
    std::fs::remove_file(env.path("src/evil")).unwrap();
    let st = std::process::Command::new("mkfifo")
        .arg(env.path("src/fifo"))
        .status()
        .unwrap();
    assert!(st.success());
    env.hub(&["pack", "build", &src, "--out", &env.s("x.bundle")])
        .fails_with("device_node");
    assert!(!env.path("x.bundle").exists(), "no half-written bundle");
    std::fs::remove_file(env.path("src/fifo")).unwrap();
    std::fs::write(env.path("src/pack.json"), br#"{"name":"@eu/links","version":"1.0.0","type":"logic","handler_vm_version":"^1","trust_tier":"verified","extra":1}"#).unwrap();
    let msg = env
        .hub(&["pack", "build", &src, "--out", &env.s("x.bundle")])
        .fails_with("invalid");
    assert!(msg.contains("pack.json"), "{msg}");
}

#[test]
fn tampered_metadata_is_refused_with_a_precise_error() {
    let env = baseline();
    publish_v2(&env);
    env.export("m2", &[]);

    copy_dir(&env.path("m2"), &env.path("badsig"));
    edit_json(&env.path("badsig/metadata/timestamp.json"), |v| {
        v["signed"]["expires"] = serde_json::json!("2099-01-01T00:00:00Z");
    });
    refused(&env, "badsig", "bad_signature");

    copy_dir(&env.path("m2"), &env.path("unknown"));
    edit_json(&env.path("unknown/metadata/timestamp.json"), |v| {
        v["signatures"][0]["keyid"] = serde_json::json!("ab".repeat(32));
    });
    refused(&env, "unknown", "unknown_key");

    copy_dir(&env.path("m2"), &env.path("nosig"));
    edit_json(&env.path("nosig/metadata/timestamp.json"), |v| {
        v["signatures"] = serde_json::json!([]);
    });
    refused(&env, "nosig", "threshold_not_met");

    // Mix and match: the newest timestamp with an older snapshot under the name it expects.
    copy_dir(&env.path("m2"), &env.path("mix"));
    let old = std::fs::read(env.path("m1/metadata/2.snapshot.json")).unwrap();
    std::fs::write(env.path("mix/metadata/3.snapshot.json"), old).unwrap();
    refused(&env, "mix", "mix_and_match");

    copy_dir(&env.path("m2"), &env.path("fmt"));
    std::fs::write(
        env.path("fmt/medium.json"),
        br#"{"format":"eurocomply-medium/99","encrypted":false}"#,
    )
    .unwrap();
    refused(&env, "fmt", "unknown_format");

    // The untampered medium still imports.
    let ok = env.import("d", "m2").ok();
    assert_eq!(ok["installed"].as_array().unwrap().len(), 1);
}

#[test]
fn an_older_medium_is_a_rollback_even_after_a_newer_one() {
    let env = baseline();
    publish_v2(&env);
    env.export("m2", &[]);
    env.import("d", "m2").ok();
    let msg = refused(&env, "m1", "rollback");
    assert!(msg.contains("older"), "{msg}");
}

#[test]
fn expired_metadata_is_refused_beyond_the_grace() {
    let env = baseline();
    let src = env.pack_src("src/v3", "@eu/other", "1.0.0", &[("f", b"f")]);
    // Timestamp expired 10 days ago: still within the sneakernet grace.
    env.build_publish(&src, "v3.bundle", &["--timestamp-expires-days=-10"]);
    env.export("grace", &[]);
    // Timestamp expired 40 days ago: beyond it.
    let src = env.pack_src("src/v4", "@eu/other2", "1.0.0", &[("f", b"g")]);
    env.build_publish(&src, "v4.bundle", &["--timestamp-expires-days=-40"]);
    env.export("stale", &[]);
    let msg = refused(&env, "stale", "expired");
    assert!(msg.contains("timestamp"), "{msg}");
    // Targets expiry gets no grace.
    let src = env.pack_src("src/v5", "@eu/other3", "1.0.0", &[("f", b"h")]);
    env.build_publish(&src, "v5.bundle", &["--targets-expires-days=-1"]);
    env.export("stale-targets", &[]);
    assert!(refused(&env, "stale-targets", "expired").contains("targets"));
    env.import("d", "grace").ok();
}

#[test]
fn damaged_chunks_and_indexes_are_refused() {
    let env = baseline();
    publish_v2(&env);
    env.export("m2", &[]);
    // Only the new bundle's chunks are unknown to the spoke; damage one of those.
    let fresh: Vec<_> = chunk_files(&env.path("m2"))
        .into_iter()
        .filter(|p| {
            !env.path("d/store/chunks")
                .join(p.parent().unwrap().file_name().unwrap())
                .join(p.file_name().unwrap())
                .exists()
        })
        .collect();
    assert!(!fresh.is_empty());
    let rel = fresh[0].strip_prefix(env.path("m2")).unwrap().to_path_buf();

    copy_dir(&env.path("m2"), &env.path("flip"));
    let p = env.path("flip").join(&rel);
    let mut bytes = std::fs::read(&p).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&p, bytes).unwrap();
    refused(&env, "flip", "digest_mismatch");

    copy_dir(&env.path("m2"), &env.path("missing"));
    std::fs::remove_file(env.path("missing").join(&rel)).unwrap();
    refused(&env, "missing", "truncated");

    copy_dir(&env.path("m2"), &env.path("short"));
    let p = env.path("short").join(&rel);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
    refused(&env, "short", "truncated");

    copy_dir(&env.path("m2"), &env.path("long"));
    let p = env.path("long").join(&rel);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes.extend_from_slice(&[0; 4096]);
    std::fs::write(&p, bytes).unwrap();
    refused(&env, "long", "too_large");

    copy_dir(&env.path("m2"), &env.path("index"));
    let idx = std::fs::read_dir(env.path("index/targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("1.1.0"))
        .unwrap();
    let mut bytes = std::fs::read(&idx).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&idx, bytes).unwrap();
    refused(&env, "index", "digest_mismatch");
}

#[test]
fn a_decompression_bomb_is_stopped_at_the_declared_size() {
    let env = baseline();
    // A hub that signs a lying index: the chunk decompresses to far more than declared.
    let src = env.pack_src(
        "src/bomb",
        "@eu/bomb",
        "1.0.0",
        &[("zeros", &vec![0u8; 900_000])],
    );
    env.hub(&["pack", "build", &src, "--out", &env.s("bomb.bundle")])
        .ok();
    let mut out = tar::Builder::new(Vec::new());
    let mut ar = tar::Archive::new(std::fs::File::open(env.path("bomb.bundle")).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
        if path == "index.json" {
            let mut index = bundles::index::BundleIndex::parse(&bytes, "bomb").unwrap();
            let entry = index
                .entries
                .iter_mut()
                .find(|e| e.path == "zeros")
                .unwrap();
            entry.chunks.truncate(1);
            entry.chunks[0].size = 1000;
            entry.size = 1000;
            bytes = index.to_canonical().unwrap();
        }
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        out.append_data(&mut h, &path, bytes.as_slice()).unwrap();
    }
    std::fs::write(env.path("bomb.bundle"), out.into_inner().unwrap()).unwrap();
    env.publish(&env.s("bomb.bundle"), &[]);
    env.export("bomb", &["--only", "@eu/bomb"]);
    refused(&env, "bomb", "decompression_bomb");
}

#[test]
fn key_rotation_is_followed_by_old_and_new_spokes() {
    let env = baseline();
    let rot = env.rotate("root").ok();
    assert_eq!(rot["root_version"], 2);
    let rot = env.rotate("targets").ok();
    assert_eq!(rot["root_version"], 3);
    publish_v2(&env);
    env.export("m2", &[]);
    let r = env.import("d", "m2").ok();
    assert_eq!(r["root_version"], 3);
    // A spoke that only ever saw root version 1 follows the chain too.
    env.spoke_init("fresh");
    let r = env.import("fresh", "m2").ok();
    assert_eq!(r["root_version"], 3);
    assert_eq!(env.packs("fresh").len(), 2);
    // Retired keys are out of the key directory's active set.
    assert!(env.path("keys/retired").read_dir().unwrap().count() >= 2);
}

#[test]
fn two_of_three_root_keys() {
    let env = Env::new();
    env.init_repo(&["--root-keys", "3", "--root-threshold", "2"]);
    let src = env.pack_src("src", "@eu/t", "1.0.0", &[("f", b"1")]);
    env.build_publish(&src, "a.bundle", &[]);
    env.export("m1", &[]);
    env.spoke_init("d");
    env.import("d", "m1").ok();
    let root_keys: Vec<_> = std::fs::read_dir(env.path("keys/root"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(root_keys.len(), 3);
    // Two keys lost: a new root cannot reach the old threshold.
    let stash = env.path("stash");
    std::fs::create_dir(&stash).unwrap();
    for k in &root_keys[..2] {
        std::fs::rename(k, stash.join(k.file_name().unwrap())).unwrap();
    }
    let msg = env.rotate("root").fails_with("keys");
    assert!(msg.contains("old root keys"), "{msg}");
    assert!(
        !env.path("repo/metadata/2.root.json").exists(),
        "a refused rotation writes nothing"
    );
    // One key lost: 2 of 3 remain; the rotation replaces the lost key.
    let k = &root_keys[1];
    std::fs::rename(stash.join(k.file_name().unwrap()), k).unwrap();
    let rot = env.rotate("root").ok();
    assert_eq!(rot["retired"].as_array().unwrap().len(), 1);
    env.export("m2", &[]);
    assert_eq!(env.import("d", "m2").ok()["root_version"], 2);

    // A new root carrying only one of the two required old signatures is refused.
    let rot = env.rotate("root").ok();
    assert_eq!(rot["root_version"], 3);
    env.export("m3", &[]);
    let old_ids: Vec<String> = {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(env.path("m3/metadata/2.root.json")).unwrap())
                .unwrap();
        v["signed"]["roles"]["root"]["keyids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    };
    let mut dropped = false;
    edit_json(&env.path("m3/metadata/3.root.json"), |v| {
        let sigs = v["signatures"].as_array_mut().unwrap();
        let first_old = sigs
            .iter()
            .position(|s| old_ids.contains(&s["keyid"].as_str().unwrap().to_string()))
            .unwrap();
        sigs.remove(first_old);
        let still_old = sigs
            .iter()
            .filter(|s| old_ids.contains(&s["keyid"].as_str().unwrap().to_string()))
            .count();
        if still_old >= 2 {
            let next = sigs
                .iter()
                .position(|s| old_ids.contains(&s["keyid"].as_str().unwrap().to_string()))
                .unwrap();
            sigs.remove(next);
        }
        dropped = true;
    });
    assert!(dropped);
    refused(&env, "m3", "threshold_not_met");
}

#[test]
fn encrypted_media_open_only_for_their_spoke() {
    let env = baseline();
    let other = env.spoke_init("other");
    let me = env.spoke(&["identity", "--data", &env.s("d")]).ok();
    publish_v2(&env);
    let rep = env.export(
        "enc",
        &["--recipient", me["age_recipient"].as_str().unwrap()],
    );
    assert_eq!(rep["encrypted"], true);
    // Nothing readable on the stick: no metadata, no chunk names, no pack names.
    let listing: Vec<String> = std::fs::read_dir(env.path("enc"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        listing
            .iter()
            .all(|n| n == "medium.json" || n.starts_with("payload.")),
        "{listing:?}"
    );
    let blob = std::fs::read(env.path("enc/payload.000.age")).unwrap();
    assert!(
        !blob.windows(9).any(|w| w == b"annex-dat"),
        "pack names must not be visible"
    );

    let before = snapshot(&env.path("other"));
    env.import("other", "enc").fails_with("not_for_this_spoke");
    assert_same(&before, &snapshot(&env.path("other")));
    assert!(other["did"].as_str().unwrap().starts_with("did:key:z6Mk"));

    let r = env.import("d", "enc").ok();
    assert_eq!(r["installed"].as_array().unwrap().len(), 1);
}

#[test]
fn offline_delta_carries_only_missing_chunks() {
    let env = baseline();
    env.spoke(&[
        "inventory",
        "--data",
        &env.s("d"),
        "--out",
        &env.s("have.json"),
    ])
    .ok();
    // v1.0.1: the same data with a small edit in the middle.
    let mut data = payload(400_000, 1);
    for b in &mut data[200_000..200_050] {
        *b = b'#';
    }
    let src = env.pack_src(
        "src/v101",
        "@eu/annex-data",
        "1.0.1",
        &[("tables/annex.txt", &data), ("README", b"sample")],
    );
    env.build_publish(&src, "v101.bundle", &[]);
    let full = env.export("full", &["--only", "@eu/annex-data"]);
    let delta = env.export(
        "delta",
        &["--only", "@eu/annex-data", "--have", &env.s("have.json")],
    );
    let (fc, dc) = (
        full["chunks"].as_u64().unwrap(),
        delta["chunks"].as_u64().unwrap(),
    );
    assert!(
        dc >= 1 && dc * 3 <= fc,
        "delta carries {dc} chunks, full {fc}"
    );
    assert_eq!(
        delta["chunks"].as_u64().unwrap() + delta["chunks_skipped"].as_u64().unwrap(),
        fc
    );
    env.import("d", "delta").ok();
    let packs = env.packs("d");
    let v101 = packs.iter().find(|p| p.1 == "1.0.1").unwrap();
    let hex = v101.2.trim_start_matches("sha256:");
    assert_eq!(
        std::fs::read(env.path(&format!("d/bundles/{hex}/tables/annex.txt"))).unwrap(),
        data
    );
    // A spoke without the old chunks cannot use the delta.
    env.spoke_init("blank");
    env.import("blank", "delta").fails_with("truncated");
}

#[test]
fn uninitialised_data_dir_and_bad_trust_root_get_clear_errors() {
    let env = baseline();
    let msg = env
        .spoke(&["packs", "--data", &env.s("nowhere")])
        .fails_with("data_dir");
    assert!(msg.contains("spoke init"), "{msg}");
    std::fs::write(env.path("bad-root.json"), b"{\"signed\": {}}").unwrap();
    env.spoke(&[
        "init",
        "--data",
        &env.s("d2"),
        "--trust",
        &env.s("bad-root.json"),
    ])
    .fails_with("invalid");
    assert!(!env.path("d2").exists());
}

#[test]
fn a_failed_export_leaves_nothing_behind() {
    let env = baseline();
    let (repo, to) = (env.s("repo"), env.s("x"));
    let msg = env
        .hub(&[
            "export",
            "--repo",
            &repo,
            "--to",
            &to,
            "--only",
            "@eu/no-such-pack",
        ])
        .fails_with("not_found");
    assert!(msg.contains("@eu/no-such-pack"), "{msg}");
    assert!(!env.path("x").exists() && !env.path("x.partial").exists());
    env.hub(&[
        "export",
        "--repo",
        &repo,
        "--to",
        &to,
        "--recipient",
        "age1notarecipient",
    ])
    .fails_with("invalid");
    assert!(!env.path("x").exists() && !env.path("x.partial").exists());
    let msg = env
        .hub(&["export", "--repo", &repo, "--to", &env.s("m1")])
        .fails_with("invalid");
    assert!(msg.contains("already exists"), "{msg}");
}
