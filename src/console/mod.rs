//! The merchant console at `/dashboard/`: pages rendered on the server (`maud`), one
//! stylesheet and one small script (`assets/`), every page usable without the script.
//!
//! The console is another door to the same operations as the API: its handlers read and
//! change data only through the functions the API's handlers call, in the signed-in user's
//! scope and with the user as the actor, so that its actions write the same events and obey
//! the same rules. Who may see and do what comes from the API's own table
//! ([`crate::accounts::roles::needed`]), on the route without its `/dashboard` prefix.
//!
//! - [`session`]: the session cookie, the signed-in extractors ([`Signed`], and [`Posted`]
//!   for every state-changing form: it exists only with a valid CSRF token);
//! - [`sign_in`]: passwords, one-time links, sign-out, rate limits;
//! - [`layout`]: the page shell (header with workspace switcher and test-mode toggle);
//! - a module per section: [`overview`], [`payments`], [`customers`] (and invoices),
//!   [`developers`] (keys, integrations, webhooks, events), [`members`] (and the account).

mod customers;
mod developers;
pub mod layout;
mod members;
mod overview;
mod payments;
pub mod session;
mod sign_in;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse, ResponseError};
use maud::Markup;

use crate::error::ApiError;
pub use session::{Posted, Signed};
pub use sign_in::SignInLimits;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // The server's own address opens the console (the API lives under its own paths).
    cfg.service(web::resource("/").route(web::get().to(|| async { see_other("/dashboard/") })))
        .service(page("/dashboard/").route(web::get().to(overview::show)))
        .service(
            page("/dashboard/sign-in/")
                .route(web::get().to(sign_in::form))
                .route(web::post().to(sign_in::submit)),
        )
        .service(page("/dashboard/sign-in/{link}/").route(web::get().to(sign_in::link)))
        .service(page("/dashboard/sign-out/").route(web::post().to(sign_in::sign_out)))
        .service(page("/dashboard/place/").route(web::post().to(session::choose_place)))
        .service(page("/dashboard/payments/").route(web::get().to(payments::list)))
        .service(page("/dashboard/payments/{id}/").route(web::get().to(payments::detail)))
        .service(page("/dashboard/payments/{id}/refund/").route(web::post().to(payments::refund)))
        .service(page("/dashboard/payments/{id}/capture/").route(web::post().to(payments::capture)))
        .service(page("/dashboard/payments/{id}/cancel/").route(web::post().to(payments::cancel)))
        .service(page("/dashboard/customers/").route(web::get().to(customers::list)))
        .service(page("/dashboard/customers/{id}/").route(web::get().to(customers::detail)))
        .service(page("/dashboard/invoices/").route(web::get().to(customers::invoices)))
        .service(page("/dashboard/invoices/{id}/").route(web::get().to(customers::invoice)))
        .service(
            page("/dashboard/keys/")
                .route(web::get().to(developers::keys))
                .route(web::post().to(developers::create_key)),
        )
        .service(page("/dashboard/keys/{id}/revoke/").route(web::post().to(developers::revoke_key)))
        .service(
            page("/dashboard/integrations/")
                .route(web::get().to(developers::integrations))
                .route(web::post().to(developers::create_integration)),
        )
        .service(
            page("/dashboard/integrations/{id}/").route(web::get().to(developers::integration)),
        )
        .service(
            page("/dashboard/webhooks/")
                .route(web::get().to(developers::webhooks))
                .route(web::post().to(developers::create_webhook)),
        )
        .service(page("/dashboard/webhooks/{id}/").route(web::get().to(developers::webhook)))
        .service(
            page("/dashboard/webhooks/{id}/test/").route(web::post().to(developers::test_webhook)),
        )
        .service(
            page("/dashboard/webhooks/{id}/deliveries/{delivery}/retry/")
                .route(web::post().to(developers::retry_delivery)),
        )
        .service(page("/dashboard/events/").route(web::get().to(developers::events)))
        .service(
            page("/dashboard/members/")
                .route(web::get().to(members::list))
                .route(web::post().to(members::invite)),
        )
        .service(page("/dashboard/members/{user}/").route(web::post().to(members::change_role)))
        .service(page("/dashboard/members/{user}/remove/").route(web::post().to(members::remove)))
        .service(
            page("/dashboard/account/")
                .route(web::get().to(members::account))
                .route(web::post().to(members::change_password)),
        )
        .service(web::resource("/dashboard/assets/{file}").route(web::get().to(asset)));
}

