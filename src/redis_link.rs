//! One shared Redis connection for a feature (the rate limiter, the budget ledger), opened
//! on first use and opened again, at most once a second, while Redis is away, so a Redis
//! restart never needs a server restart. Every call is bounded by a short timeout.

use std::sync::RwLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

/// Each command must answer within this, or Redis counts as unreachable.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a broken connection is re-created, at most.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RedisLinkError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer in time")]
    Timeout,
    #[error("redis connection not available yet")]
    NotConnected,
}

pub struct RedisLink {
    client: redis::Client,
    connection: RwLock<Option<ConnectionManager>>,
    connecting: tokio::sync::Mutex<Option<Instant>>,
}

impl RedisLink {
    pub fn new(url: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            connection: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(None),
        })
    }

    /// Runs `script` within [`CALL_TIMEOUT`].
    pub async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, RedisLinkError> {
        let mut conn = self.connection().await?;
        tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async::<T>(&mut conn))
            .await
            .map_err(|_| RedisLinkError::Timeout)?
            .map_err(RedisLinkError::from)
    }

    /// The shared connection; created on first use and re-created (at most once a second)
    /// when creating it failed. An established ConnectionManager reconnects on its own.
    async fn connection(&self) -> Result<ConnectionManager, RedisLinkError> {
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
            return Err(RedisLinkError::NotConnected);
        }
        *last_attempt = Some(Instant::now());
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(
            CALL_TIMEOUT * 2,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| RedisLinkError::Timeout)??;
        if let Ok(mut guard) = self.connection.write() {
            *guard = Some(conn.clone());
        }
        Ok(conn)
    }
}
