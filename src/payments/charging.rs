//! Paying a payment with a source: which amount a charge takes, and what each gateway answer
//! does to the payment, the source and the attempt. Pure functions, like `domain`.

use chrono::NaiveDateTime;
use serde::Serialize;
use utoipa::ToSchema;

use super::domain::{timestamp, Payment};
use super::status::PaymentStatus;
use crate::accounts::payer::Actor;
use crate::error::{ApiError, FieldErrors};
use crate::gateways::Charge;
use crate::http::fields::invalid_pk;
use crate::money::{Amount, Currency};
use crate::sources::domain::{Source, SourceStatus, Usage};

/// An attempt's state: the gateway's answer, or still in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    /// Waiting for the payer to authorize it (a redirect flow).
    RequiresAction,
    /// In flight: its gateway is being asked (to charge, capture or release), or will
    /// confirm it later.
    Processing,
    /// Authorized and held, for the merchant to capture or release.
    RequiresCapture,
    Succeeded,
    Failed,
}

impl AttemptStatus {
    pub const ALL: [AttemptStatus; 5] = [
        AttemptStatus::RequiresAction,
        AttemptStatus::Processing,
        AttemptStatus::RequiresCapture,
        AttemptStatus::Succeeded,
        AttemptStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::RequiresAction => "requires_action",
            AttemptStatus::Processing => "processing",
            AttemptStatus::RequiresCapture => "requires_capture",
            AttemptStatus::Succeeded => "succeeded",
            AttemptStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        AttemptStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Not ended: the gateway, the payer or the merchant still has a say.
    pub fn in_flight(self) -> bool {
        !matches!(self, AttemptStatus::Succeeded | AttemptStatus::Failed)
    }
}

/// One charge of a payment through a source.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    pub id: i64,
    pub payment_id: i64,
    pub source_id: i64,
    pub gateway: String,
    /// The integration it went through (none for the built-in sandbox and bank transfer).
    pub integration: Option<String>,
    /// Random, unique across databases: the provider's idempotency key and its mark in the
    /// provider's metadata.
    pub call_key: String,
    pub amount: i64,
    pub currency: Currency,
    pub status: AttemptStatus,
    pub failure_code: Option<String>,
    pub gateway_reference: Option<String>,
    /// As the charge was sent, so that sent again it is the same: captured at once (or
    /// held), with this description.
    pub capture: bool,
    pub description: Option<String>,
    /// The call about it on its way to the gateway, and a capture's amount: until its answer
    /// comes, an older state arriving late does not undo it.
    pub operation: Option<Operation>,
    pub operation_amount: Option<i64>,
    pub created: NaiveDateTime,
    pub updated: NaiveDateTime,
}

crate::text_enum::text_enum!(
    /// A call about an attempt, on its way to its gateway.
    Operation {
        Charge = "charge",
        Capture = "capture",
        Release = "release",
        Abandon = "abandon",
    }
);

/// How long after a call was made its answer may still come (see `gateways::CALL_LIMIT`).
fn call_limit() -> chrono::Duration {
    chrono::Duration::from_std(crate::gateways::CALL_LIMIT).unwrap_or_default()
}

/// Whether a gateway's word (an answer, an event, what it says when asked) moves an attempt
/// in flight. A final word (succeeded, declined) always does. One that is not final does not
/// repeat what is known, and does not undo a capture or a release still on its way: it may
/// be an older state arriving late. Once that call cannot be running any more, it does (the
/// call never arrived, and the attempt is as the gateway says).
pub fn is_news(attempt: &Attempt, charge: &Charge, now: NaiveDateTime) -> bool {
    if !attempt.status.in_flight() {
        return false;
    }
    let answered_final = matches!(charge, Charge::Succeeded { .. } | Charge::Declined { .. });
    if answered_final {
        return true;
    }
    let undoing = matches!(
        attempt.operation,
        Some(Operation::Capture | Operation::Release)
    ) && attempt.updated > now - call_limit();
    let known = status_of(charge) == attempt.status
        && attempt.gateway_reference.is_some()
        && attempt.operation.is_none();
    !undoing && !known
}

