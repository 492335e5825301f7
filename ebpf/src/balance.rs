//! Load balancing: service match, flow table, Maglev, NAT ports, and the
//! translation of both directions of a flow. What this node must not serve
//! (a group it is not MASTER of, or whose lease is stale) is dropped,
//! never passed: the kernel, which may still hold the VIP, would answer
//! RST and end the client's session.
//!
//! The flow and NAT tables are plain hash maps: nothing evicts a live flow
//! (or half of its NAT pair); a full table refuses new flows, and the
//! agent's collector forgets a flow and its NAT entry together, by the
//! state `state` keeps in the flow's flags.

use aya_ebpf::{macros::map, maps::PerCpuArray, programs::XdpContext};
use vipx_common::{
    Backend, FAMILY_V4, FAMILY_V6, Flow, FlowKey, NatEntry, Service, ServiceKey, VipKey,
    flow::{
        FLOW_EVENT_END, FLOW_EVENT_NEW, FLOW_EVENT_UPDATE, FLOW_F_ESTABLISHED, NAT_PORT_TRIES,
        SEED_MAGLEV, SEED_NAT_PORT, flow_hash, nat_key,
    },
    reason,
    service::{BACKEND_F_ACTIVE, MODE_DSR, MODE_NAT, maglev_index},
};

use crate::{
    BPF_ANY, BPF_NOEXIST, VIPX_BACKENDS, VIPX_FLOWS, VIPX_GROUPS, VIPX_MAGLEV, VIPX_NAT,
    VIPX_SERVICES, VIPX_VIPS, bump_backend, bump_service, clock,
    decision::Decision,
    flow_events,
    parse::{IPPROTO_TCP, L3, L4, Packet, bytes, u8_at},
    rewrite::{Translation, set_macs, translate},
    state::{self, Side},
};

/// `E2BIG` (`include/uapi/asm-generic/errno-base.h`): a hash map is full.
const E2BIG: i32 = 7;

/// Per-CPU scratch space for the values a new flow writes: the BPF stack
/// (512 bytes) is too small to build them there.
#[repr(C)]
struct Scratch {
    nat_key: FlowKey,
    entry: NatEntry,
    flow: Flow,
}

#[map(name = "VIPX_SCRATCH")]
static VIPX_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Offset of the TCP header's flag bits (RFC 9293 section 3.1).
const TCP_FLAGS_OFF: usize = 13;

/// The L3/L4 facts of a TCP or UDP frame.
struct Tuple {
    key: FlowKey,
    l4_off: usize,
    /// TCP flags (0 for UDP).
    tcp_flags: u8,
}

/// Decides the fate of a parsed TCP/UDP frame. Established traffic is
/// looked up first, with one lookup: a flow's entry names its backend,
/// service, group and NAT port (mode nat exactly when it has a NAT port),
/// so a flow's packets never need the service; a backend's reply finds
/// its NAT entry next. Only the first packet of a flow, and traffic that
/// is neither, looks up the service.
#[inline(always)]
pub fn handle(ctx: &XdpContext, pkt: &Packet, len: u64) -> Decision {
    let Some(tuple) = tuple(ctx, pkt) else {
        return Decision::pass(reason::MALFORMED);
    };
    if let Some(flow) = VIPX_FLOWS.get_ptr_mut(&tuple.key) {
        // SAFETY: a valid map value pointer; concurrent writers only touch
        // its plain integers.
        match flow_hit(ctx, pkt, &tuple, unsafe { &mut *flow }, len) {
            Hit::Done(decision) => return decision,
            // The ended flow is forgotten: its SYN starts a new one.
            Hit::Reopen => {}
        }
    // SAFETY: NAT entries are written once, when the flow is created.
    } else if let Some(entry) = unsafe { VIPX_NAT.get(&tuple.key) } {
        return to_client(ctx, pkt, &tuple, entry, len);
    }
    let service_key = ServiceKey {
        addr: tuple.key.dst,
        port: tuple.key.dport,
        proto: tuple.key.proto,
        family: tuple.key.family,
    };
    // SAFETY: the agent replaces service values whole (a new element,
    // RCU-freed), never in place, so the reference stays valid and stable
    // for this run of the program.
    if let Some(service) = unsafe { VIPX_SERVICES.get(&service_key) } {
        return to_backend(ctx, pkt, &tuple, service, len);
    }
    no_entry(&tuple.key)
}

