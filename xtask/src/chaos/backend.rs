//! Invariant 3, a backend's death is acted on: a killed PgBouncer is
//! marked down by every agent within [`DOWN_BOUND`], new connections
//! through the VIP no longer reach it, and once it is back every agent
//! marks it up again. Also the reload's check: the new weights are in
//! force on every node.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use vipx_lab::{Signal, VIP_PORT, probe};

use super::Run;
use super::faults::MOVE_WITHIN;
use super::report::Invariant;

const INTERVAL_MS: u64 = 300;
const TIMEOUT_MS: u64 = 300;
const FALL: u64 = 2;
const RISE: u64 = 2;
/// The service's health checks in the chaos lab.
pub fn health() -> String {
    format!(
        "check = \"postgres\"\ninterval = \"{INTERVAL_MS}ms\"\ntimeout = \"{TIMEOUT_MS}ms\"\n\
         jitter = \"20ms\"\nrise = {RISE}\nfall = {FALL}\n"
    )
}
/// Scraping the metrics, and checks late on two busy cores.
const SLACK: Duration = Duration::from_secs(1);
/// A dead PgBouncer is down for every agent within interval x fall +
/// timeout (the last check's) + slack.
pub const DOWN_BOUND: Duration =
    Duration::from_millis(INTERVAL_MS * FALL + TIMEOUT_MS).saturating_add(SLACK);
/// A PgBouncer back is up again within interval x rise + slack.
const UP_BOUND: Duration = Duration::from_millis(INTERVAL_MS * RISE).saturating_add(SLACK);
/// New connections through the VIP once it is down everywhere.
const NEW_CONNECTIONS: usize = 20;
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a reload gets to be in force.
const RELOAD_WITHIN: Duration = Duration::from_secs(5);

/// "after 1.2s", or that it did not happen in the time waited.
fn after(took: Option<Duration>) -> String {
    took.map_or_else(
        || "not at all (waited the bound and 5 s more)".to_owned(),
        |took| format!("after {took:?}"),
    )
}

fn series(backend: &str, metric: &str, state: Option<&str>) -> String {
    match state {
        Some(state) => {
            format!("{metric}{{backend=\"{backend}\",service=\"pgbouncer\",state=\"{state}\"}}")
        }
        None => format!("{metric}{{backend=\"{backend}\",service=\"pgbouncer\"}}"),
    }
}

impl Run {
    /// kill -9 of PgBouncer `i`, the agents' reaction checked, and the
    /// PgBouncer started again after `down`.
    pub(super) fn backend_kill(&mut self, i: usize, down: Duration) -> Result<()> {
        let bouncer = self.cluster.pgbouncers[i].clone();
        let clients = bouncer.admin("SHOW CLIENTS").context("SHOW CLIENTS")?;
        let on_it: Vec<String> = self
            .load
            .names()
            .into_iter()
            .filter(|name| clients.lines().any(|row| row.split('|').any(|f| f == name)))
            .collect();
        self.note(format!(
            "sessions on :{} (their loss is expected): {on_it:?}",
            bouncer.port()
        ));
        self.load.expect_losses(on_it);
        self.cluster.lab.kill(bouncer.pid(), Signal::SIGKILL)?;
        let killed = Instant::now();
        self.cluster
            .lab
            .wait_exit(bouncer.pid(), MOVE_WITHIN)?
            .context("the killed PgBouncer is gone")?;
        let backend = self.cluster.backend_addr(i).to_string();
        let marked = self.wait_state(&backend, "down", killed, DOWN_BOUND)?;
        for (node, took) in marked.iter().enumerate() {
            self.report.check(Invariant::BackendDeath, 1);
            match took {
                Some(took) if *took <= DOWN_BOUND => {
                    self.report.slowest_down = self.report.slowest_down.max(*took);
                }
                _ => self.violate(
                    Invariant::BackendDeath,
                    format!(
                        "n{} marked the killed PgBouncer {backend} down {} (bound {DOWN_BOUND:?})",
                        node + 1,
                        after(*took)
                    ),
                ),
            }
        }
        self.new_connections_avoid(&backend)?;
        self.pause(down)?;
        self.cluster.restart_pgbouncer(i)?;
        let back = Instant::now();
        let marked = self.wait_state(&backend, "up", back, UP_BOUND)?;
        for (node, took) in marked.iter().enumerate() {
            self.report.check(Invariant::BackendDeath, 1);
            if !took.is_some_and(|t| t <= UP_BOUND) {
                self.violate(
                    Invariant::BackendDeath,
                    format!(
                        "n{} marked PgBouncer {backend}, back, up {} (bound {UP_BOUND:?})",
                        node + 1,
                        after(*took)
                    ),
                );
            }
        }
        Ok(())
    }

