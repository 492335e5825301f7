//! The failover timeline: what changed, when and why (health transitions,
//! group state changes, reloads), served at `/api/v1/events`.
//!
//! A leaf: the domains record their own typed states here (anything that
//! renders, such as the election's group state or a backend's health), and
//! the log keeps them as the words people read. [`EventKind`] says which
//! domain an event belongs to.

use std::{
    collections::VecDeque,
    fmt,
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::locks::lock;

/// Events kept (the oldest go first).
pub const CAPACITY: usize = 1000;

/// Which part of the agent an event comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A backend's health changed (`up`, `degraded`, `down`).
    Health,
    /// A group's state changed (`MASTER`, `BACKUP`, `FAULT`, `STOPPED`).
    Group,
    /// A service lost or regained its last backend.
    Service,
    /// A SIGHUP reload was applied or rejected.
    Reload,
    /// An operator drained or undrained a backend.
    Drain,
    /// A tracked item moved a group's priority (or FAULT).
    Track,
    /// An operator handed a group over (`held`), or that ended
    /// (`released`).
    Handover,
    /// This node's quorum (`held`, `lost`): without it, no VIP.
    Quorum,
    /// A peer declared dead was fenced (`fenced`), could not be
    /// (`failed`), or would have been (`would fence`, HA debug mode).
    Fence,
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Health => "health",
            Self::Group => "group",
            Self::Service => "service",
            Self::Reload => "reload",
            Self::Drain => "drain",
            Self::Track => "track",
            Self::Handover => "handover",
            Self::Quorum => "quorum",
            Self::Fence => "fence",
        })
    }
}

/// A group's state as the timeline and the status report show it: the
/// election's states plus the caller's FAULT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupState {
    Master,
    Backup,
    /// A tracked weight-0 item failed: the group takes no part.
    Fault,
    /// The election stopped (agent stopping, group removed).
    Stopped,
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Master => "MASTER",
            Self::Backup => "BACKUP",
            Self::Fault => "FAULT",
            Self::Stopped => "STOPPED",
        })
    }
}

/// A service as a whole: serving, or every backend down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceState {
    Serving,
    AllDown,
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Serving => "serving",
            Self::AllDown => "all backends down",
        })
    }
}

/// A backend's drain, as the operator set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainState {
    Active,
    Drained,
}

impl fmt::Display for DrainState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Active => "active",
            Self::Drained => "drained",
        })
    }
}

/// What a reload did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Applied,
    Rejected,
}

impl fmt::Display for ReloadOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Applied => "applied",
            Self::Rejected => "rejected",
        })
    }
}

/// What the fence command did to a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceResult {
    /// It exited 0: the peer is fenced.
    Fenced,
    /// Every attempt failed (or timed out).
    Failed,
    /// HA debug mode: logged, not run.
    WouldFence,
}

impl fmt::Display for FenceResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Fenced => "fenced",
            Self::Failed => "failed",
            Self::WouldFence => "would fence",
        })
    }
}

/// One event, as `/api/v1/events` serves it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Event {
    /// Sequence number, from 1.
    pub seq: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    pub kind: EventKind,
    /// What changed: a backend, a group, a service.
    pub subject: String,
    /// The state before (empty when there was none to speak of).
    pub from: String,
    /// The state after.
    pub to: String,
    /// Why.
    pub reason: String,
}

impl Event {
    /// Whether this event is of `kind` and went to the state that renders
    /// as `to`.
    pub fn is(&self, kind: EventKind, to: impl fmt::Display) -> bool {
        self.kind == kind && self.to == to.to_string()
    }
}

/// The wall clock, in milliseconds since the Unix epoch.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A time in milliseconds since the Unix epoch, RFC 3339 in UTC with
/// milliseconds (`2026-01-02T03:04:05.678Z`).
pub fn timestamp(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + std::time::Duration::from_millis(unix_ms))
        .to_string()
}

/// Called with each event as it is recorded.
pub type Observer = Box<dyn Fn(&Event) + Send + Sync>;

