//! The web console in a real browser: a spoke with the example packs, the
//! tiny Tier A models, the sample products and one user per role, and a
//! medium carrying a pack update that alters a verdict, served by the real
//! `spoke serve --media`; then `tests/console/console.test.mjs` drives Debian's chromium
//! through Playwright (an administrator previews and installs a medium,
//! then sign in, add a product, upload a document, evaluate and open the
//! trace, search, ask and open a citation, a viewer who cannot approve,
//! approving the change, audit verify, users, a backup, legal hold), checks the
//! console's Content-Security-Policy and runs axe-core on every page.
//! A second run starts from a spoke with nothing installed: an administrator
//! installs the licensed product from a medium and evaluates a formulation
//! through the console alone. Screenshots of each page land in
//! `target/console-screenshots/{everyday,first-install}/`.

mod common;

use common::{ai_spoke, annexes_upgrade, root, Env};
use std::path::PathBuf;
use std::process::Command;

const PASSWORD: &str = "a long enough passphrase";

const INSTALL: &str = "run `apt-get install chromium chromium-driver nodejs npm` and \
     `npm ci --prefix tests/console` (ci/test.sh does both)";

/// Whether node, the pinned npm packages and Debian's chromium are there;
/// when they are not, fails the test with what to install (CI installs
/// them) unless EUROCOMPLY_SKIP_BROWSER_TESTS=1 says to skip.
fn browser_ready() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let modules = root().join("tests/console/node_modules");
    let missing: Vec<&str> = [
        (!node).then_some("node"),
        (!chromium().is_file()).then_some("chromium"),
        (!modules.join("playwright-core/package.json").is_file()).then_some("playwright-core"),
        (!modules.join("axe-core/axe.min.js").is_file()).then_some("axe-core"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("EUROCOMPLY_SKIP_BROWSER_TESTS").as_deref() != Ok("1") {
        panic!(
            "the browser test needs {}: {INSTALL}, or set EUROCOMPLY_SKIP_BROWSER_TESTS=1",
            missing.join(", ")
        );
    }
    false
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// One browser run at a time: two would share the machine's two cores.
static BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `tests/console/SCRIPT` against the spoke at `url` with `extra`
/// environment variables; fails the test with its log unless it passes.
/// Returns the directory its screenshots went to,
/// `target/console-screenshots/NAME/`.
fn browse(script: &str, name: &str, url: &str, extra: &[(&str, &str)]) -> PathBuf {
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("console-screenshots")
        .join(name);
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new("node")
        .arg(root().join("tests/console").join(script))
        .env("CONSOLE_URL", url)
        .env("CONSOLE_PASSWORD", PASSWORD)
        .env("CONSOLE_SCREENSHOTS", &shots)
        .env("CHROMIUM", chromium())
        .envs(extra.iter().copied())
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{log}");
    assert!(out.status.success(), "the browser test failed:\n{log}");
    shots
}

#[test]
fn an_administrator_installs_the_product_from_a_medium_through_the_console() {
    if !browser_ready() {
        return;
    }
    let env = Env::new();
    env.publish_examples();
    let d = env.s("spoke");
    env.spoke_init("spoke");
    env.add_role_users(&d, PASSWORD);
    let manifest = root().join("bundles/examples/products/eurocomply-cosmetics.yaml");
    env.publish_licensed_product(&manifest, &d, "growth");
    env.export("media/eurocomply-cosmetics", &[]);
    let media = env.s("media");
    let (_server, url) = env.spoke_serve(&d, &["--rate-limit", "0", "--media", &media]);
    browse("first-install.test.mjs", "first-install", &url, &[]);

    let bundles = env.spoke(&["bundles", "--data", &d]).ok();
    assert_eq!(bundles.as_array().unwrap().len(), 6, "{bundles}");
    let serum = env
        .spoke(&["entity", "show", "--data", &d, "first-serum"])
        .ok();
    assert_eq!(serum["latest_evaluation"]["verdict"], "fail");
    assert_eq!(serum["latest_evaluation"]["actor"], "admin");
}

#[test]
fn the_console_works_in_a_real_browser_for_each_role() {
    if !browser_ready() {
        return;
    }
    let env = Env::new();
    let (d, _, _) = ai_spoke(&env);
    env.add_role_users(&d, PASSWORD);
    env.spoke(&["eval", "--data", &d, "--all"]).ok();
    // A new annexes release that turns the Hydra Serum from pass to fail,
    // on a medium in the media directory, for an administrator to import.
    let src = annexes_upgrade(
        &env,
        "2026.2.0",
        &[("Butylphenyl methylpropional (Lilial)", "80-54-6")],
    );
    env.build_publish(&src, "annexes-2026.2.0.bundle", &[]);
    env.export(
        "media/annexes-2026.2.0",
        &["--only", "@data/eu-cosmetics-annexes"],
    );

    let upload = env.s("toner-cpsr.txt");
    std::fs::write(
        &upload,
        "Cosmetic product safety report for the Console Toner. The toner is a \
         rinse-off product; its preservative is sodium benzoate at 0.5 percent.",
    )
    .unwrap();
    let backups = env.s("backups");
    let media = env.s("media");
    let (_server, url) = env.spoke_serve(
        &d,
        &[
            "--rate-limit",
            "0",
            "--media",
            &media,
            "--backup-to",
            &backups,
        ],
    );
    let shots = browse(
        "console.test.mjs",
        "everyday",
        &url,
        &[("CONSOLE_UPLOAD", &upload)],
    );

    // What the browser did is what the spoke recorded: the medium installed,
    // its change decided by the regulatory manager (never by the viewer),
    // the product and the document stored, the screenshots written.
    let packs = env.packs("spoke");
    assert!(packs.iter().any(|(_, v, _)| v == "2026.2.0"), "{packs:?}");
    // Newest first: the rollback proposed and rejected in the browser, then
    // the update it approved.
    let changes = env.spoke(&["changes", "list", "--data", &d]).ok();
    let decided: Vec<(&str, &str, &str)> = changes.as_array().unwrap()[..2]
        .iter()
        .map(|c| {
            (
                c["mode"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
                c["decided_by"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        decided,
        [
            ("rollback", "rejected", "regulatory_manager"),
            ("approval", "applied", "regulatory_manager")
        ],
        "{changes}"
    );
    let toner = env
        .spoke(&["entity", "show", "--data", &d, "console-toner"])
        .ok();
    assert_eq!(toner["entity"]["name"], "Console Toner");
    assert_eq!(toner["documents"][0]["filename"], "toner-cpsr.txt");
    assert_eq!(toner["latest_evaluation"]["actor"], "regulatory_manager");
    env.spoke(&["audit", "verify", "--data", &d]).ok();
    let listed = env.spoke(&["backups", &backups]).ok();
    assert!(listed.as_array().unwrap().len() >= 2, "{listed}");
    for page in [
        "sign-in",
        "import",
        "overview",
        "tablet",
        "products",
        "documents",
        "trace",
        "ask",
        "changes-viewer",
        "changes",
        "audit",
        "users",
        "backups",
        "legal-hold",
    ] {
        assert!(
            shots.join(format!("{page}.png")).is_file(),
            "no screenshot of {page}"
        );
    }
}
