//! Payment flows, each in the same shape: read, decide (domain), write with its event in one
//! transaction. A write is guarded by the version it read; if another request changed the
//! payment meanwhile, the write is a `Contention` and `write_tx` runs the flow again: it
//! reads again and decides again, so the loser gets the error that the new state implies.

use super::charging::{self, AttemptStatus, AttemptView};
use super::domain::{self, Change, Payment, PaymentInput, PaymentView};
use super::filter::PaymentFilter;
use super::status::PaymentStatus;
use super::store;
use crate::accounts::new_id;
use crate::db::{now, write_tx, DbConnection, Scope};
use crate::error::ApiError;
use crate::events::store as events;
use crate::gateways;
use crate::http::fields::invalid_pk;
use crate::http::pagination::{Page, PageRequest};
use crate::sources::store as sources_store;

pub(super) fn record(
    conn: &mut DbConnection,
    scope: &Scope,
    event_type: &str,
    view: &PaymentView,
) -> Result<(), ApiError> {
    events::record(
        conn,
        scope,
        event_type,
        "payment",
        &view.id.to_string(),
        view,
    )
}

pub fn create(
    conn: &mut DbConnection,
    scope: &Scope,
    input: &PaymentInput,
    base_url: &str,
) -> Result<PaymentView, ApiError> {
    let payment = domain::new_payment(input.clone(), scope.test_mode(), new_id(""), now())?;
    write_tx(conn, |conn| {
        let mut payment = payment.clone();
        if let Some(customer) = check_references(conn, scope, &payment, None)? {
            payment.customer = Some(customer);
        }
        let saved = store::insert(conn, scope, &payment)?;
        if saved.status == PaymentStatus::Succeeded {
            pay_invoice(conn, scope, &saved)?;
        }
        let view = saved.view(base_url);
        record(conn, scope, "payment.created", &view)?;
        // A payment created already processing or paid also announces that status, so that
        // a listener for `payment.succeeded` hears of every success, however it came.
        if saved.status != PaymentStatus::RequiresPaymentMethod {
            record(conn, scope, &format!("payment.{}", saved.status), &view)?;
        }
        Ok(view)
    })
}

/// Saves a payment changed since it was `read` (false when someone else changed it first),
/// and when this change makes it succeed, pays its invoice in the same transaction.
pub(super) fn save(
    conn: &mut DbConnection,
    scope: &Scope,
    read: &Payment,
    next: &Payment,
) -> Result<bool, ApiError> {
    if !store::save(conn, scope, read, next)? {
        return Ok(false);
    }
    if read.status != PaymentStatus::Succeeded && next.status == PaymentStatus::Succeeded {
        pay_invoice(conn, scope, next)?;
    }
    Ok(true)
}

/// A charge for an invoice starts only if it fits what the invoice still has due, less what
/// other charges for it have in flight: so a gateway's answer, which arrives once the money
/// has moved, always fits the invoice.
pub(super) fn check_invoice_room(
    conn: &mut DbConnection,
    scope: &Scope,
    payment: &Payment,
    amount: i64,
) -> Result<(), ApiError> {
    let Some(id) = &payment.invoice else {
        return Ok(());
    };
    let Some(invoice) = crate::invoices::store::find(conn, scope, id)? else {
        return Ok(()); // a free reference from before invoices existed
    };
    let room = invoice.amount_due() - store::invoice_in_flight(conn, scope, id, payment.id)?;
    if !invoice.is_payable() || amount > room {
        return Err(ApiError::field(
            "invoice",
            format!(
                "The invoice {id} is {} with {} left to charge: this charge of {} does not fit.",
                invoice.status.as_str(),
                invoice.currency.for_people(room.max(0)),
                invoice.currency.for_people(amount)
            ),
        ));
    }
    Ok(())
}

