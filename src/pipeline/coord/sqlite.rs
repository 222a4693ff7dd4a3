//! Coordination in the embedded queue's file, on its pool (one connection, shared with apalis'
//! workers): a table per concern, written in short transactions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sea_orm::sqlx::{self, SqlitePool};

use super::{Answer, Arrival, CONVERSATION_TTL, Claim, Coord, Keys, Overdue, Parked};

/// How many set-aside jobs one look for overdue ones reads at most.
const OVERDUE_SCAN: i64 = 1000;

const TABLES: [&str; 7] = [
    "CREATE TABLE IF NOT EXISTS chatbot_once (key TEXT PRIMARY KEY NOT NULL, expires_at INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS chatbot_once_expires ON chatbot_once (expires_at)",
    "CREATE TABLE IF NOT EXISTS chatbot_arrival (key TEXT PRIMARY KEY NOT NULL, seq INTEGER NOT NULL, expires_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS chatbot_conversation (key TEXT PRIMARY KEY NOT NULL, seq INTEGER NOT NULL, done INTEGER NOT NULL, touched_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS chatbot_rate (key TEXT PRIMARY KEY NOT NULL, tat INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS chatbot_parked (conversation TEXT NOT NULL, seq INTEGER NOT NULL, \
     queue TEXT NOT NULL, job TEXT NOT NULL, parked_at INTEGER NOT NULL, PRIMARY KEY (conversation, seq))",
    "CREATE INDEX IF NOT EXISTS chatbot_parked_at ON chatbot_parked (parked_at)",
];

/// Coordination in the queue's file.
#[derive(Debug)]
pub struct SqliteCoord {
    pool: SqlitePool,
    /// When expired claims were last deleted, Unix seconds.
    last_purge: AtomicI64,
}

impl SqliteCoord {
    /// Coordination on `pool` (the queue's), creating its tables.
    pub async fn open(pool: SqlitePool) -> Result<Self, String> {
        for ddl in TABLES {
            sqlx::query(ddl)
                .execute(&pool)
                .await
                .map_err(|e| format!("cannot set up the queue's coordination tables: {e}"))?;
        }
        Ok(Self {
            pool,
            last_purge: AtomicI64::new(0),
        })
    }

    /// Delete expired claims and arrivals and idle conversation counters, at most once a
    /// minute.
    async fn purge_expired(&self) {
        let now = chrono::Utc::now().timestamp();
        if self.last_purge.load(Ordering::Relaxed) + 60 > now
            || self.last_purge.swap(now, Ordering::Relaxed) + 60 > now
        {
            return;
        }
        let purged = sqlx::query(
            "DELETE FROM chatbot_once WHERE expires_at < ?1; \
             DELETE FROM chatbot_arrival WHERE expires_at < ?1; \
             DELETE FROM chatbot_conversation WHERE touched_at < ?2",
        )
        .bind(now)
        .bind(now - CONVERSATION_TTL.as_secs() as i64)
        .execute(&self.pool)
        .await;
        if let Err(e) = purged {
            tracing::warn!(error = %e, "expired claims not deleted; next time");
        }
    }

