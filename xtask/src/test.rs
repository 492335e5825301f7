//! `cargo xtask test`: what CI runs (`.ci/run`).

use anyhow::bail;

use crate::{
    build, setup,
    util::{cmd, exec},
};

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Skip `setup` (packages, rust-src, bpf-linker).
    #[arg(long)]
    no_setup: bool,
    /// Skip rustfmt and clippy.
    #[arg(long)]
    no_lint: bool,
    /// Only run tests whose name contains this (passed to the test binaries).
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
    // Nothing may outlive the suite, also when a test failed.
    let left = vipx_lab::sweep_stale()?;
    tests?;
    if !left.is_empty() {
        bail!(
            "the tests left network namespaces behind (now removed): {}",
            left.join(", ")
        );
    }
    println!("xtask test: all passed, nothing left behind");
    Ok(())
}

fn report_swept(when: &str) -> anyhow::Result<()> {
    let swept = vipx_lab::sweep_stale()?;
    if !swept.is_empty() {
        println!(
            "removed namespaces of dead processes {when}: {}",
            swept.join(", ")
        );
    }
    Ok(())
}
