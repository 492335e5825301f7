//! The API as the command line uses it: `vipx-agent status`, `drain`,
//! `handover` and `events` ask a running agent, over HTTPS when the
//! configuration sets `[api.tls]` (trusting its `ca_file`, presenting its
//! certificate), with the API's secret when it sets `[api] secret_file` (else the
//! cluster's, `[cluster] secret_file`).

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::Context as _;

use super::wire::{DrainRequest, Status};
use crate::cluster::wire::NodesReport;
use crate::{
    config::Config,
    events::Event,
    operator::{HandoverGroup, HandoverRequest},
    sync::auth::Secret,
    tls::agent::{agent_client, api_base_url},
};

/// How long the command line waits for an answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A running agent, as the command line reaches it.
pub struct Agent {
    /// Its API's base URL (`https://127.0.0.1:9469`).
    pub base: String,
    http: reqwest::Client,
    secret: Option<Secret>,
    /// The cluster secret, for the cluster's endpoints.
    cluster_secret: Option<Secret>,
}

impl Agent {
    /// The agent at `url` (none: the config file's `[api] listen`), with
    /// the TLS of the config file's `[api]` and the secret of its `[api]`
    /// (or `[cluster]`; a config file
    /// that is not there, with a `url`, means plain HTTP and no secret:
    /// the agent then accepts changes from this node only).
    pub fn new(url: Option<String>, config: &Path) -> anyhow::Result<Self> {
        let config = match (&url, config.exists()) {
            (Some(_), false) => None,
            _ => Some(Config::load(config)?),
        };
        let api = config.as_ref().map(|c| c.api.clone()).unwrap_or_default();
        let secret = config
            .as_ref()
            .and_then(Config::state_secret_file)
            .map(|(key, path)| Secret::load(path).map_err(|err| anyhow::anyhow!("{key}: {err}")))
            .transpose()?;
        let cluster_secret = config
            .as_ref()
            .and_then(|c| c.cluster.secret_file.as_deref())
            .map(|path| {
                Secret::load(path).map_err(|err| anyhow::anyhow!("[cluster] secret_file: {err}"))
            })
            .transpose()?;
        Ok(Self {
            base: url.unwrap_or_else(|| api_base_url(&api, api.listen)),
            http: agent_client(&api, TIMEOUT)?,
            secret,
            cluster_secret,
        })
    }

    /// Its status.
    pub async fn status(&self) -> anyhow::Result<Status> {
        self.get(&self.endpoint("status"), "a status", None).await
    }

    /// Drains (or undrains) a backend.
    pub async fn drain(&self, backend: SocketAddr, drain: bool) -> anyhow::Result<String> {
        self.post("drain", &DrainRequest { backend, drain }).await
    }

    /// A manual handover (or its end).
    pub async fn handover(&self, request: &HandoverRequest) -> anyhow::Result<Vec<HandoverGroup>> {
        let body = self.post("handover", request).await?;
        serde_json::from_str(&body).with_context(|| format!("the agent answered {body}"))
    }

    /// Its event timeline, after sequence number `after`.
    pub async fn events(&self, after: u64) -> anyhow::Result<Vec<Event>> {
        let url = format!("{}?after={after}", self.endpoint("events"));
        self.get(&url, "events", None).await
    }

    /// The cluster as it sees it (`GET /api/v1/ha/nodes`, with the
    /// cluster secret).
    pub async fn nodes(&self) -> anyhow::Result<NodesReport> {
        let url = self.endpoint("ha/nodes");
        let Some(secret) = &self.cluster_secret else {
            anyhow::bail!(
                "the config file sets no [cluster] secret_file: the cluster's endpoints need it"
            );
        };
        self.get(&url, "the cluster's nodes", Some(secret)).await
    }

    /// GETs `url` (with `secret` as its bearer), whose answer is `what`
    /// as JSON.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        what: &str,
        secret: Option<&Secret>,
    ) -> anyhow::Result<T> {
        let mut get = self.http.get(url);
        if let Some(secret) = secret {
            get = get.bearer_auth(String::from_utf8_lossy(secret.expose()));
        }
        get.send()
            .await
            .with_context(|| format!("no agent answers at {url}"))?
            .error_for_status()?
            .json()
            .await
            .with_context(|| format!("{url} did not return {what}"))
    }

    /// POSTs `request` as JSON; the answer's body, or an error with it.
    async fn post(&self, name: &str, request: &impl serde::Serialize) -> anyhow::Result<String> {
        let url = self.endpoint(name);
        let mut post = self.http.post(&url).json(request);
        if let Some(secret) = &self.secret {
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

    fn endpoint(&self, name: &str) -> String {
        format!("{}/api/v1/{name}", self.base.trim_end_matches('/'))
    }
}
