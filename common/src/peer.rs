//! What the XDP program records of the election traffic between peers:
//! VRRP adverts (IP protocol 112) and vipx heartbeats (UDP), with the peer
//! allow-list that decides which sources are dropped.
//!
//! The heartbeat is vipx's own BFD-like packet: a fixed 16-byte UDP payload,
//! every field big-endian on the wire, sent from a real-time thread of each
//! agent to each configured peer. The XDP program of the receiving node
//! records it in [`PeerSeen`] and consumes it (`XDP_DROP`); no socket ever
//! reads it.

/// `PeerKey::kind` of an allow-list entry of the peer map.
pub const KIND_ALLOW: u8 = 0;
/// `PeerKey::kind` of a recorded VRRP advert.
pub const KIND_VRRP: u8 = 1;
/// `PeerKey::kind` of a recorded heartbeat.
pub const KIND_HEARTBEAT: u8 = 2;

/// `PeerSeen::state` / `Heartbeat::state`: not known (VRRP adverts carry no
/// state; a VRRP advert is a master's by RFC 5798 section 6.4.3).
pub const STATE_UNKNOWN: u8 = 0;
/// The sender is BACKUP.
pub const STATE_BACKUP: u8 = 1;
/// The sender is MASTER. With priority 0: the master is stopping (as
/// VRRP's priority-0 advert, RFC 5798 section 6.4.3).
pub const STATE_MASTER: u8 = 2;
/// The sender is leaving or in FAULT and was not MASTER: it is no
/// candidate.
pub const STATE_STOPPING: u8 = 3;

/// `PeerEvent::flags`: the first packet of this kind from this source (or the
/// first since its record was evicted).
pub const EVENT_NEW_SOURCE: u8 = 1;
/// `PeerEvent::flags`: the priority differs from the recorded one.
pub const EVENT_PRIORITY: u8 = 2;
/// `PeerEvent::flags`: priority 0 (RFC 5798 section 5.2.4: the master
/// stops).
pub const EVENT_PRIORITY_ZERO: u8 = 4;
/// `PeerEvent::flags`: the heartbeat's state differs from the recorded one.
pub const EVENT_STATE: u8 = 8;

/// Entries of the record map (LRU: a flood of forged sources can only evict
/// records, which a live peer refreshes at its next packet).
pub const PEER_SEEN_ENTRIES: u32 = 1024;
/// Entries of the allow-list.
pub const PEER_ALLOW_ENTRIES: u32 = 1024;
/// Slots of the per-VRID filter array (one per VRID, 0 unused).
pub const VRID_SLOTS: u32 = 256;
/// Size of the ring buffer of [`PeerEvent`]s, in bytes (a power of two and a
/// multiple of the page size).
pub const PEER_EVENTS_BYTES: u32 = 64 * 1024;

/// `PeerFilter` value: no allow-list for this VRID, every source is
/// recorded and passed.
pub const FILTER_OFF: u32 = 0;
/// `PeerFilter` value: sources not in the allow-list for this VRID are
/// dropped and counted (`reason::PEER_UNKNOWN`).
pub const FILTER_ON: u32 = 1;

/// Key of the allow-list ([`KIND_ALLOW`]) and of the records (the other
/// kinds). Two maps, so that records (an LRU) never evict the allow-list.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PeerKey {
    /// The source address: IPv4 in the first 4 bytes (network order), the
    /// rest zero; IPv6 all 16 (see [`crate::addr`]).
    pub addr: [u8; 16],
    pub vrid: u8,
    /// [`FAMILY_V4`](crate::FAMILY_V4) or [`FAMILY_V6`](crate::FAMILY_V6).
    pub family: u8,
    /// [`KIND_ALLOW`], [`KIND_VRRP`] or [`KIND_HEARTBEAT`].
    pub kind: u8,
    pub _pad: u8,
}

/// The last packet seen from one source, of one kind, for one VRID.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerSeen {
    /// `bpf_ktime_get_ns` (`CLOCK_MONOTONIC`) when it arrived.
    pub last_ns: u64,
    /// Packets recorded from this source.
    pub count: u64,
    /// The heartbeat's sequence number (0 for VRRP).
    pub seq: u32,
    /// The advertised priority.
    pub priority: u8,
    /// `STATE_*` (heartbeat) or [`STATE_UNKNOWN`] (VRRP).
    pub state: u8,
    /// The heartbeat's detect multiplier, or 0 (VRRP).
    pub detect_mult: u8,
    pub _pad: u8,
}

