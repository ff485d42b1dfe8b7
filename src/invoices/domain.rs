//! Invoices as values: the object, its lines and totals, what a create or update asks for,
//! and the status rules (`draft` → `finalized` → `paid`, or `cancelled` / `uncollectible`).

use chrono::{NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::{ApiError, FieldErrors};
use crate::http::fields::{Given, Presence, Reader};
use crate::http::metadata::{apply_metadata, read_metadata, MetadataChange};
use crate::money::{parse_decimal, Amount, Currency};
use crate::payments::domain::{read_currency, timestamp};
use crate::text_enum::text_enum;

text_enum!(
    /// Payments can pay `finalized` and `uncollectible` invoices.
    InvoiceStatus {
        Draft = "draft",
        Finalized = "finalized",
        Paid = "paid",
        Cancelled = "cancelled",
        Uncollectible = "uncollectible",
    }
);

pub const MAX_LINES: usize = 100;
const MAX_QUANTITY: i64 = 1_000_000;

/// One line: `quantity` × its unit price, `unit_amount` (minor units of the invoice's
/// currency).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub name: String,
    pub quantity: i64,
    pub unit_amount: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Invoice {
    pub id: String,
    pub test_mode: bool,
    pub customer: String,
    pub currency: Currency,
    pub status: InvoiceStatus,
    pub lines: Vec<Line>,
    pub total: i64,
    pub amount_paid: i64,
    /// What refunds of its payments sent back; the invoice stays paid (credit notes are
    /// another matter).
    pub amount_refunded: i64,
    pub due_date: NaiveDate,
    pub description: Option<String>,
    pub metadata: Map<String, Value>,
    pub finalized_at: Option<NaiveDateTime>,
    pub paid_at: Option<NaiveDateTime>,
    pub version: i64,
    pub created: NaiveDateTime,
    pub updated: NaiveDateTime,
}

/// A line as shown: the unit price as Piriod writes it (`amount`) and under its other
/// name (`unit_amount`), and the line's total.
#[derive(Debug, Serialize, ToSchema)]
pub struct LineView {
    pub name: String,
    pub quantity: i64,
    /// The unit price.
    #[schema(value_type = f64)]
    pub amount: Amount,
    /// The unit price again (an alias of `amount`).
    #[schema(value_type = f64)]
    pub unit_amount: Amount,
    /// quantity × amount.
    #[schema(value_type = f64)]
    pub total: Amount,
}

/// An invoice as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Invoice)]
pub struct InvoiceView {
    /// `inv_…`
    pub id: String,
    pub customer: String,
    pub currency: String,
    pub status: InvoiceStatus,
    pub lines: Vec<LineView>,
    #[schema(value_type = f64)]
    pub total: Amount,
    #[schema(value_type = f64)]
    pub amount_paid: Amount,
    /// total − amount_paid.
    #[schema(value_type = f64)]
    pub amount_due: Amount,
    /// What refunds of its payments sent back (the invoice stays paid).
    #[schema(value_type = f64)]
    pub amount_refunded: Amount,
    #[schema(value_type = String, format = Date)]
    pub due_date: String,
    pub description: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub test_mode: bool,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finalized_at: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub paid_at: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created: String,
    #[schema(value_type = String, format = DateTime)]
    pub updated: String,
}

impl Invoice {
    pub fn amount_due(&self) -> i64 {
        self.total - self.amount_paid
    }

    /// Whether a payment may pay it.
    pub fn is_payable(&self) -> bool {
        matches!(
            self.status,
            InvoiceStatus::Finalized | InvoiceStatus::Uncollectible
        )
    }

    pub fn view(&self) -> InvoiceView {
        let money = |minor| Amount::new(self.currency, minor);
        InvoiceView {
            id: self.id.clone(),
            customer: self.customer.clone(),
            currency: self.currency.code.to_string(),
            status: self.status,
            lines: self
                .lines
                .iter()
                .map(|l| LineView {
                    name: l.name.clone(),
                    quantity: l.quantity,
                    amount: money(l.unit_amount),
                    unit_amount: money(l.unit_amount),
                    total: money(l.quantity * l.unit_amount),
                })
                .collect(),
            total: money(self.total),
            amount_paid: money(self.amount_paid),
            amount_due: money(self.amount_due()),
            amount_refunded: money(self.amount_refunded),
            due_date: self.due_date.format("%Y-%m-%d").to_string(),
            description: self.description.clone(),
            metadata: self.metadata.clone(),
            test_mode: self.test_mode,
            finalized_at: self.finalized_at.map(timestamp),
            paid_at: self.paid_at.map(timestamp),
            created: timestamp(self.created),
            updated: timestamp(self.updated),
        }
    }
}

/// A line as sent: the unit amount is read in the invoice's currency later.
#[derive(Clone, Debug)]
pub struct LineInput {
    pub name: String,
    pub quantity: i64,
    pub unit_amount: Decimal,
    /// The name the price was sent under (`amount` or `unit_amount`), for messages.
    pub price_field: &'static str,
}

/// The fields of a create or PUT (`customer`, `currency`, `due_date` and `lines` required)
/// or a PATCH (any).
#[derive(Default)]
pub struct InvoiceInput {
    pub customer: Option<String>,
    pub currency: Option<Currency>,
    pub due_date: Option<NaiveDate>,
    pub lines: Option<Vec<LineInput>>,
    pub description: Given<String>,
    pub metadata: Option<MetadataChange>,
}

impl InvoiceInput {
    pub fn parse(body: &Map<String, Value>, presence: Presence) -> Result<Self, ApiError> {
        let mut r = Reader::new(body, presence);
        let customer = r.string("customer", true, false, 64).sent().flatten();
        let currency = if body.contains_key("currency") || presence == Presence::Full {
            read_currency(&mut r)
        } else {
            None
        };
        let due_date = r.date("due_date", true);
        let lines = match r.raw("lines") {
            None => {
                r.require("lines");
                None
            }
            Some(value) => match read_lines(value) {
                Ok(lines) => Some(lines),
                Err(message) => {
                    r.errors.add("lines", message);
                    None
                }
            },
        };
        let description = r.string("description", false, true, 500);
        let metadata = read_metadata(&mut r, "metadata");
        r.finish().into_result()?;
        Ok(InvoiceInput {
            customer,
            currency,
            due_date,
            lines,
            description,
            metadata,
        })
    }
}

fn read_lines(value: &Value) -> Result<Vec<LineInput>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "Expected a list of items but got type \"{}\".",
            crate::http::body::python_type(value)
        ));
    };
    if items.len() > MAX_LINES {
        return Err(format!(
            "Ensure this field has no more than {MAX_LINES} elements."
        ));
    }
    let mut lines = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let at = |message: &str| format!("Line {}: {message}", n + 1);
        let Value::Object(line) = item else {
            return Err(at("expected an object with name, quantity and amount."));
        };
        let name = match line.get("name").and_then(Value::as_str).map(str::trim) {
            Some(name)
                if !name.is_empty() && name.chars().count() <= 256 && !name.contains('\0') =>
            {
                name.to_string()
            }
            _ => return Err(at("name is required (at most 256 characters).")),
        };
        let quantity = match line.get("quantity") {
            None => 1,
            Some(q) => match q.as_i64() {
                Some(q) if (1..=MAX_QUANTITY).contains(&q) => q,
                _ => return Err(at("quantity must be a whole number from 1 to 1000000.")),
            },
        };
        // Piriod's lines carry the unit price as `amount`; `unit_amount` is its alias.
        // A price sent as null is no price.
        let price_of = |name: &str| line.get(name).filter(|v| !v.is_null());
        let (field, price) = match (price_of("amount"), price_of("unit_amount")) {
            (Some(amount), Some(unit)) if amount != unit => {
                let same = matches!((parse_decimal(amount), parse_decimal(unit)), (Ok(a), Ok(u)) if a == u);
                if !same {
                    return Err(at("amount and unit_amount are one price under two names: send one, or the same in both."));
                }
                ("amount", amount)
            }
            (Some(amount), _) => ("amount", amount),
            (None, Some(unit)) => ("unit_amount", unit),
            (None, None) => return Err(at("amount (the unit price) is required.")),
        };
        let unit_amount = match parse_decimal(price) {
            Ok(amount) if amount >= Decimal::ZERO => amount,
            Ok(_) => return Err(at(&format!("{field} must not be negative."))),
            Err(message) => return Err(at(&format!("{field}: {message}"))),
        };
        lines.push(LineInput {
            name,
            quantity,
            unit_amount,
            price_field: field,
        });
    }
    Ok(lines)
}

