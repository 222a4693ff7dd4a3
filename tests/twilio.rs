//! Twilio WhatsApp webhook end to end: signed form posts in, replies out at a mock Twilio
//! Messages API; status callbacks into the message log.

mod common;

use std::time::Duration;

use chatbot::channels::mock_graph::{MockGraph, Received};
use chatbot::channels::twilio::sign;
use chatbot::demo::{self, DemoCredentials};
use common::{TestApp, TestEnv, Variant, eventually};
use reqwest::StatusCode;

variants!(
    signed_messages_of_every_type_get_replies,
    rejected_posts_enqueue_nothing,
    duplicate_message_sids_produce_one_turn,
    status_callbacks_reach_the_message_log,
);

const WEBHOOK: &str = "/api/v1/chatbot/webhooks/twilio/";
/// The public URL configured, as a school pastes it into Twilio's console.
const PUBLIC: &str = "https://bot.example.org";

async fn start(v: Variant) -> Option<(TestApp, MockGraph, DemoCredentials)> {
    let mut env = TestEnv::new(v).await?;
    let mock = MockGraph::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    env.settings.whatsapp.twilio_api_base = mock.base_url();
    env.settings.server.public_url = Some(PUBLIC.into());
    let app = env.start().await;
    let creds = demo::seed(&app.state.db, &app.state.secret).await.unwrap();
    Some((app, mock, creds))
}

fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An inbound message form from `phone` (E.164) to the demo school's Twilio number.
fn message(
    creds: &DemoCredentials,
    phone: &str,
    sid: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let wa = &creds.tenants[0].whatsapp;
    let mut f = form(&[
        ("SmsMessageSid", sid),
        ("MessageSid", sid),
        ("SmsSid", sid),
        ("AccountSid", &wa.twilio_account_sid),
        ("From", &format!("whatsapp:{phone}")),
        ("To", &format!("whatsapp:{}", wa.twilio_number)),
        ("WaId", phone.trim_start_matches('+')),
        ("ProfileName", "Parent"),
        ("SmsStatus", "received"),
        ("NumSegments", "1"),
        ("ApiVersion", "2010-04-01"),
    ]);
    f.extend(form(extra));
    if !extra.iter().any(|(k, _)| *k == "NumMedia") {
        f.push(("NumMedia".into(), "0".into()));
    }
    f
}

/// POST `params` signed for `signed_url` with `token`.
async fn post_signed(
    app: &TestApp,
    params: &[(String, String)],
    signed_url: &str,
    token: &str,
) -> StatusCode {
    let signature = sign(signed_url, params, token);
    app.http
        .post(app.url(WEBHOOK))
        .header("X-Twilio-Signature", signature)
        .form(params)
        .send()
        .await
        .unwrap()
        .status()
}

async fn deliver(
    app: &TestApp,
    creds: &DemoCredentials,
    params: &[(String, String)],
) -> StatusCode {
    let token = &creds.tenants[0].whatsapp.twilio_auth_token;
    post_signed(app, params, &format!("{PUBLIC}{WEBHOOK}"), token).await
}

async fn wait_for(mock: &MockGraph, n: usize) -> Vec<Received> {
    eventually(
        &format!("{n} messages at the Twilio API"),
        Duration::from_secs(30),
        || async {
            let got = mock.received();
            (got.len() >= n).then_some(got)
        },
    )
    .await
}

