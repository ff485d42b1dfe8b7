//! Stripe, through PaymentIntents: a thin client of our own over `ureq` for the handful of
//! calls cobro makes (payment methods, payment intents, their capture and cancel), rather
//! than a generated SDK that would double the build on two cores.
//!
//! Every request sends only parameters that both Stripe and localstripe (the emulator the
//! tests run against) accept: the payment's description goes in `metadata`, with the
//! attempt's and the payment's ids, and the attempt's id is the `Idempotency-Key`, so that a
//! charge sent again is the same charge. Amounts are converted to Stripe's minor units
//! ([`to_stripe_amount`]), which differ from ISO 4217's for a few currencies. The API base
//! is a server setting (`COBRO_STRIPE_API_BASE`), never a tenant's.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{
    Account, Card, Charge, ChargeRequest, Gateway, PreparedSource, ProviderEvent, RefundRequest,
    Refunded, Refusal, Subject, Unknown,
};
use crate::error::FieldErrors;
use crate::money::Currency;

pub struct Stripe;

pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";
/// The API version cobro is written against; sent with every request, so that a change of
/// the account's default version changes nothing here.
const API_VERSION: &str = "2024-06-20";
pub const DEFAULT_JS_URL: &str = "https://js.stripe.com/v3/";

static API_BASE: OnceLock<String> = OnceLock::new();
static JS_URL: OnceLock<String> = OnceLock::new();

/// Sets, for this process, where Stripe's API is (`COBRO_STRIPE_API_BASE`) and where the
/// checkout page loads Stripe.js from (`COBRO_STRIPE_JS_URL`); the first call wins.
pub fn configure(api_base: &str, js_url: &str) {
    let _ = API_BASE.set(api_base.trim_end_matches('/').to_string());
    let _ = JS_URL.set(js_url.to_string());
}

/// Where the checkout page loads Stripe.js from.
pub fn js_url() -> &'static str {
    JS_URL.get().map_or(DEFAULT_JS_URL, String::as_str)
}

/// The origins the checkout page lets its scripts reach (its Content-Security-Policy):
/// Stripe.js's, the API's, and the frames Stripe.js opens for 3-D Secure.
pub fn origins() -> (String, String) {
    let origin = |url: &str| {
        url::Url::parse(url)
            .ok()
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default()
    };
    (origin(js_url()), origin(api_base()))
}

fn api_base() -> &'static str {
    API_BASE.get().map_or(DEFAULT_API_BASE, String::as_str)
}

/// Credentials an integration takes: the secret key, the webhook signing secret, and the
/// publishable key that the checkout page gives Stripe.js (public: shown in full).
const SECRET_KEY: &str = "secret_key";
const WEBHOOK_SECRET: &str = "webhook_secret";
pub const PUBLISHABLE_KEY: &str = "publishable_key";

