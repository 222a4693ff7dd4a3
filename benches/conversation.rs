//! Conversation throughput on the demo school:
//! - `engine/turns`: the pure engine over the school's snapshot, session kept in memory, a
//!   parent of two children touring results, attendance and notices (no database);
//! - `converse/turns_sqlite_8_parents`: 8 parents at once, each turn reading the school's data
//!   version and the session, running the engine, and saving the session with the transcript
//!   in one transaction (SQLite);
//! - `http/messages_*`: `POST /api/v1/chatbot/messages/` over HTTP from 8 concurrent parents,
//!   on SQLite, and on PostgreSQL when `BENCH_DATABASE_URL` (or `TEST_DATABASE_URL`) names a
//!   server (a fresh database is created and dropped).
//!
//!     cargo bench --bench conversation
//!
//! Criterion prints the throughput (`thrpt`, turns or messages per second). Before them it
//! prints the memory a cached school takes: the demo school's snapshot, and one of a generated
//! school of 3,000 students (10 released exam sessions of 10 subjects, 3 terms of attendance).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use chatbot::app::{self, Application};
use chatbot::config::Settings;
use chatbot::conversation::{self, Facts, Inbound, Session, World, engine};
use chatbot::demo::{self, DemoCredentials};
use chatbot::domain::{PhoneNumber, SchemaName};
use chatbot::state::AppState;
use chatbot::tenancy;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sea_orm::ConnectionTrait;

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
    common::in_process_settings(dir, database_url, "conversation")
}

async fn demo_state(settings: Settings) -> (AppState, DemoCredentials) {
    let state = app::build_state(settings).await.expect("state builds");
    let creds = demo::seed(&state.db, &state.secret)
        .await
        .expect("demo seeds");
    (state, creds)
}

