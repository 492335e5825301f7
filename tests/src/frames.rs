//! Ethernet frames for data-plane fixtures and benchmarks, built from
//! scratch with etherparse (checksums computed in full), so that a test
//! compares the XDP program's incremental rewrites with an independent
//! result.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header, Ipv4Options, Ipv6Extensions, Ipv6Header,
    PacketBuilder, VlanId,
};
use vipx_agent::election::{
    Advert, VRRP_MULTICAST_V4, VRRP_MULTICAST_V6, VRRP_PROTOCOL, VRRP_TTL, build as vrrp_payload,
};
use vipx_common::{Heartbeat, HeartbeatKey};

/// TCP flag bits (RFC 9293 section 3.1).
pub mod tcp {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// The transport of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TCP with these flags (see [`tcp`]) and sequence number.
    Tcp {
        flags: u8,
        seq: u32,
    },
    Udp,
}

/// Everything that makes a test frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameSpec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vlan: Option<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub transport: Transport,
    pub payload: Vec<u8>,
    /// IPv4 options (a multiple of 4 bytes, at most 40).
    pub ipv4_options: Vec<u8>,
    /// IPv4 "more fragments" (makes the frame a first fragment).
    pub more_fragments: bool,
    /// IPv4 TTL / IPv6 hop limit (64 by default; 255 for what must come
    /// from the link itself: heartbeats).
    pub ttl: u8,
}

impl FrameSpec {
    /// A TCP frame.
    pub fn tcp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, flags: u8) -> Self {
        Self {
            src_mac: [0x02, 0, 0, 0, 0, 0x21],
            dst_mac: [0x02, 0, 0, 0, 0, 0x11],
            vlan: None,
            src,
            dst,
            sport,
            dport,
            transport: Transport::Tcp { flags, seq: 1000 },
            payload: Vec::new(),
            ipv4_options: Vec::new(),
            more_fragments: false,
            ttl: 64,
        }
    }

    /// A UDP frame.
    pub fn udp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Self {
        Self {
            transport: Transport::Udp,
            ..Self::tcp(src, sport, dst, dport, 0)
        }
    }

    /// With this TTL / hop limit.
    #[must_use]
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// With these MACs.
    #[must_use]
    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// With this payload.
    #[must_use]
    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    /// With these addresses and ports.
    #[must_use]
    pub fn addrs(mut self, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Self {
        self.src = src;
        self.sport = sport;
        self.dst = dst;
        self.dport = dport;
        self
    }

    /// The frame's bytes.
    pub fn build(&self) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(self.src_mac, self.dst_mac);
        let proto = match self.transport {
            Transport::Tcp { .. } => IpNumber::TCP,
            Transport::Udp => IpNumber::UDP,
        };
        let ip = match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let mut header = Ipv4Header::new(0, self.ttl, proto, src.octets(), dst.octets())
                    .expect("valid IPv4 header");
                header.options = Ipv4Options::try_from(self.ipv4_options.as_slice())
                    .expect("IPv4 options: a multiple of 4 bytes, at most 40");
                header.more_fragments = self.more_fragments;
                header.dont_fragment = !self.more_fragments;
                IpHeaders::Ipv4(header, Ipv4Extensions::default())
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => IpHeaders::Ipv6(
                Ipv6Header {
                    traffic_class: 0,
                    flow_label: Default::default(),
                    payload_length: 0,
                    next_header: proto,
                    hop_limit: self.ttl,
                    source: src.octets(),
                    destination: dst.octets(),
                },
                Ipv6Extensions::default(),
            ),
            _ => panic!("source and destination of one family"),
        };
        let l3 = match self.vlan {
            Some(id) => eth
                .single_vlan(VlanId::try_new(id).expect("VLAN id below 4096"))
                .ip(ip),
            None => eth.ip(ip),
        };
        let mut out = Vec::new();
        match self.transport {
            Transport::Tcp { flags, seq } => {
                let mut b = l3.tcp(self.sport, self.dport, seq, 64240);
                if flags & tcp::SYN != 0 {
                    b = b.syn();
                }
                if flags & tcp::ACK != 0 {
                    b = b.ack(1);
                }
                if flags & tcp::FIN != 0 {
                    b = b.fin();
                }
                if flags & tcp::RST != 0 {
                    b = b.rst();
                }
                if flags & tcp::PSH != 0 {
                    b = b.psh();
                }
                b.write(&mut out, &self.payload).expect("write TCP frame");
            }
            Transport::Udp => l3
                .udp(self.sport, self.dport)
                .write(&mut out, &self.payload)
                .expect("write UDP frame"),
        }
        out
    }
}

