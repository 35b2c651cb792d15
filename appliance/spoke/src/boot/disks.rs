//! Block devices and mounts: the kernel's file systems, partitions found by
//! their GPT name (never by device order), the data partition (checked, and
//! created when it holds no file system), and removable media mounted
//! read-only for the import pipeline.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn mkdir(p: &str) -> Result<(), String> {
    std::fs::create_dir_all(p).map_err(|e| format!("create {p}: {e}"))
}

/// Mounts /proc, /sys, /dev (devtmpfs) and /run (tmpfs).
pub(crate) fn mount_kernel_filesystems() -> Result<(), String> {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    for (src, target, fstype, flags) in [
        ("proc", "/proc", "proc", nodev),
        ("sysfs", "/sys", "sysfs", nodev),
        ("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        ),
    ] {
        mkdir(target)?;
        match mount(Some(src), target, Some(fstype), flags, None::<&str>) {
            Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
            Err(e) => return Err(format!("mount {fstype} on {target}: {e}")),
        }
    }
    Ok(())
}

/// Mounts efivarfs (where systemd-boot reports the entry it booted).
pub(crate) fn mount_efivarfs() -> Result<(), String> {
    let target = "/sys/firmware/efi/efivars";
    mount(
        Some("efivarfs"),
        target,
        Some("efivarfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(|e| format!("mount efivarfs: {e}"))
}

/// A block device's `uevent` properties.
fn uevent(dev: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(dev.join("uevent"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The device node of the partition whose GPT name is `name`, if present now.
pub(crate) fn partition_by_name(name: &str) -> Option<PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/sys/class/block").ok()?.flatten() {
        let u = uevent(&e.path());
        if u.get("DEVTYPE").map(String::as_str) == Some("partition")
            && u.get("PARTNAME").map(String::as_str) == Some(name)
        {
            if let Some(dev) = u.get("DEVNAME") {
                found.push(PathBuf::from("/dev").join(dev));
            }
        }
    }
    found.sort();
    if found.len() > 1 {
        super::log(format!(
            "several partitions are named {name}: {found:?}; using the first (remove the other disk)"
        ));
    }
    found.into_iter().next()
}

/// Waits (devices appear as their drivers probe) for the partition named `name`.
pub(crate) fn wait_for_partition(name: &str, within: Duration) -> Result<PathBuf, String> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(p) = partition_by_name(name) {
            return Ok(p);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no partition named {name:?} appeared within {within:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the device holds an ext2/3/4 superblock.
fn has_ext4(dev: &Path) -> Result<bool, String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(dev).map_err(|e| format!("open {}: {e}", dev.display()))?;
    let mut magic = [0u8; 2];
    f.seek(SeekFrom::Start(1024 + 56))
        .and_then(|_| f.read_exact(&mut magic))
        .map_err(|e| format!("read the superblock of {}: {e}", dev.display()))?;
    Ok(magic == [0x53, 0xEF])
}

fn tool(program: &str, args: &[&std::ffi::OsStr]) -> Result<i32, String> {
    let status = super::command(program)
        .args(args)
        .status()
        .map_err(|e| format!("run {program}: {e}"))?;
    Ok(status.code().unwrap_or(-1))
}

/// Checks the data partition (creating its file system when it has none) and mounts it.
pub(crate) fn prepare_data(dev: &Path, at: &Path) -> Result<(), String> {
    if !has_ext4(dev)? {
        super::log(format!(
            "{} holds no file system: creating one",
            dev.display()
        ));
        let code = tool(
            "/bin/mke2fs",
            &[
                "-q".as_ref(),
                "-t".as_ref(),
                "ext4".as_ref(),
                "-L".as_ref(),
                image::DATA_PART_NAME.as_ref(),
                dev.as_os_str(),
            ],
        )?;
        if code != 0 {
            return Err(format!("mke2fs {} failed ({code})", dev.display()));
        }
    } else if Path::new("/bin/e2fsck").exists() {
        // 0: clean, 1: errors corrected, 2: corrected, reboot advised; more is fatal.
        let code = tool("/bin/e2fsck", &["-p".as_ref(), dev.as_os_str()])?;
        if !(0..=2).contains(&code) {
            return Err(format!(
                "e2fsck {} found errors it cannot fix ({code}); repair the disk from a rescue system",
                dev.display()
            ));
        }
    }
    std::fs::create_dir_all(at).map_err(|e| format!("create {}: {e}", at.display()))?;
    mount(
        Some(dev),
        at,
        Some("ext4"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(|e| format!("mount {} on {}: {e}", dev.display(), at.display()))
}

/// Mounts `dev` (vfat) at `at`, read-write, for slot changes.
pub(crate) fn mount_esp(at: &Path) -> Result<(), String> {
    let dev = partition_by_name(image::ESP_PART_NAME)
        .ok_or_else(|| format!("no partition named {}", image::ESP_PART_NAME))?;
    std::fs::create_dir_all(at).map_err(|e| format!("create {}: {e}", at.display()))?;
    mount(
        Some(&dev),
        at,
        Some("vfat"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("flush"),
    )
    .map_err(|e| format!("mount {} on {}: {e}", dev.display(), at.display()))
}

/// Unmounts whatever is mounted at or under these paths (deepest first).
pub(crate) fn unmount_all(paths: &[&str]) {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut targets: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|t| {
            paths
                .iter()
                .any(|p| t == p || t.starts_with(&format!("{p}/")))
        })
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        if let Err(e) = umount2(t, MntFlags::empty()) {
            super::log(format!("unmount {t}: {e}; detaching it"));
            let _ = umount2(t, MntFlags::MNT_DETACH);
        }
    }
}

/// Removable media currently mounted read-only under the media directory.
#[derive(Default)]
pub(crate) struct Media {
    mounted: BTreeMap<String, PathBuf>,
}

impl Media {
    /// Mounts new USB block devices (each partition, or the whole disk when
    /// it has none) read-only, and forgets those that went away.
    pub(crate) fn scan(&mut self, dir: &Path) {
        let present = usb_volumes();
        let gone: Vec<String> = self
            .mounted
            .keys()
            .filter(|k| !present.contains(k))
            .cloned()
            .collect();
        for name in gone {
            if let Some(at) = self.mounted.remove(&name) {
                let _ = umount2(&at, MntFlags::MNT_DETACH);
                let _ = std::fs::remove_dir(&at);
                super::log(format!("medium {name} removed"));
            }
        }
        for name in present {
            if self.mounted.contains_key(&name) {
                continue;
            }
            let at = dir.join(&name);
            let dev = PathBuf::from("/dev").join(&name);
            if std::fs::create_dir_all(&at).is_err() {
                continue;
            }
            let flags =
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            let ok = ["ext4", "vfat"]
                .iter()
                .any(|fs| mount(Some(&dev), &at, Some(*fs), flags, None::<&str>).is_ok());
            if ok {
                super::log(format!(
                    "medium {name} mounted read-only at {}",
                    at.display()
                ));
                self.mounted.insert(name, at);
            } else {
                let _ = std::fs::remove_dir(&at);
                // Remember it so an unreadable stick is not retried every second.
                self.mounted.insert(name, PathBuf::new());
            }
        }
    }

    pub(crate) fn unmount_all(&mut self) {
        for (_, at) in std::mem::take(&mut self.mounted) {
            if !at.as_os_str().is_empty() {
                let _ = umount2(&at, MntFlags::empty());
            }
        }
    }
}

/// Block devices on USB: partitions, or whole disks without partitions.
fn usb_volumes() -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/sys/class/block") else {
        return out;
    };
    let mut disks_with_parts = std::collections::BTreeSet::new();
    let mut candidates = Vec::new();
    for e in dir.flatten() {
        let Ok(real) = std::fs::canonicalize(e.path()) else {
            continue;
        };
        if !real.to_string_lossy().contains("/usb") {
            continue;
        }
        let u = uevent(&e.path());
        let (Some(name), Some(ty)) = (u.get("DEVNAME"), u.get("DEVTYPE")) else {
            continue;
        };
        if ty == "partition" {
            if let Some(parent) = real.parent().and_then(|p| p.file_name()) {
                disks_with_parts.insert(parent.to_string_lossy().into_owned());
            }
        }
        candidates.push((name.clone(), ty.clone()));
    }
    for (name, ty) in candidates {
        if ty == "disk" && disks_with_parts.contains(&name) {
            continue;
        }
        out.push(name);
    }
    out.sort();
    out
}
