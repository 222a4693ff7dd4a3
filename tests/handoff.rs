//! Staff stepping in: a parent who asks for a person, or whom the bot could not answer twice in
//! a row, waits for staff; the bot then says nothing (the parent's messages are logged for
//! staff); staff take the conversation over, answer it through the deliver step (exactly once,
//! also when the reply's job runs twice), and hand it back to the bot. Signed webhooks in, the
//! mock Graph API out, the REST API between, on both backends.

mod common;

use std::time::Duration;

use chatbot::channels::mock_graph::MockGraph;
use chatbot::demo::DemoTenant;
use chatbot::entities::{conversation_action, message_log};
use chatbot::pipeline::deliver::SendJob;
use common::{TestApp, Variant, eventually};
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};

variants!(
    a_parent_who_asks_for_a_person_is_answered_by_staff,
    two_messages_nothing_could_answer_go_to_staff,
    the_school_sets_its_hours_and_whether_menu_reaches_the_bot,
    staff_send_a_document_by_its_link,
);

/// What the mock Graph API received, once it has `n` messages: their texts.
async fn texts_at_graph(mock: &MockGraph, n: usize) -> Vec<String> {
    eventually(
        &format!("{n} messages at the Graph API"),
        Duration::from_secs(30),
        || async {
            let got = mock.received();
            (got.len() >= n).then(|| {
                got.iter()
                    .map(|r| {
                        let b = &r.body;
                        b["text"]["body"]
                            .as_str()
                            .or(b["interactive"]["body"]["text"].as_str())
                            .unwrap_or_default()
                            .to_string()
                    })
                    .collect()
            })
        },
    )
    .await
}

