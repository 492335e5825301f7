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
    /// How the group's MASTER is chosen: `vrrp` (default: VRRPv3 election
    /// with the other nodes) or `static` (the configured `state` holds).
    #[serde(default)]
    pub election: Election,
    /// VRRP advertisement interval, 10ms to 40.95s in whole centiseconds.
    #[serde(default = "default_advert_interval", with = "humantime_serde")]
    pub advert_interval: std::time::Duration,
    /// Whether a higher-priority backup takes over from a lower master.
    #[serde(default = "default_true")]
    pub preempt: bool,
    /// keepalived's `preempt_delay`.
    #[serde(default, with = "humantime_serde")]
    pub preempt_delay: std::time::Duration,
    /// Unicast peers (keepalived's `unicast_peer`); empty: multicast
    /// 224.0.0.18. Adverts from other sources are ignored when set.
    #[serde(default)]
    pub unicast_peers: Vec<std::net::IpAddr>,
    /// vipx's fast heartbeat between vipx peers (BFD-like): how often this
    /// node sends one to each of `unicast_peers`, from a real-time thread.
    /// Absent: off, VRRP alone detects a dead master. 1ms to 10s.
    #[serde(default, with = "humantime_serde::option")]
    pub heartbeat_interval: Option<std::time::Duration>,
    /// Heartbeats a backup may miss before it declares the master dead
    /// (BFD's detect multiplier). Every peer of a group must use the same
    /// interval and multiplier, as with `advert_interval`.
    #[serde(default = "default_heartbeat_multiplier")]
    pub heartbeat_multiplier: u8,
    /// Flap dampening: after a false takeover (the master declared lost
    /// turns out alive and this node steps back down within a second), the
    /// detection time doubles, up to 8 times, and halves again every
    /// `heartbeat_dampening` without another one. `0s`: off.
    #[serde(default = "default_heartbeat_dampening", with = "humantime_serde")]
    pub heartbeat_dampening: std::time::Duration,
    /// Gratuitous ARPs / unsolicited NAs sent per VIP on becoming MASTER
    /// (keepalived's `garp_master_repeat`).
    #[serde(default = "default_garp_repeat")]
    pub garp_repeat: u32,
    /// Time between them.
    #[serde(default = "default_garp_interval", with = "humantime_serde")]
    pub garp_interval: std::time::Duration,
    /// Announce again this often while MASTER (keepalived's
    /// `garp_master_refresh`); none by default.
    #[serde(default, with = "humantime_serde::option")]
    pub garp_refresh: Option<std::time::Duration>,
    /// Election priority, 1-255 (255: the address owner). keepalived's
    /// default is 100.
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// Interfaces whose failure lowers the priority (keepalived's
    /// `track_interface`).
    #[serde(default)]
    pub track_interface: Vec<TrackInterface>,
    /// Scripts whose result changes the priority (keepalived's
    /// `track_script`).
    #[serde(default)]
    pub track_script: Vec<TrackScript>,
    /// Services whose backends, all down by this node's checks, change the
    /// priority: weight 0 (the default) gives up MASTER, so a node that
    /// cannot reach its pool hands the VIP to one that can.
    #[serde(default)]
    pub track_service: Vec<TrackService>,
    /// keepalived's notify scripts: a command and its arguments, run when
    /// the group becomes MASTER, BACKUP or FAULT, and when the agent stops.
    /// Run in the background, one at a time per group and in the order of
    /// the changes, each ended after `notify_timeout`: a hook never holds
    /// up the election. This is how a VIP moves where gratuitous ARP does
    /// not (clouds: re-assign the address through the provider's API).
    #[serde(default)]
    pub notify_master: Option<Vec<String>>,
    #[serde(default)]
    pub notify_backup: Option<Vec<String>>,
    #[serde(default)]
    pub notify_fault: Option<Vec<String>>,
    #[serde(default)]
    pub notify_stop: Option<Vec<String>>,
    /// keepalived's generic `notify`: run on every change, after the
    /// state's own hook, with keepalived's arguments appended: `INSTANCE`,
    /// the group's name, the state (`MASTER`, `BACKUP`, `FAULT`, `STOP`)
    /// and the priority.
    #[serde(default)]
    pub notify: Option<Vec<String>>,
    /// How long a hook may run before it is killed (and counted as failed).
    #[serde(default = "default_notify_timeout", with = "humantime_serde")]
    pub notify_timeout: std::time::Duration,
}

fn default_notify_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(10)
}

/// `[[group.track_service]]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrackService {
    /// A `[[service]]` name.
    pub name: String,
    /// Added to the priority while every backend is down; 0: FAULT.
    #[serde(default)]
    pub weight: i32,
}

fn default_heartbeat_multiplier() -> u8 {
    3
}

