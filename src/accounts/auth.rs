//! Authentication as Piriod does it: `Authorization: Token …` plus the `x-simple-workspace`
//! and `x-piriod-test-mode` headers, or a workspace secret key (`Token sk_…`/`Bearer sk_…`)
//! that carries its own workspace and mode. Errors come in the contract's order.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use actix_web::{web, FromRequest, HttpRequest};

use super::{authenticate, cache, is_member, Principal};
use crate::config::Settings;
use crate::db::{Db, Scope};
use crate::error::{ApiError, FieldErrors};
use crate::http::throttle::Throttle;

pub const WORKSPACE_HEADER: &str = "x-simple-workspace";
pub const TEST_MODE_HEADER: &str = "x-piriod-test-mode";

/// An authenticated request: who sent it and the workspace and mode it acts in.
#[derive(Clone, Debug)]
pub struct Auth {
    pub scope: Scope,
    pub principal: Principal,
}

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Auth, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let credential = credential(req.headers());
        let workspace = header(req.headers(), WORKSPACE_HEADER);
        let test_mode = header(req.headers(), TEST_MODE_HEADER);
        let db = req.app_data::<web::Data<Db>>().cloned();
        let throttle = req.app_data::<web::Data<Throttle>>().cloned();
        let ttl = req
            .app_data::<web::Data<Settings>>()
            .map_or(Duration::ZERO, |s| Duration::from_millis(s.auth_cache_ms));
        Box::pin(async move {
            let credential = credential?;
            let digest = super::digest(&credential);
            // Counted per credential as presented, before the database is asked about it.
            if let Some(throttle) = throttle {
                throttle.check(&digest)?;
            }
            if let Some(principal) = cache::principal(&digest, ttl) {
                let known = |user, workspace: &str| Ok(cache::is_member(user, workspace, ttl));
                if let Some(scope) = scope_for(&principal, &workspace, &test_mode, known)? {
                    return Ok(Auth { scope, principal });
                }
            }
            let db = db.ok_or_else(|| ApiError::internal("no database in app data"))?;
            db.run(move |conn| {
                let principal = authenticate(conn, &credential)?
                    .ok_or(ApiError::AuthenticationFailed("Invalid token."))?;
                let asked = |user, workspace: &str| Ok(is_member(conn, user, workspace)?);
                let scope = scope_for(&principal, &workspace, &test_mode, asked)?
                    .ok_or(ApiError::Forbidden)?;
                if !ttl.is_zero() {
                    cache::remember(&digest, &principal, workspace.as_deref());
                }
                Ok(Auth { scope, principal })
            })
            .await
        })
    }
}

/// The scope a principal acts in, given the request's headers; None when a user is not
/// (or, with the cache's `is_member`, not known to be) a member of the workspace.
fn scope_for(
    principal: &Principal,
    workspace: &Option<String>,
    test_mode: &Option<String>,
    is_member: impl FnOnce(i64, &str) -> Result<bool, ApiError>,
) -> Result<Option<Scope>, ApiError> {
    match principal {
        Principal::Key { scope, .. } => {
            // Headers are optional with a key, but may not contradict it.
            if workspace
                .as_deref()
                .is_some_and(|w| w != scope.workspace_id())
            {
                return Err(ApiError::Forbidden);
            }
            if let Some(raw) = test_mode {
                if parse_test_mode(raw)? != scope.test_mode() {
                    return Err(ApiError::Forbidden);
                }
            }
            Ok(Some(scope.clone()))
        }
        Principal::User { id } => {
            let workspace = workspace.as_deref().ok_or_else(|| {
                ApiError::Validation(FieldErrors::one(
                    "non_field_errors",
                    "x-simple-workspace header is required.",
                ))
            })?;
            if !is_member(*id, workspace)? {
                return Ok(None);
            }
            let test_mode = test_mode
                .as_deref()
                .map(parse_test_mode)
                .transpose()?
                .unwrap_or(false);
            Ok(Some(Scope::new(workspace.to_string(), test_mode)))
        }
    }
}

/// The secret from the Authorization header, with DRF's TokenAuthentication messages.
fn credential(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::NotAuthenticated)?;
    let value = value.to_str().map_err(|_| {
        ApiError::AuthenticationFailed(
            "Invalid token header. Token string should not contain invalid characters.",
        )
    })?;
    let mut parts = value.split_whitespace();
    let scheme = parts.next().unwrap_or("").to_ascii_lowercase();
    let secret = parts.next();
    let extra = parts.next();
    match (scheme.as_str(), secret, extra) {
        ("token", None, _) => Err(ApiError::AuthenticationFailed(
            "Invalid token header. No credentials provided.",
        )),
        ("token", Some(_), Some(_)) => Err(ApiError::AuthenticationFailed(
            "Invalid token header. Token string should not contain spaces.",
        )),
        ("token", Some(secret), None) => Ok(secret.to_string()),
        // Bearer is for workspace secret keys (Stripe's habit); anything else is not ours.
        ("bearer", Some(secret), None) if secret.starts_with("sk_") => Ok(secret.to_string()),
        _ => Err(ApiError::NotAuthenticated),
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
        .filter(|v| !v.is_empty())
}

fn parse_test_mode(raw: &str) -> Result<bool, ApiError> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::Validation(FieldErrors::one(
            "non_field_errors",
            "x-piriod-test-mode header must be true or false.",
        ))),
    }
}
