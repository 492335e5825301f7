use std::time::Duration;

use super::*;

const STATES: [&str; 3] = ["up", "degraded", "down"];

fn has(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[test]
fn agent_metrics_render_without_a_dataplane() {
    let metrics = Metrics::new("node-a").expect("metrics");
    metrics.set_attachments(&[("eth0", "generic")]);
    let text = metrics.render();
    assert!(
        text.contains("vipx_build_info{node=\"node-a\""),
        "build info missing: {text}"
    );
    assert!(
        has(
            &text,
            "vipx_xdp_attached{interface=\"eth0\",mode=\"generic\"} 1"
        ),
        "{text}"
    );
}

#[test]
fn a_check_sets_one_health_series_and_counts_the_change_and_the_failure() {
    let metrics = Metrics::new("node-a").expect("metrics");
    metrics.observe_check(&CheckResult {
        service: "pg",
        backend: "10.0.0.1:6432",
        took: Duration::from_millis(3),
        failed: true,
        state: "down",
        states: &STATES,
        changed: true,
    });
    metrics.count_advert("db", AdvertOutcome::Foreign);
    let text = metrics.render();
    for (state, value) in [("up", 0), ("degraded", 0), ("down", 1)] {
        let line = format!(
            "vipx_backend_health{{backend=\"10.0.0.1:6432\",service=\"pg\",state=\"{state}\"}} {value}"
        );
        assert!(has(&text, &line), "{line} missing: {text}");
    }
    for line in [
        "vipx_health_transitions_total{backend=\"10.0.0.1:6432\",service=\"pg\",to=\"down\"} 1",
        "vipx_health_check_failures_total{backend=\"10.0.0.1:6432\",service=\"pg\"} 1",
        "vipx_vrrp_adverts_foreign_total{group=\"db\"} 1",
    ] {
        assert!(has(&text, line), "{line} missing: {text}");
    }
}

#[test]
fn series_exist_at_zero_before_anything_happens() {
    let metrics = Metrics::new("node-a").expect("metrics");
    metrics.set_group_priority("db", 100, false);
    metrics.init_backend("pg", "10.0.0.1:6432", "up", &STATES);
    metrics.retain(&Keep {
        services: ["pg".to_owned()].into(),
        backends: [("pg".to_owned(), "10.0.0.1:6432".to_owned())].into(),
    });
    let text = metrics.render();
    for line in [
        "vipx_vrrp_adverts_sent_total{group=\"db\"} 0",
        "vipx_vrrp_adverts_received_total{group=\"db\"} 0",
        "vipx_vrrp_adverts_invalid_total{group=\"db\"} 0",
        "vipx_vrrp_adverts_foreign_total{group=\"db\"} 0",
        "vipx_group_transitions_total{group=\"db\",to=\"MASTER\"} 0",
        "vipx_group_transitions_total{group=\"db\",to=\"BACKUP\"} 0",
        "vipx_group_transitions_total{group=\"db\",to=\"FAULT\"} 0",
        "vipx_group_master{group=\"db\"} 0",
        "vipx_backend_health{backend=\"10.0.0.1:6432\",service=\"pg\",state=\"up\"} 1",
        "vipx_health_check_failures_total{backend=\"10.0.0.1:6432\",service=\"pg\"} 0",
        "vipx_health_transitions_total{backend=\"10.0.0.1:6432\",service=\"pg\",to=\"down\"} 0",
        "vipx_service_all_backends_down{service=\"pg\"} 0",
        "vipx_service_flows{service=\"pg\"} 0",
        "vipx_flows_held{origin=\"replicated\"} 0",
    ] {
        assert!(has(&text, line), "{line} missing: {text}");
    }
}

#[test]
fn a_reload_removes_the_series_of_what_it_removed() {
    let metrics = Metrics::new("node-a").expect("metrics");
    for (service, backend) in [
        ("pg", "10.0.0.1:6432"),
        ("pg", "10.0.0.2:6432"),
        ("ro", "10.0.0.3:6432"),
    ] {
        metrics.init_backend(service, backend, "up", &STATES);
        metrics.set_flows(service, 1, 1);
    }
    metrics.retain(&Keep {
        services: ["pg".to_owned()].into(),
        backends: [("pg".to_owned(), "10.0.0.1:6432".to_owned())].into(),
    });
    let text = metrics.render();
    assert!(
        text.contains("10.0.0.1:6432"),
        "the kept backend stays: {text}"
    );
    assert!(has(&text, "vipx_service_flows{service=\"pg\"} 1"), "{text}");
    for gone in ["10.0.0.2:6432", "10.0.0.3:6432", "service=\"ro\""] {
        assert!(!text.contains(gone), "{gone} still exported: {text}");
    }
}

#[test]
fn a_rejected_reload_says_so_and_keeps_the_last_success_time() {
    let metrics = Metrics::new("node-a").expect("metrics");
    metrics.set_reload(true);
    let value = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing: {text}"))
    };
    let text = metrics.render();
    assert_eq!(value(&text, "vipx_config_last_reload_successful"), 1.0);
    let applied_at = value(&text, "vipx_config_last_reload_success_timestamp_seconds");
    assert!(applied_at > 1.7e9, "a Unix time: {applied_at}");
    metrics.set_reload(false);
    let text = metrics.render();
    assert_eq!(value(&text, "vipx_config_last_reload_successful"), 0.0);
    assert_eq!(
        value(&text, "vipx_config_last_reload_success_timestamp_seconds"),
        applied_at
    );
}

#[test]
fn a_declared_fence_peer_has_its_series_at_zero_before_any_run() {
    let metrics = Metrics::new("n1").expect("metrics");
    assert!(
        !metrics.render().contains("vipx_fence_runs_total"),
        "no peer, no series"
    );
    metrics.declare_fence_peer("n2");
    let text = metrics.render();
    for result in ["fenced", "failed", "skipped"] {
        let line = format!("vipx_fence_runs_total{{node=\"n2\",result=\"{result}\"}} 0");
        assert!(has(&text, &line), "{line} missing: {text}");
    }
}
