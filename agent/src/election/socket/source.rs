//! The adverts' source address: the interface's first IPv4 address
//! (RFC 5798 section 5.1.1.1, "the primary IPv4 address of the interface")
//! or its IPv6 link-local address (section 5.1.2.1), and whether that one is
//! usable yet (an IPv6 address is tentative until duplicate address
//! detection ends, and the kernel refuses it as a source meanwhile).
//!
//! IPv6 with unicast peers at global addresses is the one exception: the
//! peers filter adverts by their source, and they know this node by a
//! global address, so the adverts come from the interface's global address
//! on the peers' prefix (what keepalived's `unicast_src_ip` is set to).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// `IFA_F_DADFAILED` (linux/if_addr.h): duplicate address detection found
/// another owner.
const IFA_F_DADFAILED: u32 = 0x08;
/// `IFA_F_TENTATIVE`: duplicate address detection still runs.
const IFA_F_TENTATIVE: u32 = 0x40;

/// Why no source address was found.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SourceError {
    #[error("{iface} has no IPv4 address")]
    NoIpv4 { iface: String },
    #[error("{iface} has no IPv6 link-local address (is IPv6 enabled on it?)")]
    NoLinkLocal { iface: String },
    #[error("{iface} has no global IPv6 address to reach the unicast peers from")]
    NoGlobal { iface: String },
    #[error("reading {path}: {reason}")]
    Read { path: &'static str, reason: String },
}

/// One line of `/proc/net/if_inet6`: an IPv6 address of an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inet6Addr {
    pub addr: Ipv6Addr,
    pub prefix_len: u8,
    /// `IFA_F_*` flags.
    pub flags: u32,
    pub iface: String,
}

/// Where an IPv6 address stands in duplicate address detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dad {
    /// Usable as a source.
    Done,
    /// Still being checked.
    Tentative,
    /// Another node has it: never usable.
    Failed,
    /// Not (or no longer) on the interface.
    Missing,
}

/// The calling thread's namespace's IPv6 addresses (its own view, so that a
/// thread that entered another namespace sees that one).
const IF_INET6: &str = "/proc/thread-self/net/if_inet6";

/// Parses `/proc/net/if_inet6`: `ADDR IFINDEX PREFIXLEN SCOPE FLAGS NAME`,
/// all numbers in hex. Lines that do not read so are skipped.
pub fn parse_if_inet6(text: &str) -> Vec<Inet6Addr> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [addr, _index, prefix, _scope, flags, iface] = fields.as_slice() else {
                return None;
            };
            if addr.len() != 32 {
                return None;
            }
            let addr = Ipv6Addr::from(u128::from_str_radix(addr, 16).ok()?);
            Some(Inet6Addr {
                addr,
                prefix_len: u8::from_str_radix(prefix, 16).ok().filter(|p| *p <= 128)?,
                flags: u32::from_str_radix(flags, 16).ok()?,
                iface: (*iface).to_owned(),
            })
        })
        .collect()
}

fn read_if_inet6() -> Result<Vec<Inet6Addr>, SourceError> {
    std::fs::read_to_string(IF_INET6)
        .map(|text| parse_if_inet6(&text))
        .map_err(|e| SourceError::Read {
            path: IF_INET6,
            reason: e.to_string(),
        })
}

/// Where `addr` on `iface` stands in duplicate address detection.
pub fn dad_state(iface: &str, addr: Ipv6Addr) -> Dad {
    let Ok(addrs) = read_if_inet6() else {
        return Dad::Missing;
    };
    dad_state_in(&addrs, iface, addr)
}

/// [`dad_state`] over addresses already read.
pub fn dad_state_in(addrs: &[Inet6Addr], iface: &str, addr: Ipv6Addr) -> Dad {
    match addrs.iter().find(|a| a.iface == iface && a.addr == addr) {
        None => Dad::Missing,
        Some(a) if a.flags & IFA_F_DADFAILED != 0 => Dad::Failed,
        Some(a) if a.flags & IFA_F_TENTATIVE != 0 => Dad::Tentative,
        Some(_) => Dad::Done,
    }
}

