//! Architecture invariants from docs/ARCHITECTURE.md, checked as ordinary tests.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `[dependencies]` section of a crate's manifest (dev-dependencies excluded).
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps {
            if let Some((name, _)) = line.split_once(['=', '.']) {
                if !name.trim().is_empty() {
                    out.push(name.trim().to_string());
                }
            }
        }
    }
    out
}

fn forbid(krate: &str, forbidden: &[&str]) {
    let deps = dependencies(&root().join(krate).join("Cargo.toml"));
    for f in forbidden {
        assert!(
            !deps.iter().any(|d| d == f),
            "{krate} must not depend on {f} (docs/ARCHITECTURE.md)"
        );
    }
}

#[test]
fn bundles_knows_no_database_or_http_server() {
    forbid(
        "bundles",
        &[
            "rusqlite",
            "axum",
            "axum-server",
            "hyper",
            "tower-http",
            "appliance",
            "agent",
            "hub",
            "spoke",
        ],
    );
}

#[test]
fn agent_and_appliance_meet_only_at_a_trait() {
    forbid("agent", &["appliance", "rusqlite", "axum"]);
    forbid("appliance", &["agent", "bundles", "axum"]);
}

#[test]
fn the_kernel_can_do_no_io() {
    // Its manifest is the proof: no database, file-system, network, clock or
    // randomness crate can be called from the rules interpreter.
    let deps = dependencies(&root().join("appliance/kernel/Cargo.toml"));
    assert_eq!(deps, ["semver", "serde", "serde_json", "thiserror"]);
}

#[test]
fn search_is_derived_and_the_api_only_speaks_http() {
    forbid(
        "appliance/search",
        &[
            "rusqlite",
            "appliance",
            "kernel",
            "axum",
            "agent",
            "bundles",
        ],
    );
    forbid(
        "appliance/api",
        &["rusqlite", "agent", "bundles", "tantivy", "kernel"],
    );
}

#[test]
fn model_code_stays_out_of_the_stores_and_the_stores_out_of_model_code() {
    forbid("appliance", &["models", "gateway", "candle-core"]);
    forbid(
        "models",
        &[
            "appliance",
            "bundles",
            "rusqlite",
            "axum",
            "tantivy",
            "gateway",
        ],
    );
    forbid(
        "appliance/gateway",
        &["rusqlite", "axum", "ureq", "tantivy"],
    );
}

#[test]
fn the_image_builder_knows_no_appliance() {
    // It builds disks from files; what runs on them is its callers' business.
    forbid(
        "image",
        &[
            "appliance",
            "agent",
            "api",
            "spoke",
            "hub",
            "bundles",
            "kernel",
            "search",
            "rusqlite",
            "axum",
        ],
    );
}

#[test]
fn every_library_states_its_job() {
    for lib in [
        "bundles",
        "bundles/hub",
        "agent",
        "appliance",
        "appliance/api",
        "appliance/kernel",
        "appliance/search",
        "appliance/spoke",
        "appliance/gateway",
        "models",
        "image",
    ] {
        let text = std::fs::read_to_string(root().join(lib).join("src/lib.rs")).unwrap();
        assert!(
            text.starts_with("//! "),
            "{lib}/src/lib.rs must open with a //! doc comment stating its job"
        );
    }
}