/// Lines in minor units of `currency`, and their total.
fn priced(currency: Currency, lines: &[LineInput]) -> Result<(Vec<Line>, i64), ApiError> {
    let mut priced = Vec::new();
    let mut total: i64 = 0;
    for (n, line) in lines.iter().enumerate() {
        let unit_amount = currency.to_minor(line.unit_amount).map_err(|message| {
            ApiError::field(
                "lines",
                format!("Line {}: {}: {message}", n + 1, line.price_field),
            )
        })?;
        total = unit_amount
            .checked_mul(line.quantity)
            .and_then(|amount| total.checked_add(amount))
            .filter(|t| *t < 10i64.pow(crate::money::MAX_MINOR_DIGITS))
            .ok_or_else(|| ApiError::field("lines", "The invoice's total is too large."))?;
        priced.push(Line {
            name: line.name.clone(),
            quantity: line.quantity,
            unit_amount,
        });
    }
    Ok((priced, total))
}

/// A new draft from a create's fields (parsed with `Presence::Full`).
pub fn new_invoice(
    input: &InvoiceInput,
    test_mode: bool,
    at: NaiveDateTime,
) -> Result<Invoice, ApiError> {
    let (Some(customer), Some(currency), Some(due_date), Some(lines)) = (
        input.customer.clone(),
        input.currency,
        input.due_date,
        input.lines.as_deref(),
    ) else {
        return Err(ApiError::internal(
            "an invoice create without its required fields",
        ));
    };
    let (lines, total) = priced(currency, lines)?;
    let mut errors = FieldErrors::new();
    let metadata = apply_metadata(&Map::new(), input.metadata.as_ref(), false, &mut errors);
    errors.into_result()?;
    Ok(Invoice {
        id: crate::accounts::new_id("inv_"),
        test_mode,
        customer,
        currency,
        status: InvoiceStatus::Draft,
        lines,
        total,
        amount_paid: 0,
        amount_refunded: 0,
        due_date,
        description: input.description.clone().sent().flatten(),
        metadata,
        finalized_at: None,
        paid_at: None,
        version: 1,
        created: at,
        updated: at,
    })
}

