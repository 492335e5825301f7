//! What may come out of the program, decided without it: an independent
//! parse of the input (DESIGN.md, "Kernel data plane": Ethernet, one VLAN
//! tag, IPv4 without fragments and with its options inside the frame,
//! IPv6 without extension headers, whole TCP/UDP headers), a model of the
//! flows the program opened (learnt from what it sent; kept for the whole
//! epoch: a RST only marks a flow, the agent's collector, which never runs
//! here, ends it),
//! and the frame each must become (addresses, ports and MACs written from
//! the model, checksums updated by RFC 1624 eqn. 3, written here).
//!
//! The rules checked, per frame:
//! - not TCP/UDP to a VIP (nor election traffic): `XDP_PASS`, unchanged;
//! - VRRP or to the heartbeat port: dropped, or passed unchanged;
//! - TCP/UDP to a VIP: passed unchanged only if no service, NAT range or
//!   flow owns it; sent (`XDP_TX`) only to its flow's backend (a new flow:
//!   one of its service's backends, from a NAT port of the range no other
//!   flow to that backend holds), or as a reply to its flow's client;
//!   dropped only if no flow owns it. A SYN without ACK on a flow that a
//!   RST or a FIN may have ended opens a new connection: it may go on as a
//!   new flow (its old NAT port freed), or be dropped with the old flow
//!   forgotten.

use std::{collections::HashMap, net::IpAddr};

use vipx_agent::{config::Mode, dataplane::ServiceSpec};
use vipx_common::action;
use vipx_lab::rig::backend_mac;

use super::{HEARTBEAT_PORT, frames::ReplyTuple, icmp};

/// A parsed TCP/UDP packet.
#[derive(Clone, Copy, Debug)]
pub struct Parsed {
    l3: usize,
    v6: bool,
    l4: usize,
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
}

impl Parsed {
    fn key(&self) -> Key {
        (self.src, self.sport, self.dst, self.dport, self.proto)
    }

    fn reply_tuple(&self) -> ReplyTuple {
        ReplyTuple {
            backend: self.src,
            backend_port: self.sport,
            vip: self.dst,
            nat_port: self.dport,
            proto: self.proto,
        }
    }
}

/// What a frame is, for the rules.
pub enum Class {
    /// Not TCP/UDP to a VIP, not election traffic.
    Other,
    /// VRRP, or UDP to the heartbeat port.
    Election,
    /// TCP or UDP to a VIP.
    Vip(Parsed),
}

pub(super) fn be16(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

pub(super) fn addr(bytes: &[u8]) -> IpAddr {
    match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).expect("4 bytes")),
        _ => IpAddr::from(<[u8; 16]>::try_from(bytes).expect("16 bytes")),
    }
}

/// Classifies `frame` (see the module's doc for the rules of the parse).
pub fn classify(frame: &[u8], vips: &[IpAddr]) -> Class {
    match parse(frame) {
        Some(p) if p.proto == 112 || (p.proto == 17 && p.dport == HEARTBEAT_PORT) => {
            Class::Election
        }
        Some(p) if vips.contains(&p.dst) => Class::Vip(p),
        _ => Class::Other,
    }
}

