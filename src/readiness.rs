//! Readiness: can this instance serve? One database round trip, and Redis when configured.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::state::AppState;

/// Each dependency's check must answer within this, so a hung dependency reads as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Dependency name → "ok" or a short reason (never a URL or a secret).
    pub checks: BTreeMap<&'static str, &'static str>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.checks.values().all(|v| *v == "ok")
    }
    pub fn failing(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|(_, v)| **v != "ok")
            .map(|(k, _)| *k)
            .collect()
    }
}

pub async fn check(state: &AppState) -> Readiness {
    let database = async {
        match tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()).await {
            Ok(Ok(())) => "ok",
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: database check failed");
                "unreachable"
            }
            Err(_) => "timeout",
        }
    };
    let redis = async {
        let client = state.redis.as_ref()?;
        let ping = async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        Some(match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
            Ok(Ok(_)) => "ok",
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: redis check failed");
                "unreachable"
            }
            Err(_) => "timeout",
        })
    };
    let (database, redis) = tokio::join!(database, redis);
    let mut checks = BTreeMap::from([("database", database)]);
    if let Some(redis) = redis {
        checks.insert("redis", redis);
    }
    Readiness { checks }
}