impl Gateway for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn live(&self) -> bool {
        true
    }

    fn builtin(&self) -> bool {
        false
    }

    /// A test-mode integration takes only test keys (`sk_test_`, or a restricted
    /// `rk_test_`), a live one only live keys, so that test payments never move real money.
    fn check_credentials(
        &self,
        given: &Map<String, Value>,
        test_mode: bool,
        errors: &mut FieldErrors,
    ) -> Map<String, Value> {
        let mut kept = Map::new();
        let mode = if test_mode { "test" } else { "live" };
        for (name, value) in given {
            let Some(text) = value.as_str().map(str::trim).filter(|t| !t.is_empty()) else {
                errors.add(
                    "credentials",
                    format!("{name}: a non-empty string is required."),
                );
                continue;
            };
            let fits = match name.as_str() {
                SECRET_KEY => [format!("sk_{mode}_"), format!("rk_{mode}_")]
                    .iter()
                    .any(|prefix| text.starts_with(prefix.as_str()) && text.len() > prefix.len()),
                WEBHOOK_SECRET => text.starts_with("whsec_") && text.len() > 6,
                PUBLISHABLE_KEY => {
                    let prefix = format!("pk_{mode}_");
                    text.starts_with(&prefix) && text.len() > prefix.len()
                }
                other => {
                    errors.add(
                        "credentials",
                        format!("{other}: Stripe takes only secret_key, webhook_secret and publishable_key."),
                    );
                    continue;
                }
            };
            if !fits {
                let wanted = match name.as_str() {
                    SECRET_KEY => format!(
                        "secret_key: a {mode}-mode integration takes a {mode} secret key (sk_{mode}_… or rk_{mode}_…)."
                    ),
                    PUBLISHABLE_KEY => format!(
                        "publishable_key: a {mode}-mode integration takes a {mode} publishable key (pk_{mode}_…)."
                    ),
                    _ => "webhook_secret: Stripe's signing secrets start with whsec_.".to_string(),
                };
                errors.add("credentials", wanted);
                continue;
            }
            kept.insert(name.clone(), Value::String(text.to_string()));
        }
        kept
    }

    /// A PaymentMethod made in the payer's browser by Stripe.js (`"payment_method": "pm_…"`),
    /// or a card token (`"token": "tok_…"`, from Stripe.js's `createToken`): Stripe is asked
    /// for it, and the source keeps the id to charge and shows the card's brand and last four
    /// digits.
    fn prepare(
        &self,
        account: &Account,
        gateway_data: &Map<String, Value>,
    ) -> Result<PreparedSource, Refusal> {
        let id = |field: &str, prefixes: &[&str]| {
            gateway_data
                .get(field)
                .and_then(Value::as_str)
                .filter(|id| is_object_id(id) && prefixes.iter().any(|p| id.starts_with(p)))
        };
        let method = id("payment_method", &["pm_", "card_", "src_"]);
        let (kind, given) = match (method, id("token", &["tok_"])) {
            (Some(method), _) => ("payment_methods", method),
            (None, Some(token)) => ("tokens", token),
            _ => {
                return Err(Refusal::Invalid(
                    "Stripe needs a PaymentMethod made by Stripe.js in \"payment_method\" (pm_…), or a card token in \"token\" (tok_…)."
                        .into(),
                ))
            }
        };
        let path = format!("/v1/{kind}/{given}");
        let found = match call(account, "GET", &path, &[], None) {
            Ok(Reply::Answer(found)) => found,
            Ok(Reply::Refused { status: 404, .. }) => {
                return Err(Refusal::Invalid(format!(
                    "Stripe has no payment method {given} for this integration."
                )))
            }
            Ok(Reply::Refused { error, .. }) => {
                return Err(Refusal::Invalid(format!(
                    "Stripe refused the payment method: {}",
                    error_message(&error)
                )))
            }
            Err(Unknown(cause)) => return Err(Refusal::NoAnswer(cause)),
        };
        // A PaymentMethod has its card under `card`; a token's card is an object of its own
        // (which PaymentIntents take as a payment method), and so is a legacy card.
        let card = match text(&found, "object") {
            Some("card") => &found,
            _ => found.get("card").unwrap_or(&Value::Null),
        };
        let shown = text(card, "last4").map(|last4| Card {
            brand: text(card, "brand").unwrap_or("card").to_ascii_lowercase(),
            last4: last4.to_string(),
            exp_month: card.get("exp_month").and_then(Value::as_i64).unwrap_or(0) as i32,
            exp_year: card.get("exp_year").and_then(Value::as_i64).unwrap_or(0) as i32,
        });
        let charged = match kind {
            "tokens" => text(card, "id"),
            _ => text(&found, "id"),
        }
        .unwrap_or(given)
        .to_string();
        let mut kept = Map::new();
        kept.insert("payment_method".into(), Value::String(charged));
        Ok(PreparedSource {
            gateway_data: kept,
            card: shown,
        })
    }

    fn check_amount(&self, currency: Currency, amount: i64) -> Result<(), String> {
        to_stripe_amount(currency, amount).map(|_| ())
    }

    /// A PaymentIntent, confirmed at once: captured automatically, or held (`manual`).
    fn charge(&self, request: &ChargeRequest) -> Result<Charge, Unknown> {
        let amount = to_stripe_amount(request.currency, request.amount).map_err(Unknown)?;
        let method = request
            .gateway_data
            .get("payment_method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let form = [
            ("amount", amount.to_string()),
            ("currency", request.currency.code.to_ascii_lowercase()),
            ("payment_method", method.to_string()),
            ("payment_method_types[0]", "card".into()),
            ("confirm", "true".into()),
            (
                "capture_method",
                if request.capture {
                    "automatic"
                } else {
                    "manual"
                }
                .into(),
            ),
            ("metadata[cobro_attempt]", request.attempt.to_string()),
            ("metadata[cobro_key]", request.key.to_string()),
            (
                "metadata[description]",
                request.description.chars().take(500).collect(),
            ),
        ];
        let key = format!("cobro-{}-charge", request.key);
        answered(
            request,
            call(
                request.account,
                "POST",
                "/v1/payment_intents",
                &form,
                Some(&key),
            )?,
        )
    }

    fn capture(&self, request: &ChargeRequest) -> Result<Charge, Unknown> {
        let reference = reference_of(request)?;
        let amount = to_stripe_amount(request.currency, request.amount).map_err(Unknown)?;
        let path = format!("/v1/payment_intents/{reference}/capture");
        let form = [("amount_to_capture", amount.to_string())];
        let key = format!("cobro-{}-capture", request.key);
        let reply = call(request.account, "POST", &path, &form, Some(&key))?;
        as_it_is_now(request, reference, reply)
    }

    fn cancel(&self, request: &ChargeRequest) -> Result<Charge, Unknown> {
        let reference = reference_of(request)?;
        let path = format!("/v1/payment_intents/{reference}/cancel");
        let key = format!("cobro-{}-cancel", request.key);
        let reply = call(request.account, "POST", &path, &[], Some(&key))?;
        as_it_is_now(request, reference, reply)
    }

    fn parse_webhook(
        &self,
        account: &Account,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<ProviderEvent, String> {
        let secret = account.credential(WEBHOOK_SECRET);
        if secret.is_empty() {
            return Err(
                "This integration has no webhook_secret: set it to receive Stripe's events.".into(),
            );
        }
        let signature = signature.ok_or("The Stripe-Signature header is missing.")?;
        verify_signature(secret, signature, body, now)?;
        let event: Value =
            serde_json::from_slice(body).map_err(|e| format!("The event is not JSON: {e}"))?;
        let id = text(&event, "id")
            .ok_or("The event has no id.")?
            .to_string();
        let kind = text(&event, "type").unwrap_or_default().to_string();
        let object = event.pointer("/data/object").unwrap_or(&Value::Null);
        let reference = text(object, "id").unwrap_or_default().to_string();
        let key = object
            .pointer("/metadata/cobro_key")
            .and_then(Value::as_str)
            .map(str::to_string);
        let subject = match (text(object, "object"), kind.as_str()) {
            (Some("payment_intent"), kind) => {
                let currency = Currency::parse(text(object, "currency").unwrap_or_default());
                let charge = match currency {
                    Some(currency) if INTENT_EVENTS.contains(&kind) => {
                        charge_of(object, currency).ok()
                    }
                    _ => None,
                };
                Subject::Charge {
                    reference,
                    key,
                    charge,
                }
            }
            (Some("refund"), kind) if REFUND_EVENTS.contains(&kind) => match refund_of(object) {
                Ok(refund) => Subject::Refund {
                    reference,
                    key,
                    charge: text(object, "payment_intent").map(str::to_string),
                    refund,
                },
                Err(_) => Subject::Other,
            },
            // A charge's refunds changed; the event does not say which (Stripe no longer
            // includes them in the charge): cobro asks about those it has in flight.
            (Some("charge"), "charge.refunded") => match text(object, "payment_intent") {
                Some(intent) => Subject::RefundsOf {
                    charge: intent.to_string(),
                },
                None => Subject::Other,
            },
            _ => Subject::Other,
        };
        Ok(ProviderEvent { id, kind, subject })
    }

    /// A Refund of the PaymentIntent's charge. Stripe's own `reason` is not sent (the
    /// emulator refuses it): it goes in the metadata, with the part's key.
    fn refund(&self, request: &RefundRequest) -> Result<Refunded, Unknown> {
        let intent = checked(request.charge.unwrap_or_default())?;
        let amount = to_stripe_amount(request.currency, request.amount).map_err(Unknown)?;
        let mut form = vec![
            ("payment_intent", intent.to_string()),
            ("amount", amount.to_string()),
            ("metadata[cobro_refund_part]", request.part.to_string()),
            ("metadata[cobro_key]", request.key.to_string()),
            (
                "metadata[description]",
                request.description.chars().take(500).collect(),
            ),
        ];
        if let Some(reason) = request.reason {
            form.push(("metadata[reason]", reason.to_string()));
        }
        let key = format!("cobro-{}-refund", request.key);
        match call(request.account, "POST", "/v1/refunds", &form, Some(&key))? {
            Reply::Answer(refund) => refund_of(&refund),
            Reply::Refused { error, .. } if text(&error, "type") == Some("idempotency_error") => {
                Err(Unknown(format!(
                    "Stripe holds another request under this key: {}",
                    error_message(&error)
                )))
            }
            // Refused (already refunded, more than is left, a key without the permission):
            // nothing went back.
            Reply::Refused { status, error } => Ok(Refunded::Failed {
                reference: String::new(),
                code: match status {
                    401 => "invalid_api_key".to_string(),
                    403 => "permission_denied".to_string(),
                    _ => text(&error, "code").unwrap_or("refund_refused").to_string(),
                },
            }),
        }
    }

    /// The Refund as it is now: by its id, or (its creation's answer lost) by the part's
    /// key in the metadata of the PaymentIntent's refunds; when Stripe has none, the creation
    /// never arrived and is sent again, with the same idempotency key.
    fn retrieve_refund(&self, request: &RefundRequest) -> Result<Option<Refunded>, Unknown> {
        let found = match request.reference {
            Some(reference) => {
                let path = format!("/v1/refunds/{}", checked(reference)?);
                match call(request.account, "GET", &path, &[], None)? {
                    Reply::Answer(refund) => Some(refund),
                    Reply::Refused { error, .. } => {
                        return Err(Unknown(format!(
                            "Stripe did not show {reference}: {}",
                            error_message(&error)
                        )))
                    }
                }
            }
            None => {
                let intent = checked(request.charge.unwrap_or_default())?;
                let filter = [("payment_intent", intent.to_string())];
                find_listed(request.account, "/v1/refunds", &filter, request.key)?
            }
        };
        match found {
            Some(refund) => refund_of(&refund).map(Some),
            None if request.resend => self.refund(request).map(Some),
            None => Ok(None),
        }
    }

    /// The PaymentIntent as it is now. Without its id (the answer to its creation was
    /// lost), it is looked for by the attempt's id in its metadata; when Stripe has none,
    /// the creation never arrived and is sent again, with the same idempotency key.
    fn retrieve(&self, request: &ChargeRequest) -> Result<Option<Charge>, Unknown> {
        let found = match request.reference {
            Some(reference) => {
                let path = format!("/v1/payment_intents/{}", checked(reference)?);
                match call(request.account, "GET", &path, &[], None)? {
                    Reply::Answer(intent) => Some(intent),
                    Reply::Refused { error, .. } => {
                        return Err(Unknown(format!(
                            "Stripe did not show {reference}: {}",
                            error_message(&error)
                        )))
                    }
                }
            }
            None => find_by_key(request.account, request.key)?,
        };
        match found {
            Some(intent) => charge_of(&intent, request.currency).map(Some),
            None if request.resend => self.charge(request).map(Some),
            // Its creation may still be on its way: ask again later.
            None => Ok(None),
        }
    }
}

