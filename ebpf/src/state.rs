//! A flow's TCP state as the program sees it, in its flags: FINs each
//! way, established (the backend answered, or in dsr mode the client went
//! on past its SYN), RST seen. Expiry is the agent's flow collector's: it
//! forgets a flow and its NAT entry together, by the timeout its state
//! calls for. And the count of embryonic nat flows per backend, which
//! bounds the NAT ports flows without an answer may hold.

use aya_ebpf::{macros::map, maps::Array};
use vipx_common::{
    Flow, FlowSettings,
    flow::{
        FLOW_F_ESTABLISHED, FLOW_F_FIN_BACKEND, FLOW_F_FIN_CLIENT, FLOW_F_RST, RST_SETTLE_NS,
        embryonic_limit,
    },
    reason,
    service::MAX_BACKENDS,
};

use crate::parse::IPPROTO_TCP;

/// Embryonic nat flows per backend id (see `vipx_common::MAP_EMBRYONIC`).
#[map(name = "VIPX_EMBRYONIC")]
static VIPX_EMBRYONIC: Array<u32> = Array::with_max_entries(MAX_BACKENDS, 0);

/// The agent's flow settings (one entry).
#[map(name = "VIPX_FLOW_SETTINGS")]
static VIPX_FLOW_SETTINGS: Array<FlowSettings> = Array::with_max_entries(1, 0);

/// A flow's `last_seen_ns` is written when it moves by at least this much:
/// the idle timeouts are counted in seconds, and a hit then reads its
/// entry without dirtying it.
const LAST_SEEN_STEP_NS: u64 = 1_000_000_000;

/// TCP header flag bits (RFC 9293 section 3.1), in the byte at offset 13.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Where a packet of a flow comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
}

/// What a packet changed of its flow that others must hear of.
#[derive(Clone, Copy)]
pub struct Change {
    /// The peers' copy is out of date (established, closed both ways, RST
    /// seen or cleared).
    pub report: bool,
    /// The flow was embryonic and is established now.
    pub established: bool,
}

/// The flags a flow's first packet gives it.
#[inline(always)]
pub fn first_flags(proto: u8, tcp_flags: u8) -> u8 {
    if proto != IPPROTO_TCP {
        return 0;
    }
    let mut flags = 0;
    if tcp_flags & TCP_FIN != 0 {
        flags |= FLOW_F_FIN_CLIENT;
    }
    if tcp_flags & TCP_RST != 0 {
        flags |= FLOW_F_RST;
    }
    flags
}

/// Records a packet of a flow from `side` (`now` from the coarse clock).
/// `last_seen_ns` moves when it moved by a step, or marks the RST; the
/// flags are written only when they change, so a hit of an established
/// flow dirties nothing most of the time.
#[inline(always)]
pub fn observe(flow: &mut Flow, now: u64, proto: u8, tcp_flags: u8, side: Side) -> Change {
    let none = Change {
        report: false,
        established: false,
    };
    let old = flow.flags;
    if proto == IPPROTO_TCP && tcp_flags & TCP_RST != 0 {
        if old & FLOW_F_RST == 0 {
            flow.flags = old | FLOW_F_RST;
            flow.last_seen_ns = now;
            return Change {
                report: true,
                established: false,
            };
        }
        return none;
    }
    let mut new = old;
    if old & FLOW_F_RST != 0 {
        if now.saturating_sub(flow.last_seen_ns) < RST_SETTLE_NS {
            // Sent before the RST arrived, perhaps: proves nothing.
            return none;
        }
        new &= !FLOW_F_RST;
        flow.last_seen_ns = now;
    } else if now.saturating_sub(flow.last_seen_ns) >= LAST_SEEN_STEP_NS {
        flow.last_seen_ns = now;
    }
    if proto == IPPROTO_TCP {
        if tcp_flags & TCP_FIN != 0 {
            new |= match side {
                Side::Client => FLOW_F_FIN_CLIENT,
                Side::Backend => FLOW_F_FIN_BACKEND,
            };
        }
        // nat: the backend answered; dsr (whose replies bypass the node,
        // and where only the client is seen): the client went on past its
        // SYN, so it had the backend's SYN-ACK.
        let nat = flow.nat_port != 0;
        let answered = match side {
            Side::Backend => true,
            Side::Client => !nat && tcp_flags & TCP_SYN == 0,
        };
        if answered {
            new |= FLOW_F_ESTABLISHED;
        }
    }
    if new == old {
        return none;
    }
    flow.flags = new;
    let changed = new ^ old;
    let fins = FLOW_F_FIN_CLIENT | FLOW_F_FIN_BACKEND;
    let closed = new & fins == fins && old & fins != fins;
    Change {
        report: changed & (FLOW_F_ESTABLISHED | FLOW_F_RST) != 0 || closed,
        established: changed & FLOW_F_ESTABLISHED != 0,
    }
}

/// Whether a client's packet opens a new connection over the flow it
/// hit, which must then be forgotten and the packet balanced afresh (as
/// conntrack does with a SYN on a closed connection, IPVS with
/// `conn_reuse_mode` and `expire_nodest_conn`, and Katran with every
/// SYN): a SYN without ACK, on a flow that a RST or a FIN ended (the
/// client's old socket is gone, so this is a new connection from a
/// reused port), or whose backend takes no new flows (down or drained;
/// `backend_active` is asked only then). A retransmitted SYN of a live
/// flow to an active backend stays on it, with its NAT port.
#[inline(always)]
pub fn reopens(
    flow: &Flow,
    proto: u8,
    tcp_flags: u8,
    backend_active: impl FnOnce() -> bool,
) -> bool {
    if proto != IPPROTO_TCP || tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST) != TCP_SYN {
        return false;
    }
    flow.flags & (FLOW_F_RST | FLOW_F_FIN_CLIENT | FLOW_F_FIN_BACKEND) != 0 || !backend_active()
}

/// Whether a new embryonic nat flow to `backend` fits its share of a NAT
/// port range of `span` ports; `Err` is the reason it does not.
#[inline(always)]
pub fn embryonic_room(backend: u32, span: u32) -> Result<(), u32> {
    let share = VIPX_FLOW_SETTINGS
        .get(0)
        .map_or(0, |settings| settings.embryonic_share);
    let limit = embryonic_limit(span, share);
    if limit == 0 {
        return Ok(());
    }
    let count = VIPX_EMBRYONIC.get(backend).copied().unwrap_or(0);
    if count >= limit {
        return Err(reason::EMBRYONIC_LIMIT);
    }
    Ok(())
}

/// Counts a new embryonic nat flow to `backend`.
#[inline(always)]
pub fn embryonic_started(backend: u32) {
    if let Some(count) = VIPX_EMBRYONIC.get_ptr_mut(backend) {
        // SAFETY: an array value pointer. Concurrent updates may lose a
        // step: the collector writes the true count at each run.
        unsafe { *count = (*count).saturating_add(1) };
    }
}

/// An embryonic nat flow to `backend` is established.
#[inline(always)]
pub fn embryonic_ended(backend: u32) {
    if let Some(count) = VIPX_EMBRYONIC.get_ptr_mut(backend) {
        // SAFETY: as in `embryonic_started`.
        unsafe { *count = (*count).saturating_sub(1) };
    }
}
