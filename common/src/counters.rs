//! Per-CPU packet/byte counters: one slot per XDP action and one per
//! decision reason. The agent sums the per-CPU values.

/// One counter slot: packets and bytes (whole frame, from the Ethernet
/// header on) seen by the XDP program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

impl Counter {
    /// Adds another slot (used to sum the per-CPU values).
    #[must_use]
    pub const fn add(self, other: Self) -> Self {
        Self {
            packets: self.packets.wrapping_add(other.packets),
            bytes: self.bytes.wrapping_add(other.bytes),
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: `Counter` is `#[repr(C)]`, made only of integers, without padding.
unsafe impl aya::Pod for Counter {}

/// Slots of the action counter map: the XDP return codes themselves
/// (`enum xdp_action` in `include/uapi/linux/bpf.h`).
pub mod action {
    pub const ABORTED: u32 = 0;
    pub const DROP: u32 = 1;
    pub const PASS: u32 = 2;
    pub const TX: u32 = 3;
    pub const REDIRECT: u32 = 4;
    /// Number of slots.
    pub const COUNT: u32 = 5;
    /// Metric label of each slot, indexed by slot.
    pub const NAMES: [&str; COUNT as usize] = ["aborted", "drop", "pass", "tx", "redirect"];
}

/// Slots of the reason counter map: why the program decided what it did.
pub mod reason {
    /// Too short for the headers it claims (Ethernet, VLAN, IP, L4).
    pub const MALFORMED: u32 = 0;
    /// Not IPv4 or IPv6 (LLDP, ARP but a fenced VIP's request, ...).
    pub const NOT_IP: u32 = 1;
    /// An IPv4 or IPv6 fragment: never parsed past L3.
    pub const FRAGMENT: u32 = 2;
    /// IP, but neither TCP nor UDP nor VRRP (ICMP, ICMPv6 but a fenced
    /// VIP's neighbour solicitation and the errors about a flow, ...).
    pub const OTHER_L4: u32 = 3;
    /// VRRP (IP protocol 112), passed to the stack (a VRRPv3 advert is
    /// recorded first).
    pub const VRRP: u32 = 4;
    /// TCP or UDP that no configured service owns.
    pub const NO_SERVICE: u32 = 5;
    /// IPv6 with an extension header the program does not walk.
    pub const IPV6_EXT: u32 = 6;
    /// IPv4 with a bad version/IHL or an IPv6 header with a bad version.
    pub const BAD_IP_HEADER: u32 = 7;
    /// A packet to a VIP's service port or NAT port range while this node
    /// is not MASTER of its group (dropped: the kernel would answer RST).
    pub const NOT_MASTER: u32 = 8;
    /// The same while the agent's lease is stale (dropped: a hung agent
    /// must not keep serving, and its kernel must not answer RST).
    pub const LEASE_STALE: u32 = 9;
    /// Forwarded to the backend of an existing flow.
    pub const FLOW_HIT: u32 = 10;
    /// A new flow: backend picked by Maglev, flow recorded, forwarded.
    pub const FLOW_NEW: u32 = 11;
    /// A backend's reply to a NAT flow, translated back to the client.
    pub const NAT_REPLY: u32 = 12;
    /// The service has no usable backend (dropped).
    pub const NO_BACKEND: u32 = 13;
    /// No free NAT port for a new flow (dropped).
    pub const NAT_EXHAUSTED: u32 = 14;
    /// The backend's MAC is not known yet (dropped; the agent resolves it).
    pub const NO_NEIGH: u32 = 15;
    /// A map lookup or update that should not fail did (dropped; a VRRP
    /// advert whose record could not be written is still passed).
    pub const MAP_ERROR: u32 = 16;
    /// A vipx heartbeat, recorded and consumed (dropped: no socket reads
    /// it).
    pub const HEARTBEAT: u32 = 17;
    /// A VRRP advert or heartbeat from a source outside its VRID's
    /// allow-list (dropped, not recorded).
    pub const PEER_UNKNOWN: u32 = 18;
    /// A packet to a VIP's NAT port range that matches no NAT entry, while
    /// this node serves the group (dropped: the kernel would answer RST).
    pub const NAT_REPLY_MISS: u32 = 19;
    /// An ARP request or IPv6 neighbour solicitation for a VIP of a group
    /// whose lease is stale while its master flag is set (dropped: a hung
    /// agent's kernel must stop answering for the VIP).
    pub const VIP_FENCED: u32 = 20;
    /// A VRRP advert or a vipx heartbeat whose TTL (IPv6: hop limit) is
    /// not 255, dropped unrecorded: it did not come from the link itself
    /// (GTSM, RFC 5082; RFC 5798 section 5.1.1.3), so a host beyond a
    /// router cannot forge one.
    pub const TTL_NOT_255: u32 = 21;
    /// An ICMP or ICMPv6 error about a packet this node sent to a backend
    /// for a nat flow ("fragmentation needed", "packet too big", ...),
    /// translated for the flow's client: the quoted packet becomes the
    /// client's own, the error goes to the client.
    pub const ICMP_TO_CLIENT: u32 = 22;
    /// An ICMP or ICMPv6 error about a packet a flow's client received
    /// from the VIP, sent on to the flow's backend (nat: translated so
    /// that it quotes the backend's own packet; dsr: as it is).
    pub const ICMP_TO_BACKEND: u32 = 23;
    /// A heartbeat whose tag is not the cluster key's (forged, or from a
    /// node with another secret), dropped unrecorded.
    pub const HEARTBEAT_BAD_TAG: u32 = 24;
    /// An authentic heartbeat that is not after the last one recorded from
    /// its source (replayed, or reordered), dropped unrecorded.
    pub const HEARTBEAT_REPLAY: u32 = 25;
    /// An advert or heartbeat of a group's VRID from a new source while the
    /// records of the groups' VRIDs are full: not recorded (a recorded peer
    /// is never evicted for it); adverts are still passed.
    pub const PEER_RECORDS_FULL: u32 = 26;
    /// A new flow refused because the flow table or the NAT table is full
    /// (dropped; live flows are never evicted to make room).
    pub const FLOW_TABLE_FULL: u32 = 27;
    /// A new TCP flow refused because its backend's embryonic flows (no
    /// answer yet) already hold their share of the NAT ports (dropped).
    pub const EMBRYONIC_LIMIT: u32 = 28;
    /// Number of slots.
    pub const COUNT: u32 = 29;
    /// Metric label of each slot, indexed by slot.
    pub const NAMES: [&str; COUNT as usize] = [
        "malformed",
        "not_ip",
        "fragment",
        "other_l4",
        "vrrp",
        "no_service",
        "ipv6_ext",
        "bad_ip_header",
        "not_master",
        "lease_stale",
        "flow_hit",
        "flow_new",
        "nat_reply",
        "no_backend",
        "nat_exhausted",
        "no_neigh",
        "map_error",
        "heartbeat",
        "peer_unknown",
        "nat_reply_miss",
        "vip_fenced",
        "ttl_not_255",
        "icmp_to_client",
        "icmp_to_backend",
        "heartbeat_bad_tag",
        "heartbeat_replay",
        "peer_records_full",
        "flow_table_full",
        "embryonic_limit",
    ];
}
