//! The flow table's upkeep: forgetting idle, closed, reset and embryonic
//! flows, each together with its NAT entry (which frees its NAT port), and
//! counting what is in use. The flow and NAT tables never evict: this is
//! the only way flows end.
//!
//! A TCP flow ends, whichever comes first:
//! - `rst` after a RST, unless a segment without RST came later than a
//!   packet in flight could have (the program then clears the mark): the
//!   endpoints judge a RST's sequence number (RFC 5961), and a connection
//!   a RST really ended stays quiet;
//! - `fin` after a FIN was seen both ways;
//! - `embryonic` idle while embryonic (no answer from the backend yet);
//! - `tcp_idle` idle otherwise.
//!
//! A UDP flow ends `udp_idle` idle.
//!
//! A replicating node's collector also tells its peers, through a
//! [`NewsSink`], about the flows of the groups it serves (whose copy is
//! the one traffic refreshes): each flow it forgets, so that their copies
//! end with it and free their NAT ports at once, and, every quarter of the
//! shortest idle timeout, each live flow that carried traffic since the
//! last such round and is older than it, so that their copies, which no
//! packet refreshes, never age out before the flow does.

use crate::locks::lock;
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use vipx_common::{
    Flow, FlowKey,
    flow::{
        FLOW_F_ESTABLISHED, FLOW_F_FIN_BACKEND, FLOW_F_FIN_CLIENT, FLOW_F_REPLICA, FLOW_F_RST,
        nat_key,
    },
};

use super::{lease::monotonic_ns, maps::Maps};

/// IP protocol number of TCP.
const TCP: u8 = 6;

/// When flows are forgotten, and how many NAT ports embryonic flows may
/// hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowPolicy {
    pub tcp_idle: Duration,
    pub udp_idle: Duration,
    /// After a FIN was seen both ways.
    pub fin: Duration,
    /// TCP flows without an answer yet (see `FLOW_F_ESTABLISHED`).
    pub embryonic: Duration,
    /// After a RST, unless traffic went on.
    pub rst: Duration,
    /// Percent of a nat service's NAT port range that embryonic flows may
    /// hold per backend (100: no limit).
    pub embryonic_share: u32,
}

/// Where a flow is in its life: which of the policy's timeouts it is under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Udp,
    /// TCP after a RST.
    Reset,
    /// TCP with a FIN seen both ways.
    Closed,
    /// TCP without an answer yet.
    Embryonic,
    /// TCP, answered and neither reset nor closed.
    Open,
}

impl Phase {
    fn of(key: &FlowKey, flow: &Flow) -> Self {
        if key.proto != TCP {
            return Self::Udp;
        }
        let fins = FLOW_F_FIN_CLIENT | FLOW_F_FIN_BACKEND;
        if flow.flags & FLOW_F_RST != 0 {
            Self::Reset
        } else if flow.flags & fins == fins {
            Self::Closed
        } else if flow.flags & FLOW_F_ESTABLISHED == 0 {
            Self::Embryonic
        } else {
            Self::Open
        }
    }
}

impl FlowPolicy {
    /// How long `flow` may stay idle.
    fn limit(&self, key: &FlowKey, flow: &Flow) -> Duration {
        match Phase::of(key, flow) {
            Phase::Udp => self.udp_idle,
            Phase::Reset => self.rst,
            Phase::Closed => self.fin,
            Phase::Embryonic => self.embryonic,
            Phase::Open => self.tcp_idle,
        }
    }
}

/// Whether a flow holds a NAT port without an answer yet.
fn embryonic_nat(key: &FlowKey, flow: &Flow) -> bool {
    key.proto == TCP && flow.nat_port != 0 && flow.flags & FLOW_F_ESTABLISHED == 0
}

/// What a collection tells the peers about a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowNews {
    /// Forgotten here: the peers forget their copy.
    Ended,
    /// Live, and active since the last round: the peers' copy gets its
    /// idle time.
    Active,
}

