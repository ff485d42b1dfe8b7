//! The console's page shell and the small pieces every page shares: the header (workspace
//! switcher, test-mode toggle, sections, sign-out), money, dates and status badges.

use maud::{html, Markup, DOCTYPE};

use super::Signed;
use crate::accounts::roles::{Access, Resource};
use actix_web::http::StatusCode;
use actix_web::ResponseError;

use crate::db::{DbConnection, Scope};
use crate::error::ApiError;
use crate::http::pagination::{Page, PageRequest};
use crate::http::query::QueryParams;
use crate::money::{Amount, Currency};

/// The console's sections, in the header's order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Payments,
    Customers,
    Invoices,
    Developers,
    Members,
    /// The user's own page (not in the sections' list).
    Account,
}

impl Section {
    const ALL: [(Section, &'static str, &'static str, Resource); 6] = [
        (
            Section::Overview,
            "Overview",
            "/dashboard/",
            Resource::Payments,
        ),
        (
            Section::Payments,
            "Payments",
            "/dashboard/payments/",
            Resource::Payments,
        ),
        (
            Section::Customers,
            "Customers",
            "/dashboard/customers/",
            Resource::Customers,
        ),
        (
            Section::Invoices,
            "Invoices",
            "/dashboard/invoices/",
            Resource::Invoices,
        ),
        (
            Section::Developers,
            "Developers",
            "/dashboard/webhooks/",
            Resource::Webhooks,
        ),
        (
            Section::Members,
            "Members",
            "/dashboard/members/",
            Resource::Members,
        ),
    ];
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width,initial-scale=1";
            meta name="robots" content="noindex";
            title { (title) " · cobro" }
            link rel="stylesheet" href="/dashboard/assets/console.css";
            script src="/dashboard/assets/console.js" defer {}
        }
    }
}

/// A page of a signed-in user, in `section`.
pub fn page(signed: &Signed, title: &str, section: Section, body: Markup) -> Markup {
    let test_mode = signed.test_mode();
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body class=[test_mode.then_some("test-mode")] {
                a.skip href="#main" { "Skip to content" }
                @if test_mode {
                    p.test-banner role="status" { "Test mode: test data only. Nothing here moves real money." }
                }
                header.top {
                    a.brand href="/dashboard/" { "cobro" }
                    (place_forms(signed))
                    form.sign-out method="post" action="/dashboard/sign-out/" {
                        (csrf(signed))
                        a.who href="/dashboard/account/" aria-current=[(section == Section::Account).then_some("page")] { (signed.session.email) " · " (signed.workspace.role.as_str()) }
                        button.link type="submit" { "Sign out" }
                    }
                }
                nav.sections aria-label="Sections" {
                    ul {
                        @for (each, name, href, resource) in Section::ALL {
                            @if signed.may(resource, Access::Read) {
                                li {
                                    a href=(href) aria-current=[(each == section).then_some("page")] { (name) }
                                }
                            }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

/// The workspace switcher and the test-mode toggle: two small forms, each a POST with the
/// CSRF token (the script submits the switcher on change; without it, its button does).
fn place_forms(signed: &Signed) -> Markup {
    let workspace = &signed.workspace.workspace_id;
    let test_mode = signed.test_mode();
    html! {
        @if signed.memberships.len() > 1 {
            form.switcher method="post" action="/dashboard/place/" data-autosubmit {
                (csrf(signed))
                input type="hidden" name="next" value="/dashboard/";
                input type="hidden" name="test_mode" value="false";
                label for="workspace" { "Workspace" }
                select #workspace name="workspace" {
                    @for m in &signed.memberships {
                        option value=(m.workspace_id) selected[&m.workspace_id == workspace] { (m.name) }
                    }
                }
                button.secondary type="submit" { "Switch" }
            }
        } @else {
            span.workspace { (signed.workspace.name) }
        }
        form.mode method="post" action="/dashboard/place/" {
            (csrf(signed))
            input type="hidden" name="next" value=(section_of(&signed.here));
            input type="hidden" name="workspace" value=(workspace);
            input type="hidden" name="test_mode" value=(if test_mode { "false" } else { "true" });
            button.toggle type="submit" aria-pressed=(if test_mode { "true" } else { "false" }) {
                "Test mode " span.state { (if test_mode { "on" } else { "off" }) }
            }
        }
    }
}

/// The list a page belongs to (`/dashboard/payments/12/` → `/dashboard/payments/`): where
/// to go after switching mode, since an object of one mode is not found in the other.
fn section_of(here: &str) -> String {
    let path = here.split('?').next().unwrap_or("/dashboard/");
    let mut parts = path.trim_matches('/').split('/');
    match (parts.next(), parts.next()) {
        (Some("dashboard"), Some(section)) => format!("/dashboard/{section}/"),
        _ => "/dashboard/".to_string(),
    }
}

/// The hidden field every state-changing form carries.
pub fn csrf(signed: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.csrf); }
}

/// A page with no header (sign-in, errors).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                main #main { div.panel { (body) } }
            }
        }
    }
}

/// A page that says what went wrong, in a heading and a sentence.
pub fn problem(title: &str, message: &str) -> Markup {
    bare(
        title,
        html! {
            h1 { (title) }
            p role="alert" { (message) }
            p { a href="/dashboard/" { "Back to the console" } }
        },
    )
}

/// An exact amount for people: `USD 1,234.50`.
pub fn money(currency: &str, amount: &Amount) -> String {
    let exact = Currency::parse(currency).and_then(|c| {
        let value = amount.0.parse().ok()?;
        Some(c.for_people(c.to_minor(value).ok()?))
    });
    exact.unwrap_or_else(|| format!("{currency} {}", amount.0))
}

