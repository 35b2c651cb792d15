//! Crash consistency: `spoke import` killed with SIGKILL at twenty points
//! spread over its run leaves the old state or the new one, never a mix; the
//! audit chain verifies every time, and a later import completes.

mod common;

use common::{payload, Env};
use std::process::{Command, Stdio};
use std::time::Instant;

fn import(env: &Env, data: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_spoke"))
        .args(["--json", "import", "--data", &env.s(data), &env.s("usb")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn kill_9_during_import_leaves_old_or_new_state() {
    let env = Env::new();
    env.publish_examples();
    let big = payload(24 * 1024 * 1024, 7);
    let src = env.pack_src(
        "src/big",
        "@data/big-reference",
        "1.0.0",
        &[("data/reference.txt", &big)],
    );
    env.build_publish(&src, "big.bundle", &[]);
    env.export("usb", &[]);
    let all = 6;

    // How long an undisturbed import takes here, to spread the kills over it.
    env.spoke_init("timing");
    let start = Instant::now();
    assert!(import(&env, "timing").wait().unwrap().success());
    let full = start.elapsed();

    let mut outcomes = Vec::new();
    let mut resumed = 0;
    for i in 0..20u32 {
        let data = format!("d{i}");
        env.spoke_init(&data);
        let mut child = import(&env, &data);
        // Kill points from the start to past the end of an undisturbed run.
        std::thread::sleep(full * 3 * i / 40);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();

        // The store opens, the audit chain verifies, and the packs are all or nothing.
        env.spoke(&["audit", "verify", "--data", &env.s(&data)])
            .ok();
        let installed = env.packs(&data).len();
        assert!(
            installed == 0 || installed == all,
            "run {i}: {installed} packs after kill"
        );
        let status = env.spoke(&["status", "--data", &env.s(&data)]).ok();
        let active = status["active_packs"].as_array().unwrap().len();
        assert!(
            active == 0 || active == all,
            "run {i}: {active} active packs"
        );
        outcomes.push(installed);

        // Importing again completes whatever was interrupted, reusing every
        // chunk the killed run had verified, and clears what it left behind.
        let staged_dir = env.path(&format!("{data}/staging/verified-chunks"));
        let staged = if staged_dir.exists() {
            common::snapshot(&staged_dir)
                .keys()
                .filter(|p| p.extension().is_some_and(|e| e == "zst"))
                .count()
        } else {
            0
        };
        let again = env.import(&data, "usb").ok();
        if installed == 0 {
            assert_eq!(again["resumed_chunks"], staged, "run {i}");
            resumed += staged;
        }
        let leftovers: Vec<String> = std::fs::read_dir(env.path(&format!("{data}/staging")))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "run {i}: {leftovers:?}");
        assert_eq!(env.packs(&data).len(), all, "run {i}");
        env.spoke(&["audit", "verify", "--data", &env.s(&data)])
            .ok();
        let installed_big = env.path(&format!("{data}/bundles"));
        assert!(installed_big.is_dir());
    }
    assert!(
        outcomes.contains(&0),
        "some kill landed before the commit: {outcomes:?}"
    );
    eprintln!(
        "packs installed at each kill: {outcomes:?} (undisturbed import {full:?}); {resumed} chunks resumed"
    );
}
