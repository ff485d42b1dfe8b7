//! Stripe through PaymentIntents, against a real localstripe (started by scripts/test.sh):
//! sources from PaymentMethods, charges, declines, 3-D Secure, holds captured or released,
//! and exact amounts as Stripe records them.

use crate::both;
use crate::helpers::*;

/// A test-mode Stripe integration of `app`'s workspace (None: no localstripe, skip).
fn integration(app: &App) -> Option<String> {
    stripe_url()?;
    let made = app
        .post("/integrations/", json!({"gateway": "stripe", "name": "Stripe",
            "credentials": {"secret_key": "sk_test_51QcobroLocalstripe0000000000001", "webhook_secret": "whsec_cobroLocalstripe0000000001"}}))
        .expect(201)
        .body;
    Some(made["id"].as_str().unwrap().to_string())
}

/// A PaymentMethod as Stripe.js makes it in the payer's browser (cobro never sees the number).
pub fn payment_method(number: &str) -> String {
    let made = localstripe(
        "POST",
        "/v1/payment_methods",
        &[
            ("type", "card"),
            ("card[number]", number),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2030"),
            ("card[cvc]", "123"),
        ],
    )
    .expect(200)
    .body;
    made["id"].as_str().unwrap().to_string()
}

fn stripe_source(app: &App, integration: &str, method: &str) -> Value {
    app.post(
        "/sources/",
        json!({"gateway": "stripe", "integration": integration,
        "gateway_data": {"payment_method": method}}),
    )
    .expect(201)
    .body
}

/// The PaymentIntent behind an attempt, as localstripe has it.
fn intent_of(app: &App, payment: &Value) -> (Value, Value) {
    let attempts = app
        .get(&format!("/payments/{}/attempts/", payment["id"]))
        .expect(200)
        .body;
    let attempt = attempts.as_array().unwrap().last().unwrap().clone();
    let reference = attempt["gateway_reference"]
        .as_str()
        .expect("a PaymentIntent id")
        .to_string();
    assert!(reference.starts_with("pi_"), "{reference}");
    (
        localstripe("GET", &format!("/v1/payment_intents/{reference}"), &[])
            .expect(200)
            .body,
        attempt,
    )
}

