//! `vipx-agent import` on the set-up guide's files (tests/fixtures/import):
//! each node's keepalived.conf with the shared haproxy.cfg makes a config
//! that `vipx-agent check-config` accepts.

mod support;

use std::{path::Path, process::Command};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/import")
        .join(name)
}

#[test]
fn each_nodes_pair_imports_into_a_config_check_config_accepts() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (node, priority) in [("master", 101), ("backup", 100)] {
        let out_path = dir.path().join(format!("vipx-{node}.toml"));
        let out = Command::new(support::agent_bin())
            .arg("import")
            .arg("--keepalived")
            .arg(fixture(&format!("keepalived-{node}.conf")))
            .arg("--haproxy")
            .arg(fixture("haproxy.cfg"))
            .arg("--output")
            .arg(&out_path)
            .output()
            .expect("run vipx-agent import");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "import failed:\n{stderr}");
        assert!(
            stderr.contains("not carried over: ") && stderr.contains("authentication"),
            "the notes go to stderr:\n{stderr}"
        );
        let text = std::fs::read_to_string(&out_path).expect("the written config");
        assert!(text.contains(&format!("priority = {priority}")), "{text}");
        let check = Command::new(support::agent_bin())
            .arg("check-config")
            .arg(&out_path)
            .output()
            .expect("run check-config");
        assert!(
            check.status.success(),
            "check-config refused the imported config:\n{}\n{text}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

#[test]
fn import_without_a_file_says_what_it_needs() {
    let out = Command::new(support::agent_bin())
        .arg("import")
        .output()
        .expect("run vipx-agent import");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--keepalived FILE, --haproxy FILE or both"),
        "{stderr}"
    );
}