/// A VRRPv3 advertisement as a router of VRID `advert.vrid` sends it from
/// `src`: from its virtual-router MAC (RFC 5798 section 7.3) to the VRRP
/// group (224.0.0.18 or ff02::12, TTL / hop limit 255), the payload encoded
/// by the agent's own codec (checksum included).
pub fn vrrp_advert(src: IpAddr, advert: &Advert) -> Vec<u8> {
    let (dst, src_mac, dst_mac) = match src {
        IpAddr::V4(_) => (
            IpAddr::V4(VRRP_MULTICAST_V4),
            [0, 0, 0x5e, 0, 1, advert.vrid],
            [0x01, 0, 0x5e, 0, 0, 0x12],
        ),
        IpAddr::V6(_) => (
            IpAddr::V6(VRRP_MULTICAST_V6),
            [0, 0, 0x5e, 0, 2, advert.vrid],
            [0x33, 0x33, 0, 0, 0, 0x12],
        ),
    };
    vrrp_frame(src_mac, dst_mac, src, dst, &vrrp_payload(src, dst, advert))
}

/// A frame carrying `payload` as IP protocol 112 (VRRP) from `src` to
/// `dst`, TTL / hop limit 255.
pub fn vrrp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    payload: &[u8],
) -> Vec<u8> {
    let ip = match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let header = Ipv4Header::new(
                0,
                VRRP_TTL,
                IpNumber(VRRP_PROTOCOL),
                src.octets(),
                dst.octets(),
            )
            .expect("valid IPv4 header");
            IpHeaders::Ipv4(header, Ipv4Extensions::default())
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => IpHeaders::Ipv6(
            Ipv6Header {
                traffic_class: 0,
                flow_label: Default::default(),
                payload_length: 0,
                next_header: IpNumber(VRRP_PROTOCOL),
                hop_limit: VRRP_TTL,
                source: src.octets(),
                destination: dst.octets(),
            },
            Ipv6Extensions::default(),
        ),
        _ => panic!("source and destination of one family"),
    };
    let mut out = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ip(ip)
        .write(&mut out, IpNumber(VRRP_PROTOCOL), payload)
        .expect("write VRRP frame");
    out
}

/// A vipx heartbeat from `src` to `dst`, both on UDP port `port`, with
/// TTL 255 as vipx sends them (GTSM), tagged under `key` if given.
pub fn heartbeat(
    src: IpAddr,
    dst: IpAddr,
    port: u16,
    heartbeat: &Heartbeat,
    key: Option<&HeartbeatKey>,
) -> FrameSpec {
    FrameSpec::udp(src, port, dst, port)
        .payload(&heartbeat.encode(key))
        .ttl(255)
}

/// ARP operation "request" (RFC 826).
pub const ARP_REQUEST: u16 = 1;
/// ARP operation "reply" (RFC 826).
pub const ARP_REPLY: u16 = 2;

/// An ARP packet for Ethernet and IPv4 (RFC 826), written byte by byte:
/// operation `op` from `sender_mac`/`sender` about `target`, broadcast
/// (target MAC unknown, all zero), padded to Ethernet's 60-byte minimum.
pub fn arp(op: u16, sender_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut frame = Vec::with_capacity(60);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&sender_mac);
    frame.extend_from_slice(&[0x08, 0x06]); // EtherType ARP
    frame.extend_from_slice(&[0x00, 0x01]); // hardware type Ethernet
    frame.extend_from_slice(&[0x08, 0x00]); // protocol type IPv4
    frame.extend_from_slice(&[6, 4]); // address lengths
    frame.extend_from_slice(&op.to_be_bytes());
    frame.extend_from_slice(&sender_mac);
    frame.extend_from_slice(&sender.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target.octets());
    frame.resize(60, 0);
    frame
}

/// `frame` with an 802.1Q tag of VLAN `id` (priority 0) after its MACs.
pub fn vlan_tagged(frame: &[u8], id: u16) -> Vec<u8> {
    let mut tagged = frame[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00]);
    tagged.extend_from_slice(&(id & 0x0fff).to_be_bytes());
    tagged.extend_from_slice(&frame[12..]);
    tagged
}