async fn signed_messages_of_every_type_get_replies(v: Variant) {
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let demo = &creds.tenants[0];
    let wa = &demo.whatsapp;
    let parent = demo.parent_with_children(1).unwrap();
    let phone = parent.phone.as_str();

    assert_eq!(
        deliver(
            &app,
            &creds,
            &message(
                &creds,
                phone,
                "SM001",
                &[("Body", "hi"), ("MessageType", "text")]
            )
        )
        .await,
        StatusCode::OK
    );
    let sent = wait_for(&mock, 2).await;
    let first = &sent[0];
    assert_eq!(first.provider, "twilio");
    assert_eq!(first.phone_number_id, wa.twilio_account_sid);
    assert_eq!(first.body["To"], format!("whatsapp:{phone}"));
    assert_eq!(first.body["From"], format!("whatsapp:{}", wa.twilio_number));
    assert!(
        first.text().contains("Welcome to Greenfield Academy"),
        "{}",
        first.text()
    );
    assert!(
        first
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic ")),
        "account SID and auth token as basic auth"
    );
    // The menu goes as numbered text (no interactive buttons without a content template).
    assert!(sent[1].text().contains("1. "), "{}", sent[1].text());
    assert!(
        sent[1].body["StatusCallback"]
            .as_str()
            .is_some_and(|c| c == format!("{PUBLIC}{WEBHOOK}")),
        "status callbacks come back to the webhook: {}",
        sent[1].body
    );

    // A quick-reply button tap, then media and a location: answered politely, not crashed on.
    assert_eq!(
        deliver(
            &app,
            &creds,
            &message(
                &creds,
                phone,
                "SM002",
                &[
                    ("Body", "Results"),
                    ("ButtonText", "Results"),
                    ("ButtonPayload", "menu:results"),
                    ("MessageType", "button")
                ]
            )
        )
        .await,
        StatusCode::OK
    );
    let sent = wait_for(&mock, 3).await;
    assert!(
        sent[2].text().contains("Which results") || sent[2].text().contains("Second Term"),
        "a button tap is understood: {}",
        sent[2].text()
    );
    let before = mock.received().len();
    assert_eq!(
        deliver(
            &app,
            &creds,
            &message(
                &creds,
                phone,
                "SM003",
                &[
                    ("NumMedia", "1"),
                    ("MediaContentType0", "image/jpeg"),
                    ("MediaUrl0", "https://api.twilio.com/media/1"),
                    ("Body", "")
                ]
            )
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        deliver(
            &app,
            &creds,
            &message(
                &creds,
                phone,
                "SM004",
                &[("Latitude", "6.45"), ("Longitude", "3.39"), ("Body", "")]
            )
        )
        .await,
        StatusCode::OK
    );
    let sent = wait_for(&mock, before + 4).await;
    let polite: Vec<&Received> = sent[before..]
        .iter()
        .filter(|r| r.text().contains("only read text"))
        .collect();
    assert!(
        polite.len() >= 2,
        "media and location answered politely: {:?}",
        sent[before..]
            .iter()
            .map(Received::text)
            .collect::<Vec<_>>()
    );
    app.stop().await.unwrap();
    mock.stop();
}

async fn rejected_posts_enqueue_nothing(v: Variant) {
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let demo = &creds.tenants[0];
    let token = &demo.whatsapp.twilio_auth_token;
    let phone = demo.parent_with_children(1).unwrap().phone.clone();
    let url = format!("{PUBLIC}{WEBHOOK}");
    let params = message(&creds, &phone, "SM100", &[("Body", "hi")]);

    // Wrong token, a tampered parameter, no signature, a URL Twilio did not call.
    assert_eq!(
        post_signed(&app, &params, &url, "not-the-token").await,
        StatusCode::UNAUTHORIZED
    );
    let mut tampered = params.clone();
    let signature = sign(&url, &tampered, token);
    tampered.iter_mut().find(|(k, _)| k == "Body").unwrap().1 = "results".into();
    let r = app
        .http
        .post(app.url(WEBHOOK))
        .header("X-Twilio-Signature", signature)
        .form(&tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_signature", "{body}");
    let r = app
        .http
        .post(app.url(WEBHOOK))
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        post_signed(
            &app,
            &params,
            "https://elsewhere.example/api/v1/chatbot/webhooks/twilio/",
            token
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    // A number no school owns cannot be verified.
    let mut stranger = params.clone();
    stranger.iter_mut().find(|(k, _)| k == "To").unwrap().1 = "whatsapp:+15550009999".into();
    assert_eq!(
        post_signed(&app, &stranger, &url, token).await,
        StatusCode::UNAUTHORIZED
    );
    // Oversized, and a form without the fields a message needs.
    let r = app
        .http
        .post(app.url(WEBHOOK))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = app
        .http
        .post(app.url(WEBHOOK))
        .form(&form(&[("Body", "hi")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(mock.received().is_empty(), "nothing was queued or answered");
    let (waiting, running) = app
        .state
        .queue
        .depth::<chatbot::pipeline::turn::IngestJob>()
        .await
        .unwrap();
    assert_eq!((waiting, running), (0, 0));

    // The same message, signed for the URL with the default port, is accepted.
    let with_port = format!("https://bot.example.org:443{WEBHOOK}");
    assert_eq!(
        post_signed(&app, &params, &with_port, token).await,
        StatusCode::OK
    );
    wait_for(&mock, 2).await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            "chatbot_webhook_requests_total{provider=\"twilio\",outcome=\"unauthorized\"} 5"
        ),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("chatbot_webhook_requests_total{provider=\"twilio\",outcome=\"accepted\"} 1"),
        "{metrics}"
    );
    app.stop().await.unwrap();
    mock.stop();
}

async fn duplicate_message_sids_produce_one_turn(v: Variant) {
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let phone = creds.tenants[0]
        .parent_with_children(1)
        .unwrap()
        .phone
        .clone();
    let params = message(&creds, &phone, "SM200", &[("Body", "hi")]);
    for _ in 0..20 {
        assert_eq!(deliver(&app, &creds, &params).await, StatusCode::OK);
    }
    wait_for(&mock, 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(mock.received().len(), 2, "one turn: welcome and menu");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            "chatbot_webhook_messages_total{provider=\"twilio\",outcome=\"duplicate\"} 19"
        ),
        "{metrics}"
    );
    app.stop().await.unwrap();
    mock.stop();
}

async fn status_callbacks_reach_the_message_log(v: Variant) {
    use chatbot::entities::message_log;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let Some((app, mock, creds)) = start(v).await else {
        return;
    };
    let wa = &creds.tenants[0].whatsapp;
    let phone = creds.tenants[0]
        .parent_with_children(1)
        .unwrap()
        .phone
        .clone();
    assert_eq!(
        deliver(
            &app,
            &creds,
            &message(&creds, &phone, "SM300", &[("Body", "hi")])
        )
        .await,
        StatusCode::OK
    );
    wait_for(&mock, 2).await;
    let db = &app.state.db;
    let rows = eventually(
        "replies stamped with their SIDs",
        Duration::from_secs(30),
        || async {
            let rows = message_log::Entity::find()
                .filter(message_log::Column::ReplyTo.eq("SM300"))
                .order_by_asc(message_log::Column::Id)
                .all(db)
                .await
                .unwrap();
            (rows.len() == 2 && rows.iter().all(|r| r.status == "sent")).then_some(rows)
        },
    )
    .await;
    let sids: Vec<String> = rows
        .iter()
        .map(|r| r.provider_message_id.clone().unwrap())
        .collect();
    assert!(sids.iter().all(|s| s.starts_with("SM")), "{sids:?}");

    let callback = |sid: &str, status: &str, extra: &[(&str, &str)]| {
        let mut f = form(&[
            ("MessageSid", sid),
            ("SmsSid", sid),
            ("AccountSid", &wa.twilio_account_sid),
            ("From", &format!("whatsapp:{}", wa.twilio_number)),
            ("To", &format!("whatsapp:{phone}")),
            ("MessageStatus", status),
            ("SmsStatus", status),
            ("ApiVersion", "2010-04-01"),
        ]);
        f.extend(form(extra));
        f
    };
    for params in [
        callback(&sids[0], "delivered", &[]),
        callback(&sids[0], "read", &[]),
        callback(&sids[0], "delivered", &[]),
        callback(&sids[1], "undelivered", &[("ErrorCode", "63016")]),
    ] {
        assert_eq!(deliver(&app, &creds, &params).await, StatusCode::OK);
    }
    // A forged callback changes nothing.
    assert_eq!(
        post_signed(
            &app,
            &callback(&sids[0], "failed", &[]),
            &format!("{PUBLIC}{WEBHOOK}"),
            "forged"
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    let rows = message_log::Entity::find()
        .filter(message_log::Column::ReplyTo.eq("SM300"))
        .order_by_asc(message_log::Column::Id)
        .all(db)
        .await
        .unwrap();
    assert_eq!(
        rows[0].status, "read",
        "a late `delivered` does not undo `read`"
    );
    assert_eq!(rows[1].status, "failed");
    assert_eq!(rows[1].error.as_deref(), Some("63016"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        mock.received().len(),
        2,
        "callbacks are not messages: nothing answered"
    );
    app.stop().await.unwrap();
    mock.stop();
}
