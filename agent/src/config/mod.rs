//! The agent's configuration: one TOML file (`/etc/vipx/vipx.toml` by
//! default), read with serde and `deny_unknown_fields`.
//!
//! Every error names the file, the line and the column it comes from, so a
//! bad line is found at once; a bad file never replaces a running config.

mod api;
mod cluster;
mod group;
mod health;
mod log;
mod percent;
mod service;
mod sync;

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use toml::Spanned;

pub use api::{ApiConfig, ApiTls, DEFAULT_API_LISTEN};
pub use cluster::{ClusterConfig, Member, MembershipError, NODE_NAME_ENV};
pub use group::{
    Election, GroupConfig, InitialState, TrackInterface, TrackScript, TrackService, VipCidr,
};
pub use health::{AllDown, CheckKind, HealthConfig, OnDown};
pub use log::{LogConfig, LogLevel};
pub use percent::Percent;
pub use service::{BackendConfig, DEFAULT_MAGLEV_SIZE, Protocol, ServiceConfig};
pub use sync::{AckLevel, MAX_HANDOVER_WAIT, SyncConfig, SyncTls};

pub use crate::dataplane::{DEFAULT_PIN_PATH, Mode, PinPath, PortRange, XdpModeConfig};

/// A group's id in the data plane (its index in the group array).
pub type GroupId = u32;

/// Where the daemon looks for its configuration by default.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/vipx/vipx.toml";
/// Linux interface names are at most 15 bytes (`IFNAMSIZ` - 1).
const IFNAMSIZ_MAX: usize = 15;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node.
    #[serde(default)]
    pub node: NodeConfig,
    /// The XDP data plane.
    pub dataplane: DataplaneConfig,
    /// HTTP API and Prometheus endpoint.
    #[serde(default)]
    pub api: ApiConfig,
    /// VIP groups (`[[group]]`).
    #[serde(default, rename = "group")]
    pub groups: Vec<Spanned<GroupConfig>>,
    /// Services (`[[service]]`).
    #[serde(default, rename = "service")]
    pub services: Vec<Spanned<ServiceConfig>>,
    /// Flow replication (`[sync]`; off when absent).
    #[serde(default)]
    pub sync: Option<SyncConfig>,
    /// The cluster (`[cluster]`).
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// Logging (`[log]`).
    #[serde(default)]
    pub log: LogConfig,
}

/// `[node]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's name in the cluster, logs and metrics. Defaults to the
    /// host name (set it when several nodes share one host name, as in
    /// containers).
    pub name: Option<String>,
    /// UDP port of vipx heartbeats (sent to peers, recorded and consumed by
    /// XDP). Every node of a cluster uses the same.
    #[serde(default = "default_heartbeat_port")]
    pub heartbeat_port: u16,
    /// Where the agent keeps what an operator set by hand (drained
    /// backends, groups handed over), so that a restart keeps it.
    #[serde(default = "default_state_file")]
    pub state_file: PathBuf,
    /// How long `vipx-agent handover` keeps a node BACKUP when the command
    /// gives no `--for`; absent: until `vipx-agent handover --undo`.
    #[serde(default, with = "humantime_serde::option")]
    pub handover_hold: Option<Duration>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: None,
            heartbeat_port: default_heartbeat_port(),
            state_file: default_state_file(),
            handover_hold: None,
        }
    }
}

fn default_state_file() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_FILE)
}

/// `[node] state_file` by default.
pub const DEFAULT_STATE_FILE: &str = "/var/lib/vipx/state.json";

fn default_heartbeat_port() -> u16 {
    vipx_common::peer::DEFAULT_HEARTBEAT_PORT
}

impl NodeConfig {
    /// The node's name: `VIPX_NODE_NAME` when set (as Rauthy's
    /// `HOSTNAME_OVERWRITE`), else the configured name, else the host name.
    pub fn name(&self) -> String {
        if let Ok(name) = std::env::var(NODE_NAME_ENV)
            && !name.trim().is_empty()
        {
            return name.trim().to_owned();
        }
        self.name.clone().unwrap_or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|name| name.into_string().ok())
                .unwrap_or_else(|| "vipx".to_owned())
        })
    }
}

