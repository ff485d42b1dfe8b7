//! Refund flows. A refund through a gateway is three steps, as every provider call
//! (`payments::charges`):
//!
//! 1. [`begin`], one transaction: check what is left to refund, record the refund
//!    `pending` with its parts (which holds their amounts: a racing refund meets a changed
//!    payment, runs again and finds less left), and read what the calls need;
//! 2. [`call`], with no transaction open: each part's gateway, with the part's key as its
//!    idempotency key;
//! 3. [`finish`], a second transaction: each answer applied to its part as it is now, and
//!    the refund, the payment's `amount_refunded` and its invoice's moved with their events.
//!
//! An unknown outcome leaves the part pending for the reconciler, which asks the provider
//! (and sends the refund again, under the same key, only when the provider has no trace of
//! it and the first call cannot still be running). Other moves need no call: money recorded
//! by hand goes back outside cobro and is recorded as returned at once; a merchant marks the
//! bank transfers it sends back; a pending refund that has not gone out is called off.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::domain::{
    self, Refund, RefundChange, RefundInput, RefundPart, RefundStatus, RefundView,
};
use super::store::{self, RefundFilter};
use crate::audit::Origin;
use crate::db::{now, write_tx, DbConnection, Scope};
use crate::error::{ApiError, FieldErrors};
use crate::events::store as events;
use crate::gateways::{self, Account, ProviderEvent, RefundRequest, Refunded, Subject, Unknown};
use crate::http::metadata::apply_metadata;
use crate::http::pagination::{Page, PageRequest};
use crate::payments::charges::Received;
use crate::payments::charging::Attempt;
use crate::payments::domain::Payment;
use crate::payments::store as payments;
use crate::secrets::Keyring;
use crate::sources::store as sources;

/// What a call about a part asks of its gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// Send the refund.
    Refund,
    /// Ask what became of it (the reconciler); `resend`: send it again if the provider has
    /// no trace of it.
    Ask { resend: bool },
}

/// A call about one part, with what it needs, read in a transaction so that the call
/// itself opens none.
#[derive(Clone, Debug)]
pub struct Call {
    pub intent: Intent,
    pub part: RefundPart,
    pub account: Account,
    /// The charge's reference at its gateway.
    pub charge: Option<String>,
    pub gateway_data: Map<String, Value>,
    pub reason: Option<&'static str>,
}

/// A refund recorded, and the calls it still needs (none when no gateway is involved).
#[derive(Clone, Debug)]
pub struct Pending {
    pub refund: i64,
    pub calls: Vec<Call>,
    /// The refund as the first step recorded it.
    pub recorded: RefundView,
}

impl crate::idempotency::Staged for Pending {
    /// A refund is recorded (and money held for it) in the first step: never run twice for
    /// one key.
    fn moves_money(&self) -> bool {
        true
    }

    fn made(&self) -> Option<String> {
        Some(format!("/refunds/{}/", self.refund))
    }

    /// Once recorded, a refund exists whatever happens to its last step: the answer is then
    /// the refund as recorded (pending), never an error inviting a second refund.
    fn recorded(&self) -> Option<String> {
        serde_json::to_string(&self.recorded).ok()
    }
}

fn record(
    conn: &mut DbConnection,
    scope: &Scope,
    event_type: &str,
    view: &RefundView,
) -> Result<(), ApiError> {
    events::record(
        conn,
        scope,
        event_type,
        "refund",
        &view.id.to_string(),
        view,
    )
}

