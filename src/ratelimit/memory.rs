//! In-process buckets: governor's GCRA, keyed, one limiter per distinct quota. Idle keys are
//! swept; a limiter that stays over the key cap is reset (bounded memory beats history).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use std::sync::RwLock;

use super::{Decision, Limit};

type Keyed =
    RateLimiter<String, DashMapStateStore<String>, DefaultClock, StateInformationMiddleware>;

pub struct MemoryBucket {
    limit: Limit,
    limiter: RwLock<Arc<Keyed>>,
    clock: DefaultClock,
}

impl MemoryBucket {
    pub fn new(limit: Limit) -> Self {
        Self {
            limiter: RwLock::new(Arc::new(build(limit))),
            limit,
            clock: DefaultClock::default(),
        }
    }

    fn current(&self) -> Arc<Keyed> {
        match self.limiter.read() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn check(&self, key: &str) -> Decision {
        let limiter = self.current();
        // `check_key` takes the key by reference, but the store needs an owned one for new
        // keys; the String is the one allocation per check.
        match limiter.check_key(&key.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    limit: self.limit.capacity,
                    remaining,
                    reset_after: self.limit.interval() * (self.limit.capacity - remaining),
                    retry_after: None,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Decision {
                    allowed: false,
                    limit: self.limit.capacity,
                    remaining: 0,
                    // Full again once this wait and the rest of the bucket have passed;
                    // the Redis script computes the same.
                    reset_after: wait + self.limit.interval() * (self.limit.capacity - 1),
                    retry_after: Some(wait),
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.current().len()
    }

    /// Drops idle keys; resets the limiter if it still tracks more than `cap` keys.
    /// Returns the number of keys tracked afterwards.
    pub fn sweep(&self, cap: usize) -> usize {
        let limiter = self.current();
        limiter.retain_recent();
        limiter.shrink_to_fit();
        let len = limiter.len();
        if len <= cap {
            return len;
        }
        tracing::warn!(
            keys = len,
            cap,
            "rate limiter over its key cap after sweeping; resetting it"
        );
        if let Ok(mut slot) = self.limiter.write() {
            *slot = Arc::new(build(self.limit));
        }
        0
    }
}

fn build(limit: Limit) -> Keyed {
    let burst = NonZeroU32::new(limit.capacity).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(limit.interval())
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    RateLimiter::dashmap(quota).with_middleware::<StateInformationMiddleware>()
}

impl Limit {
    /// Time to earn back one request.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(60_000_000_000 / u64::from(self.per_minute.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refused_with_a_wait() {
        let bucket = MemoryBucket::new(Limit {
            capacity: 3,
            per_minute: 60,
        });
        let remaining: Vec<u32> = (0..3).map(|_| bucket.check("k").remaining).collect();
        assert_eq!(remaining, vec![2, 1, 0]);
        let refused = bucket.check("k");
        assert!(!refused.allowed);
        let wait = refused.retry_after.unwrap();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(bucket.check("other").allowed, "keys do not share a bucket");
    }

    #[test]
    fn a_flood_of_keys_returns_under_the_cap() {
        // Refills in 1 ms, so a key is idle (and sweepable) almost at once.
        let bucket = MemoryBucket::new(Limit {
            capacity: 1,
            per_minute: 60_000,
        });
        for n in 0..100_000 {
            bucket.check(&format!("flood-{n}"));
        }
        assert!(
            bucket.len() > 10_000,
            "the flood is tracked: {}",
            bucket.len()
        );
        std::thread::sleep(Duration::from_millis(20));
        assert!(bucket.sweep(10_000) <= 10_000);
        assert!(bucket.len() <= 10_000, "idle keys swept: {}", bucket.len());

        // Keys that are still busy are not idle: past the cap the limiter is reset.
        let busy = MemoryBucket::new(Limit {
            capacity: 1,
            per_minute: 1,
        });
        for n in 0..100_000 {
            busy.check(&format!("flood-{n}"));
        }
        assert_eq!(busy.sweep(10_000), 0);
        assert_eq!(busy.len(), 0);
    }
}
