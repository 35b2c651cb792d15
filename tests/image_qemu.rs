//! The appliance image, booted for real: `hub image build` makes a GPT disk
//! that OVMF boots through systemd-boot into `spoke` as PID 1 (qemu, TCG,
//! user networking restricted to a host-forwarded port on 127.0.0.1).
//!
//! Needs the inputs `ci/fetch-image-inputs.sh` fetches (kernel, stub,
//! systemd-boot, OVMF) and qemu-system-x86. Without them the tests say so and
//! pass, unless `EUROCOMPLY_REQUIRE_QEMU=1` (set by ci/test.sh) makes that a
//! failure.

mod common;

use common::Env;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EPOCH: &str = "1700000000";

/// The input cache, or `None` (skip) when it or qemu is missing.
fn inputs() -> Option<PathBuf> {
    let dir = common::root().join(".cache/image-inputs");
    let have_qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if dir.join("OVMF_CODE.fd").exists() && dir.join("vmlinuz").exists() && have_qemu {
        return Some(dir);
    }
    assert!(
        std::env::var_os("EUROCOMPLY_REQUIRE_QEMU").is_none(),
        "qemu or the image inputs are missing; run ci/fetch-image-inputs.sh"
    );
    eprintln!(
        "skipped: run ci/fetch-image-inputs.sh and install qemu-system-x86 to boot the image"
    );
    None
}

/// A repository with a product (seeded on the image) and an extra pack
/// exported to `stick` (carried on the USB stick).
fn repo_with_product(env: &Env) {
    env.init_repo(&[]);
    let rules = env.pack_src("src/rules", "@eu/rules", "2.0.0", &[("t", b"rules")]);
    env.build_publish(&rules, "rules.bundle", &[]);
    std::fs::write(
        env.path("product.yaml"),
        "product:\n  id: \"demo-product\"\n  name: \"Demo\"\n  version: \"1.0.0\"\nos:\n  version: \"^0.1.0\"\npacks:\n  - name: \"@eu/rules\"\n    version: \"^2.0.0\"\n    type: intelligence\n    required: true\n",
    )
    .unwrap();
    env.product_publish(&env.s("product.yaml"), &env.s("product.bundle"), &[]);
    let extra = env.pack_src("src/extra", "@eu/extra", "1.0.0", &[("t", b"extra")]);
    env.build_publish(&extra, "extra.bundle", &[]);
    env.export("stick", &["--only", "@eu/extra"]);
}

fn build_image(env: &Env, inputs: &Path, out: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "image".to_string(),
        "build".into(),
        "--out".into(),
        env.s(out),
        "--trust".into(),
        env.s("repo/metadata/1.root.json"),
        "--inputs".into(),
        inputs.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.hub_env(&args, &[("SOURCE_DATE_EPOCH", EPOCH)]).ok()
}

/// A file system image of `dir` (ext4, no partition table), as a USB stick.
fn stick_image(dir: &Path, out: &Path) {
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "stick", "-d"])
        .arg(dir)
        .arg(out)
        .arg("64M")
        .status()
        .unwrap();
    assert!(st.success());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running qemu, killed on drop.
struct Vm {
    child: std::process::Child,
    port: u16,
    serial: PathBuf,
    started: Instant,
}

