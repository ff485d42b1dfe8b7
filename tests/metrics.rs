//! `GET /metrics` of a real `cobro serve` (a process of its own, so that its counters are
//! this test's alone), scraped while clients create payments and while a webhook receiver is
//! down and comes back. Every scrape is read whole with a Prometheus text-format parser.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use common::receiver::Receiver;
use common::{for_each_backend, free_port, http_get, Backend, Client, Server, TestDb};

for_each_backend!(
    metrics_count_what_happened,
    metrics_are_served_only_where_configured
);

const TOKEN: &str = "metrics-token-for-tests";

/// One scrape, parsed whole: every sample by its name and labels.
struct Scrape {
    samples: Vec<prometheus_parse::Sample>,
}

impl Scrape {
    fn of(server: &Server) -> Scrape {
        let url = server.url("/metrics");
        let answer = ureq::get(&url)
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .call()
            .expect("a 200 from /metrics");
        assert!(
            answer.content_type().starts_with("text/plain"),
            "{}",
            answer.content_type()
        );
        let body = answer.into_string().expect("text");
        let lines = body.lines().map(|l| Ok(l.to_string()));
        let parsed = prometheus_parse::Scrape::parse(lines).expect("a valid exposition");
        // Every family says what it is.
        for sample in &parsed.samples {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| sample.metric.strip_suffix(s))
                .filter(|base| parsed.docs.contains_key(*base))
                .unwrap_or(&sample.metric);
            assert!(
                parsed.docs.contains_key(family),
                "no HELP for {}",
                sample.metric
            );
        }
        Scrape {
            samples: parsed.samples,
        }
    }

    /// The value of the sample `name` whose labels include `labels` (0 when absent).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.last().map_or(0.0, |b| b.count)
                }
                prometheus_parse::Value::Summary(_) => 0.0,
            })
            .sum()
    }
}

fn created(scrape: &Scrape) -> f64 {
    scrape.value(
        "cobro_http_requests_total",
        &[
            ("method", "POST"),
            ("route", "/payments/"),
            ("status", "201"),
        ],
    )
}

