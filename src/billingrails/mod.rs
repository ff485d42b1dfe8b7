//! The Billingrails-compatible door (`/v1/…`) onto the same data as the Piriod routes:
//! accounts are customers, invoices are invoices, payments are payments. Billingrails' wire
//! format: `Authorization: Bearer <workspace secret key>` (the key carries the workspace and
//! mode), integer minor-unit amounts, string ids, the resource under its name with
//! `meta.request_id`, lists paged by `page`/`per_page`, and errors as
//! `{"error": {"type", "code", "message", "details": [{"field", "message"}]}}`.
//!
//! The handlers translate a Billingrails body into the Piriod one, run the same operations,
//! and translate the answer back; see `accounts`, `invoices` and `payments`.

mod accounts;
mod invoices;
mod payments;

use actix_web::http::header::AUTHORIZATION;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::{json, Map, Value};

use crate::accounts::auth::Auth;
use crate::db::{Db, DbConnection, Scope};
use crate::error::ApiError;
use crate::http::body::Body;
use crate::http::query::QueryParams;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            .configure(accounts::routes)
            .configure(invoices::routes)
            .configure(payments::routes)
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(BrError(ApiError::NotFound))
            })),
    );
}

/// An error in Billingrails' shape (the same statuses as the Piriod side).
#[derive(Debug)]
pub struct BrError(pub ApiError);

impl From<ApiError> for BrError {
    fn from(err: ApiError) -> Self {
        BrError(err)
    }
}

impl std::fmt::Display for BrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Piriod's field names where Billingrails calls them otherwise.
fn field_name(piriod: &str) -> &str {
    match piriod {
        "customer" => "account_id",
        "due_date" => "due_at",
        "lines" => "line_items",
        "invoice" => "invoice_id",
        other => other,
    }
}

impl ResponseError for BrError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let (kind, code, message, details) = match &self.0 {
            ApiError::Validation(errors) => {
                let details: Vec<Value> = errors
                    .iter()
                    .map(|(field, message)| json!({"field": field_name(field), "message": message}))
                    .collect();
                let first = errors
                    .iter()
                    .next()
                    .map(|(field, message)| format!("{}: {message}", field_name(field)))
                    .unwrap_or_default();
                (
                    "invalid_request_error",
                    "invalid_parameters",
                    first,
                    details,
                )
            }
            ApiError::BadRequest(message) => (
                "invalid_request_error",
                "invalid_request",
                message.clone(),
                vec![],
            ),
            ApiError::JsonParse(cause) => (
                "invalid_request_error",
                "invalid_json",
                format!("The body is not valid JSON: {cause}"),
                vec![],
            ),
            ApiError::NotAuthenticated | ApiError::AuthenticationFailed(_) => (
                "authentication_error",
                "unauthenticated",
                "Send a workspace secret key: Authorization: Bearer sk_….".into(),
                vec![],
            ),
            ApiError::Forbidden => (
                "permission_error",
                "forbidden",
                "This key may not do that.".into(),
                vec![],
            ),
            ApiError::NotFound | ApiError::InvalidPage => (
                "invalid_request_error",
                "resource_not_found",
                "No such resource.".into(),
                vec![],
            ),
            ApiError::Conflict { code, detail } => {
                ("idempotency_error", *code, detail.clone(), vec![])
            }
            ApiError::Throttled(_) => (
                "rate_limit_error",
                "rate_limited",
                "Too many requests.".into(),
                vec![],
            ),
            ApiError::Contention | ApiError::Unavailable(_) => (
                "api_error",
                "service_unavailable",
                "Service temporarily unavailable, try again.".into(),
                vec![],
            ),
            ApiError::Provider(_) => (
                "api_error",
                "provider_unavailable",
                "The payment provider did not answer; nothing was saved. Try again shortly.".into(),
                vec![],
            ),
            ApiError::Internal(_) => (
                "api_error",
                "internal_error",
                "An internal error occurred.".into(),
                vec![],
            ),
            other => (
                "invalid_request_error",
                "invalid_request",
                other.to_string(),
                vec![],
            ),
        };
        // The same status and headers as the Piriod side (Retry-After, Allow); the official
        // SDKs read the message at the top level too.
        let mut response = self.0.response_builder();
        if matches!(
            self.0,
            ApiError::NotAuthenticated | ApiError::AuthenticationFailed(_)
        ) {
            response.insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(json!({
            "error": {"type": kind, "code": code, "message": message, "details": details},
            "message": message,
            "meta": {"request_id": request_id()},
        }))
    }
}