/// The events about a PaymentIntent that cobro applies; others are acknowledged and left.
const INTENT_EVENTS: &[&str] = &[
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.amount_capturable_updated",
    "payment_intent.processing",
    "payment_intent.requires_action",
];

/// The events about a Refund that cobro applies.
const REFUND_EVENTS: &[&str] = &[
    "refund.created",
    "refund.updated",
    "refund.failed",
    "charge.refund.updated",
];

/// A Refund's state as a refund's answer.
fn refund_of(refund: &Value) -> Result<Refunded, Unknown> {
    let reference = text(refund, "id")
        .ok_or_else(|| Unknown("a Refund without an id".into()))?
        .to_string();
    Ok(match text(refund, "status").unwrap_or_default() {
        "succeeded" => Refunded::Succeeded { reference },
        "pending" | "requires_action" => Refunded::Pending { reference },
        "failed" => Refunded::Failed {
            code: text(refund, "failure_reason")
                .unwrap_or("refund_failed")
                .to_string(),
            reference,
        },
        "canceled" => Refunded::Cancelled { reference },
        other => return Err(Unknown(format!("Refund {reference} is {other}"))),
    })
}

/// How far a signed event's time may be from now, in seconds (Stripe's own tolerance).
const SIGNATURE_TOLERANCE: i64 = 300;

