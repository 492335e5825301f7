//! The daemon: load the config, load and attach XDP (adopting what a
//! killed agent left pinned), install the services, take the configured
//! group states, serve the API, follow signals (SIGHUP reloads,
//! SIGTERM/SIGINT step down, detach, unpin and stop). [`run`] reads as
//! those steps; each is a function of this module or of [`reload`].

mod cluster;
mod handover;
mod start;

use start::{flow_policy, start_notifier, start_tracker, wait_ready};
mod reload;
mod systemd;
pub mod witness;

use std::{
    path::Path,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tracing::{error, info, warn};

use crate::{
    api,
    balancer::{self, ServiceCollector, SharedTable},
    config::Config,
    dataplane::{
        Dataplane, DataplaneError, FlowCollector, FlowPolicy, GroupStates, LeaseCollector, Maps,
        NewsSink, Refresher, ServiceSpec, ServiceTable, VipTable, XdpCollector,
    },
    election::runner::Wiring,
    events::EventLog,
    group_runner::GroupRunner,
    health::{
        HealthRunner,
        track::{Effective, Tracker},
    },
    heartbeat::{self, HeartbeatThread},
    locks::{lock, read, write},
    metrics::Metrics,
    neigh::Neighbours,
    notify::Notifier,
    ownership::Ownership,
    state::{AgentState, count_event},
    sync::{Credentials, Replicator, SyncSetup, auth::Secret},
    vip::VipManager,
};

/// How long start-up waits for backend MACs before serving anyway.
const MAC_WAIT: Duration = Duration::from_secs(3);

/// A tracked item's change: the group and its new priority / FAULT.
type TrackChange = (String, Effective);

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(config_path: &Path, ha_debug: bool) -> anyhow::Result<()> {
    let config = load_config(config_path, ha_debug)?;
    let vips = clear_stale_vips(&config, ha_debug).await?;
    let mut dataplane = load_dataplane(&config)?;
    let served = serve(config_path, config, &mut dataplane, vips, ha_debug).await;
    // A stop, or a start that failed: XDP is detached and the pins go (see
    // `dataplane`: a stopped node's data plane must not linger).
    dataplane.stop();
    if served.is_ok() {
        info!("vipx-agent stopped");
    }
    served
}

/// Everything after the data plane is loaded, until the signals say stop.
async fn serve(
    config_path: &Path,
    config: Config,
    dataplane: &mut Dataplane,
    vips: VipManager,
    ha_debug: bool,
) -> anyhow::Result<()> {
    let (handover_tx, handover_rx) = mpsc::unbounded_channel();
    let (state, ownership, neighbours) =
        start_services(config_path, &config, dataplane, vips, handover_tx, ha_debug).await?;
    let held = handover::restore(&state);
    // The cluster's voter answers on the API from the start: the peers
    // count this node before its groups run.
    let voter = cluster::voter(&config, &state.metrics, &state.events, ha_debug)?;
    let (server, stop_server) =
        serve_api(&config, &state, voter.as_ref().map(|(_, r)| r.clone())).await?;
    let voter = voter.map(|(v, _)| v);
    write(&state.cluster).clone_from(&voter);
    let mut cluster_tasks = Vec::new();
    if let Some(voter) = &voter {
        cluster_tasks.extend(cluster::start_pings(&config, voter)?);
        cluster_tasks.push(cluster::follow_groups(&state.events, Arc::clone(voter)));
    }
    let replicator = start_sync(&config, dataplane, &state).await?;
    let notifier = start_notifier(&config, &state)?;
    let (track_tx, track_rx) = mpsc::unbounded_channel();
    let tracker = start_tracker(&config, &state, track_tx.clone());
    wait_ready(&config, &state, replicator.as_ref()).await;
    let gate = replicator.as_ref().map(Replicator::ready);
    let mut groups = start_groups(
        &config,
        dataplane,
        &state,
        ownership,
        gate,
        voter.clone(),
        ha_debug,
    )?;
    if let Some(voter) = &voter
        && !cluster::wait_quorum(voter).await
        && !ha_debug
    {
        groups.on_quorum(&config, &tracker.tracking, false).await;
    }
    groups.start(&config, &tracker.tracking, &held).await;
    let watchdog = systemd::Watchdog::start(config.dataplane.lease_refresh);
    let ping = watchdog.as_ref().map(systemd::Watchdog::pinger);
    let refresher = Arc::clone(&state.groups)
        .spawn_refresher(config.dataplane.lease_refresh, move || {
            if let Some(ping) = &ping {
                ping();
            }
        })
        .context("starting the lease refresher")?;
    let specs = Arc::new(Mutex::new(balancer::specs(&config)));
    let (flow_policy, policy_rx) = tokio::sync::watch::channel(flow_policy(&config));
    let news = replicator.as_ref().map(Replicator::news_sink);
    let mut tasks = spawn_background(dataplane, &state, neighbours, &specs, policy_rx, news);
    tasks.extend(cluster_tasks);
    let groups_now: std::collections::BTreeMap<String, String> = config
        .groups_with_ids()
        .map(|(id, g)| {
            let word = if state.groups.is_master(id) {
                "MASTER"
            } else {
                "BACKUP"
            };
            (g.name.clone(), word.to_owned())
        })
        .collect();
    systemd::ready(&systemd::summary(&groups_now));
    let status_line = systemd::follow_groups(&state.events, groups_now);
    let mut running = Running {
        config_path,
        state,
        dataplane,
        groups,
        tracker,
        track_tx,
        track_rx,
        specs,
        replicator,
        notifier,
        handover_rx,
        flow_policy,
        quorum: voter.as_ref().map(|v| v.quorum()),
        ha_debug,
    };
    running.follow_signals().await?;
    systemd::stopping();
    status_line.abort();
    let stopped = running.stop(tasks, refresher, server, stop_server).await;
    drop(watchdog);
    stopped
}

/// What the daemon holds while it runs.
struct Running<'a> {
    config_path: &'a Path,
    state: Arc<AgentState>,
    dataplane: &'a mut Dataplane,
    groups: GroupRunner,
    tracker: Tracker,
    track_tx: mpsc::UnboundedSender<TrackChange>,
    track_rx: mpsc::UnboundedReceiver<TrackChange>,
    /// The services' specs, as the MAC resolver reads them.
    specs: Arc<Mutex<Vec<ServiceSpec>>>,
    /// Flow replication, when `[sync]` is configured.
    replicator: Option<Replicator>,
    /// The groups' notify hooks.
    notifier: Notifier,
    /// Handovers asked through the API.
    handover_rx: mpsc::UnboundedReceiver<crate::operator::HandoverCall>,
    /// The flow collector's timeouts and embryonic share (a reload changes
    /// them).
    flow_policy: tokio::sync::watch::Sender<FlowPolicy>,
    /// The cluster's quorum as it changes (with `[cluster] members`).
    quorum: Option<tokio::sync::watch::Receiver<crate::cluster::view::Quorum>>,
    ha_debug: bool,
}

