//! The flows that ask a gateway: charge, capture, release, settle. Each is three steps, in
//! the webhook worker's shape, so that no transaction (and on SQLite no batch of the single
//! writer) waits on a provider:
//!
//! 1. `begin_*`, one transaction: check, record the intent (the attempt, and what is in
//!    flight), read what the call needs;
//! 2. [`call`], with no transaction open: the gateway's answer, with the attempt's id as its
//!    idempotency key, or `Unknown` (a timeout, a broken connection, a 5xx);
//! 3. [`finish`], a second transaction: the answer applied to the payment, source and
//!    attempt as they are now, by the pure `charging` functions, so it may run again
//!    safely. An attempt answered meanwhile (by the reconciler, a provider's webhook, the
//!    merchant) is left as it is; an unknown outcome leaves it in flight until the gateway
//!    is asked again.
//!
//! A charge through a gateway that answers in-process (`Gateway::answers_in_process`: no
//! network, at once) is one transaction instead: `begin_charge` writes nothing, and
//! [`finish`] writes the charge once, with its answer (`Pending::unwritten`).

use std::sync::Arc;

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::charging::{self, Attempt, AttemptStatus, Operation};
use super::domain::{self, Payment, PaymentView};
use super::operations::{check_invoice_room, record, save};
use super::status::PaymentStatus;
use super::store;
use crate::accounts::payer::{self, Actor};
use crate::audit::Origin;
use crate::db::{now, write_tx, DbConnection, Scope};
use crate::error::ApiError;
use crate::events::store as events;
use crate::gateways::{self, Account, Charge, ChargeRequest, Subject, Unknown};
use crate::http::fields::invalid_pk;
use crate::secrets::Keyring;
use crate::sources::domain::Source;
use crate::sources::store as sources_store;

/// What a call asks of the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// Charge a source (`capture: false`: hold the amount).
    Charge { capture: bool },
    /// Capture (part of) what a charge holds.
    Capture,
    /// Release what a charge holds, or give up one waiting on the payer, and cancel the
    /// payment.
    Release,
    /// Ask what became of a charge in flight (the reconciler); `resend`: send it again if
    /// the provider has no trace of it.
    Ask { resend: bool },
    /// Give up a charge the payer abandoned (its authorization never came).
    Abandon,
}

/// A call recorded and not yet made: what it needs, read in the first transaction, so that
/// the call itself opens none.
#[derive(Clone, Debug)]
pub struct Pending {
    pub intent: Intent,
    pub attempt: Attempt,
    pub account: Account,
    pub gateway_data: Map<String, Value>,
    pub description: String,
    /// A charge its gateway answers in-process has written nothing yet: [`finish`] writes
    /// it once, with its answer, in the same transaction (`idempotency::answer_call`).
    pub unwritten: Option<Box<Unwritten>>,
}

/// What [`begin_charge`] read (the guards of the writes) and what the charge started from
/// it, for a charge written only with its answer.
#[derive(Clone, Debug)]
pub struct Unwritten {
    read: (Payment, Source),
    started: (Payment, Source),
}

impl crate::idempotency::Staged for Pending {
    fn moves_money(&self) -> bool {
        true
    }

    fn in_process(&self) -> bool {
        self.unwritten.is_some()
            || gateways::find(&self.attempt.gateway)
                .is_some_and(|gateway| gateway.answers_in_process(&self.gateway_data))
    }
}

impl crate::idempotency::Staged for Option<Pending> {
    fn moves_money(&self) -> bool {
        self.is_some()
    }

    fn in_process(&self) -> bool {
        self.as_ref()
            .is_some_and(crate::idempotency::Staged::in_process)
    }
}

/// The gateway of an attempt or a source.
fn gateway(name: &str) -> Result<&'static dyn gateways::Gateway, ApiError> {
    gateways::find(name).ok_or_else(|| ApiError::internal(format!("unknown gateway {name}")))
}