fn pending(scrape: &Scrape) -> f64 {
    scrape.value("cobro_webhook_deliveries", &[("state", "pending")])
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn metrics_count_what_happened(db: &TestDb) {
    let (token, workspace) = db.user_with_workspace("ops@example.com");
    let server = Server::start_with(
        db,
        free_port(),
        &["--no-bootstrap"],
        &[
            ("COBRO_METRICS_TOKEN", TOKEN),
            ("COBRO_WEBHOOK_ALLOW_PRIVATE", "true"),
            ("COBRO_WEBHOOK_FIRST_RETRY_MS", "100"),
        ],
    );
    server.wait_until_healthy();
    let client = Client::new(&server.url(""), &token, &workspace);
    let receiver = Receiver::start();
    // The receiver is down: it answers 503 until told otherwise.
    receiver.fail_next(&[503; 10_000]);
    let (status, hook) = client
        .call(
            "POST",
            "/webhooks/",
            Some(&json!({"url": receiver.url, "events": ["payment.*"]})),
        )
        .unwrap();
    assert_eq!(status, 201, "{hook}");
    let before = Scrape::of(&server);
    assert_eq!(created(&before), 0.0);
    assert_eq!(
        before.value(
            "cobro_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // A short load, scraped all along; each scrape parses whole.
    let done = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let scraper = {
        let (done, url) = (done.clone(), server.url(""));
        thread::spawn(move || {
            let mut scrapes = 0;
            while !done.load(Ordering::Relaxed) {
                let answer = ureq::get(&format!("{url}/metrics"))
                    .set("Authorization", &format!("Bearer {TOKEN}"))
                    .call()
                    .expect("a scrape");
                let body = answer.into_string().unwrap();
                prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
                    .expect("parses during load");
                scrapes += 1;
                thread::sleep(Duration::from_millis(20));
            }
            scrapes
        })
    };
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (client, acknowledged) = (
                Client::new(&server.url(""), &token, &workspace),
                acknowledged.clone(),
            );
            thread::spawn(move || {
                for i in 0..25 {
                    let body = json!({"amount": 100 + i, "currency": "CLP", "date": "2026-12-01", "description": "load"});
                    let (status, _) = client.call("POST", "/payments/", Some(&body)).unwrap();
                    if status == 201 {
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // And one refused, which counts under its own status.
                client.call("POST", "/payments/", Some(&json!({"amount": 0}))).unwrap();
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    assert!(scraper.join().unwrap() > 0);
    let after = Scrape::of(&server);
    let sent = acknowledged.load(Ordering::Relaxed) as f64;
    assert_eq!(sent, 100.0);
    assert_eq!(created(&after) - created(&before), sent, "201s counted");
    assert_eq!(
        after.value(
            "cobro_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/payments/"),
                ("status", "400")
            ]
        ),
        4.0
    );
    assert!(
        after.value(
            "cobro_http_request_duration_seconds",
            &[("method", "POST"), ("route", "/payments/")]
        ) >= 104.0
    );
    // On SQLite, the writes went through the writer in batches.
    let batches = after.value("cobro_sqlite_writer_batch_size", &[]);
    match db.backend {
        Backend::Sqlite => assert!(batches > 0.0, "no writer batches"),
        Backend::Postgres => assert_eq!(batches, 0.0),
    }

    // While the receiver is down the backlog grows, and the webhook is turned off.
    let path = format!("/webhooks/{}/", hook["id"]);
    wait_until("the webhook disabled", Duration::from_secs(30), || {
        client.call("GET", &path, None).unwrap().1["enabled"] == false
    });
    let down = Scrape::of(&server);
    assert_eq!(down.value("cobro_webhooks_disabled", &[]), 1.0);
    let backlog = pending(&down);
    assert!(backlog >= 97.0, "backlog {backlog}");
    assert!(down.value("cobro_webhook_attempts_total", &[("outcome", "refused")]) >= 3.0);
    for i in 0..5 {
        let body = json!({"amount": 7, "currency": "CLP", "date": "2026-12-01", "description": format!("more {i}")});
        assert_eq!(
            client.call("POST", "/payments/", Some(&body)).unwrap().0,
            201
        );
    }
    assert_eq!(
        pending(&Scrape::of(&server)),
        backlog + 5.0,
        "rises with each event"
    );

    // Back up, and enabled again: the backlog drains to nothing.
    receiver.recover();
    let (status, _) = client
        .call("PATCH", &path, Some(&json!({"enabled": true})))
        .unwrap();
    assert_eq!(status, 200);
    let mut last = Scrape::of(&server);
    wait_until("the backlog drained", Duration::from_secs(60), || {
        last = Scrape::of(&server);
        pending(&last) == 0.0
    });
    assert_eq!(last.value("cobro_webhooks_disabled", &[]), 0.0);
    // Console sign-ins, by outcome.
    db.cobro_with_input(
        &["user", "set-password", "ops@example.com"],
        "a long ops password\n",
    )
    .succeeded();
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    for password in ["not the password", "a long ops password"] {
        let _ = agent
            .post(&server.url("/dashboard/sign-in/"))
            .send_form(&[("email", "ops@example.com"), ("password", password)]);
    }
    let signed = Scrape::of(&server);
    for outcome in ["refused", "signed_in"] {
        assert_eq!(
            signed.value("cobro_console_sign_ins_total", &[("outcome", outcome)]),
            1.0,
            "{outcome}"
        );
    }
    let delivered = last.value("cobro_webhook_attempts_total", &[("outcome", "delivered")]);
    assert!(delivered >= backlog + 5.0, "{delivered} delivered");
    assert!(last.value("cobro_webhook_delivery_latency_seconds", &[]) >= backlog + 5.0);
    // The pool served the scrape itself.
    assert!(
        last.value("cobro_db_connections", &[("state", "in_use")])
            + last.value("cobro_db_connections", &[("state", "idle")])
            >= 1.0
    );
    server.stop();
}

fn metrics_are_served_only_where_configured(db: &TestDb) {
    let (token, workspace) = db.user_with_workspace("ops@example.com");
    // Off by default.
    let plain = Server::start(db, &["--no-bootstrap"]);
    plain.wait_until_healthy();
    assert_eq!(http_get(&plain.url("/metrics"), &[]).unwrap().0, 404);
    plain.stop();

    // On an address of its own, with no credential; the API's address has none.
    let metrics_port = free_port();
    let bind = format!("127.0.0.1:{metrics_port}");
    let own = Server::start_with(
        db,
        free_port(),
        &["--no-bootstrap"],
        &[("COBRO_METRICS_BIND", &bind)],
    );
    own.wait_until_healthy();
    let client = Client::new(&own.url(""), &token, &workspace);
    assert_eq!(client.call("GET", "/payments/", None).unwrap().0, 200);
    let mut body = String::new();
    wait_until(
        "the metrics address",
        Duration::from_secs(10),
        || match ureq::get(&format!("http://{bind}/metrics")).call() {
            Ok(answer) => {
                body = answer.into_string().unwrap();
                true
            }
            Err(_) => false,
        },
    );
    let parsed = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let counted: HashMap<String, f64> = parsed
        .samples
        .iter()
        .filter(|s| {
            s.metric == "cobro_http_requests_total" && s.labels.get("route") == Some("/payments/")
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => (s.labels.get("status").unwrap().to_string(), v),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(counted.get("200"), Some(&1.0), "{body}");
    assert_eq!(http_get(&own.url("/metrics"), &[]).unwrap().0, 404);
    own.stop();

    // On the API's address, to the token only (a user's token is not it).
    let guarded = Server::start_with(
        db,
        free_port(),
        &["--no-bootstrap"],
        &[("COBRO_METRICS_TOKEN", TOKEN)],
    );
    guarded.wait_until_healthy();
    let url = guarded.url("/metrics");
    assert_eq!(http_get(&url, &[]).unwrap().0, 401);
    let user = format!("Bearer {token}");
    assert_eq!(http_get(&url, &[("Authorization", &user)]).unwrap().0, 401);
    let wrong = format!("Bearer {TOKEN}x");
    assert_eq!(http_get(&url, &[("Authorization", &wrong)]).unwrap().0, 401);
    let right = format!("Bearer {TOKEN}");
    let (status, _) = http_get(&url, &[("Authorization", &right)]).unwrap();
    assert_eq!(status, 200);
    guarded.stop();
}
