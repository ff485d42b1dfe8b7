//! Sources as values: the typed source, what a create body asks for, and the view.

use chrono::NaiveDateTime;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::{ApiError, FieldErrors};
use crate::gateways::{self, Card, PreparedSource};
use crate::http::fields::{Presence, Reader};
use crate::http::metadata::{apply_metadata, read_metadata};
use crate::money::parse_decimal;
use crate::payments::domain::timestamp;
use crate::text_enum::text_enum;

/// Keys that would mean a raw card reached us: refused, never stored.
const CARD_SECRETS: [&str; 6] = ["number", "card_number", "pan", "cvc", "cvv", "cvv2"];

text_enum!(
    /// Single-use sources are consumed by their first charge; reusable ones stay chargeable.
    Usage { Single = "single", Reusable = "reusable" }
);

text_enum!(
    /// Only `chargeable` sources can pay.
    SourceStatus {
        Pending = "pending",
        RequiresAuthorization = "requires_authorization",
        WaitingAuthorization = "waiting_authorization",
        Chargeable = "chargeable",
        Consumed = "consumed",
        Failed = "failed",
        Finalized = "finalized",
    }
);

#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub id: i64,
    pub test_mode: bool,
    pub gateway: String,
    pub usage: Usage,
    pub customer: Option<String>,
    /// What the source may pay, in the currency of the payment it pays; None: the balance.
    pub amount: Option<Decimal>,
    pub description: Option<String>,
    pub status: SourceStatus,
    pub return_url: Option<String>,
    pub gateway_data: Map<String, Value>,
    pub card: Option<Card>,
    pub metadata: Map<String, Value>,
    /// The payment whose checkout made this source (a payer's): it can pay only that one.
    pub checkout_payment: Option<i64>,
    /// The integration it charges through (none for the built-in gateways).
    pub integration: Option<String>,
    pub version: i64,
    pub created: NaiveDateTime,
    pub updated: NaiveDateTime,
}

/// The source object of the API.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = Source)]
pub struct SourceView {
    pub id: i64,
    pub gateway: String,
    pub usage: Usage,
    pub customer: Option<String>,
    #[schema(value_type = Option<f64>)]
    pub amount: Option<crate::money::Amount>,
    pub description: Option<String>,
    pub status: SourceStatus,
    pub return_url: Option<String>,
    #[schema(value_type = Object)]
    pub gateway_data: Map<String, Value>,
    pub card: Option<Card>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    /// Extension, read-only: the payment whose checkout made this source (a payer made it
    /// with the checkout key); such a source can pay only that payment. Null otherwise.
    pub checkout_payment: Option<i64>,
    /// The integration it charges through (`int_…`), or the built-in gateway's name.
    pub integration: String,
    pub test_mode: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created: String,
    #[schema(value_type = String, format = DateTime)]
    pub updated: String,
}

impl Source {
    pub fn view(&self) -> SourceView {
        SourceView {
            id: self.id,
            gateway: self.gateway.clone(),
            usage: self.usage,
            customer: self.customer.clone(),
            amount: self.amount.map(|a| crate::money::Amount(a.to_string())),
            description: self.description.clone(),
            status: self.status,
            return_url: self.return_url.clone(),
            gateway_data: self.gateway_data.clone(),
            card: self.card.clone(),
            metadata: self.metadata.clone(),
            checkout_payment: self.checkout_payment,
            integration: self
                .integration
                .clone()
                .unwrap_or_else(|| self.gateway.clone()),
            test_mode: self.test_mode,
            created: timestamp(self.created),
            updated: timestamp(self.updated),
        }
    }
}

/// A create body read and checked: the new source as it will be, but for what its gateway
/// says of its data (`prepare`, which may ask a provider, so it runs with no transaction
/// open), and the integration it names, if any.
#[derive(Clone, Debug)]
pub struct SourceRequest {
    pub source: Source,
    pub integration: Option<String>,
}

impl SourceRequest {
    /// The source, once its gateway accepted its data, charging through `integration`.
    pub fn prepared(self, prepared: PreparedSource, integration: Option<String>) -> Source {
        Source {
            gateway_data: prepared.gateway_data,
            card: prepared.card,
            integration,
            ..self.source
        }
    }
}

