//! The fuzzer's world: the services the program serves, the frames it is
//! fed (`frames`), and what may come out (`oracle`).

pub mod frames;
pub mod icmp;
pub mod oracle;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use vipx_agent::{config::Mode, dataplane::ServiceSpec};
use vipx_lab::rig::service;

/// VIP of group 0 (this node is MASTER).
pub const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100));
/// IPv6 VIP of group 0.
pub const VIP6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x100));
/// VIP of group 1 (this node is BACKUP).
pub const VIP_B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 200));
/// Every VIP.
pub const VIPS: [IpAddr; 3] = [VIP, VIP6, VIP_B];
/// The node's MAC.
pub const NODE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
/// The heartbeat port (UDP to it is election traffic, not a service).
pub const HEARTBEAT_PORT: u16 = vipx_common::peer::DEFAULT_HEARTBEAT_PORT;

pub const fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 77, 0, last))
}

pub const fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, last))
}

/// The services: nat and dsr, TCP and UDP, IPv4 and IPv6, one with a
/// four-port NAT range (so flows collide and run out of ports), one in
/// a group this node does not serve. No NAT range holds a service port.
pub fn services() -> Vec<ServiceSpec> {
    use Mode::{Dsr, Nat};
    vec![
        service(
            "pg",
            (VIP, 5432, 6),
            Nat,
            0,
            40000..=40999,
            &[(v4(31), 6432, 1), (v4(32), 6432, 1), (v4(33), 6432, 1)],
        ),
        service(
            "small",
            (VIP, 5433, 6),
            Nat,
            0,
            41000..=41003,
            &[(v4(34), 6433, 1)],
        ),
        service(
            "dns",
            (VIP, 53, 17),
            Nat,
            0,
            42000..=42999,
            &[(v4(35), 5353, 1), (v4(36), 5353, 1)],
        ),
        service(
            "dsr",
            (VIP, 5500, 6),
            Dsr,
            0,
            0..=0,
            &[(v4(41), 5500, 1), (v4(42), 5500, 1)],
        ),
        service(
            "pg6",
            (VIP6, 5432, 6),
            Nat,
            0,
            40000..=40999,
            &[(v6(0x31), 6432, 1), (v6(0x32), 6432, 1)],
        ),
        service(
            "dsr6",
            (VIP6, 5500, 17),
            Dsr,
            0,
            0..=0,
            &[(v6(0x41), 5500, 1)],
        ),
        service(
            "backup",
            (VIP_B, 5432, 6),
            Nat,
            1,
            40000..=40999,
            &[(v4(38), 6432, 1)],
        ),
    ]
}
