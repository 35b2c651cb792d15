//! The GPT raw disk: an EFI system partition (systemd-boot, `loader.conf`,
//! slot A's UKI) and an ext4 data partition seeded from a directory. Each file
//! system is made in its own file by `mkfs.vfat -C` + `mcopy` and
//! `mkfs.ext4 -d`, the partition table by `sfdisk` on a sparse file, and the
//! file systems are copied into place: no root, no loop devices. Identifiers
//! are fixed and clocks come from `SOURCE_DATE_EPOCH`, so builds repeat.

use crate::{tool, Error, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// GPT partition name of the EFI system partition.
pub const ESP_PART_NAME: &str = "esp";
/// GPT partition name (and ext4 label) of the data partition.
pub const DATA_PART_NAME: &str = "eurocomply-data";
/// Where slot A's UKI lives on the ESP (blessed: no boot counter).
pub const SLOT_A_FILE: &str = "EFI/Linux/eurocomply-a.efi";

const DISK_GUID: &str = "6F1E0C55-2B1B-4C3E-9C8A-3A2E6B0D5E01";
const ESP_UUID: &str = "6F1E0C55-2B1B-4C3E-9C8A-3A2E6B0D5E02";
const DATA_UUID: &str = "6F1E0C55-2B1B-4C3E-9C8A-3A2E6B0D5E03";
const DATA_FS_UUID: &str = "6f1e0c55-2b1b-4c3e-9c8a-3a2e6b0d5e04";
const ESP_VOLUME_ID: &str = "EC0A0001";
const MIB: u64 = 1024 * 1024;

/// What the disk is made of.
#[derive(Debug, Clone)]
pub struct DiskSpec {
    /// `systemd-bootx64.efi`.
    pub systemd_boot: PathBuf,
    /// Slot A's UKI.
    pub uki: PathBuf,
    /// A directory copied to the root of the data partition.
    pub seed: Option<PathBuf>,
    /// Size of the EFI system partition in MiB (holds two slots and a spare copy).
    pub esp_mib: u64,
    /// Size of the data partition in MiB.
    pub data_mib: u64,
    /// Time stamp of every file.
    pub epoch: u64,
    /// Also write a qcow2 copy here.
    pub qcow2: Option<PathBuf>,
}

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DiskReport {
    /// The raw disk.
    pub file: PathBuf,
    /// Its size in bytes (sparse).
    pub bytes: u64,
    /// Bytes actually allocated on the build machine.
    pub allocated_bytes: u64,
    /// SHA-256 of the raw disk.
    pub sha256: String,
    /// The qcow2 copy and its size.
    pub qcow2: Option<(PathBuf, u64)>,
}

/// Builds the disk into `out` (atomically), and the qcow2 copy if asked.
pub fn build_disk(spec: &DiskSpec, out: &Path) -> Result<DiskReport> {
    if spec.esp_mib < 64 || spec.data_mib < 64 {
        return Err(Error::invalid(
            "partition sizes",
            "the ESP and the data partition need at least 64 MiB each",
        ));
    }
    for (what, p) in [("systemd-boot", &spec.systemd_boot), ("UKI", &spec.uki)] {
        if !p.is_file() {
            return Err(Error::MissingInput {
                what,
                path: p.clone(),
            });
        }
    }
    let dir = crate::parent_dir(out);
    let work = tempfile::tempdir_in(dir).map_err(Error::io("create work directory in", dir))?;
    let w = work.path();

    // The ESP's tree.
    let esp = w.join("esp");
    copy_file(&spec.systemd_boot, &esp.join("EFI/BOOT/BOOTX64.EFI"))?;
    copy_file(
        &spec.systemd_boot,
        &esp.join("EFI/systemd/systemd-bootx64.efi"),
    )?;
    copy_file(&spec.uki, &esp.join(SLOT_A_FILE))?;
    let loader = esp.join("loader/loader.conf");
    write_file(
        &loader,
        b"timeout 0\neditor no\nauto-entries no\nauto-firmware no\n",
    )?;
    set_times(&esp, spec.epoch)?;
    let esp_img = w.join("esp.img");
    let mut mkfs = tool::reproducible("mkfs.vfat", spec.epoch);
    mkfs.args([
        "-C",
        "-F",
        "32",
        "-n",
        "ESP",
        "-i",
        ESP_VOLUME_ID,
        "--invariant",
    ])
    .arg(&esp_img)
    .arg((spec.esp_mib * 1024).to_string());
    tool::run(mkfs)?;
    let mut mcopy = tool::reproducible("mcopy", spec.epoch);
    mcopy
        .args(["-s", "-m", "-i"])
        .arg(&esp_img)
        .arg(esp.join("EFI"))
        .arg(esp.join("loader"))
        .arg("::/");
    tool::run(mcopy)?;

    // The data partition.
    let data_img = w.join("data.img");
    let mut mke2fs = tool::reproducible("mkfs.ext4", spec.epoch);
    mke2fs
        .args(["-q", "-F", "-L", DATA_PART_NAME, "-U", DATA_FS_UUID, "-E"])
        .arg(format!("hash_seed={DATA_FS_UUID},root_owner=0:0"));
    let mut seeded = Vec::new();
    if let Some(seed) = &spec.seed {
        let copy = w.join("data");
        copy_tree(seed, &copy)?;
        set_times(&copy, spec.epoch)?;
        mke2fs.arg("-d").arg(&copy);
        seeded = relative_paths(&copy, Path::new("/"))?;
    }
    mke2fs.arg(&data_img).arg(format!("{}M", spec.data_mib));
    tool::run(mke2fs)?;
    if !seeded.is_empty() {
        pin_ext4_times(&data_img, &seeded, spec.epoch, w)?;
    }

    // The partition table on a sparse file, then the file systems into place.
    let esp_start = MIB;
    let data_start = esp_start + spec.esp_mib * MIB;
    let total = data_start + spec.data_mib * MIB + MIB;
    let tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(Error::io("create temp file in", dir))?;
    tmp.as_file()
        .set_len(total)
        .map_err(Error::io("size", tmp.path()))?;
    let script = format!(
        "label: gpt\nlabel-id: {DISK_GUID}\nunit: sectors\nfirst-lba: 2048\n\
         start={}, size={}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid={ESP_UUID}, name=\"{ESP_PART_NAME}\"\n\
         start={}, size={}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid={DATA_UUID}, name=\"{DATA_PART_NAME}\"\n",
        esp_start / 512,
        spec.esp_mib * MIB / 512,
        data_start / 512,
        spec.data_mib * MIB / 512,
    );
    let script_file = w.join("sfdisk.txt");
    write_file(&script_file, script.as_bytes())?;
    let mut sfdisk = tool::reproducible("sfdisk", spec.epoch);
    sfdisk
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(tmp.path())
        .stdin(std::fs::File::open(&script_file).map_err(Error::io("open", &script_file))?);
    tool::run(sfdisk)?;
    copy_into(&esp_img, tmp.as_file(), esp_start, tmp.path())?;
    copy_into(&data_img, tmp.as_file(), data_start, tmp.path())?;
    crate::persist(tmp, out)?;

    let (sha256, allocated_bytes) = digest(out)?;
    let qcow2 = match &spec.qcow2 {
        Some(q) => Some((q.clone(), write_qcow2(out, q)?)),
        None => None,
    };
    Ok(DiskReport {
        file: out.to_path_buf(),
        bytes: total,
        allocated_bytes,
        sha256,
        qcow2,
    })
}

fn write_qcow2(raw: &Path, q: &Path) -> Result<u64> {
    let dir = crate::parent_dir(q);
    let tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(Error::io("create temp file in", dir))?;
    let mut cmd = std::process::Command::new("qemu-img");
    cmd.args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(raw)
        .arg(tmp.path());
    tool::run(cmd)?;
    let len = tmp
        .as_file()
        .metadata()
        .map_err(Error::io("stat", tmp.path()))?
        .len();
    crate::persist(tmp, q)?;
    Ok(len)
}

fn digest(path: &Path) -> Result<(String, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut f = std::fs::File::open(path).map_err(Error::io("open", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; MIB as usize];
    loop {
        let n = f.read(&mut buf).map_err(Error::io("read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let blocks = f.metadata().map_err(Error::io("stat", path))?.blocks();
    Ok((hex::encode(h.finalize()), blocks * 512))
}

/// Copies `src` into `dst` at `offset`, leaving runs of zeros as holes.
fn copy_into(src: &Path, mut dst: &std::fs::File, offset: u64, dst_path: &Path) -> Result<()> {
    let mut f = std::fs::File::open(src).map_err(Error::io("open", src))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = offset;
    loop {
        let n = read_full(&mut f, &mut buf).map_err(Error::io("read", src))?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            dst.seek(SeekFrom::Start(at))
                .map_err(Error::io("seek", dst_path))?;
            dst.write_all(&buf[..n])
                .map_err(Error::io("write", dst_path))?;
        }
        at += n as u64;
    }
    Ok(())
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(Error::io("create directory", p))?;
    }
    std::fs::write(path, data).map_err(Error::io("write", path))
}

fn copy_file(src: &Path, dst: &Path) -> Result<()> {
    let data = std::fs::read(src).map_err(Error::io("read", src))?;
    write_file(dst, &data)
}

/// Copies a directory tree of plain files and directories (symlinks refused).
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst).map_err(Error::io("create directory", dst))?;
    let mut entries: Vec<_> = std::fs::read_dir(src)
        .map_err(Error::io("read directory", src))?
        .collect::<std::result::Result<_, _>>()
        .map_err(Error::io("read directory", src))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let ty = e.file_type().map_err(Error::io("stat", &path))?;
        let to = dst.join(e.file_name());
        if ty.is_dir() {
            copy_tree(&path, &to)?;
        } else if ty.is_file() {
            copy_file(&path, &to)?;
        } else {
            return Err(Error::invalid(
                path.display().to_string(),
                "only plain files and directories can go on the data partition",
            ));
        }
    }
    Ok(())
}

