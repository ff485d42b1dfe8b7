//! Payments in the console: the list with the API's filters, a payment's page (fields,
//! attempts, refunds, the timeline of its events) and its actions: refund, capture, cancel.
//! Actions run the API's own flows (`refunds::handlers::refund_payment_with`, …) under an
//! idempotency key made when the page was shown, so a form sent twice acts once.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use maud::{html, Markup};
use serde_json::{Map, Value};

use super::layout::{
    self, count, filter_actions, filter_choice, filter_input, given, listing, money, pager, status,
    table, when, Section,
};
use super::{html, see_other, Posted, Refusal, Signed};
use crate::accounts::random;
use crate::accounts::roles::{Access, Resource};
use crate::db::{Db, DbConnection, Scope};
use crate::error::ApiError;
use crate::events::store::EventFilter;
use crate::events::EventView;
use crate::http::pagination::{Page, PageRequest};
use crate::http::query::QueryParams;
use crate::http::{base_url, object_id};
use crate::payments::charging::{AttemptStatus, AttemptView};
use crate::payments::domain::PaymentView;
use crate::payments::filter::PaymentFilter;
use crate::payments::status::PaymentStatus;
use crate::payments::{handlers as payment_flows, operations};
use crate::refunds::domain::{RefundInput, RefundView};
use crate::refunds::handlers::refund_payment_with;
use crate::refunds::store::RefundFilter;
use crate::{events, idempotency, refunds};

/// `GET /dashboard/payments/`.
pub async fn list(
    req: HttpRequest,
    signed: Signed,
    db: web::Data<Db>,
) -> Result<HttpResponse, Refusal> {
    let base = base_url(&req);
    let list =
        move |conn: &mut DbConnection,
              scope: &Scope,
              filter: &PaymentFilter,
              page: &PageRequest| { operations::list(conn, scope, filter, page, &base) };
    let (params, (code, page, error)) =
        listing(&req, &signed, &db, PaymentFilter::parse, list).await?;
    let statuses: Vec<&str> = PaymentStatus::ALL.iter().map(|s| s.as_str()).collect();
    let body = html! {
        h1 { "Payments" }
        form.filters method="get" action="/dashboard/payments/" role="search" aria-label="Filter payments" {
            div.field.wide {
                label for="search" { "Search descriptions" }
                input #search type="search" name="search" value=(params.get("search").unwrap_or(""));
            }
            (filter_choice(&params, "status", "Status", &statuses))
            (filter_input(&params, "customer", "Customer", "text"))
            (filter_input(&params, "currency", "Currency", "text"))
            (filter_input(&params, "date__gte", "Date from", "date"))
            (filter_input(&params, "date__lte", "Date to", "date"))
            (filter_input(&params, "amount__gte", "Amount at least", "text"))
            (filter_input(&params, "amount__lte", "Amount at most", "text"))
            (filter_actions("/dashboard/payments/"))
        }
        @if let Some(error) = &error { p.error role="alert" { (error) } }
        @if let Some(page) = &page { (payments_table(page, true)) }
    };
    Ok(html(
        code,
        layout::page(&signed, "Payments", Section::Payments, body),
    ))
}

/// A page of payments as a table, with its count and (for a list page) its pager.
pub fn payments_table(page: &Page<PaymentView>, paged: bool) -> Markup {
    let rows = html! {
        @for p in &page.results {
            tr {
                td { a href={ "/dashboard/payments/" (p.id) "/" } { "#" (p.id) " " (p.description) } }
                td.num { (money(&p.currency, &p.amount)) }
                td { (status(p.status.as_str())) }
                td { @match &p.customer { Some(c) => a href={ "/dashboard/customers/" (c) "/" } { (c) }, None => "–" } }
                td { (p.date) }
                td { (when(&p.created)) }
            }
        }
    };
    html! {
        (count(page.count, "payment", "payments"))
        @if page.results.is_empty() {
            p { "No payments match." }
        } @else {
            (table("Payments found", &["Payment", "Amount", "Status", "Customer", "Date", "Created"], rows))
        }
        @if paged { (pager(page)) }
    }
}

/// What a payment's page shows.
struct Detail {
    payment: PaymentView,
    attempts: Vec<AttemptView>,
    refunds: Vec<RefundView>,
    timeline: Vec<EventView>,
}

