//! Results through the REST API: `get-chatbot/` (a parent's view: released sessions, PIN or
//! linked phone, guesses paced), `results/` (staff) and the manual CSV template, downloaded,
//! filled in and uploaded (checked row by row; all or nothing).

mod common;

use chatbot::entities::{mark, student};
use common::fixture::{self, SHARED_PHONE};
use common::{TestApp, TestEnv, Variant};
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, Set};
use serde_json::{Value, json};

variants!(
    a_parent_sees_released_results_with_proof,
    staff_read_a_class_and_fill_in_the_template,
);

const BASE: &str = "/api/v1/chatbot";

async fn get_chatbot(app: &TestApp, key: &str, body: Value) -> (StatusCode, Value) {
    app.get_chatbot(key, body).await
}

async fn get(app: &TestApp, key: &str, path: &str) -> (StatusCode, String) {
    let r = app
        .http
        .get(app.url(&format!("{BASE}{path}")))
        .header("X-API-KEY", key)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn upload(app: &TestApp, key: &str, query: &str, csv: &str) -> (StatusCode, Value) {
    let r = app
        .http
        .post(app.url(&format!("{BASE}/results/manual-template/?{query}")))
        .header("X-API-KEY", key)
        .header("Content-Type", "text/csv")
        .body(csv.to_string())
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn a_parent_sees_released_results_with_proof(v: Variant) {
    let Some(mut env) = TestEnv::new(v).await else {
        return;
    };
    env.settings.conversation.pin_max_failures = 3;
    let app = env.start().await;
    let (a, b) = app.two_schools().await;

    // ID + PIN: the latest released session by default.
    let (status, body) = get_chatbot(
        &app,
        &a.api_key,
        json!({"student_id": fixture::STUDENT_ID, "pin": a.pin}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["exam_session_id"], a.exam_id);
    assert_eq!(body["student"]["id"], a.student.id);
    assert_eq!(body["subjects"][0]["subject"], a.subject_name.as_str());
    assert_eq!(body["subjects"][0]["total"], a.maths_total);
    assert_eq!(
        (body["position"].as_u64(), body["class_size"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(!body.to_string().contains(&b.subject_name));
    // A linked phone instead of the PIN.
    let (status, body) = get_chatbot(&app, &a.api_key, json!({"student_id": fixture::STUDENT_ID, "phone": SHARED_PHONE, "exam_session_id": a.exam_id})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["subjects"][0]["total"], a.maths_total);
    // Not released, or another school's session: not found.
    for exam in [a.unreleased_exam_id, b.exam_id] {
        let (status, body) = get_chatbot(
            &app,
            &a.api_key,
            json!({"student_id": fixture::STUDENT_ID, "pin": a.pin, "exam_session_id": exam}),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    // Neither proof, or both.
    for body in [
        json!({"student_id": fixture::STUDENT_ID}),
        json!({"student_id": fixture::STUDENT_ID, "pin": a.pin, "phone": SHARED_PHONE}),
    ] {
        let (status, body) = get_chatbot(&app, &a.api_key, body).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_proof"))
        );
    }
    // Beta's PIN on alpha's student: wrong, like any wrong PIN. Three wrong guesses, then the
    // student is locked for a while, even for the right PIN; the other school's student is not.
    for _ in 0..3 {
        let (status, body) = get_chatbot(
            &app,
            &a.api_key,
            json!({"student_id": fixture::STUDENT_ID, "pin": b.pin}),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"], "not_found");
    }
    let (status, body) = get_chatbot(
        &app,
        &a.api_key,
        json!({"student_id": fixture::STUDENT_ID, "pin": a.pin}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
        "{body}"
    );
    let (status, body) = get_chatbot(
        &app,
        &b.api_key,
        json!({"student_id": fixture::STUDENT_ID, "pin": b.pin}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["student"]["id"], b.student.id);
    assert_eq!(body["subjects"][0]["total"], b.maths_total);

    // A `messages` key may ask (it is the chat's own question).
    let messages =
        chatbot::admin::create_api_key(&app.state.db, "beta", "chat", &["messages".into()])
            .await
            .unwrap()
            .key;
    let (status, _) = get_chatbot(
        &app,
        &messages,
        json!({"student_id": fixture::STUDENT_ID, "phone": SHARED_PHONE}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await.unwrap();
}

async fn staff_read_a_class_and_fill_in_the_template(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let (a, b) = app.two_schools().await;
    let db = &app.state.db;
    let now = chrono::Utc::now();
    // A classmate with no marks yet, whose name needs quoting in CSV.
    let classmate = student::ActiveModel {
        tenant_id: Set(a.ctx.id()),
        student_id: Set("STU/002".into()),
        pin_hash: Set(app.state.secret.hash_pin("4321")),
        first_name: Set("Zoë, Jr".into()),
        last_name: Set("Ivanova".into()),
        class_id: Set(Some(a.class_id)),
        active: Set(true),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();

    // The unreleased session, as staff see it: both students, by last name.
    let path = format!(
        "/results/?exam_session_id={}&class_id={}",
        a.unreleased_exam_id, a.class_id
    );
    let (status, text) = get(&app, &a.api_key, &path).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let page: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(page["count"], 2);
    let names: Vec<&str> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["student"]["last_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Ivanova", "Ọ̀kọ̀"]);
    assert_eq!(page["results"][0]["subjects"], json!([]));
    assert_eq!(page["results"][1]["subjects"][0]["total"], a.maths_total);
    // One student by ID; another school's class or session; no filter.
    let (status, text) = get(
        &app,
        &a.api_key,
        &format!("/results/?exam_session_id={}&student_id=STU/002", a.exam_id),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    for path in [
        format!(
            "/results/?exam_session_id={}&class_id={}",
            a.exam_id, b.class_id
        ),
        format!(
            "/results/?exam_session_id={}&class_id={}",
            b.exam_id, a.class_id
        ),
    ] {
        assert_eq!(
            get(&app, &a.api_key, &path).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let (status, _) = get(
        &app,
        &a.api_key,
        &format!("/results/?exam_session_id={}", a.exam_id),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The template: a row per student, marks already entered filled in.
    let query = format!("class_id={}&exam_session_id={}", a.class_id, a.exam_id);
    let (status, csv) = get(
        &app,
        &a.api_key,
        &format!("/results/manual-template/?{query}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{csv}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "student_id,student_name,MTH_ca,MTH_exam");
    assert_eq!(lines[1], "STU/002,\"Zoë, Jr Ivanova\",,");
    assert_eq!(
        lines[2],
        format!("STU/001,Ada1 Ọ̀kọ̀,20,{}", a.maths_total - 20.0)
    );
    // The other school's class is not found.
    let (status, _) = get(
        &app,
        &a.api_key,
        &format!(
            "/results/manual-template/?class_id={}&exam_session_id={}",
            b.class_id, a.exam_id
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A filled-in copy: one mark changed, one added.
    let filled = "student_id,student_name,MTH_ca,MTH_exam\nSTU/002,\"Zoë, Jr Ivanova\",35,40\nSTU/001,Ada1 Ọ̀kọ̀,30,45\n";
    let (status, body) = upload(&app, &a.api_key, &query, filled).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"students": 2, "marks_written": 2}));
    let (_, text) = get(
        &app,
        &a.api_key,
        &format!(
            "/results/?exam_session_id={}&class_id={}",
            a.exam_id, a.class_id
        ),
    )
    .await;
    let page: Value = serde_json::from_str(&text).unwrap();
    let first = &page["results"][1]["subjects"][0];
    assert_eq!(
        (
            first["ca"].as_f64(),
            first["exam"].as_f64(),
            first["total"].as_f64()
        ),
        (Some(30.0), Some(45.0), Some(75.0))
    );
    assert_eq!(first["grade"], "A");
    assert_eq!(page["results"][0]["subjects"][0]["total"], 75.0);

    // Problems in several rows: every one reported, nothing written.
    let bad = "student_id,student_name,MTH_ca,MTH_exam,ENG_ca\n\
               STU/002,x,abc,40,\n\
               STU/999,x,10,10,\n\
               STU/001,x,70,45,\n\
               STU/001,x,1,1,\n";
    let (status, body) = upload(&app, &a.api_key, &query, bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_rows");
    let problems: Vec<(u64, String)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_u64().unwrap(),
                e["column"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        [
            (1, "ENG_ca".to_string()),
            (2, "MTH_ca".to_string()),
            (3, "student_id".to_string()),
            (4, "MTH_exam".to_string()),
            (5, "student_id".to_string()),
        ],
        "{body}"
    );
    let (_, after) = get(
        &app,
        &a.api_key,
        &format!("/results/manual-template/?{query}"),
    )
    .await;
    assert!(after.contains("STU/001,Ada1 Ọ̀kọ̀,30,45"), "{after}");
    assert!(
        after.contains("STU/002,\"Zoë, Jr Ivanova\",35,40"),
        "{after}"
    );
    // Alpha's key cannot write into beta's class, and beta's marks are untouched.
    let beta_query = format!("class_id={}&exam_session_id={}", b.class_id, b.exam_id);
    let (status, _) = upload(
        &app,
        &a.api_key,
        &beta_query,
        "student_id,MTH_ca\nSTU/001,1\n",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let beta_mark: Vec<mark::Model> = b.ctx.find::<mark::Entity>().all(db).await.unwrap();
    assert!(beta_mark.iter().all(|m| m.total == Some(b.maths_total)));
    let _ = classmate;
    app.stop().await.unwrap();
}
