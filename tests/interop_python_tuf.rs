//! Interoperability: python-tuf's reference client (`tuf.ngclient`) refreshes
//! against `hub serve` on 127.0.0.1, over HTTP and over HTTPS, and downloads a
//! target byte for byte; the server refuses writes.

mod common;

use common::Env;
use std::process::Command;

/// `hub serve` on the test repository; killed when the test ends, pass or fail.
fn serve(env: &Env, tls: &[&str]) -> (common::Child, String) {
    env.hub_serve(tls)
}

fn fetch(env: &Env, base: &str, outdir: &str, extra: &[&str]) -> serde_json::Value {
    let list = env.hub(&["list", "--repo", &env.s("repo")]).ok();
    let target = list[0]["target"].as_str().unwrap().to_string();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/ngclient_fetch.py"
    );
    let out = Command::new("python3")
        .args([
            script,
            base,
            &env.s("repo/metadata/1.root.json"),
            &target,
            &env.s(outdir),
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ngclient failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cid = list[0]["cid"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    assert_eq!(
        v["sha256"], cid,
        "ngclient got different bytes than the hub signed"
    );
    let on_disk = std::fs::read(env.path(&format!("repo/targets/{cid}.{target}"))).unwrap();
    assert_eq!(std::fs::read(v["path"].as_str().unwrap()).unwrap(), on_disk);
    assert_eq!(
        v["post_status"], 405,
        "the repository server must be read-only"
    );
    v
}

fn repo_with_a_pack() -> Env {
    let env = Env::new();
    env.init_repo(&[]);
    let src = env.pack_src("src", "@interop/demo", "1.0.0", &[("data.txt", b"interop")]);
    env.build_publish(&src, "p.bundle", &[]);
    // A rotated root makes ngclient walk the chain as well.
    env.rotate("root").ok();
    env
}

#[test]
fn ngclient_downloads_a_target_over_http() {
    if !common::python_has("tuf.ngclient", "tuf") {
        eprintln!("skipped: python-tuf not installed");
        return;
    }
    let env = repo_with_a_pack();
    let (_server, base) = serve(&env, &[]);
    assert!(base.starts_with("http://127.0.0.1:"));
    fetch(&env, &base, "client", &[]);
}

#[test]
fn ngclient_downloads_a_target_over_https() {
    if !common::python_has("tuf.ngclient", "tuf") {
        eprintln!("skipped: python-tuf not installed");
        return;
    }
    let env = repo_with_a_pack();
    env.test_cert();
    let (_server, base) = serve(
        &env,
        &[
            "--tls-cert",
            &env.s("cert.pem"),
            "--tls-key",
            &env.s("key.pem"),
        ],
    );
    let base = base.replace("http://", "https://");
    fetch(&env, &base, "client", &["--cafile", &env.s("ca.pem")]);
}
