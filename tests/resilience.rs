//! Safe retries, races and crashes, with the real `cobro serve` processes:
//!
//! - `race_two_servers_cancel_against_success` (PostgreSQL only): two servers on one
//!   database, and for each of 50 payments several cancels and several success marks at
//!   the same instant, split across both servers. Exactly one move may win.
//! - `one_idempotency_key_through_two_servers_runs_once` (PostgreSQL only): the same keys
//!   sent at the same instant to two servers on one database: one payment per key.
//! - `crash_keeps_every_acknowledged_create` (SQLite and PostgreSQL): creates at full speed
//!   while the server is killed with SIGKILL and restarted, several times; every payment
//!   whose create got a 201 must be there afterwards, unchanged. Each create carries an
//!   `Idempotency-Key`, and a create left without an answer is retried with it, as a client
//!   would: in the end every create is acknowledged exactly once, with nothing doubled.
//!   `scripts/crash-test.sh` runs it with its report visible.
//! - `crash_while_a_gateway_answers` (SQLite and PostgreSQL): the server is killed with
//!   SIGKILL while a charge is at the gateway (the sandbox's slow card); after a restart the
//!   charge is settled by asking the gateway again, once, with nothing charged twice.
//! - `crash_while_stripe_answers` (SQLite and PostgreSQL, with localstripe): the same at
//!   Stripe, behind a proxy that holds its answers back for 3 s: the server dies after the
//!   PaymentIntent was made and before its answer came; after a restart the reconciler finds
//!   it and settles the payment, with exactly one PaymentIntent for the attempt.
//! - `refunds_through_two_servers_never_exceed_what_was_collected` (PostgreSQL only): ten
//!   refunds of 300 against 1000 collected, at the same instant, split across two servers:
//!   exactly three succeed, several times over.
//! - `crash_during_refunds_doubles_nothing` (SQLite and PostgreSQL, with localstripe):
//!   refunds at full speed through Stripe (answering 200 ms late) while the server is killed
//!   with SIGKILL and restarted; afterwards every acknowledged refund is there, none is left
//!   pending, none went to Stripe twice, what cobro says went back is what Stripe holds, and
//!   no payment's refunds exceed what it collected.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rand::Rng;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use common::{for_each_backend, Client, NoAnswer, Server, TestDb};

for_each_backend!(
    crash_keeps_every_acknowledged_create,
    crash_while_a_gateway_answers,
    crash_while_stripe_answers,
    crash_during_refunds_doubles_nothing,
);

/// The localstripe `scripts/test.sh` started; None skips the test (unless REQUIRE_STRIPE=1).
fn localstripe() -> Option<String> {
    let found = std::env::var("TEST_STRIPE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if found.is_none() && std::env::var("REQUIRE_STRIPE").as_deref() == Ok("1") {
        panic!("REQUIRE_STRIPE=1 but TEST_STRIPE_URL is not set");
    }
    found
}

