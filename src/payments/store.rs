//! Payment storage. Every query starts from `scoped()` or filters with `in_scope()`: the
//! workspace-and-mode filter is written here once, and nowhere else touches the table.

use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};
use serde_json::{Map, Value};

use super::charging::{Attempt, AttemptStatus};
use super::domain::Payment;
use super::filter::{OrderField, Ordering, PaymentFilter};
use super::status::PaymentStatus;
use crate::audit::Origin;
use crate::db::schema::{payment_attempts, payment_counts, payment_metadata, payments};
use crate::db::time::{Day, MaybeStamp, Stamp};
use crate::db::{self, lower, DbConnection, MultiBackend, Scope};
use crate::error::ApiError;
use crate::money::Currency;

type InScope = diesel::dsl::And<
    diesel::dsl::Eq<payments::workspace_id, String>,
    diesel::dsl::Eq<payments::test_mode, bool>,
>;
type Boxed<'a> = payments::BoxedQuery<'a, MultiBackend>;
type Condition = Box<dyn BoxableExpression<payments::table, MultiBackend, SqlType = Bool>>;

/// The tenant filter: this workspace, this mode.
fn in_scope(scope: &Scope) -> InScope {
    payments::workspace_id
        .eq(scope.workspace_id().to_string())
        .and(payments::test_mode.eq(scope.test_mode()))
}

type MetadataInScope = diesel::dsl::And<
    diesel::dsl::Eq<payment_metadata::workspace_id, String>,
    diesel::dsl::Eq<payment_metadata::test_mode, bool>,
>;

/// The tenant filter of the metadata rows.
fn metadata_in_scope(scope: &Scope) -> MetadataInScope {
    payment_metadata::workspace_id
        .eq(scope.workspace_id().to_string())
        .and(payment_metadata::test_mode.eq(scope.test_mode()))
}

type CountsInScope = diesel::dsl::And<
    diesel::dsl::Eq<payment_counts::workspace_id, String>,
    diesel::dsl::Eq<payment_counts::test_mode, bool>,
>;

/// The tenant filter of the maintained counts.
fn counts_in_scope(scope: &Scope) -> CountsInScope {
    payment_counts::workspace_id
        .eq(scope.workspace_id().to_string())
        .and(payment_counts::test_mode.eq(scope.test_mode()))
}

fn scoped(scope: &Scope) -> Boxed<'static> {
    payments::table.filter(in_scope(scope)).into_boxed()
}

#[derive(Queryable)]
struct PaymentRow {
    id: i64,
    workspace_id: String,
    test_mode: bool,
    amount: i64,
    collected: i64,
    currency: String,
    _unit: i64,
    #[diesel(deserialize_as = Day)]
    date: NaiveDate,
    description: String,
    invoice: Option<String>,
    subscription: Option<String>,
    customer: Option<String>,
    #[diesel(deserialize_as = MaybeStamp)]
    payment_date: Option<NaiveDateTime>,
    source: Option<i64>,
    sources: String,
    status: String,
    failed_reason: Option<String>,
    return_url: Option<String>,
    enable_checkout: bool,
    metadata: String,
    checkout_key: String,
    version: i64,
    #[diesel(deserialize_as = Stamp)]
    created: NaiveDateTime,
    #[diesel(deserialize_as = Stamp)]
    updated: NaiveDateTime,
    amount_refunded: i64,
}

impl PaymentRow {
    fn into_payment(self) -> Result<Payment, ApiError> {
        let corrupt =
            |what: &str| ApiError::internal(format!("payment {} has an invalid {what}", self.id));
        Ok(Payment {
            currency: Currency::parse(&self.currency).ok_or_else(|| corrupt("currency"))?,
            status: self
                .status
                .parse::<PaymentStatus>()
                .map_err(|_| corrupt("status"))?,
            sources: serde_json::from_str(&self.sources).map_err(|_| corrupt("sources"))?,
            metadata: serde_json::from_str(&self.metadata).map_err(|_| corrupt("metadata"))?,
            id: self.id,
            test_mode: self.test_mode,
            amount: self.amount,
            collected: self.collected,
            amount_refunded: self.amount_refunded,
            date: self.date,
            description: self.description,
            invoice: self.invoice,
            subscription: self.subscription,
            customer: self.customer,
            payment_date: self.payment_date,
            source: self.source,
            failed_reason: self.failed_reason,
            return_url: self.return_url,
            enable_checkout: self.enable_checkout,
            checkout_key: self.checkout_key,
            version: self.version,
            created: self.created,
            updated: self.updated,
        })
    }
}

/// The columns a write sets (all but id, scope and creation). None is NULL, in an update and
/// in an insert: an insert's SQL is then the same for every payment, so it is prepared once
/// (diesel prepares again every insert that writes DEFAULT).
#[derive(AsChangeset, Insertable)]
#[diesel(
    table_name = payments,
    treat_none_as_null = true,
    treat_none_as_default_value = false
)]
struct PaymentChanges {
    amount: i64,
    collected: i64,
    amount_refunded: i64,
    currency: String,
    unit: i64,
    #[diesel(serialize_as = Day)]
    date: NaiveDate,
    description: String,
    invoice: Option<String>,
    subscription: Option<String>,
    customer: Option<String>,
    payment_date: Option<NaiveDateTime>,
    source: Option<i64>,
    sources: String,
    status: String,
    failed_reason: Option<String>,
    return_url: Option<String>,
    enable_checkout: bool,
    metadata: String,
    version: i64,
    #[diesel(serialize_as = Stamp)]
    updated: NaiveDateTime,
}

