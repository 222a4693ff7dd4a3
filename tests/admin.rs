//! Operator commands' effects: schools and API keys made by `chatbot tenant` / `chatbot apikey`
//! work against the running API, keep their scopes, revoke at once, and stay in their school.

mod common;

use chatbot::admin;
use chatbot::error::Error;
use common::{TestApp, Variant};
use reqwest::StatusCode;
use serde_json::json;

variants!(
    keys_authenticate_keep_their_scopes_and_revoke_at_once,
    schools_and_keys_stay_apart,
);

const PATH: &str = "/api/v1/chatbot/messages/";

async fn post_message(app: &TestApp, key: &str) -> (StatusCode, serde_json::Value) {
    let r = app
        .http
        .post(app.url(PATH))
        .header("X-API-KEY", key)
        .json(&json!({"phone": "+2348030000002", "text": "hi"}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or_default())
}

async fn keys_authenticate_keep_their_scopes_and_revoke_at_once(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let db = &app.state.db;
    let school = admin::create_tenant(
        db,
        "Greenfield",
        "Greenfield Academy",
        "Africa/Lagos",
        "EN",
        vec!["Greenfield.Example:443".into()],
    )
    .await
    .unwrap();
    assert_eq!(school.schema_name, "greenfield");
    assert_eq!(school.default_language, "en");
    assert_eq!(school.domains, ["greenfield.example"]);

    let messages = admin::create_api_key(db, "greenfield", "front desk", &["messages".into()])
        .await
        .unwrap();
    assert!(messages.key.starts_with(&messages.row.prefix));
    assert_eq!(messages.row.scopes, ["messages"]);
    let (status, body) = post_message(&app, &messages.key).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // `admin` is every scope; unknown scopes and no scope at all are refused.
    let admin_key = admin::create_api_key(db, "greenfield", "office", &["admin".into()])
        .await
        .unwrap();
    assert_eq!(post_message(&app, &admin_key.key).await.0, StatusCode::OK);
    let unknown = admin::create_api_key(db, "greenfield", "x", &["everything".into()]).await;
    assert!(matches!(unknown, Err(Error::Invalid { .. })), "{unknown:?}");
    let none = admin::create_api_key(db, "greenfield", "x", &[]).await;
    assert!(matches!(none, Err(Error::Invalid { .. })), "{none:?}");

    // Revoked by prefix: refused on the next request; listing shows when.
    let revoked = admin::revoke_api_key(db, "greenfield", &messages.row.prefix)
        .await
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    let (status, body) = post_message(&app, &messages.key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let listed = admin::list_api_keys(db, "greenfield").await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed[0].revoked_at.is_some() && listed[1].revoked_at.is_none());
    let tenants = admin::list_tenants(db).await.unwrap();
    assert_eq!(tenants.len(), 1);
    assert_eq!(tenants[0].active_api_keys, 1);
    app.stop().await.unwrap();
}

async fn schools_and_keys_stay_apart(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let db = &app.state.db;
    admin::create_tenant(
        db,
        "north",
        "North",
        "UTC",
        "en",
        vec!["north.example".into()],
    )
    .await
    .unwrap();
    admin::create_tenant(db, "south", "South", "UTC", "en", vec![])
        .await
        .unwrap();
    // A taken schema name or domain is refused, and nothing of the refused school is kept.
    let again = admin::create_tenant(db, "NORTH", "Again", "UTC", "en", vec![]).await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
    let domain = admin::create_tenant(
        db,
        "west",
        "West",
        "UTC",
        "en",
        vec!["north.example".into()],
    )
    .await;
    assert!(matches!(domain, Err(Error::Conflict(_))), "{domain:?}");
    let names: Vec<String> = admin::list_tenants(db)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.schema_name)
        .collect();
    assert_eq!(names, ["north", "south"], "the refused school left nothing");
    for bad in [
        ("1st", "UTC", "en"),
        ("east", "Not a zone!", "en"),
        ("east", "UTC", "english"),
    ] {
        let r = admin::create_tenant(db, bad.0, "East", bad.1, bad.2, vec![]).await;
        assert!(matches!(r, Err(Error::Invalid { .. })), "{bad:?}: {r:?}");
    }

    // South cannot see, revoke or be reached with North's key.
    let north = admin::create_api_key(db, "north", "n", &["messages".into()])
        .await
        .unwrap();
    assert!(admin::list_api_keys(db, "south").await.unwrap().is_empty());
    for which in [north.row.id.to_string(), north.row.prefix.clone()] {
        let r = admin::revoke_api_key(db, "south", &which).await;
        assert!(matches!(r, Err(Error::NotFound(_))), "{r:?}");
    }
    assert_eq!(post_message(&app, &north.key).await.0, StatusCode::OK);
    let r = admin::create_api_key(db, "nowhere", "n", &["admin".into()]).await;
    assert!(matches!(r, Err(Error::NotFound(_))), "{r:?}");
    app.stop().await.unwrap();
}
