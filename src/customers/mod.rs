//! Customers (`/customers/`): who a payment belongs to. Same layout as payments: `domain`
//! (pure), `store` (scoped SQL), `operations`, `handlers`.

pub mod domain;
pub mod handlers;
pub mod operations;
pub mod store;

pub use handlers::routes;
