//! What can happen to the MASTER (node 0) while sessions run: the events of
//! the session tests and of `cargo xtask bench sessions`, each carried out
//! to its end (a takeover, and for some the old master's return).

use std::time::Duration;

use anyhow::{Context as _, Result};

use super::Cluster;
use crate::Signal;

/// How long a takeover or a return may take.
const MOVE_WITHIN: Duration = Duration::from_secs(15);

/// An event on node 0, the MASTER.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Its link cut (bridge port down), for good.
    LinkCut,
    /// kill -9 of its agent.
    Kill,
    /// Its agent stopped 5 s (SIGSTOP), then continued: node 1 takes over,
    /// node 0 comes back and preempts.
    Stall,
    /// SIGTERM to its agent: the planned handover.
    Stop,
    /// Its link cut, then back 3 s after node 1 took over: node 0 preempts.
    Return,
    /// Its agent stopped (SIGTERM) and started again: handover, then node 0
    /// takes the VIP back once ready.
    Restart,
}

impl Failure {
    pub const ALL: [Self; 6] = [
        Self::LinkCut,
        Self::Kill,
        Self::Stall,
        Self::Stop,
        Self::Return,
        Self::Restart,
    ];

    /// A line for tables and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::LinkCut => "master's link cut",
            Self::Kill => "master's agent killed (-9)",
            Self::Stall => "master's agent stopped 5 s (SIGSTOP)",
            Self::Stop => "master's agent stopped (SIGTERM)",
            Self::Return => "old master returns and preempts",
            Self::Restart => "master's agent restarted",
        }
    }

    /// How long a load must run so that it spans the whole event when the
    /// event starts `at` into it (the moves, and a few seconds after).
    pub fn load_seconds(self, at: Duration) -> u64 {
        let event = match self {
            Self::LinkCut | Self::Kill | Self::Stop => 8,
            Self::Stall => 12,
            Self::Return => 14,
            Self::Restart => 16,
        };
        at.as_secs() + event
    }
}

impl Cluster {
    /// Carries out `failure` on node 0 (the MASTER) and waits for the moves
    /// it causes: node 1 MASTER, then node 0 again for the events where it
    /// returns.
    pub fn fail_master(&mut self, failure: Failure) -> Result<()> {
        let agent = self.nodes[0].agent;
        match failure {
            Failure::LinkCut | Failure::Return => self.nodes[0].host.set_connected(false)?,
            Failure::Kill => self.lab.kill(agent, Signal::SIGKILL)?,
            Failure::Stall => self.lab.kill(agent, Signal::SIGSTOP)?,
            Failure::Stop | Failure::Restart => self.lab.kill(agent, Signal::SIGTERM)?,
        }
        self.wait_master(1, MOVE_WITHIN)
            .context("node 1 takes over")?;
        match failure {
            Failure::LinkCut | Failure::Kill | Failure::Stop => return Ok(()),
            Failure::Stall => {
                std::thread::sleep(Duration::from_secs(5));
                self.lab.kill(agent, Signal::SIGCONT)?;
            }
            Failure::Return => {
                std::thread::sleep(Duration::from_secs(3));
                self.nodes[0].host.set_connected(true)?;
            }
            Failure::Restart => {
                self.lab
                    .wait_exit(agent, MOVE_WITHIN)?
                    .context("node 0's agent stops after SIGTERM")?;
                self.restart_agent(0)?;
            }
        }
        self.wait_master(0, MOVE_WITHIN)
            .context("node 0 takes the VIP back")
    }
}
