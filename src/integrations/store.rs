//! Integration storage; scoped like every tenant table (see `in_scope`).

use std::sync::Arc;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::Value;

use super::domain::Integration;
use crate::audit::{Actor, Origin};
use crate::db::schema::{integrations, provider_events};
use crate::db::{DbConnection, MultiBackend, Scope};
use crate::error::ApiError;
use crate::secrets::Sealed;

type InScope = diesel::dsl::And<
    diesel::dsl::Eq<integrations::workspace_id, String>,
    diesel::dsl::Eq<integrations::test_mode, bool>,
>;

fn in_scope(scope: &Scope) -> InScope {
    integrations::workspace_id
        .eq(scope.workspace_id().to_string())
        .and(integrations::test_mode.eq(scope.test_mode()))
}

fn scoped(scope: &Scope) -> integrations::BoxedQuery<'static, MultiBackend> {
    integrations::table.filter(in_scope(scope)).into_boxed()
}

#[derive(Queryable)]
struct IntegrationRow {
    id: String,
    _workspace_id: String,
    test_mode: bool,
    gateway: String,
    name: String,
    enabled: bool,
    credentials: String,
    credentials_key: String,
    credentials_shown: String,
    version: i64,
    created: NaiveDateTime,
    updated: NaiveDateTime,
}

impl IntegrationRow {
    fn into_integration(self) -> Result<Integration, ApiError> {
        let shown = serde_json::from_str(&self.credentials_shown).map_err(|_| {
            ApiError::internal(format!("integration {} has invalid credentials", self.id))
        })?;
        Ok(Integration {
            id: self.id,
            test_mode: self.test_mode,
            gateway: self.gateway,
            name: self.name,
            enabled: self.enabled,
            credentials: Sealed {
                key_id: self.credentials_key,
                text: self.credentials,
            },
            shown,
            version: self.version,
            created: self.created,
            updated: self.updated,
        })
    }
}

pub fn find(
    conn: &mut DbConnection,
    scope: &Scope,
    id: &str,
) -> Result<Option<Integration>, ApiError> {
    let row = scoped(scope)
        .filter(integrations::id.eq(id.to_string()))
        .get_result::<IntegrationRow>(conn)
        .optional()?;
    row.map(IntegrationRow::into_integration).transpose()
}

/// The enabled integrations of a gateway in this workspace and mode, oldest first.
pub fn enabled_of(
    conn: &mut DbConnection,
    scope: &Scope,
    gateway: &str,
) -> Result<Vec<Integration>, ApiError> {
    let rows = scoped(scope)
        .filter(integrations::gateway.eq(gateway.to_string()))
        .filter(integrations::enabled.eq(true))
        .order_by(integrations::created.asc())
        .load::<IntegrationRow>(conn)?;
    rows.into_iter()
        .map(IntegrationRow::into_integration)
        .collect()
}

pub fn insert(
    conn: &mut DbConnection,
    scope: &Scope,
    i: &Integration,
) -> Result<Integration, ApiError> {
    let row: IntegrationRow = diesel::insert_into(integrations::table)
        .values((
            integrations::id.eq(&i.id),
            integrations::workspace_id.eq(scope.workspace_id()),
            integrations::test_mode.eq(scope.test_mode()),
            integrations::gateway.eq(&i.gateway),
            integrations::name.eq(&i.name),
            integrations::enabled.eq(i.enabled),
            integrations::credentials.eq(&i.credentials.text),
            integrations::credentials_key.eq(&i.credentials.key_id),
            integrations::credentials_shown.eq(Value::Object(i.shown.clone()).to_string()),
            integrations::version.eq(i.version),
            integrations::created.eq(i.created),
            integrations::updated.eq(i.updated),
        ))
        .get_result(conn)?;
    row.into_integration()
}

/// Saves a changed integration if nobody changed it since it was `read`.
pub fn save(
    conn: &mut DbConnection,
    scope: &Scope,
    read: &Integration,
    i: &Integration,
) -> Result<bool, ApiError> {
    let updated = diesel::update(integrations::table)
        .filter(in_scope(scope))
        .filter(integrations::id.eq(&i.id))
        .filter(integrations::version.eq(read.version))
        .set((
            integrations::name.eq(&i.name),
            integrations::enabled.eq(i.enabled),
            integrations::credentials.eq(&i.credentials.text),
            integrations::credentials_key.eq(&i.credentials.key_id),
            integrations::credentials_shown.eq(Value::Object(i.shown.clone()).to_string()),
            integrations::version.eq(read.version + 1),
            integrations::updated.eq(i.updated),
        ))
        .execute(conn)?;
    Ok(updated == 1)
}

