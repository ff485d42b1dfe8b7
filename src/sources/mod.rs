//! Sources: a payer's payment instruments (`/sources/`), charged through a gateway.
//! Same layout as payments: `domain` (pure), `store` (scoped SQL), `operations`, `handlers`.

pub mod domain;
pub mod handlers;
pub mod operations;
pub mod store;

pub use handlers::routes;
