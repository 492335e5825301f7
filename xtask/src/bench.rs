//! `cargo xtask bench`: figures measured side by side in one run, printed
//! as tables with ratios. Timings live here, never in pass/fail tests.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context as _, bail};
use vipx_agent::config::PortRange;
use vipx_lab::{
    Cluster, ClusterOptions, PG_PORT, PGBOUNCER_FIRST_PORT, VIP_PORT,
    frames::{FrameSpec, tcp},
    haproxy, pgbench, pgbench_init,
    rig::{self, CLIENT_MAC, NODE_MAC, Rig, nat_spec},
};

use crate::{build, setup};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    what: BenchKind,
    /// Seconds of each pgbench run.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Rounds: of the pgbench comparison (targets interleaved per round;
    /// default 2), of each health measure (at least 5), of each failover
    /// event (default 5).
    #[arg(long)]
    rounds: Option<u32>,
    /// failover: the layouts, as numbers of nodes (2 and/or 3).
    #[arg(long, value_delimiter = ',', default_values_t = [2, 3])]
    nodes: Vec<usize>,
    /// failover: only this system (quick runs).
    #[arg(long, value_enum)]
    only: Option<crate::bench_failover::Only>,
    /// failover: seconds of the steady-state pgbench run (0: none).
    #[arg(long, default_value_t = 600)]
    steady_secs: u64,
    /// sessions: the events, comma-separated (default: all); with no
    /// value, no sessions table.
    #[arg(long, value_enum, value_delimiter = ',', num_args = 0..)]
    events: Option<Vec<crate::bench_sessions::Event>>,
    /// sessions: the systems, comma-separated (default: all); with no
    /// value, no sessions table.
    #[arg(long, value_enum, value_delimiter = ',', num_args = 0..)]
    systems: Option<Vec<crate::bench_sessions::System>>,
    /// sessions: rates of new flows per second of the replication-lag
    /// table, comma-separated (default: 1000,10000); with no value, no lag
    /// table.
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    rates: Option<Vec<u32>>,
    /// Skip `setup`.
    #[arg(long)]
    no_setup: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum BenchKind {
    /// XDP cost per packet and pgbench through the VIP / direct / HAProxy.
    Dataplane,
    /// Time from a PgBouncer's death to its removal, and from its restart
    /// to its return.
    Health,
    /// The client's gap when the master dies, stops or returns, for vipx
    /// and keepalived + HAProxy.
    Failover,
    /// Which PostgreSQL sessions and pgbench clients survive each
    /// failover event, for vipx with flow replication and without and for
    /// keepalived + HAProxy; and the replication lag at steady rates of
    /// new flows.
    Sessions,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if !args.no_setup {
        setup::run()?;
    }
    build::ebpf(true)?;
    let agent = build::binaries(true)?;
    match args.what {
        BenchKind::Dataplane => dataplane(args, agent),
        BenchKind::Failover => crate::bench_failover::run(
            &crate::bench_failover::Options {
                rounds: args.rounds.unwrap_or(5).max(1),
                nodes: args.nodes.clone(),
                only: args.only,
                steady_secs: args.steady_secs,
            },
            agent,
        ),
        BenchKind::Sessions => crate::bench_sessions::run(
            &crate::bench_sessions::Options {
                events: args
                    .events
                    .clone()
                    .unwrap_or_else(|| crate::bench_sessions::Event::ALL.to_vec()),
                systems: args
                    .systems
                    .clone()
                    .unwrap_or_else(|| crate::bench_sessions::System::ALL.to_vec()),
                rates: args.rates.clone().unwrap_or_else(|| vec![1_000, 10_000]),
            },
            &agent,
        ),
        BenchKind::Health => {
            println!(
                "{}",
                crate::bench_health::run(args.rounds.unwrap_or(5).max(5), agent)?
            );
            Ok(())
        }
    }
}

fn dataplane(args: &BenchArgs, agent: PathBuf) -> anyhow::Result<()> {
    let xdp = xdp_cost()?;
    println!("{xdp}");
    let pg = pgbench_comparison(args, agent)?;
    println!("{pg}");
    Ok(())
}

const REPEAT: u32 = 1_000_000;
const SINGLES: u16 = 20_000;

