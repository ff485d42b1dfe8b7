//! Webhooks (API.md §4): endpoints that subscribe to events, and at-least-once delivery from
//! the events table as a transactional outbox. An event and the deliveries it owes are
//! written in the transaction of the change; the worker (`worker.rs`) sends them, signed
//! (`delivery.rs`), in order per object, with retries for about three days.

pub mod delivery;
pub mod domain;
pub mod handlers;
pub mod operations;
pub mod store;
pub mod worker;

pub use handlers::routes;
