//! VIP ownership on the host: what keepalived does on MASTER/BACKUP
//! transitions. [`VipManager::add_with`] puts a VIP on its interface with
//! rtnetlink and announces it (gratuitous ARP for IPv4, unsolicited neighbour
//! advertisements for IPv6) so that the link learns the new owner's MAC at
//! once; [`VipManager::remove`] takes it off again.
//!
//! Everything acts in the network namespace the manager was created in (see
//! [`VipManager::new`]). In HA debug mode (`--ha-debug`) every action that
//! would change the host is logged as what it would do, and not done.

mod addr;
mod error;
pub mod frame;
mod packet;

#[cfg(test)]
pub(crate) mod netns_tests;

use crate::locks::lock;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkLayerType};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub use addr::VipAddr;
pub use error::{VipAction, VipError};
pub use frame::{garp_frame, unsolicited_na_frame};
use packet::PacketSocket;

/// How a VIP is announced on its link, like keepalived's `garp_master_*`
/// settings (which cover unsolicited NAs for IPv6 too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announce {
    /// Frames sent per announcement (keepalived's `garp_master_repeat`, default 5).
    pub count: u32,
    /// Time between two of those frames (keepalived sends them back to back
    /// unless `garp_interval` is set; the default here is 10 ms).
    pub interval: Duration,
    /// Repeat the announcement this often while MASTER (keepalived's
    /// `garp_master_refresh`, default off). The caller schedules it, by
    /// calling [`VipManager::announce`].
    pub refresh: Option<Duration>,
}

impl Default for Announce {
    fn default() -> Self {
        Self {
            count: 5,
            interval: Duration::from_millis(10),
            refresh: None,
        }
    }
}

/// An interface as the VIP code needs it.
struct Link {
    index: u32,
    /// The MAC, for Ethernet interfaces only (nothing to announce on others).
    mac: Option<[u8; 6]>,
}

/// Adds, removes and announces VIPs in one network namespace, over an
/// rtnetlink connection and a send-only `AF_PACKET` socket.
pub struct VipManager {
    handle: rtnetlink::Handle,
    packet: Arc<PacketSocket>,
    ha_debug: bool,
    connection: JoinHandle<()>,
    runtime: tokio::runtime::Handle,
    /// Held for each address dump: the kernel runs one dump at a time per
    /// netlink socket and answers another one meanwhile with EBUSY (seen
    /// with an IPv4 and an IPv6 group changing at once).
    dumping: tokio::sync::Mutex<()>,
    /// The rest of each VIP's announcement after [`VipManager::add_with`],
    /// by address and interface.
    announcing: Mutex<HashMap<(IpAddr, String), JoinHandle<()>>>,
}

impl fmt::Debug for VipManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VipManager")
            .field("ha_debug", &self.ha_debug)
            .finish_non_exhaustive()
    }
}

impl Drop for VipManager {
    fn drop(&mut self) {
        self.connection.abort();
        for (_, task) in self.announcing().drain() {
            task.abort();
        }
    }
}

