//! `GET analytics/` over a year of a generated 3,000-student school: 3,000 parents writing
//! about 40 messages each over the year (120,000 messages in, 180,000 replies out with their
//! delivery statuses), 1,200 escalations answered by staff, 50 broadcasts, the model's daily
//! usage. Prints, on SQLite and on PostgreSQL (when `BENCH_DATABASE_URL` or
//! `TEST_DATABASE_URL` names a server; a fresh database is created and dropped):
//! - the first request for the whole year (every day counted from the log, the settled ones
//!   kept), and the days the cleanup job would count (`settle`) for comparison;
//! - the median and the slowest of 20 requests after it (what staff wait for, aim < 200 ms).
//!
//!     cargo bench --bench analytics

mod common;

use std::time::{Duration, Instant};

use chatbot::app::Application;
use chatbot::config::Settings;
use chatbot::entities::{background_job, conversation_action, llm_usage, message_log};
use chrono::{NaiveDate, Utc};
use sea_orm::{ConnectionTrait, EntityTrait, Set};

const PARENTS: i64 = 3_000;
const MESSAGES_PER_PARENT: i64 = 40;
const DAYS: i64 = 365;

fn settings(dir: &std::path::Path, database_url: Option<String>) -> Settings {
    common::in_process_settings(dir, database_url, "analytics")
}

/// Insert `rows` in chunks.
async fn insert_all<A>(db: &impl ConnectionTrait, rows: Vec<A>)
where
    A: sea_orm::ActiveModelTrait + Send,
{
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(500).collect();
        <A::Entity as EntityTrait>::insert_many(chunk)
            .exec_without_returning(db)
            .await
            .unwrap();
    }
}

/// A year of one school's conversations.
async fn generate(db: &impl ConnectionTrait, tenant: i64, today: NaiveDate) -> usize {
    let topics = [
        "main_menu",
        "viewing_results",
        "viewing_attendance",
        "viewing_notices",
        "choosing_child",
    ];
    let answered = [
        "rules", "rules", "rules", "rules", "model", "model", "nobody", "refused",
    ];
    let statuses = ["read", "read", "delivered", "sent", "failed"];
    let mut log = Vec::new();
    let mut actions = Vec::new();
    for p in 0..PARENTS {
        let phone = format!("+23480{:08}", 10_000_000 + p);
        for m in 0..MESSAGES_PER_PARENT {
            let n = p * MESSAGES_PER_PARENT + m;
            let day = today - chrono::Duration::days((n * 7919) % DAYS);
            let at = day
                .and_hms_opt(7 + (n % 12) as u32, (n % 60) as u32, 0)
                .unwrap()
                .and_utc();
            let row =
                |direction: &str, status: &str, by: Option<&str>, topic: Option<&str>, i: u8| {
                    message_log::ActiveModel {
                        tenant_id: Set(tenant),
                        chat_session_id: Set(None),
                        channel: Set("whatsapp".into()),
                        direction: Set(direction.into()),
                        user_id: Set(phone.clone()),
                        provider_message_id: Set(Some(format!("wamid.{n}.{direction}.{i}"))),
                        reply_to: Set(None),
                        kind: Set("text".into()),
                        body: Set("a message of an ordinary length, as parents write them".into()),
                        status: Set(status.into()),
                        error: Set((status == "failed").then(|| "131026: undeliverable".into())),
                        created_at: Set(at),
                        updated_at: Set(at),
                        payload: Set(None),
                        answered_by: Set(by.map(Into::into)),
                        topic: Set(topic.map(Into::into)),
                        ..Default::default()
                    }
                };
            log.push(row(
                "in",
                "received",
                Some(answered[(n % 8) as usize]),
                Some(topics[(n % 5) as usize]),
                0,
            ));
            log.push(row("out", statuses[(n % 5) as usize], None, None, 0));
            if n % 2 == 0 {
                log.push(row("out", statuses[((n + 1) % 5) as usize], None, None, 1));
            }
            if n % 100 == 0 {
                for (action, later) in [("escalated", 0), ("takeover", 20), ("reply", 25)] {
                    actions.push(conversation_action::ActiveModel {
                        tenant_id: Set(tenant),
                        channel: Set("whatsapp".into()),
                        user_id: Set(phone.clone()),
                        action: Set(action.into()),
                        actor: Set("key:office".into()),
                        detail: Set(None),
                        created_at: Set(at + chrono::Duration::minutes(later)),
                        ..Default::default()
                    });
                }
            }
        }
    }
    let messages = log.len();
    insert_all(db, log).await;
    insert_all(db, actions).await;
    let usage = (0..DAYS)
        .map(|d| llm_usage::ActiveModel {
            tenant_id: Set(tenant),
            day: Set(today - chrono::Duration::days(d)),
            requests: Set(80),
            failures: Set(3),
            prompt_tokens: Set(120_000),
            completion_tokens: Set(9_000),
            updated_at: Set(Utc::now()),
            ..Default::default()
        })
        .collect();
    insert_all(db, usage).await;
    let jobs = (0..50)
        .map(|j| {
            let at = (today - chrono::Duration::days(j * 7))
                .and_hms_opt(9, 0, 0)
                .unwrap()
                .and_utc();
            background_job::ActiveModel {
                tenant_id: Set(tenant),
                kind: Set("broadcast".into()),
                status: Set("done".into()),
                params: Set(serde_json::json!({})),
                total: Set(PARENTS),
                created_at: Set(at),
                updated_at: Set(at),
                ..Default::default()
            }
        })
        .collect();
    insert_all(db, jobs).await;
    messages
}

