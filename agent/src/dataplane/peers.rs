//! The peer maps of the XDP program: the allow-list of election peers per
//! VRID, the heartbeat port, the records of the last VRRP advert and vipx
//! heartbeat seen from each source, and the ring buffer of [`PeerEvent`]s
//! that signals a new source, a priority or state change and priority 0.
//!
//! Readers: the real-time heartbeat thread polls [`PeerMaps::seen`] (a
//! lookup or two, no allocation, one lock that only a reload removing a
//! group ever holds) and drains [`PeerEvents`] when its
//! descriptor is readable; `/metrics` and `status` list
//! [`PeerMaps::records`].

use crate::locks::lock;
use std::{
    net::IpAddr,
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    sync::Mutex,
};

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, MapError, RingBuf},
};
use vipx_common::{
    HeartbeatKey, MAP_PEER_ALLOW, MAP_PEER_EVENTS, MAP_PEER_FILTER, MAP_PEER_RECORDS,
    MAP_PEER_SEEN, MAP_PEER_SETTINGS, PeerEvent, PeerKey, PeerSeen, PeerSettings, addr,
    peer::{FILTER_OFF, FILTER_ON, FILTER_OPEN, KIND_ALLOW},
};

use super::{error::DataplaneError, maps::take};

/// The value of an allow-list entry.
const ALLOWED: u32 = 1;

/// The allow-list, the filter switches, the heartbeat port and the records.
///
/// `Send + Sync`: share it in an `Arc`. Writers serialise on internal
/// locks; [`PeerMaps::seen`] and [`PeerMaps::records`] take only the lock
/// of the groups' records, which [`PeerMaps::release`] holds while it
/// frees a removed group's records.
pub struct PeerMaps {
    allow: Mutex<HashMap<MapData, PeerKey, u32>>,
    filter: Mutex<Array<MapData, u32>>,
    settings: Mutex<Array<MapData, PeerSettings>>,
    /// The records of the VRIDs no group uses (LRU).
    seen: HashMap<MapData, PeerKey, PeerSeen>,
    /// The records of the groups' VRIDs (never evicting).
    records: Mutex<HashMap<MapData, PeerKey, PeerSeen>>,
}

/// The key of `source`'s entry of `kind` (`peer::KIND_*`) for VRID `vrid`,
/// as the XDP program builds it from a packet.
pub fn peer_key(vrid: u8, kind: u8, source: IpAddr) -> PeerKey {
    let (addr, family) = addr::to_map(source);
    PeerKey {
        addr,
        vrid,
        family,
        kind,
        _pad: 0,
    }
}

/// The source address of a key; `None` for an unknown family.
pub fn key_addr(key: &PeerKey) -> Option<IpAddr> {
    addr::from_map(key.family, &key.addr)
}

/// The source address of an event; `None` for an unknown family.
pub fn event_addr(event: &PeerEvent) -> Option<IpAddr> {
    addr::from_map(event.family, &event.addr)
}

/// Removes the entries of `map` (named `name`) whose key `doomed` picks;
/// one already gone is no error.
fn remove_where<V: aya::Pod>(
    map: &mut HashMap<MapData, PeerKey, V>,
    name: &'static str,
    doomed: impl Fn(&PeerKey) -> bool,
) -> Result<(), DataplaneError> {
    let keys: Vec<PeerKey> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|key| doomed(key))
        .collect();
    for key in &keys {
        match map.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(source) => return Err(DataplaneError::Map { name, source }),
        }
    }
    Ok(())
}

fn map_error(name: &'static str) -> impl FnOnce(MapError) -> DataplaneError {
    move |source| DataplaneError::Map { name, source }
}

impl PeerMaps {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self, DataplaneError> {
        Ok(Self {
            allow: Mutex::new(take(ebpf, MAP_PEER_ALLOW)?),
            filter: Mutex::new(take(ebpf, MAP_PEER_FILTER)?),
            settings: Mutex::new(take(ebpf, MAP_PEER_SETTINGS)?),
            seen: take(ebpf, MAP_PEER_SEEN)?,
            records: Mutex::new(take(ebpf, MAP_PEER_RECORDS)?),
        })
    }

