//! Every operation of the REST API, called with school A's credentials against school B's ids,
//! with `X-Schema-Name: B`, and on B's domain: nothing of B comes back, and nothing of B
//! changes (every B-owned table is compared before and after). The case list must name every
//! documented operation, so a new endpoint cannot skip this suite.

mod common;

use std::collections::BTreeSet;

use chatbot::channels::engagement::catalogue;
use chatbot::entities::*;
use chatbot::tenancy::TenantCtx;
use common::fixture::{self, SHARED_PHONE, School};
use common::{TestApp, TestEnv, Variant};
use reqwest::{Method, StatusCode};
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};

variants!(school_a_cannot_reach_school_b_through_any_endpoint);

const BASE: &str = "/api/v1/chatbot";
/// The slug and title of the engagement report only school B sells.
const B_REPORT: &str = "beta-stars";
const B_REPORT_TITLE: &str = "Beta's own stars";

/// Every row school B owns, as JSON, table by table.
async fn snapshot(db: &DatabaseConnection, ctx: &TenantCtx) -> Vec<String> {
    macro_rules! rows {
        ($($module:ident),*) => {{
            let mut out = Vec::new();
            $(
                let rows = ctx.find::<$module::Entity>().all(db).await.unwrap();
                out.push(format!("{}: {}", stringify!($module), serde_json::to_string(&rows).unwrap()));
            )*
            out.push(format!("tenant: {}", serde_json::to_string(&ctx.profile(db).await.unwrap()).unwrap()));
            out
        }};
    }
    rows!(
        academic_session,
        analytics_day,
        api_key,
        attendance,
        background_job,
        chat_session,
        class,
        conversation_action,
        engagement_report,
        erasure,
        exam_session,
        llm_usage,
        mark,
        message_log,
        notice,
        report,
        student,
        student_mapping,
        subject,
        tenant_domain,
        term,
        welcome_message,
        whatsapp_contact,
        whatsapp_number
    )
}

struct Case {
    method: Method,
    /// Path template as documented (`{id}`), and the path called.
    template: &'static str,
    path: String,
    body: Option<Value>,
    csv: Option<String>,
}

fn case(method: Method, template: &'static str, path: String) -> Case {
    Case {
        method,
        template,
        path,
        body: None,
        csv: None,
    }
}

impl Case {
    fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
    fn csv(mut self, text: &str) -> Self {
        self.csv = Some(text.to_string());
        self
    }
}