/// An IPv6 neighbour solicitation (RFC 4861 section 4.3) from
/// `src_mac`/`src` for `target`: to the target's solicited-node multicast
/// address (RFC 4291 section 2.7.1) and its MAC (RFC 2464 section 7), hop
/// limit 255, with the Source Link-Layer Address option; the ICMPv6
/// checksum computed in full.
pub fn neighbour_solicitation(src_mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let mut group = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0, 0, 0];
    group[13..].copy_from_slice(&t[13..]);
    let dst_mac = [0x33, 0x33, 0xff, t[13], t[14], t[15]];
    // After the 8-byte header (reserved word included): the target, then
    // option 1 (source link-layer address), 1 unit of 8 bytes.
    let mut payload = t.to_vec();
    payload.extend_from_slice(&[1, 1]);
    payload.extend_from_slice(&src_mac);
    let mut out = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv6(src.octets(), group, 255)
        .icmpv6_raw(135, 0, [0; 4])
        .write(&mut out, &payload)
        .expect("write a neighbour solicitation");
    out
}

/// `frame` (untagged) with its IPv4 TTL or IPv6 hop limit set to `ttl`,
/// the IPv4 header checksum made right again.
pub fn with_ttl(mut frame: Vec<u8>, ttl: u8) -> Vec<u8> {
    match frame[14] >> 4 {
        4 => {
            frame[14 + 8] = ttl;
            frame[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
            let ihl = usize::from(frame[14] & 0x0f) * 4;
            let sum = frame[14..14 + ihl]
                .chunks(2)
                .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                .sum::<u32>();
            let sum = (sum & 0xffff) + (sum >> 16);
            let sum = !u16::try_from((sum & 0xffff) + (sum >> 16)).expect("folded");
            frame[14 + 10..14 + 12].copy_from_slice(&sum.to_be_bytes());
        }
        _ => frame[14 + 7] = ttl,
    }
    frame
}

/// An ICMP error from `from` to `to` about `quote` (an IP packet, from its
/// IP header on, as the router or host quotes it): IPv4 "fragmentation
/// needed" with a next-hop MTU of `mtu` (RFC 792, RFC 1191), IPv6 "packet
/// too big" (RFC 4443 section 3.2); TTL / hop limit 64, checksums computed
/// in full.
pub fn icmp_too_big(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    from: IpAddr,
    to: IpAddr,
    mtu: u16,
    quote: &[u8],
) -> Vec<u8> {
    use etherparse::{Icmpv4Type, Icmpv6Type, icmpv4::DestUnreachableHeader};
    let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
    let mut out = Vec::new();
    match (from, to) {
        (IpAddr::V4(from), IpAddr::V4(to)) => eth
            .ipv4(from.octets(), to.octets(), 64)
            .icmpv4(Icmpv4Type::DestinationUnreachable(
                DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: mtu },
            ))
            .write(&mut out, quote),
        (IpAddr::V6(from), IpAddr::V6(to)) => eth
            .ipv6(from.octets(), to.octets(), 64)
            .icmpv6(Icmpv6Type::PacketTooBig {
                mtu: u32::from(mtu),
            })
            .write(&mut out, quote),
        _ => panic!("source and destination of one family"),
    }
    .expect("write an ICMP error");
    out
}

/// `frame` (untagged IPv6) with one extension header of type `ext`
/// inserted after the fixed header (RFC 8200 section 4), 8 bytes long
/// with the old next header in its first byte: a fragment header (44)
/// says offset 0, more fragments; any other type carries a PadN option
/// (hop-by-hop and destination options) or zeros (routing, segments left
/// 0). The payload length grows by 8.
pub fn with_ipv6_extension(frame: &[u8], ext: u8) -> Vec<u8> {
    const IP: usize = 14;
    let next = frame[IP + 6];
    let header = match ext {
        44 => [next, 0, 0x00, 0x01, 0, 0, 0, 1],
        0 | 60 => [next, 0, 1, 4, 0, 0, 0, 0],
        _ => [next, 0, 0, 0, 0, 0, 0, 0],
    };
    let mut out = frame[..IP + 40].to_vec();
    out[IP + 6] = ext;
    let len = u16::from_be_bytes([out[IP + 4], out[IP + 5]]) + 8;
    out[IP + 4..IP + 6].copy_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&frame[IP + 40..]);
    out
}
