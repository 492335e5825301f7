//! vipx's fast heartbeat: failure detection in a few milliseconds between
//! vipx peers, where VRRPv3's 10 ms advert floor needs about 35 ms.
//!
//! Like BFD (RFC 5880), each node sends a small packet to each peer of a
//! group every `heartbeat_interval` (down to 1 ms); a backup declares the
//! master lost after `heartbeat_multiplier` intervals without one. The
//! packets ([`vipx_common::Heartbeat`], UDP to the node port) are recorded
//! and consumed by the receiving node's XDP program, so no socket, queue or
//! async runtime sits between the wire and the record; sources outside the
//! group's `unicast_peers` are dropped there.
//!
//! One thread does all of it, at real-time priority (as keepalived runs its
//! VRRP process), so neither a busy tokio scheduler nor a loaded machine
//! delays a heartbeat or a detection: it sends the heartbeats that are due,
//! reads the records of each group's peers, applies the [`Detector`], and
//! tells the group's election (a [`Loss`] on the channel it registered
//! with) when it should take over. It sleeps until the next heartbeat is due, or until the XDP
//! program signals a change (a new master, priority 0, a state change)
//! through its ring buffer.
//!
//! VRRP stays on the wire: for keepalived peers, and as the fallback.

mod damping;
mod detect;
mod handover;
mod thread;

use crate::locks::lock;
use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use nix::sys::eventfd::{EfdFlags, EventFd};
use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;
use vipx_common::{
    Heartbeat, HeartbeatKey,
    peer::{STATE_BACKUP, STATE_MASTER, STATE_STOPPING},
};

pub use detect::{Detector, PeerView, Verdict};

use crate::{
    dataplane::{PeerEvents, PeerMaps, monotonic_ns},
    metrics::HeartbeatMetrics,
};

/// What the heartbeat tells a group's election: the master is lost and
/// this node is the one to take over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loss {
    /// The master declared lost.
    pub src: IpAddr,
    /// It said it was stopping (priority 0): no detection time was waited.
    pub stopping: bool,
    /// How long it had been silent.
    pub silence: Duration,
    /// The BACKUP period it was decided in
    /// ([`HeartbeatLink::backup_since`]): a loss queued before a later
    /// transition is stale.
    pub backup_since: u64,
}

/// The state a node advertises in its heartbeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advertised {
    Master,
    Backup,
    /// Not (or no longer) taking part: initialising, stopped, FAULT.
    Stopping,
}

/// One group's heartbeat settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatSpec {
    /// The group's name (logs, metrics).
    pub name: String,
    pub vrid: u8,
    pub interval: Duration,
    pub multiplier: u8,
    /// Our address: the heartbeats' source, and our rank among equals.
    pub source: IpAddr,
    /// Where heartbeats go (the group's `unicast_peers`).
    pub peers: Vec<IpAddr>,
    /// The UDP port (`[node] heartbeat_port`).
    pub port: u16,
    /// Half-life of the flap dampening (`heartbeat_dampening`); zero: off.
    pub dampening: Duration,
}

/// The heartbeat key of a cluster secret: the first 16 bytes of
/// HMAC-SHA256(secret, "vipx heartbeat key"), as SipHash-2-4's two
/// little-endian halves. Every node with the same secret derives the same
/// key; the secret itself never reaches the XDP program.
pub fn derive_key(secret: &[u8]) -> HeartbeatKey {
    use hmac::{Hmac, KeyInit as _, Mac as _};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(b"vipx heartbeat key");
    let digest = mac.finalize().into_bytes();
    let half = |i: usize| {
        u64::from_le_bytes(
            digest[i..i + 8]
                .try_into()
                .expect("8 bytes of a 32-byte digest"),
        )
    };
    HeartbeatKey {
        k0: half(0),
        k1: half(8),
    }
}

/// What one group's election and the heartbeat thread share.
pub struct HeartbeatLink {
    spec: HeartbeatSpec,
    detector: Detector,
    socket: UdpSocket,
    targets: Vec<SocketAddr>,
    /// `STATE_*` this node advertises.
    state: AtomicU8,
    priority: AtomicU8,
    /// When this node last became BACKUP (`CLOCK_MONOTONIC` ns; 0 since
    /// registration): the election wants a fresh verdict from then on, on
    /// masters heard since.
    backup_since: AtomicU64,
    /// A stopping master said farewell: keep saying it until unregistered.
    farewell: AtomicBool,
    /// This agent's start (Unix ns): the heartbeats' epoch, later after
    /// every restart.
    epoch: u64,
    seq: AtomicU32,
    /// The cluster's heartbeat key, if any.
    key: Option<HeartbeatKey>,
    losses: UnboundedSender<Loss>,
    counters: HeartbeatMetrics,
    peers: Arc<PeerMaps>,
}

impl HeartbeatLink {
    /// The election's state and priority, advertised from the next
    /// heartbeat on (at once when the state changed). A master's
    /// priority 0 tells the backups it is stopping.
    pub fn publish(&self, state: Advertised, priority: u8) {
        let wire = match state {
            Advertised::Master => STATE_MASTER,
            Advertised::Backup => STATE_BACKUP,
            Advertised::Stopping if self.farewell.load(Ordering::Acquire) => return,
            Advertised::Stopping => STATE_STOPPING,
        };
        self.farewell.store(false, Ordering::Release);
        self.priority.store(priority, Ordering::Relaxed);
        if self.state.swap(wire, Ordering::AcqRel) != wire {
            if wire == STATE_BACKUP {
                self.backup_since
                    .store(monotonic_ns().max(1), Ordering::Release);
            }
            // Peers hear of it now, not at the next tick.
            self.send();
        }
    }

