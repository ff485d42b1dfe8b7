//! Events: the audit trail of every change, written in the same transaction as the change.
//! They are also the outbox that webhooks will deliver from.

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
}
