//! `cargo xtask package`: a Debian package of vipx-agent, built with
//! `dpkg-deb` from a staged tree: the binary (with its XDP object
//! embedded), the systemd unit, the example configuration, the Grafana
//! dashboard and the alert rules, man pages (clap_mangen) and shell
//! completions (clap_complete), all generated from the agent's own
//! command line.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use clap::CommandFactory as _;

use crate::{
    build,
    util::{cmd, exec, output, target_dir, workspace_root},
};

#[derive(Debug, clap::Args)]
pub struct PackageArgs {
    /// Package this agent binary instead of building a release one (the
    /// tests package their debug build).
    #[arg(long)]
    agent_bin: Option<PathBuf>,
    /// Where the .deb goes (default: target/package).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// What goes where, besides the generated files: (source in the
/// repository, path in the package, mode).
const FILES: &[(&str, &str, u32)] = &[
    (
        "config/vipx-agent.service",
        "lib/systemd/system/vipx-agent.service",
        0o644,
    ),
    (
        "config/vipx.toml",
        "usr/share/doc/vipx-agent/examples/vipx.toml",
        0o644,
    ),
    ("README.md", "usr/share/doc/vipx-agent/README.md", 0o644),
];

/// Files that may not exist yet in every checkout (the dashboards and
/// rules): packaged when present.
const OPTIONAL_FILES: &[(&str, &str, u32)] = &[
    (
        "config/grafana/vipx.json",
        "usr/share/doc/vipx-agent/grafana/vipx.json",
        0o644,
    ),
    (
        "config/prometheus/vipx-rules.yml",
        "usr/share/doc/vipx-agent/prometheus/vipx-rules.yml",
        0o644,
    ),
];

pub fn run(args: &PackageArgs) -> anyhow::Result<()> {
    let agent = build::agent(args.agent_bin.as_deref(), false, true)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| target_dir().join("package"));
    let deb = build_deb(&agent, &out)?;
    println!("package: {}", deb.display());
    Ok(())
}

/// Stages the tree under `out` and builds the .deb there.
fn build_deb(agent: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    let version = env!("CARGO_PKG_VERSION");
    let arch = output(cmd("dpkg").arg("--print-architecture"))
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .context("dpkg --print-architecture (Debian's dpkg)")?;
    let name = format!("vipx-agent_{version}_{arch}");
    let root = out.join(&name);
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("clearing {}", root.display()))?;
    }
    let put = |path: &str, bytes: &[u8], mode: u32| -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let dest = root.join(path);
        fs::create_dir_all(dest.parent().context("a parent")?)?;
        fs::write(&dest, bytes).with_context(|| format!("writing {}", dest.display()))?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    let binary = fs::read(agent).with_context(|| format!("reading {}", agent.display()))?;
    put("usr/sbin/vipx-agent", &binary, 0o755)?;
    // As dh_strip does: no debug sections in the package (the XDP object
    // is data of the binary and stays).
    exec(
        cmd("strip")
            .args(["--strip-debug", "--remove-section=.comment"])
            .arg(root.join("usr/sbin/vipx-agent")),
    )?;
    let repo = workspace_root();
    for (source, dest, mode) in FILES {
        put(
            dest,
            &fs::read(repo.join(source)).with_context(|| format!("reading {source}"))?,
            *mode,
        )?;
    }
    for (source, dest, mode) in OPTIONAL_FILES {
        if let Ok(bytes) = fs::read(repo.join(source)) {
            put(dest, &bytes, *mode)?;
        }
    }
    for (page, text) in man_pages()? {
        put(
            &format!("usr/share/man/man1/{page}.1.gz"),
            &gzip(&text)?,
            0o644,
        )?;
    }
    for (path, text) in completions() {
        put(&path, &text, 0o644)?;
    }
    put(
        "usr/share/doc/vipx-agent/copyright",
        copyright().as_bytes(),
        0o644,
    )?;
    put(
        "DEBIAN/control",
        control(version, &arch, installed_size(&root)?).as_bytes(),
        0o644,
    )?;
    put("DEBIAN/postinst", POSTINST.as_bytes(), 0o755)?;
    let deb = out.join(format!("{name}.deb"));
    exec(
        cmd("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&root)
            .arg(&deb),
    )?;
    Ok(deb)
}

