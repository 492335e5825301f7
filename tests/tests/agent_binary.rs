//! The `vipx-agent` binary itself, run in lab namespaces: it serves the XDP
//! counters on `/metrics`, answers `status`, detaches on SIGTERM, and
//! rejects bad configuration files with their line and column.

mod support;

use std::{net::SocketAddr, path::Path, time::Duration};

use vipx_lab::{Host, Lab, LabOptions, ProcSpec};

const API_PORT: u16 = 9469;

fn write_config(lab: &Lab, name: &str, text: &str) -> std::path::PathBuf {
    let path = lab.tmp_dir().join(name);
    std::fs::write(&path, text).expect("write config file");
    path
}

fn xdp_attached(host: &Host) -> bool {
    let out = host
        .run_stdout(&["ip", "-d", "link", "show", "eth0"])
        .expect("ip link show");
    out.contains("prog/xdp")
}

#[test]
fn agent_serves_xdp_counters_and_detaches_on_sigterm() {
    let lab = Lab::new(LabOptions::default()).expect("create lab");
    let node = lab.add_host("node", &lab.v4(11)).expect("add node");
    let client = lab.add_host("client", &lab.v4(21)).expect("add client");
    let config = write_config(
        &lab,
        "node.toml",
        &format!(
            "[node]\nname = \"{}\"\nstate_file = \"{}\"\n[dataplane]\ninterfaces = [\"eth0\"]\n[api]\nlisten = \"0.0.0.0:{API_PORT}\"\n",
            lab.id(),
            lab.tmp_dir().join("node.state.json").display()
        ),
    );
    let agent = node
        .spawn(
            "agent",
            ProcSpec::new(support::agent_bin())
                .arg("--config")
                .arg(&config),
        )
        .expect("start vipx-agent");

    let api = SocketAddr::from((node.ipv4(), API_PORT));
    let page = support::wait_for(Duration::from_secs(20), || {
        let page = client
            .enter(|| support::http_get(api, "/metrics"))
            .ok()?
            .ok()?;
        (page.0 == 200 && page.1.contains("vipx_xdp_packets_total")).then_some(page.1)
    })
    .unwrap_or_else(|| {
        panic!(
            "no /metrics with XDP counters from the agent within 20 s; its log:\n{}",
            lab.log_tail(agent, 40)
        )
    });
    for action in ["aborted", "drop", "pass", "tx", "redirect"] {
        let series = format!("vipx_xdp_packets_total{{action=\"{action}\"}}");
        assert!(
            support::metric_value(&page, &series).is_some(),
            "{series} missing from /metrics:\n{page}"
        );
    }
    // The scrape itself crossed the XDP program: the pass counter moved.
    let passed = support::metric_value(&page, "vipx_xdp_packets_total{action=\"pass\"}")
        .expect("pass counter");
    assert!(
        passed > 0.0,
        "the scrape's own packets were not counted:\n{page}"
    );
    assert!(
        page.contains("vipx_xdp_attached{interface=\"eth0\""),
        "attachment gauge missing:\n{page}"
    );
    assert!(xdp_attached(&node), "XDP program not attached to eth0");

    // `vipx-agent status` asks the running agent.
    let status = client
        .run_stdout(&[
            support::agent_bin().to_str().expect("utf-8 path"),
            "status",
            "--api",
            &format!("http://{api}"),
        ])
        .expect("vipx-agent status");
    assert!(
        status.contains(lab.id()),
        "status does not name the node:\n{status}"
    );
    assert!(
        status.contains("xdp        eth0"),
        "status does not show XDP:\n{status}"
    );

    let status = lab
        .stop_process(agent)
        .expect("stop the agent with SIGTERM");
    assert_eq!(
        status.code(),
        Some(0),
        "the agent must exit 0 on SIGTERM: {status}"
    );
    assert!(!xdp_attached(&node), "XDP still attached after SIGTERM");
}

