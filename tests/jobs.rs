//! The job loop over a real queue: SQLite (embedded) and Redis (services variant).

mod common;

use std::time::Duration;

use chatbot::config::{SecretUrl, Settings};
use chatbot::entities::{chat_session, message_log};
use chatbot::error::Error;
use chatbot::pipeline::JobQueue;
use chatbot::pipeline::cleanup::CleanupJob;
use chrono::Utc;
use common::fixture;
use common::{Role, TestApp, TestEnv, Variant, eventually, ingest_job};
use sea_orm::sqlx::{Connection, Row, SqliteConnection};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};

variants!(
    cleanup_job_runs_through_the_queue,
    conversation_counters_and_send_slots,
    a_message_set_aside_is_stored_again_when_its_turn_comes,
);

async fn cleanup_job_runs_through_the_queue(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let (db, key) = (&app.state.db, &app.state.secret);
    // Each fixture school has one expired session; add a live one to each.
    let schools = [
        fixture::school(db, key, "alpha", 1).await,
        fixture::school(db, key, "beta", 2).await,
    ];
    let now = Utc::now();
    for s in &schools {
        fixture::chat_session(
            db,
            s.ctx.id(),
            "+2348000000001",
            now + chrono::Duration::hours(1),
        )
        .await;
    }
    assert_eq!(chat_session::Entity::find().count(db).await.unwrap(), 4);
    // A third school's expired session waits for staff: not forgotten.
    let gamma = fixture::school(db, key, "gamma", 3).await;
    let waiting = gamma
        .ctx
        .find::<chat_session::Entity>()
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert!(waiting.expires_at < now);
    chatbot::conversation::handoff::take_over(db, &gamma.ctx, waiting.id, "key:test", now)
        .await
        .unwrap();

    // Transcripts: a message older than the retention (365 days by default) goes, a newer one
    // stays, in each school.
    for s in &schools {
        for (body, age) in [("old question", 400), ("recent question", 30)] {
            let at = now - chrono::Duration::days(age);
            message_log::ActiveModel {
                tenant_id: Set(s.ctx.id()),
                channel: Set("whatsapp".into()),
                direction: Set("in".into()),
                user_id: Set("+2348000000001".into()),
                kind: Set("text".into()),
                body: Set(body.into()),
                status: Set("received".into()),
                created_at: Set(at),
                updated_at: Set(at),
                ..Default::default()
            }
            .insert(db)
            .await
            .unwrap();
        }
    }

    let id = app
        .state
        .queue
        .push(CleanupJob {
            expired_before: None,
        })
        .await
        .expect("job persisted");
    assert_eq!(id.len(), 26, "a ULID job id: {id}");

    eventually(
        "the worker to delete expired sessions",
        Duration::from_secs(30),
        || async {
            let sessions = chat_session::Entity::find().count(db).await.unwrap();
            let old = message_log::Entity::find()
                .filter(message_log::Column::Body.eq("old question"))
                .count(db)
                .await
                .unwrap();
            (sessions == 3 && old == 0).then_some(())
        },
    )
    .await;
    // Only the expired ones went; each school keeps its live session, the third its
    // conversation with staff.
    assert_eq!(
        gamma
            .ctx
            .find::<chat_session::Entity>()
            .count(db)
            .await
            .unwrap(),
        1
    );
    for s in &schools {
        let kept: Vec<String> = s
            .ctx
            .find::<message_log::Entity>()
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert!(kept.contains(&"recent question".to_string()), "{kept:?}");
        assert!(!kept.contains(&"old question".to_string()), "{kept:?}");
        let left = s.ctx.find::<chat_session::Entity>().all(db).await.unwrap();
        assert_eq!(left.len(), 1);
        assert!(left[0].expires_at > now);
    }
    // The finished cleanup job still holds its arguments in the queue until it is forgotten
    // (what the cleanup does with jobs a day old; here, any age).
    let queue = &app.state.queue;
    let forgotten = eventually(
        "the finished job forgotten",
        Duration::from_secs(30),
        || async {
            let n = queue
                .forget_finished::<CleanupJob>(Duration::ZERO)
                .await
                .unwrap();
            (n >= 1).then_some(n)
        },
    )
    .await;
    assert!(forgotten >= 1);
    assert_eq!(
        queue
            .forget_finished::<CleanupJob>(Duration::ZERO)
            .await
            .unwrap(),
        0,
        "nothing left to forget"
    );
    app.stop().await.expect("workers and server stop cleanly");
}

