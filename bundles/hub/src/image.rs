//! `hub image …`: the bootable appliance image. The hub supplies what only it
//! knows (the `spoke` binary, the trust root, a medium exported from its
//! repository) and the `image` crate does the building.

use crate::Error;
use bundles::progress::{Progress, TtyBar};
use std::path::{Path, PathBuf};

/// Kernel modules the appliance loads: storage (virtio, AHCI, NVMe, USB),
/// file systems (ext4, vfat), network (virtio, Intel), EFI variables, power button.
pub const DEFAULT_MODULES: &[&str] = &[
    "crc32c_generic",
    "crc32c-intel",
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "virtio_net",
    "ahci",
    "nvme",
    "sd_mod",
    "xhci-pci",
    "ehci-pci",
    "usb-storage",
    "uas",
    "e1000",
    "e1000e",
    "ext4",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "nls_utf8",
    "efivarfs",
    "button",
    "evdev",
];

/// The default kernel command line: screen and serial console (the last
/// one named is where PID 1's messages go), an address by DHCP (for a fixed
/// one: `spoke.ip=ADDR/PREFIX spoke.gw=ADDR`), reboot 5 s after a panic (so
/// a broken slot uses up its tries instead of hanging).
pub const DEFAULT_CMDLINE: &str = "console=tty0 console=ttyS0,115200 panic=5 quiet spoke.ip=dhcp";

/// Where the boot inputs come from.
#[derive(Debug, clap::Args)]
pub struct InputArgs {
    /// Cache filled by ci/fetch-image-inputs.sh.
    #[arg(long, env = "EUROCOMPLY_IMAGE_INPUTS", default_value = image::inputs::DEFAULT_CACHE)]
    pub inputs: PathBuf,
    /// Kernel (default: INPUTS/vmlinuz).
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Kernel module tree with modules.dep (default: INPUTS/modules).
    #[arg(long)]
    pub modules: Option<PathBuf>,
    /// systemd's linuxx64.efi.stub (default: INPUTS/linuxx64.efi.stub).
    #[arg(long)]
    pub stub: Option<PathBuf>,
    /// systemd-bootx64.efi (default: INPUTS/systemd-bootx64.efi).
    #[arg(long)]
    pub systemd_boot: Option<PathBuf>,
}

impl InputArgs {
    fn inputs(&self) -> image::Inputs {
        let d = image::Inputs::in_cache(&self.inputs);
        image::Inputs {
            kernel: self.kernel.clone().unwrap_or(d.kernel),
            modules: self.modules.clone().unwrap_or(d.modules),
            stub: self.stub.clone().unwrap_or(d.stub),
            systemd_boot: self.systemd_boot.clone().unwrap_or(d.systemd_boot),
        }
    }
}

/// What goes into a UKI.
#[derive(Debug, clap::Args)]
pub struct UkiArgs {
    /// The program that runs as PID 1 (default: the `spoke` next to this `hub`).
    #[arg(long)]
    pub spoke: Option<PathBuf>,
    /// OS version written to os-release (systemd-boot boots the newest).
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub os_version: semver::Version,
    /// Kernel command line.
    #[arg(long, default_value = DEFAULT_CMDLINE)]
    pub cmdline: String,
    /// Kernel module to include (with its dependencies); repeatable; replaces the default list.
    #[arg(long)]
    pub module: Vec<String>,
    /// Keep debug information in the programs.
    #[arg(long)]
    pub no_strip: bool,
    #[command(flatten)]
    pub inputs: InputArgs,
}

/// `hub image …`.
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Build a unified kernel image (kernel + initramfs with `spoke` as PID 1),
    /// e.g. for `hub os build --uki`.
    Uki {
        /// UKI file to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        uki: UkiArgs,
    },
    /// Build the bootable GPT disk image: ESP with systemd-boot and slot A,
    /// data partition with the trust root and the seed medium.
    Build {
        /// Raw disk image to write.
        #[arg(long)]
        out: PathBuf,
        /// Also write a qcow2 copy.
        #[arg(long)]
        qcow2: Option<PathBuf>,
        /// Slot A's UKI (default: build one from the options below).
        #[arg(long)]
        uki: Option<PathBuf>,
        /// Slot A from an OS bundle file made by `hub os build` (its chunks
        /// are verified and its UKI reassembled).
        #[arg(long, conflicts_with = "uki")]
        os_bundle: Option<PathBuf>,
        /// The hub's root.json the appliance trusts on first boot.
        #[arg(long)]
        trust: PathBuf,
        /// Repository to export the seed products and models from.
        #[arg(long)]
        repo: Option<PathBuf>,
        /// Product bundle (name or target) to install on first boot; repeatable.
        #[arg(long, requires = "repo")]
        product: Vec<String>,
        /// Model bundle (name or target) to install on first boot; repeatable.
        #[arg(long, requires = "repo")]
        model: Vec<String>,
        /// Size of the EFI system partition in MiB.
        #[arg(long, default_value_t = 256)]
        esp_mib: u64,
        /// Size of the data partition in MiB.
        #[arg(long, default_value_t = 512)]
        data_mib: u64,
        #[command(flatten)]
        uki_args: UkiArgs,
    },
}

