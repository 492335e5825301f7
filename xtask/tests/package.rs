//! `cargo xtask package`: the .deb holds the binary (which runs), the unit,
//! the example configuration, man pages and completions, with the control
//! fields Debian needs. Packages the suite's debug agent (`--agent-bin`) so
//! the test builds nothing in release.

use std::{path::Path, process::Command};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|err| panic!("{cmd:?}: {err}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_deb_holds_what_an_operator_needs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let said = run(Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("package")
        .arg("--agent-bin")
        .arg(vipx_lab::agent_bin())
        .arg("--out")
        .arg(dir.path()));
    let deb = said
        .lines()
        .find_map(|l| l.strip_prefix("package: "))
        .unwrap_or_else(|| panic!("no package path in:\n{said}"));
    let listing = run(Command::new("dpkg-deb").arg("--contents").arg(deb));
    for path in [
        "./usr/sbin/vipx-agent",
        "./lib/systemd/system/vipx-agent.service",
        "./usr/share/doc/vipx-agent/examples/vipx.toml",
        "./usr/share/doc/vipx-agent/copyright",
        "./usr/share/man/man1/vipx-agent.1.gz",
        "./usr/share/man/man1/vipx-agent-handover.1.gz",
        "./usr/share/man/man1/vipx-agent-import.1.gz",
        "./usr/share/bash-completion/completions/vipx-agent",
        "./usr/share/zsh/vendor-completions/_vipx-agent",
        "./usr/share/fish/vendor_completions.d/vipx-agent.fish",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(path)),
            "{path} missing from the package:\n{listing}"
        );
    }
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rwxr-xr-x root/root") && l.ends_with("./usr/sbin/vipx-agent")),
        "the binary is root's and executable:\n{listing}"
    );
    let fields = run(Command::new("dpkg-deb").args([
        "--field",
        deb,
        "Package",
        "Version",
        "Architecture",
        "Depends",
    ]));
    assert!(fields.contains("Package: vipx-agent"), "{fields}");
    assert!(
        fields.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{fields}"
    );
    // Unpacked: the binary runs and the pages say what it does.
    let root = dir.path().join("root");
    run(Command::new("dpkg-deb")
        .arg("--extract")
        .arg(deb)
        .arg(&root));
    let version = run(Command::new(root.join("usr/sbin/vipx-agent")).arg("--version"));
    assert!(version.starts_with("vipx-agent "), "{version}");
    let man = run(Command::new("gzip")
        .arg("-dc")
        .arg(root.join("usr/share/man/man1/vipx-agent.1.gz")));
    assert!(man.contains(".TH vipx-agent"), "a man page:\n{man}");
    assert!(man.contains("handover"), "it lists the subcommands:\n{man}");
    let bash =
        std::fs::read_to_string(root.join("usr/share/bash-completion/completions/vipx-agent"))
            .expect("bash completion");
    assert!(
        bash.contains("check-config") && bash.contains("--ha-debug"),
        "{bash}"
    );
    assert!(Path::new(&root.join("lib/systemd/system/vipx-agent.service")).exists());
}
