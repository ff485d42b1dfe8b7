//! Customer flows: each write in one transaction with its event. Writes return the
//! customer itself; each door shows it its own way.

use super::domain::{self, Customer, CustomerInput, CustomerStatus, CustomerView};
use super::store::{self, CustomerFilter};
use crate::db::{now, write_tx, DbConnection, Scope};
use crate::error::ApiError;
use crate::events::store as events;
use crate::http::pagination::{Page, PageRequest};

pub fn create(
    conn: &mut DbConnection,
    scope: &Scope,
    input: &CustomerInput,
) -> Result<Customer, ApiError> {
    let customer = domain::new_customer(input, scope.test_mode(), now())?;
    write_tx(conn, |conn| {
        let created = store::insert(conn, scope, &customer)?;
        let view = created.view();
        events::record(conn, scope, "customer.created", "customer", &view.id, &view)?;
        Ok(created)
    })
}

pub fn retrieve(
    conn: &mut DbConnection,
    scope: &Scope,
    id: &str,
) -> Result<CustomerView, ApiError> {
    Ok(store::find(conn, scope, id)?
        .ok_or(ApiError::NotFound)?
        .view())
}

pub fn list(
    conn: &mut DbConnection,
    scope: &Scope,
    filter: &CustomerFilter,
    page: &PageRequest,
) -> Result<Page<CustomerView>, ApiError> {
    let count = store::count(conn, scope, filter)?;
    page.fetch(count, |offset, limit| {
        Ok(store::list(conn, scope, filter, offset, limit)?
            .iter()
            .map(|c| c.view())
            .collect())
    })
}

/// PATCH (`merge`) and PUT. A change that changes nothing writes nothing.
pub fn update(
    conn: &mut DbConnection,
    scope: &Scope,
    id: &str,
    input: &CustomerInput,
    merge: bool,
) -> Result<Customer, ApiError> {
    write_tx(conn, |conn| {
        let current = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        let mut next = domain::apply(&current, input, merge)?;
        if next == current {
            return Ok(current);
        }
        next.updated = now();
        if !store::save(conn, scope, &current, &next)? {
            return Err(ApiError::Contention);
        }
        events::record(
            conn,
            scope,
            "customer.updated",
            "customer",
            id,
            &next.view(),
        )?;
        Ok(next)
    })
}

/// What a delete did.
pub enum Deleted {
    Gone,
    /// Payments name the customer: it is archived instead, and shown.
    Archived(Box<CustomerView>),
}

pub fn delete(conn: &mut DbConnection, scope: &Scope, id: &str) -> Result<Deleted, ApiError> {
    write_tx(conn, |conn| {
        let current = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        if crate::payments::store::customer_has_payments(conn, scope, id)?
            || crate::invoices::store::customer_has_invoices(conn, scope, id)?
        {
            if current.status == CustomerStatus::Archived {
                return Ok(Deleted::Archived(Box::new(current.view())));
            }
            let archived = domain::Customer {
                status: CustomerStatus::Archived,
                updated: now(),
                ..current.clone()
            };
            if !store::save(conn, scope, &current, &archived)? {
                return Err(ApiError::Contention);
            }
            let view = archived.view();
            events::record(conn, scope, "customer.updated", "customer", id, &view)?;
            return Ok(Deleted::Archived(Box::new(view)));
        }
        if !store::delete(conn, scope, &current)? {
            return Err(ApiError::Contention);
        }
        events::record(
            conn,
            scope,
            "customer.deleted",
            "customer",
            id,
            &current.view(),
        )?;
        Ok(Deleted::Gone)
    })
}
