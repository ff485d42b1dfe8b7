//! Refunds as values: the refund and its parts, the status machine, what a request asks
//! for, which charges a refund goes back through, and what a gateway's answer does. Pure
//! functions: no database, no HTTP.
//!
//! A refund sends back part of what a payment collected. It goes back through the charges
//! that collected it, newest first, each at most what that charge collected less what other
//! refunds took from it; what the merchant recorded by hand (a payment marked paid, or a
//! partial collection) goes back outside cobro and is recorded as returned at once. Each of
//! those is a part: one call to one gateway. The refund's status is its parts'.

use chrono::NaiveDateTime;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::{ApiError, FieldErrors};
use crate::gateways::Refunded;
use crate::http::fields::{Presence, Reader};
use crate::http::metadata::{apply_metadata, read_metadata, MetadataChange};
use crate::money::{Amount, Currency};
use crate::payments::charging::{Attempt, AttemptStatus};
use crate::payments::domain::{timestamp, Payment};
use crate::payments::status::PaymentStatus;
use crate::text_enum::text_enum;

text_enum!(
    /// A refund's (and a part's) state.
    RefundStatus {
        Pending = "pending",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
    }
);

impl RefundStatus {
    /// The allowed moves: a pending refund ends one way; a provider may later say one that
    /// succeeded failed after all (the card was closed: the money came back to the merchant).
    pub fn can_move_to(self, to: RefundStatus) -> bool {
        use RefundStatus::*;
        matches!(
            (self, to),
            (Pending, Succeeded | Failed | Cancelled) | (Succeeded, Failed)
        )
    }

    /// Whether it holds its amount: what is pending or went back cannot be refunded again.
    pub fn holds(self) -> bool {
        matches!(self, RefundStatus::Pending | RefundStatus::Succeeded)
    }
}

text_enum!(
    /// Why the merchant refunds (Stripe's reasons).
    RefundReason {
        Duplicate = "duplicate",
        Fraudulent = "fraudulent",
        RequestedByCustomer = "requested_by_customer",
    }
);

#[derive(Clone, Debug, PartialEq)]
pub struct Refund {
    pub id: i64,
    pub test_mode: bool,
    pub payment_id: i64,
    /// Minor units of the payment's currency.
    pub amount: i64,
    pub currency: Currency,
    pub reason: Option<RefundReason>,
    pub status: RefundStatus,
    pub failed_reason: Option<String>,
    pub metadata: Map<String, Value>,
    pub version: i64,
    pub created: NaiveDateTime,
    pub updated: NaiveDateTime,
}

/// What a refund sends back through one charge, or (no attempt) of money recorded by hand.
#[derive(Clone, Debug, PartialEq)]
pub struct RefundPart {
    pub id: i64,
    pub refund_id: i64,
    pub payment_id: i64,
    /// The charge it goes back through; None for money the merchant recorded by hand.
    pub attempt_id: Option<i64>,
    pub gateway: Option<String>,
    pub integration: Option<String>,
    pub amount: i64,
    pub currency: Currency,
    pub status: RefundStatus,
    pub failure_code: Option<String>,
    /// The gateway's reference of the refund: None until the gateway answered its call.
    pub gateway_reference: Option<String>,
    /// Random, unique across databases: the provider's idempotency key and its mark in the
    /// provider's metadata.
    pub call_key: String,
    /// The description the call carries (the payment's, when the refund was made): sent
    /// again, the call is the same.
    pub description: String,
    pub created: NaiveDateTime,
    pub updated: NaiveDateTime,
}

impl RefundPart {
    /// Its call went out and no answer is recorded yet.
    pub fn awaits_answer(&self) -> bool {
        self.status == RefundStatus::Pending
            && self.gateway.is_some()
            && self.gateway_reference.is_none()
    }

    /// The part moved to `to` by the merchant's word (a transfer sent back, or one called
    /// off), through the status machine's one check.
    pub fn moved(
        &self,
        to: RefundStatus,
        code: Option<String>,
        now: NaiveDateTime,
    ) -> Result<RefundPart, ApiError> {
        if !self.status.can_move_to(to) {
            return Err(ApiError::internal(format!(
                "refund part {} cannot move from {} to {}",
                self.id,
                self.status.as_str(),
                to.as_str()
            )));
        }
        Ok(RefundPart {
            status: to,
            failure_code: code,
            updated: now,
            ..self.clone()
        })
    }
}

/// A refund's `failed_reason` when part of it went back and the rest did not.
pub const PARTIALLY_REFUNDED: &str = "partially_refunded";

