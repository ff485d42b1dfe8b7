//! HTTP for refunds: extract, call an operation, answer.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{Map, Value};

use super::domain::{RefundChange, RefundInput, RefundStatus, RefundView};
use super::operations;
use super::store::{Ordering, RefundFilter};
use crate::accounts::auth::Auth;
use crate::db::{Db, Scope};
use crate::error::ApiResult;
use crate::http::body::Body;
use crate::http::pagination::{Page, PageRequest};
use crate::http::query::{FilterReader, QueryParams};
use crate::http::{base_url, object_id, resource};
use crate::idempotency;
use crate::openapi::{
    IdempotencyErrors, IdempotencyHeader, RefundListParams, RefundPatch, RefundWrite, ScopeHeaders,
    ScopedErrors,
};
use crate::secrets::Keyring;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/refunds", "GET, POST")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        resource("/refunds/{id}", "GET, PATCH")
            .route(web::get().to(retrieve))
            .route(web::patch().to(partial_update)),
    )
    .service(resource("/refunds/{id}/cancel", "POST").route(web::post().to(cancel)))
    .service(resource("/refunds/{id}/settle", "POST").route(web::post().to(settle)))
    .service(resource("/payments/{id}/refund", "POST").route(web::post().to(refund_payment)));
}

/// Refund (part of) what a payment collected: `{"payment": 12, "amount": "4.00"}`; without
/// `amount`, all that is left to refund.
#[utoipa::path(post, path = "/refunds/", tag = "refunds", params(ScopeHeaders, IdempotencyHeader), request_body = RefundWrite,
    responses((status = 201, body = RefundView), ScopedErrors, IdempotencyErrors))]
pub async fn create(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    body: Body,
) -> ApiResult<HttpResponse> {
    let fields = body.read().await?;
    let input = RefundInput::parse(&fields, None)?;
    refund(req, auth, db, fields, input).await
}

/// As `POST /refunds/`, for the payment in the path.
#[utoipa::path(post, path = "/payments/{id}/refund/", tag = "refunds", params(ScopeHeaders, IdempotencyHeader, ("id" = i64, Path)),
    request_body = RefundWrite,
    responses((status = 201, body = RefundView), ScopedErrors, IdempotencyErrors))]
pub async fn refund_payment(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
    body: Body,
) -> ApiResult<HttpResponse> {
    let id = object_id(&id)?;
    let fields = body.read().await?;
    let input = RefundInput::parse(&fields, Some(id))?;
    refund(req, auth, db, fields, input).await
}

/// The refund's three steps, under the request's `Idempotency-Key`.
async fn refund(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    fields: Map<String, Value>,
    input: RefundInput,
) -> ApiResult<HttpResponse> {
    let key = idempotency::key(&req, &auth.scope, auth.principal.credential(), &fields)?;
    let keyring = crate::secrets::from_request(&req)?;
    refund_payment_with(&db, key, auth.scope, keyring, base_url(&req), input).await
}

/// A refund's three steps (for the API and the console alike): recorded, sent to its
/// gateways with no transaction open, their answers applied.
pub async fn refund_payment_with(
    db: &Db,
    key: Option<idempotency::Key>,
    scope: Scope,
    keyring: web::Data<Keyring>,
    base: String,
    input: RefundInput,
) -> ApiResult<HttpResponse> {
    let (begun, base_begun) = (scope.clone(), base.clone());
    idempotency::answer_call(
        db,
        key,
        StatusCode::CREATED,
        move |conn| operations::begin(conn, &begun, &input, &keyring, &base_begun),
        operations::call,
        move |conn, pending, outcomes| operations::finish(conn, &scope, pending, outcomes, &base),
    )
    .await
}

/// List refunds, newest first.
#[utoipa::path(get, path = "/refunds/", tag = "refunds", params(ScopeHeaders, RefundListParams),
    responses((status = 200, body = Page<RefundView>), ScopedErrors))]
pub async fn list(req: HttpRequest, auth: Auth, db: web::Data<Db>) -> ApiResult<HttpResponse> {
    let params = QueryParams::parse(req.query_string())?;
    let mut r = FilterReader::new(&params);
    let filter = RefundFilter {
        payment: r.integer("payment"),
        status: r.choice::<RefundStatus>("status"),
        created_gte: r.datetime("created__gte"),
        created_lte: r.datetime("created__lte"),
        ordering: r.choice::<Ordering>("ordering"),
    };
    r.finish()?;
    let page = PageRequest::new(&req, &params)?;
    let page = db
        .run(move |conn| operations::list(conn, &auth.scope, &filter, &page))
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Retrieve a refund.
#[utoipa::path(get, path = "/refunds/{id}/", tag = "refunds", params(ScopeHeaders, ("id" = i64, Path)),
    responses((status = 200, body = RefundView), ScopedErrors))]
pub async fn retrieve(
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = object_id(&id)?;
    let view = db
        .run(move |conn| operations::retrieve(conn, &auth.scope, id))
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Change a refund's metadata, or end by hand a refund the merchant sends back itself (a
/// bank transfer): `{"status": "succeeded"}`, or `"failed"` with `failed_reason`.
#[utoipa::path(patch, path = "/refunds/{id}/", tag = "refunds", params(ScopeHeaders, ("id" = i64, Path)),
    request_body = RefundPatch,
    responses((status = 200, body = RefundView), ScopedErrors))]
pub async fn partial_update(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
    body: Body,
) -> ApiResult<HttpResponse> {
    let id = object_id(&id)?;
    let change = RefundChange::parse(&body.read().await?)?;
    let base = base_url(&req);
    let view = db
        .write(move |conn| operations::update(conn, &auth.scope, id, &change, &base))
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Cancel a pending refund that has not gone out (the sandbox's, or a bank transfer back the
/// merchant has not made); a card refund sent to a provider cannot be.
#[utoipa::path(post, path = "/refunds/{id}/cancel/", tag = "refunds", params(ScopeHeaders, IdempotencyHeader, ("id" = i64, Path)),
    responses((status = 200, body = RefundView), ScopedErrors, IdempotencyErrors))]
pub async fn cancel(
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
        move |conn, scope, id| operations::cancel(conn, scope, id, &base),
    )
    .await
}

/// Test mode: settle the refund's sandbox parts now, as the sandbox would a few seconds
/// later.
#[utoipa::path(post, path = "/refunds/{id}/settle/", tag = "refunds", params(ScopeHeaders, IdempotencyHeader, ("id" = i64, Path)),
    responses((status = 200, body = RefundView), ScopedErrors, IdempotencyErrors))]
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
        move |conn, scope, id| operations::settle_now(conn, scope, id, &base),
    )
    .await
}
