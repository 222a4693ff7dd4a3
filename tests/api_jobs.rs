//! Work the REST API hands to workers, over a real queue: report jobs (a card per student with
//! a signed link that downloads it, a batch's combined PDF), report deletion, and notice
//! broadcasts that reach the mock Graph API through the sender, each recipient's delivery
//! readable.

mod common;

use std::time::Duration;

use chatbot::channels::mock_graph::MockGraph;
use chatbot::entities::{report, whatsapp_contact, whatsapp_number};
use common::fixture::{SHARED_PHONE, School};
use common::{TestApp, TestEnv, Variant, eventually};
use reqwest::{Method, StatusCode};
use sea_orm::{ActiveModelTrait, ColumnTrait, QueryFilter, Set};
use serde_json::{Value, json};

variants!(
    report_jobs_are_recorded_and_followed,
    notices_broadcast_to_registered_numbers,
    a_class_of_the_demo_school_gets_its_notice_at_the_configured_rate,
);

/// Wait until job `id` is finished; its final state.
async fn finished(app: &TestApp, key: &str, id: i64) -> Value {
    eventually(
        &format!("job {id} finished"),
        Duration::from_secs(30),
        || async {
            let (_, job) = app
                .api(key, Method::GET, &format!("/jobs/{id}/"), None)
                .await;
            matches!(job["status"].as_str(), Some("done" | "failed")).then_some(job)
        },
    )
    .await
}

