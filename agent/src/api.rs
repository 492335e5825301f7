//! The agent's HTTP endpoint: Prometheus `/metrics` and the JSON API.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};

use crate::daemon::AgentState;

/// Prometheus text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The routes the agent serves.
pub fn router(state: Arc<AgentState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AgentState>>) -> Response {
    let text = tokio::task::spawn_blocking(move || state.metrics.render())
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response()
}

async fn status(State(state): State<Arc<AgentState>>) -> Response {
    Json(state.status()).into_response()
}