impl VipManager {
    /// Opens the rtnetlink connection (spawned as a task on the current tokio
    /// runtime) and the `AF_PACKET` socket the announcements go out on.
    ///
    /// **Network namespace**: a socket belongs to the network namespace of
    /// the thread that creates it, for life. So call this from a thread in
    /// the namespace whose VIPs it should manage (a test enters one with
    /// `setns` on its own thread and builds a current-thread runtime there);
    /// afterwards every method acts in that namespace, whichever thread runs
    /// it. With `ha_debug`, nothing that changes the host is done, only
    /// logged; [`present`](Self::present) still looks.
    ///
    /// Needs `CAP_NET_ADMIN` to change addresses and `CAP_NET_RAW` for the
    /// packet socket; fails outside a tokio runtime.
    pub fn new(ha_debug: bool) -> Result<Self, VipError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| VipError::NoRuntime)?;
        let packet = PacketSocket::open().map_err(|source| VipError::Open {
            what: "an AF_PACKET socket for gratuitous ARP / unsolicited NA",
            source,
        })?;
        // Inside the runtime's context: the tokio netlink socket registers
        // with its reactor on creation.
        let _guard = runtime.enter();
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|source| VipError::Open {
                what: "an rtnetlink socket",
                source,
            })?;
        let connection = runtime.spawn(connection);
        Ok(Self {
            handle,
            packet: Arc::new(packet),
            ha_debug,
            connection,
            runtime,
            dumping: tokio::sync::Mutex::new(()),
            announcing: Mutex::new(HashMap::new()),
        })
    }

    /// Whether this manager only logs what it would do.
    pub fn ha_debug(&self) -> bool {
        self.ha_debug
    }

    /// Adds `vip` and announces it with the [`Announce::default`] settings.
    pub async fn add(&self, vip: &VipAddr) -> Result<(), VipError> {
        self.add_with(vip, &Announce::default()).await
    }

    /// Adds `vip` to its interface, then announces it per `announce`: the
    /// first frame before returning, the other `count - 1` from a task of
    /// their own, `interval` apart, so that the caller (an election that
    /// must keep advertising every few milliseconds) is not held up for the
    /// whole announcement. Adding or removing the VIP again stops them.
    ///
    /// An address already there is not an error (and is announced all the
    /// same). IPv6 addresses are added with `IFA_F_NODAD`, usable at once. If
    /// the address was added but the first announcement failed, the address
    /// stays and the error says `announcing ...`; a later failure is logged.
    pub async fn add_with(&self, vip: &VipAddr, announce: &Announce) -> Result<(), VipError> {
        if self.ha_debug {
            info!("HA debug: would add {} to {}", vip.cidr(), vip.interface);
            return self.announce(vip, announce).await;
        }
        let link = self.link(VipAction::Add, vip).await?;
        let mut request = self
            .handle
            .address()
            .add(link.index, vip.addr, vip.prefix_len);
        if vip.addr.is_ipv6() {
            let message = request.message_mut();
            message.header.flags |= AddressHeaderFlags::Nodad;
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match request.execute().await {
            Ok(()) => info!("added {} to {}", vip.cidr(), vip.interface),
            Err(e) if errno(&e) == Some(libc::EEXIST) => {
                debug!("{} is already on {}", vip.cidr(), vip.interface);
            }
            Err(e) => return Err(io_error(VipAction::Add, vip, e)),
        }
        self.start_announcing(&link, vip, announce)
    }

    /// Announces `vip` on its link once more (`announce.count` frames,
    /// `announce.interval` apart, the first before returning and the others
    /// from a task, as [`add_with`](Self::add_with) does): gratuitous ARP
    /// requests for IPv4, unsolicited neighbour advertisements for IPv6. The
    /// caller schedules this every [`Announce::refresh`]; what is left of
    /// the previous announcement of `vip` stops. Nothing is sent on an
    /// interface that is not Ethernet (loopback, tunnels).
    pub async fn announce(&self, vip: &VipAddr, announce: &Announce) -> Result<(), VipError> {
        if self.ha_debug {
            info!(
                "HA debug: would send {} {} for {} on {}, {:?} apart",
                announce.count,
                announcement_kind(vip),
                vip.addr,
                vip.interface,
                announce.interval
            );
            return Ok(());
        }
        let link = self.link(VipAction::Announce, vip).await?;
        self.start_announcing(&link, vip, announce)
    }

    /// Removes `vip` from its interface; an address that is not there is not
    /// an error. Only the address with this prefix length is removed.
    pub async fn remove(&self, vip: &VipAddr) -> Result<(), VipError> {
        // Announcing an address given up would steal it from its new owner.
        self.stop_announcing(vip);
        if self.ha_debug {
            info!(
                "HA debug: would remove {} from {}",
                vip.cidr(),
                vip.interface
            );
            return Ok(());
        }
        let link = self.link(VipAction::Remove, vip).await?;
        let found = self
            .find(link.index, vip)
            .await
            .map_err(|e| io_error(VipAction::Remove, vip, e))?;
        if found.is_empty() {
            debug!(
                "{} is not on {}: nothing to remove",
                vip.cidr(),
                vip.interface
            );
        }
        for message in found {
            match self.handle.address().del(message).execute().await {
                Ok(()) => info!("removed {} from {}", vip.cidr(), vip.interface),
                // Gone in the meantime.
                Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => {}
                Err(e) => return Err(io_error(VipAction::Remove, vip, e)),
            }
        }
        Ok(())
    }

    /// Whether `vip` (address and prefix length) is on its interface.
    pub async fn present(&self, vip: &VipAddr) -> Result<bool, VipError> {
        let link = self.link(VipAction::Query, vip).await?;
        let found = self
            .find(link.index, vip)
            .await
            .map_err(|e| io_error(VipAction::Query, vip, e))?;
        Ok(!found.is_empty())
    }

    /// Looks up `vip`'s interface by name.
    async fn link(&self, action: VipAction, vip: &VipAddr) -> Result<Link, VipError> {
        let no_interface = || VipError::NoInterface {
            action,
            vip: vip.cidr(),
            interface: vip.interface.clone(),
        };
        let mut links = pin!(
            self.handle
                .link()
                .get()
                .match_name(vip.interface.clone())
                .execute()
        );
        let message = match links.try_next().await {
            Ok(Some(message)) => message,
            Ok(None) => return Err(no_interface()),
            Err(e) if errno(&e) == Some(libc::ENODEV) => return Err(no_interface()),
            Err(e) => return Err(io_error(action, vip, e)),
        };
        let mac = (message.header.link_layer_type == LinkLayerType::Ether)
            .then(|| {
                message.attributes.iter().find_map(|a| match a {
                    LinkAttribute::Address(mac) => <[u8; 6]>::try_from(mac.as_slice()).ok(),
                    _ => None,
                })
            })
            .flatten();
        Ok(Link {
            index: message.header.index,
            mac,
        })
    }

    /// The addresses on interface `index` that are `vip` (address and prefix).
    async fn find(
        &self,
        index: u32,
        vip: &VipAddr,
    ) -> Result<Vec<AddressMessage>, rtnetlink::Error> {
        let mut request = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(vip.addr)
            .set_prefix_length_filter(vip.prefix_len);
        // Ask the kernel for one family only.
        request.message_mut().header.family = match vip.addr {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        let _turn = self.dumping.lock().await;
        let mut stream = pin!(request.execute());
        let mut found = Vec::new();
        while let Some(message) = stream.try_next().await? {
            found.push(message);
        }
        Ok(found)
    }

    /// Sends the first announcement frame for `vip` on `link` now and the
    /// other `announce.count - 1` from a task, `announce.interval` apart (see
    /// [`add_with`](Self::add_with)), after stopping what was left of the
    /// previous one.
    fn start_announcing(
        &self,
        link: &Link,
        vip: &VipAddr,
        announce: &Announce,
    ) -> Result<(), VipError> {
        self.stop_announcing(vip);
        let Some((ethertype, frame)) = announcement(link, vip) else {
            return Ok(());
        };
        if announce.count == 0 {
            return Ok(());
        }
        self.packet
            .send(link.index, ethertype, &frame)
            .map_err(|source| announce_error(vip, source))?;
        let (packet, index, vip) = (Arc::clone(&self.packet), link.index, vip.clone());
        let (count, interval) = (announce.count, announce.interval);
        let key = (vip.addr, vip.interface.clone());
        let task = self.runtime.spawn(async move {
            for _ in 1..count {
                if !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                if let Err(source) = packet.send(index, ethertype, &frame) {
                    warn!("{}", announce_error(&vip, source));
                    return;
                }
            }
            debug!(
                "sent {count} {} for {} on {}",
                announcement_kind(&vip),
                vip.addr,
                vip.interface
            );
        });
        let mut announcing = self.announcing();
        announcing.retain(|_, task| !task.is_finished());
        announcing.insert(key, task);
        Ok(())
    }

    /// Stops what is left of `vip`'s announcement, if anything.
    fn stop_announcing(&self, vip: &VipAddr) {
        if let Some(task) = self.announcing().remove(&(vip.addr, vip.interface.clone())) {
            task.abort();
        }
    }

    fn announcing(&self) -> MutexGuard<'_, HashMap<(IpAddr, String), JoinHandle<()>>> {
        lock(&self.announcing)
    }
}

