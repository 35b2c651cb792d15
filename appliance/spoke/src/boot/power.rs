//! The power button: watches input devices for KEY_POWER and turns a press
//! into SIGTERM for PID 1, which then shuts down cleanly.

use std::io::Read;

const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;
/// `struct input_event` on 64-bit: timeval (16), type (2), code (2), value (4).
const EVENT_SIZE: usize = 24;

/// Starts one watcher thread per input device that exists now.
pub(crate) fn watch() {
    let Ok(dir) = std::fs::read_dir("/dev/input") else {
        super::log("no /dev/input: the power button is not watched");
        return;
    };
    for e in dir.flatten() {
        let path = e.path();
        if !e.file_name().to_string_lossy().starts_with("event") {
            continue;
        }
        let Ok(mut f) = std::fs::File::open(&path) else {
            continue;
        };
        std::thread::spawn(move || {
            let mut buf = [0u8; EVENT_SIZE];
            while f.read_exact(&mut buf).is_ok() {
                if is_power_press(&buf) {
                    super::log("power button pressed");
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(1),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
        });
    }
}

fn is_power_press(ev: &[u8; EVENT_SIZE]) -> bool {
    let ty = u16::from_ne_bytes([ev[16], ev[17]]);
    let code = u16::from_ne_bytes([ev[18], ev[19]]);
    let value = i32::from_ne_bytes([ev[20], ev[21], ev[22], ev[23]]);
    ty == EV_KEY && code == KEY_POWER && value == 1
}

#[cfg(test)]
mod tests {
    #[test]
    fn power_press() {
        let mut ev = [0u8; super::EVENT_SIZE];
        ev[16..18].copy_from_slice(&1u16.to_ne_bytes());
        ev[18..20].copy_from_slice(&116u16.to_ne_bytes());
        ev[20..24].copy_from_slice(&1i32.to_ne_bytes());
        assert!(super::is_power_press(&ev));
        ev[20..24].copy_from_slice(&0i32.to_ne_bytes());
        assert!(!super::is_power_press(&ev));
    }
}