/// `POST /refunds/` (and `POST /payments/{id}/refund/`), first step.
pub fn begin(
    conn: &mut DbConnection,
    scope: &Scope,
    input: &RefundInput,
    keyring: &Keyring,
    base_url: &str,
) -> Result<Pending, ApiError> {
    let metadata = domain::new_metadata(input)?;
    let payment_id = input
        .payment
        .ok_or_else(|| ApiError::internal("a refund without its payment"))?;
    write_tx(conn, |conn| {
        // Another workspace's or mode's payment does not exist here.
        let payment = payments::find(conn, scope, payment_id)?.ok_or(ApiError::NotFound)?;
        let currency = payment.currency;
        let amount = input
            .amount
            .map(|amount| currency.to_minor(amount))
            .transpose()
            .map_err(|message| ApiError::field("amount", message))?;
        let attempts = payments::attempts(conn, scope, payment_id)?;
        let earlier = store::parts_of_payment(conn, scope, payment_id)?;
        let shares = domain::plan(&payment, &attempts, &earlier, amount)?;
        let at = now();
        let mut parts = Vec::new();
        let mut through = Vec::new();
        for share in &shares {
            let attempt = match share.attempt {
                Some(id) => Some(
                    attempts
                        .iter()
                        .find(|a| a.id == id)
                        .ok_or_else(|| ApiError::internal(format!("attempt {id} vanished")))?,
                ),
                None => None,
            };
            if let Some(attempt) = attempt {
                gateway(&attempt.gateway)?
                    .check_refund_amount(currency, share.amount)
                    .map_err(|refused| ApiError::field("amount", refused))?;
                check_integration(conn, scope, attempt)?;
            }
            through.push(attempt);
            parts.push(RefundPart {
                id: 0,
                refund_id: 0,
                payment_id,
                attempt_id: share.attempt,
                gateway: attempt.map(|a| a.gateway.clone()),
                integration: attempt.and_then(|a| a.integration.clone()),
                amount: share.amount,
                currency,
                // Money recorded by hand goes back outside cobro: returned at once.
                status: match attempt {
                    Some(_) => RefundStatus::Pending,
                    None => RefundStatus::Succeeded,
                },
                failure_code: None,
                gateway_reference: None,
                call_key: crate::accounts::new_id("rfp_"),
                description: payment.description.clone(),
                created: at,
                updated: at,
            });
        }
        let (status, failed_reason) = domain::status_of(&parts);
        let refund = store::insert(
            conn,
            scope,
            &Refund {
                id: 0,
                test_mode: scope.test_mode(),
                payment_id,
                amount: shares.iter().map(|s| s.amount).sum(),
                currency,
                reason: input.reason,
                status,
                failed_reason,
                metadata: metadata.clone(),
                version: 1,
                created: at,
                updated: at,
            },
        )?;
        let mut calls = Vec::new();
        let mut saved = Vec::new();
        for (part, attempt) in parts.iter().zip(through) {
            let part = store::insert_part(
                conn,
                scope,
                &RefundPart {
                    refund_id: refund.id,
                    ..part.clone()
                },
            )?;
            if let Some(attempt) = attempt {
                calls.push(call_for(
                    conn,
                    scope,
                    Intent::Refund,
                    &refund,
                    &part,
                    attempt,
                    keyring,
                )?);
            }
            saved.push(part);
        }
        let view = refund.view(&saved);
        record(conn, scope, "refund.created", &view)?;
        if refund.status != RefundStatus::Pending {
            record(
                conn,
                scope,
                &format!("refund.{}", refund.status.as_str()),
                &view,
            )?;
        }
        // The payment changes with every refund of it (its amount refunded, or only its
        // version): of two refunds racing for what is left, the second meets a changed
        // payment, runs again, and finds less left.
        sync_payment(conn, scope, &payment, true, base_url)?;
        Ok(Pending {
            refund: refund.id,
            calls,
            recorded: view,
        })
    })
}

/// A charge's money goes back through the integration it came through, even one disabled
/// since (money going back is never stopped), but not one deleted.
fn check_integration(
    conn: &mut DbConnection,
    scope: &Scope,
    attempt: &Attempt,
) -> Result<(), ApiError> {
    let Some(id) = &attempt.integration else {
        return Ok(());
    };
    if crate::integrations::store::find(conn, scope, id)?.is_none() {
        return Err(ApiError::field(
            "non_field_errors",
            format!("The integration {id} that charge {} went through no longer exists: its money cannot go back through cobro.", attempt.id),
        ));
    }
    Ok(())
}

