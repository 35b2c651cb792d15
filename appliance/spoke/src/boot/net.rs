//! IPv4 configuration from the kernel command line: `spoke.ip=dhcp` (the
//! default; leases from [`super::dhcp`], renewed by the supervisor),
//! `spoke.ip=ADDR/PREFIX` with optional `spoke.gw=ADDR` for fixed-address
//! sites, or `spoke.ip=none`; `spoke.if=NAME` picks the interface (default
//! `eth0`). Addresses and routes are set by the classic interface ioctls.
//! Networking never stops the appliance: without it, it serves USB media.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// A datagram socket to issue interface ioctls on, closed on drop.
struct Sock(libc::c_int);

impl Sock {
    fn new() -> Result<Sock, String> {
        // SAFETY: plain socket(2) call; the descriptor is owned by Sock.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        Ok(Sock(fd))
    }

    fn ioctl<T>(&self, what: &str, req: libc::c_ulong, arg: &mut T) -> Result<(), String> {
        self.try_ioctl(req, arg).map_err(|e| format!("{what}: {e}"))
    }

    fn try_ioctl<T>(&self, req: libc::c_ulong, arg: &mut T) -> std::io::Result<()> {
        // SAFETY: `arg` is the structure the request expects (ifreq or rtentry).
        let r = unsafe { libc::ioctl(self.0, req, arg as *mut T) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Sock {
    fn drop(&mut self) {
        // SAFETY: closing the descriptor this value owns.
        unsafe { libc::close(self.0) };
    }
}

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; this is how the API is used.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn ifreq(name: &str) -> Result<libc::ifreq, String> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= ifr.ifr_name.len() {
        return Err(format!("interface name {name:?} is too long"));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(ifr)
}

fn up(sock: &Sock, name: &str) -> Result<(), String> {
    let mut ifr = ifreq(name)?;
    sock.ioctl("SIOCGIFFLAGS", libc::SIOCGIFFLAGS, &mut ifr)?;
    // SAFETY: the flags member of the union was just filled by the kernel.
    unsafe {
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    sock.ioctl("SIOCSIFFLAGS", libc::SIOCSIFFLAGS, &mut ifr)
}

/// Brings the loopback interface up.
pub(crate) fn loopback_up() -> Result<(), String> {
    let sock = Sock::new()?;
    let mut ifr = ifreq("lo")?;
    ifr.ifr_ifru.ifru_addr = sockaddr(Ipv4Addr::LOCALHOST);
    let _ = sock.ioctl("SIOCSIFADDR lo", libc::SIOCSIFADDR, &mut ifr);
    up(&sock, "lo")
}

/// Parses `ADDR/PREFIX`.
pub(crate) fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (a, p) = s.split_once('/').unwrap_or((s, "24"));
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| format!("spoke.ip: {a:?} is not an IPv4 address"))?;
    let prefix: u8 = p
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| format!("spoke.ip: prefix {p:?} is not 0..=32"))?;
    Ok((addr, prefix))
}

/// Waits for `iface` to appear (its driver is a module).
fn wait_for(iface: &str, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    while !std::path::Path::new("/sys/class/net").join(iface).exists() {
        if Instant::now() > deadline {
            return Err(format!(
                "network interface {iface} did not appear within {within:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Sets the address and netmask of `iface`, brings it up and adds the default route.
fn set_address(
    iface: &str,
    addr: Ipv4Addr,
    prefix: u8,
    gw: Option<Ipv4Addr>,
) -> Result<(), String> {
    let sock = Sock::new()?;
    let mut ifr = ifreq(iface)?;
    ifr.ifr_ifru.ifru_addr = sockaddr(addr);
    sock.ioctl("SIOCSIFADDR", libc::SIOCSIFADDR, &mut ifr)?;
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    let mut ifr = ifreq(iface)?;
    ifr.ifr_ifru.ifru_netmask = sockaddr(Ipv4Addr::from(mask));
    sock.ioctl("SIOCSIFNETMASK", libc::SIOCSIFNETMASK, &mut ifr)?;
    up(&sock, iface)?;
    if let Some(gw) = gw {
        // SAFETY: rtentry is plain old data; all-zero is a valid value.
        let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
        rt.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_gateway = sockaddr(gw);
        rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
        match sock.try_ioctl(libc::SIOCADDRT, &mut rt) {
            // The same route from an earlier lease.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            r => r.map_err(|e| format!("SIOCADDRT: {e}"))?,
        }
    }
    super::log(format!(
        "{iface}: {addr}/{prefix}{}",
        gw.map(|g| format!(" via {g}")).unwrap_or_default()
    ));
    Ok(())
}

/// How the network is configured, and the DHCP lease to keep.
pub(crate) enum Network {
    /// No networking, or a fixed address.
    Fixed,
    /// DHCP on an interface; `lease` is None until a server answers.
    Dhcp {
        iface: String,
        lease: Option<super::dhcp::Lease>,
        next_try: Instant,
    },
}

/// Configures the network as the command line says. Failures are logged,
/// never fatal: an appliance without a network still serves USB media.
pub(crate) fn start(cmd: &super::cmdline::Cmdline) -> Network {
    let iface = cmd.get("spoke.if").unwrap_or("eth0").to_string();
    let ip = cmd.get("spoke.ip").unwrap_or("dhcp");
    if ip == "none" {
        super::log("networking is off (spoke.ip=none)");
        return Network::Fixed;
    }
    if let Err(e) = wait_for(&iface, Duration::from_secs(30)) {
        super::log(format!("network: {e}; running without a network"));
        return Network::Fixed;
    }
    if ip != "dhcp" {
        let configured = parse_cidr(ip).and_then(|(addr, prefix)| {
            let gw = match cmd.get("spoke.gw") {
                Some(g) => Some(
                    g.parse()
                        .map_err(|_| format!("spoke.gw: {g:?} is not an IPv4 address"))?,
                ),
                None => None,
            };
            set_address(&iface, addr, prefix, gw)
        });
        if let Err(e) = configured {
            super::log(format!("network: {e}; running without a network"));
        }
        return Network::Fixed;
    }
    let mut net = Network::Dhcp {
        iface,
        lease: None,
        next_try: Instant::now(),
    };
    net.tick(Duration::from_secs(30));
    net
}

impl Network {
    /// Renews the lease when due, or asks for one again when there is none;
    /// waits at most `within`.
    pub(crate) fn tick(&mut self, within: Duration) {
        let Network::Dhcp {
            iface,
            lease,
            next_try,
        } = self
        else {
            return;
        };
        let now = Instant::now();
        let result = match lease {
            Some(l) if l.renewal_due(now) => super::dhcp::renew(iface, l, within),
            Some(_) => return,
            None if now < *next_try => return,
            None => {
                let sock = match Sock::new() {
                    Ok(s) => s,
                    Err(e) => return super::log(format!("network: {e}")),
                };
                if let Err(e) = up(&sock, iface) {
                    return super::log(format!("network: bring {iface} up: {e}"));
                }
                super::dhcp::acquire(iface, within)
            }
        };
        match result {
            Ok(new) => {
                super::log(format!("DHCP: {new}"));
                let changed = lease.as_ref().is_none_or(|l| l.addr != new.addr);
                if changed {
                    if let Err(e) = set_address(iface, new.addr, new.prefix, new.router) {
                        super::log(format!("network: {e}"));
                    }
                }
                *lease = Some(new);
            }
            Err(e) => {
                super::log(format!("DHCP: {e}; trying again in a minute"));
                // A lease that could not be renewed stays in use until a
                // server answers; without one, ask again later.
                if let Some(l) = lease.as_mut() {
                    l.postpone(Duration::from_secs(60));
                }
                *next_try = now + Duration::from_secs(60);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cidr() {
        assert_eq!(
            super::parse_cidr("10.0.2.15/24").unwrap(),
            ("10.0.2.15".parse().unwrap(), 24)
        );
        assert!(super::parse_cidr("10.0.2.15/33").is_err());
        assert!(super::parse_cidr("nope/8").is_err());
    }
}
