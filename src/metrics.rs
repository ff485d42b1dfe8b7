//! What cobro is doing right now, in Prometheus' text format at `GET /metrics`: requests by
//! route template, the database (pool, permits, the SQLite writer, re-run transactions,
//! 503s), webhooks, provider calls, the reconciler, idempotency and rate limits. Built on the
//! `prometheus` crate (its default features off: no protobuf).
//!
//! Counters and histograms are recorded where things happen, through the functions here;
//! they record nothing unless metrics are on (`COBRO_METRICS_BIND` or
//! `COBRO_METRICS_TOKEN`), so a server without them pays nothing. What the database holds
//! (deliveries pending, charges in flight, disabled webhooks) is counted when scraped.
//!
//! `deploy/grafana/cobro.json` graphs these; a test checks it names only metrics that exist.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Starts recording (once metrics are served somewhere).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// True once metrics are served somewhere.
pub fn is_on() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn on() -> Option<&'static Metrics> {
    ENABLED.load(Ordering::Relaxed).then(metrics)
}

/// Latency buckets, in seconds: from a cached read to a slow provider.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub struct Metrics {
    registry: Registry,
    /// Every family's name, whether or not it has a series yet.
    names: Vec<String>,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    db_wait: Histogram,
    db_waiting: IntGauge,
    db_retries: IntCounter,
    unavailable: IntCounter,
    writer_queue: IntGauge,
    writer_batch: Histogram,
    webhook_attempts: IntCounterVec,
    webhook_latency: Histogram,
    provider_duration: HistogramVec,
    provider_calls: IntCounterVec,
    reconciler_runs: IntCounter,
    reconciler_settled: IntCounter,
    idempotency: IntCounterVec,
    throttled: IntCounter,
    console_sign_ins: IntCounterVec,
    build_info: IntGaugeVec,
    /// Counted when scraped.
    db_connections: IntGaugeVec,
    deliveries: IntGaugeVec,
    webhooks_disabled: IntGauge,
    in_flight: IntGaugeVec,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(buckets.to_vec())
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let mut names = Vec::new();
        // The names are constants and valid, so registering cannot fail.
        macro_rules! register {
            ($metric:expr) => {{
                let metric = $metric.expect("a valid metric");
                for desc in prometheus::core::Collector::desc(&metric) {
                    names.push(desc.fq_name.clone());
                }
                registry
                    .register(Box::new(metric.clone()))
                    .expect("a unique metric");
                metric
            }};
        }
        Metrics {
            http_requests: register!(IntCounterVec::new(
                Opts::new("cobro_http_requests_total", "HTTP requests answered, by method, route template and status."),
                &["method", "route", "status"]
            )),
            http_duration: register!(HistogramVec::new(
                histogram("cobro_http_request_duration_seconds", "Time to answer an HTTP request, by method and route template.", SECONDS),
                &["method", "route"]
            )),
            db_wait: register!(Histogram::with_opts(histogram(
                "cobro_db_connection_wait_seconds",
                "Time a request waited for a database connection (permit and pool).",
                SECONDS
            ))),
            db_waiting: register!(IntGauge::new(
                "cobro_db_connection_waiters",
                "Requests waiting for a database connection now."
            )),
            db_retries: register!(IntCounter::new(
                "cobro_db_transaction_retries_total",
                "Transactions run again after contention (a serialization failure, a busy database, a changed row)."
            )),
            unavailable: register!(IntCounter::new(
                "cobro_unavailable_total",
                "Answers of 503: the database unreachable or busy past its limits."
            )),
            writer_queue: register!(IntGauge::new(
                "cobro_sqlite_writer_queue_depth",
                "Writes waiting for the SQLite writer."
            )),
            writer_batch: register!(Histogram::with_opts(histogram(
                "cobro_sqlite_writer_batch_size",
                "Writes committed together by one SQLite writer batch (one fsync).",
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]
            ))),
            webhook_attempts: register!(IntCounterVec::new(
                Opts::new("cobro_webhook_attempts_total", "Webhook delivery attempts, by outcome: delivered (2xx), refused (another status), unreachable."),
                &["outcome"]
            )),
            webhook_latency: register!(Histogram::with_opts(histogram(
                "cobro_webhook_delivery_latency_seconds",
                "From an event to its delivery's 2xx answer.",
                &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 1800.0, 3600.0]
            ))),
            provider_duration: register!(HistogramVec::new(
                histogram("cobro_provider_call_duration_seconds", "Time a payment provider took to answer, by gateway and operation.", SECONDS),
                &["gateway", "operation"]
            )),
            provider_calls: register!(IntCounterVec::new(
                Opts::new("cobro_provider_calls_total", "Calls to payment providers, by gateway, operation and outcome: answered (whatever the answer: a decline is an answer) or unknown (no answer to rely on; the reconciler asks again)."),
                &["gateway", "operation", "outcome"]
            )),
            reconciler_runs: register!(IntCounter::new(
                "cobro_reconciler_runs_total",
                "Rounds of the reconciler (charges and refunds in flight asked about)."
            )),
            reconciler_settled: register!(IntCounter::new(
                "cobro_reconciler_settled_total",
                "Charges and refunds the reconciler moved to a new status."
            )),
            idempotency: register!(IntCounterVec::new(
                Opts::new("cobro_idempotency_total", "Requests with an Idempotency-Key answered from a stored answer (replayed) or refused (conflict)."),
                &["outcome"]
            )),
            throttled: register!(IntCounter::new(
                "cobro_rate_limited_total",
                "Requests refused with 429 by the per-credential rate limit."
            )),
            console_sign_ins: register!(IntCounterVec::new(
                Opts::new("cobro_console_sign_ins_total", "Console sign-ins, by outcome: signed_in, refused (a wrong password or unknown email), throttled."),
                &["outcome"]
            )),
            build_info: register!(IntGaugeVec::new(
                Opts::new("cobro_build_info", "Always 1: the version and the database backend."),
                &["version", "backend"]
            )),
            db_connections: register!(IntGaugeVec::new(
                Opts::new("cobro_db_connections", "Database pool connections, by state (in_use, idle)."),
                &["state"]
            )),
            deliveries: register!(IntGaugeVec::new(
                Opts::new("cobro_webhook_deliveries", "Webhook deliveries by state: pending (waiting or retrying), failing (pending after a failed attempt), given_up."),
                &["state"]
            )),
            webhooks_disabled: register!(IntGauge::new(
                "cobro_webhooks_disabled",
                "Webhooks disabled, by hand or after failures."
            )),
            in_flight: register!(IntGaugeVec::new(
                Opts::new("cobro_in_flight", "Charges and refunds waiting for their provider's answer, by kind and gateway."),
                &["kind", "gateway"]
            )),
            registry,
            names,
        }
    }
}

