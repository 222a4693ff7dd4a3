//! A school brings itself live without touching the database: it registers its own WhatsApp
//! numbers (secrets sealed, never shown again), rotates and removes them, and parents' signed
//! webhooks reach it with the school's own secrets.

mod common;

use std::time::Duration;

use chatbot::channels::mock_graph::MockGraph;
use common::fixture::School;
use common::{TestApp, TestEnv, Variant, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

variants!(
    a_school_registers_its_numbers_and_parents_reach_it_with_its_secrets,
    numbers_are_one_schools_and_their_input_is_checked,
    a_school_enters_its_calendar_and_curriculum,
    stop_skips_a_parent_in_broadcasts_and_start_brings_them_back,
    broadcasts_outside_the_window_go_as_each_numbers_template,
    a_new_school_goes_live_from_an_empty_database,
    a_whole_year_loads_from_csv,
);

const PUBLIC: &str = "https://bot.example.org";
const META_WEBHOOK: &str = "/api/v1/chatbot/webhooks/whatsapp";
const TWILIO_WEBHOOK: &str = "/api/v1/chatbot/webhooks/twilio";

const ACCESS: &str = "EAAG-access-token-of-lagos-0001";
const APP_SECRET: &str = "app-secret-of-lagos-0123456789ab";
const VERIFY: &str = "verify-token-of-lagos-0001";
const NEW_APP_SECRET: &str = "app-secret-of-lagos-rotated-9999";
const AUTH: &str = "twilio-auth-token-of-lagos-00001";
const SID: &str = "AC0123456789abcdef0123456789abcdef";

async fn start(v: Variant) -> Option<(TestApp, MockGraph)> {
    let mut env = TestEnv::new(v).await?;
    let mock = MockGraph::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    env.settings.whatsapp.api_base = mock.base_url();
    env.settings.whatsapp.twilio_api_base = mock.base_url();
    env.settings.server.public_url = Some(PUBLIC.into());
    Some((env.start().await, mock))
}

fn meta_message(phone_number_id: &str, from_digits: &str, id: &str, text: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "2348011110000", "phone_number_id": phone_number_id},
            "contacts": [{"profile": {"name": "Parent"}, "wa_id": from_digits}],
            "messages": [{"from": from_digits, "id": id, "timestamp": "1763800000",
                          "type": "text", "text": {"body": text}}]
        }}]}]
    }))
    .unwrap()
}