impl Running<'_> {
    /// Until SIGTERM or SIGINT: SIGHUP reloads, tracked items move the
    /// groups' priorities.
    async fn follow_signals(&mut self) -> anyhow::Result<()> {
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sighup = signal(SignalKind::hangup())?;
        loop {
            let hold_ends = handover::next_expiry(&self.state);
            tokio::select! {
                _ = sigterm.recv() => { info!("SIGTERM: stopping"); return Ok(()); }
                Some(call) = self.handover_rx.recv() => {
                    let answer = handover::handle(&self.state, &self.groups, call.request);
                    let _ = call.reply.send(answer);
                }
                () = handover::sleep_until(hold_ends) => handover::expire(&self.state, &self.groups),
                _ = sigint.recv() => { info!("SIGINT: stopping"); return Ok(()); }
                _ = sighup.recv() => self.reload().await,
                Some((group, effective)) = self.track_rx.recv() => {
                    let config = read(&self.state.config).clone();
                    self.groups.on_tracking(&config, &group, effective).await;
                }
                Some(quorum) = next_quorum(&mut self.quorum) => {
                    let config = read(&self.state.config).clone();
                    cluster::quorum_changed(&quorum, &config, &mut self.groups, &self.tracker.tracking, &self.state.events, self.ha_debug).await;
                }
            }
        }
    }

    /// SIGHUP: a valid new configuration restarts the tracked items, and
    /// the groups if they changed.
    async fn reload(&mut self) {
        systemd::reloading();
        self.reload_config().await;
        systemd::ready("reloaded");
    }

    async fn reload_config(&mut self) {
        let running = read(&self.state.config).clone();
        if reload::reload(self.config_path, &self.state, self.dataplane, &self.specs) {
            let new = read(&self.state.config).clone();
            self.notifier.set_config(&new);
            self.state.groups.set_lease(new.dataplane.lease_timeout);
            self.flow_policy.send_replace(flow_policy(&new));
            self.tracker = start_tracker(&new, &self.state, self.track_tx.clone());
            let held = lock(&self.state.operator).held.clone();
            let restarted = self
                .groups
                .reconfigure(&running, &new, &self.tracker.tracking, &held)
                .await;
            if !restarted.is_empty() {
                info!(groups = ?restarted, "reload: these groups changed and restarted; the others ran on");
            }
        }
    }

    /// Steps down first (priority 0 from a MASTER, so a backup takes over
    /// at once), once its flow changes reached the ack level (or
    /// `handover_wait` ran out): the VIPs leave this node before XDP does
    /// (detached by [`run`] once this returns). Then the rest stops.
    async fn stop(
        mut self,
        tasks: Vec<JoinHandle<()>>,
        refresher: Refresher,
        server: JoinHandle<std::io::Result<()>>,
        stop_server: oneshot::Sender<()>,
    ) -> anyhow::Result<()> {
        let config = read(&self.state.config).clone();
        if let Some(replicator) = &self.replicator {
            replicator.before_handover().await;
        }
        self.groups.stop(&config).await;
        self.notifier.stop().await;
        drop(self.replicator);
        for task in tasks {
            task.abort();
        }
        drop(self.tracker);
        drop(refresher);
        let _ = stop_server.send(());
        if let Err(err) = server.await.context("API server task")? {
            error!("API server: {err}");
        }
        Ok(())
    }
}

