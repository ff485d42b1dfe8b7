//! HTTP for webhooks and their deliveries.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::domain::{WebhookInput, WebhookView};
use super::operations::{self, DeliveryView};
use crate::accounts::auth::Auth;
use crate::config::Settings;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::http::body::Body;
use crate::http::fields::Presence;
use crate::http::pagination::{Page, PageRequest};
use crate::http::query::QueryParams;
use crate::http::{object_id, resource};
use crate::idempotency;
use crate::openapi::{
    IdempotencyErrors, IdempotencyHeader, ScopeHeaders, ScopedErrors, WebhookWrite,
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/webhooks", "GET, POST")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        resource("/webhooks/{id}", "GET, PUT, PATCH, DELETE")
            .route(web::get().to(retrieve))
            .route(web::put().to(replace))
            .route(web::patch().to(partial_update))
            .route(web::delete().to(destroy)),
    )
    .service(resource("/webhooks/{id}/rotate-secret", "POST").route(web::post().to(rotate_secret)))
    .service(resource("/webhooks/{id}/test", "POST").route(web::post().to(test)))
    .service(resource("/webhooks/{id}/deliveries", "GET").route(web::get().to(deliveries)))
    .service(
        resource("/webhooks/{id}/deliveries/{delivery_id}/retry", "POST")
            .route(web::post().to(retry)),
    );
}

/// Refuses internal addresses unless allowed; name resolution is blocking I/O, done on the
/// blocking pool without holding a database connection.
pub async fn check_url(input: &WebhookInput, settings: &Settings) -> ApiResult<()> {
    let Some(url) = input.url.clone() else {
        return Ok(());
    };
    if settings.webhook_allow_private {
        return Ok(());
    }
    web::block(move || operations::check_public_url(&url))
        .await
        .map_err(ApiError::internal)?
}

/// Create a webhook; the answer carries its secret, shown only now.
#[utoipa::path(post, path = "/webhooks/", tag = "webhooks", params(ScopeHeaders, IdempotencyHeader), request_body = WebhookWrite,
    responses((status = 201, body = WebhookView), ScopedErrors, IdempotencyErrors))]
pub async fn create(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
    body: Body,
) -> ApiResult<HttpResponse> {
    let fields = body.read().await?;
    let input = WebhookInput::parse(&fields, Presence::Full)?;
    check_url(&input, &settings).await?;
    let key = idempotency::key(&req, &auth.scope, auth.principal.credential(), &fields)?;
    idempotency::answer(&db, key, StatusCode::CREATED, move |conn| {
        operations::create(conn, &auth.scope, &input)
    })
    .await
}

/// List webhooks, newest first.
#[utoipa::path(get, path = "/webhooks/", tag = "webhooks", params(ScopeHeaders),
    responses((status = 200, body = Page<WebhookView>), ScopedErrors))]
pub async fn list(req: HttpRequest, auth: Auth, db: web::Data<Db>) -> ApiResult<HttpResponse> {
    let params = QueryParams::parse(req.query_string())?;
    let page = PageRequest::new(&req, &params)?;
    let page = db
        .run(move |conn| operations::list(conn, &auth.scope, &page))
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Retrieve a webhook (without its secret).
#[utoipa::path(get, path = "/webhooks/{id}/", tag = "webhooks", params(ScopeHeaders, ("id" = i64, Path)),
    responses((status = 200, body = WebhookView), ScopedErrors))]
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

/// Replace a webhook's url and events (and description, enabled when given).
#[utoipa::path(put, path = "/webhooks/{id}/", tag = "webhooks", params(ScopeHeaders, ("id" = i64, Path)),
    request_body = WebhookWrite, responses((status = 200, body = WebhookView), ScopedErrors))]
pub async fn replace(
    auth: Auth,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
    id: web::Path<String>,
    body: Body,
) -> ApiResult<HttpResponse> {
    write(auth, db, settings, id, body, Presence::Full).await
}

/// Change a webhook; `{"enabled": true}` resumes a disabled one's deliveries.
#[utoipa::path(patch, path = "/webhooks/{id}/", tag = "webhooks", params(ScopeHeaders, ("id" = i64, Path)),
    request_body = WebhookWrite, responses((status = 200, body = WebhookView), ScopedErrors))]
pub async fn partial_update(
    auth: Auth,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
    id: web::Path<String>,
    body: Body,
) -> ApiResult<HttpResponse> {
    write(auth, db, settings, id, body, Presence::Partial).await
}

async fn write(
    auth: Auth,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
    id: web::Path<String>,
    body: Body,
    presence: Presence,
) -> ApiResult<HttpResponse> {
    let id = object_id(&id)?;
    let input = WebhookInput::parse(&body.read().await?, presence)?;
    check_url(&input, &settings).await?;
    let view = db
        .write(move |conn| operations::update(conn, &auth.scope, id, &input))
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Delete a webhook and what is still owed to it.
#[utoipa::path(delete, path = "/webhooks/{id}/", tag = "webhooks", params(ScopeHeaders, ("id" = i64, Path)),
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

/// A new secret, shown in the answer; the old one stops signing at once.
#[utoipa::path(post, path = "/webhooks/{id}/rotate-secret/", tag = "webhooks", params(ScopeHeaders, IdempotencyHeader, ("id" = i64, Path)),
    responses((status = 200, body = WebhookView), ScopedErrors, IdempotencyErrors))]
pub async fn rotate_secret(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    idempotency::answer_action(
        &req,
        auth,
        &db,
        &id,
        StatusCode::OK,
        operations::rotate_secret,
    )
    .await
}

/// Send a `ping` event to this webhook; answers the delivery (pending).
#[utoipa::path(post, path = "/webhooks/{id}/test/", tag = "webhooks", params(ScopeHeaders, IdempotencyHeader, ("id" = i64, Path)),
    responses((status = 201, body = DeliveryView), ScopedErrors, IdempotencyErrors))]
pub async fn test(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    idempotency::answer_action(&req, auth, &db, &id, StatusCode::CREATED, operations::ping).await
}

/// A webhook's deliveries, newest first: status, attempts, last answer, next attempt.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries/", tag = "webhooks", params(ScopeHeaders, ("id" = i64, Path)),
    responses((status = 200, body = Page<DeliveryView>), ScopedErrors))]
pub async fn deliveries(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = object_id(&id)?;
    let params = QueryParams::parse(req.query_string())?;
    let page = PageRequest::new(&req, &params)?;
    let page = db
        .run(move |conn| operations::deliveries(conn, &auth.scope, id, &page))
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Send a delivery again now.
#[utoipa::path(post, path = "/webhooks/{id}/deliveries/{delivery_id}/retry/", tag = "webhooks",
    params(ScopeHeaders, IdempotencyHeader, ("id" = i64, Path), ("delivery_id" = i64, Path)),
    responses((status = 200, body = DeliveryView), ScopedErrors, IdempotencyErrors))]
pub async fn retry(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let id = object_id(&path.0)?;
    idempotency::answer_action(
        &req,
        auth,
        &db,
        &path.1,
        StatusCode::OK,
        move |conn, scope, delivery| operations::retry(conn, scope, id, delivery),
    )
    .await
}
