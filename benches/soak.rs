//! Soak: many parents' messages through a web process and two worker processes on PostgreSQL
//! and Redis, while workers are killed (`kill -9`) and restarted and Redis is restarted once
//! (its append-only file on); then every reply is accounted for. Prints the lost, doubled and
//! out-of-order replies, and fails (exit 1) unless all three are 0.
//!
//! - lost: an acknowledged message that never reached the engine, or a reply it logged that
//!   never reached the mock Graph API;
//! - doubled: a reply that reached the mock Graph API more than once;
//! - out of order: a parent's replies reaching the mock in another order than the parent's
//!   messages (and each message's replies in theirs).
//!
//! A parent sends its next message once the previous one was acknowledged; a refused post
//! (503 while Redis is down) is sent again, as Meta would. Needs `DATABASE_URL` (the run makes
//! a fresh database beside it and drops it afterwards) and `redis-server` (the run starts its
//! own, on a free port).
//!
//!     DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench soak
//!     SOAK_MESSAGES=2000 SOAK_PARENTS=200 SOAK_KILLS=3 cargo test --release --bench soak
//!
//! Defaults: 100,000 messages from 5,000 parents, ten kills, `SOAK_ORPHAN_SECS=10` (the
//! workers' `CHATBOT_ORPHAN_TIMEOUT_SECS`).

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::{Duration, Instant};

use chatbot::channels::mock_graph::MockGraph;
use common::redis_server::RedisServer;
use common::{Delivery, Stores, WEBHOOK};

/// How long no reply must come before the run is counted: longer than a killed worker's jobs
/// take to run again (the orphan timeout, and the messages set aside behind them after).
const QUIET: Duration = Duration::from_secs(45);

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let clean = runtime.block_on(run());
    if !clean {
        std::process::exit(1);
    }
}

