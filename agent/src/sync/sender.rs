//! The sending end: one connection per peer, kept up. It proves the
//! cluster secret (and checks the peer's proof), resumes where the peer's
//! acknowledgements stopped or sends the whole flow table when the peer
//! holds nothing of this run, then streams changes as they come, in
//! numbered batches, keeping every batch until it is acknowledged.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    net::TcpStream,
    sync::mpsc::{self, error::TrySendError},
};
use tracing::{debug, info, warn};

use super::{
    SyncMetrics,
    auth::{Role, Secret, nonce},
    session::{self, Conn, SyncError, framed},
    wire::{Entry, MAX_BATCH, Message, Resume, VERSION},
};
use crate::{
    balancer::{SharedTable, replica},
    dataplane::monotonic_ns,
    locks::lock,
};

/// Batches kept for a resend, at most; past this the link stops taking
/// changes until acknowledgements come (and the queue in front of it fills,
/// which turns into a whole-table transfer).
const MAX_UNACKED: usize = 1024;
/// The wait between two connection attempts.
const RETRY: Duration = Duration::from_millis(200);

/// A change and when it happened (`CLOCK_MONOTONIC`: for a new flow, when
/// the program created it).
#[derive(Clone, Debug)]
pub struct Change {
    pub entry: Entry,
    pub at_ns: u64,
}

/// A batch sent and not yet acknowledged.
struct Sent {
    seq: u64,
    entries: Vec<Entry>,
    /// When its oldest change happened (none for a whole-table transfer).
    oldest_ns: Option<u64>,
}

/// The queue in front of one peer's link.
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::Sender<Change>,
    /// A change did not fit in the queue (or was lost before it): the link
    /// sends the whole table.
    overflowed: Arc<AtomicBool>,
}

impl Queue {
    /// Queues a change; never waits (a full queue turns into a whole-table
    /// transfer).
    pub fn push(&self, change: Change) {
        match self.tx.try_send(change) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(_)) => self.resync(),
        }
    }

    /// Asks the link for a whole-table transfer.
    pub fn resync(&self) {
        self.overflowed.store(true, Ordering::Release);
    }
}

/// One peer's link.
pub struct Link {
    pub peer: SocketAddr,
    pub node: String,
    /// This run of the agent (random at start).
    pub epoch: u64,
    pub secret: Secret,
    pub table: SharedTable,
    pub metrics: Arc<SyncMetrics>,
    pub changes: mpsc::Receiver<Change>,
    pub overflowed: Arc<AtomicBool>,
    /// Batches sent and not yet acknowledged, oldest first.
    unacked: VecDeque<Sent>,
    /// The number of the next batch.
    next_seq: u64,
}

impl Link {
    pub fn new(
        peer: SocketAddr,
        node: String,
        epoch: u64,
        secret: Secret,
        table: SharedTable,
        metrics: Arc<SyncMetrics>,
        capacity: usize,
    ) -> (Self, Queue) {
        let (tx, changes) = mpsc::channel(capacity);
        let overflowed = Arc::new(AtomicBool::new(false));
        let link = Self {
            peer,
            node,
            epoch,
            secret,
            table,
            metrics,
            changes,
            overflowed: Arc::clone(&overflowed),
            unacked: VecDeque::new(),
            next_seq: 1,
        };
        (link, Queue { tx, overflowed })
    }

