//! Who is signed in to the console: the session cookie ([`COOKIE`]), and the extractors a
//! console handler takes. [`Signed`] is a signed-in request allowed on its route;
//! [`Posted`] is a form from it, which exists only with the session's CSRF token and from
//! the console's own origin, so a handler that changes anything cannot forget the check.
//!
//! The CSRF token is derived from the cookie's secret (a hash of it under a label): it is
//! never stored, differs per session, and a page of one session cannot post for another.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::Refusal;
use crate::accounts::auth::Auth;
use crate::accounts::roles::{self, Access, Grants, Resource};
use crate::accounts::sessions::{self, Found, Lifetimes, Membership, Session};
use crate::accounts::Principal;
use crate::audit::{Actor, Origin};
use crate::config::Settings;
use crate::db::{now, Db, Scope};
use crate::error::ApiError;
use crate::http::body::Body;
use crate::http::request_id;

pub const COOKIE: &str = "cobro_session";

/// The `Set-Cookie` value that gives a browser its session: never readable by scripts, sent
/// on top-level navigations from other sites (a link to a payment works) but not on their
/// POSTs, and only over https when the console is served over https.
pub fn session_cookie(secret: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={secret}; Path=/dashboard; HttpOnly; SameSite=Lax{secure}")
}

/// `response` with a `Set-Cookie` header of `value` (`session_cookie`, `clear_cookie`).
pub fn with_cookie(mut response: HttpResponse, value: &str) -> HttpResponse {
    if let Ok(value) = header::HeaderValue::from_str(value) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The `Set-Cookie` value that makes a browser forget its session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/dashboard; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// The session secret a request's Cookie header carries.
pub fn cookie_secret(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 100)
}

/// A session's CSRF token.
pub fn csrf_token(secret: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"cobro console csrf\0");
    hash.update(secret.as_bytes());
    hex::encode(&hash.finalize()[..16])
}

/// Whether a form comes from a page of this server: its `Origin` names this host (browsers
/// send it on every POST), and `Sec-Fetch-Site`, where sent, says the same.
pub fn same_origin(req: &HttpRequest) -> bool {
    let text = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
    };
    if text("sec-fetch-site").is_some_and(|site| site != "same-origin" && site != "none") {
        return false;
    }
    let Some(origin) = text(header::ORIGIN.as_str()) else {
        // A form from a browser that sends no Origin: the CSRF token decides alone.
        return true;
    };
    let ours = crate::http::base_url(req);
    let host = |url: &str| url.split_once("://").map(|(_, rest)| rest.to_string());
    host(origin).is_some_and(|theirs| Some(theirs) == host(&ours))
        || text(header::HOST.as_str()).is_some_and(|h| host(origin).as_deref() == Some(h))
}

/// What a console route needs: being signed in, or what the API would need on the same
/// route without `/dashboard` (the overview shows payments). None: refused (fail closed).
fn needs(method: &str, route: &str) -> Option<Option<(Resource, Access)>> {
    let rest = route.strip_prefix("/dashboard")?;
    match rest {
        "/" => Some(Some((Resource::Payments, Access::Read))),
        "/place/" | "/account/" => Some(None),
        _ => roles::needed(method, rest).map(Some),
    }
}

/// A signed-in request, allowed on its route, with the workspace and mode its header shows.
pub struct Signed {
    pub session: Session,
    /// Every workspace of the user, for the switcher.
    pub memberships: Vec<Membership>,
    /// The one shown.
    pub workspace: Membership,
    /// The scope, principal and grants the API's operations take.
    pub auth: Auth,
    pub csrf: String,
    /// The path and query of the page asked for.
    pub here: String,
}

impl Signed {
    pub fn may(&self, resource: Resource, access: Access) -> bool {
        self.auth.grants.allows(resource, access)
    }

    pub fn scope(&self) -> &Scope {
        &self.auth.scope
    }

    pub fn test_mode(&self) -> bool {
        self.auth.scope.test_mode()
    }
}

impl FromRequest for Signed {
    type Error = Refusal;
    type Future = Pin<Box<dyn Future<Output = Result<Signed, Refusal>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { signed(&req).await })
    }
}

