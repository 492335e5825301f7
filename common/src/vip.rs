//! VIP addresses as the data plane knows them: the group each belongs to
//! and the NAT port ranges its nat-mode services use. With them XDP tells
//! traffic it must never hand to the kernel (a service port, or a NAT
//! reply, of a group this node does not serve: the kernel would answer
//! RST) from other traffic to the VIP (ssh, the agent's API), and knows
//! which ARP requests and neighbour solicitations a node with a stale
//! lease must not let its kernel answer.

use crate::service::MAX_SERVICES;

/// VIP addresses the data plane can hold.
pub const MAX_VIPS: u32 = 1024;
/// NAT port ranges one VIP can hold: at most one per service (the ranges
/// of one protocol are merged), so there is always room.
pub const VIP_NAT_RANGES: usize = MAX_SERVICES as usize;

/// Key of the `VIPX_VIPS` hash map: an address as the flow keys hold it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipKey {
    /// The VIP (IPv4 in the first 4 bytes, the rest zero).
    pub addr: [u8; 16],
    /// [`FAMILY_V4`](crate::FAMILY_V4) or [`FAMILY_V6`](crate::FAMILY_V6).
    pub family: u8,
    pub _pad: [u8; 3],
}

/// An inclusive range of NAT source ports of one protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatRange {
    /// First port, host byte order.
    pub first: u16,
    /// Last port, inclusive.
    pub last: u16,
    /// IP protocol (6 TCP, 17 UDP).
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// Value of the `VIPX_VIPS` hash map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vip {
    /// The group holding the VIP (index in `VIPX_GROUPS`).
    pub group: u32,
    /// How many entries of `nat` are in use (0: no nat-mode service).
    pub nat_ranges: u32,
    /// The NAT port ranges of the nat-mode services on this VIP.
    pub nat: [NatRange; VIP_NAT_RANGES],
}

impl Vip {
    /// Whether `port` of protocol `proto` is inside one of the VIP's NAT
    /// port ranges (where the backends' replies of nat-mode flows arrive).
    #[inline(always)]
    #[must_use]
    pub fn is_nat_port(&self, proto: u8, port: u16) -> bool {
        let mut i = 0;
        while i < VIP_NAT_RANGES {
            if i as u32 >= self.nat_ranges {
                return false;
            }
            let range = &self.nat[i];
            if range.proto == proto && range.first <= port && port <= range.last {
                return true;
            }
            i += 1;
        }
        false
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, integers and byte arrays, explicit padding
    // (checked by the size test below).
    unsafe impl aya::Pod for super::VipKey {}
    unsafe impl aya::Pod for super::NatRange {}
    unsafe impl aya::Pod for super::Vip {}
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(size_of::<VipKey>(), 20);
        assert_eq!(size_of::<NatRange>(), 8);
        assert_eq!(size_of::<Vip>(), 8 + 8 * 16);
    }

    fn vip(ranges: &[(u8, u16, u16)]) -> Vip {
        let mut vip = Vip {
            group: 3,
            nat_ranges: ranges.len() as u32,
            ..Vip::default()
        };
        for (slot, &(proto, first, last)) in vip.nat.iter_mut().zip(ranges) {
            *slot = NatRange {
                first,
                last,
                proto,
                _pad: [0; 3],
            };
        }
        vip
    }

    #[test]
    fn nat_ports_are_inclusive_ranges_of_one_protocol() {
        let vip = vip(&[(6, 40000, 40999), (17, 50000, 50000)]);
        assert!(vip.is_nat_port(6, 40000), "first port");
        assert!(vip.is_nat_port(6, 40999), "last port");
        assert!(!vip.is_nat_port(6, 39999), "one below");
        assert!(!vip.is_nat_port(6, 41000), "one above");
        assert!(!vip.is_nat_port(17, 40500), "UDP is not in the TCP range");
        assert!(vip.is_nat_port(17, 50000), "a one-port UDP range");
        assert!(!vip.is_nat_port(6, 50000), "TCP is not in the UDP range");
    }

    #[test]
    fn unused_slots_are_no_range() {
        let mut vip = vip(&[(6, 40000, 40999)]);
        // A stale slot beyond the count is ignored.
        vip.nat[1] = NatRange {
            first: 1,
            last: 65535,
            proto: 6,
            _pad: [0; 3],
        };
        assert!(!vip.is_nat_port(6, 22));
        assert!(!Vip::default().is_nat_port(0, 0), "no range at all");
    }
}
