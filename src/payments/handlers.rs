//! HTTP for payments: extract, call an operation on the database thread pool, answer.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Map;

use super::charges::{self, Pending};
use super::charging::AttemptView;
use super::domain::{PaymentInput, PaymentView};
use super::filter::PaymentFilter;
use super::operations;
use crate::accounts::auth::Auth;
use crate::db::{Db, DbConnection, Scope};
use crate::error::ApiError;
use crate::error::ApiResult;
use crate::http::body::Body;
use crate::http::fields::Presence;
use crate::http::fields::{Given, Reader};
use crate::http::pagination::{Page, PageRequest};
use crate::http::query::QueryParams;
use crate::http::{base_url, object_id, resource};
use crate::idempotency;
use crate::openapi::{
    AuthorizeWrite, CaptureWrite, IdempotencyErrors, IdempotencyHeader, PaymentListParams,
    PaymentWrite, ScopeHeaders, ScopedErrors,
};
use crate::secrets::Keyring;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/payments", "GET, POST")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        resource("/payments/{id}", "GET, PUT, PATCH, DELETE")
            .route(web::get().to(retrieve))
            .route(web::put().to(update))
            .route(web::patch().to(partial_update))
            .route(web::delete().to(destroy)),
    )
    .service(resource("/payments/{id}/cancel", "POST").route(web::post().to(cancel)))
    .service(resource("/payments/{id}/authorize", "POST").route(web::post().to(authorize)))
    .service(resource("/payments/{id}/capture", "POST").route(web::post().to(capture)))
    .service(resource("/payments/{id}/settle", "POST").route(web::post().to(settle)))
    .service(resource("/payments/{id}/attempts", "GET").route(web::get().to(attempts)));
}

/// Create a payment.
#[utoipa::path(post, path = "/payments/", tag = "payments", params(ScopeHeaders, IdempotencyHeader), request_body = PaymentWrite,
    responses(
        (status = 201, description = "Payment created.", body = PaymentView),
        ScopedErrors, IdempotencyErrors,
    ))]
pub async fn create(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    body: Body,
) -> ApiResult<HttpResponse> {
    let fields = body.read().await?;
    let input = PaymentInput::parse(&fields, Presence::Full)?;
    let key = idempotency::key(&req, &auth.scope, auth.principal.credential(), &fields)?;
    let base = base_url(&req);
    idempotency::answer(&db, key, StatusCode::CREATED, move |conn| {
        operations::create(conn, &auth.scope, &input, &base)
    })
    .await
}

/// List payments, newest first, with filters.
#[utoipa::path(get, path = "/payments/", tag = "payments", params(ScopeHeaders, PaymentListParams),
    responses(
        (status = 200, description = "A page of payments.", body = Page<PaymentView>),
        ScopedErrors,
    ))]
pub async fn list(req: HttpRequest, auth: Auth, db: web::Data<Db>) -> ApiResult<HttpResponse> {
    let params = QueryParams::parse(req.query_string())?;
    let filter = PaymentFilter::parse(&params)?;
    let page = PageRequest::new(&req, &params)?;
    let base = base_url(&req);
    // A dashboard's page near the list's start: its index reads the page's rows and few
    // others.
    let bounded = page.near_start() && filter.newest_by_status().is_some();
    let list =
        move |conn: &mut DbConnection| operations::list(conn, &auth.scope, &filter, &page, &base);
    let page = if bounded {
        db.read_bounded(list).await?
    } else {
        db.run(list).await?
    };
    Ok(HttpResponse::Ok().json(page))
}

/// Retrieve a payment.
#[utoipa::path(get, path = "/payments/{id}/", tag = "payments", params(ScopeHeaders, ("id" = i64, Path)),
    responses(
        (status = 200, body = PaymentView),
        ScopedErrors,
    ))]
pub async fn retrieve(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = object_id(&id)?;
    let base = base_url(&req);
    let view = db
        .read_bounded(move |conn| operations::retrieve(conn, &auth.scope, id, &base))
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Replace a payment's fields (amount, currency, date and description required).
#[utoipa::path(put, path = "/payments/{id}/", tag = "payments", params(ScopeHeaders, ("id" = i64, Path)),
    request_body = PaymentWrite,
    responses(
        (status = 200, body = PaymentView),
        ScopedErrors,
    ))]
