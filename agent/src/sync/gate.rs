//! The readiness gate: whether this node holds its peers' flows, so that it
//! may take a VIP (back). Open once some peer's whole table is installed
//! here (its connection sent everything and said `Synced`); closed while no
//! peer's is; and open anyway when it has been closed for the bound
//! (`[sync] ready_timeout`), so that a peer that cannot replicate never
//! keeps this node from serving. A starting node waits for it before
//! taking part in its groups; a backup holds preemption while it is closed
//! (after a restart, or a rejoin that lost the replication connections).

use std::time::Duration;

use tokio::{sync::watch, task::JoinHandle, time::Instant};
use tracing::{info, warn};

/// Starts the gate; `peers`: how many peers replicate to this node (none:
/// the gate is open for good).
pub fn spawn(
    synced: watch::Receiver<Vec<String>>,
    peers: usize,
    bound: Duration,
) -> (watch::Receiver<bool>, JoinHandle<()>) {
    let (open, gate) = watch::channel(peers == 0);
    let task = tokio::spawn(run(synced, open, peers, bound));
    (gate, task)
}

/// Where the gate stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stand {
    /// Closed until a peer's table is in, or this time.
    Waiting(Instant),
    /// Open: some peer's whole table is installed here.
    Synced,
    /// Open: the bound passed without one.
    GaveUp,
}

async fn run(
    mut synced: watch::Receiver<Vec<String>>,
    open: watch::Sender<bool>,
    peers: usize,
    bound: Duration,
) {
    if peers == 0 {
        return;
    }
    let mut stand = Stand::Waiting(Instant::now() + bound);
    loop {
        let holding: Vec<String> = synced.borrow_and_update().clone();
        stand = match (holding.is_empty(), stand) {
            (false, Stand::Synced) => Stand::Synced,
            (false, _) => {
                info!(from = ?holding, "the peers' flows are installed: ready to take a VIP");
                Stand::Synced
            }
            (true, Stand::Synced) => {
                info!(
                    "no peer's whole flow table held any more: waiting for one (at most {bound:?}) before taking a VIP back"
                );
                Stand::Waiting(Instant::now() + bound)
            }
            (true, other) => other,
        };
        open.send_replace(!matches!(stand, Stand::Waiting(_)));
        let Stand::Waiting(until) = stand else {
            if synced.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            changed = synced.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep_until(until) => {
                warn!("no peer sent its whole flow table within {bound:?}: ready to take a VIP anyway");
                stand = Stand::GaveUp;
                open.send_replace(true);
                if synced.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(3);

    #[tokio::test(start_paused = true)]
    async fn opens_when_a_peer_is_synced_and_closes_when_none_is() {
        let (synced, rx) = watch::channel(Vec::<String>::new());
        let (gate, _task) = spawn(rx, 1, BOUND);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!*gate.borrow(), "closed until a peer's table is in");
        synced.send_replace(vec!["n2".into()]);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(*gate.borrow(), "open once n2's table is in");
        synced.send_replace(Vec::new());
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!*gate.borrow(), "closed again when n2's connection ended");
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_gate_opens_after_the_bound() {
        let (synced, rx) = watch::channel(Vec::<String>::new());
        let (gate, _task) = spawn(rx, 1, BOUND);
        tokio::time::sleep(BOUND - Duration::from_millis(10)).await;
        assert!(!*gate.borrow(), "closed before the bound");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(*gate.borrow(), "open after the bound, without a peer");
        synced.send_replace(Vec::new());
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(*gate.borrow(), "stays open while no peer is synced");
        synced.send_replace(vec!["n2".into()]);
        tokio::time::sleep(Duration::from_millis(10)).await;
        synced.send_replace(Vec::new());
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!*gate.borrow(), "a peer synced then lost closes it again");
    }

    #[tokio::test(start_paused = true)]
    async fn no_peers_no_gate() {
        let (_synced, rx) = watch::channel(Vec::<String>::new());
        let (gate, _task) = spawn(rx, 0, BOUND);
        assert!(*gate.borrow(), "nothing to wait for");
    }
}
