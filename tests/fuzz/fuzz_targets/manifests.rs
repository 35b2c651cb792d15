//! The manifests inside bundles: the first byte picks `pack.json`,
//! `model.json` or a product manifest (YAML).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => drop(bundles::manifest::PackManifest::parse(bytes, "fuzz")),
        1 => drop(bundles::manifest::ModelManifest::parse(bytes, "fuzz")),
        _ => drop(bundles::manifest::ProductManifest::parse_yaml(
            bytes, "fuzz",
        )),
    }
});
