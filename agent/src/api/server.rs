//! The API's HTTP server: HTTP/1.1 on each accepted connection, over TLS
//! with `[api.tls]`, with a bound on the time a client may take to finish
//! its TLS handshake and send a request's headers, and on the time a
//! connection may sit idle between requests (`[api] header_timeout`), so
//! that slow or idle clients cannot hold the agent's sockets and tasks.
//! Each request carries its peer's address (the guard and the access log
//! read it). `[api] read_listen` gets a listener of its own, serving the
//! routes that only read.

use std::{future::Future, net::SocketAddr, time::Duration};

use anyhow::Context as _;
use axum::{Router, extract::ConnectInfo};
use futures::FutureExt as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::{JoinHandle, JoinSet},
};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;
use tracing::{info, warn};

use crate::{config::ApiConfig, tls::agent::api_base_url};

/// How long open connections get to finish once the server stops.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// The running API: its server task (both listeners) and what stops it
/// gracefully.
pub type Running = (JoinHandle<std::io::Result<()>>, oneshot::Sender<()>);

/// Binds `[api] listen` (every route: `router`) and `read_listen` (the
/// routes that read: `reads`), reads the TLS files of `[api.tls]`, and
/// serves until the sender is used or dropped.
pub async fn start(api: &ApiConfig, router: Router, reads: Router) -> anyhow::Result<Running> {
    let tls = crate::tls::agent::acceptor(api)?;
    let main = bind(api, api.listen, "API").await?;
    let read = match api.read_listen {
        Some(addr) => Some(bind(api, addr, "read-only API").await?),
        None => None,
    };
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let stopped = stop_rx.map(|_| ()).shared();
    let timeout = api.header_timeout;
    let task = tokio::spawn(async move {
        let main = serve(main, router, timeout, tls.clone(), stopped.clone());
        match read {
            Some(read) => {
                let read = serve(read, reads, timeout, tls, stopped);
                tokio::try_join!(main, read).map(|_| ())
            }
            None => main.await,
        }
    });
    Ok((task, stop_tx))
}

async fn bind(api: &ApiConfig, addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} to {addr}"))?;
    let url = api_base_url(api, listener.local_addr()?);
    info!("{what} on {url}/api/v1/status, metrics on {url}/metrics");
    Ok(listener)
}

/// Serves `router` on `listener` (over TLS with `tls`) until `stop`
/// completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    tls: Option<TlsAcceptor>,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut connections = JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let (router, tls) = (router.clone(), tls.clone());
                    connections.spawn(connection(stream, peer, router, header_timeout, tls));
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

/// One connection: its TLS handshake (within the header timeout), then
/// HTTP/1.1.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    header_timeout: Duration,
    tls: Option<TlsAcceptor>,
) {
    let Some(tls) = tls else {
        return http(stream, peer, router, header_timeout).await;
    };
    match tokio::time::timeout(header_timeout, tls.accept(stream)).await {
        Ok(Ok(stream)) => http(stream, peer, router, header_timeout).await,
        Ok(Err(err)) => tracing::debug!(%peer, "API connection: TLS: {err}"),
        Err(_) => {
            tracing::debug!(%peer, "API connection: no TLS handshake within {header_timeout:?}")
        }
    }
}

async fn http(
    stream: impl AsyncRead + AsyncWrite + Send + Unpin + 'static,
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
        tokio::spawn(serve(
            listener,
            router,
            header_timeout,
            None,
            stopped.map(|_| ()),
        ));
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

#[cfg(test)]
#[path = "server_tls_tests.rs"]
mod tls_tests;
