//! What a checkout key opens, tried as an attacker would: a key is a bearer credential for its
//! own payment, and it spends only what its own payer brought. See `accounts::payer`.

use crate::both;
use crate::helpers::*;

const JSON: [(&str, &str); 1] = [("Content-Type", "application/json")];

/// A call with nothing but a checkout key in the body, as a payer's browser makes it.
fn by_key(app: &App, path: &str, key: &str, fields: Value) -> Resp {
    let mut body = fields;
    body["checkout"] = json!(key);
    send("POST", &app.url(path), &JSON, Some(&body.to_string()))
}

/// A payer's own source, made with `payment`'s key.
fn payer_source(app: &App, payment: &Value) -> Value {
    let card = json!({"gateway": "sandbox", "gateway_data": {"token": "tok_visa"}});
    by_key(app, "/sources/", &key_of(payment), card)
        .expect(201)
        .body
}

fn authorize_by_key(app: &App, payment: &Value, key: &str, source: &Value) -> Resp {
    let path = format!("/payments/{}/authorize/", payment["id"]);
    by_key(app, &path, key, json!({"source": source}))
}

/// What a payment and its attempts look like to the merchant: for checking nothing changed.
fn state(app: &App, payment: &Value) -> (Value, Value) {
    let id = &payment["id"];
    (
        app.get(&format!("/payments/{id}/")).expect(200).body,
        app.get(&format!("/payments/{id}/attempts/"))
            .expect(200)
            .body,
    )
}

/// The answer for a source that does not exist, with `id` in it.
fn missing_source(id: &Value) -> Value {
    json!({"source": [format!("Invalid pk \"{id}\" - object does not exist.")]})
}

