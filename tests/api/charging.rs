//! Paying payments with sources: each sandbox outcome, partial payments with several
//! sources, bank transfers confirmed by the merchant, refusals, and concurrent charges.

use crate::both;
use crate::helpers::*;

fn authorize(app: &App, payment: &Value, source: i64) -> Resp {
    app.post(
        &format!("/payments/{}/authorize/", payment["id"]),
        json!({"source": source}),
    )
}

fn token(app: &App, token: &str, fields: Value) -> i64 {
    let mut body = json!({"gateway_data": {"token": token}});
    for (k, v) in fields.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.create_source(body)["id"].as_i64().unwrap()
}

fn attempts(app: &App, payment: &Value) -> Vec<Value> {
    app.get(&format!("/payments/{}/attempts/", payment["id"]))
        .expect(200)
        .body
        .as_array()
        .unwrap()
        .clone()
}

both! {
    fn a_successful_charge_pays_the_balance(app) {
        let test = app.in_test_mode();
        let p = test.create_payment(json!({"amount": "25.00", "currency": "USD"}));
        let s = token(&test, "tok_visa", json!({}));
        let paid = authorize(&test, &p, s).expect(200).body;
        assert_eq!((paid["status"].as_str(), num(&paid["balance"])), (Some("succeeded"), "0.00".to_string()));
        assert!(paid["payment_date"].is_string());
        assert_eq!((paid["source"].as_i64(), paid["sources"].clone()), (Some(s), json!([s])));
        assert_eq!(test.get(&format!("/sources/{s}/")).body["status"], "consumed");
        let tried = attempts(&test, &p);
        assert_eq!(tried.len(), 1);
        assert_eq!((tried[0]["status"].as_str(), tried[0]["source"].as_i64(), num(&tried[0]["amount"])), (Some("succeeded"), Some(s), "25.00".to_string()));
        assert!(tried[0]["gateway_reference"].as_str().unwrap().starts_with("sbx_"));
        assert_eq!(test.event_types(&p["id"]), ["payment.created", "payment.succeeded"]);
        assert_eq!(test.events_of("source", &json!(s)), ["source.created", "source.consumed"]);
        // Nothing more to charge.
        let again = authorize(&test, &p, token(&test, "tok_visa", json!({}))).expect(400);
        assert_eq!(again.body["non_field_errors"], json!(["The payment is \"succeeded\": there is nothing to charge."]));
    }

    fn declines_leave_the_payment_payable(app) {
        let test = app.in_test_mode();
        let p = test.create_payment(json!({}));
        for (tok, code) in [("tok_chargeDeclined", "card_declined"), ("tok_chargeDeclinedInsufficientFunds", "insufficient_funds")] {
            let s = token(&test, tok, json!({}));
            let failed = authorize(&test, &p, s).expect(200).body;
            assert_eq!((failed["status"].as_str(), failed["failed_reason"].as_str()), (Some("failed"), Some(code)));
            assert_eq!(num(&failed["balance"]), "1000");
            assert_eq!(test.get(&format!("/sources/{s}/")).body["status"], "failed");
            // A failed source cannot pay again.
            authorize(&test, &p, s).expect(400);
        }
        let paid = authorize(&test, &p, token(&test, "tok_visa", json!({}))).expect(200).body;
        assert_eq!((paid["status"].as_str(), paid["failed_reason"].clone()), (Some("succeeded"), Value::Null));
        let codes: Vec<Value> = attempts(&test, &p).iter().map(|a| a["failure_code"].clone()).collect();
        assert_eq!(codes, [json!("card_declined"), json!("insufficient_funds"), Value::Null]);
    }

    fn several_sources_pay_one_payment(app) {
        let test = app.in_test_mode();
        // Two sources.
        let p = test.create_payment(json!({"amount": 1000}));
        let a = token(&test, "tok_visa", json!({"amount": 300}));
        let b = token(&test, "tok_visa", json!({}));
        let part = authorize(&test, &p, a).expect(200).body;
        assert_eq!((part["status"].as_str(), num(&part["balance"])), (Some("incomplete"), "700".to_string()));
        assert_eq!(part["payment_date"], Value::Null);
        let done = authorize(&test, &p, b).expect(200).body;
        assert_eq!((done["status"].as_str(), num(&done["balance"])), (Some("succeeded"), "0".to_string()));
        assert_eq!((done["source"].as_i64(), done["sources"].clone()), (Some(a), json!([a, b])));
        // Three sources, with a decline between them that keeps the money visible.
        let q = test.create_payment(json!({"amount": "10.00", "currency": "EUR"}));
        let s1 = token(&test, "tok_visa", json!({"amount": "2.50"}));
        let s2 = token(&test, "tok_chargeDeclined", json!({"amount": "3"}));
        let s3 = token(&test, "tok_visa", json!({"amount": "3.50"}));
        let s4 = token(&test, "tok_visa", json!({}));
        assert_eq!(num(&authorize(&test, &q, s1).expect(200).body["balance"]), "7.50");
        let declined = authorize(&test, &q, s2).expect(200).body;
        assert_eq!((declined["status"].as_str(), declined["failed_reason"].as_str()), (Some("incomplete"), Some("card_declined")));
        assert_eq!(num(&declined["balance"]), "7.50");
        assert_eq!(num(&authorize(&test, &q, s3).expect(200).body["balance"]), "4.00");
        let done = authorize(&test, &q, s4).expect(200).body;
        assert_eq!((done["status"].as_str(), num(&done["balance"])), (Some("succeeded"), "0.00".to_string()));
        assert_eq!(done["sources"], json!([s1, s2, s3, s4]));
        assert_eq!(test.event_types(&q["id"]),
            ["payment.created", "payment.incomplete", "payment.incomplete", "payment.incomplete", "payment.succeeded"]);
    }

    fn source_amounts_must_fit_the_payment(app) {
        let test = app.in_test_mode();
        let p = test.create_payment(json!({"amount": 1000}));
        let too_much = token(&test, "tok_visa", json!({"amount": 1001}));
        assert_eq!(authorize(&test, &p, too_much).expect(400).body["source"],
            json!(["The source's amount (1001) is more than the payment's balance (1000)."]));
        let fraction = token(&test, "tok_visa", json!({"amount": "1.5"}));
        assert_eq!(authorize(&test, &p, fraction).expect(400).body["source"],
            json!(["The source's amount: Ensure that there are no more than 0 decimal places."]));
        assert!(attempts(&test, &p).is_empty());
        assert_eq!(test.get(&format!("/sources/{too_much}/")).body["status"], "chargeable");
    }

    fn asynchronous_charges_settle(app) {
        let test = app.in_test_mode();
        for (tok, status, reason) in [("tok_async_success", "succeeded", Value::Null), ("tok_async_fail", "failed", json!("card_declined"))] {
            let p = test.create_payment(json!({}));
            let pending = authorize(&test, &p, token(&test, tok, json!({}))).expect(200).body;
            assert_eq!(pending["status"], "processing");
            assert_eq!(attempts(&test, &p)[0]["status"], "processing");
            let busy = authorize(&test, &p, token(&test, "tok_visa", json!({}))).expect(400);
            assert_eq!(busy.body["non_field_errors"], json!(["A charge of this payment is in flight: wait for it to settle."]));
            let settled = test.post(&format!("/payments/{}/settle/", p["id"]), json!({})).expect(200).body;
            assert_eq!((settled["status"].as_str(), settled["failed_reason"].clone()), (Some(status), reason));
            assert_eq!(attempts(&test, &p)[0]["status"], status);
            test.post(&format!("/payments/{}/settle/", p["id"]), json!({})).expect(400);
        }
        let live = app.create_payment(json!({}));
        app.post(&format!("/payments/{}/settle/", live["id"]), json!({})).expect(400);
    }

    fn bank_transfers_wait_for_the_merchant(app) {
        for (outcome, attempt_status) in [("succeeded", "succeeded"), ("failed", "failed")] {
            let p = app.create_payment(json!({"amount": "99.90", "currency": "USD"}));
            let s = app.source_id();
            let pending = authorize(&app, &p, s).expect(200).body;
            assert_eq!(pending["status"], "processing");
            let instructions = &app.get(&format!("/sources/{s}/")).body["gateway_data"]["instructions"];
            assert_eq!(num(&instructions["amount"]), "99.90");
            assert!(instructions["reference"].as_str().unwrap().starts_with("bt_"));
            // The sandbox settles by itself; a transfer waits for the merchant.
            app.post(&format!("/payments/{}/settle/", p["id"]), json!({})).expect(400);
            let mut body = json!({"status": outcome});
            if outcome == "failed" {
                body["failed_reason"] = json!("transfer_not_received");
            }
            let ended = app.patch(&format!("/payments/{}/", p["id"]), body).expect(200).body;
            assert_eq!(ended["status"], outcome);
            let tried = attempts(&app, &p);
            assert_eq!(tried[0]["status"], attempt_status);
        }
    }

    fn refused_authorizations(app) {
        let test = app.in_test_mode();
        let p = test.create_payment(json!({}));
        let s = token(&test, "tok_visa", json!({}));
        let path = format!("/payments/{}/authorize/", p["id"]);
        assert_eq!(test.post(&path, json!({})).expect(400).body, json!({"source": ["This field is required."]}));
        assert_eq!(test.post(&path, json!({"source": "x"})).expect(400).body["source"],
            json!(["Incorrect type. Expected pk value, received str."]));
        assert_eq!(test.post(&path, json!({"source": 999999999})).expect(400).body["source"],
            json!(["Invalid pk \"999999999\" - object does not exist."]));
        // Sources of another mode or workspace do not exist here.
        let live_source = app.source_id();
        test.post(&path, json!({"source": live_source})).expect(400);
        let other = app.stranger().in_test_mode();
        let foreign = other.source_id();
        test.post(&path, json!({"source": foreign})).expect(400);
        other.post(&path, json!({"source": foreign})).expect(404);
        test.post("/payments/999999999/authorize/", json!({"source": s})).expect(404);
        test.post(&format!("/payments/{}/cancel/", p["id"]), json!({})).expect(200);
        assert_eq!(test.post(&path, json!({"source": s})).expect(400).body["non_field_errors"],
            json!(["The payment is \"cancelled\": there is nothing to charge."]));
        assert!(attempts(&test, &p).is_empty());
        assert_eq!(test.get(&format!("/sources/{s}/")).body["status"], "chargeable");
    }

    fn reusable_sources_pay_again(app) {
        let test = app.in_test_mode();
        let s = token(&test, "tok_visa", json!({"usage": "reusable"}));
        for _ in 0..2 {
            let p = test.create_payment(json!({}));
            assert_eq!(authorize(&test, &p, s).expect(200).body["status"], "succeeded");
        }
        assert_eq!(test.get(&format!("/sources/{s}/")).body["status"], "chargeable");
    }

    fn concurrent_charges_never_collect_more_than_the_amount(app) {
        let test = app.in_test_mode();
        for source_amount in [Some(300), None] {
            let p = test.create_payment(json!({"amount": 1000}));
            let sources: Vec<i64> = (0..12)
                .map(|_| match source_amount {
                    Some(amount) => token(&test, "tok_visa", json!({"amount": amount})),
                    None => token(&test, "tok_visa", json!({})),
                })
                .collect();
            let handles: Vec<_> = sources
                .into_iter()
                .map(|s| {
                    let (test, p) = (test.clone(), p.clone());
                    std::thread::spawn(move || authorize(&test, &p, s))
                })
                .collect();
            let results: Vec<Resp> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            assert!(results.iter().all(|r| r.status == 200 || r.status == 400), "{:?}", results.iter().map(|r| &r.text).collect::<Vec<_>>());
            let wins = results.iter().filter(|r| r.status == 200).count();
            let final_state = test.get(&format!("/payments/{}/", p["id"])).body;
            let tried = attempts(&test, &p);
            assert_eq!(tried.len(), wins, "one attempt per accepted charge");
            let collected: i64 = tried.iter().map(|a| num(&a["amount"]).parse::<i64>().unwrap()).sum();
            assert!(collected <= 1000, "collected {collected} of 1000");
            assert_eq!(num(&final_state["balance"]).parse::<i64>().unwrap(), 1000 - collected);
            // One charge is in flight at a time: the others are refused, never queued.
            for refused in results.iter().filter(|r| r.status == 400) {
                let said = refused.text.as_str();
                assert!(said.contains("in flight") || said.contains("nothing to charge") || said.contains("more than the payment's balance"), "{said}");
            }
            match source_amount {
                Some(_) => {
                    assert!((1..=3).contains(&wins), "{wins} charges of 300 in 1000");
                    // Charged one after the other, exactly three of 300 fit.
                    while authorize(&test, &p, token(&test, "tok_visa", json!({"amount": 300}))).status == 200 {}
                    let filled = test.get(&format!("/payments/{}/", p["id"])).body;
                    assert_eq!((num(&filled["balance"]), filled["status"].as_str()), ("100".to_string(), Some("incomplete")));
                    assert_eq!(attempts(&test, &p).len(), 3);
                }
                None => assert_eq!((wins, final_state["status"].as_str()), (1, Some("succeeded"))),
            }
        }
    }

    fn asynchronous_charges_settle_by_themselves(app) {
        let test = app.in_test_mode();
        let ok = test.create_payment(json!({}));
        let bad = test.create_payment(json!({}));
        authorize(&test, &ok, token(&test, "tok_async_success", json!({}))).expect(200);
        authorize(&test, &bad, token(&test, "tok_async_fail", json!({}))).expect(200);
        // COBRO_SANDBOX_SETTLE_SECONDS is 3 by default; the server looks every second.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let status = |p: &Value| test.get(&format!("/payments/{}/", p["id"])).body["status"].as_str().unwrap().to_string();
        while (status(&ok), status(&bad)) != ("succeeded".to_string(), "failed".to_string()) {
            assert!(std::time::Instant::now() < deadline, "not settled: {} and {}", status(&ok), status(&bad));
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        assert_eq!(attempts(&test, &ok)[0]["status"], "succeeded");
        assert_eq!(attempts(&test, &bad)[0]["failure_code"], "card_declined");
        assert_eq!(test.event_types(&bad["id"]), ["payment.created", "payment.processing", "payment.failed"]);
    }
}

both! {
    fn a_slow_gateway_holds_up_no_other_request(app) {
        use std::time::{Duration, Instant};
        let test = app.in_test_mode();
        let p = test.create_payment(json!({"amount": 500}));
        let slow = token(&test, "tok_slow", json!({}));
        let path = format!("/payments/{}/authorize/", p["id"]);
        let key = [("Idempotency-Key", "slow-charge-1")];
        let body = json!({"source": slow}).to_string();
        let charging = {
            let (test, path, body) = (test.clone(), path.clone(), body.clone());
            std::thread::spawn(move || test.send("POST", &path, Some(&body), &[("Idempotency-Key", "slow-charge-1")]))
        };
        std::thread::sleep(Duration::from_millis(500));
        // While the gateway takes its time, writes and reads of the server go on as usual.
        for _ in 0..5 {
            let asked = Instant::now();
            let other = test.create_payment(json!({}));
            test.get(&format!("/payments/{}/", other["id"])).expect(200);
            assert!(asked.elapsed() < Duration::from_millis(1000), "a create and a read took {:?}", asked.elapsed());
        }
        // The payment shows its charge in flight, and nothing else can move it meanwhile.
        assert_eq!(test.get(&format!("/payments/{}/", p["id"])).body["status"], "processing");
        assert_eq!(test.get(&format!("/sources/{slow}/")).body["status"], "pending");
        let busy = authorize(&test, &p, token(&test, "tok_visa", json!({}))).expect(400);
        assert!(busy.text.contains("in flight"), "{}", busy.text);
        test.post(&format!("/payments/{}/cancel/", p["id"]), json!({})).expect(400);
        let by_hand = test.patch(&format!("/payments/{}/", p["id"]), json!({"status": "succeeded"})).expect(400);
        assert_eq!(by_hand.body, json!({"status": ["A charge of this payment is in flight at the sandbox gateway: its answer decides how it ends."]}));
        // The same request again is still running: a 409, never a second charge.
        test.send("POST", &path, Some(&body), &key).expect(409);

        let answered = charging.join().unwrap().expect(200);
        assert_eq!(answered.body["status"], "succeeded");
        let replay = test.send("POST", &path, Some(&body), &key).expect(200);
        assert_eq!((replay.header("idempotent-replayed"), replay.text.as_str()), (Some("true"), answered.text.as_str()));
        let tried = attempts(&test, &p);
        assert_eq!((tried.len(), tried[0]["status"].as_str()), (1, Some("succeeded")));
        assert!(tried[0]["gateway_reference"].as_str().unwrap().starts_with("sbx_"));
        assert_eq!(test.get(&format!("/sources/{slow}/")).body["status"], "consumed");
        assert_eq!(test.event_types(&p["id"]), ["payment.created", "payment.succeeded"]);
    }

    fn a_lost_answer_stays_in_flight_until_the_gateway_is_asked_again(app) {
        let test = app.in_test_mode();
        let p = test.create_payment(json!({"amount": 700}));
        let lost = token(&test, "tok_answer_lost", json!({}));
        let waiting = authorize(&test, &p, lost).expect(200).body;
        // No answer is no answer: neither paid nor failed.
        assert_eq!((waiting["status"].as_str(), &waiting["failed_reason"]), (Some("processing"), &Value::Null));
        let tried = attempts(&test, &p);
        assert_eq!((tried[0]["status"].as_str(), &tried[0]["gateway_reference"]), (Some("processing"), &Value::Null));
        assert_eq!(test.get(&format!("/sources/{lost}/")).body["status"], "pending");
        assert_eq!(test.event_types(&p["id"]), ["payment.created", "payment.processing"]);
        // Asked again (the server does so by itself after COBRO_SANDBOX_SETTLE_SECONDS), the
        // sandbox says the money moved.
        let settled = test.post(&format!("/payments/{}/settle/", p["id"]), json!({})).expect(200).body;
        assert_eq!((settled["status"].as_str(), num(&settled["balance"])), (Some("succeeded"), "0".to_string()));
        assert_eq!(attempts(&test, &p)[0]["status"], "succeeded");
        assert_eq!(test.get(&format!("/sources/{lost}/")).body["status"], "consumed");
        assert_eq!(test.events_of("source", &json!(lost)), ["source.created", "source.consumed"]);
        assert_eq!(test.event_types(&p["id"]), ["payment.created", "payment.processing", "payment.succeeded"]);
    }
}
