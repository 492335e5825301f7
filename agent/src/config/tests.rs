//! Configuration parsing and checks.

use super::*;

const GOOD: &str = r#"
[node]
name = "lb-1"

[dataplane]
interfaces = ["eth0", "eth1"]
xdp_mode = "generic"
pin_path = "/sys/fs/bpf/vipx-lb-1"

[api]
listen = "127.0.0.1:9000"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/vipx/vipx.toml"), text)
}

fn error_of(text: &str) -> String {
    parse(text)
        .expect_err("config should be rejected")
        .to_string()
}

#[test]
fn parses_a_full_config() {
    let config = parse(GOOD).expect("good config parses");
    assert_eq!(config.node.name(), "lb-1");
    assert_eq!(config.dataplane.interfaces.len(), 2);
    assert_eq!(config.dataplane.xdp_mode, XdpModeConfig::Generic);
    assert_eq!(
        config.dataplane.pin_path.as_path(),
        Path::new("/sys/fs/bpf/vipx-lb-1")
    );
    assert_eq!(config.api.listen, "127.0.0.1:9000".parse().unwrap());
}

#[test]
fn defaults_fill_the_optional_sections() {
    let config = parse("[dataplane]\ninterfaces = [\"eth0\"]\n").expect("minimal config parses");
    assert_eq!(config.dataplane.xdp_mode, XdpModeConfig::Auto);
    assert_eq!(
        config.dataplane.pin_path.as_path(),
        Path::new("/sys/fs/bpf/vipx"),
        "the documented default"
    );
    assert_eq!(config.api.listen, DEFAULT_API_LISTEN.parse().unwrap());
}

#[test]
fn embryonic_and_rst_flows_have_documented_defaults_and_a_checked_share() {
    let config = parse("[dataplane]\ninterfaces = [\"eth0\"]\n").expect("minimal config parses");
    let dataplane = &config.dataplane;
    assert_eq!(dataplane.embryonic_timeout, Duration::from_secs(5));
    assert_eq!(dataplane.embryonic_port_share.get(), 50);
    assert_eq!(dataplane.rst_timeout, Duration::from_secs(10));
    let err = error_of("[dataplane]\ninterfaces = [\"eth0\"]\nembryonic_port_share = 0\n");
    assert!(err.starts_with("/etc/vipx/vipx.toml:3:24: "), "{err}");
    assert!(err.contains("from 1 to 100"), "{err}");
}

#[test]
fn unknown_key_names_file_line_and_column() {
    let text = "[dataplane]\ninterfaces = [\"eth0\"]\n  colour = \"blue\"\n";
    let err = error_of(text);
    assert!(
        err.starts_with("/etc/vipx/vipx.toml:3:3: "),
        "error should point at line 3 column 3: {err}"
    );
    assert!(err.contains("colour"), "error should name the key: {err}");
}

#[test]
fn wrong_type_names_line_and_column() {
    let text = "[dataplane]\ninterfaces = [\"eth0\"]\n[api]\nlisten = 9000\n";
    let err = error_of(text);
    assert!(err.starts_with("/etc/vipx/vipx.toml:4:10: "), "{err}");
}

#[test]
fn bad_enum_value_and_bad_interface_are_located() {
    let err = error_of("[dataplane]\ninterfaces = [\"eth0\"]\nxdp_mode = \"turbo\"\n");
    assert!(err.starts_with("/etc/vipx/vipx.toml:3:12: "), "{err}");
    let err = error_of("[dataplane]\ninterfaces = [\"a-very-long-interface-name\"]\n");
    assert!(err.starts_with("/etc/vipx/vipx.toml:2:14: "), "{err}");
    assert!(err.contains("1 to 15 bytes"), "{err}");
}

#[test]
fn a_pin_path_must_be_an_absolute_directory() {
    for bad in ["vipx", "/", "/sys/fs/bpf/../vipx", "/sys/fs/bpf/./vipx", ""] {
        let text = format!("[dataplane]\ninterfaces = [\"eth0\"]\npin_path = \"{bad}\"\n");
        let err = error_of(&text);
        assert!(
            err.starts_with("/etc/vipx/vipx.toml:3:12: "),
            "{bad:?}: the error points at the value: {err}"
        );
        assert!(err.contains("pin_path"), "{bad:?}: {err}");
    }
    let text = "[dataplane]\ninterfaces = [\"eth0\"]\npin_path = 7\n";
    assert!(error_of(text).starts_with("/etc/vipx/vipx.toml:3:12: "));
}