/// The account a new charge of a source goes through: its integration, which must still be
/// there and enabled (disabling one stops new charges through it at once), or none.
fn account_to_charge(
    conn: &mut DbConnection,
    scope: &Scope,
    source: &Source,
    keyring: &Keyring,
) -> Result<Account, ApiError> {
    let Some(id) = &source.integration else {
        return Ok(Account::default());
    };
    match crate::integrations::store::find(conn, scope, id)? {
        Some(integration) if integration.enabled => Ok(Account {
            credentials: integration.open(keyring)?,
            integration: Some(id.clone()),
        }),
        Some(_) => Err(ApiError::field(
            "source",
            format!("The source's integration {id} is disabled."),
        )),
        None => Err(ApiError::field(
            "source",
            format!("The source's integration {id} no longer exists."),
        )),
    }
}

/// The account a source's charges in flight go through: its integration's (even disabled
/// since, so that what is in flight can end), or none (built in).
fn account(
    conn: &mut DbConnection,
    scope: &Scope,
    source: &Source,
    keyring: &Keyring,
) -> Result<Account, ApiError> {
    match &source.integration {
        Some(id) => crate::integrations::operations::account_of(conn, scope, id, keyring),
        None => Ok(Account::default()),
    }
}

/// `POST /payments/{id}/authorize/`, first step: checks the charge (the payment's state and
/// balance, the invoice's room, which sources `actor` may charge:
/// [`charging::check_source`], what the gateway can take), moves the payment to
/// `processing` (a charge in flight: no other starts, and the merchant cannot move it
/// meanwhile), reserves a single-use source, and inserts the attempt `processing`. The
/// payment and the source are both version-guarded, so concurrent charges of one payment
/// never collect more than its amount. Call it inside a write transaction.
pub fn begin_charge(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    source_id: i64,
    actor: Actor,
    capture: bool,
    keyring: &Keyring,
) -> Result<Pending, ApiError> {
    // The caller's (`idempotency::answer_call`'s, `authorize`'s): a savepoint of its own
    // would cost two statements and change nothing.
    debug_assert!(crate::db::in_transaction(conn));
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
    let gateway = gateway(&source.gateway)?;
    gateway
        .check_amount(payment.currency, amount)
        .map_err(|refused| ApiError::field("non_field_errors", refused))?;
    let account = account_to_charge(conn, scope, &source, keyring)?;
    let started = charging::start_charge(&payment, &source, amount, capture, now())?;
    if gateway.answers_in_process(&source.gateway_data) {
        return Ok(Pending {
            intent: Intent::Charge { capture },
            attempt: started.attempt,
            account,
            gateway_data: source.gateway_data.clone(),
            description: payment.description.clone(),
            unwritten: Some(Box::new(Unwritten {
                started: (started.payment, started.source),
                read: (payment, source),
            })),
        });
    }
    if !save(conn, scope, &payment, &started.payment)?
        || !sources_store::save(conn, scope, &source, &started.source)?
    {
        return Err(ApiError::Contention);
    }
    let attempt = store::insert_attempt(conn, scope, &started.attempt)?;
    Ok(Pending {
        intent: Intent::Charge { capture },
        attempt,
        account,
        gateway_data: source.gateway_data.clone(),
        description: payment.description.clone(),
        unwritten: None,
    })
}

/// `POST /payments/{id}/capture/`, first step: the held charge's capture, of `amount` (at
/// most what is held; by default all of it), marked in flight so that no second capture
/// starts.
pub fn begin_capture(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    amount: Option<Decimal>,
    keyring: &Keyring,
) -> Result<Pending, ApiError> {
    write_tx(conn, |conn| {
        let payment = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        let held = held(conn, scope, &payment)?.ok_or_else(|| {
            ApiError::BadRequest("This payment holds no charge to capture.".into())
        })?;
        if held.status != AttemptStatus::RequiresCapture {
            return Err(ApiError::BadRequest(
                "This payment's charge waits for the payer: there is nothing to capture yet."
                    .into(),
            ));
        }
        let amount = match amount {
            None => held.amount,
            Some(amount) => payment
                .currency
                .to_minor(amount)
                .map_err(|message| ApiError::field("amount", message))?,
        };
        if amount <= 0 || amount > held.amount {
            return Err(ApiError::field(
                "amount",
                format!(
                    "Capture more than 0 and at most what is held ({}).",
                    payment.currency.format(held.amount)
                ),
            ));
        }
        gateway(&held.gateway)?
            .check_amount(payment.currency, amount)
            .map_err(|refused| ApiError::field("amount", refused))?;
        let mut capturing = held.clone();
        capturing.status = AttemptStatus::Processing;
        // Until the gateway says it captured, the hold stays as it is.
        capturing.operation = Some(Operation::Capture);
        capturing.operation_amount = Some(amount);
        capturing.updated = now();
        begin_call(conn, scope, Intent::Capture, &held, capturing, keyring)
    })
}

