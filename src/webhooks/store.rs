//! Webhook and delivery storage; scoped like every tenant table (see `in_scope`). The
//! delivery worker's two statements that look across workspaces are marked.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::domain::Webhook;
use crate::db::schema::{webhook_deliveries, webhooks};
use crate::db::{self, DbConnection, Scope};
use crate::error::ApiError;

type InScope = diesel::dsl::And<
    diesel::dsl::Eq<webhooks::workspace_id, String>,
    diesel::dsl::Eq<webhooks::test_mode, bool>,
>;

fn in_scope(scope: &Scope) -> InScope {
    webhooks::workspace_id
        .eq(scope.workspace_id().to_string())
        .and(webhooks::test_mode.eq(scope.test_mode()))
}

type DeliveriesInScope = diesel::dsl::And<
    diesel::dsl::Eq<webhook_deliveries::workspace_id, String>,
    diesel::dsl::Eq<webhook_deliveries::test_mode, bool>,
>;

fn deliveries_in_scope(scope: &Scope) -> DeliveriesInScope {
    webhook_deliveries::workspace_id
        .eq(scope.workspace_id().to_string())
        .and(webhook_deliveries::test_mode.eq(scope.test_mode()))
}

#[derive(Queryable)]
struct WebhookRow {
    id: i64,
    _workspace_id: String,
    test_mode: bool,
    url: String,
    events: String,
    description: Option<String>,
    enabled: bool,
    disabled_reason: Option<String>,
    secret: String,
    failure_status: Option<i32>,
    failure_streak: i32,
    version: i64,
    created: NaiveDateTime,
    updated: NaiveDateTime,
}

impl WebhookRow {
    fn into_webhook(self) -> Result<Webhook, ApiError> {
        Ok(Webhook {
            events: serde_json::from_str(&self.events).map_err(|_| {
                ApiError::internal(format!("webhook {} has invalid events", self.id))
            })?,
            id: self.id,
            test_mode: self.test_mode,
            url: self.url,
            description: self.description,
            enabled: self.enabled,
            disabled_reason: self.disabled_reason,
            secret: self.secret,
            failure_status: self.failure_status,
            failure_streak: self.failure_streak,
            version: self.version,
            created: self.created,
            updated: self.updated,
        })
    }
}

fn events_json(webhook: &Webhook) -> String {
    serde_json::Value::from(webhook.events.clone()).to_string()
}

pub fn insert(
    conn: &mut DbConnection,
    scope: &Scope,
    webhook: &Webhook,
) -> Result<Webhook, ApiError> {
    let id: i64 = diesel::insert_into(webhooks::table)
        .values((
            webhooks::workspace_id.eq(scope.workspace_id()),
            webhooks::test_mode.eq(scope.test_mode()),
            webhooks::url.eq(&webhook.url),
            webhooks::events.eq(events_json(webhook)),
            webhooks::description.eq(&webhook.description),
            webhooks::enabled.eq(webhook.enabled),
            webhooks::disabled_reason.eq(&webhook.disabled_reason),
            webhooks::secret.eq(&webhook.secret),
            webhooks::failure_status.eq(webhook.failure_status),
            webhooks::failure_streak.eq(webhook.failure_streak),
            webhooks::version.eq(webhook.version),
            webhooks::created.eq(webhook.created),
            webhooks::updated.eq(webhook.updated),
        ))
        .returning(webhooks::id)
        .get_result(conn)?;
    Ok(Webhook {
        id,
        ..webhook.clone()
    })
}

pub fn find(conn: &mut DbConnection, scope: &Scope, id: i64) -> Result<Option<Webhook>, ApiError> {
    let row: Option<WebhookRow> = webhooks::table
        .filter(in_scope(scope))
        .filter(webhooks::id.eq(id))
        .first(conn)
        .optional()?;
    row.map(WebhookRow::into_webhook).transpose()
}

