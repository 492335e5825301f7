//! What the program does with a frame, and why: the XDP action it returns
//! and the reason slot it counts (`vipx_common::{action, reason}`).

use aya_ebpf::bindings::xdp_action;

/// The fate of one frame: `action` is returned to the kernel and counted in
/// `VIPX_ACTIONS`, `reason` is counted in `VIPX_REASONS`.
#[derive(Clone, Copy)]
pub struct Decision {
    /// `XDP_PASS`, `XDP_DROP` or `XDP_TX`.
    pub action: u32,
    /// A `reason::*` slot.
    pub reason: u32,
}

impl Decision {
    /// Hand the frame to the kernel.
    #[inline(always)]
    pub const fn pass(reason: u32) -> Self {
        Self {
            action: xdp_action::XDP_PASS,
            reason,
        }
    }

    /// Drop the frame.
    #[inline(always)]
    pub const fn drop(reason: u32) -> Self {
        Self {
            action: xdp_action::XDP_DROP,
            reason,
        }
    }

    /// Send the (rewritten) frame back out of the interface it came in on.
    #[inline(always)]
    pub const fn tx(reason: u32) -> Self {
        Self {
            action: xdp_action::XDP_TX,
            reason,
        }
    }
}
