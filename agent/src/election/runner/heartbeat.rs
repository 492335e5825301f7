//! An election's part in the fast heartbeat: its registration with the
//! heartbeat thread, what it advertises there, and the losses it hears.

use std::{net::IpAddr, sync::Arc};

use tokio::sync::mpsc;
use tracing::warn;

use super::{State, Wiring};
use crate::{
    config::GroupConfig,
    heartbeat::{Advertised, HeartbeatLink, HeartbeatSpec, HeartbeatThread, Loss},
};

/// The group's registration with the heartbeat thread, ended when the
/// election ends (also when its task is aborted).
pub(super) struct Registered {
    thread: Arc<HeartbeatThread>,
    pub(super) link: Arc<HeartbeatLink>,
    /// Where the thread reports a lost master (see
    /// [`crate::heartbeat::Detector`]).
    pub(super) losses: mpsc::UnboundedReceiver<Loss>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.thread.unregister(&self.link);
    }
}

/// Starts the group's heartbeat (when configured), from the adverts'
/// source: the address the peers list us by.
pub(super) fn register_heartbeat(
    group: &GroupConfig,
    source: IpAddr,
    priority: u8,
    wiring: &Wiring,
) -> Option<Registered> {
    let (Some(thread), Some(interval)) = (&wiring.heartbeat, group.heartbeat_interval) else {
        return None;
    };
    let spec = HeartbeatSpec {
        name: group.name.clone(),
        vrid: group.vrid,
        interval,
        multiplier: group.heartbeat_multiplier,
        source,
        peers: group.unicast_peers.clone(),
        port: wiring.heartbeat_port,
        dampening: group.heartbeat_dampening,
    };
    let (tx, losses) = mpsc::unbounded_channel();
    match thread.register(spec, priority, tx, wiring.metrics.heartbeat(&group.name)) {
        Ok(link) => Some(Registered {
            thread: Arc::clone(thread),
            link,
            losses,
        }),
        Err(err) => {
            warn!(group = %group.name, "heartbeat not started, VRRP alone detects failures: {err}");
            None
        }
    }
}

/// What our heartbeats say of an election's state.
pub(super) fn advertised(state: State) -> Advertised {
    match state {
        State::Master => Advertised::Master,
        State::Backup => Advertised::Backup,
        State::Initialize => Advertised::Stopping,
    }
}

/// The next loss the heartbeat reports (never, without a heartbeat).
pub(super) async fn next_loss(heartbeat: &mut Option<Registered>) -> Option<Loss> {
    match heartbeat {
        Some(registered) => registered.losses.recv().await,
        None => std::future::pending().await,
    }
}
