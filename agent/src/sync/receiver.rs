//! The receiving end: accepts the peers' connections (over TLS when
//! configured, which checks their certificate), checks their proof of the
//! cluster secret, installs the flows they send in this node's maps at
//! once, and acknowledges each batch.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, sync::watch};
use tracing::{debug, info, warn};

use super::{
    Credentials, SyncMetrics,
    auth::{Role, nonce},
    session::{self, Conn, SyncError},
    wire::{Entry, Message, Resume, VERSION},
};
use crate::{
    balancer::{SharedTable, replica},
    dataplane::monotonic_ns,
    locks::lock,
};

/// What the receiving end knows of each sender, by node name.
#[derive(Default)]
struct Progress {
    /// The sender's epoch and the last batch installed from it.
    last: HashMap<String, (u64, u64)>,
    /// The connection through which each synced sender said `Synced`.
    synced_by: HashMap<String, u64>,
    /// Connections accepted so far (their numbers).
    connections: u64,
}

/// Serves the replication port.
pub struct Receiver {
    pub node: String,
    pub credentials: Credentials,
    pub table: SharedTable,
    pub metrics: Arc<SyncMetrics>,
    progress: std::sync::Mutex<Progress>,
    /// The peers whose whole table this node holds now: they said `Synced`
    /// on a connection that is still up (one that ends, silent for
    /// [`session::SILENCE`] or closed, takes its peer out until it says
    /// `Synced` again).
    synced: watch::Sender<Vec<String>>,
}

impl Receiver {
    pub fn new(
        node: String,
        credentials: Credentials,
        table: SharedTable,
        metrics: Arc<SyncMetrics>,
    ) -> Self {
        Self {
            node,
            credentials,
            table,
            metrics,
            progress: std::sync::Mutex::default(),
            synced: watch::Sender::new(Vec::new()),
        }
    }

    /// The peers whose whole table this node holds, as it changes.
    pub fn synced(&self) -> watch::Receiver<Vec<String>> {
        self.synced.subscribe()
    }

