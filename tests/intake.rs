//! While `spoke serve` runs, bundles come in by themselves: a medium that
//! appears in the watched directory is verified and imported, and a
//! configured hub is pulled on a schedule; both through the same checks.

mod common;

use common::{Child, Env};
use std::time::{Duration, Instant};

fn serve(env: &Env, extra: &[&str]) -> Child {
    env.spoke_serve(&env.s("spoke"), extra).0
}

/// Polls until the spoke has `n` packs, or fails after a generous deadline.
fn wait_for_packs(env: &Env, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.packs("spoke").len() < n {
        assert!(Instant::now() < deadline, "the packs never arrived");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_medium_appearing_in_the_watched_directory_is_imported() {
    let env = Env::new();
    env.publish_examples();
    env.spoke_init("spoke");
    std::fs::create_dir_all(env.path("media")).unwrap();
    let _server = serve(&env, &["--watch", &env.s("media"), "--watch-every", "1"]);
    // `hub export` writes `*.partial` and renames it when complete.
    env.export("media/stick", &[]);
    wait_for_packs(&env, 5);
    let changes = env
        .spoke(&["changes", "list", "--data", &env.s("spoke")])
        .ok();
    assert_eq!(changes[0]["status"], "applied");
    env.spoke(&["audit", "verify", "--data", &env.s("spoke")])
        .ok();
}

#[test]
fn serve_pulls_from_the_hub_on_a_schedule() {
    let env = Env::new();
    env.publish_examples();
    env.spoke_init("spoke");
    let (_hub, url) = env.hub_serve(&[]);
    let _server = serve(&env, &["--sync-from", &url]);
    wait_for_packs(&env, 5);
    env.spoke(&["audit", "verify", "--data", &env.s("spoke")])
        .ok();
}

/// Inputs the `documents` fuzzer found (ci/fuzz.sh): one makes the PDF
/// parser (pdf-extract 0.9.0) panic, one keeps it busy past any deadline.
/// The spoke reads PDFs in a limited child process, so both are refused as
/// unreadable, nothing is stored, and the spoke goes on.
#[test]
fn pdfs_that_break_the_parser_are_refused_and_nothing_is_stored() {
    let env = Env::new();
    let d = env.sample_spoke("spoke");
    let fixtures = common::root().join("tests/fixtures/pdf");
    let docs = |env: &Env| env.spoke(&["doc", "list", "--data", &d]).ok();
    let before = docs(&env);
    for name in ["parser-panic.pdf", "parser-hang.pdf"] {
        let msg = env
            .doc_add(&d, "sds", None, None, &fixtures.join(name))
            .fails_with("unreadable");
        assert!(
            msg.contains(name) && msg.contains("could not be read"),
            "{name}: {msg}"
        );
        assert_eq!(docs(&env), before, "{name} left a document behind");
    }
    env.doc_add(
        &d,
        "sds",
        None,
        None,
        &common::root().join("bundles/examples/samples/hydra-serum-cpsr.txt"),
    )
    .ok();
}
