//! The initramfs: `/init` (the given program), its shared libraries, extra
//! programs, the requested kernel modules with the dependencies `modules.dep`
//! names (and a `modules.dep` cut down to them), `/etc/os-release` and the
//! `/dev/console` node, as a zstd-compressed newc archive with sorted members.

use crate::cpio::{self, Entry};
use crate::{tool, Error, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What goes into the initramfs.
#[derive(Debug, Clone)]
pub struct InitramfsSpec {
    /// The program that becomes `/init` (PID 1).
    pub init: PathBuf,
    /// More programs, installed as `/bin/NAME` with their libraries.
    pub extra_bins: Vec<PathBuf>,
    /// The kernel's module tree (with `modules.dep`).
    pub modules_dir: PathBuf,
    /// The kernel release (module directory name inside the initramfs).
    pub kernel_release: String,
    /// Module names to include (`-` and `_` are the same), each with its dependencies.
    pub modules: Vec<String>,
    /// The text of `/etc/os-release`.
    pub os_release: String,
    /// Remove debug information from the programs (not from libraries).
    pub strip: bool,
    /// Modification time of every member.
    pub epoch: u64,
}

/// Builds the compressed initramfs.
pub fn build_initramfs(spec: &InitramfsSpec) -> Result<Vec<u8>> {
    let mut tree: BTreeMap<String, Entry> = BTreeMap::new();
    for d in [
        "dev", "proc", "sys", "run", "tmp", "data", "boot", "bin", "etc",
    ] {
        tree.insert(d.into(), Entry::Dir);
    }
    tree.insert("dev/console".into(), Entry::CharDev(5, 1));
    tree.insert(
        "etc/os-release".into(),
        Entry::File {
            data: spec.os_release.as_bytes().to_vec(),
            exec: false,
        },
    );
    let mut programs = vec![("init".to_string(), spec.init.clone())];
    for bin in &spec.extra_bins {
        let name = bin
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::invalid(bin.display().to_string(), "not a program file name"))?;
        programs.push((format!("bin/{name}"), bin.clone()));
    }
    let mut libs = BTreeSet::new();
    for (dest, src) in &programs {
        let data = program_bytes(src, spec.strip)?;
        tree.insert(dest.clone(), Entry::File { data, exec: true });
        libs.extend(shared_libraries(src)?);
    }
    for lib in libs {
        let data = std::fs::read(&lib).map_err(Error::io("read library", &lib))?;
        let rel = lib.to_string_lossy().trim_start_matches('/').to_string();
        tree.insert(rel, Entry::File { data, exec: true });
    }
    add_modules(&mut tree, spec)?;
    add_parent_dirs(&mut tree);
    let entries: Vec<(String, Entry)> = tree.into_iter().collect();
    let archive = cpio::write(&entries, spec.epoch);
    zstd::bulk::compress(&archive, 9)
        .map_err(|e| Error::invalid("compress initramfs", e.to_string()))
}

/// The program's bytes, optionally without debug sections.
fn program_bytes(src: &Path, strip: bool) -> Result<Vec<u8>> {
    if !src.is_file() {
        return Err(Error::MissingInput {
            what: "program for the initramfs",
            path: src.to_path_buf(),
        });
    }
    if !strip {
        return std::fs::read(src).map_err(Error::io("read", src));
    }
    let tmp =
        tempfile::NamedTempFile::new().map_err(Error::io("create temp file", Path::new("/tmp")))?;
    let mut cmd = Command::new("objcopy");
    cmd.arg("--strip-debug").arg(src).arg(tmp.path());
    tool::run(cmd)?;
    std::fs::read(tmp.path()).map_err(Error::io("read stripped", tmp.path()))
}

