//! Header parsing: bounds-checked reads from the frame, and the walk from
//! Ethernet to the L4 ports, or to the address an ARP request or IPv6
//! neighbour solicitation asks for. A frame that is too short for what it
//! claims is reported, never read past its end.

use aya_ebpf::programs::XdpContext;
use vipx_common::reason;

/// Ethernet header length.
const ETH_HLEN: usize = 14;
/// 802.1Q / 802.1ad tag length.
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_ARP: u16 = 0x0806;
/// The fixed part of ARP (RFC 826): hardware and protocol type, their
/// address lengths, operation.
const ARP_FIXED_HLEN: usize = 8;
/// ARP hardware type Ethernet (`ARPHRD_ETHER`).
const ARP_HTYPE_ETHER: u16 = 1;
/// ARP operation "request" (RFC 826, `ARPOP_REQUEST`).
const ARP_OP_REQUEST: u16 = 1;
/// Offset of the target protocol address in an ARP packet for Ethernet
/// and IPv4: after the fixed part, sender MAC and IPv4, target MAC.
const ARP_TPA_OFF: usize = ARP_FIXED_HLEN + 6 + 4 + 6;
/// Minimal IPv4 header (RFC 791, IHL = 5).
const IPV4_MIN_HLEN: usize = 20;
/// Fixed IPv6 header (RFC 8200 section 3).
const IPV6_HLEN: usize = 40;
/// IPv4 flags/fragment offset: MF bit and the 13-bit offset.
const IPV4_MF_OFFSET_MASK: u16 = 0x3fff;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
/// VRRP (RFC 5798 section 5.1.1.4).
const IPPROTO_VRRP: u8 = 112;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_DSTOPTS: u8 = 60;
const IPPROTO_AH: u8 = 51;
const IPPROTO_ESP: u8 = 50;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
/// ICMP errors that quote the datagram that caused them (RFC 792):
/// destination unreachable (with "fragmentation needed"), time exceeded,
/// parameter problem.
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETER_PROBLEM: u8 = 12;
/// ICMPv6 errors (RFC 4443 section 3): destination unreachable, packet too
/// big, time exceeded, parameter problem.
const ICMPV6_ERROR_FIRST: u8 = 1;
const ICMPV6_ERROR_LAST: u8 = 4;
/// An ICMP error's own header: type, code, checksum, one word (the MTU of
/// "fragmentation needed" and "packet too big"); the quote follows.
const ICMP_HLEN: usize = 8;
/// What a quote must hold of the quoted TCP/UDP header (RFC 792: the first
/// 64 bits of the datagram's data): the ports, and UDP's checksum.
const QUOTED_L4_LEN: usize = 8;
/// ICMPv6 type Neighbor Solicitation (RFC 4861 section 4.3).
const ICMPV6_NEIGHBOR_SOLICIT: u8 = 135;
/// Offset of the target address in a neighbour solicitation: after type,
/// code, checksum and the reserved word (RFC 4861 section 4.3).
const NS_TARGET_OFF: usize = 8;
/// Length of the target address.
const NS_TARGET_LEN: usize = 16;
const TCP_MIN_HLEN: usize = 20;
/// UDP header length (RFC 768).
pub const UDP_HLEN: usize = 8;

/// The L3 header found.
#[derive(Clone, Copy)]
pub enum L3 {
    V4 { off: usize },
    V6 { off: usize },
}

/// The L4 header found.
#[derive(Clone, Copy)]
pub enum L4 {
    Tcp { off: usize, sport: u16, dport: u16 },
    Udp { off: usize, sport: u16, dport: u16 },
    Vrrp { off: usize },
}

/// An ICMP or ICMPv6 error quoting a TCP or UDP packet: where its headers
/// and the quoted packet's are. The quote's family is the error's own.
#[derive(Clone, Copy)]
pub struct IcmpError {
    /// The error's IP header.
    pub l3: L3,
    /// The ICMP header.
    pub icmp_off: usize,
    /// The quoted packet's IP header.
    pub inner_off: usize,
    /// The quoted packet's TCP/UDP header (its first 8 bytes are inside
    /// the frame).
    pub inner_l4_off: usize,
    /// The quoted packet's protocol, TCP or UDP.
    pub proto: u8,
}

