//! The benchmark's floor: the least an L4 load balancer must do for a flow
//! hit, as a program of its own (`vipx-floor`, never loaded by the agent).
//! Its one map is keyed by the 5-tuple ([`FlowKey`](crate::FlowKey), as
//! vipx's flow table) and says how to rewrite the frame.

/// Name of the floor program in the `vipx-floor` object.
pub const PROG_FLOOR: &str = "vipx_floor";
/// Name of the floor's flow map (`FlowKey -> FloorFlow`, a plain hash).
pub const MAP_FLOOR_FLOWS: &str = "VIPX_FLOOR_FLOWS";
/// Default size of the floor's flow map (the benchmark sets its own).
pub const FLOOR_FLOW_ENTRIES: u32 = 1024;

/// Rewrite the MACs only (dsr).
pub const FLOOR_MODE_DSR: u8 = 0;
/// Rewrite the MACs, IPv4 addresses and ports, with incremental checksum
/// updates (nat).
pub const FLOOR_MODE_NAT: u8 = 1;

/// What the floor does with a frame of one 5-tuple.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloorFlow {
    /// Next-hop MAC.
    pub mac: [u8; 6],
    /// [`FLOOR_MODE_DSR`] or [`FLOOR_MODE_NAT`].
    pub mode: u8,
    pub _pad: u8,
    /// New IPv4 source address (nat).
    pub src: [u8; 4],
    /// New IPv4 destination address (nat).
    pub dst: [u8; 4],
    /// New source port, host byte order (nat).
    pub sport: u16,
    /// New destination port, host byte order (nat).
    pub dport: u16,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, integers only, explicit padding.
    unsafe impl aya::Pod for super::FloorFlow {}
}
