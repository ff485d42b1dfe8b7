//! A PostgreSQL outage under a running `cobro serve`, as an operator meets one: the test
//! starts a cluster of its own, stops it while clients create payments, and starts it again.
//! While it is down every request gets a quick 503 with `Retry-After` in its door's shape
//! (a retry, not a bug); once it is back the same process answers 2xx within seconds, and
//! every payment a client was told about (a 201) is there, once.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{http_answer, text, Backend, Client, PgCluster, Server, TestDb};

/// What a client that retries (with the same Idempotency-Key) was told: each key's payment,
/// and every status it met on the way.
#[derive(Default)]
struct Told {
    created: BTreeMap<String, i64>,
    statuses: BTreeMap<u16, usize>,
}

/// Creates payments one after the other until `stop`, each retried with its key until a
/// 201 (a 503 or a 409 "in progress" means: try again shortly).
fn client(server: &str, token: &str, workspace: &str, name: usize, stop: Arc<AtomicBool>) -> Told {
    let client = Client::new(server, token, workspace);
    let mut told = Told::default();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("outage-{name}-{n}");
        let fields =
            json!({"amount": n, "currency": "CLP", "date": "2026-12-01", "description": key});
        loop {
            match client.create(&key, &fields) {
                Ok((201, body)) => {
                    *told.statuses.entry(201).or_default() += 1;
                    told.created
                        .insert(key.clone(), body["id"].as_i64().unwrap());
                    break;
                }
                Ok((status, body)) => {
                    assert!(matches!(status, 503 | 409), "{key}: {status} {body}");
                    *told.statuses.entry(status).or_default() += 1;
                }
                Err(no) => panic!("{key}: no answer: {}", no.message),
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
    told
}

#[test]
fn a_postgresql_outage_answers_503_and_the_same_server_recovers() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let db = TestDb {
        backend: Backend::Postgres,
        url: cluster.url(),
        dir: tempfile::tempdir().unwrap(),
        drop_database: None,
    };
    let (token, workspace) = db.user_with_workspace("ops@example.com");
    let secret =
        text(&db.cobro_json(&["key", "create", &workspace, "--mode", "live", "--json"])["key"])
            .to_string();
    let server = Server::start(&db, &["--no-bootstrap"]);
    server.wait_until_healthy();
    let base = server.url("");
    let merchant = Client::new(&base, &token, &workspace);
    let order =
        json!({"amount": 100, "currency": "CLP", "date": "2026-12-01", "description": "checkout"});
    let (_, shown) = merchant.expect_answer("POST", "/payments/", Some(&order));
    let checkout_url = text(&shown["checkout_url"]).to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|name| {
            let (base, token, workspace, stop) =
                (base.clone(), token.clone(), workspace.clone(), stop.clone());
            thread::spawn(move || client(&base, &token, &workspace, name, stop))
        })
        .collect();
    thread::sleep(Duration::from_millis(500));

    cluster.stop();
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(20))
        .build();
    let piriod = [
        ("Authorization", format!("Token {token}")),
        ("x-simple-workspace", workspace.clone()),
    ];
    let piriod: Vec<(&str, &str)> = piriod.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let bearer = format!("Bearer {secret}");
    let billingrails = [("Authorization", bearer.as_str())];
    // Let the pool find out; then every answer is a quick 503 in its door's shape.
    thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        for (path, headers, body) in [
            (
                "/payments/",
                &piriod[..],
                json!({"detail": "Service temporarily unavailable, try again later."}),
            ),
            (
                "/customers/",
                &piriod[..],
                json!({"detail": "Service temporarily unavailable, try again later."}),
            ),
            ("/v1/payments", &billingrails[..], Value::Null),
        ] {
            let asked = Instant::now();
            let answer = http_answer(&agent, "GET", &server.url(path), headers, None)
                .expect("an answer while the database is down");
            assert_eq!(
                answer.status,
                503,
                "{path}: {}\n{}",
                answer.body,
                server.log()
            );
            assert_eq!(answer.retry_after.as_deref(), Some("10"), "{path}");
            if body.is_null() {
                assert_eq!(
                    answer.body["error"]["code"], "service_unavailable",
                    "{}",
                    answer.body
                );
                assert_eq!(answer.body["error"]["type"], "api_error");
            } else {
                assert_eq!(answer.body, body);
            }
            assert!(
                asked.elapsed() < Duration::from_secs(3),
                "{path} took {:?}",
                asked.elapsed()
            );
        }
        let health = http_answer(&agent, "GET", &server.url("/health/"), &[], None).unwrap();
        assert_eq!(
            (health.status, health.retry_after.as_deref()),
            (503, Some("10"))
        );
        // The payer's checkout page says so in a page, not in JSON.
        let page = http_answer(
            &agent,
            "GET",
            &format!("{}/", checkout_url.trim_end_matches('/')),
            &[],
            None,
        )
        .unwrap();
        assert_eq!(
            (page.status, page.retry_after.as_deref()),
            (503, Some("10"))
        );
        assert!(
            page.body
                .as_str()
                .is_some_and(|html| html.contains("Temporarily unavailable")),
            "{}",
            page.body
        );
        thread::sleep(Duration::from_millis(500));
    }

    cluster.start_again();
    let back = Instant::now();
    loop {
        let answer = http_answer(&agent, "GET", &server.url("/payments/"), &piriod, None).unwrap();
        if answer.status == 200 {
            break;
        }
        assert_eq!(answer.status, 503, "{}", answer.body);
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "still {} after 10 s\n{}",
            answer.status,
            server.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "2xx {:?} after PostgreSQL accepted connections again",
        back.elapsed()
    );
    // The clients get their payments made too.
    thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let told: Vec<Told> = clients.into_iter().map(|c| c.join().unwrap()).collect();

    let created: BTreeMap<&String, &i64> = told.iter().flat_map(|t| t.created.iter()).collect();
    let met_503 = told
        .iter()
        .map(|t| t.statuses.get(&503).copied().unwrap_or(0))
        .sum::<usize>();
    assert!(met_503 > 0, "the clients never met the outage");
    let client = Client::new(&base, &token, &workspace);
    let (status, page) = client.expect_answer("GET", "/payments/?page_size=1", None);
    assert_eq!(status, 200);
    // Every payment a client was told about, and the one made for the checkout page.
    assert_eq!(
        page["count"].as_u64(),
        Some(created.len() as u64 + 1),
        "stored = acknowledged"
    );
    for (key, id) in &created {
        let (status, payment) = client.expect_answer("GET", &format!("/payments/{id}/"), None);
        assert_eq!(
            (status, payment["description"].as_str()),
            (200, Some(key.as_str()))
        );
    }

    // The same process throughout, and the log tells outages apart from bugs.
    let log = server.log();
    for line in log
        .lines()
        .filter(|l| !l.contains("actix_web::middleware::logger"))
    {
        eprintln!("{line}");
    }
    assert!(log.contains("503 no database connection"), "{log}");
    assert!(!log.contains("500 internal error"), "{log}");
    assert!(log.contains("connected to the database again"), "{log}");
    eprintln!(
        "{} payments acknowledged; {met_503} answers were 503",
        created.len()
    );
    server.stop();
}