/// TCP, UDP or VRRP (ports 0) over IPv4 or IPv6, every header
/// it needs inside the frame.
fn parse(frame: &[u8]) -> Option<Parsed> {
    let mut ethertype = be16(frame.get(..14)?, 12);
    let mut l3 = 14;
    if matches!(ethertype, 0x8100 | 0x88a8) {
        ethertype = be16(frame.get(..18)?, 16);
        l3 = 18;
    }
    let (v6, proto, l4, src, dst) = match ethertype {
        0x0800 => {
            let ip = frame.get(l3..l3 + 20)?;
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let fragment = be16(ip, 6) & 0x3fff != 0;
            if ip[0] >> 4 != 4 || ihl < 20 || fragment || frame.len() < l3 + ihl {
                return None;
            }
            (false, ip[9], l3 + ihl, addr(&ip[12..16]), addr(&ip[16..20]))
        }
        0x86dd => {
            let ip = frame.get(l3..l3 + 40)?;
            if ip[0] >> 4 != 6 {
                return None;
            }
            (true, ip[6], l3 + 40, addr(&ip[8..24]), addr(&ip[24..40]))
        }
        _ => return None,
    };
    let l4_len = match proto {
        6 => 20,
        17 => 8,
        112 => 0,
        _ => return None,
    };
    let hdr = frame.get(l4..l4 + l4_len)?;
    let (sport, dport) = match proto {
        6 | 17 => (be16(hdr, 0), be16(hdr, 2)),
        _ => (0, 0),
    };
    Some(Parsed {
        l3,
        v6,
        l4,
        proto,
        src,
        dst,
        sport,
        dport,
    })
}

type Key = (IpAddr, u16, IpAddr, u16, u8);

/// A flow the program opened.
struct Flow {
    backend: IpAddr,
    backend_port: u16,
    /// 0 in dsr mode.
    nat_port: u16,
    client_mac: [u8; 6],
    /// A RST or a FIN of it went through (either way).
    maybe_ended: bool,
    /// The MACs of the SYNs that may have opened it again on the same
    /// backend and NAT port (the program then holds the MAC of one):
    /// replies may go to any until one does.
    reopened_macs: Vec<[u8; 6]>,
}

impl Flow {
    /// The program sent `out` to this flow's client: if it went to the MAC
    /// of a SYN that may have opened the flow again, the program holds that
    /// one; else it holds the one it had.
    fn learn_client_mac(&mut self, out: &[u8]) {
        if let Some(mac) = out.get(..6).and_then(|m| <[u8; 6]>::try_from(m).ok())
            && self.reopened_macs.contains(&mac)
        {
            self.client_mac = mac;
        }
        self.reopened_macs.clear();
    }
}

/// TCP flags a frame carries (0 for UDP).
fn tcp_flags(p: &Parsed, frame: &[u8]) -> u8 {
    if p.proto == 6 { frame[p.l4 + 13] } else { 0 }
}

/// RST or FIN.
fn ends(flags: u8) -> bool {
    flags & 0x05 != 0
}

/// SYN without ACK or RST: a connection's first segment.
fn opens(flags: u8) -> bool {
    flags & 0x16 == 0x02
}

/// What a sent frame was.
pub enum Sent {
    ToBackend,
    ToClient,
    /// An ICMP error about a flow, to its backend or to its client.
    IcmpToBackend,
    IcmpToClient,
}

/// The flows the program opened, as its output showed them.
pub struct Model {
    services: Vec<ServiceSpec>,
    flows: HashMap<Key, Flow>,
    replies: HashMap<ReplyTuple, Key>,
    /// Every reply tuple opened, oldest first (for the generator).
    pub opened: Vec<ReplyTuple>,
}

impl Model {
    pub fn new(services: Vec<ServiceSpec>) -> Self {
        Self {
            services,
            flows: HashMap::new(),
            replies: HashMap::new(),
            opened: Vec::new(),
        }
    }

    fn service(&self, p: &Parsed) -> Option<&ServiceSpec> {
        self.services
            .iter()
            .find(|s| s.vip == p.dst && s.port == p.dport && s.protocol == p.proto)
    }

    /// Whether the program owns `p` (a service's, a NAT range's, a flow's).
    fn owned(&self, p: &Parsed) -> bool {
        self.service(p).is_some()
            || self.services.iter().any(|s| {
                s.mode == Mode::Nat
                    && s.vip == p.dst
                    && s.protocol == p.proto
                    && (s.nat_ports.first..=s.nat_ports.last).contains(&p.dport)
            })
    }

