//! The heartbeat thread's loop: send what is due, read the records,
//! detect, sleep until the next heartbeat or an XDP signal.

use crate::locks::lock;
use std::{
    collections::HashMap,
    net::IpAddr,
    os::fd::{AsFd as _, AsRawFd as _},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use nix::{
    poll::{PollFd, PollFlags, ppoll},
    sys::{eventfd::EventFd, time::TimeSpec},
};
use tracing::{debug, info, warn};
use vipx_common::{
    PeerEvent, PeerSeen,
    peer::{EVENT_PRIORITY_ZERO, EVENT_STATE, KIND_HEARTBEAT, STATE_BACKUP},
};

use super::{
    Detector, HeartbeatLink, Inner, PeerView, Verdict,
    damping::{self, Damper, Declared},
};
use crate::dataplane::{PeerEvents, monotonic_ns, realtime};

/// The longest sleep: the stop flag and new registrations are seen within
/// this.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// What the thread keeps per group between ticks.
struct Book {
    next_send_ns: u64,
    /// The loss already signalled.
    signalled: Option<Signalled>,
    /// Flap dampening of the detection time.
    damper: Damper,
    /// The factor last applied (to log and export changes).
    factor: u32,
    /// When the link last became BACKUP, as `signalled` was set.
    since: u64,
    deferred_to: Option<IpAddr>,
    /// Records seen per peer, to count received heartbeats.
    counts: HashMap<IpAddr, u64>,
    views: Vec<PeerView>,
    read_failed: bool,
}

pub(super) fn run(inner: &Arc<Inner>, mut events: Option<PeerEvents>) {
    realtime::raise("heartbeat");
    let mut generation = u64::MAX;
    let mut groups: Vec<Arc<HeartbeatLink>> = Vec::new();
    let mut books: HashMap<usize, Book> = HashMap::new();
    while !inner.stop.load(Ordering::Acquire) {
        let current = inner.generation.load(Ordering::Acquire);
        if current != generation {
            generation = current;
            groups.clone_from(&lock(&inner.groups));
            let live: Vec<usize> = groups.iter().map(key).collect();
            books.retain(|k, _| live.contains(k));
        }
        let now = monotonic_ns();
        let mut next_wake = now + nanos(MAX_SLEEP);
        for link in &groups {
            let book = books.entry(key(link)).or_insert_with(|| Book {
                next_send_ns: now,
                signalled: None,
                damper: Damper::new(link.spec.dampening),
                factor: 0,
                since: 0,
                deferred_to: None,
                counts: HashMap::new(),
                views: Vec::with_capacity(link.spec.peers.len()),
                read_failed: false,
            });
            let interval = nanos(link.spec.interval);
            if now >= book.next_send_ns {
                link.send();
                book.next_send_ns = now + interval;
            }
            next_wake = next_wake.min(book.next_send_ns);
            watch(inner, link, book, now);
        }
        if let Some(events) = events.as_mut() {
            while let Some(event) = events.next() {
                log_event(&event);
            }
        }
        sleep_until(events.as_ref(), &inner.wake, next_wake);
    }
}

/// A stable identity for a registered link.
fn key(link: &Arc<HeartbeatLink>) -> usize {
    Arc::as_ptr(link) as usize
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Reads the group's peer records, counts what arrived, and signals the
/// election when the master is lost.
fn watch(inner: &Inner, link: &HeartbeatLink, book: &mut Book, now: u64) {
    book.views.clear();
    for &addr in &link.spec.peers {
        let seen = match inner.peers.seen(link.spec.vrid, KIND_HEARTBEAT, addr) {
            Ok(seen) => seen,
            Err(err) => {
                if !book.read_failed {
                    warn!(group = %link.spec.name, %addr, "reading the heartbeat record: {err}");
                    book.read_failed = true;
                }
                None
            }
        };
        if let Some(seen) = seen {
            let before = book.counts.insert(addr, seen.count).unwrap_or(seen.count);
            link.counters
                .received
                .inc_by(seen.count.saturating_sub(before));
        }
        book.views.push(PeerView { addr, seen });
    }
    let factor = book.damper.factor(now);
    if factor != book.factor {
        if factor == 1 && book.factor > 1 {
            info!(group = %link.spec.name, "heartbeat: detection time back to the configured one");
        }
        book.factor = factor;
        link.counters
            .detection
            .set((link.detector.detect * factor).as_secs_f64());
    }
    if link.state.load(Ordering::Acquire) != STATE_BACKUP {
        return;
    }
    let since = link.backup_since();
    if since != book.since {
        // Backup again since the last signal: was that takeover false?
        // Then a new loss may be signalled.
        if let Some(Signalled { master, loss, .. }) = book.signalled
            && damping::false_takeover(loss, now, seen_of(&book.views, master).as_ref())
        {
            let factor = book.damper.penalise(now);
            if link.spec.dampening.is_zero() {
                warn!(group = %link.spec.name, %master, "heartbeat: the master was alive after all (a false takeover); dampening is off");
            } else {
                warn!(
                    group = %link.spec.name,
                    %master,
                    factor,
                    "heartbeat: the master was alive after all (a false takeover); detection time now {factor} x the configured one, halving every {:?}",
                    link.spec.dampening
                );
            }
        }
        book.since = since;
        book.signalled = None;
    }
    let detector = Detector {
        detect: link.detector.detect * book.factor,
    };
    let priority = link.priority.load(Ordering::Relaxed);
    match detector.evaluate(now, since, link.spec.source, priority, &book.views) {
        Verdict::Alive => book.deferred_to = None,
        Verdict::Defer { master, to } => {
            if book.deferred_to != Some(to) {
                debug!(group = %link.spec.name, %master, %to, "master lost; a higher peer takes over");
                book.deferred_to = Some(to);
            }
        }
        Verdict::Lost {
            master,
            stopping,
            silence,
            last_ns,
        } => {
            if book
                .signalled
                .is_some_and(|s| s.master == master && s.last_ns == last_ns)
            {
                return;
            }
            book.signalled = Some(Signalled {
                master,
                last_ns,
                loss: Declared {
                    at_ns: now,
                    epoch: seen_of(&book.views, master).map_or(0, |s| s.epoch),
                    seq: seen_of(&book.views, master).map_or(0, |s| s.seq),
                },
            });
            info!(
                group = %link.spec.name,
                %master,
                stopping,
                silence_us = silence.as_micros(),
                "heartbeat: master lost"
            );
            let _ = link.losses.send(super::Loss {
                src: master,
                stopping,
                silence,
                backup_since: since,
            });
        }
    }
}

/// A loss signalled to the election: the master and its last heartbeat
/// (its identity: signalled once), and what the dampening needs of it.
#[derive(Clone, Copy, Debug)]
struct Signalled {
    master: IpAddr,
    last_ns: u64,
    loss: Declared,
}

/// The latest heartbeat of `addr` among `views`.
fn seen_of(views: &[PeerView], addr: IpAddr) -> Option<PeerSeen> {
    views.iter().find(|v| v.addr == addr).and_then(|v| v.seen)
}

fn log_event(event: &PeerEvent) {
    if event.flags & (EVENT_PRIORITY_ZERO | EVENT_STATE) != 0 {
        debug!(
            vrid = event.vrid,
            kind = event.kind,
            priority = event.priority,
            state = event.state,
            flags = event.flags,
            "XDP: peer change"
        );
    }
}

/// Sleeps until `deadline` (`CLOCK_MONOTONIC` ns), waking early when the
/// XDP program signals through the ring buffer or `wake` is written (a
/// registration change, a stop).
fn sleep_until(events: Option<&PeerEvents>, wake: &EventFd, deadline: u64) {
    let now = monotonic_ns();
    if deadline <= now {
        return;
    }
    let wait = Duration::from_nanos(deadline - now);
    let mut fds = vec![PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
    if let Some(events) = events {
        fds.push(PollFd::new(events.as_fd(), PollFlags::POLLIN));
    }
    match ppoll(&mut fds, Some(TimeSpec::from_duration(wait)), None) {
        Ok(_) => {
            if fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN))
            {
                // Non-blocking: reads the count and resets it.
                let _ = wake.read();
            }
        }
        Err(nix::errno::Errno::EINTR) => {}
        Err(err) => {
            debug!(fd = wake.as_fd().as_raw_fd(), "ppoll: {err}");
            std::thread::sleep(wait);
        }
    }
}
