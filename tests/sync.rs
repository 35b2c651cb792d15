//! Pull-only sync: a spoke pulls from `hub serve` over HTTPS (pinned CA) or
//! from a plain static mirror, through the same verification as a medium;
//! an interrupted sync resumes without fetching verified chunks again, and a
//! tampered mirror installs nothing.

mod common;

use common::{Child, Env};
use std::io::BufRead;
use std::process::{Command, Stdio};

fn installed(v: &serde_json::Value) -> usize {
    v["installed"].as_array().unwrap().len()
}

#[test]
fn sync_over_https_installs_then_fetches_only_metadata() {
    let env = Env::new();
    env.publish_examples();
    env.test_cert();
    let (_server, url) = env.hub_serve(&[
        "--tls-cert",
        &env.s("cert.pem"),
        "--tls-key",
        &env.s("key.pem"),
    ]);
    let url = url.replace("http://", "https://");
    env.spoke_init("spoke");
    let d = env.s("spoke");

    // Without the pinned CA the self-signed hub is not trusted.
    env.spoke(&["sync", "--data", &d, "--from", &url, "--retries", "0"])
        .fails_with("fetch");
    // Plain HTTP is refused unless the mirror is on loopback.
    let msg = env
        .spoke(&[
            "sync",
            "--data",
            &d,
            "--from",
            "http://hub.example.com/repo",
        ])
        .fails_with("fetch");
    assert!(msg.contains("use https://"), "{msg}");

    let ca = env.s("ca.pem");
    let sync = || {
        env.spoke(&["sync", "--data", &d, "--from", &url, "--ca", &ca])
            .ok()
    };
    let first = sync();
    assert_eq!(installed(&first), 5);
    assert_eq!(first["change"]["mode"], "no_data");
    assert_eq!(env.packs("spoke").len(), 5);
    let again = sync();
    assert_eq!(installed(&again), 0);
    assert_eq!(
        again["fetched_files"], 3,
        "timestamp, snapshot and targets only"
    );
    env.spoke(&["audit", "verify", "--data", &d]).ok();
}

struct Mirror {
    _child: Child,
    url: String,
    log: std::path::PathBuf,
}

fn mirror(env: &Env, root: &str, fail_after: usize) -> Mirror {
    let log = env.path("mirror.log");
    let mut child = Command::new("python3")
        .arg(common::root().join("tests/support/flaky_mirror.py"))
        .args([
            root,
            &log.display().to_string(),
            &env.s("fail"),
            &fail_after.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    Mirror {
        _child: Child(child),
        url: format!("http://127.0.0.1:{}", port.trim()),
        log,
    }
}

fn chunk_requests(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("/chunks/"))
        .map(String::from)
        .collect()
}

#[test]
fn an_interrupted_sync_resumes_without_fetching_verified_chunks_again() {
    let env = Env::new();
    env.publish_examples();
    env.spoke_init("spoke");
    let d = env.s("spoke");
    std::fs::write(env.path("fail"), b"").unwrap();
    let m = mirror(&env, &env.s("repo"), 4);
    let before = common::snapshot(&env.path("spoke/db"));
    env.spoke(&["sync", "--data", &d, "--from", &m.url, "--retries", "0"])
        .fails_with("fetch");
    common::assert_same(&before, &common::snapshot(&env.path("spoke/db")));
    let first = chunk_requests(&m.log);
    let fetched: Vec<String> = first[..4].to_vec();

    std::fs::remove_file(env.path("fail")).unwrap();
    std::fs::write(&m.log, b"").unwrap();
    let done = env.spoke(&["sync", "--data", &d, "--from", &m.url]).ok();
    assert_eq!(installed(&done), 5);
    assert_eq!(done["resumed_chunks"], 4);
    let second = chunk_requests(&m.log);
    for c in &fetched {
        assert!(!second.contains(c), "{c} was fetched again");
    }
    env.spoke(&["audit", "verify", "--data", &d]).ok();
}

#[test]
fn a_tampered_mirror_installs_nothing() {
    let env = Env::new();
    env.publish_examples();
    // A mirror whose copy of one chunk was altered.
    let copy = env.path("evil");
    let st = Command::new("cp")
        .args(["-r", &env.s("repo"), &copy.display().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let chunk = walk(&copy.join("chunks")).into_iter().next().unwrap();
    let mut bytes = std::fs::read(&chunk).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&chunk, bytes).unwrap();
    let m = mirror(&env, &copy.display().to_string(), 0);
    env.spoke_init("spoke");
    let before = common::snapshot(&env.path("spoke/db"));
    env.spoke(&["sync", "--data", &env.s("spoke"), "--from", &m.url])
        .fails_with("digest_mismatch");
    common::assert_same(&before, &common::snapshot(&env.path("spoke/db")));
    assert!(env.packs("spoke").is_empty());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Any static web server is a mirror, even one run by another user: the
/// hub's repository files are world-readable (keys stay private), so
/// Python's `http.server` as `nobody` serves everything a sync needs.
#[test]
fn a_static_server_run_by_another_user_is_a_mirror() {
    if !Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
    {
        eprintln!("skipped: serving as another user needs root (CI runs as root)");
        return;
    }
    let env = Env::new();
    env.publish_examples();
    // The test's own directory is private (a tempdir); open the way in.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut server = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .args([
            "/usr/bin/python3",
            "-u",
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
        ])
        .arg("--directory")
        .arg(env.path("repo"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _server = Child(server);
    // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
    let port = line
        .split_whitespace()
        .skip_while(|w| *w != "port")
        .nth(1)
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    env.spoke_init("spoke");
    let r = env
        .spoke(&[
            "sync",
            "--data",
            &env.s("spoke"),
            "--from",
            &format!("http://127.0.0.1:{port}/"),
            "--retries",
            "0",
        ])
        .ok();
    let packs = std::fs::read_dir(common::root().join("bundles/examples/packs"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("pack.json").is_file())
        .count();
    assert_eq!(installed(&r), packs, "{r}");
}