fn run(rt: &tokio::runtime::Runtime, backend: &str, database_url: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let app = Application::build(settings(dir.path(), database_url))
            .await
            .expect("app builds")
            .without_workers();
        let base = format!("http://{}", app.local_addr());
        let state = app.state().clone();
        let token = app.shutdown_token();
        let server = tokio::spawn(app.run());
        let db = &state.db;
        let school = chatbot::admin::create_tenant(db, "big", "Big College", "Africa/Lagos", "en", vec![])
            .await
            .unwrap();
        let key = chatbot::admin::create_api_key(db, &school.schema_name, "bench", &["staff".to_string()])
            .await
            .unwrap();
        let ctx = chatbot::tenancy::by_schema_name(
            db,
            &chatbot::domain::SchemaName::parse("big").unwrap(),
        )
        .await
        .unwrap();
        let today = Utc::now().date_naive();
        let started = Instant::now();
        let messages = generate(db, ctx.id(), today).await;
        println!(
            "{backend}: generated {messages} messages over {DAYS} days in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let http = reqwest::Client::new();
        let from = today - chrono::Duration::days(DAYS - 1);
        let url = format!("{base}/api/v1/chatbot/analytics/?from={from}&to={today}");
        let get = || async {
            let t = Instant::now();
            let r = http.get(&url).header("X-API-KEY", &key.key).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let body: serde_json::Value = r.json().await.unwrap();
            (t.elapsed(), body)
        };
        let (first, body) = get().await;
        assert_eq!(
            body["total"]["inbound"].as_i64(),
            Some(PARENTS * MESSAGES_PER_PARENT),
            "every message counted"
        );
        let mut warm: Vec<Duration> = Vec::new();
        for _ in 0..20 {
            warm.push(get().await.0);
        }
        warm.sort();
        // The cleanup's path on a school with nothing kept yet.
        db.execute_unprepared("DELETE FROM analytics_days").await.unwrap();
        let t = Instant::now();
        let days = chatbot::conversation::analytics::settle(db, &ctx, Utc::now())
            .await
            .unwrap();
        let settle = t.elapsed();
        println!(
            "{backend}: a year of analytics: first request {:.0} ms (counts {DAYS} days), then median {:.1} ms, slowest {:.1} ms of 20 (aim < 200 ms); the cleanup keeps {days} days in {:.0} ms",
            first.as_secs_f64() * 1e3,
            warm[warm.len() / 2].as_secs_f64() * 1e3,
            warm[warm.len() - 1].as_secs_f64() * 1e3,
            settle.as_secs_f64() * 1e3,
        );
        token.cancel();
        let _ = server.await;
    });
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it too (quickly: skip).
    if !std::env::args().any(|a| a == "--bench") {
        println!("analytics bench: run with `cargo bench --bench analytics`");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    run(&rt, "sqlite", None);
    match std::env::var("BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("TEST_DATABASE_URL"))
        .ok()
    {
        Some(admin_url) => {
            let name = format!("chatbot_bench_analytics_{}", std::process::id());
            let mut url = url::Url::parse(&admin_url).expect("database URL");
            url.set_path(&format!("/{name}"));
            let admin = rt
                .block_on(sea_orm::Database::connect(&admin_url))
                .expect("PostgreSQL reachable");
            rt.block_on(admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")))
                .unwrap();
            run(&rt, "postgres", Some(url.to_string()));
            rt.block_on(
                admin.execute_unprepared(&format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )),
            )
            .unwrap();
        }
        None => eprintln!("postgres skipped: set BENCH_DATABASE_URL (or TEST_DATABASE_URL)"),
    }
}
