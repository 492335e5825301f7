//! The failover timeline: what changed, when and why (health transitions,
//! group state changes, reloads), served at `/api/v1/events`.

use std::{
    collections::VecDeque,
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

/// Events kept (the oldest go first).
pub const CAPACITY: usize = 1000;

/// One event.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Event {
    /// Sequence number, from 1.
    pub seq: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// `health`, `group`, `service`, `reload`, `drain`.
    pub kind: String,
    /// What changed: a backend, a group, a service.
    pub subject: String,
    /// The state before.
    pub from: String,
    /// The state after.
    pub to: String,
    /// Why.
    pub reason: String,
}

/// A bounded, thread-safe event log.
#[derive(Default)]
pub struct EventLog {
    inner: Mutex<(u64, VecDeque<Event>)>,
}

impl EventLog {
    /// Records an event (and logs it).
    pub fn record(&self, kind: &str, subject: &str, from: &str, to: &str, reason: &str) {
        tracing::info!(kind, subject, from, to, reason, "event");
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.0 += 1;
        let event = Event {
            seq: inner.0,
            unix_ms,
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            reason: reason.to_owned(),
        };
        if inner.1.len() == CAPACITY {
            inner.1.pop_front();
        }
        inner.1.push_back(event);
    }

    /// Events with a sequence number above `after`, oldest first.
    pub fn since(&self, after: u64) -> Vec<Event> {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
            log.record("health", &format!("b{i}"), "up", "down", "test");
        }
        let all = log.since(0);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].seq, 6, "the five oldest are gone");
        assert_eq!(log.since(all[CAPACITY - 2].seq).len(), 1);
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    }
}