fn load(
    conn: &mut DbConnection,
    signed_scope: &crate::db::Scope,
    readable: Vec<&'static str>,
    id: i64,
    refunds_page: &PageRequest,
    base: &str,
) -> Result<Detail, ApiError> {
    let payment = operations::retrieve(conn, signed_scope, id, base)?;
    let attempts = operations::attempts(conn, signed_scope, id)?;
    let filter = RefundFilter {
        payment: Some(id),
        ..Default::default()
    };
    let refunds = refunds::operations::list(conn, signed_scope, &filter, refunds_page)?.results;
    let mut timeline = Vec::new();
    let objects = std::iter::once(("payment", id)).chain(refunds.iter().map(|r| ("refund", r.id)));
    for (object_type, object_id) in objects {
        let filter = EventFilter {
            object_type: Some(object_type.to_string()),
            object_id: Some(object_id.to_string()),
            readable: readable.clone(),
            ..Default::default()
        };
        timeline.extend(events::store::list(conn, signed_scope, &filter, 0, 100)?);
    }
    timeline.sort_by_key(|e| std::cmp::Reverse(e.id));
    Ok(Detail {
        payment,
        attempts,
        refunds,
        timeline,
    })
}

/// Messages after an action, chosen by the query (never text from it).
fn done(params: &QueryParams) -> Option<&'static str> {
    match params.get("done")? {
        "refund" => Some("Refund created."),
        "capture" => Some("Captured."),
        "cancel" => Some("Payment cancelled."),
        _ => None,
    }
}

