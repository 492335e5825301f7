//! Header rewrites with incremental checksum updates (RFC 1624).

use aya_ebpf::helpers::bpf_csum_diff;
use aya_ebpf::programs::XdpContext;
use vipx_common::csum::{fold, replace16, replace32};

use crate::parse::{IPPROTO_TCP, L3, bytes_mut};

/// Offset of the checksum in a TCP header.
const TCP_CSUM_OFF: usize = 16;
/// Offset of the checksum in a UDP header.
const UDP_CSUM_OFF: usize = 6;
/// Offset of the checksum in an IPv4 header.
const IPV4_CSUM_OFF: usize = 10;

/// Sends the frame on to `dst_mac`, from the MAC it was addressed to (ours).
#[inline(always)]
pub fn set_macs(ctx: &XdpContext, dst_mac: [u8; 6]) -> Option<()> {
    // SAFETY: `bytes_mut` checked the 12 bytes are inside the frame.
    let eth = unsafe { &mut *bytes_mut::<12>(ctx, 0)? };
    let ours = [eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]];
    eth[6..12].copy_from_slice(&ours);
    eth[0..6].copy_from_slice(&dst_mac);
    Some(())
}

/// The new addresses and ports of a translated packet (addresses are
/// referenced where they already are, to keep the BPF stack small).
pub struct Translation<'a> {
    pub src: &'a [u8; 16],
    pub dst: &'a [u8; 16],
    pub sport: u16,
    pub dport: u16,
}

/// Rewrites source and destination addresses and ports, keeping the IPv4
/// header checksum and the TCP/UDP checksum (pseudo-header included) valid.
#[inline(always)]
pub fn translate(
    ctx: &XdpContext,
    l3: L3,
    l4_off: usize,
    proto: u8,
    to: &Translation<'_>,
) -> Option<()> {
    let l4_csum = l4_csum_offset(proto, l4_off);
    // SAFETY: both regions were bounds-checked by `bytes_mut`; they do not
    // overlap (ports at 0..4, the checksum at 6 or 16).
    let (ports, csum_field) = unsafe {
        (
            &mut *bytes_mut::<4>(ctx, l4_off)?,
            &mut *bytes_mut::<2>(ctx, l4_csum)?,
        )
    };
    let old_sport = u16::from_be_bytes([ports[0], ports[1]]);
    let old_dport = u16::from_be_bytes([ports[2], ports[3]]);
    let mut csum = u16::from_be_bytes(*csum_field);
    // UDP over IPv4 may carry no checksum at all (RFC 768): leave it so.
    let has_csum = proto == IPPROTO_TCP || csum != 0 || matches!(l3, L3::V6 { .. });
    match l3 {
        L3::V4 { off } => {
            // SAFETY: bounds-checked by `bytes_mut`; disjoint from the L4 header.
            let ip = unsafe { &mut *bytes_mut::<20>(ctx, off)? };
            let old_src = [ip[12], ip[13], ip[14], ip[15]];
            let old_dst = [ip[16], ip[17], ip[18], ip[19]];
            let new_src = [to.src[0], to.src[1], to.src[2], to.src[3]];
            let new_dst = [to.dst[0], to.dst[1], to.dst[2], to.dst[3]];
            let mut ip_csum = u16::from_be_bytes([ip[IPV4_CSUM_OFF], ip[IPV4_CSUM_OFF + 1]]);
            ip_csum = replace32(replace32(ip_csum, old_src, new_src), old_dst, new_dst);
            ip[IPV4_CSUM_OFF..IPV4_CSUM_OFF + 2].copy_from_slice(&ip_csum.to_be_bytes());
            ip[12..16].copy_from_slice(&new_src);
            ip[16..20].copy_from_slice(&new_dst);
            csum = replace32(replace32(csum, old_src, new_src), old_dst, new_dst);
        }
        L3::V6 { off } => {
            let ip = bytes_mut::<40>(ctx, off)?;
            // The kernel's csum_diff reads the old addresses in place: 16-byte
            // fields summed in registers would not fit the BPF stack.
            let seed = u32::from(!u16::from_ne_bytes(csum.to_be_bytes()));
            // SAFETY: `ip` is bounds-checked; src at 8..24, dst at 24..40.
            let sum = unsafe {
                let base = ip.cast::<u8>();
                let sum = csum_diff(base.add(8), to.src, seed)?;
                csum_diff(base.add(24), to.dst, sum)?
            };
            csum = u16::from_be_bytes((!fold(sum)).to_ne_bytes());
            // SAFETY: as above.
            let ip = unsafe { &mut *ip };
            ip[8..24].copy_from_slice(to.src);
            ip[24..40].copy_from_slice(to.dst);
        }
    }
    csum = replace16(replace16(csum, old_sport, to.sport), old_dport, to.dport);
    if proto != IPPROTO_TCP && csum == 0 {
        // A computed UDP checksum of zero is sent as all ones.
        csum = 0xffff;
    }
    ports[0..2].copy_from_slice(&to.sport.to_be_bytes());
    ports[2..4].copy_from_slice(&to.dport.to_be_bytes());
    if has_csum {
        *csum_field = csum.to_be_bytes();
    }
    Some(())
}

/// `bpf_csum_diff` of a 16-byte field: `seed + ~old + new`, unfolded.
///
/// # Safety
/// `old` must point at 16 readable bytes (bounds-checked packet data).
#[inline(always)]
unsafe fn csum_diff(old: *const u8, new: &[u8; 16], seed: u32) -> Option<u32> {
    // SAFETY: the caller guarantees `old`; `new` is a valid reference. The
    // helper only reads both buffers.
    let sum = unsafe {
        bpf_csum_diff(
            old.cast::<u32>().cast_mut(),
            16,
            new.as_ptr().cast::<u32>().cast_mut(),
            16,
            seed,
        )
    };
    u32::try_from(sum).ok()
}

#[inline(always)]
fn l4_csum_offset(proto: u8, l4_off: usize) -> usize {
    if proto == IPPROTO_TCP {
        l4_off + TCP_CSUM_OFF
    } else {
        l4_off + UDP_CSUM_OFF
    }
}
