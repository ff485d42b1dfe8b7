//! `/v1/accounts`: customers, as Billingrails shows them.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use serde_json::{json, Map, Value};

use super::{at, authenticated, list_of, one, one_of, query, read, wrapped, BrResult};
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
    let answer = idempotency::answer(&db, key, StatusCode::CREATED, move |conn| {
        let created = operations::create(conn, &scope, &input)?;
        Ok(wrapped("account", account(&created)))
    });
    Ok(answer.await?)
}

async fn list(req: HttpRequest, auth: Result<Auth, ApiError>, db: web::Data<Db>) -> BrResult {
    let auth = authenticated(&req, auth)?;
    let params = query(&req)?;
    list_of(
        auth,
        &params,
        &db,
        "accounts",
        |conn, scope, offset, limit| {
            let filter = store::CustomerFilter::default();
            let items = store::list(conn, scope, &filter, offset, limit)?;
            let total = store::count(conn, scope, &filter)?;
            Ok((items.iter().map(account).collect(), total))
        },
    )
    .await
}

async fn retrieve(
    req: HttpRequest,
    auth: Result<Auth, ApiError>,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> BrResult {
    let auth = authenticated(&req, auth)?;
    one_of(auth, &db, "account", move |conn, scope| {
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
    let updated = db
        .write(move |conn| operations::update(conn, &auth.scope, &id, &input, true))
        .await?;
    Ok(one("account", account(&updated)))
}
