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
    let reject = |why: String| {
        error!("reload rejected, keeping the running config: {why}");
        state.events.record(
            EventKind::Reload,
            &subject,
            None,
            ReloadOutcome::Rejected,
            &why,
        );
        false
    };
    let new = match Config::load(path) {
        Ok(new) => new,
        Err(err) => return reject(err.to_string()),
    };
    let running = read(&state.config).clone();
    if new == running {
        info!("reload: configuration unchanged");
        return false;
    }
    let fixed = restart_only(&running, &new);
    if !fixed.is_empty() {
        return reject(format!(
            "{} changed: only a restart of the agent applies {} (the rest of the file was not applied either; revert {} to reload the rest)",
            fixed.join(", "),
            if fixed.len() == 1 { "it" } else { "them" },
            if fixed.len() == 1 { "it" } else { "them" },
        ));
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

/// The keys a running agent cannot change (sockets, the maps' sizes and
/// pins, the cluster's identity) that differ between `running` and `new`.
/// Everything else a reload applies: groups (only those that changed
/// restart), services, health checks, XDP interfaces and mode, lease and
/// flow timeouts, handover_hold, state_file.
fn restart_only(running: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (running, new);
    [
        ("[api]", a.api != b.api),
        ("[node] name", a.node.name != b.node.name),
        (
            "[node] heartbeat_port",
            a.node.heartbeat_port != b.node.heartbeat_port,
        ),
        ("[sync]", a.sync != b.sync),
        ("[cluster]", a.cluster != b.cluster),
        (
            "[dataplane] flow_table_size",
            a.dataplane.flow_table_size != b.dataplane.flow_table_size,
        ),
        (
            "[dataplane] pin_path",
            a.dataplane.pin_path != b.dataplane.pin_path,
        ),
        (
            "[dataplane] lease_refresh",
            a.dataplane.lease_refresh != b.dataplane.lease_refresh,
        ),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = "[node]\nname = \"a\"\n[dataplane]\ninterfaces = [\"eth0\"]\n[api]\nlisten = \"0.0.0.0:9469\"\n";

    fn parse(text: &str) -> Config {
        Config::parse(Path::new("x.toml"), text).expect("test config")
    }

    #[test]
    fn a_reload_gives_the_flow_collector_its_new_embryonic_and_rst_policy() {
        let base = parse(BASE);
        let new = parse(&BASE.replace(
            "[dataplane]\n",
            "[dataplane]\nembryonic_timeout = \"2s\"\nembryonic_port_share = 20\nrst_timeout = \"3s\"\n",
        ));
        assert!(restart_only(&base, &new).is_empty(), "they apply at once");
        let policy = crate::daemon::flow_policy(&new);
        assert_eq!(policy.embryonic, std::time::Duration::from_secs(2));
        assert_eq!(policy.embryonic_share, 20);
        assert_eq!(policy.rst, std::time::Duration::from_secs(3));
    }

    #[test]
    fn only_sockets_sizes_pins_and_identity_wait_for_a_restart() {
        let base = parse(BASE);
        assert!(restart_only(&base, &base).is_empty());
        let live = parse(&BASE.replace(
            "[dataplane]\n",
            "[dataplane]\nlease_timeout = \"200ms\"\ntcp_idle_timeout = \"5m\"\n",
        ));
        assert!(
            restart_only(&base, &live).is_empty(),
            "timeouts apply at once"
        );
        let fixed = parse(
            &BASE
                .replace("9469", "9470")
                .replace("name = \"a\"", "name = \"b\"")
                .replace("[dataplane]\n", "[dataplane]\nflow_table_size = 4096\n"),
        );
        assert_eq!(
            restart_only(&base, &fixed),
            ["[api]", "[node] name", "[dataplane] flow_table_size"]
        );
    }
}
