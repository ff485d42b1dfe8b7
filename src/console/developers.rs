//! The console's developer pages, each in the mode shown: API keys (the secret shown once),
//! integrations (a Stripe account and the webhook URL to give Stripe), webhooks (their
//! deliveries with the last answer, a retry, a test event) and the event log.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};
use serde_json::{json, Map, Value};

use super::layout::{
    self, count, filter_actions, filter_choice, filter_input, given, listing, pager, status, table,
    when, Section,
};
use super::payments::actor;
use super::{html, see_other, Posted, Refusal, Signed};
use crate::accounts::keys::{self, KeyView, NewKey};
use crate::accounts::roles::{self, Access, Resource};
use crate::audit::ActorType;
use crate::config::Settings;
use crate::db::{write_tx, Db, DbConnection, Scope};
use crate::error::ApiError;
use crate::events::store::EventFilter;
use crate::http::fields::Presence;
use crate::http::pagination::PageRequest;
use crate::http::{base_url, object_id};
use crate::integrations::domain::IntegrationInput;
use crate::webhooks::domain::WebhookInput;
use crate::{events, integrations, webhooks};

/// The tabs of the developer pages the user may read.
fn tabs(signed: &Signed, here: &str) -> Markup {
    let all = [
        ("API keys", "/dashboard/keys/", Resource::Keys),
        (
            "Integrations",
            "/dashboard/integrations/",
            Resource::Integrations,
        ),
        ("Webhooks", "/dashboard/webhooks/", Resource::Webhooks),
        ("Events", "/dashboard/events/", Resource::Events),
    ];
    html! {
        nav.tabs aria-label="Developer pages" {
            @for (name, href, resource) in all {
                @if signed.may(resource, Access::Read) {
                    a href=(href) aria-current=[(href == here).then_some("page")] { (name) }
                }
            }
        }
    }
}

fn page(signed: &Signed, title: &str, here: &str, code: StatusCode, body: Markup) -> HttpResponse {
    let body = html! { (tabs(signed, here)) (body) };
    html(code, layout::page(signed, title, Section::Developers, body))
}

fn said(notice: Option<&str>, error: Option<&str>) -> Markup {
    html! {
        @if let Some(notice) = notice { p.notice role="status" { (notice) } }
        @if let Some(error) = error { p.error role="alert" { (error) } }
    }
}

/// A one-time secret, with the warning that it is not shown again.
fn secret_once(what: &str, secret: &str) -> Markup {
    html! {
        div.notice role="status" {
            p { strong { (what) " created." } " Copy its secret now: it is not shown again." }
            p.checkout {
                input #new-secret type="text" readonly value=(secret) aria-label="The new secret";
                button.secondary type="button" data-copy="new-secret" hidden { "Copy" }
            }
        }
    }
}

// ---- API keys

/// `GET /dashboard/keys/`.
pub async fn keys(signed: Signed, db: web::Data<Db>) -> Result<HttpResponse, Refusal> {
    keys_page(&signed, &db, StatusCode::OK, html! {}).await
}

async fn keys_page(
    signed: &Signed,
    db: &Db,
    code: StatusCode,
    top: Markup,
) -> Result<HttpResponse, Refusal> {
    let scope = signed.scope().clone();
    let all = db.run(move |conn| keys::list(conn, &scope)).await?;
    let mode = if signed.test_mode() { "test" } else { "live" };
    let may_write = signed.may(Resource::Keys, Access::Write);
    let rows = html! {
        @for k in &all {
            tr {
                td { code { (k.prefix) } }
                td { (if k.name.is_empty() { "–" } else { &k.name }) }
                td { (permissions(k)) }
                td { (when(&k.created)) }
                td { (k.last_used.as_deref().map(when).unwrap_or_else(|| "never".into())) }
                td {
                    @if let Some(revoked) = &k.revoked { "revoked " (when(revoked)) }
                    @else if may_write {
                        form method="post" action={ "/dashboard/keys/" (k.id) "/revoke/" } {
                            (layout::csrf(signed))
                            button.danger type="submit" data-confirm="Revoke this key? It stops working at once." aria-label={ "Revoke " (k.prefix) } { "Revoke" }
                        }
                    } @else { "active" }
                }
            }
        }
    };
    let body = html! {
        h1 { "API keys (" (mode) ")" }
        (top)
        @if all.is_empty() { p { "No keys in this mode yet." } } @else {
            (table("API keys", &["Key", "Name", "Permissions", "Created", "Last used", "State"], rows))
        }
        @if may_write { (new_key_form(signed)) }
    };
    Ok(page(signed, "API keys", "/dashboard/keys/", code, body))
}

