//! The daemon: load the config, load and attach XDP, install the services,
//! take the configured group states, serve the API, follow signals (SIGHUP
//! reloads, SIGTERM/SIGINT step down, detach and stop).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    task::JoinHandle,
};
use tracing::{error, info, warn};

use crate::{
    api,
    config::Config,
    dataplane::{
        Attachment, CounterMaps, Dataplane, FlowCollector, FlowTimeouts, GroupStates, ServiceTable,
    },
    events::EventLog,
    groups::GroupRunner,
    health::{
        HealthRunner,
        track::{Effective, Tracker, Tracking},
    },
    lb::{self, SharedTable},
    metrics::Metrics,
    neigh::Neighbours,
    ownership::Ownership,
    pulse::Pulse,
    status::{self, GroupStatus, ServiceStatus, Status, XdpAttachment},
    vip::VipManager,
};

/// How long start-up waits for backend MACs before serving anyway.
const MAC_WAIT: Duration = Duration::from_secs(3);

/// What the API handlers can see of the running agent.
pub struct AgentState {
    pub node: String,
    pub ha_debug: bool,
    pub config_path: PathBuf,
    pub started: Instant,
    pub metrics: Arc<Metrics>,
    pub events: Arc<EventLog>,
    health: Mutex<HealthRunner>,
    counters: CounterMaps,
    table: SharedTable,
    groups: Arc<GroupStates>,
    config: RwLock<Config>,
    attachments: RwLock<Vec<Attachment>>,
    tracking: RwLock<Arc<Tracking>>,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AgentState {
    /// The status report of `GET /api/v1/status`.
    pub fn status(&self) -> Status {
        let counters = match self.counters.snapshot() {
            Ok(snapshot) => status::named_counters(&snapshot),
            Err(err) => {
                warn!("reading XDP counters: {err}");
                Vec::new()
            }
        };
        let config = read(&self.config);
        let groups = config
            .groups
            .iter()
            .enumerate()
            .map(|(id, g)| {
                let g = g.get_ref();
                let effective = read(&self.tracking).effective(&g.name);
                GroupStatus {
                    name: g.name.clone(),
                    vrid: g.vrid,
                    master: u32::try_from(id).is_ok_and(|id| self.groups.is_master(id)),
                    vips: g.vips.iter().map(ToString::to_string).collect(),
                    priority: effective.map_or(g.priority, |e| e.priority),
                    fault: effective.is_some_and(|e| e.fault),
                }
            })
            .collect();
        let table = lb::lock(&self.table);
        let services = table
            .installed()
            .into_iter()
            .map(|(id, spec, _)| ServiceStatus::new(&spec, table.maps().service_counter(id).ok()))
            .collect();
        Status {
            node: self.node.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ha_debug: self.ha_debug,
            uptime_seconds: self.started.elapsed().as_secs(),
            config_path: self.config_path.display().to_string(),
            xdp: read(&self.attachments)
                .iter()
                .map(|a| XdpAttachment::new(&a.iface, a.mode))
                .collect(),
            groups,
            services,
            counters,
        }
    }

    /// Drains (or undrains) a backend; false if no service has it.
    pub fn drain(&self, backend: std::net::SocketAddr, drain: bool) -> bool {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(backend, drain)
    }

    fn set_attachments(&self, attachments: Vec<Attachment>) {
        self.metrics.set_attachments(&attachments);
        *self
            .attachments
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = attachments;
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(config_path: &Path, ha_debug: bool) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let node = config.node.name();
    info!(node, config = %config_path.display(), "vipx-agent {} starting", env!("CARGO_PKG_VERSION"));
    if ha_debug {
        warn!("HA debug mode: VIP, map, fence and reboot actions are logged, not carried out");
    }

    // Start clean, before anything else: a VIP left on the interface by a
    // killed agent would keep this node answering ARP for it while the data
    // plane, the health checks and the election get ready.
    let vips = VipManager::new(ha_debug)?;
    for group in &config.groups {
        Ownership::remove_vips(&vips, group.get_ref()).await;
    }

    let mut dataplane = Dataplane::load_with(config.dataplane.flow_table_size)?;
    for iface in &config.dataplane.interfaces {
        dataplane.attach(iface.as_str(), config.dataplane.xdp_mode)?;
    }
    let maps = dataplane.maps();
    let table: SharedTable = Arc::new(Mutex::new(ServiceTable::new(Arc::clone(&maps), ha_debug)));
    let specs = lb::specs(&config);
    let events = Arc::new(EventLog::default());
    let metrics = Arc::new(
        Metrics::new(&node, Some(dataplane.counters()), Some(Arc::clone(&table)))
            .context("registering metrics")?,
    );
    // Installs the services, then keeps their backend sets in line with
    // the health checks.
    let health = HealthRunner::start(
        &config,
        specs.clone(),
        Arc::clone(&table),
        Arc::clone(&events),
        Arc::clone(&metrics),
    );
    let neighbours = Neighbours::new()?;
    lb::resolve_all(&table, &neighbours, &specs, MAC_WAIT).await;
    let groups = Arc::new(GroupStates::new(
        Arc::clone(&maps),
        config.dataplane.lease_timeout,
        ha_debug,
    ));
    let ownership = Arc::new(Ownership::new(Arc::clone(&groups), vips));

    let state = Arc::new(AgentState {
        node: node.clone(),
        ha_debug,
        config_path: config_path.to_owned(),
        started: Instant::now(),
        metrics,
        events,
        health: Mutex::new(health),
        counters: dataplane.counters(),
        table: Arc::clone(&table),
        groups: Arc::clone(&groups),
        config: RwLock::new(config.clone()),
        attachments: RwLock::new(Vec::new()),
        tracking: RwLock::new(Arc::default()),
    });
    state.set_attachments(dataplane.attachments());
    let (track_tx, mut track_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tracker = start_tracker(&config, &state, track_tx.clone());
    // Ready before claiming: backend MACs resolved (above) and every backend
    // checked once, so a node taking the VIP (back) serves a current view.
    let limit = first_round_limit(&config);
    let ready = state
        .health
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .ready_waiter();
    if tokio::time::timeout(limit, ready).await.is_ok() {
        info!("every backend checked once: taking part in the groups");
    } else {
        warn!("backends not all checked within {limit:?}: taking part in the groups anyway");
    }
    let pulse = start_pulse(&mut dataplane, config.node.heartbeat_port, ha_debug)?;
    let mut group_runner = GroupRunner::new(
        ownership,
        Arc::clone(&state.events),
        Arc::clone(&state.metrics),
        pulse,
        config.node.heartbeat_port,
    );
    group_runner.start(&config, &tracker.tracking).await;

    let refresher = Arc::clone(&groups)
        .spawn_refresher(config.dataplane.lease_refresh)
        .context("starting the lease refresher")?;
    let shared_specs = Arc::new(Mutex::new(specs));
    let mut tasks: Vec<JoinHandle<()>> = vec![
        tokio::spawn(lb::run_resolver(
            Arc::clone(&table),
            neighbours,
            Arc::clone(&shared_specs),
        )),
        tokio::spawn(lb::run_collector(
            FlowCollector::new(Arc::clone(&maps), timeouts(&config)),
            {
                let state = Arc::clone(&state);
                move |stats| {
                    let names: Vec<(u32, String)> = lb::lock(&state.table)
                        .installed()
                        .into_iter()
                        .map(|(id, spec, _)| (id, spec.name))
                        .collect();
                    state.metrics.set_flow_stats(stats, &names);
                }
            },
        )),
    ];

    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("binding the API to {}", config.api.listen))?;
    info!(
        "API on {0}/api/v1/status, metrics on {0}/metrics",
        status::api_url(listener.local_addr()?)
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, api::router(Arc::clone(&state)))
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .into_future(),
    );

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = sigterm.recv() => { info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { info!("SIGINT: stopping"); break; }
            _ = sighup.recv() => {
                let running = read(&state.config).clone();
                if reload(config_path, &state, &mut dataplane, &shared_specs) {
                    let new = read(&state.config).clone();
                    tracker = start_tracker(&new, &state, track_tx.clone());
                    if new.groups != running.groups {
                        group_runner.stop(&running).await;
                        group_runner.start(&new, &tracker.tracking).await;
                    }
                }
            }
            Some((group, effective)) = track_rx.recv() => {
                let config = read(&state.config).clone();
                group_runner.on_tracking(&config, &group, effective).await;
            }
        }
    }