#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = PaymentAttempt)]
pub struct AttemptView {
    pub id: i64,
    pub payment: i64,
    pub source: i64,
    pub gateway: String,
    #[schema(value_type = f64)]
    pub amount: Amount,
    pub currency: String,
    pub status: AttemptStatus,
    pub failure_code: Option<String>,
    pub gateway_reference: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created: String,
    #[schema(value_type = String, format = DateTime)]
    pub updated: String,
}

impl Attempt {
    pub fn view(&self) -> AttemptView {
        AttemptView {
            id: self.id,
            payment: self.payment_id,
            source: self.source_id,
            gateway: self.gateway.clone(),
            amount: Amount::new(self.currency, self.amount),
            currency: self.currency.code.to_string(),
            status: self.status,
            failure_code: self.failure_code.clone(),
            gateway_reference: self.gateway_reference.clone(),
            created: timestamp(self.created),
            updated: timestamp(self.updated),
        }
    }
}

/// Whether `source` may pay `payment` when `actor` asks.
/// - A payer (a checkout key) may charge only a source made through this payment's checkout.
///   Any other answers exactly as a source that does not exist, so a stranger learns nothing.
/// - Whoever asks, a source made at a checkout pays only that payment, and a source that
///   belongs to a customer pays only that customer's payments (Stripe's rule for a
///   PaymentMethod attached to a customer).
pub fn check_source(payment: &Payment, source: &Source, actor: Actor) -> Result<(), ApiError> {
    if actor.checkout_payment().is_some() && source.checkout_payment != Some(payment.id) {
        return Err(ApiError::field("source", invalid_pk(source.id)));
    }
    if source.checkout_payment.is_some_and(|id| id != payment.id) {
        return Err(ApiError::field(
            "source",
            "This source was made at another payment's checkout: it can pay only that payment.",
        ));
    }
    if let Some(owner) = &source.customer {
        if payment.customer.as_ref() != Some(owner) {
            return Err(ApiError::field(
                "source",
                format!("This source belongs to customer {owner}: it can pay only that customer's payments."),
            ));
        }
    }
    Ok(())
}

/// How much a charge of `source` takes from `payment`: the source's amount, or the balance.
pub fn charge_amount(payment: &Payment, source: &Source) -> Result<i64, ApiError> {
    match payment.status {
        PaymentStatus::Succeeded | PaymentStatus::Cancelled => {
            return Err(ApiError::field(
                "non_field_errors",
                format!(
                    "The payment is \"{}\": there is nothing to charge.",
                    payment.status
                ),
            ))
        }
        PaymentStatus::Processing => {
            return Err(ApiError::field(
                "non_field_errors",
                "A charge of this payment is in flight: wait for it to settle.",
            ))
        }
        _ => {}
    }
    if source.status != SourceStatus::Chargeable {
        return Err(ApiError::field(
            "source",
            format!(
                "The source is \"{}\": only chargeable sources can pay.",
                source.status.as_str()
            ),
        ));
    }
    let Some(amount) = source.amount else {
        return Ok(payment.balance());
    };
    let minor = payment
        .currency
        .to_minor(amount)
        .map_err(|m| ApiError::field("source", format!("The source's amount: {m}")))?;
    if minor > payment.balance() {
        return Err(ApiError::field(
            "source",
            format!(
                "The source's amount ({}) is more than the payment's balance ({}).",
                payment.currency.format(minor),
                payment.currency.format(payment.balance())
            ),
        ));
    }
    Ok(minor)
}

/// A charge about to be sent: the payment moved to `processing` (a charge in flight, so no
/// other starts and the merchant cannot move it meanwhile), a single-use source `pending`
/// (it cannot pay elsewhere meanwhile), and the attempt, `processing`, to insert.
pub struct Started {
    pub payment: Payment,
    pub source: Source,
    pub attempt: Attempt,
}

