//! Usage reports: a user's (or, for admins, anyone's) provider calls in a time range, summed
//! by day, model or specialist. Every figure is a plain sum over `usage_logs`.

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};
use utoipa::ToSchema;

use crate::domain::ids::now_utc;
use crate::domain::{Principal, Role};
use crate::store::{Store, StoreError, UsageBucket, UsageGroup, UsageOf};

/// The longest range one report covers.
const MAX_DAYS: i64 = 400;
/// The range when none is given: the last 30 days.
const DEFAULT_DAYS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error("{0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One group's sums.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageLine {
    /// The day (`YYYY-MM-DD`, UTC), model or specialist id; null for calls with no
    /// specialist (conversation titles).
    pub key: Option<String>,
    #[serde(flatten)]
    pub sums: UsageSums,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct UsageSums {
    /// Provider calls.
    pub requests: i64,
    pub succeeded: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    /// Cost by the configured prices, in nano-dollars (1e-9 USD): exact.
    pub cost_nano_usd: i64,
}

impl UsageSums {
    fn add(&mut self, other: &Self) {
        self.requests += other.requests;
        self.succeeded += other.succeeded;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_tokens += other.cached_tokens;
        self.cost_nano_usd += other.cost_nano_usd;
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    /// `day`, `model` or `specialist`.
    pub group_by: &'static str,
    pub data: Vec<UsageLine>,
    /// The sums of every line.
    pub total: UsageSums,
}

/// What a report asks for, as given.
#[derive(Debug, Default)]
pub struct UsageRequest<'a> {
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub group_by: Option<&'a str>,
}

/// The caller's own usage, under every hash their calls are filed under.
pub async fn own(
    store: &dyn Store,
    user_hashes: &[String],
    request: UsageRequest<'_>,
) -> Result<UsageReport, UsageError> {
    report(store, UsageOf::User(user_hashes), request).await
}

/// Anyone's usage (`user_hashes`), or everyone's (None); admins only.
pub async fn admin(
    store: &dyn Store,
    principal: &Principal,
    user_hashes: Option<&[String]>,
    request: UsageRequest<'_>,
) -> Result<UsageReport, UsageError> {
    if !principal.has_role(Role::Admin) {
        return Err(UsageError::Forbidden("only admins can read others' usage"));
    }
    let of = user_hashes.map_or(UsageOf::Everyone, UsageOf::User);
    report(store, of, request).await
}

async fn report(
    store: &dyn Store,
    of: UsageOf<'_>,
    request: UsageRequest<'_>,
) -> Result<UsageReport, UsageError> {
    let (group, group_by) = match request.group_by.unwrap_or("day") {
        "day" => (UsageGroup::Day, "day"),
        "model" => (UsageGroup::Model, "model"),
        "specialist" => (UsageGroup::Specialist, "specialist"),
        _ => {
            return Err(UsageError::Invalid {
                field: "group_by",
                problem: "must be day, model or specialist".into(),
            });
        }
    };
    let to = match request.to {
        Some(t) => instant(t, "to")?,
        None => now_utc(),
    };
    let from = match request.from {
        Some(f) => instant(f, "from")?,
        None => to
            .checked_sub(time::Duration::days(DEFAULT_DAYS))
            .filter(|t| t.year() >= MIN_YEAR)
            .ok_or(UsageError::Invalid {
                field: "to",
                problem: format!("must be in the years {MIN_YEAR} to {MAX_YEAR}"),
            })?,
    };
    if from >= to {
        return Err(UsageError::Invalid {
            field: "from",
            problem: "must be before `to`".into(),
        });
    }
    if to - from > time::Duration::days(MAX_DAYS) {
        return Err(UsageError::Invalid {
            field: "from",
            problem: format!("the range is at most {MAX_DAYS} days"),
        });
    }
    let buckets = store.usage_summary(of, from, to, group).await?;
    let mut total = UsageSums::default();
    let data = buckets
        .into_iter()
        .map(|b: UsageBucket| {
            let sums = UsageSums {
                requests: b.requests,
                succeeded: b.succeeded,
                input_tokens: b.input_tokens,
                output_tokens: b.output_tokens,
                cached_tokens: b.cached_tokens,
                cost_nano_usd: b.cost_nano_usd,
            };
            total.add(&sums);
            UsageLine { key: b.key, sums }
        })
        .collect();
    Ok(UsageReport {
        from,
        to,
        group_by,
        data,
        total,
    })
}

/// Times a report may name: what both databases store and RFC 3339 can write back.
const MIN_YEAR: i32 = 1970;
const MAX_YEAR: i32 = 9999;

/// An RFC 3339 time, or a date (`YYYY-MM-DD`: its midnight, UTC), in the years
/// `MIN_YEAR` to `MAX_YEAR`. Converting an offset never panics: a time whose UTC instant
/// falls outside the range is refused like a malformed one.
fn instant(raw: &str, field: &'static str) -> Result<OffsetDateTime, UsageError> {
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    let parsed = match OffsetDateTime::parse(raw, &Rfc3339) {
        Ok(t) => Some(t.checked_to_offset(time::UtcOffset::UTC)),
        Err(_) => Date::parse(raw, &date_format)
            .ok()
            .map(|d| Some(d.with_time(Time::MIDNIGHT).assume_utc())),
    };
    match parsed {
        None => Err(UsageError::Invalid {
            field,
            problem: "must be an RFC 3339 time or a date (YYYY-MM-DD)".into(),
        }),
        Some(Some(t)) if (MIN_YEAR..=MAX_YEAR).contains(&t.year()) => Ok(t),
        Some(_) => Err(UsageError::Invalid {
            field,
            problem: format!("must be in the years {MIN_YEAR} to {MAX_YEAR}"),
        }),
    }
}