/// Checks a `Stripe-Signature` header (`t=…,v1=…`, maybe several `v1`): an HMAC-SHA256 of
/// `"{t}.{body}"` under the webhook secret, compared in constant time, made within five
/// minutes of `now`.
pub fn verify_signature(secret: &str, header: &str, body: &[u8], now: i64) -> Result<(), String> {
    use hmac::{Hmac, Mac};
    let mut at = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => at = t.parse::<i64>().ok(),
            Some(("v1", v1)) => signatures.extend(hex::decode(v1).ok()),
            _ => {}
        }
    }
    let at = at.ok_or("The Stripe-Signature header has no time (t=).")?;
    if (now - at).abs() > SIGNATURE_TOLERANCE {
        return Err(
            "The event's signature is too old (or from the future): over 5 minutes.".into(),
        );
    }
    let signed = [at.to_string().as_bytes(), b".", body].concat();
    let valid = signatures.iter().any(|signature| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(&signed);
        mac.verify_slice(signature).is_ok()
    });
    if valid {
        Ok(())
    } else {
        Err("The Stripe-Signature does not match this integration's webhook secret.".into())
    }
}

/// Stripe's answer to a capture or a cancel. A refusal says nothing of the money (the
/// PaymentIntent may have been captured or paid meanwhile, elsewhere): the PaymentIntent is
/// read back and its state is the answer, or, unread, the outcome is unknown.
fn as_it_is_now(request: &ChargeRequest, reference: &str, reply: Reply) -> Result<Charge, Unknown> {
    match reply {
        Reply::Answer(intent) => charge_of(&intent, request.currency),
        Reply::Refused { error, .. } => {
            let path = format!("/v1/payment_intents/{reference}");
            match call(request.account, "GET", &path, &[], None)? {
                Reply::Answer(intent) => charge_of(&intent, request.currency),
                Reply::Refused { .. } => Err(Unknown(format!(
                    "Stripe refused the call about {reference} ({}) and does not show it",
                    error_message(&error)
                ))),
            }
        }
    }
}

