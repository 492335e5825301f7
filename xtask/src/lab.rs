//! `cargo xtask lab` (written once the lab crate settles).

#[derive(Debug, clap::Args)]
pub struct LabArgs {}

pub fn run(_args: &LabArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
