//! What the webhook and pipeline benchmarks share: a `chatbot` process of this build on
//! loopback, its stores, the demo school's signed deliveries, and the clocks.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chatbot::channels::mock_graph::MockGraph;
use chatbot::channels::whatsapp_cloud::sign;
use serde_json::{Value, json};

#[path = "../../tests/common/redis_server.rs"]
pub mod redis_server;

pub const BIN: &str = env!("CARGO_BIN_EXE_chatbot");
/// Connections of the fixed-rate and end-to-end phases.
pub const CONNECTIONS: usize = 64;
pub const WEBHOOK: &str = "/api/v1/chatbot/webhooks/whatsapp/";

/// A server under test; stopped (SIGTERM, then waited for) when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a server's base ends with its port")
    }
}

/// A Python virtualenv at `dir` with `packages` installed: once, and again only when `probe`
/// (Python code printing a version) no longer prints `version`. Returns its `python`.
pub fn venv(dir: &str, packages: &[&str], probe: &str, version: &str) -> Result<String, String> {
    let python = format!("{dir}/bin/python");
    let installed = Command::new(&python)
        .args(["-c", probe])
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == version);
    if !installed {
        let ok = Command::new("python3")
            .args(["-m", "venv", dir])
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(format!("{dir}/bin/pip"))
                .args(["install", "-q"])
                .args(packages)
                .status()
                .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("cannot install {} into {dir}", packages.join(" ")));
        }
    }
    Ok(python)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Where a server keeps its data and its queue: the embedded SQLite files in its data
/// directory unless a PostgreSQL database (made for the run) or Redis is given.
#[derive(Clone, Default)]
pub struct Stores {
    pub database: Option<String>,
    pub redis: Option<String>,
}

impl Stores {
    /// "SQLite", or "PostgreSQL + Redis" and the like.
    pub fn describe(&self) -> String {
        let data = if self.database.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        match self.redis {
            Some(_) => format!("{data} + Redis"),
            None => data.to_string(),
        }
    }
}

/// Create a fresh database beside the one `url` names; returns its URL and name (a run must
/// not find an earlier run's sessions and message ids, which it would rightly not answer).
pub async fn fresh_database(url: &str, tag: &str) -> (String, String) {
    use sea_orm::ConnectionTrait;
    let name = format!("chatbot_bench_{}_{tag}", std::process::id());
    let admin = sea_orm::Database::connect(url)
        .await
        .expect("DATABASE_URL reachable");
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let base = url.split('?').next().unwrap();
    let server = &base[..base.rfind('/').expect("a database URL with a path")];
    (format!("{server}/{name}"), name)
}

/// Drop a database [`fresh_database`] made.
pub async fn drop_database(url: &str, name: &str) {
    use sea_orm::ConnectionTrait;
    let admin = sea_orm::Database::connect(url).await.unwrap();
    let _ = admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}

/// `chatbot` with the benchmarks' settings, on `stores`, sending to `mock`.
pub fn command(data_dir: &Path, mock: &str, stores: &Stores) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("DATABASE_URL").env_remove("REDIS_URL");
    if let Some(url) = &stores.database {
        cmd.env("DATABASE_URL", url);
    }
    if let Some(url) = &stores.redis {
        cmd.env("REDIS_URL", url);
    }
    cmd.env("CHATBOT_DATA_DIR", data_dir)
        // Warnings, and the ready line that carries the address.
        .env("CHATBOT_LOG", "warn,chatbot::app=info")
        .env("CHATBOT_LOG_FORMAT", "json")
        .env("CHATBOT_WHATSAPP_API_BASE", mock)
        .env(
            "CHATBOT_SECRET_KEY",
            "bench-secret-key-0123456789abcdef-0123456789",
        )
        // Meta's default pace would make the replies measure the limiter, not the pipeline.
        .env("CHATBOT_SEND_RATE", "10000");
    cmd
}

/// Seed the demo school into `data_dir` (and `stores`); its WhatsApp number.
pub fn seed(data_dir: &Path, mock: &str, stores: &Stores) -> Demo {
    let seeded = command(data_dir, mock, stores)
        .args(["seed-demo", "--json"])
        .output()
        .unwrap();
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    let doc: Value = serde_json::from_slice(&seeded.stdout).unwrap();
    let wa = &doc["tenants"][0]["whatsapp"];
    Demo {
        phone_number_id: wa["phone_number_id"].as_str().unwrap().into(),
        app_secret: wa["app_secret"].as_str().unwrap().into(),
    }
}

