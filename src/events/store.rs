//! Event storage; scoped like every tenant table (see `in_scope`).

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use super::EventView;
use crate::db::schema::events;
use crate::db::{now, DbConnection, MultiBackend, Scope};
use crate::error::ApiError;
use crate::payments::domain::timestamp;

type InScope = diesel::dsl::And<
    diesel::dsl::Eq<events::workspace_id, String>,
    diesel::dsl::Eq<events::test_mode, bool>,
>;

fn in_scope(scope: &Scope) -> InScope {
    events::workspace_id
        .eq(scope.workspace_id().to_string())
        .and(events::test_mode.eq(scope.test_mode()))
}

fn scoped(scope: &Scope) -> events::BoxedQuery<'static, MultiBackend> {
    events::table.filter(in_scope(scope)).into_boxed()
}

/// Appends an event and the webhook deliveries it owes; call it inside the transaction of
/// the change it records, so that the change, its event and its deliveries commit together.
pub fn record(
    conn: &mut DbConnection,
    scope: &Scope,
    event_type: &str,
    object_type: &str,
    object_id: &str,
    data: &impl Serialize,
) -> Result<(), ApiError> {
    let id = insert(conn, scope, event_type, object_type, object_id, data)?;
    crate::webhooks::store::enqueue(conn, scope, id, event_type, object_id, now())
}

/// Appends an event alone (no deliveries); returns its id.
pub fn insert(
    conn: &mut DbConnection,
    scope: &Scope,
    event_type: &str,
    object_type: &str,
    object_id: &str,
    data: &impl Serialize,
) -> Result<i64, ApiError> {
    let data = serde_json::to_string(data).map_err(ApiError::internal)?;
    let origin = scope.origin();
    let actor = serde_json::to_string(&origin.actor).map_err(ApiError::internal)?;
    let created = now();
    let insert = diesel::insert_into(events::table)
        .values((
            events::workspace_id.eq(scope.workspace_id()),
            events::test_mode.eq(scope.test_mode()),
            events::event_type.eq(event_type),
            events::object_type.eq(object_type),
            events::object_id.eq(object_id),
            events::data.eq(&data),
            events::created.eq(created),
            events::actor_type.eq(origin.actor.kind().as_str()),
            events::actor.eq(&actor),
            events::request_id.eq(&origin.request_id),
        ))
        .returning(events::id);
    Ok(crate::on_backend!(conn, |c| insert.get_result(c))?)
}

#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub event_type: Option<String>,
    pub object_id: Option<String>,
    /// `payment` or `source`: ids of different kinds of object may be equal.
    pub object_type: Option<String>,
    pub actor_type: Option<crate::audit::ActorType>,
    pub request_id: Option<String>,
    /// The kinds of object the caller may read (`Auth::readable_objects`): events about any
    /// other kind are not shown.
    pub readable: Vec<&'static str>,
}

#[derive(Queryable)]
struct EventRow {
    id: i64,
    _workspace_id: String,
    test_mode: bool,
    event_type: String,
    _object_type: String,
    object_id: String,
    data: String,
    created: NaiveDateTime,
    _actor_type: String,
    actor: String,
    request_id: String,
}

fn filtered<'a>(scope: &Scope, filter: &'a EventFilter) -> events::BoxedQuery<'a, MultiBackend> {
    let mut query = scoped(scope).filter(events::object_type.eq_any(filter.readable.clone()));
    if let Some(event_type) = &filter.event_type {
        query = query.filter(events::event_type.eq(event_type));
    }
    if let Some(object_type) = &filter.object_type {
        query = query.filter(events::object_type.eq(object_type));
    }
    if let Some(object_id) = &filter.object_id {
        query = query.filter(events::object_id.eq(object_id));
    }
    if let Some(actor_type) = filter.actor_type {
        query = query.filter(events::actor_type.eq(actor_type.as_str()));
    }
    if let Some(request_id) = &filter.request_id {
        query = query.filter(events::request_id.eq(request_id));
    }
    query
}

impl EventRow {
    fn view(self) -> EventView {
        EventView {
            id: self.id,
            event_type: self.event_type,
            object_id: self.object_id,
            data: serde_json::from_str(&self.data).unwrap_or(serde_json::Value::Null),
            created: timestamp(self.created),
            test_mode: self.test_mode,
            actor: serde_json::from_str(&self.actor).unwrap_or(serde_json::Value::Null),
            request_id: self.request_id,
        }
    }
}

pub fn count(
    conn: &mut DbConnection,
    scope: &Scope,
    filter: &EventFilter,
) -> Result<i64, ApiError> {
    Ok(filtered(scope, filter).count().get_result(conn)?)
}

/// Newest first.
pub fn list(
    conn: &mut DbConnection,
    scope: &Scope,
    filter: &EventFilter,
    offset: i64,
    limit: i64,
) -> Result<Vec<EventView>, ApiError> {
    let rows: Vec<EventRow> = filtered(scope, filter)
        .order_by(events::id.desc())
        .offset(offset)
        .limit(limit)
        .load(conn)?;
    Ok(rows.into_iter().map(EventRow::view).collect())
}

/// An event by id, whatever its object (see [`find_readable`] for a caller's).
pub fn find(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
) -> Result<Option<EventView>, ApiError> {
    let row: Option<EventRow> = scoped(scope)
        .filter(events::id.eq(id))
        .first(conn)
        .optional()?;
    Ok(row.map(EventRow::view))
}

/// An event by id, if it is about a kind of object in `readable`.
pub fn find_readable(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    readable: &[&'static str],
) -> Result<Option<EventView>, ApiError> {
    let row: Option<EventRow> = scoped(scope)
        .filter(events::id.eq(id))
        .filter(events::object_type.eq_any(readable.to_vec()))
        .first(conn)
        .optional()?;
    Ok(row.map(EventRow::view))
}
