//! The audit trail: every answer carries a request id, and every event records who made it
//! (a user, a key, a payer, a provider or a job) and in which request.

use std::time::{Duration, Instant};

use crate::both;
use crate::helpers::*;

both! {
    fn every_answer_carries_a_request_id_and_a_clients_sane_one_is_kept(app) {
        for answer in [
            app.get("/payments/"),
            app.get("/no/such/route/"),
            send("GET", &app.url("/payments/"), &[], None),
            send("GET", &app.url("/health/"), &[], None),
        ] {
            let id = answer.header("x-request-id").unwrap_or_else(|| panic!("no id: {}", answer.text));
            assert!(id.starts_with("req_") && id.len() == 24, "{id}");
        }
        let two: Vec<String> = (0..2).map(|_| app.get("/payments/").header("x-request-id").unwrap().to_string()).collect();
        assert_ne!(two[0], two[1]);

        let mine = unique("client-trace.");
        let created = app.send("POST", "/payments/", Some(&json!({"amount": 5, "currency": "CLP", "date": "2026-01-01", "description": "traced", "status": "succeeded"}).to_string()), &[("X-Request-Id", &mine)]).expect(201);
        assert_eq!(created.header("x-request-id"), Some(mine.as_str()));
        // Both events of that request carry its id, and only they are found by it.
        let found = app.get(&format!("/events/?request_id={mine}")).expect(200).body;
        let types: Vec<&str> = found["results"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["payment.succeeded", "payment.created"]);
        // A client id that is not safe to log is replaced, not refused.
        for unsafe_id in ["has space", "semi;colon", &"x".repeat(65)] {
            let answer = app.send("GET", "/payments/", None, &[("X-Request-Id", unsafe_id)]).expect(200);
            let id = answer.header("x-request-id").unwrap();
            assert!(id.starts_with("req_") && id != unsafe_id, "{id}");
        }
        // Billingrails' meta.request_id is the same value.
        let key = app.secret_key(false);
        let bearer = format!("Bearer {key}");
        let answer = send("GET", &app.url("/v1/payments"), &[("Authorization", &bearer), ("X-Request-Id", "br-trace-1")], None).expect(200);
        assert_eq!(answer.header("x-request-id"), Some("br-trace-1"));
        assert_eq!(answer.body["meta"]["request_id"], "br-trace-1");
        let refused = send("GET", &app.url("/v1/payments/999999"), &[("Authorization", &bearer)], None).expect(404);
        assert_eq!(refused.body["meta"]["request_id"].as_str(), refused.header("x-request-id"), "{}", refused.text);
    }

    fn events_record_their_actor_and_filter_by_it(app) {
        // A user, by email.
        let by_user = app.create_payment(json!({}));
        // A key, by its kind and last four characters, never whole.
        let key = app.secret_key(false);
        let as_key = App { token: key.clone(), ..app.clone() };
        let by_key = as_key.create_payment(json!({}));
        let event_of = |p: &Value| app.get(&format!("/events/?object_type=payment&object_id={}", p["id"])).body["results"][0].clone();
        assert_eq!(event_of(&by_user)["actor"], json!({"type": "user", "email": app.email}));
        let actor = event_of(&by_key)["actor"].clone();
        assert_eq!(actor, json!({"type": "key", "prefix": format!("sk_live_…{}", &key[key.len() - 4..])}));
        assert!(!app.get("/events/?page_size=100").text.contains(&key), "a key in the events");
        // A payer, through the checkout key.
        let test = app.in_test_mode();
        let p = test.create_payment(json!({}));
        let checkout = p["checkout_url"].as_str().unwrap().trim_end_matches('/').rsplit('/').next().unwrap().to_string();
        let source = send("POST", &test.url("/sources/"), &[("Content-Type", "application/json")],
            Some(&json!({"checkout": checkout, "gateway": "sandbox", "gateway_data": {"token": "tok_visa"}}).to_string())).expect(201).body;
        send("POST", &test.url(&format!("/payments/{}/authorize/", p["id"])), &[("Content-Type", "application/json")],
            Some(&json!({"checkout": checkout, "source": source["id"]}).to_string())).expect(200);
        let paid = test.get(&format!("/events/?object_type=payment&object_id={}", p["id"])).body;
        assert_eq!(paid["results"][0]["type"], "payment.succeeded");
        assert_eq!(paid["results"][0]["actor"], json!({"type": "checkout"}));

        // Filters: by actor type (only this workspace's own), and refusals of bad ones.
        let users = app.get("/events/?actor_type=user").expect(200).body;
        assert!(users["results"].as_array().unwrap().iter().all(|e| e["actor"]["type"] == "user"));
        let keys = app.get("/events/?actor_type=key").expect(200).body;
        assert_eq!(keys["count"], 1, "{}", keys["results"].as_array().unwrap().iter().map(|e| e["type"].to_string()).collect::<Vec<_>>().join(","));
        let by_payer = test.get("/events/?actor_type=checkout").expect(200).body;
        // The source it made, and what its charge did to the payment.
        assert!(by_payer["count"].as_i64().unwrap() >= 2, "{by_payer}");
        assert!(by_payer["results"].as_array().unwrap().iter().all(|e| e["actor"] == json!({"type": "checkout"})));
        let refused = app.get("/events/?actor_type=robot").expect(400).body;
        assert!(refused["actor_type"].is_array(), "{refused}");
        assert_eq!(app.get("/events/?request_id=nothing-like-it").expect(200).body["count"], 0);
    }

    fn a_job_is_the_actor_of_what_it_settles(app) {
        // Settled by the server's sandbox loop, after COBRO_SANDBOX_SETTLE_SECONDS (3 s). (A
        // server settling at once would settle other tests' charges too.)
        let test = app.in_test_mode();
        let p = test.create_payment(json!({}));
        let source = test.create_source(json!({"gateway_data": {"token": "tok_async_success"}}));
        test.post(&format!("/payments/{}/authorize/", p["id"]), json!({"source": source["id"]})).expect(200);
        let deadline = Instant::now() + Duration::from_secs(10);
        let settled = loop {
            let page = test.get(&format!("/events/?object_type=payment&object_id={}&type=payment.succeeded", p["id"])).body;
            if page["count"] == 1 {
                break page["results"][0].clone();
            }
            assert!(Instant::now() < deadline, "never settled");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(settled["actor"], json!({"type": "system", "job": "sandbox"}));
        assert!(settled["request_id"].as_str().unwrap().starts_with("req_"));
    }

    fn who_turned_a_webhook_off_is_in_the_trail(app) {
        let developer = app.stranger();
        app.add_member(&developer.email, cobro::accounts::roles::Role::Developer);
        let developer = App { workspace: app.workspace.clone(), ..developer };
        let hook = app.post("/webhooks/", json!({"url": "https://hooks.example/in", "events": ["payment.*"]})).expect(201).body;
        let path = format!("/webhooks/{}/", hook["id"]);
        developer.patch(&path, json!({"enabled": false})).expect(200);
        app.post(&format!("{path}rotate-secret/"), json!({})).expect(200);
        app.delete(&path).expect(204);
        let trail = app.get(&format!("/events/?object_type=webhook&object_id={}", hook["id"])).expect(200).body;
        let seen: Vec<(String, String)> = trail["results"].as_array().unwrap().iter()
            .map(|e| (e["type"].as_str().unwrap().to_string(), e["actor"]["email"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(seen, [
            ("webhook.deleted".into(), app.email.clone()),
            ("webhook.secret_rotated".into(), app.email.clone()),
            ("webhook.updated".into(), developer.email.clone()),
            ("webhook.created".into(), app.email.clone()),
        ]);
        let off = &trail["results"][2]["data"];
        assert_eq!(off["enabled"], false);
        // Never the secret, in any of them.
        assert!(trail["results"].as_array().unwrap().iter().all(|e| e["data"]["secret"].is_null()));
        assert!(!trail.to_string().contains(hook["secret"].as_str().unwrap()));
    }

    fn no_event_is_without_an_actor_or_a_request_id(app) {
        // Every event any test wrote on this server so far (tests run in parallel), through
        // the database itself.
        app.create_payment(json!({}));
        let mut pooled = app.server.db.pool.get().unwrap();
        let conn: &mut cobro::db::DbConnection = &mut pooled;
        use diesel::prelude::*;
        use cobro::db::schema::events;
        let missing: i64 = events::table
            .filter(events::request_id.eq("").or(events::actor_type.eq("unknown")))
            .count()
            .get_result(conn)
            .unwrap();
        let all: i64 = events::table.count().get_result(conn).unwrap();
        assert!(all > 0);
        assert_eq!(missing, 0, "{missing} of {all} events without an actor or request id");
    }
}