/// As [`find`], and on PostgreSQL locks the webhook until the transaction ends (`FOR NO KEY
/// UPDATE`, the lock its update takes: the inserts of its deliveries, which only hold its
/// key, do not wait), so that what is decided from it (its run of failures) is decided on
/// its latest state. On SQLite the single writer already serialises every write
/// transaction.
pub fn find_locked(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
) -> Result<Option<Webhook>, ApiError> {
    let query = webhooks::table
        .filter(in_scope(scope))
        .filter(webhooks::id.eq(id));
    let row: Option<WebhookRow> = match conn {
        DbConnection::Pg(conn) => query.for_no_key_update().first(conn).optional()?,
        DbConnection::Sqlite(conn) => query.first(conn).optional()?,
    };
    row.map(WebhookRow::into_webhook).transpose()
}

pub fn count(conn: &mut DbConnection, scope: &Scope) -> Result<i64, ApiError> {
    Ok(webhooks::table
        .filter(in_scope(scope))
        .count()
        .get_result(conn)?)
}

/// Newest first.
pub fn list(
    conn: &mut DbConnection,
    scope: &Scope,
    offset: i64,
    limit: i64,
) -> Result<Vec<Webhook>, ApiError> {
    let rows: Vec<WebhookRow> = webhooks::table
        .filter(in_scope(scope))
        .order_by(webhooks::id.desc())
        .offset(offset)
        .limit(limit)
        .load(conn)?;
    rows.into_iter().map(WebhookRow::into_webhook).collect()
}

/// Writes `new` if the webhook is still at `old`'s version; false if it changed meanwhile.
pub fn save(
    conn: &mut DbConnection,
    scope: &Scope,
    old: &Webhook,
    new: &Webhook,
) -> Result<bool, ApiError> {
    let updated = diesel::update(
        webhooks::table
            .filter(in_scope(scope))
            .filter(webhooks::id.eq(old.id))
            .filter(webhooks::version.eq(old.version)),
    )
    .set((
        webhooks::url.eq(&new.url),
        webhooks::events.eq(events_json(new)),
        webhooks::description.eq(&new.description),
        webhooks::enabled.eq(new.enabled),
        webhooks::disabled_reason.eq(&new.disabled_reason),
        webhooks::secret.eq(&new.secret),
        webhooks::failure_status.eq(new.failure_status),
        webhooks::failure_streak.eq(new.failure_streak),
        webhooks::version.eq(old.version + 1),
        webhooks::updated.eq(new.updated),
    ))
    .execute(conn)?;
    Ok(updated == 1)
}

/// Deletes a webhook and the deliveries owed to it.
pub fn delete(conn: &mut DbConnection, scope: &Scope, id: i64) -> Result<bool, ApiError> {
    diesel::delete(
        webhook_deliveries::table
            .filter(deliveries_in_scope(scope))
            .filter(webhook_deliveries::webhook_id.eq(id)),
    )
    .execute(conn)?;
    let deleted = diesel::delete(
        webhooks::table
            .filter(in_scope(scope))
            .filter(webhooks::id.eq(id)),
    )
    .execute(conn)?;
    Ok(deleted == 1)
}

/// The webhooks of the scope that may be owed an event, as `(id, events)` (events as
/// stored, JSON): enabled ones, and those the server disabled after failures (re-enabled,
/// they get what happened meanwhile). A webhook disabled by hand gets nothing.
pub fn subscribers(conn: &mut DbConnection, scope: &Scope) -> Result<Vec<(i64, String)>, ApiError> {
    let query = webhooks::table
        .filter(in_scope(scope))
        .filter(
            webhooks::enabled
                .eq(true)
                .or(webhooks::disabled_reason.is_not_null()),
        )
        .select((webhooks::id, webhooks::events));
    // On the connection's own backend: every event on SQLite reads this.
    Ok(crate::on_backend!(conn, |c| query.load(c))?)
}

/// [`subscribers`]' condition, for a statement that finds them in SQL of its own
/// (`events::store::record` on PostgreSQL).
pub const OWED_SQL: &str = "(webhooks.enabled OR webhooks.disabled_reason IS NOT NULL)";

