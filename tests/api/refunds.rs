//! Refunds: full, partial and several, through the gateway that collected (the sandbox and
//! its refund tokens, bank transfers marked by hand, money recorded by hand), never more
//! than was collected, with their events, webhooks and the invoice's `amount_refunded`.

use std::time::{Duration, Instant};

use crate::both;
use crate::helpers::*;
use crate::receiver::Receiver;

/// A test-mode payment of `amount` CLP paid by a sandbox card with `token`.
fn paid(app: &App, token: &str, amount: i64) -> Value {
    let p = app.create_payment(json!({"amount": amount}));
    let source = app.create_source(json!({"gateway_data": {"token": token}}));
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

fn refund(app: &App, payment: &Value, amount: Value) -> Resp {
    let mut body = json!({"payment": payment["id"]});
    if !amount.is_null() {
        body["amount"] = amount;
    }
    app.post("/refunds/", body)
}

fn payment_of(app: &App, payment: &Value) -> Value {
    app.get(&format!("/payments/{}/", payment["id"]))
        .expect(200)
        .body
}

fn wait_for_refund(app: &App, id: &Value, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = app.get(&format!("/refunds/{id}/")).expect(200).body;
        if now["status"] == status {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "refund {id} still {} (not {status})",
            now["status"]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

both! {
    fn a_payment_is_refunded_in_parts_and_in_full_never_beyond(app) {
        let test = app.in_test_mode();
        let p = paid(&test, "tok_visa", 1000);
        let first = refund(&test, &p, json!("300")).expect(201).body;
        let keys: Vec<&str> = first.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["id", "payment", "amount", "currency", "reason", "status", "failed_reason", "gateway_reference",
            "metadata", "test_mode", "created", "updated", "amount_refunded", "parts"]);
        assert_eq!((first["payment"].clone(), num(&first["amount"]), first["currency"].as_str(), first["status"].as_str()),
            (p["id"].clone(), "300".to_string(), Some("CLP"), Some("succeeded")));
        assert!(first["gateway_reference"].as_str().unwrap().starts_with("sbxr_"), "{first}");
        let attempt = test.get(&format!("/payments/{}/attempts/", p["id"])).body[0]["id"].clone();
        assert_eq!(first["parts"], json!([{"attempt": attempt, "gateway": "sandbox", "amount": 300, "status": "succeeded",
            "failed_reason": null, "gateway_reference": first["gateway_reference"]}]));
        // The payment keeps its status and shows what went back.
        let after = payment_of(&test, &p);
        assert_eq!((after["status"].as_str(), num(&after["amount_refunded"]), &after["refunded"], num(&after["balance"])),
            (Some("succeeded"), "300".to_string(), &json!(false), "0".to_string()));
        // The same through the payment's own route, with a reason; then all that is left.
        let second = test.post(&format!("/payments/{}/refund/", p["id"]), json!({"amount": 200, "reason": "requested_by_customer"})).expect(201).body;
        assert_eq!((num(&second["amount"]), second["reason"].as_str()), ("200".to_string(), Some("requested_by_customer")));
        let rest = refund(&test, &p, Value::Null).expect(201).body;
        assert_eq!((num(&rest["amount"]), rest["status"].as_str()), ("500".to_string(), Some("succeeded")));
        let after = payment_of(&test, &p);
        assert_eq!((num(&after["amount_refunded"]), &after["refunded"], after["status"].as_str()), ("1000".to_string(), &json!(true), Some("succeeded")));
        // Nothing is left: refused, naming the amount, and nothing is written.
        assert_eq!(refund(&test, &p, json!(1)).expect(400).body,
            json!({"amount": ["Nothing is left to refund: all that was collected is refunded or being refunded."]}));
        assert_eq!(test.get(&format!("/refunds/?payment={}", p["id"])).expect(200).body["count"], 3);
        // Read back as answered; newest first.
        assert_eq!(test.get(&format!("/refunds/{}/", first["id"])).expect(200).body, first);
        assert_eq!(ids(&test.get(&format!("/refunds/?payment={}", p["id"])).body), [rest["id"].as_i64().unwrap(), second["id"].as_i64().unwrap(), first["id"].as_i64().unwrap()]);
        assert_eq!(ids(&test.get(&format!("/refunds/?payment={}&ordering=amount", p["id"])).body), [second["id"].as_i64().unwrap(), first["id"].as_i64().unwrap(), rest["id"].as_i64().unwrap()]);
        assert_eq!(test.events_of("refund", &first["id"]), ["refund.created", "refund.succeeded"]);
        let refunded = test.event_types(&p["id"]).iter().filter(|e| *e == "payment.refunded").count();
        assert_eq!(refunded, 3, "one payment.refunded a refund");
    }

    fn refused_refunds_leave_nothing_behind(app) {
        let test = app.in_test_mode();
        let unpaid = test.create_payment(json!({}));
        assert_eq!(refund(&test, &unpaid, Value::Null).expect(400).body,
            json!({"non_field_errors": ["The payment is \"requires_payment_method\": only money collected (a succeeded or incomplete payment) can be refunded."]}));
        let cancelled = test.create_payment(json!({}));
        test.post(&format!("/payments/{}/cancel/", cancelled["id"]), json!({})).expect(200);
        test.post(&format!("/payments/{}/refund/", cancelled["id"]), json!({})).expect(400);
        let p = paid(&test, "tok_visa", 1000);
        assert_eq!(refund(&test, &p, json!(1001)).expect(400).body,
            json!({"amount": ["Ensure this value is less than or equal to 1000, what is left to refund."]}));
        for (amount, message) in [(json!(0), "Ensure this value is greater than 0."), (json!("-5"), "Ensure this value is greater than 0."),
            (json!("1.5"), "Ensure that there are no more than 0 decimal places."), (json!("ten"), "A valid number is required.")] {
            assert_eq!(refund(&test, &p, amount.clone()).expect(400).body, json!({"amount": [message]}), "{amount}");
        }
        assert_eq!(test.post("/refunds/", json!({"payment": p["id"], "reason": "bored"})).expect(400).body, json!({"reason": ["\"bored\" is not a valid choice."]}));
        assert_eq!(test.post("/refunds/", json!({})).expect(400).body, json!({"payment": ["This field is required."]}));
        // Another workspace's payment, or this one's in the other mode, does not exist.
        refund(&test.stranger().in_test_mode(), &p, Value::Null).expect(404);
        test.stranger().in_test_mode().post(&format!("/payments/{}/refund/", p["id"]), json!({})).expect(404);
        refund(&app, &p, Value::Null).expect(404);
        app.post(&format!("/payments/{}/refund/", p["id"]), json!({})).expect(404);
        assert_eq!(test.get("/refunds/").expect(200).body["count"], 0);
        assert_eq!(num(&payment_of(&test, &p)["amount_refunded"]), "0");
        assert!(!test.event_types(&p["id"]).contains(&"payment.refunded".to_string()));
        // Bad filters are a 400 too.
        test.get("/refunds/?status=gone").expect(400);
        test.get("/refunds/?ordering=nope").expect(400);
        test.get("/refunds/999999999/").expect(404);
    }

    fn the_sandbox_refund_tokens_fail_or_wait(app) {
        let test = app.in_test_mode();
        // tok_refund_fail: the charge succeeds, its refunds fail, and nothing went back.
        let p = paid(&test, "tok_refund_fail", 1000);
        let failed = refund(&test, &p, json!(400)).expect(201).body;
        assert_eq!((failed["status"].as_str(), failed["failed_reason"].as_str(), num(&failed["amount_refunded"])),
            (Some("failed"), Some("expired_or_canceled_card"), "0".to_string()));
        assert_eq!(num(&payment_of(&test, &p)["amount_refunded"]), "0");
        assert_eq!(test.events_of("refund", &failed["id"]), ["refund.created", "refund.failed"]);
        // A failed refund holds nothing: all 1000 can still be asked for.
        assert_eq!(num(&refund(&test, &p, Value::Null).expect(201).body["amount"]), "1000");
        // tok_refund_async: pending (the amount held), until the sandbox settles it.
        let q = paid(&test, "tok_refund_async", 1000);
        let waiting = refund(&test, &q, json!(600)).expect(201).body;
        assert_eq!(waiting["status"], "pending");
        assert_eq!(num(&payment_of(&test, &q)["amount_refunded"]), "0");
        assert_eq!(refund(&test, &q, json!(401)).expect(400).body["amount"][0], "Ensure this value is less than or equal to 400, what is left to refund.");
        let settled = test.post(&format!("/refunds/{}/settle/", waiting["id"]), json!({})).expect(200).body;
        assert_eq!((settled["status"].as_str(), num(&settled["amount_refunded"])), (Some("succeeded"), "600".to_string()));
        assert_eq!(num(&payment_of(&test, &q)["amount_refunded"]), "600");
        test.post(&format!("/refunds/{}/settle/", waiting["id"]), json!({})).expect(400);
        assert_eq!(test.events_of("refund", &waiting["id"]), ["refund.created", "refund.succeeded"]);
        // A pending one can be called off (it has not gone out); what it held is free again.
        let called_off = refund(&test, &q, json!(400)).expect(201).body;
        let cancelled = test.post(&format!("/refunds/{}/cancel/", called_off["id"]), json!({})).expect(200).body;
        assert_eq!(cancelled["status"], "cancelled");
        assert_eq!(cancelled["parts"][0]["status"], "cancelled");
        assert_eq!(test.post(&format!("/refunds/{}/cancel/", called_off["id"]), json!({})).expect(400).body,
            json!({"detail": "This refund is \"cancelled\": only a pending refund can be cancelled."}));
        test.post(&format!("/refunds/{}/cancel/", waiting["id"]), json!({})).expect(400);
        assert_eq!(test.events_of("refund", &called_off["id"]), ["refund.created", "refund.cancelled"]);
        // Left alone, the sandbox settles it by itself (COBRO_SANDBOX_SETTLE_SECONDS).
        let later = refund(&test, &q, Value::Null).expect(201).body;
        assert_eq!((later["status"].as_str(), num(&later["amount"])), (Some("pending"), "400".to_string()));
        wait_for_refund(&test, &later["id"], "succeeded");
        let after = payment_of(&test, &q);
        assert_eq!((num(&after["amount_refunded"]), &after["refunded"]), ("1000".to_string(), &json!(true)));
        // Live mode settles nothing by hand (a live refund: a bank transfer's).
        let live = app.create_payment(json!({"status": "succeeded"}));
        let live_refund = refund(&app, &live, json!(100)).expect(201).body;
        assert_eq!(app.post(&format!("/refunds/{}/settle/", live_refund["id"]), json!({})).expect(400).body,
            json!({"detail": "Settling a refund by hand is only possible in test mode."}));
    }

    fn bank_transfer_refunds_are_marked_by_hand(app) {
        let p = app.create_payment(json!({}));
        let source = app.create_source(json!({}));
        app.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"]})).expect(200);
        app.patch(&format!("/payments/{}/", p["id"]), json!({"status": "succeeded"})).expect(200);
        // The merchant sends the money back by transfer, and says when it is done.
        let back = refund(&app, &p, json!(300)).expect(201).body;
        assert_eq!((back["status"].as_str(), back["parts"][0]["gateway"].as_str()), (Some("pending"), Some("bank_transfer")));
        assert!(back["gateway_reference"].as_str().unwrap().starts_with("btr_"), "{back}");
        let labelled = app.patch(&format!("/refunds/{}/", back["id"]), json!({"metadata": {"ticket": "T-9"}})).expect(200).body;
        assert_eq!((labelled["metadata"].clone(), labelled["status"].as_str()), (json!({"ticket": "T-9"}), Some("pending")));
        let done = app.patch(&format!("/refunds/{}/", back["id"]), json!({"status": "succeeded"})).expect(200).body;
        assert_eq!((done["status"].as_str(), num(&done["amount_refunded"])), (Some("succeeded"), "300".to_string()));
        assert_eq!(num(&payment_of(&app, &p)["amount_refunded"]), "300");
        // Once it ended, it stays ended.
        assert_eq!(app.patch(&format!("/refunds/{}/", back["id"]), json!({"status": "failed"})).expect(400).body,
            json!({"status": ["Cannot move a refund from \"succeeded\" to \"failed\"."]}));
        let bounced = refund(&app, &p, json!(200)).expect(201).body;
        app.patch(&format!("/refunds/{}/", bounced["id"]), json!({"failed_reason": "no status"})).expect(400);
        let failed = app.patch(&format!("/refunds/{}/", bounced["id"]), json!({"status": "failed", "failed_reason": "account_closed"})).expect(200).body;
        assert_eq!((failed["status"].as_str(), failed["failed_reason"].as_str()), (Some("failed"), Some("account_closed")));
        assert_eq!(app.patch(&format!("/refunds/{}/", bounced["id"]), json!({"status": "failed", "failed_reason": "other"})).expect(400).body,
            json!({"failed_reason": ["Only allowed when marking a pending refund \"failed\"."]}));
        // A transfer not made yet is called off; once ended, a refund is not.
        let unsent = refund(&app, &p, json!(100)).expect(201).body;
        assert_eq!(app.post(&format!("/refunds/{}/cancel/", unsent["id"]), json!({})).expect(200).body["status"], "cancelled");
        assert_eq!(app.patch(&format!("/refunds/{}/", back["id"]), json!({"status": "cancelled"})).expect(400).body,
            json!({"status": ["This refund is \"succeeded\": only a pending refund can be cancelled."]}));
        assert_eq!(num(&payment_of(&app, &p)["amount_refunded"]), "300");
        assert_eq!(app.events_of("refund", &back["id"]), ["refund.created", "refund.updated", "refund.succeeded"]);
        assert_eq!(app.events_of("refund", &bounced["id"]), ["refund.created", "refund.failed"]);
        assert_eq!(app.events_of("refund", &unsent["id"]), ["refund.created", "refund.cancelled"]);
        // A gateway's refund is the gateway's to end.
        let test = app.in_test_mode();
        let q = paid(&test, "tok_refund_async", 1000);
        let card = refund(&test, &q, Value::Null).expect(201).body;
        assert_eq!(test.patch(&format!("/refunds/{}/", card["id"]), json!({"status": "succeeded"})).expect(400).body,
            json!({"status": ["This refund goes back through the sandbox gateway: its answer decides how it ends."]}));
        assert_eq!(test.get(&format!("/refunds/{}/", card["id"])).body["status"], "pending");
    }

    fn money_recorded_by_hand_goes_back_at_once_and_the_invoice_shows_it(app) {
        let ana = app.customer_id("Ana");
        let invoice = app.open_invoice(&ana, "CLP", "1000");
        let p = app.create_payment(json!({"invoice": invoice, "status": "succeeded"}));
        let back = refund(&app, &p, json!(250)).expect(201).body;
        assert_eq!((back["status"].as_str(), back["gateway_reference"].clone()), (Some("succeeded"), Value::Null));
        assert_eq!(back["parts"], json!([{"attempt": null, "gateway": null, "amount": 250, "status": "succeeded", "failed_reason": null, "gateway_reference": null}]));
        let inv = app.get(&format!("/invoices/{invoice}/")).expect(200).body;
        assert_eq!((inv["status"].as_str(), num(&inv["amount_paid"]), num(&inv["amount_refunded"])), (Some("paid"), "1000".to_string(), "250".to_string()));
        assert_eq!(app.events_of("invoice", &json!(invoice)).last().unwrap(), "invoice.updated");
        // Nothing to call off: it went back already.
        app.post(&format!("/refunds/{}/cancel/", back["id"]), json!({})).expect(400);
        // A partial collection marked by hand can go back too, up to what was received.
        let q = app.create_payment(json!({}));
        app.patch(&format!("/payments/{}/", q["id"]), json!({"status": "incomplete", "amount_collected": 400})).expect(200);
        assert_eq!(num(&refund(&app, &q, Value::Null).expect(201).body["amount"]), "400");
    }

    fn a_payment_paid_by_several_charges_is_refunded_newest_first(app) {
        let test = app.in_test_mode();
        let p = test.create_payment(json!({}));
        let older = test.create_source(json!({"amount": "600", "gateway_data": {"token": "tok_visa"}}));
        test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": older["id"]})).expect(200);
        let newer = test.create_source(json!({"gateway_data": {"token": "tok_refund_fail"}}));
        test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": newer["id"]})).expect(200);
        let attempts = test.get(&format!("/payments/{}/attempts/", p["id"])).body;
        let (first, second) = (attempts[0]["id"].clone(), attempts[1]["id"].clone());
        // 700: the newest charge's 400, then 300 of the older one. The newest's refund fails:
        // never "succeeded" for less than asked, and it says what did go back.
        let mixed = refund(&test, &p, json!(700)).expect(201).body;
        let parts: Vec<(Value, String, String)> = mixed["parts"].as_array().unwrap().iter()
            .map(|part| (part["attempt"].clone(), num(&part["amount"]), part["status"].as_str().unwrap().to_string())).collect();
        assert_eq!(parts, [(second.clone(), "400".to_string(), "failed".to_string()), (first.clone(), "300".to_string(), "succeeded".to_string())]);
        assert_eq!((mixed["status"].as_str(), mixed["failed_reason"].as_str(), num(&mixed["amount_refunded"])),
            (Some("failed"), Some("partially_refunded"), "300".to_string()));
        assert_eq!(mixed["parts"][0]["failed_reason"], "expired_or_canceled_card");
        assert_eq!(num(&payment_of(&test, &p)["amount_refunded"]), "300");
        // What is left: 400 of the newest charge, 300 of the older one.
        assert_eq!(refund(&test, &p, json!(701)).expect(400).body["amount"][0], "Ensure this value is less than or equal to 700, what is left to refund.");
        let rest = refund(&test, &p, json!(300)).expect(201).body;
        assert_eq!(rest["parts"][0]["attempt"], second);
    }

    fn ten_refunds_racing_for_what_was_collected_never_exceed_it(app) {
        let test = app.in_test_mode();
        let p = paid(&test, "tok_visa", 1000);
        let answers: Vec<Resp> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..10).map(|_| {
                let (test, p) = (&test, &p);
                s.spawn(move || refund(test, p, json!(300)))
            }).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won = answers.iter().filter(|r| r.status == 201).count();
        assert_eq!(won, 3, "{:?}", answers.iter().map(|r| (r.status, &r.text)).collect::<Vec<_>>());
        for lost in answers.iter().filter(|r| r.status != 201) {
            assert_eq!(lost.status, 400, "{}", lost.text);
            assert!(lost.body["amount"][0].as_str().unwrap().contains("what is left to refund"), "{}", lost.text);
        }
        assert_eq!(num(&payment_of(&test, &p)["amount_refunded"]), "900");
        assert_eq!(test.get(&format!("/refunds/?payment={}", p["id"])).body["count"], 3);
    }

    fn a_refund_runs_once_for_its_idempotency_key(app) {
        let test = app.in_test_mode();
        let p = paid(&test, "tok_visa", 1000);
        let body = json!({"payment": p["id"], "amount": 100}).to_string();
        let send = |body: &str| test.send("POST", "/refunds/", Some(body), &[("Idempotency-Key", "refund-once")]);
        let first = send(&body).expect(201);
        let again = send(&body).expect(201);
        assert_eq!((again.text.as_str(), again.header("idempotent-replayed")), (first.text.as_str(), Some("true")));
        send(&json!({"payment": p["id"], "amount": 200}).to_string()).expect(409);
        assert_eq!(test.get("/refunds/").body["count"], 1);
        assert_eq!(num(&payment_of(&test, &p)["amount_refunded"]), "100");
        // The payment's own route too.
        let path = format!("/payments/{}/refund/", p["id"]);
        let once = test.send("POST", &path, Some(r#"{"amount": 50}"#), &[("Idempotency-Key", "refund-route")]).expect(201);
        let twice = test.send("POST", &path, Some(r#"{"amount": 50}"#), &[("Idempotency-Key", "refund-route")]).expect(201);
        assert_eq!(once.text, twice.text);
        assert_eq!(test.get("/refunds/").body["count"], 2);
    }

    fn a_transfer_refund_whose_answer_was_not_recorded_can_still_be_ended(app) {
        use diesel::prelude::*;
        let p = app.create_payment(json!({}));
        let source = app.create_source(json!({}));
        app.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"]})).expect(200);
        app.patch(&format!("/payments/{}/", p["id"]), json!({"status": "succeeded"})).expect(200);
        let (first, second) = (refund(&app, &p, json!(300)).expect(201).body, refund(&app, &p, json!(200)).expect(201).body);
        // What a crash between recording the refunds and their answers leaves.
        {
            use cobro::db::schema::refund_parts;
            let mut conn = app.server.db.pool.get().unwrap();
            let ids = [first["id"].as_i64().unwrap(), second["id"].as_i64().unwrap()];
            diesel::update(refund_parts::table.filter(refund_parts::refund_id.eq_any(ids)))
                .set(refund_parts::gateway_reference.eq(None::<String>))
                .execute(&mut **conn)
                .unwrap();
        }
        // The merchant's word still ends them: no provider is involved.
        assert_eq!(app.patch(&format!("/refunds/{}/", first["id"]), json!({"status": "succeeded"})).expect(200).body["status"], "succeeded");
        assert_eq!(app.post(&format!("/refunds/{}/cancel/", second["id"]), json!({})).expect(200).body["status"], "cancelled");
        assert_eq!(num(&payment_of(&app, &p)["amount_refunded"]), "300");
    }

    fn a_transfer_partly_received_takes_back_no_more_than_it_brought(app) {
        let test = app.in_test_mode();
        let p = test.create_payment(json!({}));
        let card = test.create_source(json!({"amount": "300", "gateway_data": {"token": "tok_visa"}}));
        test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": card["id"]})).expect(200);
        let bank = test.post("/sources/", json!({"gateway": "bank_transfer"})).expect(201).body;
        test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": bank["id"]})).expect(200);
        // 200 of the 700 asked by transfer arrived.
        test.patch(&format!("/payments/{}/", p["id"]), json!({"status": "incomplete", "amount_collected": 200})).expect(200);
        let attempts = test.get(&format!("/payments/{}/attempts/", p["id"])).body;
        assert_eq!((attempts[1]["status"].as_str(), num(&attempts[1]["amount"])), (Some("succeeded"), "200".to_string()));
        let back = refund(&test, &p, Value::Null).expect(201).body;
        let by: Vec<(String, String)> = back["parts"].as_array().unwrap().iter()
            .map(|part| (part["gateway"].as_str().unwrap().to_string(), num(&part["amount"]))).collect();
        assert_eq!(by, [("bank_transfer".to_string(), "200".to_string()), ("sandbox".to_string(), "300".to_string())]);
    }
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
    fn every_refund_change_reaches_the_webhooks(app) {
        let Some(test) = delivering(&app.in_test_mode()) else { return };
        let receiver = Receiver::start();
        test.post("/webhooks/", json!({"url": receiver.url, "events": ["refund.*", "payment.refunded"]})).expect(201);
        let p = paid(&test, "tok_refund_async", 1000);
        let waiting = refund(&test, &p, json!(400)).expect(201).body;
        test.post(&format!("/refunds/{}/settle/", waiting["id"]), json!({})).expect(200);
        let called_off = refund(&test, &p, json!(100)).expect(201).body;
        test.post(&format!("/refunds/{}/cancel/", called_off["id"]), json!({})).expect(200);
        let q = paid(&test, "tok_refund_fail", 1000);
        let failed = refund(&test, &q, json!(100)).expect(201).body;
        let hits = receiver.wait_for("7 deliveries", Duration::from_secs(20), |h| h.len() >= 7);
        // In order for each object (a payment and a refund may have the same id: the event
        // names the kind).
        let of_kind = |kind: &str, id: &Value| -> Vec<Value> {
            hits.iter().map(|h| h.json())
                .filter(|b| b["object_id"].as_str() == Some(&id.to_string()) && b["event"].as_str().is_some_and(|e| e.starts_with(kind)))
                .collect()
        };
        let of = |id: &Value| of_kind("refund.", id);
        let types = |bodies: &[Value]| -> Vec<String> { bodies.iter().map(|b| b["event"].as_str().unwrap().to_string()).collect() };
        assert_eq!(types(&of(&waiting["id"])), ["refund.created", "refund.succeeded"]);
        let payment = of_kind("payment.", &p["id"]);
        assert_eq!(types(&payment), ["payment.refunded"]);
        assert_eq!(num(&payment[0]["data"]["amount_refunded"]), "400");
        assert_eq!(of(&waiting["id"])[1]["data"]["status"], "succeeded");
        assert_eq!(types(&of(&called_off["id"])), ["refund.created", "refund.cancelled"]);
        assert_eq!(types(&of(&failed["id"])), ["refund.created", "refund.failed"]);
    }
}
