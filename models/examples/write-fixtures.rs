//! Writes the tiny random-weight GGUF generator the tests use into a
//! directory, as the GGUF fuzzer's seed (`ci/fuzz.sh`):
//! `cargo run -p models --features fixtures --example write-fixtures -- DIR`.

fn main() -> std::process::ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: write-fixtures DIR");
        return std::process::ExitCode::from(2);
    };
    let dir = std::path::Path::new(&dir);
    for (name, context, seed) in [("tiny-64.gguf", 64, 1), ("tiny-512.gguf", 512, 2)] {
        if let Err(e) = models::fixtures::write_tiny_generator(&dir.join(name), context, seed) {
            eprintln!("write-fixtures: {}: {e}", dir.join(name).display());
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}
