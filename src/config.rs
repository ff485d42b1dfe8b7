//! Settings, read once from the environment (and a `.env` file, if present).
//! `.env.example` lists every one of them.

use std::env;

#[derive(Clone, Debug)]
pub struct Settings {
    /// `DATABASE_URL`: a SQLite file path (default `cobro.db`) or `postgres://…`.
    pub database_url: String,
    /// `COBRO_BIND`: the address `cobro serve` listens on.
    pub bind: String,
    /// `COBRO_CORS_ORIGINS`: comma-separated origins allowed to call the API from a browser;
    /// `*` allows any. Empty: no cross-origin access.
    pub cors_origins: Vec<String>,
    /// `COBRO_PUBLIC_URL`: the base of links the API hands out (pagination, checkout);
    /// by default taken from each request's Host.
    pub public_url: Option<String>,
    /// `COBRO_DB_POOL_SIZE`: database connections in the pool.
    pub pool_size: u32,
    /// `COBRO_SQLITE_SYNCHRONOUS`: SQLite's durability level, FULL (default) or NORMAL.
    pub sqlite_synchronous: String,
    /// `COBRO_BODY_LIMIT`: the largest request body, in bytes.
    pub body_limit: usize,
    /// `COBRO_SANDBOX_SETTLE_SECONDS`: how long asynchronous sandbox charges stay
    /// `processing` before they settle by themselves.
    pub sandbox_settle_seconds: u64,
    /// `COBRO_WORKERS`: HTTP worker threads (default: one per core).
    pub workers: usize,
    /// `COBRO_IDEMPOTENCY_TTL_SECONDS`: how long an `Idempotency-Key` and its stored
    /// answer are kept (default 24 hours).
    pub idempotency_ttl_seconds: u64,
    /// `COBRO_RATE_LIMIT`: requests per second allowed to each credential (token, secret
    /// key or checkout key), in each server process; 0 turns limiting off. Default 100.
    pub rate_limit: u32,
    /// `COBRO_RATE_LIMIT_BURST`: how many requests a credential may send at once above
    /// the rate (default: twice the rate).
    pub rate_limit_burst: u32,
    /// `COBRO_WEBHOOK_ALLOW_PRIVATE`: let webhooks reach loopback and private addresses
    /// (for development and tests); off by default.
    pub webhook_allow_private: bool,
    /// Whether `cobro serve` runs a webhook delivery worker (`COBRO_WEBHOOK_WORKER`, default
    /// on; `cobro worker` runs one alone).
    pub webhook_worker: bool,
    /// `COBRO_WEBHOOK_FIRST_RETRY_MS`: the wait before a failed delivery's first retry
    /// (default 30 s); each later wait doubles, up to 6 hours.
    pub webhook_first_retry_ms: u64,
    /// `COBRO_METRICS_BIND`: an address of its own for `GET /metrics` (off by default).
    pub metrics_bind: Option<String>,
    /// `COBRO_METRICS_TOKEN`: serves `GET /metrics` on the API's address too, to
    /// `Authorization: Bearer <token>` only.
    pub metrics_token: Option<String>,
    /// `COBRO_SECRET_KEY`: the keys that seal provider credentials (64 hex digits each,
    /// comma-separated while rotating; the first seals). Unset on SQLite: a key file beside
    /// the database.
    pub secret_keys: SecretKeys,
    /// `COBRO_STRIPE_API_BASE`: where Stripe's API is (default `https://api.stripe.com`); a
    /// server setting, never a tenant's.
    pub stripe_api_base: String,
    /// `COBRO_STRIPE_JS_URL`: where the checkout page loads Stripe.js from (default Stripe's
    /// own, `https://js.stripe.com/v3/`; tests point it at localstripe's).
    pub stripe_js_url: String,
    /// `COBRO_RECONCILE_AFTER_SECONDS`: how long a provider's charge stays in flight without
    /// news before the reconciler asks the provider about it (default 60).
    pub reconcile_after_seconds: u64,
    /// `COBRO_ACTION_TIMEOUT_SECONDS`: how long a charge waits for its payer's authorization
    /// (3-D Secure) before it is given up at the provider (default one day).
    pub action_timeout_seconds: u64,
    /// Whether `cobro serve` runs a reconciler (`COBRO_RECONCILER`, default on; `cobro
    /// worker` runs one too).
    pub reconciler: bool,
    /// `COBRO_SESSION_IDLE_SECONDS`: a console session ends after this long without a
    /// request (default 15 minutes, as PCI DSS asks; it ends after 12 hours regardless).
    pub session_idle_seconds: u64,
    /// `COBRO_SIGN_IN_LIMIT_EMAIL`: console sign-in attempts allowed per email per 15
    /// minutes, in each server process (default 10).
    pub sign_in_limit_email: u32,
    /// `COBRO_SIGN_IN_LIMIT_ADDRESS`: console sign-in attempts allowed per client address per
    /// minute, in each server process (default 30).
    pub sign_in_limit_address: u32,
}

/// Secret keys, never printed (`Settings` derives `Debug`).
#[derive(Clone, Default)]
pub struct SecretKeys(pub Vec<String>);

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKeys({} hidden)", self.0.len())
    }
}

