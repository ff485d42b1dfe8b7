//! Payers: whoever holds a payment's checkout key, the last part of its `checkout_url` (20
//! random letters and digits), which the merchant sends to the person who is to pay. The key
//! is a bearer credential for that one payment and for nothing else, and only while the
//! payment's `enable_checkout` is true: once it is turned off, or the payment is deleted,
//! every route below answers 404 as for a key that never existed. Knowing a payment's
//! integer id is never enough, and a key is never written to the log (the request line
//! names the route, `/pay/{key}/`). Requests are rate-limited per key, as per token.
//!
//! What a key lets its holder read and change, route by route:
//!
//! | route | reads | changes |
//! |---|---|---|
//! | `GET /pay/{key}/` | the workspace's name; the payment's description, amount, balance and status; the instructions of a bank transfer in flight | nothing |
//! | `POST /pay/{key}/` | the same page, or a redirect to the landing | a single-use source made from the form's choice (a sandbox test card in test mode, a bank transfer), bound to this payment, charged for the balance |
//! | `POST /sources/` with `"checkout": key` | the source it made | a single-use source for the balance, bound to this payment; `customer`, `usage: reusable` and `amount` are refused; refused while a charge is in flight and once the payment is `succeeded` or `cancelled` |
//! | `POST /payments/{id}/authorize/` with `"checkout": key` (the key's own payment only) | the payment, without the merchant's own references ([`PayerView`]) | a charge of a source made through this same checkout; any other source id, existing or not, answers as one that does not exist |
//! | `GET /payments/{id}/pay/?checkout=key` | the sandbox's authorization page for the charge waiting on the payer (test mode) | nothing |
//! | `POST /payments/{id}/pay/?checkout=key` | a redirect to the landing | approves or refuses the charge of this payment waiting on the payer, once |
//!
//! A key reads nothing else: not the payment's metadata, customer, invoice or other
//! sources, not other payments, not lists, events or webhooks, and a refusal names none of
//! them (an invoice that no longer has room is "This payment cannot be paid now"). A
//! succeeded or cancelled payment's key still shows its page (a receipt, or that it was
//! cancelled) but pays nothing. The pages answer every failure with a page, never JSON.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::audit::Origin;
use crate::db::{Db, DbConnection, Scope};
use crate::error::ApiError;
use crate::http::body::Body;
use crate::http::throttle::Throttle;
use crate::money::Amount;
use crate::payments::domain::{Payment, PaymentView};
use crate::payments::status::PaymentStatus;
use crate::payments::store as payment_store;

/// On whose authority a call acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// The merchant: a user's token or a workspace secret key.
    Merchant,
    /// A payer holding `payment`'s checkout key, and nothing else.
    Payer { payment: i64 },
}

impl Actor {
    /// The payment whose checkout key the call came with, if it came by key.
    pub fn checkout_payment(self) -> Option<i64> {
        match self {
            Actor::Merchant => None,
            Actor::Payer { payment } => Some(payment),
        }
    }
}

/// Who a payer-facing API call acts for, with its body.
pub struct Caller {
    pub scope: Scope,
    pub fields: Map<String, Value>,
    /// As idempotency keys are scoped: `Principal::credential`, or `checkout:<payment id>`.
    pub credential: String,
    pub actor: Actor,
}

/// Who a payer-facing API call acts for: the caller's credentials when it sends any (checked
/// before the body, as everywhere), otherwise the payment behind the `checkout` key in the
/// body.
pub async fn caller(req: &HttpRequest, body: Body) -> Result<Caller, ApiError> {
    use actix_web::FromRequest;
    if req.headers().contains_key(header::AUTHORIZATION) {
        let auth = crate::accounts::auth::Auth::extract(req).await?;
        return Ok(Caller {
            scope: auth.scope,
            fields: body.read().await?,
            credential: auth.principal.credential(),
            actor: Actor::Merchant,
        });
    }
    let fields = body.read().await?;
    let Some(key) = fields
        .get("checkout")
        .and_then(|k| k.as_str())
        .map(str::to_string)
    else {
        return Err(ApiError::NotAuthenticated);
    };
    throttle(req, &key)?;
    let db = req
        .app_data::<web::Data<Db>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("no database"))?;
    let found = db.run(move |conn| open_payment(conn, &key)).await?;
    let (scope, payment) = found.ok_or(ApiError::NotFound)?;
    Ok(Caller {
        scope,
        fields,
        credential: format!("checkout:{}", payment.id),
        actor: Actor::Payer {
            payment: payment.id,
        },
    })
}

