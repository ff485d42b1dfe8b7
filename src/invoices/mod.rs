//! Invoices (`/invoices/`): what a customer owes, paid by payments that name the invoice.
//! Same layout as payments: `domain` (pure), `store` (scoped SQL), `operations`, `handlers`.

pub mod domain;
pub mod handlers;
pub mod operations;
pub mod store;

pub use handlers::routes;
