//! The cluster's PgBouncers: on the backend host beside PostgreSQL, one
//! port each (nat), or each on a host of its own holding the VIP on `lo`
//! and listening on the VIP's port (dsr, the LVS-DR recipe: the backends
//! answer the clients directly).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context as _, Result, bail};

use super::{BACKEND, Cluster, PG_PORT, PGBOUNCER_FIRST_PORT, VIP, VIP_PORT, config::bare};
use crate::{Host, Lab, PgBouncer, PgBouncerOptions};

/// The PgBouncers, and where the service reaches each.
pub(super) struct Backends {
    pub(super) pgbouncers: Vec<PgBouncer>,
    /// The i-th PgBouncer's address in the service.
    pub(super) addrs: Vec<SocketAddr>,
    /// Their IPv6 addresses (nat on the backend host, with an IPv6 service).
    pub(super) addrs6: Vec<SocketAddr>,
}

/// The lab's PgBouncers' settings.
fn options(pool_size: Option<u32>) -> PgBouncerOptions {
    PgBouncerOptions {
        // Totals in SHOW STATS every second, for the tests.
        settings: vec![("stats_period".into(), "1".into())],
        default_pool_size: pool_size.unwrap_or(20),
        ..PgBouncerOptions::default()
    }
}

/// Starts `count` PgBouncers in front of PostgreSQL on `backend`.
pub(super) fn start(
    lab: &Lab,
    backend: &Host,
    count: u16,
    dsr: bool,
    pool_size: Option<u32>,
) -> Result<Backends> {
    let opts = options(pool_size);
    let mut backends = Backends {
        pgbouncers: Vec::new(),
        addrs: Vec::new(),
        addrs6: Vec::new(),
    };
    for i in 0..count {
        if dsr {
            let number = BACKEND + 1 + u32::from(i);
            let host = lab.add_host(&format!("b{}", i + 1), &lab.v4(number))?;
            // The VIP on lo, never answered for on the wire.
            host.sysctl("net.ipv4.conf.all.arp_ignore", "1")?;
            host.sysctl("net.ipv4.conf.all.arp_announce", "2")?;
            host.add_addr_on("lo", &format!("{}/32", bare(&lab.v4(VIP))))?;
            let bouncer = PgBouncer::start(&host, "*", VIP_PORT, backend.ipv4(), PG_PORT, &opts)
                .with_context(|| format!("PgBouncer on {}", host.name()))?;
            backends.pgbouncers.push(bouncer);
            backends
                .addrs
                .push(SocketAddr::new(host.ipv4().into(), VIP_PORT));
        } else {
            let port = PGBOUNCER_FIRST_PORT + i;
            let bouncer =
                PgBouncer::start(backend, "*", port, Ipv4Addr::LOCALHOST, PG_PORT, &opts)?;
            backends.pgbouncers.push(bouncer);
            backends
                .addrs
                .push(SocketAddr::new(backend.ipv4().into(), port));
            let v6: IpAddr = bare(&lab.v6(BACKEND))
                .parse()
                .context("the backend's IPv6")?;
            backends.addrs6.push(SocketAddr::new(v6, port));
        }
    }
    Ok(backends)
}

/// A service's `backends = [...]` lines: each address with its weight
/// (missing weights: 1; weight 0 keeps a backend out of new flows).
pub(super) fn service_lines(addrs: &[SocketAddr], weights: &[u32]) -> String {
    addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let weight = weights.get(i).copied().unwrap_or(1);
            format!(
                "  {{ address = \"{}\", port = {}, weight = {weight} }},\n",
                addr.ip(),
                addr.port()
            )
        })
        .collect()
}

impl Cluster {
    /// The i-th PgBouncer's address in the service.
    pub fn backend_addr(&self, i: usize) -> SocketAddr {
        self.backend_addrs[i]
    }

    /// The i-th PgBouncer's IPv6 address in the IPv6 service (with
    /// [`super::ClusterOptions::ipv6_service`]).
    pub fn backend_addr6(&self, i: usize) -> SocketAddr {
        self.backend_addrs6[i]
    }

    /// Starts the i-th PgBouncer again (after it was killed), on its host
    /// and port with its settings, once it answers.
    pub fn restart_pgbouncer(&mut self, i: usize) -> Result<()> {
        let old = &self.pgbouncers[i];
        let postgres = if self.opts.dsr {
            self.backend.ipv4()
        } else {
            Ipv4Addr::LOCALHOST
        };
        let bouncer = PgBouncer::start(
            old.host(),
            "*",
            old.port(),
            postgres,
            PG_PORT,
            &options(self.opts.pool_size),
        )
        .with_context(|| format!("PgBouncer {i} again"))?;
        self.pgbouncers[i] = bouncer;
        Ok(())
    }

    /// Drains `backend` on node `index` only (`vipx-agent drain`, through
    /// its API): that node sends it no new flow, its flows stay.
    pub fn drain(&self, index: usize, backend: SocketAddr) -> Result<()> {
        self.cli(index, &["drain", &backend.to_string()]).map(drop)
    }

    /// Runs `vipx-agent --config NODE.toml ARGS --api` in node `index`'s
    /// namespace, through loopback (a command of the running agent, as an
    /// operator on the node runs it: the API takes changes from the node
    /// itself, or with the config's `[api] secret_file`); its standard
    /// output, or an error with its standard error.
    pub fn cli(&self, index: usize, args: &[&str]) -> Result<String> {
        let node = &self.nodes[index];
        let api = format!("http://127.0.0.1:{}", node.api.port());
        let config = node.config.to_str().context("a UTF-8 config path")?;
        let mut argv = vec![
            self.agent_bin.to_str().context("a UTF-8 agent path")?,
            "--config",
            config,
        ];
        argv.extend_from_slice(args);
        argv.extend(["--api", &api]);
        let out = node.host.run_unchecked(&argv)?;
        if !out.status.success() {
            bail!(
                "{args:?} on {}: {}",
                node.host.name(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
