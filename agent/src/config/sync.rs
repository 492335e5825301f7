//! `[sync]`: flow replication to the peers (off when the section is
//! absent), with its ack level and its optional TLS (`[sync.tls]`).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

/// The longest `handover_wait`: a stopping MASTER holds its VIPs while it
/// waits.
pub const MAX_HANDOVER_WAIT: Duration = Duration::from_secs(10);

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
    /// When a flow change counts as acknowledged (the data path never
    /// waits for it; a stopping MASTER does, up to `handover_wait`).
    #[serde(default)]
    pub ack: AckLevel,
    /// How long a stopping MASTER waits for its published changes to reach
    /// the ack level before it hands its VIPs over.
    #[serde(default = "default_handover_wait", with = "humantime_serde")]
    pub handover_wait: Duration,
    /// TLS 1.3 with client certificates on every replication connection
    /// (`[sync.tls]`; plain TCP without it).
    #[serde(default)]
    pub tls: Option<SyncTls>,
}

/// `[sync] ack`: when a change of this node's flow table counts as
/// acknowledged.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AckLevel {
    /// Sent and forgotten: nothing is kept for a resend, a reconnected
    /// peer gets the whole table.
    None,
    /// Installed by at least one peer (each peer's batches are kept until
    /// it acknowledges them, and resent after a reconnection).
    #[default]
    Once,
    /// Held by a majority of the nodes, this one included: floor(N/2)
    /// peers of N nodes.
    Quorum,
}

impl AckLevel {
    /// The level as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Once => "once",
            Self::Quorum => "quorum",
        }
    }
}

/// `[sync.tls]`: this node's certificate and key, and the cluster's CA
/// (PEM files). A certificate must name its node's sync IP address as a
/// subjectAltName: peers are reached by address.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SyncTls {
    /// This node's certificate (then any intermediates), PEM.
    pub cert_file: PathBuf,
    /// The certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The CA that signs every node's certificate, PEM.
    pub ca_file: PathBuf,
}

fn default_ready_timeout() -> Duration {
    Duration::from_secs(3)
}

fn default_handover_wait() -> Duration {
    Duration::from_secs(1)
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
        if self.handover_wait > MAX_HANDOVER_WAIT {
            return Err((
                "handover_wait",
                format!(
                    "sync.handover_wait: at most {MAX_HANDOVER_WAIT:?} (a stopping MASTER holds its VIPs while it waits)"
                ),
            ));
        }
        let files =
            [("secret_file", &self.secret_file)]
                .into_iter()
                .chain(self.tls.iter().flat_map(|tls| {
                    [
                        ("cert_file", &tls.cert_file),
                        ("key_file", &tls.key_file),
                        ("ca_file", &tls.ca_file),
                    ]
                }));
        for (key, path) in files {
            if path.as_os_str().is_empty() {
                let section = if key == "secret_file" {
                    "sync"
                } else {
                    "sync.tls"
                };
                return Err((key, format!("{section}.{key}: a path is needed")));
            }
        }
        Ok(())
    }
}