/// Runs the agent on `config` (as daemon and as `check-config`) inside a
/// lab host, expects it to fail and returns stderr.
fn rejected(host: &Host, config: &Path) -> Vec<String> {
    let bin = support::agent_bin();
    let bin = bin.to_str().expect("utf-8 path");
    let config = config.to_str().expect("utf-8 path");
    [
        vec![bin, "--config", config],
        vec![bin, "check-config", config],
    ]
    .into_iter()
    .map(|argv| {
        let out = host.run_unchecked(&argv).expect("run vipx-agent");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "{argv:?} accepted a bad config; stderr:\n{stderr}"
        );
        stderr
    })
    .collect()
}

#[test]
fn bad_configs_are_rejected_with_line_and_column() {
    let lab = Lab::new(LabOptions::ipv4_only()).expect("create lab");
    let node = lab.add_host("node", &lab.v4(11)).expect("add node");

    let unknown = write_config(
        &lab,
        "unknown-key.toml",
        "[dataplane]\ninterfaces = [\"eth0\"]\n\n[api]\nlisten = \"127.0.0.1:9469\"\nlisen_backlog = 5\n",
    );
    for stderr in rejected(&node, &unknown) {
        let at = format!("{}:6:1:", unknown.display());
        assert!(stderr.contains(&at), "expected {at} in:\n{stderr}");
        assert!(stderr.contains("lisen_backlog"), "key not named:\n{stderr}");
    }

    let wrong_type = write_config(
        &lab,
        "wrong-type.toml",
        "[dataplane]\ninterfaces = \"eth0\"\n",
    );
    for stderr in rejected(&node, &wrong_type) {
        let at = format!("{}:2:14:", wrong_type.display());
        assert!(stderr.contains(&at), "expected {at} in:\n{stderr}");
    }
    assert!(
        !xdp_attached(&node),
        "a rejected config must not touch the host"
    );
}

#[test]
fn example_config_passes_check_config() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/vipx.toml");
    let out = std::process::Command::new(support::agent_bin())
        .arg("check-config")
        .arg(&example)
        .output()
        .expect("run vipx-agent check-config");
    assert!(
        out.status.success(),
        "config/vipx.toml rejected: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn a_closed_output_pipe_ends_a_subcommand_quietly() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/vipx.toml");
    // A pipe whose reader is gone before the command writes (as `| head`
    // leaves it once it has read its lines).
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = std::process::Command::new(support::agent_bin())
        .arg("check-config")
        .arg(&example)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run vipx-agent check-config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "no panic, no error on a closed pipe: {stderr}"
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(libc::SIGPIPE),
        "ended by SIGPIPE, as Unix tools are ({})",
        out.status
    );
}

#[test]
fn a_node_not_among_the_cluster_members_refuses_to_start() {
    let lab = Lab::new(LabOptions::ipv4_only()).expect("create lab");
    let node = lab.add_host("node", &lab.v4(11)).expect("add node");
    let secret = lab.tmp_dir().join("cluster.secret");
    std::fs::write(&secret, "a cluster secret of the lab, 32 b").expect("write the secret");
    let config = write_config(
        &lab,
        "outsider.toml",
        &format!(
            "[node]\nname = \"outsider\"\n[dataplane]\ninterfaces = [\"eth0\"]\n[cluster]\nsecret_file = \"{}\"\nmembers = [\n  {{ name = \"a\", address = \"10.9.0.1:9469\" }},\n  {{ name = \"b\", address = \"10.9.0.2:9469\" }},\n  {{ name = \"c\", address = \"10.9.0.3:9469\" }},\n]\n",
            secret.display()
        ),
    );
    let run = |env: Option<&str>| {
        let mut spec = ProcSpec::new(support::agent_bin())
            .arg("--config")
            .arg(&config);
        if let Some(name) = env {
            spec = spec.env("VIPX_NODE_NAME", name);
        }
        let out = node
            .run_spec(&spec, Duration::from_secs(30))
            .expect("run vipx-agent");
        assert!(!out.status.success(), "the agent started as {env:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = run(None);
    assert!(
        stderr.contains("node outsider is not in [cluster] members (a, b, c)"),
        "a clear refusal:\n{stderr}"
    );
    let stderr = run(Some("zed"));
    assert!(
        stderr.contains("node zed is not in [cluster] members"),
        "VIPX_NODE_NAME overrides [node] name:\n{stderr}"
    );
    assert!(
        !xdp_attached(&node),
        "a refused start must not touch the host"
    );
}
