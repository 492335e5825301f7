//! The replication channel on the wire: length-delimited frames
//! (`tokio_util`'s codec: a 4-byte big-endian length, then the payload),
//! each payload one [`Message`] encoded with `postcard` (serde). The first
//! message of a connection carries [`VERSION`]; a peer that speaks another
//! version is refused with a reason.

use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

use crate::balancer::replica::FlowRecord;

/// The protocol version this agent speaks.
pub const VERSION: u16 = 2;
/// The largest frame accepted: a batch of [`MAX_BATCH`] records is about
/// 100 bytes a record.
pub const MAX_FRAME: usize = 1 << 20;
/// Records in one batch, at most.
pub const MAX_BATCH: usize = 512;
/// Bytes of a nonce.
pub const NONCE_LEN: usize = 16;
/// Bytes of a proof (HMAC-SHA256).
pub const PROOF_LEN: usize = 32;

/// A nonce: random, once per connection and side.
pub type Nonce = [u8; NONCE_LEN];
/// A proof of the cluster secret.
pub type Proof = [u8; PROOF_LEN];

/// What a sender and a receiver say to each other. The sender (the node
/// whose flows travel) connects; the receiver installs what it gets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Sender -> receiver, first: who it is, which run of its agent
    /// (`epoch`: random at start), and a nonce for the receiver's proof.
    Hello {
        version: u16,
        node: String,
        epoch: u64,
        nonce: Nonce,
    },
    /// Receiver -> sender: its own proof of the secret, its nonce, and
    /// where the sender resumes.
    Welcome {
        node: String,
        nonce: Nonce,
        proof: Proof,
        resume: Resume,
    },
    /// Sender -> receiver: its proof of the secret.
    Proven { proof: Proof },
    /// Sender -> receiver: records, numbered from 1 within an epoch.
    Batch { seq: u64, entries: Vec<Entry> },
    /// Sender -> receiver: after batch `seq`, the receiver holds every flow
    /// the sender had when its bulk transfer began (and what came since).
    Synced { seq: u64 },
    /// Receiver -> sender: every batch up to `seq` is installed.
    Ack { seq: u64 },
    /// Either side: the connection is refused, and why.
    Refused { reason: String },
    /// Sender -> receiver, every [`super::session::KEEPALIVE`]: the
    /// connection lives (a silent link is dropped after
    /// [`super::session::SILENCE`] by either end).
    Ping,
    /// Receiver -> sender: the answer to a [`Message::Ping`].
    Pong,
}

/// Where a reconnecting sender resumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resume {
    /// The receiver holds every batch up to this one from this epoch.
    After(u64),
    /// The receiver holds nothing of this epoch: send the whole table.
    Bulk,
}

/// One change of the sender's flow table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    /// A flow (new, or its latest state).
    Flow(FlowRecord),
    /// The flow ended (reset, or forgotten after its timeout).
    End(FlowRecord),
}

/// The frame codec of the channel.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// Encodes a message into a frame's payload.
pub fn encode(message: &Message) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(message)
}

/// Decodes a frame's payload: exactly one message. Bytes left after it
/// mean the frame is not what this version sends (`postcard` itself
/// would ignore them): "not well encoded".
pub fn decode(payload: &[u8]) -> Result<Message, postcard::Error> {
    match postcard::take_from_bytes(payload)? {
        (message, []) => Ok(message),
        _ => Err(postcard::Error::DeserializeBadEncoding),
    }
}

#[cfg(test)]
#[path = "wire_proptests.rs"]
mod proptests;

#[cfg(test)]
mod tests {
    use vipx_common::FlowKey;

    use super::*;

    fn record(port: u16) -> FlowRecord {
        let mut key = FlowKey {
            sport: port,
            dport: 5432,
            proto: 6,
            family: 4,
            ..FlowKey::default()
        };
        key.src[..4].copy_from_slice(&[10, 77, 0, 50]);
        key.dst[..4].copy_from_slice(&[10, 77, 0, 100]);
        FlowRecord {
            key,
            backend: "10.77.0.30:6432".parse().expect("addr"),
            nat_port: 40_001,
            client_mac: [2, 0, 0, 0, 0, 0x50],
            flags: 0,
            idle_ms: 12,
        }
    }

    #[test]
    fn every_message_survives_the_round_trip() {
        let messages = [
            Message::Hello {
                version: VERSION,
                node: "n1".into(),
                epoch: 7,
                nonce: [1; NONCE_LEN],
            },
            Message::Welcome {
                node: "n2".into(),
                nonce: [2; NONCE_LEN],
                proof: [3; PROOF_LEN],
                resume: Resume::After(41),
            },
            Message::Proven {
                proof: [4; PROOF_LEN],
            },
            Message::Batch {
                seq: 42,
                entries: vec![Entry::Flow(record(50_000)), Entry::End(record(50_001))],
            },
            Message::Synced { seq: 42 },
            Message::Ack { seq: 42 },
            Message::Refused {
                reason: "bad proof".into(),
            },
            Message::Ping,
            Message::Pong,
        ];
        for message in messages {
            let payload = encode(&message).expect("encodes");
            assert_eq!(decode(&payload).expect("decodes"), message);
        }
    }

    #[test]
    fn a_full_batch_fits_in_a_frame() {
        let entries = (0..MAX_BATCH as u16)
            .map(|i| Entry::Flow(record(i)))
            .collect();
        let payload = encode(&Message::Batch {
            seq: u64::MAX,
            entries,
        })
        .expect("encodes");
        assert!(payload.len() < MAX_FRAME, "{} bytes", payload.len());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for payload in [&[][..], &[0xff; 3], &[9, 9, 9, 9, 9, 9, 9]] {
            assert!(decode(payload).is_err(), "{payload:?} decoded");
        }
    }
}
