//! `[api]`: the HTTP API and `/metrics`, with its secret, its optional
//! listener of its own for the read-only routes (`read_listen`) and its
//! optional TLS (`[api.tls]`).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

/// Default address of the HTTP API and Prometheus `/metrics`.
pub const DEFAULT_API_LISTEN: &str = "0.0.0.0:9469";

/// `[api]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address of the HTTP API and `/metrics` (every route).
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
    /// A second address that serves only the routes that read (`/`,
    /// `/stats`, `/metrics`, `/api/v1/status`, `/api/v1/events`): for a
    /// Prometheus on a network of its own. Same header timeout and TLS as
    /// `listen`.
    #[serde(default)]
    pub read_listen: Option<SocketAddr>,
    /// A file holding the API's secret (at least 16 bytes): what changes
    /// state (drain, handover) needs it as `Authorization: Bearer`; the
    /// command line reads it from here. Without it, only this node itself
    /// (a loopback peer) may change state. Reading stays open.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// How long a connection may take to send a request's headers (and,
    /// with TLS, to finish its handshake first), and stay idle between
    /// requests, before it is closed.
    #[serde(default = "default_header_timeout", with = "humantime_serde")]
    pub header_timeout: Duration,
    /// HTTPS (`[api.tls]`; plain HTTP without it).
    #[serde(default)]
    pub tls: Option<ApiTls>,
}

/// `[api.tls]`: the API over TLS (rustls; TLS 1.2 and 1.3), optionally
/// mutual. PEM files, read at start and by `check-config`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApiTls {
    /// This node's certificate (then any intermediates), served by the
    /// API and presented as this node's identity when it calls another
    /// agent's API. It names the addresses the API is reached at
    /// (subjectAltName IPs): callers check the address they dial.
    pub cert_file: PathBuf,
    /// The certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The CA this node trusts when it calls an agent's API (the command
    /// line, the cluster channel): it signed the agents' certificates.
    pub ca_file: PathBuf,
    /// With it, mutual TLS: the API serves only clients that present a
    /// certificate this CA signed (the command line and other agents
    /// present `cert_file`).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: default_api_listen(),
            read_listen: None,
            secret_file: None,
            header_timeout: default_header_timeout(),
            tls: None,
        }
    }
}

fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_api_listen() -> SocketAddr {
    DEFAULT_API_LISTEN.parse().expect("valid default address")
}

impl ApiConfig {
    /// Checks of the section on its own: `Err` is the table and the key
    /// at fault, and the message.
    pub(super) fn check(&self) -> Result<(), (&'static str, &'static str, String)> {
        if self.header_timeout.is_zero() {
            return Err((
                "api",
                "header_timeout",
                "api.header_timeout must be more than 0".to_owned(),
            ));
        }
        if let Some(read) = self.read_listen
            && read == self.listen
        {
            return Err((
                "api",
                "read_listen",
                format!(
                    "api.read_listen: {read} is api.listen already; give it an address (or port) of its own"
                ),
            ));
        }
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        let files = [
            ("cert_file", Some(&tls.cert_file)),
            ("key_file", Some(&tls.key_file)),
            ("ca_file", Some(&tls.ca_file)),
            ("client_ca_file", tls.client_ca_file.as_ref()),
        ];
        for (key, path) in files {
            if path.is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(("api.tls", key, format!("api.tls.{key}: a path is needed")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "api_tests.rs"]
mod tests;
