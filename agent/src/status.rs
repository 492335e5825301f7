//! What the running agent reports about itself (`GET /api/v1/status`) and
//! how `vipx-agent status` prints it.

use std::{fmt::Write as _, net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::dataplane::{AttachedMode, CounterSnapshot};

/// The agent's view of itself.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub node: String,
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
}

/// One service and its backends.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServiceStatus {
    pub name: String,
    pub vip: String,
    pub mode: String,
    pub packets: u64,
    pub backends: Vec<String>,
}

impl ServiceStatus {
    pub fn new(
        spec: &crate::dataplane::ServiceSpec,
        counter: Option<vipx_common::Counter>,
    ) -> Self {
        Self {
            name: spec.name.clone(),
            vip: std::net::SocketAddr::new(spec.vip, spec.port).to_string(),
            mode: spec.mode.to_string(),
            packets: counter.map_or(0, |c| c.packets),
            backends: spec
                .backends
                .iter()
                .map(|b| {
                    format!(
                        "{} weight {}",
                        std::net::SocketAddr::new(b.addr, b.port),
                        b.weight
                    )
                })
                .collect(),
        }
    }
}

/// One interface with the XDP program.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct XdpAttachment {
    pub interface: String,
    pub mode: String,
}

/// One XDP counter slot, summed over CPUs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NamedCounter {
    /// `action` or `reason`.
    pub kind: String,
    pub name: String,
    pub packets: u64,
    pub bytes: u64,
}

impl XdpAttachment {
    pub fn new(interface: &str, mode: AttachedMode) -> Self {
        Self {
            interface: interface.to_owned(),
            mode: mode.to_string(),
        }
    }
}

/// Flattens a counter snapshot for the status report.
pub fn named_counters(snapshot: &CounterSnapshot) -> Vec<NamedCounter> {
    let entry = |kind: &str, (name, c): (&str, vipx_common::Counter)| NamedCounter {
        kind: kind.to_owned(),
        name: name.to_owned(),
        packets: c.packets,
        bytes: c.bytes,
    };
    snapshot
        .named_actions()
        .map(|pair| entry("action", pair))
        .chain(snapshot.named_reasons().map(|pair| entry("reason", pair)))
        .collect()
}

/// The API URL of an agent listening on `listen` (a wildcard address is
/// reached through loopback).
pub fn api_url(listen: SocketAddr) -> String {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}")
}

/// Asks a running agent for its status.
pub async fn fetch(base_url: &str) -> anyhow::Result<Status> {
    use anyhow::Context as _;
    let url = format!("{}/api/v1/status", base_url.trim_end_matches('/'));
    let response = client()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("no agent answers at {url}"))?
        .error_for_status()?;
    response
        .json()
        .await
        .with_context(|| format!("{url} did not return a status"))
}

/// Asks a running agent to drain (or undrain) a backend.
pub async fn drain(
    base_url: &str,
    backend: std::net::SocketAddr,
    drain: bool,
) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let url = format!("{}/api/v1/drain", base_url.trim_end_matches('/'));
    let response = client()?
        .post(&url)
        .json(&crate::api::DrainRequest { backend, drain })
        .send()
        .await
        .with_context(|| format!("no agent answers at {url}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("{url}: {status}: {body}");
    }
    Ok(body)
}

/// A running agent's event timeline.
pub async fn events(base_url: &str) -> anyhow::Result<Vec<crate::events::Event>> {
    use anyhow::Context as _;
    let url = format!("{}/api/v1/events", base_url.trim_end_matches('/'));
    client()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("no agent answers at {url}"))?
        .error_for_status()?
        .json()
        .await
        .with_context(|| format!("{url} did not return events"))
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?)
}

/// The human-readable form printed by `vipx-agent status`.
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let uptime = status.uptime_seconds;
    let _ = writeln!(
        out,
        "node       {} (vipx-agent {})",
        status.node, status.version
    );
    let _ = writeln!(
        out,
        "uptime     {}h{:02}m{:02}s",
        uptime / 3600,
        uptime / 60 % 60,
        uptime % 60
    );
    let _ = writeln!(out, "config     {}", status.config_path);
    let _ = writeln!(
        out,
        "ha debug   {}",
        if status.ha_debug {
            "on (host changes are logged, not made)"
        } else {
            "off"
        }
    );
    if status.xdp.is_empty() {
        let _ = writeln!(out, "xdp        not attached");
    }
    for attachment in &status.xdp {
        let _ = writeln!(
            out,
            "xdp        {} ({} mode)",
            attachment.interface, attachment.mode
        );
    }
    for group in &status.groups {
        let _ = writeln!(
            out,
            "group      {} (vrid {}, priority {}): {} {}",
            group.name,
            group.vrid,
            group.priority,
            match (group.master, group.fault) {
                (_, true) => "FAULT",
                (true, false) => "MASTER",
                (false, false) => "BACKUP",
            },
            group.vips.join(", ")
        );
    }
    for service in &status.services {
        let _ = writeln!(
            out,
            "service    {} {} ({}), {} packets -> {}",
            service.name,
            service.vip,
            service.mode,
            service.packets,
            service.backends.join(", ")
        );
    }
    for counter in status.counters.iter().filter(|c| c.packets > 0) {
        let _ = writeln!(
            out,
            "{:<10} {:<14} {:>12} packets {:>14} bytes",
            counter.kind, counter.name, counter.packets, counter.bytes
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_is_reached_through_loopback() {
        assert_eq!(
            api_url("0.0.0.0:9469".parse().unwrap()),
            "http://127.0.0.1:9469"
        );
        assert_eq!(api_url("[::]:9469".parse().unwrap()), "http://[::1]:9469");
        assert_eq!(
            api_url("10.1.2.3:80".parse().unwrap()),
            "http://10.1.2.3:80"
        );
    }

    #[test]
    fn render_shows_attachments_and_moving_counters() {
        let status = Status {
            node: "lb-1".into(),
            version: "0.1.0".into(),
            ha_debug: false,
            uptime_seconds: 3723,
            config_path: "/etc/vipx/vipx.toml".into(),
            xdp: vec![XdpAttachment::new("eth0", AttachedMode::Driver)],
            groups: vec![GroupStatus {
                name: "pg".into(),
                vrid: 51,
                master: true,
                vips: vec!["10.0.0.100/24".into()],
                priority: 100,
                fault: false,
            }],
            services: Vec::new(),
            counters: vec![
                NamedCounter {
                    kind: "action".into(),
                    name: "pass".into(),
                    packets: 5,
                    bytes: 300,
                },
                NamedCounter {
                    kind: "action".into(),
                    name: "drop".into(),
                    packets: 0,
                    bytes: 0,
                },
            ],
        };
        let text = render(&status);
        assert!(text.contains("uptime     1h02m03s"), "{text}");
        assert!(text.contains("eth0 (driver mode)"), "{text}");
        assert!(
            text.contains("group      pg (vrid 51, priority 100): MASTER 10.0.0.100/24"),
            "{text}"
        );
        assert!(text.contains("pass"), "{text}");
        assert!(
            !text.contains("drop"),
            "idle counters are not listed: {text}"
        );
    }
}
