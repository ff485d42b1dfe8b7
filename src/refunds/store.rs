//! Refund storage: the refunds and their parts, scoped like every tenant table (see
//! `in_scope`); the reconciler's and the sandbox's loops work across workspaces, each row
//! bringing its own scope.

use std::sync::Arc;

use chrono::NaiveDateTime;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use serde_json::Value;

use super::domain::{Refund, RefundPart, RefundReason, RefundStatus};
use crate::audit::Origin;
use crate::db::schema::{refund_parts, refunds};
use crate::db::{DbConnection, MultiBackend, Scope};
use crate::error::ApiError;
use crate::money::Currency;

type InScope = diesel::dsl::And<
    diesel::dsl::Eq<refunds::workspace_id, String>,
    diesel::dsl::Eq<refunds::test_mode, bool>,
>;

fn in_scope(scope: &Scope) -> InScope {
    refunds::workspace_id
        .eq(scope.workspace_id().to_string())
        .and(refunds::test_mode.eq(scope.test_mode()))
}

type PartsInScope = diesel::dsl::And<
    diesel::dsl::Eq<refund_parts::workspace_id, String>,
    diesel::dsl::Eq<refund_parts::test_mode, bool>,
>;

fn parts_in_scope(scope: &Scope) -> PartsInScope {
    refund_parts::workspace_id
        .eq(scope.workspace_id().to_string())
        .and(refund_parts::test_mode.eq(scope.test_mode()))
}

#[derive(Queryable)]
struct RefundRow {
    id: i64,
    _workspace_id: String,
    test_mode: bool,
    payment_id: i64,
    amount: i64,
    currency: String,
    _unit: i64,
    reason: Option<String>,
    status: String,
    failed_reason: Option<String>,
    metadata: String,
    version: i64,
    created: NaiveDateTime,
    updated: NaiveDateTime,
}

impl RefundRow {
    fn into_refund(self) -> Result<Refund, ApiError> {
        let corrupt =
            |what: &str| ApiError::internal(format!("refund {} has an invalid {what}", self.id));
        Ok(Refund {
            currency: Currency::parse(&self.currency).ok_or_else(|| corrupt("currency"))?,
            status: self.status.parse().map_err(|_| corrupt("status"))?,
            reason: self
                .reason
                .as_deref()
                .map(|r| r.parse::<RefundReason>().map_err(|_| corrupt("reason")))
                .transpose()?,
            metadata: serde_json::from_str(&self.metadata).map_err(|_| corrupt("metadata"))?,
            id: self.id,
            test_mode: self.test_mode,
            payment_id: self.payment_id,
            amount: self.amount,
            failed_reason: self.failed_reason,
            version: self.version,
            created: self.created,
            updated: self.updated,
        })
    }
}

#[derive(Queryable)]
struct PartRow {
    id: i64,
    _workspace_id: String,
    _test_mode: bool,
    refund_id: i64,
    payment_id: i64,
    attempt_id: Option<i64>,
    gateway: Option<String>,
    integration_id: Option<String>,
    amount: i64,
    currency: String,
    status: String,
    failure_code: Option<String>,
    gateway_reference: Option<String>,
    call_key: String,
    description: String,
    _claimed_until: Option<NaiveDateTime>,
    _asked: Option<NaiveDateTime>,
    _ask_now: bool,
    created: NaiveDateTime,
    updated: NaiveDateTime,
}

impl PartRow {
    fn into_part(self) -> Result<RefundPart, ApiError> {
        let corrupt = |what: &str| {
            ApiError::internal(format!("refund part {} has an invalid {what}", self.id))
        };
        Ok(RefundPart {
            currency: Currency::parse(&self.currency).ok_or_else(|| corrupt("currency"))?,
            status: self.status.parse().map_err(|_| corrupt("status"))?,
            id: self.id,
            refund_id: self.refund_id,
            payment_id: self.payment_id,
            attempt_id: self.attempt_id,
            gateway: self.gateway,
            integration: self.integration_id,
            amount: self.amount,
            failure_code: self.failure_code,
            gateway_reference: self.gateway_reference,
            call_key: self.call_key,
            description: self.description,
            created: self.created,
            updated: self.updated,
        })
    }
}

