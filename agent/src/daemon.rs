//! The daemon: load the config, load and attach XDP, serve the API, follow
//! signals (SIGHUP reloads, SIGTERM/SIGINT stop and detach).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Instant,
};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::{
    api,
    config::Config,
    dataplane::{Attachment, CounterMaps, Dataplane},
    metrics::Metrics,
    status::{self, Status, XdpAttachment},
};

/// What the API handlers can see of the running agent.
pub struct AgentState {
    pub node: String,
    pub ha_debug: bool,
    pub config_path: PathBuf,
    pub started: Instant,
    pub metrics: Metrics,
    counters: CounterMaps,
    attachments: RwLock<Vec<Attachment>>,
}

impl AgentState {
    /// The status report of `GET /api/v1/status`.
    pub fn status(&self) -> Status {
        let attachments = self
            .attachments
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let counters = match self.counters.snapshot() {
            Ok(snapshot) => status::named_counters(&snapshot),
            Err(err) => {
                warn!("reading XDP counters: {err}");
                Vec::new()
            }
        };
        Status {
            node: self.node.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ha_debug: self.ha_debug,
            uptime_seconds: self.started.elapsed().as_secs(),
            config_path: self.config_path.display().to_string(),
            xdp: attachments
                .iter()
                .map(|a| XdpAttachment::new(&a.iface, a.mode))
                .collect(),
            counters,
        }
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
    let mut config = Config::load(config_path)?;
    let node = config.node.name();
    info!(node, config = %config_path.display(), "vipx-agent {} starting", env!("CARGO_PKG_VERSION"));
    if ha_debug {
        warn!("HA debug mode: VIP, map, fence and reboot actions are logged, not carried out");
    }

    let mut dataplane = Dataplane::load()?;
    for iface in &config.dataplane.interfaces {
        dataplane.attach(iface.as_str(), config.dataplane.xdp_mode)?;
    }

    let state = Arc::new(AgentState {
        node: node.clone(),
        ha_debug,
        config_path: config_path.to_owned(),
        started: Instant::now(),
        metrics: Metrics::new(&node, Some(dataplane.counters())).context("registering metrics")?,
        counters: dataplane.counters(),
        attachments: RwLock::new(Vec::new()),
    });
    state.set_attachments(dataplane.attachments());

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
                reload(config_path, &mut config, &mut dataplane);
                state.set_attachments(dataplane.attachments());
            }
        }
    }

    dataplane.detach_all();
    let _ = stop_tx.send(());
    if let Err(err) = server.await.context("API server task")? {
        error!("API server: {err}");
    }
    info!("vipx-agent stopped");
    Ok(())
}

/// SIGHUP: read the file again; apply it only if it is valid as a whole.
fn reload(path: &Path, running: &mut Config, dataplane: &mut Dataplane) {
    let new = match Config::load(path) {
        Ok(new) => new,
        Err(err) => {
            error!("reload rejected, keeping the running config: {err}");
            return;
        }
    };
    if new == *running {
        info!("reload: configuration unchanged");
        return;
    }
    if new.api != running.api || new.node != running.node {
        warn!("reload: [api] and [node] changes take effect at the next restart");
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
        if attached.iter().any(|a| a == iface.as_str()) {
            continue;
        }
        if let Err(err) = dataplane.attach(iface.as_str(), wanted.xdp_mode) {
            error!("reload: {err}");
        }
    }
    info!("reload: configuration applied");
    *running = new;
}