/// The next change of the quorum (never, without a cluster).
async fn next_quorum(
    quorum: &mut Option<tokio::sync::watch::Receiver<crate::cluster::view::Quorum>>,
) -> Option<crate::cluster::view::Quorum> {
    let Some(rx) = quorum else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        *quorum = None;
        return std::future::pending().await;
    }
    Some(rx.borrow_and_update().clone())
}

/// Reads the configuration and says what is starting.
fn load_config(config_path: &Path, ha_debug: bool) -> anyhow::Result<Config> {
    let config = Config::load(config_path)?;
    info!(node = config.node.name(), config = %config_path.display(), "vipx-agent {} starting", env!("CARGO_PKG_VERSION"));
    // A node must find itself among the cluster's members.
    config
        .cluster
        .check_member(&config.node.name())
        .with_context(|| format!("{}", config_path.display()))?;
    if ha_debug {
        warn!("HA debug mode: VIP, map, fence and reboot actions are logged, not carried out");
    }
    Ok(config)
}

/// Starts clean, before anything else: a VIP left on the interface by a
/// killed agent would keep this node answering ARP for it while the data
/// plane, the health checks and the election get ready.
async fn clear_stale_vips(config: &Config, ha_debug: bool) -> anyhow::Result<VipManager> {
    let vips = VipManager::new(ha_debug)?;
    for (_, group) in config.groups_with_ids() {
        Ownership::remove_vips(&vips, group).await;
    }
    Ok(vips)
}