/// A GET of localstripe's own API.
fn stripe_get(stripe: &str, path: &str) -> Value {
    let text = ureq::get(&format!("{stripe}{path}"))
        .set("Authorization", "Bearer sk_test_x")
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn crash_while_stripe_answers(db: &TestDb) {
    let Some(stripe) = localstripe() else {
        return;
    };
    // Stripe answers, 3 s late: long enough for the server to die waiting.
    let slow = common::proxy::start(&stripe, |line, _| {
        if line.starts_with("POST /v1/payment_intents") {
            common::proxy::Fate::Delay(Duration::from_secs(3))
        } else {
            common::proxy::Fate::Pass
        }
    });
    let (token, workspace) = db.user_with_workspace("stripe-crash@example.com");
    let port = common::free_port();
    let key = "3".repeat(64);
    let env = [
        ("COBRO_STRIPE_API_BASE", slow.url.as_str()),
        ("COBRO_RECONCILE_AFTER_SECONDS", "1"),
        ("COBRO_SECRET_KEY", key.as_str()),
    ];
    let server = Server::start_with(db, port, &["--no-bootstrap"], &env);
    server.wait_until_healthy();
    let client = Client::new(&server.url(""), &token, &workspace);
    let test = [("x-piriod-test-mode", "true")];
    let integration = json!({"gateway": "stripe", "name": "Stripe",
        "credentials": {"secret_key": "sk_test_51QcrashTest000000000000000001"}});
    let (status, made) = client
        .send("POST", "/integrations/", Some(&integration), &test)
        .unwrap();
    assert_eq!(status, 201, "{made}");
    let card = json!({"gateway": "stripe", "gateway_data": {"payment_method": "pm_card_visa"}});
    let (status, source) = client
        .send("POST", "/sources/", Some(&card), &test)
        .unwrap();
    assert_eq!(status, 201, "{source}");
    let fields = json!({"amount": 1200, "currency": "CLP", "date": "2026-12-01", "description": "at Stripe"});
    let (_, payment) = client
        .send("POST", "/payments/", Some(&fields), &test)
        .unwrap();
    let id = payment["id"].as_i64().unwrap();
    let charging = {
        let client = Client::new(&server.url(""), &token, &workspace);
        let body = json!({"source": source["id"]});
        thread::spawn(move || {
            client.send(
                "POST",
                &format!("/payments/{id}/authorize/"),
                Some(&body),
                &test,
            )
        })
    };
    // The PaymentIntent is made at Stripe; its answer is held back: the server dies.
    thread::sleep(Duration::from_millis(1500));
    server.kill();
    assert!(
        charging.join().unwrap().is_err(),
        "the charge got an answer from a dead server"
    );

    let restarted = Server::start_with(db, port, &["--no-bootstrap"], &env);
    restarted.wait_until_healthy();
    let client = Client::new(&restarted.url(""), &token, &workspace);
    let deadline = Instant::now() + Duration::from_secs(30);
    let settled = loop {
        let (_, now) = client
            .send("GET", &format!("/payments/{id}/"), None, &test)
            .unwrap();
        if now["status"] != "processing" {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "still processing:\n{}",
            restarted.log()
        );
        thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(
        (settled["status"].as_str(), settled["balance"].as_i64()),
        (Some("succeeded"), Some(0)),
        "{}",
        restarted.log()
    );
    let (_, tried) = client
        .send("GET", &format!("/payments/{id}/attempts/"), None, &test)
        .unwrap();
    let reference = tried[0]["gateway_reference"]
        .as_str()
        .expect("the PaymentIntent found")
        .to_string();
    // Exactly one PaymentIntent carries this attempt's key.
    let intent = stripe_get(&stripe, &format!("/v1/payment_intents/{reference}"));
    let key = intent["metadata"]["cobro_key"].clone();
    let all = stripe_get(&stripe, "/v1/payment_intents?limit=100000");
    let same = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pi| pi["metadata"]["cobro_key"] == key)
        .count();
    assert_eq!((same, intent["status"].as_str()), (1, Some("succeeded")));
}

// ---------------------------------------------------------------------------------------
// A crash between a gateway's answer and cobro's record of it
// ---------------------------------------------------------------------------------------

fn crash_while_a_gateway_answers(db: &TestDb) {
    let (token, workspace) = db.user_with_workspace("crash@example.com");
    let port = common::free_port();
    let env = [("COBRO_SANDBOX_SETTLE_SECONDS", "1")];
    let server = Server::start_with(db, port, &["--no-bootstrap"], &env);
    server.wait_until_healthy();
    let client = Client::new(&server.url(""), &token, &workspace);
    let test = [("x-piriod-test-mode", "true")];
    let fields =
        json!({"amount": 900, "currency": "CLP", "date": "2026-12-01", "description": "slow"});
    let (status, payment) = client
        .send("POST", "/payments/", Some(&fields), &test)
        .unwrap();
    assert_eq!(status, 201, "{payment}");
    let card = json!({"gateway": "sandbox", "gateway_data": {"token": "tok_slow"}});
    let (status, source) = client
        .send("POST", "/sources/", Some(&card), &test)
        .unwrap();
    assert_eq!(status, 201, "{source}");
    let id = payment["id"].as_i64().unwrap();
    // Sent with an Idempotency-Key, as a careful client does.
    let started = Instant::now();
    let keyed = [
        ("x-piriod-test-mode", "true"),
        ("Idempotency-Key", "slow-1"),
    ];
    let body = json!({"source": source["id"]});
    let charging = {
        let client = Client::new(&server.url(""), &token, &workspace);
        let body = body.clone();
        thread::spawn(move || {
            client.send(
                "POST",
                &format!("/payments/{id}/authorize/"),
                Some(&body),
                &keyed,
            )
        })
    };
    // The charge is at the gateway (it answers after 3 s): the server dies.
    thread::sleep(Duration::from_millis(800));
    server.kill();
    assert!(
        charging.join().unwrap().is_err(),
        "the charge got an answer from a dead server"
    );

    let restarted = Server::start_with(db, port, &["--no-bootstrap"], &env);
    restarted.wait_until_healthy();
    let client = Client::new(&restarted.url(""), &token, &workspace);
    let deadline = Instant::now() + Duration::from_secs(20);
    let settled = loop {
        let (_, now) = client
            .send("GET", &format!("/payments/{id}/"), None, &test)
            .unwrap();
        if now["status"] != "processing" {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "still processing:\n{}",
            restarted.log()
        );
        thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        (settled["status"].as_str(), settled["balance"].as_i64()),
        (Some("succeeded"), Some(0))
    );
    // The client retries with its key once the dead request's claim has lapsed (10 s): the
    // work began, so it is not run again, nor is the key taken over.
    thread::sleep(Duration::from_secs(11).saturating_sub(started.elapsed()));
    let (status, retried) = client
        .send(
            "POST",
            &format!("/payments/{id}/authorize/"),
            Some(&body),
            &keyed,
        )
        .unwrap();
    assert_eq!(status, 409, "{retried}");
    let (_, tried) = client
        .send("GET", &format!("/payments/{id}/attempts/"), None, &test)
        .unwrap();
    let tried = tried.as_array().unwrap();
    assert_eq!(
        (tried.len(), tried[0]["status"].as_str()),
        (1, Some("succeeded")),
        "one charge, settled once"
    );
    let (_, events) = client
        .send(
            "GET",
            &format!("/events/?object_type=payment&object_id={id}"),
            None,
            &test,
        )
        .unwrap();
    let succeeded = events["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "payment.succeeded")
        .count();
    assert_eq!(succeeded, 1);
}

// ---------------------------------------------------------------------------------------
// Two servers, one database: cancel against success
// ---------------------------------------------------------------------------------------

/// Payments raced.
const RACED: usize = 50;
/// Cancels, and as many success marks, sent for each payment at once.
const EACH: usize = 3;
/// Payments raced together: 5 × 2 × EACH = 30 requests released by one barrier.
const AT_ONCE: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Move {
    /// `POST /payments/{id}/cancel/`
    Cancel,
    /// `PATCH /payments/{id}/ {"status": "succeeded"}`
    Succeed,
}

impl Move {
    /// The status the move asks for.
    fn target(self) -> &'static str {
        match self {
            Move::Cancel => "cancelled",
            Move::Succeed => "succeeded",
        }
    }
}

/// One request of the race and what it got.
struct Sent {
    payment: i64,
    action: Move,
    /// 0 for server A, 1 for server B.
    server: usize,
    answer: Result<(u16, Value), NoAnswer>,
}

impl Sent {
    fn describe(&self) -> String {
        let what = match self.action {
            Move::Cancel => "cancel",
            Move::Succeed => "success mark",
        };
        let server = ["A", "B"][self.server];
        match &self.answer {
            Ok((status, body)) => format!("{what} on server {server}: {status} {body}"),
            Err(no) => format!("{what} on server {server}: no answer ({})", no.message),
        }
    }
}

#[test]
fn race_two_servers_cancel_against_success() {
    let Some(db) = TestDb::postgres() else {
        return;
    };
    let (token, workspace) = db.user_with_workspace("ada@example.com");
    let servers = two_servers(&db);
    let bases = servers.each_ref().map(|server| server.url(""));
    let clients = bases
        .each_ref()
        .map(|base| Client::new(base, &token, &workspace));

    let created: Vec<Value> = (0..RACED)
        .map(|i| {
            let fields = json!({
                "amount": "1000", "currency": "CLP", "date": "2026-11-23",
                "description": format!("race {i}"),
            });
            let (status, payment) =
                clients[i % 2].expect_answer("POST", "/payments/", Some(&fields));
            assert_eq!(status, 201, "creating payment {i}: {payment}");
            assert_eq!(payment["status"], "requires_payment_method", "{payment}");
            payment
        })
        .collect();

    let started = Instant::now();
    let sent: Vec<Sent> = created
        .chunks(AT_ONCE)
        .enumerate()
        .flat_map(|(wave, payments)| race(wave * AT_ONCE, payments, &bases, &token, &workspace))
        .collect();
    let raced_for = started.elapsed();

    let mut problems = Vec::new();
    let mut won = BTreeMap::<String, usize>::new();
    for (i, payment) in created.iter().enumerate() {
        let id = payment["id"].as_i64().expect("an integer id");
        let path = format!("/payments/{id}/");
        let finals = clients
            .each_ref()
            .map(|client| client.expect_answer("GET", &path, None));
        let events_path = format!("/events/?object_type=payment&object_id={id}&page_size=100");
        let (status, events) = clients[i % 2].expect_answer("GET", &events_path, None);
        assert_eq!(status, 200, "{events_path}: {events}");
        let moves: Vec<&Sent> = sent.iter().filter(|s| s.payment == id).collect();
        assert_eq!(moves.len(), 2 * EACH, "payment {id}: requests sent");
        let found = check_race(payment, &moves, &finals, &events);
        match found {
            Ok(status) => *won.entry(status).or_default() += 1,
            Err(mut found) => {
                let requests: Vec<String> = moves.iter().map(|s| s.describe()).collect();
                found.push(format!("the requests:\n    {}", requests.join("\n    ")));
                problems.push(format!("payment {id}:\n  {}", found.join("\n  ")));
            }
        }
    }
    // The race created nothing.
    let (_, page) = clients[0].expect_answer("GET", "/payments/?page_size=1", None);
    if page["count"] != json!(RACED) {
        problems.push(format!(
            "{RACED} payments were created, the list counts {page}"
        ));
    }

    let refused = sent
        .iter()
        .filter(|s| matches!(s.answer, Ok((400, _))))
        .count();
    println!(
        "race (postgresql): {RACED} payments, {} moves through 2 servers in {raced_for:.1?}: \
         won {won:?}; {refused} refused with 400",
        sent.len()
    );
    let shown = problems.len().min(10);
    assert!(
        problems.is_empty(),
        "{} of {RACED} raced payments went wrong; the first {shown}:\n\n{}\n\n\
         server A's errors:\n{}\nserver B's errors:\n{}",
        problems.len(),
        problems[..shown].join("\n\n"),
        errors_in(&servers[0].log()),
        errors_in(&servers[1].log()),
    );
}

/// Two `cobro serve` processes on one database, started together (their migrations take
/// turns), both answering.
fn two_servers(db: &TestDb) -> [Server; 2] {
    let servers = [
        Server::start(db, &["--no-bootstrap"]),
        Server::start(db, &["--no-bootstrap"]),
    ];
    for server in &servers {
        server.wait_until_healthy();
    }
    servers
}

#[test]
fn one_idempotency_key_through_two_servers_runs_once() {
    let Some(db) = TestDb::postgres() else {
        return;
    };
    let (token, workspace) = db.user_with_workspace("ada@example.com");
    let servers = two_servers(&db);
    let clients = servers
        .each_ref()
        .map(|server| Client::new(&server.url(""), &token, &workspace));
    const KEYS: usize = 10;
    const TRIES: usize = 10;
    let fields = |k: usize| json!({"amount": "500", "currency": "CLP", "date": "2026-11-23", "description": format!("key {k}")});
    // For each key, TRIES requests at the same instant, alternating between the servers.
    let start = Barrier::new(KEYS * TRIES);
    let answers: Vec<(usize, u16, Value)> = thread::scope(|scope| {
        let handles: Vec<_> = (0..KEYS * TRIES)
            .map(|n| {
                let (client, start, k) = (&clients[n % 2], &start, n % KEYS);
                scope.spawn(move || {
                    start.wait();
                    let (status, body) = client
                        .create(&format!("two-servers-{k}"), &fields(k))
                        .unwrap_or_else(|no| panic!("no answer: {}", no.message));
                    (k, status, body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for k in 0..KEYS {
        let mine: Vec<&(usize, u16, Value)> = answers.iter().filter(|a| a.0 == k).collect();
        let created: Vec<&Value> = mine.iter().filter(|a| a.1 == 201).map(|a| &a.2).collect();
        assert!(!created.is_empty(), "key {k}: no 201 among {mine:?}");
        assert!(
            created.iter().all(|c| *c == created[0]),
            "key {k}: different answers"
        );
        for (_, status, body) in &mine {
            let in_progress = *status == 409
                && body["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("still in progress"));
            assert!(*status == 201 || in_progress, "key {k}: {status} {body}");
        }
    }
    let (_, page) = clients[1].expect_answer("GET", "/payments/?page_size=1", None);
    assert_eq!(
        page["count"],
        json!(KEYS),
        "each key must create one payment"
    );
}

/// Sends, for each payment, EACH cancels to one server and EACH success marks to the other
/// (which is which alternates by payment), every request of the wave released at once.
/// `first` is the index of the wave's first payment.
fn race(
    first: usize,
    payments: &[Value],
    bases: &[String; 2],
    token: &str,
    workspace: &str,
) -> Vec<Sent> {
    let mut requests = Vec::new();
    for (i, payment) in payments.iter().enumerate() {
        let id = payment["id"].as_i64().expect("an integer id");
        let cancels_on = (first + i) % 2;
        for _ in 0..EACH {
            requests.push((id, Move::Cancel, cancels_on));
            requests.push((id, Move::Succeed, 1 - cancels_on));
        }
    }
    let start = Barrier::new(requests.len());
    thread::scope(|scope| {
        let threads: Vec<_> = requests
            .iter()
            .map(|&(id, action, server)| {
                let start = &start;
                scope.spawn(move || {
                    let client = Client::new(&bases[server], token, workspace);
                    // Connected before the start, so that the requests leave together.
                    let _ = client.call("GET", "/health/", None);
                    start.wait();
                    let answer = match action {
                        Move::Cancel => {
                            client.call("POST", &format!("/payments/{id}/cancel/"), None)
                        }
                        Move::Succeed => client.call(
                            "PATCH",
                            &format!("/payments/{id}/"),
                            Some(&json!({"status": "succeeded"})),
                        ),
                    };
                    Sent {
                        payment: id,
                        action,
                        server,
                        answer,
                    }
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| thread.join().expect("a racing request's thread"))
            .collect()
    })
}

/// What a raced payment must look like: Ok(final status), or Err(what is wrong).
///
/// Exactly one move wins. A cancel that wins is the only 200 among the cancels: a second
/// cancel is a move from `cancelled`, refused. A success mark that wins makes the other
/// success marks no-ops, which answer 200 with the payment as it is. Every refusal is a
/// 400 naming the move from the winner's status. Both servers show the same final payment,
/// whose events are its creation and the one winning move, and whose money adds up.
fn check_race(
    created: &Value,
    moves: &[&Sent],
    finals: &[(u16, Value); 2],
    events: &Value,
) -> Result<String, Vec<String>> {
    let mut problems = Vec::new();
    let answered: Vec<(&Sent, u16, &Value)> = moves
        .iter()
        .filter_map(|sent| match &sent.answer {
            Ok((status, body)) => Some((*sent, *status, body)),
            Err(_) => {
                problems.push(format!("no answer: {}", sent.describe()));
                None
            }
        })
        .collect();
    for (sent, status, _) in &answered {
        if !matches!(status, 200 | 400) {
            problems.push(format!("neither 200 nor 400: {}", sent.describe()));
        }
    }

    let [(status_a, payment), (status_b, on_b)] = finals;
    if (*status_a, *status_b) != (200, 200) {
        problems.push(format!(
            "GET: server A {status_a} {payment}, server B {status_b} {on_b}"
        ));
        return Err(problems);
    }
    if !same_payment(payment, on_b) {
        problems.push(format!(
            "the servers disagree:\n    A: {payment}\n    B: {on_b}"
        ));
    }
    let status = payment["status"].as_str().unwrap_or_default().to_string();
    if status != "cancelled" && status != "succeeded" {
        problems.push(format!(
            "final status {status:?}, neither cancelled nor succeeded"
        ));
        return Err(problems);
    }

    let accepted = |action: Move| {
        answered
            .iter()
            .filter(|(sent, code, _)| sent.action == action && *code == 200)
            .count()
    };
    let (cancels, successes) = (accepted(Move::Cancel), accepted(Move::Succeed));
    if cancels > 0 && successes > 0 {
        problems.push(format!(
            "a lost update: {cancels} cancel(s) and {successes} success mark(s) answered 200, \
             the payment ended {status}"
        ));
    } else if cancels + successes == 0 {
        problems.push(format!("no move was accepted, yet the payment is {status}"));
    } else if status == "cancelled" && cancels != 1 {
        problems.push(format!(
            "{cancels} cancels answered 200: only one can move the payment to cancelled"
        ));
    }
    for (sent, code, body) in &answered {
        let target = sent.action.target();
        if target == status && (sent.action == Move::Succeed || *code == 200) {
            // The winning move, or a success mark after the winning one: 200 with the
            // payment as it ended.
            if *code != 200 || !same_payment(body, payment) {
                problems.push(format!(
                    "expected 200 with the final payment {payment}: {}",
                    sent.describe()
                ));
            }
        } else {
            let refusal = json!({
                "status": [format!("Cannot move a payment from \"{status}\" to \"{target}\".")]
            });
            if (*code, *body) != (400, &refusal) {
                problems.push(format!("expected 400 {refusal}: {}", sent.describe()));
            }
        }
    }

    // The money: all of it collected, or none.
    match (money(&payment["amount"]), money(&payment["balance"])) {
        (Some(amount), Some(balance)) => {
            let collected = amount - balance;
            let expected = if status == "succeeded" {
                amount
            } else {
                Decimal::ZERO
            };
            if Some(amount) != money(&created["amount"]) || collected != expected {
                problems.push(format!(
                    "{status} with amount {amount} (created with {}) and balance {balance}: \
                     {collected} collected, expected {expected}",
                    created["amount"]
                ));
            }
        }
        _ => problems.push(format!("amount or balance is not a number: {payment}")),
    }
    if payment["payment_date"].is_null() == (status == "succeeded") {
        problems.push(format!(
            "{status} with payment_date {}",
            payment["payment_date"]
        ));
    }

    // The event trail: the creation, then the one move that won.
    let mut trail: Vec<&Value> = events["results"].as_array().into_iter().flatten().collect();
    trail.sort_by_key(|event| event["id"].as_i64());
    let types: Vec<&str> = trail
        .iter()
        .map(|event| event["type"].as_str().unwrap_or("?"))
        .collect();
    let expected = ["payment.created".to_string(), format!("payment.{status}")];
    if types != expected || events["count"] != json!(2) {
        problems.push(format!(
            "events {types:?} (count {}), expected {expected:?}",
            events["count"]
        ));
    } else if !same_payment(&trail[1]["data"], payment) {
        problems.push(format!(
            "the {} event's data {} is not the final payment {payment}",
            types[1], trail[1]["data"]
        ));
    }

    if problems.is_empty() {
        Ok(status)
    } else {
        Err(problems)
    }
}

/// Equal payments, whichever server wrote them: `checkout_url` is built from the host the
/// request was sent to, so only its path is compared.
fn same_payment(a: &Value, b: &Value) -> bool {
    let comparable = |payment: &Value| {
        let mut payment = payment.clone();
        if let Some(url) = payment.get_mut("checkout_url") {
            if let Some(path) = url.as_str().and_then(|u| url::Url::parse(u).ok()) {
                *url = Value::String(path.path().to_string());
            }
        }
        payment
    };
    comparable(a) == comparable(b)
}

/// A JSON amount (a number, or a numeric string) as an exact decimal.
fn money(value: &Value) -> Option<Decimal> {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        _ => return None,
    };
    text.parse().ok()
}

/// The log's error and warning lines, at most 20 (all of them when there are fewer).
fn errors_in(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("ERROR") || line.contains("WARN") || line.contains("\" 5"))
        .collect();
    let shown = lines.len().min(20);
    let mut text = lines[..shown].join("\n");
    if lines.len() > shown {
        text.push_str(&format!("\n… and {} more", lines.len() - shown));
    }
    if text.is_empty() {
        text.push_str("(none)");
    }
    text
}

// ---------------------------------------------------------------------------------------
// kill -9 while creating
// ---------------------------------------------------------------------------------------

/// How many times the server is killed.
const KILLS: usize = 5;
/// Client threads creating payments as fast as the server answers.
const CREATORS: usize = 4;

fn crash_keeps_every_acknowledged_create(db: &TestDb) {
    let (token, workspace) = db.user_with_workspace("ada@example.com");
    let first = Server::start(db, &["--no-bootstrap"]);
    first.wait_until_healthy();
    let port = first.port();
    let base = first.url("");

    let stop = AtomicBool::new(false);
    let acknowledged = AtomicUsize::new(0);
    let mut rounds = Vec::new();
    let (server, outcomes) = thread::scope(|scope| {
        // However this ends (a panic included), the creators stop before the scope waits.
        let _stop = SetOnDrop(&stop);
        let creators: Vec<_> = (0..CREATORS)
            .map(|creator| {
                let client = Client::new(&base, &token, &workspace);
                let (stop, acknowledged) = (&stop, &acknowledged);
                scope.spawn(move || create_until(stop, acknowledged, &client, creator))
            })
            .collect();

        let mut server = first;
        let mut rng = rand::rng();
        for _ in 0..KILLS {
            let before = acknowledged.load(Ordering::SeqCst);
            let serving = Duration::from_millis(rng.random_range(200..=1500));
            thread::sleep(serving);
            server.kill();
            let during = acknowledged.load(Ordering::SeqCst) - before;
            rounds.push((serving, during));
            server = Server::start_on(db, port, &["--no-bootstrap"]);
            server.wait_until_healthy();
        }
        // The last server serves a while too.
        thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        let outcomes: Vec<Outcomes> = creators
            .into_iter()
            .map(|creator| creator.join().expect("a creator thread"))
            .collect();
        (server, outcomes)
    });

    let mut created = Vec::new();
    let mut refused = Vec::new();
    let mut no_answer = BTreeMap::<String, usize>::new();
    let mut unanswered = Vec::new();
    for outcome in outcomes {
        created.extend(outcome.created);
        refused.extend(outcome.refused);
        unanswered.extend(outcome.unanswered);
        for (kind, count) in outcome.no_answer {
            *no_answer.entry(kind).or_default() += count;
        }
    }
    // The client's retries of what got no answer, with the same key and body.
    let client = Client::new(&base, &token, &workspace);
    let retried = unanswered.len();
    for (key, fields) in unanswered {
        match retry_until_answered(&client, &key, &fields) {
            Ok(payment) => created.push(payment),
            Err(problem) => refused.push(problem),
        }
    }

    // Every acknowledged payment, read back from the last server.
    let mut problems = Vec::new();
    let mut ids = HashSet::new();
    for payment in &created {
        if !ids.insert(payment["id"].clone()) {
            problems.push(format!("id {} was acknowledged twice", payment["id"]));
        }
    }
    let found = read_back(&base, &token, &workspace, &created, &mut problems);
    let (_, page) = client.expect_answer("GET", "/payments/?page_size=1", None);
    let stored = page["count"].as_u64().unwrap_or_default() as usize;
    // Each payment was written with its event in one transaction: a kill keeps both or
    // neither.
    let events = "/events/?object_type=payment&type=payment.created&page_size=1";
    let (_, page) = client.expect_answer("GET", events, None);
    let announced = page["count"].as_u64().unwrap_or_default() as usize;

    let backend = db.backend_name();
    println!(
        "crash test ({backend}): {} acknowledged ({retried} of them on a retry with the same \
         Idempotency-Key after getting no answer), {found} found, {stored} stored, {KILLS} kills; \
         no answer (server down or killed mid-request): {no_answer:?}; served between kills: {}",
        created.len(),
        rounds
            .iter()
            .map(|(serving, during)| format!("{during} in {serving:?}"))
            .collect::<Vec<_>>()
            .join(", "),
    );

    // Every create ended acknowledged, and retried ones were not stored twice.
    if stored != created.len() {
        problems.push(format!(
            "{stored} payments are stored for {} acknowledged creates",
            created.len()
        ));
    }
    if announced != stored {
        problems.push(format!(
            "{stored} payments are stored but {announced} payment.created events"
        ));
    }
    // A killed server resets its connections at once; a request that ran out of time met
    // a server that hung instead.
    for kind in ["TimedOut", "WouldBlock"] {
        if let Some(count) = no_answer.get(kind) {
            problems.push(format!("{count} creates timed out (kind {kind})"));
        }
    }
    if !refused.is_empty() {
        problems.push(format!(
            "{} creates were answered with something else than 201, e.g.:\n    {}",
            refused.len(),
            refused
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n    ")
        ));
    }
    for (round, (serving, during)) in rounds.iter().enumerate() {
        if *during == 0 {
            problems.push(format!(
                "round {}: no create was acknowledged in {serving:?} of serving",
                round + 1
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "crash test ({backend}): {} problems:\n{}\n\nserver errors:\n{}",
        problems.len(),
        problems
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        errors_in(&server.log()),
    );
    server.stop();
}

/// Sets the flag when dropped.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// What one creator saw.
#[derive(Default)]
struct Outcomes {
    /// The bodies of the 201s.
    created: Vec<Value>,
    /// Answers other than 201.
    refused: Vec<String>,
    /// Requests with no answer (the server was down or died meanwhile), by kind.
    no_answer: BTreeMap<String, usize>,
    /// The creates to retry (key and fields): those that got no answer.
    unanswered: Vec<(String, Value)>,
}

/// Creates payments, each different, until `stop`.
fn create_until(
    stop: &AtomicBool,
    acknowledged: &AtomicUsize,
    client: &Client,
    creator: usize,
) -> Outcomes {
    let mut outcomes = Outcomes::default();
    for n in 1.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let fields = json!({
            "amount": format!("{n}.{creator:02}"), "currency": "USD", "date": "2026-11-23",
            "description": format!("crash test {creator}-{n}"),
            "subscription": format!("sub_{creator}"),
            "metadata": {"creator": creator, "n": n},
        });
        let key = format!("crash-{creator}-{n}");
        match client.create(&key, &fields) {
            Ok((201, payment)) if payment["id"].is_i64() => {
                outcomes.created.push(payment);
                acknowledged.fetch_add(1, Ordering::SeqCst);
            }
            Ok((status, body)) => outcomes.refused.push(format!("{status} {body}")),
            Err(no) => {
                *outcomes.no_answer.entry(no.kind).or_default() += 1;
                outcomes.unanswered.push((key, fields));
                // The server is down: try again soon, without spinning.
                thread::sleep(Duration::from_millis(5));
            }
        }
    }
    outcomes
}

/// Retries a create that got no answer until it gets one: the stored answer if the first
/// try committed, a new payment if it did not. A key whose first try died with its server
/// stays "in progress" (409) until its lease ends, as the server cannot tell a dead request
/// from a slow one before then.
fn retry_until_answered(client: &Client, key: &str, fields: &Value) -> Result<Value, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.create(key, fields) {
            Ok((201, payment)) if payment["id"].is_i64() => return Ok(payment),
            Ok((409, body)) if Instant::now() < deadline => {
                let detail = body["detail"].as_str().unwrap_or_default();
                if !detail.contains("still in progress") {
                    return Err(format!("retry of {key}: 409 {body}"));
                }
            }
            Ok((status, body)) => return Err(format!("retry of {key}: {status} {body}")),
            Err(no) if Instant::now() >= deadline => {
                return Err(format!("retry of {key}: no answer: {}", no.message))
            }
            Err(_) => {}
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// GETs every created payment (several threads) and compares it with its 201, field for
/// field; returns how many were found unchanged, and adds a line per difference.
fn read_back(
    base: &str,
    token: &str,
    workspace: &str,
    created: &[Value],
    problems: &mut Vec<String>,
) -> usize {
    let found = AtomicUsize::new(0);
    let differences = Mutex::new(Vec::new());
    let share = created.len().div_ceil(CREATORS).max(1);
    thread::scope(|scope| {
        for part in created.chunks(share) {
            let (found, differences) = (&found, &differences);
            scope.spawn(move || {
                let client = Client::new(base, token, workspace);
                for payment in part {
                    let path = format!("/payments/{}/", payment["id"]);
                    let difference = match client.call("GET", &path, None) {
                        Ok((200, stored)) if stored == *payment => {
                            found.fetch_add(1, Ordering::SeqCst);
                            continue;
                        }
                        Ok((200, stored)) => format!("{path} changed: {}", diff(payment, &stored)),
                        Ok((status, body)) => format!("{path}: {status} {body}, 201 was {payment}"),
                        Err(no) => format!("{path}: no answer: {}", no.message),
                    };
                    differences.lock().unwrap().push(difference);
                }
            });
        }
    });
    problems.extend(differences.into_inner().unwrap());
    found.into_inner()
}

/// The fields in which two objects differ.
fn diff(before: &Value, after: &Value) -> String {
    let empty = serde_json::Map::new();
    let (a, b) = (
        before.as_object().unwrap_or(&empty),
        after.as_object().unwrap_or(&empty),
    );
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|key| a.get(*key) != b.get(*key))
        .map(|key| {
            let show = |v: Option<&Value>| v.map_or("(absent)".to_string(), Value::to_string);
            format!("{key}: {} then {}", show(a.get(key)), show(b.get(key)))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------------------------------
// Refunds: racing across two servers, and kill -9 while refunding
// ---------------------------------------------------------------------------------------

#[test]
fn refunds_through_two_servers_never_exceed_what_was_collected() {
    let Some(db) = TestDb::postgres() else {
        return;
    };
    let (token, workspace) = db.user_with_workspace("refunds@example.com");
    let servers = two_servers(&db);
    let clients = servers
        .each_ref()
        .map(|server| Client::new(&server.url(""), &token, &workspace));
    let test = [("x-piriod-test-mode", "true")];
    for round in 0..5 {
        // 1000 collected by a sandbox card.
        let id = paid_in_test_mode(&clients[round % 2], 1000);
        let start = Barrier::new(10);
        let answers: Vec<(u16, Value)> = thread::scope(|scope| {
            let handles: Vec<_> = (0..10)
                .map(|n| {
                    let (client, start) = (&clients[n % 2], &start);
                    scope.spawn(move || {
                        let _ = client.call("GET", "/health/", None);
                        start.wait();
                        let body = json!({"payment": id, "amount": 300});
                        client
                            .send("POST", "/refunds/", Some(&body), &test)
                            .unwrap_or_else(|no| panic!("no answer: {}", no.message))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won = answers.iter().filter(|(status, _)| *status == 201).count();
        assert_eq!(won, 3, "round {round}: {answers:?}");
        for (status, body) in answers.iter().filter(|(status, _)| *status != 201) {
            let left = body["amount"][0]
                .as_str()
                .is_some_and(|m| m.contains("what is left to refund"));
            assert!(*status == 400 && left, "round {round}: {status} {body}");
        }
        let (_, payment) = clients[1]
            .send("GET", &format!("/payments/{id}/"), None, &test)
            .unwrap();
        assert_eq!(payment["amount_refunded"], json!(900), "round {round}");
    }
}

/// A test-mode payment of `amount` CLP paid by the sandbox's tok_visa; its id.
fn paid_in_test_mode(client: &Client, amount: i64) -> i64 {
    let test = [("x-piriod-test-mode", "true")];
    let fields = json!({"amount": amount, "currency": "CLP", "date": "2026-12-01", "description": "refund me"});
    let (_, payment) = client
        .send("POST", "/payments/", Some(&fields), &test)
        .unwrap();
    let card = json!({"gateway": "sandbox", "gateway_data": {"token": "tok_visa"}});
    let (_, source) = client
        .send("POST", "/sources/", Some(&card), &test)
        .unwrap();
    let id = payment["id"].as_i64().unwrap();
    let body = json!({"source": source["id"]});
    let (status, paid) = client
        .send(
            "POST",
            &format!("/payments/{id}/authorize/"),
            Some(&body),
            &test,
        )
        .unwrap();
    assert_eq!(
        (status, paid["status"].as_str()),
        (200, Some("succeeded")),
        "{paid}"
    );
    id
}

/// Payments refunded in the refund crash test, and the threads refunding them.
const REFUNDED_PAYMENTS: usize = 12;
const REFUNDERS: usize = 4;

/// What one refunder saw.
#[derive(Default)]
struct Refunding {
    /// The refunds answered 201.
    acknowledged: Vec<Value>,
    /// Refused with a 400: nothing was left of the payment.
    refused: usize,
    /// No answer (the server died): the key and body, to send again.
    unanswered: Vec<(String, Value)>,
    problems: Vec<String>,
}

fn crash_during_refunds_doubles_nothing(db: &TestDb) {
    let Some(stripe) = localstripe() else {
        return;
    };
    // Stripe answers refunds 200 ms late: kills land while refunds are at Stripe.
    let slow = common::proxy::start(&stripe, |line, _| {
        if line.starts_with("POST /v1/refunds") {
            common::proxy::Fate::Delay(Duration::from_millis(200))
        } else {
            common::proxy::Fate::Pass
        }
    });
    let (token, workspace) = db.user_with_workspace("refund-crash@example.com");
    let port = common::free_port();
    let key = "4".repeat(64);
    let env = [
        ("COBRO_STRIPE_API_BASE", slow.url.as_str()),
        ("COBRO_RECONCILE_AFTER_SECONDS", "1"),
        ("COBRO_SECRET_KEY", key.as_str()),
    ];
    let first = Server::start_with(db, port, &["--no-bootstrap"], &env);
    first.wait_until_healthy();
    let base = first.url("");
    let client = Client::new(&base, &token, &workspace);
    let test = [("x-piriod-test-mode", "true")];
    let integration = json!({"gateway": "stripe", "name": "Stripe",
        "credentials": {"secret_key": "sk_test_51QrefundCrash0000000000000001"}});
    let (status, made) = client
        .send("POST", "/integrations/", Some(&integration), &test)
        .unwrap();
    assert_eq!(status, 201, "{made}");
    // Payments of 1000 CLP, each paid through Stripe: (id, PaymentIntent).
    let payments: Vec<(i64, String)> = (0..REFUNDED_PAYMENTS)
        .map(|n| {
            let fields = json!({"amount": 1000, "currency": "CLP", "date": "2026-12-01", "description": format!("refunded {n}")});
            let (_, payment) = client.send("POST", "/payments/", Some(&fields), &test).unwrap();
            let card = json!({"gateway": "stripe", "gateway_data": {"payment_method": "pm_card_visa"}});
            let (_, source) = client.send("POST", "/sources/", Some(&card), &test).unwrap();
            let id = payment["id"].as_i64().unwrap();
            let body = json!({"source": source["id"]});
            let (_, paid) = client
                .send("POST", &format!("/payments/{id}/authorize/"), Some(&body), &test)
                .unwrap();
            assert_eq!(paid["status"], "succeeded", "{paid}");
            let (_, attempts) = client
                .send("GET", &format!("/payments/{id}/attempts/"), None, &test)
                .unwrap();
            (id, attempts[0]["gateway_reference"].as_str().unwrap().to_string())
        })
        .collect();

    let stop = AtomicBool::new(false);
    let (server, seen) = thread::scope(|scope| {
        let _stop = SetOnDrop(&stop);
        let refunders: Vec<_> = (0..REFUNDERS)
            .map(|n| {
                let client = Client::new(&base, &token, &workspace);
                let (stop, payments) = (&stop, &payments);
                scope.spawn(move || refund_until(stop, &client, n, payments))
            })
            .collect();
        let mut server = first;
        let mut rng = rand::rng();
        for _ in 0..4 {
            thread::sleep(Duration::from_millis(rng.random_range(300..=1200)));
            server.kill();
            server = Server::start_with(db, port, &["--no-bootstrap"], &env);
            server.wait_until_healthy();
        }
        thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        let seen: Vec<Refunding> = refunders
            .into_iter()
            .map(|r| r.join().expect("a refunder thread"))
            .collect();
        (server, seen)
    });

    let mut acknowledged = Vec::new();
    let mut problems = Vec::new();
    let (mut refused, mut unanswered) = (0, Vec::new());
    for one in seen {
        acknowledged.extend(one.acknowledged);
        problems.extend(one.problems);
        refused += one.refused;
        unanswered.extend(one.unanswered);
    }
    // What got no answer, sent again with its key once a dead server's claims have lapsed
    // (the 10 s lease): its first answer; or it runs now, as it never began (a 201, or a 400
    // when nothing was left); or a 409: it began (at Stripe perhaps) and its answer was
    // lost, so it never runs again, and the reconciler settles it.
    thread::sleep(Duration::from_secs(11));
    let (mut replayed, mut lost) = (0, 0);
    for (key, body) in &unanswered {
        let keyed = [
            ("x-piriod-test-mode", "true"),
            ("Idempotency-Key", key.as_str()),
        ];
        match client.send("POST", "/refunds/", Some(body), &keyed) {
            Ok((201, refund)) => {
                replayed += 1;
                acknowledged.push(refund);
            }
            Ok((400, _)) => refused += 1,
            // It names the refund it made, which must be there.
            Ok((409, answer)) => {
                lost += 1;
                let detail = answer["detail"].as_str().unwrap_or_default();
                let named = detail
                    .split_once("/refunds/")
                    .and_then(|(_, rest)| rest.split('/').next())
                    .and_then(|id| id.parse::<i64>().ok());
                let found = named.map(|id| {
                    client
                        .send("GET", &format!("/refunds/{id}/"), None, &test)
                        .map(|(status, _)| status)
                });
                if !matches!(found, Some(Ok(200))) {
                    problems.push(format!("{key}: a 409 that names no refund there: {detail}"));
                }
            }
            other => problems.push(format!("{key} sent again: {other:?}")),
        }
    }
    // Nothing stays pending: the reconciler asks Stripe about what lost its answer (and
    // sends again, under the same key, what never reached Stripe, once 40 s have passed).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, page) = client
            .send("GET", "/refunds/?status=pending&page_size=1", None, &test)
            .unwrap();
        if page["count"] == 0 {
            break;
        }
        if Instant::now() > deadline {
            problems.push(format!("{} refunds still pending", page["count"]));
            break;
        }
        thread::sleep(Duration::from_millis(500));
    }

    let mut stored = 0;
    for (id, intent) in &payments {
        let (_, payment) = client
            .send("GET", &format!("/payments/{id}/"), None, &test)
            .unwrap();
        let (_, page) = client
            .send(
                "GET",
                &format!("/refunds/?payment={id}&page_size=100"),
                None,
                &test,
            )
            .unwrap();
        let refunds = page["results"].as_array().unwrap().clone();
        stored += refunds.len();
        let went_back: i64 = refunds
            .iter()
            .filter(|r| r["status"] == "succeeded")
            .map(|r| r["amount"].as_i64().unwrap())
            .sum();
        if went_back > 1000 {
            problems.push(format!(
                "payment {id}: {went_back} refunded of 1000 collected"
            ));
        }
        if payment["amount_refunded"] != json!(went_back) {
            problems.push(format!(
                "payment {id}: amount_refunded {} but its refunds sent back {went_back}",
                payment["amount_refunded"]
            ));
        }
        // At Stripe: each refund once, adding up to what cobro says went back.
        let at_stripe = stripe_get(
            &stripe,
            &format!("/v1/refunds?payment_intent={intent}&limit=100"),
        );
        let at_stripe: Vec<&Value> = at_stripe["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["metadata"]["cobro_key"].is_string())
            .collect();
        let keys: HashSet<&str> = at_stripe
            .iter()
            .map(|r| r["metadata"]["cobro_key"].as_str().unwrap())
            .collect();
        if keys.len() != at_stripe.len() {
            problems.push(format!("payment {id}: a refund went to Stripe twice"));
        }
        let at_stripe_sum: i64 = at_stripe
            .iter()
            .map(|r| r["amount"].as_i64().unwrap())
            .sum();
        if at_stripe_sum != went_back {
            problems.push(format!(
                "payment {id}: Stripe sent back {at_stripe_sum}, cobro says {went_back}"
            ));
        }
    }
    if stored != acknowledged.len() + lost {
        problems.push(format!(
            "{stored} refunds stored for {} acknowledged and {lost} whose answer was lost",
            acknowledged.len()
        ));
    }
    let mut ids = HashSet::new();
    for refund in &acknowledged {
        if !ids.insert(refund["id"].clone()) {
            problems.push(format!("refund {} was acknowledged twice", refund["id"]));
            continue;
        }
        let (status, now) = client
            .send("GET", &format!("/refunds/{}/", refund["id"]), None, &test)
            .unwrap();
        if status != 200 || now["amount"] != refund["amount"] || now["payment"] != refund["payment"]
        {
            problems.push(format!("acknowledged {refund} but found {status} {now}"));
        }
    }
    println!(
        "refund crash test ({}): {} acknowledged ({replayed} on a retry with the same key), \
         {lost} whose answer was lost (settled by the reconciler), {refused} refused (nothing \
         left), {stored} stored, 4 kills",
        db.backend_name(),
        acknowledged.len(),
    );
    assert!(
        problems.is_empty(),
        "{}\n\nthe last server's errors:\n{}",
        problems.join("\n"),
        errors_in(&server.log())
    );
}

/// Refunds random amounts of random payments until `stop`, each with its own key.
fn refund_until(
    stop: &AtomicBool,
    client: &Client,
    refunder: usize,
    payments: &[(i64, String)],
) -> Refunding {
    let mut seen = Refunding::default();
    let mut rng = rand::rng();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let (id, _) = &payments[rng.random_range(0..payments.len())];
        let body = json!({"payment": id, "amount": rng.random_range(20..=150)});
        let key = format!("refund-{refunder}-{n}");
        let keyed = [
            ("x-piriod-test-mode", "true"),
            ("Idempotency-Key", key.as_str()),
        ];
        match client.send("POST", "/refunds/", Some(&body), &keyed) {
            Ok((201, refund)) => seen.acknowledged.push(refund),
            Ok((400, _)) => seen.refused += 1,
            Ok((status, answer)) if status >= 500 && status != 503 => {
                seen.problems.push(format!("{key}: {status} {answer}"));
            }
            // A 503 (the database not yet there after a restart) or a 409: it may or may
            // not have run; sent again later.
            Ok(_) | Err(NoAnswer { .. }) => {
                seen.unanswered.push((key, body));
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
    seen
}
