//! `[cluster]`: the cluster secret, the members and the witness, quorum
//! and fencing.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

/// The environment variable that overrides the node's name (as Rauthy's
/// `HOSTNAME_OVERWRITE` does): for containers whose host names are random.
pub const NODE_NAME_ENV: &str = "VIPX_NODE_NAME";

/// `[cluster]`
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// A file holding the cluster secret, the same on every node (at least
    /// 16 bytes; surrounding whitespace is not part of it; it may be the
    /// file of `[sync] secret_file`). With it, every heartbeat carries a
    /// SipHash-2-4 tag under a key derived from the secret and an (epoch,
    /// sequence) that only grows; the XDP program drops the heartbeats
    /// whose tag is wrong (`heartbeat_bad_tag`) or that are not newer than
    /// the last from their source (`heartbeat_replay`), so a forged or
    /// replayed heartbeat can neither force a takeover nor hold one off.
    /// Without it, heartbeats are checked only by source, TTL 255 and peer
    /// list. The cluster endpoints (`/api/v1/ha/*`) require it.
    pub secret_file: Option<PathBuf>,
    /// Every node of the cluster (this one included), by name and API
    /// address. With members, a node may be (or become) MASTER only while
    /// it sees a majority of the voters (the members and the witness).
    #[serde(default)]
    pub members: Vec<Member>,
    /// A witness (`vipx-agent witness`): a vote without a data plane that
    /// makes two nodes safe against a partition.
    #[serde(default)]
    pub witness: Option<Member>,
    /// How often a node pings every other voter (`POST /api/v1/ha/ping`).
    #[serde(default = "default_ping_interval", with = "humantime_serde")]
    pub ping_interval: Duration,
    /// A voter not heard from for this long is not counted; a MASTER that
    /// counts fewer than a majority gives its VIPs up after it (and a
    /// backup takes over from a silent MASTER only once this passed since
    /// it last heard it, so that the MASTER fenced itself first).
    #[serde(default = "default_quorum_timeout", with = "humantime_serde")]
    pub quorum_timeout: Duration,
    /// A command run when a MASTER peer is declared dead while it may still
    /// hold the VIPs (`{node}` and `{address}` replaced in each argument;
    /// no shell). Exit status 0: fenced.
    #[serde(default)]
    pub fence: Vec<String>,
    /// Each run of `fence` is killed after this long.
    #[serde(default = "default_fence_timeout", with = "humantime_serde")]
    pub fence_timeout: Duration,
    /// How many more times a failed `fence` is run.
    #[serde(default = "default_fence_retries")]
    pub fence_retries: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            secret_file: None,
            members: Vec::new(),
            witness: None,
            ping_interval: default_ping_interval(),
            quorum_timeout: default_quorum_timeout(),
            fence: Vec::new(),
            fence_timeout: default_fence_timeout(),
            fence_retries: default_fence_retries(),
        }
    }
}

/// One voter: a member node or the witness.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Its `[node] name`.
    pub name: String,
    /// Its API address (`[api] listen`, as the other voters reach it).
    pub address: SocketAddr,
}

fn default_ping_interval() -> Duration {
    Duration::from_millis(50)
}

fn default_quorum_timeout() -> Duration {
    Duration::from_millis(300)
}

fn default_fence_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_fence_retries() -> u32 {
    2
}

/// Why this node cannot run as a member of its cluster.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MembershipError {
    #[error(
        "node {node} is not in [cluster] members ({listed}): set [node] name or {NODE_NAME_ENV} to one of them"
    )]
    NotListed { node: String, listed: String },
    #[error("node {node} is [cluster] witness: run `vipx-agent witness` there, not the agent")]
    IsWitness { node: String },
    #[error(
        "node {node} is not the [cluster] witness ({witness}): set [node] name or {NODE_NAME_ENV}"
    )]
    NotWitness { node: String, witness: String },
    #[error("[cluster] has no witness")]
    NoWitness,
}

impl ClusterConfig {
    /// Whether quorum applies (members are listed).
    pub fn enabled(&self) -> bool {
        !self.members.is_empty()
    }

    /// The voters: the members and the witness.
    pub fn voters(&self) -> usize {
        self.members.len() + usize::from(self.witness.is_some())
    }