/// Owes `event` to those of `subscribers` that subscribe to its type: a pending delivery
/// each. Call it in the event's transaction.
pub fn owe(
    conn: &mut DbConnection,
    scope: &Scope,
    subscribers: &[(i64, String)],
    event_id: i64,
    event_type: &str,
    object_id: &str,
    at: NaiveDateTime,
) -> Result<(), ApiError> {
    for (webhook_id, events) in subscribers {
        let patterns: Vec<String> = serde_json::from_str(events)
            .map_err(|_| ApiError::internal(format!("webhook {webhook_id} has invalid events")))?;
        if super::domain::subscribes(&patterns, event_type) {
            insert_delivery(conn, scope, *webhook_id, event_id, object_id, at)?;
        }
    }
    Ok(())
}

/// A pending delivery of one event to one webhook, due at once.
pub fn insert_delivery(
    conn: &mut DbConnection,
    scope: &Scope,
    webhook_id: i64,
    event_id: i64,
    object_id: &str,
    at: NaiveDateTime,
) -> Result<i64, ApiError> {
    Ok(diesel::insert_into(webhook_deliveries::table)
        .values((
            webhook_deliveries::workspace_id.eq(scope.workspace_id()),
            webhook_deliveries::test_mode.eq(scope.test_mode()),
            webhook_deliveries::webhook_id.eq(webhook_id),
            webhook_deliveries::event_id.eq(event_id),
            webhook_deliveries::object_id.eq(object_id),
            webhook_deliveries::status.eq("pending"),
            webhook_deliveries::attempts.eq(0),
            webhook_deliveries::next_attempt.eq(at),
            webhook_deliveries::created.eq(at),
        ))
        .returning(webhook_deliveries::id)
        .get_result(conn)?)
}

#[derive(Queryable, Clone, Debug)]
pub struct DeliveryRow {
    pub id: i64,
    pub workspace_id: String,
    pub test_mode: bool,
    pub webhook_id: i64,
    pub event_id: i64,
    pub object_id: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt: NaiveDateTime,
    pub claimed_until: Option<NaiveDateTime>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub last_attempt: Option<NaiveDateTime>,
    pub created: NaiveDateTime,
}

pub fn count_deliveries(
    conn: &mut DbConnection,
    scope: &Scope,
    webhook_id: i64,
) -> Result<i64, ApiError> {
    Ok(webhook_deliveries::table
        .filter(deliveries_in_scope(scope))
        .filter(webhook_deliveries::webhook_id.eq(webhook_id))
        .count()
        .get_result(conn)?)
}

/// A webhook's deliveries, newest first.
pub fn list_deliveries(
    conn: &mut DbConnection,
    scope: &Scope,
    webhook_id: i64,
    offset: i64,
    limit: i64,
) -> Result<Vec<DeliveryRow>, ApiError> {
    Ok(webhook_deliveries::table
        .filter(deliveries_in_scope(scope))
        .filter(webhook_deliveries::webhook_id.eq(webhook_id))
        .order_by(webhook_deliveries::id.desc())
        .offset(offset)
        .limit(limit)
        .load(conn)?)
}

pub fn find_delivery(
    conn: &mut DbConnection,
    scope: &Scope,
    webhook_id: i64,
    id: i64,
) -> Result<Option<DeliveryRow>, ApiError> {
    Ok(webhook_deliveries::table
        .filter(deliveries_in_scope(scope))
        .filter(webhook_deliveries::webhook_id.eq(webhook_id))
        .filter(webhook_deliveries::id.eq(id))
        .first(conn)
        .optional()?)
}

/// Makes a delivery pending and due at `at` (a retry by hand, or a webhook re-enabled).
pub fn make_due(
    conn: &mut DbConnection,
    scope: &Scope,
    webhook_id: i64,
    delivery_id: Option<i64>,
    at: NaiveDateTime,
) -> Result<usize, ApiError> {
    let owed = webhook_deliveries::table
        .filter(deliveries_in_scope(scope))
        .filter(webhook_deliveries::webhook_id.eq(webhook_id));
    let due = (
        webhook_deliveries::status.eq("pending"),
        webhook_deliveries::next_attempt.eq(at),
    );
    Ok(match delivery_id {
        Some(id) => diesel::update(owed.filter(webhook_deliveries::id.eq(id)))
            .set(due)
            .execute(conn)?,
        None => diesel::update(owed.filter(webhook_deliveries::status.eq("pending")))
            .set(due)
            .execute(conn)?,
    })
}