/// `[dataplane]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    /// Interfaces the XDP program is attached to (the VIP's L2 segment).
    pub interfaces: Vec<InterfaceName>,
    /// How to attach: `auto` tries driver mode and falls back to generic.
    #[serde(default)]
    pub xdp_mode: XdpModeConfig,
    /// The bpffs directory where the XDP links and maps are pinned, so XDP
    /// outlives a killed agent and the next one adopts them. One per
    /// agent: agents in other network namespaces of the host need their
    /// own.
    #[serde(default)]
    pub pin_path: PinPath,
    /// Entries of the flow table (and of the NAT table).
    #[serde(default = "default_flow_table_size")]
    pub flow_table_size: u32,
    /// How long the data plane keeps serving after the agent's last lease
    /// refresh: a hung agent stops serving after this.
    #[serde(default = "default_lease_timeout", with = "humantime_serde")]
    pub lease_timeout: Duration,
    /// How often the agent refreshes its lease.
    #[serde(default = "default_lease_refresh", with = "humantime_serde")]
    pub lease_refresh: Duration,
    /// Idle TCP flows are forgotten after this.
    #[serde(default = "default_tcp_idle", with = "humantime_serde")]
    pub tcp_idle_timeout: Duration,
    /// Idle UDP flows are forgotten after this.
    #[serde(default = "default_udp_idle", with = "humantime_serde")]
    pub udp_idle_timeout: Duration,
    /// TCP flows that saw a FIN both ways are forgotten after this.
    #[serde(default = "default_fin_timeout", with = "humantime_serde")]
    pub fin_timeout: Duration,
    /// Embryonic TCP flows (no answer from the backend yet: a SYN the
    /// backend's listen queue dropped, a flood) are forgotten after this
    /// idle, and their NAT ports freed.
    #[serde(default = "default_embryonic_timeout", with = "humantime_serde")]
    pub embryonic_timeout: Duration,
    /// After a RST, a TCP flow is forgotten once it stayed quiet this long
    /// (traffic going on clears the RST: a forged one ends nothing).
    #[serde(default = "default_rst_timeout", with = "humantime_serde")]
    pub rst_timeout: Duration,
    /// The percent of a nat service's NAT port range that embryonic flows
    /// may hold per backend; new flows past it are refused and counted
    /// (`embryonic_limit`). 100: no limit.
    #[serde(default = "default_embryonic_port_share")]
    pub embryonic_port_share: Percent,
}

fn default_flow_table_size() -> u32 {
    vipx_common::flow::DEFAULT_FLOW_ENTRIES
}
fn default_lease_timeout() -> Duration {
    Duration::from_millis(100)
}
fn default_lease_refresh() -> Duration {
    Duration::from_millis(10)
}
fn default_tcp_idle() -> Duration {
    Duration::from_secs(3600)
}
fn default_udp_idle() -> Duration {
    Duration::from_secs(60)
}
fn default_fin_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_embryonic_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_rst_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_embryonic_port_share() -> Percent {
    Percent(50)
}

/// An interface name, checked against the kernel's limits.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(try_from = "String")]
pub struct InterfaceName(String);