/// Neither a service nor a NAT flow. To a VIP's NAT port range (of the
/// packet's protocol) it is a backend's reply that lost its entry, or
/// one for a group this node does not serve: dropped, as the kernel would
/// answer RST. Anything else (ssh or the agent's API through the VIP,
/// other addresses) goes to the kernel.
#[inline(always)]
fn no_entry(key: &FlowKey) -> Decision {
    let vip_key = VipKey {
        addr: key.dst,
        family: key.family,
        _pad: [0; 3],
    };
    // SAFETY: the agent replaces VIP values whole, never in place.
    let Some(vip) = (unsafe { VIPX_VIPS.get(&vip_key) }) else {
        return Decision::pass(reason::NO_SERVICE);
    };
    if !vip.is_nat_port(key.proto, key.dport) {
        return Decision::pass(reason::NO_SERVICE);
    }
    match serving(vip.group, clock::coarse_ns()) {
        Ok(()) => Decision::drop(reason::NAT_REPLY_MISS),
        Err(why) => Decision::drop(why),
    }
}

#[inline(always)]
fn tuple(ctx: &XdpContext, pkt: &Packet) -> Option<Tuple> {
    let (proto, l4_off, sport, dport) = match pkt.l4 {
        L4::Tcp { off, sport, dport } => (IPPROTO_TCP, off, sport, dport),
        L4::Udp { off, sport, dport } => (crate::parse::IPPROTO_UDP, off, sport, dport),
        L4::Vrrp { .. } => return None,
    };
    let mut key = FlowKey {
        sport,
        dport,
        proto,
        ..FlowKey::default()
    };
    match pkt.l3 {
        L3::V4 { off } => {
            let ip = bytes::<20>(ctx, off)?;
            // SAFETY: bounds-checked by `bytes`.
            let ip = unsafe { &*ip };
            key.family = FAMILY_V4;
            key.src[..4].copy_from_slice(&ip[12..16]);
            key.dst[..4].copy_from_slice(&ip[16..20]);
        }
        L3::V6 { off } => {
            let ip = bytes::<40>(ctx, off)?;
            // SAFETY: bounds-checked by `bytes`.
            let ip = unsafe { &*ip };
            key.family = FAMILY_V6;
            key.src.copy_from_slice(&ip[8..24]);
            key.dst.copy_from_slice(&ip[24..40]);
        }
    }
    let tcp_flags = if proto == IPPROTO_TCP {
        u8_at(ctx, l4_off + TCP_FLAGS_OFF)?
    } else {
        0
    };
    Some(Tuple {
        key,
        l4_off,
        tcp_flags,
    })
}

/// Whether this node serves group `group` now (`now` from
/// [`clock::coarse_ns`]): MASTER, with a fresh lease. `Err` is the reason
/// it does not (`NOT_MASTER` or `LEASE_STALE`).
#[inline(always)]
pub fn serving(group: u32, now: u64) -> Result<(), u32> {
    let Some(state) = VIPX_GROUPS.get(group) else {
        return Err(reason::NOT_MASTER);
    };
    if state.master == 0 {
        return Err(reason::NOT_MASTER);
    }
    if clock::passed(state.lease_until_ns, now) {
        return Err(reason::LEASE_STALE);
    }
    Ok(())
}

/// What a client's packet of a known flow comes to.
enum Hit {
    Done(Decision),
    /// A new connection over an ended flow, now forgotten: balance it as
    /// a first packet.
    Reopen,
}

/// Client -> VIP:port of a known flow: to its backend, unless it opens a
/// new connection over an ended one ([`state::reopens`]).
#[inline(always)]
fn flow_hit(ctx: &XdpContext, pkt: &Packet, t: &Tuple, flow: &mut Flow, len: u64) -> Hit {
    let now = clock::coarse_ns();
    if let Err(why) = serving(flow.group, now) {
        return Hit::Done(Decision::drop(why));
    }
    let active = || {
        VIPX_BACKENDS
            .get(flow.backend)
            .is_some_and(|b| b.flags & BACKEND_F_ACTIVE != 0)
    };
    if state::reopens(flow, t.key.proto, t.tcp_flags, active) {
        forget(ctx, &t.key, flow);
        return Hit::Reopen;
    }
    let change = state::observe(flow, now, t.key.proto, t.tcp_flags, Side::Client);
    if change.report {
        let mac = client_mac(ctx).unwrap_or([0; 6]);
        flow_events::report(FLOW_EVENT_UPDATE, &t.key, flow, mac);
    }
    let mode = if flow.nat_port != 0 {
        MODE_NAT
    } else {
        MODE_DSR
    };
    let to = Forward {
        backend: flow.backend,
        nat_port: flow.nat_port,
        service: flow.service,
        mode,
    };
    Hit::Done(forward(ctx, pkt, t, &to, reason::FLOW_HIT, len))
}

