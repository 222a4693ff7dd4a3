//! Coordination on Redis: keys of the pipeline's own (never apalis'), a script where a step
//! must be atomic, and pub/sub for the wake-ups between processes.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use apalis_redis::ConnectionManager;
use futures::future::BoxFuture;

use super::{Answer, Arrival, CONVERSATION_TTL, Claim, Coord, Keys, Overdue, Parked};

/// How many set-aside jobs one look for overdue ones reads at most.
const OVERDUE_SCAN: usize = 1000;
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

/// Set a job aside (ARGV[2], as field ARGV[1] of hash KEYS[2], and member ARGV[4] of the set of
/// jobs set aside KEYS[3], scored by the time ARGV[3]) unless the conversation's "done" number
/// (KEYS[1]) is already ARGV[1] - 1.
static PARK: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local d = tonumber(redis.call('GET', KEYS[1]) or '0') \
         if d + 1 >= tonumber(ARGV[1]) then return 0 end \
         redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) \
         redis.call('EXPIRE', KEYS[2], ARGV[5]) \
         redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4]) \
         return 1",
    )
});

/// Raise a conversation's "done" number (KEYS[1]) to ARGV[1], never lower it; when it moved,
/// answer the job set aside for the next turn (field ARGV[5] of KEYS[2]), its time in the set
/// KEYS[3] (member ARGV[4]) moved to ARGV[3].
static FINISH_TURN: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local d = tonumber(redis.call('GET', KEYS[1]) or '0') \
         if tonumber(ARGV[1]) <= d then return false end \
         redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) \
         local nxt = redis.call('HGET', KEYS[2], ARGV[5]) \
         if nxt then redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4]) end \
         return nxt",
    )
});

/// Take the jobs set aside (set KEYS[1]; members `conversation\nseq`) that waited ARGV[2] s or
/// more by the time ARGV[1]: each due one (its conversation's "done" is seq - 1 or more) and,
/// after ARGV[3] s, the first of its conversation even if not (raising "done" to seq - 1, kept
/// ARGV[6] s, and starting the wait of the jobs after it again); at most ARGV[4], reading at
/// most ARGV[5]. Answers member, job, member, job...
/// Members whose job is gone are dropped.
static OVERDUE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local now = tonumber(ARGV[1]) \
         local rows = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]), \
           'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[5])) \
         local out = {} \
         for i = 1, #rows, 2 do \
           if #out >= 2 * tonumber(ARGV[4]) then break end \
           local member = rows[i] \
           local at = tonumber(rows[i + 1]) \
           local sep = string.find(member, '\\n', 1, true) \
           local conv = string.sub(member, 1, sep - 1) \
           local field = string.sub(member, sep + 1) \
           local seq = tonumber(field) \
           local job = redis.call('HGET', conv .. ':parked', field) \
           if not job then redis.call('ZREM', KEYS[1], member) else \
             local d = tonumber(redis.call('GET', conv .. ':done') or '0') \
             local take = seq <= d + 1 \
             if not take and at <= now - tonumber(ARGV[3]) then \
               local fields = redis.call('HKEYS', conv .. ':parked') \
               take = true \
               for _, f in ipairs(fields) do \
                 if tonumber(f) < seq then take = false break end \
               end \
               if take then \
                 redis.call('SET', conv .. ':done', string.format('%d', seq - 1), 'EX', ARGV[6]) \
                 for _, f in ipairs(fields) do redis.call('ZADD', KEYS[1], now, conv .. '\\n' .. f) end \
               end \
             end \
             if take then \
               redis.call('ZADD', KEYS[1], now, member) \
               out[#out + 1] = member \
               out[#out + 1] = job \
             end \
           end \
         end \
         return out",
    )
});

/// Claim KEYS[1] for ARGV[1] ms: -1 when taken now, else the milliseconds it is still held for.
static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('SET', KEYS[1], 1, 'NX', 'PX', ARGV[1]) then return -1 end \
         local left = redis.call('PTTL', KEYS[1]) \
         if left == -1 then return -3 end \
         return left",
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

    /// The channel on which processes say that jobs of `queue` are waiting.
    fn channel(&self, queue: &str) -> String {
        format!("{}:wake:job:{queue}", self.namespace)
    }

    /// The set of every job set aside, scored by when it was set aside (or last taken).
    fn parked_set(&self) -> String {
        format!("{}:parked", self.namespace)
    }
}

