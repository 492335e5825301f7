//! The IPv6 side of the VRRP socket (RFC 5798 section 5.1.2). A raw IPv6
//! socket hands over the payload only, without the IPv6 header: the source
//! comes from `recvmsg`'s address, the destination from an `IPV6_PKTINFO`
//! control message and the hop limit from an `IPV6_HOPLIMIT` one, which is
//! what [`parse`](crate::election::parse) needs for its hop-limit check
//! (section 5.1.2.3) and the checksum's pseudo-header. Sending, the source
//! address goes in an `IPV6_PKTINFO` message (section 5.1.2.1), so the
//! kernel refuses it while it is tentative instead of picking another one.
//!
//! The checksum is ours ([`build`](crate::election::build)), and the kernel
//! does not touch it: `IPV6_CHECKSUM` stays off, as it is by default for a
//! raw socket of a protocol other than ICMPv6.

use std::{
    io::{self, IoSlice, IoSliceMut},
    net::{IpAddr, Ipv6Addr, SocketAddrV6},
    os::fd::AsRawFd,
};

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn6, recvmsg, sendmsg, setsockopt,
    sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};

use super::Received;
use crate::election::packet::{
    HEADER_LEN, MAX_ADDRESSES, VRRP_MULTICAST_V6, VRRP_PROTOCOL, VRRP_TTL,
};

/// The longest valid VRRP payload over IPv6: the header and 255 addresses.
/// One byte more is read, so that anything longer fails the length check.
const MAX_PAYLOAD: usize = HEADER_LEN + MAX_ADDRESSES * 16;

/// A raw IPv6 protocol-112 socket on `iface` (index `ifindex`): hop limit
/// 255 for unicast and multicast, multicast loop off, ff02::12 joined there,
/// the hop limit and destination of each packet received.
pub fn open(iface: &str, ifindex: u32) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::IPV6,
        Type::RAW,
        Some(Protocol::from(i32::from(VRRP_PROTOCOL))),
    )?;
    socket.bind_device(Some(iface.as_bytes()))?;
    socket.set_multicast_if_v6(ifindex)?;
    socket.set_multicast_hops_v6(u32::from(VRRP_TTL))?;
    socket.set_unicast_hops_v6(u32::from(VRRP_TTL))?;
    socket.set_multicast_loop_v6(false)?;
    socket.join_multicast_v6(&VRRP_MULTICAST_V6, ifindex)?;
    socket.set_recv_hoplimit_v6(true)?;
    setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)?;
    Ok(socket)
}

/// Sends `payload` from `src` to `dst` out of interface `ifindex`.
pub fn send(
    socket: &Socket,
    src: Ipv6Addr,
    ifindex: u32,
    dst: Ipv6Addr,
    payload: &[u8],
) -> io::Result<()> {
    let info = libc::in6_pktinfo {
        ipi6_addr: libc::in6_addr {
            s6_addr: src.octets(),
        },
        ipi6_ifindex: ifindex,
    };
    // The scope matters for link-local and ff02:: destinations only; the
    // kernel ignores it for the others.
    let to = SockaddrIn6::from(SocketAddrV6::new(dst, 0, 0, ifindex));
    sendmsg(
        socket.as_raw_fd(),
        &[IoSlice::new(payload)],
        &[ControlMessage::Ipv6PacketInfo(&info)],
        MsgFlags::empty(),
        Some(&to),
    )?;
    Ok(())
}

/// Reads one datagram (the socket is non-blocking: `WouldBlock` when there
/// is none). `Ok(None)` for one that came without its source, destination
/// or hop limit, which the socket's options should never let happen.
pub fn recv(socket: &Socket) -> io::Result<Option<Received>> {
    let mut buf = vec![0u8; MAX_PAYLOAD + 1];
    let mut control = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let (len, src, ancillary) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<SockaddrIn6>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            MsgFlags::empty(),
        )?;
        let ancillary: Vec<ControlMessageOwned> = msg.cmsgs()?.collect();
        (msg.bytes, msg.address.map(|a| a.ip()), ancillary)
    };
    Ok(from_ancillary(src, &ancillary, &buf[..len]))
}

/// A received packet from its source, control messages and payload; `None`
/// when the source, the destination (`IPV6_PKTINFO`) or the hop limit
/// (`IPV6_HOPLIMIT`) is missing.
pub fn from_ancillary(
    src: Option<Ipv6Addr>,
    ancillary: &[ControlMessageOwned],
    payload: &[u8],
) -> Option<Received> {
    let mut dst = None;
    let mut hop_limit = None;
    for message in ancillary {
        match message {
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
            }
            ControlMessageOwned::Ipv6HopLimit(limit) => hop_limit = u8::try_from(*limit).ok(),
            _ => {}
        }
    }
    Some(Received {
        src: IpAddr::V6(src?),
        dst: IpAddr::V6(dst?),
        ttl: hop_limit?,
        payload: payload.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pktinfo(dst: Ipv6Addr) -> ControlMessageOwned {
        ControlMessageOwned::Ipv6PacketInfo(libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: dst.octets(),
            },
            ipi6_ifindex: 2,
        })
    }

    fn src() -> Ipv6Addr {
        "fe80::76:2ff:fe4d:b".parse().expect("test address")
    }

    #[test]
    fn source_destination_and_hop_limit_come_from_the_ancillary_data() {
        let payload = [0x31, 51, 100, 0, 0, 100, 0, 0];
        let ancillary = [
            ControlMessageOwned::Ipv6HopLimit(255),
            pktinfo(VRRP_MULTICAST_V6),
        ];
        let r = from_ancillary(Some(src()), &ancillary, &payload).expect("complete");
        assert_eq!(r.src, IpAddr::V6(src()));
        assert_eq!(r.dst, IpAddr::V6(VRRP_MULTICAST_V6));
        assert_eq!(r.ttl, 255);
        assert_eq!(r.payload, payload);

        // Either order, and a routed packet keeps its hop limit for parse to
        // reject.
        let routed = [
            pktinfo(VRRP_MULTICAST_V6),
            ControlMessageOwned::Ipv6HopLimit(64),
        ];
        let r = from_ancillary(Some(src()), &routed, &payload).expect("complete");
        assert_eq!(r.ttl, 64);
        assert!(matches!(
            crate::election::parse(r.src, r.dst, r.ttl, &r.payload),
            Err(crate::election::AdvertError::BadTtl { ttl: 64 })
        ));
    }

    #[test]
    fn a_packet_without_its_ancillary_data_is_not_taken() {
        let payload = [0u8; 8];
        let hop = ControlMessageOwned::Ipv6HopLimit(255);
        let info = pktinfo(VRRP_MULTICAST_V6);
        assert!(from_ancillary(Some(src()), std::slice::from_ref(&hop), &payload).is_none());
        assert!(from_ancillary(Some(src()), std::slice::from_ref(&info), &payload).is_none());
        assert!(from_ancillary(None, &[hop, info.clone()], &payload).is_none());
        let absurd = ControlMessageOwned::Ipv6HopLimit(300);
        assert!(
            from_ancillary(Some(src()), &[absurd, info], &payload).is_none(),
            "a hop limit that does not fit a byte"
        );
    }
}