/// Per-packet cost through `BPF_PROG_TEST_RUN`, against the empty program.
///
/// The kernel re-runs a repeated frame as the program left it, so a frame
/// that the program rewrites (nat) can only be timed one run at a time:
/// those rows are means of single runs, compared with the empty program
/// timed the same way.
fn xdp_cost() -> anyhow::Result<String> {
    let vip = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100));
    let backend = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 31));
    let client = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 21));
    let nat = vipx_agent::dataplane::ServiceSpec {
        nat_ports: PortRange {
            first: 10000,
            last: 60999,
        },
        ..nat_spec(vip, backend, 65537)
    };
    let dsr = vipx_agent::dataplane::ServiceSpec {
        name: "dsr".into(),
        port: 5433,
        mode: vipx_agent::config::Mode::Dsr,
        backends: [31u8, 32, 33]
            .map(|last| vipx_agent::dataplane::BackendSpec {
                addr: IpAddr::V4(Ipv4Addr::new(10, 77, 0, last)),
                port: 5433,
                weight: 1,
            })
            .to_vec(),
        ..nat.clone()
    };
    let mut rig = Rig::master(&[nat.clone(), dsr])?;
    let frame = |port: u16, dport: u16, flags: u8| {
        FrameSpec::tcp(client, port, vip, dport, flags)
            .macs(CLIENT_MAC, NODE_MAC)
            .payload(b"SELECT 1;")
            .build()
    };
    let other = FrameSpec::tcp(
        client,
        40000,
        IpAddr::V4(Ipv4Addr::new(10, 77, 0, 12)),
        22,
        tcp::ACK,
    )
    .macs(CLIENT_MAC, NODE_MAC)
    .build();
    let tx = vipx_common::action::TX;
    let expect = |what: &str, action: u32, wanted: u32| -> anyhow::Result<()> {
        if action != wanted {
            bail!("{what}: action {action}, expected {wanted}");
        }
        Ok(())
    };

    // Repeated runs of one frame.
    let (_, _, empty) = rig.run_pass(&frame(1000, 5432, tcp::ACK), REPEAT)?;
    let (_, _, pass) = rig.run_repeat(&other, REPEAT)?;
    let (action, _) = rig.run(&frame(1000, 5433, tcp::SYN))?;
    expect("dsr SYN", action, tx)?;
    let (action, _, dsr_hit) = rig.run_repeat(&frame(1000, 5433, tcp::ACK), REPEAT)?;
    expect("dsr flow hit", action, tx)?;

    // Single runs, averaged.
    let mut sums = [Duration::ZERO; 4];
    for port in 2000..2000 + SINGLES {
        let (_, _, took) = rig.run_pass(&frame(port, 5432, tcp::SYN), 1)?;
        sums[0] += took;
        let (action, out, took) = rig.run_repeat(&frame(port, 5432, tcp::SYN), 1)?;
        expect("nat flow miss", action, tx)?;
        sums[1] += took;
        let (action, _, took) = rig.run_repeat(&frame(port, 5432, tcp::ACK), 1)?;
        expect("nat flow hit", action, tx)?;
        sums[2] += took;
        // The backend's answer, from where the SYN went, to the NAT port.
        let syn_out = etherparse::SlicedPacket::from_ethernet(&out)?;
        let Some(etherparse::TransportSlice::Tcp(sent)) = syn_out.transport else {
            bail!("the forwarded SYN has no TCP header");
        };
        let reply = FrameSpec::tcp(
            backend,
            sent.destination_port(),
            vip,
            sent.source_port(),
            tcp::ACK,
        )
        .macs(rig::backend_mac(backend), NODE_MAC)
        .payload(b"row")
        .build();
        let (action, _, took) = rig.run_repeat(&reply, 1)?;
        expect("nat reply", action, tx)?;
        sums[3] += took;
    }
    let singles = sums.map(|sum| sum / u32::from(SINGLES));

    let mut out = String::new();
    let _ = writeln!(out, "XDP cost per packet (BPF_PROG_TEST_RUN)");
    let _ = writeln!(out, "| case | method | ns/packet | x empty XDP_PASS |");
    let _ = writeln!(out, "|---|---|---:|---:|");
    let row = |out: &mut String, case: &str, method: &str, took: Duration, base: Duration| {
        let _ = writeln!(
            out,
            "| {case} | {method} | {} | {:.2} |",
            took.as_nanos(),
            took.as_secs_f64() / base.as_secs_f64().max(f64::MIN_POSITIVE)
        );
    };
    let repeated = format!("1 frame x {REPEAT}");
    let single = format!("mean of {SINGLES} single runs");
    row(&mut out, "empty XDP_PASS program", &repeated, empty, empty);
    row(&mut out, "not a service (passed)", &repeated, pass, empty);
    row(
        &mut out,
        "flow hit, dsr (forwarded)",
        &repeated,
        dsr_hit,
        empty,
    );
    row(
        &mut out,
        "empty XDP_PASS program",
        &single,
        singles[0],
        singles[0],
    );
    row(
        &mut out,
        "flow miss, nat (Maglev + NAT port + inserts)",
        &single,
        singles[1],
        singles[0],
    );
    row(
        &mut out,
        "flow hit, nat (forwarded)",
        &single,
        singles[2],
        singles[0],
    );
    row(
        &mut out,
        "backend reply, nat (translated back)",
        &single,
        singles[3],
        singles[0],
    );
    Ok(out)
}

