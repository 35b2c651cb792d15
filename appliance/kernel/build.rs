//! Computes the kernel build identity: a digest over the kernel's sources,
//! so a Compliance Lock names the exact rules semantics that produced it.

use sha2::{Digest, Sha256};
use std::path::Path;

fn main() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    println!("cargo:rerun-if-changed=src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    files.sort();
    let mut h = Sha256::new();
    for f in &files {
        let rel = f
            .strip_prefix(&src)
            .unwrap_or(f)
            .to_string_lossy()
            .into_owned();
        h.update(rel.as_bytes());
        h.update([0u8]);
        h.update(std::fs::read(f).unwrap_or_default());
    }
    let digest = hex::encode(h.finalize());
    // The VM version is `kernel::VM_VERSION`; a unit test checks the two agree.
    println!(
        "cargo:rustc-env=KERNEL_BUILD=kernel/{}+vm1.0.0+src.{}",
        env!("CARGO_PKG_VERSION"),
        &digest[..16]
    );
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}
