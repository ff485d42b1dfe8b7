//! `/v1/invoices`: invoices, as Billingrails shows them. Amounts are integer minor units;
//! `POST /v1/invoices/{id}/issue` finalizes a draft.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use chrono::{Duration, NaiveDate};
use serde_json::{json, Map, Value};

use super::{at, authenticated, list_of, one, one_of, query, read, wrapped, BrResult};
use crate::accounts::auth::Auth;
use crate::db::{now, write_tx, Db};
use crate::error::ApiError;
use crate::http::body::Body;
use crate::http::fields::{parse_date, parse_datetime, Presence};
use crate::idempotency;
use crate::invoices::domain::{Invoice, InvoiceInput, InvoiceStatus};
use crate::invoices::{operations, store};
use crate::money::Currency;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/invoices", web::get().to(list))
        .route("/invoices", web::post().to(create))
        .route("/invoices/{id}", web::get().to(retrieve))
        .route("/invoices/{id}", web::patch().to(update))
        .route("/invoices/{id}/issue", web::post().to(issue));
}

/// Billingrails' status of an invoice. It has no `uncollectible`: such an invoice is still
/// `issued` (and payable).
fn status(i: &Invoice) -> &'static str {
    match i.status {
        InvoiceStatus::Draft => "draft",
        InvoiceStatus::Finalized | InvoiceStatus::Uncollectible if i.amount_paid > 0 => {
            "partially_paid"
        }
        InvoiceStatus::Finalized | InvoiceStatus::Uncollectible => "issued",
        InvoiceStatus::Paid => "paid",
        InvoiceStatus::Cancelled => "canceled",
    }
}

pub fn invoice(i: &Invoice) -> Value {
    let lines: Vec<Value> = i
        .lines
        .iter()
        .map(|l| {
            json!({
                "object": "invoice_line_item",
                "name": l.name,
                "description": null,
                "quantity": l.quantity,
                "unit_amount": l.unit_amount,
                "subtotal_amount": l.quantity * l.unit_amount,
                "total_amount": l.quantity * l.unit_amount,
            })
        })
        .collect();
    json!({
        "object": "invoice",
        "id": i.id,
        "status": status(i),
        "account_id": i.customer,
        "currency": i.currency.code,
        "subtotal_amount": i.total,
        "total_amount": i.total,
        "paid_amount": i.amount_paid,
        "due_amount": i.amount_due(),
        "outstanding_amount": i.amount_due(),
        "due_at": format!("{}T00:00:00.000Z", i.due_date.format("%Y-%m-%d")),
        "issued_at": i.finalized_at.map(at),
        "created_at": at(i.created),
        "line_items": lines,
        "metadata": i.metadata,
    })
}

/// The Piriod body of an invoice body. A missing `due_at` on a create is 30 days from now.
/// Unit amounts are minor units of the body's currency, else of `current` (the invoice's).
fn invoice_fields(
    body: &Map<String, Value>,
    current: Option<Currency>,
) -> Result<Map<String, Value>, ApiError> {
    let creating = current.is_none();
    let mut fields = Map::new();
    if let Some(account) = body.get("account_id") {
        fields.insert("customer".into(), account.clone());
    }
    for key in ["currency", "metadata"] {
        if let Some(value) = body.get(key) {
            fields.insert(key.into(), value.clone());
        }
    }
    match body.get("due_at") {
        Some(Value::String(text)) => {
            let date = parse_date(text).or_else(|| parse_datetime(text).map(|t| t.date()));
            let Some(date) = date else {
                return Err(ApiError::field(
                    "due_at",
                    "Must be a date (YYYY-MM-DD) or an ISO 8601 timestamp.",
                ));
            };
            fields.insert(
                "due_date".into(),
                json!(date.format("%Y-%m-%d").to_string()),
            );
        }
        Some(other) => {
            fields.insert("due_date".into(), other.clone());
        }
        None if creating => {
            let due: NaiveDate = (now() + Duration::days(30)).date();
            fields.insert("due_date".into(), json!(due.format("%Y-%m-%d").to_string()));
        }
        None => {}
    }
    match body.get("line_items") {
        Some(Value::Array(items)) => {
            let currency = body
                .get("currency")
                .and_then(Value::as_str)
                .and_then(Currency::parse)
                .or(current);
            let mut lines = Vec::new();
            for (n, item) in items.iter().enumerate() {
                let Some(given) = item.as_object() else {
                    // Piriod's reading names what is wrong with it.
                    lines.push(item.clone());
                    continue;
                };
                // Billingrails' fields only: its `amount`-like keys are not Piriod's unit
                // price (which is in major units).
                let mut line: serde_json::Map<String, Value> = ["name", "quantity", "unit_amount"]
                    .into_iter()
                    .filter_map(|k| given.get(k).map(|v| (k.to_string(), v.clone())))
                    .collect();
                if !line.contains_key("unit_amount") {
                    return Err(ApiError::field(
                        "line_items",
                        format!("Line {}: unit_amount is required.", n + 1),
                    ));
                }
                if let (Some(unit), Some(currency)) = (line.get("unit_amount"), currency) {
                    let Some(minor) = unit.as_i64() else {
                        return Err(ApiError::field(
                            "line_items",
                            format!(
                                "Line {}: unit_amount must be a whole number of minor units.",
                                n + 1
                            ),
                        ));
                    };
                    line.insert("unit_amount".into(), json!(currency.format(minor)));
                }
                lines.push(Value::Object(line));
            }
            fields.insert("lines".into(), Value::Array(lines));
        }
        Some(other) => {
            fields.insert("lines".into(), other.clone());
        }
        None if creating => {
            fields.insert("lines".into(), json!([]));
        }
        None => {}
    }
    Ok(fields)
}