impl From<&Payment> for PaymentChanges {
    fn from(p: &Payment) -> Self {
        PaymentChanges {
            amount: p.amount,
            collected: p.collected,
            amount_refunded: p.amount_refunded,
            currency: p.currency.code.to_string(),
            unit: p.currency.unit(),
            date: p.date,
            description: p.description.clone(),
            invoice: p.invoice.clone(),
            subscription: p.subscription.clone(),
            customer: p.customer.clone(),
            payment_date: p.payment_date,
            source: p.source,
            sources: serde_json::to_string(&p.sources).unwrap_or_else(|_| "[]".into()),
            status: p.status.as_str().to_string(),
            failed_reason: p.failed_reason.clone(),
            return_url: p.return_url.clone(),
            enable_checkout: p.enable_checkout,
            metadata: Value::Object(p.metadata.clone()).to_string(),
            version: p.version,
            updated: p.updated,
        }
    }
}

/// The payment behind a public checkout key, with the scope it lives in. The one lookup
/// without a scope: the unguessable key is the payer's credential.
pub fn find_by_checkout_key(
    conn: &mut DbConnection,
    key: &str,
    origin: &Arc<Origin>,
) -> Result<Option<(Scope, Payment)>, ApiError> {
    let row = payments::table
        .filter(payments::checkout_key.eq(key))
        .first::<PaymentRow>(conn)
        .optional()?;
    row.map(|row| {
        let scope = Scope::new(row.workspace_id.clone(), row.test_mode, origin);
        row.into_payment().map(|payment| (scope, payment))
    })
    .transpose()
}

pub fn find(conn: &mut DbConnection, scope: &Scope, id: i64) -> Result<Option<Payment>, ApiError> {
    // Not boxed, and on the connection's own backend: diesel then finds the prepared
    // statement by its type, without building (and quoting) its SQL again to look it up;
    // this is every payment's read by id. A check owed rides in it (one round trip).
    let query = payments::table
        .filter(in_scope(scope))
        .filter(payments::id.eq(id));
    let row = crate::read_checked!(conn, query, |q, c| q.get_result::<PaymentRow>(c).optional())?;
    row.map(PaymentRow::into_payment).transpose()
}

/// Inserts a new payment (in the caller's transaction) and returns it with its id.
pub fn insert(
    conn: &mut DbConnection,
    scope: &Scope,
    payment: &Payment,
) -> Result<Payment, ApiError> {
    let changes = PaymentChanges::from(payment);
    // Every column is written here, so the row is the payment: only its id is read back.
    let insert = diesel::insert_into(payments::table)
        .values((
            payments::workspace_id.eq(scope.workspace_id()),
            payments::test_mode.eq(scope.test_mode()),
            payments::checkout_key.eq(&payment.checkout_key),
            payments::created.eq(Stamp::from(payment.created)),
            changes,
        ))
        .returning(payments::id);
    let id: i64 = crate::on_backend!(conn, |c| insert.get_result(c))?;
    let saved = Payment {
        id,
        ..payment.clone()
    };
    insert_metadata(conn, scope, saved.id, &saved.metadata)?;
    Ok(saved)
}

/// Saves a changed payment if nobody changed it since it was `read`; false when someone did
/// (then nothing was written: the caller reads again and decides again).
pub fn save(
    conn: &mut DbConnection,
    scope: &Scope,
    read: &Payment,
    payment: &Payment,
) -> Result<bool, ApiError> {
    // Kept prepared (diesel's would compile `payment_counts`' triggers again every time).
    let update = db::update(
        payments::table,
        in_scope(scope)
            .and(payments::id.eq(payment.id))
            .and(payments::version.eq(read.version)),
        PaymentChanges::from(payment),
    );
    let updated = crate::on_backend!(conn, |c| update.execute(c))?;
    if updated == 1 && read.metadata != payment.metadata {
        write_metadata(conn, scope, payment.id, &payment.metadata)?;
    }
    Ok(updated == 1)
}

/// Deletes a payment if unchanged since it was `read`; false when it changed meanwhile
/// (then nothing was written). Its metadata rows go with it (ON DELETE CASCADE).
pub fn delete(conn: &mut DbConnection, scope: &Scope, read: &Payment) -> Result<bool, ApiError> {
    let deleted = diesel::delete(payments::table)
        .filter(in_scope(scope))
        .filter(payments::id.eq(read.id))
        .filter(payments::version.eq(read.version))
        .execute(conn)?;
    Ok(deleted == 1)
}

