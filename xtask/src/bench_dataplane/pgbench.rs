//! pgbench through the VIP (nat, and dsr in a cluster of its own), direct
//! to one PgBouncer, and through HAProxy: `-S` on long connections, and
//! `-S -C` (a new connection per transaction), targets interleaved per
//! round.

use std::{fmt::Write as _, net::Ipv4Addr, path::Path, time::Duration};

use anyhow::Context as _;
use vipx_lab::{
    Cluster, ClusterOptions, PG_PORT, PGBOUNCER_FIRST_PORT, VIP_PORT, haproxy, knat, pgbench,
    pgbench_init,
};

use super::{
    cost::{BpfStats, Meter},
    stats::Rounds,
};

/// One pgbench result.
#[derive(Clone, Copy, Debug, Default)]
pub struct PgbenchResult {
    pub tps: f64,
    pub latency_ms: f64,
    /// Transactions processed.
    pub txns: u64,
}

pub fn parse_pgbench(report: &str) -> anyhow::Result<PgbenchResult> {
    let value = |prefix: &str| -> Option<f64> {
        report
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Ok(PgbenchResult {
        tps: value("tps = ").with_context(|| format!("no tps in pgbench's report:\n{report}"))?,
        latency_ms: value("latency average = ")
            .with_context(|| format!("no latency in:\n{report}"))?,
        txns: value("number of transactions actually processed: ")
            .with_context(|| format!("no transaction count in:\n{report}"))? as u64,
    })
}

/// One target: its name, address and port.
type Target = (&'static str, Ipv4Addr, u16);

/// The loads: 8 clients on long connections (throughput, the machine's
/// two cores saturated), and 8 clients with a connection per transaction.
const LOADS: [(&str, &[&str]); 2] = [
    ("-S -c 8", &["-S", "-n", "-c", "8", "-j", "2"]),
    ("-S -C -c 8", &["-S", "-C", "-n", "-c", "8", "-j", "2"]),
];

/// The rows of one cluster: per load, per target, the TPS and latency of
/// every round, TPS as a ratio to the first target's (direct) per round,
/// the latency the target adds to the first's, and what a transaction
/// costs the machine (see [`cost`]).
fn measure(
    cluster: &Cluster,
    targets: &[Target],
    seconds: u32,
    rounds: u32,
    out: &mut String,
) -> anyhow::Result<()> {
    let secs = seconds.to_string();
    let meter = Meter::new(cluster)?;
    let _stats = BpfStats::enable()?;
    for (load, args) in LOADS {
        let mut tps = vec![Rounds::default(); targets.len()];
        let mut latency = vec![Rounds::default(); targets.len()];
        let mut cpu = vec![Rounds::default(); targets.len()];
        let mut xdp = vec![Rounds::default(); targets.len()];
        for round in 0..rounds {
            for (i, (name, addr, port)) in targets.iter().enumerate() {
                let mut all = args.to_vec();
                all.extend(["-T", &secs]);
                let before = meter.read();
                let run = pgbench(
                    &cluster.client,
                    addr,
                    *port,
                    &all,
                    Duration::from_secs(u64::from(seconds) + 60),
                )
                .and_then(|report| parse_pgbench(&report));
                let result = match run {
                    Ok(result) => result,
                    Err(err) => {
                        // A failed run is a finding: the table says so and
                        // the other targets are still measured.
                        eprintln!("round {round}: pgbench {load}: {name}: FAILED: {err:#}");
                        for figure in [&mut tps, &mut latency, &mut cpu, &mut xdp] {
                            figure[i].push(f64::NAN);
                        }
                        continue;
                    }
                };
                let (cpu_us, xdp_us) = meter.per_txn(&before, &meter.read(), result.txns);
                eprintln!(
                    "round {round}: pgbench {load}: {name}: {:.0} tps, {:.3} ms, {cpu_us:.1} us CPU/txn, {xdp_us:.2} us XDP/txn",
                    result.tps, result.latency_ms
                );
                tps[i].push(result.tps);
                latency[i].push(result.latency_ms);
                cpu[i].push(cpu_us);
                xdp[i].push(xdp_us);
            }
        }
        for (i, (name, ..)) in targets.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {load} | {name} | {} | {} | {} | {} | {} | {} | {} |",
                tps[i].cell(0),
                latency[i].cell(3),
                tps[i].ratio_to(&tps[0]).cell(3),
                latency[i].minus(&latency[0]).scaled(1000.0).cell(0),
                cpu[i].cell(1),
                cpu[i].minus(&cpu[0]).cell(1),
                xdp[i].cell(2)
            );
        }
    }
    Ok(())
}

