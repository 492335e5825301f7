//! Backend MAC addresses from the kernel's neighbour table (rtnetlink):
//! the data plane sends frames straight to a backend's MAC, so the agent
//! keeps those current and asks the kernel to resolve the ones it lacks.
//! A backend behind a router is sent to the router's MAC: the kernel's own
//! route to the backend (`ip route get`) names the next hop.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr, TcpStream},
    time::Duration,
};

use futures::{StreamExt as _, TryStreamExt as _};
use rtnetlink::{
    packet_core::{NLM_F_REQUEST, NetlinkMessage, NetlinkPayload},
    packet_route::{
        AddressFamily, RouteNetlinkMessage,
        neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState},
        route::{RouteAddress, RouteAttribute, RouteMessage},
    },
};

/// Why the neighbour table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NeighError {
    #[error("opening an rtnetlink socket: {0}")]
    Open(#[source] std::io::Error),
    #[error("reading the neighbour table: {0}")]
    Dump(#[from] rtnetlink::Error),
    #[error("looking up the route to {addr}: {why}")]
    Route { addr: IpAddr, why: String },
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

impl Neighbours {
    /// The address whose MAC frames to `addr` go to: the gateway of the
    /// kernel's route to `addr` (`ip route get ADDR`), or `addr` itself when
    /// it is on a connected network.
    pub async fn next_hop(&self, addr: IpAddr) -> Result<IpAddr, NeighError> {
        let failed = |why: String| NeighError::Route { addr, why };
        let mut query = RouteMessage::default();
        let (family, len, dst) = match addr {
            IpAddr::V4(v4) => (AddressFamily::Inet, 32, RouteAddress::Inet(v4)),
            IpAddr::V6(v6) => (AddressFamily::Inet6, 128, RouteAddress::Inet6(v6)),
        };
        query.header.address_family = family;
        query.header.destination_prefix_length = len;
        query.attributes.push(RouteAttribute::Destination(dst));
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::GetRoute(query));
        // A lookup (RTM_GETROUTE without NLM_F_DUMP), not a dump of the table.
        request.header.flags = NLM_F_REQUEST;
        let mut answers = self
            .handle
            .clone()
            .request(request)
            .map_err(|err| failed(err.to_string()))?;
        let answer = answers
            .next()
            .await
            .ok_or_else(|| failed("no answer".into()))?;
        let route = match answer.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(route)) => route,
            NetlinkPayload::Error(err) => return Err(failed(err.to_string())),
            other => return Err(failed(format!("unexpected answer {other:?}"))),
        };
        Ok(gateway(&route).unwrap_or(addr))
    }
}

/// The gateway a route names, if any (none: the destination is on link).
fn gateway(route: &RouteMessage) -> Option<IpAddr> {
    route
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Gateway(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
            RouteAttribute::Gateway(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
            _ => None,
        })
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