async fn post_meta(app: &TestApp, body: &[u8], secret: &str) -> StatusCode {
    app.http
        .post(app.url(META_WEBHOOK))
        .header("content-type", "application/json")
        .header(
            "X-Hub-Signature-256",
            chatbot::channels::whatsapp_cloud::sign(body, secret),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
}

async fn post_twilio(app: &TestApp, to: &str, from: &str, sid: &str, token: &str) -> StatusCode {
    post_twilio_text(app, to, from, sid, "hi", token).await
}

async fn post_twilio_text(
    app: &TestApp,
    to: &str,
    from: &str,
    sid: &str,
    text: &str,
    token: &str,
) -> StatusCode {
    let params: Vec<(String, String)> = [
        ("MessageSid", sid),
        ("AccountSid", SID),
        ("From", &format!("whatsapp:{from}")),
        ("To", &format!("whatsapp:{to}")),
        ("Body", text),
        ("NumMedia", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // Signed and posted exactly as the school pastes `webhook_url` into Twilio's console.
    let url = format!("{PUBLIC}{TWILIO_WEBHOOK}");
    app.http
        .post(app.url(TWILIO_WEBHOOK))
        .header(
            "X-Twilio-Signature",
            chatbot::channels::twilio::sign(&url, &params, token),
        )
        .form(&params)
        .send()
        .await
        .unwrap()
        .status()
}

/// Every stored byte of the data database, as text (the SQLite file and its WAL, or every row
/// of `whatsapp_numbers` on PostgreSQL).
async fn stored_text(app: &TestApp) -> String {
    use sea_orm::{ConnectionTrait, Statement};
    let db = &app.state.db;
    let mut out = String::new();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT * FROM whatsapp_numbers",
        ))
        .await
        .unwrap();
    for row in rows {
        for column in row.column_names() {
            if let Ok(Some(v)) = row.try_get::<Option<String>>("", &column) {
                out.push_str(&v);
                out.push('\n');
            }
        }
    }
    if app.settings().storage.database_url.is_none() {
        for entry in std::fs::read_dir(&app.settings().storage.data_dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                out.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

fn assert_no_secret(what: &str, text: &str) {
    for s in [ACCESS, APP_SECRET, VERIFY, NEW_APP_SECRET, AUTH] {
        assert!(!text.contains(s), "{what} holds a secret in clear: {text}");
    }
}

async fn a_school_registers_its_numbers_and_parents_reach_it_with_its_secrets(v: Variant) {
    let Some((app, mock)) = start(v).await else {
        return;
    };
    let (a, _b): (School, School) = app.two_schools().await;
    let key = a.api_key.as_str();

    // Register the school's own Meta number.
    let (status, meta) = app
        .api(
            key,
            Method::POST,
            "/whatsapp-numbers/",
            Some(json!({"provider": "meta", "phone_number": "+2348011110000",
                        "phone_number_id": "777000111", "access_token": ACCESS,
                        "app_secret": APP_SECRET, "verify_token": VERIFY})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{meta}");
    assert_no_secret("the created number", &meta.to_string());
    assert_eq!(meta["provider"], "meta");
    assert_eq!(meta["access_token_last4"], "0001");
    assert_eq!(meta["app_secret_last4"], "89ab");
    assert_eq!(meta["webhook_url"], format!("{PUBLIC}{META_WEBHOOK}"));
    let meta_id = meta["id"].as_i64().unwrap();

    // Meta subscribes the webhook with the school's verify token.
    let r = app
        .http
        .get(app.url(&format!(
            "{META_WEBHOOK}?hub.mode=subscribe&hub.verify_token={VERIFY}&hub.challenge=42"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "42");

    // A parent writes to it: signed with the school's own app secret, answered from that
    // number with the school's own access token.
    let body = meta_message("777000111", "2348022220001", "wamid.golive.1", "hi");
    assert_eq!(post_meta(&app, &body, APP_SECRET).await, StatusCode::OK);
    let sent = eventually(
        "a reply from the new number",
        Duration::from_secs(30),
        || async {
            mock.received()
                .into_iter()
                .find(|r| r.phone_number_id == "777000111")
        },
    )
    .await;
    assert_eq!(sent.to(), "2348022220001");
    assert_eq!(
        sent.authorization.as_deref(),
        Some(&*format!("Bearer {ACCESS}"))
    );

    // Rotation: the new app secret signs from now on, the old one no longer does.
    let (status, rotated) = app
        .api(
            key,
            Method::PUT,
            &format!("/whatsapp-numbers/{meta_id}/"),
            Some(json!({"app_secret": NEW_APP_SECRET})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["app_secret_last4"], "9999");
    assert_eq!(rotated["access_token_last4"], "0001");
    assert!(rotated["secrets_updated_at"].is_string());
    let body = meta_message("777000111", "2348022220001", "wamid.golive.2", "menu");
    assert_eq!(
        post_meta(&app, &body, APP_SECRET).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(post_meta(&app, &body, NEW_APP_SECRET).await, StatusCode::OK);

    // Twilio: the same, with the school's own auth token.
    let (status, twilio) = app
        .api(
            key,
            Method::POST,
            "/whatsapp-numbers/",
            Some(json!({"provider": "twilio", "phone_number": "+14155550101",
                        "account_sid": SID, "auth_token": AUTH})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{twilio}");
    assert_eq!(twilio["webhook_url"], format!("{PUBLIC}{TWILIO_WEBHOOK}"));
    assert_eq!(twilio["auth_token_last4"], "0001");
    assert!(twilio.get("access_token_last4").is_none(), "{twilio}");
    let twilio_id = twilio["id"].as_i64().unwrap();
    assert_eq!(
        post_twilio(&app, "+14155550101", "+2348022220002", "SMgolive1", AUTH).await,
        StatusCode::OK
    );
    let sent = eventually("a reply over Twilio", Duration::from_secs(30), || async {
        mock.received()
            .into_iter()
            .find(|r| r.provider == "twilio" && r.to() == "2348022220002")
    })
    .await;
    assert_eq!(sent.phone_number_id, SID);

    // The list shows both, never a secret.
    let (status, list) = app.api(key, Method::GET, "/whatsapp-numbers/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_no_secret("the list", &list.to_string());
    let ids: Vec<i64> = list["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_i64().unwrap())
        .collect();
    assert!(ids.contains(&meta_id) && ids.contains(&twilio_id), "{list}");

    // The database holds every one of them sealed, none in clear.
    let stored = stored_text(&app).await;
    assert!(stored.contains(chatbot::crypto::SEALED_PREFIX));
    assert_no_secret("the database", &stored);

    // Removed: its webhooks are refused, nothing more is sent from it.
    let (status, _) = app
        .api(
            key,
            Method::DELETE,
            &format!("/whatsapp-numbers/{twilio_id}/"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_ne!(
        post_twilio(&app, "+14155550101", "+2348022220002", "SMgolive2", AUTH).await,
        StatusCode::OK
    );
    let (status, _) = app
        .api(
            key,
            Method::GET,
            &format!("/whatsapp-numbers/{twilio_id}/"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await.unwrap();
}

async fn numbers_are_one_schools_and_their_input_is_checked(v: Variant) {
    let Some((app, _mock)) = start(v).await else {
        return;
    };
    let (a, b) = app.two_schools().await;
    let meta = |phone: &str, id: &str| {
        json!({"provider": "meta", "phone_number": phone, "phone_number_id": id,
               "access_token": ACCESS, "app_secret": APP_SECRET, "verify_token": VERIFY})
    };
    let (status, body) = app
        .api(
            &a.api_key,
            Method::POST,
            "/whatsapp-numbers/",
            Some(meta("+2348011110000", "777000111")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The same number, or the same Meta id, for another school: a conflict that names no one.
    for (phone, id) in [
        ("+2348011110000", "777000222"),
        ("+2348011119999", "777000111"),
    ] {
        let (status, body) = app
            .api(
                &b.api_key,
                Method::POST,
                "/whatsapp-numbers/",
                Some(meta(phone, id)),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(body["message"].as_str().unwrap().contains("another school"));
        assert!(!body.to_string().contains("alpha"), "{body}");
    }
    // The fixture's own numbers (registered in the database) count too.
    let (status, _) = app
        .api(
            &b.api_key,
            Method::POST,
            "/whatsapp-numbers/",
            Some(
                json!({"provider": "twilio", "phone_number": a.twilio_number,
                        "account_sid": SID, "auth_token": AUTH}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Bad input: a clear 400, nothing stored.
    let before = chatbot::tenancy::numbers::of_school(&app.state.db, &b.ctx)
        .await
        .unwrap()
        .len();
    for bad in [
        json!({"provider": "meta", "phone_number": "+2348011112222", "phone_number_id": "777000333",
               "access_token": "short", "app_secret": APP_SECRET, "verify_token": VERIFY}),
        json!({"provider": "meta", "phone_number": "08011112222", "phone_number_id": "777000333",
               "access_token": ACCESS, "app_secret": APP_SECRET, "verify_token": VERIFY}),
        json!({"provider": "meta", "phone_number": "+2348011112222", "phone_number_id": "abc",
               "access_token": ACCESS, "app_secret": APP_SECRET, "verify_token": VERIFY}),
        json!({"provider": "meta", "phone_number": "+2348011112222"}),
        json!({"provider": "twilio", "phone_number": "+14155550199", "account_sid": "XX1",
               "auth_token": AUTH}),
        json!({"provider": "sms", "phone_number": "+14155550199"}),
        json!({"phone_number": "+14155550199"}),
    ] {
        let (status, body) = app
            .api(
                &b.api_key,
                Method::POST,
                "/whatsapp-numbers/",
                Some(bad.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} -> {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    assert_eq!(
        chatbot::tenancy::numbers::of_school(&app.state.db, &b.ctx)
            .await
            .unwrap()
            .len(),
        before
    );
    // Rotation takes only the number's provider's secrets, and at least one.
    let own = chatbot::tenancy::numbers::of_school(&app.state.db, &a.ctx)
        .await
        .unwrap();
    let meta_id = own
        .iter()
        .find(|n| n.phone_number == "+2348011110000")
        .unwrap()
        .id;
    for (bad, code) in [
        (json!({"auth_token": AUTH}), "wrong_provider"),
        (json!({}), "nothing_to_change"),
    ] {
        let (status, body) = app
            .api(
                &a.api_key,
                Method::PUT,
                &format!("/whatsapp-numbers/{meta_id}/"),
                Some(bad),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], code);
    }
    // Staff keys read school data but do not manage numbers.
    let staff = chatbot::admin::create_api_key(&app.state.db, "alpha", "staff", &["staff".into()])
        .await
        .unwrap();
    let (status, _) = app
        .api(&staff.key, Method::GET, "/whatsapp-numbers/", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.stop().await.unwrap();
}

/// `method path` with `key` and `body`, expecting `status`: the JSON answer.
async fn expect(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    status: StatusCode,
) -> Value {
    let (got, answer) = app.api(key, method.clone(), path, body).await;
    assert_eq!(got, status, "{method} {path}: {answer}");
    answer
}

async fn a_school_enters_its_calendar_and_curriculum(v: Variant) {
    let Some((app, _mock)) = start(v).await else {
        return;
    };
    let db = &app.state.db;
    chatbot::admin::create_tenant(
        db,
        "lagos-gs",
        "Lagos Grammar School",
        "Africa/Lagos",
        "en",
        vec![],
    )
    .await
    .unwrap();
    let admin = chatbot::admin::create_api_key(db, "lagos-gs", "it", &["admin".into()])
        .await
        .unwrap()
        .key;
    let staff = chatbot::admin::create_api_key(db, "lagos-gs", "office", &["staff".into()])
        .await
        .unwrap()
        .key;
    let k = admin.as_str();
    use Method as M;
    use StatusCode as S;

    // The year, current; a second one takes "current" over.
    let year = expect(&app, k, M::POST, "/academic-sessions/", Some(json!({"name": "2025/2026", "starts_on": "2025-09-08", "ends_on": "2026-07-24", "is_current": true})), S::CREATED).await;
    let year_id = year["id"].as_i64().unwrap();
    let old = expect(
        &app,
        k,
        M::POST,
        "/academic-sessions/",
        Some(json!({"name": "2024/2025", "starts_on": "2024-09-09", "ends_on": "2025-07-25"})),
        S::CREATED,
    )
    .await;
    assert_eq!(old["is_current"], false);
    expect(
        &app,
        k,
        M::POST,
        "/academic-sessions/",
        Some(json!({"name": "2025/2026", "starts_on": "2025-09-08", "ends_on": "2026-07-24"})),
        S::CONFLICT,
    )
    .await;
    expect(
        &app,
        k,
        M::POST,
        "/academic-sessions/",
        Some(json!({"name": "odd", "starts_on": "2026-09-08", "ends_on": "2026-07-24"})),
        S::BAD_REQUEST,
    )
    .await;
    let list = expect(&app, &staff, M::GET, "/academic-sessions/", None, S::OK).await;
    assert_eq!(list["count"], 2);
    assert_eq!(list["results"][0]["name"], "2025/2026");
    assert_eq!(list["results"][0]["is_current"], true);

    // Terms inside the year, not overlapping.
    let first = expect(&app, k, M::POST, "/terms/", Some(json!({"academic_session_id": year_id, "name": "First Term", "starts_on": "2025-09-08", "ends_on": "2025-12-12"})), S::CREATED).await;
    assert_eq!(first["ordinal"], 1);
    let term_id = first["id"].as_i64().unwrap();
    let second = expect(&app, k, M::POST, "/terms/", Some(json!({"academic_session_id": year_id, "name": "Second Term", "starts_on": "2026-01-05", "ends_on": "2026-04-02"})), S::CREATED).await;
    assert_eq!(second["ordinal"], 2);
    let e = expect(&app, k, M::POST, "/terms/", Some(json!({"academic_session_id": year_id, "name": "Overlap", "starts_on": "2025-12-01", "ends_on": "2025-12-20"})), S::CONFLICT).await;
    assert!(e["message"].as_str().unwrap().contains("First Term"), "{e}");
    expect(&app, k, M::POST, "/terms/", Some(json!({"academic_session_id": year_id, "name": "Outside", "starts_on": "2026-07-01", "ends_on": "2026-08-30"})), S::BAD_REQUEST).await;
    // The year cannot shrink past its terms, nor go while they hang on it.
    expect(&app, k, M::PUT, &format!("/academic-sessions/{year_id}/"), Some(json!({"name": "2025/2026", "starts_on": "2025-10-01", "ends_on": "2026-07-24", "is_current": true})), S::BAD_REQUEST).await;
    let e = expect(
        &app,
        k,
        M::DELETE,
        &format!("/academic-sessions/{year_id}/"),
        None,
        S::CONFLICT,
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("2 term(s)"), "{e}");

    // Classes with their student counts, subjects with unique codes.
    let class = expect(
        &app,
        k,
        M::POST,
        "/classes/",
        Some(json!({"name": "JSS 1A", "form": "JSS 1"})),
        S::CREATED,
    )
    .await;
    assert_eq!(class["level"], 1);
    assert_eq!(class["student_count"], 0);
    let class_id = class["id"].as_i64().unwrap();
    expect(
        &app,
        k,
        M::POST,
        "/classes/",
        Some(json!({"name": "JSS 1A", "form": "JSS 1"})),
        S::CONFLICT,
    )
    .await;
    let maths = expect(
        &app,
        k,
        M::POST,
        "/subjects/",
        Some(json!({"code": "mth", "name": "Mathematics"})),
        S::CREATED,
    )
    .await;
    assert_eq!(maths["code"], "MTH");
    let maths_id = maths["id"].as_i64().unwrap();
    expect(
        &app,
        k,
        M::POST,
        "/subjects/",
        Some(json!({"code": "MTH", "name": "Maths again"})),
        S::CONFLICT,
    )
    .await;
    expect(
        &app,
        k,
        M::POST,
        "/subjects/",
        Some(json!({"code": "M T H", "name": "Spaces"})),
        S::BAD_REQUEST,
    )
    .await;
    let english = expect(
        &app,
        k,
        M::POST,
        "/subjects/",
        Some(json!({"code": "ENG", "name": "English"})),
        S::CREATED,
    )
    .await;
    expect(
        &app,
        k,
        M::DELETE,
        &format!("/subjects/{}/", english["id"]),
        None,
        S::NO_CONTENT,
    )
    .await;

    // An exam session, unreleased, then released and withdrawn.
    let exam = expect(
        &app,
        k,
        M::POST,
        "/exam-sessions/",
        Some(json!({"term_id": term_id, "name": "First Term Examination"})),
        S::CREATED,
    )
    .await;
    assert_eq!(exam["released"], false);
    assert_eq!(exam["term"], "First Term");
    assert_eq!(exam["academic_session_id"], year_id);
    let exam_id = exam["id"].as_i64().unwrap();
    let released = expect(
        &app,
        &staff,
        M::GET,
        "/released-exam-sessions/",
        None,
        S::OK,
    )
    .await;
    assert_eq!(released, json!([]));

    // Students and marks arrive by import, against what the school entered.
    let students = "student_id,first_name,last_name,class,pin\nLGS/001,Ada,Obi,JSS 1A,4821\n";
    import(&app, k, "students", students).await;
    let marks =
        format!("student_id,exam_session_id,subject,ca,exam\nLGS/001,{exam_id},MTH,30,55\n");
    import(&app, k, "marks", &marks).await;
    let class = expect(
        &app,
        &staff,
        M::GET,
        &format!("/classes/{class_id}/"),
        None,
        S::OK,
    )
    .await;
    assert_eq!(class["student_count"], 1);

    let out = expect(
        &app,
        k,
        M::POST,
        &format!("/exam-sessions/{exam_id}/release/"),
        None,
        S::OK,
    )
    .await;
    assert_eq!(out["released"], true);
    assert!(out["released_at"].is_string());
    let released = expect(
        &app,
        &staff,
        M::GET,
        "/released-exam-sessions/",
        None,
        S::OK,
    )
    .await;
    assert_eq!(released[0]["id"], exam_id);
    let (status, got) = app
        .get_chatbot(
            k,
            json!({"student_id": "LGS/001", "pin": "4821", "exam_session_id": exam_id}),
        )
        .await;
    assert_eq!(status, S::OK, "{got}");
    assert!(got.to_string().contains("Mathematics"), "{got}");
    let out = expect(
        &app,
        k,
        M::POST,
        &format!("/exam-sessions/{exam_id}/unrelease/"),
        None,
        S::OK,
    )
    .await;
    assert_eq!(out["released"], false);
    let released = expect(
        &app,
        &staff,
        M::GET,
        "/released-exam-sessions/",
        None,
        S::OK,
    )
    .await;
    assert_eq!(released, json!([]));

    // What children's records hang on is not deleted by accident.
    for (path, needle) in [
        (format!("/subjects/{maths_id}/"), "1 mark(s)"),
        (format!("/exam-sessions/{exam_id}/"), "1 mark(s)"),
        (format!("/terms/{term_id}/"), "1 exam session(s)"),
        (format!("/classes/{class_id}/"), "1 student(s)"),
    ] {
        let e = expect(&app, k, M::DELETE, &path, None, S::CONFLICT).await;
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{path}: {e}"
        );
    }
    // Staff read, only admins write.
    expect(&app, &staff, M::GET, "/terms/", None, S::OK).await;
    expect(&app, &staff, M::GET, "/subjects/", None, S::OK).await;
    expect(
        &app,
        &staff,
        M::GET,
        "/exam-sessions/?released=false",
        None,
        S::OK,
    )
    .await;
    expect(
        &app,
        &staff,
        M::POST,
        "/subjects/",
        Some(json!({"code": "BIO", "name": "Biology"})),
        S::FORBIDDEN,
    )
    .await;
    expect(
        &app,
        &staff,
        M::POST,
        &format!("/exam-sessions/{exam_id}/release/"),
        None,
        S::FORBIDDEN,
    )
    .await;
    // Replacing keeps ids; the second term can go (nothing hangs on it).
    let renamed = expect(
        &app,
        k,
        M::PUT,
        &format!("/subjects/{maths_id}/"),
        Some(json!({"code": "MTH", "name": "General Mathematics"})),
        S::OK,
    )
    .await;
    assert_eq!(renamed["name"], "General Mathematics");
    expect(
        &app,
        k,
        M::DELETE,
        &format!("/terms/{}/", second["id"]),
        None,
        S::NO_CONTENT,
    )
    .await;
    expect(
        &app,
        k,
        M::GET,
        &format!("/terms/{}/", second["id"]),
        None,
        S::NOT_FOUND,
    )
    .await;
    app.stop().await.unwrap();
}

/// Broadcast notice `id` and wait for the job to finish: the job.
async fn broadcast(app: &TestApp, key: &str, notice: i64) -> Value {
    let path = format!("/notices/{notice}/broadcast/");
    let job = expect(app, key, Method::POST, &path, None, StatusCode::ACCEPTED).await;
    let id = job["id"].as_i64().unwrap();
    eventually(
        "the broadcast job done",
        Duration::from_secs(30),
        || async {
            let job = expect(
                app,
                key,
                Method::GET,
                &format!("/jobs/{id}/"),
                None,
                StatusCode::OK,
            )
            .await;
            (job["status"] == "done").then_some(job)
        },
    )
    .await
}

async fn stop_skips_a_parent_in_broadcasts_and_start_brings_them_back(v: Variant) {
    let Some((app, mock)) = start(v).await else {
        return;
    };
    let creds = chatbot::demo::seed(&app.state.db, &app.state.secret)
        .await
        .unwrap();
    let demo = &creds.tenants[0];
    let wa = &demo.whatsapp;
    let parent = demo.parent_with_children(1).unwrap();
    let digits = parent.phone.trim_start_matches('+').to_string();
    let key = demo.api_key.as_str();
    let say = |id: &str, text: &str| meta_message(&wa.phone_number_id, &digits, id, text);

    // The parent sends STOP: confirmed, and the contact is opted out, by the chat.
    assert_eq!(
        post_meta(&app, &say("wamid.stop.1", "STOP"), &wa.app_secret).await,
        StatusCode::OK
    );
    eventually("the opt-out confirmed", Duration::from_secs(30), || async {
        mock.received().into_iter().find(|r| {
            r.to() == digits
                && r.body
                    .to_string()
                    .contains("no longer receive announcements")
        })
    })
    .await;
    let contacts = expect(
        &app,
        key,
        Method::GET,
        &format!("/contacts/?phone=%2B{digits}"),
        None,
        StatusCode::OK,
    )
    .await;
    let contact = &contacts["results"][0];
    assert_eq!(contact["opted_in"], false, "{contacts}");
    assert_eq!(contact["opt_changed_by"], "chat");
    assert!(
        contact["students"]
            .as_array()
            .is_some_and(|s| !s.is_empty()),
        "{contact}"
    );
    assert_eq!(contact["last_message"]["direction"], "out");

    // A whole-school broadcast skips that phone and counts it.
    let notice = expect(
        &app,
        key,
        Method::POST,
        "/notices/",
        Some(json!({"title": "Sports day", "body": "Friday at 9."})),
        StatusCode::CREATED,
    )
    .await;
    let job = broadcast(&app, key, notice["id"].as_i64().unwrap()).await;
    assert_eq!(job["result"]["skipped"]["opted_out"], 1, "{job}");
    let recipients = expect(
        &app,
        key,
        Method::GET,
        &format!("/jobs/{}/recipients/?page_size=100", job["id"]),
        None,
        StatusCode::OK,
    )
    .await;
    let mine: Vec<&Value> = recipients["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["phone"] == parent.phone)
        .collect();
    assert_eq!(mine.len(), 1, "{recipients}");
    assert_eq!(mine[0]["status"], "skipped");
    assert_eq!(mine[0]["error"], "opted_out");
    // The bot still answers the parent's own messages.
    let before = mock.received().len();
    assert_eq!(
        post_meta(&app, &say("wamid.stop.2", "menu"), &wa.app_secret).await,
        StatusCode::OK
    );
    eventually("the menu answered", Duration::from_secs(30), || async {
        mock.received()
            .into_iter()
            .skip(before)
            .find(|r| r.to() == digits)
    })
    .await;
    // A contacts import cannot undo the parent's STOP.
    import(
        &app,
        key,
        "contacts",
        &format!("phone,opted_in\n{},true\n", parent.phone),
    )
    .await;
    let contacts = expect(
        &app,
        key,
        Method::GET,
        &format!("/contacts/?phone=%2B{digits}"),
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(contacts["results"][0]["opted_in"], false);

    // START: opted in again, and the next broadcast reaches the parent.
    assert_eq!(
        post_meta(&app, &say("wamid.stop.3", "start"), &wa.app_secret).await,
        StatusCode::OK
    );
    eventually("opted in again", Duration::from_secs(30), || async {
        let c = expect(
            &app,
            key,
            Method::GET,
            &format!("/contacts/?phone=%2B{digits}"),
            None,
            StatusCode::OK,
        )
        .await;
        (c["results"][0]["opted_in"] == true).then_some(())
    })
    .await;
    let notice = expect(
        &app,
        key,
        Method::POST,
        "/notices/",
        Some(json!({"title": "Open day", "body": "Saturday."})),
        StatusCode::CREATED,
    )
    .await;
    let job = broadcast(&app, key, notice["id"].as_i64().unwrap()).await;
    assert_eq!(job["result"]["skipped"]["opted_out"], 0, "{job}");
    eventually(
        "the second broadcast reaches the parent",
        Duration::from_secs(30),
        || async {
            mock.received()
                .into_iter()
                .any(|r| r.to() == digits && r.body.to_string().contains("Open day"))
                .then_some(())
        },
    )
    .await;
    // The first one, sent while the parent had opted out, never reached them.
    assert!(
        !mock
            .received()
            .into_iter()
            .any(|r| r.to() == digits && r.body.to_string().contains("Sports day"))
    );
    // Staff can change it too, recorded with their credential.
    let id = contacts["results"][0]["id"].as_i64().unwrap();
    let changed = expect(
        &app,
        key,
        Method::PUT,
        &format!("/contacts/{id}/"),
        Some(json!({"opted_in": false})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(changed["opted_in"], false);
    assert!(
        changed["opt_changed_by"]
            .as_str()
            .unwrap()
            .starts_with("api:key:"),
        "{changed}"
    );
    app.stop().await.unwrap();
}

async fn broadcasts_outside_the_window_go_as_each_numbers_template(v: Variant) {
    let Some((app, mock)) = start(v).await else {
        return;
    };
    let creds = chatbot::demo::seed(&app.state.db, &app.state.secret)
        .await
        .unwrap();
    let demo = &creds.tenants[0];
    let key = demo.api_key.as_str();
    let numbers = expect(
        &app,
        key,
        Method::GET,
        "/whatsapp-numbers/",
        None,
        StatusCode::OK,
    )
    .await;
    let meta = numbers["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["provider"] == "meta" && n["shared"] == false)
        .unwrap()
        .clone();
    let path = format!("/whatsapp-numbers/{}/", meta["id"]);
    // A template of the other provider, or a bad name, is refused and changes nothing.
    for bad in [
        json!({"content_sid": "HX0123456789abcdef0123456789abcdef"}),
        json!({"name": "School Notice", "language": "en"}),
        json!({"name": "school_notice"}),
    ] {
        expect(
            &app,
            key,
            Method::PUT,
            &path,
            Some(json!({"broadcast_template": bad})),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    let template = json!({"name": "school_notice", "language": "en_GB",
                          "parameters": ["school_name", "notice_title", "notice_summary"]});
    let out = expect(
        &app,
        key,
        Method::PUT,
        &path,
        Some(json!({"broadcast_template": template})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(out["broadcast_template"], template);
    assert_eq!(
        out["app_secret_last4"], meta["app_secret_last4"],
        "secrets untouched"
    );

    // No demo parent has written: every one is outside the window and gets the template.
    let body = "Sports day is on Friday,\n\nfrom 9 am on the main field. Parents are welcome to come and cheer for their children.";
    let notice = expect(
        &app,
        key,
        Method::POST,
        "/notices/",
        Some(json!({"title": "Sports day", "body": body})),
        StatusCode::CREATED,
    )
    .await;
    let job = broadcast(&app, key, notice["id"].as_i64().unwrap()).await;
    let recipients = job["result"]["recipients"].as_u64().unwrap() as usize;
    assert!(recipients > 0, "{job}");
    let sent = eventually(
        "every recipient's template",
        Duration::from_secs(30),
        || async {
            let got: Vec<Value> = mock
                .received()
                .into_iter()
                .filter(|r| r.body["type"] == "template")
                .map(|r| r.body)
                .collect();
            (got.len() >= recipients).then_some(got)
        },
    )
    .await;
    assert_eq!(sent.len(), recipients);
    let t = &sent[0]["template"];
    assert_eq!(t["name"], "school_notice");
    assert_eq!(t["language"]["code"], "en_GB");
    let params: Vec<&str> = t["components"][0]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["text"].as_str().unwrap())
        .collect();
    assert_eq!(t["components"][0]["type"], "body");
    assert_eq!(params[0], creds.tenants[0].name);
    assert_eq!(params[1], "Sports day");
    // The summary: one line, at most 100 characters, ending in an ellipsis when cut.
    assert!(
        params[2].starts_with("Sports day is on Friday, from 9 am"),
        "{}",
        params[2]
    );
    assert!(
        params[2].chars().count() <= 100 && params[2].ends_with('…'),
        "{}",
        params[2]
    );
    assert!(!params[2].contains('\n'));

    // Twilio: a school with only a Twilio number, its Content SID and variables.
    let db = &app.state.db;
    chatbot::admin::create_tenant(
        db,
        "lagos-gs",
        "Lagos Grammar School",
        "Africa/Lagos",
        "en",
        vec![],
    )
    .await
    .unwrap();
    let k = chatbot::admin::create_api_key(db, "lagos-gs", "it", &["admin".into()])
        .await
        .unwrap()
        .key;
    let sid = "HX0123456789abcdef0123456789abcdef";
    expect(&app, &k, Method::POST, "/whatsapp-numbers/", Some(json!({"provider": "twilio", "phone_number": "+14155550101",
        "account_sid": SID, "auth_token": AUTH,
        "broadcast_template": {"content_sid": sid, "parameters": ["notice_title", "school_name"]}})), StatusCode::CREATED).await;
    import(&app, &k, "contacts", "phone\n+2348077770001\n").await;
    let notice = expect(
        &app,
        &k,
        Method::POST,
        "/notices/",
        Some(json!({"title": "Resumption", "body": "School resumes on Monday."})),
        StatusCode::CREATED,
    )
    .await;
    broadcast(&app, &k, notice["id"].as_i64().unwrap()).await;
    let form = eventually("the Twilio template", Duration::from_secs(30), || async {
        mock.received()
            .into_iter()
            .find(|r| r.provider == "twilio" && r.to() == "2348077770001")
            .map(|r| r.body)
    })
    .await;
    assert_eq!(form["ContentSid"], sid, "{form}");
    let variables: Value =
        serde_json::from_str(form["ContentVariables"].as_str().unwrap()).unwrap();
    assert_eq!(
        variables,
        json!({"1": "Resumption", "2": "Lagos Grammar School"})
    );
    assert!(form.get("Body").is_none(), "{form}");
    app.stop().await.unwrap();
}

/// The `chatbot` binary against the running app's database, with its server secret.
fn operator(app: &TestApp, args: &[&str]) -> String {
    let settings = app.settings();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_chatbot"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CHATBOT_DATA_DIR", &settings.storage.data_dir)
        .env("CHATBOT_LOG", "warn")
        .env("CHATBOT_PUBLIC_URL", PUBLIC)
        .env(
            "CHATBOT_SECRET_KEY",
            secrecy::ExposeSecret::expose_secret(settings.secrets.secret_key.as_ref().unwrap()),
        );
    if let Some(url) = &settings.storage.database_url {
        cmd.env("DATABASE_URL", url.expose());
    }
    let out = cmd.args(args).output().unwrap();
    assert!(
        out.status.success(),
        "chatbot {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `POST imports/{kind}/` with CSV, which must be taken.
async fn import(app: &TestApp, key: &str, kind: &str, csv: &str) {
    let (status, answer) = import_csv(app, key, kind, csv).await;
    assert!(status.is_success(), "{kind}: {answer}");
}

/// The parent's results, however many taps it takes: `send(text)` delivers a message, and
/// `answers()` is what reached the parent so far.
async fn ask_results<S, SF, A>(prefix: &str, send: S, answers: A) -> String
where
    S: Fn(String, String) -> SF,
    SF: std::future::Future<Output = StatusCode>,
    A: Fn() -> Vec<String>,
{
    let mut n = 0;
    for text in ["hi", "results", "1", "1"] {
        n += 1;
        let before = answers().len();
        assert_eq!(
            send(format!("{prefix}-{n}"), text.to_string()).await,
            StatusCode::OK
        );
        let got = eventually(
            &format!("an answer to `{text}`"),
            Duration::from_secs(30),
            || {
                let all = answers();
                async move { (all.len() > before).then_some(all) }
            },
        )
        .await;
        if let Some(r) = got.iter().find(|a| a.contains("Mathematics")) {
            return r.clone();
        }
    }
    panic!("no results reached the parent: {:?}", answers());
}

async fn a_new_school_goes_live_from_an_empty_database(v: Variant) {
    let Some((app, mock)) = start(v).await else {
        return;
    };
    // The operator: the school, its admin key, its two numbers (CLI).
    operator(
        &app,
        &[
            "tenant",
            "create",
            "--schema",
            "lagos-gs",
            "--name",
            "Lagos Grammar School",
            "--time-zone",
            "Africa/Lagos",
        ],
    );
    let key = operator(
        &app,
        &[
            "apikey",
            "create",
            "--tenant",
            "lagos-gs",
            "--name",
            "school IT",
        ],
    );
    let k = key.trim();
    operator(
        &app,
        &[
            "number",
            "add",
            "--tenant",
            "lagos-gs",
            "--meta",
            "--phone",
            "+2348011110000",
            "--phone-number-id",
            "777000111",
            "--access-token",
            ACCESS,
            "--app-secret",
            APP_SECRET,
            "--verify-token",
            VERIFY,
        ],
    );
    operator(
        &app,
        &[
            "number",
            "add",
            "--tenant",
            "lagos-gs",
            "--twilio",
            "--phone",
            "+14155550101",
            "--account-sid",
            SID,
            "--auth-token",
            AUTH,
        ],
    );
    let status = operator(
        &app,
        &["tenant", "status", "--tenant", "lagos-gs", "--json"],
    );
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["ready"], false);
    assert_eq!(status["steps"][0]["done"], true, "{status}");

    // The school's IT person, over HTTP only.
    use Method as M;
    use StatusCode as S;
    // A year and a term around today, whatever day the test runs.
    let today = chrono::Utc::now().date_naive();
    let day = |offset: i64| (today + chrono::Duration::days(offset)).to_string();
    let year = expect(&app, k, M::POST, "/academic-sessions/", Some(json!({"name": "This year", "starts_on": day(-120), "ends_on": day(240), "is_current": true})), S::CREATED).await;
    let term = expect(
        &app,
        k,
        M::POST,
        "/terms/",
        Some(
            json!({"academic_session_id": year["id"], "name": "Third Term",
        "starts_on": day(-30), "ends_on": day(30)}),
        ),
        S::CREATED,
    )
    .await;
    expect(
        &app,
        k,
        M::POST,
        "/classes/",
        Some(json!({"name": "JSS 1A", "form": "JSS 1"})),
        S::CREATED,
    )
    .await;
    expect(
        &app,
        k,
        M::POST,
        "/subjects/",
        Some(json!({"code": "MTH", "name": "Mathematics"})),
        S::CREATED,
    )
    .await;
    let exam = expect(
        &app,
        k,
        M::POST,
        "/exam-sessions/",
        Some(json!({"term_id": term["id"], "name": "Third Term Examination"})),
        S::CREATED,
    )
    .await;
    let exam_id = exam["id"].as_i64().unwrap();
    import(
        &app,
        k,
        "students",
        "student_id,first_name,last_name,class,pin\nLGS/001,Ada,Obi,JSS 1A,4821\n",
    )
    .await;
    import(
        &app,
        k,
        "mappings",
        "phone,student_id\n+2348022220001,LGS/001\n+2348022220002,LGS/001\n",
    )
    .await;
    import(
        &app,
        k,
        "marks",
        &format!("student_id,exam_session_id,subject,ca,exam\nLGS/001,{exam_id},MTH,31,56\n"),
    )
    .await;
    expect(
        &app,
        k,
        M::POST,
        &format!("/exam-sessions/{exam_id}/release/"),
        None,
        S::OK,
    )
    .await;
    expect(
        &app,
        k,
        M::POST,
        "/welcome-messages/",
        Some(json!({"body": "Welcome to Lagos Grammar School."})),
        S::CREATED,
    )
    .await;

    // A parent on Meta, signed with the school's own app secret.
    let answers_to = |digits: &'static str| {
        let mock = mock.clone();
        move || {
            mock.received()
                .into_iter()
                .filter(|r| r.to() == digits)
                .map(|r| r.body.to_string())
                .collect::<Vec<_>>()
        }
    };
    let results = ask_results(
        "wamid.golive",
        |id, text| {
            let app = &app;
            async move {
                post_meta(
                    app,
                    &meta_message("777000111", "2348022220001", &id, &text),
                    APP_SECRET,
                )
                .await
            }
        },
        answers_to("2348022220001"),
    )
    .await;
    assert!(
        results.contains("Ada Obi") && results.contains("87"),
        "{results}"
    );
    // And one on Twilio, signed with the school's own auth token.
    let results = ask_results(
        "SMgolive",
        |id, text| {
            let app = &app;
            async move {
                post_twilio_text(app, "+14155550101", "+2348022220002", &id, &text, AUTH).await
            }
        },
        answers_to("2348022220002"),
    )
    .await;
    assert!(
        results.contains("Ada Obi") && results.contains("87"),
        "{results}"
    );
    // What is left: broadcast templates for the two numbers.
    let status = expect(&app, k, M::GET, "/setup-status/", None, S::OK).await;
    let missing: Vec<&str> = status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["done"] == false)
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(missing, ["broadcast_templates"], "{status}");
    app.stop().await.unwrap();
}

/// `POST imports/{kind}/` with CSV: the status and the JSON answer.
async fn import_csv(app: &TestApp, key: &str, kind: &str, csv: &str) -> (StatusCode, Value) {
    let r = app
        .http
        .post(app.url(&format!("/api/v1/chatbot/imports/{kind}/")))
        .header("X-API-KEY", key)
        .header("Content-Type", "text/csv")
        .body(csv.to_string())
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn a_whole_year_loads_from_csv(v: Variant) {
    let Some((app, _mock)) = start(v).await else {
        return;
    };
    let db = &app.state.db;
    chatbot::admin::create_tenant(
        db,
        "lagos-gs",
        "Lagos Grammar School",
        "Africa/Lagos",
        "en",
        vec![],
    )
    .await
    .unwrap();
    let key = chatbot::admin::create_api_key(db, "lagos-gs", "it", &["admin".into()])
        .await
        .unwrap()
        .key;
    let k = key.as_str();
    expect(&app, k, Method::POST, "/academic-sessions/", Some(json!({"name": "2025/2026", "starts_on": "2025-09-08", "ends_on": "2026-07-24", "is_current": true})), StatusCode::CREATED).await;

    let (status, out) = import_csv(
        &app,
        k,
        "subjects",
        "code,name\nmth,Mathematics\nENG,English Language\n",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["created"], 2);
    let terms = "academic_session,name,starts_on,ends_on\n\
                 2025/2026,First Term,2025-09-08,2025-12-12\n\
                 2025/2026,Second Term,2026-01-05,2026-04-02\n\
                 2025/2026,Third Term,2026-04-20,2026-07-24\n";
    let (status, out) = import_csv(&app, k, "terms", terms).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["created"], 3);
    let exams = "academic_session,term,name,released\n\
                 2025/2026,First Term,First Term Examination,true\n\
                 2025/2026,Second Term,Second Term Examination,false\n";
    let (status, out) = import_csv(&app, k, "exam-sessions", exams).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["created"], 2);
    let released = expect(
        &app,
        k,
        Method::GET,
        "/released-exam-sessions/",
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(released.as_array().unwrap().len(), 1);
    assert_eq!(released[0]["name"], "First Term Examination");

    // Loading the same year again changes what differs and creates nothing.
    let (status, out) =
        import_csv(&app, k, "terms", &terms.replace("2025-12-12", "2025-12-19")).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(
        (out["created"].as_u64(), out["updated"].as_u64()),
        (Some(0), Some(3))
    );
    let list = expect(&app, k, Method::GET, "/terms/", None, StatusCode::OK).await;
    assert_eq!(list["count"], 3);

    // Any bad row and nothing is written; each problem named by row and column.
    let bad = "academic_session,name,starts_on,ends_on\n\
               2025/2026,Mid-year,2026-02-01,2026-02-10\n\
               2024/2025,Old Term,2024-09-09,2024-12-13\n\
               2025/2026,Holiday Club,2026-07-27,2026-08-14\n\
               2025/2026,Extra,not a date,2026-08-14\n";
    let (status, out) = import_csv(&app, k, "terms", bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{out}");
    let rows: Vec<u64> = out["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, [2, 3, 4, 5], "{out}");
    assert!(
        out.to_string().contains("Second Term"),
        "the overlap is named: {out}"
    );
    let list = expect(&app, k, Method::GET, "/terms/", None, StatusCode::OK).await;
    assert_eq!(list["count"], 3, "nothing written");
    let (status, out) = import_csv(
        &app,
        k,
        "exam-sessions",
        "academic_session,term,name\n2025/2026,Fourth Term,X\n",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{out}");
    assert_eq!(out["errors"][0]["column"], "term");
    let (status, out) = import_csv(
        &app,
        k,
        "subjects",
        "code,name\nM T H,Maths\nENG,English\nENG,Again\n",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{out}");
    assert_eq!(out["errors"].as_array().unwrap().len(), 2, "{out}");
    app.stop().await.unwrap();
}