/// The shared libraries (and the ELF interpreter) `ldd` reports for `bin`.
fn shared_libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let mut cmd = Command::new("ldd");
    cmd.arg(bin);
    let out = match tool::run(cmd) {
        Ok(out) => out,
        // A static program has none.
        Err(Error::Tool { detail, .. }) if detail.contains("not a dynamic executable") => {
            return Ok(Vec::new())
        }
        Err(e) => return Err(e),
    };
    let mut libs = Vec::new();
    for line in String::from_utf8_lossy(&out).lines() {
        let line = line.trim();
        if line.contains("not found") {
            return Err(Error::invalid(
                bin.display().to_string(),
                format!("needs a library that is not installed: {line}"),
            ));
        }
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.trim(),
            None => line,
        };
        let path = path.split(" (").next().unwrap_or("").trim();
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// Normalised module name: file stem with `-` as `_`.
fn module_name(rel: &str) -> String {
    let file = rel.rsplit('/').next().unwrap_or(rel);
    file.trim_end_matches(".ko").replace('-', "_")
}

/// Parses `modules.dep` into module path → dependency paths, in file order.
fn parse_modules_dep(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, deps)| {
            (
                m.trim().to_string(),
                deps.split_whitespace().map(str::to_string).collect(),
            )
        })
        .collect()
}

/// Adds the requested modules and their dependencies, and a `modules.dep`
/// listing only them (requested order first, so the loader can follow it).
fn add_modules(tree: &mut BTreeMap<String, Entry>, spec: &InitramfsSpec) -> Result<()> {
    let dep_path = spec.modules_dir.join("modules.dep");
    let text = std::fs::read_to_string(&dep_path).map_err(Error::io("read", &dep_path))?;
    let all = parse_modules_dep(&text);
    let by_name: BTreeMap<String, &(String, Vec<String>)> =
        all.iter().map(|e| (module_name(&e.0), e)).collect();
    let by_path: BTreeMap<&str, &Vec<String>> = all.iter().map(|(m, d)| (m.as_str(), d)).collect();
    let mut chosen: Vec<String> = Vec::new();
    for want in &spec.modules {
        let Some((path, deps)) = by_name.get(&want.replace('-', "_")).map(|e| (&e.0, &e.1)) else {
            return Err(Error::invalid(
                format!("kernel module {want}"),
                format!(
                    "not in {} (built into this kernel, or misspelt); remove it from the module list",
                    dep_path.display()
                ),
            ));
        };
        for m in deps.iter().chain(std::iter::once(path)) {
            if !chosen.contains(m) {
                chosen.push(m.clone());
            }
        }
    }
    let base = format!("lib/modules/{}", spec.kernel_release);
    let mut dep_file = String::new();
    for m in &chosen {
        if !m.ends_with(".ko") {
            return Err(Error::invalid(
                format!("kernel module {m}"),
                "compressed modules are not supported; use a kernel package with plain .ko files",
            ));
        }
        let src = spec.modules_dir.join(m);
        let data = std::fs::read(&src).map_err(Error::io("read module", &src))?;
        tree.insert(format!("{base}/{m}"), Entry::File { data, exec: false });
        let deps = by_path
            .get(m.as_str())
            .map(|d| d.join(" "))
            .unwrap_or_default();
        dep_file.push_str(&format!("{m}: {deps}\n"));
    }
    tree.insert(
        format!("{base}/modules.dep"),
        Entry::File {
            data: dep_file.into_bytes(),
            exec: false,
        },
    );
    Ok(())
}

/// Every member's parent directories, as directory members.
fn add_parent_dirs(tree: &mut BTreeMap<String, Entry>) {
    let mut dirs = BTreeSet::new();
    for name in tree.keys() {
        let mut p = Path::new(name).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.to_string_lossy().into_owned());
            p = d.parent();
        }
    }
    for d in dirs {
        tree.entry(d).or_insert(Entry::Dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_ignore_dash_and_underscore() {
        assert_eq!(
            module_name("kernel/drivers/usb/host/xhci-pci.ko"),
            "xhci_pci"
        );
        let deps = parse_modules_dep("kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/jbd2/jbd2.ko\nkernel/lib/crc16.ko:\n");
        assert_eq!(deps[0].1, ["kernel/lib/crc16.ko", "kernel/fs/jbd2/jbd2.ko"]);
        assert!(deps[1].1.is_empty());
    }
}
