//! The sending end: one connection per peer, kept up (over TLS when
//! configured). It proves the cluster secret (and checks the peer's proof),
//! resumes where the peer's acknowledgements stopped or sends the whole
//! flow table when the peer holds nothing of this run (or, with `ack =
//! "none"`, at every connection), then streams changes as they come, in
//! numbered batches, keeping every batch until it is acknowledged (except
//! with `none`). Each acknowledgement tells the [`Ledger`] up to which
//! change the peer holds every one.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus::IntGauge;
use tokio::sync::mpsc::{self, error::TrySendError};
use tracing::{debug, info, warn};

use super::{
    Credentials, SyncMetrics,
    ack::Ledger,
    auth::{Role, nonce},
    session::{self, Conn, SyncError},
    wire::{Entry, MAX_BATCH, Message, Resume, VERSION},
};
use crate::{
    balancer::{SharedTable, replica},
    config::AckLevel,
    dataplane::monotonic_ns,
    locks::lock,
};

/// Batches kept for a resend, at most; past this the link stops taking
/// changes until acknowledgements come (and the queue in front of it fills,
/// which turns into a whole-table transfer).
const MAX_UNACKED: usize = 1024;
/// The wait between two connection attempts.
const RETRY: Duration = Duration::from_millis(200);

/// A change, its number (see [`Ledger`]) and when it happened
/// (`CLOCK_MONOTONIC`: for a new flow, when the program created it).
#[derive(Clone, Debug)]
pub struct Change {
    pub id: u64,
    pub entry: Entry,
    pub at_ns: u64,
}

/// A batch sent and not yet acknowledged.
struct Sent {
    seq: u64,
    entries: Vec<Entry>,
    /// When its oldest change happened (none for a whole-table transfer).
    oldest_ns: Option<u64>,
    /// Once acknowledged, the peer holds every change numbered `from..=to`
    /// (the changes of the batch after its last gap; for the last batch
    /// of a whole-table transfer, every change published before it).
    holds: Option<(u64, u64)>,
}

/// What every link of this node shares.
pub struct Shared {
    pub node: String,
    /// This run of the agent (random at start).
    pub epoch: u64,
    pub credentials: Credentials,
    pub table: SharedTable,
    pub metrics: Arc<SyncMetrics>,
    pub ledger: Arc<Ledger>,
}

/// The queue in front of one peer's link.
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::Sender<Change>,
    /// A change did not fit in the queue (or was lost before it): the link
    /// sends the whole table.
    overflowed: Arc<AtomicBool>,
    /// `vipx_sync_queue_depth` of this peer.
    depth: IntGauge,
}

impl Queue {
    /// Queues a change; never waits (a full queue turns into a whole-table
    /// transfer).
    pub fn push(&self, change: Change) {
        match self.tx.try_send(change) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(_)) => self.resync(),
        }
        let queued = self.tx.max_capacity() - self.tx.capacity();
        self.depth.set(queued as i64);
    }

    /// Asks the link for a whole-table transfer.
    pub fn resync(&self) {
        self.overflowed.store(true, Ordering::Release);
    }
}

/// One peer's link.
pub struct Link {
    pub peer: SocketAddr,
    /// The peer's place in the [`Ledger`].
    index: usize,
    shared: Arc<Shared>,
    changes: mpsc::Receiver<Change>,
    overflowed: Arc<AtomicBool>,
    depth: IntGauge,
    /// Batches sent and not yet acknowledged, oldest first (none kept with
    /// `ack = "none"`).
    unacked: VecDeque<Sent>,
    /// What this link adds to `vipx_sync_unacked_batches`.
    reported: i64,
    /// The number of the next batch.
    next_seq: u64,
    /// The peer holds every change up to this number.
    held: u64,
    /// The number of the last change taken from the queue.
    taken: u64,
}

impl Link {
    /// The link to the peer at `peer`, `index`-th in the ledger, and the
    /// queue that feeds it (at most `capacity` changes).
    pub fn new(
        peer: SocketAddr,
        index: usize,
        shared: Arc<Shared>,
        capacity: usize,
    ) -> (Self, Queue) {
        let (tx, changes) = mpsc::channel(capacity);
        let overflowed = Arc::new(AtomicBool::new(false));
        let depth = shared.metrics.queue_depth(&peer.to_string());
        let link = Self {
            peer,
            index,
            shared,
            changes,
            overflowed: Arc::clone(&overflowed),
            depth: depth.clone(),
            unacked: VecDeque::new(),
            reported: 0,
            next_seq: 1,
            held: 0,
            taken: 0,
        };
        (
            link,
            Queue {
                tx,
                overflowed,
                depth,
            },
        )
    }

