//! The API's HTTP server: HTTP/1.1 on each accepted connection, with a
//! bound on the time a client may take to send a request's headers and on
//! the time a connection may sit idle between requests
//! (`[api] header_timeout`), so that slow or idle clients cannot hold the
//! agent's sockets and tasks. Each request carries its peer's address (the
//! guard and the access log read it).

use std::{net::SocketAddr, time::Duration};

use axum::{Router, extract::ConnectInfo};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::oneshot, task::JoinSet};
use tower::ServiceExt as _;
use tracing::warn;

/// How long open connections get to finish once the server stops.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    mut stop: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(stream, peer, router.clone(), header_timeout));
                }
                Err(err) => {
                    // Out of file descriptors and the like: wait, go on.
                    warn!("API: accepting a connection: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    let _ = tokio::time::timeout(STOP_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
    Ok(())
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    header_timeout: Duration,
) {
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request.map(axum::body::Body::new))
        });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(err) = served {
        tracing::debug!(%peer, "API connection: {err}");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A server with `header_timeout`, on loopback; its address.
    async fn server(header_timeout: Duration) -> (SocketAddr, oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(serve(listener, router, header_timeout, stopped));
        (addr, stop)
    }

    /// Reads until the server closes the connection (bounded by 10 s);
    /// what it sent and how long it took.
    async fn until_closed(stream: &mut tokio::net::TcpStream) -> (String, Duration) {
        let started = Instant::now();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
        (
            String::from_utf8_lossy(&out).into_owned(),
            started.elapsed(),
        )
    }

    #[tokio::test]
    async fn slow_and_idle_connections_are_closed_and_requests_know_their_peer() {
        let (addr, _stop) = server(Duration::from_millis(300)).await;
        // A request answered, then the connection left idle: closed.
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("send");
        let (answer, took) = until_closed(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.ends_with(&stream.local_addr().expect("local").to_string()),
            "the handler saw its peer: {answer}"
        );
        assert!(
            took < Duration::from_secs(10),
            "an idle keep-alive connection is closed"
        );
        // Headers that never end: closed.
        let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
        slow.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("send half");
        let (_, took) = until_closed(&mut slow).await;
        assert!(took < Duration::from_secs(10), "a slow header is cut off");
        // A connection that sends nothing: closed too.
        let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (said, took) = until_closed(&mut silent).await;
        assert!(
            took < Duration::from_secs(10),
            "a silent connection is closed ({said:?})"
        );
    }
}
