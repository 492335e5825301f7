//! ICMP errors in the fuzz oracle: what the program must do with an ICMP
//! or ICMPv6 error quoting a TCP/UDP packet, decided without it (RFC 5508
//! section 7): an error about a packet of an open flow goes to the end
//! that sent the original, the quote rewritten to that end's own packet,
//! the error's destination (and its source, when the other end itself
//! sent it) rewritten, every checksum adjusted by RFC 1624 (written here);
//! an error quoting no open flow is the kernel's, passed unchanged.
//!
//! The parse mirrors the program's contract: Ethernet, one VLAN tag; IPv4
//! (no fragment, options inside the frame) with ICMP types 3, 11 and 12,
//! or IPv6 with ICMPv6 types 1 to 4 right after its header; the quote an
//! IPv4 (first fragment) or IPv6 (no extension header) TCP/UDP packet
//! whose first 8 bytes of TCP/UDP are inside the frame.

use std::net::IpAddr;

use super::oracle::{addr, adjust, be16, same_but_checksums};

/// An ICMP error and its quote.
#[derive(Clone, Copy, Debug)]
pub struct IcmpError {
    l3: usize,
    v6: bool,
    icmp: usize,
    inner: usize,
    inner_l4: usize,
    pub proto: u8,
    from: IpAddr,
    /// The quoted packet's addresses and ports.
    pub q_src: IpAddr,
    pub q_dst: IpAddr,
    pub q_sport: u16,
    pub q_dport: u16,
}

/// The ICMP error `frame` is, if it is one the program looks into.
pub fn parse(frame: &[u8]) -> Option<IcmpError> {
    let mut ethertype = be16(frame.get(..14)?, 12);
    let mut l3 = 14;
    if matches!(ethertype, 0x8100 | 0x88a8) {
        ethertype = be16(frame.get(..18)?, 16);
        l3 = 18;
    }
    let (v6, icmp, inner, from) = match ethertype {
        0x0800 => {
            let ip = frame.get(l3..l3 + 20)?;
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ip[0] >> 4 != 4 || ihl < 20 || be16(ip, 6) & 0x3fff != 0 || ip[9] != 1 {
                return None;
            }
            frame.get(l3 + ihl - 1)?;
            let icmp = l3 + ihl;
            if !matches!(frame.get(icmp..icmp + 8)?[0], 3 | 11 | 12) {
                return None;
            }
            (false, icmp, icmp + 8, addr(&ip[12..16]))
        }
        0x86dd => {
            let ip = frame.get(l3..l3 + 40)?;
            if ip[0] >> 4 != 6 || ip[6] != 58 {
                return None;
            }
            let icmp = l3 + 40;
            if !(1..=4).contains(frame.get(icmp)?) {
                return None;
            }
            (true, icmp, icmp + 8, addr(&ip[8..24]))
        }
        _ => return None,
    };
    let (inner_l4, proto, q_src, q_dst) = if v6 {
        let q = frame.get(inner..inner + 40)?;
        if q[0] >> 4 != 6 {
            return None;
        }
        (inner + 40, q[6], addr(&q[8..24]), addr(&q[24..40]))
    } else {
        let q = frame.get(inner..inner + 20)?;
        let ihl = usize::from(q[0] & 0x0f) * 4;
        if q[0] >> 4 != 4 || ihl < 20 || be16(q, 6) & 0x1fff != 0 {
            return None;
        }
        (inner + ihl, q[9], addr(&q[12..16]), addr(&q[16..20]))
    };
    if !matches!(proto, 6 | 17) {
        return None;
    }
    let ports = frame.get(inner_l4..inner_l4 + 8)?;
    Some(IcmpError {
        l3,
        v6,
        icmp,
        inner,
        inner_l4,
        proto,
        from,
        q_src,
        q_dst,
        q_sport: be16(ports, 0),
        q_dport: be16(ports, 2),
    })
}

