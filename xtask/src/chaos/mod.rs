//! `cargo xtask chaos --minutes N --seed S`: a random, reproducible
//! sequence of faults against the lab while sessions and pgbench run, with
//! the invariants checked all along ([`report::Invariant`]); a report at the
//! end, and a non-zero exit with the seed to replay on a violation.
//!
//! One fault at a time: its observers start ([`owner::Watch`]), the fault
//! is carried out ([`faults`]), the cluster must recover ([`Run::settle`]),
//! the lost sessions start again, and the observers' findings are judged.

mod backend;
mod faults;
mod load;
mod owner;
mod report;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use nix::sys::signal::{SigSet, Signal};
use vipx_lab::walltime::WallTime;
use vipx_lab::{Cluster, ClusterOptions, PG_PORT, VIP_PORT, pgbench_init, probe};

use faults::{Fault, Kind};
use load::Load;
use report::{Invariant, Report, Violation, Worst};

/// How long the cluster gets to serve again after a fault.
const RECOVER_WITHIN: Duration = Duration::from_secs(30);
/// Calm after the recovery before the next fault: the sessions started
/// again are established (and replicated) well before it.
const SETTLE: Duration = Duration::from_millis(1500);
/// How long the sessions get to progress again after a fault.
const PROGRESS_WITHIN: Duration = Duration::from_secs(15);
/// A connection through the VIP that takes longer failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Args)]
pub struct ChaosArgs {
    /// Minutes of faults (the lab's start and end come on top).
    #[arg(long, default_value_t = 2)]
    pub minutes: u32,
    /// The generator's seed (default: from the clock, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Only these faults (comma-separated names).
    #[arg(long, value_delimiter = ',', value_parser = Kind::parse)]
    pub only: Vec<Kind>,
    /// Skip `setup`.
    #[arg(long)]
    pub no_setup: bool,
    /// Use this vipx-agent binary instead of building one.
    #[arg(long)]
    pub agent_bin: Option<PathBuf>,
}

/// The interruption by Ctrl-C or SIGTERM.
#[derive(Debug)]
struct Interrupted(Signal);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted by {}", self.0)
    }
}

impl std::error::Error for Interrupted {}

/// A run under way. The load goes before the cluster (fields drop in
/// order): its watcher stops before the lab is torn down.
pub struct Run {
    load: Load,
    cluster: Cluster,
    report: Report,
    signals: SigSet,
    /// When the faults began.
    began: Instant,
    /// The fault under way (or the last).
    fault: String,
    losses_seen: usize,
}

pub fn run(args: &ChaosArgs) -> Result<()> {
    let agent_bin = crate::build::agent(args.agent_bin.as_deref(), !args.no_setup, false)?;
    let seed = args.seed.unwrap_or_else(|| {
        let now = WallTime::now().nanos();
        u64::try_from(now).unwrap_or_default()
    });
    let replay = format!(
        "cargo xtask chaos --minutes {} --seed {seed}{}",
        args.minutes,
        if args.only.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = args.only.iter().map(|k| k.name()).collect();
            format!(" --only {}", names.join(","))
        }
    );
    println!("chaos: seed {seed} (replay: {replay})");
    // Ctrl-C and SIGTERM are taken at the run's pauses.
    let signals = crate::lab::block_stop_signals()?;

    println!(
        "chaos: bringing up 3 nodes (heartbeat {:?} x {}, flow replication, a quorum, health checks), PostgreSQL, 3 PgBouncers...",
        owner::HEARTBEAT,
        owner::MULTIPLIER
    );
    let cluster = Cluster::up(&ClusterOptions {
        heartbeat: Some(owner::HEARTBEAT),
        group_options: format!("heartbeat_multiplier = {}\n", owner::MULTIPLIER),
        sync: true,
        health: Some(backend::health()),
        // The cluster's quorum: partitions leave one node answering.
        membership: Some(vipx_lab::Membership::default()),
        ..ClusterOptions::new(3, agent_bin)
    })?;
    pgbench_init(&cluster.client, cluster.backend.ipv4(), PG_PORT, 1)?;
    let length = Duration::from_secs(u64::from(args.minutes) * 60);
    let load = Load::start(&cluster.client, cluster.vip().into(), length)?;
    let mut run = Run {
        load,
        cluster,
        report: Report::default(),
        signals,
        began: Instant::now(),
        fault: "the start".into(),
        losses_seen: 0,
    };
    println!(
        "chaos: lab {} up; {} psql sessions and {} pgbench clients through the VIP; faults for {} min; \
         single-owner bound {:?} (detection {:?} + lease {:?} + slack {:?}; link flaps {:?} more), PgBouncer down within {:?}",
        run.cluster.lab.id(),
        load::PSQL_SESSIONS,
        load::PGBENCH_CLIENTS,
        args.minutes,
        owner::BOUND,
        owner::DETECTION,
        owner::LEASE_TIMEOUT,
        owner::SLACK,
        owner::LINK_RETURN,
        backend::DOWN_BOUND
    );
    let kinds = if args.only.is_empty() {
        Kind::ALL.to_vec()
    } else {
        args.only.clone()
    };
    let mut rng = fastrand::Rng::with_seed(seed);
    let outcome = run.faults(&mut rng, &kinds, length);
    if let Err(err) = &outcome {
        if err.downcast_ref::<Interrupted>().is_some() {
            run.report.interrupted = true;
            println!("chaos: {err}; ending the run");
        } else {
            println!("chaos: the run stopped: {err:#}");
        }
    }
    let elapsed = run.began.elapsed();
    let (began, seen) = (run.began, run.losses_seen);
    let Run {
        load,
        cluster,
        mut report,
        ..
    } = run;
    let (ends, losses, checks) = load.finish()?;
    report.check(Invariant::Sessions, checks);
    // Those seen during the run are violations already.
    for loss in losses.iter().skip(seen) {
        report.violate(Violation {
            invariant: Invariant::Sessions,
            at: loss.at.saturating_duration_since(began).as_secs_f64(),
            fault: loss.fault.clone(),
            what: format!("{} lost: {}", loss.name, loss.what),
        });
    }
    report.ends = ends;
    let id = cluster.lab.id().to_owned();
    drop(cluster);
    println!("chaos: lab {id} removed.");
    println!("{}", report.render(seed, &replay, elapsed));
    outcome?;
    if !report.violations.is_empty() {
        bail!(
            "chaos: {} violations with seed {seed}; replay: {replay}",
            report.violations.len()
        );
    }
    Ok(())
}

