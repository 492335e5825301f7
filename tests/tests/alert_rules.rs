//! The Prometheus alert rules (`config/prometheus/vipx-rules.yml`): valid
//! for `promtool check rules`, and each alert fires on the series of its
//! unit test (`vipx-rules.test.yml`) and not on a healthy cluster's.

use std::{path::Path, process::Command};

fn promtool(args: &[&str]) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/prometheus");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|err| {
            panic!("promtool (Debian's prometheus, installed by `cargo xtask setup`): {err}")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn the_alert_rules_are_valid_and_their_unit_tests_pass() {
    let checked = promtool(&["check", "rules", "vipx-rules.yml"]);
    assert!(checked.contains("SUCCESS: 12 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "vipx-rules.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}
