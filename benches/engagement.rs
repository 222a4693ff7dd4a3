//! Concurrent engagement chats against `chatbot serve` running as a separate process on
//! loopback: 10,000 WebSocket clients (this process) open `/ws/chat/newjob` on the demo school,
//! all of them open at once, and answer "yes" at every step until the server closes at the
//! checkout.
//!
//! Two ways of starting, `START`:
//! - `spread` (default): once every socket is open, visitors send their first message at
//!   evenly spread moments over one interval, as visitors arriving independently do;
//! - `together`: every visitor sends its first message at the same instant, so every 2 s all
//!   10,000 sessions are due in the same millisecond (the worst case for pacing).
//!
//! Prints:
//! - sessions open at once, and how many reached the checkout (normal close);
//! - the server's resident memory per open session: its RSS with every session open, in the
//!   middle of the dialogue, minus its RSS before the first connection, over the sessions (the
//!   demo data is seeded by a separate `chatbot seed-demo` first, so the seeding's freed memory
//!   is not reused by the sessions unseen);
//! - pacing: the gap between consecutive messages of a chunk as the clients receive them,
//!   against the configured interval (default 2 s): p50 / p99 / max of |gap - interval|.
//!
//! The clients run on the same machine (and cores) as the server, so their own delays are in
//! the pacing figures too.
//!
//!     cargo bench --bench engagement
//!     START=together cargo bench --bench engagement
//!     SESSIONS=2000 INTERVAL_MS=500 cargo bench --bench engagement

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Barrier, Mutex};
use tokio_tungstenite::tungstenite::Message;

use common::{BIN, Server};

/// The token `/metrics` asks for (`CHATBOT_METRICS_TOKEN`).
const METRICS_TOKEN: &str = "bench-metrics-token-0123456789";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