/// Counts a request made with checkout key `key` against its rate, as a token's would be.
pub fn throttle(req: &HttpRequest, key: &str) -> Result<(), ApiError> {
    match req.app_data::<web::Data<Throttle>>() {
        Some(throttle) => throttle.check(&crate::accounts::digest(&format!("checkout:{key}"))),
        None => Ok(()),
    }
}

/// The payment behind a key, if its checkout is open.
pub fn open_payment(
    conn: &mut DbConnection,
    key: &str,
) -> Result<Option<(Scope, Payment)>, ApiError> {
    // Keys are 20 letters and digits; anything else (an integer id, say) is not one.
    if key.len() != 20 || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Ok(None);
    }
    // The payer acts in the request this runs for (its id follows the work to this thread).
    let request_id =
        crate::http::request_id::current().unwrap_or_else(crate::http::request_id::generate);
    let origin = Arc::new(Origin::new(crate::audit::Actor::Checkout, request_id));
    Ok(payment_store::find_by_checkout_key(conn, key, &origin)?.filter(|(_, p)| p.enable_checkout))
}

/// Inside a payer's write: the key's payment as it is now, if its checkout is still open
/// (the merchant may have turned it off since the key was looked up).
pub fn still_open(
    conn: &mut DbConnection,
    scope: &Scope,
    payment: i64,
) -> Result<Payment, ApiError> {
    payment_store::find(conn, scope, payment)?
        .filter(|p| p.enable_checkout)
        .ok_or(ApiError::NotFound)
}

/// Refuses a payer's new source for a payment that cannot be paid now: paid, cancelled, or
/// with a charge in flight (as the checkout page shows no form then).
pub fn check_payable(payment: &Payment) -> Result<(), ApiError> {
    let refused = match payment.status {
        PaymentStatus::Succeeded | PaymentStatus::Cancelled => format!(
            "The payment is \"{}\": there is nothing to pay.",
            payment.status
        ),
        PaymentStatus::Processing => {
            "A charge of this payment is in flight: wait for it to settle.".to_string()
        }
        PaymentStatus::RequiresPaymentMethod
        | PaymentStatus::Incomplete
        | PaymentStatus::Failed => return Ok(()),
    };
    Err(ApiError::field("non_field_errors", refused))
}

/// The payment as its payer sees it: what is being paid and how it stands, without the
/// merchant's own references (customer, invoice, subscription, sources, metadata, dates of
/// its books), which the checkout key does not open.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = PayerPayment)]
pub struct PayerView {
    pub id: i64,
    #[schema(value_type = f64)]
    pub amount: Amount,
    pub currency: String,
    pub description: String,
    #[schema(value_type = f64)]
    pub balance: Amount,
    pub status: PaymentStatus,
    pub failed_reason: Option<String>,
    pub return_url: Option<String>,
    pub test_mode: bool,
    pub checkout_url: Option<String>,
}

impl From<PaymentView> for PayerView {
    fn from(view: PaymentView) -> Self {
        PayerView {
            id: view.id,
            amount: view.amount,
            currency: view.currency,
            description: view.description,
            balance: view.balance,
            status: view.status,
            failed_reason: view.failed_reason,
            return_url: view.return_url,
            test_mode: view.test_mode,
            checkout_url: view.checkout_url,
        }
    }
}

/// A payment as the caller may see it: the merchant's whole view, or a payer's.
#[derive(Serialize)]
#[serde(untagged)]
pub enum ShownPayment {
    Merchant(Box<PaymentView>),
    Payer(PayerView),
}

impl Actor {
    /// `view` cut to what this actor may read.
    pub fn shown(self, view: PaymentView) -> ShownPayment {
        match self {
            Actor::Merchant => ShownPayment::Merchant(Box::new(view)),
            Actor::Payer { .. } => ShownPayment::Payer(view.into()),
        }
    }
}
