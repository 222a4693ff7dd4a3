//! Conversation throughput on the demo school:
//! - `engine/turns`: the pure engine (and its tenant-scoped reads), session kept in memory;
//! - `converse/turns`: engine + session save + transcript, in one transaction;
//! - `http/messages_*`: `POST /api/v1/chatbot/messages/` over HTTP from 8 concurrent parents,
//!   on SQLite, and on PostgreSQL when `BENCH_DATABASE_URL` (or `TEST_DATABASE_URL`) names a
//!   server (a fresh database is created and dropped).
//!
//!     cargo bench --bench conversation
//!
//! Criterion prints the throughput (`thrpt`, turns or messages per second).

use std::net::SocketAddr;
use std::time::Duration;

use chatbot::app::{self, Application};
use chatbot::config::{SecretUrl, Settings};
use chatbot::conversation::{self, Inbound, Session, engine, view::SchoolView};
use chatbot::demo::{self, DemoCredentials};
use chatbot::domain::{PhoneNumber, SchemaName};
use chatbot::state::AppState;
use chatbot::tenancy;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sea_orm::ConnectionTrait;
use secrecy::SecretString;

/// A two-child parent's tour: welcome, results, back, attendance, notices.
const TOUR: &[&str] = &[
    "hi",
    "1",
    "1",
    "2",
    "back",
    "menu",
    "attendance",
    "2",
    "1",
    "notices",
    "menu",
];
/// What each HTTP parent sends, round and round.
const LOOP: &[&str] = &["menu", "results", "1", "attendance"];
const PARENTS: usize = 8;

fn settings(dir: &std::path::Path, database_url: Option<String>) -> Settings {
    Settings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.to_path_buf(),
        database_url: database_url.map(SecretUrl::new),
        secret_key: Some(SecretString::from(
            "bench-secret-key-0123456789abcdef-0123456789".to_string(),
        )),
        queue_namespace: format!("bench-{}", std::process::id()),
        ..Settings::default()
    }
}

async fn demo_state(settings: Settings) -> (AppState, DemoCredentials) {
    let state = app::build_state(settings).await.expect("state builds");
    let creds = demo::seed(&state.db, &state.secret)
        .await
        .expect("demo seeds");
    (state, creds)
}

fn engine_benches(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let (state, creds) = rt.block_on(demo_state(settings(dir.path(), None)));
    let ctx = rt
        .block_on(tenancy::by_schema_name(
            &state.db,
            &SchemaName::parse("demo").unwrap(),
        ))
        .unwrap();
    let parent = creds.tenants[0].parent_with_children(2).unwrap();
    let phone = PhoneNumber::parse(&parent.phone).unwrap();
    let config = state.settings.engine_config();

    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(TOUR.len() as u64));
    group.bench_function("turns", |b| {
        b.to_async(rt).iter(|| async {
            let view = SchoolView::load(&state.db, &ctx, &state.secret)
                .await
                .unwrap();
            let mut session = Session::default();
            let now = chrono::Utc::now();
            for text in TOUR {
                let out = engine::handle(
                    &view,
                    conversation::texts(),
                    &config,
                    &phone,
                    session,
                    &Inbound::text(*text),
                    now,
                )
                .await
                .unwrap();
                session = out.session;
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("converse");
    group.throughput(Throughput::Elements(TOUR.len() as u64));
    group.bench_function("turns_sqlite", |b| {
        b.to_async(rt).iter(|| async {
            for text in TOUR {
                conversation::converse(
                    &state,
                    &ctx,
                    "bench",
                    &phone,
                    &Inbound::text(*text),
                    chrono::Utc::now(),
                )
                .await
                .unwrap();
            }
        })
    });
    group.finish();
}

fn http_bench(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    database_url: Option<String>,
) {
    let dir = tempfile::tempdir().unwrap();
    let (state, creds) = rt.block_on(demo_state(settings(dir.path(), database_url)));
    let application = rt
        .block_on(Application::bind(
            state,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            std::time::Instant::now(),
        ))
        .unwrap();
    let base = format!(
        "http://{}/api/v1/chatbot/messages/",
        application.local_addr()
    );
    let token = application.shutdown_token();
    let server = rt.spawn(application.run());
    let key = creds.tenants[0].api_key.clone();
    let phones: Vec<String> = creds.tenants[0]
        .parents
        .iter()
        .filter(|p| p.student_ids.len() == 1)
        .take(PARENTS)
        .map(|p| p.phone.clone())
        .collect();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(PARENTS)
        .build()
        .unwrap();

    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Elements((PARENTS * LOOP.len()) as u64));
    group.bench_function(name, |b| {
        b.to_async(rt).iter(|| async {
            let tasks = phones.iter().map(|phone| {
                let (client, base, key) = (client.clone(), base.clone(), key.clone());
                let phone = phone.clone();
                async move {
                    for text in LOOP {
                        let r = client
                            .post(&base)
                            .header("X-API-KEY", &key)
                            .json(&serde_json::json!({"phone": phone, "text": text}))
                            .send()
                            .await
                            .unwrap();
                        assert!(r.status().is_success(), "{}", r.status());
                        let _ = r.bytes().await.unwrap();
                    }
                }
            });
            futures::future::join_all(tasks).await;
        })
    });
    group.finish();
    token.cancel();
    let _ = rt.block_on(server);
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    engine_benches(c, &rt);
    http_bench(c, &rt, "messages_sqlite", None);
    let server = std::env::var("BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("TEST_DATABASE_URL"))
        .ok();
    match server {
        Some(admin_url) => {
            let name = format!("chatbot_bench_{}", std::process::id());
            let mut url = url::Url::parse(&admin_url).expect("database URL");
            url.set_path(&format!("/{name}"));
            let admin = rt
                .block_on(sea_orm::Database::connect(&admin_url))
                .expect("PostgreSQL reachable");
            rt.block_on(admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")))
                .unwrap();
            http_bench(c, &rt, "messages_postgres", Some(url.to_string()));
            rt.block_on(
                admin.execute_unprepared(&format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )),
            )
            .unwrap();
        }
        None => eprintln!(
            "http/messages_postgres skipped: set BENCH_DATABASE_URL (or TEST_DATABASE_URL)"
        ),
    }
}

criterion_group! {
    name = conversation_benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(conversation_benches);
