//! The vipx XDP program.
//!
//! Per packet: parse (Ethernet, one VLAN tag, IPv4/IPv6, TCP/UDP), decide,
//! count the decision in per-CPU maps. Anything the program does not own is
//! passed to the stack untouched.
#![no_std]
#![no_main]

mod lb;
mod parse;
mod rewrite;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::XdpContext,
};
use vipx_common::{
    Backend, Counter, Flow, FlowKey, Group, NatEntry, Service, ServiceKey, action,
    flow::DEFAULT_FLOW_ENTRIES,
    reason,
    service::{MAGLEV_ENTRIES, MAX_BACKENDS, MAX_GROUPS, MAX_SERVICES},
};

use crate::parse::{L4, parse};

/// Services by VIP:port/protocol.
#[map(name = "VIPX_SERVICES")]
static VIPX_SERVICES: HashMap<ServiceKey, Service> = HashMap::with_max_entries(MAX_SERVICES, 0);

/// Backends by id.
#[map(name = "VIPX_BACKENDS")]
static VIPX_BACKENDS: Array<Backend> = Array::with_max_entries(MAX_BACKENDS, 0);

/// Maglev tables: two halves per service, backend ids.
#[map(name = "VIPX_MAGLEV")]
static VIPX_MAGLEV: Array<u32> = Array::with_max_entries(MAGLEV_ENTRIES, 0);

/// VIP groups: master flag and agent lease.
#[map(name = "VIPX_GROUPS")]
static VIPX_GROUPS: Array<Group> = Array::with_max_entries(MAX_GROUPS, 0);

/// The flow table (client -> VIP direction). The agent sizes it from its
/// configuration at load time.
#[map(name = "VIPX_FLOWS")]
static VIPX_FLOWS: LruHashMap<FlowKey, Flow> =
    LruHashMap::with_max_entries(DEFAULT_FLOW_ENTRIES, 0);

/// NAT reverse entries (backend -> VIP:nat-port direction).
#[map(name = "VIPX_NAT")]
static VIPX_NAT: LruHashMap<FlowKey, NatEntry> =
    LruHashMap::with_max_entries(DEFAULT_FLOW_ENTRIES, 0);

/// Per-service counters, by service id.
#[map(name = "VIPX_SERVICE_STATS")]
static VIPX_SERVICE_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(MAX_SERVICES, 0);

/// Per-backend counters, by backend id.
#[map(name = "VIPX_BACKEND_STATS")]
static VIPX_BACKEND_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);

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
    let (verdict, why) = decide(&ctx, len);
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
fn decide(ctx: &XdpContext, len: u64) -> (u32, u32) {
    let pkt = match parse(ctx) {
        Ok(pkt) => pkt,
        Err(why) => return (xdp_action::XDP_PASS, why),
    };
    match pkt.l4 {
        L4::Vrrp { .. } => (xdp_action::XDP_PASS, reason::VRRP),
        L4::Tcp { .. } | L4::Udp { .. } => lb::handle(ctx, &pkt, len),
    }
}

#[inline(always)]
fn bump_service(id: u32, len: u64) {
    bump(&VIPX_SERVICE_STATS, id, len);
}

#[inline(always)]
fn bump_backend(id: u32, len: u64) {
    bump(&VIPX_BACKEND_STATS, id, len);
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