fn header(out: &mut String, what: &str, seconds: u32, rounds: u32) {
    let _ = writeln!(
        out,
        "pgbench -T {seconds} from the client namespace, {what} (median (min-max) of {rounds} rounds, targets interleaved)"
    );
    let _ = writeln!(
        out,
        "| load | target | TPS | latency avg (ms) | TPS x direct | latency - direct (us) | CPU per txn (us) | CPU - direct (us) | in vipx XDP (us) |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
}

/// The port of the VIP's second service, in front of the first PgBouncer
/// only (the same backend as the direct row).
const ONE_PORT: u16 = VIP_PORT + 1;
/// Its NAT ports. A connection per transaction at over 2,000 a second,
/// each closed flow holding its port for `fin_timeout` (10 s), to ONE
/// backend: the default range (28,232 ports) fills past 80%, where 8 random
/// tries for a free port start to fail and SYNs are dropped. A service
/// meant for that rate to one backend configures a wider range, as here.
const ONE_NAT_PORTS: &str = "10000-65000";

/// The nat table. The same PgBouncer directly, through vipx and through the
/// kernel's NAT (nftables DNAT and masquerade on a router host, the same
/// hop as vipx's nat mode): what the hop costs. Then the three PgBouncers
/// through vipx, the kernel's NAT and HAProxy: what spreading the clients
/// over three single-threaded PgBouncers on the same two cores adds.
pub fn nat(agent: &Path, seconds: u32, rounds: u32) -> anyhow::Result<String> {
    let mut opts = ClusterOptions::new(1, agent.to_path_buf());
    opts.extra_config = format!(
        "[[service]]\nname = \"pgbouncer-one\"\nvip = \"{}\"\nport = {ONE_PORT}\nmode = \"nat\"\nnat_ports = \"{ONE_NAT_PORTS}\"\nbackends = [{{ address = \"{}\", port = {PGBOUNCER_FIRST_PORT} }}]\n",
        opts.vip(),
        opts.backend_ipv4()
    );
    let cluster = Cluster::up(&opts)?;
    let haproxy = cluster.lab.add_host("haproxy", &cluster.lab.v4(41))?;
    haproxy::start(
        &haproxy,
        &haproxy::HaproxySpec {
            bind: haproxy.ipv4(),
            backend: cluster.backend.ipv4(),
            pgbouncers: 3,
            check_interval: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
        },
    )?;
    let router = cluster.lab.add_host("knat", &cluster.lab.v4(42))?;
    knat::start(&router, VIP_PORT, cluster.backend.ipv4(), 3)?;
    knat::start(&router, ONE_PORT, cluster.backend.ipv4(), 1)?;
    pgbench_init(&cluster.client, cluster.backend.ipv4(), PG_PORT, 1)?;
    std::thread::sleep(Duration::from_secs(1));
    let vip = cluster.vip();
    let targets: [Target; 6] = [
        (
            "direct to one PgBouncer",
            cluster.backend.ipv4(),
            PGBOUNCER_FIRST_PORT,
        ),
        (
            "through the vipx VIP (nat, the same PgBouncer)",
            vip,
            ONE_PORT,
        ),
        (
            "through kernel NAT (nftables, the same PgBouncer)",
            router.ipv4(),
            ONE_PORT,
        ),
        ("through the vipx VIP (nat, 3 PgBouncers)", vip, VIP_PORT),
        (
            "through kernel NAT (nftables, 3 PgBouncers)",
            router.ipv4(),
            VIP_PORT,
        ),
        (
            "through HAProxy (tcp, 3 PgBouncers)",
            haproxy.ipv4(),
            VIP_PORT,
        ),
    ];
    let mut out = String::new();
    header(&mut out, "nat", seconds, rounds);
    measure(&cluster, &targets, seconds, rounds, &mut out)?;
    Ok(out)
}

/// The dsr table: direct to one PgBouncer (on a host of its own), the VIP.
pub fn dsr(agent: &Path, seconds: u32, rounds: u32) -> anyhow::Result<String> {
    let cluster = Cluster::up(&ClusterOptions {
        dsr: true,
        ..ClusterOptions::new(1, agent.to_path_buf())
    })?;
    pgbench_init(&cluster.client, cluster.backend.ipv4(), PG_PORT, 1)?;
    std::thread::sleep(Duration::from_secs(1));
    let first = cluster.pgbouncers[0].host().ipv4();
    let targets: [Target; 2] = [
        ("direct to one PgBouncer", first, VIP_PORT),
        (
            "through the vipx VIP (dsr, 3 PgBouncers)",
            cluster.vip(),
            VIP_PORT,
        ),
    ];
    let mut out = String::new();
    header(&mut out, "dsr", seconds, rounds);
    measure(&cluster, &targets, seconds, rounds, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_report_is_parsed() {
        let report = "number of transactions actually processed: 142024\nnumber of failed transactions: 0 (0.000%)\nlatency average = 0.563 ms\ninitial connection time = 4.123 ms\ntps = 14202.418055 (without initial connection time)\n";
        let r = parse_pgbench(report).expect("parse");
        assert!((r.tps - 14202.418055).abs() < 1e-6);
        assert!((r.latency_ms - 0.563).abs() < 1e-9);
        assert_eq!(r.txns, 142024);
        assert!(
            parse_pgbench("garbage").is_err(),
            "a report without figures is an error"
        );
    }
}
