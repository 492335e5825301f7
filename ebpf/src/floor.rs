//! The benchmark's floor program (`cargo xtask bench dataplane`): the least
//! any L4 load balancer must do for a flow hit. Parse Ethernet, IPv4 and
//! TCP; one hash lookup on the 5-tuple; rewrite the MACs and, in nat mode,
//! the addresses and ports with incremental checksum updates; `XDP_TX`.
//! Anything else is passed. It is a binary of its own: the agent never
//! loads it.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::HashMap,
    programs::XdpContext,
};
use vipx_common::{
    FAMILY_V4, FlowKey,
    csum::{replace16, replace32},
    floor::{FLOOR_FLOW_ENTRIES, FLOOR_MODE_NAT, FloorFlow},
};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const IPPROTO_TCP: u8 = 6;
const IPV4_CSUM_OFF: usize = 10;
const TCP_CSUM_OFF: usize = 16;

/// How to rewrite each 5-tuple's frames.
#[map(name = "VIPX_FLOOR_FLOWS")]
static VIPX_FLOOR_FLOWS: HashMap<FlowKey, FloorFlow> =
    HashMap::with_max_entries(FLOOR_FLOW_ENTRIES, 0);

#[xdp]
pub fn vipx_floor(ctx: XdpContext) -> u32 {
    floor(&ctx).unwrap_or(xdp_action::XDP_PASS)
}

/// A bounds-checked mutable pointer to `N` bytes at `off`.
#[inline(always)]
fn at<const N: usize>(ctx: &XdpContext, off: usize) -> Option<&'static mut [u8; N]> {
    if ctx.data() + off + N > ctx.data_end() {
        return None;
    }
    // SAFETY: the `N` bytes lie inside the frame (checked above), which
    // outlives this run of the program.
    Some(unsafe { &mut *((ctx.data() + off) as *mut [u8; N]) })
}

#[inline(always)]
fn floor(ctx: &XdpContext) -> Option<u32> {
    let eth = at::<ETH_HLEN>(ctx, 0)?;
    if u16::from_be_bytes([eth[12], eth[13]]) != ETH_P_IP {
        return None;
    }
    let ip = at::<20>(ctx, ETH_HLEN)?;
    let l4_off = ETH_HLEN + usize::from(ip[0] & 0x0f) * 4;
    if ip[9] != IPPROTO_TCP || l4_off < ETH_HLEN + 20 {
        return None;
    }
    let tcp = at::<20>(ctx, l4_off)?;
    let mut key = FlowKey {
        sport: u16::from_be_bytes([tcp[0], tcp[1]]),
        dport: u16::from_be_bytes([tcp[2], tcp[3]]),
        proto: IPPROTO_TCP,
        family: FAMILY_V4,
        ..FlowKey::default()
    };
    key.src[..4].copy_from_slice(&ip[12..16]);
    key.dst[..4].copy_from_slice(&ip[16..20]);
    // SAFETY: the benchmark writes the map before it runs the program.
    let flow = unsafe { VIPX_FLOOR_FLOWS.get(&key) }?;
    let ours = [eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]];
    eth[6..12].copy_from_slice(&ours);
    eth[0..6].copy_from_slice(&flow.mac);
    if flow.mode == FLOOR_MODE_NAT {
        let old_src = [ip[12], ip[13], ip[14], ip[15]];
        let old_dst = [ip[16], ip[17], ip[18], ip[19]];
        let mut ip_csum = u16::from_be_bytes([ip[IPV4_CSUM_OFF], ip[IPV4_CSUM_OFF + 1]]);
        ip_csum = replace32(replace32(ip_csum, old_src, flow.src), old_dst, flow.dst);
        ip[IPV4_CSUM_OFF..IPV4_CSUM_OFF + 2].copy_from_slice(&ip_csum.to_be_bytes());
        ip[12..16].copy_from_slice(&flow.src);
        ip[16..20].copy_from_slice(&flow.dst);
        let mut csum = u16::from_be_bytes([tcp[TCP_CSUM_OFF], tcp[TCP_CSUM_OFF + 1]]);
        csum = replace32(replace32(csum, old_src, flow.src), old_dst, flow.dst);
        csum = replace16(
            replace16(csum, key.sport, flow.sport),
            key.dport,
            flow.dport,
        );
        tcp[TCP_CSUM_OFF..TCP_CSUM_OFF + 2].copy_from_slice(&csum.to_be_bytes());
        tcp[0..2].copy_from_slice(&flow.sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&flow.dport.to_be_bytes());
    }
    Some(xdp_action::XDP_TX)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
