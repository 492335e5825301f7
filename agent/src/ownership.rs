//! VIP ownership: what becoming MASTER or BACKUP of a group does on this
//! node. MASTER = data-plane master flag with a fresh lease, VIPs added,
//! gratuitous ARP / unsolicited NA; BACKUP = the reverse. The election
//! decides when; this module only carries it out.

use std::sync::Arc;

use tracing::{error, info};

use crate::{
    config::GroupConfig,
    dataplane::GroupStates,
    vip::{Announce, VipAddr, VipManager},
};

/// Carries out state changes of the configured groups.
pub struct Ownership {
    groups: Arc<GroupStates>,
    vips: VipManager,
    announce: Announce,
}

impl Ownership {
    pub fn new(groups: Arc<GroupStates>, vips: VipManager) -> Self {
        Self {
            groups,
            vips,
            announce: Announce::default(),
        }
    }

    fn addrs(group: &GroupConfig) -> Vec<VipAddr> {
        group
            .vips
            .iter()
            .filter_map(|vip| {
                match VipAddr::new(vip.addr, vip.prefix_len, group.interface.as_str()) {
                    Ok(addr) => Some(addr),
                    Err(err) => {
                        error!(group = %group.name, "{err}");
                        None
                    }
                }
            })
            .collect()
    }

    /// MASTER: the data plane serves first, then the VIPs are added and
    /// announced, so the first packet that follows the announcement is
    /// served.
    pub async fn become_master(&self, id: u32, group: &GroupConfig) {
        if let Err(err) = self.groups.set_master(id, true) {
            error!(group = %group.name, "setting the data-plane master flag: {err}");
        }
        for vip in Self::addrs(group) {
            if let Err(err) = self.vips.add_with(&vip, &self.announce).await {
                error!(group = %group.name, "{err}");
            }
        }
        info!(group = %group.name, vrid = group.vrid, "MASTER");
    }

    /// BACKUP (or stopping): the VIPs go, then the data plane stops serving.
    pub async fn become_backup(&self, id: u32, group: &GroupConfig) {
        for vip in Self::addrs(group) {
            if let Err(err) = self.vips.remove(&vip).await {
                error!(group = %group.name, "{err}");
            }
        }
        if let Err(err) = self.groups.set_master(id, false) {
            error!(group = %group.name, "clearing the data-plane master flag: {err}");
        }
        info!(group = %group.name, vrid = group.vrid, "BACKUP");
    }

    /// Whether this node is MASTER of group `id`.
    pub fn is_master(&self, id: u32) -> bool {
        self.groups.is_master(id)
    }
}
