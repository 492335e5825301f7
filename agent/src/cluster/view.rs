//! What a voter knows of the others: when each was last heard, what it
//! said, and the quorum that makes of it.
//!
//! A voter is heard when its ping arrives or when it answers ours (then at
//! the time our ping left: never later than it really was). It counts for
//! the quorum while heard within `quorum_timeout`; the witness counts only
//! while its vote is this node's, from the time the ping it granted left.
//! The witness keeps a vote for `quorum_timeout` + `ping_interval` after
//! its holder's last ping, so a holder cut off stops counting it before
//! anyone else can have it.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use tracing::{info, warn};

use super::wire::{GroupReport, MasterSeen, QuorumReport, VoterReport};
use crate::config::{ClusterConfig, Member};

/// The state of one other voter.
#[derive(Debug)]
struct Peer {
    address: SocketAddr,
    witness: bool,
    /// Its start, as it registered (0: not registered since our start).
    epoch: u64,
    registered: bool,
    /// Counted at least once since it registered ("joined the candidate").
    joined: bool,
    last_seen: Option<Instant>,
    groups: Vec<GroupReport>,
    masters: Vec<MasterSeen>,
    /// Our last ping to it failed (so a change is logged once).
    unreachable: bool,
}

/// The quorum, as counted at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quorum {
    pub held: bool,
    /// Voters counted, this one included.
    pub seen: usize,
    pub voters: usize,
    pub witness_vote: bool,
}

impl Quorum {
    /// "2 of 3 voters".
    pub fn describe(&self) -> String {
        format!(
            "sees {} of {} voters, needs {}",
            self.seen,
            self.voters,
            self.voters / 2 + 1
        )
    }
}

/// Everything one voter knows of the others.
#[derive(Debug)]
pub struct View {
    me: String,
    /// This voter's listed address (the tie-break between equal
    /// priorities, as VRRP's primary address).
    address: Option<SocketAddr>,
    quorum_timeout: Duration,
    ping_interval: Duration,
    peers: BTreeMap<String, Peer>,
    /// When the ping that the witness answered with our name left.
    witness_grant: Option<Instant>,
}

