//! What the voters send each other over HTTP (`/api/v1/ha/*`), as JSON.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// One group of the sender, as it stands.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupReport {
    pub name: String,
    /// MASTER, BACKUP or FAULT.
    pub state: String,
    pub priority: u8,
}

/// A MASTER the sender sees alive: itself, or a member it heard within
/// the quorum timeout saying so.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct MasterSeen {
    pub group: String,
    pub node: String,
}

/// `POST /api/v1/ha/register`: a node starting (or a voter that forgot it)
/// introduces itself.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Register {
    pub node: String,
    /// The sender's start (ns since the Unix epoch): a new one is a restart.
    pub epoch: u64,
}

/// The answer to a registration: who the receiver knows.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Registered {
    pub node: String,
    pub registered: Vec<String>,
}

/// `POST /api/v1/ha/ping`, every `ping_interval`, to every other voter.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ping {
    pub node: String,
    pub epoch: u64,
    #[serde(default)]
    pub groups: Vec<GroupReport>,
    #[serde(default)]
    pub masters: Vec<MasterSeen>,
    /// Asks the witness for its vote (or, false, gives it back).
    #[serde(default)]
    pub want_vote: bool,
}

/// The answer to a ping.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pong {
    pub node: String,
    pub epoch: u64,
    /// "node" or "witness".
    pub role: String,
    /// Whether the receiver knows the sender (false: register again).
    pub registered: bool,
    #[serde(default)]
    pub groups: Vec<GroupReport>,
    #[serde(default)]
    pub masters: Vec<MasterSeen>,
    /// The witness: whom its vote belongs to now.
    #[serde(default)]
    pub vote: Option<String>,
}

/// `GET /api/v1/ha/nodes`: the cluster as this voter sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodesReport {
    pub node: String,
    pub role: String,
    pub quorum: QuorumReport,
    pub voters: Vec<VoterReport>,
}

/// The quorum as this voter counts it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct QuorumReport {
    pub held: bool,
    /// Voters counted (this one included).
    pub seen: usize,
    pub voters: usize,
    /// The witness's vote is this node's.
    pub witness_vote: bool,
    /// The witness: whom its vote belongs to.
    #[serde(default)]
    pub vote_holder: Option<String>,
}

/// One voter.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VoterReport {
    pub name: String,
    pub address: SocketAddr,
    /// "node", "witness", or "self".
    pub role: String,
    pub registered: bool,
    /// Heard within the quorum timeout.
    pub up: bool,
    /// Since it was last heard, in ms.
    pub last_seen_ms: Option<u64>,
    #[serde(default)]
    pub groups: Vec<GroupReport>,
}

#[cfg(test)]
impl NodesReport {
    /// Node n1 of two and a witness, with the witness unreachable.
    pub(crate) fn example() -> Self {
        let voter = |name: &str, role: &str, up: bool| VoterReport {
            name: name.into(),
            address: "10.0.0.9:9469".parse().expect("addr"),
            role: role.into(),
            registered: true,
            up,
            last_seen_ms: Some(10),
            groups: Vec::new(),
        };
        NodesReport {
            node: "n1".into(),
            role: "node".into(),
            quorum: QuorumReport {
                held: true,
                seen: 2,
                voters: 3,
                witness_vote: false,
                vote_holder: None,
            },
            voters: vec![
                voter("n1", "self", true),
                voter("n2", "node", true),
                voter("w", "witness", false),
            ],
        }
    }
}
