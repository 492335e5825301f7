//! The faults: what each kind does to the lab, with its target and
//! durations drawn from the run's seeded generator.
//!
//! Every parameter of a fault comes from the generator, in the order the
//! faults are tried, so a seed replays the same sequence (kinds, targets,
//! delays). Only the handover's node is the cluster's own choice: it is
//! whichever node is MASTER then.
//!
//! A kind is one [`Kind`] (in [`Kind::ALL`], with its name), one [`Fault`]
//! variant drawn in [`Kind::draw`], and one function run from
//! [`super::Run::apply`].

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use vipx_lab::{PGBOUNCER_FIRST_PORT, Signal};

use super::Run;
use super::owner::DETECTION;

/// How long a takeover, a handover or a return may take.
pub const MOVE_WITHIN: Duration = Duration::from_secs(15);
/// Weights a reload picks from.
const WEIGHTS: std::ops::RangeInclusive<u32> = 1..=3;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Kill,
    Stall,
    LinkFlap,
    BackendKill,
    Restart,
    Reload,
    Handover,
    Partition,
}

impl Kind {
    pub const ALL: [Self; 8] = [
        Self::Kill,
        Self::Stall,
        Self::LinkFlap,
        Self::BackendKill,
        Self::Restart,
        Self::Reload,
        Self::Handover,
        Self::Partition,
    ];

    /// Its name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill-9",
            Self::Stall => "sigstop",
            Self::LinkFlap => "link-flap",
            Self::BackendKill => "backend-kill",
            Self::Restart => "agent-restart",
            Self::Reload => "reload",
            Self::Handover => "handover",
            Self::Partition => "partition",
        }
    }

    /// `--only`'s parser.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
                format!("{text:?}: not a fault (one of {})", names.join(", "))
            })
    }

    /// A fault of this kind against a lab of `nodes` agents and `backends`
    /// PgBouncers.
    fn draw(self, rng: &mut fastrand::Rng, nodes: usize, backends: usize) -> Fault {
        let node = rng.usize(..nodes);
        match self {
            Self::Kill => Fault::Kill {
                node,
                down: millis(rng, 200..=3000),
            },
            Self::Stall => Fault::Stall {
                node,
                // Half shorter than the detection time (nothing may move),
                // half longer (a takeover, then the stopped agent returns).
                stop: if rng.bool() {
                    let max = u64::try_from(DETECTION.as_millis() / 2).unwrap_or(1).max(2);
                    millis(rng, 1..=max)
                } else {
                    millis(rng, 100..=3000)
                },
            },
            Self::LinkFlap => Fault::LinkFlap {
                node,
                down: millis(rng, 50..=3000),
            },
            Self::BackendKill => Fault::BackendKill {
                backend: rng.usize(..backends),
                down: millis(rng, 500..=3000),
            },
            Self::Restart => Fault::Restart { node },
            Self::Reload => Fault::Reload {
                weights: (0..backends).map(|_| rng.u32(WEIGHTS)).collect(),
            },
            Self::Handover => Fault::Handover {
                hold: millis(rng, 500..=4000),
            },
            Self::Partition => Fault::Partition {
                node,
                down: millis(rng, 200..=3000),
            },
        }
    }
}

fn millis(rng: &mut fastrand::Rng, range: std::ops::RangeInclusive<u64>) -> Duration {
    Duration::from_millis(rng.u64(range))
}

/// One fault, with its target and durations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 of node `node`'s agent, started again after `down`.
    Kill { node: usize, down: Duration },
    /// SIGSTOP of node `node`'s agent, SIGCONT after `stop`.
    Stall { node: usize, stop: Duration },
    /// Node `node`'s cable out for `down`.
    LinkFlap { node: usize, down: Duration },
    /// kill -9 of PgBouncer `backend`, started again after `down`.
    BackendKill { backend: usize, down: Duration },
    /// SIGTERM to node `node`'s agent, then started again.
    Restart { node: usize },
    /// Every node reloaded (SIGHUP) with these PgBouncer weights.
    Reload { weights: Vec<u32> },
    /// `vipx-agent handover --for HOLD` on the MASTER.
    Handover { hold: Duration },
    /// Node `node` cut off from the other nodes (not from the client and
    /// the backends) for `down`.
    Partition { node: usize, down: Duration },
}

impl Fault {
    /// The next fault: a kind among `kinds`, then its parameters.
    pub fn draw(rng: &mut fastrand::Rng, kinds: &[Kind], nodes: usize, backends: usize) -> Self {
        let kind = kinds[rng.usize(..kinds.len())];
        kind.draw(rng, nodes, backends)
    }

