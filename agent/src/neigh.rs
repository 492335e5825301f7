//! Backend MAC addresses from the kernel's neighbour table (rtnetlink):
//! the data plane sends frames straight to a backend's MAC, so the agent
//! keeps those current and asks the kernel to resolve the ones it lacks.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr, TcpStream},
    time::Duration,
};

use futures::TryStreamExt as _;
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};

/// Why the neighbour table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NeighError {
    #[error("opening an rtnetlink socket: {0}")]
    Open(#[source] std::io::Error),
    #[error("reading the neighbour table: {0}")]
    Dump(#[from] rtnetlink::Error),
}

/// Reads the neighbour table of the calling thread's network namespace.
pub struct Neighbours {
    handle: rtnetlink::Handle,
    _connection: tokio::task::JoinHandle<()>,
}

impl Neighbours {
    /// Opens an rtnetlink socket (in the current network namespace).
    pub fn new() -> Result<Self, NeighError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NeighError::Open)?;
        Ok(Self {
            handle,
            _connection: tokio::spawn(connection),
        })
    }

    /// Every usable (resolved) neighbour: address -> MAC.
    pub async fn table(&self) -> Result<HashMap<IpAddr, [u8; 6]>, NeighError> {
        let mut entries = self.handle.neighbours().get().execute();
        let mut table = HashMap::new();
        while let Some(message) = entries.try_next().await? {
            let usable = matches!(
                message.header.state,
                NeighbourState::Reachable
                    | NeighbourState::Stale
                    | NeighbourState::Delay
                    | NeighbourState::Probe
                    | NeighbourState::Permanent
                    | NeighbourState::Noarp
            );
            if !usable {
                continue;
            }
            let mut addr = None;
            let mut mac = None;
            for attribute in message.attributes {
                match attribute {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                        addr = Some(IpAddr::V4(v4));
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                        addr = Some(IpAddr::V6(v6));
                    }
                    NeighbourAttribute::LinkLocalAddress(bytes) => {
                        mac = <[u8; 6]>::try_from(bytes.as_slice()).ok();
                    }
                    _ => {}
                }
            }
            if let (Some(addr), Some(mac)) = (addr, mac) {
                table.insert(addr, mac);
            }
        }
        Ok(table)
    }
}

/// Makes the kernel resolve `addr` by opening (and closing) a TCP connection
/// to the backend's own service port, as a health check would.
pub async fn solicit(addr: IpAddr, port: u16) {
    let target = SocketAddr::new(addr, port);
    let _ = tokio::task::spawn_blocking(move || {
        TcpStream::connect_timeout(&target, Duration::from_millis(500))
    })
    .await;
}
