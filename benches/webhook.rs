//! Webhook load, from this process against `chatbot serve` running as a separate process on
//! loopback, next to a trivial endpoint (`GET /healthz`) of the same server:
//!
//! 1. saturation: connections sending back to back for a few seconds, at 64, 256 and 512
//!    connections; requests per second, the median of three rounds that alternate the trivial
//!    endpoint and the webhook at each level; each endpoint's saturation is its best level;
//! 2. a fixed 2,000 requests per second (open loop: latency counted from when each request was
//!    due, so a stall is not hidden); p50 / p99 / max;
//!
//! Webhook deliveries are real: signed, each with its own message id, parsed, deduplicated,
//! numbered and queued, against `serve --no-workers` (acknowledging only). The embedded SQLite
//! queue unless `REDIS_URL` is set (and `DATABASE_URL` for the data: the run makes a fresh
//! database beside it and drops it afterwards, and deletes its queue keys from Redis). Replies
//! (latency and end to end) are `cargo bench --bench pipeline`'s.
//!
//!     cargo bench --bench webhook
//!     BENCH_SECONDS=10 cargo bench --bench webhook

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{CONNECTIONS, Delivery, Server, Stores, WEBHOOK, client, median};

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
        Target::Webhook(deliveries) => common::post(
            client,
            &format!("{base}{WEBHOOK}"),
            &deliveries[i % deliveries.len()],
        ),
    }
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
    let mut stores = Stores {
        database: None,
        redis: std::env::var("REDIS_URL").ok(),
    };
    let mut created = None;
    if let Some(url) = &admin_url {
        let (fresh, name) = common::fresh_database(url, "webhook").await;
        stores.database = Some(fresh);
        created = Some(name);
    }
    let dir = tempfile::tempdir().unwrap();
    let mock = "http://127.0.0.1:9";
    let demo = common::seed(dir.path(), mock, &stores);
    println!(
        "webhook benchmark: {seconds} s per phase, {}, {} cores",
        stores.describe(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    {
        let server = common::serve(
            dir.path(),
            mock,
            &stores,
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

    if let Ok(url) = std::env::var("REDIS_URL") {
        common::forget_queues(&url, &format!("bench-{}-*", std::process::id())).await;
    }
    if let (Some(url), Some(name)) = (admin_url, created) {
        common::drop_database(&url, &name).await;
    }
}
