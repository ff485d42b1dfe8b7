//! Webhooks: endpoints, and deliveries to a real HTTP receiver on 127.0.0.1, sent by a
//! server whose worker retries in milliseconds.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::both;
use crate::helpers::*;
use crate::receiver::{Hit, Receiver, NO_ANSWER};

/// How long a test waits for deliveries.
const WAIT: Duration = Duration::from_secs(20);

fn delivered(hits: &[Hit]) -> Vec<(String, String)> {
    hits.iter()
        .filter(|h| (200..300).contains(&h.answered))
        .map(|h| {
            let body = h.json();
            (
                body["event"].as_str().unwrap().to_string(),
                body["object_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Polls a webhook's deliveries until the first one satisfies `done`; returns it.
fn wait_until(app: &App, deliveries: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let first = app.get(deliveries).expect(200).body["results"][0].clone();
        if done(&first) {
            return first;
        }
        assert!(
            Instant::now() < deadline,
            "timed out; the delivery: {first}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hmac_hex(secret: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The app on a server that delivers webhooks (to 127.0.0.1, retrying after 100 ms).
fn delivering(app: &App) -> Option<App> {
    let server = server_with(app.backend(), |s| {
        s.webhook_worker = true;
        s.webhook_allow_private = true;
        s.webhook_first_retry_ms = 100;
    })?;
    Some(app.on(server))
}

both! {
    fn webhooks_are_created_read_changed_and_deleted(app) {
        let created = app.post("/webhooks/", json!({"url": "https://hooks.example.com/cobro", "events": ["payment.*", "source.created"], "description": "ERP"})).expect(201).body;
        let secret = created["secret"].as_str().unwrap();
        assert!(secret.starts_with("whsecret_") && secret.len() > 30, "{secret}");
        assert_eq!(created["enabled"], true);
        let id = created["id"].clone();
        let read = app.get(&format!("/webhooks/{id}/")).expect(200).body;
        assert!(read.get("secret").is_none(), "the secret is shown only once: {read}");
        assert_eq!(read["events"], json!(["payment.*", "source.created"]));
        assert_eq!(app.get("/webhooks/").expect(200).body["count"], 1);
        let changed = app.patch(&format!("/webhooks/{id}/"), json!({"events": ["*"], "enabled": false})).expect(200).body;
        assert_eq!((changed["events"].clone(), changed["enabled"].clone()), (json!(["*"]), json!(false)));
        let rotated = app.post(&format!("/webhooks/{id}/rotate-secret/"), json!({})).expect(200).body;
        assert_ne!(rotated["secret"], created["secret"]);
        // Other workspaces and the other mode see nothing.
        app.stranger().get(&format!("/webhooks/{id}/")).expect(404);
        app.in_test_mode().get(&format!("/webhooks/{id}/")).expect(404);
        app.delete(&format!("/webhooks/{id}/")).expect(204);
        app.get(&format!("/webhooks/{id}/")).expect(404);
    }

    fn webhook_fields_are_checked(app) {
        let bad = app.post("/webhooks/", json!({"url": "ftp://x.example.com/", "events": []})).expect(400).body;
        assert_eq!(bad["url"], json!(["Enter a valid URL."]));
        assert_eq!(bad["events"], json!(["This list may not be empty."]));
        let unknown = app.post("/webhooks/", json!({"url": "https://x.example.com/", "events": ["payment.teleported.*"]})).expect(400).body;
        assert!(unknown["events"][0].as_str().unwrap().contains("is not a valid event type"), "{unknown}");
        app.post("/webhooks/", json!({"events": ["*"]})).expect(400);
        // Internal addresses are refused unless the server allows them.
        for url in ["http://127.0.0.1:9/hook", "http://localhost/hook", "http://169.254.169.254/", "http://[::1]/"] {
            let refused = app.post("/webhooks/", json!({"url": url, "events": ["*"]})).expect(400).body;
            assert!(refused["url"][0].as_str().unwrap().contains("public address"), "{url}: {refused}");
        }
        assert_eq!(app.get("/webhooks/").body["count"], 0);
    }

    fn events_arrive_in_order_with_valid_signatures(app) {
        let Some(app) = delivering(&app) else { return };
        let receiver = Receiver::start();
        let hook = app.post("/webhooks/", json!({"url": receiver.url, "events": ["payment.*"]})).expect(201).body;
        let secret = hook["secret"].as_str().unwrap().to_string();
        let first = app.create_payment(json!({}))["id"].to_string();
        app.post(&format!("/payments/{first}/cancel/"), json!({})).expect(200);
        let second = app.create_payment(json!({}))["id"].to_string();
        app.patch(&format!("/payments/{second}/"), json!({"status": "succeeded"})).expect(200);
        // A test-mode webhook hears only of test-mode events, and this one of none of them.
        let sandbox = Receiver::start();
        app.in_test_mode().post("/webhooks/", json!({"url": sandbox.url, "events": ["*"]})).expect(201);
        let test_payment = app.in_test_mode().create_payment(json!({}))["id"].to_string();
        let hits = receiver.wait_for("4 deliveries", WAIT, |h| h.len() >= 4);
        let sandbox_hits = sandbox.wait_for("the test-mode event", WAIT, |h| !h.is_empty());
        std::thread::sleep(Duration::from_millis(300));
        let hits_after = receiver.hits();
        assert_eq!(hits_after.len(), 4, "{hits_after:#?}");
        assert_eq!(delivered(&sandbox.hits()), [("payment.created".to_string(), test_payment)], "{sandbox_hits:#?}");
        let mine = |id: &str| delivered(&hits).into_iter().filter(|(_, o)| o == id).map(|(e, _)| e).collect::<Vec<_>>();
        assert_eq!(mine(&first), ["payment.created", "payment.cancelled"]);
        assert_eq!(mine(&second), ["payment.created", "payment.succeeded"]);
        for hit in &hits {
            let body = hit.json();
            let (event, object) = (body["event"].as_str().unwrap(), body["object_id"].as_str().unwrap());
            assert_eq!(hit.header("x-piriod-signature"), hmac_hex(&secret, &format!("{event}{object}")));
            let (t, v1) = hit.header("cobro-signature").split_once(",v1=").unwrap();
            let t = t.strip_prefix("t=").unwrap();
            assert_eq!(v1, hmac_hex(&secret, &format!("{t}.{}", hit.body)));
            assert!((chrono::Utc::now().timestamp() - t.parse::<i64>().unwrap()).abs() < 60);
            assert_eq!(body["data"]["id"].to_string(), object);
        }
        let deliveries = app.get(&format!("/webhooks/{}/deliveries/", hook["id"])).expect(200).body;
        assert_eq!(deliveries["count"], 4);
        assert!(deliveries["results"].as_array().unwrap().iter().all(|d| d["status"] == "succeeded" && d["attempts"] == 1 && d["last_status"] == 200));
    }

    fn a_failing_receiver_gets_every_event_once_it_recovers(app) {
        let Some(app) = delivering(&app) else { return };
        let receiver = Receiver::start();
        receiver.fail_next(&[500, 503]);
        let hook = app.post("/webhooks/", json!({"url": receiver.url, "events": ["payment.created", "payment.cancelled"]})).expect(201).body;
        let id = app.create_payment(json!({}))["id"].to_string();
        app.post(&format!("/payments/{id}/cancel/"), json!({})).expect(200);
        app.patch(&format!("/payments/{id}/"), json!({"description": "not subscribed"})).expect(200);
        let hits = receiver.wait_for("both events delivered", WAIT, |h| delivered(h).len() >= 2);
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(delivered(&receiver.hits()), [("payment.created".into(), id.clone()), ("payment.cancelled".into(), id.clone())]);
        // The created event was tried three times; the cancel waited for it, in order.
        assert_eq!(hits.iter().map(|h| h.answered).collect::<Vec<_>>()[..3], [500, 503, 200]);
        let deliveries = app.get(&format!("/webhooks/{}/deliveries/", hook["id"])).expect(200).body;
        let attempts: Vec<Value> = deliveries["results"].as_array().unwrap().iter().map(|d| d["attempts"].clone()).collect();
        assert_eq!(attempts, [json!(1), json!(3)]);
        // Two different failures in a row do not disable a webhook.
        assert_eq!(app.get(&format!("/webhooks/{}/", hook["id"])).body["enabled"], true);
    }

    fn a_receiver_that_does_not_answer_in_time_is_tried_again(app) {
        let Some(app) = delivering(&app) else { return };
        let receiver = Receiver::start();
        receiver.fail_next(&[NO_ANSWER]);
        let hook = app.post("/webhooks/", json!({"url": receiver.url, "events": ["payment.created"]})).expect(201).body;
        let id = app.create_payment(json!({}))["id"].to_string();
        let hits = receiver.wait_for("a second attempt", WAIT, |h| delivered(h).len() == 1);
        let (first, second) = (&hits[0], &hits[1]);
        assert_eq!((first.answered, second.answered, hits.len()), (NO_ANSWER, 200, 2), "{hits:#?}");
        assert_eq!((first.event_id(), second.json()["object_id"].as_str().unwrap().to_string()), (second.event_id(), id));
        // cobro waited 6 s for an answer, then tried again (100 ms later on this server).
        let waited = second.arrived - first.arrived;
        assert!(waited >= Duration::from_secs(6) && waited < Duration::from_secs(8), "{waited:?}");
        std::thread::sleep(Duration::from_millis(300)); // the answer is recorded
        let deliveries = app.get(&format!("/webhooks/{}/deliveries/", hook["id"])).expect(200).body;
        let delivery = &deliveries["results"][0];
        assert_eq!((delivery["status"].as_str(), delivery["attempts"].as_i64(), delivery["last_status"].as_i64()), (Some("succeeded"), Some(2), Some(200)));
    }

    fn a_delivery_failing_for_three_days_is_given_up_until_retried(app) {
        let Some(app) = delivering(&app) else { return };
        let receiver = Receiver::start();
        let hook = app.post("/webhooks/", json!({"url": receiver.url, "events": ["payment.created"]})).expect(201).body;
        let deliveries = format!("/webhooks/{}/deliveries/", hook["id"]);
        // The first attempt is refused after 500 ms; meanwhile the delivery is aged 3 days,
        // so the second refusal is the last.
        receiver.answer_after(Duration::from_millis(500));
        receiver.fail_next(&[502, 502]);
        app.create_payment(json!({}));
        receiver.wait_for("the first attempt", WAIT, |h| !h.is_empty());
        let id = app.get(&deliveries).expect(200).body["results"][0]["id"].as_i64().unwrap();
        {
            use cobro::db::schema::webhook_deliveries as d;
            use diesel::prelude::*;
            let mut conn = app.server.db.pool.get().unwrap();
            let created = cobro::db::now() - chrono::Duration::days(3);
            diesel::update(d::table.filter(d::id.eq(id))).set(d::created.eq(created)).execute(&mut **conn).unwrap();
        }
        let given_up = wait_until(&app, &deliveries, |d| d["status"] == "failed");
        assert_eq!((given_up["attempts"].as_i64(), given_up["last_status"].as_i64(), given_up["next_attempt"].clone()), (Some(2), Some(502), Value::Null));
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(receiver.hits().len(), 2, "a given-up delivery is not tried again");
        // A retry by hand sends it once more.
        app.post(&format!("{deliveries}{id}/retry/"), json!({})).expect(200);
        let delivered = wait_until(&app, &deliveries, |d| d["status"] == "succeeded");
        assert_eq!((delivered["attempts"].as_i64(), receiver.hits().len()), (Some(3), 3));
    }

    fn outcomes_recorded_together_keep_each_attempt(app) {
        // Four deliveries waiting, sent at once by the worker's senders and answered
        // together (300 ms each), so that their outcomes reach the recorder in one batch:
        // two refused, then delivered on their retry, two delivered at once.
        let Some(quiet) = server_with(app.backend(), |s| s.webhook_allow_private = true) else { return };
        let quiet = app.on(quiet);
        let receiver = Receiver::start();
        let hook = quiet.post("/webhooks/", json!({"url": receiver.url, "events": ["payment.created"]})).expect(201).body;
        for _ in 0..4 {
            quiet.create_payment(json!({}));
        }
        receiver.answer_after(Duration::from_millis(300));
        receiver.fail_next(&[500, 500]);
        // Retries a second later, not 100 ms: a retry that reached the receiver before
        // another delivery's first attempt (a sender held up on a loaded machine) would
        // take the second 500 itself.
        let Some(app) = server_with(app.backend(), |s| {
            s.webhook_worker = true;
            s.webhook_allow_private = true;
            s.webhook_first_retry_ms = 1_000;
        }).map(|server| app.on(server)) else { return };
        let deliveries = format!("/webhooks/{}/deliveries/", hook["id"]);
        let deadline = Instant::now() + WAIT;
        let all = loop {
            let all = app.get(&deliveries).expect(200).body;
            if all["results"].as_array().unwrap().iter().all(|d| d["status"] == "succeeded") {
                break all;
            }
            assert!(Instant::now() < deadline, "not all delivered: {all}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut attempts: Vec<i64> = all["results"].as_array().unwrap().iter().map(|d| {
            assert_eq!(d["last_status"], 200, "{d}");
            d["attempts"].as_i64().unwrap()
        }).collect();
        attempts.sort();
        assert_eq!(attempts, [1, 1, 2, 2], "{all}");
        assert_eq!(receiver.hits().len(), 6, "each sent once more after its refusal, no more");
        // Two failures, whatever else was recorded beside them, do not disable it.
        let webhook = app.get(&format!("/webhooks/{}/", hook["id"])).expect(200).body;
        assert_eq!(webhook["enabled"], true, "{webhook}");
        let trail = app.get(&format!("/events/?type=webhook.disabled&object_id={}", hook["id"])).body;
        assert_eq!(trail["count"], 0, "{trail}");
    }

    fn three_identical_failures_disable_until_enabled_again(app) {
        let Some(app) = delivering(&app) else { return };
        let receiver = Receiver::start();
        receiver.fail_next(&[500, 500, 500]);
        let hook = app.post("/webhooks/", json!({"url": receiver.url, "events": ["*"]})).expect(201).body;
        let path = format!("/webhooks/{}/", hook["id"]);
        let id = app.create_payment(json!({}))["id"].to_string();
        receiver.wait_for("three failures", WAIT, |h| h.len() >= 3);
        let deadline = Instant::now() + Duration::from_secs(10);
        while app.get(&path).body["enabled"] == true {
            assert!(Instant::now() < deadline, "not disabled");
            std::thread::sleep(Duration::from_millis(50));
        }
        let disabled = app.get(&path).body;
        assert!(disabled["disabled_reason"].as_str().unwrap().contains("HTTP 500"), "{disabled}");
        // The trail says who turned it off: the delivery worker.
        let trail = app.get(&format!("/events/?type=webhook.disabled&object_id={}", hook["id"])).body;
        assert_eq!(trail["count"], 1, "{trail}");
        assert_eq!(trail["results"][0]["actor"], json!({"type": "system", "job": "webhooks"}));
        // While disabled nothing is sent, and events still queue up for it.
        app.post(&format!("/payments/{id}/cancel/"), json!({})).expect(200);
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(receiver.hits().len(), 3);
        let enabled = app.patch(&path, json!({"enabled": true})).expect(200).body;
        assert_eq!(enabled["disabled_reason"], Value::Null);
        let hits = receiver.wait_for("the queue after re-enabling", WAIT, |h| delivered(h).len() >= 2);
        assert_eq!(delivered(&hits), [("payment.created".into(), id.clone()), ("payment.cancelled".into(), id)]);
        // A ping reaches it too.
        app.post(&format!("/webhooks/{}/test/", hook["id"]), json!({})).expect(201);
        let hits = receiver.wait_for("the ping", WAIT, |h| delivered(h).len() >= 3);
        assert_eq!(delivered(&hits)[2].0, "ping");
    }
}