/// A parsed IP packet: where its headers are.
#[derive(Clone, Copy)]
pub struct Packet {
    pub l3: L3,
    pub l4: L4,
}

/// What a frame the program looks into is.
#[derive(Clone, Copy)]
pub enum Frame {
    /// TCP, UDP or VRRP over IPv4 or IPv6.
    Ip(Packet),
    /// An ARP request for Ethernet and IPv4; the IPv4 address it asks for
    /// is at `target` (4 bytes, inside the frame).
    ArpRequest { target: usize },
    /// An IPv6 neighbour solicitation; the address it asks for is at
    /// `target` (16 bytes, inside the frame).
    NeighSolicit { target: usize },
    /// An ICMP error about a TCP or UDP packet.
    IcmpError(IcmpError),
}

/// A bounds-checked pointer to `N` bytes at `off` from the frame's start.
#[inline(always)]
pub fn bytes<const N: usize>(ctx: &XdpContext, off: usize) -> Option<*const [u8; N]> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + N > end {
        return None;
    }
    Some((start + off) as *const [u8; N])
}

/// A bounds-checked mutable pointer to `N` bytes at `off`.
#[inline(always)]
pub fn bytes_mut<const N: usize>(ctx: &XdpContext, off: usize) -> Option<*mut [u8; N]> {
    bytes::<N>(ctx, off).map(|p| p as *mut [u8; N])
}

#[inline(always)]
pub fn u8_at(ctx: &XdpContext, off: usize) -> Option<u8> {
    // SAFETY: `bytes` checked that the byte lies inside the frame.
    bytes::<1>(ctx, off).map(|p| unsafe { (*p)[0] })
}

#[inline(always)]
fn be16_at(ctx: &XdpContext, off: usize) -> Option<u16> {
    // SAFETY: `bytes` checked that both bytes lie inside the frame.
    bytes::<2>(ctx, off).map(|p| u16::from_be_bytes(unsafe { *p }))
}

/// Walks the frame to its L4 header (or its ARP request's target). `Err`
/// carries the reason slot of a frame the program does not own (it is then
/// passed untouched).
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Frame, u32> {
    let mut ethertype = be16_at(ctx, 12).ok_or(reason::MALFORMED)?;
    let mut l3_off = ETH_HLEN;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = be16_at(ctx, ETH_HLEN + 2).ok_or(reason::MALFORMED)?;
        l3_off = ETH_HLEN + VLAN_HLEN;
    }
    match ethertype {
        ETH_P_IP => parse_ipv4(ctx, l3_off),
        ETH_P_IPV6 => parse_ipv6(ctx, l3_off),
        ETH_P_ARP => parse_arp(ctx, l3_off),
        _ => Err(reason::NOT_IP),
    }
}

