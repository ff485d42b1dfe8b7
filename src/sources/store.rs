//! Source storage; scoped like every tenant table (see `in_scope`).

use std::str::FromStr;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::Value;

use super::domain::{Source, SourceStatus, Usage};
use crate::db::schema::sources;
use crate::db::{DbConnection, MultiBackend, Scope};
use crate::error::ApiError;
use crate::gateways::Card;

type InScope = diesel::dsl::And<
    diesel::dsl::Eq<sources::workspace_id, String>,
    diesel::dsl::Eq<sources::test_mode, bool>,
>;

fn in_scope(scope: &Scope) -> InScope {
    sources::workspace_id
        .eq(scope.workspace_id().to_string())
        .and(sources::test_mode.eq(scope.test_mode()))
}

fn scoped(scope: &Scope) -> sources::BoxedQuery<'static, MultiBackend> {
    sources::table.filter(in_scope(scope)).into_boxed()
}

#[derive(Queryable)]
struct SourceRow {
    id: i64,
    _workspace_id: String,
    test_mode: bool,
    gateway: String,
    usage: String,
    customer: Option<String>,
    amount: Option<String>,
    description: Option<String>,
    status: String,
    return_url: Option<String>,
    gateway_data: String,
    card_brand: Option<String>,
    card_last4: Option<String>,
    card_exp_month: Option<i32>,
    card_exp_year: Option<i32>,
    metadata: String,
    version: i64,
    created: NaiveDateTime,
    updated: NaiveDateTime,
    checkout_payment_id: Option<i64>,
    integration_id: Option<String>,
}

impl SourceRow {
    fn into_source(self) -> Result<Source, ApiError> {
        let corrupt =
            |what: &str| ApiError::internal(format!("source {} has an invalid {what}", self.id));
        let card = match (
            self.card_brand,
            self.card_last4,
            self.card_exp_month,
            self.card_exp_year,
        ) {
            (Some(brand), Some(last4), Some(exp_month), Some(exp_year)) => Some(Card {
                brand,
                last4,
                exp_month,
                exp_year,
            }),
            _ => None,
        };
        Ok(Source {
            usage: Usage::from_str(&self.usage).map_err(|_| corrupt("usage"))?,
            status: SourceStatus::from_str(&self.status).map_err(|_| corrupt("status"))?,
            amount: self
                .amount
                .as_deref()
                .map(rust_decimal::Decimal::from_str)
                .transpose()
                .map_err(|_| corrupt("amount"))?,
            gateway_data: serde_json::from_str(&self.gateway_data)
                .map_err(|_| corrupt("gateway_data"))?,
            metadata: serde_json::from_str(&self.metadata).map_err(|_| corrupt("metadata"))?,
            id: self.id,
            test_mode: self.test_mode,
            gateway: self.gateway,
            customer: self.customer,
            description: self.description,
            return_url: self.return_url,
            card,
            checkout_payment: self.checkout_payment_id,
            integration: self.integration_id,
            version: self.version,
            created: self.created,
            updated: self.updated,
        })
    }
}

pub fn find(conn: &mut DbConnection, scope: &Scope, id: i64) -> Result<Option<Source>, ApiError> {
    let row = scoped(scope)
        .filter(sources::id.eq(id))
        .first::<SourceRow>(conn)
        .optional()?;
    row.map(SourceRow::into_source).transpose()
}

/// Which of `ids` are sources of this workspace and mode.
pub fn existing(conn: &mut DbConnection, scope: &Scope, ids: &[i64]) -> Result<Vec<i64>, ApiError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(scoped(scope)
        .filter(sources::id.eq_any(ids))
        .select(sources::id)
        .load(conn)?)
}

