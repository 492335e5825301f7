//! `cargo xtask bench failover`: the unavailability a client sees when the
//! VIP's master dies, stops, or returns and preempts — for vipx and, in the
//! same lab and run, for keepalived 2.2 + HAProxy 2.6.
//!
//! The client opens a new TCP connection through the VIP every
//! millisecond and waits for PgBouncer's answer to an SSLRequest; the gap
//! is the longest time without a successful answer around the event.

use std::{
    fmt::Write as _,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use vipx_lab::{Cluster, ClusterOptions, Host, Pid, Signal, VIP_PORT, haproxy, keepalived};

/// PostgreSQL's SSLRequest (Int32 8, Int32 80877103).
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// The keepalived pair's VIP and VRID (beside vipx's .100 / 51).
const KA_VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 101);
const KA_VRID: u8 = 52;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Kill,
    Stop,
    Preempt,
}

impl Scenario {
    const ALL: [Self; 3] = [Self::Kill, Self::Stop, Self::Preempt];

    fn name(self) -> &'static str {
        match self {
            Self::Kill => "master killed (-9)",
            Self::Stop => "master stopped (SIGTERM)",
            Self::Preempt => "old master returns (preempt)",
        }
    }
}

/// One probe: a new connection, an SSLRequest, PgBouncer's one-byte answer.
fn probe_once(target: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&target, Duration::from_millis(20)) else {
        return false;
    };
    // Close with RST: no TIME_WAIT pile-up at 1000 connections a second.
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut answer = [0u8; 1];
    stream.write_all(&SSL_REQUEST).is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && matches!(answer[0], b'N' | b'S')
}

/// Probes `target` from `client` every millisecond for `window`; returns
/// the times of the successful probes.
fn probe(
    client: &Host,
    target: SocketAddr,
    window: Duration,
) -> std::thread::JoinHandle<Vec<Instant>> {
    let client = client.clone();
    std::thread::spawn(move || {
        client
            .enter(move || {
                let end = Instant::now() + window;
                let mut ok = Vec::new();
                while Instant::now() < end {
                    let started = Instant::now();
                    if probe_once(target) {
                        ok.push(started);
                    }
                    let spent = started.elapsed();
                    if spent < Duration::from_millis(1) {
                        std::thread::sleep(Duration::from_millis(1) - spent);
                    }
                }
                ok
            })
            .expect("enter the client namespace")
    })
}

/// The longest time without a successful probe from just before `event`;
/// `None` when no probe succeeded after it.
fn gap(successes: &[Instant], event: Instant, end: Instant) -> Option<Duration> {
    if !successes.iter().any(|t| *t > event) {
        return None;
    }
    let from = event - Duration::from_millis(50);
    let mut last = successes
        .iter()
        .rev()
        .find(|t| **t <= from)
        .copied()
        .unwrap_or(from);
    let mut worst = Duration::ZERO;
    for t in successes.iter().filter(|t| **t > from) {
        worst = worst.max(t.duration_since(last));
        last = *t;
    }
    Some(worst.max(end.duration_since(last)))
}

/// The HA pair under test.
trait Pair {
    fn vip(&self) -> SocketAddr;
    fn client(&self) -> &Host;
    /// Runs the event on the master (node 0).
    fn event(&mut self, scenario: Scenario) -> anyhow::Result<()>;
    /// Gets node 0 back as the master, ready for the next round.
    fn restore(&mut self, scenario: Scenario) -> anyhow::Result<()>;
    /// Before a preempt round: node 0 stopped, node 1 the master.
    fn prepare(&mut self, scenario: Scenario) -> anyhow::Result<()>;
}

struct Vipx(Cluster);

impl Pair for Vipx {
    fn vip(&self) -> SocketAddr {
        SocketAddr::from((self.0.vip(), VIP_PORT))
    }
    fn client(&self) -> &Host {
        &self.0.client
    }
    fn prepare(&mut self, scenario: Scenario) -> anyhow::Result<()> {
        if scenario == Scenario::Preempt {
            self.0.lab.stop_process(self.0.nodes[0].agent)?;
            self.0.wait_master(1, Duration::from_secs(20))?;
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(())
    }
    fn event(&mut self, scenario: Scenario) -> anyhow::Result<()> {
        match scenario {
            Scenario::Kill => self.0.lab.kill(self.0.nodes[0].agent, Signal::SIGKILL),
            Scenario::Stop => self.0.lab.stop_process(self.0.nodes[0].agent).map(drop),
            Scenario::Preempt => self.0.restart_agent(0).map(drop),
        }
    }
    fn restore(&mut self, scenario: Scenario) -> anyhow::Result<()> {
        if scenario != Scenario::Preempt {
            let _ = self
                .0
                .lab
                .wait_exit(self.0.nodes[0].agent, Duration::from_secs(5));
            self.0.restart_agent(0)?;
        }
        self.0.wait_master(0, Duration::from_secs(20))?;
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    }
}

/// keepalived + HAProxy on two hosts of the same lab.
struct Keepalived<'a> {
    cluster: &'a Cluster,
    hosts: [Host; 2],
    keepalived: [Pid; 2],
    advert_ms: u64,
}

