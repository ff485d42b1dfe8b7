//! Events: the audit trail of every change, written in the same transaction as the change.
//! They are also the outbox that webhooks deliver from. Each records its actor and request
//! id (`crate::audit`), from the scope it was written in.

pub mod handlers;
pub mod store;

pub use handlers::routes;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// An event as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub id: i64,
    /// `payment.created`, `payment.updated`, `payment.succeeded`, …
    #[serde(rename = "type")]
    #[schema(example = "payment.created")]
    pub event_type: String,
    /// The id of the object that changed, as a string.
    pub object_id: String,
    /// The object as it was right after the change.
    #[schema(value_type = Object)]
    pub data: Value,
    #[schema(value_type = String, format = DateTime)]
    pub created: String,
    pub test_mode: bool,
    /// Who made the change: `{"type": "user", "email"}`, `{"type": "key", "prefix"}`,
    /// `{"type": "checkout"}` (a payer), `{"type": "provider", "integration"}` (a provider's
    /// webhook) or `{"type": "system", "job"}`. Events older than actors show
    /// `{"type": "unknown"}`.
    #[schema(value_type = Object, example = json!({"type": "user", "email": "ana@example.com"}))]
    pub actor: Value,
    /// The request (its `X-Request-Id`) or job run that made the change.
    pub request_id: String,
}