pub fn insert(conn: &mut DbConnection, scope: &Scope, s: &Source) -> Result<Source, ApiError> {
    let row: SourceRow = diesel::insert_into(sources::table)
        .values((
            sources::workspace_id.eq(scope.workspace_id()),
            sources::test_mode.eq(scope.test_mode()),
            sources::gateway.eq(&s.gateway),
            sources::usage.eq(s.usage.as_str()),
            sources::customer.eq(&s.customer),
            sources::amount.eq(s.amount.map(|a| a.to_string())),
            sources::description.eq(&s.description),
            sources::status.eq(s.status.as_str()),
            sources::return_url.eq(&s.return_url),
            sources::gateway_data.eq(Value::Object(s.gateway_data.clone()).to_string()),
            sources::card_brand.eq(s.card.as_ref().map(|c| c.brand.clone())),
            sources::card_last4.eq(s.card.as_ref().map(|c| c.last4.clone())),
            sources::card_exp_month.eq(s.card.as_ref().map(|c| c.exp_month)),
            sources::card_exp_year.eq(s.card.as_ref().map(|c| c.exp_year)),
            sources::metadata.eq(Value::Object(s.metadata.clone()).to_string()),
            sources::version.eq(s.version),
            sources::created.eq(s.created),
            sources::updated.eq(s.updated),
            sources::checkout_payment_id.eq(s.checkout_payment),
            sources::integration_id.eq(&s.integration),
        ))
        .get_result(conn)?;
    row.into_source()
}

/// Saves a source's status and gateway data if unchanged since it was `read`; false when
/// it changed. A source equal to what was read is not written (true).
pub fn save(
    conn: &mut DbConnection,
    scope: &Scope,
    read: &Source,
    source: &Source,
) -> Result<bool, ApiError> {
    if source == read {
        // Nothing to write: a charge on a saved card leaves it as it was, and so locks no row
        // that every charge on that card would wait for in turn.
        return Ok(true);
    }
    let updated = diesel::update(sources::table)
        .filter(in_scope(scope))
        .filter(sources::id.eq(source.id))
        .filter(sources::version.eq(read.version))
        .set((
            sources::status.eq(source.status.as_str()),
            sources::gateway_data.eq(Value::Object(source.gateway_data.clone()).to_string()),
            sources::version.eq(read.version + 1),
            sources::updated.eq(source.updated),
        ))
        .execute(conn)?;
    Ok(updated == 1)
}

pub fn delete(conn: &mut DbConnection, scope: &Scope, read: &Source) -> Result<bool, ApiError> {
    let deleted = diesel::delete(sources::table)
        .filter(in_scope(scope))
        .filter(sources::id.eq(read.id))
        .filter(sources::version.eq(read.version))
        .execute(conn)?;
    Ok(deleted == 1)
}

#[derive(Clone, Debug, Default)]
pub struct SourceFilter {
    pub customer: Option<String>,
    pub gateway: Option<String>,
    pub usage: Option<Usage>,
    pub status: Option<SourceStatus>,
}

fn filtered<'a>(scope: &Scope, f: &'a SourceFilter) -> sources::BoxedQuery<'a, MultiBackend> {
    let mut q = scoped(scope);
    if let Some(customer) = &f.customer {
        q = q.filter(sources::customer.eq(customer));
    }
    if let Some(gateway) = &f.gateway {
        q = q.filter(sources::gateway.eq(gateway));
    }
    if let Some(usage) = f.usage {
        q = q.filter(sources::usage.eq(usage.as_str()));
    }
    if let Some(status) = f.status {
        q = q.filter(sources::status.eq(status.as_str()));
    }
    q
}

pub fn count(conn: &mut DbConnection, scope: &Scope, f: &SourceFilter) -> Result<i64, ApiError> {
    Ok(filtered(scope, f).count().get_result(conn)?)
}

/// Newest first.
pub fn list(
    conn: &mut DbConnection,
    scope: &Scope,
    f: &SourceFilter,
    offset: i64,
    limit: i64,
) -> Result<Vec<Source>, ApiError> {
    let rows = filtered(scope, f)
        .order_by(sources::created.desc())
        .then_order_by(sources::id.desc())
        .offset(offset)
        .limit(limit)
        .load::<SourceRow>(conn)?;
    rows.into_iter().map(SourceRow::into_source).collect()
}
