//! `spoke` as PID 1 on the appliance image: mounts the kernel's file systems,
//! loads the kernel modules in the initramfs, finds and mounts the data
//! partition by its GPT name, configures the network from the kernel command
//! line (DHCP by default), initialises the data directory from the seed on
//! first boot, checks the OS's health (`spoke os check`), runs the API (`spoke
//! serve`) as a child, waits for it to answer and only then blesses the boot
//! entry, renews the DHCP lease, mounts USB sticks read-only for the media watcher, reaps
//! children, and on SIGTERM/SIGINT/SIGPWR (or Ctrl-Alt-Del) stops the API,
//! unmounts and powers off.
//!
//! Each step lives in its own module; this one only sequences them. A failed
//! step before the API is healthy reboots without blessing, so systemd-boot
//! counts the failed try and falls back to the previous slot when tries run out.

mod cmdline;
mod dhcp;
mod disks;
mod kmod;
mod net;
mod power;
pub mod slots;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the data partition is mounted.
const DATA_MOUNT: &str = "/data";
/// Where removable media are mounted (watched by the API process).
const MEDIA_DIR: &str = "/run/media";
/// Where the ESP is mounted while slots change.
pub const ESP_MOUNT: &str = "/boot";

fn log(msg: impl std::fmt::Display) {
    eprintln!("spoke-init: {msg}");
}

/// Runs the appliance as PID 1. Never returns: it powers off or reboots.
pub fn pid1() -> ! {
    // Blocked before any thread starts, so every thread inherits the mask and
    // termination signals wait in the signalfd (an unblocked thread would
    // take them, and the kernel drops default-action signals sent to PID 1).
    let signals = termination_signals();
    if let Err(e) = signals.thread_block() {
        log(format!("cannot block signals: {e}"));
    }
    let cmd = match early() {
        Ok(c) => c,
        Err(e) => fail(&format!("early setup: {e}")),
    };
    let port = cmd
        .get("spoke.port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(443u16);
    let started = match start(&cmd, port) {
        Ok(s) => s,
        Err(e) => fail(&e),
    };
    match slots::bless_booted(Path::new(ESP_MOUNT)) {
        Ok(Some(entry)) => log(format!("healthy; boot entry {entry} blessed")),
        Ok(None) => log("healthy; boot entry already blessed"),
        Err(e) => log(format!(
            "healthy, but the boot entry could not be blessed: {e}"
        )),
    }
    let version = crate::os::running_version()
        .map(|v| v.to_string())
        .unwrap_or_default();
    let slot = slots::booted_entry()
        .and_then(|e| slots::slot_of_entry(&e))
        .map(String::from)
        .unwrap_or_default();
    // One line the operator (and the qemu tests) can look for on the console.
    println!("EUROCOMPLY-READY os={version} slot={slot} port={port}");
    supervise(started, &signals)
}

fn termination_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGPWR,
        Signal::SIGCHLD,
        Signal::SIGUSR2,
    ] {
        set.add(s);
    }
    set
}

/// Reboots after a failure before the API became healthy: the entry stays
/// unblessed, so systemd-boot counts the try.
fn fail(msg: &str) -> ! {
    log(format!(
        "boot failed: {msg}; rebooting (this boot entry is not blessed)"
    ));
    shutdown(None, nix::sys::reboot::RebootMode::RB_AUTOBOOT)
}

fn early() -> Result<cmdline::Cmdline, String> {
    disks::mount_kernel_filesystems()?;
    let _ = nix::sys::reboot::set_cad_enabled(false);
    let cmd = cmdline::Cmdline::read()?;
    let loaded = kmod::load_all().map_err(|e| format!("kernel modules: {e}"))?;
    log(format!("{loaded} kernel modules loaded"));
    let _ = disks::mount_efivarfs();
    power::watch();
    Ok(cmd)
}

struct Started {
    api_pid: i32,
    net: net::Network,
}

