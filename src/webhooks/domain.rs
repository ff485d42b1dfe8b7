//! Webhooks as values: the endpoint, what a create or update body asks for, which events it
//! subscribes to, and when a failed delivery is tried again.

use chrono::{Duration, NaiveDateTime};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::http::fields::{Given, Presence, Reader};
use crate::payments::domain::timestamp;

/// Event types a webhook may name (besides `*` and `<kind>.*`).
pub const EVENT_KINDS: [&str; 6] = [
    "payment",
    "source",
    "customer",
    "invoice",
    "refund",
    "integration",
];
/// Consecutive failures with one status after which the server disables a webhook.
pub const DISABLE_AFTER: i32 = 3;
/// How long a delivery is retried before it is given up.
pub const GIVE_UP_AFTER: Duration = Duration::days(3);

#[derive(Clone, Debug, PartialEq)]
pub struct Webhook {
    pub id: i64,
    pub test_mode: bool,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub secret: String,
    pub failure_status: Option<i32>,
    pub failure_streak: i32,
    pub version: i64,
    pub created: NaiveDateTime,
    pub updated: NaiveDateTime,
}

/// A webhook as the API shows it; the secret only on create and rotation.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Webhook)]
pub struct WebhookView {
    pub id: i64,
    pub url: String,
    /// Event types (`payment.succeeded`), a kind's every event (`payment.*`), or `*`.
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why the server disabled it (repeated failures); null otherwise.
    pub disabled_reason: Option<String>,
    /// `whsecret_…`: shown when created and when rotated, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub test_mode: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created: String,
    #[schema(value_type = String, format = DateTime)]
    pub updated: String,
}

impl Webhook {
    pub fn view(&self, with_secret: bool) -> WebhookView {
        WebhookView {
            id: self.id,
            url: self.url.clone(),
            events: self.events.clone(),
            description: self.description.clone(),
            enabled: self.enabled,
            disabled_reason: self.disabled_reason.clone(),
            secret: with_secret.then(|| self.secret.clone()),
            test_mode: self.test_mode,
            created: timestamp(self.created),
            updated: timestamp(self.updated),
        }
    }
}

pub fn subscribes(patterns: &[String], event_type: &str) -> bool {
    patterns.iter().any(|p| {
        p == "*"
            || p == event_type
            || p.strip_suffix(".*").is_some_and(|kind| {
                event_type
                    .strip_prefix(kind)
                    .is_some_and(|rest| rest.starts_with('.'))
            })
    })
}

pub fn new_secret() -> String {
    crate::accounts::new_id("whsecret_") + &crate::accounts::new_id("")
}

/// The fields of a create (all of `url` and `events` required) or an update (any).
#[derive(Default)]
pub struct WebhookInput {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Given<String>,
    pub enabled: Option<bool>,
}

impl WebhookInput {
    pub fn parse(body: &Map<String, Value>, presence: Presence) -> Result<Self, ApiError> {
        let mut r = Reader::new(body, presence);
        r.require("url");
        r.require("events");
        let url = match r.url("url", 2000) {
            Given::Value(url) => Some(url),
            Given::Null => {
                r.errors.add("url", crate::http::fields::NOT_NULL);
                None
            }
            Given::Absent => None,
        };
        let events = match r.raw("events") {
            None => None,
            Some(value) => match event_patterns(value) {
                Ok(events) => Some(events),
                Err(message) => {
                    r.errors.add("events", message);
                    None
                }
            },
        };
        let description = r.string("description", false, true, 500);
        let enabled = r.boolean("enabled");
        r.finish().into_result()?;
        Ok(WebhookInput {
            url,
            events,
            description,
            enabled,
        })
    }
}

fn event_patterns(value: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "Expected a list of items but got type \"{}\".",
            crate::http::body::python_type(value)
        ));
    };
    if items.is_empty() {
        return Err("This list may not be empty.".into());
    }
    let mut events = Vec::new();
    for item in items {
        let Some(text) = item.as_str().map(str::trim) else {
            return Err("Not a valid string.".into());
        };
        let known = text == "*"
            || text == "ping"
            || text.split_once('.').is_some_and(|(kind, what)| {
                EVENT_KINDS.contains(&kind)
                    && !what.is_empty()
                    && what
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_' || c == '*')
                    && (what == "*" || !what.contains('*'))
            });
        if !known {
            return Err(format!("\"{text}\" is not a valid event type."));
        }
        if !events.iter().any(|e| e == text) {
            events.push(text.to_string());
        }
    }
    Ok(events)
}

/// When to try a delivery again after its `attempts`-th failure: `first_ms` (30 s by
/// default) doubling each time up to 6 hours, each wait spread by ±20 % so that many
/// failures do not come back together. About 20 attempts fit in the 3 days.
pub fn next_attempt(after: NaiveDateTime, attempts: i32, first_ms: u64) -> NaiveDateTime {
    let doubled = (first_ms as i64).saturating_mul(1 << attempts.clamp(1, 30).saturating_sub(1));
    let wait = doubled.min(6 * 3600 * 1000);
    let spread = rand::random_range(0.8..1.2);
    after + Duration::milliseconds((wait as f64 * spread) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_kinds_and_types() {
        let p = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(subscribes(&p(&["*"]), "payment.created"));
        assert!(subscribes(&p(&["payment.*"]), "payment.succeeded"));
        assert!(!subscribes(&p(&["payment.*"]), "source.created"));
        assert!(!subscribes(&p(&["pay.*"]), "payment.created"));
        assert!(subscribes(
            &p(&["source.created", "payment.failed"]),
            "payment.failed"
        ));
        assert!(!subscribes(&p(&["payment.failed"]), "payment.succeeded"));
    }

    #[test]
    fn retries_back_off_to_six_hours_and_fit_three_days() {
        let start = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        let first = next_attempt(start, 1, 30_000) - start;
        assert!(first >= Duration::seconds(24) && first <= Duration::seconds(36));
        let late = next_attempt(start, 30, 30_000) - start;
        assert!(late <= Duration::hours(8) && late >= Duration::hours(4));
        let mut at = start;
        let mut attempts = 0;
        while at - start < GIVE_UP_AFTER {
            attempts += 1;
            at = next_attempt(at, attempts, 30_000);
        }
        assert!((15..=30).contains(&attempts), "{attempts}");
    }
}