pub fn delete(
    conn: &mut DbConnection,
    scope: &Scope,
    read: &Integration,
) -> Result<bool, ApiError> {
    let deleted = diesel::delete(integrations::table)
        .filter(in_scope(scope))
        .filter(integrations::id.eq(&read.id))
        .filter(integrations::version.eq(read.version))
        .execute(conn)?;
    Ok(deleted == 1)
}

pub fn count(conn: &mut DbConnection, scope: &Scope) -> Result<i64, ApiError> {
    Ok(scoped(scope).count().get_result(conn)?)
}

/// Oldest first: the order they were connected in.
pub fn list(
    conn: &mut DbConnection,
    scope: &Scope,
    offset: i64,
    limit: i64,
) -> Result<Vec<Integration>, ApiError> {
    let rows = scoped(scope)
        .order_by(integrations::created.asc())
        .then_order_by(integrations::id.asc())
        .offset(offset)
        .limit(limit)
        .load::<IntegrationRow>(conn)?;
    rows.into_iter()
        .map(IntegrationRow::into_integration)
        .collect()
}

/// Every integration's id, scope and sealed credentials, across workspaces: what `cobro
/// secrets rotate` seals again.
pub fn all_sealed(conn: &mut DbConnection) -> Result<Vec<(String, Sealed)>, ApiError> {
    // tenancy: across workspaces by design; an operator's command over every row, which
    // changes only how each row's own credentials are sealed.
    let rows: Vec<(String, String, String)> = integrations::table
        .select((
            integrations::id,
            integrations::credentials_key,
            integrations::credentials,
        ))
        .order_by(integrations::id.asc())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, key_id, text)| (id, Sealed { key_id, text }))
        .collect())
}

/// Seals one integration's credentials anew (by id, across workspaces: `all_sealed`).
pub fn reseal(
    conn: &mut DbConnection,
    id: &str,
    read: &Sealed,
    sealed: &Sealed,
) -> Result<bool, ApiError> {
    // tenancy: across workspaces by design; the row is the one `all_sealed` read.
    let updated = diesel::update(integrations::table)
        .filter(integrations::id.eq(id.to_string()))
        .filter(integrations::credentials.eq(&read.text))
        .set((
            integrations::credentials.eq(&sealed.text),
            integrations::credentials_key.eq(&sealed.key_id),
        ))
        .execute(conn)?;
    Ok(updated == 1)
}

/// An integration by its id alone, with the scope it belongs to: for its public webhook,
/// where the provider's signature (checked next) is the credential.
pub fn find_for_webhook(
    conn: &mut DbConnection,
    id: &str,
    request_id: String,
) -> Result<Option<(Scope, Integration)>, ApiError> {
    // tenancy: across workspaces by design; the row found brings its own scope, and the
    // request proves it may act on it by the signature of the integration's own secret.
    let row: Option<(String, IntegrationRow)> = integrations::table
        .filter(integrations::id.eq(id.to_string()))
        .select((integrations::workspace_id, integrations::all_columns))
        .get_result(conn)
        .optional()?;
    row.map(|(workspace, row)| {
        let actor = Actor::Provider {
            integration: id.to_string(),
        };
        let scope = Scope::new(
            workspace,
            row.test_mode,
            &Arc::new(Origin::new(actor, request_id)),
        );
        row.into_integration().map(|i| (scope, i))
    })
    .transpose()
}

/// Records that an integration received a provider's event; false when it had already.
pub fn record_event(
    conn: &mut DbConnection,
    scope: &Scope,
    integration: &str,
    event_id: &str,
    event_type: &str,
) -> Result<bool, ApiError> {
    let inserted = diesel::insert_into(provider_events::table)
        .values((
            provider_events::integration_id.eq(integration),
            provider_events::event_id.eq(event_id),
            provider_events::workspace_id.eq(scope.workspace_id()),
            provider_events::test_mode.eq(scope.test_mode()),
            provider_events::event_type.eq(event_type),
            provider_events::received.eq(crate::db::now()),
        ))
        .execute(conn);
    match inserted {
        Ok(_) => Ok(true),
        Err(err) if crate::db::is_unique_violation(&err) => Ok(false),
        Err(err) => Err(err.into()),
    }
}
