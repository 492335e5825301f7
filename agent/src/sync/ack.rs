//! The ack level (`[sync] ack`): when a change of this node's flow table
//! counts as acknowledged, and how many are not yet.
//!
//! Every change published to the peers gets a number, 1, 2, 3... in the
//! order it is queued (the same order for every peer). Each peer's link
//! reports the highest number up to which that peer holds every change
//! (its batches acknowledged, or a whole-table transfer taken after them
//! acknowledged). A change has reached the level when enough peers hold
//! it: one for `once`, floor(N/2) of the N nodes' peers for `quorum` (this
//! node holds it already: with it, a majority), none for `none`, where
//! nothing is tracked. The data path never waits for any of this; a
//! stopping MASTER does ([`Ledger::drained`]).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::watch;

use super::SyncMetrics;
use crate::{config::AckLevel, dataplane::monotonic_ns, locks::lock};

/// Changes whose publication time is kept for `vipx_sync_ack_seconds`, at
/// most (the oldest go first; they still count as unacknowledged).
const MAX_TIMED: usize = 262_144;

/// How many peers must hold a change for it to reach `level`, in a cluster
/// of `peers` + 1 nodes. Without peers there is nothing to wait for.
pub fn peers_needed(level: AckLevel, peers: usize) -> usize {
    match level {
        AckLevel::None => 0,
        AckLevel::Once => peers.min(1),
        // A majority of N = peers + 1 nodes is floor(N/2) + 1: this node
        // and floor(N/2) peers.
        AckLevel::Quorum => {
            let nodes = peers + 1;
            nodes / 2
        }
    }
}

/// The highest change number that `needed` peers hold, given the highest
/// number each peer holds (with `needed` = 0: every change).
pub fn reached(held: &[u64], needed: usize, published: u64) -> u64 {
    if needed == 0 {
        return published;
    }
    let mut held = held.to_vec();
    held.sort_unstable_by(|a, b| b.cmp(a));
    held.get(needed - 1).copied().unwrap_or(0)
}

/// The changes published and where each peer stands.
pub struct Ledger {
    level: AckLevel,
    needed: usize,
    metrics: Arc<SyncMetrics>,
    inner: Mutex<Inner>,
    /// The highest change number at the ack level, as it moves.
    acked: watch::Sender<u64>,
}

struct Inner {
    /// The number of the last change published.
    published: u64,
    /// By peer: the highest number up to which it holds every change.
    held: Vec<u64>,
    /// The highest number at the ack level.
    acked: u64,
    /// (number, when it happened) of changes not yet at the ack level.
    times: VecDeque<(u64, u64)>,
}

impl Ledger {
    pub fn new(level: AckLevel, peers: usize, metrics: Arc<SyncMetrics>) -> Self {
        metrics.set_ack_level(level.as_str());
        Self {
            level,
            needed: peers_needed(level, peers),
            metrics,
            inner: Mutex::new(Inner {
                published: 0,
                held: vec![0; peers],
                acked: 0,
                times: VecDeque::new(),
            }),
            acked: watch::Sender::new(0),
        }
    }

    /// The configured level.
    pub fn level(&self) -> AckLevel {
        self.level
    }

    /// Whether changes are tracked at all (not with `none`, nor without
    /// peers).
    pub fn tracks(&self) -> bool {
        self.needed > 0
    }

    /// Numbers a change that happened at `at_ns` and hands the number to
    /// `queue`, under one lock so that every peer queues changes in the
    /// order of their numbers.
    pub fn publish(&self, at_ns: u64, queue: impl FnOnce(u64)) {
        let mut inner = lock(&self.inner);
        inner.published += 1;
        let id = inner.published;
        queue(id);
        if !self.tracks() {
            return;
        }
        if inner.times.len() == MAX_TIMED {
            inner.times.pop_front();
        }
        inner.times.push_back((id, at_ns));
        self.metrics
            .unacked_changes
            .set((inner.published - inner.acked) as i64);
    }

    /// The number of the last change published.
    pub fn published(&self) -> u64 {
        lock(&self.inner).published
    }

    /// Peer `peer` holds every change up to `through`.
    pub fn held(&self, peer: usize, through: u64) {
        if !self.tracks() {
            return;
        }
        let mut inner = lock(&self.inner);
        let Some(held) = inner.held.get_mut(peer) else {
            return;
        };
        if through <= *held {
            return;
        }
        *held = through;
        let now = reached(&inner.held, self.needed, inner.published);
        if now <= inner.acked {
            return;
        }
        self.metrics.acked_changes.inc_by(now - inner.acked);
        inner.acked = now;
        let clock = monotonic_ns();
        while inner.times.front().is_some_and(|(id, _)| *id <= now) {
            if let Some((_, at_ns)) = inner.times.pop_front() {
                let took = clock.saturating_sub(at_ns) as f64 / 1e9;
                self.metrics.ack_seconds.observe(took);
            }
        }
        self.metrics
            .unacked_changes
            .set((inner.published - now) as i64);
        self.acked.send_replace(now);
    }