    /// Sets the UDP destination port of heartbeats (0 turns heartbeat
    /// recording off: such datagrams are then ordinary UDP) and the key
    /// their tags must be made with (none: tags are not checked).
    pub fn set_heartbeat(
        &self,
        port: u16,
        key: Option<HeartbeatKey>,
    ) -> Result<(), DataplaneError> {
        let settings = PeerSettings {
            heartbeat_port: port,
            auth: u8::from(key.is_some()),
            _pad: [0; 5],
            key: key.unwrap_or_default(),
        };
        lock(&self.settings)
            .set(0, settings, 0)
            .map_err(map_error(MAP_PEER_SETTINGS))
    }

    /// Makes VRID `vrid` a group's and replaces its allow-list with
    /// `peers`. With peers, the filter is on: adverts and heartbeats of this
    /// VRID from any other source are dropped (`peer_unknown`). Without,
    /// it is open: every source is recorded and passed. Either way its
    /// records live in the map that never evicts.
    ///
    /// The order keeps allowed peers admitted throughout: new entries
    /// first, then the filter, then the removal of the old entries.
    pub fn set_peers(&self, vrid: u8, peers: &[IpAddr]) -> Result<(), DataplaneError> {
        let mut allow = lock(&self.allow);
        let mut filter = lock(&self.filter);
        let wanted: Vec<PeerKey> = peers
            .iter()
            .map(|addr| peer_key(vrid, KIND_ALLOW, *addr))
            .collect();
        for key in &wanted {
            allow
                .insert(key, ALLOWED, 0)
                .map_err(|source| match source {
                    MapError::SyscallError(ref e)
                        if e.io_error.raw_os_error() == Some(libc::E2BIG) =>
                    {
                        DataplaneError::Full("peers")
                    }
                    source => DataplaneError::Map {
                        name: MAP_PEER_ALLOW,
                        source,
                    },
                })?;
        }
        let switch = if wanted.is_empty() {
            FILTER_OPEN
        } else {
            FILTER_ON
        };
        filter
            .set(u32::from(vrid), switch, 0)
            .map_err(map_error(MAP_PEER_FILTER))?;
        remove_where(&mut allow, MAP_PEER_ALLOW, |key| {
            key.vrid == vrid && !wanted.contains(key)
        })
    }

    /// VRID `vrid` is no group's any more: no allow-list, its records go
    /// to the LRU again, and the ones it kept in the groups' map are freed.
    pub fn release(&self, vrid: u8) -> Result<(), DataplaneError> {
        self.set_peers(vrid, &[])?;
        lock(&self.filter)
            .set(u32::from(vrid), FILTER_OFF, 0)
            .map_err(map_error(MAP_PEER_FILTER))?;
        remove_where(&mut lock(&self.records), MAP_PEER_RECORDS, |key| {
            key.vrid == vrid
        })
    }

    /// The allowed peers of VRID `vrid` (an empty list: filter off).
    pub fn peers(&self, vrid: u8) -> Vec<IpAddr> {
        let allow = lock(&self.allow);
        let mut peers: Vec<IpAddr> = allow
            .keys()
            .filter_map(Result::ok)
            .filter(|key| key.vrid == vrid)
            .filter_map(|key| key_addr(&key))
            .collect();
        peers.sort_unstable();
        peers
    }