/// `vipx-agent(1)` and a page per subcommand (`vipx-agent-status(1)`...).
fn man_pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let command = vipx_agent::cli::Cli::command();
    let mut pages = Vec::new();
    let mut render = |name: String, command: clap::Command| -> anyhow::Result<()> {
        let mut text = Vec::new();
        // clap takes a `&'static str` name; a build tool may leak a few.
        let leaked: &'static str = Box::leak(name.clone().into_boxed_str());
        clap_mangen::Man::new(command.name(leaked)).render(&mut text)?;
        pages.push((name, text));
        Ok(())
    };
    for sub in command.get_subcommands() {
        render(format!("vipx-agent-{}", sub.get_name()), sub.clone())?;
    }
    render("vipx-agent".to_owned(), command)?;
    Ok(pages)
}

/// bash, zsh and fish completions, where Debian's packages look for them.
fn completions() -> Vec<(String, Vec<u8>)> {
    use clap_complete::{Shell, generate};
    [
        (
            Shell::Bash,
            "usr/share/bash-completion/completions/vipx-agent",
        ),
        (Shell::Zsh, "usr/share/zsh/vendor-completions/_vipx-agent"),
        (
            Shell::Fish,
            "usr/share/fish/vendor_completions.d/vipx-agent.fish",
        ),
    ]
    .into_iter()
    .map(|(shell, path)| {
        let mut text = Vec::new();
        generate(
            shell,
            &mut vipx_agent::cli::Cli::command(),
            "vipx-agent",
            &mut text,
        );
        (path.to_owned(), text)
    })
    .collect()
}

fn gzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut child = cmd("gzip")
        .args(["-9n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("gzip")?;
    child
        .stdin
        .take()
        .context("gzip's stdin")?
        .write_all(bytes)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("gzip failed");
    }
    Ok(out.stdout)
}

/// Installed-Size: KiB of the staged files.
fn installed_size(root: &Path) -> anyhow::Result<u64> {
    fn walk(dir: &Path, total: &mut u64) -> std::io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                walk(&entry.path(), total)?;
            } else {
                *total += meta.len();
            }
        }
        Ok(())
    }
    let mut total = 0;
    walk(root, &mut total)?;
    Ok(total.div_ceil(1024))
}

fn control(version: &str, arch: &str, size_kib: u64) -> String {
    format!(
        "Package: vipx-agent\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: vipx developers <vipx@localhost>\n\
         Installed-Size: {size_kib}\n\
         Depends: libc6, iproute2\n\
         Recommends: systemd\n\
         Section: net\n\
         Priority: optional\n\
         Description: floating VIP (VRRPv3) and XDP L4 load balancer\n \
         vipx-agent moves a virtual IP between nodes with VRRPv3 and a\n \
         millisecond heartbeat, and balances the VIP's TCP connections over\n \
         backends (PgBouncer, PostgreSQL) in the kernel with XDP (Maglev, NAT\n \
         or direct return), replicating its flow table so that sessions\n \
         survive a failover. A drop-in for keepalived + HAProxy.\n"
    )
}

fn copyright() -> String {
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: vipx\n\n\
         Files: *\n\
         License: {}\n",
        env!("CARGO_PKG_LICENSE")
    )
}

/// systemd learns of the unit; the service is enabled by the operator once
/// /etc/vipx/vipx.toml is written.
const POSTINST: &str = "#!/bin/sh\n\
set -e\n\
if [ \"$1\" = configure ] && [ -d /run/systemd/system ]; then\n\
    systemctl daemon-reload >/dev/null || true\n\
fi\n\
exit 0\n";
