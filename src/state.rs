//! AppState: the shared services every handler may reach, behind one `Arc`.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Authenticator, KeySetupError};
use crate::budgets::Budgets;
use crate::chat::{ChatService, Specialists};
use crate::config::Config;
use crate::files::Files;
use crate::providers::Registry;
use crate::providers::registry::RegistryError;
use crate::ratelimit::RateLimiter;
use crate::store::Store;
use crate::tasks::Background;

/// Cloned by every middleware layer of every request, so a clone is one reference count,
/// not one per service (a Redis client's clone even allocates). Fields are reached through
/// `Deref`: `state.config`, `state.chat`...
#[derive(Clone)]
pub struct AppState(Arc<Services>);

pub struct Services {
    /// The validated configuration the server started with.
    pub config: Arc<Config>,
    /// Postgres or SQLite, behind one API.
    pub store: Arc<dyn Store>,
    /// Redis, when `REDIS_URL` is set: a client that opens connections on demand, so a Redis
    /// restart needs no server restart.
    pub redis: Option<redis::Client>,
    /// Credentials (JWTs, API keys) into principals.
    pub auth: Arc<Authenticator>,
    /// The chat service: specialists, detached generations, the usage writer.
    pub chat: Arc<ChatService>,
    /// Uploaded files: metadata in the store, bytes in object storage.
    pub files: Arc<Files>,
    /// LLM providers by name, with retries, circuit breakers and pricing.
    pub providers: Arc<Registry>,
    /// Monthly spend caps: the caps, and the ledger of spend and reservations.
    pub budgets: Arc<Budgets>,
    /// Token buckets per user and route class, and per IP before authentication.
    pub limiter: Arc<RateLimiter>,
    /// Background tasks, awaited on shutdown.
    pub background: Background,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("redis.url: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Keys(#[from] KeySetupError),
    #[error(transparent)]
    Providers(#[from] RegistryError),
    #[error("{0}")]
    Files(String),
    #[error("chat.title_model: {0:?} names no configured provider")]
    TitleModel(String),
    #[error(transparent)]
    Specialists(#[from] crate::chat::specialists::SpecialistsError),
}

impl Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

impl AppState {
    pub fn new(config: Config, store: Arc<dyn Store>) -> Result<Self, StateError> {
        // Recording starts with the app, not with the first scrape.
        crate::prometheus::handle();
        let redis = if config.redis.url.is_empty() {
            None
        } else {
            Some(redis::Client::open(config.redis.url.as_str())?)
        };
        let background = Background::new();
        let limiter = Arc::new(RateLimiter::new(&config.rate_limit, &config.redis)?);
        let providers = Arc::new(Registry::from_config(
            &config.providers,
            &config.config_dir,
        )?);
        let files = Arc::new(Files::new(&config.files, store.clone()).map_err(StateError::Files)?);
        let specialists = Specialists::load(&config.config_dir, &config.providers.default_model)?;
        let title_model = &config.chat.title_model;
        if !title_model.is_empty() && !providers.knows(title_model) {
            return Err(StateError::TitleModel(title_model.clone()));
        }
        // A reservation outlives a generation by a minute before Redis lets it run out.
        let budgets = Arc::new(Budgets::new(
            &config.budgets,
            &config.redis,
            config.auth.user_hash_pepper.clone(),
            store.clone(),
            providers.clone(),
            Duration::from_secs(config.chat.max_generation_secs.saturating_add(60)),
        )?);
        let chat = Arc::new(ChatService::new(
            store.clone(),
            providers.clone(),
            files.clone(),
            budgets.clone(),
            specialists,
            config.chat.clone(),
        ));
        Ok(Self(Arc::new(Services {
            chat,
            budgets,
            files,
            limiter,
            providers,
            auth: Arc::new(Authenticator::new(
                &config.auth,
                store.clone(),
                background.clone(),
            )?),
            config: Arc::new(config),
            store,
            redis,
            background,
        })))
    }

    /// Start-up work that needs the runtime: warm the JWKS, start background loops.
    pub async fn start(&self) {
        self.auth.start().await;
        self.background.spawn(
            self.limiter
                .clone()
                .sweep_loop(self.background.shutdown_signal()),
        );
        // Each instance its own lease holder name.
        let holder = format!("instance-{}", crate::domain::new_id());
        self.background.spawn(crate::retention::run_loop(
            self.store.clone(),
            self.config.retention.clone(),
            holder,
            self.background.shutdown_signal(),
        ));
    }
}
