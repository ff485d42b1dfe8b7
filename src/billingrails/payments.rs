//! `/v1/payments`: payments, as Billingrails shows and makes them. A payment pays what an
//! invoice still has due: `offline` records one already made (succeeded at once), `online`
//! charges a reusable source (`payment_method_id`) at once, or opens the checkout page
//! (`integration_id`, answered `pending` with `payment_link`).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use serde_json::{json, Map, Value};

use super::{at, authenticated, list_of, one_of, query, read, wrapped, BrResult};
use crate::accounts::auth::Auth;
use crate::accounts::payer::Actor;
use crate::db::{now, write_tx, Db, DbConnection, Scope};
use crate::error::{ApiError, FieldErrors};
use crate::http::base_url;
use crate::http::body::Body;
use crate::http::fields::{parse_datetime, Presence};
use crate::idempotency;
use crate::payments::charges::{self, Pending};
use crate::payments::domain::{Payment, PaymentInput};
use crate::payments::filter::PaymentFilter;
use crate::payments::operations;
use crate::payments::status::PaymentStatus;
use crate::payments::store;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/payments", web::get().to(list))
        .route("/payments", web::post().to(create))
        .route("/payments/{id}", web::get().to(retrieve));
}

fn status(p: &Payment) -> &'static str {
    match p.status {
        PaymentStatus::Succeeded => "succeeded",
        PaymentStatus::Failed => "failed",
        PaymentStatus::Cancelled => "canceled",
        _ => "pending",
    }
}

pub fn payment(p: &Payment) -> Value {
    json!({
        "object": "payment",
        "id": p.id.to_string(),
        "account_id": p.customer,
        "amount": p.amount,
        "currency": p.currency.code,
        "description": p.description,
        "reference_id": p.metadata.get("reference_id"),
        "status": status(p),
        "invoice_id": p.invoice,
        "payment_method_id": p.source.map(|s| s.to_string()),
        "failure_reason": p.failed_reason,
        "succeeded_at": p.payment_date.filter(|_| p.status == PaymentStatus::Succeeded).map(at),
        "created_at": at(p.created),
    })
}

/// What a create asks for, checked before anything is read.
struct Request {
    online: bool,
    account_id: String,
    reference_id: String,
    succeeded_at: Option<chrono::NaiveDateTime>,
    integration_id: Option<String>,
    payment_method_id: Option<i64>,
    invoice_id: String,
}

const NOT_YET: [(&str, &str); 3] = [
    ("payment_request_id", "Payment requests"),
    ("order_id", "Orders"),
    ("credit_grant_id", "Credit grants"),
];

