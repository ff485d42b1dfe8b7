//! Invoice storage; scoped like every tenant table (see `in_scope`).

use std::str::FromStr;

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use serde_json::Value;

use super::domain::{Invoice, InvoiceStatus};
use crate::db::schema::invoices;
use crate::db::{DbConnection, MultiBackend, Scope};
use crate::error::ApiError;
use crate::money::Currency;

type InScope = diesel::dsl::And<
    diesel::dsl::Eq<invoices::workspace_id, String>,
    diesel::dsl::Eq<invoices::test_mode, bool>,
>;

fn in_scope(scope: &Scope) -> InScope {
    invoices::workspace_id
        .eq(scope.workspace_id().to_string())
        .and(invoices::test_mode.eq(scope.test_mode()))
}

fn scoped(scope: &Scope) -> invoices::BoxedQuery<'static, MultiBackend> {
    invoices::table.filter(in_scope(scope)).into_boxed()
}

#[derive(Queryable)]
struct InvoiceRow {
    id: String,
    _workspace_id: String,
    test_mode: bool,
    customer: String,
    currency: String,
    status: String,
    lines: String,
    total: i64,
    amount_paid: i64,
    due_date: NaiveDate,
    description: Option<String>,
    metadata: String,
    finalized_at: Option<NaiveDateTime>,
    paid_at: Option<NaiveDateTime>,
    version: i64,
    created: NaiveDateTime,
    updated: NaiveDateTime,
    amount_refunded: i64,
}

impl InvoiceRow {
    fn into_invoice(self) -> Result<Invoice, ApiError> {
        let corrupt =
            |what: &str| ApiError::internal(format!("invoice {} has an invalid {what}", self.id));
        Ok(Invoice {
            currency: Currency::parse(&self.currency).ok_or_else(|| corrupt("currency"))?,
            status: InvoiceStatus::from_str(&self.status).map_err(|_| corrupt("status"))?,
            lines: serde_json::from_str(&self.lines).map_err(|_| corrupt("lines"))?,
            metadata: serde_json::from_str(&self.metadata).map_err(|_| corrupt("metadata"))?,
            id: self.id,
            test_mode: self.test_mode,
            customer: self.customer,
            total: self.total,
            amount_paid: self.amount_paid,
            amount_refunded: self.amount_refunded,
            due_date: self.due_date,
            description: self.description,
            finalized_at: self.finalized_at,
            paid_at: self.paid_at,
            version: self.version,
            created: self.created,
            updated: self.updated,
        })
    }
}

fn lines_text(invoice: &Invoice) -> Result<String, ApiError> {
    serde_json::to_string(&invoice.lines).map_err(ApiError::internal)
}

pub fn find(conn: &mut DbConnection, scope: &Scope, id: &str) -> Result<Option<Invoice>, ApiError> {
    let row = scoped(scope)
        .filter(invoices::id.eq(id.to_string()))
        .get_result::<InvoiceRow>(conn)
        .optional()?;
    row.map(InvoiceRow::into_invoice).transpose()
}

pub fn insert(conn: &mut DbConnection, scope: &Scope, i: &Invoice) -> Result<Invoice, ApiError> {
    let row: InvoiceRow = diesel::insert_into(invoices::table)
        .values((
            invoices::id.eq(&i.id),
            invoices::workspace_id.eq(scope.workspace_id()),
            invoices::test_mode.eq(scope.test_mode()),
            invoices::customer.eq(&i.customer),
            invoices::currency.eq(i.currency.code),
            invoices::status.eq(i.status.as_str()),
            invoices::lines.eq(lines_text(i)?),
            invoices::total.eq(i.total),
            invoices::amount_paid.eq(i.amount_paid),
            invoices::amount_refunded.eq(i.amount_refunded),
            invoices::due_date.eq(i.due_date),
            invoices::description.eq(&i.description),
            invoices::metadata.eq(Value::Object(i.metadata.clone()).to_string()),
            invoices::finalized_at.eq(i.finalized_at),
            invoices::paid_at.eq(i.paid_at),
            invoices::version.eq(i.version),
            invoices::created.eq(i.created),
            invoices::updated.eq(i.updated),
        ))
        .get_result(conn)?;
    row.into_invoice()
}