fn permissions(k: &KeyView) -> String {
    match &k.permissions {
        None => "everything but members and keys".into(),
        Some(list) => list.join(", "),
    }
}

fn new_key_form(signed: &Signed) -> Markup {
    html! {
        section aria-labelledby="new-key" {
            h2 #new-key { "New key" }
            form.stacked method="post" action="/dashboard/keys/" {
                (layout::csrf(signed))
                div.field {
                    label for="key-name" { "Name" }
                    input #key-name name="name" type="text" maxlength="100" placeholder="What uses it";
                }
                fieldset {
                    legend { "Access: leave every resource at none for a full secret key (sk_…), or choose some for a restricted key (rk_…)" }
                    div.grid {
                        @for resource in Resource::FOR_KEYS {
                            div.field {
                                label for={ "perm-" (resource.as_str()) } { (resource.as_str()) }
                                select id={ "perm-" (resource.as_str()) } name={ "perm_" (resource.as_str()) } {
                                    option value="" { "none" }
                                    option value="read" { "read" }
                                    option value="write" { "write" }
                                }
                            }
                        }
                    }
                }
                button type="submit" { "Create key" }
            }
        }
    }
}

/// `POST /dashboard/keys/`: a full key, or a restricted one with the chosen permissions.
pub async fn create_key(posted: Posted, db: web::Data<Db>) -> Result<HttpResponse, Refusal> {
    let chosen: Vec<String> = Resource::FOR_KEYS
        .iter()
        .filter_map(|r| {
            let access = posted.text(&format!("perm_{}", r.as_str()));
            (!access.is_empty()).then(|| format!("{}:{access}", r.as_str()))
        })
        .collect();
    let permissions = if chosen.is_empty() {
        Ok(None)
    } else {
        roles::parse_permissions(chosen.iter().map(String::as_str)).map(Some)
    };
    let name: String = posted.text("name").chars().take(100).collect();
    let signed = &posted.signed;
    let permissions = match permissions {
        Ok(p) => p,
        Err(message) => {
            let top = said(None, Some(&message));
            return keys_page(signed, &db, StatusCode::BAD_REQUEST, top).await;
        }
    };
    let scope = signed.scope().clone();
    let new = NewKey { permissions, name };
    let made = db
        .write(move |conn| write_tx(conn, |conn| keys::create(conn, &scope, &new)))
        .await?;
    let top = secret_once("Key", made.secret.as_deref().unwrap_or(""));
    keys_page(signed, &db, StatusCode::CREATED, top).await
}

