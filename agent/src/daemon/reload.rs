//! SIGHUP: read the file again and apply it only if it is valid as a whole.

use std::{path::Path, sync::Mutex};

use tracing::{error, info, warn};

use crate::{
    balancer,
    config::Config,
    dataplane::{Dataplane, ServiceSpec},
    events::{EventKind, ReloadOutcome},
    locks::{lock, read, write},
    state::AgentState,
};

/// Reloads `path`; returns whether a new configuration was applied.
pub(super) fn reload(
    path: &Path,
    state: &AgentState,
    dataplane: &mut Dataplane,
    specs: &Mutex<Vec<ServiceSpec>>,
) -> bool {
    let subject = path.display().to_string();
    let new = match Config::load(path) {
        Ok(new) => new,
        Err(err) => {
            error!("reload rejected, keeping the running config: {err}");
            state.events.record(
                EventKind::Reload,
                &subject,
                None,
                ReloadOutcome::Rejected,
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
        || new.sync != running.sync
        || new.dataplane.flow_table_size != running.dataplane.flow_table_size
        || new.dataplane.pin_path != running.dataplane.pin_path
    {
        warn!(
            "reload: [api], [node], [sync], flow_table_size and pin_path changes take effect at the next restart"
        );
    }
    reattach(&running, &new, state, dataplane);
    let new_specs = balancer::specs(&new);
    lock(&state.health).reload(&new, new_specs.clone());
    if let Err(err) = super::write_vips(&dataplane.maps(), &new, &new_specs, state.ha_debug) {
        error!("reload: writing the VIPs to the data plane: {err}");
    }
    *lock(specs) = new_specs;
    state.events.record(
        EventKind::Reload,
        &subject,
        None,
        ReloadOutcome::Applied,
        "SIGHUP",
    );
    *write(&state.config) = new;
    info!("reload: configuration applied");
    true
}

/// Detaches XDP from the interfaces (or the mode) the new configuration no
/// longer wants, and attaches it where it is now wanted: their pinned links
/// go and come with them.
fn reattach(running: &Config, new: &Config, state: &AgentState, dataplane: &mut Dataplane) {
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
}
