//! A DHCPv4 client for PID 1 (RFC 2131): DISCOVER, OFFER, REQUEST, ACK, and
//! renewal by the supervisor at half the lease. Messages are built and parsed
//! by `dhcproto`; they travel over a UDP socket on port 68 tied to the
//! interface, with the broadcast flag set so that answers arrive before the
//! interface has an address.

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const SERVER_PORT: u16 = 67;
const CLIENT_PORT: u16 = 68;
/// Used when the server names no lease time.
const DEFAULT_LEASE_SECS: u32 = 3600;

/// An address lease the server granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    /// Our address.
    pub addr: Ipv4Addr,
    /// Its prefix length (from the subnet mask; 24 when none is given).
    pub prefix: u8,
    /// The default gateway, if the server names one.
    pub router: Option<Ipv4Addr>,
    server: Ipv4Addr,
    secs: u32,
    granted: Instant,
}

impl std::fmt::Display for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} for {} s from {}",
            self.addr, self.prefix, self.secs, self.server
        )
    }
}

impl Lease {
    /// Puts the next renewal off by `by` (the server did not answer; the
    /// address stays in use meanwhile).
    pub fn postpone(&mut self, by: Duration) {
        self.granted += by;
    }

    /// Whether it is time to renew (half the lease has passed, at most once a minute).
    pub fn renewal_due(&self, now: Instant) -> bool {
        now.duration_since(self.granted) >= Duration::from_secs(u64::from(self.secs / 2).max(60))
    }
}

/// The lease an ACK carries; None when it is not an ACK for us.
fn lease_from(ack: &Message, granted: Instant) -> Option<Lease> {
    if ack.opts().msg_type() != Some(MessageType::Ack) || ack.yiaddr().is_unspecified() {
        return None;
    }
    let prefix = match ack.opts().get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(m)) => u32::from(*m).leading_ones() as u8,
        _ => 24,
    };
    let router = match ack.opts().get(OptionCode::Router) {
        Some(DhcpOption::Router(r)) => r.first().copied(),
        _ => None,
    };
    let secs = match ack.opts().get(OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(s)) => *s,
        _ => DEFAULT_LEASE_SECS,
    };
    Some(Lease {
        addr: ack.yiaddr(),
        prefix,
        router,
        server: server_id(ack).unwrap_or(ack.siaddr()),
        secs,
        granted,
    })
}

fn server_id(m: &Message) -> Option<Ipv4Addr> {
    match m.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(s)) => Some(*s),
        _ => None,
    }
}

/// The interface's hardware address, from sysfs.
fn mac(iface: &str) -> Result<[u8; 6], String> {
    let path = format!("/sys/class/net/{iface}/address");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("read {path}: {e}"))?;
    parse_mac(text.trim()).ok_or_else(|| format!("{path}: {text:?} is not a MAC address"))
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// A transaction id: only needs to differ between clients and attempts.
fn xid(mac: &[u8; 6]) -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or_default();
    nanos ^ u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]])
}

/// A client message of `kind` with our hardware address and the options we need.
fn request(mac: &[u8; 6], xid: u32, kind: MessageType, extra: Vec<DhcpOption>) -> Message {
    let mut m = Message::default();
    m.set_xid(xid)
        .set_flags(Flags::default().set_broadcast())
        .set_chaddr(mac);
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::AddressLeaseTime,
        OptionCode::ServerIdentifier,
    ]));
    let mut client_id = vec![1u8];
    client_id.extend_from_slice(mac);
    opts.insert(DhcpOption::ClientIdentifier(client_id));
    for o in extra {
        opts.insert(o);
    }
    m
}

/// A UDP socket on port 68 of `iface` that may broadcast.
fn socket(iface: &str) -> Result<UdpSocket, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let e = |what: &str, err: std::io::Error| format!("DHCP socket on {iface}: {what}: {err}");
    let s =
        Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(|x| e("create", x))?;
    s.set_reuse_address(true)
        .map_err(|x| e("SO_REUSEADDR", x))?;
    s.set_broadcast(true).map_err(|x| e("SO_BROADCAST", x))?;
    s.bind_device(Some(iface.as_bytes()))
        .map_err(|x| e("SO_BINDTODEVICE", x))?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, CLIENT_PORT)).into())
        .map_err(|x| e("bind port 68", x))?;
    s.set_read_timeout(Some(Duration::from_millis(250)))
        .map_err(|x| e("SO_RCVTIMEO", x))?;
    Ok(s.into())
}

