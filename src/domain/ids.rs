//! Ids and timestamps: UUIDv7 (time-ordered, so an id can serve as a cursor) and UTC now.

use time::OffsetDateTime;
use uuid::Uuid;

/// A new time-ordered id.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// Now in UTC, truncated to microseconds: the precision both databases store, so a value
/// read back compares equal to the value written.
pub fn now_utc() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    let micros = now.microsecond();
    now.replace_microsecond(micros).unwrap_or(now)
}
