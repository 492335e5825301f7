//! `[[service]]`: a VIP:port balanced over backends.

use std::{fmt, net::IpAddr, str::FromStr};

use serde::Deserialize;

/// Default Maglev table size (prime).
pub const DEFAULT_MAGLEV_SIZE: u32 = 65537;

/// One `[[service]]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Name in logs and metrics.
    pub name: String,
    /// The VIP clients connect to.
    pub vip: IpAddr,
    /// The port clients connect to.
    pub port: u16,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub protocol: Protocol,
    /// `nat` (default: full NAT, backends see the VIP and a NAT port) or
    /// `dsr` (L2 direct return: backends hold the VIP on `lo`).
    #[serde(default)]
    pub mode: Mode,
    /// The `[[group]]` whose MASTER serves this service; by default the
    /// group that holds the VIP.
    pub group: Option<String>,
    /// Maglev table size M (a prime, at most 65537).
    #[serde(default = "default_maglev_size")]
    pub maglev_size: u32,
    /// NAT source ports ("first-last") used towards the backends.
    #[serde(default)]
    pub nat_ports: PortRange,
    /// The backends.
    pub backends: Vec<BackendConfig>,
    /// Health checks of the backends (none: every backend counts as up).
    pub health: Option<super::HealthConfig>,
}

fn default_maglev_size() -> u32 {
    DEFAULT_MAGLEV_SIZE
}

/// One backend of a service.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Backend address.
    pub address: IpAddr,
    /// Backend port (default: the service's port; nat mode may map
    /// 5432 -> 6432). DSR keeps the port.
    pub port: Option<u16>,
    /// Relative weight; 0 drains the backend (existing flows stay, new ones
    /// go elsewhere).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// IP protocol of a service.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }
}

/// Forwarding mode of a service.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Full NAT: destination -> backend, source -> VIP:nat-port.
    #[default]
    Nat,
    /// L2 direct server return: only the destination MAC changes.
    Dsr,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Nat => "nat",
            Self::Dsr => "dsr",
        })
    }
}

/// An inclusive port range, written "first-last".
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl Default for PortRange {
    fn default() -> Self {
        Self {
            first: 32768,
            last: 60999,
        }
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?} is not a port range \"first-last\" within 1024-65535");
        let (first, last) = text.split_once('-').ok_or_else(bad)?;
        let first: u16 = first.trim().parse().map_err(|_| bad())?;
        let last: u16 = last.trim().parse().map_err(|_| bad())?;
        if first < 1024 || last < first {
            return Err(bad());
        }
        Ok(Self { first, last })
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl ServiceConfig {
    /// A backend's port (its own, or the service's).
    pub fn backend_port(&self, backend: &BackendConfig) -> u16 {
        backend.port.unwrap_or(self.port)
    }

    /// Checks of one service on its own; `Err` is the message.
    pub(super) fn check(&self) -> Result<(), String> {
        let name = &self.name;
        if self.backends.is_empty() {
            return Err(format!("service {name}: at least one backend is needed"));
        }
        if !crate::dataplane::maglev::is_prime(self.maglev_size)
            || self.maglev_size > DEFAULT_MAGLEV_SIZE
        {
            return Err(format!(
                "service {name}: maglev_size {} must be a prime at most {DEFAULT_MAGLEV_SIZE}",
                self.maglev_size
            ));
        }
        if self.backends.len() >= self.maglev_size as usize {
            return Err(format!(
                "service {name}: maglev_size must exceed the number of backends"
            ));
        }
        if let Some(health) = &self.health {
            health.check(name)?;
        }
        let mut seen = std::collections::HashSet::new();
        for backend in &self.backends {
            if backend.address.is_ipv4() != self.vip.is_ipv4() {
                return Err(format!(
                    "service {name}: backend {} is not of the VIP's address family",
                    backend.address
                ));
            }
            let port = self.backend_port(backend);
            if !seen.insert((backend.address, port)) {
                return Err(format!(
                    "service {name}: backend {}:{port} is listed twice",
                    backend.address
                ));
            }
            if self.mode == Mode::Dsr && port != self.port {
                return Err(format!(
                    "service {name}: dsr cannot change the port ({} -> {port}); use nat",
                    self.port
                ));
            }
        }
        Ok(())
    }
}
