//! Safe retries (API.md §6, Stripe's semantics): a POST with an `Idempotency-Key` runs at
//! most once per key, and a retry gets the first answer again, byte for byte.
//!
//! A key belongs to one workspace, mode and credential. The first request claims it in a
//! short transaction of its own, then runs its work; the answer is stored in the work's
//! own transaction, so an answer exists if and only if the work committed. A request that
//! fails (validation, a refused move, a crash) stores nothing and frees the key.
//!
//! - same key, same path and fields, answered: the stored answer (`Idempotent-Replayed`);
//! - same key, other path or fields: 409;
//! - same key while the first still runs: 409 (the claim's lock is fresh);
//! - a claim whose process died (its lock older than [`LEASE`]) is taken over; the old
//!   holder, if it was only slow, can no longer store its answer and rolls back;
//! - except when its work began calling a provider ([`answer_call`]): that work may have
//!   moved money, so it is never run again for the key; a retry gets a 409 while it may
//!   still be running, and one that says its answer was lost after that.
//!
//! Keys are forgotten after the TTL (24 hours by default); the server purges them.

mod store;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Duration;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::accounts::auth::Auth;
use crate::config::Settings;
use crate::db::{now, write_tx, Db, DbConnection, Scope};
use crate::error::{ApiError, ApiResult};
use crate::http::object_id;

pub const HEADER: &str = "idempotency-key";
/// Set on an answer that is a replay of a stored one.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// How long a claim may run before another request may presume its process dead.
/// Requests take milliseconds; a slow one that loses its claim cannot store its answer and
/// rolls back (a 409), so a short lease is safe and lets a crashed request's retry run soon.
const LEASE: Duration = Duration::seconds(10);
const MAX_KEY_LENGTH: usize = 255;

/// A POST's idempotency key and what identifies its request.
pub struct Key {
    scope: Scope,
    credential: String,
    key: String,
    path: String,
    fingerprint: String,
    ttl: Duration,
}

/// Reads the `Idempotency-Key` header (None without one). `credential` names who sent the
/// request (`Principal::credential`); `fields` is its parsed body.
pub fn key(
    req: &HttpRequest,
    scope: &Scope,
    credential: String,
    fields: &Map<String, Value>,
) -> Result<Option<Key>, ApiError> {
    let Some(value) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    let key = value.to_str().map_err(|_| invalid_key())?;
    named(req, scope, credential, key, fields).map(Some)
}

/// A key given some other way than the header: a console form carries one, made when the
/// page was shown, so that a form sent twice (a double click, a reload) acts once.
pub fn named(
    req: &HttpRequest,
    scope: &Scope,
    credential: String,
    key: &str,
    fields: &Map<String, Value>,
) -> Result<Key, ApiError> {
    let key = Some(key.trim())
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LENGTH)
        .ok_or_else(invalid_key)?;
    let ttl_seconds = req
        .app_data::<web::Data<Settings>>()
        .map_or(24 * 3600, |s| s.idempotency_ttl_seconds);
    Ok(Key {
        scope: scope.clone(),
        credential,
        key: key.to_string(),
        path: req.path().to_string(),
        fingerprint: fingerprint(fields),
        ttl: Duration::seconds(ttl_seconds as i64),
    })
}

fn invalid_key() -> ApiError {
    ApiError::BadRequest(format!(
        "Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters."
    ))
}

/// A POST on one object that takes no fields (`/payments/{id}/cancel/`, …): the path alone
/// says what it does. Runs `work` on the object's id as [`answer`] does.
pub async fn answer_action<T, W>(
    req: &HttpRequest,
    auth: Auth,
    db: &Db,
    id: &str,
    status: StatusCode,
    mut work: W,
) -> ApiResult<HttpResponse>
where
    W: FnMut(&mut DbConnection, &Scope, i64) -> Result<T, ApiError> + Send + 'static,
    T: Serialize + Send + 'static,
{
    let id = object_id(id)?;
    let key = key(req, &auth.scope, auth.principal.credential(), &Map::new())?;
    let scope = auth.scope;
    answer(db, key, status, move |conn| work(conn, &scope, id)).await
}

