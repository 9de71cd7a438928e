//! Monthly spend caps per user. Before a provider call its worst-case cost is reserved in a
//! ledger (in memory, or in Redis shared by every instance); after it the reservation is
//! settled to what the call cost. Spend comes from the ledger, not from `usage_logs` per
//! request: usage rows are written in batches, so the database lags behind the calls.

mod ledger;
mod month;
mod redis;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use crate::config::{BudgetsConfig, RateLimitBackend, RedisConfig, RedisFailure, Secret};
use crate::domain::ids::now_utc;
use crate::domain::principal::user_hash;
use crate::providers::registry::split_model;
use crate::providers::{ChatRequest, Registry, Usage, tokens};
use crate::store::{BudgetOverride, Store, StoreError};
pub use ledger::{Hold, Ledger, Reservation};
pub use month::Month;

/// Caps cached per instance before a fresh one is read; past it the cache starts over.
const MAX_CACHED_CAPS: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("the call's worst case does not fit what is left of the monthly budget")]
    Exceeded(Box<Refusal>),
    #[error("the budget ledger cannot be reached")]
    Unavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a call was refused, with the figures a client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub monthly_cap_nano_usd: i64,
    pub spent_nano_usd: i64,
    pub reserved_nano_usd: i64,
    /// The call's worst case.
    pub required_nano_usd: i64,
    pub resets_at: OffsetDateTime,
}

impl Refusal {
    pub fn remaining_nano_usd(&self) -> i64 {
        remaining(
            self.monthly_cap_nano_usd,
            self.spent_nano_usd,
            self.reserved_nano_usd,
        )
    }
}

fn remaining(cap: i64, spent: i64, reserved: i64) -> i64 {
    cap.saturating_sub(spent.saturating_add(reserved)).max(0)
}

/// Where a user's cap comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CapSource {
    /// `budgets.default_monthly_nano_usd`.
    Default,
    /// Set for this user by an admin.
    User,
}

/// A user's cap, and where it comes from. `monthly_nano_usd: None` is no cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cap {
    pub monthly_nano_usd: Option<i64>,
    pub source: CapSource,
    /// The admin's setting, when there is one.
    pub set: Option<BudgetOverride>,
}

/// This month's figures for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub month: Month,
    pub cap: Cap,
    pub spent_nano_usd: i64,
    pub reserved_nano_usd: i64,
}

impl Standing {
    pub fn remaining_nano_usd(&self) -> Option<i64> {
        self.cap
            .monthly_nano_usd
            .map(|cap| remaining(cap, self.spent_nano_usd, self.reserved_nano_usd))
    }
}

/// What the caller of a provider call is charged under.
#[derive(Debug, Clone, Copy)]
pub struct Payer<'a> {
    /// Whose cap applies (the token's subject), and whose ledger account.
    pub user_id: &'a str,
    /// The hash this credential files usage rows under: with the user id's own hash, what
    /// an account's first figure is summed over.
    pub user_hash: &'a str,
}

struct CachedCap {
    /// The admin's setting: None when there is none.
    set: Option<BudgetOverride>,
    read_at: Instant,
}

pub struct Budgets {
    store: Arc<dyn Store>,
    ledger: Arc<Ledger>,
    providers: Arc<Registry>,
    default_cap: Option<i64>,
    default_max_tokens: u32,
    cache_for: Duration,
    failure: RedisFailure,
    caps: RwLock<HashMap<Box<str>, CachedCap>>,
    /// Bumped by every change: a read that started before one does not cache what it read.
    epoch: AtomicU64,
    /// The usage-hash pepper: a user's ledger account is the hash of their user id.
    pepper: Secret,
}