async fn signed(req: &HttpRequest) -> Result<Signed, Refusal> {
    // After signing in, a form's target is no page to come back to: the overview is.
    let here = match req.method() {
        &actix_web::http::Method::GET => req
            .uri()
            .path_and_query()
            .map_or("/dashboard/", |p| p.as_str()),
        _ => "/dashboard/",
    }
    .to_string();
    let sign_in = |expired| Refusal::SignIn {
        next: here.clone(),
        expired,
    };
    let secret = cookie_secret(req).ok_or_else(|| sign_in(false))?;
    let db = req
        .app_data::<web::Data<Db>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("no database in app data"))?;
    let lifetimes = lifetimes(req);
    let looking = secret.clone();
    let found = db
        .run(
            move |conn| match sessions::find(conn, &looking, lifetimes)? {
                Found::Live(session) => {
                    let memberships = sessions::memberships_of(conn, session.user_id)?;
                    Ok(Some((session, memberships)))
                }
                Found::Expired => Ok(None),
                Found::Unknown => Err(ApiError::NotAuthenticated),
            },
        )
        .await;
    let (session, memberships) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return Err(sign_in(true)),
        Err(ApiError::NotAuthenticated) => return Err(sign_in(false)),
        Err(err) => return Err(err.into()),
    };
    if now() - session.last_seen > lifetimes.touch_after() {
        let (db, digest) = (db.clone(), session.digest.clone());
        actix_web::rt::spawn(async move {
            let touched = db
                .write(move |conn| Ok(sessions::touch(conn, &digest)?))
                .await;
            if let Err(err) = touched {
                err.log_for("noting a console session's activity");
            }
        });
    }
    let needed = req
        .match_pattern()
        .and_then(|route| needs(req.method().as_str(), &route))
        .ok_or(ApiError::Forbidden)?;
    let Some(workspace) = memberships
        .iter()
        .find(|m| Some(&m.workspace_id) == session.workspace_id.as_ref())
        .or(memberships.first())
        .cloned()
    else {
        return Err(Refusal::NoWorkspace {
            csrf: csrf_token(&secret),
        });
    };
    let actor = Actor::User {
        email: session.email.clone(),
    };
    req.extensions_mut().insert(actor.clone());
    let grants = Grants::Member(workspace.role);
    if let Some((resource, access)) = needed {
        if !grants.allows(resource, access) {
            return Err(ApiError::Forbidden.into());
        }
    }
    // The workspace shown stays the session's choice; its mode applies to it alone.
    let test_mode =
        session.test_mode && session.workspace_id.as_ref() == Some(&workspace.workspace_id);
    let origin = Arc::new(Origin::new(actor, request_id::of(req)));
    let auth = Auth {
        scope: Scope::new(workspace.workspace_id.clone(), test_mode, &origin),
        principal: Principal::User {
            id: session.user_id,
            email: session.email.clone(),
        },
        grants,
    };
    Ok(Signed {
        csrf: csrf_token(&secret),
        session,
        memberships,
        workspace,
        auth,
        here,
    })
}

/// The session lifetimes of the server's settings.
pub fn lifetimes(req: &HttpRequest) -> Lifetimes {
    let idle = req
        .app_data::<web::Data<Settings>>()
        .map_or(900, |s| s.session_idle_seconds);
    Lifetimes::after_idle(idle)
}

/// A form posted from a signed-in page: the session's CSRF token checked, from this origin.
pub struct Posted {
    pub signed: Signed,
    pub fields: Map<String, Value>,
}

impl Posted {
    /// A text field, trimmed ("" when absent).
    pub fn text(&self, name: &str) -> String {
        field(&self.fields, name)
    }
}

/// A form field as text, trimmed ("" when absent).
pub fn field(fields: &Map<String, Value>, name: &str) -> String {
    fields
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Whether a posted form carries the session's CSRF token (`csrf_token`).
pub fn carries_token(fields: &Map<String, Value>, expected: &str) -> bool {
    let token = field(fields, "csrf");
    constant_time_eq(token.as_bytes(), expected.as_bytes())
}

impl FromRequest for Posted {
    type Error = Refusal;
    type Future = Pin<Box<dyn Future<Output = Result<Posted, Refusal>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = Body::from_request(req, payload).into_inner();
        let req = req.clone();
        Box::pin(async move {
            let signed = signed(&req).await?;
            if !same_origin(&req) {
                return Err(Refusal::Forged);
            }
            let fields = body?.read().await?;
            if !carries_token(&fields, &signed.csrf) {
                return Err(Refusal::Forged);
            }
            Ok(Posted { signed, fields })
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A path inside the console to go back to after a form (anything else: the overview).
pub fn local_next(next: &str) -> &str {
    let inside = next.starts_with("/dashboard/") && !next.starts_with("//") && !next.contains('\\');
    if inside {
        next
    } else {
        "/dashboard/"
    }
}

/// `POST /dashboard/place/`: the workspace and mode the header shows from now on.
pub async fn choose_place(posted: Posted, db: web::Data<Db>) -> Result<HttpResponse, Refusal> {
    let workspace = posted.text("workspace");
    let test_mode = posted.text("test_mode") == "true";
    let signed = &posted.signed;
    if !signed
        .memberships
        .iter()
        .any(|m| m.workspace_id == workspace)
    {
        return Err(ApiError::NotFound.into());
    }
    let digest = signed.session.digest.clone();
    db.write(move |conn| {
        Ok(sessions::choose_place(
            conn, &digest, &workspace, test_mode,
        )?)
    })
    .await?;
    // Another workspace's object is not found there: back to the section's list.
    let next = local_next(&posted.text("next")).to_string();
    Ok(super::see_other(&next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_console_route_needs_what_the_api_route_needs() {
        assert_eq!(
            needs("GET", "/dashboard/payments/{id}/"),
            Some(Some((Resource::Payments, Access::Read)))
        );
        assert_eq!(
            needs("POST", "/dashboard/payments/{id}/refund/"),
            Some(Some((Resource::Refunds, Access::Write)))
        );
        assert_eq!(needs("POST", "/dashboard/place/"), Some(None));
        assert_eq!(needs("GET", "/dashboard/account/"), Some(None));
        assert_eq!(needs("GET", "/dashboard/nothing/"), None);
        assert_eq!(needs("GET", "/payments/"), None);
    }

    #[test]
    fn only_console_paths_are_gone_back_to() {
        assert_eq!(
            local_next("/dashboard/payments/?page=2"),
            "/dashboard/payments/?page=2"
        );
        for outside in [
            "https://evil.example/",
            "//evil.example/",
            "/payments/",
            "/dashboard/\\evil",
        ] {
            assert_eq!(local_next(outside), "/dashboard/");
        }
    }
}