/// `POST /dashboard/keys/{id}/revoke/`.
pub async fn revoke_key(
    posted: Posted,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> Result<HttpResponse, Refusal> {
    let id = object_id(&id)?;
    let scope = posted.signed.scope().clone();
    let revoked = db
        .write(move |conn| write_tx(conn, |conn| keys::revoke(conn, &scope, id)))
        .await?;
    let top = said(Some(&format!("{} is revoked.", revoked.prefix)), None);
    keys_page(&posted.signed, &db, StatusCode::OK, top).await
}

// ---- Integrations

/// `GET /dashboard/integrations/`.
pub async fn integrations(
    req: HttpRequest,
    signed: Signed,
    db: web::Data<Db>,
) -> Result<HttpResponse, Refusal> {
    integrations_page(&req, &signed, &db, StatusCode::OK, html! {}).await
}

async fn integrations_page(
    req: &HttpRequest,
    signed: &Signed,
    db: &Db,
    code: StatusCode,
    top: Markup,
) -> Result<HttpResponse, Refusal> {
    let (scope, base) = (signed.scope().clone(), base_url(req));
    let page_request = PageRequest::new(req, &given(req)?)?;
    let all = db
        .run(move |conn| integrations::operations::list(conn, &scope, &page_request, &base))
        .await?;
    let rows = html! {
        @for i in &all.results {
            tr {
                td { @if i.builtin { (i.name) } @else { a href={ "/dashboard/integrations/" (i.id) "/" } { (i.name) } } }
                td { (i.gateway) }
                td { (if i.enabled { "enabled" } else { "disabled" }) }
                td { @if i.builtin { "built in" } @else { code { (i.webhook_url.as_deref().unwrap_or("–")) } } }
            }
        }
    };
    let body = html! {
        h1 { "Integrations" }
        (top)
        (table("Integrations", &["Name", "Gateway", "State", "Webhook URL for the provider"], rows))
        (pager(&all))
        @if signed.may(Resource::Integrations, Access::Write) {
            section aria-labelledby="new-integration" {
                h2 #new-integration { "Connect a Stripe account" }
                form.stacked method="post" action="/dashboard/integrations/" {
                    (layout::csrf(signed))
                    div.field { label for="int-name" { "Name" } input #int-name name="name" type="text" required maxlength="100"; }
                    div.field { label for="int-secret" { "Secret key (sk_…)" } input #int-secret name="secret_key" type="password" required autocomplete="off"; }
                    div.field { label for="int-publishable" { "Publishable key (pk_…), for the checkout's card form" } input #int-publishable name="publishable_key" type="text" autocomplete="off"; }
                    div.field { label for="int-webhook" { "Webhook signing secret (whsec_…), once Stripe has the URL" } input #int-webhook name="webhook_secret" type="password" autocomplete="off"; }
                    button type="submit" { "Connect" }
                }
            }
        }
    };
    Ok(page(
        signed,
        "Integrations",
        "/dashboard/integrations/",
        code,
        body,
    ))
}

/// `POST /dashboard/integrations/`: a Stripe integration (its credentials checked and sealed
/// as the API does).
pub async fn create_integration(
    req: HttpRequest,
    posted: Posted,
    db: web::Data<Db>,
) -> Result<HttpResponse, Refusal> {
    let credentials: Map<String, Value> = ["secret_key", "publishable_key", "webhook_secret"]
        .into_iter()
        .map(|name| (name.to_string(), posted.text(name)))
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let fields =
        json!({"gateway": "stripe", "name": posted.text("name"), "credentials": credentials});
    let signed = &posted.signed;
    let made = async {
        let input =
            IntegrationInput::parse(fields.as_object().expect("an object"), Presence::Full)?;
        let keyring = crate::secrets::from_request(&req)?;
        let (scope, base) = (signed.scope().clone(), base_url(&req));
        db.write(move |conn| {
            integrations::operations::create(conn, &scope, &input, &keyring, &base)
        })
        .await
    }
    .await;
    match made {
        Ok(view) => Ok(see_other(&format!(
            "/dashboard/integrations/{}/?created=1",
            view.id
        ))),
        Err(err @ (ApiError::Validation(_) | ApiError::BadRequest(_))) => {
            let top = said(None, Some(&err.for_people()));
            integrations_page(&req, signed, &db, StatusCode::BAD_REQUEST, top).await
        }
        Err(err) => Err(err.into()),
    }
}

/// `GET /dashboard/integrations/{id}/`: its masked credentials and its webhook URL.
pub async fn integration(
    req: HttpRequest,
    signed: Signed,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> Result<HttpResponse, Refusal> {
    let id = crate::http::prefixed_id(&id, "int_")?;
    let (scope, base) = (signed.scope().clone(), base_url(&req));
    let i = db
        .run(move |conn| integrations::operations::retrieve(conn, &scope, &id, &base))
        .await?;
    let created = given(&req)?.get("created").is_some();
    let body = html! {
        p.crumbs { a href="/dashboard/integrations/" { "Integrations" } " / " (i.name) }
        h1 { (i.name) }
        @if created { p.notice role="status" { "Connected. Give Stripe the webhook URL below, then add its signing secret." } }
        dl.fields {
            dt { "ID" } dd { code { (i.id) } }
            dt { "Gateway" } dd { (i.gateway) }
            dt { "State" } dd { (if i.enabled { "enabled" } else { "disabled" }) }
            dt { "Webhook URL" } dd.checkout {
                input #webhook-url type="text" readonly value=(i.webhook_url.as_deref().unwrap_or("")) aria-label="Webhook URL";
                button.secondary type="button" data-copy="webhook-url" hidden { "Copy" }
            }
            @for (name, value) in &i.credentials {
                dt { (name) } dd { code { (value.as_str().unwrap_or("")) } }
            }
            dt { "Created" } dd { (i.created.as_deref().map(when).unwrap_or_default()) }
        }
    };
    Ok(page(
        &signed,
        &i.name,
        "/dashboard/integrations/",
        StatusCode::OK,
        body,
    ))
}

// ---- Webhooks

/// `GET /dashboard/webhooks/`.
pub async fn webhooks(
    req: HttpRequest,
    signed: Signed,
    db: web::Data<Db>,
) -> Result<HttpResponse, Refusal> {
    webhooks_page(&req, &signed, &db, StatusCode::OK, html! {}).await
}

async fn webhooks_page(
    req: &HttpRequest,
    signed: &Signed,
    db: &Db,
    code: StatusCode,
    top: Markup,
) -> Result<HttpResponse, Refusal> {
    let params = given(req)?;
    let scope = signed.scope().clone();
    let page_request = PageRequest::new(req, &params)?;
    let all = db
        .run(move |conn| webhooks::operations::list(conn, &scope, &page_request))
        .await?;
    let rows = html! {
        @for w in &all.results {
            tr {
                td { a href={ "/dashboard/webhooks/" (w.id) "/" } { (w.url) } }
                td { (w.events.join(", ")) }
                td { (if w.enabled { "enabled".to_string() } else { format!("disabled{}", w.disabled_reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()) }) }
                td { (when(&w.created)) }
            }
        }
    };
    let body = html! {
        h1 { "Webhooks" }
        (top)
        (count(all.count, "webhook", "webhooks"))
        @if !all.results.is_empty() { (table("Webhooks", &["URL", "Events", "State", "Created"], rows)) }
        (pager(&all))
        @if signed.may(Resource::Webhooks, Access::Write) {
            section aria-labelledby="new-webhook" {
                h2 #new-webhook { "New webhook" }
                form.stacked method="post" action="/dashboard/webhooks/" {
                    (layout::csrf(signed))
                    div.field { label for="wh-url" { "URL (https)" } input #wh-url name="url" type="url" required maxlength="2000"; }
                    div.field {
                        label for="wh-events" { "Events, comma-separated" }
                        input #wh-events name="events" type="text" value="*" aria-describedby="wh-events-hint";
                        small #wh-events-hint { "* for all, payment.* for a kind's, or types such as payment.succeeded" }
                    }
                    div.field { label for="wh-description" { "Description" } input #wh-description name="description" type="text" maxlength="500"; }
                    button type="submit" { "Create webhook" }
                }
            }
        }
    };
    Ok(page(signed, "Webhooks", "/dashboard/webhooks/", code, body))
}

/// `POST /dashboard/webhooks/`: made as the API makes it (the URL checked first); its
/// signing secret is shown once.
pub async fn create_webhook(
    req: HttpRequest,
    posted: Posted,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, Refusal> {
    let events: Vec<Value> = posted
        .text("events")
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| Value::String(e.to_string()))
        .collect();
    let mut fields = json!({"url": posted.text("url"), "events": events});
    let description = posted.text("description");
    if !description.is_empty() {
        fields["description"] = Value::String(description);
    }
    let signed = &posted.signed;
    let made = async {
        let input = WebhookInput::parse(fields.as_object().expect("an object"), Presence::Full)?;
        webhooks::handlers::check_url(&input, &settings).await?;
        let scope = signed.scope().clone();
        db.write(move |conn| webhooks::operations::create(conn, &scope, &input))
            .await
    }
    .await;
    match made {
        Ok(view) => {
            let top = secret_once("Webhook", view.secret.as_deref().unwrap_or(""));
            webhooks_page(&req, signed, &db, StatusCode::CREATED, top).await
        }
        Err(err @ (ApiError::Validation(_) | ApiError::BadRequest(_))) => {
            let top = said(None, Some(&err.for_people()));
            webhooks_page(&req, signed, &db, StatusCode::BAD_REQUEST, top).await
        }
        Err(err) => Err(err.into()),
    }
}

/// `GET /dashboard/webhooks/{id}/`: the webhook and its deliveries, newest first.
pub async fn webhook(
    req: HttpRequest,
    signed: Signed,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> Result<HttpResponse, Refusal> {
    let id = object_id(&id)?;
    let notice = match given(&req)?.get("done") {
        Some("test") => Some("A test event (ping) is on its way."),
        Some("retry") => Some("The delivery is due again now."),
        _ => None,
    };
    webhook_page(&req, &signed, &db, id, notice).await
}

async fn webhook_page(
    req: &HttpRequest,
    signed: &Signed,
    db: &Db,
    id: i64,
    notice: Option<&str>,
) -> Result<HttpResponse, Refusal> {
    let params = given(req)?;
    let page_request = PageRequest::new(req, &params)?;
    let scope = signed.scope().clone();
    let (hook, deliveries) = db
        .run(move |conn| {
            let hook = webhooks::operations::retrieve(conn, &scope, id)?;
            let deliveries = webhooks::operations::deliveries(conn, &scope, id, &page_request)?;
            Ok((hook, deliveries))
        })
        .await?;
    let may_write = signed.may(Resource::Webhooks, Access::Write);
    let rows = html! {
        @for d in &deliveries.results {
            tr {
                td { "#" (d.id) }
                td { a href={ "/dashboard/events/?object_id=" (d.object_id) } { "event " (d.event) } }
                td { (status(&d.status)) }
                td.num { (d.attempts) }
                td { @match (d.last_status, &d.last_error) {
                    (Some(code), _) => { "HTTP " (code) }
                    (None, Some(error)) => { (error) }
                    (None, None) => { "–" }
                } }
                td { (d.last_attempt.as_deref().map(when).unwrap_or_else(|| "–".into())) }
                td {
                    @if may_write && d.status != "succeeded" {
                        form method="post" action={ "/dashboard/webhooks/" (hook.id) "/deliveries/" (d.id) "/retry/" } {
                            (layout::csrf(signed))
                            button.secondary type="submit" aria-label={ "Retry delivery " (d.id) } { "Retry now" }
                        }
                    }
                }
            }
        }
    };
    let body = html! {
        p.crumbs { a href="/dashboard/webhooks/" { "Webhooks" } " / #" (hook.id) }
        h1 { "Webhook #" (hook.id) }
        (said(notice, None))
        dl.fields {
            dt { "URL" } dd { code { (hook.url) } }
            dt { "Events" } dd { (hook.events.join(", ")) }
            dt { "State" } dd { (if hook.enabled { "enabled" } else { "disabled" }) @if let Some(r) = &hook.disabled_reason { " · " (r) } }
            dt { "Description" } dd { (hook.description.as_deref().unwrap_or("–")) }
        }
        @if may_write {
            form.inline method="post" action={ "/dashboard/webhooks/" (hook.id) "/test/" } {
                (layout::csrf(signed))
                button type="submit" { "Send a test event" }
            }
        }
        h2 { "Deliveries" }
        (count(deliveries.count, "delivery", "deliveries"))
        @if !deliveries.results.is_empty() {
            (table("Deliveries", &["Delivery", "Event", "Status", "Attempts", "Last answer", "Last attempt", "Retry"], rows))
        }
        (pager(&deliveries))
    };
    Ok(page(
        signed,
        &format!("Webhook #{id}"),
        "/dashboard/webhooks/",
        StatusCode::OK,
        body,
    ))
}

/// `POST /dashboard/webhooks/{id}/test/`: a `ping` event for it alone.
pub async fn test_webhook(
    posted: Posted,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> Result<HttpResponse, Refusal> {
    let id = object_id(&id)?;
    let scope = posted.signed.scope().clone();
    db.write(move |conn| webhooks::operations::ping(conn, &scope, id))
        .await?;
    Ok(see_other(&format!("/dashboard/webhooks/{id}/?done=test")))
}

/// `POST /dashboard/webhooks/{id}/deliveries/{delivery}/retry/`: due again now.
pub async fn retry_delivery(
    posted: Posted,
    db: web::Data<Db>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Refusal> {
    let (id, delivery) = (object_id(&path.0)?, object_id(&path.1)?);
    let scope = posted.signed.scope().clone();
    db.write(move |conn| webhooks::operations::retry(conn, &scope, id, delivery))
        .await?;
    Ok(see_other(&format!("/dashboard/webhooks/{id}/?done=retry")))
}

// ---- Events

/// `GET /dashboard/events/`: the event log with the API's filters, what the user may read.
pub async fn events(
    req: HttpRequest,
    signed: Signed,
    db: web::Data<Db>,
) -> Result<HttpResponse, Refusal> {
    let readable = signed.auth.readable_objects();
    let list =
        |conn: &mut DbConnection, scope: &Scope, filter: &EventFilter, page: &PageRequest| {
            let n = events::store::count(conn, scope, filter)?;
            page.fetch(n, |offset, limit| {
                events::store::list(conn, scope, filter, offset, limit)
            })
        };
    let (params, (code, page_found, error)) = listing(
        &req,
        &signed,
        &db,
        |params: &crate::http::query::QueryParams| EventFilter::parse(params, readable),
        list,
    )
    .await?;
    let actor_types: Vec<&str> = ActorType::VALUES.iter().map(|a| a.as_str()).collect();
    let objects = signed.auth.readable_objects();
    let rows = |page: &crate::http::pagination::Page<crate::events::EventView>| {
        html! {
            @for e in &page.results {
                tr {
                    td { "#" (e.id) }
                    td { code { (e.event_type) } }
                    td { (object_link(&e.event_type, &e.object_id)) }
                    td { (actor(&e.actor)) }
                    td { code { (e.request_id) } }
                    td { (when(&e.created)) }
                }
            }
        }
    };
    let body = html! {
        h1 { "Events" }
        form.filters method="get" action="/dashboard/events/" role="search" aria-label="Filter events" {
            (filter_input(&params, "type", "Type (payment.succeeded)", "text"))
            (filter_choice(&params, "object_type", "Object", &objects))
            (filter_input(&params, "object_id", "Object id", "text"))
            (filter_choice(&params, "actor_type", "Who", &actor_types))
            (filter_input(&params, "request_id", "Request id", "text"))
            (filter_actions("/dashboard/events/"))
        }
        @if let Some(error) = &error { p.error role="alert" { (error) } }
        @if let Some(found) = &page_found {
            (count(found.count, "event", "events"))
            @if !found.results.is_empty() {
                (table("Events found", &["Event", "Type", "Object", "By", "Request", "At"], rows(found)))
            }
            (pager(found))
        }
    };
    Ok(page(&signed, "Events", "/dashboard/events/", code, body))
}

/// A link to an event's object, where the console has a page for it.
fn object_link(event_type: &str, id: &str) -> Markup {
    let kind = event_type.split('.').next().unwrap_or("");
    let section = match kind {
        "payment" => Some("payments"),
        "customer" => Some("customers"),
        "invoice" => Some("invoices"),
        "webhook" => Some("webhooks"),
        "integration" => Some("integrations"),
        _ => None,
    };
    html! {
        @match section {
            Some(section) => a href={ "/dashboard/" (section) "/" (id) "/" } { (kind) " " (id) },
            None => { (kind) " " (id) }
        }
    }
}
