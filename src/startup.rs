//! Builds the HTTP application and server from settings and a database.

use std::net::TcpListener;
use std::sync::Arc;

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::{web, App, HttpServer};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::audit::Origin;
use crate::config::Settings;
use crate::db::Db;
use crate::http::body::BodyLimit;
use crate::http::request_id;
use crate::http::throttle::Throttle;
use crate::http::{not_found, resource};
use crate::openapi::ApiDoc;
use crate::secrets::Keyring;
use crate::{
    billingrails, checkout, customers, events, health, integrations, invoices, payments, refunds,
    sources, webhooks,
};

/// Every route of the API; shared by the server and the tests' in-process app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(payments::routes)
        .configure(refunds::routes)
        .configure(events::routes)
        .configure(sources::routes)
        .configure(customers::routes)
        .configure(invoices::routes)
        .configure(billingrails::routes)
        .configure(webhooks::routes)
        .configure(integrations::routes)
        .configure(crate::accounts::handlers::routes)
        .configure(checkout::routes)
        .service(resource("/health", "GET").route(web::get().to(health::health)))
        .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", ApiDoc::openapi()))
        // Last: the API's routes are matched first, in the order above.
        .configure(crate::console::routes);
}

/// Starts serving on `listener`. The returned server runs until SIGINT/SIGTERM (graceful:
/// requests in flight finish) unless `handle_signals` is false.
pub fn serve(
    settings: &Settings,
    db: Db,
    listener: TcpListener,
    handle_signals: bool,
) -> std::io::Result<Server> {
    let settings = settings.clone();
    let workers = settings.workers;
    let address = listener.local_addr()?;
    let keyring = web::Data::new(keyring(&settings)?);
    crate::gateways::stripe::configure(&settings.stripe_api_base, &settings.stripe_js_url);
    if settings.reconciler {
        // Runs as long as the process: any number may, on one database.
        let base_url = settings
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{address}"));
        std::mem::forget(crate::payments::reconciler::spawn(
            db.clone(),
            keyring.clone().into_inner(),
            reconciler_settings(&settings, base_url),
        ));
    }
    settle_sandbox_charges(db.clone(), &settings, format!("http://{address}"));
    purge_idempotency_keys(db.clone(), settings.idempotency_ttl_seconds);
    purge_console_sessions(db.clone());
    if settings.metrics_bind.is_some() || settings.metrics_token.is_some() {
        crate::metrics::enable();
    }
    if let Some(bind) = &settings.metrics_bind {
        serve_metrics(db.clone(), bind)?;
    }
    // One per process, shared by its workers.
    let throttle =
        Throttle::new(settings.rate_limit, settings.rate_limit_burst).map(web::Data::new);
    let sign_in_limits = web::Data::new(crate::console::SignInLimits::new(
        settings.sign_in_limit_email,
        settings.sign_in_limit_address,
    ));
    let server = HttpServer::new(move || {
        let mut app = App::new();
        if let Some(throttle) = &throttle {
            app = app.app_data(throttle.clone());
        }
        if settings.metrics_token.is_some() {
            app = app.service(
                resource("/metrics", "GET").route(web::get().to(crate::metrics::scrape_with_token)),
            );
        }
        app.app_data(web::Data::new(db.clone()))
            .app_data(sign_in_limits.clone())
            .app_data(keyring.clone())
            .app_data(web::Data::new(settings.clone()))
            .app_data(BodyLimit(settings.body_limit))
            .configure(configure)
            .default_service(web::to(not_found))
            .wrap(cors(&settings.cors_origins))
            // The request id, and one log line per request (route templates, never paths).
            .wrap(actix_web::middleware::from_fn(request_id::middleware))
    })
    .workers(workers)
    .shutdown_timeout(10)
    .listen(listener)?;
    let server = if handle_signals {
        server
    } else {
        server.disable_signals()
    };
    Ok(server.run())
}

/// `GET /metrics` alone on an address of its own (one worker), for as long as the process.
fn serve_metrics(db: Db, bind: &str) -> std::io::Result<()> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(db.clone()))
            .route("/metrics", web::get().to(crate::metrics::scrape))
    })
    .workers(1)
    .disable_signals()
    .bind(bind)?
    .run();
    log::info!("metrics on http://{bind}/metrics");
    actix_web::rt::spawn(server);
    Ok(())
}