pub fn start_charge(
    payment: &Payment,
    source: &Source,
    amount: i64,
    capture: bool,
    now: NaiveDateTime,
) -> Result<Started, ApiError> {
    let mut p = payment.clone();
    let mut s = source.clone();
    move_to(&mut p, PaymentStatus::Processing)?;
    p.failed_reason = None;
    p.source.get_or_insert(s.id);
    if !p.sources.contains(&s.id) {
        p.sources.push(s.id);
    }
    p.version += 1;
    p.updated = now;
    if s.usage == Usage::Single {
        s.status = SourceStatus::Pending;
        s.updated = now;
    }
    let attempt = Attempt {
        id: 0,
        payment_id: p.id,
        source_id: s.id,
        gateway: s.gateway.clone(),
        integration: s.integration.clone(),
        call_key: crate::accounts::new_id("att_"),
        amount,
        currency: p.currency,
        status: AttemptStatus::Processing,
        failure_code: None,
        gateway_reference: None,
        capture,
        description: Some(p.description.clone()),
        operation: Some(Operation::Charge),
        operation_amount: None,
        created: now,
        updated: now,
    };
    Ok(Started {
        payment: p,
        source: s,
        attempt,
    })
}

/// What a gateway's answer changed: the payment, the source, the attempt and the event.
pub struct Charged {
    pub payment: Payment,
    pub source: Source,
    pub attempt: Attempt,
    pub event_type: String,
}

/// Applies a gateway's answer to a charge started by [`start_charge`]: the payment (in
/// `processing`), its source and its attempt as they are now.
pub fn apply_charge(
    payment: &Payment,
    source: &Source,
    attempt: &Attempt,
    charge: Charge,
    now: NaiveDateTime,
) -> Result<Charged, ApiError> {
    let mut p = payment.clone();
    let mut s = source.clone();
    let mut a = attempt.clone();
    let (status, reference, code) = match charge {
        Charge::Succeeded { reference, amount } => {
            // What the gateway says moved, or else what a capture asked for (a partial
            // capture), never more than was held.
            let asked = attempt.operation_amount.unwrap_or(attempt.amount);
            a.amount = amount.unwrap_or(asked).clamp(0, attempt.amount);
            collect(&mut p, a.amount, now)?;
            (AttemptStatus::Succeeded, reference, None)
        }
        Charge::Declined { reference, code } => {
            fail(&mut p, &code)?;
            (AttemptStatus::Failed, reference, Some(code))
        }
        // Still in flight: the payment stays `processing`.
        Charge::Pending {
            reference,
            instructions,
        } => {
            if let Some(instructions) = instructions {
                s.gateway_data.insert("instructions".into(), instructions);
            }
            (AttemptStatus::Processing, reference, None)
        }
        Charge::RequiresAction {
            reference,
            client_secret,
        } => {
            if let Some(secret) = client_secret {
                s.gateway_data.insert("client_secret".into(), secret.into());
            }
            (AttemptStatus::RequiresAction, reference, None)
        }
        Charge::RequiresCapture { reference } => (AttemptStatus::RequiresCapture, reference, None),
    };
    if s.usage == Usage::Single {
        s.status = source_status(status);
    }
    if !status.in_flight() {
        // The charge is over: its secret for the payer's browser goes.
        s.gateway_data.remove("client_secret");
    }
    // A reusable source the answer left as it was stays as it was (`sources::store::save`
    // then writes nothing).
    if s != *source {
        s.updated = now;
    }
    p.version += 1;
    p.updated = now;
    a.operation = None;
    a.operation_amount = None;
    a.status = status;
    a.failure_code = code;
    if !reference.is_empty() {
        a.gateway_reference = Some(reference);
    }
    a.updated = now;
    let event_type = format!("payment.{}", p.status);
    Ok(Charged {
        payment: p,
        source: s,
        attempt: a,
        event_type,
    })
}

/// The attempt status a gateway's word puts an attempt in.
pub fn status_of(charge: &Charge) -> AttemptStatus {
    match charge {
        Charge::Succeeded { .. } => AttemptStatus::Succeeded,
        Charge::Declined { .. } => AttemptStatus::Failed,
        Charge::Pending { .. } => AttemptStatus::Processing,
        Charge::RequiresAction { .. } => AttemptStatus::RequiresAction,
        Charge::RequiresCapture { .. } => AttemptStatus::RequiresCapture,
    }
}