/// Start `chatbot ARGS` and wait for its ready line; its log goes to `data_dir/log`.
pub fn serve(data_dir: &Path, mock: &str, stores: &Stores, args: &[&str], log: &str) -> Server {
    serve_with(data_dir, mock, stores, args, log, &[])
}

/// [`serve`] with more settings (`env`, applied last).
pub fn serve_with(
    data_dir: &Path,
    mock: &str,
    stores: &Stores,
    args: &[&str],
    log: &str,
    env: &[(&str, &str)],
) -> Server {
    let log_path = data_dir.join(log);
    let child = command(data_dir, mock, stores)
        .env("CHATBOT_LISTEN", "127.0.0.1:0")
        // Each server its own queue (on a shared Redis, a phase must not inherit another's
        // jobs).
        .env(
            "CHATBOT_QUEUE_NAMESPACE",
            format!("bench-{}-{log}", std::process::id()).replace('.', "-"),
        )
        .envs(env.iter().copied())
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("chatbot serve starts");
    // Owned by `Server` from here on, so it is stopped and waited for on every path.
    let mut server = Server {
        child,
        base: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(addr) = text.lines().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["message"] == "chatbot ready").then(|| v["addr"].as_str().map(str::to_string))?
        }) {
            server.base = format!("http://{addr}");
            return server;
        }
        assert!(Instant::now() < deadline, "server not ready:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A signed delivery: (body, signature).
pub type Delivery = (bytes::Bytes, String);

/// The WhatsApp number deliveries are written to.
pub struct Demo {
    pub phone_number_id: String,
    pub app_secret: String,
}

impl Demo {
    /// `n` deliveries of "hi" from `senders` different phones, each with its own message id.
    pub fn deliveries(&self, tag: &str, n: usize, senders: usize) -> Vec<Delivery> {
        self.deliveries_from(tag, n, senders, 0)
    }

    /// [`Self::deliveries`] from phones numbered from `first` on.
    pub fn deliveries_from(
        &self,
        tag: &str,
        n: usize,
        senders: usize,
        first: usize,
    ) -> Vec<Delivery> {
        (0..n)
            .map(|i| {
                let from = format!("23480{:08}", 10_000_000 + first + i % senders);
                // `user_id`: Meta's business-scoped user id, which pywa 4.5 requires.
                let body = serde_json::to_vec(&json!({
                    "object": "whatsapp_business_account",
                    "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {"display_phone_number": "15550100001", "phone_number_id": self.phone_number_id},
                        "contacts": [{"profile": {"name": "Parent"}, "wa_id": from, "user_id": format!("NG.{from}")}],
                        "messages": [{"from": from, "id": format!("wamid.bench.{tag}.{i}"),
                                      "timestamp": "1763800000", "type": "text", "text": {"body": "hi"}}]
                    }}]}]
                }))
                .unwrap();
                let signature = sign(&body, &self.app_secret);
                (bytes::Bytes::from(body), signature)
            })
            .collect()
    }
}

/// The sender of a delivery, as the mock reports recipients (digits).
pub fn sender(delivery: &Delivery) -> String {
    let body: Value = serde_json::from_slice(&delivery.0).unwrap();
    body["entry"][0]["changes"][0]["value"]["messages"][0]["from"]
        .as_str()
        .unwrap()
        .to_string()
}

/// POST `delivery` to `url`, signed.
pub fn post(client: &reqwest::Client, url: &str, delivery: &Delivery) -> reqwest::RequestBuilder {
    let (body, signature) = delivery;
    client
        .post(url)
        .header("content-type", "application/json")
        .header("X-Hub-Signature-256", signature)
        .body(body.clone())
}

pub fn client(connections: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections * 2)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Percentiles p50, p99 and max of `ms`, in milliseconds.
pub fn percentiles(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    (pct(0.50), pct(0.99), ms[ms.len() - 1])
}

/// What [`reply_latency`] measured: percentiles (p50, p99, max, in ms) of the first and the
/// last reply, and how many deliveries were not acknowledged.
pub struct Latency {
    pub first: (f64, f64, f64),
    pub last: (f64, f64, f64),
    pub failed: usize,
}

