//! An election's FAULT (a tracked weight-0 item failed, or the node
//! fenced itself without the cluster's quorum) and the cluster's gate on
//! its claims.

use tracing::info;

use super::{Election, Reason};
use crate::events::{EventKind, GroupState};

impl Election {
    /// FAULT (a tracked item failed, or no quorum) or not.
    pub(super) fn faulted(&self) -> bool {
        self.tracked_fault || self.quorum_fenced
    }

    /// Without the quorum a MASTER fences itself: FAULT (its VIPs go, XDP
    /// stops serving them) until the quorum is back. A BACKUP stays one:
    /// the cluster's gate refuses its claims meanwhile.
    pub(super) async fn quorum_changed(&mut self, held: bool) {
        let was = self.faulted();
        if !held && !self.quorum_fenced && self.ownership.is_master(self.id) {
            self.quorum_fenced = true;
            self.fault_changed(was, "this node lost the cluster's quorum (fenced itself)")
                .await;
        } else if held && self.quorum_fenced {
            self.quorum_fenced = false;
            self.fault_changed(was, "").await;
        }
    }

    /// Enters or leaves FAULT after a change of its causes.
    pub(super) async fn fault_changed(&mut self, was: bool, why: &str) {
        match (was, self.faulted()) {
            (false, true) => {
                let actions = self.instance.shutdown(self.now());
                self.execute(actions).await;
                self.events.record(
                    EventKind::Group,
                    &self.group.name,
                    None,
                    GroupState::Fault,
                    why,
                );
            }
            (true, false) => {
                let actions = self.instance.startup(self.now());
                self.execute(actions).await;
            }
            _ => {}
        }
    }

    /// Whether the cluster lets this node claim the group (always, without
    /// a cluster): with the quorum, and once a MASTER lost is no longer
    /// heard anywhere (it fenced itself).
    pub(super) async fn cluster_allows(&self, reason: Reason) -> bool {
        let Some(cluster) = &self.cluster else {
            return true;
        };
        // A MASTER that fell silent may be cut off and still serving: wait
        // until it fenced itself. One that stopped or is being preempted
        // lets go by itself.
        let silent = matches!(
            reason,
            Reason::MasterDown
                | Reason::HeartbeatLost {
                    stopping: false,
                    ..
                }
        );
        let refused = match cluster.claim(&self.group.name, silent).await {
            Ok(()) => return true,
            Err(refused) => refused,
        };
        info!(group = %self.group.name, %reason, "not taking the VIPs: {refused}");
        false
    }
}