/// Up to `limit` deliveries due at `at` and not claimed, oldest first, in every workspace.
fn due(
    conn: &mut DbConnection,
    at: NaiveDateTime,
    limit: i64,
) -> Result<Vec<DeliveryRow>, ApiError> {
    // tenancy: across workspaces by design (the delivery worker; each row carries its scope)
    Ok(webhook_deliveries::table
        .inner_join(webhooks::table)
        .filter(webhooks::enabled.eq(true))
        .select(webhook_deliveries::all_columns)
        .filter(webhook_deliveries::status.eq("pending"))
        .filter(webhook_deliveries::next_attempt.le(at))
        .filter(
            webhook_deliveries::claimed_until
                .is_null()
                .or(webhook_deliveries::claimed_until.lt(at)),
        )
        // Not one waiting for an older delivery (so that a backlog waiting behind one
        // failing delivery cannot fill the batch and starve every other webhook).
        .filter(no_older_pending())
        .order_by(webhook_deliveries::id)
        .limit(limit)
        .load(conn)?)
}

/// No older delivery of the same object to the same webhook is still pending: a delivery
/// waits until then, so that an object's events arrive in order.
fn no_older_pending() -> diesel::expression::SqlLiteral<diesel::sql_types::Bool> {
    diesel::dsl::sql(
        "NOT EXISTS (SELECT 1 FROM webhook_deliveries older \
         WHERE older.webhook_id = webhook_deliveries.webhook_id \
         AND older.object_id = webhook_deliveries.object_id \
         AND older.status = 'pending' AND older.id < webhook_deliveries.id)",
    )
}

/// Claims up to `limit` deliveries due at `at` until `until`: the one guarded write that
/// keeps two workers (in one process or several) from sending a delivery at the same time.
/// Returns the ones this worker now holds, oldest first.
pub fn claim_due(
    conn: &mut DbConnection,
    at: NaiveDateTime,
    until: NaiveDateTime,
    limit: i64,
) -> Result<Vec<DeliveryRow>, ApiError> {
    if let DbConnection::Pg(pg) = conn {
        // The oldest first, read in the order of the index of pending deliveries, stopping
        // at `limit`. Without this, PostgreSQL plans by statistics, and statistics taken
        // before a burst see almost nothing pending: it then reads every pending delivery
        // and sorts them, on every claim (24 ms a claim with 11,000 pending, where reading
        // in order takes under 1 ms). For this transaction only.
        diesel::sql_query("SET LOCAL enable_sort = off").execute(pg)?;
    }
    let due = due(conn, at, limit)?;
    if due.is_empty() {
        return Ok(due);
    }
    let ids: Vec<i64> = due.iter().map(|delivery| delivery.id).collect();
    // tenancy: across workspaces by design (the delivery worker; guarded by id and claim)
    let mut claimed: Vec<DeliveryRow> = diesel::update(
        webhook_deliveries::table
            .filter(webhook_deliveries::id.eq_any(&ids))
            .filter(webhook_deliveries::status.eq("pending"))
            .filter(webhook_deliveries::next_attempt.le(at))
            .filter(no_older_pending())
            .filter(
                webhook_deliveries::claimed_until
                    .is_null()
                    .or(webhook_deliveries::claimed_until.lt(at)),
            ),
    )
    .set(webhook_deliveries::claimed_until.eq(until))
    // The rows as claimed (on PostgreSQL the update may have met a newer version of a row
    // than the one read above).
    .returning(webhook_deliveries::all_columns)
    .get_results(conn)?;
    claimed.sort_by_key(|delivery| delivery.id);
    Ok(claimed)
}