    /// Checks the program's `action` and `out` for `input`; `Ok` says what
    /// a sent frame was.
    pub fn check(
        &mut self,
        input: &[u8],
        action: u32,
        out: &[u8],
        vips: &[IpAddr],
    ) -> Result<Option<Sent>, String> {
        if let Some(e) = icmp::parse(input) {
            return self.icmp(&e, input, action, out);
        }
        let p = match classify(input, vips) {
            Class::Other if action == action::PASS && out == input => return Ok(None),
            Class::Other => return Err("not for a VIP: must pass unchanged".into()),
            Class::Election
                if action == action::DROP || (action == action::PASS && out == input) =>
            {
                return Ok(None);
            }
            Class::Election => return Err("election traffic: dropped or passed unchanged".into()),
            Class::Vip(p) => p,
        };
        let reopened =
            opens(tcp_flags(&p, input)) && self.flows.get(&p.key()).is_some_and(|f| f.maybe_ended);
        if reopened && action == action::DROP {
            // The program forgot the ended flow, and had no room for the
            // new one.
            self.forget(&p.key());
            return Ok(None);
        }
        let live = self.flows.contains_key(&p.key()) || self.replies.contains_key(&p.reply_tuple());
        match action {
            action::PASS if out != input => Err("passed changed".into()),
            action::PASS if self.owned(&p) => {
                Err("a VIP's service or NAT port handed to the kernel".into())
            }
            action::PASS => Ok(None),
            action::DROP if live => Err("a packet of a live flow dropped".into()),
            action::DROP => Ok(None),
            action::TX if out.len() != input.len() => Err("sent with another length".into()),
            action::TX => self.sent(&p, input, out).map(Some),
            other => Err(format!("action {other}")),
        }
    }

    fn sent(&mut self, p: &Parsed, input: &[u8], out: &[u8]) -> Result<Sent, String> {
        if let Some(client) = self.replies.get(&p.reply_tuple()).copied() {
            let flow = self.flows.get_mut(&client).expect("its flow");
            flow.learn_client_mac(out);
            let expected = rewrite(
                input,
                p,
                flow.client_mac,
                (client.2, client.3),
                (client.0, client.1),
            );
            same(out, &expected, p)?;
            if ends(tcp_flags(p, input)) {
                flow.maybe_ended = true;
            }
            return Ok(Sent::ToClient);
        }
        let key = p.key();
        let flags = tcp_flags(p, input);
        if opens(flags)
            && let Some(flow) = self.flows.get(&key)
            && flow.maybe_ended
        {
            if same(out, &self.to_backend(p, input, flow), p).is_err() {
                self.forget(&key);
            } else {
                let mac = input[6..12].try_into().expect("6 bytes");
                let flow = self.flows.get_mut(&key).expect("its flow");
                flow.reopened_macs.push(mac);
            }
        }
        if !self.flows.contains_key(&key) {
            self.open(p, input, out)?;
        }
        let flow = &self.flows[&key];
        same(out, &self.to_backend(p, input, flow), p)?;
        if ends(flags) {
            self.flows.get_mut(&key).expect("its flow").maybe_ended = true;
        }
        Ok(Sent::ToBackend)
    }

    /// A flow forgotten by the program: its NAT reply tuple is free again.
    fn forget(&mut self, key: &Key) {
        if let Some(flow) = self.flows.remove(key)
            && flow.nat_port != 0
        {
            self.replies.remove(&ReplyTuple {
                backend: flow.backend,
                backend_port: flow.backend_port,
                vip: key.2,
                nat_port: flow.nat_port,
                proto: key.4,
            });
        }
    }

    /// The frame a client's packet of `flow` must become.
    fn to_backend(&self, p: &Parsed, input: &[u8], flow: &Flow) -> Vec<u8> {
        let mac = backend_mac(flow.backend);
        if flow.nat_port == 0 {
            let mut frame = input.to_vec();
            frame[6..12].copy_from_slice(&input[..6]);
            frame[..6].copy_from_slice(&mac);
            frame
        } else {
            rewrite(
                input,
                p,
                mac,
                (p.dst, flow.nat_port),
                (flow.backend, flow.backend_port),
            )
        }
    }

