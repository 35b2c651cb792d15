//! The unified kernel image: systemd's EFI stub with the kernel, initramfs,
//! command line and os-release added as PE sections by `objcopy`.

use crate::{tool, Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The identity written to `.osrel`; systemd-boot sorts entries by `ID` and
/// then by `VERSION_ID`, newest first, which is how a new slot becomes the default.
#[derive(Debug, Clone)]
pub struct OsRelease {
    /// `ID=` (lower case, no spaces).
    pub id: String,
    /// `NAME=`.
    pub name: String,
    /// `VERSION_ID=` (semver).
    pub version: String,
    /// More `KEY=value` lines (keys in upper case, values without newlines).
    pub extra: Vec<(String, String)>,
}

impl OsRelease {
    /// The os-release text.
    pub fn text(&self) -> String {
        let mut t = format!(
            "NAME=\"{n}\"\nID={id}\nVERSION_ID={v}\nVERSION=\"{v}\"\nPRETTY_NAME=\"{n} {v}\"\n",
            n = self.name,
            id = self.id,
            v = self.version
        );
        for (k, v) in &self.extra {
            t.push_str(&format!("{k}={v}\n"));
        }
        t
    }

    /// The value of `key` in os-release text.
    pub fn field(text: &str, key: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_string())
    }
}

/// What a UKI is made of.
#[derive(Debug, Clone)]
pub struct UkiSpec {
    /// systemd's `linuxx64.efi.stub`.
    pub stub: PathBuf,
    /// The kernel.
    pub kernel: PathBuf,
    /// The compressed initramfs.
    pub initramfs: Vec<u8>,
    /// The kernel command line.
    pub cmdline: String,
    /// Its os-release.
    pub os_release: OsRelease,
    /// Time stamp written into the PE header.
    pub epoch: u64,
}

const OSREL_VMA: u64 = 0x20000;
const CMDLINE_VMA: u64 = 0x30000;
const LINUX_VMA: u64 = 0x2000000;
const ALIGN: u64 = 0x10000;

/// Builds the UKI into `out` (atomically).
pub fn build_uki(spec: &UkiSpec, out: &Path) -> Result<u64> {
    let stub = std::fs::read(&spec.stub).map_err(Error::io("read UKI stub", &spec.stub))?;
    let image_end = pe_size_of_image(&stub)
        .ok_or_else(|| Error::invalid(spec.stub.display().to_string(), "not a PE/COFF EFI stub"))?;
    if image_end > OSREL_VMA {
        return Err(Error::invalid(
            spec.stub.display().to_string(),
            format!("stub image ends at {image_end:#x}, past where .osrel goes ({OSREL_VMA:#x}); use systemd 252's stub"),
        ));
    }
    if spec.cmdline.len() as u64 >= LINUX_VMA - CMDLINE_VMA || spec.cmdline.contains('\n') {
        return Err(Error::invalid("kernel command line", "must be one line"));
    }
    let kernel_len = std::fs::metadata(&spec.kernel)
        .map_err(Error::io("read kernel", &spec.kernel))?
        .len();
    let initrd_vma = LINUX_VMA + kernel_len.div_ceil(ALIGN) * ALIGN;

    let dir = crate::parent_dir(out);
    let work = tempfile::tempdir_in(dir).map_err(Error::io("create work directory in", dir))?;
    let osrel = work.path().join("os-release");
    let cmdline = work.path().join("cmdline");
    let initrd = work.path().join("initrd");
    for (path, data) in [
        (&osrel, spec.os_release.text().into_bytes()),
        (&cmdline, spec.cmdline.clone().into_bytes()),
        (&initrd, spec.initramfs.clone()),
    ] {
        std::fs::write(path, data).map_err(Error::io("write", path))?;
    }
    let tmp_out = work.path().join("uki.efi");
    let mut cmd = Command::new("objcopy");
    for (name, file, vma) in [
        (".osrel", osrel.as_path(), OSREL_VMA),
        (".cmdline", cmdline.as_path(), CMDLINE_VMA),
        (".linux", spec.kernel.as_path(), LINUX_VMA),
        (".initrd", initrd.as_path(), initrd_vma),
    ] {
        cmd.arg("--add-section")
            .arg(format!("{name}={}", file.display()))
            .arg("--change-section-vma")
            .arg(format!("{name}={vma:#x}"));
    }
    cmd.arg(&spec.stub).arg(&tmp_out);
    tool::run(cmd)?;
    let mut bytes = std::fs::read(&tmp_out).map_err(Error::io("read", &tmp_out))?;
    pin_pe_header(&mut bytes, spec.epoch)
        .ok_or_else(|| Error::invalid(out.display().to_string(), "objcopy wrote no PE header"))?;
    crate::atomic_write(out, &bytes)?;
    Ok(bytes.len() as u64)
}

