//! API tests: every test drives the real server over HTTP, against SQLite and against
//! PostgreSQL (when TEST_DATABASE_URL is set). See helpers.rs.

mod helpers;
#[path = "../common/proxy.rs"]
mod proxy;
#[path = "../common/receiver.rs"]
mod receiver;

mod audit;
mod auth;
mod billingrails;
mod browser;
mod charging;
mod checkout;
mod connections;
mod console;
mod customers;
mod events;
mod idempotency;
mod integrations;
mod invoices;
mod lists;
mod nulls;
mod operations;
mod payers;
mod payments;
mod races;
mod refunds;
mod roles;
mod sources;
mod status;
mod stripe;
mod tenancy;
mod throttle;
mod webhooks;
