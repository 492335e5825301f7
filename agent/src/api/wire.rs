//! What the API sends and receives, as JSON: the status report
//! (`GET /api/v1/status`) and the drain request (`POST /api/v1/drain`).
//! The events (`GET /api/v1/events`) are [`crate::events::Event`]s.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::dataplane::{AttachedMode, Mode};

/// The agent's view of itself.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub node: String,
    /// The agent's wall clock when it answered, ms since the Unix epoch
    /// (what `since_unix_ms` and `last_heard_ms` are relative to).
    #[serde(default)]
    pub now_unix_ms: u64,
    pub version: String,
    pub ha_debug: bool,
    pub uptime_seconds: u64,
    pub config_path: String,
    pub xdp: Vec<XdpAttachment>,
    #[serde(default)]
    pub groups: Vec<GroupStatus>,
    #[serde(default)]
    pub services: Vec<ServiceStatus>,
    pub counters: Vec<NamedCounter>,
    /// The cluster as this node sees it (with `[cluster] members`).
    #[serde(default)]
    pub cluster: Option<crate::cluster::wire::NodesReport>,
}

impl Status {
    /// Who is MASTER of `group`: this node, or the peer heard most recently
    /// saying so.
    pub fn master_of(&self, group: &GroupStatus) -> String {
        if group.master {
            return format!("{} (this node)", self.node);
        }
        group
            .peers
            .iter()
            .filter(|p| p.state == "MASTER")
            .min_by_key(|p| p.last_heard_ms)
            .map_or("unknown".to_owned(), |p| p.address.to_string())
    }

    /// The time since `at` (ms since the Unix epoch) as a [`span`], `-`
    /// for none.
    pub fn since(&self, at: Option<u64>) -> String {
        at.map_or("-".to_owned(), |at| {
            span(self.now_unix_ms.saturating_sub(at))
        })
    }
}

/// One VIP group.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GroupStatus {
    pub name: String,
    pub vrid: u8,
    pub master: bool,
    pub vips: Vec<String>,
    /// Election priority after tracked items.
    #[serde(default)]
    pub priority: u8,
    /// A tracked weight-0 item failed.
    #[serde(default)]
    pub fault: bool,
    /// Handed over by hand (`vipx-agent handover`): BACKUP at priority 1
    /// until undone or until its time (`until_unix_ms`).
    #[serde(default)]
    pub handed_over: Option<crate::operator::Hold>,
    /// MASTER, BACKUP or FAULT.
    #[serde(default)]
    pub state: String,
    /// When the group entered its state (ms since the Unix epoch), if the
    /// timeline still holds it.
    #[serde(default)]
    pub since_unix_ms: Option<u64>,
    /// The peers XDP recorded adverts or heartbeats from.
    #[serde(default)]
    pub peers: Vec<PeerStatus>,
}

/// One peer of a group, from the XDP program's records of the last advert
/// or heartbeat it sent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerStatus {
    pub address: std::net::IpAddr,
    /// `vrrp` (adverts) or `heartbeat`.
    pub kind: String,
    /// What it says of itself: MASTER, BACKUP, STOPPING (heartbeats); an
    /// advert comes from a MASTER, RELEASED when its priority is 0.
    pub state: String,
    pub priority: u8,
    /// How long ago its last packet arrived, in milliseconds.
    pub last_heard_ms: u64,
    /// Packets recorded from it.
    pub packets: u64,
}

/// One service and its backends.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServiceStatus {
    pub name: String,
    pub vip: SocketAddr,
    pub mode: Mode,
    pub packets: u64,
    pub backends: Vec<BackendStatus>,
}

/// One backend of a service, as the data plane has it now.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackendStatus {
    pub address: SocketAddr,
    /// Its weight in the Maglev table (0: no new flows).
    pub weight: u32,
    /// up, degraded or down; `None` when the service has no health check.
    #[serde(default)]
    pub health: Option<String>,
    /// An operator drained it.
    #[serde(default)]
    pub drained: bool,
    /// Its flows in the flow table (at the flow collector's last run).
    #[serde(default)]
    pub flows: u64,
    /// Packets forwarded to or from it.
    #[serde(default)]
    pub packets: u64,
    /// Its last change of health or drain (ms since the Unix epoch), if
    /// the timeline holds one.
    #[serde(default)]
    pub last_change_unix_ms: Option<u64>,
}

impl std::fmt::Display for BackendStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} weight {}", self.address, self.weight)
    }
}

/// One interface with the XDP program.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct XdpAttachment {
    pub interface: String,
    pub mode: AttachedMode,
}

/// Which counter map a [`NamedCounter`] comes from.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CounterKind {
    /// By the XDP action returned.
    Action,
    /// By the reason of the decision.
    Reason,
}

impl std::fmt::Display for CounterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Action => "action",
            Self::Reason => "reason",
        })
    }
}

/// One XDP counter slot, summed over CPUs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NamedCounter {
    pub kind: CounterKind,
    pub name: String,
    pub packets: u64,
    pub bytes: u64,
}

/// A duration in milliseconds, as `1h02m03s`, `2m05s` or `4.2s`.
pub fn span(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..60 => format!("{:.1}s", ms as f64 / 1000.0),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m{:02}s", secs / 3600, secs / 60 % 60, secs % 60),
    }
}

/// `POST /api/v1/drain`: `{"backend": "10.0.0.31:6432", "drain": true}`.
#[derive(Debug, Deserialize, Serialize)]
pub struct DrainRequest {
    pub backend: SocketAddr,
    #[serde(default = "yes")]
    pub drain: bool,
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_fields_keep_the_json_the_api_has_always_served() {
        let service = ServiceStatus {
            name: "pg".into(),
            vip: "10.0.0.100:5432".parse().expect("addr"),
            mode: Mode::Nat,
            packets: 3,
            backends: vec![BackendStatus {
                address: "10.0.0.31:6432".parse().expect("addr"),
                weight: 100,
                health: Some("up".into()),
                drained: false,
                flows: 2,
                packets: 9,
                last_change_unix_ms: None,
            }],
        };
        let json = serde_json::to_value(&service).expect("serialise");
        assert_eq!(json["vip"], "10.0.0.100:5432", "{json}");
        assert_eq!(json["mode"], "nat", "{json}");
        assert_eq!(json["backends"][0]["address"], "10.0.0.31:6432", "{json}");
        assert_eq!(json["backends"][0]["weight"], 100, "{json}");
        assert_eq!(service.backends[0].to_string(), "10.0.0.31:6432 weight 100");
        let xdp = XdpAttachment {
            interface: "eth0".into(),
            mode: AttachedMode::Generic,
        };
        assert_eq!(
            serde_json::to_value(&xdp).expect("serialise")["mode"],
            "generic"
        );
        let counter = NamedCounter {
            kind: CounterKind::Reason,
            name: "no_neigh".into(),
            packets: 1,
            bytes: 60,
        };
        let json = serde_json::to_value(&counter).expect("serialise");
        assert_eq!(json["kind"], "reason", "{json}");
        let back: NamedCounter = serde_json::from_value(json).expect("decode");
        assert_eq!(back, counter);
    }

    #[test]
    fn a_drain_request_drains_unless_told_otherwise() {
        let request: DrainRequest =
            serde_json::from_str(r#"{"backend":"10.0.0.31:6432"}"#).expect("decode");
        assert!(request.drain, "drain defaults to true");
    }
}