/// Runs `work` and answers `status` with its JSON. With a key, the work runs at most once
/// for it, and the answer is stored in the work's transaction.
pub async fn answer<T, W>(
    db: &Db,
    key: Option<Key>,
    status: StatusCode,
    mut work: W,
) -> ApiResult<HttpResponse>
where
    W: FnMut(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
    T: Serialize + Send + 'static,
{
    let Some(key) = key else {
        let value = db.write(move |conn| work(conn)).await?;
        return Ok(HttpResponse::build(status).json(value));
    };
    let (key, lock) = match claim_key(db, key).await? {
        Ok(claimed) => claimed,
        Err(replay) => return Ok(replay),
    };
    let (working, lock_held) = (key.clone(), lock.clone());
    let result = db
        .write(move |conn| {
            write_tx(conn, |conn| {
                let body = to_body(&work(conn)?)?;
                if !store_answer(conn, &working, &lock_held, status, &body)? {
                    // Taken over by a retry that presumed this request dead: it runs instead.
                    return Err(in_progress());
                }
                Ok(body)
            })
        })
        .await;
    respond(db, key, lock, status, result).await
}

/// As [`answer`], for work that calls a provider between two transactions, in the shape of
/// the webhook worker: `begin` records the intent in one transaction, `call` runs with no
/// transaction open (on the blocking pool: it may take seconds), and `finish` applies its
/// outcome in a second one, which also stores the answer. `begin`'s transaction also marks
/// the key's work as begun: a retry while it runs gets a 409, and a claim whose holder died
/// after that is never taken over (the work may have moved money; the reconciler settles
/// it). A provider's answer is never thrown away.
///
/// When what `begin` prepared is answered in-process ([`Staged::in_process`]: a built-in
/// gateway, at once, with no network), `call` and `finish` run in `begin`'s transaction:
/// the work is then one write, and all of it or none of it happens.
pub async fn answer_call<P, O, T, B, C, F>(
    db: &Db,
    key: Option<Key>,
    status: StatusCode,
    mut begin: B,
    call: C,
    finish: F,
) -> ApiResult<HttpResponse>
where
    B: FnMut(&mut DbConnection) -> Result<P, ApiError> + Send + 'static,
    C: Fn(&P) -> O + Send + Sync + 'static,
    F: Fn(&mut DbConnection, &P, &O) -> Result<T, ApiError> + Send + Sync + 'static,
    P: Staged + Send + 'static,
    O: Send + 'static,
    T: Serialize + Send + 'static,
{
    let claimed = match key {
        None => None,
        Some(key) => match claim_key(db, key).await? {
            Ok(claimed) => Some(claimed),
            Err(replay) => return Ok(replay),
        },
    };
    // The work begins in one transaction with the mark that it did: from then on the key is
    // never taken over (what began may have moved money), and a retry is told so.
    let marking = claimed.clone();
    let (call, finish) = (Arc::new(call), Arc::new(finish));
    let (calling, finishing) = (call.clone(), finish.clone());
    let begun = db
        .write(move |conn| {
            write_tx(conn, |conn| {
                let prepared = begin(conn)?;
                if let (Some((key, lock)), true) = (&marking, prepared.moves_money()) {
                    let (scope, credential, name) = (&key.scope, &key.credential, &key.key);
                    let made = prepared.made();
                    let made = made.as_deref();
                    if !store::mark_started(conn, scope, credential, name, lock, now(), made)? {
                        return Err(in_progress());
                    }
                }
                if !prepared.in_process() {
                    return Ok(Begun::Waiting(prepared));
                }
                let outcome = calling(&prepared);
                let body = to_body(&finishing(conn, &prepared, &outcome)?)?;
                if let Some((key, lock)) = &marking {
                    store_answer(conn, key, lock, status, &body)?;
                }
                Ok(Begun::Done(body))
            })
        })
        .await;
    let (prepared, claimed) = match (begun, claimed) {
        (Ok(Begun::Done(body)), _) => return Ok(json_body(status, body)),
        (Ok(Begun::Waiting(prepared)), claimed) => (prepared, claimed),
        (Err(err), None) => return Err(err),
        // Nothing began: the key is free for a corrected request.
        (Err(err), Some((key, lock))) => return respond(db, key, lock, status, Err(err)).await,
    };
    let moved = prepared.moves_money();
    let recorded = prepared.recorded();
    let (prepared, outcome) = actix_web::web::block(move || {
        let outcome = (*call)(&prepared);
        (prepared, outcome)
    })
    .await
    .map_err(ApiError::internal)?;
    let storing = claimed.clone();
    let result = db
        .write(move |conn| {
            write_tx(conn, |conn| {
                let body = to_body(&(*finish)(conn, &prepared, &outcome)?)?;
                if let Some((key, lock)) = &storing {
                    // A lost claim keeps the work (see above); only the stored answer goes.
                    store_answer(conn, key, lock, status, &body)?;
                }
                Ok(body)
            })
        })
        .await;
    match claimed {
        // Once money may have moved, the key stays even without an answer stored: what began
        // is settled by its own state (the reconciler), never by running it again.
        Some((key, lock)) if !moved => respond(db, key, lock, status, result).await,
        _ => match (result, recorded) {
            (Ok(body), _) => Ok(json_body(status, body)),
            // What began exists: say so, rather than invite a retry that would begin again.
            (Err(err), Some(body)) => {
                err.log_for("the last step of a request whose work began");
                Ok(json_body(status, body))
            }
            (Err(err), None) => Err(err),
        },
    }
}

/// What `answer_call`'s first step left: the call still to make, or the whole answer.
enum Begun<P> {
    Waiting(P),
    Done(String),
}

/// What a staged request's first step prepared: whether its call may move money (a charge, a
/// capture, a release, a refund), which then is never run again for the key.
pub trait Staged {
    fn moves_money(&self) -> bool;
    /// Whether its call is answered in-process, at once and with no network (a built-in
    /// gateway): then it runs inside the first step's transaction.
    fn in_process(&self) -> bool {
        false
    }
    /// The path of what it made, when the request's own path does not say (a new refund):
    /// a retry whose answer was lost is told where to look.
    fn made(&self) -> Option<String> {
        None
    }
    /// The answer (a JSON body) when the work began and its last step failed: what the
    /// first step recorded. None: the last step's error is the answer.
    fn recorded(&self) -> Option<String> {
        None
    }
}

fn to_body(value: &impl Serialize) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(ApiError::internal)
}

