//! The notify hooks, run for real: shell scripts that append to a file.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::*;
use crate::events::GroupState;

/// A scratch directory, removed on drop (also on panic).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vipx-notify-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }
    fn log(&self) -> PathBuf {
        self.0.join("log")
    }
    fn read(&self) -> Vec<String> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A hook that appends its arguments, one line per call, to `log`.
fn echo(log: &Path, word: &str) -> String {
    format!(
        r#"["/bin/sh", "-c", "echo {word} \"$@\" $VIPX_STATE >> {}", "hook"]"#,
        log.display()
    )
}

/// A config of one group `pg` with `group_keys`, as text.
fn config_text(group_keys: &str) -> String {
    format!(
        r#"
[dataplane]
interfaces = ["eth0"]

[[group]]
name = "pg"
vrid = 51
interface = "eth0"
vips = ["10.0.1.100/24"]
priority = 101
{group_keys}
"#
    )
}

fn config(group_keys: &str) -> Config {
    Config::parse(Path::new("/etc/vipx/vipx.toml"), &config_text(group_keys))
        .expect("test config parses")
}

fn record(events: &EventLog, from: Option<GroupState>, to: GroupState) {
    events.record(EventKind::Group, "pg", from, to, "test");
}

/// Waits, bounded, until `scratch` holds `lines` lines.
async fn lines(scratch: &Scratch, lines: usize) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let got = scratch.read();
        if got.len() >= lines || Instant::now() > until {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn hooks_run_in_the_order_of_the_changes_with_keepalived_arguments() {
    let scratch = Scratch::new("order");
    let log = scratch.log();
    let config = config(&format!(
        "notify_master = {}\nnotify_backup = {}\nnotify_fault = {}\nnotify_stop = {}\nnotify = {}\n",
        echo(&log, "master"),
        echo(&log, "backup"),
        echo(&log, "fault"),
        echo(&log, "stop"),
        echo(&log, "generic"),
    ));
    let events = EventLog::default();
    let (notifier, _) = Notifier::start(&config, &events, |_| Some(90)).expect("notifier");
    record(&events, None, GroupState::Backup);
    record(&events, Some(GroupState::Backup), GroupState::Master);
    record(&events, None, GroupState::Fault);
    // Not a group: no hook.
    events.record(EventKind::Health, "pg", None, GroupState::Master, "test");
    notifier.stop().await;
    // keepalived: `notify` gets INSTANCE, the name, the state and the
    // priority; the state's own hook gets its configured arguments.
    assert_eq!(
        scratch.read(),
        [
            "backup BACKUP",
            "generic INSTANCE pg BACKUP 90 BACKUP",
            "master MASTER",
            "generic INSTANCE pg MASTER 90 MASTER",
            "fault FAULT",
            "generic INSTANCE pg FAULT 90 FAULT",
            "stop STOP",
            "generic INSTANCE pg STOP 90 STOP",
        ],
        "hooks in the order of the changes"
    );
}

#[tokio::test]
async fn a_slow_hook_holds_up_nobody_and_is_killed_at_its_timeout() {
    let scratch = Scratch::new("slow");
    let log = scratch.log();
    let config = config(&format!(
        "notify_master = [\"/bin/sh\", \"-c\", \"sleep 30\"]\nnotify_backup = {}\nnotify_timeout = \"300ms\"\n",
        echo(&log, "backup")
    ));
    let events = EventLog::default();
    let (notifier, collectors) = Notifier::start(&config, &events, |_| None).expect("notifier");
    let registry = prometheus::Registry::new();
    for collector in collectors {
        registry.register(collector).expect("register");
    }
    let started = Instant::now();
    record(&events, None, GroupState::Master);
    record(&events, Some(GroupState::Master), GroupState::Backup);
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "recording a change waits for no hook ({:?})",
        started.elapsed()
    );
    // The backup hook runs once the master hook is killed.
    let got = lines(&scratch, 1).await;
    assert_eq!(got, ["backup BACKUP"], "the next hook ran after the kill");
    let failures = notifier
        .counters
        .failures
        .with_label_values(&["pg", "notify_master"])
        .get();
    assert_eq!(failures, 1, "the killed hook counts as failed");
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .expect("encode");
    assert!(
        text.contains(r#"vipx_notify_failures_total{group="pg",hook="notify_master"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"vipx_notify_failures_total{group="pg",hook="notify_fault"} 0"#),
        "series exist from the start: {text}"
    );
    notifier.stop().await;
}

#[tokio::test]
async fn a_hook_that_fails_or_cannot_start_is_counted() {
    let config = config(
        "notify_master = [\"/bin/false\"]\nnotify_backup = [\"/nonexistent/vipx-hook\"]\nnotify_fault = [\"/bin/true\"]\n",
    );
    let events = EventLog::default();
    let (notifier, _) = Notifier::start(&config, &events, |_| None).expect("notifier");
    record(&events, None, GroupState::Master);
    record(&events, None, GroupState::Backup);
    record(&events, None, GroupState::Fault);
    let counters = notifier.counters.clone();
    notifier.stop().await;
    let get = |v: &IntCounterVec, hook: &str| v.with_label_values(&["pg", hook]).get();
    assert_eq!(get(&counters.runs, "notify_master"), 1);
    assert_eq!(
        get(&counters.failures, "notify_master"),
        1,
        "exit 1 is a failure"
    );
    assert_eq!(
        get(&counters.failures, "notify_backup"),
        1,
        "a missing program is a failure"
    );
    assert_eq!(get(&counters.runs, "notify_fault"), 1);
    assert_eq!(
        get(&counters.failures, "notify_fault"),
        0,
        "exit 0 is no failure"
    );
}

#[test]
fn an_empty_hook_is_refused_by_the_config_check() {
    let text = config_text("notify_master = []");
    let err = Config::parse(Path::new("/etc/vipx/vipx.toml"), &text)
        .expect_err("an empty command is refused")
        .to_string();
    assert!(err.contains("notify_master"), "{err}");
    assert!(
        err.contains("/etc/vipx/vipx.toml:"),
        "names the file: {err}"
    );
}
