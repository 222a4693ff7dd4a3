//! A parent's data, handed over and erased: `contacts/{phone}/export/` returns everything a
//! school holds about a phone, `DELETE contacts/{phone}/` erases it and leaves a record without
//! it. The erasure is checked by reading every table of the database for the phone; another
//! school's rows about the same phone stay. Signed webhooks in, the mock Graph API out, the
//! REST API between, on both backends.

mod common;

use std::time::Duration;

use chatbot::channels::mock_graph::MockGraph;
use chatbot::entities::report;
use common::{TestApp, Variant, eventually};
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, Statement};

variants!(
    a_parents_data_is_exported_then_erased_from_every_table,
    erasure_asks_for_a_phone_and_stays_in_its_school,
);

const API: &str = "/api/v1/chatbot";

/// Wait until the mock Graph API has received `n` messages.
async fn graph_has(mock: &MockGraph, n: usize) {
    eventually(
        &format!("{n} messages at the Graph API"),
        Duration::from_secs(30),
        || async { (mock.count() >= n).then_some(()) },
    )
    .await
}

/// Every table of the database, with whether it has a `tenant_id` column.
async fn tables(db: &DatabaseConnection) -> Vec<(String, Vec<String>)> {
    let backend = db.get_database_backend();
    let names_sql = match backend {
        DatabaseBackend::Sqlite => {
            "SELECT name AS t FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        }
        _ => {
            "SELECT table_name::text AS t FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        }
    };
    let rows = db
        .query_all_raw(Statement::from_string(backend, names_sql))
        .await
        .unwrap();
    let mut out = Vec::new();
    for row in rows {
        let table: String = row.try_get("", "t").unwrap();
        let columns_sql = match backend {
            DatabaseBackend::Sqlite => {
                format!("SELECT name AS c FROM pragma_table_info('{table}')")
            }
            _ => format!(
                "SELECT column_name::text AS c FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = '{table}'"
            ),
        };
        let columns = db
            .query_all_raw(Statement::from_string(backend, columns_sql))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.try_get::<String>("", "c").unwrap())
            .collect();
        out.push((table, columns));
    }
    out
}

/// Rows of every table that mention `needle` in any column, as `(table, tenant_id, text)`;
/// the tenant is `None` for tables without one.
async fn rows_mentioning(db: &DatabaseConnection, needle: &str) -> Vec<(String, Option<i64>)> {
    let backend = db.get_database_backend();
    let mut found = Vec::new();
    for (table, columns) in tables(db).await {
        let any = columns
            .iter()
            .map(|c| format!("CAST(\"{c}\" AS TEXT) LIKE '%{needle}%'"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let tenant = if columns.iter().any(|c| c == "tenant_id") {
            "CAST(tenant_id AS BIGINT)"
        } else {
            "CAST(NULL AS BIGINT)"
        };
        let sql = format!("SELECT {tenant} AS tenant FROM \"{table}\" WHERE {any}");
        for row in db
            .query_all_raw(Statement::from_string(backend, sql))
            .await
            .unwrap()
        {
            found.push((
                table.clone(),
                row.try_get::<Option<i64>>("", "tenant").unwrap(),
            ));
        }
    }
    found
}

async fn a_parents_data_is_exported_then_erased_from_every_table(v: Variant) {
    let Some((app, mock, creds)) = TestApp::with_demo_and_graph(v).await else {
        return;
    };
    let (school, other) = (&creds.tenants[0], &creds.tenants[1]);
    let parent = school.parent_with_children(1).unwrap();
    let phone = parent.phone.clone();
    let digits = phone.trim_start_matches('+').to_string();
    let db = &app.state.db;

    // A conversation with everything in it: a report card, an escalation, a staff reply.
    let mut sent = 0;
    for (i, words) in ["hi", "report card", "1"].into_iter().enumerate() {
        app.parent_says(&school.whatsapp, &digits, &format!("wamid.p{i}"), words)
            .await;
        sent += 1;
        graph_has(&mock, sent).await;
        sent = mock.count();
    }
    eventually(
        "a report card at the Graph API",
        Duration::from_secs(30),
        || async {
            mock.received()
                .iter()
                .any(|r| r.body["type"] == "document")
                .then_some(())
        },
    )
    .await;
    app.parent_says(
        &school.whatsapp,
        &digits,
        "wamid.p9",
        "I want to talk to a person",
    )
    .await;
    let conversation = app.waiting_conversation(&school.api_key).await;
    let sent = mock.count();
    app.staff_answer(
        &school.api_key,
        conversation,
        "Mrs Ade here: the card is attached above.",
    )
    .await;
    graph_has(&mock, sent + 1).await;
    // The same phone writes to another school too.
    app.parent_says(&other.whatsapp, &digits, "wamid.o1", "hi")
        .await;
    eventually(
        "the other school's conversation",
        Duration::from_secs(30),
        || async {
            let (_, theirs) = app
                .api(
                    &other.api_key,
                    Method::GET,
                    &format!("/contacts/{phone}/export/"),
                    None,
                )
                .await;
            (theirs["messages"].as_array().map_or(0, Vec::len) >= 2).then_some(())
        },
    )
    .await;

    // The export: everything, and only this school's.
    let (status, export) = app
        .api(
            &school.api_key,
            Method::GET,
            &format!("/contacts/{phone}/export/"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{export}");
    assert_eq!(export["phone"], phone);
    assert_eq!(export["school"], school.schema_name);
    assert_eq!(export["contact"]["opted_in"], true, "{export}");
    assert_eq!(
        export["children"][0]["student_id"],
        parent.student_ids[0].as_str(),
        "{export}"
    );
    assert_eq!(export["conversations"][0]["status"], "staff");
    let messages = export["messages"].as_array().unwrap();
    let bodies: Vec<&str> = messages
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert!(bodies.contains(&"report card"), "{bodies:?}");
    assert!(
        bodies.contains(&"Mrs Ade here: the card is attached above."),
        "{bodies:?}"
    );
    assert!(
        messages.iter().all(|m| m["channel"] == "whatsapp"),
        "{messages:?}"
    );
    let actions: Vec<&str> = export["staff_actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["escalated", "takeover", "reply"], "{export}");
    let cards = export["report_cards"].as_array().unwrap();
    assert_eq!(cards.len(), 1, "{export}");
    let card = report::Entity::find_by_id(cards[0]["id"].as_i64().unwrap())
        .one(db)
        .await
        .unwrap()
        .unwrap();
    let file = app
        .state
        .settings
        .reports_dir()
        .join(card.file_path.as_deref().unwrap());
    assert!(file.exists(), "{}", file.display());
    // The contact's id names the same phone.
    let contact_id = {
        let (_, page) = app
            .api(
                &school.api_key,
                Method::GET,
                &format!("/contacts/?phone={}", phone.replace('+', "%2B")),
                None,
            )
            .await;
        page["results"][0]["id"].as_i64().unwrap()
    };
    let (_, by_id) = app
        .api(
            &school.api_key,
            Method::GET,
            &format!("/contacts/{contact_id}/export/"),
            None,
        )
        .await;
    assert_eq!(by_id["messages"], export["messages"]);
    // The other school's export of the phone holds its own "hi" only.
    let (_, theirs) = app
        .api(
            &other.api_key,
            Method::GET,
            &format!("/contacts/{phone}/export/"),
            None,
        )
        .await;
    assert_eq!(theirs["school"], other.schema_name);
    assert!(
        theirs["children"].as_array().unwrap().is_empty(),
        "{theirs}"
    );
    assert!(theirs["report_cards"].as_array().unwrap().is_empty());
    assert!(
        theirs["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["body"] != "report card" && m["body"] != "I want to talk to a person"),
        "{theirs}"
    );

    // Before: both schools hold rows about the phone.
    let school_id = chatbot::tenancy::by_schema_name(
        db,
        &chatbot::domain::SchemaName::parse(&school.schema_name).unwrap(),
    )
    .await
    .unwrap()
    .id();
    let before = rows_mentioning(db, &digits).await;
    assert!(
        before.iter().any(|(_, t)| *t == Some(school_id)),
        "{before:?}"
    );

    // The erasure.
    let (status, erased) = app
        .api(
            &school.api_key,
            Method::DELETE,
            &format!("/contacts/{phone}/"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    let removed = &erased["removed"];
    for kind in [
        "messages",
        "conversations",
        "staff_actions",
        "children_links",
        "contacts",
        "report_cards",
    ] {
        assert!(removed[kind].as_u64().unwrap() >= 1, "{kind}: {erased}");
    }
    assert!(!erased.to_string().contains(&digits), "{erased}");
    assert!(!file.exists(), "the report card's file is gone");

    // After: no row of this school mentions the phone, in any table; the other school's stay;
    // rows of no school mention it only as the PIN guesser's counter (shared by all schools,
    // gone with its window).
    let after = rows_mentioning(db, &digits).await;
    let left: Vec<_> = after
        .iter()
        .filter(|(table, tenant)| {
            *tenant == Some(school_id) || (tenant.is_none() && table != "pin_attempts")
        })
        .collect();
    assert!(left.is_empty(), "left after the erasure: {left:?}");
    assert!(
        after
            .iter()
            .any(|(_, t)| t.is_some() && *t != Some(school_id)),
        "the other school's rows stay: {after:?}"
    );
    // The record, listed for this school only.
    let (_, list) = app
        .api(&school.api_key, Method::GET, "/erasures/", None)
        .await;
    assert_eq!(list["count"], 1, "{list}");
    assert_eq!(list["results"][0]["id"], erased["id"]);
    assert!(
        list["results"][0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("key:")
    );
    let (_, none) = app
        .api(&other.api_key, Method::GET, "/erasures/", None)
        .await;
    assert_eq!(none["count"], 0, "{none}");
    // The export is now empty.
    let (_, empty) = app
        .api(
            &school.api_key,
            Method::GET,
            &format!("/contacts/{phone}/export/"),
            None,
        )
        .await;
    for list in [
        "children",
        "conversations",
        "messages",
        "staff_actions",
        "report_cards",
    ] {
        assert!(
            empty[list].as_array().unwrap().is_empty(),
            "{list}: {empty}"
        );
    }
    assert!(empty.get("contact").is_none(), "{empty}");

    // The parent can start again: the bot answers a new conversation.
    let before = mock.count();
    app.parent_says(&school.whatsapp, &digits, "wamid.p10", "hi")
        .await;
    graph_has(&mock, before + 1).await;
    app.stop().await.unwrap();
}

async fn erasure_asks_for_a_phone_and_stays_in_its_school(v: Variant) {
    let Some((app, mock, creds)) = TestApp::with_demo_and_graph(v).await else {
        return;
    };
    let (school, other) = (&creds.tenants[0], &creds.tenants[1]);
    let digits = school
        .parent_with_children(1)
        .unwrap()
        .phone
        .trim_start_matches('+')
        .to_string();
    app.parent_says(&school.whatsapp, &digits, "wamid.e1", "hi")
        .await;
    graph_has(&mock, 1).await;
    let (_, page) = app
        .api(&school.api_key, Method::GET, "/contacts/", None)
        .await;
    let contact_id = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["phone"] == format!("+{digits}"))
        .unwrap()["id"]
        .as_i64()
        .unwrap();

    // Not a phone, not an id: refused, nothing erased.
    for bad in ["2348-not", "%2Babc", "+12"] {
        let (status, body) = app
            .api(
                &school.api_key,
                Method::DELETE,
                &format!("/contacts/{bad}/"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_phone", "{bad}: {body}");
    }
    // Another school's credential cannot name this school's contact by id, and erasing the
    // phone there touches only its own (none).
    let (status, _) = app
        .api(
            &other.api_key,
            Method::DELETE,
            &format!("/contacts/{contact_id}/"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, erased) = app
        .api(
            &other.api_key,
            Method::DELETE,
            &format!("/contacts/+{digits}/"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert!(
        erased["removed"]
            .as_object()
            .unwrap()
            .values()
            .all(|n| n == 0),
        "{erased}"
    );
    let (_, still) = app
        .api(
            &school.api_key,
            Method::GET,
            &format!("/contacts/{contact_id}/"),
            None,
        )
        .await;
    assert_eq!(still["phone"], format!("+{digits}"), "{still}");
    // Without the staff scope: refused.
    let (status, _) = {
        let r = app
            .http
            .delete(app.url(&format!("{API}/contacts/+{digits}/")))
            .send()
            .await
            .unwrap();
        (r.status(), ())
    };
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // By id, in its own school: erased.
    let (status, erased) = app
        .api(
            &school.api_key,
            Method::DELETE,
            &format!("/contacts/{contact_id}/"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert_eq!(erased["removed"]["contacts"], 1, "{erased}");
    let (status, _) = app
        .api(
            &school.api_key,
            Method::GET,
            &format!("/contacts/{contact_id}/"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await.unwrap();
}
