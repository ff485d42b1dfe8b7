//! Customers and invoices in the console: lists with the API's filters, and pages with
//! their payments (and a customer's invoices).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};

use super::layout::{
    self, count, filter_actions, filter_choice, filter_input, listing, money, pager, status, table,
    when, Section,
};
use super::payments::payments_table;
use super::{html, Refusal, Signed};
use crate::customers::domain::{CustomerStatus, CustomerView};
use crate::customers::store::CustomerFilter;
use crate::db::Db;
use crate::error::ApiError;
use crate::http::pagination::{Page, PageRequest};
use crate::http::query::QueryParams;
use crate::http::{base_url, prefixed_id};
use crate::invoices::domain::{InvoiceStatus, InvoiceView};
use crate::invoices::store::InvoiceFilter;
use crate::payments::filter::PaymentFilter;
use crate::{customers, invoices, payments};

/// `GET /dashboard/customers/`.
pub async fn list(
    req: HttpRequest,
    signed: Signed,
    db: web::Data<Db>,
) -> Result<HttpResponse, Refusal> {
    let (params, (code, page, error)) = listing(
        &req,
        &signed,
        &db,
        CustomerFilter::parse,
        customers::operations::list,
    )
    .await?;
    let statuses: Vec<&str> = CustomerStatus::VALUES.iter().map(|s| s.as_str()).collect();
    let body = html! {
        h1 { "Customers" }
        form.filters method="get" action="/dashboard/customers/" role="search" aria-label="Filter customers" {
            div.field.wide {
                label for="search" { "Search names, emails and tax ids" }
                input #search type="search" name="search" value=(params.get("search").unwrap_or(""));
            }
            (filter_choice(&params, "status", "Status", &statuses))
            (filter_input(&params, "email", "Email", "email"))
            (filter_input(&params, "country", "Country", "text"))
            (filter_actions("/dashboard/customers/"))
        }
        @if let Some(error) = &error { p.error role="alert" { (error) } }
        @if let Some(page) = &page { (customers_table(page)) }
    };
    Ok(html(
        code,
        layout::page(&signed, "Customers", Section::Customers, body),
    ))
}

fn customers_table(page: &Page<CustomerView>) -> Markup {
    let rows = html! {
        @for c in &page.results {
            tr {
                td { a href={ "/dashboard/customers/" (c.id) "/" } { (c.name) } }
                td { (c.email.as_deref().unwrap_or("–")) }
                td { (c.country.as_deref().unwrap_or("–")) }
                td { (status(c.status.as_str())) }
                td { (when(&c.created)) }
            }
        }
    };
    html! {
        (count(page.count, "customer", "customers"))
        @if page.results.is_empty() { p { "No customers match." } } @else {
            (table("Customers found", &["Name", "Email", "Country", "Status", "Created"], rows))
        }
        (pager(page))
    }
}

/// A page's own list of related objects: the first 20, newest first, with a link to all.
fn related(req: &HttpRequest) -> Result<PageRequest, ApiError> {
    PageRequest::new(req, &QueryParams::default())
}