    /// [`Coord::arrive`] in one transaction of four statements, whatever the batch's size.
    async fn arrive_batch(
        &self,
        deliveries: &Keys,
        ttl: Duration,
    ) -> Result<Vec<Arrival>, sqlx::Error> {
        let now = chrono::Utc::now().timestamp();
        let keys: Vec<&str> = deliveries.iter().map(|(key, _)| key.as_str()).collect();
        let keys_json = serde_json::to_string(&keys).unwrap_or_default();
        // The write lock first: another process' writer cannot slip in between.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let fresh: std::collections::HashSet<String> = sqlx::query_scalar(
            "INSERT INTO chatbot_arrival (key, seq, expires_at) \
             SELECT value, 0, ?1 FROM json_each(?2) WHERE true \
             ON CONFLICT (key) DO NOTHING RETURNING key",
        )
        .bind(now + ttl.as_secs().max(1) as i64)
        .bind(&keys_json)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        // The numbers of keys seen before.
        let known: HashMap<String, i64> = if fresh.len() < keys.len() {
            sqlx::query_as::<_, (String, i64)>(
                "SELECT key, seq FROM chatbot_arrival \
                 WHERE key IN (SELECT value FROM json_each(?1))",
            )
            .bind(&keys_json)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .filter(|(key, _)| !fresh.contains(key))
            .collect()
        } else {
            HashMap::new()
        };
        // Each new key's place among its conversation's new ones, in arrival order.
        let mut counts: HashMap<&str, u64> = HashMap::new();
        let mut places: HashMap<&str, (&str, u64)> = HashMap::new();
        for (key, conversation) in deliveries {
            if fresh.contains(key) && !places.contains_key(key.as_str()) {
                let count = counts.entry(conversation.as_str()).or_default();
                *count += 1;
                places.insert(key.as_str(), (conversation.as_str(), *count));
            }
        }
        let mut last: HashMap<String, u64> = HashMap::new();
        if !counts.is_empty() {
            let counts_json = serde_json::to_string(&counts).unwrap_or_default();
            last = sqlx::query_as::<_, (String, i64)>(
                "INSERT INTO chatbot_conversation (key, seq, done, touched_at) \
                 SELECT key, value, 0, ?1 FROM json_each(?2) WHERE true \
                 ON CONFLICT (key) DO UPDATE SET seq = seq + excluded.seq, \
                 touched_at = excluded.touched_at RETURNING key, seq",
            )
            .bind(now)
            .bind(&counts_json)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|(key, seq)| (key, seq as u64))
            .collect();
        }
        let seq_of = |key: &str| -> Option<u64> {
            let (conversation, place) = places.get(key)?;
            Some(last.get(*conversation)? - counts[conversation] + place)
        };
        let numbered: HashMap<&str, u64> = places
            .keys()
            .filter_map(|key| Some((*key, seq_of(key)?)))
            .collect();
        if !numbered.is_empty() {
            sqlx::query(
                "UPDATE chatbot_arrival SET seq = j.value FROM json_each(?1) AS j \
                 WHERE chatbot_arrival.key = j.key",
            )
            .bind(serde_json::to_string(&numbered).unwrap_or_default())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let mut first = std::collections::HashSet::new();
        Ok(keys
            .iter()
            .map(|key| match numbered.get(key) {
                Some(seq) => Arrival {
                    seq: *seq,
                    new: first.insert(*key),
                },
                None => Arrival {
                    seq: known.get(*key).copied().unwrap_or(0).max(0) as u64,
                    new: false,
                },
            })
            .collect())
    }

    /// [`Coord::overdue`] in one transaction, so two processes looking at once take each job
    /// once.
    async fn take_overdue(&self, look: Overdue) -> Result<Vec<Parked>, sqlx::Error> {
        let Overdue {
            grace,
            patience,
            limit,
        } = look;
        let now = chrono::Utc::now().timestamp();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Oldest first, with how far the conversation is and whether an earlier job of it is
        // also set aside.
        let rows = sqlx::query_as::<_, (String, i64, String, String, i64, i64, bool)>(
            "SELECT p.conversation, p.seq, p.queue, p.job, p.parked_at, coalesce(c.done, 0), \
             EXISTS (SELECT 1 FROM chatbot_parked q WHERE q.conversation = p.conversation \
                     AND q.seq < p.seq) \
             FROM chatbot_parked p LEFT JOIN chatbot_conversation c ON c.key = p.conversation \
             WHERE p.parked_at <= ?1 ORDER BY p.parked_at LIMIT ?2",
        )
        .bind(now - grace.as_secs() as i64)
        .bind(OVERDUE_SCAN)
        .fetch_all(&mut *tx)
        .await?;
        let mut taken = Vec::new();
        for (conversation, seq, queue, json, parked_at, done, earlier) in rows {
            if taken.len() >= limit {
                break;
            }
            let due = seq <= done + 1;
            // Only the first job set aside gives up on the turns before it; the next follow it.
            let given_up = !due && !earlier && parked_at <= now - patience.as_secs() as i64;
            if !due && !given_up {
                continue;
            }
            if given_up {
                sqlx::query(
                    "INSERT INTO chatbot_conversation (key, seq, done, touched_at) \
                     VALUES (?1, ?2, ?2, ?3) ON CONFLICT (key) DO UPDATE \
                     SET done = max(done, ?2), touched_at = ?3",
                )
                .bind(&conversation)
                .bind(seq - 1)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            // Taken (left alone for the grace); when given up on, the patience of the jobs after
            // it in its conversation starts again.
            sqlx::query(
                "UPDATE chatbot_parked SET parked_at = ?3 WHERE conversation = ?1 AND (seq = ?2 OR ?4)",
            )
            .bind(&conversation)
            .bind(seq)
            .bind(now)
            .bind(given_up)
            .execute(&mut *tx)
            .await?;
            taken.push(Parked {
                conversation,
                seq: seq.max(0) as u64,
                queue,
                json,
            });
        }
        tx.commit().await?;
        Ok(taken)
    }
}