impl Run {
    /// Faults one after the other until `length` has passed.
    fn faults(&mut self, rng: &mut fastrand::Rng, kinds: &[Kind], length: Duration) -> Result<()> {
        let backends = self.cluster.pgbouncers.len();
        let mut number = 0;
        while self.began.elapsed() < length {
            number += 1;
            let fault = Fault::draw(rng, kinds, self.cluster.nodes.len(), backends);
            self.cycle(number, &fault)?;
        }
        Ok(())
    }

    /// One fault, its recovery and the judgement of what was observed.
    fn cycle(&mut self, number: u32, fault: &Fault) -> Result<()> {
        self.fault = format!("#{number} {fault}");
        println!("[{:>6.1}s] {}", self.at(), self.fault);
        *self.report.faults.entry(fault.kind()).or_default() += 1;
        let watch = owner::Watch::start(&self.cluster)?;
        self.load.set_fault(Some(self.fault.clone()));
        let began = Instant::now();
        if let Err(err) = self.apply(fault) {
            if err.downcast_ref::<Interrupted>().is_some() {
                return Err(err);
            }
            self.violate(
                Invariant::Recovery,
                format!("the fault could not be carried out: {err:#}"),
            );
        }
        let recovered = self.settle()?;
        self.load.set_fault(None);
        let calm = Instant::now();
        if !self.wait_until(PROGRESS_WITHIN, |run| run.load.all_progressing(calm))? {
            self.note(format!(
                "not every session progressed within {PROGRESS_WITHIN:?} after the recovery"
            ));
        }
        self.pause(SETTLE)?;
        let bound = owner::bound(fault.kind());
        let findings = watch.finish()?;
        let worst = self.report.worst.entry(fault.kind()).or_default();
        worst.recovery = worst
            .recovery
            .max(recovered.saturating_duration_since(began));
        self.judge_owner(fault.kind(), &findings, bound);
        self.judge_losses()
    }

    /// Waits until every agent runs and one node alone is MASTER and
    /// serves the VIP; when that was.
    fn settle(&mut self) -> Result<Instant> {
        self.report.check(Invariant::Recovery, 1);
        let target = std::net::SocketAddr::from((self.cluster.vip(), VIP_PORT));
        let deadline = Instant::now() + RECOVER_WITHIN;
        loop {
            for node in 0..self.cluster.nodes.len() {
                let pid = self.cluster.nodes[node].agent;
                if !self.cluster.lab.is_running(pid) {
                    let log = self.cluster.lab.log_tail(pid, 15);
                    self.violate(
                        Invariant::Recovery,
                        format!("n{}'s agent exited by itself; its log:\n{log}", node + 1),
                    );
                    self.cluster.restart_agent(node)?;
                }
            }
            let masters: Vec<usize> = (0..self.cluster.nodes.len())
                .filter(|i| self.cluster.is_master(*i))
                .collect();
            if masters.len() == 1 && probe::ask_from(&self.cluster.client, target, PROBE_TIMEOUT) {
                return Ok(Instant::now());
            }
            if Instant::now() >= deadline {
                let names: Vec<String> = masters.iter().map(|i| format!("n{}", i + 1)).collect();
                self.violate(
                    Invariant::Recovery,
                    format!(
                        "no single MASTER serving the VIP within {RECOVER_WITHIN:?} (MASTER: {names:?})"
                    ),
                );
                return Ok(Instant::now());
            }
            self.pause(Duration::from_millis(50))?;
        }
    }

