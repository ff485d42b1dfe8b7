//! Integrations (`/integrations/`): a workspace's accounts at payment providers, per mode,
//! with their credentials sealed at rest (`crate::secrets`). Same layout as payments:
//! `domain` (values and rules), `store` (scoped SQL), `operations`, `handlers`.

pub mod domain;
pub mod handlers;
pub mod operations;
pub mod store;

pub use handlers::routes;