fn default_heartbeat_dampening() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}

fn default_priority() -> u8 {
    100
}

fn default_garp_repeat() -> u32 {
    5
}

fn default_garp_interval() -> std::time::Duration {
    std::time::Duration::from_millis(10)
}

fn default_advert_interval() -> std::time::Duration {
    std::time::Duration::from_secs(1)
}

fn default_true() -> bool {
    true
}

/// How a group's MASTER is chosen.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Election {
    /// VRRPv3 (RFC 5798) with the other nodes.
    #[default]
    Vrrp,
    /// No election: the configured `state` holds.
    Static,
}

/// `[[group.track_interface]]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrackInterface {
    /// The interface.
    pub name: InterfaceName,
    /// Added to the priority while the interface is down (negative lowers
    /// it); 0 puts the group in FAULT (it gives up MASTER).
    #[serde(default)]
    pub weight: i32,
}

/// `[[group.track_script]]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrackScript {
    /// Name in logs and metrics.
    pub name: String,
    /// The command and its arguments; exit status 0 is success.
    pub command: Vec<String>,
    #[serde(default = "default_script_interval", with = "humantime_serde")]
    pub interval: std::time::Duration,
    #[serde(default = "default_script_timeout", with = "humantime_serde")]
    pub timeout: std::time::Duration,
    #[serde(default = "default_one")]
    pub rise: u32,
    #[serde(default = "default_one")]
    pub fall: u32,
    /// Negative: added to the priority while the script fails. Positive:
    /// added while it succeeds. 0: a failure puts the group in FAULT.
    #[serde(default)]
    pub weight: i32,
}

