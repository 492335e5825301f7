//! Node-level tracking, as keepalived's `track_interface` and
//! `track_script`, plus `track_service` (every backend of a service down by
//! this node's own checks): failing tracked items change a group's
//! election priority, or put it in FAULT. The election reads the result.

use crate::locks::lock;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    checks::{Check, ExecCheck, Verdict},
    monitor::{self, Prober, Report, Schedule, Target},
    state::Health,
};
use crate::{
    config::Config,
    events::{EventKind, EventLog},
};

/// How often tracked interfaces and services are looked at.
const INTERFACE_POLL: Duration = Duration::from_millis(100);

/// Whether every backend of a service is down by this node's health checks
/// (`track_service`).
pub type ServiceDown = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A group's priority after its tracked items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effective {
    /// The priority to advertise (1-254; 255 stays 255 only untouched).
    pub priority: u8,
    /// A weight-0 item failed: the group must give up MASTER.
    pub fault: bool,
}

/// One tracked item's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub name: String,
    pub weight: i32,
    /// Whether the item is currently failing.
    pub failing: bool,
    /// Scripts: positive weights count while succeeding.
    pub script: bool,
}

/// keepalived's rules: a failing item adds a negative weight; a succeeding
/// script adds a positive one; a failing weight-0 item is a FAULT. The
/// result stays within 1-254 (255 belongs to the address owner and is only
/// kept while nothing changes it).
pub fn effective(base: u8, items: &[Item]) -> Effective {
    let mut delta: i32 = 0;
    let mut fault = false;
    for item in items {
        match (item.failing, item.weight) {
            (true, 0) => fault = true,
            (true, w) if w < 0 => delta += w,
            (false, w) if w > 0 && item.script => delta += w,
            _ => {}
        }
    }
    let priority = if delta == 0 {
        base
    } else {
        u8::try_from((i32::from(base) + delta).clamp(1, 254)).unwrap_or(1)
    };
    Effective { priority, fault }
}

/// The tracked state of every group, shared with the election.
#[derive(Default)]
pub struct Tracking {
    groups: Mutex<HashMap<String, (u8, Vec<Item>)>>,
}

impl Tracking {
    /// A group's effective priority (its base when it tracks nothing).
    pub fn effective(&self, group: &str) -> Option<Effective> {
        let groups = lock(&self.groups);
        groups
            .get(group)
            .map(|(base, items)| effective(*base, items))
    }

    fn set(&self, group: &str, item: &str, failing: bool) -> Option<(Effective, Effective)> {
        let mut groups = lock(&self.groups);
        let (base, items) = groups.get_mut(group)?;
        let before = effective(*base, items);
        let entry = items.iter_mut().find(|i| i.name == item)?;
        entry.failing = failing;
        let after = effective(*base, items);
        (before != after).then_some((before, after))
    }
}

/// Runs the tracked items of every group.
pub struct Tracker {
    pub tracking: Arc<Tracking>,
    tasks: Vec<JoinHandle<()>>,
}

impl Tracker {
    /// Starts tracking what `config` asks for; `on_change(group)` is called
    /// whenever a group's effective priority changes.
    pub fn start(
        config: &Config,
        events: Arc<EventLog>,
        service_down: ServiceDown,
        on_change: impl Fn(&str, Effective) + Send + Sync + 'static,
    ) -> Self {
        let tracking = Arc::new(Tracking::default());
        let on_change = Arc::new(on_change);
        let mut tasks = Vec::new();
        let (tx, mut rx) = mpsc::channel::<(String, String, bool, String)>(256);
        for group in &config.groups {
            let group = group.get_ref();
            let mut items = Vec::new();
            for track in &group.track_interface {
                let name = format!("interface {}", track.name);
                items.push(Item {
                    name: name.clone(),
                    weight: track.weight,
                    failing: false,
                    script: false,
                });
                let iface = track.name.to_string();
                tasks.push(tokio::spawn(watch(
                    group.name.clone(),
                    name,
                    move || !interface_up(&iface),
                    ("link down or no carrier", "link up"),
                    tx.clone(),
                )));
            }
            for track in &group.track_service {
                let name = format!("service {}", track.name);
                items.push(Item {
                    name: name.clone(),
                    weight: track.weight,
                    failing: false,
                    script: false,
                });
                let service = track.name.clone();
                let down = Arc::clone(&service_down);
                tasks.push(tokio::spawn(watch(
                    group.name.clone(),
                    name,
                    move || down(&service),
                    ("every backend is down", "a backend is up again"),
                    tx.clone(),
                )));
            }
            for script in &group.track_script {
                let name = format!("script {}", script.name);
                items.push(Item {
                    name: name.clone(),
                    weight: script.weight,
                    failing: false,
                    script: true,
                });
                tasks.push(tokio::spawn(watch_script(
                    group.name.clone(),
                    name,
                    script.command.clone(),
                    Schedule {
                        interval: script.interval,
                        timeout: script.timeout,
                        jitter: script.interval / 10,
                        rise: script.rise,
                        fall: script.fall,
                    },
                    tx.clone(),
                )));
            }
            lock(&tracking.groups).insert(group.name.clone(), (group.priority, items));
        }
        let shared = Arc::clone(&tracking);
        tasks.push(tokio::spawn(async move {
            while let Some((group, item, failing, reason)) = rx.recv().await {
                if let Some((before, after)) = shared.set(&group, &item, failing) {
                    events.record(
                        EventKind::Track,
                        &format!("{group} {item}"),
                        Some(before),
                        after,
                        &reason,
                    );
                    on_change(&group, after);
                }
            }
        }));
        Self { tracking, tasks }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl std::fmt::Display for Effective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.fault {
            write!(f, "FAULT (priority {})", self.priority)
        } else {
            write!(f, "priority {}", self.priority)
        }
    }
}

