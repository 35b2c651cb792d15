//! Computes the kernel build identity, pinned in every Compliance Lock:
//! `kernel/<crate version>+vm<VM_VERSION>+src.<digest>`, where the digest is
//! the first 16 hex characters of SHA-256 over the library's sources (every
//! `.rs` file under `src/` except the binaries in `src/bin/`), sorted by path
//! relative to `src/`, each hashed as path bytes, a 0 byte, content bytes.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn main() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    println!("cargo:rerun-if-changed=src");
    let mut files = Vec::new();
    collect(&src, &src.join("bin"), &mut files);
    let mut files: Vec<(String, PathBuf)> = files
        .into_iter()
        .map(|f| {
            let rel = f
                .strip_prefix(&src)
                .unwrap_or(&f)
                .to_string_lossy()
                .replace('\\', "/");
            (rel, f)
        })
        .collect();
    files.sort();
    let mut h = Sha256::new();
    for (rel, f) in &files {
        let content = std::fs::read(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        h.update(rel.as_bytes());
        h.update([0u8]);
        h.update(&content);
    }
    let digest = hex::encode(h.finalize());
    println!(
        "cargo:rustc-env=KERNEL_BUILD=kernel/{}+vm{}+src.{}",
        env!("CARGO_PKG_VERSION"),
        vm_version(&src.join("lib.rs")),
        &digest[..16]
    );
}

/// `VM_VERSION` as declared in `src/lib.rs`, so the two cannot disagree.
fn vm_version(lib: &Path) -> String {
    let text =
        std::fs::read_to_string(lib).unwrap_or_else(|e| panic!("reading {}: {e}", lib.display()));
    const DECL: &str = "pub const VM_VERSION: &str = \"";
    text.lines()
        .find_map(|l| l.trim().strip_prefix(DECL))
        .and_then(|rest| rest.split_once('"'))
        .map(|(v, _)| v.to_string())
        .unwrap_or_else(|| panic!("{}: no `{DECL}...\";` line", lib.display()))
}

fn collect(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
    for e in entries {
        let p = e
            .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
            .path();
        if p == skip {
            continue;
        }
        if p.is_dir() {
            collect(&p, skip, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}
