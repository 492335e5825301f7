//! One VRRP instance running: the socket, the clock, the state machine, and
//! the actions carried out (adverts sent, VIPs taken and released).

use std::{net::IpAddr, sync::Arc, time::Duration};

use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
    time::Instant,
};
use tracing::{debug, error, info, warn};

use super::{
    Action, Instance, InstanceConfig, Reason, State, build,
    packet::{VRRP_MULTICAST_V4, VRRP_MULTICAST_V6},
    parse,
    socket::{Received, VrrpSocket, wait_source},
};
use crate::{
    cluster::Cluster,
    config::GroupConfig,
    dataplane::{PeerMaps, monotonic_ns},
    events::{EventKind, EventLog, GroupState},
    heartbeat::{HeartbeatLink, HeartbeatThread, Loss},
    metrics::{AdvertOutcome, Metrics},
    ownership::Ownership,
};
use vipx_common::peer::KIND_VRRP;

mod faults;
mod heartbeat;

use heartbeat::{Registered, advertised, next_loss, register_heartbeat};

/// What the daemon asks of a running election.
#[derive(Debug)]
pub enum Command {
    /// Tracked items changed the priority.
    SetPriority(u8),
    /// A tracked weight-0 item failed (true) or recovered (false).
    Fault(bool),
    /// The node lost (false) or regained (true) the cluster's quorum:
    /// without it a MASTER fences itself (FAULT, as with a failed weight-0
    /// item) and a BACKUP claims nothing.
    Quorum(bool),
    /// Stop: a MASTER sends priority 0 first; answered when done.
    Shutdown(oneshot::Sender<()>),
    /// A manual handover (true): a MASTER hands the VIPs to the best
    /// backup, and the node stays BACKUP at [`HELD_PRIORITY`] until it is
    /// undone (false), when the tracked priority applies again.
    Hold(bool),
}

/// The priority of a node handed over by hand: below every real one, so it
/// never preempts, and still a candidate if no other node is.
pub const HELD_PRIORITY: u8 = 1;

/// What an election works with besides its group.
#[derive(Clone)]
pub struct Wiring {
    pub ownership: Arc<Ownership>,
    pub events: Arc<EventLog>,
    pub metrics: Arc<Metrics>,
    /// The heartbeat thread (absent in HA debug mode); the group registers
    /// with it once its source address is known, if it has a heartbeat.
    pub heartbeat: Option<Arc<HeartbeatThread>>,
    /// The heartbeat's UDP port (`[node] heartbeat_port`).
    pub heartbeat_port: u16,
    /// The XDP program's records: adverts are timed by their arrival there
    /// (absent in HA debug mode).
    pub records: Option<Arc<PeerMaps>>,
    /// Flow replication's readiness gate (see [`crate::sync::gate`]):
    /// while it is closed, a backup does not preempt a lower-priority
    /// master (absent without `[sync]`).
    pub preempt_gate: Option<watch::Receiver<bool>>,
    /// The cluster (`[cluster] members`): every claim passes its gate.
    pub cluster: Option<Arc<Cluster>>,
}

/// The next change of the readiness gate: open or not (a gate whose
/// sender is gone is open, and never changes again).
async fn gate_change(gate: &mut Option<watch::Receiver<bool>>) -> bool {
    let Some(rx) = gate else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_ok() {
        return *rx.borrow_and_update();
    }
    *gate = None;
    true
}

