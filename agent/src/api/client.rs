//! The API as the command line uses it: `vipx-agent status`, `drain` and
//! `events` ask a running agent.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;

use super::wire::{DrainRequest, Status};
use crate::{
    events::Event,
    operator::{HandoverGroup, HandoverRequest},
    sync::auth::Secret,
};

/// The API URL of an agent listening on `listen` (a wildcard address is
/// reached through loopback).
pub fn api_url(listen: SocketAddr) -> String {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}")
}

/// Asks a running agent for its status.
pub async fn fetch(base_url: &str) -> anyhow::Result<Status> {
    let url = endpoint(base_url, "status");
    let response = client()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("no agent answers at {url}"))?
        .error_for_status()?;
    response
        .json()
        .await
        .with_context(|| format!("{url} did not return a status"))
}

/// Asks a running agent to drain (or undrain) a backend (with the API's
/// secret, when there is one).
pub async fn drain(
    base_url: &str,
    secret: Option<&Secret>,
    backend: SocketAddr,
    drain: bool,
) -> anyhow::Result<String> {
    post(base_url, secret, "drain", &DrainRequest { backend, drain }).await
}

/// Asks a running agent for a manual handover (or its end).
pub async fn handover(
    base_url: &str,
    secret: Option<&Secret>,
    request: &HandoverRequest,
) -> anyhow::Result<Vec<HandoverGroup>> {
    let body = post(base_url, secret, "handover", request).await?;
    serde_json::from_str(&body).with_context(|| format!("the agent answered {body}"))
}

/// POSTs `request` as JSON; the answer's body, or an error with it.
async fn post(
    base_url: &str,
    secret: Option<&Secret>,
    name: &str,
    request: &impl serde::Serialize,
) -> anyhow::Result<String> {
    let url = endpoint(base_url, name);
    let mut post = client()?.post(&url).json(request);
    if let Some(secret) = secret {
        post = post.bearer_auth(String::from_utf8_lossy(secret.expose()));
    }
    let response = post
        .send()
        .await
        .with_context(|| format!("no agent answers at {url}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("{url}: {status}: {body}");
    }
    Ok(body)
}

/// A running agent's event timeline, after sequence number `after`.
pub async fn events(base_url: &str, after: u64) -> anyhow::Result<Vec<Event>> {
    let url = format!("{}?after={after}", endpoint(base_url, "events"));
    client()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("no agent answers at {url}"))?
        .error_for_status()?
        .json()
        .await
        .with_context(|| format!("{url} did not return events"))
}

fn endpoint(base_url: &str, name: &str) -> String {
    format!("{}/api/v1/{name}", base_url.trim_end_matches('/'))
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_is_reached_through_loopback() {
        assert_eq!(
            api_url("0.0.0.0:9469".parse().unwrap()),
            "http://127.0.0.1:9469"
        );
        assert_eq!(api_url("[::]:9469".parse().unwrap()), "http://[::1]:9469");
        assert_eq!(
            api_url("10.1.2.3:80".parse().unwrap()),
            "http://10.1.2.3:80"
        );
    }
}
