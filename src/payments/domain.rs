//! Payments as values: the typed payment, what a request asks to change, and the rules that
//! decide the new payment. Pure functions: no database, no HTTP.

use chrono::{NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::status::PaymentStatus;
use crate::error::{ApiError, FieldErrors};
use crate::http::fields::{Given, Presence, Reader};
use crate::http::metadata::{apply_metadata, read_metadata, MetadataChange};
use crate::money::{parse_decimal, Amount, Currency};

pub const MAX_DESCRIPTION: usize = 256;
pub const MAX_REFERENCE: usize = 255;
pub const MAX_URL: usize = 2048;
pub const MAX_REASON: usize = 255;

/// A payment as the domain sees it: typed, with money in minor units.
#[derive(Clone, Debug, PartialEq)]
pub struct Payment {
    pub id: i64,
    pub test_mode: bool,
    pub amount: i64,
    /// Minor units collected so far; `amount - collected` is the balance.
    pub collected: i64,
    /// Minor units of what was collected that refunds sent back (succeeded refunds only).
    pub amount_refunded: i64,
    pub currency: Currency,
    pub date: NaiveDate,
    pub description: String,
    pub invoice: Option<String>,
    pub subscription: Option<String>,
    pub customer: Option<String>,
    pub payment_date: Option<NaiveDateTime>,
    pub source: Option<i64>,
    pub sources: Vec<i64>,
    pub status: PaymentStatus,
    pub failed_reason: Option<String>,
    pub return_url: Option<String>,
    pub enable_checkout: bool,
    pub metadata: Map<String, Value>,
    pub checkout_key: String,
    /// Bumped by every write; a write guarded by the version it read cannot lose an update.
    pub version: i64,
    pub created: NaiveDateTime,
    pub updated: NaiveDateTime,
}

impl Payment {
    /// Whether money was collected or is being charged: its invoice is then fixed.
    pub fn has_money_committed(&self) -> bool {
        self.collected > 0
            || matches!(
                self.status,
                PaymentStatus::Succeeded | PaymentStatus::Processing | PaymentStatus::Incomplete
            )
    }

    pub fn balance(&self) -> i64 {
        self.amount - self.collected
    }

    pub fn view(&self, base_url: &str) -> PaymentView {
        self.clone().into_view(base_url)
    }

    /// The view, taking the payment's strings rather than copying them (a page's views).
    pub fn into_view(self, base_url: &str) -> PaymentView {
        PaymentView {
            amount: Amount::new(self.currency, self.amount),
            currency: self.currency.code.to_string(),
            date: self.date,
            id: self.id,
            balance: Amount::new(self.currency, self.balance()),
            payment_date: self.payment_date.map(timestamp),
            source: self.source,
            status: self.status,
            enable_checkout: self.enable_checkout,
            test_mode: self.test_mode,
            created: timestamp(self.created),
            updated: timestamp(self.updated),
            checkout_url: self
                .enable_checkout
                .then(|| format!("{base_url}/pay/{}/", self.checkout_key)),
            amount_refunded: Amount::new(self.currency, self.amount_refunded),
            refunded: self.collected > 0 && self.amount_refunded >= self.collected,
            description: self.description,
            invoice: self.invoice,
            subscription: self.subscription,
            customer: self.customer,
            sources: self.sources,
            failed_reason: self.failed_reason,
            return_url: self.return_url,
            metadata: self.metadata,
        }
    }
}

/// A UTC timestamp as DRF writes it: `2026-11-23T10:00:00.123456Z`.
pub fn timestamp(at: NaiveDateTime) -> String {
    use chrono::Timelike;
    // Digit by digit: chrono's `format` parses its pattern on every call, and `format!`'s
    // padding is slower still; a page of 20 payments writes 60 timestamps.
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    write_day(&mut text, at.date());
    put_digits(&mut text[11..13], at.hour());
    put_digits(&mut text[14..16], at.minute());
    put_digits(&mut text[17..19], at.second());
    put_digits(&mut text[20..26], at.nanosecond() % 1_000_000_000 / 1_000);
    String::from_utf8_lossy(&text).into_owned()
}

/// A date as `2026-11-23`, written as `timestamp` writes one (chrono's `Display` pads
/// through `format!`).
fn day<S: serde::Serializer>(day: &NaiveDate, serializer: S) -> Result<S::Ok, S::Error> {
    let mut text = *b"0000-00-00";
    write_day(&mut text, *day);
    serializer.serialize_str(&String::from_utf8_lossy(&text))
}

fn write_day(text: &mut [u8], day: NaiveDate) {
    use chrono::Datelike;
    put_digits(&mut text[0..4], day.year().clamp(0, 9999) as u32);
    put_digits(&mut text[5..7], day.month());
    put_digits(&mut text[8..10], day.day());
}

/// Fills `place` with the last digits of `value`, zero-padded.
fn put_digits(place: &mut [u8], mut value: u32) {
    for digit in place.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The payment object of the API (field order as Piriod's).
#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = Payment)]
pub struct PaymentView {
    /// Amount at the currency's scale (`1000` CLP, `10.50` USD), exact.
    #[schema(value_type = f64, example = 10.5)]
    pub amount: Amount,
    #[schema(example = "USD")]
    pub currency: String,
    #[serde(serialize_with = "day")]
    pub date: NaiveDate,
    pub description: String,
    pub id: i64,
    pub invoice: Option<String>,
    pub subscription: Option<String>,
    pub customer: Option<String>,
    /// Amount still to collect.
    #[schema(value_type = f64)]
    pub balance: Amount,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub payment_date: Option<String>,
    pub source: Option<i64>,
    pub sources: Vec<i64>,
    pub status: PaymentStatus,
    pub failed_reason: Option<String>,
    pub return_url: Option<String>,
    pub enable_checkout: bool,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub test_mode: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created: String,
    #[schema(value_type = String, format = DateTime)]
    pub updated: String,
    /// The public checkout page; null when `enable_checkout` is false.
    pub checkout_url: Option<String>,
    /// What refunds sent back of what was collected (succeeded refunds).
    #[schema(value_type = f64)]
    pub amount_refunded: Amount,
    /// Whether all that was collected went back.
    pub refunded: bool,
}

/// The fields a create, PUT or PATCH body sets. Absent fields are None/`Given::Absent`.
#[derive(Clone, Debug, Default)]
pub struct PaymentInput {
    pub amount: Option<Decimal>,
    pub currency: Option<Currency>,
    pub date: Option<NaiveDate>,
    pub description: Option<String>,
    pub invoice: Given<String>,
    pub subscription: Given<String>,
    pub customer: Given<String>,
    pub payment_date: Given<NaiveDateTime>,
    pub source: Given<i64>,
    pub sources: Option<Vec<i64>>,
    pub status: Option<PaymentStatus>,
    /// Only with a move to `failed`: why the charge failed.
    pub failed_reason: Option<String>,
    /// Only with a move to `incomplete`: what this partial collection received.
    pub amount_collected: Option<Decimal>,
    pub return_url: Given<String>,
    pub enable_checkout: Option<bool>,
    pub metadata: Option<MetadataChange>,
}

impl PaymentInput {
    /// Reads a body. `Presence::Full` (create, PUT) requires amount, currency, date and
    /// description. Read-only and unknown fields are ignored, as DRF does.
    pub fn parse(body: &Map<String, Value>, presence: Presence) -> Result<Self, ApiError> {
        let mut r = Reader::new(body, presence);
        let amount = read_decimal(&mut r, "amount", true);
        let currency = read_currency(&mut r);
        let date = r.date("date", true);
        let description = r
            .string("description", true, false, MAX_DESCRIPTION)
            .sent()
            .flatten();
        let invoice = r.string("invoice", false, true, MAX_REFERENCE);
        let subscription = r.string("subscription", false, true, MAX_REFERENCE);
        let customer = r.string("customer", false, true, MAX_REFERENCE);
        let payment_date = r.datetime("payment_date", true);
        let source = r.pk("source");
        let sources = r.pk_list("sources");
        let status = r.choice::<PaymentStatus>("status");
        let failed_reason = r
            .string("failed_reason", false, true, MAX_REASON)
            .sent()
            .flatten();
        let amount_collected = read_decimal(&mut r, "amount_collected", false);
        let return_url = r.url("return_url", MAX_URL);
        let enable_checkout = r.boolean("enable_checkout");
        let metadata = read_metadata(&mut r, "metadata");
        r.finish().into_result()?;
        Ok(PaymentInput {
            amount,
            currency,
            date,
            description,
            invoice,
            subscription,
            customer,
            payment_date,
            source,
            sources,
            status,
            failed_reason,
            amount_collected,
            return_url,
            enable_checkout,
            metadata,
        })
    }
}

pub(crate) fn read_decimal(r: &mut Reader, name: &str, required: bool) -> Option<Decimal> {
    let raw = r.raw(name);
    match raw {
        None => {
            if required {
                r.require(name);
            }
            None
        }
        Some(Value::Null) => {
            r.errors.add(name, crate::http::fields::NOT_NULL);
            None
        }
        Some(value) => match parse_decimal(value) {
            Ok(d) if d <= Decimal::ZERO => {
                r.errors.add(name, "Ensure this value is greater than 0.");
                None
            }
            Ok(d) => Some(d),
            Err(message) => {
                r.errors.add(name, message);
                None
            }
        },
    }
}

pub(crate) fn read_currency(r: &mut Reader) -> Option<Currency> {
    let code = r.string("currency", true, false, 16).sent().flatten()?;
    let currency = Currency::parse(&code);
    if currency.is_none() {
        r.errors
            .add("currency", format!("\"{code}\" is not a valid choice."));
    }
    currency
}

/// Minor units of an amount in a currency, with the message under `field`.
fn to_minor(
    errors: &mut FieldErrors,
    field: &str,
    currency: Currency,
    amount: Decimal,
) -> Option<i64> {
    match currency.to_minor(amount) {
        Ok(minor) => Some(minor),
        Err(message) => {
            errors.add(field, message);
            None
        }
    }
}

/// Builds a new payment from a create body (already parsed with `Presence::Full`).
pub fn new_payment(
    input: PaymentInput,
    test_mode: bool,
    checkout_key: String,
    now: NaiveDateTime,
) -> Result<Payment, ApiError> {
    let mut errors = FieldErrors::new();
    // Presence::Full guarantees these four, or parse() would have failed.
    let (Some(amount), Some(currency), Some(date), Some(description)) =
        (input.amount, input.currency, input.date, input.description)
    else {
        return Err(ApiError::internal(
            "create body without its required fields",
        ));
    };
    let amount = to_minor(&mut errors, "amount", currency, amount);
    let status = input.status.unwrap_or(PaymentStatus::RequiresPaymentMethod);
    if !status.allowed_on_create() {
        errors.add(
            "status",
            format!("A payment cannot be created as \"{status}\": use requires_payment_method, processing or succeeded."),
        );
    }
    if input.amount_collected.is_some() {
        errors.add(
            "amount_collected",
            "Only allowed when moving a payment to \"incomplete\".",
        );
    }
    let metadata = apply_metadata(&Map::new(), input.metadata.as_ref(), false, &mut errors);
    errors.into_result()?;
    let amount = amount.unwrap_or_default();
    let succeeded = status == PaymentStatus::Succeeded;
    let payment_date = input.payment_date.sent().flatten();
    Ok(Payment {
        id: 0,
        test_mode,
        amount,
        collected: if succeeded { amount } else { 0 },
        amount_refunded: 0,
        currency,
        date,
        description,
        invoice: input.invoice.sent().flatten(),
        subscription: input.subscription.sent().flatten(),
        customer: input.customer.sent().flatten(),
        payment_date: if succeeded {
            payment_date.or(Some(now))
        } else {
            payment_date
        },
        source: input.source.sent().flatten(),
        sources: input.sources.unwrap_or_default(),
        status,
        failed_reason: None,
        return_url: input.return_url.sent().flatten(),
        enable_checkout: input.enable_checkout.unwrap_or(true),
        metadata,
        checkout_key,
        version: 1,
        created: now,
        updated: now,
    })
}

/// A decided change: the payment as it will be saved, and the event type it writes.
#[derive(Clone, Debug)]
pub struct Change {
    pub payment: Payment,
    pub event_type: String,
}

/// Applies a PUT or PATCH to the current payment. `Ok(None)` when nothing would change
/// (no write, no event). `merge_metadata` is true for PATCH.
pub fn update(
    current: &Payment,
    input: &PaymentInput,
    merge_metadata: bool,
    now: NaiveDateTime,
) -> Result<Option<Change>, ApiError> {
    let mut next = current.clone();
    let mut errors = FieldErrors::new();

    let currency = input.currency.unwrap_or(current.currency);
    let amount = input
        .amount
        .and_then(|a| to_minor(&mut errors, "amount", currency, a));
    let new_amount = amount.unwrap_or(current.amount);
    let amount_changes = new_amount != current.amount || currency != current.currency;
    if amount_changes && !current.status.allows_amount_change() {
        let field = if new_amount != current.amount {
            "amount"
        } else {
            "currency"
        };
        errors.add(
            field,
            format!("Cannot change the {field} of a payment that is \"{}\": money has moved or is in flight.", current.status),
        );
    }
    // A currency change alone must still fit the amount in the new currency's scale.
    if input.currency.is_some() && input.amount.is_none() && currency != current.currency {
        let decimal = Decimal::new(current.amount, current.currency.exponent);
        if let Some(minor) = to_minor(&mut errors, "amount", currency, decimal) {
            next.amount = minor;
        }
    } else {
        next.amount = new_amount;
    }
    next.currency = currency;

    if let Some(date) = input.date {
        next.date = date;
    }
    if let Some(description) = &input.description {
        next.description = description.clone();
    }
    set(&mut next.invoice, &input.invoice);
    set(&mut next.subscription, &input.subscription);
    set(&mut next.customer, &input.customer);
    set(&mut next.payment_date, &input.payment_date);
    set(&mut next.source, &input.source);
    set(&mut next.return_url, &input.return_url);
    if let Some(sources) = &input.sources {
        next.sources = sources.clone();
    }
    if let Some(enable) = input.enable_checkout {
        next.enable_checkout = enable;
    }
    next.metadata = apply_metadata(
        &current.metadata,
        input.metadata.as_ref(),
        merge_metadata,
        &mut errors,
    );

    // A move: a status other than the current one, or a further partial collection.
    let target = input.status.filter(|to| {
        *to != current.status
            || (*to == PaymentStatus::Incomplete && input.amount_collected.is_some())
    });
    if input.amount_collected.is_some() && target != Some(PaymentStatus::Incomplete) {
        errors.add(
            "amount_collected",
            "Only allowed when moving a payment to \"incomplete\".",
        );
    }
    errors.into_result()?;

    let event_type = match target {
        Some(to) => {
            let collect = match input.amount_collected {
                Some(amount) => Some(
                    currency
                        .to_minor(amount)
                        .map_err(|m| ApiError::field("amount_collected", m))?,
                ),
                None => None,
            };
            move_to(&mut next, to, collect, input.failed_reason.clone(), now)?;
            format!("payment.{}", next.status)
        }
        None if next == *current => return Ok(None),
        None => "payment.updated".to_string(),
    };
    next.updated = now;
    next.version = current.version + 1;
    Ok(Some(Change {
        payment: next,
        event_type,
    }))
}

fn set<T: Clone>(field: &mut Option<T>, given: &Given<T>) {
    if let Some(value) = given.clone().sent() {
        *field = value;
    }
}

/// Moves a payment to `to`, keeping the money rules: success collects the balance; a
/// partial collection keeps 0 < collected < amount; a failure after money was collected
/// leaves the payment `incomplete` with its reason, never hiding that money behind `failed`.
pub fn move_to(
    payment: &mut Payment,
    to: PaymentStatus,
    collect: Option<i64>,
    failed_reason: Option<String>,
    now: NaiveDateTime,
) -> Result<(), ApiError> {
    let from = payment.status;
    if !from.can_move_to(to) {
        return Err(ApiError::field(
            "status",
            format!("Cannot move a payment from \"{from}\" to \"{to}\"."),
        ));
    }
    payment.failed_reason = None;
    payment.status = to;
    match to {
        PaymentStatus::Succeeded => {
            payment.collected = payment.amount;
            payment.payment_date.get_or_insert(now);
        }
        PaymentStatus::Incomplete => {
            let collected = payment.collected + collect.unwrap_or(0);
            if collected <= 0 {
                return Err(ApiError::field(
                    "amount_collected",
                    "This field is required to move a payment to \"incomplete\": say how much was received.",
                ));
            }
            if collected >= payment.amount {
                return Err(ApiError::field(
                    "amount_collected",
                    format!(
                        "Ensure this value is less than the balance ({}); mark the payment \"succeeded\" to collect all of it.",
                        payment.currency.format(payment.balance())
                    ),
                ));
            }
            payment.collected = collected;
        }
        PaymentStatus::Failed => {
            payment.failed_reason = failed_reason;
            if payment.collected > 0 {
                payment.status = PaymentStatus::Incomplete;
            }
        }
        PaymentStatus::RequiresPaymentMethod
        | PaymentStatus::Processing
        | PaymentStatus::Cancelled => {}
    }
    payment.updated = now;
    Ok(())
}

/// `POST /payments/{id}/cancel/`: a move to `cancelled`.
pub fn cancel(current: &Payment, now: NaiveDateTime) -> Result<Change, ApiError> {
    let mut next = current.clone();
    move_to(&mut next, PaymentStatus::Cancelled, None, None, now)?;
    next.version = current.version + 1;
    Ok(Change {
        payment: next,
        event_type: "payment.cancelled".into(),
    })
}

/// Deletion keeps money that moved: only unpaid, idle payments may go.
pub fn check_delete(current: &Payment) -> Result<(), ApiError> {
    if current.status.allows_delete() && current.collected == 0 {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "A payment that is \"{}\" cannot be deleted: only payments with nothing collected or in flight \
             (requires_payment_method, failed, cancelled) can be. Cancel it instead.",
            current.status
        )))
    }
}

