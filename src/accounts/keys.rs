//! Workspace keys: full secret keys (`sk_test_…`, `sk_live_…`) and restricted keys
//! (`rk_test_…`) that may do only what their permissions list (Stripe's habit). A key is
//! shown once, when made; it is stored as a SHA-256 digest (it is long and random, so there
//! is nothing to brute-force), with its first characters and last four to recognise it by
//! (`sk_test_…abcd`). Revoking a key keeps it listed, and it stops working at once on every
//! server (it bumps the credential epoch: see `cache`).
//!
//! Making and revoking a key are events (`key.created`, `key.revoked`) in the key's mode, so
//! the audit trail says who did it. They are not delivered to webhooks.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

use super::roles::Permission;
use crate::db::schema::secret_keys;
use crate::db::{now, DbConnection, Scope};
use crate::error::{ApiError, FieldErrors};
use crate::events::store as events;
use crate::payments::domain::timestamp;

pub fn looks_like_key(credential: &str) -> bool {
    credential.starts_with("sk_") || credential.starts_with("rk_")
}

/// A key that authenticated a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPrincipal {
    pub id: i64,
    pub workspace_id: String,
    pub test_mode: bool,
    /// `sk_test_…abcd`: what logs and events show.
    pub masked: String,
    /// None for a full secret key.
    pub permissions: Option<Vec<Permission>>,
}

/// `sk_test_…abcd`, from the stored prefix (`sk_test_XXXX`) and last four characters; keys
/// made before the last four were kept show their prefix alone (`sk_test_XXXX…`).
fn masked(prefix: &str, last4: &str) -> String {
    if last4.is_empty() {
        return format!("{prefix}…");
    }
    let kind = prefix.rsplit_once('_').map_or(prefix, |(kind, _)| kind);
    format!("{kind}_…{last4}")
}

fn permissions_text(permissions: &[Permission]) -> String {
    permissions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_stored(text: &str) -> Vec<Permission> {
    // Written by `create` from parsed permissions; one that no longer parses grants nothing.
    text.split(',').filter_map(|p| p.parse().ok()).collect()
}

#[derive(Queryable)]
struct KeyRow {
    id: i64,
    workspace_id: String,
    test_mode: bool,
    _digest: String,
    prefix: String,
    created: NaiveDateTime,
    permissions: Option<String>,
    name: String,
    last4: String,
    last_used: Option<NaiveDateTime>,
    revoked: Option<NaiveDateTime>,
}

/// A key as the API and the CLI show it: never its secret, except once in `secret` when it
/// is made.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub id: i64,
    /// `secret` (`sk_…`) or `restricted` (`rk_…`).
    #[schema(example = "restricted")]
    pub kind: &'static str,
    /// The key's first characters and last four: `rk_test_…abcd`.
    #[schema(example = "rk_test_…abcd")]
    pub prefix: String,
    pub name: String,
    pub test_mode: bool,
    /// For a restricted key, what it may do (`payments:write`, `events:read`); null for a
    /// full secret key.
    pub permissions: Option<Vec<String>>,
    #[schema(value_type = String, format = DateTime)]
    pub created: String,
    /// When the key last authenticated a request (to the minute).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked: Option<String>,
    /// The key itself: only in the answer that made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl KeyRow {
    fn view(self) -> KeyView {
        KeyView {
            id: self.id,
            kind: if self.permissions.is_some() {
                "restricted"
            } else {
                "secret"
            },
            prefix: masked(&self.prefix, &self.last4),
            name: self.name,
            test_mode: self.test_mode,
            permissions: self
                .permissions
                .as_deref()
                .map(|p| parse_stored(p).iter().map(ToString::to_string).collect()),
            created: timestamp(self.created),
            last_used: self.last_used.map(timestamp),
            revoked: self.revoked.map(timestamp),
            secret: None,
        }
    }
}

/// The key with this digest, unless it was revoked.
pub fn authenticate(conn: &mut DbConnection, digest: &str) -> QueryResult<Option<KeyPrincipal>> {
    let row: Option<KeyRow> = secret_keys::table
        .filter(secret_keys::digest.eq(digest))
        .filter(secret_keys::revoked.is_null())
        .first(conn)
        .optional()?;
    Ok(row.map(|row| KeyPrincipal {
        id: row.id,
        masked: masked(&row.prefix, &row.last4),
        permissions: row.permissions.as_deref().map(parse_stored),
        workspace_id: row.workspace_id,
        test_mode: row.test_mode,
    }))
}