impl Coord for SqliteCoord {
    fn arrive<'a>(&'a self, deliveries: &'a Keys, ttl: Duration) -> Answer<'a, Vec<Arrival>> {
        Box::pin(async move {
            self.purge_expired().await;
            self.arrive_batch(deliveries, ttl)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn claim(&self, key: String, ttl: Duration) -> Answer<'_, Claim> {
        Box::pin(async move {
            self.purge_expired().await;
            let failed = |e: sqlx::Error| e.to_string();
            let now = chrono::Utc::now();
            let taken = sqlx::query(
                "INSERT INTO chatbot_once (key, expires_at) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at \
                 WHERE chatbot_once.expires_at < ?3",
            )
            .bind(&key)
            .bind(now.timestamp() + ttl.as_secs().max(1) as i64)
            .bind(now.timestamp())
            .execute(&self.pool)
            .await
            .map_err(failed)?
            .rows_affected()
                == 1;
            if taken {
                return Ok(Claim::Taken);
            }
            let until: Option<i64> =
                sqlx::query_scalar("SELECT expires_at FROM chatbot_once WHERE key = ?")
                    .bind(&key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(failed)?;
            // Whole seconds: held until the end of its last second.
            let left = until
                .map_or(0, |s| (s + 1) * 1000 - now.timestamp_millis())
                .max(1);
            Ok(Claim::Held(Duration::from_millis(left as u64)))
        })
    }

    fn release(&self, key: String) -> Answer<'_, ()> {
        Box::pin(async move {
            sqlx::query("DELETE FROM chatbot_once WHERE key = ?")
                .bind(&key)
                .execute(&self.pool)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    fn done(&self, conversation: String) -> Answer<'_, u64> {
        Box::pin(async move {
            sqlx::query_scalar::<_, i64>("SELECT done FROM chatbot_conversation WHERE key = ?")
                .bind(&conversation)
                .fetch_optional(&self.pool)
                .await
                .map(|n| n.unwrap_or(0).max(0) as u64)
                .map_err(|e| e.to_string())
        })
    }

    fn park(&self, job: Parked) -> Answer<'_, bool> {
        Box::pin(async move {
            // One statement: looking and setting aside cannot be split by a finishing turn.
            sqlx::query(
                "INSERT INTO chatbot_parked (conversation, seq, queue, job, parked_at) \
                 SELECT ?1, ?2, ?3, ?4, ?5 \
                 WHERE coalesce((SELECT done FROM chatbot_conversation WHERE key = ?1), 0) + 1 < ?2 \
                 ON CONFLICT (conversation, seq) DO UPDATE SET job = excluded.job, \
                 parked_at = excluded.parked_at",
            )
            .bind(&job.conversation)
            .bind(job.seq as i64)
            .bind(&job.queue)
            .bind(&job.json)
            .bind(chrono::Utc::now().timestamp())
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected() == 1)
            .map_err(|e| e.to_string())
        })
    }

    fn finish(&self, conversation: String, seq: u64) -> Answer<'_, Option<Parked>> {
        Box::pin(async move {
            let now = chrono::Utc::now().timestamp();
            let failed = |e: sqlx::Error| e.to_string();
            // A row comes back only when the number moved.
            let moved = sqlx::query(
                "INSERT INTO chatbot_conversation (key, seq, done, touched_at) VALUES (?1, ?2, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET done = ?2, touched_at = ?3 WHERE done < ?2 \
                 RETURNING done",
            )
            .bind(&conversation)
            .bind(seq as i64)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed)?;
            if moved.is_none() {
                return Ok(None);
            }
            // A job setting itself aside now either saw the number move, or is seen here.
            let next = sqlx::query_as::<_, (String, String)>(
                "UPDATE chatbot_parked SET parked_at = ?3 WHERE conversation = ?1 AND seq = ?2 \
                 RETURNING queue, job",
            )
            .bind(&conversation)
            .bind(seq as i64 + 1)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed)?;
            Ok(next.map(|(queue, json)| Parked {
                conversation,
                seq: seq + 1,
                queue,
                json,
            }))
        })
    }

    fn unpark(&self, conversation: String, seq: u64) -> Answer<'_, ()> {
        Box::pin(async move {
            sqlx::query("DELETE FROM chatbot_parked WHERE conversation = ? AND seq = ?")
                .bind(&conversation)
                .bind(seq as i64)
                .execute(&self.pool)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    fn overdue(&self, look: Overdue) -> Answer<'_, Vec<Parked>> {
        Box::pin(async move { self.take_overdue(look).await.map_err(|e| e.to_string()) })
    }

    fn reserve(&self, key: String, now: i64, interval: i64) -> Answer<'_, i64> {
        Box::pin(async move {
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO chatbot_rate (key, tat) VALUES (?1, ?2 + ?3) \
                 ON CONFLICT (key) DO UPDATE SET tat = max(tat, ?2) + ?3 RETURNING tat - ?3",
            )
            .bind(&key)
            .bind(now)
            .bind(interval)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| e.to_string())
        })
    }
}