/// `GET /dashboard/payments/{id}/`.
pub async fn detail(
    req: HttpRequest,
    signed: Signed,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> Result<HttpResponse, Refusal> {
    let id = object_id(&id)?;
    let params = given(&req)?;
    show(&req, &signed, &db, id, done(&params), None).await
}

async fn show(
    req: &HttpRequest,
    signed: &Signed,
    db: &Db,
    id: i64,
    notice: Option<&str>,
    error: Option<(StatusCode, String)>,
) -> Result<HttpResponse, Refusal> {
    let refunds_page =
        PageRequest::new(req, &QueryParams(vec![("page_size".into(), "100".into())]))?;
    let (scope, readable, base) = (
        signed.scope().clone(),
        signed.auth.readable_objects(),
        base_url(req),
    );
    let detail = db
        .run(move |conn| load(conn, &scope, readable, id, &refunds_page, &base))
        .await?;
    let status_code = error.as_ref().map_or(StatusCode::OK, |(s, _)| *s);
    let title = format!("Payment #{id}");
    let body = payment_page(
        signed,
        &detail,
        notice,
        error.as_ref().map(|(_, m)| m.as_str()),
    );
    Ok(html(
        status_code,
        layout::page(signed, &title, Section::Payments, body),
    ))
}

fn payment_page(signed: &Signed, d: &Detail, notice: Option<&str>, error: Option<&str>) -> Markup {
    let p = &d.payment;
    let currency = &p.currency;
    html! {
        p.crumbs { a href="/dashboard/payments/" { "Payments" } " / #" (p.id) }
        h1 { (p.description) }
        p.headline { span.amount { (money(currency, &p.amount)) } " " (status(p.status.as_str())) }
        @if let Some(notice) = notice { p.notice role="status" { (notice) } }
        @if let Some(error) = error { p.error role="alert" { (error) } }
        (actions(signed, d))
        section aria-labelledby="fields" {
            h2 #fields { "Details" }
            dl.fields {
                dt { "ID" } dd { (p.id) }
                dt { "Amount" } dd { (money(currency, &p.amount)) }
                dt { "Balance (left to collect)" } dd { (money(currency, &p.balance)) }
                dt { "Refunded" } dd { (money(currency, &p.amount_refunded)) @if p.refunded { " (in full)" } }
                dt { "Status" } dd { (status(p.status.as_str())) @if let Some(reason) = &p.failed_reason { " · " (reason) } }
                dt { "Customer" } dd { @match &p.customer { Some(c) => a href={ "/dashboard/customers/" (c) "/" } { (c) }, None => "–" } }
                dt { "Invoice" } dd { @match &p.invoice { Some(i) => a href={ "/dashboard/invoices/" (i) "/" } { (i) }, None => "–" } }
                dt { "Date" } dd { (p.date) }
                dt { "Paid at" } dd { (p.payment_date.as_deref().map(when).unwrap_or_else(|| "–".into())) }
                dt { "Created" } dd { (when(&p.created)) }
                @if let Some(url) = &p.checkout_url {
                    dt { "Checkout link" }
                    dd.checkout {
                        input #checkout-url type="text" readonly value=(url) aria-label="Checkout link";
                        @if signed.may(Resource::Payments, Access::Write) {
                            button.secondary type="button" data-copy="checkout-url" hidden { "Copy link" }
                        }
                    }
                }
                @for (key, value) in &p.metadata {
                    dt { "metadata." (key) } dd { (plain(value)) }
                }
            }
        }
        section aria-labelledby="attempts" {
            h2 #attempts { "Attempts" }
            @if d.attempts.is_empty() { p { "No charge has been tried yet." } } @else {
                div.table-wrap tabindex="0" role="region" aria-label="Attempts" {
                    table {
                        thead { tr { th scope="col" { "Attempt" } th scope="col" { "Gateway" } th scope="col" { "Amount" } th scope="col" { "Status" } th scope="col" { "Reference" } th scope="col" { "Created" } } }
                        tbody { @for a in &d.attempts { tr {
                            td { "#" (a.id) }
                            td { (a.gateway) }
                            td.num { (money(&a.currency, &a.amount)) }
                            td { (status(a.status.as_str())) @if let Some(code) = &a.failure_code { " · " (code) } }
                            td { code { (a.gateway_reference.as_deref().unwrap_or("–")) } }
                            td { (when(&a.created)) }
                        } } }
                    }
                }
            }
        }
        section aria-labelledby="refunds" {
            h2 #refunds { "Refunds" }
            @if d.refunds.is_empty() { p { "No refunds." } } @else {
                div.table-wrap tabindex="0" role="region" aria-label="Refunds" {
                    table {
                        thead { tr { th scope="col" { "Refund" } th scope="col" { "Amount" } th scope="col" { "Status" } th scope="col" { "Reason" } th scope="col" { "Created" } } }
                        tbody { @for r in &d.refunds { tr {
                            td { "#" (r.id) }
                            td.num { (money(&r.currency, &r.amount)) }
                            td { (status(r.status.as_str())) @if let Some(why) = &r.failed_reason { " · " (why) } }
                            td { (r.reason.map_or("–", |r| r.as_str()).replace('_', " ")) }
                            td { (when(&r.created)) }
                        } } }
                    }
                }
            }
        }
        section aria-labelledby="timeline" {
            h2 #timeline { "Timeline" }
            ol.timeline {
                @for e in &d.timeline {
                    li {
                        span.event { (e.event_type) }
                        " by " span.actor { (actor(&e.actor)) }
                        " · " time datetime=(e.created) { (when(&e.created)) }
                    }
                }
            }
        }
    }
}

/// What an event's actor is called on a page.
pub fn actor(actor: &Value) -> String {
    let field = |name| actor.get(name).and_then(Value::as_str).unwrap_or("");
    match field("type") {
        "user" => field("email").to_string(),
        "key" => format!("key {}", field("prefix")),
        "checkout" => "the payer (checkout)".to_string(),
        "provider" => format!("the provider ({})", field("integration")),
        "system" => format!("cobro ({})", field("job")),
        _ => "someone unknown".to_string(),
    }
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The actions the payment's state allows and the user's role permits; none for a viewer.
fn actions(signed: &Signed, d: &Detail) -> Markup {
    let p = &d.payment;
    let refundable = refundable(p);
    let may_refund = signed.may(Resource::Refunds, Access::Write) && refundable;
    let held = d
        .attempts
        .iter()
        .any(|a| a.status == AttemptStatus::RequiresCapture);
    let may_capture = signed.may(Resource::Payments, Access::Write) && held;
    let may_cancel = signed.may(Resource::Payments, Access::Write)
        && (p.status.can_move_to(PaymentStatus::Cancelled) || held);
    let path = format!("/dashboard/payments/{}/", p.id);
    let once = || html! { input type="hidden" name="idempotency_key" value=(random(24)); };
    html! {
        @if may_refund || may_capture || may_cancel {
            section.actions aria-labelledby="actions" {
                h2 #actions { "Actions" }
                @if may_refund {
                    form.refund method="post" action={ (path) "refund/" } {
                        (layout::csrf(signed)) (once())
                        div.field {
                            label for="refund-amount" { "Amount to refund (" (p.currency) ")" }
                            input #refund-amount name="amount" type="text" inputmode="decimal" placeholder="All that is left" aria-describedby="refund-hint";
                            small #refund-hint { "Leave empty to refund all that is left." }
                        }
                        div.field {
                            label for="refund-reason" { "Reason" }
                            select #refund-reason name="reason" {
                                option value="" { "None given" }
                                option value="requested_by_customer" { "Requested by the customer" }
                                option value="duplicate" { "Duplicate" }
                                option value="fraudulent" { "Fraudulent" }
                            }
                        }
                        button type="submit" data-confirm="Refund this payment?" { "Refund" }
                    }
                }
                @if may_capture {
                    form method="post" action={ (path) "capture/" } {
                        (layout::csrf(signed)) (once())
                        button type="submit" { "Capture" }
                    }
                }
                @if may_cancel {
                    form method="post" action={ (path) "cancel/" } {
                        (layout::csrf(signed)) (once())
                        button.danger type="submit" data-confirm="Cancel this payment?" { "Cancel payment" }
                    }
                }
            }
        }
    }
}

/// Whether anything collected is left to refund.
fn refundable(p: &PaymentView) -> bool {
    let number =
        |a: &crate::money::Amount| a.0.parse::<rust_decimal::Decimal>().unwrap_or_default();
    number(&p.amount) - number(&p.balance) - number(&p.amount_refunded)
        > rust_decimal::Decimal::ZERO
}

/// The form's fields that the flow reads, as the API would get them (empty ones left out).
fn body_of(posted: &Posted, names: &[&str]) -> Map<String, Value> {
    names
        .iter()
        .map(|name| (name.to_string(), posted.text(name)))
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k, Value::String(v)))
        .collect()
}

