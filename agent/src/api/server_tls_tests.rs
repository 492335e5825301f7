//! The API over TLS, on loopback with certificates made here: it answers,
//! a change of state still needs the secret, mutual TLS serves only a
//! client whose certificate the CA signed, a connection that never starts
//! its handshake is closed, the client keeps one connection for many
//! requests, and `read_listen` serves only what it is given.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::ConnectInfo,
    routing::{get, post},
};
use futures::FutureExt as _;
use rcgen::{Issuer, KeyPair};
use tokio::{io::AsyncReadExt as _, net::TcpListener, sync::oneshot};

use super::{serve, start};
use crate::{
    api::guard::{self, Guard},
    config::{ApiConfig, ApiTls},
    tls::{
        agent::{acceptor, agent_client, api_base_url},
        test_certs::{ca, node, write},
    },
};

const SECRET: &str = "an API secret of enough bytes";
const HEADER_TIMEOUT: Duration = Duration::from_millis(400);

/// `[api]` on loopback with `[api.tls]`: this node's certificate, signed
/// by `ca` and naming 127.0.0.1; `client_ca`: mutual TLS.
fn api(dir: &Path, ca: &(String, Issuer<'static, KeyPair>), client_ca: Option<&str>) -> ApiConfig {
    let (cert, key) = node(&ca.1, "127.0.0.1");
    ApiConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        secret_file: Some(write(dir, "secret", SECRET)),
        header_timeout: HEADER_TIMEOUT,
        tls: Some(ApiTls {
            cert_file: write(dir, "api.pem", &cert),
            key_file: write(dir, "api.key", &key),
            ca_file: write(dir, "ca.pem", &ca.0),
            client_ca_file: client_ca.map(|pem| write(dir, "clients.pem", pem)),
        }),
        ..ApiConfig::default()
    }
}

/// Routes shaped as the API's: one that reads (and says which port the
/// request came from), one that changes state behind the guard.
fn router(api: &ApiConfig) -> Router {
    let guard = Arc::new(Guard::load(api.secret_file.as_deref()).expect("the secret"));
    let changes = Router::new()
        .route("/api/v1/drain", post(|| async { "drained" }))
        .route_layer(axum::middleware::from_fn_with_state(
            guard,
            guard::require_secret,
        ));
    Router::new()
        .route(
            "/api/v1/status",
            get(
                |ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.port().to_string() },
            ),
        )
        .merge(changes)
        .layer(axum::middleware::from_fn(guard::access_log))
}

/// Serves `router(api)` with `api`'s TLS on loopback; its base URL.
async fn server(api: &ApiConfig) -> (String, oneshot::Sender<()>) {
    let listener = TcpListener::bind(api.listen).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let tls = acceptor(api).expect("the TLS files load");
    assert!(tls.is_some(), "[api.tls] is set");
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(serve(
        listener,
        router(api),
        api.header_timeout,
        tls,
        stopped.map(|_| ()),
    ));
    (api_base_url(api, addr), stop)
}

async fn get_status(client: &reqwest::Client, base: &str) -> reqwest::Result<(u16, String)> {
    let response = client.get(format!("{base}/api/v1/status")).send().await?;
    let code = response.status().as_u16();
    Ok((code, response.text().await?))
}

#[tokio::test]
async fn over_tls_the_api_answers_and_a_change_still_needs_the_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = ca();
    let api = api(dir.path(), &ca, None);
    let (base, _stop) = server(&api).await;
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let client = agent_client(&api, Duration::from_secs(5)).expect("client");
    let (code, _) = get_status(&client, &base).await.expect("answered over TLS");
    assert_eq!(code, 200);
    let drain = format!("{base}/api/v1/drain");
    let refused = client.post(&drain).send().await.expect("answered");
    assert_eq!(refused.status().as_u16(), 401, "no secret, no change");
    let allowed = client
        .post(&drain)
        .bearer_auth(SECRET)
        .send()
        .await
        .expect("answered");
    assert_eq!(allowed.status().as_u16(), 200);
    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::Client::new();
    let http = base.replacen("https://", "http://", 1);
    assert!(
        get_status(&plain, &http).await.is_err(),
        "plain HTTP is not served on a TLS listener"
    );
}

#[tokio::test]
async fn with_a_client_ca_only_a_client_it_signed_is_served() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = ca();
    let api = api(dir.path(), &ca, Some(&ca.0));
    let (base, _stop) = server(&api).await;
    let signed = agent_client(&api, Duration::from_secs(5)).expect("client");
    assert_eq!(
        get_status(&signed, &base).await.expect("served").0,
        200,
        "a certificate of the client CA is served"
    );
    // The same trust of the server, no certificate of its own.
    let roots = crate::tls::Section {
        name: "api.tls",
        cert_file: &dir.path().join("api.pem"),
        key_file: &dir.path().join("api.key"),
    }
    .roots("ca_file", &dir.path().join("ca.pem"))
    .expect("roots");
    let anonymous = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let anonymous = reqwest::Client::builder()
        .use_preconfigured_tls(anonymous)
        .build()
        .expect("client");
    assert!(
        get_status(&anonymous, &base).await.is_err(),
        "a client without a certificate is refused"
    );
    // A certificate of another CA.
    let other_dir = tempfile::tempdir().expect("temp dir");
    let mut stranger = self::api(other_dir.path(), &self::ca(), None);
    if let Some(tls) = &mut stranger.tls {
        tls.ca_file = dir.path().join("ca.pem");
    }
    let stranger = agent_client(&stranger, Duration::from_secs(5)).expect("client");
    assert!(
        get_status(&stranger, &base).await.is_err(),
        "a client whose certificate another CA signed is refused"
    );
}

#[tokio::test]
async fn a_connection_that_never_starts_its_handshake_is_closed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = api(dir.path(), &ca(), None);
    let (base, _stop) = server(&api).await;
    let addr = base.trim_start_matches("https://");
    let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "the server closed a connection that sent nothing (header_timeout {HEADER_TIMEOUT:?})"
    );
}

#[tokio::test]
async fn the_agent_client_keeps_one_connection_for_its_requests() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = api(dir.path(), &ca(), None);
    let (base, _stop) = server(&api).await;
    let client = agent_client(&api, Duration::from_secs(5)).expect("client");
    let mut ports = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let (code, port) = get_status(&client, &base).await.expect("answered");
        assert_eq!(code, 200);
        ports.insert(port);
    }
    assert_eq!(ports.len(), 1, "one connection, reused: {ports:?}");
}

#[tokio::test]
async fn read_listen_serves_its_own_routes_with_the_same_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut api = api(dir.path(), &ca(), None);
    // Two free loopback ports (start() binds what the config says).
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
    };
    api.listen = free();
    api.read_listen = Some(free());
    let reads = Router::new().route("/metrics", get(|| async { "vipx_build_info 1\n" }));
    let (_task, _stop) = start(&api, router(&api), reads).await.expect("started");
    let client = agent_client(&api, Duration::from_secs(5)).expect("client");
    let read_base = api_base_url(&api, api.read_listen.expect("set"));
    let metrics = client
        .get(format!("{read_base}/metrics"))
        .send()
        .await
        .expect("the read-only listener answers over TLS");
    assert_eq!(metrics.status().as_u16(), 200);
    let drain = client
        .post(format!("{read_base}/api/v1/drain"))
        .bearer_auth(SECRET)
        .send()
        .await
        .expect("answered");
    assert_eq!(drain.status().as_u16(), 404, "no change of state there");
    let main = api_base_url(&api, api.listen);
    assert_eq!(get_status(&client, &main).await.expect("served").0, 200);
}