/// Returns whether every reply was accounted for.
async fn run() -> bool {
    let messages = setting("SOAK_MESSAGES", 100_000);
    let parents = setting("SOAK_PARENTS", 5_000).clamp(1, messages.max(1));
    let kills = setting("SOAK_KILLS", 10);
    let Ok(admin) = std::env::var("DATABASE_URL") else {
        println!("soak not run: set DATABASE_URL (PostgreSQL)");
        return true;
    };
    let mut redis = RedisServer::start("everysec");
    let (database, name) = common::fresh_database(&admin, "soak").await;
    let stores = Stores {
        database: Some(database.clone()),
        redis: Some(redis.url()),
    };
    let dir = tempfile::tempdir().unwrap();
    let mock = MockGraph::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let demo = common::seed(dir.path(), &mock.base_url(), &stores);
    let namespace = format!("soak-{}", std::process::id());
    // A killed worker's jobs are run again by the other after this long.
    let orphan = setting("SOAK_ORPHAN_SECS", 10).to_string();
    let log = std::env::var("SOAK_LOG").unwrap_or_else(|_| "warn,chatbot::app=info".into());
    let env = [
        ("CHATBOT_LOG", log.as_str()),
        ("CHATBOT_QUEUE_NAMESPACE", namespace.as_str()),
        ("CHATBOT_ORPHAN_TIMEOUT_SECS", orphan.as_str()),
    ];
    let web = common::serve_with(
        dir.path(),
        &mock.base_url(),
        &stores,
        &["serve", "--no-workers"],
        "web.log",
        &env,
    );
    // As Meta does, the mock posts each message's `sent` status to the webhook: how a reply
    // whose worker was killed before recording it is known to have gone out.
    mock.post_statuses_to(&format!("{}{WEBHOOK}", web.base), &demo.app_secret);
    let worker = |n: usize| {
        common::command(dir.path(), &mock.base_url(), &stores)
            .envs(env)
            .arg("worker")
            .stdout(Stdio::null())
            .stderr(
                // Appended to: a restarted worker's log follows the killed one's.
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.path().join(format!("worker{n}.log")))
                    .unwrap(),
            )
            .spawn()
            .expect("chatbot worker starts")
    };
    let mut workers = [worker(0), worker(1)];
    println!(
        "soak: {messages} messages from {parents} parents, web + 2 workers on PostgreSQL + Redis, {kills} kill -9, one Redis restart"
    );

    // Each parent's messages in order, many parents at once.
    let each = messages.div_ceil(parents);
    let url = format!("{}{WEBHOOK}", web.base);
    let acked = Arc::new(AtomicUsize::new(0));
    let sent: Vec<Vec<Delivery>> = (0..parents)
        .map(|p| demo.deliveries_from(&format!("soak.{p}"), each, 1, p))
        .collect();
    let sent = Arc::new(sent);
    let started = Instant::now();
    let lanes = (0..common::CONNECTIONS).map(|lane| {
        let (sent, acked, url) = (sent.clone(), acked.clone(), url.clone());
        tokio::spawn(async move {
            let client = common::client(1);
            for k in 0..each {
                for p in (lane..sent.len()).step_by(common::CONNECTIONS) {
                    loop {
                        let ok = common::post(&client, &url, &sent[p][k])
                            .send()
                            .await
                            .is_ok_and(|r| r.status().is_success());
                        if ok {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    });
    let lanes: Vec<_> = lanes.collect();
    let total = each * parents;

    // The chaos, spread over the run by the replies that came (at least one per message), so
    // that workers die while they have work; at most a minute apart.
    let mut restarted = false;
    for kill in 0..kills {
        let at = total * (kill + 1) / (kills + 2);
        let waited = Instant::now();
        while mock.count() < at && waited.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let victim = kill % 2;
        let _ = workers[victim].kill();
        let _ = workers[victim].wait();
        workers[victim] = worker(victim);
        if !restarted && kill + 1 >= kills / 2 {
            restart(&mut redis);
            restarted = true;
        }
    }
    if !restarted {
        restart(&mut redis);
    }
    for lane in lanes {
        lane.await.unwrap();
    }
    let acked_in = started.elapsed();

    // Until the replies stop coming.
    let mut last = (mock.count(), Instant::now());
    while last.1.elapsed() < QUIET {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = mock.count();
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    let took = started.elapsed() - QUIET;
    let counts = account(&database, &mock, total).await;
    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    drop(web);
    mock.stop();
    let clean = counts.lost == 0 && counts.doubled == 0 && counts.out_of_order == 0;
    if clean {
        common::drop_database(&admin, &name).await;
    } else {
        // Kept for a look: the processes' logs and the message log.
        let kept = dir.keep();
        println!(
            "soak: logs kept in {}, the database `{name}` kept",
            kept.display()
        );
    }
    println!(
        "soak: {total} messages acknowledged in {:.1} s, {} replies in {:.1} s ({:.0} messages/s)",
        acked_in.as_secs_f64(),
        counts.replies,
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    );
    println!(
        "soak: lost {}, doubled {}, out of order {}",
        counts.lost, counts.doubled, counts.out_of_order
    );
    clean
}

/// Redis shut down (its append-only file synced) and started again half a second later.
fn restart(redis: &mut RedisServer) {
    redis.shutdown();
    std::thread::sleep(Duration::from_millis(500));
    redis.start_again();
}

struct Counts {
    replies: usize,
    lost: usize,
    doubled: usize,
    out_of_order: usize,
}

/// Every reply the message log holds, against what reached the mock Graph API.
async fn account(database: &str, mock: &MockGraph, total: usize) -> Counts {
    use sea_orm::{ConnectionTrait, Statement};
    let db = sea_orm::Database::connect(database).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT direction, user_id, provider_message_id, reply_to, id FROM message_log \
             WHERE channel = 'whatsapp' ORDER BY id",
        ))
        .await
        .unwrap();
    // A message's place in its parent's sequence, from its id (`wamid.bench.soak.P.K`).
    let place = |id: &str| -> Option<usize> { id.rsplit('.').next()?.parse().ok() };
    let mut inbound = std::collections::HashSet::new();
    // Each logged reply: (parent, message's place, reply's place among its message's).
    let mut replies: HashMap<String, (String, usize, usize)> = HashMap::new();
    let mut unmarked: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
    let mut per_message: HashMap<String, usize> = HashMap::new();
    for row in &rows {
        let direction: String = row.try_get("", "direction").unwrap();
        let user: String = row.try_get("", "user_id").unwrap();
        let provider: Option<String> = row.try_get("", "provider_message_id").unwrap();
        if direction == "in" {
            inbound.extend(provider);
            continue;
        }
        let reply_to: Option<String> = row.try_get("", "reply_to").unwrap();
        let Some(reply_to) = reply_to else { continue };
        let Some(k) = place(&reply_to) else { continue };
        let index = per_message.entry(reply_to.clone()).or_default();
        let at = (k, *index);
        *index += 1;
        let parent: String = user.chars().filter(char::is_ascii_digit).collect();
        match provider {
            Some(id) => {
                replies.insert(id, (parent, at.0, at.1));
            }
            // Sent but not marked (the worker was killed in between), or never sent.
            None => unmarked.entry(parent).or_default().push(at),
        }
    }
    let received = mock.received();
    let never_handled = total.saturating_sub(inbound.len());
    let mut lost = never_handled;
    // Receipts that no logged reply accounts for: second copies.
    let mut extra = 0;
    let mut seen: HashMap<(String, usize, usize), usize> = HashMap::new();
    let mut order: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
    for (n, r) in received.iter().enumerate() {
        let id = format!("wamid.mock.{}", n + 1);
        let to = r.to();
        let at = match replies.get(&id) {
            Some((_, k, i)) => Some((*k, *i)),
            // A reply whose mark was lost: the parent's earliest unmarked one.
            None => unmarked
                .get_mut(&to)
                .and_then(|list| (!list.is_empty()).then(|| list.remove(0))),
        };
        let Some(at) = at else {
            extra += 1;
            continue;
        };
        *seen.entry((to.clone(), at.0, at.1)).or_default() += 1;
        order.entry(to).or_default().push(at);
    }
    let doubled = extra + seen.values().map(|n| n.saturating_sub(1)).sum::<usize>();
    lost += replies
        .values()
        .filter(|(p, k, i)| !seen.contains_key(&(p.clone(), *k, *i)))
        .count();
    let unsent = unmarked.values().map(Vec::len).sum::<usize>();
    lost += unsent;
    if lost > 0 {
        println!(
            "soak: of the lost, {never_handled} messages never reached the engine, {unsent} logged replies never reached the mock"
        );
        let some: Vec<String> = unmarked
            .iter()
            .flat_map(|(parent, list)| {
                list.iter()
                    .map(move |(k, i)| format!("{parent}: message {k} reply {i}"))
            })
            .take(10)
            .collect();
        if !some.is_empty() {
            println!("soak: never reached the mock: {}", some.join("; "));
        }
    }
    let out_of_order = order
        .values()
        .map(|seq| seq.windows(2).filter(|w| w[1] < w[0]).count())
        .sum();
    Counts {
        replies: received.len(),
        lost,
        doubled,
        out_of_order,
    }
}