    /// Keeps the link up until the task is dropped.
    pub async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            match self.session().await {
                Ok(()) => failures = 0,
                Err(err) => {
                    if matches!(err, SyncError::Tls(_)) {
                        self.shared.metrics.refused_tls.inc();
                    }
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
        let tls = self.shared.credentials.tls.as_deref();
        let mut conn = session::connect(self.peer, tls).await?;
        let (peer_node, resume) = self.handshake(&mut conn).await?;
        info!(peer = peer_node, addr = %self.peer, ?resume, "replication to {peer_node} connected");
        self.resume(&mut conn, resume).await?;
        self.stream(&mut conn).await
    }

    /// Whether batches are kept until acknowledged (all levels but `none`).
    fn keeps(&self) -> bool {
        self.shared.ledger.level() != AckLevel::None
    }

    /// Picks up where the peer stands: sends again the batches it lacks,
    /// or, when they are not all kept (`none`, a peer that holds nothing
    /// of this run), numbers on after what it holds and sends the whole
    /// table instead.
    async fn resume(&mut self, conn: &mut Conn, resume: Resume) -> Result<(), SyncError> {
        let holds = match resume {
            Resume::After(seq) => seq,
            Resume::Bulk => 0,
        };
        self.acknowledged(holds);
        let next = self
            .unacked
            .front()
            .map_or(self.next_seq, |first| first.seq);
        if self.keeps() && matches!(resume, Resume::After(_)) && next == holds + 1 {
            self.resend(conn).await?;
            if self.overflowed.swap(false, Ordering::AcqRel) {
                return self.bulk(conn).await;
            }
            // What waited while the link was down, then `Synced`: the peer
            // holds this node's whole table again.
            while let Ok(first) = self.changes.try_recv() {
                let (entries, oldest, holds) = self.take_batch(first);
                self.send_batch(conn, entries, Some(oldest), Some(holds))
                    .await?;
            }
            session::send(
                conn,
                &Message::Synced {
                    seq: self.next_seq - 1,
                },
            )
            .await?;
            return Ok(());
        }
        self.unacked.clear();
        self.next_seq = holds + 1;
        self.overflowed.store(false, Ordering::Release);
        if !self.keeps() {
            // What waited while the link was down is in the table: the
            // whole table replaces it.
            while self.changes.try_recv().is_ok() {}
            self.depth.set(0);
        }
        self.bulk(conn).await
    }

    /// Hello, Welcome (the peer's proof), Proven (ours).
    async fn handshake(&self, conn: &mut Conn) -> Result<(String, Resume), SyncError> {
        let ours = nonce();
        let secret = &self.shared.credentials.secret;
        let hello = Message::Hello {
            version: VERSION,
            node: self.shared.node.clone(),
            epoch: self.shared.epoch,
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
                if !secret.verify(Role::Receiver, &nonce, &ours, &proof) {
                    self.shared.metrics.refused.inc();
                    return Err(SyncError::BadProof);
                }
                (node, nonce, resume)
            }
            Message::Refused { reason } => return Err(SyncError::Refused(reason)),
            other => return Err(SyncError::Unexpected(session::name(&other))),
        };
        let proven = Message::Proven {
            proof: secret.prove(Role::Sender, &ours, &theirs),
        };
        session::send(conn, &proven).await?;
        Ok((node, resume))
    }

    /// Forgets the batches the peer holds, and tells the ledger.
    fn acknowledged(&mut self, seq: u64) {
        let now = monotonic_ns();
        let held = self.held;
        while self.unacked.front().is_some_and(|sent| sent.seq <= seq) {
            let Some(sent) = self.unacked.pop_front() else {
                break;
            };
            if let Some(oldest) = sent.oldest_ns {
                // From the change to the peer's "installed".
                let lag = now.saturating_sub(oldest) as f64 / 1e9;
                self.shared.metrics.lag.observe(lag);
            }
            if let Some((from, to)) = sent.holds
                && from <= self.held + 1
            {
                self.held = self.held.max(to);
            }
        }
        if self.held > held {
            self.shared.ledger.held(self.index, self.held);
        }
        self.report_unacked();
    }