fn gateway(name: &str) -> Result<&'static dyn gateways::Gateway, ApiError> {
    gateways::find(name).ok_or_else(|| ApiError::internal(format!("unknown gateway {name}")))
}

/// What a call about `part` (through `attempt`) needs.
fn call_for(
    conn: &mut DbConnection,
    scope: &Scope,
    intent: Intent,
    refund: &Refund,
    part: &RefundPart,
    attempt: &Attempt,
    keyring: &Keyring,
) -> Result<Call, ApiError> {
    let source = sources::find(conn, scope, attempt.source_id)?
        .ok_or_else(|| ApiError::internal(format!("source {} vanished", attempt.source_id)))?;
    let account = match &attempt.integration {
        Some(id) => crate::integrations::operations::account_of(conn, scope, id, keyring)?,
        None => Account::default(),
    };
    Ok(Call {
        intent,
        part: part.clone(),
        account,
        charge: attempt.gateway_reference.clone(),
        gateway_data: source.gateway_data,
        reason: refund.reason.map(|r| r.as_str()),
    })
}

/// The second step: each part's gateway, with no transaction open.
pub fn call(pending: &Pending) -> Vec<Result<Refunded, Unknown>> {
    pending.calls.iter().map(ask).collect()
}

fn ask(call: &Call) -> Result<Refunded, Unknown> {
    let part = &call.part;
    let name = part.gateway.as_deref().unwrap_or_default();
    let gateway = gateways::find(name).ok_or_else(|| Unknown(format!("no gateway {name}")))?;
    let request = RefundRequest {
        account: &call.account,
        part: part.id,
        key: &part.call_key,
        charge: call.charge.as_deref(),
        reference: part.gateway_reference.as_deref(),
        amount: part.amount,
        currency: part.currency,
        gateway_data: &call.gateway_data,
        reason: call.reason,
        description: &part.description,
        resend: matches!(call.intent, Intent::Ask { resend: true }),
    };
    let started = std::time::Instant::now();
    let (operation, answer) = match call.intent {
        Intent::Refund => ("refund", gateway.refund(&request)),
        Intent::Ask { .. } => (
            "retrieve_refund",
            gateway
                .retrieve_refund(&request)
                .and_then(|answer| answer.ok_or_else(|| Unknown("nothing to say yet".into()))),
        ),
    };
    let outcome = if answer.is_ok() {
        "answered"
    } else {
        "unknown"
    };
    crate::metrics::provider_call(name, operation, outcome, started.elapsed());
    answer
}

/// The third step: applies each answer to its part as the part is now (an answer moves a
/// part only forward, so what an event or the reconciler got to first is not undone), and
/// moves the refund, the payment and its invoice as the parts now say.
pub fn finish(
    conn: &mut DbConnection,
    scope: &Scope,
    pending: &Pending,
    outcomes: &[Result<Refunded, Unknown>],
    base_url: &str,
) -> Result<RefundView, ApiError> {
    write_tx(conn, |conn| {
        let mut moved = false;
        for (call, outcome) in pending.calls.iter().zip(outcomes) {
            let part = store::part(conn, scope, call.part.id)?.ok_or_else(|| {
                ApiError::internal(format!("refund part {} vanished", call.part.id))
            })?;
            match outcome {
                Err(Unknown(cause)) if part.awaits_answer() => log::warn!(
                    "refund part {} ({}): no answer, left pending: {cause}",
                    part.id,
                    part.gateway.as_deref().unwrap_or_default()
                ),
                Err(Unknown(_)) => {}
                Ok(word) => moved |= apply_word(conn, scope, &part, word)?,
            }
        }
        settle(conn, scope, pending.refund, None, moved, base_url)
    })
}

