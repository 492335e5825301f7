//! The stats page (`GET /stats`), like HAProxy's: one read-only HTML page
//! of the groups, their peers, the services and each backend, and the
//! recent timeline. Plain HTML and CSS, refreshed by the browser every
//! few seconds; every string from the agent is escaped.

use std::fmt::{self, Write as _};

use super::wire::{Status, span};
use crate::events::{Event, timestamp};

/// How often the page reloads itself, in seconds.
pub const REFRESH_SECONDS: u32 = 5;
/// Events shown, the newest first.
pub const RECENT_EVENTS: usize = 30;

const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222;background:#fafafa}\
h1{font-size:20px;margin:0 0 .3em}h2{font-size:16px;margin:1.2em 0 .4em}\
table{border-collapse:collapse;margin-bottom:.5em;background:#fff}\
th,td{border:1px solid #ccc;padding:2px 8px;text-align:left}th{background:#e8e8f0}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
.MASTER,.up{background:#c8f0c8}.BACKUP{background:#e0e8ff}.FAULT,.STOPPED,.down{background:#f8c0c0}\
.degraded,.drained{background:#fff0b0}.meta{color:#555}";

/// HTML-escaped text.
struct Esc<'a>(&'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A CSS class from a state word: letters only, so nothing escapes.
fn class(word: &str) -> String {
    word.chars().filter(char::is_ascii_alphabetic).collect()
}

/// The page: `status` and the timeline `events` (oldest first).
pub fn page(status: &Status, events: &[Event]) -> String {
    let mut out = String::new();
    let node = Esc(&status.node);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
<title>vipx {node}</title><style>{STYLE}</style></head><body>\n\
<h1>vipx-agent on {node}</h1>\n<p class=\"meta\">version {} &middot; up {} &middot; config {} &middot; XDP {} &middot; {} UTC{}</p>\n",
        Esc(&status.version),
        span(status.uptime_seconds * 1000),
        Esc(&status.config_path),
        Esc(&xdp(status)),
        timestamp(status.now_unix_ms),
        if status.ha_debug {
            " &middot; <b>HA debug mode</b>"
        } else {
            ""
        },
    );
    cluster(&mut out, status);
    groups(&mut out, status);
    services(&mut out, status);
    timeline(&mut out, events);
    out.push_str("</body></html>\n");
    out
}

fn xdp(status: &Status) -> String {
    if status.xdp.is_empty() {
        return "not attached".to_owned();
    }
    status
        .xdp
        .iter()
        .map(|a| format!("{} ({})", a.interface, a.mode))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The cluster's voters and the quorum (with `[cluster] members`).
fn cluster(out: &mut String, status: &Status) {
    let Some(cluster) = &status.cluster else {
        return;
    };
    let q = &cluster.quorum;
    let _ = writeln!(
        out,
        "<h2>Cluster</h2>\n<p>quorum <b class=\"{}\">{}</b>: {} of {} voters</p>\n<table id=\"voters\"><tr><th>voter</th><th>role</th><th>address</th><th>state</th><th>last heard</th></tr>",
        if q.held { "MASTER" } else { "FAULT" },
        if q.held { "held" } else { "lost" },
        q.seen,
        q.voters,
    );
    for v in &cluster.voters {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td class=\"n\">{}</td></tr>",
            Esc(&v.name),
            Esc(&v.role),
            v.address,
            if v.up { "up" } else { "down" },
            if v.up { "up" } else { "down" },
            v.last_seen_ms
                .map_or("-".to_owned(), |ms| format!("{} ago", span(ms))),
        );
    }
    out.push_str("</table>\n");
}

fn groups(out: &mut String, status: &Status) {
    out.push_str("<h2>Groups</h2>\n<table id=\"groups\"><tr><th>group</th><th>VRID</th><th>state</th><th>for</th><th>priority</th><th>master</th><th>VIPs</th></tr>\n");
    for g in &status.groups {
        let master = status.master_of(g);
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"{}\">{}{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            Esc(&g.name),
            g.vrid,
            class(&g.state),
            Esc(&g.state),
            if g.handed_over.is_some() {
                " (handed over)"
            } else {
                ""
            },
            status.since(g.since_unix_ms),
            g.priority,
            Esc(&master),
            Esc(&g.vips.join(", ")),
        );
    }
    out.push_str("</table>\n<h2>Peers</h2>\n<table id=\"peers\"><tr><th>group</th><th>peer</th><th>kind</th><th>state</th><th>priority</th><th>last heard</th><th>packets</th></tr>\n");
    for g in &status.groups {
        for p in &g.peers {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td class=\"n\">{}</td><td class=\"n\">{} ago</td><td class=\"n\">{}</td></tr>",
                Esc(&g.name),
                p.address,
                Esc(&p.kind),
                class(&p.state),
                Esc(&p.state),
                p.priority,
                span(p.last_heard_ms),
                p.packets,
            );
        }
    }
    out.push_str("</table>\n");
}

fn services(out: &mut String, status: &Status) {
    out.push_str("<h2>Services</h2>\n");
    for s in &status.services {
        let _ = writeln!(
            out,
            "<h3>{} &middot; {} &middot; {} &middot; {} packets</h3>\n<table class=\"backends\"><tr><th>backend</th><th>health</th><th>weight</th><th>drain</th><th>flows</th><th>packets</th><th>last change</th></tr>",
            Esc(&s.name),
            s.vip,
            s.mode,
            s.packets
        );
        for b in &s.backends {
            let health = b.health.as_deref().unwrap_or("unchecked");
            let drain = if b.drained { "drained" } else { "active" };
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"{}\">{}</td><td class=\"n\">{}</td><td class=\"{drain}\">{drain}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                b.address,
                class(health),
                Esc(health),
                b.weight,
                b.flows,
                b.packets,
                status.since(b.last_change_unix_ms),
            );
        }
        out.push_str("</table>\n");
    }
}

fn timeline(out: &mut String, events: &[Event]) {
    out.push_str("<h2>Recent events</h2>\n<table id=\"events\"><tr><th>#</th><th>time (UTC)</th><th>kind</th><th>subject</th><th>from</th><th>to</th><th>reason</th></tr>\n");
    for e in events.iter().rev().take(RECENT_EVENTS) {
        let _ = writeln!(
            out,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            e.seq,
            timestamp(e.unix_ms),
            e.kind,
            Esc(&e.subject),
            Esc(&e.from),
            class(&e.to),
            Esc(&e.to),
            Esc(&e.reason),
        );
    }
    out.push_str("</table>\n");
}

#[cfg(test)]
mod tests;
