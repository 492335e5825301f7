//! The lab nodes' configuration files, written by [`super::Cluster`].

use std::{net::Ipv4Addr, path::Path, time::Duration};

use super::{API_PORT, Cluster, NODE_BASE, VIP, VIP_PORT, node_priority};
use crate::Lab;

/// What differs between the lab's node configurations.
pub(super) struct NodeConfig<'a> {
    pub(super) name: &'a str,
    /// Where the agent pins its XDP links and maps: its own directory in
    /// the lab's bpffs (agents of one host need one each).
    pub(super) pin_path: &'a Path,
    /// Where the agent keeps drains and handovers (in the lab's temp dir).
    pub(super) state_file: &'a Path,
    pub(super) master: bool,
    /// VRRP priority: the first node highest.
    pub(super) priority: u8,
    pub(super) vip: &'a str,
    /// The service's mode (`nat`, `dsr`).
    pub(super) mode: &'a str,
    /// The service's `backends` lines ([`super::backends::service_lines`]).
    pub(super) backends: &'a str,
    pub(super) health: Option<&'a str>,
    pub(super) extra: &'a str,
    pub(super) group: &'a str,
    pub(super) advert_ms: u64,
    /// The fast heartbeat's interval (none: off).
    pub(super) heartbeat: Option<Duration>,
    /// The other nodes' addresses (`unicast_peers` with the heartbeat).
    pub(super) peers: &'a [Ipv4Addr],
    /// The `[sync]` section (none: no flow replication).
    pub(super) sync: Option<String>,
}

/// The lab nodes' replication port.
pub(super) const SYNC_PORT: u16 = 9470;

/// Node `index`'s `[sync]` section: it listens on its own address and
/// streams its flows to the other nodes, with the lab's secret.
pub(super) fn sync_section(lab: &Lab, nodes: usize, index: usize, secret: &Path) -> String {
    let own = u32::try_from(index)
        .ok()
        .and_then(|i| NODE_BASE.checked_add(i))
        .map(|n| bare(&lab.v4(n)).to_owned())
        .unwrap_or_default();
    let peers: Vec<String> = peers(lab, nodes, index)
        .iter()
        .map(|p| format!("\"{p}:{SYNC_PORT}\""))
        .collect();
    format!(
        "\n[sync]\nlisten = \"{own}:{SYNC_PORT}\"\npeers = [{}]\nsecret_file = \"{}\"\n",
        peers.join(", "),
        secret.display()
    )
}

/// The host numbers of the nodes of an `nodes`-node cluster other than
/// node `index`.
fn other_nodes(nodes: usize, index: usize) -> impl Iterator<Item = u32> {
    (0..nodes)
        .filter(move |j| *j != index)
        .filter_map(|j| NODE_BASE.checked_add(u32::try_from(j).ok()?))
}

/// An address of the lab without its prefix length.
pub(super) fn bare(cidr: &str) -> &str {
    cidr.split('/').next().unwrap_or(cidr)
}

/// The IPv4 addresses of the nodes other than node `index`.
pub(super) fn peers(lab: &Lab, nodes: usize, index: usize) -> Vec<Ipv4Addr> {
    other_nodes(nodes, index)
        .filter_map(|n| bare(&lab.v4(n)).parse().ok())
        .collect()
}

/// A group's heartbeat keys: its unicast peers and the interval (none when
/// the heartbeat is off).
fn heartbeat_keys(interval: Option<Duration>, peers: &[String]) -> String {
    interval
        .map(|interval| {
            let quoted: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
            format!(
                "unicast_peers = [{}]\nheartbeat_interval = \"{}us\"\n",
                quoted.join(", "),
                interval.as_micros()
            )
        })
        .unwrap_or_default()
}

/// What node `index`'s IPv6 group ([`ClusterOptions::ipv6_vip`]) is made
/// of.
pub(super) struct Ipv6Group<'a> {
    pub(super) lab: &'a Lab,
    pub(super) index: usize,
    pub(super) nodes: usize,
    pub(super) advert_ms: u64,
    /// With the heartbeat, the group's `unicast_peers` are the other nodes'
    /// IPv6 addresses, and its heartbeats go over IPv6.
    pub(super) heartbeat: Option<Duration>,
}

/// The TOML appended to a node's configuration: `extra`, then the IPv6
/// group if there is one.
pub(super) fn with_ipv6_group(extra: &str, group: Option<Ipv6Group<'_>>) -> String {
    let Some(group) = group else {
        return extra.to_owned();
    };
    let peers: Vec<String> = other_nodes(group.nodes, group.index)
        .map(|n| bare(&group.lab.v6(n)).to_owned())
        .collect();
    let heartbeat = heartbeat_keys(group.heartbeat, &peers);
    format!(
        "{extra}\n[[group]]\nname = \"{name}\"\nvrid = 52\ninterface = \"eth0\"\nvips = [\"{vip}\"]\n\
         election = \"vrrp\"\npriority = {priority}\nadvert_interval = \"{advert_ms}ms\"\n{heartbeat}",
        name = Cluster::VIP6_GROUP,
        vip = group.lab.v6(VIP),
        priority = node_priority(group.index),
        advert_ms = group.advert_ms,
    )
}

/// The nat service on the IPv6 VIP, in front of the PgBouncers' IPv6
/// addresses (`backends` lines).
pub(super) fn service6(lab: &Lab, backends: &str) -> String {
    format!(
        "\n[[service]]\nname = \"pgbouncer6\"\nvip = \"{vip}\"\nport = {VIP_PORT}\nmode = \"nat\"\nbackends = [\n{backends}]\n",
        vip = bare(&lab.v6(VIP)),
    )
}

/// The configuration file of one lab node: one group holding the VIP, one
/// nat service in front of the PgBouncers.
pub(super) fn node_config(node: &NodeConfig<'_>) -> String {
    let health = node
        .health
        .map(|body| format!("\n[service.health]\n{body}\n"))
        .unwrap_or_default();
    let peers: Vec<String> = node.peers.iter().map(ToString::to_string).collect();
    let heartbeat = heartbeat_keys(node.heartbeat, &peers);
    format!(
        "# Generated by the vipx lab.\n\
         [node]\nname = \"{name}\"\nstate_file = \"{state_file}\"\n\n\
         [dataplane]\ninterfaces = [\"eth0\"]\nxdp_mode = \"auto\"\npin_path = \"{pin_path}\"\n\n\
         [api]\nlisten = \"0.0.0.0:{API_PORT}\"\n\n\
         [[group]]\nname = \"pg\"\nvrid = 51\ninterface = \"eth0\"\nvips = [\"{vip}\"]\nstate = \"{state}\"\n\
         election = \"vrrp\"\npriority = {priority}\nadvert_interval = \"{advert_ms}ms\"\n{heartbeat}{group}\n\n\
         [[service]]\nname = \"pgbouncer\"\nvip = \"{vip_addr}\"\nport = {VIP_PORT}\nmode = \"{mode}\"\nbackends = [\n{backends}]\n{health}\n{extra}{sync}",
        name = node.name,
        pin_path = node.pin_path.display(),
        state_file = node.state_file.display(),
        vip = node.vip,
        vip_addr = node.vip.split('/').next().unwrap_or(node.vip),
        mode = node.mode,
        backends = node.backends,
        state = if node.master { "master" } else { "backup" },
        priority = node.priority,
        extra = node.extra,
        group = node.group,
        advert_ms = node.advert_ms,
        sync = node.sync.as_deref().unwrap_or_default(),
    )
}
