//! Who may change state through the API (drain, handover), and the
//! access log.
//!
//! With `[api] secret_file`, a request that changes state must carry the
//! secret (`Authorization: Bearer SECRET`), compared in constant time;
//! without one, only this node itself (a loopback peer: the command line
//! on the node) may. Anything else gets 401 and a log line, and changes
//! nothing: reaching a node (even through its own VIP) is not enough to
//! steer it. Reading (`/metrics`, status, events, the stats page) stays
//! open.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Instant};

use axum::{
    Json,
    body::HttpBody as _,
    extract::{ConnectInfo, Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tracing::{info, warn};

use crate::sync::auth::{Secret, SecretError};

/// The API's guard of state changes.
#[derive(Debug, Default)]
pub struct Guard {
    secret: Option<Secret>,
}

impl Guard {
    /// The guard for `[api] secret_file` (none: loopback only).
    pub fn load(secret_file: Option<&Path>) -> Result<Self, SecretError> {
        Ok(Self {
            secret: secret_file.map(Secret::load).transpose()?,
        })
    }

    /// Whether a request from `peer` with these headers may change state;
    /// why not, otherwise (never showing what was presented).
    pub fn check(
        &self,
        peer: SocketAddr,
        headers: &axum::http::HeaderMap,
    ) -> Result<(), &'static str> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match (&self.secret, bearer) {
            (Some(secret), Some(token)) if secret.matches(token.trim().as_bytes()) => Ok(()),
            (Some(_), Some(_)) => Err("wrong secret"),
            (Some(_), None) => Err("no secret (Authorization: Bearer, from [api] secret_file)"),
            (None, _) if peer.ip().is_loopback() => Ok(()),
            (None, _) => {
                Err("not from this node, and no [api] secret_file is set to let others in")
            }
        }
    }
}

/// Middleware of the routes that change state.
pub async fn require_secret(
    State(guard): State<Arc<Guard>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    match guard.check(peer, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(why) => {
            warn!(%peer, method = %request.method(), path = request.uri().path(), "API: refused: {why}");
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"vipx\"")],
                Json(serde_json::json!({ "error": format!("unauthorized: {why}") })),
            )
                .into_response()
        }
    }
}

/// One line per request: peer, status, method, path, latency, bytes.
pub async fn access_log(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let bytes = response
        .body()
        .size_hint()
        .exact()
        .map_or_else(|| "-".to_owned(), |b| b.to_string());
    info!(
        target: "vipx_agent::api::access",
        "{peer} {} {method} {path} {:.3} ms {bytes} bytes",
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0,
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"an API secret of enough bytes";

    fn headers(authorization: Option<&str>) -> axum::http::HeaderMap {
        let mut headers = axum::http::HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, value.parse().expect("header value"));
        }
        headers
    }

    #[test]
    fn with_a_secret_only_the_secret_opens() {
        let guard = Guard {
            secret: Some(Secret::from_bytes(SECRET)),
        };
        let remote: SocketAddr = "10.77.0.21:40000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let right = format!("Bearer {}", String::from_utf8_lossy(SECRET));
        assert_eq!(guard.check(remote, &headers(Some(&right))), Ok(()));
        assert_eq!(
            guard.check(
                remote,
                &headers(Some("Bearer an API secret of enough byteZ"))
            ),
            Err("wrong secret")
        );
        assert!(guard.check(remote, &headers(None)).is_err(), "none");
        assert!(
            guard.check(local, &headers(None)).is_err(),
            "with a secret, loopback needs it too"
        );
        assert!(
            guard
                .check(
                    remote,
                    &headers(Some(&format!("Basic {}", String::from_utf8_lossy(SECRET))))
                )
                .is_err(),
            "only a bearer"
        );
    }

    #[test]
    fn without_a_secret_only_this_node_may_change_state() {
        let guard = Guard::default();
        assert_eq!(
            guard.check("127.0.0.1:1".parse().unwrap(), &headers(None)),
            Ok(())
        );
        assert_eq!(
            guard.check("[::1]:1".parse().unwrap(), &headers(None)),
            Ok(())
        );
        assert!(
            guard
                .check("10.77.0.100:1".parse().unwrap(), &headers(None))
                .is_err()
        );
    }
}
