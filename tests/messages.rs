//! `POST /api/v1/chatbot/messages/`: the engine over HTTP, authenticated by the school's API key.

mod common;

use chatbot::demo::{self, DemoCredentials};
use common::{TestApp, Variant};
use reqwest::StatusCode;
use serde_json::{Value, json};

variants!(
    messages_need_a_valid_key_and_valid_input,
    a_conversation_over_the_api,
    a_key_only_reaches_its_own_school,
    concurrent_parents_all_get_answers,
);

const PATH: &str = "/api/v1/chatbot/messages/";

async fn demo_app(v: Variant) -> Option<(TestApp, DemoCredentials)> {
    let app = TestApp::spawn(v).await?;
    let creds = demo::seed(&app.state.db, &app.state.secret).await.unwrap();
    Some((app, creds))
}

async fn send(app: &TestApp, key: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut req = app.http.post(app.url(PATH)).json(&body);
    if let Some(k) = key {
        req = req.header("X-API-KEY", k);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn plain(result: &Value) -> String {
    result["replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["plain"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn messages_need_a_valid_key_and_valid_input(v: Variant) {
    let Some((app, creds)) = demo_app(v).await else {
        return;
    };
    let key = creds.tenants[0].api_key.as_str();
    let ok_body = json!({"phone": "+2348030000002", "text": "hi"});

    let (s, b) = send(&app, None, ok_body.clone()).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized")),
        "{b}"
    );
    let (s, b) = send(&app, Some("cbk_not_a_key"), ok_body.clone()).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized")),
        "{b}"
    );

    // A key without the `messages` scope.
    {
        use sea_orm::{ActiveModelTrait, Set};
        let ctx = chatbot::tenancy::by_api_key(&app.state.db, key)
            .await
            .unwrap()
            .tenant;
        let other = chatbot::crypto::generate_api_key();
        chatbot::entities::api_key::ActiveModel {
            tenant_id: Set(ctx.id()),
            name: Set("reports only".into()),
            prefix: Set(other.prefix.clone()),
            key_hash: Set(other.hash.clone()),
            scopes: Set("reports".into()),
            created_at: Set(chrono::Utc::now()),
            ..Default::default()
        }
        .insert(&app.state.db)
        .await
        .unwrap();
        use secrecy::ExposeSecret;
        let (s, b) = send(&app, Some(other.plaintext.expose_secret()), ok_body.clone()).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden")),
            "{b}"
        );
    }

    let (s, b) = send(
        &app,
        Some(key),
        json!({"phone": "not a phone", "text": "hi"}),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_phone")),
        "{b}"
    );
    let (s, b) = send(
        &app,
        Some(key),
        json!({"phone": "+2348030000002", "text": "x".repeat(4097)}),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("text_too_long")),
        "{b}"
    );
    let (s, b) = send(
        &app,
        Some(key),
        json!({"phone": "+2348030000002", "text": "hi", "channel": "Bad Channel"}),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_channel")),
        "{b}"
    );
    let r = app
        .http
        .post(app.url(PATH))
        .header("X-API-KEY", key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"], "bad_request", "{b}");
    assert_eq!(
        b["message"], "the body is not valid JSON (line 1, column 2: key must be a string)",
        "{b}"
    );
    // A body of the wrong shape is refused with the field named in words, not the parser's.
    for (body, code, message) in [
        (
            json!({"phone": null, "text": "hi"}),
            "bad_request",
            "the field `phone` must be text, but it is null",
        ),
        (
            json!({"text": "hi"}),
            "bad_request",
            "the field `phone` is missing: it is required (text)",
        ),
        (
            json!({"phone": "+2348030000002", "text": 5}),
            "bad_request",
            "the field `text` must be text, but it is the number 5",
        ),
        (
            json!({"phone": "0803 000 0002", "text": "hi"}),
            "invalid_phone",
            "the field `phone` is not in the form it must take",
        ),
        (
            json!({"phone": "+2348030000002", "text": "hi", "channel": "Bad Channel"}),
            "invalid_channel",
            "the field `channel` is not in the form it must take",
        ),
    ] {
        let (s, b) = send(&app, Some(key), body.clone()).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}: {b}"
        );
        assert!(
            b["message"].as_str().unwrap().starts_with(message),
            "{body}: {b}"
        );
    }

    // None of the rejected requests started a conversation.
    use sea_orm::{EntityTrait, PaginatorTrait};
    assert_eq!(
        chatbot::entities::chat_session::Entity::find()
            .count(&app.state.db)
            .await
            .unwrap(),
        0
    );
    app.stop().await.unwrap();
}