/// A payment for an invoice has succeeded: the invoice's amount paid moves, and a payment
/// for more than is still due is refused (its success with it).
fn pay_invoice(conn: &mut DbConnection, scope: &Scope, payment: &Payment) -> Result<(), ApiError> {
    match &payment.invoice {
        Some(invoice) => {
            crate::invoices::operations::pay(conn, scope, invoice, payment.id, payment.amount)
        }
        None => Ok(()),
    }
}

/// `source`, `sources`, `customer` and `invoice` must name objects of the payment's
/// workspace and mode, and a payment for an invoice must be in its currency, for its
/// customer, for at most what it still has due, and the invoice must be open. Only what
/// changed since `current` is checked: a customer archived since stays named. Returns the
/// invoice's customer when the payment names none (it becomes the payment's).
fn check_references(
    conn: &mut DbConnection,
    scope: &Scope,
    payment: &Payment,
    current: Option<&Payment>,
) -> Result<Option<String>, ApiError> {
    let mut errors = crate::error::FieldErrors::new();
    let sources_changed =
        current.is_none_or(|c| (c.source, &c.sources) != (payment.source, &payment.sources));
    if sources_changed {
        let named: Vec<i64> = payment
            .source
            .into_iter()
            .chain(payment.sources.iter().copied())
            .collect();
        let existing = sources_store::existing(conn, scope, &named)?;
        errors = charging::missing_sources(payment, &existing);
    }
    if let Some(customer) = &payment.customer {
        let changed = current.is_none_or(|c| c.customer.as_ref() != Some(customer));
        if changed && !crate::customers::store::exists(conn, scope, customer)? {
            errors.add("customer", invalid_pk(customer));
        }
    }
    let mut fill = None;
    let changed = current.is_none_or(|c| {
        (&c.invoice, &c.customer, c.amount, c.currency)
            != (
                &payment.invoice,
                &payment.customer,
                payment.amount,
                payment.currency,
            )
    });
    if current.is_some_and(|c| c.has_money_committed() && c.invoice != payment.invoice) {
        errors.add(
            "invoice",
            "A payment with money collected or in flight cannot change its invoice.",
        );
    } else if let (Some(id), true) = (&payment.invoice, changed) {
        match crate::invoices::store::find(conn, scope, id)? {
            None => errors.add("invoice", invalid_pk(id)),
            Some(invoice) => fill = domain::check_invoice(payment, &invoice, &mut errors),
        }
    }
    errors.into_result()?;
    Ok(fill)
}

pub fn retrieve(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    base_url: &str,
) -> Result<PaymentView, ApiError> {
    let payment = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
    Ok(payment.into_view(base_url))
}

pub fn list(
    conn: &mut DbConnection,
    scope: &Scope,
    filter: &PaymentFilter,
    page: &PageRequest,
    base_url: &str,
) -> Result<Page<PaymentView>, ApiError> {
    if let (Some(status), Some(offset)) = (filter.newest_by_status(), page.offset()) {
        // A dashboard's page: its rows and its count in one read.
        let (payments, count) =
            store::newest_first_counted(conn, scope, status, offset, page.size)?;
        let views = payments.into_iter().map(|p| p.into_view(base_url));
        return page.counted(count, views.collect());
    }
    let count = store::count(conn, scope, filter)?;
    page.fetch(count, |offset, limit| {
        let payments = store::list(conn, scope, filter, offset, limit)?;
        Ok(payments
            .into_iter()
            .map(|p| p.into_view(base_url))
            .collect())
    })
}

