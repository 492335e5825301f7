//! The report of `lab_single_owner`: what the observers and the agents'
//! logs saw around node 0's claim, printed, and the findings the test
//! asserts on.

use std::net::Ipv4Addr;

use vipx_lab::Cluster;
use vipx_lab::arp::{ArpKind, ArpLog, Mac};
use vipx_lab::capture::CaptureLog;
use vipx_lab::probe::Probe;
use vipx_lab::walltime::WallTime;

use super::{IN_FLIGHT, LOG_WINDOW, PRINTED_LINES};

/// What the scenario knows for its report.
pub(super) struct Ctx {
    /// When node 0's agent was started again.
    pub(super) returned: WallTime,
    /// When node 0's agent logged the VIP added.
    pub(super) claim: WallTime,
    pub(super) macs: [Mac; 2],
}

/// Phases after the return, from the agents' logs.
#[derive(Clone, Copy)]
pub(super) struct Phases {
    /// When node 0's agent removed the VIP its predecessor left (kill -9).
    pub(super) stale_removed: Option<WallTime>,
    /// When node 1's agent first removed the VIP after the return.
    pub(super) released: Option<WallTime>,
}

impl Phases {
    /// The phase of an instant: `stale` before node 0's agent removed a
    /// stale VIP, `handover` until node 1 released the VIP, `retaken` after.
    pub(super) fn of(self, at: WallTime) -> &'static str {
        if self.stale_removed.is_some_and(|removed| at < removed) {
            "stale"
        } else if self.released.is_none_or(|released| at <= released) {
            "handover"
        } else {
            "retaken"
        }
    }
}

/// What the ARP report found.
pub(super) struct ArpFindings {
    /// Requests answered by both nodes, described.
    pub(super) doubly_answered: Vec<String>,
    /// The answering MACs in turn (consecutive answers of one MAC merged).
    pub(super) runs: Vec<Mac>,
}

/// What the traffic report found.
pub(super) struct Late {
    /// Node 0's first VIP frame after it returned.
    pub(super) first0: Option<WallTime>,
    /// Node 1's VIP frames later than `first0` + [`IN_FLIGHT`].
    pub(super) late1: Vec<String>,
}

impl Ctx {
    pub(super) fn rel(&self, at: WallTime) -> i64 {
        at.micros_since(self.claim)
    }

    pub(super) fn node(&self, mac: Mac) -> String {
        match self.macs.iter().position(|m| *m == mac) {
            Some(i) => format!("node {i}"),
            None => format!("stranger {mac}"),
        }
    }

    /// The agents' log lines from [`LOG_WINDOW`] before the claim on,
    /// stamped in µs from it (but netlink's notes on unknown attributes).
    pub(super) fn report_logs(&self, logs: &[Vec<(WallTime, String)>; 2]) {
        let window = i64::try_from(LOG_WINDOW.as_micros()).unwrap_or(i64::MAX);
        for (i, lines) in logs.iter().enumerate() {
            for (at, line) in lines {
                let rel = self.rel(*at);
                if rel >= -window && !line.contains("netlink_packet_route") {
                    let text = line.split_once(' ').map_or(line.as_str(), |(_, rest)| rest);
                    println!("log node {i} {rel:+}: {}", text.trim());
                }
            }
        }
    }

    /// The agents' VIP log lines, and what they say about the phases.
    pub(super) fn report_events(&self, events: &[Vec<VipEvent>; 2]) -> Phases {
        for (i, node_events) in events.iter().enumerate() {
            for e in node_events {
                let what = if e.added { "added" } else { "removed" };
                println!("agent log: node {i} {what} the VIP at {:+}", self.rel(e.at));
            }
        }
        println!(
            "node 0's agent was started at {:+}",
            self.rel(self.returned)
        );
        let stale_removed = events[0].first().filter(|e| !e.added).map(|e| e.at);
        let released = events[1].iter().find(|e| !e.added).map(|e| e.at);
        if let Some(released) = released {
            println!(
                "both agents held the VIP for {} µs (node 1's removal - node 0's addition, log stamps)",
                released.micros_since(self.claim)
            );
        }
        Phases {
            stale_removed,
            released,
        }
    }

    /// Node 0's adverts as node 1 received them: the first after the return
    /// and the longest silence that ended after the claim.
    pub(super) fn report_adverts(&self, adverts: &CaptureLog) {
        let after: Vec<WallTime> = adverts
            .packets
            .iter()
            .map(|p| p.at)
            .filter(|at| *at >= self.returned)
            .collect();
        let longest = after
            .windows(2)
            .filter(|w| w[1] >= self.claim)
            .max_by_key(|w| w[1].micros_since(w[0]));
        println!(
            "adverts: node 1 received {} of node 0's adverts, the first at {}{}",
            after.len(),
            after
                .first()
                .map_or_else(|| "-".into(), |at| format!("{:+}", self.rel(*at))),
            longest.map_or_else(String::new, |w| format!(
                "; the longest silence ending after the claim: {} µs from {:+}",
                w[1].micros_since(w[0]),
                self.rel(w[0])
            ))
        );
    }

    pub(super) fn report_probes(&self, probes: &[Probe]) {
        let failed: Vec<i64> = probes
            .iter()
            .filter(|p| !p.ok)
            .map(|p| self.rel(p.at))
            .collect();
        println!(
            "client: {} connections through the VIP, {} failed{}",
            probes.len(),
            failed.len(),
            match (failed.first(), failed.last()) {
                (Some(a), Some(b)) => format!(" (started {a:+} .. {b:+})"),
                _ => String::new(),
            }
        );
    }