/// Keeps one row per metadata key so that `metadata__key=value` is an indexed lookup.
fn write_metadata(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    metadata: &Map<String, Value>,
) -> Result<(), ApiError> {
    diesel::delete(payment_metadata::table)
        .filter(metadata_in_scope(scope))
        .filter(payment_metadata::payment_id.eq(id))
        .execute(conn)?;
    insert_metadata(conn, scope, id, metadata)
}

/// Writes a payment's metadata rows (it has none yet).
fn insert_metadata(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    metadata: &Map<String, Value>,
) -> Result<(), ApiError> {
    // One statement a key: multi-row VALUES does not go through diesel's MultiConnection.
    for (key, value) in metadata {
        diesel::insert_into(payment_metadata::table)
            .values((
                payment_metadata::payment_id.eq(id),
                payment_metadata::workspace_id.eq(scope.workspace_id()),
                payment_metadata::test_mode.eq(scope.test_mode()),
                payment_metadata::key.eq(key),
                payment_metadata::value.eq(metadata_text(value)),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// How a metadata value is compared with a query-string value: strings as themselves,
/// numbers and booleans as their JSON text.
fn metadata_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One page of payments matching `filter`, and how many match in all.
pub fn list(
    conn: &mut DbConnection,
    scope: &Scope,
    filter: &PaymentFilter,
    offset: i64,
    limit: i64,
) -> Result<Vec<Payment>, ApiError> {
    if let Some(status) = filter.newest_by_status() {
        return newest_first(conn, scope, status, offset, limit);
    }
    let mut query = filtered(scope, filter);
    let ordering = filter.ordering.unwrap_or(Ordering::NEWEST_FIRST);
    let desc = ordering.descending;
    query = match (ordering.field, desc) {
        (OrderField::Created, false) => query.order_by(payments::created.asc()),
        (OrderField::Created, true) => query.order_by(payments::created.desc()),
        (OrderField::Date, false) => query.order_by(payments::date.asc()),
        (OrderField::Date, true) => query.order_by(payments::date.desc()),
        // Unpaid payments (no payment_date) last either way, on both backends (their own
        // defaults differ).
        (OrderField::PaymentDate, false) => query
            .order_by(sql::<Bool>("payment_date IS NULL").asc())
            .then_order_by(payments::payment_date.asc()),
        (OrderField::PaymentDate, true) => query
            .order_by(sql::<Bool>("payment_date IS NULL").asc())
            .then_order_by(payments::payment_date.desc()),
        // Minor units mean different sizes in different currencies: order by the whole
        // part, then by the fraction scaled to four digits (integer arithmetic, exact).
        (OrderField::Amount, false) => query
            .order_by(sql::<BigInt>("amount / unit").asc())
            .then_order_by(sql::<BigInt>("(amount - (amount / unit) * unit) * 10000 / unit").asc()),
        (OrderField::Amount, true) => query
            .order_by(sql::<BigInt>("amount / unit").desc())
            .then_order_by(
                sql::<BigInt>("(amount - (amount / unit) * unit) * 10000 / unit").desc(),
            ),
        (OrderField::Id, _) => query,
    };
    query = if desc {
        query.then_order_by(payments::id.desc())
    } else {
        query.then_order_by(payments::id.asc())
    };
    let rows = query.offset(offset).limit(limit).load::<PaymentRow>(conn)?;
    rows.into_iter().map(PaymentRow::into_payment).collect()
}

/// `list` in its most common shape, newest first and narrowed by one status at most (a
/// dashboard's page): [`newest_first_counted`] without its count.
fn newest_first(
    conn: &mut DbConnection,
    scope: &Scope,
    status: Option<PaymentStatus>,
    offset: i64,
    limit: i64,
) -> Result<Vec<Payment>, ApiError> {
    Ok(newest_first_counted(conn, scope, status, offset, limit)?.0)
}

/// A dashboard's page (newest first, narrowed by one status at most) with how many payments
/// match in all (0 when the page has no rows), in one statement: each row carries the count
/// (`payment_counts` added up, as [`count`]), and a check owed rides in it. A query of a
/// static type, on the connection's own backend, so that diesel finds its prepared
/// statement by type instead of building the SQL of a boxed query to look it up (a tenth of
/// a page's time on SQLite); and a page is one round trip instead of two.
pub fn newest_first_counted(
    conn: &mut DbConnection,
    scope: &Scope,
    status: Option<PaymentStatus>,
    offset: i64,
    limit: i64,
) -> Result<(Vec<Payment>, i64), ApiError> {
    let page = payments::table
        .filter(in_scope(scope))
        .order_by((payments::created.desc(), payments::id.desc()))
        .offset(offset)
        .limit(limit);
    let counts = payment_counts::table
        .filter(counts_in_scope(scope))
        .select(CountsAddedUp);
    let mut rows: Vec<(PaymentRow, Option<i64>)> = match status {
        None => {
            let page = page.select((payments::all_columns, counts.single_value()));
            crate::read_checked!(conn, page, |q, c| q.load(c))
        }
        Some(status) => {
            let status = status.as_str();
            let counts = counts.filter(payment_counts::status.eq(status));
            let page = page
                .filter(payments::status.eq(status))
                .select((payments::all_columns, counts.single_value()));
            crate::read_checked!(conn, page, |q, c| q.load(c))
        }
    }?;
    // In the page's order whatever the credential check's wrapping did to it.
    rows.sort_by_key(|(row, _)| std::cmp::Reverse((row.created, row.id)));
    let count = rows.first().and_then(|(_, count)| *count).unwrap_or(0);
    let payments = rows.into_iter().map(|(row, _)| row.into_payment());
    Ok((payments.collect::<Result<_, _>>()?, count))
}

/// How many payments match `filter`. Without filters, or with only status and currency,
/// this adds up the maintained counts (a few rows, whatever the table's size; triggers on
/// `payments` keep them, see the migration `count_triggers`); other filters count the
/// matching rows.
pub fn count(
    conn: &mut DbConnection,
    scope: &Scope,
    filter: &PaymentFilter,
) -> Result<i64, ApiError> {
    if !filter.only_status_and_currency() {
        return Ok(filtered(scope, filter).count().get_result(conn)?);
    }
    // The most common shape on the connection's own backend, as `newest_first`, added up
    // by the database (on PostgreSQL a count is spread over up to 64 slots per status and
    // currency); a page's first read, so a check owed rides in it.
    let counts = payment_counts::table
        .filter(counts_in_scope(scope))
        .select(CountsAddedUp);
    match filter.one_status_at_most() {
        Some(None) => Ok(crate::read_checked!(conn, counts, |q, c| q.get_result(c))?),
        Some(Some(status)) => {
            let counts = counts.filter(payment_counts::status.eq(status.as_str()));
            Ok(crate::read_checked!(conn, counts, |q, c| q.get_result(c))?)
        }
        None => Ok(boxed_counts(scope, filter).get_result(conn)?),
    }
}

/// `SUM(payment_counts.n)` as a `BIGINT` (PostgreSQL's sum of a `BIGINT` is a `NUMERIC`),
/// 0 for no rows: an expression of a static type, so that its query stays prepared (a
/// literal's would be prepared again each time).
#[derive(Debug, Clone, Copy, diesel::query_builder::QueryId)]
struct CountsAddedUp;

impl diesel::Expression for CountsAddedUp {
    type SqlType = BigInt;
}

impl<DB: diesel::backend::Backend> diesel::query_builder::QueryFragment<DB> for CountsAddedUp {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        out.push_sql("CAST(COALESCE(SUM(payment_counts.n), 0) AS BIGINT)");
        Ok(())
    }
}

impl diesel::expression::ValidGrouping<()> for CountsAddedUp {
    type IsAggregate = diesel::expression::is_aggregate::Yes;
}

impl diesel::AppearsOnTable<payment_counts::table> for CountsAddedUp {}
impl diesel::SelectableExpression<payment_counts::table> for CountsAddedUp {}

/// The maintained counts matching statuses and a currency, added up.
fn boxed_counts<'a>(
    scope: &Scope,
    filter: &'a PaymentFilter,
) -> payment_counts::BoxedQuery<'a, MultiBackend, BigInt> {
    let mut counts = payment_counts::table
        .filter(counts_in_scope(scope))
        .select(CountsAddedUp)
        .into_boxed();
    // One status is `=`, not `IN (…)`: diesel prepares an `IN` list anew on every query.
    counts = match filter.statuses.as_deref() {
        None => counts,
        Some([one]) => counts.filter(payment_counts::status.eq(one.as_str())),
        Some(statuses) => counts.filter(payment_counts::status.eq_any(names(statuses))),
    };
    if let Some(currency) = filter.currency {
        counts = counts.filter(payment_counts::currency.eq(currency.code));
    }
    counts
}

fn names(statuses: &[PaymentStatus]) -> Vec<&'static str> {
    statuses.iter().map(|s| s.as_str()).collect()
}