/// Where a replicating node's collector sends its news (called from the
/// collection, which runs on a blocking thread: it must not wait).
pub type NewsSink = Box<dyn FnMut(FlowNews, &FlowKey, &Flow) + Send>;

/// The news of one collection: the sink, and since when (`CLOCK_MONOTONIC`
/// ns) active flows are told about in this round, if this run is one.
struct News<'a> {
    sink: &'a mut NewsSink,
    active_since: Option<u64>,
    /// Whether this node serves a group, read once a run.
    served: HashMap<u32, bool>,
}

impl News<'_> {
    fn serves(&mut self, maps: &Maps, group: u32) -> bool {
        *self
            .served
            .entry(group)
            .or_insert_with(|| maps.serves(group))
    }
}

/// Whether a live flow is news for the round that started at `since`: it
/// existed then, carried traffic after it, and is under its idle timeout
/// (a flow in its RST, FIN or embryonic time ends soon on every node
/// alike).
fn active_since(key: &FlowKey, flow: &Flow, since: u64) -> bool {
    matches!(Phase::of(key, flow), Phase::Udp | Phase::Open)
        && flow.created_ns <= since
        && flow.last_seen_ns > since
}

/// What one collection found, per service id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Flows per service id.
    pub flows: HashMap<u32, u64>,
    /// Flows per backend id.
    pub backend_flows: HashMap<u32, u64>,
    /// Embryonic nat flows (holding a NAT port, no answer yet) per backend
    /// id, of every backend a TCP nat flow was found on (0 for those
    /// whose flows are all established, or all forgotten by this run).
    pub embryonic: HashMap<u32, u64>,
    /// Of all flows, those installed from a peer's replication (the rest
    /// this node's XDP program created).
    pub replicated: u64,
    /// NAT ports in use per service id.
    pub nat_ports: HashMap<u32, u64>,
    /// Flows forgotten by this collection.
    pub expired: u64,
    /// NAT entries without a flow, removed.
    pub orphans: u64,
}

/// Forgets expired flows; keeps what it needs between runs.
pub struct FlowCollector {
    maps: Arc<Maps>,
    policy: FlowPolicy,
    /// The share last written to the data plane's settings.
    share_written: Option<u32>,
    /// Backend ids whose embryonic count was last written non-zero.
    embryonic_written: HashSet<u32>,
    /// NAT entries without a flow at the previous run. The XDP program
    /// inserts the NAT entry just before the flow, so an entry is removed
    /// only when it is still an orphan one run later.
    orphans: HashSet<FlowKey>,
    /// Where the news goes, when this node replicates.
    news: Option<NewsSink>,
    /// When active flows were last told about (`CLOCK_MONOTONIC` ns).
    told_active_ns: u64,
}

impl FlowCollector {
    pub fn new(maps: Arc<Maps>, policy: FlowPolicy) -> Self {
        Self {
            maps,
            policy,
            share_written: None,
            embryonic_written: HashSet::new(),
            orphans: HashSet::new(),
            news: None,
            told_active_ns: monotonic_ns(),
        }
    }

    /// Tells `sink` the news of each collection from now on.
    #[must_use]
    pub fn with_news(mut self, sink: NewsSink) -> Self {
        self.news = Some(sink);
        self
    }

    /// A reload changed the policy: the next run uses it.
    pub fn set_policy(&mut self, policy: FlowPolicy) {
        self.policy = policy;
    }

    /// Writes the embryonic share (when it changed), removes expired flows
    /// and their NAT entries, then NAT entries whose flow is gone, counts
    /// what stays, and gives the program the true count of embryonic flows
    /// of each backend.
    pub fn collect(&mut self) -> FlowStats {
        let share = self.policy.embryonic_share;
        if self.share_written != Some(share) && self.maps.set_embryonic_share(share).is_ok() {
            self.share_written = Some(share);
        }
        let now = monotonic_ns();
        let round = self.policy.tcp_idle.min(self.policy.udp_idle) / 4;
        let due = Duration::from_nanos(now.saturating_sub(self.told_active_ns)) >= round;
        let mut news = self.news.as_mut().map(|sink| News {
            sink,
            active_since: due.then_some(self.told_active_ns),
            served: HashMap::new(),
        });
        let (stats, orphans) = collect(&self.maps, self.policy, &self.orphans, news.as_mut());
        if news.is_some_and(|news| news.active_since.is_some()) {
            self.told_active_ns = now;
        }
        self.orphans = orphans;
        self.write_embryonic(&stats.embryonic);
        stats
    }