/// Stripe's answer to a charge's creation, as a charge's answer.
fn answered(request: &ChargeRequest, reply: Reply) -> Result<Charge, Unknown> {
    match reply {
        Reply::Answer(intent) => charge_of(&intent, request.currency),
        // The same key with other parameters: the first call is what counts, so ask.
        Reply::Refused { error, .. } if text(&error, "type") == Some("idempotency_error") => {
            Err(Unknown(format!(
                "Stripe holds another request under this key: {}",
                error_message(&error)
            )))
        }
        // A card error (402) or a refusal (400, 401, 403, 404): no money moved.
        Reply::Refused { status, error } => {
            let reference = error
                .get("payment_intent")
                .and_then(|pi| text(pi, "id"))
                .or_else(|| text(&error, "charge"))
                .or(request.reference)
                .unwrap_or_default()
                .to_string();
            let code = match status {
                401 => "invalid_api_key".to_string(),
                403 => "permission_denied".to_string(),
                _ => text(&error, "decline_code")
                    .or_else(|| text(&error, "code"))
                    .unwrap_or(if status == 402 {
                        "card_declined"
                    } else {
                        "invalid_request"
                    })
                    .to_string(),
            };
            Ok(Charge::Declined { reference, code })
        }
    }
}

/// A PaymentIntent's state as a charge's answer.
fn charge_of(intent: &Value, currency: Currency) -> Result<Charge, Unknown> {
    let reference = text(intent, "id")
        .ok_or_else(|| Unknown("a PaymentIntent without an id".into()))?
        .to_string();
    Ok(match text(intent, "status").unwrap_or_default() {
        "succeeded" => Charge::Succeeded {
            reference,
            amount: intent
                .get("amount_received")
                .and_then(Value::as_i64)
                .and_then(|received| from_stripe_amount(currency, received)),
        },
        "requires_capture" => Charge::RequiresCapture { reference },
        "processing" => Charge::Pending {
            reference,
            instructions: None,
        },
        "requires_action" => Charge::RequiresAction {
            reference,
            client_secret: text(intent, "client_secret").map(str::to_string),
        },
        "canceled" => Charge::Declined {
            reference,
            code: "canceled".into(),
        },
        "requires_payment_method" => {
            let error = intent.get("last_payment_error").unwrap_or(&Value::Null);
            let code = text(error, "decline_code")
                .or_else(|| text(error, "code"))
                .unwrap_or("payment_failed")
                .to_string();
            Charge::Declined { reference, code }
        }
        other => return Err(Unknown(format!("PaymentIntent {reference} is {other}"))),
    })
}

