//! The ledger: per user and month, what was spent and what is reserved by calls in flight.
//! In memory (one instance; each account starts from `usage_logs`) or in Redis (shared by
//! every instance; check and reserve are one atomic script).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::redis::RedisLedger;
use crate::redis_link::RedisLinkError;

/// What asking for a reservation gave.
pub enum Reservation {
    Held(Hold),
    /// It does not fit: the account's spend and reservations at that moment.
    Refused {
        spent: i64,
        reserved: i64,
    },
    /// No account for this user and month yet: ask again with its recorded spend.
    NeedsSeed,
}

enum Kind {
    Memory(MemoryLedger),
    Redis(Box<RedisLedger>),
}

pub struct Ledger {
    kind: Kind,
    /// Releases and settlement retries that run off the request path; awaited on shutdown.
    tasks: TaskTracker,
}

impl Ledger {
    pub fn memory() -> Self {
        Self {
            kind: Kind::Memory(MemoryLedger::default()),
            tasks: TaskTracker::new(),
        }
    }

    pub fn redis(url: &str, prefix: &str, hold_for: Duration) -> Result<Self, redis::RedisError> {
        Ok(Self {
            kind: Kind::Redis(Box::new(RedisLedger::new(url, prefix, hold_for)?)),
            tasks: TaskTracker::new(),
        })
    }

    /// Reserves `amount` on `key` if spend + reservations + amount stay within `cap`.
    /// `seed` starts an account that does not exist yet.
    pub async fn reserve(
        self: &Arc<Self>,
        key: &str,
        cap: i64,
        amount: i64,
        seed: Option<i64>,
    ) -> Result<Reservation, RedisLinkError> {
        let reserved = match &self.kind {
            Kind::Memory(m) => Ok(m.reserve(key, cap, amount, seed)),
            Kind::Redis(_) => {
                // On a task of its own, turned into a Hold there: a caller that goes away
                // while the script runs drops the task's result, and with it releases the
                // reservation, instead of leaving it held until it runs out.
                let ledger = self.clone();
                let key = key.to_owned();
                let task = tokio::spawn(async move {
                    let Kind::Redis(r) = &ledger.kind else {
                        return Err(RedisLinkError::NotConnected);
                    };
                    let reserved = r.reserve(&key, cap, amount, seed).await?;
                    Ok(ledger.reservation(reserved, key, amount))
                });
                return task.await.unwrap_or(Err(RedisLinkError::NotConnected));
            }
        };
        reserved.map(|r| self.reservation(r, key.to_owned(), amount))
    }

    fn reservation(self: &Arc<Self>, reserved: Reserved, key: String, amount: i64) -> Reservation {
        match reserved {
            Reserved::Held(id) => Reservation::Held(Hold {
                ledger: self.clone(),
                key,
                id,
                amount,
                settled: false,
            }),
            Reserved::Refused { spent, reserved } => Reservation::Refused { spent, reserved },
            Reserved::NeedsSeed => Reservation::NeedsSeed,
        }
    }

    /// A hold that reserved nothing (the ledger was unreachable and the policy is open):
    /// settling it still adds the call's cost to the account.
    pub fn unreserved(self: &Arc<Self>, key: &str) -> Hold {
        Hold {
            ledger: self.clone(),
            key: key.to_owned(),
            id: format!("unreserved-{}", uuid::Uuid::now_v7().simple()),
            amount: 0,
            settled: false,
        }
    }

    /// (spent, reserved) of an account; None when it does not exist yet.
    pub async fn peek(&self, key: &str) -> Result<Option<(i64, i64)>, RedisLinkError> {
        match &self.kind {
            Kind::Memory(m) => Ok(m.peek(key)),
            Kind::Redis(r) => r.peek(key).await,
        }
    }

    /// Replaces a reservation by a cost. In Redis: tried once here; while Redis is away,
    /// retried off the caller's path.
    async fn settle(self: &Arc<Self>, key: &str, id: &str, amount: i64, cost: i64) {
        match &self.kind {
            Kind::Memory(m) => m.settle(key, amount, cost),
            Kind::Redis(r) => {
                if r.settle(key, id, cost).await.is_err() {
                    let ledger = self.clone();
                    let (key, id) = (key.to_owned(), id.to_owned());
                    self.tasks.spawn(
                        async move {
                            if let Kind::Redis(r) = &ledger.kind {
                                r.settle_with_retries(&key, &id, cost).await;
                            }
                        }
                        .in_current_span(),
                    );
                }
            }
        }
    }

    /// Waits, up to `limit`, for releases and settlements still running.
    pub async fn close(&self, limit: Duration) {
        self.tasks.close();
        if tokio::time::timeout(limit, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                pending = self.tasks.len(),
                "budget ledger: settlements still pending at shutdown"
            );
        }
    }
}

