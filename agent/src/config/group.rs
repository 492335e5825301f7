//! `[[group]]`: a VIP group, the unit of VRRP election and failover.

use std::{fmt, net::IpAddr, str::FromStr};

use serde::Deserialize;

use super::InterfaceName;

/// One `[[group]]` (a VRRP instance in keepalived's words).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Name in logs, metrics and `[[service]] group`.
    pub name: String,
    /// VRRP virtual router id (1-255).
    pub vrid: u8,
    /// Interface the VIPs live on.
    pub interface: InterfaceName,
    /// The VIPs, with their prefix length ("10.0.0.100/24").
    pub vips: Vec<VipCidr>,
    /// State at start: `backup` (default) or `master`. Until VRRP election
    /// runs, this is the state the node keeps.
    #[serde(default)]
    pub state: InitialState,
}

/// `state` of a group at start.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InitialState {
    #[default]
    Backup,
    Master,
}

/// An address with its prefix length.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(try_from = "String")]
pub struct VipCidr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl FromStr for VipCidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?} is not an address with a prefix length (\"10.0.0.100/24\")");
        let (addr, len) = text.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix_len: u8 = len.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix_len })
    }
}

impl TryFrom<String> for VipCidr {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl fmt::Display for VipCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl GroupConfig {
    /// Whether the group holds `addr`.
    pub fn holds(&self, addr: IpAddr) -> bool {
        self.vips.iter().any(|vip| vip.addr == addr)
    }

    pub(super) fn check(&self) -> Result<(), String> {
        if self.vrid == 0 {
            return Err(format!("group {}: vrid must be 1-255", self.name));
        }
        if self.vips.is_empty() {
            return Err(format!("group {}: at least one VIP is needed", self.name));
        }
        Ok(())
    }
}