fn open_files_limit() -> u64 {
    let out = Command::new("sh")
        .args(["-c", "ulimit -n"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(u64::MAX)
}

async fn start_server(dir: &std::path::Path, interval_ms: u64) -> Server {
    let seeded = Command::new(BIN)
        .args(["seed-demo", "--json"])
        .env("CHATBOT_DATA_DIR", dir)
        .env("CHATBOT_LOG", "warn")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .stdout(Stdio::null())
        .status()
        .expect("chatbot seed-demo");
    assert!(seeded.success(), "chatbot seed-demo failed");
    let port = free_port();
    let child = Command::new(BIN)
        .args(["serve", "--no-workers"])
        .env("CHATBOT_DATA_DIR", dir)
        .env("CHATBOT_ENGAGEMENT_TENANT", "demo")
        .env("CHATBOT_LISTEN", format!("127.0.0.1:{port}"))
        .env("CHATBOT_METRICS_TOKEN", METRICS_TOKEN)
        .env("CHATBOT_LOG", "warn")
        .env("CHATBOT_ENGAGEMENT_INTERVAL_MS", interval_ms.to_string())
        .env("CHATBOT_ENGAGEMENT_MAX_PER_ADDRESS", "0")
        .env("CHATBOT_ENGAGEMENT_IDLE_SECS", "600")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .stdout(Stdio::null())
        .spawn()
        .expect("start chatbot serve");
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await
            && r.status().is_success()
        {
            return server;
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What one session saw.
#[derive(Default)]
struct Seen {
    gaps_ms: Vec<f64>,
    checkout: bool,
}

/// One visitor: first message, then "yes" at every wait, until the close.
/// `permit` bounds the connects in flight; it is released once this one is open.
async fn session(
    port: u16,
    lang: &str,
    start: Arc<Barrier>,
    opened: Arc<AtomicUsize>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    delay: Duration,
) -> Seen {
    let url = format!("ws://127.0.0.1:{port}/ws/chat/newjob");
    let mut seen = Seen::default();
    let mut ws = None;
    for _ in 0..20 {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((s, _)) => {
                ws = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    drop(permit);
    let Some(mut ws) = ws else {
        start.wait().await;
        return seen;
    };
    opened.fetch_add(1, Ordering::Relaxed);
    start.wait().await;
    tokio::time::sleep(delay).await;
    let first = json!({"lang": lang, "is_new_visitor": true, "price": 250, "currency": "EUR"});
    if ws.send(Message::text(first.to_string())).await.is_err() {
        return seen;
    }
    let yes = match lang {
        "ru" => "да",
        "pl" => "tak",
        _ => "yes",
    };
    let mut last: Option<Instant> = None;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let now = Instant::now();
                let v: Value = serde_json::from_str(&t).unwrap_or_default();
                if let Some(prev) = last {
                    seen.gaps_ms
                        .push(now.duration_since(prev).as_secs_f64() * 1000.0);
                }
                if v["status"] == "waiting" {
                    last = None;
                    let mut answer = first.clone();
                    answer["message"] = json!(yes);
                    if ws.send(Message::text(answer.to_string())).await.is_err() {
                        return seen;
                    }
                } else {
                    last = Some(now);
                }
            }
            Some(Ok(Message::Close(frame))) => {
                seen.checkout = frame.is_some_and(|f| u16::from(f.code) == 1000);
                return seen;
            }
            Some(Ok(_)) => {}
            _ => return seen,
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let sessions: usize = env_or("SESSIONS", 10_000);
    let interval_ms: u64 = env_or("INTERVAL_MS", 2_000);
    let together = match std::env::var("START").as_deref() {
        Ok("together") => true,
        Ok("spread") | Err(_) => false,
        Ok(other) => {
            eprintln!("START={other}: use `spread` or `together`");
            std::process::exit(2);
        }
    };
    let limit = open_files_limit();
    if (limit as usize) < sessions + 200 {
        eprintln!(
            "open files limit {limit} is below {} sessions: raise it (ulimit -n) or set SESSIONS",
            sessions
        );
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let server = start_server(dir.path(), interval_ms).await;
        let pid = server.child.id();
        // Warm up: one whole session, so lazily built state is not counted per session.
        let warm = session(
            server.port(),
            "en",
            Arc::new(Barrier::new(1)),
            Arc::new(AtomicUsize::new(0)),
            None,
            Duration::ZERO,
        )
        .await;
        assert!(warm.checkout, "a warm-up session reaches the checkout");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_kib(pid);

        let start = Arc::new(Barrier::new(sessions + 1));
        let opened = Arc::new(AtomicUsize::new(0));
        let results = Arc::new(Mutex::new(Vec::with_capacity(sessions)));
        let connecting = Arc::new(tokio::sync::Semaphore::new(256));
        let ramp = Instant::now();
        for i in 0..sessions {
            let (start, opened, results) = (start.clone(), opened.clone(), results.clone());
            let permit = connecting.clone().acquire_owned().await.unwrap();
            let lang = ["en", "ru", "pl"][i % 3];
            let port = server.port();
            let delay = if together {
                Duration::ZERO
            } else {
                Duration::from_millis(interval_ms) * i as u32 / sessions as u32
            };
            tokio::spawn(async move {
                let seen = session(port, lang, start, opened, Some(permit), delay).await;
                results.lock().await.push(seen);
            });
        }
        start.wait().await;
        let open_at_once = opened.load(Ordering::Relaxed);
        let ramp_secs = ramp.elapsed().as_secs_f64();
        // Mid-dialogue: every session has its first chunk under way (the last spread one
        // starts one interval after the first).
        tokio::time::sleep(Duration::from_millis(interval_ms * 3 / 2)).await;
        let during = rss_kib(pid);
        let deadline = Instant::now() + Duration::from_secs(30 + interval_ms * 20 / 1000);
        while results.lock().await.len() < sessions && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let results = results.lock().await;
        let checkouts = results.iter().filter(|s| s.checkout).count();
        let mut drift: Vec<f64> = results
            .iter()
            .flat_map(|s| s.gaps_ms.iter())
            .map(|g| (g - interval_ms as f64).abs())
            .collect();
        drift.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let per_session = (during.saturating_sub(before)) as f64 * 1024.0 / open_at_once.max(1) as f64;
        let how = if together {
            "first messages all at the same instant"
        } else {
            "first messages spread over one interval"
        };
        println!("engagement: {sessions} sessions against one `chatbot serve` (SQLite, no workers), interval {interval_ms} ms, {how}");
        println!("  open at once:          {open_at_once} (ramp {ramp_secs:.1} s)");
        println!("  reached the checkout:  {checkouts}");
        println!(
            "  server RSS:            {:.1} MiB before, {:.1} MiB with every session open",
            before as f64 / 1024.0,
            during as f64 / 1024.0
        );
        println!(
            "  memory per session:    {:.1} KiB (aim: under 20 KB)",
            per_session / 1024.0
        );
        println!(
            "  pacing drift |gap - {interval_ms} ms| over {} gaps: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (aim: within 50 ms)",
            drift.len(),
            percentile(&drift, 0.50),
            percentile(&drift, 0.99),
            drift.last().copied().unwrap_or(f64::NAN)
        );
        // The server's own share: how late it wrote each paced message (its histogram).
        let metrics = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/metrics", server.port()))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let bucket = |le: &str| -> f64 {
            let line = format!("chatbot_engagement_send_lag_seconds_bucket{{le=\"{le}\"}} ");
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(line.as_str()))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(f64::NAN)
        };
        let total = bucket("+Inf");
        println!(
            "  server's send lag over {total} sends: within 1 ms {:.2}%, 5 ms {:.2}%, 50 ms {:.2}%, 250 ms {:.2}%",
            100.0 * bucket("0.001") / total,
            100.0 * bucket("0.005") / total,
            100.0 * bucket("0.05") / total,
            100.0 * bucket("0.25") / total,
        );
        drop(server);
    });
}
