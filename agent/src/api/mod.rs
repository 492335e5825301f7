//! The agent's HTTP endpoint: Prometheus `/metrics`, the JSON API and the
//! stats page (`/stats`, where `/` leads).
//!
//! - [`wire`]: what the API sends and receives;
//! - [`report`]: the status report, read off the running agent;
//! - [`stats`]: the status report and the timeline as an HTML page;
//! - [`client`]: the API as the command line uses it.

pub mod client;
pub mod guard;
pub mod ha;
mod report;
pub mod server;
pub mod stats;
pub mod wire;

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;

use crate::{
    operator::{HandoverCall, HandoverError, HandoverRequest},
    state::AgentState,
};
use wire::DrainRequest;

/// Prometheus text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The routes the agent serves: reading is open, changing state passes
/// the [`guard`], the cluster's routes (`ha`, when there is a cluster)
/// the cluster secret; every request is logged.
pub fn router(state: Arc<AgentState>, guard: Arc<guard::Guard>, ha: Option<Router>) -> Router {
    let changes = Router::new()
        .route("/api/v1/drain", post(drain))
        .route("/api/v1/handover", post(handover))
        .route_layer(axum::middleware::from_fn_with_state(
            guard,
            guard::require_secret,
        ));
    reads()
        .merge(changes)
        .with_state(state)
        .merge(ha.unwrap_or_default())
        .layer(axum::middleware::from_fn(guard::access_log))
}

/// Only the routes that read (`[api] read_listen`): the stats page,
/// `/metrics`, status and events; every request is logged.
pub fn read_router(state: Arc<AgentState>) -> Router {
    reads()
        .layer(axum::middleware::from_fn(guard::access_log))
        .with_state(state)
}

fn reads() -> Router<Arc<AgentState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/stats") }))
        .route("/stats", get(stats_page))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/events", get(events))
}

async fn metrics(State(state): State<Arc<AgentState>>) -> Response {
    let text = tokio::task::spawn_blocking(move || state.metrics.render())
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response()
}

async fn stats_page(State(state): State<Arc<AgentState>>) -> Response {
    let page = tokio::task::spawn_blocking(move || {
        stats::page(&report::status(&state), &state.events.since(0))
    })
    .await
    .unwrap_or_default();
    ([(header::CACHE_CONTROL, "no-store")], Html(page)).into_response()
}

async fn status(State(state): State<Arc<AgentState>>) -> Response {
    Json(report::status(&state)).into_response()
}

/// `GET /api/v1/events?after=N`
#[derive(Debug, Default, Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: u64,
}

async fn events(
    State(state): State<Arc<AgentState>>,
    Query(query): Query<EventsQuery>,
) -> Response {
    Json(state.events.since(query.after)).into_response()
}

async fn drain(
    State(state): State<Arc<AgentState>>,
    Json(request): Json<DrainRequest>,
) -> Response {
    // A drain rewrites Maglev tables (65,537 slots each) under the table's
    // lock: on a blocking thread, not on the runtime's two workers, which
    // run the elections.
    let drained = {
        let state = Arc::clone(&state);
        tokio::task::spawn_blocking(move || state.drain(request.backend, request.drain))
            .await
            .unwrap_or(false)
    };
    if drained {
        (
            StatusCode::OK,
            Json(serde_json::json!({ "backend": request.backend, "drained": request.drain })),
        )
            .into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": format!("no service has backend {}", request.backend) })),
        )
            .into_response()
    }
}

/// `POST /api/v1/handover`: the daemon runs the groups, so the request goes
/// there and its answer comes back.
async fn handover(
    State(state): State<Arc<AgentState>>,
    Json(request): Json<HandoverRequest>,
) -> Response {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let answer = if state
        .handovers
        .send(HandoverCall { request, reply })
        .is_ok()
    {
        answer.await.unwrap_or(Err(HandoverError::Stopping))
    } else {
        Err(HandoverError::Stopping)
    };
    match answer {
        Ok(groups) => (StatusCode::OK, Json(groups)).into_response(),
        Err(err) => {
            let status = match err {
                HandoverError::NoSuchGroup(_) => StatusCode::NOT_FOUND,
                HandoverError::Stopping => StatusCode::SERVICE_UNAVAILABLE,
                HandoverError::Static(_) | HandoverError::NotMaster | HandoverError::NotHeld => {
                    StatusCode::CONFLICT
                }
            };
            (
                status,
                Json(serde_json::json!({ "error": err.to_string() })),
            )
                .into_response()
        }
    }
}