    /// Keeps `vipx_sync_unacked_batches` the sum over the links.
    fn report_unacked(&mut self) {
        let now = self.unacked.len() as i64;
        self.shared.metrics.unacked.add(now - self.reported);
        self.reported = now;
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
            self.shared.metrics.resent.inc();
            self.shared.metrics.bytes.inc_by(bytes as u64);
        }
        Ok(())
    }

    /// Sends every flow of this node's table, then `Synced`. Its last
    /// batch (an empty one for an empty table), once acknowledged, means
    /// the peer holds every change published before the table was read.
    async fn bulk(&mut self, conn: &mut Conn) -> Result<(), SyncError> {
        let covers = self.shared.ledger.published();
        let records = {
            let table = lock(&self.shared.table);
            let maps = table.maps();
            let now = monotonic_ns();
            maps.flows()
                .iter()
                .filter_map(|(key, flow)| replica::record(maps, key, flow, now))
                .collect::<Vec<_>>()
        };
        let count = records.len();
        let batches = count.div_ceil(MAX_BATCH).max(1);
        let mut chunks = records.chunks(MAX_BATCH);
        for n in 1..=batches {
            let entries = chunks
                .next()
                .unwrap_or_default()
                .iter()
                .cloned()
                .map(Entry::Flow)
                .collect();
            let holds = (n == batches).then_some((0, covers));
            self.send_batch(conn, entries, None, holds).await?;
        }
        session::send(
            conn,
            &Message::Synced {
                seq: self.next_seq - 1,
            },
        )
        .await?;
        self.shared.metrics.bulks.inc();
        info!(peer = %self.peer, flows = count, "replication: the whole flow table sent");
        Ok(())
    }

    /// Numbers, keeps (unless `none`) and sends one batch.
    async fn send_batch(
        &mut self,
        conn: &mut Conn,
        entries: Vec<Entry>,
        oldest_ns: Option<u64>,
        holds: Option<(u64, u64)>,
    ) -> Result<(), SyncError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let message = Message::Batch { seq, entries };
        let bytes = session::send(conn, &message).await?;
        self.shared.metrics.batches.inc();
        self.shared.metrics.bytes.inc_by(bytes as u64);
        if self.keeps() {
            let Message::Batch { entries, .. } = message else {
                unreachable!("built above");
            };
            self.unacked.push_back(Sent {
                seq,
                entries,
                oldest_ns,
                holds,
            });
            self.report_unacked();
        }
        Ok(())
    }

    /// The changes already queued after `first`, up to a batch: their
    /// entries, when the oldest happened, and the numbers the peer will
    /// hold once it acknowledges them.
    fn take_batch(&mut self, first: Change) -> (Vec<Entry>, u64, (u64, u64)) {
        let mut oldest = first.at_ns;
        let mut entries = Vec::new();
        // The run of numbers without a gap (a change the full queue did
        // not take) that ends with the last change taken.
        let mut from = self.taken + 1;
        let mut next = Some(first);
        while let Some(change) = next {
            if change.id != self.taken + 1 {
                from = change.id;
            }
            self.taken = change.id;
            oldest = oldest.min(change.at_ns);
            entries.push(change.entry);
            next = if entries.len() < MAX_BATCH {
                self.changes.try_recv().ok()
            } else {
                None
            };
        }
        self.depth.set(self.changes.len() as i64);
        (entries, oldest, (from, self.taken))
    }

    /// Streams changes as they come, and takes acknowledgements.
    async fn stream(&mut self, conn: &mut Conn) -> Result<(), SyncError> {
        let mut heard = Instant::now();
        let mut ping = tokio::time::interval(session::KEEPALIVE);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                    let (entries, oldest, holds) = self.take_batch(first);
                    self.send_batch(conn, entries, Some(oldest), Some(holds)).await?;
                }
                _ = ping.tick() => {
                    if heard.elapsed() > session::SILENCE {
                        return Err(SyncError::Timeout(session::SILENCE));
                    }
                    session::send(conn, &Message::Ping).await?;
                }
                message = session::recv(conn) => match message? {
                    Message::Pong => heard = Instant::now(),
                    // With `none` nothing waits for them.
                    Message::Ack { seq } => {
                        heard = Instant::now();
                        self.acknowledged(seq);
                    }
                    Message::Refused { reason } => return Err(SyncError::Refused(reason)),
                    other => return Err(SyncError::Unexpected(session::name(&other))),
                },
            }
        }
    }
}
