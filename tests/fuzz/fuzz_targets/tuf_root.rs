//! A root.json given to `spoke init --trust`: parsed, judged, self-verified.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = bundles::verify::TrustState::from_root(data, "fuzz");
});