/// `POST /payments/{id}/cancel/` of a payment whose charge is held or waits for the payer,
/// first step: the release, marked in flight. None when nothing is held: the cancel is
/// then a plain move.
pub fn begin_release(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    keyring: &Keyring,
) -> Result<Option<Pending>, ApiError> {
    write_tx(conn, |conn| {
        let payment = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        let Some(held) = held(conn, scope, &payment)? else {
            return Ok(None);
        };
        let mut releasing = held.clone();
        releasing.status = AttemptStatus::Processing;
        releasing.operation = Some(Operation::Release);
        releasing.updated = now();
        begin_call(conn, scope, Intent::Release, &held, releasing, keyring).map(Some)
    })
}

/// The charge a payment in `processing` holds or that waits for its payer, if any.
fn held(
    conn: &mut DbConnection,
    scope: &Scope,
    payment: &Payment,
) -> Result<Option<Attempt>, ApiError> {
    if payment.status != PaymentStatus::Processing {
        return Ok(None);
    }
    Ok(store::attempts(conn, scope, payment.id)?
        .into_iter()
        .find(|a| {
            matches!(
                a.status,
                AttemptStatus::RequiresCapture | AttemptStatus::RequiresAction
            )
        }))
}

/// Marks an attempt in flight for a call about it (guarded: of two concurrent calls, one
/// starts), and reads what the call needs.
fn begin_call(
    conn: &mut DbConnection,
    scope: &Scope,
    intent: Intent,
    read: &Attempt,
    next: Attempt,
    keyring: &Keyring,
) -> Result<Pending, ApiError> {
    if !store::move_attempt(conn, scope, read, &next)? {
        return Err(ApiError::Contention);
    }
    let source = sources_store::find(conn, scope, next.source_id)?
        .ok_or_else(|| ApiError::internal(format!("source {} vanished", next.source_id)))?;
    let payment = store::find(conn, scope, next.payment_id)?.ok_or(ApiError::NotFound)?;
    Ok(Pending {
        intent,
        account: account(conn, scope, &source, keyring)?,
        gateway_data: source.gateway_data.clone(),
        description: payment.description,
        attempt: next,
        unwritten: None,
    })
}

/// The second step: the gateway's answer, with no transaction open.
pub fn call(pending: &Pending) -> Result<Charge, Unknown> {
    let attempt = &pending.attempt;
    let gateway = gateways::find(&attempt.gateway)
        .ok_or_else(|| Unknown(format!("no gateway {}", attempt.gateway)))?;
    // A charge sent again is the charge as first sent: its capture and its description.
    let request = ChargeRequest {
        account: &pending.account,
        attempt: attempt.id,
        key: &attempt.call_key,
        reference: attempt.gateway_reference.as_deref(),
        amount: match pending.intent {
            Intent::Capture => attempt.operation_amount.unwrap_or(attempt.amount),
            _ => attempt.amount,
        },
        currency: attempt.currency,
        description: attempt
            .description
            .as_deref()
            .unwrap_or(&pending.description),
        gateway_data: &pending.gateway_data,
        capture: attempt.capture,
        resend: matches!(pending.intent, Intent::Ask { resend: true }),
    };
    let started = std::time::Instant::now();
    let (operation, answer) = match pending.intent {
        Intent::Charge { .. } => ("charge", gateway.charge(&request)),
        Intent::Capture => ("capture", gateway.capture(&request)),
        Intent::Release | Intent::Abandon => ("cancel", gateway.cancel(&request)),
        // Nothing to say yet: the attempt stays as it is.
        Intent::Ask { .. } => (
            "retrieve",
            gateway
                .retrieve(&request)
                .and_then(|answer| answer.ok_or_else(|| Unknown("nothing to say yet".into()))),
        ),
    };
    let outcome = if answer.is_ok() {
        "answered"
    } else {
        "unknown"
    };
    crate::metrics::provider_call(&attempt.gateway, operation, outcome, started.elapsed());
    answer
}