/// The source of a group's adverts on `iface`, of the VIPs' family
/// (`ipv6`), never one of the `vips` themselves (a killed agent leaves them
/// behind). IPv6 addresses may still be tentative: see [`dad_state`].
pub fn advert_source(
    iface: &str,
    ipv6: bool,
    vips: &[IpAddr],
    peers: &[IpAddr],
) -> Result<IpAddr, SourceError> {
    if ipv6 {
        choose_v6(&read_if_inet6()?, iface, vips, peers).map(IpAddr::V6)
    } else {
        let addrs: Vec<Ipv4Addr> = nix::ifaddrs::getifaddrs()
            .map_err(|e| SourceError::Read {
                path: "getifaddrs",
                reason: e.to_string(),
            })?
            .filter(|a| a.interface_name == iface)
            .filter_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
            .collect();
        choose_v4(&addrs, vips)
            .map(IpAddr::V4)
            .ok_or_else(|| SourceError::NoIpv4 {
                iface: iface.to_owned(),
            })
    }
}

/// The interface's first IPv4 address that is not a VIP (a VIP only when
/// there is nothing else).
pub fn choose_v4(addrs: &[Ipv4Addr], vips: &[IpAddr]) -> Option<Ipv4Addr> {
    addrs
        .iter()
        .find(|a| !vips.contains(&IpAddr::V4(**a)))
        .or_else(|| addrs.first())
        .copied()
}

/// The IPv6 source among `addrs`: the link-local address of `iface` (the
/// lowest if several), or with unicast peers at global addresses its global
/// address on the first peer's prefix (else its lowest global one). VIPs and
/// addresses whose DAD failed are never chosen.
pub fn choose_v6(
    addrs: &[Inet6Addr],
    iface: &str,
    vips: &[IpAddr],
    peers: &[IpAddr],
) -> Result<Ipv6Addr, SourceError> {
    let first_global_peer = peers.iter().find_map(|p| match p {
        IpAddr::V6(v6) if !v6.is_unicast_link_local() => Some(*v6),
        _ => None,
    });
    let mut candidates: Vec<&Inet6Addr> = addrs
        .iter()
        .filter(|a| a.iface == iface)
        .filter(|a| !vips.contains(&IpAddr::V6(a.addr)))
        .filter(|a| a.flags & IFA_F_DADFAILED == 0)
        .filter(|a| a.addr.is_unicast_link_local() == first_global_peer.is_none())
        .collect();
    candidates.sort_by_key(|a| a.addr);
    let Some(peer) = first_global_peer else {
        return candidates
            .first()
            .map(|a| a.addr)
            .ok_or_else(|| SourceError::NoLinkLocal {
                iface: iface.to_owned(),
            });
    };
    candidates
        .iter()
        .find(|a| same_prefix(a.addr, peer, a.prefix_len))
        .or(candidates.first())
        .map(|a| a.addr)
        .ok_or_else(|| SourceError::NoGlobal {
            iface: iface.to_owned(),
        })
}