    /// When this node last became BACKUP ([`Loss`] carries it: a loss decided in an earlier BACKUP period is stale).
    pub fn backup_since(&self) -> u64 {
        self.backup_since.load(Ordering::Acquire)
    }

    /// A stopping master's farewell: MASTER with priority 0, sent at once
    /// (the backups take over without waiting for the detection time).
    pub fn farewell(&self) {
        self.farewell.store(true, Ordering::Release);
        self.priority.store(0, Ordering::Relaxed);
        self.state.store(STATE_MASTER, Ordering::Release);
        self.send();
    }

    /// Sends one heartbeat to every peer now, with the current state.
    fn send(&self) {
        let heartbeat = Heartbeat {
            vrid: self.spec.vrid,
            priority: self.priority.load(Ordering::Relaxed),
            state: self.state.load(Ordering::Acquire),
            epoch: self.epoch,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            interval_us: u32::try_from(self.spec.interval.as_micros()).unwrap_or(u32::MAX),
            detect_mult: self.spec.multiplier,
            tag: 0,
        }
        .encode(self.key.as_ref());
        for target in &self.targets {
            match self.socket.send_to(&heartbeat, target) {
                Ok(_) => self.counters.sent.inc(),
                Err(_) => self.counters.send_failed.inc(),
            }
        }
    }
}

impl std::fmt::Debug for HeartbeatLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeartbeatLink")
            .field("spec", &self.spec)
            .field("state", &self.state)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

/// The heartbeat thread and the groups it serves.
pub struct HeartbeatThread {
    inner: Arc<Inner>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Inner {
    groups: Mutex<Vec<Arc<HeartbeatLink>>>,
    /// Bumped on every registration change: the thread re-reads `groups`.
    generation: AtomicU64,
    stop: AtomicBool,
    peers: Arc<PeerMaps>,
    /// This agent's start (Unix ns), every link's epoch.
    epoch: u64,
    key: Option<HeartbeatKey>,
    /// Wakes the thread at once on a registration change or a stop, so a
    /// new group's heartbeats start now, not after the thread's longest
    /// sleep.
    wake: EventFd,
}

impl Inner {
    fn wake(&self) {
        if let Err(err) = self.wake.write(1) {
            warn!("waking the heartbeat thread: {err}");
        }
    }
}

impl HeartbeatThread {
    /// Starts the thread (idle until a group registers). `events`: the XDP
    /// program's ring buffer, which wakes the thread on a change; `key`:
    /// the cluster's heartbeat key (see [`derive_key`]), which tags every
    /// heartbeat sent.
    pub fn start(
        peers: Arc<PeerMaps>,
        events: Option<PeerEvents>,
        key: Option<HeartbeatKey>,
    ) -> std::io::Result<Self> {
        let wake = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let inner = Arc::new(Inner {
            groups: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            peers,
            epoch,
            key,
            wake,
        });
        let shared = Arc::clone(&inner);
        let thread = std::thread::Builder::new()
            .name("vipx-heartbeat".into())
            .spawn(move || thread::run(&shared, events))?;
        Ok(Self {
            inner,
            thread: Some(thread),
        })
    }

    /// The XDP records the thread reads.
    pub fn peer_maps(&self) -> &Arc<PeerMaps> {
        &self.inner.peers
    }

    /// Adds a group: heartbeats start at once, as BACKUP with `priority`;
    /// a lost master is reported on `losses`.
    pub fn register(
        &self,
        spec: HeartbeatSpec,
        priority: u8,
        losses: UnboundedSender<Loss>,
        counters: HeartbeatMetrics,
    ) -> std::io::Result<Arc<HeartbeatLink>> {
        let socket = UdpSocket::bind(SocketAddr::new(spec.source, 0))?;
        socket.set_nonblocking(true)?;
        // GTSM (RFC 5082): heartbeats leave with TTL / hop limit 255, and
        // the peers' XDP drops any that arrive with less (sent from beyond
        // the link).
        if spec.source.is_ipv4() {
            socket.set_ttl(255)?;
        } else {
            socket2::SockRef::from(&socket).set_unicast_hops_v6(255)?;
        }
        let targets = spec
            .peers
            .iter()
            .filter(|p| p.is_ipv4() == spec.source.is_ipv4())
            .map(|p| SocketAddr::new(*p, spec.port))
            .collect();
        let link = Arc::new(HeartbeatLink {
            detector: Detector::new(spec.interval, spec.multiplier),
            spec,
            socket,
            targets,
            state: AtomicU8::new(STATE_BACKUP),
            priority: AtomicU8::new(priority),
            backup_since: AtomicU64::new(0),
            farewell: AtomicBool::new(false),
            epoch: self.inner.epoch,
            seq: AtomicU32::new(0),
            key: self.inner.key,
            losses,
            counters,
            peers: Arc::clone(&self.inner.peers),
        });
        self.groups().push(Arc::clone(&link));
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.wake();
        Ok(link)
    }

    /// Removes a group (its election ended).
    pub fn unregister(&self, link: &Arc<HeartbeatLink>) {
        self.groups().retain(|g| !Arc::ptr_eq(g, link));
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.wake();
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, Vec<Arc<HeartbeatLink>>> {
        lock(&self.inner.groups)
    }
}

impl Drop for HeartbeatThread {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        self.inner.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