both! {
    fn a_payment_method_becomes_a_source_showing_its_card(app) {
        let test = app.in_test_mode();
        let Some(integration) = integration(&test) else { return };
        let source = stripe_source(&test, &integration, "pm_card_visa");
        assert_eq!((source["gateway"].as_str(), source["integration"].as_str()), (Some("stripe"), Some(integration.as_str())));
        assert_eq!((source["card"]["brand"].as_str(), source["card"]["last4"].as_str()), (Some("visa"), Some("4242")));
        assert!(source["gateway_data"]["payment_method"].as_str().unwrap().starts_with("pm_"));
        // The integration may go unnamed when the mode has just one.
        let unnamed = test.post("/sources/", json!({"gateway": "stripe", "gateway_data": {"payment_method": payment_method("4242424242424242")}})).expect(201).body;
        assert_eq!(unnamed["integration"], json!(integration));
        // What Stripe does not know, or what is not a PaymentMethod, is refused.
        for (data, said) in [(json!({"payment_method": "pm_doesNotExist000"}), "Stripe has no payment method"),
                             (json!({"payment_method": "pm_../../v1/charges"}), "Stripe needs a PaymentMethod"),
                             (json!({}), "Stripe needs a PaymentMethod")] {
            let refused = test.post("/sources/", json!({"gateway": "stripe", "integration": integration, "gateway_data": data})).expect(400);
            assert!(refused.body["gateway_data"][0].as_str().unwrap().contains(said), "{}", refused.text);
        }
        // Another workspace's integration does not exist here; a workspace without one is told so.
        let stranger = app.stranger().in_test_mode();
        let theirs = stranger.post("/sources/", json!({"gateway": "stripe", "integration": integration, "gateway_data": {"payment_method": "pm_card_visa"}})).expect(400);
        assert_eq!(theirs.body["integration"], json!([format!("Invalid pk \"{integration}\" - object does not exist.")]));
        let none = stranger.post("/sources/", json!({"gateway": "stripe", "gateway_data": {"payment_method": "pm_card_visa"}})).expect(400);
        assert!(none.text.contains("no enabled stripe integration"), "{}", none.text);
        test.patch(&format!("/integrations/{integration}/"), json!({"enabled": false})).expect(200);
        let disabled = test.post("/sources/", json!({"gateway": "stripe", "integration": integration, "gateway_data": {"payment_method": "pm_card_visa"}})).expect(400);
        assert!(disabled.text.contains("disabled"), "{}", disabled.text);
    }

    fn a_stripe_charge_succeeds_through_one_payment_intent(app) {
        let test = app.in_test_mode();
        let Some(integration) = integration(&test) else { return };
        let p = test.create_payment(json!({"amount": 1000, "currency": "CLP", "description": "Order 7"}));
        let source = stripe_source(&test, &integration, "pm_card_visa");
        let paid = test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"]})).expect(200).body;
        assert_eq!((paid["status"].as_str(), num(&paid["balance"])), (Some("succeeded"), "0".to_string()));
        let (intent, attempt) = intent_of(&test, &p);
        assert_eq!((intent["status"].as_str(), intent["amount"].as_i64(), intent["currency"].as_str()), (Some("succeeded"), Some(1000), Some("clp")));
        assert_eq!(intent["metadata"]["cobro_attempt"], json!(attempt["id"].to_string()));
        assert_eq!(intent["metadata"]["description"], "Order 7");
        assert_eq!(attempt["status"], "succeeded");
        assert_eq!(test.get(&format!("/sources/{}/", source["id"])).body["status"], "consumed");
    }

    fn a_declined_card_fails_with_stripes_code(app) {
        let test = app.in_test_mode();
        let Some(integration) = integration(&test) else { return };
        let p = test.create_payment(json!({}));
        let source = stripe_source(&test, &integration, "pm_card_chargeCustomerFail");
        let declined = test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"]})).expect(200).body;
        assert_eq!((declined["status"].as_str(), declined["failed_reason"].as_str()), (Some("failed"), Some("card_declined")));
        let attempts = test.get(&format!("/payments/{}/attempts/", p["id"])).body;
        assert_eq!((attempts[0]["status"].as_str(), attempts[0]["failure_code"].as_str()), (Some("failed"), Some("card_declined")));
        // Still payable with another card.
        let good = stripe_source(&test, &integration, "pm_card_visa");
        test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": good["id"]})).expect(200);
        assert_eq!(test.get(&format!("/payments/{}/", p["id"])).body["status"], "succeeded");
    }

    fn amounts_reach_stripe_exactly_in_its_units(app) {
        let test = app.in_test_mode();
        let Some(integration) = integration(&test) else { return };
        for (amount, currency, at_stripe) in [(json!(1000), "CLP", 1000), (json!("10.50"), "USD", 1050), (json!(500), "JPY", 500), (json!("1.230"), "KWD", 1230)] {
            let p = test.create_payment(json!({"amount": amount, "currency": currency}));
            let source = stripe_source(&test, &integration, "pm_card_visa");
            test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"]})).expect(200);
            let (intent, _) = intent_of(&test, &p);
            assert_eq!((intent["amount"].as_i64(), intent["currency"].as_str()), (Some(at_stripe), Some(currency.to_lowercase().as_str())), "{currency}");
        }
        // What Stripe cannot take is refused before any call.
        let p = test.create_payment(json!({"amount": "1.234", "currency": "KWD"}));
        let source = stripe_source(&test, &integration, "pm_card_visa");
        let refused = test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"]})).expect(400);
        assert!(refused.text.contains("steps of KWD 0.010"), "{}", refused.text);
        assert_eq!(test.get(&format!("/payments/{}/attempts/", p["id"])).body, json!([]));
        assert_eq!(test.get(&format!("/payments/{}/", p["id"])).body["status"], "requires_payment_method");
    }

    fn a_hold_is_captured_in_full_or_in_part(app) {
        let test = app.in_test_mode();
        let Some(integration) = integration(&test) else { return };
        for (capture, left, status) in [(json!({"amount": 600}), "400", "incomplete"), (json!({}), "0", "succeeded")] {
            let p = test.create_payment(json!({"amount": 1000}));
            let source = stripe_source(&test, &integration, "pm_card_visa");
            let held = test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"], "capture": false})).expect(200).body;
            assert_eq!((held["status"].as_str(), num(&held["balance"])), (Some("processing"), "1000".to_string()));
            let (intent, attempt) = intent_of(&test, &p);
            assert_eq!((intent["status"].as_str(), intent["capture_method"].as_str()), (Some("requires_capture"), Some("manual")));
            assert_eq!(attempt["status"], "requires_capture");
            test.post(&format!("/payments/{}/capture/", p["id"]), json!({"amount": 1001})).expect(400);
            let captured = test.post(&format!("/payments/{}/capture/", p["id"]), capture).expect(200).body;
            assert_eq!((captured["status"].as_str(), num(&captured["balance"])), (Some(status), left.to_string()));
            let (intent, attempt) = intent_of(&test, &p);
            assert_eq!((intent["status"].as_str(), attempt["status"].as_str()), (Some("succeeded"), Some("succeeded")));
            test.post(&format!("/payments/{}/capture/", p["id"]), json!({})).expect(400);
        }
    }

    fn cancelling_a_hold_releases_it_at_stripe(app) {
        let test = app.in_test_mode();
        let Some(integration) = integration(&test) else { return };
        let p = test.create_payment(json!({}));
        let source = stripe_source(&test, &integration, "pm_card_visa");
        test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"], "capture": false})).expect(200);
        let cancelled = test.post(&format!("/payments/{}/cancel/", p["id"]), json!({})).expect(200).body;
        assert_eq!(cancelled["status"], "cancelled");
        let (intent, attempt) = intent_of(&test, &p);
        assert_eq!((intent["status"].as_str(), attempt["status"].as_str(), attempt["failure_code"].as_str()), (Some("canceled"), Some("failed"), Some("canceled")));
        assert_eq!(test.event_types(&p["id"]).last().unwrap(), "payment.cancelled");
        // An integration with a charge in flight cannot go; once nothing is, it can.
        test.delete(&format!("/integrations/{integration}/")).expect(204);
    }

    fn three_d_secure_waits_for_the_payer(app) {
        let test = app.in_test_mode();
        let Some(integration) = integration(&test) else { return };
        let p = test.create_payment(json!({}));
        let source = stripe_source(&test, &integration, &payment_method("4000002760003184"));
        let waiting = test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"]})).expect(200).body;
        assert_eq!(waiting["status"], "processing");
        let (intent, attempt) = intent_of(&test, &p);
        assert_eq!((intent["status"].as_str(), attempt["status"].as_str()), (Some("requires_action"), Some("requires_action")));
        let data = &test.get(&format!("/sources/{}/", source["id"])).body["gateway_data"];
        assert_eq!(data["client_secret"], intent["client_secret"]);
        assert!(data["redirect_url"].as_str().unwrap().contains(&format!("/payments/{}/pay/?checkout=", p["id"])));
        // While it waits, its integration stays.
        test.delete(&format!("/integrations/{integration}/")).expect(400);
    }

    fn the_sandbox_holds_and_captures_too(app) {
        let test = app.in_test_mode();
        let p = test.create_payment(json!({"amount": 900}));
        let source = test.create_source(json!({}));
        let held = test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"], "capture": false})).expect(200).body;
        assert_eq!(held["status"], "processing");
        // Nothing else moves it meanwhile; a payer may not choose to hold.
        test.patch(&format!("/payments/{}/", p["id"]), json!({"status": "succeeded"})).expect(400);
        let key = key_of(&p);
        let payer = json!({"checkout": key, "source": 1, "capture": false}).to_string();
        let refused = send("POST", &test.url(&format!("/payments/{}/authorize/", p["id"])), &[("Content-Type", "application/json")], Some(&payer)).expect(400);
        assert!(refused.body["capture"].is_array(), "{}", refused.text);
        let captured = test.post(&format!("/payments/{}/capture/", p["id"]), json!({"amount": 300})).expect(200).body;
        assert_eq!((captured["status"].as_str(), num(&captured["balance"])), (Some("incomplete"), "600".to_string()));
        assert_eq!(test.event_types(&p["id"]), ["payment.created", "payment.processing", "payment.incomplete"]);
        // A second hold, released by a cancel.
        let q = test.create_payment(json!({}));
        let other = test.create_source(json!({}));
        test.post(&format!("/payments/{}/authorize/", q["id"]), json!({"source": other["id"], "capture": false})).expect(200);
        assert_eq!(test.post(&format!("/payments/{}/cancel/", q["id"]), json!({})).expect(200).body["status"], "cancelled");
        assert_eq!(test.event_types(&q["id"]), ["payment.created", "payment.processing", "payment.cancelled"]);
        test.post(&format!("/payments/{}/capture/", q["id"]), json!({})).expect(400);
    }
}

