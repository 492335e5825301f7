//! TLS of the agent's API (`[api.tls]`): the server side it serves with,
//! and the client that calls an agent's API (the command line, and agents
//! calling each other on the cluster channel).
//!
//! Callers reach an agent by address, so its certificate names the
//! address they dial (a subjectAltName IP) and is signed by `ca_file`'s
//! CA; with `client_ca_file` the API serves only clients whose certificate
//! that CA signed, and every caller built here presents this node's
//! `cert_file`.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use rustls::{ClientConfig, ServerConfig, sign::SingleCertAndKey};
use tokio_rustls::TlsAcceptor;

use super::{Section, TlsError};
use crate::config::{ApiConfig, ApiTls};

/// How long a pooled connection to another agent may stay idle: well
/// past the cluster's pings (tens of milliseconds apart), so that one
/// connection carries them all.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// TCP keep-alive of the connections to other agents: a peer gone for
/// good is found even on a quiet connection.
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);

fn section(tls: &ApiTls) -> Section<'_> {
    Section {
        name: "api.tls",
        cert_file: &tls.cert_file,
        key_file: &tls.key_file,
    }
}

/// The API's TLS acceptor (none without `[api.tls]`), once its files are
/// read and checked: a certificate and its key, signed by `ca_file`'s CA
/// and naming `listen`'s address when it has one; with `client_ca_file`,
/// signed by that CA too (this node presents it to its peers).
pub fn acceptor(api: &ApiConfig) -> Result<Option<TlsAcceptor>, TlsError> {
    let Some(tls) = &api.tls else {
        return Ok(None);
    };
    let section = section(tls);
    let provider = super::provider();
    let own = section.identity(&provider)?;
    let ca = ("ca_file", tls.ca_file.as_path());
    let servers = section.server_verifier(ca.0, ca.1, &provider)?;
    section.check_as_server(&own, ca, ("api.listen", api.listen.ip()), &*servers)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| section.rustls(err))?;
    let builder = match &tls.client_ca_file {
        Some(path) => {
            let client_ca = ("client_ca_file", path.as_path());
            let clients = section.client_verifier(client_ca.0, client_ca.1, &provider)?;
            section.check_as_client(&own, client_ca, &*clients)?;
            builder.with_client_cert_verifier(clients)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(own)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// The client that calls agents' APIs: HTTPS trusting `[api.tls] ca_file`
/// and presenting this node's certificate when `[api.tls]` is set, plain
/// HTTP otherwise; `timeout` bounds each request (its connection
/// included). Connections are kept alive and reused: build it once and
/// clone it.
pub fn agent_client(api: &ApiConfig, timeout: Duration) -> Result<reqwest::Client, TlsError> {
    let builder = reqwest::Client::builder()
        .http1_only()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(POOL_IDLE)
        .tcp_keepalive(TCP_KEEPALIVE)
        .tcp_nodelay(true);
    let builder = match &api.tls {
        Some(tls) => builder
            .use_preconfigured_tls(client_config(tls)?)
            .https_only(true),
        None => builder,
    };
    builder.build().map_err(|err| TlsError::Client {
        reason: err.to_string(),
    })
}

/// rustls' side of [`agent_client`].
fn client_config(tls: &ApiTls) -> Result<ClientConfig, TlsError> {
    let section = section(tls);
    let provider = super::provider();
    let own = section.identity(&provider)?;
    let servers = section.server_verifier("ca_file", &tls.ca_file, &provider)?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| section.rustls(err))?
        .with_webpki_verifier(servers)
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(own)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The base URL of an agent's API at `addr` (`https` with `[api.tls]`);
/// a wildcard address (this node's own `listen`) is reached through
/// loopback.
pub fn api_base_url(api: &ApiConfig, addr: SocketAddr) -> String {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let scheme = if api.tls.is_some() { "https" } else { "http" };
    format!("{scheme}://{addr}")
}

#[cfg(test)]
#[path = "agent_tests.rs"]
mod tests;