#[test]
fn semantic_errors_are_located() {
    let err = error_of("[api]\nlisten = \"127.0.0.1:1\"\n[dataplane]\n interfaces = []\n");
    assert!(err.starts_with("/etc/vipx/vipx.toml:4:2: "), "{err}");
    let err = error_of("[dataplane]\ninterfaces = [\"eth0\", \"eth0\"]\n");
    assert!(err.contains("listed twice"), "{err}");
    assert!(err.starts_with("/etc/vipx/vipx.toml:2:1: "), "{err}");
}

#[test]
fn missing_section_is_reported() {
    let err = error_of("[node]\nname = \"x\"\n");
    assert!(err.contains("dataplane"), "{err}");
    assert!(err.starts_with("/etc/vipx/vipx.toml:1:1: "), "{err}");
}

#[test]
fn line_column_counts_characters() {
    assert_eq!(line_column("ab\ncé d", 7), (2, 4));
    assert_eq!(line_column("", 0), (1, 1));
}

#[test]
fn example_config_in_the_repository_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/vipx.toml");
    Config::load(&path).expect("config/vipx.toml is valid");
}

#[test]
fn the_examples_commented_sync_section_parses_with_its_documented_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/vipx.toml");
    let example = std::fs::read_to_string(path).expect("read the example");
    // Its commented-out keys and tables from `# [sync]` on, uncommented.
    let start = example.find("# [sync]\n").expect("a commented [sync]");
    let sync: String = example[start..]
        .lines()
        .map_while(|line| line.strip_prefix("# ").or(line.strip_prefix('#')))
        .filter(|line| {
            line.starts_with('[')
                || line
                    .split_once(" = ")
                    .is_some_and(|(key, _)| key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let config = parse(&format!("{GOOD}\n{sync}")).expect("the example's [sync] parses");
    let sync = config.sync.expect("on");
    assert_eq!(sync.ack, AckLevel::Once);
    assert_eq!(sync.handover_wait, std::time::Duration::from_secs(1));
    assert_eq!(sync.ready_timeout, std::time::Duration::from_secs(3));
    let tls = sync.tls.expect("[sync.tls]");
    assert_eq!(tls.ca_file, Path::new("/etc/vipx/tls/ca.pem"));
}

const GROUP: &str =
    "[[group]]\nname = \"pg\"\nvrid = 51\ninterface = \"eth0\"\nvips = [\"10.0.0.100/24\"]\n";

fn with_service(service: &str) -> String {
    format!("[dataplane]\ninterfaces = [\"eth0\"]\n{GROUP}[[service]]\n{service}")
}

const BACKENDS: &str = "backends = [{ address = \"10.0.0.31\", port = 6432 }]\n";

#[test]
fn a_service_and_its_group_parse() {
    let text = with_service(&format!(
        "name = \"pgb\"\nvip = \"10.0.0.100\"\nport = 5432\n{BACKENDS}"
    ));
    let config = parse(&text).expect("service parses");
    let service = config.services[0].get_ref();
    assert_eq!(service.mode, Mode::Nat);
    assert_eq!(service.protocol, Protocol::Tcp);
    assert_eq!(service.maglev_size, DEFAULT_MAGLEV_SIZE);
    assert_eq!(service.backends[0].weight, 1);
    assert_eq!(config.service_group(service), Some(0));
    assert_eq!(config.groups[0].get_ref().state, InitialState::Backup);
}

#[test]
fn service_errors_point_at_the_service() {
    let cases = [
        ("name = \"a\"\nvip = \"10.0.0.99\"\nport = 5432\n".to_owned() + BACKENDS, "no [[group]] holds the VIP"),
        ("name = \"a\"\nvip = \"10.0.0.100\"\nport = 5432\ngroup = \"nope\"\n".to_owned() + BACKENDS, "group nope is not defined"),
        ("name = \"a\"\nvip = \"10.0.0.100\"\nport = 5432\nmaglev_size = 65536\n".to_owned() + BACKENDS, "must be a prime"),
        ("name = \"a\"\nvip = \"10.0.0.100\"\nport = 5432\nmode = \"dsr\"\n".to_owned() + BACKENDS, "dsr cannot change the port"),
        ("name = \"a\"\nvip = \"10.0.0.100\"\nport = 5432\nbackends = []\n".to_owned(), "at least one backend"),
        ("name = \"a\"\nvip = \"10.0.0.100\"\nport = 5432\nbackends = [{ address = \"fd00::1\" }]\n".to_owned(), "address family"),
    ];
    for (service, expected) in cases {
        let err = error_of(&with_service(&service));
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
        assert!(err.starts_with("/etc/vipx/vipx.toml:"), "{err}");
    }
}

#[test]
fn bad_values_inside_a_service_are_located() {
    let text = with_service(&format!(
        "name = \"a\"\nvip = \"10.0.0.100\"\nport = 5432\nnat_ports = \"80-90\"\n{BACKENDS}"
    ));
    let err = error_of(&text);
    assert!(err.starts_with("/etc/vipx/vipx.toml:12:13: "), "{err}");
    assert!(err.contains("port range"), "{err}");
    let text = "[dataplane]\ninterfaces = [\"eth0\"]\n[[group]]\nname = \"pg\"\nvrid = 51\ninterface = \"eth0\"\nvips = [\"10.0.0.100\"]\n";
    let err = error_of(text);
    assert!(err.starts_with("/etc/vipx/vipx.toml:7:"), "{err}");
    assert!(err.contains("prefix length"), "{err}");
}

#[test]
fn duplicate_groups_and_services_are_rejected() {
    let twice = format!("[dataplane]\ninterfaces = [\"eth0\"]\n{GROUP}{GROUP}");
    assert!(error_of(&twice).contains("used twice"));
    let service = format!("name = \"a\"\nvip = \"10.0.0.100\"\nport = 5432\n{BACKENDS}");
    let text = format!(
        "{}[[service]]\n{}",
        with_service(&service),
        service.replace("\"a\"", "\"b\"")
    );
    assert!(error_of(&text).contains("already a service"));
    // Another group (its own name and VRID) with the first one's VIP.
    let other = GROUP
        .replace("\"pg\"", "\"pg2\"")
        .replace("vrid = 51", "vrid = 52");
    let shared = format!("[dataplane]\ninterfaces = [\"eth0\"]\n{GROUP}{other}");
    let err = error_of(&shared);
    assert!(
        err.contains("group pg2: VIP 10.0.0.100 is already in group pg"),
        "{err}"
    );
}

#[test]
fn lease_refresh_must_be_shorter_than_the_lease() {
    let text = "[dataplane]\ninterfaces = [\"eth0\"]\nlease_timeout = \"10ms\"\nlease_refresh = \"20ms\"\n";
    let err = error_of(text);
    assert!(err.contains("lease_refresh"), "{err}");
    assert!(err.starts_with("/etc/vipx/vipx.toml:4:1: "), "{err}");
}

#[test]
fn election_settings_are_checked() {
    let group = |extra: &str| {
        format!(
            "[dataplane]\ninterfaces = [\"eth0\"]\n[[group]]\nname = \"pg\"\nvrid = 51\ninterface = \"eth0\"\nvips = [\"10.0.0.100/24\"]\n{extra}"
        )
    };
    let config = parse(&group("")).expect("defaults");
    let g = config.groups[0].get_ref();
    assert_eq!(g.election, Election::Vrrp);
    assert_eq!(g.advert_interval, std::time::Duration::from_secs(1));
    assert!(g.preempt);
    assert_eq!(g.priority, 100);
    assert!(error_of(&group("advert_interval = \"15ms\"\n")).contains("whole centiseconds"));
    assert!(error_of(&group("advert_interval = \"5ms\"\n")).contains("whole centiseconds"));
    assert!(error_of(&group("priority = 0\n")).contains("priority must be 1-255"));
}

#[test]
fn heartbeat_settings_are_checked() {
    let group = |extra: &str| {
        format!(
            "[dataplane]\ninterfaces = [\"eth0\"]\n[[group]]\nname = \"pg\"\nvrid = 51\ninterface = \"eth0\"\nvips = [\"10.0.0.100/24\"]\n{extra}"
        )
    };
    let off = parse(&group("")).expect("defaults");
    assert_eq!(
        off.groups[0].get_ref().heartbeat_interval,
        None,
        "off by default"
    );
    assert_eq!(off.groups[0].get_ref().heartbeat_detect(), None);
    assert_eq!(off.node.heartbeat_port, 7374, "default port");
    let peers = "unicast_peers = [\"10.0.0.12\"]\n";
    let on = parse(&group(&format!(
        "{peers}heartbeat_interval = \"2ms\"\nheartbeat_multiplier = 4\n"
    )))
    .expect("heartbeat with peers");
    assert_eq!(
        on.groups[0].get_ref().heartbeat_detect(),
        Some(std::time::Duration::from_millis(8)),
        "4 x 2 ms"
    );
    assert_eq!(
        on.groups[0].get_ref().heartbeat_dampening,
        std::time::Duration::from_secs(30),
        "dampening on by default, 30 s half-life"
    );
    let undamped = parse(&group(&format!(
        "{peers}heartbeat_interval = \"2ms\"\nheartbeat_dampening = \"0s\"\n"
    )))
    .expect("dampening off");
    assert!(undamped.groups[0].get_ref().heartbeat_dampening.is_zero());
    let cases = [
        (
            "heartbeat_interval = \"1ms\"\n".to_owned(),
            "needs unicast_peers",
        ),
        (
            format!("{peers}heartbeat_interval = \"500us\"\n"),
            "1ms to 10s",
        ),
        (
            format!("{peers}heartbeat_interval = \"1ms\"\nheartbeat_multiplier = 0\n"),
            "heartbeat_multiplier",
        ),
        (
            format!("{peers}heartbeat_interval = \"1ms\"\nelection = \"static\"\n"),
            "election = \"vrrp\"",
        ),
        (
            format!("{peers}heartbeat_interval = \"1ms\"\nheartbeat_dampening = \"2h\"\n"),
            "heartbeat_dampening must be 0s (off) to 1h",
        ),
    ];
    for (extra, expected) in cases {
        let err = error_of(&group(&extra));
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
        assert!(
            err.starts_with("/etc/vipx/vipx.toml:3:1: "),
            "located at the group: {err}"
        );
    }
    let text = "[node]\nheartbeat_port = 0\n[dataplane]\ninterfaces = [\"eth0\"]\n";
    let err = error_of(text);
    assert!(err.contains("heartbeat_port"), "{err}");
    assert!(err.starts_with("/etc/vipx/vipx.toml:2:1: "), "{err}");
}

#[test]
fn a_vrrp_group_elects_over_the_family_of_its_vips() {
    let group = |vips: &str, extra: &str| {
        format!(
            "[dataplane]\ninterfaces = [\"eth0\"]\n[[group]]\nname = \"pg6\"\nvrid = 52\ninterface = \"eth0\"\nvips = [{vips}]\n{extra}"
        )
    };
    let v6 =
        parse(&group("\"fd00::100/64\", \"fd00::101/64\"", "")).expect("an IPv6 VRRP group parses");
    assert_eq!(v6.groups[0].get_ref().election, Election::Vrrp);
    parse(&group(
        "\"fd00::100/64\"",
        "unicast_peers = [\"fd00::12\", \"fd00::13\"]\n",
    ))
    .expect("global IPv6 peers");
    parse(&group(
        "\"fd00::100/64\"",
        "unicast_peers = [\"fe80::12\"]\n",
    ))
    .expect("link-local IPv6 peers");

    let mixed = error_of(&group("\"10.0.0.100/24\", \"fd00::100/64\"", ""));
    assert!(mixed.contains("group pg6"), "names the group: {mixed}");
    assert!(mixed.contains("one address family per group"), "{mixed}");
    parse(&group(
        "\"10.0.0.100/24\", \"fd00::100/64\"",
        "election = \"static\"\n",
    ))
    .expect("a static group may hold both families");

    let err = error_of(&group(
        "\"fd00::100/64\"",
        "unicast_peers = [\"10.0.0.12\"]\n",
    ));
    assert!(err.contains("group pg6"), "names the group: {err}");
    assert!(
        err.contains("unicast peer 10.0.0.12 is IPv4 but the group's VIPs are IPv6"),
        "{err}"
    );
    let err = error_of(&group(
        "\"10.0.0.100/24\"",
        "unicast_peers = [\"fd00::12\"]\n",
    ));
    assert!(
        err.contains("unicast peer fd00::12 is IPv6 but the group's VIPs are IPv4"),
        "{err}"
    );
    let err = error_of(&group(
        "\"fd00::100/64\"",
        "unicast_peers = [\"fe80::12\", \"fd00::13\"]\n",
    ));
    assert!(err.contains("mixes link-local and global"), "{err}");
    assert!(err.starts_with("/etc/vipx/vipx.toml:"), "located: {err}");
}

#[test]
fn announcements_follow_the_garp_settings() {
    let text = "[dataplane]\ninterfaces = [\"eth0\"]\n[[group]]\nname = \"pg\"\nvrid = 51\ninterface = \"eth0\"\nvips = [\"10.0.0.100/24\"]\n";
    let announce = parse(text).expect("defaults").groups[0]
        .get_ref()
        .announce();
    assert_eq!(
        (announce.count, announce.interval, announce.refresh),
        (5, std::time::Duration::from_millis(10), None)
    );
    let tuned =
        format!("{text}garp_repeat = 2\ngarp_interval = \"50ms\"\ngarp_refresh = \"30s\"\n");
    let announce = parse(&tuned).expect("tuned").groups[0].get_ref().announce();
    assert_eq!(announce.count, 2);
    assert_eq!(announce.interval, std::time::Duration::from_millis(50));
    assert_eq!(announce.refresh, Some(std::time::Duration::from_secs(30)));
    assert!(error_of(&format!("{text}garp_repeat = 0\n")).contains("garp_repeat"));
}

#[test]
fn track_service_names_a_service() {
    let base = "[dataplane]\ninterfaces = [\"eth0\"]\n[[group]]\nname = \"pg\"\nvrid = 51\ninterface = \"eth0\"\nvips = [\"10.0.0.100/24\"]\n";
    let service =
        format!("[[service]]\nname = \"pgb\"\nvip = \"10.0.0.100\"\nport = 5432\n{BACKENDS}");
    let ok = format!("{base}[[group.track_service]]\nname = \"pgb\"\n{service}");
    let config = parse(&ok).expect("a tracked service parses");
    let track = &config.groups[0].get_ref().track_service[0];
    assert_eq!(
        (track.name.as_str(), track.weight),
        ("pgb", 0),
        "weight 0 by default"
    );
    let unknown = format!("{base}[[group.track_service]]\nname = \"nope\"\n{service}");
    let err = error_of(&unknown);
    assert!(err.contains("track_service nope: no [[service]]"), "{err}");
    assert!(
        err.starts_with("/etc/vipx/vipx.toml:3:1: "),
        "at the group: {err}"
    );
}

#[test]
fn sync_is_off_unless_configured_and_names_its_secret_file() {
    assert_eq!(parse(GOOD).expect("good").sync, None, "no [sync]: off");
    let text = format!(
        "{GOOD}\n[sync]\nlisten = \"10.0.0.1:9470\"\npeers = [\"10.0.0.2:9470\"]\nsecret_file = \"/etc/vipx/cluster.secret\"\n"
    );
    let sync = parse(&text).expect("[sync] parses").sync.expect("on");
    assert_eq!(sync.listen, "10.0.0.1:9470".parse().unwrap());
    assert_eq!(sync.peers, vec!["10.0.0.2:9470".parse().unwrap()]);
    assert_eq!(sync.secret_file, Path::new("/etc/vipx/cluster.secret"));
}

#[test]
fn sync_errors_point_at_the_key() {
    // The error is on the `peers` line, column 1.
    let own = format!(
        "{GOOD}\n[sync]\nlisten = \"10.0.0.1:9470\"\npeers = [\"10.0.0.1:9470\"]\nsecret_file = \"/s\"\n"
    );
    let err = error_of(&own);
    let peers_line = own[..own.find("peers =").expect("a peers line")]
        .matches('\n')
        .count()
        + 1;
    assert!(
        err.starts_with(&format!("/etc/vipx/vipx.toml:{peers_line}:1: ")),
        "{err}"
    );
    assert!(err.contains("does not replicate to itself"), "{err}");
    let twice = format!(
        "{GOOD}\n[sync]\nlisten = \"10.0.0.1:9470\"\npeers = [\"10.0.0.2:9470\", \"10.0.0.2:9470\"]\nsecret_file = \"/s\"\n"
    );
    assert!(
        error_of(&twice).contains("listed twice"),
        "{}",
        error_of(&twice)
    );
    let inline = format!("{GOOD}\n[sync]\nlisten = \"10.0.0.1:9470\"\nsecret = \"hunter2\"\n");
    let err = error_of(&inline);
    assert!(err.contains("secret"), "an inline secret is no key: {err}");
    assert!(
        !err.contains("hunter2"),
        "and the error does not repeat it: {err}"
    );
}

#[test]
fn sync_acks_once_and_waits_a_second_at_handover_by_default() {
    let base = format!(
        "{GOOD}\n[sync]\nlisten = \"10.0.0.1:9470\"\npeers = [\"10.0.0.2:9470\"]\nsecret_file = \"/s\"\n"
    );
    let sync = parse(&base).expect("parses").sync.expect("on");
    assert_eq!(sync.ack, AckLevel::Once, "today's behaviour");
    assert_eq!(sync.handover_wait, std::time::Duration::from_secs(1));
    assert_eq!(sync.tls, None, "plain TCP without [sync.tls]");
    for (word, level) in [
        ("none", AckLevel::None),
        ("once", AckLevel::Once),
        ("quorum", AckLevel::Quorum),
    ] {
        let text = format!("{base}ack = \"{word}\"\nhandover_wait = \"250ms\"\n");
        let sync = parse(&text).expect("parses").sync.expect("on");
        assert_eq!((sync.ack, sync.ack.as_str()), (level, word));
        assert_eq!(sync.handover_wait, std::time::Duration::from_millis(250));
    }
    let text = format!("{base}ack = \"all\"\n");
    let err = error_of(&text);
    let line = text.lines().count();
    assert!(
        err.starts_with(&format!("/etc/vipx/vipx.toml:{line}:7: ")),
        "at the value: {err}"
    );
    assert!(
        err.contains("none") && err.contains("quorum"),
        "says the levels: {err}"
    );
    let text = format!("{base}handover_wait = \"11s\"\n");
    let err = error_of(&text);
    assert!(
        err.starts_with(&format!("/etc/vipx/vipx.toml:{}:1: ", text.lines().count())),
        "{err}"
    );
    assert!(err.contains("sync.handover_wait: at most 10s"), "{err}");
}

#[test]
fn sync_tls_names_three_files_and_errors_point_at_the_key() {
    let base = format!(
        "{GOOD}\n[sync]\nlisten = \"10.0.0.1:9470\"\npeers = [\"10.0.0.2:9470\"]\nsecret_file = \"/s\"\n\n[sync.tls]\n"
    );
    let files = "cert_file = \"/etc/vipx/tls/node.pem\"\nkey_file = \"/etc/vipx/tls/node.key\"\nca_file = \"/etc/vipx/tls/ca.pem\"\n";
    let sync = parse(&format!("{base}{files}"))
        .expect("parses")
        .sync
        .expect("on");
    assert_eq!(
        sync.tls,
        Some(SyncTls {
            cert_file: "/etc/vipx/tls/node.pem".into(),
            key_file: "/etc/vipx/tls/node.key".into(),
            ca_file: "/etc/vipx/tls/ca.pem".into(),
        })
    );

    let missing = format!("{base}cert_file = \"/c\"\nkey_file = \"/k\"\n");
    let err = error_of(&missing);
    assert!(err.contains("missing field `ca_file`"), "{err}");
    assert!(err.starts_with("/etc/vipx/vipx.toml:"), "located: {err}");

    let empty = format!("{base}{}", files.replace("/etc/vipx/tls/node.key", ""));
    let err = error_of(&empty);
    let line = empty[..empty.find("key_file").expect("a key_file line")]
        .matches('\n')
        .count()
        + 1;
    assert!(
        err.starts_with(&format!(
            "/etc/vipx/vipx.toml:{line}:1: sync.tls.key_file: a path is needed"
        )),
        "{err}"
    );

    let unknown = format!("{base}{files}password = \"x\"\n");
    let err = error_of(&unknown);
    assert!(err.contains("unknown field `password`"), "{err}");
}
