//! The OpenAPI description (`GET /openapi.json`) and the shapes that exist only to document
//! it. Every route's handler carries its own `#[utoipa::path]`; list it in `paths` here.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, ToSchema};

use crate::events::EventView;
use crate::payments::domain::PaymentView;
use crate::payments::status::PaymentStatus;

#[derive(OpenApi)]
#[openapi(
    info(title = "cobro", description = "A payments API compatible with Piriod's REST API."),
    paths(
        crate::payments::handlers::create,
        crate::payments::handlers::list,
        crate::payments::handlers::retrieve,
        crate::payments::handlers::update,
        crate::payments::handlers::partial_update,
        crate::payments::handlers::destroy,
        crate::payments::handlers::cancel,
        crate::payments::handlers::authorize,
        crate::payments::handlers::capture,
        crate::payments::handlers::settle,
        crate::payments::handlers::attempts,
        crate::refunds::handlers::create,
        crate::refunds::handlers::refund_payment,
        crate::refunds::handlers::list,
        crate::refunds::handlers::retrieve,
        crate::refunds::handlers::partial_update,
        crate::refunds::handlers::cancel,
        crate::refunds::handlers::settle,
        crate::events::handlers::list,
        crate::events::handlers::retrieve,
        crate::sources::handlers::create,
        crate::sources::handlers::list,
        crate::sources::handlers::retrieve,
        crate::sources::handlers::destroy,
        crate::health::health,
        crate::customers::handlers::create,
        crate::customers::handlers::list,
        crate::customers::handlers::retrieve,
        crate::customers::handlers::replace,
        crate::customers::handlers::partial_update,
        crate::customers::handlers::destroy,
        crate::invoices::handlers::create,
        crate::invoices::handlers::list,
        crate::invoices::handlers::retrieve,
        crate::invoices::handlers::replace,
        crate::invoices::handlers::partial_update,
        crate::invoices::handlers::destroy,
        crate::invoices::handlers::finalize,
        crate::invoices::handlers::cancel,
        crate::invoices::handlers::mark_uncollectible,
        crate::webhooks::handlers::create,
        crate::webhooks::handlers::list,
        crate::webhooks::handlers::retrieve,
        crate::webhooks::handlers::replace,
        crate::webhooks::handlers::partial_update,
        crate::webhooks::handlers::destroy,
        crate::webhooks::handlers::rotate_secret,
        crate::webhooks::handlers::test,
        crate::webhooks::handlers::deliveries,
        crate::webhooks::handlers::retry,
        crate::integrations::handlers::create,
        crate::integrations::handlers::list,
        crate::integrations::handlers::retrieve,
        crate::integrations::handlers::partial_update,
        crate::integrations::handlers::destroy,
        crate::integrations::handlers::webhook,
        crate::accounts::handlers::list_members,
        crate::accounts::handlers::add_member,
        crate::accounts::handlers::retrieve_member,
        crate::accounts::handlers::update_member,
        crate::accounts::handlers::remove_member,
        crate::accounts::handlers::list_keys,
        crate::accounts::handlers::create_key,
        crate::accounts::handlers::retrieve_key,
        crate::accounts::handlers::revoke_key,
    ),
    components(schemas(PaymentView, crate::accounts::payer::PayerView, PaymentWrite, PaymentStatus, EventView, ErrorDetail, ValidationErrors, ErrorBody, IdempotencyConflict, crate::health::Health)),
    modifiers(&Security),
    security(("token" = [])),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Token <user token>` (with x-simple-workspace), or `Token sk_…` / `Bearer sk_…` (a workspace secret key).",
            ))),
        );
    }
}

/// `{"detail": "…"}`: every error that belongs to no field.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    pub detail: String,
}

/// A 400 with a list of messages per field, and `non_field_errors` for the rest.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"amount": ["This field is required."]}))]
pub struct ValidationErrors(pub BTreeMap<String, Vec<String>>);

/// A 400: messages per field, or a `detail` (malformed JSON, a refused delete).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ErrorBody {
    Fields(ValidationErrors),
    Detail(ErrorDetail),
}

/// The errors any authenticated route can answer, besides its own.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ScopedErrors {
    /// Invalid fields, filters or headers, or a refused change.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No credentials, or unknown ones.
    #[response(status = 401)]
    Unauthorized(ErrorDetail),
    /// Not a member of the workspace, or headers that contradict a secret key.
    #[response(status = 403)]
    Forbidden(ErrorDetail),
    /// Not in this workspace and mode, or a page past the end ("Invalid page.").
    #[response(status = 404)]
    NotFound(ErrorDetail),
    /// A body over the size limit.
    #[response(status = 413)]
    PayloadTooLarge(ErrorDetail),
    /// A body that is neither JSON nor a form.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorDetail),
    /// Over the credential's request rate; retry after `Retry-After` seconds.
    #[response(status = 429)]
    TooManyRequests(ErrorDetail),
    /// The object kept changing under concurrent writes; retry.
    #[response(status = 503)]
    Unavailable(ErrorDetail),
}

/// What a POST with an `Idempotency-Key` may answer besides the rest.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum IdempotencyErrors {
    /// The key was used for another path or other fields, or its first request still runs.
    #[response(status = 409)]
    Conflict(IdempotencyConflict),
}

/// `{"detail": "…", "code": "idempotency_error"}`.
#[derive(Serialize, ToSchema)]
pub struct IdempotencyConflict {
    pub detail: String,
    pub code: String,
}

/// The writable fields of an integration. Create requires gateway, name and credentials;
/// PATCH takes name, enabled and credentials (those given replace their namesakes).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct IntegrationWrite {
    /// `stripe`.
    gateway: String,
    /// Not blank; at most 100 characters.
    name: String,
    /// Default true.
    enabled: Option<bool>,
    /// Stripe: `secret_key` (`sk_test_…`/`rk_test_…` in test mode, `sk_live_…`/`rk_live_…`
    /// in live mode) and `webhook_secret` (`whsec_…`).
    #[schema(value_type = Object)]
    credentials: serde_json::Value,
}

/// The writable fields of a customer. Create and PUT require name.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct CustomerWrite {
    /// Not blank; at most 256 characters.
    name: String,
    /// A valid address; stored in lower case.
    email: Option<String>,
    /// At most 64 characters.
    tax_id: Option<String>,
    /// ISO 3166-1 alpha-2.
    country: Option<String>,
    status: Option<crate::customers::domain::CustomerStatus>,
    #[schema(value_type = Object)]
    metadata: Option<serde_json::Value>,
}

/// Filters of `GET /customers/`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct CustomerListParams {
    page: Option<i64>,
    page_size: Option<i64>,
    /// Exact (any case).
    email: Option<String>,
    /// Part of the name (any case).
    name: Option<String>,
    country: Option<String>,
    tax_id: Option<String>,
    status: Option<crate::customers::domain::CustomerStatus>,
    /// Part of the name, email or tax id (any case).
    search: Option<String>,
}

/// The writable fields of an invoice. Create and PUT require customer, currency, due_date
/// and lines; only a draft can change them.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct InvoiceWrite {
    /// `cus_…` of the same workspace and mode.
    customer: String,
    /// ISO 4217.
    currency: String,
    #[schema(format = Date)]
    due_date: String,
    /// At most 100: `{"name", "quantity" (1 by default), "amount"}` (the unit price;
    /// `unit_amount` is its alias).
    lines: Vec<InvoiceLineWrite>,
    description: Option<String>,
    #[schema(value_type = Object)]
    metadata: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct InvoiceLineWrite {
    name: String,
    quantity: Option<i64>,
    /// The unit price, in the invoice's currency, ≥ 0.
    amount: Option<f64>,
    /// An alias of `amount`.
    unit_amount: Option<f64>,
}

/// Filters of `GET /invoices/`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct InvoiceListParams {
    page: Option<i64>,
    page_size: Option<i64>,
    customer: Option<String>,
    status: Option<crate::invoices::domain::InvoiceStatus>,
    currency: Option<String>,
}

/// The writable fields of a webhook. Create and PUT require url and events.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct WebhookWrite {
    /// Where deliveries are POSTed: http(s), and public unless COBRO_WEBHOOK_ALLOW_PRIVATE.
    url: String,
    /// Event types (`payment.succeeded`), a kind's events (`payment.*`), or `*`.
    events: Vec<String>,
    description: Option<String>,
    /// False stops deliveries; true (re)starts them, with what was missed while failing.
    enabled: Option<bool>,
}

/// The header that makes a POST safe to retry (API.md §6).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyHeader {
    /// Up to 255 characters, unique per request (a UUID). A retry with the same key, path
    /// and fields gets the first answer again (with `Idempotent-Replayed: true`) instead of
    /// running again. Kept 24 hours.
    #[param(rename = "Idempotency-Key", required = false, value_type = String, min_length = 1, max_length = 255, pattern = "^[!-~]([ -~]*[!-~])?$")]
    key: Option<String>,
}

/// The request's workspace and mode (not needed with a workspace secret key).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct ScopeHeaders {
    /// The workspace the request acts in (`acc_…`).
    #[param(rename = "x-simple-workspace", required = false, value_type = String)]
    workspace: Option<String>,
    /// Test-mode data when true (`true`/`false`/`1`/`0`, any case). Default false.
    #[param(rename = "x-piriod-test-mode", required = false, value_type = String, pattern = "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|1|0)$")]
    test_mode: Option<String>,
}

/// The writable fields of a payment. Create and PUT require amount, currency, date and
/// description; PATCH takes any of them.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct PaymentWrite {
    /// > 0, with no more decimal places than the currency has. A number or a numeric string.
    #[schema(value_type = f64, example = 10.5)]
    amount: Option<String>,
    /// An ISO 4217 code (lower case accepted).
    #[schema(example = "USD")]
    currency: Option<String>,
    date: Option<chrono::NaiveDate>,
    #[schema(max_length = 256)]
    description: Option<String>,
    invoice: Option<String>,
    subscription: Option<String>,
    customer: Option<String>,
    #[schema(format = DateTime)]
    payment_date: Option<String>,
    source: Option<i64>,
    sources: Option<Vec<i64>>,
    /// On create: requires_payment_method, processing or succeeded. On update: a move.
    status: Option<PaymentStatus>,
    /// With a move to `failed`: the reason code.
    failed_reason: Option<String>,
    /// With a move to `incomplete`: the amount received by this partial collection.
    #[schema(value_type = Option<f64>)]
    amount_collected: Option<String>,
    return_url: Option<String>,
    enable_checkout: Option<bool>,
    /// At most 50 keys of at most 40 characters; values strings (≤ 500), numbers or booleans.
    /// In PATCH keys merge, and a key sent as null or "" is removed.
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
}

/// Filters of `GET /payments/`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, non_snake_case)]
pub struct PaymentListParams {
    page: Option<i64>,
    /// Default 20, at most 100.
    page_size: Option<i64>,
    status: Option<PaymentStatus>,
    /// Comma-separated statuses.
    status__in: Option<String>,
    customer: Option<String>,
    invoice: Option<String>,
    subscription: Option<String>,
    currency: Option<String>,
    source: Option<i64>,
    #[param(value_type = Option<f64>)]
    amount__gte: Option<String>,
    #[param(value_type = Option<f64>)]
    amount__lte: Option<String>,
    date__gte: Option<chrono::NaiveDate>,
    date__lte: Option<chrono::NaiveDate>,
    created__gte: Option<String>,
    created__lte: Option<String>,
    payment_date__gte: Option<String>,
    payment_date__lte: Option<String>,
    /// Case-insensitive match in the description.
    search: Option<String>,
    /// created, date, payment_date, amount or id, each optionally with `-`. Default -created.
    ordering: Option<String>,
}

/// A new source. `gateway` is required: `sandbox` (test mode, with a test token in
/// `gateway_data.token`) or `bank_transfer`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct SourceWrite {
    #[schema(example = "sandbox")]
    gateway: String,
    usage: Option<crate::sources::domain::Usage>,
    customer: Option<String>,
    /// What the source pays, in the payment's currency; default: the payment's balance.
    #[schema(value_type = Option<f64>)]
    amount: Option<String>,
    description: Option<String>,
    return_url: Option<String>,
    #[schema(value_type = Option<Object>, example = json!({"token": "tok_visa"}))]
    gateway_data: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
    /// Without credentials (a payer's browser): the checkout key of the payment it is for.
    checkout: Option<String>,
}

/// `POST /payments/{id}/authorize/`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct AuthorizeWrite {
    /// A chargeable source of the same workspace and mode.
    source: i64,
    /// Without credentials (from the checkout page): the payment's checkout key.
    checkout: Option<String>,
    /// False: authorize and hold the amount, for a later `capture` (merchants only).
    capture: Option<bool>,
}

/// `POST /payments/{id}/capture/`: how much of what is held (default: all of it).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct CaptureWrite {
    /// In the payment's currency, more than 0 and at most what is held.
    #[schema(value_type = Option<f64>)]
    amount: Option<String>,
}

/// Filters of `GET /sources/`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SourceListParams {
    page: Option<i64>,
    page_size: Option<i64>,
    customer: Option<String>,
    gateway: Option<String>,
    usage: Option<crate::sources::domain::Usage>,
    status: Option<crate::sources::domain::SourceStatus>,
}

/// Filters of `GET /events/`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct EventListParams {
    page: Option<i64>,
    page_size: Option<i64>,
    /// An event type, e.g. `payment.succeeded`.
    #[param(rename = "type")]
    event_type: Option<String>,
    object_id: Option<String>,
    /// `payment` or `source` (their ids may be equal).
    object_type: Option<String>,
    /// Who made the change: `user`, `key`, `checkout`, `provider` or `system`.
    actor_type: Option<String>,
    /// The `X-Request-Id` of the request (or the id of the job run) that made the change.
    request_id: Option<String>,
}

/// A new refund: `payment` (on `POST /refunds/`; the path names it on
/// `POST /payments/{id}/refund/`) and, optionally, how much (default: all that is left).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct RefundWrite {
    /// The payment's id (only on `POST /refunds/`).
    payment: Option<i64>,
    /// In the payment's currency, more than 0 and at most what is left to refund.
    #[schema(value_type = Option<f64>)]
    amount: Option<String>,
    reason: Option<crate::refunds::domain::RefundReason>,
    #[schema(value_type = Object)]
    metadata: Option<serde_json::Value>,
}

/// A member to add (`email` of an existing user, `role`), or a member's new `role`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct MemberWrite {
    /// Only when adding.
    email: Option<String>,
    /// `owner`, `admin`, `developer` (the default) or `viewer`.
    #[schema(value_type = Option<String>, example = "viewer")]
    role: Option<crate::accounts::roles::Role>,
}

/// A new key for the request's mode: a name and, for a restricted key, its permissions.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct KeyWrite {
    name: Option<String>,
    /// `resource:read` or `resource:write` for payments, sources, customers, invoices,
    /// refunds, events, webhooks, integrations; absent or null for a full secret key.
    #[schema(example = json!(["payments:write", "refunds:read"]))]
    permissions: Option<Vec<String>>,
}

/// A refund's change: metadata (merged), and for a refund the merchant sends back itself (a
/// bank transfer) its end: `succeeded`, or `failed` with `failed_reason`; or `cancelled`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct RefundPatch {
    #[schema(value_type = Object)]
    metadata: Option<serde_json::Value>,
    status: Option<crate::refunds::domain::RefundStatus>,
    failed_reason: Option<String>,
}

/// Filters of `GET /refunds/`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, non_snake_case)]
pub struct RefundListParams {
    page: Option<i64>,
    /// Default 20, at most 100.
    page_size: Option<i64>,
    payment: Option<i64>,
    status: Option<crate::refunds::domain::RefundStatus>,
    created__gte: Option<String>,
    created__lte: Option<String>,
    /// created, amount or id, each optionally with `-`. Default -created.
    ordering: Option<String>,
}