/// Settings of the recorder: one entry, index 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerSettings {
    /// UDP destination port of heartbeats (host order); 0: heartbeats off,
    /// such packets are ordinary UDP.
    pub heartbeat_port: u16,
    pub _pad: [u8; 6],
}

/// What the program tells the agent through the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerEvent {
    /// `bpf_ktime_get_ns` of the packet.
    pub ktime_ns: u64,
    /// As in [`PeerKey`].
    pub addr: [u8; 16],
    pub vrid: u8,
    pub family: u8,
    /// [`KIND_VRRP`] or [`KIND_HEARTBEAT`].
    pub kind: u8,
    pub priority: u8,
    /// The recorded priority before this packet (0 for a new source).
    pub old_priority: u8,
    pub state: u8,
    pub old_state: u8,
    /// `EVENT_*` bits.
    pub flags: u8,
}

/// First 4 bytes of a heartbeat: "vpHB".
pub const HEARTBEAT_MAGIC: u32 = 0x7670_4842;
/// The heartbeat format version this program and agent speak.
pub const HEARTBEAT_VERSION: u8 = 1;
/// Length of a heartbeat's UDP payload.
pub const HEARTBEAT_LEN: usize = 16;
/// Default UDP port of heartbeats.
pub const DEFAULT_HEARTBEAT_PORT: u16 = 7374;

/// A heartbeat as it travels (UDP payload, big-endian fields):
///
/// | bytes | field |
/// |---|---|
/// | 0..4 | magic [`HEARTBEAT_MAGIC`] |
/// | 4 | version [`HEARTBEAT_VERSION`] |
/// | 5 | VRID |
/// | 6 | priority (0: stopping) |
/// | 7 | state (`STATE_*`) |
/// | 8..12 | sequence number |
/// | 12..15 | interval in microseconds (24 bits) |
/// | 15 | detect multiplier |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Heartbeat {
    pub vrid: u8,
    pub priority: u8,
    pub state: u8,
    pub seq: u32,
    /// The sender's interval, microseconds (at most 2^24 - 1).
    pub interval_us: u32,
    pub detect_mult: u8,
}