/// What a payment for `invoice` must fit: the invoice open, its currency, what it still has
/// due (unless the payment already succeeded), its customer. Returns the invoice's customer
/// when the payment names none (it becomes the payment's).
pub fn check_invoice(
    payment: &Payment,
    invoice: &crate::invoices::domain::Invoice,
    errors: &mut FieldErrors,
) -> Option<String> {
    if !invoice.is_payable() {
        errors.add(
            "invoice",
            format!(
                "The invoice is {}: it cannot be paid.",
                invoice.status.as_str()
            ),
        );
    }
    if invoice.currency != payment.currency {
        errors.add(
            "currency",
            format!("Must be the invoice's currency, {}.", invoice.currency.code),
        );
    } else if payment.status != PaymentStatus::Succeeded && payment.amount > invoice.amount_due() {
        errors.add(
            "amount",
            format!(
                "Ensure this value is less than or equal to {}, what the invoice still has due.",
                invoice.currency.format(invoice.amount_due())
            ),
        );
    }
    match &payment.customer {
        Some(customer) if *customer != invoice.customer => {
            errors.add(
                "customer",
                format!("Must be the invoice's customer, {}.", invoice.customer),
            );
            None
        }
        Some(_) => None,
        None => Some(invoice.customer.clone()),
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    #[test]
    fn timestamps_are_written_as_drf_writes_them() {
        let day = NaiveDate::from_ymd_opt(2026, 1, 9).unwrap();
        for (h, m, s, micro) in [
            (0, 0, 0, 0),
            (9, 5, 7, 42),
            (23, 59, 59, 999_999),
            (10, 0, 0, 123_456),
        ] {
            let at = day.and_hms_micro_opt(h, m, s, micro).unwrap();
            let chrono = at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
            assert_eq!(super::timestamp(at), chrono);
        }
        let early = NaiveDate::from_ymd_opt(987, 12, 31)
            .unwrap()
            .and_hms_nano_opt(1, 2, 3, 4_567_890)
            .unwrap();
        assert_eq!(super::timestamp(early), "0987-12-31T01:02:03.004567Z");
        let mut json = serde_json::Serializer::new(Vec::new());
        super::day(&early.date(), &mut json).unwrap();
        assert_eq!(json.into_inner(), b"\"0987-12-31\"");
    }
}
