//! HTTP for integrations.

use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};

use super::domain::{IntegrationInput, IntegrationView};
use super::operations;
use crate::accounts::auth::Auth;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::http::body::Body;
use crate::http::fields::Presence;
use crate::http::pagination::{Page, PageRequest};
use crate::http::query::QueryParams;
use crate::http::{base_url, resource};
use crate::idempotency;
use crate::openapi::{
    IdempotencyErrors, IdempotencyHeader, IntegrationWrite, ScopeHeaders, ScopedErrors,
};
use crate::secrets::Keyring;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/integrations", "GET, POST")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        resource("/integrations/{id}", "GET, PATCH, DELETE")
            .route(web::get().to(retrieve))
            .route(web::patch().to(partial_update))
            .route(web::delete().to(destroy)),
    )
    .service(resource("/integrations/{id}/webhook", "POST").route(web::post().to(webhook)));
}

/// An integration's id in a path: `int_…` or a built-in gateway's name; anything else is
/// not found.
fn integration_id(raw: &str) -> ApiResult<String> {
    if crate::gateways::find(raw).is_some_and(|g| g.builtin()) {
        return Ok(raw.to_string());
    }
    crate::http::prefixed_id(raw, "int_")
}

fn keyring(req: &HttpRequest) -> ApiResult<web::Data<Keyring>> {
    crate::secrets::from_request(req)
}

/// Connect a provider account: `{"gateway": "stripe", "name": …, "credentials": {"secret_key":
/// "sk_test_…", "webhook_secret": "whsec_…"}}`. The credentials are sealed at rest and shown
/// masked from now on, never in full again.
#[utoipa::path(post, path = "/integrations/", tag = "integrations", params(ScopeHeaders, IdempotencyHeader), request_body = IntegrationWrite,
    responses((status = 201, body = IntegrationView), ScopedErrors, IdempotencyErrors))]
pub async fn create(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    body: Body,
) -> ApiResult<HttpResponse> {
    let fields = body.read().await?;
    let input = IntegrationInput::parse(&fields, Presence::Full)?;
    let key = idempotency::key(&req, &auth.scope, auth.principal.credential(), &fields)?;
    let (keyring, base) = (keyring(&req)?, base_url(&req));
    idempotency::answer(&db, key, StatusCode::CREATED, move |conn| {
        operations::create(conn, &auth.scope, &input, &keyring, &base)
    })
    .await
}

/// List the mode's integrations: the built-in ones first, then the workspace's own.
#[utoipa::path(get, path = "/integrations/", tag = "integrations", params(ScopeHeaders),
    responses((status = 200, body = Page<IntegrationView>), ScopedErrors))]
pub async fn list(req: HttpRequest, auth: Auth, db: web::Data<Db>) -> ApiResult<HttpResponse> {
    let params = QueryParams::parse(req.query_string())?;
    let page = PageRequest::new(&req, &params)?;
    let base = base_url(&req);
    let page = db
        .run(move |conn| operations::list(conn, &auth.scope, &page, &base))
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Retrieve an integration (`int_…`, or `sandbox`, `bank_transfer`).
#[utoipa::path(get, path = "/integrations/{id}/", tag = "integrations", params(ScopeHeaders, ("id" = String, Path)),
    responses((status = 200, body = IntegrationView), ScopedErrors))]
pub async fn retrieve(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = integration_id(&id)?;
    let base = base_url(&req);
    let view = db
        .run(move |conn| operations::retrieve(conn, &auth.scope, &id, &base))
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Rename, enable or disable an integration, or rotate its credentials (those given
/// replace their namesakes).
#[utoipa::path(patch, path = "/integrations/{id}/", tag = "integrations", params(ScopeHeaders, ("id" = String, Path)),
    request_body = IntegrationWrite, responses((status = 200, body = IntegrationView), ScopedErrors))]
pub async fn partial_update(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
    body: Body,
) -> ApiResult<HttpResponse> {
    let id = integration_id(&id)?;
    let input = IntegrationInput::parse(&body.read().await?, Presence::Partial)?;
    let (keyring, base) = (keyring(&req)?, base_url(&req));
    let view = db
        .write(move |conn| operations::update(conn, &auth.scope, &id, &input, &keyring, &base))
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Delete an integration; refused while a charge through it is in flight.
#[utoipa::path(delete, path = "/integrations/{id}/", tag = "integrations", params(ScopeHeaders, ("id" = String, Path)),
    responses((status = 204, description = "Deleted."), ScopedErrors))]
pub async fn destroy(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = integration_id(&id)?;
    let base = base_url(&req);
    db.write(move |conn| operations::delete(conn, &auth.scope, &id, &base))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// What an integration's webhook answers: the event was received, and what it did.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct WebhookReceipt {
    pub received: bool,
    /// `applied`, `duplicate` (received before: applied once), `ignored` (nothing new, or
    /// a kind cobro does not act on) or `unknown` (a charge cobro does not know).
    #[schema(value_type = String)]
    pub outcome: crate::payments::charges::Received,
}

/// The provider's events (public: the provider's signature of the body, with the
/// integration's webhook secret, is the credential). A bad or missing signature is a 400;
/// an event already received is applied once.
#[utoipa::path(post, path = "/integrations/{id}/webhook/", tag = "integrations", security(()),
    params(("id" = String, Path), ("Stripe-Signature" = String, Header, description = "t=…,v1=…")),
    request_body(content = Object, description = "The provider's event, as it signed it."),
    responses((status = 200, body = WebhookReceipt),
        (status = 400, body = crate::openapi::ErrorDetail), (status = 404, body = crate::openapi::ErrorDetail)))]
pub async fn webhook(
    req: HttpRequest,
    db: web::Data<Db>,
    id: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let id = crate::http::prefixed_id(&id, "int_")?;
    // Counted per integration, as a credential's requests are.
    if let Some(throttle) = req.app_data::<web::Data<crate::http::throttle::Throttle>>() {
        throttle.check(&format!("integration-webhook:{id}"))?;
    }
    let keyring = keyring(&req)?;
    let signature = req
        .headers()
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let found = {
        let (id, request_id) = (id.clone(), crate::http::request_id::of(&req));
        db.run(move |conn| crate::integrations::store::find_for_webhook(conn, &id, request_id))
            .await?
    };
    let (scope, integration) = found.ok_or(ApiError::NotFound)?;
    req.extensions_mut().insert(scope.origin().actor.clone());
    let gateway = crate::gateways::find(&integration.gateway)
        .ok_or_else(|| ApiError::internal(format!("unknown gateway {}", integration.gateway)))?;
    let account = crate::gateways::Account {
        credentials: integration.open(&keyring)?,
        integration: Some(id.clone()),
    };
    let event = gateway
        .parse_webhook(
            &account,
            signature.as_deref(),
            &body,
            chrono::Utc::now().timestamp(),
        )
        .map_err(ApiError::BadRequest)?;
    let base = base_url(&req);
    let outcome = db
        .write(move |conn| crate::payments::charges::receive(conn, &scope, &id, &event, &base))
        .await?;
    Ok(HttpResponse::Ok().json(WebhookReceipt {
        received: true,
        outcome,
    }))
}