/// `mkfs.ext4 -d` copies each file's change time (which cannot be set on
/// the copy) and sub-second parts: set every time of the seeded inodes to
/// the epoch with `debugfs`, so the data partition repeats byte for byte.
fn pin_ext4_times(img: &Path, paths: &[String], epoch: u64, work: &Path) -> Result<()> {
    let mut script = String::new();
    for p in std::iter::once("/").chain(paths.iter().map(String::as_str)) {
        if p.contains('"') || p.contains('\n') {
            return Err(Error::invalid(
                p,
                "file names on the data partition cannot contain quotes or newlines",
            ));
        }
        for field in ["atime", "mtime", "ctime", "crtime"] {
            script.push_str(&format!("set_inode_field \"{p}\" {field} @{epoch}\n"));
            script.push_str(&format!("set_inode_field \"{p}\" {field}_extra 0\n"));
        }
    }
    let cmds = work.join("debugfs.txt");
    write_file(&cmds, script.as_bytes())?;
    let mut cmd = tool::reproducible("debugfs", epoch);
    cmd.arg("-w").arg("-f").arg(&cmds).arg(img);
    let out = cmd.output().map_err(|e| Error::Tool {
        tool: "debugfs".into(),
        detail: format!("cannot start it: {e}"),
    })?;
    // debugfs exits 0 even when a command fails; its errors go to stderr.
    let errors: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("debugfs "))
        .map(str::to_string)
        .collect();
    if !out.status.success() || !errors.is_empty() {
        return Err(Error::Tool {
            tool: "debugfs".into(),
            detail: errors.join("; "),
        });
    }
    Ok(())
}

/// Every path under `dir`, as absolute paths inside the file system rooted at `root`.
fn relative_paths(dir: &Path, root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(Error::io("read directory", dir))?
        .collect::<std::result::Result<_, _>>()
        .map_err(Error::io("read directory", dir))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let inside = root.join(e.file_name());
        out.push(inside.to_string_lossy().into_owned());
        if e.path().is_dir() {
            out.extend(relative_paths(&e.path(), &inside)?);
        }
    }
    Ok(out)
}

/// Sets the access and modification times of a whole tree (children first).
fn set_times(path: &Path, epoch: u64) -> Result<()> {
    if path.is_dir() {
        for e in std::fs::read_dir(path).map_err(Error::io("read directory", path))? {
            let e = e.map_err(Error::io("read directory", path))?;
            set_times(&e.path(), epoch)?;
        }
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
    let f = std::fs::File::open(path).map_err(Error::io("open", path))?;
    f.set_times(std::fs::FileTimes::new().set_accessed(t).set_modified(t))
        .map_err(Error::io("set times of", path))
}
