//! Loads the kernel modules the initramfs carries, dependencies first, as
//! `modules.dep` lists them, with the `finit_module` system call.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::path::Path;

/// Loads every module listed in `/lib/modules/$(uname -r)/modules.dep`;
/// returns how many were loaded. A module that fails to load is reported
/// and skipped (hardware it drives may be absent); a missing list is an error.
pub(crate) fn load_all() -> Result<usize, String> {
    let release = nix::sys::utsname::uname()
        .map_err(|e| format!("uname: {e}"))?
        .release()
        .to_string_lossy()
        .into_owned();
    let base = Path::new("/lib/modules").join(&release);
    let dep = base.join("modules.dep");
    let text = std::fs::read_to_string(&dep).map_err(|e| format!("read {}: {e}", dep.display()))?;
    let order = load_order(&text);
    let mut loaded = 0;
    for m in order {
        let path = base.join(&m);
        match load(&path) {
            Ok(()) => loaded += 1,
            Err(e) => super::log(format!("module {m}: {e}")),
        }
    }
    Ok(loaded)
}

/// The order to load in: for each listed module, its dependencies (the last
/// listed first, as modprobe does) and then the module, each once.
pub(crate) fn load_order(modules_dep: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for line in modules_dep.lines() {
        let Some((m, deps)) = line.split_once(':') else {
            continue;
        };
        for d in deps
            .split_whitespace()
            .rev()
            .chain(std::iter::once(m.trim()))
        {
            if seen.insert(d.to_string()) {
                out.push(d.to_string());
            }
        }
    }
    out
}

fn load(path: &Path) -> Result<(), String> {
    let f = std::fs::File::open(path).map_err(|e| format!("open: {e}"))?;
    let params = CString::default();
    match nix::kmod::finit_module(&f, &params, nix::kmod::ModuleInitFlags::empty()) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(format!("finit_module: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dependencies_load_first_and_once() {
        let order = super::load_order(
            "kernel/lib/crc16.ko:\nkernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n",
        );
        assert_eq!(
            order,
            [
                "kernel/lib/crc16.ko",
                "kernel/fs/jbd2/jbd2.ko",
                "kernel/fs/mbcache.ko",
                "kernel/fs/ext4/ext4.ko"
            ]
        );
    }
}
