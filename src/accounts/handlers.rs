//! HTTP for a workspace's members (`/members/`) and keys (`/keys/`). Who may reach them is
//! `roles`' business (checked when `Auth` is extracted); the rules about owners are
//! `members`'.
//!
//! `POST /keys/` takes no `Idempotency-Key`: a replay would have to store the new key's
//! secret, which is shown once and stored nowhere.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use super::auth::Auth;
use super::keys::{self, KeyView, NewKey};
use super::members::{self, MemberView};
use super::roles::{self, Role};
use crate::db::{write_tx, Db};
use crate::error::{ApiError, ApiResult, FieldErrors};
use crate::http::body::Body;
use crate::http::fields::{Given, Presence, Reader};
use crate::http::pagination::{Page, PageRequest};
use crate::http::query::QueryParams;
use crate::http::{object_id, resource};
use crate::openapi::{KeyWrite, MemberWrite, ScopeHeaders, ScopedErrors};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/members", "GET, POST")
            .route(web::get().to(list_members))
            .route(web::post().to(add_member)),
    )
    .service(
        resource("/members/{user}", "GET, PATCH, DELETE")
            .route(web::get().to(retrieve_member))
            .route(web::patch().to(update_member))
            .route(web::delete().to(remove_member)),
    )
    .service(
        resource("/keys", "GET, POST")
            .route(web::get().to(list_keys))
            .route(web::post().to(create_key)),
    )
    .service(
        resource("/keys/{id}", "GET, DELETE")
            .route(web::get().to(retrieve_key))
            .route(web::delete().to(revoke_key)),
    );
}

/// The whole list on one page or several (a workspace has few members and keys).
fn paged<T: Clone>(page: &PageRequest, all: Vec<T>) -> ApiResult<Page<T>> {
    page.fetch(all.len() as i64, |offset, limit| {
        Ok(all
            .iter()
            .skip(offset as usize)
            .take(limit as usize)
            .cloned()
            .collect())
    })
}

/// The workspace's members and their roles, oldest first.
#[utoipa::path(get, path = "/members/", tag = "members", params(ScopeHeaders),
    responses((status = 200, body = Page<MemberView>), ScopedErrors))]
pub async fn list_members(
    req: HttpRequest,
    auth: Auth,
    db: web::Data<Db>,
) -> ApiResult<HttpResponse> {
    let params = QueryParams::parse(req.query_string())?;
    let page = PageRequest::new(&req, &params)?;
    let all = db.run(move |conn| members::list(conn, &auth.scope)).await?;
    Ok(HttpResponse::Ok().json(paged(&page, all)?))
}

/// Add an existing user to the workspace: `{"email": …, "role": "viewer"}` (the role
/// defaults to `developer`; only an owner may add an owner).
#[utoipa::path(post, path = "/members/", tag = "members", params(ScopeHeaders), request_body = MemberWrite,
    responses((status = 201, body = MemberView), ScopedErrors))]
pub async fn add_member(auth: Auth, db: web::Data<Db>, body: Body) -> ApiResult<HttpResponse> {
    let fields = body.read().await?;
    let mut r = Reader::new(&fields, Presence::Full);
    let email = r.string("email", true, false, 254);
    let role = r.choice::<Role>("role").unwrap_or(Role::Developer);
    r.finish().into_result()?;
    let Given::Value(email) = email else {
        return Err(ApiError::internal("an email read without an error"));
    };
    let member = db
        .write(move |conn| members::add_as(conn, &auth.scope, &auth.principal, &email, role))
        .await?;
    Ok(HttpResponse::Created().json(member))
}

#[utoipa::path(get, path = "/members/{user}/", tag = "members", params(ScopeHeaders, ("user" = i64, Path)),
    responses((status = 200, body = MemberView), ScopedErrors))]
pub async fn retrieve_member(
    auth: Auth,
    db: web::Data<Db>,
    user: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let user = object_id(&user)?;
    let member = db
        .run(move |conn| members::find(conn, &auth.scope, user))
        .await?;
    Ok(HttpResponse::Ok().json(member))
}

/// Change a member's role: `{"role": "admin"}`. Never the last owner's.
#[utoipa::path(patch, path = "/members/{user}/", tag = "members", params(ScopeHeaders, ("user" = i64, Path)), request_body = MemberWrite,
    responses((status = 200, body = MemberView), ScopedErrors))]