fn start(cmd: &cmdline::Cmdline, port: u16) -> Result<Started, String> {
    let name = cmd
        .get("spoke.data")
        .unwrap_or(image::DATA_PART_NAME)
        .to_string();
    let wait = cmd
        .get("spoke.wait")
        .and_then(|w| w.parse().ok())
        .unwrap_or(60);
    let dev = disks::wait_for_partition(&name, Duration::from_secs(wait))?;
    disks::prepare_data(&dev, Path::new(DATA_MOUNT))?;
    net::loopback_up()?;
    let net = net::start(cmd);
    let data = Path::new(DATA_MOUNT).join("spoke");
    first_boot(&data)?;
    // The OS's own health: stores open, migrations applied, integrity and
    // audit chain intact, every installed pack runs on this kernel VM.
    run_self(&[
        "os".as_ref(),
        "check".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
    ])?;
    std::fs::create_dir_all(MEDIA_DIR).map_err(|e| format!("create {MEDIA_DIR}: {e}"))?;
    let api_pid = start_api(&data, port)?;
    health(port, Duration::from_secs(60))?;
    Ok(Started { api_pid, net })
}

/// Initialises the data directory from the seed the image carries, then
/// imports the seed medium (products, models) through the ordinary pipeline.
fn first_boot(data: &Path) -> Result<(), String> {
    if appliance::DataDir::new(data).marker().exists() {
        return Ok(());
    }
    let seed = Path::new(DATA_MOUNT).join("seed");
    let trust = seed.join("root.json");
    log("first boot: initialising the data directory");
    run_self(&[
        "init".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--trust".as_ref(),
        trust.as_os_str(),
    ])?;
    let medium = seed.join("medium");
    if medium.join("medium.json").is_file() {
        log("first boot: importing the seed medium");
        run_self(&[
            "import".as_ref(),
            "--data".as_ref(),
            data.as_os_str(),
            medium.as_os_str(),
        ])?;
    }
    Ok(())
}

fn self_exe() -> PathBuf {
    PathBuf::from("/proc/self/exe")
}

/// A command for a child of PID 1. Children inherit the signal mask, and
/// PID 1 blocks the termination signals (they wait in its signalfd), so the
/// child unblocks them before it runs: otherwise `spoke serve` would never
/// see SIGTERM.
pub(super) fn command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let set = termination_signals();
    let mut c = std::process::Command::new(program);
    // SAFETY: runs between fork and exec; it only calls sigprocmask, which
    // is async-signal-safe, on a set built before the fork.
    unsafe {
        c.pre_exec(move || {
            nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_UNBLOCK,
                Some(&set),
                None,
            )
            .map_err(std::io::Error::from)
        });
    }
    c
}

/// Runs a `spoke` subcommand to completion (this same binary, not as PID 1).
fn run_self(args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let mut child = command(self_exe())
        .args(args)
        .spawn()
        .map_err(|e| format!("start spoke {args:?}: {e}"))?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // Reap by pid so a concurrent reap of orphans cannot steal the status.
    let status =
        nix::sys::wait::waitpid(pid, None).map_err(|e| format!("wait for spoke {args:?}: {e}"))?;
    let _ = child.try_wait();
    match status {
        nix::sys::wait::WaitStatus::Exited(_, 0) => Ok(()),
        other => Err(format!("spoke {args:?} failed: {other:?}")),
    }
}

/// Starts `spoke serve` and waits for its ready line.
fn start_api(data: &Path, port: u16) -> Result<i32, String> {
    let mut child = command(self_exe())
        .arg("--json")
        .arg("serve")
        .arg("--data")
        .arg(data)
        .arg("--addr")
        .arg(format!("0.0.0.0:{port}"))
        .arg("--watch")
        .arg(MEDIA_DIR)
        .arg("--watch-every")
        .arg("2")
        .arg("--esp")
        .arg(ESP_MOUNT)
        .env("SPOKE_LOG", "warn,spoke=info")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("start the API: {e}"))?;
    let pid = child.id() as i32;
    let stdout = child
        .stdout
        .take()
        .ok_or("the API's standard output is missing")?;
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("read the API's ready line: {e}"))?;
    if !line.contains("listening") {
        return Err(format!("the API did not start (said {line:?})"));
    }
    log(format!("API started: {}", line.trim()));
    // Keep the pipe open (and its output visible) for as long as the API runs.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut reader, &mut std::io::stdout());
    });
    Ok(pid)
}

