//! Rate limiting: token buckets per user and route class (with per-role overrides), per IP
//! for requests without valid credentials; in memory (governor) or in Redis (one atomic
//! script), with the same semantics and headers either way. No HTTP here.

pub mod client_ip;
mod memory;
mod redis;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{
    ForwardedHeaderName, QuotaConfig, RateLimitBackend, RateLimitConfig, RedisConfig, RedisFailure,
};
use crate::domain::Role;

pub use client_ip::{ForwardedHeader, TrustedProxies};
use memory::MemoryBucket;
use redis::RedisBuckets;

/// The address a bucket is kept for: IPv4 as is, IPv6 by its /64, the block one subscriber
/// usually gets (one address per bucket would hand each of them 2^64 buckets).
fn bucket_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Route classes, each with its own bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Chat,
    Upload,
    Read,
    /// Per IP: requests without valid credentials.
    Anonymous,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Upload => "upload",
            Self::Read => "read",
            Self::Anonymous => "anonymous",
        }
    }

    /// The class of a route, by its template: chat generation, uploads, everything else.
    pub fn of_route(method: &str, route: &str) -> Self {
        match (method, route) {
            (_, "/v1/chat/send" | "/v1/chat/stream" | "/v1/chat/completions") => Self::Chat,
            ("POST", "/v1/files") => Self::Upload,
            _ => Self::Read,
        }
    }
}

/// A bucket's size: `capacity` at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limit {
    pub capacity: u32,
    pub per_minute: u32,
}

impl From<QuotaConfig> for Limit {
    fn from(q: QuotaConfig) -> Self {
        Self {
            capacity: q.capacity,
            per_minute: q.per_minute,
        }
    }
}

/// The outcome of one check, with what the headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset_after: Duration,
    /// When refused: until one request is allowed.
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead; the decision is absent when limiting is off or Redis failed open.
    Allowed(Option<Decision>),
    Limited(Decision),
    /// Redis is unreachable and the policy is to fail closed.
    Unavailable,
}

enum Backend {
    Memory(HashMap<Limit, MemoryBucket>),
    Redis(Box<RedisBuckets>),
}

pub struct RateLimiter {
    enabled: bool,
    limits: HashMap<(Class, Option<Role>), Limit>,
    backend: Backend,
    failure: RedisFailure,
    trusted: TrustedProxies,
    /// IPs whose anonymous bucket is empty, until when: checked before any auth work.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    max_keys: usize,
    sweep_every: Duration,
    sweep_now: Notify,
    redis_failures: AtomicU64,
    last_failure_log: Mutex<Option<Instant>>,
}

impl RateLimiter {
    pub fn new(config: &RateLimitConfig, redis: &RedisConfig) -> Result<Self, ::redis::RedisError> {
        let mut limits = HashMap::new();
        for (class, quota) in [
            (Class::Chat, config.chat),
            (Class::Upload, config.upload),
            (Class::Read, config.read),
            (Class::Anonymous, config.anonymous),
        ] {
            limits.insert((class, None), Limit::from(quota));
        }
        for (role, over) in &config.roles {
            let Some(role) = Role::parse(role) else {
                continue;
            };
            for (class, quota) in [
                (Class::Chat, over.chat),
                (Class::Upload, over.upload),
                (Class::Read, over.read),
            ] {
                if let Some(q) = quota {
                    limits.insert((class, Some(role)), Limit::from(q));
                }
            }
        }
        let use_redis = match config.backend {
            RateLimitBackend::Redis => true,
            RateLimitBackend::Auto => !redis.url.is_empty(),
            RateLimitBackend::Memory => false,
        };
        let backend = if use_redis {
            Backend::Redis(Box::new(RedisBuckets::new(
                &redis.url,
                &config.redis_prefix,
            )?))
        } else {
            let mut buckets = HashMap::new();
            for limit in limits.values() {
                buckets
                    .entry(*limit)
                    .or_insert_with(|| MemoryBucket::new(*limit));
            }
            Backend::Memory(buckets)
        };
        Ok(Self {
            enabled: config.enabled,
            limits,
            backend,
            failure: config.redis_failure,
            trusted: TrustedProxies::new(
                &config.trusted_proxies,
                match config.forwarded_header {
                    ForwardedHeaderName::XForwardedFor => ForwardedHeader::XForwardedFor,
                    ForwardedHeaderName::Forwarded => ForwardedHeader::Forwarded,
                },
            ),
            blocked: Mutex::new(HashMap::new()),
            max_keys: config.max_tracked_keys,
            sweep_every: Duration::from_secs(config.sweep_interval_secs),
            sweep_now: Notify::new(),
            redis_failures: AtomicU64::new(0),
            last_failure_log: Mutex::new(None),
        })
    }

    /// The header the trusted proxies write.
    pub fn forwarded_header(&self) -> ForwardedHeader {
        self.trusted.header()
    }