    /// Keeps the link up until the task is dropped.
    pub async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            match self.session().await {
                Ok(()) => failures = 0,
                Err(err) => {
                    // Said once per outage, then quietly retried.
                    if failures == 0 {
                        warn!(peer = %self.peer, "replication to {}: {err}", self.peer);
                    } else {
                        debug!(peer = %self.peer, "replication to {}: {err}", self.peer);
                    }
                    failures = failures.saturating_add(1);
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    async fn session(&mut self) -> Result<(), SyncError> {
        let stream =
            tokio::time::timeout(session::HANDSHAKE_TIMEOUT, TcpStream::connect(self.peer))
                .await
                .map_err(|_| SyncError::Timeout(session::HANDSHAKE_TIMEOUT))??;
        let mut conn = framed(stream);
        let (peer_node, resume) = self.handshake(&mut conn).await?;
        info!(peer = peer_node, addr = %self.peer, ?resume, "replication to {peer_node} connected");
        match resume {
            Resume::After(seq) => {
                self.acknowledged(seq);
                let missing = self
                    .unacked
                    .front()
                    .is_some_and(|first| first.seq > seq + 1)
                    || (self.unacked.is_empty() && seq + 1 < self.next_seq);
                if missing || self.overflowed.swap(false, Ordering::AcqRel) {
                    self.bulk(&mut conn).await?;
                } else {
                    self.resend(&mut conn).await?;
                }
            }
            Resume::Bulk => {
                self.unacked.clear();
                self.overflowed.store(false, Ordering::Release);
                self.bulk(&mut conn).await?;
            }
        }
        self.stream(&mut conn).await
    }

    /// Hello, Welcome (the peer's proof), Proven (ours).
    async fn handshake(&self, conn: &mut Conn) -> Result<(String, Resume), SyncError> {
        let ours = nonce();
        let hello = Message::Hello {
            version: VERSION,
            node: self.node.clone(),
            epoch: self.epoch,
            nonce: ours,
        };
        session::send(conn, &hello).await?;
        let (node, theirs, resume) = match session::recv_soon(conn).await? {
            Message::Welcome {
                node,
                nonce,
                proof,
                resume,
            } => {
                if !self.secret.verify(Role::Receiver, &nonce, &ours, &proof) {
                    self.metrics.refused.inc();
                    return Err(SyncError::BadProof);
                }
                (node, nonce, resume)
            }
            Message::Refused { reason } => return Err(SyncError::Refused(reason)),
            other => return Err(SyncError::Unexpected(session::name(&other))),
        };
        let proven = Message::Proven {
            proof: self.secret.prove(Role::Sender, &ours, &theirs),
        };
        session::send(conn, &proven).await?;
        Ok((node, resume))
    }

    /// Forgets the batches the peer holds.
    fn acknowledged(&mut self, seq: u64) {
        let now = monotonic_ns();
        while self.unacked.front().is_some_and(|sent| sent.seq <= seq) {
            if let Some(sent) = self.unacked.pop_front()
                && let Some(oldest) = sent.oldest_ns
            {
                // From the change to the peer's "installed".
                let lag = now.saturating_sub(oldest) as f64 / 1e9;
                self.metrics.lag.observe(lag);
            }
        }
    }

    /// Sends again what the peer has not acknowledged.
    async fn resend(&mut self, conn: &mut Conn) -> Result<(), SyncError> {
        for sent in &self.unacked {
            let bytes = session::send(
                conn,
                &Message::Batch {
                    seq: sent.seq,
                    entries: sent.entries.clone(),
                },
            )
            .await?;
            self.metrics.resent.inc();
            self.metrics.bytes.inc_by(bytes as u64);
        }
        Ok(())
    }

    /// Sends every flow of this node's table, then `Synced`.
    async fn bulk(&mut self, conn: &mut Conn) -> Result<(), SyncError> {
        let records = {
            let table = lock(&self.table);
            let maps = table.maps();
            let now = monotonic_ns();
            maps.flows()
                .iter()
                .filter_map(|(key, flow)| replica::record(maps, key, flow, now))
                .collect::<Vec<_>>()
        };
        let count = records.len();
        for chunk in records.chunks(MAX_BATCH) {
            let entries = chunk.iter().cloned().map(Entry::Flow).collect();
            self.send_batch(conn, entries, None).await?;
        }
        session::send(
            conn,
            &Message::Synced {
                seq: self.next_seq - 1,
            },
        )
        .await?;
        self.metrics.bulks.inc();
        info!(peer = %self.peer, flows = count, "replication: the whole flow table sent");
        Ok(())
    }

    /// Numbers, keeps and sends one batch.
    async fn send_batch(
        &mut self,
        conn: &mut Conn,
        entries: Vec<Entry>,
        oldest_ns: Option<u64>,
    ) -> Result<(), SyncError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let message = Message::Batch { seq, entries };
        let bytes = session::send(conn, &message).await?;
        let Message::Batch { entries, .. } = message else {
            unreachable!("built above");
        };
        self.metrics.batches.inc();
        self.metrics.bytes.inc_by(bytes as u64);
        self.unacked.push_back(Sent {
            seq,
            entries,
            oldest_ns,
        });
        Ok(())
    }

    /// Streams changes as they come, and takes acknowledgements.
    async fn stream(&mut self, conn: &mut Conn) -> Result<(), SyncError> {
        loop {
            if self.overflowed.swap(false, Ordering::AcqRel) {
                self.bulk(conn).await?;
            }
            let room = self.unacked.len() < MAX_UNACKED;
            tokio::select! {
                first = self.changes.recv(), if room => {
                    let Some(first) = first else { return Ok(()) };
                    // Whatever else is already queued goes in the same batch:
                    // no wait, so the flush bound is the time to send.
                    let mut oldest = first.at_ns;
                    let mut entries = vec![first.entry];
                    while entries.len() < MAX_BATCH {
                        match self.changes.try_recv() {
                            Ok(change) => {
                                oldest = oldest.min(change.at_ns);
                                entries.push(change.entry);
                            }
                            Err(_) => break,
                        }
                    }
                    self.send_batch(conn, entries, Some(oldest)).await?;
                }
                message = session::recv(conn) => match message? {
                    Message::Ack { seq } => self.acknowledged(seq),
                    Message::Refused { reason } => return Err(SyncError::Refused(reason)),
                    other => return Err(SyncError::Unexpected(session::name(&other))),
                },
            }
            self.metrics.unacked.set(self.unacked.len() as i64);
        }
    }
}
