//! Bulk imports through the REST API: CSV and JSON, upserts by natural key, PINs stored
//! hashed, every problem reported by row and column with nothing written, and one school's
//! names never resolving to another school's rows.

mod common;

use chatbot::entities::{attendance, class, mark, student, whatsapp_contact};
use common::fixture;
use common::{TestApp, Variant};
use reqwest::StatusCode;
use serde_json::{Value, json};

variants!(
    imports_upsert_by_natural_key,
    bad_imports_write_nothing,
    marks_and_attendance_import,
);

const BASE: &str = "/api/v1/chatbot";

async fn csv(app: &TestApp, key: &str, kind: &str, text: &str) -> (StatusCode, Value) {
    let r = app
        .http
        .post(app.url(&format!("{BASE}/imports/{kind}/")))
        .header("X-API-KEY", key)
        .header("Content-Type", "text/csv")
        .body(text.to_string())
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn json_rows(app: &TestApp, key: &str, kind: &str, rows: Value) -> (StatusCode, Value) {
    let r = app
        .http
        .post(app.url(&format!("{BASE}/imports/{kind}/")))
        .header("X-API-KEY", key)
        .json(&rows)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn imports_upsert_by_natural_key(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let (a, b) = app.two_schools().await;
    let db = &app.state.db;

    let (status, body) = csv(
        &app,
        &a.api_key,
        "classes",
        "name,form,level\nJSS 1A,JSS 1,2\nJSS 2A,JSS 2,2\nSS 1 Gold,SS 1,4\n",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"rows": 3, "created": 2, "updated": 1}));
    // The same file again changes nothing.
    let (_, again) = csv(
        &app,
        &a.api_key,
        "classes",
        "name,form,level\nJSS 1A,JSS 1,2\nJSS 2A,JSS 2,2\nSS 1 Gold,SS 1,4\n",
    )
    .await;
    assert_eq!(again, json!({"rows": 3, "created": 0, "updated": 0}));
    let alpha_classes = a.ctx.find::<class::Entity>().all(db).await.unwrap();
    assert_eq!(alpha_classes.len(), 3);
    assert_eq!(
        b.ctx.find::<class::Entity>().all(db).await.unwrap().len(),
        1,
        "beta's classes untouched"
    );

    // Students as JSON: one new (with a PIN), one existing renamed (its PIN kept).
    let (status, body) = json_rows(
        &app,
        &a.api_key,
        "students",
        json!([
            {"student_id": "stu/100", "first_name": "Zoë", "last_name": "Ivanova", "class": "JSS 2A", "pin": "2468", "date_of_birth": "2013-04-02"},
            {"student_id": fixture::STUDENT_ID, "first_name": "Adaeze", "last_name": "Ọ̀kọ̀", "class": "JSS 1A", "active": true},
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["created"].as_u64(), body["updated"].as_u64()),
        (Some(1), Some(1))
    );
    let rows = a.ctx.find::<student::Entity>().all(db).await.unwrap();
    let zoe = rows.iter().find(|s| s.student_id == "STU/100").unwrap();
    // Stored as a salted MAC, not in clear. (Not "does not contain 2468": the hex of a
    // random salt and MAC holds those four digits about once in 700 runs.)
    let parts: Vec<&str> = zoe.pin_hash.split('$').collect();
    assert!(
        matches!(parts.as_slice(), ["hmac-sha256", salt, mac]
            if salt.len() == 32 && mac.len() == 64
                && format!("{salt}{mac}").chars().all(|c| c.is_ascii_hexdigit())),
        "{}",
        zoe.pin_hash
    );
    // The PIN works where parents use it; the renamed student kept theirs.
    for (id, pin, name) in [
        ("STU/100", "2468", "Zoë"),
        (fixture::STUDENT_ID, a.pin.as_str(), "Adaeze"),
    ] {
        let r = app
            .http
            .post(app.url(&format!("{BASE}/get-chatbot/")))
            .header("X-API-KEY", &a.api_key)
            .json(&json!({"student_id": id, "pin": pin}))
            .send()
            .await
            .unwrap();
        // Zoë has no marks yet: her results are empty, not refused.
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["student"]["first_name"], name);
        if id == "STU/100" {
            assert_eq!(body["subjects"], json!([]));
            assert_eq!(body["total"].to_string(), "0.0");
        }
    }
    let beta_student = b.ctx.find::<student::Entity>().all(db).await.unwrap();
    assert_eq!(beta_student.len(), 1);
    assert_eq!(
        beta_student[0].first_name, "Ada2",
        "beta's student of the same ID untouched"
    );

    // Contacts and links: a new link registers its phone as a contact.
    let (status, body) = csv(
        &app,
        &a.api_key,
        "contacts",
        "phone,name,opted_in\n+234 803 000 0777,Mrs Ivanova,yes\n",
    )
    .await;
    assert_eq!(
        (status, body["created"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{body}"
    );
    let (status, body) = csv(&app, &a.api_key, "mappings", "phone,student_id,relationship\n+2348030000777,STU/100,mother\n+2348030000888,STU/100,father\n").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["created"], 2);
    let contacts = a
        .ctx
        .find::<whatsapp_contact::Entity>()
        .all(db)
        .await
        .unwrap();
    assert!(
        contacts.iter().any(|c| c.phone == "+2348030000888"),
        "{contacts:?}"
    );
    let r = app
        .http
        .get(app.url(&format!("{BASE}/students/?phone=%2B2348030000888")))
        .header("X-API-KEY", &a.api_key)
        .send()
        .await
        .unwrap();
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["results"][0]["student_id"], "STU/100", "{page}");
    app.stop().await.unwrap();
}