async fn a_conversation_over_the_api(v: Variant) {
    let Some((app, creds)) = demo_app(v).await else {
        return;
    };
    let key = creds.tenants[0].api_key.as_str();
    let parent = creds.tenants[0].parent_with_children(1).unwrap();
    let (s, b) = send(
        &app,
        Some(key),
        json!({"phone": parent.phone, "text": "hello"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "main_menu");
    assert!(plain(&b).contains("Welcome to Greenfield Academy"));
    let menu = b["replies"].as_array().unwrap().last().unwrap();
    assert_eq!(menu["type"], "choices");
    assert_eq!(menu["choices"][0]["id"], "menu:results");

    // Tapping a choice by id.
    let (_, b) = send(
        &app,
        Some(key),
        json!({"phone": parent.phone, "text": "Results", "choice": "menu:results"}),
    )
    .await;
    assert_eq!(b["state"], "choosing_exam", "{b}");
    let exam = b["replies"][0]["choices"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, b) = send(
        &app,
        Some(key),
        json!({"phone": parent.phone, "text": "", "choice": exam}),
    )
    .await;
    assert_eq!(b["state"], "viewing_results", "{b}");
    assert!(plain(&b).contains("Total"));
    let (_, b) = send(
        &app,
        Some(key),
        json!({"phone": parent.phone, "text": "report card", "choice": "nav:report"}),
    )
    .await;
    assert_eq!(b["effects"][0]["type"], "generate_report", "{b}");

    // Unplaceable text is reported as unhandled, and still answered.
    let (_, b) = send(
        &app,
        Some(key),
        json!({"phone": parent.phone, "text": "how did she do compared to last term?"}),
    )
    .await;
    assert_eq!(b["unhandled"], "how did she do compared to last term?");
    assert!(plain(&b).contains("1. Results"));
    app.stop().await.unwrap();
}

async fn a_key_only_reaches_its_own_school(v: Variant) {
    let Some((app, creds)) = demo_app(v).await else {
        return;
    };
    let (demo, north) = (&creds.tenants[0], &creds.tenants[1]);
    let parent = demo.parent_with_children(1).unwrap();
    let child = demo.student(&parent.student_ids[0]).unwrap();
    // The demo parent's phone, through Northbridge's key: not mapped there, so asked to verify.
    let (_, b) = send(
        &app,
        Some(&north.api_key),
        json!({"phone": parent.phone, "text": "results"}),
    )
    .await;
    assert_eq!(b["state"], "awaiting_student_id", "{b}");
    assert!(plain(&b).contains("Northbridge College") && !plain(&b).contains("Greenfield"));
    // The demo child's real ID and PIN do not open anything at Northbridge.
    let (_, b) = send(
        &app,
        Some(&north.api_key),
        json!({"phone": parent.phone, "text": child.student_id}),
    )
    .await;
    assert_eq!(b["state"], "awaiting_pin", "{b}");
    let (_, b) = send(
        &app,
        Some(&north.api_key),
        json!({"phone": parent.phone, "text": child.pin}),
    )
    .await;
    assert!(plain(&b).contains("not right for"), "{b}");
    assert!(!plain(&b).contains(&child.name));
    app.stop().await.unwrap();
}

async fn concurrent_parents_all_get_answers(v: Variant) {
    let Some((app, creds)) = demo_app(v).await else {
        return;
    };
    let key = creds.tenants[0].api_key.clone();
    let phones: Vec<String> = creds.tenants[0]
        .parents
        .iter()
        .take(8)
        .map(|p| p.phone.clone())
        .collect();
    let tasks = phones.into_iter().map(|phone| {
        let (http, url, key) = (app.http.clone(), app.url(PATH), key.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for text in ["hi", "results", "1", "attendance", "menu", "notices"] {
                let r = http
                    .post(&url)
                    .header("X-API-KEY", &key)
                    .json(&json!({"phone": phone, "text": text}))
                    .send()
                    .await
                    .unwrap();
                statuses.push((r.status(), r.text().await.unwrap()));
            }
            statuses
        })
    });
    for task in futures::future::join_all(tasks).await {
        for (status, body) in task.unwrap() {
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    app.stop().await.unwrap();
}
