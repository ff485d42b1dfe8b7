//! HTTP for sources.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::domain::{SourceStatus, SourceView, Usage};
use super::operations;
use super::store::SourceFilter;
use crate::accounts::auth::Auth;
use crate::db::Db;
use crate::error::ApiResult;
use crate::http::body::Body;
use crate::http::pagination::{Page, PageRequest};
use crate::http::query::{FilterReader, QueryParams};
use crate::http::{object_id, resource};
use crate::idempotency;
use crate::openapi::{
    IdempotencyErrors, IdempotencyHeader, ScopeHeaders, ScopedErrors, SourceListParams, SourceWrite,
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/sources", "GET, POST")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        resource("/sources/{id}", "GET, DELETE")
            .route(web::get().to(retrieve))
            .route(web::delete().to(destroy)),
    );
}

/// Create a source (test mode: the sandbox's test tokens; both modes: bank_transfer).
///
/// A payer's browser may send the payment's checkout key as `"checkout"` in the body instead
/// of credentials: the source is then single use, of no customer, and bound to that payment
/// (`checkout_payment`), which alone it can pay.
#[utoipa::path(post, path = "/sources/", tag = "sources", params(ScopeHeaders, IdempotencyHeader), request_body = SourceWrite,
    responses((status = 201, body = SourceView), ScopedErrors, IdempotencyErrors))]
pub async fn create(req: HttpRequest, db: web::Data<Db>, body: Body) -> ApiResult<HttpResponse> {
    // Publishable: a payer's browser may call it with the payment's checkout key instead.
    let caller = crate::accounts::payer::caller(&req, body).await?;
    let key = idempotency::key(&req, &caller.scope, caller.credential, &caller.fields)?;
    let (scope, fields, actor) = (caller.scope, caller.fields, caller.actor);
    let keyring = crate::secrets::from_request(&req)?;
    let begun = scope.clone();
    idempotency::answer_call(
        &db,
        key,
        StatusCode::CREATED,
        move |conn| operations::begin_create(conn, &begun, &fields, actor, &keyring),
        operations::prepare,
        move |conn, creating, prepared| operations::finish_create(conn, &scope, creating, prepared),
    )
    .await
}

/// List sources, newest first.
#[utoipa::path(get, path = "/sources/", tag = "sources", params(ScopeHeaders, SourceListParams),
    responses((status = 200, body = Page<SourceView>), ScopedErrors))]
pub async fn list(req: HttpRequest, auth: Auth, db: web::Data<Db>) -> ApiResult<HttpResponse> {
    let params = QueryParams::parse(req.query_string())?;
    let mut r = FilterReader::new(&params);
    let filter = SourceFilter {
        customer: r.text("customer"),
        gateway: r.text("gateway"),
        usage: r.choice::<Usage>("usage"),
        status: r.choice::<SourceStatus>("status"),
    };
    r.finish()?;
    let page = PageRequest::new(&req, &params)?;
    let page = db
        .run(move |conn| operations::list(conn, &auth.scope, &filter, &page))
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Retrieve a source.
#[utoipa::path(get, path = "/sources/{id}/", tag = "sources", params(ScopeHeaders, ("id" = i64, Path)),
    responses((status = 200, body = SourceView), ScopedErrors))]
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

/// Delete a source that has never been charged.
#[utoipa::path(delete, path = "/sources/{id}/", tag = "sources", params(ScopeHeaders, ("id" = i64, Path)),
    responses((status = 204, description = "Deleted."), ScopedErrors))]
pub async fn destroy(
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = object_id(&id)?;
    db.write(move |conn| operations::delete(conn, &auth.scope, id))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