fn filtered<'a>(scope: &Scope, f: &'a PaymentFilter) -> Boxed<'a> {
    let mut q = scoped(scope);
    // As in `count`: one status is `=`, so the statement is prepared once.
    q = match f.statuses.as_deref() {
        None => q,
        Some([one]) => q.filter(payments::status.eq(one.as_str())),
        Some(statuses) => q.filter(payments::status.eq_any(names(statuses))),
    };
    if let Some(customer) = &f.customer {
        q = q.filter(payments::customer.eq(customer));
    }
    if let Some(invoice) = &f.invoice {
        q = q.filter(payments::invoice.eq(invoice));
    }
    if let Some(subscription) = &f.subscription {
        q = q.filter(payments::subscription.eq(subscription));
    }
    if let Some(currency) = f.currency {
        q = q.filter(payments::currency.eq(currency.code));
    }
    if let Some(source) = f.source {
        q = q.filter(payments::source.eq(source));
    }
    if let Some(min) = f.amount_gte {
        q = q.filter(amount_bound(min, true));
    }
    if let Some(max) = f.amount_lte {
        q = q.filter(amount_bound(max, false));
    }
    if let Some(d) = f.date_gte {
        q = q.filter(payments::date.ge(d));
    }
    if let Some(d) = f.date_lte {
        q = q.filter(payments::date.le(d));
    }
    if let Some(at) = f.created_gte {
        q = q.filter(payments::created.ge(at));
    }
    if let Some(at) = f.created_lte {
        q = q.filter(payments::created.le(at));
    }
    if let Some(at) = f.payment_date_gte {
        q = q.filter(payments::payment_date.ge(at));
    }
    if let Some(at) = f.payment_date_lte {
        q = q.filter(payments::payment_date.le(at));
    }
    for (key, value) in &f.metadata {
        q = q.filter(
            payments::id.eq_any(
                payment_metadata::table
                    .filter(metadata_in_scope(scope))
                    .filter(payment_metadata::key.eq(key))
                    .filter(payment_metadata::value.eq(value))
                    .select(payment_metadata::payment_id),
            ),
        );
    }
    if let Some(term) = &f.search {
        q = q.filter(
            lower(payments::description)
                .like(crate::db::containing(term))
                .escape('\\'),
        );
    }
    q
}

