//! Storage of idempotency keys. Every statement is scoped, except the purge (by age).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::idempotency_keys;
use crate::db::{is_unique_violation, DbConnection, Scope};
use crate::error::ApiError;

type InScope = diesel::dsl::And<
    diesel::dsl::Eq<idempotency_keys::workspace_id, String>,
    diesel::dsl::Eq<idempotency_keys::test_mode, bool>,
>;

/// The tenant filter: this workspace, this mode.
fn in_scope(scope: &Scope) -> InScope {
    idempotency_keys::workspace_id
        .eq(scope.workspace_id().to_string())
        .and(idempotency_keys::test_mode.eq(scope.test_mode()))
}

type KeyInScope = diesel::dsl::And<
    diesel::dsl::And<InScope, diesel::dsl::Eq<idempotency_keys::credential, String>>,
    diesel::dsl::Eq<idempotency_keys::idempotency_key, String>,
>;

/// One key of one credential, in the tenant filter.
fn key_in_scope(scope: &Scope, credential: &str, key: &str) -> KeyInScope {
    in_scope(scope)
        .and(idempotency_keys::credential.eq(credential.to_string()))
        .and(idempotency_keys::idempotency_key.eq(key.to_string()))
}

/// One key's row: who sent it, what it was for, and the answer once there is one.
#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = idempotency_keys)]
pub struct KeyRow {
    pub credential: String,
    pub idempotency_key: String,
    pub request_path: String,
    pub fingerprint: String,
    pub lock_token: Option<String>,
    pub locked_at: Option<NaiveDateTime>,
    pub response_status: Option<i32>,
    pub response_body: Option<String>,
    pub created: NaiveDateTime,
    /// When a staged request's work began (it may have asked a provider), and what it made
    /// (a path), if the request's path does not say.
    pub started_at: Option<NaiveDateTime>,
    pub started_object: Option<String>,
}

pub fn find(
    conn: &mut DbConnection,
    scope: &Scope,
    credential: &str,
    key: &str,
) -> Result<Option<KeyRow>, ApiError> {
    Ok(idempotency_keys::table
        .filter(key_in_scope(scope, credential, key))
        .select(KeyRow::as_select())
        .first(conn)
        .optional()?)
}

/// Inserts a claimed key. Another request inserting the same key at the same moment makes
/// this a `Contention`, so that the transaction runs again and finds that request's row.
pub fn insert(conn: &mut DbConnection, scope: &Scope, row: &KeyRow) -> Result<(), ApiError> {
    diesel::insert_into(idempotency_keys::table)
        .values((
            idempotency_keys::workspace_id.eq(scope.workspace_id()),
            idempotency_keys::test_mode.eq(scope.test_mode()),
            idempotency_keys::credential.eq(&row.credential),
            idempotency_keys::idempotency_key.eq(&row.idempotency_key),
            idempotency_keys::request_path.eq(&row.request_path),
            idempotency_keys::fingerprint.eq(&row.fingerprint),
            idempotency_keys::lock_token.eq(&row.lock_token),
            idempotency_keys::locked_at.eq(row.locked_at),
            idempotency_keys::created.eq(row.created),
        ))
        .execute(conn)
        .map_err(|e| {
            if is_unique_violation(&e) {
                ApiError::Contention
            } else {
                e.into()
            }
        })?;
    Ok(())
}

/// Deletes a key's row if its lock is still `lock_token` (`None`: whatever it holds).
pub fn delete(
    conn: &mut DbConnection,
    scope: &Scope,
    credential: &str,
    key: &str,
    lock_token: Option<&str>,
) -> Result<bool, ApiError> {
    let mine = idempotency_keys::table.filter(key_in_scope(scope, credential, key));
    let deleted = match lock_token {
        Some(token) => {
            diesel::delete(mine.filter(idempotency_keys::lock_token.eq(token))).execute(conn)?
        }
        None => diesel::delete(mine).execute(conn)?,
    };
    Ok(deleted > 0)
}

/// Moves the lock from `from` to `to` (a stale claim taken over); false if it moved already.
pub fn relock(
    conn: &mut DbConnection,
    scope: &Scope,
    credential: &str,
    key: &str,
    from: &str,
    to: &str,
    at: NaiveDateTime,
) -> Result<bool, ApiError> {
    let updated = diesel::update(
        idempotency_keys::table
            .filter(key_in_scope(scope, credential, key))
            .filter(idempotency_keys::lock_token.eq(from)),
    )
    .set((
        idempotency_keys::lock_token.eq(to),
        idempotency_keys::locked_at.eq(at),
    ))
    .execute(conn)?;
    Ok(updated > 0)
}

/// Marks that the key's work began (in the work's first transaction) and what it made, if
/// the lock is still `lock_token`; false when another request took the claim over.
#[allow(clippy::too_many_arguments)]
pub fn mark_started(
    conn: &mut DbConnection,
    scope: &Scope,
    credential: &str,
    key: &str,
    lock_token: &str,
    at: NaiveDateTime,
    made: Option<&str>,
) -> Result<bool, ApiError> {
    let updated = diesel::update(
        idempotency_keys::table
            .filter(key_in_scope(scope, credential, key))
            .filter(idempotency_keys::lock_token.eq(lock_token)),
    )
    .set((
        idempotency_keys::started_at.eq(Some(at)),
        idempotency_keys::started_object.eq(made),
    ))
    .execute(conn)?;
    Ok(updated > 0)
}

/// Stores the answer and releases the lock, if the lock is still `lock_token`.
pub fn complete(
    conn: &mut DbConnection,
    scope: &Scope,
    credential: &str,
    key: &str,
    lock_token: &str,
    status: u16,
    body: &str,
) -> Result<bool, ApiError> {
    let updated = diesel::update(
        idempotency_keys::table
            .filter(key_in_scope(scope, credential, key))
            .filter(idempotency_keys::lock_token.eq(lock_token)),
    )
    .set((
        idempotency_keys::lock_token.eq(None::<String>),
        idempotency_keys::locked_at.eq(None::<NaiveDateTime>),
        idempotency_keys::response_status.eq(i32::from(status)),
        idempotency_keys::response_body.eq(body),
    ))
    .execute(conn)?;
    Ok(updated > 0)
}

/// Deletes every key created before `before`, in every workspace; returns how many.
pub fn purge(conn: &mut DbConnection, before: NaiveDateTime) -> Result<usize, ApiError> {
    // tenancy: across workspaces by design (expiry by age, a server's housekeeping)
    Ok(
        diesel::delete(idempotency_keys::table.filter(idempotency_keys::created.lt(before)))
            .execute(conn)?,
    )
}