fn metadata_text(refund: &Refund) -> String {
    Value::Object(refund.metadata.clone()).to_string()
}

pub fn insert(conn: &mut DbConnection, scope: &Scope, r: &Refund) -> Result<Refund, ApiError> {
    let row: RefundRow = diesel::insert_into(refunds::table)
        .values((
            refunds::workspace_id.eq(scope.workspace_id()),
            refunds::test_mode.eq(scope.test_mode()),
            refunds::payment_id.eq(r.payment_id),
            refunds::amount.eq(r.amount),
            refunds::currency.eq(r.currency.code),
            refunds::unit.eq(r.currency.unit()),
            refunds::reason.eq(r.reason.map(|r| r.as_str())),
            refunds::status.eq(r.status.as_str()),
            refunds::failed_reason.eq(&r.failed_reason),
            refunds::metadata.eq(metadata_text(r)),
            refunds::version.eq(r.version),
            refunds::created.eq(r.created),
            refunds::updated.eq(r.updated),
        ))
        .get_result(conn)?;
    row.into_refund()
}

pub fn insert_part(
    conn: &mut DbConnection,
    scope: &Scope,
    p: &RefundPart,
) -> Result<RefundPart, ApiError> {
    let row: PartRow = diesel::insert_into(refund_parts::table)
        .values((
            refund_parts::workspace_id.eq(scope.workspace_id()),
            refund_parts::test_mode.eq(scope.test_mode()),
            refund_parts::refund_id.eq(p.refund_id),
            refund_parts::payment_id.eq(p.payment_id),
            refund_parts::attempt_id.eq(p.attempt_id),
            refund_parts::gateway.eq(&p.gateway),
            refund_parts::integration_id.eq(&p.integration),
            refund_parts::amount.eq(p.amount),
            refund_parts::currency.eq(p.currency.code),
            refund_parts::status.eq(p.status.as_str()),
            refund_parts::failure_code.eq(&p.failure_code),
            refund_parts::gateway_reference.eq(&p.gateway_reference),
            refund_parts::call_key.eq(&p.call_key),
            refund_parts::description.eq(&p.description),
            refund_parts::created.eq(p.created),
            refund_parts::updated.eq(p.updated),
        ))
        .returning(refund_parts::all_columns)
        .get_result(conn)?;
    row.into_part()
}

pub fn find(conn: &mut DbConnection, scope: &Scope, id: i64) -> Result<Option<Refund>, ApiError> {
    let row = refunds::table
        .filter(in_scope(scope))
        .filter(refunds::id.eq(id))
        .first::<RefundRow>(conn)
        .optional()?;
    row.map(RefundRow::into_refund).transpose()
}

/// Saves a changed refund if nobody changed it since it was `read`; false when someone did.
pub fn save(
    conn: &mut DbConnection,
    scope: &Scope,
    read: &Refund,
    r: &Refund,
) -> Result<bool, ApiError> {
    let updated = diesel::update(refunds::table)
        .filter(in_scope(scope))
        .filter(refunds::id.eq(r.id))
        .filter(refunds::version.eq(read.version))
        .set((
            refunds::status.eq(r.status.as_str()),
            refunds::failed_reason.eq(&r.failed_reason),
            refunds::metadata.eq(metadata_text(r)),
            refunds::version.eq(read.version + 1),
            refunds::updated.eq(r.updated),
        ))
        .execute(conn)?;
    Ok(updated == 1)
}

/// A refund's parts, in the order they were made (newest charge first).
pub fn parts(
    conn: &mut DbConnection,
    scope: &Scope,
    refund_id: i64,
) -> Result<Vec<RefundPart>, ApiError> {
    let rows: Vec<PartRow> = refund_parts::table
        .filter(parts_in_scope(scope))
        .filter(refund_parts::refund_id.eq(refund_id))
        .order_by(refund_parts::id.asc())
        .load(conn)?;
    rows.into_iter().map(PartRow::into_part).collect()
}