/// Flow replication to the peers, when `[sync]` is configured: the
/// receiver listens and a link per peer connects.
async fn start_sync(
    config: &Config,
    dataplane: &mut Dataplane,
    state: &AgentState,
) -> anyhow::Result<Option<Replicator>> {
    let Some(sync) = &config.sync else {
        return Ok(None);
    };
    let replicator = Replicator::start(SyncSetup {
        node: config.node.name(),
        listen: sync.listen,
        peers: sync.peers.clone(),
        credentials: Credentials::load(sync)?,
        ack: sync.ack,
        handover_wait: sync.handover_wait,
        table: Arc::clone(&state.table),
        metrics: Arc::new(state.metrics.sync()),
        events: dataplane.take_flow_events(),
        ready_timeout: sync.ready_timeout,
    })
    .await
    .with_context(|| format!("binding the replication port {}", sync.listen))?;
    Ok(Some(replicator))
}

/// Loads the XDP program, pinned in `pin_path`, and attaches it to the
/// configured interfaces: what a previous agent pinned there is adopted
/// (its maps, its links), links of interfaces no longer configured go.
fn load_dataplane(config: &Config) -> anyhow::Result<Dataplane> {
    let dp = &config.dataplane;
    let mut dataplane = Dataplane::load_pinned(dp.flow_table_size, dp.pin_path.as_path())?;
    for iface in &dp.interfaces {
        if let Err(err) = dataplane.attach(iface.as_str(), dp.xdp_mode) {
            dataplane.stop();
            return Err(err.into());
        }
    }
    dataplane.remove_stale_links();
    Ok(dataplane)
}

/// Installs the services and starts their health checks, writes the VIPs,
/// resolves the backends' MACs, and builds what the API and the groups
/// share.
async fn start_services(
    config_path: &Path,
    config: &Config,
    dataplane: &Dataplane,
    vips: VipManager,
    handovers: mpsc::UnboundedSender<crate::operator::HandoverCall>,
    ha_debug: bool,
) -> anyhow::Result<(Arc<AgentState>, Arc<Ownership>, Neighbours)> {
    let maps = dataplane.maps();
    let table: SharedTable = Arc::new(Mutex::new(ServiceTable::new(Arc::clone(&maps), ha_debug)));
    let specs = balancer::specs(config);
    let metrics = Arc::new(start_metrics(config, dataplane, &table)?);
    let events = {
        let metrics = Arc::clone(&metrics);
        Arc::new(EventLog::with_observer(Box::new(move |event| {
            count_event(&metrics, event);
        })))
    };
    // Installs the services, then keeps their backend sets in line with
    // the health checks.
    let health = HealthRunner::start(
        config,
        specs.clone(),
        Arc::clone(&table),
        Arc::clone(&events),
        Arc::clone(&metrics),
    );
    write_vips(&maps, config, &specs, ha_debug).context("writing the VIPs to the data plane")?;
    let neighbours = Neighbours::new()?;
    balancer::resolve_all(&table, &neighbours, &specs, MAC_WAIT).await;
    let groups = Arc::new(GroupStates::new(
        maps,
        config.dataplane.lease_timeout,
        ha_debug,
    ));
    metrics
        .register(Box::new(LeaseCollector::new(Arc::clone(&groups))?))
        .context("registering the lease figures")?;
    let ownership = Arc::new(Ownership::new(Arc::clone(&groups), vips));
    let state = Arc::new(AgentState {
        node: config.node.name(),
        ha_debug,
        config_path: config_path.to_owned(),
        started: Instant::now(),
        metrics,
        events,
        health: Mutex::new(health),
        counters: dataplane.counters(),
        table,
        groups,
        config: RwLock::new(config.clone()),
        attachments: RwLock::new(Vec::new()),
        tracking: RwLock::new(Arc::default()),
        operator: Mutex::new(handover::load(config)),
        handovers,
        peers: RwLock::new(None),
        cluster: RwLock::new(None),
    });
    state.set_attachments(dataplane.attachments());
    Ok((state, ownership, neighbours))
}

