//! Operating a two-node cluster: the stats page (rendered by headless
//! Chromium, which also saves a screenshot), `vipx-agent status` and
//! `events` (text, `--json`, `--follow`), and the metric names the Grafana
//! dashboard and the alert rules use, against what a running agent
//! exports.

mod support;

use std::{collections::BTreeSet, path::Path, time::Duration};

use vipx_lab::{Cluster, ClusterOptions, Failure, Host, ProcSpec, agent_bin};

/// How long Chromium may take for one page.
const CHROMIUM_LIMIT: Duration = Duration::from_secs(90);

fn cluster() -> Cluster {
    let opts = ClusterOptions {
        health: Some(
            "check = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"200ms\"\njitter = \"20ms\"\nrise = 2\nfall = 2\n"
                .to_owned(),
        ),
        heartbeat: Some(Duration::from_millis(10)),
        sync: true,
        ..ClusterOptions::new(2, agent_bin())
    };
    let cluster = Cluster::up(&opts).expect("bring the cluster up");
    cluster
        .wait_master(0, Duration::from_secs(10))
        .expect("n1 becomes MASTER");
    cluster
}

/// `vipx-agent ARGS` on the first node, as an operator there runs it (the
/// API takes changes from the node itself); its stdout.
fn agent_cli(cluster: &Cluster, args: &[&str]) -> String {
    cluster
        .cli(0, args)
        .unwrap_or_else(|err| panic!("{args:?}: {err:#}"))
}

/// Headless Chromium on `host`, with `args` before the URL.
fn chromium(host: &Host, profile: &Path, args: &[&str], url: &str) -> String {
    let profile = format!("--user-data-dir={}", profile.display());
    let spec = ProcSpec::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", &profile])
        .args(args)
        .arg(url);
    let out = host
        .run_spec_checked(&spec, CHROMIUM_LIMIT)
        .unwrap_or_else(|err| panic!("chromium {args:?} {url}: {err:#}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rows(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .map(|l| l.split_whitespace().collect())
        .collect()
}

#[test]
fn the_stats_page_status_and_events_show_the_cluster() {
    let cluster = cluster();
    let n2 = cluster.nodes[1].host.ipv4().to_string();
    let backend = |i: usize| {
        format!(
            "{}:{}",
            cluster.backend.ipv4(),
            cluster.pgbouncers[i].port()
        )
    };
    let drained = backend(1);
    agent_cli(&cluster, &["drain", &drained]);

    // status --json: structured fields, the peer heard through XDP.
    let status: serde_json::Value = support::wait_for(Duration::from_secs(10), || {
        let json: serde_json::Value =
            serde_json::from_str(&agent_cli(&cluster, &["status", "--json"])).ok()?;
        let heard = json["groups"][0]["peers"]
            .as_array()?
            .iter()
            .any(|p| p["address"] == n2.as_str() && p["kind"] == "heartbeat");
        heard.then_some(json)
    })
    .expect("n1's status lists n2's heartbeats");
    let node = status["node"].as_str().expect("node").to_owned();
    let group = &status["groups"][0];
    assert_eq!(group["state"], "MASTER", "{status:#}");
    assert!(group["since_unix_ms"].as_u64().is_some(), "{status:#}");
    let peer = group["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| p["kind"] == "heartbeat")
        .expect("heartbeat peer");
    assert_eq!(peer["state"], "BACKUP", "{status:#}");
    assert!(
        peer["last_heard_ms"].as_u64().expect("last heard") < 2000,
        "{status:#}"
    );
    let backends = status["services"][0]["backends"]
        .as_array()
        .expect("backends");
    assert_eq!(backends.len(), 3, "{status:#}");
    for b in backends {
        let is_drained = b["address"] == drained.as_str();
        assert_eq!(b["drained"], is_drained, "{status:#}");
        assert_eq!(b["health"], "up", "{status:#}");
        assert_eq!(b["weight"], if is_drained { 0 } else { 1 }, "{status:#}");
    }

    // status: one row per group, peer and backend.
    let text = agent_cli(&cluster, &["status"]);
    let table = rows(&text);
    assert!(
        table
            .iter()
            .any(|r| r.len() > 3 && r[..3] == ["pg", "51", "MASTER"]),
        "{text}"
    );
    assert!(
        table
            .iter()
            .any(|r| r.len() > 4 && r[..4] == ["pg", n2.as_str(), "heartbeat", "BACKUP"]),
        "{text}"
    );
    assert!(
        table
            .iter()
            .any(|r| r.len() > 4 && r[..4] == [drained.as_str(), "up", "0", "drained"]),
        "{text}"
    );
    assert!(
        text.contains(&format!("master     pg: {node} (this node)")),
        "{text}"
    );

    // events: readable UTC timestamps; --json one object per line.
    let text = agent_cli(&cluster, &["events"]);
    let drain_line = text
        .lines()
        .find(|l| l.contains(&format!("drain    {drained}")))
        .unwrap_or_else(|| panic!("no drain event: {text}"));
    let time = drain_line.split_whitespace().nth(1).expect("time");
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "RFC 3339 UTC with ms: {drain_line}"
    );
    let json = agent_cli(&cluster, &["events", "--json"]);
    let events: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("{l}: {err}")))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "group" && e["to"] == "MASTER" && e["subject"] == "pg"),
        "{json}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["time"].as_str().is_some_and(|t| t.ends_with('Z'))),
        "{json}"
    );

    // events --follow prints what happens after it started.
    let url = format!("http://{}", cluster.nodes[0].api);
    let follow = cluster
        .client
        .spawn(
            "events-follow",
            ProcSpec::new(&cluster.agent_bin).args(["events", "--follow", "--api", &url]),
        )
        .expect("start events --follow");
    let undrained = backend(2);
    agent_cli(&cluster, &["drain", &undrained]);
    agent_cli(&cluster, &["drain", "--undo", &undrained]);
    support::wait_for(Duration::from_secs(10), || {
        let log = cluster.lab.log_tail(follow, 50);
        log.lines()
            .any(|l| l.contains(&undrained) && l.ends_with("drained -> active (operator)"))
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "events --follow did not print the undrain: {}",
            cluster.lab.log_tail(follow, 50)
        )
    });

    // The stats page, as a browser renders it (from the root URL).
    let profile = cluster.lab.tmp_dir().join("chromium");
    let url = format!("http://{}/", cluster.nodes[0].api);
    let dom = chromium(&cluster.client, &profile, &["--dump-dom"], &url);
    for expected in [
        format!("<h1>vipx-agent on {node}</h1>"),
        "<td>pg</td><td class=\"n\">51</td><td class=\"MASTER\">MASTER</td>".to_owned(),
        format!("<td>{node} (this node)</td>"),
        format!("<td>pg</td><td>{n2}</td><td>heartbeat</td><td class=\"BACKUP\">BACKUP</td>"),
        format!(
            "<td>{drained}</td><td class=\"up\">up</td><td class=\"n\">0</td><td class=\"drained\">drained</td>"
        ),
        format!(
            "<td>{}</td><td class=\"up\">up</td><td class=\"n\">1</td><td class=\"active\">active</td>",
            backend(0)
        ),
        format!(
            "<td>drain</td><td>{undrained}</td><td>drained</td><td class=\"active\">active</td><td>operator</td>"
        ),
        "<meta http-equiv=\"refresh\" content=\"5\">".to_owned(),
    ] {
        assert!(
            dom.contains(&expected),
            "{expected} missing from the page:\n{dom}"
        );
    }
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vipx-stats.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &cluster.client,
        &profile,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1024",
        ],
        &url,
    );
    let png = std::fs::read(&shot).unwrap_or_else(|err| panic!("{}: {err}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} is no screenshot ({} bytes)",
        shot.display(),
        png.len()
    );
    println!("stats page screenshot: {}", shot.display());

    // A reload that removes a backend removes its series.
    let gone = format!("backend=\"{}\"", backend(2));
    assert!(
        cluster.metrics(0).expect("metrics").contains(&gone),
        "{gone} is exported before the reload"
    );
    let port = |i: usize| cluster.pgbouncers[i].port();
    cluster
        .reconfigure(0, &[(port(0), 1), (port(1), 1)])
        .expect("reload without the third PgBouncer");
    // The reload is applied in steps (the service, then its checks): wait,
    // bounded, until every series of the removed backend is gone.
    let applied = |page: &str| {
        support::metric_value(page, "vipx_service_backends{service=\"pgbouncer\"}") == Some(2.0)
    };
    let page = support::wait_for(Duration::from_secs(10), || {
        let page = cluster.metrics(0).ok()?;
        (applied(&page) && !page.contains(&gone)).then_some(page)
    })
    .unwrap_or_else(|| {
        let page = cluster.metrics(0).unwrap_or_default();
        let left: Vec<&str> = page.lines().filter(|l| l.contains(&gone)).collect();
        panic!(
            "reload applied: {}; {gone} still exported 10 s later:\n{}",
            applied(&page),
            left.join("\n")
        )
    });
    assert!(
        page.contains(&format!("backend=\"{}\"", backend(0))),
        "the kept backends stay:\n{page}"
    );
    assert_eq!(
        support::metric_value(&page, "vipx_config_last_reload_successful"),
        Some(1.0)
    );
}

