//! What every route shares: body and query parsing, pagination, and the routing helpers
//! that give DRF's trailing-slash, 404 and 405 behaviour.

pub mod body;
pub mod fields;
pub mod json_guard;
pub mod metadata;
pub mod pagination;
pub mod query;
pub mod request_id;
pub mod throttle;
pub mod urlencoded;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::ApiError;

/// A resource reachable with and without its trailing slash (`/payments/` and `/payments`),
/// answering other methods with DRF's 405 and an `Allow` header naming `allow`.
pub fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    let trimmed = path.trim_end_matches('/');
    let method_not_allowed = move |req: HttpRequest| async move {
        Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            allow,
        })
    };
    // The slashed form first: it is the one `match_pattern` names (in the request log).
    web::resource([format!("{trimmed}/"), trimmed.to_string()])
        .default_service(web::to(method_not_allowed))
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// Parses an object id from the path: anything but a positive integer is a 404, as DRF's
/// `<int:pk>` route would not match it.
pub fn object_id(raw: &str) -> Result<i64, ApiError> {
    match raw.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(ApiError::NotFound),
    }
}

/// An object id from the path: its prefix and letters or digits; anything else is not
/// found.
pub fn prefixed_id(raw: &str, prefix: &str) -> Result<String, ApiError> {
    let valid = raw
        .strip_prefix(prefix)
        .is_some_and(|rest| !rest.is_empty() && rest.len() <= 40)
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(raw.to_string())
    } else {
        Err(ApiError::NotFound)
    }
}

/// The absolute base URL of the request (`http://host`), for links the API hands out.
pub fn base_url(req: &HttpRequest) -> String {
    if let Some(public) = req
        .app_data::<web::Data<crate::config::Settings>>()
        .and_then(|s| s.public_url.clone())
    {
        return public;
    }
    // The Host header only: X-Forwarded-Host and Forwarded come from the client unless a
    // proxy sets them, and would let it choose the host of the links we hand out (and
    // store in events). Behind a proxy, set COBRO_PUBLIC_URL.
    let host = req
        .headers()
        .get(actix_web::http::header::HOST)
        .and_then(|h| h.to_str().ok());
    format!("http://{}", host.unwrap_or("localhost"))
}