/// The third step: applies the gateway's answer, if the attempt still waits for it.
pub fn finish(
    conn: &mut DbConnection,
    scope: &Scope,
    pending: &Pending,
    outcome: &Result<Charge, Unknown>,
    base_url: &str,
) -> Result<PaymentView, ApiError> {
    if let Some(unwritten) = &pending.unwritten {
        // Answered in-process, so still in the transaction that began it (`Staged::in_process`).
        debug_assert!(crate::db::in_transaction(conn));
        return write_charge(conn, scope, unwritten, &pending.attempt, outcome, base_url);
    }
    let id = pending.attempt.payment_id;
    write_tx(conn, |conn| {
        let payment = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        let attempt = store::attempts(conn, scope, id)?
            .into_iter()
            .find(|a| a.id == pending.attempt.id)
            .ok_or_else(|| {
                ApiError::internal(format!("attempt {} vanished", pending.attempt.id))
            })?;
        // Answered meanwhile? A new charge's attempt has no reference until answered; a
        // capture or a release is in flight while its attempt is `processing`; what was
        // asked about has not changed since it was read.
        let in_flight = attempt.status == AttemptStatus::Processing;
        let waiting = match pending.intent {
            Intent::Charge { .. } => in_flight && attempt.gateway_reference.is_none(),
            Intent::Capture => in_flight && attempt.operation == Some(Operation::Capture),
            Intent::Release => in_flight && attempt.operation == Some(Operation::Release),
            Intent::Ask { .. } | Intent::Abandon => {
                (attempt.status, attempt.updated)
                    == (pending.attempt.status, pending.attempt.updated)
            }
        };
        if !waiting {
            if pending.intent == Intent::Release {
                // Released meanwhile (its provider's event came first): still cancelled.
                return cancel_released(conn, scope, id, base_url);
            }
            return Ok(payment.view(base_url));
        }
        let charge = match outcome {
            // Asked, the provider says what is known, or an older state of a capture or a
            // release still on its way: nothing to write.
            Ok(charge)
                if matches!(pending.intent, Intent::Ask { .. })
                    && !charging::is_news(&attempt, charge, now()) =>
            {
                return Ok(payment.view(base_url));
            }
            Ok(charge) => charge.clone(),
            Err(Unknown(cause)) => {
                log::warn!(
                    "attempt {} ({}): no answer, left in flight: {cause}",
                    attempt.id,
                    attempt.gateway
                );
                let view = payment.view(base_url);
                if let Intent::Charge { .. } = pending.intent {
                    // Processing from now on, for a while: listeners hear of it.
                    record(conn, scope, "payment.processing", &view)?;
                }
                return Ok(view);
            }
        };
        match pending.intent {
            Intent::Release => {
                // Its event is the cancel's.
                written(conn, scope, &payment, &attempt, charge, base_url, false)?;
                cancel_released(conn, scope, id, base_url)
            }
            _ => apply(conn, scope, &payment, &attempt, charge, base_url),
        }
    })
}

/// [`finish`] for a charge answered in-process: the charge's one write, of the payment, the
/// source and the attempt as its answer left them (or, with no answer, as it started: in
/// flight, for the reconciler), guarded by what `begin_charge` read in this transaction.
fn write_charge(
    conn: &mut DbConnection,
    scope: &Scope,
    unwritten: &Unwritten,
    started: &Attempt,
    outcome: &Result<Charge, Unknown>,
    base_url: &str,
) -> Result<PaymentView, ApiError> {
    let ((payment, source), (begun, pending)) = (&unwritten.read, &unwritten.started);
    let charged = match outcome {
        Ok(charge) => charged(begun, pending, started, charge.clone(), base_url)?,
        Err(Unknown(cause)) => {
            log::warn!(
                "a {} charge: no answer, left in flight: {cause}",
                started.gateway
            );
            charging::Charged {
                payment: begun.clone(),
                source: pending.clone(),
                attempt: started.clone(),
                event_type: "payment.processing".into(),
            }
        }
    };
    if !save(conn, scope, payment, &charged.payment)?
        || !sources_store::save(conn, scope, source, &charged.source)?
    {
        return Err(ApiError::Contention);
    }
    store::insert_attempt(conn, scope, &charged.attempt)?;
    let view = charged.payment.view(base_url);
    record(conn, scope, &charged.event_type, &view)?;
    record_source_change(conn, scope, pending, &charged.source)?;
    Ok(view)
}