/// A console page, at its path with and without the trailing slash (the slashed one is the
/// route's name, which [`session::needs`] reads).
fn page(path: &str) -> actix_web::Resource {
    let trimmed = path.trim_end_matches('/');
    web::resource([path.to_string(), trimmed.to_string()]).default_service(web::to(|| async {
        Refusal::Api(ApiError::NotFound).error_response()
    }))
}

/// What a console page may load: its own stylesheet and script, nothing inline, no frames.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
     img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// An HTML answer with the console's headers.
pub fn html(status: StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(markup.into_string())
}

/// After a form: on to `location` (a GET: reloading it does not post again).
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

async fn asset(file: web::Path<String>) -> HttpResponse {
    let (body, kind) = match file.as_str() {
        "console.css" => (include_str!("assets/console.css"), "text/css"),
        "console.js" => (include_str!("assets/console.js"), "text/javascript"),
        _ => return Refusal::Api(ApiError::NotFound).error_response(),
    };
    HttpResponse::Ok()
        .content_type(format!("{kind}; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

/// Why a console request gets no page of its own.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No session (or an ended one): to the sign-in page, then back to `next`.
    #[error("sign in first")]
    SignIn { next: String, expired: bool },
    /// A form without its CSRF token, with another session's, or posted from another site.
    #[error("a forged or stale form")]
    Forged,
    /// Signed in, but a member of no workspace (the page can still sign out, with `csrf`).
    #[error("no workspace")]
    NoWorkspace { csrf: String },
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl ResponseError for Refusal {
    fn status_code(&self) -> StatusCode {
        match self {
            Refusal::SignIn { .. } => StatusCode::SEE_OTHER,
            Refusal::Forged | Refusal::NoWorkspace { .. } => StatusCode::FORBIDDEN,
            Refusal::Api(err) => err.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Refusal::SignIn { next, expired } => {
                let mut to = format!("/dashboard/sign-in/?next={}", layout::query_value(next));
                if *expired {
                    to.push_str("&expired=1");
                }
                // A stale cookie goes, so that the browser stops sending it.
                session::with_cookie(see_other(&to), &session::clear_cookie())
            }
            Refusal::Forged => html(
                StatusCode::FORBIDDEN,
                layout::problem(
                    "This form has expired",
                    "Nothing was changed. Go back, reload the page and try again.",
                ),
            ),
            Refusal::NoWorkspace { csrf } => html(
                StatusCode::FORBIDDEN,
                layout::bare(
                    "No workspace yet",
                    maud::html! {
                        h1 { "No workspace yet" }
                        p role="alert" { "You are signed in, but not a member of any workspace: ask an owner to add you." }
                        form method="post" action="/dashboard/sign-out/" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Sign out" }
                        }
                    },
                ),
            ),
            Refusal::Api(err) => {
                let (title, message) = match err {
                    ApiError::NotFound | ApiError::InvalidPage => (
                        "Not found",
                        "There is nothing here, or not in this workspace and mode.".to_string(),
                    ),
                    ApiError::Forbidden => (
                        "Not allowed",
                        "Your role in this workspace does not allow this.".to_string(),
                    ),
                    other => ("That did not work", other.for_people()),
                };
                // Logs the cause of a 500 or a 503 and counts it, as for the API.
                drop(err.response_builder());
                let mut response = html(err.status_code(), layout::problem(title, &message));
                if let Some(wait) = err.retry_after() {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, header::HeaderValue::from(wait));
                }
                response
            }
        }
    }
}