pub const DEFAULT_DATABASE_URL: &str = "cobro.db";
pub const DEFAULT_BIND: &str = "127.0.0.1:8000";

impl Settings {
    pub fn from_env() -> Result<Settings, String> {
        let var = |name: &str| {
            env::var(name)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let number = |name: &str, default: usize| -> Result<usize, String> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map_err(|_| format!("{name} must be a whole number, not \"{v}\"")),
            }
        };
        let sqlite_synchronous = var("COBRO_SQLITE_SYNCHRONOUS")
            .unwrap_or_else(|| "FULL".into())
            .to_ascii_uppercase();
        if !matches!(sqlite_synchronous.as_str(), "FULL" | "NORMAL" | "EXTRA") {
            return Err(format!("COBRO_SQLITE_SYNCHRONOUS must be FULL, NORMAL or EXTRA, not \"{sqlite_synchronous}\""));
        }
        let public_url = var("COBRO_PUBLIC_URL")
            .or_else(|| var("PUBLIC_BASE_URL"))
            .map(|u| u.trim_end_matches('/').to_string());
        if let Some(url) = &public_url {
            if !crate::http::fields::is_web_url(url) {
                return Err(format!(
                    "COBRO_PUBLIC_URL must be an absolute http(s) URL, not \"{url}\""
                ));
            }
        }
        if let Some(js) = var("COBRO_STRIPE_JS_URL") {
            if !crate::http::fields::is_web_url(&js) {
                return Err(format!(
                    "COBRO_STRIPE_JS_URL must be an absolute http(s) URL, not \"{js}\""
                ));
            }
        }
        if let Some(base) = var("COBRO_STRIPE_API_BASE") {
            if !crate::http::fields::is_web_url(&base) {
                return Err(format!(
                    "COBRO_STRIPE_API_BASE must be an absolute http(s) URL, not \"{base}\""
                ));
            }
        }
        let rate_limit = u32::try_from(number("COBRO_RATE_LIMIT", 100)?)
            .map_err(|_| "COBRO_RATE_LIMIT is too large".to_string())?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Settings {
            database_url: var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            bind: var("COBRO_BIND").unwrap_or_else(|| DEFAULT_BIND.into()),
            cors_origins: var("COBRO_CORS_ORIGINS")
                .map(|v| {
                    v.split(',')
                        .map(|o| o.trim().trim_end_matches('/').to_string())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            public_url,
            pool_size: number("COBRO_DB_POOL_SIZE", 16)? as u32,
            sqlite_synchronous,
            body_limit: number("COBRO_BODY_LIMIT", 64 * 1024)?,
            workers: number("COBRO_WORKERS", cores)?.max(1),
            sandbox_settle_seconds: number("COBRO_SANDBOX_SETTLE_SECONDS", 3)? as u64,
            idempotency_ttl_seconds: (number("COBRO_IDEMPOTENCY_TTL_SECONDS", 24 * 3600)? as u64)
                .max(1),
            rate_limit,
            webhook_first_retry_ms: number("COBRO_WEBHOOK_FIRST_RETRY_MS", 30_000)? as u64,
            metrics_bind: var("COBRO_METRICS_BIND"),
            metrics_token: var("COBRO_METRICS_TOKEN"),
            webhook_worker: !matches!(
                var("COBRO_WEBHOOK_WORKER")
                    .map(|v| v.to_ascii_lowercase())
                    .as_deref(),
                Some("0" | "false" | "no")
            ),
            webhook_allow_private: matches!(
                var("COBRO_WEBHOOK_ALLOW_PRIVATE")
                    .map(|v| v.to_ascii_lowercase())
                    .as_deref(),
                Some("1" | "true" | "yes")
            ),
            rate_limit_burst: number("COBRO_RATE_LIMIT_BURST", 2 * rate_limit as usize)? as u32,
            secret_keys: SecretKeys(
                var("COBRO_SECRET_KEY")
                    .map(|v| {
                        v.split(',')
                            .map(|k| k.trim().to_string())
                            .filter(|k| !k.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            stripe_js_url: var("COBRO_STRIPE_JS_URL")
                .unwrap_or_else(|| crate::gateways::stripe::DEFAULT_JS_URL.into()),
            reconcile_after_seconds: number("COBRO_RECONCILE_AFTER_SECONDS", 60)? as u64,
            action_timeout_seconds: number("COBRO_ACTION_TIMEOUT_SECONDS", 24 * 3600)? as u64,
            reconciler: !matches!(
                var("COBRO_RECONCILER")
                    .map(|v| v.to_ascii_lowercase())
                    .as_deref(),
                Some("0" | "false" | "no")
            ),
            session_idle_seconds: (number("COBRO_SESSION_IDLE_SECONDS", 15 * 60)? as u64).max(1),
            sign_in_limit_email: number("COBRO_SIGN_IN_LIMIT_EMAIL", 10)?.max(1) as u32,
            sign_in_limit_address: number("COBRO_SIGN_IN_LIMIT_ADDRESS", 30)?.max(1) as u32,
            stripe_api_base: var("COBRO_STRIPE_API_BASE")
                .unwrap_or_else(|| crate::gateways::stripe::DEFAULT_API_BASE.into())
                .trim_end_matches('/')
                .to_string(),
        })
    }
}