fn form_key(
    req: &HttpRequest,
    posted: &Posted,
    fields: &Map<String, Value>,
) -> Result<Option<idempotency::Key>, ApiError> {
    let raw = posted.text("idempotency_key");
    if raw.is_empty() {
        return Ok(None);
    }
    let auth = &posted.signed.auth;
    idempotency::named(req, &auth.scope, auth.principal.credential(), &raw, fields).map(Some)
}

/// After an action: on to the payment's page, or the page again with what went wrong.
async fn after(
    req: &HttpRequest,
    posted: &Posted,
    db: &Db,
    id: i64,
    action: &str,
    result: Result<HttpResponse, ApiError>,
) -> Result<HttpResponse, Refusal> {
    match result {
        Ok(_) => Ok(see_other(&format!(
            "/dashboard/payments/{id}/?done={action}"
        ))),
        Err(ApiError::NotFound) => Err(ApiError::NotFound.into()),
        Err(err) => {
            let message = err.for_people();
            show(
                req,
                &posted.signed,
                db,
                id,
                None,
                Some((err.status_code(), message)),
            )
            .await
        }
    }
}

/// `POST /dashboard/payments/{id}/refund/`.
pub async fn refund(
    req: HttpRequest,
    posted: Posted,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> Result<HttpResponse, Refusal> {
    let id = object_id(&id)?;
    let fields = body_of(&posted, &["amount", "reason"]);
    let result = async {
        let input = RefundInput::parse(&fields, Some(id))?;
        let key = form_key(&req, &posted, &fields)?;
        let keyring = crate::secrets::from_request(&req)?;
        let scope = posted.signed.scope().clone();
        refund_payment_with(&db, key, scope, keyring, base_url(&req), input).await
    }
    .await;
    after(&req, &posted, &db, id, "refund", result).await
}

/// `POST /dashboard/payments/{id}/capture/`: all that is held.
pub async fn capture(
    req: HttpRequest,
    posted: Posted,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> Result<HttpResponse, Refusal> {
    let id = object_id(&id)?;
    let result = async {
        let key = form_key(&req, &posted, &Map::new())?;
        let keyring = crate::secrets::from_request(&req)?;
        let scope = posted.signed.scope().clone();
        payment_flows::capture_payment(&db, key, scope, keyring, base_url(&req), id, None).await
    }
    .await;
    after(&req, &posted, &db, id, "capture", result).await
}

/// `POST /dashboard/payments/{id}/cancel/`.
pub async fn cancel(
    req: HttpRequest,
    posted: Posted,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> Result<HttpResponse, Refusal> {
    let id = object_id(&id)?;
    let result = async {
        let key = form_key(&req, &posted, &Map::new())?;
        let keyring = crate::secrets::from_request(&req)?;
        let scope = posted.signed.scope().clone();
        payment_flows::cancel_payment(&db, key, scope, keyring, base_url(&req), id).await
    }
    .await;
    after(&req, &posted, &db, id, "cancel", result).await
}