/// What `hub image build` reports.
#[derive(Debug, serde::Serialize)]
pub struct Built {
    /// The disk.
    #[serde(flatten)]
    pub disk: image::DiskReport,
    /// Slot A's OS version.
    pub os_version: String,
    /// UKI size in bytes.
    pub uki_bytes: u64,
}

fn default_spoke() -> Result<PathBuf, Error> {
    let hub = std::env::current_exe().map_err(|e| Error::Usage(format!("locate hub: {e}")))?;
    Ok(hub.with_file_name("spoke"))
}

/// os-release keys for what the OS can run, which `hub os build` signs into
/// the OS bundle for the spoke's pre-flight.
pub const VM_VERSION_KEY: &str = "EUROCOMPLY_VM_VERSION";
/// See [`VM_VERSION_KEY`].
pub const SCHEMA_VERSION_KEY: &str = "EUROCOMPLY_SCHEMA_VERSION";

/// Asks the `spoke` being packed what it can run (`spoke os capabilities`).
fn capabilities(spoke: &Path) -> Result<Vec<(String, String)>, Error> {
    let out = std::process::Command::new(spoke)
        .args(["--json", "os", "capabilities"])
        .output()
        .map_err(|e| Error::Usage(format!("run {} os capabilities: {e}", spoke.display())))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|_| {
        Error::Usage(format!(
            "{} os capabilities did not answer (is it the spoke binary?): {}",
            spoke.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    })?;
    let vm = v["vm_version"].as_str().unwrap_or_default().to_string();
    let schema = v["schema_version"].as_u64().unwrap_or_default().to_string();
    Ok(vec![
        (VM_VERSION_KEY.into(), vm),
        (SCHEMA_VERSION_KEY.into(), schema),
    ])
}

/// Builds a UKI into `out`; returns its size.
pub fn build_uki(args: &UkiArgs, out: &Path, progress: &dyn Progress) -> Result<u64, Error> {
    let inputs = args.inputs.inputs();
    inputs.check()?;
    let epoch = image::source_date_epoch()?;
    let spoke = match &args.spoke {
        Some(p) => p.clone(),
        None => default_spoke()?,
    };
    let os = image::OsRelease {
        id: "eurocomply".into(),
        name: "EuroComply OS".into(),
        version: args.os_version.to_string(),
        extra: capabilities(&spoke)?,
    };
    let modules = if args.module.is_empty() {
        DEFAULT_MODULES.iter().map(|m| m.to_string()).collect()
    } else {
        args.module.clone()
    };
    let initramfs = image::build_initramfs(&image::InitramfsSpec {
        init: spoke,
        extra_bins: vec!["/sbin/mke2fs".into(), "/sbin/e2fsck".into()],
        modules_dir: inputs.modules.clone(),
        kernel_release: inputs.kernel_release()?,
        modules,
        os_release: os.text(),
        strip: !args.no_strip,
        epoch,
    })?;
    progress.inc(1);
    let n = image::build_uki(
        &image::UkiSpec {
            stub: inputs.stub.clone(),
            kernel: inputs.kernel.clone(),
            initramfs,
            cmdline: args.cmdline.clone(),
            os_release: os,
            epoch,
        },
        out,
    )?;
    progress.inc(1);
    Ok(n)
}

/// `hub image uki`.
pub fn uki(args: &UkiArgs, out: &Path) -> Result<serde_json::Value, Error> {
    let bar = TtyBar::new("building UKI", false);
    bar.set_len(2);
    let n = build_uki(args, out, &bar)?;
    Ok(serde_json::json!({ "file": out, "bytes": n, "os_version": args.os_version.to_string() }))
}

/// Where slot A's UKI comes from.
#[derive(Debug)]
pub enum SlotA {
    /// A UKI file.
    Uki(PathBuf),
    /// An OS bundle file.
    OsBundle(PathBuf),
    /// Built now from the [`UkiArgs`].
    Build,
}

/// Verifies an OS bundle file's chunks into `work` and reassembles its UKI there.
fn uki_from_os_bundle(file: &Path, work: &Path) -> Result<PathBuf, Error> {
    let store = bundles::chunks::ChunkStore::new(work.join("chunks"));
    let staged = bundles::bundle_file::read_bundle_file(file, &store)?;
    if staged.index.kind != bundles::index::BundleKind::Os {
        return Err(Error::Usage(format!(
            "{} is a {} bundle, not an OS bundle; build one with `hub os build`",
            file.display(),
            staged.index.kind.as_str()
        )));
    }
    let dest = work.join("os");
    let sources = bundles::verify::ChunkSources {
        installed: &store,
        staged: &store,
        medium: &store,
    };
    bundles::verify::assemble(
        &staged.index,
        &sources,
        &dest,
        &bundles::verify::Policy::sneakernet(),
        &(),
    )?;
    let name = staged.index.manifest["uki"].as_str().unwrap_or("uki.efi");
    Ok(dest.join(bundles::fsutil::safe_relative(name)?))
}

/// `hub image build`.
#[allow(clippy::too_many_arguments)]
pub fn build(
    out: &Path,
    qcow2: Option<PathBuf>,
    slot_a: SlotA,
    trust: &Path,
    repo: Option<&Path>,
    bundles_wanted: Vec<String>,
    esp_mib: u64,
    data_mib: u64,
    uki_args: &UkiArgs,
) -> Result<Built, Error> {
    let bar = TtyBar::new("building image", false);
    bar.set_len(4);
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let work = tempfile::tempdir_in(dir)
        .map_err(|e| Error::Usage(format!("create a work directory in {}: {e}", dir.display())))?;
    let root = std::fs::read(trust)
        .map_err(|e| Error::Usage(format!("read trust root {}: {e}", trust.display())))?;
    // Refuse a file that is not a signed root now, not on the appliance's first boot.
    bundles::verify::TrustState::from_root(&root, &trust.display().to_string())?;
    let data_root = work.path().join("data");
    let seed = data_root.join("seed");
    std::fs::create_dir_all(&seed)
        .map_err(|e| Error::Usage(format!("create {}: {e}", seed.display())))?;
    std::fs::write(seed.join("root.json"), &root)
        .map_err(|e| Error::Usage(format!("write the seed trust root: {e}")))?;
    if let Some(repo) = repo {
        if bundles_wanted.is_empty() {
            return Err(Error::Usage(
                "--repo needs at least one --product or --model".into(),
            ));
        }
        let opts = bundles::medium::ExportOptions {
            only: bundles_wanted,
            have: None,
            recipients: Vec::new(),
        };
        bundles::medium::export(repo, &seed.join("medium"), &opts, &())?;
    }
    bar.inc(1);
    let uki = match slot_a {
        SlotA::Uki(p) => Some(p),
        SlotA::OsBundle(f) => Some(uki_from_os_bundle(&f, work.path())?),
        SlotA::Build => None,
    };
    let (uki_path, uki_bytes) = match uki {
        Some(p) => {
            let n = std::fs::metadata(&p)
                .map_err(|e| Error::Usage(format!("read UKI {}: {e}", p.display())))?
                .len();
            bar.inc(2);
            (p, n)
        }
        None => {
            let p = work.path().join("slot-a.efi");
            let n = build_uki(uki_args, &p, &bar)?;
            (p, n)
        }
    };
    let inputs = uki_args.inputs.inputs();
    let disk = image::build_disk(
        &image::DiskSpec {
            systemd_boot: inputs.systemd_boot,
            uki: uki_path.clone(),
            seed: Some(data_root),
            esp_mib,
            data_mib,
            epoch: image::source_date_epoch()?,
            qcow2,
        },
        out,
    )?;
    bar.inc(1);
    let bytes = std::fs::read(&uki_path)
        .map_err(|e| Error::Usage(format!("read UKI {}: {e}", uki_path.display())))?;
    let os_version = image::uki::uki_version(&bytes).unwrap_or_default();
    Ok(Built {
        disk,
        os_version,
        uki_bytes,
    })
}

/// The signed metadata of an OS bundle: the capabilities its UKI states
/// (checked against `version`), its channel and urgency.
pub fn os_bundle_meta(
    uki: &Path,
    version: &semver::Version,
    channel: &str,
    urgency: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, Error> {
    let bytes =
        std::fs::read(uki).map_err(|e| Error::Usage(format!("read UKI {}: {e}", uki.display())))?;
    let osrel = image::uki::uki_os_release(&bytes).ok_or_else(|| {
        Error::Usage(format!(
            "{} has no .osrel section; build it with `hub image uki`",
            uki.display()
        ))
    })?;
    let field = |k: &str| image::OsRelease::field(&osrel, k);
    if field("VERSION_ID").as_deref() != Some(version.to_string().as_str()) {
        return Err(Error::Usage(format!(
            "--version {version} does not match the UKI's os-release VERSION_ID {:?}",
            field("VERSION_ID")
        )));
    }
    let (Some(vm), Some(schema)) = (field(VM_VERSION_KEY), field(SCHEMA_VERSION_KEY)) else {
        return Err(Error::Usage(format!(
            "{} does not state its kernel VM and schema versions; build it with `hub image uki`",
            uki.display()
        )));
    };
    let schema: u64 = schema
        .parse()
        .map_err(|_| Error::Usage(format!("{SCHEMA_VERSION_KEY}={schema:?} is not a number")))?;
    let mut m = serde_json::Map::new();
    m.insert(
        "capabilities".into(),
        serde_json::json!({ "vm_version": vm, "schema_version": schema }),
    );
    m.insert("channel".into(), channel.into());
    m.insert("urgency".into(), urgency.into());
    Ok(m)
}
