//! `cargo xtask fuzz`: the data-plane fuzz test (`tests/tests/xdp_fuzz.rs`)
//! with a chosen frame count and seed, for runs longer than CI's (which
//! runs it with 1,000,000 frames and a new seed each time).

use crate::{
    build,
    util::{cmd, exec},
};

#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    /// Frames to run.
    #[arg(long, default_value_t = 1_000_000)]
    frames: u64,
    /// RNG seed (a failure prints the one it ran with); random when absent.
    #[arg(long)]
    seed: Option<u64>,
}

pub fn run(args: &FuzzArgs) -> anyhow::Result<()> {
    build::ebpf(true)?;
    let mut test = cmd("cargo");
    test.args([
        "test",
        "--package",
        "vipx-lab",
        "--test",
        "xdp_fuzz",
        "--",
        "--nocapture",
    ])
    .env("VIPX_FUZZ_FRAMES", args.frames.to_string())
    .env("RUST_BACKTRACE", "1");
    if let Some(seed) = args.seed {
        test.env("VIPX_FUZZ_SEED", seed.to_string());
    }
    exec(&mut test)
}
