//! What the XDP program records of the election traffic between peers:
//! VRRP adverts (IP protocol 112) and vipx heartbeats (UDP), with the peer
//! allow-list that decides which sources are dropped.
//!
//! The heartbeat is vipx's own BFD-like packet: a fixed 32-byte UDP payload,
//! every field big-endian on the wire, sent from a real-time thread of each
//! agent to each configured peer. With a cluster secret it carries a
//! SipHash-2-4 tag and an (epoch, sequence) pair that only grows, so the
//! XDP program of the receiving node drops a forged or replayed one; it
//! records the others in [`PeerSeen`] and consumes them (`XDP_DROP`); no
//! socket ever reads them.

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

/// `PeerFilter` value: a VRID no group of the agent uses: every source is
/// recorded (in the LRU `VIPX_PEER_SEEN`) and passed.
pub const FILTER_OFF: u32 = 0;
/// `PeerFilter` value: a group's VRID with an allow-list: other sources
/// are dropped and counted (`reason::PEER_UNKNOWN`); the allowed ones are
/// recorded in `VIPX_PEER_RECORDS`, which never evicts.
pub const FILTER_ON: u32 = 1;
/// `PeerFilter` value: a group's VRID without an allow-list (multicast):
/// every source is recorded in `VIPX_PEER_RECORDS` while it has room; a
/// new source finding it full is not recorded (`reason::PEER_RECORDS_FULL`),
/// and no recorded one is ever evicted for it.
pub const FILTER_OPEN: u32 = 2;
/// Entries of `VIPX_PEER_RECORDS`.
pub const PEER_RECORDS_ENTRIES: u32 = 1024;

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
    /// The heartbeat's epoch: when the sending agent started (0 for VRRP).
    pub epoch: u64,
    /// The heartbeat's sequence number within its epoch (0 for VRRP).
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
    /// 1: heartbeats must carry a valid tag under `key` and a growing
    /// (epoch, sequence); the others are dropped. 0: not checked.
    pub auth: u8,
    pub _pad: [u8; 5],
    /// The heartbeat key (see [`HeartbeatKey`]).
    pub key: HeartbeatKey,
}

/// The 128-bit SipHash-2-4 key of heartbeats, derived from the cluster
/// secret by the agent (`k0`, `k1`: the key's little-endian halves).
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct HeartbeatKey {
    pub k0: u64,
    pub k1: u64,
}

impl core::fmt::Debug for HeartbeatKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Key material is never printed.
        f.write_str("HeartbeatKey(..)")
    }
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
pub const HEARTBEAT_VERSION: u8 = 2;
/// Length of a heartbeat's UDP payload.
pub const HEARTBEAT_LEN: usize = 32;
/// The bytes the tag covers: all before it.
pub const HEARTBEAT_SIGNED_LEN: usize = 24;
/// Default UDP port of heartbeats.
pub const DEFAULT_HEARTBEAT_PORT: u16 = 7374;

/// A heartbeat as it travels (UDP payload, big-endian fields but the tag):
///
/// | bytes | field |
/// |---|---|
/// | 0..4 | magic [`HEARTBEAT_MAGIC`] |
/// | 4 | version [`HEARTBEAT_VERSION`] |
/// | 5 | VRID |
/// | 6 | priority (0: stopping) |
/// | 7 | state (`STATE_*`) |
/// | 8..16 | epoch: when the sending agent started (Unix ns) |
/// | 16..20 | sequence number within the epoch |
/// | 20..23 | interval in microseconds (24 bits) |
/// | 23 | detect multiplier |
/// | 24..32 | tag: SipHash-2-4 of bytes 0..24 under the [`HeartbeatKey`], little-endian; 0 without a key |
///
/// A receiver with the key accepts a heartbeat only with a valid tag and an
/// (epoch, sequence) above the last it accepted from that source: a
/// restarted agent starts a later epoch, a replayed packet is never above.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Heartbeat {
    pub vrid: u8,
    pub priority: u8,
    pub state: u8,
    pub epoch: u64,
    pub seq: u32,
    /// The sender's interval, microseconds (at most 2^24 - 1).
    pub interval_us: u32,
    pub detect_mult: u8,
    /// The tag as received (see [`Heartbeat::authentic`]).
    pub tag: u64,
}

