//! A GGUF model file's header, as `models::inspect` reads it before any
//! weight is loaded (at import and at activation): the header parsed, then
//! every tensor checked against the file's length, the architecture, the
//! vocabulary and the context length. Any input must end in a summary or
//! an error, never a panic or an allocation the file's size cannot back.
#![no_main]
use std::sync::OnceLock;

fn scratch() -> &'static (tempfile::TempDir, std::path::PathBuf) {
    static S: OnceLock<(tempfile::TempDir, std::path::PathBuf)> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let file = dir.path().join("model.gguf");
        (dir, file)
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (_, file) = scratch();
    std::fs::write(file, data).expect("the input file");
    if let Ok(summary) = models::inspect(file) {
        assert!(
            summary.context_length > 0 && !summary.stored.is_empty(),
            "a header without tensors or context passed: {summary:?}"
        );
    }
});
