//! ICMP and ICMPv6 errors about the packets of a flow ("fragmentation
//! needed", "packet too big", unreachable, time exceeded), sent on to the
//! end that needs them, translated as the flow's packets are (RFC 5508
//! section 7, what conntrack does for NAT): without it, path MTU discovery
//! fails through the VIP and large replies hang on a path with a smaller
//! MTU.
//!
//! The quoted packet left this node, so the reverse of its tuple is the
//! direction that came in: a backend's reply (a NAT entry) when it quotes
//! a packet sent to a backend, a client's packet (a flow) when it quotes
//! one sent to a client.

use aya_ebpf::programs::XdpContext;
use vipx_common::{
    FAMILY_V4, FAMILY_V6, Flow, FlowKey, NatEntry,
    csum::{replace16, replace32, replace128},
    reason,
};

use crate::{
    VIPX_BACKENDS, VIPX_FLOWS, VIPX_NAT,
    balance::serving,
    bump_backend, bump_service, clock,
    decision::Decision,
    parse::{IPPROTO_TCP, IcmpError, L3, bytes, bytes_mut},
    rewrite::set_macs,
};

/// Offset of the checksum in an ICMP header, in a TCP header, in a UDP
/// header and in an IPv4 header.
const ICMP_CSUM_OFF: usize = 2;
const TCP_CSUM_OFF: usize = 16;
const UDP_CSUM_OFF: usize = 6;
const IPV4_CSUM_OFF: usize = 10;

/// Decides the fate of an ICMP error: translated to a flow's client or
/// backend, or passed to the stack when it quotes no flow.
#[inline(always)]
pub fn handle(ctx: &XdpContext, e: &IcmpError, len: u64) -> Decision {
    let Some(back) = reversed_quote(ctx, e) else {
        return Decision::pass(reason::MALFORMED);
    };
    // SAFETY: NAT entries are written once, when the flow is created.
    if let Some(entry) = unsafe { VIPX_NAT.get(&back) } {
        return to_client(ctx, e, &back, entry, len);
    }
    // SAFETY: a flow's fields read here are written once, at creation.
    if let Some(flow) = unsafe { VIPX_FLOWS.get(&back) } {
        return to_backend(ctx, e, &back, flow, len);
    }
    Decision::pass(reason::OTHER_L4)
}

/// The reverse of the quoted packet's tuple.
#[inline(always)]
fn reversed_quote(ctx: &XdpContext, e: &IcmpError) -> Option<FlowKey> {
    // SAFETY: `bytes` checked the quoted ports are inside the frame.
    let ports = unsafe { *bytes::<4>(ctx, e.inner_l4_off)? };
    let mut key = FlowKey {
        sport: u16::from_be_bytes([ports[2], ports[3]]),
        dport: u16::from_be_bytes([ports[0], ports[1]]),
        proto: e.proto,
        ..FlowKey::default()
    };
    match e.l3 {
        L3::V4 { .. } => {
            // SAFETY: bounds-checked by `bytes`.
            let ip = unsafe { &*bytes::<20>(ctx, e.inner_off)? };
            key.family = FAMILY_V4;
            key.src[..4].copy_from_slice(&ip[16..20]);
            key.dst[..4].copy_from_slice(&ip[12..16]);
        }
        L3::V6 { .. } => {
            // SAFETY: bounds-checked by `bytes`.
            let ip = unsafe { &*bytes::<40>(ctx, e.inner_off)? };
            key.family = FAMILY_V6;
            key.src.copy_from_slice(&ip[24..40]);
            key.dst.copy_from_slice(&ip[8..24]);
        }
    }
    Some(key)
}

/// The quoted packet as the receiving end sent it, and where the error
/// goes: `to` (the error's destination); an error the other end itself
/// sent (its source is the quote's old destination) comes from `from`.
struct Rewrite<'a> {
    src: &'a [u8; 16],
    dst: &'a [u8; 16],
    sport: u16,
    dport: u16,
    to: &'a [u8; 16],
    endpoint: &'a [u8; 16],
    from: &'a [u8; 16],
}