/// The metric names in a text: `vipx_...` words, a histogram's series
/// named by their family.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("vipx_") {
        let word: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + word.len()..];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| word.strip_suffix(s))
            .unwrap_or(&word);
        names.insert(family.to_owned());
    }
    names
}

#[test]
fn the_dashboard_and_the_alert_rules_use_metrics_the_agent_exports() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let dashboard = std::fs::read_to_string(config.join("grafana/vipx.json")).expect("dashboard");
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard parses");
    let exprs: Vec<&str> = json["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["type"] != "row")
        .flat_map(|p| p["targets"].as_array().expect("targets"))
        .map(|t| t["expr"].as_str().expect("expr"))
        .collect();
    assert!(exprs.len() > 20, "{} queries", exprs.len());
    let rules = std::fs::read_to_string(config.join("prometheus/vipx-rules.yml")).expect("rules");
    let used: BTreeSet<String> = names_in(&exprs.join("\n"))
        .into_iter()
        .chain(names_in(&rules))
        .collect();

    // A takeover, for the figures that only exist after one
    // (vipx_group_last_detection_seconds): n2 is read.
    let mut cluster = cluster();
    cluster
        .fail_master(Failure::Kill)
        .expect("n2 takes over from a killed n1");
    let page = support::wait_for(Duration::from_secs(10), || {
        let page = cluster.metrics(1).ok()?;
        page.contains("vipx_lease_refresh_age_seconds ")
            .then_some(page)
    })
    .expect("n2 serves its metrics");
    let exported: BTreeSet<String> = page
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    let missing: Vec<&String> = used.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "used by the dashboard or the rules, not exported: {missing:?}\n/metrics:\n{page}"
    );
    for name in [
        "vipx_group_master",
        "vipx_backend_health",
        "vipx_sync_lag_seconds",
    ] {
        assert!(used.contains(name), "{name} is used: {used:?}");
    }
}