/// The refund object of the API.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = Refund)]
pub struct RefundView {
    pub id: i64,
    pub payment: i64,
    /// In the payment's currency, exact.
    #[schema(value_type = f64)]
    pub amount: Amount,
    pub currency: String,
    pub reason: Option<RefundReason>,
    pub status: RefundStatus,
    pub failed_reason: Option<String>,
    /// The gateway's reference of the refund (of its first part).
    pub gateway_reference: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub test_mode: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created: String,
    #[schema(value_type = String, format = DateTime)]
    pub updated: String,
    /// What went back (succeeded parts): the amount once it succeeded, less when part of a
    /// refund through several charges failed.
    #[schema(value_type = f64)]
    pub amount_refunded: Amount,
    /// Each charge it goes back through, newest first.
    pub parts: Vec<RefundPartView>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = RefundPart)]
pub struct RefundPartView {
    /// The payment attempt (charge) it goes back through; null for money recorded by hand,
    /// which goes back outside cobro.
    pub attempt: Option<i64>,
    pub gateway: Option<String>,
    #[schema(value_type = f64)]
    pub amount: Amount,
    pub status: RefundStatus,
    pub failed_reason: Option<String>,
    pub gateway_reference: Option<String>,
}

impl Refund {
    pub fn view(&self, parts: &[RefundPart]) -> RefundView {
        let money = |minor| Amount::new(self.currency, minor);
        RefundView {
            id: self.id,
            payment: self.payment_id,
            amount: money(self.amount),
            currency: self.currency.code.to_string(),
            reason: self.reason,
            status: self.status,
            failed_reason: self.failed_reason.clone(),
            gateway_reference: parts.iter().find_map(|p| p.gateway_reference.clone()),
            metadata: self.metadata.clone(),
            test_mode: self.test_mode,
            created: timestamp(self.created),
            updated: timestamp(self.updated),
            amount_refunded: money(refunded(parts)),
            parts: parts
                .iter()
                .map(|p| RefundPartView {
                    attempt: p.attempt_id,
                    gateway: p.gateway.clone(),
                    amount: money(p.amount),
                    status: p.status,
                    failed_reason: p.failure_code.clone(),
                    gateway_reference: p.gateway_reference.clone(),
                })
                .collect(),
        }
    }
}

/// What parts sent back: those that succeeded.
pub fn refunded(parts: &[RefundPart]) -> i64 {
    parts
        .iter()
        .filter(|p| p.status == RefundStatus::Succeeded)
        .map(|p| p.amount)
        .sum()
}

/// A create's fields: `payment` (unless the path names it), `amount` (default: all that is
/// left to refund), `reason`, `metadata`.
#[derive(Clone, Debug, Default)]
pub struct RefundInput {
    pub payment: Option<i64>,
    pub amount: Option<Decimal>,
    pub reason: Option<RefundReason>,
    pub metadata: Option<MetadataChange>,
}

impl RefundInput {
    /// `payment_in_path`: `POST /payments/{id}/refund/`, where the body names no payment.
    pub fn parse(
        body: &Map<String, Value>,
        payment_in_path: Option<i64>,
    ) -> Result<Self, ApiError> {
        let mut r = Reader::new(body, Presence::Full);
        let payment = match payment_in_path {
            Some(id) => Some(id),
            None => {
                r.require("payment");
                match r.pk("payment") {
                    crate::http::fields::Given::Value(id) => Some(id),
                    crate::http::fields::Given::Null => {
                        r.errors.add("payment", crate::http::fields::NOT_NULL);
                        None
                    }
                    crate::http::fields::Given::Absent => None,
                }
            }
        };
        let amount = match r.raw("amount") {
            None | Some(Value::Null) => None,
            Some(_) => crate::payments::domain::read_decimal(&mut r, "amount", false),
        };
        let reason = match r.raw("reason") {
            None | Some(Value::Null) => None,
            Some(_) => r.choice::<RefundReason>("reason"),
        };
        let metadata = read_metadata(&mut r, "metadata");
        r.finish().into_result()?;
        Ok(RefundInput {
            payment,
            amount,
            reason,
            metadata,
        })
    }
}

/// A PATCH: metadata, and the moves a merchant makes by hand for refunds it sends itself (a
/// bank transfer back).
#[derive(Clone, Debug, Default)]
pub struct RefundChange {
    pub metadata: Option<MetadataChange>,
    pub status: Option<RefundStatus>,
    pub failed_reason: Option<String>,
}

