//! The VRRP socket: raw IP protocol 112 on one interface, multicast to
//! 224.0.0.18 (RFC 5798 section 5.1.1.2) or unicast to configured peers,
//! TTL 255 both ways.

use std::{
    io,
    mem::MaybeUninit,
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::packet::{VRRP_MULTICAST_V4, VRRP_PROTOCOL, VRRP_TTL};

/// A received VRRP packet, IP header taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    /// The VRRP header and addresses (cut at the IP total length).
    pub payload: Vec<u8>,
}

/// A VRRP socket bound to one interface (IPv4).
pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    primary: Ipv4Addr,
}

impl VrrpSocket {
    /// Opens the socket on `iface`, whose primary address is `primary`, and
    /// joins the VRRP group there.
    pub fn open(iface: &str, primary: Ipv4Addr) -> io::Result<Self> {
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
        socket.set_nonblocking(true)?;
        // SAFETY: the socket is ours alone and moves into the AsyncFd, which
        // closes it; nothing else holds its descriptor.
        let fd = unsafe { AsyncFd::register(socket) }?;
        Ok(Self { fd, primary })
    }

    /// Our address (the adverts' source).
    pub fn primary(&self) -> Ipv4Addr {
        self.primary
    }

    /// Sends one VRRP payload to `dst`.
    pub async fn send(&self, dst: Ipv4Addr, payload: &[u8]) -> io::Result<()> {
        let to = SockAddr::from(SocketAddr::V4(SocketAddrV4::new(dst, 0)));
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| fd.get_ref().send_to(payload, &to)) {
                Ok(result) => return result.map(drop),
                Err(_would_block) => continue,
            }
        }
    }

    /// Receives the next VRRP packet (IPv4 header parsed off).
    pub async fn recv(&self) -> io::Result<Received> {
        let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
        loop {
            let mut guard = self.fd.readable().await?;
            let len = match guard.try_io(|fd| fd.get_ref().recv(&mut buf)) {
                Ok(result) => result?,
                Err(_would_block) => continue,
            };
            // SAFETY: `recv` initialised the first `len` bytes.
            let bytes: Vec<u8> = buf[..len]
                .iter()
                .map(|b| unsafe { b.assume_init() })
                .collect();
            if let Some(received) = split_ipv4(&bytes) {
                return Ok(received);
            }
        }
    }
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
