//! Meta Cloud API webhook end to end: signed deliveries in, replies out at a mock Graph API.

mod common;

use std::time::Duration;

use chatbot::channels::mock_graph::MockGraph;
use chatbot::channels::whatsapp_cloud::sign;
use chatbot::demo::{self, DemoCredentials};
use common::{Role, TestApp, TestEnv, Variant, eventually, ingest_job};
use reqwest::StatusCode;
use serde_json::{Value, json};

variants!(
    signed_deliveries_get_replies_at_the_graph_api,
    rejected_deliveries_enqueue_nothing,
    duplicate_deliveries_produce_one_reply,
    transient_failures_are_retried_permanent_ones_are_not,
    a_burst_from_one_parent_is_answered_in_order,
    web_and_worker_processes_split_the_work,
    statuses_reach_the_message_log_and_reruns_answer_nothing,
    replies_logged_but_never_queued_go_out_on_a_rerun,
    two_worker_processes_keep_one_parents_order,
    replies_outside_the_window_use_the_template,
    a_shared_number_lets_the_senders_phone_pick_the_school,
    a_report_card_arrives_as_a_document_whose_link_downloads_it,
);

/// The report flow over WhatsApp: the card comes as a Graph API document message, and its link
/// (signed, on the service) downloads the PDF.
async fn a_report_card_arrives_as_a_document_whose_link_downloads_it(v: Variant) {
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let demo = &creds.tenants[0];
    let wa = &demo.whatsapp;
    let digits = parent_digits(demo);
    let child = demo
        .student(&demo.parent_with_children(1).unwrap().student_ids[0])
        .unwrap();
    for (i, (words, total)) in [("hi", 2), ("report card", 3), ("1", 6)].iter().enumerate() {
        assert_eq!(
            say(&app, wa, &digits, &format!("wamid.rep{i}"), words).await,
            StatusCode::OK
        );
        wait_for(&mock, *total).await;
    }
    let sent = wait_for(&mock, 6).await;
    let document = sent
        .iter()
        .find(|m| m["type"] == "document")
        .unwrap_or_else(|| panic!("a document message among {sent:?}"));
    assert_eq!(document["to"], digits.as_str());
    assert!(
        document["document"]["caption"]
            .as_str()
            .unwrap()
            .contains(&child.name)
    );
    let link = url::Url::parse(document["document"]["link"].as_str().unwrap()).unwrap();
    assert_eq!(link.path().rsplit_once('/').unwrap().0, "/files/reports");
    let pdf = app
        .get(&format!("{}?{}", link.path(), link.query().unwrap()))
        .await;
    assert_eq!(pdf.status(), StatusCode::OK);
    assert!(pdf.bytes().await.unwrap().starts_with(b"%PDF-"));
    app.stop().await.unwrap();
    mock.stop();
}

const WEBHOOK: &str = "/api/v1/chatbot/webhooks/whatsapp/";

async fn start(v: Variant) -> Option<(TestApp, MockGraph, DemoCredentials)> {
    TestApp::with_demo_and_graph(v).await
}

/// Digits (as Meta writes them) of the demo school's first parent with one child.
fn parent_digits(demo: &chatbot::demo::DemoTenant) -> String {
    demo.parent_with_children(1)
        .unwrap()
        .phone
        .trim_start_matches('+')
        .to_string()
}

fn payload(phone_number_id: &str, from_digits: &str, id: &str, message: Value) -> Value {
    let mut m = json!({"from": from_digits, "id": id, "timestamp": "1763800000"});
    m.as_object_mut()
        .unwrap()
        .extend(message.as_object().unwrap().clone());
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550100001", "phone_number_id": phone_number_id},
            "contacts": [{"profile": {"name": "Parent"}, "wa_id": from_digits, "user_id": "US.123"}],
            "messages": [m],
            "some_future_field": {"ignored": true}
        }}]}]
    })
}

