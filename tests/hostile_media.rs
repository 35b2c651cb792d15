//! Hostile media (issue #18): a medium where a regular file is replaced by a
//! FIFO, a socket, a device node, a symlink to a device, a huge sparse file,
//! a directory (or a directory by a file) or an unreadable file is refused by
//! name, quickly, with a non-zero exit, and leaves the spoke's data directory
//! unchanged; a genuine medium still imports afterwards, also from a
//! read-only mount, and the media watcher of `spoke serve` keeps working
//! after hostile sticks.

mod common;

use common::{assert_same, chunk_files, snapshot, Env};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

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
    refused_as(env, &[], medium, kind)
}

/// [`refused`], with the spoke started through `wrapper` (e.g. `setpriv`).
fn refused_as(env: &Env, wrapper: &[&str], medium: &Path, kind: &str) -> String {
    let before = snapshot(&env.path("d"));
    let out = Command::new("timeout")
        .arg("60")
        .args(wrapper)
        .args([env!("CARGO_BIN_EXE_spoke"), "--json", "import", "--data"])
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

    // A symlink to a file outside the medium (as to /etc/shadow): refused
    // as a link, never followed, so nothing about the target (not even its
    // size) reaches the message.
    let secret = env.path("outside-secret");
    std::fs::write(&secret, vec![b's'; 123_457]).unwrap();
    std::os::unix::fs::symlink(&secret, &chunk).unwrap();
    let msg = refused(&env, &medium, "not_regular");
    assert!(msg.contains("(symlink)"), "{msg}");
    assert!(
        !msg.contains("123457") && !msg.contains("outside-secret"),
        "{msg}"
    );
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

/// Whether this test runs as root (device nodes and mounts need it; CI does).
fn root() -> bool {
    // /proc/self belongs to the process's effective user.
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0
}

#[test]
fn sockets_devices_misplaced_directories_and_unreadable_files_are_refused() {
    let env = setup();
    let medium = env.path("m");
    let chunk = chunk_files(&medium)[0].clone();
    let saved = std::fs::read(&chunk).unwrap();

    // A listening Unix socket in place of a chunk.
    std::fs::remove_file(&chunk).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(&chunk).unwrap();
    let msg = refused(&env, &medium, "not_regular");
    assert!(msg.contains("(socket)"), "{msg}");
    drop(listener);
    std::fs::remove_file(&chunk).unwrap();

    // A character device (what /dev/zero is) in place of a chunk.
    if root() {
        let st = Command::new("mknod")
            .arg(&chunk)
            .args(["c", "1", "5"])
            .status()
            .unwrap();
        assert!(st.success());
        let msg = refused(&env, &medium, "not_regular");
        assert!(msg.contains("(character device)"), "{msg}");
        std::fs::remove_file(&chunk).unwrap();
    } else {
        eprintln!("not root: the device-node case is left to CI");
    }

    // A file where the chunk's directory should be.
    let chunk_dir = chunk.parent().unwrap().to_path_buf();
    let parked = env.path("parked");
    std::fs::rename(&chunk_dir, &parked).unwrap();
    std::fs::write(&chunk_dir, b"not a directory").unwrap();
    let msg = refused(&env, &medium, "io");
    assert!(msg.contains(&chunk.display().to_string()), "{msg}");
    std::fs::remove_file(&chunk_dir).unwrap();
    std::fs::rename(&parked, &chunk_dir).unwrap();
    std::fs::write(&chunk, &saved).unwrap();

    // A chunk nobody may read. Root reads anything, so the spoke runs
    // without the capabilities that bypass file permissions.
    let mut mode = std::fs::metadata(&chunk).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o000);
    std::fs::set_permissions(&chunk, mode.clone()).unwrap();
    let no_bypass = [
        "setpriv",
        "--bounding-set",
        "-dac_override,-dac_read_search",
        "--inh-caps",
        "-all",
    ];
    let msg = refused_as(&env, if root() { &no_bypass } else { &[] }, &medium, "io");
    assert!(
        msg.contains("Permission denied") && msg.contains(&chunk.display().to_string()),
        "{msg}"
    );
    std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o644);
    std::fs::set_permissions(&chunk, mode).unwrap();

    // The genuine medium installs, also from a read-only mount: the spoke
    // never writes to a medium.
    if root() {
        let ro = env.path("ro");
        std::fs::create_dir(&ro).unwrap();
        let mounted = Command::new("mount")
            .args(["--bind", "-o", "ro"])
            .arg(&medium)
            .arg(&ro)
            .status()
            .unwrap();
        assert!(mounted.success());
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = Command::new("umount").arg(self.0).status();
            }
        }
        let _unmount = Unmount(&ro);
        assert!(
            std::fs::write(ro.join("probe"), b"x").is_err(),
            "the mount is read-only"
        );
        let out = env.import("d", "ro").ok();
        assert_eq!(out["installed"].as_array().unwrap().len(), 1, "{out}");
    } else {
        eprintln!("not root: the read-only mount case is left to CI");
        env.import("d", "m").ok();
    }
    assert_eq!(env.packs("d").len(), 1);
}

#[test]
fn the_media_watcher_keeps_working_after_hostile_sticks() {
    let env = setup();
    let watched = env.path("usb");
    std::fs::create_dir(&watched).unwrap();
    let copy = |name: &str| {
        let to = watched.join(name);
        let st = Command::new("cp")
            .arg("-a")
            .arg(env.path("m"))
            .arg(&to)
            .status()
            .unwrap();
        assert!(st.success());
        to
    };
    // Sticks are looked at in name order: the hostile ones come first.
    let fifo = copy("a-fifo-chunk");
    replace_with_fifo(&chunk_files(&fifo)[0]);
    let giant = copy("b-giant-medium-json");
    std::fs::OpenOptions::new()
        .write(true)
        .open(giant.join("medium.json"))
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let devzero = copy("c-dev-zero-timestamp");
    std::fs::remove_file(devzero.join("metadata/timestamp.json")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", devzero.join("metadata/timestamp.json")).unwrap();
    copy("d-genuine");

    let (_server, _url) = env.spoke_serve(
        &env.s("d"),
        &["--watch", &env.s("usb"), "--watch-every", "1"],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.packs("d").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the genuine stick was never imported"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let bundles = env.spoke(&["bundles", "--data", &env.s("d")]).ok();
    assert_eq!(bundles.as_array().unwrap().len(), 1, "{bundles}");
    env.spoke(&["audit", "verify", "--data", &env.s("d")]).ok();
}
