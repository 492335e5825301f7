//! Invariant 1, one owner of the VIP: watched from outside the agents for
//! each fault, from before it starts until the cluster has settled.
//!
//! - ARP: the client asks "who has the VIP?" every [`ARP_INTERVAL`]
//!   ([`vipx_lab::arp`]); a request answered by two nodes is doubly
//!   answered.
//! - Traffic: tcpdump on each node's bridge port records the VIP's TCP
//!   frames the bridge delivers to it ([`vipx_lab::capture`]); with the
//!   frames of all nodes in time order, a switch is a frame delivered to
//!   another node than the frame before.
//!
//! A legitimate move shows a short burst of either (frames in flight, the
//! few milliseconds two nodes need to agree). Two owners show them for as
//! long as both answer: a request every 5 ms answered twice, the client's
//! and the backend's frames (some 500 a second) going to two nodes. So:
//! doubly answered requests, and switches, are chained while each follows
//! the one before within [`CHAIN_GAP`]; a chain longer than the bound from
//! first to last is a violation. (The moves of one fault, a takeover and
//! the return after a link flap, are further apart than CHAIN_GAP, and are
//! judged apart.)
//!
//! The bound: a backup takes over [`DETECTION`] after the MASTER goes
//! silent, but a MASTER whose agent hangs (SIGSTOP) or died (kill -9)
//! keeps answering (its pinned XDP serves, and answers ARP through its
//! kernel, which still holds the VIP) until its lease goes stale,
//! [`LEASE_TIMEOUT`] after the last refresh; XDP then drops the VIP's ARP
//! requests (`vip_fenced`) and traffic (`lease_stale`), even though the
//! kernel keeps the address until the agent returns and removes it. So two
//! nodes may answer for at most `LEASE_TIMEOUT - DETECTION`, and again for
//! the moment an agent that was continued (or a node whose cable is back)
//! needs to see the other MASTER: at most DETECTION. BOUND = DETECTION +
//! LEASE_TIMEOUT + [`SLACK`] covers both.
//!
//! A node whose cable comes back is heard only once the kernel has
//! processed the carrier's return (linkwatch, rate-limited to once a
//! second: up to [`LINK_RETURN`] in which the node receives, and its XDP
//! answers ARP with `XDP_TX`, but nothing it sends through the kernel,
//! adverts, heartbeats, gratuitous ARPs, leaves). The agent keeps or takes
//! MASTER with its link down, so after a link flap two MASTERs meet, and
//! the one that cannot yet be heard cannot make the other yield: link
//! flaps get [`BOUND`] + [`LINK_RETURN`].

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context as _, Result};
use vipx_lab::arp::{ArpLog, ArpObserver, Mac, ObserveOptions};
use vipx_lab::capture::{CaptureLog, PortCapture};
use vipx_lab::walltime::WallTime;
use vipx_lab::{Cluster, Host};

use super::faults::Kind;

/// The lab's fast heartbeat.
pub const HEARTBEAT: Duration = Duration::from_millis(2);
/// Heartbeats missed before a backup takes over.
pub const MULTIPLIER: u32 = 10;
/// How long a backup takes to see a silent MASTER.
pub const DETECTION: Duration = HEARTBEAT.saturating_mul(MULTIPLIER);
/// The agents' `lease_timeout` (the default; the lab's config leaves it).
pub const LEASE_TIMEOUT: Duration = Duration::from_millis(100);
/// Scheduling on two busy cores: a softirq, a heartbeat thread or tcpdump
/// late by this much.
pub const SLACK: Duration = Duration::from_millis(150);
/// The longest two nodes may answer for the VIP.
pub const BOUND: Duration = DETECTION
    .saturating_add(LEASE_TIMEOUT)
    .saturating_add(SLACK);
/// How long after its carrier returns a node may still be unable to send.
pub const LINK_RETURN: Duration = Duration::from_secs(1);

/// The bound of a fault of this kind.
pub fn bound(kind: Kind) -> Duration {
    match kind {
        Kind::LinkFlap => BOUND.saturating_add(LINK_RETURN),
        _ => BOUND,
    }
}

/// Double answers or switches this close belong to one episode.
pub const CHAIN_GAP: Duration = Duration::from_millis(50);
/// Time between two ARP requests of the observer.
const ARP_INTERVAL: Duration = Duration::from_millis(5);
/// An observer stops by itself after this long (a fault and its recovery
/// take well under a minute).
const OBSERVE_LIMIT: Duration = Duration::from_secs(180);