/// `amount >= value` (or `<=`) in the payment's own currency: for each scale a currency can
/// have, the bound in minor units, exact (no float anywhere).
fn amount_bound(value: rust_decimal::Decimal, at_least: bool) -> Condition {
    let mut condition: Condition = Box::new(sql::<Bool>("1 = 0"));
    for unit in [1i64, 100, 1000, 10000] {
        let scaled = value.checked_mul(rust_decimal::Decimal::from(unit));
        let bound =
            scaled.and_then(|s| i64::try_from(if at_least { s.ceil() } else { s.floor() }).ok());
        let Some(bound) = bound else {
            // Beyond any storable amount: `>=` matches nothing, `<=` everything.
            if !at_least {
                condition = Box::new(condition.or(payments::unit.eq(unit)));
            }
            continue;
        };
        let side: Condition = if at_least {
            Box::new(payments::unit.eq(unit).and(payments::amount.ge(bound)))
        } else {
            Box::new(payments::unit.eq(unit).and(payments::amount.le(bound)))
        };
        condition = Box::new(condition.or(side));
    }
    condition
}

// ---- Charge attempts ------------------------------------------------------------------

type AttemptsInScope = diesel::dsl::And<
    diesel::dsl::Eq<payment_attempts::workspace_id, String>,
    diesel::dsl::Eq<payment_attempts::test_mode, bool>,
>;

fn attempts_in_scope(scope: &Scope) -> AttemptsInScope {
    payment_attempts::workspace_id
        .eq(scope.workspace_id().to_string())
        .and(payment_attempts::test_mode.eq(scope.test_mode()))
}

#[derive(Queryable)]
struct AttemptRow {
    id: i64,
    _workspace_id: String,
    _test_mode: bool,
    payment_id: i64,
    source_id: i64,
    gateway: String,
    amount: i64,
    currency: String,
    status: String,
    failure_code: Option<String>,
    gateway_reference: Option<String>,
    created: NaiveDateTime,
    updated: NaiveDateTime,
    integration_id: Option<String>,
    _claimed_until: Option<NaiveDateTime>,
    _asked: Option<NaiveDateTime>,
    call_key: Option<String>,
    capture: bool,
    description: Option<String>,
    operation: Option<String>,
    operation_amount: Option<i64>,
}

impl AttemptRow {
    fn into_attempt(self) -> Result<Attempt, ApiError> {
        let corrupt =
            |what: &str| ApiError::internal(format!("attempt {} has an invalid {what}", self.id));
        Ok(Attempt {
            currency: Currency::parse(&self.currency).ok_or_else(|| corrupt("currency"))?,
            status: AttemptStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?,
            id: self.id,
            payment_id: self.payment_id,
            source_id: self.source_id,
            gateway: self.gateway,
            integration: self.integration_id,
            // Attempts from before keys existed: their id (they were never at a provider).
            call_key: self.call_key.unwrap_or_else(|| format!("att{}", self.id)),
            capture: self.capture,
            description: self.description,
            operation: self
                .operation
                .as_deref()
                .map(|o| o.parse().map_err(|_| corrupt("operation")))
                .transpose()?,
            operation_amount: self.operation_amount,
            amount: self.amount,
            failure_code: self.failure_code,
            gateway_reference: self.gateway_reference,
            created: self.created,
            updated: self.updated,
        })
    }
}