/// Forgets an ended flow and its NAT entry (which frees its port) at once,
/// and tells the peers it ended.
#[inline(always)]
fn forget(ctx: &XdpContext, key: &FlowKey, flow: &Flow) {
    flow_events::report(FLOW_EVENT_END, key, flow, client_mac(ctx).unwrap_or([0; 6]));
    if flow.nat_port != 0
        && let Some(backend) = VIPX_BACKENDS.get(flow.backend)
        && let Some(scratch) = VIPX_SCRATCH.get_ptr_mut(0)
    {
        // SAFETY: this CPU's scratch slot; nothing else runs on it meanwhile.
        let nat = unsafe { &mut (*scratch).nat_key };
        *nat = nat_key(key, backend.addr, backend.port, flow.nat_port);
        let _ = VIPX_NAT.remove(&*nat);
        if key.proto == IPPROTO_TCP && flow.flags & FLOW_F_ESTABLISHED == 0 {
            state::embryonic_ended(flow.backend);
        }
    }
    let _ = VIPX_FLOWS.remove(key);
}

/// Client -> VIP:port, a flow's first packet: create the flow, send on.
#[inline(always)]
fn to_backend(ctx: &XdpContext, pkt: &Packet, t: &Tuple, service: &Service, len: u64) -> Decision {
    let now = clock::coarse_ns();
    if let Err(why) = serving(service.group, now) {
        return Decision::drop(why);
    }
    let flags = state::first_flags(t.key.proto, t.tcp_flags);
    let (backend, nat_port) = match new_flow(ctx, t, service, now, flags) {
        Ok(picked) => picked,
        Err(why) => return Decision::drop(why),
    };
    let to = Forward {
        backend,
        nat_port,
        service: service.id,
        mode: service.mode,
    };
    forward(ctx, pkt, t, &to, reason::FLOW_NEW, len)
}

/// Where a client's packet goes.
struct Forward {
    backend: u32,
    nat_port: u16,
    service: u32,
    mode: u8,
}

/// Rewrites a client's packet for its backend (MACs; nat: addresses and
/// ports too) and counts it.
#[inline(always)]
fn forward(
    ctx: &XdpContext,
    pkt: &Packet,
    t: &Tuple,
    to: &Forward,
    why: u32,
    len: u64,
) -> Decision {
    let Some(backend) = VIPX_BACKENDS.get(to.backend) else {
        return Decision::drop(reason::MAP_ERROR);
    };
    if backend.mac == [0; 6] {
        return Decision::drop(reason::NO_NEIGH);
    }
    if set_macs(ctx, backend.mac).is_none() {
        return Decision::pass(reason::MALFORMED);
    }
    if to.mode == MODE_NAT {
        let rewrite = Translation {
            src: &t.key.dst,
            dst: &backend.addr,
            sport: to.nat_port,
            dport: backend.port,
        };
        if translate(ctx, pkt.l3, t.l4_off, t.key.proto, &rewrite).is_none() {
            return Decision::drop(reason::MALFORMED);
        }
    }
    bump_service(to.service, len);
    bump_backend(to.backend, len);
    Decision::tx(why)
}

/// A flow's first packet: Maglev picks the backend; nat mode also takes a
/// free NAT port (the reverse entry is inserted only if the port is free).
/// A TCP flow starts embryonic: in nat mode only while its backend's
/// embryonic flows hold less than their share of the NAT port range. A
/// full table refuses the flow (and leaves no half of it behind).
#[inline(always)]
fn new_flow(
    ctx: &XdpContext,
    t: &Tuple,
    service: &Service,
    now: u64,
    flags: u8,
) -> Result<(u32, u16), u32> {
    if service.table_size == 0 {
        return Err(reason::NO_BACKEND);
    }
    let slot = flow_hash(&t.key, SEED_MAGLEV) % service.table_size;
    let backend_id = *VIPX_MAGLEV
        .get(maglev_index(service.id, service.table, slot))
        .ok_or(reason::MAP_ERROR)?;
    let backend = VIPX_BACKENDS.get(backend_id).ok_or(reason::MAP_ERROR)?;
    let embryonic = service.mode == MODE_NAT && t.key.proto == IPPROTO_TCP;
    if embryonic {
        state::embryonic_room(backend_id, nat_span(service))?;
    }
    let nat_port = if service.mode == MODE_NAT {
        nat_port(ctx, t, service, backend)?
    } else {
        0
    };
    let scratch = VIPX_SCRATCH.get_ptr_mut(0).ok_or(reason::MAP_ERROR)?;
    // SAFETY: this CPU's scratch slot; nothing else runs on it meanwhile.
    let flow = unsafe { &mut (*scratch).flow };
    flow.backend = backend_id;
    flow.service = service.id;
    flow.nat_port = nat_port;
    flow.flags = flags;
    flow.group = service.group;
    flow.created_ns = now;
    flow.last_seen_ns = now;
    if let Err(err) = VIPX_FLOWS.insert(&t.key, &*flow, BPF_ANY) {
        if nat_port != 0 {
            // SAFETY: this CPU's scratch slot: the key `nat_port` took.
            let _ = VIPX_NAT.remove(unsafe { &(*scratch).nat_key });
        }
        return Err(if err == -E2BIG {
            reason::FLOW_TABLE_FULL
        } else {
            reason::MAP_ERROR
        });
    }
    if embryonic {
        state::embryonic_started(backend_id);
    }
    flow_events::report(
        FLOW_EVENT_NEW,
        &t.key,
        flow,
        client_mac(ctx).unwrap_or([0; 6]),
    );
    Ok((backend_id, nat_port))
}