impl Keepalived<'_> {
    fn start_keepalived(&self, index: usize) -> anyhow::Result<Pid> {
        keepalived::start(
            &self.hosts[index],
            &keepalived::KeepalivedSpec {
                vrid: KA_VRID,
                priority: if index == 0 { 200 } else { 100 },
                advert_ms: self.advert_ms,
                vip: KA_VIP,
                prefix_len: 24,
            },
        )
    }

    fn holds_vip(&self, index: usize) -> bool {
        keepalived::holds(&self.hosts[index], KA_VIP)
    }

    fn wait_vip(&self, index: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.holds_vip(index) {
            if Instant::now() > deadline {
                bail!(
                    "keepalived on {} did not take the VIP",
                    self.hosts[index].name()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Pair for Keepalived<'_> {
    fn vip(&self) -> SocketAddr {
        SocketAddr::from((KA_VIP, VIP_PORT))
    }
    fn client(&self) -> &Host {
        &self.cluster.client
    }
    fn prepare(&mut self, scenario: Scenario) -> anyhow::Result<()> {
        if scenario == Scenario::Preempt {
            self.cluster.lab.stop_process(self.keepalived[0])?;
            self.wait_vip(1)?;
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(())
    }
    fn event(&mut self, scenario: Scenario) -> anyhow::Result<()> {
        match scenario {
            // The whole HA stack of the node dies at once: every process in
            // its namespace (all started by this lab).
            Scenario::Kill => {
                let out = std::process::Command::new("ip")
                    .args(["netns", "pids", self.hosts[0].netns_name()])
                    .output()?;
                for pid in String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter_map(|l| l.trim().parse::<i32>().ok())
                {
                    let _ =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
                }
                Ok(())
            }
            Scenario::Stop => self.cluster.lab.stop_process(self.keepalived[0]).map(drop),
            Scenario::Preempt => {
                self.keepalived[0] = self.start_keepalived(0)?;
                Ok(())
            }
        }
    }
    fn restore(&mut self, scenario: Scenario) -> anyhow::Result<()> {
        if scenario == Scenario::Kill {
            let _ = self
                .cluster
                .lab
                .wait_exit(self.keepalived[0], Duration::from_secs(5));
            start_haproxy(&self.hosts[0], self.cluster.backend.ipv4())?;
        }
        if scenario != Scenario::Preempt {
            // The killed stack left its VIP behind, as keepalived does.
            let _ =
                self.hosts[0].run(&["ip", "addr", "del", &format!("{KA_VIP}/24"), "dev", "eth0"]);
            self.keepalived[0] = self.start_keepalived(0)?;
        }
        self.wait_vip(0)?;
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
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

fn measure(
    pair: &mut dyn Pair,
    scenario: Scenario,
    rounds: u32,
    window: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let mut gaps = Vec::new();
    for round in 0..rounds {
        pair.prepare(scenario)?;
        let prober = probe(pair.client(), pair.vip(), window);
        std::thread::sleep(Duration::from_millis(500));
        let event = Instant::now();
        pair.event(scenario)?;
        let successes = prober
            .join()
            .map_err(|_| anyhow::anyhow!("the prober panicked"))?;
        let end = *successes.last().unwrap_or(&event);
        let g = gap(&successes, event, end.max(event)).with_context(|| {
            format!(
                "{}: no probe succeeded after the event ({} before it)",
                scenario.name(),
                successes.len()
            )
        })?;
        eprintln!(
            "  {} round {round}: gap {} ms ({} probes ok)",
            scenario.name(),
            g.as_millis(),
            successes.len()
        );
        gaps.push(g);
        pair.restore(scenario)?;
    }
    Ok(gaps)
}

fn summary(gaps: &mut [Duration]) -> String {
    gaps.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "{:.1} | {:.1} | {:.1}",
        ms(gaps[0]),
        ms(gaps[gaps.len() / 2]),
        ms(gaps[gaps.len() - 1])
    )
}

pub fn run(rounds: u32, agent: PathBuf) -> anyhow::Result<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Failover gap seen by a client opening a connection through the VIP every 1 ms (PgBouncer's SSLRequest answer), 2 nodes, {rounds} rounds each"
    );
    let _ = writeln!(
        out,
        "| system | adverts | event | min (ms) | median (ms) | max (ms) |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|");
    for advert_ms in [10u64, 1000] {
        let window = Duration::from_millis(1500 + 5 * advert_ms);
        let cluster = Cluster::up(&ClusterOptions {
            advert_interval_ms: advert_ms,
            ..ClusterOptions::new(2, agent.clone())
        })?;
        cluster.client.sysctl("net.ipv4.tcp_tw_reuse", "1")?;
        let hosts = [
            cluster.lab.add_host("k1", &cluster.lab.v4(61))?,
            cluster.lab.add_host("k2", &cluster.lab.v4(62))?,
        ];
        for host in &hosts {
            host.sysctl("net.ipv4.ip_nonlocal_bind", "1")?;
            start_haproxy(host, cluster.backend.ipv4())?;
        }
        let mut keepalived = Keepalived {
            cluster: &cluster,
            hosts: hosts.clone(),
            keepalived: [0, 0],
            advert_ms,
        };
        keepalived.keepalived[1] = keepalived.start_keepalived(1)?;
        keepalived.wait_vip(1)?;
        keepalived.keepalived[0] = keepalived.start_keepalived(0)?;
        keepalived
            .wait_vip(0)
            .context("keepalived k1 preempts at start")?;
        for scenario in Scenario::ALL {
            let mut gaps = measure(&mut keepalived, scenario, rounds, window)?;
            let _ = writeln!(
                out,
                "| keepalived 2.2 + HAProxy 2.6 | {advert_ms} ms | {} | {} |",
                scenario.name(),
                summary(&mut gaps)
            );
        }
        drop(keepalived);
        let mut vipx = Vipx(cluster);
        for scenario in Scenario::ALL {
            let mut gaps = measure(&mut vipx, scenario, rounds, window)?;
            let _ = writeln!(
                out,
                "| vipx (VRRP only) | {advert_ms} ms | {} | {} |",
                scenario.name(),
                summary(&mut gaps)
            );
        }
    }
    Ok(out)
}