/// What a single-use source becomes with its charge.
pub fn source_status(attempt: AttemptStatus) -> SourceStatus {
    match attempt {
        AttemptStatus::Failed => SourceStatus::Failed,
        AttemptStatus::RequiresAction => SourceStatus::WaitingAuthorization,
        AttemptStatus::Processing | AttemptStatus::RequiresCapture | AttemptStatus::Succeeded => {
            SourceStatus::Consumed
        }
    }
}

/// Every status change of a charge goes through the status machine's one check.
fn move_to(p: &mut Payment, to: PaymentStatus) -> Result<(), ApiError> {
    if !p.status.can_move_to(to) {
        return Err(ApiError::internal(format!(
            "payment {} cannot move from {} to {to}",
            p.id, p.status
        )));
    }
    p.status = to;
    Ok(())
}

fn collect(p: &mut Payment, amount: i64, now: NaiveDateTime) -> Result<(), ApiError> {
    p.collected = (p.collected + amount).min(p.amount);
    p.failed_reason = None;
    if p.collected == p.amount {
        move_to(p, PaymentStatus::Succeeded)?;
        p.payment_date.get_or_insert(now);
    } else {
        move_to(p, PaymentStatus::Incomplete)?;
    }
    Ok(())
}

/// A failure never hides money already collected behind `failed`.
fn fail(p: &mut Payment, code: &str) -> Result<(), ApiError> {
    p.failed_reason = Some(code.to_string());
    if p.collected > 0 {
        move_to(p, PaymentStatus::Incomplete)
    } else {
        move_to(p, PaymentStatus::Failed)
    }
}