/// An error about a packet sent to a backend (VIP:nat-port -> backend):
/// to the client, quoting its own packet (client -> VIP:port). `back` is
/// the backend's reply direction, the NAT entry's key.
#[inline(always)]
fn to_client(
    ctx: &XdpContext,
    e: &IcmpError,
    back: &FlowKey,
    entry: &NatEntry,
    len: u64,
) -> Decision {
    if let Err(why) = serving(entry.group, clock::coarse_ns()) {
        return Decision::drop(why);
    }
    let client = &entry.client;
    let rewrite = Rewrite {
        src: &client.src,
        dst: &client.dst,
        sport: client.sport,
        dport: client.dport,
        to: &client.src,
        endpoint: &back.src,
        from: &client.dst,
    };
    if set_macs(ctx, entry.client_mac).is_none() || translate(ctx, e, &rewrite).is_none() {
        return Decision::drop(reason::MALFORMED);
    }
    bump_service(entry.service, len);
    Decision::tx(reason::ICMP_TO_CLIENT)
}

/// An error about a packet sent to a client (VIP:port -> client): to the
/// flow's backend; nat: quoting the backend's own packet (backend ->
/// VIP:nat-port). `back` is the client's direction, the flow's key.
#[inline(always)]
fn to_backend(ctx: &XdpContext, e: &IcmpError, back: &FlowKey, flow: &Flow, len: u64) -> Decision {
    if let Err(why) = serving(flow.group, clock::coarse_ns()) {
        return Decision::drop(why);
    }
    let Some(backend) = VIPX_BACKENDS.get(flow.backend) else {
        return Decision::drop(reason::MAP_ERROR);
    };
    if backend.mac == [0; 6] {
        return Decision::drop(reason::NO_NEIGH);
    }
    if set_macs(ctx, backend.mac).is_none() {
        return Decision::drop(reason::MALFORMED);
    }
    // dsr (no NAT port): the backend sent the quoted packet itself.
    if flow.nat_port != 0 {
        let rewrite = Rewrite {
            src: &backend.addr,
            dst: &back.dst,
            sport: backend.port,
            dport: flow.nat_port,
            to: &backend.addr,
            endpoint: &back.src,
            from: &back.dst,
        };
        if translate(ctx, e, &rewrite).is_none() {
            return Decision::drop(reason::MALFORMED);
        }
    }
    bump_service(flow.service, len);
    bump_backend(flow.backend, len);
    Decision::tx(reason::ICMP_TO_BACKEND)
}

