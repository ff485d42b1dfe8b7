//! Payments: `/payments/` and its actions.
//!
//! - `status`: the status machine (pure).
//! - `domain`: the payment value, request input, and the rules of every change (pure).
//! - `filter`: list filters and orderings, parsed from the query string.
//! - `store`: the only code that touches the payments tables, always scoped.
//! - `operations`: read, decide, write flows, each in one transaction with its event.
//! - `charges`: the flows that ask a gateway (charge, capture, release, settle), each in
//!   three steps so that no transaction waits on a provider.
//! - `handlers`: HTTP in and out, nothing else.

pub mod charges;
pub mod charging;
pub mod domain;
pub mod filter;
pub mod handlers;
pub mod operations;
pub mod overview;
pub mod reconciler;
pub mod status;
pub mod store;

pub use handlers::routes;