async fn bad_imports_write_nothing(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let (a, b) = app.two_schools().await;
    let db = &app.state.db;
    // A class only beta has, and a student only beta has.
    csv(
        &app,
        &b.api_key,
        "classes",
        "name,form,level\nBeta Only,SS 3,6\n",
    )
    .await;
    json_rows(
        &app,
        &b.api_key,
        "students",
        json!([{"student_id": "BETA/1", "first_name": "B", "last_name": "B", "pin": "1234"}]),
    )
    .await;

    let text = "student_id,first_name,last_name,class,pin\n\
                STU/200,Good,Row,JSS 1A,1234\n\
                STU/201,,Nameless,JSS 1A,1234\n\
                STU/202,Bad,Pin,JSS 1A,12\n\
                STU/203,Wrong,Class,Beta Only,1234\n\
                STU/200,Twice,Listed,JSS 1A,1234\n\
                STU/204,No,Pin,JSS 1A,\n";
    let (status, body) = csv(&app, &a.api_key, "students", text).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_rows")),
        "{body}"
    );
    let problems: Vec<(u64, &str)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["row"].as_u64().unwrap(), e["column"].as_str().unwrap()))
        .collect();
    assert_eq!(
        problems,
        [
            (3, "first_name"),
            (4, "pin"),
            (5, "class"),
            (6, "student_id"),
            (7, "pin")
        ],
        "{body}"
    );
    let students = a.ctx.find::<student::Entity>().all(db).await.unwrap();
    assert_eq!(students.len(), 1, "the valid row was not written either");

    // A link to the other school's student, a bad phone; JSON rows count from 1.
    let (status, body) = json_rows(
        &app,
        &a.api_key,
        "mappings",
        json!([{"phone": "+2348030000777", "student_id": "BETA/1"}, {"phone": "call me", "student_id": fixture::STUDENT_ID}]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let problems: Vec<(u64, &str)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["row"].as_u64().unwrap(), e["column"].as_str().unwrap()))
        .collect();
    assert_eq!(problems, [(1, "student_id"), (2, "phone")], "{body}");

    // Malformed CSV, an unknown kind, a staff key.
    let (status, body) = csv(&app, &a.api_key, "classes", "name,form,level\n\"JSS,1\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = csv(&app, &a.api_key, "teachers", "name\nx\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let staff = chatbot::admin::create_api_key(db, "alpha", "office", &["staff".into()])
        .await
        .unwrap()
        .key;
    let (status, _) = csv(&app, &staff, "classes", "name,form,level\nX,Y,1\n").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        a.ctx.find::<class::Entity>().all(db).await.unwrap().len(),
        1
    );
    app.stop().await.unwrap();
}

async fn marks_and_attendance_import(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let (a, b) = app.two_schools().await;
    let db = &app.state.db;
    // Marks: the existing maths mark replaced, graded on the new total.
    let (status, body) = json_rows(
        &app,
        &a.api_key,
        "marks",
        json!([{"student_id": fixture::STUDENT_ID, "exam_session_id": a.exam_id, "subject": "MTH", "ca": 35, "exam": 50}]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let marks = a.ctx.find::<mark::Entity>().all(db).await.unwrap();
    let m = marks
        .iter()
        .find(|m| m.exam_session_id == a.exam_id)
        .unwrap();
    assert_eq!((m.total, m.grade.as_deref()), (Some(85.0), Some("A")));
    // Another school's session, an unknown subject, an impossible score: nothing written.
    let (status, body) = csv(
        &app,
        &a.api_key,
        "marks",
        &format!(
            "student_id,exam_session_id,subject,ca,exam\n\
             STU/001,{},MTH,10,10\n\
             STU/001,{},XYZ,10,10\n\
             STU/001,{},MTH,70,40\n",
            b.exam_id, a.exam_id, a.unreleased_exam_id
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let columns: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["column"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["exam_session_id", "subject", "exam"], "{body}");
    let beta_marks = b.ctx.find::<mark::Entity>().all(db).await.unwrap();
    assert!(beta_marks.iter().all(|m| m.total == Some(b.maths_total)));

    // Attendance: a new day and a changed one; days outside every term refused.
    let before = a
        .ctx
        .find::<attendance::Entity>()
        .all(db)
        .await
        .unwrap()
        .len();
    let (status, body) = csv(
        &app,
        &a.api_key,
        "attendance",
        "student_id,date,status\nSTU/001,2025-10-01,late\nSTU/001,2025-09-08,present\n",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["created"].as_u64(), body["updated"].as_u64()),
        (Some(1), Some(1)),
        "{body}"
    );
    assert_eq!(
        a.ctx
            .find::<attendance::Entity>()
            .all(db)
            .await
            .unwrap()
            .len(),
        before + 1
    );
    let (status, body) = csv(
        &app,
        &a.api_key,
        "attendance",
        "student_id,date,status\nSTU/001,2026-08-01,present\nSTU/001,2025-10-02,asleep\n",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let columns: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["column"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["date", "status"], "{body}");
    app.stop().await.unwrap();
}
