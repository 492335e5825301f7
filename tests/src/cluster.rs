//! The standard vipx cluster in a lab: agent nodes, a client, and a backend
//! host with PostgreSQL behind PgBouncers, as `cargo xtask lab` shows it and
//! as the scenario tests and benchmarks use it.

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{Host, Lab, LabOptions, PgBouncer, Pid, Postgres, ProcSpec, http};

mod backends;
mod config;
mod failure;
mod logs;
mod membership;
mod watch;

use backends::service_lines;
use config::{Ipv6Group, NodeConfig, node_config, peers, service6, sync_section, with_ipv6_group};
pub use failure::Failure;
pub use membership::{Membership, Witness};

/// Port of every agent's API and `/metrics`.
pub const API_PORT: u16 = 9469;
/// PostgreSQL's port on the backend host.
pub const PG_PORT: u16 = 5432;
/// The first PgBouncer's port; the others follow (6432, 6433, 6434).
pub const PGBOUNCER_FIRST_PORT: u16 = 6432;
/// VRRP advert interval in the lab.
pub const ADVERT_INTERVAL_MS: u64 = 100;

/// VRRP priority of node `index`: 150, 100, 50.
pub fn node_priority(index: usize) -> u8 {
    150u8
        .saturating_sub(u8::try_from(index).unwrap_or(2).saturating_mul(50))
        .max(1)
}

/// How long an agent gets to serve `/metrics` after it starts.
const AGENT_READY: Duration = Duration::from_secs(30);

/// Host numbers in the lab subnet.
const NODE_BASE: u32 = 11;
/// The VIP's host number.
const VIP: u32 = 100;
/// The VIP's port (PostgreSQL's, as clients know it).
pub const VIP_PORT: u16 = 5432;
const CLIENT: u32 = 21;
const BACKEND: u32 = 31;

