//! The VIP map: every VIP of every group, with the group's id and the NAT
//! port ranges of the VIP's nat-mode services. XDP reads it to drop (never
//! pass to the kernel, which would answer RST) the service and NAT traffic
//! of a group this node does not serve and the NAT replies that lost their
//! entry, and to fence a hung agent's VIPs from ARP and neighbour
//! discovery.

use crate::locks::lock;
use std::{collections::HashSet, net::IpAddr, sync::Arc};

use tracing::{debug, info};
use vipx_common::{
    MAP_VIPS, NatRange, Vip, VipKey, addr,
    vip::{MAX_VIPS, VIP_NAT_RANGES},
};

use super::{
    error::DataplaneError,
    maps::Maps,
    services::ServiceSpec,
    settings::{Mode, PortRange},
};

/// What one VIP should look like in the data plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipSpec {
    pub addr: IpAddr,
    /// Group id (index of the `[[group]]` holding the VIP).
    pub group: u32,
    /// `(IP protocol, range)` of every nat-mode service on the VIP.
    pub nat_ports: Vec<(u8, PortRange)>,
}

impl VipSpec {
    /// The VIP `addr` of group `group`, with the NAT port ranges of the
    /// nat-mode services of `services` on that address (dsr services use
    /// none).
    pub fn new(addr: IpAddr, group: u32, services: &[ServiceSpec]) -> Self {
        let nat_ports = services
            .iter()
            .filter(|s| s.vip == addr && s.mode == Mode::Nat)
            .map(|s| (s.protocol, s.nat_ports))
            .collect();
        Self {
            addr,
            group,
            nat_ports,
        }
    }

    /// The map key.
    pub fn key(&self) -> VipKey {
        let (addr, family) = addr::to_map(self.addr);
        VipKey {
            addr,
            family,
            _pad: [0; 3],
        }
    }

    /// The map value: the ranges of one protocol merged where they overlap
    /// or touch (services on one VIP may share a range), in order.
    pub fn value(&self) -> Result<Vip, DataplaneError> {
        let mut sorted = self.nat_ports.clone();
        sorted.sort_by_key(|(proto, range)| (*proto, range.first, range.last));
        let mut merged: Vec<NatRange> = Vec::new();
        for (proto, range) in sorted {
            match merged.last_mut() {
                Some(last)
                    if last.proto == proto
                        && u32::from(range.first) <= u32::from(last.last) + 1 =>
                {
                    last.last = last.last.max(range.last);
                }
                _ => merged.push(NatRange {
                    first: range.first,
                    last: range.last,
                    proto,
                    _pad: [0; 3],
                }),
            }
        }
        if merged.len() > VIP_NAT_RANGES {
            return Err(DataplaneError::Full("NAT port ranges of one VIP"));
        }
        let mut value = Vip {
            group: self.group,
            nat_ranges: u32::try_from(merged.len()).unwrap_or(0),
            ..Vip::default()
        };
        value.nat[..merged.len()].copy_from_slice(&merged);
        Ok(value)
    }
}

/// Writes the VIP map.
pub struct VipTable {
    maps: Arc<Maps>,
    dry_run: bool,
}

impl VipTable {
    /// `dry_run` (HA debug mode): log what would be written instead.
    pub fn new(maps: Arc<Maps>, dry_run: bool) -> Self {
        Self { maps, dry_run }
    }