/// One pgbench result.
#[derive(Clone, Copy, Debug, Default)]
struct PgbenchResult {
    tps: f64,
    latency_ms: f64,
}

fn parse_pgbench(report: &str) -> anyhow::Result<PgbenchResult> {
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
    })
}

fn pgbench_comparison(args: &BenchArgs, agent: PathBuf) -> anyhow::Result<String> {
    let cluster = Cluster::up(&ClusterOptions::new(1, agent))?;
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
    pgbench_init(&cluster.client, cluster.backend.ipv4(), PG_PORT, 1)?;
    std::thread::sleep(Duration::from_secs(1));
    let targets: [(&str, Ipv4Addr, u16); 3] = [
        (
            "direct to one PgBouncer",
            cluster.backend.ipv4(),
            PGBOUNCER_FIRST_PORT,
        ),
        (
            "through the vipx VIP (nat, 3 PgBouncers)",
            cluster.vip(),
            VIP_PORT,
        ),
        (
            "through HAProxy 2.6 (tcp, 3 PgBouncers)",
            haproxy.ipv4(),
            VIP_PORT,
        ),
    ];
    let seconds = args.seconds.to_string();
    let rounds = args.rounds.unwrap_or(2).max(1);
    let mut results = vec![Vec::new(); targets.len()];
    for round in 0..rounds {
        for (i, (name, addr, port)) in targets.iter().enumerate() {
            let report = pgbench(
                &cluster.client,
                addr,
                *port,
                &["-S", "-n", "-c", "8", "-j", "2", "-T", &seconds],
                Duration::from_secs(u64::from(args.seconds) + 60),
            )
            .with_context(|| format!("pgbench {name}"))?;
            let result = parse_pgbench(&report)?;
            eprintln!(
                "round {round}: {name}: {:.0} tps, {:.3} ms",
                result.tps, result.latency_ms
            );
            results[i].push(result);
        }
    }
    let mean = |rs: &[PgbenchResult]| PgbenchResult {
        tps: rs.iter().map(|r| r.tps).sum::<f64>() / rs.len() as f64,
        latency_ms: rs.iter().map(|r| r.latency_ms).sum::<f64>() / rs.len() as f64,
    };
    let direct = mean(&results[0]);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pgbench -S -c 8 -j 2 -T {seconds} from the client namespace (mean of {rounds} rounds, targets interleaved)"
    );
    let _ = writeln!(out, "| target | TPS | latency avg (ms) | TPS x direct |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for ((name, ..), rs) in targets.iter().zip(&results) {
        let m = mean(rs);
        let _ = writeln!(
            out,
            "| {name} | {:.0} | {:.3} | {:.2} |",
            m.tps,
            m.latency_ms,
            m.tps / direct.tps
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_report_is_parsed() {
        let report = "number of failed transactions: 0 (0.000%)\nlatency average = 0.563 ms\ninitial connection time = 4.123 ms\ntps = 14202.418055 (without initial connection time)\n";
        let r = parse_pgbench(report).expect("parse");
        assert!((r.tps - 14202.418055).abs() < 1e-6);
        assert!((r.latency_ms - 0.563).abs() < 1e-9);
        assert!(
            parse_pgbench("garbage").is_err(),
            "a report without figures is an error"
        );
    }
}
