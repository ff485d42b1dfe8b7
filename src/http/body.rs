//! The request body as DRF reads it: JSON or a form, as a map of fields, under a size limit.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::error::{ApiError, FieldErrors};

/// The largest request body accepted, in bytes (app data; 64 KiB unless configured).
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// A request body, read only when the handler asks (`read`), after authentication: as in
/// DRF, a request with bad credentials gets its 401 whatever its body is.
pub struct Body {
    payload: Payload,
    media: Option<String>,
    declared_length: Option<usize>,
    limit: usize,
}

impl FromRequest for Body {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Body, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let header = |name| {
            req.headers()
                .get(name)
                .map(|v: &header::HeaderValue| String::from_utf8_lossy(v.as_bytes()).to_string())
        };
        std::future::ready(Ok(Body {
            payload: payload.take(),
            media: header(header::CONTENT_TYPE),
            declared_length: header(header::CONTENT_LENGTH).and_then(|v| v.trim().parse().ok()),
            limit: req.app_data::<BodyLimit>().map_or(64 * 1024, |l| l.0),
        }))
    }
}

impl Body {
    /// Reads the body's fields: JSON or a form; an empty body is an empty map, as in DRF.
    pub async fn read(mut self) -> Result<Map<String, Value>, ApiError> {
        if self
            .declared_length
            .is_some_and(|length| length > self.limit)
        {
            return Err(ApiError::PayloadTooLarge(self.limit));
        }
        let mut bytes = web::BytesMut::new();
        while let Some(chunk) = self.payload.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::BadRequest(format!("Could not read the request body: {e}"))
            })?;
            if bytes.len() + chunk.len() > self.limit {
                return Err(ApiError::PayloadTooLarge(self.limit));
            }
            bytes.extend_from_slice(&chunk);
        }
        parse(self.media.as_deref(), &bytes)
    }
}

fn parse(media: Option<&str>, bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let essence = media
        .map(|m| {
            m.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    // As DRF: no content is no data, whatever the declared type.
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    if is_json(&essence) || essence.is_empty() {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| ApiError::JsonParse(e.to_string()))?;
        super::json_guard::check(bytes).map_err(ApiError::JsonParse)?;
        return match value {
            Value::Object(map) => Ok(map),
            other => Err(ApiError::Validation(FieldErrors::one(
                "non_field_errors",
                format!(
                    "Invalid data. Expected a dictionary, but got {}.",
                    python_type(&other)
                ),
            ))),
        };
    }
    if is_form(&essence) {
        let pairs = super::urlencoded::pairs(bytes)
            .map_err(|e| ApiError::BadRequest(format!("Form parse error - {e}")))?;
        let mut map = Map::new();
        for (key, value) in pairs {
            // A repeated key is a list, as a browser sends a multiple select.
            match map.get_mut(&key) {
                Some(Value::Array(items)) => items.push(Value::String(value)),
                Some(existing) => {
                    *existing = Value::Array(vec![existing.take(), Value::String(value)])
                }
                None => {
                    map.insert(key, Value::String(value));
                }
            }
        }
        return Ok(map);
    }
    Err(ApiError::UnsupportedMediaType(
        media.unwrap_or("").to_string(),
    ))
}

fn is_json(essence: &str) -> bool {
    essence == "application/json" || essence.ends_with("+json")
}

fn is_form(essence: &str) -> bool {
    essence == "application/x-www-form-urlencoded"
}

/// The Python type name DRF puts in its messages for a JSON value.
pub fn python_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int",
        Value::Number(_) => "float",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}