pub fn insert_attempt(
    conn: &mut DbConnection,
    scope: &Scope,
    a: &Attempt,
) -> Result<Attempt, ApiError> {
    // Every column is written here, so the row is the attempt: only its id is read back,
    // on the connection's own backend (as a payment's insert).
    let insert = diesel::insert_into(payment_attempts::table)
        .values((
            payment_attempts::workspace_id.eq(scope.workspace_id()),
            payment_attempts::test_mode.eq(scope.test_mode()),
            payment_attempts::payment_id.eq(a.payment_id),
            payment_attempts::source_id.eq(a.source_id),
            payment_attempts::gateway.eq(&a.gateway),
            payment_attempts::integration_id.eq(&a.integration),
            payment_attempts::call_key.eq(&a.call_key),
            payment_attempts::capture.eq(a.capture),
            payment_attempts::description.eq(&a.description),
            payment_attempts::operation.eq(a.operation.map(|o| o.as_str())),
            payment_attempts::operation_amount.eq(a.operation_amount),
            payment_attempts::amount.eq(a.amount),
            payment_attempts::currency.eq(a.currency.code),
            payment_attempts::status.eq(a.status.as_str()),
            payment_attempts::failure_code.eq(&a.failure_code),
            payment_attempts::gateway_reference.eq(&a.gateway_reference),
            payment_attempts::created.eq(a.created),
            payment_attempts::updated.eq(a.updated),
        ))
        .returning(payment_attempts::id);
    let id: i64 = crate::on_backend!(conn, |c| insert.get_result(c))?;
    Ok(Attempt { id, ..a.clone() })
}

/// A payment's attempts, oldest first.
pub fn attempts(
    conn: &mut DbConnection,
    scope: &Scope,
    payment_id: i64,
) -> Result<Vec<Attempt>, ApiError> {
    let rows: Vec<AttemptRow> = payment_attempts::table
        .filter(attempts_in_scope(scope))
        .filter(payment_attempts::payment_id.eq(payment_id))
        .order_by(payment_attempts::id.asc())
        .load(conn)?;
    rows.into_iter().map(AttemptRow::into_attempt).collect()
}

/// Records how an attempt ended.
/// Saves an attempt's change if it is as it was `read` (its status and last change): of two
/// concurrent answers or calls about one attempt, one writes and the other finds it moved.
pub fn move_attempt(
    conn: &mut DbConnection,
    scope: &Scope,
    read: &Attempt,
    a: &Attempt,
) -> Result<bool, ApiError> {
    let updated = db::update(
        payment_attempts::table,
        attempts_in_scope(scope)
            .and(payment_attempts::id.eq(a.id))
            .and(payment_attempts::status.eq(read.status.as_str()))
            .and(payment_attempts::updated.eq(read.updated)),
        (
            payment_attempts::status.eq(a.status.as_str()),
            payment_attempts::amount.eq(a.amount),
            payment_attempts::failure_code.eq(&a.failure_code),
            payment_attempts::gateway_reference.eq(&a.gateway_reference),
            payment_attempts::operation.eq(a.operation.map(|o| o.as_str())),
            payment_attempts::operation_amount.eq(a.operation_amount),
            payment_attempts::updated.eq(a.updated),
        ),
    )
    .execute(conn)?;
    Ok(updated == 1)
}

pub fn save_attempt(conn: &mut DbConnection, scope: &Scope, a: &Attempt) -> Result<(), ApiError> {
    diesel::update(payment_attempts::table)
        .filter(attempts_in_scope(scope))
        .filter(payment_attempts::id.eq(a.id))
        .set((
            payment_attempts::status.eq(a.status.as_str()),
            payment_attempts::amount.eq(a.amount),
            payment_attempts::failure_code.eq(&a.failure_code),
            payment_attempts::gateway_reference.eq(&a.gateway_reference),
            payment_attempts::updated.eq(a.updated),
        ))
        .execute(conn)?;
    Ok(())
}

/// Whether a source was ever charged (then it is part of the money's history).
/// What other payments for this invoice have in flight (charges started, not yet
/// settled): the sum of their balances, in minor units.
pub fn invoice_in_flight(
    conn: &mut DbConnection,
    scope: &Scope,
    invoice: &str,
    except: i64,
) -> Result<i64, ApiError> {
    let rows: Vec<(i64, i64)> = payments::table
        .filter(in_scope(scope))
        .filter(payments::invoice.eq(invoice.to_string()))
        .filter(payments::status.eq(PaymentStatus::Processing.as_str()))
        .filter(payments::id.ne(except))
        .select((payments::amount, payments::collected))
        .load(conn)?;
    Ok(rows
        .iter()
        .map(|(amount, collected)| amount - collected)
        .sum())
}

/// Whether a charge through this integration is in flight (waiting for its answer, the
/// payer or a capture).
pub fn integration_has_charges_in_flight(
    conn: &mut DbConnection,
    scope: &Scope,
    integration: &str,
) -> Result<bool, ApiError> {
    let in_flight: Vec<&str> = AttemptStatus::ALL
        .into_iter()
        .filter(|s| s.in_flight())
        .map(AttemptStatus::as_str)
        .collect();
    Ok(diesel::select(diesel::dsl::exists(
        payment_attempts::table
            .filter(attempts_in_scope(scope))
            .filter(payment_attempts::integration_id.eq(integration.to_string()))
            .filter(payment_attempts::status.eq_any(in_flight)),
    ))
    .get_result(conn)?)
}

/// Whether any payment of the scope names this invoice.
pub fn invoice_has_payments(
    conn: &mut DbConnection,
    scope: &Scope,
    invoice: &str,
) -> Result<bool, ApiError> {
    Ok(diesel::select(diesel::dsl::exists(
        payments::table
            .filter(in_scope(scope))
            .filter(payments::invoice.eq(invoice.to_string())),
    ))
    .get_result(conn)?)
}