async fn report_jobs_are_recorded_and_followed(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let (a, b) = app.two_schools().await;
    let (status, job) = app
        .api(
            &a.api_key,
            Method::POST,
            "/generate-reports/",
            Some(json!({"class_id": a.class_id, "exam_session_id": a.exam_id})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(
        (job["kind"].as_str(), job["status"].as_str()),
        (Some("generate_reports"), Some("queued"))
    );
    let id = job["id"].as_i64().unwrap();
    let done = finished(&app, &a.api_key, id).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["result"]["count"], 1, "{done}");
    let card = &done["result"]["reports"][0];
    assert_eq!(card["student_id"], a.student.student_id.as_str());
    // The signed link downloads the card; the link is absolute, the test server's port is not
    // the configured one.
    let url = url::Url::parse(card["url"].as_str().unwrap()).unwrap();
    let path = format!("{}?{}", url.path(), url.query().unwrap());
    let pdf = app.get(&path).await;
    assert_eq!(pdf.status(), StatusCode::OK);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    let bytes = pdf.bytes().await.unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    assert_eq!(card["bytes"].as_u64(), Some(bytes.len() as u64));
    // One student's card, by the school's student ID.
    let (status, job) = app
        .api(
            &a.api_key,
            Method::POST,
            "/generate-reports/",
            Some(json!({"student_id": a.student.student_id, "exam_session_id": a.exam_id})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let one = finished(&app, &a.api_key, job["id"].as_i64().unwrap()).await;
    assert_eq!(
        (one["status"].as_str(), one["result"]["count"].as_u64()),
        (Some("done"), Some(1)),
        "{one}"
    );
    for (body, expected) in [
        (
            // (The fixture's schools use the same student IDs: each means its own student.)
            json!({"student_id": "NOPE/999", "exam_session_id": a.exam_id}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"student_id": a.student.student_id, "class_id": a.class_id, "exam_session_id": a.exam_id}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"exam_session_id": a.exam_id}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, _) = app
            .api(
                &a.api_key,
                Method::POST,
                "/generate-reports/",
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, expected, "{body}");
    }
    // Another school cannot read it; another school's class or session is not found.
    let (status, _) = app
        .api(&b.api_key, Method::GET, &format!("/jobs/{id}/"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for body in [
        json!({"class_id": b.class_id, "exam_session_id": a.exam_id}),
        json!({"class_id": a.class_id, "exam_session_id": b.exam_id}),
    ] {
        let (status, _) = app
            .api(&a.api_key, Method::POST, "/generate-reports/", Some(body))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, job) = app
        .api(
            &a.api_key,
            Method::POST,
            "/batch-reports/",
            Some(json!({"exam_session_id": a.exam_id, "class_id": a.class_id})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let done = finished(&app, &a.api_key, job["id"].as_i64().unwrap()).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["result"]["combined"]["pages"], 1, "{done}");
    let (status, body) = app
        .api(
            &a.api_key,
            Method::POST,
            "/batch-reports/",
            Some(json!({"exam_session_id": a.exam_id})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_filter"))
    );

    // Deleting by age removes this school's reports only.
    for bad in [
        json!({}),
        json!({"ids": [], }),
        json!({"ids": [1], "class_id": a.class_id}),
    ] {
        let (status, _) = app
            .api(&a.api_key, Method::POST, "/delete-reports/", Some(bad))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let (status, job) = app
        .api(
            &a.api_key,
            Method::POST,
            "/delete-reports/",
            Some(json!({"older_than_days": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let done = finished(&app, &a.api_key, job["id"].as_i64().unwrap()).await;
    // The fixture's report row, the class card, the single card, the batch's card and its
    // combined file.
    assert_eq!(
        (done["status"].as_str(), done["result"]["deleted"].as_u64()),
        (Some("done"), Some(5)),
        "{done}"
    );
    // The link of a deleted report finds nothing.
    assert_eq!(app.get(&path).await.status(), StatusCode::NOT_FOUND);
    let left = |s: &School| s.ctx.find::<report::Entity>().all(&app.state.db);
    assert!(left(&a).await.unwrap().is_empty());
    assert_eq!(
        left(&b).await.unwrap().len(),
        1,
        "the other school's report was deleted"
    );
    app.stop().await.unwrap();
}

async fn notices_broadcast_to_registered_numbers(v: Variant) {
    let Some(mut env) = TestEnv::new(v).await else {
        return;
    };
    let mock = MockGraph::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    env.settings.whatsapp.api_base = mock.base_url();
    env.settings.whatsapp.template = Some("school_notice".into());
    let app = env.start().await;
    let (a, b) = app.two_schools().await;
    let db = &app.state.db;
    let now = chrono::Utc::now();
    // Alpha can send; beta has the same shared parent but is not part of this.
    let number = a
        .ctx
        .find::<whatsapp_number::Entity>()
        .filter(whatsapp_number::Column::Provider.eq("meta"))
        .one(db)
        .await
        .unwrap()
        .unwrap();
    let mut number: whatsapp_number::ActiveModel = number.into();
    number.access_token = Set(Some(app.state.secret.seal(
        chatbot::crypto::SealedColumn::AccessToken,
        a.ctx.id(),
        "alpha-token",
    )));
    number.update(db).await.unwrap();
    // A registered parent with no linked child, and one who opted out.
    for (phone, opted_in) in [("+2348000000111", true), ("+2348000000222", false)] {
        whatsapp_contact::ActiveModel {
            tenant_id: Set(a.ctx.id()),
            phone: Set(phone.into()),
            opted_in: Set(opted_in),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap();
    }
    let notice = |audience: Value| {
        let mut body = json!({"title": "Sports day", "body": "Friday at 9"});
        body.as_object_mut()
            .unwrap()
            .extend(audience.as_object().unwrap().clone());
        body
    };

    // A class notice reaches the parent linked to that class: inside the 24-hour window
    // (the fixture's parent wrote just now), as the notice's text.
    let (_, created) = app
        .api(
            &a.api_key,
            Method::POST,
            "/notices/",
            Some(notice(
                json!({"audience": "class", "audience_class_id": a.class_id}),
            )),
        )
        .await;
    let (status, job) = app
        .api(
            &a.api_key,
            Method::POST,
            &format!("/notices/{}/broadcast/", created["id"]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let class_job = finished(&app, &a.api_key, job["id"].as_i64().unwrap()).await;
    assert_eq!(
        (class_job["status"].as_str(), class_job["total"].as_i64()),
        (Some("done"), Some(1)),
        "{class_job}"
    );

    // A whole-school notice reaches every opted-in contact; outside the window, the template.
    let (_, created) = app
        .api(
            &a.api_key,
            Method::POST,
            "/notices/",
            Some(notice(json!({"title": "Closed Monday"}))),
        )
        .await;
    let (_, job) = app
        .api(
            &a.api_key,
            Method::POST,
            &format!("/notices/{}/broadcast/", created["id"]),
            None,
        )
        .await;
    let school_id = job["id"].as_i64().unwrap();
    let school_job = finished(&app, &a.api_key, school_id).await;
    assert_eq!(school_job["total"], 2, "{school_job}");

    let received = eventually(
        "3 messages at the Graph API",
        Duration::from_secs(30),
        || async {
            let got = mock.received();
            (got.len() >= 3).then_some(got)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        mock.received().len(),
        3,
        "nobody got a notice twice, nobody else got one"
    );
    let shared_digits = SHARED_PHONE.trim_start_matches('+');
    let mut texts: Vec<(String, String)> = received
        .iter()
        .map(|r| {
            assert_eq!(r.phone_number_id, a.phone_number_id);
            let kind = r.body["type"].as_str().unwrap().to_string();
            let what = if kind == "template" {
                r.body["template"]["name"].as_str().unwrap().to_string()
            } else {
                r.text()
            };
            (r.to(), what)
        })
        .collect();
    texts.sort();
    assert_eq!(
        texts,
        [
            ("2348000000111".to_string(), "school_notice".to_string()),
            (
                shared_digits.to_string(),
                "*Closed Monday*\n\nFriday at 9".to_string()
            ),
            (
                shared_digits.to_string(),
                "*Sports day*\n\nFriday at 9".to_string()
            ),
        ]
    );

    // Each recipient's status, once the sends are recorded; the parent who opted out is
    // listed as skipped, never sent to.
    let path = format!("/jobs/{school_id}/recipients/");
    let page = eventually(
        "recipients marked sent",
        Duration::from_secs(30),
        || async {
            let (_, page) = app.api(&a.api_key, Method::GET, &path, None).await;
            page["results"]
                .as_array()
                .is_some_and(|r| {
                    r.len() == 3
                        && r.iter()
                            .all(|x| x["status"] == "sent" || x["status"] == "skipped")
                })
                .then_some(page)
        },
    )
    .await;
    let phones: Vec<(&str, &str)> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["phone"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        phones,
        [
            ("+2348000000111", "sent"),
            ("+2348000000222", "skipped"),
            (SHARED_PHONE, "sent")
        ]
    );
    assert_eq!(page["results"][1]["error"], "opted_out");
    assert_eq!(
        school_job["result"]["skipped"]["opted_out"], 1,
        "{school_job}"
    );
    let (_, job) = app
        .api(
            &a.api_key,
            Method::GET,
            &format!("/jobs/{school_id}/"),
            None,
        )
        .await;
    assert_eq!(job["progress"], json!({"sent": 2, "skipped": 1}), "{job}");

    // The other school can neither read these nor broadcast alpha's notices.
    let (status, _) = app.api(&b.api_key, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .api(
            &b.api_key,
            Method::POST,
            &format!("/notices/{}/broadcast/", created["id"]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    mock.stop();
    app.stop().await.unwrap();
}

async fn a_class_of_the_demo_school_gets_its_notice_at_the_configured_rate(v: Variant) {
    use chatbot::entities::{class, student, student_mapping};
    use std::collections::{BTreeMap, BTreeSet};
    let Some(mut env) = TestEnv::new(v).await else {
        return;
    };
    let mock = MockGraph::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    env.settings.whatsapp.api_base = mock.base_url();
    env.settings.whatsapp.template = Some("school_notice".into());
    env.settings.whatsapp.send_rate_per_second = 5;
    let app = env.start().await;
    let creds = chatbot::demo::seed(&app.state.db, &app.state.secret)
        .await
        .unwrap();
    let demo = &creds.tenants[0];
    let db = &app.state.db;
    let ctx = chatbot::tenancy::by_schema_name(
        db,
        &chatbot::domain::SchemaName::parse(&demo.schema_name).unwrap(),
    )
    .await
    .unwrap();
    // Who should get it, worked out here from the tables: per class, the opted-in contacts
    // linked to its enrolled students.
    let opted_in: BTreeSet<String> = ctx
        .find::<whatsapp_contact::Entity>()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.opted_in)
        .map(|c| c.phone)
        .collect();
    let students = ctx.find::<student::Entity>().all(db).await.unwrap();
    let mut by_class: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for m in ctx.find::<student_mapping::Entity>().all(db).await.unwrap() {
        let s = students.iter().find(|s| s.id == m.student_id).unwrap();
        if let (Some(class_id), true, true) = (s.class_id, s.active, opted_in.contains(&m.phone)) {
            by_class
                .entry(class_id)
                .or_default()
                .insert(m.phone.clone());
        }
    }
    let (class_id, expected) = by_class.into_iter().max_by_key(|(_, p)| p.len()).unwrap();
    assert!(
        expected.len() >= 2,
        "the demo has a class with several registered parents"
    );
    let class = ctx
        .find::<class::Entity>()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == class_id)
        .unwrap();

    let key = &demo.api_key;
    let (status, created) = app.api(key, Method::POST, "/notices/", Some(json!({"title": format!("{} trip", class.name), "body": "Bring water", "audience": "class", "audience_class_id": class_id}))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let asked = std::time::Instant::now();
    let (status, job) = app
        .api(
            key,
            Method::POST,
            &format!("/notices/{}/broadcast/", created["id"]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let n = expected.len();
    let received = eventually(
        &format!("{n} notices at the Graph API"),
        Duration::from_secs(60),
        || async {
            let got = mock.received();
            (got.len() >= n).then_some(got)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        mock.received().len(),
        n,
        "someone else got it, or someone got it twice"
    );
    let got: BTreeSet<String> = received.iter().map(|r| format!("+{}", r.to())).collect();
    assert_eq!(got, expected);
    // Paced: sends take consecutive slots of 1/5 s from when the broadcast was asked for, so
    // the last cannot arrive before (n - 1) slots have passed, however fast the machine.
    let last = received.iter().map(|r| r.at).max().unwrap();
    assert!(
        last.duration_since(asked) >= Duration::from_millis(200) * (n as u32 - 1),
        "{n} sends within {:?}",
        last.duration_since(asked)
    );
    mock.stop();
    app.stop().await.unwrap();
}
