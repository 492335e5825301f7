//! Properties of the replication codec over generated messages and
//! bytes: every message round-trips through a frame; any bytes are an
//! error or a message that encodes back to them; an encoding cut short or
//! followed by more bytes is an error.

use std::net::{IpAddr, SocketAddr};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tokio_util::codec::{Decoder as _, Encoder as _};
use vipx_common::FlowKey;

use super::*;

fn record() -> impl Strategy<Value = FlowRecord> {
    (
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<u16>(),
        ),
        (any::<u8>(), prop_oneof![Just(4u8), Just(6u8)]),
        (any::<[u8; 16]>(), any::<bool>(), any::<u16>()),
        (any::<u16>(), any::<[u8; 6]>(), any::<u8>(), any::<u32>()),
    )
        .prop_map(
            |(
                (src, dst, sport, dport),
                (proto, family),
                (backend, v6, port),
                (nat_port, client_mac, flags, idle_ms),
            )| {
                let addr = if v6 {
                    IpAddr::from(backend)
                } else {
                    IpAddr::from([backend[0], backend[1], backend[2], backend[3]])
                };
                FlowRecord {
                    key: FlowKey {
                        src,
                        dst,
                        sport,
                        dport,
                        proto,
                        family,
                        _pad: [0; 2],
                    },
                    backend: SocketAddr::new(addr, port),
                    nat_port,
                    client_mac,
                    flags,
                    idle_ms,
                }
            },
        )
}

fn message() -> impl Strategy<Value = Message> {
    let entry = prop_oneof![
        record().prop_map(Entry::Flow),
        record().prop_map(Entry::End)
    ];
    let resume = prop_oneof![any::<u64>().prop_map(Resume::After), Just(Resume::Bulk)];
    prop_oneof![
        (any::<u16>(), ".{0,20}", any::<u64>(), any::<Nonce>()).prop_map(
            |(version, node, epoch, nonce)| Message::Hello {
                version,
                node,
                epoch,
                nonce
            }
        ),
        (".{0,20}", any::<Nonce>(), any::<Proof>(), resume).prop_map(
            |(node, nonce, proof, resume)| Message::Welcome {
                node,
                nonce,
                proof,
                resume
            }
        ),
        any::<Proof>().prop_map(|proof| Message::Proven { proof }),
        (any::<u64>(), proptest::collection::vec(entry, 0..8))
            .prop_map(|(seq, entries)| Message::Batch { seq, entries }),
        any::<u64>().prop_map(|seq| Message::Synced { seq }),
        any::<u64>().prop_map(|seq| Message::Ack { seq }),
        ".{0,40}".prop_map(|reason| Message::Refused { reason }),
        Just(Message::Ping),
        Just(Message::Pong),
    ]
}

proptest! {
    /// Encoded, framed, unframed and decoded: the same message.
    #[test]
    fn every_message_round_trips_through_a_frame(message in message()) {
        let mut wire = BytesMut::new();
        codec().encode(Bytes::from(encode(&message).expect("encodes")), &mut wire).expect("frames");
        let frame = codec().decode(&mut wire).expect("a whole frame").expect("one frame");
        prop_assert!(wire.is_empty(), "one frame, nothing left");
        prop_assert_eq!(decode(&frame), Ok(message));
    }

    /// Any bytes: an error, or a message that encodes to exactly those
    /// bytes (nothing ignored, nothing read two ways).
    #[test]
    fn any_bytes_decode_to_an_error_or_their_message(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(message) = decode(&bytes) {
            prop_assert_eq!(encode(&message).expect("encodes"), bytes);
        }
    }

    #[test]
    fn a_cut_or_extended_message_is_an_error(
        message in message(),
        cut in any::<prop::sample::Index>(),
        extra in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        let bytes = encode(&message).expect("encodes");
        let short = &bytes[..cut.index(bytes.len())];
        prop_assert!(decode(short).is_err(), "cut to {} of {} bytes", short.len(), bytes.len());
        let long = [bytes.as_slice(), &extra].concat();
        prop_assert!(decode(&long).is_err(), "{} bytes added", extra.len());
    }

    /// A stream of garbage never makes the framing panic, and a frame
    /// announced beyond [`MAX_FRAME`] is an error, not an allocation.
    #[test]
    fn any_stream_is_framed_or_refused(stream in proptest::collection::vec(any::<u8>(), 0..64), huge in (MAX_FRAME as u32 + 1)..) {
        let mut wire = BytesMut::from(stream.as_slice());
        let mut framing = codec();
        while let Ok(Some(frame)) = framing.decode(&mut wire) {
            let _ = decode(&frame);
        }
        let mut announced = BytesMut::from(&huge.to_be_bytes()[..]);
        prop_assert!(codec().decode(&mut announced).is_err());
    }
}
