//! Flows: the connection table (client -> VIP direction), the NAT reverse
//! table (backend -> VIP direction), and the flow hash that picks a Maglev
//! slot and a NAT port.

/// Flow flag: the client sent a FIN.
pub const FLOW_F_FIN_CLIENT: u8 = 1;
/// Flow flag: the backend sent a FIN.
pub const FLOW_F_FIN_BACKEND: u8 = 2;
/// Flow flag: installed from a peer's replication, not created by this
/// node's XDP program (which never sets it).
pub const FLOW_F_REPLICA: u8 = 4;
/// Flow flag (TCP): the connection is known to be up: in nat mode the
/// backend answered, in dsr mode (where replies bypass the node) the client
/// sent a segment without SYN on the flow. A TCP flow without it is
/// embryonic: forgotten after `embryonic_timeout`, and counted against
/// its backend's share of NAT ports.
pub const FLOW_F_ESTABLISHED: u8 = 8;
/// Flow flag (TCP): a RST was seen, at `last_seen_ns`. The endpoints judge
/// a RST's sequence number (RFC 5961), the program does not: the flow ends
/// when it has stayed quiet for `rst_timeout` after it, and a segment
/// without RST at least [`RST_SETTLE_NS`] after it (not one already in
/// flight) clears the flag.
pub const FLOW_F_RST: u8 = 16;
/// How long after a RST a segment may still have been in flight: only a
/// later one shows the connection lives on.
pub const RST_SETTLE_NS: u64 = 200_000_000;

/// Default size of the flow table and of the NAT table (hash maps, never
/// evicting: a full table refuses new flows).
pub const DEFAULT_FLOW_ENTRIES: u32 = 262_144;
/// Attempts to find a free NAT port before the flow is refused.
pub const NAT_PORT_TRIES: u32 = 8;
/// Seed of the Maglev slot hash.
pub const SEED_MAGLEV: u32 = 0x7669_7078; // "vipx"
/// Seed of the NAT port hash.
pub const SEED_NAT_PORT: u32 = 0x6e61_7470; // "natp"

/// A 5-tuple. In the flow table it is the client -> VIP direction; in the
/// NAT table the backend -> VIP reply direction (src = backend, dst = VIP,
/// dport = NAT port).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct FlowKey {
    /// Source address (IPv4 in the first 4 bytes, the rest zero).
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Source port, host byte order.
    pub sport: u16,
    /// Destination port, host byte order.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// [`FAMILY_V4`](crate::FAMILY_V4) or [`FAMILY_V6`](crate::FAMILY_V6).
    pub family: u8,
    pub _pad: [u8; 2],
}

/// A flow: value of the `VIPX_FLOWS` hash map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct Flow {
    /// Backend id the flow is pinned to.
    pub backend: u32,
    /// Service id.
    pub service: u32,
    /// NAT source port towards the backend (nat mode; 0 in dsr mode).
    pub nat_port: u16,
    /// `FLOW_F_*`.
    pub flags: u8,
    pub _pad: u8,
    /// VIP group of the service.
    pub group: u32,
    /// `bpf_ktime_get_ns` when the flow was created.
    pub created_ns: u64,
    /// `bpf_ktime_get_ns` of its last packet (either direction).
    pub last_seen_ns: u64,
}

/// Value of the `VIPX_NAT` hash map: how to send a backend's reply back.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct NatEntry {
    /// The flow's key as the client sent it (client -> VIP:port).
    pub client: FlowKey,
    /// MAC to send replies to (the client's, or its router's).
    pub client_mac: [u8; 6],
    pub _pad: [u8; 2],
    /// VIP group of the service.
    pub group: u32,
    /// Service id.
    pub service: u32,
}

/// The NAT table key of the replies of a nat-mode flow.
#[inline(always)]
#[must_use]
pub const fn nat_key(
    client: &FlowKey,
    backend_addr: [u8; 16],
    backend_port: u16,
    nat_port: u16,
) -> FlowKey {
    FlowKey {
        src: backend_addr,
        dst: client.dst,
        sport: backend_port,
        dport: nat_port,
        proto: client.proto,
        family: client.family,
        _pad: [0; 2],
    }
}

#[inline(always)]
const fn word(bytes: &[u8; 16], i: usize) -> u32 {
    u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]])
}

