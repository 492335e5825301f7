//! Flow replication between the nodes (`[sync]`): every node streams the
//! changes of its flow table to every peer, so that a standby holds the
//! flows before it takes over and a failover resets nothing.
//!
//! - [`wire`]: the frames and messages;
//! - [`auth`]: the cluster secret and the proofs that open a connection;
//! - [`tls`]: TLS 1.3 with client certificates under it (`[sync.tls]`);
//! - [`sender`]: one connection per peer, kept up: handshake, resume or
//!   whole-table transfer, then numbered batches kept until acknowledged;
//! - [`receiver`]: installs what the peers send in this node's maps at once
//!   and acknowledges it;
//! - [`ack`]: the ack level, counted over the peers' acknowledgements;
//! - [`session`]: what both ends share.
//!
//! Acknowledgements are the receiver's "installed". The data path never
//! waits for any of them, at any ack level: a flow is forwarded as soon as
//! XDP creates it, so what a failover can lose is the changes of the last
//! round trip. The ack level (`[sync] ack`) says when a change counts as
//! acknowledged:
//! - `none`: never tracked. Batches are sent and forgotten, nothing is
//!   resent; a peer that reconnects gets the whole table instead (the
//!   changes in flight when a connection broke reach it with that).
//! - `once` (the default): when one peer has installed it. Each peer's
//!   batches are kept until it acknowledges them and resent after a
//!   reconnection.
//! - `quorum`: when a majority of the N nodes, this one included, hold it:
//!   floor(N/2) peers (2 or 3 nodes: 1 peer; 4 or 5 nodes: 2 peers).
//!   Batches are kept and resent as with `once`.
//!
//! What waits for the level is only a planned handover: a stopping MASTER
//! waits, at most `handover_wait`, until every change it had published
//! has reached it ([`Replicator::before_handover`]) and only then gives up
//! its VIPs.

pub mod ack;
pub mod auth;
mod events;
pub mod gate;
pub mod receiver;
pub mod sender;
mod session;
pub mod tls;
pub mod wire;

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{net::TcpListener, task::JoinHandle};
use tracing::{debug, info, warn};

pub use session::SyncError;

pub use crate::metrics::SyncMetrics;
use crate::{
    balancer::SharedTable,
    config::{AckLevel, SyncConfig},
    dataplane::FlowEvents,
    locks::lock,
};
use ack::Ledger;
use auth::{Secret, SecretError};
use receiver::Receiver;
use sender::{Link, Queue, Shared};
use tls::{Tls, TlsError};
use wire::Entry;

/// Changes queued for one peer, at most: past this its link sends the whole
/// table once it can.
const QUEUE: usize = 65_536;

/// What proves this node to its peers: the cluster secret and, with
/// `[sync.tls]`, its certificate. Never shown.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub secret: Secret,
    pub tls: Option<Arc<Tls>>,
}

/// Why the files of `[sync]` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl Credentials {
    /// Reads the secret and the TLS files of `[sync]` (at start, and by
    /// `check-config`).
    pub fn load(config: &SyncConfig) -> Result<Self, CredentialsError> {
        let secret = Secret::load(&config.secret_file)?;
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(Tls::load(files, config.listen)?)),
            None => None,
        };
        Ok(Self { secret, tls })
    }
}

/// What replication needs to start.
pub struct SyncSetup {
    pub node: String,
    pub listen: SocketAddr,
    pub peers: Vec<SocketAddr>,
    pub credentials: Credentials,
    /// When a change counts as acknowledged.
    pub ack: AckLevel,
    /// How long [`Replicator::before_handover`] waits for the ack level.
    pub handover_wait: Duration,
    pub table: SharedTable,
    pub metrics: Arc<SyncMetrics>,
    /// The program's flow events (none: peers get whole tables only, at
    /// each connection).
    pub events: Option<FlowEvents>,
    /// How long the readiness gate waits for a peer's whole table.
    pub ready_timeout: std::time::Duration,
}