    /// The last packet of `kind` (`peer::KIND_VRRP` or
    /// `peer::KIND_HEARTBEAT`) recorded from `addr` for VRID `vrid`, or
    /// `None` if there is none (never seen, or evicted).
    ///
    /// At most two `bpf_map_lookup_elem` (the groups' records, then the
    /// others'), no allocation, fit for a real-time thread. The program updates records in place, so the
    /// fields may come from two consecutive packets.
    pub fn seen(
        &self,
        vrid: u8,
        kind: u8,
        addr: IpAddr,
    ) -> Result<Option<PeerSeen>, DataplaneError> {
        let key = peer_key(vrid, kind, addr);
        match lock(&self.records).get(&key, 0) {
            Ok(seen) => return Ok(Some(seen)),
            Err(MapError::KeyNotFound) => {}
            Err(source) => {
                return Err(DataplaneError::Map {
                    name: MAP_PEER_RECORDS,
                    source,
                });
            }
        }
        match self.seen.get(&key, 0) {
            Ok(seen) => Ok(Some(seen)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(DataplaneError::Map {
                name: MAP_PEER_SEEN,
                source,
            }),
        }
    }

    /// Every record (for metrics and status): the groups' VRIDs', then the
    /// others'.
    pub fn records(&self) -> Vec<(PeerKey, PeerSeen)> {
        let mut all: Vec<(PeerKey, PeerSeen)> =
            lock(&self.records).iter().filter_map(Result::ok).collect();
        all.extend(self.seen.iter().filter_map(Result::ok));
        all
    }
}

/// The ring buffer of [`PeerEvent`]s. One consumer: the data plane hands it
/// out once ([`super::Dataplane::take_peer_events`]). Poll its descriptor
/// for readability (epoll, `poll(2)`), then call [`PeerEvents::next`] until
/// it returns `None`.
///
/// Events are hints: when the buffer is full the program drops them but
/// still writes the records, so a consumer that may have missed some should
/// read the records ([`PeerMaps::seen`]).
pub struct PeerEvents {
    ring: RingBuf<MapData>,
}

impl PeerEvents {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self, DataplaneError> {
        Ok(Self {
            ring: take(ebpf, MAP_PEER_EVENTS)?,
        })
    }

    /// The next event, or `None` when the buffer is empty. Never blocks and
    /// does not allocate.
    #[expect(
        clippy::should_implement_trait,
        reason = "a drain of a ring buffer that refills, not an iterator that ends"
    )]
    pub fn next(&mut self) -> Option<PeerEvent> {
        while let Some(item) = self.ring.next() {
            if item.len() >= size_of::<PeerEvent>() {
                // SAFETY: at least `size_of::<PeerEvent>()` readable bytes;
                // `PeerEvent` is plain integers, valid for any bytes.
                return Some(unsafe { item.as_ptr().cast::<PeerEvent>().read_unaligned() });
            }
        }
        None
    }
}

impl std::fmt::Debug for PeerMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerMaps").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for PeerEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerEvents")
            .field("fd", &self.ring.as_raw_fd())
            .finish_non_exhaustive()
    }
}

impl AsFd for PeerEvents {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ring.as_fd()
    }
}

impl AsRawFd for PeerEvents {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vipx_common::{
        FAMILY_V4, FAMILY_V6,
        peer::{KIND_HEARTBEAT, KIND_VRRP},
    };

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn handles_cross_threads() {
        assert_send_sync::<PeerMaps>();
        assert_send::<PeerEvents>();
    }

    #[test]
    fn keys_round_trip_both_families() {
        let v4: IpAddr = "192.0.2.7".parse().expect("IPv4 literal");
        let key = peer_key(51, KIND_VRRP, v4);
        assert_eq!(key.addr[..4], [192, 0, 2, 7], "IPv4 in the first 4 bytes");
        assert_eq!(key.addr[4..], [0; 12], "the rest zero");
        assert_eq!((key.vrid, key.family, key.kind), (51, FAMILY_V4, KIND_VRRP));
        assert_eq!(key_addr(&key), Some(v4));

        let v6: IpAddr = "2001:db8::7".parse().expect("IPv6 literal");
        let key = peer_key(52, KIND_HEARTBEAT, v6);
        assert_eq!((key.family, key.kind), (FAMILY_V6, KIND_HEARTBEAT));
        assert_eq!(key_addr(&key), Some(v6));

        let bad = PeerKey { family: 9, ..key };
        assert_eq!(key_addr(&bad), None, "unknown family");
    }
}
