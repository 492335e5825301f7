//! The agent's API over mutual TLS (`[api.tls]` with `client_ca_file`), in
//! lab namespaces: the command line on the node reaches it with the
//! node's own configuration (HTTPS, the node's certificate presented); a
//! scraper on another host, with a certificate of the same CA, reads
//! `/metrics` on `read_listen`, where nothing changes state; plain HTTP
//! gets no answer; a drain from a client without the API's secret gets
//! 401 over TLS, one with it gets past the guard.

mod support;

use std::{net::SocketAddr, path::Path, time::Duration};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use vipx_agent::{
    config::{ApiConfig, ApiTls},
    tls::agent::{agent_client, api_base_url},
};
use vipx_lab::{Host, Lab, LabOptions, ProcSpec};

const API_PORT: u16 = 9469;
const READ_PORT: u16 = 9470;
/// A backend no service has: a drain that passes the guard gets 404.
const NO_BACKEND: &str = "10.99.0.1:5432";

/// Writes `text` to the lab's directory; its path.
fn write(lab: &Lab, name: &str, text: &str) -> std::path::PathBuf {
    let path = lab.tmp_dir().join(name);
    std::fs::write(&path, text).expect("write a lab file");
    path
}

/// A certificate naming `ip`, signed by `ca`, written as `name.pem` and
/// `name.key`: the `[api.tls]` of that host, trusting (and requiring
/// clients of) `ca_file`.
fn host_tls(
    lab: &Lab,
    ca: &Issuer<'static, KeyPair>,
    ca_file: &Path,
    name: &str,
    ip: &str,
) -> ApiTls {
    let key = KeyPair::generate().expect("a key");
    let cert = CertificateParams::new(vec![ip.to_owned()])
        .expect("an IP SAN")
        .signed_by(&key, ca)
        .expect("the CA signs it");
    ApiTls {
        cert_file: write(lab, &format!("{name}.pem"), &cert.pem()),
        key_file: write(lab, &format!("{name}.key"), &key.serialize_pem()),
        ca_file: ca_file.to_owned(),
        client_ca_file: Some(ca_file.to_owned()),
    }
}

/// A CA for the lab, written as `ca.pem`: its issuer and its file.
fn lab_ca(lab: &Lab) -> (Issuer<'static, KeyPair>, std::path::PathBuf) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("a CA key");
    let ca_file = write(
        lab,
        "ca.pem",
        &params
            .self_signed(&ca_key)
            .expect("the CA signs itself")
            .pem(),
    );
    (Issuer::new(params, ca_key), ca_file)
}

fn tls_toml(tls: &ApiTls) -> String {
    format!(
        "[api.tls]\ncert_file = {:?}\nkey_file = {:?}\nca_file = {:?}\nclient_ca_file = {:?}\n",
        tls.cert_file,
        tls.key_file,
        tls.ca_file,
        tls.client_ca_file.as_ref().expect("mutual")
    )
}

/// `vipx-agent --config CONFIG ARGS...` on `host`: (success, stdout, stderr).
fn cli(host: &Host, config: &Path, args: &[&str]) -> (bool, String, String) {
    let bin = support::agent_bin();
    let mut argv = vec![
        bin.to_str().expect("utf-8 path"),
        "--config",
        config.to_str().expect("utf-8 path"),
    ];
    argv.extend_from_slice(args);
    let out = host.run_unchecked(&argv).expect("run vipx-agent");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_command_line_and_a_scraper_reach_an_agent_over_mutual_tls() {
    let lab = Lab::new(LabOptions::ipv4_only()).expect("create lab");
    let node = lab.add_host("node", &lab.v4(11)).expect("add node");
    let client = lab.add_host("client", &lab.v4(21)).expect("add client");
    let (node_ip, client_ip) = (node.ipv4().to_string(), client.ipv4().to_string());

    let (ca, ca_file) = lab_ca(&lab);
    let node_tls = host_tls(&lab, &ca, &ca_file, "node", &node_ip);
    let client_tls = host_tls(&lab, &ca, &ca_file, "client", &client_ip);
    let secret = write(&lab, "api.secret", "an API secret of enough bytes\n");

    let api = format!("listen = \"{node_ip}:{API_PORT}\"\n");
    let node_config = write(
        &lab,
        "node.toml",
        &format!(
            "[node]\nname = \"{}\"\nstate_file = \"{}\"\n[dataplane]\ninterfaces = [\"eth0\"]\n[api]\n{api}read_listen = \"{node_ip}:{READ_PORT}\"\nsecret_file = {secret:?}\n{}",
            lab.id(),
            lab.tmp_dir().join("node.state.json").display(),
            tls_toml(&node_tls),
        ),
    );
    // The client's configuration: the node's API, its own certificate,
    // no secret.
    let client_config = write(
        &lab,
        "client.toml",
        &format!(
            "[dataplane]\ninterfaces = [\"eth0\"]\n[api]\n{api}{}",
            tls_toml(&client_tls)
        ),
    );
    let (ok, _, stderr) = cli(
        &node,
        &node_config,
        &["check-config", node_config.to_str().expect("utf-8")],
    );
    assert!(ok, "check-config reads the TLS files: {stderr}");

    let agent = node
        .spawn(
            "agent",
            ProcSpec::new(support::agent_bin())
                .arg("--config")
                .arg(&node_config),
        )
        .expect("start vipx-agent");
    // `vipx-agent status` on the node, with the node's configuration.
    let status = support::wait_for(Duration::from_secs(20), || {
        let (ok, stdout, _) = cli(&node, &node_config, &["status"]);
        ok.then_some(stdout)
    })
    .unwrap_or_else(|| {
        let (_, _, stderr) = cli(&node, &node_config, &["status"]);
        panic!(
            "no status over TLS within 20 s: {stderr}\nthe agent's log:\n{}",
            lab.log_tail(agent, 40)
        )
    });
    assert!(
        status.contains(lab.id()),
        "status names the node:\n{status}"
    );

    // Plain HTTP gets no answer from a TLS listener.
    let plain = client
        .enter(|| support::http_get(SocketAddr::from((node.ipv4(), API_PORT)), "/metrics"))
        .expect("enter the client");
    assert!(
        !matches!(plain, Ok((200, _))),
        "plain HTTP is not served: {plain:?}"
    );

    // A scraper with a certificate of the cluster's CA, on read_listen.
    let scraper = ApiConfig {
        tls: Some(client_tls.clone()),
        ..ApiConfig::default()
    };
    let read_base = api_base_url(&scraper, SocketAddr::from((node.ipv4(), READ_PORT)));
    let (metrics, drain) = client
        .enter(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let http = agent_client(&scraper, Duration::from_secs(5)).expect("a client");
                let metrics = http.get(format!("{read_base}/metrics")).send().await;
                let metrics = match metrics {
                    Ok(response) => Ok((
                        response.status().as_u16(),
                        response.text().await.unwrap_or_default(),
                    )),
                    Err(err) => Err(err.to_string()),
                };
                let drain = http
                    .post(format!("{read_base}/api/v1/drain"))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .map_err(|err| err.to_string());
                (metrics, drain)
            })
        })
        .expect("enter the client");
    let (code, page) = metrics.expect("read_listen answers over TLS");
    assert_eq!(code, 200);
    assert!(page.contains("vipx_xdp_packets_total"), "{page}");
    assert_eq!(drain, Ok(404), "read_listen changes nothing");

    // A drain without the secret: 401, over TLS, from the other host.
    let (ok, _, stderr) = cli(&client, &client_config, &["drain", NO_BACKEND]);
    assert!(!ok && stderr.contains("401 Unauthorized"), "{stderr}");
    // With it (the node's configuration): past the guard, no such backend.
    let (ok, _, stderr) = cli(&node, &node_config, &["drain", NO_BACKEND]);
    assert!(!ok && stderr.contains("404 Not Found"), "{stderr}");

    let status = lab.stop_process(agent).expect("stop the agent");
    assert_eq!(status.code(), Some(0), "the agent exits 0: {status}");
}