pub fn http_request(method: &str, route: &str, status: u16, took: Duration) {
    if let Some(m) = on() {
        m.http_requests
            .with_label_values(&[method, route, status_text(status)])
            .inc();
        m.http_duration
            .with_label_values(&[method, route])
            .observe(took.as_secs_f64());
    }
}

/// A status as a label without allocating for the common ones.
fn status_text(status: u16) -> &'static str {
    const KNOWN: &[(u16, &str)] = &[
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (302, "302"),
        (303, "303"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (409, "409"),
        (413, "413"),
        (415, "415"),
        (422, "422"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
    ];
    KNOWN
        .iter()
        .find(|(code, _)| *code == status)
        .map_or("other", |(_, text)| text)
}

/// A request starts or stops waiting for a connection; `waited` once it has one.
pub fn db_waiting(delta: i64) {
    if let Some(m) = on() {
        m.db_waiting.add(delta);
    }
}

pub fn db_waited(waited: Duration) {
    if let Some(m) = on() {
        m.db_wait.observe(waited.as_secs_f64());
    }
}

pub fn transaction_retried() {
    if let Some(m) = on() {
        m.db_retries.inc();
    }
}

pub fn unavailable() {
    if let Some(m) = on() {
        m.unavailable.inc();
    }
}

pub fn writer_queued(delta: i64) {
    if let Some(m) = on() {
        m.writer_queue.add(delta);
    }
}

pub fn writer_batch(size: usize) {
    if let Some(m) = on() {
        m.writer_batch.observe(size as f64);
    }
}

/// One webhook attempt: `delivered_after` (from the event) when it was answered 2xx.
pub fn webhook_attempt(outcome: &str, delivered_after: Option<Duration>) {
    if let Some(m) = on() {
        m.webhook_attempts.with_label_values(&[outcome]).inc();
        if let Some(after) = delivered_after {
            m.webhook_latency.observe(after.as_secs_f64());
        }
    }
}

/// One call to a provider: `outcome` is `answered` or `unknown`.
pub fn provider_call(gateway: &str, operation: &str, outcome: &str, took: Duration) {
    if let Some(m) = on() {
        m.provider_duration
            .with_label_values(&[gateway, operation])
            .observe(took.as_secs_f64());
        m.provider_calls
            .with_label_values(&[gateway, operation, outcome])
            .inc();
    }
}

pub fn reconciler_run(settled: usize) {
    if let Some(m) = on() {
        m.reconciler_runs.inc();
        m.reconciler_settled.inc_by(settled as u64);
    }
}

pub fn idempotency(outcome: &str) {
    if let Some(m) = on() {
        m.idempotency.with_label_values(&[outcome]).inc();
    }
}

pub fn throttled() {
    if let Some(m) = on() {
        m.throttled.inc();
    }
}

/// A console sign-in attempt: `signed_in`, `refused` or `throttled` (a rise in refusals is
/// someone guessing passwords).
pub fn console_sign_in(outcome: &str) {
    if let Some(m) = on() {
        m.console_sign_ins.with_label_values(&[outcome]).inc();
    }
}

/// What the database holds now, counted when scraped.
#[derive(Debug, Default)]
pub struct Counted {
    pub connections_in_use: i64,
    pub connections_idle: i64,
    pub deliveries_pending: i64,
    pub deliveries_failing: i64,
    pub deliveries_given_up: i64,
    pub webhooks_disabled: i64,
    /// (kind, gateway, how many)
    pub in_flight: Vec<(&'static str, String, i64)>,
}

/// The exposition: every metric, with `counted` set first.
pub fn render(backend: &str, counted: &Counted) -> String {
    let m = metrics();
    m.build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION"), backend])
        .set(1);
    m.db_connections
        .with_label_values(&["in_use"])
        .set(counted.connections_in_use);
    m.db_connections
        .with_label_values(&["idle"])
        .set(counted.connections_idle);
    for (state, n) in [
        ("pending", counted.deliveries_pending),
        ("failing", counted.deliveries_failing),
        ("given_up", counted.deliveries_given_up),
    ] {
        m.deliveries.with_label_values(&[state]).set(n);
    }
    m.webhooks_disabled.set(counted.webhooks_disabled);
    m.in_flight.reset();
    for kind in ["charge", "refund"] {
        // Always shown, so that a graph of zero is not a missing series.
        m.in_flight.with_label_values(&[kind, "all"]).set(0);
    }
    for (kind, gateway, n) in &counted.in_flight {
        m.in_flight
            .with_label_values(&[*kind, gateway.as_str()])
            .set(*n);
        m.in_flight.with_label_values(&[kind, "all"]).add(*n);
    }
    let mut out = Vec::new();
    let encoded = TextEncoder::new().encode(&m.registry.gather(), &mut out);
    if let Err(err) = encoded {
        log::error!("encoding metrics: {err}");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Every metric family cobro exports (a histogram's series add `_bucket`, `_sum` and
/// `_count`), for the dashboard's test.
pub fn names() -> Vec<String> {
    metrics().names.clone()
}

/// `GET /metrics` on `COBRO_METRICS_BIND`'s own address: no credential (it is meant for a
/// private network, as Prometheus' exporters are).
pub async fn scrape(db: actix_web::web::Data<crate::db::Db>) -> actix_web::HttpResponse {
    let backend = db.backend.name();
    let state = db.pool.state();
    let counted = db
        .run(move |conn| {
            let (pending, failing, given_up) = crate::webhooks::store::delivery_counts(conn)?;
            let mut in_flight = Vec::new();
            for (gateway, n) in crate::payments::store::in_flight_by_gateway(conn)? {
                in_flight.push(("charge", gateway, n));
            }
            for (gateway, n) in crate::refunds::store::in_flight_by_gateway(conn)? {
                in_flight.push(("refund", gateway, n));
            }
            Ok(Counted {
                connections_in_use: i64::from(state.connections - state.idle_connections),
                connections_idle: i64::from(state.idle_connections),
                deliveries_pending: pending,
                deliveries_failing: failing,
                deliveries_given_up: given_up,
                webhooks_disabled: crate::webhooks::store::disabled_count(conn)?,
                in_flight,
            })
        })
        .await;
    match counted {
        Ok(counted) => actix_web::HttpResponse::Ok()
            .content_type(TextEncoder::new().format_type())
            .body(render(backend, &counted)),
        // The database's own answer says what is wrong; the exposition without it would lie.
        Err(err) => actix_web::ResponseError::error_response(&err),
    }
}

/// `GET /metrics` on the API's own address: only with `Authorization: Bearer` and
/// `COBRO_METRICS_TOKEN` (compared in constant time).
pub async fn scrape_with_token(
    req: actix_web::HttpRequest,
    db: actix_web::web::Data<crate::db::Db>,
    settings: actix_web::web::Data<crate::config::Settings>,
) -> actix_web::HttpResponse {
    use sha2::{Digest, Sha256};
    let sent = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let expected = settings.metrics_token.as_deref().unwrap_or_default();
    // Digests of equal length compared byte by byte, without stopping early.
    let (a, b) = (Sha256::digest(sent.trim()), Sha256::digest(expected));
    let same = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0;
    if expected.is_empty() || !same {
        return actix_web::ResponseError::error_response(&crate::error::ApiError::NotAuthenticated);
    }
    scrape(db).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `cobro_…` name in the Grafana dashboard's queries is one cobro exports (a
    /// histogram's `_bucket`, `_sum` and `_count` series included), and every panel asks
    /// something.
    #[test]
    fn the_dashboard_names_only_metrics_that_exist() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../deploy/grafana/cobro.json")).expect("JSON");
        let exported = names();
        let known = |name: &str| {
            exported.iter().any(|e| {
                name == e
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| name == format!("{e}{suffix}"))
            })
        };
        let mut named = 0;
        for panel in dashboard["panels"].as_array().expect("panels") {
            if panel["type"] == "row" {
                continue;
            }
            let targets = panel["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{}", panel["title"]);
            for target in targets {
                let expr = target["expr"].as_str().expect("an expression");
                let mut rest = expr;
                while let Some(at) = rest.find("cobro_") {
                    let name: String = rest[at..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    assert!(known(&name), "{name} (in {expr}) is not exported");
                    named += 1;
                    rest = &rest[at + name.len()..];
                }
            }
        }
        assert!(named > 20, "{named}");
        // And every family is on the dashboard somewhere.
        let text = include_str!("../deploy/grafana/cobro.json");
        for name in exported {
            assert!(text.contains(&name), "{name} is on no panel");
        }
    }

    #[test]
    fn nothing_is_recorded_until_metrics_are_on_and_the_exposition_parses() {
        // (One process-wide registry: this test turns metrics on for the unit tests.)
        enable();
        http_request("GET", "/payments/{id}/", 200, Duration::from_millis(3));
        http_request("GET", "/payments/{id}/", 200, Duration::from_millis(5));
        writer_batch(3);
        let text = render("sqlite", &Counted::default());
        assert!(
            text.contains(
                r#"cobro_http_requests_total{method="GET",route="/payments/{id}/",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"cobro_build_info{backend="sqlite",version=""#),
            "{text}"
        );
        assert!(
            text.contains("cobro_sqlite_writer_batch_size_count 1"),
            "{text}"
        );
        assert_eq!(status_text(201), "201");
        assert_eq!(status_text(299), "other");
    }
}