    /// An ICMP error: to the end of an open flow that sent the quoted
    /// packet's original (a NAT reply tuple first, as the program looks),
    /// else passed unchanged.
    fn icmp(
        &mut self,
        e: &icmp::IcmpError,
        input: &[u8],
        action: u32,
        out: &[u8],
    ) -> Result<Option<Sent>, String> {
        let reply = ReplyTuple {
            backend: e.q_dst,
            backend_port: e.q_dport,
            vip: e.q_src,
            nat_port: e.q_sport,
            proto: e.proto,
        };
        let key = (e.q_dst, e.q_dport, e.q_src, e.q_sport, e.proto);
        let (expected, sent) = if let Some(client) = self.replies.get(&reply).copied() {
            let flow = self.flows.get_mut(&client).expect("its flow");
            if action == action::TX {
                flow.learn_client_mac(out);
            }
            let rewrite = icmp::Rewrite {
                dst_mac: flow.client_mac,
                src: (client.0, client.1),
                dst: (client.2, client.3),
                to: client.0,
                from_if_endpoint: client.2,
            };
            (icmp::expected(input, e, &rewrite, true), Sent::IcmpToClient)
        } else if let Some(flow) = self.flows.get(&key) {
            let rewrite = icmp::Rewrite {
                dst_mac: backend_mac(flow.backend),
                src: (flow.backend, flow.backend_port),
                dst: (e.q_src, flow.nat_port),
                to: flow.backend,
                from_if_endpoint: e.q_src,
            };
            let translate = flow.nat_port != 0;
            (
                icmp::expected(input, e, &rewrite, translate),
                Sent::IcmpToBackend,
            )
        } else if action == action::PASS && out == input {
            return Ok(None);
        } else {
            return Err("an ICMP error about no open flow: must pass unchanged".into());
        };
        if action != action::TX {
            return Err("an ICMP error about an open flow must be sent on".into());
        }
        icmp::same(out, &expected, e)?;
        Ok(Some(sent))
    }

    /// Learns a new flow from the frame the program sent for it: to one
    /// of its service's backends (by MAC), from a free NAT port.
    fn open(&mut self, p: &Parsed, input: &[u8], out: &[u8]) -> Result<(), String> {
        let service = self
            .service(p)
            .ok_or("sent, but no service nor flow owns it")?;
        if service.group != 0 {
            return Err("sent for a group this node is not MASTER of".into());
        }
        let backend = service
            .backends
            .iter()
            .find(|b| backend_mac(b.addr) == out[..6])
            .ok_or("a new flow sent to no backend of its service")?
            .clone();
        let (mode, range) = (
            service.mode,
            service.nat_ports.first..=service.nat_ports.last,
        );
        let nat_port = match mode {
            Mode::Dsr => 0,
            Mode::Nat => {
                let port = be16(out, p.l4);
                if !range.contains(&port) {
                    return Err(format!("NAT port {port} outside the range"));
                }
                let tuple = ReplyTuple {
                    backend: backend.addr,
                    backend_port: backend.port,
                    vip: p.dst,
                    nat_port: port,
                    proto: p.proto,
                };
                if let Some(other) = self.replies.get(&tuple) {
                    return Err(format!(
                        "NAT port {port} to {} given twice (also to {other:?})",
                        backend.addr
                    ));
                }
                self.replies.insert(tuple, p.key());
                self.opened.push(tuple);
                port
            }
        };
        let flow = Flow {
            backend: backend.addr,
            backend_port: backend.port,
            nat_port,
            client_mac: input[6..12].try_into().expect("6 bytes"),
            maybe_ended: false,
            reopened_macs: Vec::new(),
        };
        self.flows.insert(p.key(), flow);
        Ok(())
    }
}

