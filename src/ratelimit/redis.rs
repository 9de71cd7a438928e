//! Buckets in Redis, shared by every instance: the same GCRA as the in-memory limiter, run
//! as one atomic server-side script per check (never GET-then-SET), on Redis's clock.

use std::sync::RwLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

use super::{Decision, Limit};

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

/// Each check must answer within this, or it counts as Redis being unreachable.
const CHECK_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a broken connection is re-created, at most.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

pub struct RedisBuckets {
    client: redis::Client,
    script: redis::Script,
    prefix: String,
    connection: RwLock<Option<ConnectionManager>>,
    connecting: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RedisLimitError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer in time")]
    Timeout,
    #[error("redis connection not available yet")]
    NotConnected,
}

impl RedisBuckets {
    pub fn new(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            script: redis::Script::new(GCRA),
            prefix: prefix.to_owned(),
            connection: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(None),
        })
    }

    pub async fn check(&self, key: &str, limit: Limit) -> Result<Decision, RedisLimitError> {
        let mut conn = self.connection().await?;
        let interval_ms = limit.interval().as_secs_f64() * 1000.0;
        let mut invocation = self.script.key(format!("{}{key}", self.prefix));
        invocation.arg(interval_ms).arg(limit.capacity);
        let call = invocation.invoke_async::<(i64, i64, i64, i64)>(&mut conn);
        let (allowed, remaining, retry_ms, reset_ms) = tokio::time::timeout(CHECK_TIMEOUT, call)
            .await
            .map_err(|_| RedisLimitError::Timeout)??;
        let ms = |v: i64| Duration::from_millis(v.max(0) as u64);
        Ok(Decision {
            allowed: allowed == 1,
            limit: limit.capacity,
            remaining: remaining.clamp(0, i64::from(limit.capacity)) as u32,
            reset_after: ms(reset_ms),
            retry_after: (allowed != 1).then(|| ms(retry_ms)),
        })
    }

    /// The shared connection; created on first use and re-created (at most once a second)
    /// when creating it failed, so the limiter recovers by itself when Redis returns.
    /// An established ConnectionManager reconnects on its own.
    async fn connection(&self) -> Result<ConnectionManager, RedisLimitError> {
        if let Ok(guard) = self.connection.read()
            && let Some(conn) = guard.as_ref()
        {
            return Ok(conn.clone());
        }
        let mut last_attempt = self.connecting.lock().await;
        if let Ok(guard) = self.connection.read()
            && let Some(conn) = guard.as_ref()
        {
            return Ok(conn.clone());
        }
        if last_attempt.is_some_and(|t| t.elapsed() < RECONNECT_EVERY) {
            return Err(RedisLimitError::NotConnected);
        }
        *last_attempt = Some(Instant::now());
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CHECK_TIMEOUT))
            .set_response_timeout(Some(CHECK_TIMEOUT))
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(
            CHECK_TIMEOUT * 2,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| RedisLimitError::Timeout)??;
        if let Ok(mut guard) = self.connection.write() {
            *guard = Some(conn.clone());
        }
        Ok(conn)
    }
}