/// An ARP request for Ethernet and IPv4 (RFC 826); any other ARP packet,
/// or one too short for its addresses, is not IP as before.
#[inline(always)]
fn parse_arp(ctx: &XdpContext, off: usize) -> Result<Frame, u32> {
    let hdr = bytes::<ARP_FIXED_HLEN>(ctx, off).ok_or(reason::NOT_IP)?;
    // SAFETY: `bytes` checked the fixed part lies inside the frame.
    let hdr = unsafe { *hdr };
    let ethernet_ipv4 = u16::from_be_bytes([hdr[0], hdr[1]]) == ARP_HTYPE_ETHER
        && u16::from_be_bytes([hdr[2], hdr[3]]) == ETH_P_IP
        && hdr[4] == 6
        && hdr[5] == 4;
    if !ethernet_ipv4 || u16::from_be_bytes([hdr[6], hdr[7]]) != ARP_OP_REQUEST {
        return Err(reason::NOT_IP);
    }
    let target = off + ARP_TPA_OFF;
    if bytes::<4>(ctx, target).is_none() {
        return Err(reason::NOT_IP);
    }
    Ok(Frame::ArpRequest { target })
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, off: usize) -> Result<Frame, u32> {
    let hdr = bytes::<IPV4_MIN_HLEN>(ctx, off).ok_or(reason::MALFORMED)?;
    // SAFETY: `bytes` checked the whole minimal header.
    let hdr = unsafe { *hdr };
    if hdr[0] >> 4 != 4 {
        return Err(reason::BAD_IP_HEADER);
    }
    let ihl = usize::from(hdr[0] & 0x0f) * 4;
    if ihl < IPV4_MIN_HLEN {
        return Err(reason::BAD_IP_HEADER);
    }
    if u16::from_be_bytes([hdr[6], hdr[7]]) & IPV4_MF_OFFSET_MASK != 0 {
        return Err(reason::FRAGMENT);
    }
    // The options, if any, must be inside the frame too.
    if bytes::<1>(ctx, off + ihl - 1).is_none() {
        return Err(reason::MALFORMED);
    }
    if hdr[9] == IPPROTO_ICMP {
        return icmp_error_v4(ctx, off, off + ihl);
    }
    let l4 = parse_l4(ctx, hdr[9], off + ihl)?;
    Ok(Frame::Ip(Packet {
        l3: L3::V4 { off },
        l4,
    }))
}

/// An ICMP error (at `icmp_off`, in the IPv4 packet at `off`) quoting an
/// unfragmented (or first-fragment) IPv4 TCP/UDP packet with its ports;
/// any other ICMP message is other L4 traffic as before.
#[inline(always)]
fn icmp_error_v4(ctx: &XdpContext, off: usize, icmp_off: usize) -> Result<Frame, u32> {
    // The whole ICMP header, read at once (a one-byte read right after the
    // IPv4 options' check is one the verifier cannot follow).
    let header = bytes::<ICMP_HLEN>(ctx, icmp_off).ok_or(reason::OTHER_L4)?;
    // SAFETY: `bytes` checked the header lies inside the frame.
    let kind = unsafe { (*header)[0] };
    if !matches!(
        kind,
        ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM
    ) {
        return Err(reason::OTHER_L4);
    }
    let inner_off = icmp_off + ICMP_HLEN;
    let inner = bytes::<IPV4_MIN_HLEN>(ctx, inner_off).ok_or(reason::OTHER_L4)?;
    // SAFETY: `bytes` checked the quoted minimal header.
    let inner = unsafe { *inner };
    let ihl = usize::from(inner[0] & 0x0f) * 4;
    let first_fragment = u16::from_be_bytes([inner[6], inner[7]]) & 0x1fff == 0;
    if inner[0] >> 4 != 4 || ihl < IPV4_MIN_HLEN || !first_fragment {
        return Err(reason::OTHER_L4);
    }
    quoted(
        ctx,
        L3::V4 { off },
        icmp_off,
        inner_off,
        inner_off + ihl,
        inner[9],
    )
}

/// An ICMPv6 error (at `icmp_off`, in the IPv6 packet at `off`) quoting an
/// IPv6 TCP/UDP packet without extension headers.
#[inline(always)]
fn icmp_error_v6(ctx: &XdpContext, off: usize, icmp_off: usize) -> Result<Frame, u32> {
    let inner_off = icmp_off + ICMP_HLEN;
    if bytes::<IPV6_HLEN>(ctx, inner_off).is_none()
        || u8_at(ctx, inner_off).ok_or(reason::OTHER_L4)? >> 4 != 6
    {
        return Err(reason::OTHER_L4);
    }
    let proto = u8_at(ctx, inner_off + 6).ok_or(reason::OTHER_L4)?;
    quoted(
        ctx,
        L3::V6 { off },
        icmp_off,
        inner_off,
        inner_off + IPV6_HLEN,
        proto,
    )
}