/// Events a slow subscriber may fall behind by before it misses some.
const SUBSCRIBER_BACKLOG: usize = 256;

/// A bounded, thread-safe event log; an observer (the metrics) sees each
/// event as it is recorded, and subscribers get it too (the notify hooks
/// and systemd's status line follow the groups' changes this way).
pub struct EventLog {
    inner: Mutex<(u64, VecDeque<Event>)>,
    observer: Option<Observer>,
    live: tokio::sync::broadcast::Sender<Event>,
}

impl Default for EventLog {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            observer: None,
            live: tokio::sync::broadcast::channel(SUBSCRIBER_BACKLOG).0,
        }
    }
}

impl EventLog {
    /// A log that also hands each event to `observer` (the metrics).
    pub fn with_observer(observer: Observer) -> Self {
        Self {
            observer: Some(observer),
            ..Self::default()
        }
    }

    /// Records (and logs) that `subject` went from `from` (None: no earlier
    /// state worth showing) to `to`, because of `reason`.
    pub fn record<S: fmt::Display>(
        &self,
        kind: EventKind,
        subject: &str,
        from: Option<S>,
        to: S,
        reason: &str,
    ) {
        let from = from.map(|s| s.to_string()).unwrap_or_default();
        let to = to.to_string();
        tracing::info!(%kind, subject, from, to, reason, "event");
        let unix_ms = now_unix_ms();
        let mut inner = lock(&self.inner);
        inner.0 += 1;
        let event = Event {
            seq: inner.0,
            unix_ms,
            kind,
            subject: subject.to_owned(),
            from,
            to,
            reason: reason.to_owned(),
        };
        if inner.1.len() == CAPACITY {
            inner.1.pop_front();
        }
        if let Some(observer) = &self.observer {
            observer(&event);
        }
        // Sent under the lock, so subscribers see the log's order (no
        // subscriber is no error).
        let _ = self.live.send(event.clone());
        inner.1.push_back(event);
    }

    /// Every event recorded from now on, in order.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.live.subscribe()
    }

    /// The time of the newest event that `matches`.
    pub fn last_time(&self, matches: impl Fn(&Event) -> bool) -> Option<u64> {
        let inner = lock(&self.inner);
        inner.1.iter().rev().find(|e| matches(e)).map(|e| e.unix_ms)
    }

    /// Events with a sequence number above `after`, oldest first.
    pub fn since(&self, after: u64) -> Vec<Event> {
        let inner = lock(&self.inner);
        inner.1.iter().filter(|e| e.seq > after).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_events_in_order() {
        let log = EventLog::default();
        for i in 0..CAPACITY + 5 {
            log.record(
                EventKind::Group,
                &format!("g{i}"),
                Some(GroupState::Master),
                GroupState::Backup,
                "test",
            );
        }
        let all = log.since(0);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].seq, 6, "the five oldest are gone");
        assert_eq!(log.since(all[CAPACITY - 2].seq).len(), 1);
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    }

    #[test]
    fn events_render_as_the_api_has_always_shown_them() {
        let log = EventLog::default();
        log.record(
            EventKind::Reload,
            "/etc/vipx/vipx.toml",
            None,
            ReloadOutcome::Rejected,
            "bad line",
        );
        log.record(
            EventKind::Group,
            "db",
            Some(GroupState::Backup),
            GroupState::Master,
            "no advert",
        );
        let json = serde_json::to_value(log.since(0)).expect("events serialise");
        assert_eq!(json[0]["kind"], "reload", "{json}");
        assert_eq!(json[0]["from"], "", "{json}");
        assert_eq!(json[0]["to"], "rejected", "{json}");
        assert_eq!(json[1]["kind"], "group", "{json}");
        assert_eq!(json[1]["from"], "BACKUP", "{json}");
        assert_eq!(json[1]["to"], "MASTER", "{json}");
        let back: Vec<Event> = serde_json::from_value(json).expect("events decode");
        assert!(back[1].is(EventKind::Group, GroupState::Master), "{back:?}");
    }
}
