//! A bundle index (`targets/<sha>.<name>.json` on a medium or mirror).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = bundles::index::BundleIndex::parse(data, "fuzz");
});
