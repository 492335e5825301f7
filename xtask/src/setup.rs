//! `cargo xtask setup`: everything the build, the lab and the tests need on
//! a fresh machine, installed only where missing, so a second run is a
//! no-op that takes seconds.

use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

use crate::util::{cmd, exec, output, target_dir};

/// Debian packages the lab and the tests use.
pub const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "postgresql",
    "pgbouncer",
    "haproxy",
    "nftables",
    "keepalived",
    "tcpdump",
    "bpftool",
    "ethtool",
    "curl",
    // systemd-analyze (the unit's test); util-linux's setpriv and libcap2's
    // capsh run the agent with the unit's capabilities only.
    "systemd",
    "util-linux",
    "libcap2-bin",
    // strip (cargo xtask package).
    "binutils",
    // The stats page test renders it headless (--dump-dom, --screenshot).
    "chromium",
    // promtool: the alert rules are checked and unit-tested.
    "prometheus",
];

/// The bpf-linker release known to work with the nightly's LLVM 22.
const BPF_LINKER_VERSION: &str = "0.13.0";
const BPF_LINKER_LLVM_FEATURE: &str = "llvm-22";
/// Keeps apt's maintainer scripts from starting system services
/// (`invoke-rc.d` honours it); the lab starts its own instances.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

pub fn run() -> anyhow::Result<()> {
    debian_packages()?;
    rust_src()?;
    bpf_linker()?;
    println!("setup: done");
    Ok(())
}

fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|pkg| !dpkg_installed(pkg))
        .collect();
    if missing.is_empty() {
        println!(
            "setup: Debian packages present ({})",
            DEBIAN_PACKAGES.join(", ")
        );
        return Ok(());
    }
    println!("setup: installing Debian packages: {}", missing.join(" "));
    let policy_guard = PolicyRcD::install()?;
    let mut update = apt("update");
    exec(update.arg("-qq"))?;
    let mut install = apt("install");
    exec(
        install
            .args(["-y", "-qq", "--no-install-recommends"])
            .args(&missing),
    )?;
    drop(policy_guard);
    let still: Vec<&str> = missing.into_iter().filter(|p| !dpkg_installed(p)).collect();
    if !still.is_empty() {
        bail!("apt-get did not install: {}", still.join(" "));
    }
    Ok(())
}

fn dpkg_installed(pkg: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Abbrev}", pkg]))
        .is_some_and(|status| status.starts_with("ii"))
}

fn apt(verb: &str) -> Command {
    let mut apt = Command::new("apt-get");
    apt.arg(verb)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(std::process::Stdio::null());
    apt
}

/// Writes `policy-rc.d` for the duration of an install, unless one exists.
struct PolicyRcD(Option<PathBuf>);

impl PolicyRcD {
    fn install() -> anyhow::Result<Self> {
        let path = PathBuf::from(POLICY_RC_D);
        if path.exists() {
            return Ok(Self(None));
        }
        fs::write(
            &path,
            "#!/bin/sh\n# written by cargo xtask setup\nexit 101\n",
        )
        .with_context(|| format!("writing {POLICY_RC_D}"))?;
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        Ok(Self(Some(path)))
    }
}

impl Drop for PolicyRcD {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

fn rust_src() -> anyhow::Result<()> {
    let installed =
        output(cmd("rustup").args(["component", "list", "--toolchain", "nightly", "--installed"]))
            .context(
                "the nightly toolchain is needed for the XDP program (`rustup toolchain list`)",
            )?;
    if installed.lines().any(|line| line.trim() == "rust-src") {
        println!("setup: rust-src for nightly present");
        return Ok(());
    }
    println!("setup: adding rust-src to the nightly toolchain");
    exec(cmd("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

fn bpf_linker() -> anyhow::Result<()> {
    // bpf-linker links the nightly's own libLLVM: run it through rustup so
    // that the toolchain's lib/ is on the library path.
    let version = output(cmd("rustup").args(["run", "nightly", "bpf-linker", "--version"]));
    if version
        .as_deref()
        .is_some_and(|v| v.trim().ends_with(BPF_LINKER_VERSION))
    {
        println!("setup: bpf-linker {BPF_LINKER_VERSION} present");
        return Ok(());
    }
    let prefix = llvm_prefix()?;
    println!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM ({})",
        prefix.display()
    );
    exec(
        cmd("cargo")
            .args(["install", "bpf-linker", "--locked", "--force"])
            .args(["--version", BPF_LINKER_VERSION])
            .args([
                "--no-default-features",
                "--features",
                BPF_LINKER_LLVM_FEATURE,
            ])
            .env("LLVM_PREFIX", &prefix),
    )
}

/// A folder whose `lib/libLLVM.so` is the nightly toolchain's own libLLVM.
fn llvm_prefix() -> anyhow::Result<PathBuf> {
    let sysroot = output(cmd("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("`rustc +nightly --print sysroot` failed")?;
    let lib = PathBuf::from(sysroot.trim()).join("lib");
    let llvm = fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.") && n.contains("-rust-"))
        })
        .with_context(|| format!("no libLLVM.so.*-rust-* in {}", lib.display()))?;
    let prefix = target_dir().join("llvm-prefix");
    let link = prefix.join("lib/libLLVM.so");
    fs::create_dir_all(prefix.join("lib"))?;
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&llvm, &link)
        .with_context(|| format!("linking {} to {}", link.display(), llvm.display()))?;
    Ok(prefix)
}
