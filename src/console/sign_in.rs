//! Signing in to the console: with an email and password, or with a one-time link (the
//! first start prints one; `cobro user sign-in-link EMAIL` makes more), and out.
//!
//! An unknown email and a wrong password get the same answer, in about the same time (a
//! password hash is checked either way). Attempts are counted per email and per client
//! address, before anything is looked up: beyond either limit, every attempt (a right
//! password too) gets a 429 until the bucket refills.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::html;

use super::layout;
use super::session::{self, local_next};
use super::{html, see_other, Refusal};
use crate::accounts::{passwords, sessions};
use crate::config::Settings;
use crate::db::Db;
use crate::error::ApiError;
use crate::http::body::Body;
use crate::http::query::QueryParams;
use crate::http::throttle::Throttle;

/// The sign-in rate limits of one server process (app data).
pub struct SignInLimits {
    per_email: Throttle,
    per_address: Throttle,
}

impl SignInLimits {
    /// `per_email` attempts per 15 minutes for one email, `per_address` per minute from one
    /// client address; each may be spent at once.
    pub fn new(per_email: u32, per_address: u32) -> SignInLimits {
        SignInLimits {
            per_email: Throttle::per_period(per_email, 15 * 60),
            per_address: Throttle::per_period(per_address, 60),
        }
    }

    fn check(&self, email: &str, address: &str) -> Result<(), ApiError> {
        self.per_address.check(address)?;
        self.per_email.check(&format!("email:{email}"))
    }
}

/// The sign-in page's messages, chosen by the query (never text from it).
fn notice(params: &QueryParams) -> Option<&'static str> {
    if params.get("expired").is_some() {
        Some("Your session ended after a while without activity. Sign in again.")
    } else if params.get("password_changed").is_some() {
        Some("Your password is changed, and every session of yours has ended. Sign in with the new password.")
    } else if params.get("signed_out").is_some() {
        Some("You are signed out.")
    } else if params.get("link").is_some() {
        Some("That sign-in link has been used or has expired. Sign in with your password, or ask for a new link.")
    } else {
        None
    }
}

/// `GET /dashboard/sign-in/`: the form, or straight on for a browser already signed in.
pub async fn form(req: HttpRequest, db: web::Data<Db>) -> HttpResponse {
    let params = QueryParams::parse(req.query_string()).unwrap_or_default();
    let next = local_next(params.get("next").unwrap_or("/dashboard/")).to_string();
    if let Some(secret) = session::cookie_secret(&req) {
        let lifetimes = session::lifetimes(&req);
        let found = db
            .run(move |conn| Ok(sessions::find(conn, &secret, lifetimes)?))
            .await;
        if let Ok(sessions::Found::Live(_)) = found {
            return see_other(&next);
        }
    }
    html(StatusCode::OK, page(notice(&params), None, "", &next))
}

fn page(notice: Option<&str>, error: Option<&str>, email: &str, next: &str) -> maud::Markup {
    layout::bare(
        "Sign in",
        html! {
            h1 { "Sign in to cobro" }
            @if let Some(notice) = notice { p.notice role="status" { (notice) } }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" action="/dashboard/sign-in/" {
                input type="hidden" name="next" value=(next);
                label for="email" { "Email" }
                input #email type="email" name="email" value=(email) autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
            p.hint { "First time? Use the sign-in link that " code { "cobro serve" } " printed when it created your user, then set a password with " code { "cobro user set-password EMAIL" } "." }
        },
    )
}

