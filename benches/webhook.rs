//! Webhook load, from this process against `chatbot serve` running as a separate process on
//! loopback, next to a trivial endpoint (`GET /healthz`) of the same server:
//!
//! 1. saturation: connections sending back to back for a few seconds, at 64, 256 and 512
//!    connections; requests per second, the median of three rounds that alternate the trivial
//!    endpoint and the webhook at each level; each endpoint's saturation is its best level;
//! 2. a fixed 2,000 requests per second (open loop: latency counted from when each request was
//!    due, so a stall is not hidden); p50 / p99 / max;
//! 3. reply latency at 20 and 100 messages a second (below); then end to end: signed
//!    deliveries from many parents until every reply has reached the mock Graph API; inbound
//!    messages answered per second.
//!
//! Webhook deliveries are real: signed, each with its own message id, parsed, deduplicated,
//! numbered and queued. Phases 1-2 run against `serve --no-workers` (acknowledging only);
//! phase 3 against `serve` with its workers. The embedded SQLite queue unless `REDIS_URL` is
//! set (and `DATABASE_URL` for the data: the run makes a fresh database beside it and drops it
//! afterwards, and deletes its queue keys from Redis).
//!
//!     cargo bench --bench webhook
//!     BENCH_SECONDS=10 cargo bench --bench webhook
//!     BENCH_SKIP_ACK=1 cargo bench --bench webhook    # reply latency and end to end only
//!
//! Phase 3 starts with reply latency: one "hi" from each of 200 (then 1,000) new parents at 20
//! (then 100) messages a second, open loop; the time from when each was due to its first and
//! its last reply at the mock Graph API.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chatbot::channels::mock_graph::MockGraph;
use chatbot::channels::whatsapp_cloud::sign;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_chatbot");
/// Connections of the fixed-rate and end-to-end phases.
const CONNECTIONS: usize = 64;
/// Connections of the saturation phase. Group commit needs requests waiting to fill its
/// batches: at 64 the webhook's writer still leaves the CPU idle a fifth of the time, while
/// the trivial endpoint is at its peak; so each endpoint's saturation is its best of these.
/// At 256 connections every waiting request fits one batch (`MAX_BATCH`), and while the
/// writer stores it the CPU still idles a tenth of the time; at 512 the next batch is already
/// waiting (2026-12-03: webhook +5-10%, the trivial endpoint as well or better).
const LEVELS: [usize; 3] = [64, 256, 512];
const FIXED_RATE: u64 = 2_000;
/// Saturation rounds (trivial, webhook, trivial, webhook...).
const ROUNDS: usize = 3;
const WEBHOOK: &str = "/api/v1/chatbot/webhooks/whatsapp/";

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// With `DATABASE_URL`: the database this run created (a run must not find an earlier run's
/// sessions and message ids, which it would rightly not answer again).
static DATABASE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Create a fresh database beside the one `DATABASE_URL` names; returns its URL and name.
async fn fresh_database(url: &str) -> (String, String) {
    use sea_orm::ConnectionTrait;
    let name = format!("chatbot_bench_{}", std::process::id());
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

fn command(data_dir: &Path, mock: &str) -> Command {
    let mut cmd = Command::new(BIN);
    if let Some(url) = DATABASE.get() {
        cmd.env("DATABASE_URL", url);
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
        // Meta's default pace would make phase 3 measure the limiter, not the pipeline.
        .env("CHATBOT_SEND_RATE", "10000");
    cmd
}

fn serve(data_dir: &Path, mock: &str, args: &[&str], log: &str) -> Server {
    let log_path = data_dir.join(log);
    let child = command(data_dir, mock)
        .env("CHATBOT_LISTEN", "127.0.0.1:0")
        // Each server its own queue (on a shared Redis, phase 3 must not inherit phase 1's jobs).
        .env(
            "CHATBOT_QUEUE_NAMESPACE",
            format!("bench-{}-{log}", std::process::id()).replace('.', "-"),
        )
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
type Delivery = (bytes::Bytes, String);

struct Demo {
    phone_number_id: String,
    app_secret: String,
}

impl Demo {
    /// `n` deliveries of "hi" from `senders` different phones, each with its own message id.
    fn deliveries(&self, tag: &str, n: usize, senders: usize) -> Vec<Delivery> {
        self.deliveries_from(tag, n, senders, 0)
    }

    /// [`Self::deliveries`] from phones numbered from `first` on.
    fn deliveries_from(&self, tag: &str, n: usize, senders: usize, first: usize) -> Vec<Delivery> {
        (0..n)
            .map(|i| {
                let from = format!("23480{:08}", 10_000_000 + first + i % senders);
                let body = serde_json::to_vec(&json!({
                    "object": "whatsapp_business_account",
                    "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {"display_phone_number": "15550100001", "phone_number_id": self.phone_number_id},
                        "contacts": [{"profile": {"name": "Parent"}, "wa_id": from}],
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

#[derive(Clone, Copy)]
enum Target<'a> {
    Trivial,
    Webhook(&'a [Delivery]),
}

fn request(
    client: &reqwest::Client,
    base: &str,
    target: Target<'_>,
    i: usize,
) -> reqwest::RequestBuilder {
    match target {
        Target::Trivial => client.get(format!("{base}/healthz")),
        Target::Webhook(deliveries) => {
            let (body, signature) = &deliveries[i % deliveries.len()];
            client
                .post(format!("{base}{WEBHOOK}"))
                .header("content-type", "application/json")
                .header("X-Hub-Signature-256", signature)
                .body(body.clone())
        }
    }
}

fn client(connections: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections * 2)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// CPU time a process has used so far, user and system, in seconds (Linux; `None` elsewhere).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and
    // 13th, in clock ticks of 1/100 s (USER_HZ on every Linux architecture).
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// One saturation round: successful requests per second, and CPU microseconds per request
/// of the server and of this process (the load generator), when they can be read.
#[derive(Clone)]
struct Round {
    rate: f64,
    server_us: Option<f64>,
    client_us: Option<f64>,
}

/// Closed loop, `connections` at a time for `seconds`, against `server`.
async fn saturate(server: &Server, target: Target<'_>, connections: usize, seconds: f64) -> Round {
    let base = server.base.as_str();
    let client = client(connections);
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let cpu = || {
        (
            cpu_seconds(server.child.id()),
            cpu_seconds(std::process::id()),
        )
    };
    let (server_before, client_before) = cpu();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    // Scoped borrow of `target`: run the loops on this task with join_all.
    let loops = (0..connections).map(|_| {
        let (client, next, ok) = (client.clone(), next.clone(), ok.clone());
        async move {
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if let Ok(r) = request(&client, base, target, i).send().await
                    && r.status().is_success()
                {
                    let _ = r.bytes().await;
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    futures::future::join_all(loops).await;
    let elapsed = started.elapsed().as_secs_f64();
    let (server_after, client_after) = cpu();
    let done = ok.load(Ordering::Relaxed).max(1) as f64;
    let per_request =
        |before: Option<f64>, after: Option<f64>| Some((after? - before?) * 1e6 / done);
    Round {
        rate: ok.load(Ordering::Relaxed) as f64 / elapsed,
        server_us: per_request(server_before, server_after),
        client_us: per_request(client_before, client_after),
    }
}

/// Open loop at `rate` per second for `seconds`: latency percentiles in milliseconds, and
/// how many requests failed.
async fn fixed_rate(
    base: &str,
    target: Target<'_>,
    rate: u64,
    seconds: f64,
) -> (f64, f64, f64, usize) {
    let client = client(CONNECTIONS);
    let total = (rate as f64 * seconds) as usize;
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let started = Instant::now() + Duration::from_millis(50);
    let requests = (0..total).map(|i| {
        let client = client.clone();
        let due = started + interval * i as u32;
        async move {
            tokio::time::sleep_until(due.into()).await;
            let ok = match request(&client, base, target, i).send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            (due.elapsed(), ok)
        }
    });
    let results = futures::future::join_all(requests).await;
    let failed = results.iter().filter(|(_, ok)| !ok).count();
    let mut ms: Vec<f64> = results
        .iter()
        .map(|(d, _)| d.as_secs_f64() * 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    (pct(0.50), pct(0.99), ms[ms.len() - 1], failed)
}

/// Percentiles p50, p99 and max of `ms`, in milliseconds.
fn percentiles(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    (pct(0.50), pct(0.99), ms[ms.len() - 1])
}

/// Send `deliveries` (each from its own parent, answered with two messages) at `rate` per
/// second, open loop; for each, the time from when it was due to its first and its last reply
/// at `mock`. Returns the percentiles of both and how many were not acknowledged.
async fn reply_latency(
    base: &str,
    mock: &MockGraph,
    deliveries: &[Delivery],
    rate: u64,
) -> ((f64, f64, f64), (f64, f64, f64), usize) {
    let client = client(CONNECTIONS);
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let started = Instant::now() + Duration::from_millis(50);
    let sent = (0..deliveries.len()).map(|i| {
        let client = client.clone();
        let due = started + interval * i as u32;
        async move {
            tokio::time::sleep_until(due.into()).await;
            let ok = match request(&client, base, Target::Webhook(deliveries), i)
                .send()
                .await
            {
                Ok(r) => r.status().is_success(),
                Err(_) => false,
            };
            (due, ok)
        }
    });
    let sent = futures::future::join_all(sent).await;
    let failed = sent.iter().filter(|(_, ok)| !ok).count();
    // The sender of each delivery, as the mock reports recipients (digits).
    let from = |i: usize| {
        let body: Value = serde_json::from_slice(&deliveries[i].0).unwrap();
        body["entry"][0]["changes"][0]["value"]["messages"][0]["from"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut replies: std::collections::HashMap<String, Vec<Instant>>;
    loop {
        replies = std::collections::HashMap::new();
        for r in mock.received() {
            replies.entry(r.to()).or_default().push(r.at);
        }
        let all = (0..deliveries.len())
            .filter(|&i| sent[i].1)
            .all(|i| replies.get(&from(i)).is_some_and(|at| at.len() >= 2));
        if all {
            break;
        }
        assert!(Instant::now() < deadline, "replies missing after 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut first, mut last) = (Vec::new(), Vec::new());
    for (i, (due, ok)) in sent.iter().enumerate() {
        if !ok {
            continue;
        }
        let at = &replies[&from(i)];
        let ms = |t: &Instant| t.saturating_duration_since(*due).as_secs_f64() * 1000.0;
        first.push(at.iter().map(ms).fold(f64::INFINITY, f64::min));
        last.push(at.iter().map(ms).fold(0.0, f64::max));
    }
    (percentiles(first), percentiles(last), failed)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(seconds));
}

async fn run(seconds: f64) {
    let admin_url = std::env::var("DATABASE_URL").ok();
    let mut created = None;
    if let Some(url) = &admin_url {
        let (fresh, name) = fresh_database(url).await;
        DATABASE.set(fresh).unwrap();
        created = Some(name);
    }
    let dir = tempfile::tempdir().unwrap();
    let mock = MockGraph::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let seeded = command(dir.path(), &mock.base_url())
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
    let demo = Demo {
        phone_number_id: wa["phone_number_id"].as_str().unwrap().into(),
        app_secret: wa["app_secret"].as_str().unwrap().into(),
    };
    let queue = if std::env::var_os("REDIS_URL").is_some() {
        "Redis"
    } else {
        "embedded SQLite"
    };
    let data = if std::env::var_os("DATABASE_URL").is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "webhook benchmark: {seconds} s per phase, {data} data, {queue} queue, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // Phases 1 and 2: acknowledging only (`BENCH_SKIP_ACK=1` skips them).
    if std::env::var_os("BENCH_SKIP_ACK").is_none() {
        let server = serve(
            dir.path(),
            &mock.base_url(),
            &["serve", "--no-workers"],
            "web.log",
        );
        let warm = demo.deliveries("warm", 2_000, 2_000);
        saturate(&server, Target::Trivial, CONNECTIONS, 1.0).await;
        saturate(&server, Target::Webhook(&warm), CONNECTIONS, 1.0).await;

        // Interleaved rounds, medians: on a shared 2-core machine one phase alone swings by
        // half, and a trivial phase measured at a good moment next to a webhook phase at a bad
        // one (or the reverse) says little about their ratio.
        let mut trivial = vec![Vec::new(); LEVELS.len()];
        let mut acks = vec![Vec::new(); LEVELS.len()];
        for round in 0..ROUNDS {
            for (level, &connections) in LEVELS.iter().enumerate() {
                trivial[level].push(saturate(&server, Target::Trivial, connections, seconds).await);
                let fresh = demo.deliveries(
                    &format!("sat{round}-{connections}"),
                    (seconds * 40_000.0) as usize,
                    50_000,
                );
                let round = saturate(&server, Target::Webhook(&fresh), connections, seconds).await;
                if round.rate * seconds > fresh.len() as f64 {
                    println!(
                        "note: more requests than deliveries at {connections} connections; some were repeats"
                    );
                }
                acks[level].push(round);
            }
        }
        let show = |v: &[Round]| {
            v.iter()
                .map(|r| format!("{:.0}", r.rate))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // Median CPU microseconds per request over the rounds, or "?" where /proc is not read.
        let cpu = |v: &[Round], of: fn(&Round) -> Option<f64>| {
            let mut us: Vec<f64> = v.iter().filter_map(of).collect();
            if us.len() < v.len() {
                return "?".to_string();
            }
            format!("{:.1}", median(&mut us))
        };
        // Each endpoint's best level: (median, connections).
        let (mut best_trivial, mut best_acks) = ((0.0, 0), (0.0, 0));
        for (level, &connections) in LEVELS.iter().enumerate() {
            let (rounds_t, rounds_a) = (&trivial[level], &acks[level]);
            println!(
                "saturation      {connections:>3} connections, rounds: GET /healthz {} req/s; webhook {} req/s",
                show(rounds_t),
                show(rounds_a)
            );
            let rate = |v: &[Round]| median(&mut v.iter().map(|r| r.rate).collect::<Vec<_>>());
            let (t, a) = (rate(rounds_t), rate(rounds_a));
            println!(
                "saturation      {connections:>3} connections, medians: GET /healthz {t:.0} req/s; webhook {a:.0} req/s ({:.0}%)",
                100.0 * a / t
            );
            println!(
                "saturation      {connections:>3} connections, CPU us per request (server / load generator): GET /healthz {} / {}; webhook {} / {}",
                cpu(rounds_t, |r| r.server_us),
                cpu(rounds_t, |r| r.client_us),
                cpu(rounds_a, |r| r.server_us),
                cpu(rounds_a, |r| r.client_us)
            );
            if t > best_trivial.0 {
                best_trivial = (t, connections);
            }
            if a > best_acks.0 {
                best_acks = (a, connections);
            }
        }
        let ((trivial, at_t), (acks, at_a)) = (best_trivial, best_acks);
        println!(
            "saturation      GET /healthz        {trivial:>9.0} req/s (median of {ROUNDS}, {at_t} connections)"
        );
        println!(
            "saturation      POST webhook (ack)  {acks:>9.0} req/s (median of {ROUNDS}, {at_a} connections)   {:.0}% of the trivial endpoint",
            100.0 * acks / trivial
        );

        let fixed = demo.deliveries("fixed", (seconds * FIXED_RATE as f64) as usize + 10, 50_000);
        let (p50, p99, max, failed) =
            fixed_rate(&server.base, Target::Trivial, FIXED_RATE, seconds).await;
        println!(
            "{FIXED_RATE} req/s      GET /healthz        p50 {p50:.2} ms  p99 {p99:.2} ms  max {max:.2} ms  failed {failed}"
        );
        let (p50, p99, max, failed) =
            fixed_rate(&server.base, Target::Webhook(&fixed), FIXED_RATE, seconds).await;
        println!(
            "{FIXED_RATE} req/s      POST webhook (ack)  p50 {p50:.2} ms  p99 {p99:.2} ms  max {max:.2} ms  failed {failed}"
        );
    }

    // Phase 3: end to end, with the workers, from a fresh data dir.
    let dir = tempfile::tempdir().unwrap();
    let seeded = command(dir.path(), &mock.base_url())
        .args(["seed-demo", "--json"])
        .output()
        .unwrap();
    assert!(seeded.status.success());
    let server = serve(dir.path(), &mock.base_url(), &["serve"], "serve.log");
    // Reply latency: one "hi" per parent, each parent new, at a fixed rate; from when each
    // message was due to when its first reply (and its last) reached the mock Graph API.
    // Parents of their own, numbered after the end-to-end phase's.
    for (rate, count, first) in [(20, 200, 1_000_000), (100, 1_000, 2_000_000)] {
        let deliveries = demo.deliveries_from(&format!("lat{rate}"), count, count, first);
        let (first, last, failed) = reply_latency(&server.base, &mock, &deliveries, rate).await;
        println!(
            "{rate} msg/s        reply latency       first reply p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms; last reply p50 {:.1} ms  p99 {:.1} ms  (failed {failed})",
            first.0, first.1, first.2, last.0, last.1
        );
    }
    let messages = 2_000;
    let before = mock.received().len();
    let deliveries = demo.deliveries("e2e", messages, messages);
    let started = Instant::now();
    let acked = saturate_once(&server.base, &deliveries).await;
    let acked_in = started.elapsed();
    let want = before + 2 * acked;
    let deadline = Instant::now() + Duration::from_secs(600);
    while mock.received().len() < want {
        assert!(
            Instant::now() < deadline,
            "only {} of {want} replies",
            mock.received().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    println!(
        "end to end      {acked} messages from {messages} parents acknowledged in {:.2} s, all {} replies at the mock Graph API after {:.2} s: {:.0} messages/s ({:.0} replies/s)",
        acked_in.as_secs_f64(),
        2 * acked,
        took.as_secs_f64(),
        acked as f64 / took.as_secs_f64(),
        2.0 * acked as f64 / took.as_secs_f64()
    );
    drop(server);
    mock.stop();
    if let Ok(url) = std::env::var("REDIS_URL") {
        forget_queues(&url, &format!("bench-{}-*", std::process::id())).await;
    }
    if let (Some(url), Some(name)) = (admin_url, created) {
        use sea_orm::ConnectionTrait;
        let admin = sea_orm::Database::connect(&url).await.unwrap();
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
    }
}

/// Send each delivery once, `CONNECTIONS` at a time; returns how many were acknowledged.
async fn saturate_once(base: &str, deliveries: &[Delivery]) -> usize {
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
                if let Ok(r) = request(&client, base, Target::Webhook(deliveries), i)
                    .send()
                    .await
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

/// Delete this run's queue keys from a shared Redis (a run leaves hundreds of thousands).
async fn forget_queues(url: &str, pattern: &str) {
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