pub type BrResult = Result<HttpResponse, BrError>;

/// The request's workspace and mode, from a `Bearer` secret key only.
fn authenticated(req: &HttpRequest, auth: Result<Auth, ApiError>) -> Result<Auth, BrError> {
    let bearer = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("bearer "));
    if !bearer {
        return Err(BrError(ApiError::NotAuthenticated));
    }
    Ok(auth?)
}

async fn read(body: Result<Body, ApiError>) -> Result<Map<String, Value>, BrError> {
    Ok(body?.read().await?)
}

/// The request's own id, the one its `X-Request-Id` header carries.
fn request_id() -> String {
    crate::http::request_id::current().unwrap_or_else(crate::http::request_id::generate)
}

/// One object under its name, with `meta.request_id`: the body of every single-object
/// answer.
fn wrapped(name: &str, object: Value) -> Value {
    json!({ name: object, "meta": {"request_id": request_id()} })
}

fn one(name: &str, object: Value) -> HttpResponse {
    HttpResponse::Ok().json(wrapped(name, object))
}

/// The request's query parameters.
fn query(req: &HttpRequest) -> Result<QueryParams, BrError> {
    Ok(QueryParams::parse(req.query_string())?)
}

/// `page` (from 1) and `per_page` (1 to 100, default 20).
struct Paging {
    page: i64,
    per_page: i64,
}

impl Paging {
    fn parse(params: &QueryParams) -> Result<Paging, BrError> {
        let number = |name: &str, default: i64, max: i64| -> Result<i64, BrError> {
            match params.get(name) {
                None => Ok(default),
                Some(raw) => match raw.trim().parse::<i64>() {
                    Ok(n) if (1..=max).contains(&n) => Ok(n),
                    _ => Err(BrError(ApiError::field(
                        name,
                        format!("Must be a whole number from 1 to {max}."),
                    ))),
                },
            }
        };
        Ok(Paging {
            page: number("page", 1, i64::MAX / 100)?,
            per_page: number("per_page", 20, 100)?,
        })
    }

    fn offset(&self) -> i64 {
        (self.page - 1) * self.per_page
    }

    fn answer(&self, name: &str, items: Vec<Value>, total: i64) -> HttpResponse {
        HttpResponse::Ok().json(json!({
            name: items,
            "meta": {
                "request_id": request_id(),
                "current_page": self.page,
                "per_page": self.per_page,
                "total_count": total,
                "total_pages": (total + self.per_page - 1) / self.per_page,
            },
        }))
    }
}

/// A list: `fetch` gives a page of items (from an offset, at most a limit) and the total.
async fn list_of<F>(auth: Auth, params: &QueryParams, db: &Db, name: &str, fetch: F) -> BrResult
where
    F: FnOnce(&mut DbConnection, &Scope, i64, i64) -> Result<(Vec<Value>, i64), ApiError>
        + Send
        + 'static,
{
    let paging = Paging::parse(params)?;
    let (offset, limit) = (paging.offset(), paging.per_page);
    let (items, total) = db
        .run(move |conn| fetch(conn, &auth.scope, offset, limit))
        .await?;
    Ok(paging.answer(name, items, total))
}

/// One object found by `find`, or a 404.
async fn one_of<F>(auth: Auth, db: &Db, name: &str, find: F) -> BrResult
where
    F: FnOnce(&mut DbConnection, &Scope) -> Result<Option<Value>, ApiError> + Send + 'static,
{
    let found = db
        .run(move |conn| find(conn, &auth.scope))
        .await?
        .ok_or(BrError(ApiError::NotFound))?;
    Ok(one(name, found))
}

/// A timestamp as Billingrails writes them.
fn at(value: chrono::NaiveDateTime) -> String {
    value.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}