/// Broadcasts `msg` and waits until `until` for a reply to it of one of `want`.
fn exchange(
    sock: &UdpSocket,
    msg: &Message,
    want: &[MessageType],
    until: Instant,
) -> Result<Option<Message>, String> {
    let mut bytes = Vec::new();
    msg.encode(&mut Encoder::new(&mut bytes))
        .map_err(|e| format!("encode a DHCP message: {e}"))?;
    sock.send_to(&bytes, (Ipv4Addr::BROADCAST, SERVER_PORT))
        .map_err(|e| format!("send a DHCP message: {e}"))?;
    let mut buf = [0u8; 1500];
    while Instant::now() < until {
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(format!("receive a DHCP message: {e}")),
        };
        let Ok(reply) = Message::decode(&mut Decoder::new(&buf[..n])) else {
            continue;
        };
        let ours = reply.opcode() == Opcode::BootReply
            && reply.xid() == msg.xid()
            && reply.chaddr().get(..6) == msg.chaddr().get(..6);
        if ours && reply.opts().msg_type().is_some_and(|t| want.contains(&t)) {
            return Ok(Some(reply));
        }
    }
    Ok(None)
}

/// Obtains a lease on `iface` (which must be up), retrying until `within` has passed.
pub(crate) fn acquire(iface: &str, within: Duration) -> Result<Lease, String> {
    let mac = mac(iface)?;
    let sock = socket(iface)?;
    let deadline = Instant::now() + within;
    let mut wait = Duration::from_secs(1);
    while Instant::now() < deadline {
        let id = xid(&mac);
        let until = (Instant::now() + wait).min(deadline);
        wait = (wait * 2).min(Duration::from_secs(8));
        let discover = request(&mac, id, MessageType::Discover, Vec::new());
        let Some(offer) = exchange(&sock, &discover, &[MessageType::Offer], until)? else {
            continue;
        };
        let mut extra = vec![DhcpOption::RequestedIpAddress(offer.yiaddr())];
        if let Some(s) = server_id(&offer) {
            extra.push(DhcpOption::ServerIdentifier(s));
        }
        let req = request(&mac, id, MessageType::Request, extra);
        let until = (Instant::now() + Duration::from_secs(4)).min(deadline);
        if let Some(ack) = exchange(&sock, &req, &[MessageType::Ack, MessageType::Nak], until)? {
            if let Some(lease) = lease_from(&ack, Instant::now()) {
                return Ok(lease);
            }
        }
    }
    Err(format!(
        "no DHCP server granted an address on {iface} within {within:?}"
    ))
}

/// Renews `lease` (a REQUEST naming our address); Err when the server refuses
/// or does not answer in time.
pub(crate) fn renew(iface: &str, lease: &Lease, within: Duration) -> Result<Lease, String> {
    let mac = mac(iface)?;
    let sock = socket(iface)?;
    let mut req = request(&mac, xid(&mac), MessageType::Request, Vec::new());
    req.set_ciaddr(lease.addr);
    let reply = exchange(
        &sock,
        &req,
        &[MessageType::Ack, MessageType::Nak],
        Instant::now() + within,
    )?
    .ok_or_else(|| format!("no answer from the DHCP server {}", lease.server))?;
    lease_from(&reply, Instant::now())
        .ok_or_else(|| format!("the DHCP server {} refused the renewal", lease.server))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(kind: MessageType, opts: Vec<DhcpOption>) -> Message {
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let mut m = request(&mac, 7, kind, opts);
        m.set_opcode(Opcode::BootReply)
            .set_yiaddr(Ipv4Addr::new(10, 0, 2, 15));
        // Through the wire format, as a server's answer arrives.
        let mut bytes = Vec::new();
        m.encode(&mut Encoder::new(&mut bytes)).unwrap();
        Message::decode(&mut Decoder::new(&bytes)).unwrap()
    }

    #[test]
    fn an_ack_gives_address_prefix_router_and_lease_time() {
        let now = Instant::now();
        let ack = reply(
            MessageType::Ack,
            vec![
                DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 240, 0)),
                DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 2, 2)]),
                DhcpOption::AddressLeaseTime(600),
                DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 2)),
            ],
        );
        let lease = lease_from(&ack, now).unwrap();
        assert_eq!(lease.addr, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(lease.prefix, 20);
        assert_eq!(lease.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert!(!lease.renewal_due(now + Duration::from_secs(299)));
        assert!(lease.renewal_due(now + Duration::from_secs(300)));
    }

    #[test]
    fn a_nak_or_an_offer_is_no_lease() {
        assert!(lease_from(&reply(MessageType::Nak, Vec::new()), Instant::now()).is_none());
        assert!(lease_from(&reply(MessageType::Offer, Vec::new()), Instant::now()).is_none());
    }

    #[test]
    fn mac_addresses_parse_strictly() {
        assert_eq!(
            parse_mac("52:54:00:12:34:56"),
            Some([0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
        assert_eq!(parse_mac("52:54:00:12:34"), None);
        assert_eq!(parse_mac("52:54:00:12:34:56:78"), None);
        assert_eq!(parse_mac("zz:54:00:12:34:56"), None);
    }
}
