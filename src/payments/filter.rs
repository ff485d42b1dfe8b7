//! The list filters and orderings of `GET /payments/`, parsed from the query string once.

use chrono::{NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;

use super::status::PaymentStatus;
use crate::error::ApiError;
use crate::http::query::{FilterReader, QueryParams};
use crate::money::Currency;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderField {
    Created,
    Date,
    PaymentDate,
    Amount,
    Id,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ordering {
    pub field: OrderField,
    pub descending: bool,
}

impl Ordering {
    /// `-created`, the default (ties break by id, newest first).
    pub const NEWEST_FIRST: Ordering = Ordering {
        field: OrderField::Created,
        descending: true,
    };
}

impl std::str::FromStr for Ordering {
    type Err = ();
    fn from_str(raw: &str) -> Result<Self, ()> {
        let (descending, name) = match raw.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, raw),
        };
        let field = match name {
            "created" => OrderField::Created,
            "date" => OrderField::Date,
            "payment_date" => OrderField::PaymentDate,
            "amount" => OrderField::Amount,
            "id" => OrderField::Id,
            _ => return Err(()),
        };
        Ok(Ordering { field, descending })
    }
}

struct CurrencyCode(Currency);

impl std::str::FromStr for CurrencyCode {
    type Err = ();
    fn from_str(raw: &str) -> Result<Self, ()> {
        Currency::parse(raw).map(CurrencyCode).ok_or(())
    }
}

#[derive(Clone, Debug, Default)]
pub struct PaymentFilter {
    pub statuses: Option<Vec<PaymentStatus>>,
    pub customer: Option<String>,
    pub invoice: Option<String>,
    pub subscription: Option<String>,
    pub currency: Option<Currency>,
    pub source: Option<i64>,
    pub amount_gte: Option<Decimal>,
    pub amount_lte: Option<Decimal>,
    pub date_gte: Option<NaiveDate>,
    pub date_lte: Option<NaiveDate>,
    pub created_gte: Option<NaiveDateTime>,
    pub created_lte: Option<NaiveDateTime>,
    pub payment_date_gte: Option<NaiveDateTime>,
    pub payment_date_lte: Option<NaiveDateTime>,
    /// `metadata__key=value` pairs; all must match.
    pub metadata: Vec<(String, String)>,
    pub search: Option<String>,
    /// Default `-created` (newest first); ties always break by id in the same direction.
    pub ordering: Option<Ordering>,
}

impl PaymentFilter {
    /// True when nothing but statuses and a currency narrow the list (ordering aside).
    pub fn only_status_and_currency(&self) -> bool {
        // Destructured so that a new filter must be considered here.
        let PaymentFilter {
            statuses: _,
            currency: _,
            ordering: _,
            customer,
            invoice,
            subscription,
            source,
            amount_gte,
            amount_lte,
            date_gte,
            date_lte,
            created_gte,
            created_lte,
            payment_date_gte,
            payment_date_lte,
            metadata,
            search,
        } = self;
        customer.is_none()
            && invoice.is_none()
            && subscription.is_none()
            && source.is_none()
            && amount_gte.is_none()
            && amount_lte.is_none()
            && date_gte.is_none()
            && date_lte.is_none()
            && created_gte.is_none()
            && created_lte.is_none()
            && payment_date_gte.is_none()
            && payment_date_lte.is_none()
            && metadata.is_empty()
            && search.is_none()
    }

    /// The list's most common shape: nothing but one status at most narrows it. `Some` of
    /// that status (None: every status), or None when the filter asks more.
    pub fn one_status_at_most(&self) -> Option<Option<PaymentStatus>> {
        if !self.only_status_and_currency() || self.currency.is_some() {
            return None;
        }
        match self.statuses.as_deref() {
            None => Some(None),
            Some([one]) => Some(Some(*one)),
            Some(_) => None,
        }
    }

    /// A dashboard's page: [`one_status_at_most`](Self::one_status_at_most), in the
    /// default order (newest first). An index serves it without reading other rows.
    pub fn newest_by_status(&self) -> Option<Option<PaymentStatus>> {
        let newest_first = self.ordering.is_none_or(|o| o == Ordering::NEWEST_FIRST);
        self.one_status_at_most().filter(|_| newest_first)
    }

    pub fn parse(params: &QueryParams) -> Result<Self, ApiError> {
        let mut r = FilterReader::new(params);
        let status = r.choice::<PaymentStatus>("status");
        let status_in = r.choices::<PaymentStatus>("status__in");
        let statuses = match (status, status_in) {
            (Some(one), Some(many)) => Some(many.into_iter().filter(|s| *s == one).collect()),
            (Some(one), None) => Some(vec![one]),
            (None, many) => many,
        };
        let filter = PaymentFilter {
            statuses,
            customer: r.text("customer"),
            invoice: r.text("invoice"),
            subscription: r.text("subscription"),
            currency: r.choice::<CurrencyCode>("currency").map(|c| c.0),
            source: r.integer("source"),
            amount_gte: r.decimal("amount__gte"),
            amount_lte: r.decimal("amount__lte"),
            date_gte: r.date("date__gte"),
            date_lte: r.date("date__lte"),
            created_gte: r.datetime("created__gte"),
            created_lte: r.datetime("created__lte"),
            payment_date_gte: r.datetime("payment_date__gte"),
            payment_date_lte: r.datetime("payment_date__lte"),
            metadata: params
                .0
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix("metadata__")
                        .map(|key| (key.to_string(), v.clone()))
                })
                .filter(|(key, value)| !key.is_empty() && !value.is_empty())
                .collect(),
            search: r.text("search"),
            ordering: r.choice::<Ordering>("ordering"),
        };
        r.finish()?;
        Ok(filter)
    }
}
