//! Fencing a hung agent's node: while a group's master flag is set but the
//! agent's lease has run out, the node's kernel still holds the VIPs and
//! would keep answering ARP and neighbour discovery for them, drawing the
//! clients back from the node that took over. Requests for those VIPs are
//! dropped here; every other ARP request and solicitation goes on to the
//! kernel untouched, counted as before.

use aya_ebpf::programs::XdpContext;
use vipx_common::{FAMILY_V4, FAMILY_V6, VipKey, reason};

use crate::{VIPX_VIPS, balance::serving, clock, decision::Decision, parse::bytes};

/// An ARP request whose target protocol address is at `target`.
#[inline(always)]
pub fn arp_request(ctx: &XdpContext, target: usize) -> Decision {
    let Some(addr) = bytes::<4>(ctx, target) else {
        return Decision::pass(reason::NOT_IP);
    };
    let mut key = VipKey {
        family: FAMILY_V4,
        ..VipKey::default()
    };
    // SAFETY: bounds-checked by `bytes`.
    key.addr[..4].copy_from_slice(unsafe { &*addr });
    fence(&key, reason::NOT_IP)
}

/// An IPv6 neighbour solicitation whose target address is at `target`.
#[inline(always)]
pub fn neigh_solicit(ctx: &XdpContext, target: usize) -> Decision {
    let Some(addr) = bytes::<16>(ctx, target) else {
        return Decision::pass(reason::OTHER_L4);
    };
    let mut key = VipKey {
        family: FAMILY_V6,
        ..VipKey::default()
    };
    // SAFETY: bounds-checked by `bytes`.
    key.addr.copy_from_slice(unsafe { &*addr });
    fence(&key, reason::OTHER_L4)
}

/// Dropped when `key` is a VIP of a group whose lease is stale; else
/// passed, counted as `otherwise`.
#[inline(always)]
fn fence(key: &VipKey, otherwise: u32) -> Decision {
    // SAFETY: the agent replaces VIP values whole, never in place.
    let Some(vip) = (unsafe { VIPX_VIPS.get(key) }) else {
        return Decision::pass(otherwise);
    };
    if serving(vip.group, clock::coarse_ns()) == Err(reason::LEASE_STALE) {
        return Decision::drop(reason::VIP_FENCED);
    }
    Decision::pass(otherwise)
}