    fn judge_owner(&mut self, kind: Kind, findings: &owner::Findings, bound: Duration) {
        let requests = u64::try_from(findings.requests).unwrap_or(u64::MAX);
        let frames = u64::try_from(findings.frames).unwrap_or(u64::MAX);
        self.report.check(Invariant::OwnerArp, requests);
        self.report.check(Invariant::OwnerTraffic, frames);
        let mut worst = Worst::default();
        for (invariant, episodes, what) in [
            (
                Invariant::OwnerArp,
                &findings.arp,
                "ARP requests answered by",
            ),
            (
                Invariant::OwnerTraffic,
                &findings.traffic,
                "switches of the VIP's traffic between",
            ),
        ] {
            for e in episodes {
                let span = e.span();
                if invariant == Invariant::OwnerArp {
                    worst.arp = worst.arp.max(span);
                } else {
                    worst.traffic = worst.traffic.max(span);
                }
                if span > bound {
                    let nodes: Vec<String> =
                        e.nodes.iter().map(|n| format!("n{}", n + 1)).collect();
                    let from = e.first.micros_since(findings.started) / 1000;
                    let sources: Vec<String> = e
                        .sources
                        .iter()
                        .map(|(n, src, count)| format!("{count} from {src} to n{}", n + 1))
                        .collect();
                    self.violate(
                        invariant,
                        format!(
                            "{} {what} {} for {} ms (bound {} ms), from {from} ms after the observers started{}{}",
                            e.count,
                            nodes.join(" and "),
                            span.as_millis(),
                            bound.as_millis(),
                            if sources.is_empty() {
                                String::new()
                            } else {
                                format!(" (frames meanwhile: {})", sources.join(", "))
                            },
                            agent_lines(&self.cluster, e.first, e.last)
                        ),
                    );
                }
            }
        }
        let entry = self.report.worst.entry(kind).or_default();
        entry.arp = entry.arp.max(worst.arp);
        entry.traffic = entry.traffic.max(worst.traffic);
    }

    /// The sessions vipx lost since the last look; an error when their
    /// watcher gave up.
    fn judge_losses(&mut self) -> Result<()> {
        let (losses, errors, gave_up) = self.load.losses();
        for loss in losses.iter().skip(self.losses_seen) {
            let at = loss.at.saturating_duration_since(self.began).as_secs_f64();
            self.report.violate(Violation {
                invariant: Invariant::Sessions,
                at,
                fault: loss.fault.clone(),
                what: format!("{} lost: {}", loss.name, loss.what),
            });
        }
        self.losses_seen = losses.len();
        for error in errors {
            self.note(format!("the sessions' watcher: {error}"));
        }
        if gave_up {
            bail!("the sessions' watcher gave up (its errors above)");
        }
        Ok(())
    }

    /// Seconds since the faults began.
    fn at(&self) -> f64 {
        self.began.elapsed().as_secs_f64()
    }

    fn violate(&mut self, invariant: Invariant, what: String) {
        let violation = Violation {
            invariant,
            at: self.at(),
            fault: self.fault.clone(),
            what,
        };
        self.report.violate(violation);
    }

    /// A remark in the run's output (not a violation).
    fn note(&self, what: String) {
        println!("[{:>6.1}s]   note: {what}", self.at());
    }

    /// Sleeps `time`, unless Ctrl-C or SIGTERM comes first.
    fn pause(&self, time: Duration) -> Result<()> {
        match crate::lab::wait_signal(&self.signals, time) {
            Some(signal) => Err(Interrupted(signal).into()),
            None => Ok(()),
        }
    }

    /// Polls `done` every 50 ms for at most `limit`; whether it held.
    fn wait_until(&mut self, limit: Duration, done: impl Fn(&Self) -> bool) -> Result<bool> {
        let deadline = Instant::now() + limit;
        loop {
            if done(self) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            self.pause(Duration::from_millis(50))?;
        }
    }
}

/// The agents' log lines from a little before `first` to a little after
/// `last`, for a violation's message.
fn agent_lines(cluster: &Cluster, first: WallTime, last: WallTime) -> String {
    const AROUND: Duration = Duration::from_millis(300);
    const MAX: usize = 12;
    let mut out = String::new();
    for (index, node) in cluster.nodes.iter().enumerate() {
        let lines: Vec<String> = cluster
            .agent_log(index)
            .into_iter()
            .filter(|(at, line)| {
                at.plus(AROUND) >= first
                    && *at <= last.plus(AROUND)
                    && !line.contains("netlink_packet_route")
            })
            .map(|(_, line)| line)
            .collect();
        for line in lines.iter().take(MAX) {
            out.push_str(&format!("\n      {}: {line}", node.host.name()));
        }
        if lines.len() > MAX {
            out.push_str(&format!(
                "\n      {}: ... {} more",
                node.host.name(),
                lines.len() - MAX
            ));
        }
    }
    out
}
