//! The public checkout page: what it shows, paying through it, and what it refuses.

use crate::both;
use crate::helpers::*;

fn page(payment: &Value) -> Resp {
    send("GET", payment["checkout_url"].as_str().unwrap(), &[], None)
}

fn pay(app: &App, payment: &Value, method: &str) -> Resp {
    let form = format!("method={}", method.replace(':', "%3A"));
    send(
        "POST",
        &app.url(&format!("/pay/{}/", key_of(payment))),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(&form),
    )
}

both! {
    fn the_page_shows_the_payment_to_anyone_with_the_link(app) {
        let test = app.in_test_mode();
        let p = test.create_payment(json!({"amount": "1234.50", "currency": "USD", "description": "Order <b>42</b>"}));
        let resp = page(&p).expect(200);
        assert_eq!(resp.header("content-type"), Some("text/html; charset=utf-8"));
        let html = &resp.text;
        assert!(html.contains("Test workspace"), "the merchant's workspace name");
        assert!(html.contains("Order &lt;b&gt;42&lt;/b&gt;"), "the description, escaped");
        assert!(html.contains("USD 1,234.50"));
        assert!(html.contains("<label for=") && html.contains("name=\"method\""), "labelled choices");
        assert!(html.contains("value=\"sandbox:tok_visa\"") && html.contains("value=\"bank_transfer\""));
        assert!(html.contains("name=\"viewport\"") && !html.contains("<script"));
        // Live mode offers no test cards.
        let live = app.create_payment(json!({}));
        let live_page = page(&live).expect(200).text;
        assert!(!live_page.contains("sandbox") && live_page.contains("bank_transfer"));
    }

    fn paying_redirects_to_the_merchant(app) {
        let test = app.in_test_mode();
        let p = test.create_payment(json!({"return_url": "https://shop.example/done?order=42"}));
        let resp = pay(&test, &p, "sandbox:tok_visa").expect(303);
        assert_eq!(resp.header("location"), Some(&*format!("https://shop.example/done?order=42&payment={}&status=succeeded", p["id"])));
        assert_eq!(test.get(&format!("/payments/{}/", p["id"])).body["status"], "succeeded");
        // Paid: a receipt, never a form again.
        let receipt = page(&p).expect(200).text;
        assert!(receipt.contains("Paid") && !receipt.contains("<form"));
        pay(&test, &p, "sandbox:tok_visa").expect(409);
        assert_eq!(test.get(&format!("/payments/{}/attempts/", p["id"])).body.as_array().unwrap().len(), 1);
        // The receipt shows what went back.
        assert!(!receipt.contains("Refunded"));
        test.post("/refunds/", json!({"payment": p["id"], "amount": 300})).expect(201);
        let receipt = page(&p).expect(200).text;
        assert!(receipt.contains("<dt>Refunded to you</dt><dd>CLP 300</dd>"), "{receipt}");
        test.post(&format!("/payments/{}/refund/", p["id"]), json!({})).expect(201);
        assert!(page(&p).expect(200).text.contains("<dd>CLP 1,000 (in full)</dd>"));
        // Without a return_url the payer lands on the receipt.
        let q = test.create_payment(json!({}));
        let resp = pay(&test, &q, "sandbox:tok_visa").expect(303);
        assert_eq!(resp.header("location"), q["checkout_url"].as_str());
    }

    fn a_decline_shows_on_the_page_and_the_payment_stays_payable(app) {
        let test = app.in_test_mode();
        let p = test.create_payment(json!({"return_url": "https://shop.example/done"}));
        let resp = pay(&test, &p, "sandbox:tok_chargeDeclined").expect(200);
        assert!(resp.text.contains("declined (card_declined)") && resp.text.contains("role=\"alert\""));
        assert!(resp.text.contains("<form"), "still payable");
        assert_eq!(test.get(&format!("/payments/{}/", p["id"])).body["status"], "failed");
        pay(&test, &p, "sandbox:tok_visa").expect(303);
        assert_eq!(test.get(&format!("/payments/{}/", p["id"])).body["status"], "succeeded");
    }

    fn bank_transfers_show_their_instructions(app) {
        let p = app.create_payment(json!({"amount": 5000}));
        pay(&app, &p, "bank_transfer").expect(303);
        let html = page(&p).expect(200).text;
        assert!(html.contains("being processed") && html.contains("Transfer 5000 CLP quoting the reference bt_"));
        assert!(!html.contains("<form"));
        // The sandbox is not offered, nor accepted, in live mode.
        let q = app.create_payment(json!({}));
        assert!(pay(&app, &q, "sandbox:tok_visa").expect(400).text.contains("not available"));
        assert!(pay(&app, &q, "cash").expect(400).text.contains("Choose a way to pay."));
        assert_eq!(app.get(&format!("/payments/{}/", q["id"])).body["status"], "requires_payment_method");
    }

    fn closed_checkouts_and_wrong_keys(app) {
        let test = app.in_test_mode();
        let hidden = test.create_payment(json!({"enable_checkout": false}));
        let visible = test.create_payment(json!({}));
        let key = key_of(&visible);
        test.patch(&format!("/payments/{}/", visible["id"]), json!({"enable_checkout": false})).expect(200);
        for path in [format!("/pay/{key}/"), format!("/pay/{}/", visible["id"]), format!("/pay/{}/", hidden["id"]), "/pay/AAAAAAAAAAAAAAAAAAAA/".to_string()] {
            let resp = send("GET", &test.url(&path), &[], None).expect(404);
            assert!(resp.text.contains("Payment not found"));
            let post = send("POST", &test.url(&path), &[("Content-Type", "application/x-www-form-urlencoded")], Some("method=sandbox%3Atok_visa")).expect(404);
            assert!(post.text.contains("Payment not found"));
        }
        assert_eq!(test.get(&format!("/payments/{}/", visible["id"])).body["status"], "requires_payment_method");
        let cancelled = test.create_payment(json!({}));
        test.post(&format!("/payments/{}/cancel/", cancelled["id"]), json!({})).expect(200);
        let html = page(&cancelled).expect(200).text;
        assert!(html.contains("cancelled") && !html.contains("<form"));
        pay(&test, &cancelled, "sandbox:tok_visa").expect(409);
    }

    fn payers_call_the_api_with_the_checkout_key(app) {
        let test = app.in_test_mode();
        let p = test.create_payment(json!({"amount": 700}));
        let key = key_of(&p);
        let json_type = [("Content-Type", "application/json")];
        // A source for this payment, from the payer's browser: no token, the key instead.
        let body = json!({"gateway": "sandbox", "gateway_data": {"token": "tok_visa"}, "checkout": key}).to_string();
        let source = send("POST", &test.url("/sources/"), &json_type, Some(&body)).expect(201).body;
        assert_eq!(source["test_mode"], true);
        test.get(&format!("/sources/{}/", source["id"])).expect(200);
        // The id alone is never enough; the key must be this payment's.
        let authorize = format!("/payments/{}/authorize/", p["id"]);
        let no_key = json!({"source": source["id"]}).to_string();
        send("POST", &test.url(&authorize), &json_type, Some(&no_key)).expect(401);
        let other = test.create_payment(json!({}));
        let wrong_key = json!({"source": source["id"], "checkout": key_of(&other)}).to_string();
        send("POST", &test.url(&authorize), &json_type, Some(&wrong_key)).expect(404);
        let with_key = json!({"source": source["id"], "checkout": key}).to_string();
        let paid = send("POST", &test.url(&authorize), &json_type, Some(&with_key)).expect(200).body;
        assert_eq!(paid["status"], "succeeded");
        // Closed checkouts and unknown keys open nothing.
        let closed = test.create_payment(json!({"enable_checkout": false}));
        let hidden_key = json!({"gateway": "bank_transfer", "checkout": key_of(&other)}).to_string();
        test.patch(&format!("/payments/{}/", other["id"]), json!({"enable_checkout": false})).expect(200);
        send("POST", &test.url("/sources/"), &json_type, Some(&hidden_key)).expect(404);
        let unknown = json!({"gateway": "bank_transfer", "checkout": "AAAAAAAAAAAAAAAAAAAA"}).to_string();
        send("POST", &test.url("/sources/"), &json_type, Some(&unknown)).expect(404);
        send("POST", &test.url(&format!("/payments/{}/authorize/", closed["id"])), &json_type, Some(&unknown)).expect(404);
        let nothing = json!({"gateway": "bank_transfer"}).to_string();
        send("POST", &test.url("/sources/"), &json_type, Some(&nothing)).expect(401);
        // A token still wins over a key, and is checked first.
        let bad_token = [("Content-Type", "application/json"), ("Authorization", "Token 0000000000000000000000000000000000000000")];
        send("POST", &test.url("/sources/"), &bad_token, Some(&body)).expect(401);
        assert_eq!(test.get("/sources/").body["count"], 1);
    }

    fn redirect_charges_wait_for_the_payer(app) {
        let test = app.in_test_mode();
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        for (decision, status, source_status) in [("approve", "succeeded", "consumed"), ("decline", "failed", "failed")] {
            let p = test.create_payment(json!({"return_url": "https://shop.example/back"}));
            let s = test.create_source(json!({"gateway_data": {"token": "tok_redirect"}}));
            assert_eq!(s["card"]["last4"], "3184");
            let pending = test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": s["id"]})).expect(200).body;
            assert_eq!(pending["status"], "processing");
            let attempts = test.get(&format!("/payments/{}/attempts/", p["id"])).body;
            assert_eq!(attempts[0]["status"], "requires_action");
            let source = test.get(&format!("/sources/{}/", s["id"])).body;
            assert_eq!(source["status"], "waiting_authorization");
            let redirect = source["gateway_data"]["redirect_url"].as_str().unwrap().to_string();
            assert!(redirect.ends_with(&format!("/payments/{}/pay/?checkout={}", p["id"], key_of(&p))));
            // The sandbox's authorization page, on cobro itself.
            let page = send("GET", &redirect, &[], None).expect(200);
            assert!(page.text.contains("Authorize this payment") && page.text.contains("value=\"decline\""));
            // The checkout page points there too.
            assert!(page_of(&p).contains("Continue to authorize it"));
            let answered = send("POST", &redirect, &form, Some(&format!("decision={decision}"))).expect(303);
            assert_eq!(answered.header("location"), Some(&*format!("https://shop.example/back?payment={}&status={status}", p["id"])));
            let after = test.get(&format!("/payments/{}/", p["id"])).body;
            assert_eq!(after["status"], status);
            assert_eq!(test.get(&format!("/sources/{}/", s["id"])).body["status"], source_status);
            // Single use: a second answer changes nothing, and the page has nothing left to ask.
            send("POST", &redirect, &form, Some("decision=approve")).expect(303);
            assert_eq!(test.get(&format!("/payments/{}/", p["id"])).body["status"], status);
            send("GET", &redirect, &[], None).expect(303);
        }
        let declined = test.get("/payments/?status=failed").body;
        assert_eq!(declined["results"][0]["failed_reason"], "authentication_failed");
        // The id with another payment's key, or no key, leads nowhere.
        let p = test.create_payment(json!({}));
        let other = test.create_payment(json!({}));
        send("GET", &test.url(&format!("/payments/{}/pay/?checkout={}", p["id"], key_of(&other))), &[], None).expect(404);
        send("GET", &test.url(&format!("/payments/{}/pay/", p["id"])), &[], None).expect(404);
        // Paying by the checkout form with the redirect card goes straight to the authorization.
        let paid = pay(&test, &p, "sandbox:tok_redirect").expect(303);
        assert_eq!(paid.header("location"), Some(&*test.url(&format!("/payments/{}/pay/?checkout={}", p["id"], key_of(&p)))));
    }
}

fn page_of(payment: &Value) -> String {
    page(payment).expect(200).text
}
