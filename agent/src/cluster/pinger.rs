//! The pings this node sends: to every other voter, every `ping_interval`,
//! over one kept-alive connection each, after registering with it
//! (`POST /api/v1/ha/register`, again whenever it says it forgot us). A
//! ping that fails or takes longer than two intervals counts as not heard.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;

use super::{
    Cluster,
    wire::{Pong, Register, Registered},
};
use crate::{locks::lock, sync::auth::Secret};

/// How the other voters' APIs are reached.
#[derive(Clone)]
pub struct Dialer {
    pub client: reqwest::Client,
    /// The cluster secret, sent as `Authorization: Bearer`.
    pub secret: Arc<Secret>,
    /// The base URL of a voter's API from its address
    /// (`http://10.0.1.12:9469`).
    pub base_url: Arc<dyn Fn(SocketAddr) -> String + Send + Sync>,
}

/// Starts the pings to every other voter, and the task that counts the
/// quorum between them.
pub fn start(cluster: &Arc<Cluster>, dialer: &Dialer) -> Vec<JoinHandle<()>> {
    let targets = lock(&cluster.view).targets();
    let mut tasks: Vec<JoinHandle<()>> = targets
        .into_iter()
        .map(|(name, address, witness)| {
            tokio::spawn(follow(
                Arc::clone(cluster),
                dialer.clone(),
                name,
                address,
                witness,
            ))
        })
        .collect();
    let counter = Arc::clone(cluster);
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(counter.ping_interval / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            counter.evaluate();
        }
    }));
    tasks
}

async fn follow(
    cluster: Arc<Cluster>,
    dialer: Dialer,
    name: String,
    address: SocketAddr,
    witness: bool,
) {
    let base = format!("{}/api/v1/ha", (dialer.base_url)(address));
    let timeout = cluster.ping_interval * 2;
    let mut registered = false;
    let mut next = Instant::now();
    loop {
        tokio::time::sleep_until(next.into()).await;
        next += cluster.ping_interval;
        let now = Instant::now();
        if next < now {
            next = now + cluster.ping_interval;
        }
        if !registered {
            let register = Register {
                node: cluster.me.clone(),
                epoch: cluster.epoch,
            };
            match post::<_, Registered>(&dialer, &format!("{base}/register"), &register, timeout)
                .await
            {
                Ok(_) => registered = true,
                Err(why) => {
                    lock(&cluster.view).unreachable(&name, &why);
                    continue;
                }
            }
        }
        let ping = cluster.ping();
        let sent = Instant::now();
        match post::<_, Pong>(&dialer, &format!("{base}/ping"), &ping, timeout).await {
            Ok(pong) => {
                registered = pong.registered;
                let mut view = lock(&cluster.view);
                if witness {
                    view.witness_answered(pong.vote.as_deref(), sent);
                }
                view.heard(&name, sent, pong.groups, pong.masters);
            }
            Err(why) => lock(&cluster.view).unreachable(&name, &why),
        }
        cluster.evaluate();
    }
}

/// POSTs `body` as JSON with the secret; the JSON answer, or why not.
async fn post<B: serde::Serialize, A: serde::de::DeserializeOwned>(
    dialer: &Dialer,
    url: &str,
    body: &B,
    timeout: Duration,
) -> Result<A, String> {
    let response = dialer
        .client
        .post(url)
        .bearer_auth(String::from_utf8_lossy(dialer.secret.expose()))
        .json(body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|err| format!("{url}: {err}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{url}: {status}"));
    }
    response
        .json()
        .await
        .map_err(|err| format!("{url}: the answer: {err}"))
}