    /// Makes the VIP map hold exactly `specs`: each entry written whole
    /// (one atomic update), then the entries of VIPs no longer configured
    /// removed.
    pub fn apply(&self, specs: &[VipSpec]) -> Result<(), DataplaneError> {
        if specs.len() > MAX_VIPS as usize {
            return Err(DataplaneError::Full("VIPs"));
        }
        let values = specs
            .iter()
            .map(|spec| Ok((spec.key(), spec.value()?)))
            .collect::<Result<Vec<_>, DataplaneError>>()?;
        if self.dry_run {
            info!(
                "HA debug: would write {} VIPs to the data plane",
                values.len()
            );
            return Ok(());
        }
        let wanted: HashSet<VipKey> = values.iter().map(|(key, _)| *key).collect();
        let mut map = lock(&self.maps.vips);
        for (key, value) in &values {
            map.insert(key, value, 0)
                .map_err(|source| DataplaneError::Map {
                    name: MAP_VIPS,
                    source,
                })?;
        }
        let stale: Vec<VipKey> = map
            .keys()
            .filter_map(Result::ok)
            .filter(|key| !wanted.contains(key))
            .collect();
        for key in &stale {
            map.remove(key).map_err(|source| DataplaneError::Map {
                name: MAP_VIPS,
                source,
            })?;
        }
        debug!(
            vips = values.len(),
            removed = stale.len(),
            "VIP map written"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: u16, last: u16) -> PortRange {
        PortRange { first, last }
    }

    fn nat(proto: u8, first: u16, last: u16) -> NatRange {
        NatRange {
            first,
            last,
            proto,
            _pad: [0; 3],
        }
    }

    fn spec(nat_ports: Vec<(u8, PortRange)>) -> VipSpec {
        VipSpec {
            addr: "10.77.0.100".parse().expect("address"),
            group: 2,
            nat_ports,
        }
    }

    #[test]
    fn a_vip_without_nat_service_has_no_range() {
        let value = spec(Vec::new()).value().expect("value");
        assert_eq!(value.group, 2);
        assert_eq!(value.nat_ranges, 0);
        assert_eq!(value.nat, [NatRange::default(); VIP_NAT_RANGES]);
    }

    #[test]
    fn ranges_of_one_protocol_merge_where_they_overlap_or_touch() {
        let value = spec(vec![
            (6, range(50000, 50999)),
            (6, range(40000, 40999)),
            (6, range(40500, 41499)),
            (6, range(41500, 41599)),
            (17, range(40000, 40999)),
        ])
        .value()
        .expect("value");
        assert_eq!(value.nat_ranges, 3);
        assert_eq!(
            &value.nat[..3],
            &[
                nat(6, 40000, 41599),
                nat(6, 50000, 50999),
                nat(17, 40000, 40999)
            ],
            "TCP 40000-41599 (three merged), TCP 50000-50999, UDP apart"
        );
    }

    #[test]
    fn the_default_range_shared_by_two_services_is_one_range() {
        let value = spec(vec![(6, range(32768, 60999)), (6, range(32768, 60999))])
            .value()
            .expect("value");
        assert_eq!(value.nat_ranges, 1);
        assert_eq!(value.nat[0], nat(6, 32768, 60999));
    }

    #[test]
    fn ranges_ending_at_the_last_port_merge_without_overflow() {
        let value = spec(vec![(6, range(65000, 65535)), (6, range(65535, 65535))])
            .value()
            .expect("value");
        assert_eq!(value.nat_ranges, 1);
        assert_eq!(value.nat[0], nat(6, 65000, 65535));
    }

    #[test]
    fn more_disjoint_ranges_than_slots_are_refused() {
        let ranges = (0..=VIP_NAT_RANGES as u16)
            .map(|i| (6, range(2000 + i * 10, 2000 + i * 10 + 1)))
            .collect();
        assert!(matches!(spec(ranges).value(), Err(DataplaneError::Full(_))));
    }

    #[test]
    fn only_nat_services_on_the_address_count() {
        let vip: IpAddr = "10.77.0.100".parse().expect("address");
        let other: IpAddr = "10.77.0.101".parse().expect("address");
        let service = |addr: IpAddr, mode: Mode, protocol: u8, first: u16| ServiceSpec {
            name: format!("{addr}-{first}"),
            vip: addr,
            port: first,
            protocol,
            mode,
            group: 0,
            maglev_size: 251,
            nat_ports: range(first, first + 99),
            backends: Vec::new(),
        };
        let services = [
            service(vip, Mode::Nat, 6, 40000),
            service(vip, Mode::Dsr, 6, 41000),
            service(other, Mode::Nat, 6, 42000),
            service(vip, Mode::Nat, 17, 43000),
        ];
        assert_eq!(
            VipSpec::new(vip, 1, &services),
            VipSpec {
                addr: vip,
                group: 1,
                nat_ports: vec![(6, range(40000, 40099)), (17, range(43000, 43099))],
            }
        );
    }
}