/// A gateway's word applied to a part as it is now (forward only); true when it moved the
/// part's status.
fn apply_word(
    conn: &mut DbConnection,
    scope: &Scope,
    part: &RefundPart,
    word: &Refunded,
) -> Result<bool, ApiError> {
    let Some(next) = domain::answered(part, word, now()) else {
        return Ok(false);
    };
    if !store::move_part(conn, scope, part, &next)? {
        return Err(ApiError::Contention);
    }
    Ok(next.status != part.status)
}

/// The refund as its parts now say (with `metadata` changed, if given), with its event, and
/// the payment's and invoice's amounts refunded moved with theirs. A part whose status moved
/// (`parts_moved`) without moving the refund (one of several failed while another is
/// pending) is a change too: `refund.updated`.
fn settle(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    metadata: Option<Map<String, Value>>,
    parts_moved: bool,
    base_url: &str,
) -> Result<RefundView, ApiError> {
    let refund = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
    let parts = store::parts(conn, scope, id)?;
    let at = now();
    let moved = domain::settled(&refund, &parts, at);
    let mut next = moved.clone().unwrap_or_else(|| refund.clone());
    let relabelled = metadata.filter(|m| *m != refund.metadata);
    if let Some(metadata) = &relabelled {
        next.metadata = metadata.clone();
    }
    if moved.is_some() || relabelled.is_some() || parts_moved {
        next.updated = at;
        if !store::save(conn, scope, &refund, &next)? {
            return Err(ApiError::Contention);
        }
        let view = next.view(&parts);
        let event = if next.status != refund.status {
            format!("refund.{}", next.status.as_str())
        } else {
            "refund.updated".to_string()
        };
        record(conn, scope, &event, &view)?;
    }
    let payment = payments::find(conn, scope, next.payment_id)?
        .ok_or_else(|| ApiError::internal(format!("payment {} vanished", next.payment_id)))?;
    sync_payment(conn, scope, &payment, false, base_url)?;
    Ok(next.view(&parts))
}

/// The payment's `amount_refunded` as its refunds' parts say, and its invoice's, each with
/// its event when it moved. `hold`: save the payment even when nothing moved (a new refund
/// holds part of what is left: concurrent ones meet a changed payment).
fn sync_payment(
    conn: &mut DbConnection,
    scope: &Scope,
    payment: &Payment,
    hold: bool,
    base_url: &str,
) -> Result<(), ApiError> {
    let parts = store::parts_of_payment(conn, scope, payment.id)?;
    let refunded = domain::refunded(&parts);
    let delta = refunded - payment.amount_refunded;
    if delta == 0 && !hold {
        return Ok(());
    }
    let mut next = payment.clone();
    next.version = payment.version + 1;
    if delta != 0 {
        next.amount_refunded = refunded;
        next.updated = now();
    }
    if !payments::save(conn, scope, payment, &next)? {
        return Err(ApiError::Contention);
    }
    if delta == 0 {
        return Ok(());
    }
    let view = next.view(base_url);
    events::record(
        conn,
        scope,
        "payment.refunded",
        "payment",
        &payment.id.to_string(),
        &view,
    )?;
    if let Some(invoice) = &payment.invoice {
        crate::invoices::operations::refunded(conn, scope, invoice, delta)?;
    }
    Ok(())
}

pub fn retrieve(conn: &mut DbConnection, scope: &Scope, id: i64) -> Result<RefundView, ApiError> {
    let refund = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
    let parts = store::parts(conn, scope, id)?;
    Ok(refund.view(&parts))
}

pub fn list(
    conn: &mut DbConnection,
    scope: &Scope,
    filter: &RefundFilter,
    page: &PageRequest,
) -> Result<Page<RefundView>, ApiError> {
    let count = store::count(conn, scope, filter)?;
    page.fetch(count, |offset, limit| {
        let refunds = store::list(conn, scope, filter, offset, limit)?;
        let mut views = Vec::with_capacity(refunds.len());
        for refund in refunds {
            let parts = store::parts(conn, scope, refund.id)?;
            views.push(refund.view(&parts));
        }
        Ok(views)
    })
}

