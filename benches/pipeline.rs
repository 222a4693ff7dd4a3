//! The message pipeline end to end, ours next to a peer, in one run on one machine: a parent's
//! "hi" (signed, each from a new parent) posted to the webhook, answered at a mock Graph API.
//!
//! For each system: reply latency (from when a message was due to its first reply at the mock)
//! at 20, 100 and 1,000 messages a second, open loop; then the sustained rate at saturation
//! (2,000 parents' messages sent back to back until every reply is in). Systems:
//!
//! - ours on the embedded stores (SQLite data and queue);
//! - ours on PostgreSQL + Redis, when `DATABASE_URL` and `REDIS_URL` are set (the run makes a
//!   fresh database beside `DATABASE_URL`'s and drops it afterwards, and deletes its keys);
//! - pywa (`benches/pywa_bot.py`: pywa_async 4.5 on FastAPI and uvicorn with uvloop, answering
//!   "hi" with three buttons inside the webhook request, with no durable queue), installed by
//!   the benchmark into a virtualenv of its own.
//!
//! Ours answers a new parent's "hi" with two messages (a welcome and the menu), pywa with one;
//! the first reply is what a parent waits for.
//!
//!     cargo bench --bench pipeline
//!     BENCH_END_TO_END_ONLY=1 cargo bench --bench pipeline    # the sustained rate only
//!     DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379 \
//!         cargo bench --bench pipeline

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chatbot::channels::mock_graph::MockGraph;
use common::{Delivery, Demo, Stores, WEBHOOK};

const VENV: &str = "/var/tmp/chatbot-bench-venv-pywa";
const PYWA: [&str; 4] = [
    "pywa==4.5.0",
    "fastapi==0.165.0",
    "uvicorn[standard]==0.55.0",
    "uvloop",
];
/// Reply latency: (messages a second, messages).
const RATES: [(u64, usize); 3] = [(20, 200), (100, 1_000), (1_000, 3_000)];
/// Parents of the end-to-end phase, one message each.
const END_TO_END: usize = 2_000;

/// What one system measured.
struct Figures {
    name: String,
    /// Per rate: first-reply p50 and p99, ms, and failed posts.
    latency: Vec<(f64, f64, usize)>,
    /// Messages answered a second, sustained.
    sustained: f64,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    println!(
        "pipeline benchmark: {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut all = Vec::new();
    all.push(ours(Stores::default()).await);
    match (std::env::var("DATABASE_URL"), std::env::var("REDIS_URL")) {
        (Ok(database), Ok(redis)) => {
            let (url, name) = common::fresh_database(&database, "pipeline").await;
            let stores = Stores {
                database: Some(url),
                redis: Some(redis.clone()),
            };
            all.push(ours(stores).await);
            common::forget_queues(&redis, &format!("bench-{}-*", std::process::id())).await;
            common::drop_database(&database, &name).await;
        }
        _ => println!("ours on PostgreSQL + Redis not run: set DATABASE_URL and REDIS_URL"),
    }
    match pywa().await {
        Ok(figures) => all.push(figures),
        Err(e) => println!("pywa not run: {e}"),
    }
    println!();
    println!(
        "| system | {} | sustained |",
        RATES
            .iter()
            .map(|(rate, _)| format!("{rate} msg/s p50 / p99"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}---|", "---|".repeat(RATES.len()));
    for f in &all {
        println!(
            "| {} | {} | {:.0} msg/s |",
            f.name,
            f.latency
                .iter()
                .chain(std::iter::repeat(&(f64::NAN, f64::NAN, 0)))
                .take(RATES.len())
                .map(|(p50, p99, failed)| {
                    let failed = if *failed > 0 {
                        format!(" ({failed} failed)")
                    } else {
                        String::new()
                    };
                    format!("{p50:.1} / {p99:.1} ms{failed}")
                })
                .collect::<Vec<_>>()
                .join(" | "),
            f.sustained
        );
    }
}

/// Each rate's reply latency, then the sustained rate, against `url`.
async fn measure(
    name: String,
    url: &str,
    mock: &MockGraph,
    demo: &Demo,
    replies: usize,
) -> Figures {
    let mut latency = Vec::new();
    // Parents of their own per phase (a new parent's "hi" gets the welcome).
    let rates = if std::env::var_os("BENCH_END_TO_END_ONLY").is_some() {
        &[][..]
    } else {
        &RATES[..]
    };
    for (phase, (rate, count)) in rates.iter().enumerate() {
        let deliveries: Vec<Delivery> = demo.deliveries_from(
            &format!("lat{rate}"),
            *count,
            *count,
            (phase + 1) * 1_000_000,
        );
        let l = common::reply_latency(url, mock, &deliveries, *rate, replies).await;
        println!(
            "{name}: {rate} msg/s, first reply p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms; last reply p50 {:.1} ms  p99 {:.1} ms  (failed {})",
            l.first.0, l.first.1, l.first.2, l.last.0, l.last.1, l.failed
        );
        latency.push((l.first.0, l.first.1, l.failed));
    }
    let deliveries = demo.deliveries("e2e", END_TO_END, END_TO_END);
    let (acked, acked_in, took) = common::end_to_end(url, mock, &deliveries, replies).await;
    let sustained = acked as f64 / took;
    println!(
        "{name}: end to end, {acked} messages from {END_TO_END} parents acknowledged in {acked_in:.2} s, every reply in after {took:.2} s: {sustained:.0} messages/s"
    );
    Figures {
        name,
        latency,
        sustained,
    }
}

/// Ours: `chatbot serve` (web and workers in one process) on `stores`.
async fn ours(stores: Stores) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockGraph::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let demo = common::seed(dir.path(), &mock.base_url(), &stores);
    let server = common::serve(
        dir.path(),
        &mock.base_url(),
        &stores,
        &["serve"],
        "serve.log",
    );
    let name = format!("ours, {}", stores.describe());
    let figures = measure(name, &format!("{}{WEBHOOK}", server.base), &mock, &demo, 2).await;
    drop(server);
    mock.stop();
    figures
}

/// pywa, installed once into [`VENV`], with the same kind of number and secret.
async fn pywa() -> Result<Figures, String> {
    let python = common::venv(
        VENV,
        &PYWA,
        "import pywa, fastapi, uvicorn, uvloop; print(pywa.__version__)",
        "4.5.0",
    )?;
    let mock = MockGraph::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let demo = Demo {
        phone_number_id: "1555000111".into(),
        app_secret: "bench-app-secret".into(),
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pywa.log");
    let child = Command::new(&python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/pywa_bot.py"))
        .args([
            &port.to_string(),
            &demo.phone_number_id,
            &demo.app_secret,
            &mock.base_url(),
        ])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let server = common::Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("pywa ready")
    {
        if Instant::now() > deadline {
            return Err("pywa did not start within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let name = "pywa 4.5 (FastAPI, uvicorn + uvloop)".to_string();
    let figures = measure(name, &format!("{}/webhook", server.base), &mock, &demo, 1).await;
    drop(server);
    mock.stop();
    Ok(figures)
}