async fn create(
    req: HttpRequest,
    auth: Result<Auth, ApiError>,
    db: web::Data<Db>,
    body: Result<Body, ApiError>,
) -> BrResult {
    let auth = authenticated(&req, auth)?;
    let fields = read(body).await?;
    let input = InvoiceInput::parse(&invoice_fields(&fields, None)?, Presence::Full)?;
    let key = idempotency::key(&req, &auth.scope, auth.principal.credential(), &fields)?;
    let scope = auth.scope;
    let answer = idempotency::answer(&db, key, StatusCode::CREATED, move |conn| {
        let created = operations::create(conn, &scope, &input)?;
        Ok(wrapped("invoice", invoice(&created)))
    });
    Ok(answer.await?)
}

async fn list(req: HttpRequest, auth: Result<Auth, ApiError>, db: web::Data<Db>) -> BrResult {
    let auth = authenticated(&req, auth)?;
    let params = query(&req)?;
    let filter = store::InvoiceFilter {
        customer: params.get("account_id").map(str::to_string),
        ..Default::default()
    };
    list_of(
        auth,
        &params,
        &db,
        "invoices",
        move |conn, scope, offset, limit| {
            let items = store::list(conn, scope, &filter, offset, limit)?;
            let total = store::count(conn, scope, &filter)?;
            Ok((items.iter().map(invoice).collect(), total))
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
    one_of(auth, &db, "invoice", move |conn, scope| {
        Ok(store::find(conn, scope, &id)?.as_ref().map(invoice))
    })
    .await
}

/// Unit amounts in the body are read in the invoice's currency (or the one it changes to),
/// in the transaction of the update.
async fn update(
    req: HttpRequest,
    auth: Result<Auth, ApiError>,
    db: web::Data<Db>,
    id: web::Path<String>,
    body: Result<Body, ApiError>,
) -> BrResult {
    let auth = authenticated(&req, auth)?;
    let body = read(body).await?;
    let updated = db
        .write(move |conn| {
            write_tx(conn, |conn| {
                let current = store::find(conn, &auth.scope, &id)?.ok_or(ApiError::NotFound)?;
                let fields = invoice_fields(&body, Some(current.currency))?;
                let input = InvoiceInput::parse(&fields, Presence::Partial)?;
                operations::update(conn, &auth.scope, &id, &input, true)
            })
        })
        .await?;
    Ok(one("invoice", invoice(&updated)))
}

async fn issue(
    req: HttpRequest,
    auth: Result<Auth, ApiError>,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> BrResult {
    let auth = authenticated(&req, auth)?;
    let issued = db
        .write(move |conn| operations::move_to(conn, &auth.scope, &id, InvoiceStatus::Finalized))
        .await?;
    Ok(one("invoice", invoice(&issued)))
}
