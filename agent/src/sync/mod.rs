//! Flow replication between the nodes (`[sync]`): every node streams the
//! changes of its flow table to every peer, so that a standby holds the
//! flows before it takes over and a failover resets nothing.
//!
//! - [`wire`]: the frames and messages;
//! - [`auth`]: the cluster secret and the proofs that open a connection;
//! - [`sender`]: one connection per peer, kept up: handshake, resume or
//!   whole-table transfer, then numbered batches kept until acknowledged;
//! - [`receiver`]: installs what the peers send in this node's maps at once
//!   and acknowledges it;
//! - [`session`]: what both ends share.
//!
//! Acknowledgements are the receiver's "installed"; the data path never
//! waits for them (a flow is forwarded as soon as XDP created it), so what
//! a failover can lose is the changes of the last round trip.

pub mod auth;
mod events;
pub mod gate;
pub mod receiver;
pub mod sender;
mod session;
pub mod wire;

use std::{net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, task::JoinHandle};
use tracing::{info, warn};

pub use session::SyncError;

pub use crate::metrics::SyncMetrics;
use crate::{balancer::SharedTable, dataplane::FlowEvents, locks::lock};
use auth::Secret;
use receiver::Receiver;
use sender::{Link, Queue};
use wire::Entry;

/// Changes queued for one peer, at most: past this its link sends the whole
/// table once it can.
const QUEUE: usize = 65_536;

/// What replication needs to start.
pub struct SyncSetup {
    pub node: String,
    pub listen: SocketAddr,
    pub peers: Vec<SocketAddr>,
    pub secret: Secret,
    pub table: SharedTable,
    pub metrics: Arc<SyncMetrics>,
    /// The program's flow events (none: peers get whole tables only, at
    /// each connection).
    pub events: Option<FlowEvents>,
    /// How long the readiness gate waits for a peer's whole table.
    pub ready_timeout: std::time::Duration,
}

/// Replication running: the receiver, a link per peer, and the queues that
/// feed the links.
pub struct Replicator {
    queues: Vec<Queue>,
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
            setup.secret.clone(),
            Arc::clone(&setup.table),
            Arc::clone(&setup.metrics),
        ));
        let (ready, gate_task) =
            gate::spawn(receiver.synced(), setup.peers.len(), setup.ready_timeout);
        let mut tasks = vec![
            tokio::spawn(Arc::clone(&receiver).serve(listener)),
            gate_task,
        ];
        let epoch = getrandom::u64().expect("the OS random generator works");
        let mut queues = Vec::new();
        for peer in setup.peers {
            let (link, queue) = Link::new(
                peer,
                setup.node.clone(),
                epoch,
                setup.secret.clone(),
                Arc::clone(&setup.table),
                Arc::clone(&setup.metrics),
                QUEUE,
            );
            tasks.push(tokio::spawn(link.run()));
            queues.push(queue);
        }
        if let Some(mut events) = setup.events {
            match events.enable(true) {
                Ok(()) => {
                    let maps = Arc::clone(lock(&setup.table).maps());
                    tasks.push(tokio::spawn(events::forward(events, maps, queues.clone())));
                }
                Err(err) => warn!("replication: turning the flow events on: {err}"),
            }
        }
        info!(%listen, peers = queues.len(), "flow replication started");
        Ok(Self {
            queues,
            receiver,
            ready,
            tasks,
            listen,
        })
    }

    /// Queues a change for every peer; never waits (a full queue turns into
    /// a whole-table transfer to that peer).
    pub fn publish(&self, entry: &Entry) {
        let change = sender::Change {
            entry: entry.clone(),
            at_ns: crate::dataplane::monotonic_ns(),
        };
        events::publish(&self.queues, &change);
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