pub async fn update(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
    body: Body,
) -> ApiResult<HttpResponse> {
    write(req, auth, db, id, body, Presence::Full).await
}

/// Change some of a payment's fields, or move its status.
#[utoipa::path(patch, path = "/payments/{id}/", tag = "payments", params(ScopeHeaders, ("id" = i64, Path)),
    request_body = PaymentWrite,
    responses(
        (status = 200, body = PaymentView),
        ScopedErrors,
    ))]
pub async fn partial_update(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
    body: Body,
) -> ApiResult<HttpResponse> {
    write(req, auth, db, id, body, Presence::Partial).await
}

async fn write(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
    body: Body,
    presence: Presence,
) -> ApiResult<HttpResponse> {
    let id = object_id(&id)?;
    let input = PaymentInput::parse(&body.read().await?, presence)?;
    let base = base_url(&req);
    let merge = presence == Presence::Partial;
    let view = db
        .write(move |conn| operations::update(conn, &auth.scope, id, &input, merge, &base))
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Delete a payment with nothing collected or in flight.
#[utoipa::path(delete, path = "/payments/{id}/", tag = "payments", params(ScopeHeaders, ("id" = i64, Path)),
    responses(
        (status = 204, description = "Deleted."),
        ScopedErrors,
    ))]
pub async fn destroy(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = object_id(&id)?;
    let base = base_url(&req);
    db.write(move |conn| operations::delete(conn, &auth.scope, id, &base))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Cancel a payment (from requires_payment_method or failed). One whose charge is held
/// (`capture: false`) or waits for the payer is released at its gateway first.
#[utoipa::path(post, path = "/payments/{id}/cancel/", tag = "payments", params(ScopeHeaders, IdempotencyHeader, ("id" = i64, Path)),
    responses(
        (status = 200, body = PaymentView),
        ScopedErrors, IdempotencyErrors,
    ))]
pub async fn cancel(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = object_id(&id)?;
    let key = idempotency::key(&req, &auth.scope, auth.principal.credential(), &Map::new())?;
    let keyring = crate::secrets::from_request(&req)?;
    cancel_payment(&db, key, auth.scope, keyring, base_url(&req), id).await
}

/// A cancel's steps (for the API and the console alike): a held charge is released first.
pub async fn cancel_payment(
    db: &Db,
    key: Option<idempotency::Key>,
    scope: Scope,
    keyring: web::Data<Keyring>,
    base: String,
    id: i64,
) -> ApiResult<HttpResponse> {
    let begun = scope.clone();
    idempotency::answer_call(
        db,
        key,
        StatusCode::OK,
        move |conn| charges::begin_release(conn, &begun, id, &keyring),
        |release: &Option<Pending>| release.as_ref().map(charges::call),
        move |conn, release, outcome| match (release, outcome) {
            (Some(release), Some(outcome)) => {
                charges::finish(conn, &scope, release, outcome, &base)
            }
            _ => operations::cancel(conn, &scope, id, &base),
        },
    )
    .await
}

/// Capture what an authorization holds (`{"capture": false}` on authorize): all of it, or
/// `{"amount": …}` of it (the rest is released and stays as the balance).
#[utoipa::path(post, path = "/payments/{id}/capture/", tag = "payments", params(ScopeHeaders, IdempotencyHeader, ("id" = i64, Path)),
    request_body = CaptureWrite,
    responses((status = 200, body = PaymentView), ScopedErrors, IdempotencyErrors))]
pub async fn capture(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
    body: Body,
) -> ApiResult<HttpResponse> {
    let id = object_id(&id)?;
    let fields = body.read().await?;
    let amount = match fields.get("amount") {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => {
            Some(crate::money::parse_decimal(value).map_err(|m| ApiError::field("amount", m))?)
        }
    };
    let key = idempotency::key(&req, &auth.scope, auth.principal.credential(), &fields)?;
    let keyring = crate::secrets::from_request(&req)?;
    capture_payment(&db, key, auth.scope, keyring, base_url(&req), id, amount).await
}

