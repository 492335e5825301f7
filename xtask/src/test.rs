//! `cargo xtask test`: what CI runs (`.ci/run`).

use anyhow::bail;

use crate::{
    build, chaos, deps, setup,
    util::{cmd, exec},
};

/// The chaos run's seed in `cargo xtask test` (fixed: a failure there
/// replays as is).
const CHAOS_SEED: u64 = 13;
/// Its length.
const CHAOS_MINUTES: u32 = 2;

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Skip `setup` (packages, rust-src, bpf-linker).
    #[arg(long)]
    no_setup: bool,
    /// Skip rustfmt, clippy and the import-cycle check (`cargo xtask deps`).
    #[arg(long)]
    no_lint: bool,
    /// Skip the 2-minute chaos run (`cargo xtask chaos`) after the tests.
    #[arg(long)]
    no_chaos: bool,
    /// Only run tests whose name contains this (passed to the test
    /// binaries; no chaos run then).
    filter: Option<String>,
}

pub fn run(args: &TestArgs) -> anyhow::Result<()> {
    if !args.no_setup {
        setup::run()?;
    }
    build::ebpf(true)?;
    report_swept("before the tests")?;
    if !args.no_lint {
        exec(cmd("cargo").args(["fmt", "--all", "--", "--check"]))?;
        exec(cmd("cargo").args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
        deps::run()?;
    }
    // Unit tests and the privileged integration tests (namespaces, XDP,
    // PostgreSQL, PgBouncer): they need root, and CI runs as root.
    let agent = build::binaries(false)?;
    let mut test = cmd("cargo");
    test.args(["test", "--no-fail-fast"])
        .env("VIPX_AGENT_BIN", &agent)
        .env("RUST_BACKTRACE", "1");
    if let Some(filter) = &args.filter {
        test.args(["--", filter]);
    }
    let tests = exec(&mut test);
    // The chaos run, also when a test failed (its own report).
    let chaos = if args.no_chaos || args.filter.is_some() {
        Ok(())
    } else {
        println!("xtask test: a {CHAOS_MINUTES}-minute chaos run, seed {CHAOS_SEED}");
        chaos::run(&chaos::ChaosArgs {
            minutes: CHAOS_MINUTES,
            seed: Some(CHAOS_SEED),
            only: Vec::new(),
            no_setup: true,
            agent_bin: Some(agent.clone()),
        })
    };
    // Nothing may outlive the suite, also when a test failed.
    let left = vipx_lab::sweep_stale()?;
    let dirs = vipx_lab::sweep_stale_dirs()?;
    let pins = vipx_lab::sweep_stale_pins()?;
    tests?;
    chaos?;
    if !left.is_empty() || !dirs.is_empty() || !pins.is_empty() {
        bail!(
            "the tests left namespaces {left:?}, temp dirs {dirs:?} and bpffs pins {pins:?} behind (now removed)"
        );
    }
    println!("xtask test: all passed, nothing left behind");
    Ok(())
}

fn report_swept(when: &str) -> anyhow::Result<()> {
    let mut swept = vipx_lab::sweep_stale()?;
    swept.extend(
        vipx_lab::sweep_stale_dirs()?
            .into_iter()
            .chain(vipx_lab::sweep_stale_pins()?)
            .map(|dir| dir.display().to_string()),
    );
    if !swept.is_empty() {
        println!(
            "removed what dead lab processes left {when}: {}",
            swept.join(", ")
        );
    }
    Ok(())
}
