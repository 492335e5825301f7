//! New flows through the VIP at a steady rate, from the client's own
//! address: a non-blocking `connect()` sends a SYN (XDP creates the flow
//! on it) and the socket is closed at once, so nothing waits for the
//! handshake; the client's kernel answers the backend's SYN-ACK with a
//! RST, which ends the flow. Each connect takes a fresh source port.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};
use vipx_lab::Host;

/// How often the sender catches up with its schedule.
const TICK: Duration = Duration::from_micros(500);

/// What the sender did.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    /// Connects that sent their SYN.
    pub syns: u64,
    /// Connects that failed at once (no port left...).
    pub errors: u64,
    /// How long it sent.
    pub took: Duration,
}

/// Opens `rate` new flows a second to `target` from `client` for
/// `length`, on one thread in the client's namespace.
pub fn open(
    client: &Host,
    target: SocketAddr,
    rate: u32,
    length: Duration,
) -> anyhow::Result<Sent> {
    // Every port the client has, so that a port comes back seconds later.
    client.sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;
    client
        .enter(move || {
            let began = Instant::now();
            let mut sent = Sent {
                syns: 0,
                errors: 0,
                took: Duration::ZERO,
            };
            while began.elapsed() < length {
                let due = (began.elapsed().as_secs_f64() * f64::from(rate)) as u64;
                while sent.syns + sent.errors < due {
                    if syn(target) {
                        sent.syns += 1;
                    } else {
                        sent.errors += 1;
                    }
                }
                std::thread::sleep(TICK);
            }
            sent.took = began.elapsed();
            sent
        })
        .context("entering the client's namespace")
}

/// One connect, closed at once; whether its SYN went out.
fn syn(target: SocketAddr) -> bool {
    let Ok(socket) = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)) else {
        return false;
    };
    if socket.set_nonblocking(true).is_err() {
        return false;
    }
    match socket.connect(&target.into()) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() == Some(libc::EINPROGRESS),
    }
}
