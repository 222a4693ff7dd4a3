//! Redis restarted in the middle of a run (its own `redis-server` with an append-only file, as
//! production Redis must be configured): every message the webhook answered 200 for is
//! answered; while Redis is down the webhook answers 503, so the provider retries.
//!
//! Runs where `TEST_REDIS_URL` is set (CI), with a private `redis-server` on a free port.

mod common;

use std::time::Duration;

use chatbot::channels::mock_graph::MockGraph;
use chatbot::channels::whatsapp_cloud::sign;
use chatbot::config::SecretUrl;
use chatbot::pipeline::turn::IngestJob;
use common::redis_server::RedisServer;
use common::{Role, TestEnv, Variant, eventually};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_loses_nothing_acknowledged() {
    if std::env::var("TEST_REDIS_URL").map_or(true, |v| v.is_empty()) {
        eprintln!(
            "skipped: set TEST_REDIS_URL (and have redis-server) to run the Redis restart test"
        );
        return;
    }
    let mut redis = RedisServer::start("always");
    let Some(mut env) = TestEnv::new(Variant::Services).await else {
        return;
    };
    env.settings.queue.redis_url = Some(SecretUrl::new(redis.url()));
    let mock = MockGraph::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    env.settings.whatsapp.api_base = mock.base_url();
    // One send at a time, so that a slow send keeps the others waiting in Redis.
    let settings = env.settings.clone();
    // The web process alone first: what it acknowledges waits in Redis, and nowhere else.
    let web = Role::web(&settings).await;
    let (base, state) = (web.base.clone().unwrap(), web.state.clone());
    let creds = chatbot::demo::seed(&state.db, &state.secret).await.unwrap();
    let demo = &creds.tenants[0];
    let wa = &demo.whatsapp;
    let parents: Vec<String> = demo
        .parents
        .iter()
        .take(5)
        .map(|p| p.phone.trim_start_matches('+').to_string())
        .collect();
    let client = reqwest::Client::new();
    let deliver = |from: &str, id: &str| {
        let body = serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"field": "messages", "value": {
                "metadata": {"phone_number_id": wa.phone_number_id},
                "messages": [{"from": from, "id": id, "type": "text", "text": {"body": "hi"}}]
            }}]}]
        }))
        .unwrap();
        client
            .post(format!("{base}/api/v1/chatbot/webhooks/whatsapp/"))
            .header("X-Hub-Signature-256", sign(&body, &wa.app_secret))
            .body(body)
            .send()
    };
    // Each parent's "hi" is answered with a welcome and the menu.
    let answered = |n: usize| {
        let mock = mock.clone();
        async move {
            eventually(&format!("{n} replies"), Duration::from_secs(60), || async {
                (mock.received().len() >= n).then_some(())
            })
            .await
        }
    };

    for (i, p) in parents.iter().take(3).enumerate() {
        let status = deliver(p, &format!("wamid.r{i}")).await.unwrap().status();
        assert_eq!(status, 200);
    }
    let queue = &state.queue;
    assert_eq!(
        queue.depth::<IngestJob>().await.unwrap(),
        (3, 0),
        "acknowledged, waiting in Redis"
    );
    redis.shutdown();
    // Redis down: the webhook refuses rather than acknowledging.
    let r = deliver(&parents[3], "wamid.r3").await.unwrap();
    assert_eq!(r.status(), 503, "no 200 without a stored job");
    redis.start_again();
    // The provider's retry is accepted once Redis is back (the web process reconnects).
    eventually(
        "the retried delivery accepted",
        Duration::from_secs(30),
        || async { (deliver(&parents[3], "wamid.r3").await.ok()?.status() == 200).then_some(()) },
    )
    .await;

    // A worker process: every acknowledged message is answered.
    let worker = Role::worker(&settings).await;
    answered(8).await;

    // Redis restarts again under the running worker, which goes on working afterwards.
    redis.shutdown();
    redis.start_again();
    eventually(
        "a delivery accepted after the restart",
        Duration::from_secs(30),
        || async { (deliver(&parents[4], "wamid.r4").await.ok()?.status() == 200).then_some(()) },
    )
    .await;
    answered(10).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = mock.received();
    for p in &parents {
        let to_parent = received.iter().filter(|r| &r.to() == p).count();
        assert_eq!(to_parent, 2, "parent {p}: welcome and menu, once each");
    }
    assert_eq!(received.len(), 10, "nothing doubled");
    worker.stop().await;
    web.stop().await;
    mock.stop();
    drop(env);
    drop(redis);
}
