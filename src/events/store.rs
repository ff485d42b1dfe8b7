//! Event storage; scoped like every tenant table (see `in_scope`).

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use super::EventView;
use crate::db::schema::events;
use crate::db::time::Stamp;
use crate::db::{now, DbConnection, MultiBackend, Scope};
use crate::error::ApiError;
use crate::payments::domain::timestamp;
use crate::webhooks::store as webhooks;

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
    let event = NewEvent::new(scope, event_type, object_type, object_id, data)?;
    let (id, subscribers) = match conn {
        // One round trip instead of two: the insert and the webhook lookup in one statement.
        DbConnection::Pg(pg) => insert_finding_webhooks(pg, &event)?,
        DbConnection::Sqlite(_) => (event.insert(conn)?, webhooks::subscribers(conn, scope)?),
    };
    webhooks::owe(
        conn,
        scope,
        &subscribers,
        id,
        event_type,
        object_id,
        event.created,
    )
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
    NewEvent::new(scope, event_type, object_type, object_id, data)?.insert(conn)
}

/// An event's row, before its insert.
struct NewEvent<'a> {
    workspace_id: &'a str,
    test_mode: bool,
    request_id: &'a str,
    event_type: &'a str,
    object_type: &'a str,
    object_id: &'a str,
    data: String,
    created: NaiveDateTime,
    actor_type: &'static str,
    actor: String,
}

impl<'a> NewEvent<'a> {
    fn new(
        scope: &'a Scope,
        event_type: &'a str,
        object_type: &'a str,
        object_id: &'a str,
        data: &impl Serialize,
    ) -> Result<Self, ApiError> {
        let actor = &scope.origin().actor;
        Ok(NewEvent {
            workspace_id: scope.workspace_id(),
            test_mode: scope.test_mode(),
            request_id: &scope.origin().request_id,
            event_type,
            object_type,
            object_id,
            data: serde_json::to_string(data).map_err(ApiError::internal)?,
            created: now(),
            actor_type: actor.kind().as_str(),
            actor: serde_json::to_string(actor).map_err(ApiError::internal)?,
        })
    }

    fn insert(&self, conn: &mut DbConnection) -> Result<i64, ApiError> {
        let insert = diesel::insert_into(events::table)
            .values((
                events::workspace_id.eq(self.workspace_id),
                events::test_mode.eq(self.test_mode),
                events::event_type.eq(self.event_type),
                events::object_type.eq(self.object_type),
                events::object_id.eq(self.object_id),
                events::data.eq(&self.data),
                events::created.eq(Stamp::from(self.created)),
                events::actor_type.eq(self.actor_type),
                events::actor.eq(&self.actor),
                events::request_id.eq(self.request_id),
            ))
            .returning(events::id);
        Ok(crate::on_backend!(conn, |c| insert.get_result(c))?)
    }
}

/// [`NewEvent::insert`] and `webhooks::store::subscribers` in one PostgreSQL statement:
/// the event's id and the webhooks it may be owed to (`(id, events)`).
fn insert_finding_webhooks(
    conn: &mut diesel::PgConnection,
    event: &NewEvent,
) -> Result<(i64, Vec<(i64, String)>), ApiError> {
    let found: Vec<(i64, Option<i64>, Option<String>)> = InsertFindingWebhooks(event).load(conn)?;
    let id = found
        .first()
        .map(|row| row.0)
        .ok_or_else(|| ApiError::internal("an event's insert returned no row"))?;
    let webhooks = found
        .into_iter()
        .filter_map(|(_, id, events)| Some((id?, events?)))
        .collect();
    Ok((id, webhooks))
}

/// The statement of [`insert_finding_webhooks`]. diesel has no CTEs, and its `sql_query` is
/// prepared anew each time; this is prepared once per connection (its SQL is its cache key).
struct InsertFindingWebhooks<'a>(&'a NewEvent<'a>);

impl diesel::query_builder::QueryId for InsertFindingWebhooks<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for InsertFindingWebhooks<'_> {
    type SqlType = (
        diesel::sql_types::BigInt,
        diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
        diesel::sql_types::Nullable<diesel::sql_types::Text>,
    );
}

impl RunQueryDsl<diesel::PgConnection> for InsertFindingWebhooks<'_> {}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for InsertFindingWebhooks<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Bool, Text, Timestamp};
        let event = self.0;
        out.push_sql(
            "WITH event AS (INSERT INTO events (workspace_id, test_mode, event_type, \
             object_type, object_id, data, created, actor_type, actor, request_id) VALUES (",
        );
        out.push_bind_param::<Text, _>(event.workspace_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Bool, _>(&event.test_mode)?;
        for text in [
            event.event_type,
            event.object_type,
            event.object_id,
            &event.data,
        ] {
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(text)?;
        }
        out.push_sql(", ");
        out.push_bind_param::<Timestamp, _>(&event.created)?;
        for text in [event.actor_type, &event.actor, event.request_id] {
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(text)?;
        }
        out.push_sql(
            ") RETURNING id, workspace_id, test_mode) \
             SELECT event.id, webhooks.id, webhooks.events FROM event LEFT JOIN webhooks \
             ON webhooks.workspace_id = event.workspace_id AND webhooks.test_mode = event.test_mode \
             AND ",
        );
        out.push_sql(webhooks::OWED_SQL);
        Ok(())
    }
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

impl EventFilter {
    /// The list's query parameters, with django-filter's messages; `readable` as
    /// `Auth::readable_objects` says.
    pub fn parse(
        params: &crate::http::query::QueryParams,
        readable: Vec<&'static str>,
    ) -> Result<Self, ApiError> {
        let mut r = crate::http::query::FilterReader::new(params);
        let filter = EventFilter {
            event_type: r.text("type"),
            object_id: r.text("object_id"),
            object_type: r.text("object_type"),
            actor_type: r.choice::<crate::audit::ActorType>("actor_type"),
            request_id: r.text("request_id"),
            readable,
        };
        r.finish()?;
        Ok(filter)
    }
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

/// The events of `ids` that exist, in one statement (the webhook worker's batch).
pub fn find_many(
    conn: &mut DbConnection,
    scope: &Scope,
    ids: &[i64],
) -> Result<Vec<EventView>, ApiError> {
    let rows: Vec<EventRow> = scoped(scope)
        .filter(events::id.eq_any(ids.to_vec()))
        .load(conn)?;
    Ok(rows.into_iter().map(EventRow::view).collect())
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
