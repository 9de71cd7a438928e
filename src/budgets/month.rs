//! Budget months: UTC calendar months, and the ledger key of a user's month.

use time::{Date, Month as CalendarMonth, OffsetDateTime, Time, UtcOffset};

/// One UTC calendar month, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

impl Month {
    /// The month `at` falls in.
    pub fn of(at: OffsetDateTime) -> Self {
        let at = at.to_offset(UtcOffset::UTC);
        let first = |year: i32, month: CalendarMonth| {
            // The first of a month always exists; the fallback is unreachable.
            Date::from_calendar_date(year, month, 1)
                .unwrap_or(Date::MIN)
                .with_time(Time::MIDNIGHT)
                .assume_utc()
        };
        let next_year = if at.month() == CalendarMonth::December {
            at.year() + 1
        } else {
            at.year()
        };
        Self {
            start: first(at.year(), at.month()),
            end: first(next_year, at.month().next()),
        }
    }

    /// `2026-11`.
    pub fn label(&self) -> String {
        format!(
            "{:04}-{:02}",
            self.start.year(),
            u8::from(self.start.month())
        )
    }

    /// The ledger key of a user's month.
    pub fn key(&self, user_hash: &str) -> String {
        format!("{user_hash}:{}", self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn calendar_months_in_utc() {
        let m = Month::of(datetime!(2026-12-31 23:59:59.999999 UTC));
        assert_eq!(m.start, datetime!(2026-12-01 0:00 UTC));
        assert_eq!(m.end, datetime!(2027-01-01 0:00 UTC));
        assert_eq!(m.label(), "2026-12");
        // 01:00 on the 1st at +02:00 is still the previous month in UTC.
        let m = Month::of(datetime!(2026-03-01 01:00 +2));
        assert_eq!(m.label(), "2026-02");
        assert_eq!(m.end, datetime!(2026-03-01 0:00 UTC));
        assert_eq!(m.key("abc"), "abc:2026-02");
    }
}