/// A running election.
pub struct ElectionHandle {
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

impl ElectionHandle {
    /// Sends a command (ignored if the election has ended).
    pub fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// Steps down (priority 0 first when MASTER) and ends the election.
    pub async fn shutdown(self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
        self.task.abort();
    }
}

/// Everything a running election needs.
struct Election {
    id: u32,
    group: GroupConfig,
    instance: Instance,
    socket: VrrpSocket,
    ownership: Arc<Ownership>,
    events: Arc<EventLog>,
    metrics: Arc<Metrics>,
    epoch: Instant,
    /// A tracked weight-0 item failed.
    tracked_fault: bool,
    /// The node lost the cluster's quorum while MASTER, and fenced itself.
    quorum_fenced: bool,
    cluster: Option<Arc<Cluster>>,
    /// When the last advert from another node arrived.
    last_advert: Option<Instant>,
    /// The group's fast heartbeat, when configured.
    heartbeat: Option<Registered>,
    /// The silence the heartbeat measured at its last detection.
    heartbeat_silence: Option<Duration>,
    /// The XDP program's records of adverts (absent in HA debug mode).
    records: Option<Arc<PeerMaps>>,
    /// Flow replication's readiness gate, when `[sync]` is configured.
    preempt_gate: Option<watch::Receiver<bool>>,
    /// Handed over by hand ([`Command::Hold`]).
    held: bool,
    /// The priority the tracked items ask for (applied when not held).
    tracked_priority: u8,
}

/// An XDP record older than this is not the advert being processed.
const RECORD_FRESH: Duration = Duration::from_millis(100);

/// Starts the election of group `id`. The VRRP socket opens in the
/// background, once the adverts' source address is usable (an IPv6
/// link-local one appears and leaves DAD a second or two after the link
/// comes up); a failure there is logged and ends the election.
pub fn spawn(
    id: u32,
    group: &GroupConfig,
    priority: u8,
    held: bool,
    wiring: Wiring,
) -> anyhow::Result<ElectionHandle> {
    let iface = group.interface.as_str();
    if let Err(err) = nix::net::if_::if_nametoindex(iface) {
        anyhow::bail!("group {}: interface {iface}: {err}", group.name);
    }
    let (commands, rx) = mpsc::unbounded_channel();
    let group = group.clone();
    let task = tokio::spawn(async move {
        match prepare(id, group, priority, wiring).await {
            Ok(mut election) => {
                election.held = held;
                election.run(rx).await;
            }
            Err(err) => error!("{err:#}"),
        }
    });
    Ok(ElectionHandle { commands, task })
}

/// The election of group `id`, its socket open from a usable source.
async fn prepare(
    id: u32,
    group: GroupConfig,
    priority: u8,
    wiring: Wiring,
) -> anyhow::Result<Election> {
    use anyhow::Context as _;
    let iface = group.interface.as_str();
    let primary = wait_source(
        &group.name,
        iface,
        group.ipv6(),
        &group.vip_addrs(),
        &group.unicast_peers,
    )
    .await
    .with_context(|| format!("group {}: the adverts' source address", group.name))?;
    let socket = VrrpSocket::open(iface, primary)
        .with_context(|| format!("group {}: opening the VRRP socket on {iface}", group.name))?;
    let instance = Instance::new(InstanceConfig {
        vrid: group.vrid,
        priority,
        advert_interval: group.advert_interval,
        preempt: group.preempt,
        preempt_delay: group.preempt_delay,
        primary_addr: primary,
        accept_mode: true,
    })
    .with_context(|| format!("group {}", group.name))?;
    let heartbeat = register_heartbeat(&group, primary, priority, &wiring);
    Ok(Election {
        id,
        group,
        instance,
        socket,
        ownership: wiring.ownership,
        events: wiring.events,
        metrics: wiring.metrics,
        epoch: Instant::now(),
        tracked_fault: false,
        quorum_fenced: false,
        cluster: wiring.cluster,
        last_advert: None,
        heartbeat,
        heartbeat_silence: None,
        records: wiring.records,
        preempt_gate: wiring.preempt_gate,
        held: false,
        tracked_priority: priority,
    })
}

impl Election {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        info!(group = %self.group.name, vrid = self.group.vrid, primary = %self.socket.primary(), "VRRP election starts");
        // Start clean: no VIP until the election says so.
        self.ownership.become_backup(self.id, &self.group).await;
        if let Some(gate) = &mut self.preempt_gate {
            let open = *gate.borrow_and_update();
            self.instance.hold_preemption(!open);
        }
        if self.held {
            // Handed over before a restart: back as a BACKUP that does not
            // take the VIPs back.
            self.instance.hand_over(self.now(), HELD_PRIORITY);
            info!(group = %self.group.name, "handed over by hand: staying BACKUP until undone");
        }
        let actions = self.instance.startup(self.now());
        self.execute(actions).await;
        loop {
            let deadline = self
                .instance
                .next_deadline()
                .filter(|_| !self.faulted())
                .map(|at| self.epoch + at);
            tokio::select! {
                received = self.socket.recv() => match received {
                    Ok(received) => self.on_packet(received).await,
                    Err(err) => {
                        warn!(group = %self.group.name, "VRRP socket: {err}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                () = sleep_until(deadline) => {
                    let now = self.now();
                    // Among vipx peers the heartbeat is the judge: late
                    // adverts from a live master are no failure.
                    if self.link().is_some_and(|p| p.master_alive())
                        && self.instance.master_alive(now)
                    {
                        debug!(group = %self.group.name, "adverts late but the master's heartbeats are current: no takeover");
                        continue;
                    }
                    let actions = self.instance.timer(now);
                    self.execute(actions).await;
                }
                command = commands.recv() => match command {
                    Some(Command::SetPriority(priority)) => {
                        self.tracked_priority = priority;
                        if !self.held {
                            let actions = self.instance.set_priority(self.now(), priority);
                            self.execute(actions).await;
                        }
                    }
                    Some(Command::Hold(held)) => self.hold(held).await,
                    Some(Command::Fault(fault)) => {
                        let was = self.faulted();
                        self.tracked_fault = fault;
                        self.fault_changed(was, "a tracked item failed").await;
                    }
                    Some(Command::Quorum(held)) => self.quorum_changed(held).await,
                    Some(Command::Shutdown(done)) => {
                        let actions = self.instance.shutdown(self.now());
                        self.execute(actions).await;
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                Some(loss) = next_loss(&mut self.heartbeat) => self.on_loss(loss).await,
                open = gate_change(&mut self.preempt_gate) => {
                    self.instance.hold_preemption(!open);
                    debug!(group = %self.group.name, open, "preemption {}", if open { "allowed" } else { "held: this node does not hold its peers' flows yet" });
                }
            }
        }
    }

    /// A manual handover, or its end.
    async fn hold(&mut self, held: bool) {
        if held == self.held {
            return;
        }
        self.held = held;
        let now = self.now();
        let actions = if held {
            info!(group = %self.group.name, "manual handover: staying BACKUP at priority {HELD_PRIORITY} until undone");
            self.instance.hand_over(now, HELD_PRIORITY)
        } else {
            info!(group = %self.group.name, priority = self.tracked_priority, "manual handover undone");
            self.instance.set_priority(now, self.tracked_priority)
        };
        if !self.faulted() {
            self.execute(actions).await;
        }
        self.publish();
    }

    /// The heartbeat declared the master lost and us the one to take over.
    async fn on_loss(&mut self, loss: Loss) {
        if self.faulted() {
            return;
        }
        if self
            .link()
            .is_some_and(|p| p.backup_since() != loss.backup_since)
        {
            debug!(group = %self.group.name, src = %loss.src, "heartbeat loss decided before our last transition: ignored");
            return;
        }
        self.heartbeat_silence = Some(loss.silence);
        let actions = self
            .instance
            .master_lost(self.now(), loss.src, loss.stopping);
        self.execute(actions).await;
    }

    /// The group's heartbeat link, when it has one.
    fn link(&self) -> Option<&Arc<HeartbeatLink>> {
        self.heartbeat.as_ref().map(|r| &r.link)
    }

    async fn on_packet(&mut self, received: Received) {
        if !self.group.unicast_peers.is_empty() && !self.group.unicast_peers.contains(&received.src)
        {
            self.metrics
                .count_advert(&self.group.name, AdvertOutcome::Foreign);
            debug!(group = %self.group.name, src = %received.src, "advert from outside the peer list ignored");
            return;
        }
        match parse(received.src, received.dst, received.ttl, &received.payload) {
            Ok(advert) if advert.vrid == self.group.vrid => {
                self.metrics
                    .count_advert(&self.group.name, AdvertOutcome::Received);
                let (arrival, age) = self.arrival(received.src);
                self.last_advert = Some(Instant::now() - age);
                if self.faulted() {
                    return;
                }
                let actions = self
                    .instance
                    .advert_received(arrival, received.src, &advert);
                self.execute(actions).await;
            }
            Ok(_) => {}
            Err(err) => {
                self.metrics
                    .count_advert(&self.group.name, AdvertOutcome::Invalid);
                debug!(group = %self.group.name, src = %received.src, "invalid VRRP packet: {err}");
            }
        }
    }

    async fn execute(&mut self, actions: Vec<Action>) {
        let claim = actions.iter().find_map(|a| match a {
            Action::BecomeMaster { reason } => Some(*reason),
            _ => None,
        });
        if let Some(reason) = claim
            && !self.cluster_allows(reason).await
        {
            self.instance.claim_refused(self.now());
            return;
        }
        for action in actions {
            match action {
                Action::SendAdvert { priority } => {
                    if priority == 0
                        && let Some(link) = self.link()
                    {
                        link.farewell();
                    }
                    self.send_advert(priority).await;
                }
                Action::Announce => {
                    info!(group = %self.group.name, "another node claimed the VIPs: announcing them again");
                    self.ownership.announce(&self.group).await;
                }
                Action::BecomeMaster { reason } => {
                    // Detection time: the silence since the last advert
                    // heard (the heartbeat's own figure when it detected).
                    let silence = match reason {
                        Reason::HeartbeatLost { .. } => self.heartbeat_silence.take(),
                        _ => self.last_advert.map(|at| at.elapsed()),
                    };
                    if let Some(silence) = silence {
                        self.metrics.set_detection(&self.group.name, silence);
                    }
                    if let (Reason::Preempt { src, .. }, Some(link)) =
                        (reason, self.link().cloned())
                        && !link.wait_released(src).await
                    {
                        warn!(group = %self.group.name, %src, "the preempted master did not let go within twice the detection time; taking over");
                    }
                    self.ownership.become_master(self.id, &self.group).await;
                    self.publish();
                    self.metrics.set_group_master(&self.group.name, true);
                    let reason = match silence {
                        Some(silence) => {
                            format!("{reason}; last advert {} ms before", silence.as_millis())
                        }
                        None => reason.to_string(),
                    };
                    self.events.record(
                        EventKind::Group,
                        &self.group.name,
                        Some(GroupState::Backup),
                        GroupState::Master,
                        &reason,
                    );
                }
                Action::BecomeBackup { reason } | Action::Stop { reason } => {
                    let was_master = self.ownership.is_master(self.id);
                    match self.link().cloned() {
                        Some(link) if was_master => {
                            // A handover (see `crate::heartbeat`): stop
                            // answering for the VIPs, say so, and serve
                            // until the successor has taken them.
                            self.ownership.release(self.id, &self.group).await;
                            self.publish();
                            let successor = link.wait_successor().await;
                            self.ownership.stop_serving(self.id, &self.group);
                            debug!(group = %self.group.name, ?successor, "handed over");
                        }
                        _ => {
                            self.ownership.become_backup(self.id, &self.group).await;
                            self.publish();
                        }
                    }
                    self.metrics.set_group_master(&self.group.name, false);
                    if was_master {
                        let to = if self.instance.state() == State::Backup {
                            GroupState::Backup
                        } else {
                            GroupState::Stopped
                        };
                        self.events.record(
                            EventKind::Group,
                            &self.group.name,
                            Some(GroupState::Master),
                            to,
                            &reason.to_string(),
                        );
                    } else if reason == Reason::Startup {
                        // The first state, on the timeline and for the
                        // notify hooks (keepalived runs notify_backup at
                        // start too).
                        let why = if self.held {
                            "election starts (handed over by hand: held BACKUP)"
                        } else {
                            "election starts"
                        };
                        self.events.record(
                            EventKind::Group,
                            &self.group.name,
                            None,
                            GroupState::Backup,
                            why,
                        );
                    }
                }
            }
        }
    }

    /// When the advert from `src` arrived, on the election's clock, and how
    /// long ago: from the XDP program's record of it when there is one (the
    /// kernel's time of arrival, whatever queued between the wire and this
    /// task), else now.
    fn arrival(&self, src: IpAddr) -> (Duration, Duration) {
        let now = self.now();
        let age = self
            .records
            .as_ref()
            .and_then(|maps| maps.seen(self.group.vrid, KIND_VRRP, src).ok().flatten())
            .map(|seen| Duration::from_nanos(monotonic_ns().saturating_sub(seen.last_ns)))
            .filter(|age| *age < RECORD_FRESH && *age <= now)
            .unwrap_or_default();
        (now - age, age)
    }

    /// Tells the heartbeat (if any) our state after a transition.
    fn publish(&self) {
        if let Some(link) = self.link() {
            link.publish(advertised(self.instance.state()), self.instance.priority());
        }
    }

    async fn send_advert(&self, priority: u8) {
        let src = self.socket.primary();
        let vips: Vec<IpAddr> = self
            .group
            .vips
            .iter()
            .map(|v| v.addr)
            .filter(|a| a.is_ipv6() == src.is_ipv6())
            .collect();
        let advert = self.instance.advert(priority, vips);
        let destinations: Vec<IpAddr> = if self.group.unicast_peers.is_empty() {
            vec![match src {
                IpAddr::V4(_) => IpAddr::V4(VRRP_MULTICAST_V4),
                IpAddr::V6(_) => IpAddr::V6(VRRP_MULTICAST_V6),
            }]
        } else {
            self.group
                .unicast_peers
                .iter()
                .copied()
                .filter(|p| p.is_ipv6() == src.is_ipv6())
                .collect()
        };
        for dst in destinations {
            let payload = build(src, dst, &advert);
            match self.socket.send(dst, &payload).await {
                Ok(()) => self
                    .metrics
                    .count_advert(&self.group.name, AdvertOutcome::Sent),
                Err(err) => error!(group = %self.group.name, %dst, "sending a VRRP advert: {err}"),
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