/// Saves a changed invoice if nobody changed it since it was `read`; false when someone
/// did (then nothing was written). Two payments racing for one invoice meet here.
pub fn save(
    conn: &mut DbConnection,
    scope: &Scope,
    read: &Invoice,
    i: &Invoice,
) -> Result<bool, ApiError> {
    let updated = diesel::update(invoices::table)
        .filter(in_scope(scope))
        .filter(invoices::id.eq(&i.id))
        .filter(invoices::version.eq(read.version))
        .set((
            invoices::customer.eq(&i.customer),
            invoices::currency.eq(i.currency.code),
            invoices::status.eq(i.status.as_str()),
            invoices::lines.eq(lines_text(i)?),
            invoices::total.eq(i.total),
            invoices::amount_paid.eq(i.amount_paid),
            invoices::amount_refunded.eq(i.amount_refunded),
            invoices::due_date.eq(i.due_date),
            invoices::description.eq(&i.description),
            invoices::metadata.eq(Value::Object(i.metadata.clone()).to_string()),
            invoices::finalized_at.eq(i.finalized_at),
            invoices::paid_at.eq(i.paid_at),
            invoices::version.eq(read.version + 1),
            invoices::updated.eq(i.updated),
        ))
        .execute(conn)?;
    Ok(updated == 1)
}

pub fn delete(conn: &mut DbConnection, scope: &Scope, read: &Invoice) -> Result<bool, ApiError> {
    let deleted = diesel::delete(invoices::table)
        .filter(in_scope(scope))
        .filter(invoices::id.eq(&read.id))
        .filter(invoices::version.eq(read.version))
        .execute(conn)?;
    Ok(deleted == 1)
}

/// Whether any invoice of the scope is for this customer.
pub fn customer_has_invoices(
    conn: &mut DbConnection,
    scope: &Scope,
    customer: &str,
) -> Result<bool, ApiError> {
    Ok(diesel::select(diesel::dsl::exists(
        invoices::table
            .filter(in_scope(scope))
            .filter(invoices::customer.eq(customer.to_string())),
    ))
    .get_result(conn)?)
}

#[derive(Clone, Debug, Default)]
pub struct InvoiceFilter {
    pub customer: Option<String>,
    pub status: Option<InvoiceStatus>,
    pub currency: Option<String>,
}

impl InvoiceFilter {
    /// The list's query parameters, with django-filter's messages.
    pub fn parse(params: &crate::http::query::QueryParams) -> Result<Self, ApiError> {
        let mut r = crate::http::query::FilterReader::new(params);
        let filter = InvoiceFilter {
            customer: r.text("customer"),
            status: r.choice::<InvoiceStatus>("status"),
            currency: r.text("currency"),
        };
        r.finish()?;
        Ok(filter)
    }
}

fn filtered<'a>(scope: &Scope, f: &'a InvoiceFilter) -> invoices::BoxedQuery<'a, MultiBackend> {
    let mut q = scoped(scope);
    if let Some(customer) = &f.customer {
        q = q.filter(invoices::customer.eq(customer));
    }
    if let Some(status) = f.status {
        q = q.filter(invoices::status.eq(status.as_str()));
    }
    if let Some(currency) = &f.currency {
        q = q.filter(invoices::currency.eq(currency.to_uppercase()));
    }
    q
}

pub fn count(conn: &mut DbConnection, scope: &Scope, f: &InvoiceFilter) -> Result<i64, ApiError> {
    Ok(filtered(scope, f).count().get_result(conn)?)
}

/// Newest first.
pub fn list(
    conn: &mut DbConnection,
    scope: &Scope,
    f: &InvoiceFilter,
    offset: i64,
    limit: i64,
) -> Result<Vec<Invoice>, ApiError> {
    let rows = filtered(scope, f)
        .order_by(invoices::created.desc())
        .then_order_by(invoices::id.desc())
        .offset(offset)
        .limit(limit)
        .load::<InvoiceRow>(conn)?;
    rows.into_iter().map(InvoiceRow::into_invoice).collect()
}
