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

variants!(
    one_schools_app_secret_never_speaks_for_anothers_number,
    wrong_pins_are_counted_per_student_whoever_guesses,
    a_phone_guessing_across_students_is_paused,
    concurrent_api_guesses_cannot_pass_the_limit,
    the_api_cannot_impersonate_a_whatsapp_parent,
);

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

/// One WhatsApp turn over the signed webhook: what the bot answered to the message `id` that
/// `digits` sent (read from the school's message log once the turn is stored).
async fn turn(
    app: &TestApp,
    number: &str,
    secret: &str,
    digits: &str,
    id: &str,
    text: &str,
) -> String {
    use chatbot::entities::message_log::{Column, Entity};
    use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
    let body = notification(vec![change(number, text_from(digits, id, text), json!([]))]);
    assert_eq!(
        post_signed(app, &body, secret).await.0,
        StatusCode::OK,
        "{text}"
    );
    common::eventually(
        &format!("the answer to {text:?}"),
        Duration::from_secs(30),
        || async {
            let db = &app.state.db;
            let stored = Entity::find()
                .filter(Column::ProviderMessageId.eq(id))
                .one(db)
                .await
                .unwrap();
            stored?;
            let out = Entity::find()
                .filter(Column::ReplyTo.eq(id))
                .order_by_asc(Column::Id)
                .all(db)
                .await
                .unwrap();
            Some(
                out.into_iter()
                    .map(|r| r.body)
                    .collect::<Vec<_>>()
                    .join("\n---\n"),
            )
        },
    )
    .await
}

/// A parent's phone on the demo school's own number.
struct Parent<'a> {
    app: &'a TestApp,
    school: &'a chatbot::demo::DemoTenant,
    digits: String,
    sent: usize,
}

impl<'a> Parent<'a> {
    fn new(app: &'a TestApp, school: &'a chatbot::demo::DemoTenant, phone: &str) -> Self {
        Self {
            app,
            school,
            digits: phone.trim_start_matches('+').to_string(),
            sent: 0,
        }
    }

    async fn says(&mut self, text: &str) -> String {
        self.sent += 1;
        let wa = &self.school.whatsapp;
        let id = format!("wamid.{}.{}.{}", wa.phone_number_id, self.digits, self.sent);
        turn(
            self.app,
            &wa.phone_number_id,
            &wa.app_secret,
            &self.digits,
            &id,
            text,
        )
        .await
    }

    /// Ask for results of `student_id` and answer the PIN prompt with `pin`.
    async fn tries(&mut self, student_id: &str, pin: &str) -> String {
        let asked = self.says("another child").await;
        if !asked.contains("student ID") {
            return asked;
        }
        let prompt = self.says(student_id).await;
        assert!(prompt.contains("PIN for"), "{prompt}");
        self.says(pin).await
    }
}

fn wrong_pin(pin: &str) -> &'static str {
    if pin == "0000" { "9999" } else { "0000" }
}

