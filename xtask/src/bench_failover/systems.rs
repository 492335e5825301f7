//! The HA systems under test and how each event is done to them: vipx
//! nodes of a [`Cluster`], and keepalived + HAProxy on hosts of the same
//! lab.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::bail;
use vipx_lab::{Cluster, Host, Pid, Signal, VIP_PORT, haproxy, keepalived};

use super::Event;

/// The keepalived hosts' VIP and VRID (beside vipx's .100 / 51).
const KA_VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 101);
const KA_VRID: u8 = 52;
/// Host number of the first keepalived host (k1 .61, k2 .62...).
const KA_FIRST_HOST: u32 = 61;
/// How often the state is polled while a failover runs.
const POLL: Duration = Duration::from_millis(50);

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

/// The last lines of `pid`'s log, indented, without the netlink crate's
/// noise.
fn log_end(lab: &vipx_lab::LabCore, pid: Pid) -> String {
    lab.log_tail(pid, 40)
        .lines()
        .filter(|l| !l.contains("IFLA_INET6_CONF"))
        .rev()
        .take(12)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|l| format!("    {l}\n"))
        .collect()
}

/// Polls `done` until it holds, at most `limit`.
pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            bail!("{what}: not within {limit:?}");
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// vipx nodes.
pub struct Vipx {
    pub cluster: Cluster,
    /// Master_Down_Interval and some: the longest a takeover may take.
    pub limit: Duration,
}

impl Vipx {
    fn only_master(&self, index: usize) -> bool {
        self.cluster.is_master(index)
            && (0..self.cluster.nodes.len())
                .filter(|i| *i != index)
                .all(|i| !self.cluster.is_master(i))
    }
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
            Event::Failback => self.only_master(0),
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
            self.only_master(0)
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
            self.only_master(0)
        })
    }
}

/// keepalived + HAProxy on hosts k1, k2... of a cluster's lab, priorities
/// 200, 100, 50...
pub struct Keepalived<'a> {
    cluster: &'a Cluster,
    hosts: Vec<Host>,
    keepalived: Vec<Pid>,
    haproxy: Vec<Pid>,
    advert_ms: u64,
    limit: Duration,
}

impl<'a> Keepalived<'a> {
    /// `nodes` hosts with HAProxy and keepalived; k1 holds the VIP.
    pub fn up(
        cluster: &'a Cluster,
        nodes: usize,
        advert_ms: u64,
        limit: Duration,
    ) -> anyhow::Result<Self> {
        let mut hosts = Vec::with_capacity(nodes);
        let mut haproxy = Vec::with_capacity(nodes);
        for i in 0..nodes {
            let number = KA_FIRST_HOST + u32::try_from(i)?;
            let host = cluster
                .lab
                .add_host(&format!("k{}", i + 1), &cluster.lab.v4(number))?;
            host.sysctl("net.ipv4.ip_nonlocal_bind", "1")?;
            haproxy.push(start_haproxy(&host, cluster.backend.ipv4())?);
            hosts.push(host);
        }
        let mut this = Self {
            cluster,
            hosts,
            keepalived: Vec::with_capacity(nodes),
            haproxy,
            advert_ms,
            limit,
        };
        // The others first, so that k1 preempts as in every round.
        for i in (0..nodes).rev() {
            let pid = this.start_keepalived(i)?;
            this.keepalived.insert(0, pid);
        }
        wait_for("keepalived k1 holding the VIP", limit, || {
            this.only_holder(0)
        })?;
        Ok(this)
    }

    fn start_keepalived(&self, index: usize) -> anyhow::Result<Pid> {
        let priority = 200u8 >> index.min(7);
        keepalived::start(
            &self.hosts[index],
            &keepalived::KeepalivedSpec {
                vrid: KA_VRID,
                priority: priority.max(1),
                advert_ms: self.advert_ms,
                vip: KA_VIP,
                prefix_len: 24,
            },
        )
    }

