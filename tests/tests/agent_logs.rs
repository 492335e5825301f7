//! The agent's logs: `--log-format json` writes one JSON object per line,
//! the level comes from `[log] level` unless `RUST_LOG` is set, and under
//! journald (`JOURNAL_STREAM`) text lines carry no timestamp. The agent
//! runs in a lab host with an interface that does not exist: it logs its
//! start, warns about the interface and stops.

mod support;

use std::time::Duration;

use vipx_lab::{Host, Lab, LabOptions, ProcSpec};

/// The agent's stderr, its lines before the final error.
fn logs(host: &Host, config: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let mut spec = ProcSpec::new(support::agent_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "")
        .env("JOURNAL_STREAM", "");
    for (key, value) in env {
        spec = spec.env(key, value);
    }
    let out = host
        .run_spec(&spec, Duration::from_secs(30))
        .expect("run vipx-agent");
    assert!(!out.status.success(), "no such interface: the start fails");
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("vipx-agent: error:") && !l.starts_with("==="))
        .map(str::to_owned)
        .collect()
}

#[test]
fn log_lines_follow_the_format_and_the_level_asked_for() {
    let lab = Lab::new(LabOptions::ipv4_only()).expect("create lab");
    let node = lab.add_host("node", &lab.v4(11)).expect("add node");
    let config = lab.tmp_dir().join("logs.toml");
    std::fs::write(
        &config,
        "[node]\nname = \"logs\"\n[dataplane]\ninterfaces = [\"nosuch0\"]\n[api]\nlisten = \"127.0.0.1:9469\"\n[log]\nlevel = \"warn\"\n",
    )
    .expect("write the config");

    // [log] level = "warn": no INFO line, the interface's WARN.
    let text = logs(&node, &config, &[], &[]);
    assert!(
        text.iter()
            .any(|l| l.contains(" WARN ") && l.contains("nosuch0")),
        "{text:#?}"
    );
    assert!(!text.iter().any(|l| l.contains(" INFO ")), "{text:#?}");
    assert!(
        text.iter().all(|l| l.starts_with("20")),
        "timestamped outside journald: {text:#?}"
    );

    // RUST_LOG wins; JSON lines.
    let json = logs(
        &node,
        &config,
        &["--log-format", "json"],
        &[("RUST_LOG", "info")],
    );
    let objects: Vec<serde_json::Value> = json
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("not JSON: {l}: {err}")))
        .collect();
    let starting = objects
        .iter()
        .find(|o| {
            o["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.ends_with(" starting"))
        })
        .unwrap_or_else(|| panic!("no start line at RUST_LOG=info: {json:#?}"));
    assert_eq!(starting["level"], "INFO", "{starting}");
    assert_eq!(starting["fields"]["node"], "logs", "{starting}");

    // Under journald: no timestamp of its own.
    let journal = logs(&node, &config, &[], &[("JOURNAL_STREAM", "8:1234")]);
    assert!(!journal.is_empty(), "logs under journald too");
    assert!(
        journal
            .iter()
            .all(|l| l.trim_start().starts_with("WARN") || l.trim_start().starts_with("ERROR")),
        "lines start with their level: {journal:#?}"
    );
}