fn json_body(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(body)
}

/// Claims the key: Ok with the key and this request's lock, or Err with the stored answer
/// to replay.
async fn claim_key(
    db: &Db,
    key: Key,
) -> Result<Result<(std::sync::Arc<Key>, String), HttpResponse>, ApiError> {
    let key = std::sync::Arc::new(key);
    let claiming = key.clone();
    match db.write(move |conn| claim(conn, &claiming)).await? {
        Claim::Answered { status, body } => {
            crate::metrics::idempotency("replayed");
            let status = StatusCode::from_u16(status).map_err(ApiError::internal)?;
            Ok(Err(HttpResponse::build(status)
                .insert_header((REPLAYED_HEADER, "true"))
                .content_type("application/json")
                .body(body)))
        }
        Claim::Mine(lock) => Ok(Ok((key, lock))),
    }
}

/// Stores the answer under the claim; false when another request took the claim over.
fn store_answer(
    conn: &mut DbConnection,
    key: &Key,
    lock: &str,
    status: StatusCode,
    body: &str,
) -> Result<bool, ApiError> {
    store::complete(
        conn,
        &key.scope,
        &key.credential,
        &key.key,
        lock,
        status.as_u16(),
        body,
    )
}

/// The answer to a keyed request: its body, or its error once the key is freed (nothing
/// was stored, so a corrected retry can run).
async fn respond(
    db: &Db,
    key: std::sync::Arc<Key>,
    lock: String,
    status: StatusCode,
    result: Result<String, ApiError>,
) -> ApiResult<HttpResponse> {
    match result {
        Ok(body) => Ok(json_body(status, body)),
        Err(err) => {
            let released = db
                .write(move |conn| {
                    let k = &key;
                    write_tx(conn, |conn| {
                        store::delete(conn, &k.scope, &k.credential, &k.key, Some(&lock))
                    })
                })
                .await;
            if let Err(release) = released {
                log::warn!(
                    "could not free an idempotency key (it expires with its lease): {release}"
                );
            }
            Err(err)
        }
    }
}

enum Claim {
    /// The stored answer of the request that first used the key.
    Answered { status: u16, body: String },
    /// The key is this request's, under this lock token.
    Mine(String),
}