impl InterfaceName {
    /// The name as the kernel knows it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InterfaceName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        if name.is_empty() || name.len() > IFNAMSIZ_MAX {
            return Err(format!(
                "interface name {name:?} must have 1 to {IFNAMSIZ_MAX} bytes"
            ));
        }
        if name.contains(['/', ' ', '\0']) || name == "." || name == ".." {
            return Err(format!("{name:?} is not a valid interface name"));
        }
        Ok(Self(name))
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and checks configuration text; `path` only names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|err| {
            let offset = err.span().map_or(0, |span| span.start);
            invalid(path, text, offset, err.message().to_owned())
        })?;
        config.check(path, text)?;
        Ok(config)
    }

    /// The secret that opens the API's state changes: `[api]
    /// secret_file`, else `[cluster] secret_file`; with the key that named
    /// it (none: this node only, through loopback).
    pub fn state_secret_file(&self) -> Option<(&'static str, &Path)> {
        self.api
            .secret_file
            .as_deref()
            .map(|path| ("[api] secret_file", path))
            .or_else(|| {
                self.cluster
                    .secret_file
                    .as_deref()
                    .map(|path| ("[cluster] secret_file", path))
            })
    }

    /// Checks that span several keys, pointed at the line that breaks them.
    fn check(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let at_key = |key: &str| find_key(text, key).unwrap_or(0);
        if self.dataplane.interfaces.is_empty() {
            return Err(invalid(
                path,
                text,
                at_key("interfaces"),
                "dataplane.interfaces: at least one interface is needed".to_owned(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for iface in &self.dataplane.interfaces {
            if !seen.insert(iface) {
                return Err(invalid(
                    path,
                    text,
                    at_key("interfaces"),
                    format!("dataplane.interfaces: {iface} is listed twice"),
                ));
            }
        }
        let dp = &self.dataplane;
        if dp.lease_refresh.is_zero() || dp.lease_refresh >= dp.lease_timeout {
            return Err(invalid(
                path,
                text,
                find_key(text, "lease_refresh")
                    .or_else(|| find_key(text, "lease_timeout"))
                    .unwrap_or(0),
                "dataplane.lease_refresh must be non-zero and shorter than lease_timeout"
                    .to_owned(),
            ));
        }
        if dp.flow_table_size < 1024 {
            return Err(invalid(
                path,
                text,
                at_key("flow_table_size"),
                "dataplane.flow_table_size must be at least 1024".to_owned(),
            ));
        }
        if self.node.heartbeat_port == 0 {
            return Err(invalid(
                path,
                text,
                at_key("heartbeat_port"),
                "node.heartbeat_port must be 1-65535".to_owned(),
            ));
        }
        if let Err((table, key, message)) = self.api.check() {
            let at = find_key_in(text, table, key).unwrap_or_else(|| at_key(key));
            return Err(invalid(path, text, at, message));
        }
        if let Some(sync) = &self.sync
            && let Err((key, message)) = sync.check()
        {
            return Err(invalid(path, text, at_key(key), message));
        }
        if let Err((key, message)) = self.cluster.check() {
            return Err(invalid(path, text, at_key(key), message));
        }
        self.check_groups(path, text)?;
        self.check_services(path, text)?;
        for group in &self.groups {
            let at = group.span().start;
            for track in &group.get_ref().track_service {
                if !self.services.iter().any(|s| s.get_ref().name == track.name) {
                    return Err(invalid(
                        path,
                        text,
                        at,
                        format!(
                            "group {}: track_service {}: no [[service]] has that name",
                            group.get_ref().name,
                            track.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_groups(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        use vipx_common::{service::MAX_GROUPS, vip::MAX_VIPS};
        let mut names = std::collections::HashSet::new();
        let mut vrids = std::collections::HashSet::new();
        let mut vips = std::collections::HashMap::new();
        for (i, group) in self.groups.iter().enumerate() {
            let at = group.span().start;
            let group = group.get_ref();
            let fail = |message: String| Err(invalid(path, text, at, message));
            if i >= MAX_GROUPS as usize {
                return fail(format!("at most {MAX_GROUPS} groups"));
            }
            group.check().or_else(fail)?;
            if !self.dataplane.interfaces.contains(&group.interface) {
                return fail(format!(
                    "group {}: interface {} is not in dataplane.interfaces: XDP must see the VIPs' traffic there",
                    group.name, group.interface
                ));
            }
            if !names.insert(group.name.as_str()) {
                return fail(format!("group {}: the name is used twice", group.name));
            }
            if !vrids.insert(group.vrid) {
                return fail(format!(
                    "group {}: vrid {} is used twice",
                    group.name, group.vrid
                ));
            }
            for vip in &group.vips {
                if let Some(other) = vips.insert(vip.addr, group.name.as_str()) {
                    return fail(format!(
                        "group {}: VIP {} is already in group {other}: one group holds a VIP",
                        group.name, vip.addr
                    ));
                }
            }
            if vips.len() > MAX_VIPS as usize {
                return fail(format!("at most {MAX_VIPS} VIPs in all groups"));
            }
        }
        Ok(())
    }

    fn check_services(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        use vipx_common::service::MAX_SERVICES;
        let mut keys = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for (i, service) in self.services.iter().enumerate() {
            let at = service.span().start;
            let service = service.get_ref();
            let fail = |message: String| Err(invalid(path, text, at, message));
            if i >= MAX_SERVICES as usize {
                return fail(format!("at most {MAX_SERVICES} services"));
            }
            service.check().or_else(fail)?;
            let ports = service.nat_ports;
            if service.mode == Mode::Nat && (ports.first..=ports.last).contains(&service.port) {
                return fail(format!(
                    "service {}: port {} is inside its nat_ports {}-{}: the backends' replies to that NAT port and the clients' packets to the service would be one flow",
                    service.name, service.port, ports.first, ports.last
                ));
            }
            if !names.insert(service.name.as_str()) {
                return fail(format!("service {}: the name is used twice", service.name));
            }
            if !keys.insert((service.vip, service.port, service.protocol)) {
                return fail(format!(
                    "service {}: {}:{} is already a service",
                    service.name, service.vip, service.port
                ));
            }
            match self.group_of(service) {
                Some((_, group)) if group.holds(service.vip) => {}
                Some((_, group)) => {
                    return fail(format!(
                        "service {}: group {} does not hold the VIP {}",
                        service.name, group.name, service.vip
                    ));
                }
                None => {
                    return fail(format!(
                        "service {}: no [[group]] holds the VIP {}{}",
                        service.name,
                        service.vip,
                        service
                            .group
                            .as_ref()
                            .map(|g| format!(" (group {g} is not defined)"))
                            .unwrap_or_default()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Index in `groups` of the group that serves `service`: the one it
    /// names, or the one holding its VIP.
    pub fn service_group(&self, service: &ServiceConfig) -> Option<GroupId> {
        self.group_of(service).map(|(id, _)| id)
    }

    /// The group of a service, with its id.
    fn group_of(&self, service: &ServiceConfig) -> Option<(GroupId, &GroupConfig)> {
        let mut groups = self.groups_with_ids();
        match &service.group {
            Some(name) => groups.find(|(_, g)| &g.name == name),
            None => groups.find(|(_, g)| g.holds(service.vip)),
        }
    }

    /// The groups with their data-plane ids (their positions in the list,
    /// which holds at most `MAX_GROUPS`: checked at load).
    pub fn groups_with_ids(&self) -> impl Iterator<Item = (GroupId, &GroupConfig)> {
        (0..).zip(self.groups.iter().map(Spanned::get_ref))
    }
}

fn invalid(path: &Path, text: &str, offset: usize, message: String) -> ConfigError {
    let (line, column) = line_column(text, offset);
    ConfigError::Invalid {
        path: path.to_owned(),
        line,
        column,
        message,
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Byte offset of the first line that assigns `key` in the table headed
/// `[table]`.
fn find_key_in(text: &str, table: &str, key: &str) -> Option<usize> {
    let header = format!("[{table}]");
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        offset += line.len();
        if line.trim() == header {
            let rest = &text[offset..];
            let end = rest
                .split_inclusive('\n')
                .scan(0, |at, line| {
                    let start = *at;
                    *at += line.len();
                    Some((start, line))
                })
                .find(|(_, line)| line.trim_start().starts_with('['))
                .map_or(rest.len(), |(start, _)| start);
            return find_key(&rest[..end], key).map(|at| offset + at);
        }
    }
    None
}

/// Byte offset of the first line that assigns `key` (for checks that are
/// not tied to one token, such as duplicates in a list).
fn find_key(text: &str, key: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return Some(offset + (line.len() - trimmed.len()));
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod holes_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