fn same_prefix(a: Ipv6Addr, b: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0);
    u128::from(a) & mask == u128::from(b) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the kernel prints it: a tentative link-local, a VIP, two globals.
    const IF_INET6_TEXT: &str = "\
fe80000000000000007602fffe4d000b 02 40 20 40     eth0
fd000077000000000000000000000064 02 40 00 82     eth0
fd000077000000000000000000000012 02 40 00 80     eth0
fd000099000000000000000000000001 02 40 00 80     eth0
fe80000000000000000000000000000a 03 40 20 80     eth1
00000000000000000000000000000001 01 80 10 80       lo
garbage line
";

    fn v6(text: &str) -> Ipv6Addr {
        text.parse().expect("test IPv6 address")
    }

    #[test]
    fn if_inet6_lines_are_read() {
        let addrs = parse_if_inet6(IF_INET6_TEXT);
        assert_eq!(addrs.len(), 6, "the garbage line is skipped");
        assert_eq!(
            addrs[0],
            Inet6Addr {
                addr: v6("fe80::76:2ff:fe4d:b"),
                prefix_len: 64,
                flags: IFA_F_TENTATIVE,
                iface: "eth0".into(),
            }
        );
        assert_eq!(addrs[5].addr, Ipv6Addr::LOCALHOST);
        assert_eq!(addrs[5].prefix_len, 128);
        assert!(
            parse_if_inet6("fe80 02 40 20 80 eth0\n").is_empty(),
            "short address"
        );
        assert!(
            parse_if_inet6("fe80000000000000007602fffe4d000b 02 99 20 80 eth0\n").is_empty(),
            "prefix length over 128"
        );
    }

    #[test]
    fn dad_states_follow_the_flags() {
        let mut addrs = parse_if_inet6(IF_INET6_TEXT);
        let ll = v6("fe80::76:2ff:fe4d:b");
        assert_eq!(dad_state_in(&addrs, "eth0", ll), Dad::Tentative);
        assert_eq!(dad_state_in(&addrs, "eth1", ll), Dad::Missing);
        addrs[0].flags = 0x80; // permanent, DAD over
        assert_eq!(dad_state_in(&addrs, "eth0", ll), Dad::Done);
        addrs[0].flags = IFA_F_TENTATIVE | IFA_F_DADFAILED;
        assert_eq!(dad_state_in(&addrs, "eth0", ll), Dad::Failed);
    }

    #[test]
    fn the_ipv6_source_is_link_local_unless_peers_are_global() {
        let addrs = parse_if_inet6(IF_INET6_TEXT);
        let vip = IpAddr::V6(v6("fd00:77::64"));
        assert_eq!(
            choose_v6(&addrs, "eth0", &[vip], &[]),
            Ok(v6("fe80::76:2ff:fe4d:b")),
            "multicast: the link-local address, tentative or not"
        );
        assert_eq!(
            choose_v6(&addrs, "eth0", &[vip], &[IpAddr::V6(v6("fe80::2"))]),
            Ok(v6("fe80::76:2ff:fe4d:b")),
            "link-local peers: the link-local address"
        );
        assert_eq!(
            choose_v6(&addrs, "eth0", &[vip], &[IpAddr::V6(v6("fd00:99::2"))]),
            Ok(v6("fd00:99::1")),
            "global peers: the address on their prefix"
        );
        assert_eq!(
            choose_v6(&addrs, "eth0", &[vip], &[IpAddr::V6(v6("2001:db8::2"))]),
            Ok(v6("fd00:77::12")),
            "no address on their prefix: the lowest global one, never the VIP"
        );
        assert_eq!(
            choose_v6(&addrs, "eth2", &[], &[]),
            Err(SourceError::NoLinkLocal {
                iface: "eth2".into()
            })
        );
        assert_eq!(
            choose_v6(&addrs, "eth1", &[], &[IpAddr::V6(v6("fd00::2"))]),
            Err(SourceError::NoGlobal {
                iface: "eth1".into()
            })
        );
        let mut failed = addrs.clone();
        failed[0].flags |= IFA_F_DADFAILED;
        assert!(
            choose_v6(&failed, "eth0", &[], &[]).is_err(),
            "a duplicate link-local address is not a source"
        );
    }

    #[test]
    fn the_ipv4_source_is_the_first_address_that_is_not_a_vip() {
        let a = Ipv4Addr::new(10, 0, 0, 100);
        let b = Ipv4Addr::new(10, 0, 0, 11);
        assert_eq!(choose_v4(&[a, b], &[IpAddr::V4(a)]), Some(b));
        assert_eq!(choose_v4(&[a, b], &[]), Some(a));
        assert_eq!(choose_v4(&[a], &[IpAddr::V4(a)]), Some(a), "only the VIP");
        assert_eq!(choose_v4(&[], &[]), None);
    }

    #[test]
    fn prefixes_compare_by_length() {
        assert!(same_prefix(v6("fd00:99::1"), v6("fd00:99::2"), 64));
        assert!(!same_prefix(v6("fd00:99::1"), v6("fd00:98::1"), 64));
        assert!(same_prefix(v6("fd00:99::1"), v6("2001::1"), 0));
        assert!(!same_prefix(v6("fd00:99::1"), v6("fd00:99::2"), 128));
    }
}