impl Budgets {
    /// `hold_for`: how long a Redis reservation outlives an instance that died holding it
    /// (the longest a generation may run, and some).
    pub fn new(
        config: &BudgetsConfig,
        redis: &RedisConfig,
        pepper: Secret,
        store: Arc<dyn Store>,
        providers: Arc<Registry>,
        hold_for: Duration,
    ) -> Result<Self, ::redis::RedisError> {
        let use_redis = match config.backend {
            RateLimitBackend::Redis => true,
            RateLimitBackend::Auto => !redis.url.is_empty(),
            RateLimitBackend::Memory => false,
        };
        let ledger = if use_redis {
            Ledger::redis(&redis.url, &config.redis_prefix, hold_for)?
        } else {
            Ledger::memory()
        };
        Ok(Self {
            store,
            ledger: Arc::new(ledger),
            providers,
            default_cap: (config.default_monthly_nano_usd >= 0)
                .then_some(config.default_monthly_nano_usd),
            default_max_tokens: config.default_max_tokens,
            cache_for: Duration::from_secs(config.cache_secs),
            failure: config.redis_failure,
            caps: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            pepper,
        })
    }

    /// A user's cap: the admin's setting, else the default. Read from the database at most
    /// once per `cache_secs` per user, so a chat request usually costs a map lookup.
    pub async fn cap(&self, user_id: &str) -> Result<Cap, StoreError> {
        let cached = self
            .caps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(user_id)
            .filter(|c| c.read_at.elapsed() < self.cache_for)
            .map(|c| c.set.clone());
        let set = match cached {
            Some(set) => set,
            None => {
                let epoch = self.epoch.load(Ordering::Acquire);
                let set = self.store.get_budget(user_id).await?;
                // A change made while this read was on its way wins: it is not cached over.
                if self.epoch.load(Ordering::Acquire) == epoch {
                    self.remember(user_id, set.clone());
                }
                set
            }
        };
        Ok(self.cap_of(set))
    }

    fn cap_of(&self, set: Option<BudgetOverride>) -> Cap {
        match set {
            Some(set) => Cap {
                monthly_nano_usd: set.monthly_nano_usd,
                source: CapSource::User,
                set: Some(set),
            },
            None => Cap {
                monthly_nano_usd: self.default_cap,
                source: CapSource::Default,
                set: None,
            },
        }
    }

    fn remember(&self, user_id: &str, set: Option<BudgetOverride>) {
        let mut caps = self.caps.write().unwrap_or_else(|e| e.into_inner());
        if caps.len() >= MAX_CACHED_CAPS {
            caps.clear();
        }
        caps.insert(
            user_id.into(),
            CachedCap {
                set,
                read_at: Instant::now(),
            },
        );
    }

    /// Sets a user's cap (None: no cap), or with `set = None` removes the setting so the
    /// default applies again. This instance uses it from the next call, the others within
    /// `cache_secs`.
    pub async fn set_cap(
        &self,
        user_id: &str,
        set: Option<Option<i64>>,
        by: &str,
    ) -> Result<Cap, StoreError> {
        let written = match set {
            Some(monthly_nano_usd) => {
                let row = BudgetOverride {
                    user_id: user_id.to_owned(),
                    monthly_nano_usd,
                    updated_by: by.to_owned(),
                    updated_at: now_utc(),
                };
                self.store.put_budget(&row).await?;
                Some(row)
            }
            None => {
                self.store.delete_budget(user_id).await?;
                None
            }
        };
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.remember(user_id, written.clone());
        Ok(self.cap_of(written))
    }

    /// Drops a cached cap (after the user's erasure).
    pub fn forget(&self, user_id: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.caps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(user_id);
    }

    /// Waits, up to `limit`, for settlements still being retried and releases in flight.
    pub async fn close(&self, limit: Duration) {
        self.ledger.close(limit).await;
    }

    /// A user's ledger account (their user id's hash, one account whatever credential they
    /// use), and the hashes their usage rows may be filed under, for its first figure.
    fn account(&self, payer: Payer<'_>) -> (String, Vec<String>) {
        let account = user_hash(self.pepper.expose(), None, payer.user_id);
        let mut hashes = vec![account.clone(), payer.user_hash.to_owned()];
        hashes.dedup();
        (account, hashes)
    }