/// Whether any payment of the scope names this customer.
pub fn customer_has_payments(
    conn: &mut DbConnection,
    scope: &Scope,
    customer: &str,
) -> Result<bool, ApiError> {
    Ok(diesel::select(diesel::dsl::exists(
        payments::table
            .filter(in_scope(scope))
            .filter(payments::customer.eq(customer.to_string())),
    ))
    .get_result(conn)?)
}

pub fn source_was_charged(
    conn: &mut DbConnection,
    scope: &Scope,
    source_id: i64,
) -> Result<bool, ApiError> {
    let charged = diesel::select(diesel::dsl::exists(
        payment_attempts::table
            .filter(attempts_in_scope(scope))
            .filter(payment_attempts::source_id.eq(source_id)),
    ))
    .get_result(conn)?;
    Ok(charged)
}

/// Sandbox charges in flight since before `before`, with the scope each lives in, oldest
/// first: what the settling loop works through.
pub fn due_sandbox_charges(
    conn: &mut DbConnection,
    origin: &Arc<Origin>,
    before: NaiveDateTime,
    limit: i64,
) -> Result<Vec<(Scope, i64)>, ApiError> {
    // tenancy: across workspaces by design; each row brings its own scope, and the work on it
    // goes through the scoped functions.
    let rows: Vec<(String, bool, i64)> = payment_attempts::table
        .filter(payment_attempts::status.eq(AttemptStatus::Processing.as_str()))
        .filter(payment_attempts::gateway.eq("sandbox"))
        .filter(payment_attempts::created.lt(before))
        .select((
            payment_attempts::workspace_id,
            payment_attempts::test_mode,
            payment_attempts::payment_id,
        ))
        .order_by(payment_attempts::id.asc())
        .limit(limit)
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(workspace, test_mode, id)| (Scope::new(workspace, test_mode, origin), id))
        .collect())
}

/// An attempt of this scope by the provider's reference or, when the provider's answer is
/// not recorded yet, by its key (from the provider's metadata).
pub fn attempt_for_provider(
    conn: &mut DbConnection,
    scope: &Scope,
    integration: &str,
    reference: &str,
    call_key: Option<&str>,
) -> Result<Option<Attempt>, ApiError> {
    let mine = payment_attempts::table
        .filter(attempts_in_scope(scope))
        .filter(payment_attempts::integration_id.eq(integration.to_string()))
        .into_boxed();
    let by_reference = mine
        .filter(payment_attempts::gateway_reference.eq(reference.to_string()))
        .first::<AttemptRow>(conn)
        .optional()?;
    let row = match (by_reference, call_key) {
        (Some(row), _) => Some(row),
        (None, Some(key)) => payment_attempts::table
            .filter(attempts_in_scope(scope))
            .filter(payment_attempts::integration_id.eq(integration.to_string()))
            .filter(payment_attempts::call_key.eq(key.to_string()))
            .first::<AttemptRow>(conn)
            .optional()?,
        (None, None) => None,
    };
    row.map(AttemptRow::into_attempt).transpose()
}

/// Claims, for the reconciler, provider attempts in flight that have not changed since
/// `changed_before` and were not asked about since then, for `until`: (scope, attempt id).
/// Each claim is a guarded write, so two workers never hold one attempt at once.
pub fn claim_unsettled(
    conn: &mut DbConnection,
    origin: &Arc<Origin>,
    changed_before: NaiveDateTime,
    now: NaiveDateTime,
    until: NaiveDateTime,
    limit: i64,
) -> Result<Vec<(Scope, i64)>, ApiError> {
    let waiting = [
        AttemptStatus::Processing.as_str(),
        AttemptStatus::RequiresAction.as_str(),
    ];
    // tenancy: across workspaces by design; each row brings its own scope, and the work on
    // it goes through the scoped functions.
    let due: Vec<(String, bool, i64, Option<NaiveDateTime>)> = payment_attempts::table
        .filter(payment_attempts::status.eq_any(waiting))
        .filter(payment_attempts::integration_id.is_not_null())
        .filter(payment_attempts::updated.lt(changed_before))
        .filter(
            payment_attempts::asked
                .is_null()
                .or(payment_attempts::asked.lt(changed_before)),
        )
        .filter(
            payment_attempts::claimed_until
                .is_null()
                .or(payment_attempts::claimed_until.lt(now)),
        )
        .select((
            payment_attempts::workspace_id,
            payment_attempts::test_mode,
            payment_attempts::id,
            payment_attempts::claimed_until,
        ))
        .order_by(payment_attempts::updated.asc())
        .limit(limit)
        .load(conn)?;
    let mut claimed = Vec::new();
    for (workspace, test_mode, id, seen) in due {
        let scope = Scope::new(workspace, test_mode, origin);
        // Taken only as it was seen: unclaimed, or under the lapsed claim seen.
        let unchanged = diesel::update(payment_attempts::table)
            .filter(attempts_in_scope(&scope))
            .filter(payment_attempts::id.eq(id))
            .set(payment_attempts::claimed_until.eq(Some(until)));
        let taken = match seen {
            None => unchanged
                .filter(payment_attempts::claimed_until.is_null())
                .execute(conn)?,
            Some(seen) => unchanged
                .filter(payment_attempts::claimed_until.eq(seen))
                .execute(conn)?,
        };
        if taken == 1 {
            claimed.push((scope, id));
        }
    }
    Ok(claimed)
}

