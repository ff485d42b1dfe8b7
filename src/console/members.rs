//! Members (for owners and admins to change; everyone else may look): add by email,
//! change a role, remove; the owner rules are the API's (`accounts::members`). And the
//! signed-in user's own account: a new password, which ends every session of theirs.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use maud::{html, Markup};

use super::layout::{self, table, when, Section};
use super::{html, see_other, Posted, Refusal, Signed};
use crate::accounts::members::{self, MemberView};
use crate::accounts::passwords::{self, Password};
use crate::accounts::roles::{Access, Resource, Role};
use crate::accounts::Principal;
use crate::db::Db;
use crate::error::ApiError;
use crate::http::object_id;

/// `GET /dashboard/members/`.
pub async fn list(signed: Signed, db: web::Data<Db>) -> Result<HttpResponse, Refusal> {
    members_page(&signed, &db, StatusCode::OK, html! {}).await
}

async fn members_page(
    signed: &Signed,
    db: &Db,
    code: StatusCode,
    top: Markup,
) -> Result<HttpResponse, Refusal> {
    let scope = signed.scope().clone();
    let all = db.run(move |conn| members::list(conn, &scope)).await?;
    let may_write = signed.may(Resource::Members, Access::Write);
    let rows = html! { @for m in &all { (row(signed, m, may_write)) } };
    let body = html! {
        h1 { "Members of " (signed.workspace.name) }
        (top)
        (table("Members", &["Email", "Role", "Since", "Remove"], rows))
        @if may_write {
            section aria-labelledby="invite" {
                h2 #invite { "Add a member by email" }
                p.hint { "They need a user of their own first: " code { "cobro user create EMAIL --password" } "." }
                form.stacked method="post" action="/dashboard/members/" {
                    (layout::csrf(signed))
                    div.field { label for="invite-email" { "Email" } input #invite-email name="email" type="email" required maxlength="254"; }
                    div.field { label for="invite-role" { "Role" } (role_select("invite-role", Role::Developer)) }
                    button type="submit" { "Add member" }
                }
            }
        }
    };
    Ok(html(
        code,
        layout::page(signed, "Members", Section::Members, body),
    ))
}

fn role_select(id: &str, chosen: Role) -> Markup {
    html! {
        select id=(id) name="role" {
            @for role in Role::VALUES {
                option value=(role.as_str()) selected[*role == chosen] { (role.as_str()) }
            }
        }
    }
}

fn row(signed: &Signed, m: &MemberView, may_write: bool) -> Markup {
    let me = matches!(&signed.auth.principal, Principal::User { id, .. } if *id == m.user);
    html! {
        tr {
            td { (m.email) @if me { " (you)" } }
            td {
                @if may_write {
                    form.inline method="post" action={ "/dashboard/members/" (m.user) "/" } {
                        (layout::csrf(signed))
                        label.visually-hidden for={ "role-" (m.user) } { "Role of " (m.email) }
                        (role_select(&format!("role-{}", m.user), m.role))
                        button.secondary type="submit" { "Change" }
                    }
                } @else { (m.role.as_str()) }
            }
            td { (when(&m.created)) }
            td {
                @if may_write {
                    form method="post" action={ "/dashboard/members/" (m.user) "/remove/" } {
                        (layout::csrf(signed))
                        button.danger type="submit" data-confirm={ "Remove " (m.email) " from the workspace?" } aria-label={ "Remove " (m.email) } { "Remove" }
                    }
                }
            }
        }
    }
}

/// What a refused change says on the page (the API's message, or the owner rule).
fn refused(err: ApiError) -> Result<String, Refusal> {
    match err {
        ApiError::Forbidden => Ok("Only an owner may make, change or remove an owner.".into()),
        err @ (ApiError::Validation(_) | ApiError::BadRequest(_) | ApiError::NotFound) => {
            Ok(err.for_people())
        }
        other => Err(other.into()),
    }
}

async fn after(
    posted: &Posted,
    db: &Db,
    result: Result<String, ApiError>,
) -> Result<HttpResponse, Refusal> {
    let (code, top) = match result {
        Ok(done) => (StatusCode::OK, html! { p.notice role="status" { (done) } }),
        Err(err) => {
            let code = actix_web::ResponseError::status_code(&err);
            let message = refused(err)?;
            (code, html! { p.error role="alert" { (message) } })
        }
    };
    members_page(&posted.signed, db, code, top).await
}

fn role_of(posted: &Posted) -> Result<Role, ApiError> {
    posted
        .text("role")
        .parse()
        .map_err(|_| ApiError::field("role", "Choose a role."))
}

/// `POST /dashboard/members/`: adds a user by email, as `POST /members/` does (a user
/// must exist: the console hands out no credential of someone else's).
pub async fn invite(posted: Posted, db: web::Data<Db>) -> Result<HttpResponse, Refusal> {
    let email = posted.text("email");
    let result = async {
        let role = role_of(&posted)?;
        let (scope, principal) = (
            posted.signed.scope().clone(),
            posted.signed.auth.principal.clone(),
        );
        db.write(move |conn| members::add_as(conn, &scope, &principal, &email, role))
            .await
    }
    .await
    .map(|m| format!("{} is a member now, as {}.", m.email, m.role.as_str()));
    after(&posted, &db, result).await
}

/// `POST /dashboard/members/{user}/`: a new role.
pub async fn change_role(
    posted: Posted,
    db: web::Data<Db>,
    user: web::Path<String>,
) -> Result<HttpResponse, Refusal> {
    let result = async {
        let user = object_id(&user)?;
        let role = role_of(&posted)?;
        let (scope, principal) = (
            posted.signed.scope().clone(),
            posted.signed.auth.principal.clone(),
        );
        db.write(move |conn| members::set_role_as(conn, &scope, &principal, user, role))
            .await
    }
    .await
    .map(|m| format!("{} is {} now.", m.email, m.role.as_str()));
    after(&posted, &db, result).await
}

/// `POST /dashboard/members/{user}/remove/`.
pub async fn remove(
    posted: Posted,
    db: web::Data<Db>,
    user: web::Path<String>,
) -> Result<HttpResponse, Refusal> {
    let result = async {
        let user = object_id(&user)?;
        let (scope, principal) = (
            posted.signed.scope().clone(),
            posted.signed.auth.principal.clone(),
        );
        db.write(move |conn| members::remove_as(conn, &scope, &principal, user))
            .await
    }
    .await
    .map(|m| format!("{} is no longer a member.", m.email));
    after(&posted, &db, result).await
}

/// `GET /dashboard/account/`: the signed-in user's password.
pub async fn account(signed: Signed) -> HttpResponse {
    account_page(&signed, StatusCode::OK, None)
}

fn account_page(signed: &Signed, code: StatusCode, error: Option<&str>) -> HttpResponse {
    let body = html! {
        h1 { "Your account" }
        p { "Signed in as " strong { (signed.session.email) } "." }
        @if let Some(error) = error { p.error role="alert" { (error) } }
        section aria-labelledby="password" {
            h2 #password { "Change your password" }
            p.hint { "At least " (passwords::MIN_LENGTH) " characters. Every session of yours ends, this one too: you sign in again with the new password." }
            form.stacked method="post" action="/dashboard/account/" {
                (layout::csrf(signed))
                div.field { label for="current" { "Current password (empty if you have none yet)" } input #current name="current" type="password" autocomplete="current-password"; }
                div.field { label for="new" { "New password" } input #new name="new" type="password" autocomplete="new-password" required minlength=(passwords::MIN_LENGTH); }
                div.field { label for="again" { "New password again" } input #again name="again" type="password" autocomplete="new-password" required; }
                button type="submit" { "Change password" }
            }
        }
    };
    html(
        code,
        layout::page(signed, "Your account", Section::Account, body),
    )
}

/// `POST /dashboard/account/`: checks the current password (if the user has one), sets the
/// new one; every session of the user ends.
pub async fn change_password(posted: Posted, db: web::Data<Db>) -> Result<HttpResponse, Refusal> {
    let signed = &posted.signed;
    let (current, new, again) = (
        raw(&posted, "current"),
        raw(&posted, "new"),
        raw(&posted, "again"),
    );
    if new != again {
        return Ok(account_page(
            signed,
            StatusCode::BAD_REQUEST,
            Some("The two new passwords differ."),
        ));
    }
    let password = match Password::parse(&new) {
        Ok(p) => p,
        Err(err) => {
            let message = format!("{}.", capitalised(&err.to_string()));
            return Ok(account_page(
                signed,
                StatusCode::BAD_REQUEST,
                Some(&message),
            ));
        }
    };
    let email = signed.session.email.clone();
    let looking = email.clone();
    let stored = db
        .run(move |conn| Ok(passwords::lookup(conn, &looking)?))
        .await?
        .and_then(|(_, stored)| stored);
    let had = stored.is_some();
    let checked = web::block(move || {
        let right = !had || passwords::verify(&current, stored.as_deref());
        right.then(|| passwords::hash(&password))
    })
    .await
    .map_err(ApiError::internal)?;
    let Some(hashed) = checked else {
        return Ok(account_page(
            signed,
            StatusCode::BAD_REQUEST,
            Some("The current password is not right."),
        ));
    };
    db.write(move |conn| {
        passwords::set(conn, &email, &hashed).map_err(|e| match e {
            crate::accounts::AccountError::Database(e) => e.into(),
            other => ApiError::internal(other),
        })
    })
    .await?;
    Ok(see_other("/dashboard/sign-in/?password_changed=1"))
}

fn raw(posted: &Posted, name: &str) -> String {
    posted
        .fields
        .get(name)
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string()
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