    // Step down first (priority 0 from a MASTER, so a backup takes over at
    // once): the VIPs leave this node before XDP does.
    let config = read(&state.config).clone();
    group_runner.stop(&config).await;
    for task in tasks.drain(..) {
        task.abort();
    }
    drop(tracker);
    drop(refresher);
    dataplane.detach_all();
    let _ = stop_tx.send(());
    if let Err(err) = server.await.context("API server task")? {
        error!("API server: {err}");
    }
    info!("vipx-agent stopped");
    Ok(())
}

/// The heartbeat thread, with the XDP recorder told the heartbeat port.
/// None in HA debug mode: nothing is written to the maps there.
fn start_pulse(
    dataplane: &mut Dataplane,
    port: u16,
    ha_debug: bool,
) -> anyhow::Result<Option<Arc<Pulse>>> {
    if ha_debug {
        return Ok(None);
    }
    let peers = dataplane.peer_maps();
    peers
        .set_heartbeat_port(port)
        .context("telling XDP the heartbeat port")?;
    let pulse = Pulse::start(peers, dataplane.take_peer_events())
        .context("starting the heartbeat thread")?;
    Ok(Some(Arc::new(pulse)))
}

/// How long start-up waits for the first round of health checks: the first
/// check of a backend starts within its jitter and ends within its timeout.
fn first_round_limit(config: &Config) -> Duration {
    config
        .services
        .iter()
        .filter_map(|s| s.get_ref().health.as_ref())
        .map(|h| h.jitter + h.timeout)
        .max()
        .unwrap_or_default()
        + Duration::from_millis(500)
}