/// Whether an interface is up, with carrier (`/sys/class/net`, as the
/// agent's own network namespace shows it).
pub fn interface_up(name: &str) -> bool {
    let read = |file: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{name}/{file}")).unwrap_or_default()
    };
    let oper = read("operstate");
    let carrier = read("carrier").trim() == "1";
    matches!(oper.trim(), "up" | "unknown") && carrier
}

/// Polls `failing` every [`INTERFACE_POLL`] and reports its changes, with
/// `reasons` (failing, recovered).
async fn watch(
    group: String,
    item: String,
    failing: impl Fn() -> bool + Send + 'static,
    reasons: (&'static str, &'static str),
    tx: mpsc::Sender<(String, String, bool, String)>,
) {
    let mut was_failing = false;
    let mut tick = tokio::time::interval(INTERFACE_POLL);
    loop {
        tick.tick().await;
        let now_failing = failing();
        if now_failing != was_failing {
            was_failing = now_failing;
            let reason = if now_failing { reasons.0 } else { reasons.1 };
            if tx
                .send((group.clone(), item.clone(), now_failing, reason.to_owned()))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

async fn watch_script(
    group: String,
    item: String,
    command: Vec<String>,
    schedule: Schedule,
    tx: mpsc::Sender<(String, String, bool, String)>,
) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let target = Target {
        service: group.clone(),
        backend: addr,
        check_addr: addr,
    };
    let prober: Arc<dyn Prober> = Arc::new(Check::Exec(ExecCheck { command }));
    let (reports, mut rx) = mpsc::channel::<Report>(16);
    let runner = tokio::spawn(monitor::run(target, prober, schedule, Health::Up, reports));
    while let Some(report) = rx.recv().await {
        if report.changed_from.is_none() {
            continue;
        }
        let reason = match &report.verdict {
            Verdict::Down { reason } | Verdict::Degraded { reason } => reason.clone(),
            Verdict::Up => "exit status 0".to_owned(),
        };
        if tx
            .send((
                group.clone(),
                item.clone(),
                report.health == Health::Down,
                reason,
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    runner.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(weight: i32, failing: bool, script: bool) -> Item {
        Item {
            name: format!("i{weight}"),
            weight,
            failing,
            script,
        }
    }

    #[test]
    fn failing_items_lower_the_priority_like_keepalived() {
        let base = 100;
        assert_eq!(
            effective(base, &[]),
            Effective {
                priority: 100,
                fault: false
            }
        );
        assert_eq!(effective(base, &[item(-30, true, false)]).priority, 70);
        assert_eq!(effective(base, &[item(-30, false, false)]).priority, 100);
        assert_eq!(
            effective(base, &[item(-30, true, true), item(-50, true, false)]).priority,
            20
        );
        assert_eq!(
            effective(base, &[item(-200, true, false)]).priority,
            1,
            "never below 1"
        );
        assert_eq!(
            effective(250, &[item(20, false, true)]).priority,
            254,
            "never 255 by weights"
        );
        assert_eq!(
            effective(base, &[item(20, false, true)]).priority,
            120,
            "a passing script adds its weight"
        );
        assert_eq!(
            effective(base, &[item(20, true, true)]).priority,
            100,
            "a failing one does not"
        );
        assert_eq!(
            effective(255, &[item(-10, false, false)]).priority,
            255,
            "the owner keeps 255 untouched"
        );
    }

    #[test]
    fn a_failing_weight_zero_item_is_a_fault() {
        assert!(effective(100, &[item(0, true, false)]).fault);
        assert!(!effective(100, &[item(0, false, false)]).fault);
    }

    #[test]
    fn missing_interfaces_are_down() {
        assert!(!interface_up("vipx-no-such-if"));
    }

    #[tokio::test]
    async fn a_failing_script_changes_the_priority_and_is_in_the_timeline() {
        let text = "[dataplane]\ninterfaces = [\"lo\"]\n[[group]]\nname = \"pg\"\nvrid = 51\ninterface = \"lo\"\nvips = [\"10.0.0.100/24\"]\n\
                    [[group.track_script]]\nname = \"flag\"\ncommand = [\"sh\", \"-c\", \"test ! -e $FLAG\"]\ninterval = \"50ms\"\ntimeout = \"500ms\"\nweight = -40\n";
        let dir = tempfile::tempdir().expect("temp dir");
        let flag = dir.path().join("fail");
        let text = text.replace("$FLAG", flag.to_str().expect("utf-8"));
        let config = Config::parse(std::path::Path::new("t.toml"), &text).expect("config");
        let events = Arc::new(EventLog::default());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let tracker = Tracker::start(
            &config,
            Arc::clone(&events),
            Arc::new(|_| false),
            move |group, e| {
                let _ = tx.send((group.to_owned(), e));
            },
        );
        assert_eq!(
            tracker.tracking.effective("pg").map(|e| e.priority),
            Some(100)
        );
        std::fs::write(&flag, "").expect("create flag");
        let (group, e) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a change within 10 s")
            .expect("change");
        assert_eq!((group.as_str(), e.priority), ("pg", 60));
        std::fs::remove_file(&flag).expect("remove flag");
        let (_, e) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a change within 10 s")
            .expect("change");
        assert_eq!(e.priority, 100);
        let timeline = events.since(0);
        assert_eq!(timeline.len(), 2, "{timeline:?}");
        assert_eq!(timeline[0].to, "priority 60");
    }
}
