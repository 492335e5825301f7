//! keepalived's notify hooks: `notify_master`, `notify_backup`,
//! `notify_fault`, `notify_stop` and the generic `notify` of each group,
//! run when the group's state changes.
//!
//! The notifier follows the event log (a group's change is recorded there
//! by whoever made it: the election, a static group, a tracked FAULT), so
//! nothing on the election's path waits for a hook. Each group has a queue
//! of its own: its hooks run one at a time, in the order of the changes
//! (a quick MASTER -> BACKUP must not reach a cloud's API in the other
//! order), each killed after the group's `notify_timeout`. A hook that
//! cannot start, fails or times out is logged and counted
//! (`vipx_notify_failures_total`).

use std::{
    collections::HashMap,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use prometheus::{IntCounterVec, Opts};
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{debug, info, warn};

use crate::{
    config::{Config, GroupConfig},
    events::{Event, EventKind, EventLog, GroupState},
    locks::lock,
};

/// What a hook says about the state, in keepalived's words (the generic
/// hook's third argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookState {
    Master,
    Backup,
    Fault,
    Stop,
}

impl HookState {
    /// keepalived's word for the state.
    pub fn word(self) -> &'static str {
        match self {
            Self::Master => "MASTER",
            Self::Backup => "BACKUP",
            Self::Fault => "FAULT",
            Self::Stop => "STOP",
        }
    }

    /// The state a recorded group event went to (STOPPED is the agent's
    /// own stop, which [`Notifier::stop`] handles for every group).
    fn of(event: &Event) -> Option<Self> {
        if event.kind != EventKind::Group {
            return None;
        }
        [
            (GroupState::Master, Self::Master),
            (GroupState::Backup, Self::Backup),
            (GroupState::Fault, Self::Fault),
        ]
        .into_iter()
        .find(|(state, _)| event.is(EventKind::Group, state))
        .map(|(_, hook)| hook)
    }
}

/// The commands to run for `state` in `group`, in order: the state's own
/// hook, then the generic one with keepalived's arguments.
pub fn commands(
    group: &GroupConfig,
    state: HookState,
    priority: u8,
) -> Vec<(&'static str, Vec<String>)> {
    let own = match state {
        HookState::Master => ("notify_master", &group.notify_master),
        HookState::Backup => ("notify_backup", &group.notify_backup),
        HookState::Fault => ("notify_fault", &group.notify_fault),
        HookState::Stop => ("notify_stop", &group.notify_stop),
    };
    let mut out = Vec::new();
    if let (key, Some(command)) = own {
        out.push((key, command.clone()));
    }
    if let Some(generic) = &group.notify {
        let mut command = generic.clone();
        command.extend([
            "INSTANCE".to_owned(),
            group.name.clone(),
            state.word().to_owned(),
            priority.to_string(),
        ]);
        out.push(("notify", command));
    }
    out
}

/// One hook to run.
struct Job {
    hook: &'static str,
    command: Vec<String>,
    group: String,
    state: HookState,
    priority: u8,
    timeout: Duration,
}

/// Counters of the hooks run.
#[derive(Clone)]
struct Counters {
    runs: IntCounterVec,
    failures: IntCounterVec,
}

impl Counters {
    fn new() -> prometheus::Result<Self> {
        Ok(Self {
            runs: IntCounterVec::new(
                Opts::new(
                    "vipx_notify_runs_total",
                    "Notify hooks run, by group and hook.",
                ),
                &["group", "hook"],
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "vipx_notify_failures_total",
                    "Notify hooks that could not start, exited non-zero or were killed at notify_timeout, by group and hook.",
                ),
                &["group", "hook"],
            )?,
        })
    }
}

/// Each group's queue of hooks and the worker that runs them.
type Queues = Mutex<HashMap<String, (mpsc::UnboundedSender<Job>, JoinHandle<()>)>>;

/// What the notifier needs to know of the running configuration.
type Priority = Box<dyn Fn(&str) -> Option<u8> + Send + Sync>;

/// Runs the groups' hooks as their states change.
pub struct Notifier {
    groups: Arc<Mutex<HashMap<String, GroupConfig>>>,
    queues: Arc<Queues>,
    counters: Counters,
    priority: Arc<Priority>,
    follower: JoinHandle<()>,
    stop_follower: tokio::sync::oneshot::Sender<()>,
}