/// Every part of every refund of a payment.
pub fn parts_of_payment(
    conn: &mut DbConnection,
    scope: &Scope,
    payment_id: i64,
) -> Result<Vec<RefundPart>, ApiError> {
    let rows: Vec<PartRow> = refund_parts::table
        .filter(parts_in_scope(scope))
        .filter(refund_parts::payment_id.eq(payment_id))
        .order_by(refund_parts::id.asc())
        .load(conn)?;
    rows.into_iter().map(PartRow::into_part).collect()
}

pub fn part(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
) -> Result<Option<RefundPart>, ApiError> {
    let row = refund_parts::table
        .filter(parts_in_scope(scope))
        .filter(refund_parts::id.eq(id))
        .first::<PartRow>(conn)
        .optional()?;
    row.map(PartRow::into_part).transpose()
}

/// Saves a part's change if it is as it was `read` (its status and last change): of two
/// answers about one part, one writes and the other finds it moved.
pub fn move_part(
    conn: &mut DbConnection,
    scope: &Scope,
    read: &RefundPart,
    p: &RefundPart,
) -> Result<bool, ApiError> {
    let updated = diesel::update(refund_parts::table)
        .filter(parts_in_scope(scope))
        .filter(refund_parts::id.eq(p.id))
        .filter(refund_parts::status.eq(read.status.as_str()))
        .filter(refund_parts::updated.eq(read.updated))
        .set((
            refund_parts::status.eq(p.status.as_str()),
            refund_parts::failure_code.eq(&p.failure_code),
            refund_parts::gateway_reference.eq(&p.gateway_reference),
            refund_parts::updated.eq(p.updated),
        ))
        .execute(conn)?;
    Ok(updated == 1)
}

/// A part through this integration, by the provider's reference or, when its answer is
/// not recorded yet, by its key (from the provider's metadata). A part that already has a
/// reference is never found by its key: another refund carrying its key is not its own.
pub fn part_for_provider(
    conn: &mut DbConnection,
    scope: &Scope,
    integration: &str,
    reference: &str,
    call_key: Option<&str>,
) -> Result<Option<RefundPart>, ApiError> {
    let by_reference = refund_parts::table
        .filter(parts_in_scope(scope))
        .filter(refund_parts::integration_id.eq(integration.to_string()))
        .filter(refund_parts::gateway_reference.eq(reference.to_string()))
        .first::<PartRow>(conn)
        .optional()?;
    let row = match (by_reference, call_key) {
        (Some(row), _) => Some(row),
        (None, Some(key)) => refund_parts::table
            .filter(parts_in_scope(scope))
            .filter(refund_parts::integration_id.eq(integration.to_string()))
            .filter(refund_parts::call_key.eq(key.to_string()))
            .filter(refund_parts::gateway_reference.is_null())
            .first::<PartRow>(conn)
            .optional()?,
        (None, None) => None,
    };
    row.map(PartRow::into_part).transpose()
}

/// Marks the pending parts through a charge to be asked about now (a provider said its
/// refunds changed); returns how many.
pub fn ask_now(conn: &mut DbConnection, scope: &Scope, attempt_id: i64) -> Result<usize, ApiError> {
    Ok(diesel::update(refund_parts::table)
        .filter(parts_in_scope(scope))
        .filter(refund_parts::attempt_id.eq(attempt_id))
        .filter(refund_parts::status.eq(RefundStatus::Pending.as_str()))
        .set(refund_parts::ask_now.eq(true))
        .execute(conn)?)
}

/// `GET /refunds/` filters.
#[derive(Clone, Debug, Default)]
pub struct RefundFilter {
    pub payment: Option<i64>,
    pub status: Option<RefundStatus>,
    pub created_gte: Option<NaiveDateTime>,
    pub created_lte: Option<NaiveDateTime>,
    /// Default `-created` (newest first); ties break by id in the same direction.
    pub ordering: Option<Ordering>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderField {
    Created,
    Amount,
    Id,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ordering {
    pub field: OrderField,
    pub descending: bool,
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
            "amount" => OrderField::Amount,
            "id" => OrderField::Id,
            _ => return Err(()),
        };
        Ok(Ordering { field, descending })
    }
}