fn parse(body: &Map<String, Value>) -> Result<Request, ApiError> {
    let mut errors = FieldErrors::new();
    let text = |name: &str, errors: &mut FieldErrors, required: bool| -> Option<String> {
        match body.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 255 => {
                Some(s.trim().to_string())
            }
            None | Some(Value::Null) if !required => None,
            None | Some(Value::Null) => {
                errors.add(name, "This field is required.");
                None
            }
            Some(_) => {
                errors.add(
                    name,
                    "Must be a non-empty string of at most 255 characters.",
                );
                None
            }
        }
    };
    let online = match body.get("mode").and_then(Value::as_str) {
        None if body.get("mode").is_none() => false,
        Some("offline") => false,
        Some("online") => true,
        _ => {
            errors.add("mode", "Must be online or offline.");
            false
        }
    };
    let account_id = text("account_id", &mut errors, true);
    let reference_id = text("reference_id", &mut errors, true);
    let succeeded_at = match body.get("succeeded_at") {
        None | Some(Value::Null) => None,
        Some(_) if online => {
            errors.add(
                "succeeded_at",
                "Only an offline payment has a time it succeeded.",
            );
            None
        }
        Some(value) => {
            let parsed = value.as_str().and_then(parse_datetime);
            if parsed.is_none() {
                errors.add("succeeded_at", "Must be an ISO 8601 timestamp.");
            }
            parsed
        }
    };
    let integration_id = text("integration_id", &mut errors, false);
    let payment_method_id = text("payment_method_id", &mut errors, false).and_then(|id| {
        let parsed = id.parse::<i64>().ok().filter(|n| *n > 0);
        if parsed.is_none() {
            errors.add(
                "payment_method_id",
                format!("No such payment method: {id}."),
            );
        }
        parsed
    });
    if online && integration_id.is_none() && !body.contains_key("payment_method_id") {
        errors.add(
            "integration_id",
            "Required for online payments when payment_method_id is not provided.",
        );
    }
    if online && integration_id.is_some() && body.contains_key("payment_method_id") {
        errors.add(
            "payment_method_id",
            "Send integration_id or payment_method_id, not both.",
        );
    }
    if !online {
        for name in ["integration_id", "payment_method_id"] {
            if body.contains_key(name) {
                errors.add(name, "Only for online payments.");
            }
        }
    }
    for (name, what) in NOT_YET {
        if body.contains_key(name) {
            errors.add(
                name,
                format!(
                    "{what} do not exist in cobro yet: a payment pays an invoice (invoice_id)."
                ),
            );
        }
    }
    let invoice_id = text("invoice_id", &mut errors, false);
    if invoice_id.is_none()
        && !body.contains_key("invoice_id")
        && NOT_YET.iter().all(|(n, _)| !body.contains_key(*n))
    {
        errors.add("invoice_id", "Required: the invoice this payment pays.");
    }
    errors.into_result()?;
    Ok(Request {
        online,
        account_id: account_id.unwrap_or_default(),
        reference_id: reference_id.unwrap_or_default(),
        succeeded_at,
        integration_id,
        payment_method_id,
        invoice_id: invoice_id.unwrap_or_default(),
    })
}

/// What making a payment began: the payment, the link a checkout's payer follows, and the
/// charge to send when it pays online with a payment method.
struct Made {
    id: i64,
    link: Option<String>,
    charge: Option<Pending>,
}

impl crate::idempotency::Staged for Made {
    fn moves_money(&self) -> bool {
        self.charge.is_some()
    }

    fn in_process(&self) -> bool {
        self.charge
            .as_ref()
            .is_some_and(crate::idempotency::Staged::in_process)
    }
}

/// Makes the payment, for what the invoice still has due, and records its charge when it
/// pays online with a payment method (sent once this transaction is over).
fn make(
    conn: &mut DbConnection,
    scope: &Scope,
    r: &Request,
    base: &str,
    keyring: &crate::secrets::Keyring,
) -> Result<Made, ApiError> {
    write_tx(conn, |conn| {
        let invoice =
            crate::invoices::store::find(conn, scope, &r.invoice_id)?.ok_or_else(|| {
                ApiError::field("invoice", format!("No such invoice: {}.", r.invoice_id))
            })?;
        if invoice.customer != r.account_id {
            return Err(ApiError::field(
                "account_id",
                format!("The invoice {} belongs to another account.", invoice.id),
            ));
        }
        if !invoice.is_payable() || invoice.amount_due() == 0 {
            return Err(ApiError::BadRequest(format!(
                "The invoice {} is {} with {} due: there is nothing to pay.",
                invoice.id,
                invoice.status.as_str(),
                invoice.currency.for_people(invoice.amount_due())
            )));
        }
        if let Some(integration) = &r.integration_id {
            // An integration of the workspace's (`int_…`), enabled, or a built-in one.
            let known = match integration.strip_prefix("int_") {
                Some(_) => crate::integrations::store::find(conn, scope, integration)?
                    .is_some_and(|i| i.enabled),
                None => crate::gateways::find(integration).is_some_and(|g| g.builtin()),
            };
            if !known {
                return Err(ApiError::field(
                    "integration_id",
                    format!("No such integration: {integration}."),
                ));
            }
        }
        if let Some(source) = r.payment_method_id {
            let found = crate::sources::store::find(conn, scope, source)?;
            // A payment method of another account cannot pay this one's invoice.
            let usable = found.is_some_and(|s| {
                s.usage == crate::sources::domain::Usage::Reusable
                    && s.customer.as_ref().is_none_or(|c| *c == r.account_id)
            });
            if !usable {
                return Err(ApiError::field(
                    "payment_method_id",
                    format!("No such reusable payment method of this account: {source}."),
                ));
            }
        }
        let paid_at = r.succeeded_at.unwrap_or_else(now);
        let mut fields = Map::new();
        fields.insert(
            "amount".into(),
            json!(invoice.currency.format(invoice.amount_due())),
        );
        fields.insert("currency".into(), json!(invoice.currency.code));
        fields.insert(
            "date".into(),
            json!(paid_at.date().format("%Y-%m-%d").to_string()),
        );
        fields.insert(
            "description".into(),
            json!(format!("Payment for invoice {}", invoice.id)),
        );
        fields.insert("customer".into(), json!(r.account_id));
        fields.insert("invoice".into(), json!(invoice.id));
        fields.insert("metadata".into(), json!({"reference_id": r.reference_id}));
        if !r.online {
            fields.insert("status".into(), json!("succeeded"));
            fields.insert(
                "payment_date".into(),
                json!(crate::payments::domain::timestamp(paid_at)),
            );
        }
        let input = PaymentInput::parse(&fields, Presence::Full)?;
        let view = operations::create(conn, scope, &input, base)?;
        let charge = r
            .payment_method_id
            .map(|source| {
                let merchant = Actor::Merchant;
                charges::begin_charge(conn, scope, view.id, source, merchant, true, keyring)
            })
            .transpose()?;
        Ok(Made {
            id: view.id,
            link: r.integration_id.as_ref().and(view.checkout_url.clone()),
            charge,
        })
    })
}

