//! Dates and timestamps read from and written to SQLite's text without chrono's format
//! parser.
//!
//! diesel reads a SQLite timestamp by trying chrono's `parse_from_str` with a list of
//! patterns; on a page of payments that was a tenth of the read's time. These wrappers read
//! the forms cobro writes (`2026-11-23 10:00:00.123456`, `2026-11-23`) digit by digit, and
//! leave anything else, and every PostgreSQL value, to diesel. Use them on hot rows with
//! `#[diesel(deserialize_as = Stamp)]` (or `MaybeStamp`, `Day`).
//!
//! Written, diesel formats a timestamp with chrono's `%F %T%.f`, parsing that pattern each
//! time: a tenth of the SQLite writer's time on a create. `Stamp` and `Day` write the very
//! same text digit by digit (`#[diesel(serialize_as = Stamp)]`, or `Stamp::from(at)` in a
//! query), and leave PostgreSQL's binary form to diesel.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{Date, Nullable, Timestamp};
use diesel::sqlite::{Sqlite, SqliteValue};

use super::{MultiBackend, MultiRawValue};

/// A `Timestamp` column.
#[derive(Debug, FromSqlRow, AsExpression)]
#[diesel(sql_type = Timestamp)]
pub struct Stamp(NaiveDateTime);

/// A `Nullable<Timestamp>` column.
#[derive(FromSqlRow)]
pub struct MaybeStamp(Option<NaiveDateTime>);

/// A `Date` column.
#[derive(Debug, FromSqlRow, AsExpression)]
#[diesel(sql_type = Date)]
pub struct Day(NaiveDate);

impl From<NaiveDateTime> for Stamp {
    fn from(at: NaiveDateTime) -> Self {
        Stamp(at)
    }
}

impl From<NaiveDate> for Day {
    fn from(day: NaiveDate) -> Self {
        Day(day)
    }
}

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

impl FromSql<Timestamp, Sqlite> for Stamp {
    fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        read_sqlite::<_, Timestamp>(value, timestamp).map(Stamp)
    }
}

impl FromSql<Timestamp, Pg> for Stamp {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        <NaiveDateTime as FromSql<Timestamp, Pg>>::from_sql(value).map(Stamp)
    }
}

impl FromSql<Timestamp, MultiBackend> for Stamp {
    fn from_sql(value: MultiRawValue<'_>) -> deserialize::Result<Self> {
        value.from_sql::<Stamp, Timestamp>()
    }
}

impl<DB: Backend> FromSql<Nullable<Timestamp>, DB> for MaybeStamp
where
    Stamp: FromSql<Timestamp, DB>,
{
    fn from_sql(value: DB::RawValue<'_>) -> deserialize::Result<Self> {
        Stamp::from_sql(value).map(|stamp| MaybeStamp(Some(stamp.0)))
    }

    fn from_nullable_sql(value: Option<DB::RawValue<'_>>) -> deserialize::Result<Self> {
        match value {
            Some(value) => Self::from_sql(value),
            None => Ok(MaybeStamp(None)),
        }
    }
}

impl FromSql<Date, Sqlite> for Day {
    fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        read_sqlite::<_, Date>(value, date).map(Day)
    }
}

impl FromSql<Date, Pg> for Day {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        <NaiveDate as FromSql<Date, Pg>>::from_sql(value).map(Day)
    }
}

impl FromSql<Date, MultiBackend> for Day {
    fn from_sql(value: MultiRawValue<'_>) -> deserialize::Result<Self> {
        value.from_sql::<Day, Date>()
    }
}

impl ToSql<Timestamp, Sqlite> for Stamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        write::<_, Timestamp>(&self.0, timestamp_text(&self.0), out)
    }
}

impl ToSql<Timestamp, Pg> for Stamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <NaiveDateTime as ToSql<Timestamp, Pg>>::to_sql(&self.0, out)
    }
}

impl ToSql<Timestamp, MultiBackend> for Stamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, MultiBackend>) -> serialize::Result {
        out.set_value((Timestamp, self));
        Ok(IsNull::No)
    }
}

impl ToSql<Date, Sqlite> for Day {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        write::<_, Date>(&self.0, date_text(&self.0), out)
    }
}

