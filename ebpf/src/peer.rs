//! The recorder of election traffic between peers: VRRPv3 adverts (passed
//! on to the agent's raw socket) and vipx heartbeats (consumed here). Each
//! packet from an allowed source is recorded in `VIPX_PEER_SEEN`; a new
//! source, a priority or state change and priority 0 are also signalled
//! through the `VIPX_PEER_EVENTS` ring buffer. The record is the truth, the
//! signal a hint: a full ring buffer loses the signal, never the record.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::XdpContext};
use vipx_common::{
    FAMILY_V4, FAMILY_V6, Heartbeat, PeerEvent, PeerKey, PeerSeen,
    peer::{
        EVENT_NEW_SOURCE, EVENT_PRIORITY, EVENT_PRIORITY_ZERO, EVENT_STATE, FILTER_OFF, FILTER_ON,
        HEARTBEAT_LEN, KIND_ALLOW, KIND_HEARTBEAT, KIND_VRRP, STATE_UNKNOWN,
    },
    reason,
};

use crate::{
    BPF_ANY, VIPX_PEER_ALLOW, VIPX_PEER_EVENTS, VIPX_PEER_EVENTS_LOST, VIPX_PEER_FILTER,
    VIPX_PEER_RECORDS, VIPX_PEER_SEEN, VIPX_PEER_SETTINGS,
    decision::Decision,
    parse::{L3, UDP_HLEN, bytes},
};

/// Version 3, type 1 (advertisement): the first byte of a VRRPv3 advert
/// (RFC 5798 section 5.2.1 and 5.2.2).
const VRRP_V3_ADVERT: u8 = 0x31;
/// The fixed VRRP header before the addresses (RFC 5798 section 5.1).
const VRRP_HLEN: usize = 8;

/// What one packet says, to be recorded.
struct Said {
    priority: u8,
    state: u8,
    epoch: u64,
    seq: u32,
    detect_mult: u8,
    /// Recorded only after the (epoch, seq) of the record (an
    /// authenticated heartbeat: a replay is refused).
    ordered: bool,
}

/// Whether a UDP datagram to `dport` is a heartbeat (heartbeats are on).
#[inline(always)]
pub fn is_heartbeat(dport: u16) -> bool {
    match VIPX_PEER_SETTINGS.get(0) {
        Some(settings) => settings.heartbeat_port != 0 && settings.heartbeat_port == dport,
        None => false,
    }
}

/// A VRRP packet (its header at `off`): a VRRPv3 advert from an allowed
/// source is recorded and passed; from another source (filter on) dropped.
/// Anything else VRRP is passed as it is.
#[inline(always)]
pub fn vrrp(ctx: &XdpContext, l3: L3, off: usize) -> Decision {
    let Some(hdr) = bytes::<VRRP_HLEN>(ctx, off) else {
        return Decision::pass(reason::MALFORMED);
    };
    // SAFETY: `bytes` checked the fixed header lies inside the frame.
    let hdr = unsafe { &*hdr };
    let (version_type, vrid, priority) = (hdr[0], hdr[1], hdr[2]);
    // VRID 0 is not a VRID (RFC 5798 section 5.2.3): userspace rejects it.
    if version_type != VRRP_V3_ADVERT || vrid == 0 {
        return Decision::pass(reason::VRRP);
    }
    let said = Said {
        priority,
        state: STATE_UNKNOWN,
        epoch: 0,
        seq: 0,
        detect_mult: 0,
        ordered: false,
    };
    match admit(ctx, l3, vrid, KIND_VRRP).and_then(|admitted| record(&admitted, &said)) {
        Ok(()) => Decision::pass(reason::VRRP),
        Err(why) if why == reason::PEER_UNKNOWN || why == reason::TTL_NOT_255 => {
            Decision::drop(why)
        }
        // Not recorded, but userspace can still judge the advert itself.
        Err(why) => Decision::pass(why),
    }
}