#[tokio::test]
async fn unreachable_redis_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::default();
    settings.storage.data_dir = dir.path().to_path_buf();
    // Nothing listens on port 1.
    settings.queue.redis_url = Some(SecretUrl::new("redis://:s3cret-pw@127.0.0.1:1/0"));
    let err = JobQueue::connect(&settings)
        .await
        .expect_err("no Redis there");
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("Redis") && msg.contains("127.0.0.1:1"),
        "{msg}"
    );
    assert!(!msg.contains("s3cret-pw"), "password leaked: {msg}");
}

/// An embedded queue in a fresh data dir (kept alive by the returned `TempDir`).
async fn embedded_queue() -> (tempfile::TempDir, Settings, JobQueue) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::default();
    settings.storage.data_dir = dir.path().to_path_buf();
    let queue = JobQueue::connect(&settings).await.unwrap();
    (dir, settings, queue)
}

/// A second connection to the embedded queue's file, beside the queue's own.
async fn queue_file(settings: &Settings) -> SqliteConnection {
    SqliteConnection::connect(&format!(
        "sqlite://{}",
        settings.queue_sqlite_path().display()
    ))
    .await
    .unwrap()
}

#[tokio::test]
async fn push_after_the_queue_is_gone_fails_instead_of_dropping() {
    let (_dir, settings, queue) = embedded_queue().await;
    queue
        .push(CleanupJob {
            expired_before: None,
        })
        .await
        .expect("healthy queue accepts");
    queue.ping().await.unwrap();
    // Make the queue file unusable underneath the pool: drop its tables.
    sea_orm::sqlx::query("DROP TABLE Jobs")
        .execute(&mut queue_file(&settings).await)
        .await
        .unwrap();
    let err = queue
        .push(CleanupJob {
            expired_before: None,
        })
        .await
        .expect_err("must not pretend");
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
}

async fn conversation_counters_and_send_slots(v: Variant) {
    let Some(env) = TestEnv::new(v).await else {
        return;
    };
    // No workers: they would run the accepted jobs and move "done" under the assertions.
    let web = Role::web(&env.settings).await;
    let q = &web.state.queue;
    // A delivery is claimed once and numbered within its conversation, in a batch as alone
    // (a repeat within the batch included); "done" never moves backwards.
    let ttl = Duration::from_secs(60);
    let job = |business: &str, from: &str, id: &str| {
        (format!("meta:{id}"), ingest_job(business, from, id))
    };
    let batch = vec![
        job("P1", "234801", "m0"),
        job("P1", "234801", "m1"),
        job("P1", "234802", "m9"),
        job("P1", "234801", "m1"),
        job("P1", "234801", "m2"),
    ];
    assert_eq!(
        q.accept_many(batch, ttl).await.unwrap(),
        [Some(1), Some(2), Some(1), None, Some(3)]
    );
    assert_eq!(
        q.accept_many(vec![job("P1", "234801", "m0")], ttl)
            .await
            .unwrap(),
        [None],
        "a repeat is not numbered"
    );
    assert_eq!(q.conversation_done("meta:P1:234801").await.unwrap(), 0);
    q.conversation_finished("meta:P1:234801", 2).await.unwrap();
    q.conversation_finished("meta:P1:234801", 1).await.unwrap();
    assert_eq!(q.conversation_done("meta:P1:234801").await.unwrap(), 2);
    assert_eq!(q.conversation_done("meta:P1:234802").await.unwrap(), 0);
    let next = q.accept_many(vec![job("P1", "234801", "m3")], ttl).await;
    assert_eq!(next.unwrap(), [Some(4)]);

    // 30 sends racing for one number at 10/s get slots a tenth of a second apart at least
    // (what they were given, not how long anything took); another number is not held up.
    let reservations = (0..30).map(|_| {
        let q = q.clone();
        tokio::spawn(async move { q.reserve_send_slot("meta:P1", 10).await.unwrap() })
    });
    let mut slots: Vec<i64> = futures::future::join_all(reservations)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    slots.sort();
    for pair in slots.windows(2) {
        assert!(pair[1] - pair[0] >= 100_000, "{slots:?}");
    }
    let other = q.reserve_send_slot("meta:P2", 10).await.unwrap();
    assert!(other < slots[29], "numbers are paced separately");
    web.stop().await;
}

