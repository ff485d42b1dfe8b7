//! The request body as DRF reads it: JSON or a form, as a map of fields, under a size limit.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::error::{ApiError, FieldErrors};

/// The largest request body accepted, in bytes (app data; 64 KiB unless configured).
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// A request body's fields. An empty body is an empty map, as in DRF.
#[derive(Debug, Default)]
pub struct Body(pub Map<String, Value>);

impl FromRequest for Body {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Body, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req.app_data::<BodyLimit>().map_or(64 * 1024, |l| l.0);
        let media = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string());
        let declared_length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if declared_length.is_some_and(|length| length > limit) {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            let mut bytes = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| {
                    ApiError::BadRequest(format!("Could not read the request body: {e}"))
                })?;
                if bytes.len() + chunk.len() > limit {
                    return Err(ApiError::PayloadTooLarge(limit));
                }
                bytes.extend_from_slice(&chunk);
            }
            parse(media.as_deref(), &bytes).map(Body)
        })
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
    if bytes.iter().all(u8::is_ascii_whitespace)
        && (essence.is_empty() || is_json(&essence) || is_form(&essence))
    {
        return Ok(Map::new());
    }
    if is_json(&essence) || essence.is_empty() {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| ApiError::JsonParse(e.to_string()))?;
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
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(bytes)
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
