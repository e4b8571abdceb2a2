//! `GET /metrics`: the counters (`crate::metrics`) in Prometheus's text format.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};

use crate::auth::api_key::presents_master_key;
use crate::error::AppError;
use crate::state::AppState;

/// Needs the master key unless `metrics_public: true`.
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let master = state.config.master_key.as_deref();
    if !state.config.metrics_public && !presents_master_key(&headers, master) {
        return AppError::Unauthorized(
            "Metrics need the master key (or `metrics_public: true` in the config).".into(),
        )
        .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.recorder.metrics().render(),
    )
        .into_response()
}
