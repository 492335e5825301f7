//! How `vipx-agent status` prints the status report: the node, then one
//! row per group (state, time in state), per peer (state, priority, last
//! heard, from the XDP records), per backend (health, weight, drain,
//! flows, last change), and the XDP counters that moved.

use std::fmt::Write as _;

use crate::api::wire::Status;
pub use crate::api::wire::span;

/// The human-readable form printed by `vipx-agent status`.
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    header(&mut out, status);
    cluster(&mut out, status);
    groups(&mut out, status);
    backends(&mut out, status);
    for counter in status.counters.iter().filter(|c| c.packets > 0) {
        let _ = writeln!(
            out,
            "{:<10} {:<14} {:>12} packets {:>14} bytes",
            counter.kind, counter.name, counter.packets, counter.bytes
        );
    }
    out
}

/// "cluster    quorum held: 3 of 3 voters (n2 up, n3 up)".
fn cluster(out: &mut String, status: &Status) {
    let Some(cluster) = &status.cluster else {
        return;
    };
    let q = &cluster.quorum;
    let voters: Vec<String> = cluster
        .voters
        .iter()
        .skip(1)
        .map(|v| {
            let role = if v.role == "witness" {
                " (witness)"
            } else {
                ""
            };
            let up = if v.up { "up" } else { "DOWN" };
            format!("{}{role} {up}", v.name)
        })
        .collect();
    let _ = writeln!(
        out,
        "cluster    quorum {}: {} of {} voters ({})",
        if q.held { "held" } else { "LOST (no VIP here)" },
        q.seen,
        q.voters,
        voters.join(", ")
    );
}

fn header(out: &mut String, status: &Status) {
    let _ = writeln!(
        out,
        "node       {} (vipx-agent {})",
        status.node, status.version
    );
    let _ = writeln!(out, "uptime     {}", span(status.uptime_seconds * 1000));
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
}

fn groups(out: &mut String, status: &Status) {
    if status.groups.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n{:<16} {:>4} {:<8} {:>4} {:>10}  VIPS",
        "GROUP", "VRID", "STATE", "PRIO", "FOR"
    );
    for g in &status.groups {
        let since = status.since(g.since_unix_ms);
        let _ = writeln!(
            out,
            "{:<16} {:>4} {:<8} {:>4} {:>10}  {}{}",
            g.name,
            g.vrid,
            g.state,
            g.priority,
            since,
            g.vips.join(", "),
            if g.handed_over.is_some() {
                " (handed over by hand)"
            } else {
                ""
            }
        );
    }
    for g in &status.groups {
        let _ = writeln!(out, "master     {}: {}", g.name, status.master_of(g));
    }
    if status.groups.iter().all(|g| g.peers.is_empty()) {
        return;
    }
    let _ = writeln!(
        out,
        "\n{:<16} {:<40} {:<9} {:<8} {:>4} {:>12}",
        "PEER OF", "ADDRESS", "KIND", "STATE", "PRIO", "LAST HEARD"
    );
    for g in &status.groups {
        for p in &g.peers {
            let _ = writeln!(
                out,
                "{:<16} {:<40} {:<9} {:<8} {:>4} {:>12}",
                g.name,
                p.address,
                p.kind,
                p.state,
                p.priority,
                format!("{} ago", span(p.last_heard_ms))
            );
        }
    }
}

fn backends(out: &mut String, status: &Status) {
    for service in &status.services {
        let _ = writeln!(
            out,
            "\nservice    {} {} ({}), {} packets",
            service.name, service.vip, service.mode, service.packets
        );
        let _ = writeln!(
            out,
            "  {:<40} {:<9} {:>6} {:<7} {:>8} {:>12}  LAST CHANGE",
            "BACKEND", "HEALTH", "WEIGHT", "DRAIN", "FLOWS", "PACKETS"
        );
        for b in &service.backends {
            let changed = match b.last_change_unix_ms {
                Some(_) => format!("{} ago", status.since(b.last_change_unix_ms)),
                None => "-".to_owned(),
            };
            let _ = writeln!(
                out,
                "  {:<40} {:<9} {:>6} {:<7} {:>8} {:>12}  {changed}",
                b.address,
                b.health.as_deref().unwrap_or("unchecked"),
                b.weight,
                if b.drained { "drained" } else { "-" },
                b.flows,
                b.packets
            );
        }
    }
}

#[cfg(test)]
mod tests;