async fn create(
    req: HttpRequest,
    auth: Result<Auth, ApiError>,
    db: web::Data<Db>,
    body: Result<Body, ApiError>,
) -> BrResult {
    let auth = authenticated(&req, auth)?;
    let fields = read(body).await?;
    let request = parse(&fields)?;
    let key = idempotency::key(&req, &auth.scope, auth.principal.credential(), &fields)?;
    let (scope, base) = (auth.scope, base_url(&req));
    let (begun, made_base) = (scope.clone(), base.clone());
    let keyring = crate::secrets::from_request(&req)?;
    let answer = idempotency::answer_call(
        &db,
        key,
        StatusCode::CREATED,
        move |conn| make(conn, &begun, &request, &made_base, &keyring),
        |made: &Made| made.charge.as_ref().map(charges::call),
        move |conn, made, outcome| {
            if let (Some(charge), Some(outcome)) = (&made.charge, outcome) {
                charges::finish(conn, &scope, charge, outcome, &base)?;
            }
            let paid = store::find(conn, &scope, made.id)?.ok_or(ApiError::NotFound)?;
            let mut body = wrapped("payment", payment(&paid));
            body["payment_link"] = json!(made.link);
            Ok(body)
        },
    );
    Ok(answer.await?)
}

async fn list(req: HttpRequest, auth: Result<Auth, ApiError>, db: web::Data<Db>) -> BrResult {
    let auth = authenticated(&req, auth)?;
    let params = query(&req)?;
    let filter = PaymentFilter {
        customer: params.get("account_id").map(str::to_string),
        invoice: params.get("invoice_id").map(str::to_string),
        ..Default::default()
    };
    list_of(
        auth,
        &params,
        &db,
        "payments",
        move |conn, scope, offset, limit| {
            let items = store::list(conn, scope, &filter, offset, limit)?;
            let total = store::count(conn, scope, &filter)?;
            Ok((items.iter().map(payment).collect(), total))
        },
    )
    .await
}

async fn retrieve(
    req: HttpRequest,
    auth: Result<Auth, ApiError>,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> BrResult {
    let auth = authenticated(&req, auth)?;
    one_of(auth, &db, "payment", move |conn, scope| {
        let Ok(id) = crate::http::object_id(&id) else {
            return Ok(None);
        };
        Ok(store::find(conn, scope, id)?.as_ref().map(payment))
    })
    .await
}