/// Rewrites the quote (addresses, ports, its IPv4 header checksum and its
/// TCP/UDP checksum when quoted), the error's destination (and source, when
/// the other end sent it), and every checksum over them, incrementally.
#[inline(always)]
fn translate(ctx: &XdpContext, e: &IcmpError, r: &Rewrite<'_>) -> Option<()> {
    // SAFETY: each region is bounds-checked by `bytes_mut`; they do not
    // overlap (ICMP header, quoted IP header, quoted ports).
    let (icmp_csum, ports) = unsafe {
        (
            &mut *bytes_mut::<2>(ctx, e.icmp_off + ICMP_CSUM_OFF)?,
            &mut *bytes_mut::<4>(ctx, e.inner_l4_off)?,
        )
    };
    let l4_csum_off = if e.proto == IPPROTO_TCP {
        e.inner_l4_off + TCP_CSUM_OFF
    } else {
        e.inner_l4_off + UDP_CSUM_OFF
    };
    // A quote may stop before TCP's checksum; UDP's is always quoted.
    let l4_csum = bytes_mut::<2>(ctx, l4_csum_off);
    let mut csum = u16::from_be_bytes(*icmp_csum);
    let old_sport = u16::from_be_bytes([ports[0], ports[1]]);
    let old_dport = u16::from_be_bytes([ports[2], ports[3]]);
    // The quoted TCP/UDP checksum (pseudo-header included), and its change
    // carried into the ICMP checksum, which covers the whole quote.
    let mut l4 = l4_csum.map(|field| {
        // SAFETY: bounds-checked by `bytes_mut`.
        let old = u16::from_be_bytes(unsafe { *field });
        (field, old, old)
    });
    match e.l3 {
        L3::V4 { off } => {
            // SAFETY: bounds-checked; the outer and quoted IP headers are
            // disjoint from each other and from the regions above.
            let (outer, inner) = unsafe {
                (
                    &mut *bytes_mut::<20>(ctx, off)?,
                    &mut *bytes_mut::<20>(ctx, e.inner_off)?,
                )
            };
            let old_src = [inner[12], inner[13], inner[14], inner[15]];
            let old_dst = [inner[16], inner[17], inner[18], inner[19]];
            let new_src = [r.src[0], r.src[1], r.src[2], r.src[3]];
            let new_dst = [r.dst[0], r.dst[1], r.dst[2], r.dst[3]];
            let old_ip_csum = u16::from_be_bytes([inner[IPV4_CSUM_OFF], inner[IPV4_CSUM_OFF + 1]]);
            let ip_csum = replace32(replace32(old_ip_csum, old_src, new_src), old_dst, new_dst);
            if let Some((_, _, new)) = l4.as_mut()
                && (e.proto == IPPROTO_TCP || *new != 0)
            {
                *new = replace32(replace32(*new, old_src, new_src), old_dst, new_dst);
            }
            csum = replace32(replace32(csum, old_src, new_src), old_dst, new_dst);
            csum = replace16(csum, old_ip_csum, ip_csum);
            inner[IPV4_CSUM_OFF..IPV4_CSUM_OFF + 2].copy_from_slice(&ip_csum.to_be_bytes());
            inner[12..16].copy_from_slice(&new_src);
            inner[16..20].copy_from_slice(&new_dst);
            // The error's own header (ICMPv4's checksum does not cover it).
            let old_from = [outer[12], outer[13], outer[14], outer[15]];
            let old_to = [outer[16], outer[17], outer[18], outer[19]];
            let from = if old_from == [r.endpoint[0], r.endpoint[1], r.endpoint[2], r.endpoint[3]] {
                [r.from[0], r.from[1], r.from[2], r.from[3]]
            } else {
                old_from
            };
            let to = [r.to[0], r.to[1], r.to[2], r.to[3]];
            let mut outer_csum =
                u16::from_be_bytes([outer[IPV4_CSUM_OFF], outer[IPV4_CSUM_OFF + 1]]);
            outer_csum = replace32(replace32(outer_csum, old_from, from), old_to, to);
            outer[IPV4_CSUM_OFF..IPV4_CSUM_OFF + 2].copy_from_slice(&outer_csum.to_be_bytes());
            outer[12..16].copy_from_slice(&from);
            outer[16..20].copy_from_slice(&to);
        }
        L3::V6 { off } => {
            let outer = bytes_mut::<40>(ctx, off)?;
            let inner = bytes_mut::<40>(ctx, e.inner_off)?;
            // SAFETY: bounds-checked; read in place before any write.
            let (old_src, old_dst, old_from, old_to) = unsafe {
                (
                    &*inner.cast::<u8>().add(8).cast::<[u8; 16]>(),
                    &*inner.cast::<u8>().add(24).cast::<[u8; 16]>(),
                    &*outer.cast::<u8>().add(8).cast::<[u8; 16]>(),
                    &*outer.cast::<u8>().add(24).cast::<[u8; 16]>(),
                )
            };
            if let Some((_, _, new)) = l4.as_mut() {
                *new = replace128(replace128(*new, old_src, r.src), old_dst, r.dst);
            }
            csum = replace128(replace128(csum, old_src, r.src), old_dst, r.dst);
            // ICMPv6's checksum covers the error's own addresses too
            // (RFC 4443 section 2.3).
            let endpoint_sent = old_from == r.endpoint;
            if endpoint_sent {
                csum = replace128(csum, old_from, r.from);
            }
            csum = replace128(csum, old_to, r.to);
            // SAFETY: as above; the old values are no longer read.
            let (outer, inner) = unsafe { (&mut *outer, &mut *inner) };
            inner[8..24].copy_from_slice(r.src);
            inner[24..40].copy_from_slice(r.dst);
            if endpoint_sent {
                outer[8..24].copy_from_slice(r.from);
            }
            outer[24..40].copy_from_slice(r.to);
        }
    }
    if let Some((field, old, mut new)) = l4 {
        if e.proto == IPPROTO_TCP || old != 0 || matches!(e.l3, L3::V6 { .. }) {
            new = replace16(replace16(new, old_sport, r.sport), old_dport, r.dport);
            if e.proto != IPPROTO_TCP && new == 0 {
                // A computed UDP checksum of zero is sent as all ones.
                new = 0xffff;
            }
            csum = replace16(csum, old, new);
            // SAFETY: bounds-checked by `bytes_mut`.
            unsafe { *field = new.to_be_bytes() };
        }
    }
    csum = replace16(replace16(csum, old_sport, r.sport), old_dport, r.dport);
    ports[0..2].copy_from_slice(&r.sport.to_be_bytes());
    ports[2..4].copy_from_slice(&r.dport.to_be_bytes());
    *icmp_csum = csum.to_be_bytes();
    Some(())
}