fn default_script_interval() -> std::time::Duration {
    std::time::Duration::from_secs(1)
}
fn default_script_timeout() -> std::time::Duration {
    std::time::Duration::from_millis(500)
}
fn default_one() -> u32 {
    1
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
    /// How the group's VIPs are announced on becoming MASTER.
    pub fn announce(&self) -> crate::vip::Announce {
        crate::vip::Announce {
            count: self.garp_repeat,
            interval: self.garp_interval,
            refresh: self.garp_refresh,
        }
    }

    /// Whether the group elects over IPv6: its VIPs' family (the
    /// configuration allows one per group, as keepalived runs one
    /// `vrrp_instance` per family; its unicast peers are of it too).
    pub fn ipv6(&self) -> bool {
        self.vips.first().is_some_and(|v| v.addr.is_ipv6())
    }

    /// The VIPs' addresses.
    pub fn vip_addrs(&self) -> Vec<IpAddr> {
        self.vips.iter().map(|v| v.addr).collect()
    }

    /// Whether the group holds `addr`.
    pub fn holds(&self, addr: IpAddr) -> bool {
        self.vips.iter().any(|vip| vip.addr == addr)
    }

    /// The heartbeat's detection time: `heartbeat_multiplier` intervals;
    /// `None` when the heartbeat is off.
    pub fn heartbeat_detect(&self) -> Option<std::time::Duration> {
        self.heartbeat_interval
            .map(|i| i * u32::from(self.heartbeat_multiplier))
    }

    fn check_heartbeat(&self, interval: std::time::Duration) -> Result<(), String> {
        let name = &self.name;
        if self.election != Election::Vrrp {
            return Err(format!(
                "group {name}: heartbeat_interval needs election = \"vrrp\" (the heartbeat speeds up its failure detection)"
            ));
        }
        if self.unicast_peers.is_empty() {
            return Err(format!(
                "group {name}: heartbeat_interval needs unicast_peers: heartbeats go to each peer, and only peers' are accepted"
            ));
        }
        if !(std::time::Duration::from_millis(1)..=std::time::Duration::from_secs(10))
            .contains(&interval)
        {
            return Err(format!(
                "group {name}: heartbeat_interval must be 1ms to 10s"
            ));
        }
        if self.heartbeat_multiplier == 0 {
            return Err(format!("group {name}: heartbeat_multiplier must be 1-255"));
        }
        if self.heartbeat_dampening > std::time::Duration::from_secs(3600) {
            return Err(format!(
                "group {name}: heartbeat_dampening must be 0s (off) to 1h"
            ));
        }
        Ok(())
    }

    /// VRRP runs over one address family per group (keepalived: one
    /// `vrrp_instance` per family), the VIPs': the unicast peers must be of
    /// it too, and IPv6 ones all link-local or all global (the adverts' source
    /// follows them).
    fn check_vrrp_family(&self) -> Result<(), String> {
        let name = &self.name;
        let ipv6 = self.ipv6();
        let family = |v6: bool| if v6 { "IPv6" } else { "IPv4" };
        if let Some(other) = self.vips.iter().find(|v| v.addr.is_ipv6() != ipv6) {
            return Err(format!(
                "group {name}: VIP {other} is {} but {} is {}: VRRP elects over one address family per group, put each family's VIPs in a group of its own",
                family(!ipv6),
                self.vips[0],
                family(ipv6)
            ));
        }
        if let Some(peer) = self.unicast_peers.iter().find(|p| p.is_ipv6() != ipv6) {
            return Err(format!(
                "group {name}: unicast peer {peer} is {} but the group's VIPs are {}: VRRP runs over the VIPs' family",
                family(!ipv6),
                family(ipv6)
            ));
        }
        let link_local = |p: &IpAddr| matches!(p, IpAddr::V6(v6) if v6.is_unicast_link_local());
        if ipv6
            && self.unicast_peers.iter().any(link_local)
            && !self.unicast_peers.iter().all(link_local)
        {
            return Err(format!(
                "group {name}: unicast_peers mixes link-local and global IPv6 addresses: adverts go from the link-local address to link-local peers and from a global one to global peers"
            ));
        }
        Ok(())
    }

    /// The notify hooks that are set, with their keys.
    pub fn notify_hooks(&self) -> impl Iterator<Item = (&'static str, &Vec<String>)> {
        [
            ("notify_master", &self.notify_master),
            ("notify_backup", &self.notify_backup),
            ("notify_fault", &self.notify_fault),
            ("notify_stop", &self.notify_stop),
            ("notify", &self.notify),
        ]
        .into_iter()
        .filter_map(|(key, hook)| Some((key, hook.as_ref()?)))
    }

    pub(super) fn check(&self) -> Result<(), String> {
        if self.vrid == 0 {
            return Err(format!("group {}: vrid must be 1-255", self.name));
        }
        if self.vips.is_empty() {
            return Err(format!("group {}: at least one VIP is needed", self.name));
        }
        if self.priority == 0 {
            return Err(format!("group {}: priority must be 1-255", self.name));
        }
        if self.garp_repeat == 0 || self.garp_refresh.is_some_and(|r| r.is_zero()) {
            return Err(format!(
                "group {}: garp_repeat must be at least 1 and garp_refresh non-zero",
                self.name
            ));
        }
        let ms = self.advert_interval.as_millis();
        if !(10..=40_950).contains(&ms)
            || !ms.is_multiple_of(10)
            || !self
                .advert_interval
                .subsec_nanos()
                .is_multiple_of(1_000_000)
        {
            return Err(format!(
                "group {}: advert_interval must be 10ms to 40.95s in whole centiseconds",
                self.name
            ));
        }
        if self.election == Election::Vrrp {
            self.check_vrrp_family()?;
            // One advert carries every VIP: its count is one byte, and it
            // must fit a 1500-byte frame (RFC 5798 section 5.2.5).
            let (most, family) = if self.ipv6() {
                (90, "IPv6")
            } else {
                (255, "IPv4")
            };
            if self.vips.len() > most {
                return Err(format!(
                    "group {}: {} VIPs, at most {most} {family} VIPs per vrrp group (one advert carries them all): split them into groups",
                    self.name,
                    self.vips.len()
                ));
            }
        }
        if let Some(interval) = self.heartbeat_interval {
            self.check_heartbeat(interval)?;
        }
        for track in &self.track_interface {
            if !(-253..=253).contains(&track.weight) {
                return Err(format!(
                    "group {}: track_interface {}: weight must be -253..253",
                    self.name, track.name
                ));
            }
        }
        for track in &self.track_service {
            if !(-253..=253).contains(&track.weight) {
                return Err(format!(
                    "group {}: track_service {}: weight must be -253..253",
                    self.name, track.name
                ));
            }
        }
        for (key, hook) in self.notify_hooks() {
            if hook.is_empty() || hook[0].is_empty() {
                return Err(format!(
                    "group {}: {key}: give the command and its arguments, as [\"/path/to/script\", \"arg\"]",
                    self.name
                ));
            }
        }
        if self.notify_timeout.is_zero() {
            return Err(format!(
                "group {}: notify_timeout must be non-zero",
                self.name
            ));
        }
        for script in &self.track_script {
            if script.command.is_empty() {
                return Err(format!(
                    "group {}: track_script {}: `command` is empty",
                    self.name, script.name
                ));
            }
            if !(-253..=253).contains(&script.weight) {
                return Err(format!(
                    "group {}: track_script {}: weight must be -253..253",
                    self.name, script.name
                ));
            }
            if script.rise == 0
                || script.fall == 0
                || script.timeout.is_zero()
                || script.interval.is_zero()
            {
                return Err(format!(
                    "group {}: track_script {}: rise, fall, interval and timeout must be non-zero",
                    self.name, script.name
                ));
            }
        }
        Ok(())
    }
}
