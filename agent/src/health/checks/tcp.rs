//! `tcp`: the backend accepts a connection.

use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::{Stage, Verdict, io_reason};

/// Connects to `target`: up when the handshake completes.
pub(super) async fn probe(target: SocketAddr, stage: &Stage) -> Verdict {
    match connect(target, stage).await {
        Ok(_) => Verdict::Up,
        Err(down) => down,
    }
}

/// Connects to `target` (`TCP_NODELAY`, as every checker writes small
/// messages and waits for the answer); the error is a `Down` verdict.
pub(super) async fn connect(target: SocketAddr, stage: &Stage) -> Result<TcpStream, Verdict> {
    stage.set("connect");
    let stream = TcpStream::connect(target)
        .await
        .map_err(|e| Verdict::down(format!("connect: {}", io_reason(&e))))?;
    // Only a latency hint: a failure changes nothing about the verdict.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpListener;

    use super::super::{Check, probe};
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn a_listener_is_up() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = listener.local_addr().expect("local addr");
        assert_eq!(probe(&Check::Tcp, target, TIMEOUT).await, Verdict::Up);
    }

    #[tokio::test]
    async fn a_closed_port_is_down() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = listener.local_addr().expect("local addr");
        drop(listener);
        assert_eq!(
            probe(&Check::Tcp, target, TIMEOUT).await,
            Verdict::down("connect: Connection refused")
        );
    }
}