fn filtered(scope: &Scope, f: &RefundFilter) -> refunds::BoxedQuery<'static, MultiBackend> {
    let mut q = refunds::table.filter(in_scope(scope)).into_boxed();
    if let Some(payment) = f.payment {
        q = q.filter(refunds::payment_id.eq(payment));
    }
    if let Some(status) = f.status {
        q = q.filter(refunds::status.eq(status.as_str()));
    }
    if let Some(at) = f.created_gte {
        q = q.filter(refunds::created.ge(at));
    }
    if let Some(at) = f.created_lte {
        q = q.filter(refunds::created.le(at));
    }
    q
}

pub fn count(conn: &mut DbConnection, scope: &Scope, f: &RefundFilter) -> Result<i64, ApiError> {
    Ok(filtered(scope, f).count().get_result(conn)?)
}

pub fn list(
    conn: &mut DbConnection,
    scope: &Scope,
    f: &RefundFilter,
    offset: i64,
    limit: i64,
) -> Result<Vec<Refund>, ApiError> {
    let ordering = f.ordering.unwrap_or(Ordering {
        field: OrderField::Created,
        descending: true,
    });
    let desc = ordering.descending;
    let mut q = filtered(scope, f);
    // Minor units mean different sizes in different currencies: by the whole part, then by
    // the fraction scaled to four digits, as payments are.
    let whole = || sql::<BigInt>("amount / unit");
    let fraction = || sql::<BigInt>("(amount - (amount / unit) * unit) * 10000 / unit");
    q = match (ordering.field, desc) {
        (OrderField::Created, false) => q.order_by(refunds::created.asc()),
        (OrderField::Created, true) => q.order_by(refunds::created.desc()),
        (OrderField::Amount, false) => q.order_by(whole().asc()).then_order_by(fraction().asc()),
        (OrderField::Amount, true) => q.order_by(whole().desc()).then_order_by(fraction().desc()),
        (OrderField::Id, _) => q,
    };
    q = if desc {
        q.then_order_by(refunds::id.desc())
    } else {
        q.then_order_by(refunds::id.asc())
    };
    let rows = q.offset(offset).limit(limit).load::<RefundRow>(conn)?;
    rows.into_iter().map(RefundRow::into_refund).collect()
}

/// Claims, for the reconciler, provider parts pending that have not changed since
/// `changed_before` and were not asked about since then (or that a provider's event asked
/// to look at now), for `until`: (scope, part id). Each claim is a guarded write, so two
/// workers never hold one part at once.
pub fn claim_unsettled(
    conn: &mut DbConnection,
    origin: &Arc<Origin>,
    changed_before: NaiveDateTime,
    now: NaiveDateTime,
    until: NaiveDateTime,
    limit: i64,
) -> Result<Vec<(Scope, i64)>, ApiError> {
    // tenancy: across workspaces by design; each row brings its own scope, and the work on
    // it goes through the scoped functions.
    let due: Vec<(String, bool, i64, Option<NaiveDateTime>)> = refund_parts::table
        .filter(refund_parts::status.eq(RefundStatus::Pending.as_str()))
        .filter(refund_parts::integration_id.is_not_null())
        .filter(
            refund_parts::ask_now
                .eq(true)
                .or(refund_parts::updated.lt(changed_before).and(
                    refund_parts::asked
                        .is_null()
                        .or(refund_parts::asked.lt(changed_before)),
                )),
        )
        .filter(
            refund_parts::claimed_until
                .is_null()
                .or(refund_parts::claimed_until.lt(now)),
        )
        .select((
            refund_parts::workspace_id,
            refund_parts::test_mode,
            refund_parts::id,
            refund_parts::claimed_until,
        ))
        .order_by(refund_parts::updated.asc())
        .limit(limit)
        .load(conn)?;
    let mut claimed = Vec::new();
    for (workspace, test_mode, id, seen) in due {
        let scope = Scope::new(workspace, test_mode, origin);
        // Taken only as it was seen: unclaimed, or under the lapsed claim seen.
        let unchanged = diesel::update(refund_parts::table)
            .filter(parts_in_scope(&scope))
            .filter(refund_parts::id.eq(id))
            .set(refund_parts::claimed_until.eq(Some(until)));
        let taken = match seen {
            None => unchanged
                .filter(refund_parts::claimed_until.is_null())
                .execute(conn)?,
            Some(seen) => unchanged
                .filter(refund_parts::claimed_until.eq(seen))
                .execute(conn)?,
        };
        if taken == 1 {
            claimed.push((scope, id));
        }
    }
    Ok(claimed)
}

