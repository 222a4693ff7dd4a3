//! What a forged Meta webhook costs the server, with 2 schools and with 500: the time to refuse
//! a 3 MB body with a bad signature (naming a school's number, naming an unknown number), and
//! `/healthz` latency while 80 such requests arrive at once. A delivery is checked against the
//! secret of the number it names only, so none of these should grow with the number of schools.
//!
//! The server runs in this process (embedded SQLite, `serve` settings) on loopback; each school
//! has a Meta number with its own sealed app secret.
//!
//!     cargo bench --bench refusal
//!     BENCH_REQUESTS=100 cargo bench --bench refusal

use std::time::{Duration, Instant};

use chatbot::app::Application;
use chatbot::config::Settings;
use chatbot::crypto::SealedColumn;
use chatbot::domain::SchemaName;
use chatbot::entities::whatsapp_number;
use chatbot::tenancy::{self, NewTenant};
use sea_orm::{ActiveModelTrait, Set};
use secrecy::SecretString;

const WEBHOOK: &str = "/api/v1/chatbot/webhooks/whatsapp/";
/// Just under Meta's 3 MB.
const BODY_BYTES: usize = 3 * 1024 * 1024 - 1024;
const CONCURRENT: usize = 80;

fn main() {
    let requests: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "refusing a {BODY_BYTES}-byte webhook body with a bad signature ({requests} sequential requests each; medians)"
    );
    println!(
        "{:>8} | {:>22} | {:>22} | {:>28}",
        "schools", "names a school, ms", "unknown number, ms", "/healthz under 80 at once, ms"
    );
    for schools in [2, 500] {
        runtime.block_on(run(schools, requests));
    }
}

fn number_id(i: usize) -> String {
    format!("1099{i:08}")
}

/// A body that names `number` and pads to [`BODY_BYTES`].
fn body(number: &str) -> Vec<u8> {
    let head = format!(
        "{{\"object\":\"whatsapp_business_account\",\"entry\":[{{\"id\":\"W\",\"changes\":[{{\"field\":\"messages\",\"value\":{{\"metadata\":{{\"phone_number_id\":\"{number}\"}},\"pad\":\""
    );
    let tail = "\"}}]}]}";
    let mut out = head.into_bytes();
    out.resize(BODY_BYTES - tail.len(), b'x');
    out.extend_from_slice(tail.as_bytes());
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn run(schools: usize, requests: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::default();
    settings.server.listen = ([127, 0, 0, 1], 0).into();
    settings.storage.data_dir = dir.path().to_path_buf();
    settings.secrets.secret_key = Some(SecretString::from(
        "bench-secret-key-0123456789abcdef-0123456789".to_string(),
    ));
    let app = Application::build(settings).await.unwrap();
    let state = app.state().clone();
    for i in 0..schools {
        let ctx = tenancy::create(
            &state.db,
            NewTenant {
                schema_name: SchemaName::parse(&format!("school-{i}")).unwrap(),
                name: format!("School {i}"),
                time_zone: "Africa/Lagos".into(),
                default_language: "en".into(),
                publish_position: true,
                address: None,
                contact_phone: None,
                contact_email: None,
                motto: None,
                domains: Vec::new(),
            },
        )
        .await
        .unwrap();
        whatsapp_number::ActiveModel {
            tenant_id: Set(ctx.id()),
            provider: Set("meta".into()),
            phone_number: Set(format!("+1555{i:07}")),
            phone_number_id: Set(Some(number_id(i))),
            app_secret: Set(Some(state.secret.seal(
                SealedColumn::AppSecret,
                ctx.id(),
                &format!("app-secret-of-school-{i}"),
            ))),
            created_at: Set(chrono::Utc::now()),
            ..Default::default()
        }
        .insert(&state.db)
        .await
        .unwrap();
    }
    let base = format!("http://{}", app.local_addr());
    let token = app.shutdown_token();
    let server = tokio::spawn(app.run());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENT)
        .build()
        .unwrap();
    // The school named is the last one created (its secret found by the number, not by a walk).
    let named = body(&number_id(schools - 1));
    let unknown = body("999999999999");
    let bad = chatbot::channels::whatsapp_cloud::sign(b"something else", "not-the-secret");
    let refuse = async |payload: &Vec<u8>| -> f64 {
        let started = Instant::now();
        let r = http
            .post(format!("{base}{WEBHOOK}"))
            .header("content-type", "application/json")
            .header("X-Hub-Signature-256", &bad)
            .body(payload.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
        started.elapsed().as_secs_f64() * 1000.0
    };
    // Warm up (connections, the secrets cache).
    for _ in 0..3 {
        refuse(&named).await;
    }
    let mut on_named = Vec::new();
    let mut on_unknown = Vec::new();
    for _ in 0..requests {
        on_named.push(refuse(&named).await);
        on_unknown.push(refuse(&unknown).await);
    }
    // 80 forged deliveries at once, and /healthz meanwhile.
    let flood: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let (http, base, bad, payload) =
                (http.clone(), base.clone(), bad.clone(), named.clone());
            tokio::spawn(async move {
                let _ = http
                    .post(format!("{base}{WEBHOOK}"))
                    .header("content-type", "application/json")
                    .header("X-Hub-Signature-256", bad)
                    .body(payload)
                    .send()
                    .await;
            })
        })
        .collect();
    let mut health = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let r = http.get(format!("{base}/healthz")).send().await.unwrap();
        assert!(r.status().is_success());
        health.push(started.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for task in flood {
        task.await.unwrap();
    }
    println!(
        "{schools:>8} | {:>22.2} | {:>22.2} | {:>28.2}",
        median(on_named),
        median(on_unknown),
        median(health)
    );
    token.cancel();
    server.await.unwrap().unwrap();
}
