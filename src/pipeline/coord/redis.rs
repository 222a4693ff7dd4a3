//! Coordination on Redis: keys of the pipeline's own (never apalis'), a script where a step
//! must be atomic, and pub/sub for the wake-ups between processes.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use apalis_redis::ConnectionManager;
use futures::future::BoxFuture;

use super::{Answer, Arrival, CONVERSATION_TTL, Coord, Keys};
use crate::pipeline::wake::Wakeups;

/// Number a batch of deliveries: for each pair of keys (its once key, its conversation's
/// counter), a once key already there answers the number it holds, negated; otherwise the
/// counter goes up (kept alive for ARGV[2] s) and the once key keeps the new number for
/// ARGV[1] s.
static ARRIVE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local out = {} \
         for i = 1, #KEYS, 2 do \
         local seen = redis.call('GET', KEYS[i]) \
         if seen then out[#out + 1] = -tonumber(seen) else \
         local n = redis.call('INCR', KEYS[i + 1]) \
         redis.call('EXPIRE', KEYS[i + 1], ARGV[2]) \
         redis.call('SET', KEYS[i], n, 'EX', ARGV[1]) \
         out[#out + 1] = n end \
         end \
         return out",
    )
});

/// Raise a conversation's "done" number (KEYS[1]) to ARGV[1], never lower it, and say so on
/// channel ARGV[3] as process ARGV[4] (messages of other processes waiting for it go on).
static FINISH_TURN: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local d = tonumber(redis.call('GET', KEYS[1]) or '0') \
         if tonumber(ARGV[1]) > d then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end \
         redis.call('PUBLISH', ARGV[3], ARGV[4]) \
         return 0",
    )
});

/// Reserve the next evenly spaced slot (KEYS[1] holds the next free time).
static RESERVE_SLOT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local tat = tonumber(redis.call('GET', KEYS[1]) or '0') \
         local slot = math.max(tat, tonumber(ARGV[1])) \
         redis.call('SET', KEYS[1], string.format('%d', slot + tonumber(ARGV[2])), 'EX', 3600) \
         return string.format('%d', slot)",
    )
});

/// Coordination on Redis.
pub struct RedisCoord {
    conn: ConnectionManager,
    /// For the subscription, which needs a connection of its own.
    client: redis::Client,
    /// Prefix of the wake-up channels.
    namespace: String,
    /// Names this process in its wake-ups, so it does not wake itself twice.
    instance: String,
    listening: AtomicBool,
}

impl std::fmt::Debug for RedisCoord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCoord")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl RedisCoord {
    /// Coordination on `conn`; wake-ups on channels under `namespace`, signed `instance`.
    pub fn new(
        conn: ConnectionManager,
        client: redis::Client,
        namespace: &str,
        instance: &str,
    ) -> Self {
        Self {
            conn,
            client,
            namespace: namespace.to_string(),
            instance: instance.to_string(),
            listening: AtomicBool::new(false),
        }
    }

    /// The channel on which processes say that jobs of `queue` are waiting; `None`: that a
    /// turn finished.
    fn channel(&self, queue: Option<&str>) -> String {
        match queue {
            Some(queue) => format!("{}:wake:job:{queue}", self.namespace),
            None => format!("{}:wake:turn", self.namespace),
        }
    }
}

impl Coord for RedisCoord {
    fn arrive(&self, deliveries: Keys, ttl: Duration) -> Answer<'_, Vec<Arrival>> {
        Box::pin(async move {
            let count = deliveries.len();
            let mut arrive = ARRIVE.prepare_invoke();
            arrive
                .arg(ttl.as_secs().max(1))
                .arg(CONVERSATION_TTL.as_secs());
            for (once, conversation) in deliveries {
                arrive.key(once).key(format!("{conversation}:seq"));
            }
            let numbers: Vec<i64> = arrive
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(|e| e.to_string())?;
            if numbers.len() != count {
                return Err(format!("{} answers for {count} deliveries", numbers.len()));
            }
            Ok(numbers
                .into_iter()
                .map(|n| Arrival {
                    seq: n.unsigned_abs(),
                    new: n > 0,
                })
                .collect())
        })
    }

    fn claim(&self, key: String, ttl: Duration) -> Answer<'_, bool> {
        Box::pin(async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(ttl.as_secs().max(1))
                .query_async::<Option<String>>(&mut self.conn.clone())
                .await
                .map(|r| r.is_some())
                .map_err(|e| e.to_string())
        })
    }

    fn release(&self, key: String) -> Answer<'_, ()> {
        Box::pin(async move {
            redis::cmd("DEL")
                .arg(&key)
                .query_async::<i64>(&mut self.conn.clone())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    fn done(&self, conversation: String) -> Answer<'_, u64> {
        Box::pin(async move {
            redis::cmd("GET")
                .arg(format!("{conversation}:done"))
                .query_async::<Option<u64>>(&mut self.conn.clone())
                .await
                .map(|n| n.unwrap_or(0))
                .map_err(|e| e.to_string())
        })
    }

    fn finish(&self, conversation: String, seq: u64) -> Answer<'_, ()> {
        Box::pin(async move {
            FINISH_TURN
                .key(format!("{conversation}:done"))
                .arg(seq)
                .arg(CONVERSATION_TTL.as_secs())
                .arg(self.channel(None))
                .arg(&self.instance)
                .invoke_async::<i64>(&mut self.conn.clone())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    fn reserve(&self, key: String, now: i64, interval: i64) -> Answer<'_, i64> {
        Box::pin(async move {
            RESERVE_SLOT
                .key(&key)
                .arg(now)
                .arg(interval)
                .invoke_async::<String>(&mut self.conn.clone())
                .await
                .map_err(|e| e.to_string())
                .and_then(|s| s.parse::<i64>().map_err(|e| e.to_string()))
        })
    }

    fn announce<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(self.channel(Some(queue)))
                .arg(&self.instance)
                .query_async(&mut self.conn.clone())
                .await;
            if let Err(e) = published {
                tracing::debug!(error = %e, queue, "wake-up not published");
            }
        })
    }

    /// Reconnects after a second when the subscription drops; stops when `wakeups` is gone.
    fn listen(&self, wakeups: std::sync::Weak<Wakeups>) {
        if self.listening.swap(true, Ordering::SeqCst) {
            return;
        }
        let client = self.client.clone();
        let (jobs, turns) = (self.channel(Some("")), self.channel(None));
        // Each wake-up names the process that gave it; this process woke its own already.
        let me = self.instance.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            while wakeups.strong_count() > 0 {
                let subscribed = async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.psubscribe(format!("{jobs}*")).await?;
                    pubsub.subscribe(&turns).await?;
                    redis::RedisResult::Ok(pubsub)
                }
                .await;
                let mut pubsub = match subscribed {
                    Ok(pubsub) => pubsub,
                    Err(e) => {
                        tracing::debug!(error = %e, "wake-ups from other processes not heard; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let mut messages = pubsub.on_message();
                loop {
                    // Looked at now and then, so the task ends with its wake-ups.
                    let next = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
                    let Some(wakeups) = wakeups.upgrade() else {
                        return;
                    };
                    match next {
                        Ok(Some(message)) => {
                            let from = message.get_payload::<String>().unwrap_or_default();
                            if from != me {
                                let channel = message.get_channel_name();
                                match channel.strip_prefix(jobs.as_str()) {
                                    Some(queue) => wakeups.heard_job(queue),
                                    None => wakeups.turn_finished(),
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {}
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}