async fn call(app: &TestApp, c: &Case, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let mut r = app
        .http
        .request(c.method.clone(), app.url(&format!("{BASE}{}", c.path)));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(body) = &c.body {
        r = r.json(body);
    }
    if let Some(text) = &c.csv {
        r = r.header("Content-Type", "text/csv").body(text.clone());
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    if c.template == "/conversations/events/" && status == StatusCode::OK {
        // A stream: what it says in its first seconds (B's takeover was moments ago).
        use futures::StreamExt;
        let mut body = r.bytes_stream();
        let mut text = String::new();
        let until = tokio::time::Instant::now() + std::time::Duration::from_millis(1500);
        while let Ok(Some(chunk)) = tokio::time::timeout_at(until, body.next()).await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
        return (status, text);
    }
    (status, r.text().await.unwrap())
}

/// Text only school B has, which must never appear in an answer to school A.
fn b_markers(b: &School) -> Vec<String> {
    vec![
        b.welcome.clone(),
        b.notice_title.clone(),
        b.subject_name.clone(),
        b.student.first_name.clone(),
        "secret-2".into(),
        "token-2".into(),
        b.phone_number_id.clone(),
        b.domain.clone(),
        B_REPORT_TITLE.into(),
    ]
}

async fn school_a_cannot_reach_school_b_through_any_endpoint(v: Variant) {
    let Some(mut env) = TestEnv::new(v).await else {
        return;
    };
    // Three calls per case from one key: more than the default burst.
    env.settings.auth.api_rate_burst = 10_000;
    let app = env.start().await;
    let (db, key) = (&app.state.db, &app.state.secret);
    let a = fixture::school(db, key, "alpha", 1).await;
    let b = fixture::school(db, key, "beta", 2).await;
    // B has a job and a report of its own to aim at.
    let r = app
        .http
        .post(app.url(&format!("{BASE}/generate-reports/")))
        .header("X-API-KEY", &b.api_key)
        .json(&json!({"class_id": b.class_id, "exam_session_id": b.exam_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let b_job = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    common::eventually(
        "B's job finished",
        std::time::Duration::from_secs(30),
        || async {
            let row = b
                .ctx
                .find::<background_job::Entity>()
                .all(db)
                .await
                .unwrap();
            (row[0].status == "done" || row[0].status == "failed").then_some(())
        },
    )
    .await;
    let b_welcome = b
        .ctx
        .find::<welcome_message::Entity>()
        .all(db)
        .await
        .unwrap()[0]
        .id;
    let b_notice = b.ctx.find::<notice::Entity>().all(db).await.unwrap()[0].id;
    let b_report = b.ctx.find::<report::Entity>().all(db).await.unwrap()[0].id;
    let b_number = b
        .ctx
        .find::<whatsapp_number::Entity>()
        .all(db)
        .await
        .unwrap()[0]
        .id;
    let b_subject = b.ctx.find::<subject::Entity>().all(db).await.unwrap()[0].id;
    let b_contact = b
        .ctx
        .find::<whatsapp_contact::Entity>()
        .all(db)
        .await
        .unwrap()[0]
        .id;
    let b_session = b
        .ctx
        .find::<academic_session::Entity>()
        .all(db)
        .await
        .unwrap()[0]
        .id;
    // B sells a report of its own, under a slug and a title only B has.
    let mut b_script = catalogue::built_in("love").unwrap();
    b_script.titles.en = B_REPORT_TITLE.into();
    catalogue::insert(db, &b.ctx, B_REPORT, &b_script, true)
        .await
        .unwrap();
    let a_script = catalogue::built_in("newjob").unwrap();
    // B's conversation: one parent, handed to B's staff.
    let b_conversation = b.ctx.find::<chat_session::Entity>().all(db).await.unwrap()[0].id;
    let took = app
        .http
        .post(app.url(&format!("{BASE}/conversations/{b_conversation}/takeover/")))
        .header("X-API-KEY", &b.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(took.status(), StatusCode::OK);
    let before = snapshot(db, &b.ctx).await;

    let (bc, be, bu) = (b.class_id, b.exam_id, b.unreleased_exam_id);
    let template_query = format!("class_id={bc}&exam_session_id={be}");
    let cases = vec![
        // First: B's takeover was a moment ago, within what a new stream reads back.
        case(Method::GET, "/conversations/events/", "/conversations/events/".into()),
        case(Method::GET, "/version/", "/version/".into()),
        case(Method::POST, "/messages/", "/messages/".into()).json(json!({"phone": SHARED_PHONE, "text": "results"})),
        case(Method::GET, "/conversations/", "/conversations/?status=staff".into()),
        case(Method::GET, "/conversations/{id}/", format!("/conversations/{b_conversation}/")),
        case(Method::GET, "/conversations/{id}/messages/", format!("/conversations/{b_conversation}/messages/")),
        case(Method::POST, "/conversations/{id}/takeover/", format!("/conversations/{b_conversation}/takeover/")),
        case(Method::POST, "/conversations/{id}/release/", format!("/conversations/{b_conversation}/release/")),
        case(Method::POST, "/conversations/{id}/reply/", format!("/conversations/{b_conversation}/reply/")).json(json!({"text": "pwned"})),
        case(Method::GET, "/welcome-messages/", "/welcome-messages/".into()),
        case(Method::POST, "/welcome-messages/", "/welcome-messages/".into()).json(json!({"body": "mine"})),
        case(Method::GET, "/welcome-messages/{id}/", format!("/welcome-messages/{b_welcome}/")),
        case(Method::PUT, "/welcome-messages/{id}/", format!("/welcome-messages/{b_welcome}/")).json(json!({"body": "pwned"})),
        case(Method::DELETE, "/welcome-messages/{id}/", format!("/welcome-messages/{b_welcome}/")),
        case(Method::GET, "/whatsapp-numbers/", "/whatsapp-numbers/".into()),
        case(Method::POST, "/whatsapp-numbers/", "/whatsapp-numbers/".into()).json(json!({"provider": "meta", "phone_number": "+15550100002", "phone_number_id": "999000111", "access_token": "access-token-0123456789", "app_secret": "app-secret-0123456789", "verify_token": "verify-token-0123456789"})),
        case(Method::GET, "/whatsapp-numbers/{id}/", format!("/whatsapp-numbers/{b_number}/")),
        case(Method::PUT, "/whatsapp-numbers/{id}/", format!("/whatsapp-numbers/{b_number}/")).json(json!({"app_secret": "pwned-pwned-pwned-pwned"})),
        case(Method::DELETE, "/whatsapp-numbers/{id}/", format!("/whatsapp-numbers/{b_number}/")),
        case(Method::GET, "/students/", format!("/students/?class_id={bc}")),
        case(Method::GET, "/academic-sessions/", "/academic-sessions/".into()),
        case(Method::POST, "/academic-sessions/", "/academic-sessions/".into()).json(json!({"name": "2030/2031", "starts_on": "2030-09-01", "ends_on": "2031-07-01", "is_current": true})),
        case(Method::GET, "/academic-sessions/{id}/", format!("/academic-sessions/{b_session}/")),
        case(Method::PUT, "/academic-sessions/{id}/", format!("/academic-sessions/{b_session}/")).json(json!({"name": "pwned", "starts_on": "2025-09-01", "ends_on": "2026-07-01"})),
        case(Method::DELETE, "/academic-sessions/{id}/", format!("/academic-sessions/{b_session}/")),
        case(Method::GET, "/terms/", format!("/terms/?academic_session_id={b_session}")),
        case(Method::POST, "/terms/", "/terms/".into()).json(json!({"academic_session_id": b_session, "name": "pwned", "starts_on": "2026-06-01", "ends_on": "2026-06-30"})),
        case(Method::GET, "/terms/{id}/", format!("/terms/{}/", b.term_id)),
        case(Method::PUT, "/terms/{id}/", format!("/terms/{}/", b.term_id)).json(json!({"academic_session_id": b_session, "name": "pwned", "starts_on": "2025-09-01", "ends_on": "2025-12-01"})),
        case(Method::DELETE, "/terms/{id}/", format!("/terms/{}/", b.term_id)),
        case(Method::GET, "/classes/", "/classes/".into()),
        case(Method::POST, "/classes/", "/classes/".into()).json(json!({"name": "A's own class", "form": "JSS 3"})),
        case(Method::GET, "/classes/{id}/", format!("/classes/{bc}/")),
        case(Method::PUT, "/classes/{id}/", format!("/classes/{bc}/")).json(json!({"name": "pwned", "form": "JSS 1"})),
        case(Method::DELETE, "/classes/{id}/", format!("/classes/{bc}/")),
        case(Method::GET, "/subjects/", "/subjects/".into()),
        case(Method::POST, "/subjects/", "/subjects/".into()).json(json!({"code": "AOWN", "name": "A's own subject"})),
        case(Method::GET, "/subjects/{id}/", format!("/subjects/{b_subject}/")),
        case(Method::PUT, "/subjects/{id}/", format!("/subjects/{b_subject}/")).json(json!({"code": "PWN", "name": "pwned"})),
        case(Method::DELETE, "/subjects/{id}/", format!("/subjects/{b_subject}/")),
        case(Method::GET, "/exam-sessions/", format!("/exam-sessions/?term_id={}", b.term_id)),
        case(Method::POST, "/exam-sessions/", "/exam-sessions/".into()).json(json!({"term_id": b.term_id, "name": "pwned", "released": true})),
        case(Method::GET, "/exam-sessions/{id}/", format!("/exam-sessions/{be}/")),
        case(Method::PUT, "/exam-sessions/{id}/", format!("/exam-sessions/{be}/")).json(json!({"term_id": a.term_id, "name": "pwned"})),
        case(Method::DELETE, "/exam-sessions/{id}/", format!("/exam-sessions/{be}/")),
        case(Method::POST, "/exam-sessions/{id}/release/", format!("/exam-sessions/{bu}/release/")),
        case(Method::POST, "/exam-sessions/{id}/unrelease/", format!("/exam-sessions/{be}/unrelease/")),
        case(Method::GET, "/setup-status/", "/setup-status/".into()),
        case(Method::GET, "/contacts/", format!("/contacts/?phone={}", "%2B2348099990000")),
        case(Method::GET, "/contacts/{id}/", format!("/contacts/{b_contact}/")),
        case(Method::PUT, "/contacts/{id}/", format!("/contacts/{b_contact}/")).json(json!({"opted_in": false})),
        case(Method::DELETE, "/contacts/{id}/", format!("/contacts/{b_contact}/")),
        case(Method::GET, "/contacts/{id}/export/", format!("/contacts/{b_contact}/export/")),
        case(Method::GET, "/erasures/", "/erasures/".into()),
        case(Method::GET, "/analytics/", "/analytics/?from=2025-12-08&to=2026-12-07".into()),
        case(Method::GET, "/school/", "/school/".into()),
        case(Method::PATCH, "/school/", "/school/".into()).json(json!({"office_hours": "pwned", "menu_during_handoff": false})),
        case(Method::GET, "/released-exam-sessions/", "/released-exam-sessions/".into()),
        case(Method::GET, "/notices/", "/notices/?include_inactive=true".into()),
        case(Method::POST, "/notices/", "/notices/".into()).json(json!({"title": "t", "body": "b", "audience": "class", "audience_class_id": bc})),
        case(Method::GET, "/notices/{id}/", format!("/notices/{b_notice}/")),
        case(Method::PUT, "/notices/{id}/", format!("/notices/{b_notice}/")).json(json!({"title": "pwned", "body": "pwned"})),
        case(Method::DELETE, "/notices/{id}/", format!("/notices/{b_notice}/")),
        case(Method::POST, "/notices/{id}/broadcast/", format!("/notices/{b_notice}/broadcast/")),
        case(Method::POST, "/get-chatbot/", "/get-chatbot/".into()).json(json!({"student_id": fixture::STUDENT_ID, "pin": b.pin})),
        case(Method::GET, "/results/", format!("/results/?exam_session_id={bu}&class_id={}", a.class_id)),
        case(Method::GET, "/results/manual-template/", format!("/results/manual-template/?{template_query}")),
        case(Method::POST, "/results/manual-template/", format!("/results/manual-template/?{template_query}")).csv("student_id,MTH_ca\nSTU/001,1\n"),
        case(Method::POST, "/generate-reports/", "/generate-reports/".into()).json(json!({"class_id": bc, "exam_session_id": be})),
        case(Method::POST, "/batch-reports/", "/batch-reports/".into()).json(json!({"class_id": bc, "exam_session_id": be})),
        case(Method::POST, "/delete-reports/", "/delete-reports/".into()).json(json!({"ids": [b_report]})),
        case(Method::GET, "/jobs/{id}/", format!("/jobs/{b_job}/")),
        case(Method::GET, "/jobs/{id}/recipients/", format!("/jobs/{b_job}/recipients/")),
        case(Method::GET, "/engagement-reports/", "/engagement-reports/".into()),
        case(Method::POST, "/engagement-reports/", "/engagement-reports/".into()).json(json!({"slug": B_REPORT, "titles": a_script.titles, "dialogue": a_script.dialogue})),
        case(Method::GET, "/engagement-reports/{slug}/", format!("/engagement-reports/{B_REPORT}/")),
        case(Method::PUT, "/engagement-reports/{slug}/", format!("/engagement-reports/{B_REPORT}/")).json(json!({"titles": a_script.titles, "dialogue": a_script.dialogue})),
        case(Method::DELETE, "/engagement-reports/{slug}/", format!("/engagement-reports/{B_REPORT}/")),
        case(Method::POST, "/imports/{kind}/", "/imports/marks/".into()).json(json!([{"student_id": fixture::STUDENT_ID, "exam_session_id": be, "subject": "MTH", "ca": 1}])),
    ];
    // Every documented operation has a case.
    let documented: BTreeSet<String> = chatbot::api::documented_methods()
        .into_iter()
        .flat_map(|(path, methods)| {
            let path = path.trim_start_matches(BASE).to_string();
            methods.into_iter().map(move |m| format!("{m} {path}"))
        })
        .collect();
    let covered: BTreeSet<String> = cases
        .iter()
        .map(|c| format!("{} {}", c.method, c.template))
        .collect();
    assert_eq!(
        covered, documented,
        "every operation needs a cross-tenant case"
    );

    let markers = b_markers(&b);
    // The markers are real: B's own key sees them.
    let own = ("X-API-KEY", b.api_key.as_str());
    let (_, text) = call(
        &app,
        &case(Method::GET, "", "/welcome-messages/".into()),
        &[own],
    )
    .await;
    assert!(text.contains(&b.welcome), "{text}");
    let (_, text) = call(&app, &case(Method::GET, "", "/notices/".into()), &[own]).await;
    assert!(text.contains(&b.notice_title), "{text}");
    let (_, text) = call(
        &app,
        &case(
            Method::GET,
            "/conversations/events/",
            "/conversations/events/".into(),
        ),
        &[own],
    )
    .await;
    assert!(
        text.contains("takeover"),
        "B's own stream tells B's takeover: {text}"
    );
    let key = ("X-API-KEY", a.api_key.as_str());
    for c in &cases {
        let (status, text) = call(&app, c, &[key]).await;
        assert!(
            status.as_u16() < 500,
            "{} {}: {status} {text}",
            c.method,
            c.path
        );
        for m in &markers {
            assert!(
                !text.contains(m.as_str()),
                "{} {} returned B's `{m}`: {text}",
                c.method,
                c.path
            );
        }
        if c.template == "/conversations/events/" {
            // B's takeover, moments ago, is not A's news.
            assert!(!text.contains("takeover"), "{text}");
        }
        if c.path.contains("academic-sessions") {
            assert!(!text.contains(&format!("\"id\":{b_session},")), "{text}");
        }
        if c.template == "/released-exam-sessions/" {
            let ids: Vec<i64> = serde_json::from_str::<Value>(&text)
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_i64().unwrap())
                .collect();
            assert_eq!(ids, [a.exam_id]);
        }
        if c.template != "/version/" {
            // Naming B, by header or by domain, with A's key: refused before anything runs.
            let (status, text) = call(&app, c, &[key, ("X-Schema-Name", "beta")]).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{} {} with X-Schema-Name: {text}",
                c.method,
                c.path
            );
            let (status, text) = call(&app, c, &[key, ("Host", &b.domain)]).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{} {} on B's domain: {text}",
                c.method,
                c.path
            );
        }
    }
    // Work A queued (report jobs, the deletion aimed at B's report) has run.
    common::eventually(
        "A's jobs finished",
        std::time::Duration::from_secs(30),
        || async {
            let rows = a
                .ctx
                .find::<background_job::Entity>()
                .all(db)
                .await
                .unwrap();
            rows.iter()
                .all(|r| r.status == "done" || r.status == "failed")
                .then_some(())
        },
    )
    .await;
    let after = snapshot(db, &b.ctx).await;
    for (x, y) in before.iter().zip(&after) {
        assert_eq!(x, y, "school B changed");
    }
    app.stop().await.unwrap();
}
