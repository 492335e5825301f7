//! Building the XDP object and the agent.

use std::path::{Path, PathBuf};

use crate::util::{cmd, exec, target_dir};

/// Target triple of the XDP object.
const BPF_TARGET: &str = "bpfel-unknown-none";

/// Where `build-ebpf` puts the object (what `agent/build.rs` embeds).
pub fn ebpf_object(release: bool) -> PathBuf {
    target_dir()
        .join("ebpf")
        .join(BPF_TARGET)
        .join(if release { "release" } else { "debug" })
        .join("vipx-ebpf")
}

/// `cargo xtask build-ebpf`: the eBPF crate on the nightly toolchain with
/// bpf-linker, into `target/ebpf`.
pub fn ebpf(release: bool) -> anyhow::Result<()> {
    let mut build = cmd("rustup");
    build
        .args(["run", "nightly", "cargo", "build", "--package", "vipx-ebpf"])
        .args(["--target", BPF_TARGET, "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(target_dir().join("ebpf"));
    if release {
        build.arg("--release");
    }
    // The outer (stable) cargo's settings must not leak into the nightly build.
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
    ] {
        build.env_remove(var);
    }
    exec(&mut build)?;
    println!("XDP object: {}", ebpf_object(release).display());
    Ok(())
}

/// Builds the workspace binaries (the agent embeds the freshest object).
pub fn binaries(release: bool) -> anyhow::Result<PathBuf> {
    let mut build = cmd("cargo");
    build.args(["build", "--package", "vipx-agent", "--bins"]);
    if release {
        build.arg("--release");
    }
    exec(&mut build)?;
    Ok(target_dir()
        .join(if release { "release" } else { "debug" })
        .join("vipx-agent"))
}

/// The agent binary a task runs: `given` as it is (no build at all), else
/// `setup` first when `setup` says so, then the XDP object (release) and
/// the agent.
pub fn agent(given: Option<&Path>, setup: bool, release: bool) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    if setup {
        crate::setup::run()?;
    }
    ebpf(true)?;
    binaries(release)
}
