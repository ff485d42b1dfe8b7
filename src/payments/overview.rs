//! The console's overview of a scope's payments, per currency (amounts of different
//! currencies are never added together): what was collected each day of the last
//! [`DAYS`] days, the charge attempts' success rate and the refunds over those days, and
//! how many payments are in each status.

use chrono::{Duration, NaiveDate};

use super::status::PaymentStatus;
use super::store::{self, Group};
use crate::db::{DbConnection, Scope};
use crate::error::ApiError;
use crate::money::Currency;

pub const DAYS: i64 = 30;

#[derive(Clone, Debug, PartialEq)]
pub struct CurrencyOverview {
    pub currency: Currency,
    /// Each of the last [`DAYS`] days (UTC), oldest first, with what was collected (minor
    /// units).
    pub days: Vec<(NaiveDate, i64)>,
    /// Payments that collected money over those days.
    pub paid: i64,
    /// Charge attempts over those days that succeeded, and that failed.
    pub succeeded: i64,
    pub failed: i64,
    /// What succeeded refunds sent back over those days, and how many.
    pub refunded: i64,
    pub refunds: i64,
    /// Every payment, whenever made, by status (statuses with none left out).
    pub by_status: Vec<(PaymentStatus, i64)>,
}

impl CurrencyOverview {
    /// All the days' (saturating: a test-mode total can be anything an API client sends).
    pub fn collected(&self) -> i64 {
        self.days
            .iter()
            .fold(0i64, |total, (_, amount)| total.saturating_add(*amount))
    }

    /// Succeeded attempts per hundred that ended, to one decimal (None: none ended).
    pub fn success_rate(&self) -> Option<rust_decimal::Decimal> {
        let ended = self.succeeded + self.failed;
        (ended > 0).then(|| {
            (rust_decimal::Decimal::from(self.succeeded * 100) / rust_decimal::Decimal::from(ended))
                .round_dp(1)
        })
    }
}

/// The overview of `scope` on the day `today` (UTC).
pub fn overview(
    conn: &mut DbConnection,
    scope: &Scope,
    today: NaiveDate,
) -> Result<Vec<CurrencyOverview>, ApiError> {
    let first = today - Duration::days(DAYS - 1);
    let since = first.and_hms_opt(0, 0, 0).expect("midnight exists");
    let collected = store::collected_per_day(conn, scope, since)?;
    let outcomes = store::attempt_outcomes(conn, scope, since)?;
    let counts = store::counts_by_status(conn, scope)?;
    let refunded = crate::refunds::store::refunded_since(conn, scope, since)?;
    Ok(shape(today, &collected, &outcomes, &counts, &refunded))
}

/// Lays the groups out per currency, with every day present (the pure part of
/// [`overview`]). Currencies in code order; a currency with nothing at all is left out.
fn shape(
    today: NaiveDate,
    collected: &[Group],
    outcomes: &[Group],
    counts: &[Group],
    refunded: &[(String, i64, i64)],
) -> Vec<CurrencyOverview> {
    let mut codes: Vec<&str> = collected
        .iter()
        .chain(outcomes)
        .chain(counts)
        .map(|g| g.currency.as_str())
        .chain(refunded.iter().map(|(c, _, _)| c.as_str()))
        .collect();
    codes.sort_unstable();
    codes.dedup();
    codes
        .into_iter()
        .filter_map(Currency::parse)
        .map(|currency| {
            let code = currency.code;
            let mine = of(collected, code);
            let days = (0..DAYS)
                .rev()
                .map(|back| {
                    let day = today - Duration::days(back);
                    let key = day.to_string();
                    let amount = mine
                        .iter()
                        .filter(|g| g.key == key)
                        .fold(0i64, |total, g| total.saturating_add(g.total));
                    (day, amount)
                })
                .collect();
            let outcome = |status: &str| {
                of(outcomes, code)
                    .iter()
                    .filter(|g| g.key == status)
                    .map(|g| g.n)
                    .sum()
            };
            let (refunded, refunds) = refunded
                .iter()
                .filter(|(c, _, _)| c == code)
                .fold((0i64, 0), |(total, n), (_, amount, count)| {
                    (total.saturating_add(*amount), n + count)
                });
            let by_status = PaymentStatus::ALL
                .into_iter()
                .map(|status| {
                    let n = of(counts, code)
                        .iter()
                        .filter(|g| g.key == status.as_str())
                        .map(|g| g.n)
                        .sum();
                    (status, n)
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            CurrencyOverview {
                currency,
                days,
                paid: mine.iter().map(|g| g.n).sum(),
                succeeded: outcome("succeeded"),
                failed: outcome("failed"),
                refunded,
                refunds,
                by_status,
            }
        })
        .collect()
}

/// The groups of one currency.
fn of<'a>(groups: &'a [Group], code: &str) -> Vec<&'a Group> {
    groups.iter().filter(|g| g.currency == code).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(currency: &str, key: &str, total: i64, n: i64) -> Group {
        Group {
            currency: currency.into(),
            key: key.into(),
            total,
            n,
        }
    }

    #[test]
    fn each_currency_apart_with_every_day_and_its_rate() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        let collected = [
            group("USD", "2026-12-03", 1250, 2),
            group("USD", "2026-11-04", 100, 1),
            group("CLP", "2026-12-01", 5000, 1),
            // Older than the 30 days: not a day of the chart.
            group("USD", "2026-11-03", 999, 1),
        ];
        let outcomes = [
            group("USD", "succeeded", 0, 3),
            group("USD", "failed", 0, 1),
        ];
        let counts = [
            group("USD", "succeeded", 0, 3),
            group("EUR", "failed", 0, 2),
        ];
        let refunded = [("USD".to_string(), 200, 1)];
        let shaped = shape(today, &collected, &outcomes, &counts, &refunded);
        let codes: Vec<_> = shaped.iter().map(|c| c.currency.code).collect();
        assert_eq!(codes, ["CLP", "EUR", "USD"]);
        let usd = &shaped[2];
        assert_eq!(usd.days.len(), 30);
        assert_eq!(
            usd.days[0],
            (NaiveDate::from_ymd_opt(2026, 11, 4).unwrap(), 100)
        );
        assert_eq!(usd.days[29], (today, 1250));
        assert_eq!(usd.collected(), 1350);
        assert_eq!(usd.success_rate(), Some(rust_decimal::Decimal::new(750, 1)));
        assert_eq!((usd.refunded, usd.refunds), (200, 1));
        assert_eq!(usd.by_status, vec![(PaymentStatus::Succeeded, 3)]);
        assert_eq!(shaped[0].collected(), 5000);
        assert_eq!(shaped[0].success_rate(), None);
        assert_eq!(shaped[1].by_status, vec![(PaymentStatus::Failed, 2)]);
    }
}