const WEBHOOK_SECRET: &str = "whsec_cobroLocalstripe0000000001";

/// Has localstripe send its events to the integration's webhook, signed with its secret.
fn send_events_to(app: &App, integration: &str) {
    let url = app.url(&format!("/integrations/{integration}/webhook/"));
    localstripe(
        "POST",
        &format!("/_config/webhooks/{integration}"),
        &[("url", &url), ("secret", WEBHOOK_SECRET)],
    )
    .expect(200);
}

/// `Stripe-Signature` for `body` at Unix time `at`, with `secret`.
fn signature(secret: &str, body: &str, at: i64) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{at}.{body}").as_bytes());
    format!("t={at},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn post_event(app: &App, integration: &str, body: &str, signature: Option<String>) -> Resp {
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    if let Some(signature) = signature {
        headers.push(("Stripe-Signature".to_string(), signature));
    }
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    send(
        "POST",
        &app.url(&format!("/integrations/{integration}/webhook/")),
        &headers,
        Some(body),
    )
}

fn wait_for_status(app: &App, payment: &Value, status: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let now = app
            .get(&format!("/payments/{}/", payment["id"]))
            .expect(200)
            .body;
        if now["status"] == status {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {} (not {status})",
            now["status"]
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Every PaymentIntent localstripe holds for an attempt (by its key, from one of them).
fn intents_for(intent: &Value) -> usize {
    let key = intent["metadata"]["cobro_key"].clone();
    assert!(
        key.as_str().is_some_and(|k| k.starts_with("att_")),
        "{intent}"
    );
    let (mut found, mut after) = (0, None::<String>);
    loop {
        let mut query = vec![("limit", "100".to_string())];
        if let Some(after) = &after {
            query.push(("starting_after", after.clone()));
        }
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = localstripe("GET", "/v1/payment_intents", &query)
            .expect(200)
            .body;
        let data = page["data"].as_array().unwrap();
        found += data
            .iter()
            .filter(|pi| pi["metadata"]["cobro_key"] == key)
            .count();
        match (page["has_more"].as_bool(), data.last()) {
            (Some(true), Some(last)) => after = Some(last["id"].as_str().unwrap().to_string()),
            _ => return found,
        }
    }
}

both! {
    fn three_d_secure_completes_with_stripes_webhook(app) {
        let test = app.in_test_mode();
        let Some(integration) = integration(&test) else { return };
        send_events_to(&test, &integration);
        let p = test.create_payment(json!({}));
        let source = stripe_source(&test, &integration, &payment_method("4000002760003184"));
        test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"]})).expect(200);
        let (intent, _) = intent_of(&test, &p);
        // The payer passes 3-D Secure (what Stripe.js does on the checkout page).
        localstripe("POST", &format!("/v1/payment_intents/{}/_authenticate", intent["id"].as_str().unwrap()),
            &[("client_secret", intent["client_secret"].as_str().unwrap()), ("success", "true")]).expect(200);
        let paid = wait_for_status(&test, &p, "succeeded");
        assert_eq!(num(&paid["balance"]), "0");
        let (_, attempt) = intent_of(&test, &p);
        assert_eq!(attempt["status"], "succeeded");
        assert_eq!(test.event_types(&p["id"]), ["payment.created", "payment.processing", "payment.succeeded"]);
    }

    fn provider_events_are_applied_once_and_only_when_signed(app) {
        let test = app.in_test_mode();
        let Some(integration) = integration(&test) else { return };
        let p = test.create_payment(json!({}));
        let source = stripe_source(&test, &integration, "pm_card_visa");
        test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"], "capture": false})).expect(200);
        let (intent, _) = intent_of(&test, &p);
        let event_id = unique("evt_");
        let event = json!({"id": event_id, "object": "event", "type": "payment_intent.succeeded",
            "data": {"object": {"id": intent["id"], "object": "payment_intent", "status": "succeeded",
                "currency": "clp", "metadata": intent["metadata"]}}}).to_string();
        let now = chrono::Utc::now().timestamp();
        // Unsigned, signed with another secret, or too old: refused, and nothing changes.
        for bad in [None, Some(signature("whsec_someoneElse000000000000000", &event, now)), Some(signature(WEBHOOK_SECRET, &event, now - 600)),
                    Some(signature(WEBHOOK_SECRET, &format!("{event} "), now))] {
            let refused = post_event(&test, &integration, &event, bad).expect(400);
            assert!(refused.body["detail"].as_str().is_some(), "{}", refused.text);
        }
        assert_eq!(test.get(&format!("/payments/{}/", p["id"])).body["status"], "processing");
        // Signed: applied, once.
        let applied = post_event(&test, &integration, &event, Some(signature(WEBHOOK_SECRET, &event, now))).expect(200);
        assert_eq!(applied.body, json!({"received": true, "outcome": "applied"}));
        assert_eq!(test.get(&format!("/payments/{}/", p["id"])).body["status"], "succeeded");
        // The provider is the actor of what its event changed, in the event's request.
        let latest = test.get(&format!("/events/?object_type=payment&object_id={}", p["id"])).body["results"][0].clone();
        assert_eq!(latest["actor"], json!({"type": "provider", "integration": integration}));
        assert_eq!(latest["request_id"].as_str(), applied.header("x-request-id"));
        let events = test.event_types(&p["id"]);
        let again = post_event(&test, &integration, &event, Some(signature(WEBHOOK_SECRET, &event, now))).expect(200);
        assert_eq!(again.body["outcome"], "duplicate");
        assert_eq!(test.event_types(&p["id"]), events, "applied once");
        // About a charge cobro does not know, or of a kind it does not act on: received.
        let unknown = json!({"id": unique("evt_"), "type": "payment_intent.succeeded",
            "data": {"object": {"id": "pi_unknownToCobro", "object": "payment_intent", "status": "succeeded", "currency": "clp"}}}).to_string();
        assert_eq!(post_event(&test, &integration, &unknown, Some(signature(WEBHOOK_SECRET, &unknown, now))).expect(200).body["outcome"], "unknown");
        let other = json!({"id": unique("evt_"), "type": "customer.created", "data": {"object": {"id": "cus_1", "object": "customer"}}}).to_string();
        assert_eq!(post_event(&test, &integration, &other, Some(signature(WEBHOOK_SECRET, &other, now))).expect(200).body["outcome"], "ignored");
        // No such integration.
        post_event(&test, "int_doesNotExist0000000000", &event, Some(signature(WEBHOOK_SECRET, &event, now))).expect(404);
    }

    fn the_reconciler_settles_a_charge_whose_answer_was_lost(app) {
        let test = app.in_test_mode();
        let Some(integration) = integration(&test) else { return };
        let p = test.create_payment(json!({"description": LOSE_THE_ANSWER}));
        let source = stripe_source(&test, &integration, "pm_card_visa");
        let waiting = test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"]})).expect(200).body;
        // No answer is no answer: neither paid nor failed.
        assert_eq!(waiting["status"], "processing");
        let attempts = test.get(&format!("/payments/{}/attempts/", p["id"])).body;
        assert_eq!((attempts[0]["status"].as_str(), &attempts[0]["gateway_reference"]), (Some("processing"), &Value::Null));
        // A reconciler that asks after a second finds the PaymentIntent and settles the charge.
        let Some(server) = server_with(test.backend(), |s| s.reconcile_after_seconds = 1) else { return };
        let _ = server;
        let paid = wait_for_status(&test, &p, "succeeded");
        assert_eq!(num(&paid["balance"]), "0");
        let (intent, attempt) = intent_of(&test, &p);
        assert_eq!((intent["status"].as_str(), attempt["status"].as_str()), (Some("succeeded"), Some("succeeded")));
        assert_eq!(intents_for(&intent), 1, "one PaymentIntent, never two");
    }
}

both! {
    fn a_charge_its_payer_abandoned_is_given_up_at_stripe(app) {
        let test = app.in_test_mode();
        let Some(integration) = integration(&test) else { return };
        let p = test.create_payment(json!({}));
        let source = stripe_source(&test, &integration, &payment_method("4000002760003184"));
        test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"]})).expect(200);
        // A reconciler that gives a payer two seconds to authenticate.
        let Some(_server) = server_with(test.backend(), |s| {
            s.reconcile_after_seconds = 1;
            s.action_timeout_seconds = 2;
        }) else { return };
        let given_up = wait_for_status(&test, &p, "failed");
        assert_eq!(given_up["failed_reason"], "canceled");
        let (intent, attempt) = intent_of(&test, &p);
        assert_eq!((intent["status"].as_str(), attempt["status"].as_str()), (Some("canceled"), Some("failed")));
        // Payable again, with another card.
        let other = stripe_source(&test, &integration, "pm_card_visa");
        test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": other["id"]})).expect(200);
        assert_eq!(test.get(&format!("/payments/{}/", p["id"])).body["status"], "succeeded");
    }

    fn two_reconcilers_never_hold_one_charge_at_once(app) {
        let test = app.in_test_mode();
        let Some(integration) = integration(&test) else { return };
        let p = test.create_payment(json!({"description": LOSE_THE_ANSWER}));
        let source = stripe_source(&test, &integration, "pm_card_visa");
        test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"]})).expect(200);
        let attempt = test.get(&format!("/payments/{}/attempts/", p["id"])).body[0]["id"].as_i64().unwrap();
        let db = &test.server.db;
        let claim = || {
            let mut conn = db.pool.get().unwrap();
            let later = cobro::db::now() + chrono::Duration::seconds(5);
            let claimed = cobro::payments::store::claim_unsettled(&mut conn, &std::sync::Arc::new(cobro::audit::Origin::job("test")), later, cobro::db::now(), later, 1000).unwrap();
            claimed.iter().any(|(_, id)| *id == attempt)
        };
        let (first, second) = std::thread::scope(|s| {
            let a = s.spawn(claim);
            let b = s.spawn(claim);
            (a.join().unwrap(), b.join().unwrap())
        });
        assert!(first ^ second, "exactly one claim: {first} {second}");
        assert!(!claim(), "held while its claim lasts");
    }

    fn modes_keep_their_stripe_accounts_apart(app) {
        let test = app.in_test_mode();
        let Some(integration) = integration(&test) else { return };
        let source = stripe_source(&test, &integration, "pm_card_visa");
        // Live mode sees neither the test integration nor its sources, and takes no test key.
        let live = app.create_payment(json!({}));
        app.post(&format!("/payments/{}/authorize/", live["id"]), json!({"source": source["id"]})).expect(400);
        let refused = app.post("/sources/", json!({"gateway": "stripe", "integration": integration, "gateway_data": {"payment_method": "pm_card_visa"}})).expect(400);
        assert_eq!(refused.body["integration"], json!([format!("Invalid pk \"{integration}\" - object does not exist.")]));
        app.post("/integrations/", json!({"gateway": "stripe", "name": "Live", "credentials": {"secret_key": "sk_test_51QnotLive0000000000000000001"}})).expect(400);
    }
}

both! {
    fn a_refused_release_reads_stripe_back(app) {
        let test = app.in_test_mode();
        let Some(integration) = integration(&test) else { return };
        let p = test.create_payment(json!({}));
        let source = stripe_source(&test, &integration, "pm_card_visa");
        test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"], "capture": false})).expect(200);
        let (intent, _) = intent_of(&test, &p);
        // Captured in Stripe's dashboard meanwhile: Stripe refuses the release.
        localstripe("POST", &format!("/v1/payment_intents/{}/capture", intent["id"].as_str().unwrap()), &[]).expect(200);
        let after = test.post(&format!("/payments/{}/cancel/", p["id"]), json!({})).expect(200).body;
        // The money moved, so the payment says so: never cancelled over a capture.
        assert_eq!((after["status"].as_str(), num(&after["balance"])), (Some("succeeded"), "0".to_string()));
        let (_, attempt) = intent_of(&test, &p);
        assert_eq!(attempt["status"], "succeeded");
    }

    fn a_disabled_integration_starts_no_new_charge(app) {
        let test = app.in_test_mode();
        let Some(integration) = integration(&test) else { return };
        let source = test.post("/sources/", json!({"gateway": "stripe", "integration": integration, "usage": "reusable",
            "gateway_data": {"payment_method": "pm_card_visa"}})).expect(201).body;
        test.patch(&format!("/integrations/{integration}/"), json!({"enabled": false})).expect(200);
        let p = test.create_payment(json!({}));
        let refused = test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"]})).expect(400);
        assert_eq!(refused.body, json!({"source": [format!("The source's integration {integration} is disabled.")]}));
        assert_eq!(test.get(&format!("/payments/{}/attempts/", p["id"])).body, json!([]));
        test.patch(&format!("/integrations/{integration}/"), json!({"enabled": true})).expect(200);
        test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"]})).expect(200);
    }

    fn a_success_cobro_did_not_expect_is_flagged(app) {
        let test = app.in_test_mode();
        let Some(integration) = integration(&test) else { return };
        let p = test.create_payment(json!({}));
        let source = stripe_source(&test, &integration, "pm_card_chargeCustomerFail");
        test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"]})).expect(200);
        let attempts = test.get(&format!("/payments/{}/attempts/", p["id"])).body;
        let reference = attempts[0]["gateway_reference"].as_str().unwrap_or("ch_unknown").to_string();
        // Stripe later says the charge succeeded (a PaymentIntent confirmed again elsewhere).
        let event = json!({"id": unique("evt_"), "type": "payment_intent.succeeded", "data": {"object": {
            "id": reference, "object": "payment_intent", "status": "succeeded", "currency": "clp"}}}).to_string();
        let now = chrono::Utc::now().timestamp();
        let answer = post_event(&test, &integration, &event, Some(signature(WEBHOOK_SECRET, &event, now))).expect(200);
        assert_eq!(answer.body["outcome"], "ignored");
        assert_eq!(test.get(&format!("/payments/{}/", p["id"])).body["status"], "failed", "no status it did not reach");
        assert!(test.event_types(&p["id"]).contains(&"payment.provider_mismatch".to_string()), "flagged for a person");
    }

    fn a_held_charge_whose_answer_was_lost_stays_held(app) {
        let test = app.in_test_mode();
        let p = test.create_payment(json!({}));
        let source = test.create_source(json!({"gateway_data": {"token": "tok_answer_lost"}}));
        let waiting = test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"], "capture": false})).expect(200).body;
        assert_eq!(waiting["status"], "processing");
        // Asked again, the sandbox says it holds the amount: held, not collected.
        test.post(&format!("/payments/{}/settle/", p["id"]), json!({})).expect(200);
        let attempts = test.get(&format!("/payments/{}/attempts/", p["id"])).body;
        assert_eq!(attempts[0]["status"], "requires_capture");
        assert_eq!(num(&test.get(&format!("/payments/{}/", p["id"])).body["balance"]), "1000");
        test.post(&format!("/payments/{}/capture/", p["id"]), json!({})).expect(200);
        assert_eq!(test.get(&format!("/payments/{}/", p["id"])).body["status"], "succeeded");
    }
}

/// A test-mode payment of `fields` paid through Stripe with pm_card_visa.
fn paid_with_stripe(app: &App, integration: &str, fields: Value) -> Value {
    let p = app.create_payment(fields);
    let source = stripe_source(app, integration, "pm_card_visa");
    let paid = app
        .post(
            &format!("/payments/{}/authorize/", p["id"]),
            json!({"source": source["id"]}),
        )
        .expect(200)
        .body;
    assert_eq!(paid["status"], "succeeded");
    paid
}

/// The Refunds localstripe holds for a PaymentIntent.
fn refunds_at_stripe(intent: &str) -> Vec<Value> {
    localstripe(
        "GET",
        "/v1/refunds",
        &[("payment_intent", intent), ("limit", "100")],
    )
    .expect(200)
    .body["data"]
        .as_array()
        .unwrap()
        .iter()
        // localstripe refunds what a partial capture did not take, by itself.
        .filter(|r| r["metadata"]["cobro_key"].is_string())
        .cloned()
        .collect()
}

fn wait_for_refund(app: &App, id: &Value, status: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let now = app.get(&format!("/refunds/{id}/")).expect(200).body;
        if now["status"] == status {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refund {id} still {}",
            now["status"]
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

both! {
    fn stripe_refunds_reach_stripe_exactly(app) {
        let test = app.in_test_mode();
        let Some(integration) = integration(&test) else { return };
        for (amount, currency, part, at_stripe) in [(json!(1000), "CLP", json!(300), 300), (json!("10.50"), "USD", json!("2.25"), 225)] {
            let p = paid_with_stripe(&test, &integration, json!({"amount": amount, "currency": currency}));
            let (intent, _) = intent_of(&test, &p);
            let intent = intent["id"].as_str().unwrap();
            let refund = test.post("/refunds/", json!({"payment": p["id"], "amount": part, "reason": "duplicate"})).expect(201).body;
            assert_eq!(refund["status"], "succeeded", "{refund}");
            let reference = refund["gateway_reference"].as_str().unwrap();
            assert!(reference.starts_with("re_"), "{refund}");
            let at = refunds_at_stripe(intent);
            assert_eq!(at.len(), 1);
            assert_eq!((at[0]["id"].as_str(), at[0]["amount"].as_i64(), at[0]["currency"].as_str()),
                (Some(reference), Some(at_stripe), Some(currency.to_lowercase().as_str())), "{currency}");
            assert_eq!(at[0]["metadata"]["reason"], "duplicate");
            assert!(at[0]["metadata"]["cobro_key"].as_str().unwrap().starts_with("rfp_"));
            // The rest; then nothing more reaches Stripe.
            test.post(&format!("/payments/{}/refund/", p["id"]), json!({})).expect(201);
            let after = test.get(&format!("/payments/{}/", p["id"])).body;
            assert_eq!((&after["refunded"], after["status"].as_str()), (&json!(true), Some("succeeded")));
            test.post("/refunds/", json!({"payment": p["id"], "amount": 1})).expect(400);
            assert_eq!(refunds_at_stripe(intent).len(), 2);
        }
        // A refund Stripe cannot take in its units is refused before any call.
        let p = paid_with_stripe(&test, &integration, json!({"amount": "1.230", "currency": "KWD"}));
        let refused = test.post("/refunds/", json!({"payment": p["id"], "amount": "0.005"})).expect(400);
        assert!(refused.text.contains("steps of KWD 0.010"), "{}", refused.text);
        let (intent, _) = intent_of(&test, &p);
        assert!(refunds_at_stripe(intent["id"].as_str().unwrap()).is_empty());
    }

    fn a_stripe_refund_whose_answer_was_lost_is_settled_by_the_reconciler(app) {
        let test = app.in_test_mode();
        let Some(integration) = integration(&test) else { return };
        let p = paid_with_stripe(&test, &integration, json!({}));
        // Its refund's answer is lost on its way back (the refund carries the description).
        test.patch(&format!("/payments/{}/", p["id"]), json!({"description": LOSE_THE_ANSWER})).expect(200);
        let refund = test.post("/refunds/", json!({"payment": p["id"], "amount": 400})).expect(201).body;
        // No answer is no answer: pending, holding its amount, and nothing shown as returned.
        assert_eq!((refund["status"].as_str(), &refund["gateway_reference"]), (Some("pending"), &Value::Null));
        assert_eq!(num(&test.get(&format!("/payments/{}/", p["id"])).body["amount_refunded"]), "0");
        test.post("/refunds/", json!({"payment": p["id"], "amount": 601})).expect(400);
        let Some(_server) = server_with(test.backend(), |s| s.reconcile_after_seconds = 1) else { return };
        let settled = wait_for_refund(&test, &refund["id"], "succeeded");
        let (intent, _) = intent_of(&test, &p);
        let at = refunds_at_stripe(intent["id"].as_str().unwrap());
        assert_eq!(at.len(), 1, "one refund at Stripe, never two: {at:?}");
        assert_eq!(settled["gateway_reference"], at[0]["id"]);
        assert_eq!(num(&test.get(&format!("/payments/{}/", p["id"])).body["amount_refunded"]), "400");
    }

    fn stripe_refund_events_are_applied_once(app) {
        let test = app.in_test_mode();
        let Some(integration) = integration(&test) else { return };
        let p = paid_with_stripe(&test, &integration, json!({}));
        test.patch(&format!("/payments/{}/", p["id"]), json!({"description": LOSE_THE_ANSWER})).expect(200);
        let refund = test.post("/refunds/", json!({"payment": p["id"], "amount": 250})).expect(201).body;
        assert_eq!(refund["status"], "pending");
        // Stripe's refund.updated about it (found by the key in its metadata): applied once.
        let (intent, _) = intent_of(&test, &p);
        let at = refunds_at_stripe(intent["id"].as_str().unwrap());
        let object = json!({"id": at[0]["id"], "object": "refund", "status": "succeeded", "amount": 250, "currency": "clp",
            "payment_intent": intent["id"], "metadata": at[0]["metadata"]});
        let event = json!({"id": unique("evt_"), "type": "refund.updated", "data": {"object": object}}).to_string();
        let now = chrono::Utc::now().timestamp();
        post_event(&test, &integration, &event, None).expect(400);
        assert_eq!(test.get(&format!("/refunds/{}/", refund["id"])).body["status"], "pending");
        assert_eq!(post_event(&test, &integration, &event, Some(signature(WEBHOOK_SECRET, &event, now))).expect(200).body["outcome"], "applied");
        let after = test.get(&format!("/refunds/{}/", refund["id"])).body;
        assert_eq!((after["status"].as_str(), &after["gateway_reference"]), (Some("succeeded"), &at[0]["id"]));
        let events = test.events_of("refund", &refund["id"]);
        assert_eq!(post_event(&test, &integration, &event, Some(signature(WEBHOOK_SECRET, &event, now))).expect(200).body["outcome"], "duplicate");
        let retold = json!({"id": unique("evt_"), "type": "refund.updated", "data": {"object": object}}).to_string();
        assert_eq!(post_event(&test, &integration, &retold, Some(signature(WEBHOOK_SECRET, &retold, now))).expect(200).body["outcome"], "ignored");
        assert_eq!(test.events_of("refund", &refund["id"]), events, "applied once");
        assert_eq!(events, ["refund.created", "refund.succeeded"]);
        assert_eq!(num(&test.get(&format!("/payments/{}/", p["id"])).body["amount_refunded"]), "250");
        // A refund cobro did not make (in Stripe's dashboard) is acknowledged, logged, and
        // flagged on its payment for a person; so is another refund carrying a key that its
        // own refund already answered.
        let mismatches = || test.event_types(&p["id"]).iter().filter(|e| *e == "payment.provider_mismatch").count();
        let foreign = json!({"id": unique("evt_"), "type": "refund.created", "data": {"object": {"id": "re_madeInTheDashboard", "object": "refund",
            "status": "succeeded", "payment_intent": intent["id"], "metadata": {}}}}).to_string();
        assert_eq!(post_event(&test, &integration, &foreign, Some(signature(WEBHOOK_SECRET, &foreign, now))).expect(200).body["outcome"], "unknown");
        assert_eq!(mismatches(), 1);
        let twin = json!({"id": unique("evt_"), "type": "refund.updated", "data": {"object": {"id": "re_aSecondOne", "object": "refund",
            "status": "succeeded", "payment_intent": intent["id"], "metadata": at[0]["metadata"]}}}).to_string();
        assert_eq!(post_event(&test, &integration, &twin, Some(signature(WEBHOOK_SECRET, &twin, now))).expect(200).body["outcome"], "unknown");
        assert_eq!(mismatches(), 2);
        assert_eq!(test.get(&format!("/refunds/{}/", refund["id"])).body["gateway_reference"], at[0]["id"], "its own refund stays");
        assert_eq!(num(&test.get(&format!("/payments/{}/", p["id"])).body["amount_refunded"]), "250");
        // charge.refunded does not say which refund: cobro asks Stripe about those in flight.
        let second = test.post("/refunds/", json!({"payment": p["id"], "amount": 100})).expect(201).body;
        assert_eq!(second["status"], "pending");
        let charge = json!({"id": unique("evt_"), "type": "charge.refunded", "data": {"object": {"id": "ch_x", "object": "charge",
            "payment_intent": intent["id"], "refunded": false}}}).to_string();
        assert_eq!(post_event(&test, &integration, &charge, Some(signature(WEBHOOK_SECRET, &charge, now))).expect(200).body["outcome"], "applied");
        // Every test server runs a reconciler; the event makes the refund due at once.
        wait_for_refund(&test, &second["id"], "succeeded");
        assert_eq!(num(&test.get(&format!("/payments/{}/", p["id"])).body["amount_refunded"]), "350");
        // Stripe may say later that a refund that succeeded failed (a closed card): the money
        // came back to the merchant, and cobro says so.
        let failed = json!({"id": at[0]["id"], "object": "refund", "status": "failed", "failure_reason": "expired_or_canceled_card",
            "payment_intent": intent["id"], "metadata": at[0]["metadata"]});
        let event = json!({"id": unique("evt_"), "type": "refund.failed", "data": {"object": failed}}).to_string();
        assert_eq!(post_event(&test, &integration, &event, Some(signature(WEBHOOK_SECRET, &event, now))).expect(200).body["outcome"], "applied");
        let after = test.get(&format!("/refunds/{}/", refund["id"])).body;
        assert_eq!((after["status"].as_str(), after["failed_reason"].as_str(), num(&after["amount_refunded"])),
            (Some("failed"), Some("expired_or_canceled_card"), "0".to_string()));
        assert_eq!(num(&test.get(&format!("/payments/{}/", p["id"])).body["amount_refunded"]), "100");
        assert_eq!(test.events_of("refund", &refund["id"]), ["refund.created", "refund.succeeded", "refund.failed"]);
    }
}