/// A set-aside job's member in the set: its conversation and number.
fn member(conversation: &str, seq: u64) -> String {
    format!("{conversation}\n{seq}")
}

/// A set-aside job as stored: its queue, then the job.
fn stored(queue: &str, json: &str) -> String {
    format!("{queue}\n{json}")
}

/// A set-aside job read back.
fn parked(conversation: String, seq: u64, stored: &str) -> Option<Parked> {
    let (queue, json) = stored.split_once('\n')?;
    Some(Parked {
        conversation,
        seq,
        queue: queue.to_string(),
        json: json.to_string(),
    })
}

impl Coord for RedisCoord {
    fn arrive<'a>(&'a self, deliveries: &'a Keys, ttl: Duration) -> Answer<'a, Vec<Arrival>> {
        Box::pin(async move {
            let count = deliveries.len();
            let mut arrive = ARRIVE.prepare_invoke();
            arrive
                .arg(ttl.as_secs().max(1))
                .arg(CONVERSATION_TTL.as_secs());
            for (once, conversation) in deliveries {
                arrive.key(once.as_str()).key(format!("{conversation}:seq"));
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

    fn claim(&self, key: String, ttl: Duration) -> Answer<'_, Claim> {
        Box::pin(async move {
            let left: i64 = CLAIM
                .key(&key)
                .arg(ttl.as_millis().max(1) as u64)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(|e| e.to_string())?;
            Ok(match left {
                -1 => Claim::Taken,
                // -2: gone between the two steps of the script cannot happen; a key without
                // expiry is held for good.
                ms if ms < 0 => Claim::Held(Duration::MAX),
                ms => Claim::Held(Duration::from_millis(ms as u64)),
            })
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

    fn park(&self, job: Parked) -> Answer<'_, bool> {
        Box::pin(async move {
            PARK.key(format!("{}:done", job.conversation))
                .key(format!("{}:parked", job.conversation))
                .key(self.parked_set())
                .arg(job.seq)
                .arg(stored(&job.queue, &job.json))
                .arg(chrono::Utc::now().timestamp())
                .arg(member(&job.conversation, job.seq))
                .arg(CONVERSATION_TTL.as_secs())
                .invoke_async::<i64>(&mut self.conn.clone())
                .await
                .map(|n| n == 1)
                .map_err(|e| e.to_string())
        })
    }

    fn finish(&self, conversation: String, seq: u64) -> Answer<'_, Option<Parked>> {
        Box::pin(async move {
            let next: Option<String> = FINISH_TURN
                .key(format!("{conversation}:done"))
                .key(format!("{conversation}:parked"))
                .key(self.parked_set())
                .arg(seq)
                .arg(CONVERSATION_TTL.as_secs())
                .arg(chrono::Utc::now().timestamp())
                .arg(member(&conversation, seq + 1))
                .arg(seq + 1)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(|e| e.to_string())?;
            Ok(next.and_then(|job| parked(conversation, seq + 1, &job)))
        })
    }

    fn unpark(&self, conversation: String, seq: u64) -> Answer<'_, ()> {
        Box::pin(async move {
            redis::pipe()
                .atomic()
                .hdel(format!("{conversation}:parked"), seq)
                .zrem(self.parked_set(), member(&conversation, seq))
                .query_async::<()>(&mut self.conn.clone())
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn overdue(&self, look: Overdue) -> Answer<'_, Vec<Parked>> {
        Box::pin(async move {
            let found: Vec<String> = OVERDUE
                .key(self.parked_set())
                .arg(chrono::Utc::now().timestamp())
                .arg(look.grace.as_secs())
                .arg(look.patience.as_secs())
                .arg(look.limit)
                .arg(OVERDUE_SCAN)
                .arg(CONVERSATION_TTL.as_secs())
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(|e| e.to_string())?;
            Ok(found
                .chunks(2)
                .filter_map(|pair| {
                    let (conversation, seq) = pair.first()?.rsplit_once('\n')?;
                    parked(conversation.to_string(), seq.parse().ok()?, pair.get(1)?)
                })
                .collect())
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
                .arg(self.channel(queue))
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
        let jobs = self.channel("");
        // Each wake-up names the process that gave it; this process woke its own already.
        let me = self.instance.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            while wakeups.strong_count() > 0 {
                let subscribed = async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.psubscribe(format!("{jobs}*")).await?;
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
                                if let Some(queue) = channel.strip_prefix(jobs.as_str()) {
                                    wakeups.heard_job(queue);
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