/// Send `deliveries` (each from its own parent, answered with `replies` messages) to `url` at
/// `rate` per second, open loop; for each, the time from when it was due to its first and its
/// last reply at `mock`.
pub async fn reply_latency(
    url: &str,
    mock: &MockGraph,
    deliveries: &[Delivery],
    rate: u64,
    replies: usize,
) -> Latency {
    let client = client(CONNECTIONS);
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let started = Instant::now() + Duration::from_millis(50);
    let sent = deliveries.iter().enumerate().map(|(i, delivery)| {
        let client = client.clone();
        let due = started + interval * i as u32;
        async move {
            tokio::time::sleep_until(due.into()).await;
            let ok = match post(&client, url, delivery).send().await {
                Ok(r) => r.status().is_success(),
                Err(_) => false,
            };
            (due, ok)
        }
    });
    let sent = futures::future::join_all(sent).await;
    let failed = sent.iter().filter(|(_, ok)| !ok).count();
    let from: Vec<String> = deliveries.iter().map(sender).collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut answered: std::collections::HashMap<String, Vec<Instant>>;
    loop {
        answered = std::collections::HashMap::new();
        for r in mock.received() {
            answered.entry(r.to()).or_default().push(r.at);
        }
        let all = (0..deliveries.len())
            .filter(|&i| sent[i].1)
            .all(|i| answered.get(&from[i]).is_some_and(|at| at.len() >= replies));
        if all {
            break;
        }
        assert!(Instant::now() < deadline, "replies missing after 180 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut first, mut last) = (Vec::new(), Vec::new());
    for (i, (due, ok)) in sent.iter().enumerate() {
        if !ok {
            continue;
        }
        let at = &answered[&from[i]];
        let ms = |t: &Instant| t.saturating_duration_since(*due).as_secs_f64() * 1000.0;
        first.push(at.iter().map(ms).fold(f64::INFINITY, f64::min));
        last.push(at.iter().map(ms).fold(0.0, f64::max));
    }
    Latency {
        first: percentiles(first),
        last: percentiles(last),
        failed,
    }
}

/// Send each delivery once to `url`, `CONNECTIONS` at a time; returns how many were
/// acknowledged.
pub async fn send_all(url: &str, deliveries: &[Delivery]) -> usize {
    let client = client(CONNECTIONS);
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let loops = (0..CONNECTIONS).map(|_| {
        let (client, next, ok) = (client.clone(), next.clone(), ok.clone());
        async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= deliveries.len() {
                    break;
                }
                if let Ok(r) = post(&client, url, &deliveries[i]).send().await
                    && r.status().is_success()
                {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    futures::future::join_all(loops).await;
    ok.load(Ordering::Relaxed)
}

/// End to end: `deliveries` (one per parent) sent back to back, until all their replies
/// (`replies` each) reached `mock`: (acknowledged, seconds to acknowledge, seconds to the last
/// reply).
pub async fn end_to_end(
    url: &str,
    mock: &MockGraph,
    deliveries: &[Delivery],
    replies: usize,
) -> (usize, f64, f64) {
    let before = mock.count();
    let started = Instant::now();
    let acked = send_all(url, deliveries).await;
    let acked_in = started.elapsed();
    let want = before + replies * acked;
    let deadline = Instant::now() + Duration::from_secs(600);
    // Counted, not copied: the run's own bookkeeping must not take the server's CPU.
    while mock.count() < want {
        assert!(
            Instant::now() < deadline,
            "only {} of {want} replies",
            mock.count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (
        acked,
        acked_in.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    )
}

/// Delete this run's queue keys from a shared Redis (a run leaves hundreds of thousands).
pub async fn forget_queues(url: &str, pattern: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        eprintln!("cannot reach {url} to delete {pattern}");
        return;
    };
    let mut cursor = 0u64;
    loop {
        let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await
        else {
            return;
        };
        if !keys.is_empty() {
            let _: redis::RedisResult<i64> =
                redis::cmd("UNLINK").arg(&keys).query_async(&mut conn).await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// Settings of an in-process application on port 0 in `dir` (on `database_url`, or SQLite
/// there), its queue names prefixed `bench-<tag>-<pid>`, with API rate limits out of the way
/// of the measure.
pub fn in_process_settings(
    dir: &Path,
    database_url: Option<String>,
    tag: &str,
) -> chatbot::config::Settings {
    let mut settings = chatbot::config::Settings::default();
    settings.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    settings.storage.data_dir = dir.to_path_buf();
    settings.storage.database_url = database_url.map(chatbot::config::SecretUrl::new);
    settings.secrets.secret_key = Some(secrecy::SecretString::from(
        "bench-secret-key-0123456789abcdef-0123456789".to_string(),
    ));
    settings.queue.namespace = format!("bench-{tag}-{}", std::process::id());
    settings.auth.api_rate_per_minute = 10_000_000;
    settings.auth.api_rate_burst = 1_000_000;
    settings
}