/// A message whose conversation's earlier turns are not complete is set aside (not stored on
/// the queue, so it holds no worker) and stored again by the turn before it; one whose turn
/// never comes is stored again after the patience, the turns before it given up on.
async fn a_message_set_aside_is_stored_again_when_its_turn_comes(v: Variant) {
    use chatbot::pipeline::turn::IngestJob;
    let Some(env) = TestEnv::new(v).await else {
        return;
    };
    let web = Role::web(&env.settings).await;
    let q = &web.state.queue;
    let waiting = || async { q.depth::<IngestJob>().await.unwrap().0 };
    let numbered = |id: &str, from: &str, seq: u64| {
        let mut job = ingest_job("P1", from, id);
        job.seq = seq;
        job
    };
    // A parent's message 3 waits for a message 2 that never completes: after the patience (6 s
    // here), with no backlog on the queue, it is stored again, the conversation going on from
    // it; the wait of the message after it starts again.
    let other = "meta:P1:234802";
    assert!(q.park(&numbered("n3", "234802", 3)).await.unwrap());
    assert!(q.park(&numbered("n4", "234802", 4)).await.unwrap());
    q.watch_parked::<IngestJob>(Duration::from_secs(6));
    eventually(
        "the message given up waiting for is stored again",
        Duration::from_secs(30),
        || async { (waiting().await == 1).then_some(()) },
    )
    .await;
    assert_eq!(q.conversation_done(other).await.unwrap(), 2);
    // While jobs wait on the queue, nobody is given up on: a predecessor behind a backlog is
    // late, not lost.
    assert!(q.park(&numbered("p3", "234803", 3)).await.unwrap());
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(
        waiting().await,
        1,
        "the one after it waits for it, and so does p3"
    );
    assert_eq!(q.conversation_done("meta:P1:234803").await.unwrap(), 0);
    q.conversation_finished(other, 3).await.unwrap();
    assert_eq!(waiting().await, 2);

    let conversation = "meta:P1:234801";
    q.conversation_finished(conversation, 2).await.unwrap();
    let before = waiting().await;
    assert!(
        !q.park(&numbered("m3", "234801", 3)).await.unwrap(),
        "its turn"
    );
    assert!(q.park(&numbered("m4", "234801", 4)).await.unwrap());
    assert!(q.park(&numbered("m5", "234801", 5)).await.unwrap());
    assert_eq!(waiting().await, before, "set aside, not queued");
    q.conversation_finished(conversation, 3).await.unwrap();
    assert_eq!(waiting().await, before + 1, "the next one is stored again");
    q.conversation_finished(conversation, 3).await.unwrap();
    q.conversation_finished(conversation, 1).await.unwrap();
    assert_eq!(waiting().await, before + 1, "once");
    assert!(
        !q.park(&numbered("m4", "234801", 4)).await.unwrap(),
        "now its turn"
    );
    q.conversation_finished(conversation, 4).await.unwrap();
    assert_eq!(waiting().await, before + 2);
    q.conversation_finished(conversation, 5).await.unwrap();
    assert_eq!(waiting().await, before + 2, "nothing after it");
    web.stop().await;
}