impl Vm {
    fn boot(inputs: &Path, work: &Path, disk: &Path, stick: Option<&Path>) -> Vm {
        let vars = work.join("OVMF_VARS.fd");
        if !vars.exists() {
            std::fs::copy(inputs.join("OVMF_VARS.fd"), &vars).unwrap();
        }
        let port = free_port();
        let serial = work.join(format!("serial-{port}.log"));
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-machine", "q35", "-m", "1024", "-smp", "2", "-accel", "tcg",
        ])
        .args(["-display", "none", "-monitor", "stdio"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            inputs.join("OVMF_CODE.fd").display()
        ))
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars.display()
        ))
        .arg("-drive")
        .arg(format!("if=virtio,format=raw,file={}", disk.display()))
        .arg("-netdev")
        .arg(format!(
            "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:443"
        ))
        .args(["-device", "virtio-net-pci,netdev=n0"]);
        if let Some(stick) = stick {
            cmd.args(["-device", "qemu-xhci,id=xhci"])
                .arg("-drive")
                .arg(format!(
                    "if=none,id=stick,format=raw,readonly=on,file={}",
                    stick.display()
                ))
                .args(["-device", "usb-storage,bus=xhci.0,drive=stick"]);
        }
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start qemu-system-x86_64");
        Vm {
            child,
            port,
            serial,
            started: Instant::now(),
        }
    }

    fn serial(&self) -> String {
        std::fs::read_to_string(&self.serial).unwrap_or_default()
    }

    /// Polls until the console shows `needle`, or fails with the console.
    fn wait_console(&self, needle: &str, within: Duration) {
        self.wait_console_after(0, needle, within);
    }

    /// Polls until the console shows `needle` after byte `from` (the console
    /// of one qemu run spans its reboots); returns where the match ends.
    fn wait_console_after(&self, from: usize, needle: &str, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let text = self.serial();
            if let Some(i) = text.get(from..).and_then(|t| t.find(needle)) {
                return from + i + needle.len();
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} on the console within {within:?}:\n{}",
                text.get(from..).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills qemu at once (power cut).
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Polls `GET /health` over HTTPS until it answers 200; returns the seconds since qemu started.
    fn wait_health(&self, within: Duration) -> f64 {
        let deadline = Instant::now() + within;
        loop {
            let out = Command::new("curl")
                .args([
                    "-sk",
                    "--max-time",
                    "5",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                ])
                .arg(format!("https://127.0.0.1:{}/health", self.port))
                .output()
                .unwrap();
            if out.stdout == b"200" {
                return self.started.elapsed().as_secs_f64();
            }
            assert!(
                Instant::now() < deadline,
                "/health did not answer within {within:?}:\n{}",
                self.serial()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Presses the power button and waits for the guest to power off.
    fn power_off(mut self, within: Duration) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"system_powerdown\n").unwrap();
        stdin.flush().unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "qemu: {st}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the guest did not power off within {within:?}:\n{}",
                self.serial()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // `spoke serve` stops on PID 1's SIGTERM instead of being killed.
        assert!(
            !self.serial().contains("did not stop"),
            "the API had to be killed at power-off:\n{}",
            self.serial()
        );
        assert!(self.serial().contains("stopped cleanly"));
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies the data partition out of `disk` (by its GPT entry), checks it
/// with `e2fsck -n` (a clean shutdown leaves nothing to fix), and dumps the
/// spoke's data directory to `to` with `debugfs`; no root needed.
fn extract_data_dir(disk: &Path, work: &Path, to: &Path) {
    let table = Command::new("sfdisk")
        .arg("--json")
        .arg(disk)
        .output()
        .unwrap();
    let table: serde_json::Value = serde_json::from_slice(&table.stdout).unwrap();
    let part = table["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "eurocomply-data")
        .expect("a partition named eurocomply-data")
        .clone();
    let (start, size) = (
        part["start"].as_u64().unwrap() * 512,
        part["size"].as_u64().unwrap() * 512,
    );
    let data = work.join("data-part.img");
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(disk).unwrap();
        f.seek(SeekFrom::Start(start)).unwrap();
        let mut out = std::fs::File::create(&data).unwrap();
        std::io::copy(&mut f.take(size), &mut out).unwrap();
    }
    let fsck = Command::new("e2fsck")
        .args(["-fn"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "the data partition is not clean after power-off:\n{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    std::fs::create_dir_all(to).unwrap();
    let dump = Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump /spoke {}", to.display()))
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
}

#[test]
fn the_image_is_reproducible() {
    let Some(inputs) = inputs() else { return };
    let env = Env::new();
    env.init_repo(&[]);
    let uki = |out: &str| {
        env.hub_env(
            &[
                "image",
                "uki",
                "--out",
                &env.s(out),
                "--inputs",
                &inputs.display().to_string(),
                "--os-version",
                "1.0.0",
            ],
            &[("SOURCE_DATE_EPOCH", EPOCH)],
        )
        .ok()
    };
    uki("a.efi");
    uki("b.efi");
    assert_eq!(
        std::fs::read(env.path("a.efi")).unwrap(),
        std::fs::read(env.path("b.efi")).unwrap()
    );
    let one = build_image(&env, &inputs, "one.img", &["--uki", &env.s("a.efi")]);
    let two = build_image(&env, &inputs, "two.img", &["--uki", &env.s("a.efi")]);
    assert_eq!(one["sha256"], two["sha256"]);
    assert_eq!(one["os_version"], "1.0.0");
    assert_eq!(
        std::fs::read(env.path("one.img")).unwrap(),
        std::fs::read(env.path("two.img")).unwrap()
    );
    // A different epoch changes the time stamps, hence the bytes.
    let other = env
        .hub_env(
            &[
                "image",
                "build",
                "--out",
                &env.s("three.img"),
                "--trust",
                &env.s("repo/metadata/1.root.json"),
                "--uki",
                &env.s("a.efi"),
            ],
            &[("SOURCE_DATE_EPOCH", "1700000001")],
        )
        .ok();
    assert_ne!(one["sha256"], other["sha256"]);
}

#[test]
fn the_image_boots_to_a_healthy_api_and_installs_from_a_usb_stick() {
    let Some(inputs) = inputs() else { return };
    let env = Env::new();
    repo_with_product(&env);
    let built = build_image(
        &env,
        &inputs,
        "disk.img",
        &[
            "--repo",
            &env.s("repo"),
            "--product",
            "demo-product",
            "--product",
            "@eu/rules",
            "--qcow2",
            &env.s("disk.qcow2"),
        ],
    );
    assert!(env.path("disk.qcow2").exists());
    eprintln!("image: {built}");
    stick_image(&env.path("stick"), &env.path("stick.img"));

    let vm = Vm::boot(
        &inputs,
        env.dir.path(),
        &env.path("disk.img"),
        Some(&env.path("stick.img")),
    );
    let secs = vm.wait_health(Duration::from_secs(300));
    eprintln!("healthy API {secs:.1} s after qemu started (TCG)");
    vm.wait_console("EUROCOMPLY-READY", Duration::from_secs(30));
    // The address came from qemu's DHCP server (the default command line;
    // `restrict=on` means it offers no router).
    vm.wait_console("DHCP: 10.0.2.15/24 for ", Duration::from_secs(1));
    // The stick's pack goes through the ordinary import pipeline.
    vm.wait_console("1 installed", Duration::from_secs(120));
    vm.power_off(Duration::from_secs(120));

    // The data directory the appliance wrote, opened by the host's spoke.
    let data = env.path("extracted");
    extract_data_dir(&env.path("disk.img"), env.dir.path(), &data);
    let all = env
        .spoke(&[
            "bundles",
            "--data",
            &data.join("spoke").display().to_string(),
        ])
        .ok();
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    for want in ["demo-product", "@eu/rules", "@eu/extra"] {
        assert!(names.contains(&want), "{want} not installed: {names:?}");
    }
}

/// `hub image uki` for `version` with `cmdline`, then `hub os build` and publish.
fn publish_os(env: &Env, inputs: &Path, version: &str, cmdline: Option<&str>) {
    let uki = format!("os-{version}.efi");
    let mut args = vec![
        "image".to_string(),
        "uki".into(),
        "--out".into(),
        env.s(&uki),
        "--inputs".into(),
        inputs.display().to_string(),
        "--os-version".into(),
        version.into(),
    ];
    if let Some(c) = cmdline {
        args.push("--cmdline".into());
        args.push(c.into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.hub_env(&args, &[("SOURCE_DATE_EPOCH", EPOCH)]).ok();
    let bundle = format!("os-{version}.bundle");
    let built = env
        .hub(&[
            "os",
            "build",
            "--uki",
            &env.s(&uki),
            "--version",
            version,
            "--out",
            &env.s(&bundle),
        ])
        .ok();
    assert_eq!(built["kind"], "os");
    env.publish(&env.s(&bundle), &[]);
}

/// What the ESP of `disk` holds in EFI/Linux (mtools, no root).
fn slot_files(disk: &Path) -> Vec<String> {
    let out = Command::new("mdir")
        .args(["-b", "-i"])
        .arg(format!("{}@@1M", disk.display()))
        .arg("::/EFI/Linux")
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

#[test]
fn os_updates_come_by_usb_and_fall_back_by_themselves() {
    let Some(inputs) = inputs() else { return };
    let env = Env::new();
    env.init_repo(&[]);
    let work = env.dir.path();
    // Slot A comes from the signed OS bundle v1, as a factory image would.
    publish_os(&env, &inputs, "1.0.0", None);
    let built = build_image(
        &env,
        &inputs,
        "disk.img",
        &["--os-bundle", &env.s("os-1.0.0.bundle")],
    );
    assert_eq!(built["os_version"], "1.0.0");

    // v1 → v2 from a stick: written to slot b with 3 tries, booted, blessed.
    publish_os(&env, &inputs, "2.0.0", None);
    env.export("stick2", &[]);
    stick_image(&env.path("stick2"), &env.path("stick2.img"));
    let vm = Vm::boot(
        &inputs,
        work,
        &env.path("disk.img"),
        Some(&env.path("stick2.img")),
    );
    let at = vm.wait_console_after(
        0,
        "EUROCOMPLY-READY os=1.0.0 slot=a",
        Duration::from_secs(300),
    );
    let applying = Instant::now();
    let at = vm.wait_console_after(at, "written to slot b", Duration::from_secs(180));
    let at = vm.wait_console_after(at, "blessed", Duration::from_secs(300));
    vm.wait_console_after(
        at,
        "EUROCOMPLY-READY os=2.0.0 slot=b",
        Duration::from_secs(30),
    );
    eprintln!(
        "OS update v1 → v2 applied and healthy in {:.1} s (TCG)",
        applying.elapsed().as_secs_f64()
    );
    vm.wait_health(Duration::from_secs(30));
    vm.power_off(Duration::from_secs(120));
    assert_eq!(
        slot_files(&env.path("disk.img")),
        ["eurocomply-a.efi", "eurocomply-b.efi"]
    );

    // A broken v3 (it cannot find its data partition): power is cut while it
    // is being written, then it is written again, fails three boots, and
    // systemd-boot goes back to v2 by itself, which never retries v3.
    publish_os(
        &env,
        &inputs,
        "3.0.0",
        Some("console=ttyS0,115200 panic=5 quiet spoke.ip=10.0.2.15/24 spoke.data=absent spoke.wait=3"),
    );
    env.export("stick3", &[]);
    stick_image(&env.path("stick3"), &env.path("stick3.img"));
    let vm = Vm::boot(
        &inputs,
        work,
        &env.path("disk.img"),
        Some(&env.path("stick3.img")),
    );
    let at = vm.wait_console_after(
        0,
        "EUROCOMPLY-READY os=2.0.0 slot=b",
        Duration::from_secs(300),
    );
    vm.wait_console_after(at, "writing OS 3.0.0 into slot a", Duration::from_secs(180));
    vm.kill();
    let files = slot_files(&env.path("disk.img"));
    eprintln!("ESP after the power cut: {files:?}");

    let vm = Vm::boot(
        &inputs,
        work,
        &env.path("disk.img"),
        Some(&env.path("stick3.img")),
    );
    let at = vm.wait_console_after(0, "EUROCOMPLY-READY os=", Duration::from_secs(300));
    assert!(
        vm.serial()[at..].starts_with("2.0.0 slot=b"),
        "the boot after a power cut mid-write must run v2:\n{}",
        vm.serial()
    );
    let at = vm.wait_console_after(at, "written to slot a", Duration::from_secs(180));
    let mut from = at;
    for _ in 0..3 {
        from = vm.wait_console_after(from, "boot failed", Duration::from_secs(300));
    }
    let at = vm.wait_console_after(
        from,
        "EUROCOMPLY-READY os=2.0.0 slot=b",
        Duration::from_secs(300),
    );
    vm.wait_console_after(
        at,
        "3.0.0 failed to boot here before",
        Duration::from_secs(60),
    );
    vm.power_off(Duration::from_secs(120));
    assert_eq!(
        slot_files(&env.path("disk.img")),
        ["eurocomply-a+0-3.efi", "eurocomply-b.efi"]
    );
}