/// `PATCH /refunds/{id}/`: metadata (merged), and the moves a merchant makes by hand: a
/// refund it sends back itself (a bank transfer) `succeeded` or `failed`, or `cancelled`
/// while it has not gone out.
pub fn update(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    change: &RefundChange,
    base_url: &str,
) -> Result<RefundView, ApiError> {
    write_tx(conn, |conn| {
        let refund = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        let mut errors = FieldErrors::new();
        let metadata = apply_metadata(
            &refund.metadata,
            change.metadata.as_ref(),
            true,
            &mut errors,
        );
        errors.into_result()?;
        match change.status {
            None => {}
            Some(to) if to == refund.status && change.failed_reason.is_none() => {}
            Some(to) if to == refund.status => {
                return Err(ApiError::field(
                    "failed_reason",
                    "Only allowed when marking a pending refund \"failed\".",
                ))
            }
            // In the shape of a field's error, as the other moves of a PATCH.
            Some(RefundStatus::Cancelled) => {
                call_off(conn, scope, &refund).map_err(|err| match err {
                    ApiError::BadRequest(message) => ApiError::field("status", message),
                    other => other,
                })?
            }
            Some(to @ (RefundStatus::Succeeded | RefundStatus::Failed)) => {
                mark_by_hand(conn, scope, &refund, to, change.failed_reason.clone())?
            }
            Some(RefundStatus::Pending) => {
                return Err(ApiError::field(
                    "status",
                    format!(
                        "Cannot move a refund from \"{}\" to \"pending\".",
                        refund.status.as_str()
                    ),
                ))
            }
        }
        settle(conn, scope, id, Some(metadata), true, base_url)
    })
}

/// A pending refund the merchant sends back itself (a bank transfer), marked done or failed.
fn mark_by_hand(
    conn: &mut DbConnection,
    scope: &Scope,
    refund: &Refund,
    to: RefundStatus,
    reason: Option<String>,
) -> Result<(), ApiError> {
    if refund.status != RefundStatus::Pending {
        return Err(ApiError::field(
            "status",
            format!(
                "Cannot move a refund from \"{}\" to \"{}\".",
                refund.status.as_str(),
                to.as_str()
            ),
        ));
    }
    let at = now();
    for part in store::parts(conn, scope, refund.id)? {
        if part.status != RefundStatus::Pending {
            continue;
        }
        let name = part.gateway.as_deref().unwrap_or_default();
        if !gateway(name)?.settled_by_merchant() {
            return Err(ApiError::field(
                "status",
                format!("This refund goes back through the {name} gateway: its answer decides how it ends."),
            ));
        }
        // The merchant's word ends it, even if the transfer's record never got its reference
        // (a crash between recording the refund and its answer): no provider is involved.
        let code = reason.clone().filter(|_| to == RefundStatus::Failed);
        let next = part.moved(to, code, at)?;
        if !store::move_part(conn, scope, &part, &next)? {
            return Err(ApiError::Contention);
        }
    }
    Ok(())
}

/// `POST /refunds/{id}/cancel/`: a pending refund that has not gone out is called off
/// (with no call: it is the sandbox's, or a transfer the merchant has not made), and what
/// it held is free to refund again.
pub fn cancel(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    base_url: &str,
) -> Result<RefundView, ApiError> {
    write_tx(conn, |conn| {
        let refund = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        call_off(conn, scope, &refund)?;
        settle(conn, scope, id, None, true, base_url)
    })
}