    /// Checks that span several keys: the key at fault and why.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        if !self.enabled() {
            if self.witness.is_some() {
                return Err(("witness", "cluster.witness needs cluster.members".into()));
            }
            return Ok(());
        }
        if self.secret_file.is_none() {
            return Err((
                "members",
                "cluster.members needs cluster.secret_file: the cluster endpoints require the secret"
                    .into(),
            ));
        }
        if self.voters() < 3 {
            return Err((
                "members",
                format!(
                    "cluster: {} voter(s): a quorum needs at least 3 (three members, or two and a witness)",
                    self.voters()
                ),
            ));
        }
        let mut names = std::collections::HashSet::new();
        let mut addresses = std::collections::HashSet::new();
        for voter in self.members.iter().chain(&self.witness) {
            if voter.name.is_empty() {
                return Err(("members", "cluster: a voter without a name".into()));
            }
            if !names.insert(voter.name.as_str()) {
                return Err((
                    "members",
                    format!("cluster: {} is listed twice", voter.name),
                ));
            }
            if !addresses.insert(voter.address) {
                return Err((
                    "members",
                    format!("cluster: address {} is listed twice", voter.address),
                ));
            }
        }
        if self.ping_interval.is_zero() || self.quorum_timeout < self.ping_interval * 3 {
            return Err((
                "quorum_timeout",
                "cluster.quorum_timeout must be at least 3 ping_interval (and ping_interval non-zero)"
                    .into(),
            ));
        }
        if self.fence.first().is_some_and(String::is_empty) {
            return Err(("fence", "cluster.fence: the command is empty".into()));
        }
        if self.fence_timeout.is_zero() {
            return Err((
                "fence_timeout",
                "cluster.fence_timeout must be non-zero".into(),
            ));
        }
        Ok(())
    }

    /// This node's place: a listed member (or no cluster at all).
    pub fn check_member(&self, node: &str) -> Result<(), MembershipError> {
        if !self.enabled() {
            return Ok(());
        }
        if self.witness.as_ref().is_some_and(|w| w.name == node) {
            return Err(MembershipError::IsWitness {
                node: node.to_owned(),
            });
        }
        if self.members.iter().any(|m| m.name == node) {
            return Ok(());
        }
        Err(MembershipError::NotListed {
            node: node.to_owned(),
            listed: self
                .members
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// This node as the witness.
    pub fn check_witness(&self, node: &str) -> Result<&Member, MembershipError> {
        let witness = self.witness.as_ref().ok_or(MembershipError::NoWitness)?;
        if witness.name == node {
            Ok(witness)
        } else {
            Err(MembershipError::NotWitness {
                node: node.to_owned(),
                witness: witness.name.clone(),
            })
        }
    }

    /// A voter by name.
    pub fn voter(&self, name: &str) -> Option<&Member> {
        self.members
            .iter()
            .chain(&self.witness)
            .find(|m| m.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, last: u8) -> Member {
        Member {
            name: name.into(),
            address: SocketAddr::from(([10, 0, 0, last], 9469)),
        }
    }

    fn two_and_witness() -> ClusterConfig {
        ClusterConfig {
            secret_file: Some("/etc/vipx/cluster.secret".into()),
            members: vec![member("n1", 1), member("n2", 2)],
            witness: Some(member("w", 3)),
            ..ClusterConfig::default()
        }
    }

    #[test]
    fn a_node_must_find_itself_among_the_members() {
        let cluster = two_and_witness();
        assert_eq!(cluster.check(), Ok(()));
        assert_eq!(cluster.check_member("n2"), Ok(()));
        let err = cluster.check_member("n9").expect_err("n9 is not listed");
        assert_eq!(
            err.to_string(),
            "node n9 is not in [cluster] members (n1, n2): set [node] name or VIPX_NODE_NAME to one of them"
        );
        assert!(matches!(
            cluster.check_member("w"),
            Err(MembershipError::IsWitness { .. })
        ));
        assert!(cluster.check_witness("w").is_ok());
        assert!(cluster.check_witness("n1").is_err());
        assert_eq!(ClusterConfig::default().check_member("anyone"), Ok(()));
    }

    #[test]
    fn a_quorum_needs_three_voters_and_the_secret() {
        let mut two = two_and_witness();
        two.witness = None;
        assert_eq!(two.check().map_err(|e| e.0), Err("members"));
        let mut open = two_and_witness();
        open.secret_file = None;
        assert_eq!(open.check().map_err(|e| e.0), Err("members"));
        let mut twice = two_and_witness();
        twice.members.push(member("n1", 9));
        assert_eq!(twice.check().map_err(|e| e.0), Err("members"));
        let mut fast = two_and_witness();
        fast.quorum_timeout = fast.ping_interval * 2;
        assert_eq!(fast.check().map_err(|e| e.0), Err("quorum_timeout"));
        let lone = ClusterConfig {
            witness: Some(member("w", 3)),
            ..ClusterConfig::default()
        };
        assert_eq!(lone.check().map_err(|e| e.0), Err("witness"));
    }
}