    pub(super) fn report_arp(&self, arp: &ArpLog, phases: Phases) -> ArpFindings {
        println!(
            "ARP: {} requests, {} answers, {} other ARP frames",
            arp.requests.len(),
            arp.answers().count(),
            arp.ignored
        );
        let announcements: Vec<String> = arp
            .seen
            .iter()
            .filter(|s| s.kind == ArpKind::Gratuitous && s.at >= self.returned)
            .map(|g| {
                format!(
                    "ARP: gratuitous from {} at {:+}",
                    self.node(g.mac),
                    self.rel(g.at)
                )
            })
            .collect();
        println!("{}", shorten(&announcements, PRINTED_LINES));
        let runs = arp.answer_runs(self.returned);
        let lines: Vec<String> = runs
            .iter()
            .map(|run| {
                format!(
                    "ARP: {} answered {} times, {:+} .. {:+}",
                    self.node(run.mac),
                    run.count,
                    self.rel(run.first),
                    self.rel(run.last)
                )
            })
            .collect();
        println!("{}", shorten(&lines, PRINTED_LINES));
        let last1 = arp
            .answers()
            .filter(|a| a.mac == self.macs[1] && a.at >= self.returned)
            .map(|a| a.at)
            .max();
        let first0 = arp
            .answers()
            .filter(|a| a.mac == self.macs[0] && a.at >= self.returned)
            .filter(|a| phases.stale_removed.is_none_or(|removed| a.at > removed))
            .map(|a| a.at)
            .min();
        if let (Some(last1), Some(first0)) = (last1, first0) {
            println!(
                "ARP overlap: node 1's last answer - node 0's first (claimed) answer = {} µs",
                last1.micros_since(first0)
            );
        }
        let doubly_answered = arp
            .answering_macs(self.returned)
            .into_iter()
            .filter(|(_, macs)| macs.len() > 1)
            .map(|(request, macs)| {
                let sent = arp.requests[request];
                let who: Vec<String> = macs.iter().map(|m| self.node(*m)).collect();
                let phase = phases.of(sent);
                format!(
                    "  request {:+}: {} ({phase})",
                    self.rel(sent),
                    who.join(", ")
                )
            })
            .collect::<Vec<_>>();
        let count = |phase: &str| {
            doubly_answered
                .iter()
                .filter(|l| l.ends_with(&format!("({phase})")))
                .count()
        };
        println!(
            "ARP: {} requests answered by two MACs: {} stale, {} handover, {} retaken",
            doubly_answered.len(),
            count("stale"),
            count("handover"),
            count("retaken")
        );
        ArpFindings {
            doubly_answered,
            runs: runs.iter().map(|r| r.mac).collect(),
        }
    }

    pub(super) fn report_traffic(&self, traffic: &[CaptureLog; 2], vip: Ipv4Addr) -> Late {
        for (i, log) in traffic.iter().enumerate() {
            let after: Vec<_> = log
                .packets
                .iter()
                .filter(|p| p.dst == vip && p.at >= self.returned)
                .collect();
            let span = match (after.first(), after.last()) {
                (Some(a), Some(b)) => format!("{:+} .. {:+}", self.rel(a.at), self.rel(b.at)),
                _ => "none".into(),
            };
            println!(
                "traffic: node {i} ({}) received {} VIP frames ({} before the return), after it: {span}; dropped by the kernel: {:?}",
                log.host,
                after.len(),
                log.packets.len() - after.len(),
                log.dropped
            );
        }
        let first0 = traffic[0]
            .packets
            .iter()
            .filter(|p| p.at >= self.returned)
            .map(|p| p.at)
            .min();
        let last1 = traffic[1].packets.iter().map(|p| p.at).max();
        let Some(first0) = first0 else {
            return Late {
                first0: None,
                late1: Vec::new(),
            };
        };
        if let Some(last1) = last1 {
            println!(
                "traffic overlap: node 1's last VIP frame - node 0's first = {} µs (tolerance {} µs)",
                last1.micros_since(first0),
                IN_FLIGHT.as_micros()
            );
        }
        let limit = first0.plus(IN_FLIGHT);
        let late1 = traffic[1]
            .packets
            .iter()
            .filter(|p| p.at > limit)
            .map(|p| format!("  {} -> {} at {:+}", p.src, p.dst, self.rel(p.at)))
            .collect();
        Late {
            first0: Some(first0),
            late1,
        }
    }
}

/// At most `max` of `lines`: the first and last halves around a count of
/// those left out.
pub(super) fn shorten(lines: &[String], max: usize) -> String {
    if lines.len() <= max {
        return lines.join("\n");
    }
    let half = max / 2;
    format!(
        "{}\n  ... {} more ...\n{}",
        lines[..half].join("\n"),
        lines.len() - 2 * half,
        lines[lines.len() - half..].join("\n")
    )
}

/// A VIP added to or removed from `eth0`, as the agent logged it.
#[derive(Debug, Clone, Copy)]
pub(super) struct VipEvent {
    pub(super) at: WallTime,
    pub(super) added: bool,
}

/// Node `index`'s agent log lines about the VIP since `since`.
pub(super) fn vip_events(
    cluster: &Cluster,
    index: usize,
    vip: Ipv4Addr,
    since: WallTime,
) -> Vec<VipEvent> {
    let added = format!("added {vip}/");
    let removed = format!("removed {vip}/");
    cluster
        .agent_log(index)
        .into_iter()
        .filter_map(|(at, line)| {
            let added = if line.contains(&added) {
                true
            } else if line.contains(&removed) {
                false
            } else {
                return None;
            };
            (at >= since).then_some(VipEvent { at, added })
        })
        .collect()
}