/// The `vipx-agent` binary under test: `$VIPX_AGENT_BIN` (set by
/// `cargo xtask test`), else the workspace's debug build. Panics with the
/// command to run when it is missing (for tests).
pub fn agent_bin() -> PathBuf {
    let path = std::env::var_os("VIPX_AGENT_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/vipx-agent"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask test` (or `cargo xtask build-ebpf && cargo build -p vipx-agent`)",
        path.display()
    );
    path
}

/// What to bring up.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of agent nodes (n1, n2, ...).
    pub nodes: usize,
    /// Number of PgBouncers on the backend host.
    pub pgbouncers: u16,
    /// The `vipx-agent` binary.
    pub agent_bin: PathBuf,
    /// Weight of each PgBouncer in the service (missing ones: 1).
    pub weights: Vec<u32>,
    /// Body of the service's `[service.health]` table (none: no checks).
    pub health: Option<String>,
    /// PgBouncers' `default_pool_size` (default 20).
    pub pool_size: Option<u32>,
    /// TOML appended to every node's configuration (more services...).
    pub extra_config: String,
    /// Lines added to the `[[group]]` table (`preempt = false`...).
    pub group_options: String,
    /// VRRP advert interval of the nodes.
    pub advert_interval_ms: u64,
    /// vipx's fast heartbeat: when set, every node's group gets
    /// `heartbeat_interval` (in microseconds) and `unicast_peers` (the other
    /// nodes' IPv4 addresses; the adverts then go unicast too).
    pub heartbeat: Option<Duration>,
    /// A second group, [`Cluster::VIP6_GROUP`] (VRID 52), holding the IPv6
    /// VIP [`Cluster::vip6`] and elected over IPv6 like `pg` (same
    /// priorities and advert interval; with [`heartbeat`](Self::heartbeat),
    /// heartbeats over IPv6 between the nodes' IPv6 addresses); every node
    /// and the client get an IPv6 address (`v6(n)`) besides their IPv4 one.
    pub ipv6_vip: bool,
    /// Flow replication between the nodes (`[sync]`, with a secret file the
    /// lab writes).
    pub sync: bool,
    /// The service in dsr mode: each PgBouncer on a host of its own (b1,
    /// b2, ...), holding the VIP on `lo` and listening on the VIP's port.
    pub dsr: bool,
    /// With [`ipv6_vip`](Self::ipv6_vip): a nat service `pgbouncer6` on the
    /// IPv6 VIP, in front of the same PgBouncers over IPv6.
    pub ipv6_service: bool,
    /// `[cluster] members` on every node, a witness host with it.
    pub membership: Option<Membership>,
    /// Arguments of every agent besides `--config` (`--ha-debug`).
    pub agent_args: Vec<String>,
    /// Lab settings.
    pub lab: LabOptions,
}

impl ClusterOptions {
    /// `nodes` agent nodes in front of three PgBouncers of weight 1.
    pub fn new(nodes: usize, agent_bin: PathBuf) -> Self {
        Self {
            nodes,
            pgbouncers: 3,
            agent_bin,
            weights: Vec::new(),
            health: None,
            pool_size: None,
            extra_config: String::new(),
            group_options: String::new(),
            advert_interval_ms: ADVERT_INTERVAL_MS,
            heartbeat: None,
            ipv6_vip: false,
            sync: false,
            dsr: false,
            ipv6_service: false,
            membership: None,
            agent_args: Vec::new(),
            lab: LabOptions::default(),
        }
    }

    /// The VIP the cluster will hold (for `extra_config` written before
    /// it is up).
    pub fn vip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.lab.v4_net) + VIP)
    }

    /// The backend host's address (PostgreSQL, and the PgBouncers in nat).
    pub fn backend_ipv4(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.lab.v4_net) + BACKEND)
    }
}

/// One agent node.
#[derive(Debug, Clone)]
pub struct Node {
    pub host: Host,
    pub agent: Pid,
    pub config: PathBuf,
    /// The agent's `pin_path`, in the lab's bpffs.
    pub pin_path: PathBuf,
    pub api: SocketAddr,
}

/// A running cluster; dropping it tears everything down.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub client: Host,
    pub backend: Host,
    pub postgres: Postgres,
    pub pgbouncers: Vec<PgBouncer>,
    pub agent_bin: PathBuf,
    /// The i-th PgBouncer's address in the service (and over IPv6, with
    /// [`ClusterOptions::ipv6_service`]).
    backend_addrs: Vec<SocketAddr>,
    backend_addrs6: Vec<SocketAddr>,
    /// What the cluster was made of.
    opts: ClusterOptions,
    /// The cluster secret's file, with `[sync]` or a membership.
    sync_secret: Option<PathBuf>,
    /// The witness, with [`ClusterOptions::membership`]'s.
    pub witness: Option<Witness>,
    // Last: hosts and processes above refer to it.
    pub lab: Lab,
}

impl Cluster {
    /// Brings the whole cluster up and waits until every agent serves its
    /// metrics.
    pub fn up(opts: &ClusterOptions) -> Result<Self> {
        if opts.nodes == 0 {
            bail!("a cluster needs at least one node");
        }
        let lab = Lab::new(opts.lab.clone())?;
        let client = lab.add_host("client", &lab.v4(CLIENT))?;
        let backend = lab.add_host("backend", &lab.v4(BACKEND))?;
        if opts.ipv6_vip {
            client.add_addr(&lab.v6(CLIENT))?;
        }
        let postgres = Postgres::start(&backend, PG_PORT)?;
        if opts.ipv6_service {
            backend.add_addr(&lab.v6(BACKEND))?;
        }
        let backends = backends::start(&lab, &backend, opts.pgbouncers, opts.dsr, opts.pool_size)?;
        let sync_secret = if opts.sync || opts.membership.is_some() {
            let path = lab.tmp_dir().join("cluster.secret");
            let mut bytes = [0u8; 24];
            std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
            let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            std::fs::write(&path, secret).with_context(|| format!("writing {}", path.display()))?;
            Some(path)
        } else {
            None
        };
        let mut cluster = Self {
            nodes: Vec::with_capacity(opts.nodes),
            client,
            backend,
            postgres,
            pgbouncers: backends.pgbouncers,
            backend_addrs: backends.addrs,
            backend_addrs6: backends.addrs6,
            agent_bin: opts.agent_bin.clone(),
            opts: opts.clone(),
            sync_secret,
            witness: None,
            lab,
        };
        if let (Some(membership), Some(secret)) = (&opts.membership, &cluster.sync_secret)
            && membership.witness
        {
            cluster.witness = Some(membership::start_witness(
                &cluster.lab,
                &opts.agent_bin,
                opts.nodes,
                secret,
                membership,
            )?);
        }
        for i in 0..opts.nodes {
            let name = format!("n{}", i + 1);
            let number = NODE_BASE + u32::try_from(i).context("node count")?;
            let host = cluster.lab.add_host(&name, &cluster.lab.v4(number))?;
            if opts.ipv6_vip {
                host.add_addr(&cluster.lab.v6(number))?;
            }
            let config = cluster.lab.tmp_dir().join(format!("{name}.toml"));
            let pin_path = cluster.lab.pin_dir(&name)?;
            let api = SocketAddr::from((host.ipv4(), API_PORT));
            let node = Node {
                host,
                agent: 0,
                config,
                pin_path,
                api,
            };
            let all: Vec<usize> = (0..cluster.pgbouncers.len()).collect();
            let text = cluster.node_text(i, &node, &all, &opts.weights);
            std::fs::write(&node.config, text)
                .with_context(|| format!("writing {}", node.config.display()))?;
            let agent = node.host.spawn(
                "vipx-agent",
                ProcSpec::new(&opts.agent_bin)
                    .args(&opts.agent_args)
                    .arg("--config")
                    .arg(&node.config)
                    .env("RUST_LOG", "info"),
            )?;
            cluster.nodes.push(Node { agent, ..node });
        }
        for node in &cluster.nodes {
            cluster.wait_agent(node)?;
        }
        if opts.group_options.contains("preempt = false") {
            // Without preemption the first node to time out keeps the VIP.
            cluster.wait_any_master(AGENT_READY)?;
        } else {
            cluster.wait_master(0, AGENT_READY)?;
        }
        Ok(cluster)
    }

    fn wait_agent(&self, node: &Node) -> Result<()> {
        let deadline = Instant::now() + AGENT_READY;
        loop {
            if let Ok((200, page)) = http::get_from(&self.client, node.api, "/metrics")
                && page.contains("vipx_xdp_packets_total")
            {
                return Ok(());
            }
            if !self.lab.is_running(node.agent) {
                bail!(
                    "vipx-agent on {} exited; its log:\n{}",
                    node.host.name(),
                    self.lab.log_tail(node.agent, 30)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "vipx-agent on {} did not serve /metrics within {AGENT_READY:?}; its log:\n{}",
                    node.host.name(),
                    self.lab.log_tail(node.agent, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Node `index`'s configuration file, with these PgBouncers (indexes
    /// into [`Self::pgbouncers`]) and weights (missing ones: 1).
    fn node_text(&self, index: usize, node: &Node, picked: &[usize], weights: &[u32]) -> String {
        let pick = |addrs: &[SocketAddr]| -> Vec<SocketAddr> {
            picked
                .iter()
                .filter_map(|&i| addrs.get(i).copied())
                .collect()
        };
        let lab = &self.lab;
        let opts = &self.opts;
        let mut extra = with_ipv6_group(
            &opts.extra_config,
            opts.ipv6_vip.then_some(Ipv6Group {
                lab,
                index,
                nodes: self.nodes.len().max(opts.nodes),
                advert_ms: opts.advert_interval_ms,
                heartbeat: opts.heartbeat,
            }),
        );
        if let (Some(membership), Some(secret)) = (&opts.membership, &self.sync_secret) {
            extra.push_str(&membership::cluster_section(
                lab, opts.nodes, secret, membership,
            ));
        }
        if opts.ipv6_service {
            extra.push_str(&service6(
                lab,
                &service_lines(&pick(&self.backend_addrs6), weights),
            ));
        }
        node_config(&NodeConfig {
            name: &format!("{}-{}", lab.id(), node.host.name()),
            pin_path: &node.pin_path,
            state_file: &lab
                .tmp_dir()
                .join(format!("{}.state.json", node.host.name())),
            master: index == 0,
            priority: node_priority(index),
            vip: &lab.v4(VIP),
            mode: if opts.dsr { "dsr" } else { "nat" },
            backends: &service_lines(&pick(&self.backend_addrs), weights),
            health: opts.health.as_deref(),
            extra: &extra,
            group: &opts.group_options,
            advert_ms: opts.advert_interval_ms,
            heartbeat: opts.heartbeat,
            peers: &peers(lab, opts.nodes, index),
            sync: self
                .sync_secret
                .as_deref()
                .filter(|_| opts.sync)
                .map(|secret| sync_section(lab, opts.nodes, index, secret)),
        })
    }

    /// Rewrites node `index`'s configuration with these PgBouncer `(port,
    /// weight)` pairs, PgBouncer `PGBOUNCER_FIRST_PORT + i` being the i-th
    /// (a PgBouncer left out leaves the service), and reloads its agent
    /// with SIGHUP.
    pub fn reconfigure(&self, index: usize, backends: &[(u16, u32)]) -> Result<()> {
        let node = &self.nodes[index];
        let picked: Vec<usize> = backends
            .iter()
            .map(|(port, _)| usize::from(port.saturating_sub(PGBOUNCER_FIRST_PORT)))
            .collect();
        let weights: Vec<u32> = backends.iter().map(|(_, w)| *w).collect();
        let text = self.node_text(index, node, &picked, &weights);
        std::fs::write(&node.config, text)
            .with_context(|| format!("writing {}", node.config.display()))?;
        self.lab.kill(node.agent, crate::Signal::SIGHUP)
    }

    /// Transactions each PgBouncer has served so far (`SHOW STATS`,
    /// refreshed every second).
    pub fn pgbouncer_xacts(&self) -> Result<Vec<u64>> {
        self.pgbouncers
            .iter()
            .map(PgBouncer::transactions)
            .collect()
    }

    /// Starts node `index`'s agent again (after it was killed or stopped)
    /// and returns its pid.
    pub fn restart_agent(&mut self, index: usize) -> Result<Pid> {
        let node = &mut self.nodes[index];
        let pid = node.host.spawn(
            "vipx-agent",
            ProcSpec::new(&self.agent_bin)
                .args(&self.opts.agent_args)
                .arg("--config")
                .arg(&node.config)
                .env("RUST_LOG", "info"),
        )?;
        node.agent = pid;
        let node = node.clone();
        self.wait_agent(&node)?;
        Ok(pid)
    }

    /// Node `index`'s event timeline (`/api/v1/events`), empty when it
    /// does not answer.
    pub fn events(&self, index: usize) -> crate::timeline::Timeline {
        crate::timeline::Timeline::decode(
            &crate::http::get_from(&self.client, self.nodes[index].api, "/api/v1/events")
                .map(|(_, body)| body)
                .unwrap_or_default(),
        )
    }

    /// The group holding the IPv6 VIP (with [`ClusterOptions::ipv6_vip`]).
    pub const VIP6_GROUP: &'static str = "pg6";

    /// The IPv6 VIP (with [`ClusterOptions::ipv6_vip`]).
    pub fn vip6(&self) -> Ipv6Addr {
        let cidr = self.lab.v6(VIP);
        cidr.split('/')
            .next()
            .and_then(|a| a.parse().ok())
            .expect("the lab's IPv6 VIP is an IPv6 address")
    }

    /// The VIP.
    pub fn vip(&self) -> Ipv4Addr {
        let cidr = self.lab.v4(VIP);
        cidr.split('/')
            .next()
            .and_then(|a| a.parse().ok())
            .expect("the lab's VIP is an IPv4 address")
    }

    /// How to look around, as `cargo xtask lab` prints it.
    pub fn access_text(&self) -> String {
        let mut out = String::new();
        let ns = |host: &Host| host.netns_name().to_owned();
        let _ = writeln!(out, "vipx lab {} is up.\n", self.lab.id());
        let _ = writeln!(out, "Agents (vipx-agent), metrics and status:");
        for node in &self.nodes {
            let _ = writeln!(
                out,
                "  {:<4} {:<15} sudo ip netns exec {} curl -s http://{}/metrics",
                node.host.name(),
                node.host.ipv4(),
                ns(&node.host),
                node.api
            );
            let _ = writeln!(
                out,
                "  {:<20} sudo ip netns exec {} {} status --api http://{}",
                "",
                ns(&node.host),
                self.agent_bin.display(),
                node.api
            );
            let _ = writeln!(
                out,
                "  {:<20} log: {}",
                "",
                self.lab.log_path(node.host.name(), "vipx-agent").display()
            );
            let _ = writeln!(out, "  {:<20} pins: {}", "", node.pin_path.display());
        }
        let _ = writeln!(
            out,
            "\nBackends on {} ({}):",
            self.backend.name(),
            self.backend.ipv4()
        );
        let _ = writeln!(out, "  PostgreSQL :{}", self.postgres.port());
        for bouncer in &self.pgbouncers {
            let _ = writeln!(out, "  PgBouncer  :{}", bouncer.port());
        }
        let _ = writeln!(out, "\nThe client:");
        let _ = writeln!(out, "  sudo ip netns exec {} bash", ns(&self.client));
        let _ = writeln!(
            out,
            "  sudo ip netns exec {} psql -h {} -p {VIP_PORT} -U postgres postgres   # through the VIP",
            ns(&self.client),
            self.vip()
        );
        if let Some(bouncer) = self.pgbouncers.first() {
            let _ = writeln!(
                out,
                "  sudo ip netns exec {} psql -h {} -p {} -U postgres postgres   # one PgBouncer, directly",
                ns(&self.client),
                self.backend.ipv4(),
                bouncer.port()
            );
        }
        if let Some(master) = (0..self.nodes.len()).find(|i| self.is_master(*i)) {
            let node = &self.nodes[master];
            let _ = writeln!(out, "\nWatch a failover (the client keeps working):");
            let _ = writeln!(
                out,
                "  sudo ip netns exec {} sh -c 'while :; do psql -h {} -p {VIP_PORT} -U postgres -AtXc \"select now()\" postgres; sleep 0.1; done'   # a new session every 0.1 s",
                ns(&self.client),
                self.vip()
            );
            let _ = writeln!(
                out,
                "  sudo ip netns exec {} sh -c 'while :; do echo \"select now();\"; sleep 0.1; done | psql -v ON_ERROR_STOP=1 -h {} -p {VIP_PORT} -U postgres -AtX postgres'   # one open session{}",
                ns(&self.client),
                self.vip(),
                if self.opts.sync {
                    ", kept across the failover (flow replication)"
                } else {
                    ""
                }
            );
            let _ = writeln!(
                out,
                "  sudo kill -9 {}   # {}'s vipx-agent, the MASTER now",
                node.agent,
                node.host.name()
            );
            if let Some(next) = self
                .nodes
                .iter()
                .find(|n| n.host.name() != node.host.name())
            {
                let _ = writeln!(
                    out,
                    "  sudo ip netns exec {} {} events --api http://{}   # the takeover, its reason and detection time",
                    ns(&next.host),
                    self.agent_bin.display(),
                    next.api
                );
            }
            let _ = writeln!(
                out,
                "  sudo ip netns exec {} ip -d link show eth0   # XDP stays on {} after the kill (pinned)",
                ns(&node.host),
                node.host.name()
            );
            let _ = writeln!(
                out,
                "  sudo ip netns exec {} {} --config {}   # {}'s agent again: it adopts the pinned XDP link and maps",
                ns(&node.host),
                self.agent_bin.display(),
                node.config.display(),
                node.host.name()
            );
        }
        out
    }
}
