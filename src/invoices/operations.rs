//! Invoice flows: each write in one transaction with its event; writes return the invoice
//! itself, which each door shows its own way. `pay` is called by the
//! payments flows, in the transaction where a payment for the invoice succeeds.

use super::domain::{self, Invoice, InvoiceInput, InvoiceStatus, InvoiceView};
use super::store::{self, InvoiceFilter};
use crate::db::{now, write_tx, DbConnection, Scope};
use crate::error::ApiError;
use crate::events::store as events;
use crate::http::fields::invalid_pk;
use crate::http::pagination::{Page, PageRequest};

fn record(
    conn: &mut DbConnection,
    scope: &Scope,
    event: &str,
    view: &InvoiceView,
) -> Result<(), ApiError> {
    events::record(conn, scope, event, "invoice", &view.id, view)
}

/// The customer must be one of the scope's.
fn check_customer(conn: &mut DbConnection, scope: &Scope, customer: &str) -> Result<(), ApiError> {
    if crate::customers::store::exists(conn, scope, customer)? {
        Ok(())
    } else {
        Err(ApiError::field("customer", invalid_pk(customer)))
    }
}

pub fn create(
    conn: &mut DbConnection,
    scope: &Scope,
    input: &InvoiceInput,
) -> Result<Invoice, ApiError> {
    let invoice = domain::new_invoice(input, scope.test_mode(), now())?;
    write_tx(conn, |conn| {
        check_customer(conn, scope, &invoice.customer)?;
        let created = store::insert(conn, scope, &invoice)?;
        record(conn, scope, "invoice.created", &created.view())?;
        Ok(created)
    })
}

pub fn retrieve(conn: &mut DbConnection, scope: &Scope, id: &str) -> Result<InvoiceView, ApiError> {
    Ok(store::find(conn, scope, id)?
        .ok_or(ApiError::NotFound)?
        .view())
}

pub fn list(
    conn: &mut DbConnection,
    scope: &Scope,
    filter: &InvoiceFilter,
    page: &PageRequest,
) -> Result<Page<InvoiceView>, ApiError> {
    let count = store::count(conn, scope, filter)?;
    page.fetch(count, |offset, limit| {
        Ok(store::list(conn, scope, filter, offset, limit)?
            .iter()
            .map(|i| i.view())
            .collect())
    })
}

/// PATCH (`merge`) and PUT.
pub fn update(
    conn: &mut DbConnection,
    scope: &Scope,
    id: &str,
    input: &InvoiceInput,
    merge: bool,
) -> Result<Invoice, ApiError> {
    write_tx(conn, |conn| {
        let current = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        let mut next = domain::apply(&current, input, merge)?;
        if next == current {
            return Ok(current);
        }
        if next.customer != current.customer {
            check_customer(conn, scope, &next.customer)?;
        }
        next.updated = now();
        if !store::save(conn, scope, &current, &next)? {
            return Err(ApiError::Contention);
        }
        record(conn, scope, "invoice.updated", &next.view())?;
        Ok(next)
    })
}

/// `finalize`, `cancel` and `mark_uncollectible`.
pub fn move_to(
    conn: &mut DbConnection,
    scope: &Scope,
    id: &str,
    to: InvoiceStatus,
) -> Result<Invoice, ApiError> {
    write_tx(conn, |conn| {
        let current = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        let at = now();
        let mut next = domain::moved(&current, to, at)?;
        if to == InvoiceStatus::Cancelled
            && crate::payments::store::invoice_in_flight(conn, scope, id, 0)? > 0
        {
            return Err(ApiError::BadRequest(
                "Charges for this invoice are in flight: it can be cancelled once they end.".into(),
            ));
        }
        next.updated = at;
        if !store::save(conn, scope, &current, &next)? {
            return Err(ApiError::Contention);
        }
        record(
            conn,
            scope,
            &format!("invoice.{}", to.as_str()),
            &next.view(),
        )?;
        Ok(next)
    })
}

/// Only drafts can be deleted.
pub fn delete(conn: &mut DbConnection, scope: &Scope, id: &str) -> Result<(), ApiError> {
    write_tx(conn, |conn| {
        let current = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        if current.status != InvoiceStatus::Draft {
            return Err(ApiError::BadRequest(format!(
                "Only a draft invoice can be deleted; this one is {}. Cancel it instead.",
                current.status.as_str()
            )));
        }
        if crate::payments::store::invoice_has_payments(conn, scope, id)? {
            return Err(ApiError::BadRequest(
                "Payments name this invoice: it cannot be deleted.".into(),
            ));
        }
        if !store::delete(conn, scope, &current)? {
            return Err(ApiError::Contention);
        }
        record(conn, scope, "invoice.deleted", &current.view())
    })
}

/// Pays `amount` of the invoice: called in the transaction where payment `payment_id`
/// for it succeeds. Paying more than is due (less what other charges have in flight) is
/// refused, and so is the payment's success; of two payments racing for the last amount
/// due, the second meets a changed invoice, runs again, and is refused. A payment whose
/// `invoice` names no invoice (a free reference from before invoices existed) pays nothing.
pub fn pay(
    conn: &mut DbConnection,
    scope: &Scope,
    id: &str,
    payment_id: i64,
    amount: i64,
) -> Result<(), ApiError> {
    let Some(current) = store::find(conn, scope, id)? else {
        return Ok(());
    };
    let reserved = crate::payments::store::invoice_in_flight(conn, scope, id, payment_id)?;
    let next = domain::paid(&current, amount, reserved, now())?;
    if !store::save(conn, scope, &current, &next)? {
        return Err(ApiError::Contention);
    }
    let view = next.view();
    if next.status == InvoiceStatus::Paid {
        record(conn, scope, "invoice.paid", &view)
    } else {
        record(conn, scope, "invoice.updated", &view)
    }
}

/// What refunds of its payments sent back moved by `delta` (in the transaction of the
/// refund's change): the invoice shows it, and stays as it is (paid stays paid; credit notes
/// are another matter).
pub fn refunded(
    conn: &mut DbConnection,
    scope: &Scope,
    id: &str,
    delta: i64,
) -> Result<(), ApiError> {
    let Some(current) = store::find(conn, scope, id)? else {
        return Ok(());
    };
    let next = Invoice {
        amount_refunded: current.amount_refunded + delta,
        updated: now(),
        ..current.clone()
    };
    if !store::save(conn, scope, &current, &next)? {
        return Err(ApiError::Contention);
    }
    record(conn, scope, "invoice.updated", &next.view())
}
