//! What both ends of a replication connection share: opening it (plain TCP
//! or TLS), reading and writing messages with time limits, and the errors
//! that end a connection.

use std::{future::Future, net::SocketAddr, time::Duration};

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::{
    tls::{Tls, is_tls_failure},
    wire::{self, Message},
};

/// How long each step of the handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a sender says its connection lives ([`Message::Ping`]).
pub const KEEPALIVE: Duration = Duration::from_millis(200);
/// How long either end bears a silent connection (nothing received, or a
/// frame that cannot be sent) before it drops it: a cut link or a stopped
/// peer is noticed in this time, not after TCP's retransmissions, so the
/// sender reconnects (and resends) as soon as the link is back, and the
/// receiver no longer counts that peer's table as held here.
pub const SILENCE: Duration = Duration::from_millis(1500);

/// The byte stream under a connection: a TCP socket, or TLS over one.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A replication connection, framed.
pub type Conn = Framed<Box<dyn Stream>, LengthDelimitedCodec>;

/// Why a replication connection ended.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("connection: {0}")]
    Io(std::io::Error),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
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

impl From<std::io::Error> for SyncError {
    fn from(err: std::io::Error) -> Self {
        if is_tls_failure(&err) {
            Self::Tls(err)
        } else {
            Self::Io(err)
        }
    }
}

/// Connects to `peer`, over TLS when configured.
pub async fn connect(peer: SocketAddr, tls: Option<&Tls>) -> Result<Conn, SyncError> {
    let stream = soon(TcpStream::connect(peer)).await??;
    let _ = stream.set_nodelay(true);
    match tls {
        Some(tls) => {
            let stream = soon(tls.connect(peer, stream))
                .await?
                .map_err(SyncError::Tls)?;
            Ok(framed(stream))
        }
        None => Ok(framed(stream)),
    }
}

/// Takes an accepted socket, over TLS when configured.
pub async fn accept(stream: TcpStream, tls: Option<&Tls>) -> Result<Conn, SyncError> {
    let _ = stream.set_nodelay(true);
    match tls {
        Some(tls) => {
            let stream = soon(tls.accept(stream)).await?.map_err(SyncError::Tls)?;
            Ok(framed(stream))
        }
        None => Ok(framed(stream)),
    }
}

fn framed(stream: impl Stream + 'static) -> Conn {
    Framed::new(Box::new(stream), wire::codec())
}

/// A step of the handshake, within [`HANDSHAKE_TIMEOUT`].
async fn soon<T>(step: impl Future<Output = T>) -> Result<T, SyncError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, step)
        .await
        .map_err(|_| SyncError::Timeout(HANDSHAKE_TIMEOUT))
}

/// Sends one message.
pub async fn send(conn: &mut Conn, message: &Message) -> Result<usize, SyncError> {
    let payload = wire::encode(message)?;
    let len = payload.len();
    tokio::time::timeout(SILENCE, conn.send(Bytes::from(payload)))
        .await
        .map_err(|_| SyncError::Timeout(SILENCE))??;
    Ok(len)
}

/// The next message.
pub async fn recv(conn: &mut Conn) -> Result<Message, SyncError> {
    match conn.next().await {
        Some(frame) => Ok(wire::decode(&frame?)?),
        None => Err(SyncError::Closed),
    }
}

/// The next message, within `limit`.
pub async fn recv_within(conn: &mut Conn, limit: Duration) -> Result<Message, SyncError> {
    tokio::time::timeout(limit, recv(conn))
        .await
        .map_err(|_| SyncError::Timeout(limit))?
}

/// The next message, within [`HANDSHAKE_TIMEOUT`].
pub async fn recv_soon(conn: &mut Conn) -> Result<Message, SyncError> {
    soon(recv(conn)).await?
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
        Message::Ping => "Ping",
        Message::Pong => "Pong",
    }
}