/// The announcement frame for `vip` on `link` with its ethertype; `None`
/// (and a note) on an interface that is not Ethernet.
fn announcement(link: &Link, vip: &VipAddr) -> Option<(u16, Vec<u8>)> {
    let Some(mac) = link.mac else {
        debug!(
            "{} is not an Ethernet interface: not announcing {}",
            vip.interface, vip.addr
        );
        return None;
    };
    Some(match vip.addr {
        IpAddr::V4(ip) => (frame::ETH_P_ARP, garp_frame(mac, ip).to_vec()),
        IpAddr::V6(ip) => (frame::ETH_P_IPV6, unsolicited_na_frame(mac, ip)),
    })
}

/// A failure to send an announcement frame for `vip`.
fn announce_error(vip: &VipAddr, source: io::Error) -> VipError {
    VipError::Io {
        action: VipAction::Announce,
        vip: vip.cidr(),
        interface: vip.interface.clone(),
        source,
    }
}

/// What announcing `vip` sends, for log lines.
fn announcement_kind(vip: &VipAddr) -> &'static str {
    match vip.addr {
        IpAddr::V4(_) => "gratuitous ARP requests",
        IpAddr::V6(_) => "unsolicited neighbour advertisements",
    }
}

/// The (positive) errno of a netlink error from the kernel.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(message) => Some(message.raw_code().abs()),
        _ => None,
    }
}

/// `e` as a [`VipError::Io`] for `action` on `vip`.
fn io_error(action: VipAction, vip: &VipAddr, e: rtnetlink::Error) -> VipError {
    let source = match e {
        rtnetlink::Error::NetlinkError(message) => message.to_io(),
        other => io::Error::other(other),
    };
    VipError::Io {
        action,
        vip: vip.cidr(),
        interface: vip.interface.clone(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_defaults_like_keepalived() {
        let a = Announce::default();
        assert_eq!(a.count, 5, "garp_master_repeat");
        assert_eq!(a.interval, Duration::from_millis(10));
        assert_eq!(a.refresh, None, "garp_master_refresh off");
    }

    #[test]
    fn manager_needs_a_runtime_and_is_shareable() {
        fn shareable<T: Send + Sync>() {}
        shareable::<VipManager>();
        let err = VipManager::new(true).expect_err("no runtime here");
        assert!(matches!(err, VipError::NoRuntime), "{err}");
    }
}
