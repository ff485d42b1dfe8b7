//! Authentication as Piriod does it: `Authorization: Token …` plus the `x-simple-workspace`
//! and `x-piriod-test-mode` headers, or a workspace secret key (`Token sk_…`/`Bearer sk_…`)
//! that carries its own workspace and mode. Errors come in the contract's order: who
//! (401), then where and what (403: not a member, or beyond the role or key's permissions).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};

use super::keys::KeyPrincipal;
use super::roles::{self, Grants};
use super::{authenticate, cache, members, Principal};
use crate::audit::Origin;
use crate::db::{Db, Scope};
use crate::error::{ApiError, FieldErrors};
use crate::http::request_id;
use crate::http::throttle::Throttle;

pub const WORKSPACE_HEADER: &str = "x-simple-workspace";
pub const TEST_MODE_HEADER: &str = "x-piriod-test-mode";

/// An authenticated request: who sent it, the workspace and mode it acts in (with its
/// origin: the actor and request id its events record), and what it may do there. Being
/// extracted at all means the request's route is within `grants` (`roles::needed`).
#[derive(Clone, Debug)]
pub struct Auth {
    pub scope: Scope,
    pub principal: Principal,
    pub grants: Grants,
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
        let needed = req
            .match_pattern()
            .and_then(|route| roles::needed(req.method().as_str(), &route));
        let req = req.clone();
        Box::pin(async move {
            let credential = credential?;
            let asked = cache::Asked {
                digest: super::digest(&credential),
                is_key: super::keys::looks_like_key(&credential),
                workspace,
                test_mode,
            };
            // Counted per credential as presented, before the database is asked about it.
            if let Some(throttle) = throttle {
                throttle.check(&asked.digest)?;
            }
            let db = db.ok_or_else(|| ApiError::internal("no database in app data"))?;
            // Only what the cache lets in is trusted: a refusal is asked about afresh (a role
            // may have grown since).
            let cached = cache::get(&asked).filter(|t| allows(&t.grants, needed));
            let trusted = match cached {
                // Trusted now, checked again inside the request's own database work.
                Some(trusted) => {
                    cache::owe(cache::Check {
                        asked: asked.clone(),
                        needed,
                        epoch: trusted.epoch(),
                        verified: Default::default(),
                    });
                    trusted
                }
                None => {
                    let asking = asked.clone();
                    let trusted = db
                        .run(move |conn| {
                            let epoch = cache::epoch(conn)?;
                            resolve(conn, &asking, epoch)
                        })
                        .await?;
                    cache::remember(asked, trusted.clone());
                    trusted
                }
            };
            let actor = trusted.principal.actor();
            req.extensions_mut().insert(actor.clone());
            if !allows(&trusted.grants, needed) {
                return Err(ApiError::Forbidden);
            }
            if let Principal::Key(key) = &trusted.principal {
                note_use(&db, key);
            }
            let origin = Arc::new(Origin::new(actor, request_id::of(&req)));
            let (workspace, test_mode) = trusted.place;
            Ok(Auth {
                scope: Scope::new(workspace, test_mode, &origin),
                principal: trusted.principal,
                grants: trusted.grants,
            })
        })
    }
}

impl Auth {
    /// The kinds of object whose events this caller may read: those of the resources it
    /// may read (a viewer sees no key's events; a key with `events:read` alone, none about
    /// payments).
    pub fn readable_objects(&self) -> Vec<&'static str> {
        use roles::{Access, Resource};
        [
            ("payment", Resource::Payments),
            ("source", Resource::Sources),
            ("customer", Resource::Customers),
            ("invoice", Resource::Invoices),
            ("refund", Resource::Refunds),
            ("webhook", Resource::Webhooks),
            ("integration", Resource::Integrations),
            ("member", Resource::Members),
            ("key", Resource::Keys),
        ]
        .into_iter()
        .filter(|(_, resource)| self.grants.allows(*resource, Access::Read))
        .map(|(object, _)| object)
        .collect()
    }
}

/// True when `grants` allow what the route needs; a route that needs nothing known is
/// refused (fail closed: `roles::needed`).
pub fn allows(grants: &Grants, needed: Option<(roles::Resource, roles::Access)>) -> bool {
    needed.is_some_and(|(resource, access)| grants.allows(resource, access))
}

/// Who a credential is and what it may do where the headers ask, from the database, as of
/// `epoch`: 401 for an unknown or revoked credential, 403 for a user not a member there.
pub fn resolve(
    conn: &mut crate::db::DbConnection,
    asked: &cache::Asked,
    epoch: i64,
) -> Result<cache::Trusted, ApiError> {
    let principal = authenticate(conn, &asked.digest, asked.is_key)?
        .ok_or(ApiError::AuthenticationFailed("Invalid token."))?;
    let role_of = |user, workspace: &str| Ok(members::role_of(conn, user, workspace)?);
    let (place, grants) = scope_for(&principal, &asked.workspace, &asked.test_mode, role_of)?
        .ok_or(ApiError::Forbidden)?;
    Ok(cache::Trusted::new(principal, place, grants, epoch))
}

/// Writes when a key was last used (at most once a minute per key, after the answer: a
/// failure to write it fails nothing).
fn note_use(db: &Db, key: &KeyPrincipal) {
    if !super::keys::due_for_touch(key) {
        return;
    }
    let (db, id) = (db.clone(), key.id);
    actix_web::rt::spawn(async move {
        let touched = db
            .write(move |conn| Ok(super::keys::touch(conn, id)?))
            .await;
        if let Err(err) = touched {
            err.log_for("noting a key's last use");
        }
    });
}

/// A workspace and mode.
type Place = (String, bool);

/// The workspace and mode a principal acts in, given the request's headers, and what it may
/// do there; None when a user is not a member of the workspace.
fn scope_for(
    principal: &Principal,
    workspace: &Option<String>,
    test_mode: &Option<String>,
    role_of: impl FnOnce(i64, &str) -> Result<Option<roles::Role>, ApiError>,
) -> Result<Option<(Place, Grants)>, ApiError> {
    match principal {
        Principal::Key(key) => {
            // Headers are optional with a key, but may not contradict it.
            if workspace.as_deref().is_some_and(|w| w != key.workspace_id) {
                return Err(ApiError::Forbidden);
            }
            if let Some(raw) = test_mode {
                if parse_test_mode(raw)? != key.test_mode {
                    return Err(ApiError::Forbidden);
                }
            }
            let grants = match &key.permissions {
                None => Grants::Key,
                Some(permissions) => Grants::Restricted(permissions.clone()),
            };
            Ok(Some(((key.workspace_id.clone(), key.test_mode), grants)))
        }
        Principal::User { id, .. } => {
            let workspace = workspace.as_deref().ok_or_else(|| {
                ApiError::Validation(FieldErrors::one(
                    "non_field_errors",
                    "x-simple-workspace header is required.",
                ))
            })?;
            let Some(role) = role_of(*id, workspace)? else {
                return Ok(None);
            };
            let test_mode = test_mode
                .as_deref()
                .map(parse_test_mode)
                .transpose()?
                .unwrap_or(false);
            Ok(Some((
                (workspace.to_string(), test_mode),
                Grants::Member(role),
            )))
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
        // Bearer is for workspace keys (Stripe's habit); anything else is not ours.
        ("bearer", Some(secret), None) if super::keys::looks_like_key(secret) => {
            Ok(secret.to_string())
        }
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