/// How the quote and the error's header must change.
pub struct Rewrite {
    pub dst_mac: [u8; 6],
    /// The quote as the receiving end sent it.
    pub src: (IpAddr, u16),
    pub dst: (IpAddr, u16),
    /// The error's new destination.
    pub to: IpAddr,
    /// The error's new source when it came from the quote's destination
    /// (the other end itself), else it keeps its own.
    pub from_if_endpoint: IpAddr,
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The frame the program must send for `e` (`input`), rewritten by `r`;
/// `None` for the MACs only (a dsr flow's error, to its backend).
pub fn expected(input: &[u8], e: &IcmpError, r: &Rewrite, translate: bool) -> Vec<u8> {
    let mut frame = input.to_vec();
    frame[6..12].copy_from_slice(&input[..6]);
    frame[..6].copy_from_slice(&r.dst_mac);
    if !translate {
        return frame;
    }
    let n = if e.v6 { 16 } else { 4 };
    let (q_src_at, q_dst_at) = if e.v6 {
        (e.inner + 8, e.inner + 24)
    } else {
        (e.inner + 12, e.inner + 16)
    };
    let (o_src_at, o_dst_at) = if e.v6 {
        (e.l3 + 8, e.l3 + 24)
    } else {
        (e.l3 + 12, e.l3 + 16)
    };
    let mut put = |at: usize, bytes: &[u8]| frame[at..at + bytes.len()].copy_from_slice(bytes);
    // The quote: addresses, ports; its IPv4 header checksum.
    let old_q: Vec<u8> = [
        &input[q_src_at..q_src_at + n],
        &input[q_dst_at..q_dst_at + n],
        &input[e.inner_l4..e.inner_l4 + 4],
    ]
    .concat();
    let new_q: Vec<u8> = [
        octets(r.src.0),
        octets(r.dst.0),
        r.src.1.to_be_bytes().to_vec(),
        r.dst.1.to_be_bytes().to_vec(),
    ]
    .concat();
    put(q_src_at, &new_q[..n]);
    put(q_dst_at, &new_q[n..2 * n]);
    put(e.inner_l4, &new_q[2 * n..]);
    let mut icmp_old = old_q.clone();
    let mut icmp_new = new_q.clone();
    if !e.v6 {
        let at = e.inner + 10;
        let old = be16(input, at);
        let new = adjust(old, &old_q[..8], &new_q[..8]);
        put(at, &new.to_be_bytes());
        icmp_old.extend_from_slice(&old.to_be_bytes());
        icmp_new.extend_from_slice(&new.to_be_bytes());
    }
    // The quoted TCP/UDP checksum, where the frame holds it.
    let at = e.inner_l4 + if e.proto == 6 { 16 } else { 6 };
    if at + 2 <= input.len() {
        let old = be16(input, at);
        if !(e.proto == 17 && !e.v6 && old == 0) {
            let mut new = adjust(old, &old_q, &new_q);
            if e.proto == 17 && new == 0 {
                new = 0xffff;
            }
            put(at, &new.to_be_bytes());
            icmp_old.extend_from_slice(&old.to_be_bytes());
            icmp_new.extend_from_slice(&new.to_be_bytes());
        }
    }
    // The error's own addresses.
    let from = if e.from == e.q_dst {
        r.from_if_endpoint
    } else {
        e.from
    };
    let old_o: Vec<u8> = [
        &input[o_src_at..o_src_at + n],
        &input[o_dst_at..o_dst_at + n],
    ]
    .concat();
    let new_o: Vec<u8> = [octets(from), octets(r.to)].concat();
    put(o_src_at, &new_o[..n]);
    put(o_dst_at, &new_o[n..]);
    if e.v6 {
        // ICMPv6's checksum covers them (pseudo-header).
        icmp_old.extend_from_slice(&old_o);
        icmp_new.extend_from_slice(&new_o);
    } else {
        let at = e.l3 + 10;
        put(at, &adjust(be16(input, at), &old_o, &new_o).to_be_bytes());
    }
    let at = e.icmp + 2;
    put(
        at,
        &adjust(be16(input, at), &icmp_old, &icmp_new).to_be_bytes(),
    );
    frame
}

/// `out` equals `expected`, but where a checksum holds zero one way and
/// 0xffff the other (the same in one's complement).
pub fn same(out: &[u8], expected: &[u8], e: &IcmpError) -> Result<(), String> {
    let mut fields = vec![e.icmp + 2, e.inner_l4 + if e.proto == 6 { 16 } else { 6 }];
    if !e.v6 {
        fields.extend([e.l3 + 10, e.inner + 10]);
    }
    same_but_checksums(out, expected, &fields, "ICMP error sent")
}
