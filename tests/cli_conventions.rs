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