impl Heartbeat {
    /// The payload bytes, tagged under `key` (tag 0 without one).
    #[must_use]
    pub fn encode(&self, key: Option<&HeartbeatKey>) -> [u8; HEARTBEAT_LEN] {
        let mut out = [0u8; HEARTBEAT_LEN];
        out[0..4].copy_from_slice(&HEARTBEAT_MAGIC.to_be_bytes());
        out[4] = HEARTBEAT_VERSION;
        out[5] = self.vrid;
        out[6] = self.priority;
        out[7] = self.state;
        out[8..16].copy_from_slice(&self.epoch.to_be_bytes());
        out[16..20].copy_from_slice(&self.seq.to_be_bytes());
        out[20..23].copy_from_slice(&self.interval_us.min(0x00ff_ffff).to_be_bytes()[1..]);
        out[23] = self.detect_mult;
        let tag = key.map_or(0, |k| Self::tag_of(&out, k));
        out[24..32].copy_from_slice(&tag.to_le_bytes());
        out
    }

    /// The tag `key` gives the signed part of `payload`.
    #[inline(always)]
    #[must_use]
    pub fn tag_of(payload: &[u8; HEARTBEAT_LEN], key: &HeartbeatKey) -> u64 {
        crate::siphash::siphash24::<HEARTBEAT_LEN, HEARTBEAT_SIGNED_LEN>(key.k0, key.k1, payload)
    }

    /// Whether `payload` (this heartbeat's bytes) carries the tag `key`
    /// gives it.
    #[inline(always)]
    #[must_use]
    pub fn authentic(&self, payload: &[u8; HEARTBEAT_LEN], key: &HeartbeatKey) -> bool {
        Self::tag_of(payload, key) == self.tag
    }

    /// Whether this heartbeat comes after (`epoch`, `seq`), the last one
    /// accepted from its source: a later epoch, or the same epoch and a
    /// later sequence number (RFC 1982 serial arithmetic: it wraps).
    #[inline(always)]
    #[must_use]
    pub fn is_after(&self, epoch: u64, seq: u32) -> bool {
        self.epoch > epoch || (self.epoch == epoch && (self.seq.wrapping_sub(seq) as i32) > 0)
    }