fn claim(conn: &mut DbConnection, key: &Key) -> Result<Claim, ApiError> {
    write_tx(conn, |conn| {
        let at = now();
        let token = crate::accounts::new_id("");
        let existing = store::find(conn, &key.scope, &key.credential, &key.key)?;
        match existing {
            Some(row) if row.created > at - key.ttl => {
                if row.request_path != key.path {
                    return Err(conflict(format!(
                        "This Idempotency-Key was used for another request (POST {}); use a new key for a new request.",
                        row.request_path
                    )));
                }
                if row.fingerprint != key.fingerprint {
                    return Err(conflict(
                        "Keys for idempotent requests can only be used with the same parameters they were first used with.".into(),
                    ));
                }
                if let (Some(status), Some(body)) = (row.response_status, row.response_body) {
                    let status = u16::try_from(status).map_err(ApiError::internal)?;
                    return Ok(Claim::Answered { status, body });
                }
                let lock = row.lock_token.unwrap_or_default();
                let made = row
                    .started_object
                    .as_deref()
                    .map(|path| format!(" It made {path}: read it there."))
                    .unwrap_or_default();
                if row.locked_at.is_some_and(|locked| locked > at - LEASE) {
                    return Err(conflict(format!("{IN_PROGRESS}{made}")));
                }
                // A staged request's work may still be at its provider for a while.
                let call = Duration::from_std(crate::gateways::CALL_LIMIT).unwrap_or_default();
                if row
                    .started_at
                    .is_some_and(|began| began > at - call - LEASE)
                {
                    return Err(conflict(format!("{IN_PROGRESS}{made}")));
                }
                if row.started_at.is_some() {
                    let look = if made.is_empty() {
                        " Read the object to see how it ended.".to_string()
                    } else {
                        made
                    };
                    return Err(conflict(format!(
                        "The request first sent with this Idempotency-Key began its work and its answer was lost; it is not run again.{look}"
                    )));
                }
                if !store::relock(
                    conn,
                    &key.scope,
                    &key.credential,
                    &key.key,
                    &lock,
                    &token,
                    at,
                )? {
                    return Err(ApiError::Contention);
                }
                Ok(Claim::Mine(token))
            }
            stale => {
                if stale.is_some() {
                    // Expired but not purged yet: as if it had never been.
                    store::delete(conn, &key.scope, &key.credential, &key.key, None)?;
                }
                store::insert(
                    conn,
                    &key.scope,
                    &store::KeyRow {
                        credential: key.credential.clone(),
                        idempotency_key: key.key.clone(),
                        request_path: key.path.clone(),
                        fingerprint: key.fingerprint.clone(),
                        lock_token: Some(token.clone()),
                        locked_at: Some(at),
                        response_status: None,
                        response_body: None,
                        created: at,
                        started_at: None,
                        started_object: None,
                    },
                )?;
                Ok(Claim::Mine(token))
            }
        }
    })
}

fn conflict(detail: String) -> ApiError {
    crate::metrics::idempotency("conflict");
    ApiError::Conflict {
        code: "idempotency_error",
        detail,
    }
}

const IN_PROGRESS: &str = "A request with this Idempotency-Key is still in progress; retry later.";

fn in_progress() -> ApiError {
    conflict(IN_PROGRESS.into())
}

/// Deletes the keys older than `ttl_seconds`: what `cobro serve` runs now and then.
pub fn purge_expired(conn: &mut DbConnection, ttl_seconds: u64) -> Result<usize, ApiError> {
    store::purge(conn, now() - Duration::seconds(ttl_seconds as i64))
}

/// SHA-256 of the fields with every object's keys sorted: the same fields in another order,
/// or as a form instead of JSON with the same values, are the same request.
fn fingerprint(fields: &Map<String, Value>) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    let canonical = sorted(&Value::Object(fields.clone())).to_string();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_fingerprint_ignores_key_order_but_not_values() {
        let a = json!({"amount": "10.00", "metadata": {"a": 1, "b": [1, {"y": 2, "x": 1}]}});
        let b = json!({"metadata": {"b": [1, {"x": 1, "y": 2}], "a": 1}, "amount": "10.00"});
        let c = json!({"amount": "10.0", "metadata": {"a": 1, "b": [1, {"y": 2, "x": 1}]}});
        let fp = |v: Value| fingerprint(v.as_object().unwrap());
        assert_eq!(fp(a.clone()), fp(b));
        assert_ne!(fp(a.clone()), fp(c));
        // Array order is meaning, not form.
        assert_ne!(fp(json!({"s": [1, 2]})), fp(json!({"s": [2, 1]})));
    }
}