    /// With the PgBouncer down everywhere, new connections through the VIP
    /// all answer (one sent to the dead PgBouncer would be refused).
    fn new_connections_avoid(&mut self, backend: &str) -> Result<()> {
        let master = self.cluster.wait_any_master(MOVE_WITHIN)?;
        self.report.check(Invariant::BackendDeath, 1);
        let weight = self
            .cluster
            .metric(master, &series(backend, "vipx_backend_weight", None));
        if weight != Some(0.0) {
            self.violate(
                Invariant::BackendDeath,
                format!(
                    "the MASTER n{} still gives the dead {backend} weight {weight:?}",
                    master + 1
                ),
            );
        }
        let target = SocketAddr::from((self.cluster.vip(), VIP_PORT));
        let failures: Vec<String> = (0..NEW_CONNECTIONS)
            .filter_map(|_| probe::try_ask_from(&self.cluster.client, target, PROBE_TIMEOUT).err())
            .collect();
        self.report.check(Invariant::BackendDeath, 1);
        if !failures.is_empty() {
            self.violate(
                Invariant::BackendDeath,
                format!(
                    "{} of {NEW_CONNECTIONS} new connections through the VIP failed with {backend} down ({})",
                    failures.len(),
                    failures.join("; ")
                ),
            );
        }
        Ok(())
    }

    /// How long after `since` each node reported `backend` in `state`
    /// (`None`: not within `bound` + 5 s).
    fn wait_state(
        &mut self,
        backend: &str,
        state: &str,
        since: Instant,
        bound: Duration,
    ) -> Result<Vec<Option<Duration>>> {
        let series = series(backend, "vipx_backend_health", Some(state));
        let mut marked: Vec<Option<Duration>> = vec![None; self.cluster.nodes.len()];
        let deadline = since + bound + Duration::from_secs(5);
        while marked.iter().any(Option::is_none) && Instant::now() < deadline {
            for (node, took) in marked.iter_mut().enumerate() {
                if took.is_none() && self.cluster.metric(node, &series) == Some(1.0) {
                    *took = Some(since.elapsed());
                }
            }
            self.pause(Duration::from_millis(20))?;
        }
        Ok(marked)
    }

    /// After a reload, every node gives every PgBouncer its new weight.
    pub(super) fn check_weights(&mut self, weights: &[u32]) -> Result<()> {
        let expected: Vec<(String, f64)> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let backend = self.cluster.backend_addr(i).to_string();
                (series(&backend, "vipx_backend_weight", None), f64::from(*w))
            })
            .collect();
        for node in 0..self.cluster.nodes.len() {
            self.report.check(Invariant::Reload, 1);
            let applied = self.wait_until(RELOAD_WITHIN, |run| {
                expected
                    .iter()
                    .all(|(series, w)| run.cluster.metric(node, series) == Some(*w))
            })?;
            if !applied {
                let found: Vec<Option<f64>> = expected
                    .iter()
                    .map(|(series, _)| self.cluster.metric(node, series))
                    .collect();
                self.violate(
                    Invariant::Reload,
                    format!(
                        "n{} gives the PgBouncers weights {found:?} {RELOAD_WITHIN:?} after the reload to {weights:?}",
                        node + 1
                    ),
                );
            }
        }
        Ok(())
    }
}