    /// Admits a provider call for `payer`: with a cap in force, bounds `request.max_tokens`
    /// and reserves the worst case over `chain` (the specialist's model and fallbacks).
    /// None: no cap applies (or Redis is away and the policy is open). The hold must be
    /// settled with the call's cost; dropped unsettled, it is released.
    pub async fn admit(
        &self,
        payer: Payer<'_>,
        chain: &[String],
        request: &mut ChatRequest,
    ) -> Result<Option<Hold>, BudgetError> {
        let Some(cap) = self.cap(payer.user_id).await?.monthly_nano_usd else {
            return Ok(None);
        };
        let max_tokens = *request.max_tokens.get_or_insert(self.default_max_tokens);
        let required = self.worst_case(chain, request, max_tokens);
        let month = Month::of(now_utc());
        let (account, hashes) = self.account(payer);
        let key = month.key(&account);
        let mut seed = None;
        loop {
            match self.ledger.reserve(&key, cap, required, seed).await {
                Ok(Reservation::Held(hold)) => return Ok(Some(hold)),
                Ok(Reservation::Refused { spent, reserved }) => {
                    metrics::counter!(crate::prometheus::BUDGET_REFUSALS, "reason" => "exceeded")
                        .increment(1);
                    return Err(BudgetError::Exceeded(Box::new(Refusal {
                        monthly_cap_nano_usd: cap,
                        spent_nano_usd: spent,
                        reserved_nano_usd: reserved,
                        required_nano_usd: required,
                        resets_at: month.end,
                    })));
                }
                // The ledger has no account for this month yet: start it from the record.
                Ok(Reservation::NeedsSeed) if seed.is_none() => {
                    seed = Some(self.recorded_spend(&hashes, &month).await?);
                }
                Ok(Reservation::NeedsSeed) => return Err(BudgetError::Unavailable),
                Err(e) => {
                    tracing::warn!(error = %e, policy = ?self.failure, "budget ledger unreachable");
                    return match self.failure {
                        // Let through unreserved, but its cost still goes to the ledger
                        // once Redis is back (settling is retried off the request path).
                        RedisFailure::Open => Ok(Some(self.ledger.unreserved(&key))),
                        RedisFailure::Closed => {
                            metrics::counter!(crate::prometheus::BUDGET_REFUSALS, "reason" => "ledger_unavailable")
                                .increment(1);
                            Err(BudgetError::Unavailable)
                        }
                    };
                }
            }
        }
    }

    /// This month's cap, spend and reservations for one user. With the ledger unreachable,
    /// the spend as recorded in `usage_logs` (nothing reserved).
    pub async fn standing(&self, payer: Payer<'_>) -> Result<Standing, BudgetError> {
        let cap = self.cap(payer.user_id).await?;
        let month = Month::of(now_utc());
        let (account, hashes) = self.account(payer);
        let (spent, reserved) = match self.ledger.peek(&month.key(&account)).await {
            Ok(Some(figures)) => figures,
            Ok(None) => (self.recorded_spend(&hashes, &month).await?, 0),
            Err(e) => {
                tracing::warn!(error = %e, "budget ledger unreachable; reporting recorded spend");
                (self.recorded_spend(&hashes, &month).await?, 0)
            }
        };
        Ok(Standing {
            month,
            cap,
            spent_nano_usd: spent,
            reserved_nano_usd: reserved,
        })
    }

    /// The worst case of a call: every prompt token and `max_tokens` of output, at the
    /// dearest model of the chain (a fallback may answer).
    fn worst_case(&self, chain: &[String], request: &ChatRequest, max_tokens: u32) -> i64 {
        let prompt = request.prompt_text();
        chain
            .iter()
            .map(|model| {
                let upstream = split_model(model).map_or("", |(_, m)| m);
                let usage = Usage {
                    input_tokens: tokens::count(upstream, &prompt),
                    output_tokens: u64::from(max_tokens),
                    cached_input_tokens: 0,
                    estimated: true,
                };
                self.providers.pricing().cost_nano_usd(model, &usage)
            })
            .max()
            .unwrap_or(0)
    }

    /// Spend this month as `usage_logs` has it.
    async fn recorded_spend(&self, hashes: &[String], month: &Month) -> Result<i64, StoreError> {
        self.store
            .spent_between(hashes, month.start, month.end)
            .await
    }
}
