//! Handovers between live nodes, ordered by their heartbeats so that two
//! nodes never answer for the VIP at once and no client packet falls
//! between them:
//!
//! 1. the node taking over (preemption) sends its advert, then waits until
//!    the old master's heartbeat says it let go ([`HeartbeatLink::wait_released`]);
//! 2. the old master, on that advert (or on its own stop), removes the VIPs
//!    first (it stops answering ARP/ND), says BACKUP (or farewell), and keeps
//!    its data plane serving until the successor's heartbeat says MASTER
//!    ([`HeartbeatLink::wait_successor`]), so packets of clients whose ARP
//!    cache still points at it are still forwarded;
//! 3. the successor adds the VIPs and announces them.
//!
//! Both waits are bounded by twice the detection time: a peer that does not
//! answer is dead or unreachable, and the waits end as a failover would.

use std::{net::IpAddr, time::Duration};

use tokio::time::Instant;
use vipx_common::{
    PeerSeen,
    peer::{KIND_HEARTBEAT, STATE_MASTER},
};

use super::HeartbeatLink;
use crate::dataplane::monotonic_ns;

/// How often a handover re-reads the records.
const POLL: Duration = Duration::from_millis(1);

impl HeartbeatLink {
    /// The latest heartbeat recorded from `addr`.
    pub fn record(&self, addr: IpAddr) -> Option<PeerSeen> {
        self.peers
            .seen(self.spec.vrid, KIND_HEARTBEAT, addr)
            .ok()
            .flatten()
    }

    fn bound(&self) -> Duration {
        self.detector.detect * 2
    }

    /// Whether `seen` is a live master's claim at `now_ns`.
    fn claims_master(&self, seen: &PeerSeen, now_ns: u64) -> bool {
        seen.state == STATE_MASTER
            && seen.priority != 0
            && now_ns.saturating_sub(seen.last_ns) <= self.detector.detect.as_nanos() as u64
    }

    /// Whether a peer's heartbeat says it is a live MASTER now.
    pub fn master_alive(&self) -> bool {
        let now = monotonic_ns();
        self.spec.peers.iter().any(|&peer| {
            self.record(peer)
                .is_some_and(|seen| self.claims_master(&seen, now))
        })
    }

    /// Waits until `old_master` no longer claims MASTER (its heartbeat says
    /// otherwise, or stopped); `false` when the bound ran out first.
    pub async fn wait_released(&self, old_master: IpAddr) -> bool {
        let until = Instant::now() + self.bound();
        loop {
            // Held until its heartbeat says otherwise: a late heartbeat
            // (a busy machine) is no release; a dead master is covered by
            // the bound.
            let held = self
                .record(old_master)
                .is_some_and(|seen| seen.state == STATE_MASTER && seen.priority != 0);
            if !held {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until a peer claims MASTER with a heartbeat sent after this
    /// call began; its address, or `None` when the bound ran out first (no
    /// vipx successor: keepalived, or nobody).
    pub async fn wait_successor(&self) -> Option<IpAddr> {
        let since = monotonic_ns();
        let until = Instant::now() + self.bound();
        loop {
            let now = monotonic_ns();
            let successor = self.spec.peers.iter().copied().find(|&peer| {
                self.record(peer)
                    .is_some_and(|seen| seen.last_ns >= since && self.claims_master(&seen, now))
            });
            if successor.is_some() || Instant::now() >= until {
                return successor;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
