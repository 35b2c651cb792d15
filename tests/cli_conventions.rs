//! Unix conventions of both binaries (issue #24): a closed pipe ends them
//! quietly, and what the hub publishes is readable by any user.

mod common;

use common::Env;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// The write end of a pipe whose read end is already closed: every write to
/// it fails with EPIPE, as when `| head -1` has exited.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) returns, which
    // are then owned by exactly one OwnedFd each.
    let (r, w) = unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    };
    drop(r);
    Stdio::from(w)
}

/// Runs `bin args` with stdout into a closed pipe; asserts it neither
/// panicked nor exited 101, and ended by SIGPIPE or with an error exit.
fn quiet_on_closed_pipe(bin: &str, args: &[&str]) {
    let out = Command::new(bin)
        .args(args)
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "{bin} {args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{bin} {args:?}: {stderr}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{bin} {args:?}: {stderr}"
    );
}

#[test]
fn both_binaries_exit_quietly_on_a_closed_pipe() {
    let env = Env::new();
    env.init_repo(&[]);
    env.spoke_init("d");
    let data = env.s("d");
    let spoke = env!("CARGO_BIN_EXE_spoke");
    quiet_on_closed_pipe(spoke, &["audit", "list", "--data", &data]);
    quiet_on_closed_pipe(spoke, &["--json", "audit", "list", "--data", &data]);
    let hub = env!("CARGO_BIN_EXE_hub");
    quiet_on_closed_pipe(hub, &["verify", &env.s("repo")]);
    quiet_on_closed_pipe(hub, &["--json", "verify", &env.s("repo")]);
}

/// Every file and directory below `dir` with its permission bits.
fn modes(dir: &Path, out: &mut Vec<(String, bool, u32)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let md = e.metadata().unwrap();
        out.push((
            e.path().display().to_string(),
            md.is_dir(),
            md.permissions().mode() & 0o777,
        ));
        if md.is_dir() {
            modes(&e.path(), out);
        }
    }
}

#[test]
fn repository_and_media_are_world_readable_and_keys_stay_private() {
    let env = Env::new();
    env.one_pack_medium(300_000, 3);
    let mut found = Vec::new();
    modes(&env.path("repo"), &mut found);
    modes(&env.path("m"), &mut found);
    assert!(found.iter().any(|(p, _, _)| p.contains("/chunks/")));
    let wrong: Vec<_> = found
        .iter()
        .filter(|(_, dir, mode)| {
            if *dir {
                mode & 0o555 != 0o555
            } else {
                *mode != 0o644
            }
        })
        .collect();
    assert!(wrong.is_empty(), "not world-readable: {wrong:?}");
    let mut keys = Vec::new();
    modes(&env.path("keys"), &mut keys);
    assert!(!keys.is_empty());
    let open: Vec<_> = keys
        .iter()
        .filter(|(_, _, mode)| mode & 0o077 != 0)
        .collect();
    assert!(open.is_empty(), "keys readable by others: {open:?}");
}

#[test]
fn argument_errors_are_json_under_json_and_missing_paths_are_not_found() {
    let env = Env::new();
    for (bin, sub) in [
        (env!("CARGO_BIN_EXE_hub"), "list"),
        (env!("CARGO_BIN_EXE_spoke"), "status"),
    ] {
        let out = Command::new(bin)
            .args(["--json", sub, "--no-such-flag"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bin}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let v: serde_json::Value = serde_json::from_str(stderr.trim())
            .unwrap_or_else(|e| panic!("{bin}: not one JSON object ({e}): {stderr}"));
        assert_eq!(v["error"]["kind"], "usage", "{bin}: {v}");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--no-such-flag"));
        // Without --json, clap's own text; --help still prints help.
        let plain = Command::new(bin)
            .args([sub, "--no-such-flag"])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&plain.stderr).starts_with("error:"),
            "{bin}"
        );
        let help = Command::new(bin)
            .args(["--json", "--help"])
            .output()
            .unwrap();
        assert!(help.status.success() && String::from_utf8_lossy(&help.stdout).contains("Usage:"));
    }
    env.init_repo(&[]);
    env.spoke_init("d");
    let msg = env
        .spoke(&["import", "--data", &env.s("d"), &env.s("no-such-stick")])
        .fails_with("not_found");
    assert!(
        msg.contains("no-such-stick") && msg.contains("no such directory"),
        "{msg}"
    );
}

#[test]
fn completions_and_man_pages_come_from_the_real_commands() {
    let env = Env::new();
    for (bin, name, sub) in [
        (env!("CARGO_BIN_EXE_hub"), "hub", "export"),
        (env!("CARGO_BIN_EXE_spoke"), "spoke", "import"),
    ] {
        for shell in ["bash", "zsh", "fish"] {
            let out = Command::new(bin)
                .args(["completions", shell])
                .output()
                .unwrap();
            assert!(out.status.success(), "{name} {shell}");
            let script = String::from_utf8_lossy(&out.stdout);
            assert!(
                script.contains(sub) && script.contains("json"),
                "{name} {shell}"
            );
        }
        let dir = env.path(&format!("man-{name}"));
        let pages = env_run(bin, &["--json", "man", "--out", dir.to_str().unwrap()]);
        let pages: Vec<String> = pages
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        assert!(pages.len() > 10, "{name}: {pages:?}");
        let page = std::fs::read_to_string(dir.join(format!("{name}-{sub}.1"))).unwrap();
        assert!(
            page.starts_with(".ie") || page.contains(".TH"),
            "{name}-{sub}.1 is roff"
        );
        assert!(
            !pages.iter().any(|p| p.contains("pdf-text")),
            "hidden internal commands get no page"
        );
    }
}

/// Runs `bin args` and parses its standard output as JSON.
fn env_run(bin: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
