//! Liveness and readiness probes, and the metrics.

use crate::error::ErrorCode;
use poem::http::StatusCode;
use poem::web::{Data, Json};
use poem::{IntoResponse, Response, handler};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::error::json_error;
use crate::state::AppState;

/// Alive: the process answers HTTP.
#[handler]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready: the database and the job queue both answer.
#[handler]
pub async fn readyz(state: Data<&AppState>) -> Response {
    let db = state.db.ping().await;
    let queue = state.queue.ping().await;
    match (&db, &queue) {
        (Ok(()), Ok(())) => Json(json!({
            "status": "ready",
            "database": crate::db::backend_name(&state.db),
            "queue": state.queue.backend_name(),
        }))
        .into_response(),
        _ => {
            let mut problems = Vec::new();
            if let Err(e) = &db {
                tracing::warn!(error = %e, "readiness: database unreachable");
                problems.push("database unreachable");
            }
            if let Err(e) = &queue {
                tracing::warn!(error = %e, "readiness: job queue unreachable");
                problems.push("job queue unreachable");
            }
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::NotReady,
                problems.join("; "),
            )
        }
    }
}

/// `/metrics` on the public listener: only with `Authorization: Bearer <CHATBOT_METRICS_TOKEN>`,
/// and never when the metrics have their own listener (`CHATBOT_METRICS_LISTEN`). The metrics
/// name schools and count their traffic: not for anyone who finds the URL.
#[handler]
pub async fn public_metrics(req: &poem::Request, state: Data<&AppState>) -> Response {
    let settings = &state.settings;
    let Some(token) = settings
        .server
        .metrics_token
        .as_ref()
        .filter(|_| settings.server.metrics_listen.is_none())
    else {
        return json_error(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "metrics are not served here (see CHATBOT_METRICS_TOKEN and CHATBOT_METRICS_LISTEN)",
        );
    };
    if !bearer_is(req, token.expose_secret()) {
        let mut refused = json_error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "metrics need Authorization: Bearer <CHATBOT_METRICS_TOKEN>",
        );
        refused.headers_mut().insert(
            poem::http::header::WWW_AUTHENTICATE,
            poem::http::HeaderValue::from_static("Bearer"),
        );
        return refused;
    }
    metrics_of(&state).await
}

/// `/metrics` on the metrics listener: a token is asked for only when one is set.
#[handler]
pub async fn private_metrics(req: &poem::Request, state: Data<&AppState>) -> Response {
    if let Some(token) = &state.settings.server.metrics_token
        && !bearer_is(req, token.expose_secret())
    {
        return json_error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "metrics need Authorization: Bearer <CHATBOT_METRICS_TOKEN>",
        );
    }
    metrics_of(&state).await
}

/// Does the request carry `Authorization: Bearer <token>`? Compared in constant time.
fn bearer_is(req: &poem::Request, token: &str) -> bool {
    let given = req
        .header(poem::http::header::AUTHORIZATION)
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    crate::crypto::secrets_equal(given.as_bytes(), token.as_bytes())
}

/// Prometheus metrics: this process' counters and histograms, and the queue depths (shared by
/// every process on the queue) read now.
async fn metrics_of(state: &AppState) -> Response {
    use crate::pipeline::{cleanup::CleanupJob, deliver::SendJob, turn::IngestJob};
    let depths = [
        ("ingest", state.queue.depth::<IngestJob>().await),
        ("send", state.queue.depth::<SendJob>().await),
        ("cleanup", state.queue.depth::<CleanupJob>().await),
    ];
    let mut gauges = Vec::new();
    for (queue, depth) in depths {
        match depth {
            Ok((waiting, running)) => {
                for (label, value) in [("waiting", waiting), ("running", running)] {
                    gauges.push((
                        "chatbot_queue_depth",
                        vec![("queue", queue.to_string()), ("state", label.to_string())],
                        value as f64,
                    ));
                }
            }
            Err(e) => tracing::warn!(error = %e, queue, "metrics: queue depth unavailable"),
        }
    }
    Response::builder()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&gauges))
}
