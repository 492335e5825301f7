//! `cargo xtask`: set-up, builds, tests, the lab and the benchmarks.

mod bench;
mod bench_dataplane;
mod bench_failover;
mod bench_health;
mod bench_lab;
mod bench_sessions;
mod build;
mod chaos;
mod deps;
mod fuzz;
mod lab;
mod package;
mod setup;
mod test;
mod util;

use clap::{Parser, Subcommand};

/// vipx's developer tasks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what the build, the lab and the tests need (idempotent):
    /// Debian packages, rust-src for the nightly, bpf-linker.
    Setup,
    /// Build the XDP object that `vipx-agent` embeds.
    BuildEbpf {
        /// Optimised build (what the agent should embed).
        #[arg(long)]
        release: bool,
    },
    /// Everything CI runs: set-up, the XDP object, lints, unit tests and the
    /// privileged integration tests in network namespaces.
    Test(test::TestArgs),
    /// A local cluster in network namespaces: vipx-agent nodes, a client,
    /// PostgreSQL behind three PgBouncers; the agents pin their XDP links
    /// and maps in the lab's own bpffs (under /run/vipx-lab/bpf). Stays up
    /// until Ctrl-C.
    Lab(lab::LabArgs),
    /// Random, reproducible faults against the lab (kill -9, SIGSTOP, link
    /// flaps, partitions, PgBouncer kills, restarts, reloads, handovers)
    /// while sessions and pgbench run, with the invariants checked all
    /// along: one owner of the VIP, no session lost, dead backends acted
    /// on. Exits non-zero on a violation, with the seed to replay.
    Chaos(chaos::ChaosArgs),
    /// Check that the agent's modules depend on each other one way: no
    /// import cycle.
    Deps,
    /// Random and mutated frames through the XDP program, checked against
    /// the data plane's rules (the fuzz test, with a chosen count and seed).
    Fuzz(fuzz::FuzzArgs),
    /// A Debian package (.deb) of the agent: the binary with its XDP
    /// object, the systemd unit, the example config, man pages and shell
    /// completions.
    Package(package::PackageArgs),
    /// Benchmarks, printed as tables with ratios measured in one run.
    Bench(bench::BenchArgs),
    /// Remove what killed labs and tests left: namespaces, temp dirs and
    /// bpffs mounts (with the agents' pins) of processes that no longer
    /// exist, and the processes inside them.
    Sweep,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::BuildEbpf { release } => build::ebpf(release),
        Task::Test(args) => test::run(&args),
        Task::Lab(args) => lab::run(&args),
        Task::Chaos(args) => chaos::run(&args),
        Task::Deps => deps::run(),
        Task::Fuzz(args) => fuzz::run(&args),
        Task::Bench(args) => bench::run(&args),
        Task::Package(args) => package::run(&args),
        Task::Sweep => {
            let namespaces = vipx_lab::sweep_stale()?;
            let dirs = vipx_lab::sweep_stale_dirs()?;
            let pins = vipx_lab::sweep_stale_pins()?;
            println!(
                "removed {} namespaces, {} temp dirs and {} bpffs mounts (with their pins) of dead lab processes",
                namespaces.len(),
                dirs.len(),
                pins.len()
            );
            Ok(())
        }
    }
}
