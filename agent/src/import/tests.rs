//! The import, on configurations written the way the users' set-up guide
//! describes (two keepalived nodes at priority 101 and 100 holding
//! 10.0.1.100/24 on eth0; HAProxy in TCP mode on :5432 in front of three
//! PgBouncers on 10.0.1.10:6432-6434; stats on :8404) and on keepalived's
//! and HAProxy's documented syntax variants.

use std::path::Path;

use super::convert;
use crate::config::{CheckKind, Config, Election};

/// keepalived-master.conf as the guide sets it up.
const KEEPALIVED_MASTER: &str =
    include_str!("../../../tests/fixtures/import/keepalived-master.conf");

/// haproxy.cfg as the guide sets it up.
const HAPROXY: &str = include_str!("../../../tests/fixtures/import/haproxy.cfg");

fn parse(toml: &str) -> Config {
    Config::parse(Path::new("imported.toml"), toml)
        .unwrap_or_else(|err| panic!("the imported config is refused: {err}\n{toml}"))
}

#[test]
fn the_guides_pair_becomes_a_config_check_config_accepts() {
    let imported = convert(
        Some(("keepalived.conf", KEEPALIVED_MASTER)),
        Some(("haproxy.cfg", HAPROXY)),
    )
    .expect("imported");
    let config = parse(&imported.toml);
    assert_eq!(config.node.name(), "haproxy1", "router_id names the node");
    assert_eq!(config.dataplane.interfaces[0].as_str(), "eth0");
    assert_eq!(
        config.api.listen.port(),
        8404,
        "the stats port serves the API"
    );
    let group = config.groups[0].get_ref();
    assert_eq!(group.name, "VI_1");
    assert_eq!(group.vrid, 51);
    assert_eq!(group.priority, 101);
    assert_eq!(group.election, Election::Vrrp);
    assert_eq!(group.interface.as_str(), "eth0");
    assert_eq!(group.vips[0].to_string(), "10.0.1.100/24");
    assert_eq!(group.advert_interval, std::time::Duration::from_secs(1));
    assert_eq!(group.state, crate::config::InitialState::Master);
    assert_eq!(
        group.notify_master.as_deref(),
        Some(&["/etc/keepalived/notify.sh".to_owned(), "MASTER".to_owned()][..])
    );
    let script = &group.track_script[0];
    assert_eq!(script.command, ["/usr/bin/killall", "-0", "haproxy"]);
    assert_eq!((script.weight, script.fall, script.rise), (2, 2, 1));
    assert_eq!(script.interval, std::time::Duration::from_secs(2));
    let service = config.services[0].get_ref();
    assert_eq!(service.name, "pgbouncer");
    assert_eq!(
        service.vip.to_string(),
        "10.0.1.100",
        "the wildcard bind gets the VIP"
    );
    assert_eq!(service.port, 5432);
    assert_eq!(service.group.as_deref(), Some("VI_1"));
    let backends: Vec<String> = service
        .backends
        .iter()
        .map(|b| format!("{}:{}", b.address, service.backend_port(b)))
        .collect();
    assert_eq!(
        backends,
        ["10.0.1.10:6432", "10.0.1.10:6433", "10.0.1.10:6434"]
    );
    let health = service.health.as_ref().expect("check -> a health check");
    assert_eq!(health.check, CheckKind::Postgres, "option pgsql-check");
    assert_eq!(health.user.as_deref(), Some("pgbouncer"));
    assert_eq!((health.fall, health.rise), (3, 2), "HAProxy's defaults");
    let notes = imported.notes.join("\n");
    for expected in [
        "keepalived.conf:22: vrrp_instance VI_1 authentication",
        "haproxy.cfg:11: timeout client  30m",
        "haproxy.cfg:9: option tcplog",
        "haproxy.cfg:2: global log",
    ] {
        let expected = expected.replace("  ", " ");
        assert!(
            notes.contains(&expected),
            "note {expected:?} missing:\n{notes}"
        );
    }
    assert!(
        imported.toml.contains("#   keepalived.conf:22:"),
        "the notes head the file:\n{}",
        imported.toml
    );
}

