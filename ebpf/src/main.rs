//! The vipx XDP program.
//!
//! Per packet: parse (Ethernet, one VLAN tag, IPv4/IPv6, TCP/UDP/VRRP,
//! ARP requests and neighbour solicitations), decide, count the decision in
//! per-CPU maps. VRRP adverts and vipx heartbeats are recorded (`peer`),
//! TCP and UDP load-balanced (`balance`), ICMP errors about a flow sent on
//! to its client or backend (`icmp`), requests for the VIPs of a hung
//! agent's groups dropped (`fence`). Anything the program does not own is
//! passed to the stack untouched.
#![no_std]
#![no_main]

mod balance;
mod clock;
mod decision;
mod fence;
mod flow_events;
mod icmp;
mod parse;
mod peer;
mod rewrite;
mod state;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::XdpContext,
};
use vipx_common::{
    Backend, Counter, Flow, FlowKey, Group, NatEntry, PeerKey, PeerSeen, PeerSettings, Service,
    ServiceKey, Vip, VipKey, action,
    flow::DEFAULT_FLOW_ENTRIES,
    peer::{
        PEER_ALLOW_ENTRIES, PEER_EVENTS_BYTES, PEER_RECORDS_ENTRIES, PEER_SEEN_ENTRIES, VRID_SLOTS,
    },
    reason,
    service::{MAGLEV_ENTRIES, MAX_BACKENDS, MAX_GROUPS, MAX_SERVICES},
    vip::MAX_VIPS,
};

use crate::{
    decision::Decision,
    parse::{Frame, L4, parse},
};

/// Map update flag: create or replace (`include/uapi/linux/bpf.h`).
const BPF_ANY: u64 = 0;
/// Map update flag: create only, fail if the key exists.
const BPF_NOEXIST: u64 = 1;

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

/// Every VIP of every group: its group and NAT port ranges.
#[map(name = "VIPX_VIPS")]
static VIPX_VIPS: HashMap<VipKey, Vip> = HashMap::with_max_entries(MAX_VIPS, 0);

/// The flow table (client -> VIP direction). The agent sizes it from its
/// configuration at load time. A hash map, not an LRU one: a live flow is
/// never evicted (a full table refuses new flows), and the agent's flow
/// collector forgets a flow together with its NAT entry.
#[map(name = "VIPX_FLOWS")]
static VIPX_FLOWS: HashMap<FlowKey, Flow> = HashMap::with_max_entries(DEFAULT_FLOW_ENTRIES, 0);

/// NAT reverse entries (backend -> VIP:nat-port direction), as large as
/// the flow table and kept the same way.
#[map(name = "VIPX_NAT")]
static VIPX_NAT: HashMap<FlowKey, NatEntry> = HashMap::with_max_entries(DEFAULT_FLOW_ENTRIES, 0);

/// Per-service counters, by service id.
#[map(name = "VIPX_SERVICE_STATS")]
static VIPX_SERVICE_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(MAX_SERVICES, 0);

/// Per-backend counters, by backend id.
#[map(name = "VIPX_BACKEND_STATS")]
static VIPX_BACKEND_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);

/// The peer allow-list (`PeerKey` of kind `KIND_ALLOW` -> 1), consulted
/// for VRIDs whose filter is on.
#[map(name = "VIPX_PEER_ALLOW")]
static VIPX_PEER_ALLOW: HashMap<PeerKey, u32> = HashMap::with_max_entries(PEER_ALLOW_ENTRIES, 0);

/// The last advert / heartbeat seen per source, kind and VRID, for the
/// VRIDs no group uses (an LRU: a flood evicts only its own kind).
#[map(name = "VIPX_PEER_SEEN")]
static VIPX_PEER_SEEN: LruHashMap<PeerKey, PeerSeen> =
    LruHashMap::with_max_entries(PEER_SEEN_ENTRIES, 0);

/// The same for the groups' VRIDs: a plain hash, never evicting.
#[map(name = "VIPX_PEER_RECORDS")]
static VIPX_PEER_RECORDS: HashMap<PeerKey, PeerSeen> =
    HashMap::with_max_entries(PEER_RECORDS_ENTRIES, 0);

/// Per-VRID filter switch (`FILTER_OFF`, `FILTER_ON`, `FILTER_OPEN`), by VRID.
#[map(name = "VIPX_PEER_FILTER")]
static VIPX_PEER_FILTER: Array<u32> = Array::with_max_entries(VRID_SLOTS, 0);

/// The recorder's settings (one entry): the heartbeat port.
#[map(name = "VIPX_PEER_SETTINGS")]
static VIPX_PEER_SETTINGS: Array<PeerSettings> = Array::with_max_entries(1, 0);

/// `PeerEvent`s for the agent: new source, priority or state change,
/// priority 0.
#[map(name = "VIPX_PEER_EVENTS")]
static VIPX_PEER_EVENTS: RingBuf = RingBuf::with_byte_size(PEER_EVENTS_BYTES, 0);

/// Events the ring buffer had no room for (one slot).
#[map(name = "VIPX_PEER_EVENTS_LOST")]
static VIPX_PEER_EVENTS_LOST: PerCpuArray<Counter> = PerCpuArray::with_max_entries(1, 0);

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
    let decision = decide(&ctx, len);
    bump(&VIPX_REASONS, decision.reason, len);
    bump(&VIPX_ACTIONS, decision.action, len);
    decision.action
}

/// A program that passes everything: attached to the far end of a veth so
/// that frames the main program sends back out (`XDP_TX`) are not dropped,
/// and the baseline of the per-packet cost benchmark.
#[xdp]
pub fn vipx_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[inline(always)]
fn decide(ctx: &XdpContext, len: u64) -> Decision {
    let pkt = match parse(ctx) {
        Ok(Frame::Ip(pkt)) => pkt,
        Ok(Frame::ArpRequest { target }) => return fence::arp_request(ctx, target),
        Ok(Frame::NeighSolicit { target }) => return fence::neigh_solicit(ctx, target),
        Ok(Frame::IcmpError(error)) => return icmp::handle(ctx, &error, len),
        Err(why) => return Decision::pass(why),
    };
    match pkt.l4 {
        L4::Vrrp { off } => peer::vrrp(ctx, pkt.l3, off),
        L4::Udp { off, dport, .. } if peer::is_heartbeat(dport) => {
            peer::heartbeat(ctx, pkt.l3, off)
        }
        L4::Tcp { .. } | L4::Udp { .. } => balance::handle(ctx, &pkt, len),
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