/// `GET /dashboard/customers/{id}/`: the customer, their payments and invoices.
pub async fn detail(
    req: HttpRequest,
    signed: Signed,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> Result<HttpResponse, Refusal> {
    let id = prefixed_id(&id, "cus_")?;
    let (scope, base, page) = (signed.scope().clone(), base_url(&req), related(&req)?);
    let (customer, paid, billed) = db
        .run(move |conn| {
            let customer = customers::operations::retrieve(conn, &scope, &id)?;
            let by_customer = PaymentFilter {
                customer: Some(id.clone()),
                ..Default::default()
            };
            let paid = payments::operations::list(conn, &scope, &by_customer, &page, &base)?;
            let of_customer = InvoiceFilter {
                customer: Some(id.clone()),
                ..Default::default()
            };
            let billed = invoices::operations::list(conn, &scope, &of_customer, &page)?;
            Ok((customer, paid, billed))
        })
        .await?;
    let c = &customer;
    let body = html! {
        p.crumbs { a href="/dashboard/customers/" { "Customers" } " / " (c.id) }
        h1 { (c.name) }
        dl.fields {
            dt { "ID" } dd { code { (c.id) } }
            dt { "Email" } dd { (c.email.as_deref().unwrap_or("–")) }
            dt { "Tax id" } dd { (c.tax_id.as_deref().unwrap_or("–")) }
            dt { "Country" } dd { (c.country.as_deref().unwrap_or("–")) }
            dt { "Status" } dd { (status(c.status.as_str())) }
            dt { "Created" } dd { (when(&c.created)) }
        }
        h2 { "Payments" }
        (payments_table(&paid, false))
        p { a href={ "/dashboard/payments/?customer=" (c.id) } { "All of their payments" } }
        h2 { "Invoices" }
        (invoices_table(&billed, false))
        p { a href={ "/dashboard/invoices/?customer=" (c.id) } { "All of their invoices" } }
    };
    Ok(html(
        StatusCode::OK,
        layout::page(&signed, &customer.name, Section::Customers, body),
    ))
}

/// `GET /dashboard/invoices/`.
pub async fn invoices(
    req: HttpRequest,
    signed: Signed,
    db: web::Data<Db>,
) -> Result<HttpResponse, Refusal> {
    let (params, (code, page, error)) = listing(
        &req,
        &signed,
        &db,
        InvoiceFilter::parse,
        invoices::operations::list,
    )
    .await?;
    let statuses: Vec<&str> = InvoiceStatus::VALUES.iter().map(|s| s.as_str()).collect();
    let body = html! {
        h1 { "Invoices" }
        form.filters method="get" action="/dashboard/invoices/" role="search" aria-label="Filter invoices" {
            (filter_choice(&params, "status", "Status", &statuses))
            (filter_input(&params, "customer", "Customer", "text"))
            (filter_input(&params, "currency", "Currency", "text"))
            (filter_actions("/dashboard/invoices/"))
        }
        @if let Some(error) = &error { p.error role="alert" { (error) } }
        @if let Some(page) = &page { (invoices_table(page, true)) }
    };
    Ok(html(
        code,
        layout::page(&signed, "Invoices", Section::Invoices, body),
    ))
}

fn invoices_table(page: &Page<InvoiceView>, paged: bool) -> Markup {
    let rows = html! {
        @for i in &page.results {
            tr {
                td { a href={ "/dashboard/invoices/" (i.id) "/" } { (i.id) } }
                td { a href={ "/dashboard/customers/" (i.customer) "/" } { (i.customer) } }
                td.num { (money(&i.currency, &i.total)) }
                td.num { (money(&i.currency, &i.amount_due)) }
                td { (status(i.status.as_str())) }
                td { (i.due_date) }
            }
        }
    };
    html! {
        (count(page.count, "invoice", "invoices"))
        @if page.results.is_empty() { p { "No invoices match." } } @else {
            (table("Invoices found", &["Invoice", "Customer", "Total", "Due", "Status", "Due date"], rows))
        }
        @if paged { (pager(page)) }
    }
}

/// `GET /dashboard/invoices/{id}/`: the invoice, its lines and its payments.
pub async fn invoice(
    req: HttpRequest,
    signed: Signed,
    db: web::Data<Db>,
    id: web::Path<String>,
) -> Result<HttpResponse, Refusal> {
    let id = prefixed_id(&id, "inv_")?;
    let (scope, base, page) = (signed.scope().clone(), base_url(&req), related(&req)?);
    let (invoice, paid) = db
        .run(move |conn| {
            let invoice = invoices::operations::retrieve(conn, &scope, &id)?;
            let of_invoice = PaymentFilter {
                invoice: Some(id.clone()),
                ..Default::default()
            };
            let paid = payments::operations::list(conn, &scope, &of_invoice, &page, &base)?;
            Ok((invoice, paid))
        })
        .await?;
    let i = &invoice;
    let cur = &i.currency;
    let lines = html! {
        @for line in &i.lines {
            tr {
                td { (line.name) }
                td.num { (line.quantity) }
                td.num { (money(cur, &line.unit_amount)) }
                td.num { (money(cur, &line.total)) }
            }
        }
    };
    let body = html! {
        p.crumbs { a href="/dashboard/invoices/" { "Invoices" } " / " (i.id) }
        h1 { "Invoice " (i.id) }
        p.headline { span.amount { (money(cur, &i.total)) } " " (status(i.status.as_str())) }
        dl.fields {
            dt { "Customer" } dd { a href={ "/dashboard/customers/" (i.customer) "/" } { (i.customer) } }
            dt { "Paid" } dd { (money(cur, &i.amount_paid)) }
            dt { "Due" } dd { (money(cur, &i.amount_due)) }
            dt { "Refunded" } dd { (money(cur, &i.amount_refunded)) }
            dt { "Due date" } dd { (i.due_date) }
            dt { "Description" } dd { (i.description.as_deref().unwrap_or("–")) }
            dt { "Finalized" } dd { (i.finalized_at.as_deref().map(when).unwrap_or_else(|| "–".into())) }
            dt { "Paid at" } dd { (i.paid_at.as_deref().map(when).unwrap_or_else(|| "–".into())) }
        }
        h2 { "Lines" }
        (table("Lines", &["Item", "Quantity", "Unit price", "Total"], lines))
        h2 { "Payments" }
        (payments_table(&paid, false))
        p { a href={ "/dashboard/payments/?invoice=" (i.id) } { "All of its payments" } }
    };
    Ok(html(
        StatusCode::OK,
        layout::page(
            &signed,
            &format!("Invoice {}", invoice.id),
            Section::Invoices,
            body,
        ),
    ))
}