/// The parent's inbound messages in the transcript, as the API shows them.
async fn transcript(app: &TestApp, school: &DemoTenant, id: i64) -> Vec<Value> {
    let (status, page) = app
        .api(
            &school.api_key,
            reqwest::Method::GET,
            &format!("/conversations/{id}/messages/?page_size=100"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["results"].as_array().unwrap().clone()
}

fn digits_of(school: &DemoTenant) -> String {
    school
        .parent_with_children(1)
        .unwrap()
        .phone
        .trim_start_matches('+')
        .to_string()
}

async fn a_parent_who_asks_for_a_person_is_answered_by_staff(v: Variant) {
    use reqwest::Method;
    let Some((app, mock, creds)) = TestApp::with_demo_and_graph(v).await else {
        return;
    };
    let school = &creds.tenants[0];
    let other = &creds.tenants[1];
    let wa = &school.whatsapp;
    let digits = digits_of(school);
    app.parent_says(wa, &digits, "wamid.h1", "hi").await;
    let before = texts_at_graph(&mock, 2).await.len();
    app.parent_says(wa, &digits, "wamid.h2", "I want to talk to a real person")
        .await;
    let sent = texts_at_graph(&mock, before + 1).await;
    assert!(sent[before].contains("will reply here"), "{sent:?}");
    assert!(
        sent[before].contains("+234"),
        "the school's contact too: {sent:?}"
    );

    // Waiting: listed for staff, and only for this school's staff.
    let (status, page) = app
        .api(
            &school.api_key,
            Method::GET,
            "/conversations/?status=waiting",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let listed = page["results"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{page}");
    assert_eq!(listed[0]["phone"], format!("+{digits}"));
    let id = listed[0]["id"].as_i64().unwrap();
    let (_, theirs) = app
        .api(
            &other.api_key,
            Method::GET,
            "/conversations/?status=waiting",
            None,
        )
        .await;
    assert_eq!(theirs["count"], 0, "{theirs}");
    // With the children linked to the phone and the last message; found by child.
    let child = &school.parent_with_children(1).unwrap().student_ids[0];
    let (_, one) = app
        .api(
            &school.api_key,
            Method::GET,
            &format!("/conversations/{id}/"),
            None,
        )
        .await;
    assert_eq!(one["children"][0]["student_id"], child.as_str(), "{one}");
    assert_eq!(one["last_message"]["direction"], "out", "{one}");
    assert!(
        listed[0]["last_message"]["preview"]
            .as_str()
            .unwrap()
            .contains("will reply here")
    );
    let (_, by_child) = app
        .api(
            &school.api_key,
            Method::GET,
            &format!("/conversations/?student_id={child}"),
            None,
        )
        .await;
    assert_eq!(by_child["count"], 1, "{by_child}");
    let someone_else = school
        .students
        .iter()
        .find(|s| s.student_id != *child)
        .unwrap();
    let (_, none) = app
        .api(
            &school.api_key,
            Method::GET,
            &format!("/conversations/?student_id={}", someone_else.student_id),
            None,
        )
        .await;
    assert_eq!(none["count"], 0, "{none}");
    let (status, _) = app
        .api(
            &other.api_key,
            Method::GET,
            &format!("/conversations/?student_id={child}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another school's child");
    let (status, _) = app
        .api(
            &other.api_key,
            Method::GET,
            &format!("/conversations/{id}/"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .api(
            &other.api_key,
            Method::POST,
            &format!("/conversations/{id}/takeover/"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // While waiting the bot says nothing; what the parent writes is there for staff, a PIN
    // masked.
    app.parent_says(wa, &digits, "wamid.h3", "hello? my pin is 4821")
        .await;
    let logged = eventually(
        "the message in the transcript",
        Duration::from_secs(30),
        || async {
            let t = transcript(&app, school, id).await;
            t.iter()
                .find(|m| {
                    m["direction"] == "in" && m["body"].as_str().unwrap().starts_with("hello?")
                })
                .cloned()
        },
    )
    .await;
    assert!(
        !logged["body"].as_str().unwrap().contains("4821"),
        "{logged}"
    );
    assert_eq!(
        mock.count(),
        before + 1,
        "the bot stays silent while staff are awaited"
    );
    // Staff cannot answer before taking it over.
    let (status, _) = app
        .api(
            &school.api_key,
            Method::POST,
            &format!("/conversations/{id}/reply/"),
            Some(json!({"text": "hi"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Take over, answer.
    let (status, c) = app
        .api(
            &school.api_key,
            Method::POST,
            &format!("/conversations/{id}/takeover/"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "staff");
    assert!(c["assignee"].as_str().unwrap().starts_with("key:"), "{c}");
    let (status, queued) = app
        .api(
            &school.api_key,
            Method::POST,
            &format!("/conversations/{id}/reply/"),
            Some(json!({"text": "Good morning, this is Mrs Ade from the office."})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["from_staff"], true);
    let sent = texts_at_graph(&mock, before + 2).await;
    assert_eq!(
        sent[before + 1],
        "Good morning, this is Mrs Ade from the office."
    );

    // The reply's job run again (a worker died after sending): not sent twice.
    let db = &app.state.db;
    let row = message_log::Entity::find()
        .filter(message_log::Column::Body.eq("Good morning, this is Mrs Ade from the office."))
        .one(db)
        .await
        .unwrap()
        .unwrap();
    let key = row.reply_to.clone().unwrap();
    assert!(key.starts_with("staff:"), "{key}");
    let again = SendJob {
        provider: "meta".into(),
        business: wa.phone_number_id.clone(),
        to: digits.clone(),
        replies: vec![chatbot::conversation::Reply::text(
            "Good morning, this is Mrs Ade from the office.",
        )],
        reply_to: key,
        conversation: None,
        seq: 0,
        tenant: Some(school.schema_name.clone()),
        inbound_at: None,
        notice: None,
        done: Vec::new(),
    };
    app.state.queue.push(again).await.unwrap();
    let (status, _) = app
        .api(
            &school.api_key,
            Method::POST,
            &format!("/conversations/{id}/reply/"),
            Some(json!({"text": "Second note."})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    texts_at_graph(&mock, before + 3).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let sent = texts_at_graph(&mock, before + 3).await;
    assert_eq!(sent.len(), before + 3, "each staff reply once: {sent:?}");
    eventually(
        "the staff reply stamped as sent",
        Duration::from_secs(30),
        || async {
            let t = transcript(&app, school, id).await;
            t.iter()
                .any(|m| m["from_staff"] == true && m["status"] == "sent")
                .then_some(())
        },
    )
    .await;

    // Still with staff: the parent's answer is logged, not answered by the bot.
    app.parent_says(wa, &digits, "wamid.h4", "thank you madam")
        .await;
    eventually(
        "the thanks in the transcript",
        Duration::from_secs(30),
        || async {
            transcript(&app, school, id)
                .await
                .iter()
                .any(|m| m["body"] == "thank you madam")
                .then_some(())
        },
    )
    .await;
    assert_eq!(mock.count(), before + 3);

    // Released: the bot answers again.
    let (status, c) = app
        .api(
            &school.api_key,
            Method::POST,
            &format!("/conversations/{id}/release/"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "bot");
    app.parent_says(wa, &digits, "wamid.h5", "menu").await;
    texts_at_graph(&mock, before + 4).await;

    // Every move is recorded: who, when.
    let actions: Vec<(String, String)> = conversation_action::Entity::find()
        .order_by_asc(conversation_action::Column::Id)
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.action, a.actor))
        .collect();
    let names: Vec<&str> = actions.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        names,
        ["escalated", "takeover", "reply", "reply", "release"],
        "{actions:?}"
    );
    assert_eq!(actions[0].1, "parent");
    assert!(
        actions[1..].iter().all(|(_, who)| who.starts_with("key:")),
        "{actions:?}"
    );
    app.stop().await.unwrap();
    mock.stop();
}

async fn two_messages_nothing_could_answer_go_to_staff(v: Variant) {
    let Some((app, mock, creds)) = TestApp::with_demo_and_graph(v).await else {
        return;
    };
    let school = &creds.tenants[0];
    let wa = &school.whatsapp;
    let digits = digits_of(school);
    app.parent_says(wa, &digits, "wamid.u1", "hi").await;
    let n = texts_at_graph(&mock, 2).await.len();
    app.parent_says(wa, &digits, "wamid.u2", "zorblax quintessent vorp")
        .await;
    let sent = texts_at_graph(&mock, n + 1).await;
    assert!(sent[n].contains("did not understand"), "{sent:?}");
    // Something the rules answer in between starts the count again.
    app.parent_says(wa, &digits, "wamid.u3", "menu").await;
    let n = texts_at_graph(&mock, n + 2).await.len();
    app.parent_says(wa, &digits, "wamid.u4", "flibbertigibbet zonk")
        .await;
    let n = texts_at_graph(&mock, n + 1).await.len();
    let (_, page) = app
        .api(
            &school.api_key,
            reqwest::Method::GET,
            "/conversations/?status=waiting",
            None,
        )
        .await;
    assert_eq!(
        page["count"], 0,
        "one unanswered message is not enough: {page}"
    );
    app.parent_says(wa, &digits, "wamid.u5", "grobnitz wibble")
        .await;
    let sent = texts_at_graph(&mock, n + 1).await;
    assert!(sent[n].contains("will reply here"), "{sent:?}");
    let (_, page) = app
        .api(
            &school.api_key,
            reqwest::Method::GET,
            "/conversations/?status=waiting",
            None,
        )
        .await;
    assert_eq!(page["count"], 1, "{page}");
    let action = conversation_action::Entity::find()
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (action.action.as_str(), action.actor.as_str()),
        ("escalated", "bot")
    );
    assert_eq!(action.detail.as_deref(), Some("unanswered"));
    app.stop().await.unwrap();
    mock.stop();
}

async fn the_school_sets_its_hours_and_whether_menu_reaches_the_bot(v: Variant) {
    use reqwest::Method;
    let Some((app, mock, creds)) = TestApp::with_demo_and_graph(v).await else {
        return;
    };
    let school = &creds.tenants[0];
    let wa = &school.whatsapp;
    let digits = digits_of(school);
    let (status, before) = app
        .api(&school.api_key, Method::GET, "/school/", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{before}");
    assert_eq!(before["schema_name"], school.schema_name);
    assert_eq!(before["menu_during_handoff"], true, "on by default");

    // Wrong values are refused and change nothing.
    for (body, code) in [
        (
            json!({"contact_email": "office at school"}),
            "invalid_email",
        ),
        (json!({"default_language": "de"}), "invalid_language"),
        (json!({"contact_phone": "12"}), "invalid_phone"),
        (json!({"name": "  "}), "invalid_name"),
        (
            json!({"office_hours": "x", "time_zone": "Lagos time!"}),
            "invalid_time_zone",
        ),
    ] {
        let (status, err) = app
            .api(
                &school.api_key,
                Method::PATCH,
                "/school/",
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert_eq!(err["error"], code, "{body}: {err}");
    }
    let (_, same) = app
        .api(&school.api_key, Method::GET, "/school/", None)
        .await;
    assert_eq!(same, before);

    let (status, set) = app
        .api(
            &school.api_key,
            Method::PATCH,
            "/school/",
            Some(
                json!({"office_hours": "Monday to Friday, 8am to 4pm", "menu_during_handoff": false,
                    "motto": null}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set["office_hours"], "Monday to Friday, 8am to 4pm");
    assert_eq!(set["name"], before["name"], "fields left out stay");
    assert!(set.get("motto").is_none(), "null clears: {set}");

    // The parent is told the hours.
    app.parent_says(wa, &digits, "wamid.s1", "hi").await;
    let n = texts_at_graph(&mock, 2).await.len();
    app.parent_says(wa, &digits, "wamid.s2", "can I speak to a human")
        .await;
    let sent = texts_at_graph(&mock, n + 1).await;
    assert!(
        sent[n].contains("office hours: Monday to Friday, 8am to 4pm"),
        "{sent:?}"
    );
    let id = app.waiting_conversation(&school.api_key).await;

    // The school does not let `menu` through: logged for staff, not answered.
    app.parent_says(wa, &digits, "wamid.s3", "menu").await;
    eventually(
        "the menu request logged",
        Duration::from_secs(30),
        || async {
            transcript(&app, school, id)
                .await
                .iter()
                .any(|m| m["body"] == "menu")
                .then_some(())
        },
    )
    .await;
    assert_eq!(mock.count(), n + 1, "the bot stays silent");

    // Now it does: the menu is answered and the conversation is the bot's again.
    let (status, _) = app
        .api(
            &school.api_key,
            Method::PATCH,
            "/school/",
            Some(json!({"menu_during_handoff": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.parent_says(wa, &digits, "wamid.s4", "Menu").await;
    texts_at_graph(&mock, n + 2).await;
    let (_, c) = app
        .api(
            &school.api_key,
            Method::GET,
            &format!("/conversations/{id}/"),
            None,
        )
        .await;
    assert_eq!(c["status"], "bot", "{c}");
    let last = conversation_action::Entity::find()
        .order_by_desc(conversation_action::Column::Id)
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (last.action.as_str(), last.actor.as_str()),
        ("release", "parent")
    );
    app.stop().await.unwrap();
    mock.stop();
}

async fn staff_send_a_document_by_its_link(v: Variant) {
    use reqwest::Method;
    let Some((app, mock, creds)) = TestApp::with_demo_and_graph(v).await else {
        return;
    };
    let school = &creds.tenants[0];
    let digits = digits_of(school);
    app.parent_says(&school.whatsapp, &digits, "wamid.d1", "I need a human")
        .await;
    let id = app.waiting_conversation(&school.api_key).await;
    let path = format!("/conversations/{id}/reply/");
    let (status, _) = app
        .api(
            &school.api_key,
            Method::POST,
            &format!("/conversations/{id}/takeover/"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Links the provider could not fetch, or should not: refused, nothing sent.
    for url in [
        "http://school.example/a.pdf",
        "file:///etc/passwd",
        "not a link",
        "https://",
    ] {
        let (status, err) = app
            .api(
                &school.api_key,
                Method::POST,
                &path,
                Some(json!({"text": "Form", "document": {"url": url}})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {err}");
        assert_eq!(err["error"], "invalid_url", "{url}: {err}");
    }
    let before = mock.count();
    let (status, queued) = app
        .api(
            &school.api_key,
            Method::POST,
            &path,
            Some(json!({"text": "The consent form for the excursion",
                        "document": {"url": "https://school.example/forms/consent.pdf"}})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["kind"], "document");
    let sent = eventually(
        "the document at the Graph API",
        Duration::from_secs(30),
        || async {
            mock.received()
                .iter()
                .skip(before)
                .find(|r| r.body["type"] == "document")
                .map(|r| r.body.clone())
        },
    )
    .await;
    assert_eq!(
        sent["document"]["link"],
        "https://school.example/forms/consent.pdf"
    );
    assert_eq!(sent["document"]["filename"], "consent.pdf");
    assert_eq!(
        sent["document"]["caption"],
        "The consent form for the excursion"
    );
    app.stop().await.unwrap();
    mock.stop();
}