/// The number of ports of a service's NAT port range.
#[inline(always)]
fn nat_span(service: &Service) -> u32 {
    u32::from(service.nat_port_last).saturating_sub(u32::from(service.nat_port_first)) + 1
}

/// Takes a NAT port no other flow to the same backend uses: candidates
/// follow from the flow hash, and the reverse entry is inserted only if
/// absent (`BPF_NOEXIST`), so two flows never share a port. A full NAT
/// table refuses the flow at once.
#[inline(always)]
fn nat_port(ctx: &XdpContext, t: &Tuple, service: &Service, backend: &Backend) -> Result<u16, u32> {
    let first = u32::from(service.nat_port_first);
    let span = nat_span(service);
    let hash = flow_hash(&t.key, SEED_NAT_PORT);
    let scratch = VIPX_SCRATCH.get_ptr_mut(0).ok_or(reason::MAP_ERROR)?;
    // SAFETY: this CPU's scratch slot; nothing else runs on it meanwhile.
    let (key, entry) = unsafe { (&mut (*scratch).nat_key, &mut (*scratch).entry) };
    entry.client = t.key;
    entry.client_mac = client_mac(ctx).ok_or(reason::MALFORMED)?;
    entry.group = service.group;
    entry.service = service.id;
    *key = nat_key(&t.key, backend.addr, backend.port, 0);
    let mut attempt = 0;
    while attempt < NAT_PORT_TRIES {
        // Candidates a large odd stride apart, starting from the flow hash.
        let port = (first + hash.wrapping_add(attempt.wrapping_mul(0x9e37_79b1)) % span) as u16;
        key.dport = port;
        match VIPX_NAT.insert(&*key, &*entry, BPF_NOEXIST) {
            Ok(()) => return Ok(port),
            Err(err) if err == -E2BIG => return Err(reason::FLOW_TABLE_FULL),
            Err(_) => {}
        }
        attempt += 1;
    }
    Err(reason::NAT_EXHAUSTED)
}

#[inline(always)]
fn client_mac(ctx: &XdpContext) -> Option<[u8; 6]> {
    let eth = bytes::<12>(ctx, 0)?;
    // SAFETY: bounds-checked by `bytes`.
    let eth = unsafe { &*eth };
    Some([eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]])
}

/// Backend -> VIP:nat-port: a reply of a nat-mode flow, back to the client.
#[inline(always)]
fn to_client(ctx: &XdpContext, pkt: &Packet, t: &Tuple, entry: &NatEntry, len: u64) -> Decision {
    let now = clock::coarse_ns();
    if let Err(why) = serving(entry.group, now) {
        return Decision::drop(why);
    }
    let mut backend_id = None;
    if let Some(flow) = VIPX_FLOWS.get_ptr_mut(&entry.client) {
        // SAFETY: a valid map value pointer.
        let flow = unsafe { &mut *flow };
        let change = state::observe(flow, now, t.key.proto, t.tcp_flags, Side::Backend);
        if change.established {
            state::embryonic_ended(flow.backend);
        }
        if change.report {
            flow_events::report(FLOW_EVENT_UPDATE, &entry.client, flow, entry.client_mac);
        }
        backend_id = Some(flow.backend);
    }
    if set_macs(ctx, entry.client_mac).is_none() {
        return Decision::pass(reason::MALFORMED);
    }
    let to = Translation {
        src: &entry.client.dst,
        dst: &entry.client.src,
        sport: entry.client.dport,
        dport: entry.client.sport,
    };
    if translate(ctx, pkt.l3, t.l4_off, t.key.proto, &to).is_none() {
        return Decision::drop(reason::MALFORMED);
    }
    bump_service(entry.service, len);
    if let Some(id) = backend_id {
        bump_backend(id, len);
    }
    Decision::tx(reason::NAT_REPLY)
}