/// A generated school: `students` students in classes of 50, 10 subjects, 10 released exam
/// sessions with every mark, 3 terms of attendance (65 days each), 20 notices.
fn big_school(students: i64) -> chatbot::school::snapshot::SchoolSnapshot {
    use chatbot::entities::{class, exam_session, notice, student, tenant, term};
    use chatbot::school::snapshot::{Rows, SchoolSnapshot};
    let now = chrono::Utc::now();
    let profile = tenant::Model {
        id: 1,
        schema_name: "big".into(),
        name: "Big Generated College".into(),
        time_zone: "Africa/Lagos".into(),
        default_language: "en".into(),
        publish_position: true,
        address: Some("1 Long Road".into()),
        contact_phone: Some("+2348000000001".into()),
        contact_email: Some("office@big.example".into()),
        motto: Some("Many and one".into()),
        llm_daily_tokens: None,
        office_hours: None,
        menu_during_handoff: true,
        created_at: now,
        updated_at: now,
    };
    let classes: Vec<class::Model> = (1..=(students + 49) / 50)
        .map(|id| class::Model {
            id,
            tenant_id: 1,
            name: format!("SS {} {}", id % 3 + 1, id),
            form: format!("SS {}", id % 3 + 1),
            level: (id % 3 + 1) as i16,
            created_at: now,
        })
        .collect();
    let students_rows: Vec<student::Model> = (1..=students)
        .map(|id| student::Model {
            id,
            tenant_id: 1,
            student_id: format!("BGC/2026/{id:04}"),
            pin_hash: String::new(),
            first_name: format!("First{id}"),
            last_name: format!("Family{}", id % 400),
            other_names: (id % 3 == 0).then(|| "Grace".to_string()),
            gender: None,
            date_of_birth: None,
            class_id: Some((id - 1) / 50 + 1),
            active: true,
            created_at: now,
            updated_at: now,
        })
        .collect();
    let exams: Vec<exam_session::Model> = (1..=10)
        .rev()
        .map(|id| exam_session::Model {
            id,
            tenant_id: 1,
            term_id: 1,
            name: format!("Examination {id}"),
            released: true,
            released_at: Some(now),
            created_at: now,
        })
        .collect();
    let grades = ["A", "B", "C", "D", "E", "F"];
    let mut marks = Vec::new();
    for exam in 1..=10 {
        for s in 1..=students {
            for subject in 1..=10 {
                let score = ((s * 7 + subject * 13 + exam * 3) % 60) as f64;
                marks.push((
                    exam,
                    s,
                    subject,
                    Some(score / 2.0),
                    Some(score),
                    Some(score * 1.5),
                    Some(grades[(score as usize) % 6].to_string()),
                    Some("Good effort".to_string()),
                ));
            }
        }
    }
    let terms: Vec<term::Model> = (1..=3)
        .rev()
        .map(|id| term::Model {
            id,
            tenant_id: 1,
            academic_session_id: 1,
            name: format!("Term {id}"),
            ordinal: id as i16,
            starts_on: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            ends_on: chrono::NaiveDate::from_ymd_opt(2026, 4, 1).unwrap(),
            created_at: now,
        })
        .collect();
    let mut attendance = Vec::new();
    for s in 1..=students {
        for t in 1..=3 {
            attendance.push((s, t, "present".to_string(), 60));
            attendance.push((s, t, "absent".to_string(), 3));
            attendance.push((s, t, "late".to_string(), 2));
        }
    }
    let notices: Vec<notice::Model> = (1..=20)
        .map(|id| notice::Model {
            id,
            tenant_id: 1,
            title: format!("Notice {id}"),
            body: "Parents are reminded that the school closes at 2 pm on Friday.".repeat(2),
            audience: "school".into(),
            audience_form: None,
            audience_class_id: None,
            publish_at: now,
            expires_at: None,
            created_at: now,
            updated_at: now,
        })
        .collect();
    SchoolSnapshot::new(
        1,
        profile,
        Rows {
            welcome: Some("Welcome!".into()),
            students: students_rows,
            links: (1..=students)
                .map(|id| (format!("+23480{id:08}"), id))
                .collect(),
            classes,
            subjects: (1..=10)
                .map(|id| (id, format!("S{id}"), format!("Subject number {id}")))
                .collect(),
            exams,
            marks,
            terms,
            attendance,
            notices,
        },
    )
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
    let config = chatbot::conversation::EngineConfig::from(&state.settings.conversation);
    let school = rt
        .block_on(state.pipeline.turns.snapshots.get(&state.db, &ctx))
        .unwrap();
    let mb = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    println!(
        "memory per cached school (estimated heap): demo school ({} students) {:.2} MiB",
        creds.tenants[0].students.len(),
        mb(school.heap_size())
    );
    let started = std::time::Instant::now();
    let big = big_school(3000);
    println!(
        "memory per cached school (estimated heap): generated school of 3,000 students {:.2} MiB \
         (built from its rows in {:.0} ms)",
        mb(big.heap_size()),
        started.elapsed().as_secs_f64() * 1000.0
    );
    drop(big);

    let facts = Facts::default();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(TOUR.len() as u64));
    group.bench_function("turns", |b| {
        b.iter(|| {
            let now = chrono::Utc::now();
            let world = World {
                school: &school,
                texts: conversation::texts(),
                config: &config,
                phone: &phone,
                facts: &facts,
                now,
            };
            let mut session = Session::default();
            for text in TOUR {
                let out = engine::handle(&world, session, &Inbound::text(*text)).unwrap();
                assert!(out.need.is_none(), "the tour needs no PIN");
                session = out.session;
            }
        })
    });
    group.finish();

    let phones: Vec<PhoneNumber> = creds.tenants[0]
        .parents
        .iter()
        .take(PARENTS)
        .map(|p| PhoneNumber::parse(&p.phone).unwrap())
        .collect();
    let mut group = c.benchmark_group("converse");
    group.throughput(Throughput::Elements((PARENTS * TOUR.len()) as u64));
    group.bench_function("turns_sqlite_8_parents", |b| {
        b.to_async(rt).iter(|| async {
            let tasks = phones.iter().map(|phone| {
                let (state, ctx) = (&state, &ctx);
                async move {
                    for text in TOUR {
                        chatbot::pipeline::converse(
                            state.turns(),
                            ctx,
                            "bench",
                            phone,
                            &Inbound::text(*text),
                            chrono::Utc::now(),
                        )
                        .await
                        .unwrap();
                    }
                }
            });
            futures::future::join_all(tasks).await;
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
