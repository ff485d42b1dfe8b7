//! HTTP for customers.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::domain::{CustomerInput, CustomerView};
use super::operations::{self, Deleted};
use super::store::CustomerFilter;
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
    CustomerListParams, CustomerWrite, IdempotencyErrors, IdempotencyHeader, ScopeHeaders,
    ScopedErrors,
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/customers", "GET, POST")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        resource("/customers/{id}", "GET, PUT, PATCH, DELETE")
            .route(web::get().to(retrieve))
            .route(web::put().to(replace))
            .route(web::patch().to(partial_update))
            .route(web::delete().to(destroy)),
    );
}

/// Create a customer.
#[utoipa::path(post, path = "/customers/", tag = "customers", params(ScopeHeaders, IdempotencyHeader), request_body = CustomerWrite,
    responses((status = 201, body = CustomerView), ScopedErrors, IdempotencyErrors))]
pub async fn create(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    body: Body,
) -> ApiResult<HttpResponse> {
    let fields = body.read().await?;
    let input = CustomerInput::parse(&fields, Presence::Full)?;
    let key = idempotency::key(&req, &auth.scope, auth.principal.credential(), &fields)?;
    idempotency::answer(&db, key, StatusCode::CREATED, move |conn| {
        operations::create(conn, &auth.scope, &input).map(|c| c.view())
    })
    .await
}

/// List customers, newest first.
#[utoipa::path(get, path = "/customers/", tag = "customers", params(ScopeHeaders, CustomerListParams),
    responses((status = 200, body = Page<CustomerView>), ScopedErrors))]
pub async fn list(req: HttpRequest, auth: Auth, db: web::Data<Db>) -> ApiResult<HttpResponse> {
    let params = QueryParams::parse(req.query_string())?;
    let filter = CustomerFilter::parse(&params)?;
    let page = PageRequest::new(&req, &params)?;
    let page = db
        .run(move |conn| operations::list(conn, &auth.scope, &filter, &page))
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Retrieve a customer.
#[utoipa::path(get, path = "/customers/{id}/", tag = "customers", params(ScopeHeaders, ("id" = String, Path)),
    responses((status = 200, body = CustomerView), ScopedErrors))]
pub async fn retrieve(
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = prefixed_id(&id, "cus_")?;
    let view = db
        .run(move |conn| operations::retrieve(conn, &auth.scope, &id))
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Replace a customer's fields (`name` required).
#[utoipa::path(put, path = "/customers/{id}/", tag = "customers", params(ScopeHeaders, ("id" = String, Path)),
    request_body = CustomerWrite, responses((status = 200, body = CustomerView), ScopedErrors))]
pub async fn replace(
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
    body: Body,
) -> ApiResult<HttpResponse> {
    write(auth, db, id, body, Presence::Full).await
}

/// Change some of a customer's fields; metadata keys merge.
#[utoipa::path(patch, path = "/customers/{id}/", tag = "customers", params(ScopeHeaders, ("id" = String, Path)),
    request_body = CustomerWrite, responses((status = 200, body = CustomerView), ScopedErrors))]
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
    let id = prefixed_id(&id, "cus_")?;
    let input = CustomerInput::parse(&body.read().await?, presence)?;
    let merge = presence == Presence::Partial;
    let view = db
        .write(move |conn| {
            operations::update(conn, &auth.scope, &id, &input, merge).map(|c| c.view())
        })
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Delete a customer; one that payments name is archived instead (200 with the customer).
#[utoipa::path(delete, path = "/customers/{id}/", tag = "customers", params(ScopeHeaders, ("id" = String, Path)),
    responses(
        (status = 204, description = "Deleted."),
        (status = 200, description = "Payments name the customer: archived instead.", body = CustomerView),
        ScopedErrors,
    ))]
pub async fn destroy(
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = prefixed_id(&id, "cus_")?;
    match db
        .write(move |conn| operations::delete(conn, &auth.scope, &id))
        .await?
    {
        Deleted::Gone => Ok(HttpResponse::NoContent().finish()),
        Deleted::Archived(view) => Ok(HttpResponse::Ok().json(view)),
    }
}
