//! Webhook flows: each write in one transaction.

use serde::Serialize;
use utoipa::ToSchema;

use super::delivery;
use super::domain::{self, Webhook, WebhookInput, WebhookView};
use super::store::{self, DeliveryRow};
use crate::db::{now, write_tx, DbConnection, Scope};
use crate::error::ApiError;
use crate::events::store as events;
use crate::http::pagination::{Page, PageRequest};
use crate::payments::domain::timestamp;

/// Refuses internal addresses (the handler skips this under `COBRO_WEBHOOK_ALLOW_PRIVATE`).
pub fn check_public_url(url: &str) -> Result<(), ApiError> {
    delivery::check_public(url).map_err(|why| {
        ApiError::field(
            "url",
            format!("Enter a URL of a public address: {why} (see COBRO_WEBHOOK_ALLOW_PRIVATE)."),
        )
    })
}

/// Records a change to a webhook for the audit trail (never its secret); such events are
/// not delivered to webhooks.
pub fn audit(
    conn: &mut DbConnection,
    scope: &Scope,
    kind: &str,
    webhook: &Webhook,
) -> Result<(), ApiError> {
    let view = webhook.view(false);
    crate::events::store::insert(conn, scope, kind, "webhook", &webhook.id.to_string(), &view)?;
    Ok(())
}

pub fn create(
    conn: &mut DbConnection,
    scope: &Scope,
    input: &WebhookInput,
) -> Result<WebhookView, ApiError> {
    let (Some(url), Some(events)) = (&input.url, &input.events) else {
        return Err(ApiError::internal("create without url or events"));
    };
    let at = now();
    let webhook = Webhook {
        id: 0,
        test_mode: scope.test_mode(),
        url: url.clone(),
        events: events.clone(),
        description: input.description.clone().sent().flatten(),
        enabled: input.enabled.unwrap_or(true),
        disabled_reason: None,
        secret: domain::new_secret(),
        failure_status: None,
        failure_streak: 0,
        version: 1,
        created: at,
        updated: at,
    };
    write_tx(conn, |conn| {
        let made = store::insert(conn, scope, &webhook)?;
        audit(conn, scope, "webhook.created", &made)?;
        Ok(made.view(true))
    })
}

pub fn retrieve(conn: &mut DbConnection, scope: &Scope, id: i64) -> Result<WebhookView, ApiError> {
    Ok(store::find(conn, scope, id)?
        .ok_or(ApiError::NotFound)?
        .view(false))
}

pub fn list(
    conn: &mut DbConnection,
    scope: &Scope,
    page: &PageRequest,
) -> Result<Page<WebhookView>, ApiError> {
    let count = store::count(conn, scope)?;
    page.fetch(count, |offset, limit| {
        Ok(store::list(conn, scope, offset, limit)?
            .iter()
            .map(|w| w.view(false))
            .collect())
    })
}

/// PATCH and PUT. Enabling a webhook clears its failures and makes its pending deliveries
/// due at once.
pub fn update(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    input: &WebhookInput,
) -> Result<WebhookView, ApiError> {
    write_tx(conn, |conn| {
        let current = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        let mut next = current.clone();
        if let Some(url) = &input.url {
            next.url = url.clone();
        }
        if let Some(events) = &input.events {
            next.events = events.clone();
        }
        if let Some(description) = input.description.clone().sent() {
            next.description = description;
        }
        if let Some(enabled) = input.enabled {
            next.enabled = enabled;
            next.disabled_reason = None;
            if enabled && !current.enabled {
                next.failure_status = None;
                next.failure_streak = 0;
                store::make_due(conn, scope, id, None, now())?;
            }
        }
        if next == current {
            return Ok(current.view(false));
        }
        next.updated = now();
        if !store::save(conn, scope, &current, &next)? {
            return Err(ApiError::Contention);
        }
        audit(conn, scope, "webhook.updated", &next)?;
        Ok(next.view(false))
    })
}