/// The reconciler is done with a part: its claim (if still the one `held_until`) goes, and
/// when it was asked stays.
pub fn release_claim(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    held_until: NaiveDateTime,
    asked: NaiveDateTime,
) -> Result<(), ApiError> {
    diesel::update(refund_parts::table)
        .filter(parts_in_scope(scope))
        .filter(refund_parts::id.eq(id))
        .filter(refund_parts::claimed_until.eq(held_until))
        .set((
            refund_parts::claimed_until.eq(None::<NaiveDateTime>),
            refund_parts::asked.eq(Some(asked)),
            refund_parts::ask_now.eq(false),
        ))
        .execute(conn)?;
    Ok(())
}

/// Sandbox refunds pending since before `before`, with the scope each lives in: (scope,
/// refund id), oldest first, for the settling loop.
pub fn due_sandbox_refunds(
    conn: &mut DbConnection,
    origin: &Arc<Origin>,
    before: NaiveDateTime,
    limit: i64,
) -> Result<Vec<(Scope, i64)>, ApiError> {
    // tenancy: across workspaces by design; each row brings its own scope, and the work on it
    // goes through the scoped functions.
    let rows: Vec<(String, bool, i64)> = refund_parts::table
        .filter(refund_parts::status.eq(RefundStatus::Pending.as_str()))
        .filter(refund_parts::gateway.eq("sandbox"))
        .filter(refund_parts::created.lt(before))
        .select((
            refund_parts::workspace_id,
            refund_parts::test_mode,
            refund_parts::refund_id,
        ))
        .order_by(refund_parts::id.asc())
        .limit(limit)
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(workspace, test_mode, id)| (Scope::new(workspace, test_mode, origin), id))
        .collect())
}

/// For `/metrics`, across every workspace (tenancy: counts only): refund parts waiting for
/// their provider, by gateway.
// tenancy: across workspaces by design (counts only, for /metrics).
pub fn in_flight_by_gateway(conn: &mut DbConnection) -> Result<Vec<(String, i64)>, ApiError> {
    let rows: Vec<(Option<String>, i64)> = refund_parts::table
        .filter(refund_parts::status.eq(RefundStatus::Pending.as_str()))
        .group_by(refund_parts::gateway)
        .select((refund_parts::gateway, diesel::dsl::count_star()))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(gateway, n)| (gateway.unwrap_or_else(|| "none".into()), n))
        .collect())
}

/// What succeeded refunds created since `since` sent back, per currency: (currency, minor
/// units, how many).
pub fn refunded_since(
    conn: &mut DbConnection,
    scope: &Scope,
    since: NaiveDateTime,
) -> Result<Vec<(String, i64, i64)>, ApiError> {
    let rows: Vec<(String, i64)> = refunds::table
        .filter(in_scope(scope))
        .filter(refunds::created.ge(since))
        .filter(refunds::status.eq(RefundStatus::Succeeded.as_str()))
        .select((refunds::currency, refunds::amount))
        .load(conn)?;
    let mut totals: Vec<(String, i64, i64)> = Vec::new();
    for (currency, amount) in rows {
        match totals.iter_mut().find(|(c, _, _)| *c == currency) {
            Some((_, total, n)) => {
                *total = total.saturating_add(amount);
                *n += 1;
            }
            None => totals.push((currency, amount, 1)),
        }
    }
    Ok(totals)
}