/// The source ids a payment names must be sources of its workspace and mode.
pub fn missing_sources(payment: &Payment, existing: &[i64]) -> FieldErrors {
    let mut errors = FieldErrors::new();
    if let Some(id) = payment.source.filter(|id| !existing.contains(id)) {
        errors.add("source", invalid_pk(id));
    }
    if let Some(id) = payment.sources.iter().find(|id| !existing.contains(id)) {
        errors.add("sources", invalid_pk(id));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::domain::{new_payment, PaymentInput};
    use crate::sources::domain::read_source;
    use serde_json::json;

    fn payment(id: i64, customer: Option<&str>) -> Payment {
        let body = json!({"amount": 1000, "currency": "CLP", "date": "2026-12-01", "description": "Order"});
        let input = PaymentInput::parse(
            body.as_object().unwrap(),
            crate::http::fields::Presence::Full,
        )
        .unwrap();
        let mut p = new_payment(input, true, "k".repeat(20), crate::db::now()).unwrap();
        p.id = id;
        p.customer = customer.map(str::to_string);
        p
    }

    fn source(customer: Option<&str>, checkout_payment: Option<i64>) -> Source {
        let body = json!({"gateway": "sandbox", "gateway_data": {"token": "tok_visa"}, "usage": "reusable"});
        let mut s = read_source(body.as_object().unwrap(), true, crate::db::now(), None)
            .unwrap()
            .source;
        s.id = 7;
        s.customer = customer.map(str::to_string);
        s.checkout_payment = checkout_payment;
        s
    }

    fn message(result: Result<(), ApiError>) -> Option<String> {
        match result {
            Ok(()) => None,
            Err(ApiError::Validation(errors)) => {
                let (field, message) = errors.iter().next().unwrap();
                assert_eq!(field, "source");
                Some(message.to_string())
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_payer_charges_only_what_its_own_checkout_made_and_learns_nothing_else() {
        let payer = Actor::Payer { payment: 1 };
        let missing = invalid_pk(7);
        assert_eq!(
            message(check_source(
                &payment(1, None),
                &source(None, Some(1)),
                payer
            )),
            None
        );
        for other in [
            source(None, None),
            source(None, Some(2)),
            source(Some("cus_a"), None),
        ] {
            assert_eq!(
                message(check_source(&payment(1, None), &other, payer)),
                Some(missing.clone())
            );
        }
    }

    #[test]
    fn a_charge_moves_the_payment_only_as_the_status_machine_allows() {
        let now = crate::db::now();
        let card = source(None, None);
        let started = start_charge(&payment(1, None), &card, 400, true, now).unwrap();
        assert_eq!(started.payment.status, PaymentStatus::Processing);
        assert_eq!(started.attempt.status, AttemptStatus::Processing);
        let paid = Charge::succeeded("sbx_1".into());
        let charged =
            apply_charge(&started.payment, &card, &started.attempt, paid.clone(), now).unwrap();
        assert_eq!(
            (charged.payment.status, charged.payment.collected),
            (PaymentStatus::Incomplete, 400)
        );
        assert_eq!(charged.event_type, "payment.incomplete");
        // An answer for a payment that is not in flight is refused, not forced.
        let mut settled = payment(1, None);
        settled.status = PaymentStatus::Succeeded;
        assert!(apply_charge(&settled, &card, &started.attempt, paid, now).is_err());
        assert!(start_charge(&settled, &card, 400, true, now).is_err());
        let declined = Charge::Declined {
            reference: "sbx_1".into(),
            code: "card_declined".into(),
        };
        let failed =
            apply_charge(&started.payment, &card, &started.attempt, declined, now).unwrap();
        assert_eq!(
            (failed.payment.status, failed.attempt.status),
            (PaymentStatus::Failed, AttemptStatus::Failed)
        );
        // A partial capture collects what the gateway says it took.
        let partial = Charge::Succeeded {
            reference: "sbx_1".into(),
            amount: Some(150),
        };
        let taken = apply_charge(&started.payment, &card, &started.attempt, partial, now).unwrap();
        assert_eq!((taken.payment.collected, taken.attempt.amount), (150, 150));
    }

    #[test]
    fn an_older_state_arriving_late_never_undoes_a_call_on_its_way() {
        let now = crate::db::now();
        let card = source(None, None);
        let started = start_charge(&payment(1, None), &card, 400, false, now).unwrap();
        let mut capturing = started.attempt.clone();
        capturing.gateway_reference = Some("pi_1".into());
        capturing.operation = Some(Operation::Capture);
        capturing.operation_amount = Some(300);
        let held = Charge::RequiresCapture {
            reference: "pi_1".into(),
        };
        assert!(
            !is_news(&capturing, &held, now),
            "a late amount_capturable_updated"
        );
        assert!(
            is_news(&capturing, &Charge::succeeded("pi_1".into()), now),
            "final"
        );
        // Once the capture cannot be running any more, the provider's word is the truth.
        let later = now + chrono::Duration::seconds(60);
        assert!(is_news(&capturing, &held, later));
        // What is known is no news; an attempt that ended takes none.
        let mut answered = capturing.clone();
        answered.status = AttemptStatus::RequiresCapture;
        answered.operation = None;
        assert!(!is_news(&answered, &held, now));
        answered.status = AttemptStatus::Failed;
        assert!(!is_news(&answered, &Charge::succeeded("pi_1".into()), now));
        // A capture collects what it asked for unless the gateway says otherwise.
        let captured = apply_charge(
            &started.payment,
            &card,
            &capturing,
            Charge::succeeded("pi_1".into()),
            now,
        )
        .unwrap();
        assert_eq!(
            (
                captured.attempt.amount,
                captured.payment.collected,
                captured.attempt.operation
            ),
            (300, 300, None)
        );
    }

    #[test]
    fn whoever_asks_a_bound_or_owned_source_pays_only_its_payment_or_customer() {
        let merchant = Actor::Merchant;
        assert_eq!(
            message(check_source(
                &payment(1, None),
                &source(None, None),
                merchant
            )),
            None
        );
        assert!(message(check_source(
            &payment(2, None),
            &source(None, Some(1)),
            merchant
        ))
        .unwrap()
        .contains("another payment's checkout"));
        let owned = source(Some("cus_a"), None);
        assert_eq!(
            message(check_source(&payment(1, Some("cus_a")), &owned, merchant)),
            None
        );
        for other in [payment(1, Some("cus_b")), payment(1, None)] {
            assert!(message(check_source(&other, &owned, merchant))
                .unwrap()
                .contains("belongs to customer cus_a"));
        }
    }
}
