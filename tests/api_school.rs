//! The school endpoints of the REST API (welcome messages, students, sessions, notices): what
//! they return, what they refuse, and that every one stays inside the caller's school. The
//! two fixture schools share natural keys (student ID, class name, parent phone), so a query
//! missing its tenant filter returns the other school's rows.

mod common;

use common::fixture::{self, SHARED_PHONE};
use common::{TestApp, Variant};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

variants!(
    one_welcome_message_per_school,
    reads_stay_in_the_school,
    notices_are_created_edited_and_checked,
    scopes_and_bad_input,
);

const BASE: &str = "/api/v1/chatbot";

#[track_caller]
fn ok(got: &(StatusCode, Value), status: StatusCode) -> Value {
    assert_eq!(got.0, status, "{}", got.1);
    got.1.clone()
}

#[track_caller]
fn error(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"], code, "{}", got.1);
    assert!(got.1["message"].as_str().is_some_and(|m| !m.is_empty()));
}

async fn one_welcome_message_per_school(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let (a, b) = app.two_schools().await;
    let list = ok(
        &app.api(&a.api_key, Method::GET, "/welcome-messages/", None)
            .await,
        StatusCode::OK,
    );
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["body"], a.welcome.as_str());
    let a_id = list[0]["id"].as_i64().unwrap();
    let b_list = ok(
        &app.api(&b.api_key, Method::GET, "/welcome-messages/", None)
            .await,
        StatusCode::OK,
    );
    let b_id = b_list[0]["id"].as_i64().unwrap();

    // A second one is a conflict, and changes nothing.
    let second = app
        .api(
            &a.api_key,
            Method::POST,
            "/welcome-messages/",
            Some(json!({"body": "Hello again"})),
        )
        .await;
    error(&second, StatusCode::CONFLICT, "conflict");

    // Another school's message, by id: not found, for reading, changing and deleting alike.
    let b_path = format!("/welcome-messages/{b_id}/");
    error(
        &app.api(&a.api_key, Method::GET, &b_path, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    error(
        &app.api(
            &a.api_key,
            Method::PUT,
            &b_path,
            Some(json!({"body": "pwned"})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    error(
        &app.api(&a.api_key, Method::DELETE, &b_path, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let b_still = ok(
        &app.api(&b.api_key, Method::GET, &b_path, None).await,
        StatusCode::OK,
    );
    assert_eq!(b_still["body"], b.welcome.as_str());

    // Edit, delete, create again.
    let a_path = format!("/welcome-messages/{a_id}/");
    let edited = ok(
        &app.api(
            &a.api_key,
            Method::PUT,
            &a_path,
            Some(json!({"body": "  Bienvenue, Ọ̀kọ̀!  "})),
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(edited["body"], "Bienvenue, Ọ̀kọ̀!");
    let stored = chatbot::school::welcome::get(&app.state.db, &a.ctx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.body, "Bienvenue, Ọ̀kọ̀!");
    ok(
        &app.api(&a.api_key, Method::DELETE, &a_path, None).await,
        StatusCode::NO_CONTENT,
    );
    let empty = ok(
        &app.api(&a.api_key, Method::GET, "/welcome-messages/", None)
            .await,
        StatusCode::OK,
    );
    assert_eq!(empty, json!([]));
    let created = ok(
        &app.api(
            &a.api_key,
            Method::POST,
            "/welcome-messages/",
            Some(json!({"body": "Hi"})),
        )
        .await,
        StatusCode::CREATED,
    );
    assert_eq!(created["body"], "Hi");

    // Bad bodies: empty, too long, not JSON, wrong shape. Nothing changes.
    for body in [json!({"body": "   "}), json!({"body": "x".repeat(4097)})] {
        let path = format!("/welcome-messages/{}/", created["id"]);
        error(
            &app.api(&a.api_key, Method::PUT, &path, Some(body)).await,
            StatusCode::BAD_REQUEST,
            "invalid_body",
        );
    }
    let r = app
        .http
        .post(app.url(&format!("{BASE}/welcome-messages/")))
        .header("X-API-KEY", &a.api_key)
        .header("Content-Type", "application/json")
        .body("{\"body\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");
    let after = ok(
        &app.api(&a.api_key, Method::GET, "/welcome-messages/", None)
            .await,
        StatusCode::OK,
    );
    assert_eq!(after[0]["body"], "Hi");
    app.stop().await.unwrap();
}

async fn reads_stay_in_the_school(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let (a, b) = app.two_schools().await;
    for (me, other) in [(&a, &b), (&b, &a)] {
        // The parent verification list: the shared phone is linked in both schools.
        let path = format!("/students/?phone={}", SHARED_PHONE.replace('+', "%2B"));
        let page = ok(
            &app.api(&me.api_key, Method::GET, &path, None).await,
            StatusCode::OK,
        );
        assert_eq!(page["count"], 1, "{page}");
        let student = &page["results"][0];
        assert_eq!(student["id"], me.student.id);
        assert_eq!(student["student_id"], fixture::STUDENT_ID);
        assert_eq!(student["first_name"], me.student.first_name.as_str());
        assert_eq!(student["class_id"], me.class_id);
        assert_eq!(student["class_name"], "JSS 1A");
        assert!(student.get("pin_hash").is_none() && !page.to_string().contains("pin"));
        // A class of the other school has no students here.
        let path = format!("/students/?class_id={}", other.class_id);
        let page = ok(
            &app.api(&me.api_key, Method::GET, &path, None).await,
            StatusCode::OK,
        );
        assert_eq!(page["count"], 0, "{page}");
        // An unlinked phone: nobody.
        let page = ok(
            &app.api(
                &me.api_key,
                Method::GET,
                "/students/?phone=%2B2348000000999",
                None,
            )
            .await,
            StatusCode::OK,
        );
        assert_eq!(page["count"], 0);

        let sessions = ok(
            &app.api(&me.api_key, Method::GET, "/academic-sessions/", None)
                .await,
            StatusCode::OK,
        );
        assert_eq!(sessions["count"], 1);
        assert_eq!(sessions["results"][0]["name"], "2025/2026");
        assert_eq!(sessions["results"][0]["is_current"], true);

        // Released exam sessions only: the fixture's mid-term test is not released.
        let exams = ok(
            &app.api(&me.api_key, Method::GET, "/released-exam-sessions/", None)
                .await,
            StatusCode::OK,
        );
        let ids: Vec<i64> = exams
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, [me.exam_id]);
        assert_eq!(exams[0]["term_id"], me.term_id);
        assert_eq!(exams[0]["term"], "First Term");

        let notices = ok(
            &app.api(&me.api_key, Method::GET, "/notices/", None).await,
            StatusCode::OK,
        );
        let titles: Vec<&str> = notices["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles, [me.notice_title.as_str()]);
        assert!(!notices.to_string().contains(&other.notice_title));
    }
    app.stop().await.unwrap();
}

async fn notices_are_created_edited_and_checked(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let (a, b) = app.two_schools().await;
    let later = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let created = ok(
        &app.api(&a.api_key,
            Method::POST,
            "/notices/",
            Some(json!({"title": "Sports day", "body": "Friday, 9am", "audience": "class", "audience_class_id": a.class_id})),
        )
        .await,
        StatusCode::CREATED,
    );
    assert_eq!(created["audience"], "class");
    let id = created["id"].as_i64().unwrap();
    let scheduled = ok(
        &app.api(&a.api_key,
            Method::POST,
            "/notices/",
            Some(json!({"title": "Next term", "body": "Starts soon", "audience": "form", "audience_form": "JSS 1", "publish_at": later})),
        )
        .await,
        StatusCode::CREATED,
    );
    // Current notices: the new one, not the scheduled one; every one with include_inactive.
    let current = ok(
        &app.api(&a.api_key, Method::GET, "/notices/", None).await,
        StatusCode::OK,
    );
    assert_eq!(current["count"], 2, "{current}");
    let all = ok(
        &app.api(
            &a.api_key,
            Method::GET,
            "/notices/?include_inactive=true",
            None,
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(all["count"], 3, "{all}");
    assert!(
        all.to_string()
            .contains(&format!("\"id\":{}", scheduled["id"]))
    );
    // Pages.
    let page = ok(
        &app.api(
            &a.api_key,
            Method::GET,
            "/notices/?include_inactive=true&page=2&page_size=2",
            None,
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(page["results"].as_array().unwrap().len(), 1);
    assert_eq!(page["page"], 2);

    // Edit it; the other school cannot see, change or delete it.
    let path = format!("/notices/{id}/");
    let edited = ok(
        &app.api(
            &a.api_key,
            Method::PUT,
            &path,
            Some(json!({"title": "Sports day (moved)", "body": "Saturday"})),
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(edited["title"], "Sports day (moved)");
    assert_eq!(edited["audience"], "school");
    for method in [Method::GET, Method::DELETE] {
        error(
            &app.api(&b.api_key, method, &path, None).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }
    error(
        &app.api(
            &b.api_key,
            Method::PUT,
            &path,
            Some(json!({"title": "x", "body": "y"})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let still = ok(
        &app.api(&a.api_key, Method::GET, &path, None).await,
        StatusCode::OK,
    );
    assert_eq!(still["title"], "Sports day (moved)");

    // Audiences are checked against the school: the other school's class is unknown here.
    for bad in [
        json!({"title": "t", "body": "b", "audience": "class", "audience_class_id": b.class_id}),
        json!({"title": "t", "body": "b", "audience": "class"}),
        json!({"title": "t", "body": "b", "audience": "form", "audience_form": "SS 9"}),
        json!({"title": "", "body": "b"}),
        json!({"title": "t", "body": "b", "publish_at": later, "expires_at": chrono::Utc::now().to_rfc3339()}),
    ] {
        error(
            &app.api(&a.api_key, Method::POST, "/notices/", Some(bad))
                .await,
            StatusCode::BAD_REQUEST,
            "invalid_notice",
        );
    }
    let bad_audience = app
        .api(
            &a.api_key,
            Method::POST,
            "/notices/",
            Some(json!({"title": "t", "body": "b", "audience": "planet"})),
        )
        .await;
    assert_eq!(
        bad_audience.0,
        StatusCode::BAD_REQUEST,
        "{}",
        bad_audience.1
    );
    let count = ok(
        &app.api(
            &a.api_key,
            Method::GET,
            "/notices/?include_inactive=true",
            None,
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(count["count"], 3, "refused notices were stored");

    ok(
        &app.api(&a.api_key, Method::DELETE, &path, None).await,
        StatusCode::NO_CONTENT,
    );
    error(
        &app.api(&a.api_key, Method::GET, &path, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    app.stop().await.unwrap();
}

async fn scopes_and_bad_input(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let (a, _b) = app.two_schools().await;
    let db = &app.state.db;
    let staff = chatbot::admin::create_api_key(db, "alpha", "office", &["staff".into()])
        .await
        .unwrap()
        .key;
    let messages = chatbot::admin::create_api_key(db, "alpha", "desk", &["messages".into()])
        .await
        .unwrap()
        .key;
    // Staff read and edit school data, but the welcome message is the school admin's.
    ok(
        &app.api(&staff, Method::GET, "/welcome-messages/", None)
            .await,
        StatusCode::OK,
    );
    error(
        &app.api(
            &staff,
            Method::POST,
            "/welcome-messages/",
            Some(json!({"body": "x"})),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    ok(
        &app.api(&staff, Method::GET, "/notices/", None).await,
        StatusCode::OK,
    );
    // A `messages` key talks to the bot and nothing else.
    for path in [
        "/students/",
        "/notices/",
        "/academic-sessions/",
        "/welcome-messages/",
    ] {
        error(
            &app.api(&messages, Method::GET, path, None).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        );
    }
    // Pagination and filters are checked.
    for path in [
        "/students/?page_size=0",
        "/students/?page_size=101",
        "/notices/?page=0",
    ] {
        let got = app.api(&a.api_key, Method::GET, path, None).await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{path}: {}", got.1);
    }
    error(
        &app.api(
            &a.api_key,
            Method::GET,
            "/students/?phone=not-a-phone",
            None,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_phone",
    );
    let got = app
        .api(&a.api_key, Method::GET, "/students/?class_id=abc", None)
        .await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
    assert!(got.1["error"].is_string(), "{}", got.1);
    app.stop().await.unwrap();
}
