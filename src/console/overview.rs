//! The overview, `/dashboard/`: per currency, a chart of what was collected each day of the
//! last 30 (SVG drawn here, no script), the success rate, refunds and counts by status.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use maud::{html, Markup};

use super::layout::{self, status, Section};
use super::{html, Refusal, Signed};
use crate::db::Db;
use crate::payments::overview::{self, CurrencyOverview, DAYS};

pub async fn show(signed: Signed, db: web::Data<Db>) -> Result<HttpResponse, Refusal> {
    let scope = signed.scope().clone();
    let today = chrono::Utc::now().date_naive();
    let currencies = db
        .run(move |conn| overview::overview(conn, &scope, today))
        .await?;
    let body = html! {
        h1 { "Overview" }
        p.hint {
            "The last " (DAYS) " days (UTC), " @if signed.test_mode() { "in test mode" } @else { "live" } ", each currency on its own: "
            "what payments collected, by the day they were paid; the charges that ended and the refunds that succeeded over those days."
        }
        @if currencies.is_empty() {
            p { "No payments yet. Create one with the API (" a href="/docs/" { "the API's reference" } ") and it shows here." }
        }
        @for c in &currencies { (currency(c)) }
    };
    Ok(html(
        StatusCode::OK,
        layout::page(&signed, "Overview", Section::Overview, body),
    ))
}

fn currency(c: &CurrencyOverview) -> Markup {
    let code = c.currency.code;
    let amount = |minor: i64| c.currency.for_people(minor);
    html! {
        section.currency aria-labelledby={ "c-" (code) } {
            h2 id={ "c-" (code) } { (code) }
            dl.stats {
                div { dt { "Collected" } dd { (amount(c.collected())) } }
                div { dt { "Payments paid" } dd { (c.paid) } }
                div { dt { "Success rate" } dd {
                    @match c.success_rate() {
                        Some(rate) => { (rate) " %" small { " of " (c.succeeded + c.failed) " charges" } }
                        None => { "–" }
                    }
                } }
                div { dt { "Refunded" } dd { (amount(c.refunded)) small { " in " (c.refunds) " refund" @if c.refunds != 1 { "s" } } } }
            }
            (chart(c))
            h3 { "All payments by status" }
            @if c.by_status.is_empty() { p { "None." } } @else {
                ul.statuses {
                    @for (each, n) in &c.by_status {
                        li { a href={ "/dashboard/payments/?currency=" (code) "&status=" (each.as_str()) } { (status(each.as_str())) " " (n) } }
                    }
                }
            }
        }
    }
}

/// Chart geometry, in the SVG's own units (it scales to its box).
const WIDTH: i64 = 600;
const HEIGHT: i64 = 160;
const BAR: i64 = WIDTH / DAYS;

/// Bars of what was collected each day, with a table of the same numbers for those who do
/// not see the chart.
fn chart(c: &CurrencyOverview) -> Markup {
    let most = c.days.iter().map(|(_, a)| *a).max().unwrap_or(0).max(1);
    let label = format!(
        "{} collected per day over the last {DAYS} days: {} in all, at most {} in a day",
        c.currency.code,
        c.currency.for_people(c.collected()),
        c.currency.for_people(most)
    );
    let first = c
        .days
        .first()
        .map(|(d, _)| d.to_string())
        .unwrap_or_default();
    let last = c
        .days
        .last()
        .map(|(d, _)| d.to_string())
        .unwrap_or_default();
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT + 20) } role="img" aria-label=(label) {
                line x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) class="axis" {}
                @for (i, (day, amount)) in c.days.iter().enumerate() {
                    @let height = (i128::from(*amount) * i128::from(HEIGHT - 10) / i128::from(most)) as i64;
                    rect x=(i as i64 * BAR + 2) y=(HEIGHT - height) width=(BAR - 4) height=(height) class="bar" {
                        title { (day) ": " (c.currency.for_people(*amount)) }
                    }
                }
                text x="0" y=(HEIGHT + 16) class="tick" { (first) }
                text x=(WIDTH) y=(HEIGHT + 16) class="tick end" { (last) }
            }
            figcaption { (label) "." }
        }
        details.data {
            summary { "The numbers, day by day" }
            div.table-wrap tabindex="0" role="region" aria-label={ (c.currency.code) " per day" } {
                table {
                    thead { tr { th scope="col" { "Day" } th scope="col" { "Collected" } } }
                    tbody { @for (day, amount) in c.days.iter().rev() { tr { td { (day) } td.num { (c.currency.for_people(*amount)) } } } }
                }
            }
        }
    }
}