    /// Accepts connections until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, from)) => {
                    let this = Arc::clone(&self);
                    tokio::spawn(async move { this.connection(stream, from).await });
                }
                Err(err) => {
                    warn!("replication: accepting a connection: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// One sender's connection, from its first byte to its end (logged).
    async fn connection(&self, stream: tokio::net::TcpStream, from: SocketAddr) {
        let tls = self.credentials.tls.as_deref();
        let mut conn = match session::accept(stream, tls).await {
            Ok(conn) => conn,
            Err(err) => {
                if matches!(err, SyncError::Tls(_)) {
                    self.metrics.refused_tls.inc();
                }
                warn!(%from, "replication from {from} refused: {err}");
                return;
            }
        };
        match self.session(&mut conn, from).await {
            Err(SyncError::Closed) => debug!(%from, "replication: the sender closed"),
            Err(err) => {
                warn!(%from, "replication from {from} ended: {err}");
                if matches!(err, SyncError::BadProof | SyncError::Version(_)) {
                    let reason = err.to_string();
                    let _ = session::send(&mut conn, &Message::Refused { reason }).await;
                }
            }
            Ok(()) => {}
        }
    }

    /// One sender's connection: handshake, then batches until it closes.
    async fn session(&self, conn: &mut Conn, from: SocketAddr) -> Result<(), SyncError> {
        let (node, epoch, last) = self.handshake(conn).await?;
        info!(peer = node, %from, epoch, after = last, "replication from {node} accepted");
        let id = {
            let mut progress = lock(&self.progress);
            progress.connections += 1;
            progress.connections
        };
        let ended = self.take(conn, &node, (epoch, last), id).await;
        let mut progress = lock(&self.progress);
        if progress.synced_by.get(&node) == Some(&id) {
            progress.synced_by.remove(&node);
            self.synced
                .send_modify(|synced| synced.retain(|n| n != &node));
        }
        ended
    }

    /// Takes `node`'s messages (its run's `epoch`, `last` batch installed)
    /// on connection `id` until it ends.
    async fn take(
        &self,
        conn: &mut Conn,
        node: &str,
        (epoch, mut last): (u64, u64),
        id: u64,
    ) -> Result<(), SyncError> {
        let node = node.to_owned();
        loop {
            match session::recv_within(conn, session::SILENCE).await? {
                Message::Ping => {
                    session::send(conn, &Message::Pong).await?;
                }
                Message::Batch { seq, entries } => {
                    if seq <= last {
                        // A resend of what is installed already.
                        session::send(conn, &Message::Ack { seq }).await?;
                        continue;
                    }
                    if seq != last + 1 {
                        return Err(SyncError::Gap { last, got: seq });
                    }
                    self.install(&node, &entries);
                    last = seq;
                    lock(&self.progress).last.insert(node.clone(), (epoch, seq));
                    session::send(conn, &Message::Ack { seq }).await?;
                }
                Message::Synced { seq } => {
                    info!(
                        peer = node,
                        seq, "replication: this node holds every flow of {node}"
                    );
                    lock(&self.progress).synced_by.insert(node.clone(), id);
                    self.synced.send_modify(|synced| {
                        if !synced.contains(&node) {
                            synced.push(node.clone());
                        }
                    });
                }
                other => return Err(SyncError::Unexpected(session::name(&other))),
            }
        }
    }

    /// Hello, Welcome (our proof), Proven (theirs). Returns the sender's
    /// node, epoch and the last batch of that epoch installed here.
    async fn handshake(&self, conn: &mut Conn) -> Result<(String, u64, u64), SyncError> {
        let (node, epoch, theirs) = match session::recv_soon(conn).await? {
            Message::Hello {
                version,
                node,
                epoch,
                nonce,
            } => {
                if version != VERSION {
                    return Err(SyncError::Version(version));
                }
                (node, epoch, nonce)
            }
            other => return Err(SyncError::Unexpected(session::name(&other))),
        };
        let ours = nonce();
        let secret = &self.credentials.secret;
        let last = lock(&self.progress)
            .last
            .get(&node)
            .filter(|(e, _)| *e == epoch)
            .map(|(_, seq)| *seq);
        let welcome = Message::Welcome {
            node: self.node.clone(),
            nonce: ours,
            proof: secret.prove(Role::Receiver, &ours, &theirs),
            resume: last.map_or(Resume::Bulk, Resume::After),
        };
        session::send(conn, &welcome).await?;
        match session::recv_soon(conn).await? {
            Message::Proven { proof } if secret.verify(Role::Sender, &theirs, &ours, &proof) => {}
            Message::Proven { .. } => {
                self.metrics.refused.inc();
                return Err(SyncError::BadProof);
            }
            other => return Err(SyncError::Unexpected(session::name(&other))),
        }
        if last.is_none() {
            // A new run of that agent: what it sends now replaces nothing
            // we hold, and its `Synced` is to come again.
            let mut progress = lock(&self.progress);
            progress.last.insert(node.clone(), (epoch, 0));
            progress.synced_by.remove(&node);
            self.synced
                .send_modify(|synced| synced.retain(|n| n != &node));
        }
        Ok((node, epoch, last.unwrap_or(0)))
    }

    /// Installs a batch in this node's maps.
    fn install(&self, node: &str, entries: &[Entry]) {
        let now = monotonic_ns();
        let table = lock(&self.table);
        for entry in entries {
            match entry {
                Entry::Flow(record) => match replica::install(&table, record, now) {
                    Ok(()) => self.metrics.installed.inc(),
                    Err(err) => {
                        self.metrics.not_installed.inc();
                        debug!(peer = node, "replicated flow not installed: {err}");
                    }
                },
                Entry::End(record) => {
                    replica::forget(&table, record);
                    self.metrics.ended.inc();
                }
            }
        }
    }
}