    /// Decodes a payload; `None` unless the magic and version match, the
    /// VRID is not 0 and the state is known.
    #[inline(always)]
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
            epoch: u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
            seq: u32::from_be_bytes([b[16], b[17], b[18], b[19]]),
            interval_us: u32::from_be_bytes([0, b[20], b[21], b[22]]),
            detect_mult: b[23],
            tag: u64::from_le_bytes([b[24], b[25], b[26], b[27], b[28], b[29], b[30], b[31]]),
        })
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all five are `#[repr(C)]`, made only of integers and byte
    // arrays, with their padding spelled out as fields.
    unsafe impl aya::Pod for super::PeerKey {}
    unsafe impl aya::Pod for super::PeerSeen {}
    unsafe impl aya::Pod for super::PeerSettings {}
    unsafe impl aya::Pod for super::HeartbeatKey {}
    unsafe impl aya::Pod for super::PeerEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(core::mem::size_of::<PeerKey>(), 20, "PeerKey");
        assert_eq!(core::mem::size_of::<PeerSeen>(), 32, "PeerSeen");
        assert_eq!(core::mem::size_of::<PeerSettings>(), 24, "PeerSettings");
        assert_eq!(core::mem::size_of::<PeerEvent>(), 32, "PeerEvent");
    }

    #[test]
    fn heartbeat_round_trips_and_rejects_foreign_payloads() {
        let hb = Heartbeat {
            vrid: 51,
            priority: 150,
            state: STATE_MASTER,
            epoch: 0x1122_3344_5566_7788,
            seq: 0x0102_0304,
            interval_us: 2000,
            detect_mult: 3,
            tag: 0,
        };
        let bytes = hb.encode(None);
        assert_eq!(&bytes[..4], b"vpHB", "magic");
        assert_eq!(bytes[4], 2, "version 2");
        assert_eq!(
            &bytes[8..16],
            &0x1122_3344_5566_7788u64.to_be_bytes(),
            "epoch"
        );
        assert_eq!(&bytes[16..20], &[1, 2, 3, 4], "sequence");
        assert_eq!(&bytes[20..24], &[0, 0x07, 0xd0, 3], "interval, multiplier");
        assert_eq!(&bytes[24..], &[0; 8], "no key, no tag");
        assert_eq!(Heartbeat::decode(&bytes), Some(hb), "round trip");
        let mut bad = bytes;
        bad[0] = 0;
        assert_eq!(Heartbeat::decode(&bad), None, "bad magic");
        let mut bad = bytes;
        bad[4] = 1;
        assert_eq!(Heartbeat::decode(&bad), None, "version 1");
        let mut bad = bytes;
        bad[5] = 0;
        assert_eq!(Heartbeat::decode(&bad), None, "VRID 0");
        let mut bad = bytes;
        bad[7] = 9;
        assert_eq!(Heartbeat::decode(&bad), None, "unknown state");
    }

    #[test]
    fn a_tagged_heartbeat_is_authentic_under_its_key_only() {
        let key = HeartbeatKey { k0: 7, k1: 11 };
        let hb = Heartbeat {
            vrid: 51,
            priority: 150,
            state: STATE_MASTER,
            epoch: 5,
            seq: 9,
            interval_us: 1000,
            detect_mult: 10,
            tag: 0,
        };
        let bytes = hb.encode(Some(&key));
        let got = Heartbeat::decode(&bytes).expect("decodes");
        // The tag is SipHash-2-4 of the first 24 bytes, little-endian.
        let expected = {
            use core::hash::Hasher as _;
            let mut h = siphasher::sip::SipHasher24::new_with_keys(7, 11);
            h.write(&bytes[..24]);
            h.finish()
        };
        assert_eq!(got.tag, expected, "the tag is SipHash-2-4 of bytes 0..24");
        assert!(got.authentic(&bytes, &key), "authentic under its key");
        assert!(
            !got.authentic(&bytes, &HeartbeatKey { k0: 7, k1: 12 }),
            "not under another key"
        );
        let mut changed = bytes;
        changed[6] = 0;
        let forged = Heartbeat::decode(&changed).expect("decodes");
        assert!(
            !forged.authentic(&changed, &key),
            "a priority changed in flight is not authentic"
        );
    }

    #[test]
    fn heartbeats_order_by_epoch_then_sequence() {
        let hb = |epoch, seq| Heartbeat {
            epoch,
            seq,
            ..Heartbeat::default()
        };
        assert!(hb(5, 10).is_after(5, 9), "the next sequence number");
        assert!(!hb(5, 9).is_after(5, 9), "the same packet again");
        assert!(!hb(5, 8).is_after(5, 9), "an older one");
        assert!(hb(6, 0).is_after(5, 9), "a restarted sender's later epoch");
        assert!(!hb(4, 100).is_after(5, 9), "an earlier epoch");
        assert!(hb(5, 2).is_after(5, u32::MAX - 1), "the sequence wraps");
    }

    fn any_heartbeat() -> impl proptest::strategy::Strategy<Value = Heartbeat> {
        use proptest::prelude::*;
        (
            1..=u8::MAX,
            any::<u8>(),
            STATE_UNKNOWN..=STATE_STOPPING,
            any::<u64>(),
            any::<u32>(),
            0..=0x00ff_ffffu32,
            any::<u8>(),
        )
            .prop_map(
                |(vrid, priority, state, epoch, seq, interval_us, detect_mult)| Heartbeat {
                    vrid,
                    priority,
                    state,
                    epoch,
                    seq,
                    interval_us,
                    detect_mult,
                    tag: 0,
                },
            )
    }

    /// `hb`'s bytes with the tag it carries (`encode` writes the tag of a
    /// key, or 0).
    fn reencoded(hb: &Heartbeat) -> [u8; HEARTBEAT_LEN] {
        let mut bytes = hb.encode(None);
        bytes[HEARTBEAT_SIGNED_LEN..].copy_from_slice(&hb.tag.to_le_bytes());
        bytes
    }

    /// The table of [`Heartbeat`]'s doc: magic, version, a VRID (not 0),
    /// a known state.
    fn valid_by_the_table(bytes: &[u8; HEARTBEAT_LEN]) -> bool {
        bytes[..4] == *b"vpHB" && bytes[4] == 2 && bytes[5] != 0 && bytes[7] <= STATE_STOPPING
    }

    proptest::proptest! {
        /// Every heartbeat the format can carry comes back as it was sent.
        #[test]
        fn every_heartbeat_round_trips(hb in any_heartbeat()) {
            proptest::prop_assert_eq!(Heartbeat::decode(&hb.encode(None)), Some(hb));
        }

        /// Any 32 bytes: decoded exactly when the table of the format says
        /// so, and then nothing is lost or invented (encoding gives the
        /// same bytes back).
        #[test]
        fn any_heartbeat_payload_is_decoded_only_as_the_format_says(
            bytes in proptest::array::uniform32(proptest::prelude::any::<u8>()),
        ) {
            let decoded = Heartbeat::decode(&bytes);
            proptest::prop_assert_eq!(decoded.is_some(), valid_by_the_table(&bytes));
            if let Some(hb) = decoded {
                proptest::prop_assert_eq!(reencoded(&hb), bytes);
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
            let mut bytes = hb.encode(None);
            bytes[at] = value;
            let decoded = Heartbeat::decode(&bytes);
            proptest::prop_assert_eq!(decoded.is_some(), valid_by_the_table(&bytes));
            if let Some(hb) = decoded {
                proptest::prop_assert_eq!(reencoded(&hb), bytes);
            }
        }
    }
}