/// After a release: the payment, failed by it, is cancelled as the merchant asked.
fn cancel_released(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    base_url: &str,
) -> Result<PaymentView, ApiError> {
    let current = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
    if current.status != PaymentStatus::Failed {
        // Captured meanwhile (or paid by hand): it stays as it is.
        return Ok(current.view(base_url));
    }
    let change = domain::cancel(&current, now())?;
    if !save(conn, scope, &current, &change.payment)? {
        return Err(ApiError::Contention);
    }
    let view = change.payment.view(base_url);
    record(conn, scope, &change.event_type, &view)?;
    Ok(view)
}

/// A gateway's word on an attempt in flight, written: the payment, the source and the
/// attempt, each with its event.
pub fn apply(
    conn: &mut DbConnection,
    scope: &Scope,
    payment: &Payment,
    attempt: &Attempt,
    charge: Charge,
    base_url: &str,
) -> Result<PaymentView, ApiError> {
    written(conn, scope, payment, attempt, charge, base_url, true)
}

/// [`apply`], with the payment's event left to the caller when `announce` is false.
fn written(
    conn: &mut DbConnection,
    scope: &Scope,
    payment: &Payment,
    attempt: &Attempt,
    charge: Charge,
    base_url: &str,
    announce: bool,
) -> Result<PaymentView, ApiError> {
    let source = sources_store::find(conn, scope, attempt.source_id)?
        .ok_or_else(|| ApiError::internal(format!("source {} vanished", attempt.source_id)))?;
    let charged = charged(payment, &source, attempt, charge, base_url)?;
    if !save(conn, scope, payment, &charged.payment)?
        || !sources_store::save(conn, scope, &source, &charged.source)?
        || !store::move_attempt(conn, scope, attempt, &charged.attempt)?
    {
        return Err(ApiError::Contention);
    }
    let view = charged.payment.view(base_url);
    if announce {
        record(conn, scope, &charged.event_type, &view)?;
    }
    record_source_change(conn, scope, &source, &charged.source)?;
    Ok(view)
}

/// [`charging::apply_charge`], with where to send the payer when the charge waits for
/// their authorization.
fn charged(
    payment: &Payment,
    source: &Source,
    attempt: &Attempt,
    charge: Charge,
    base_url: &str,
) -> Result<charging::Charged, ApiError> {
    let mut charged = charging::apply_charge(payment, source, attempt, charge, now())?;
    if charged.attempt.status == AttemptStatus::RequiresAction {
        let url = format!(
            "{base_url}/payments/{}/pay/?checkout={}",
            payment.id, payment.checkout_key
        );
        charged
            .source
            .gateway_data
            .insert("redirect_url".into(), url.into());
        charged.source.updated = now();
    }
    Ok(charged)
}

/// The source's event when a charge changed its status.
fn record_source_change(
    conn: &mut DbConnection,
    scope: &Scope,
    before: &Source,
    after: &Source,
) -> Result<(), ApiError> {
    if after.status == before.status {
        return Ok(());
    }
    let event = format!("source.{}", after.status.as_str());
    events::record(
        conn,
        scope,
        &event,
        "source",
        &after.id.to_string(),
        &after.view(),
    )?;
    Ok(())
}

/// All three steps of a charge, for callers with no idempotency key of their own (the
/// checkout page); one transaction when the gateway answers in-process, as in
/// `idempotency::answer_call`.
pub async fn authorize(
    db: &crate::db::Db,
    keyring: std::sync::Arc<Keyring>,
    scope: Scope,
    id: i64,
    source_id: i64,
    base_url: String,
    actor: Actor,
) -> Result<PaymentView, ApiError> {
    let (begun, at_once) = (scope.clone(), base_url.clone());
    let pending = db
        .write(move |conn| {
            write_tx(conn, |conn| {
                let pending = begin_charge(conn, &begun, id, source_id, actor, true, &keyring)?;
                if !crate::idempotency::Staged::in_process(&pending) {
                    return Ok(Err(pending));
                }
                let outcome = call(&pending);
                finish(conn, &begun, &pending, &outcome, &at_once).map(Ok)
            })
        })
        .await?;
    let pending = match pending {
        Ok(paid) => return Ok(paid),
        Err(pending) => pending,
    };
    let (pending, outcome) = actix_web::web::block(move || {
        let outcome = call(&pending);
        (pending, outcome)
    })
    .await
    .map_err(ApiError::internal)?;
    db.write(move |conn| finish(conn, &scope, &pending, &outcome, &base_url))
        .await
}

