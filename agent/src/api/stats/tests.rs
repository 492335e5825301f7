use super::*;
use crate::{
    api::wire::{BackendStatus, GroupStatus, PeerStatus, ServiceStatus},
    dataplane::Mode,
    events::EventKind,
};

fn status() -> Status {
    Status {
        node: "lb-<1>".into(),
        now_unix_ms: 1_767_323_045_678,
        version: "0.1.0".into(),
        ha_debug: false,
        uptime_seconds: 61,
        config_path: "/etc/vipx/vipx.toml".into(),
        xdp: Vec::new(),
        groups: vec![GroupStatus {
            name: "pg".into(),
            vrid: 51,
            master: true,
            vips: vec!["10.0.0.100/24".into()],
            priority: 100,
            fault: false,
            handed_over: None,
            state: "MASTER".into(),
            since_unix_ms: Some(1_767_323_045_678 - 90_000),
            peers: vec![PeerStatus {
                address: "10.0.0.2".parse().expect("addr"),
                kind: "heartbeat".into(),
                state: "BACKUP".into(),
                priority: 90,
                last_heard_ms: 20,
                packets: 12,
            }],
        }],
        services: vec![ServiceStatus {
            name: "pg".into(),
            vip: "10.0.0.100:5432".parse().expect("addr"),
            mode: Mode::Nat,
            packets: 5,
            backends: vec![BackendStatus {
                address: "10.0.0.31:6432".parse().expect("addr"),
                weight: 0,
                health: Some("down".into()),
                drained: true,
                flows: 4,
                packets: 5,
                last_change_unix_ms: Some(1_767_323_045_678 - 3_000),
            }],
        }],
        counters: Vec::new(),
        cluster: Some(crate::cluster::wire::NodesReport::example()),
    }
}

#[test]
fn the_page_shows_groups_peers_backends_and_events_escaped() {
    let events = [Event {
        seq: 3,
        unix_ms: 1_767_323_045_000,
        kind: EventKind::Health,
        subject: "pg 10.0.0.31:6432".into(),
        from: "up".into(),
        to: "down".into(),
        reason: "<script>alert(1)</script> & more".into(),
    }];
    let html = page(&status(), &events);
    assert!(
        html.contains("<meta http-equiv=\"refresh\" content=\"5\">"),
        "{html}"
    );
    assert!(html.contains("vipx-agent on lb-&lt;1&gt;"), "{html}");
    assert!(
        !html.contains("<script>") && !html.contains("lb-<1>"),
        "agent strings are escaped: {html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"),
        "{html}"
    );
    for cells in [
        // group, VRID, state, for, priority, master, VIPs
        "<td>pg</td><td class=\"n\">51</td><td class=\"MASTER\">MASTER</td><td class=\"n\">1m30s</td><td class=\"n\">100</td><td>lb-&lt;1&gt; (this node)</td><td>10.0.0.100/24</td>",
        // peer
        "<td>10.0.0.2</td><td>heartbeat</td><td class=\"BACKUP\">BACKUP</td><td class=\"n\">90</td><td class=\"n\">0.0s ago</td>",
        // backend: health, weight, drain, flows, packets, last change
        "<td>10.0.0.31:6432</td><td class=\"down\">down</td><td class=\"n\">0</td><td class=\"drained\">drained</td><td class=\"n\">4</td><td class=\"n\">5</td><td class=\"n\">3.0s</td>",
        // cluster: the quorum and a voter down
        "quorum <b class=\"MASTER\">held</b>: 2 of 3 voters",
        "<td>w</td><td>witness</td><td>10.0.0.9:9469</td><td class=\"down\">down</td><td class=\"n\">0.0s ago</td>",
        // event
        "<td class=\"n\">3</td><td>2026-01-02T03:04:05.000Z</td><td>health</td><td>pg 10.0.0.31:6432</td><td>up</td><td class=\"down\">down</td>",
    ] {
        assert!(html.contains(cells), "{cells} missing: {html}");
    }
}