/// Records an attempt's outcome and releases the claim, if the claim is still the one that
/// ends at `claimed_until`; false when another worker took it over.
pub fn record_attempt(
    conn: &mut DbConnection,
    scope: &Scope,
    delivery: &DeliveryRow,
    claimed_until: NaiveDateTime,
) -> Result<bool, ApiError> {
    let recorded = db::update(
        webhook_deliveries::table,
        deliveries_in_scope(scope)
            .and(webhook_deliveries::id.eq(delivery.id))
            .and(webhook_deliveries::claimed_until.eq(claimed_until)),
        (
            webhook_deliveries::status.eq(&delivery.status),
            webhook_deliveries::attempts.eq(delivery.attempts),
            webhook_deliveries::next_attempt.eq(delivery.next_attempt),
            webhook_deliveries::claimed_until.eq(None::<NaiveDateTime>),
            webhook_deliveries::last_status.eq(delivery.last_status),
            webhook_deliveries::last_error.eq(&delivery.last_error),
            webhook_deliveries::last_attempt.eq(delivery.last_attempt),
        ),
    )
    .execute(conn)?;
    Ok(recorded == 1)
}

/// Records a 2xx (`status`) for each of `ids` that is still under the claim that ends at
/// `claimed_until`, in one statement, and releases the claim; returns the ids recorded (the
/// others were taken over by another worker).
pub fn record_delivered(
    conn: &mut DbConnection,
    scope: &Scope,
    ids: &[i64],
    status: i32,
    claimed_until: NaiveDateTime,
    at: NaiveDateTime,
) -> Result<Vec<i64>, ApiError> {
    Ok(diesel::update(
        webhook_deliveries::table
            .filter(deliveries_in_scope(scope))
            .filter(webhook_deliveries::id.eq_any(ids))
            .filter(webhook_deliveries::claimed_until.eq(claimed_until)),
    )
    .set((
        webhook_deliveries::status.eq("succeeded"),
        // The claim guards the row: no other worker recorded an attempt since it was read.
        webhook_deliveries::attempts.eq(webhook_deliveries::attempts + 1),
        webhook_deliveries::claimed_until.eq(None::<NaiveDateTime>),
        webhook_deliveries::last_status.eq(status),
        webhook_deliveries::last_error.eq(None::<String>),
        webhook_deliveries::last_attempt.eq(at),
    ))
    .returning(webhook_deliveries::id)
    .get_results(conn)?)
}

/// Gives back a claim whose delivery was not sent (its worker stopped first): due again at
/// once. Only the claim that ends at `claimed_until`: one taken over since is left alone.
pub fn release_claim(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    claimed_until: NaiveDateTime,
) -> Result<(), ApiError> {
    diesel::update(
        webhook_deliveries::table
            .filter(deliveries_in_scope(scope))
            .filter(webhook_deliveries::id.eq(id))
            .filter(webhook_deliveries::claimed_until.eq(claimed_until)),
    )
    .set(webhook_deliveries::claimed_until.eq(None::<NaiveDateTime>))
    .execute(conn)?;
    Ok(())
}

/// For `/metrics`, across every workspace (tenancy: counts only, nothing of any tenant's
/// shown): deliveries pending, pending after a failed attempt, and given up.
// tenancy: across workspaces by design (counts only, for /metrics).
pub fn delivery_counts(conn: &mut DbConnection) -> Result<(i64, i64, i64), ApiError> {
    let pending = webhook_deliveries::table.filter(webhook_deliveries::status.eq("pending"));
    let failing = pending
        .filter(webhook_deliveries::attempts.gt(0))
        .count()
        .get_result(conn)?;
    let given_up = webhook_deliveries::table
        .filter(webhook_deliveries::status.eq("failed"))
        .count()
        .get_result(conn)?;
    Ok((pending.count().get_result(conn)?, failing, given_up))
}

/// For `/metrics`, across every workspace: webhooks disabled, by hand or after failures.
// tenancy: across workspaces by design (counts only, for /metrics).
pub fn disabled_count(conn: &mut DbConnection) -> Result<i64, ApiError> {
    Ok(webhooks::table
        .filter(webhooks::enabled.eq(false))
        .count()
        .get_result(conn)?)
}
