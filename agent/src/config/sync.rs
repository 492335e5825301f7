//! `[sync]`: flow replication to the peers (off when the section is
//! absent).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

/// `[sync]`
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Where this node accepts its peers' replication connections (TCP).
    pub listen: SocketAddr,
    /// The peers' `listen` addresses: this node streams its flow changes
    /// to each.
    #[serde(default)]
    pub peers: Vec<SocketAddr>,
    /// A file holding the cluster secret, the same on every node (at least
    /// 16 bytes; surrounding whitespace is not part of it). The secret
    /// itself is never written in the configuration.
    pub secret_file: PathBuf,
    /// How long a starting node waits for a peer's whole flow table before
    /// it takes part in its groups (and so before it may preempt).
    #[serde(default = "default_ready_timeout", with = "humantime_serde")]
    pub ready_timeout: Duration,
}

fn default_ready_timeout() -> Duration {
    Duration::from_secs(3)
}

impl SyncConfig {
    /// Checks of the section on its own: `Err` is the key at fault and the
    /// message.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        if self.peers.contains(&self.listen) {
            return Err((
                "peers",
                format!(
                    "sync.peers: {} is this node's own sync.listen; a node does not replicate to itself",
                    self.listen
                ),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for peer in &self.peers {
            if !seen.insert(peer) {
                return Err(("peers", format!("sync.peers: {peer} is listed twice")));
            }
        }
        if self.secret_file.as_os_str().is_empty() {
            return Err((
                "secret_file",
                "sync.secret_file: a path is needed".to_owned(),
            ));
        }
        Ok(())
    }
}
