//! cobro: a multi-tenant payments backend that speaks Piriod's REST API, on SQLite or
//! PostgreSQL. Start at `startup.rs` (routes) and `payments/` (the domain); see README.md.

pub mod accounts;
pub mod audit;
pub mod billingrails;
pub mod checkout;
pub mod cli;
pub mod config;
pub mod console;
pub mod customers;
pub mod db;
pub mod error;
pub mod events;
pub mod gateways;
pub mod health;
pub mod http;
pub mod idempotency;
pub mod integrations;
pub mod invoices;
pub mod logging;
pub mod metrics;
pub mod money;
pub mod openapi;
pub mod payments;
pub mod refunds;
pub mod secrets;
pub mod sources;
pub mod startup;
mod text_enum;
pub mod webhooks;