/// A time of chained double answers or switches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Episode {
    pub first: WallTime,
    pub last: WallTime,
    /// Doubly answered requests, or switches.
    pub count: usize,
    /// The nodes involved (indexes).
    pub nodes: Vec<usize>,
    /// Traffic: the frames each node received from each source meanwhile.
    pub sources: Vec<(usize, Ipv4Addr, usize)>,
}

impl Episode {
    pub fn span(&self) -> Duration {
        Duration::from_micros(u64::try_from(self.last.micros_since(self.first)).unwrap_or(0))
    }
}

/// What one window saw.
pub struct Findings {
    /// When the observers started.
    pub started: WallTime,
    pub requests: usize,
    pub arp: Vec<Episode>,
    pub frames: usize,
    pub traffic: Vec<Episode>,
}

/// The observers of one fault.
pub struct Watch {
    arp: ArpObserver,
    captures: Vec<PortCapture>,
    macs: Vec<Mac>,
    vip: Ipv4Addr,
    started: WallTime,
}

impl Watch {
    pub fn start(cluster: &Cluster) -> Result<Self> {
        let vip = cluster.vip();
        let filter = format!("dst host {vip} and tcp");
        let captures = cluster
            .nodes
            .iter()
            .map(|n| PortCapture::start(&n.host, "chaos", &filter))
            .collect::<Result<Vec<_>>>()?;
        let macs = cluster
            .nodes
            .iter()
            .map(|n| mac_of(&n.host))
            .collect::<Result<Vec<_>>>()?;
        let arp = ArpObserver::start(
            &cluster.client,
            vip,
            ObserveOptions {
                interval: ARP_INTERVAL,
                limit: OBSERVE_LIMIT,
            },
        )?;
        Ok(Self {
            arp,
            captures,
            macs,
            vip,
            started: WallTime::now(),
        })
    }

    /// Stops the observers and reads what they saw.
    pub fn finish(self) -> Result<Findings> {
        let arp = self.arp.finish().context("the ARP observer")?;
        let logs = self
            .captures
            .into_iter()
            .map(PortCapture::finish)
            .collect::<Result<Vec<_>>>()
            .context("tcpdump on the nodes' ports")?;
        let arp_episodes = arp_episodes(&arp, &self.macs, CHAIN_GAP);
        let frames = merged_frames(&logs, self.vip);
        let mut traffic = switch_episodes(&frames, CHAIN_GAP);
        for e in &mut traffic {
            e.sources = sources(&logs, self.vip, e.first, e.last);
        }
        Ok(Findings {
            started: self.started,
            requests: arp.requests.len(),
            arp: arp_episodes,
            frames: frames.len(),
            traffic,
        })
    }
}

fn mac_of(host: &Host) -> Result<Mac> {
    host.mac().parse()
}

/// The VIP frames of every node's capture, as (time, node), in time order.
fn merged_frames(logs: &[CaptureLog], vip: Ipv4Addr) -> Vec<(WallTime, usize)> {
    let mut frames: Vec<(WallTime, usize)> = logs
        .iter()
        .enumerate()
        .flat_map(|(node, log)| {
            log.packets
                .iter()
                .filter(|p| p.dst == vip)
                .map(move |p| (p.at, node))
        })
        .collect();
    frames.sort();
    frames
}

/// The VIP frames each node received from each source from `first` to
/// `last`.
fn sources(
    logs: &[CaptureLog],
    vip: Ipv4Addr,
    first: WallTime,
    last: WallTime,
) -> Vec<(usize, Ipv4Addr, usize)> {
    let mut out: Vec<(usize, Ipv4Addr, usize)> = Vec::new();
    for (node, log) in logs.iter().enumerate() {
        for p in &log.packets {
            if p.dst != vip || p.at < first || p.at > last {
                continue;
            }
            match out
                .iter_mut()
                .find(|(n, src, _)| *n == node && *src == p.src)
            {
                Some(entry) => entry.2 += 1,
                None => out.push((node, p.src, 1)),
            }
        }
    }
    out
}