/// `POST /payments/{id}/settle/` (test mode): asks the sandbox now what it would say later
/// about the charge in flight. The sandbox answers in-process; providers are asked by the
/// reconciler, with no transaction open.
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
            .find(|a| a.status == AttemptStatus::Processing && a.gateway == "sandbox")
            .ok_or_else(nothing)?;
        let source = sources_store::find(conn, scope, attempt.source_id)?.ok_or_else(nothing)?;
        let reference = attempt.gateway_reference.clone().unwrap_or_default();
        // What the call on its way would have done: a capture takes what it asked for, a
        // release releases; a charge ends as its token does (held, when it was to be held).
        let answer = match attempt.operation {
            Some(Operation::Capture) => Charge::Succeeded {
                reference,
                amount: attempt.operation_amount,
            },
            Some(Operation::Release | Operation::Abandon) => Charge::Declined {
                reference,
                code: "canceled".into(),
            },
            Some(Operation::Charge) | None => {
                let asked = ChargeRequest {
                    account: &Account::default(),
                    attempt: attempt.id,
                    key: &attempt.call_key,
                    reference: attempt.gateway_reference.as_deref(),
                    amount: attempt.amount,
                    currency: attempt.currency,
                    description: &payment.description,
                    gateway_data: &source.gateway_data,
                    capture: attempt.capture,
                    resend: false,
                };
                // In-process: no call leaves the server.
                match gateway(&attempt.gateway)?.retrieve(&asked).ok().flatten() {
                    Some(Charge::Succeeded { reference, .. }) if !attempt.capture => {
                        Charge::RequiresCapture { reference }
                    }
                    Some(answer) => answer,
                    None => return Err(nothing()),
                }
            }
        };
        apply(conn, scope, &payment, &attempt, answer, base_url)
    })
}

/// Settles the sandbox charges in flight for longer than `after`, as a real gateway's
/// confirmation would arrive: what `cobro serve` runs every second. Returns how many.
pub fn settle_due_sandbox_charges(
    conn: &mut DbConnection,
    origin: &Arc<Origin>,
    after: chrono::Duration,
    base_url: &str,
) -> Result<usize, ApiError> {
    let due = store::due_sandbox_charges(conn, origin, now() - after, 100)?;
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
        let attempt = awaiting_payer(conn, scope, id)?
            .filter(|a| a.gateway == "sandbox")
            .ok_or_else(|| {
                ApiError::BadRequest("This payment has no charge waiting for authorization.".into())
            })?;
        let reference = attempt.gateway_reference.clone().unwrap_or_default();
        let answer = if approved {
            Charge::succeeded(reference)
        } else {
            Charge::Declined {
                reference,
                code: "authentication_failed".into(),
            }
        };
        apply(conn, scope, &payment, &attempt, answer, base_url)
    })
}

/// A call about an attempt in flight, read for the reconciler: to ask what became of it,
/// or to give it up when the payer abandoned it. None when it is no longer in flight.
pub fn begin_reconcile(
    conn: &mut DbConnection,
    scope: &Scope,
    attempt: i64,
    action_timeout: chrono::Duration,
    keyring: &Keyring,
) -> Result<Option<Pending>, ApiError> {
    let Some(attempt) = store::attempt(conn, scope, attempt)? else {
        return Ok(None);
    };
    if !matches!(
        attempt.status,
        AttemptStatus::Processing | AttemptStatus::RequiresAction
    ) {
        return Ok(None);
    }
    let now = now();
    let intent = if attempt.status == AttemptStatus::RequiresAction
        && attempt.updated < now - action_timeout
    {
        Intent::Abandon
    } else {
        let limit = chrono::Duration::from_std(gateways::CALL_LIMIT).unwrap_or_default();
        Intent::Ask {
            resend: attempt.created < now - limit,
        }
    };
    let source = sources_store::find(conn, scope, attempt.source_id)?
        .ok_or_else(|| ApiError::internal(format!("source {} vanished", attempt.source_id)))?;
    let payment = store::find(conn, scope, attempt.payment_id)?.ok_or(ApiError::NotFound)?;
    Ok(Some(Pending {
        intent,
        account: account(conn, scope, &source, keyring)?,
        gateway_data: source.gateway_data.clone(),
        description: payment.description,
        attempt,
        unwritten: None,
    }))
}

