//! Types and constants shared by the vipx XDP program (`vipx-ebpf`) and its
//! agent (`vipx-agent`).
//!
//! Everything that crosses the kernel/user boundary is defined here once:
//! `#[repr(C)]`, plain integers, explicit padding. No `bool`, enum or
//! `Option` ever sits in a map value. The `user` feature adds the
//! [`aya::Pod`] impls the agent needs to read and write the maps.
#![no_std]

// The unit tests (property tests among them) run on the host, with std.
#[cfg(test)]
extern crate std;

pub mod addr;
pub mod counters;
pub mod csum;
pub mod floor;
pub mod flow;
pub mod peer;
pub mod service;
pub mod siphash;
pub mod vip;

pub use addr::{FAMILY_V4, FAMILY_V6};
pub use counters::{Counter, action, reason};
pub use flow::{Flow, FlowEvent, FlowKey, FlowSettings, NatEntry};
pub use peer::{Heartbeat, HeartbeatKey, PeerEvent, PeerKey, PeerSeen, PeerSettings};
pub use service::{Backend, Group, Service, ServiceKey};
pub use vip::{NatRange, Vip, VipKey};

/// Name of the per-CPU array of [`Counter`]s indexed by XDP action
/// (see [`action`]).
pub const MAP_ACTIONS: &str = "VIPX_ACTIONS";
/// Name of the per-CPU array of [`Counter`]s indexed by decision reason
/// (see [`reason`]).
pub const MAP_REASONS: &str = "VIPX_REASONS";

/// Name of the `ServiceKey -> Service` hash map.
pub const MAP_SERVICES: &str = "VIPX_SERVICES";
/// Name of the backend array (`Backend`, by backend id).
pub const MAP_BACKENDS: &str = "VIPX_BACKENDS";
/// Name of the Maglev array (backend ids; see `service::maglev_index`).
pub const MAP_MAGLEV: &str = "VIPX_MAGLEV";
/// Name of the VIP group array (`Group`, by group id).
pub const MAP_GROUPS: &str = "VIPX_GROUPS";
/// Name of the flow hash map (`FlowKey -> Flow`).
pub const MAP_FLOWS: &str = "VIPX_FLOWS";
/// Name of the NAT reverse hash map (`FlowKey -> NatEntry`).
pub const MAP_NAT: &str = "VIPX_NAT";
/// Name of the embryonic flow counts (array of `u32` by backend id):
/// raised by the program at each new embryonic nat flow, lowered when one
/// is established, set to the true count by the agent's flow collector at
/// each run.
pub const MAP_EMBRYONIC: &str = "VIPX_EMBRYONIC";
/// Name of the flow settings (array of one [`flow::FlowSettings`]).
pub const MAP_FLOW_SETTINGS: &str = "VIPX_FLOW_SETTINGS";
/// Name of the ring buffer of [`flow::FlowEvent`]s (replication).
pub const MAP_FLOW_EVENTS: &str = "VIPX_FLOW_EVENTS";
/// Name of the switch of flow events (one `u32`: 1 while the agent
/// replicates, 0 otherwise).
pub const MAP_FLOW_EVENTS_ON: &str = "VIPX_FLOW_EVENTS_ON";
/// Name of the per-CPU count of flow events the ring buffer had no room for
/// (one `Counter`).
pub const MAP_FLOW_EVENTS_LOST: &str = "VIPX_FLOW_EVENTS_LOST";
/// Name of the VIP hash map (`VipKey -> Vip`): every VIP of every group,
/// with its group and NAT port ranges.
pub const MAP_VIPS: &str = "VIPX_VIPS";
/// Name of the per-CPU per-service counters (by service id).
pub const MAP_SERVICE_STATS: &str = "VIPX_SERVICE_STATS";
/// Name of the per-CPU per-backend counters (by backend id).
pub const MAP_BACKEND_STATS: &str = "VIPX_BACKEND_STATS";

/// Name of the peer allow-list (hash, `PeerKey` with `peer::KIND_ALLOW` ->
/// `u32` 1), consulted for VRIDs whose filter is on.
pub const MAP_PEER_ALLOW: &str = "VIPX_PEER_ALLOW";
/// Name of the records of adverts and heartbeats of the VRIDs no group of
/// the agent uses (LRU hash, `PeerKey -> PeerSeen`).
pub const MAP_PEER_SEEN: &str = "VIPX_PEER_SEEN";
/// Name of the records of the VRIDs the agent's groups use (hash, never
/// evicting, `PeerKey -> PeerSeen`): no flood of other sources or VRIDs
/// can push a configured peer's record out.
pub const MAP_PEER_RECORDS: &str = "VIPX_PEER_RECORDS";
/// Name of the per-VRID filter array (`u32`, `peer::FILTER_*`, by VRID).
pub const MAP_PEER_FILTER: &str = "VIPX_PEER_FILTER";
/// Name of the recorder's settings array (`PeerSettings`, one entry).
pub const MAP_PEER_SETTINGS: &str = "VIPX_PEER_SETTINGS";
/// Name of the ring buffer of `PeerEvent`s.
pub const MAP_PEER_EVENTS: &str = "VIPX_PEER_EVENTS";
/// Name of the per-CPU count of `PeerEvent`s the ring buffer had no room
/// for (one `Counter`: packets = events lost, bytes = their size).
pub const MAP_PEER_EVENTS_LOST: &str = "VIPX_PEER_EVENTS_LOST";

/// Name of the main XDP program in the object.
pub const PROG_MAIN: &str = "vipx_xdp";
/// Name of the pass-through XDP program in the object: attached to the peer
/// of a veth so that `XDP_TX`/redirected frames are not dropped, and the
/// baseline of the per-packet cost benchmark.
pub const PROG_PASS: &str = "vipx_pass";
