//! Request rate limits per credential (an API key, or a token's subject): a steady pace with a
//! burst allowance (GCRA), kept in this process. Several web processes each allow the pace.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before idle ones are dropped.
const PRUNE_ABOVE: usize = 10_000;

/// A per-credential limiter; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct RateLimiter {
    /// Time one request "costs".
    interval: Duration,
    /// How far ahead of the pace a credential may run (burst - 1 intervals).
    tolerance: Duration,
    /// Per credential: the theoretical arrival time of its next request.
    next: Mutex<HashMap<String, Instant>>,
}

impl RateLimiter {
    /// `per_minute` requests a minute on average, up to `burst` at once.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self::every(Duration::from_secs(60) / per_minute.max(1), burst)
    }

    /// One request per `interval` on average, up to `burst` at once.
    pub fn every(interval: Duration, burst: u32) -> Self {
        Self {
            interval,
            tolerance: interval * burst.max(1).saturating_sub(1),
            next: Mutex::new(HashMap::new()),
        }
    }

    /// Would a request of `who` at `now` be allowed? `Err(wait)` when not; nothing is counted.
    pub fn peek(&self, who: &str, now: Instant) -> Result<(), Duration> {
        let next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        self.admit(&next, who, now).map(|_| ())
    }

    /// The arrival time `who`'s next request would take if admitted at `now`, or how long
    /// until one is.
    fn admit(
        &self,
        next: &HashMap<String, Instant>,
        who: &str,
        now: Instant,
    ) -> Result<Instant, Duration> {
        let tat = next.get(who).copied().unwrap_or(now).max(now);
        let ahead = tat - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        Ok(tat + self.interval)
    }

    /// Count one request of `who` at `now`: `Err(wait)` when it is over the limit (and is not
    /// counted).
    pub fn check(&self, who: &str, now: Instant) -> Result<(), Duration> {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        if next.len() > PRUNE_ABOVE {
            next.retain(|_, at| *at > now);
        }
        let tat = self.admit(&next, who, now)?;
        next.insert(who.to_string(), tat);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_pace() {
        let limiter = RateLimiter::new(60, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.check("a", t0).unwrap();
        }
        let wait = limiter.check("a", t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        // Peeking counts nothing.
        assert!(limiter.peek("a", t0).is_err());
        assert!(limiter.peek("b", t0).is_ok());
        // Another credential has its own allowance.
        limiter.check("b", t0).unwrap();
        // One interval later, one more request (and only one).
        let t1 = t0 + Duration::from_secs(1);
        limiter.check("a", t1).unwrap();
        assert!(limiter.check("a", t1).is_err());
        // Idle long enough, the whole burst is back.
        let t2 = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            limiter.check("a", t2).unwrap();
        }
        assert!(limiter.check("a", t2).is_err());
    }
}

/// Long-lived streams (`conversations/events/`) open at once, per school, in this process.
#[derive(Debug, Default)]
pub struct StreamSlots {
    open: Mutex<HashMap<i64, usize>>,
}

/// One open stream; its slot is given back when it is dropped (the stream ends or the client
/// goes away).
#[derive(Debug)]
pub struct StreamSlot {
    slots: std::sync::Arc<StreamSlots>,
    school: i64,
}

impl StreamSlots {
    /// Most streams one school may hold open in one process (a few staff, each with a tab
    /// or two).
    pub const PER_SCHOOL: usize = 20;

    /// A slot for school `school`, or `None` when it already has [`Self::PER_SCHOOL`] open.
    pub fn open(self: &std::sync::Arc<Self>, school: i64) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(school).or_default();
        if *n >= Self::PER_SCHOOL {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            slots: self.clone(),
            school,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.school) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.school);
            }
        }
    }
}