/// True at most once a minute per key in this process: when its `last_used` is worth
/// writing.
/// Keyed by id and masked prefix: one process may serve several databases (the tests do).
pub fn due_for_touch(key: &KeyPrincipal) -> bool {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    use std::time::{Duration, Instant};
    static TOUCHED: OnceLock<Mutex<HashMap<(i64, String), Instant>>> = OnceLock::new();
    let Ok(mut touched) = TOUCHED.get_or_init(Mutex::default).lock() else {
        return false;
    };
    if touched.len() > 10_000 {
        touched.clear();
    }
    let id = (key.id, key.masked.clone());
    let due = touched
        .get(&id)
        .is_none_or(|at| at.elapsed() > Duration::from_secs(60));
    if due {
        touched.insert(id, Instant::now());
    }
    due
}

/// Records that a key was used now.
pub fn touch(conn: &mut DbConnection, id: i64) -> QueryResult<()> {
    diesel::update(secret_keys::table.find(id))
        .set(secret_keys::last_used.eq(Some(now())))
        .execute(conn)
        .map(|_| ())
}

/// What a new key may do, and what it is called.
#[derive(Clone, Debug, Default)]
pub struct NewKey {
    /// None: a full secret key.
    pub permissions: Option<Vec<Permission>>,
    pub name: String,
}

/// Makes a key for the scope's workspace (which must exist) and mode, and its
/// `key.created` event.
pub fn create(conn: &mut DbConnection, scope: &Scope, new: &NewKey) -> Result<KeyView, ApiError> {
    let kind = if new.permissions.is_some() {
        "rk"
    } else {
        "sk"
    };
    let mode = if scope.test_mode() { "test" } else { "live" };
    let secret = format!("{kind}_{mode}_{}", super::random(32));
    let name = new.name.trim();
    if name.chars().count() > 100 {
        return Err(ApiError::Validation(FieldErrors::one(
            "name",
            "Ensure this field has no more than 100 characters.",
        )));
    }
    let row: KeyRow = diesel::insert_into(secret_keys::table)
        .values((
            secret_keys::workspace_id.eq(scope.workspace_id()),
            secret_keys::test_mode.eq(scope.test_mode()),
            secret_keys::digest.eq(super::digest(&secret)),
            secret_keys::prefix.eq(&secret[..12]),
            secret_keys::created.eq(now()),
            secret_keys::permissions.eq(new.permissions.as_deref().map(permissions_text)),
            secret_keys::name.eq(name),
            secret_keys::last4.eq(&secret[secret.len() - 4..]),
        ))
        .get_result(conn)?;
    let mut view = row.view();
    events::insert(
        conn,
        scope,
        "key.created",
        "key",
        &view.id.to_string(),
        &view,
    )?;
    view.secret = Some(secret);
    Ok(view)
}

/// The keys of a scope's workspace and mode, revoked ones included, newest first.
pub fn list(conn: &mut DbConnection, scope: &Scope) -> Result<Vec<KeyView>, ApiError> {
    let rows: Vec<KeyRow> = secret_keys::table
        .filter(secret_keys::workspace_id.eq(scope.workspace_id()))
        .filter(secret_keys::test_mode.eq(scope.test_mode()))
        .order_by(secret_keys::id.desc())
        .load(conn)?;
    Ok(rows.into_iter().map(KeyRow::view).collect())
}

/// Revokes a key of the scope's workspace and mode (404 otherwise), with its `key.revoked`
/// event; revoking a revoked key changes nothing.
pub fn revoke(conn: &mut DbConnection, scope: &Scope, id: i64) -> Result<KeyView, ApiError> {
    let in_scope = secret_keys::table
        .filter(secret_keys::workspace_id.eq(scope.workspace_id()))
        .filter(secret_keys::test_mode.eq(scope.test_mode()))
        .filter(secret_keys::id.eq(id));
    let row: KeyRow = in_scope.first(conn).optional()?.ok_or(ApiError::NotFound)?;
    if row.revoked.is_some() {
        return Ok(row.view());
    }
    // Guarded by `revoked IS NULL`: of two revocations at once, one revokes.
    let Some(row) = diesel::update(in_scope.filter(secret_keys::revoked.is_null()))
        .set(secret_keys::revoked.eq(Some(now())))
        .get_result::<KeyRow>(conn)
        .optional()?
    else {
        return in_scope
            .first::<KeyRow>(conn)
            .map(KeyRow::view)
            .map_err(Into::into);
    };
    super::cache::bump(conn)?;
    let view = row.view();
    events::insert(conn, scope, "key.revoked", "key", &id.to_string(), &view)?;
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_shown_by_their_kind_and_last_four() {
        assert_eq!(masked("sk_test_AbCd", "wxyz"), "sk_test_…wxyz");
        assert_eq!(masked("rk_live_AbCd", "1234"), "rk_live_…1234");
        assert_eq!(masked("sk_test_AbCd", ""), "sk_test_AbCd…");
    }
}
