//! A medium's signed metadata: the genuine medium named by `FUZZ_MEDIUM`
//! (made by `ci/fuzz.sh` with the hub) with one of its metadata files
//! replaced by the input (the first byte picks which), verified against the
//! genuine root as `spoke import` does.
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

const FILES: [&str; 5] = [
    "root.json",
    "1.root.json",
    "timestamp.json",
    "3.snapshot.json",
    "3.targets.json",
];

struct Medium {
    _dir: tempfile::TempDir,
    metadata: PathBuf,
    originals: Vec<Vec<u8>>,
    trust: bundles::verify::TrustState,
}

fn medium() -> &'static Medium {
    static M: OnceLock<Medium> = OnceLock::new();
    M.get_or_init(|| {
        let from = PathBuf::from(std::env::var("FUZZ_MEDIUM").expect("FUZZ_MEDIUM names a medium"));
        let dir = tempfile::tempdir().expect("a scratch directory");
        let metadata = dir.path().join("metadata");
        std::fs::create_dir_all(&metadata).expect("metadata dir");
        let originals: Vec<Vec<u8>> = FILES
            .iter()
            .map(|f| std::fs::read(from.join("metadata").join(f)).expect("the medium's metadata"))
            .collect();
        for (f, bytes) in FILES.iter().zip(&originals) {
            std::fs::write(metadata.join(f), bytes).expect("copy");
        }
        let trust = bundles::verify::TrustState::from_root(&originals[0], "root.json")
            .expect("genuine root");
        Medium {
            _dir: dir,
            metadata,
            originals,
            trust,
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = data.split_first() else {
        return;
    };
    let m = medium();
    let i = usize::from(*which) % FILES.len();
    let path = m.metadata.join(FILES[i]);
    std::fs::write(&path, bytes).expect("write the input");
    let _ = bundles::verify::verify_repository(
        m.metadata.parent().expect("medium dir"),
        &m.trust,
        &bundles::verify::Policy::sneakernet(),
    );
    std::fs::write(&path, &m.originals[i]).expect("restore");
});
