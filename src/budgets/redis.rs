//! The ledger in Redis, shared by every instance. An account is a hash: `spent`, and one
//! `r:<id>` field per reservation holding `amount:expires_ms`, so a reservation of an
//! instance that died runs out instead of holding the budget for ever. Checking and
//! reserving are one script, on Redis's clock: concurrent calls on any instance cannot
//! both take the last of a budget.

use std::time::Duration;

use uuid::Uuid;

use super::ledger::Reserved;
use crate::redis_link::{RedisLink, RedisLinkError};

/// Sums live reservations (dropping expired ones), then reserves if it fits.
/// ARGV: cap, amount (-1: only report), id, hold_ms, seed ('' when unknown), ttl_secs.
/// Returns {status, spent, reserved}: 1 held (or reported), 0 refused, -1 no account
/// (and no seed to start one).
const RESERVE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[5] == '' then return {-1, 0, 0} end
  redis.call('HSET', KEYS[1], 'spent', ARGV[5])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fields = redis.call('HGETALL', KEYS[1])
local spent = 0
local reserved = 0
for i = 1, #fields, 2 do
  local f = fields[i]
  if f == 'spent' then
    spent = tonumber(fields[i + 1])
  else
    local amount, expires = string.match(fields[i + 1], '^(%d+):(%d+)$')
    if amount == nil or tonumber(expires) <= now then
      redis.call('HDEL', KEYS[1], f)
    else
      reserved = reserved + tonumber(amount)
    end
  end
end
local amount = tonumber(ARGV[2])
if amount < 0 then return {1, spent, reserved} end
if spent + reserved + amount > tonumber(ARGV[1]) then
  return {0, spent, reserved}
end
redis.call('HSET', KEYS[1], 'r:' .. ARGV[3], string.format('%d:%d', amount, now + tonumber(ARGV[4])))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
return {1, spent, reserved + amount}
";

/// Replaces a reservation by the cost. An account that is gone (Redis lost it) is not
/// re-created from one call's cost: the next reservation starts it from the record.
/// ARGV: id, cost.
const SETTLE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], 'r:' .. ARGV[1])
redis.call('HINCRBY', KEYS[1], 'spent', ARGV[2])
return 1
";

/// An account lives this long after it was started or last reserved on (a month and
/// more), then Redis forgets it.
const ACCOUNT_TTL: Duration = Duration::from_secs(40 * 86_400);
/// A settlement that failed on the request path is retried this many times, off it, before
/// it is given up (the reservation then runs out by itself, and the call's cost is in
/// `usage_logs`).
const SETTLE_RETRIES: u32 = 4;

pub struct RedisLedger {
    link: RedisLink,
    prefix: String,
    hold_for: Duration,
    reserve: redis::Script,
    settle: redis::Script,
}

impl RedisLedger {
    pub fn new(url: &str, prefix: &str, hold_for: Duration) -> Result<Self, redis::RedisError> {
        Ok(Self {
            link: RedisLink::new(url)?,
            prefix: prefix.to_owned(),
            hold_for,
            reserve: redis::Script::new(RESERVE),
            settle: redis::Script::new(SETTLE),
        })
    }

    pub(super) async fn reserve(
        &self,
        key: &str,
        cap: i64,
        amount: i64,
        seed: Option<i64>,
    ) -> Result<Reserved, RedisLinkError> {
        let id = Uuid::now_v7().simple().to_string();
        let (status, spent, reserved) = self.run(key, cap, amount, &id, seed).await?;
        Ok(match status {
            1 => Reserved::Held(id),
            0 => Reserved::Refused { spent, reserved },
            _ => Reserved::NeedsSeed,
        })
    }

    async fn run(
        &self,
        key: &str,
        cap: i64,
        amount: i64,
        id: &str,
        seed: Option<i64>,
    ) -> Result<(i64, i64, i64), RedisLinkError> {
        let mut call = self.reserve.key(format!("{}{key}", self.prefix));
        call.arg(cap)
            .arg(amount)
            .arg(id)
            .arg(u64::try_from(self.hold_for.as_millis()).unwrap_or(u64::MAX))
            .arg(seed.map(|s| s.to_string()).unwrap_or_default())
            .arg(ACCOUNT_TTL.as_secs());
        self.link.invoke::<(i64, i64, i64)>(&call).await
    }

    /// Settles once.
    pub(super) async fn settle(
        &self,
        key: &str,
        id: &str,
        cost: i64,
    ) -> Result<(), RedisLinkError> {
        let mut call = self.settle.key(format!("{}{key}", self.prefix));
        call.arg(id).arg(cost);
        self.link.invoke::<i64>(&call).await.map(drop)
    }

    /// Settles, retrying with backoff while Redis is away.
    pub(super) async fn settle_with_retries(&self, key: &str, id: &str, cost: i64) {
        let mut wait = Duration::from_millis(250);
        for attempt in 1..=SETTLE_RETRIES {
            match self.settle(key, id, cost).await {
                Ok(()) => return,
                Err(e) if attempt == SETTLE_RETRIES => {
                    tracing::error!(error = %e, cost_nano_usd = cost, "budget ledger: a call's cost could not be settled in redis");
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }

    pub(super) async fn peek(&self, key: &str) -> Result<Option<(i64, i64)>, RedisLinkError> {
        let (status, spent, reserved) = self.run(key, 0, -1, "", None).await?;
        Ok((status == 1).then_some((spent, reserved)))
    }
}