/// An API timestamp (`2026-12-03T08:15:00.123456Z`) as `2026-12-03 08:15 UTC`.
pub fn when(timestamp: &str) -> String {
    match (timestamp.get(..10), timestamp.get(11..16)) {
        (Some(date), Some(time)) => format!("{date} {time} UTC"),
        _ => timestamp.to_string(),
    }
}

/// A status as a badge: its words, and a class for its colour (never colour alone).
pub fn status(value: &str) -> Markup {
    let kind = match value {
        "succeeded" => "good",
        "failed" | "cancelled" => "bad",
        "processing" | "pending" | "incomplete" => "wait",
        _ => "neutral",
    };
    html! { span class={ "badge " (kind) } { (value.replace('_', " ")) } }
}

/// The query without its empty fields (a filter form sends every field).
pub fn given(req: &actix_web::HttpRequest) -> Result<QueryParams, ApiError> {
    let mut params = QueryParams::parse(req.query_string())?;
    params.0.retain(|(_, v)| !v.trim().is_empty());
    Ok(params)
}

/// A list page's answer: its status, the page found, or what was wrong with its filters.
pub type Shown<T> = (StatusCode, Option<Page<T>>, Option<String>);

/// A list page's lookup, as the API's list does it: the query's filters parsed by `parse`,
/// the page asked for, and `list` run in the signed-in scope. Filters the API refuses are
/// said on the page (a 400 with the API's message); any other error is the error page.
pub async fn listing<F, T, L>(
    req: &actix_web::HttpRequest,
    signed: &super::Signed,
    db: &crate::db::Db,
    parse: impl FnOnce(&QueryParams) -> Result<F, ApiError>,
    list: L,
) -> Result<(QueryParams, Shown<T>), super::Refusal>
where
    F: Send + 'static,
    T: Send + 'static,
    L: FnOnce(&mut DbConnection, &Scope, &F, &PageRequest) -> Result<Page<T>, ApiError>
        + Send
        + 'static,
{
    let params = given(req)?;
    let parsed = parse(&params).and_then(|f| Ok((f, PageRequest::new(req, &params)?)));
    let found = match parsed {
        Ok((filter, page)) => {
            let scope = signed.scope().clone();
            db.run(move |conn| list(conn, &scope, &filter, &page)).await
        }
        Err(err) => Err(err),
    };
    let shown = match found {
        Ok(page) => (StatusCode::OK, Some(page), None),
        Err(err @ (ApiError::Validation(_) | ApiError::InvalidPage | ApiError::BadRequest(_))) => {
            (err.status_code(), None, Some(err.for_people()))
        }
        Err(err) => return Err(err.into()),
    };
    Ok((params, shown))
}

/// A labelled input of a filter form, holding the query's value.
pub fn filter_input(params: &QueryParams, name: &str, label: &str, kind: &str) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) }
            input id=(name) name=(name) type=(kind) value=(params.get(name).unwrap_or(""));
        }
    }
}

/// A labelled choice of a filter form ("Any" first), holding the query's value.
pub fn filter_choice(params: &QueryParams, name: &str, label: &str, choices: &[&str]) -> Markup {
    let chosen = params.get(name).unwrap_or("");
    html! {
        div.field {
            label for=(name) { (label) }
            select id=(name) name=(name) {
                option value="" { "Any" }
                @for choice in choices {
                    option value=(choice) selected[chosen == *choice] { (choice.replace('_', " ")) }
                }
            }
        }
    }
}

/// A filter form's buttons.
pub fn filter_actions(list: &str) -> Markup {
    html! {
        div.actions {
            button type="submit" { "Filter" }
            a href=(list) { "Clear" }
        }
    }
}

/// A table that scrolls sideways on a narrow screen (focusable, so keys can scroll it).
pub fn table(label: &str, head: &[&str], rows: Markup) -> Markup {
    html! {
        div.table-wrap tabindex="0" role="region" aria-label=(label) {
            table {
                thead { tr { @for h in head { th scope="col" { (h) } } } }
                tbody { (rows) }
            }
        }
    }
}

/// How many a list found.
pub fn count(n: i64, one: &str, many: &str) -> Markup {
    html! { p.count { (n) " " (if n == 1 { one } else { many }) } }
}

/// Previous and next links of a list page.
pub fn pager<T>(page: &Page<T>) -> Markup {
    html! {
        @if page.previous.is_some() || page.next.is_some() {
            nav.pager aria-label="Pages" {
                @if let Some(previous) = &page.previous { a rel="prev" href=(previous) { "← Previous" } }
                @if let Some(next) = &page.next { a rel="next" href=(next) { "Next →" } }
            }
        }
    }
}

/// Text for a query string value.
pub fn query_value(text: &str) -> String {
    serde_urlencoded::to_string([("v", text)])
        .map(|s| s[2..].to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switching_mode_goes_back_to_the_section_list() {
        assert_eq!(
            section_of("/dashboard/payments/12/"),
            "/dashboard/payments/"
        );
        assert_eq!(
            section_of("/dashboard/payments/?status=failed"),
            "/dashboard/payments/"
        );
        assert_eq!(section_of("/dashboard/"), "/dashboard/");
    }

    #[test]
    fn money_is_exact_and_grouped() {
        assert_eq!(money("USD", &Amount("1234.5".into())), "USD 1,234.50");
        assert_eq!(money("CLP", &Amount("1000".into())), "CLP 1,000");
    }
}
