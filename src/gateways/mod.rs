//! Gateways: what charges a source. Each is one module behind the small `Gateway` trait, so
//! a real provider is added as one more module and one line in `find`.

pub mod bank_transfer;
pub mod sandbox;
pub mod stripe;

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::money::Currency;

/// The card a source shows (never its number: brand and last four digits only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Card {
    pub brand: String,
    pub last4: String,
    pub exp_month: i32,
    pub exp_year: i32,
}

/// What a gateway keeps of a new source: its data to store and show, and its card.
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedSource {
    pub gateway_data: Map<String, Value>,
    pub card: Option<Card>,
}

/// A gateway's word on a charge: its answer when asked to charge, capture or release, or
/// when asked later what became of it.
#[derive(Clone, Debug, PartialEq)]
pub enum Charge {
    /// The money moved: the attempt's amount, or `amount` (ISO minor units) when the gateway
    /// says how much (a partial capture).
    Succeeded {
        reference: String,
        amount: Option<i64>,
    },
    /// Refused, with a reason code (`card_declined`, `insufficient_funds`, `canceled`, …).
    Declined { reference: String, code: String },
    /// Accepted, to be confirmed later (by the gateway, or by the merchant for a transfer).
    Pending {
        reference: String,
        instructions: Option<Value>,
    },
    /// The payer must authorize it on the gateway's page first (a redirect flow, 3-D
    /// Secure); `client_secret` lets the checkout page finish it with the provider's script.
    RequiresAction {
        reference: String,
        client_secret: Option<String>,
    },
    /// Authorized and held, for the merchant to capture or release (`capture: false`).
    RequiresCapture { reference: String },
}

impl Charge {
    pub fn succeeded(reference: String) -> Charge {
        Charge::Succeeded {
            reference,
            amount: None,
        }
    }
}

/// What a call to a gateway is about: a charge, or (with its reference) one in flight or held.
pub struct ChargeRequest<'a> {
    pub account: &'a Account,
    /// The attempt's id, for people.
    pub attempt: i64,
    /// The attempt's key: the provider's idempotency key, and in its metadata, so that a
    /// call sent again (or asked about later) is the same charge.
    pub key: &'a str,
    /// The gateway's own reference of the charge, once it gave one.
    pub reference: Option<&'a str>,
    /// ISO 4217 minor units: to charge, to capture.
    pub amount: i64,
    pub currency: Currency,
    pub description: &'a str,
    /// The source's data (the sandbox's token, a provider's payment method).
    pub gateway_data: &'a Map<String, Value>,
    /// False: authorize and hold, for a later capture.
    pub capture: bool,
    /// Asking about a charge whose answer was lost: when the provider has no trace of it,
    /// whether to send it again (only once its first call cannot still be running).
    pub resend: bool,
}

/// A call that got no answer (a timeout, a broken connection, a provider's 5xx): the charge
/// may or may not have happened. The attempt stays in flight until the provider is asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unknown(pub String);

/// A gateway's word on a refund: its answer when asked to refund, or when asked later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refunded {
    /// The money went back to the payer.
    Succeeded { reference: String },
    /// Refused, or failed on its way (a closed card), with a reason code: nothing went back.
    Failed { reference: String, code: String },
    /// Accepted, to be confirmed later (by the provider, or by the merchant for a transfer).
    Pending { reference: String },
    /// Called off before it went out.
    Cancelled { reference: String },
}

/// What a call about a refund is about: the refund of part of one charge.
pub struct RefundRequest<'a> {
    pub account: &'a Account,
    /// The refund part's id, for people.
    pub part: i64,
    /// The part's key: the provider's idempotency key, and in its metadata.
    pub key: &'a str,
    /// The charge's reference at the gateway (a PaymentIntent).
    pub charge: Option<&'a str>,
    /// The refund's own reference, once the gateway gave one.
    pub reference: Option<&'a str>,
    /// ISO 4217 minor units.
    pub amount: i64,
    pub currency: Currency,
    /// The charged source's data (the sandbox's token).
    pub gateway_data: &'a Map<String, Value>,
    pub reason: Option<&'a str>,
    /// The payment's description.
    pub description: &'a str,
    /// Asking about a refund whose answer was lost: when the provider has no trace of it,
    /// whether to send it again (only once its first call cannot still be running).
    pub resend: bool,
}

/// A provider's event, sent to an integration's webhook, checked and read.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderEvent {
    /// The provider's id of the event: each is applied once.
    pub id: String,
    pub kind: String,
    pub subject: Subject,
}

/// What a provider's event is about.
#[derive(Clone, Debug, PartialEq)]
pub enum Subject {
    /// A charge: the provider's reference, the attempt's key from its metadata, and what the
    /// event says of it (None for an event cobro does not act on).
    Charge {
        reference: String,
        key: Option<String>,
        charge: Option<Charge>,
    },
    /// A refund: the provider's reference, the part's key from its metadata, the charge it
    /// refunds, what it says.
    Refund {
        reference: String,
        key: Option<String>,
        charge: Option<String>,
        refund: Refunded,
    },
    /// The refunds of a charge changed, without saying which (Stripe's `charge.refunded`):
    /// those in flight are asked about now.
    RefundsOf { charge: String },
    /// Nothing cobro acts on.
    Other,
}

/// How long after being made a call to a provider may still be running (its connect and
/// answer timeouts, with a margin): before then, a charge not found at the provider may
/// still be on its way, and is not sent again.
pub const CALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(40);