fn call_off(conn: &mut DbConnection, scope: &Scope, refund: &Refund) -> Result<(), ApiError> {
    if refund.status != RefundStatus::Pending {
        return Err(ApiError::BadRequest(format!(
            "This refund is \"{}\": only a pending refund can be cancelled.",
            refund.status.as_str()
        )));
    }
    let parts = store::parts(conn, scope, refund.id)?;
    if parts.iter().any(|p| p.status == RefundStatus::Succeeded) {
        return Err(ApiError::BadRequest(
            "Part of this refund already went back: it can no longer be cancelled.".into(),
        ));
    }
    for part in &parts {
        let name = part.gateway.as_deref().unwrap_or_default();
        let gateway = gateway(name)?;
        if !gateway.cancels_refunds() {
            return Err(ApiError::BadRequest(format!(
                "The {name} gateway does not let a refund be called off once it is sent."
            )));
        }
        // A transfer is the merchant's to call off whatever its record says; the sandbox's
        // answer may still be on its way.
        if part.awaits_answer() && !gateway.settled_by_merchant() {
            return Err(ApiError::BadRequest(
                "This refund's gateway is being asked: wait for its answer.".into(),
            ));
        }
    }
    let at = now();
    for part in parts.iter().filter(|p| p.status == RefundStatus::Pending) {
        let next = part.moved(RefundStatus::Cancelled, None, at)?;
        if !store::move_part(conn, scope, part, &next)? {
            return Err(ApiError::Contention);
        }
    }
    Ok(())
}

/// `POST /refunds/{id}/settle/` (test mode): asks the sandbox now what it would say later
/// about the refund's parts in flight. The sandbox answers in-process.
pub fn settle_now(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    base_url: &str,
) -> Result<RefundView, ApiError> {
    if !scope.test_mode() {
        return Err(ApiError::BadRequest(
            "Settling a refund by hand is only possible in test mode.".into(),
        ));
    }
    write_tx(conn, |conn| {
        let refund = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        let due: Vec<RefundPart> = store::parts(conn, scope, id)?
            .into_iter()
            .filter(|p| {
                p.status == RefundStatus::Pending && p.gateway.as_deref() == Some("sandbox")
            })
            .collect();
        if due.is_empty() {
            return Err(ApiError::BadRequest(
                "This refund has nothing in flight that its gateway settles.".into(),
            ));
        }
        let mut moved = false;
        for part in due {
            let attempt = part
                .attempt_id
                .and_then(|a| payments::attempt(conn, scope, a).transpose())
                .transpose()?
                .ok_or_else(|| {
                    ApiError::internal(format!("refund part {} has no charge", part.id))
                })?;
            let source = sources::find(conn, scope, attempt.source_id)?.ok_or_else(|| {
                ApiError::internal(format!("source {} vanished", attempt.source_id))
            })?;
            let call = Call {
                intent: Intent::Ask { resend: false },
                part: part.clone(),
                account: Account::default(),
                charge: attempt.gateway_reference.clone(),
                gateway_data: source.gateway_data,
                reason: refund.reason.map(|r| r.as_str()),
            };
            // In-process: no call leaves the server.
            if let Ok(word) = ask(&call) {
                moved |= apply_word(conn, scope, &part, &word)?;
            }
        }
        settle(conn, scope, id, None, moved, base_url)
    })
}

/// Settles the sandbox refunds pending for longer than `after`, as a real provider's
/// confirmation would arrive: run with the sandbox's charges, every second. Returns how many.
pub fn settle_due_sandbox_refunds(
    conn: &mut DbConnection,
    origin: &Arc<Origin>,
    after: chrono::Duration,
    base_url: &str,
) -> Result<usize, ApiError> {
    let due = store::due_sandbox_refunds(conn, origin, now() - after, 100)?;
    let mut settled = 0;
    for (scope, id) in due {
        match settle_now(conn, &scope, id, base_url) {
            Ok(_) => settled += 1,
            // Settled or called off meanwhile: nothing to do.
            Err(ApiError::BadRequest(_) | ApiError::NotFound) => {}
            Err(other) => log::warn!("settling sandbox refund {id}: {other}"),
        }
    }
    Ok(settled)
}