impl Heartbeat {
    /// The payload bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; HEARTBEAT_LEN] {
        let mut out = [0u8; HEARTBEAT_LEN];
        let magic = HEARTBEAT_MAGIC.to_be_bytes();
        let seq = self.seq.to_be_bytes();
        let interval = self.interval_us.min(0x00ff_ffff).to_be_bytes();
        out[0] = magic[0];
        out[1] = magic[1];
        out[2] = magic[2];
        out[3] = magic[3];
        out[4] = HEARTBEAT_VERSION;
        out[5] = self.vrid;
        out[6] = self.priority;
        out[7] = self.state;
        out[8] = seq[0];
        out[9] = seq[1];
        out[10] = seq[2];
        out[11] = seq[3];
        out[12] = interval[1];
        out[13] = interval[2];
        out[14] = interval[3];
        out[15] = self.detect_mult;
        out
    }

    /// Decodes a payload; `None` unless the magic and version match, the
    /// VRID is not 0 and the state is known.
    #[must_use]
    pub fn decode(b: &[u8; HEARTBEAT_LEN]) -> Option<Self> {
        if u32::from_be_bytes([b[0], b[1], b[2], b[3]]) != HEARTBEAT_MAGIC
            || b[4] != HEARTBEAT_VERSION
            || b[5] == 0
            || b[7] > STATE_STOPPING
        {
            return None;
        }
        Some(Self {
            vrid: b[5],
            priority: b[6],
            state: b[7],
            seq: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            interval_us: u32::from_be_bytes([0, b[12], b[13], b[14]]),
            detect_mult: b[15],
        })
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all four are `#[repr(C)]`, made only of integers and byte
    // arrays, with their padding spelled out as fields.
    unsafe impl aya::Pod for super::PeerKey {}
    unsafe impl aya::Pod for super::PeerSeen {}
    unsafe impl aya::Pod for super::PeerSettings {}
    unsafe impl aya::Pod for super::PeerEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(core::mem::size_of::<PeerKey>(), 20, "PeerKey");
        assert_eq!(core::mem::size_of::<PeerSeen>(), 24, "PeerSeen");
        assert_eq!(core::mem::size_of::<PeerSettings>(), 8, "PeerSettings");
        assert_eq!(core::mem::size_of::<PeerEvent>(), 32, "PeerEvent");
    }

    #[test]
    fn heartbeat_round_trips_and_rejects_foreign_payloads() {
        let hb = Heartbeat {
            vrid: 51,
            priority: 150,
            state: STATE_MASTER,
            seq: 0x0102_0304,
            interval_us: 2000,
            detect_mult: 3,
        };
        let bytes = hb.encode();
        assert_eq!(&bytes[..4], b"vpHB", "magic");
        assert_eq!(Heartbeat::decode(&bytes), Some(hb), "round trip");
        let mut bad = bytes;
        bad[0] = 0;
        assert_eq!(Heartbeat::decode(&bad), None, "bad magic");
        let mut bad = bytes;
        bad[4] = 2;
        assert_eq!(Heartbeat::decode(&bad), None, "unknown version");
        let mut bad = bytes;
        bad[5] = 0;
        assert_eq!(Heartbeat::decode(&bad), None, "VRID 0");
        let mut bad = bytes;
        bad[7] = 9;
        assert_eq!(Heartbeat::decode(&bad), None, "unknown state");
    }

    fn any_heartbeat() -> impl proptest::strategy::Strategy<Value = Heartbeat> {
        use proptest::prelude::*;
        (
            1..=u8::MAX,
            any::<u8>(),
            STATE_UNKNOWN..=STATE_STOPPING,
            any::<u32>(),
            0..=0x00ff_ffffu32,
            any::<u8>(),
        )
            .prop_map(
                |(vrid, priority, state, seq, interval_us, detect_mult)| Heartbeat {
                    vrid,
                    priority,
                    state,
                    seq,
                    interval_us,
                    detect_mult,
                },
            )
    }

    /// The table of [`Heartbeat`]'s doc: magic, version, a VRID (not 0),
    /// a known state.
    fn valid_by_the_table(bytes: &[u8; HEARTBEAT_LEN]) -> bool {
        bytes[..4] == *b"vpHB" && bytes[4] == 1 && bytes[5] != 0 && bytes[7] <= STATE_STOPPING
    }

    proptest::proptest! {
        /// Every heartbeat the format can carry comes back as it was sent.
        #[test]
        fn every_heartbeat_round_trips(hb in any_heartbeat()) {
            proptest::prop_assert_eq!(Heartbeat::decode(&hb.encode()), Some(hb));
        }

        /// Any 16 bytes: decoded exactly when the table of the format says
        /// so, and then nothing is lost or invented (encoding gives the
        /// same bytes back).
        #[test]
        fn any_heartbeat_payload_is_decoded_only_as_the_format_says(
            bytes in proptest::array::uniform16(proptest::prelude::any::<u8>()),
        ) {
            let decoded = Heartbeat::decode(&bytes);
            proptest::prop_assert_eq!(decoded.is_some(), valid_by_the_table(&bytes));
            if let Some(hb) = decoded {
                proptest::prop_assert_eq!(hb.encode(), bytes);
            }
        }

        /// Random bytes rarely carry the magic: the same, from valid
        /// heartbeats with one byte changed (to 0, 0xff or any value).
        #[test]
        fn a_heartbeat_with_a_changed_byte_is_decoded_only_as_the_format_says(
            hb in any_heartbeat(),
            at in 0..HEARTBEAT_LEN,
            value in proptest::prop_oneof![
                proptest::strategy::Just(0u8),
                proptest::strategy::Just(u8::MAX),
                proptest::prelude::any::<u8>(),
            ],
        ) {
            let mut bytes = hb.encode();
            bytes[at] = value;
            let decoded = Heartbeat::decode(&bytes);
            proptest::prop_assert_eq!(decoded.is_some(), valid_by_the_table(&bytes));
            if let Some(hb) = decoded {
                proptest::prop_assert_eq!(hb.encode(), bytes);
            }
        }
    }
}
