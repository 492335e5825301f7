//! The cluster's endpoints, between voters: `POST /api/v1/ha/register`,
//! `POST /api/v1/ha/ping` and `GET /api/v1/ha/nodes`. Every one requires
//! the cluster secret (`Authorization: Bearer`, `[cluster] secret_file`);
//! a voter must also come from its listed address.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    extract::{ConnectInfo, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tracing::warn;

use super::guard::{self, Guard};
use crate::cluster::{
    Cluster, Refusal,
    wire::{Ping, Register},
};

/// The cluster's routes, behind the cluster secret.
pub fn routes(cluster: Arc<Cluster>, secret: Arc<Guard>) -> Router {
    Router::new()
        .route("/api/v1/ha/register", post(register))
        .route("/api/v1/ha/ping", post(ping))
        .route("/api/v1/ha/nodes", get(nodes))
        .route_layer(axum::middleware::from_fn_with_state(
            secret,
            guard::require_secret,
        ))
        .with_state(cluster)
}

fn refused(refusal: &Refusal) -> Response {
    warn!("cluster: refused: {refusal}");
    (
        StatusCode::FORBIDDEN,
        Json(serde_json::json!({ "error": refusal.to_string() })),
    )
        .into_response()
}

async fn register(
    State(cluster): State<Arc<Cluster>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(request): Json<Register>,
) -> Response {
    match cluster.on_register(peer.ip(), &request) {
        Ok(answer) => Json(answer).into_response(),
        Err(refusal) => refused(&refusal),
    }
}

async fn ping(
    State(cluster): State<Arc<Cluster>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(request): Json<Ping>,
) -> Response {
    match cluster.on_ping(peer.ip(), request) {
        Ok(answer) => Json(answer).into_response(),
        Err(refusal) => refused(&refusal),
    }
}

async fn nodes(State(cluster): State<Arc<Cluster>>) -> Response {
    Json(cluster.nodes()).into_response()
}
