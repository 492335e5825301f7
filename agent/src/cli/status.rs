//! How `vipx-agent status` prints the status report.

use std::fmt::Write as _;

use crate::api::wire::Status;

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
            "group      {} (vrid {}, priority {}): {} {}{}",
            group.name,
            group.vrid,
            group.priority,
            match (group.master, group.fault) {
                (_, true) => "FAULT",
                (true, false) => "MASTER",
                (false, false) => "BACKUP",
            },
            group.vips.join(", "),
            if group.handed_over.is_some() {
                " (handed over by hand)"
            } else {
                ""
            }
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
            service
                .backends
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
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
    use crate::{
        api::wire::{CounterKind, GroupStatus, NamedCounter, XdpAttachment},
        dataplane::AttachedMode,
    };

    #[test]
    fn render_shows_attachments_and_moving_counters() {
        let status = Status {
            node: "lb-1".into(),
            version: "0.1.0".into(),
            ha_debug: false,
            uptime_seconds: 3723,
            config_path: "/etc/vipx/vipx.toml".into(),
            xdp: vec![XdpAttachment {
                interface: "eth0".into(),
                mode: AttachedMode::Driver,
            }],
            groups: vec![GroupStatus {
                name: "pg".into(),
                vrid: 51,
                master: true,
                vips: vec!["10.0.0.100/24".into()],
                priority: 100,
                fault: false,
                handed_over: None,
            }],
            services: Vec::new(),
            counters: vec![
                NamedCounter {
                    kind: CounterKind::Action,
                    name: "pass".into(),
                    packets: 5,
                    bytes: 300,
                },
                NamedCounter {
                    kind: CounterKind::Action,
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
