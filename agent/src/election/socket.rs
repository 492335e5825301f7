//! The VRRP socket: raw IP protocol 112 on one interface, of one address
//! family. IPv4: multicast to 224.0.0.18 (RFC 5798 section 5.1.1.2) or
//! unicast to configured peers, TTL 255 both ways, from the interface's
//! primary address. IPv6 ([`v6`]): multicast to ff02::12 (section 5.1.2.2)
//! or unicast, hop limit 255, from the interface's link-local address
//! (section 5.1.2.1). [`source`] picks that address.

mod source;
mod v6;

#[cfg(test)]
mod netns_tests;

use std::{
    io,
    mem::MaybeUninit,
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
    time::Duration,
};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tracing::warn;

pub use source::{Dad, SourceError, advert_source};

use super::packet::{VRRP_MULTICAST_V4, VRRP_PROTOCOL, VRRP_TTL};

/// How long [`wait_source`] waits for an IPv6 source to be usable: the
/// link-local address appears up to a second after the link comes up, and
/// duplicate address detection takes 1 to 2 s more with the kernel's
/// defaults.
const SOURCE_PATIENCE: Duration = Duration::from_secs(10);

/// A received VRRP packet, IP header taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    /// The VRRP header and addresses (cut at the IP total length).
    pub payload: Vec<u8>,
}

/// A VRRP socket bound to one interface, of the family of its source.
pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    primary: IpAddr,
    ifindex: u32,
}

impl VrrpSocket {
    /// Opens the socket on `iface` for adverts from `primary` (one of the
    /// interface's addresses, see [`advert_source`]), of its family, and
    /// joins the VRRP multicast group there.
    pub fn open(iface: &str, primary: IpAddr) -> io::Result<Self> {
        let ifindex = nix::net::if_::if_nametoindex(iface)?;
        let socket = match primary {
            IpAddr::V4(primary) => open_v4(iface, primary)?,
            IpAddr::V6(_) => v6::open(iface, ifindex)?,
        };
        socket.set_nonblocking(true)?;
        // SAFETY: the socket is ours alone and moves into the AsyncFd, which
        // closes it; nothing else holds its descriptor.
        let fd = unsafe { AsyncFd::register(socket) }?;
        Ok(Self {
            fd,
            primary,
            ifindex,
        })
    }

    /// Our address (the adverts' source).
    pub fn primary(&self) -> IpAddr {
        self.primary
    }

    /// Sends one VRRP payload to `dst` (of the socket's family).
    pub async fn send(&self, dst: IpAddr, payload: &[u8]) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            let sent = guard.try_io(|fd| match (self.primary, dst) {
                (IpAddr::V4(_), IpAddr::V4(dst)) => {
                    let to = SockAddr::from(SocketAddr::V4(SocketAddrV4::new(dst, 0)));
                    fd.get_ref().send_to(payload, &to).map(drop)
                }
                (IpAddr::V6(src), IpAddr::V6(dst)) => {
                    v6::send(fd.get_ref(), src, self.ifindex, dst, payload)
                }
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{dst} is not of the family of the VRRP socket ({})",
                        self.primary
                    ),
                )),
            });
            match sent {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Receives the next VRRP packet, IP header (or ancillary data) taken
    /// apart.
    pub async fn recv(&self) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            let received = match guard.try_io(|fd| match self.primary {
                IpAddr::V4(_) => recv_v4(fd.get_ref()),
                IpAddr::V6(_) => v6::recv(fd.get_ref()),
            }) {
                Ok(result) => result?,
                Err(_would_block) => continue,
            };
            if let Some(received) = received {
                return Ok(received);
            }
        }
    }
}

/// The adverts' source on `iface` (see [`advert_source`]) once usable: at
/// once for IPv4, and for IPv6 once the address exists and is no longer
/// tentative, waiting at most [`SOURCE_PATIENCE`]. After that a tentative
/// address is taken all the same (sending fails until its DAD ends, and
/// says so); a missing one is an error.
pub async fn wait_source(
    group: &str,
    iface: &str,
    ipv6: bool,
    vips: &[IpAddr],
    peers: &[IpAddr],
) -> Result<IpAddr, SourceError> {
    let deadline = tokio::time::Instant::now() + SOURCE_PATIENCE;
    loop {
        let found = advert_source(iface, ipv6, vips, peers);
        let state = match &found {
            Ok(IpAddr::V6(addr)) => source::dad_state(iface, *addr),
            _ => Dad::Done,
        };
        let absent = matches!(
            found,
            Err(SourceError::NoLinkLocal { .. } | SourceError::NoGlobal { .. })
        );
        let late = tokio::time::Instant::now() >= deadline;
        if !ipv6 || !(absent || state == Dad::Tentative) || late {
            if state == Dad::Tentative {
                warn!(
                    group, iface, source = ?found,
                    "VRRP source address still tentative after {SOURCE_PATIENCE:?}: adverts fail until its DAD ends"
                );
            }
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The raw IPv4 socket on `iface` whose primary address is `primary`.
fn open_v4(iface: &str, primary: Ipv4Addr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(i32::from(VRRP_PROTOCOL))),
    )?;
    socket.bind_device(Some(iface.as_bytes()))?;
    socket.set_multicast_if_v4(&primary)?;
    socket.set_multicast_ttl_v4(u32::from(VRRP_TTL))?;
    socket.set_ttl_v4(u32::from(VRRP_TTL))?;
    socket.set_multicast_loop_v4(false)?;
    socket.join_multicast_v4(&VRRP_MULTICAST_V4, &primary)?;
    Ok(socket)
}

/// Reads one IPv4 packet (header included, as raw IPv4 sockets deliver it);
/// `Ok(None)` if it is not one.
fn recv_v4(socket: &Socket) -> io::Result<Option<Received>> {
    let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
    let len = socket.recv(&mut buf)?;
    // SAFETY: `recv` initialised the first `len` bytes.
    let bytes: Vec<u8> = buf[..len]
        .iter()
        .map(|b| unsafe { b.assume_init() })
        .collect();
    Ok(split_ipv4(&bytes))
}

/// Takes an IPv4 packet apart; `None` if it is not one.
pub fn split_ipv4(packet: &[u8]) -> Option<Received> {
    let first = *packet.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
    if ihl < 20 || total < ihl || packet.len() < total {
        return None;
    }
    let addr = |at: usize| -> Option<IpAddr> {
        let b: [u8; 4] = packet.get(at..at + 4)?.try_into().ok()?;
        Some(IpAddr::V4(Ipv4Addr::from(b)))
    };
    Some(Received {
        src: addr(12)?,
        dst: addr(16)?,
        ttl: packet[8],
        payload: packet[ihl..total].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_header_is_taken_apart() {
        let mut packet = vec![
            0x45, 0, 0, 28, 0, 0, 0, 0, 255, 112, 0, 0, 10, 0, 0, 1, 224, 0, 0, 18,
        ];
        packet.extend_from_slice(&[0x31, 51, 100, 1, 0, 100, 0, 0]);
        packet.extend_from_slice(&[0xde, 0xad]); // padding past the total length
        let r = split_ipv4(&packet).expect("an IPv4 packet");
        assert_eq!(r.src, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(r.dst, IpAddr::V4(VRRP_MULTICAST_V4));
        assert_eq!(r.ttl, 255);
        assert_eq!(
            r.payload,
            [0x31, 51, 100, 1, 0, 100, 0, 0],
            "cut at the total length"
        );
        assert!(split_ipv4(&packet[..10]).is_none());
        let mut v6 = packet.clone();
        v6[0] = 0x60;
        assert!(split_ipv4(&v6).is_none());
    }
}
