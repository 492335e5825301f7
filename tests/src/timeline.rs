//! An agent's event timeline (`/api/v1/events`), decoded: tests check the
//! events' fields, not the JSON's text.

use std::fmt;

use vipx_agent::events::{Event, EventKind, GroupState};

/// The events a node reported, oldest first (empty when it did not answer
/// or answered something else, which the failure message then shows).
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub events: Vec<Event>,
    /// What the node answered when it was not a timeline.
    pub undecoded: Option<String>,
}

impl Timeline {
    /// Decodes an `/api/v1/events` body.
    pub fn decode(body: &str) -> Self {
        match serde_json::from_str(body) {
            Ok(events) => Self {
                events,
                undecoded: None,
            },
            Err(err) => Self {
                events: Vec::new(),
                undecoded: Some(format!("{err}: {body}")),
            },
        }
    }

    /// Whether any event matches.
    pub fn any(&self, matches: impl Fn(&Event) -> bool) -> bool {
        self.events.iter().any(matches)
    }

    /// Whether the group's state changed to `to` for a reason that contains
    /// `reason`.
    pub fn became(&self, to: GroupState, reason: &str) -> bool {
        self.any(|e| e.is(EventKind::Group, to) && e.reason.contains(reason))
    }

    /// Whether the group's state changed from `from` to `to`.
    pub fn went(&self, from: GroupState, to: GroupState) -> bool {
        self.any(|e| e.is(EventKind::Group, to) && e.from == from.to_string())
    }
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(body) = &self.undecoded {
            return write!(f, "(no timeline: {body})");
        }
        for e in &self.events {
            writeln!(
                f,
                "{:>4} {} {:<7} {}: {} -> {} ({})",
                e.seq, e.unix_ms, e.kind, e.subject, e.from, e.to, e.reason
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeline_decodes_and_answers_for_its_events() {
        let body = r#"[{"seq":1,"unix_ms":5,"kind":"group","subject":"pg","from":"BACKUP","to":"MASTER","reason":"heartbeats from master 10.77.0.11 stopped"}]"#;
        let timeline = Timeline::decode(body);
        assert!(
            timeline.became(GroupState::Master, "heartbeats from master 10.77.0.11"),
            "{timeline}"
        );
        assert!(timeline.went(GroupState::Backup, GroupState::Master));
        assert!(!timeline.went(GroupState::Master, GroupState::Backup));
        let bad = Timeline::decode("not json");
        assert!(bad.events.is_empty() && bad.undecoded.is_some(), "{bad}");
    }
}