/// A batch whose jobs cannot be stored is an error for every delivery in it (each webhook
/// answers 503), and stores nothing; the provider's retries are each stored once, with the
/// numbers their first arrival took, so no message is lost, doubled or put out of order.
#[tokio::test]
async fn a_refused_batch_stores_nothing_and_its_retry_is_stored_once_in_order() {
    let (_dir, settings, queue) = embedded_queue().await;
    let ttl = Duration::from_secs(60);
    let job = |from: &str, id: &str, text: &str| {
        let mut job = ingest_job("P1", from, id);
        job.message.said.text = text.into();
        (format!("meta:{id}"), job)
    };
    // From another connection: a trigger that refuses one job row, so the batch fails after
    // its deliveries were numbered.
    let mut other = queue_file(&settings).await;
    sea_orm::sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON Jobs WHEN CAST(NEW.job AS TEXT) LIKE '%refuse me%' \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    )
    .execute(&mut other)
    .await
    .unwrap();
    let batch = || {
        vec![
            job("234801", "m1", "Dzień dobry 👋"),
            job("234801", "m2", "refuse me"),
            job("234802", "m3", "hi"),
        ]
    };
    let err = queue
        .accept_many(batch(), ttl)
        .await
        .expect_err("a refused row fails the batch");
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("refused by the test"), "{err}");
    async fn count(conn: &mut SqliteConnection, table: &'static str) -> i64 {
        // `table` is one of this test's literals.
        let sql = sea_orm::sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"));
        sea_orm::sqlx::query(sql)
            .fetch_one(conn)
            .await
            .unwrap()
            .get::<i64, _>(0)
    }
    assert_eq!(count(&mut other, "Jobs").await, 0, "no job stored");

    // The provider retries, twice: the deliveries keep their numbers and are stored once.
    sea_orm::sqlx::query("DROP TRIGGER refuse")
        .execute(&mut other)
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            queue.accept_many(batch(), ttl).await.unwrap(),
            [None, None, None],
            "numbered on their first arrival"
        );
    }
    assert_eq!(count(&mut other, "Jobs").await, 3);
    // Each stored job is its delivery (multibyte text intact) with its number.
    let stored: Vec<(String, u64)> =
        sea_orm::sqlx::query("SELECT CAST(job AS TEXT) FROM Jobs ORDER BY id")
            .fetch_all(&mut other)
            .await
            .unwrap()
            .iter()
            .map(|row| {
                let job: chatbot::pipeline::turn::IngestJob =
                    serde_json::from_str(row.get::<&str, _>(0)).unwrap();
                (job.message.said.text, job.seq)
            })
            .collect();
    assert_eq!(
        stored,
        [
            ("Dzień dobry 👋".to_string(), 1),
            ("refuse me".to_string(), 2),
            ("hi".to_string(), 1)
        ]
    );
    // The parent's next message comes after them.
    assert_eq!(
        queue
            .accept_many(vec![job("234801", "m4", "menu")], ttl)
            .await
            .unwrap(),
        [Some(3)]
    );
    queue
        .push(CleanupJob {
            expired_before: None,
        })
        .await
        .expect("the queue's connection is usable");
}