impl View {
    pub fn new(me: &str, config: &ClusterConfig) -> Self {
        let peer = |m: &Member, witness: bool| {
            (
                m.name.clone(),
                Peer {
                    address: m.address,
                    witness,
                    epoch: 0,
                    registered: false,
                    joined: false,
                    last_seen: None,
                    groups: Vec::new(),
                    masters: Vec::new(),
                    unreachable: false,
                },
            )
        };
        Self {
            me: me.to_owned(),
            address: config.voter(me).map(|m| m.address),
            quorum_timeout: config.quorum_timeout,
            ping_interval: config.ping_interval,
            peers: config
                .members
                .iter()
                .filter(|m| m.name != me)
                .map(|m| peer(m, false))
                .chain(
                    config
                        .witness
                        .iter()
                        .filter(|w| w.name != me)
                        .map(|w| peer(w, true)),
                )
                .collect(),
            witness_grant: None,
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// Whether `name` is a voter other than this one, reached from `ip`.
    pub fn knows(&self, name: &str, ip: std::net::IpAddr) -> bool {
        self.peers.get(name).is_some_and(|p| p.address.ip() == ip)
    }

    pub fn is_registered(&self, name: &str) -> bool {
        self.peers.get(name).is_some_and(|p| p.registered)
    }

    /// A voter registered (at start, or again after we forgot it).
    pub fn register(&mut self, name: &str, epoch: u64) {
        let Some(peer) = self.peers.get_mut(name) else {
            return;
        };
        if !peer.registered || peer.epoch != epoch {
            info!("registered a new node: {name}");
            peer.joined = false;
        }
        peer.registered = true;
        peer.epoch = epoch;
    }

    /// The voters registered, by name.
    pub fn registered(&self) -> Vec<String> {
        self.peers
            .iter()
            .filter(|(_, p)| p.registered)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// `name` was heard at `at`, saying this of its groups.
    pub fn heard(
        &mut self,
        name: &str,
        at: Instant,
        groups: Vec<GroupReport>,
        masters: Vec<MasterSeen>,
    ) {
        let Some(peer) = self.peers.get_mut(name) else {
            return;
        };
        if peer.last_seen.is_none_or(|seen| seen < at) {
            peer.last_seen = Some(at);
        }
        peer.groups = groups;
        peer.masters = masters;
        if peer.unreachable {
            peer.unreachable = false;
            info!("reached {name} again");
        }
        if peer.registered && !peer.joined {
            peer.joined = true;
            info!("joined the candidate: {name}");
        }
    }

    /// Our ping to `name` failed.
    pub fn unreachable(&mut self, name: &str, why: &str) {
        if let Some(peer) = self.peers.get_mut(name)
            && !peer.unreachable
        {
            peer.unreachable = true;
            warn!("cluster: cannot reach {name}: {why}");
        }
    }

    /// The witness answered the ping sent at `sent`: its vote is `holder`'s.
    pub fn witness_answered(&mut self, holder: Option<&str>, sent: Instant) {
        self.witness_grant = (holder == Some(self.me.as_str())).then_some(sent);
    }

    fn fresh(&self, seen: Option<Instant>, now: Instant, within: Duration) -> bool {
        seen.is_some_and(|at| now.saturating_duration_since(at) < within)
    }

    fn members_seen(&self, now: Instant) -> usize {
        self.peers
            .values()
            .filter(|p| !p.witness && self.fresh(p.last_seen, now, self.quorum_timeout))
            .count()
    }

    /// The quorum at `now`.
    pub fn quorum(&self, now: Instant) -> Quorum {
        let voters = self.peers.len() + 1;
        let witness_vote = self.peers.values().any(|p| p.witness)
            && self.fresh(self.witness_grant, now, self.quorum_timeout);
        let seen = 1 + self.members_seen(now) + usize::from(witness_vote);
        Quorum {
            held: seen * 2 > voters,
            seen,
            voters,
            witness_vote,
        }
    }

    /// Whether this node asks the witness for its vote: while it is MASTER
    /// of something, or the members alone are not a majority for it.
    pub fn wants_vote(&self, now: Instant, master: bool) -> bool {
        let voters = self.peers.len() + 1;
        master || (1 + self.members_seen(now)) * 2 <= voters
    }

    /// How long a report of a MASTER stays believed: the quorum timeout
    /// (after which a MASTER cut off has fenced itself) and a ping.
    fn master_window(&self) -> Duration {
        self.quorum_timeout + self.ping_interval
    }

    /// The MASTERs this node sees alive, besides itself: members heard
    /// within the window saying they are MASTER.
    pub fn masters_seen(&self, now: Instant) -> Vec<MasterSeen> {
        let window = self.master_window();
        let mut seen: Vec<MasterSeen> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.witness && self.fresh(p.last_seen, now, window))
            .flat_map(|(name, p)| {
                p.groups
                    .iter()
                    .filter(|g| g.state == "MASTER")
                    .map(|g| MasterSeen {
                        group: g.name.clone(),
                        node: name.clone(),
                    })
            })
            .collect();
        seen.sort();
        seen.dedup();
        seen
    }

    /// Who may still answer for `group` besides this node: a member heard
    /// within the window saying it is its MASTER, or one a member heard
    /// within the quorum timeout says it sees as MASTER.
    pub fn other_masters(&self, group: &str, now: Instant) -> Vec<String> {
        let mut found: Vec<String> = self
            .masters_seen(now)
            .into_iter()
            .filter(|m| m.group == group)
            .map(|m| m.node)
            .collect();
        for p in self.peers.values() {
            if !p.witness && self.fresh(p.last_seen, now, self.quorum_timeout) {
                found.extend(
                    p.masters
                        .iter()
                        .filter(|m| m.group == group && m.node != self.me)
                        .map(|m| m.node.clone()),
                );
            }
        }
        found.sort();
        found.dedup();
        found
    }

    /// The members heard within the quorum timeout that would win `group`
    /// over this node at `priority` (higher priority, or equal and a
    /// higher address, as VRRP decides) and are BACKUP: ready to claim it
    /// themselves.
    pub fn outranked_by(&self, group: &str, priority: u8, now: Instant) -> Vec<String> {
        self.peers
            .iter()
            .filter(|(_, p)| !p.witness && self.fresh(p.last_seen, now, self.quorum_timeout))
            .filter(|(_, p)| {
                p.groups.iter().any(|g| {
                    g.name == group
                        && g.state == "BACKUP"
                        && (g.priority > priority
                            || (g.priority == priority
                                && self.address.is_some_and(|a| p.address.ip() > a.ip())))
                })
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The voters as `GET /api/v1/ha/nodes` shows them (this one first).
    pub fn voters(&self, now: Instant, me: VoterReport) -> Vec<VoterReport> {
        let mut out = vec![me];
        out.extend(self.peers.iter().map(|(name, p)| VoterReport {
            name: name.clone(),
            address: p.address,
            role: if p.witness { "witness" } else { "node" }.to_owned(),
            registered: p.registered,
            up: self.fresh(p.last_seen, now, self.quorum_timeout),
            last_seen_ms: p.last_seen.map(|at| {
                u64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(u64::MAX)
            }),
            groups: p.groups.clone(),
        }));
        out
    }

    /// The quorum for `GET /api/v1/ha/nodes`.
    pub fn quorum_report(&self, now: Instant) -> QuorumReport {
        let q = self.quorum(now);
        QuorumReport {
            held: q.held,
            seen: q.seen,
            voters: q.voters,
            witness_vote: q.witness_vote,
            vote_holder: None,
        }
    }

    /// A voter's listed address.
    pub fn address_of(&self, name: &str) -> Option<SocketAddr> {
        self.peers.get(name).map(|p| p.address)
    }

    /// The addresses to ping: every other voter, and whether it is the
    /// witness.
    pub fn targets(&self) -> Vec<(String, SocketAddr, bool)> {
        self.peers
            .iter()
            .map(|(n, p)| (n.clone(), p.address, p.witness))
            .collect()
    }
}

#[cfg(test)]
mod tests;
