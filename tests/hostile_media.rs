//! Hostile media (issue #18): a medium where a regular file is replaced by a
//! FIFO, a symlink to a device, a huge sparse file or a directory is refused
//! by name, quickly, with a non-zero exit, and leaves the spoke's data
//! directory unchanged; a genuine medium still imports afterwards.

mod common;

use common::{assert_same, chunk_files, snapshot, Env};
use std::path::Path;
use std::process::Command;

/// A repository with one published pack, a fresh medium `m` and a spoke `d`
/// that has imported nothing yet (so every chunk is read from the medium).
fn setup() -> Env {
    let env = Env::new();
    env.one_pack_medium(400_000, 7);
    env.spoke_init("d");
    env
}

/// Runs `spoke import` on `medium` under a 60 s watchdog (`timeout`, so a
/// hang fails the test instead of blocking it), expects refusal with `kind`
/// and an unchanged data directory; returns the message.
fn refused(env: &Env, medium: &Path, kind: &str) -> String {
    let before = snapshot(&env.path("d"));
    let out = Command::new("timeout")
        .args([
            "60",
            env!("CARGO_BIN_EXE_spoke"),
            "--json",
            "import",
            "--data",
        ])
        .arg(env.path("d"))
        .arg(medium)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(124), "spoke import hung on {kind}");
    let msg = common::Run { out }.fails_with(kind);
    assert_same(&before, &snapshot(&env.path("d")));
    msg
}

fn replace_with_fifo(path: &Path) {
    std::fs::remove_file(path).unwrap();
    mkfifo(path);
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(st.success());
}

#[test]
fn hostile_files_on_a_medium_are_refused_and_a_genuine_one_still_imports() {
    let env = setup();
    let medium = env.path("m");
    let chunk = chunk_files(&medium)[0].clone();
    let saved = std::fs::read(&chunk).unwrap();

    // A FIFO in place of a chunk: no writer ever comes, so opening it
    // blocking would wait forever.
    replace_with_fifo(&chunk);
    let msg = refused(&env, &medium, "not_regular");
    assert!(msg.contains("(fifo)"), "{msg}");
    assert!(msg.contains(&chunk.display().to_string()), "{msg}");
    std::fs::remove_file(&chunk).unwrap();

    // A symlink to /dev/zero: endless bytes.
    std::os::unix::fs::symlink("/dev/zero", &chunk).unwrap();
    let msg = refused(&env, &medium, "not_regular");
    assert!(msg.contains("(symlink)"), "{msg}");
    std::fs::remove_file(&chunk).unwrap();

    // A directory where the chunk file should be.
    std::fs::create_dir(&chunk).unwrap();
    let msg = refused(&env, &medium, "not_regular");
    assert!(msg.contains("(directory)"), "{msg}");
    std::fs::remove_dir(&chunk).unwrap();
    std::fs::write(&chunk, &saved).unwrap();

    // A 2 GiB sparse timestamp.json (unsigned until read: capped by size).
    let ts = medium.join("metadata/timestamp.json");
    let ts_saved = std::fs::read(&ts).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&ts)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let msg = refused(&env, &medium, "too_large");
    assert!(msg.contains("timestamp.json"), "{msg}");
    std::fs::write(&ts, &ts_saved).unwrap();

    // A FIFO as timestamp.json and as medium.json.
    replace_with_fifo(&ts);
    let msg = refused(&env, &medium, "not_regular");
    assert!(
        msg.contains("timestamp.json") && msg.contains("(fifo)"),
        "{msg}"
    );
    std::fs::remove_file(&ts).unwrap();
    std::fs::write(&ts, &ts_saved).unwrap();
    let info = medium.join("medium.json");
    let info_saved = std::fs::read(&info).unwrap();
    replace_with_fifo(&info);
    let msg = refused(&env, &medium, "not_regular");
    assert!(msg.contains("medium.json"), "{msg}");
    std::fs::remove_file(&info).unwrap();
    std::fs::write(&info, &info_saved).unwrap();

    // The genuine medium, restored, installs.
    let out = env.import("d", "m").ok();
    assert_eq!(out["installed"].as_array().unwrap().len(), 1, "{out}");
    let packs = env.packs("d");
    assert_eq!(packs.len(), 1);
}