/// The health check: the API accepts connections on its port.
fn health(port: u16, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("health check: nothing answers on {addr}: {e}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The supervisor loop: reaps children, mounts new USB media, and shuts down
/// on a termination signal.
fn supervise(mut started: Started, set: &nix::sys::signal::SigSet) -> ! {
    use nix::sys::signal::Signal;
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let sfd = match SignalFd::with_flags(set, SfdFlags::SFD_NONBLOCK) {
        Ok(f) => Some(f),
        Err(e) => {
            log(format!(
                "no signalfd ({e}); termination signals are not handled"
            ));
            None
        }
    };
    let mut media = disks::Media::default();
    let mut api_running = true;
    let mut tick: u64 = 0;
    let mut last_reason = String::new();
    loop {
        tick += 1;
        media.scan(Path::new(MEDIA_DIR));
        reap(started.api_pid, &mut api_running);
        started.net.tick(Duration::from_secs(3));
        if tick.is_multiple_of(10) && os_update_written(&mut last_reason) {
            media.unmount_all();
            let api = api_running.then_some(started.api_pid);
            log("rebooting into the new OS");
            shutdown(api, nix::sys::reboot::RebootMode::RB_AUTOBOOT);
        }
        let Some(sfd) = &sfd else {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        };
        wait_readable(sfd, 1000);
        while let Ok(Some(info)) = sfd.read_signal() {
            let sig = info.ssi_signo as i32;
            if [
                Signal::SIGTERM,
                Signal::SIGINT,
                Signal::SIGPWR,
                Signal::SIGUSR2,
            ]
            .iter()
            .any(|s| *s as i32 == sig)
            {
                log(format!("signal {sig}: shutting down"));
                media.unmount_all();
                let api = api_running.then_some(started.api_pid);
                shutdown(api, nix::sys::reboot::RebootMode::RB_POWER_OFF);
            }
        }
    }
}

/// Runs `spoke os auto`; true when it wrote a new OS into the other slot.
/// Logs why nothing was applied when that changes.
fn os_update_written(last_reason: &mut String) -> bool {
    let data = Path::new(DATA_MOUNT).join("spoke");
    let out = command(self_exe())
        .arg("--json")
        .args(["os", "auto", "--data"])
        .arg(&data)
        .arg("--esp")
        .arg(ESP_MOUNT)
        .env("SPOKE_LOG", "warn,spoke=info")
        .stderr(std::process::Stdio::inherit())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            if v["installed"].is_object() {
                log(format!(
                    "OS {} written to slot {}",
                    v["installed"]["version"].as_str().unwrap_or("?"),
                    v["installed"]["slot"].as_str().unwrap_or("?")
                ));
                return true;
            }
            let reason = v["reason"].as_str().unwrap_or_default();
            if reason != last_reason {
                log(format!("OS update: {reason}"));
                *last_reason = reason.to_string();
            }
            false
        }
        Ok(o) => {
            log(format!("OS update check failed ({})", o.status));
            false
        }
        Err(e) => {
            log(format!("OS update check could not run: {e}"));
            false
        }
    }
}

fn wait_readable(sfd: &nix::sys::signalfd::SignalFd, ms: u16) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
    let _ = poll(&mut fds, PollTimeout::from(ms));
}

/// Reaps every exited child (orphans included).
fn reap(api_pid: i32, api_running: &mut bool) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(status) => {
                if status.pid().map(|p| p.as_raw()) == Some(api_pid) {
                    *api_running = false;
                    log(format!("the API process ended: {status:?}"));
                }
            }
        }
    }
}

/// Stops the API (SIGTERM, then up to 20 s), syncs, unmounts and powers off or reboots.
fn shutdown(api: Option<i32>, mode: nix::sys::reboot::RebootMode) -> ! {
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    if let Some(pid) = api {
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Ok(WaitStatus::StillAlive) => {
                    log("the API did not stop in 20 s; killing it");
                    let _ = kill(pid, Signal::SIGKILL);
                    let _ = waitpid(pid, None);
                    break;
                }
                _ => break,
            }
        }
    }
    nix::unistd::sync();
    disks::unmount_all(&[ESP_MOUNT, MEDIA_DIR, DATA_MOUNT]);
    nix::unistd::sync();
    log("stopped cleanly");
    let _ = nix::sys::reboot::reboot(mode);
    // reboot(2) only returns on error; PID 1 must not exit.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