#[inline(always)]
const fn mix(h: u32, k: u32) -> u32 {
    // MurmurHash3's 32-bit block step.
    let k = k
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// Hash of a 5-tuple (MurmurHash3 over its 10 words). The XDP program uses
/// it to pick the Maglev slot (`seed` = [`SEED_MAGLEV`]) and the NAT port
/// ([`SEED_NAT_PORT`]); the agent uses it to predict both. Identical on
/// every node, so a flow maps to the same backend wherever it lands.
#[inline(always)]
#[must_use]
pub const fn flow_hash(key: &FlowKey, seed: u32) -> u32 {
    let mut h = seed;
    h = mix(h, word(&key.src, 0));
    h = mix(h, word(&key.src, 4));
    h = mix(h, word(&key.src, 8));
    h = mix(h, word(&key.src, 12));
    h = mix(h, word(&key.dst, 0));
    h = mix(h, word(&key.dst, 4));
    h = mix(h, word(&key.dst, 8));
    h = mix(h, word(&key.dst, 12));
    h = mix(h, ((key.sport as u32) << 16) | key.dport as u32);
    h = mix(h, ((key.proto as u32) << 8) | key.family as u32);
    // fmix32
    h ^= 40;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Size of the ring buffer of [`FlowEvent`]s, in bytes (a power of two and
/// a multiple of the page size): about 13,000 events.
pub const FLOW_EVENTS_BYTES: u32 = 1 << 20;
/// [`FlowEvent::kind`]: the program created the flow.
pub const FLOW_EVENT_NEW: u8 = 1;
/// [`FlowEvent::kind`]: the flow ended (sent by agents of older versions,
/// whose program forgot a flow at a RST; this one reports no end: peers
/// expire their copies by the same rules).
pub const FLOW_EVENT_END: u8 = 2;
/// [`FlowEvent::kind`]: the flow's state changed (established, RST seen or
/// cleared): the peers replace their copy.
pub const FLOW_EVENT_UPDATE: u8 = 3;

/// The data plane's flow settings: value of the one-entry
/// `VIPX_FLOW_SETTINGS` array, written by the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSettings {
    /// Percent of a nat service's NAT port range that embryonic TCP flows
    /// may hold per backend; 0: no limit (the agent always writes its
    /// configured share).
    pub embryonic_share: u32,
}

/// The most embryonic flows a backend may have for a service whose NAT
/// port range holds `span` ports, at `share` percent; 0: no limit.
#[inline(always)]
#[must_use]
pub const fn embryonic_limit(span: u32, share: u32) -> u32 {
    if share == 0 || share >= 100 {
        return 0;
    }
    let limit = span / 100 * share + span % 100 * share / 100;
    if limit == 0 { 1 } else { limit }
}

/// What the program reports of a flow for replication, through the
/// `VIPX_FLOW_EVENTS` ring buffer, while `VIPX_FLOW_EVENTS_ON` says so.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    /// The flow's key (client -> VIP:port).
    pub key: FlowKey,
    /// The flow as the table holds it (this node's ids).
    pub flow: Flow,
    /// The client's MAC (or its router's) as the first packet brought it.
    pub client_mac: [u8; 6],
    /// [`FLOW_EVENT_NEW`] or [`FLOW_EVENT_UPDATE`].
    pub kind: u8,
    pub _pad: u8,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, integers and byte arrays, explicit padding.
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::Flow {}
    unsafe impl aya::Pod for super::NatEntry {}
    unsafe impl aya::Pod for super::FlowEvent {}
    unsafe impl aya::Pod for super::FlowSettings {}
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<Flow>(), 32);
        assert_eq!(size_of::<NatEntry>(), 56);
        assert_eq!(size_of::<FlowEvent>(), 80);
    }

    fn key(sport: u16) -> FlowKey {
        let mut k = FlowKey {
            sport,
            dport: 5432,
            proto: 6,
            family: 4,
            ..FlowKey::default()
        };
        k.src[..4].copy_from_slice(&[10, 0, 0, 1]);
        k.dst[..4].copy_from_slice(&[10, 0, 0, 100]);
        k
    }

    #[test]
    fn hash_is_pinned_and_spreads() {
        // Pinned: nodes running different builds must agree.
        assert_eq!(
            flow_hash(&key(40000), SEED_MAGLEV),
            flow_hash(&key(40000), SEED_MAGLEV)
        );
        assert_ne!(
            flow_hash(&key(40000), SEED_MAGLEV),
            flow_hash(&key(40000), SEED_NAT_PORT)
        );
        // Consecutive source ports spread over 8 buckets within 20% of even.
        let mut buckets = [0u32; 8];
        for port in 0..8000u16 {
            buckets[(flow_hash(&key(port), SEED_MAGLEV) % 8) as usize] += 1;
        }
        for count in buckets {
            assert!((800..1200).contains(&count), "uneven buckets {buckets:?}");
        }
    }

    #[test]
    fn embryonic_flows_get_their_share_of_a_range() {
        assert_eq!(embryonic_limit(28_232, 50), 14_116);
        assert_eq!(embryonic_limit(1000, 10), 100);
        assert_eq!(embryonic_limit(3, 10), 1, "at least one");
        assert_eq!(embryonic_limit(1000, 0), 0, "no limit");
        assert_eq!(embryonic_limit(1000, 100), 0, "the whole range: no limit");
        assert_eq!(embryonic_limit(u32::from(u16::MAX) + 1, 99), 64_880);
    }

    #[test]
    fn nat_key_is_the_reply_direction() {
        let client = key(40000);
        let backend = {
            let mut a = [0; 16];
            a[..4].copy_from_slice(&[10, 0, 0, 31]);
            a
        };
        let reply = nat_key(&client, backend, 6432, 61000);
        assert_eq!(reply.src, backend);
        assert_eq!(reply.dst, client.dst);
        assert_eq!((reply.sport, reply.dport), (6432, 61000));
    }
}