/// Why a new source was not made: its data is refused (the message for `gateway_data`), or
/// the provider could not be asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Invalid(String),
    NoAnswer(String),
}

/// A workspace's account at a provider, opened from its integration for the calls of one
/// charge: the integration's id and its credentials. Never printed.
#[derive(Clone, Default)]
pub struct Account {
    pub integration: Option<String>,
    pub credentials: Map<String, Value>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Account({:?}, credentials hidden)", self.integration)
    }
}

impl Account {
    /// A credential by name (empty when missing: the provider then refuses the call).
    pub fn credential(&self, name: &str) -> &str {
        self.credentials
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

pub trait Gateway: Sync {
    fn name(&self) -> &'static str;
    /// Whether live-mode payments may use it (the sandbox is test mode only).
    fn live(&self) -> bool;
    /// Whether it works with no integration of the workspace's own (the sandbox and bank
    /// transfer are built in); a provider needs one, with the workspace's credentials.
    fn builtin(&self) -> bool {
        true
    }
    /// Checks the credentials an integration of this gateway is given, in `test_mode` or
    /// live, adding each problem to `errors`; returns the ones to keep.
    fn check_credentials(
        &self,
        _given: &Map<String, Value>,
        _test_mode: bool,
        errors: &mut crate::error::FieldErrors,
    ) -> Map<String, Value> {
        errors.add(
            "gateway",
            format!(
                "The {} gateway is built in: it takes no integration.",
                self.name()
            ),
        );
        Map::new()
    }
    /// Checks a new source's data, asking the provider about it where there is one: called
    /// with no database transaction open.
    fn prepare(
        &self,
        account: &Account,
        gateway_data: &Map<String, Value>,
    ) -> Result<PreparedSource, Refusal>;
    /// Whether it can charge `amount` minor units of `currency` at all (asked before any
    /// call, so that what it cannot take is a 400).
    fn check_amount(&self, _currency: Currency, _amount: i64) -> Result<(), String> {
        Ok(())
    }
    /// Charges a chargeable source (or holds the amount, `capture: false`). Called with no
    /// database transaction open (it may take seconds, or never answer), unless
    /// [`Gateway::answers_in_process`] says it answers at once.
    fn charge(&self, request: &ChargeRequest) -> Result<Charge, Unknown>;
    /// Whether it answers a charge of a source with this `gateway_data` (and its capture or
    /// release) in-process, at once and with no network: then the charge is made inside
    /// the transaction that begins it. A provider never does.
    fn answers_in_process(&self, _gateway_data: &Map<String, Value>) -> bool {
        false
    }
    /// Captures `request.amount` of what a charge holds; the rest is released.
    fn capture(&self, request: &ChargeRequest) -> Result<Charge, Unknown> {
        Err(Unknown(format!(
            "{} holds nothing to capture",
            request.attempt
        )))
    }
    /// Releases what a charge holds, or gives up one that waits on the payer: a
    /// `Declined` with the code `canceled` when done.
    fn cancel(&self, request: &ChargeRequest) -> Result<Charge, Unknown> {
        Err(Unknown(format!(
            "{} has nothing to release",
            request.attempt
        )))
    }
    /// What became of a charge in flight, as the gateway would answer if asked now (a lost
    /// answer, a restart): None while someone else decides (the merchant, the payer).
    fn retrieve(&self, request: &ChargeRequest) -> Result<Option<Charge>, Unknown>;
    /// Sends back `request.amount` of a charge that succeeded. Called with no database
    /// transaction open: it may take seconds, or never answer.
    fn refund(&self, request: &RefundRequest) -> Result<Refunded, Unknown>;
    /// What became of a refund in flight, as the gateway would answer if asked now: None
    /// while someone else decides (the merchant making a transfer).
    fn retrieve_refund(&self, request: &RefundRequest) -> Result<Option<Refunded>, Unknown>;
    /// Whether a pending refund may still be called off: one that has not gone out (the
    /// sandbox's, a transfer the merchant has not made). cobro records it, with no call.
    fn cancels_refunds(&self) -> bool {
        false
    }
    /// Whether `amount` of `currency` can go back in one refund (asked before any call).
    fn check_refund_amount(&self, currency: Currency, amount: i64) -> Result<(), String> {
        self.check_amount(currency, amount)
    }
    /// Whether the merchant says how a charge ends (a bank transfer they see arrive), rather
    /// than the gateway: only then may a merchant move a payment out of `processing`.
    fn settled_by_merchant(&self) -> bool {
        false
    }
    /// Checks and reads an event the provider sent to an integration's webhook (`signature`:
    /// its signature header; `now`: Unix seconds). The error is why it is refused (a 400).
    fn parse_webhook(
        &self,
        _account: &Account,
        _signature: Option<&str>,
        _body: &[u8],
        _now: i64,
    ) -> Result<ProviderEvent, String> {
        Err(format!("The {} gateway sends no webhooks.", self.name()))
    }
}

/// Every gateway, built-in ones first: the one registry of which exist.
pub const NAMES: [&str; 3] = ["sandbox", "bank_transfer", "stripe"];

pub fn find(name: &str) -> Option<&'static dyn Gateway> {
    match name {
        "sandbox" => Some(&sandbox::Sandbox),
        "bank_transfer" => Some(&bank_transfer::BankTransfer),
        "stripe" => Some(&stripe::Stripe),
        _ => None,
    }
}

/// A reference for a gateway operation: `prefix_` and 20 random characters.
fn reference(prefix: &str) -> String {
    crate::accounts::new_id(prefix)
}