async fn post(app: &TestApp, body: &[u8], signature: Option<String>) -> (StatusCode, Value) {
    let mut req = app
        .http
        .post(app.url(WEBHOOK))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(sig) = signature {
        req = req.header("X-Hub-Signature-256", sig);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn deliver(app: &TestApp, secret: &str, body: &Value) -> StatusCode {
    let bytes = serde_json::to_vec(body).unwrap();
    post(app, &bytes, Some(sign(&bytes, secret))).await.0
}

async fn wait_for(mock: &MockGraph, n: usize) -> Vec<Value> {
    eventually(
        &format!("{n} messages at the Graph API"),
        Duration::from_secs(30),
        || async {
            let got = mock.received();
            (got.len() >= n).then(|| got.into_iter().map(|r| r.body).collect())
        },
    )
    .await
}

async fn signed_deliveries_get_replies_at_the_graph_api(v: Variant) {
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let demo = &creds.tenants[0];
    let wa = &demo.whatsapp;
    let parent = demo.parent_with_children(1).unwrap();
    let digits = parent.phone.trim_start_matches('+');

    let status = deliver(
        &app,
        &wa.app_secret,
        &payload(
            &wa.phone_number_id,
            digits,
            "wamid.1",
            json!({"type": "text", "text": {"body": "hi"}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let sent = wait_for(&mock, 2).await;
    assert_eq!(sent[0]["to"], digits);
    assert!(
        sent[0]["text"]["body"]
            .as_str()
            .unwrap()
            .contains("Welcome to Greenfield Academy")
    );
    assert_eq!(
        sent[1]["interactive"]["type"], "list",
        "six menu options make a list: {}",
        sent[1]
    );
    let rows = sent[1]["interactive"]["action"]["sections"][0]["rows"]
        .as_array()
        .unwrap();
    assert_eq!(rows.len(), 6);
    let received = mock.received();
    assert_eq!(received[0].phone_number_id, wa.phone_number_id);
    assert_eq!(
        received[0].authorization.as_deref(),
        Some(format!("Bearer {}", wa.access_token).as_str())
    );

    // Tapping a list row: the choice id comes back.
    let tap = json!({"type": "interactive", "interactive": {"type": "list_reply", "list_reply": {"id": "menu:results", "title": "Results"}}});
    assert_eq!(
        deliver(
            &app,
            &wa.app_secret,
            &payload(&wa.phone_number_id, digits, "wamid.2", tap)
        )
        .await,
        StatusCode::OK
    );
    let sent = wait_for(&mock, 3).await;
    assert!(
        sent[2]["interactive"]["body"]["text"]
            .as_str()
            .unwrap()
            .contains("Which results"),
        "{}",
        sent[2]
    );
    assert_eq!(
        sent[2]["interactive"]["type"], "button",
        "two exams make buttons"
    );

    // Media, locations and reactions are answered (politely, with the menu), not crashed on.
    let mut n = 3;
    for (i, other) in [
        json!({"type": "image", "image": {"id": "img", "mime_type": "image/jpeg"}}),
        json!({"type": "location", "location": {"latitude": 6.4, "longitude": 3.4}}),
        json!({"type": "reaction", "reaction": {"message_id": "wamid.1", "emoji": "👍"}}),
        json!({"type": "button", "button": {"payload": "menu:notices", "text": "Notices"}}),
        json!({"type": "some_new_type"}),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(
            deliver(
                &app,
                &wa.app_secret,
                &payload(&wa.phone_number_id, digits, &format!("wamid.o{i}"), other)
            )
            .await,
            StatusCode::OK
        );
        // Each of these turns answers twice (a text, then choices); wait for both, so the next
        // turn's first reply is not confused with this turn's second.
        let sent = eventually("both replies", Duration::from_secs(30), || async {
            let got = mock.received();
            (got.len() >= n + 2).then_some(got)
        })
        .await;
        let first = &sent[n].body;
        if i == 3 {
            // The template button carried a choice id: it was followed.
            assert!(first.to_string().contains("Mid-term break"), "{first}");
        } else {
            assert!(
                first["text"]["body"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("only read text"),
                "{first}"
            );
        }
        n = sent.len();
    }
    app.stop().await.unwrap();
    mock.stop();
}

async fn rejected_deliveries_enqueue_nothing(v: Variant) {
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let wa = &creds.tenants[0].whatsapp;
    let body = serde_json::to_vec(&payload(
        &wa.phone_number_id,
        "2348030000003",
        "wamid.x",
        json!({"type": "text", "text": {"body": "hi"}}),
    ))
    .unwrap();

    let (s, b) = post(&app, &body, None).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_signature"))
    );
    let (s, _) = post(&app, &body, Some(sign(&body, "not-the-secret"))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let mut tampered = body.clone();
    let last = tampered.len() - 2;
    tampered[last] = b' ';
    let (s, _) = post(&app, &tampered, Some(sign(&body, &wa.app_secret))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "signature of other bytes");
    // Signed, naming the number (so its secret is found), but not JSON.
    let junk = format!("{{\"phone_number_id\":\"{}\", not json", wa.phone_number_id).into_bytes();
    let (s, b) = post(&app, &junk, Some(sign(&junk, &wa.app_secret))).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_json"))
    );
    // Naming no number, no secret can be chosen: refused unread.
    let junk = b"{not json".to_vec();
    let (s, b) = post(&app, &junk, Some(sign(&junk, &wa.app_secret))).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_signature"))
    );
    let big = vec![b' '; 3 * 1024 * 1024 + 1];
    let (s, _) = post(&app, &big, Some(sign(&big, &wa.app_secret))).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);

    // Verification handshake.
    let verify = |token: &str| {
        app.http
            .get(app.url(WEBHOOK))
            .query(&[
                ("hub.mode", "subscribe"),
                ("hub.verify_token", token),
                ("hub.challenge", "1158201444"),
            ])
            .send()
    };
    let r = verify(&wa.verify_token).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "1158201444");
    assert_eq!(
        verify("wrong").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(mock.received().is_empty(), "nothing was queued");
    use sea_orm::{EntityTrait, PaginatorTrait};
    assert_eq!(
        chatbot::entities::chat_session::Entity::find()
            .count(&app.state.db)
            .await
            .unwrap(),
        0
    );
    app.stop().await.unwrap();
    mock.stop();
}

async fn duplicate_deliveries_produce_one_reply(v: Variant) {
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let demo = &creds.tenants[0];
    let wa = &demo.whatsapp;
    let digits = parent_digits(demo);
    let body = payload(
        &wa.phone_number_id,
        &digits,
        "wamid.dup",
        json!({"type": "text", "text": {"body": "hi"}}),
    );
    for _ in 0..100 {
        assert_eq!(deliver(&app, &wa.app_secret, &body).await, StatusCode::OK);
    }
    wait_for(&mock, 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(mock.received().len(), 2, "one welcome and one menu, once");
    // Deduplicated at the webhook: the engine saw the message once.
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let inbound = chatbot::entities::message_log::Entity::find()
        .filter(chatbot::entities::message_log::Column::Direction.eq("in"))
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(inbound, 1);
    app.stop().await.unwrap();
    mock.stop();
}

/// Deliver a signed text message `words` with message id `id` from `digits` to school `wa`.
async fn say(
    app: &TestApp,
    wa: &chatbot::demo::DemoWhatsapp,
    digits: &str,
    id: &str,
    words: &str,
) -> StatusCode {
    let (id, m) = text(id, words);
    deliver(
        app,
        &wa.app_secret,
        &payload(&wa.phone_number_id, digits, &id, m),
    )
    .await
}

fn text(id: &str, body: &str) -> (String, Value) {
    (
        id.to_string(),
        json!({"type": "text", "text": {"body": body}}),
    )
}

async fn transient_failures_are_retried_permanent_ones_are_not(v: Variant) {
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let demo = &creds.tenants[0];
    let wa = &demo.whatsapp;
    let digits = parent_digits(demo);
    // Rate limited, then a server error: both retried (with backoff) until sent.
    mock.fail_next(&[429, 500]);
    assert_eq!(
        say(&app, wa, &digits, "wamid.r1", "hi").await,
        StatusCode::OK
    );
    let sent = wait_for(&mock, 2).await;
    assert!(
        sent[0]["text"]["body"]
            .as_str()
            .unwrap()
            .contains("Welcome")
    );
    // A refusal (400) is not retried: that reply is skipped, the next one still goes.
    mock.fail_next(&[400]);
    assert_eq!(
        say(&app, wa, &digits, "wamid.r2", "help").await,
        StatusCode::OK
    );
    let sent = wait_for(&mock, 3).await;
    assert_eq!(
        sent[2]["interactive"]["type"], "list",
        "the menu after the refused help text: {}",
        sent[2]
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        mock.received().len(),
        3,
        "the refused reply was not sent again"
    );
    app.stop().await.unwrap();
    mock.stop();
}

async fn a_burst_from_one_parent_is_answered_in_order(v: Variant) {
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let demo = &creds.tenants[0];
    let wa = &demo.whatsapp;
    let digits = parent_digits(demo);
    for (id, body) in [
        ("wamid.b1", "hi"),
        ("wamid.b2", "results"),
        ("wamid.b3", "2"),
    ] {
        assert_eq!(say(&app, wa, &digits, id, body).await, StatusCode::OK);
    }
    let sent = wait_for(&mock, 4).await;
    assert!(
        sent[0]["text"]["body"]
            .as_str()
            .unwrap()
            .contains("Welcome"),
        "{}",
        sent[0]
    );
    assert_eq!(
        sent[1]["interactive"]["type"], "list",
        "menu second: {}",
        sent[1]
    );
    assert!(
        sent[2]["interactive"]["body"]["text"]
            .as_str()
            .unwrap()
            .contains("Which results"),
        "{}",
        sent[2]
    );
    assert!(
        sent[3]["interactive"]["body"]["text"]
            .as_str()
            .unwrap()
            .contains("Second Term Examination"),
        "{}",
        sent[3]
    );
    app.stop().await.unwrap();
    mock.stop();
}

async fn web_and_worker_processes_split_the_work(v: Variant) {
    let Some(mut env) = TestEnv::new(v).await else {
        return;
    };
    let mock = MockGraph::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    env.settings.whatsapp.api_base = mock.base_url();
    // The web role alone (`serve --no-workers`).
    let web = Role::web(&env.settings).await;
    let (base, state) = (web.base.clone().unwrap(), web.state.clone());
    let creds = demo::seed(&state.db, &state.secret).await.unwrap();
    let demo = &creds.tenants[0];
    let wa = &demo.whatsapp;
    let digits = parent_digits(demo);
    let body = serde_json::to_vec(&payload(
        &wa.phone_number_id,
        &digits,
        "wamid.w1",
        json!({"type": "text", "text": {"body": "hi"}}),
    ))
    .unwrap();
    let r = reqwest::Client::new()
        .post(format!("{base}{WEBHOOK}"))
        .header("X-Hub-Signature-256", sign(&body, &wa.app_secret))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "acknowledged once stored");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(mock.received().is_empty(), "no worker in the web process");

    // A separate workers-only application (`chatbot worker`) picks the job up.
    let worker = Role::worker(&env.settings).await;
    let sent = wait_for(&mock, 2).await;
    assert!(
        sent[0]["text"]["body"]
            .as_str()
            .unwrap()
            .contains("Welcome")
    );
    worker.stop().await;
    web.stop().await;
    mock.stop();
}

async fn statuses_reach_the_message_log_and_reruns_answer_nothing(v: Variant) {
    use chatbot::entities::message_log;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let demo = &creds.tenants[0];
    let wa = &demo.whatsapp;
    let digits = parent_digits(demo);
    assert_eq!(
        say(&app, wa, &digits, "wamid.s1", "hi").await,
        StatusCode::OK
    );
    wait_for(&mock, 2).await;
    let db = &app.state.db;
    let replies = || async {
        message_log::Entity::find()
            .filter(message_log::Column::Direction.eq("out"))
            .filter(message_log::Column::ReplyTo.eq("wamid.s1"))
            .order_by_asc(message_log::Column::Id)
            .all(db)
            .await
            .unwrap()
    };
    let rows = eventually(
        "both replies stamped as sent",
        Duration::from_secs(30),
        || async {
            let rows = replies().await;
            (rows.len() == 2 && rows.iter().all(|r| r.status == "sent")).then_some(rows)
        },
    )
    .await;
    assert_eq!(rows[0].provider_message_id.as_deref(), Some("wamid.mock.1"));
    assert_eq!(rows[1].provider_message_id.as_deref(), Some("wamid.mock.2"));
    let inbound = message_log::Entity::find()
        .filter(message_log::Column::Direction.eq("in"))
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inbound.provider_message_id.as_deref(), Some("wamid.s1"));

    let statuses = |list: Value| {
        json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": {
            "metadata": {"phone_number_id": wa.phone_number_id}, "statuses": list
        }}]}]})
    };
    let update = statuses(json!([
        {"id": "wamid.mock.1", "status": "delivered", "recipient_id": digits},
        {"id": "wamid.mock.1", "status": "read", "recipient_id": digits},
        {"id": "wamid.mock.2", "status": "failed", "recipient_id": digits,
         "errors": [{"code": 131047, "title": "Re-engagement message"}]},
        {"id": "wamid.unknown", "status": "read"}
    ]));
    assert_eq!(deliver(&app, &wa.app_secret, &update).await, StatusCode::OK);
    let late = statuses(json!([{"id": "wamid.mock.1", "status": "delivered"}]));
    assert_eq!(deliver(&app, &wa.app_secret, &late).await, StatusCode::OK);
    let rows = replies().await;
    assert_eq!(
        rows[0].status, "read",
        "a late 'delivered' does not undo 'read'"
    );
    assert_eq!(rows[1].status, "failed");
    assert!(
        rows[1]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("131047")
    );

    // The same ingest job run again (as after a crash before its ack) answers nothing new.
    app.state
        .queue
        .push(ingest_job(&wa.phone_number_id, &digits, "wamid.s1"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(mock.received().len(), 2, "no second answer");
    app.stop().await.unwrap();
    mock.stop();
}

async fn replies_logged_but_never_queued_go_out_on_a_rerun(v: Variant) {
    use chatbot::conversation::Inbound;
    use chatbot::domain::PhoneNumber;
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let demo = &creds.tenants[0];
    let wa = &demo.whatsapp;
    let parent = demo.parent_with_children(1).unwrap();
    let phone = PhoneNumber::parse(&parent.phone).unwrap();
    let (ctx, _) = chatbot::tenancy::by_business_number(
        &app.state.db,
        chatbot::tenancy::Provider::Meta,
        &wa.phone_number_id,
    )
    .await
    .unwrap();
    // The engine's turn committed, then the worker died before queueing the send.
    let inbound = Inbound {
        provider_id: Some("wamid.lost".into()),
        ..Inbound::text("hi")
    };
    chatbot::pipeline::converse(
        app.state.turns(),
        &ctx,
        "whatsapp",
        &phone,
        &inbound,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(mock.received().is_empty());
    let job = ingest_job(&wa.phone_number_id, phone.digits(), "wamid.lost");
    // The job runs again: the turn is not replayed, its unsent replies go out.
    app.state.queue.push(job.clone()).await.unwrap();
    let sent = wait_for(&mock, 2).await;
    assert!(
        sent[0]["text"]["body"]
            .as_str()
            .unwrap()
            .contains("Welcome")
    );
    // Once sent, yet another run sends nothing.
    use chatbot::entities::message_log;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    eventually(
        "replies stamped as sent",
        Duration::from_secs(30),
        || async {
            let rows = message_log::Entity::find()
                .filter(message_log::Column::ReplyTo.eq("wamid.lost"))
                .all(&app.state.db)
                .await
                .unwrap();
            rows.iter().all(|r| r.status == "sent").then_some(())
        },
    )
    .await;
    app.state.queue.push(job).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(mock.received().len(), 2);
    app.stop().await.unwrap();
    mock.stop();
}

async fn two_worker_processes_keep_one_parents_order(v: Variant) {
    let Some(mut env) = TestEnv::new(v).await else {
        return;
    };
    let mock = MockGraph::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    env.settings.whatsapp.api_base = mock.base_url();
    env.settings.queue.ingest_concurrency = 4;
    let web = Role::web(&env.settings).await;
    let (base, state) = (web.base.clone().unwrap(), web.state.clone());
    // Two workers-only applications, as two `chatbot worker` processes would be.
    let workers = [
        Role::worker(&env.settings).await,
        Role::worker(&env.settings).await,
    ];
    let creds = demo::seed(&state.db, &state.secret).await.unwrap();
    let demo = &creds.tenants[0];
    let wa = &demo.whatsapp;
    let digits = parent_digits(demo);
    // The first reply is slow to go out: without per-conversation order the other worker would
    // answer the later messages first.
    mock.hold_next(&[Duration::from_millis(1500)]);
    let client = reqwest::Client::new();
    for (id, said) in [
        ("wamid.o1", "hi"),
        ("wamid.o2", "results"),
        ("wamid.o3", "2"),
    ] {
        let (id, m) = text(id, said);
        let body = serde_json::to_vec(&payload(&wa.phone_number_id, &digits, &id, m)).unwrap();
        let r = client
            .post(format!("{base}{WEBHOOK}"))
            .header("X-Hub-Signature-256", sign(&body, &wa.app_secret))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let sent = wait_for(&mock, 4).await;
    let texts: Vec<String> = mock.received().iter().map(|r| r.text()).collect();
    assert!(texts[0].contains("Welcome"), "{texts:?}");
    assert_eq!(sent[1]["interactive"]["type"], "list", "{texts:?}");
    assert!(texts[2].contains("Which results"), "{texts:?}");
    assert!(texts[3].contains("Second Term Examination"), "{texts:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mock.received().len(), 4, "each reply once: {texts:?}");
    for worker in workers {
        worker.stop().await;
    }
    web.stop().await;
    mock.stop();
}

async fn replies_outside_the_window_use_the_template(v: Variant) {
    use chatbot::entities::message_log;
    use chatbot::pipeline::deliver::SendJob;
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let Some(mut env) = TestEnv::new(v).await else {
        return;
    };
    let mock = MockGraph::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    env.settings.whatsapp.api_base = mock.base_url();
    env.settings.whatsapp.template = Some("school_update".into());
    let app = env.start().await;
    let creds = demo::seed(&app.state.db, &app.state.secret).await.unwrap();
    let demo = &creds.tenants[0];
    let wa = &demo.whatsapp;
    let digits = parent_digits(demo);
    assert_eq!(
        say(&app, wa, &digits, "wamid.t1", "hi").await,
        StatusCode::OK
    );
    wait_for(&mock, 2).await;
    // The parent last wrote 25 hours ago; then the school has something to say.
    message_log::Entity::update_many()
        .col_expr(
            message_log::Column::CreatedAt,
            Expr::value(chrono::Utc::now() - chrono::Duration::hours(25)),
        )
        .filter(message_log::Column::Direction.eq("in"))
        .exec(&app.state.db)
        .await
        .unwrap();
    app.state
        .queue
        .push(SendJob {
            provider: "meta".into(),
            business: wa.phone_number_id.clone(),
            to: digits.clone(),
            replies: vec![
                chatbot::conversation::Reply::text("Term ends on Friday."),
                chatbot::conversation::Reply::text("Reports follow next week."),
            ],
            reply_to: "notice.1".into(),
            conversation: None,
            seq: 0,
            tenant: None,
            inbound_at: None,
            notice: None,
            done: Vec::new(),
        })
        .await
        .unwrap();
    let sent = wait_for(&mock, 3).await;
    assert_eq!(sent[2]["type"], "template", "{}", sent[2]);
    assert_eq!(sent[2]["template"]["name"], "school_update");
    assert_eq!(sent[2]["template"]["language"]["code"], "en");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        mock.received().len(),
        3,
        "no free-form message outside the window"
    );
    let metrics = app.metrics().await;
    for line in [
        "chatbot_sends_total{provider=\"meta\",tenant=\"demo\",outcome=\"sent\"} 2",
        "chatbot_sends_total{provider=\"meta\",tenant=\"demo\",outcome=\"template\"} 1",
        "chatbot_sends_total{provider=\"meta\",tenant=\"demo\",outcome=\"skipped_window\"} 1",
        "chatbot_webhook_requests_total{provider=\"meta\",outcome=\"accepted\"} 1",
        "chatbot_queue_depth{queue=\"ingest\",state=\"waiting\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert!(metrics.contains("chatbot_job_duration_seconds_count{queue=\"send\"}"));
    app.stop().await.unwrap();
    mock.stop();
}

/// A platform number shared by every school: the sender's phone picks the school (a parent in
/// two schools chooses), replies go out from the shared number, each turn and its delivery
/// statuses land in the chosen school's log, and a stranger is told to ask their school.
async fn a_shared_number_lets_the_senders_phone_pick_the_school(v: Variant) {
    use chatbot::entities::message_log;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let shared = &creds.shared_number.phone_number_id;
    let demo = &creds.tenants[0];
    let secret = &demo.whatsapp.app_secret;
    let db = &app.state.db;
    let school = |name: &str| {
        let name = chatbot::domain::SchemaName::parse(name).unwrap();
        async move { chatbot::tenancy::by_schema_name(db, &name).await.unwrap() }
    };
    let (greenfield, north) = (school("demo").await, school("demo-north").await);
    let on_shared = |digits: &str, id: &str, m: Value| payload(shared, digits, id, m);
    let both = chatbot::demo::SHARED_PARENT_PHONE.trim_start_matches('+');

    // A parent in both schools is asked which one.
    let hi = json!({"type": "text", "text": {"body": "hi"}});
    assert_eq!(
        deliver(&app, secret, &on_shared(both, "wamid.sh1", hi.clone())).await,
        StatusCode::OK
    );
    wait_for(&mock, 1).await;
    let asked = &mock.received()[0];
    assert_eq!(
        &asked.phone_number_id, shared,
        "answered from the shared number"
    );
    assert_eq!(
        asked.authorization.as_deref(),
        Some(format!("Bearer {}", demo.whatsapp.access_token).as_str())
    );
    assert!(
        asked.text().contains("more than one school"),
        "{}",
        asked.body
    );
    let ids: Vec<&str> = asked.body["interactive"]["action"]["buttons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["reply"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["school:demo", "school:demo-north"]);

    // They pick Northbridge: its menu comes back, and the turn is in Northbridge's log only.
    let tap = json!({"type": "interactive", "interactive": {"type": "button_reply",
        "button_reply": {"id": "school:demo-north", "title": "Northbridge College"}}});
    assert_eq!(
        deliver(&app, secret, &on_shared(both, "wamid.sh2", tap)).await,
        StatusCode::OK
    );
    let after = eventually("Northbridge's menu", Duration::from_secs(30), || async {
        let got = mock.received();
        let menu = got
            .iter()
            .skip(1)
            .any(|r| r.text().contains("How can I help"));
        menu.then_some(got)
    })
    .await;
    let said: Vec<String> = after.iter().skip(1).map(|r| r.text()).collect();
    assert!(
        said.iter().any(|t| t.contains("Northbridge College")),
        "{said:?}"
    );
    assert!(!said.iter().any(|t| t.contains("Greenfield")), "{said:?}");
    let logged = |id: &'static str| async move {
        message_log::Entity::find()
            .filter(message_log::Column::ProviderMessageId.eq(id))
            .all(db)
            .await
            .unwrap()
    };
    let turn = logged("wamid.sh2").await;
    assert_eq!(turn.len(), 1);
    assert_eq!(turn[0].tenant_id, north.id());
    let first_reply = format!("wamid.mock.{}", 2);
    let reply_row = eventually("reply stamped as sent", Duration::from_secs(30), || async {
        message_log::Entity::find()
            .filter(message_log::Column::ProviderMessageId.eq(first_reply.clone()))
            .one(db)
            .await
            .unwrap()
            .filter(|r| r.status == "sent")
    })
    .await;
    assert_eq!(reply_row.tenant_id, north.id());

    // Its delivery status finds it in Northbridge's log.
    let status = json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": {
        "metadata": {"phone_number_id": shared},
        "statuses": [{"id": first_reply, "status": "read", "recipient_id": both}]
    }}]}]});
    assert_eq!(deliver(&app, secret, &status).await, StatusCode::OK);
    let row = message_log::Entity::find_by_id(reply_row.id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, "read");

    // A parent of one school goes straight there; a stranger is told to ask their school.
    let mine = parent_digits(demo);
    let before = mock.received().len();
    assert_eq!(
        deliver(&app, secret, &on_shared(&mine, "wamid.sh3", hi.clone())).await,
        StatusCode::OK
    );
    let got = wait_for(&mock, before + 2).await;
    assert!(
        got[before]["text"]["body"]
            .as_str()
            .unwrap_or_default()
            .contains("Greenfield Academy"),
        "{}",
        got[before]
    );
    assert_eq!(logged("wamid.sh3").await[0].tenant_id, greenfield.id());
    let before = mock.received().len();
    assert_eq!(
        deliver(&app, secret, &on_shared("2340000000001", "wamid.sh4", hi)).await,
        StatusCode::OK
    );
    let got = mock_after(&mock, before).await;
    assert!(
        got.text().contains("not registered with any school"),
        "{}",
        got.body
    );
    assert_eq!(got.to(), "2340000000001");
    assert!(
        logged("wamid.sh4").await.is_empty(),
        "a stranger's message is in no school's log"
    );
    app.stop().await.unwrap();
    mock.stop();
}

/// The first message at the mock after the first `n`.
async fn mock_after(mock: &MockGraph, n: usize) -> chatbot::channels::mock_graph::Received {
    eventually("one more message", Duration::from_secs(30), || async {
        mock.received().into_iter().nth(n)
    })
    .await
}