/// Makes the data plane's VIP map hold the VIPs of `config`'s groups, with
/// the NAT port ranges of the services of `specs`.
fn write_vips(
    maps: &Arc<Maps>,
    config: &Config,
    specs: &[ServiceSpec],
    ha_debug: bool,
) -> Result<(), DataplaneError> {
    VipTable::new(Arc::clone(maps), ha_debug).apply(&balancer::vips(config, specs))
}

/// The agent's metrics, with the data plane's figures read at each scrape.
fn start_metrics(
    config: &Config,
    dataplane: &Dataplane,
    table: &SharedTable,
) -> anyhow::Result<Metrics> {
    let metrics = Metrics::new(&config.node.name()).context("registering metrics")?;
    metrics.set_reload(true);
    metrics.set_flow_table_capacity(config.dataplane.flow_table_size);
    metrics
        .register(Box::new(XdpCollector::new(dataplane.counters())?))
        .context("registering the XDP counters")?;
    metrics
        .register(Box::new(ServiceCollector::new(Arc::clone(table))?))
        .context("registering the service counters")?;
    Ok(metrics)
}

/// The groups' runner, with the heartbeat thread and the XDP records (none
/// in HA debug mode: nothing is written to the maps there).
fn start_groups(
    config: &Config,
    dataplane: &mut Dataplane,
    state: &AgentState,
    ownership: Arc<Ownership>,
    preempt_gate: Option<tokio::sync::watch::Receiver<bool>>,
    cluster: Option<Arc<crate::cluster::Cluster>>,
    ha_debug: bool,
) -> anyhow::Result<GroupRunner> {
    let (heartbeat, records) = if ha_debug {
        (None, None)
    } else {
        let peers = dataplane.peer_maps();
        let key = match &config.cluster.secret_file {
            Some(path) => Some(heartbeat::derive_key(
                Secret::load(path)
                    .context("[cluster] secret_file")?
                    .expose(),
            )),
            None => None,
        };
        peers
            .set_heartbeat(config.node.heartbeat_port, key)
            .context("telling XDP the heartbeat port and key")?;
        let thread = HeartbeatThread::start(Arc::clone(&peers), dataplane.take_peer_events(), key)
            .context("starting the heartbeat thread")?;
        *write(&state.peers) = Some(Arc::clone(&peers));
        (Some(Arc::new(thread)), Some(peers))
    };
    Ok(GroupRunner::new(Wiring {
        ownership,
        events: Arc::clone(&state.events),
        metrics: Arc::clone(&state.metrics),
        heartbeat,
        heartbeat_port: config.node.heartbeat_port,
        records,
        preempt_gate,
        cluster,
    }))
}

/// The tasks that keep the data plane current: backend MACs and the flow
/// collector.
fn spawn_background(
    dataplane: &Dataplane,
    state: &AgentState,
    neighbours: Neighbours,
    specs: &Arc<Mutex<Vec<ServiceSpec>>>,
    flow_policy: tokio::sync::watch::Receiver<FlowPolicy>,
    news: Option<NewsSink>,
) -> Vec<JoinHandle<()>> {
    let initial = *flow_policy.borrow();
    let mut collector = FlowCollector::new(dataplane.maps(), initial);
    if let Some(news) = news {
        collector = collector.with_news(news);
    }
    vec![
        tokio::spawn(balancer::run_resolver(
            Arc::clone(&state.table),
            neighbours,
            Arc::clone(specs),
        )),
        tokio::spawn(balancer::run_collector(
            collector,
            Arc::clone(&state.table),
            Arc::clone(&state.metrics),
            flow_policy,
        )),
    ]
}

/// The API server task, and the sender that stops it gracefully.
async fn serve_api(
    config: &Config,
    state: &Arc<AgentState>,
    ha: Option<axum::Router>,
) -> anyhow::Result<api::server::Running> {
    let secret = config.state_secret_file();
    let guard = api::guard::Guard::load(secret.map(|(_, path)| path))
        .with_context(|| secret.map_or("", |(key, _)| key).to_owned())?;
    api::server::start(
        &config.api,
        api::router(Arc::clone(state), Arc::new(guard), ha),
        api::read_router(Arc::clone(state)),
    )
    .await
}