#[test]
fn the_backup_node_and_keepalived_syntax_variants() {
    let keepalived = r#"
vrrp_instance pg
{
    state BACKUP
    interface ens3
    virtual_router_id 52
    priority 100
    advert_int 0.1
    nopreempt
    unicast_src_ip 10.0.1.12
    unicast_peer {
        10.0.1.11
    }
    virtual_ipaddress {
        10.0.1.100 dev ens3 label ens3:vip
        fd00::100/64
    }
    track_interface {
        ens3 weight -20
    }
    notify /usr/local/bin/vip-notify.sh
    garp_master_refresh 60
}
virtual_server 10.0.1.100 6000 {
    delay_loop 3
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 10.0.1.21 6000 {
        weight 3
        TCP_CHECK {
            connect_timeout 2
        }
    }
    real_server 10.0.1.22 6000 {
        weight 1
    }
}
"#;
    let imported = convert(Some(("k.conf", keepalived)), None).expect("imported");
    // Two address families in one instance: vipx refuses that, and says so.
    let err = Config::parse(Path::new("imported.toml"), &imported.toml)
        .expect_err("a v4 and a v6 VIP in one group is refused by vipx")
        .to_string();
    assert!(err.contains("family"), "{err}");
    let fixed = imported.toml.replace(", \"fd00::100/64\"", "");
    let config = parse(&fixed);
    let group = config.groups[0].get_ref();
    assert_eq!(
        group.vips[0].to_string(),
        "10.0.1.100/32",
        "a bare VIP is a host address"
    );
    assert!(!group.preempt, "nopreempt");
    assert_eq!(group.state, crate::config::InitialState::Backup);
    assert_eq!(group.advert_interval, std::time::Duration::from_millis(100));
    assert_eq!(
        group.unicast_peers,
        ["10.0.1.11".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(group.track_interface[0].weight, -20);
    assert_eq!(
        group.notify.as_deref(),
        Some(&["/usr/local/bin/vip-notify.sh".to_owned()][..])
    );
    assert_eq!(group.garp_refresh, Some(std::time::Duration::from_secs(60)));
    let service = config.services[0].get_ref();
    assert_eq!(service.mode, crate::dataplane::Mode::Dsr, "lb_kind DR");
    assert_eq!(service.backends[0].weight, 3);
    let health = service.health.as_ref().expect("TCP_CHECK");
    assert_eq!(health.check, CheckKind::Tcp);
    assert_eq!(
        health.interval,
        std::time::Duration::from_secs(3),
        "delay_loop"
    );
    let notes = imported.notes.join("\n");
    assert!(notes.contains("unicast_src_ip 10.0.1.12"), "{notes}");
    assert!(notes.contains("lb_algo rr"), "{notes}");
}

#[test]
fn haproxy_frontend_backend_and_server_variants() {
    let haproxy = r#"
defaults
    mode tcp
    default-server inter 1s fall 2 rise 3

frontend pg_front
    bind 10.0.1.100:5432
    default_backend pg_pool

backend pg_pool
    balance leastconn
    option httpchk GET /health
    server a 10.0.1.10:6432 check port 8008 weight 10
    server b 10.0.1.11 check
    server c 10.0.1.12:6432 backup
    server d pgb4.example.com:6432 check
    server e 10.0.1.13:6432 disabled
"#;
    let imported = convert(None, Some(("h.cfg", haproxy))).expect("imported");
    // No keepalived.conf: the VIP came from the bind; the group is missing.
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.contains("no vrrp_instance"))
    );
    let service_toml = imported.toml.clone();
    let config = parse(&format!(
        "{service_toml}\n[[group]]\nname = \"pg\"\nvrid = 51\ninterface = \"eth0\"\nvips = [\"10.0.1.100/24\"]\n"
    ));
    let service = config.services[0].get_ref();
    assert_eq!(service.name, "pg_front");
    assert_eq!(service.vip.to_string(), "10.0.1.100");
    let backends: Vec<(String, u16, u32)> = service
        .backends
        .iter()
        .map(|b| (b.address.to_string(), service.backend_port(b), b.weight))
        .collect();
    assert_eq!(
        backends,
        [
            ("10.0.1.10".to_owned(), 6432, 10),
            ("10.0.1.11".to_owned(), 5432, 1),
            ("10.0.1.13".to_owned(), 6432, 0),
        ],
        "a server without a port takes the bind's; backup and named servers are left out"
    );
    let health = service.health.as_ref().expect("check");
    assert_eq!(health.check, CheckKind::Http);
    assert_eq!(health.path.as_deref(), Some("/health"));
    assert_eq!(health.port, Some(8008));
    assert_eq!(
        health.interval,
        std::time::Duration::from_secs(1),
        "default-server inter"
    );
    assert_eq!((health.fall, health.rise), (2, 3));
    let notes = imported.notes.join("\n");
    for expected in [
        "balance leastconn",
        "server c backup",
        "pgb4.example.com",
        "server e disabled",
    ] {
        assert!(notes.contains(expected), "{expected} in notes:\n{notes}");
    }
}

#[test]
fn broken_files_are_refused_with_their_line() {
    let err = convert(
        Some(("k.conf", "vrrp_instance x {\n  state MASTER\n")),
        None,
    )
    .expect_err("unclosed block")
    .to_string();
    assert_eq!(err, "k.conf:1: this block's `{` is never closed");
    let err = convert(Some(("k.conf", "}\n")), None)
        .expect_err("stray brace")
        .to_string();
    assert_eq!(err, "k.conf:1: a `}` closes no block");
    let err = convert(
        Some((
            "k.conf",
            "vrrp_instance x {\n  interface eth0\n  virtual_router_id 300\n}\n",
        )),
        None,
    )
    .expect_err("bad vrid")
    .to_string();
    assert_eq!(err, "k.conf:3: virtual_router_id 300: not 1-255");
}
