//! One VRRP instance running: the socket, the clock, the state machine, and
//! the actions carried out (adverts sent, VIPs taken and released).

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::Duration,
};

use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::Instant,
};
use tracing::{debug, error, info, warn};

use super::{
    Action, Instance, InstanceConfig, State, build,
    packet::VRRP_MULTICAST_V4,
    parse,
    socket::{Received, VrrpSocket},
};
use crate::{config::GroupConfig, events::EventLog, metrics::Metrics, ownership::Ownership};

/// What the daemon asks of a running election.
#[derive(Debug)]
pub enum Command {
    /// Tracked items changed the priority.
    SetPriority(u8),
    /// A tracked weight-0 item failed (true) or recovered (false).
    Fault(bool),
    /// Stop: a MASTER sends priority 0 first; answered when done.
    Shutdown(oneshot::Sender<()>),
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

/// The first IPv4 address of an interface (the adverts' source).
pub fn primary_ipv4(iface: &str) -> Option<Ipv4Addr> {
    nix::ifaddrs::getifaddrs()
        .ok()?
        .filter(|a| a.interface_name == iface)
        .find_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
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
    faulted: bool,
    /// When the last advert from another node arrived.
    last_advert: Option<Instant>,
}

/// Starts the election of group `id`.
pub fn spawn(
    id: u32,
    group: &GroupConfig,
    priority: u8,
    ownership: Arc<Ownership>,
    events: Arc<EventLog>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<ElectionHandle> {
    use anyhow::Context as _;
    let iface = group.interface.as_str();
    let primary = primary_ipv4(iface)
        .with_context(|| format!("group {}: {iface} has no IPv4 address", group.name))?;
    let socket = VrrpSocket::open(iface, primary)
        .with_context(|| format!("group {}: opening the VRRP socket on {iface}", group.name))?;
    let instance = Instance::new(InstanceConfig {
        vrid: group.vrid,
        priority,
        advert_interval: group.advert_interval,
        preempt: group.preempt,
        preempt_delay: group.preempt_delay,
        primary_addr: IpAddr::V4(primary),
        accept_mode: true,
    })
    .with_context(|| format!("group {}", group.name))?;
    let (commands, rx) = mpsc::unbounded_channel();
    let election = Election {
        id,
        group: group.clone(),
        instance,
        socket,
        ownership,
        events,
        metrics,
        epoch: Instant::now(),
        faulted: false,
        last_advert: None,
    };
    let task = tokio::spawn(election.run(rx));
    Ok(ElectionHandle { commands, task })
}

impl Election {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        info!(group = %self.group.name, vrid = self.group.vrid, primary = %self.socket.primary(), "VRRP election starts");
        // Start clean: no VIP until the election says so.
        self.ownership.become_backup(self.id, &self.group).await;
        let actions = self.instance.startup(self.now());
        self.execute(actions).await;
        loop {
            let deadline = self
                .instance
                .next_deadline()
                .filter(|_| !self.faulted)
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
                    let actions = self.instance.timer(self.now());
                    self.execute(actions).await;
                }
                command = commands.recv() => match command {
                    Some(Command::SetPriority(priority)) => {
                        let actions = self.instance.set_priority(self.now(), priority);
                        self.execute(actions).await;
                    }
                    Some(Command::Fault(true)) if !self.faulted => {
                        self.faulted = true;
                        let actions = self.instance.shutdown(self.now());
                        self.execute(actions).await;
                        self.events.record("group", &self.group.name, "", "FAULT", "a tracked item failed");
                    }
                    Some(Command::Fault(false)) if self.faulted => {
                        self.faulted = false;
                        let actions = self.instance.startup(self.now());
                        self.execute(actions).await;
                    }
                    Some(Command::Fault(_)) => {}
                    Some(Command::Shutdown(done)) => {
                        let actions = self.instance.shutdown(self.now());
                        self.execute(actions).await;
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
            }
        }
    }

    async fn on_packet(&mut self, received: Received) {
        if !self.group.unicast_peers.is_empty() && !self.group.unicast_peers.contains(&received.src)
        {
            self.metrics.count_advert(&self.group.name, "foreign");
            debug!(group = %self.group.name, src = %received.src, "advert from outside the peer list ignored");
            return;
        }
        match parse(received.src, received.dst, received.ttl, &received.payload) {
            Ok(advert) if advert.vrid == self.group.vrid => {
                self.metrics.count_advert(&self.group.name, "received");
                self.last_advert = Some(Instant::now());
                if self.faulted {
                    return;
                }
                let actions = self
                    .instance
                    .advert_received(self.now(), received.src, &advert);
                self.execute(actions).await;
            }
            Ok(_) => {}
            Err(err) => {
                self.metrics.count_advert(&self.group.name, "invalid");
                debug!(group = %self.group.name, src = %received.src, "invalid VRRP packet: {err}");
            }
        }
    }

    async fn execute(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendAdvert { priority } => self.send_advert(priority).await,
                Action::BecomeMaster { reason } => {
                    // Detection time: the silence since the last advert heard.
                    let silence = self.last_advert.map(|at| at.elapsed());
                    if let Some(silence) = silence {
                        self.metrics.set_detection(&self.group.name, silence);
                    }
                    self.ownership.become_master(self.id, &self.group).await;
                    self.metrics.set_group_master(&self.group.name, true);
                    let reason = match silence {
                        Some(silence) => {
                            format!("{reason}; last advert {} ms before", silence.as_millis())
                        }
                        None => reason.to_string(),
                    };
                    self.events
                        .record("group", &self.group.name, "BACKUP", "MASTER", &reason);
                }
                Action::BecomeBackup { reason } | Action::Stop { reason } => {
                    let was_master = self.ownership.is_master(self.id);
                    self.ownership.become_backup(self.id, &self.group).await;
                    self.metrics.set_group_master(&self.group.name, false);
                    if was_master {
                        let to = if self.instance.state() == State::Backup {
                            "BACKUP"
                        } else {
                            "STOPPED"
                        };
                        self.events.record(
                            "group",
                            &self.group.name,
                            "MASTER",
                            to,
                            &reason.to_string(),
                        );
                    }
                }
            }
        }
    }

    async fn send_advert(&self, priority: u8) {
        let vips: Vec<IpAddr> = self
            .group
            .vips
            .iter()
            .map(|v| v.addr)
            .filter(IpAddr::is_ipv4)
            .collect();
        let advert = self.instance.advert(priority, vips);
        let src = IpAddr::V4(self.socket.primary());
        let destinations: Vec<Ipv4Addr> = if self.group.unicast_peers.is_empty() {
            vec![VRRP_MULTICAST_V4]
        } else {
            self.group
                .unicast_peers
                .iter()
                .filter_map(|p| match p {
                    IpAddr::V4(v4) => Some(*v4),
                    IpAddr::V6(_) => None,
                })
                .collect()
        };
        for dst in destinations {
            let payload = build(src, IpAddr::V4(dst), &advert);
            match self.socket.send(dst, &payload).await {
                Ok(()) => self.metrics.count_advert(&self.group.name, "sent"),
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