/// A provider's event about refunds (in the transaction that records it as received).
pub fn receive(
    conn: &mut DbConnection,
    scope: &Scope,
    integration: &str,
    event: &ProviderEvent,
    base_url: &str,
) -> Result<Received, ApiError> {
    match &event.subject {
        Subject::Refund {
            reference,
            key,
            charge,
            refund,
        } => {
            let found =
                store::part_for_provider(conn, scope, integration, reference, key.as_deref())?;
            let Some(part) = found else {
                let about = (reference.as_str(), charge.as_deref());
                return foreign_refund(conn, scope, integration, event, about, refund, base_url);
            };
            if domain::answered(&part, refund, now()).is_none() {
                return Ok(Received::Ignored);
            }
            let moved = apply_word(conn, scope, &part, refund)?;
            settle(conn, scope, part.refund_id, None, moved, base_url)?;
            Ok(Received::Applied)
        }
        Subject::RefundsOf { charge } => {
            let Some(attempt) =
                payments::attempt_for_provider(conn, scope, integration, charge, None)?
            else {
                return Ok(Received::Unknown);
            };
            // Which refund changed is not said: the reconciler asks about those in flight.
            match store::ask_now(conn, scope, attempt.id)? {
                0 => Ok(Received::Ignored),
                _ => Ok(Received::Applied),
            }
        }
        Subject::Charge { .. } | Subject::Other => Ok(Received::Ignored),
    }
}

/// A refund cobro did not make (in the provider's dashboard), or one whose key another
/// refund already answered: acknowledged and logged; when it is about a charge cobro knows
/// and says money went back, the payment gets a `payment.provider_mismatch` event for a
/// person to look at (its `amount_refunded` does not count it).
fn foreign_refund(
    conn: &mut DbConnection,
    scope: &Scope,
    integration: &str,
    event: &ProviderEvent,
    (reference, charge): (&str, Option<&str>),
    refund: &Refunded,
    base_url: &str,
) -> Result<Received, ApiError> {
    let attempt = match charge {
        Some(charge) => payments::attempt_for_provider(conn, scope, integration, charge, None)?,
        None => None,
    };
    let Some(attempt) = attempt.filter(|_| matches!(refund, Refunded::Succeeded { .. })) else {
        log::info!(
            "integration {integration}: event {} ({}) is about refund {reference}, which cobro does not know",
            event.id,
            event.kind
        );
        return Ok(Received::Unknown);
    };
    log::error!(
        "integration {integration}: refund {reference} of payment {} went back, but cobro did not make it: reconcile by hand",
        attempt.payment_id
    );
    let payment = payments::find(conn, scope, attempt.payment_id)?.ok_or(ApiError::NotFound)?;
    events::record(
        conn,
        scope,
        "payment.provider_mismatch",
        "payment",
        &payment.id.to_string(),
        &payment.view(base_url),
    )?;
    Ok(Received::Unknown)
}

/// A call to ask about a part in flight, for the reconciler; None when it no longer is.
pub fn begin_reconcile(
    conn: &mut DbConnection,
    scope: &Scope,
    part: i64,
    keyring: &Keyring,
) -> Result<Option<Pending>, ApiError> {
    let Some(part) = store::part(conn, scope, part)? else {
        return Ok(None);
    };
    let Some(attempt_id) = part
        .attempt_id
        .filter(|_| part.status == RefundStatus::Pending)
    else {
        return Ok(None);
    };
    let refund = store::find(conn, scope, part.refund_id)?
        .ok_or_else(|| ApiError::internal(format!("refund {} vanished", part.refund_id)))?;
    let attempt = payments::attempt(conn, scope, attempt_id)?
        .ok_or_else(|| ApiError::internal(format!("attempt {attempt_id} vanished")))?;
    // The refund's parts are called one after another: the last one's call may start as
    // late as the others' calls allow.
    let parts = store::parts(conn, scope, refund.id)?.len().max(1) as i32;
    let limit = chrono::Duration::from_std(gateways::CALL_LIMIT).unwrap_or_default() * parts;
    let resend = part.awaits_answer() && part.created < now() - limit;
    let call = call_for(
        conn,
        scope,
        Intent::Ask { resend },
        &refund,
        &part,
        &attempt,
        keyring,
    )?;
    Ok(Some(Pending {
        recorded: refund.view(&[]),
        refund: refund.id,
        calls: vec![call],
    }))
}
