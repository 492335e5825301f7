//! The daemon's part of the cluster: this node's voter, its pings, the
//! wait for the quorum before the groups start, and the self-fencing when
//! the quorum goes.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{
    api,
    cluster::{
        Cluster, Fencer, Role,
        pinger::{self, Dialer},
        view::Quorum,
    },
    config::Config,
    events::{EventKind, EventLog},
    fence::FenceCommand,
    group_runner::GroupRunner,
    health::track::Tracking,
    sync::auth::Secret,
};

/// This node's voter, when `[cluster] members` are listed; the API's
/// cluster routes with it.
pub(super) fn voter(
    config: &Config,
    metrics: &Arc<crate::metrics::Metrics>,
    events: &Arc<EventLog>,
    ha_debug: bool,
) -> anyhow::Result<Option<(Arc<Cluster>, axum::Router)>> {
    let cluster = &config.cluster;
    if !cluster.enabled() {
        return Ok(None);
    }
    let node = config.node.name();
    cluster.check_member(&node)?;
    let mut voter = Cluster::new(&node, cluster, Role::Node, Some(metrics.cluster()));
    if !cluster.fence.is_empty() {
        voter = voter.with_fencer(Fencer {
            command: FenceCommand {
                argv: cluster.fence.clone(),
                timeout: cluster.fence_timeout,
                retries: cluster.fence_retries,
            },
            ha_debug,
            metrics: Arc::clone(metrics),
            events: Arc::clone(events),
        });
    }
    let voter = Arc::new(voter);
    let routes = api::ha::routes(Arc::clone(&voter), Arc::new(secret_guard(config)?));
    Ok(Some((voter, routes)))
}

/// The guard of the cluster's routes: the cluster secret.
pub(crate) fn secret_guard(config: &Config) -> anyhow::Result<api::guard::Guard> {
    api::guard::Guard::load(config.cluster.secret_file.as_deref()).context("[cluster] secret_file")
}

/// Starts pinging the other voters.
pub(super) fn start_pings(
    config: &Config,
    voter: &Arc<Cluster>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let path = config
        .cluster
        .secret_file
        .as_deref()
        .context("[cluster] members needs secret_file")?;
    let secret = Secret::load(path).context("[cluster] secret_file")?;
    // Over HTTPS with [api.tls] (this node's certificate presented, for
    // peers that require one); one kept-alive connection per voter.
    let client = crate::tls::agent::agent_client(&config.api, voter.ping_interval() * 2)
        .context("the cluster's HTTP client")?;
    let api = config.api.clone();
    let dialer = Dialer {
        client,
        secret: Arc::new(secret),
        base_url: Arc::new(move |addr| crate::tls::agent::api_base_url(&api, addr)),
    };
    Ok(pinger::start(voter, &dialer))
}

/// Waits (bounded) for the quorum before the groups start, so that a node
/// whose peers answer does not start in FAULT; whether it holds it.
pub(super) async fn wait_quorum(voter: &Cluster) -> bool {
    let limit = voter.quorum_timeout() * 2 + Duration::from_millis(500);
    let mut quorum = voter.quorum();
    let held = tokio::time::timeout(limit, quorum.wait_for(|q| q.held))
        .await
        .is_ok();
    if held {
        info!("the cluster's quorum is held: taking part in the groups");
    } else {
        let q = quorum.borrow().clone();
        warn!(
            "no quorum within {limit:?} ({}): the groups start in FAULT and claim nothing until it comes",
            q.describe()
        );
    }
    held
}

/// Keeps the voter's report of this node's groups in step with the
/// timeline.
pub(super) fn follow_groups(events: &EventLog, voter: Arc<Cluster>) -> JoinHandle<()> {
    let mut live = events.subscribe();
    tokio::spawn(async move {
        while let Ok(event) = live.recv().await {
            if event.kind == EventKind::Group {
                voter.set_group_state(&event.subject, &event.to);
            }
        }
    })
}

/// The quorum changed: without it this node fences itself (every group
/// gives its VIPs up, XDP stops serving them); with it back the groups
/// take part again. In HA debug mode the fencing is only logged.
pub(super) async fn quorum_changed(
    quorum: &Quorum,
    config: &Config,
    groups: &mut GroupRunner,
    tracking: &Tracking,
    events: &EventLog,
    ha_debug: bool,
) {
    let masters = groups.masters(config);
    let q = quorum.describe();
    let (to, outcome) = if quorum.held {
        info!("the cluster's quorum is back ({q}): the groups take part again");
        ("held", q)
    } else if ha_debug {
        warn!(
            "HA debug: lost the cluster's quorum ({q}): would fence itself (groups {masters:?} would give their VIPs up, XDP stop serving them); not done"
        );
        ("lost", format!("{q}; HA debug: not fenced"))
    } else {
        warn!(
            "lost the cluster's quorum ({q}): fencing itself: groups {masters:?} give their VIPs up and claim nothing until it is back"
        );
        ("lost", format!("{q}; fenced itself"))
    };
    events.record(EventKind::Quorum, "cluster", None, to, &outcome);
    if ha_debug && !quorum.held {
        return;
    }
    groups.on_quorum(config, tracking, quorum.held).await;
}
