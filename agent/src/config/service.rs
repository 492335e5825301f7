//! `[[service]]`: a VIP:port balanced over backends.

use std::net::IpAddr;

use serde::Deserialize;

use crate::dataplane::{Mode, PortRange};

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
