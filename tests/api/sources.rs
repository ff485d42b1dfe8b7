//! Sources: creation per gateway and mode, never a card number, lists, scoping, deletion.

use crate::both;
use crate::helpers::*;

both! {
    fn sandbox_sources_in_test_mode(app) {
        let test = app.in_test_mode();
        let s = test.post("/sources/", json!({"gateway": "sandbox", "gateway_data": {"token": "tok_visa"},
            "customer": "cus_1", "amount": "10.50", "description": "Visa", "metadata": {"k": "v"}})).expect(201).body;
        let keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["id", "gateway", "usage", "customer", "amount", "description", "status", "return_url",
            "gateway_data", "card", "metadata", "checkout_payment", "integration", "test_mode", "created", "updated"]);
        assert_eq!(s["checkout_payment"], Value::Null, "the merchant's own source is bound to no checkout");
        assert_eq!((s["status"].as_str(), s["usage"].as_str(), s["test_mode"].as_bool()), (Some("chargeable"), Some("single"), Some(true)));
        assert_eq!(s["gateway_data"], json!({"token": "tok_visa"}));
        assert_eq!((s["card"]["brand"].as_str(), s["card"]["last4"].as_str()), (Some("visa"), Some("4242")));
        // A source has no currency of its own: its amount shows without trailing zeros.
        assert_eq!(num(&s["amount"]), "10.5");
        assert_eq!(test.get(&format!("/sources/{}/", s["id"])).expect(200).body, s);
        assert_eq!(test.events_of("source", &s["id"]), ["source.created"]);
        let declined = test.create_source(json!({"gateway_data": {"token": "tok_chargeDeclined"}}));
        assert_eq!(declined["card"]["last4"], "0002");
    }

    fn source_rules(app) {
        let test = app.in_test_mode();
        let refused = |who: &App, body: Value, field: &str, message: &str| {
            let resp = who.post("/sources/", body).expect(400);
            assert_eq!(resp.body[field], json!([message]), "{}", resp.text);
        };
        refused(&app, json!({"gateway": "sandbox", "gateway_data": {"token": "tok_visa"}}), "gateway",
            "The sandbox gateway is only available in test mode.");
        refused(&test, json!({"gateway": "paypal"}), "gateway", "\"paypal\" is not a valid choice.");
        refused(&test, json!({}), "gateway", "This field is required.");
        refused(&test, json!({"gateway": "sandbox", "usage": "twice", "gateway_data": {"token": "tok_visa"}}), "usage", "\"twice\" is not a valid choice.");
        refused(&test, json!({"gateway": "sandbox", "amount": 0, "gateway_data": {"token": "tok_visa"}}), "amount", "Ensure this value is greater than 0.");
        let bad_token = test.post("/sources/", json!({"gateway": "sandbox", "gateway_data": {"token": "tok_nope"}})).expect(400);
        assert!(bad_token.body["gateway_data"][0].as_str().unwrap().contains("tok_visa"));
        refused(&test, json!({"gateway": "sandbox", "gateway_data": "tok_visa"}), "gateway_data", "Expected a dictionary of items but got type \"str\".");
        for secret in ["number", "cvc", "card_number"] {
            refused(&test, json!({"gateway": "sandbox", "gateway_data": {"token": "tok_visa", secret: "4242424242424242"}}), "gateway_data",
                "Card numbers and security codes are never accepted: send a gateway token instead.");
        }
        assert_eq!(test.get("/sources/").body["count"], 0);
        assert_eq!(app.get("/sources/").body["count"], 0);
        // Bank transfers work in both modes and show no card.
        let transfer = app.create_source(json!({}));
        assert_eq!((transfer["gateway"].as_str(), transfer["card"].is_null()), (Some("bank_transfer"), true));
    }

    fn source_lists_filter_and_stay_in_scope(app) {
        let test = app.in_test_mode();
        let a = test.create_source(json!({"customer": "cus_a", "usage": "reusable"}))["id"].as_i64().unwrap();
        let b = test.create_source(json!({"gateway": "bank_transfer", "customer": "cus_b"}))["id"].as_i64().unwrap();
        let live = app.create_source(json!({"customer": "cus_a"}))["id"].as_i64().unwrap();
        assert_eq!(ids(&test.get("/sources/").expect(200).body), [b, a]);
        assert_eq!(ids(&test.get("/sources/?customer=cus_a").body), [a]);
        assert_eq!(ids(&test.get("/sources/?gateway=bank_transfer").body), [b]);
        assert_eq!(ids(&test.get("/sources/?usage=reusable").body), [a]);
        assert_eq!(ids(&test.get("/sources/?status=chargeable&page_size=1&page=2").body), [a]);
        assert_eq!(test.get("/sources/?status=nope").expect(400).body["status"][0],
            "Select a valid choice. nope is not one of the available choices.");
        assert_eq!(ids(&app.get("/sources/").body), [live]);
        test.get(&format!("/sources/{live}/")).expect(404);
        app.get(&format!("/sources/{a}/")).expect(404);
        let other = app.stranger();
        other.get(&format!("/sources/{live}/")).expect(404);
        other.delete(&format!("/sources/{live}/")).expect(404);
        // A payment may only name sources of its own workspace and mode.
        for (who, id) in [(&other, live), (&app, a)] {
            let resp = who.post("/payments/", json!({"amount": 1, "currency": "CLP", "date": "2026-01-01",
                "description": "x", "source": id, "sources": [id]})).expect(400);
            let invalid = json!([format!("Invalid pk \"{id}\" - object does not exist.")]);
            assert_eq!((resp.body["source"].clone(), resp.body["sources"].clone()), (invalid.clone(), invalid));
        }
        let p = app.create_payment(json!({}));
        app.patch(&format!("/payments/{}/", p["id"]), json!({"sources": [a]})).expect(400);
        assert_eq!(app.patch(&format!("/payments/{}/", p["id"]), json!({"sources": [live]})).expect(200).body["sources"], json!([live]));
    }

    fn deleting_sources(app) {
        let test = app.in_test_mode();
        let unused = test.source_id();
        test.delete(&format!("/sources/{unused}/")).expect(204);
        test.get(&format!("/sources/{unused}/")).expect(404);
        assert_eq!(test.events_of("source", &json!(unused)), ["source.created", "source.deleted"]);
        let paid_with = test.source_id();
        let p = test.create_payment(json!({}));
        test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": paid_with})).expect(200);
        let resp = test.delete(&format!("/sources/{paid_with}/")).expect(400);
        assert!(resp.body["detail"].as_str().unwrap().contains("consumed"), "{}", resp.text);
        let reusable = test.create_source(json!({"usage": "reusable"}))["id"].as_i64().unwrap();
        let q = test.create_payment(json!({}));
        test.post(&format!("/payments/{}/authorize/", q["id"]), json!({"source": reusable})).expect(200);
        test.delete(&format!("/sources/{reusable}/")).expect(400);
        test.get(&format!("/sources/{reusable}/")).expect(200);
    }
}
