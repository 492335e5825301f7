use super::*;
use crate::{
    api::wire::{
        BackendStatus, CounterKind, GroupStatus, NamedCounter, PeerStatus, ServiceStatus,
        XdpAttachment,
    },
    cluster::wire::NodesReport,
    dataplane::{AttachedMode, Mode},
};

fn status() -> Status {
    Status {
        node: "lb-1".into(),
        now_unix_ms: 1_000_000,
        version: "0.1.0".into(),
        ha_debug: false,
        uptime_seconds: 3723,
        config_path: "/etc/vipx/vipx.toml".into(),
        xdp: vec![XdpAttachment {
            interface: "eth0".into(),
            mode: AttachedMode::Driver,
        }],
        groups: vec![GroupStatus {
            name: "pg".into(),
            vrid: 51,
            master: false,
            vips: vec!["10.0.0.100/24".into()],
            priority: 90,
            fault: false,
            handed_over: None,
            state: "BACKUP".into(),
            since_unix_ms: Some(1_000_000 - 125_000),
            peers: vec![PeerStatus {
                address: "10.0.0.2".parse().expect("addr"),
                kind: "heartbeat".into(),
                state: "MASTER".into(),
                priority: 100,
                last_heard_ms: 10,
                packets: 500,
            }],
        }],
        services: vec![ServiceStatus {
            name: "pg".into(),
            vip: "10.0.0.100:5432".parse().expect("addr"),
            mode: Mode::Nat,
            packets: 77,
            backends: vec![
                BackendStatus {
                    address: "10.0.0.31:6432".parse().expect("addr"),
                    weight: 100,
                    health: Some("up".into()),
                    drained: false,
                    flows: 3,
                    packets: 40,
                    last_change_unix_ms: None,
                },
                BackendStatus {
                    address: "10.0.0.32:6432".parse().expect("addr"),
                    weight: 0,
                    health: Some("down".into()),
                    drained: true,
                    flows: 0,
                    packets: 37,
                    last_change_unix_ms: Some(1_000_000 - 4_200),
                },
            ],
        }],
        counters: vec![
            NamedCounter {
                kind: CounterKind::Action,
                name: "pass".into(),
                packets: 5,
                bytes: 300,
            },
            NamedCounter {
                kind: CounterKind::Action,
                name: "drop".into(),
                packets: 0,
                bytes: 0,
            },
        ],
        cluster: Some(NodesReport::example()),
    }
}

/// Whether `text` has a row of exactly these whitespace-separated cells.
fn has_row(text: &str, cells: &[&str]) -> bool {
    text.lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == cells)
}

#[test]
fn render_shows_a_row_per_group_peer_and_backend() {
    let text = render(&status());
    assert!(text.contains("uptime     1h02m03s"), "{text}");
    assert!(text.contains("eth0 (driver mode)"), "{text}");
    for cells in [
        &["10.0.0.31:6432", "up", "100", "-", "3", "40", "-"][..],
        &[
            "10.0.0.32:6432",
            "down",
            "0",
            "drained",
            "0",
            "37",
            "4.2s",
            "ago",
        ],
        &[
            "pg",
            "10.0.0.2",
            "heartbeat",
            "MASTER",
            "100",
            "0.0s",
            "ago",
        ],
        &["pg", "51", "BACKUP", "90", "2m05s", "10.0.0.100/24"],
    ] {
        assert!(has_row(&text, cells), "no row {cells:?}: {text}");
    }
    assert!(text.contains("master     pg: 10.0.0.2"), "{text}");
    assert!(
        text.contains("cluster    quorum held: 2 of 3 voters (n2 up, w (witness) DOWN)"),
        "{text}"
    );
    assert!(text.contains("pass"), "{text}");
    assert!(
        !text.contains("drop"),
        "idle counters are not listed: {text}"
    );
}

#[test]
fn spans_read_as_hours_minutes_seconds() {
    assert_eq!(span(4_200), "4.2s");
    assert_eq!(span(125_000), "2m05s");
    assert_eq!(span(3_723_000), "1h02m03s");
}