impl ToSql<Date, Pg> for Day {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <NaiveDate as ToSql<Date, Pg>>::to_sql(&self.0, out)
    }
}

impl ToSql<Date, MultiBackend> for Day {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, MultiBackend>) -> serialize::Result {
        out.set_value((Date, self));
        Ok(IsNull::No)
    }
}

/// `text` as SQLite's value, or diesel's own writing of `value` when there is none.
fn write<'b, T: ToSql<ST, Sqlite>, ST>(
    value: &'b T,
    text: Option<String>,
    out: &mut Output<'b, '_, Sqlite>,
) -> serialize::Result {
    match text {
        Some(text) => {
            out.set_value(text);
            Ok(IsNull::No)
        }
        None => value.to_sql(out),
    }
}

/// chrono's `%F %T%.f`: the fraction's digits are none, 3, 6 or 9, the fewest that hold it.
/// None for what that pattern writes otherwise (a leap second, a year beyond 0 to 9999).
fn timestamp_text(at: &NaiveDateTime) -> Option<String> {
    let mut text = date_text(&at.date())?;
    let (time, nanos) = (at.time(), at.nanosecond());
    if nanos >= 1_000_000_000 {
        return None;
    }
    text.push(' ');
    push_digits(&mut text, time.hour(), 2);
    text.push(':');
    push_digits(&mut text, time.minute(), 2);
    text.push(':');
    push_digits(&mut text, time.second(), 2);
    let (fraction, width) = match nanos {
        0 => return Some(text),
        n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
        n if n % 1_000 == 0 => (n / 1_000, 6),
        n => (n, 9),
    };
    text.push('.');
    push_digits(&mut text, fraction, width);
    Some(text)
}

/// chrono's `%F` for the years it writes with four digits.
fn date_text(day: &NaiveDate) -> Option<String> {
    let year = u32::try_from(day.year()).ok().filter(|y| *y <= 9999)?;
    let mut text = String::with_capacity(26);
    push_digits(&mut text, year, 4);
    text.push('-');
    push_digits(&mut text, day.month(), 2);
    text.push('-');
    push_digits(&mut text, day.day(), 2);
    Some(text)
}

/// `n`'s last `width` digits, zero-padded.
fn push_digits(text: &mut String, n: u32, width: u32) {
    for place in (0..width).rev() {
        text.push(char::from(b'0' + (n / 10u32.pow(place) % 10) as u8));
    }
}

/// SQLite's text through `fast`, or diesel's own reading when `fast` does not know it.
fn read_sqlite<T, ST>(
    mut value: SqliteValue<'_, '_, '_>,
    fast: fn(&str) -> Option<T>,
) -> deserialize::Result<T>
where
    T: FromSql<ST, Sqlite>,
{
    match fast(value.read_text()) {
        Some(read) => Ok(read),
        None => <T as FromSql<ST, Sqlite>>::from_sql(value),
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

    #[test]
    fn writes_what_chrono_writes() {
        let day = NaiveDate::from_ymd_opt(2026, 1, 2).unwrap();
        for nanos in [
            0,
            5_000_000,
            120_000_000,
            123_456_000,
            1_000,
            7,
            999_999_999,
        ] {
            let at = day.and_hms_nano_opt(3, 4, 5, nanos).unwrap();
            let chrono = at.format("%F %T%.f").to_string();
            assert_eq!(
                timestamp_text(&at).as_deref(),
                Some(chrono.as_str()),
                "{nanos}"
            );
        }
        for day in [(1, 1, 1), (987, 12, 31), (9999, 12, 31)] {
            let day = NaiveDate::from_ymd_opt(day.0, day.1, day.2).unwrap();
            let chrono = day.format("%F").to_string();
            assert_eq!(date_text(&day).as_deref(), Some(chrono.as_str()));
        }
        let leap = day.and_hms_nano_opt(23, 59, 59, 1_500_000_000).unwrap();
        assert_eq!(timestamp_text(&leap), None);
        assert_eq!(
            date_text(&NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap()),
            None
        );
        assert_eq!(date_text(&NaiveDate::from_ymd_opt(-1, 1, 1).unwrap()), None);
    }
}
