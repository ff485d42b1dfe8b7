//! `/v1/accounts`: customers, as Billingrails shows them.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use super::{at, authenticated, list_of, one, one_of, read, BrResult};
use crate::accounts::auth::Auth;
use crate::customers::domain::{Customer, CustomerInput};
use crate::customers::{operations, store};
use crate::db::Db;
use crate::error::ApiError;
use crate::http::body::Body;
use crate::http::fields::Presence;
use crate::idempotency;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/accounts", web::get().to(list))
        .route("/accounts", web::post().to(create))
        .route("/accounts/{id}", web::get().to(retrieve))
        .route("/accounts/{id}", web::patch().to(update));
}

pub fn account(c: &Customer) -> Value {
    json!({
        "object": "account",
        "id": c.id,
        "name": c.name,
        "email": c.email,
        "country": c.country,
        "status": c.status,
        "metadata": c.metadata,
        "created_at": at(c.created),
    })
}

/// The Piriod body of an account body: the fields both sides have.
fn customer_fields(body: &Map<String, Value>) -> Map<String, Value> {
    ["name", "email", "country", "metadata"]
        .iter()
        .filter_map(|k| body.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect()
}

async fn create(
    req: HttpRequest,
    auth: Result<Auth, ApiError>,
    db: web::Data<Db>,
    body: Result<Body, ApiError>,
) -> BrResult {
    let auth = authenticated(&req, auth)?;
    let fields = read(body).await?;
    let input = CustomerInput::parse(&customer_fields(&fields), Presence::Full)?;
    let key = idempotency::key(&req, &auth.scope, auth.principal.credential(), &fields)?;
    let scope = auth.scope;
    Ok(
        idempotency::answer(&db, key, StatusCode::CREATED, move |conn| {
            let view = operations::create(conn, &scope, &input)?;
            let created = store::find(conn, &scope, &view.id)?.ok_or(ApiError::NotFound)?;
            Ok(json!({"account": account(&created), "meta": {"request_id": super::request_id()}}))
        })
        .await?,
    )
}

async fn list(req: HttpRequest, auth: Result<Auth, ApiError>, db: web::Data<Db>) -> BrResult {
    list_of(req, auth, &db, "accounts", |conn, scope, offset, limit| {
        let filter = store::CustomerFilter::default();
        let items = store::list(conn, scope, &filter, offset, limit)?;
        Ok((
            items.iter().map(account).collect(),
            store::count(conn, scope, &filter)?,
        ))
    })
    .await
}

async fn retrieve(
    req: HttpRequest,
    auth: Result<Auth, ApiError>,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> BrResult {
    one_of(req, auth, &db, "account", move |conn, scope| {
        Ok(store::find(conn, scope, &id)?.as_ref().map(account))
    })
    .await
}

async fn update(
    req: HttpRequest,
    auth: Result<Auth, ApiError>,
    db: web::Data<Db>,
    id: web::Path<String>,
    body: Result<Body, ApiError>,
) -> BrResult {
    let auth = authenticated(&req, auth)?;
    let input = CustomerInput::parse(&customer_fields(&read(body).await?), Presence::Partial)?;
    let id = id.into_inner();
    let updated = db
        .write(move |conn| {
            operations::update(conn, &auth.scope, &id, &input, true)?;
            store::find(conn, &auth.scope, &id)?.ok_or(ApiError::NotFound)
        })
        .await?;
    let response: HttpResponse = one(StatusCode::OK, "account", account(&updated), None);
    Ok(response)
}
