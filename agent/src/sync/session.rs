//! What both ends of a replication connection share: reading and writing
//! messages with time limits, and the errors that end a connection.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::wire::{self, Message};

/// How long each step of the handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// A replication connection, framed.
pub type Conn = Framed<TcpStream, LengthDelimitedCodec>;

/// Why a replication connection ended.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("a message that does not decode: {0}")]
    Decode(#[from] postcard::Error),
    #[error("the peer closed the connection")]
    Closed,
    #[error("the peer did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the peer speaks protocol version {0}, this agent {version}", version = wire::VERSION)]
    Version(u16),
    #[error("the peer could not prove the cluster secret")]
    BadProof,
    #[error("the peer refused: {0}")]
    Refused(String),
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
    #[error("batch {got} arrived after {last}: a gap")]
    Gap { last: u64, got: u64 },
}

/// Frames a connected socket.
pub fn framed(stream: TcpStream) -> Conn {
    let _ = stream.set_nodelay(true);
    Framed::new(stream, wire::codec())
}

/// Sends one message.
pub async fn send(conn: &mut Conn, message: &Message) -> Result<usize, SyncError> {
    let payload = wire::encode(message)?;
    let len = payload.len();
    conn.send(Bytes::from(payload)).await?;
    Ok(len)
}

/// The next message.
pub async fn recv(conn: &mut Conn) -> Result<Message, SyncError> {
    match conn.next().await {
        Some(frame) => Ok(wire::decode(&frame?)?),
        None => Err(SyncError::Closed),
    }
}

/// The next message, within [`HANDSHAKE_TIMEOUT`].
pub async fn recv_soon(conn: &mut Conn) -> Result<Message, SyncError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, recv(conn))
        .await
        .map_err(|_| SyncError::Timeout(HANDSHAKE_TIMEOUT))?
}

/// The short name of a message, for errors.
pub fn name(message: &Message) -> &'static str {
    match message {
        Message::Hello { .. } => "Hello",
        Message::Welcome { .. } => "Welcome",
        Message::Proven { .. } => "Proven",
        Message::Batch { .. } => "Batch",
        Message::Synced { .. } => "Synced",
        Message::Ack { .. } => "Ack",
        Message::Refused { .. } => "Refused",
    }
}
