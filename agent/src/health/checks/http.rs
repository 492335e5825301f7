//! `http`: an HTTP/1.1 GET answers the expected status (and body).

use std::net::SocketAddr;

use std::error::Error as _;

use reqwest::header::{HOST, HeaderValue};

use super::{HttpCheck, Stage, Verdict, error_chain};

/// How much of the body `body_contains` looks at: a health page is small,
/// and a probe must not read a huge body into memory.
const MAX_BODY: usize = 64 * 1024;

/// GETs `check.path` from `target`.
pub(super) async fn probe(check: &HttpCheck, target: SocketAddr, stage: &Stage) -> Verdict {
    match get(check, target, stage).await {
        Ok(verdict) | Err(verdict) => verdict,
    }
}

async fn get(check: &HttpCheck, target: SocketAddr, stage: &Stage) -> Result<Verdict, Verdict> {
    // A fresh client each time: no pooled connection hides a backend that
    // stopped accepting, no proxy from the environment sits in between, and
    // a redirect is a status like any other. The caller's timeout bounds
    // the whole exchange.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Verdict::down(format!("HTTP client: {}", error_chain(&e))))?;
    let path = if check.path.starts_with('/') {
        check.path.clone()
    } else {
        format!("/{}", check.path)
    };
    let url = format!("http://{target}{path}");
    let mut request = client.get(&url);
    if let Some(host) = &check.host {
        let host = HeaderValue::from_str(host)
            .map_err(|_| Verdict::down(format!("invalid Host header {host:?}")))?;
        request = request.header(HOST, host);
    }
    stage.set("HTTP response");
    let mut response = request.send().await.map_err(|e| {
        // reqwest's own text repeats the URL: the sources say what failed;
        // for a connect, the innermost one ("Connection refused").
        let source = e.source();
        if e.is_connect() {
            let mut cause = source.unwrap_or(&e);
            while let Some(next) = cause.source() {
                cause = next;
            }
            return Verdict::down(format!("connect: {}", error_chain(cause)));
        }
        Verdict::down(format!(
            "HTTP request: {}",
            error_chain(source.unwrap_or(&e))
        ))
    })?;
    let status = response.status().as_u16();
    if status != check.expect_status {
        return Ok(Verdict::down(format!(
            "HTTP {status}, expected {}",
            check.expect_status
        )));
    }
    let Some(needle) = &check.body_contains else {
        return Ok(Verdict::Up);
    };
    stage.set("HTTP body");
    let mut body = Vec::new();
    while body.len() < MAX_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => return Err(Verdict::down(format!("HTTP body: {}", error_chain(&e)))),
        }
    }
    let found = String::from_utf8_lossy(&body).contains(needle.as_str());
    Ok(if found {
        Verdict::Up
    } else {
        Verdict::down(format!("HTTP {status}, body lacks {needle:?}"))
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    use super::super::test_servers::serve;
    use super::super::{Check, probe};
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(2);

    /// A server that answers every request with `status` and `body`, and
    /// sends each request's head to the returned receiver.
    async fn http_server(
        status: &'static str,
        body: &'static str,
    ) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let addr = serve(4, move |_, mut stream| {
            let tx = tx.clone();
            async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    let n = stream.read(&mut buf).await.expect("read request");
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                tx.send(String::from_utf8_lossy(&head).into_owned())
                    .expect("send head");
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream
                    .write_all(response.as_bytes())
                    .await
                    .expect("write response");
            }
        })
        .await;
        (addr, rx)
    }

    fn check(body_contains: Option<&str>, host: Option<&str>) -> Check {
        Check::Http(HttpCheck {
            path: "/health?full=1".into(),
            expect_status: 200,
            body_contains: body_contains.map(str::to_owned),
            host: host.map(str::to_owned),
        })
    }

    #[tokio::test]
    async fn ok_is_up_and_the_request_is_a_get_of_the_path() {
        let (target, mut heads) = http_server("200 OK", "ok").await;
        assert_eq!(
            probe(&check(Some("ok"), None), target, TIMEOUT).await,
            Verdict::Up
        );
        let head = heads.recv().await.expect("a request");
        assert!(
            head.starts_with("GET /health?full=1 HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.to_lowercase().contains(&format!("host: {target}\r\n")),
            "{head}"
        );

        assert_eq!(
            probe(&check(None, Some("db.example")), target, TIMEOUT).await,
            Verdict::Up
        );
        let head = heads.recv().await.expect("a request");
        let hosts: Vec<&str> = head
            .lines()
            .filter(|l| l.to_lowercase().starts_with("host:"))
            .collect();
        assert_eq!(hosts, ["host: db.example"], "{head}");
    }

    #[tokio::test]
    async fn another_status_is_down() {
        let (target, _heads) = http_server("500 Internal Server Error", "ok").await;
        assert_eq!(
            probe(&check(Some("ok"), None), target, TIMEOUT).await,
            Verdict::down("HTTP 500, expected 200")
        );
    }

    #[tokio::test]
    async fn a_body_without_the_string_is_down() {
        let (target, _heads) = http_server("200 OK", "starting").await;
        assert_eq!(
            probe(&check(Some("ok"), None), target, TIMEOUT).await,
            Verdict::down("HTTP 200, body lacks \"ok\"")
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_down() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let target = listener.local_addr().expect("local addr");
        drop(listener);
        assert_eq!(
            probe(&check(None, None), target, TIMEOUT).await,
            Verdict::down("connect: Connection refused")
        );
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_down_in_time() {
        let target = serve(1, |_, stream| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(stream);
        })
        .await;
        let timeout = Duration::from_millis(300);
        let start = Instant::now();
        let verdict = probe(&check(None, None), target, timeout).await;
        let elapsed = start.elapsed();
        assert!(
            elapsed < timeout + Duration::from_millis(500),
            "took {elapsed:?}"
        );
        let Verdict::Down { reason } = verdict else {
            panic!("expected down, got {verdict:?}");
        };
        assert!(
            reason.contains("timed out") || reason.contains("timeout"),
            "{reason}"
        );
    }
}