impl RefundChange {
    pub fn parse(body: &Map<String, Value>) -> Result<Self, ApiError> {
        let mut r = Reader::new(body, Presence::Partial);
        let metadata = read_metadata(&mut r, "metadata");
        let status = r.choice::<RefundStatus>("status");
        let failed_reason = r
            .string(
                "failed_reason",
                false,
                true,
                crate::payments::domain::MAX_REASON,
            )
            .sent()
            .flatten();
        let mut errors = r.finish();
        if failed_reason.is_some() && status != Some(RefundStatus::Failed) {
            errors.add(
                "failed_reason",
                "Only allowed when marking a refund \"failed\".",
            );
        }
        errors.into_result()?;
        Ok(RefundChange {
            metadata,
            status,
            failed_reason,
        })
    }
}

/// The new refund's metadata.
pub fn new_metadata(input: &RefundInput) -> Result<Map<String, Value>, ApiError> {
    let mut errors = FieldErrors::new();
    let metadata = apply_metadata(&Map::new(), input.metadata.as_ref(), false, &mut errors);
    errors.into_result()?;
    Ok(metadata)
}

/// One part of a refund about to be made: `amount` through the charge `attempt` (None: of
/// money recorded by hand).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    pub attempt: Option<i64>,
    pub amount: i64,
}

/// Which charges a refund of `amount` (None: all that is left) of `payment` goes back
/// through, given its charges and the parts of its earlier refunds: newest charges first,
/// each at most what it collected less what other refunds hold of it, then what the
/// merchant recorded by hand. Refuses what is not collected money, and more than is left.
pub fn plan(
    payment: &Payment,
    attempts: &[Attempt],
    earlier: &[RefundPart],
    amount: Option<i64>,
) -> Result<Vec<Share>, ApiError> {
    if !matches!(
        payment.status,
        PaymentStatus::Succeeded | PaymentStatus::Incomplete
    ) || payment.collected == 0
    {
        return Err(ApiError::field(
            "non_field_errors",
            format!(
                "The payment is \"{}\": only money collected (a succeeded or incomplete payment) can be refunded.",
                payment.status
            ),
        ));
    }
    let held = |attempt: Option<i64>| -> i64 {
        earlier
            .iter()
            .filter(|p| p.attempt_id == attempt && p.status.holds())
            .map(|p| p.amount)
            .sum()
    };
    let all_held: i64 = earlier
        .iter()
        .filter(|p| p.status.holds())
        .map(|p| p.amount)
        .sum();
    let left = (payment.collected - all_held).max(0);
    let currency = payment.currency;
    let amount =
        match amount {
            _ if left == 0 => return Err(ApiError::field(
                "amount",
                "Nothing is left to refund: all that was collected is refunded or being refunded.",
            )),
            None => left,
            Some(amount) if amount > left => {
                return Err(ApiError::field(
                    "amount",
                    format!(
                        "Ensure this value is less than or equal to {}, what is left to refund.",
                        currency.format(left)
                    ),
                ))
            }
            Some(amount) => amount,
        };
    let mut charges: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.status == AttemptStatus::Succeeded && a.amount > 0)
        .collect();
    charges.sort_by_key(|a| std::cmp::Reverse(a.id));
    let charged: i64 = charges.iter().map(|a| a.amount).sum();
    let mut room: Vec<(Option<i64>, i64)> = charges
        .iter()
        .map(|a| (Some(a.id), a.amount - held(Some(a.id))))
        .collect();
    room.push((None, (payment.collected - charged).max(0) - held(None)));
    let mut remaining = amount;
    let mut shares = Vec::new();
    for (attempt, room) in room {
        let take = remaining.min(room.max(0));
        if take > 0 {
            shares.push(Share {
                attempt,
                amount: take,
            });
            remaining -= take;
        }
    }
    if remaining > 0 {
        // The charges' own records hold less than the payment says it collected.
        return Err(ApiError::internal(format!(
            "payment {}: {remaining} of a refund fits none of its charges",
            payment.id
        )));
    }
    Ok(shares)
}

/// A part after its gateway's word: the status it says, and its reference (the first one
/// given is kept). A word that does not move the part changes nothing (None).
pub fn answered(part: &RefundPart, word: &Refunded, now: NaiveDateTime) -> Option<RefundPart> {
    let (status, reference, code) = match word {
        Refunded::Succeeded { reference } => (RefundStatus::Succeeded, reference, None),
        Refunded::Failed { reference, code } => {
            (RefundStatus::Failed, reference, Some(code.clone()))
        }
        Refunded::Pending { reference } => (RefundStatus::Pending, reference, None),
        Refunded::Cancelled { reference } => (RefundStatus::Cancelled, reference, None),
    };
    let reference = part
        .gateway_reference
        .clone()
        .or_else(|| Some(reference.clone()).filter(|r| !r.is_empty()));
    let moves = status != part.status && part.status.can_move_to(status);
    let learns = status == part.status && reference != part.gateway_reference;
    if !moves && !learns {
        return None;
    }
    Some(RefundPart {
        status,
        failure_code: code,
        gateway_reference: reference,
        updated: now,
        ..part.clone()
    })
}