    /// Waits, at most `within`, until every change published so far has
    /// reached the ack level: `Ok` with the time it took (zero when they
    /// all had already), or `Err` with the number of those changes still
    /// short of it.
    pub async fn drained(&self, within: Duration) -> Result<Duration, usize> {
        let started = Instant::now();
        let target = self.published();
        if !self.tracks() || *self.acked.borrow() >= target {
            return Ok(Duration::ZERO);
        }
        let mut acked = self.acked.subscribe();
        let waited = tokio::time::timeout(within, acked.wait_for(|acked| *acked >= target)).await;
        match waited {
            Ok(Ok(_)) => Ok(started.elapsed()),
            _ => {
                let acked = *self.acked.borrow();
                Err(usize::try_from(target.saturating_sub(acked)).unwrap_or(usize::MAX))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn quorum_is_a_majority_with_this_node() {
        // N nodes -> peers needed: floor(N/2) (the spec's table).
        for (nodes, needed) in [(2, 1), (3, 1), (4, 2), (5, 2), (6, 3), (7, 3)] {
            assert_eq!(
                peers_needed(AckLevel::Quorum, nodes - 1),
                needed,
                "{nodes} nodes"
            );
        }
        assert_eq!(
            peers_needed(AckLevel::Quorum, 0),
            0,
            "alone: nothing to wait for"
        );
    }

    #[test]
    fn once_needs_one_peer_and_none_needs_none() {
        for peers in 1..5 {
            assert_eq!(peers_needed(AckLevel::Once, peers), 1, "{peers} peers");
            assert_eq!(peers_needed(AckLevel::None, peers), 0, "{peers} peers");
        }
        assert_eq!(peers_needed(AckLevel::Once, 0), 0);
    }

    #[test]
    fn a_change_is_acked_when_enough_peers_hold_it() {
        // Three peers hold up to 7, 3 and 5.
        let held = [7, 3, 5];
        assert_eq!(reached(&held, 1, 9), 7, "once: the first peer's");
        assert_eq!(reached(&held, 2, 9), 5, "two peers hold up to 5");
        assert_eq!(reached(&held, 3, 9), 3, "all three up to 3");
        assert_eq!(reached(&held, 0, 9), 9, "none: everything");
        assert_eq!(reached(&[4], 2, 9), 0, "more peers needed than there are");
    }

    fn ledger(level: AckLevel, peers: usize) -> (Ledger, Arc<SyncMetrics>) {
        let metrics = Arc::new(Metrics::new("test").expect("metrics").sync());
        (Ledger::new(level, peers, Arc::clone(&metrics)), metrics)
    }

    #[tokio::test]
    async fn quorum_of_five_waits_for_the_second_peer() {
        let (ledger, metrics) = ledger(AckLevel::Quorum, 4);
        let mut queued = Vec::new();
        for _ in 0..3 {
            ledger.publish(monotonic_ns(), |id| queued.push(id));
        }
        assert_eq!(queued, [1, 2, 3], "numbered in order");
        assert_eq!(metrics.unacked_changes.get(), 3);
        ledger.held(0, 3);
        assert_eq!(metrics.acked_changes.get(), 0, "one peer of the two needed");
        assert_eq!(
            ledger.drained(Duration::from_millis(20)).await,
            Err(3),
            "three changes short"
        );
        ledger.held(2, 2);
        assert_eq!(metrics.acked_changes.get(), 2, "two peers hold 1 and 2");
        assert_eq!(metrics.unacked_changes.get(), 1);
        ledger.held(3, 3);
        assert_eq!(metrics.acked_changes.get(), 3);
        assert_eq!(metrics.unacked_changes.get(), 0);
        assert_eq!(metrics.ack_seconds.get_sample_count(), 3, "one time each");
        assert!(
            ledger.drained(Duration::ZERO).await.is_ok(),
            "nothing to wait for"
        );
    }

    #[tokio::test]
    async fn none_tracks_nothing_and_never_waits() {
        let (ledger, metrics) = ledger(AckLevel::None, 2);
        ledger.publish(monotonic_ns(), |_| {});
        ledger.held(0, 1);
        assert_eq!(metrics.unacked_changes.get(), 0);
        assert_eq!(metrics.acked_changes.get(), 0);
        assert!(ledger.drained(Duration::ZERO).await.is_ok());
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_the_level_is_reached() {
        let (ledger, _) = ledger(AckLevel::Once, 2);
        let ledger = Arc::new(ledger);
        ledger.publish(monotonic_ns(), |_| {});
        let waiter = tokio::spawn({
            let ledger = Arc::clone(&ledger);
            async move { ledger.drained(Duration::from_secs(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        ledger.held(1, 1);
        let waited = waiter.await.expect("the waiter runs");
        assert!(
            waited.is_ok_and(|took| took < Duration::from_secs(10)),
            "{waited:?}"
        );
    }
}