/// The PaymentIntent made for an attempt, by the key in its metadata: Stripe's search, or
/// (where there is none, as in localstripe) its list.
fn find_by_key(account: &Account, key: &str) -> Result<Option<Value>, Unknown> {
    let mine = |intent: &&Value| {
        intent
            .get("metadata")
            .and_then(|m| text(m, "cobro_key"))
            .is_some_and(|k| k == key)
    };
    let query = [(
        "query",
        format!("metadata['cobro_key']:'{}'", checked(key)?),
    )];
    if let Reply::Answer(found) = call(account, "GET", "/v1/payment_intents/search", &query, None)?
    {
        let data = found.get("data").and_then(Value::as_array);
        return Ok(data.and_then(|d| d.iter().find(mine)).cloned());
    }
    find_listed(account, "/v1/payment_intents", &[], key)
}

/// The object of a Stripe list (`path`, narrowed by `filter`) whose metadata carries `key`,
/// page after page.
fn find_listed(
    account: &Account,
    path: &str,
    filter: &[(&str, String)],
    key: &str,
) -> Result<Option<Value>, Unknown> {
    let mine = |object: &&Value| {
        object
            .get("metadata")
            .and_then(|m| text(m, "cobro_key"))
            .is_some_and(|k| k == key)
    };
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let mut query = filter.to_vec();
        query.push(("limit", "100".to_string()));
        if let Some(after) = &after {
            query.push(("starting_after", after.clone()));
        }
        let page = match call(account, "GET", path, &query, None)? {
            Reply::Answer(page) => page,
            Reply::Refused { error, .. } => {
                return Err(Unknown(format!(
                    "Stripe did not list {path}: {}",
                    error_message(&error)
                )))
            }
        };
        let data = page
            .get("data")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(found) = data.iter().find(mine) {
            return Ok(Some(found.clone()));
        }
        let more = page
            .get("has_more")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        match data.last().and_then(|last| text(last, "id")) {
            Some(last) if more => after = Some(last.to_string()),
            _ => return Ok(None),
        }
    }
    Err(Unknown(format!(
        "too many objects at {path} to look through"
    )))
}

fn reference_of<'a>(request: &ChargeRequest<'a>) -> Result<&'a str, Unknown> {
    checked(request.reference.unwrap_or_default())
}

/// An id that may go into a path: letters, digits and `_` only.
fn checked(id: &str) -> Result<&str, Unknown> {
    if is_object_id(id) {
        Ok(id)
    } else {
        Err(Unknown(format!("not a Stripe id: {id:?}")))
    }
}

fn is_object_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn text<'a>(value: &'a Value, field: &str) -> Option<&'a str> {
    value.get(field).and_then(Value::as_str)
}

fn error_message(error: &Value) -> String {
    text(error, "message").unwrap_or("no message").to_string()
}

/// What Stripe said: an answer, or a refusal (a 4xx other than 409 and 429) with its
/// `error` object. No answer, a 5xx, a 409 (the same key still in flight) or a 429 (not
/// run) is `Unknown`: ask again later.
enum Reply {
    Answer(Value),
    Refused { status: u16, error: Value },
}

