//! From the program's flow events to the peers' queues: each new flow and
//! each change of a flow's state (established, closed both ways, RST seen
//! or cleared), as it happens, as a record any peer can install (a change
//! replaces the peer's copy, which the peer's collector then expires by
//! the same rules), and each flow the program ended (a new connection
//! from its port). Events the ring buffer lost turn into a whole-table
//! transfer to every peer. Also the flow collector's news ([`news_sink`]):
//! the flows it forgot, and the active ones of each round.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::io::unix::AsyncFd;
use tracing::warn;
use vipx_common::{
    Backend, FlowEvent,
    flow::{FLOW_EVENT_END, FLOW_EVENT_NEW, FLOW_EVENT_UPDATE},
};

use super::{
    ack::Ledger,
    sender::{Change, Queue},
    wire::Entry,
};
use crate::{
    balancer::replica,
    dataplane::{FlowEvents, FlowNews, Maps, NewsSink, monotonic_ns},
};

/// How often the count of lost events is read.
const LOSS_CHECK: Duration = Duration::from_millis(100);

/// Drains the flow events into `queues` until the task is dropped.
pub async fn forward(events: FlowEvents, maps: Arc<Maps>, ledger: Arc<Ledger>, queues: Vec<Queue>) {
    // SAFETY: the ring buffer's descriptor is owned by `events`, which the
    // `AsyncFd` owns: it stays open, and the same, for its whole life.
    let registered =
        unsafe { AsyncFd::register_with_interest(events, tokio::io::Interest::READABLE) };
    let mut events = match registered {
        Ok(events) => events,
        Err(err) => {
            warn!("replication: watching the flow events: {err}; peers get whole tables only");
            return;
        }
    };
    // Backend ids never change their address while the agent runs.
    let mut backends: HashMap<u32, Backend> = HashMap::new();
    let mut lost = events.get_ref().lost().unwrap_or(0);
    let mut check = tokio::time::interval(LOSS_CHECK);
    loop {
        tokio::select! {
            ready = events.readable_mut() => {
                let Ok(mut guard) = ready else { return };
                let now = monotonic_ns();
                while let Some(event) = guard.get_inner_mut().next() {
                    if let Some(entry) = entry(&event, &maps, &mut backends, now) {
                        // A new flow dates from its creation in the kernel.
                        let at_ns = if event.kind == FLOW_EVENT_NEW {
                            event.flow.created_ns
                        } else {
                            now
                        };
                        publish(&ledger, &queues, entry, at_ns);
                    }
                }
                guard.clear_ready();
            }
            _ = check.tick() => {
                let now_lost = events.get_ref().lost().unwrap_or(lost);
                if now_lost != lost {
                    warn!(lost = now_lost - lost, "replication: flow events lost; every peer gets the whole table");
                    lost = now_lost;
                    for queue in &queues {
                        queue.resync();
                    }
                }
            }
        }
    }
}

/// The change an event reports.
fn entry(
    event: &FlowEvent,
    maps: &Maps,
    backends: &mut HashMap<u32, Backend>,
    now_ns: u64,
) -> Option<Entry> {
    let backend = backend(maps, backends, event.flow.backend)?;
    let record = replica::record_with(&event.key, &event.flow, &backend, event.client_mac, now_ns)?;
    match event.kind {
        FLOW_EVENT_NEW | FLOW_EVENT_UPDATE => Some(Entry::Flow(record)),
        FLOW_EVENT_END => Some(Entry::End(record)),
        _ => None,
    }
}

/// The flow collector's news as changes for every peer: a flow forgotten
/// ends the peers' copy, an active one refreshes it.
pub fn news_sink(maps: Arc<Maps>, ledger: Arc<Ledger>, queues: Vec<Queue>) -> NewsSink {
    let mut backends: HashMap<u32, Backend> = HashMap::new();
    Box::new(move |news, key, flow| {
        let now = monotonic_ns();
        let entry = match news {
            // Its NAT entry is gone: the peers need no MAC to forget it.
            FlowNews::Ended => backend(&maps, &mut backends, flow.backend)
                .and_then(|b| replica::record_with(key, flow, &b, [0; 6], now))
                .map(Entry::End),
            FlowNews::Active => replica::record(&maps, key, flow, now).map(Entry::Flow),
        };
        if let Some(entry) = entry {
            publish(&ledger, &queues, entry, now);
        }
    })
}

/// A backend's entry, looked up once (ids never change their address
/// while the agent runs).
fn backend(maps: &Maps, backends: &mut HashMap<u32, Backend>, id: u32) -> Option<Backend> {
    if let Some(backend) = backends.get(&id) {
        return Some(*backend);
    }
    let backend = maps.backend(id)?;
    backends.insert(id, backend);
    Some(backend)
}

/// Numbers a change and queues it for every peer; never waits.
pub(super) fn publish(ledger: &Ledger, queues: &[Queue], entry: Entry, at_ns: u64) {
    ledger.publish(at_ns, |id| {
        let change = Change { id, entry, at_ns };
        for queue in queues {
            queue.push(change.clone());
        }
    });
}