both! {
    fn a_key_cannot_charge_a_source_another_payer_made(app) {
        let test = app.in_test_mode();
        let mine = test.create_payment(json!({}));
        let theirs = test.create_payment(json!({}));
        let their_source = payer_source(&test, &theirs);
        let before = (state(&test, &mine), test.get(&format!("/sources/{}/", their_source["id"])).body);
        let stolen = authorize_by_key(&test, &mine, &key_of(&mine), &their_source["id"]).expect(400);
        // Exactly the answer for an id that does not exist: it reveals nothing.
        assert_eq!(stolen.body, missing_source(&their_source["id"]));
        let nonexistent = authorize_by_key(&test, &mine, &key_of(&mine), &json!(999_999_999)).expect(400);
        assert_eq!(nonexistent.body, missing_source(&json!(999_999_999)));
        assert_eq!((state(&test, &mine), test.get(&format!("/sources/{}/", their_source["id"])).body), before);
        assert_eq!(test.event_types(&mine["id"]), ["payment.created"]);
        // Its own payer still pays with it.
        let paid = authorize_by_key(&test, &theirs, &key_of(&theirs), &their_source["id"]).expect(200).body;
        assert_eq!(paid["status"], "succeeded");
    }

    fn a_key_cannot_charge_the_merchants_saved_cards(app) {
        let test = app.in_test_mode();
        let customer = test.customer_id("Ana");
        let saved = test.create_source(json!({"usage": "reusable", "customer": customer}));
        let unowned = test.create_source(json!({"usage": "reusable"}));
        let single = test.create_source(json!({}));
        // Even a payment of that very customer: its key did not bring the card.
        let p = test.create_payment(json!({"customer": customer}));
        let before = state(&test, &p);
        for source in [&saved, &unowned, &single] {
            let answer = authorize_by_key(&test, &p, &key_of(&p), &source["id"]).expect(400);
            assert_eq!(answer.body, missing_source(&source["id"]));
        }
        assert_eq!(state(&test, &p), before);
        // The merchant, with credentials, may charge the customer's saved card.
        let paid = test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": saved["id"]})).expect(200).body;
        assert_eq!(paid["status"], "succeeded");
        assert_eq!(test.get(&format!("/sources/{}/", saved["id"])).body["status"], "chargeable");
    }

    fn a_saved_card_pays_only_its_own_customers_payments(app) {
        let test = app.in_test_mode();
        let (ana, bea) = (test.customer_id("Ana"), test.customer_id("Bea"));
        let anas_card = test.create_source(json!({"usage": "reusable", "customer": ana}));
        for other in [test.create_payment(json!({"customer": bea})), test.create_payment(json!({}))] {
            let refused = test.post(&format!("/payments/{}/authorize/", other["id"]), json!({"source": anas_card["id"]})).expect(400);
            let message = refused.body["source"][0].as_str().unwrap().to_string();
            assert!(message.contains(&format!("belongs to customer {ana}")), "{message}");
            assert_eq!(state(&test, &other).1, json!([]), "nothing was charged");
        }
        let anas = test.create_payment(json!({"customer": ana}));
        test.post(&format!("/payments/{}/authorize/", anas["id"]), json!({"source": anas_card["id"]})).expect(200);
        // The same through a secret key, and through the Billingrails door.
        let key = test.secret_key(true);
        let bearer = format!("Bearer {key}");
        let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
        let beas = test.create_payment(json!({"customer": bea}));
        let body = json!({"source": anas_card["id"]}).to_string();
        let refused = send("POST", &test.url(&format!("/payments/{}/authorize/", beas["id"])), &headers, Some(&body)).expect(400);
        assert!(refused.body["source"].is_array());
    }

    fn a_source_made_at_one_checkout_pays_only_that_payment(app) {
        let test = app.in_test_mode();
        let a = test.create_payment(json!({}));
        let b = test.create_payment(json!({}));
        let source = payer_source(&test, &a);
        assert_eq!(source["checkout_payment"], a["id"]);
        // Not even the merchant spends it on another payment.
        let refused = test.post(&format!("/payments/{}/authorize/", b["id"]), json!({"source": source["id"]})).expect(400);
        assert!(refused.text.contains("another payment's checkout"), "{}", refused.text);
        assert_eq!(state(&test, &b).1, json!([]));
        // A payment deleted leaves its payer's source bound to it: it pays nothing ever after.
        let c = test.create_payment(json!({}));
        let orphan = payer_source(&test, &c);
        test.delete(&format!("/payments/{}/", c["id"])).expect(204);
        test.post(&format!("/payments/{}/authorize/", b["id"]), json!({"source": orphan["id"]})).expect(400);
    }

    fn a_payer_makes_only_single_use_sources_of_nobody(app) {
        let test = app.in_test_mode();
        let customer = test.customer_id("Ana");
        let p = test.create_payment(json!({"customer": customer}));
        let key = key_of(&p);
        let card = json!({"gateway": "sandbox", "gateway_data": {"token": "tok_visa"}});
        let mut attach = card.clone();
        attach["customer"] = json!(customer);
        let refused = by_key(&test, "/sources/", &key, attach).expect(400);
        assert_eq!(refused.body, json!({"customer": ["A source made at a checkout cannot be attached to a customer."]}));
        let mut keep = card.clone();
        keep["usage"] = json!("reusable");
        let refused = by_key(&test, "/sources/", &key, keep).expect(400);
        assert_eq!(refused.body, json!({"usage": ["A source made at a checkout is single use."]}));
        assert_eq!(test.get("/sources/").body["count"], 0, "a refused source is not made");
        let mut split = card.clone();
        split["amount"] = json!(1);
        let refused = by_key(&test, "/sources/", &key, split).expect(400);
        assert_eq!(refused.body, json!({"amount": ["A source made at a checkout pays the balance: the merchant sets the amount."]}));
        assert_eq!(test.get("/sources/").body["count"], 0, "a refused source is not made");
        let made = by_key(&test, "/sources/", &key, card).expect(201).body;
        assert_eq!((made["usage"].as_str(), &made["customer"], &made["checkout_payment"]), (Some("single"), &Value::Null, &p["id"]));
        // The merchant's source of its customer is another thing altogether.
        let merchants = test.create_source(json!({"customer": customer}));
        assert_eq!(merchants["checkout_payment"], Value::Null);
    }

    fn a_payer_sees_its_payment_without_the_merchants_references(app) {
        let test = app.in_test_mode();
        let customer = test.customer_id("Ana");
        let invoice = test.open_invoice(&customer, "CLP", "1000");
        let p = test.create_payment(json!({"customer": customer, "invoice": invoice, "subscription": "sub_9",
            "metadata": {"margin": "secret"}, "return_url": "https://shop.example/back"}));
        let source = payer_source(&test, &p);
        let paid = authorize_by_key(&test, &p, &key_of(&p), &source["id"]).expect(200).body;
        let keys: Vec<&str> = paid.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["id", "amount", "currency", "description", "balance", "status", "failed_reason",
            "return_url", "test_mode", "checkout_url"]);
        assert_eq!((paid["status"].as_str(), num(&paid["balance"])), (Some("succeeded"), "0".to_string()));
        assert!(!paid.to_string().contains("secret") && !paid.to_string().contains(&customer));
        // The merchant sees everything, and the invoice was paid.
        let full = test.get(&format!("/payments/{}/", p["id"])).body;
        assert_eq!((&full["customer"], &full["metadata"]["margin"]), (&json!(customer), &json!("secret")));
        assert_eq!(test.get(&format!("/invoices/{invoice}/")).body["status"], "paid");
    }

    fn a_payers_refusals_name_none_of_the_merchants_business(app) {
        let test = app.in_test_mode();
        let customer = test.customer_id("Ana");
        let invoice = test.open_invoice(&customer, "CLP", "1000");
        let p = test.create_payment(json!({"invoice": invoice}));
        // Part of the invoice is paid another way: the checkout's charge no longer fits.
        test.create_payment(json!({"invoice": invoice, "amount": 600, "status": "succeeded"}));
        let source = payer_source(&test, &p);
        let refused = authorize_by_key(&test, &p, &key_of(&p), &source["id"]).expect(400);
        assert_eq!(refused.body, json!({"non_field_errors": ["This payment cannot be paid now; ask the merchant."]}));
        assert!(!refused.text.contains(&invoice) && !refused.text.contains("400"), "{}", refused.text);
        // The merchant is told why.
        let told = test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": test.source_id()})).expect(400);
        assert!(told.text.contains(&invoice), "{}", told.text);
    }

    fn a_payer_may_send_a_form_as_well_as_json(app) {
        let test = app.in_test_mode();
        let p = test.create_payment(json!({}));
        let other = payer_source(&test, &test.create_payment(json!({})));
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        let key = key_of(&p);
        let made = send("POST", &test.url("/sources/"), &form, Some(&format!("checkout={key}&gateway=bank_transfer"))).expect(201).body;
        assert_eq!(made["checkout_payment"], p["id"]);
        let path = test.url(&format!("/payments/{}/authorize/", p["id"]));
        let stolen = send("POST", &path, &form, Some(&format!("checkout={key}&source={}", other["id"]))).expect(400);
        assert_eq!(stolen.body, missing_source(&other["id"]));
        let paid = send("POST", &path, &form, Some(&format!("checkout={key}&source={}", made["id"]))).expect(200).body;
        assert_eq!(paid["status"], "processing", "a bank transfer waits for the merchant");
        // While it is in flight, the payer makes nothing more.
        let card = json!({"gateway": "sandbox", "gateway_data": {"token": "tok_visa"}});
        let busy = by_key(&test, "/sources/", &key, card).expect(400);
        assert_eq!(busy.body, json!({"non_field_errors": ["A charge of this payment is in flight: wait for it to settle."]}));
    }

    fn a_key_opens_no_other_route(app) {
        let test = app.in_test_mode();
        let p = test.create_payment(json!({}));
        let key = key_of(&p);
        let id = &p["id"];
        for (method, path) in [("GET", format!("/payments/{id}/")), ("GET", "/payments/".into()), ("GET", "/sources/".into()),
                               ("GET", format!("/payments/{id}/attempts/")), ("GET", "/events/".into()), ("GET", "/webhooks/".into()),
                               ("GET", "/customers/".into()), ("POST", format!("/payments/{id}/cancel/")), ("POST", format!("/payments/{id}/settle/")),
                               ("PATCH", format!("/payments/{id}/")), ("DELETE", format!("/payments/{id}/")), ("POST", "/payments/".into())] {
            let body = json!({"checkout": key, "status": "succeeded", "amount": 1, "currency": "CLP", "date": "2026-12-01", "description": "x"}).to_string();
            let query = format!("{}?checkout={key}", test.url(&path));
            send(method, &query, &JSON, Some(&body)).expect(401);
        }
        let (payment, attempts) = state(&test, &p);
        assert_eq!((payment["status"].as_str(), attempts), (Some("requires_payment_method"), json!([])));
        // Another payment's id with this key: as if it did not exist.
        let other = test.create_payment(json!({}));
        let source = payer_source(&test, &p);
        authorize_by_key(&test, &other, &key, &source["id"]).expect(404);
        // The Billingrails door takes secret keys only.
        let bearer = format!("Bearer {key}");
        send("GET", &test.url("/v1/payments"), &[("Authorization", &bearer)], None).expect(401);
    }

    fn keys_of_paid_and_cancelled_payments_pay_nothing(app) {
        let test = app.in_test_mode();
        let paid = test.create_payment(json!({}));
        let early = payer_source(&test, &paid);
        let source = payer_source(&test, &paid);
        authorize_by_key(&test, &paid, &key_of(&paid), &source["id"]).expect(200);
        let cancelled = test.create_payment(json!({}));
        let kept = payer_source(&test, &cancelled);
        test.post(&format!("/payments/{}/cancel/", cancelled["id"]), json!({})).expect(200);
        for (payment, leftover, word) in [(&paid, &early, "succeeded"), (&cancelled, &kept, "cancelled")] {
            let key = key_of(payment);
            let page = send("GET", payment["checkout_url"].as_str().unwrap(), &[], None).expect(200).text;
            assert!(!page.contains("<form"), "a receipt or a notice, never a form");
            let form = [("Content-Type", "application/x-www-form-urlencoded")];
            send("POST", &test.url(&format!("/pay/{key}/")), &form, Some("method=sandbox%3Atok_visa")).expect(409);
            let card = json!({"gateway": "sandbox", "gateway_data": {"token": "tok_visa"}});
            let refused = by_key(&test, "/sources/", &key, card).expect(400);
            assert_eq!(refused.body, json!({"non_field_errors": [format!("The payment is \"{word}\": there is nothing to pay.")]}));
            authorize_by_key(&test, payment, &key, &leftover["id"]).expect(400);
            assert_eq!(test.get(&format!("/sources/{}/", leftover["id"])).body["status"], "chargeable");
        }
        assert_eq!(state(&test, &paid).1.as_array().unwrap().len(), 1, "one charge, never two");
        assert_eq!(state(&test, &cancelled).1, json!([]));
    }

    fn a_key_stops_working_when_the_checkout_is_turned_off(app) {
        let test = app.in_test_mode();
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        let p = test.create_payment(json!({"return_url": "https://shop.example/back"}));
        let key = key_of(&p);
        let source = payer_source(&test, &p);
        let redirect_card = json!({"gateway": "sandbox", "gateway_data": {"token": "tok_redirect"}});
        let waiting = by_key(&test, "/sources/", &key, redirect_card).expect(201).body;
        authorize_by_key(&test, &p, &key, &waiting["id"]).expect(200);
        let authorization = test.url(&format!("/payments/{}/pay/?checkout={key}", p["id"]));
        send("GET", &authorization, &[], None).expect(200);

        test.patch(&format!("/payments/{}/", p["id"]), json!({"enable_checkout": false})).expect(200);
        let before = state(&test, &p);
        send("GET", &test.url(&format!("/pay/{key}/")), &[], None).expect(404);
        send("POST", &test.url(&format!("/pay/{key}/")), &form, Some("method=sandbox%3Atok_visa")).expect(404);
        let card = json!({"gateway": "sandbox", "gateway_data": {"token": "tok_visa"}});
        by_key(&test, "/sources/", &key, card.clone()).expect(404);
        authorize_by_key(&test, &p, &key, &source["id"]).expect(404);
        send("GET", &authorization, &[], None).expect(404);
        send("POST", &authorization, &form, Some("decision=approve")).expect(404);
        assert_eq!(state(&test, &p), before, "nothing changed");
        assert_eq!(before.0["status"], "processing");

        // Turned on again, the same key works again: the payer approves the charge waiting.
        test.patch(&format!("/payments/{}/", p["id"]), json!({"enable_checkout": true})).expect(200);
        send("POST", &authorization, &form, Some("decision=approve")).expect(303);
        assert_eq!(state(&test, &p).0["status"], "succeeded");
    }
}
