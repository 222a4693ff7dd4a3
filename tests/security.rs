//! Attacks on children's data and on the service, each reproduced against a real server (signed
//! webhooks, the REST API, concurrent requests) and seen refused, on both backends.

mod common;

use std::time::Duration;

use chatbot::channels::mock_graph::MockGraph;
use chatbot::channels::whatsapp_cloud::sign;
use chatbot::demo::{self, DemoCredentials};
use common::{TestApp, TestEnv, Variant};
use reqwest::StatusCode;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

variants!(one_schools_app_secret_never_speaks_for_anothers_number);

const WEBHOOK: &str = "/api/v1/chatbot/webhooks/whatsapp/";

async fn start(v: Variant) -> Option<(TestApp, MockGraph, DemoCredentials)> {
    let mut env = TestEnv::new(v).await?;
    let mock = MockGraph::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    env.settings.whatsapp_api_base = mock.base_url();
    let app = env.start().await;
    let creds = demo::seed(&app.state.db, &app.state.secret).await.unwrap();
    Some((app, mock, creds))
}

/// One change of a Meta notification: `number` written to, with messages and statuses.
fn change(number: &str, messages: Value, statuses: Value) -> Value {
    json!({"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100001", "phone_number_id": number},
        "messages": messages,
        "statuses": statuses,
    }})
}

fn text_from(digits: &str, id: &str, body: &str) -> Value {
    json!([{"from": digits, "id": id, "timestamp": "1763800000", "type": "text",
        "text": {"body": body}}])
}

fn notification(changes: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": changes}]
    }))
    .unwrap()
}

async fn post_signed(app: &TestApp, body: &[u8], secret: &str) -> (StatusCode, Value) {
    let r = app
        .http
        .post(app.url(WEBHOOK))
        .header("content-type", "application/json")
        .header("X-Hub-Signature-256", sign(body, secret))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn rows<E>(app: &TestApp) -> u64
where
    E: EntityTrait,
    E::Model: Sync,
{
    E::find().count(&app.state.db).await.unwrap()
}

/// Point 1: school B's admin holds B's app secret. Signed with it, a body naming A's number
/// (alone, beside B's own, or as delivery statuses) or the platform's shared number is refused,
/// and nothing is queued, answered or recorded; each school's own deliveries still pass.
async fn one_schools_app_secret_never_speaks_for_anothers_number(v: Variant) {
    use chatbot::entities::{chat_session, message_log};
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let (a, b) = (&creds.tenants[0], &creds.tenants[1]);
    let a_parent = a
        .parent_with_children(1)
        .unwrap()
        .phone
        .trim_start_matches('+');
    let b_parent = b
        .parent_with_children(1)
        .unwrap()
        .phone
        .trim_start_matches('+');
    let (a_number, b_number) = (&a.whatsapp.phone_number_id, &b.whatsapp.phone_number_id);
    let shared = &creds.shared_number.phone_number_id;
    let b_secret = &b.whatsapp.app_secret;
    let attacks = [
        (
            "A's number",
            notification(vec![change(
                a_number,
                text_from(a_parent, "wamid.f1", "hi"),
                json!([]),
            )]),
        ),
        (
            "B's number, then A's",
            notification(vec![
                change(b_number, text_from(b_parent, "wamid.f2", "hi"), json!([])),
                change(a_number, text_from(a_parent, "wamid.f3", "hi"), json!([])),
            ]),
        ),
        (
            "statuses of A's number",
            notification(vec![change(
                a_number,
                json!([]),
                json!([{"id": "wamid.mock.1", "status": "failed", "recipient_id": a_parent}]),
            )]),
        ),
        (
            "the shared number",
            notification(vec![change(
                shared,
                text_from(a_parent, "wamid.f4", "hi"),
                json!([]),
            )]),
        ),
        (
            "no number",
            notification(vec![change(
                "",
                text_from(a_parent, "wamid.f5", "hi"),
                json!([]),
            )]),
        ),
    ];
    for (what, body) in &attacks {
        let (status, answer) = post_signed(&app, body, b_secret).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_signature")),
            "{what}, signed with B's secret"
        );
    }
    // A's own secret cannot speak for B's number either, nor for both at once.
    let both = &attacks[1].1;
    assert_eq!(
        post_signed(&app, both, &a.whatsapp.app_secret).await.0,
        StatusCode::UNAUTHORIZED
    );

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(mock.received().is_empty(), "nothing was answered");
    assert_eq!(rows::<chat_session::Entity>(&app).await, 0);
    assert_eq!(rows::<message_log::Entity>(&app).await, 0);

    // Each school's own deliveries, and the platform's on the shared number, still pass.
    for (secret, number, from, id) in [
        (b_secret, b_number, b_parent, "wamid.ok1"),
        (&a.whatsapp.app_secret, a_number, a_parent, "wamid.ok2"),
        (&a.whatsapp.app_secret, shared, a_parent, "wamid.ok3"),
    ] {
        let body = notification(vec![change(number, text_from(from, id, "hi"), json!([]))]);
        assert_eq!(
            post_signed(&app, &body, secret).await.0,
            StatusCode::OK,
            "{id}"
        );
    }
    let to = |number: &str, parent: &str| {
        let (number, parent) = (number.to_string(), parent.to_string());
        move |r: &chatbot::channels::mock_graph::Received| {
            r.phone_number_id == number && r.to() == parent
        }
    };
    common::eventually("an answer to each", Duration::from_secs(30), || async {
        let got = mock.received();
        [
            to(b_number, b_parent),
            to(a_number, a_parent),
            to(shared, a_parent),
        ]
        .iter()
        .all(|answered| got.iter().any(answered))
        .then_some(())
    })
    .await;
    app.stop().await.unwrap();
    mock.stop();
}