/// A UDP datagram to the heartbeat port (its UDP header at `off`): recorded
/// and dropped; from a source outside the allow-list dropped unrecorded; a
/// payload that is not a heartbeat passed untouched as malformed.
#[inline(always)]
pub fn heartbeat(ctx: &XdpContext, l3: L3, off: usize) -> Decision {
    let Some(udp) = bytes::<UDP_HLEN>(ctx, off) else {
        return Decision::pass(reason::MALFORMED);
    };
    // SAFETY: `bytes` checked the UDP header lies inside the frame.
    let udp = unsafe { &*udp };
    // The frame may be padded (Ethernet minimum): the UDP length tells
    // what the payload is.
    if usize::from(u16::from_be_bytes([udp[4], udp[5]])) < UDP_HLEN + HEARTBEAT_LEN {
        return Decision::pass(reason::MALFORMED);
    }
    let Some(payload) = bytes::<HEARTBEAT_LEN>(ctx, off + UDP_HLEN) else {
        return Decision::pass(reason::MALFORMED);
    };
    // SAFETY: `bytes` checked the payload lies inside the frame.
    let payload = unsafe { &*payload };
    let Some(hb) = Heartbeat::decode(payload) else {
        return Decision::pass(reason::MALFORMED);
    };
    let auth = VIPX_PEER_SETTINGS.get(0).filter(|s| s.auth != 0);
    let said = Said {
        priority: hb.priority,
        state: hb.state,
        epoch: hb.epoch,
        seq: hb.seq,
        detect_mult: hb.detect_mult,
        ordered: auth.is_some(),
    };
    let recorded = admit(ctx, l3, hb.vrid, KIND_HEARTBEAT).and_then(|admitted| {
        // A forged heartbeat can neither force a takeover (priority 0) nor
        // keep a dead master alive: only the cluster key makes the tag.
        if let Some(settings) = auth
            && !hb.authentic(payload, &settings.key)
        {
            return Err(reason::HEARTBEAT_BAD_TAG);
        }
        record(&admitted, &said)
    });
    match recorded {
        Ok(()) => Decision::drop(reason::HEARTBEAT),
        // No socket would read it anyway.
        Err(why)
            if why == reason::PEER_UNKNOWN
                || why == reason::MAP_ERROR
                || why == reason::TTL_NOT_255
                || why == reason::HEARTBEAT_BAD_TAG
                || why == reason::HEARTBEAT_REPLAY
                || why == reason::PEER_RECORDS_FULL =>
        {
            Decision::drop(why)
        }
        Err(why) => Decision::pass(why),
    }
}

