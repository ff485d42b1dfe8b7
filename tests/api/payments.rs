//! Creating, reading, updating and deleting payments: fields, validation, exact money.

use crate::both;
use crate::helpers::*;

fn valid() -> Value {
    json!({"amount": 1000, "currency": "CLP", "date": "2026-11-23", "description": "Order 1"})
}

/// Posts `valid()` with `fields` laid over it (a null removes the field) and returns the
/// response, asserting that a refused create leaves the workspace without payments.
fn create_with(app: &App, fields: Value) -> Resp {
    let mut body = valid();
    for (key, value) in fields.as_object().unwrap() {
        if value.is_null() && !key.starts_with("keep_") {
            body.as_object_mut().unwrap().remove(key);
        } else {
            body[key.trim_start_matches("keep_")] = value.clone();
        }
    }
    let resp = app.post("/payments/", body);
    if resp.status == 400 {
        assert_eq!(
            app.get("/payments/").body["count"],
            0,
            "a refused create left a payment"
        );
    }
    resp
}

#[track_caller]
fn rejects(app: &App, fields: Value, field: &str, message: &str) {
    let resp = create_with(app, fields).expect(400);
    assert_eq!(resp.body[field], json!([message]), "body: {}", resp.text);
}

both! {
    fn create_returns_every_field(app) {
        let (s1, s2) = (app.source_id(), app.source_id());
        let c1 = app.customer_id("Ana");
        let inv1 = app.open_invoice(&c1, "USD", "20.00");
        let resp = app.post("/payments/", json!({
            "amount": "10.50", "currency": "usd", "date": "2026-11-23", "description": "  Invoice 42  ",
            "invoice": inv1, "subscription": "sub_1", "customer": c1, "source": s1, "sources": [s1, s2],
            "return_url": "https://shop.example/back?x=1", "metadata": {"order": "A-1", "n": 3, "vip": true},
        })).expect(201);
        let p = resp.body;
        let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["amount", "currency", "date", "description", "id", "invoice", "subscription", "customer",
            "balance", "payment_date", "source", "sources", "status", "failed_reason", "return_url", "enable_checkout",
            "metadata", "test_mode", "created", "updated", "checkout_url", "amount_refunded", "refunded"]);
        assert_eq!(num(&p["amount"]), "10.50");
        assert_eq!((num(&p["amount_refunded"]), &p["refunded"]), ("0.00".to_string(), &json!(false)));
        assert_eq!(num(&p["balance"]), "10.50");
        assert_eq!(p["currency"], "USD");
        assert_eq!(p["description"], "Invoice 42");
        assert_eq!(p["status"], "requires_payment_method");
        assert_eq!(p["sources"], json!([s1, s2]));
        assert_eq!(p["source"], s1);
        assert_eq!(p["metadata"], json!({"order": "A-1", "n": 3, "vip": true}));
        assert_eq!(p["enable_checkout"], true);
        assert_eq!(p["test_mode"], false);
        assert_eq!(p["payment_date"], Value::Null);
        assert_eq!(p["failed_reason"], Value::Null);
        assert!(p["created"].as_str().unwrap().ends_with('Z'));
        assert!(p["checkout_url"].as_str().unwrap().starts_with(&app.url("/pay/")));
        // The client cannot choose the host of the links it is given.
        let forwarded = app.send("GET", &format!("/payments/{}/", p["id"]), None,
            &[("X-Forwarded-Host", "evil.example"), ("Forwarded", "host=evil.example;proto=https")]).expect(200);
        assert_eq!(forwarded.body["checkout_url"], p["checkout_url"]);
        assert_eq!(app.get(&format!("/payments/{}/", p["id"])).expect(200).body, p);
    }

    fn missing_required_fields_are_named(app) {
        let resp = app.post("/payments/", json!({})).expect(400);
        let required = json!(["This field is required."]);
        assert_eq!(resp.body, json!({"amount": required, "currency": required, "date": required, "description": required}));
    }

    fn amount_rules(app) {
        rejects(&app, json!({"amount": "abc"}), "amount", "A valid number is required.");
        rejects(&app, json!({"amount": "1e3"}), "amount", "A valid number is required.");
        rejects(&app, json!({"amount": "NaN"}), "amount", "A valid number is required.");
        rejects(&app, json!({"amount": [1]}), "amount", "A valid number is required.");
        rejects(&app, json!({"amount": true}), "amount", "A valid number is required.");
        rejects(&app, json!({"keep_amount": null}), "amount", "This field may not be null.");
        rejects(&app, json!({"amount": 0}), "amount", "Ensure this value is greater than 0.");
        rejects(&app, json!({"amount": -5}), "amount", "Ensure this value is greater than 0.");
        rejects(&app, json!({"amount": "10.5"}), "amount", "Ensure that there are no more than 0 decimal places.");
        rejects(&app, json!({"amount": "10.001", "currency": "USD"}), "amount", "Ensure that there are no more than 2 decimal places.");
        rejects(&app, json!({"amount": "1.00001", "currency": "CLF"}), "amount", "Ensure that there are no more than 4 decimal places.");
        rejects(&app, json!({"amount": "1.0001", "currency": "KWD"}), "amount", "Ensure that there are no more than 3 decimal places.");
        rejects(&app, json!({"amount": "1000000000000000000"}), "amount", "Ensure that there are no more than 18 digits before the decimal point.");
        rejects(&app, json!({"amount": "99999999999999999999999999999999999"}), "amount", "Ensure that there are no more than 18 digits in total.");
        // Never rounded into a valid amount, however many digits.
        rejects(&app, json!({"amount": "0.0099999999999999999999999999999", "currency": "USD"}), "amount", "Ensure that there are no more than 18 digits in total.");
        // Trailing zeros are not extra precision.
        assert_eq!(num(&create_with(&app, json!({"amount": "10.500", "currency": "USD"})).expect(201).body["amount"]), "10.50");
    }

    fn other_field_rules(app) {
        rejects(&app, json!({"currency": "XYZ"}), "currency", "\"XYZ\" is not a valid choice.");
        rejects(&app, json!({"currency": ""}), "currency", "This field may not be blank.");
        rejects(&app, json!({"date": "23-11-2026"}), "date", "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.");
        rejects(&app, json!({"date": "2026-02-30"}), "date", "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.");
        for year_out_of_range in ["-5000-01-01", "+20000-01-01", "0000-01-01"] {
            rejects(&app, json!({"date": year_out_of_range}), "date", "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.");
        }
        rejects(&app, json!({"payment_date": "-0044-03-15T12:00:00Z"}), "payment_date",
            "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].");
        // PostgreSQL cannot store a NUL in text: a 400, not a 500, on both backends.
        rejects(&app, json!({"description": "a\0b"}), "description", "Null characters are not allowed.");
        rejects(&app, json!({"customer": "\0"}), "customer", "Null characters are not allowed.");
        rejects(&app, json!({"metadata": {"k": "v\0"}}), "metadata", "Null characters are not allowed.");
        rejects(&app, json!({"metadata": {"k\0": "v"}}), "metadata", "Null characters are not allowed.");
        rejects(&app, json!({"description": "   "}), "description", "This field may not be blank.");
        rejects(&app, json!({"description": "x".repeat(257)}), "description", "Ensure this field has no more than 256 characters.");
        rejects(&app, json!({"description": {"a": 1}}), "description", "Not a valid string.");
        rejects(&app, json!({"status": "paid"}), "status", "\"paid\" is not a valid choice.");
        rejects(&app, json!({"payment_date": "yesterday"}), "payment_date",
            "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].");
        rejects(&app, json!({"source": "abc"}), "source", "Incorrect type. Expected pk value, received str.");
        rejects(&app, json!({"sources": 5}), "sources", "Expected a list of items but got type \"int\".");
        rejects(&app, json!({"sources": "5"}), "sources", "Expected a list of items but got type \"str\".");
        rejects(&app, json!({"sources": [1, true]}), "sources", "Incorrect type. Expected pk value, received bool.");
        rejects(&app, json!({"enable_checkout": "perhaps"}), "enable_checkout", "Must be a valid boolean.");
        rejects(&app, json!({"invoice": "x".repeat(256)}), "invoice", "Ensure this field has no more than 255 characters.");
        for bad_url in ["ftp://files.example/x", "/relative/path", "https://", "https://shop.example/\r\nSet-Cookie: a=b", "javascript:alert(1)"] {
            rejects(&app, json!({"return_url": bad_url}), "return_url", "Enter a valid URL.");
        }
        let ok = create_with(&app, json!({"description": "x".repeat(256)})).expect(201);
        assert_eq!(ok.body["description"].as_str().unwrap().len(), 256);
    }

    fn status_on_create(app) {
        rejects(&app, json!({"status": "failed"}), "status",
            "A payment cannot be created as \"failed\": use requires_payment_method, processing or succeeded.");
        rejects(&app, json!({"status": "cancelled"}), "status",
            "A payment cannot be created as \"cancelled\": use requires_payment_method, processing or succeeded.");
        let paid = app.create_payment(json!({"status": "succeeded"}));
        assert_eq!(num(&paid["balance"]), "0");
        assert!(paid["payment_date"].is_string());
        let dated = app.create_payment(json!({"status": "succeeded", "payment_date": "2026-01-02T03:04:05Z"}));
        assert_eq!(dated["payment_date"], "2026-01-02T03:04:05.000000Z");
        let processing = app.create_payment(json!({"status": "processing"}));
        assert_eq!(processing["status"], "processing");
        assert_eq!(num(&processing["balance"]), "1000");
    }

    fn metadata_rules(app) {
        rejects(&app, json!({"metadata": [1]}), "metadata", "Expected a dictionary of items but got type \"list\".");
        rejects(&app, json!({"metadata": {"k": {"nested": 1}}}), "metadata",
            "Values must be strings, numbers or booleans: the value of \"k\" is a dict.");
        rejects(&app, json!({"metadata": {"k".repeat(41): "v"}}), "metadata",
            &format!("Keys must be 1 to 40 characters long: \"{}\" is not.", "k".repeat(41)));
        rejects(&app, json!({"metadata": {"k": "v".repeat(501)}}), "metadata",
            "Values must be at most 500 characters long: the value of \"k\" is not.");
        let many: serde_json::Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
        rejects(&app, json!({"metadata": many}), "metadata", "Ensure there are no more than 50 keys.");
        let fifty: serde_json::Map<String, Value> = (0..50).map(|i| (format!("k{i}"), json!(i))).collect();
        let created = app.create_payment(json!({"metadata": fifty}));
        assert_eq!(created["metadata"].as_object().unwrap().len(), 50);
    }

    fn read_only_and_unknown_fields_are_ignored(app) {
        let p = app.create_payment(json!({"id": 999999, "balance": 1, "test_mode": true, "failed_reason": "x",
            "created": "2000-01-01T00:00:00Z", "checkout_url": "https://evil.example", "colour": "blue"}));
        assert_ne!(p["id"], 999999);
        assert_eq!(num(&p["balance"]), "1000");
        assert_eq!(p["test_mode"], false);
        assert_eq!(p["failed_reason"], Value::Null);
        assert!(!p["created"].as_str().unwrap().starts_with("2000"));
        assert!(p.get("colour").is_none());
    }

    fn exact_money_round_trips(app) {
        for (currency, amount) in [("CLF", "0.0001"), ("CLF", "12345.6789"), ("USD", "0.30"), ("USD", "0.01"),
            ("CLP", "123456789012345"), ("JPY", "5000"), ("KWD", "1.234"), ("EUR", "9999999999999999.99"),
            ("MXN", "0.10"), ("COP", "1500.25"), ("PEN", "3.33"), ("BRL", "7.77"), ("ARS", "100.01"), ("GBP", "0.99")] {
            let body = json!({"currency": currency, "date": "2026-11-23", "description": "exact"}).to_string();
            let body = body.replacen('{', &format!("{{\"amount\": {amount},"), 1);
            let created = app.send("POST", "/payments/", Some(&body), &[]).expect(201).body;
            assert_eq!(num(&created["amount"]), amount, "{currency}");
            let fetched = app.get(&format!("/payments/{}/", created["id"])).expect(200).body;
            assert_eq!(num(&fetched["amount"]), amount, "{currency} after a read");
            assert_eq!(num(&fetched["balance"]), amount);
        }
        // 0.1 + 0.2 collected on a 0.30 payment leaves exactly nothing, with no float in sight.
        let p = app.create_payment(json!({"amount": "0.30", "currency": "USD"}));
        let path = format!("/payments/{}/", p["id"]);
        let after_first = app.patch(&path, json!({"status": "incomplete", "amount_collected": "0.1"})).expect(200).body;
        assert_eq!(num(&after_first["balance"]), "0.20");
        let after_second = app.patch(&path, json!({"status": "incomplete", "amount_collected": 0.1})).expect(200).body;
        assert_eq!(num(&after_second["balance"]), "0.10");
        let done = app.patch(&path, json!({"status": "succeeded"})).expect(200).body;
        assert_eq!(num(&done["balance"]), "0.00");
        assert_eq!(num(&done["amount"]), "0.30");
    }

    fn patch_changes_only_what_it_names(app) {
        let c1 = app.customer_id("Ana");
        let p = app.create_payment(json!({"customer": c1, "metadata": {"a": "1", "b": "2", "c": "3"}}));
        let path = format!("/payments/{}/", p["id"]);
        let patched = app.patch(&path, json!({"description": "Renamed", "metadata": {"b": null, "c": "", "d": 4}})).expect(200).body;
        assert_eq!(patched["description"], "Renamed");
        assert_eq!(patched["customer"], c1);
        assert_eq!(num(&patched["amount"]), "1000");
        assert_eq!(patched["metadata"], json!({"a": "1", "d": 4}));
        assert_ne!(patched["updated"], p["updated"]);
        let cleared = app.patch(&path, json!({"metadata": ""})).expect(200).body;
        assert_eq!(cleared["metadata"], json!({}));
        let nulled = app.patch(&path, json!({"customer": null, "metadata": {"z": 1}})).expect(200).body;
        assert_eq!(nulled["customer"], Value::Null);
        assert_eq!(app.patch(&path, json!({"metadata": null})).expect(200).body["metadata"], json!({}));
        // A PATCH that changes nothing answers the payment as it is.
        let same = app.patch(&path, json!({})).expect(200).body;
        assert_eq!(same["updated"], app.get(&path).body["updated"]);
    }

    fn put_requires_the_required_fields_and_replaces_metadata(app) {
        let c1 = app.customer_id("Ana");
        let p = app.create_payment(json!({"customer": c1, "metadata": {"a": "1", "b": "2"}}));
        let path = format!("/payments/{}/", p["id"]);
        let resp = app.put(&path, json!({"description": "only this"})).expect(400);
        let required = json!(["This field is required."]);
        assert_eq!(resp.body, json!({"amount": required, "currency": required, "date": required}));
        assert_eq!(app.get(&path).body["description"], "Order 1");
        let put = app.put(&path, json!({"amount": 2000, "currency": "CLP", "date": "2026-12-01", "description": "Replaced",
            "metadata": {"c": "3"}})).expect(200).body;
        assert_eq!(num(&put["amount"]), "2000");
        assert_eq!(put["date"], "2026-12-01");
        assert_eq!(put["metadata"], json!({"c": "3"}));
        // As DRF: optional fields left out of a PUT keep their values.
        assert_eq!(put["customer"], c1);
    }

    fn amount_and_currency_change_only_before_money_moves(app) {
        let p = app.create_payment(json!({}));
        let path = format!("/payments/{}/", p["id"]);
        let changed = app.patch(&path, json!({"amount": "12.34", "currency": "USD"})).expect(200).body;
        assert_eq!((num(&changed["amount"]), changed["currency"].as_str()), ("12.34".to_string(), Some("USD")));
        let in_usd = app.patch(&path, json!({"currency": "CLP"})).expect(400);
        assert_eq!(in_usd.body["amount"], json!(["Ensure that there are no more than 0 decimal places."]));
        app.patch(&path, json!({"status": "incomplete", "amount_collected": "2"})).expect(200);
        let refused = app.patch(&path, json!({"amount": "20"})).expect(400);
        assert_eq!(refused.body["amount"],
            json!(["Cannot change the amount of a payment that is \"incomplete\": money has moved or is in flight."]));
        app.patch(&path, json!({"currency": "EUR"})).expect(400);
        // The same value is not a change (a PUT repeats it).
        app.patch(&path, json!({"amount": "12.34", "currency": "usd"})).expect(200);
        let processing = app.create_payment(json!({"status": "processing"}));
        app.patch(&format!("/payments/{}/", processing["id"]), json!({"amount": 5})).expect(400);
    }

    fn checkout_url_follows_enable_checkout(app) {
        let p = app.create_payment(json!({"enable_checkout": false}));
        assert_eq!(p["checkout_url"], Value::Null);
        let enabled = app.patch(&format!("/payments/{}/", p["id"]), json!({"enable_checkout": "true"})).expect(200).body;
        assert!(enabled["checkout_url"].as_str().unwrap().contains("/pay/"));
        // Unguessable: not the id.
        assert!(!enabled["checkout_url"].as_str().unwrap().ends_with(&format!("/pay/{}/", p["id"])));
    }

    fn delete_only_what_holds_no_money(app) {
        for setup in [json!({}), json!({"to": "failed"}), json!({"to": "cancelled"})] {
            // With metadata: its rows go with the payment (a dangling row would break the FK).
            let p = app.create_payment(json!({"metadata": {"order": "gone"}}));
            let path = format!("/payments/{}/", p["id"]);
            match setup["to"].as_str() {
                Some("failed") => { app.patch(&path, json!({"status": "failed"})).expect(200); }
                Some("cancelled") => { app.post(&format!("{path}cancel/"), json!({})).expect(200); }
                _ => {}
            }
            assert_eq!(app.delete(&path).expect(204).text, "");
            app.get(&path).expect(404);
            app.delete(&path).expect(404);
            assert_eq!(app.get("/payments/?metadata__order=gone").body["count"], 0);
        }
        for fields in [json!({"status": "processing"}), json!({"status": "succeeded"})] {
            let p = app.create_payment(fields);
            let path = format!("/payments/{}/", p["id"]);
            let resp = app.delete(&path).expect(400);
            assert!(resp.body["detail"].as_str().unwrap().contains("cannot be deleted"), "{}", resp.text);
            app.get(&path).expect(200);
        }
        let partial = app.create_payment(json!({}));
        let path = format!("/payments/{}/", partial["id"]);
        app.patch(&path, json!({"status": "incomplete", "amount_collected": 1})).expect(200);
        app.delete(&path).expect(400);
    }

    fn paths_without_trailing_slash_and_bad_ids(app) {
        let p = app.create_payment(json!({}));
        app.get(&format!("/payments/{}", p["id"])).expect(200);
        assert_eq!(app.get("/payments").expect(200).body["count"], 1);
        for bad in ["abc", "-1", "0", "99999999999999999999", "1.5"] {
            assert_eq!(app.get(&format!("/payments/{bad}/")).expect(404).body, json!({"detail": "Not found."}));
        }
        assert_eq!(app.get("/nowhere/").expect(404).body, json!({"detail": "Not found."}));
    }

    fn methods_a_path_lacks_are_405(app) {
        let resp = app.put("/payments/", json!({})).expect(405);
        assert_eq!(resp.body, json!({"detail": "Method \"PUT\" not allowed."}));
        assert_eq!(resp.header("allow"), Some("GET, POST"));
        let p = app.create_payment(json!({}));
        assert_eq!(app.post(&format!("/payments/{}/", p["id"]), json!({})).expect(405).body,
            json!({"detail": "Method \"POST\" not allowed."}));
        app.get(&format!("/payments/{}/cancel/", p["id"])).expect(405);
    }

    fn text_that_is_not_utf8_is_refused(app) {
        let auth = format!("Token {}", app.token);
        let headers = |media| [("Authorization", auth.as_str()), ("x-simple-workspace", app.workspace.as_str()), ("Content-Type", media)];
        let url = app.url("/payments/");
        let json = b"{\"amount\": 1, \"currency\": \"CLP\", \"date\": \"2026-11-23\", \"description\": \"\xff\xfe\"}";
        let refused = send_bytes("POST", &url, &headers("application/json"), Some(json)).expect(400);
        assert!(refused.body["detail"].as_str().unwrap().starts_with("JSON parse error - "), "{}", refused.text);
        for form in [&b"amount=1&currency=CLP&date=2026-11-23&description=%ff%fe"[..], b"amount=1&currency=CLP&date=2026-11-23&description=\xff"] {
            let refused = send_bytes("POST", &url, &headers("application/x-www-form-urlencoded"), Some(form)).expect(400);
            assert_eq!(refused.body, json!({"detail": "Form parse error - the text is not valid UTF-8"}));
        }
        // A filter is never matched against text the client did not send.
        app.create_payment(json!({"description": "\u{FFFD}"}));
        let filtered = app.get("/payments/?search=%ff").expect(400);
        assert_eq!(filtered.body, json!({"detail": "The query string is not valid: the text is not valid UTF-8."}));
        assert_eq!(app.get("/payments/").body["count"], 1);
    }

    fn bodies_json_form_and_others(app) {
        let (s1, s2) = (app.source_id(), app.source_id());
        let form = format!("amount=12.50&currency=USD&date=2026-11-23&description=From+a+form&sources={s1}&sources={s2}&enable_checkout=false");
        let created = app.send("POST", "/payments/", Some(&form), &[("Content-Type", "application/x-www-form-urlencoded")]).expect(201).body;
        assert_eq!(num(&created["amount"]), "12.50");
        assert_eq!(created["sources"], json!([s1, s2]));
        assert_eq!(created["enable_checkout"], false);
        let plain = app.send("POST", "/payments/", Some("amount=1"), &[("Content-Type", "text/plain")]).expect(415);
        assert_eq!(plain.body, json!({"detail": "Unsupported media type \"text/plain\" in request."}));
        // No content is no data, whatever the declared type (DRF): the required fields are named.
        let empty = app.send("POST", "/payments/", Some(""), &[("Content-Type", "text/plain")]).expect(400);
        assert_eq!(empty.body["amount"], json!(["This field is required."]));
        let broken = app.send("POST", "/payments/", Some("{\"amount\": "), &[]).expect(400);
        assert!(broken.body["detail"].as_str().unwrap().starts_with("JSON parse error - "), "{}", broken.text);
        // A body two parsers could read two ways, or nested past reason, changes nothing.
        let twice = r#"{"amount": 1, "currency": "CLP", "date": "2026-11-23", "description": "x", "amount": 1000000}"#;
        assert_eq!(app.send("POST", "/payments/", Some(twice), &[]).expect(400).body,
            json!({"detail": "JSON parse error - duplicate key \"amount\""}));
        let escaped = r#"{"amount": 1, "currency": "CLP", "date": "2026-11-23", "description": "x", "\u0061mount": 5}"#;
        app.send("POST", "/payments/", Some(escaped), &[]).expect(400);
        let deep = format!(r#"{{"amount": 1, "currency": "CLP", "date": "2026-11-23", "description": "x", "metadata": {}1{}}}"#, "[".repeat(30), "]".repeat(30));
        assert_eq!(app.send("POST", "/payments/", Some(&deep), &[]).expect(400).body["detail"],
            "JSON parse error - nesting deeper than 20 levels");
        let list = app.send("POST", "/payments/", Some("[1, 2]"), &[]).expect(400);
        assert_eq!(list.body, json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}));
        let huge = json!({"amount": 1, "currency": "CLP", "date": "2026-11-23", "description": "x", "pad": "y".repeat(70_000)});
        app.post("/payments/", huge).expect(413);
        assert_eq!(app.get("/payments/").body["count"], 1);
    }
}