/// The payer is back from authenticating a charge at its provider (3-D Secure): a call to
/// ask the provider how it ended. None when no charge of the payment waits for its payer.
pub fn begin_ask(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    keyring: &Keyring,
) -> Result<Option<Pending>, ApiError> {
    payer::still_open(conn, scope, id)?;
    let Some(waiting) = awaiting_payer(conn, scope, id)? else {
        return Ok(None);
    };
    let source = sources_store::find(conn, scope, waiting.source_id)?
        .ok_or_else(|| ApiError::internal(format!("source {} vanished", waiting.source_id)))?;
    let payment = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
    Ok(Some(Pending {
        intent: Intent::Ask { resend: false },
        account: account(conn, scope, &source, keyring)?,
        gateway_data: source.gateway_data.clone(),
        description: payment.description,
        attempt: waiting,
        unwritten: None,
    }))
}

/// What a provider's event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Received {
    /// It moved a charge.
    Applied,
    /// It was received before: applied once already.
    Duplicate,
    /// It says nothing new of a charge cobro knows, or is of a kind cobro does not act on.
    Ignored,
    /// It is about a charge cobro does not know.
    Unknown,
}

/// A provider's event, checked by its gateway, applied once, in one transaction with the
/// record that it was received (so that a failure leaves it for the provider to send again).
pub fn receive(
    conn: &mut DbConnection,
    scope: &Scope,
    integration: &str,
    event: &gateways::ProviderEvent,
    base_url: &str,
) -> Result<Received, ApiError> {
    write_tx(conn, |conn| {
        let new = crate::integrations::store::record_event(
            conn,
            scope,
            integration,
            &event.id,
            &event.kind,
        )?;
        if !new {
            return Ok(Received::Duplicate);
        }
        match &event.subject {
            Subject::Charge {
                reference,
                key,
                charge: Some(charge),
            } => {
                let about = (reference.as_str(), key.as_deref());
                receive_charge(conn, scope, integration, event, about, charge, base_url)
            }
            Subject::Refund { .. } | Subject::RefundsOf { .. } => {
                crate::refunds::operations::receive(conn, scope, integration, event, base_url)
            }
            Subject::Charge { charge: None, .. } | Subject::Other => Ok(Received::Ignored),
        }
    })
}

/// A provider's event about a charge (`about`: its reference and the attempt's key).
fn receive_charge(
    conn: &mut DbConnection,
    scope: &Scope,
    integration: &str,
    event: &gateways::ProviderEvent,
    (reference, key): (&str, Option<&str>),
    charge: &Charge,
    base_url: &str,
) -> Result<Received, ApiError> {
    let found = store::attempt_for_provider(conn, scope, integration, reference, key)?;
    let Some(attempt) = found else {
        log::info!(
            "integration {integration}: event {} ({}) is about {reference}, which cobro does not know",
            event.id,
            event.kind,
        );
        return Ok(Received::Unknown);
    };
    let payment = store::find(conn, scope, attempt.payment_id)?.ok_or(ApiError::NotFound)?;
    let moved = matches!(charge, Charge::Succeeded { .. });
    if !attempt.status.in_flight() && moved && attempt.status != AttemptStatus::Succeeded {
        // The provider says money moved for a charge cobro closed: a person must look.
        log::error!(
            "integration {integration}: {} says {reference} succeeded, but attempt {} of payment {} is {}: reconcile by hand",
            event.kind,
            attempt.id,
            payment.id,
            attempt.status.as_str()
        );
        record(
            conn,
            scope,
            "payment.provider_mismatch",
            &payment.view(base_url),
        )?;
        return Ok(Received::Ignored);
    }
    if payment.status != PaymentStatus::Processing || !charging::is_news(&attempt, charge, now()) {
        return Ok(Received::Ignored);
    }
    apply(conn, scope, &payment, &attempt, charge.clone(), base_url)?;
    Ok(Received::Applied)
}
