//! [`VipAddr`]: which address, with which prefix length, on which interface.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::VipError;

/// Longest interface name Linux accepts (`IFNAMSIZ` - 1).
const MAX_IFNAME_LEN: usize = 15;

/// A VIP: an address with its prefix length, on one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipAddr {
    /// The virtual address itself.
    pub addr: IpAddr,
    /// Prefix length the address is added with (`/24`, `/64`, ...).
    pub prefix_len: u8,
    /// Interface the address lives on (`eth0`).
    pub interface: String,
}

impl VipAddr {
    /// A VIP after checking it: a unicast, specified address, a prefix length
    /// that fits its family, and a plausible interface name.
    pub fn new(addr: IpAddr, prefix_len: u8, interface: &str) -> Result<Self, VipError> {
        let input = || format!("{addr}/{prefix_len} dev {interface}");
        let invalid = |reason: &str| VipError::Parse {
            input: input(),
            reason: reason.to_owned(),
        };
        let max_prefix = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max_prefix {
            return Err(invalid(&format!(
                "prefix length must be at most {max_prefix}"
            )));
        }
        let broadcast = matches!(addr, IpAddr::V4(a) if a.is_broadcast());
        if addr.is_unspecified() || addr.is_multicast() || broadcast {
            return Err(invalid("a VIP must be a unicast address"));
        }
        if interface.is_empty()
            || interface.len() > MAX_IFNAME_LEN
            || interface == "."
            || interface == ".."
            || interface.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
        {
            return Err(invalid(&format!(
                "{interface:?} is not an interface name (1 to {MAX_IFNAME_LEN} bytes, no '/', ':' or spaces)"
            )));
        }
        Ok(Self {
            addr,
            prefix_len,
            interface: interface.to_owned(),
        })
    }

    /// A VIP from `cidr` ("10.0.0.100/24", "2001:db8::100/64"; without a
    /// prefix length it is a host address, /32 or /128, as in keepalived) on
    /// `interface`.
    pub fn parse(cidr: &str, interface: &str) -> Result<Self, VipError> {
        let invalid = |reason: String| VipError::Parse {
            input: format!("{cidr} dev {interface}"),
            reason,
        };
        let (addr, prefix) = match cidr.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (cidr.trim(), None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| invalid(format!("{addr:?} is not an IP address")))?;
        let prefix_len = match prefix {
            Some(p) => p
                .parse()
                .map_err(|_| invalid(format!("{p:?} is not a prefix length")))?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Self::new(addr, prefix_len, interface)
    }

    /// The address with its prefix length, as `ip addr` shows it: "10.0.0.100/24".
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.addr, self.prefix_len)
    }
}

/// Parses keepalived's `virtual_ipaddress` form, "10.0.0.100/24 dev eth0".
impl FromStr for VipAddr {
    type Err = VipError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_whitespace().collect::<Vec<_>>().as_slice() {
            [cidr, "dev", interface] => Self::parse(cidr, interface),
            _ => Err(VipError::Parse {
                input: s.to_owned(),
                reason: "expected \"ADDRESS[/PREFIX] dev INTERFACE\"".to_owned(),
            }),
        }
    }
}

/// "10.0.0.100/24 dev eth0", the form [`FromStr`] reads.
impl fmt::Display for VipAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} dev {}",
            self.addr, self.prefix_len, self.interface
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn parses_cidr_and_interface() {
        let vip = VipAddr::parse("10.0.0.100/24", "eth0").expect("valid VIP");
        assert_eq!(
            vip,
            VipAddr {
                addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)),
                prefix_len: 24,
                interface: "eth0".into(),
            }
        );
        assert_eq!(vip.cidr(), "10.0.0.100/24");
        assert_eq!(vip.to_string(), "10.0.0.100/24 dev eth0");
        assert_eq!(vip.to_string().parse::<VipAddr>().expect("round trip"), vip);

        let host = VipAddr::parse("10.0.0.100", "eth0").expect("no prefix");
        assert_eq!(host.prefix_len, 32, "IPv4 host address by default");
        let v6: VipAddr = "2001:db8::100 dev bond0.12".parse().expect("IPv6 VIP");
        assert_eq!(
            v6.addr,
            IpAddr::V6("2001:db8::100".parse::<Ipv6Addr>().expect("addr"))
        );
        assert_eq!(v6.prefix_len, 128, "IPv6 host address by default");
        assert_eq!(v6.interface, "bond0.12");
    }

    #[test]
    fn rejects_bad_vips() {
        for (cidr, iface, why) in [
            ("10.0.0.100/33", "eth0", "prefix length must be at most 32"),
            (
                "2001:db8::1/129",
                "eth0",
                "prefix length must be at most 128",
            ),
            ("10.0.0/24", "eth0", "is not an IP address"),
            ("10.0.0.1/x", "eth0", "is not a prefix length"),
            ("0.0.0.0/0", "eth0", "unicast"),
            ("224.0.0.18/32", "eth0", "unicast"),
            ("255.255.255.255/32", "eth0", "unicast"),
            ("ff02::1/128", "eth0", "unicast"),
            ("10.0.0.1/24", "", "not an interface name"),
            (
                "10.0.0.1/24",
                "averyveryverylongname",
                "not an interface name",
            ),
            ("10.0.0.1/24", "eth0:1", "not an interface name"),
            ("10.0.0.1/24", "../x", "not an interface name"),
        ] {
            let err = VipAddr::parse(cidr, iface).expect_err(cidr).to_string();
            assert!(err.contains(why), "{cidr} dev {iface}: {err}");
            assert!(err.contains(cidr), "error names the VIP: {err}");
        }
        let err = "10.0.0.1/24 eth0".parse::<VipAddr>().expect_err("no dev");
        assert!(err.to_string().contains("dev INTERFACE"), "{err}");
    }
}