/// Doubly answered requests, chained within `gap`.
fn arp_episodes(arp: &ArpLog, macs: &[Mac], gap: Duration) -> Vec<Episode> {
    let Some(from) = arp.requests.first().copied() else {
        return Vec::new();
    };
    let doubles: Vec<(WallTime, Vec<usize>)> = arp
        .answering_macs(from)
        .into_iter()
        .filter(|(_, answering)| answering.len() > 1)
        .map(|(request, answering)| {
            let nodes = answering
                .iter()
                .filter_map(|m| macs.iter().position(|own| own == m))
                .collect();
            (arp.requests[request], nodes)
        })
        .collect();
    chain(&doubles, gap)
}

/// Switches between the nodes receiving the frames (`(time, node)` in time
/// order), chained within `gap`.
fn switch_episodes(frames: &[(WallTime, usize)], gap: Duration) -> Vec<Episode> {
    let switches: Vec<(WallTime, Vec<usize>)> = frames
        .windows(2)
        .filter(|w| w[0].1 != w[1].1)
        .map(|w| (w[1].0, vec![w[0].1, w[1].1]))
        .collect();
    chain(&switches, gap)
}

/// Events (time, nodes) in time order, grouped: each within `gap` of the
/// one before.
fn chain(events: &[(WallTime, Vec<usize>)], gap: Duration) -> Vec<Episode> {
    let gap_us = i64::try_from(gap.as_micros()).unwrap_or(i64::MAX);
    let mut episodes: Vec<Episode> = Vec::new();
    for (at, nodes) in events {
        match episodes.last_mut() {
            Some(e) if at.micros_since(e.last) <= gap_us => {
                e.last = *at;
                e.count += 1;
                for n in nodes {
                    if !e.nodes.contains(n) {
                        e.nodes.push(*n);
                    }
                }
            }
            _ => episodes.push(Episode {
                first: *at,
                last: *at,
                count: 1,
                nodes: nodes.clone(),
                sources: Vec::new(),
            }),
        }
    }
    for e in &mut episodes {
        e.nodes.sort_unstable();
    }
    episodes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> WallTime {
        WallTime::from_parts(
            1_800_000_000 + ms / 1000,
            u32::try_from(ms % 1000).expect("ms") * 1_000_000,
        )
    }

    #[test]
    fn a_move_and_a_move_back_are_apart_but_alternation_is_one_episode() {
        // Node 0, then node 1 from 1000 ms (two frames in flight to 0),
        // then node 0 again from 1200 ms.
        let mut frames: Vec<(WallTime, usize)> = (0..100).map(|i| (at(i * 10), 0)).collect();
        frames.extend([(at(1000), 1), (at(1001), 0), (at(1002), 1)]);
        frames.extend((101..120).map(|i| (at(i * 10), 1)));
        frames.extend((120..150).map(|i| (at(i * 10), 0)));
        let episodes = switch_episodes(&frames, CHAIN_GAP);
        assert_eq!(episodes.len(), 2, "{episodes:?}");
        assert_eq!(episodes[0].count, 3);
        assert_eq!(episodes[0].span(), Duration::from_millis(2));
        assert_eq!(episodes[1].span(), Duration::ZERO);

        // Both receive frames for 400 ms: switches all along.
        let split: Vec<(WallTime, usize)> =
            (0..40).map(|i| (at(i * 10), (i % 2) as usize)).collect();
        let episodes = switch_episodes(&split, CHAIN_GAP);
        assert_eq!(episodes.len(), 1);
        assert_eq!(episodes[0].nodes, vec![0, 1]);
        assert_eq!(episodes[0].span(), Duration::from_millis(380));
        assert!(episodes[0].span() > BOUND, "a violation");
    }

    #[test]
    fn events_further_apart_than_the_gap_are_apart() {
        let events = vec![
            (at(0), vec![1, 0]),
            (at(40), vec![0, 1]),
            (at(1000), vec![2, 0]),
        ];
        let episodes = chain(&events, Duration::from_millis(50));
        assert_eq!(episodes.len(), 2);
        assert_eq!(episodes[0].nodes, vec![0, 1]);
        assert_eq!(episodes[0].count, 2);
        assert_eq!(episodes[1].nodes, vec![0, 2]);
        assert_eq!(episodes[1].span(), Duration::ZERO);
    }

    #[test]
    fn the_bound_is_detection_lease_and_slack() {
        // 2 ms x 10 + 100 ms + 150 ms; link flaps 1 s more.
        assert_eq!(BOUND, Duration::from_millis(270));
        assert_eq!(bound(Kind::LinkFlap), Duration::from_millis(1270));
        assert_eq!(bound(Kind::Stall), Duration::from_millis(270));
    }
}
