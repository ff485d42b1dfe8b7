//! The public checkout page, `/pay/<key>/`: what a payer opens from `checkout_url`. The key
//! is unguessable (not the payment's id), so payments cannot be enumerated; the page needs
//! no token and works without JavaScript (a form post pays). What a key may read and change
//! is written down, route by route, in [`crate::accounts::payer`].

pub mod page;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::accounts;
use crate::accounts::payer::{self, open_payment, Actor};
use crate::db::{Db, DbConnection, Scope};
use crate::error::ApiError;
use crate::http::body::Body;
use crate::http::{base_url, resource};
use crate::payments::charging::AttemptStatus;
use crate::payments::domain::{Payment, PaymentView};
use crate::payments::status::PaymentStatus;
use crate::payments::{charges, store as payment_store};
use crate::sources::{operations as sources, store as source_store};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/pay/{key}", "GET, POST")
            .route(web::get().to(show))
            .route(web::post().to(pay)),
    )
    .service(
        resource("/payments/{id}/pay", "GET, POST")
            .route(web::get().to(continue_payment))
            .route(web::post().to(authorize_redirect)),
    )
    .service(web::resource("/assets/checkout.js").route(web::get().to(script)));
}

/// The checkout pages' one script of their own (the card form, with Stripe.js).
async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("assets/checkout.js"))
}

/// What a checkout page may load and reach: its own script and Stripe.js, which calls
/// Stripe's API and opens its 3-D Secure frames; no inline script, no framing.
fn content_security_policy() -> String {
    let (js, api) = crate::gateways::stripe::origins();
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
         script-src 'self' {js}; connect-src 'self' {js} {api}; \
         frame-src {js} https://hooks.stripe.com; base-uri 'none'; frame-ancestors 'none'"
    )
}

/// What a checkout request ends with.
enum Outcome {
    /// Paid (or in flight): send the payer on.
    Redirect(String),
    /// Show a page, with this status.
    Page(StatusCode, String),
}

fn html(mut response: actix_web::HttpResponseBuilder, body: String) -> HttpResponse {
    response
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("x-frame-options", "DENY"))
        .insert_header((header::CONTENT_SECURITY_POLICY, content_security_policy()))
        .body(body)
}

/// A payer is shown pages, never JSON: a refusal, an outage or a fault is a page too, with
/// the status and headers the API would answer (`Retry-After` on a 429 or a 503).
fn respond(result: Result<Outcome, ApiError>) -> HttpResponse {
    let err = match result {
        Ok(Outcome::Redirect(to)) => {
            return HttpResponse::SeeOther()
                .insert_header((header::LOCATION, to))
                .finish()
        }
        Ok(Outcome::Page(status, body)) => return html(HttpResponse::build(status), body),
        Err(err) => err,
    };
    let body = match &err {
        ApiError::NotFound => page::not_found(),
        ApiError::Throttled(wait) => page::throttled(*wait),
        ApiError::Contention | ApiError::Unavailable(_) => page::unavailable(),
        ApiError::Internal(_) => page::fault(),
        _ => page::unreadable(),
    };
    html(err.response_builder(), body)
}

async fn show(req: HttpRequest, db: web::Data<Db>, key: web::Path<String>) -> HttpResponse {
    let key = key.into_inner();
    respond(
        async {
            payer::throttle(&req, &key)?;
            db.run(move |conn| render(conn, &key, None, StatusCode::OK))
                .await
        }
        .await,
    )
}

async fn pay(
    req: HttpRequest,
    db: web::Data<Db>,
    key: web::Path<String>,
    body: Body,
) -> HttpResponse {
    let key = key.into_inner();
    respond(
        async {
            payer::throttle(&req, &key)?;
            let form = body.read().await?;
            let method = form
                .get("method")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string();
            let keyring = crate::secrets::from_request(&req)?.into_inner();
            charge(&db, keyring, key, method, base_url(&req)).await
        }
        .await,
    )
}

