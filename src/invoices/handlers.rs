//! HTTP for invoices.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::domain::{InvoiceInput, InvoiceStatus, InvoiceView};
use super::operations;
use super::store::InvoiceFilter;
use crate::accounts::auth::Auth;
use crate::db::Db;
use crate::error::ApiResult;
use crate::http::body::Body;
use crate::http::fields::Presence;
use crate::http::pagination::{Page, PageRequest};
use crate::http::query::QueryParams;
use crate::http::{prefixed_id, resource};
use crate::idempotency;
use crate::openapi::{
    IdempotencyErrors, IdempotencyHeader, InvoiceListParams, InvoiceWrite, ScopeHeaders,
    ScopedErrors,
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/invoices", "GET, POST")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        resource("/invoices/{id}", "GET, PUT, PATCH, DELETE")
            .route(web::get().to(retrieve))
            .route(web::put().to(replace))
            .route(web::patch().to(partial_update))
            .route(web::delete().to(destroy)),
    )
    .service(resource("/invoices/{id}/finalize", "POST").route(web::post().to(finalize)))
    .service(resource("/invoices/{id}/cancel", "POST").route(web::post().to(cancel)))
    .service(
        resource("/invoices/{id}/mark_uncollectible", "POST")
            .route(web::post().to(mark_uncollectible)),
    );
}

/// Create a draft invoice for a customer.
#[utoipa::path(post, path = "/invoices/", tag = "invoices", params(ScopeHeaders, IdempotencyHeader), request_body = InvoiceWrite,
    responses((status = 201, body = InvoiceView), ScopedErrors, IdempotencyErrors))]
pub async fn create(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    body: Body,
) -> ApiResult<HttpResponse> {
    let fields = body.read().await?;
    let input = InvoiceInput::parse(&fields, Presence::Full)?;
    let key = idempotency::key(&req, &auth.scope, auth.principal.credential(), &fields)?;
    idempotency::answer(&db, key, StatusCode::CREATED, move |conn| {
        operations::create(conn, &auth.scope, &input).map(|c| c.view())
    })
    .await
}

/// List invoices, newest first.
#[utoipa::path(get, path = "/invoices/", tag = "invoices", params(ScopeHeaders, InvoiceListParams),
    responses((status = 200, body = Page<InvoiceView>), ScopedErrors))]
pub async fn list(req: HttpRequest, auth: Auth, db: web::Data<Db>) -> ApiResult<HttpResponse> {
    let params = QueryParams::parse(req.query_string())?;
    let filter = InvoiceFilter::parse(&params)?;
    let page = PageRequest::new(&req, &params)?;
    let page = db
        .run(move |conn| operations::list(conn, &auth.scope, &filter, &page))
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Retrieve an invoice.
#[utoipa::path(get, path = "/invoices/{id}/", tag = "invoices", params(ScopeHeaders, ("id" = String, Path)),
    responses((status = 200, body = InvoiceView), ScopedErrors))]
pub async fn retrieve(
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = prefixed_id(&id, "inv_")?;
    let view = db
        .run(move |conn| operations::retrieve(conn, &auth.scope, &id))
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Replace a draft's customer, currency, due date and lines (all required).
#[utoipa::path(put, path = "/invoices/{id}/", tag = "invoices", params(ScopeHeaders, ("id" = String, Path)),
    request_body = InvoiceWrite, responses((status = 200, body = InvoiceView), ScopedErrors))]
pub async fn replace(
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
    body: Body,
) -> ApiResult<HttpResponse> {
    write(auth, db, id, body, Presence::Full).await
}

/// Change an invoice: what is owed only on a draft; description and metadata at any time.
#[utoipa::path(patch, path = "/invoices/{id}/", tag = "invoices", params(ScopeHeaders, ("id" = String, Path)),
    request_body = InvoiceWrite, responses((status = 200, body = InvoiceView), ScopedErrors))]
pub async fn partial_update(
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
    body: Body,
) -> ApiResult<HttpResponse> {
    write(auth, db, id, body, Presence::Partial).await
}

async fn write(
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
    body: Body,
    presence: Presence,
) -> ApiResult<HttpResponse> {
    let id = prefixed_id(&id, "inv_")?;
    let input = InvoiceInput::parse(&body.read().await?, presence)?;
    let merge = presence == Presence::Partial;
    let view = db
        .write(move |conn| {
            operations::update(conn, &auth.scope, &id, &input, merge).map(|c| c.view())
        })
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Delete a draft invoice.
#[utoipa::path(delete, path = "/invoices/{id}/", tag = "invoices", params(ScopeHeaders, ("id" = String, Path)),
    responses((status = 204, description = "Deleted."), ScopedErrors))]
pub async fn destroy(
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = prefixed_id(&id, "inv_")?;
    db.write(move |conn| operations::delete(conn, &auth.scope, &id))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn move_to(
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
    to: InvoiceStatus,
) -> ApiResult<HttpResponse> {
    let id = prefixed_id(&id, "inv_")?;
    let view = db
        .write(move |conn| operations::move_to(conn, &auth.scope, &id, to).map(|i| i.view()))
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Finalize a draft: it can then be paid.
#[utoipa::path(post, path = "/invoices/{id}/finalize/", tag = "invoices", params(ScopeHeaders, ("id" = String, Path)),
    responses((status = 200, body = InvoiceView), ScopedErrors))]
pub async fn finalize(
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    move_to(auth, db, id, InvoiceStatus::Finalized).await
}

/// Cancel an invoice nothing has paid yet.
#[utoipa::path(post, path = "/invoices/{id}/cancel/", tag = "invoices", params(ScopeHeaders, ("id" = String, Path)),
    responses((status = 200, body = InvoiceView), ScopedErrors))]
pub async fn cancel(
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    move_to(auth, db, id, InvoiceStatus::Cancelled).await
}

/// Mark a finalized invoice uncollectible (it can still be paid).
#[utoipa::path(post, path = "/invoices/{id}/mark_uncollectible/", tag = "invoices", params(ScopeHeaders, ("id" = String, Path)),
    responses((status = 200, body = InvoiceView), ScopedErrors))]
pub async fn mark_uncollectible(
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    move_to(auth, db, id, InvoiceStatus::Uncollectible).await
}
