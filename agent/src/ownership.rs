//! VIP ownership: what becoming MASTER or BACKUP of a group does on this
//! node. MASTER = data-plane master flag with a fresh lease, VIPs added,
//! gratuitous ARP / unsolicited NA; BACKUP = the reverse. The election
//! decides when; this module only carries it out.

use crate::locks::lock;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::task::JoinHandle;

use tracing::{error, info};

use crate::{
    config::GroupConfig,
    dataplane::GroupStates,
    vip::{VipAddr, VipManager},
};

/// Carries out state changes of the configured groups.
pub struct Ownership {
    groups: Arc<GroupStates>,
    vips: Arc<VipManager>,
    /// Announcement refreshers of the groups this node masters.
    refreshers: Mutex<HashMap<u32, JoinHandle<()>>>,
}

impl Ownership {
    pub fn new(groups: Arc<GroupStates>, vips: VipManager) -> Self {
        Self {
            groups,
            vips: Arc::new(vips),
            refreshers: Mutex::new(HashMap::new()),
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
        let announce = group.announce();
        let addrs = Self::addrs(group);
        for vip in &addrs {
            if let Err(err) = self.vips.add_with(vip, &announce).await {
                error!(group = %group.name, "{err}");
            }
        }
        if let Some(every) = announce.refresh {
            let vips = Arc::clone(&self.vips);
            let name = group.name.clone();
            let task = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    for vip in &addrs {
                        if let Err(err) = vips.announce(vip, &announce).await {
                            error!(group = %name, "refreshing the announcement: {err}");
                        }
                    }
                }
            });
            if let Some(old) = self.refreshers().insert(id, task) {
                old.abort();
            }
        }
        info!(group = %group.name, vrid = group.vrid, "MASTER");
    }

    /// BACKUP (or stopping): the VIPs go, then the data plane stops serving.
    pub async fn become_backup(&self, id: u32, group: &GroupConfig) {
        self.release(id, group).await;
        self.stop_serving(id, group);
    }

    /// Announces the VIPs of a group this node masters again.
    pub async fn announce(&self, group: &GroupConfig) {
        let announce = group.announce();
        for vip in Self::addrs(group) {
            if let Err(err) = self.vips.announce(&vip, &announce).await {
                error!(group = %group.name, "announcing again: {err}");
            }
        }
    }

    /// Removes the group's VIPs from their interface (present or not), as
    /// at start-up, before there is an [`Ownership`].
    pub async fn remove_vips(vips: &VipManager, group: &GroupConfig) {
        for vip in Self::addrs(group) {
            if let Err(err) = vips.remove(&vip).await {
                error!(group = %group.name, "{err}");
            }
        }
    }

    /// The first half of [`become_backup`](Self::become_backup): the VIPs
    /// go (this node no longer answers ARP/ND for them) and announcements
    /// stop, but the data plane keeps serving what still reaches it. A
    /// handover calls [`stop_serving`](Self::stop_serving) once the
    /// successor has announced itself, so clients whose ARP cache still
    /// points here lose nothing in between.
    pub async fn release(&self, id: u32, group: &GroupConfig) {
        if let Some(task) = self.refreshers().remove(&id) {
            task.abort();
        }
        Self::remove_vips(&self.vips, group).await;
    }

    /// The second half: the data plane stops serving the group.
    pub fn stop_serving(&self, id: u32, group: &GroupConfig) {
        if let Err(err) = self.groups.set_master(id, false) {
            error!(group = %group.name, "clearing the data-plane master flag: {err}");
        }
        info!(group = %group.name, vrid = group.vrid, "BACKUP");
    }

    fn refreshers(&self) -> std::sync::MutexGuard<'_, HashMap<u32, JoinHandle<()>>> {
        lock(&self.refreshers)
    }

    /// Whether this node is MASTER of group `id`.
    pub fn is_master(&self, id: u32) -> bool {
        self.groups.is_master(id)
    }
}
