//! keepalived 2.2 + HAProxy 2.6 on hosts k1, k2... of a vipx cluster's lab
//! (its client and PgBouncers): keepalived floats its own VIP in front of
//! an HAProxy on every host, priorities 200, 100, 50... so k1 is the
//! master. What the benchmarks do to vipx's master, they do to k1 here.

use std::{net::Ipv4Addr, time::Duration};

use vipx_lab::{Cluster, Host, Pid, Signal, haproxy, keepalived};

use super::{log_end, wait_for};

/// The keepalived hosts' VIP and VRID (beside vipx's .100 / 51).
pub const KA_VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 101);
const KA_VRID: u8 = 52;
/// Host number of the first keepalived host (k1 .61, k2 .62...).
const KA_FIRST_HOST: u32 = 61;

/// keepalived + HAProxy on hosts k1, k2...
pub struct Keepalived<'a> {
    pub cluster: &'a Cluster,
    hosts: Vec<Host>,
    keepalived: Vec<Pid>,
    haproxy: Vec<Pid>,
    advert_ms: u64,
    /// The longest a takeover may take.
    pub limit: Duration,
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

    /// Host `index`.
    pub fn host(&self, index: usize) -> &Host {
        &self.hosts[index]
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

    /// Starts keepalived on host `index` again (after it stopped or was
    /// killed).
    pub fn restart_keepalived(&mut self, index: usize) -> anyhow::Result<()> {
        self.keepalived[index] = self.start_keepalived(index)?;
        Ok(())
    }

    /// Stops keepalived on host `index` (SIGTERM: it sends priority 0 and
    /// removes the VIP).
    pub fn stop_keepalived(&self, index: usize) -> anyhow::Result<()> {
        self.cluster
            .lab
            .stop_process(self.keepalived[index])
            .map(drop)
    }

    /// Waits up to `limit` for keepalived on host `index` to exit.
    pub fn wait_keepalived_exit(&self, index: usize, limit: Duration) {
        let _ = self.cluster.lab.wait_exit(self.keepalived[index], limit);
    }

    /// Sends `signal` to keepalived on host `index`: its parent and its
    /// VRRP child (found in `/proc`), so that a SIGSTOP stops the adverts.
    pub fn signal_keepalived(&self, index: usize, signal: Signal) -> anyhow::Result<()> {
        let parent = self.keepalived[index];
        let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .unwrap_or_default();
        for child in children.split_whitespace().filter_map(|p| p.parse().ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), signal);
        }
        self.cluster.lab.kill(parent, signal)
    }

    /// Stops HAProxy on host `index` (SIGTERM: a hard stop, its sessions
    /// end).
    pub fn stop_haproxy(&self, index: usize) -> anyhow::Result<()> {
        self.cluster.lab.stop_process(self.haproxy[index]).map(drop)
    }

    /// Starts HAProxy on host `index` again unless it runs.
    pub fn ensure_haproxy(&mut self, index: usize) -> anyhow::Result<()> {
        if !self.cluster.lab.is_running(self.haproxy[index]) {
            self.haproxy[index] = start_haproxy(&self.hosts[index], self.cluster.backend.ipv4())?;
        }
        Ok(())
    }

    /// Removes the VIP a killed keepalived left behind on host `index`.
    pub fn drop_vip(&self, index: usize) {
        let _ =
            self.hosts[index].run(&["ip", "addr", "del", &format!("{KA_VIP}/24"), "dev", "eth0"]);
    }

    /// Whether host `index` has the VIP.
    pub fn holds(&self, index: usize) -> bool {
        keepalived::holds(&self.hosts[index], KA_VIP)
    }

    /// Whether host `index` has the VIP and no other host does.
    pub fn only_holder(&self, index: usize) -> bool {
        self.holds(index) && (0..self.hosts.len()).all(|i| i == index || !self.holds(i))
    }

    /// Every process in host `index`'s namespace (all started by this
    /// lab): the node's whole HA stack dies at once. All are stopped first,
    /// so that none sees another die and shuts down cleanly (keepalived's
    /// VRRP child would send priority 0 on its parent's death).
    pub fn kill_stack(&self, index: usize) -> anyhow::Result<()> {
        let out = std::process::Command::new("ip")
            .args(["netns", "pids", self.hosts[index].netns_name()])
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

    /// Each host: whether it holds the VIP, and the end of keepalived's
    /// log.
    pub fn diagnostics(&self) -> String {
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

    /// Every link up, every keepalived started afresh (HAProxy where it
    /// died), k1 the only VIP holder.
    pub fn reset(&mut self) -> anyhow::Result<()> {
        for i in 0..self.hosts.len() {
            self.hosts[i].set_connected(true)?;
            if self.cluster.lab.is_running(self.keepalived[i]) {
                self.stop_keepalived(i)?;
            }
            self.ensure_haproxy(i)?;
        }
        for i in (0..self.hosts.len()).rev() {
            self.drop_vip(i);
            self.restart_keepalived(i)?;
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