/// A capture's steps (for the API and the console alike).
pub async fn capture_payment(
    db: &Db,
    key: Option<idempotency::Key>,
    scope: Scope,
    keyring: web::Data<Keyring>,
    base: String,
    id: i64,
    amount: Option<rust_decimal::Decimal>,
) -> ApiResult<HttpResponse> {
    let begun = scope.clone();
    idempotency::answer_call(
        db,
        key,
        StatusCode::OK,
        move |conn| charges::begin_capture(conn, &begun, id, amount, &keyring),
        charges::call,
        move |conn, pending, outcome| charges::finish(conn, &scope, pending, outcome, &base),
    )
    .await
}

/// Pay with a source: `{"source": id}` charges its amount, or the payment's balance.
///
/// A payer's browser may send the payment's checkout key as `"checkout"` in the body instead
/// of credentials: it may then charge only a source made with that same key, and gets the
/// payment as a payer sees it (`PayerPayment`: no customer, invoice, sources or metadata).
#[utoipa::path(post, path = "/payments/{id}/authorize/", tag = "payments", params(ScopeHeaders, IdempotencyHeader, ("id" = i64, Path)),
    request_body = AuthorizeWrite,
    responses((status = 200, body = PaymentView), ScopedErrors, IdempotencyErrors))]
pub async fn authorize(
    req: HttpRequest,
    db: web::Data<Db>,
    id: web::Path<String>,
    body: Body,
) -> ApiResult<HttpResponse> {
    let id = object_id(&id)?;
    // Also callable from the checkout with the payment's key: the id alone is never enough.
    let caller = crate::accounts::payer::caller(&req, body).await?;
    if caller
        .actor
        .checkout_payment()
        .is_some_and(|payment| payment != id)
    {
        return Err(ApiError::NotFound);
    }
    let mut reader = Reader::new(&caller.fields, Presence::Full);
    reader.require("source");
    let source = reader.pk("source");
    let capture = reader.boolean("capture").unwrap_or(true);
    let mut errors = reader.finish();
    if !capture && caller.actor != crate::accounts::payer::Actor::Merchant {
        errors.add("capture", "Only the merchant chooses to capture later.");
    }
    errors.into_result()?;
    let Given::Value(source) = source else {
        return Err(ApiError::field("source", crate::http::fields::NOT_NULL));
    };
    let key = idempotency::key(&req, &caller.scope, caller.credential, &caller.fields)?;
    let (scope, base, actor) = (caller.scope, base_url(&req), caller.actor);
    let keyring = crate::secrets::from_request(&req)?;
    let begun = scope.clone();
    idempotency::answer_call(
        &db,
        key,
        StatusCode::OK,
        move |conn| charges::begin_charge(conn, &begun, id, source, actor, capture, &keyring),
        charges::call,
        move |conn, pending, outcome| {
            charges::finish(conn, &scope, pending, outcome, &base).map(|view| actor.shown(view))
        },
    )
    .await
}

/// Test mode: settle the charge in flight now, as the sandbox would a few seconds later.
#[utoipa::path(post, path = "/payments/{id}/settle/", tag = "payments", params(ScopeHeaders, IdempotencyHeader, ("id" = i64, Path)),
    responses((status = 200, body = PaymentView), ScopedErrors, IdempotencyErrors))]
pub async fn settle(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let base = base_url(&req);
    idempotency::answer_action(
        &req,
        auth,
        &db,
        &id,
        StatusCode::OK,
        move |conn, scope, id| charges::settle(conn, scope, id, &base),
    )
    .await
}

/// Every charge attempt of a payment, oldest first, with its gateway's answer.
#[utoipa::path(get, path = "/payments/{id}/attempts/", tag = "payments", params(ScopeHeaders, ("id" = i64, Path)),
    responses((status = 200, body = Vec<AttemptView>), ScopedErrors))]
pub async fn attempts(
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = object_id(&id)?;
    let attempts = db
        .run(move |conn| operations::attempts(conn, &auth.scope, id))
        .await?;
    Ok(HttpResponse::Ok().json(attempts))
}
