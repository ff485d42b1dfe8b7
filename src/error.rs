//! One error type for the API, mapped to Django REST Framework's bodies in one place.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::json;

/// Field-level validation errors, in the order the fields were checked:
/// `{"amount": ["This field is required."], "non_field_errors": [...]}`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldErrors(Vec<(String, Vec<String>)>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn one(field: &str, message: impl Into<String>) -> Self {
        let mut errors = Self::new();
        errors.add(field, message);
        errors
    }

    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        match self.0.iter_mut().find(|(name, _)| name == field) {
            Some((_, messages)) => messages.push(message.into()),
            None => self.0.push((field.to_string(), vec![message.into()])),
        }
    }

    /// Every (field, message) pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().flat_map(|(field, messages)| {
            messages.iter().map(move |m| (field.as_str(), m.as_str()))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when empty, otherwise the errors as an API error.
    pub fn into_result(self) -> Result<(), ApiError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self))
        }
    }
}

impl Serialize for FieldErrors {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (field, messages) in &self.0 {
            map.serialize_entry(field, messages)?;
        }
        map.end()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed: {0:?}")]
    Validation(FieldErrors),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("authentication credentials were not provided")]
    NotAuthenticated,
    #[error("authentication failed: {0}")]
    AuthenticationFailed(&'static str),
    #[error("permission denied")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("invalid page")]
    InvalidPage,
    #[error("method {method} not allowed")]
    MethodNotAllowed { method: String, allow: &'static str },
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("request body over {0} bytes")]
    PayloadTooLarge(usize),
    #[error("JSON parse error - {0}")]
    JsonParse(String),
    /// A guarded write lost a race; flows retry on it, and it reaches a client only when
    /// they give up.
    #[error("the object changed while being written")]
    Contention,
    /// A request that conflicts with another (an idempotency key reused or still running).
    #[error("conflict: {detail}")]
    Conflict { code: &'static str, detail: String },
    /// Over the credential's request rate: retry after this many seconds.
    #[error("throttled for {0} s")]
    Throttled(u64),
    /// The database cannot be reached (no connection could be had, or it was lost mid-way):
    /// not a defect of the request, so a 503 to retry. The cause is logged.
    #[error("no database connection: {0}")]
    Unavailable(String),
    /// A payment provider did not answer a call that changes nothing until it does (a new
    /// source's check): a 502 to retry. The cause is logged.
    #[error("the payment provider did not answer: {0}")]
    Provider(String),
    /// Anything unexpected. The cause is logged; the client sees a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError::Internal(cause.to_string())
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        ApiError::Validation(FieldErrors::one(field, message))
    }

    /// What went wrong, in a sentence for a person (a terminal, a console page): each field's
    /// message after its field's name; never an internal cause (those are logged by
    /// [`ApiError::response_builder`]).
    pub fn for_people(&self) -> String {
        match self {
            ApiError::Validation(errors) => errors
                .iter()
                .map(|(field, message)| match field {
                    "non_field_errors" => message.to_string(),
                    _ => format!("{field}: {message}"),
                })
                .collect::<Vec<_>>()
                .join("; "),
            ApiError::BadRequest(message) => message.clone(),
            ApiError::Conflict { detail, .. } => detail.clone(),
            ApiError::Forbidden => "Your role does not allow that.".into(),
            ApiError::NotFound => "Not found.".into(),
            ApiError::Throttled(wait) => format!("Too many requests: wait {wait} s."),
            ApiError::Contention => "It changed at the same moment: try again.".into(),
            ApiError::Provider(_) => "The payment provider did not answer: try again.".into(),
            ApiError::Unavailable(_) => "The database cannot be reached: try again soon.".into(),
            ApiError::Internal(_) => "Something went wrong on our side (it is logged).".into(),
            other => other.to_string(),
        }
    }

    /// The cause on one line (libpq's messages span several).
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        let cause = cause.to_string();
        ApiError::Unavailable(cause.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// Logs the error of a background job that will try again (a worker's loop). An
    /// unreachable database is left to the pool's own lines, counted once a second, instead
    /// of a line per loop and per job.
    pub fn log_for(&self, job: &str) {
        if !matches!(self, ApiError::Unavailable(_)) {
            log::warn!("{job}: {self}");
        }
    }

    /// How many seconds a client should wait before trying again, for the answers that say
    /// so (`Retry-After`): throttled, and the 503s.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Throttled(wait) => Some(*wait),
            ApiError::Contention => Some(1),
            ApiError::Provider(_) => Some(5),
            // A pool retries a lost database every few seconds at most.
            ApiError::Unavailable(_) => Some(UNAVAILABLE_RETRY_SECONDS),
            _ => None,
        }
    }

    /// The status and the headers of this error's answer, shared by both doors (each adds
    /// its own body): `Allow` on a 405, `Retry-After` where a retry is expected. Logs the
    /// causes of 500s and 503s (never shown to the client), each kind apart.
    pub fn response_builder(&self) -> actix_web::HttpResponseBuilder {
        match self {
            ApiError::Internal(cause) => log::error!("500 internal error: {cause}"),
            ApiError::Provider(cause) => log::warn!("502 no answer from the provider: {cause}"),
            ApiError::Unavailable(cause) => outages::note(cause),
            _ => {}
        }
        if matches!(self, ApiError::Unavailable(_) | ApiError::Contention) {
            crate::metrics::unavailable();
        }
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            response.insert_header((header::ALLOW, *allow));
        }
        if let Some(wait) = self.retry_after() {
            response.insert_header((header::RETRY_AFTER, wait.to_string()));
        }
        response
    }
}

