//! Payment flows, each in the same shape: read, decide (domain), write with its event in one
//! transaction. A write is guarded by the version it read; if another request changed the
//! payment meanwhile, the write is a `Contention` and `write_tx` runs the flow again: it
//! reads again and decides again, so the loser gets the error that the new state implies.

use super::charging::{self, Attempt, AttemptStatus, AttemptView};
use super::domain::{self, Change, Payment, PaymentInput, PaymentView};
use super::filter::PaymentFilter;
use super::status::PaymentStatus;
use super::store;
use crate::accounts::new_id;
use crate::accounts::payer::{self, Actor};
use crate::db::{now, write_tx, DbConnection, Scope};
use crate::error::ApiError;
use crate::events::store as events;
use crate::gateways::{self, Charge, ChargeRequest, Settlement, Unknown};
use crate::http::fields::invalid_pk;
use crate::http::pagination::{Page, PageRequest};
use crate::sources::store as sources_store;

fn record(
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
fn save(
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
fn check_invoice_room(
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
    Ok(payment.view(base_url))
}

pub fn list(
    conn: &mut DbConnection,
    scope: &Scope,
    filter: &PaymentFilter,
    page: &PageRequest,
    base_url: &str,
) -> Result<Page<PaymentView>, ApiError> {
    let count = store::count(conn, scope, filter)?;
    page.fetch(count, |offset, limit| {
        let payments = store::list(conn, scope, filter, offset, limit)?;
        Ok(payments.iter().map(|p| p.view(base_url)).collect())
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
            end_charges_in_flight(conn, scope, &change.payment)?;
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
        .filter(|a| {
            matches!(
                a.status,
                AttemptStatus::Processing | AttemptStatus::RequiresAction
            )
        });
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

/// Marks the payment's processing attempts with how the merchant ended them.
fn end_charges_in_flight(
    conn: &mut DbConnection,
    scope: &Scope,
    payment: &Payment,
) -> Result<(), ApiError> {
    let failed = payment.failed_reason.is_some() || payment.status == PaymentStatus::Failed;
    for mut attempt in store::attempts(conn, scope, payment.id)? {
        if matches!(
            attempt.status,
            AttemptStatus::Processing | AttemptStatus::RequiresAction
        ) {
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

/// A charge recorded and not yet sent: what the gateway call needs, read in the first
/// transaction, so that the call itself opens none.
#[derive(Clone, Debug)]
pub struct PendingCharge {
    pub attempt: Attempt,
    pub gateway_data: serde_json::Map<String, serde_json::Value>,
    pub description: String,
}

/// `POST /payments/{id}/authorize/` charges a source for its amount, or for the balance, in
/// three steps, so that no transaction (and on SQLite, no batch of the single writer) waits
/// on a provider: [`begin_charge`] records the attempt, [`call_gateway`] asks the gateway
/// with no transaction open, and [`finish_charge`] applies its answer.
///
/// This first step, in one transaction: checks the charge (the payment's state and balance,
/// the invoice's room, which sources `actor` may charge: [`charging::check_source`]), moves
/// the payment to `processing` (a charge in flight: no other starts, and the merchant cannot
/// move it meanwhile), reserves a single-use source, and inserts the attempt `processing`.
/// The payment and the source are both version-guarded, so concurrent charges of one
/// payment never collect more than its amount.
pub fn begin_charge(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    source_id: i64,
    actor: Actor,
) -> Result<PendingCharge, ApiError> {
    write_tx(conn, |conn| {
        let payment = match actor {
            Actor::Merchant => store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?,
            Actor::Payer { payment } if payment == id => payer::still_open(conn, scope, id)?,
            Actor::Payer { .. } => return Err(ApiError::NotFound),
        };
        let source = sources_store::find(conn, scope, source_id)?
            .ok_or_else(|| ApiError::field("source", invalid_pk(source_id)))?;
        charging::check_source(&payment, &source, actor)?;
        let amount = charging::charge_amount(&payment, &source)?;
        check_invoice_room(conn, scope, &payment, amount).map_err(|refused| match actor {
            Actor::Merchant => refused,
            // The invoice is the merchant's business: a payer is told only that it cannot pay.
            Actor::Payer { .. } => ApiError::field(
                "non_field_errors",
                "This payment cannot be paid now; ask the merchant.",
            ),
        })?;
        if gateways::find(&source.gateway).is_none() {
            return Err(ApiError::internal(format!(
                "source {source_id} has an unknown gateway"
            )));
        }
        let started = charging::start_charge(&payment, &source, amount, now())?;
        if !save(conn, scope, &payment, &started.payment)?
            || !sources_store::save(conn, scope, &source, &started.source)?
        {
            return Err(ApiError::Contention);
        }
        let attempt = store::insert_attempt(conn, scope, &started.attempt)?;
        Ok(PendingCharge {
            attempt,
            gateway_data: source.gateway_data.clone(),
            description: payment.description.clone(),
        })
    })
}

/// The second step: the gateway's answer, with no transaction open. `Err(Unknown)` when it
/// gave none (a timeout, a broken connection, a 5xx).
pub fn call_gateway(pending: &PendingCharge) -> Result<Charge, Unknown> {
    let attempt = &pending.attempt;
    let gateway = gateways::find(&attempt.gateway)
        .ok_or_else(|| Unknown(format!("no gateway {}", attempt.gateway)))?;
    gateway.charge(&ChargeRequest {
        attempt: attempt.id,
        amount: attempt.amount,
        currency: attempt.currency,
        description: &pending.description,
        gateway_data: &pending.gateway_data,
    })
}

/// The third step, in one transaction: applies the gateway's answer to the payment, source
/// and attempt as they are now (pure `charging` functions, so it may run again safely). An
/// attempt answered meanwhile (settled, or ended by the merchant) is left as it is. With no
/// answer, the attempt stays in flight, and the payment `processing`, until the gateway is
/// asked again.
pub fn finish_charge(
    conn: &mut DbConnection,
    scope: &Scope,
    pending: &PendingCharge,
    outcome: &Result<Charge, Unknown>,
    base_url: &str,
) -> Result<PaymentView, ApiError> {
    let id = pending.attempt.payment_id;
    write_tx(conn, |conn| {
        let payment = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        let attempt = store::attempts(conn, scope, id)?
            .into_iter()
            .find(|a| a.id == pending.attempt.id)
            .ok_or_else(|| {
                ApiError::internal(format!("attempt {} vanished", pending.attempt.id))
            })?;
        if attempt.status != AttemptStatus::Processing || attempt.gateway_reference.is_some() {
            return Ok(payment.view(base_url));
        }
        let charge = match outcome {
            Ok(charge) => charge.clone(),
            Err(Unknown(cause)) => {
                log::warn!(
                    "charge attempt {} ({}): no answer, left in flight: {cause}",
                    attempt.id,
                    attempt.gateway
                );
                // Processing from now on, for a while: listeners hear of it.
                let view = payment.view(base_url);
                record(conn, scope, "payment.processing", &view)?;
                return Ok(view);
            }
        };
        let source = sources_store::find(conn, scope, attempt.source_id)?
            .ok_or_else(|| ApiError::internal(format!("source {} vanished", attempt.source_id)))?;
        let mut charged = charging::apply_charge(&payment, &source, &attempt, charge, now())?;
        if charged.attempt.status == AttemptStatus::RequiresAction {
            // Where to send the payer to authorize it (single use).
            let url = format!(
                "{base_url}/payments/{id}/pay/?checkout={}",
                payment.checkout_key
            );
            charged
                .source
                .gateway_data
                .insert("redirect_url".into(), url.into());
        }
        if !save(conn, scope, &payment, &charged.payment)?
            || !sources_store::save(conn, scope, &source, &charged.source)?
        {
            return Err(ApiError::Contention);
        }
        store::save_attempt(conn, scope, &charged.attempt)?;
        let view = charged.payment.view(base_url);
        record(conn, scope, &charged.event_type, &view)?;
        if charged.source.status != source.status {
            let event = format!("source.{}", charged.source.status.as_str());
            let source_view = charged.source.view();
            let source_id = source.id.to_string();
            events::record(conn, scope, &event, "source", &source_id, &source_view)?;
        }
        Ok(view)
    })
}

/// All three steps, for callers with no idempotency key of their own (the checkout page).
pub async fn authorize(
    db: &crate::db::Db,
    scope: Scope,
    id: i64,
    source_id: i64,
    base_url: String,
    actor: Actor,
) -> Result<PaymentView, ApiError> {
    let begun = scope.clone();
    let pending = db
        .write(move |conn| begin_charge(conn, &begun, id, source_id, actor))
        .await?;
    let (pending, outcome) = actix_web::web::block(move || {
        let outcome = call_gateway(&pending);
        (pending, outcome)
    })
    .await
    .map_err(ApiError::internal)?;
    db.write(move |conn| finish_charge(conn, &scope, &pending, &outcome, &base_url))
        .await
}

/// `POST /payments/{id}/settle/` (test mode): settles the charge in flight at once, as its
/// gateway would later. Only for gateways that settle by themselves (not bank transfers).
pub fn settle(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    base_url: &str,
) -> Result<PaymentView, ApiError> {
    if !scope.test_mode() {
        return Err(ApiError::BadRequest(
            "Settling a charge by hand is only possible in test mode.".into(),
        ));
    }
    write_tx(conn, |conn| {
        let payment = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        let nothing = || {
            ApiError::BadRequest(
                "This payment has no charge in flight that its gateway settles.".into(),
            )
        };
        let attempt = store::attempts(conn, scope, id)?
            .into_iter()
            .find(|a| a.status == AttemptStatus::Processing)
            .ok_or_else(nothing)?;
        let source = sources_store::find(conn, scope, attempt.source_id)?.ok_or_else(nothing)?;
        let settlement = gateways::find(&attempt.gateway)
            .and_then(|g| g.settlement(&source.gateway_data))
            .ok_or_else(nothing)?;
        apply_settled(conn, scope, &payment, &attempt, &settlement, base_url)
    })
}

/// Writes how a charge in flight ended: the payment, the attempt and, for a single-use
/// source still waiting on it, the source, each with its event.
fn apply_settled(
    conn: &mut DbConnection,
    scope: &Scope,
    payment: &Payment,
    attempt: &Attempt,
    settlement: &Settlement,
    base_url: &str,
) -> Result<PaymentView, ApiError> {
    let (next, attempt) = charging::apply_settlement(payment, attempt, settlement, now())?;
    if !save(conn, scope, payment, &next)? {
        return Err(ApiError::Contention);
    }
    store::save_attempt(conn, scope, &attempt)?;
    if let Some(source) = sources_store::find(conn, scope, attempt.source_id)? {
        let waiting = matches!(
            source.status,
            crate::sources::domain::SourceStatus::Pending
                | crate::sources::domain::SourceStatus::WaitingAuthorization
        );
        if source.usage == crate::sources::domain::Usage::Single && waiting {
            let mut used = source.clone();
            used.status = charging::source_status(attempt.status);
            used.updated = attempt.updated;
            if !sources_store::save(conn, scope, &source, &used)? {
                return Err(ApiError::Contention);
            }
            let event = format!("source.{}", used.status.as_str());
            let source_id = used.id.to_string();
            events::record(conn, scope, &event, "source", &source_id, &used.view())?;
        }
    }
    let view = next.view(base_url);
    record(conn, scope, &format!("payment.{}", next.status), &view)?;
    Ok(view)
}

/// Settles the sandbox charges in flight for longer than `after`, as a real gateway's
/// confirmation would arrive: what `cobro serve` runs every second. Returns how many.
pub fn settle_due_sandbox_charges(
    conn: &mut DbConnection,
    after: chrono::Duration,
    base_url: &str,
) -> Result<usize, ApiError> {
    let due = store::due_sandbox_charges(conn, now() - after, 100)?;
    let mut settled = 0;
    for (scope, id) in due {
        match settle(conn, &scope, id, base_url) {
            Ok(_) => settled += 1,
            // Settled or moved meanwhile (by hand, or by another server): nothing to do.
            Err(ApiError::BadRequest(_) | ApiError::NotFound) => {}
            // One charge that cannot settle now must not hold up the others.
            Err(other) => log::warn!("settling sandbox charge {id}: {other}"),
        }
    }
    Ok(settled)
}

/// The charge waiting for the payer's authorization (a redirect flow), if any.
pub fn awaiting_payer(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
) -> Result<Option<Attempt>, ApiError> {
    let attempts = store::attempts(conn, scope, id)?;
    Ok(attempts
        .into_iter()
        .find(|a| a.status == AttemptStatus::RequiresAction))
}

/// The payer's answer on the sandbox's authorization page: the charge succeeds, or fails
/// with `authentication_failed`. Single use: a second answer finds nothing to authorize.
pub fn finish_redirect(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    approved: bool,
    base_url: &str,
) -> Result<PaymentView, ApiError> {
    write_tx(conn, |conn| {
        // Only the payer answers, with the checkout key: its checkout must still be open.
        let payment = payer::still_open(conn, scope, id)?;
        let attempt = awaiting_payer(conn, scope, id)?.ok_or_else(|| {
            ApiError::BadRequest("This payment has no charge waiting for authorization.".into())
        })?;
        let settlement = if approved {
            Settlement::Succeeded
        } else {
            Settlement::Failed {
                code: "authentication_failed".into(),
            }
        };
        apply_settled(conn, scope, &payment, &attempt, &settlement, base_url)
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