/// A refund's status as its parts say: pending while one is; succeeded when all went back;
/// cancelled when all were called off; otherwise failed: with the failed part's reason when
/// nothing went back, or `partially_refunded` when some did (then `amount_refunded` says
/// how much, and each part how it ended). Never `succeeded` for less than its amount.
pub fn status_of(parts: &[RefundPart]) -> (RefundStatus, Option<String>) {
    use RefundStatus::*;
    if parts.iter().any(|p| p.status == Pending) {
        return (Pending, None);
    }
    if parts.iter().all(|p| p.status == Succeeded) {
        return (Succeeded, None);
    }
    if parts.iter().all(|p| p.status == Cancelled) {
        return (Cancelled, None);
    }
    if parts.iter().any(|p| p.status == Succeeded) {
        return (Failed, Some(PARTIALLY_REFUNDED.to_string()));
    }
    let failed = parts.iter().find(|p| p.status == Failed);
    (Failed, failed.and_then(|p| p.failure_code.clone()))
}

/// The refund moved to what its parts say, if that is a move (None: nothing changes).
pub fn settled(refund: &Refund, parts: &[RefundPart], now: NaiveDateTime) -> Option<Refund> {
    let (status, failed_reason) = status_of(parts);
    if (status, &failed_reason) == (refund.status, &refund.failed_reason) {
        return None;
    }
    if status != refund.status && !refund.status.can_move_to(status) {
        log::error!(
            "refund {}: its parts say {}, but it cannot move there from {}",
            refund.id,
            status.as_str(),
            refund.status.as_str()
        );
        return None;
    }
    Some(Refund {
        status,
        failed_reason,
        version: refund.version + 1,
        updated: now,
        ..refund.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::domain::{new_payment, PaymentInput};
    use serde_json::json;
    use RefundStatus::*;

    #[test]
    fn every_pair_of_the_status_table() {
        let allowed: &[(RefundStatus, &[RefundStatus])] = &[
            (Pending, &[Succeeded, Failed, Cancelled]),
            (Succeeded, &[Failed]),
            (Failed, &[]),
            (Cancelled, &[]),
        ];
        for (from, targets) in allowed {
            for to in [Pending, Succeeded, Failed, Cancelled] {
                assert_eq!(
                    from.can_move_to(to),
                    targets.contains(&to),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    fn payment(collected: i64, status: PaymentStatus) -> Payment {
        let body =
            json!({"amount": 1000, "currency": "CLP", "date": "2026-12-01", "description": "x"});
        let input = PaymentInput::parse(body.as_object().unwrap(), Presence::Full).unwrap();
        let mut p = new_payment(input, true, "k".into(), crate::db::now()).unwrap();
        p.id = 1;
        p.collected = collected;
        p.status = status;
        p
    }

    fn charge(id: i64, amount: i64, status: AttemptStatus) -> Attempt {
        let now = crate::db::now();
        Attempt {
            id,
            payment_id: 1,
            source_id: 1,
            gateway: "sandbox".into(),
            integration: None,
            call_key: format!("att_{id}"),
            amount,
            currency: Currency::parse("CLP").unwrap(),
            status,
            failure_code: None,
            gateway_reference: Some(format!("sbx_{id}")),
            capture: true,
            description: None,
            operation: None,
            operation_amount: None,
            created: now,
            updated: now,
        }
    }

    fn part(attempt: Option<i64>, amount: i64, status: RefundStatus) -> RefundPart {
        let now = crate::db::now();
        RefundPart {
            id: 0,
            refund_id: 0,
            payment_id: 1,
            attempt_id: attempt,
            gateway: attempt.map(|_| "sandbox".to_string()),
            integration: None,
            amount,
            currency: Currency::parse("CLP").unwrap(),
            status,
            failure_code: None,
            gateway_reference: None,
            call_key: "rfp_1".into(),
            description: String::new(),
            created: now,
            updated: now,
        }
    }

    fn shares(list: &[(Option<i64>, i64)]) -> Vec<Share> {
        list.iter()
            .map(|&(attempt, amount)| Share { attempt, amount })
            .collect()
    }

    #[test]
    fn a_refund_goes_back_through_the_newest_charges_first_never_more_than_each_took() {
        let paid = payment(1000, PaymentStatus::Succeeded);
        let charges = [
            charge(1, 600, AttemptStatus::Succeeded),
            charge(2, 100, AttemptStatus::Failed),
            charge(3, 400, AttemptStatus::Succeeded),
        ];
        assert_eq!(
            plan(&paid, &charges, &[], Some(700)).unwrap(),
            shares(&[(Some(3), 400), (Some(1), 300)])
        );
        // What other refunds hold (pending or gone back) is taken first; failed ones hold
        // nothing.
        let earlier = [
            part(Some(3), 300, Succeeded),
            part(Some(3), 100, Failed),
            part(Some(1), 50, Pending),
        ];
        assert_eq!(
            plan(&paid, &charges, &earlier, None).unwrap(),
            shares(&[(Some(3), 100), (Some(1), 550)])
        );
        let refused = plan(&paid, &charges, &earlier, Some(651)).unwrap_err();
        assert!(format!("{refused:?}").contains("less than or equal to 650"));
    }

    #[test]
    fn money_recorded_by_hand_goes_back_last_and_nothing_else_can() {
        // 300 charged, then 700 marked received by hand.
        let paid = payment(1000, PaymentStatus::Succeeded);
        let charges = [charge(1, 300, AttemptStatus::Succeeded)];
        assert_eq!(
            plan(&paid, &charges, &[], Some(500)).unwrap(),
            shares(&[(Some(1), 300), (None, 200)])
        );
        assert_eq!(
            plan(&paid, &[], &[], None).unwrap(),
            shares(&[(None, 1000)])
        );
        for status in [
            PaymentStatus::RequiresPaymentMethod,
            PaymentStatus::Processing,
            PaymentStatus::Failed,
            PaymentStatus::Cancelled,
        ] {
            assert!(
                plan(&payment(0, status), &[], &[], None).is_err(),
                "{status}"
            );
        }
        let partly = payment(400, PaymentStatus::Incomplete);
        assert_eq!(
            plan(&partly, &[], &[], None).unwrap(),
            shares(&[(None, 400)])
        );
        let all = [part(None, 400, Succeeded)];
        assert!(format!("{:?}", plan(&partly, &[], &all, None).unwrap_err())
            .contains("Nothing is left"));
    }

    #[test]
    fn a_refund_is_what_its_parts_say() {
        let one = |status| vec![part(Some(1), 100, status)];
        assert_eq!(status_of(&one(Pending)).0, Pending);
        assert_eq!(status_of(&one(Succeeded)).0, Succeeded);
        assert_eq!(status_of(&one(Cancelled)).0, Cancelled);
        let mut failed = part(Some(2), 50, Failed);
        failed.failure_code = Some("expired_or_canceled_card".into());
        assert_eq!(
            status_of(std::slice::from_ref(&failed)),
            (Failed, Some("expired_or_canceled_card".into()))
        );
        // Never succeeded for less than its amount: part went back, part did not.
        let mixed = vec![part(Some(1), 100, Succeeded), failed];
        assert_eq!(status_of(&mixed), (Failed, Some(PARTIALLY_REFUNDED.into())));
        assert_eq!(refunded(&mixed), 100);
        let called_off = vec![part(Some(1), 100, Succeeded), part(Some(2), 50, Cancelled)];
        assert_eq!(
            status_of(&called_off),
            (Failed, Some(PARTIALLY_REFUNDED.into()))
        );
        let none_back = vec![part(Some(1), 100, Failed), part(Some(2), 50, Cancelled)];
        assert_eq!(status_of(&none_back).0, Failed);
        // An answer moves a part only as the table allows, and learns its reference once.
        let now = crate::db::now();
        let sent = part(Some(1), 100, Pending);
        let accepted = answered(
            &sent,
            &Refunded::Pending {
                reference: "re_1".into(),
            },
            now,
        )
        .unwrap();
        assert_eq!(
            (accepted.status, accepted.gateway_reference.as_deref()),
            (Pending, Some("re_1"))
        );
        let again = Refunded::Pending {
            reference: "re_1".into(),
        };
        assert_eq!(answered(&accepted, &again, now), None, "nothing new");
        let done = answered(
            &accepted,
            &Refunded::Succeeded {
                reference: "re_1".into(),
            },
            now,
        )
        .unwrap();
        assert_eq!(done.status, Succeeded);
        assert_eq!(
            answered(
                &done,
                &Refunded::Cancelled {
                    reference: "re_1".into()
                },
                now
            ),
            None,
            "what went back is not called off"
        );
        let failed_late = Refunded::Failed {
            reference: "re_1".into(),
            code: "expired_or_canceled_card".into(),
        };
        assert_eq!(answered(&done, &failed_late, now).unwrap().status, Failed);
    }
}