/// What a client is told to wait when no database connection can be had: as long as an
/// `Idempotency-Key`'s lease, so that a write cut off by a lost connection, retried with its
/// key, runs again rather than meeting its own claim (a 409).
const UNAVAILABLE_RETRY_SECONDS: u64 = 10;

/// An unreachable database, counted apart from 500s and logged at most once a second (an
/// outage would otherwise write a line per request and per attempt to reconnect).
pub mod outages {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// Occurrences of one kind, and when a line last said so.
    struct Tally {
        total: AtomicU64,
        last_line: Mutex<Option<(Instant, u64)>>,
    }

    impl Tally {
        const fn new() -> Self {
            Tally {
                total: AtomicU64::new(0),
                last_line: Mutex::new(None),
            }
        }

        fn note(&self, what: &str, cause: &str) {
            let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
            let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
            let since = match *last {
                Some((at, _)) if at.elapsed() < Duration::from_secs(1) => return,
                Some((_, logged)) => total - logged,
                None => 1,
            };
            *last = Some((Instant::now(), total));
            log::warn!("{what} ({since} since the last line, {total} since start): {cause}");
        }
    }

    static ANSWERS: Tally = Tally::new();
    static CONNECTS: Tally = Tally::new();

    /// How many requests were answered 503 because the database could not be reached,
    /// since the process started.
    pub fn answered() -> u64 {
        ANSWERS.total.load(Ordering::Relaxed)
    }

    pub(super) fn note(cause: &str) {
        ANSWERS.note("503 no database connection", cause);
    }

    /// The pool's error handler: a failed attempt to open a connection.
    #[derive(Debug)]
    pub struct ConnectFailures;

    impl<E: std::fmt::Display> r2d2::HandleError<E> for ConnectFailures {
        fn handle_error(&self, error: E) {
            // libpq's messages span lines; a log line is one.
            let cause = error
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            CONNECTS.note("cannot connect to the database", &cause);
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    /// A transaction that the database gave up on because of another one (PostgreSQL's
    /// serialization failures and deadlocks, SQLite's lock held past its busy timeout, a
    /// reference to a row deleted meanwhile) is a `Contention`: `write_tx` runs it again.
    /// A connection lost under the query is `Unavailable`. Anything else is internal.
    fn from(err: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match &err {
            Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
                ApiError::Contention
            }
            // What a row referred to was deleted by a concurrent transaction: running again
            // finds it gone and answers so.
            Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => ApiError::Contention,
            // The server went away under the connection (PostgreSQL stopped or restarted).
            // Not run again here: a lost commit's outcome is unknown, and the client's retry
            // with its Idempotency-Key finds out.
            Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => ApiError::unavailable(format!("connection lost: {}", info.message())),
            Error::DatabaseError(_, info)
                if [
                    "deadlock detected",
                    "database is locked",
                    "database table is locked",
                ]
                .iter()
                .any(|m| info.message().contains(m)) =>
            {
                ApiError::Contention
            }
            _ => ApiError::Internal(format!("database: {err}")),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::BadRequest(_) | ApiError::JsonParse(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::NotAuthenticated | ApiError::AuthenticationFailed(_) => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound | ApiError::InvalidPage => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Contention | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Provider(_) => StatusCode::BAD_GATEWAY,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = match self {
            ApiError::Validation(errors) => serde_json::to_value(errors).unwrap_or_default(),
            ApiError::BadRequest(detail) => json!({ "detail": detail }),
            ApiError::NotAuthenticated => {
                json!({ "detail": "Authentication credentials were not provided." })
            }
            ApiError::AuthenticationFailed(detail) => json!({ "detail": detail }),
            ApiError::Forbidden => {
                json!({ "detail": "You do not have permission to perform this action." })
            }
            ApiError::NotFound => json!({ "detail": "Not found." }),
            ApiError::InvalidPage => json!({ "detail": "Invalid page." }),
            ApiError::MethodNotAllowed { method, .. } => {
                json!({ "detail": format!("Method \"{method}\" not allowed.") })
            }
            ApiError::UnsupportedMediaType(media) => {
                json!({ "detail": format!("Unsupported media type \"{media}\" in request.") })
            }
            ApiError::PayloadTooLarge(limit) => {
                json!({ "detail": format!("Request body is too large: the limit is {limit} bytes.") })
            }
            ApiError::JsonParse(cause) => {
                json!({ "detail": format!("JSON parse error - {cause}") })
            }
            // DRF's ServiceUnavailable.
            ApiError::Contention | ApiError::Unavailable(_) => {
                json!({ "detail": "Service temporarily unavailable, try again later." })
            }
            ApiError::Conflict { code, detail } => json!({ "detail": detail, "code": code }),
            ApiError::Throttled(wait) => {
                let unit = if *wait == 1 { "second" } else { "seconds" };
                json!({ "detail": format!("Request was throttled. Expected available in {wait} {unit}.") })
            }
            ApiError::Provider(_) => json!({
                "detail": "The payment provider did not answer; nothing was saved. Try again shortly."
            }),
            ApiError::Internal(_) => json!({ "detail": "A server error occurred." }),
        };
        let mut response = self.response_builder();
        if matches!(
            self,
            ApiError::NotAuthenticated | ApiError::AuthenticationFailed(_)
        ) {
            // As DRF's TokenAuthentication: tells the client which scheme to use.
            response.insert_header((header::WWW_AUTHENTICATE, "Token"));
        }
        response.json(body)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
