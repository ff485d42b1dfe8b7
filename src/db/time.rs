//! Dates and timestamps read from SQLite's text without chrono's format parser.
//!
//! diesel reads a SQLite timestamp by trying chrono's `parse_from_str` with a list of
//! patterns; on a page of payments that was a tenth of the read's time. These wrappers read
//! the forms cobro writes (`2026-11-23 10:00:00.123456`, `2026-11-23`) digit by digit, and
//! leave anything else, and every PostgreSQL value, to diesel. Use them on hot rows with
//! `#[diesel(deserialize_as = Stamp)]` (or `MaybeStamp`, `Day`).

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::pg::Pg;
use diesel::sql_types::{Date, Nullable, Timestamp};
use diesel::sqlite::Sqlite;

use super::{MultiBackend, MultiRawValue};

/// A `Timestamp` column.
#[derive(FromSqlRow)]
pub struct Stamp(NaiveDateTime);

/// A `Nullable<Timestamp>` column.
#[derive(FromSqlRow)]
pub struct MaybeStamp(Option<NaiveDateTime>);

/// A `Date` column.
#[derive(FromSqlRow)]
pub struct Day(NaiveDate);

impl From<Stamp> for NaiveDateTime {
    fn from(stamp: Stamp) -> Self {
        stamp.0
    }
}

impl From<MaybeStamp> for Option<NaiveDateTime> {
    fn from(stamp: MaybeStamp) -> Self {
        stamp.0
    }
}

impl From<Day> for NaiveDate {
    fn from(day: Day) -> Self {
        day.0
    }
}

impl FromSql<Timestamp, MultiBackend> for Stamp {
    fn from_sql(value: MultiRawValue<'_>) -> deserialize::Result<Self> {
        read::<_, Timestamp>(value, timestamp).map(Stamp)
    }
}

impl FromSql<Nullable<Timestamp>, MultiBackend> for MaybeStamp {
    fn from_sql(value: MultiRawValue<'_>) -> deserialize::Result<Self> {
        Stamp::from_sql(value).map(|stamp| MaybeStamp(Some(stamp.0)))
    }

    fn from_nullable_sql(value: Option<MultiRawValue<'_>>) -> deserialize::Result<Self> {
        match value {
            Some(value) => Self::from_sql(value),
            None => Ok(MaybeStamp(None)),
        }
    }
}

impl FromSql<Date, MultiBackend> for Day {
    fn from_sql(value: MultiRawValue<'_>) -> deserialize::Result<Self> {
        read::<_, Date>(value, date).map(Day)
    }
}

/// SQLite's text through `fast`, or diesel's own reading when `fast` does not know it (and
/// on PostgreSQL).
fn read<T, ST>(value: MultiRawValue<'_>, fast: fn(&str) -> Option<T>) -> deserialize::Result<T>
where
    T: FromSql<ST, Sqlite> + FromSql<ST, Pg>,
{
    match value {
        MultiRawValue::Sqlite(mut value) => match fast(value.read_text()) {
            Some(read) => Ok(read),
            None => <T as FromSql<ST, Sqlite>>::from_sql(value),
        },
        value => value.from_sql::<T, ST>(),
    }
}

/// `YYYY-MM-DD`, nothing after.
fn date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    (b.len() == 10 && b[4] == b'-' && b[7] == b'-').then_some(())?;
    NaiveDate::from_ymd_opt(
        digits(&b[0..4])? as i32,
        digits(&b[5..7])?,
        digits(&b[8..10])?,
    )
}

/// `YYYY-MM-DD HH:MM:SS`, then optionally `.` and 1 to 9 digits.
fn timestamp(text: &str) -> Option<NaiveDateTime> {
    let b = text.as_bytes();
    (b.len() >= 19 && b[10] == b' ' && b[13] == b':' && b[16] == b':').then_some(())?;
    let day = date(&text[..10])?;
    let nanos = match &b[19..] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            digits(fraction)? * 10u32.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    let (hour, minute, second) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    Some(day.and_time(NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?))
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_chrono_reads_and_leaves_the_rest() {
        for text in [
            "2026-11-23 10:00:00",
            "2026-11-23 10:00:00.1",
            "2026-11-23 10:00:00.123",
            "2026-11-23 23:59:59.123456",
            "0987-01-02 03:04:05.123456789",
        ] {
            let chrono = NaiveDateTime::parse_from_str(text, "%F %T%.f").unwrap();
            assert_eq!(timestamp(text), Some(chrono), "{text}");
        }
        for text in [
            "2026-11-23T10:00:00",
            "2026-11-23 10:00",
            "2026-11-23 10:00:00.",
            "2026-11-23 10:00:00.1234567890",
            "2026-11-23 10:00:00+00:00",
            "2026-02-30 10:00:00",
            "2026-11-23 24:00:00",
            "2026-1a-23 10:00:00",
        ] {
            assert_eq!(timestamp(text), None, "{text}");
        }
        assert_eq!(date("2026-11-23"), NaiveDate::from_ymd_opt(2026, 11, 23));
        assert_eq!(date("2026-11-23 "), None);
        assert_eq!(date("2026-13-01"), None);
    }
}