/// A ledger's answer before it becomes a [`Reservation`].
pub(super) enum Reserved {
    Held(String),
    Refused { spent: i64, reserved: i64 },
    NeedsSeed,
}

/// A reservation of a call's worst case. Settle it with what the call cost; one dropped
/// unsettled (a request that failed before its call) is released.
pub struct Hold {
    ledger: Arc<Ledger>,
    key: String,
    id: String,
    amount: i64,
    settled: bool,
}

impl Hold {
    /// Replaces the reservation by the call's cost.
    pub async fn settle(mut self, cost: i64) {
        let ledger = self.ledger.clone();
        ledger.settle(&self.key, &self.id, self.amount, cost).await;
        // Only now: a settle cut short (the future dropped) still releases on drop.
        self.settled = true;
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        match &self.ledger.kind {
            Kind::Memory(m) => m.settle(&self.key, self.amount, 0),
            Kind::Redis(_) => {
                // Released off the dropping path, on the ledger's tracker (awaited on
                // shutdown); without a runtime the reservation still runs out by itself.
                if tokio::runtime::Handle::try_current().is_ok() {
                    let ledger = self.ledger.clone();
                    let (key, id) = (std::mem::take(&mut self.key), std::mem::take(&mut self.id));
                    self.ledger.tasks.spawn(
                        async move {
                            if let Kind::Redis(r) = &ledger.kind {
                                r.settle_with_retries(&key, &id, 0).await;
                            }
                        }
                        .in_current_span(),
                    );
                }
            }
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Account {
    spent: i64,
    reserved: i64,
}

/// One instance's ledger. Accounts of past months are dropped once the month turns and
/// nothing is reserved on them.
#[derive(Default)]
pub struct MemoryLedger {
    accounts: Mutex<Accounts>,
}

#[derive(Default)]
struct Accounts {
    by_key: HashMap<String, Account>,
    /// The month suffix (`:YYYY-MM`) of the newest account, to notice the month turning.
    month: String,
}

impl MemoryLedger {
    fn reserve(&self, key: &str, cap: i64, amount: i64, seed: Option<i64>) -> Reserved {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        if !accounts.by_key.contains_key(key) {
            let Some(spent) = seed else {
                return Reserved::NeedsSeed;
            };
            let month = key.rsplit_once(':').map_or("", |(_, m)| m);
            if accounts.month.as_str() < month {
                accounts.month = month.to_owned();
                let month = accounts.month.clone();
                accounts
                    .by_key
                    .retain(|k, a| a.reserved > 0 || k.ends_with(month.as_str()));
            }
            accounts
                .by_key
                .insert(key.to_owned(), Account { spent, reserved: 0 });
        }
        let Some(account) = accounts.by_key.get_mut(key) else {
            return Reserved::NeedsSeed;
        };
        if account
            .spent
            .saturating_add(account.reserved)
            .saturating_add(amount)
            > cap
        {
            return Reserved::Refused {
                spent: account.spent,
                reserved: account.reserved,
            };
        }
        account.reserved = account.reserved.saturating_add(amount);
        Reserved::Held(String::new())
    }

    fn settle(&self, key: &str, amount: i64, cost: i64) {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(account) = accounts.by_key.get_mut(key) {
            account.reserved = (account.reserved - amount).max(0);
            account.spent = account.spent.saturating_add(cost);
        }
    }

    fn peek(&self, key: &str) -> Option<(i64, i64)> {
        let accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        accounts.by_key.get(key).map(|a| (a.spent, a.reserved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_fit_the_cap_and_settle_to_the_cost() {
        let m = MemoryLedger::default();
        let key = "u:2026-11";
        assert!(matches!(m.reserve(key, 100, 40, None), Reserved::NeedsSeed));
        assert!(matches!(
            m.reserve(key, 100, 40, Some(10)),
            Reserved::Held(_)
        ));
        assert!(matches!(m.reserve(key, 100, 40, None), Reserved::Held(_)));
        // 10 spent + 80 reserved + 40 > 100.
        assert!(matches!(
            m.reserve(key, 100, 40, None),
            Reserved::Refused {
                spent: 10,
                reserved: 80
            }
        ));
        m.settle(key, 40, 5);
        assert_eq!(m.peek(key), Some((15, 40)));
        assert!(matches!(m.reserve(key, 100, 40, None), Reserved::Held(_)));
        // A new month drops idle accounts of the old one, keeps ones with reservations.
        m.reserve("v:2026-11", 100, 0, Some(0));
        assert!(matches!(
            m.reserve("u:2026-12", 100, 1, Some(0)),
            Reserved::Held(_)
        ));
        assert_eq!(m.peek(key), Some((15, 80)));
        assert_eq!(m.peek("v:2026-11"), None);
    }
}