/// One call to Stripe's API with the integration's secret key, form-encoded.
fn call(
    account: &Account,
    method: &str,
    path: &str,
    form: &[(&str, String)],
    idempotency_key: Option<&str>,
) -> Result<Reply, Unknown> {
    let url = format!("{}{path}", api_base());
    let mut request = agent()
        .request(method, &url)
        .set(
            "Authorization",
            &format!("Bearer {}", account.credential(SECRET_KEY)),
        )
        .set("Stripe-Version", API_VERSION);
    if let Some(key) = idempotency_key {
        request = request.set("Idempotency-Key", key);
    }
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let result = if method == "GET" {
        for (name, value) in &pairs {
            request = request.query(name, value);
        }
        request.call()
    } else {
        request.send_form(&pairs)
    };
    let (status, response) = match result {
        Ok(response) => (response.status(), response),
        Err(ureq::Error::Status(status, response)) => (status, response),
        Err(ureq::Error::Transport(transport)) => {
            return Err(Unknown(format!("{method} {path}: {transport}")))
        }
    };
    let body: Value = response
        .into_string()
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .ok_or_else(|| {
            Unknown(format!(
                "{method} {path}: {status} with a body that is not JSON"
            ))
        })?;
    match status {
        200..=299 => Ok(Reply::Answer(body)),
        409 | 429 | 500.. => Err(Unknown(format!(
            "{method} {path}: {status} {}",
            error_message(body.get("error").unwrap_or(&Value::Null))
        ))),
        _ => Ok(Reply::Refused {
            status,
            error: body.get("error").cloned().unwrap_or(Value::Null),
        }),
    }
}

/// One client per process: 5 s to connect and 30 s to answer; no answer in time is an
/// unknown outcome, never a decline.
fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .redirects(0)
            .build()
    })
}

/// Whether `credentials` must hold a secret key (a new integration).
pub fn required_credentials() -> &'static [&'static str] {
    &[SECRET_KEY]
}

/// Stripe's zero-decimal currencies: an amount is whole units.
const ZERO_DECIMAL: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "VND", "VUV", "XAF",
    "XOF", "XPF",
];
/// Stripe's three-decimal currencies: thousandths, but the last digit must be 0.
const THREE_DECIMAL: &[&str] = &["BHD", "JOD", "KWD", "OMR", "TND"];
/// Zero-decimal currencies that Stripe still writes with two decimals, always `00`.
const WHOLE_IN_HUNDREDTHS: &[&str] = &["ISK", "UGX"];

/// How Stripe writes an amount of `currency`: (exponent of its integer amounts, the step an
/// amount must be a multiple of), or None when Stripe does not take the currency.
fn stripe_scale(currency: Currency) -> Option<(u32, i64)> {
    let code = currency.code;
    if ZERO_DECIMAL.contains(&code) {
        Some((0, 1))
    } else if THREE_DECIMAL.contains(&code) {
        Some((3, 10))
    } else if WHOLE_IN_HUNDREDTHS.contains(&code) {
        Some((2, 100))
    } else if currency.exponent == 2 {
        Some((2, 1))
    } else {
        // ISO's other three- and four-decimal currencies (IQD, LYD, CLF, UYW).
        None
    }
}

/// `minor` ISO 4217 minor units of `currency` as Stripe's integer amount, exactly, or why
/// Stripe cannot take it (before any call).
pub fn to_stripe_amount(currency: Currency, minor: i64) -> Result<i64, String> {
    let (exponent, step) = stripe_scale(currency)
        .ok_or_else(|| format!("Stripe does not take payments in {}.", currency.code))?;
    let amount = if exponent >= currency.exponent {
        minor.checked_mul(10i64.pow(exponent - currency.exponent))
    } else {
        let divisor = 10i64.pow(currency.exponent - exponent);
        (minor % divisor == 0).then_some(minor / divisor)
    };
    match amount {
        Some(amount) if amount % step == 0 => Ok(amount),
        _ => Err(format!(
            "Stripe takes {} only in steps of {}: {} does not fit.",
            currency.code,
            currency.for_people(from_step(currency, exponent, step)),
            currency.for_people(minor)
        )),
    }
}