/// `input` sent to `dst_mac` from the MAC it came to, with source and
/// destination address and port replaced, checksums updated.
fn rewrite(
    input: &[u8],
    p: &Parsed,
    dst_mac: [u8; 6],
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
) -> Vec<u8> {
    let mut frame = input.to_vec();
    frame[6..12].copy_from_slice(&input[..6]);
    frame[..6].copy_from_slice(&dst_mac);
    let octets = |a: IpAddr| match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let (src_at, dst_at, n) = if p.v6 {
        (p.l3 + 8, p.l3 + 24, 16)
    } else {
        (p.l3 + 12, p.l3 + 16, 4)
    };
    let old: Vec<u8> = [
        &input[src_at..src_at + n],
        &input[dst_at..dst_at + n],
        &input[p.l4..p.l4 + 4],
    ]
    .concat();
    let new: Vec<u8> = [
        octets(src.0),
        octets(dst.0),
        src.1.to_be_bytes().to_vec(),
        dst.1.to_be_bytes().to_vec(),
    ]
    .concat();
    frame[src_at..src_at + n].copy_from_slice(&new[..n]);
    frame[dst_at..dst_at + n].copy_from_slice(&new[n..2 * n]);
    frame[p.l4..p.l4 + 4].copy_from_slice(&new[2 * n..]);
    if !p.v6 {
        let at = p.l3 + 10;
        let csum = adjust(be16(input, at), &old[..8], &new[..8]);
        frame[at..at + 2].copy_from_slice(&csum.to_be_bytes());
    }
    let at = p.l4 + if p.proto == 6 { 16 } else { 6 };
    let old_csum = be16(input, at);
    // UDP over IPv4 without a checksum (RFC 768) stays without.
    if !(p.proto == 17 && !p.v6 && old_csum == 0) {
        frame[at..at + 2].copy_from_slice(&adjust(old_csum, &old, &new).to_be_bytes());
    }
    frame
}

/// RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')` over the 16-bit words that
/// changed from `old` to `new`.
pub(super) fn adjust(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    let words = |b: &[u8]| {
        b.chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .collect::<Vec<_>>()
    };
    let mut sum = u32::from(!csum);
    sum += words(old)
        .iter()
        .map(|w| u32::from(!(*w as u16)))
        .sum::<u32>();
    sum += words(new).iter().sum::<u32>();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// `out` equals `expected`, but where a checksum field holds zero one way
/// and 0xffff the other (the same in one's complement; UDP sends a
/// computed zero as 0xffff).
fn same(out: &[u8], expected: &[u8], p: &Parsed) -> Result<(), String> {
    let mut fields = vec![p.l4 + if p.proto == 6 { 16 } else { 6 }];
    if !p.v6 {
        fields.push(p.l3 + 10);
    }
    same_but_checksums(out, expected, &fields, "sent")
}

/// `out` equals `expected` but for a checksum at one of `fields` (offsets
/// of 16-bit fields inside the frame) that is zero one way and 0xffff the
/// other; else an error naming `what`, with both frames in hex.
pub(super) fn same_but_checksums(
    out: &[u8],
    expected: &[u8],
    fields: &[usize],
    what: &str,
) -> Result<(), String> {
    let csum = |i: usize| fields.iter().any(|&f| i == f || i == f + 1);
    let differs =
        out.len() != expected.len() || (0..out.len()).any(|i| out[i] != expected[i] && !csum(i));
    let csum_differs = fields.iter().filter(|&&f| f + 2 <= out.len()).any(|&f| {
        let (a, b) = (be16(out, f), be16(expected, f));
        a != b && !matches!((a, b), (0, 0xffff) | (0xffff, 0))
    });
    if differs || csum_differs {
        let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
        return Err(format!(
            "{what}\n  got      {}\n  expected {}",
            hex(out),
            hex(expected)
        ));
    }
    Ok(())
}