/// Reads a new source from a create body: the gateway must exist and be open to the mode.
/// A source a payer makes at payment `checkout_payment`'s checkout is bound to it, single
/// use, nobody's and for the balance: only the merchant attaches a source to a customer,
/// keeps it for later or splits a payment (as with Stripe, where a publishable key cannot).
pub fn read_source(
    body: &Map<String, Value>,
    test_mode: bool,
    now: NaiveDateTime,
    checkout_payment: Option<i64>,
) -> Result<SourceRequest, ApiError> {
    let mut r = Reader::new(body, Presence::Full);
    let gateway_name = r.string("gateway", true, false, 64).sent().flatten();
    let integration = r.string("integration", false, true, 64).sent().flatten();
    let usage = r.choice::<Usage>("usage").unwrap_or(Usage::Single);
    let customer = r.string("customer", false, true, 255).sent().flatten();
    let amount = match r.raw("amount") {
        None | Some(Value::Null) => None,
        Some(value) => match parse_decimal(value) {
            Ok(d) if d > Decimal::ZERO => Some(d.normalize()),
            Ok(_) => {
                r.errors
                    .add("amount", "Ensure this value is greater than 0.");
                None
            }
            Err(message) => {
                r.errors.add("amount", message);
                None
            }
        },
    };
    let description = r.string("description", false, true, 256).sent().flatten();
    let return_url = r.url("return_url", 2048).sent().flatten();
    let metadata = read_metadata(&mut r, "metadata");
    let gateway_data = match r.raw("gateway_data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(data)) => data.clone(),
        Some(other) => {
            let kind = crate::http::body::python_type(other);
            r.errors.add(
                "gateway_data",
                format!("Expected a dictionary of items but got type \"{kind}\"."),
            );
            Map::new()
        }
    };
    let mut errors: FieldErrors = r.finish();
    if checkout_payment.is_some() {
        if customer.is_some() {
            errors.add(
                "customer",
                "A source made at a checkout cannot be attached to a customer.",
            );
        }
        if usage == Usage::Reusable {
            errors.add("usage", "A source made at a checkout is single use.");
        }
        if amount.is_some() {
            errors.add(
                "amount",
                "A source made at a checkout pays the balance: the merchant sets the amount.",
            );
        }
    }
    if gateway_data
        .keys()
        .any(|k| CARD_SECRETS.contains(&k.to_ascii_lowercase().as_str()))
    {
        errors.add(
            "gateway_data",
            "Card numbers and security codes are never accepted: send a gateway token instead.",
        );
    }
    let gateway = gateway_name
        .as_deref()
        .and_then(|name| match gateways::find(name) {
            Some(gateway) => Some(gateway),
            None => {
                errors.add("gateway", format!("\"{name}\" is not a valid choice."));
                None
            }
        });
    if let Some(gateway) = gateway {
        if !test_mode && !gateway.live() {
            errors.add(
                "gateway",
                format!(
                    "The {} gateway is only available in test mode.",
                    gateway.name()
                ),
            );
        }
    }
    let metadata = apply_metadata(&Map::new(), metadata.as_ref(), false, &mut errors);
    errors.into_result()?;
    let Some(gateway) = gateway else {
        return Err(ApiError::internal("a valid source without its gateway"));
    };
    Ok(SourceRequest {
        source: Source {
            id: 0,
            test_mode,
            gateway: gateway.name().to_string(),
            usage,
            customer,
            amount,
            description,
            status: SourceStatus::Chargeable,
            return_url,
            gateway_data,
            card: None,
            metadata,
            checkout_payment,
            integration: None,
            version: 1,
            created: now,
            updated: now,
        },
        integration,
    })
}

/// A consumed source has paid: it is part of the money's history and stays.
pub fn check_delete(source: &Source) -> Result<(), ApiError> {
    if source.status == SourceStatus::Consumed {
        return Err(ApiError::BadRequest(
            "A consumed source cannot be deleted: it is part of a payment's history.".into(),
        ));
    }
    Ok(())
}
