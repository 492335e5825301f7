//! The vipx XDP program.
//!
//! Per packet: parse (Ethernet, one VLAN tag, IPv4/IPv6, TCP/UDP), decide,
//! count the decision in per-CPU maps. Anything the program does not own is
//! passed to the stack untouched.
#![no_std]
#![no_main]

mod parse;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};
use vipx_common::{Counter, action, reason};

use crate::parse::{L4, parse};

/// Per-action counters, indexed by the XDP action itself.
#[map(name = "VIPX_ACTIONS")]
static VIPX_ACTIONS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(action::COUNT, 0);

/// Per-reason counters: why the program decided what it did.
#[map(name = "VIPX_REASONS")]
static VIPX_REASONS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(reason::COUNT, 0);

/// The main program: attached to every interface the agent serves.
#[xdp]
pub fn vipx_xdp(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let (verdict, why) = decide(&ctx);
    bump(&VIPX_REASONS, why, len);
    bump(&VIPX_ACTIONS, verdict, len);
    verdict
}

/// A program that passes everything: attached to the far end of a veth so
/// that frames the main program sends back out (`XDP_TX`) are not dropped,
/// and the baseline of the per-packet cost benchmark.
#[xdp]
pub fn vipx_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[inline(always)]
fn decide(ctx: &XdpContext) -> (u32, u32) {
    let pkt = match parse(ctx) {
        Ok(pkt) => pkt,
        Err(why) => return (xdp_action::XDP_PASS, why),
    };
    let why = match pkt.l4 {
        L4::Vrrp { .. } => reason::VRRP,
        L4::Tcp { .. } | L4::Udp { .. } => reason::NO_SERVICE,
    };
    (xdp_action::XDP_PASS, why)
}

#[inline(always)]
fn bump(map: &PerCpuArray<Counter>, slot: u32, len: u64) {
    if let Some(counter) = map.get_ptr_mut(slot) {
        // SAFETY: the pointer comes from a per-CPU array lookup: it is valid,
        // aligned and only this CPU touches it while the program runs.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += len;
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