/// Batches of many sizes are numbered whole, their repeats (within the batch and across
/// batches) and their conversations counted right, and every new delivery is a stored job.
#[tokio::test]
async fn batches_of_any_size_are_numbered_whole() {
    let (_dir, _settings, queue) = embedded_queue().await;
    let ttl = Duration::from_secs(60);
    let mut seen = [0u64; 3];
    for size in [1, 2, 3, 5, 17, 255, 256, 257, 1000] {
        // Three parents in turn; the last delivery repeats the first of the batch.
        let batch: Vec<_> = (0..size)
            .map(|i| {
                let id = if i + 1 == size && size > 1 {
                    format!("{size}-0")
                } else {
                    format!("{size}-{i}")
                };
                (
                    format!("meta:{id}"),
                    ingest_job("P1", &format!("23480{}", i % 3), &id),
                )
            })
            .collect();
        let numbers = queue.accept_many(batch, ttl).await.unwrap();
        let fresh = if size > 1 { size - 1 } else { 1 };
        let expected: Vec<Option<u64>> = (0..size)
            .map(|i| (i < fresh).then(|| seen[i % 3] + (i / 3) as u64 + 1))
            .collect();
        assert_eq!(numbers, expected, "a batch of {size}");
        for (parent, count) in seen.iter_mut().enumerate() {
            *count += (0..fresh).filter(|i| i % 3 == parent).count() as u64;
        }
    }
    assert_eq!(
        queue
            .depth::<chatbot::pipeline::turn::IngestJob>()
            .await
            .unwrap()
            .0,
        seen.iter().sum::<u64>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_deliveries_does_not_keep_the_queue_from_its_other_users() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (_dir, _settings, queue) = embedded_queue().await;
    let intake = chatbot::pipeline::accept::Intake::start(queue.clone());
    // More senders than a batch takes, so the intake always finds its next batch waiting and
    // would keep the queue's one connection for as long as the flood lasts.
    const SENDERS: usize = 1_000;
    const EACH: usize = 100;
    let (stop, accepted) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let flood: Vec<_> = (0..SENDERS)
        .map(|i| {
            let (intake, stop, accepted) = (intake.clone(), stop.clone(), accepted.clone());
            tokio::spawn(async move {
                for n in 0..EACH {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("flood-{i}-{n}");
                    let job = ingest_job("P1", &format!("2348{i:06}"), &id);
                    let seq = intake.accept(job.message).await.unwrap();
                    assert_eq!(seq, Some(n as u64 + 1), "{id}");
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    eventually("the flood to be under way", Duration::from_secs(60), || {
        let accepted = accepted.load(Ordering::Relaxed);
        async move { (accepted >= 2 * SENDERS).then_some(()) }
    })
    .await;
    // A worker's or a probe's turn on the queue comes while the flood goes on.
    queue
        .push(CleanupJob {
            expired_before: None,
        })
        .await
        .expect("pushed");
    let when_pushed = accepted.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for sender in flood {
        sender.await.unwrap();
    }
    assert!(
        when_pushed < SENDERS * EACH,
        "the push waited for the whole flood ({when_pushed} deliveries)"
    );
    let (queued, _) = queue.depth::<CleanupJob>().await.unwrap();
    assert_eq!(queued, 1, "the pushed job is in the queue");
}

/// The embedded queue's connection keeps the settings it is opened with: the WAL synced at
/// checkpoints and by durable pushes (`NORMAL` at rest; an acknowledged delivery's push runs at
/// `FULL` and leaves it at `NORMAL`) and a bounded page cache. apalis' own setup turned
/// `synchronous` off on it and gave it a 250 MB cache, walked whole at commits that split a
/// page.
#[tokio::test]
async fn the_embedded_queue_syncs_its_wal_and_bounds_its_cache() {
    let (_dir, _settings, queue) = embedded_queue().await;
    let pragma = |name: &'static str| {
        let queue = queue.clone();
        async move { queue.sqlite_pragma(name).await.unwrap() }
    };
    assert_eq!(pragma("journal_mode").await.as_deref(), Some("wal"));
    assert_eq!(pragma("synchronous").await.as_deref(), Some("1"), "NORMAL");
    let ttl = Duration::from_secs(60);
    let delivery = ("meta:s1".to_string(), ingest_job("P1", "234801", "s1"));
    assert_eq!(
        queue.accept_many(vec![delivery], ttl).await.unwrap(),
        [Some(1)]
    );
    assert_eq!(
        pragma("synchronous").await.as_deref(),
        Some("1"),
        "back to NORMAL after a durable push"
    );
    assert_eq!(pragma("cache_size").await.as_deref(), Some("-16384"));
    assert_eq!(pragma("wal_autocheckpoint").await.as_deref(), Some("4000"));
    assert!(
        queue
            .sqlite_pragma("cache_size; DROP TABLE Jobs")
            .await
            .is_err()
    );
    assert_eq!(queue.depth::<CleanupJob>().await.unwrap(), (0, 0));
    assert_eq!(
        queue
            .depth::<chatbot::pipeline::turn::IngestJob>()
            .await
            .unwrap(),
        (1, 0)
    );
}

/// The WAL's frames and how many of them are already in the database file, read from the
/// queue's `-shm` file (SQLite's documented WAL-index: `mxFrame` at byte 16 of the header,
/// `nBackfill` at byte 96, native byte order), without checkpointing anything.
fn wal_frames(settings: &Settings) -> (u32, u32) {
    let mut shm = settings.queue_sqlite_path().into_os_string();
    shm.push("-shm");
    let bytes = std::fs::read(&shm).expect("the queue's WAL-index");
    let at = |i: usize| u32::from_ne_bytes(bytes[i..i + 4].try_into().unwrap());
    (at(16), at(96))
}

/// The WAL is copied back into the queue's file by the queue's own checkpoint task, not by
/// the writer at the end of some batch of deliveries (which held that batch up). After a
/// burst far below the writer's own threshold, every frame is soon in the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_queue_checkpoints_its_wal_in_the_background() {
    let (_dir, settings, queue) = embedded_queue().await;
    let intake = chatbot::pipeline::accept::Intake::start(queue.clone());
    let senders: Vec<_> = (0..50)
        .map(|i| {
            let intake = intake.clone();
            tokio::spawn(async move {
                for n in 0..20 {
                    let id = format!("wal-{i}-{n}");
                    let job = ingest_job("P1", &format!("2348{i:06}"), &id);
                    intake.accept(job.message).await.unwrap();
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
    let (frames, _) = wal_frames(&settings);
    assert!(frames > 0, "the deliveries went through the WAL");
    let (frames, copied) = eventually(
        "the WAL to be copied into the queue's file",
        Duration::from_secs(10),
        || async {
            let (frames, copied) = wal_frames(&settings);
            (frames > 0 && copied == frames).then_some((frames, copied))
        },
    )
    .await;
    assert!(
        frames < 4000,
        "{frames} frames: the writer's own threshold was not reached"
    );
    assert_eq!(copied, frames);
    let (queued, _) = queue
        .depth::<chatbot::pipeline::turn::IngestJob>()
        .await
        .unwrap();
    assert_eq!(queued, 1000, "every delivery is a queued job");
}

/// apalis-redis keeps every pushed job in a scheduled set until a worker's next fetch moves
/// those due to its active list, all with one Lua `unpack`, which fails past about 8,000: a
/// backlog that large while no worker fetches (workers busy or down, a broadcast to a large
/// school) would stop the queue's workers for good. Pushes wait for room below `MAX_DUE`, then
/// are refused (a webhook answers 503); once workers run, everything stored is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_no_worker_fetches_is_bounded_and_then_drains() {
    use chatbot::pipeline::turn::IngestJob;
    let Some(env) = TestEnv::new(Variant::Services).await else {
        return;
    };
    if env.settings.queue.redis_url.is_none() {
        return;
    }
    let queue = JobQueue::connect(&env.settings).await.unwrap();
    let ttl = Duration::from_secs(600);
    // No worker runs yet: as many as fit, in the webhook's batches.
    let mut stored = 0;
    let refused = loop {
        let batch: Vec<(String, IngestJob)> = (0..250)
            .map(|i| {
                let id = format!("wamid.backlog.{stored}.{i}");
                (
                    format!("meta:{id}"),
                    ingest_job("P-unknown", &format!("2348{:06}", stored + i), &id),
                )
            })
            .collect();
        match queue.accept_many(batch, ttl).await {
            Ok(_) => stored += 250,
            Err(e) => break e,
        }
        assert!(stored <= 4_000, "more than the bound stored: {stored}");
    };
    assert_eq!(stored, 4_000);
    assert!(matches!(refused, Error::Unavailable(_)), "{refused:?}");
    assert!(refused.to_string().contains("is full"), "{refused}");
    assert_eq!(queue.depth::<IngestJob>().await.unwrap(), (4_000, 0));

    // Workers start: they fetch the whole backlog, and room comes back.
    let app = env.start().await;
    eventually("the backlog done", Duration::from_secs(120), || async {
        (queue.depth::<IngestJob>().await.unwrap() == (0, 0)).then_some(())
    })
    .await;
    queue
        .accept_many(
            vec![(
                "meta:wamid.after".into(),
                ingest_job("P-unknown", "2348999999", "wamid.after"),
            )],
            ttl,
        )
        .await
        .expect("room again");
    app.stop().await.unwrap();
}