fn timeouts(config: &Config) -> FlowTimeouts {
    FlowTimeouts {
        tcp_idle: config.dataplane.tcp_idle_timeout,
        udp_idle: config.dataplane.udp_idle_timeout,
        fin: config.dataplane.fin_timeout,
    }
}

/// Starts the tracked items of every group; their changes come back on
/// `changes`.
fn start_tracker(
    config: &Config,
    state: &AgentState,
    changes: tokio::sync::mpsc::UnboundedSender<(String, Effective)>,
) -> Tracker {
    let service_down = state
        .health
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .service_down();
    let tracker = Tracker::start(
        config,
        Arc::clone(&state.events),
        service_down,
        move |group, effective| {
            let _ = changes.send((group.to_owned(), effective));
        },
    );
    for group in &config.groups {
        let group = group.get_ref();
        if let Some(effective) = tracker.tracking.effective(&group.name) {
            state
                .metrics
                .set_group_priority(&group.name, effective.priority, effective.fault);
        }
    }
    *state
        .tracking
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::clone(&tracker.tracking);
    tracker
}

/// SIGHUP: read the file again; apply it only if it is valid as a whole.
/// Returns whether a new configuration was applied.
fn reload(
    path: &Path,
    state: &AgentState,
    dataplane: &mut Dataplane,
    specs: &Mutex<Vec<crate::dataplane::ServiceSpec>>,
) -> bool {
    let new = match Config::load(path) {
        Ok(new) => new,
        Err(err) => {
            error!("reload rejected, keeping the running config: {err}");
            state.events.record(
                "reload",
                &path.display().to_string(),
                "",
                "rejected",
                &err.to_string(),
            );
            return false;
        }
    };
    let running = read(&state.config).clone();
    if new == running {
        info!("reload: configuration unchanged");
        return false;
    }
    if new.api != running.api
        || new.node != running.node
        || new.dataplane.flow_table_size != running.dataplane.flow_table_size
    {
        warn!("reload: [api], [node] and flow_table_size changes take effect at the next restart");
    }
    let old = &running.dataplane;
    let wanted = &new.dataplane;
    for iface in &old.interfaces {
        if (wanted.xdp_mode != old.xdp_mode || !wanted.interfaces.contains(iface))
            && let Err(err) = dataplane.detach(iface.as_str())
        {
            warn!("reload: {err}");
        }
    }
    let attached: Vec<String> = dataplane
        .attachments()
        .into_iter()
        .map(|a| a.iface)
        .collect();
    for iface in &wanted.interfaces {
        if !attached.iter().any(|a| a == iface.as_str())
            && let Err(err) = dataplane.attach(iface.as_str(), wanted.xdp_mode)
        {
            error!("reload: {err}");
        }
    }
    state.set_attachments(dataplane.attachments());

    let new_specs = lb::specs(&new);
    state
        .health
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .reload(&new, new_specs.clone());
    *specs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = new_specs;
    state.events.record(
        "reload",
        &path.display().to_string(),
        "",
        "applied",
        "SIGHUP",
    );
    *state
        .config
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = new;
    info!("reload: configuration applied");
    true
}