/// The reconciler is done with an attempt: its claim (if still the one `held_until`) goes,
/// and when it was asked stays.
pub fn release_claim(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    held_until: NaiveDateTime,
    asked: NaiveDateTime,
) -> Result<(), ApiError> {
    diesel::update(payment_attempts::table)
        .filter(attempts_in_scope(scope))
        .filter(payment_attempts::id.eq(id))
        .filter(payment_attempts::claimed_until.eq(held_until))
        .set((
            payment_attempts::claimed_until.eq(None::<NaiveDateTime>),
            payment_attempts::asked.eq(Some(asked)),
        ))
        .execute(conn)?;
    Ok(())
}

/// One attempt by its id.
pub fn attempt(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
) -> Result<Option<Attempt>, ApiError> {
    let row = payment_attempts::table
        .filter(attempts_in_scope(scope))
        .filter(payment_attempts::id.eq(id))
        .first::<AttemptRow>(conn)
        .optional()?;
    row.map(AttemptRow::into_attempt).transpose()
}

/// For `/metrics`, across every workspace (tenancy: counts only): charges waiting for their
/// gateway's answer, by gateway.
// tenancy: across workspaces by design (counts only, for /metrics).
pub fn in_flight_by_gateway(conn: &mut DbConnection) -> Result<Vec<(String, i64)>, ApiError> {
    Ok(payment_attempts::table
        .filter(payment_attempts::status.eq(AttemptStatus::Processing.as_str()))
        .group_by(payment_attempts::gateway)
        .select((payment_attempts::gateway, diesel::dsl::count_star()))
        .load(conn)?)
}

/// One group of an aggregate over the scope's payments (`overview`'s rows).
#[derive(QueryableByName, Debug)]
pub struct Group {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub currency: String,
    /// A day (`2026-12-03`) or a status, as the query groups.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub key: String,
    #[diesel(sql_type = BigInt)]
    pub total: i64,
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

/// Aggregates with GROUP BY on an expression, which diesel's DSL cannot name on both
/// backends: the same text on each (`$n` placeholders bind in order on SQLite too), scoped
/// by its first two parameters like every query here, and from `since` when given (`$3`).
fn groups(
    conn: &mut DbConnection,
    scope: &Scope,
    sql: &str,
    since: Option<NaiveDateTime>,
) -> Result<Vec<Group>, ApiError> {
    let query = diesel::sql_query(sql)
        .bind::<diesel::sql_types::Text, _>(scope.workspace_id())
        .bind::<Bool, _>(scope.test_mode());
    Ok(match since {
        Some(since) => query
            .bind::<diesel::sql_types::Timestamp, _>(since)
            .load(conn)?,
        None => query.load(conn)?,
    })
}

/// What was collected per currency and day (UTC) since `since`, by when it was paid.
pub fn collected_per_day(
    conn: &mut DbConnection,
    scope: &Scope,
    since: NaiveDateTime,
) -> Result<Vec<Group>, ApiError> {
    groups(
        conn,
        scope,
        "SELECT currency, CAST(date(payment_date) AS TEXT) AS key, \
         CAST(SUM(collected) AS BIGINT) AS total, COUNT(*) AS n FROM payments \
         WHERE workspace_id = $1 AND test_mode = $2 AND payment_date >= $3 AND collected > 0 \
         GROUP BY currency, CAST(date(payment_date) AS TEXT)",
        Some(since),
    )
}

/// Charge attempts that ended (succeeded or failed) since `since`, per currency and status.
pub fn attempt_outcomes(
    conn: &mut DbConnection,
    scope: &Scope,
    since: NaiveDateTime,
) -> Result<Vec<Group>, ApiError> {
    groups(
        conn,
        scope,
        "SELECT currency, status AS key, CAST(SUM(amount) AS BIGINT) AS total, COUNT(*) AS n \
         FROM payment_attempts WHERE workspace_id = $1 AND test_mode = $2 AND created >= $3 \
         AND status IN ('succeeded', 'failed') GROUP BY currency, status",
        Some(since),
    )
}

/// Every payment of the scope, per currency and status (from the counts the triggers keep).
pub fn counts_by_status(conn: &mut DbConnection, scope: &Scope) -> Result<Vec<Group>, ApiError> {
    groups(
        conn,
        scope,
        "SELECT currency, status AS key, CAST(0 AS BIGINT) AS total, \
         CAST(SUM(n) AS BIGINT) AS n FROM payment_counts \
         WHERE workspace_id = $1 AND test_mode = $2 \
         GROUP BY currency, status HAVING SUM(n) > 0",
        None,
    )
}
