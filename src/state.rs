//! AppState: the shared services every handler may reach, cheap to clone (all `Arc`s).

use std::sync::Arc;

use crate::auth::JwtVerifier;
use crate::config::Config;
use crate::store::Store;
use crate::tasks::Background;

#[derive(Clone)]
pub struct AppState {
    /// The validated configuration the server started with.
    pub config: Arc<Config>,
    /// Postgres or SQLite, behind one API.
    pub store: Arc<dyn Store>,
    /// Redis, when `REDIS_URL` is set: a client that opens connections on demand, so a Redis
    /// restart needs no server restart.
    pub redis: Option<redis::Client>,
    /// Bearer-token verification, keyed once at start-up.
    pub jwt: Arc<JwtVerifier>,
    /// Background tasks, awaited on shutdown.
    pub background: Background,
}

impl AppState {
    pub fn new(config: Config, store: Arc<dyn Store>) -> Result<Self, redis::RedisError> {
        let redis = if config.redis.url.is_empty() {
            None
        } else {
            Some(redis::Client::open(config.redis.url.as_str())?)
        };
        Ok(Self {
            jwt: Arc::new(JwtVerifier::new(&config.auth)),
            config: Arc::new(config),
            store,
            redis,
            background: Background::new(),
        })
    }
}
