//! Frames for the fuzzer, from a seeded RNG: well-formed TCP/UDP to and
//! around the VIPs (VLAN tags and stacks, IPv4 options), replies to the
//! flows the program opened, the same mutated (cut, bytes flipped, header
//! fields and lengths set at random, IPv6 extension headers, fragments),
//! ICMP errors quoting VIP flows, election traffic, ARP and random bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::PacketBuilder;
use fastrand::Rng;
use vipx_lab::frames::{self as lab, ARP_REQUEST, FrameSpec, Transport, vlan_tagged};

use super::{HEARTBEAT_PORT, NODE_MAC, VIP, VIP_B, VIP6, VIPS, services, v4, v6};

/// The shortest frame `BPF_PROG_TEST_RUN` takes for XDP (and a link
/// delivers): an Ethernet header.
const ETH_HLEN: usize = 14;

/// The shape a frame was made as (for the tallies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Wellformed,
    Reply,
    Mutated,
    IcmpError,
    Election,
    Arp,
    Random,
}

/// A reply direction the program opened: backend -> VIP:NAT port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReplyTuple {
    pub backend: IpAddr,
    pub backend_port: u16,
    pub vip: IpAddr,
    pub nat_port: u16,
    pub proto: u8,
}

/// The frame generator.
pub struct Gen {
    rng: Rng,
    service_ports: Vec<(IpAddr, u16, u8)>,
    backends: Vec<(IpAddr, u16)>,
}

impl Gen {
    pub fn new(seed: u64) -> Self {
        let specs = services();
        Self {
            rng: Rng::with_seed(seed),
            service_ports: specs.iter().map(|s| (s.vip, s.port, s.protocol)).collect(),
            backends: specs
                .iter()
                .flat_map(|s| s.backends.iter().map(|b| (b.addr, b.port)))
                .collect(),
        }
    }

