//! Invoices: drafts with lines and exact totals, finalize, cancel, uncollectible, and the
//! payments that pay them: amount paid and due move in the payment's own transaction, an
//! invoice is paid at zero due, paying more than is due is refused, and of payments racing
//! for the last amount due only one wins.

use crate::both;
use crate::helpers::*;

fn draft(app: &App, customer: &str) -> Value {
    app.post("/invoices/", json!({
        "customer": customer, "currency": "usd", "due_date": "2026-12-31", "description": "November",
        "lines": [{"name": "Hosting", "quantity": 2, "amount": "10.50"}, {"name": "Support", "unit_amount": 3.25}],
        "metadata": {"po": "77"},
    })).expect(201).body
}

fn pay(app: &App, fields: Value) -> Resp {
    let mut body = json!({"amount": 1000, "currency": "CLP", "date": "2026-11-23", "description": "Pays an invoice"});
    for (key, value) in fields.as_object().unwrap() {
        body[key] = value.clone();
    }
    app.post("/payments/", body)
}

both! {
    fn a_draft_totals_its_lines_and_finalizes(app) {
        let ana = app.customer_id("Ana");
        let inv = draft(&app, &ana);
        let keys: Vec<&str> = inv.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["id", "customer", "currency", "status", "lines", "total", "amount_paid", "amount_due", "amount_refunded",
            "due_date", "description", "metadata", "test_mode", "finalized_at", "paid_at", "created", "updated"]);
        let id = inv["id"].as_str().unwrap();
        assert!(id.starts_with("inv_"), "{id}");
        assert_eq!((inv["customer"].as_str(), inv["currency"].as_str(), inv["status"].as_str()), (Some(ana.as_str()), Some("USD"), Some("draft")));
        // Piriod's lines carry the unit price as `amount`; `unit_amount` is its alias, and
        // both are shown, with the line's total.
        let lines: Vec<(String, i64, String, String, String)> = inv["lines"].as_array().unwrap().iter().map(|l| (
            l["name"].as_str().unwrap().to_string(), l["quantity"].as_i64().unwrap(), num(&l["amount"]), num(&l["unit_amount"]), num(&l["total"]),
        )).collect();
        assert_eq!(lines, [("Hosting".to_string(), 2, "10.50".to_string(), "10.50".to_string(), "21.00".to_string()),
            ("Support".to_string(), 1, "3.25".to_string(), "3.25".to_string(), "3.25".to_string())]);
        assert_eq!((num(&inv["total"]), num(&inv["amount_paid"]), num(&inv["amount_due"])), ("24.25".into(), "0.00".into(), "24.25".into()));
        assert_eq!((inv["due_date"].as_str(), inv["finalized_at"].clone()), (Some("2026-12-31"), Value::Null));
        let path = format!("/invoices/{id}/");
        assert_eq!(app.get(&path).expect(200).body, inv);
        // A draft's lines can change; the total follows.
        let changed = app.patch(&path, json!({"lines": [{"name": "Hosting", "quantity": 3, "unit_amount": "10.50"}]})).expect(200).body;
        assert_eq!(num(&changed["total"]), "31.50");
        let fin = app.post(&format!("{path}finalize/"), json!({})).expect(200).body;
        assert_eq!(fin["status"], "finalized");
        assert!(fin["finalized_at"].is_string());
        // Finalized: what is owed is fixed, the rest is not.
        let refused = app.patch(&path, json!({"lines": []})).expect(400).body;
        assert_eq!(refused, json!({"detail": "Only a draft invoice can change its customer, currency, due date or lines; this one is finalized."}));
        assert_eq!(app.patch(&path, json!({"description": "Nov."})).expect(200).body["description"], "Nov.");
        app.post(&format!("{path}finalize/"), json!({})).expect(400);
        app.delete(&path).expect(400);
        assert_eq!(app.events_of("invoice", &json!(id)), ["invoice.created", "invoice.updated", "invoice.finalized", "invoice.updated"]);
        // Lists filter by customer, status and currency.
        let other = draft(&app, &app.customer_id("Bo"));
        let ids = |q: &str| -> Vec<String> { app.get(&format!("/invoices/?{q}")).expect(200).body["results"].as_array().unwrap()
            .iter().map(|i| i["id"].as_str().unwrap().to_string()).collect() };
        assert_eq!(ids(""), [other["id"].as_str().unwrap(), id]);
        assert_eq!(ids(&format!("customer={ana}")), [id]);
        assert_eq!(ids("status=draft"), [other["id"].as_str().unwrap()]);
        assert_eq!(ids("currency=clp"), Vec::<String>::new());
        app.get("/invoices/?status=open").expect(400);
    }

    fn bad_invoices_are_refused_and_change_nothing(app) {
        let ana = app.customer_id("Ana");
        let required = json!(["This field is required."]);
        assert_eq!(app.post("/invoices/", json!({})).expect(400).body,
            json!({"customer": required, "currency": required, "due_date": required, "lines": required}));
        let base = json!({"customer": ana, "currency": "CLP", "due_date": "2026-12-31", "lines": [{"name": "A", "unit_amount": 100}]});
        let with = |key: &str, value: Value| { let mut b = base.clone(); b[key] = value; app.post("/invoices/", b).expect(400).body };
        assert_eq!(with("customer", json!("cus_nobody")), json!({"customer": ["Invalid pk \"cus_nobody\" - object does not exist."]}));
        assert_eq!(with("currency", json!("XXX")), json!({"currency": ["\"XXX\" is not a valid choice."]}));
        assert_eq!(with("due_date", json!("31/12/2026")), json!({"due_date": ["Date has wrong format. Use one of these formats instead: YYYY-MM-DD."]}));
        assert_eq!(with("lines", json!({})), json!({"lines": ["Expected a list of items but got type \"dict\"."]}));
        assert_eq!(with("lines", json!([{"name": "A", "unit_amount": "10.5"}])), json!({"lines": ["Line 1: unit_amount: Ensure that there are no more than 0 decimal places."]}));
        assert_eq!(with("lines", json!([{"name": "A", "unit_amount": 1}, {"name": "B", "quantity": 0, "unit_amount": 1}])),
            json!({"lines": ["Line 2: quantity must be a whole number from 1 to 1000000."]}));
        assert_eq!(with("lines", json!([{"name": "A", "unit_amount": -1}])), json!({"lines": ["Line 1: unit_amount must not be negative."]}));
        assert_eq!(with("lines", json!([{"name": "A", "amount": "1.5"}])), json!({"lines": ["Line 1: amount: Ensure that there are no more than 0 decimal places."]}));
        assert_eq!(with("lines", json!([{"name": "A", "amount": 1, "unit_amount": 2}])),
            json!({"lines": ["Line 1: amount and unit_amount are one price under two names: send one, or the same in both."]}));
        assert_eq!(with("lines", json!([{"name": "A"}])), json!({"lines": ["Line 1: amount (the unit price) is required."]}));
        assert_eq!(with("lines", json!([{"name": "A", "amount": null}])), json!({"lines": ["Line 1: amount (the unit price) is required."]}));
        assert_eq!(with("lines", json!([{"unit_amount": 1}])), json!({"lines": ["Line 1: name is required (at most 256 characters)."]}));
        assert_eq!(with("lines", json!([{"name": "A", "quantity": 1000000, "unit_amount": "999999999999999"}])), json!({"lines": ["The invoice's total is too large."]}));
        // Another mode's customer does not exist here.
        let sandbox = app.in_test_mode().customer_id("Sandbox");
        assert_eq!(with("customer", json!(sandbox)), json!({"customer": [format!("Invalid pk \"{sandbox}\" - object does not exist.")]}));
        assert_eq!(app.get("/invoices/").body["count"], 0);
        // A price sent as null is no price: the other name may carry it.
        app.post("/invoices/", json!({"customer": ana, "currency": "CLP", "due_date": "2026-12-31",
            "lines": [{"name": "A", "amount": null, "unit_amount": 5}]})).expect(201);
        // An empty draft cannot be finalized; a draft can be deleted.
        let mut empty = base.clone();
        empty["lines"] = json!([]);
        let id = app.post("/invoices/", empty).expect(201).body["id"].as_str().unwrap().to_string();
        assert_eq!(app.post(&format!("/invoices/{id}/finalize/"), json!({})).expect(400).body,
            json!({"detail": "An invoice needs lines and a total above 0 to be finalized."}));
        assert_eq!(app.post(&format!("/invoices/{id}/mark_uncollectible/"), json!({})).expect(400).body,
            json!({"detail": "An invoice cannot move from draft to uncollectible."}));
        app.delete(&format!("/invoices/{id}/")).expect(204);
        app.get(&format!("/invoices/{id}/")).expect(404);
        for path in ["/invoices/1/", "/invoices/inv_/", "/invoices/cus_abc/"] {
            app.get(path).expect(404);
        }
    }

    fn payments_pay_an_invoice_until_it_is_paid(app) {
        let ana = app.customer_id("Ana");
        let inv = app.open_invoice(&ana, "CLP", "1000");
        let path = format!("/invoices/{inv}/");
        // The payment takes the invoice's customer when it names none.
        let first = pay(&app, json!({"amount": 400, "invoice": inv})).expect(201).body;
        assert_eq!(first["customer"], ana.as_str());
        assert_eq!(num(&app.get(&path).body["amount_paid"]), "0");
        app.patch(&format!("/payments/{}/", first["id"]), json!({"status": "succeeded"})).expect(200);
        let part = app.get(&path).body;
        assert_eq!((num(&part["amount_paid"]), num(&part["amount_due"]), part["status"].as_str()), ("400".into(), "600".into(), Some("finalized")));
        // A payment created already paid settles the rest.
        pay(&app, json!({"amount": 600, "invoice": inv, "status": "succeeded"})).expect(201);
        let paid = app.get(&path).body;
        assert_eq!((num(&paid["amount_due"]), paid["status"].as_str()), ("0".into(), Some("paid")));
        assert!(paid["paid_at"].is_string());
        assert_eq!(app.events_of("invoice", &json!(inv)), ["invoice.created", "invoice.finalized", "invoice.updated", "invoice.paid"]);
        // Paid: nothing more is accepted, and it cannot be cancelled.
        assert_eq!(pay(&app, json!({"amount": 1, "invoice": inv})).expect(400).body, json!({"invoice": ["The invoice is paid: it cannot be paid."], "amount": ["Ensure this value is less than or equal to 0, what the invoice still has due."]}));
        app.post(&format!("{path}cancel/"), json!({})).expect(400);
        // A succeeded payment's invoice is fixed.
        assert_eq!(app.patch(&format!("/payments/{}/", first["id"]), json!({"invoice": null})).expect(400).body,
            json!({"invoice": ["A payment with money collected or in flight cannot change its invoice."]}));
    }

    fn a_payment_must_fit_its_invoice(app) {
        let (ana, bo) = (app.customer_id("Ana"), app.customer_id("Bo"));
        let inv = app.open_invoice(&ana, "CLP", "1000");
        let before = app.get("/payments/").body["count"].clone();
        assert_eq!(pay(&app, json!({"invoice": "inv_nobody"})).expect(400).body, json!({"invoice": ["Invalid pk \"inv_nobody\" - object does not exist."]}));
        assert_eq!(pay(&app, json!({"invoice": inv, "amount": "5.00", "currency": "USD"})).expect(400).body, json!({"currency": ["Must be the invoice's currency, CLP."]}));
        assert_eq!(pay(&app, json!({"invoice": inv, "customer": bo})).expect(400).body, json!({"customer": [format!("Must be the invoice's customer, {ana}.")]}));
        assert_eq!(pay(&app, json!({"invoice": inv, "amount": 1001})).expect(400).body, json!({"amount": ["Ensure this value is less than or equal to 1000, what the invoice still has due."]}));
        let drafted = app.post("/invoices/", json!({"customer": ana, "currency": "CLP", "due_date": "2026-12-31",
            "lines": [{"name": "A", "unit_amount": 100}]})).expect(201).body["id"].as_str().unwrap().to_string();
        assert_eq!(pay(&app, json!({"invoice": drafted, "amount": 100})).expect(400).body, json!({"invoice": ["The invoice is draft: it cannot be paid."]}));
        assert_eq!(app.get("/payments/").body["count"], before);
        // Uncollectible invoices can still be paid; cancelled ones cannot.
        app.post(&format!("/invoices/{inv}/mark_uncollectible/"), json!({})).expect(200);
        let p = pay(&app, json!({"invoice": inv, "amount": 1000})).expect(201).body;
        app.patch(&format!("/payments/{}/", p["id"]), json!({"status": "succeeded"})).expect(200);
        assert_eq!(app.get(&format!("/invoices/{inv}/")).body["status"], "paid");
        let other = app.open_invoice(&ana, "CLP", "50");
        app.post(&format!("/invoices/{other}/cancel/"), json!({})).expect(200);
        assert_eq!(pay(&app, json!({"invoice": other, "amount": 50})).expect(400).body, json!({"invoice": ["The invoice is cancelled: it cannot be paid."]}));
        // A customer with invoices is archived, not deleted.
        assert_eq!(app.delete(&format!("/customers/{bo}/")).expect(204).text, "");
        assert_eq!(app.delete(&format!("/customers/{ana}/")).expect(200).body["status"], "archived");
    }

    fn paying_more_than_is_due_is_refused(app) {
        let ana = app.customer_id("Ana");
        let inv = app.open_invoice(&ana, "CLP", "1000");
        // Each fits what is due when created; the second no longer does when it succeeds.
        let a = pay(&app, json!({"amount": 600, "invoice": inv})).expect(201).body;
        let b = pay(&app, json!({"amount": 600, "invoice": inv})).expect(201).body;
        app.patch(&format!("/payments/{}/", a["id"]), json!({"status": "succeeded"})).expect(200);
        let refused = app.patch(&format!("/payments/{}/", b["id"]), json!({"status": "succeeded"})).expect(400).body;
        assert_eq!(refused, json!({"detail": format!("The payment (CLP 600) is more than the invoice {inv} still has due (CLP 400).")}));
        assert_eq!(app.get(&format!("/payments/{}/", b["id"])).body["status"], "requires_payment_method");
        let invoice = app.get(&format!("/invoices/{inv}/")).body;
        assert_eq!((num(&invoice["amount_paid"]), invoice["status"].as_str()), ("600".into(), Some("finalized")));
        assert_eq!(app.event_types(&b["id"]), ["payment.created"]);
    }

    fn charges_in_flight_hold_their_share_of_the_invoice(app) {
        let test = app.in_test_mode();
        let ana = test.customer_id("Ana");
        let inv = test.open_invoice(&ana, "CLP", "1000");
        let (a, b, c) = (pay(&test, json!({"invoice": inv})).expect(201).body, pay(&test, json!({"invoice": inv})).expect(201).body,
            pay(&test, json!({"invoice": inv})).expect(201).body);
        let slow = test.create_source(json!({"usage": "reusable", "gateway_data": {"token": "tok_async_success"}}))["id"].as_i64().unwrap();
        let charged = test.post(&format!("/payments/{}/authorize/", a["id"]), json!({"source": slow})).expect(200).body;
        assert_eq!(charged["status"], "processing");
        // Nothing is left to charge while that charge is in flight: no second charge starts...
        let refused = test.post(&format!("/payments/{}/authorize/", b["id"]), json!({"source": slow})).expect(400).body;
        assert_eq!(refused, json!({"invoice": [format!("The invoice {inv} is finalized with CLP 0 left to charge: this charge of CLP 1,000 does not fit.")]}));
        let attempts = test.get(&format!("/payments/{}/attempts/", b["id"])).expect(200).body;
        assert_eq!(attempts.as_array().map(Vec::len).or(attempts["count"].as_u64().map(|n| n as usize)), Some(0), "{attempts}");
        // ...no success is marked by hand, the invoice cannot be cancelled, and the charging
        // payment keeps its invoice.
        let marked = test.patch(&format!("/payments/{}/", c["id"]), json!({"status": "succeeded"})).expect(400).body;
        assert_eq!(marked, json!({"detail": format!("The payment (CLP 1,000) is more than the invoice {inv} still has due (CLP 1,000, of which CLP 1,000 is being charged by other payments).")}));
        test.post(&format!("/invoices/{inv}/cancel/"), json!({})).expect(400);
        assert_eq!(test.patch(&format!("/payments/{}/", a["id"]), json!({"invoice": null})).expect(400).body,
            json!({"invoice": ["A payment with money collected or in flight cannot change its invoice."]}));
        // The charge settles and pays the invoice.
        assert_eq!(test.post(&format!("/payments/{}/settle/", a["id"]), json!({})).expect(200).body["status"], "succeeded");
        let invoice = test.get(&format!("/invoices/{inv}/")).body;
        assert_eq!((num(&invoice["amount_paid"]), invoice["status"].as_str()), ("1000".into(), Some("paid")));
    }

    fn a_finalized_invoice_accepts_what_it_already_says(app) {
        let ana = app.customer_id("Ana");
        let inv = app.open_invoice(&ana, "CLP", "1000");
        let path = format!("/invoices/{inv}/");
        let current = app.get(&path).body;
        // The same customer, currency, due date and lines: nothing owed changes.
        app.patch(&path, json!({"due_date": current["due_date"], "currency": "CLP"})).expect(200);
        let put = app.put(&path, json!({"customer": ana, "currency": "CLP", "due_date": current["due_date"],
            "lines": [{"name": "Services", "unit_amount": "1000"}], "description": "Same"})).expect(200).body;
        assert_eq!(put["description"], "Same");
        app.patch(&path, json!({"due_date": "2027-01-31"})).expect(400);
    }

    fn payments_racing_for_the_last_amount_due_cannot_both_win(app) {
        let ana = app.customer_id("Ana");
        let inv = app.open_invoice(&ana, "CLP", "1000");
        let payments: Vec<Value> = (0..8).map(|_| pay(&app, json!({"amount": 1000, "invoice": inv})).expect(201).body).collect();
        let answers: Vec<Resp> = std::thread::scope(|s| {
            let handles: Vec<_> = payments.iter().map(|p| {
                let app = &app;
                s.spawn(move || app.patch(&format!("/payments/{}/", p["id"]), json!({"status": "succeeded"})))
            }).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won = answers.iter().filter(|r| r.status == 200).count();
        assert_eq!(won, 1, "{:?}", answers.iter().map(|r| (r.status, r.text.clone())).collect::<Vec<_>>());
        assert!(answers.iter().all(|r| r.status == 200 || r.status == 400));
        let invoice = app.get(&format!("/invoices/{inv}/")).body;
        assert_eq!((num(&invoice["amount_paid"]), invoice["status"].as_str()), ("1000".into(), Some("paid")));
        assert_eq!(app.get(&format!("/payments/?invoice={inv}&status=succeeded")).body["count"], 1);
    }
}