/// The invoice an update asks for. What is owed (customer, currency, due date, lines)
/// changes only on a draft; description and metadata change at any time.
pub fn apply(current: &Invoice, input: &InvoiceInput, merge: bool) -> Result<Invoice, ApiError> {
    let next = applied(current, input, merge)?;
    let owed = |i: &Invoice| (i.customer.clone(), i.currency, i.due_date, i.lines.clone());
    if current.status != InvoiceStatus::Draft && owed(&next) != owed(current) {
        return Err(ApiError::BadRequest(format!(
            "Only a draft invoice can change its customer, currency, due date or lines; this one is {}.",
            current.status.as_str()
        )));
    }
    Ok(next)
}

fn applied(current: &Invoice, input: &InvoiceInput, merge: bool) -> Result<Invoice, ApiError> {
    let currency = input.currency.unwrap_or(current.currency);
    let (lines, total) = match &input.lines {
        Some(lines) => priced(currency, lines)?,
        None if currency != current.currency => {
            return Err(ApiError::field(
                "lines",
                "Send the lines again when the currency changes.",
            ))
        }
        None => (current.lines.clone(), current.total),
    };
    let mut errors = FieldErrors::new();
    let metadata = apply_metadata(
        &current.metadata,
        input.metadata.as_ref(),
        merge,
        &mut errors,
    );
    errors.into_result()?;
    Ok(Invoice {
        customer: input
            .customer
            .clone()
            .unwrap_or_else(|| current.customer.clone()),
        currency,
        lines,
        total,
        due_date: input.due_date.unwrap_or(current.due_date),
        description: input
            .description
            .clone()
            .sent()
            .unwrap_or_else(|| current.description.clone()),
        metadata,
        ..current.clone()
    })
}

/// A move by its endpoint: `finalize`, `cancel` or `mark_uncollectible`.
pub fn moved(current: &Invoice, to: InvoiceStatus, at: NaiveDateTime) -> Result<Invoice, ApiError> {
    use InvoiceStatus::*;
    let refuse = |why: &str| Err(ApiError::BadRequest(why.to_string()));
    match (current.status, to) {
        (Draft, Finalized) if current.lines.is_empty() || current.total == 0 => {
            refuse("An invoice needs lines and a total above 0 to be finalized.")
        }
        (Draft, Finalized) => Ok(Invoice {
            status: Finalized,
            finalized_at: Some(at),
            ..current.clone()
        }),
        (Draft | Finalized | Uncollectible, Cancelled) if current.amount_paid > 0 => {
            refuse("An invoice partly paid cannot be cancelled.")
        }
        (Draft | Finalized | Uncollectible, Cancelled) | (Finalized, Uncollectible) => {
            Ok(Invoice {
                status: to,
                ..current.clone()
            })
        }
        (from, to) => Err(ApiError::BadRequest(format!(
            "An invoice cannot move from {} to {}.",
            from.as_str(),
            to.as_str()
        ))),
    }
}

/// The invoice after a payment of `amount` succeeded for it; refuses paying more than is
/// due (less `reserved`, what other charges for it have in flight), and anything on an
/// invoice that is not open.
pub fn paid(
    current: &Invoice,
    amount: i64,
    reserved: i64,
    at: NaiveDateTime,
) -> Result<Invoice, ApiError> {
    if !current.is_payable() {
        return Err(ApiError::BadRequest(format!(
            "The invoice {} is {}: it cannot be paid.",
            current.id,
            current.status.as_str()
        )));
    }
    if amount > current.amount_due() - reserved {
        let in_flight = if reserved > 0 {
            format!(
                ", of which {} is being charged by other payments",
                current.currency.for_people(reserved)
            )
        } else {
            String::new()
        };
        return Err(ApiError::BadRequest(format!(
            "The payment ({}) is more than the invoice {} still has due ({}{in_flight}).",
            current.currency.for_people(amount),
            current.id,
            current.currency.for_people(current.amount_due())
        )));
    }
    let amount_paid = current.amount_paid + amount;
    let settled = amount_paid == current.total;
    Ok(Invoice {
        amount_paid,
        status: if settled {
            InvoiceStatus::Paid
        } else {
            current.status
        },
        paid_at: if settled { Some(at) } else { None },
        updated: at,
        ..current.clone()
    })
}