    /// One frame; `replies` are reply tuples the program opened (newest
    /// last).
    pub fn frame(&mut self, replies: &[ReplyTuple]) -> (Kind, Vec<u8>) {
        match self.rng.u32(0..100) {
            0..35 => (
                Kind::Wellformed,
                self.wellformed().build_tagged(&mut self.rng),
            ),
            35..45 => (Kind::Reply, self.reply(replies).build_tagged(&mut self.rng)),
            45..80 => {
                let base = if self.rng.bool() {
                    self.wellformed()
                } else {
                    self.reply(replies)
                };
                let frame = base.build_tagged(&mut self.rng);
                (Kind::Mutated, self.mutate(frame))
            }
            80..88 => (Kind::IcmpError, self.icmp_error()),
            88..94 => (Kind::Election, self.election()),
            94..97 => (Kind::Arp, self.arp()),
            _ => (Kind::Random, self.random_bytes()),
        }
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.usize(..items.len())]
    }

    fn client(&mut self, v6: bool) -> IpAddr {
        let n = self.rng.u8(1..=8);
        match (v6, self.rng.u8(0..10)) {
            (false, 0) => IpAddr::V4(Ipv4Addr::from(self.rng.u32(..))),
            (true, 0) => IpAddr::V6(Ipv6Addr::from(self.rng.u128(..))),
            (false, _) => IpAddr::V4(Ipv4Addr::new(10, 77, 1, n)),
            (true, _) => IpAddr::V6(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 1, u16::from(n))),
        }
    }

    /// A destination and port: a service, a VIP's NAT ports or another
    /// port, a backend, the heartbeat port, another address.
    fn destination(&mut self, v6: bool) -> (IpAddr, u16, Option<u8>) {
        let family = |a: &IpAddr| a.is_ipv6() == v6;
        match self.rng.u8(0..10) {
            0..5 => {
                let ports: Vec<_> = self
                    .service_ports
                    .iter()
                    .copied()
                    .filter(|(a, ..)| family(a))
                    .collect();
                let (addr, port, proto) = self.pick(&ports);
                (addr, port, Some(proto))
            }
            5..7 => {
                let vips: Vec<_> = VIPS.iter().copied().filter(family).collect();
                let vip = self.pick(&vips);
                let port = match self.rng.u8(0..3) {
                    0 => self.rng.u16(40000..=42999),
                    1 => self.rng.u16(41000..=41005),
                    _ => self.rng.u16(..),
                };
                (vip, port, None)
            }
            7 => (if v6 { VIP6 } else { VIP }, HEARTBEAT_PORT, Some(17)),
            8 => {
                let backends: Vec<_> = self
                    .backends
                    .iter()
                    .copied()
                    .filter(|(a, _)| family(a))
                    .collect();
                let (addr, port) = self.pick(&backends);
                (addr, port, None)
            }
            _ => (
                if v6 {
                    v6_any(&mut self.rng)
                } else {
                    v4(self.rng.u8(..))
                },
                self.rng.u16(..),
                None,
            ),
        }
    }

    fn wellformed(&mut self) -> Spec {
        let v6 = self.rng.u8(0..3) == 0;
        let src = self.client(v6);
        let (dst, dport, proto) = self.destination(v6);
        let sport = if self.rng.u8(0..4) == 0 {
            self.rng.u16(..)
        } else {
            1024 + self.rng.u16(0..16)
        };
        let spec = self.transport(proto, src, sport, dst, dport);
        self.dress(spec)
    }

    fn transport(
        &mut self,
        proto: Option<u8>,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
    ) -> FrameSpec {
        let tcp = match proto {
            Some(p) if self.rng.u8(0..8) != 0 => p == 6,
            _ => self.rng.bool(),
        };
        if tcp {
            const FLAGS: [u8; 7] = [0x02, 0x10, 0x18, 0x11, 0x04, 0x14, 0x12];
            let flags = if self.rng.u8(0..8) == 0 {
                self.rng.u8(..) & 0x3f
            } else {
                self.pick(&FLAGS)
            };
            let mut spec = FrameSpec::tcp(src, sport, dst, dport, flags);
            spec.transport = Transport::Tcp {
                flags,
                seq: self.rng.u32(..),
            };
            spec
        } else {
            FrameSpec::udp(src, sport, dst, dport)
        }
    }

    /// MACs, TTL, payload, options, tags.
    fn dress(&mut self, mut spec: FrameSpec) -> Spec {
        spec.src_mac = [0x02, 0, 0, 0, self.rng.u8(0..4), self.rng.u8(..)];
        spec.dst_mac = if self.rng.u8(0..10) == 0 {
            [0x02, 0, 0, 0, 0, self.rng.u8(..)]
        } else {
            NODE_MAC
        };
        spec.ttl = self.rng.u8(..);
        spec.payload = (0..self.rng.usize(0..48))
            .map(|_| self.rng.u8(..))
            .collect();
        if spec.src.is_ipv4() && self.rng.u8(0..8) == 0 {
            spec.ipv4_options = (0..4 * self.rng.usize(1..=10))
                .map(|_| self.rng.u8(..))
                .collect();
        }
        let tags = match self.rng.u8(0..10) {
            0 | 1 => vec![self.rng.u16(1..4095)],
            2 => vec![self.rng.u16(1..4095), self.rng.u16(1..4095)],
            _ => Vec::new(),
        };
        Spec { spec, tags }
    }

    /// A reply from a backend to a NAT port the program gave out (or, at
    /// times, a neighbouring port).
    fn reply(&mut self, replies: &[ReplyTuple]) -> Spec {
        let Some(tuple) = replies.get(replies.len().saturating_sub(1 + self.rng.usize(0..256)))
        else {
            return self.wellformed();
        };
        let nat_port = tuple
            .nat_port
            .wrapping_add(u16::from(self.rng.u8(0..16) == 0));
        let spec = self.transport(
            Some(tuple.proto),
            tuple.backend,
            tuple.backend_port,
            tuple.vip,
            nat_port,
        );
        let mut dressed = self.dress(spec);
        dressed.spec.src_mac = vipx_lab::rig::backend_mac(tuple.backend);
        dressed
    }

    fn mutate(&mut self, mut frame: Vec<u8>) -> Vec<u8> {
        for _ in 0..self.rng.u8(1..=3) {
            let ip = if frame.get(12..14) == Some(&[0x81, 0x00]) {
                18
            } else {
                14
            };
            match self.rng.u8(0..9) {
                0 => frame.truncate(self.rng.usize(ETH_HLEN..frame.len().max(ETH_HLEN + 1))),
                1 => {
                    let at = self.rng.usize(..frame.len());
                    frame[at] ^= self.rng.u8(1..);
                }
                2 => set(&mut frame, ip, self.rng.u8(..)), // version and IHL
                3 => set(&mut frame, ip + 2, self.rng.u8(..)), // IPv4 total length / IPv6 flow label
                4 => {
                    // IPv4 flags and fragment offset / IPv6 payload length.
                    let any = self.rng.u8(..);
                    set(
                        &mut frame,
                        ip + 6,
                        self.pick(&[0x20, 0x00, 0x40, 0x1f, any]),
                    );
                    let any = self.rng.u8(..);
                    set(&mut frame, ip + 7, self.pick(&[0x00, 0x01, any]));
                }
                5 => {
                    // IPv4 protocol / IPv6 next header.
                    let at = if frame.get(ip).is_some_and(|b| b >> 4 == 6) {
                        ip + 6
                    } else {
                        ip + 9
                    };
                    let any = self.rng.u8(..);
                    set(
                        &mut frame,
                        at,
                        self.pick(&[0, 1, 6, 17, 43, 44, 50, 51, 58, 60, 112, any]),
                    );
                }
                6 if ip == 14 && frame.get(12..14) == Some(&[0x86, 0xdd]) && frame.len() >= 54 => {
                    frame = lab::with_ipv6_extension(&frame, self.pick(&[0, 43, 44, 60, 51, 50]));
                }
                7 => frame.extend((0..self.rng.usize(1..32)).map(|_| self.rng.u8(..))),
                _ => {
                    let at = ip + self.rng.usize(0..64);
                    set(&mut frame, at, self.rng.u8(..));
                }
            }
        }
        frame
    }

    /// An ICMP error (destination unreachable, time exceeded) to a VIP
    /// quoting a packet of a VIP flow (VIP:service port -> client, or
    /// VIP:NAT port -> backend).
    fn icmp_error(&mut self) -> Vec<u8> {
        let v6 = self.rng.bool();
        let vip = if v6 { VIP6 } else { self.pick(&[VIP, VIP_B]) };
        let (peer, sport, dport) = if self.rng.bool() {
            (
                self.client(v6),
                self.pick(&[5432, 53, 5500]),
                1024 + self.rng.u16(0..32),
            )
        } else {
            let backends: Vec<_> = self
                .backends
                .iter()
                .copied()
                .filter(|(a, _)| a.is_ipv6() == v6)
                .collect();
            let (addr, port) = self.pick(&backends);
            (addr, self.rng.u16(40000..=42999), port)
        };
        let quoted = self.transport(None, vip, sport, peer, dport).build();
        let quote = &quoted[14..quoted.len().min(14 + if v6 { 48 } else { 28 })];
        let router = if v6 { super::v6(1) } else { v4(1) };
        let mut out = Vec::new();
        let eth = PacketBuilder::ethernet2([0x02, 0, 0, 0, 0, 0x01], NODE_MAC);
        match (router, vip) {
            (IpAddr::V4(r), IpAddr::V4(d)) => eth
                .ipv4(r.octets(), d.octets(), 64)
                .icmpv4_raw(self.pick(&[3, 11]), self.rng.u8(0..5), [0, 0, 0x05, 0xdc])
                .write(&mut out, quote),
            (IpAddr::V6(r), IpAddr::V6(d)) => eth
                .ipv6(r.octets(), d.octets(), 64)
                .icmpv6_raw(self.pick(&[1, 2, 3]), 0, [0, 0, 0x05, 0xdc])
                .write(&mut out, quote),
            _ => unreachable!("one family"),
        }
        .expect("write an ICMP error");
        out
    }

    /// A VRRP packet or a heartbeat-sized datagram to the heartbeat port.
    fn election(&mut self) -> Vec<u8> {
        let v6 = self.rng.bool();
        let src = self.client(v6);
        let payload: Vec<u8> = (0..self.rng.usize(0..40))
            .map(|_| self.rng.u8(..))
            .collect();
        if self.rng.bool() {
            let dst = if v6 {
                v6_any(&mut self.rng)
            } else {
                IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18))
            };
            lab::vrrp_frame([0, 0, 0x5e, 0, 1, 1], NODE_MAC, src, dst, &payload)
        } else {
            let dst = if v6 { VIP6 } else { VIP };
            FrameSpec::udp(src, HEARTBEAT_PORT, dst, HEARTBEAT_PORT)
                .payload(&payload)
                .ttl(self.pick(&[255, 64]))
                .build()
        }
    }

    fn arp(&mut self) -> Vec<u8> {
        let target = self.pick(&[
            Ipv4Addr::new(10, 77, 0, 100),
            Ipv4Addr::new(10, 77, 0, 200),
            Ipv4Addr::new(10, 77, 0, 9),
        ]);
        let frame = lab::arp(
            ARP_REQUEST,
            [0x02, 0, 0, 0, 0, 0x21],
            Ipv4Addr::new(10, 77, 1, 1),
            target,
        );
        if self.rng.bool() {
            return frame;
        }
        let src = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 1, 1);
        let target = self.pick(&[
            Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x100),
            Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 9),
        ]);
        lab::neighbour_solicitation([0x02, 0, 0, 0, 0, 0x21], src, target)
    }

    fn random_bytes(&mut self) -> Vec<u8> {
        let mut frame: Vec<u8> = (0..self.rng.usize(ETH_HLEN..128))
            .map(|_| self.rng.u8(..))
            .collect();
        if self.rng.bool() {
            let ethertype = self.pick(&[
                [0x08, 0x00],
                [0x86, 0xdd],
                [0x81, 0x00],
                [0x88, 0xa8],
                [0x08, 0x06],
            ]);
            frame[12..14].copy_from_slice(&ethertype);
        }
        frame
    }
}

/// A frame to build, with its VLAN tags (outermost first).
struct Spec {
    spec: FrameSpec,
    tags: Vec<u16>,
}

impl Spec {
    fn build_tagged(&self, rng: &mut Rng) -> Vec<u8> {
        let mut frame = self.spec.build();
        for id in self.tags.iter().rev() {
            frame = vlan_tagged(&frame, *id);
        }
        if self.tags.len() > 1 || (!self.tags.is_empty() && rng.u8(0..4) == 0) {
            frame[12..14].copy_from_slice(&[0x88, 0xa8]); // 802.1ad outer tag
        }
        frame
    }
}

fn set(frame: &mut [u8], at: usize, value: u8) {
    if let Some(byte) = frame.get_mut(at) {
        *byte = value;
    }
}

fn v6_any(rng: &mut Rng) -> IpAddr {
    if rng.bool() {
        v6(rng.u16(..))
    } else {
        IpAddr::V6(Ipv6Addr::from(rng.u128(..)))
    }
}