impl Notifier {
    /// Follows `events` for the groups of `config`; `priority` tells a
    /// group's current priority (the generic hook's fourth argument).
    /// The counters are returned for the caller to register.
    pub fn start(
        config: &Config,
        events: &EventLog,
        priority: impl Fn(&str) -> Option<u8> + Send + Sync + 'static,
    ) -> prometheus::Result<(Self, Vec<Box<dyn prometheus::core::Collector>>)> {
        let counters = Counters::new()?;
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(counters.runs.clone()),
            Box::new(counters.failures.clone()),
        ];
        let groups: Arc<Mutex<HashMap<String, GroupConfig>>> = Arc::new(Mutex::new(HashMap::new()));
        let queues = Arc::new(Mutex::new(HashMap::new()));
        let priority: Arc<Priority> = Arc::new(Box::new(priority));
        let mut live = events.subscribe();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let follower = {
            let groups = Arc::clone(&groups);
            let queues = Arc::clone(&queues);
            let counters = counters.clone();
            let priority = Arc::clone(&priority);
            let follow = move |event: Event| {
                let Some(state) = HookState::of(&event) else {
                    return;
                };
                let group = lock(&groups).get(&event.subject).cloned();
                if let Some(group) = group {
                    let at = priority(&group.name).unwrap_or(group.priority);
                    enqueue(&queues, &counters, &group, state, at);
                }
            };
            tokio::spawn(async move {
                use tokio::sync::broadcast::error::{RecvError, TryRecvError};
                loop {
                    // Events first: what was recorded before the stop runs
                    // its hooks before notify_stop.
                    tokio::select! {
                        biased;
                        received = live.recv() => match received {
                            Ok(event) => follow(event),
                            Err(RecvError::Lagged(missed)) => {
                                warn!(missed, "notify hooks: fell behind the event log, some changes ran no hook");
                            }
                            Err(RecvError::Closed) => return,
                        },
                        _ = &mut stop_rx => {
                            loop {
                                match live.try_recv() {
                                    Ok(event) => follow(event),
                                    Err(TryRecvError::Lagged(_)) => {}
                                    Err(_) => return,
                                }
                            }
                        }
                    }
                }
            })
        };
        let notifier = Self {
            groups,
            queues,
            counters,
            priority,
            follower,
            stop_follower: stop_tx,
        };
        notifier.set_config(config);
        Ok((notifier, collectors))
    }

    /// A reload: the hooks of the new configuration apply from now on.
    pub fn set_config(&self, config: &Config) {
        let mut groups = lock(&self.groups);
        groups.clear();
        for (_, group) in config.groups_with_ids() {
            for label in [
                "notify_master",
                "notify_backup",
                "notify_fault",
                "notify_stop",
                "notify",
            ] {
                // Series exist from the start, at 0.
                self.counters.runs.with_label_values(&[&group.name, label]);
                self.counters
                    .failures
                    .with_label_values(&[&group.name, label]);
            }
            groups.insert(group.name.clone(), group.clone());
        }
    }

    /// The agent stops: `notify_stop` (and the generic hook with `STOP`)
    /// for every group, after whatever is queued; waits for the queues,
    /// each bounded by its hooks' timeouts.
    pub async fn stop(self) {
        let _ = self.stop_follower.send(());
        let _ = self.follower.await;
        let groups: Vec<GroupConfig> = lock(&self.groups).values().cloned().collect();
        for group in &groups {
            let at = (self.priority)(&group.name).unwrap_or(group.priority);
            enqueue(&self.queues, &self.counters, group, HookState::Stop, at);
        }
        let queues: Vec<_> = lock(&self.queues).drain().map(|(_, q)| q).collect();
        for (sender, worker) in queues {
            drop(sender);
            let _ = worker.await;
        }
    }
}

/// Queues `group`'s hooks for `state` on the group's own worker.
fn enqueue(
    queues: &Queues,
    counters: &Counters,
    group: &GroupConfig,
    state: HookState,
    priority: u8,
) {
    let jobs = commands(group, state, priority);
    if jobs.is_empty() {
        return;
    }
    let mut queues = lock(queues);
    let (sender, _) = queues.entry(group.name.clone()).or_insert_with(|| {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let counters = counters.clone();
        let worker = tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                run(&job, &counters).await;
            }
        });
        (tx, worker)
    });
    for (hook, command) in jobs {
        let _ = sender.send(Job {
            hook,
            command,
            group: group.name.clone(),
            state,
            priority,
            timeout: group.notify_timeout,
        });
    }
}

/// Runs one hook to its end or its timeout.
async fn run(job: &Job, counters: &Counters) {
    counters
        .runs
        .with_label_values(&[&job.group, job.hook])
        .inc();
    let started = Instant::now();
    let mut command = tokio::process::Command::new(&job.command[0]);
    command
        .args(&job.command[1..])
        .env("VIPX_GROUP", &job.group)
        .env("VIPX_STATE", job.state.word())
        .env("VIPX_PRIORITY", job.priority.to_string())
        // systemd's socket and watchdog are the agent's, not the hook's.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let failure = match command.spawn() {
        Err(err) => Some(format!("could not start {}: {err}", job.command[0])),
        Ok(child) => match tokio::time::timeout(job.timeout, child.wait_with_output()).await {
            Err(_) => Some(format!("killed after notify_timeout {:?}", job.timeout)),
            Ok(Err(err)) => Some(format!("waiting for it: {err}")),
            Ok(Ok(output)) if output.status.success() => None,
            Ok(Ok(output)) => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let last = stderr.lines().last().unwrap_or("").trim();
                Some(format!("{}; stderr: {last}", output.status))
            }
        },
    };
    let took = started.elapsed();
    match failure {
        None => {
            info!(group = %job.group, hook = job.hook, state = job.state.word(), ?took, "notify hook ran")
        }
        Some(why) => {
            counters
                .failures
                .with_label_values(&[&job.group, job.hook])
                .inc();
            warn!(group = %job.group, hook = job.hook, state = job.state.word(), ?took, "notify hook failed: {why}");
        }
    }
    debug!(command = ?job.command, "notify hook done");
}

#[cfg(test)]
mod tests;