pub fn delete(conn: &mut DbConnection, scope: &Scope, id: i64) -> Result<(), ApiError> {
    write_tx(conn, |conn| {
        let current = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        if !store::delete(conn, scope, id)? {
            return Err(ApiError::NotFound);
        }
        audit(conn, scope, "webhook.deleted", &current)
    })
}

/// A new secret, shown once; the old one stops signing at once.
pub fn rotate_secret(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
) -> Result<WebhookView, ApiError> {
    write_tx(conn, |conn| {
        let current = store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        let next = Webhook {
            secret: domain::new_secret(),
            updated: now(),
            ..current.clone()
        };
        if !store::save(conn, scope, &current, &next)? {
            return Err(ApiError::Contention);
        }
        audit(conn, scope, "webhook.secret_rotated", &next)?;
        Ok(next.view(true))
    })
}

/// `POST /webhooks/{id}/test/`: a `ping` event, owed to this webhook alone.
pub fn ping(conn: &mut DbConnection, scope: &Scope, id: i64) -> Result<DeliveryView, ApiError> {
    write_tx(conn, |conn| {
        store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
        let at = now();
        let object_id = id.to_string();
        let event_id = events::insert(
            conn,
            scope,
            "ping",
            "webhook",
            &object_id,
            &delivery::ping_data(id),
        )?;
        let delivery_id = store::insert_delivery(conn, scope, id, event_id, &object_id, at)?;
        let row = store::find_delivery(conn, scope, id, delivery_id)?
            .ok_or_else(|| ApiError::internal("the ping delivery vanished"))?;
        Ok(DeliveryView::from(&row))
    })
}

/// One delivery of one event to one webhook, as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookDelivery)]
pub struct DeliveryView {
    pub id: i64,
    pub webhook: i64,
    /// The event's id (`GET /events/{id}/`).
    pub event: i64,
    pub object_id: String,
    /// `pending` (due at `next_attempt`), `succeeded`, or `failed` (given up after 3 days).
    pub status: String,
    pub attempts: i32,
    /// The last answer's HTTP status; null if none came.
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_attempt: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created: String,
}

impl From<&DeliveryRow> for DeliveryView {
    fn from(row: &DeliveryRow) -> Self {
        DeliveryView {
            id: row.id,
            webhook: row.webhook_id,
            event: row.event_id,
            object_id: row.object_id.clone(),
            status: row.status.clone(),
            attempts: row.attempts,
            last_status: row.last_status,
            last_error: row.last_error.clone(),
            last_attempt: row.last_attempt.map(timestamp),
            next_attempt: (row.status == "pending").then(|| timestamp(row.next_attempt)),
            created: timestamp(row.created),
        }
    }
}

pub fn deliveries(
    conn: &mut DbConnection,
    scope: &Scope,
    id: i64,
    page: &PageRequest,
) -> Result<Page<DeliveryView>, ApiError> {
    store::find(conn, scope, id)?.ok_or(ApiError::NotFound)?;
    let count = store::count_deliveries(conn, scope, id)?;
    page.fetch(count, |offset, limit| {
        Ok(store::list_deliveries(conn, scope, id, offset, limit)?
            .iter()
            .map(DeliveryView::from)
            .collect())
    })
}

/// `POST …/deliveries/{id}/retry/`: sends it again now (also one that succeeded or was
/// given up).
pub fn retry(
    conn: &mut DbConnection,
    scope: &Scope,
    webhook_id: i64,
    delivery_id: i64,
) -> Result<DeliveryView, ApiError> {
    write_tx(conn, |conn| {
        store::find_delivery(conn, scope, webhook_id, delivery_id)?.ok_or(ApiError::NotFound)?;
        store::make_due(conn, scope, webhook_id, Some(delivery_id), now())?;
        let row = store::find_delivery(conn, scope, webhook_id, delivery_id)?
            .ok_or(ApiError::NotFound)?;
        Ok(DeliveryView::from(&row))
    })
}
