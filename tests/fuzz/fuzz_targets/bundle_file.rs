//! A bundle file (the tar `hub pack build` writes): every entry checked,
//! every chunk verified into a store, the index last.
#![no_main]
use std::sync::OnceLock;

struct Scratch {
    _dir: tempfile::TempDir,
    file: std::path::PathBuf,
    store: std::path::PathBuf,
}

fn scratch() -> &'static Scratch {
    static S: OnceLock<Scratch> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a scratch directory");
        Scratch {
            file: dir.path().join("in.bundle"),
            store: dir.path().join("store"),
            _dir: dir,
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let s = scratch();
    let _ = std::fs::remove_dir_all(&s.store);
    std::fs::create_dir_all(&s.store).expect("the chunk store");
    std::fs::write(&s.file, data).expect("the input file");
    let _ = bundles::bundle_file::read_bundle_file(
        &s.file,
        &bundles::chunks::ChunkStore::new(&s.store),
    );
});
