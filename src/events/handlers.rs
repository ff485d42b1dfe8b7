//! `GET /events/` and `GET /events/{id}/`.

use actix_web::{web, HttpRequest, HttpResponse};

use super::store::{self, EventFilter};
use super::EventView;
use crate::accounts::auth::Auth;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::http::pagination::{Page, PageRequest};
use crate::http::query::QueryParams;
use crate::http::{object_id, resource};
use crate::openapi::{EventListParams, ScopeHeaders, ScopedErrors};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/events", "GET").route(web::get().to(list)))
        .service(resource("/events/{id}", "GET").route(web::get().to(retrieve)));
}

/// List events, newest first.
#[utoipa::path(get, path = "/events/", tag = "events", params(ScopeHeaders, EventListParams),
    responses(
        (status = 200, body = Page<EventView>),
        ScopedErrors,
    ))]
pub async fn list(req: HttpRequest, auth: Auth, db: web::Data<Db>) -> ApiResult<HttpResponse> {
    let params = QueryParams::parse(req.query_string())?;
    let filter = EventFilter::parse(&params, auth.readable_objects())?;
    let page = PageRequest::new(&req, &params)?;
    let page = db
        .run(move |conn| {
            let count = store::count(conn, &auth.scope, &filter)?;
            page.fetch(count, |offset, limit| {
                store::list(conn, &auth.scope, &filter, offset, limit)
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Retrieve an event.
#[utoipa::path(get, path = "/events/{id}/", tag = "events", params(ScopeHeaders, ("id" = i64, Path)),
    responses(
        (status = 200, body = EventView),
        ScopedErrors,
    ))]
pub async fn retrieve(
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = object_id(&id)?;
    let event = db
        .run(move |conn| {
            let readable = auth.readable_objects();
            store::find_readable(conn, &auth.scope, id, &readable)?.ok_or(ApiError::NotFound)
        })
        .await?;
    Ok(HttpResponse::Ok().json(event))
}