async fn get_chatbot(app: &TestApp, key: &str, body: Value) -> (StatusCode, Value) {
    let r = app
        .http
        .post(app.url("/api/v1/chatbot/get-chatbot/"))
        .header("X-API-KEY", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

/// Point 2: a parent who knows their own child's PIN guesses another's, between two phones and
/// the API: five wrong PINs in all lock that student for everyone, the right PIN included, while
/// a correct PIN for another student resets nothing; the phone linked to the student still sees
/// the child without a PIN.
async fn wrong_pins_are_counted_per_student_whoever_guesses(v: Variant) {
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let school = &creds.tenants[0];
    let linked = school.parent_with_children(1).unwrap();
    let target = school.student(&linked.student_ids[0]).unwrap();
    let own = school.students_without_phone().next().unwrap();
    let wrong = wrong_pin(&target.pin);

    let mut attacker = Parent::new(&app, school, "+2348055500001");
    attacker.says("hi").await;
    for left in ["4 attempts", "3 attempts"] {
        let said = attacker.tries(&target.student_id, wrong).await;
        assert!(said.contains(left), "{said}");
    }
    // Their own child's PIN is right: it resets nothing.
    let said = attacker.tries(&own.student_id, &own.pin).await;
    assert!(said.contains("verified for"), "{said}");
    let said = attacker.tries(&target.student_id, wrong).await;
    assert!(said.contains("2 attempts"), "{said}");
    // Another phone, then the API, go on counting for the same student.
    let mut accomplice = Parent::new(&app, school, "+2348055500002");
    accomplice.says("hi").await;
    let said = accomplice.tries(&target.student_id, wrong).await;
    assert!(said.contains("1 attempt"), "{said}");
    let (status, _) = get_chatbot(
        &app,
        &school.api_key,
        json!({"student_id": target.student_id, "pin": wrong}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Locked now, for the right PIN too, on every path.
    let (status, body) = get_chatbot(
        &app,
        &school.api_key,
        json!({"student_id": target.student_id, "pin": target.pin}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
    let mut third = Parent::new(&app, school, "+2348055500003");
    third.says("hi").await;
    let said = third.tries(&target.student_id, &target.pin).await;
    assert!(
        said.contains("paused") && !said.contains("verified"),
        "{said}"
    );
    // Another student of the school is not locked.
    let said = third.tries(&own.student_id, &own.pin).await;
    assert!(said.contains("verified for"), "{said}");
    // The linked parent needs no PIN: their child's results are still theirs, and typing the
    // child's ID is not a PIN attempt either.
    let mut parent = Parent::new(&app, school, &linked.phone);
    let said = parent.says("results").await;
    assert!(
        said.contains(&target.name) && !said.contains("paused"),
        "{said}"
    );
    let said = parent.says("another child").await;
    assert!(said.contains("student ID"), "{said}");
    let said = parent.says(&target.student_id).await;
    assert!(
        said.contains(&target.name) && !said.contains("PIN"),
        "{said}"
    );
    app.stop().await.unwrap();
    mock.stop();
}

/// Point 2, the guesser's side: one phone trying one wrong PIN on each of five students is
/// paused, even for a sixth student's right PIN, and even through another school's number.
async fn a_phone_guessing_across_students_is_paused(v: Variant) {
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let school = &creds.tenants[0];
    let students: Vec<_> = school.students_without_phone().take(6).collect();
    let mut guesser = Parent::new(&app, school, "+2348055500009");
    guesser.says("hi").await;
    for s in &students[..5] {
        let said = guesser.tries(&s.student_id, wrong_pin(&s.pin)).await;
        assert!(
            said.contains("do not match") || said.contains("paused"),
            "{said}"
        );
    }
    let said = guesser.says("another child").await;
    assert!(said.contains("paused"), "{said}");
    let said = guesser.says("results").await;
    assert!(!said.contains("verified"), "{said}");
    // The same phone at the other school is paused as well.
    let north = &creds.tenants[1];
    let mut there = Parent::new(&app, north, "+2348055500009");
    there.says("hi").await;
    let said = there.says("another child").await;
    assert!(said.contains("paused"), "{said}");
    app.stop().await.unwrap();
    mock.stop();
}

/// Point 3: thirty wrong PINs sent at once to `get-chatbot/` are not all checked: with the
/// ones sent one by one afterwards, exactly `CHATBOT_PIN_MAX_FAILURES` (5) are answered "no
/// match", every other one "too many".
async fn concurrent_api_guesses_cannot_pass_the_limit(v: Variant) {
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let school = &creds.tenants[0];
    let target = school.students_without_phone().next().unwrap();
    let wrong = wrong_pin(&target.pin);
    let body = json!({"student_id": target.student_id, "pin": wrong});
    let answers = futures::future::join_all(
        (0..30).map(|_| get_chatbot(&app, &school.api_key, body.clone())),
    )
    .await;
    let count = |answers: &[(StatusCode, Value)], s: StatusCode| {
        answers.iter().filter(|a| a.0 == s).count()
    };
    let (mut checked, limited) = (
        count(&answers, StatusCode::NOT_FOUND),
        count(&answers, StatusCode::TOO_MANY_REQUESTS),
    );
    assert_eq!(checked + limited, 30, "{answers:?}");
    assert!(
        (1..=5).contains(&checked),
        "{checked} of 30 concurrent guesses were checked"
    );
    loop {
        let (status, _) = get_chatbot(&app, &school.api_key, body.clone()).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert_eq!(status, StatusCode::NOT_FOUND);
        checked += 1;
        assert!(checked <= 5, "more than five wrong PINs were checked");
    }
    assert_eq!(checked, 5);
    app.stop().await.unwrap();
    mock.stop();
}

/// Point 4: `POST messages/` names a parent's phone and `channel: "whatsapp"`: the verification
/// stays in the API's own conversation, never the parent's WhatsApp one; and a new channel
/// name gives no fresh attempts.
async fn the_api_cannot_impersonate_a_whatsapp_parent(v: Variant) {
    use chatbot::entities::chat_session;
    use sea_orm::{ColumnTrait, QueryFilter};
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let school = &creds.tenants[0];
    let phone = "+2348055500010";
    let own = school.students_without_phone().next().unwrap();
    let message =
        |text: &str, channel: &str| json!({"phone": phone, "text": text, "channel": channel});
    for text in [
        "hi",
        "another child",
        own.student_id.as_str(),
        own.pin.as_str(),
    ] {
        let (status, body) = app
            .api(
                &school.api_key,
                reqwest::Method::POST,
                "/messages/",
                Some(message(text, "whatsapp")),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let sessions = chat_session::Entity::find()
        .filter(chat_session::Column::UserId.eq(phone))
        .all(&app.state.db)
        .await
        .unwrap();
    let channels: Vec<&str> = sessions.iter().map(|s| s.channel.as_str()).collect();
    assert_eq!(channels, ["api:whatsapp"]);
    // The parent's own WhatsApp conversation has verified nobody.
    let mut parent = Parent::new(&app, school, phone);
    let said = parent.says("results").await;
    assert!(
        said.contains("student ID") && !said.contains(&own.name),
        "{said}"
    );
    // Five wrong PINs through the API key, spread over channel names: then it is paused,
    // whatever channel it names next.
    let target = school.students_without_phone().nth(1).unwrap();
    for (i, channel) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        let phone = format!("+23480555001{i:02}");
        for text in [
            "another child",
            target.student_id.as_str(),
            wrong_pin(&target.pin),
        ] {
            let (status, _) = app
                .api(
                    &school.api_key,
                    reqwest::Method::POST,
                    "/messages/",
                    Some(json!({"phone": phone, "text": text, "channel": channel})),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
        }
    }
    let other = school.students_without_phone().nth(2).unwrap();
    let mut said = String::new();
    for text in [
        "another child",
        other.student_id.as_str(),
        other.pin.as_str(),
    ] {
        let (_, body) = app
            .api(
                &school.api_key,
                reqwest::Method::POST,
                "/messages/",
                Some(json!({"phone": "+2348055500199", "text": text, "channel": "fresh"})),
            )
            .await;
        said = body["replies"].to_string();
        if said.contains("paused") {
            break;
        }
    }
    assert!(
        said.contains("paused") && !said.contains("verified"),
        "{said}"
    );
    app.stop().await.unwrap();
    mock.stop();
}
