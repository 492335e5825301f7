//! A minimal HTTP/1.0 client for lab checks (scraping `/metrics`, asking
//! an agent's API) from inside a lab host.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use anyhow::{Context as _, Result};

use crate::Host;

/// `GET path` from `addr`, returning `(status, body)`. Call it inside a
/// host's namespace ([`Host::enter`]) or use [`get_from`].
pub fn get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .with_context(|| format!("reading {addr}{path}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("no end of HTTP header from {addr}{path}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad status line from {addr}{path}: {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// [`get`] from inside `host`'s namespace.
pub fn get_from(host: &Host, addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    host.enter(|| get(addr, path))?
}

/// `curl -X METHOD URL` from `host` with a JSON `body` and, when given,
/// `Authorization: Bearer`: the status and the body (status 0: no answer).
pub fn curl(
    host: &Host,
    method: &str,
    url: &str,
    body: Option<&str>,
    bearer: Option<&str>,
) -> Result<(u16, String)> {
    let auth = bearer.map(|b| format!("Authorization: Bearer {b}"));
    let mut argv = vec![
        "curl",
        "-s",
        "-w",
        "\n%{http_code}",
        "--max-time",
        "5",
        "-X",
        method,
    ];
    if let Some(body) = body {
        argv.extend(["-H", "Content-Type: application/json", "-d", body]);
    }
    if let Some(auth) = &auth {
        argv.extend(["-H", auth.as_str()]);
    }
    argv.push(url);
    let out = host.run_unchecked(&argv).context("run curl")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = code
        .trim()
        .parse()
        .with_context(|| format!("curl said {text:?}"))?;
    Ok((code, body.to_owned()))
}

/// The value of one sample (`name{labels}`) on a Prometheus text page.
pub fn metric_value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
}