pub async fn update_member(
    auth: Auth,
    db: web::Data<Db>,
    user: web::Path<String>,
    body: Body,
) -> ApiResult<HttpResponse> {
    let user = object_id(&user)?;
    let fields = body.read().await?;
    let mut r = Reader::new(&fields, Presence::Partial);
    let role = r.choice::<Role>("role");
    r.finish().into_result()?;
    let member = match role {
        Some(role) => {
            db.write(move |conn| {
                members::set_role_as(conn, &auth.scope, &auth.principal, user, role)
            })
            .await?
        }
        None => {
            db.run(move |conn| members::find(conn, &auth.scope, user))
                .await?
        }
    };
    Ok(HttpResponse::Ok().json(member))
}

/// Remove a member (never the last owner; only an owner removes an owner).
#[utoipa::path(delete, path = "/members/{user}/", tag = "members", params(ScopeHeaders, ("user" = i64, Path)),
    responses((status = 204), ScopedErrors))]
pub async fn remove_member(
    auth: Auth,
    db: web::Data<Db>,
    user: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let user = object_id(&user)?;
    db.write(move |conn| members::remove_as(conn, &auth.scope, &auth.principal, user))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The mode's keys, revoked ones included, newest first; never their secrets.
#[utoipa::path(get, path = "/keys/", tag = "keys", params(ScopeHeaders),
    responses((status = 200, body = Page<KeyView>), ScopedErrors))]
pub async fn list_keys(req: HttpRequest, auth: Auth, db: web::Data<Db>) -> ApiResult<HttpResponse> {
    let params = QueryParams::parse(req.query_string())?;
    let page = PageRequest::new(&req, &params)?;
    let all = db.run(move |conn| keys::list(conn, &auth.scope)).await?;
    Ok(HttpResponse::Ok().json(paged(&page, all)?))
}

/// Make a key for this mode: `{"name": …}` for a full secret key (`sk_…`), or with
/// `"permissions": ["payments:write", "events:read"]` for a restricted one (`rk_…`). The
/// answer holds the key in `secret`, once.
#[utoipa::path(post, path = "/keys/", tag = "keys", params(ScopeHeaders), request_body = KeyWrite,
    responses((status = 201, body = KeyView), ScopedErrors))]
pub async fn create_key(auth: Auth, db: web::Data<Db>, body: Body) -> ApiResult<HttpResponse> {
    let fields = body.read().await?;
    let invalid = |message: String| ApiError::Validation(FieldErrors::one("permissions", message));
    let permissions = match fields.get("permissions") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let items = items
                .iter()
                .map(|item| {
                    item.as_str()
                        .ok_or_else(|| invalid("Each permission is a string.".into()))
                })
                .collect::<ApiResult<Vec<&str>>>()?;
            Some(roles::parse_permissions(items).map_err(invalid)?)
        }
        Some(_) => {
            return Err(invalid(
                "Expected a list of permissions, or null for a full key.".into(),
            ))
        }
    };
    let mut r = Reader::new(&fields, Presence::Partial);
    let name = r.string("name", false, true, 100);
    r.finish().into_result()?;
    let new = NewKey {
        permissions,
        name: name.sent().flatten().unwrap_or_default(),
    };
    let view = db
        .write(move |conn| write_tx(conn, |conn| keys::create(conn, &auth.scope, &new)))
        .await?;
    Ok(HttpResponse::Created().json(view))
}

#[utoipa::path(get, path = "/keys/{id}/", tag = "keys", params(ScopeHeaders, ("id" = i64, Path)),
    responses((status = 200, body = KeyView), ScopedErrors))]
pub async fn retrieve_key(
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = object_id(&id)?;
    let key = db
        .run(move |conn| {
            keys::list(conn, &auth.scope)?
                .into_iter()
                .find(|k| k.id == id)
                .ok_or(ApiError::NotFound)
        })
        .await?;
    Ok(HttpResponse::Ok().json(key))
}

/// Revoke a key: it stops working at once, on every server. It stays listed, revoked.
#[utoipa::path(delete, path = "/keys/{id}/", tag = "keys", params(ScopeHeaders, ("id" = i64, Path)),
    responses((status = 200, body = KeyView), ScopedErrors))]
pub async fn revoke_key(
    auth: Auth,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = object_id(&id)?;
    let key = db
        .write(move |conn| write_tx(conn, |conn| keys::revoke(conn, &auth.scope, id)))
        .await?;
    Ok(HttpResponse::Ok().json(key))
}
