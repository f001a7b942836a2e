//! Operations: liveness, readiness and metrics.

use super::*;

/// Liveness: whether the engine still takes commands.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "The engine runs: `{\"status\":\"ok\"}`", body = Health),
        (status = 503, description = "The engine stopped: `{\"status\":\"unavailable\"}`", body = Health)
    )
)]
pub(super) async fn healthz(State(state): State<AppState>) -> Response {
    engine_status(&state, "ok")
}

/// Readiness: whether the engine takes work; a load balancer sends traffic only on 200.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: `{\"status\":\"ready\"}`", body = Health),
        (status = 503, description = "Not taking work: `{\"status\":\"unavailable\"}`", body = Health)
    )
)]
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    engine_status(&state, "ready")
}

/// 200 with `up` while the engine takes commands, else 503 `unavailable`: the engine has one
/// way to be unable to work (stopped, or its store failed), so liveness and readiness agree.
fn engine_status(state: &AppState, up: &str) -> Response {
    let (code, status) = if state.engine.is_running() {
        (StatusCode::OK, up)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    respond(
        code,
        Health {
            status: status.into(),
        },
    )
}

/// Prometheus text by default; OpenMetrics for a scraper that asks for it.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text 0.0.4, or OpenMetrics when `Accept` asks for `application/openmetrics-text`", content_type = "text/plain")
    )
)]
pub(super) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let live = state.engine.live_metrics();
    let openmetrics = headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (content_type, text) = if openmetrics {
        (OPENMETRICS_CONTENT_TYPE, live.encode_openmetrics())
    } else {
        (PROMETHEUS_CONTENT_TYPE, live.encode())
    };
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, content_type)],
        text,
    )
        .into_response()
}
