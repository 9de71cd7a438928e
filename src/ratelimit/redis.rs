//! Buckets in Redis, shared by every instance: the same GCRA as the in-memory limiter, run
//! as one atomic server-side script per check (never GET-then-SET), on Redis's clock.

use std::time::Duration;

use super::{Decision, Limit};
use crate::redis_link::{RedisLink, RedisLinkError};

/// GCRA: `tat` is the theoretical arrival time of the next request. A request is allowed
/// when the bucket (`tau` = capacity × interval) would not overflow.
/// Returns {allowed, remaining, retry_after_ms, reset_after_ms}.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tau = interval * capacity
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + interval
local ahead = new_tat - now
if ahead > tau then
  return {0, 0, math.ceil(ahead - tau), math.ceil(tat - now)}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(ahead) + 1)
local remaining = math.floor((tau - ahead) / interval)
-- Reset as the in-memory limiter reports it: the spent part of the bucket, in intervals.
return {1, remaining, 0, math.ceil((capacity - remaining) * interval)}
";

pub struct RedisBuckets {
    link: RedisLink,
    script: redis::Script,
    prefix: String,
}

impl RedisBuckets {
    pub fn new(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            link: RedisLink::new(url)?,
            script: redis::Script::new(GCRA),
            prefix: prefix.to_owned(),
        })
    }

    pub async fn check(&self, key: &str, limit: Limit) -> Result<Decision, RedisLinkError> {
        let interval_ms = limit.interval().as_secs_f64() * 1000.0;
        let mut invocation = self.script.key(format!("{}{key}", self.prefix));
        invocation.arg(interval_ms).arg(limit.capacity);
        let (allowed, remaining, retry_ms, reset_ms) = self
            .link
            .invoke::<(i64, i64, i64, i64)>(&invocation)
            .await?;
        let ms = |v: i64| Duration::from_millis(v.max(0) as u64);
        Ok(Decision {
            allowed: allowed == 1,
            limit: limit.capacity,
            remaining: remaining.clamp(0, i64::from(limit.capacity)) as u32,
            reset_after: ms(reset_ms),
            retry_after: (allowed != 1).then(|| ms(retry_ms)),
        })
    }
}
