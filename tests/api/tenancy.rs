//! Workspaces and modes never see each other's data: retrieve, change, delete, list,
//! count and events.

use crate::both;
use crate::helpers::*;

both! {
    fn another_workspace_sees_nothing_and_changes_nothing(app) {
        let ours = app.customer_id("Ours");
        let p = app.create_payment(json!({"customer": ours}));
        let path = format!("/payments/{}/", p["id"]);
        let other = app.stranger();
        // Another workspace cannot name our customer, and has its own.
        let refused = other.post("/payments/", json!({"amount": 1, "currency": "CLP", "date": "2026-01-01",
            "description": "x", "customer": ours})).expect(400).body;
        assert_eq!(refused, json!({"customer": [format!("Invalid pk \"{ours}\" - object does not exist.")]}));
        other.get(&format!("/customers/{ours}/")).expect(404);
        let theirs = other.customer_id("Theirs");
        other.create_payment(json!({"customer": theirs}));
        other.get(&path).expect(404);
        other.patch(&path, json!({"description": "mine now"})).expect(404);
        other.put(&path, json!({"amount": 1, "currency": "CLP", "date": "2026-01-01", "description": "x"})).expect(404);
        other.post(&format!("{path}cancel/"), json!({})).expect(404);
        other.delete(&path).expect(404);
        assert_eq!(other.get(&format!("/payments/?customer={ours}")).expect(200).body["count"], 0);
        let their_list = other.get(&format!("/payments/?customer={theirs}")).expect(200).body;
        assert_eq!(their_list["count"], 1);
        assert!(!ids(&their_list).contains(&p["id"].as_i64().unwrap()));
        let their_events = other.get(&format!("/events/?object_id={}", p["id"])).expect(200).body;
        assert_eq!(their_events["count"], 0);
        assert_eq!(other.get("/events/").expect(200).body["count"], 2); // their customer and payment
        let first_event = app.get("/events/").body["results"][0]["id"].clone();
        other.get(&format!("/events/{first_event}/")).expect(404);
        // Nothing of ours changed.
        assert_eq!(app.get(&path).expect(200).body, p);
        assert_eq!(app.event_types(&p["id"]), ["payment.created"]);
    }

    fn test_and_live_mode_never_mix(app) {
        let live = app.create_payment(json!({"description": "live one"}));
        let test_app = app.in_test_mode();
        let test = test_app.create_payment(json!({"description": "test one"}));
        assert_eq!((live["test_mode"].clone(), test["test_mode"].clone()), (json!(false), json!(true)));
        test_app.get(&format!("/payments/{}/", live["id"])).expect(404);
        app.get(&format!("/payments/{}/", test["id"])).expect(404);
        app.patch(&format!("/payments/{}/", test["id"]), json!({"description": "x"})).expect(404);
        test_app.delete(&format!("/payments/{}/", live["id"])).expect(404);
        test_app.post(&format!("/payments/{}/cancel/", live["id"]), json!({})).expect(404);
        assert_eq!(ids(&app.get("/payments/").body), [live["id"].as_i64().unwrap()]);
        assert_eq!(ids(&test_app.get("/payments/").body), [test["id"].as_i64().unwrap()]);
        assert_eq!(app.get("/payments/?search=one").body["count"], 1);
        let live_events = app.get("/events/").body;
        let test_events = test_app.get("/events/").body;
        assert_eq!((live_events["count"].clone(), test_events["count"].clone()), (json!(1), json!(1)));
        assert_eq!(live_events["results"][0]["test_mode"], false);
        assert_eq!(test_events["results"][0]["object_id"], test["id"].to_string());
        test_app.get(&format!("/events/{}/", live_events["results"][0]["id"])).expect(404);
        // Metadata filters are scoped too.
        app.patch(&format!("/payments/{}/", live["id"]), json!({"metadata": {"k": "v"}})).expect(200);
        test_app.patch(&format!("/payments/{}/", test["id"]), json!({"metadata": {"k": "v"}})).expect(200);
        assert_eq!(ids(&test_app.get("/payments/?metadata__k=v").body), [test["id"].as_i64().unwrap()]);
    }
}