/// objcopy stamps PE output with the current time (and a checksum over it):
/// set the COFF `TimeDateStamp` to the build epoch and clear the optional
/// header's `CheckSum` (firmware does not check it), so builds repeat.
fn pin_pe_header(pe: &mut [u8], epoch: u64) -> Option<()> {
    let lfanew = u32::from_le_bytes(pe.get(0x3c..0x40)?.try_into().ok()?) as usize;
    if pe.get(lfanew..lfanew + 4)? != b"PE\0\0" {
        return None;
    }
    let coff = lfanew + 4;
    pe.get_mut(coff + 4..coff + 8)?
        .copy_from_slice(&(epoch as u32).to_le_bytes());
    let opt = coff + 20;
    pe.get_mut(opt + 64..opt + 68)?.copy_from_slice(&[0; 4]);
    Some(())
}

/// `SizeOfImage` from a PE32+ optional header: where the stub's own sections end.
fn pe_size_of_image(pe: &[u8]) -> Option<u64> {
    let lfanew = u32::from_le_bytes(pe.get(0x3c..0x40)?.try_into().ok()?) as usize;
    if pe.get(lfanew..lfanew + 4)? != b"PE\0\0" {
        return None;
    }
    let opt = lfanew + 24;
    let size = u32::from_le_bytes(pe.get(opt + 56..opt + 60)?.try_into().ok()?);
    Some(size as u64)
}

/// The bytes of the PE section `name` (e.g. `.osrel`), if present.
pub fn pe_section<'a>(pe: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let lfanew = u32::from_le_bytes(pe.get(0x3c..0x40)?.try_into().ok()?) as usize;
    if pe.get(lfanew..lfanew + 4)? != b"PE\0\0" {
        return None;
    }
    let coff = lfanew + 4;
    let count = u16::from_le_bytes(pe.get(coff + 2..coff + 4)?.try_into().ok()?) as usize;
    let opt_size = u16::from_le_bytes(pe.get(coff + 16..coff + 18)?.try_into().ok()?) as usize;
    let table = coff + 20 + opt_size;
    (0..count).find_map(|i| {
        let h = pe.get(table + i * 40..table + i * 40 + 40)?;
        let n = &h[..8];
        let n = &n[..n.iter().position(|&b| b == 0).unwrap_or(8)];
        if n != name.as_bytes() {
            return None;
        }
        let vsize = u32::from_le_bytes(h[8..12].try_into().ok()?) as usize;
        let raw_size = u32::from_le_bytes(h[16..20].try_into().ok()?) as usize;
        let raw_at = u32::from_le_bytes(h[20..24].try_into().ok()?) as usize;
        pe.get(raw_at..raw_at + vsize.min(raw_size))
    })
}

/// A UKI's os-release text (its `.osrel` section).
pub fn uki_os_release(uki: &[u8]) -> Option<String> {
    Some(String::from_utf8_lossy(pe_section(uki, ".osrel")?).into_owned())
}

/// A UKI's os-release `VERSION_ID`.
pub fn uki_version(uki: &[u8]) -> Option<String> {
    OsRelease::field(&uki_os_release(uki)?, "VERSION_ID")
}