/// The cluster's channel over mutual TLS: three agents with `[api.tls]`
/// (`client_ca_file`: each accepts only clients the cluster's CA signed)
/// and `[cluster] members` register with and ping each other over HTTPS,
/// presenting their own certificates, and hold the quorum; the command
/// line reads it over TLS too.
#[test]
fn the_cluster_pings_over_mutual_tls_and_holds_its_quorum() {
    let lab = Lab::new(LabOptions::ipv4_only()).expect("create lab");
    let (ca, ca_file) = lab_ca(&lab);
    let secret = write(&lab, "cluster.secret", "a cluster secret of enough bytes\n");
    let hosts: Vec<Host> = (0..3u32)
        .map(|i| {
            lab.add_host(&format!("n{}", i + 1), &lab.v4(11 + i))
                .expect("add a node")
        })
        .collect();
    let name = |host: &Host| format!("{}-{}", lab.id(), host.name());
    let members: Vec<String> = hosts
        .iter()
        .map(|h| {
            format!(
                "{{ name = \"{}\", address = \"{}:{API_PORT}\" }}",
                name(h),
                h.ipv4()
            )
        })
        .collect();
    let mut configs = Vec::new();
    for host in &hosts {
        let ip = host.ipv4().to_string();
        let tls = host_tls(&lab, &ca, &ca_file, host.name(), &ip);
        let config = write(
            &lab,
            &format!("{}.toml", host.name()),
            &format!(
                "[node]\nname = \"{}\"\nstate_file = \"{}\"\n[dataplane]\ninterfaces = [\"eth0\"]\npin_path = \"{}\"\n[api]\nlisten = \"{ip}:{API_PORT}\"\n{}[cluster]\nsecret_file = {secret:?}\nmembers = [{}]\nping_interval = \"20ms\"\nquorum_timeout = \"150ms\"\n",
                name(host),
                lab.tmp_dir()
                    .join(format!("{}.state.json", host.name()))
                    .display(),
                lab.pin_dir(host.name()).expect("a pin directory").display(),
                tls_toml(&tls),
                members.join(", "),
            ),
        );
        host.spawn(
            "agent",
            ProcSpec::new(support::agent_bin())
                .arg("--config")
                .arg(&config),
        )
        .expect("start vipx-agent");
        configs.push(config);
    }
    let table = support::wait_for(Duration::from_secs(30), || {
        let (ok, out, _) = cli(&hosts[0], &configs[0], &["nodes"]);
        (ok && out.contains("quorum held, 3 of 3 voters")).then_some(out)
    });
    let log = std::fs::read_to_string(hosts[0].log_path("agent")).unwrap_or_default();
    let table =
        table.unwrap_or_else(|| panic!("n1 holds the quorum over mutual TLS; its log:\n{log}"));
    assert!(
        table.lines().filter(|l| l.contains(" up ")).count() >= 3,
        "every voter up:\n{table}"
    );
    assert!(
        log.contains(&format!("joined the candidate: {}", name(&hosts[1]))),
        "n2 registered and pinged n1 over TLS:\n{log}"
    );
}
