//! Services (VIP:port), backends, Maglev tables and VIP groups: the maps the
//! agent writes and the XDP program reads.

/// Services the data plane can hold.
pub const MAX_SERVICES: u32 = 16;
/// Backends the data plane can hold (ids are global, shared by services).
pub const MAX_BACKENDS: u32 = 1024;
/// VIP groups (one per VRRP instance).
pub const MAX_GROUPS: u32 = 256;
/// Largest Maglev table (M), and the slots reserved per table half.
pub const MAGLEV_MAX_SIZE: u32 = 65537;
/// Two halves per service: the agent writes the inactive one, then flips.
pub const MAGLEV_ENTRIES: u32 = MAX_SERVICES * 2 * MAGLEV_MAX_SIZE;

/// Forwarding mode: full NAT (the PgBouncer drop-in default).
pub const MODE_NAT: u8 = 0;
/// Forwarding mode: L2 direct server return.
pub const MODE_DSR: u8 = 1;

/// Backend flag: usable for new flows (weight > 0 and healthy). Existing
/// flows keep a backend without it (drain).
pub const BACKEND_F_ACTIVE: u8 = 1;

/// Services: key of the `VIPX_SERVICES` hash map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    /// VIP address (IPv4 in the first 4 bytes, the rest zero).
    pub addr: [u8; 16],
    /// VIP port, host byte order.
    pub port: u16,
    /// IP protocol (6 TCP, 17 UDP).
    pub proto: u8,
    /// [`FAMILY_V4`](crate::FAMILY_V4) or [`FAMILY_V6`](crate::FAMILY_V6).
    pub family: u8,
}

/// Services: value of the `VIPX_SERVICES` hash map. Replaced whole by the
/// agent (an atomic update), which is how a Maglev flip happens.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// Index of this service (counters, Maglev table region).
    pub id: u32,
    /// VIP group whose state decides whether this node serves.
    pub group: u32,
    /// Active Maglev half (0 or 1).
    pub table: u32,
    /// Maglev table size M (prime, at most [`MAGLEV_MAX_SIZE`]); 0 when the
    /// service has no usable backend.
    pub table_size: u32,
    /// [`MODE_NAT`] or [`MODE_DSR`].
    pub mode: u8,
    pub _pad: [u8; 3],
    /// First NAT source port (nat mode).
    pub nat_port_first: u16,
    /// Last NAT source port, inclusive.
    pub nat_port_last: u16,
}

/// A backend: value of the `VIPX_BACKENDS` array, indexed by backend id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    /// Address (IPv4 in the first 4 bytes).
    pub addr: [u8; 16],
    /// Port, host byte order (nat mode rewrites the destination port).
    pub port: u16,
    /// [`FAMILY_V4`](crate::FAMILY_V4) or [`FAMILY_V6`](crate::FAMILY_V6).
    pub family: u8,
    /// `BACKEND_F_*`.
    pub flags: u8,
    /// Next-hop MAC for this backend (from the neighbour table).
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// State of a VIP group: value of the `VIPX_GROUPS` array. This node serves
/// the group's services only while `master != 0` and the lease is fresh.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Group {
    /// 1 while this node is MASTER of the group.
    pub master: u32,
    pub _pad: u32,
    /// `CLOCK_MONOTONIC` nanoseconds (`bpf_ktime_get_ns`) until which the
    /// agent's lease is valid; the agent pushes it forward every few ms.
    pub lease_until_ns: u64,
}

/// The slot of Maglev table entry `slot` of half `table` of service `id` in
/// the `VIPX_MAGLEV` array.
#[inline(always)]
#[must_use]
pub const fn maglev_index(id: u32, table: u32, slot: u32) -> u32 {
    (id * 2 + (table & 1)) * MAGLEV_MAX_SIZE + slot
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are `#[repr(C)]`, integers and byte arrays only,
    // with explicit padding fields (checked by the size tests below).
    unsafe impl aya::Pod for super::ServiceKey {}
    unsafe impl aya::Pod for super::Service {}
    unsafe impl aya::Pod for super::Backend {}
    unsafe impl aya::Pod for super::Group {}
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(size_of::<ServiceKey>(), 20);
        assert_eq!(size_of::<Service>(), 24);
        assert_eq!(size_of::<Backend>(), 28);
        assert_eq!(size_of::<Group>(), 16);
    }

    #[test]
    fn maglev_halves_do_not_overlap() {
        assert_eq!(maglev_index(0, 1, 0), MAGLEV_MAX_SIZE);
        assert_eq!(maglev_index(1, 0, 0), 2 * MAGLEV_MAX_SIZE);
        let last = maglev_index(MAX_SERVICES - 1, 1, MAGLEV_MAX_SIZE - 1);
        assert_eq!(last, MAGLEV_ENTRIES - 1);
    }
}