    /// The client behind the peer, from the configured header's value.
    pub fn client_ip(&self, peer: IpAddr, header_value: Option<&str>) -> IpAddr {
        self.trusted.client_ip(peer, header_value)
    }

    /// How many Redis checks failed (for metrics).
    pub fn redis_failures(&self) -> u64 {
        self.redis_failures.load(Ordering::Relaxed)
    }

    fn limit_for(&self, class: Class, role: Option<Role>) -> Limit {
        self.limits
            .get(&(class, role))
            .or_else(|| self.limits.get(&(class, None)))
            .copied()
            .unwrap_or(Limit {
                capacity: 1,
                per_minute: 1,
            })
    }

    /// Checks (and spends from) an authenticated user's bucket for a route class.
    pub async fn check_user(&self, class: Class, user_id: &str, role: Role) -> Verdict {
        let key = format!("{}:u:{user_id}", class.as_str());
        self.check(&key, self.limit_for(class, Some(role))).await
    }

    /// Checks (and spends from) an IP's bucket for requests without valid credentials.
    pub async fn check_anonymous(&self, ip: IpAddr) -> Verdict {
        let ip = bucket_address(ip);
        let key = format!("anonymous:ip:{ip}");
        let verdict = self
            .check(&key, self.limit_for(Class::Anonymous, None))
            .await;
        if let Verdict::Limited(d) = verdict
            && let Ok(mut blocked) = self.blocked.lock()
        {
            if blocked.len() >= self.max_keys {
                let now = Instant::now();
                blocked.retain(|_, until| *until > now);
                self.sweep_now.notify_one();
            }
            if blocked.len() < self.max_keys {
                blocked.insert(ip, Instant::now() + d.retry_after.unwrap_or_default());
            }
        }
        verdict
    }

    /// When an IP's anonymous bucket is known to be empty: the decision to refuse with,
    /// without spending anything or doing any authentication work.
    pub fn blocked(&self, ip: IpAddr) -> Option<Decision> {
        if !self.enabled {
            return None;
        }
        let ip = bucket_address(ip);
        let mut blocked = self.blocked.lock().ok()?;
        let until = *blocked.get(&ip)?;
        let now = Instant::now();
        if until <= now {
            blocked.remove(&ip);
            return None;
        }
        let limit = self.limit_for(Class::Anonymous, None);
        Some(Decision {
            allowed: false,
            limit: limit.capacity,
            remaining: 0,
            reset_after: limit.interval() * limit.capacity,
            retry_after: Some(until - now),
        })
    }

    async fn check(&self, key: &str, limit: Limit) -> Verdict {
        if !self.enabled {
            return Verdict::Allowed(None);
        }
        let decision = match &self.backend {
            Backend::Memory(buckets) => {
                let Some(bucket) = buckets.get(&limit) else {
                    return Verdict::Allowed(None);
                };
                let d = bucket.check(key);
                if bucket.len() > self.max_keys {
                    self.sweep_now.notify_one();
                }
                d
            }
            Backend::Redis(redis) => match redis.check(key, limit).await {
                Ok(d) => d,
                Err(e) => return self.redis_failed(&e),
            },
        };
        if decision.allowed {
            Verdict::Allowed(Some(decision))
        } else {
            Verdict::Limited(decision)
        }
    }

    fn redis_failed(&self, error: &dyn std::fmt::Display) -> Verdict {
        self.redis_failures.fetch_add(1, Ordering::Relaxed);
        // One warning per 10 s, not one per request.
        if let Ok(mut last) = self.last_failure_log.lock()
            && last.is_none_or(|t| t.elapsed() > Duration::from_secs(10))
        {
            *last = Some(Instant::now());
            tracing::warn!(error = %error, policy = ?self.failure, failures = self.redis_failures(), "rate limiter: redis unreachable");
        }
        match self.failure {
            RedisFailure::Open => Verdict::Allowed(None),
            RedisFailure::Closed => Verdict::Unavailable,
        }
    }

    /// Keys tracked in memory (0 for Redis).
    pub fn tracked_keys(&self) -> usize {
        match &self.backend {
            Backend::Memory(buckets) => buckets.values().map(MemoryBucket::len).sum(),
            Backend::Redis(_) => 0,
        }
    }

    /// Drops idle in-memory keys every sweep interval, or at once when over the cap.
    pub async fn sweep_loop(self: std::sync::Arc<Self>, shutdown: CancellationToken) {
        let Backend::Memory(buckets) = &self.backend else {
            return;
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.sweep_every) => {}
                () = self.sweep_now.notified() => {}
            }
            for bucket in buckets.values() {
                bucket.sweep(self.max_keys);
            }
            if let Ok(mut blocked) = self.blocked.lock() {
                let now = Instant::now();
                blocked.retain(|_, until| *until > now);
                blocked.shrink_to_fit();
            }
        }
    }
}