    pub fn kind(&self) -> Kind {
        match self {
            Self::Kill { .. } => Kind::Kill,
            Self::Stall { .. } => Kind::Stall,
            Self::LinkFlap { .. } => Kind::LinkFlap,
            Self::BackendKill { .. } => Kind::BackendKill,
            Self::Restart { .. } => Kind::Restart,
            Self::Reload { .. } => Kind::Reload,
            Self::Handover { .. } => Kind::Handover,
            Self::Partition { .. } => Kind::Partition,
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.kind().name();
        match self {
            Self::Kill { node, down } => write!(f, "{name} n{} (down {down:?})", node + 1),
            Self::Stall { node, stop } => write!(f, "{name} n{} for {stop:?}", node + 1),
            Self::LinkFlap { node, down } => write!(f, "{name} n{} (down {down:?})", node + 1),
            Self::BackendKill { backend, down } => write!(
                f,
                "{name} pgbouncer :{} (down {down:?})",
                PGBOUNCER_FIRST_PORT + u16::try_from(*backend).unwrap_or(0)
            ),
            Self::Restart { node } => write!(f, "{name} n{}", node + 1),
            Self::Reload { weights } => write!(f, "{name} every node, weights {weights:?}"),
            Self::Handover { hold } => write!(f, "{name} of the MASTER for {hold:?}"),
            Self::Partition { node, down } => {
                write!(f, "{name} n{} from the others for {down:?}", node + 1)
            }
        }
    }
}

impl Run {
    /// Carries `fault` out, to its end (the agent, link or PgBouncer
    /// back); the recovery is [`Run::settle`]'s.
    pub fn apply(&mut self, fault: &Fault) -> Result<()> {
        match fault {
            Fault::Kill { node, down } => self.kill(*node, *down),
            Fault::Stall { node, stop } => self.stall(*node, *stop),
            Fault::LinkFlap { node, down } => self.link_flap(*node, *down),
            Fault::BackendKill { backend, down } => self.backend_kill(*backend, *down),
            Fault::Restart { node } => self.restart(*node),
            Fault::Reload { weights } => self.reload(weights),
            Fault::Handover { hold } => self.handover(*hold),
            Fault::Partition { node, down } => self.partition(*node, *down),
        }
    }

    fn kill(&mut self, node: usize, down: Duration) -> Result<()> {
        let pid = self.cluster.nodes[node].agent;
        self.cluster.lab.kill(pid, Signal::SIGKILL)?;
        self.cluster
            .lab
            .wait_exit(pid, MOVE_WITHIN)?
            .context("the killed agent is gone")?;
        self.pause(down)?;
        self.cluster.restart_agent(node).map(drop)
    }

    fn stall(&mut self, node: usize, stop: Duration) -> Result<()> {
        let pid = self.cluster.nodes[node].agent;
        self.cluster.lab.kill(pid, Signal::SIGSTOP)?;
        let paused = self.pause(stop);
        // Continued whatever happened meanwhile.
        self.cluster.lab.kill(pid, Signal::SIGCONT)?;
        paused
    }

    fn link_flap(&mut self, node: usize, down: Duration) -> Result<()> {
        let host = self.cluster.nodes[node].host.clone();
        host.set_connected(false)?;
        let paused = self.pause(down);
        host.set_connected(true)?;
        paused
    }

    /// A split brain in the making: the node still reaches the client and
    /// the backends, not its peers; the cluster's quorum must keep one
    /// node answering for the VIP.
    fn partition(&mut self, node: usize, down: Duration) -> Result<()> {
        let hosts: Vec<vipx_lab::Host> =
            self.cluster.nodes.iter().map(|n| n.host.clone()).collect();
        let others: Vec<&vipx_lab::Host> = hosts
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != node)
            .map(|(_, h)| h)
            .collect();
        vipx_lab::Cluster::partition(&[&hosts[node]], &others)?;
        let paused = self.pause(down);
        let all: Vec<&vipx_lab::Host> = hosts.iter().collect();
        vipx_lab::Cluster::heal(&all)?;
        paused
    }

    fn restart(&mut self, node: usize) -> Result<()> {
        let status = self
            .cluster
            .lab
            .stop_process(self.cluster.nodes[node].agent)?;
        if !status.success() {
            self.note(format!(
                "n{}'s agent ended with {status} after SIGTERM",
                node + 1
            ));
        }
        self.cluster.restart_agent(node).map(drop)
    }

    fn reload(&mut self, weights: &[u32]) -> Result<()> {
        let backends: Vec<(u16, u32)> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| (PGBOUNCER_FIRST_PORT + u16::try_from(i).unwrap_or(0), *w))
            .collect();
        for node in 0..self.cluster.nodes.len() {
            self.cluster.reconfigure(node, &backends)?;
        }
        self.check_weights(weights)
    }

    fn handover(&mut self, hold: Duration) -> Result<()> {
        let master = self.cluster.wait_any_master(MOVE_WITHIN)?;
        let hold_arg = format!("{}ms", hold.as_millis());
        self.cluster
            .cli(master, &["handover", "--for", &hold_arg])?;
        let moved = self.wait_until(MOVE_WITHIN, |run| {
            (0..run.cluster.nodes.len()).any(|i| i != master && run.cluster.is_only_master(i))
        })?;
        if !moved {
            bail!(
                "after `handover` on n{}, no other node was the only MASTER within {MOVE_WITHIN:?}",
                master + 1
            );
        }
        self.pause(hold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(seed: u64, kinds: &[Kind]) -> Vec<Fault> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..50)
            .map(|_| Fault::draw(&mut rng, kinds, 3, 3))
            .collect()
    }

    #[test]
    fn a_seed_gives_one_sequence_of_faults() {
        assert_eq!(sequence(13, &Kind::ALL), sequence(13, &Kind::ALL));
        assert_ne!(sequence(13, &Kind::ALL), sequence(14, &Kind::ALL));
        let only = sequence(13, &[Kind::Stall]);
        assert!(only.iter().all(|f| f.kind() == Kind::Stall));
        // Both sides of the detection time.
        let stops: Vec<Duration> = only
            .iter()
            .filter_map(|f| match f {
                Fault::Stall { stop, .. } => Some(*stop),
                _ => None,
            })
            .collect();
        assert!(stops.iter().any(|s| *s < DETECTION));
        assert!(stops.iter().any(|s| *s > DETECTION));
    }

    #[test]
    fn every_kind_parses_from_its_name() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.name()), Ok(kind));
        }
        assert!(Kind::parse("split").is_err());
    }
}