    /// Sets the count of every backend a flow was found on, or that had
    /// embryonic flows at the last write (between runs the program counts
    /// by itself).
    fn write_embryonic(&mut self, counts: &HashMap<u32, u64>) {
        let ids: HashSet<u32> = self
            .embryonic_written
            .iter()
            .chain(counts.keys())
            .copied()
            .collect();
        for id in ids {
            let count = counts.get(&id).copied().unwrap_or(0);
            let _ = self
                .maps
                .set_embryonic(id, u32::try_from(count).unwrap_or(u32::MAX));
        }
        self.embryonic_written = counts
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(id, _)| *id)
            .collect();
    }
}

fn collect(
    maps: &Arc<Maps>,
    policy: FlowPolicy,
    seen_orphans: &HashSet<FlowKey>,
    mut news: Option<&mut News<'_>>,
) -> (FlowStats, HashSet<FlowKey>) {
    let now = monotonic_ns();
    let mut orphans = HashSet::new();
    let mut stats = FlowStats::default();
    // The NAT port of each nat flow kept: most NAT entries are checked
    // against it, without a lookup each (a dsr flow has no NAT entry, and
    // is not hashed for nothing).
    let mut kept: HashMap<FlowKey, u16> = HashMap::new();
    for (key, flow) in maps.flows() {
        if key.proto == TCP && flow.nat_port != 0 {
            stats.embryonic.entry(flow.backend).or_default();
        }
        let idle = Duration::from_nanos(now.saturating_sub(flow.last_seen_ns));
        if idle <= policy.limit(&key, &flow) {
            if flow.nat_port != 0 {
                kept.insert(key, flow.nat_port);
            }
            *stats.flows.entry(flow.service).or_default() += 1;
            *stats.backend_flows.entry(flow.backend).or_default() += 1;
            if embryonic_nat(&key, &flow) {
                *stats.embryonic.entry(flow.backend).or_default() += 1;
            }
            stats.replicated += u64::from(flow.flags & FLOW_F_REPLICA != 0);
            if let Some(news) = news.as_deref_mut()
                && news
                    .active_since
                    .is_some_and(|since| active_since(&key, &flow, since))
                && news.serves(maps, flow.group)
            {
                (news.sink)(FlowNews::Active, &key, &flow);
            }
            continue;
        }
        let _ = lock(&maps.flows).remove(&key);
        stats.expired += 1;
        if flow.nat_port != 0
            && let Some(backend) = maps.backend(flow.backend)
        {
            let _ =
                lock(&maps.nat).remove(&nat_key(&key, backend.addr, backend.port, flow.nat_port));
        }
        if let Some(news) = news.as_deref_mut()
            && news.serves(maps, flow.group)
        {
            (news.sink)(FlowNews::Ended, &key, &flow);
        }
    }
    for (key, entry) in maps.nat_entries() {
        let nat_port = match kept.get(&entry.client) {
            Some(port) if *port == key.dport => Some(*port),
            // Not (or not so) when the table was read: as it is now.
            _ => maps.flow(&entry.client).map(|flow| flow.nat_port),
        };
        match nat_port {
            Some(port) if port == key.dport => {
                *stats.nat_ports.entry(entry.service).or_default() += 1;
            }
            _ if seen_orphans.contains(&key) => {
                let _ = lock(&maps.nat).remove(&key);
                stats.orphans += 1;
            }
            _ => {
                orphans.insert(key);
            }
        }
    }
    (stats, orphans)
}