/// The error, if the quoted packet is TCP or UDP with its first 8 bytes
/// quoted.
#[inline(always)]
fn quoted(
    ctx: &XdpContext,
    l3: L3,
    icmp_off: usize,
    inner_off: usize,
    inner_l4_off: usize,
    proto: u8,
) -> Result<Frame, u32> {
    if !matches!(proto, IPPROTO_TCP | IPPROTO_UDP)
        || bytes::<QUOTED_L4_LEN>(ctx, inner_l4_off).is_none()
    {
        return Err(reason::OTHER_L4);
    }
    Ok(Frame::IcmpError(IcmpError {
        l3,
        icmp_off,
        inner_off,
        inner_l4_off,
        proto,
    }))
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, off: usize) -> Result<Frame, u32> {
    let version = u8_at(ctx, off).ok_or(reason::MALFORMED)? >> 4;
    let next = u8_at(ctx, off + 6).ok_or(reason::MALFORMED)?;
    if bytes::<IPV6_HLEN>(ctx, off).is_none() {
        return Err(reason::MALFORMED);
    }
    if version != 6 {
        return Err(reason::BAD_IP_HEADER);
    }
    match next {
        IPPROTO_FRAGMENT => return Err(reason::FRAGMENT),
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_ESP => {
            return Err(reason::IPV6_EXT);
        }
        IPPROTO_ICMPV6 => {
            let icmp_off = off + IPV6_HLEN;
            let kind = u8_at(ctx, icmp_off).ok_or(reason::OTHER_L4)?;
            if (ICMPV6_ERROR_FIRST..=ICMPV6_ERROR_LAST).contains(&kind) {
                return icmp_error_v6(ctx, off, icmp_off);
            }
            return neigh_solicit(ctx, icmp_off);
        }
        _ => {}
    }
    let l4 = parse_l4(ctx, next, off + IPV6_HLEN)?;
    Ok(Frame::Ip(Packet {
        l3: L3::V6 { off },
        l4,
    }))
}

/// An ICMPv6 message (at `off`) that is a neighbour solicitation with its
/// whole target address in the frame; any other ICMPv6 message is other
/// L4 traffic as before.
#[inline(always)]
fn neigh_solicit(ctx: &XdpContext, off: usize) -> Result<Frame, u32> {
    if u8_at(ctx, off) != Some(ICMPV6_NEIGHBOR_SOLICIT) {
        return Err(reason::OTHER_L4);
    }
    let target = off + NS_TARGET_OFF;
    if bytes::<NS_TARGET_LEN>(ctx, target).is_none() {
        return Err(reason::OTHER_L4);
    }
    Ok(Frame::NeighSolicit { target })
}

#[inline(always)]
fn parse_l4(ctx: &XdpContext, proto: u8, off: usize) -> Result<L4, u32> {
    match proto {
        IPPROTO_TCP => {
            let hdr = bytes::<TCP_MIN_HLEN>(ctx, off).ok_or(reason::MALFORMED)?;
            // SAFETY: `bytes` checked the whole minimal TCP header.
            let hdr = unsafe { *hdr };
            Ok(L4::Tcp {
                off,
                sport: u16::from_be_bytes([hdr[0], hdr[1]]),
                dport: u16::from_be_bytes([hdr[2], hdr[3]]),
            })
        }
        IPPROTO_UDP => {
            let hdr = bytes::<UDP_HLEN>(ctx, off).ok_or(reason::MALFORMED)?;
            // SAFETY: `bytes` checked the whole UDP header.
            let hdr = unsafe { *hdr };
            Ok(L4::Udp {
                off,
                sport: u16::from_be_bytes([hdr[0], hdr[1]]),
                dport: u16::from_be_bytes([hdr[2], hdr[3]]),
            })
        }
        IPPROTO_VRRP => Ok(L4::Vrrp { off }),
        _ => Err(reason::OTHER_L4),
    }
}
