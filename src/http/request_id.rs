//! Request ids, and the one line logged per request.
//!
//! Every answer carries `X-Request-Id`: the client's own when it sent a sane one (so a
//! client's id follows its request through cobro's logs and events), otherwise a new
//! `req_…`. The id is the request's for as long as it is handled: in the handler's task
//! ([`CURRENT`]) and on the thread that runs its database work ([`within`], called by
//! `Db::run` and the SQLite writer), so every log line the request causes carries it, and
//! the scope it acts in records it in its events.

use std::cell::RefCell;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use rand::distr::{Alphanumeric, SampleString};

use actix_web::ResponseError;

use crate::audit::Actor;

pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static CURRENT: String;
}

thread_local! {
    static ON_THIS_THREAD: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The id of a request, in its extensions (read by authentication).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// A new request id: `req_` and 20 random letters and digits.
pub fn generate() -> String {
    format!("req_{}", Alphanumeric.sample_string(&mut rand::rng(), 20))
}

/// The client's id if it is one cobro can log and store as it is: 1 to 64 characters of
/// letters, digits and `-_.:`. Anything else is replaced, not refused.
fn from_client(value: Option<&HeaderValue>) -> Option<String> {
    let value = value?.to_str().ok()?.trim();
    let sane = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    sane.then(|| value.to_string())
}

/// The id of a request (the one the middleware gave it; a new one outside the middleware).
pub fn of(req: &actix_web::HttpRequest) -> String {
    req.extensions()
        .get::<RequestId>()
        .map_or_else(generate, |id| id.0.clone())
}

/// The id of the request being handled here, if any.
pub fn current() -> Option<String> {
    CURRENT
        .try_with(|id| id.clone())
        .ok()
        .or_else(|| ON_THIS_THREAD.with(|id| id.borrow().clone()))
}

/// Runs `work` on this thread as part of request `id` (for its log lines).
pub fn within<T>(id: Option<String>, work: impl FnOnce() -> T) -> T {
    let before = ON_THIS_THREAD.with(|current| current.replace(id));
    let result = work();
    ON_THIS_THREAD.with(|current| current.replace(before));
    result
}

/// The request id, the log line of every request, and its header on every answer.
///
/// The line names the route template (`/pay/{key}/`), never the path, query or headers: a
/// path may hold a checkout key, a header a token.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = from_client(req.headers().get(HEADER)).unwrap_or_else(generate);
    let db = req
        .app_data::<actix_web::web::Data<crate::db::Db>>()
        .cloned();
    req.extensions_mut().insert(RequestId(id.clone()));
    let started = Instant::now();
    let method = req.method().clone();
    let peer = req.peer_addr();
    CURRENT
        .scope(id.clone(), async move {
            let (res, owed) = crate::accounts::cache::with_room(next.call(req)).await;
            let mut res = res?.map_into_left_body();
            // Let in on trust and answered without touching the database: the credential is
            // checked now, and an answer it no longer earns is replaced by the refusal.
            if let (Some(check), Some(db)) = (owed.filter(|c| !c.verified()), db) {
                let checked = db
                    .run(move |conn| crate::accounts::cache::verify(conn, &check, true))
                    .await;
                // Fails closed: an answer is sent only once its credential is known to hold.
                if let Err(err) = checked {
                    let refusal = if res.request().path().starts_with("/v1/") {
                        crate::billingrails::BrError(err).error_response()
                    } else {
                        err.error_response()
                    };
                    res = res.into_response(refusal).map_into_right_body();
                }
            }
            if let Ok(value) = HeaderValue::from_str(&id) {
                res.headers_mut()
                    .insert(HeaderName::from_static(HEADER), value);
            }
            let logged = log::log_enabled!(target: "cobro::http", log::Level::Info);
            if !logged && !crate::metrics::is_on() {
                return Ok(res);
            }
            let route = res
                .request()
                .match_pattern()
                .unwrap_or_else(|| "(no route)".to_string());
            let status = res.status().as_u16();
            let took = started.elapsed();
            let method = method.as_str();
            crate::metrics::http_request(metric_method(method), &route, status, took);
            if !logged {
                return Ok(res);
            }
            let actor = res
                .request()
                .extensions()
                .get::<Actor>()
                .map(Actor::label)
                // The checkout's pages and routes act for the payer behind the key.
                .or_else(|| route.starts_with("/pay/").then(|| "checkout".to_string()))
                .unwrap_or_else(|| "-".to_string());
            let peer = peer.map_or_else(|| "-".to_string(), |a| a.ip().to_string());
            let duration_ms = took.as_secs_f64() * 1000.0;
            log::info!(
                target: "cobro::http",
                peer = peer.as_str(),
                method = method,
                route = route.as_str(),
                status = status,
                duration_ms = (duration_ms * 1000.0).round() / 1000.0,
                actor = actor.as_str();
                "{peer} \"{method} {route}\" {status} {duration_ms:.3}ms"
            );
            Ok(res)
        })
        .await
}

/// A method as a metric's label: the ones routes answer, or `other` (a client may send any
/// token as a method, and each would be a series of its own).
fn metric_method(method: &str) -> &str {
    const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_id_is_kept_only_when_sane() {
        let id = |raw: &str| from_client(Some(&HeaderValue::from_str(raw).unwrap()));
        assert_eq!(id("abc-123_X.y:z").as_deref(), Some("abc-123_X.y:z"));
        assert_eq!(id(" padded ").as_deref(), Some("padded"));
        assert_eq!(id(""), None);
        assert_eq!(id("has space"), None);
        assert_eq!(id("semi;colon"), None);
        assert_eq!(id(&"x".repeat(65)), None);
        assert_eq!(id(&"x".repeat(64)).map(|s| s.len()), Some(64));
        assert_eq!(from_client(None), None);
        assert!(generate().starts_with("req_") && generate().len() == 24);
    }

    #[test]
    fn work_on_a_thread_carries_its_request_id_and_then_forgets_it() {
        assert_eq!(current(), None);
        let seen = within(Some("req_a".into()), || {
            let inner = within(Some("req_b".into()), current);
            (current(), inner)
        });
        assert_eq!(seen, (Some("req_a".into()), Some("req_b".into())));
        assert_eq!(current(), None);
    }
}