fn render(
    conn: &mut DbConnection,
    key: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Result<Outcome, ApiError> {
    let Some((scope, payment)) = open_payment(conn, key)? else {
        return Ok(Outcome::Page(StatusCode::NOT_FOUND, page::not_found()));
    };
    let workspace = accounts::workspace_name(conn, &scope).map_err(ApiError::internal)?;
    let instructions = transfer_instructions(conn, &scope, &payment)?;
    let awaiting_payer = charges::awaiting_payer(conn, &scope, payment.id)?.is_some();
    let stripe = card_integration(conn, &scope)?;
    let page = page::Page {
        workspace: &workspace,
        payment: &payment,
        key,
        error,
        instructions: instructions.as_deref(),
        awaiting_payer,
        card: stripe
            .as_ref()
            .map(|(integration, publishable_key)| page::CardForm {
                integration,
                publishable_key,
            }),
    };
    Ok(Outcome::Page(status, page::payment(&page)))
}

/// The mode's Stripe integration that takes cards on the checkout page: the first enabled
/// one with a publishable key, as (id, publishable key).
fn card_integration(
    conn: &mut DbConnection,
    scope: &Scope,
) -> Result<Option<(String, String)>, ApiError> {
    let enabled = crate::integrations::store::enabled_of(conn, scope, "stripe")?;
    Ok(enabled.into_iter().find_map(|i| {
        let key = i
            .shown
            .get(crate::gateways::stripe::PUBLISHABLE_KEY)?
            .as_str()?;
        Some((i.id.clone(), key.to_string()))
    }))
}

/// For a payment waiting on a bank transfer: what the payer must do.
fn transfer_instructions(
    conn: &mut DbConnection,
    scope: &Scope,
    payment: &Payment,
) -> Result<Option<String>, ApiError> {
    if payment.status != PaymentStatus::Processing {
        return Ok(None);
    }
    let in_flight = payment_store::attempts(conn, scope, payment.id)?
        .into_iter()
        .find(|a| a.status == AttemptStatus::Processing);
    let Some(attempt) = in_flight else {
        return Ok(None);
    };
    let source = source_store::find(conn, scope, attempt.source_id)?;
    Ok(source.and_then(|s| {
        s.gateway_data
            .get("instructions")?
            .get("message")?
            .as_str()
            .map(str::to_string)
    }))
}

/// Pays with the chosen method, as the API would: a source for it (one write), then a
/// charge (`charges::authorize`, which asks a provider with no transaction open).
async fn charge(
    db: &Db,
    keyring: std::sync::Arc<crate::secrets::Keyring>,
    key: String,
    method: String,
    base: String,
) -> Result<Outcome, ApiError> {
    let made = {
        let (key, keyring) = (key.clone(), keyring.clone());
        db.write(move |conn| payer_source(conn, &key, &method, &keyring))
            .await?
    };
    let (scope, payment, source) = match made {
        Ok(made) => made,
        Err(page) => return Ok(page),
    };
    let payer = Actor::Payer { payment };
    let charged = charges::authorize(
        db,
        keyring,
        scope.clone(),
        payment,
        source,
        base.clone(),
        payer,
    )
    .await;
    db.run(move |conn| match charged {
        Ok(paid) => after_charge(conn, &scope, &key, &paid, &base),
        // Paid or cancelled meanwhile: the page says so.
        Err(ApiError::Validation(_)) => render(conn, &key, None, StatusCode::CONFLICT),
        // The checkout was turned off meanwhile.
        Err(ApiError::NotFound) => render(conn, &key, None, StatusCode::NOT_FOUND),
        Err(other) => Err(other),
    })
    .await
}

/// The source a payer's choice makes: (scope, payment, source), or the page to show
/// instead (an unknown key, a payment that cannot be paid now, a method not offered).
fn payer_source(
    conn: &mut DbConnection,
    key: &str,
    method: &str,
    keyring: &crate::secrets::Keyring,
) -> Result<Result<(Scope, i64, i64), Outcome>, ApiError> {
    let Some((scope, payment)) = open_payment(conn, key)? else {
        return Ok(Err(Outcome::Page(StatusCode::NOT_FOUND, page::not_found())));
    };
    if payer::check_payable(&payment).is_err() {
        // Paid, cancelled or in flight: the page says so, and nothing is made.
        return render(conn, key, None, StatusCode::CONFLICT).map(Err);
    }
    let source = match method.split_once(':') {
        Some(("sandbox", token)) => json!({"gateway": "sandbox", "gateway_data": {"token": token}}),
        None if method == "bank_transfer" => json!({"gateway": "bank_transfer"}),
        _ => {
            let message = Some("Choose a way to pay.");
            return render(conn, key, message, StatusCode::BAD_REQUEST).map(Err);
        }
    };
    let payer = Actor::Payer {
        payment: payment.id,
    };
    let fields = source.as_object().cloned().unwrap_or_default();
    match sources::create_builtin(conn, &scope, &fields, payer, keyring) {
        Ok(source) => Ok(Ok((scope, payment.id, source.id))),
        Err(ApiError::Validation(_)) => {
            let message = Some("That way to pay is not available here.");
            render(conn, key, message, StatusCode::BAD_REQUEST).map(Err)
        }
        Err(ApiError::NotFound) => render(conn, key, None, StatusCode::NOT_FOUND).map(Err),
        Err(other) => Err(other),
    }
}

/// Once charged: a decline shows on the page, a charge waiting for the payer sends them to
/// authorize it, anything else lands.
fn after_charge(
    conn: &mut DbConnection,
    scope: &Scope,
    key: &str,
    paid: &PaymentView,
    base: &str,
) -> Result<Outcome, ApiError> {
    if let (Some(reason), PaymentStatus::Failed | PaymentStatus::Incomplete) =
        (&paid.failed_reason, paid.status)
    {
        let message = format!("The payment was declined ({reason}); nothing was charged this time. Choose another way to pay.");
        return render(conn, key, Some(&message), StatusCode::OK);
    }
    if charges::awaiting_payer(conn, scope, paid.id)?.is_some() {
        return Ok(Outcome::Redirect(format!(
            "{base}/payments/{}/pay/?checkout={key}",
            paid.id
        )));
    }
    landing(paid, base, key).map(Outcome::Redirect)
}

/// Where a payer goes once a payment is settled or in flight: the merchant's `return_url`
/// with the payment's id and status, or the checkout page (a receipt) without one.
fn landing(paid: &PaymentView, base: &str, key: &str) -> Result<String, ApiError> {
    Ok(match &paid.return_url {
        Some(url) => {
            let mut url = url::Url::parse(url).map_err(ApiError::internal)?;
            url.query_pairs_mut()
                .append_pair("payment", &paid.id.to_string())
                .append_pair("status", paid.status.as_str());
            url.to_string()
        }
        None => format!("{base}/pay/{key}/"),
    })
}

/// The `checkout` key of a query string (empty when there is none).
fn checkout_key(query: &str) -> Result<String, ApiError> {
    let params = crate::http::query::QueryParams::parse(query)?;
    Ok(params.get("checkout").unwrap_or("").to_string())
}

/// The payment behind `?checkout=<key>` if it is payment `id` with its checkout open.
fn keyed_payment(
    conn: &mut DbConnection,
    req_query: &str,
    id: &str,
) -> Result<Option<(Scope, Payment, String)>, ApiError> {
    let key = checkout_key(req_query)?;
    let found = open_payment(conn, &key)?;
    Ok(found
        .filter(|(_, p)| p.id.to_string() == id)
        .map(|(scope, p)| (scope, p, key)))
}

/// `GET /payments/{id}/pay/?checkout=<key>`: continues a redirect flow. With a charge
/// waiting for the payer, the sandbox's authorization page; otherwise on to the landing.
async fn continue_payment(
    req: HttpRequest,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> HttpResponse {
    respond(
        async {
            let (query, base) = (req.query_string().to_string(), base_url(&req));
            payer::throttle(&req, &checkout_key(&query)?)?;
            db.run(move |conn| {
                let Some((scope, payment, key)) = keyed_payment(conn, &query, &id)? else {
                    return Ok(Outcome::Page(StatusCode::NOT_FOUND, page::not_found()));
                };
                let Some(attempt) = charges::awaiting_payer(conn, &scope, payment.id)? else {
                    return landing(&payment.view(&base), &base, &key).map(Outcome::Redirect);
                };
                let workspace =
                    accounts::workspace_name(conn, &scope).map_err(ApiError::internal)?;
                let amount = attempt.currency.for_people(attempt.amount);
                if attempt.gateway == "sandbox" {
                    let shown = page::sandbox_authorization(&workspace, &payment, &key, &amount);
                    return Ok(Outcome::Page(StatusCode::OK, shown));
                }
                // At a provider: its script authenticates the card, with the charge's secret.
                let source = source_store::find(conn, &scope, attempt.source_id)?
                    .ok_or_else(|| ApiError::internal("the charge's source vanished"))?;
                let secret = source
                    .gateway_data
                    .get("client_secret")
                    .and_then(|s| s.as_str());
                let publishable = card_integration(conn, &scope)?.map(|(_, key)| key);
                let (Some(secret), Some(publishable)) = (secret, publishable) else {
                    return landing(&payment.view(&base), &base, &key).map(Outcome::Redirect);
                };
                let shown = page::card_authentication(
                    &workspace,
                    &payment,
                    &key,
                    &amount,
                    secret,
                    &publishable,
                );
                Ok(Outcome::Page(StatusCode::OK, shown))
            })
            .await
        }
        .await,
    )
}

/// A charge of the key's payment that waits for its payer at a provider (3-D Secure), ready
/// to ask the provider about: (scope, key, the call).
fn provider_answer(
    conn: &mut DbConnection,
    query: &str,
    id: &str,
    keyring: &crate::secrets::Keyring,
) -> Result<Option<(Scope, String, charges::Pending)>, ApiError> {
    let Some((scope, payment, key)) = keyed_payment(conn, query, id)? else {
        return Ok(None);
    };
    let waiting = charges::awaiting_payer(conn, &scope, payment.id)?;
    if waiting.is_none_or(|a| a.gateway == "sandbox") {
        return Ok(None);
    }
    let pending = charges::begin_ask(conn, &scope, payment.id, keyring)?;
    Ok(pending.map(|p| (scope, key, p)))
}

/// The payer's answer on the authorization page; then on to the landing.
async fn authorize_redirect(
    req: HttpRequest,
    db: web::Data<Db>,
    id: web::Path<String>,
    body: Body,
) -> HttpResponse {
    respond(
        async {
            let (query, base) = (req.query_string().to_string(), base_url(&req));
            payer::throttle(&req, &checkout_key(&query)?)?;
            let form = body.read().await?;
            let approved = form.get("decision").and_then(|d| d.as_str()) == Some("approve");
            // At a provider, the payer's word is not taken: the provider is asked how the
            // authentication ended, with no transaction open.
            let keyring = crate::secrets::from_request(&req)?.into_inner();
            let asked = {
                let (query, id) = (query.clone(), id.clone());
                db.write(move |conn| provider_answer(conn, &query, &id, &keyring))
                    .await?
            };
            if let Some((scope, key, pending)) = asked {
                let (pending, outcome) = web::block(move || {
                    let outcome = charges::call(&pending);
                    (pending, outcome)
                })
                .await
                .map_err(ApiError::internal)?;
                let finishing = base.clone();
                let paid = db
                    .write(move |conn| {
                        charges::finish(conn, &scope, &pending, &outcome, &finishing)
                    })
                    .await?;
                return landing(&paid, &base, &key).map(Outcome::Redirect);
            }
            db.write(move |conn| {
                let Some((scope, payment, key)) = keyed_payment(conn, &query, &id)? else {
                    return Ok(Outcome::Page(StatusCode::NOT_FOUND, page::not_found()));
                };
                match charges::finish_redirect(conn, &scope, payment.id, approved, &base) {
                    Ok(paid) => landing(&paid, &base, &key).map(Outcome::Redirect),
                    // Answered already (single use): the landing says how it ended.
                    Err(ApiError::BadRequest(_)) => {
                        landing(&payment.view(&base), &base, &key).map(Outcome::Redirect)
                    }
                    Err(other) => Err(other),
                }
            })
            .await
        }
        .await,
    )
}