/// `POST /dashboard/sign-in/`.
pub async fn submit(
    req: HttpRequest,
    db: web::Data<Db>,
    limits: Option<web::Data<SignInLimits>>,
    body: Body,
) -> Result<HttpResponse, Refusal> {
    if !session::same_origin(&req) {
        return Err(Refusal::Forged);
    }
    let fields = body.read().await?;
    let email = session::field(&fields, "email").to_lowercase();
    let password = fields
        .get("password")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let next = local_next(&session::field(&fields, "next")).to_string();
    let address = req
        .peer_addr()
        .map_or_else(|| "unknown".to_string(), |a| a.ip().to_string());
    if let Some(limits) = &limits {
        if let Err(ApiError::Throttled(wait)) = limits.check(&email, &address) {
            crate::metrics::console_sign_in("throttled");
            let message = format!("Too many sign-in attempts. Wait {wait} seconds and try again.");
            let mut response = html(
                StatusCode::TOO_MANY_REQUESTS,
                page(None, Some(&message), &email, &next),
            );
            response.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from(wait),
            );
            return Ok(response);
        }
    }
    let looking = email.clone();
    let user = db
        .run(move |conn| Ok(passwords::lookup(conn, &looking)?))
        .await?;
    let (user_id, stored) = match user {
        Some((id, stored)) => (Some(id), stored),
        None => (None, None),
    };
    // Off the event loop: a check takes tens of milliseconds, and is made for an unknown
    // email too.
    let matches = web::block(move || passwords::verify(&password, stored.as_deref()))
        .await
        .map_err(ApiError::internal)?;
    let Some(user_id) = user_id.filter(|_| matches) else {
        log::info!("console sign-in refused (from {address})");
        crate::metrics::console_sign_in("refused");
        return Ok(html(
            StatusCode::UNAUTHORIZED,
            page(
                None,
                Some("That email and password do not match."),
                &email,
                &next,
            ),
        ));
    };
    let old = session::cookie_secret(&req);
    let secret = db
        .write(move |conn| Ok(sessions::start(conn, user_id, old.as_deref())?))
        .await?;
    log::info!("console sign-in of user {user_id} (from {address})");
    crate::metrics::console_sign_in("signed_in");
    Ok(signed_in(&req, &secret, &next))
}

/// Sends a browser with a new session on to `next`.
fn signed_in(req: &HttpRequest, secret: &str, next: &str) -> HttpResponse {
    let secure = req
        .app_data::<web::Data<Settings>>()
        .and_then(|s| s.public_url.as_deref())
        .is_some_and(|url| url.starts_with("https://"));
    session::with_cookie(see_other(next), &session::session_cookie(secret, secure))
}

/// `GET /dashboard/sign-in/{link}/`: a one-time link, good once.
pub async fn link(
    req: HttpRequest,
    db: web::Data<Db>,
    link: web::Path<String>,
) -> Result<HttpResponse, Refusal> {
    let link = link.into_inner();
    if link.len() > 100 {
        return Ok(see_other("/dashboard/sign-in/?link=used"));
    }
    let old = session::cookie_secret(&req);
    let secret = db
        .write(move |conn| sessions::redeem_link(conn, &link, old.as_deref()))
        .await?;
    match secret {
        Some(secret) => Ok(signed_in(&req, &secret, "/dashboard/")),
        None => Ok(see_other("/dashboard/sign-in/?link=used")),
    }
}

/// `POST /dashboard/sign-out/`: the session ends here and on the server. It checks its form
/// itself (the CSRF token, the origin) rather than through `Posted`, so that a user who is
/// a member of no workspace any more can still sign out.
pub async fn sign_out(
    req: HttpRequest,
    db: web::Data<Db>,
    body: Body,
) -> Result<HttpResponse, Refusal> {
    let Some(secret) = session::cookie_secret(&req) else {
        return Ok(see_other("/dashboard/sign-in/?signed_out=1"));
    };
    let fields = body.read().await?;
    let expected = session::csrf_token(&secret);
    if !session::same_origin(&req) || !session::carries_token(&fields, &expected) {
        return Err(Refusal::Forged);
    }
    let digest = crate::accounts::digest(&secret);
    db.write(move |conn| Ok(sessions::end_digest(conn, &digest)?))
        .await?;
    Ok(session::with_cookie(
        see_other("/dashboard/sign-in/?signed_out=1"),
        &session::clear_cookie(),
    ))
}
