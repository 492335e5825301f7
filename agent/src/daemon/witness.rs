//! `vipx-agent witness`: the cluster's witness, a vote without a data
//! plane (as corosync's qdevice): it answers the members' pings on its
//! listed address and gives its one vote to one node at a time, so that a
//! two-node cluster keeps a majority on one side of a partition only.

use std::{path::Path, sync::Arc};

use anyhow::Context as _;
use axum::{Router, routing::get};
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

use crate::{
    api,
    cluster::{Cluster, Role},
    config::Config,
    metrics::Metrics,
};

/// Runs the witness until SIGTERM or SIGINT.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let node = config.node.name();
    let me = config
        .cluster
        .check_witness(&node)
        .with_context(|| format!("{}", config_path.display()))?
        .clone();
    let metrics = Arc::new(Metrics::new(&node).context("registering the metrics")?);
    let cluster = Arc::new(Cluster::new(
        &node,
        &config.cluster,
        Role::Witness,
        Some(metrics.cluster()),
    ));
    let guard = super::cluster::secret_guard(&config)?;
    let router = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = Arc::clone(&metrics);
                async move { metrics.render() }
            }),
        )
        .merge(api::ha::routes(Arc::clone(&cluster), Arc::new(guard)))
        .layer(axum::middleware::from_fn(api::guard::access_log));
    let listener = tokio::net::TcpListener::bind(me.address)
        .await
        .with_context(|| format!("binding the witness to {}", me.address))?;
    info!(
        "vipx-agent {} witness {node} on {}: voters {}",
        env!("CARGO_PKG_VERSION"),
        me.address,
        config.cluster.voters()
    );
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let tls = crate::tls::agent::acceptor(&config.api)?;
    let server = tokio::spawn(api::server::serve(
        listener,
        router,
        config.api.header_timeout,
        tls,
        async move {
            let _ = stopped.await;
        },
    ));
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = sigterm.recv() => info!("SIGTERM: stopping"),
        _ = sigint.recv() => info!("SIGINT: stopping"),
    }
    let _ = stop.send(());
    server.await.context("the witness's server")??;
    info!("witness stopped");
    Ok(())
}