    /// Removes the VIP a killed keepalived left behind on host `index`.
    fn drop_vip(&self, index: usize) {
        let _ =
            self.hosts[index].run(&["ip", "addr", "del", &format!("{KA_VIP}/24"), "dev", "eth0"]);
    }

    fn holds(&self, index: usize) -> bool {
        keepalived::holds(&self.hosts[index], KA_VIP)
    }

    fn only_holder(&self, index: usize) -> bool {
        self.holds(index) && (0..self.hosts.len()).all(|i| i == index || !self.holds(i))
    }

    /// Every process in k1's namespace (all started by this lab): the
    /// node's whole HA stack dies at once. All are stopped first, so that
    /// none sees another die and shuts down cleanly (keepalived's VRRP child
    /// would send priority 0 on its parent's death).
    fn kill_stack(&self) -> anyhow::Result<()> {
        let out = std::process::Command::new("ip")
            .args(["netns", "pids", self.hosts[0].netns_name()])
            .output()?;
        let pids: Vec<nix::unistd::Pid> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
            .map(nix::unistd::Pid::from_raw)
            .collect();
        for signal in [Signal::SIGSTOP, Signal::SIGKILL] {
            for pid in &pids {
                let _ = nix::sys::signal::kill(*pid, signal);
            }
        }
        Ok(())
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
            self.cluster.lab.stop_process(self.keepalived[0])?;
            wait_for("k2 holding the VIP", self.limit, || self.holds(1))?;
        }
        Ok(())
    }
    fn event(&mut self, event: Event) -> anyhow::Result<()> {
        match event {
            Event::Kill => self.kill_stack(),
            Event::LinkCut => self.hosts[0].set_connected(false),
            Event::Stop => self.cluster.lab.stop_process(self.keepalived[0]).map(drop),
            Event::Failback => {
                self.keepalived[0] = self.start_keepalived(0)?;
                Ok(())
            }
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
                    let _ = self
                        .cluster
                        .lab
                        .wait_exit(self.keepalived[0], Duration::from_secs(5));
                    self.haproxy[0] = start_haproxy(&self.hosts[0], self.cluster.backend.ipv4())?;
                }
                self.drop_vip(0);
                self.keepalived[0] = self.start_keepalived(0)?;
            }
            Event::LinkCut => self.hosts[0].set_connected(true)?,
            Event::Failback => {}
        }
        wait_for("k1 the only VIP holder again", self.limit, || {
            self.only_holder(0)
        })
    }
    fn diagnostics(&self) -> String {
        let mut text = String::new();
        for (i, host) in self.hosts.iter().enumerate() {
            let holds = if self.holds(i) {
                "holds"
            } else {
                "does not hold"
            };
            text.push_str(&format!(
                "  {}: {holds} the VIP; keepalived's log ends:\n",
                host.name()
            ));
            text.push_str(&log_end(host.lab(), self.keepalived[i]));
        }
        text
    }
    fn reset(&mut self) -> anyhow::Result<()> {
        let lab = &self.cluster.lab;
        for (i, host) in self.hosts.iter().enumerate() {
            host.set_connected(true)?;
            if lab.is_running(self.keepalived[i]) {
                lab.stop_process(self.keepalived[i])?;
            }
            if !lab.is_running(self.haproxy[i]) {
                self.haproxy[i] = start_haproxy(host, self.cluster.backend.ipv4())?;
            }
        }
        for i in (0..self.hosts.len()).rev() {
            self.drop_vip(i);
            self.keepalived[i] = self.start_keepalived(i)?;
        }
        wait_for("k1 the only VIP holder after a reset", self.limit, || {
            self.only_holder(0)
        })
    }
}

/// HAProxy in TCP mode on the keepalived VIP (bound before it is local).
fn start_haproxy(host: &Host, backend: Ipv4Addr) -> anyhow::Result<Pid> {
    haproxy::start(
        host,
        &haproxy::HaproxySpec {
            bind: KA_VIP,
            backend,
            pgbouncers: 3,
            check_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
        },
    )
}
