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

use serde_json::{Map, Value};

use super::{Gateway, PreparedSource, Settlement};
use crate::error::FieldErrors;
use crate::money::Currency;

pub struct Stripe;

pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";
static API_BASE: OnceLock<String> = OnceLock::new();

/// Sets the API base for this process (`COBRO_STRIPE_API_BASE`); the first call wins.
pub fn configure(api_base: &str) {
    let _ = API_BASE.set(api_base.trim_end_matches('/').to_string());
}

#[allow(dead_code)]
fn api_base() -> &'static str {
    API_BASE.get().map_or(DEFAULT_API_BASE, String::as_str)
}

/// Credentials an integration takes: the secret key, and the webhook signing secret.
const SECRET_KEY: &str = "secret_key";
const WEBHOOK_SECRET: &str = "webhook_secret";

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
                other => {
                    errors.add(
                        "credentials",
                        format!("{other}: Stripe takes only secret_key and webhook_secret."),
                    );
                    continue;
                }
            };
            if !fits {
                let wanted = match name.as_str() {
                    SECRET_KEY => format!(
                        "secret_key: a {mode}-mode integration takes a {mode} secret key (sk_{mode}_… or rk_{mode}_…)."
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

    fn prepare(&self, _gateway_data: &Map<String, Value>) -> Result<PreparedSource, String> {
        Err("Stripe sources are not available yet.".into())
    }

    fn charge(&self, request: &super::ChargeRequest) -> Result<super::Charge, super::Unknown> {
        Ok(super::Charge::Declined {
            reference: String::new(),
            code: format!("unsupported (attempt {})", request.attempt),
        })
    }

    fn settlement(&self, _gateway_data: &Map<String, Value>) -> Option<Settlement> {
        None
    }
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