pub fn reconciler_settings(
    settings: &Settings,
    base_url: String,
) -> crate::payments::reconciler::ReconcilerSettings {
    crate::payments::reconciler::ReconcilerSettings {
        after: std::time::Duration::from_secs(settings.reconcile_after_seconds),
        action_timeout: std::time::Duration::from_secs(settings.action_timeout_seconds),
        base_url,
    }
}

/// The server's secret keys (`crate::secrets`); without any, provider credentials cannot be
/// stored, which is said once here and then by each integration refused.
pub fn keyring(settings: &Settings) -> std::io::Result<Keyring> {
    let database =
        crate::db::DatabaseUrl::parse(&settings.database_url).map_err(std::io::Error::other)?;
    let keyring =
        Keyring::load(&settings.secret_keys.0, &database).map_err(std::io::Error::other)?;
    if keyring.current().is_none() {
        log::warn!("COBRO_SECRET_KEY is not set: provider integrations cannot be connected");
    }
    Ok(keyring)
}

/// CORS for browser dashboards: the origins in COBRO_CORS_ORIGINS (`*` for any) and, always,
/// the server's own origin (so the /docs/ page can call the API).
fn cors(origins: &[String]) -> Cors {
    let origins = origins.to_vec();
    Cors::default()
        .allowed_origin_fn(move |origin, head| {
            let origin = origin.to_str().unwrap_or("");
            let same_host = head
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .is_some_and(|host| {
                    origin
                        .split_once("://")
                        .is_some_and(|(_, rest)| rest == host)
                });
            same_host || origins.iter().any(|o| o == "*" || o == origin)
        })
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::HeaderName::from_static("x-simple-workspace"),
            header::HeaderName::from_static("x-piriod-test-mode"),
            header::HeaderName::from_static("idempotency-key"),
        ])
        .max_age(3600)
}

/// Every second, settles the sandbox's asynchronous charges and refunds that are due (test
/// mode).
fn settle_sandbox_charges(db: Db, settings: &Settings, own_url: String) {
    let after = chrono::Duration::seconds(settings.sandbox_settle_seconds as i64);
    let base_url = settings.public_url.clone().unwrap_or(own_url);
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            let base_url = base_url.clone();
            let origin = Arc::new(Origin::job("sandbox"));
            let result = db
                .write(move |conn| {
                    crate::payments::charges::settle_due_sandbox_charges(
                        conn, &origin, after, &base_url,
                    )?;
                    crate::refunds::operations::settle_due_sandbox_refunds(
                        conn, &origin, after, &base_url,
                    )
                })
                .await;
            if let Err(err) = result {
                err.log_for("settling sandbox charges");
            }
        }
    });
}

/// Deletes expired idempotency keys, every minute (or sooner when keys live less long).
fn purge_idempotency_keys(db: Db, ttl_seconds: u64) {
    let every = std::time::Duration::from_secs((ttl_seconds / 2).clamp(1, 60));
    repeat(db, every, "purging idempotency keys", move |conn| {
        crate::idempotency::purge_expired(conn, ttl_seconds).map(drop)
    });
}

/// Deletes console sessions and sign-in links that can no longer be used, every minute.
fn purge_console_sessions(db: Db) {
    let every = std::time::Duration::from_secs(60);
    repeat(db, every, "purging console sessions", |conn| {
        Ok(crate::accounts::sessions::purge_expired(conn).map(drop)?)
    });
}

/// Runs a write `every` so often, for as long as the server runs.
fn repeat(
    db: Db,
    every: std::time::Duration,
    what: &'static str,
    work: impl Fn(&mut crate::db::DbConnection) -> Result<(), crate::error::ApiError>
        + Clone
        + Send
        + 'static,
) {
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(every);
        loop {
            tick.tick().await;
            let work = work.clone();
            if let Err(err) = db.write(move |conn| work(conn)).await {
                err.log_for(what);
            }
        }
    });
}
