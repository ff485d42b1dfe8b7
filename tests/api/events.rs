//! Events: one per change, in the change's transaction; none when a change is refused.

use crate::both;
use crate::helpers::*;

both! {
    fn every_change_writes_one_event_with_the_object_after_it(app) {
        let p = app.create_payment(json!({}));
        let path = format!("/payments/{}/", p["id"]);
        let updated = app.patch(&path, json!({"description": "Changed"})).expect(200).body;
        let processing = app.patch(&path, json!({"status": "processing"})).expect(200).body;
        let failed = app.patch(&path, json!({"status": "failed", "failed_reason": "card_declined"})).expect(200).body;
        let cancelled = app.post(&format!("{path}cancel/"), json!({})).expect(200).body;
        app.delete(&path).expect(204);
        assert_eq!(app.event_types(&p["id"]),
            ["payment.created", "payment.updated", "payment.processing", "payment.failed", "payment.cancelled", "payment.deleted"]);
        let page = app.get(&format!("/events/?object_type=payment&object_id={}", p["id"])).expect(200).body;
        let events = page["results"].as_array().unwrap();
        // Newest first; each carries the object as it was right after the change.
        let datas: Vec<&Value> = events.iter().map(|e| &e["data"]).collect();
        assert_eq!(datas, [&cancelled, &cancelled, &failed, &processing, &updated, &p]);
        for event in events {
            assert_eq!(event["object_id"], p["id"].to_string());
            assert_eq!(event["test_mode"], false);
            let keys: Vec<&str> = event.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys, ["id", "type", "object_id", "data", "created", "test_mode", "actor", "request_id"]);
            assert_eq!(event["actor"], json!({"type": "user", "email": app.email}));
            assert!(event["request_id"].as_str().unwrap().starts_with("req_"), "{event}");
        }
        // Each change was its own request.
        let ids: std::collections::HashSet<&Value> = events.iter().map(|e| &e["request_id"]).collect();
        assert_eq!(ids.len(), events.len());
        let one = app.get(&format!("/events/{}/", events[0]["id"])).expect(200).body;
        assert_eq!(&one, &events[0]);
        app.get("/events/999999999/").expect(404);
    }

    fn created_paid_announces_success_too(app) {
        let paid = app.create_payment(json!({"status": "succeeded"}));
        assert_eq!(app.event_types(&paid["id"]), ["payment.created", "payment.succeeded"]);
        let processing = app.create_payment(json!({"status": "processing"}));
        assert_eq!(app.event_types(&processing["id"]), ["payment.created", "payment.processing"]);
    }

    fn refused_and_empty_changes_write_nothing(app) {
        let p = app.create_payment(json!({"status": "succeeded"}));
        let path = format!("/payments/{}/", p["id"]);
        app.patch(&path, json!({"description": ""})).expect(400);
        app.patch(&path, json!({"status": "failed"})).expect(400);
        app.patch(&path, json!({"amount": 5})).expect(400);
        app.post(&format!("{path}cancel/"), json!({})).expect(400);
        app.delete(&path).expect(400);
        app.patch(&path, json!({})).expect(200);
        app.patch(&path, json!({"description": "Order 1", "status": "succeeded"})).expect(200);
        app.post("/payments/", json!({"amount": 0})).expect(400);
        assert_eq!(app.event_types(&p["id"]), ["payment.created", "payment.succeeded"]);
        assert_eq!(app.get("/events/").expect(200).body["count"], 2);
    }

    fn events_filter_by_type_and_object_and_paginate(app) {
        let a = app.create_payment(json!({}));
        let b = app.create_payment(json!({}));
        app.patch(&format!("/payments/{}/", a["id"]), json!({"status": "succeeded"})).expect(200);
        let created = app.get("/events/?type=payment.created").expect(200).body;
        assert_eq!(created["count"], 2);
        assert!(created["results"].as_array().unwrap().iter().all(|e| e["type"] == "payment.created"));
        let of_b = app.get(&format!("/events/?object_type=payment&object_id={}", b["id"])).expect(200).body;
        assert_eq!(of_b["count"], 1);
        let both_filters = app.get(&format!("/events/?object_type=payment&object_id={}&type=payment.succeeded", a["id"])).expect(200).body;
        assert_eq!(both_filters["count"], 1);
        let page = app.get("/events/?page_size=2&page=2").expect(200).body;
        assert_eq!((page["count"].clone(), page["results"].as_array().unwrap().len()), (json!(3), 1));
        assert_eq!(page["previous"], app.url("/events/?page_size=2&page=1"));
        app.get("/events/?page=3&page_size=2").expect(404);
    }
}
