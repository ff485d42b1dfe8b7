//! Source flows: each write in one transaction with its event.

use super::domain::{self, SourceView};
use super::store::{self, SourceFilter};
use crate::accounts::payer::{self, Actor};
use crate::db::{now, write_tx, DbConnection, Scope};
use crate::error::ApiError;
use crate::events::store as events;
use crate::http::pagination::{Page, PageRequest};

/// A new source. A payer's (made with a checkout key) is bound to that payment, and only
/// while the payment's checkout is open and it can still be paid.
pub fn create(
    conn: &mut DbConnection,
    scope: &Scope,
    body: &serde_json::Map<String, serde_json::Value>,
    actor: Actor,
) -> Result<SourceView, ApiError> {
    let checkout = actor.checkout_payment();
    let source = domain::new_source(body, scope.test_mode(), now(), checkout)?;
    write_tx(conn, |conn| {
        if let Some(payment) = checkout {
            payer::check_payable(&payer::still_open(conn, scope, payment)?)?;
        }
        let view = store::insert(conn, scope, &source)?.view();
        events::record(
            conn,
            scope,
            "source.created",
            "source",
            &view.id.to_string(),
            &view,
        )?;
        Ok(view)
    })
}

pub fn retrieve(conn: &mut DbConnection, scope: &Scope, id: i64) -> Result<SourceView, ApiError> {
    Ok(store::find(conn, scope, id)?
        .ok_or(ApiError::NotFound)?
        .view())
}

pub fn list(
    conn: &mut DbConnection,
    scope: &Scope,
    filter: &SourceFilter,
    page: &PageRequest,
) -> Result<Page<SourceView>, ApiError> {
    let count = store::count(conn, scope, filter)?;
    page.fetch(count, |offset, limit| {
        Ok(store::list(conn, scope, filter, offset, limit)?
            .iter()
            .map(|s| s.view())
            .collect())
    })
}

pub fn delete(conn: &mut DbConnection, scope: &Scope, id: i64) -> Result<(), ApiError> {
    write_tx(conn, |conn| {
        let source = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        domain::check_delete(&source)?;
        if crate::payments::store::source_was_charged(conn, scope, id)? {
            return Err(ApiError::BadRequest(
                "A source that was charged cannot be deleted: it is part of a payment's history."
                    .into(),
            ));
        }
        if !store::delete(conn, scope, &source)? {
            return Err(ApiError::Contention);
        }
        events::record(
            conn,
            scope,
            "source.deleted",
            "source",
            &id.to_string(),
            &source.view(),
        )
    })
}
