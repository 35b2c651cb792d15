//! Static IPv4 configuration from the kernel command line
//! (`spoke.ip=ADDR/PREFIX`, optional `spoke.gw=ADDR`), by the classic
//! interface ioctls: enough for qemu's user networking and fixed-address sites.

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
        // SAFETY: `arg` is the structure the request expects (ifreq or rtentry).
        let r = unsafe { libc::ioctl(self.0, req, arg as *mut T) };
        if r < 0 {
            return Err(format!("{what}: {}", std::io::Error::last_os_error()));
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

/// Waits for `iface` to appear (its driver is a module), then sets its
/// address and netmask, brings it up and adds the default route.
pub(crate) fn configure(
    iface: &str,
    cidr: &str,
    gw: Option<&str>,
    within: Duration,
) -> Result<(), String> {
    let (addr, prefix) = parse_cidr(cidr)?;
    let deadline = Instant::now() + within;
    while !std::path::Path::new("/sys/class/net").join(iface).exists() {
        if Instant::now() > deadline {
            return Err(format!(
                "network interface {iface} did not appear within {within:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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
        let gw: Ipv4Addr = gw
            .parse()
            .map_err(|_| format!("spoke.gw: {gw:?} is not an IPv4 address"))?;
        // SAFETY: rtentry is plain old data; all-zero is a valid value.
        let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
        rt.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_gateway = sockaddr(gw);
        rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
        sock.ioctl("SIOCADDRT", libc::SIOCADDRT, &mut rt)?;
    }
    super::log(format!(
        "{iface}: {addr}/{prefix}{}",
        gw.map(|g| format!(" via {g}")).unwrap_or_default()
    ));
    Ok(())
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
