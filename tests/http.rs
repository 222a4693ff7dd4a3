//! The HTTP edge against the real server: probes, docs, the committed spec, error shapes,
//! request ids, body limits, trailing slashes.

mod common;

use common::{TestApp, Variant};
use reqwest::StatusCode;
use serde_json::Value;

variants!(
    probes_report_both_engines,
    errors_share_one_shape,
    body_limit_applies_with_and_without_length,
    readyz_fails_when_the_database_is_gone,
);

async fn probes_report_both_engines(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");

    let r = app.get("/readyz").await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    let expected_db = match (v, app.settings().storage.database_url.is_some()) {
        (Variant::Services, true) => "postgres",
        _ => "sqlite",
    };
    let expected_queue = if app.settings().queue.redis_url.is_some() {
        "redis"
    } else {
        "sqlite"
    };
    assert_eq!(body["database"], expected_db);
    assert_eq!(body["queue"], expected_queue);

    let r = app.get("/docs").await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("SwaggerUIBundle") && html.contains("\"/version/\""));

    let r = app.get("/openapi.json").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let served = r.text().await.unwrap();
    assert_eq!(
        served,
        chatbot::api::spec_json(),
        "served spec is the generated one"
    );

    // Seed-style trailing slash and the bare form both reach the API.
    for path in ["/api/v1/chatbot/version/", "/api/v1/chatbot/version"] {
        let r = app.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.json::<Value>().await.unwrap()["service"], "chatbot");
    }
    // Shared state is loggable without leaking the server secret.
    let shown = format!("{:?}", app.state);
    assert!(
        shown.contains("SecretKey([redacted])") && !shown.contains("test-secret-key"),
        "{shown}"
    );
    app.stop().await.expect("clean shutdown");
}

async fn readyz_fails_when_the_database_is_gone(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    app.state.db.clone().close().await.unwrap();
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "not_ready");
    assert_eq!(body["message"], "database unreachable");
    // Still alive: liveness does not depend on the database.
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    app.stop().await.unwrap();
}

async fn errors_share_one_shape(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let cases = [
        (
            reqwest::Method::GET,
            "/no/such/route",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            reqwest::Method::DELETE,
            "/api/v1/chatbot/version/",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            reqwest::Method::PATCH,
            "/api/v1/chatbot/notices/12/",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            reqwest::Method::POST,
            "/healthz",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, path, status, code) in cases {
        let r = app
            .http
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{method} {path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        if path.starts_with("/api/") && status == StatusCode::METHOD_NOT_ALLOWED {
            let allow = r.headers()["allow"].to_str().unwrap();
            let expected = if path.contains("notices") {
                "GET, PUT, DELETE"
            } else {
                "GET"
            };
            assert_eq!(allow, expected, "405s name the methods the spec documents");
        }
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(id.len(), 36, "a generated request id is a UUID");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], code, "{method} {path}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(
            body.as_object().unwrap().len(),
            2,
            "exactly error + message"
        );
    }

    // A sane incoming request id is kept; a hostile one is replaced.
    let r = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-abc.123");
    let hostile = format!("x{}", "\u{7f}<script>".repeat(3));
    let r = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", hostile.replace('\u{7f}', ""))
        .send()
        .await
        .unwrap();
    assert_ne!(
        r.headers()["x-request-id"].to_str().unwrap(),
        hostile.replace('\u{7f}', "")
    );
    app.stop().await.unwrap();
}

/// POST `body` in 4 KiB chunks without a Content-Length.
async fn post_chunked(app: &TestApp, body: &[u8]) -> reqwest::Response {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(4096).map(|c| Ok(c.to_vec())).collect();
    app.http
        .post(app.url("/api/v1/chatbot/version/"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap()
}

async fn body_limit_applies_with_and_without_length(v: Variant) {
    let Some(env) = common::TestEnv::new(v).await else {
        return;
    };
    let mut env = env;
    env.settings.server.body_limit = 64 * 1024;
    let app = env.start().await;

    // Declared length over the limit: refused before reading.
    let big = vec![b'a'; 64 * 1024 + 1];
    let r = app
        .http
        .post(app.url("/api/v1/chatbot/version/"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "payload_too_large"
    );

    // Chunked body (no Content-Length) over the limit: counted while reading.
    let r = post_chunked(&app, &big).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Under the limit, a chunked body passes the edge and reaches routing (405 for POST here).
    let r = post_chunked(&app, &[b'a'; 1000]).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    app.stop().await.unwrap();
}

#[test]
fn committed_spec_matches_generated() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .expect("openapi/openapi.json is committed");
    let generated = chatbot::api::spec_json();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: run `cargo run -- openapi --output openapi/openapi.json` and commit it"
    );
}
