//! `analytics/`: a school's conversations counted per day: who answered each parent's message
//! (rules, nobody, staff), escalations and the time to the first staff reply, deliveries; a
//! settled day kept so that it outlives its transcript; each school its own figures. Signed
//! webhooks in, the mock Graph API out, on both backends.

mod common;

use std::time::Duration;

use chatbot::conversation::analytics;
use chatbot::demo::DemoTenant;
use chatbot::entities::{analytics_day, message_log};
use common::{TestApp, Variant, eventually};
use reqwest::{Method, StatusCode};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};
use serde_json::json;

variants!(
    a_day_of_conversations_is_counted_for_its_school,
    settled_days_are_kept_and_outlive_their_transcripts,
);

/// The parent's messages logged so far in `school`.
async fn inbound_logged(app: &TestApp, school: &DemoTenant) -> u64 {
    let (_, a) = app
        .api(&school.api_key, Method::GET, "/analytics/", None)
        .await;
    a["total"]["inbound"].as_u64().unwrap_or(0)
}

async fn a_day_of_conversations_is_counted_for_its_school(v: Variant) {
    let Some((app, mock, creds)) = TestApp::with_demo_and_graph(v).await else {
        return;
    };
    let (school, other) = (&creds.tenants[0], &creds.tenants[1]);
    let wa = &school.whatsapp;
    let digits = school
        .parent_with_children(1)
        .unwrap()
        .phone
        .trim_start_matches('+')
        .to_string();
    // Answered by the rules, by nobody (no model here), by the rules again (the escalation).
    for (i, words) in [
        "hi",
        "zorblax quintessent vorp",
        "I want to talk to a real person",
    ]
    .iter()
    .enumerate()
    {
        app.parent_says(wa, &digits, &format!("wamid.a{i}"), words)
            .await;
        eventually("the message counted", Duration::from_secs(30), || async {
            (inbound_logged(&app, school).await > i as u64).then_some(())
        })
        .await;
    }
    let id = app.waiting_conversation(&school.api_key).await;
    app.staff_answer(&school.api_key, id, "Hello, the office here.")
        .await;
    // While staff have it.
    app.parent_says(wa, &digits, "wamid.a9", "thank you").await;
    eventually(
        "every message counted and sent",
        Duration::from_secs(30),
        || async {
            let (_, a) = app
                .api(&school.api_key, Method::GET, "/analytics/", None)
                .await;
            let t = &a["total"];
            (t["inbound"] == 4 && t["deliveries"]["sent"].as_u64() >= Some(5)).then_some(())
        },
    )
    .await;

    let today = chrono::Utc::now().date_naive();
    let (status, a) = app
        .api(
            &school.api_key,
            Method::GET,
            &format!("/analytics/?from={today}&to={today}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{a}");
    let day = &a["days"][0];
    assert_eq!(day["day"], today.to_string());
    assert_eq!(day["inbound"], 4, "{a}");
    assert_eq!(day["parents"], 1, "{a}");
    assert_eq!(
        day["answered"],
        json!({"nobody": 1, "rules": 2, "staff": 1}),
        "{a}"
    );
    assert_eq!(day["rules_share"], 0.5);
    assert_eq!(day["unanswered_share"], 0.25);
    assert_eq!(day["escalations"], 1);
    assert_eq!(day["escalations_answered"], 1);
    assert!(day["first_reply_minutes_mean"].as_f64().unwrap() >= 0.0);
    assert!(day["topics"]["main_menu"].as_u64().unwrap() >= 1, "{a}");
    assert!(day["outbound"].as_u64().unwrap() >= 5, "{a}");
    assert_eq!(a["total"]["inbound"], 4);
    assert!(mock.count() >= 5);

    // The other school's figures are its own.
    let (_, theirs) = app
        .api(&other.api_key, Method::GET, "/analytics/", None)
        .await;
    assert_eq!(theirs["total"]["inbound"], 0, "{theirs}");
    assert_eq!(theirs["days"].as_array().unwrap().len(), 30);

    // Ranges that cannot be.
    for (query, code) in [
        (format!("from={today}&to=2020-01-01"), "invalid_range"),
        ("from=2020-01-01&to=2024-01-01".to_string(), "invalid_range"),
    ] {
        let (status, err) = app
            .api(
                &school.api_key,
                Method::GET,
                &format!("/analytics/?{query}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {err}");
        assert_eq!(err["error"], code, "{query}: {err}");
    }
    let (status, _) = app
        .api(
            &school.api_key,
            Method::GET,
            "/analytics/?from=yesterday",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    app.stop().await.unwrap();
    mock.stop();
}

async fn settled_days_are_kept_and_outlive_their_transcripts(v: Variant) {
    let Some((app, _mock, creds)) = TestApp::with_demo_and_graph(v).await else {
        return;
    };
    let school = &creds.tenants[0];
    let db = &app.state.db;
    let ctx = chatbot::tenancy::by_schema_name(
        db,
        &chatbot::domain::SchemaName::parse(&school.schema_name).unwrap(),
    )
    .await
    .unwrap();
    let now = chrono::Utc::now();
    // Two parents' messages 10 days ago, one 20 days ago.
    let log = |days: i64, phone: &str, answered_by: &str| {
        let at = now - chrono::Duration::days(days);
        message_log::ActiveModel {
            tenant_id: Set(ctx.id()),
            channel: Set("whatsapp".into()),
            direction: Set("in".into()),
            user_id: Set(phone.into()),
            kind: Set("text".into()),
            body: Set("results".into()),
            status: Set("received".into()),
            answered_by: Set(Some(answered_by.into())),
            topic: Set(Some("viewing_results".into())),
            created_at: Set(at),
            updated_at: Set(at),
            ..Default::default()
        }
    };
    for row in [
        log(10, "+2348011110001", "rules"),
        log(10, "+2348011110002", "model"),
        log(20, "+2348011110001", "rules"),
    ] {
        row.insert(db).await.unwrap();
    }
    let day = (now - chrono::Duration::days(10)).date_naive();
    let (_, a) = app
        .api(
            &school.api_key,
            Method::GET,
            &format!("/analytics/?from={day}&to={day}"),
            None,
        )
        .await;
    assert_eq!(a["days"][0]["inbound"], 2, "{a}");
    assert_eq!(a["days"][0]["parents"], 2, "{a}");
    assert_eq!(a["days"][0]["model_share"], 0.5, "{a}");
    assert_eq!(a["days"][0]["topics"], json!({"viewing_results": 2}));
    // Settled, so kept; the transcript goes (retention), the figures stay.
    let kept = analytics_day::Entity::find()
        .filter(analytics_day::Column::Day.eq(day))
        .count(db)
        .await
        .unwrap();
    assert_eq!(kept, 1);
    message_log::Entity::delete_many()
        .filter(message_log::Column::TenantId.eq(ctx.id()))
        .exec(db)
        .await
        .unwrap();
    let (_, again) = app
        .api(
            &school.api_key,
            Method::GET,
            &format!("/analytics/?from={day}&to={day}"),
            None,
        )
        .await;
    assert_eq!(again["days"], a["days"]);

    // The cleanup keeps every settled day from the first message on.
    log(30, "+2348011110003", "nobody")
        .insert(db)
        .await
        .unwrap();
    let counted = analytics::settle(db, &ctx, now).await.unwrap();
    assert!(counted >= 20, "{counted}");
    let thirty = (now - chrono::Duration::days(30)).date_naive();
    let row = analytics_day::Entity::find()
        .filter(analytics_day::Column::TenantId.eq(ctx.id()))
        .filter(analytics_day::Column::Day.eq(thirty))
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.stats["answered"]["nobody"], 1, "{:?}", row.stats);
    assert_eq!(
        analytics::settle(db, &ctx, now).await.unwrap(),
        0,
        "kept once"
    );
    app.stop().await.unwrap();
}