/// Stripe's integer amount of `currency` as ISO 4217 minor units (None when it has a
/// fraction ISO does not, which Stripe never sends for amounts cobro asked for).
pub fn from_stripe_amount(currency: Currency, amount: i64) -> Option<i64> {
    let (exponent, _) = stripe_scale(currency)?;
    if currency.exponent >= exponent {
        amount.checked_mul(10i64.pow(currency.exponent - exponent))
    } else {
        let divisor = 10i64.pow(exponent - currency.exponent);
        (amount % divisor == 0).then_some(amount / divisor)
    }
}

/// The smallest step, in ISO minor units, for a message.
fn from_step(currency: Currency, exponent: u32, step: i64) -> i64 {
    if currency.exponent >= exponent {
        step * 10i64.pow(currency.exponent - exponent)
    } else {
        (step / 10i64.pow(exponent - currency.exponent)).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripe(code: &str, minor: i64) -> Result<i64, String> {
        to_stripe_amount(Currency::parse(code).unwrap(), minor)
    }

    #[test]
    fn a_webhook_signature_is_checked_in_full_and_in_time() {
        use hmac::{Hmac, Mac};
        let body = br#"{"id": "evt_1", "type": "payment_intent.succeeded"}"#;
        let sign = |secret: &str, at: i64| {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(format!("{at}.").as_bytes());
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        };
        let now = 1_800_000_000;
        let good = format!("t={now},v1={}", sign("whsec_a", now));
        assert_eq!(verify_signature("whsec_a", &good, body, now + 10), Ok(()));
        // Several v1s (a secret being rolled): one that matches is enough.
        let rolled = format!(
            "t={now},v1={},v1={}",
            sign("whsec_old", now),
            sign("whsec_a", now)
        );
        assert_eq!(verify_signature("whsec_a", &rolled, body, now), Ok(()));
        assert!(
            verify_signature("whsec_b", &good, body, now).is_err(),
            "another secret"
        );
        assert!(
            verify_signature("whsec_a", &good, b"{}", now).is_err(),
            "another body"
        );
        assert!(
            verify_signature("whsec_a", &good, body, now + 301).is_err(),
            "too old"
        );
        assert!(verify_signature(
            "whsec_a",
            &format!("v1={}", sign("whsec_a", now)),
            body,
            now
        )
        .is_err());
        assert!(verify_signature("whsec_a", &format!("t={now}"), body, now).is_err());
    }

    #[test]
    fn amounts_are_converted_to_stripes_units_exactly() {
        // ISO and Stripe agree: two decimals, and CLP or JPY whole.
        assert_eq!(stripe("USD", 1050), Ok(1050));
        assert_eq!(stripe("CLP", 1000), Ok(1000));
        assert_eq!(stripe("JPY", 1), Ok(1));
        assert_eq!(stripe("HUF", 12345), Ok(12345));
        // Three decimals, in tens of thousandths.
        assert_eq!(stripe("KWD", 1230), Ok(1230));
        assert!(stripe("KWD", 1234)
            .unwrap_err()
            .contains("steps of KWD 0.010"));
        // Whole units that Stripe writes in hundredths.
        assert_eq!(stripe("ISK", 5), Ok(500));
        assert_eq!(stripe("UGX", 7), Ok(700));
        // ISO's two-decimal MGA is whole at Stripe.
        assert_eq!(stripe("MGA", 500), Ok(5));
        assert!(stripe("MGA", 550).is_err());
        // Currencies Stripe does not take.
        assert!(stripe("CLF", 10000).unwrap_err().contains("does not take"));
        assert!(stripe("IQD", 1000).is_err());
        // And back.
        for (code, minor) in [
            ("USD", 1050),
            ("KWD", 1230),
            ("ISK", 5),
            ("MGA", 500),
            ("JPY", 3),
        ] {
            let currency = Currency::parse(code).unwrap();
            let amount = to_stripe_amount(currency, minor).unwrap();
            assert_eq!(from_stripe_amount(currency, amount), Some(minor), "{code}");
        }
    }
}