/// PUT (`merge_metadata` false) and PATCH (true). A merchant's move out of `processing`
/// (a bank transfer confirmed or refused) also ends the charge in flight.
pub fn update(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    input: &PaymentInput,
    merge_metadata: bool,
    base_url: &str,
) -> Result<PaymentView, ApiError> {
    change(conn, scope, id, base_url, |conn, current| {
        let Some(change) = domain::update(current, input, merge_metadata, now())? else {
            return Ok(None);
        };
        let mut change = change;
        if let Some(customer) = check_references(conn, scope, &change.payment, Some(current))? {
            change.payment.customer = Some(customer);
        }
        if current.status == PaymentStatus::Processing
            && change.payment.status != PaymentStatus::Processing
        {
            check_merchant_settles(conn, scope, current)?;
            end_charges_in_flight(conn, scope, current, &change.payment)?;
        }
        Ok(Some(change))
    })
}

/// A merchant moves a payment out of `processing` only when what is in flight is theirs to
/// settle (a bank transfer); a gateway's charge ends with the gateway's answer, or a status
/// would say what the gateway never said.
fn check_merchant_settles(
    conn: &mut DbConnection,
    scope: &Scope,
    payment: &Payment,
) -> Result<(), ApiError> {
    let in_flight = store::attempts(conn, scope, payment.id)?
        .into_iter()
        .filter(|a| a.status.in_flight());
    for attempt in in_flight {
        if !gateways::find(&attempt.gateway).is_some_and(|g| g.settled_by_merchant()) {
            return Err(ApiError::field(
                "status",
                format!(
                    "A charge of this payment is in flight at the {} gateway: its answer decides how it ends.",
                    attempt.gateway
                ),
            ));
        }
    }
    Ok(())
}

/// Marks the payment's processing attempt with how the merchant ended it: succeeded with
/// what this move collected (a transfer may bring in less than it was for; a refund goes
/// back through it at most that), or failed when it brought in nothing.
fn end_charges_in_flight(
    conn: &mut DbConnection,
    scope: &Scope,
    current: &Payment,
    payment: &Payment,
) -> Result<(), ApiError> {
    let received = payment.collected - current.collected;
    let failed =
        payment.failed_reason.is_some() || payment.status == PaymentStatus::Failed || received <= 0;
    for mut attempt in store::attempts(conn, scope, payment.id)? {
        if attempt.status.in_flight() {
            if !failed {
                attempt.amount = received.min(attempt.amount);
            }
            attempt.status = if failed {
                AttemptStatus::Failed
            } else {
                AttemptStatus::Succeeded
            };
            attempt.failure_code = if failed {
                payment.failed_reason.clone()
            } else {
                None
            };
            attempt.updated = payment.updated;
            store::save_attempt(conn, scope, &attempt)?;
        }
    }
    Ok(())
}

pub fn cancel(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    base_url: &str,
) -> Result<PaymentView, ApiError> {
    change(conn, scope, id, base_url, |_, current| {
        domain::cancel(current, now()).map(Some)
    })
}

pub fn delete(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    base_url: &str,
) -> Result<(), ApiError> {
    write_tx(conn, |conn| {
        let current = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        domain::check_delete(&current)?;
        if !store::delete(conn, scope, &current)? {
            return Err(ApiError::Contention);
        }
        record(conn, scope, "payment.deleted", &current.view(base_url))
    })
}

/// `GET /payments/{id}/attempts/`: every charge attempt, oldest first.
pub fn attempts(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
) -> Result<Vec<AttemptView>, ApiError> {
    store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
    Ok(store::attempts(conn, scope, id)?
        .iter()
        .map(|a| a.view())
        .collect())
}

/// Read, decide with `decide` (None: nothing to change), guarded write, event.
fn change(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    base_url: &str,
    decide: impl Fn(&mut DbConnection, &Payment) -> Result<Option<Change>, ApiError>,
) -> Result<PaymentView, ApiError> {
    write_tx(conn, |conn| {
        let current = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        let Some(change) = decide(conn, &current)? else {
            return Ok(current.view(base_url));
        };
        if !save(conn, scope, &current, &change.payment)? {
            return Err(ApiError::Contention);
        }
        let view = change.payment.view(base_url);
        record(conn, scope, &change.event_type, &view)?;
        Ok(view)
    })
}