/// Replication running: the receiver, a link per peer, the queues that
/// feed the links, and the ledger of what reached the ack level.
pub struct Replicator {
    queues: Vec<Queue>,
    maps: Arc<crate::dataplane::Maps>,
    ledger: Arc<Ledger>,
    handover_wait: Duration,
    receiver: Arc<Receiver>,
    /// Open while this node holds a peer's whole table (see [`gate`]).
    ready: tokio::sync::watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Where the receiver listens (the configured address, its port known
    /// once bound).
    pub listen: SocketAddr,
}

impl Replicator {
    /// Binds the replication port and starts the links.
    pub async fn start(setup: SyncSetup) -> std::io::Result<Self> {
        let listener = TcpListener::bind(setup.listen).await?;
        let listen = listener.local_addr()?;
        let receiver = Arc::new(Receiver::new(
            setup.node.clone(),
            setup.credentials.clone(),
            Arc::clone(&setup.table),
            Arc::clone(&setup.metrics),
        ));
        let (ready, gate_task) =
            gate::spawn(receiver.synced(), setup.peers.len(), setup.ready_timeout);
        let mut tasks = vec![
            tokio::spawn(Arc::clone(&receiver).serve(listener)),
            gate_task,
        ];
        let ledger = Arc::new(Ledger::new(
            setup.ack,
            setup.peers.len(),
            Arc::clone(&setup.metrics),
        ));
        let shared = Arc::new(Shared {
            node: setup.node,
            epoch: getrandom::u64().expect("the OS random generator works"),
            credentials: setup.credentials,
            table: Arc::clone(&setup.table),
            metrics: setup.metrics,
            ledger: Arc::clone(&ledger),
        });
        let mut queues = Vec::new();
        for (index, peer) in setup.peers.into_iter().enumerate() {
            let (link, queue) = Link::new(peer, index, Arc::clone(&shared), QUEUE);
            tasks.push(tokio::spawn(link.run()));
            queues.push(queue);
        }
        let maps = Arc::clone(lock(&setup.table).maps());
        if let Some(mut events) = setup.events {
            match events.enable(true) {
                Ok(()) => {
                    let forward = events::forward(
                        events,
                        Arc::clone(&maps),
                        Arc::clone(&ledger),
                        queues.clone(),
                    );
                    tasks.push(tokio::spawn(forward));
                }
                Err(err) => warn!("replication: turning the flow events on: {err}"),
            }
        }
        let tls = if shared.credentials.tls.is_some() {
            "TLS 1.3"
        } else {
            "TCP"
        };
        info!(%listen, peers = queues.len(), ack = setup.ack.as_str(), "flow replication started over {tls}");
        Ok(Self {
            queues,
            maps,
            ledger,
            handover_wait: setup.handover_wait,
            receiver,
            ready,
            tasks,
            listen,
        })
    }

    /// Queues a change for every peer; never waits (a full queue turns into
    /// a whole-table transfer to that peer).
    pub fn publish(&self, entry: &Entry) {
        let at_ns = crate::dataplane::monotonic_ns();
        events::publish(&self.ledger, &self.queues, entry.clone(), at_ns);
    }

    /// Where the flow collector sends its news for the peers.
    pub fn news_sink(&self) -> crate::dataplane::NewsSink {
        events::news_sink(
            Arc::clone(&self.maps),
            Arc::clone(&self.ledger),
            self.queues.clone(),
        )
    }

    /// Waits, at most `within`, until every change published so far has
    /// reached the ack level: `Ok` with how long that took (zero when none
    /// was short of it: always with `none` or without peers), `Err` with
    /// how many of them had not when `within` ran out.
    pub async fn drained(&self, within: Duration) -> Result<Duration, usize> {
        self.ledger.drained(within).await
    }

    /// Before a planned handover (a stopping MASTER): waits, at most
    /// `handover_wait`, for every published change to reach the ack level,
    /// and says how it went.
    pub async fn before_handover(&self) {
        let level = self.ledger.level().as_str();
        let started = Instant::now();
        match self.drained(self.handover_wait).await {
            Ok(Duration::ZERO) => {
                debug!(
                    ack = level,
                    "replication: no flow change short of the ack level"
                )
            }
            Ok(took) => info!(
                ack = level,
                "replication: every published flow change reached the ack level in {took:?}; handing over"
            ),
            Err(unacked) => warn!(
                ack = level,
                unacked,
                "replication: {unacked} flow changes short of the ack level after {:?} (handover_wait); handing over anyway",
                started.elapsed()
            ),
        }
    }

    /// The peers whose whole table this node holds, as it changes.
    pub fn synced(&self) -> tokio::sync::watch::Receiver<Vec<String>> {
        self.receiver.synced()
    }

    /// The readiness gate ([`gate`]): true while this node may take a VIP
    /// (back).
    pub fn ready(&self) -> tokio::sync::watch::Receiver<bool> {
        self.ready.clone()
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
