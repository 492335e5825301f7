//! The HA systems under test and how each event is done to them: vipx
//! nodes of a [`Cluster`], and keepalived + HAProxy on hosts of the same
//! lab.

use std::{net::SocketAddr, time::Duration};

use vipx_lab::{Cluster, Host, Signal, VIP_PORT};

use super::Event;
use crate::bench_lab::{
    keepalived::{KA_VIP, Keepalived},
    log_end, wait_for,
};

/// A system under test; node 0 is the master each round starts from.
pub trait System {
    fn vip(&self) -> SocketAddr;
    fn client(&self) -> &Host;
    /// Before the event: for a failback, node 0 stopped and node 1 master.
    fn prepare(&mut self, event: Event) -> anyhow::Result<()>;
    /// Does the event to node 0 (for a failback: starts it again).
    fn event(&mut self, event: Event) -> anyhow::Result<()>;
    /// Whether the event's outcome is there: node 1 master after a loss,
    /// node 0 master again (and no other) after a failback.
    fn settled(&self, event: Event) -> bool;
    /// Node 0 master again, ready for the next round.
    fn restore(&mut self, event: Event) -> anyhow::Result<()>;
    /// The nodes' state and the ends of their logs, for an error message.
    fn diagnostics(&self) -> String;
    /// After a failed round: every link up, every node started afresh,
    /// node 0 the master.
    fn reset(&mut self) -> anyhow::Result<()>;
}

/// vipx nodes.
pub struct Vipx {
    pub cluster: Cluster,
    /// Master_Down_Interval and some: the longest a takeover may take.
    pub limit: Duration,
}

impl System for Vipx {
    fn vip(&self) -> SocketAddr {
        SocketAddr::from((self.cluster.vip(), VIP_PORT))
    }
    fn client(&self) -> &Host {
        &self.cluster.client
    }
    fn prepare(&mut self, event: Event) -> anyhow::Result<()> {
        if event == Event::Failback {
            self.cluster.lab.stop_process(self.cluster.nodes[0].agent)?;
            self.cluster.wait_master(1, self.limit)?;
        }
        Ok(())
    }
    fn event(&mut self, event: Event) -> anyhow::Result<()> {
        let node = &self.cluster.nodes[0];
        match event {
            Event::Kill => self.cluster.lab.kill(node.agent, Signal::SIGKILL),
            Event::LinkCut => node.host.set_connected(false),
            Event::Stop => self.cluster.lab.stop_process(node.agent).map(drop),
            Event::Failback => self.cluster.restart_agent(0).map(drop),
        }
    }
    fn settled(&self, event: Event) -> bool {
        match event {
            Event::Failback => self.cluster.is_only_master(0),
            // Node 0 may be unreachable: ask node 1 only.
            Event::Kill | Event::LinkCut | Event::Stop => self.cluster.is_master(1),
        }
    }
    fn restore(&mut self, event: Event) -> anyhow::Result<()> {
        match event {
            Event::Kill | Event::Stop => {
                let _ = self
                    .cluster
                    .lab
                    .wait_exit(self.cluster.nodes[0].agent, Duration::from_secs(5));
                self.cluster.restart_agent(0)?;
            }
            Event::LinkCut => self.cluster.nodes[0].host.set_connected(true)?,
            Event::Failback => {}
        }
        wait_for("node 0 the only MASTER again", self.limit, || {
            self.cluster.is_only_master(0)
        })
    }
    fn diagnostics(&self) -> String {
        let mut text = String::new();
        for (i, node) in self.cluster.nodes.iter().enumerate() {
            let state = if !self.cluster.lab.is_running(node.agent) {
                "not running"
            } else if self.cluster.is_master(i) {
                "MASTER"
            } else {
                "not MASTER (or unreachable)"
            };
            text.push_str(&format!("  {}: {state}; its log ends:\n", node.host.name()));
            text.push_str(&log_end(&self.cluster.lab, node.agent));
        }
        text
    }
    fn reset(&mut self) -> anyhow::Result<()> {
        for node in &self.cluster.nodes {
            node.host.set_connected(true)?;
            if self.cluster.lab.is_running(node.agent) {
                self.cluster.lab.stop_process(node.agent)?;
            }
        }
        for index in 0..self.cluster.nodes.len() {
            self.cluster.restart_agent(index)?;
        }
        wait_for("node 0 the only MASTER after a reset", self.limit, || {
            self.cluster.is_only_master(0)
        })
    }
}

impl System for Keepalived<'_> {
    fn vip(&self) -> SocketAddr {
        SocketAddr::from((KA_VIP, VIP_PORT))
    }
    fn client(&self) -> &Host {
        &self.cluster.client
    }
    fn prepare(&mut self, event: Event) -> anyhow::Result<()> {
        if event == Event::Failback {
            self.stop_keepalived(0)?;
            wait_for("k2 holding the VIP", self.limit, || self.holds(1))?;
        }
        Ok(())
    }
    fn event(&mut self, event: Event) -> anyhow::Result<()> {
        match event {
            Event::Kill => self.kill_stack(0),
            Event::LinkCut => self.host(0).set_connected(false),
            Event::Stop => self.stop_keepalived(0),
            Event::Failback => self.restart_keepalived(0),
        }
    }
    fn settled(&self, event: Event) -> bool {
        match event {
            Event::Failback => self.only_holder(0),
            Event::Kill | Event::LinkCut | Event::Stop => self.holds(1),
        }
    }
    fn restore(&mut self, event: Event) -> anyhow::Result<()> {
        match event {
            Event::Kill | Event::Stop => {
                if event == Event::Kill {
                    self.wait_keepalived_exit(0, Duration::from_secs(5));
                    self.ensure_haproxy(0)?;
                }
                self.drop_vip(0);
                self.restart_keepalived(0)?;
            }
            Event::LinkCut => self.host(0).set_connected(true)?,
            Event::Failback => {}
        }
        wait_for("k1 the only VIP holder again", self.limit, || {
            self.only_holder(0)
        })
    }
    fn diagnostics(&self) -> String {
        Keepalived::diagnostics(self)
    }
    fn reset(&mut self) -> anyhow::Result<()> {
        Keepalived::reset(self)
    }
}
