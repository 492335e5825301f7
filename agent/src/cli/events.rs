//! How `vipx-agent events` prints the timeline: one line per event with
//! an RFC 3339 UTC timestamp (or one JSON object per line with `--json`),
//! and with `--follow` the new events as they come, until interrupted.

use std::{io::Write as _, time::Duration};

use serde::Serialize;

pub use crate::events::timestamp;
use crate::{api::client::Agent, events::Event};

/// How often `--follow` asks for new events.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

/// One event as a line of text.
pub fn line(event: &Event) -> String {
    let from = if event.from.is_empty() {
        String::new()
    } else {
        format!("{} -> ", event.from)
    };
    format!(
        "{:>6} {} {:<8} {:<24} {from}{} ({})",
        event.seq,
        timestamp(event.unix_ms),
        event.kind,
        event.subject,
        event.to,
        event.reason
    )
}

/// An event as `--json` prints it: the API's fields plus `time`.
#[derive(Serialize)]
struct JsonEvent<'a> {
    time: String,
    #[serde(flatten)]
    event: &'a Event,
}

/// One event as a line of JSON.
pub fn json_line(event: &Event) -> String {
    serde_json::to_string(&JsonEvent {
        time: timestamp(event.unix_ms),
        event,
    })
    .unwrap_or_default()
}

/// Prints the timeline of `agent`; with `follow`, keeps printing new
/// events until interrupted.
pub async fn print(agent: &Agent, follow: bool, json: bool) -> anyhow::Result<()> {
    let mut after = 0;
    loop {
        let events = agent.events(after).await?;
        let mut out = std::io::stdout().lock();
        for event in &events {
            let text = if json { json_line(event) } else { line(event) };
            writeln!(out, "{text}")?;
            after = after.max(event.seq);
        }
        out.flush()?;
        drop(out);
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    fn event() -> Event {
        Event {
            seq: 7,
            // 2026-01-02T03:04:05.678Z
            unix_ms: 1_767_323_045_678,
            kind: EventKind::Group,
            subject: "pg".into(),
            from: "BACKUP".into(),
            to: "MASTER".into(),
            reason: "no advert".into(),
        }
    }

    #[test]
    fn events_read_with_utc_timestamps() {
        assert_eq!(timestamp(1_767_323_045_678), "2026-01-02T03:04:05.678Z");
        let text = line(&event());
        assert!(
            text.contains("2026-01-02T03:04:05.678Z group    pg"),
            "{text}"
        );
        assert!(text.ends_with("BACKUP -> MASTER (no advert)"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&json_line(&event())).expect("json");
        assert_eq!(json["time"], "2026-01-02T03:04:05.678Z", "{json}");
        assert_eq!(json["seq"], 7, "{json}");
        assert_eq!(json["to"], "MASTER", "{json}");
        assert_eq!(json["unix_ms"], 1_767_323_045_678_u64, "{json}");
    }
}
