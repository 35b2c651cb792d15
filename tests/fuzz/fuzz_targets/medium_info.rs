//! A medium's unsigned files: `medium.json` as `spoke import` opens it
//! (format check, then plain or encrypted; no identity here), and the chunk
//! inventory.
#![no_main]
use std::sync::OnceLock;

fn scratch() -> &'static tempfile::TempDir {
    static S: OnceLock<tempfile::TempDir> = OnceLock::new();
    S.get_or_init(|| tempfile::tempdir().expect("a scratch directory"))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = scratch().path();
    std::fs::write(dir.join("medium.json"), data).expect("write the input");
    let _ = bundles::medium::open_medium(dir, None, &dir.join("scratch"));
    let _ = bundles::medium::Inventory::parse(data, "fuzz");
});