/// Checks the TTL (GTSM) and the source against the VRID's allow-list
/// (when its filter is on); the key of the packet's record. `Err` carries
/// the reason slot: `TTL_NOT_255`, `PEER_UNKNOWN` or `MALFORMED`.
#[inline(always)]
fn admit(ctx: &XdpContext, l3: L3, vrid: u8, kind: u8) -> Result<Admitted, u32> {
    // GTSM (RFC 5082): only a packet sent on this link arrives with 255.
    let ttl_off = match l3 {
        L3::V4 { off } => off + 8,
        L3::V6 { off } => off + 7,
    };
    let ttl = bytes::<1>(ctx, ttl_off).ok_or(reason::MALFORMED)?;
    // SAFETY: bounds-checked by `bytes`.
    if unsafe { *ttl }[0] != 255 {
        return Err(reason::TTL_NOT_255);
    }
    let (addr, family) = match l3 {
        L3::V4 { off } => {
            let src = bytes::<4>(ctx, off + 12).ok_or(reason::MALFORMED)?;
            // SAFETY: bounds-checked by `bytes`.
            let src = unsafe { *src };
            // Spelled out whole: zeroing the tail separately becomes a call
            // to `memset`, which the verifier rejects.
            let addr = [
                src[0], src[1], src[2], src[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ];
            (addr, FAMILY_V4)
        }
        L3::V6 { off } => {
            let src = bytes::<16>(ctx, off + 8).ok_or(reason::MALFORMED)?;
            // SAFETY: bounds-checked by `bytes`.
            (unsafe { *src }, FAMILY_V6)
        }
    };
    let mut key = PeerKey {
        addr,
        vrid,
        family,
        kind: KIND_ALLOW,
        _pad: 0,
    };
    let filter = VIPX_PEER_FILTER
        .get(u32::from(vrid))
        .copied()
        .unwrap_or(FILTER_OFF);
    if filter == FILTER_ON && VIPX_PEER_ALLOW.get_ptr(&key).is_none() {
        return Err(reason::PEER_UNKNOWN);
    }
    key.kind = kind;
    Ok(Admitted {
        key,
        protected: filter != FILTER_OFF,
    })
}

/// A packet past the checks: its record's key, and whether the record
/// belongs in the groups' map (`VIPX_PEER_RECORDS`, never evicting) or in
/// the LRU of the other VRIDs.
struct Admitted {
    key: PeerKey,
    protected: bool,
}

/// Updates the record of the packet in place (or inserts it) and signals
/// what changed.
#[inline(always)]
fn record(admitted: &Admitted, said: &Said) -> Result<(), u32> {
    let key = &admitted.key;
    // SAFETY: reading the monotonic clock has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let existing = if admitted.protected {
        VIPX_PEER_RECORDS.get_ptr_mut(key)
    } else {
        VIPX_PEER_SEEN.get_ptr_mut(key)
    };
    let (mut flags, old_priority, old_state) = match existing {
        Some(seen) => {
            // SAFETY: a valid map value pointer; concurrent writers (another
            // CPU with a packet of the same source) only touch these plain
            // integers, and a torn record is one packet old at worst.
            let seen = unsafe { &mut *seen };
            if said.ordered && !is_after(said, seen) {
                return Err(reason::HEARTBEAT_REPLAY);
            }
            let (old_priority, old_state) = (seen.priority, seen.state);
            seen.epoch = said.epoch;
            seen.seq = said.seq;
            seen.priority = said.priority;
            seen.state = said.state;
            seen.detect_mult = said.detect_mult;
            seen.count += 1;
            seen.last_ns = now;
            let mut flags = 0;
            if old_priority != said.priority {
                flags |= EVENT_PRIORITY;
            }
            if old_state != said.state {
                flags |= EVENT_STATE;
            }
            (flags, old_priority, old_state)
        }
        None => {
            let seen = PeerSeen {
                last_ns: now,
                count: 1,
                epoch: said.epoch,
                seq: said.seq,
                priority: said.priority,
                state: said.state,
                detect_mult: said.detect_mult,
                _pad: 0,
            };
            if admitted.protected {
                // Full: the new source waits, no recorded peer is evicted.
                VIPX_PEER_RECORDS
                    .insert(key, &seen, BPF_ANY)
                    .map_err(|_| reason::PEER_RECORDS_FULL)?;
            } else {
                VIPX_PEER_SEEN
                    .insert(key, &seen, BPF_ANY)
                    .map_err(|_| reason::MAP_ERROR)?;
            }
            (EVENT_NEW_SOURCE, 0, STATE_UNKNOWN)
        }
    };
    if said.priority == 0 {
        flags |= EVENT_PRIORITY_ZERO;
    }
    if flags != 0 {
        notify(key, said, now, old_priority, old_state, flags);
    }
    Ok(())
}

/// Whether `said` comes after the record `seen` (see
/// [`Heartbeat::is_after`]).
#[inline(always)]
fn is_after(said: &Said, seen: &PeerSeen) -> bool {
    Heartbeat {
        epoch: said.epoch,
        seq: said.seq,
        ..Heartbeat::default()
    }
    .is_after(seen.epoch, seen.seq)
}

/// Writes one event straight into the ring buffer; when it is full the
/// event is lost and counted (the agent still sees the record).
#[inline(always)]
fn notify(key: &PeerKey, said: &Said, now: u64, old_priority: u8, old_state: u8, flags: u8) {
    let Some(mut entry) = VIPX_PEER_EVENTS.reserve::<PeerEvent>(0) else {
        crate::bump(&VIPX_PEER_EVENTS_LOST, 0, size_of::<PeerEvent>() as u64);
        return;
    };
    entry.write(PeerEvent {
        ktime_ns: now,
        addr: key.addr,
        vrid: key.vrid,
        family: key.family,
        kind: key.kind,
        priority: said.priority,
        old_priority,
        state: said.state,
        old_state,
        flags,
    });
    entry.submit(0);
}
