//! Refunds: `/refunds/` and `POST /payments/{id}/refund/`.
//!
//! - `domain`: the refund and its parts, the status machine, which charges a refund goes
//!   back through, what an answer does (pure).
//! - `store`: the only code that touches the refund tables, always scoped.
//! - `operations`: the flows; a refund through a gateway in three steps, so that no
//!   transaction waits on a provider.
//! - `handlers`: HTTP in and out.

pub mod domain;
pub mod handlers;
pub mod operations;
pub mod store;

pub use handlers::routes;
