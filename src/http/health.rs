//! Liveness and readiness probes.

use poem::http::StatusCode;
use poem::web::{Data, Json};
use poem::{IntoResponse, Response, handler};
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
                "not_ready",
                problems.join("; "),
            )
        }
    }
}

/// Prometheus metrics: this process' counters and histograms, and the queue depths (shared by
/// every process on the queue) read now.
#[handler]
pub async fn metrics(state: Data<&AppState>) -> Response {
    use crate::jobs::{cleanup::CleanupJob, ingest::IngestJob, send::SendJob};
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
